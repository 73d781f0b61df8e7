/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtio-blk internals shared by vblk.c, vblk-io.c, vblk-thread.c and vblk-state.c. */
#pragma once

#include <pthread.h>

#include "vblk/vblk.h"
#include "vblk/vblk-req.h"

typedef enum VBlkThreadState {
        VBLK_THREAD_IDLE,               /* no request in flight, not touching guest memory */
        VBLK_THREAD_RUN,
        VBLK_THREAD_EXIT,
        _VBLK_THREAD_STATE_MAX,
} VBlkThreadState;

const char *vblk_thread_state_to_string(VBlkThreadState s);

typedef struct VBlkQueue VBlkQueue;

/* One request in flight: a slot of its queue. */
typedef struct VBlkReq {
        BlkRequest blk;                 /* first: the completion callback's container */
        VBlkQueue *q;
        struct VBlkReq *next_free;
        uint16_t id, ndesc;
        unsigned step;                  /* DISCARD/WRITE_ZEROES: next segment */
        uint64_t t_start;               /* pass_ns when taken */
        VBlkCmd cmd;
        struct iovec *iov;              /* data, iov_cap entries (grown on demand) */
        unsigned iov_cap;
        VqSeg *wseg;                    /* device-writable guest ranges, for dirty logging */
        unsigned n_wseg, wseg_cap;
} VBlkReq;

struct VBlkQueue {
        VBlk *b;
        unsigned index;
        VirtQueue *vq;                  /* NULL when the driver did not enable it */
        VBlkReq *reqs;                  /* vq->size slots while bound */
        unsigned nreqs;
        VBlkReq *free;
        unsigned inflight;
        bool completed;                 /* completions pushed since the last flush */
};

typedef struct VBlkCounters {
        uint64_t read_reqs, read_bytes, write_reqs, write_bytes;
        uint64_t flush_reqs, discard_reqs, write_zeroes_reqs, get_id_reqs;
        uint64_t io_errors, unsupported, bad_chains, inflight;
} VBlkCounters;

#define VBLK_STAT_ADD(b, field, v) __atomic_fetch_add(&(b)->c.field, (v), __ATOMIC_RELAXED)

struct VBlk {
        VBlkOptions opt;
        char *serial;
        BlkBackend *be;
        VirtioPci *vp;
        uint64_t offered;
        uint64_t features;              /* negotiated, set at start */
        bool started;
        uint8_t writeback;              /* atomic: config space writeback (5.2.5) */
        uint64_t capacity;              /* atomic: 512-byte sectors */
        VBlkLimits lim;                 /* the I/O thread's copy, set while it is idle */

        /* The I/O thread and its handshake with the control thread. */
        pthread_t thread;
        bool thread_started;
        int epfd;
        int kick_fd;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        VBlkThreadState want;
        unsigned req_seq;               /* atomic */
        unsigned ack_seq;
        VBlkThreadState state;          /* owned by the thread */
        unsigned inflight;              /* backend requests, thread-owned */

        VqChain *chain;                 /* the walker's scratch, thread-owned */
        VBlkQueue *queues;
        VBlkCounters c;                 /* atomics */
        uint64_t pass_ns;               /* the I/O thread's clock, read once per round (0: no thread) */
        LatStats lat;                   /* the I/O thread's: backend requests, start to completion */
};

/* vblk.c */
void vblk_guest_error(VBlk *b, VBlkQueue *q, const char *what, int err);
/* Bind the started queues for features without starting the data path (start, migration). */
int vblk_bind(VBlk *b, uint64_t features);
void vblk_unbind(VBlk *b);

/* vblk-io.c: one round over a queue; work done (chains taken), or -errno (queue broken). */
int vblk_queue_process(VBlkQueue *q, unsigned budget);
void vblk_queue_flush(VBlkQueue *q);

/* vblk-thread.c */
int vblk_thread_create(VBlk *b);
void vblk_thread_destroy(VBlk *b);
void vblk_thread_set(VBlk *b, VBlkThreadState want);
void vblk_wake(VBlk *b);

/* vblk-state.c */
extern const DevStateSectionSpec vblk_state_sections[];
extern const size_t vblk_n_state_sections;
int vblk_state_save(void *opaque, DevStateWriter *w);
int vblk_state_check(void *opaque, DevStateReader *r, uint64_t features, bool started);
int vblk_state_apply(void *opaque, DevStateReader *r, uint64_t features, bool started);
