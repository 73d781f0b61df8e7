/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shared between the block engines; not for device models. */
#pragma once

#include <pthread.h>

#include "blk.h"

/* A FIFO of requests linked through next_. */
typedef struct BlkList {
        BlkRequest *head, *tail;
} BlkList;

static inline void blk_list_push(BlkList *l, BlkRequest *r) {
        r->next_ = NULL;
        if (l->tail)
                l->tail->next_ = r;
        else
                l->head = r;
        l->tail = r;
}

static inline BlkRequest *blk_list_pop(BlkList *l) {
        BlkRequest *r = l->head;
        if (r) {
                l->head = r->next_;
                if (!l->head)
                        l->tail = NULL;
                r->next_ = NULL;
        }
        return r;
}

static inline void blk_list_splice(BlkList *dst, BlkList *src) {
        if (!src->head)
                return;
        if (dst->tail)
                dst->tail->next_ = src->head;
        else
                dst->head = src->head;
        dst->tail = src->tail;
        src->head = src->tail = NULL;
}

/*
 * A pool of worker threads running blk_execute_sync(); finished requests
 * are collected and announced on the backend's event fd.
 */
typedef struct BlkPool {
        BlkBackend *b;
        pthread_t *threads;
        unsigned n_threads;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        BlkList work;
        BlkList done;
        bool stop;
} BlkPool;

int blk_pool_start(BlkPool *p, BlkBackend *b, unsigned n_threads);
void blk_pool_stop(BlkPool *p);
void blk_pool_queue(BlkPool *p, BlkList *reqs);
/* Move finished requests to out (FIFO). */
void blk_pool_take_done(BlkPool *p, BlkList *out);
/* Are finished requests waiting? */
bool blk_pool_has_done(BlkPool *p);

/* Signal / clear the backend's event fd. */
void blk_event_signal(BlkBackend *b);
void blk_event_clear(BlkBackend *b);

/* O_DIRECT: does r need an aligned bounce buffer? */
bool blk_needs_bounce(const BlkBackend *b, const BlkRequest *r);
/* Allocate r->bounce_ (copying write data in) and point r->bounce_iov_ at it. 0 or -ENOMEM. */
int blk_bounce_begin(const BlkBackend *b, BlkRequest *r);
/* Copy read data out (when ret == 0) and free the bounce buffer. */
void blk_bounce_end(BlkRequest *r, int ret);

/* Read or write r from byte `done` on, synchronously, looping on short transfers. */
int blk_rw_sync_from(BlkBackend *b, BlkRequest *r, uint64_t done);

void blk_base_close(BlkBackend *b);

int blk_null_create(const BlkOpenOptions *opts, BlkBackend **out);
/* blk_execute_sync() of a null backend. */
int blk_null_execute(BlkBackend *b, BlkRequest *r);
int blk_threads_create(BlkBackend *base, const BlkOpenOptions *opts, BlkBackend **out);
#if HAVE_LIBRBD
int blk_rbd_create(const BlkOpenOptions *opts, BlkBackend **out);
#endif
#if HAVE_LIBNBD
int blk_nbd_create(const BlkOpenOptions *opts, BlkBackend **out);
#endif
#if HAVE_LIBURING
int blk_uring_create(BlkBackend *base, const BlkOpenOptions *opts, BlkBackend **out);
#endif
