/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NVMe device type of vfud-worker: options → controller + namespace
 * backends, vfio-user wiring (guest memory, MSI-X through vu_server_irq),
 * namespace control methods, statistics.
 *
 * Options:
 *   {"serial": "VFU...", "host-uuid": "…", "queues": 4, "poll-us": 50,
 *    "engine": "auto" | "io_uring" | "threads",
 *    "namespaces": [{"nsid": 1, "path": "/var/lib/vfud/images/db-ns1.img",
 *                    "size": 10737418240, "block-size": 512, "direct": false,
 *                    "read-only": false, "kind": "image" | "file" | "block" | "null" | "nbd",
 *                    "pattern": 0, "uri": "nbd+unix:///?socket=/run/nbd.sock"}]}
 * A "null" namespace has no file: reads return zeroes (or the byte
 * "pattern"), writes are dropped.  An "nbd" namespace is the export at
 * "uri" ("size": 0 or absent for the export's size; "wait-ms": how long
 * I/O waits for a lost server before failing retryably).  Otherwise the backing fd of namespace
 * N is the one the manager passed as "ns<N>";
 * without one the path is opened here (a file is created/extended sparse to
 * "size").  The serial defaults to one derived from the host and the device
 * name; "host-uuid" defaults to an ID derived from /etc/machine-id, so
 * namespace identifiers are stable across restarts and unique per host.
 * Control methods: "namespace-add" (same object as a namespace, fd "ns<N>"),
 * "namespace-remove" {"nsid"}, "namespace-resize" {"nsid", "size"}.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-id128.h>

#include "nvme/nvme-pci.h"
#include "nvme/nvme.h"
#include "common/limits.h"
#include "worker-netblk.h"
#include "worker.h"

/* Application ID for the per-host seed (sd_id128_get_machine_app_specific). */
#define WORKER_NVME_APP_ID SD_ID128_MAKE(5c,1a,9e,07,3b,d4,4f,62,a1,0e,77,c3,58,f2,91,6d)

#define WORKER_NVME_DEFAULT_QUEUES 4
#define WORKER_NVME_DEFAULT_POLL_US 50

typedef struct WorkerNvme {
        Worker *w;
        NvmeCtrl *c;
        VuServer *server;
        BlkEngine engine;
        char *paths[NVME_MAX_NS + 1];
} WorkerNvme;

static void worker_nvme_free(WorkerNvme *wn) {
        if (!wn)
                return;
        nvme_ctrl_free(wn->c);
        for (unsigned i = 0; i <= NVME_MAX_NS; i++)
                g_free(wn->paths[i]);
        g_free(wn);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(WorkerNvme, worker_nvme_free)

static int64_t get_int(JsonObject *o, const char *name, int64_t def) {
        JsonNode *n = json_object_get_member(o, name);
        return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_int(n) : def;
}

static gboolean parse_engine(const char *s, BlkEngine *e, GError **error) {
        for (int i = 0; i < _BLK_ENGINE_MAX; i++)
                if (strcmp(s, blk_engine_to_string((BlkEngine) i)) == 0) {
                        *e = (BlkEngine) i;
                        return TRUE;
                }
        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                    "engine='%s' is invalid: use \"auto\", \"io_uring\" or \"threads\"", s);
        return FALSE;
}

static JsonObject *get_object(JsonObject *o, const char *name) {
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

/* A limits object (common/limits.h) onto namespace nsid, or the group with 0. */
static gboolean worker_nvme_limits(WorkerNvme *wn, uint32_t nsid, JsonObject *limits, GError **error) {
        QosConfig cfg[1];
        g_autofree char *why = limits_to_qos(LIMITS_NVME, limits, cfg);

        if (!why && nvme_ctrl_set_limits(wn->c, nsid, cfg) < 0)
                why = g_strdup("not valid");
        if (why) {
                if (nsid)
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID, "namespace %u limits: %s", nsid, why);
                else
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID, "group-limits: %s", why);
                return FALSE;
        }
        return TRUE;
}

/* Open namespace ns (a JSON object) and add it to the controller. */
static gboolean worker_nvme_ns_add(WorkerNvme *wn, JsonObject *ns, GError **error) {
        int64_t nsid = get_int(ns, "nsid", 0);
        int64_t size = get_int(ns, "size", 0);
        int64_t bs = get_int(ns, "block-size", 512);
        const char *path = json_object_get_string_member_with_default(ns, "path", NULL);
        gboolean direct = json_object_get_boolean_member_with_default(ns, "direct", FALSE);
        gboolean ro = json_object_get_boolean_member_with_default(ns, "read-only", FALSE);
        const char *kind = json_object_get_string_member_with_default(ns, "kind", "");
        gboolean null = g_strcmp0(kind, "null") == 0;
        int64_t pattern = get_int(ns, "pattern", 0);
        g_autofree char *net_name = NULL;
        BlkOpenOptions o = { .fd = -1 };

        if (nsid < 1 || nsid > NVME_MAX_NS) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "namespace id %" G_GINT64_FORMAT " is invalid: use 1..%u", nsid, NVME_MAX_NS);
                return FALSE;
        }
        if (bs != 512 && bs != 4096) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "namespace %" G_GINT64_FORMAT ": block-size %" G_GINT64_FORMAT " is invalid: use 512 or 4096",
                            nsid, bs);
                return FALSE;
        }
        if (size < 0 || size % bs) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "namespace %" G_GINT64_FORMAT ": size %" G_GINT64_FORMAT
                            " must be a positive multiple of the block size %" G_GINT64_FORMAT,
                            nsid, size, bs);
                return FALSE;
        }
        if (null && (size <= 0 || pattern < 0 || pattern > 0xff)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "namespace %" G_GINT64_FORMAT ": a null namespace needs a \"size\" and a \"pattern\" of 0..255",
                            nsid);
                return FALSE;
        }
        if (!worker_netblk_options(wn->w, ns, &o, &net_name, error)) {
                g_prefix_error(error, "namespace %" G_GINT64_FORMAT ": ", nsid);
                return FALSE;
        }
        g_autofree char *fdname = g_strdup_printf("ns%" G_GINT64_FORMAT, nsid);
        int fd = null || net_name ? -1 : worker_take_fd(wn->w, fdname);
        if (!null && !net_name && fd < 0 && (!path || !*path)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                            "namespace %" G_GINT64_FORMAT ": no backing file: give \"path\" or pass an fd named '%s'",
                            nsid, fdname);
                return FALSE;
        }
        o.path = null ? "null" : net_name ? net_name : path ? path : fdname;
        o.fd = fd;
        o.size = (uint64_t) size;
        o.read_only = ro;
        o.direct = direct;
        o.engine = wn->engine;
        o.null = null;
        o.null_pattern = (int) pattern;
        BlkBackend *b = NULL;
        int r = blk_backend_open(&o, &b);
        if (r < 0) {
                const char *hint = net_name ? worker_netblk_hint(&o, r)
                                 : r == -ENOENT ? ": create it, or give \"size\" to have it created"
                                 : r == -EROFS ? ": the file is read-only; set \"read-only\": true or fix its permissions"
                                 : r == -EINVAL ? ": it must be a regular file or block device at least \"size\" bytes large"
                                 : "";
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND, "namespace %" G_GINT64_FORMAT
                            ": cannot use %s: %s%s", nsid, o.path, g_strerror(-r), hint);
                return FALSE;
        }
        if (direct && b->dio_align > (uint32_t) bs) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                            "namespace %" G_GINT64_FORMAT ": %s needs %u-byte aligned direct I/O; use block-size 4096 "
                            "or \"direct\": false", nsid, o.path, b->dio_align);
                blk_backend_free(b);
                return FALSE;
        }
        if (!worker_nvme_limits(wn, (uint32_t) nsid, get_object(ns, "limits"), error)) {
                blk_backend_free(b);
                return FALSE;
        }
        r = nvme_ctrl_ns_add(wn->c, (uint32_t) nsid, b, (uint32_t) bs, ro);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, r == -EEXIST ? WORKER_ERROR_INVALID : WORKER_ERROR_BACKEND,
                            "namespace %" G_GINT64_FORMAT ": %s", nsid,
                            r == -EEXIST ? "that namespace id is already in use"
                                         : r == -EOPNOTSUPP ? "the NBD export does not offer multi-conn, which more "
                                                              "than one I/O thread needs: use iothreads=1"
                                         : "the backing file is smaller than one block");
                return FALSE;
        }
        g_free(wn->paths[nsid]);
        wn->paths[nsid] = g_strdup(o.path);
        return TRUE;
}

static gboolean worker_nvme_host_uuid(JsonObject *o, uint8_t out[16], GError **error) {
        const char *s = json_object_get_string_member_with_default(o, "host-uuid", NULL);
        sd_id128_t id;
        int r;

        if (s) {
                r = sd_id128_from_string(s, &id);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "host-uuid '%s' is not a UUID (like 0e3f4c1a-...)", s);
                        return FALSE;
                }
        } else {
                r = sd_id128_get_machine_app_specific(WORKER_NVME_APP_ID, &id);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                                    "no host-uuid option and no machine ID to derive one from (%s): "
                                    "give \"host-uuid\" or create /etc/machine-id", g_strerror(-r));
                        return FALSE;
                }
        }
        memcpy(out, id.bytes, 16);
        return TRUE;
}

static gboolean nvme_create(Worker *w, JsonObject *o, VuServerConfig *scfg, void **state, GError **error) {
        g_autoptr(WorkerNvme) wn = g_new0(WorkerNvme, 1);
        NvmeCtrlConfig cfg = { .name = worker_device_name(w), .cntlid = 1 };
        int64_t queues = get_int(o, "queues", WORKER_NVME_DEFAULT_QUEUES);
        int64_t poll_us = get_int(o, "poll-us", WORKER_NVME_DEFAULT_POLL_US);
        int64_t iothreads = get_int(o, "iothreads", 1);
        const char *serial = json_object_get_string_member_with_default(o, "serial", NULL);
        g_autofree char *default_serial = NULL;
        int r;

        wn->w = w;
        if (queues < 1 || queues > NVME_MAX_IOQS) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "queues=%" G_GINT64_FORMAT " is invalid: use 1..%u", queues, NVME_MAX_IOQS);
                return FALSE;
        }
        if (poll_us < 0 || poll_us > NVME_MAX_POLL_US) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "poll-us=%" G_GINT64_FORMAT " is invalid: use 0..%u microseconds", poll_us, NVME_MAX_POLL_US);
                return FALSE;
        }
        if (iothreads < 1 || iothreads > NVME_MAX_IOTHREADS) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "iothreads=%" G_GINT64_FORMAT " is invalid: use 1..%u", iothreads, NVME_MAX_IOTHREADS);
                return FALSE;
        }
        if (!parse_engine(json_object_get_string_member_with_default(o, "engine", "auto"), &wn->engine, error))
                return FALSE;
        if (!worker_nvme_host_uuid(o, cfg.host_uuid, error))
                return FALSE;
        if (serial) {
                for (const char *p = serial; *p; p++)
                        if (*p < 0x20 || *p > 0x7e) {
                                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                            "serial '%s' must be printable ASCII", serial);
                                return FALSE;
                        }
                if (!*serial || strlen(serial) > NVME_SN_MAX) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "serial '%s' must have 1 to %u characters", serial, NVME_SN_MAX);
                        return FALSE;
                }
        } else {
                /* Stable per (host, device name): the NGUID of "namespace 0". */
                uint8_t ng[16], eui[8], uu[16];
                nvme_derive_ns_ids(cfg.host_uuid, cfg.name, 0, ng, eui, uu);
                default_serial = g_strdup_printf("VFU%02X%02X%02X%02X%02X%02X%02X%02X",
                                                 ng[0], ng[1], ng[2], ng[3], ng[4], ng[5], ng[6], ng[7]);
                serial = default_serial;
        }
        cfg.serial = serial;
        cfg.max_ioqs = (unsigned) queues;
        cfg.msix_nvec = (unsigned) queues + 1;
        cfg.msi = json_object_get_boolean_member_with_default(o, "msi", FALSE);
        if (cfg.msi) {
                /* MSI: a power of two, at most 32; queues beyond share vectors (IV mod the count granted). */
                unsigned n = 1;

                while (n < cfg.msix_nvec && n < NVME_MAX_MSI_VECTORS)
                        n <<= 1;
                cfg.msix_nvec = n;
        }
        cfg.poll_us = (unsigned) poll_us;
        cfg.iothreads = (unsigned) iothreads;
        r = nvme_ctrl_new(&cfg, &wn->c);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED, "cannot create the NVMe controller: %s",
                            g_strerror(-r));
                return FALSE;
        }

        if (!worker_nvme_limits(wn, 0, get_object(o, "group-limits"), error))
                return FALSE;
        JsonNode *nsn = json_object_get_member(o, "namespaces");
        if (nsn && !JSON_NODE_HOLDS_ARRAY(nsn)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "namespaces must be an array of {\"nsid\": N, \"path\": ...} objects");
                return FALSE;
        }
        JsonArray *nss = nsn ? json_node_get_array(nsn) : NULL;
        for (guint i = 0; nss && i < json_array_get_length(nss); i++) {
                JsonNode *n = json_array_get_element(nss, i);
                if (!JSON_NODE_HOLDS_OBJECT(n)) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "namespaces[%u] must be an object like {\"nsid\": 1, \"path\": ...}", i);
                        return FALSE;
                }
                if (!worker_nvme_ns_add(wn, json_node_get_object(n), error))
                        return FALSE;
        }

        r = nvme_pci_config(wn->c, scfg);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot build the PCI configuration of the NVMe controller: %s", g_strerror(-r));
                return FALSE;
        }
        *state = g_steal_pointer(&wn);
        return TRUE;
}

static void nvme_start(void *state, VuServer *server) {
        WorkerNvme *wn = state;
        wn->server = server;
        nvme_pci_start(wn->c, server);
}

static void nvme_destroy(void *state) {
        worker_nvme_free(state);
}

static JsonNode *ns_result(WorkerNvme *wn, uint32_t nsid) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "nsid");
        json_builder_add_int_value(b, nsid);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, (int64_t) nvme_ctrl_ns_size(wn->c, nsid));
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

static gboolean nvme_control(void *state, const char *method, JsonObject *params, JsonNode **result,
                             GError **error) {
        WorkerNvme *wn = state;
        int64_t nsid = params ? get_int(params, "nsid", 0) : 0;
        int r;

        if (strcmp(method, "namespace-add") == 0) {
                if (!params || !worker_nvme_ns_add(wn, params, error))
                        return FALSE;
                *result = ns_result(wn, (uint32_t) nsid);
                return TRUE;
        }
        if (strcmp(method, "limits-set") == 0) {
                /* {"nsid": N or 0 for the group, "limits": {...}}: the whole new set, replacing the old */
                if (nsid < 0 || nsid > NVME_MAX_NS) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "limits-set needs \"nsid\" in 0 (the group)..%u", NVME_MAX_NS);
                        return FALSE;
                }
                if (!worker_nvme_limits(wn, (uint32_t) nsid, get_object(params, "limits"), error))
                        return FALSE;
                *result = NULL;
                return TRUE;
        }
        if (nsid < 1 || nsid > NVME_MAX_NS) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "%s needs \"nsid\" in 1..%u", method, NVME_MAX_NS);
                return FALSE;
        }
        if (strcmp(method, "namespace-remove") == 0) {
                r = nvme_ctrl_ns_remove(wn->c, (uint32_t) nsid);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "namespace %" G_GINT64_FORMAT " does not exist", nsid);
                        return FALSE;
                }
                g_clear_pointer(&wn->paths[nsid], g_free);
                (void) worker_nvme_limits(wn, (uint32_t) nsid, NULL, NULL);    /* a new one starts without */
                *result = NULL;
                return TRUE;
        }
        if (strcmp(method, "namespace-resize") == 0) {
                int64_t size = get_int(params, "size", -1);
                uint64_t cur = nvme_ctrl_ns_size(wn->c, (uint32_t) nsid);
                if (size < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "namespace-resize needs \"size\" in bytes (0: the backing file's size)");
                        return FALSE;
                }
                r = nvme_ctrl_ns_resize(wn->c, (uint32_t) nsid, (uint64_t) size);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, r == -ENOENT || r == -EINVAL ? WORKER_ERROR_INVALID
                                                                                       : WORKER_ERROR_BACKEND,
                                    "namespace %" G_GINT64_FORMAT ": cannot resize to %" G_GINT64_FORMAT
                                    " bytes: %s", nsid, size,
                                    r == -ENOENT ? "no such namespace"
                                    : r == -EINVAL ? (cur && (uint64_t) size < cur ? "namespaces only grow"
                                                                                   : "larger than the block device")
                                    : g_strerror(-r));
                        return FALSE;
                }
                *result = ns_result(wn, (uint32_t) nsid);
                return TRUE;
        }
        g_set_error(error, WORKER_ERROR, WORKER_ERROR_UNSUPPORTED,
                    "nvme devices have no control method '%s' (namespace-add, namespace-remove, namespace-resize, limits-set)",
                    method);
        return FALSE;
}

#define MEMBER(name, v) do { json_builder_set_member_name(b, name); json_builder_add_int_value(b, (int64_t) (v)); } while (0)

static void nvme_stats(void *state, JsonBuilder *b) {
        WorkerNvme *wn = state;
        NvmeStats st;

        nvme_ctrl_get_stats(wn->c, &st);
        MEMBER("commands", st.commands);
        MEMBER("read_commands", st.read_cmds);
        MEMBER("write_commands", st.write_cmds);
        MEMBER("read_bytes", st.read_bytes);
        MEMBER("write_bytes", st.write_bytes);
        MEMBER("errors", st.errors);
        MEMBER("latency_avg_us", st.io_cmds ? st.latency_ns_total / st.io_cmds / 1000 : 0);
        MEMBER("latency_max_us", st.latency_ns_max / 1000);
        MEMBER("doorbell_writes", st.doorbell_writes);
        MEMBER("interrupts", st.irqs);
        /* Sum and count of the latencies: averages over any interval, for metrics. */
        MEMBER("io_commands", st.io_cmds);
        MEMBER("latency_total_ns", st.latency_ns_total);
        MEMBER("io_thread_wakeups", st.wakeups);
        worker_stats_latency(b, &st.lat);
        /* commands that waited for a limit: per namespace, and the group's */
        json_builder_set_member_name(b, "limit_hits");
        json_builder_begin_object(b);
        MEMBER("group", nvme_ctrl_limit_hits(wn->c, 0));
        for (uint32_t i = 1; i <= NVME_MAX_NS; i++) {
                char key[8];

                if (!wn->paths[i])
                        continue;
                g_snprintf(key, sizeof(key), "ns%u", i);
                MEMBER(key, nvme_ctrl_limit_hits(wn->c, i));
        }
        json_builder_end_object(b);
        g_autoptr(GString) waiting = g_string_new(NULL);
        for (uint32_t i = 1; i <= NVME_MAX_NS; i++) {
                char w[256];
                if (!wn->paths[i])
                        continue;
                nvme_ctrl_ns_waiting(wn->c, i, w, sizeof(w));
                if (w[0])
                        g_string_append_printf(waiting, "%snamespace %u: %s", waiting->len ? "; " : "", i, w);
        }
        json_builder_set_member_name(b, "waiting");
        json_builder_add_string_value(b, waiting->str);
        json_builder_set_member_name(b, "controller_state");
        json_builder_add_string_value(b, nvme_ctrl_state_string(wn->c));
        json_builder_set_member_name(b, "namespaces");
        json_builder_begin_array(b);
        for (uint32_t i = 1; i <= NVME_MAX_NS; i++) {
                if (!wn->paths[i])
                        continue;
                json_builder_begin_object(b);
                MEMBER("nsid", i);
                MEMBER("size", nvme_ctrl_ns_size(wn->c, i));
                json_builder_set_member_name(b, "path");
                json_builder_add_string_value(b, wn->paths[i]);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
}

const WorkerDeviceType worker_nvme_type = {
        .type = "nvme",
        .create = nvme_create,
        .start = nvme_start,
        .destroy = nvme_destroy,
        .control = nvme_control,
        .stats = nvme_stats,
};
