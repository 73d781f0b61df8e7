/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nvme-bench: 4 KiB random read/write IOPS and latency percentiles of the
 * NVMe controller at QD1 and QD32, driven by our vfio-user client acting as
 * the guest driver over a real socket, side by side with raw io_uring on the
 * same backing file in the same run.
 *
 *   nvme-bench [--file PATH] [--size MiB] [--seconds S] [--direct]
 *
 * Device variants: "shadow" = Doorbell Buffer Config with EventIdx and a
 * 50 µs polling window (the worker's default); "trapped" = every doorbell a
 * posted REGION_WRITE, I/O thread sleeping as soon as it is idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-srv.h"

#define BS 4096u
#define GPA 0x100000000ull
#define RAM (64ull << 20)

typedef struct Result {
        double iops;
        double p50_us, p99_us;
        double db_per_io, irq_per_io;
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

/* Baseline: io_uring straight on the file. */
static void run_uring(const char *path, bool direct, bool write, unsigned qd, double secs, uint64_t nblocks,
                      Result *res) {
        int fd = open(path, O_RDWR | (direct ? O_DIRECT : 0));
        struct io_uring ring;
        g_assert_cmpint(io_uring_queue_init(64, &ring, 0), ==, 0);
        uint8_t *bufs = NULL;
        g_assert_cmpint(posix_memalign((void **) &bufs, 4096, (size_t) qd * BS), ==, 0);
        memset(bufs, 0x5a, (size_t) qd * BS);
        uint64_t *start = g_new(uint64_t, qd);
        struct iovec *iov = g_new(struct iovec, qd);
        GRand *g = g_rand_new_with_seed(1);
        Lat lat = { 0 };
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9);

        for (unsigned s = 0; s < qd; s++) {
                iov[s] = (struct iovec) { bufs + (size_t) s * BS, BS };
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                uint64_t off = rnd_block(g, nblocks) * BS;
                if (write)
                        io_uring_prep_writev(sqe, fd, &iov[s], 1, off);
                else
                        io_uring_prep_readv(sqe, fd, &iov[s], 1, off);
                io_uring_sqe_set_data64(sqe, s);
                start[s] = now_ns();
        }
        io_uring_submit(&ring);
        uint64_t now = t0;
        while (now < end) {
                struct io_uring_cqe *cqe;
                io_uring_wait_cqe(&ring, &cqe);
                unsigned s = (unsigned) io_uring_cqe_get_data64(cqe);
                g_assert_cmpint(cqe->res, ==, BS);
                io_uring_cqe_seen(&ring, cqe);
                now = now_ns();
                lat_add(&lat, now - start[s]);
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                uint64_t off = rnd_block(g, nblocks) * BS;
                if (write)
                        io_uring_prep_writev(sqe, fd, &iov[s], 1, off);
                else
                        io_uring_prep_readv(sqe, fd, &iov[s], 1, off);
                io_uring_sqe_set_data64(sqe, s);
                start[s] = now_ns();
                io_uring_submit(&ring);
        }
        double elapsed = (now_ns() - t0) / 1e9;
        /* Drain what is still in flight. */
        for (unsigned i = 0; i < qd; i++) {
                struct io_uring_cqe *cqe;
                io_uring_wait_cqe(&ring, &cqe);
                io_uring_cqe_seen(&ring, cqe);
        }
        lat_finish(&lat, elapsed, res);
        res->db_per_io = res->irq_per_io = 0;
        io_uring_queue_exit(&ring);
        g_rand_free(g);
        g_free(start);
        g_free(iov);
        free(bufs);
        close(fd);
}

typedef struct Dev {
        NvmeSrv srv;
        NvmeVmm vmm;
        uint64_t data;
} Dev;

static void dev_start(Dev *dv, const char *dir, const char *path, bool direct, bool shadow) {
        g_autofree char *sock = g_build_filename(dir, "bench.sock", NULL);
        NvmeCtrlConfig cfg = { .name = "bench", .serial = "VFU-BENCH", .max_ioqs = 2, .msix_nvec = 3,
                               .cntlid = 1, .poll_us = shadow ? 50 : 0 };
        g_assert_cmpint(nvme_srv_start(&dv->srv, &cfg, sock), ==, 0);
        BlkOpenOptions o = { .path = path, .fd = -1, .direct = direct };
        BlkBackend *b = NULL;
        g_assert_cmpint(blk_backend_open(&o, &b), ==, 0);
        g_assert_cmpint(nvme_ctrl_ns_add(dv->srv.c, 1, b, 4096, false), ==, 0);
        g_assert_cmpint(nvme_vmm_connect(&dv->vmm, sock, GPA, RAM, 3), ==, 0);
        NvmeDrv *d = &dv->vmm.d;
        g_assert_cmpint(nvme_drv_enable(d, 32), ==, 0);
        g_assert_cmpint(nvme_drv_set_features(d, 0x07, 0, NULL), ==, 0);
        if (shadow)
                g_assert_cmpint(nvme_drv_dbbuf_config(d), ==, 0);
        g_assert_cmpint(nvme_drv_create_io_queues(d, 1, 256, 1), ==, 0);
        dv->data = nvme_drv_alloc(d, 64 * BS, 4096);
}

static void dev_stop(Dev *dv) {
        nvme_vmm_disconnect(&dv->vmm);
        nvme_srv_stop(&dv->srv);
}

static void dev_submit(Dev *dv, GRand *g, uint64_t nblocks, bool write, unsigned slot) {
        uint64_t lba = rnd_block(g, nblocks);
        NvmeSqe c = { .opcode = write ? NVME_CMD_WRITE : NVME_CMD_READ, .nsid = 1, .prp1 = dv->data + slot * BS,
                      .cdw10 = (uint32_t) lba, .cdw11 = (uint32_t) (lba >> 32), .cdw12 = 0 };
        nvme_drv_queue(&dv->vmm.d, 1, &c);
}

static void run_dev(Dev *dv, bool write, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        NvmeDrv *d = &dv->vmm.d;
        GRand *g = g_rand_new_with_seed(1);
        uint64_t start[256];
        uint16_t slot_of_cid[65536];
        Lat lat = { 0 };
        NvmeStats s0, s1;

        nvme_ctrl_get_stats(dv->srv.c, &s0);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;
        for (unsigned s = 0; s < qd; s++) {
                uint16_t cid = d->q[1].next_cid;
                slot_of_cid[cid] = (uint16_t) s;
                start[s] = now_ns();
                dev_submit(dv, g, nblocks, write, s);
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
                                uint16_t cid = d->q[1].next_cid;
                                slot_of_cid[cid] = (uint16_t) s;
                                start[s] = now;
                                dev_submit(dv, g, nblocks, write, s);
                                inflight++;
                        }
                }
                if (reaped)
                        nvme_drv_ring(d, 1);
                else
                        vu_client_wait_irq(dv->vmm.irq_fds[1], 100);   /* like the guest: sleep on the interrupt */
        }
        double elapsed = (now_ns() - t0) / 1e9;
        nvme_ctrl_get_stats(dv->srv.c, &s1);
        lat_finish(&lat, elapsed, res);
        uint64_t ios = s1.io_cmds - s0.io_cmds;
        res->db_per_io = ios ? (double) (s1.doorbell_writes - s0.doorbell_writes) / ios : 0;
        res->irq_per_io = ios ? (double) (s1.irqs - s0.irqs) / ios : 0;
        g_rand_free(g);
}

int main(int argc, char **argv) {
        const char *file = NULL;
        uint64_t size_mib = 256;
        double secs = 2;
        bool direct = false;
        static const struct option opts[] = {
                { "file", required_argument, NULL, 'f' },
                { "size", required_argument, NULL, 's' },
                { "seconds", required_argument, NULL, 't' },
                { "direct", no_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "f:s:t:dh", opts, NULL)) >= 0) {
                switch (c) {
                case 'f': file = optarg; break;
                case 's': size_mib = strtoull(optarg, NULL, 10); break;
                case 't': secs = strtod(optarg, NULL); break;
                case 'd': direct = true; break;
                default:
                        printf("usage: %s [--file PATH] [--size MiB] [--seconds S] [--direct]\n", argv[0]);
                        return c == 'h' ? 0 : 2;
                }
        }
        g_autofree char *dir = g_dir_make_tmp("nvme-bench-XXXXXX", NULL);
        g_autofree char *path = file ? g_strdup(file) : g_build_filename(BUILDDIR, "nvme-bench.img", NULL);
        uint64_t size = size_mib << 20, nblocks = size / BS;

        /* Backing file, written once with data so reads touch real blocks. */
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

        printf("nvme-bench: %s, %" G_GUINT64_FORMAT " MiB, 4 KiB random, %s I/O, %.1f s per case\n",
               path, size_mib, direct ? "O_DIRECT" : "buffered", secs);
        printf("%-10s %-4s | %-28s | %-28s %-11s | %s\n", "", "", "raw io_uring (baseline)",
               "vfu NVMe over vfio-user", "exits/irqs", "ratio");
        printf("%-10s %-4s | %9s %8s %9s | %9s %8s %9s %-11s | %s\n", "mode", "qd", "IOPS", "p50 µs", "p99 µs",
               "IOPS", "p50 µs", "p99 µs", "per I/O", "IOPS");
        for (int variant = 0; variant < 2; variant++) {
                bool shadow = variant == 0;
                Dev dv;
                dev_start(&dv, dir, path, direct, shadow);
                printf("-- device doorbells: %s\n", shadow ? "shadow + EventIdx, 50 µs poll window"
                                                            : "trapped (posted REGION_WRITE) only");
                for (int w = 0; w < 2; w++)
                        for (int q = 0; q < 2; q++) {
                                unsigned qd = q ? 32 : 1;
                                Result base, dev;
                                run_uring(path, direct, w, qd, secs, nblocks, &base);
                                run_dev(&dv, w, qd, secs, nblocks, &dev);
                                printf("%-10s %-4u | %9.0f %8.1f %9.1f | %9.0f %8.1f %9.1f %4.2f/%4.2f | %.2f\n",
                                       w ? "randwrite" : "randread", qd, base.iops, base.p50_us, base.p99_us,
                                       dev.iops, dev.p50_us, dev.p99_us, dev.db_per_io, dev.irq_per_io,
                                       base.iops > 0 ? dev.iops / base.iops : 0);
                                fflush(stdout);
                        }
                dev_stop(&dv);
        }
        if (!file)
                unlink(path);
        rmdir(dir);
        return 0;
}
