/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Block backends against real files, for each engine. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "block/blk.h"

typedef struct Fixture {
        char *dir;
        char *path;
        BlkEngine engine;
        unsigned refuse;        /* BLK_URING_* the io_uring engine must not use */
} Fixture;

typedef struct Done {
        BlkRequest req;
        int ret;
        bool done;
} Done;

static void on_done(BlkRequest *r, int ret) {
        Done *d = (Done *) r;
        d->ret = ret;
        d->done = true;
}

static int run(BlkBackend *b, Done *d) {
        d->done = false;
        d->req.cb = on_done;
        int r = blk_backend_submit(b, &d->req);
        if (r < 0)
                return r;
        blk_backend_commit(b);
        while (!d->done) {
                struct pollfd p = { .fd = blk_backend_fd(b), .events = POLLIN };
                if (blk_backend_reap(b) == 0 && !blk_backend_arm(b))
                        assert_true(poll(&p, 1, 5000) >= 0);
        }
        return d->ret;
}

static int rw(BlkBackend *b, BlkOp op, void *buf, size_t len, uint64_t off, unsigned flags) {
        struct iovec iov = { buf, len };
        Done d = { .req = { .op = op, .flags = flags, .offset = off, .len = len, .iov = &iov, .niov = 1 } };
        return run(b, &d);
}

static int simple(BlkBackend *b, BlkOp op, uint64_t off, uint64_t len, unsigned flags) {
        Done d = { .req = { .op = op, .flags = flags, .offset = off, .len = len } };
        return run(b, &d);
}

static int setup_engine_refusing(void **state, BlkEngine e, unsigned refuse) {
        Fixture *f = g_new0(Fixture, 1);
        /* The build directory: a real disk file system (O_DIRECT, holes). */
        f->dir = g_dir_make_tmp("vfu-blk-XXXXXX", NULL);
        if (access(BUILDDIR, W_OK) == 0) {
                g_free(f->dir);
                f->dir = g_build_filename(BUILDDIR, "tests-blk-XXXXXX", NULL);
                assert_non_null(g_mkdtemp(f->dir));
        }
        f->path = g_build_filename(f->dir, "disk.img", NULL);
        f->engine = e;
        f->refuse = refuse;
        *state = f;
        return 0;
}
static int setup_threads(void **state) { return setup_engine_refusing(state, BLK_ENGINE_THREADS, 0); }
static int setup_auto(void **state) { return setup_engine_refusing(state, BLK_ENGINE_AUTO, 0); }
/* io_uring without a registered file, and with none of the features (as before Linux 5.19). */
static int setup_uring_coop(void **state) {
        return setup_engine_refusing(state, BLK_ENGINE_AUTO, BLK_URING_FIXED_FILE);
}
static int setup_uring_plain(void **state) {
        return setup_engine_refusing(state, BLK_ENGINE_AUTO, BLK_URING_COOP_TASKRUN | BLK_URING_FIXED_FILE);
}

static int teardown(void **state) {
        Fixture *f = *state;
        unlink(f->path);
        rmdir(f->dir);
        g_free(f->path);
        g_free(f->dir);
        g_free(f);
        return 0;
}

static BlkBackend *open_file(Fixture *f, uint64_t size, bool direct, bool ro) {
        BlkOpenOptions o = { .path = f->path, .fd = -1, .size = size, .direct = direct,
                             .read_only = ro, .engine = f->engine, .uring_refuse = f->refuse };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        return b;
}

static void fill(uint8_t *buf, size_t len, unsigned seed) {
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t) (i * 31 + seed * 7 + (i >> 9));
}

static void test_create_sparse_and_size(void **state) {
        Fixture *f = *state;
        BlkOpenOptions o = { .path = f->path, .fd = -1, .engine = f->engine, .uring_refuse = f->refuse };
        BlkBackend *b = NULL;

        /* No file and no size: a clear -ENOENT, nothing created. */
        assert_int_equal(blk_backend_open(&o, &b), -ENOENT);
        assert_int_equal(access(f->path, F_OK), -1);

        b = open_file(f, 64 << 20, false, false);
        struct stat st;
        assert_int_equal(stat(f->path, &st), 0);
        assert_int_equal(st.st_size, 64 << 20);
        assert_true(st.st_blocks * 512 < (1 << 20));   /* sparse */
        assert_int_equal(b->size, 64 << 20);
        assert_int_equal(blk_backend_resize(b, 128 << 20), 0);
        assert_int_equal(b->size, 128 << 20);
        assert_int_equal(blk_backend_resize(b, 32 << 20), -EINVAL);
        blk_backend_free(b);

        /* Reopen without size keeps the file's size. */
        b = open_file(f, 0, false, false);
        assert_int_equal(b->size, 128 << 20);
        blk_backend_free(b);
}

static void test_write_read_verify(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 16 << 20, false, false);
        g_autofree uint8_t *w = g_malloc(1 << 20), *r = g_malloc(1 << 20);

        fill(w, 1 << 20, 1);
        /* Split across iovecs of odd sizes. */
        struct iovec iov[3] = { { w, 4096 }, { w + 4096, 12288 }, { w + 16384, (1 << 20) - 16384 } };
        Done d = { .req = { .op = BLK_WRITE, .offset = 4096, .len = 1 << 20, .iov = iov, .niov = 3 } };
        assert_int_equal(run(b, &d), 0);
        assert_int_equal(rw(b, BLK_READ, r, 1 << 20, 4096, 0), 0);
        assert_memory_equal(w, r, 1 << 20);

        /* What the file holds, read behind the backend's back. */
        int fd = open(f->path, O_RDONLY);
        assert_true(pread(fd, r, 1 << 20, 4096) == 1 << 20);
        close(fd);
        assert_memory_equal(w, r, 1 << 20);

        /* Out of range is refused, not clipped. */
        assert_int_equal(rw(b, BLK_READ, r, 8192, (16 << 20) - 4096, 0), -ERANGE);
        blk_backend_free(b);
}

static void test_fua_and_flush(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 1 << 20, false, false);
        uint8_t buf[4096];

        fill(buf, sizeof(buf), 3);
        assert_int_equal(rw(b, BLK_WRITE, buf, sizeof(buf), 0, BLK_F_FUA), 0);
        assert_int_equal(simple(b, BLK_FLUSH, 0, 0, 0), 0);
        uint8_t back[4096];
        assert_int_equal(rw(b, BLK_READ, back, sizeof(back), 0, 0), 0);
        assert_memory_equal(buf, back, sizeof(buf));
        blk_backend_free(b);
}

static void test_write_zeroes_and_discard(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 8 << 20, false, false);
        g_autofree uint8_t *buf = g_malloc(4 << 20), *zero = g_malloc0(1 << 20);
        struct stat st;

        fill(buf, 4 << 20, 9);
        assert_int_equal(rw(b, BLK_WRITE, buf, 4 << 20, 0, 0), 0);
        assert_int_equal(simple(b, BLK_FLUSH, 0, 0, 0), 0);
        assert_int_equal(stat(f->path, &st), 0);
        blkcnt_t full = st.st_blocks;

        /* Write zeroes without unmap: zeroes read back. */
        assert_int_equal(simple(b, BLK_WRITE_ZEROES, 0, 1 << 20, 0), 0);
        assert_int_equal(rw(b, BLK_READ, buf, 1 << 20, 0, 0), 0);
        assert_memory_equal(buf, zero, 1 << 20);

        /* With unmap (and FUA): zeroes and, on a hole-capable fs, fewer blocks. */
        assert_int_equal(simple(b, BLK_WRITE_ZEROES, 1 << 20, 1 << 20, BLK_F_UNMAP | BLK_F_FUA), 0);
        assert_int_equal(rw(b, BLK_READ, buf, 1 << 20, 1 << 20, 0), 0);
        assert_memory_equal(buf, zero, 1 << 20);

        /* Discard punches a hole that reads as zeroes. */
        assert_int_equal(simple(b, BLK_DISCARD, 2 << 20, 1 << 20, 0), 0);
        assert_int_equal(rw(b, BLK_READ, buf, 1 << 20, 2 << 20, 0), 0);
        if (b->caps & BLK_CAP_DISCARD_ZEROES) {
                assert_memory_equal(buf, zero, 1 << 20);
                assert_int_equal(stat(f->path, &st), 0);
                assert_true(st.st_blocks < full);
        }
        /* Untouched data survives next to it. */
        assert_int_equal(rw(b, BLK_READ, buf, 4096, 3 << 20, 0), 0);
        g_autofree uint8_t *ref = g_malloc(4 << 20);
        fill(ref, 4 << 20, 9);
        assert_memory_equal(buf, ref + (3 << 20), 4096);
        blk_backend_free(b);
}

static void test_direct_aligned_and_bounced(void **state) {
        Fixture *f = *state;
        BlkOpenOptions o = { .path = f->path, .fd = -1, .size = 4 << 20, .direct = true, .engine = f->engine, .uring_refuse = f->refuse };
        BlkBackend *b = NULL;
        int r = blk_backend_open(&o, &b);
        if (r == -EINVAL) {
                skip();         /* file system without O_DIRECT */
                return;
        }
        assert_int_equal(r, 0);
        assert_true(b->direct);
        assert_true(b->dio_align == 512 || b->dio_align == 4096);

        void *al = NULL;
        assert_int_equal(posix_memalign(&al, 4096, 65536), 0);
        fill(al, 65536, 5);
        assert_int_equal(rw(b, BLK_WRITE, al, 65536, 0, BLK_F_FUA), 0);

        /* A misaligned guest buffer goes through a bounce buffer. */
        g_autofree uint8_t *mis = g_malloc(65536 + 3);
        assert_int_equal(rw(b, BLK_READ, mis + 3, 65536, 0, 0), 0);
        assert_memory_equal(mis + 3, al, 65536);
        fill(mis + 3, 65536, 6);
        assert_int_equal(rw(b, BLK_WRITE, mis + 3, 65536, 65536, 0), 0);
        assert_int_equal(rw(b, BLK_READ, al, 65536, 65536, 0), 0);
        assert_memory_equal(mis + 3, al, 65536);
        free(al);
        blk_backend_free(b);
}

static void test_read_only(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 1 << 20, false, false);
        blk_backend_free(b);
        b = open_file(f, 0, false, true);
        uint8_t buf[512] = { 0 };
        assert_int_equal(rw(b, BLK_WRITE, buf, 512, 0, 0), -EROFS);
        assert_int_equal(rw(b, BLK_READ, buf, 512, 0, 0), 0);
        assert_int_equal(simple(b, BLK_FLUSH, 0, 0, 0), 0);
        blk_backend_free(b);
}

static void test_fd_passed_in(void **state) {
        Fixture *f = *state;
        int fd = open(f->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, 1 << 20), 0);
        BlkOpenOptions o = { .path = "ns1", .fd = fd, .engine = f->engine, .uring_refuse = f->refuse };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(b->size, 1 << 20);
        blk_backend_free(b);
        /* The fd was consumed. */
        assert_int_equal(fcntl(fd, F_GETFD), -1);

        /* A read-only fd for a writable namespace is refused. */
        fd = open(f->path, O_RDONLY | O_CLOEXEC);
        o.fd = fd;
        assert_int_equal(blk_backend_open(&o, &b), -EROFS);
}

static void test_many_inflight(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 4 << 20, false, false);
        enum { N = 512 };
        Done *d = g_new0(Done, N);
        struct iovec *iov = g_new0(struct iovec, N);
        uint8_t *buf = g_malloc(N * 4096);

        for (unsigned i = 0; i < N; i++) {
                memset(buf + i * 4096, (int) i, 4096);
                iov[i] = (struct iovec) { buf + i * 4096, 4096 };
                d[i].req = (BlkRequest) { .op = BLK_WRITE, .offset = (uint64_t) i * 4096, .len = 4096,
                                          .iov = &iov[i], .niov = 1, .cb = on_done };
                assert_int_equal(blk_backend_submit(b, &d[i].req), 0);
        }
        blk_backend_drain(b);
        for (unsigned i = 0; i < N; i++) {
                assert_true(d[i].done);
                assert_int_equal(d[i].ret, 0);
        }
        uint8_t back[4096];
        assert_int_equal(rw(b, BLK_READ, back, 4096, 511 * 4096, 0), 0);
        assert_int_equal(back[17], 511 & 0xff);
        g_free(d);
        g_free(iov);
        g_free(buf);
        blk_backend_free(b);
}

static BlkBackend *open_null(uint64_t size, int pattern, bool ro) {
        BlkOpenOptions o = { .fd = -1, .size = size, .null = true, .null_pattern = pattern, .read_only = ro };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        return b;
}

/* Null: any size, reads return zeroes or the pattern, writes are counted and dropped. */
static void test_null_read_write(void **state) {
        (void) state;
        const uint64_t tib = 1ull << 40;
        BlkBackend *b = open_null(tib, 0, false);
        uint8_t buf[8192], pat[8192];
        BlkNullStats st;

        assert_true(b->is_null);
        assert_int_equal(b->size, tib);
        assert_int_equal(b->fd, -1);
        memset(buf, 0x5a, sizeof(buf));
        assert_int_equal(rw(b, BLK_READ, buf, 4096, tib - 4096, 0), 0);
        memset(pat, 0, sizeof(pat));
        assert_memory_equal(buf, pat, 4096);
        assert_int_equal(buf[4096], 0x5a);             /* nothing past the request */

        /* A write is dropped: the same range still reads back as zeroes. */
        memset(buf, 0xee, sizeof(buf));
        assert_int_equal(rw(b, BLK_WRITE, buf, 8192, 0, BLK_F_FUA), 0);
        assert_int_equal(rw(b, BLK_READ, buf, 8192, 0, 0), 0);
        assert_memory_equal(buf, pat, 8192);
        assert_int_equal(simple(b, BLK_FLUSH, 0, 0, 0), 0);
        assert_int_equal(simple(b, BLK_WRITE_ZEROES, 0, 1 << 20, BLK_F_UNMAP), 0);
        assert_int_equal(simple(b, BLK_DISCARD, 0, 1 << 20, 0), 0);
        assert_true(b->caps & BLK_CAP_DISCARD_ZEROES);

        /* Bounds: past the end is -ERANGE, at submit. */
        assert_int_equal(rw(b, BLK_READ, buf, 4096, tib - 512, 0), -ERANGE);
        assert_int_equal(simple(b, BLK_DISCARD, tib, 1, 0), -ERANGE);

        /* The synchronous path (what shutdown's flush uses) works too. */
        BlkRequest sync = { .op = BLK_FLUSH };
        assert_int_equal(blk_execute_sync(b, &sync), 0);

        assert_true(blk_null_get_stats(b, &st));
        assert_int_equal(st.reads, 2);
        assert_int_equal(st.read_bytes, 4096 + 8192);
        assert_int_equal(st.writes, 1);
        assert_int_equal(st.write_bytes, 8192);
        assert_int_equal(st.others, 4);

        /* Resize grows, never shrinks. */
        assert_int_equal(blk_backend_resize(b, 2 * tib), 0);
        assert_int_equal(b->size, 2 * tib);
        assert_int_equal(blk_backend_resize(b, tib), -EINVAL);
        blk_backend_free(b);
}

static void test_null_pattern_and_options(void **state) {
        (void) state;
        BlkBackend *b = open_null(1 << 20, 0xa5, false);
        uint8_t buf[1024 + 4096], want[4096];
        struct iovec iov[2] = { { buf, 512 }, { buf + 1024, 4096 } };
        Done d = { .req = { .op = BLK_READ, .offset = 4096, .len = 512 + 4096, .iov = iov, .niov = 2 } };

        memset(buf, 0, sizeof(buf));
        assert_int_equal(run(b, &d), 0);
        memset(want, 0xa5, sizeof(want));
        assert_memory_equal(buf, want, 512);
        assert_int_equal(buf[512], 0);                  /* the gap between the iovecs */
        assert_memory_equal(buf + 1024, want, 4096);
        assert_false(b->caps & BLK_CAP_DISCARD_ZEROES);  /* discarded ranges read the pattern */
        blk_backend_free(b);

        /* Read-only: writes refused, reads fine. */
        b = open_null(1 << 20, 0, true);
        assert_int_equal(rw(b, BLK_WRITE, buf, 4096, 0, 0), -EROFS);
        assert_int_equal(rw(b, BLK_READ, buf, 4096, 0, 0), 0);
        blk_backend_free(b);

        /* Zero size or a pattern that is not a byte: -EINVAL. */
        BlkOpenOptions o = { .fd = -1, .null = true };
        assert_int_equal(blk_backend_open(&o, &b), -EINVAL);
        o.size = 4096;
        o.null_pattern = 256;
        assert_int_equal(blk_backend_open(&o, &b), -EINVAL);
        assert_null(b);

        /* Not a null backend: no null statistics. */
        BlkNullStats st;
        assert_false(blk_null_get_stats(NULL, &st));
}

/* Many requests in flight, completions submitting more (multi-step commands do): all finish. */
static void test_null_many_inflight(void **state) {
        (void) state;
        BlkBackend *b = open_null(1ull << 30, 0, false);
        enum { N = 300 };
        Done *d = g_new0(Done, N);
        uint8_t *buf = g_malloc0(4096);
        struct iovec iov = { buf, 4096 };

        for (unsigned i = 0; i < N; i++) {
                d[i].req = (BlkRequest) { .op = i % 2 ? BLK_WRITE : BLK_READ, .offset = (uint64_t) i * 4096,
                                          .len = 4096, .iov = &iov, .niov = 1, .cb = on_done };
                assert_int_equal(blk_backend_submit(b, &d[i].req), 0);
        }
        assert_int_equal(blk_backend_inflight(b), N);
        blk_backend_drain(b);
        assert_int_equal(blk_backend_inflight(b), 0);
        for (unsigned i = 0; i < N; i++)
                assert_true(d[i].done && d[i].ret == 0);
        g_free(d);
        g_free(buf);
        blk_backend_free(b);
}

/* A clone is another context on the same storage: same size and engine, its own fd and event fd. */
static void test_clone(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 1 << 20, false, false), *c = NULL;
        uint8_t buf[8192], got[8192];

        assert_int_equal(blk_backend_clone(b, &c), 0);
        assert_int_equal(c->size, b->size);
        assert_string_equal(c->ops->name, b->ops->name);
        assert_int_not_equal(c->fd, b->fd);
        assert_int_not_equal(blk_backend_fd(c), blk_backend_fd(b));
        fill(buf, sizeof(buf), 3);
        assert_int_equal(rw(b, BLK_WRITE, buf, sizeof(buf), 65536, 0), 0);
        memset(got, 0, sizeof(got));
        assert_int_equal(rw(c, BLK_READ, got, sizeof(got), 65536, 0), 0);
        assert_memory_equal(got, buf, sizeof(buf));
        /* Each is resized: the file grows once, the other context follows. */
        assert_int_equal(blk_backend_resize(b, 2 << 20), 0);
        assert_int_equal(blk_backend_resize(c, b->size), 0);
        assert_int_equal(rw(c, BLK_WRITE, buf, 4096, (2 << 20) - 4096, 0), 0);
        blk_backend_free(b);    /* the clone outlives it */
        assert_int_equal(rw(c, BLK_READ, got, 4096, (2 << 20) - 4096, 0), 0);
        assert_memory_equal(got, buf, 4096);
        blk_backend_free(c);

        /* A null backend's clone keeps its size, pattern and read-only flag. */
        BlkOpenOptions o = { .fd = -1, .null = true, .size = 1 << 20, .null_pattern = 0x5a, .read_only = true };
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(blk_backend_clone(b, &c), 0);
        assert_true(c->is_null && c->read_only && c->size == b->size);
        assert_int_equal(rw(c, BLK_READ, got, 4096, 0, 0), 0);
        memset(buf, 0x5a, 4096);
        assert_memory_equal(got, buf, 4096);
        assert_int_equal(rw(c, BLK_WRITE, got, 4096, 0, 0), -EROFS);
        blk_backend_free(b);
        blk_backend_free(c);
}

/* The io_uring features in use are what the kernel offers less what was refused; I/O works with each. */
static void test_uring_features(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 1 << 20, false, false);
        uint8_t buf[4096], got[4096];

        if (strcmp(b->ops->name, "io_uring") != 0) {
                assert_int_equal(b->uring, 0);
                blk_backend_free(b);
                skip();
                return;
        }
        assert_int_equal(b->uring & f->refuse, 0);
        print_message("io_uring features 0x%x (refused 0x%x)\n", b->uring, f->refuse);
        fill(buf, sizeof(buf), 11);
        assert_int_equal(rw(b, BLK_WRITE, buf, sizeof(buf), 8192, 0), 0);
        assert_int_equal(rw(b, BLK_READ, got, sizeof(got), 8192, 0), 0);
        assert_memory_equal(got, buf, sizeof(buf));
        blk_backend_free(b);
}

typedef struct Owner {
        BlkBackend *b;
        uint8_t *buf;
        int ret;
} Owner;

static void *owner_main(void *arg) {
        Owner *o = arg;
        o->ret = rw(o->b, BLK_WRITE, o->buf, 65536, 0, 0);
        if (o->ret == 0)
                o->ret = rw(o->b, BLK_READ, o->buf + 65536, 65536, 0, 0);
        return NULL;
}

/*
 * Opened on one thread, submitted to and reaped on another (as a device's
 * I/O thread does), freed on the first.  The arm contract: after everything was reaped, an
 * armed backend reports nothing waiting and its fd is clear.
 */
static void test_other_thread_owns(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 1 << 20, false, false);
        g_autofree uint8_t *buf = g_malloc(2 * 65536);
        Owner o = { .b = b, .buf = buf, .ret = -1 };
        pthread_t t;

        fill(buf, 65536, 4);
        assert_int_equal(pthread_create(&t, NULL, owner_main, &o), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(o.ret, 0);
        assert_memory_equal(buf, buf + 65536, 65536);
        assert_int_equal(blk_backend_inflight(b), 0);
        assert_false(blk_backend_arm(b));
        struct pollfd p = { .fd = blk_backend_fd(b), .events = POLLIN };
        assert_int_equal(poll(&p, 1, 0), 0);
        blk_backend_free(b);
}

/*
 * A freed backend lets go of its file at once, whichever thread submitted
 * to it: a lock held through the backend's descriptor is free for another
 * open the moment blk_backend_free() returns (a ring that kept the file
 * registered would hold it until its asynchronous teardown).
 */
static void test_free_releases_file(void **state) {
        Fixture *f = *state;
        BlkBackend *b = open_file(f, 1 << 20, false, false);
        g_autofree uint8_t *buf = g_malloc(2 * 65536);
        Owner o = { .b = b, .buf = buf, .ret = -1 };
        pthread_t t;
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };

        fill(buf, 65536, 8);
        assert_int_equal(pthread_create(&t, NULL, owner_main, &o), 0);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(o.ret, 0);
        assert_int_equal(fcntl(b->fd, F_OFD_SETLK, &fl), 0);
        int other = open(f->path, O_RDWR | O_CLOEXEC);
        assert_true(other >= 0);
        assert_int_equal(fcntl(other, F_OFD_SETLK, &fl), -1);          /* held through the backend */
        blk_backend_free(b);
        assert_int_equal(fcntl(other, F_OFD_SETLK, &fl), 0);
        close(other);
}

#define ENGINE_TESTS(setup) \
        cmocka_unit_test_setup_teardown(test_create_sparse_and_size, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_write_read_verify, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_fua_and_flush, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_write_zeroes_and_discard, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_direct_aligned_and_bounced, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_read_only, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_fd_passed_in, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_many_inflight, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_clone, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_uring_features, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_other_thread_owns, setup, teardown), \
        cmocka_unit_test_setup_teardown(test_free_releases_file, setup, teardown)

int main(void) {
        const struct CMUnitTest threads[] = { ENGINE_TESTS(setup_threads) };
        const struct CMUnitTest autoeng[] = { ENGINE_TESTS(setup_auto) };
        int r = cmocka_run_group_tests_name("blk-threads", threads, NULL, NULL);
        r |= cmocka_run_group_tests_name("blk-auto", autoeng, NULL, NULL);
        const struct CMUnitTest coop[] = { ENGINE_TESTS(setup_uring_coop) };
        const struct CMUnitTest plain[] = { ENGINE_TESTS(setup_uring_plain) };
        r |= cmocka_run_group_tests_name("blk-uring-coop", coop, NULL, NULL);
        r |= cmocka_run_group_tests_name("blk-uring-plain", plain, NULL, NULL);
        const struct CMUnitTest null[] = {
                cmocka_unit_test(test_null_read_write),
                cmocka_unit_test(test_null_pattern_and_options),
                cmocka_unit_test(test_null_many_inflight),
        };
        r |= cmocka_run_group_tests_name("blk-null", null, NULL, NULL);
        return r;
}
