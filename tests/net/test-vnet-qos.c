/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Protocol suite: virtio-net transmit and receive limits measured as a
 * benchmark would.  Each case is the device on our server with the null
 * backend and our client as a Linux-like driver sending (or receiving) as
 * fast as the device lets it; the delivered rate (what reached the backend,
 * or what the driver received) over at least 10 s after the starting
 * bucket has been spent must be the limit within ±5%: bytes and packets
 * per second each way, and bursts (<bandwidth> peak and burst: the peak
 * rate until the burst is spent, then the average).  The cases run at once
 * on their own threads.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "srv-thread.h"
#include "net/vnet.h"
#include "vfio-user/client.h"
#include "vfio-user/server.h"
#include "virtio/virtio-pci.h"
#include "vnet-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)
#define FEATURES (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | F(MAC) | F(STATUS) | F(MTU))
#define TOLERANCE 0.05
#define WARMUP 1.0
#define MEASURE 10.0
#define KIB 1024u

typedef struct Net {
        char sock[96];
        VNet *n;
        NetBackend *be;
        VuServer *s;
        SrvThread thread;
        VuClient *c;
        VuGuestRam ram;
        int irq[4];
        unsigned nvec;
        Vd d;
        uint8_t buf[2048];
} Net;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static int irq_fire(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps irq_ops = { .fire = irq_fire };

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Net *) o)->c, 0, off, buf, (uint32_t) len);
}

static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        return vu_client_region_write(((Net *) o)->c, 0, off, buf, (uint32_t) len, true);
}

static int c_wait(void *o, unsigned vector, int ms) {
        Net *t = o;
        return vector < t->nvec ? vu_client_wait_irq(t->irq[vector], ms) : 0;
}

static const VdOps client_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

/* One pair on the null backend (received frames of rx_len bytes), probed; NULL on failure. */
static Net *net_new(const char *name, size_t rx_len) {
        Net *t = g_new0(Net, 1);
        VNetOptions o = { .pairs = 1, .link_up = true, .queue_size = 256, .name = name };
        VuServerConfig scfg = { 0 };

        memcpy(o.mac, "\x52\x54\x00\x12\x34\x56", 6);
        if (net_null_open(1, rx_len, &t->be) < 0 || vnet_new(&o, t->be, &t->n) < 0 ||
            vnet_server_config(t->n, &scfg) < 0)
                return NULL;
        scfg.name = name;
        if (vu_server_new(&scfg, &t->s) < 0)
                return NULL;
        vnet_attach(t->n, vu_server_mem(t->s), &irq_ops, t->s);
        g_snprintf(t->sock, sizeof(t->sock), "/tmp/vfu-%s-%d.sock", name, getpid());
        if (vu_server_listen(t->s, t->sock) < 0 || srv_thread_start(&t->thread, t->s) < 0)
                return NULL;
        if (vu_client_connect(t->sock, &t->c) < 0 || vu_client_negotiate(t->c, NULL) < 0 ||
            vu_guest_ram_new(0x100000000ull, 16 << 20, &t->ram) < 0 || vu_client_map_ram(t->c, &t->ram) < 0)
                return NULL;
        t->nvec = 3;
        if (vu_client_enable_msix(t->c, t->nvec, t->irq) < 0)
                return NULL;
        vd_init(&t->d, &client_ops, t, t->ram.host, t->ram.gpa_base, t->ram.size);
        t->d.napi_rx = true;
        if (vd_probe(&t->d, FEATURES, 1, 0) < 0)
                return NULL;
        return t;
}

static void net_free(Net *t) {
        vu_client_free(t->c);
        for (unsigned i = 0; i < t->nvec; i++)
                close(t->irq[i]);
        srv_thread_stop(&t->thread);
        vu_server_free(t->s);
        vnet_free(t->n);
        vu_guest_ram_free(&t->ram);
        unlink(t->sock);
        g_free(t);
}

/* Transmit frames of len bytes for secs seconds; the backend's byte and frame counts of that time. */
static void tx_run(Net *t, size_t len, double secs, uint64_t *bytes, uint64_t *frames) {
        static const VNetHdr h0 = { 0 };
        uint8_t frame[1514];
        NetNullStats a, b;
        uint64_t end;

        memset(frame, 0xff, 12);
        memset(frame + 12, 0x5a, sizeof(frame) - 12);
        net_null_get_stats(t->be, 0, &a);
        end = now_ns() + (uint64_t) (secs * 1e9);
        while (now_ns() < end) {
                if (vd_send(&t->d, 0, &h0, frame, len) == 0)
                        continue;
                if (vd_tx_reclaim(&t->d, 0) == 0) {
                        vd_irq_enable(&t->d, 1);
                        c_wait(t, t->d.q[1].vector, 20);
                }
        }
        net_null_get_stats(t->be, 0, &b);
        *bytes = b.tx_bytes - a.tx_bytes;
        *frames = b.tx_frames - a.tx_frames;
}

/* Receive for secs seconds: the bytes and frames the driver got. */
static void rx_run(Net *t, double secs, uint64_t *bytes, uint64_t *frames) {
        uint64_t end = now_ns() + (uint64_t) (secs * 1e9);
        VNetHdr h;

        *bytes = *frames = 0;
        while (now_ns() < end) {
                ssize_t n = vd_recv(&t->d, 0, &h, t->buf, sizeof(t->buf), 20);

                if (n > 0) {
                        *bytes += (uint64_t) n;
                        (*frames)++;
                }
        }
}

typedef struct Check {
        char what[64];
        double got, want;
} Check;

typedef struct Case {
        const char *name;
        bool tx;
        size_t len;                     /* frame bytes */
        QosRate bytes, packets;         /* the limit: bytes-total, iops-total */
        double burst_secs;              /* > 0: the peak for this long from the start, then the average */
        Check checks[2];
        unsigned n_checks;
        uint64_t hits;
        bool failed;
} Case;

static void check(Case *k, const char *what, double got, double want) {
        Check *c = &k->checks[k->n_checks++];

        g_strlcpy(c->what, what, sizeof(c->what));
        c->got = got;
        c->want = want;
}

static void *case_thread(void *opaque) {
        Case *k = opaque;
        Net *t = net_new(k->name, k->tx ? 0 : k->len);
        QosConfig lim = { 0 }, none = { 0 };
        uint64_t bytes, frames;
        bool pps = k->packets.avg != 0;

        if (!t) {
                k->failed = true;
                return NULL;
        }
        lim.rate[QOS_BYTES_TOTAL] = k->bytes;
        lim.rate[QOS_OPS_TOTAL] = k->packets;
        if (vnet_set_limits(t->n, k->tx ? &lim : &none, k->tx ? &none : &lim) < 0) {
                k->failed = true;
                net_free(t);
                return NULL;
        }
        if (!k->tx)
                vd_rx_post(&t->d, 0);
        if (k->burst_secs > 0) {
                if (k->tx)
                        tx_run(t, k->len, k->burst_secs, &bytes, &frames);
                else
                        rx_run(t, k->burst_secs, &bytes, &frames);
                check(k, "in the burst", (pps ? frames : bytes) / k->burst_secs,
                      pps ? k->packets.max : k->bytes.max);
        }
        if (k->tx) {
                tx_run(t, k->len, WARMUP, &bytes, &frames);
                tx_run(t, k->len, MEASURE, &bytes, &frames);
        } else {
                rx_run(t, WARMUP, &bytes, &frames);
                rx_run(t, MEASURE, &bytes, &frames);
        }
        check(k, pps ? "packets/s" : "bytes/s", (pps ? frames : bytes) / MEASURE,
              pps ? k->packets.avg : k->bytes.avg);
        k->hits = vnet_limit_hits(t->n, k->tx);
        net_free(t);
        return NULL;
}

static void test_rates(void **state) {
        Case cases[] = {
                { "qos-tx-bytes", true, 1514, .bytes = { .avg = 2048 * KIB } },
                { "qos-tx-pps", true, 60, .packets = { .avg = 1000 } },
                /* peak 4096 KiB/s with 6144 KiB above the average: 2 s of it */
                { "qos-tx-burst", true, 1514, .bytes = { .avg = 1024 * KIB, .max = 4096 * KIB, .burst = 6144 * KIB },
                  .burst_secs = 2 },
                { "qos-rx-bytes", false, 1514, .bytes = { .avg = 2048 * KIB } },
                { "qos-rx-pps", false, 60, .packets = { .avg = 1000 } },
                { "qos-rx-burst", false, 1000, .bytes = { .avg = 1024 * KIB, .max = 4096 * KIB, .burst = 6144 * KIB },
                  .burst_secs = 2 },
        };
        pthread_t th[G_N_ELEMENTS(cases)];
        bool ok = true;

        for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++)
                assert_int_equal(pthread_create(&th[i], NULL, case_thread, &cases[i]), 0);
        for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
                Case *k = &cases[i];

                pthread_join(th[i], NULL);
                if (k->failed) {
                        printf("%s: cannot set up the device\n", k->name);
                        ok = false;
                        continue;
                }
                for (unsigned j = 0; j < k->n_checks; j++) {
                        const Check *c = &k->checks[j];
                        double dev = c->got / c->want - 1;
                        bool good = dev >= -TOLERANCE && dev <= TOLERANCE;

                        printf("%-14s %-14s %12.0f  limit %12.0f  %+6.2f%%  %s\n", k->name, c->what, c->got,
                               c->want, dev * 100, good ? "ok" : "FAIL");
                        ok &= good;
                }
                printf("%-14s limit hits %" G_GUINT64_FORMAT "\n", k->name, k->hits);
                ok &= k->hits > 0;
        }
        assert_true(ok);
}

/* Only bytes and packets per second in total: per-direction buckets and size_iops are refused. */
static void test_refused(void **state) {
        Net *t = net_new("qos-refused", 0);
        QosConfig none = { 0 }, bad = { 0 };

        assert_non_null(t);
        bad.rate[QOS_BYTES_READ].avg = 1000;
        assert_int_equal(vnet_set_limits(t->n, &bad, &none), -EINVAL);
        bad = (QosConfig) { .size_iops = 4096 };
        assert_int_equal(vnet_set_limits(t->n, &none, &bad), -EINVAL);
        bad = (QosConfig) { 0 };
        bad.rate[QOS_BYTES_TOTAL] = (QosRate) { .avg = 1000, .max = 10 };
        assert_int_equal(vnet_set_limits(t->n, &none, &bad), -EINVAL);
        assert_int_equal(vnet_set_limits(t->n, &none, &none), 0);
        net_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_rates),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
