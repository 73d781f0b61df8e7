/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NVMe devices, manager side: namespace 1 from a new sparse image (size=),
 * an existing file (file=), a block device (block=), an NBD export (nbd=URI,
 * served by qemu-storage-daemon, qemu-nbd or nbdkit: the worker connects),
 * a Ceph RBD image (rbd=POOL/IMAGE with rbd-conf=, rbd-id=, rbd-keyring=;
 * size= creates it when missing)
 * or the null backend (null=, storing nothing: for benchmarks); more
 * namespaces at runtime.
 * Options schema: vfud/worker/worker.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "device-netblk.h"
#include "device-type.h"
#include "migrate.h"
#include "image-lock.h"
#include "nvme/nvme.h"

/* The bounds are the device model's (nvme/nvme.h): what is accepted here, the worker can build. */
#define NVME_SIZE_ALIGN 4096u

static const DeviceOptionSpec nvme_options[] = {
        { "size", DEVICE_OPTION_UINT, "size of namespace 1 in bytes (a multiple of 4096)" },
        { "file", DEVICE_OPTION_STRING, "existing backing file for namespace 1" },
        { "block", DEVICE_OPTION_STRING, "block device for namespace 1" },
        { "queues", DEVICE_OPTION_UINT, "number of I/O queue pairs" },
        { "iothreads", DEVICE_OPTION_UINT, "I/O threads the queue pairs are spread over (default 1)" },
        { "poll-us", DEVICE_OPTION_UINT, "longest polling window of an I/O thread in microseconds, 0: never poll (default 50)" },
        { "serial", DEVICE_OPTION_STRING, "serial number (up to 20 characters)" },
        { "block-size", DEVICE_OPTION_UINT, "logical block size of namespace 1: 512 or 4096" },
        { "null", DEVICE_OPTION_UINT, "size of a null namespace 1 that stores no data (reads return zeroes, writes are dropped): for benchmarks" },
        { "msi", DEVICE_OPTION_BOOL, "MSI instead of MSI-X: hot detach from a running VM works on QEMU 11.1" },
        { "hotplug", DEVICE_OPTION_BOOL, "the device will be hot-attached to and detached from running VMs: MSI unless msi=false is given" },
        { "null-pattern", DEVICE_OPTION_UINT, "the byte a null namespace's reads return: 0 to 255 (default 0)" },
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

static char *image_path(Manager *m, const char *name, uint32_t nsid) {
        g_autofree char *file = g_strdup_printf("%s-ns%u.img", name, nsid);

        return g_build_filename(m->images_dir, file, NULL);
}

static gboolean check_size(uint32_t nsid, uint64_t size, GError **error) {
        g_autofree char *h = util_format_size(size);

        if (size == 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "namespace %u: size must not be zero", nsid);
                return FALSE;
        }
        if (size % NVME_SIZE_ALIGN) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "namespace %u: size %" G_GUINT64_FORMAT " (%s) is not a multiple of %u bytes: round it, e.g. to %" G_GUINT64_FORMAT,
                            nsid, size, h, NVME_SIZE_ALIGN, (size + NVME_SIZE_ALIGN - 1) / NVME_SIZE_ALIGN * NVME_SIZE_ALIGN);
                return FALSE;
        }
        return TRUE;
}

/* Check an existing backing path; *kind "file" or "block", *size its size. */
static gboolean check_backing(const char *path, const char *want_kind, const char **kind,
                              uint64_t *size, GError **error) {
        struct stat st;
        int fd;

        if (!path || path[0] != '/') {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "backing path '%s' is not absolute: give the full path", path ? path : "");
                return FALSE;
        }
        if (stat(path, &st) < 0) {
                int e = errno;

                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            e == ENOENT ?
                            "backing %s does not exist: create it first (e.g. truncate -s 10G FILE), or give a size without a file to get a new image" :
                            "cannot access backing %s: %s",
                            path, g_strerror(e));
                return FALSE;
        }
        if (S_ISBLK(st.st_mode))
                *kind = "block";
        else if (S_ISREG(st.st_mode))
                *kind = "file";
        else {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "backing %s is neither a regular file nor a block device", path);
                return FALSE;
        }
        if (want_kind && strcmp(want_kind, *kind) != 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            strcmp(want_kind, "block") == 0 ?
                            "%s is not a block device: use file= (--file) for regular files" :
                            "%s is a block device: use block= (--block) for block devices",
                            path);
                return FALSE;
        }
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;

                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            "cannot open backing %s read-write: %s%s", path, g_strerror(e),
                            e == EACCES || e == EPERM ? " (check its permissions and that vfud may use it)" :
                            e == EBUSY ? " (it is in use, e.g. mounted)" : "");
                return FALSE;
        }
        if (S_ISBLK(st.st_mode)) {
                if (ioctl(fd, BLKGETSIZE64, size) < 0) {
                        int e = errno;

                        close(fd);
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                                    "cannot read the size of %s: %s", path, g_strerror(e));
                        return FALSE;
                }
        } else
                *size = (uint64_t) st.st_size;
        close(fd);
        return TRUE;
}

static JsonObject *ns_new(uint32_t nsid, const char *path, uint64_t size, const char *kind) {
        JsonObject *o = json_object_new();

        json_object_set_int_member(o, "nsid", nsid);
        json_object_set_string_member(o, "path", path);
        json_object_set_int_member(o, "size", (int64_t) size);
        json_object_set_string_member(o, "kind", kind);
        return o;
}

/* Resolve one namespace request (path "" or NULL: a new image of size). */
static JsonObject *ns_resolve(Manager *m, const char *name, uint32_t nsid, const char *path,
                              const char *want_kind, bool have_size, uint64_t size, GError **error) {
        g_autofree char *img = NULL;
        const char *kind = "image";
        uint64_t backing = 0;

        if (path && *path) {
                struct stat st;
                Device *user;

                if (!check_backing(path, want_kind, &kind, &backing, error))
                        return NULL;
                user = stat(path, &st) == 0 ? image_user(m, name, &st) : NULL;
                if (user) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                                    "%s is in use by device %s: an image has one writer (destroy %s first, or give another image)",
                                    path, user->name, user->name);
                        return NULL;
                }
                if (have_size && size > backing) {
                        g_autofree char *a = util_format_size(size), *b = util_format_size(backing);

                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "namespace %u: size %s is larger than %s (%s): grow the backing first or give a smaller size",
                                    nsid, a, path, b);
                        return NULL;
                }
                if (!have_size) {
                        size = backing / NVME_SIZE_ALIGN * NVME_SIZE_ALIGN;
                        if (size == 0) {
                                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                            "backing %s is smaller than %u bytes: grow it first (e.g. truncate -s 10G %s)",
                                            path, NVME_SIZE_ALIGN, path);
                                return NULL;
                        }
                }
        } else {
                if (!have_size) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "namespace %u needs a size for a new image (e.g. size=10G), or an existing file or block device",
                                    nsid);
                        return NULL;
                }
                img = image_path(m, name, nsid);
                path = img;
        }
        if (!check_size(nsid, size, error))
                return NULL;
        return ns_new(nsid, path, size, kind);
}

static bool ns_is_null(JsonObject *ns) {
        return g_strcmp0(json_object_get_string_member_with_default(ns, "kind", ""), "null") == 0;
}

/* null=SIZE [null-pattern=BYTE]: a namespace without storage. */
static JsonObject *ns_resolve_null(GHashTable *in, bool have_other, GError **error) {
        uint64_t size = 0, pattern = 0;
        bool have_pattern = opt_uint(in, "null-pattern", &pattern);
        JsonObject *ns;

        (void) opt_uint(in, "null", &size);
        if (have_other) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "null= gives namespace 1 a null backend of that size: drop size=, file= and block=");
                return NULL;
        }
        if (have_pattern && pattern > 0xff) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "null-pattern=%" G_GUINT64_FORMAT " is not a byte: give 0 to 255", pattern);
                return NULL;
        }
        if (!check_size(1, size, error))
                return NULL;
        ns = json_object_new();
        json_object_set_int_member(ns, "nsid", 1);
        json_object_set_int_member(ns, "size", (int64_t) size);
        json_object_set_string_member(ns, "kind", "null");
        json_object_set_boolean_member(ns, "stores-data", FALSE);
        if (pattern)
                json_object_set_int_member(ns, "pattern", (int64_t) pattern);
        return ns;
}

static bool ns_is_netblk(JsonObject *ns) {
        return netblk_kind(json_object_get_string_member_with_default(ns, "kind", ""));
}

/* The Identify Controller SN field (NVMe 1.4 5.15.2.1): 1 to 20 printable ASCII characters. */
static gboolean check_serial(const char *serial, GError **error) {
        size_t n = strlen(serial);
        size_t good = 0;       /* leading printable ASCII characters */

        while (good < n && serial[good] >= 0x20 && serial[good] <= 0x7e)
                good++;
        if (n >= 1 && n <= NVME_SN_MAX && good == n)
                return TRUE;
        {
                /* echoed escaped: the caller's bytes may be control characters */
                g_autofree char *shown = g_strescape(serial, NULL);

                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "serial '%s' is invalid (%s): give 1 to %u printable ASCII characters",
                            shown, n == 0 ? "empty" : good < n ? "not printable ASCII" : "too long",
                            NVME_SN_MAX);
        }
        return FALSE;
}

static gboolean nvme_normalize(Manager *m, const char *name, GHashTable *in, JsonObject *out,
                               GError **error) {
        const char *file = opt_string(in, "file"), *block = opt_string(in, "block");
        const char *serial = opt_string(in, "serial");
        uint64_t size = 0, queues, block_size, iothreads, poll_us;
        bool have_size = opt_uint(in, "size", &size);
        JsonArray *nss;
        JsonObject *ns;

        if (file && block) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "give either file= or block= for the backing storage, not both");
                return FALSE;
        }
        if (netblk_requested(in))
                ns = netblk_resolve(m, name, in, have_size, size, file || block || g_hash_table_contains(in, "null"), error);
        else if (g_hash_table_contains(in, "null"))
                ns = ns_resolve_null(in, have_size || file || block, error);
        else if (g_hash_table_contains(in, "null-pattern")) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "null-pattern= applies to a null namespace: give null=SIZE too");
                return FALSE;
        } else
                ns = ns_resolve(m, name, 1, file ? file : block, file ? "file" : block ? "block" : NULL,
                                have_size, size, error);
        if (!ns)
                return FALSE;
        if (opt_uint(in, "block-size", &block_size)) {
                if (block_size != 512 && block_size != 4096) {
                        json_object_unref(ns);
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "block-size=%" G_GUINT64_FORMAT " is invalid: use 512 or 4096", block_size);
                        return FALSE;
                }
                json_object_set_int_member(ns, "block-size", (int64_t) block_size);
        }
        nss = json_array_new();
        json_array_add_object_element(nss, ns);
        json_object_set_array_member(out, "namespaces", nss);

        if (opt_uint(in, "queues", &queues)) {
                if (queues < 1 || queues > NVME_MAX_IOQS) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "queues=%" G_GUINT64_FORMAT " is out of range: give 1 to %u I/O queue pairs",
                                    queues, NVME_MAX_IOQS);
                        return FALSE;
                }
                json_object_set_int_member(out, "queues", (int64_t) queues);
        }
        if (opt_uint(in, "iothreads", &iothreads)) {
                if (iothreads < 1 || iothreads > NVME_MAX_IOTHREADS) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "iothreads=%" G_GUINT64_FORMAT " is out of range: give 1 to %u I/O threads",
                                    iothreads, NVME_MAX_IOTHREADS);
                        return FALSE;
                }
                json_object_set_int_member(out, "iothreads", (int64_t) iothreads);
        }
        if (opt_uint(in, "poll-us", &poll_us)) {
                if (poll_us > NVME_MAX_POLL_US) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "poll-us=%" G_GUINT64_FORMAT " is out of range: give 0 to %u microseconds",
                                    poll_us, NVME_MAX_POLL_US);
                        return FALSE;
                }
                json_object_set_int_member(out, "poll-us", (int64_t) poll_us);
        }
        if (serial) {
                if (!check_serial(serial, error))
                        return FALSE;
                json_object_set_string_member(out, "serial", serial);
        }
        /*
         * A device meant for hot plug gets MSI unless told otherwise: QEMU
         * before 11.2 aborts when it unplugs a vfio-user device with MSI-X.
         */
        JsonNode *msi = g_hash_table_lookup(in, "msi"), *hotplug = g_hash_table_lookup(in, "hotplug");
        bool want_hotplug = hotplug && json_node_get_boolean(hotplug);
        if (want_hotplug)
                json_object_set_boolean_member(out, "hotplug", TRUE);
        if (msi ? json_node_get_boolean(msi) : want_hotplug)
                json_object_set_boolean_member(out, "msi", TRUE);
        return TRUE;
}

static JsonArray *nvme_namespaces(Device *d) {
        JsonObject *o = json_node_get_object(d->options);

        if (!json_object_has_member(o, "namespaces"))
                json_object_set_array_member(o, "namespaces", json_array_new());
        return json_object_get_array_member(o, "namespaces");
}

static JsonObject *nvme_find_ns(Device *d, uint32_t nsid, guint *index) {
        JsonArray *a = nvme_namespaces(d);

        for (guint i = 0; i < json_array_get_length(a); i++) {
                JsonObject *ns = json_array_get_object_element(a, i);

                if (ns && (uint32_t) json_object_get_int_member_with_default(ns, "nsid", 0) == nsid) {
                        if (index)
                                *index = i;
                        return ns;
                }
        }
        return NULL;
}

static gboolean image_create(const char *path, uint64_t size, GError **error) {
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        if (fd < 0) {
                int e = errno;

                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            e == EEXIST ?
                            "image %s already exists (left over from an earlier device?): delete it, or pass it as the backing file" :
                            "cannot create image %s: %s",
                            path, g_strerror(e));
                return FALSE;
        }
        if (ftruncate(fd, (off_t) size) < 0) {
                int e = errno;

                close(fd);
                (void) unlink(path);
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            "cannot size image %s: %s", path, g_strerror(e));
                return FALSE;
        }
        close(fd);
        return TRUE;
}

static bool ns_is_image(JsonObject *ns) {
        return g_strcmp0(json_object_get_string_member_with_default(ns, "kind", ""), "image") == 0;
}

static gboolean nvme_provision(Device *d, GError **error) {
        JsonArray *a = nvme_namespaces(d);

        for (guint i = 0; i < json_array_get_length(a); i++) {
                JsonObject *ns = json_array_get_object_element(a, i);

                if (!ns_is_image(ns))
                        continue;
                if (!image_create(json_object_get_string_member(ns, "path"),
                                  (uint64_t) json_object_get_int_member(ns, "size"), error)) {
                        for (guint j = 0; j < i; j++) {
                                JsonObject *o = json_array_get_object_element(a, j);

                                if (ns_is_image(o))
                                        (void) unlink(json_object_get_string_member(o, "path"));
                        }
                        return FALSE;
                }
        }
        return TRUE;
}

static void nvme_unprovision(Device *d) {
        JsonArray *a = nvme_namespaces(d);

        for (guint i = 0; i < json_array_get_length(a); i++) {
                JsonObject *ns = json_array_get_object_element(a, i);

                if (ns_is_image(ns) && unlink(json_object_get_string_member(ns, "path")) < 0 && errno != ENOENT)
                        device_log(d, G_LOG_LEVEL_WARNING, "cannot remove image %s: %s", json_object_get_string_member(ns, "path"), g_strerror(errno));
        }
}

/*
 * The fd of namespace ns for d's worker: opened and locked (an incoming
 * copy's unlocked until the hand-over), or after a worker crash the same
 * open file again, lock and all.  vfud keeps a copy while d runs.
 */
static int ns_open(Device *d, JsonObject *ns, GError **error) {
        const char *path = json_object_get_string_member_with_default(ns, "path", "");
        unsigned nsid = (unsigned) json_object_get_int_member_with_default(ns, "nsid", 0);
        int held = device_images_get(d, nsid), fd;

        if (held >= 0) {
                fd = fcntl(held, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "cannot pass on the backing of namespace %u: %s", nsid, g_strerror(errno));
                return fd;
        }
        fd = image_open(d, path, !d->incoming, error);
        if (fd >= 0)
                device_images_hold(d, nsid, fd, !d->incoming);
        return fd;
}

static gboolean nvme_open_fds(Device *d, GPtrArray *names, GArray *fds, GError **error) {
        JsonArray *a = nvme_namespaces(d);

        for (guint i = 0; i < json_array_get_length(a); i++) {
                JsonObject *ns = json_array_get_object_element(a, i);

                if (ns_is_null(ns) || ns_is_netblk(ns))
                        continue;               /* no file: the worker needs no fd */
                int fd = ns_open(d, ns, error);

                if (fd < 0)
                        return FALSE;
                g_ptr_array_add(names, g_strdup_printf("ns%u",
                                (unsigned) json_object_get_int_member_with_default(ns, "nsid", 0)));
                g_array_append_val(fds, fd);
        }
        return TRUE;
}

static bool device_running(Device *d) {
        return d->state == DEVICE_LISTENING || d->state == DEVICE_CONNECTED;
}

static gboolean check_changeable(Device *d, GError **error) {
        if (d->state == DEVICE_STARTING || d->state == DEVICE_STOPPING) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY,
                            "device %s is %s: try again when it is listening or idle",
                            d->name, device_state_to_string(d->state));
                return FALSE;
        }
        return TRUE;
}

/* A pending namespace change: applied to the definition once the worker agreed. */
typedef struct NsOp {
        Device *device;
        JsonObject *ns;                 /* add: the new namespace */
        uint32_t nsid;
        uint64_t size;
        bool created_image;
        enum { NS_ADD, NS_REMOVE, NS_RESIZE } op;
        DeviceDoneFunc func;
        void *userdata;
} NsOp;

static void ns_op_finish(NsOp *op, const GError *error) {
        Device *d = op->device;
        g_autoptr(GError) save_error = NULL;

        if (!error) {
                JsonObject *ns;
                guint idx;

                switch (op->op) {
                case NS_ADD:
                        json_array_add_object_element(nvme_namespaces(d), json_object_ref(op->ns));
                        break;
                case NS_REMOVE:
                        device_images_drop(d, op->nsid);
                        ns = nvme_find_ns(d, op->nsid, &idx);
                        if (ns) {
                                if (ns_is_image(ns))
                                        (void) unlink(json_object_get_string_member(ns, "path"));
                                json_array_remove_element(nvme_namespaces(d), idx);
                        }
                        break;
                case NS_RESIZE:
                        ns = nvme_find_ns(d, op->nsid, NULL);
                        if (ns)
                                json_object_set_int_member(ns, "size", (int64_t) op->size);
                        break;
                }
                if (!device_save(d, &save_error))
                        error = save_error;
                device_emit_changed(d, "Backend", NULL);
        } else {
                if (op->op == NS_ADD)
                        device_images_drop(d, op->nsid);
                if (op->created_image)
                        (void) unlink(json_object_get_string_member(op->ns, "path"));
        }

        op->func(d, error, op->userdata);
        if (op->ns)
                json_object_unref(op->ns);
        device_unref(op->device);
        g_free(op);
}

static void ns_op_ctl_done(Device *d, JsonNode *result, const GError *error, void *userdata) {
        ns_op_finish(userdata, error);
}

static NsOp *ns_op_new(Device *d, int op, uint32_t nsid, DeviceDoneFunc func, void *userdata) {
        NsOp *o = g_new0(NsOp, 1);

        o->device = device_ref(d);
        o->op = op;
        o->nsid = nsid;
        o->func = func;
        o->userdata = userdata;
        return o;
}

static JsonNode *ns_params(uint32_t nsid, JsonObject *ns, bool with_size, uint64_t size) {
        JsonNode *n = json_node_new(JSON_NODE_OBJECT);

        if (ns)
                json_node_set_object(n, ns);
        else {
                JsonObject *o = json_object_new();

                json_object_set_int_member(o, "nsid", nsid);
                if (with_size)
                        json_object_set_int_member(o, "size", (int64_t) size);
                json_node_take_object(n, o);
        }
        return n;
}

static void nvme_namespace_add(Device *d, uint32_t nsid, const char *path, uint64_t size,
                               DeviceDoneFunc func, void *userdata) {
        g_autoptr(GError) error = NULL;
        struct stat st;
        NsOp *op;
        JsonObject *ns;

        if (!check_changeable(d, &error))
                return func(d, error, userdata);
        if (nsid < 1 || nsid > NVME_MAX_NS) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "namespace id %u is out of range: use 1 to %u", nsid, NVME_MAX_NS);
                return func(d, error, userdata);
        }
        if (nvme_find_ns(d, nsid, NULL)) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "namespace %u already exists on %s: pick another id or remove it first",
                            nsid, d->name);
                return func(d, error, userdata);
        }
        if (path && *path && stat(path, &st) == 0 && device_uses_image(d, &st)) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "%s is already a namespace of %s: an image has one writer", path, d->name);
                return func(d, error, userdata);
        }
        ns = ns_resolve(d->manager, d->name, nsid, path, NULL, size != 0, size, &error);
        if (!ns)
                return func(d, error, userdata);
        op = ns_op_new(d, NS_ADD, nsid, func, userdata);
        op->ns = ns;
        if (ns_is_image(ns)) {
                if (!image_create(json_object_get_string_member(ns, "path"), size, &error)) {
                        ns_op_finish(op, error);
                        return;
                }
                op->created_image = true;
        }
        if (device_running(d)) {
                g_autofree char *fd_name = g_strdup_printf("ns%u", nsid);
                const char *names[] = { fd_name, NULL };
                int fd = ns_open(d, ns, &error);

                if (fd < 0) {
                        ns_op_finish(op, error);
                        return;
                }
                device_ctl_call(d, "namespace-add", ns_params(nsid, ns, false, 0),
                                &fd, names, ns_op_ctl_done, op);
                close(fd);
                return;
        }
        ns_op_finish(op, NULL);
}

static void nvme_namespace_remove(Device *d, uint32_t nsid, DeviceDoneFunc func, void *userdata) {
        g_autoptr(GError) error = NULL;
        NsOp *op;

        if (!check_changeable(d, &error))
                return func(d, error, userdata);
        if (!nvme_find_ns(d, nsid, NULL)) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "device %s has no namespace %u: 'vfuctl show %s' lists them", d->name, nsid, d->name);
                return func(d, error, userdata);
        }
        op = ns_op_new(d, NS_REMOVE, nsid, func, userdata);
        if (device_running(d))
                device_ctl_call(d, "namespace-remove", ns_params(nsid, NULL, false, 0), NULL, NULL,
                                ns_op_ctl_done, op);
        else
                ns_op_finish(op, NULL);
}

static void nvme_namespace_resize(Device *d, uint32_t nsid, uint64_t size,
                                  DeviceDoneFunc func, void *userdata) {
        g_autoptr(GError) error = NULL;
        JsonObject *ns;
        const char *path, *kind;
        uint64_t cur;
        NsOp *op;

        if (!check_changeable(d, &error))
                return func(d, error, userdata);
        ns = nvme_find_ns(d, nsid, NULL);
        if (!ns) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "device %s has no namespace %u: 'vfuctl show %s' lists them", d->name, nsid, d->name);
                return func(d, error, userdata);
        }
        if (!check_size(nsid, size, &error))
                return func(d, error, userdata);
        path = json_object_get_string_member_with_default(ns, "path", "");
        kind = json_object_get_string_member_with_default(ns, "kind", "");
        cur = (uint64_t) json_object_get_int_member_with_default(ns, "size", 0);
        if (size < cur) {
                g_autofree char *a = util_format_size(cur), *b = util_format_size(size);

                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "shrinking namespace %u from %s to %s would cut off data: only growing is supported",
                            nsid, a, b);
                return func(d, error, userdata);
        }
        if (strcmp(kind, "null") == 0 || strcmp(kind, "nbd") == 0 || strcmp(kind, "rbd") == 0) {
                /* nothing to grow here: an NBD export grows on its server (the worker checks its size),
                 * an RBD image in the cluster (the worker grows it) */
        } else if (strcmp(kind, "image") == 0) {
                if (truncate(path, (off_t) size) < 0) {
                        g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                                    "cannot grow image %s: %s", path, g_strerror(errno));
                        return func(d, error, userdata);
                }
        } else {
                const char *k;
                uint64_t backing;

                if (!check_backing(path, kind, &k, &backing, &error))
                        return func(d, error, userdata);
                if (size > backing) {
                        g_autofree char *b = util_format_size(backing);

                        g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "%s is only %s: grow it first (truncate -s, lvextend, ...) and resize again",
                                    path, b);
                        return func(d, error, userdata);
                }
        }
        op = ns_op_new(d, NS_RESIZE, nsid, func, userdata);
        op->size = size;
        if (device_running(d))
                device_ctl_call(d, "namespace-resize", ns_params(nsid, NULL, true, size), NULL, NULL,
                                ns_op_ctl_done, op);
        else
                ns_op_finish(op, NULL);
}

static bool nvme_uses_msix(Device *d) {
        JsonObject *o = json_node_get_object(d->options);

        return !json_object_get_boolean_member_with_default(o, "msi", FALSE);
}

const DeviceType device_type_nvme = {
        .name = "nvme",
        .options = nvme_options,
        .normalize = nvme_normalize,
        .provision = nvme_provision,
        .unprovision = nvme_unprovision,
        .open_fds = nvme_open_fds,
        .namespace_add = nvme_namespace_add,
        .namespace_remove = nvme_namespace_remove,
        .namespace_resize = nvme_namespace_resize,
        .uses_msix = nvme_uses_msix,
        .append_create_options = migrate_disk_create_options,
};
