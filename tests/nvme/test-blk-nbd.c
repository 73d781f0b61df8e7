/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD backend against real servers started here: nbdkit's memory plugin
 * and qemu-nbd serving a qcow2 overlay on a backing file, on UNIX sockets in
 * a temporary directory.  Data-verified I/O, write zeroes, discard, FUA,
 * flush durability across a killed server, a server restarted with requests
 * in flight, I/O failing (retryably) once a server stays away, clones.
 * Skipped (77) when nbdkit or qemu-nbd is missing (./scripts/deps installs them).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "blk-done.h"
#include "block/blk.h"

#define MiB (1u << 20)

typedef struct Fixture {
        char *dir;
        char *sock;
        char *uri;
        GPid server;
        char **argv;                    /* how the server was started, to start it again */
} Fixture;

static void child_setup(gpointer data) {
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
}

/* Does the socket accept connections? */
static bool server_listening(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        ok = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

/* Start argv (the server) and wait until it accepts connections. */
static void server_start(Fixture *f) {
        g_autoptr(GError) error = NULL;

        unlink(f->sock);
        assert_true(g_spawn_async(NULL, f->argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                                  child_setup, NULL, &f->server, &error));
        for (int i = 0; i < 3000 && !server_listening(f->sock); i++)
                g_usleep(10000);
        assert_true(server_listening(f->sock));
}

static void server_kill(Fixture *f) {
        if (f->server <= 0)
                return;
        kill(f->server, SIGKILL);
        waitpid(f->server, NULL, 0);
        f->server = 0;
        unlink(f->sock);
}

static Fixture *fixture_new(void) {
        Fixture *f = g_new0(Fixture, 1);

        f->dir = g_dir_make_tmp("vfu-nbd-XXXXXX", NULL);
        assert_non_null(f->dir);
        f->sock = g_build_filename(f->dir, "nbd.sock", NULL);
        f->uri = g_strdup_printf("nbd+unix:///?socket=%s", f->sock);
        return f;
}

static char *path_in(Fixture *f, const char *name) {
        return g_build_filename(f->dir, name, NULL);
}

/* nbdkit's memory plugin: SIZE bytes, gone when it exits. */
static int setup_nbdkit(void **state) {
        Fixture *f = fixture_new();

        f->argv = g_strdupv((char *[]) { "nbdkit", "-f", "-U", f->sock, "memory", "64M", NULL });
        server_start(f);
        *state = f;
        return 0;
}

static void run_cmd(const char *const *argv) {
        g_autoptr(GError) error = NULL;
        int status = -1;

        assert_true(g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL,
                                 NULL, NULL, NULL, NULL, &status, &error));
        assert_true(g_spawn_check_wait_status(status, NULL));
}

/*
 * qemu-nbd on overlay.qcow2, whose backing file base.raw holds pattern 9 in
 * its first MiB.  qcow2 keeps metadata in memory until a flush: what was
 * flushed survives SIGKILL, what was not may not.
 */
static int setup_qemu(void **state) {
        Fixture *f = fixture_new();
        g_autofree char *base = path_in(f, "base.raw"), *overlay = path_in(f, "overlay.qcow2");
        g_autofree uint8_t *buf = g_malloc(MiB);

        pattern_fill(buf, MiB, 9);
        assert_true(g_file_set_contents(base, (char *) buf, MiB, NULL));
        assert_int_equal(truncate(base, 64 * MiB), 0);
        run_cmd((const char *[]) { "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base, overlay, NULL });
        f->argv = g_strdupv((char *[]) { "qemu-nbd", "-k", f->sock, "-f", "qcow2", "-t", "--cache=writeback",
                                         "--discard=unmap", overlay, NULL });
        server_start(f);
        *state = f;
        return 0;
}

/*
 * qemu-nbd on a raw file: an acknowledged write is in the file (the page
 * cache), so a killed server loses none, flushed or not.
 */
static int setup_qemu_raw(void **state) {
        Fixture *f = fixture_new();
        g_autofree char *disk = path_in(f, "disk.raw");
        int fd = open(disk, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

        assert_true(fd >= 0 && ftruncate(fd, 64 * MiB) == 0);
        close(fd);
        f->argv = g_strdupv((char *[]) { "qemu-nbd", "-k", f->sock, "-f", "raw", "-t", "--cache=writeback",
                                         disk, NULL });
        server_start(f);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        g_autoptr(GDir) d = NULL;
        const char *name;

        server_kill(f);
        d = g_dir_open(f->dir, 0, NULL);
        while (d && (name = g_dir_read_name(d))) {
                g_autofree char *p = path_in(f, name);
                unlink(p);
        }
        rmdir(f->dir);
        g_strfreev(f->argv);
        g_free(f->sock);
        g_free(f->uri);
        g_free(f->dir);
        g_free(f);
        return 0;
}

static BlkBackend *open_nbd(Fixture *f, uint64_t size, unsigned wait_ms) {
        BlkOpenOptions o = { .nbd_uri = f->uri, .fd = -1, .size = size, .nbd_wait_ms = wait_ms };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        return b;
}

static void test_bad_uris(void **state) {
        Fixture *f = *state;
        g_autofree char *gone = g_strdup_printf("nbd+unix:///?socket=%s/none.sock", f->dir);
        const char *bad[] = { "http://example/x", "nbd+unix:///x", "nbd:///x", "not a uri" };
        BlkBackend *b = NULL;

        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                BlkOpenOptions o = { .nbd_uri = bad[i], .fd = -1 };
                assert_int_equal(blk_backend_open(&o, &b), -EINVAL);
        }
        BlkOpenOptions tls = { .nbd_uri = "nbds://localhost/x", .fd = -1 };
        assert_int_equal(blk_backend_open(&tls, &b), -EPROTONOSUPPORT);
        BlkOpenOptions o = { .nbd_uri = gone, .fd = -1 };
        assert_int_equal(blk_backend_open(&o, &b), -ENOENT);
        /* Larger than the export. */
        BlkOpenOptions big = { .nbd_uri = f->uri, .fd = -1, .size = 128 * MiB };
        assert_int_equal(blk_backend_open(&big, &b), -EINVAL);
        assert_null(b);
}

static void test_nbdkit_io(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_nbd(f, 0, 0);
        g_autofree uint8_t *w = g_malloc(MiB), *r = g_malloc(MiB);
        char why[256];

        assert_int_equal(b->size, 64 * MiB);
        assert_true(b->caps & BLK_CAP_DISCARD);
        blk_backend_waiting(b, why, sizeof(why));
        assert_string_equal(why, "");

        /* Several iovecs of odd sizes (bounced), and one. */
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

        /* FUA, flush, write zeroes (with and without unmap), discard. */
        pattern_fill(w, 65536, 2);
        assert_int_equal(blk_done_rw(b, BLK_WRITE, w, 65536, 8 * MiB, BLK_F_FUA), 0);
        assert_int_equal(blk_done_simple(b, BLK_FLUSH, 0, 0, 0), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 65536, 8 * MiB, 0), 0);
        assert_memory_equal(w, r, 65536);
        assert_int_equal(blk_done_simple(b, BLK_WRITE_ZEROES, 8 * MiB + 4096, 8192, 0), 0);
        assert_int_equal(blk_done_simple(b, BLK_WRITE_ZEROES, 8 * MiB + 16384, 4096, BLK_F_UNMAP), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 65536, 8 * MiB, 0), 0);
        assert_memory_equal(r, w, 4096);
        assert_true(all_zero(r + 4096, 8192));
        assert_memory_equal(r + 12288, w + 12288, 4096);
        assert_true(all_zero(r + 16384, 4096));
        assert_memory_equal(r + 20480, w + 20480, 65536 - 20480);
        assert_int_equal(blk_done_simple(b, BLK_DISCARD, 8 * MiB, 65536, 0), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 65536, 8 * MiB, 0), 0);
        assert_true(all_zero(r, 65536));        /* the memory plugin reads holes as zeroes */

        /* Bounds, and the size is the export's. */
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 4096, 64 * MiB, 0), -ERANGE);
        assert_int_equal(blk_backend_resize(b, 128 * MiB), -EINVAL);
        assert_int_equal(blk_backend_resize(b, 0), 0);
        blk_backend_free(b);
}

/* Many requests in flight at once, each verified. */
static void test_nbdkit_many_inflight(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_nbd(f, 0, 0);
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

/* A clone is another connection to the same export (nbdkit's memory plugin offers multi-conn). */
static void test_nbdkit_clone(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_nbd(f, 32 * MiB, 0), *c = NULL;
        uint8_t w[4096], r[4096];

        assert_int_equal(blk_backend_clone(b, &c), 0);
        assert_int_equal(c->size, 32 * MiB);
        assert_int_not_equal(blk_backend_fd(b), blk_backend_fd(c));
        pattern_fill(w, sizeof(w), 4);
        assert_int_equal(blk_done_rw(c, BLK_WRITE, w, sizeof(w), 12288, 0), 0);
        assert_int_equal(blk_done_simple(c, BLK_FLUSH, 0, 0, 0), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, sizeof(r), 12288, 0), 0);
        assert_memory_equal(w, r, sizeof(w));
        blk_backend_free(c);
        blk_backend_free(b);
}

/* qcow2 on a backing file: the backing's data shows through, writes land in the overlay only. */
static void test_qemu_backing_chain(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_nbd(f, 0, 0), *c = NULL;
        g_autofree uint8_t *base = g_malloc(MiB), *r = g_malloc(MiB), *w = g_malloc(65536);
        g_autofree char *base_path = path_in(f, "base.raw");
        g_autofree char *base_now = NULL;
        gsize len = 0;

        assert_int_equal(b->size, 64 * MiB);
        pattern_fill(base, MiB, 9);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, MiB, 0, 0), 0);
        assert_memory_equal(base, r, MiB);

        pattern_fill(w, 65536, 5);
        assert_int_equal(blk_done_rw(b, BLK_WRITE, w, 65536, 131072, 0), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, MiB, 0, 0), 0);
        assert_memory_equal(r, base, 131072);
        assert_memory_equal(r + 131072, w, 65536);
        assert_memory_equal(r + 196608, base + 196608, MiB - 196608);
        /* The backing file did not change. */
        assert_true(g_file_get_contents(base_path, &base_now, &len, NULL));
        assert_int_equal(len, 64 * MiB);
        assert_memory_equal(base_now, base, MiB);

        /* Zeroes over backing data read as zeroes. */
        assert_int_equal(blk_done_simple(b, BLK_WRITE_ZEROES, 0, 65536, BLK_F_UNMAP), 0);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, 65536, 0, 0), 0);
        assert_true(all_zero(r, 65536));

        /* qemu-nbd -e 1 does not offer multi-conn: one connection for a writable export. */
        assert_int_equal(blk_backend_clone(b, &c), -EOPNOTSUPP);
        blk_backend_free(b);
}

/* What was flushed survives the server being killed; read back by a new server. */
static void test_qemu_flush_durable(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_nbd(f, 0, 0);
        enum { N = 32, LEN = 65536 };
        g_autofree uint8_t *w = g_malloc(N * LEN), *r = g_malloc(LEN);

        /* Clusters spread over the image: each allocation updates qcow2's L2 tables. */
        pattern_fill(w, N * LEN, 6);
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(blk_done_rw(b, BLK_WRITE, w + i * LEN, LEN, (uint64_t) i * 2 * MiB, 0), 0);
        assert_int_equal(blk_done_simple(b, BLK_FLUSH, 0, 0, 0), 0);
        blk_backend_free(b);
        server_kill(f);

        server_start(f);
        b = open_nbd(f, 0, 0);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(blk_done_rw(b, BLK_READ, r, LEN, (uint64_t) i * 2 * MiB, 0), 0);
                assert_memory_equal(r, w + i * LEN, LEN);
        }
        blk_backend_free(b);
}

/*
 * The server is killed with writes in flight and started again: every write
 * completes, all data is there (a raw file: what the server acknowledged
 * before it died is in the file; qcow2 may lose unflushed metadata).
 */
static void test_qemu_restart_mid_io(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_nbd(f, 0, 0);
        enum { N = 48, LEN = 65536 };
        g_autofree BlkDone *d = g_new0(BlkDone, N);
        g_autofree uint8_t *w = g_malloc(N * LEN), *r = g_malloc(LEN);
        char why[256];

        pattern_fill(w, N * LEN, 7);
        for (unsigned i = 0; i < N; i++) {
                d[i].req = (BlkRequest) { .op = BLK_WRITE, .offset = (uint64_t) i * LEN, .len = LEN,
                                          .iov = d[i].iov, .niov = 1, .cb = blk_done_cb };
                d[i].iov[0] = (struct iovec) { w + i * LEN, LEN };
                assert_int_equal(blk_backend_submit(b, &d[i].req), 0);
        }
        blk_backend_commit(b);
        server_kill(f);
        /* The loss is seen at the next reap; the requests wait. */
        for (int i = 0; i < 100; i++) {
                struct pollfd p = { .fd = blk_backend_fd(b), .events = POLLIN };
                blk_backend_reap(b);
                blk_backend_waiting(b, why, sizeof(why));
                if (why[0])
                        break;
                (void) poll(&p, 1, 100);
        }
        assert_non_null(strstr(why, f->uri));
        assert_non_null(strstr(why, "I/O waits"));
        assert_true(blk_backend_inflight(b) > 0);

        server_start(f);
        blk_done_wait_all(b, d, N);
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(d[i].ret, 0);
        blk_backend_waiting(b, why, sizeof(why));
        assert_string_equal(why, "");
        assert_int_equal(blk_done_simple(b, BLK_FLUSH, 0, 0, 0), 0);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(blk_done_rw(b, BLK_READ, r, LEN, (uint64_t) i * LEN, 0), 0);
                assert_memory_equal(r, w + i * LEN, LEN);
        }
        blk_backend_free(b);
}

/* A server that stays away: I/O fails with -ENOTCONN after the wait, and works again once it is back. */
static void test_qemu_unreachable(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_nbd(f, 0, 300);
        uint8_t w[4096], r[4096];
        char why[256];

        pattern_fill(w, sizeof(w), 8);
        assert_int_equal(blk_done_rw(b, BLK_WRITE, w, sizeof(w), 0, 0), 0);
        assert_int_equal(blk_done_simple(b, BLK_FLUSH, 0, 0, 0), 0);     /* else qcow2 may lose it to SIGKILL */
        server_kill(f);
        assert_int_equal(blk_done_rw(b, BLK_READ, r, sizeof(r), 0, 0), -ENOTCONN);
        blk_backend_waiting(b, why, sizeof(why));
        assert_non_null(strstr(why, "I/O fails"));
        /* Failing fast now, not waiting again. */
        assert_int_equal(blk_done_simple(b, BLK_FLUSH, 0, 0, 0), -ENOTCONN);

        server_start(f);
        /* Back: the next attempt reconnects (within the back-off); I/O goes through again. */
        int ret;
        do {
                struct pollfd p = { .fd = blk_backend_fd(b), .events = POLLIN };
                (void) poll(&p, 1, 100);
                blk_backend_reap(b);
                ret = blk_done_rw(b, BLK_READ, r, sizeof(r), 0, 0);
        } while (ret == -ENOTCONN);
        assert_int_equal(ret, 0);
        assert_memory_equal(w, r, sizeof(w));
        blk_backend_free(b);
}

static bool have(const char *prog) {
        g_autofree char *p = g_find_program_in_path(prog);
        return p != NULL;
}

int main(void) {
        const struct CMUnitTest nbdkit_tests[] = {
                cmocka_unit_test_setup_teardown(test_bad_uris, setup_nbdkit, teardown),
                cmocka_unit_test_setup_teardown(test_nbdkit_io, setup_nbdkit, teardown),
                cmocka_unit_test_setup_teardown(test_nbdkit_many_inflight, setup_nbdkit, teardown),
                cmocka_unit_test_setup_teardown(test_nbdkit_clone, setup_nbdkit, teardown),
        };
        const struct CMUnitTest qemu_tests[] = {
                cmocka_unit_test_setup_teardown(test_qemu_backing_chain, setup_qemu, teardown),
                cmocka_unit_test_setup_teardown(test_qemu_flush_durable, setup_qemu, teardown),
                cmocka_unit_test_setup_teardown(test_qemu_restart_mid_io, setup_qemu_raw, teardown),
                cmocka_unit_test_setup_teardown(test_qemu_unreachable, setup_qemu, teardown),
        };
        int r = 0;

        signal(SIGPIPE, SIG_IGN);
        if (!have("nbdkit") || !have("qemu-nbd") || !have("qemu-img")) {
                fprintf(stderr, "SKIP: nbdkit, qemu-nbd or qemu-img missing (./scripts/deps installs them)\n");
                return 77;
        }
        r |= cmocka_run_group_tests_name("nbdkit", nbdkit_tests, NULL, NULL);
        r |= cmocka_run_group_tests_name("qemu-nbd", qemu_tests, NULL, NULL);
        return r;
}
