/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the helpers vfud, vfud-worker and vfuctl share: size, MAC
 * and name parsing, atomic file writes, the worker control protocol's
 * framing with fd passing, and the metrics expositions.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ctl-proto.h"
#include "common/metrics.h"
#include "common/util.h"

static GHashTable *stats_of(const char *const *keys, const uint64_t *values, size_t n) {
        GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);

        for (size_t i = 0; i < n; i++)
                g_hash_table_replace(h, (char *) keys[i], g_memdup2(&values[i], sizeof(uint64_t)));
        return h;
}

/* Both formats: families, _total, the summary, the fallback, label escaping, # EOF. */
static void test_metrics(void **state) {
        static const char *const nkeys[] = { "vfio_user.messages", "write_bytes", "latency_total_ns", "io_commands",
                                             "latency_avg_us", "new_counter" };
        static const uint64_t nvals[] = { 7, 4096, 1500000000, 3, 500000, 9 };
        g_autoptr(GHashTable) ns = stats_of(nkeys, nvals, G_N_ELEMENTS(nkeys));
        MetricsDevice devs[] = {
                { .name = "d1", .vm = "v\"1\\\n", .type = "nvme", .state = "connected", .connected = true,
                  .restarts = 2, .stats = ns },
                { .name = "d2", .vm = "", .type = "virtio-net", .state = "idle", .stats = NULL },
        };
        g_autofree char *om = metrics_render(devs, G_N_ELEMENTS(devs), METRICS_OPENMETRICS);
        g_autofree char *prom = metrics_render(devs, G_N_ELEMENTS(devs), METRICS_PROMETHEUS);
        g_autofree char *none = metrics_render(NULL, 0, METRICS_OPENMETRICS);
        const char *l1 = "{device=\"d1\",vm=\"v\\\"1\\\\\\n\",type=\"nvme\"}";
        g_autofree char *want = NULL;

        assert_true(g_str_has_suffix(om, "\n# EOF\n"));
        assert_non_null(strstr(om, "# TYPE vfu_nvme_write_bytes counter\n"));
        want = g_strdup_printf("vfu_nvme_write_bytes_total%s 4096\n", l1);
        assert_non_null(strstr(om, want));
        assert_non_null(strstr(prom, "# TYPE vfu_nvme_write_bytes_total counter\n"));
        assert_non_null(strstr(prom, want));
        assert_null(strstr(prom, "# EOF"));
        g_free(want);
        want = g_strdup_printf("vfu_nvme_io_latency_seconds_sum%s 1.5\nvfu_nvme_io_latency_seconds_count%s 3\n", l1, l1);
        assert_non_null(strstr(om, want));
        assert_non_null(strstr(om, "# TYPE vfu_nvme_io_latency_seconds summary\n"));
        g_free(want);
        want = g_strdup_printf("vfu_vfio_user_messages_total%s 7\n", l1);
        assert_non_null(strstr(om, want));
        /* A statistic without a metric of its own; one covered by another is not repeated. */
        assert_non_null(strstr(om, "vfu_device_statistic{device=\"d1\",vm=\"v\\\"1\\\\\\n\",type=\"nvme\","
                                   "statistic=\"new_counter\"} 9\n"));
        assert_null(strstr(om, "latency_avg"));
        assert_null(strstr(om, "statistic=\"io_commands\""));
        assert_non_null(strstr(om, "vfu_device_state{device=\"d2\",vm=\"\",type=\"virtio-net\",state=\"idle\"} 1\n"));
        assert_non_null(strstr(om, "vfu_device_connected{device=\"d2\",vm=\"\",type=\"virtio-net\"} 0\n"));
        assert_non_null(strstr(prom, "vfu_device_restarts_total{device=\"d2\",vm=\"\",type=\"virtio-net\"} 0\n"));
        /* No family without a sample: no virtio-net counters, d2 has no statistics. */
        assert_null(strstr(om, "vfu_virtio_net"));
        assert_string_equal(none, "# EOF\n");
}

/* Latency histograms: buckets by bound (not by key order), +Inf from the count, seconds exactly, op label. */
static void test_metrics_histogram(void **state) {
        static const char *const keys[] = { "latency_ns.read.le_1000000000", "latency_ns.read.le_5000",
                                            "latency_ns.read.le_20000", "latency_ns.read.count",
                                            "latency_ns.read.sum", "latency_ns.read.le_x",
                                            "latency_ns.write.le_5000", "latency_ns.write.count" };
        static const uint64_t vals[] = { 4, 1, 3, 5, 2500000000, 77, 9, 9 };
        g_autoptr(GHashTable) st = stats_of(keys, vals, G_N_ELEMENTS(keys));
        MetricsDevice devs[] = {
                { .name = "b", .vm = "", .type = "virtio-blk", .state = "connected", .stats = st },
                { .name = "n", .vm = "", .type = "virtio-net", .state = "connected", .stats = st },
        };
        g_autofree char *om = metrics_render(devs, G_N_ELEMENTS(devs), METRICS_OPENMETRICS);
        g_autofree char *prom = metrics_render(devs, G_N_ELEMENTS(devs), METRICS_PROMETHEUS);
        const char *f = "vfu_virtio_blk_request_latency_seconds";
        const char *l = "{device=\"b\",vm=\"\",type=\"virtio-blk\",op=\"read\"";
        g_autofree char *want = g_strdup_printf(
                "# TYPE %s histogram\n# HELP %s virtio-blk request latency by operation, taken to completed\n"
                "%s_bucket%s,le=\"0.000005\"} 1\n%s_bucket%s,le=\"0.00002\"} 3\n"
                "%s_bucket%s,le=\"1.0\"} 4\n%s_bucket%s,le=\"+Inf\"} 5\n"
                "%s_count%s} 5\n%s_sum%s} 2.5\n",
                f, f, f, l, f, l, f, l, f, l, f, l, f, l);

        assert_non_null(strstr(om, want));
        assert_non_null(strstr(prom, strstr(want, "vfu_virtio_blk_request_latency_seconds_bucket")));
        assert_non_null(strstr(prom, "# TYPE vfu_virtio_blk_request_latency_seconds histogram\n"));
        /* write has no sum: no histogram; no fallback for any of them, nor for another type's. */
        assert_null(strstr(om, "op=\"write\""));
        assert_null(strstr(om, "type=\"virtio-blk\",statistic="));
        assert_null(strstr(om, "type=\"virtio-net\",op="));
        assert_non_null(strstr(om, "type=\"virtio-net\",statistic=\"latency_ns_read_count\"} 5\n"));
}

static void test_parse_size(void **state) {
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "4096", 4096 }, { "0", 0 }, { "1K", 1024 }, { "10G", 10ull << 30 }, { "512M", 512ull << 20 },
                { "10GiB", 10ull << 30 }, { "10gb", 10ull << 30 }, { "1.5K", 1536 }, { "2T", 2ull << 40 },
                { "7B", 7 }, { "15E", 15ull << 60 },
        };
        static const char *const bad[] = {
                "", "G", "10Q", "-1", "1.2.3", "10 G", "18446744073709551616", "16E", "1KK", "0x10", "1e3",
        };
        for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
                g_autoptr(GError) error = NULL;
                uint64_t v = 1;

                assert_true(util_parse_size(good[i].s, &v, &error));
                assert_int_equal(v, good[i].v);
        }
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;
                uint64_t v = 0;

                assert_false(util_parse_size(bad[i], &v, &error));
                assert_non_null(error);
                assert_non_null(strstr(error->message, bad[i][0] ? bad[i] : "size"));
        }
}

static void test_format_size(void **state) {
        g_autofree char *a = util_format_size(10ull << 30), *b = util_format_size(1000), *c = util_format_size(1536);

        assert_string_equal(a, "10.0G");
        assert_string_equal(b, "1000B");
        assert_string_equal(c, "1.5K");
}

static void test_parse_mac(void **state) {
        uint8_t mac[6];
        g_autofree char *s = NULL;
        static const char *const bad[] = {
                "", "52:54:00:12:34", "52:54:00:12:34:56:78", "52-54-00-12-34-56", "5254.0012.3456",
                "52:54:00:12:34:5g", " 52:54:00:12:34:56", "01:00:5e:00:00:01", "00:00:00:00:00:00",
        };

        assert_true(util_parse_mac("52:54:00:AB:cd:EF", mac, NULL));
        s = util_format_mac(mac);
        assert_string_equal(s, "52:54:00:ab:cd:ef");
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;

                assert_false(util_parse_mac(bad[i], mac, &error));
                assert_non_null(error);
        }
}

static void test_names(void **state) {
        char long_name[UTIL_NAME_MAX + 2];

        assert_true(util_name_is_valid("a"));
        assert_true(util_name_is_valid("vm1-disk.0_X"));
        memset(long_name, 'x', sizeof(long_name));
        long_name[UTIL_NAME_MAX] = '\0';
        assert_true(util_name_is_valid(long_name));
        long_name[UTIL_NAME_MAX] = 'x';
        long_name[UTIL_NAME_MAX + 1] = '\0';
        assert_false(util_name_is_valid(long_name));
        assert_false(util_name_is_valid(""));
        assert_false(util_name_is_valid(NULL));
        assert_false(util_name_is_valid("-a"));
        assert_false(util_name_is_valid(".a"));
        assert_false(util_name_is_valid("a/b"));
        assert_false(util_name_is_valid("a b"));
        assert_false(util_name_is_valid("ä"));

        assert_true(util_ifname_is_valid("tap0"));
        assert_true(util_ifname_is_valid("123456789012345"));
        assert_false(util_ifname_is_valid("1234567890123456"));
        assert_false(util_ifname_is_valid("a/b"));
        assert_false(util_ifname_is_valid("a:b"));
        assert_false(util_ifname_is_valid(".."));
        assert_false(util_ifname_is_valid(""));
}

static void test_write_atomic(void **state) {
        g_autofree char *dir = g_dir_make_tmp("vfud-unit-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, "f.json", NULL);
        g_autofree char *data = NULL;
        struct stat st;
        GDir *d;

        assert_int_equal(util_write_file_atomic(path, "one", 3, 0600), 0);
        assert_int_equal(util_write_file_atomic(path, "second", 6, 0600), 0);
        assert_true(g_file_get_contents(path, &data, NULL, NULL));
        assert_string_equal(data, "second");
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        d = g_dir_open(dir, 0, NULL);
        assert_string_equal(g_dir_read_name(d), "f.json");
        assert_null(g_dir_read_name(d));        /* no temporary file left */
        g_dir_close(d);
        assert_int_equal(util_write_file_atomic("/nonexistent-dir/x", "x", 1, 0600), -ENOENT);
        unlink(path);
        rmdir(dir);
}

static JsonNode *parse(const char *s) {
        return json_from_string(s, NULL);
}

static void test_ctl_framing(void **state) {
        int sv[2], pipefd[2];
        CtlReader r;
        JsonNode *msg = NULL;
        GArray *fds = NULL;
        g_autoptr(JsonNode) req = NULL;
        const char *names[] = { "ns2", NULL };
        char c = 0;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        ctl_reader_init(&r);

        /* A request with an fd: the fd arrives with it, under its name's position. */
        req = ctl_request_new(7, "namespace-add", parse("{\"nsid\": 2}"), names);
        assert_int_equal(ctl_send(sv[0], req, &pipefd[1], 1), 0);
        close(pipefd[1]);
        assert_true(ctl_reader_fill(&r, sv[1]) > 0);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), 1);
        assert_int_equal(json_object_get_int_member(json_node_get_object(msg), "id"), 7);
        assert_string_equal(json_object_get_string_member(json_node_get_object(msg), "method"), "namespace-add");
        assert_int_equal(fds->len, 1);
        assert_int_equal(write(g_array_index(fds, int, 0), "z", 1), 1);
        assert_int_equal(read(pipefd[0], &c, 1), 1);
        assert_int_equal(c, 'z');
        assert_true(fcntl(g_array_index(fds, int, 0), F_GETFD) & FD_CLOEXEC);
        ctl_fds_free(fds);
        json_node_unref(msg);

        /* Two messages in one write, then a split one. */
        assert_int_equal(write(sv[0], "{\"a\":1}\n{\"b\":2}\n{\"c\"", 20), 20);
        assert_true(ctl_reader_fill(&r, sv[1]) > 0);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), 1);
        ctl_fds_free(fds);
        json_node_unref(msg);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), 1);
        assert_true(json_object_has_member(json_node_get_object(msg), "b"));
        ctl_fds_free(fds);
        json_node_unref(msg);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), 0);
        assert_int_equal(write(sv[0], ":3}\n", 4), 4);
        assert_true(ctl_reader_fill(&r, sv[1]) > 0);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), 1);
        assert_true(json_object_has_member(json_node_get_object(msg), "c"));
        ctl_fds_free(fds);
        json_node_unref(msg);

        /* Not an object; an fd name without an fd. */
        assert_int_equal(write(sv[0], "[1]\nnot json\n{\"fds\":[\"x\"]}\n", 27), 27);
        assert_true(ctl_reader_fill(&r, sv[1]) > 0);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), -EBADMSG);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), -EBADMSG);
        assert_int_equal(ctl_reader_next(&r, &msg, &fds), -EBADMSG);
        assert_int_equal(ctl_reader_fill(&r, sv[1]), -EAGAIN);

        /* The peer closing is end of stream. */
        close(sv[0]);
        assert_int_equal(ctl_reader_fill(&r, sv[1]), 0);
        ctl_reader_clear(&r);
        close(sv[1]);
        close(pipefd[0]);
}

static void test_ctl_oversize(void **state) {
        int sv[2];
        CtlReader r;
        g_autofree char *junk = g_malloc(65536);
        int got = 0;
        size_t sent = 0;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
        memset(junk, 'x', 65536);
        ctl_reader_init(&r);
        /* A line longer than CTL_MAX_LINE without a newline is refused, not buffered forever. */
        while (sent <= CTL_MAX_LINE + 65536 && got != -EMSGSIZE) {
                ssize_t n = write(sv[0], junk, 65536);

                if (n > 0)
                        sent += (size_t) n;
                while ((got = ctl_reader_fill(&r, sv[1])) > 0)
                        ;
        }
        assert_int_equal(got, -EMSGSIZE);
        ctl_reader_clear(&r);
        close(sv[0]);
        close(sv[1]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_metrics),
                cmocka_unit_test(test_metrics_histogram),
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_format_size),
                cmocka_unit_test(test_parse_mac),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_write_atomic),
                cmocka_unit_test(test_ctl_framing),
                cmocka_unit_test(test_ctl_oversize),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
