/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Latency histograms (devices/block/lat-hist.h): the bucket of every
 * latency on and around each bound, the table against the bounds, the
 * +Inf bucket, merging several threads' histograms, quantiles.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "block/lat-hist.h"

/* The reference: the number of bounds below ns, by a plain search. */
static unsigned ref_index(uint64_t ns) {
        unsigned i = 0;

        while (i < LAT_HIST_BOUNDS && ns > lat_hist_bounds_ns[i])
                i++;
        return i;
}

static void test_bounds_ascending(void **state) {
        for (unsigned i = 1; i < LAT_HIST_BOUNDS; i++)
                assert_true(lat_hist_bounds_ns[i - 1] < lat_hist_bounds_ns[i]);
        assert_int_equal(lat_hist_bounds_ns[0], 5000);
        assert_int_equal(lat_hist_bounds_ns[LAT_HIST_BOUNDS - 1], 5000000000ull);
}

/* A latency equal to a bound is in that bound's bucket ("le"); one more is in the next. */
static void test_edges(void **state) {
        for (unsigned i = 0; i < LAT_HIST_BOUNDS; i++) {
                uint64_t b = lat_hist_bounds_ns[i];

                assert_int_equal(lat_hist_index(b), i);
                assert_int_equal(lat_hist_index(b - 1), i);
                assert_int_equal(lat_hist_index(b + 1), i + 1);
        }
        assert_int_equal(lat_hist_index(0), 0);
        assert_int_equal(lat_hist_index(1), 0);
}

static void test_overflow(void **state) {
        assert_int_equal(lat_hist_index(5000000001ull), LAT_HIST_BUCKETS - 1);
        assert_int_equal(lat_hist_index(1ull << 40), LAT_HIST_BUCKETS - 1);
        assert_int_equal(lat_hist_index(UINT64_MAX), LAT_HIST_BUCKETS - 1);
}

/* Every power of two and its neighbours, and a sweep, against the plain search. */
static void test_table(void **state) {
        for (unsigned k = 0; k < 64; k++) {
                uint64_t p = 1ull << k;

                assert_int_equal(lat_hist_index(p), ref_index(p));
                assert_int_equal(lat_hist_index(p - 1), ref_index(p - 1));
                assert_int_equal(lat_hist_index(p + 1), ref_index(p + 1));
                assert_int_equal(lat_hist_index(p | (p - 1)), ref_index(p | (p - 1)));
        }
        for (uint64_t ns = 1; ns < 20000000000ull; ns = ns * 1001 / 1000 + 1)
                assert_int_equal(lat_hist_index(ns), ref_index(ns));
}

static void test_add_and_merge(void **state) {
        static LatStats threads[3];
        LatStatsSnapshot s;

        memset(threads, 0, sizeof(threads));
        memset(&s, 0, sizeof(s));
        lat_stats_add(&threads[0], LAT_OP_READ, 5000);          /* le 5 µs */
        lat_stats_add(&threads[1], LAT_OP_READ, 5001);          /* le 10 µs */
        lat_stats_add(&threads[2], LAT_OP_READ, 0);             /* le 5 µs */
        lat_stats_add(&threads[2], LAT_OP_WRITE, 6000000000ull);        /* +Inf */
        lat_stats_add(&threads[1], LAT_OP_FLUSH, 1000000000ull);        /* le 1 s */
        lat_stats_add(&threads[0], LAT_OP_OTHER, 20000);
        for (unsigned t = 0; t < 3; t++)
                lat_stats_merge(&s, &threads[t]);

        assert_int_equal(s.op[LAT_OP_READ].count, 3);
        assert_int_equal(s.op[LAT_OP_READ].sum_ns, 10001);
        assert_int_equal(s.op[LAT_OP_READ].bucket[0], 2);
        assert_int_equal(s.op[LAT_OP_READ].bucket[1], 1);
        assert_int_equal(s.op[LAT_OP_WRITE].count, 1);
        assert_int_equal(s.op[LAT_OP_WRITE].bucket[LAT_HIST_BUCKETS - 1], 1);
        assert_int_equal(s.op[LAT_OP_FLUSH].bucket[16], 1);
        assert_int_equal(s.op[LAT_OP_OTHER].bucket[2], 1);

        /* Merging adds: a second pass doubles everything. */
        for (unsigned t = 0; t < 3; t++)
                lat_stats_merge(&s, &threads[t]);
        assert_int_equal(s.op[LAT_OP_READ].count, 6);
        assert_int_equal(s.op[LAT_OP_READ].bucket[0], 4);
}

static void test_quantile(void **state) {
        LatHistSnapshot h;

        memset(&h, 0, sizeof(h));
        assert_int_equal(lat_hist_quantile_ns(&h, 0.5), 0);
        h.bucket[0] = 98;               /* ≤ 5 µs */
        h.bucket[7] = 1;                /* ≤ 1 ms */
        h.bucket[LAT_HIST_BUCKETS - 1] = 1;
        h.count = 100;
        assert_int_equal(lat_hist_quantile_ns(&h, 0.5), 5000);
        assert_int_equal(lat_hist_quantile_ns(&h, 0.98), 5000);
        assert_int_equal(lat_hist_quantile_ns(&h, 0.99), 1000000);
        assert_true(lat_hist_quantile_ns(&h, 1.0) == UINT64_MAX);
}

static void test_op_names(void **state) {
        assert_string_equal(lat_op_to_string(LAT_OP_READ), "read");
        assert_string_equal(lat_op_to_string(LAT_OP_OTHER), "other");
        assert_null(lat_op_to_string(_LAT_OP_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bounds_ascending),
                cmocka_unit_test(test_edges),
                cmocka_unit_test(test_overflow),
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_add_and_merge),
                cmocka_unit_test(test_quantile),
                cmocka_unit_test(test_op_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
