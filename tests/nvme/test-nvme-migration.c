/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration of the NVMe controller, with our vfio-user client as the
 * VMM between two real servers on real sockets:
 *
 *   live_migration_io_in_flight   writes in flight at STOP, one batch whose
 *                                 doorbell reaches the source only while it
 *                                 is stopped, an outstanding AER, features;
 *                                 data verified before and after, I/O going
 *                                 on on the destination with the same queues
 *   live_migration_shadow_doorbells  the same with shadow doorbells and
 *                                 EventIdx (§5.7) in guest memory
 *   live_migration_cq_full        completions waiting for room in a full
 *                                 CQ travel and are posted by the destination
 *   dirty_reads_and_cqes_only     pages written by Read data and completion
 *                                 entries are reported, nothing else
 *   bad_streams_refused           truncated, corrupted, wrong-version,
 *                                 wrong-device, mismatched-namespace and
 *                                 checksummed-but-invalid streams: a clear
 *                                 error, the destination reset and not
 *                                 running, the source back to RUNNING and
 *                                 serving
 *
 * Semantics under test: a command the source fetched before STOP completes
 * on the source (the quiesce before the arc waits for it) and its
 * completion is in guest memory when STOP returns; a command still in the
 * SQ (not fetched, or its doorbell not yet seen) is fetched and executed by
 * the destination.  Every command completes exactly once.
 *
 * Guest RAM is one memfd mapped by both sides' clients, as RAM migration
 * would have copied it.  Storage is copied: each server has its own
 * backing files, and the source's are copied over the destination's while
 * the source is stopped (after STOP no write can reach them), so the test
 * proves the destination serves the data it was given, not the source's
 * files.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "nvme-srv.h"
#include "state/devstate.h"
#include "vfio-user/proto.h"

#define GPA 0x100000000ull
#define RAM (64ull << 20)
#define PAGE 4096u
#define BITMAP_LEN (RAM / PAGE / 8)
#define QUEUES 4
#define NVEC (QUEUES + 1)
#define NS1_SIZE (32ull << 20)
#define NS2_SIZE (16ull << 20)

typedef struct Side {
        NvmeSrv srv;
        VuClient *c;
        int irq_fds[NVEC];
} Side;

typedef struct Fx {
        char *dir;
        Side src, dst;
        VuGuestRam ram;
        NvmeVmm vmm;            /* the source's VMM; its driver moves to the destination */
        NvmeDrv *d;
        NvmeVmm dvmm;           /* the destination's VMM, same RAM */
        unsigned iothreads;     /* per controller (the destination's may differ: it is a host setting) */
} Fx;

static void add_ns(Side *s, const char *path, uint32_t nsid, uint64_t size, uint32_t bs) {
        BlkOpenOptions o = { .path = path, .fd = -1, .size = size };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(nvme_ctrl_ns_add(s->srv.c, nsid, b, bs, false), 0);
}

/* Both servers from an identical definition (same name and host UUID: same namespace identities). */
static void start_side(Fx *f, Side *s, const char *tag, uint64_t ns2_size) {
        /* With several I/O threads, the destination runs one fewer: queues land on other threads. */
        unsigned n = f->iothreads > 1 && s == &f->dst ? f->iothreads - 1 : f->iothreads;
        NvmeCtrlConfig cfg = { .name = "mig0", .serial = "VFU-MIG-1", .max_ioqs = QUEUES, .msix_nvec = NVEC,
                               .cntlid = 1, .poll_us = 20, .iothreads = n };
        memset(cfg.host_uuid, 9, 16);
        g_autofree char *sock = g_strdup_printf("%s/%s.sock", f->dir, tag);
        g_autofree char *ns1 = g_strdup_printf("%s/%s-ns1.img", f->dir, tag);
        g_autofree char *ns2 = g_strdup_printf("%s/%s-ns2.img", f->dir, tag);
        assert_int_equal(nvme_srv_start(&s->srv, &cfg, sock), 0);
        add_ns(s, ns1, 1, NS1_SIZE, 512);
        add_ns(s, ns2, 2, ns2_size, 4096);
}

static int setup(void **state) {
        Fx *f = g_new0(Fx, 1);
        f->iothreads = *state ? *(const unsigned *) *state : 1;
        f->dir = g_build_filename(BUILDDIR, "tests-nvme-mig-XXXXXX", NULL);
        assert_non_null(g_mkdtemp(f->dir));
        start_side(f, &f->src, "src", NS2_SIZE);
        assert_int_equal(nvme_vmm_connect(&f->vmm, f->src.srv.sock, GPA, RAM, NVEC), 0);
        f->src.c = f->vmm.c;
        f->d = &f->vmm.d;
        f->d->timeout_ms = 10000;
        *state = f;
        return 0;
}

static void dst_disconnect(Fx *f) {
        if (f->dvmm.c) {
                f->dvmm.ram.fd = -1;    /* the RAM is the source VMM's */
                nvme_vmm_disconnect(&f->dvmm);
        }
        if (f->dst.srv.c)
                nvme_srv_stop(&f->dst.srv);
        memset(&f->dst, 0, sizeof(f->dst));
        memset(&f->dvmm, 0, sizeof(f->dvmm));
}

static int teardown(void **state) {
        Fx *f = *state;
        dst_disconnect(f);
        nvme_vmm_disconnect(&f->vmm);
        nvme_srv_stop(&f->src.srv);
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        g_free(f->dir);
        g_free(f);
        return 0;
}

/* The destination: its own server and client, mapping the same guest RAM memfd. */
static void dst_connect(Fx *f, uint64_t ns2_size) {
        NvmeVmm *v = &f->dvmm;

        start_side(f, &f->dst, "dst", ns2_size);
        memset(v, 0, sizeof(*v));
        for (unsigned i = 0; i < G_N_ELEMENTS(v->irq_fds); i++)
                v->irq_fds[i] = -1;
        assert_int_equal(vu_client_connect(f->dst.srv.sock, &v->c), 0);
        assert_int_equal(vu_client_negotiate(v->c, NULL), 0);
        v->ram = f->vmm.ram;
        assert_int_equal(vu_client_map_ram(v->c, &v->ram), 0);
        uint16_t cmd = 0x6;
        assert_int_equal(vu_client_region_write(v->c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false), 0);
        v->nvec = NVEC;
        assert_int_equal(vu_client_enable_msix(v->c, NVEC, v->irq_fds), 0);
        f->dst.c = v->c;
}

/* ---- the VMM's migration calls ---------------------------------------------------------- */

static int mig_set(VuClient *c, uint32_t state) {
        struct vu_feature_mig_state st = { .device_state = state };
        return vu_client_device_feature(c, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st), NULL, 0,
                                        NULL);
}

static uint32_t mig_get(VuClient *c) {
        struct vu_feature_mig_state st = { 0 };
        size_t len;
        assert_int_equal(vu_client_device_feature(c, VU_FEATURE_GET | VU_FEATURE_MIG_DEVICE_STATE, NULL, 0, &st,
                                                  sizeof(st), &len),
                         0);
        return st.device_state;
}

static GByteArray *read_stream(VuClient *c) {
        GByteArray *s = g_byte_array_new();
        uint8_t buf[1000];
        int n;
        while ((n = vu_client_mig_data_read(c, buf, sizeof(buf))) > 0)
                g_byte_array_append(s, buf, (guint) n);
        assert_int_equal(n, 0);
        return s;
}

/* RESUMING, the stream in pieces, STOP.  The STOP result; *werr the first write error. */
static int write_stream(VuClient *c, const uint8_t *s, size_t len, int *werr) {
        *werr = 0;
        assert_int_equal(mig_set(c, VU_MIG_RESUMING), 0);
        for (size_t off = 0; off < len && *werr == 0; off += 777)
                *werr = vu_client_mig_data_write(c, s + off, (uint32_t) MIN(777, len - off));
        return mig_set(c, VU_MIG_STOP);
}

static uint32_t csts(VuClient *c) {
        uint32_t v = 0;
        assert_int_equal(vu_client_region_read(c, VU_PCI_BAR0_REGION, NVME_REG_CSTS, &v, 4), 0);
        return v;
}

/* ---- the guest ------------------------------------------------------------------------------ */

static void fill(NvmeDrv *d, uint64_t gpa, size_t len, uint32_t seed) {
        uint32_t *p = nvme_drv_ptr(d, gpa);
        for (size_t i = 0; i < len / 4; i++)
                p[i] = seed * 2654435761u + (uint32_t) i;
}

static void check(NvmeDrv *d, uint64_t gpa, size_t len, uint32_t seed) {
        const uint32_t *p = nvme_drv_ptr(d, gpa);
        for (size_t i = 0; i < len / 4; i++)
                if (p[i] != seed * 2654435761u + (uint32_t) i)
                        fail_msg("data of seed %u differs at word %zu", seed, i);
}

static void queue_write(NvmeDrv *d, uint16_t qid, uint64_t slba, uint32_t nlb, uint64_t gpa) {
        NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw10 = (uint32_t) slba, .cdw11 = (uint32_t) (slba >> 32),
                      .cdw12 = nlb - 1 };
        nvme_drv_build_prps(d, &c, gpa, (uint64_t) nlb * 512);
        nvme_drv_queue(d, qid, &c);
}

#define BATCH 24
#define LATE 8
#define CHUNK (64u * 1024)

/* Storage copied while the source cannot write any more. */
static void copy_storage(Fx *f) {
        for (unsigned ns = 1; ns <= 2; ns++) {
                g_autofree char *from = g_strdup_printf("%s/src-ns%u.img", f->dir, ns);
                g_autofree char *to = g_strdup_printf("%s/dst-ns%u.img", f->dir, ns);
                g_autofree char *data = NULL;
                gsize len;
                assert_true(g_file_get_contents(from, &data, &len, NULL));
                int fd = open(to, O_WRONLY);
                assert_true(fd >= 0);
                assert_int_equal(pwrite(fd, data, len, 0), (ssize_t) len);
                close(fd);
        }
}

/* Destination: RESUMING with the stream, STOP, RUNNING; the driver moves over (same RAM and queues). */
static NvmeDrv *switch_over(Fx *f, const GByteArray *st) {
        int werr;
        assert_int_equal(write_stream(f->dst.c, st->data, st->len, &werr), 0);
        assert_int_equal(werr, 0);
        assert_int_equal(mig_get(f->dst.c), VU_MIG_STOP);
        assert_int_equal(mig_set(f->dst.c, VU_MIG_RUNNING), 0);
        assert_int_equal(csts(f->dst.c) & 3, NVME_CSTS_RDY);
        f->dvmm.d = *f->d;
        f->dvmm.d.opaque = &f->dvmm;
        return &f->dvmm.d;
}

static void log_ctl(VuClient *c, bool start);
static void log_report(VuClient *c, uint8_t *bitmap);

static bool page_dirty(const uint8_t *bm, uint64_t gpa) {
        uint64_t p = (gpa - GPA) / PAGE;
        return bm[p / 8] & (1u << (p % 8));
}

/* The whole path: source stopped with I/O in flight, state and storage moved, destination running. */
static void live_migration(Fx *f, bool shadow) {
        NvmeDrv *d = f->d;

        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_set_features(d, NVME_FEAT_NUM_QUEUES, (QUEUES - 1) | (QUEUES - 1) << 16, NULL), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 64, 1), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 2, 128, 2), 0);
        if (shadow)
                assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        assert_int_equal(nvme_drv_set_features(d, NVME_FEAT_ARBITRATION, 0x03020107, NULL), 0);
        assert_int_equal(nvme_drv_set_features(d, NVME_FEAT_TEMP_THRESH, 350, NULL), 0);
        assert_int_equal(nvme_drv_set_features(d, NVME_FEAT_ASYNC_EVENT, 1u << 8, NULL), 0);
        NvmeSqe aer = { .opcode = NVME_ADM_ASYNC_EVENT };
        uint16_t aer_cid = nvme_drv_submit(d, 0, &aer);

        /* Data written and verified before. */
        uint64_t base = nvme_drv_alloc(d, (BATCH + LATE + 2) * CHUNK, PAGE);
        fill(d, base, CHUNK, 1000);
        assert_int_equal(nvme_drv_rw(d, 2, true, 1, 4096, CHUNK / 512, 512, base, false), 0);
        memset(nvme_drv_ptr(d, base), 0, CHUNK);
        assert_int_equal(nvme_drv_rw(d, 2, false, 1, 4096, CHUNK / 512, 512, base, false), 0);
        check(d, base, CHUNK, 1000);

        /* PRE_COPY: the device keeps running (RAM is copied by the dirty log); its pre-copy stream is empty. */
        g_autofree uint8_t *bm = g_malloc0(BITMAP_LEN);
        log_ctl(f->src.c, true);
        log_report(f->src.c, bm);
        assert_int_equal(mig_set(f->src.c, VU_MIG_PRE_COPY), 0);
        g_autoptr(GByteArray) pre = read_stream(f->src.c);
        assert_int_equal(pre->len, 0);

        /* A batch in flight as the source stops. */
        for (unsigned i = 0; i < BATCH; i++) {
                fill(d, base + (1 + i) * CHUNK, CHUNK, i);
                queue_write(d, 1, (uint64_t) i * (CHUNK / 512), CHUNK / 512, base + (1 + i) * CHUNK);
        }
        nvme_drv_ring(d, 1);
        assert_int_equal(mig_set(f->src.c, VU_MIG_STOP_COPY), 0);
        unsigned on_src = nvme_drv_posted(d, 1);
        g_autoptr(GByteArray) st = read_stream(f->src.c);
        assert_true(st->len > 100);
        /* A batch whose doorbell reaches the source only while it is stopped: carried, run by the destination. */
        for (unsigned i = 0; i < LATE; i++) {
                fill(d, base + (1 + BATCH + i) * CHUNK, CHUNK, 100 + i);
                queue_write(d, 2, (uint64_t) (BATCH + i) * (CHUNK / 512), CHUNK / 512, base + (1 + BATCH + i) * CHUNK);
        }
        assert_int_equal(mig_set(f->src.c, VU_MIG_STOP), 0);
        nvme_drv_ring(d, 2);
        /* The state must be read again now that the doorbell was posted: STOP → STOP_COPY → read → STOP. */
        assert_int_equal(mig_set(f->src.c, VU_MIG_STOP_COPY), 0);
        g_byte_array_unref(st);
        st = read_stream(f->src.c);
        assert_int_equal(mig_set(f->src.c, VU_MIG_STOP), 0);
        assert_int_equal(nvme_drv_posted(d, 1), on_src);
        assert_int_equal(nvme_drv_posted(d, 2), 0);
        /* The completions the source wrote while stopping are in the last dirty report; the data it only read is not. */
        log_report(f->src.c, bm);
        log_ctl(f->src.c, false);
        if (on_src > 0)
                assert_true(page_dirty(bm, d->q[1].cq_gpa));
        for (unsigned i = 0; i < BATCH + LATE; i++)
                assert_false(page_dirty(bm, base + (1 + i) * CHUNK));
        print_message("in flight at STOP: %u of %u completed on the source, %u + %u left for the destination; "
                      "state %u bytes\n", on_src, BATCH, BATCH - on_src, LATE, st->len);
        g_autoptr(GString) desc = g_string_new(NULL);
        assert_int_equal(devstate_describe(st->data, st->len, desc), 0);

        dst_connect(f, NS2_SIZE);
        copy_storage(f);
        d = switch_over(f, st);
        unsigned seen1 = 0, seen2 = 0;
        uint32_t cids1 = 0, cids2 = 0;
        NvmeCqe e;
        while (seen1 < BATCH) {
                assert_int_equal(nvme_drv_reap(d, 1, &e, 10000), 0);
                assert_int_equal(nvme_drv_status(&e), 0);
                assert_true(e.cid < 32 && !(cids1 & (1u << e.cid)));
                cids1 |= 1u << e.cid;
                seen1++;
        }
        while (seen2 < LATE) {
                assert_int_equal(nvme_drv_reap(d, 2, &e, 10000), 0);
                assert_int_equal(nvme_drv_status(&e), 0);
                assert_true(e.cid < 32 && !(cids2 & (1u << e.cid)));
                cids2 |= 1u << e.cid;
                seen2++;
        }
        assert_int_equal(nvme_drv_poll(d, 1, &e), 0);
        assert_int_equal(nvme_drv_poll(d, 2, &e), 0);

        /* The outstanding AER is the destination's now: a namespace change completes it. */
        assert_int_equal(nvme_ctrl_ns_resize(f->dst.srv.c, 2, NS2_SIZE * 2), 0);
        assert_int_equal(nvme_drv_reap(d, 0, &e, 10000), 0);
        assert_int_equal(e.cid, aer_cid);
        if ((e.dw0 & 7) != 2) print_error("AER dw0 0x%08x\n", e.dw0);
        assert_int_equal(e.dw0 & 7, 2);         /* notice */

        /* Features came along. */
        NvmeSqe gf = { .opcode = NVME_ADM_GET_FEATURES, .cdw10 = NVME_FEAT_ARBITRATION };
        assert_int_equal(nvme_drv_cmd(d, 0, &gf, &e), 0);
        assert_int_equal(e.dw0, 0x03020107);
        gf.cdw10 = NVME_FEAT_TEMP_THRESH;
        assert_int_equal(nvme_drv_cmd(d, 0, &gf, &e), 0);
        assert_int_equal(e.dw0, 350);

        /* Every byte written before and across the switch reads back from the destination. */
        uint64_t rd = base + (1 + BATCH + LATE) * CHUNK;
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 4096, CHUNK / 512, 512, rd, false), 0);
        memcpy(nvme_drv_ptr(d, base), nvme_drv_ptr(d, rd), CHUNK);
        check(d, base, CHUNK, 1000);
        for (unsigned i = 0; i < BATCH + LATE; i++) {
                assert_int_equal(nvme_drv_rw(d, (uint16_t) (1 + i % 2), false, 1, (uint64_t) i * (CHUNK / 512),
                                             CHUNK / 512, 512, rd, false),
                                 0);
                check(d, rd, CHUNK, i < BATCH ? i : 100 + (i - BATCH));
        }
        /* And I/O goes on: a new write, read back, on both queues. */
        fill(d, base, CHUNK, 7777);
        assert_int_equal(nvme_drv_rw(d, 2, true, 1, 60000, CHUNK / 512, 512, base, true), 0);
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 60000, CHUNK / 512, 512, rd, false), 0);
        check(d, rd, CHUNK, 7777);
        /* The source's files never saw that write. */
        g_autofree char *srcf = g_strdup_printf("%s/src-ns1.img", f->dir);
        int fd = open(srcf, O_RDONLY);
        assert_true(fd >= 0);
        g_autofree uint8_t *chk = g_malloc(CHUNK);
        assert_int_equal(pread(fd, chk, CHUNK, 60000ull * 512), CHUNK);
        close(fd);
        assert_memory_not_equal(chk, nvme_drv_ptr(d, rd), CHUNK);
        if (shadow)
                print_message("shadow doorbells: %" G_GUINT64_FORMAT " MMIO doorbell writes in all\n",
                              d->mmio_doorbells);
}

static void test_live_migration_io_in_flight(void **state) {
        live_migration(*state, false);
}

static void test_live_migration_shadow_doorbells(void **state) {
        live_migration(*state, true);
}

/*
 * A full CQ: completions waiting for room travel with the state and are
 * posted by the destination once the guest frees entries.
 */
static void test_live_migration_cq_full(void **state) {
        Fx *f = *state;
        NvmeDrv *d = f->d;
        NvmeStats st0, st1;

        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 3, 4, 3), 0);   /* 3 usable entries each */
        uint64_t buf = nvme_drv_alloc(d, 6 * PAGE, PAGE);
        nvme_ctrl_get_stats(f->src.srv.c, &st0);
        for (unsigned i = 0; i < 3; i++) {
                fill(d, buf + i * PAGE, PAGE, 500 + i);
                queue_write(d, 3, 1000 + i * 8, 8, buf + i * PAGE);
        }
        nvme_drv_ring(d, 3);
        for (int i = 0; i < 1000 && nvme_drv_posted(d, 3) < 3; i++)
                g_usleep(1000);
        assert_int_equal(nvme_drv_posted(d, 3), 3);   /* the CQ is full: nothing consumed */
        for (unsigned i = 3; i < 6; i++) {
                fill(d, buf + i * PAGE, PAGE, 500 + i);
                queue_write(d, 3, 1000 + i * 8, 8, buf + i * PAGE);
        }
        nvme_drv_ring(d, 3);
        /* At least one more command completes on the source and waits for room. */
        for (int i = 0; i < 1000; i++) {
                nvme_ctrl_get_stats(f->src.srv.c, &st1);
                if (st1.commands >= st0.commands + 4)
                        break;
                g_usleep(1000);
        }
        assert_true(st1.commands >= st0.commands + 4);

        assert_int_equal(mig_set(f->src.c, VU_MIG_STOP_COPY), 0);
        g_autoptr(GByteArray) st = read_stream(f->src.c);
        assert_int_equal(mig_set(f->src.c, VU_MIG_STOP), 0);
        nvme_ctrl_get_stats(f->src.srv.c, &st1);
        print_message("CQ full at STOP: %" G_GUINT64_FORMAT " of 6 completed on the source (3 posted, the rest "
                      "waiting for room)\n", st1.commands - st0.commands);
        dst_connect(f, NS2_SIZE);
        copy_storage(f);
        d = switch_over(f, st);

        uint32_t cids = 0;
        NvmeCqe e;
        for (unsigned i = 0; i < 6; i++) {
                assert_int_equal(nvme_drv_reap(d, 3, &e, 10000), 0);
                assert_int_equal(nvme_drv_status(&e), 0);
                assert_true(e.cid < 6 && !(cids & (1u << e.cid)));
                cids |= 1u << e.cid;
        }
        assert_int_equal(nvme_drv_poll(d, 3, &e), 0);
        uint64_t rd = nvme_drv_alloc(d, PAGE, PAGE);
        for (unsigned i = 0; i < 6; i++) {
                assert_int_equal(nvme_drv_rw(d, 3, false, 1, 1000 + i * 8, 8, 512, rd, false), 0);
                check(d, rd, PAGE, 500 + i);
        }
}

/* ---- dirty logging ------------------------------------------------------------------------- */

static void log_ctl(VuClient *c, bool start) {
        struct vu_feature_dma_logging_control lc = { .page_size = PAGE, .num_ranges = 0 };
        struct vu_feature_dma_logging_control out;
        if (start)
                assert_int_equal(vu_client_device_feature(c, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &lc,
                                                          sizeof(lc), &out, sizeof(out), NULL),
                                 0);
        else
                assert_int_equal(vu_client_device_feature(c, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_STOP, NULL, 0,
                                                          NULL, 0, NULL),
                                 0);
}

static void log_report(VuClient *c, uint8_t *bitmap) {
        struct vu_feature_dma_logging_report rep = { .iova = GPA, .length = RAM, .page_size = PAGE };
        g_autofree uint8_t *out = g_malloc0(sizeof(rep) + BITMAP_LEN);
        size_t len;
        assert_int_equal(vu_client_device_feature(c, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep, sizeof(rep),
                                                  out, sizeof(rep) + BITMAP_LEN, &len),
                         0);
        assert_int_equal(len, sizeof(rep) + BITMAP_LEN);
        memcpy(bitmap, out + sizeof(rep), BITMAP_LEN);
}

static void expect_pages(const uint8_t *bitmap, const uint8_t *want) {
        for (size_t p = 0; p < RAM / PAGE; p++) {
                bool got = bitmap[p / 8] & (1u << (p % 8)), exp = want[p / 8] & (1u << (p % 8));
                if (got != exp)
                        fail_msg("page %#" G_GINT64_MODIFIER "x %s", GPA + p * PAGE,
                                 got ? "reported but not written by the device" : "written but not reported");
        }
}

static void want_range(uint8_t *want, uint64_t gpa, uint64_t len) {
        for (uint64_t p = (gpa - GPA) / PAGE; p <= (gpa - GPA + len - 1) / PAGE; p++)
                want[p / 8] |= 1u << (p % 8);
}

static void test_dirty_reads_and_cqes_only(void **state) {
        Fx *f = *state;
        NvmeDrv *d = f->d;
        g_autofree uint8_t *bm = g_malloc0(BITMAP_LEN), *want = g_malloc0(BITMAP_LEN);

        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 64, 1), 0);
        uint64_t wbuf = nvme_drv_alloc(d, 8 * PAGE, PAGE), rbuf = nvme_drv_alloc(d, 8 * PAGE, PAGE);
        fill(d, wbuf, 8 * PAGE, 5);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 0, 64, 512, wbuf, false), 0);

        log_ctl(f->src.c, true);
        log_report(f->src.c, bm);       /* start from a clean slate */

        /* A write: the device only reads guest memory; its completion entry is written. */
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 64, 64, 512, wbuf, false), 0);
        /* A read into 5 pages at an offset inside the first one: those pages, and the CQE. */
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 0, 36, 512, rbuf + 512, false), 0);
        check(d, rbuf + 512, 36 * 512, 5);
        log_report(f->src.c, bm);
        want_range(want, rbuf + 512, 36 * 512);
        want_range(want, d->q[1].cq_gpa, 64 * sizeof(NvmeCqe));
        expect_pages(bm, want);

        /* An admin Identify: its data page and the admin CQ entry. */
        memset(want, 0, BITMAP_LEN);
        uint64_t idbuf = nvme_drv_alloc(d, PAGE, PAGE);
        assert_int_equal(nvme_drv_identify(d, 1, 0, idbuf), 0);
        log_report(f->src.c, bm);
        want_range(want, idbuf, PAGE);
        want_range(want, d->q[0].cq_gpa, 32 * sizeof(NvmeCqe));
        expect_pages(bm, want);

        /* Nothing more: the report cleared, no device write since. */
        log_report(f->src.c, bm);
        memset(want, 0, BITMAP_LEN);
        expect_pages(bm, want);

        /* Shadow doorbells: EventIdx updates are device writes too (§5.7). */
        assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        uint64_t ei_gpa = GPA + (uint64_t) ((uint8_t *) d->db_ei - d->ram);
        log_report(f->src.c, bm);
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 0, 8, 512, rbuf, false), 0);
        g_usleep(50 * 1000);    /* the controller goes idle and arms EventIdx */
        log_report(f->src.c, bm);
        memset(want, 0, BITMAP_LEN);
        want_range(want, rbuf, PAGE);
        want_range(want, d->q[1].cq_gpa, 64 * sizeof(NvmeCqe));
        want_range(want, ei_gpa, PAGE);
        expect_pages(bm, want);
        log_ctl(f->src.c, false);
}

/* ---- bad streams ----------------------------------------------------------------------------- */

/* Find field (sec, inst, field) in a stream; its value's offset and length. */
static bool find_field(const GByteArray *s, uint16_t sec, uint32_t inst, uint16_t field, size_t *voff, uint32_t *vlen) {
        const uint8_t *p = s->data;
        size_t off = 8 + 2 + 2, n = s->len;
        uint16_t l16;

        memcpy(&l16, p + off, 2);
        off += 2 + l16;
        memcpy(&l16, p + off, 2);
        off += 2 + l16;
        while (off + 12 <= n) {
                uint16_t id;
                uint32_t in, len;
                memcpy(&id, p + off, 2);
                memcpy(&in, p + off + 4, 4);
                memcpy(&len, p + off + 8, 4);
                size_t body = off + 12, end = body + len;
                if (id == 0)
                        return false;
                if (id == sec && in == inst) {
                        for (size_t q = body; q + 8 <= end;) {
                                uint16_t fid;
                                uint32_t flen;
                                memcpy(&fid, p + q, 2);
                                memcpy(&flen, p + q + 4, 4);
                                if (fid == field) {
                                        *voff = q + 8;
                                        *vlen = flen;
                                        return true;
                                }
                                q += 8 + flen;
                        }
                }
                off = end;
        }
        return false;
}

/* A copy with one field's value replaced and the checksum made right again. */
static GByteArray *patched(const GByteArray *s, uint16_t sec, uint32_t inst, uint16_t field, uint64_t v) {
        size_t off = 0;
        uint32_t len = 0;
        assert_true(find_field(s, sec, inst, field, &off, &len));
        GByteArray *o = g_byte_array_new();
        g_byte_array_append(o, s->data, s->len);
        assert_true(len <= 16);
        uint8_t val[16] = { 0 };
        memcpy(val, &v, sizeof(v));
        memcpy(o->data + off, val, len);
        uint32_t crc = devstate_crc32c(0, o->data, o->len - 4);
        memcpy(o->data + o->len - 4, &crc, 4);
        return o;
}

/* The destination refuses s: error, ERROR state, controller not ready; a device reset brings it back to RUNNING. */
static void expect_refused(Fx *f, const char *what, const uint8_t *s, size_t len, int want_errno) {
        int werr;
        int r = write_stream(f->dst.c, s, len, &werr);
        const char *why = nvme_ctrl_mig_error(f->dst.srv.c);
        print_message("%-28s write %s, STOP %s: %s\n", what, werr ? g_strerror(-werr) : "ok", r ? g_strerror(-r) : "ok",
                      why ? why : "(no reason)");
        assert_true(r < 0 || werr < 0);
        assert_true(r < 0);             /* never reaches STOP on it */
        assert_non_null(why);
        if (want_errno)
                assert_int_equal(werr ? werr : -want_errno, -want_errno);
        assert_int_equal(mig_get(f->dst.c), VU_MIG_ERROR);
        assert_int_equal(csts(f->dst.c) & NVME_CSTS_RDY, 0);
        assert_string_equal(nvme_ctrl_state_string(f->dst.srv.c), "disabled");
        assert_int_equal(vu_client_reset(f->dst.c), 0);
        assert_int_equal(mig_get(f->dst.c), VU_MIG_RUNNING);
        assert_int_equal(csts(f->dst.c) & NVME_CSTS_RDY, 0);
}

static void test_bad_streams_refused(void **state) {
        Fx *f = *state;
        NvmeDrv *d = f->d;

        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 64, 1), 0);
        uint64_t buf = nvme_drv_alloc(d, CHUNK, PAGE), buf2 = nvme_drv_alloc(d, CHUNK, PAGE);
        fill(d, buf, CHUNK, 42);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 8, CHUNK / 512, 512, buf, false), 0);

        /* A good stream, then the source goes back to RUNNING (the migration is abandoned). */
        assert_int_equal(mig_set(f->src.c, VU_MIG_STOP_COPY), 0);
        g_autoptr(GByteArray) good = read_stream(f->src.c);
        assert_int_equal(mig_set(f->src.c, VU_MIG_RUNNING), 0);
        assert_int_equal(mig_get(f->src.c), VU_MIG_RUNNING);

        dst_connect(f, NS2_SIZE);
        expect_refused(f, "truncated", good->data, good->len / 2, 0);
        expect_refused(f, "truncated by 1 byte", good->data, good->len - 1, 0);
        g_autoptr(GByteArray) bad = g_byte_array_new();
        g_byte_array_append(bad, good->data, good->len);
        bad->data[bad->len / 2] ^= 0x40;
        expect_refused(f, "one bit flipped", bad->data, bad->len, 0);
        g_byte_array_set_size(bad, 0);
        g_byte_array_append(bad, good->data, good->len);
        bad->data[8] = 2;                       /* format major 2 */
        expect_refused(f, "format version 2", bad->data, bad->len, EPROTONOSUPPORT);
        g_byte_array_set_size(bad, 0);
        g_byte_array_append(bad, good->data, good->len);
        g_byte_array_append(bad, (const uint8_t *) "x", 1);
        expect_refused(f, "trailing byte", bad->data, bad->len, 0);

        /* A virtio-net stream into an NVMe controller. */
        {
                g_autoptr(DevStateWriter) w = devstate_writer_new("virtio-net", NULL);
                devstate_writer_begin(w, 1, 0, DEVSTATE_F_MANDATORY);
                devstate_put_u16(w, 1, 1);
                devstate_writer_end(w);
                assert_int_equal(devstate_writer_finish(w), 0);
                size_t len;
                const uint8_t *p = devstate_writer_data(w, &len);
                expect_refused(f, "virtio-net stream", p, len, ENODEV);
        }

        /* Checksummed, well-formed, and wrong. */
        static const struct {
                const char *what;
                uint16_t sec;
                uint32_t inst;
                uint16_t field;
                uint64_t v;
        } lies[] = {
                { "CQ size > MQES + 1", 3, 1, 1, 4096 },
                { "SQ tail beyond its size", 4, 1, 5, 64 },
                { "SQ head beyond its size", 4, 1, 4, 1000 },
                { "SQ on a missing CQ", 4, 1, 1, 3 },
                { "CQ vector >= nvec", 3, 1, 6, NVEC },
                { "CQ phase 2", 3, 1, 5, 2 },
                { "CQ base not a page", 3, 1, 2, GPA + 8 },
                { "CC.EN without CSTS.RDY", 1, 0, 5, 0 },
                { "CC reserved bit 28", 1, 0, 4, 0x00460001 | (1u << 28) },
                { "controller state 9", 1, 0, 10, 9 },
                { "fewer I/O queues", 1, 0, 1, QUEUES - 1 },
                { "another namespace UUID", 5, 1, 6, 0x1234 },
                { "namespace 1 smaller", 5, 1, 2, 1000 },
                { "number of queues 200", 2, 0, 8, 200 },
                { "error log head 64", 1, 0, 20, 64 },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(lies); i++) {
                g_autoptr(GByteArray) p = patched(good, lies[i].sec, lies[i].inst, lies[i].field, lies[i].v);
                expect_refused(f, lies[i].what, p->data, p->len, 0);
        }

        /* A destination whose namespace 2 has another size. */
        dst_disconnect(f);
        dst_connect(f, NS2_SIZE * 2);
        expect_refused(f, "namespace size differs", good->data, good->len, 0);
        assert_non_null(strstr(nvme_ctrl_mig_error(f->dst.srv.c), "namespace 2"));

        /* The good stream itself is accepted there once the definitions match. */
        dst_disconnect(f);
        dst_connect(f, NS2_SIZE);
        int werr;
        assert_int_equal(write_stream(f->dst.c, good->data, good->len, &werr), 0);
        assert_int_equal(werr, 0);
        assert_int_equal(csts(f->dst.c) & NVME_CSTS_RDY, NVME_CSTS_RDY);

        /* The source kept serving all along. */
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 8, CHUNK / 512, 512, buf2, false), 0);
        check(d, buf2, CHUNK, 42);
        fill(d, buf, CHUNK, 43);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 8, CHUNK / 512, 512, buf, false), 0);
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 8, CHUNK / 512, 512, buf2, false), 0);
        check(d, buf2, CHUNK, 43);
}

int main(void) {
        static unsigned three = 3;
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_live_migration_io_in_flight, setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_migration_shadow_doorbells, setup, teardown),
                cmocka_unit_test_setup_teardown(test_live_migration_cq_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dirty_reads_and_cqes_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_streams_refused, setup, teardown),
                /* The same with three I/O threads on the source, two on the destination. */
                cmocka_unit_test_prestate_setup_teardown(test_live_migration_io_in_flight, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_live_migration_shadow_doorbells, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_live_migration_cq_full, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_dirty_reads_and_cqes_only, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_bad_streams_refused, setup, teardown, &three),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
