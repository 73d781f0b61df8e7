/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Block backends: the seam between device models and storage.
 *
 * A backend is a raw file or a block device behind an ops table with two
 * engines: io_uring (the fast path, when built with liburing and the kernel
 * allows it) and a portable thread pool doing preadv/pwritev; or the null
 * backend, which stores nothing (reads return zeroes or a fixed pattern,
 * writes are dropped) to measure a device without a disk; or an NBD export
 * through libnbd (blk-nbd.c: a network backend that reconnects, whose
 * requests wait while it is down and then fail with -ENOTCONN); or a Ceph
 * RBD image through librbd (blk-rbd.c).  Requests are
 * submitted, then committed in batches; completions are delivered by
 * blk_backend_reap() on the thread that calls it, never asynchronously, so
 * a device's I/O thread owns its callbacks.  blk_backend_fd() is readable
 * when completions that finished elsewhere wait.  Reaping runs no system
 * call when nothing finished and may leave the fd readable, so a caller
 * that polls pays nothing for it: before it sleeps on the fd it calls
 * blk_backend_arm(), which clears the fd and says whether completions
 * already wait (then it reaps instead of sleeping).  The fd may also turn
 * readable after the completion it announces was reaped: a caller that saw
 * it readable reaps and arms again, whatever blk_backend_inflight() says.
 *
 * One thread at a time submits to and reaps a backend; blk_backend_clone()
 * gives another thread its own.  Opening, resizing, blk_execute_sync() and
 * freeing an idle backend may happen on any thread.
 *
 * Durability model (an honest volatile write cache): a write completes when
 * the data is in the page cache (or, with O_DIRECT, handed to the device);
 * BLK_FLUSH (fdatasync) makes every completed write durable; BLK_F_FUA makes
 * that one write durable before it completes (RWF_DSYNC, or fdatasync after).
 *
 * Return convention: 0 or a count on success, negative errno on failure.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef enum BlkOp {
        BLK_READ,
        BLK_WRITE,
        BLK_FLUSH,
        BLK_WRITE_ZEROES,
        BLK_DISCARD,
        _BLK_OP_MAX,
} BlkOp;

const char *blk_op_to_string(BlkOp op);

enum {
        BLK_F_FUA = 1u << 0,    /* write / write-zeroes: durable before completion */
        BLK_F_UNMAP = 1u << 1,  /* write-zeroes: may deallocate (punch a hole) */
};

typedef enum BlkEngine {
        BLK_ENGINE_AUTO,
        BLK_ENGINE_URING,
        BLK_ENGINE_THREADS,
        _BLK_ENGINE_MAX,
} BlkEngine;

const char *blk_engine_to_string(BlkEngine e);

/* What a backend can do, for the device to advertise only that. */
enum {
        BLK_CAP_DISCARD = 1u << 0,          /* discard is more than a no-op */
        BLK_CAP_DISCARD_ZEROES = 1u << 1,   /* discarded ranges read back as zeroes */
        BLK_CAP_WRITE_ZEROES_UNMAP = 1u << 2,
};

/* io_uring features an io_uring backend uses, each where the kernel offers it. */
enum {
        BLK_URING_FIXED_FILE = 1u << 0,     /* the data fd registered with the ring */
        BLK_URING_COOP_TASKRUN = 1u << 1,   /* no interrupt of the submitter for completion work */
};

typedef struct BlkRequest BlkRequest;
typedef void (*BlkCompleteFn)(BlkRequest *req, int ret);

/*
 * One request, owned by the caller and embedded in its own command state.
 * The iovec array and the buffers must stay valid until the callback runs.
 * ret is 0 on success or -errno; for reads and writes the whole length was
 * transferred when it is 0.
 */
struct BlkRequest {
        BlkOp op;
        unsigned flags;
        uint64_t offset;
        uint64_t len;                   /* bytes; for READ/WRITE = sum of iov */
        const struct iovec *iov;
        unsigned niov;
        BlkCompleteFn cb;
        void *opaque;

        /* Backend-private. */
        BlkRequest *next_;
        void *bounce_;
        struct iovec bounce_iov_;
        int ret_;
};

typedef struct BlkBackend BlkBackend;
typedef struct BlkOpenOptions BlkOpenOptions;

typedef struct BlkBackendOps {
        const char *name;
        /* Queue r; it runs at the latest at the next commit.  0 or -errno (r not queued). */
        int (*submit)(BlkBackend *b, BlkRequest *r);
        /* Start every queued request. */
        void (*commit)(BlkBackend *b);
        /* Run the callbacks of finished requests; returns how many ran. */
        unsigned (*reap)(BlkBackend *b);
        /* Requests submitted and not yet reaped. */
        unsigned (*inflight)(const BlkBackend *b);
        /* Before sleeping on the fd: clear it; true when completions already wait.  NULL: false. */
        bool (*arm)(BlkBackend *b);
        void (*destroy)(BlkBackend *b);
        /* Optional, for backends without a data fd (NULL: the file engines' own). */
        int (*execute)(BlkBackend *b, BlkRequest *r);           /* blk_execute_sync() */
        int (*resize)(BlkBackend *b, uint64_t new_size);        /* blk_backend_resize() */
        int (*clone)(const BlkBackend *b, BlkBackend **out);    /* blk_backend_clone() */
        /* What the backend waits for ("" when nothing): any thread. */
        void (*waiting)(const BlkBackend *b, char *buf, size_t size);
} BlkBackendOps;

struct BlkBackend {
        const BlkBackendOps *ops;
        char *path;
        int fd;                         /* the data fd (owned) */
        int event_fd;                   /* readable when completions wait (owned) */
        uint64_t size;                  /* bytes */
        uint32_t dio_align;             /* O_DIRECT buffer/offset alignment, 1 when buffered */
        bool read_only;
        bool direct;
        bool is_blockdev;
        bool is_null;                   /* the null backend: stores no data */
        unsigned uring;                 /* BLK_URING_*: the io_uring features in use */
        unsigned caps;                  /* BLK_CAP_* */
        BlkOpenOptions *opened_;        /* how it was opened, for blk_backend_clone() (private) */
};

struct BlkOpenOptions {
        const char *path;               /* for messages, and to open when fd < 0 */
        int fd;                         /* an already open fd (consumed), or -1 */
        uint64_t size;                  /* files: create/extend sparse to this size; 0 keeps */
        bool read_only;
        bool direct;                    /* O_DIRECT */
        BlkEngine engine;
        unsigned queue_depth;           /* io_uring entries / pool bound; 0 = 256 */
        unsigned threads;               /* thread-pool workers; 0 = 4 */
        unsigned uring_refuse;          /* BLK_URING_* not to use even where offered (tests of the fallbacks) */
        bool null;                      /* the null backend of size bytes: no file (fd, path unused) */
        int null_pattern;               /* null: the byte reads return, 0..255 (0: zeroes) */
        const char *nbd_uri;            /* an NBD export (nbd://HOST[:PORT]/EXPORT or
                                         * nbd+unix:///EXPORT?socket=PATH): fd, path unused */
        unsigned nbd_wait_ms;           /* nbd: how long I/O waits for a lost server; 0 = 10 s */
        /* A Ceph RBD image (rbd_image set; fd, path unused): created of size when missing and size > 0. */
        const char *rbd_pool, *rbd_namespace, *rbd_image;
        const char *rbd_conf, *rbd_id, *rbd_keyring;    /* NULL: Ceph's defaults (client.admin) */
        bool rbd_lock;                  /* hold the image's exclusive lock while open */
};

/* What the null backend was asked to do (its only trace of the data). */
typedef struct BlkNullStats {
        uint64_t reads, writes, others;
        uint64_t read_bytes, write_bytes;
} BlkNullStats;

/*
 * Open a backend.  Returns 0 and *out, or -errno: -ENOENT (no such file and
 * no size to create it), -EINVAL (size smaller than the file, or a size given
 * for a block device, or O_DIRECT impossible), -EROFS, or an open/io_uring
 * errno.  On failure opts->fd is closed.  With opts->null: -EINVAL for a
 * zero size or a pattern outside 0..255 (opts->fd is closed, path unused).
 */
int blk_backend_open(const BlkOpenOptions *opts, BlkBackend **out);
void blk_backend_free(BlkBackend *b);

/*
 * Another submission context on the same storage, for another thread: a
 * duplicate of the fd (or a null backend of the same size and pattern)
 * with its own ring, thread pool or queue, opened as b was.  Each is used
 * by one thread; resize each.  0 and *out, or -errno.
 */
int blk_backend_clone(const BlkBackend *b, BlkBackend **out);

/*
 * What b is waiting for, e.g. a lost NBD server it reconnects to; "" when
 * nothing.  Safe from any thread.
 */
void blk_backend_waiting(const BlkBackend *b, char *buf, size_t size);

/* The null backend's counters: true, or false when b is not a null backend.  b's thread only. */
bool blk_null_get_stats(const BlkBackend *b, BlkNullStats *st);

static inline int blk_backend_submit(BlkBackend *b, BlkRequest *r) { return b->ops->submit(b, r); }
static inline void blk_backend_commit(BlkBackend *b) { b->ops->commit(b); }
static inline unsigned blk_backend_reap(BlkBackend *b) { return b->ops->reap(b); }
static inline unsigned blk_backend_inflight(const BlkBackend *b) { return b->ops->inflight(b); }
static inline int blk_backend_fd(const BlkBackend *b) { return b->event_fd; }
static inline bool blk_backend_arm(BlkBackend *b) { return b->ops->arm && b->ops->arm(b); }

/* Submit, commit and wait for every in-flight request to be reaped. */
void blk_backend_drain(BlkBackend *b);

/*
 * Grow to new_size (files: ftruncate, never shrinking data; block devices:
 * re-read the device size, new_size must be 0 or equal to it).  0 or -errno.
 */
int blk_backend_resize(BlkBackend *b, uint64_t new_size);

/*
 * Run one request synchronously on the calling thread (what the thread
 * pool's workers do).  Returns 0 or -errno.
 */
int blk_execute_sync(BlkBackend *b, BlkRequest *r);
