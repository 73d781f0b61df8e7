/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration of virtio-blk over real vfio-user sockets, with our client
 * as the VMM: a source and a destination device on their own server threads
 * and the same disk file (shared storage), guest RAM a memfd on each side
 * that the VMM copies as a migration would (everything once, then the pages
 * the device reports dirty).
 *
 *   live_split, live_packed   verified I/O on two queues across PRE_COPY →
 *                             STOP_COPY → RESUMING → RUNNING with requests in
 *                             flight when the source stops: they complete
 *                             before the state is saved, every byte the
 *                             device wrote is reported, ring positions and
 *                             the write cache setting continue there
 *   refused_streams           a stream for another disk or with other
 *                             options is refused with the reason; the
 *                             destination stays reset
 */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "srv-thread.h"
#include "vblk-driver.h"
#include "vblk/vblk.h"
#include "vfio-user/client.h"
#include "vfio-user/migration.h"
#include "vfio-user/server.h"
#include "virtio/virtio-pci.h"

#define TMO 5000
#define RAM_GPA 0x100000000ull
#define RAM_SIZE (32ull << 20)
#define PAGE 4096u
#define BITMAP_LEN (RAM_SIZE / PAGE / 8)
#define DISK (16u << 20)
#define NQ 2
#define QD 16
#define LEN 8192u

typedef struct Side {
        VBlk *b;
        VuServer *s;
        SrvThread thread;
        char sock[80];
        VuClient *c;
        VuGuestRam ram;
        int irq[NQ + 1];
} Side;

typedef struct Mig {
        char path[64];
        int fd;
        Side src, dst;
        Side *cur;
        Vd d;
        VbDrv v;
        bool packed;
        uint64_t data;                  /* QD * NQ * LEN bytes of request buffers */
        unsigned round;
} Mig;

static int irq_fire(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps irq_ops = { .fire = irq_fire };

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Mig *) o)->cur->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len);
}

static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        return vu_client_region_write(((Mig *) o)->cur->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len, true);
}

static int c_wait(void *o, unsigned vector, int ms) {
        Side *sd = ((Mig *) o)->cur;
        return vector <= NQ ? vu_client_wait_irq(sd->irq[vector], ms) : 0;
}

static const VdOps client_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

static void side_start(Mig *t, Side *sd, unsigned which, const char *id, const char *serial) {
        VBlkOptions o = { .queues = NQ, .queue_size = 128, .packed = t->packed, .serial = serial,
                          .migration_id = id };
        VuServerConfig scfg = { 0 };
        BlkOpenOptions bo = { .path = t->path, .fd = -1 };
        BlkBackend *be;

        assert_int_equal(blk_backend_open(&bo, &be), 0);
        assert_int_equal(vblk_new(&o, be, &sd->b), 0);
        assert_int_equal(vblk_server_config(sd->b, &scfg), 0);
        scfg.name = which ? "vblk-dst" : "vblk-src";
        assert_int_equal(vu_server_new(&scfg, &sd->s), 0);
        vblk_attach(sd->b, vu_server_mem(sd->s), &irq_ops, sd->s);
        g_snprintf(sd->sock, sizeof(sd->sock), "/tmp/vfu-bm-%d-%u.sock", getpid(), which);
        assert_int_equal(vu_server_listen(sd->s, sd->sock), 0);
        assert_int_equal(srv_thread_start(&sd->thread, sd->s), 0);
        assert_int_equal(vu_client_connect(sd->sock, &sd->c), 0);
        assert_int_equal(vu_client_negotiate(sd->c, NULL), 0);
        assert_int_equal(vu_guest_ram_new(RAM_GPA, RAM_SIZE, &sd->ram), 0);
        assert_int_equal(vu_client_map_ram(sd->c, &sd->ram), 0);
        assert_int_equal(vu_client_enable_msix(sd->c, NQ + 1, sd->irq), 0);
}

static void side_stop(Side *sd) {
        if (sd->c) {
                vu_client_free(sd->c);
                for (unsigned i = 0; i <= NQ; i++)
                        close(sd->irq[i]);
        }
        if (sd->s) {
                srv_thread_stop(&sd->thread);
                vu_server_free(sd->s);
        }
        vblk_free(sd->b);
        if (sd->ram.host)
                vu_guest_ram_free(&sd->ram);
        unlink(sd->sock);
        memset(sd, 0, sizeof(*sd));
}

static int setup(void **state) {
        Mig *t = calloc(1, sizeof(*t));

        strcpy(t->path, "/tmp/vfu-bm-XXXXXX");
        t->fd = mkstemp(t->path);
        assert_true(t->fd >= 0);
        assert_int_equal(ftruncate(t->fd, DISK), 0);
        *state = t;
        return 0;
}

static int teardown(void **state) {
        Mig *t = *state;

        vb_fini(&t->v);
        side_stop(&t->src);
        side_stop(&t->dst);
        close(t->fd);
        unlink(t->path);
        free(t);
        return 0;
}

/* ---- the VMM's migration calls ---------------------------------------------------------- */

static int mig_set(Side *sd, uint32_t state) {
        struct vu_feature_mig_state st = { .device_state = state };

        return vu_client_device_feature(sd->c, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st), NULL, 0,
                                        NULL);
}

static void log_start(Side *sd) {
        struct vu_feature_dma_logging_control c = { .page_size = PAGE, .num_ranges = 0 };
        struct vu_feature_dma_logging_control out;

        assert_int_equal(vu_client_device_feature(sd->c, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &c, sizeof(c),
                                                  &out, sizeof(out), NULL),
                         0);
}

static void log_stop(Side *sd) {
        assert_int_equal(vu_client_device_feature(sd->c, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_STOP, NULL, 0, NULL, 0,
                                                  NULL),
                         0);
}

static void log_report(Side *sd, uint8_t bitmap[BITMAP_LEN]) {
        struct vu_feature_dma_logging_report rep = { .iova = RAM_GPA, .length = RAM_SIZE, .page_size = PAGE };
        g_autofree uint8_t *out = g_malloc0(sizeof(rep) + BITMAP_LEN);
        size_t len;

        assert_int_equal(vu_client_device_feature(sd->c, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep,
                                                  sizeof(rep), out, sizeof(rep) + BITMAP_LEN, &len),
                         0);
        assert_int_equal(len, sizeof(rep) + BITMAP_LEN);
        memcpy(bitmap, out + sizeof(rep), BITMAP_LEN);
}

static unsigned copy_dirty(Mig *t, const uint8_t bitmap[BITMAP_LEN]) {
        unsigned n = 0;

        for (size_t p = 0; p < RAM_SIZE / PAGE; p++)
                if (bitmap[p / 8] & (1u << (p % 8))) {
                        memcpy(t->dst.ram.host + p * PAGE, t->src.ram.host + p * PAGE, PAGE);
                        n++;
                }
        return n;
}

static GByteArray *read_stream(Side *sd) {
        GByteArray *s = g_byte_array_new();
        uint8_t buf[300];
        int n;

        while ((n = vu_client_mig_data_read(sd->c, buf, sizeof(buf))) > 0)
                g_byte_array_append(s, buf, (guint) n);
        assert_int_equal(n, 0);
        assert_true(s->len > 0);
        return s;
}

static int write_stream(Side *sd, const GByteArray *s, int *write_err) {
        int r = mig_set(sd, VU_MIG_RESUMING);

        *write_err = 0;
        if (r < 0)
                return r;
        for (size_t off = 0; off < s->len && *write_err == 0; off += 1000)
                *write_err = vu_client_mig_data_write(sd->c, s->data + off, (uint32_t) MIN(1000, s->len - off));
        return mig_set(sd, VU_MIG_STOP);
}

static void switch_ram(Mig *t) {
        void *p = mmap(t->src.ram.host, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, t->dst.ram.fd, 0);

        assert_ptr_equal(p, t->src.ram.host);
        t->cur = &t->dst;
}

static void retire_source(Mig *t) {
        VuGuestRam keep = t->src.ram;

        t->src.ram = (VuGuestRam) { .fd = -1 };
        side_stop(&t->src);
        t->src.ram = keep;
}

/* ---- the guest ---------------------------------------------------------------------------------- */

static uint8_t *ram(Mig *t, uint64_t gpa) {
        return t->src.ram.host + (gpa - RAM_GPA);      /* the test's view: whichever side backs it now */
}

static void pattern(uint8_t *p, size_t len, uint64_t seed) {
        for (size_t i = 0; i < len; i += 8) {
                uint64_t v = seed * 0x9e3779b97f4a7c15ull + i;
                memcpy(p + i, &v, 8);
        }
}

/* Slot k (queue k % NQ) covers its own sectors; round r's pattern is seeded by (r, k). */
static uint64_t slot_sector(unsigned k) {
        return (uint64_t) k * LEN / 512;
}

static void submit_round(Mig *t, bool write) {
        for (unsigned k = 0; k < NQ * QD; k++) {
                uint64_t buf = t->data + (uint64_t) k * LEN;
                if (write)
                        pattern(ram(t, buf), LEN, t->round * 1000 + k);
                else
                        memset(ram(t, buf), 0, LEN);
                assert_int_equal(vb_submit(&t->v, k % NQ, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, slot_sector(k),
                                           buf, LEN, NULL, 0, GUINT_TO_POINTER(k)), 0);
        }
        for (unsigned q = 0; q < NQ; q++)
                vb_kick(&t->v, q);
}

static void complete_round(Mig *t, bool write) {
        uint8_t want[LEN];

        for (unsigned q = 0; q < NQ; q++)
                for (unsigned i = 0; i < QD; i++) {
                        uint8_t st;
                        void *user;
                        assert_int_equal(vb_complete(&t->v, q, &st, NULL, &user, TMO), 1);
                        assert_int_equal(st, VIRTIO_BLK_S_OK);
                        unsigned k = GPOINTER_TO_UINT(user);
                        if (!write) {
                                pattern(want, LEN, t->round * 1000 + k);
                                assert_memory_equal(ram(t, t->data + (uint64_t) k * LEN), want, LEN);
                        }
                }
}

/* A round of writes then reads of the same slots, verified. */
static void io_round(Mig *t) {
        t->round++;
        submit_round(t, true);
        complete_round(t, true);
        submit_round(t, false);
        complete_round(t, false);
}

static void guest_up(Mig *t) {
        uint64_t want = UINT64_MAX & ~(t->packed ? 0 : VIRTIO_BIT(VIRTIO_F_RING_PACKED));

        side_start(t, &t->src, 0, "disk0", "mig-serial");
        vd_init(&t->d, &client_ops, t, t->src.ram.host, t->src.ram.gpa_base, t->src.ram.size);
        t->cur = &t->src;
        t->data = vd_alloc(&t->d, (uint64_t) NQ * QD * LEN, 4096);
        assert_int_equal(vb_probe(&t->v, &t->d, want, NQ, 0), 0);
        assert_int_equal(virtio_has(t->d.features, VIRTIO_F_RING_PACKED), t->packed);
        /* The guest turns its write cache off: the destination must keep it off. */
        uint8_t off = 0;
        c_write(t, VIRTIO_PCI_DEVICE_OFF + VBLK_CFG_WRITEBACK_OFF, &off, 1);
        uint8_t wb = 1;
        vd_cfg_read(&t->d, VBLK_CFG_WRITEBACK_OFF, &wb, 1);       /* after the posted write */
        assert_int_equal(wb, 0);
        assert_false(vblk_write_cache(t->src.b));
        io_round(t);
}

static void live(Mig *t) {
        uint8_t bitmap[BITMAP_LEN];
        g_autoptr(GByteArray) stream = NULL;
        int werr;

        guest_up(t);
        log_start(&t->src);
        assert_int_equal(mig_set(&t->src, VU_MIG_PRE_COPY), 0);
        side_start(t, &t->dst, 1, "disk0", "mig-serial");
        memcpy(t->dst.ram.host, t->src.ram.host, RAM_SIZE);
        io_round(t);
        log_report(&t->src, bitmap);
        assert_true(copy_dirty(t, bitmap) > 0);         /* the reads were reported */

        /* The guest pauses with requests in flight: reads of this round's data. */
        t->round++;
        submit_round(t, true);
        complete_round(t, true);
        submit_round(t, false);
        log_report(&t->src, bitmap);
        memcpy(t->dst.ram.host, t->src.ram.host, RAM_SIZE);

        /* Stop-and-copy: the device completes what is in flight, then its state is read. */
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP_COPY), 0);
        VBlkStats st;
        vblk_get_stats(t->src.b, &st);
        assert_int_equal(st.inflight, 0);
        stream = read_stream(&t->src);
        log_report(&t->src, bitmap);
        copy_dirty(t, bitmap);
        for (size_t off = 0; off < RAM_SIZE; off += PAGE)
                if (memcmp(t->src.ram.host + off, t->dst.ram.host + off, PAGE) != 0)
                        fail_msg("guest page 0x%" G_GINT64_MODIFIER "x differs after the dirty-bitmap copy: a device "
                                 "write was not reported", RAM_GPA + off);
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP), 0);
        log_stop(&t->src);

        assert_int_equal(write_stream(&t->dst, stream, &werr), 0);
        assert_int_equal(werr, 0);
        assert_null(vblk_migration_error(t->dst.b));
        for (unsigned q = 0; q < NQ; q++) {
                VirtQueue *a = virtio_pci_queue(vblk_virtio(t->src.b), q), *b = virtio_pci_queue(vblk_virtio(t->dst.b), q);
                assert_true(b->started);
                assert_int_equal(a->last_avail, b->last_avail);
                assert_int_equal(a->used_idx, b->used_idx);
        }
        assert_false(vblk_write_cache(t->dst.b));
        assert_int_equal(mig_set(&t->dst, VU_MIG_RUNNING), 0);
        switch_ram(t);
        retire_source(t);

        /* The reads the source completed are in the guest's used rings, intact; I/O goes on there. */
        complete_round(t, false);
        io_round(t);
        io_round(t);
        vblk_get_stats(t->dst.b, &st);
        assert_int_equal(st.io_errors + st.bad_chains, 0);
        assert_true(st.write_reqs > 0);
        assert_false(vd_status(&t->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static void live_split(void **state) {
        live(*state);
}

static void live_packed(void **state) {
        Mig *t = *state;

        t->packed = true;
        live(t);
}

static void refused_streams(void **state) {
        Mig *t = *state;
        g_autoptr(GByteArray) stream = NULL;
        int werr;

        guest_up(t);
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP_COPY), 0);
        stream = read_stream(&t->src);
        assert_int_equal(mig_set(&t->src, VU_MIG_RUNNING), 0);

        /* Another serial: refused, with the reason, and the destination stays reset. */
        side_start(t, &t->dst, 1, "disk0", "other-serial");
        assert_true(write_stream(&t->dst, stream, &werr) < 0 || werr < 0);
        assert_non_null(vblk_migration_error(t->dst.b));
        assert_non_null(strstr(vblk_migration_error(t->dst.b), "serial"));
        assert_false(virtio_pci_status(vblk_virtio(t->dst.b)) & VIRTIO_STATUS_DRIVER_OK);
        side_stop(&t->dst);

        /* Another device's stream. */
        side_start(t, &t->dst, 1, "disk1", "mig-serial");
        assert_true(write_stream(&t->dst, stream, &werr) < 0 || werr < 0);
        side_stop(&t->dst);

        /* The source ran on. */
        io_round(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(live_split, setup, teardown),
                cmocka_unit_test_setup_teardown(live_packed, setup, teardown),
                cmocka_unit_test_setup_teardown(refused_streams, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
