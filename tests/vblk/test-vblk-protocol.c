/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk over a real vfio-user socket: our client maps guest RAM,
 * installs MSI-X eventfds and acts as Linux's virtio_blk driver (PCI
 * identity and capabilities, the virtio-pci probe, num_queues, one vector
 * per queue); the device runs on our server with a real file behind it.
 * Verified I/O with many requests in flight on every queue (split and
 * packed rings, direct and indirect chains), discard, write zeroes, flush,
 * GET_ID, a resize the driver learns from a configuration interrupt, and
 * malformed chains answered with NEEDS_RESET.
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "srv-thread.h"
#include "vblk-driver.h"
#include "vblk/vblk.h"
#include "vfio-user/client.h"
#include "vfio-user/server.h"
#include "virtio/virtio-pci.h"

#define F(x) VIRTIO_BIT(VIRTIO_BLK_F_##x)
/* What Linux 6.12's virtio_blk asks for (its feature table), plus the transport's. */
#define LINUX_FEATURES (F(SEG_MAX) | F(SIZE_MAX) | F(GEOMETRY) | F(RO) | F(BLK_SIZE) | F(FLUSH) | F(TOPOLOGY) | \
                        F(CONFIG_WCE) | F(MQ) | F(DISCARD) | F(WRITE_ZEROES) | F(SECURE_ERASE) | \
                        VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
                        VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_RING_PACKED))
#define TMO 5000
#define DISK (64u << 20)
#define NQ 4

typedef struct Blk {
        char sock[64];
        char path[64];
        int fd;
        VBlk *b;
        VuServer *s;
        SrvThread thread;
        VuClient *c;
        VuGuestRam ram;
        int irq[NQ + 1];
        unsigned nvec;
        Vd d;
        VbDrv v;
        uint64_t data;                  /* 8 MiB of guest RAM for data */
} Blk;

static int irq_fire(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps irq_ops = { .fire = irq_fire };

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Blk *) o)->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len);
}

static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        /* Posted, as QEMU sends MMIO writes when nothing is mmapped. */
        return vu_client_region_write(((Blk *) o)->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len, true);
}

static int c_wait(void *o, unsigned vector, int ms) {
        Blk *t = o;
        return vector < t->nvec ? vu_client_wait_irq(t->irq[vector], ms) : 0;
}

static const VdOps client_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

static void start(Blk *t, bool packed) {
        VBlkOptions o = { .queues = NQ, .queue_size = 256, .packed = packed, .serial = "vfu-proto" };
        VuServerConfig scfg = { 0 };
        BlkBackend *be;

        strcpy(t->path, "/tmp/vfu-vblk-XXXXXX");
        t->fd = mkstemp(t->path);
        assert_true(t->fd >= 0);
        BlkOpenOptions bo = { .path = t->path, .fd = -1, .size = DISK };
        assert_int_equal(blk_backend_open(&bo, &be), 0);
        assert_int_equal(vblk_new(&o, be, &t->b), 0);
        assert_int_equal(vblk_server_config(t->b, &scfg), 0);
        scfg.name = "vblk-test";
        assert_int_equal(vu_server_new(&scfg, &t->s), 0);
        vblk_attach(t->b, vu_server_mem(t->s), &irq_ops, t->s);
        g_snprintf(t->sock, sizeof(t->sock), "/tmp/vfu-vb-%d.sock", getpid());
        assert_int_equal(vu_server_listen(t->s, t->sock), 0);
        assert_int_equal(srv_thread_start(&t->thread, t->s), 0);

        assert_int_equal(vu_client_connect(t->sock, &t->c), 0);
        assert_int_equal(vu_client_negotiate(t->c, NULL), 0);
        assert_int_equal(vu_guest_ram_new(0x100000000ull, 64 << 20, &t->ram), 0);
        assert_int_equal(vu_client_map_ram(t->c, &t->ram), 0);
        t->nvec = NQ + 1;
        assert_int_equal(vu_client_enable_msix(t->c, t->nvec, t->irq), 0);
        vd_init(&t->d, &client_ops, t, t->ram.host, t->ram.gpa_base, t->ram.size);
        t->data = t->ram.gpa_base;
        t->d.ram.next = t->data + (8 << 20);
}

static void stop(Blk *t) {
        vb_fini(&t->v);
        if (t->c) {
                vu_client_free(t->c);
                for (unsigned i = 0; i < t->nvec; i++)
                        close(t->irq[i]);
        }
        if (t->s) {
                srv_thread_stop(&t->thread);
                vu_server_free(t->s);
        }
        vblk_free(t->b);
        vu_guest_ram_free(&t->ram);
        close(t->fd);
        unlink(t->path);
        unlink(t->sock);
}

static int setup(void **state) {
        Blk *t = calloc(1, sizeof(*t));
        start(t, false);
        *state = t;
        return 0;
}

static int setup_packed(void **state) {
        Blk *t = calloc(1, sizeof(*t));
        start(t, true);
        *state = t;
        return 0;
}

static int teardown(void **state) {
        stop(*state);
        free(*state);
        return 0;
}

static uint8_t *ram(Blk *t, uint64_t gpa) {
        return vu_guest_ram_ptr(&t->ram, gpa, 1);
}

/* PCI identity and the virtio capabilities Linux's virtio_pci_modern looks for. */
static void pci_identity(void **state) {
        Blk *t = *state;
        uint32_t id, cls;

        assert_int_equal(vu_client_region_read(t->c, VU_PCI_CONFIG_REGION, 0, &id, 4), 0);
        assert_int_equal(le32toh(id), 0x10421af4u);
        assert_int_equal(vu_client_region_read(t->c, VU_PCI_CONFIG_REGION, 8, &cls, 4), 0);
        assert_true((le32toh(cls) & 0xff) >= 1);                /* revision ≥ 1: modern */
        assert_int_equal(le32toh(cls) >> 16, 0x0100);           /* mass storage */
        int cap = vu_client_find_cap(t->c, 0x09);
        assert_true(cap > 0);
        unsigned seen = 0;
        while (cap > 0) {
                uint8_t hdr[4];
                assert_int_equal(vu_client_region_read(t->c, VU_PCI_CONFIG_REGION, (uint64_t) cap, hdr, 4), 0);
                if (hdr[0] == 0x09) {
                        uint8_t type;
                        assert_int_equal(vu_client_region_read(t->c, VU_PCI_CONFIG_REGION, (uint64_t) cap + 3,
                                                               &type, 1), 0);
                        seen |= 1u << type;
                }
                cap = hdr[1];
        }
        assert_int_equal(seen & 0x1e, 0x1e);    /* common, notify, ISR, device */
}

/* The Linux probe, then its first reads: capacity, GET_ID (the serial sysfs shows), a partition table. */
static void linux_probe(void **state) {
        Blk *t = *state;
        uint64_t cap;
        uint16_t nq;

        assert_int_equal(vb_probe(&t->v, &t->d, LINUX_FEATURES, 0, 0), 0);
        assert_int_equal(t->v.nq, NQ);
        assert_true(virtio_has(t->d.features, VIRTIO_BLK_F_MQ));
        assert_false(virtio_has(t->d.features, VIRTIO_BLK_F_SECURE_ERASE));
        vd_cfg_read(&t->d, offsetof(VBlkConfigSpace, capacity), &cap, 8);
        assert_int_equal(le64toh(cap), DISK / 512);
        vd_cfg_read(&t->d, offsetof(VBlkConfigSpace, num_queues), &nq, 2);
        assert_int_equal(le16toh(nq), NQ);
        for (unsigned q = 0; q < NQ; q++)
                assert_int_equal(vb_do(&t->v, q, VIRTIO_BLK_T_IN, 0, t->data, 512), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&t->v, 0, VIRTIO_BLK_T_GET_ID, 0, t->data, VBLK_ID_BYTES), VIRTIO_BLK_S_OK);
        assert_string_equal((char *) ram(t, t->data), "vfu-proto");
}

static void pattern(uint8_t *p, size_t len, uint64_t seed) {
        for (size_t i = 0; i < len; i += 8) {
                uint64_t v = seed * 0x9e3779b97f4a7c15ull + i;
                memcpy(p + i, &v, 8);
        }
}

/* QD32 on every queue: writes, a flush, reads compared, and the file itself compared. */
static void verified_io_qd32(Blk *t, bool indirect) {
        const unsigned qd = 32, len = 16384;
        uint8_t *buf = g_malloc(len);

        t->v.indirect = indirect;
        assert_int_equal(vb_probe(&t->v, &t->d, LINUX_FEATURES, 0, 0), 0);
        for (unsigned round = 0; round < 3; round++) {
                for (int write = 1; write >= 0; write--) {
                        for (unsigned q = 0; q < NQ; q++) {
                                for (unsigned i = 0; i < qd; i++) {
                                        unsigned k = q * qd + i;
                                        uint64_t off = (uint64_t) k * len, sector = (off + round * (4 << 20)) / 512;
                                        if (write)
                                                pattern(ram(t, t->data + off), len, sector);
                                        else
                                                memset(ram(t, t->data + off), 0, len);
                                        assert_int_equal(vb_submit(&t->v, q, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
                                                                   sector, t->data + off, len, NULL, 0,
                                                                   (void *) (uintptr_t) k), 0);
                                }
                                vb_kick(&t->v, q);
                        }
                        for (unsigned q = 0; q < NQ; q++)
                                for (unsigned i = 0; i < qd; i++) {
                                        uint8_t st;
                                        uint32_t used;
                                        void *user;
                                        assert_int_equal(vb_complete(&t->v, q, &st, &used, &user, TMO), 1);
                                        assert_int_equal(st, VIRTIO_BLK_S_OK);
                                        assert_int_equal(used, write ? 1 : len + 1);
                                        if (!write) {
                                                unsigned k = (unsigned) (uintptr_t) user;
                                                uint64_t off = (uint64_t) k * len;
                                                pattern(buf, len, (off + round * (4 << 20)) / 512);
                                                assert_memory_equal(ram(t, t->data + off), buf, len);
                                        }
                                }
                        if (write)
                                assert_int_equal(vb_do(&t->v, 0, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
                }
        }
        /* On the disk too. */
        for (unsigned k = 0; k < NQ * qd; k += 7) {
                uint64_t off = (uint64_t) k * len + 2 * (4 << 20);
                uint8_t *disk = g_malloc(len);
                assert_int_equal(pread(t->fd, disk, len, (off_t) off), (ssize_t) len);
                pattern(buf, len, off / 512);
                assert_memory_equal(disk, buf, len);
                g_free(disk);
        }
        VBlkStats st;
        vblk_get_stats(t->b, &st);
        assert_int_equal(st.write_reqs, 3 * NQ * qd);
        assert_int_equal(st.io_errors + st.bad_chains, 0);
        assert_int_equal(st.lat.op[LAT_OP_WRITE].count, st.write_reqs);
        assert_int_equal(st.lat.op[LAT_OP_READ].count, st.read_reqs);
        g_free(buf);
}

static void io_split(void **state) {
        verified_io_qd32(*state, false);
}

static void io_split_indirect(void **state) {
        verified_io_qd32(*state, true);
}

static void io_packed(void **state) {
        Blk *t = *state;
        verified_io_qd32(t, false);
        assert_true(virtio_has(t->d.features, VIRTIO_F_RING_PACKED));
}

static void discard_zeroes_flush(void **state) {
        Blk *t = *state;
        uint8_t zero[4096] = { 0 };

        assert_int_equal(vb_probe(&t->v, &t->d, LINUX_FEATURES, 0, 0), 0);
        pattern(ram(t, t->data), 1 << 20, 1);
        assert_int_equal(vb_do(&t->v, 1, VIRTIO_BLK_T_OUT, 2048, t->data, 1 << 20), VIRTIO_BLK_S_OK);
        VBlkDwzSeg d[2] = { { 2048, 256, 0 }, { 3072, 8, 0 } };
        assert_int_equal(vb_do_dwz(&t->v, 1, VIRTIO_BLK_T_DISCARD, d, 2), VIRTIO_BLK_S_OK);
        VBlkDwzSeg wz = { 2560, 512, VIRTIO_BLK_WZ_F_UNMAP };
        assert_int_equal(vb_do_dwz(&t->v, 2, VIRTIO_BLK_T_WRITE_ZEROES, &wz, 1), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&t->v, 3, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);
        uint64_t rd = t->data + (2 << 20);
        assert_int_equal(vb_do(&t->v, 0, VIRTIO_BLK_T_IN, 2048, rd, 1 << 20), VIRTIO_BLK_S_OK);
        uint8_t *want = g_malloc(1 << 20);
        pattern(want, 1 << 20, 1);
        for (unsigned s = 0; s < 2048; s += 8) {
                bool zeroed = s < 256 || (s >= 512 && s < 1024) || s == 1024;
                assert_memory_equal(ram(t, rd + s * 512), zeroed ? zero : want + s * 512, 4096);
        }
        g_free(want);
}

static void resize_interrupt(void **state) {
        Blk *t = *state;
        uint64_t cap;

        assert_int_equal(vb_probe(&t->v, &t->d, LINUX_FEATURES, 0, 0), 0);
        assert_int_equal(vb_do(&t->v, 0, VIRTIO_BLK_T_IN, DISK / 512, t->data, 4096), VIRTIO_BLK_S_IOERR);
        while (vu_client_wait_irq(t->irq[0], 0) > 0)
                ;
        assert_int_equal(vblk_resize(t->b, 2 * DISK), 0);
        assert_int_equal(vu_client_wait_irq(t->irq[0], TMO), 1);       /* virtblk_config_changed */
        vd_cfg_read(&t->d, offsetof(VBlkConfigSpace, capacity), &cap, 8);
        assert_int_equal(le64toh(cap), 2 * DISK / 512);
        pattern(ram(t, t->data), 4096, 9);
        assert_int_equal(vb_do(&t->v, 2, VIRTIO_BLK_T_OUT, 2 * DISK / 512 - 8, t->data, 4096), VIRTIO_BLK_S_OK);
        assert_int_equal(vb_do(&t->v, 2, VIRTIO_BLK_T_IN, 2 * DISK / 512 - 8, t->data + 4096, 4096), VIRTIO_BLK_S_OK);
        assert_memory_equal(ram(t, t->data), ram(t, t->data + 4096), 4096);
}

/* A chain without a status byte, and one pointing outside guest RAM: NEEDS_RESET, then a reset works. */
static void malformed(void **state) {
        Blk *t = *state;
        uint16_t id;
        uint32_t used;

        for (int kind = 0; kind < 2; kind++) {
                assert_int_equal(vb_probe(&t->v, &t->d, LINUX_FEATURES, 0, 0), 0);
                while (vu_client_wait_irq(t->irq[0], 0) > 0)
                        ;
                uint64_t gpa[2] = { t->data, kind ? 0x10000 : t->data + 512 };
                uint32_t len[2] = { 16, 512 };
                bool w[2] = { false, kind == 1 };
                VBlkReqHdr h = { .type = htole32(VIRTIO_BLK_T_OUT) };
                memcpy(ram(t, t->data), &h, 16);
                assert_true(vd_add_chain(&t->d, 1, gpa, len, w, 2, false) >= 0);
                vd_kick(&t->d, 1);
                assert_int_equal(vu_client_wait_irq(t->irq[0], TMO), 1);
                assert_true(vd_status(&t->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
                assert_int_equal(vd_get_used(&t->d, 1, &id, &used), 0);
        }
        assert_int_equal(vb_probe(&t->v, &t->d, LINUX_FEATURES, 0, 0), 0);
        assert_int_equal(vb_do(&t->v, 1, VIRTIO_BLK_T_IN, 0, t->data, 4096), VIRTIO_BLK_S_OK);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(pci_identity, setup, teardown),
                cmocka_unit_test_setup_teardown(linux_probe, setup, teardown),
                cmocka_unit_test_setup_teardown(io_split, setup, teardown),
                cmocka_unit_test_setup_teardown(io_split_indirect, setup, teardown),
                cmocka_unit_test_setup_teardown(io_packed, setup_packed, teardown),
                cmocka_unit_test_setup_teardown(discard_zeroes_flush, setup, teardown),
                cmocka_unit_test_setup_teardown(resize_interrupt, setup, teardown),
                cmocka_unit_test_setup_teardown(malformed, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
