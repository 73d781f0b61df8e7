/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the option normaliser of every device type, and then
 * the I/O limits' (device-limits.c, as CreateDevice runs them), fed what
 * CreateDevice's options can hold after bus_read_options() (an option the
 * type declares, with a string, an integer ≥ 0 or a boolean as its spec
 * says).  A normaliser must answer TRUE with an object or FALSE with one
 * MANAGER_ERROR, and never read past what it was given.
 *
 * Input: byte 0 picks the type; then records of one byte picking an option
 * (index into the type's specs, then its limit options) followed by its value: strings a length
 * byte and the bytes (cut at a NUL and made UTF-8, as D-Bus strings are), integers 8 bytes
 * little-endian with the sign bit cleared, booleans one byte.  Paths point
 * nowhere useful: a normaliser only stats and opens them.
 */
#include <stdint.h>
#include <string.h>

#include "device-limits.h"
#include "device-type.h"

typedef struct Input {
        const uint8_t *data;
        size_t len, pos;
} Input;

static bool take(Input *in, void *buf, size_t n) {
        if (in->len - in->pos < n)
                return false;
        memcpy(buf, in->data + in->pos, n);
        in->pos += n;
        return true;
}

static size_t n_options(const DeviceType *t) {
        size_t n = 0;

        while (t->options[n].name)
                n++;
        return n;
}

/* The next option's value, or NULL at the end of the input. */
static JsonNode *take_value(Input *in, DeviceOptionKind kind) {
        JsonNode *v = json_node_new(JSON_NODE_VALUE);
        uint8_t b;
        uint64_t u;

        switch (kind) {
        case DEVICE_OPTION_STRING: {
                char s[256];

                if (!take(in, &b, 1) || !take(in, s, b))
                        break;
                s[b] = '\0';
                if (g_utf8_validate(s, -1, NULL))
                        json_node_set_string(v, s);
                else {
                        g_autofree char *valid = g_utf8_make_valid(s, -1);

                        json_node_set_string(v, valid);
                }
                return v;
        }
        case DEVICE_OPTION_UINT:
                if (!take(in, &u, sizeof(u)))
                        break;
                json_node_set_int(v, (int64_t) (GUINT64_FROM_LE(u) & INT64_MAX));
                return v;
        case DEVICE_OPTION_BOOL:
                if (!take(in, &b, 1))
                        break;
                json_node_set_boolean(v, b & 1);
                return v;
        }
        json_node_unref(v);
        return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static char images_dir[] = "/nonexistent/vfud-fuzz/images";
        Manager m = { .images_dir = images_dir };
        g_autoptr(GHashTable) opts = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                                           (GDestroyNotify) json_node_unref);
        g_autoptr(JsonObject) out = json_object_new();
        g_autoptr(GError) error = NULL;
        Input in = { data, size, 0 };
        const DeviceType *t;
        size_t n_types = 0, n;
        uint8_t b;

        while (device_types[n_types])
                n_types++;
        if (!take(&in, &b, 1))
                return 0;
        t = device_types[b % n_types];
        n = n_options(t);
        while (take(&in, &b, 1)) {
                size_t i = b % (n + device_limits_n_options(t));
                const DeviceOptionSpec *spec = i < n ? &t->options[i] : device_limits_option_at(t, i - n);
                JsonNode *v = take_value(&in, spec->kind);

                if (!v)
                        break;
                g_hash_table_replace(opts, (char *) spec->name, v);
        }
        if (t->normalize(&m, "fuzz", opts, out, &error) && device_limits_normalize(t, opts, out, &error)) {
                if (error)
                        abort();
        } else if (!error || error->domain != MANAGER_ERROR || !error->message ||
                   !g_utf8_validate(error->message, -1, NULL))
                abort();
        return 0;
}
