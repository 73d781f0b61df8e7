/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * I/O limits as token buckets, with the semantics operators know from
 * libvirt: <iotune> on disks (bytes and operations per second, total or
 * read and write, bursts at *_max for *_max_length seconds, size_iops_sec)
 * and <bandwidth> on interfaces (average, peak, burst).  Pure arithmetic on
 * a clock the caller passes in (nanoseconds, monotonic): no thread, no
 * lock, no allocation; the caller serializes access.
 *
 * Each limited quantity is a bucket that I/O fills and that drains at the
 * average rate.  An I/O may start while the bucket is not above its size,
 * and then adds its whole cost, so a large I/O is never refused forever
 * and the long-run rate is the average exactly (the debt is paid by
 * waiting).  The size is the burst: given (<bandwidth> burst), or what
 * max_length seconds at max add above the average ((max − avg) ×
 * max_length: <iotune>'s burst lasts max_length seconds from an idle
 * start), or a tenth of a second at the average.  A
 * burst rate (max, peak) adds a second bucket draining at that rate with
 * a tenth of a second of it as its size, which paces a burst.
 *
 * Return convention: 0 or a count; the checks return a reason or NULL.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef enum QosDir {
        QOS_READ,
        QOS_WRITE,
        _QOS_DIR_MAX,
} QosDir;

typedef enum QosKind {
        QOS_BYTES_TOTAL,
        QOS_BYTES_READ,
        QOS_BYTES_WRITE,
        QOS_OPS_TOTAL,
        QOS_OPS_READ,
        QOS_OPS_WRITE,
        _QOS_KIND_MAX,
} QosKind;

#define QOS_VALUE_MAX 1000000000000000ull      /* 1e15 per second or unit: QEMU's bound too */
#define QOS_MAX_LENGTH_MAX 86400ull             /* longest burst, seconds */

typedef struct QosRate {
        uint64_t avg;           /* units per second; 0: not limited */
        uint64_t max;           /* burst rate, units per second; 0: none */
        uint64_t max_length;    /* seconds a burst at max may last; 0: 1 */
        uint64_t burst;         /* bucket size in units (<bandwidth> burst); 0: (max − avg) ×
                                 * max_length, or a tenth of a second at avg without max */
} QosRate;

typedef struct QosConfig {
        QosRate rate[_QOS_KIND_MAX];
        uint64_t size_iops;     /* bytes: a larger I/O counts as bytes / size_iops operations; 0: one */
} QosConfig;

typedef struct Qos {
        QosConfig cfg;
        double level[_QOS_KIND_MAX];            /* units in the average bucket */
        double peak_level[_QOS_KIND_MAX];       /* units in the burst-rate bucket */
        uint64_t last_ns;
} Qos;

/* "bytes-total", "iops-read", ...: the names of the options and JSON members. */
const char *qos_kind_to_string(QosKind k);
/* Whether any bucket of cfg limits anything. */
bool qos_config_active(const QosConfig *cfg);
/*
 * NULL if cfg is a valid set of limits, else why not (a static string
 * naming the bucket): a total combined with read or write of the same
 * unit, a burst rate below the average or without one, a burst length
 * without a burst rate, a value above QOS_VALUE_MAX.
 */
const char *qos_config_check(const QosConfig *cfg, QosKind *which);

void qos_init(Qos *q, const QosConfig *cfg, uint64_t now_ns);
/*
 * New limits from now on, keeping what the buckets hold (capped at their
 * new sizes: a lowered limit never stalls I/O for the old limit's debt).
 */
void qos_set_config(Qos *q, const QosConfig *cfg, uint64_t now_ns);
/* Nanoseconds until an I/O in direction dir may start: 0 now. */
uint64_t qos_wait_ns(Qos *q, QosDir dir, uint64_t now_ns);
/* An I/O of bytes in direction dir started: charge it. */
void qos_account(Qos *q, QosDir dir, uint64_t bytes, uint64_t now_ns);
/* qos_wait_ns, and when it is 0 qos_account: true when the I/O may start. */
bool qos_admit(Qos *q, QosDir dir, uint64_t bytes, uint64_t now_ns, uint64_t *wait_ns);
