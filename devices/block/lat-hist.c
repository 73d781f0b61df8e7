/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Latency histograms: the bucket table, merging and quantiles (lat-hist.h). */
#include <stddef.h>

#include "block/lat-hist.h"

const uint64_t lat_hist_bounds_ns[LAT_HIST_BOUNDS] = {
        5000, 10000, 20000, 50000,                              /* µs */
        100000, 200000, 500000,
        1000000, 2000000, 5000000,                              /* ms */
        10000000, 20000000, 50000000,
        100000000, 200000000, 500000000,
        1000000000, 2000000000, 5000000000,                     /* s */
};

/*
 * lat_hist_bounds_ns by power of two: a 1-2-5 sequence has at most one
 * bound in [2^k, 2^(k+1)), so the bucket is the bounds below 2^k plus one
 * if ns is above the bound inside.  The unit test checks the table
 * against the bounds.
 */
#define NONE UINT64_MAX
const LatHistStep lat_hist_steps[64] = {
        [0 ... 11] = { NONE, 0 },
        [12] = { 5000, 0 },
        [13] = { 10000, 1 },
        [14] = { 20000, 2 },
        [15] = { 50000, 3 },
        [16] = { 100000, 4 },
        [17] = { 200000, 5 },
        [18] = { 500000, 6 },
        [19] = { 1000000, 7 },
        [20] = { 2000000, 8 },
        [21] = { NONE, 9 },
        [22] = { 5000000, 9 },
        [23] = { 10000000, 10 },
        [24] = { 20000000, 11 },
        [25] = { 50000000, 12 },
        [26] = { 100000000, 13 },
        [27] = { 200000000, 14 },
        [28] = { 500000000, 15 },
        [29] = { 1000000000, 16 },
        [30] = { 2000000000, 17 },
        [31] = { NONE, 18 },
        [32] = { 5000000000, 18 },
        [33 ... 63] = { NONE, 19 },
};

static const char *const lat_op_names[_LAT_OP_MAX] = {
        [LAT_OP_READ] = "read",
        [LAT_OP_WRITE] = "write",
        [LAT_OP_FLUSH] = "flush",
        [LAT_OP_OTHER] = "other",
};

const char *lat_op_to_string(LatOp op) {
        return (unsigned) op < _LAT_OP_MAX ? lat_op_names[op] : NULL;
}

void lat_stats_merge(LatStatsSnapshot *dst, const LatStats *src) {
        for (unsigned o = 0; o < _LAT_OP_MAX; o++) {
                const LatHist *h = &src->op[o];
                LatHistSnapshot *d = &dst->op[o];

                for (unsigned i = 0; i < LAT_HIST_BUCKETS; i++) {
                        uint64_t n = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);

                        d->bucket[i] += n;
                        d->count += n;
                }
                d->sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
        }
}

uint64_t lat_hist_quantile_ns(const LatHistSnapshot *h, double q) {
        uint64_t seen = 0;

        if (h->count == 0)
                return 0;
        /* The smallest bucket whose cumulative count reaches q × count (at least one). */
        double want = q * (double) h->count;
        for (unsigned i = 0; i < LAT_HIST_BOUNDS; i++) {
                seen += h->bucket[i];
                if (seen > 0 && (double) seen >= want)
                        return lat_hist_bounds_ns[i];
        }
        return UINT64_MAX;
}
