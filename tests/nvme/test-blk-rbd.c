/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The RBD backend against a real single-node Ceph cluster started here
 * (tests/common/ceph-cluster: ceph-mon and ceph-osd on memstore, loopback,
 * a temporary directory, torn down at the end): image creation, data-verified
 * I/O, FUA, flush, write zeroes, discard, growth, the exclusive lock between
 * two clients, clones, what a new connection reads back.  Skipped (77)
 * without the Ceph daemons (./scripts/deps installs them).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <rados/librados.h>

#include "blk-done.h"
#include "block/blk.h"

#define MiB (1u << 20)
#define POOL "vfu"

static char *cluster_dir, *conf;

static int open_rbd(const char *image, uint64_t size, bool lock, BlkBackend **b) {
        BlkOpenOptions o = { .fd = -1, .size = size, .rbd_pool = POOL, .rbd_image = image,
                             .rbd_conf = conf, .rbd_lock = lock };
        *b = NULL;
        return blk_backend_open(&o, b);
}

static BlkBackend *must_open(const char *image, uint64_t size, bool lock) {
        BlkBackend *b = NULL;
        assert_int_equal(open_rbd(image, size, lock, &b), 0);
        return b;
}

static void test_create_io(void **state) {
        BlkBackend *b = NULL;
        g_autofree uint8_t *w = g_malloc(MiB), *r = g_malloc(MiB);

        /* No image and no size: -ENOENT; with a size it is created. */
        assert_int_equal(open_rbd("io", 0, false, &b), -ENOENT);
        b = must_open("io", 64 * MiB, true);
        assert_int_equal(b->size, 64 * MiB);
        assert_true(b->caps & BLK_CAP_DISCARD);

        pattern_fill(w, MiB, 1);
        BlkDone d = { .req = { .op = BLK_WRITE, .offset = 4096, .len = MiB, .niov = 3 } };
        d.iov[0] = (struct iovec) { w, 4096 };
        d.iov[1] = (struct iovec) { w + 4096, 12288 };
        d.iov[2] = (struct iovec) { w + 16384, MiB - 16384 };
        d.req.iov = d.iov;
        assert_int_equal(blk_done_run(b, &d), 0);
        memset(r, 0, MiB);
        BlkDone rd = { .req = { .op = BLK_READ, .offset = 4096, .len = MiB, .niov = 2 } };
        rd.iov[0] = (struct iovec) { r, 512 };
        rd.iov[1] = (struct iovec) { r + 512, MiB - 512 };
        rd.req.iov = rd.iov;
        assert_int_equal(blk_done_run(b, &rd), 0);
        assert_memory_equal(w, r, MiB);

        pattern_fill(w, 65536, 2);
        assert_int_equal(blk_done_rw(b, BLK_WRITE, w, 65536, 8 * MiB, BLK_F_FUA), 0);
        assert_int_equal(blk_done_simple(b, BLK_FLUSH, 0, 0, 0), 0);
        assert_int_equal(blk_done_simple(b, BLK_WRITE_ZEROES, 8 * MiB + 4096, 8192, 0), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 65536, 8 * MiB, 0), 0);
        assert_memory_equal(r, w, 4096);
        assert_true(all_zero(r + 4096, 8192));
        assert_memory_equal(r + 12288, w + 12288, 65536 - 12288);
        assert_int_equal(blk_done_simple(b, BLK_DISCARD, 8 * MiB, 65536, 0), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 65536, 8 * MiB, 0), 0);
        assert_true(all_zero(r, 65536));

        /* Bounds; growing; never shrinking. */
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 4096, 64 * MiB, 0), -ERANGE);
        assert_int_equal(blk_backend_resize(b, 96 * MiB), 0);
        assert_int_equal(b->size, 96 * MiB);
        assert_int_equal(blk_done_rw(b, BLK_WRITE, w, 4096, 95 * MiB, 0), 0);
        assert_int_equal(blk_backend_resize(b, 32 * MiB), -EINVAL);
        assert_int_equal(blk_execute_sync(b, &(BlkRequest) { .op = BLK_FLUSH }), 0);
        blk_backend_free(b);

        /* A new connection reads what was flushed. */
        b = must_open("io", 0, false);
        assert_int_equal(b->size, 96 * MiB);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 4096, 95 * MiB, 0), 0);
        assert_memory_equal(r, w, 4096);
        blk_backend_free(b);
}

static void test_many_inflight(void **state) {
        BlkBackend *b = must_open("many", 32 * MiB, true);
        enum { N = 64, LEN = 16384 };
        g_autofree BlkDone *d = g_new0(BlkDone, N);
        g_autofree uint8_t *w = g_malloc(N * LEN), *r = g_malloc0(N * LEN);

        pattern_fill(w, N * LEN, 3);
        for (unsigned i = 0; i < N; i++) {
                d[i].req = (BlkRequest) { .op = BLK_WRITE, .offset = (uint64_t) i * LEN * 3, .len = LEN,
                                          .iov = d[i].iov, .niov = 1, .cb = blk_done_cb };
                d[i].iov[0] = (struct iovec) { w + i * LEN, LEN };
                assert_int_equal(blk_backend_submit(b, &d[i].req), 0);
        }
        blk_backend_commit(b);
        blk_done_wait_all(b, d, N);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(d[i].ret, 0);
                d[i].done = false;
                d[i].req.op = BLK_READ;
                d[i].iov[0].iov_base = r + i * LEN;
                assert_int_equal(blk_backend_submit(b, &d[i].req), 0);
        }
        blk_backend_commit(b);
        blk_done_wait_all(b, d, N);
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(d[i].ret, 0);
        assert_memory_equal(w, r, N * LEN);
        assert_int_equal(blk_backend_inflight(b), 0);
        blk_backend_free(b);
}

/* The exclusive lock: a second client cannot take the image while the first holds it. */
static void test_exclusive_lock(void **state) {
        BlkBackend *a = must_open("locked", 16 * MiB, true), *b = NULL, *c = NULL;
        uint8_t w[4096], r[4096];

        assert_true(open_rbd("locked", 0, true, &b) < 0);
        assert_null(b);
        /* A clone is the same client: it shares the lock. */
        assert_int_equal(blk_backend_clone(a, &c), 0);
        pattern_fill(w, sizeof(w), 4);
        assert_int_equal(blk_done_rw(c, BLK_WRITE, w, sizeof(w), 8192, 0), 0);
        assert_int_equal(blk_done_rw(a, BLK_READ, r, sizeof(r), 8192, 0), 0);
        assert_memory_equal(w, r, sizeof(w));
        blk_backend_free(c);
        blk_backend_free(a);
        /* Released with the backend. */
        b = must_open("locked", 0, true);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, sizeof(r), 8192, 0), 0);
        assert_memory_equal(w, r, sizeof(w));
        blk_backend_free(b);
}

/* The OSD stops answering: a request fails with -ENOTCONN after the op timeout, and works once it is back. */
static void test_osd_stalls(void **state) {
        g_autofree char *pidfile = g_build_filename(cluster_dir, "run", "osd.0.pid", NULL);
        g_autofree char *pidtext = NULL, *conf_text = NULL, *short_conf = NULL;
        uint8_t w[4096], r[4096];
        BlkBackend *b = NULL;

        /* A configuration with a 2 s op timeout (the cluster's says 60). */
        assert_true(g_file_get_contents(conf, &conf_text, NULL, NULL));
        g_autoptr(GString) c = g_string_new(conf_text);
        g_string_replace(c, "rados osd op timeout = 60", "rados osd op timeout = 2", 1);
        short_conf = g_build_filename(cluster_dir, "short.conf", NULL);
        assert_true(g_file_set_contents(short_conf, c->str, -1, NULL));
        BlkOpenOptions o = { .fd = -1, .size = 16 * MiB, .rbd_pool = POOL, .rbd_image = "stall", .rbd_conf = short_conf };
        assert_int_equal(blk_backend_open(&o, &b), 0);
        pattern_fill(w, sizeof(w), 5);
        assert_int_equal(blk_done_rw(b, BLK_WRITE, w, sizeof(w), 0, 0), 0);

        assert_true(g_file_get_contents(pidfile, &pidtext, NULL, NULL));
        pid_t osd = (pid_t) atoi(pidtext);
        assert_true(osd > 0);
        assert_int_equal(kill(osd, SIGSTOP), 0);
        int ret = blk_done_rw(b, BLK_READ, r, sizeof(r), 0, 0);
        assert_int_equal(kill(osd, SIGCONT), 0);
        assert_int_equal(ret, -ENOTCONN);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, sizeof(r), 0, 0), 0);
        assert_memory_equal(w, r, sizeof(w));
        blk_backend_free(b);
}

/*
 * While the OSD does not answer (and before the op timeout, here the
 * cluster's 60 s), waiting() names the image and the requests that wait;
 * once it answers they complete and waiting() is empty again.
 */
static void test_osd_stalls_waiting(void **state) {
        g_autofree char *pidfile = g_build_filename(cluster_dir, "run", "osd.0.pid", NULL);
        g_autofree char *pidtext = NULL;
        uint8_t w[4096], r[4096];
        char why[256];
        BlkBackend *b = must_open("waits", 16 * MiB, false);

        pattern_fill(w, sizeof(w), 6);
        assert_int_equal(blk_done_rw(b, BLK_WRITE, w, sizeof(w), 0, 0), 0);
        blk_backend_waiting(b, why, sizeof(why));
        assert_string_equal(why, "");

        assert_true(g_file_get_contents(pidfile, &pidtext, NULL, NULL));
        pid_t osd = (pid_t) atoi(pidtext);
        assert_true(osd > 0);
        assert_int_equal(kill(osd, SIGSTOP), 0);
        BlkDone d = { .req = { .op = BLK_READ, .offset = 0, .len = sizeof(r), .niov = 1, .cb = blk_done_cb } };
        d.iov[0] = (struct iovec) { r, sizeof(r) };
        d.req.iov = d.iov;
        assert_int_equal(blk_backend_submit(b, &d.req), 0);
        blk_backend_commit(b);
        for (int i = 0; i < 300 && !d.done; i++) {
                struct pollfd p = { .fd = blk_backend_fd(b), .events = POLLIN };
                blk_backend_waiting(b, why, sizeof(why));
                if (why[0])
                        break;
                if (blk_backend_reap(b) == 0)
                        (void) poll(&p, 1, 100);
        }
        assert_int_equal(kill(osd, SIGCONT), 0);
        assert_false(d.done);
        assert_non_null(strstr(why, "rbd:" POOL "/waits"));
        assert_non_null(strstr(why, "1 request waiting"));
        blk_done_wait_all(b, &d, 1);
        assert_int_equal(d.ret, 0);
        assert_memory_equal(w, r, sizeof(w));
        blk_backend_waiting(b, why, sizeof(why));
        assert_string_equal(why, "");
        blk_backend_free(b);
}

static int group_setup(void **state) {
        g_autofree char *out = NULL, *err = NULL;
        g_autoptr(GError) error = NULL;
        int status = -1;
        rados_t cl;
        rados_ioctx_t io;

        cluster_dir = g_dir_make_tmp("vfu-ceph-XXXXXX", NULL);
        assert_non_null(cluster_dir);
        char *argv[] = { (char *) CEPH_CLUSTER, "start", cluster_dir, NULL };
        assert_true(g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, &error));
        if (!g_spawn_check_wait_status(status, NULL)) {
                fprintf(stderr, "ceph-cluster start failed: %s\n", err);
                return -1;
        }
        conf = g_strdup(g_strchomp(out));
        /* The pool for the images, tagged for rbd. */
        assert_int_equal(rados_create(&cl, NULL), 0);
        assert_int_equal(rados_conf_read_file(cl, conf), 0);
        assert_int_equal(rados_connect(cl), 0);
        assert_int_equal(rados_pool_create(cl, POOL), 0);
        assert_int_equal(rados_ioctx_create(cl, POOL, &io), 0);
        assert_int_equal(rados_application_enable(io, "rbd", 1), 0);
        rados_ioctx_destroy(io);
        rados_shutdown(cl);
        return 0;
}

static int group_teardown(void **state) {
        char *argv[] = { (char *) CEPH_CLUSTER, "stop", cluster_dir, NULL };
        g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL, NULL, NULL);
        g_free(cluster_dir);
        g_free(conf);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_io),
                cmocka_unit_test(test_many_inflight),
                cmocka_unit_test(test_exclusive_lock),
                cmocka_unit_test(test_osd_stalls),
                cmocka_unit_test(test_osd_stalls_waiting),
        };
        g_autofree char *mon = g_find_program_in_path("ceph-mon"), *osd = g_find_program_in_path("ceph-osd");

        if (!mon || !osd) {
                fprintf(stderr, "SKIP: ceph-mon or ceph-osd missing (./scripts/deps installs them)\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
