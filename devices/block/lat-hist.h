/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Latency histograms with fixed buckets, per block operation, kept by the
 * I/O thread that completes the requests and summed when statistics are
 * read.  Recording costs a bucket index (a clz and two table loads) and
 * two single-writer increments: no lock, no locked instruction.  Readers
 * on other threads load the counters relaxed; a histogram read while I/O
 * runs is at most a few requests behind, and its count is the sum of its
 * buckets (so the +Inf bucket always equals the count).
 *
 * The bounds are 1-2-5 steps from 5 µs to 5 s (LAT_HIST_BOUNDS finite
 * buckets, "le" inclusive, plus +Inf): docs/metrics.md lists them.  They
 * are part of the metric names' contract: change them only with a note.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

typedef enum LatOp {
        LAT_OP_READ,
        LAT_OP_WRITE,
        LAT_OP_FLUSH,
        LAT_OP_OTHER,           /* write zeroes, discard/DSM, anything else of the I/O set */
        _LAT_OP_MAX,
} LatOp;

#define LAT_HIST_BOUNDS 19
#define LAT_HIST_BUCKETS (LAT_HIST_BOUNDS + 1)          /* the last one: +Inf */

/* The finite upper bounds in nanoseconds, ascending. */
extern const uint64_t lat_hist_bounds_ns[LAT_HIST_BOUNDS];

/* One operation's histogram, written by one thread. */
typedef struct LatHist {
        _Atomic uint64_t bucket[LAT_HIST_BUCKETS];      /* not cumulative */
        _Atomic uint64_t sum_ns;
} LatHist;

/* A thread's histograms, one per operation. */
typedef struct LatStats {
        LatHist op[_LAT_OP_MAX];
} LatStats;

/* What readers get: plain numbers, summed over threads. */
typedef struct LatHistSnapshot {
        uint64_t bucket[LAT_HIST_BUCKETS];              /* not cumulative */
        uint64_t sum_ns, count;
} LatHistSnapshot;

typedef struct LatStatsSnapshot {
        LatHistSnapshot op[_LAT_OP_MAX];
} LatStatsSnapshot;

/* Per power of two [2^k, 2^(k+1)): the bounds below it and the bound inside it (at most one). */
typedef struct LatHistStep {
        uint64_t bound;         /* UINT64_MAX: none in this power of two */
        uint8_t below;
} LatHistStep;
extern const LatHistStep lat_hist_steps[64];

/* The bucket of a latency: the number of bounds below ns (ns equal to a bound is in its bucket). */
static inline unsigned lat_hist_index(uint64_t ns) {
        const LatHistStep *s = &lat_hist_steps[63 - __builtin_clzll(ns | 1)];

        return s->below + (ns > s->bound);
}

/* Record one latency.  Only the owning thread calls this. */
static inline void lat_hist_add(LatHist *h, uint64_t ns) {
        _Atomic uint64_t *b = &h->bucket[lat_hist_index(ns)];

        atomic_store_explicit(b, atomic_load_explicit(b, memory_order_relaxed) + 1, memory_order_relaxed);
        atomic_store_explicit(&h->sum_ns, atomic_load_explicit(&h->sum_ns, memory_order_relaxed) + ns,
                              memory_order_relaxed);
}

static inline void lat_stats_add(LatStats *s, LatOp op, uint64_t ns) {
        lat_hist_add(&s->op[op], ns);
}

/* Add a thread's histograms into *dst (from any thread). */
void lat_stats_merge(LatStatsSnapshot *dst, const LatStats *src);

/* "read", "write", "flush", "other"; NULL out of range. */
const char *lat_op_to_string(LatOp op);

/*
 * The upper bound of the bucket holding the q-quantile (0 < q ≤ 1) in ns:
 * UINT64_MAX when it is the +Inf bucket, 0 when the histogram is empty.
 */
uint64_t lat_hist_quantile_ns(const LatHistSnapshot *h, double q);
