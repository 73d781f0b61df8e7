/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One vfu device as a vfio-user-pci `-device` JSON object, both ways. */
#include <string.h>
#include <json-glib/json-glib.h>

#include "vlv-private.h"

static gboolean name_char_ok(char c) {
        return g_ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
}

gboolean vlv_device_check(const VlvDevice *dev, GError **error) {
        size_t len;

        if (!dev || !dev->name || !*dev->name) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID, "a vfu device needs a name");
                return FALSE;
        }
        len = strlen(dev->name);
        if (len > VLV_NAME_MAX) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID, "device name '%.64s…' is longer than %d characters",
                            dev->name, VLV_NAME_MAX);
                return FALSE;
        }
        for (size_t i = 0; i < len; i++) {
                if (!name_char_ok(dev->name[i])) {
                        g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID,
                                    "device name '%s' has a character QEMU does not "
                                    "accept in an id; use letters, digits, '_', '.', '-'",
                                    dev->name);
                        return FALSE;
                }
        }
        if (!dev->socket_path || dev->socket_path[0] != '/') {
                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID,
                            "device '%s': the socket path must be absolute, got '%s'", dev->name,
                            dev->socket_path ? dev->socket_path : "");
                return FALSE;
        }
        len = strlen(dev->socket_path);
        if (len >= VLV_SUN_PATH_MAX) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID,
                            "device '%s': socket path is %zu bytes, a UNIX socket "
                            "path must be shorter than %d",
                            dev->name, len, VLV_SUN_PATH_MAX);
                return FALSE;
        }
        if (!g_utf8_validate(dev->socket_path, (gssize) len, NULL)) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID, "device '%s': the socket path is not valid UTF-8",
                            dev->name);
                return FALSE;
        }
        for (size_t i = 0; i < len; i++) {
                if ((unsigned char) dev->socket_path[i] < 0x20 || dev->socket_path[i] == 0x7f) {
                        g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID,
                                    "device '%s': the socket path contains a "
                                    "control character",
                                    dev->name);
                        return FALSE;
                }
        }
        return TRUE;
}

char *vlv_device_json(const VlvDevice *dev, const char *bus, const char *addr) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *id = g_strconcat(VLV_DEVICE_PREFIX, dev->name, NULL);

        /* Key order is part of the output (golden files, idempotence). */
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "driver");
        json_builder_add_string_value(b, VLV_DRIVER);
        json_builder_set_member_name(b, "id");
        json_builder_add_string_value(b, id);
        json_builder_set_member_name(b, "socket");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, "unix");
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, dev->socket_path);
        json_builder_end_object(b);
        json_builder_set_member_name(b, "bus");
        json_builder_add_string_value(b, bus);
        json_builder_set_member_name(b, "addr");
        json_builder_add_string_value(b, addr);
        json_builder_end_object(b);

        root = json_builder_get_root(b);
        json_generator_set_root(gen, root);
        return json_generator_to_data(gen, NULL);
}

static char *member_string(JsonObject *o, const char *name) {
        JsonNode *n = json_object_get_member(o, name);

        if (!n || JSON_NODE_TYPE(n) != JSON_NODE_VALUE || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return g_strdup(json_node_get_string(n));
}

gboolean vlv_arg_parse(const char *value, char **id, char **driver, char **socket_path, char **bus, char **addr) {
        g_autoptr(JsonParser) p = NULL;
        g_autofree char *the_id = NULL;
        JsonNode *root;
        JsonObject *o;

        /* Cheap filter first: most foreign arguments are not JSON. */
        if (!value || value[0] != '{' || !strstr(value, "\"vfu"))
                return FALSE;
        p = json_parser_new_immutable();
        if (!json_parser_load_from_data(p, value, -1, NULL))
                return FALSE;
        root = json_parser_get_root(p);
        if (!root || JSON_NODE_TYPE(root) != JSON_NODE_OBJECT)
                return FALSE;
        o = json_node_get_object(root);
        the_id = member_string(o, "id");
        if (!the_id || (!g_str_has_prefix(the_id, VLV_DEVICE_PREFIX) && !g_str_has_prefix(the_id, VLV_CTRL_PREFIX)))
                return FALSE;

        if (driver)
                *driver = member_string(o, "driver");
        if (socket_path) {
                JsonNode *s = json_object_get_member(o, "socket");

                *socket_path = NULL;
                if (s && JSON_NODE_TYPE(s) == JSON_NODE_OBJECT)
                        *socket_path = member_string(json_node_get_object(s), "path");
        }
        if (bus)
                *bus = member_string(o, "bus");
        if (addr)
                *addr = member_string(o, "addr");
        if (id)
                *id = g_steal_pointer(&the_id);
        return TRUE;
}
