/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vblk-bench: 4 KiB random read/write IOPS and latency percentiles of the
 * virtio-blk device next to the NVMe controller, on the same backends in the
 * same run — the null backend (what each device costs by itself) and a file
 * — at QD1 and QD32 on one queue.  Each device is driven by our vfio-user
 * client acting as the guest's driver over a real socket, sleeping on the
 * interrupt when it has nothing to reap, as the guest does.
 *
 *   vblk-bench [--size MiB] [--seconds S] [--direct] [--no-poll]
 *
 * Both run as the worker configures them: NVMe with shadow doorbells and
 * EventIdx, virtio-blk with trapped notifications and EVENT_IDX, each with
 * a 50 µs polling window after the last request (--no-poll: none for
 * virtio-blk, every batch an exit).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-srv.h"
#include "srv-thread.h"
#include "vblk-driver.h"
#include "vblk/vblk.h"

#define BS 4096u
#define GPA 0x100000000ull
#define RAM (64ull << 20)
#define MAX_QD 32u

typedef struct Result {
        double iops, p50_us, p99_us;
} Result;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

typedef struct Lat {
        uint32_t *v;
        size_t n, cap;
} Lat;

static void lat_add(Lat *l, uint64_t ns) {
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 1 << 16;
                l->v = g_renew(uint32_t, l->v, l->cap);
        }
        l->v[l->n++] = (uint32_t) MIN(ns, UINT32_MAX);
}

static void lat_finish(Lat *l, double secs, Result *r) {
        qsort(l->v, l->n, sizeof(uint32_t), cmp_u32);
        r->iops = l->n / secs;
        r->p50_us = l->n ? l->v[l->n / 2] / 1000.0 : 0;
        r->p99_us = l->n ? l->v[(size_t) (l->n * 0.99)] / 1000.0 : 0;
        g_free(l->v);
        memset(l, 0, sizeof(*l));
}

static uint64_t rnd_block(GRand *g, uint64_t nblocks) {
        return ((uint64_t) g_rand_int(g) << 32 | g_rand_int(g)) % nblocks;
}

static BlkBackend *backend(const char *path, bool direct, uint64_t size) {
        BlkOpenOptions o = { .path = path, .fd = -1, .direct = direct, .null = path == NULL, .size = path ? 0 : size };
        BlkBackend *b = NULL;
        g_assert_cmpint(blk_backend_open(&o, &b), ==, 0);
        return b;
}

/* --- NVMe -------------------------------------------------------------- */

typedef struct Nvme {
        NvmeSrv srv;
        NvmeVmm vmm;
        uint64_t data;
} Nvme;

static void nvme_start(Nvme *n, const char *dir, BlkBackend *b) {
        g_autofree char *sock = g_build_filename(dir, "nvme.sock", NULL);
        NvmeCtrlConfig cfg = { .name = "bench", .serial = "VFU-BENCH", .max_ioqs = 2, .msix_nvec = 3,
                               .cntlid = 1, .poll_us = 50 };
        g_assert_cmpint(nvme_srv_start(&n->srv, &cfg, sock), ==, 0);
        g_assert_cmpint(nvme_ctrl_ns_add(n->srv.c, 1, b, BS, false), ==, 0);
        g_assert_cmpint(nvme_vmm_connect(&n->vmm, sock, GPA, RAM, 3), ==, 0);
        NvmeDrv *d = &n->vmm.d;
        g_assert_cmpint(nvme_drv_enable(d, 32), ==, 0);
        g_assert_cmpint(nvme_drv_set_features(d, 0x07, 0, NULL), ==, 0);
        g_assert_cmpint(nvme_drv_dbbuf_config(d), ==, 0);
        g_assert_cmpint(nvme_drv_create_io_queues(d, 1, 256, 1), ==, 0);
        n->data = nvme_drv_alloc(d, MAX_QD * BS, 4096);
}

static void nvme_stop(Nvme *n) {
        nvme_vmm_disconnect(&n->vmm);
        nvme_srv_stop(&n->srv);
}

static void nvme_submit(Nvme *n, GRand *g, uint64_t nblocks, bool write, unsigned slot) {
        uint64_t lba = rnd_block(g, nblocks);
        NvmeSqe c = { .opcode = write ? NVME_CMD_WRITE : NVME_CMD_READ, .nsid = 1, .prp1 = n->data + slot * BS,
                      .cdw10 = (uint32_t) lba, .cdw11 = (uint32_t) (lba >> 32) };
        nvme_drv_queue(&n->vmm.d, 1, &c);
}

static void nvme_run(Nvme *n, bool write, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        NvmeDrv *d = &n->vmm.d;
        GRand *g = g_rand_new_with_seed(1);
        uint64_t start[MAX_QD];
        uint16_t *slot_of_cid = g_new0(uint16_t, 65536);
        Lat lat = { 0 };
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;

        for (unsigned s = 0; s < qd; s++) {
                slot_of_cid[d->q[1].next_cid] = (uint16_t) s;
                start[s] = now_ns();
                nvme_submit(n, g, nblocks, write, s);
        }
        nvme_drv_ring(d, 1);
        unsigned inflight = qd;
        while (inflight > 0) {
                NvmeCqe e;
                unsigned reaped = 0;
                while (nvme_drv_poll(d, 1, &e)) {
                        g_assert_cmpint(nvme_drv_status(&e), ==, 0);
                        unsigned s = slot_of_cid[e.cid];
                        now = now_ns();
                        lat_add(&lat, now - start[s]);
                        reaped++;
                        inflight--;
                        if (now < end) {
                                slot_of_cid[d->q[1].next_cid] = (uint16_t) s;
                                start[s] = now;
                                nvme_submit(n, g, nblocks, write, s);
                                inflight++;
                        }
                }
                if (reaped)
                        nvme_drv_ring(d, 1);
                else
                        vu_client_wait_irq(n->vmm.irq_fds[1], 100);
        }
        lat_finish(&lat, (now_ns() - t0) / 1e9, res);
        g_free(slot_of_cid);
        g_rand_free(g);
}

/* --- virtio-blk ----------------------------------------------------------- */

typedef struct Vblk {
        VBlk *b;
        VuServer *s;
        SrvThread thread;
        VuClient *c;
        VuGuestRam ram;
        int irq[2];
        Vd d;
        VbDrv v;
        uint64_t data;
        char *sock;
} Vblk;

static int irq_fire(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps irq_ops = { .fire = irq_fire };

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Vblk *) o)->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len);
}

static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        return vu_client_region_write(((Vblk *) o)->c, VU_PCI_BAR0_REGION, off, buf, (uint32_t) len, true);
}

static int c_wait(void *o, unsigned vector, int ms) {
        return vector < 2 ? vu_client_wait_irq(((Vblk *) o)->irq[vector], ms) : 0;
}

static const VdOps client_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

static void vblk_start(Vblk *v, const char *dir, BlkBackend *b, unsigned poll_us) {
        VBlkOptions o = { .queues = 1, .queue_size = 256, .serial = "vfu-bench", .poll_us = poll_us };
        VuServerConfig scfg = { 0 };

        v->sock = g_build_filename(dir, "vblk.sock", NULL);
        g_assert_cmpint(vblk_new(&o, b, &v->b), ==, 0);
        g_assert_cmpint(vblk_server_config(v->b, &scfg), ==, 0);
        scfg.name = "vblk-bench";
        g_assert_cmpint(vu_server_new(&scfg, &v->s), ==, 0);
        vblk_attach(v->b, vu_server_mem(v->s), &irq_ops, v->s);
        g_assert_cmpint(vu_server_listen(v->s, v->sock), ==, 0);
        g_assert_cmpint(srv_thread_start(&v->thread, v->s), ==, 0);
        g_assert_cmpint(vu_client_connect(v->sock, &v->c), ==, 0);
        g_assert_cmpint(vu_client_negotiate(v->c, NULL), ==, 0);
        g_assert_cmpint(vu_guest_ram_new(GPA, RAM, &v->ram), ==, 0);
        g_assert_cmpint(vu_client_map_ram(v->c, &v->ram), ==, 0);
        g_assert_cmpint(vu_client_enable_msix(v->c, 2, v->irq), ==, 0);
        vd_init(&v->d, &client_ops, v, v->ram.host, v->ram.gpa_base, v->ram.size);
        v->data = vd_alloc(&v->d, MAX_QD * BS, 4096);
        g_assert_cmpint(vb_probe(&v->v, &v->d, UINT64_MAX & ~VIRTIO_BIT(VIRTIO_F_RING_PACKED), 1, 0), ==, 0);
}

static void vblk_stop(Vblk *v) {
        vb_fini(&v->v);
        vu_client_free(v->c);
        close(v->irq[0]);
        close(v->irq[1]);
        srv_thread_stop(&v->thread);
        vu_server_free(v->s);
        vblk_free(v->b);
        vu_guest_ram_free(&v->ram);
        unlink(v->sock);
        g_free(v->sock);
}

static void vblk_submit(Vblk *v, GRand *g, uint64_t nblocks, bool write, unsigned slot) {
        uint64_t blk = rnd_block(g, nblocks);
        g_assert_cmpint(vb_submit(&v->v, 0, write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, blk * (BS / 512),
                                  v->data + slot * BS, BS, NULL, 0, GUINT_TO_POINTER(slot)), ==, 0);
}

static void vblk_run(Vblk *v, bool write, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        GRand *g = g_rand_new_with_seed(1);
        uint64_t start[MAX_QD];
        Lat lat = { 0 };
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;

        for (unsigned s = 0; s < qd; s++) {
                start[s] = now_ns();
                vblk_submit(v, g, nblocks, write, s);
        }
        vb_kick(&v->v, 0);
        unsigned inflight = qd;
        while (inflight > 0) {
                uint8_t st;
                void *user;
                /* virtblk_done: wait for one, take every other one ready, resubmit, one kick if asked. */
                int wait = 10000;
                while (inflight > 0 && vb_complete(&v->v, 0, &st, NULL, &user, wait) == 1) {
                        g_assert_cmpint(st, ==, VIRTIO_BLK_S_OK);
                        unsigned s = GPOINTER_TO_UINT(user);
                        now = now_ns();
                        lat_add(&lat, now - start[s]);
                        inflight--;
                        if (now < end) {
                                start[s] = now;
                                vblk_submit(v, g, nblocks, write, s);
                                inflight++;
                        }
                        wait = 0;
                }
                g_assert_cmpint(wait, ==, 0);
                vb_kick(&v->v, 0);
        }
        lat_finish(&lat, (now_ns() - t0) / 1e9, res);
        g_rand_free(g);
}

int main(int argc, char **argv) {
        uint64_t size_mib = 256;
        double secs = 2;
        bool direct = false;
        unsigned poll_us = 50;
        static const struct option opts[] = {
                { "size", required_argument, NULL, 's' },
                { "seconds", required_argument, NULL, 't' },
                { "direct", no_argument, NULL, 'd' },
                { "no-poll", no_argument, NULL, 'n' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "s:t:dnh", opts, NULL)) >= 0) {
                switch (c) {
                case 's': size_mib = strtoull(optarg, NULL, 10); break;
                case 't': secs = strtod(optarg, NULL); break;
                case 'd': direct = true; break;
                case 'n': poll_us = 0; break;
                default:
                        printf("usage: %s [--size MiB] [--seconds S] [--direct] [--no-poll]\n", argv[0]);
                        return c == 'h' ? 0 : 2;
                }
        }
        g_autofree char *dir = g_dir_make_tmp("vblk-bench-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(BUILDDIR, "vblk-bench.img", NULL);
        uint64_t size = size_mib << 20, nblocks = size / BS;

        int fd = open(path, O_RDWR | O_CREAT, 0600);
        if (fd < 0) {
                fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
                return 1;
        }
        g_autofree uint8_t *chunk = g_malloc(1 << 20);
        memset(chunk, 0xa5, 1 << 20);
        for (uint64_t off = 0; off < size; off += 1 << 20)
                if (pwrite(fd, chunk, 1 << 20, (off_t) off) != 1 << 20)
                        return 1;
        fdatasync(fd);
        close(fd);

        printf("vblk-bench: %" G_GUINT64_FORMAT " MiB, 4 KiB random, one queue, %.1f s per case; file I/O %s; "
               "virtio-blk poll window %u µs\n", size_mib, secs, direct ? "O_DIRECT" : "buffered", poll_us);
        printf("%-5s %-10s %-4s | %-26s | %-26s | %s\n", "", "", "", "vfu NVMe", "vfu virtio-blk", "ratio");
        printf("%-5s %-10s %-4s | %8s %8s %8s | %8s %8s %8s | %s\n", "disk", "mode", "qd", "IOPS", "p50 µs",
               "p99 µs", "IOPS", "p50 µs", "p99 µs", "IOPS");
        for (int file = 0; file < 2; file++) {
                const char *p = file ? path : NULL;
                Nvme n = { 0 };
                Vblk v = { 0 };
                nvme_start(&n, dir, backend(p, direct, size));
                vblk_start(&v, dir, backend(p, direct, size), poll_us);
                for (int w = 0; w < 2; w++)
                        for (int q = 0; q < 2; q++) {
                                unsigned qd = q ? MAX_QD : 1;
                                Result rn, rv;
                                nvme_run(&n, w, qd, secs, nblocks, &rn);
                                vblk_run(&v, w, qd, secs, nblocks, &rv);
                                printf("%-5s %-10s %-4u | %8.0f %8.1f %8.1f | %8.0f %8.1f %8.1f | %.2f\n",
                                       file ? "file" : "null", w ? "randwrite" : "randread", qd, rn.iops, rn.p50_us,
                                       rn.p99_us, rv.iops, rv.p50_us, rv.p99_us, rn.iops > 0 ? rv.iops / rn.iops : 0);
                                fflush(stdout);
                        }
                vblk_stop(&v);
                nvme_stop(&n);
        }
        unlink(path);
        rmdir(dir);
        return 0;
}
