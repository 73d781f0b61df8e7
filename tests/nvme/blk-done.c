/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>

#include "blk-done.h"

void blk_done_cb(BlkRequest *r, int ret) {
        BlkDone *d = (BlkDone *) r;

        d->ret = ret;
        d->done = true;
}

void blk_done_wait_all(BlkBackend *b, BlkDone *d, unsigned n) {
        for (;;) {
                unsigned left = 0;

                for (unsigned i = 0; i < n; i++)
                        left += !d[i].done;
                if (!left)
                        return;
                struct pollfd p = { .fd = blk_backend_fd(b), .events = POLLIN };
                if (blk_backend_reap(b) == 0)
                        assert_true(poll(&p, 1, 60000) >= 0);
        }
}

int blk_done_run(BlkBackend *b, BlkDone *d) {
        d->done = false;
        d->req.cb = blk_done_cb;
        int r = blk_backend_submit(b, &d->req);
        if (r < 0)
                return r;
        blk_backend_commit(b);
        blk_done_wait_all(b, d, 1);
        return d->ret;
}

int blk_done_rw(BlkBackend *b, BlkOp op, void *buf, size_t len, uint64_t off, unsigned flags) {
        BlkDone d = { .req = { .op = op, .flags = flags, .offset = off, .len = len, .niov = 1 } };

        d.iov[0] = (struct iovec) { buf, len };
        d.req.iov = d.iov;
        return blk_done_run(b, &d);
}

int blk_done_simple(BlkBackend *b, BlkOp op, uint64_t off, uint64_t len, unsigned flags) {
        BlkDone d = { .req = { .op = op, .flags = flags, .offset = off, .len = len } };

        return blk_done_run(b, &d);
}

void pattern_fill(uint8_t *buf, size_t len, unsigned seed) {
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t) (i * 31 + seed * 7 + (i >> 9));
}

bool all_zero(const uint8_t *p, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (p[i])
                        return false;
        return true;
}
