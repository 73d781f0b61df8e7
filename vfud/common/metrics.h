/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device statistics as metrics: the OpenMetrics text exposition (what
 * `vfuctl metrics` prints) and the Prometheus text format 0.0.4 (what vfud
 * writes for node-exporter's textfile collector).  One table names every
 * metric; docs/metrics.md documents it and the dbus suite checks both
 * against each other.  Shared by vfud and vfuctl: pure formatting, no bus.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

typedef enum MetricsFormat {
        METRICS_OPENMETRICS,    /* application/openmetrics-text; version=1.0.0, ends with # EOF */
        METRICS_PROMETHEUS,     /* text/plain; version=0.0.4 */
} MetricsFormat;

typedef struct MetricsDevice {
        const char *name, *vm, *type, *state;
        bool connected;
        uint64_t restarts;
        /*
         * The device's Statistics (org.vfu.vfud1.Device): key → uint64_t *.
         * Keys as on the bus ("vfio_user.messages") or as vfuctl --json
         * spells them ("vfio_user_messages"); NULL: none yet.
         */
        GHashTable *stats;
} MetricsDevice;

/* The exposition of n devices (in the order given). */
char *metrics_render(const MetricsDevice *devs, size_t n, MetricsFormat fmt);
