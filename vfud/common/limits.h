/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * I/O limits as operators name them, and as a device definition keeps
 * them: one table per device kind maps an option name to a bucket of
 * devices/qos.  Shared by vfud (create options, SetLimits, persistence),
 * vfud-worker (the device models' limits) and vfuctl (options, show).
 *
 * nvme, per namespace (libvirt's <iotune>; "group-" + the name for the
 * group of all the device's namespaces):
 *   {bytes,iops}-{total,read,write}          average per second
 *   {bytes,iops}-{total,read,write}-max      burst rate per second
 *   {bytes,iops}-{total,read,write}-max-length  seconds a burst lasts (default 1)
 *   size-iops                                bytes: a larger I/O counts size / size-iops operations
 * virtio-net, per device (libvirt's <bandwidth>; tx: what the guest sends,
 * rx: what it receives):
 *   {tx,rx}-average, {tx,rx}-peak            KiB per second
 *   {tx,rx}-burst                            KiB sent at up to the peak above the average
 *   {tx,rx}-pps                              packets per second
 *
 * In a definition, a limits object holds option names with positive
 * integers (a namespace's "limits", nvme's "group-limits" without the
 * prefix, virtio-net's "limits").
 */
#pragma once

#include <json-glib/json-glib.h>

#include "qos/qos.h"

typedef enum LimitsSet {
        LIMITS_NVME,            /* a namespace, or the group */
        LIMITS_NET,             /* a NIC: [0] transmit, [1] receive */
        _LIMITS_SET_MAX,
} LimitsSet;

typedef enum LimitsField {
        LIMITS_AVG,
        LIMITS_MAX,
        LIMITS_MAX_LENGTH,
        LIMITS_BURST,
        LIMITS_SIZE_IOPS,
} LimitsField;

typedef struct LimitsKey {
        const char *name;
        unsigned config;        /* which QosConfig: LIMITS_NET's 0 (tx) or 1 (rx) */
        QosKind kind;
        LimitsField field;
        uint64_t scale;         /* option units → bucket units (KiB: 1024) */
        const char *help;
} LimitsKey;

#define LIMITS_GROUP_PREFIX "group-"

/* The keys of a set, NULL-name terminated. */
const LimitsKey *limits_keys(LimitsSet set);
const LimitsKey *limits_key_find(LimitsSet set, const char *name);

/*
 * A definition's limits object as the buckets of set (cfg[0], and cfg[1]
 * for LIMITS_NET), checked: NULL, or why not (g_free; names the option).
 * o may be NULL (no limits).
 */
char *limits_to_qos(LimitsSet set, JsonObject *o, QosConfig *cfg);
/* Changes into a limits object: a member set to 0 removes that limit. */
void limits_merge(JsonObject *dst, JsonObject *changes);
