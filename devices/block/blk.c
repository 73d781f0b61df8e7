/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening backends: files and block devices, sizes, O_DIRECT alignment,
 * capabilities, and the engine choice.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "blk-internal.h"

static const char *const blk_op_names[_BLK_OP_MAX] = {
        [BLK_READ] = "read",
        [BLK_WRITE] = "write",
        [BLK_FLUSH] = "flush",
        [BLK_WRITE_ZEROES] = "write-zeroes",
        [BLK_DISCARD] = "discard",
};

const char *blk_op_to_string(BlkOp op) {
        return (unsigned) op < _BLK_OP_MAX ? blk_op_names[op] : NULL;
}

static const char *const blk_engine_names[_BLK_ENGINE_MAX] = {
        [BLK_ENGINE_AUTO] = "auto",
        [BLK_ENGINE_URING] = "io_uring",
        [BLK_ENGINE_THREADS] = "threads",
};

const char *blk_engine_to_string(BlkEngine e) {
        return (unsigned) e < _BLK_ENGINE_MAX ? blk_engine_names[e] : NULL;
}

void blk_event_signal(BlkBackend *b) {
        uint64_t one = 1;
        ssize_t n;

        do
                n = write(b->event_fd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
}

void blk_event_clear(BlkBackend *b) {
        uint64_t v;
        ssize_t n;

        do
                n = read(b->event_fd, &v, sizeof(v));
        while (n < 0 && errno == EINTR);
}

bool blk_needs_bounce(const BlkBackend *b, const BlkRequest *r) {
        if (!b->direct || (r->op != BLK_READ && r->op != BLK_WRITE))
                return false;
        for (unsigned i = 0; i < r->niov; i++)
                if (((uintptr_t) r->iov[i].iov_base | r->iov[i].iov_len) & (b->dio_align - 1))
                        return true;
        return false;
}

int blk_bounce_begin(const BlkBackend *b, BlkRequest *r) {
        void *buf = NULL;

        if (posix_memalign(&buf, MAX(b->dio_align, 4096u), MAX(r->len, 1)) != 0)
                return -ENOMEM;
        if (r->op == BLK_WRITE) {
                size_t off = 0;
                for (unsigned i = 0; i < r->niov; i++) {
                        memcpy((uint8_t *) buf + off, r->iov[i].iov_base, r->iov[i].iov_len);
                        off += r->iov[i].iov_len;
                }
        }
        r->bounce_ = buf;
        r->bounce_iov_.iov_base = buf;
        r->bounce_iov_.iov_len = r->len;
        return 0;
}

void blk_bounce_end(BlkRequest *r, int ret) {
        if (!r->bounce_)
                return;
        if (ret == 0 && r->op == BLK_READ) {
                size_t off = 0;
                for (unsigned i = 0; i < r->niov; i++) {
                        memcpy(r->iov[i].iov_base, (uint8_t *) r->bounce_ + off, r->iov[i].iov_len);
                        off += r->iov[i].iov_len;
                }
        }
        free(r->bounce_);
        r->bounce_ = NULL;
}

void blk_base_close(BlkBackend *b) {
        if (b->fd >= 0)
                close(b->fd);
        if (b->event_fd >= 0)
                close(b->event_fd);
        g_free(b->path);
        b->fd = b->event_fd = -1;
        b->path = NULL;
}

/* The alignment O_DIRECT wants: 512 when a 512-byte direct read works, else 4096. */
static uint32_t blk_probe_dio_align(int fd) {
        void *buf = NULL;
        uint32_t align = 4096;

        if (posix_memalign(&buf, 4096, 4096) != 0)
                return align;
        if (pread(fd, buf, 512, 0) >= 0)
                align = 512;
        free(buf);
        return align;
}

static int blk_open_fd(const BlkOpenOptions *opts, bool *created) {
        int flags = (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;

        *created = false;
        if (opts->fd >= 0)
                return opts->fd;
        if (!opts->path)
                return -EINVAL;
        int fd = open(opts->path, flags);
        if (fd < 0 && errno == ENOENT && opts->size > 0 && !opts->read_only) {
                fd = open(opts->path, flags | O_CREAT | O_EXCL, 0600);
                *created = fd >= 0;
        }
        return fd < 0 ? -errno : fd;
}

static void blk_probe_caps(BlkBackend *b) {
        b->caps = 0;
        if (b->read_only)
                return;
        if (b->is_blockdev) {
                b->caps = BLK_CAP_DISCARD;
                return;
        }
        /* A hole punched past EOF is a no-op where punching is supported. */
        if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t) b->size + (1 << 20), 4096) == 0)
                b->caps = BLK_CAP_DISCARD | BLK_CAP_DISCARD_ZEROES | BLK_CAP_WRITE_ZEROES_UNMAP;
}

static int blk_setup(BlkBackend *b, const BlkOpenOptions *opts) {
        struct stat st;

        if (fstat(b->fd, &st) < 0)
                return -errno;
        int acc = fcntl(b->fd, F_GETFL);
        if (acc < 0)
                return -errno;
        if (!b->read_only && (acc & O_ACCMODE) == O_RDONLY)
                return -EROFS;

        if (S_ISBLK(st.st_mode)) {
                uint64_t dev_size = 0;
                b->is_blockdev = true;
                if (ioctl(b->fd, BLKGETSIZE64, &dev_size) < 0)
                        return -errno;
                if (opts->size > dev_size)
                        return -EINVAL;
                b->size = opts->size ? opts->size : dev_size;
        } else if (S_ISREG(st.st_mode)) {
                uint64_t cur = (uint64_t) st.st_size;
                if (opts->size > cur) {
                        if (b->read_only)
                                return -EROFS;
                        if (ftruncate(b->fd, (off_t) opts->size) < 0)
                                return -errno;
                }
                b->size = opts->size ? opts->size : cur;
        } else {
                return -EINVAL;
        }

        b->dio_align = 1;
        if (opts->direct) {
                if (!(acc & O_DIRECT) && fcntl(b->fd, F_SETFL, acc | O_DIRECT) < 0)
                        return -errno;
                b->direct = true;
                b->dio_align = blk_probe_dio_align(b->fd);
        }
        blk_probe_caps(b);
        return 0;
}

static int blk_backend_open_engine(const BlkOpenOptions *opts, BlkBackend **out);

int blk_backend_open(const BlkOpenOptions *opts, BlkBackend **out) {
        int r = blk_backend_open_engine(opts, out);
        if (r < 0)
                return r;
        BlkOpenOptions *o = g_new(BlkOpenOptions, 1);
        *o = *opts;
        o->path = NULL;
        o->fd = -1;
        o->nbd_uri = NULL;              /* the NBD and RBD backends keep their own targets */
        o->rbd_pool = o->rbd_namespace = o->rbd_image = NULL;
        o->rbd_conf = o->rbd_id = o->rbd_keyring = NULL;
        (*out)->opened_ = o;
        return 0;
}

int blk_backend_clone(const BlkBackend *b, BlkBackend **out) {
        BlkOpenOptions o = *b->opened_;

        *out = NULL;
        if (b->ops->clone)
                return b->ops->clone(b, out);
        o.path = b->path;
        o.size = b->size;
        if (!b->is_null) {
                o.fd = fcntl(b->fd, F_DUPFD_CLOEXEC, 0);
                if (o.fd < 0)
                        return -errno;
        }
        return blk_backend_open(&o, out);
}

static int blk_backend_open_engine(const BlkOpenOptions *opts, BlkBackend **out) {
        BlkBackend base = { .fd = -1, .event_fd = -1 };
        bool created = false;
        int r;

        *out = NULL;
        if (opts->null) {
                if (opts->fd >= 0)
                        close(opts->fd);
                return blk_null_create(opts, out);
        }
        if (opts->rbd_image) {
                if (opts->fd >= 0)
                        close(opts->fd);
#if HAVE_LIBRBD
                return blk_rbd_create(opts, out);
#else
                return -EPROTONOSUPPORT;
#endif
        }
        if (opts->nbd_uri) {
                if (opts->fd >= 0)
                        close(opts->fd);
#if HAVE_LIBNBD
                return blk_nbd_create(opts, out);
#else
                return -EPROTONOSUPPORT;
#endif
        }
        base.read_only = opts->read_only;
        r = blk_open_fd(opts, &created);
        if (r < 0)
                return r;
        base.fd = r;
        base.path = g_strdup(opts->path ? opts->path : "(fd)");
        base.event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (base.event_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = blk_setup(&base, opts);
        if (r < 0)
                goto fail;

#if HAVE_LIBURING
        if (opts->engine != BLK_ENGINE_THREADS) {
                r = blk_uring_create(&base, opts, out);
                if (r == 0)
                        return 0;
                if (opts->engine == BLK_ENGINE_URING)
                        goto fail;
        }
#else
        if (opts->engine == BLK_ENGINE_URING) {
                r = -EOPNOTSUPP;
                goto fail;
        }
#endif
        r = blk_threads_create(&base, opts, out);
        if (r == 0)
                return 0;
fail:
        if (created && opts->path)
                unlink(opts->path);
        blk_base_close(&base);
        return r;
}

void blk_backend_free(BlkBackend *b) {
        if (!b)
                return;
        blk_backend_drain(b);
        g_free(b->opened_);
        b->ops->destroy(b);
}

void blk_backend_drain(BlkBackend *b) {
        blk_backend_commit(b);
        while (blk_backend_inflight(b) > 0) {
                struct pollfd p = { .fd = b->event_fd, .events = POLLIN };
                if (blk_backend_reap(b) > 0 || blk_backend_arm(b))
                        continue;
                (void) poll(&p, 1, 100);
        }
}

void blk_backend_waiting(const BlkBackend *b, char *buf, size_t size) {
        if (size == 0)
                return;
        buf[0] = '\0';
        if (b->ops->waiting)
                b->ops->waiting(b, buf, size);
}

int blk_backend_resize(BlkBackend *b, uint64_t new_size) {
        if (b->ops->resize)
                return b->ops->resize(b, new_size);
        if (b->is_null) {
                if (new_size < b->size && new_size != 0)
                        return -EINVAL;
                if (new_size)
                        b->size = new_size;
                return 0;
        }
        if (b->is_blockdev) {
                uint64_t dev_size = 0;
                if (ioctl(b->fd, BLKGETSIZE64, &dev_size) < 0)
                        return -errno;
                if (new_size == 0)
                        new_size = dev_size;
                if (new_size > dev_size)
                        return -EINVAL;
                b->size = new_size;
                return 0;
        }
        struct stat st;
        if (fstat(b->fd, &st) < 0)
                return -errno;
        if (new_size == 0)
                new_size = (uint64_t) st.st_size;
        if (new_size < b->size)
                return -EINVAL;         /* shrinking would lose data the guest owns */
        if (new_size > (uint64_t) st.st_size) {
                if (b->read_only)
                        return -EROFS;
                if (ftruncate(b->fd, (off_t) new_size) < 0)
                        return -errno;
        }
        b->size = new_size;
        return 0;
}
