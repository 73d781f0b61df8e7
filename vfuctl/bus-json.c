/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Any D-Bus value as JSON, for --json output: dictionaries become objects,
 * other arrays and structures arrays, integers numbers.  Every key vfuctl
 * prints is snake_case (json_key); vfuctl(1) documents the convention.
 */
#include <errno.h>
#include <string.h>

#include "vfuctl.h"

char *json_key(const char *s) {
        GString *out = g_string_new(NULL);

        for (size_t i = 0; s[i]; i++) {
                if (g_ascii_isupper(s[i])) {
                        /* "WorkerPID" → "worker_pid": a run of capitals is one word. */
                        if (i > 0 && (!g_ascii_isupper(s[i - 1]) ||
                                      (s[i + 1] && g_ascii_islower(s[i + 1]))) && out->len &&
                            out->str[out->len - 1] != '_')
                                g_string_append_c(out, '_');
                        g_string_append_c(out, g_ascii_tolower(s[i]));
                } else if (g_ascii_islower(s[i]) || g_ascii_isdigit(s[i]))
                        g_string_append_c(out, s[i]);
                else if (out->len && out->str[out->len - 1] != '_')
                        /* "bytes-read", "vfio_user.connects": any separator is one '_' */
                        g_string_append_c(out, '_');
        }
        return g_string_free(out, FALSE);
}

JsonNode *json_snake_keys(JsonNode *n) {
        if (JSON_NODE_HOLDS_OBJECT(n)) {
                JsonObject *in = json_node_get_object(n), *out = json_object_new();
                g_autoptr(GList) members = json_object_get_members(in);
                JsonNode *ret = json_node_new(JSON_NODE_OBJECT);

                for (GList *l = members; l; l = l->next) {
                        g_autofree char *key = json_key(l->data);

                        json_object_set_member(out, key, json_snake_keys(json_object_get_member(in, l->data)));
                }
                json_node_take_object(ret, out);
                return ret;
        }
        if (JSON_NODE_HOLDS_ARRAY(n)) {
                JsonArray *in = json_node_get_array(n), *out = json_array_new();
                JsonNode *ret = json_node_new(JSON_NODE_ARRAY);

                for (guint i = 0; i < json_array_get_length(in); i++)
                        json_array_add_element(out, json_snake_keys(json_array_get_element(in, i)));
                json_node_take_array(ret, out);
                return ret;
        }
        return json_node_copy(n);
}

static int read_basic(sd_bus_message *m, char type, JsonNode **ret) {
        JsonNode *n = json_node_new(JSON_NODE_VALUE);
        union {
                uint8_t y;
                int b;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
                const char *s;
        } v;
        int r = sd_bus_message_read_basic(m, type, &v);

        if (r < 0) {
                json_node_unref(n);
                return r;
        }
        switch (type) {
        case 'y': json_node_set_int(n, v.y); break;
        case 'b': json_node_set_boolean(n, v.b); break;
        case 'n': json_node_set_int(n, v.n); break;
        case 'q': json_node_set_int(n, v.q); break;
        case 'i': json_node_set_int(n, v.i); break;
        case 'u': json_node_set_int(n, v.u); break;
        case 'x': json_node_set_int(n, v.x); break;
        case 't': json_node_set_int(n, (int64_t) v.t); break;
        case 'd': json_node_set_double(n, v.d); break;
        case 'h': json_node_set_int(n, v.i); break;
        default: json_node_set_string(n, v.s); break;
        }
        *ret = n;
        return 0;
}

int bus_read_json(sd_bus_message *m, JsonNode **ret) {
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r <= 0)
                return r < 0 ? r : -ENXIO;
        switch (type) {
        case 'v':
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        return r;
                r = bus_read_json(m, ret);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);
        case 'a':
                r = sd_bus_message_enter_container(m, 'a', contents);
                if (r < 0)
                        return r;
                if (contents[0] == '{') {
                        JsonObject *o = json_object_new();
                        g_autofree char *entry_sig = g_strndup(contents + 1, strlen(contents) - 2);

                        while ((r = sd_bus_message_enter_container(m, 'e', entry_sig)) > 0) {
                                JsonNode *k = NULL, *v = NULL;

                                r = bus_read_json(m, &k);
                                if (r >= 0)
                                        r = bus_read_json(m, &v);
                                if (r >= 0 && JSON_NODE_HOLDS_VALUE(k) && json_node_get_value_type(k) == G_TYPE_STRING)
                                        json_object_set_member(o, json_node_get_string(k), v);
                                else if (v)
                                        json_node_unref(v);
                                if (k)
                                        json_node_unref(k);
                                if (r < 0)
                                        break;
                                r = sd_bus_message_exit_container(m);
                                if (r < 0)
                                        break;
                        }
                        if (r < 0) {
                                json_object_unref(o);
                                return r;
                        }
                        *ret = json_node_new(JSON_NODE_OBJECT);
                        json_node_take_object(*ret, o);
                } else {
                        JsonArray *a = json_array_new();

                        while ((r = sd_bus_message_at_end(m, false)) == 0) {
                                JsonNode *e = NULL;

                                r = bus_read_json(m, &e);
                                if (r < 0)
                                        break;
                                json_array_add_element(a, e);
                        }
                        if (r < 0) {
                                json_array_unref(a);
                                return r;
                        }
                        *ret = json_node_new(JSON_NODE_ARRAY);
                        json_node_take_array(*ret, a);
                }
                return sd_bus_message_exit_container(m);
        case 'r': {
                JsonArray *a = json_array_new();

                r = sd_bus_message_enter_container(m, 'r', contents);
                while (r >= 0 && (r = sd_bus_message_at_end(m, false)) == 0) {
                        JsonNode *e = NULL;

                        r = bus_read_json(m, &e);
                        if (r >= 0)
                                json_array_add_element(a, e);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0) {
                        json_array_unref(a);
                        return r;
                }
                *ret = json_node_new(JSON_NODE_ARRAY);
                json_node_take_array(*ret, a);
                return 0;
        }
        default:
                return read_basic(m, type, ret);
        }
}
