/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The io_uring engine: reads, writes (FUA as RWF_DSYNC) and flushes
 * (IORING_FSYNC_DATASYNC) go through the ring; write-zeroes and discard,
 * rare and often ioctls, go to a small helper pool.  Completions of both
 * are announced on the backend's event fd (registered with the ring).
 */
#include <errno.h>
#include <liburing.h>
#include <string.h>

#include <glib.h>

#include "blk-internal.h"

typedef struct BlkUring {
        BlkBackend base;
        struct io_uring ring;
        BlkPool pool;
        BlkList staged_pool;
        BlkList backlog;                /* no free SQE: retried at commit */
        unsigned queued;                /* SQEs prepared, not yet submitted */
        unsigned inflight;
} BlkUring;

static bool blk_uring_prep(BlkUring *u, BlkRequest *r) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        const struct iovec *iov = r->bounce_ ? &r->bounce_iov_ : r->iov;
        unsigned niov = r->bounce_ ? 1 : r->niov;

        if (!sqe)
                return false;
        switch (r->op) {
        case BLK_READ:
                io_uring_prep_readv(sqe, u->base.fd, iov, niov, r->offset);
                break;
        case BLK_WRITE:
                io_uring_prep_writev2(sqe, u->base.fd, iov, niov, r->offset,
                                      (r->flags & BLK_F_FUA) ? RWF_DSYNC : 0);
                break;
        default:
                io_uring_prep_fsync(sqe, u->base.fd, IORING_FSYNC_DATASYNC);
                break;
        }
        io_uring_sqe_set_data(sqe, r);
        u->queued++;
        return true;
}

static int blk_uring_submit(BlkBackend *b, BlkRequest *r) {
        BlkUring *u = (BlkUring *) b;

        r->bounce_ = NULL;
        r->next_ = NULL;
        if (b->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
                return -EROFS;
        if (r->op != BLK_FLUSH && (r->offset > b->size || r->len > b->size - r->offset))
                return -ERANGE;

        if (r->op == BLK_WRITE_ZEROES || r->op == BLK_DISCARD) {
                blk_list_push(&u->staged_pool, r);
                u->inflight++;
                return 0;
        }
        if (r->op == BLK_FLUSH && b->read_only) {
                /* Nothing to make durable; complete through the pool for ordering. */
                blk_list_push(&u->staged_pool, r);
                u->inflight++;
                return 0;
        }
        if (blk_needs_bounce(b, r)) {
                int ret = blk_bounce_begin(b, r);
                if (ret < 0)
                        return ret;
        }
        if (!u->backlog.head && blk_uring_prep(u, r)) {
                u->inflight++;
                return 0;
        }
        blk_list_push(&u->backlog, r);
        u->inflight++;
        return 0;
}

static void blk_uring_commit(BlkBackend *b) {
        BlkUring *u = (BlkUring *) b;

        blk_pool_queue(&u->pool, &u->staged_pool);
        for (;;) {
                if (u->queued > 0) {
                        int n = io_uring_submit(&u->ring);
                        if (n > 0)
                                u->queued -= MIN((unsigned) n, u->queued);
                        else if (n < 0 && n != -EINTR && n != -EAGAIN && n != -EBUSY)
                                g_debug("io_uring_submit on %s: %s", b->path, g_strerror(-n));
                }
                if (!u->backlog.head)
                        break;
                BlkRequest *r = u->backlog.head;
                if (!blk_uring_prep(u, r))
                        break;          /* ring full: the next reap/commit retries */
                blk_list_pop(&u->backlog);
        }
}

static void blk_uring_finish(BlkUring *u, BlkRequest *r, int res) {
        int ret;

        if (res < 0) {
                ret = res;
        } else if ((r->op == BLK_READ || r->op == BLK_WRITE) && (uint64_t) res < r->len) {
                /* Short transfer: finish the rest synchronously (rare). */
                ret = blk_rw_sync_from(&u->base, r, (uint64_t) res);
        } else {
                ret = 0;
        }
        if (ret == -EOPNOTSUPP && r->op == BLK_WRITE && (r->flags & BLK_F_FUA))
                ret = blk_rw_sync_from(&u->base, r, 0);  /* no RWF_DSYNC: retried with fdatasync */
        blk_bounce_end(r, ret);
        u->inflight--;
        r->cb(r, ret);
}

static unsigned blk_uring_reap(BlkBackend *b) {
        BlkUring *u = (BlkUring *) b;
        struct io_uring_cqe *cqe;
        BlkList done = { 0 };
        BlkRequest *r;
        unsigned n = 0;

        /* Drain the event fd first, then every CQE: a completion posted after the drain signals again. */
        blk_event_clear(b);
        while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
                r = io_uring_cqe_get_data(cqe);
                int res = cqe->res;
                io_uring_cqe_seen(&u->ring, cqe);
                blk_uring_finish(u, r, res);
                n++;
        }
        blk_pool_take_done(&u->pool, &done);
        while ((r = blk_list_pop(&done))) {
                u->inflight--;
                n++;
                r->cb(r, r->ret_);
        }
        if (u->backlog.head)
                blk_uring_commit(b);
        return n;
}

static unsigned blk_uring_inflight(const BlkBackend *b) {
        return ((const BlkUring *) b)->inflight;
}

static void blk_uring_destroy(BlkBackend *b) {
        BlkUring *u = (BlkUring *) b;

        blk_pool_stop(&u->pool);
        io_uring_queue_exit(&u->ring);
        blk_base_close(b);
        g_free(u);
}

static const BlkBackendOps blk_uring_ops = {
        .name = "io_uring",
        .submit = blk_uring_submit,
        .commit = blk_uring_commit,
        .reap = blk_uring_reap,
        .inflight = blk_uring_inflight,
        .destroy = blk_uring_destroy,
};

int blk_uring_create(BlkBackend *base, const BlkOpenOptions *opts, BlkBackend **out) {
        BlkUring *u = g_new0(BlkUring, 1);
        unsigned depth = opts->queue_depth ? opts->queue_depth : 256;
        int r;

        u->base = *base;
        u->base.ops = &blk_uring_ops;
        r = io_uring_queue_init(depth, &u->ring, 0);
        if (r < 0) {
                g_free(u);
                return r;
        }
        r = io_uring_register_eventfd(&u->ring, u->base.event_fd);
        if (r == 0)
                r = blk_pool_start(&u->pool, &u->base, 2);
        if (r < 0) {
                io_uring_queue_exit(&u->ring);
                g_free(u);
                return r;
        }
        *base = (BlkBackend) { .fd = -1, .event_fd = -1 };
        *out = &u->base;
        return 0;
}
