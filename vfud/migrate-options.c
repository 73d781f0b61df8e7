/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The CreateDevice options that make a copy of a device's definition on
 * another vfud (see migrate.h): generic for top-level scalars, per type
 * (DeviceType.append_create_options) for what the definition keeps in
 * another shape.
 */
#include <string.h>

#include "device-type.h"
#include "migrate.h"

int migrate_append_create_options(const DeviceType *t, JsonObject *def, sd_bus_message *m) {
        int r = 0;

        for (const DeviceOptionSpec *o = t->options; r >= 0 && o->name; o++) {
                JsonNode *n = json_object_get_member(def, o->name);
                GType vt = n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_value_type(n) : G_TYPE_INVALID;

                if (o->kind == DEVICE_OPTION_STRING && vt == G_TYPE_STRING)
                        r = sd_bus_message_append(m, "{sv}", o->name, "s", json_node_get_string(n));
                else if (o->kind == DEVICE_OPTION_BOOL && vt == G_TYPE_BOOLEAN)
                        r = sd_bus_message_append(m, "{sv}", o->name, "b", (int) json_node_get_boolean(n));
                else if (o->kind == DEVICE_OPTION_UINT && vt == G_TYPE_INT64 && json_node_get_int(n) >= 0)
                        r = sd_bus_message_append(m, "{sv}", o->name, "t", (uint64_t) json_node_get_int(n));
        }
        if (r >= 0 && t->append_create_options)
                r = t->append_create_options(def, m);
        return r;
}

/* An NBD namespace: the same export, reached from there (nothing to copy). */
static int append_nbd_namespace(sd_bus_message *m, JsonObject *ns) {
        int r = sd_bus_message_append(m, "{sv}", "nbd", "s", json_object_get_string_member_with_default(ns, "uri", ""));

        if (r >= 0 && json_object_has_member(ns, "size"))
                r = sd_bus_message_append(m, "{sv}", "size", "t", (uint64_t) json_object_get_int_member(ns, "size"));
        return r;
}

/* An RBD namespace: the same image in the same cluster, reached from there (nothing to copy). */
static int append_rbd_namespace(sd_bus_message *m, JsonObject *ns) {
        const char *nsp = json_object_get_string_member_with_default(ns, "namespace", NULL);
        g_autofree char *spec = nsp ? g_strdup_printf("%s/%s/%s", json_object_get_string_member_with_default(ns, "pool", ""),
                                                      nsp, json_object_get_string_member_with_default(ns, "image", ""))
                                    : g_strdup_printf("%s/%s", json_object_get_string_member_with_default(ns, "pool", ""),
                                                      json_object_get_string_member_with_default(ns, "image", ""));
        static const char *const opts[][2] = { { "conf", "rbd-conf" }, { "id", "rbd-id" }, { "keyring", "rbd-keyring" } };
        int r = sd_bus_message_append(m, "{sv}", "rbd", "s", spec);

        for (size_t i = 0; r >= 0 && i < G_N_ELEMENTS(opts); i++)
                if (json_object_has_member(ns, opts[i][0]))
                        r = sd_bus_message_append(m, "{sv}", opts[i][1], "s", json_object_get_string_member(ns, opts[i][0]));
        if (r >= 0 && json_object_has_member(ns, "size"))
                r = sd_bus_message_append(m, "{sv}", "size", "t", (uint64_t) json_object_get_int_member(ns, "size"));
        return r;
}

/* nvme and virtio-blk (whose disk is described as namespace 1): namespace 1 as CreateDevice options. */
int migrate_disk_create_options(JsonObject *def, sd_bus_message *m) {
        JsonArray *nss = json_object_has_member(def, "namespaces") ? json_object_get_array_member(def, "namespaces") : NULL;
        int r = 0;

        for (guint i = 0; r >= 0 && nss && i < json_array_get_length(nss); i++) {
                JsonObject *ns = json_array_get_object_element(nss, i);
                const char *kind = json_object_get_string_member_with_default(ns, "kind", "image");

                if (json_object_get_int_member_with_default(ns, "nsid", 0) != 1)
                        continue;
                if (strcmp(kind, "nbd") == 0)
                        r = append_nbd_namespace(m, ns);
                else if (strcmp(kind, "rbd") == 0)
                        r = append_rbd_namespace(m, ns);
                else
                        r = sd_bus_message_append(m, "{sv}", strcmp(kind, "null") == 0 ? "null" : "size", "t",
                                                  (uint64_t) json_object_get_int_member_with_default(ns, "size", 0));
                if (r >= 0 && strcmp(kind, "null") == 0 && json_object_has_member(ns, "pattern"))
                        r = sd_bus_message_append(m, "{sv}", "null-pattern", "u",
                                                  (uint32_t) json_object_get_int_member(ns, "pattern"));
                else if (r >= 0 && (strcmp(kind, "block") == 0 || strcmp(kind, "file") == 0))
                        r = sd_bus_message_append(m, "{sv}", kind, "s",
                                                  json_object_get_string_member_with_default(ns, "path", ""));
                if (r >= 0 && json_object_has_member(ns, "block-size"))
                        r = sd_bus_message_append(m, "{sv}", "block-size", "u",
                                                  (uint32_t) json_object_get_int_member(ns, "block-size"));
        }
        return r;
}

/* virtio-net: its backend (a TAP's name travels as the top-level "tap"). */
int migrate_net_create_options(JsonObject *def, sd_bus_message *m) {
        const char *backend = json_object_get_string_member_with_default(def, "backend", "tap");

        if (strcmp(backend, "passt") == 0)
                return sd_bus_message_append(m, "{sv}", "passt", "b", 1);
        if (strcmp(backend, "null") == 0)
                return sd_bus_message_append(m, "{sv}", "null", "u",
                                             (uint32_t) json_object_get_int_member_with_default(def, "null-frame", 0));
        return 0;
}
