/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The io_uring engine: reads, writes (FUA as RWF_DSYNC) and flushes
 * (IORING_FSYNC_DATASYNC) go through the ring; write-zeroes and discard,
 * rare and often ioctls, go to a small helper pool.  Completions of both
 * are announced on the backend's event fd (registered with the ring).
 *
 * What the kernel offers is used, each with a fallback (BlkBackend.uring):
 * the data fd registered with the ring (no file lookup per request), and
 * completion work run cooperatively, when the thread next enters the
 * kernel, with a flag telling it that some waits (COOP_TASKRUN and
 * TASKRUN_FLAG, Linux 5.19), else the defaults.  Not SINGLE_ISSUER and
 * DEFER_TASKRUN: a ring of theirs refuses every registration call from
 * any thread but its submitter (EEXIST), so a backend freed on another
 * thread than its I/O thread (NVMe: the control thread) could not let go
 * of its registered file, and the file (and the locks on it) outlived the
 * backend until the ring's asynchronous teardown; page-cache reads, which
 * complete inline, measured no faster with them.
 * A request with one iovec is a plain read or write (no iovec array for
 * the kernel to copy in).  Reaping reads the event fd only in
 * blk_uring_arm(), before the caller sleeps: a polling thread makes no
 * system call for it.
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
        unsigned pool_inflight;         /* of them, in the helper pool */
        int sqe_fd;                     /* what SQEs name: 0 (the registered file) or the fd */
        uint8_t sqe_flags;              /* IOSQE_FIXED_FILE or 0 */
} BlkUring;

static bool blk_uring_prep(BlkUring *u, BlkRequest *r) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        const struct iovec *iov = r->bounce_ ? &r->bounce_iov_ : r->iov;
        unsigned niov = r->bounce_ ? 1 : r->niov;
        int fd = u->sqe_fd;

        if (!sqe)
                return false;
        switch (r->op) {
        case BLK_READ:
                if (niov == 1)
                        io_uring_prep_read(sqe, fd, iov->iov_base, (unsigned) iov->iov_len, r->offset);
                else
                        io_uring_prep_readv(sqe, fd, iov, niov, r->offset);
                break;
        case BLK_WRITE:
                if (niov == 1)
                        io_uring_prep_write(sqe, fd, iov->iov_base, (unsigned) iov->iov_len, r->offset);
                else
                        io_uring_prep_writev(sqe, fd, iov, niov, r->offset);
                sqe->rw_flags = (r->flags & BLK_F_FUA) ? RWF_DSYNC : 0;
                break;
        default:
                io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
                break;
        }
        sqe->flags |= u->sqe_flags;
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

        if (r->op == BLK_WRITE_ZEROES || r->op == BLK_DISCARD ||
            /* Nothing to make durable; complete through the pool for ordering. */
            (r->op == BLK_FLUSH && b->read_only)) {
                blk_list_push(&u->staged_pool, r);
                u->inflight++;
                u->pool_inflight++;
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

        /* The event fd is left alone: blk_uring_arm() clears it before the caller sleeps. */
        while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
                r = io_uring_cqe_get_data(cqe);
                int res = cqe->res;
                io_uring_cqe_seen(&u->ring, cqe);
                blk_uring_finish(u, r, res);
                n++;
        }
        if (u->pool_inflight > 0)
                blk_pool_take_done(&u->pool, &done);
        while ((r = blk_list_pop(&done))) {
                u->inflight--;
                u->pool_inflight--;
                n++;
                r->cb(r, r->ret_);
        }
        if (u->backlog.head)
                blk_uring_commit(b);
        return n;
}

/*
 * Clear the event fd, then look: a completion posted before the clear is
 * seen here (its CQE was written before it signalled), one after it
 * signals again.  Deferred completion work counts as waiting (the reap's
 * peek runs it).
 */
static bool blk_uring_arm(BlkBackend *b) {
        BlkUring *u = (BlkUring *) b;

        blk_event_clear(b);
        if (io_uring_cq_ready(&u->ring) > 0 ||
            (IO_URING_READ_ONCE(*u->ring.sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)))
                return true;
        return u->pool_inflight > 0 && blk_pool_has_done(&u->pool);
}

static unsigned blk_uring_inflight(const BlkBackend *b) {
        return ((const BlkUring *) b)->inflight;
}

static void blk_uring_destroy(BlkBackend *b) {
        BlkUring *u = (BlkUring *) b;

        blk_pool_stop(&u->pool);
        /* The ring is torn down asynchronously after exit: let go of the file now, so
         * that its locks (vfud's image lock) go with our last descriptor (any thread may). */
        if (u->base.uring & BLK_URING_FIXED_FILE)
                (void) io_uring_unregister_files(&u->ring);
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
        .arm = blk_uring_arm,
        .destroy = blk_uring_destroy,
};

/* The setups to try, best first: each drops what an older kernel refuses (EINVAL). */
static const struct {
        unsigned setup;
        unsigned features;
} blk_uring_setups[] = {
        { IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, BLK_URING_COOP_TASKRUN },
        { 0, 0 },
};

static int blk_uring_init(BlkUring *u, unsigned depth, unsigned refuse) {
        int r = -EINVAL;

        for (size_t i = 0; i < G_N_ELEMENTS(blk_uring_setups); i++) {
                if (blk_uring_setups[i].features & refuse)
                        continue;
                struct io_uring_params p = { .flags = blk_uring_setups[i].setup };
                r = io_uring_queue_init_params(depth, &u->ring, &p);
                if (r == -EINVAL)
                        continue;
                if (r < 0)
                        return r;
                u->base.uring = blk_uring_setups[i].features;
                break;
        }
        if (r < 0)
                return r;
        u->sqe_fd = u->base.fd;
        if (!(refuse & BLK_URING_FIXED_FILE) && io_uring_register_files(&u->ring, &u->base.fd, 1) == 0) {
                u->sqe_fd = 0;
                u->sqe_flags = IOSQE_FIXED_FILE;
                u->base.uring |= BLK_URING_FIXED_FILE;
        }
        return 0;
}

int blk_uring_create(BlkBackend *base, const BlkOpenOptions *opts, BlkBackend **out) {
        BlkUring *u = g_new0(BlkUring, 1);
        unsigned depth = opts->queue_depth ? opts->queue_depth : 256;
        int r;

        u->base = *base;
        u->base.ops = &blk_uring_ops;
        r = blk_uring_init(u, depth, opts->uring_refuse);
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
