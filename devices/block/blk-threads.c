/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The portable engine: a thread pool doing preadv/pwritev and friends. */
#include <errno.h>

#include <glib.h>

#include "blk-internal.h"

typedef struct BlkThreads {
        BlkBackend base;
        BlkPool pool;
        BlkList staged;
        unsigned inflight;
} BlkThreads;

static int blk_threads_submit(BlkBackend *b, BlkRequest *r) {
        BlkThreads *t = (BlkThreads *) b;

        r->bounce_ = NULL;
        blk_list_push(&t->staged, r);
        t->inflight++;
        return 0;
}

static void blk_threads_commit(BlkBackend *b) {
        BlkThreads *t = (BlkThreads *) b;

        blk_pool_queue(&t->pool, &t->staged);
}

static unsigned blk_threads_reap(BlkBackend *b) {
        BlkThreads *t = (BlkThreads *) b;
        BlkList done = { 0 };
        BlkRequest *r;
        unsigned n = 0;

        blk_event_clear(b);
        blk_pool_take_done(&t->pool, &done);
        while ((r = blk_list_pop(&done))) {
                t->inflight--;
                n++;
                r->cb(r, r->ret_);
        }
        return n;
}

static unsigned blk_threads_inflight(const BlkBackend *b) {
        return ((const BlkThreads *) b)->inflight;
}

static void blk_threads_destroy(BlkBackend *b) {
        BlkThreads *t = (BlkThreads *) b;

        blk_pool_stop(&t->pool);
        blk_base_close(b);
        g_free(t);
}

static const BlkBackendOps blk_threads_ops = {
        .name = "threads",
        .submit = blk_threads_submit,
        .commit = blk_threads_commit,
        .reap = blk_threads_reap,
        .inflight = blk_threads_inflight,
        .destroy = blk_threads_destroy,
};

int blk_threads_create(BlkBackend *base, const BlkOpenOptions *opts, BlkBackend **out) {
        BlkThreads *t = g_new0(BlkThreads, 1);

        t->base = *base;
        t->base.ops = &blk_threads_ops;
        int r = blk_pool_start(&t->pool, &t->base, opts->threads ? opts->threads : 4);
        if (r < 0) {
                g_free(t);
                return r;
        }
        *base = (BlkBackend) { .fd = -1, .event_fd = -1 };     /* moved */
        *out = &t->base;
        return 0;
}
