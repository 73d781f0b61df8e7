/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Protocol suite: NVMe I/O limits measured as a benchmark would.  Each
 * case is a controller behind our vfio-user server and our client as the
 * VMM, driving queue depth 8 per queue as fast as the device lets it; the
 * delivered rate, counted from the completions the client reaps over at
 * least 10 s after the starting bucket has been spent, must be the limit
 * within ±5% — reads, writes, a read/write mix against a total and against
 * separate limits, a burst (its rate for its length, then the average), a
 * group shared by two namespaces, and a limit changed while I/O runs.  The
 * cases run at once, each on its own thread (they mostly wait), so the
 * suite pays for the longest.  Before them: a command held by a limit
 * waits in its SQ and a Flush behind it does not overtake it, while
 * another SQ goes on.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "nvme-srv.h"

#define GPA 0x100000000ull
#define RAM (16ull << 20)
#define QUEUES 2
#define NVEC (QUEUES + 1)
#define QD 8
#define BS 4096u
#define TOLERANCE 0.05

typedef struct Fx {
        char *dir, *sock;
        NvmeSrv srv;
        NvmeVmm vmm;
        NvmeDrv *d;
        uint64_t buf;
} Fx;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* A controller with two null namespaces of 4 KiB blocks and its two I/O queue pairs; NULL on failure. */
static Fx *fx_new(const char *name) {
        Fx *f = g_new0(Fx, 1);
        NvmeCtrlConfig cfg = { .name = name, .serial = "VFU-QOS", .max_ioqs = QUEUES, .msix_nvec = NVEC,
                               .cntlid = 1, .poll_us = 0, .iothreads = 1 };

        f->dir = g_build_filename(BUILDDIR, "tests-nvme-qos-XXXXXX", NULL);
        if (!g_mkdtemp(f->dir))
                return NULL;
        f->sock = g_build_filename(f->dir, "nvme.sock", NULL);
        if (nvme_srv_start(&f->srv, &cfg, f->sock) < 0)
                return NULL;
        for (uint32_t nsid = 1; nsid <= 2; nsid++) {
                BlkOpenOptions o = { .fd = -1, .size = 1ull << 30, .null = true };
                BlkBackend *b = NULL;

                if (blk_backend_open(&o, &b) < 0 || nvme_ctrl_ns_add(f->srv.c, nsid, b, BS, false) < 0)
                        return NULL;
        }
        if (nvme_vmm_connect(&f->vmm, f->sock, GPA, RAM, NVEC) < 0)
                return NULL;
        f->d = &f->vmm.d;
        f->buf = nvme_drv_alloc(f->d, 1 << 20, 4096);
        if (nvme_drv_enable(f->d, 32) < 0 || nvme_drv_set_features(f->d, 0x07, 1 | 1 << 16, NULL) < 0)
                return NULL;
        for (uint16_t q = 1; q <= QUEUES; q++)
                if (nvme_drv_create_io_queues(f->d, q, 64, q) < 0)
                        return NULL;
        return f;
}

static void fx_free(Fx *f) {
        nvme_vmm_disconnect(&f->vmm);
        nvme_srv_stop(&f->srv);
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
                fprintf(stderr, "cannot remove %s\n", f->dir);
        g_free(f->sock);
        g_free(f->dir);
        g_free(f);
}

static QosConfig limit(QosKind k, uint64_t avg, uint64_t max, uint64_t max_length) {
        QosConfig cfg = { 0 };

        cfg.rate[k] = (QosRate) { .avg = avg, .max = max, .max_length = max_length };
        return cfg;
}

/* What one queue runs: reads, writes or both in turn, of nlb blocks, on a namespace. */
typedef enum { MIX_READ, MIX_WRITE, MIX_BOTH } Mix;

typedef struct Stream {
        uint16_t qid;
        uint32_t nsid;
        uint32_t nlb;
        Mix mix;
        uint64_t sent, done, bytes;     /* done and bytes: completions counted in the phase */
        uint64_t reads, writes;
        bool error;
} Stream;

static void submit(Fx *f, Stream *s) {
        bool write = s->mix == MIX_WRITE || (s->mix == MIX_BOTH && (s->sent & 1));
        uint64_t slba = (s->sent * s->nlb) % 65536;
        NvmeSqe c = { .opcode = write ? NVME_CMD_WRITE : NVME_CMD_READ, .nsid = s->nsid,
                      .cdw10 = (uint32_t) slba, .cdw12 = s->nlb - 1 };

        nvme_drv_build_prps(f->d, &c, f->buf + (s->qid - 1) * (256u << 10), (uint64_t) s->nlb * BS);
        nvme_drv_queue(f->d, s->qid, &c);
        s->sent++;
}

/* Sleep until an I/O queue's interrupt or 20 ms. */
static void wait_irqs(Fx *f) {
        struct pollfd p[QUEUES];

        for (unsigned q = 0; q < QUEUES; q++)
                p[q] = (struct pollfd) { .fd = f->vmm.irq_fds[q + 1], .events = POLLIN };
        if (poll(p, QUEUES, 20) > 0)
                for (unsigned q = 0; q < QUEUES; q++)
                        if (p[q].revents & POLLIN) {
                                uint64_t v;
                                ssize_t r = read(p[q].fd, &v, sizeof(v));
                                (void) r;
                        }
}

/*
 * Keep QD commands in flight on every stream for secs seconds, counting
 * what completes in that time into the streams (zeroed first); at the end
 * the commands in flight are reaped, uncounted, and nothing is left in
 * flight.  The limits may change on the way: at change_at seconds, call
 * change(f) once.
 */
static void run(Fx *f, Stream *s, unsigned n, double secs, double change_at, void (*change)(Fx *)) {
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9);
        uint64_t change_ns = t0 + (uint64_t) (change_at * 1e9);
        unsigned inflight = 0;
        bool counting = true;

        for (unsigned i = 0; i < n; i++) {
                s[i].done = s[i].bytes = s[i].reads = s[i].writes = 0;
                for (unsigned k = 0; k < QD; k++, inflight++)
                        submit(f, &s[i]);
                nvme_drv_ring(f->d, s[i].qid);
        }
        while (inflight > 0) {
                unsigned reaped = 0;
                uint64_t now = now_ns();

                if (change && now >= change_ns) {
                        change(f);
                        change = NULL;
                }
                if (now >= end)
                        counting = false;
                for (unsigned i = 0; i < n; i++) {
                        NvmeCqe e;
                        unsigned rq = 0;

                        while (nvme_drv_poll(f->d, s[i].qid, &e)) {
                                rq++;
                                inflight--;
                                if (nvme_drv_status(&e) != 0)
                                        s[i].error = true;
                                if (counting) {
                                        s[i].done++;
                                        s[i].bytes += (uint64_t) s[i].nlb * BS;
                                }
                                if (counting) {
                                        submit(f, &s[i]);
                                        inflight++;
                                }
                        }
                        if (rq)
                                nvme_drv_ring(f->d, s[i].qid);
                        reaped += rq;
                }
                if (!reaped)
                        wait_irqs(f);
        }
}

/* A measured rate against what the limit says, judged on the main thread. */
typedef struct Check {
        char what[96];
        double got, want;
} Check;

typedef struct Case {
        const char *name;
        void (*fn)(struct Case *k, Fx *f);
        Check checks[4];
        unsigned n_checks;
        uint64_t hits;                  /* limit hits the controller counted */
        bool failed;
        char why[128];
} Case;

static void check(Case *k, const char *what, double got, double want) {
        Check *c = &k->checks[k->n_checks++];

        g_strlcpy(c->what, what, sizeof(c->what));
        c->got = got;
        c->want = want;
}

#define WARMUP 1.0      /* spends the bucket an idle device starts with (0.1 s at the average) */
#define MEASURE 10.0

/* Reads against iops-read 1000 at 4 KiB. */
static void case_reads(Case *k, Fx *f) {
        QosConfig cfg = limit(QOS_OPS_READ, 1000, 0, 0);
        Stream s = { .qid = 1, .nsid = 1, .nlb = 1, .mix = MIX_READ };

        nvme_ctrl_set_limits(f->srv.c, 1, &cfg);
        run(f, &s, 1, WARMUP, 0, NULL);
        run(f, &s, 1, MEASURE, 0, NULL);
        check(k, "reads/s", s.done / MEASURE, 1000);
        k->hits = nvme_ctrl_limit_hits(f->srv.c, 1);
}

/* Writes of 16 KiB against bytes-write 4 MiB/s. */
static void case_writes(Case *k, Fx *f) {
        QosConfig cfg = limit(QOS_BYTES_WRITE, 4u << 20, 0, 0);
        Stream s = { .qid = 1, .nsid = 1, .nlb = 4, .mix = MIX_WRITE };

        nvme_ctrl_set_limits(f->srv.c, 1, &cfg);
        run(f, &s, 1, WARMUP, 0, NULL);
        run(f, &s, 1, MEASURE, 0, NULL);
        check(k, "written bytes/s", s.bytes / MEASURE, 4u << 20);
        k->hits = nvme_ctrl_limit_hits(f->srv.c, 1);
}

/* Reads and writes in turn on one queue against iops-total 800. */
static void case_mixed_total(Case *k, Fx *f) {
        QosConfig cfg = limit(QOS_OPS_TOTAL, 800, 0, 0);
        Stream s = { .qid = 1, .nsid = 1, .nlb = 2, .mix = MIX_BOTH };

        nvme_ctrl_set_limits(f->srv.c, 1, &cfg);
        run(f, &s, 1, WARMUP, 0, NULL);
        run(f, &s, 1, MEASURE, 0, NULL);
        check(k, "reads+writes/s", s.done / MEASURE, 800);
        k->hits = nvme_ctrl_limit_hits(f->srv.c, 1);
}

/* Reads on one queue and writes on the other against bytes-read 3 MiB/s and bytes-write 1 MiB/s. */
static void case_mixed_separate(Case *k, Fx *f) {
        QosConfig cfg = { 0 };
        Stream s[2] = { { .qid = 1, .nsid = 1, .nlb = 2, .mix = MIX_READ },
                        { .qid = 2, .nsid = 1, .nlb = 8, .mix = MIX_WRITE } };

        cfg.rate[QOS_BYTES_READ].avg = 3u << 20;
        cfg.rate[QOS_BYTES_WRITE].avg = 1u << 20;
        nvme_ctrl_set_limits(f->srv.c, 1, &cfg);
        run(f, s, 2, WARMUP, 0, NULL);
        run(f, s, 2, MEASURE, 0, NULL);
        check(k, "read bytes/s", s[0].bytes / MEASURE, 3u << 20);
        check(k, "written bytes/s", s[1].bytes / MEASURE, 1u << 20);
        k->hits = nvme_ctrl_limit_hits(f->srv.c, 1);
}

/*
 * iops-total 300 with bursts of 1500 for 3 s: from an idle start, 3 s at
 * the burst rate, then the average.
 */
static void case_burst(Case *k, Fx *f) {
        QosConfig cfg = limit(QOS_OPS_TOTAL, 300, 1500, 3);
        Stream s = { .qid = 1, .nsid = 1, .nlb = 1, .mix = MIX_READ };

        nvme_ctrl_set_limits(f->srv.c, 1, &cfg);
        run(f, &s, 1, 3, 0, NULL);
        check(k, "reads/s in the 3 s burst", s.done / 3.0, 1500);
        run(f, &s, 1, WARMUP, 0, NULL);
        run(f, &s, 1, MEASURE, 0, NULL);
        check(k, "reads/s after it", s.done / MEASURE, 300);
        k->hits = nvme_ctrl_limit_hits(f->srv.c, 1);
}

/* A group of iops-total 600 over both namespaces, namespace 1 also held to 200 of them. */
static void case_group(Case *k, Fx *f) {
        QosConfig group = limit(QOS_OPS_TOTAL, 600, 0, 0), ns1 = limit(QOS_OPS_TOTAL, 200, 0, 0);
        Stream s[2] = { { .qid = 1, .nsid = 1, .nlb = 1, .mix = MIX_WRITE },
                        { .qid = 2, .nsid = 2, .nlb = 1, .mix = MIX_READ } };

        nvme_ctrl_set_limits(f->srv.c, 0, &group);
        nvme_ctrl_set_limits(f->srv.c, 1, &ns1);
        run(f, s, 2, WARMUP, 0, NULL);
        run(f, s, 2, MEASURE, 0, NULL);
        check(k, "namespace 1 writes/s", s[0].done / MEASURE, 200);
        check(k, "both namespaces I/O/s", (s[0].done + s[1].done) / MEASURE, 600);
        k->hits = nvme_ctrl_limit_hits(f->srv.c, 0);
}

static void raise_limit(Fx *f) {
        QosConfig cfg = limit(QOS_BYTES_READ, 6u << 20, 0, 0);

        nvme_ctrl_set_limits(f->srv.c, 1, &cfg);
}

/* bytes-read 2 MiB/s raised to 6 MiB/s while the reads go on: each rate in its own 10 s. */
static void case_change(Case *k, Fx *f) {
        QosConfig cfg = limit(QOS_BYTES_READ, 2u << 20, 0, 0);
        Stream s = { .qid = 1, .nsid = 1, .nlb = 8, .mix = MIX_READ };

        nvme_ctrl_set_limits(f->srv.c, 1, &cfg);
        run(f, &s, 1, WARMUP, 0, NULL);
        run(f, &s, 1, MEASURE, 0, NULL);
        check(k, "read bytes/s before", s.bytes / MEASURE, 2u << 20);
        /* Changed without stopping: the commands in flight at the change go on. */
        run(f, &s, 1, 0.5 + MEASURE, 0.0, raise_limit);
        check(k, "read bytes/s after", s.bytes / (0.5 + MEASURE), 6u << 20);
        k->hits = nvme_ctrl_limit_hits(f->srv.c, 1);
}

static void *case_thread(void *opaque) {
        Case *k = opaque;
        Fx *f = fx_new(k->name);
        Stream *bad = NULL;

        if (!f) {
                k->failed = true;
                g_snprintf(k->why, sizeof(k->why), "cannot set up the controller");
                return NULL;
        }
        k->fn(k, f);
        (void) bad;
        fx_free(f);
        return NULL;
}

static void test_rates(void **state) {
        Case cases[] = {
                { "qos-reads", case_reads },
                { "qos-writes", case_writes },
                { "qos-mixed-total", case_mixed_total },
                { "qos-mixed-separate", case_mixed_separate },
                { "qos-burst", case_burst },
                { "qos-group", case_group },
                { "qos-change", case_change },
        };
        const char *only = getenv("QOS_CASE");
        pthread_t th[G_N_ELEMENTS(cases)];
        bool ok = true;

        for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++)
                if (!only || strcmp(only, cases[i].name) == 0)
                        assert_int_equal(pthread_create(&th[i], NULL, case_thread, &cases[i]), 0);
        for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
                Case *k = &cases[i];

                if (only && strcmp(only, k->name) != 0)
                        continue;
                pthread_join(th[i], NULL);
                if (k->failed) {
                        printf("%s: %s\n", k->name, k->why);
                        ok = false;
                        continue;
                }
                for (unsigned j = 0; j < k->n_checks; j++) {
                        const Check *c = &k->checks[j];
                        double dev = c->got / c->want - 1;
                        bool good = dev >= -TOLERANCE && dev <= TOLERANCE;

                        printf("%-20s %-28s %12.0f  limit %12.0f  %+6.2f%%  %s\n", k->name, c->what,
                               c->got, c->want, dev * 100, good ? "ok" : "FAIL");
                        ok &= good;
                }
                printf("%-20s limit hits %" G_GUINT64_FORMAT "\n", k->name, k->hits);
                ok &= k->hits > 0;
        }
        assert_true(ok);
}

/*
 * iops-write 2: the second write waits about half a second in its SQ; a
 * Flush queued behind it completes after it, and a read on the other SQ
 * does not wait for either.  Nothing fails.
 */
static void test_held_in_order(void **state) {
        Fx *f = fx_new("qos-order");
        QosConfig cfg = limit(QOS_OPS_WRITE, 2, 0, 0);
        NvmeCqe e;

        assert_non_null(f);
        assert_int_equal(nvme_ctrl_set_limits(f->srv.c, 1, &cfg), 0);
        NvmeSqe w = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw12 = 0 };
        NvmeSqe fl = { .opcode = NVME_CMD_FLUSH, .nsid = 1 };
        nvme_drv_build_prps(f->d, &w, f->buf, BS);
        uint16_t w1 = nvme_drv_queue(f->d, 1, &w);
        uint16_t w2 = nvme_drv_queue(f->d, 1, &w);
        uint16_t fc = nvme_drv_queue(f->d, 1, &fl);
        nvme_drv_ring(f->d, 1);
        assert_int_equal(nvme_drv_reap(f->d, 1, &e, 5000), 0);
        assert_int_equal(e.cid, w1);
        assert_int_equal(nvme_drv_status(&e), 0);
        /* The second write is held: the other queue's read goes through meanwhile. */
        assert_int_equal(nvme_drv_rw(f->d, 2, false, 1, 0, 1, BS, f->buf, false), 0);
        assert_int_equal(nvme_drv_poll(f->d, 1, &e), 0);
        assert_int_equal(nvme_drv_reap(f->d, 1, &e, 5000), 0);
        assert_int_equal(e.cid, w2);
        assert_int_equal(nvme_drv_status(&e), 0);
        assert_int_equal(nvme_drv_reap(f->d, 1, &e, 5000), 0);
        assert_int_equal(e.cid, fc);
        assert_int_equal(nvme_drv_status(&e), 0);
        assert_int_equal(nvme_ctrl_limit_hits(f->srv.c, 1), 1);
        assert_int_equal(nvme_ctrl_limit_hits(f->srv.c, 0), 0);
        /* Limits are checked: a total with a read limit is refused, nsid beyond the range too. */
        QosConfig bad = limit(QOS_OPS_TOTAL, 10, 0, 0);
        bad.rate[QOS_OPS_READ].avg = 5;
        assert_int_equal(nvme_ctrl_set_limits(f->srv.c, 1, &bad), -EINVAL);
        assert_int_equal(nvme_ctrl_set_limits(f->srv.c, NVME_MAX_NS + 1, &cfg), -ENOENT);
        fx_free(f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_held_in_order),
                cmocka_unit_test(test_rates),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
