/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtio-blk device type of vfud-worker: options → block backend +
 * device model, vfio-user wiring (guest memory, MSI-X through
 * vu_server_irq), the "resize" control method, statistics.
 *
 * Options:
 *   {"namespaces": [{"nsid": 1, "path": "/var/lib/vfud/images/db-blk0-disk.img",
 *                    "size": 10737418240, "kind": "image" | "file" | "block" | "null",
 *                    "pattern": 0, "block-size": 512}],
 *    "queues": 4, "queue-size": 256, "serial": "...", "poll-us": 50,
 *    "read-only": false, "direct": false, "packed": false,
 *    "engine": "auto" | "io_uring" | "threads"}
 * The disk is described as namespace 1, as the manager persists it; its
 * members may also be given flat, next to the others.
 * The backing fd is the one the manager passed as "disk"; without one the
 * path is opened here (a file is created/extended sparse to "size").  A
 * "null" disk has no file: reads return zeroes (or the byte "pattern"),
 * writes are dropped.  The serial defaults to the device name (cut to 20).
 * Control method: "resize" {"size": S} (0: the backing file's size).
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "vblk/vblk.h"
#include "worker-netblk.h"
#include "worker.h"

/* A queue per vCPU for most guests (Linux uses min(num_queues, CPUs)); NVMe's default too. */
#define WORKER_VBLK_DEFAULT_QUEUES 4
/* As NVMe's: a busy queue causes almost no exits, an idle device sleeps. */
#define WORKER_VBLK_DEFAULT_POLL_US 50

typedef struct WorkerVblk {
        VBlk *b;
        VuServer *server;
        char *path;
        char *kind;
        BlkBackend *be;                 /* the disk's (the VBlk owns it) */
} WorkerVblk;

static void worker_vblk_free(WorkerVblk *wv) {
        if (!wv)
                return;
        vblk_free(wv->b);
        g_free(wv->path);
        g_free(wv->kind);
        g_free(wv);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(WorkerVblk, worker_vblk_free)

static int64_t get_int(JsonObject *o, const char *name, int64_t def) {
        JsonNode *n = json_object_get_member(o, name);
        return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_int(n) : def;
}

static gboolean invalid(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean invalid(GError **error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        g_autofree char *msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, WORKER_ERROR, WORKER_ERROR_INVALID, msg);
        return FALSE;
}

static gboolean parse_engine(const char *s, BlkEngine *e, GError **error) {
        for (int i = 0; i < _BLK_ENGINE_MAX; i++)
                if (strcmp(s, blk_engine_to_string((BlkEngine) i)) == 0) {
                        *e = (BlkEngine) i;
                        return TRUE;
                }
        return invalid(error, "engine='%s' is invalid: use \"auto\", \"io_uring\" or \"threads\"", s);
}

static BlkBackend *open_disk(Worker *w, JsonObject *o, JsonObject *disk, WorkerVblk *wv, uint32_t bs,
                             GError **error) {
        const char *path = json_object_get_string_member_with_default(disk, "path", NULL);
        const char *kind = json_object_get_string_member_with_default(disk, "kind", "file");
        bool null = strcmp(kind, "null") == 0;
        int64_t size = get_int(disk, "size", 0), pattern = get_int(disk, "pattern", 0);
        BlkEngine engine = BLK_ENGINE_AUTO;
        gboolean direct = json_object_get_boolean_member_with_default(o, "direct", FALSE);

        if (!parse_engine(json_object_get_string_member_with_default(o, "engine", "auto"), &engine, error))
                return NULL;
        if (size < 0 || size % bs)
                return invalid(error, "size %" G_GINT64_FORMAT " must be a multiple of the block size %u", size, bs),
                       NULL;
        if (null && (size == 0 || pattern < 0 || pattern > 0xff))
                return invalid(error, "a null disk needs a \"size\" and a \"pattern\" of 0..255"), NULL;
        g_autofree char *net_name = NULL;
        BlkOpenOptions bo = { .fd = -1 };
        if (!worker_netblk_options(w, disk, &bo, &net_name, error))
                return NULL;
        int fd = null || net_name ? -1 : worker_take_fd(w, "disk");
        if (!null && !net_name && fd < 0 && (!path || !*path)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                            "no backing file: give \"path\" or pass an fd named 'disk'");
                return NULL;
        }
        bo.path = null ? "null" : net_name ? net_name : path ? path : "disk";
        bo.fd = fd;
        bo.size = (uint64_t) size;
        bo.read_only = json_object_get_boolean_member_with_default(o, "read-only", FALSE);
        bo.direct = direct;
        bo.engine = engine;
        bo.null = null;
        bo.null_pattern = (int) pattern;
        BlkBackend *be = NULL;
        int r = blk_backend_open(&bo, &be);
        if (r < 0) {
                const char *hint = net_name ? worker_netblk_hint(&bo, r)
                                 : r == -ENOENT ? ": create it, or give \"size\" to have it created"
                                 : r == -EROFS ? ": the file is read-only; set \"read-only\": true or fix its permissions"
                                 : r == -EINVAL ? ": it must be a regular file or block device at least \"size\" bytes large"
                                 : "";
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND, "cannot use %s: %s%s", bo.path, g_strerror(-r),
                            hint);
                return NULL;
        }
        if (direct && be->dio_align > bs) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                            "%s needs %u-byte aligned direct I/O; use block-size 4096 or \"direct\": false",
                            bo.path, be->dio_align);
                blk_backend_free(be);
                return NULL;
        }
        wv->path = g_strdup(bo.path);
        wv->kind = g_strdup(kind);
        return be;
}

/* The disk's own object: namespace 1 of the manager's form, or the options themselves. */
static JsonObject *disk_object(JsonObject *o, GError **error) {
        JsonNode *n = json_object_get_member(o, "namespaces");

        if (!n)
                return o;
        JsonArray *a = JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
        JsonNode *first = a && json_array_get_length(a) == 1 ? json_array_get_element(a, 0) : NULL;
        if (!first || !JSON_NODE_HOLDS_OBJECT(first)) {
                invalid(error, "namespaces must hold exactly one object, the disk");
                return NULL;
        }
        return json_node_get_object(first);
}

static gboolean vblk_create(Worker *w, JsonObject *o, VuServerConfig *scfg, void **state, GError **error) {
        g_autoptr(WorkerVblk) wv = g_new0(WorkerVblk, 1);
        JsonObject *disk = disk_object(o, error);
        if (!disk)
                return FALSE;
        int64_t queues = get_int(o, "queues", WORKER_VBLK_DEFAULT_QUEUES), qs = get_int(o, "queue-size", VBLK_DEFAULT_QUEUE_SIZE);
        int64_t poll_us = get_int(o, "poll-us", WORKER_VBLK_DEFAULT_POLL_US);
        int64_t bs = get_int(disk, "block-size", get_int(o, "block-size", 512));
        const char *serial = json_object_get_string_member_with_default(o, "serial", NULL);
        g_autofree char *default_serial = NULL;
        VBlkOptions opt = { 0 };
        int r;

        if (queues < 1 || queues > VBLK_MAX_QUEUES)
                return invalid(error, "queues=%" G_GINT64_FORMAT " is invalid: use 1..%u", queues, VBLK_MAX_QUEUES);
        if (qs < 4 || qs > VQ_MAX_SIZE || (qs & (qs - 1)))
                return invalid(error, "queue-size=%" G_GINT64_FORMAT " is invalid: give a power of two from 4 to %u",
                               qs, VQ_MAX_SIZE);
        if (bs != 512 && bs != 4096)
                return invalid(error, "block-size=%" G_GINT64_FORMAT " is invalid: use 512 or 4096", bs);
        if (poll_us < 0 || poll_us > VBLK_MAX_POLL_US)
                return invalid(error, "poll-us=%" G_GINT64_FORMAT " is invalid: use 0..%u microseconds", poll_us,
                               VBLK_MAX_POLL_US);
        if (serial) {
                for (const char *p = serial; *p; p++)
                        if (*p < 0x20 || *p > 0x7e)
                                return invalid(error, "serial must be printable ASCII");
                if (strlen(serial) > 20)
                        return invalid(error, "serial '%s' has more than 20 characters", serial);
        } else {
                default_serial = g_strndup(worker_device_name(w), 20);
                for (char *p = default_serial; *p; p++)
                        if (*p < 0x20 || *p > 0x7e)
                                *p = '_';
                serial = default_serial;
        }
        BlkBackend *be = open_disk(w, o, disk, wv, (uint32_t) bs, error);
        wv->be = be;
        if (!be)
                return FALSE;
        opt.queues = (unsigned) queues;
        opt.queue_size = (uint16_t) qs;
        opt.block_size = (uint32_t) bs;
        opt.read_only = json_object_get_boolean_member_with_default(o, "read-only", FALSE);
        opt.packed = json_object_get_boolean_member_with_default(o, "packed", FALSE);
        opt.poll_us = (unsigned) poll_us;
        opt.serial = serial;
        opt.name = worker_device_name(w);
        /* Migration streams carry the device name: a stream for another device is refused. */
        opt.migration_id = opt.name;
        r = vblk_new(&opt, be, &wv->b);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                            "cannot create the virtio-blk device: %s (is the disk smaller than one block?)",
                            g_strerror(-r));
                return FALSE;
        }
        r = vblk_server_config(wv->b, scfg);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot build the PCI configuration of the virtio-blk device: %s", g_strerror(-r));
                return FALSE;
        }
        *state = g_steal_pointer(&wv);
        return TRUE;
}

static int vblk_irq(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps vblk_irq_ops = { .fire = vblk_irq };

static void vblk_start_type(void *state, VuServer *server) {
        WorkerVblk *wv = state;

        wv->server = server;
        vblk_attach(wv->b, vu_server_mem(server), &vblk_irq_ops, server);
}

static void vblk_destroy(void *state) {
        worker_vblk_free(state);
}

static JsonNode *size_result(WorkerVblk *wv) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "size");
        json_builder_add_int_value(b, (int64_t) vblk_capacity_bytes(wv->b));
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

static gboolean vblk_control(void *state, const char *method, JsonObject *params, JsonNode **result,
                             GError **error) {
        WorkerVblk *wv = state;

        if (strcmp(method, "resize") == 0) {
                int64_t size = params ? get_int(params, "size", -1) : -1;
                uint64_t cur = vblk_capacity_bytes(wv->b);
                if (size < 0)
                        return invalid(error, "resize needs \"size\" in bytes (0: the backing file's size)");
                int r = vblk_resize(wv->b, (uint64_t) size);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, r == -EINVAL ? WORKER_ERROR_INVALID : WORKER_ERROR_BACKEND,
                                    "cannot resize to %" G_GINT64_FORMAT " bytes: %s", size,
                                    r == -EINVAL ? ((uint64_t) size < cur ? "disks only grow"
                                                    : "not a multiple of the block size, or larger than the block device")
                                                 : g_strerror(-r));
                        return FALSE;
                }
                *result = size_result(wv);
                return TRUE;
        }
        g_set_error(error, WORKER_ERROR, WORKER_ERROR_UNSUPPORTED,
                    "virtio-blk has no control method '%s' (known: resize)", method);
        return FALSE;
}

static void vblk_stats(void *state, JsonBuilder *b) {
        WorkerVblk *wv = state;
        VBlkStats st;

        vblk_get_stats(wv->b, &st);
#define MEMBER(k, v) do { json_builder_set_member_name(b, k); json_builder_add_int_value(b, (int64_t) (v)); } while (0)
        MEMBER("read_requests", st.read_reqs);
        MEMBER("read_bytes", st.read_bytes);
        MEMBER("write_requests", st.write_reqs);
        MEMBER("write_bytes", st.write_bytes);
        MEMBER("flush_requests", st.flush_reqs);
        MEMBER("discard_requests", st.discard_reqs);
        MEMBER("write_zeroes_requests", st.write_zeroes_reqs);
        MEMBER("io_errors", st.io_errors);
        MEMBER("unsupported", st.unsupported);
        MEMBER("bad_chains", st.bad_chains);
        MEMBER("inflight", st.inflight);
        MEMBER("size", vblk_capacity_bytes(wv->b));
        MEMBER("write_cache", vblk_write_cache(wv->b));
#undef MEMBER
        worker_stats_latency(b, &st.lat);
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, wv->path ? wv->path : "");
        json_builder_set_member_name(b, "kind");
        json_builder_add_string_value(b, wv->kind ? wv->kind : "");
        char waiting[256] = "";
        if (wv->be)
                blk_backend_waiting(wv->be, waiting, sizeof(waiting));
        json_builder_set_member_name(b, "waiting");
        json_builder_add_string_value(b, waiting);
}

const WorkerDeviceType worker_virtio_blk_type = {
        .type = "virtio-blk",
        .create = vblk_create,
        .start = vblk_start_type,
        .destroy = vblk_destroy,
        .control = vblk_control,
        .stats = vblk_stats,
};
