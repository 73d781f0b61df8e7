/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk device behaviour through its PCI registers, with a test driver
 * laying requests out as Linux's virtio_blk does, fake guest RAM and
 * interrupt sink, and a real file backend (or the null backend) behind it.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake-mem.h"
#include "vblk/vblk.h"
#include "vblk/vblk-priv.h"
#include "vblk-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_BLK_F_##x)
#define ALL UINT64_MAX
#define TMO 2000
#define DISK_SIZE (8u << 20)
#define SECTORS (DISK_SIZE / 512)

typedef struct Fx {
        FakeMem m;
        FakeIrq irq;
        VBlk *b;
        char path[64];
        int fd;                         /* the test's own view of the backing file */
        Vd d;
        VbDrv v;
        uint64_t buf;                   /* 1 MiB of guest RAM for data */
} Fx;

static int bar_read(void *o, uint64_t off, void *buf, size_t len) {
        return virtio_pci_bar_read(vblk_virtio(((Fx *) o)->b), off, buf, len);
}

static int bar_write(void *o, uint64_t off, const void *buf, size_t len) {
        return virtio_pci_bar_write(vblk_virtio(((Fx *) o)->b), off, buf, len);
}

static int irq_wait(void *o, unsigned vector, int timeout_ms) {
        return fake_irq_wait(&((Fx *) o)->irq, vector, timeout_ms);
}

static const VdOps fx_ops = { .read = bar_read, .write = bar_write, .wait_irq = irq_wait };

static Fx *fx_new(const VBlkOptions *o, bool null) {
        Fx *f = calloc(1, sizeof(*f));
        BlkBackend *be;

        fake_mem_init(&f->m, 0x40000000, 64 << 20);
        fake_irq_init(&f->irq);
        f->fd = -1;
        if (null) {
                BlkOpenOptions bo = { .null = true, .size = DISK_SIZE, .fd = -1, .read_only = o->read_only };
                assert_int_equal(blk_backend_open(&bo, &be), 0);
        } else {
                strcpy(f->path, "/tmp/test-vblk-XXXXXX");
                int fd = mkstemp(f->path);
                assert_true(fd >= 0);
                assert_int_equal(ftruncate(fd, DISK_SIZE), 0);
                f->fd = fd;
                BlkOpenOptions bo = { .path = f->path, .fd = -1, .read_only = o->read_only };
                assert_int_equal(blk_backend_open(&bo, &be), 0);
        }
        assert_int_equal(vblk_new(o, be, &f->b), 0);
        vblk_attach(f->b, &f->m.mem, &f->irq.ops, &f->irq);
        vd_init(&f->d, &fx_ops, f, f->m.host, f->m.gpa, f->m.size);
        f->buf = fake_mem_alloc(&f->m, 1 << 20, 4096);
        f->d.ram.next = f->m.next;      /* the driver allocates after our buffer */
        return f;
}

static int setup(void **state) {
        VBlkOptions o = { .queues = 4, .queue_size = 64, .serial = "vfu-test-serial" };
        *state = fx_new(&o, false);
        return 0;
}

static int setup_packed(void **state) {
        VBlkOptions o = { .queues = 1, .queue_size = 64, .packed = true };
        *state = fx_new(&o, false);
        return 0;
}

static int setup_ro(void **state) {
        VBlkOptions o = { .queues = 1, .queue_size = 64, .read_only = true };
        *state = fx_new(&o, false);
        return 0;
}

static int setup_4k(void **state) {
        VBlkOptions o = { .queues = 1, .queue_size = 64, .block_size = 4096 };
        *state = fx_new(&o, false);
        return 0;
}

static int setup_poll(void **state) {
        VBlkOptions o = { .queues = 4, .queue_size = 64, .poll_us = 200, .serial = "vfu-test-serial" };
        *state = fx_new(&o, false);
        return 0;
}

static int setup_null(void **state) {
        VBlkOptions o = { .queues = 2, .queue_size = 128 };
        *state = fx_new(&o, true);
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        vb_fini(&f->v);
        vblk_free(f->b);
        if (f->fd >= 0) {
                close(f->fd);
                unlink(f->path);
        }
        fake_irq_fini(&f->irq);
        fake_mem_fini(&f->m);
        free(f);
        return 0;
}

static uint8_t *gbuf(Fx *f, uint64_t off) {
        return fake_mem_ptr(&f->m, f->buf + off);
}

static void fill(uint8_t *p, size_t len, unsigned seed) {
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t) (seed * 131 + i * 7 + (i >> 9));
}

static void cfg(Fx *f, uint32_t off, void *buf, size_t len) {
        vd_cfg_read(&f->d, off, buf, len);
}

#define CFG(f, field, var) cfg(f, offsetof(VBlkConfigSpace, field), &(var), sizeof(var))

static void probe_and_config(void **state) {
        Fx *f = *state;
        uint64_t cap;
        uint32_t blk_size, seg_max, size_max, max_discard_seg, max_discard;
        uint16_t nq;
        uint8_t wb;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 0, 0), 0);
        assert_int_equal(f->v.nq, 4);
        uint64_t want = F(SIZE_MAX) | F(SEG_MAX) | F(BLK_SIZE) | F(TOPOLOGY) | F(FLUSH) | F(CONFIG_WCE) | F(MQ) |
                        F(DISCARD) | F(WRITE_ZEROES) | VIRTIO_BIT(VIRTIO_F_VERSION_1) |
                        VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
        assert_int_equal(f->d.features & want, want);
        assert_false(f->d.features & (F(RO) | VIRTIO_BIT(VIRTIO_F_RING_PACKED)));
        CFG(f, capacity, cap);
        assert_int_equal(le64toh(cap), SECTORS);
        CFG(f, blk_size, blk_size);
        assert_int_equal(le32toh(blk_size), 512);
        CFG(f, seg_max, seg_max);
        assert_int_equal(le32toh(seg_max), 62);         /* queue size - 2 */
        CFG(f, size_max, size_max);
        assert_true(le32toh(size_max) >= 4096);
        CFG(f, num_queues, nq);
        assert_int_equal(le16toh(nq), 4);
        CFG(f, writeback, wb);
        assert_int_equal(wb, 1);
        CFG(f, max_discard_seg, max_discard_seg);
        assert_true(le32toh(max_discard_seg) >= 1);
        CFG(f, max_discard_sectors, max_discard);
        assert_true(le32toh(max_discard) >= 8);
        assert_true(vd_status(&f->d) & VIRTIO_STATUS_DRIVER_OK);
}

static void verified_io(Fx *f, unsigned q, uint64_t sector, uint32_t len, unsigned seed) {
        uint8_t *w = gbuf(f, 0), *r = gbuf(f, 512 * 1024);
        fill(w, len, seed);
        memset(r, 0, len);
        assert_int_equal(vb_do(&f->v, q, VIRTIO_BLK_T_OUT, sector, f->buf, len), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&f->v, q, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&f->v, q, VIRTIO_BLK_T_IN, sector, f->buf + 512 * 1024, len), VIRTIO_BLK_S_OK);
        assert_memory_equal(w, r, len);
        if (f->fd >= 0) {
                g_autofree uint8_t *disk = g_malloc(len);
                assert_int_equal(pread(f->fd, disk, len, (off_t) (sector * 512)), (ssize_t) len);
                assert_memory_equal(w, disk, len);
        }
}

static void rw_split(void **state) {
        Fx *f = *state;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 0, 0), 0);
        verified_io(f, 0, 0, 4096, 1);
        verified_io(f, 1, 8, 512, 2);
        verified_io(f, 3, SECTORS - 128, 65536, 3);     /* the last 64 KiB */
        f->v.indirect = true;
        verified_io(f, 2, 1000, 32768, 4);
        VBlkStats st;
        vblk_get_stats(f->b, &st);
        assert_int_equal(st.write_reqs, 4);
        assert_int_equal(st.read_reqs, 4);
        assert_int_equal(st.flush_reqs, 4);
        assert_int_equal(st.io_errors, 0);
        /* Each request in its operation's latency histogram: the buckets add up to the count. */
        assert_int_equal(st.lat.op[LAT_OP_READ].count, 4);
        assert_int_equal(st.lat.op[LAT_OP_WRITE].count, 4);
        assert_int_equal(st.lat.op[LAT_OP_FLUSH].count, 4);
        assert_int_equal(st.lat.op[LAT_OP_OTHER].count, 0);
        uint64_t in_buckets = 0;
        for (unsigned i = 0; i < LAT_HIST_BUCKETS; i++)
                in_buckets += st.lat.op[LAT_OP_WRITE].bucket[i];
        assert_int_equal(in_buckets, 4);
}

static void rw_no_event_idx(void **state) {
        Fx *f = *state;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL & ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX) & ~F(MQ), 0, 0), 0);
        assert_int_equal(f->v.nq, 1);
        f->v.indirect = true;
        verified_io(f, 0, 64, 8192, 5);
}

static void rw_packed(void **state) {
        Fx *f = *state;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 0, 0), 0);
        assert_true(virtio_has(f->d.features, VIRTIO_F_RING_PACKED));
        for (unsigned i = 0; i < 70; i++)       /* wraps the 64-entry ring */
                verified_io(f, 0, i * 8, 4096, i);
        f->v.indirect = true;
        verified_io(f, 0, 2048, 16384, 99);
}

/* Many requests in flight on every queue, completing in any order. */
static void queue_depth(void **state) {
        Fx *f = *state;
        const unsigned qd = 16, len = 4096;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 0, 0), 0);
        for (unsigned q = 0; q < f->v.nq; q++) {
                for (unsigned i = 0; i < qd; i++) {
                        uint64_t off = (uint64_t) (q * qd + i) * len;
                        fill(gbuf(f, off), len, q * 100 + i);
                        assert_int_equal(vb_submit(&f->v, q, VIRTIO_BLK_T_OUT, off / 512, f->buf + off, len, NULL, 0,
                                                   NULL), 0);
                }
                vb_kick(&f->v, q);
        }
        for (unsigned q = 0; q < f->v.nq; q++)
                for (unsigned i = 0; i < qd; i++) {
                        uint8_t st;
                        assert_int_equal(vb_complete(&f->v, q, &st, NULL, NULL, TMO), 1);
                        assert_int_equal(st, VIRTIO_BLK_S_OK);
                }
        for (unsigned q = 0; q < f->v.nq; q++)
                for (unsigned i = 0; i < qd; i++) {
                        uint64_t off = (uint64_t) (q * qd + i) * len;
                        uint8_t want[4096];
                        fill(want, len, q * 100 + i);
                        assert_int_equal(vb_do(&f->v, q, VIRTIO_BLK_T_IN, off / 512, f->buf + 512 * 1024, len),
                                         VIRTIO_BLK_S_OK);
                        assert_memory_equal(gbuf(f, 512 * 1024), want, len);
                }
}

static void bad_requests_answered(void **state) {
        Fx *f = *state;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 0, 0), 0);
        /* Out of range, overflowing, partial sectors, too large. */
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, SECTORS, f->buf, 512), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_OUT, SECTORS - 1, f->buf, 1024), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, UINT64_MAX - 1, f->buf, 4096), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, UINT64_MAX >> 9, f->buf, 4096), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 0, f->buf, 100), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 0, f->buf, 1 << 20), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 0, vd_alloc(&f->d, 16 << 20, 4096), 16 << 20),
                         VIRTIO_BLK_S_IOERR);
        /* Unknown and unnegotiated types. */
        assert_int_equal(vb_do(&f->v, 0, 0x77, 0, 0, 0), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_GET_LIFETIME, 0, f->buf, 16), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_SECURE_ERASE, 0, 0, 0), VIRTIO_BLK_S_UNSUPP);
        /* Discard with unmap, write zeroes with unknown flags: UNSUPP (5.2.6.1). */
        VBlkDwzSeg s = { .sector = 0, .num_sectors = 8, .flags = VIRTIO_BLK_WZ_F_UNMAP };
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_UNSUPP);
        s.flags = 2;
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_WRITE_ZEROES, &s, 1), VIRTIO_BLK_S_UNSUPP);
        /* Out of range segments, too many write-zeroes segments. */
        VBlkDwzSeg two[2] = { { 0, 8, 0 }, { SECTORS - 4, 8, 0 } };
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_DISCARD, two, 2), VIRTIO_BLK_S_IOERR);
        two[1].sector = 64;
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_WRITE_ZEROES, two, 2), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_DISCARD, two, 2), VIRTIO_BLK_S_OK);

        /* Data in the wrong direction: a read with device-readable data, a write with writable data. */
        uint64_t hdr = vd_alloc(&f->d, 32, 16);
        VBlkReqHdr h = { .type = htole32(VIRTIO_BLK_T_IN) };
        memcpy(fake_mem_ptr(&f->m, hdr), &h, 16);
        uint64_t gpa[3] = { hdr, f->buf, hdr + 16 };
        uint32_t len[3] = { 16, 512, 1 };
        bool w[3] = { false, false, true };
        uint16_t id;
        uint32_t used;
        *(uint8_t *) fake_mem_ptr(&f->m, hdr + 16) = 0xff;
        assert_true(vd_add_chain(&f->d, 0, gpa, len, w, 3, false) >= 0);
        vd_kick(&f->d, 0);
        assert_int_equal(vd_wait_used(&f->d, 0, &id, &used, TMO), 1);
        assert_int_equal(*(uint8_t *) fake_mem_ptr(&f->m, hdr + 16), VIRTIO_BLK_S_IOERR);
        h.type = htole32(VIRTIO_BLK_T_OUT);
        memcpy(fake_mem_ptr(&f->m, hdr), &h, 16);
        w[1] = true;
        assert_true(vd_add_chain(&f->d, 0, gpa, len, w, 3, false) >= 0);
        vd_kick(&f->d, 0);
        assert_int_equal(vd_wait_used(&f->d, 0, &id, &used, TMO), 1);
        assert_int_equal(*(uint8_t *) fake_mem_ptr(&f->m, hdr + 16), VIRTIO_BLK_S_IOERR);
        assert_int_equal(used, 513);

        VBlkStats st;
        vblk_get_stats(f->b, &st);
        assert_int_equal(st.io_errors, 10);
        assert_int_equal(st.unsupported, 5);
        assert_false(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        /* Still serving. */
        verified_io(f, 0, 0, 4096, 7);
}

/* A chain that cannot be answered: short header, or no status byte. */
static void malformed_needs_reset(void **state) {
        Fx *f = *state;
        uint64_t hdr = vd_alloc(&f->d, 32, 16);
        uint16_t id;
        uint32_t used;

        for (int kind = 0; kind < 2; kind++) {
                assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
                while (fake_irq_wait(&f->irq, 0, 0))
                        ;
                uint64_t gpa[2] = { hdr, hdr + 16 };
                uint32_t len[2] = { kind == 0 ? 8 : 16, kind == 0 ? 1 : 512 };
                bool w[2] = { false, kind == 0 };
                assert_true(vd_add_chain(&f->d, 0, gpa, len, w, 2, false) >= 0);
                vd_kick(&f->d, 0);
                assert_int_equal(fake_irq_wait(&f->irq, 0, TMO), 1);    /* configuration interrupt */
                assert_true(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
                assert_int_equal(vd_get_used(&f->d, 0, &id, &used), 0);
                vb_fini(&f->v);
        }
        VBlkStats st;
        vblk_get_stats(f->b, &st);
        assert_int_equal(st.bad_chains, 2);
        /* A reset brings it back. */
        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        assert_false(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        verified_io(f, 0, 16, 4096, 8);
}

static void get_id(void **state) {
        Fx *f = *state;
        uint8_t *p = gbuf(f, 0);

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        memset(p, 0xee, 32);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_GET_ID, 0, f->buf, VBLK_ID_BYTES), VIRTIO_BLK_S_OK);
        assert_string_equal((char *) p, "vfu-test-serial");
        assert_int_equal(p[19], 0);
        assert_int_equal(p[20], 0xee);
        /* A write-only buffer is required. */
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_GET_ID, 0, 0, 0), VIRTIO_BLK_S_IOERR);
}

static void discard_and_write_zeroes(void **state) {
        Fx *f = *state;
        uint8_t *r = gbuf(f, 512 * 1024);
        uint8_t zero[8192] = { 0 };

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        verified_io(f, 0, 0, 65536, 11);
        VBlkDwzSeg two[2] = { { 0, 16, 0 }, { 64, 16, 0 } };
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_DISCARD, two, 2), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 0, f->buf + 512 * 1024, 8192), VIRTIO_BLK_S_OK);
        assert_memory_equal(r, zero, 8192);     /* a file hole reads zeroes */
        VBlkDwzSeg wz = { 32, 16, 0 };
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_WRITE_ZEROES, &wz, 1), VIRTIO_BLK_S_OK);
        wz = (VBlkDwzSeg) { 100, 12, VIRTIO_BLK_WZ_F_UNMAP };
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_WRITE_ZEROES, &wz, 1), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 32, f->buf + 512 * 1024, 8192), VIRTIO_BLK_S_OK);
        assert_memory_equal(r, zero, 8192);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 100, f->buf + 512 * 1024, 6144), VIRTIO_BLK_S_OK);
        assert_memory_equal(r, zero, 6144);
        /* What lies between is untouched. */
        uint8_t want[65536];
        fill(want, sizeof(want), 11);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 16, f->buf + 512 * 1024, 8192), VIRTIO_BLK_S_OK);
        assert_memory_equal(r, want + 16 * 512, 8192);
        /* Not negotiated: UNSUPP. */
        assert_int_equal(vb_probe(&f->v, &f->d, ALL & ~(F(DISCARD) | F(WRITE_ZEROES)), 1, 0), 0);
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_DISCARD, two, 1), VIRTIO_BLK_S_UNSUPP);
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_WRITE_ZEROES, two, 1), VIRTIO_BLK_S_UNSUPP);
}

static void read_only(void **state) {
        Fx *f = *state;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        assert_true(f->d.features & F(RO));
        assert_false(f->d.features & (F(DISCARD) | F(WRITE_ZEROES) | F(MQ)));
        assert_int_equal(pwrite(f->fd, "abcd", 4, 512), 4);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_OUT, 0, f->buf, 512), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 1, f->buf, 512), VIRTIO_BLK_S_OK);
        assert_memory_equal(gbuf(f, 0), "abcd", 4);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
}

static void block_size_4k(void **state) {
        Fx *f = *state;
        uint32_t bs, align;
        uint8_t exp;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        CFG(f, blk_size, bs);
        assert_int_equal(le32toh(bs), 4096);
        CFG(f, physical_block_exp, exp);
        assert_int_equal(exp, 0);
        CFG(f, discard_sector_alignment, align);
        assert_int_equal(le32toh(align), 8);
        verified_io(f, 0, 8, 8192, 12);
        /* Sectors are 512 bytes; requests must cover whole 4 KiB blocks. */
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 1, f->buf, 4096), VIRTIO_BLK_S_IOERR);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 8, f->buf, 512), VIRTIO_BLK_S_IOERR);
        VBlkDwzSeg s = { 8, 4, 0 };
        assert_int_equal(vb_do_dwz(&f->v, 0, VIRTIO_BLK_T_DISCARD, &s, 1), VIRTIO_BLK_S_IOERR);
}

/* 5.2.5: writeback follows FLUSH and CONFIG_WCE; the driver may turn the cache off. */
static void write_cache(void **state) {
        Fx *f = *state;
        uint8_t wb = 0xaa;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL & ~(F(FLUSH) | F(CONFIG_WCE)), 1, 0), 0);
        CFG(f, writeback, wb);
        assert_int_equal(wb, 0);
        assert_false(vblk_write_cache(f->b));
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_UNSUPP);
        fill(gbuf(f, 0), 4096, 3);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_OUT, 0, f->buf, 4096), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        assert_true(vblk_write_cache(f->b));
        uint8_t off = 0;
        f->d.ops->write(f, VIRTIO_PCI_DEVICE_OFF + VBLK_CFG_WRITEBACK_OFF, &off, 1);
        CFG(f, writeback, wb);
        assert_int_equal(wb, 0);
        assert_false(vblk_write_cache(f->b));
        verified_io(f, 0, 0, 4096, 13);
        uint8_t on = 1;
        f->d.ops->write(f, VIRTIO_PCI_DEVICE_OFF + VBLK_CFG_WRITEBACK_OFF, &on, 1);
        assert_true(vblk_write_cache(f->b));
        /* Without CONFIG_WCE the field is read-only. */
        assert_int_equal(vb_probe(&f->v, &f->d, ALL & ~F(CONFIG_WCE), 1, 0), 0);
        f->d.ops->write(f, VIRTIO_PCI_DEVICE_OFF + VBLK_CFG_WRITEBACK_OFF, &off, 1);
        assert_true(vblk_write_cache(f->b));
        /* Other fields are not writable. */
        uint64_t cap = 0, junk = 0;
        f->d.ops->write(f, VIRTIO_PCI_DEVICE_OFF, &junk, 4);
        CFG(f, capacity, cap);
        assert_int_equal(le64toh(cap), SECTORS);
}

static void resize_config_interrupt(void **state) {
        Fx *f = *state;
        uint8_t gen0, gen1;
        uint64_t cap;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, SECTORS, f->buf, 4096), VIRTIO_BLK_S_IOERR);
        while (fake_irq_wait(&f->irq, 0, 0))
                ;
        bar_read(f, VIRTIO_PCI_COMMON_CFGGENERATION, &gen0, 1);
        assert_int_equal(vblk_resize(f->b, DISK_SIZE - 4096), -EINVAL);         /* never shrinks */
        assert_int_equal(vblk_resize(f->b, 1000), -EINVAL);                      /* whole blocks */
        assert_int_equal(vblk_resize(f->b, 2 * DISK_SIZE), 0);
        assert_int_equal(fake_irq_wait(&f->irq, 0, TMO), 1);
        bar_read(f, VIRTIO_PCI_COMMON_CFGGENERATION, &gen1, 1);
        assert_int_not_equal(gen0, gen1);
        CFG(f, capacity, cap);
        assert_int_equal(le64toh(cap), 2 * SECTORS);
        assert_int_equal(vblk_capacity_bytes(f->b), 2 * DISK_SIZE);
        verified_io(f, 0, 2 * SECTORS - 8, 4096, 14);
        /* Same size: no interrupt. */
        assert_int_equal(vblk_resize(f->b, 0), 0);
        assert_int_equal(fake_irq_wait(&f->irq, 0, 100), 0);
}

/* Dirty logging: everything the device wrote into guest memory is reported after it was written. */
static void dirty_logging(void **state) {
        Fx *f = *state;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        verified_io(f, 0, 0, 16384, 15);
        fake_mem_log(&f->m, true);
        assert_int_equal(vb_do(&f->v, 0, VIRTIO_BLK_T_IN, 0, f->buf + 512 * 1024, 16384), VIRTIO_BLK_S_OK);
        assert_true(fake_mem_logged(&f->m, f->buf + 512 * 1024, 16384));
        assert_true(fake_mem_logged_after_write(&f->m, f->buf + 512 * 1024, 16384));
        fake_mem_log(&f->m, false);
}

static void null_backend(void **state) {
        Fx *f = *state;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 0, 0), 0);
        assert_int_equal(f->v.nq, 2);
        for (unsigned i = 0; i < 200; i++) {
                assert_int_equal(vb_submit(&f->v, i % 2, i % 3 ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, i * 8,
                                           f->buf, 4096, NULL, 0, NULL), 0);
                if (i % 20 == 19) {
                        for (unsigned q = 0; q < 2; q++)
                                vb_kick(&f->v, q);
                        for (unsigned k = 0; k < 20; k++) {
                                uint8_t st;
                                assert_int_equal(vb_complete(&f->v, (i - 19 + k) % 2, &st, NULL, NULL, TMO), 1);
                                assert_int_equal(st, VIRTIO_BLK_S_OK);
                        }
                }
        }
        VBlkStats st;
        vblk_get_stats(f->b, &st);
        assert_int_equal(st.read_reqs + st.write_reqs, 200);
        assert_int_equal(st.inflight, 0);
}

/* Migration state: save on one device, load into another with the same options and disk. */
static void state_roundtrip(void **state) {
        Fx *f = *state;
        DevStateWriter *w = NULL;

        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 2, 0), 0);
        uint8_t off = 0;
        f->d.ops->write(f, VIRTIO_PCI_DEVICE_OFF + VBLK_CFG_WRITEBACK_OFF, &off, 1);
        verified_io(f, 1, 0, 4096, 16);
        assert_int_equal(virtio_pci_state_save(vblk_virtio(f->b), &w), 0);
        size_t len;
        const uint8_t *data = devstate_writer_data(w, &len);

        /* The destination: same options, same disk. */
        BlkBackend *be;
        BlkOpenOptions bo = { .path = f->path, .fd = -1 };
        assert_int_equal(blk_backend_open(&bo, &be), 0);
        VBlkOptions o = { .queues = 4, .queue_size = 64, .serial = "vfu-test-serial" };
        VBlk *b2;
        assert_int_equal(vblk_new(&o, be, &b2), 0);
        vblk_attach(b2, &f->m.mem, &f->irq.ops, &f->irq);
        DevStateReader *r = virtio_pci_state_reader(vblk_virtio(b2));
        assert_int_equal(devstate_reader_feed(r, data, len), 0);
        assert_int_equal(devstate_reader_finish(r), 0);
        assert_int_equal(virtio_pci_state_load(vblk_virtio(b2), r), 0);
        assert_false(vblk_write_cache(b2));
        devstate_reader_free(r);
        /* The server resumes the device once the state is in (here: a quiesce/resume pair). */
        VuServerConfig scfg = { 0 };
        assert_int_equal(vblk_server_config(b2, &scfg), 0);
        scfg.ops->quiesce(scfg.opaque);
        scfg.ops->resume(scfg.opaque);

        /* A device with another serial refuses it. */
        assert_int_equal(blk_backend_open(&bo, &be), 0);
        o.serial = "other";
        VBlk *b3;
        assert_int_equal(vblk_new(&o, be, &b3), 0);
        vblk_attach(b3, &f->m.mem, &f->irq.ops, &f->irq);
        r = virtio_pci_state_reader(vblk_virtio(b3));
        assert_int_equal(devstate_reader_feed(r, data, len), 0);
        assert_int_equal(devstate_reader_finish(r), 0);
        assert_true(virtio_pci_state_load(vblk_virtio(b3), r) < 0);
        assert_non_null(strstr(vblk_migration_error(b3), "serial"));
        devstate_reader_free(r);
        vblk_free(b3);

        /* The old device stops; the new one serves the driver's queues where it left them. */
        VBlk *old = f->b;
        f->b = b2;
        vblk_free(old);
        verified_io(f, 1, 8, 4096, 17);
        verified_io(f, 0, 16, 4096, 18);
        devstate_writer_free(w);
        vu_pci_cfg_free(scfg.cfg);
}

/*
 * A VMM replacing its DMA maps sends the unmap and the new map as two
 * messages (QEMU does while SeaBIOS drives the disk at POST): in between the
 * rings are not in guest memory.  That is no guest error: the queue idles
 * until the map is back, then serves what waited.
 */
static void dma_remap_gap(void **state) {
        Fx *f = *state;
        VuServerConfig scfg = { 0 };

        assert_int_equal(vblk_server_config(f->b, &scfg), 0);
        assert_int_equal(vb_probe(&f->v, &f->d, ALL, 1, 0), 0);
        verified_io(f, 0, 0, 4096, 20);
        scfg.ops->quiesce(scfg.opaque);
        f->m.hole_gpa = f->m.gpa;
        f->m.hole_len = f->m.size;
        scfg.ops->resume(scfg.opaque);
        assert_false(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        /* A request made meanwhile waits. */
        fill(gbuf(f, 0), 4096, 21);
        assert_int_equal(vb_submit(&f->v, 0, VIRTIO_BLK_T_OUT, 64, f->buf, 4096, NULL, 0, NULL), 0);
        vb_kick(&f->v, 0);
        uint16_t id;
        uint32_t used;
        assert_int_equal(vd_wait_used(&f->d, 0, &id, &used, 200), -ETIMEDOUT);
        scfg.ops->quiesce(scfg.opaque);
        f->m.hole_len = 0;
        scfg.ops->resume(scfg.opaque);
        uint8_t st;
        assert_int_equal(vb_complete(&f->v, 0, &st, NULL, NULL, TMO), 1);
        assert_int_equal(st, VIRTIO_BLK_S_OK);
        assert_false(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        verified_io(f, 0, 128, 4096, 22);
        vu_pci_cfg_free(scfg.cfg);
}

static void options_refused(void **state) {
        (void) state;
        BlkBackend *be;
        VBlk *b;
        BlkOpenOptions bo = { .null = true, .size = 1 << 20, .fd = -1 };
        VBlkOptions bad[] = {
                { .queues = 0 },
                { .queues = VBLK_MAX_QUEUES + 1 },
                { .queues = 1, .queue_size = 100 },
                { .queues = 1, .block_size = 1024 },
                { .queues = 1, .serial = "this serial is longer than twenty" },
                { .queues = 1, .serial = "tab\there" },
                { .queues = 1, .poll_us = VBLK_MAX_POLL_US + 1 },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                assert_int_equal(blk_backend_open(&bo, &be), 0);
                assert_int_equal(vblk_new(&bad[i], be, &b), -EINVAL);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(probe_and_config, setup, teardown),
                cmocka_unit_test_setup_teardown(rw_split, setup, teardown),
                cmocka_unit_test_setup_teardown(rw_no_event_idx, setup, teardown),
                cmocka_unit_test_setup_teardown(rw_packed, setup_packed, teardown),
                cmocka_unit_test_setup_teardown(queue_depth, setup, teardown),
                cmocka_unit_test_setup_teardown(queue_depth, setup_poll, teardown),
                cmocka_unit_test_setup_teardown(rw_split, setup_poll, teardown),
                cmocka_unit_test_setup_teardown(bad_requests_answered, setup, teardown),
                cmocka_unit_test_setup_teardown(malformed_needs_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(get_id, setup, teardown),
                cmocka_unit_test_setup_teardown(discard_and_write_zeroes, setup, teardown),
                cmocka_unit_test_setup_teardown(read_only, setup_ro, teardown),
                cmocka_unit_test_setup_teardown(block_size_4k, setup_4k, teardown),
                cmocka_unit_test_setup_teardown(write_cache, setup, teardown),
                cmocka_unit_test_setup_teardown(resize_config_interrupt, setup, teardown),
                cmocka_unit_test_setup_teardown(dirty_logging, setup, teardown),
                cmocka_unit_test_setup_teardown(null_backend, setup_null, teardown),
                cmocka_unit_test_setup_teardown(state_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(dma_remap_gap, setup, teardown),
                cmocka_unit_test(options_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
