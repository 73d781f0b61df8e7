/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Network block backends of a disk, manager side: see device-netblk.h. */
#include <string.h>

#include "device-netblk.h"
#include "device.h"
#include "manager.h"

#define NETBLK_SIZE_ALIGN 4096u

static const char *opt_string(GHashTable *in, const char *key) {
        JsonNode *n = g_hash_table_lookup(in, key);

        return n ? json_node_get_string(n) : NULL;
}

bool netblk_requested(GHashTable *in) {
        static const char *const keys[] = { "nbd", "rbd", "rbd-conf", "rbd-id", "rbd-keyring" };

        for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
                if (g_hash_table_contains(in, keys[i]))
                        return true;
        return false;
}

bool netblk_kind(const char *kind) {
        return g_strcmp0(kind, "nbd") == 0 || g_strcmp0(kind, "rbd") == 0;
}

static gboolean invalid(GError **error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static gboolean invalid(GError **error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        g_autofree char *msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error_literal(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT, msg);
        return FALSE;
}

/* A Ceph name (pool, namespace, image, client id): non-empty, printable, no '/' or '@'. */
static bool rbd_name_ok(const char *s) {
        if (!s || !*s)
                return false;
        for (; *s; s++)
                if (*s <= 0x20 || *s >= 0x7f || *s == '/' || *s == '@')
                        return false;
        return true;
}

static JsonObject *resolve_nbd(const char *uri, GError **error) {
        JsonObject *ns;

        if (!g_str_has_prefix(uri, "nbd://") && !g_str_has_prefix(uri, "nbd+unix://")) {
                invalid(error, "nbd='%s' is not an NBD URI: give nbd://HOST[:PORT]/EXPORT or "
                        "nbd+unix:///EXPORT?socket=PATH (TLS is not supported)", uri);
                return NULL;
        }
        ns = json_object_new();
        json_object_set_int_member(ns, "nsid", 1);
        json_object_set_string_member(ns, "kind", "nbd");
        json_object_set_string_member(ns, "uri", uri);
        return ns;
}

static JsonObject *resolve_rbd(GHashTable *in, const char *spec, GError **error) {
        g_auto(GStrv) parts = g_strsplit(spec, "/", -1);
        guint n = g_strv_length(parts);
        const char *conf = opt_string(in, "rbd-conf"), *id = opt_string(in, "rbd-id");
        const char *keyring = opt_string(in, "rbd-keyring");
        JsonObject *ns;

        if ((n != 2 && n != 3) || !rbd_name_ok(parts[0]) || !rbd_name_ok(parts[n - 1]) ||
            (n == 3 && !rbd_name_ok(parts[1]))) {
                invalid(error, "rbd='%s' is not an image: give POOL/IMAGE or POOL/NAMESPACE/IMAGE", spec);
                return NULL;
        }
        if ((conf && conf[0] != '/') || (keyring && keyring[0] != '/') || (id && !rbd_name_ok(id))) {
                invalid(error, "rbd-conf= and rbd-keyring= take absolute paths, rbd-id= a client id such as 'libvirt'");
                return NULL;
        }
        ns = json_object_new();
        json_object_set_int_member(ns, "nsid", 1);
        json_object_set_string_member(ns, "kind", "rbd");
        json_object_set_string_member(ns, "pool", parts[0]);
        if (n == 3)
                json_object_set_string_member(ns, "namespace", parts[1]);
        json_object_set_string_member(ns, "image", parts[n - 1]);
        if (conf)
                json_object_set_string_member(ns, "conf", conf);
        if (id)
                json_object_set_string_member(ns, "id", id);
        if (keyring)
                json_object_set_string_member(ns, "keyring", keyring);
        return ns;
}

/* Do disk objects a and b name the same export or image? */
static bool same_disk(JsonObject *a, JsonObject *b) {
        static const char *const rbd_keys[] = { "pool", "namespace", "image", "conf" };
        const char *ka = json_object_get_string_member_with_default(a, "kind", "");

        if (g_strcmp0(ka, json_object_get_string_member_with_default(b, "kind", "")) != 0)
                return false;
        if (strcmp(ka, "nbd") == 0)
                return g_strcmp0(json_object_get_string_member_with_default(a, "uri", NULL),
                                 json_object_get_string_member_with_default(b, "uri", NULL)) == 0;
        if (strcmp(ka, "rbd") != 0)
                return false;
        for (size_t i = 0; i < G_N_ELEMENTS(rbd_keys); i++)
                if (g_strcmp0(json_object_get_string_member_with_default(a, rbd_keys[i], NULL),
                              json_object_get_string_member_with_default(b, rbd_keys[i], NULL)) != 0)
                        return false;
        return true;
}

/* The device other than self whose definition has disk, or NULL. */
static Device *netblk_user(Manager *m, const char *self, JsonObject *disk) {
        GHashTableIter it;
        gpointer v;

        if (!m || !m->devices)
                return NULL;
        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Device *d = v;
                JsonObject *o = d->options && JSON_NODE_HOLDS_OBJECT(d->options) ? json_node_get_object(d->options) : NULL;
                JsonNode *n = o ? json_object_get_member(o, "namespaces") : NULL;
                JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;

                if (self && strcmp(d->name, self) == 0)
                        continue;
                for (guint i = 0; a && i < json_array_get_length(a); i++) {
                        JsonNode *e = json_array_get_element(a, i);
                        if (JSON_NODE_HOLDS_OBJECT(e) && same_disk(json_node_get_object(e), disk))
                                return d;
                }
        }
        return NULL;
}

JsonObject *netblk_resolve(Manager *m, const char *name, GHashTable *in, bool have_size, uint64_t size,
                           bool have_other, GError **error) {
        const char *nbd = opt_string(in, "nbd"), *rbd = opt_string(in, "rbd");
        JsonObject *ns;

        if (!nbd && !rbd) {
                invalid(error, "rbd-conf=, rbd-id= and rbd-keyring= apply to an RBD disk: give rbd=POOL/IMAGE too");
                return NULL;
        }
        if (have_other || (nbd && rbd)) {
                invalid(error, "%s gives the disk a network backend: drop file=, block=, null= and %s",
                        rbd ? "rbd=" : "nbd=", rbd ? "nbd=" : "rbd=");
                return NULL;
        }
        if (nbd && (g_hash_table_contains(in, "rbd-conf") || g_hash_table_contains(in, "rbd-id") ||
                    g_hash_table_contains(in, "rbd-keyring"))) {
                invalid(error, "rbd-conf=, rbd-id= and rbd-keyring= apply to an RBD disk, not to nbd=");
                return NULL;
        }
        if (have_size && (size == 0 || size % NETBLK_SIZE_ALIGN)) {
                invalid(error, "size %" G_GUINT64_FORMAT " is not a positive multiple of %u bytes", size,
                        NETBLK_SIZE_ALIGN);
                return NULL;
        }
        ns = rbd ? resolve_rbd(in, rbd, error) : resolve_nbd(nbd, error);
        if (!ns)
                return NULL;
        Device *user = netblk_user(m, name, ns);
        if (user) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            "%s%s is in use by device %s: a disk has one writer (destroy %s first, or give another %s)",
                            rbd ? "rbd=" : "nbd=", rbd ? rbd : nbd, user->name, user->name, rbd ? "image" : "export");
                json_object_unref(ns);
                return NULL;
        }
        if (have_size)
                json_object_set_int_member(ns, "size", (int64_t) size);
        return ns;
}
