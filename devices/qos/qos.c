/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Token buckets for I/O limits (qos.h). */
#include <math.h>
#include <string.h>

#include "qos.h"

static const char *const qos_kind_names[_QOS_KIND_MAX] = {
        [QOS_BYTES_TOTAL] = "bytes-total",
        [QOS_BYTES_READ] = "bytes-read",
        [QOS_BYTES_WRITE] = "bytes-write",
        [QOS_OPS_TOTAL] = "iops-total",
        [QOS_OPS_READ] = "iops-read",
        [QOS_OPS_WRITE] = "iops-write",
};

const char *qos_kind_to_string(QosKind k) {
        return k < _QOS_KIND_MAX ? qos_kind_names[k] : NULL;
}

/* The buckets an I/O in dir fills: total and its own direction, for bytes and operations. */
static bool qos_kind_applies(QosKind k, QosDir dir) {
        switch (k) {
        case QOS_BYTES_TOTAL:
        case QOS_OPS_TOTAL:
                return true;
        case QOS_BYTES_READ:
        case QOS_OPS_READ:
                return dir == QOS_READ;
        default:
                return dir == QOS_WRITE;
        }
}

static bool qos_kind_is_ops(QosKind k) {
        return k >= QOS_OPS_TOTAL;
}

bool qos_config_active(const QosConfig *cfg) {
        for (unsigned k = 0; k < _QOS_KIND_MAX; k++)
                if (cfg->rate[k].avg)
                        return true;
        return false;
}

const char *qos_config_check(const QosConfig *cfg, QosKind *which) {
        for (unsigned k = 0; k < _QOS_KIND_MAX; k++) {
                const QosRate *r = &cfg->rate[k];
                const char *why = NULL;

                if (r->avg > QOS_VALUE_MAX || r->max > QOS_VALUE_MAX || r->burst > QOS_VALUE_MAX)
                        why = "is above 10^15";
                else if (r->max_length > QOS_MAX_LENGTH_MAX)
                        why = "has a burst length above a day (86400 s)";
                else if ((r->max || r->burst) && !r->avg)
                        why = "has a burst without an average rate";
                else if (r->max && r->max < r->avg)
                        why = "has a burst rate below its average rate";
                else if (r->max_length && !r->max)
                        why = "has a burst length without a burst rate";
                else if ((k == QOS_BYTES_TOTAL || k == QOS_OPS_TOTAL) && r->avg &&
                         (cfg->rate[k + 1].avg || cfg->rate[k + 2].avg))
                        why = "cannot be combined with a read or write limit of the same unit";
                if (why) {
                        if (which)
                                *which = (QosKind) k;
                        return why;
                }
        }
        return NULL;
}

/*
 * The average bucket's size.  A burst at max fills it at max - avg: sized
 * so that it lasts max_length seconds exactly from an idle start.
 */
static double qos_size(const QosRate *r) {
        if (r->burst)
                return (double) r->burst;
        if (r->max > r->avg)
                return (double) (r->max - r->avg) * (double) (r->max_length ? r->max_length : 1);
        return (double) r->avg / 10;
}

static double qos_peak_size(const QosRate *r) {
        return (double) r->max / 10;
}

/* Drain every bucket up to now. */
static void qos_leak(Qos *q, uint64_t now_ns) {
        double dt;

        if (now_ns <= q->last_ns)
                return;         /* a clock that went back drains nothing */
        dt = (double) (now_ns - q->last_ns) / 1e9;
        q->last_ns = now_ns;
        for (unsigned k = 0; k < _QOS_KIND_MAX; k++) {
                const QosRate *r = &q->cfg.rate[k];

                q->level[k] = fmax(0, q->level[k] - (double) r->avg * dt);
                q->peak_level[k] = fmax(0, q->peak_level[k] - (double) r->max * dt);
        }
}

void qos_init(Qos *q, const QosConfig *cfg, uint64_t now_ns) {
        memset(q, 0, sizeof(*q));
        q->cfg = *cfg;
        q->last_ns = now_ns;
}

void qos_set_config(Qos *q, const QosConfig *cfg, uint64_t now_ns) {
        qos_leak(q, now_ns);
        q->cfg = *cfg;
        for (unsigned k = 0; k < _QOS_KIND_MAX; k++) {
                const QosRate *r = &cfg->rate[k];

                q->level[k] = r->avg ? fmin(q->level[k], qos_size(r)) : 0;
                q->peak_level[k] = r->max ? fmin(q->peak_level[k], qos_peak_size(r)) : 0;
        }
}

/* Time for a bucket holding level to drain to size at rate, in ns (0: not above it). */
static uint64_t qos_drain_ns(double level, double size, uint64_t rate) {
        double extra = level - size;

        /* Less than a nanosecond's worth is rounding, not a wait. */
        if (extra * 1e9 <= (double) rate)
                return 0;
        return (uint64_t) ceil(extra * 1e9 / (double) rate);
}

uint64_t qos_wait_ns(Qos *q, QosDir dir, uint64_t now_ns) {
        uint64_t wait = 0;

        qos_leak(q, now_ns);
        for (unsigned k = 0; k < _QOS_KIND_MAX; k++) {
                const QosRate *r = &q->cfg.rate[k];
                uint64_t w;

                if (!r->avg || !qos_kind_applies(k, dir))
                        continue;
                w = qos_drain_ns(q->level[k], qos_size(r), r->avg);
                if (r->max) {
                        uint64_t p = qos_drain_ns(q->peak_level[k], qos_peak_size(r), r->max);

                        if (p > w)
                                w = p;
                }
                if (w > wait)
                        wait = w;
        }
        return wait;
}

void qos_account(Qos *q, QosDir dir, uint64_t bytes, uint64_t now_ns) {
        double ops = 1;

        qos_leak(q, now_ns);
        if (q->cfg.size_iops && bytes > q->cfg.size_iops)
                ops = (double) bytes / (double) q->cfg.size_iops;
        for (unsigned k = 0; k < _QOS_KIND_MAX; k++) {
                double units = qos_kind_is_ops(k) ? ops : (double) bytes;

                if (!q->cfg.rate[k].avg || !qos_kind_applies(k, dir))
                        continue;
                q->level[k] += units;
                if (q->cfg.rate[k].max)
                        q->peak_level[k] += units;
        }
}

bool qos_admit(Qos *q, QosDir dir, uint64_t bytes, uint64_t now_ns, uint64_t *wait_ns) {
        uint64_t w = qos_wait_ns(q, dir, now_ns);

        if (wait_ns)
                *wait_ns = w;
        if (w)
                return false;
        qos_account(q, dir, bytes, now_ns);
        return true;
}
