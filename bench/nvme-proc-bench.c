/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nvme-proc-bench: what the NVMe device itself costs, with the driver in
 * its own process as a VM's driver is.  The device (controller, vfio-user
 * server, backend) runs in a forked child; this process is the guest: our
 * client library maps its RAM, brings the controller up like Linux and
 * drives 4 KiB random reads.  Every case reports IOPS, p50/p99/p99.9
 * latency, and the device's CPU per I/O: the CPU time of the child's
 * threads (their thread CPU clocks) over the completed I/Os, split into the
 * data-path threads (the controllers' I/O threads, "nvme-io…", and
 * io_uring workers) and the rest (the vfio-user dispatch thread, which
 * handles trapped doorbells); IOPS per device core follows from it.
 *
 *   nvme-proc-bench [--seconds S] [--size MiB] [--idle-seconds S]
 *                   [--iothreads N] [--queues N] [--poll-us US] [--json]
 *
 * Cases:
 *   null      NVMe on the null backend, randread QD1/QD32/QD128
 *   file      NVMe on a page-cache file, randread QD1/QD32, next to raw
 *             io_uring and psync on the same file from one thread
 *   threads   NVMe null randread QD32/QD128 over two queue pairs, served by
 *             one I/O thread and then by two (--iothreads in the other
 *             cases): device CPU per I/O should stay flat
 *   window    NVMe null randread QD1 with the I/O thread's longest
 *             adaptive polling window at 0 (never poll), 20, 50 and 200 µs
 *   idle      device threads' CPU over --idle-seconds with a connected,
 *             idle driver
 *   msi       NVMe null randread QD1/QD32 with an interrupt-driven driver,
 *             the controller offering MSI-X and then MSI (create --msi,
 *             --hotplug): what a hot-detachable device costs
 * Driver modes: "poll" spins on completion queues created without
 * interrupts (Linux's poll queues); "irq" sleeps on the MSI-X eventfd when
 * nothing completed.  The device runs as vfud-worker
 * configures it: shadow doorbells with EventIdx and a polling window.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-srv.h"

#define BS 4096u
#define GPA 0x100000000ull
#define RAM (64ull << 20)
#define MAX_QD 128u
#define QDEPTH 256u

typedef struct Opts {
        double secs, idle_secs;
        uint64_t size_mib;
        unsigned iothreads, queues, poll_us;
        bool json;
        const char *only;
} Opts;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static uint64_t clock_ns(clockid_t id) {
        struct timespec ts;
        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* ---- the device process ---- */

/* What the device reports: its threads' CPU and its controller's counters. */
typedef struct DevSample {
        uint64_t io_ns, other_ns;       /* data-path threads, the rest */
        unsigned io_threads;
        uint64_t ios, doorbells, irqs, wakeups;
} DevSample;

/* The CPU clock of thread tid of this process (Linux: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)). */
static clockid_t thread_clock(pid_t tid) {
        return (clockid_t) ((~(unsigned) tid << 3) | 6);
}

static bool is_data_path(const char *comm) {
        return g_str_has_prefix(comm, "nvme-io") || g_str_has_prefix(comm, "iou-");
}

static void dev_sample(NvmeCtrl *c, DevSample *s) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;
        NvmeStats st;

        memset(s, 0, sizeof(*s));
        while (d && (e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                pid_t tid = (pid_t) atoi(e->d_name);
                g_autofree char *p = g_strdup_printf("/proc/self/task/%d/comm", tid);
                g_autofree char *comm = NULL;
                if (!g_file_get_contents(p, &comm, NULL, NULL))
                        continue;
                g_strchomp(comm);
                uint64_t ns = clock_ns(thread_clock(tid));
                if (is_data_path(comm)) {
                        s->io_ns += ns;
                        s->io_threads++;
                } else {
                        s->other_ns += ns;
                }
        }
        if (d)
                closedir(d);
        nvme_ctrl_get_stats(c, &st);
        s->ios = st.io_cmds;
        s->doorbells = st.doorbell_writes;
        s->irqs = st.irqs;
        s->wakeups = st.wakeups;
}

typedef struct DevSpec {
        const char *sock;
        const char *file;               /* NULL: the null backend */
        uint64_t size;
        const Opts *o;
        unsigned queues, iothreads;     /* 0: the options' */
        int poll_us;                    /* -1: the options' */
        bool msi;                       /* MSI instead of MSI-X */
} DevSpec;

/* Interrupt vectors: one per queue and the admin queue's; with MSI a power of two (at most 32). */
static unsigned spec_nvec(const DevSpec *sp, unsigned queues) {
        unsigned n = 1;

        if (!sp->msi)
                return queues + 1;
        while (n < queues + 1 && n < NVME_MAX_MSI_VECTORS)
                n <<= 1;
        return n;
}

static unsigned spec_queues(const DevSpec *sp) { return sp->queues ? sp->queues : sp->o->queues; }
static unsigned spec_iothreads(const DevSpec *sp) { return sp->iothreads ? sp->iothreads : sp->o->iothreads; }

static void write_all(int fd, const void *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n <= 0 && errno != EINTR)
                        _exit(3);
                if (n > 0) {
                        buf = (const uint8_t *) buf + n;
                        len -= (size_t) n;
                }
        }
}

static bool read_all(int fd, void *buf, size_t len) {
        while (len > 0) {
                ssize_t n = read(fd, buf, len);
                if (n == 0 || (n < 0 && errno != EINTR))
                        return false;
                if (n > 0) {
                        buf = (uint8_t *) buf + n;
                        len -= (size_t) n;
                }
        }
        return true;
}

static G_NORETURN void device_main(const DevSpec *sp, int cmd_fd, int reply_fd) {
        NvmeSrv srv;
        NvmeCtrlConfig cfg = { .name = "bench", .serial = "VFU-BENCH", .max_ioqs = spec_queues(sp),
                               .msix_nvec = spec_nvec(sp, spec_queues(sp)), .msi = sp->msi, .cntlid = 1,
                               .poll_us = sp->poll_us >= 0 ? (unsigned) sp->poll_us : sp->o->poll_us,
                               .iothreads = spec_iothreads(sp) };
        BlkOpenOptions bo = { .path = sp->file, .fd = -1, .size = sp->size, .null = !sp->file };
        BlkBackend *b = NULL;
        char cmd;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "bench-device");
        if (nvme_srv_start(&srv, &cfg, sp->sock) < 0 || blk_backend_open(&bo, &b) < 0 ||
            nvme_ctrl_ns_add(srv.c, 1, b, 4096, false) < 0)
                _exit(2);
        cmd = 'r';
        write_all(reply_fd, &cmd, 1);
        while (read_all(cmd_fd, &cmd, 1) && cmd == 's') {
                DevSample s;
                dev_sample(srv.c, &s);
                write_all(reply_fd, &s, sizeof(s));
        }
        nvme_srv_stop(&srv);
        _exit(0);
}

typedef struct Device {
        pid_t pid;
        int cmd_fd, reply_fd;
        NvmeVmm vmm;
        uint64_t data;
        unsigned nq;
} Device;

static void device_sample(Device *dv, DevSample *s) {
        char c = 's';
        write_all(dv->cmd_fd, &c, 1);
        if (!read_all(dv->reply_fd, s, sizeof(*s))) {
                fprintf(stderr, "nvme-proc-bench: the device process died\n");
                exit(1);
        }
}

static void device_start(Device *dv, const DevSpec *sp, bool poll) {
        int cmd[2], reply[2];
        char c;

        memset(dv, 0, sizeof(*dv));
        g_assert_cmpint(pipe2(cmd, O_CLOEXEC), ==, 0);
        g_assert_cmpint(pipe2(reply, O_CLOEXEC), ==, 0);
        fflush(stdout);
        dv->pid = fork();
        g_assert_cmpint(dv->pid, >=, 0);
        if (dv->pid == 0) {
                close(cmd[1]);
                close(reply[0]);
                device_main(sp, cmd[0], reply[1]);
        }
        close(cmd[0]);
        close(reply[1]);
        dv->cmd_fd = cmd[1];
        dv->reply_fd = reply[0];
        if (!read_all(dv->reply_fd, &c, 1) || c != 'r') {
                fprintf(stderr, "nvme-proc-bench: the device did not start\n");
                exit(1);
        }
        /* The guest: Linux's bring-up, shadow doorbells, one I/O queue pair per device queue. */
        dv->nq = spec_queues(sp);
        g_assert_cmpint(nvme_vmm_connect(&dv->vmm, sp->sock, GPA, RAM, spec_nvec(sp, dv->nq)), ==, 0);
        NvmeDrv *d = &dv->vmm.d;
        g_assert_cmpint(nvme_drv_enable(d, 32), ==, 0);
        g_assert_cmpint(nvme_drv_set_features(d, 0x07, (dv->nq - 1) | (dv->nq - 1) << 16, NULL), ==, 0);
        g_assert_cmpint(nvme_drv_dbbuf_config(d), ==, 0);
        d->poll_queues = poll;          /* a polling driver asks for no interrupts */
        for (unsigned q = 1; q <= dv->nq; q++)
                g_assert_cmpint(nvme_drv_create_io_queues(d, (uint16_t) q, QDEPTH, (uint16_t) q), ==, 0);
        dv->data = nvme_drv_alloc(d, (uint64_t) MAX_QD * BS, 4096);
}

static void device_stop(Device *dv) {
        int status;

        nvme_vmm_disconnect(&dv->vmm);
        close(dv->cmd_fd);              /* EOF: the device stops */
        close(dv->reply_fd);
        waitpid(dv->pid, &status, 0);
}

/* ---- measurement ---- */

typedef struct Result {
        const char *name, *driver;
        unsigned qd;
        double iops, p50_us, p99_us, p999_us;
        bool have_dev;
        double dev_us_per_io, dev_io_us_per_io, dev_cores, iops_per_dev_core;
        double drv_us_per_io;           /* the driver's (or raw loop's) own CPU per I/O */
        double doorbells_per_io, irqs_per_io;
        unsigned io_threads;
} Result;

typedef struct Lat {
        uint32_t *v;
        size_t n, cap;
} Lat;

static void lat_add(Lat *l, uint64_t ns) {
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 1 << 18;
                l->v = g_renew(uint32_t, l->v, l->cap);
        }
        l->v[l->n++] = (uint32_t) MIN(ns, UINT32_MAX);
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

static double pct(const Lat *l, double p) {
        return l->n ? l->v[MIN((size_t) (l->n * p), l->n - 1)] / 1000.0 : 0;
}

static void lat_finish(Lat *l, double secs, Result *r) {
        qsort(l->v, l->n, sizeof(uint32_t), cmp_u32);
        r->iops = l->n / secs;
        r->p50_us = pct(l, 0.5);
        r->p99_us = pct(l, 0.99);
        r->p999_us = pct(l, 0.999);
        g_free(l->v);
        memset(l, 0, sizeof(*l));
}

static uint64_t rnd_block(GRand *g, uint64_t nblocks) {
        return ((uint64_t) g_rand_int(g) << 32 | g_rand_int(g)) % nblocks;
}

static void dev_submit(Device *dv, GRand *g, uint64_t nblocks, uint16_t qid, unsigned slot) {
        uint64_t lba = rnd_block(g, nblocks);
        NvmeSqe c = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = dv->data + (uint64_t) slot * BS,
                      .cdw10 = (uint32_t) lba, .cdw11 = (uint32_t) (lba >> 32) };
        nvme_drv_queue(&dv->vmm.d, qid, &c);
}

/* qd commands spread over the device's queues; poll or sleep on the vector of the first. */
static void run_dev(Device *dv, bool poll, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        NvmeDrv *d = &dv->vmm.d;
        GRand *g = g_rand_new_with_seed(1);
        static uint64_t start[MAX_QD];
        static uint16_t slot_of[65][65536];
        unsigned nq = MIN(dv->nq, qd);
        Lat lat = { 0 };
        DevSample s0, s1;

        device_sample(dv, &s0);
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;
        for (unsigned s = 0; s < qd; s++) {
                uint16_t q = (uint16_t) (1 + s % nq);
                slot_of[q][d->q[q].next_cid] = (uint16_t) s;
                start[s] = now_ns();
                dev_submit(dv, g, nblocks, q, s);
        }
        for (unsigned q = 1; q <= nq; q++)
                nvme_drv_ring(d, (uint16_t) q);
        unsigned inflight = qd;
        while (inflight > 0) {
                unsigned reaped = 0;
                for (uint16_t q = 1; q <= nq; q++) {
                        NvmeCqe e;
                        unsigned rq = 0;
                        while (nvme_drv_poll(d, q, &e)) {
                                if (nvme_drv_status(&e) != 0) {
                                        fprintf(stderr, "nvme-proc-bench: I/O failed, status %#x\n", nvme_drv_status(&e));
                                        exit(1);
                                }
                                unsigned s = slot_of[q][e.cid];
                                now = now_ns();
                                lat_add(&lat, now - start[s]);
                                rq++;
                                inflight--;
                                if (now < end) {
                                        slot_of[q][d->q[q].next_cid] = (uint16_t) s;
                                        start[s] = now;
                                        dev_submit(dv, g, nblocks, q, s);
                                        inflight++;
                                }
                        }
                        if (rq)
                                nvme_drv_ring(d, q);
                        reaped += rq;
                }
                if (!reaped && !poll)
                        for (unsigned q = 1; q <= nq; q++)      /* like the guest: sleep on the interrupt */
                                vu_client_wait_irq(dv->vmm.irq_fds[q], q == nq ? 100 : 0);
        }
        double elapsed = (now_ns() - t0) / 1e9;
        uint64_t drv_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
        device_sample(dv, &s1);
        lat_finish(&lat, elapsed, res);
        uint64_t ios = s1.ios - s0.ios;
        double io_ns = (double) (s1.io_ns - s0.io_ns), all_ns = io_ns + (double) (s1.other_ns - s0.other_ns);
        res->have_dev = true;
        res->io_threads = s1.io_threads;
        res->dev_us_per_io = ios ? all_ns / ios / 1000 : 0;
        res->dev_io_us_per_io = ios ? io_ns / ios / 1000 : 0;
        res->dev_cores = all_ns / 1e9 / elapsed;
        res->iops_per_dev_core = all_ns > 0 ? ios / (all_ns / 1e9) : 0;
        res->drv_us_per_io = ios ? (double) drv_ns / ios / 1000 : 0;
        res->doorbells_per_io = ios ? (double) (s1.doorbells - s0.doorbells) / ios : 0;
        res->irqs_per_io = ios ? (double) (s1.irqs - s0.irqs) / ios : 0;
        g_rand_free(g);
}

/* Baseline: io_uring straight on the file from this thread, qd in flight. */
static void run_uring(const char *path, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct io_uring ring;
        g_assert_cmpint(io_uring_queue_init(MAX_QD, &ring, 0), ==, 0);
        uint8_t *bufs = NULL;
        g_assert_cmpint(posix_memalign((void **) &bufs, 4096, (size_t) qd * BS), ==, 0);
        static uint64_t start[MAX_QD];
        GRand *g = g_rand_new_with_seed(1);
        Lat lat = { 0 };
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;
        unsigned inflight = 0;

        for (unsigned s = 0; s < qd; s++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                io_uring_prep_read(sqe, fd, bufs + (size_t) s * BS, BS, rnd_block(g, nblocks) * BS);
                io_uring_sqe_set_data64(sqe, s);
                start[s] = now_ns();
                inflight++;
        }
        io_uring_submit(&ring);
        while (inflight > 0) {
                struct io_uring_cqe *cqe;
                unsigned head, n = 0;
                io_uring_wait_cqe(&ring, &cqe);
                now = now_ns();
                io_uring_for_each_cqe(&ring, head, cqe) {
                        unsigned s = (unsigned) io_uring_cqe_get_data64(cqe);
                        g_assert_cmpint(cqe->res, ==, BS);
                        lat_add(&lat, now - start[s]);
                        n++;
                        inflight--;
                        if (now < end) {
                                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                                io_uring_prep_read(sqe, fd, bufs + (size_t) s * BS, BS, rnd_block(g, nblocks) * BS);
                                io_uring_sqe_set_data64(sqe, s);
                                start[s] = now;
                                inflight++;
                        }
                }
                io_uring_cq_advance(&ring, n);
                io_uring_submit(&ring);
        }
        double elapsed = (now_ns() - t0) / 1e9;
        res->drv_us_per_io = lat.n ? (double) (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / lat.n / 1000 : 0;
        lat_finish(&lat, elapsed, res);
        io_uring_queue_exit(&ring);
        g_rand_free(g);
        free(bufs);
        close(fd);
}

/* Baseline: pread from this thread (QD1 by nature). */
static void run_psync(const char *path, double secs, uint64_t nblocks, Result *res) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t *buf = NULL;
        g_assert_cmpint(posix_memalign((void **) &buf, 4096, BS), ==, 0);
        GRand *g = g_rand_new_with_seed(1);
        Lat lat = { 0 };
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;

        while (now < end) {
                uint64_t s = now_ns();
                g_assert_cmpint(pread(fd, buf, BS, (off_t) (rnd_block(g, nblocks) * BS)), ==, BS);
                now = now_ns();
                lat_add(&lat, now - s);
        }
        double elapsed = (now_ns() - t0) / 1e9;
        res->drv_us_per_io = lat.n ? (double) (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / lat.n / 1000 : 0;
        lat_finish(&lat, elapsed, res);
        g_rand_free(g);
        free(buf);
        close(fd);
}

/* ---- output ---- */

static void print_header(const Opts *o) {
        if (o->json)
                return;
        printf("%-22s %-6s %4s | %9s %8s %8s %8s | %8s %8s %6s %10s | %8s | %6s %6s\n",
               "case", "driver", "qd", "IOPS", "p50 µs", "p99 µs", "p99.9", "dev µs", "io-thr", "cores",
               "IOPS/core", "drv µs", "db/io", "irq/io");
        printf("%-22s %-6s %4s | %9s %8s %8s %8s | %8s %8s %6s %10s | %8s | %6s %6s\n",
               "", "", "", "", "", "", "", "per I/O", "per I/O", "", "(device)", "per I/O", "", "");
}

static void print_result(const Opts *o, const Result *r, bool *first) {
        if (o->json) {
                printf("%s\n    {\"case\": \"%s\", \"driver\": \"%s\", \"qd\": %u, \"iops\": %.0f, \"p50_us\": %.2f, "
                       "\"p99_us\": %.2f, \"p999_us\": %.2f, \"driver_cpu_us_per_io\": %.3f",
                       *first ? "" : ",", r->name, r->driver, r->qd, r->iops, r->p50_us, r->p99_us, r->p999_us,
                       r->drv_us_per_io);
                if (r->have_dev)
                        printf(", \"device_cpu_us_per_io\": %.3f, \"device_io_threads_cpu_us_per_io\": %.3f, "
                               "\"device_cores\": %.3f, \"iops_per_device_core\": %.0f, \"io_threads\": %u, "
                               "\"doorbells_per_io\": %.4f, \"irqs_per_io\": %.4f",
                               r->dev_us_per_io, r->dev_io_us_per_io, r->dev_cores, r->iops_per_dev_core,
                               r->io_threads, r->doorbells_per_io, r->irqs_per_io);
                printf("}");
        } else if (r->have_dev) {
                printf("%-22s %-6s %4u | %9.0f %8.1f %8.1f %8.1f | %8.3f %8.3f %6.2f %10.0f | %8.3f | %6.3f %6.3f\n",
                       r->name, r->driver, r->qd, r->iops, r->p50_us, r->p99_us, r->p999_us, r->dev_us_per_io,
                       r->dev_io_us_per_io, r->dev_cores, r->iops_per_dev_core, r->drv_us_per_io,
                       r->doorbells_per_io, r->irqs_per_io);
        } else {
                printf("%-22s %-6s %4u | %9.0f %8.1f %8.1f %8.1f | %8s %8s %6s %10s | %8.3f |\n",
                       r->name, r->driver, r->qd, r->iops, r->p50_us, r->p99_us, r->p999_us, "-", "-", "-", "-",
                       r->drv_us_per_io);
        }
        *first = false;
        fflush(stdout);
}

static bool want(const Opts *o, const char *c) {
        return !o->only || strcmp(o->only, c) == 0;
}

int main(int argc, char **argv) {
        Opts o = { .secs = 2, .idle_secs = 10, .size_mib = 256, .iothreads = 1, .queues = 1, .poll_us = 50 };
        static const struct option opts[] = {
                { "seconds", required_argument, NULL, 't' },
                { "idle-seconds", required_argument, NULL, 'i' },
                { "size", required_argument, NULL, 's' },
                { "queues", required_argument, NULL, 'q' },
                { "iothreads", required_argument, NULL, 'n' },
                { "poll-us", required_argument, NULL, 'p' },
                { "case", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "t:i:s:q:n:p:c:jh", opts, NULL)) >= 0) {
                switch (c) {
                case 't': o.secs = strtod(optarg, NULL); break;
                case 'i': o.idle_secs = strtod(optarg, NULL); break;
                case 's': o.size_mib = strtoull(optarg, NULL, 10); break;
                case 'q': o.queues = (unsigned) CLAMP(strtoul(optarg, NULL, 10), 1, 8); break;
                case 'n': o.iothreads = (unsigned) CLAMP(strtoul(optarg, NULL, 10), 1, NVME_MAX_IOTHREADS); break;
                case 'p': o.poll_us = (unsigned) strtoul(optarg, NULL, 10); break;
                case 'c': o.only = optarg; break;
                case 'j': o.json = true; break;
                default:
                        printf("usage: %s [--seconds S] [--idle-seconds S] [--size MiB] [--queues N] [--iothreads N]\n"
                               "          [--poll-us US] [--case null|file|threads|window|idle|msi] [--json]\n", argv[0]);
                        return c == 'h' ? 0 : 2;
                }
        }
        g_autofree char *dir = g_dir_make_tmp("nvme-proc-bench-XXXXXX", NULL);
        g_autofree char *sock = g_build_filename(dir, "dev.sock", NULL);
        g_autofree char *path = g_build_filename(BUILDDIR, "nvme-proc-bench.img", NULL);
        uint64_t size = o.size_mib << 20, nblocks = size / BS;
        bool first = true;
        Result r;

        if (o.json)
                printf("{\"benchmark\": \"nvme-proc-bench\", \"seconds\": %.1f, \"file_mib\": %" G_GUINT64_FORMAT
                       ", \"queues\": %u, \"iothreads\": %u, \"poll_us\": %u, \"results\": [", o.secs, o.size_mib,
                       o.queues, o.iothreads, o.poll_us);
        else
                printf("nvme-proc-bench: 4 KiB random reads, driver and device in separate processes, %.1f s per case, "
                       "%u queue pair(s), %u I/O thread(s), device poll window %u µs\n", o.secs, o.queues,
                       o.iothreads, o.poll_us);
        print_header(&o);

        static const char *const drivers[] = { "poll", "irq" };
        if (want(&o, "null")) {
                static const unsigned qds[] = { 1, 32, 128 };
                for (unsigned m = 0; m < 2; m++) {
                        DevSpec sp = { .poll_us = -1, .sock = sock, .size = 1ull << 40, .o = &o };
                        Device dv;
                        device_start(&dv, &sp, m == 0);
                        for (unsigned i = 0; i < G_N_ELEMENTS(qds); i++) {
                                r = (Result) { .name = "nvme-null randread", .driver = drivers[m], .qd = qds[i] };
                                run_dev(&dv, m == 0, qds[i], o.secs, (1ull << 40) / BS, &r);
                                print_result(&o, &r, &first);
                        }
                        device_stop(&dv);
                }
        }
        if (want(&o, "file")) {
                /* The file, written once so reads hit real page-cache pages. */
                int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                g_autofree uint8_t *chunk = g_malloc(1 << 20);
                memset(chunk, 0xa5, 1 << 20);
                for (uint64_t off = 0; fd >= 0 && off < size; off += 1 << 20)
                        if (pwrite(fd, chunk, 1 << 20, (off_t) off) != 1 << 20)
                                return 1;
                if (fd < 0)
                        return 1;
                close(fd);
                static const unsigned qds[] = { 1, 32 };
                for (unsigned i = 0; i < G_N_ELEMENTS(qds); i++) {
                        r = (Result) { .name = "raw io_uring (1 thread)", .driver = "-", .qd = qds[i] };
                        run_uring(path, qds[i], o.secs, nblocks, &r);
                        print_result(&o, &r, &first);
                }
                r = (Result) { .name = "raw psync (1 thread)", .driver = "-", .qd = 1 };
                run_psync(path, o.secs, nblocks, &r);
                print_result(&o, &r, &first);
                for (unsigned m = 0; m < 2; m++) {
                        DevSpec sp = { .poll_us = -1, .sock = sock, .file = path, .o = &o };
                        Device dv;
                        device_start(&dv, &sp, m == 0);
                        for (unsigned i = 0; i < G_N_ELEMENTS(qds); i++) {
                                r = (Result) { .name = "nvme-file randread", .driver = drivers[m], .qd = qds[i] };
                                run_dev(&dv, m == 0, qds[i], o.secs, nblocks, &r);
                                print_result(&o, &r, &first);
                        }
                        device_stop(&dv);
                }
                unlink(path);
        }
        if (want(&o, "threads")) {
                /* The same two queue pairs served by one I/O thread, then by two. */
                static const unsigned qds[] = { 32, 128 };
                static const char *const names[] = { "nvme-null 2q 1 thread", "nvme-null 2q 2 threads" };
                for (unsigned n = 1; n <= 2; n++)
                        for (unsigned m = 0; m < 2; m++) {
                                DevSpec sp = { .poll_us = -1, .sock = sock, .size = 1ull << 40, .o = &o, .queues = 2, .iothreads = n };
                                Device dv;
                                device_start(&dv, &sp, m == 0);
                                for (unsigned i = 0; i < G_N_ELEMENTS(qds); i++) {
                                        r = (Result) { .name = names[n - 1], .driver = drivers[m], .qd = qds[i] };
                                        run_dev(&dv, m == 0, qds[i], o.secs, (1ull << 40) / BS, &r);
                                        print_result(&o, &r, &first);
                                }
                                device_stop(&dv);
                        }
        }
        if (want(&o, "window")) {
                /* QD1, where the polling window decides between spinning and a wake-up per I/O. */
                static const int windows[] = { 0, 20, 50, 200 };
                static const char *const names[] = { "nvme-null poll-us 0", "nvme-null poll-us 20",
                                                     "nvme-null poll-us 50", "nvme-null poll-us 200" };
                for (unsigned w = 0; w < G_N_ELEMENTS(windows); w++)
                        for (unsigned m = 0; m < 2; m++) {
                                DevSpec sp = { .poll_us = windows[w], .sock = sock, .size = 1ull << 40, .o = &o };
                                Device dv;
                                device_start(&dv, &sp, m == 0);
                                r = (Result) { .name = names[w], .driver = drivers[m], .qd = 1 };
                                run_dev(&dv, m == 0, 1, o.secs, (1ull << 40) / BS, &r);
                                print_result(&o, &r, &first);
                                device_stop(&dv);
                        }
        }
        if (want(&o, "msi")) {
                /* Interrupts decide here: the same device with MSI-X, then with MSI, for a sleeping driver. */
                static const unsigned qds[] = { 1, 32 };
                static const char *const names[] = { "nvme-null MSI-X", "nvme-null MSI" };
                for (unsigned msi = 0; msi < 2; msi++) {
                        DevSpec sp = { .poll_us = -1, .sock = sock, .size = 1ull << 40, .o = &o, .msi = msi };
                        Device dv;
                        device_start(&dv, &sp, false);
                        for (unsigned i = 0; i < G_N_ELEMENTS(qds); i++) {
                                r = (Result) { .name = names[msi], .driver = "irq", .qd = qds[i] };
                                run_dev(&dv, false, qds[i], o.secs, (1ull << 40) / BS, &r);
                                print_result(&o, &r, &first);
                        }
                        device_stop(&dv);
                }
        }
        if (want(&o, "idle")) {
                /* With the options' I/O threads, then with two over two queue pairs (both used once). */
                for (unsigned pass = 0; pass < 2; pass++) {
                        DevSpec sp = { .poll_us = -1, .sock = sock, .size = 1ull << 40, .o = &o };
                        if (pass == 1) {
                                sp.queues = MAX(o.queues, 2u);
                                sp.iothreads = 2;
                        }
                        Device dv;
                        DevSample s0, s1;
                        device_start(&dv, &sp, false);
                        /* One I/O on each queue first, so the device has seen them in use. */
                        r = (Result) { 0 };
                        run_dev(&dv, false, dv.nq, 0.05, 1024, &r);
                        g_usleep(200 * 1000);
                        device_sample(&dv, &s0);
                        uint64_t t0 = now_ns();
                        g_usleep((gulong) (o.idle_secs * 1e6));
                        device_sample(&dv, &s1);
                        double wall = (now_ns() - t0) / 1e9;
                        double io_pct = (double) (s1.io_ns - s0.io_ns) / 1e9 / wall * 100;
                        double all_pct = io_pct + (double) (s1.other_ns - s0.other_ns) / 1e9 / wall * 100;
                        if (o.json)
                                printf("%s\n    {\"case\": \"idle\", \"io_threads\": %u, \"seconds\": %.1f, "
                                       "\"device_cpu_percent\": %.4f, \"device_io_threads_cpu_percent\": %.4f, "
                                       "\"wakeups\": %" G_GUINT64_FORMAT "}",
                                       first ? "" : ",", s1.io_threads, wall, all_pct, io_pct, s1.wakeups - s0.wakeups);
                        else
                                printf("idle, driver connected, %u I/O thread(s): %.1f s, device threads %.4f %% of a core "
                                       "(I/O threads %.4f %%), %" G_GUINT64_FORMAT " wake-ups\n", s1.io_threads, wall,
                                       all_pct, io_pct, s1.wakeups - s0.wakeups);
                        first = false;
                        device_stop(&dv);
                }
        }
        if (o.json)
                printf("\n]}\n");
        unlink(sock);
        rmdir(dir);
        return 0;
}
