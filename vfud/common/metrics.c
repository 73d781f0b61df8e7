/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The metric table and the two text expositions.  OpenMetrics 1.0 names a
 * counter family without "_total" and its sample with it; the Prometheus
 * text format names both with it.  Every sample carries the labels device,
 * vm and type.  A statistic the table does not name (a new device type's)
 * is still exported, as vfu_device_statistic{statistic="KEY"}.
 */
#include <inttypes.h>
#include <string.h>

#include "metrics.h"

typedef enum MetricKind {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_SUMMARY,         /* stat: the sum, count_stat: the count */
        METRIC_HISTOGRAM,       /* histogram_table */
} MetricKind;

typedef struct MetricSpec {
        const char *type;               /* device type; NULL: every type */
        const char *stat;               /* statistic key, normalized (see stat_key) */
        const char *name;               /* family name; NULL: the statistic is covered by another */
        MetricKind kind;
        double scale;                   /* 0: the integer as it is; else value × scale */
        const char *help;
        const char *count_stat;         /* METRIC_SUMMARY */
} MetricSpec;

#define C(t, s, n, h) { t, s, n, METRIC_COUNTER, 0, h, NULL }
#define G(t, s, n, h) { t, s, n, METRIC_GAUGE, 0, h, NULL }

static const MetricSpec metric_table[] = {
        C(NULL, "vfio_user_messages", "vfu_vfio_user_messages", "vfio-user messages the worker handled"),
        C(NULL, "vfio_user_errors", "vfu_vfio_user_errors", "vfio-user messages answered with an error"),
        C(NULL, "vfio_user_irqs", "vfu_vfio_user_interrupts", "Interrupts signalled to the VMM"),
        C(NULL, "vfio_user_connects", "vfu_vfio_user_connects", "VMM connections accepted"),

        C("nvme", "commands", "vfu_nvme_commands", "NVMe commands completed, admin and I/O"),
        C("nvme", "read_commands", "vfu_nvme_read_commands", "NVMe Read commands completed"),
        C("nvme", "write_commands", "vfu_nvme_write_commands", "NVMe Write commands completed"),
        C("nvme", "read_bytes", "vfu_nvme_read_bytes", "Bytes read by NVMe Read commands"),
        C("nvme", "write_bytes", "vfu_nvme_write_bytes", "Bytes written by NVMe Write commands"),
        C("nvme", "errors", "vfu_nvme_errors", "NVMe commands completed with an error status"),
        C("nvme", "doorbell_writes", "vfu_nvme_doorbell_writes", "Trapped NVMe doorbell writes"),
        C("nvme", "interrupts", "vfu_nvme_interrupts", "NVMe completion interrupts raised"),
        C("nvme", "io_thread_wakeups", "vfu_nvme_io_thread_wakeups", "Sleeps of the NVMe I/O threads that ended"),
        { "nvme", "latency_total_ns", "vfu_nvme_io_latency_seconds", METRIC_SUMMARY, 1e-9,
          "NVMe I/O command latency, fetch to completion", "io_commands" },
        { "nvme", "latency_max_us", "vfu_nvme_io_latency_max_seconds", METRIC_GAUGE, 1e-6,
          "Longest NVMe I/O command latency since the worker started", NULL },
        C("nvme", "limit_hits_ns1", "vfu_nvme_namespace1_limit_waits",
          "NVMe commands of namespace 1 that waited for an I/O limit"),
        C("nvme", "limit_hits_group", "vfu_nvme_group_limit_waits",
          "NVMe commands that waited for the limit all namespaces share"),
        { "nvme", "io_commands", NULL, METRIC_COUNTER, 0, NULL, NULL },
        { "nvme", "latency_avg_us", NULL, METRIC_GAUGE, 0, NULL, NULL },

        C("virtio-blk", "read_requests", "vfu_virtio_blk_read_requests", "virtio-blk read requests completed"),
        C("virtio-blk", "read_bytes", "vfu_virtio_blk_read_bytes", "Bytes read by virtio-blk requests"),
        C("virtio-blk", "write_requests", "vfu_virtio_blk_write_requests", "virtio-blk write requests completed"),
        C("virtio-blk", "write_bytes", "vfu_virtio_blk_write_bytes", "Bytes written by virtio-blk requests"),
        C("virtio-blk", "flush_requests", "vfu_virtio_blk_flush_requests", "virtio-blk flush requests completed"),
        C("virtio-blk", "discard_requests", "vfu_virtio_blk_discard_requests", "virtio-blk discard requests completed"),
        C("virtio-blk", "write_zeroes_requests", "vfu_virtio_blk_write_zeroes_requests",
          "virtio-blk write-zeroes requests completed"),
        C("virtio-blk", "io_errors", "vfu_virtio_blk_io_errors", "virtio-blk requests completed with VIRTIO_BLK_S_IOERR"),
        C("virtio-blk", "unsupported", "vfu_virtio_blk_unsupported_requests",
          "virtio-blk requests completed with VIRTIO_BLK_S_UNSUPP"),
        C("virtio-blk", "bad_chains", "vfu_virtio_blk_bad_chains", "Malformed virtio-blk descriptor chains"),
        G("virtio-blk", "inflight", "vfu_virtio_blk_inflight_requests", "virtio-blk requests in flight"),
        G("virtio-blk", "size", "vfu_virtio_blk_size_bytes", "Size of the virtio-blk disk"),
        G("virtio-blk", "write_cache", "vfu_virtio_blk_write_cache", "Whether the guest's write cache is on (1) or off (0)"),

        C("virtio-net", "rx_packets", "vfu_virtio_net_rx_packets", "Frames delivered to the guest"),
        C("virtio-net", "rx_bytes", "vfu_virtio_net_rx_bytes", "Bytes of frames delivered to the guest"),
        C("virtio-net", "rx_drops", "vfu_virtio_net_rx_dropped", "Frames for the guest dropped (no buffer, link down, too large)"),
        C("virtio-net", "rx_errors", "vfu_virtio_net_rx_errors", "Backend receive errors"),
        C("virtio-net", "tx_packets", "vfu_virtio_net_tx_packets", "Frames the guest sent"),
        C("virtio-net", "tx_bytes", "vfu_virtio_net_tx_bytes", "Bytes of frames the guest sent"),
        C("virtio-net", "tx_drops", "vfu_virtio_net_tx_dropped", "Frames from the guest dropped (backend full, link down)"),
        C("virtio-net", "tx_errors", "vfu_virtio_net_tx_errors", "Frames from the guest refused (malformed, backend error)"),
        C("virtio-net", "limit_hits_tx", "vfu_virtio_net_tx_limit_waits", "Frames from the guest that waited for the transmit limit"),
        C("virtio-net", "limit_hits_rx", "vfu_virtio_net_rx_limit_waits", "Frames for the guest that waited for the receive limit"),
        G("virtio-net", "active_pairs", "vfu_virtio_net_active_queue_pairs", "Queue pairs the driver uses"),
        G("virtio-net", "mtu", "vfu_virtio_net_mtu_bytes", "MTU offered to the guest"),
        G("virtio-net", "link_up", "vfu_virtio_net_link_up", "Link state reported to the guest: up (1) or down (0)"),
};

/*
 * Latency histograms: statistics "latency_ns.OP.le_NS" (cumulative), ".count"
 * and ".sum" (ns) become one histogram family per device type with the label
 * op; the bounds are whatever "le_" keys the worker sent.
 */
typedef struct HistogramSpec {
        const char *type;
        const char *name;
        const char *help;
} HistogramSpec;

#define HIST_PREFIX "latency_ns_"

static const HistogramSpec histogram_table[] = {
        { "nvme", "vfu_nvme_command_latency_seconds",
          "NVMe I/O command latency by operation, fetch to completion" },
        { "virtio-blk", "vfu_virtio_blk_request_latency_seconds",
          "virtio-blk request latency by operation, taken to completed" },
};

/* The operations, in the order they are exported. */
static const char *const histogram_ops[] = { "read", "write", "flush", "other" };

#define FALLBACK_NAME "vfu_device_statistic"

/* Statistic keys as vfuctl prints them: [a-z0-9_], "vfio_user.messages" → "vfio_user_messages". */
static char *stat_key(const char *k) {
        char *s = g_ascii_strdown(k, -1);

        for (char *p = s; *p; p++)
                if (!g_ascii_isalnum(*p))
                        *p = '_';
        return s;
}

static void append_escaped(GString *out, const char *s) {
        for (; s && *s; s++) {
                if (*s == '\\' || *s == '"')
                        g_string_append_c(out, '\\');
                if (*s == '\n')
                        g_string_append(out, "\\n");
                else
                        g_string_append_c(out, *s);
        }
}

static void append_labels(GString *out, const MetricsDevice *d, const char *extra_name, const char *extra_value) {
        g_string_append(out, "{device=\"");
        append_escaped(out, d->name);
        g_string_append(out, "\",vm=\"");
        append_escaped(out, d->vm);
        g_string_append(out, "\",type=\"");
        append_escaped(out, d->type);
        if (extra_name) {
                g_string_append_printf(out, "\",%s=\"", extra_name);
                append_escaped(out, extra_value);
        }
        g_string_append(out, "\"}");
}

static void append_value(GString *out, uint64_t v, double scale) {
        if (scale == 0) {
                g_string_append_printf(out, " %" PRIu64 "\n", v);
        } else {
                char buf[G_ASCII_DTOSTR_BUF_SIZE];

                g_string_append_printf(out, " %s\n", g_ascii_dtostr(buf, sizeof(buf), (double) v * scale));
        }
}

static const char *kind_name(MetricKind k) {
        return k == METRIC_COUNTER ? "counter" : k == METRIC_GAUGE ? "gauge"
               : k == METRIC_SUMMARY ? "summary" : "histogram";
}

/* "# TYPE" and "# HELP" of a family, in the order the format prefers. */
static void append_header(GString *out, MetricsFormat fmt, const char *name, MetricKind kind, const char *help) {
        const char *suffix = fmt == METRICS_PROMETHEUS && kind == METRIC_COUNTER ? "_total" : "";

        if (fmt == METRICS_PROMETHEUS)
                g_string_append_printf(out, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix,
                                       kind_name(kind));
        else
                g_string_append_printf(out, "# TYPE %s %s\n# HELP %s %s\n", name, kind_name(kind), name, help);
}

/* A statistic of device d, by normalized key: its value, or NULL. */
typedef struct DevStats {
        const MetricsDevice *d;
        GHashTable *by_key;             /* normalized key → uint64_t * (borrowed) */
} DevStats;

static const uint64_t *stat_get(const DevStats *ds, const char *key) {
        return ds->by_key ? g_hash_table_lookup(ds->by_key, key) : NULL;
}

static bool spec_applies(const MetricSpec *s, const MetricsDevice *d) {
        return !s->type || g_strcmp0(s->type, d->type) == 0;
}

static void render_table_family(GString *out, MetricsFormat fmt, const MetricSpec *s, const DevStats *ds, size_t n) {
        bool header = false;

        for (size_t i = 0; i < n; i++) {
                const uint64_t *v = spec_applies(s, ds[i].d) ? stat_get(&ds[i], s->stat) : NULL;
                const uint64_t *count = s->count_stat ? stat_get(&ds[i], s->count_stat) : NULL;

                if (!v || (s->kind == METRIC_SUMMARY && !count))
                        continue;
                if (!header)
                        append_header(out, fmt, s->name, s->kind, s->help);
                header = true;
                if (s->kind == METRIC_SUMMARY) {
                        g_string_append_printf(out, "%s_sum", s->name);
                        append_labels(out, ds[i].d, NULL, NULL);
                        append_value(out, *v, s->scale);
                        g_string_append_printf(out, "%s_count", s->name);
                        append_labels(out, ds[i].d, NULL, NULL);
                        append_value(out, *count, 0);
                        continue;
                }
                g_string_append_printf(out, "%s%s", s->name, s->kind == METRIC_COUNTER ? "_total" : "");
                append_labels(out, ds[i].d, NULL, NULL);
                append_value(out, *v, s->scale);
        }
}

/* Nanoseconds as seconds, exactly: 5000 → "0.000005", 1000000000 → "1.0". */
static void append_seconds(GString *out, uint64_t ns) {
        uint64_t frac = ns % 1000000000u;
        int digits = 9;

        g_string_append_printf(out, "%" PRIu64 ".", ns / 1000000000u);
        if (frac == 0) {
                g_string_append_c(out, '0');
                return;
        }
        while (frac % 10 == 0) {
                frac /= 10;
                digits--;
        }
        g_string_append_printf(out, "%0*" PRIu64, digits, frac);
}

typedef struct HistBucket {
        uint64_t le_ns;
        const uint64_t *value;
} HistBucket;

static gint cmp_bucket(gconstpointer a, gconstpointer b) {
        uint64_t x = ((const HistBucket *) a)->le_ns, y = ((const HistBucket *) b)->le_ns;

        return x < y ? -1 : x > y;
}

/* The finite buckets device ds has under prefix "latency_ns_OP_le_", by bound (ns, ascending, each once). */
static GArray *histogram_buckets(const DevStats *ds, const char *le_prefix) {
        GArray *buckets = g_array_new(FALSE, FALSE, sizeof(HistBucket));
        GHashTableIter it;
        gpointer k, v;
        guint j = 0;

        g_hash_table_iter_init(&it, ds->by_key);
        while (g_hash_table_iter_next(&it, &k, &v)) {
                const char *p = k;
                char *end;
                HistBucket b = { .value = v };

                if (!g_str_has_prefix(p, le_prefix))
                        continue;
                p += strlen(le_prefix);
                b.le_ns = g_ascii_strtoull(p, &end, 10);
                if (end != p && !*end && b.le_ns != UINT64_MAX)
                        g_array_append_val(buckets, b);
        }
        g_array_sort(buckets, cmp_bucket);
        for (guint i = 0; i < buckets->len; i++)
                if (j == 0 || g_array_index(buckets, HistBucket, i).le_ns != g_array_index(buckets, HistBucket, j - 1).le_ns)
                        g_array_index(buckets, HistBucket, j++) = g_array_index(buckets, HistBucket, i);
        g_array_set_size(buckets, j);
        return buckets;
}

static void append_hist_labels(GString *out, const MetricsDevice *d, const char *op, const uint64_t *le_ns) {
        g_string_append(out, "{device=\"");
        append_escaped(out, d->name);
        g_string_append(out, "\",vm=\"");
        append_escaped(out, d->vm);
        g_string_append(out, "\",type=\"");
        append_escaped(out, d->type);
        g_string_append_printf(out, "\",op=\"%s\"", op);
        if (le_ns) {
                g_string_append(out, ",le=\"");
                if (*le_ns == UINT64_MAX)
                        g_string_append(out, "+Inf");
                else
                        append_seconds(out, *le_ns);
                g_string_append_c(out, '"');
        }
        g_string_append_c(out, '}');
}

/* One operation's histogram of one device; false when the device has none. */
static bool render_histogram(GString *out, const HistogramSpec *h, const DevStats *ds, const char *op, bool header,
                             MetricsFormat fmt) {
        g_autofree char *pfx = g_strdup_printf(HIST_PREFIX "%s_", op);
        g_autofree char *count_key = g_strconcat(pfx, "count", NULL), *sum_key = g_strconcat(pfx, "sum", NULL);
        g_autofree char *le_prefix = g_strconcat(pfx, "le_", NULL);
        const uint64_t *count = stat_get(ds, count_key), *sum = stat_get(ds, sum_key);
        uint64_t inf = UINT64_MAX;

        if (!count || !sum)
                return false;
        if (!header)
                append_header(out, fmt, h->name, METRIC_HISTOGRAM, h->help);
        g_autoptr(GArray) buckets = histogram_buckets(ds, le_prefix);
        for (guint i = 0; i < buckets->len; i++) {
                const HistBucket *b = &g_array_index(buckets, HistBucket, i);

                g_string_append_printf(out, "%s_bucket", h->name);
                append_hist_labels(out, ds->d, op, &b->le_ns);
                append_value(out, *b->value, 0);
        }
        g_string_append_printf(out, "%s_bucket", h->name);
        append_hist_labels(out, ds->d, op, &inf);
        append_value(out, *count, 0);
        g_string_append_printf(out, "%s_count", h->name);
        append_hist_labels(out, ds->d, op, NULL);
        append_value(out, *count, 0);
        g_string_append_printf(out, "%s_sum", h->name);
        append_hist_labels(out, ds->d, op, NULL);
        append_value(out, *sum, 1e-9);
        return true;
}

static void render_histogram_family(GString *out, MetricsFormat fmt, const HistogramSpec *h, const DevStats *ds,
                                    size_t n) {
        bool header = false;

        for (size_t i = 0; i < n; i++) {
                if (!ds[i].by_key || g_strcmp0(h->type, ds[i].d->type) != 0)
                        continue;
                for (size_t o = 0; o < G_N_ELEMENTS(histogram_ops); o++)
                        if (render_histogram(out, h, &ds[i], histogram_ops[o], header, fmt))
                                header = true;
        }
}

/* Whether the table names (or covers) statistic key of device d. */
static bool stat_known(const MetricsDevice *d, const char *key) {
        if (g_str_has_prefix(key, HIST_PREFIX))
                for (size_t i = 0; i < G_N_ELEMENTS(histogram_table); i++)
                        if (g_strcmp0(histogram_table[i].type, d->type) == 0)
                                return true;
        for (size_t i = 0; i < G_N_ELEMENTS(metric_table); i++) {
                const MetricSpec *s = &metric_table[i];

                if (spec_applies(s, d) && (strcmp(s->stat, key) == 0 || g_strcmp0(s->count_stat, key) == 0))
                        return true;
        }
        return false;
}

static void render_fallback(GString *out, MetricsFormat fmt, const DevStats *ds, size_t n) {
        bool header = false;

        for (size_t i = 0; i < n; i++) {
                g_autoptr(GList) keys = NULL;

                if (!ds[i].by_key)
                        continue;
                keys = g_list_sort(g_hash_table_get_keys(ds[i].by_key), (GCompareFunc) strcmp);
                for (GList *l = keys; l; l = l->next) {
                        if (stat_known(ds[i].d, l->data))
                                continue;
                        if (!header)
                                append_header(out, fmt, FALLBACK_NAME, METRIC_GAUGE,
                                              "A device statistic without a metric of its own (label statistic)");
                        header = true;
                        g_string_append(out, FALLBACK_NAME);
                        append_labels(out, ds[i].d, "statistic", l->data);
                        append_value(out, *(const uint64_t *) g_hash_table_lookup(ds[i].by_key, l->data), 0);
                }
        }
}

static void render_device_families(GString *out, MetricsFormat fmt, const DevStats *ds, size_t n) {
        if (n == 0)
                return;
        append_header(out, fmt, "vfu_device_state", METRIC_GAUGE, "The device's state (label state); always 1");
        for (size_t i = 0; i < n; i++) {
                g_string_append(out, "vfu_device_state");
                append_labels(out, ds[i].d, "state", ds[i].d->state ? ds[i].d->state : "");
                append_value(out, 1, 0);
        }
        append_header(out, fmt, "vfu_device_connected", METRIC_GAUGE, "Whether a VMM is connected (1) or not (0)");
        for (size_t i = 0; i < n; i++) {
                g_string_append(out, "vfu_device_connected");
                append_labels(out, ds[i].d, NULL, NULL);
                append_value(out, ds[i].d->connected, 0);
        }
        append_header(out, fmt, "vfu_device_restarts", METRIC_COUNTER,
                      "Automatic restarts of the device's worker since vfud started");
        for (size_t i = 0; i < n; i++) {
                g_string_append(out, "vfu_device_restarts_total");
                append_labels(out, ds[i].d, NULL, NULL);
                append_value(out, ds[i].d->restarts, 0);
        }
}

char *metrics_render(const MetricsDevice *devs, size_t n, MetricsFormat fmt) {
        GString *out = g_string_new(NULL);
        g_autofree DevStats *ds = g_new0(DevStats, n ? n : 1);

        for (size_t i = 0; i < n; i++) {
                GHashTableIter it;
                gpointer k, v;

                ds[i].d = &devs[i];
                if (!devs[i].stats)
                        continue;
                ds[i].by_key = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
                g_hash_table_iter_init(&it, devs[i].stats);
                while (g_hash_table_iter_next(&it, &k, &v))
                        g_hash_table_replace(ds[i].by_key, stat_key(k), v);
        }

        render_device_families(out, fmt, ds, n);
        for (size_t i = 0; i < G_N_ELEMENTS(metric_table); i++)
                if (metric_table[i].name)
                        render_table_family(out, fmt, &metric_table[i], ds, n);
        for (size_t i = 0; i < G_N_ELEMENTS(histogram_table); i++)
                render_histogram_family(out, fmt, &histogram_table[i], ds, n);
        render_fallback(out, fmt, ds, n);
        if (fmt == METRICS_OPENMETRICS)
                g_string_append(out, "# EOF\n");

        for (size_t i = 0; i < n; i++)
                if (ds[i].by_key)
                        g_hash_table_unref(ds[i].by_key);
        return g_string_free(out, FALSE);
}
