/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Block backend requests for the backend tests (test-blk-nbd, test-blk-rbd):
 * a request with its completion recorded, run to completion by reaping the
 * backend; test patterns.  cmocka asserts on failure.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "block/blk.h"

typedef struct BlkDone {
        BlkRequest req;
        struct iovec iov[4];
        int ret;
        bool done;
} BlkDone;

/* The completion callback: records ret and done. */
void blk_done_cb(BlkRequest *r, int ret);
/* Reap b until every request of d[0..n) finished. */
void blk_done_wait_all(BlkBackend *b, BlkDone *d, unsigned n);
/* Submit d, commit, wait: the request's result or the submission's -errno. */
int blk_done_run(BlkBackend *b, BlkDone *d);
/* One read or write of buf (op), or a request without data (flush, discard, write zeroes). */
int blk_done_rw(BlkBackend *b, BlkOp op, void *buf, size_t len, uint64_t off, unsigned flags);
int blk_done_simple(BlkBackend *b, BlkOp op, uint64_t off, uint64_t len, unsigned flags);

void pattern_fill(uint8_t *buf, size_t len, unsigned seed);
bool all_zero(const uint8_t *p, size_t len);
