/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Synchronous execution of one request: what the thread pool runs, and the
 * fallback the io_uring engine uses for short transfers and rare commands.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <glib.h>

#include "blk-internal.h"

#define BLK_ZERO_CHUNK (256u * 1024u)
/* Aligned for O_DIRECT; read-only after load. */
static const uint8_t blk_zero_buf[BLK_ZERO_CHUNK] __attribute__((aligned(4096)));

static int blk_datasync(BlkBackend *b) {
        if (b->read_only)
                return 0;
        return fdatasync(b->fd) < 0 ? -errno : 0;
}

/* One preadv/pwritev2 call; bytes or -errno. */
static ssize_t blk_rw_once(BlkBackend *b, BlkOp op, const struct iovec *iov, int niov,
                           uint64_t off, bool dsync) {
        ssize_t n;

        if (op == BLK_READ) {
                do
                        n = preadv(b->fd, iov, niov, (off_t) off);
                while (n < 0 && errno == EINTR);
                return n < 0 ? -errno : n;
        }
        do
                n = pwritev2(b->fd, iov, niov, (off_t) off, dsync ? RWF_DSYNC : 0);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}

int blk_rw_sync_from(BlkBackend *b, BlkRequest *r, uint64_t done) {
        const struct iovec *src = r->bounce_ ? &r->bounce_iov_ : r->iov;
        unsigned nsrc = r->bounce_ ? 1 : r->niov;
        bool fua = r->op == BLK_WRITE && (r->flags & BLK_F_FUA);
        bool dsync = fua;
        g_autofree struct iovec *iov = g_new(struct iovec, MAX(nsrc, 1u));

        while (done < r->len) {
                /* Build the iovec of what is left. */
                uint64_t skip = done;
                unsigned n = 0;
                for (unsigned i = 0; i < nsrc; i++) {
                        if (skip >= src[i].iov_len) {
                                skip -= src[i].iov_len;
                                continue;
                        }
                        iov[n].iov_base = (uint8_t *) src[i].iov_base + skip;
                        iov[n].iov_len = src[i].iov_len - skip;
                        skip = 0;
                        n++;
                }
                ssize_t got = blk_rw_once(b, r->op, iov, (int) MIN(n, (unsigned) IOV_MAX),
                                          r->offset + done, dsync);
                if (got == -EOPNOTSUPP && dsync) {
                        dsync = false;          /* no RWF_DSYNC: fdatasync after */
                        continue;
                }
                if (got < 0)
                        return (int) got;
                if (got == 0) {
                        if (r->op == BLK_WRITE)
                                return -EIO;
                        /* Past the end of a file that shrank underneath: zeroes. */
                        for (unsigned i = 0; i < n; i++)
                                memset(iov[i].iov_base, 0, iov[i].iov_len);
                        return 0;
                }
                done += (uint64_t) got;
        }
        if (fua && !dsync)
                return blk_datasync(b);
        return 0;
}

static int blk_write_zero_buffers(BlkBackend *b, uint64_t off, uint64_t len) {
        while (len > 0) {
                size_t chunk = (size_t) MIN(len, (uint64_t) BLK_ZERO_CHUNK);
                ssize_t n;
                do
                        n = pwrite(b->fd, blk_zero_buf, chunk, (off_t) off);
                while (n < 0 && errno == EINTR);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EIO;
                off += (uint64_t) n;
                len -= (uint64_t) n;
        }
        return 0;
}

static int blk_write_zeroes_sync(BlkBackend *b, BlkRequest *r) {
        int ret = -EOPNOTSUPP;

        if (b->is_blockdev) {
                uint64_t range[2] = { r->offset, r->len };
                ret = ioctl(b->fd, BLKZEROOUT, range) < 0 ? -errno : 0;
        } else {
                if (r->flags & BLK_F_UNMAP)
                        ret = fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        (off_t) r->offset, (off_t) r->len) < 0 ? -errno : 0;
                if (ret < 0)
                        ret = fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                                        (off_t) r->offset, (off_t) r->len) < 0 ? -errno : 0;
        }
        if (ret == -EOPNOTSUPP || ret == -EINVAL || ret == -ENOTTY)
                ret = blk_write_zero_buffers(b, r->offset, r->len);
        if (ret == 0 && (r->flags & BLK_F_FUA))
                ret = blk_datasync(b);
        return ret;
}

static int blk_discard_sync(BlkBackend *b, BlkRequest *r) {
        int ret;

        if (!(b->caps & BLK_CAP_DISCARD))
                return 0;                       /* advisory: nothing to do */
        if (b->is_blockdev) {
                uint64_t range[2] = { r->offset, r->len };
                ret = ioctl(b->fd, BLKDISCARD, range) < 0 ? -errno : 0;
        } else {
                ret = fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t) r->offset, (off_t) r->len) < 0 ? -errno : 0;
        }
        if (ret == -EOPNOTSUPP)
                ret = 0;
        return ret;
}

int blk_execute_sync(BlkBackend *b, BlkRequest *r) {
        int ret;

        if (b->is_null)
                return blk_null_execute(b, r);
        if (b->ops->execute)
                return b->ops->execute(b, r);
        if (b->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
                return -EROFS;
        if (r->op != BLK_FLUSH && (r->offset > b->size || r->len > b->size - r->offset))
                return -ERANGE;

        switch (r->op) {
        case BLK_READ:
        case BLK_WRITE:
                if (blk_needs_bounce(b, r)) {
                        ret = blk_bounce_begin(b, r);
                        if (ret < 0)
                                return ret;
                        ret = blk_rw_sync_from(b, r, 0);
                        blk_bounce_end(r, ret);
                        return ret;
                }
                return blk_rw_sync_from(b, r, 0);
        case BLK_FLUSH:
                return blk_datasync(b);
        case BLK_WRITE_ZEROES:
                return blk_write_zeroes_sync(b, r);
        case BLK_DISCARD:
                return blk_discard_sync(b, r);
        default:
                return -EINVAL;
        }
}
