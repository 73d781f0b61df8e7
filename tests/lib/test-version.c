/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VERSION: negotiation, the reply's size and content, and malformed offers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <json-glib/json-glib.h>

#include "harness.h"

static int version(Pair *p, uint16_t major, const char *json, size_t jlen, char *reply, size_t cap, size_t *rlen) {
        struct vu_version v = { major, 0 };

        return pair_xfer(p, VU_CMD_VERSION, 0, &v, sizeof(v), json, jlen, NULL, 0, reply, cap, rlen);
}

/* The reply's capabilities object, parsed (asserts it is well-formed). */
static JsonObject *reply_caps(JsonParser *parser, const char *reply, size_t rlen) {
        const char *json = reply + sizeof(struct vu_version);
        struct vu_version v;
        JsonNode *root, *caps;

        memcpy(&v, reply, sizeof(v));
        assert_int_equal(v.major, 0);
        assert_int_equal(v.minor, 0);
        assert_int_equal(json[rlen - sizeof(v) - 1], '\0');
        assert_int_equal(strlen(json), rlen - sizeof(v) - 1);
        assert_true(json_parser_load_from_data(parser, json, -1, NULL));
        root = json_parser_get_root(parser);
        assert_true(JSON_NODE_HOLDS_OBJECT(root));
        caps = json_object_get_member(json_node_get_object(root), "capabilities");
        return caps ? json_node_get_object(caps) : NULL;
}

static void test_qemu_11_1_3(void **state) {
        static const char offer[] =
                "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,\"migration\":{\"pgsize\":4096}}}";
        Pair *p = pair_new(false, false);
        g_autoptr(JsonParser) parser = json_parser_new();
        char reply[512];
        size_t rlen;
        JsonObject *caps;

        assert_int_equal(version(p, 0, offer, sizeof(offer), reply, sizeof(reply), &rlen), 0);
        /* QEMU receives the reply into a buffer the size of its request. */
        assert_true(rlen <= sizeof(struct vu_version) + sizeof(offer));
        caps = reply_caps(parser, reply, rlen);
        assert_non_null(caps);
        assert_int_equal(json_object_get_int_member(caps, "max_msg_fds"), 16);
        assert_int_equal(json_object_get_int_member(caps, "pgsizes"), 4096);
        assert_int_equal(json_object_get_int_member(caps, "max_data_xfer_size"), 1048576);
        assert_false(json_object_has_member(caps, "write_multiple"));
        assert_false(json_object_has_member(caps, "twin_socket"));
        /* Compact: no spaces anywhere. */
        assert_null(strchr(reply + 4, ' '));
        pair_free(p);
}

static void test_qemu_source_offer(void **state) {
        static const char offer[] =
                "{\"capabilities\": {\"max_msg_fds\": 16, \"max_data_xfer_size\": 1048576, \"pgsizes\": 4096,"
                " \"max_dma_maps\": 65535, \"write_multiple\": true,"
                " \"migration\": {\"pgsize\": 4096, \"max_bitmap_size\": 268435456}}, \"future\": [1, 2]}";
        Pair *p = pair_new(false, false);
        g_autoptr(JsonParser) parser = json_parser_new();
        char reply[512];
        size_t rlen;
        JsonObject *caps;

        assert_int_equal(version(p, 0, offer, sizeof(offer), reply, sizeof(reply), &rlen), 0);
        caps = reply_caps(parser, reply, rlen);
        /* Room for everything: max_dma_maps is there too, what this host allows. */
        assert_int_equal(json_object_get_int_member(caps, "max_dma_maps"), vu_dma_host_limit());
        assert_false(json_object_has_member(caps, "migration"));        /* no migration ops */
        pair_free(p);
}

static void test_migration_cap(void **state) {
        static const char offer[] =
                "{\"capabilities\":{\"max_msg_fds\":16,\"max_data_xfer_size\":1048576,\"pgsizes\":4096,"
                "\"max_dma_maps\":65535,\"migration\":{\"pgsize\":4096,\"max_bitmap_size\":1024}}}";
        Pair *p = pair_new(true, false);
        g_autoptr(JsonParser) parser = json_parser_new();
        char reply[512];
        size_t rlen;
        JsonObject *caps;

        assert_int_equal(version(p, 0, offer, sizeof(offer), reply, sizeof(reply), &rlen), 0);
        caps = reply_caps(parser, reply, rlen);
        assert_true(json_object_has_member(caps, "migration"));
        assert_int_equal(json_object_get_int_member(json_object_get_object_member(caps, "migration"), "pgsize"),
                         4096);
        pair_free(p);
}

/* Smaller offers get smaller replies, down to an empty object. */
static void test_reply_never_larger(void **state) {
        static const char *offers[] = {
                "{}",
                "{\"capabilities\":{}}",
                "{\"capabilities\":{\"pgsizes\":4096}}",
                "{\"capabilities\":{\"max_msg_fds\":1,\"pgsizes\":4096}}",
                "{\"capabilities\":{\"max_msg_fds\":1,\"max_data_xfer_size\":4096,\"pgsizes\":4096}}",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(offers); i++) {
                Pair *p = pair_new(true, false);
                g_autoptr(JsonParser) parser = json_parser_new();
                size_t olen = strlen(offers[i]) + 1, rlen;
                char reply[512];

                assert_int_equal(version(p, 0, offers[i], olen, reply, sizeof(reply), &rlen), 0);
                assert_true(rlen <= sizeof(struct vu_version) + olen);
                reply_caps(parser, reply, rlen);
                pair_free(p);
        }
}

static void test_bad_offers(void **state) {
        static const struct {
                uint16_t major;
                const char *json;
        } bad[] = {
                { 1, "{}" },
                { 0, "[]" },
                { 0, "\"capabilities\"" },
                { 0, "{\"capabilities\":[]}" },
                { 0, "{\"capabilities\":{\"max_msg_fds\":\"8\"}}" },
                { 0, "{\"capabilities\":{\"max_msg_fds\":2000}}" },
                { 0, "{\"capabilities\":{\"max_msg_fds\":-1}}" },
                { 0, "{\"capabilities\":{\"max_data_xfer_size\":0}}" },
                { 0, "{\"capabilities\":{\"max_data_xfer_size\":1.5}}" },
                { 0, "{\"capabilities\":{\"pgsizes\":0}}" },
                { 0, "{\"capabilities\":{\"write_multiple\":1}}" },
                { 0, "{\"capabilities\":{\"twin_socket\":true}}" },
                { 0, "{\"capabilities\":{\"migration\":4096}}" },
                { 0, "{\"capabilities\":{\"migration\":{\"pgsize\":1000}}}" },
                { 0, "{\"capabilities\":{\"migration\":{\"pgsize\":12288}}}" },
                { 0, "{\"capabilities\":" },
                { 0, "{} trailing" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                Pair *p = pair_new(false, false);

                assert_int_equal(version(p, bad[i].major, bad[i].json, strlen(bad[i].json) + 1, NULL, 0, NULL),
                                 -EINVAL);
                /* Still not negotiated: a good offer now works. */
                assert_int_equal(version(p, 0, "{}", 3, NULL, 0, NULL), 0);
                pair_free(p);
        }
}

static void test_bad_framing(void **state) {
        Pair *p = pair_new(false, false);
        struct vu_device_info di = { .argsz = sizeof(di) };
        int fd = dup(0);

        /* Not NUL-terminated, a NUL inside, too short. */
        assert_int_equal(version(p, 0, "{}x", 3, NULL, 0, NULL), -EINVAL);
        assert_int_equal(version(p, 0, "{}\0\0", 4, NULL, 0, NULL), -EINVAL);
        assert_int_equal(version(p, 0, "{", 2, NULL, 0, NULL), -EINVAL);
        assert_int_equal(version(p, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        /* No fds with VERSION. */
        {
                struct vu_version v = { 0, 0 };
                int before = count_open_fds();

                assert_int_equal(pair_xfer(p, VU_CMD_VERSION, 0, &v, sizeof(v), "{}", 3, &fd, 1, NULL, 0, NULL),
                                 -EINVAL);
                assert_int_equal(count_open_fds(), before);     /* the server closed its copy */
        }
        /* Anything before VERSION is refused. */
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        assert_int_equal(version(p, 0, "{}", 3, NULL, 0, NULL), 0);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), NULL, 0, NULL, 0, NULL, 0, NULL),
                         0);
        /* And VERSION only once. */
        assert_int_equal(version(p, 0, "{}", 3, NULL, 0, NULL), -EINVAL);
        close(fd);
        pair_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_qemu_11_1_3),
                cmocka_unit_test(test_qemu_source_offer),
                cmocka_unit_test(test_migration_cap),
                cmocka_unit_test(test_reply_never_larger),
                cmocka_unit_test(test_bad_offers),
                cmocka_unit_test(test_bad_framing),
        };

        return cmocka_run_group_tests_name("version", tests, NULL, NULL);
}
