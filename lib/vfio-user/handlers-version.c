/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VERSION (vfio-user.rst "VFIO_USER_VERSION"): protocol 0.0 and a compact
 * capabilities object.  Our reply is never larger than the request, because
 * QEMU receives it into a buffer of the request's size.
 */
#include <errno.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "server-internal.h"

/* An optional integer member within [min, max].  0 (absent or valid) or -EINVAL. */
static int get_int(JsonObject *o, const char *name, int64_t min, int64_t max, int64_t *out) {
        JsonNode *n = json_object_get_member(o, name);
        int64_t v;

        if (!n)
                return 0;
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return -EINVAL;
        v = json_node_get_int(n);
        if (v < min || v > max)
                return -EINVAL;
        *out = v;
        return 0;
}

static int parse_caps(VuServer *s, const char *json, size_t len) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(GError) err = NULL;
        JsonObject *root, *caps, *mig;
        JsonNode *n;
        int64_t fds = 1, xfer = VU_MAX_DATA_XFER, pgsizes = VU_PGSIZE, maps = 0, pgsize = VU_PGSIZE, bm = 0;

        if (!json_parser_load_from_data(p, json, (gssize) len, &err)) {
                g_debug("%s: VERSION capabilities are not JSON: %s", s->name, err->message);
                return -EINVAL;
        }
        n = json_parser_get_root(p);
        if (!n || !JSON_NODE_HOLDS_OBJECT(n))
                return -EINVAL;
        root = json_node_get_object(n);
        n = json_object_get_member(root, "capabilities");
        if (n) {
                if (!JSON_NODE_HOLDS_OBJECT(n))
                        return -EINVAL;
                caps = json_node_get_object(n);
                if (get_int(caps, "max_msg_fds", 0, 1024, &fds) < 0 ||
                    get_int(caps, "max_data_xfer_size", 1, UINT32_MAX, &xfer) < 0 ||
                    get_int(caps, "pgsizes", 1, INT64_MAX, &pgsizes) < 0 ||
                    get_int(caps, "max_dma_maps", 0, INT64_MAX, &maps) < 0)
                        return -EINVAL;
                n = json_object_get_member(caps, "write_multiple");
                if (n && (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN))
                        return -EINVAL;
                n = json_object_get_member(caps, "twin_socket");
                if (n && !JSON_NODE_HOLDS_OBJECT(n))
                        return -EINVAL;
                n = json_object_get_member(caps, "migration");
                if (n) {
                        if (!JSON_NODE_HOLDS_OBJECT(n))
                                return -EINVAL;
                        mig = json_node_get_object(n);
                        if (get_int(mig, "pgsize", VU_PGSIZE, INT64_MAX, &pgsize) < 0 ||
                            (pgsize & (pgsize - 1)) ||
                            get_int(mig, "max_bitmap_size", 0, INT64_MAX, &bm) < 0)
                                return -EINVAL;
                }
        }
        s->client_max_fds = (uint32_t) fds;
        s->client_max_xfer = (uint32_t) xfer;
        s->mig.pgsize = (uint64_t) pgsize;
        return 0;
}

/* Our capabilities, from the fullest to the smallest; the first that fits is sent. */
static char *caps_json(const VuServer *s, unsigned level) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) g = json_generator_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_object(b);
        if (level < 5) {
                json_builder_set_member_name(b, "capabilities");
                json_builder_begin_object(b);
                if (level < 4) {
                        json_builder_set_member_name(b, "max_msg_fds");
                        json_builder_add_int_value(b, VU_MAX_MSG_FDS);
                }
                if (level < 3) {
                        json_builder_set_member_name(b, "max_data_xfer_size");
                        json_builder_add_int_value(b, VU_MAX_DATA_XFER);
                }
                json_builder_set_member_name(b, "pgsizes");
                json_builder_add_int_value(b, VU_PGSIZE);
                if (level < 1) {
                        json_builder_set_member_name(b, "max_dma_maps");
                        json_builder_add_int_value(b, s->max_dma_maps);
                }
                if (level < 2 && s->ops->migration) {
                        json_builder_set_member_name(b, "migration");
                        json_builder_begin_object(b);
                        json_builder_set_member_name(b, "pgsize");
                        json_builder_add_int_value(b, VU_PGSIZE);
                        json_builder_end_object(b);
                }
                json_builder_end_object(b);
        }
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        json_generator_set_root(g, root);
        return json_generator_to_data(g, NULL);
}

int vu_handle_version(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_version v;
        const char *json = (const char *) m->body + sizeof(v);
        size_t jlen = m->len - sizeof(v);
        struct vu_version *out;
        int ret;

        memcpy(&v, m->body, sizeof(v));
        if (v.major != VU_MAJOR) {
                g_debug("%s: client speaks protocol %u.%u, we speak %u.%u", s->name, v.major, v.minor,
                        VU_MAJOR, VU_MINOR);
                return -EINVAL;
        }
        /* NUL-terminated, and no NUL before the end. */
        if (json[jlen - 1] != '\0' || strlen(json) != jlen - 1)
                return -EINVAL;
        ret = parse_caps(s, json, jlen - 1);
        if (ret < 0)
                return ret;

        for (unsigned level = 0;; level++) {
                g_autofree char *caps = caps_json(s, level);
                size_t clen = strlen(caps) + 1;

                if (sizeof(v) + clen <= m->len || level >= 5) {
                        out = vu_reply_append(s, r, sizeof(v) + clen);
                        out->major = VU_MAJOR;
                        out->minor = VU_MINOR;
                        memcpy(out->caps, caps, clen);
                        break;
                }
        }
        s->negotiated = true;
        g_debug("%s: negotiated 0.0 (client max_msg_fds %u, max_data_xfer_size %u)", s->name,
                s->client_max_fds, s->client_max_xfer);
        return 0;
}
