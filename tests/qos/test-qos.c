/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The token buckets (devices/qos) on a fake clock: a greedy client that
 * starts an I/O whenever it may and otherwise moves the clock on by the
 * wait it was given, and the rates, bursts and waits it sees.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "qos/qos.h"

#define SEC 1000000000ull

/* A greedy client: I/Os of bytes in dir for duration ns from *now; returns how many started. */
static uint64_t greedy(Qos *q, QosDir dir, uint64_t bytes, uint64_t *now, uint64_t duration) {
        uint64_t end = *now + duration, n = 0, wait;

        while (*now < end) {
                if (qos_admit(q, dir, bytes, *now, &wait))
                        n++;
                else
                        *now += wait;
        }
        return n;
}

static QosConfig one(QosKind k, uint64_t avg, uint64_t max, uint64_t max_length) {
        QosConfig cfg = { 0 };

        cfg.rate[k] = (QosRate) { .avg = avg, .max = max, .max_length = max_length };
        return cfg;
}

static void test_unlimited(void **state) {
        QosConfig cfg = { 0 };
        Qos q;

        qos_init(&q, &cfg, 0);
        assert_false(qos_config_active(&cfg));
        for (int i = 0; i < 1000; i++)
                assert_int_equal(qos_wait_ns(&q, i & 1 ? QOS_READ : QOS_WRITE, 0), 0);
}

/* 100 IOPS over 10 s: the average, plus the tenth of a second the bucket holds at the start. */
static void test_iops_average(void **state) {
        QosConfig cfg = one(QOS_OPS_TOTAL, 100, 0, 0);
        uint64_t now = 5 * SEC;
        Qos q;

        qos_init(&q, &cfg, now);
        assert_true(qos_config_active(&cfg));
        uint64_t n = greedy(&q, QOS_READ, 4096, &now, 10 * SEC);
        assert_in_range(n, 1000 + 10, 1000 + 11);
        /* Once refused, an I/O waits 1/100 s at most. */
        while (qos_admit(&q, QOS_WRITE, 4096, now, NULL))
                ;
        assert_in_range(qos_wait_ns(&q, QOS_WRITE, now), 1, SEC / 100);
}

/* Bytes: the rate in bytes, whatever the I/O size; an I/O larger than the bucket still starts. */
static void test_bytes_average(void **state) {
        QosConfig cfg = one(QOS_BYTES_TOTAL, 1000000, 0, 0);
        uint64_t now = 0;
        Qos q;

        qos_init(&q, &cfg, now);
        uint64_t n = greedy(&q, QOS_WRITE, 4096, &now, 20 * SEC);
        assert_in_range(n * 4096, 20 * 1000000 - 4096, 20 * 1000000 + 100000 + 4096);
        /* 1 MiB against a 100 kB bucket: starts once the bucket is not above its size. */
        qos_init(&q, &cfg, now);
        assert_true(qos_admit(&q, QOS_WRITE, 1 << 20, now, NULL));
        uint64_t wait = qos_wait_ns(&q, QOS_WRITE, now);
        /* (1 MiB - 100 kB) at 1 MB/s */
        assert_in_range(wait, 948575000, 948577000);
        assert_true(qos_admit(&q, QOS_WRITE, 1 << 20, now + wait, NULL));
}

/* A read limit leaves writes alone, and the other way round; a total limits both. */
static void test_directions(void **state) {
        QosConfig cfg = one(QOS_OPS_READ, 10, 0, 0);
        uint64_t now = 0, t2 = 0;
        Qos q;

        qos_init(&q, &cfg, 0);
        assert_in_range(greedy(&q, QOS_READ, 512, &now, 10 * SEC), 100, 102);
        for (int i = 0; i < 10000; i++)
                assert_true(qos_admit(&q, QOS_WRITE, 512, now, NULL));
        cfg = one(QOS_BYTES_WRITE, 4096, 0, 0);
        qos_init(&q, &cfg, 0);
        assert_in_range(greedy(&q, QOS_WRITE, 512, &t2, 10 * SEC), 80, 81);
        for (int i = 0; i < 10000; i++)
                assert_true(qos_admit(&q, QOS_READ, 512, t2, NULL));
        /* Reads and writes against one total, interleaved. */
        cfg = one(QOS_OPS_TOTAL, 50, 0, 0);
        qos_init(&q, &cfg, 0);
        now = 0;
        uint64_t n = 0, wait;
        while (now < 10 * SEC) {
                if (qos_admit(&q, n & 1 ? QOS_READ : QOS_WRITE, 512, now, &wait))
                        n++;
                else
                        now += wait;
        }
        assert_in_range(n, 500, 506);
}

/*
 * A burst: 1000 IOPS for 2 s from an idle start, then the average of 100;
 * after an idle spell the burst is back.  The burst rate bucket paces it
 * (no more than a tenth of a second of it at once).
 */
static void test_burst(void **state) {
        QosConfig cfg = one(QOS_OPS_TOTAL, 100, 1000, 2);
        uint64_t now = 0;
        Qos q;

        assert_null(qos_config_check(&cfg, NULL));
        qos_init(&q, &cfg, 0);
        uint64_t first = greedy(&q, QOS_READ, 512, &now, SEC / 10);
        assert_in_range(first, 100, 202);               /* paced: not all of it at once */
        uint64_t burst = first + greedy(&q, QOS_READ, 512, &now, 2 * SEC - SEC / 10);
        assert_in_range(burst, 2000 - 5, 2000 + 102);
        uint64_t after = greedy(&q, QOS_READ, 512, &now, 5 * SEC);
        assert_in_range(after, 500 - 2, 500 + 2);
        /* Idle long enough for the bucket to drain ((1000 - 100) × 2 at 100/s): the burst again. */
        now += 18 * SEC;
        assert_in_range(greedy(&q, QOS_READ, 512, &now, 2 * SEC), 2000 - 5, 2000 + 102);
}

/* <bandwidth>: a burst size in bytes at the peak rate, then the average. */
static void test_bandwidth_burst(void **state) {
        QosConfig cfg = { 0 };
        uint64_t now = 0;
        Qos q;

        cfg.rate[QOS_BYTES_TOTAL] = (QosRate) { .avg = 1000 * 1024, .max = 4000 * 1024, .burst = 3000 * 1024 };
        assert_null(qos_config_check(&cfg, NULL));
        qos_init(&q, &cfg, 0);
        /* The burst fills at peak - average: 3000 KiB take 1 s at 4000 KiB/s. */
        uint64_t kib = greedy(&q, QOS_WRITE, 1024, &now, SEC);
        assert_in_range(kib, 4000 - 10, 4000 + 400 + 10);
        kib = greedy(&q, QOS_WRITE, 1024, &now, 10 * SEC);
        assert_in_range(kib, 10000 - 400 - 10, 10000 + 10);
}

/* size_iops_sec: a 64 KiB I/O counts 16 operations of 4 KiB, a smaller one counts one. */
static void test_size_iops(void **state) {
        QosConfig cfg = one(QOS_OPS_TOTAL, 160, 0, 0);
        uint64_t now = 0;
        Qos q;

        cfg.size_iops = 4096;
        qos_init(&q, &cfg, 0);
        assert_in_range(greedy(&q, QOS_READ, 65536, &now, 10 * SEC), 100, 102);
        qos_init(&q, &cfg, now);
        assert_in_range(greedy(&q, QOS_READ, 512, &now, 10 * SEC), 1600, 1617);
}

/* A changed limit takes effect at once; a lowered one does not stall I/O for the old debt. */
static void test_set_config(void **state) {
        QosConfig fast = one(QOS_BYTES_READ, 100 * 1000 * 1000, 0, 0);
        QosConfig slow = one(QOS_BYTES_READ, 1000, 0, 0);
        uint64_t now = 0;
        Qos q;

        qos_init(&q, &fast, 0);
        assert_true(qos_admit(&q, QOS_READ, 64 << 20, 0, NULL));
        qos_set_config(&q, &slow, 0);
        /* The debt is capped at the new bucket (100 bytes): a tenth of a second at most. */
        assert_in_range(qos_wait_ns(&q, QOS_READ, 0), 0, SEC / 10);
        assert_in_range(greedy(&q, QOS_READ, 100, &now, 10 * SEC), 100 - 1, 100 + 1);
        /* Raised: the new rate from now on. */
        qos_set_config(&q, &fast, now);
        assert_in_range(greedy(&q, QOS_READ, 1 << 20, &now, SEC), 95 + 9, 95 + 11);   /* and its 10 MB bucket */
        /* Removed: nothing waits. */
        QosConfig none = { 0 };
        qos_set_config(&q, &none, now);
        for (int i = 0; i < 1000; i++)
                assert_true(qos_admit(&q, QOS_READ, 1 << 20, now, NULL));
}

/* A clock that goes back drains nothing and breaks nothing. */
static void test_clock_back(void **state) {
        QosConfig cfg = one(QOS_OPS_TOTAL, 10, 0, 0);
        Qos q;

        qos_init(&q, &cfg, 10 * SEC);
        while (qos_admit(&q, QOS_READ, 1, 10 * SEC, NULL))
                ;
        uint64_t w = qos_wait_ns(&q, QOS_READ, 5 * SEC);
        assert_in_range(w, 1, SEC / 10);
        assert_int_equal(qos_wait_ns(&q, QOS_READ, 10 * SEC + w), 0);
}

static void test_check(void **state) {
        QosConfig cfg = { 0 };
        QosKind k = _QOS_KIND_MAX;

        assert_null(qos_config_check(&cfg, NULL));
        cfg.rate[QOS_BYTES_TOTAL].avg = 1;
        cfg.rate[QOS_BYTES_READ].avg = 1;
        assert_non_null(qos_config_check(&cfg, &k));
        assert_int_equal(k, QOS_BYTES_TOTAL);
        /* Total bytes with read operations: different units, fine. */
        cfg = (QosConfig) { 0 };
        cfg.rate[QOS_BYTES_TOTAL].avg = 1;
        cfg.rate[QOS_OPS_READ].avg = 1;
        cfg.rate[QOS_OPS_WRITE].avg = 1;
        assert_null(qos_config_check(&cfg, NULL));
        cfg = one(QOS_OPS_WRITE, 100, 50, 0);
        assert_non_null(qos_config_check(&cfg, &k));
        assert_int_equal(k, QOS_OPS_WRITE);
        cfg = one(QOS_OPS_WRITE, 0, 50, 0);
        assert_non_null(qos_config_check(&cfg, NULL));
        cfg = one(QOS_OPS_WRITE, 100, 0, 5);
        assert_non_null(qos_config_check(&cfg, NULL));
        cfg = one(QOS_OPS_WRITE, QOS_VALUE_MAX + 1, 0, 0);
        assert_non_null(qos_config_check(&cfg, NULL));
        cfg = one(QOS_OPS_WRITE, 100, 200, QOS_MAX_LENGTH_MAX + 1);
        assert_non_null(qos_config_check(&cfg, NULL));
        cfg = one(QOS_OPS_WRITE, 100, 100, 1);
        assert_null(qos_config_check(&cfg, NULL));
        assert_string_equal(qos_kind_to_string(QOS_OPS_WRITE), "iops-write");
        assert_null(qos_kind_to_string(_QOS_KIND_MAX));
}

/* The largest values give finite waits. */
static void test_extremes(void **state) {
        QosConfig cfg = one(QOS_BYTES_TOTAL, 1, 0, 0);
        Qos q;

        qos_init(&q, &cfg, 0);
        assert_true(qos_admit(&q, QOS_READ, UINT32_MAX, 0, NULL));
        uint64_t w = qos_wait_ns(&q, QOS_READ, 0);
        assert_true(w > 4000000000ull * SEC / 1000);
        cfg = one(QOS_BYTES_TOTAL, QOS_VALUE_MAX, QOS_VALUE_MAX, QOS_MAX_LENGTH_MAX);
        qos_init(&q, &cfg, 0);
        for (int i = 0; i < 1000; i++)
                assert_true(qos_admit(&q, QOS_READ, UINT32_MAX, 0, NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unlimited),
                cmocka_unit_test(test_iops_average),
                cmocka_unit_test(test_bytes_average),
                cmocka_unit_test(test_directions),
                cmocka_unit_test(test_burst),
                cmocka_unit_test(test_bandwidth_burst),
                cmocka_unit_test(test_size_iops),
                cmocka_unit_test(test_set_config),
                cmocka_unit_test(test_clock_back),
                cmocka_unit_test(test_check),
                cmocka_unit_test(test_extremes),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
