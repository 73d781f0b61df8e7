/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Read-only verbs: list, show, metrics.  No privileges needed. */
#include <stdio.h>
#include <string.h>

#include "common/metrics.h"
#include "common/util.h"
#include "vfuctl.h"

static const char *json_str(JsonObject *o, const char *key) {
        JsonNode *n = json_object_get_member(o, key);

        return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ?
               json_node_get_string(n) : "";
}

int verb_list(Ctx *c, int argc, char **argv) {
        sd_bus_message *reply = NULL;
        g_autoptr(Table) t = table_new("NAME", "TYPE", "VM", "STATE", "CONNECTED", "SOCKET", NULL);
        g_autoptr(JsonArray) out = json_array_new();
        const char *name, *type, *vm, *state, *path;
        int code, r;

        code = manager_call(c, "listing devices", "ListDevices", &reply, "s", c->opt.vm ? c->opt.vm : "");
        if (code)
                return code;
        r = sd_bus_message_enter_container(reply, 'a', "(sssso)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(sssso)", &name, &type, &vm, &state, &path)) > 0) {
                g_autoptr(JsonNode) props = NULL;
                JsonObject *o, *entry = json_object_new();

                json_object_set_string_member(entry, "name", name);
                json_object_set_string_member(entry, "type", type);
                json_object_set_string_member(entry, "vm", vm);
                json_object_set_string_member(entry, "state", state);
                json_object_set_string_member(entry, "path", path);
                /* The device may vanish between the list and this read: show what the list said. */
                if (device_properties(c, path, &props) == EXIT_OK) {
                        o = json_node_get_object(props);
                        json_object_set_boolean_member(entry, "connected",
                                                       json_object_get_boolean_member_with_default(o, "connected", FALSE));
                        json_object_set_string_member(entry, "socket_path", json_str(o, "socket_path"));
                        json_object_set_string_member(entry, "state", json_str(o, "state"));
                }
                table_add_row(t, name, type, vm, json_object_get_string_member(entry, "state"),
                              json_object_get_boolean_member_with_default(entry, "connected", FALSE) ? "yes" : "no",
                              json_object_get_string_member_with_default(entry, "socket_path", ""), NULL);
                json_array_add_object_element(out, entry);
        }
        sd_bus_message_unref(reply);
        if (r < 0) {
                fprintf(stderr, "vfuctl: unexpected reply from vfud: %s\n", g_strerror(-r));
                return EXIT_FAILED;
        }
        if (c->opt.json) {
                g_autoptr(JsonNode) n = json_node_new(JSON_NODE_ARRAY);

                json_node_set_array(n, out);
                print_json(n);
        } else
                table_print(t, !c->opt.no_legend);
        return EXIT_OK;
}

static char *value_to_string(JsonNode *n) {
        if (JSON_NODE_HOLDS_VALUE(n)) {
                switch (json_node_get_value_type(n)) {
                case G_TYPE_STRING:
                        return g_strdup(json_node_get_string(n));
                case G_TYPE_BOOLEAN:
                        return g_strdup(json_node_get_boolean(n) ? "yes" : "no");
                case G_TYPE_DOUBLE:
                        return g_strdup_printf("%g", json_node_get_double(n));
                default:
                        return g_strdup_printf("%" G_GINT64_FORMAT, json_node_get_int(n));
                }
        }
        return json_to_string(n, FALSE);
}

/* "nsid=1 path=/x size=10.0G kind=image" */
static char *object_line(JsonObject *o) {
        g_autoptr(GList) members = json_object_get_members(o);
        GString *s = g_string_new(NULL);

        for (GList *l = members; l; l = l->next) {
                JsonNode *v = json_object_get_member(o, l->data);
                g_autofree char *text = NULL;

                if (strcmp(l->data, "size") == 0 && JSON_NODE_HOLDS_VALUE(v) &&
                    json_node_get_value_type(v) == G_TYPE_INT64)
                        text = util_format_size((uint64_t) json_node_get_int(v));
                else
                        text = value_to_string(v);
                g_string_append_printf(s, "%s%s=%s", s->len ? " " : "", (char *) l->data, text);
        }
        return g_string_free(s, FALSE);
}

static void print_field(const char *label, const char *value) {
        printf("%12s: %s\n", label, value && *value ? value : "-");
}

static void print_backend(JsonObject *backend) {
        g_autoptr(GList) members = json_object_get_members(backend);
        bool first = true;

        for (GList *l = members; l; l = l->next) {
                JsonNode *v = json_object_get_member(backend, l->data);

                if (JSON_NODE_HOLDS_ARRAY(v)) {
                        JsonArray *a = json_node_get_array(v);

                        for (guint i = 0; i < json_array_get_length(a); i++) {
                                JsonNode *e = json_array_get_element(a, i);
                                g_autofree char *text = JSON_NODE_HOLDS_OBJECT(e) ?
                                                        object_line(json_node_get_object(e)) : value_to_string(e);

                                printf("%12s%s %s: %s\n", first ? "Backend" : "", first ? ":" : " ", (char *) l->data, text);
                                first = false;
                        }
                } else {
                        g_autofree char *text = value_to_string(v);

                        printf("%12s%s %s: %s\n", first ? "Backend" : "", first ? ":" : " ", (char *) l->data, text);
                        first = false;
                }
        }
}

/* Null namespaces store nothing: say so where nobody can miss it. */
static void print_null_warning(JsonObject *backend) {
        JsonNode *n = json_object_get_member(backend, "namespaces");
        JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;

        for (guint i = 0; a && i < json_array_get_length(a); i++) {
                JsonNode *e = json_array_get_element(a, i);
                JsonObject *ns = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
                g_autofree char *text = NULL;

                if (!ns || g_strcmp0(json_object_get_string_member_with_default(ns, "kind", ""), "null") != 0)
                        continue;
                text = g_strdup_printf("namespace %" G_GINT64_FORMAT " is a null backend: it STORES NO DATA "
                                       "(reads return a fixed pattern, writes are dropped)",
                                       json_object_get_int_member_with_default(ns, "nsid", 0));
                print_field("Warning", text);
        }
}

/* A bucket bound for people: 5000 → "5 µs", 20000000 → "20 ms". */
static char *latency_text(uint64_t ns) {
        if (ns >= 1000000000u && ns % 1000000000u == 0)
                return g_strdup_printf("%" G_GUINT64_FORMAT " s", ns / 1000000000u);
        if (ns >= 1000000u && ns % 1000000u == 0)
                return g_strdup_printf("%" G_GUINT64_FORMAT " ms", ns / 1000000u);
        if (ns >= 1000u && ns % 1000u == 0)
                return g_strdup_printf("%" G_GUINT64_FORMAT " µs", ns / 1000u);
        return g_strdup_printf("%" G_GUINT64_FORMAT " ns", ns);
}

typedef struct LatBucket {
        uint64_t le_ns, count;          /* cumulative */
} LatBucket;

static gint lat_bucket_cmp(gconstpointer a, gconstpointer b) {
        uint64_t x = ((const LatBucket *) a)->le_ns, y = ((const LatBucket *) b)->le_ns;

        return x < y ? -1 : x > y;
}

/* The bucket bound the q-quantile is under, as text ("≤ 20 µs", "> 5 s"). */
static char *latency_quantile(GArray *buckets, uint64_t count, double q) {
        for (guint i = 0; i < buckets->len; i++) {
                const LatBucket *b = &g_array_index(buckets, LatBucket, i);

                if (b->count > 0 && (double) b->count >= q * (double) count) {
                        g_autofree char *t = latency_text(b->le_ns);
                        return g_strdup_printf("≤ %s", t);
                }
        }
        if (buckets->len == 0)
                return g_strdup("?");
        g_autofree char *t = latency_text(g_array_index(buckets, LatBucket, buckets->len - 1).le_ns);
        return g_strdup_printf("> %s", t);
}

/*
 * The latency histograms (statistics latency_ns_OP_le_NS, _count, _sum) as one
 * line per operation that had any: its count, mean, p50 and p99 by bucket.
 */
static void print_latency(JsonObject *st) {
        static const char *const ops[] = { "read", "write", "flush", "other" };
        bool first = true;

        for (size_t o = 0; o < G_N_ELEMENTS(ops); o++) {
                g_autofree char *pfx = g_strdup_printf("latency_ns_%s_", ops[o]), *le = g_strconcat(pfx, "le_", NULL);
                g_autofree char *ck = g_strconcat(pfx, "count", NULL), *sk = g_strconcat(pfx, "sum", NULL);
                uint64_t count = (uint64_t) json_object_get_int_member_with_default(st, ck, 0);
                uint64_t sum = (uint64_t) json_object_get_int_member_with_default(st, sk, 0);
                g_autoptr(GArray) buckets = g_array_new(FALSE, FALSE, sizeof(LatBucket));
                g_autoptr(GList) keys = json_object_get_members(st);

                if (count == 0)
                        continue;
                for (GList *l = keys; l; l = l->next) {
                        const char *k = l->data;
                        char *end;
                        LatBucket b;

                        if (!g_str_has_prefix(k, le))
                                continue;
                        b.le_ns = g_ascii_strtoull(k + strlen(le), &end, 10);
                        if (end == k + strlen(le) || *end)
                                continue;
                        b.count = (uint64_t) json_object_get_int_member_with_default(st, k, 0);
                        g_array_append_val(buckets, b);
                }
                g_array_sort(buckets, lat_bucket_cmp);
                g_autofree char *p50 = latency_quantile(buckets, count, 0.5);
                g_autofree char *p99 = latency_quantile(buckets, count, 0.99);
                double mean_us = (double) sum / (double) count / 1000.0;
                g_autofree char *mean = mean_us < 1000 ? g_strdup_printf("%.1f µs", mean_us)
                                                       : g_strdup_printf("%.1f ms", mean_us / 1000);
                printf("%12s%s %s: %" G_GUINT64_FORMAT " completed, mean %s, p50 %s, p99 %s\n",
                       first ? "Latency" : "", first ? ":" : " ", ops[o], count, mean, p50, p99);
                first = false;
        }
}

int verb_show(Ctx *c, int argc, char **argv) {
        g_autofree char *path = NULL;
        g_autoptr(JsonNode) props = NULL;
        JsonObject *o;
        g_autofree char *title = NULL, *worker = NULL;
        int code;

        code = device_path(c, argv[0], &path);
        if (code)
                return code;
        code = device_properties(c, path, &props);
        if (code)
                return code;
        o = json_node_get_object(props);
        json_object_set_string_member(o, "path", path);
        if (c->opt.json) {
                print_json(props);
                return EXIT_OK;
        }
        title = g_strdup_printf("%s (%s)", json_str(o, "name"), json_str(o, "type"));
        printf("%s\n", title);
        print_field("VM", json_str(o, "vm"));
        print_field("State", json_str(o, "state"));
        print_field("Connected", json_object_get_boolean_member_with_default(o, "connected", FALSE) ? "yes" : "no");
        print_field("Socket", json_str(o, "socket_path"));
        worker = g_strdup_printf("pid %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT " automatic restarts",
                                 json_object_get_int_member_with_default(o, "worker_pid", 0),
                                 json_object_get_int_member_with_default(o, "restarts", 0));
        print_field("Worker", json_object_get_int_member_with_default(o, "worker_pid", 0) ? worker : "-");
        print_field("Last error", json_str(o, "last_error"));
        if (*json_str(o, "waiting"))
                print_field("Waiting", json_str(o, "waiting"));
        if (*json_str(o, "vm")) {
                const char *lv = json_str(o, "libvirt_status"), *lverr = json_str(o, "libvirt_error");
                g_autofree char *text = *lverr ? g_strdup_printf("%s: %s", lv, lverr) : g_strdup(lv);

                print_field("Libvirt", text);
        }
        if (*json_str(o, "migration_state"))
                print_field("Migration", json_str(o, "migration_state"));
        if (json_object_has_member(o, "backend") && JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "backend"))) {
                print_backend(json_object_get_object_member(o, "backend"));
                print_null_warning(json_object_get_object_member(o, "backend"));
        }
        if (json_object_has_member(o, "limits"))
                print_limits(o);
        if (json_object_has_member(o, "statistics") &&
            JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "statistics"))) {
                JsonObject *st = json_object_get_object_member(o, "statistics");
                g_autoptr(GList) keys = g_list_sort(json_object_get_members(st), (GCompareFunc) strcmp);
                bool first = true;

                print_latency(st);
                for (GList *l = keys; l; l = l->next) {
                        g_autofree char *text = NULL;

                        if (g_str_has_prefix(l->data, "latency_ns_"))
                                continue;       /* the buckets: in --json, summed up above */
                        text = value_to_string(json_object_get_member(st, l->data));
                        printf("%12s%s %s: %s\n", first ? "Statistics" : "", first ? ":" : " ", (char *) l->data, text);
                        first = false;
                }
        }
        printf("%12s: %s\n", "Object", path);
        return EXIT_OK;
}

/* One device's properties as metrics input; strings and the table point into props. */
typedef struct MetricsEntry {
        JsonNode *props;
        GHashTable *stats;
} MetricsEntry;

static void metrics_entry_clear(MetricsEntry *e) {
        g_clear_pointer(&e->props, json_node_unref);
        g_clear_pointer(&e->stats, g_hash_table_unref);
}

static MetricsDevice metrics_device(MetricsEntry *e) {
        JsonObject *o = json_node_get_object(e->props);
        JsonNode *st = json_object_get_member(o, "statistics");

        e->stats = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
        if (st && JSON_NODE_HOLDS_OBJECT(st)) {
                JsonObject *so = json_node_get_object(st);
                g_autoptr(GList) keys = json_object_get_members(so);

                for (GList *l = keys; l; l = l->next) {
                        JsonNode *v = json_object_get_member(so, l->data);
                        uint64_t *u;

                        if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_INT64 ||
                            json_node_get_int(v) < 0)
                                continue;
                        u = g_new(uint64_t, 1);
                        *u = (uint64_t) json_node_get_int(v);
                        g_hash_table_replace(e->stats, l->data, u);
                }
        }
        return (MetricsDevice) {
                .name = json_str(o, "name"),
                .vm = json_str(o, "vm"),
                .type = json_str(o, "type"),
                .state = json_str(o, "state"),
                .connected = json_object_get_boolean_member_with_default(o, "connected", FALSE),
                .restarts = (uint64_t) json_object_get_int_member_with_default(o, "restarts", 0),
                .stats = e->stats,
        };
}

/* The object paths of the devices to show: those named, or the VM's, or all. */
static int metrics_paths(Ctx *c, int argc, char **argv, GPtrArray *paths) {
        sd_bus_message *reply = NULL;
        const char *name, *type, *vm, *state, *path;
        int code, r;

        for (int i = 0; i < argc; i++) {
                char *p = NULL;

                code = device_path(c, argv[i], &p);
                if (code)
                        return code;
                g_ptr_array_add(paths, p);
        }
        if (argc > 0)
                return EXIT_OK;
        code = manager_call(c, "listing devices", "ListDevices", &reply, "s", c->opt.vm ? c->opt.vm : "");
        if (code)
                return code;
        r = sd_bus_message_enter_container(reply, 'a', "(sssso)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(sssso)", &name, &type, &vm, &state, &path)) > 0)
                g_ptr_array_add(paths, g_strdup(path));
        sd_bus_message_unref(reply);
        if (r < 0) {
                fprintf(stderr, "vfuctl: unexpected reply from vfud: %s\n", g_strerror(-r));
                return EXIT_FAILED;
        }
        return EXIT_OK;
}

static int metrics_name_cmp(const void *a, const void *b) {
        return g_strcmp0(((const MetricsDevice *) a)->name, ((const MetricsDevice *) b)->name);
}

int verb_metrics(Ctx *c, int argc, char **argv) {
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        g_autofree MetricsEntry *entries = NULL;
        g_autofree MetricsDevice *devs = NULL;
        g_autofree char *text = NULL;
        size_t n = 0;
        int code;

        if (argc > 0 && c->opt.vm)
                return usage_error("metrics: give device names or --vm, not both");
        code = metrics_paths(c, argc, argv, paths);
        if (code)
                return code;
        entries = g_new0(MetricsEntry, paths->len + 1);
        devs = g_new0(MetricsDevice, paths->len + 1);
        for (guint i = 0; i < paths->len; i++) {
                /* A device may vanish between the list and this read: it is left out. */
                if (device_properties(c, paths->pdata[i], &entries[n].props) != EXIT_OK)
                        continue;
                devs[n] = metrics_device(&entries[n]);
                n++;
        }
        qsort(devs, n, sizeof(*devs), metrics_name_cmp);
        text = metrics_render(devs, n, METRICS_OPENMETRICS);
        fputs(text, stdout);
        for (size_t i = 0; i < n; i++)
                metrics_entry_clear(&entries[i]);
        return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}
