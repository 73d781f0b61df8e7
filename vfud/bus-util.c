/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "bus-util.h"
#include "device-limits.h"
#include "device-spawn.h"

/* Options every type takes; CreateDevice consumes them before the type normalizes the rest. */
static const DeviceOptionSpec common_options[] = {
        { "incoming", DEVICE_OPTION_BOOL, "the device arrives by live migration: a VMM will load its state" },
        { "migrated-from", DEVICE_OPTION_STRING, "the device arrived by cold migration from this host" },
        {}
};

static const DeviceOptionSpec *spec_find(const DeviceType *t, const char *name) {
        for (size_t i = 0; common_options[i].name; i++)
                if (strcmp(common_options[i].name, name) == 0)
                        return &common_options[i];
        for (size_t i = 0; t->options[i].name; i++)
                if (strcmp(t->options[i].name, name) == 0)
                        return &t->options[i];
        for (size_t i = 0; worker_unit_options[i].name; i++)
                if (strcmp(worker_unit_options[i].name, name) == 0)
                        return &worker_unit_options[i];
        return device_limits_option(t, name);
}

static gboolean bad_option(const DeviceType *t, const char *name, const char *why, GError **error) {
        g_autofree char *known = device_type_option_list(t);

        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                    "option '%s' %s for %s devices (options: %s)", name, why, t->name, known);
        return FALSE;
}

/* An integer of any D-Bus width as int64: 1, 0 for another type, -ERANGE above INT64_MAX, -errno. */
static int read_integer(sd_bus_message *m, char type, int64_t *ret) {
        union {
                uint8_t y;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
        } v;
        int r;

        if (!strchr("yqnuitx", type))
                return 0;
        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        switch (type) {
        case 'y': *ret = v.y; break;
        case 'n': *ret = v.n; break;
        case 'q': *ret = v.q; break;
        case 'i': *ret = v.i; break;
        case 'u': *ret = v.u; break;
        case 'x': *ret = v.x; break;
        default:
                if (v.t > INT64_MAX)
                        return -ERANGE;
                *ret = (int64_t) v.t;
        }
        return 1;
}

/* Read the variant's value: integers of any width, strings, booleans. */
static int read_variant(sd_bus_message *m, const char *contents, JsonNode **ret) {
        JsonNode *n = json_node_new(JSON_NODE_VALUE);
        int64_t i;
        int r = 0;

        switch (contents[0]) {
        case 's':
        case 'o': {
                const char *s;

                r = sd_bus_message_read_basic(m, contents[0], &s);
                if (r >= 0)
                        json_node_set_string(n, s);
                break;
        }
        case 'b': {
                int b;

                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r >= 0)
                        json_node_set_boolean(n, b);
                break;
        }
        default:
                r = read_integer(m, contents[0], &i);
                if (r > 0)
                        json_node_set_int(n, i);
                else if (r == 0)
                        r = -EMEDIUMTYPE;
        }
        if (r < 0) {
                json_node_unref(n);
                return r;
        }
        *ret = n;
        return 0;
}

gboolean bus_read_options(sd_bus_message *m, const DeviceType *t, GHashTable **ret, GError **error) {
        g_autoptr(GHashTable) opts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                           (GDestroyNotify) json_node_unref);
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                goto fail;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *contents;
                const DeviceOptionSpec *spec;
                JsonNode *value = NULL;
                char type;

                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        goto fail;
                spec = spec_find(t, name);
                if (!spec)
                        return bad_option(t, name, "is unknown", error);
                if (g_hash_table_contains(opts, name))
                        return bad_option(t, name, "is given twice", error);
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        goto fail;
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        goto fail;
                r = read_variant(m, contents, &value);
                if (r == -EMEDIUMTYPE || r == -ERANGE)
                        return bad_option(t, name, r == -ERANGE ? "is out of range" : "has an unsupported D-Bus type", error);
                if (r < 0)
                        goto fail;
                if ((spec->kind == DEVICE_OPTION_STRING && json_node_get_value_type(value) != G_TYPE_STRING) ||
                    (spec->kind == DEVICE_OPTION_BOOL && json_node_get_value_type(value) != G_TYPE_BOOLEAN) ||
                    (spec->kind == DEVICE_OPTION_UINT && (json_node_get_value_type(value) != G_TYPE_INT64 ||
                                                          json_node_get_int(value) < 0))) {
                        json_node_unref(value);
                        return bad_option(t, name,
                                          spec->kind == DEVICE_OPTION_STRING ? "must be a string (s)" :
                                          spec->kind == DEVICE_OPTION_BOOL ? "must be a boolean (b)" :
                                          "must be an unsigned integer (u or t)", error);
                }
                g_hash_table_insert(opts, g_strdup(name), value);
                r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        goto fail;
        }
        if (r < 0)
                goto fail;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                goto fail;
        *ret = g_steal_pointer(&opts);
        return TRUE;
fail:
        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                    "malformed options: expected a{sv} (%s)", g_strerror(-r));
        return FALSE;
}

static int append_value(sd_bus_message *m, JsonNode *n);

static int append_array(sd_bus_message *m, JsonArray *a) {
        guint len = json_array_get_length(a);
        JsonNode *first = len ? json_array_get_element(a, 0) : NULL;
        const char *sig = "s";
        int r;

        if (first && JSON_NODE_HOLDS_OBJECT(first))
                sig = "a{sv}";
        else if (first && JSON_NODE_HOLDS_VALUE(first) && json_node_get_value_type(first) == G_TYPE_INT64)
                sig = "t";
        {
                g_autofree char *asig = g_strconcat("a", sig, NULL);

                r = sd_bus_message_open_container(m, 'v', asig);
        }
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'a', sig);
        if (r < 0)
                return r;
        for (guint i = 0; i < len; i++) {
                JsonNode *e = json_array_get_element(a, i);

                if (strcmp(sig, "a{sv}") == 0 && JSON_NODE_HOLDS_OBJECT(e))
                        r = bus_append_json_object(m, json_node_get_object(e));
                else if (strcmp(sig, "t") == 0 && JSON_NODE_HOLDS_VALUE(e) &&
                         json_node_get_value_type(e) == G_TYPE_INT64)
                        r = sd_bus_message_append_basic(m, 't', &(uint64_t) { (uint64_t) json_node_get_int(e) });
                else if (strcmp(sig, "s") == 0 && JSON_NODE_HOLDS_VALUE(e) &&
                         json_node_get_value_type(e) == G_TYPE_STRING)
                        r = sd_bus_message_append_basic(m, 's', json_node_get_string(e));
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

static int append_value(sd_bus_message *m, JsonNode *n) {
        if (JSON_NODE_HOLDS_OBJECT(n)) {
                int r = sd_bus_message_open_container(m, 'v', "a{sv}");

                if (r < 0)
                        return r;
                r = bus_append_json_object(m, json_node_get_object(n));
                if (r < 0)
                        return r;
                return sd_bus_message_close_container(m);
        }
        if (JSON_NODE_HOLDS_ARRAY(n))
                return append_array(m, json_node_get_array(n));
        if (JSON_NODE_HOLDS_NULL(n))
                return sd_bus_message_append(m, "v", "s", "");
        switch (json_node_get_value_type(n)) {
        case G_TYPE_STRING:
                return sd_bus_message_append(m, "v", "s", json_node_get_string(n));
        case G_TYPE_BOOLEAN:
                return sd_bus_message_append(m, "v", "b", (int) json_node_get_boolean(n));
        case G_TYPE_DOUBLE:
                return sd_bus_message_append(m, "v", "d", json_node_get_double(n));
        default: {
                int64_t v = json_node_get_int(n);

                if (v < 0)
                        return sd_bus_message_append(m, "v", "x", v);
                return sd_bus_message_append(m, "v", "t", (uint64_t) v);
        }
        }
}

int bus_append_json_object(sd_bus_message *m, JsonObject *o) {
        g_autoptr(GList) members = json_object_get_members(o);
        int r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (GList *l = members; l; l = l->next) {
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                r = sd_bus_message_append_basic(m, 's', l->data);
                if (r < 0)
                        return r;
                r = append_value(m, json_object_get_member(o, l->data));
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(m);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(m);
}
