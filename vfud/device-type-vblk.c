/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk devices, manager side: the disk is a new sparse image
 * (size=), an existing file (file=), a block device (block=) or the null
 * backend (null=); it grows at runtime.  The definition describes the disk
 * as namespace 1, the form NVMe devices use, so the Backend property,
 * ResizeNamespace (nsid 1) and migration's storage handling treat both
 * alike.  Options schema: vfud/worker/worker.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "device-netblk.h"
#include "device-type.h"
#include "migrate.h"
#include "image-lock.h"
#include "vblk/vblk.h"

#define VBLK_SIZE_ALIGN 4096u
#define VBLK_SERIAL_MAX 20u

static const DeviceOptionSpec vblk_options[] = {
        { "size", DEVICE_OPTION_UINT, "size of the disk in bytes (a multiple of 4096)" },
        { "file", DEVICE_OPTION_STRING, "existing backing file" },
        { "block", DEVICE_OPTION_STRING, "block device" },
        { "null", DEVICE_OPTION_UINT, "size of a null disk that stores no data (reads return zeroes, writes are dropped): for benchmarks" },
        { "null-pattern", DEVICE_OPTION_UINT, "the byte a null disk's reads return: 0 to 255 (default 0)" },
        { "queues", DEVICE_OPTION_UINT, "number of request queues" },
        { "serial", DEVICE_OPTION_STRING, "serial (GET_ID) string, up to 20 characters" },
        { "block-size", DEVICE_OPTION_UINT, "logical block size: 512 or 4096" },
        { "read-only", DEVICE_OPTION_BOOL, "the guest may only read the disk" },
        NETBLK_OPTION_SPECS,
        { NULL },
};

static const char *opt_string(GHashTable *in, const char *key) {
        JsonNode *n = g_hash_table_lookup(in, key);

        return n ? json_node_get_string(n) : NULL;
}

static bool opt_uint(GHashTable *in, const char *key, uint64_t *ret) {
        JsonNode *n = g_hash_table_lookup(in, key);

        if (!n)
                return false;
        *ret = (uint64_t) json_node_get_int(n);
        return true;
}

static gboolean fail(GError **error, int code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static gboolean fail(GError **error, int code, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        g_autofree char *msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, MANAGER_ERROR, code, msg);
        return FALSE;
}

static gboolean check_size(uint64_t size, GError **error) {
        g_autofree char *h = util_format_size(size);

        if (size == 0)
                return fail(error, MANAGER_ERROR_INVALID_ARGUMENT, "the disk size must not be zero");
        if (size % VBLK_SIZE_ALIGN)
                return fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                            "size %" G_GUINT64_FORMAT " (%s) is not a multiple of %u bytes: round it, e.g. to %" G_GUINT64_FORMAT,
                            size, h, VBLK_SIZE_ALIGN, (size + VBLK_SIZE_ALIGN - 1) / VBLK_SIZE_ALIGN * VBLK_SIZE_ALIGN);
        return TRUE;
}

/* An existing file or block device: its kind and size, opened as the worker will (read-write unless ro). */
static gboolean check_backing(const char *path, const char *want_kind, bool ro, uint64_t *size, GError **error) {
        struct stat st;

        if (!path || path[0] != '/')
                return fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                            "backing path '%s' is not absolute: give the full path", path ? path : "");
        if (stat(path, &st) < 0)
                return fail(error, MANAGER_ERROR_BACKEND_FAILED,
                            errno == ENOENT ? "backing %s does not exist: create it first (e.g. truncate -s 10G FILE), "
                                              "or give a size without a file to get a new image%s"
                                            : "cannot access backing %s: %s", path,
                            errno == ENOENT ? "" : g_strerror(errno));
        bool blk = S_ISBLK(st.st_mode);
        if (!blk && !S_ISREG(st.st_mode))
                return fail(error, MANAGER_ERROR_INVALID_ARGUMENT, "backing %s is neither a regular file nor a block device",
                            path);
        if (blk != (strcmp(want_kind, "block") == 0))
                return fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                            blk ? "%s is a block device: use block= (--block) for block devices"
                                : "%s is not a block device: use file= (--file) for regular files", path);
        int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                return fail(error, MANAGER_ERROR_BACKEND_FAILED, "cannot open backing %s %s: %s%s", path,
                            ro ? "read-only" : "read-write", g_strerror(e),
                            e == EACCES || e == EPERM ? " (check its permissions and that vfud may use it)" :
                            e == EBUSY ? " (it is in use, e.g. mounted)" : "");
        }
        if (blk && ioctl(fd, BLKGETSIZE64, size) < 0) {
                int e = errno;
                close(fd);
                return fail(error, MANAGER_ERROR_BACKEND_FAILED, "cannot read the size of %s: %s", path, g_strerror(e));
        }
        if (!blk)
                *size = (uint64_t) st.st_size;
        close(fd);
        return TRUE;
}

static JsonObject *disk_resolve(Manager *m, const char *name, GHashTable *in, bool ro, GError **error) {
        const char *file = opt_string(in, "file"), *block = opt_string(in, "block");
        uint64_t size = 0, backing = 0, pattern = 0;
        bool have_size = opt_uint(in, "size", &size), null = g_hash_table_contains(in, "null");
        bool have_pattern = opt_uint(in, "null-pattern", &pattern);
        JsonObject *disk;

        if (netblk_requested(in))
                return netblk_resolve(m, name, in, have_size, size, file || block || null, error);
        disk = json_object_new();
        json_object_set_int_member(disk, "nsid", 1);
        if ((file && block) || (null && (file || block || have_size))) {
                fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                     "give one of size= (a new image), file=, block= or null= for the disk");
                goto fail;
        }
        if (have_pattern && !null) {
                fail(error, MANAGER_ERROR_INVALID_ARGUMENT, "null-pattern= applies to a null disk: give null=SIZE too");
                goto fail;
        }
        if (null) {
                (void) opt_uint(in, "null", &size);
                if (pattern > 0xff) {
                        fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                             "null-pattern=%" G_GUINT64_FORMAT " is not a byte: give 0 to 255", pattern);
                        goto fail;
                }
                json_object_set_string_member(disk, "kind", "null");
                json_object_set_boolean_member(disk, "stores-data", FALSE);
                if (pattern)
                        json_object_set_int_member(disk, "pattern", (int64_t) pattern);
        } else if (file || block) {
                const char *path = file ? file : block;
                struct stat st;
                if (!check_backing(path, file ? "file" : "block", ro, &backing, error))
                        goto fail;
                Device *user = stat(path, &st) == 0 ? image_user(m, name, &st) : NULL;
                if (user) {
                        fail(error, MANAGER_ERROR_BACKEND_FAILED,
                             "%s is in use by device %s: an image has one writer (destroy %s first, or give another image)",
                             path, user->name, user->name);
                        goto fail;
                }
                if (have_size && size > backing) {
                        g_autofree char *a = util_format_size(size), *b = util_format_size(backing);
                        fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                             "size %s is larger than %s (%s): grow the backing first or give a smaller size", a, path, b);
                        goto fail;
                }
                if (!have_size)
                        size = backing / VBLK_SIZE_ALIGN * VBLK_SIZE_ALIGN;
                json_object_set_string_member(disk, "path", path);
                json_object_set_string_member(disk, "kind", file ? "file" : "block");
        } else {
                if (!have_size) {
                        fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                             "a virtio-blk disk needs a size for a new image (e.g. size=10G), or file=, block= or null=");
                        goto fail;
                }
                if (ro) {
                        fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                             "a new image read-only would hold nothing but zeroes: give file= or block= with read-only");
                        goto fail;
                }
                g_autofree char *img = g_strdup_printf("%s/%s-disk.img", m->images_dir, name);
                json_object_set_string_member(disk, "path", img);
                json_object_set_string_member(disk, "kind", "image");
        }
        if (!check_size(size, error))
                goto fail;
        json_object_set_int_member(disk, "size", (int64_t) size);
        return disk;
fail:
        json_object_unref(disk);
        return NULL;
}

static gboolean check_serial(const char *serial, GError **error) {
        size_t n = strlen(serial), good = 0;

        while (good < n && serial[good] >= 0x20 && serial[good] <= 0x7e)
                good++;
        if (n >= 1 && n <= VBLK_SERIAL_MAX && good == n)
                return TRUE;
        g_autofree char *shown = g_strescape(serial, NULL);     /* the caller's bytes may be control characters */
        return fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                    "serial '%s' is invalid (%s): give 1 to %u printable ASCII characters", shown,
                    n == 0 ? "empty" : good < n ? "not printable ASCII" : "too long", VBLK_SERIAL_MAX);
}

static gboolean vblk_normalize(Manager *m, const char *name, GHashTable *in, JsonObject *out, GError **error) {
        const char *serial = opt_string(in, "serial");
        JsonNode *ron = g_hash_table_lookup(in, "read-only");
        bool ro = ron && json_node_get_boolean(ron);
        uint64_t queues, bs;
        JsonObject *disk = disk_resolve(m, name, in, ro, error);

        if (!disk)
                return FALSE;
        if (opt_uint(in, "block-size", &bs)) {
                if (bs != 512 && bs != 4096) {
                        json_object_unref(disk);
                        return fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "block-size=%" G_GUINT64_FORMAT " is invalid: use 512 or 4096", bs);
                }
                json_object_set_int_member(disk, "block-size", (int64_t) bs);
        }
        JsonArray *disks = json_array_new();
        json_array_add_object_element(disks, disk);
        json_object_set_array_member(out, "namespaces", disks);
        if (opt_uint(in, "queues", &queues)) {
                if (queues < 1 || queues > VBLK_MAX_QUEUES)
                        return fail(error, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "queues=%" G_GUINT64_FORMAT " is out of range: give 1 to %u request queues",
                                    queues, VBLK_MAX_QUEUES);
                json_object_set_int_member(out, "queues", (int64_t) queues);
        }
        if (serial) {
                if (!check_serial(serial, error))
                        return FALSE;
                json_object_set_string_member(out, "serial", serial);
        }
        if (ro)
                json_object_set_boolean_member(out, "read-only", TRUE);
        return TRUE;
}

/* The disk: namespace 1 of the definition. */
static JsonObject *vblk_disk(Device *d) {
        JsonObject *o = json_node_get_object(d->options);
        JsonArray *a = json_object_has_member(o, "namespaces") ? json_object_get_array_member(o, "namespaces") : NULL;

        return a && json_array_get_length(a) ? json_array_get_object_element(a, 0) : NULL;
}

static const char *disk_kind(JsonObject *disk) {
        return disk ? json_object_get_string_member_with_default(disk, "kind", "") : "";
}

static gboolean vblk_provision(Device *d, GError **error) {
        JsonObject *disk = vblk_disk(d);

        if (strcmp(disk_kind(disk), "image") != 0)
                return TRUE;
        const char *path = json_object_get_string_member(disk, "path");
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail(error, MANAGER_ERROR_BACKEND_FAILED,
                            errno == EEXIST ? "image %s already exists (left over from an earlier device?): delete it, "
                                              "or pass it as the backing file%s" : "cannot create image %s: %s",
                            path, errno == EEXIST ? "" : g_strerror(errno));
        if (ftruncate(fd, (off_t) json_object_get_int_member(disk, "size")) < 0) {
                int e = errno;
                close(fd);
                (void) unlink(path);
                return fail(error, MANAGER_ERROR_BACKEND_FAILED, "cannot size image %s: %s", path, g_strerror(e));
        }
        close(fd);
        return TRUE;
}

static void vblk_unprovision(Device *d) {
        JsonObject *disk = vblk_disk(d);

        if (strcmp(disk_kind(disk), "image") != 0)
                return;
        const char *path = json_object_get_string_member(disk, "path");
        if (unlink(path) < 0 && errno != ENOENT)
                device_log(d, G_LOG_LEVEL_WARNING, "cannot remove image %s: %s", path, g_strerror(errno));
}

/*
 * The disk's fd for d's worker.  A writable one is opened and locked as an
 * NVMe namespace is (image-lock.h: one writer per image, the lock kept by
 * vfud while d runs, an incoming copy's taken at the hand-over); a
 * read-only one is opened read-only and takes no writer's lock.
 */
static gboolean vblk_open_fds(Device *d, GPtrArray *names, GArray *fds, GError **error) {
        JsonObject *disk = vblk_disk(d);
        JsonObject *o = json_node_get_object(d->options);
        bool ro = json_object_get_boolean_member_with_default(o, "read-only", FALSE);
        int fd, held;

        if (!disk || strcmp(disk_kind(disk), "null") == 0 || netblk_kind(disk_kind(disk)))
                return TRUE;            /* no file: the worker needs no fd */
        const char *path = json_object_get_string_member_with_default(disk, "path", "");
        if (ro) {
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return fail(error, MANAGER_ERROR_BACKEND_FAILED, "cannot open the disk %s: %s%s", path,
                                    g_strerror(errno),
                                    errno == ENOENT ? " (it was removed: restore it or destroy the device)" : "");
        } else if ((held = device_images_get(d, 1)) >= 0) {
                fd = fcntl(held, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return fail(error, MANAGER_ERROR_FAILED, "cannot pass on the disk: %s", g_strerror(errno));
        } else {
                fd = image_open(d, path, !d->incoming, error);
                if (fd < 0)
                        return FALSE;
                device_images_hold(d, 1, fd, !d->incoming);
        }
        g_ptr_array_add(names, g_strdup("disk"));
        g_array_append_val(fds, fd);
        return TRUE;
}

typedef struct ResizeOp {
        Device *device;
        uint64_t size;
        DeviceDoneFunc func;
        void *userdata;
} ResizeOp;

static void resize_finish(ResizeOp *op, const GError *error) {
        Device *d = op->device;
        g_autoptr(GError) save_error = NULL;

        if (!error) {
                JsonObject *disk = vblk_disk(d);
                if (disk)
                        json_object_set_int_member(disk, "size", (int64_t) op->size);
                if (!device_save(d, &save_error))
                        error = save_error;
                device_emit_changed(d, "Backend", NULL);
                device_stats_update(d);         /* the size the worker reports */
        }
        op->func(d, error, op->userdata);
        device_unref(op->device);
        g_free(op);
}

static void resize_ctl_done(Device *d, JsonNode *result, const GError *error, void *userdata) {
        resize_finish(userdata, error);
}

/* ResizeNamespace(1, size): grow the disk; a running guest is told with a configuration interrupt. */
static void vblk_disk_resize(Device *d, uint32_t nsid, uint64_t size, DeviceDoneFunc func, void *userdata) {
        g_autoptr(GError) error = NULL;
        JsonObject *disk = vblk_disk(d);
        const char *kind = disk_kind(disk), *path;
        uint64_t cur;

        if (d->state == DEVICE_STARTING || d->state == DEVICE_STOPPING) {
                fail(&error, MANAGER_ERROR_DEVICE_BUSY, "device %s is %s: try again when it is listening or idle",
                     d->name, device_state_to_string(d->state));
                return func(d, error, userdata);
        }
        if (nsid != 1 || !disk) {
                fail(&error, MANAGER_ERROR_INVALID_ARGUMENT, "a virtio-blk device has one disk, namespace 1: resize 1");
                return func(d, error, userdata);
        }
        if (!check_size(size, &error))
                return func(d, error, userdata);
        cur = (uint64_t) json_object_get_int_member_with_default(disk, "size", 0);
        path = json_object_get_string_member_with_default(disk, "path", "");
        if (size < cur) {
                g_autofree char *a = util_format_size(cur), *b = util_format_size(size);
                fail(&error, MANAGER_ERROR_INVALID_ARGUMENT,
                     "shrinking the disk from %s to %s would cut off data: only growing is supported", a, b);
                return func(d, error, userdata);
        }
        if (strcmp(kind, "image") == 0) {
                if (truncate(path, (off_t) size) < 0) {
                        fail(&error, MANAGER_ERROR_BACKEND_FAILED, "cannot grow image %s: %s", path, g_strerror(errno));
                        return func(d, error, userdata);
                }
        } else if (strcmp(kind, "null") != 0 && !netblk_kind(kind)) {
                uint64_t backing = 0;
                JsonObject *o = json_node_get_object(d->options);
                if (!check_backing(path, kind, json_object_get_boolean_member_with_default(o, "read-only", FALSE),
                                   &backing, &error))
                        return func(d, error, userdata);
                if (size > backing) {
                        g_autofree char *b = util_format_size(backing);
                        fail(&error, MANAGER_ERROR_INVALID_ARGUMENT,
                             "%s is only %s: grow it first (truncate -s, lvextend, ...) and resize again", path, b);
                        return func(d, error, userdata);
                }
        }
        ResizeOp *op = g_new0(ResizeOp, 1);
        op->device = device_ref(d);
        op->size = size;
        op->func = func;
        op->userdata = userdata;
        if (d->state == DEVICE_LISTENING || d->state == DEVICE_CONNECTED) {
                JsonObject *p = json_object_new();
                JsonNode *n = json_node_new(JSON_NODE_OBJECT);
                json_object_set_int_member(p, "size", (int64_t) size);
                json_node_take_object(n, p);
                device_ctl_call(d, "resize", n, NULL, NULL, resize_ctl_done, op);
                return;
        }
        resize_finish(op, NULL);
}

const DeviceType device_type_virtio_blk = {
        .name = "virtio-blk",
        .options = vblk_options,
        .normalize = vblk_normalize,
        .provision = vblk_provision,
        .unprovision = vblk_unprovision,
        .open_fds = vblk_open_fds,
        .namespace_resize = vblk_disk_resize,
        .append_create_options = migrate_disk_create_options,
};
