/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The null engine: a backend that stores nothing, to measure a device
 * rather than a disk (SPDK's null bdev, QEMU's null-co).  Reads complete
 * with zeroes, or with a fixed byte pattern; writes, write-zeroes, discard
 * and flush are counted and dropped.  Any size, no file, no thread: a
 * request completes at the next reap, on the caller's thread, so the
 * event fd is never signalled (callers reap after commit before waiting).
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>

#include <glib.h>

#include "blk-internal.h"

typedef struct BlkNull {
        BlkBackend base;
        BlkList done;
        unsigned inflight;
        int pattern;                    /* byte reads return, 0 for zeroes */
        BlkNullStats st;
} BlkNull;

static int blk_null_submit(BlkBackend *b, BlkRequest *r) {
        BlkNull *n = (BlkNull *) b;

        r->bounce_ = NULL;
        if (b->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
                return -EROFS;
        if (r->op != BLK_FLUSH && (r->offset > b->size || r->len > b->size - r->offset))
                return -ERANGE;
        blk_list_push(&n->done, r);
        n->inflight++;
        return 0;
}

static void blk_null_commit(BlkBackend *b) {
        (void) b;
}

/* Do what r asks of a null backend: fill read buffers, count. */
static void blk_null_run(BlkNull *n, BlkRequest *r) {
        switch (r->op) {
        case BLK_READ:
                for (unsigned i = 0; i < r->niov; i++)
                        memset(r->iov[i].iov_base, n->pattern, r->iov[i].iov_len);
                n->st.reads++;
                n->st.read_bytes += r->len;
                break;
        case BLK_WRITE:
                n->st.writes++;
                n->st.write_bytes += r->len;
                break;
        default:
                n->st.others++;
                break;
        }
}

int blk_null_execute(BlkBackend *b, BlkRequest *r) {
        if (b->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
                return -EROFS;
        if (r->op != BLK_FLUSH && (r->offset > b->size || r->len > b->size - r->offset))
                return -ERANGE;
        blk_null_run((BlkNull *) b, r);
        return 0;
}

static unsigned blk_null_reap(BlkBackend *b) {
        BlkNull *n = (BlkNull *) b;
        BlkList done = n->done;
        BlkRequest *r;
        unsigned cnt = 0;

        /* Callbacks may submit again: those complete at the next reap. */
        n->done = (BlkList) { 0 };
        while ((r = blk_list_pop(&done))) {
                blk_null_run(n, r);
                n->inflight--;
                cnt++;
                r->cb(r, 0);
        }
        return cnt;
}

static unsigned blk_null_inflight(const BlkBackend *b) {
        return ((const BlkNull *) b)->inflight;
}

/* Requests complete at the next reap, never signalling: waiting ones mean "reap, do not sleep". */
static bool blk_null_arm(BlkBackend *b) {
        return ((const BlkNull *) b)->done.head != NULL;
}

static void blk_null_destroy(BlkBackend *b) {
        blk_base_close(b);
        g_free(b);
}

static const BlkBackendOps blk_null_ops = {
        .name = "null",
        .submit = blk_null_submit,
        .commit = blk_null_commit,
        .reap = blk_null_reap,
        .arm = blk_null_arm,
        .inflight = blk_null_inflight,
        .destroy = blk_null_destroy,
};

int blk_null_create(const BlkOpenOptions *opts, BlkBackend **out) {
        if (opts->size == 0 || opts->null_pattern < 0 || opts->null_pattern > 0xff)
                return -EINVAL;
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (efd < 0)
                return -errno;

        BlkNull *n = g_new0(BlkNull, 1);
        n->base = (BlkBackend) {
                .ops = &blk_null_ops,
                .path = g_strdup(opts->path ? opts->path : "(null)"),
                .fd = -1,
                .event_fd = efd,
                .size = opts->size,
                .dio_align = 1,
                .read_only = opts->read_only,
                .is_null = true,
                .caps = opts->read_only ? 0 : BLK_CAP_DISCARD | BLK_CAP_WRITE_ZEROES_UNMAP |
                        (opts->null_pattern == 0 ? BLK_CAP_DISCARD_ZEROES : 0),
        };
        n->pattern = opts->null_pattern;
        *out = &n->base;
        return 0;
}

bool blk_null_get_stats(const BlkBackend *b, BlkNullStats *st) {
        if (!b || b->ops != &blk_null_ops)
                return false;
        *st = ((const BlkNull *) b)->st;
        return true;
}
