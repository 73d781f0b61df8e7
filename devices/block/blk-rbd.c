/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The RBD engine: a Ceph RBD image through librbd's asynchronous calls, so a
 * namespace lives on a cluster as a libvirt/OpenStack VM disk does.
 *
 * librbd completes requests on its own threads: the completion callback
 * moves the request to a locked list and signals the event fd; reap() runs
 * the callbacks on the device's I/O thread, as the other engines do.  Reads
 * and writes go out as rbd_aio_readv/writev straight from the request's
 * iovecs; Flush is rbd_aio_flush, Dataset Management rbd_aio_discard, Write
 * Zeroes rbd_aio_write_zeroes; FUA is a write followed by a flush (librbd
 * has no per-write FUA).  With "lock" the image's exclusive lock is taken at
 * open and kept (rbd_lock_acquire: librbd then never hands it to another
 * client), so two hosts never write one image; it goes with the backend.
 * A cluster that stops answering fails a request after rados_osd_op_timeout
 * (10 s unless the configuration sets one: librbd's default waits forever,
 * past the guest driver's own timeout) with -ENOTCONN, which the device
 * reports as a status its driver retries.  Until then waiting() (vfuctl
 * show, the D-Bus Waiting property) names the image, how many requests have
 * waited longer than RBD_WAIT_REPORT_MS and for how long the oldest has: the
 * in-flight requests sit on a list, oldest first, under the backend's lock.
 * Clones (other I/O threads) share the connection and the image handle,
 * which librbd lets several threads use, each with its own completions.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>
#include <rados/librados.h>
#include <rbd/librbd.h>

#include "blk-internal.h"

#define RBD_OP_TIMEOUT "10"
#define RBD_WAIT_REPORT_MS 1000

/* One cluster connection and image handle, shared by a backend and its clones. */
typedef struct RbdCluster {
        gint refs;
        rados_t cluster;
        rados_ioctx_t io;
        rbd_image_t img;
        bool locked;
        double op_timeout;              /* rados_osd_op_timeout, s */
        char *pool, *ns, *image, *conf, *id, *keyring;
} RbdCluster;

typedef struct BlkRbd {
        BlkBackend base;
        RbdCluster *cl;
        rbd_image_t img;                /* cl's */
        pthread_mutex_t lock;
        BlkList done;                   /* completed by librbd, under lock */
        struct RbdCmd *sent_head, *sent_tail;   /* at librbd, oldest first, under lock */
        unsigned inflight;              /* this thread's */
} BlkRbd;

/* A request's backend state (r->bounce_). */
typedef struct RbdCmd {
        BlkRbd *b;
        BlkRequest *r;
        bool flushing;                  /* the flush of a FUA write is in flight */
        gint64 sent_us;                 /* monotonic, when it went to librbd */
        struct RbdCmd *prev, *next;     /* on b->sent_*, under b->lock */
} RbdCmd;

/* Put cmd on b's list of requests at librbd / take it off; b->lock held. */
static void blk_rbd_sent_add(BlkRbd *b, RbdCmd *cmd) {
        cmd->sent_us = g_get_monotonic_time();
        cmd->next = NULL;
        cmd->prev = b->sent_tail;
        if (b->sent_tail)
                b->sent_tail->next = cmd;
        else
                b->sent_head = cmd;
        b->sent_tail = cmd;
}

static void blk_rbd_sent_del(BlkRbd *b, RbdCmd *cmd) {
        if (cmd->prev)
                cmd->prev->next = cmd->next;
        else
                b->sent_head = cmd->next;
        if (cmd->next)
                cmd->next->prev = cmd->prev;
        else
                b->sent_tail = cmd->prev;
        cmd->prev = cmd->next = NULL;
}

static void blk_rbd_cluster_unref(RbdCluster *cl) {
        if (!cl || !g_atomic_int_dec_and_test(&cl->refs))
                return;
        if (cl->img) {
                if (cl->locked)
                        (void) rbd_lock_release(cl->img);
                rbd_close(cl->img);
        }
        if (cl->io)
                rados_ioctx_destroy(cl->io);
        if (cl->cluster)
                rados_shutdown(cl->cluster);
        g_free(cl->pool);
        g_free(cl->ns);
        g_free(cl->image);
        g_free(cl->conf);
        g_free(cl->id);
        g_free(cl->keyring);
        g_free(cl);
}

/* Connect as client ID with conf and keyring (NULL: Ceph's defaults). 0 or -errno. */
static int blk_rbd_cluster_connect(const BlkOpenOptions *o, RbdCluster **out) {
        RbdCluster *cl = g_new0(RbdCluster, 1);
        int r;

        cl->refs = 1;
        cl->pool = g_strdup(o->rbd_pool);
        cl->ns = g_strdup(o->rbd_namespace);
        cl->image = g_strdup(o->rbd_image);
        cl->conf = g_strdup(o->rbd_conf);
        cl->id = g_strdup(o->rbd_id);
        cl->keyring = g_strdup(o->rbd_keyring);
        r = rados_create(&cl->cluster, cl->id && *cl->id ? cl->id : NULL);
        if (r < 0) {
                cl->cluster = NULL;
                goto fail;
        }
        r = rados_conf_read_file(cl->cluster, cl->conf && *cl->conf ? cl->conf : NULL);
        if (r < 0 && cl->conf && *cl->conf)
                goto fail;
        if (cl->keyring && *cl->keyring && (r = rados_conf_set(cl->cluster, "keyring", cl->keyring)) < 0)
                goto fail;
        /* A cluster that does not answer fails the open instead of hanging the worker... */
        (void) rados_conf_set(cl->cluster, "client_mount_timeout", "30");
        /* ...and a request, unless the configuration says otherwise. */
        char t[32] = "";
        if (rados_conf_get(cl->cluster, "rados_osd_op_timeout", t, sizeof(t)) < 0 || g_ascii_strtod(t, NULL) <= 0)
                (void) rados_conf_set(cl->cluster, "rados_osd_op_timeout", RBD_OP_TIMEOUT);
        cl->op_timeout = rados_conf_get(cl->cluster, "rados_osd_op_timeout", t, sizeof(t)) == 0 ? g_ascii_strtod(t, NULL) : 0;
        r = rados_connect(cl->cluster);
        if (r < 0)
                goto fail;
        r = rados_ioctx_create(cl->cluster, cl->pool, &cl->io);
        if (r < 0) {
                cl->io = NULL;
                goto fail;
        }
        if (cl->ns && *cl->ns)
                rados_ioctx_set_namespace(cl->io, cl->ns);
        *out = cl;
        return 0;
fail:
        blk_rbd_cluster_unref(cl);
        return r;
}

static void blk_rbd_cmd_cb(rbd_completion_t c, void *arg) {
        RbdCmd *cmd = arg;
        BlkRbd *b = cmd->b;
        BlkRequest *r = cmd->r;
        ssize_t ret = rbd_aio_get_return_value(c);

        rbd_aio_release(c);
        if (ret >= 0 && (r->op == BLK_READ || r->op == BLK_WRITE) && !cmd->flushing && (uint64_t) ret != r->len &&
            !(r->op == BLK_WRITE && ret == 0))
                ret = -EIO;
        if (ret == -ETIMEDOUT)
                ret = -ENOTCONN;        /* the cluster did not answer in time: retryable */
        r->ret_ = ret < 0 ? (int) ret : 0;
        pthread_mutex_lock(&b->lock);
        blk_rbd_sent_del(b, cmd);
        blk_list_push(&b->done, r);
        pthread_mutex_unlock(&b->lock);
        blk_event_signal(&b->base);
}

/* Start r's next step on librbd.  0 or -errno. */
static int blk_rbd_send(BlkRbd *b, BlkRequest *r) {
        RbdCmd *cmd = r->bounce_;
        rbd_completion_t c;
        int ret = rbd_aio_create_completion(cmd, blk_rbd_cmd_cb, &c);

        if (ret < 0)
                return ret;
        /* Listed before librbd sees it: its callback may run on another thread at once. */
        pthread_mutex_lock(&b->lock);
        blk_rbd_sent_add(b, cmd);
        pthread_mutex_unlock(&b->lock);
        if (cmd->flushing) {
                ret = rbd_aio_flush(b->img, c);
        } else {
                switch (r->op) {
                case BLK_READ:
                        ret = rbd_aio_readv(b->img, r->iov, (int) r->niov, r->offset, c);
                        break;
                case BLK_WRITE:
                        ret = rbd_aio_writev(b->img, r->iov, (int) r->niov, r->offset, c);
                        break;
                case BLK_FLUSH:
                        ret = rbd_aio_flush(b->img, c);
                        break;
                case BLK_DISCARD:
                        ret = rbd_aio_discard(b->img, r->offset, r->len, c);
                        break;
                case BLK_WRITE_ZEROES:
                        ret = rbd_aio_write_zeroes(b->img, r->offset, r->len, c, 0, 0);
                        break;
                default:
                        ret = -EINVAL;
                        break;
                }
        }
        if (ret < 0) {
                pthread_mutex_lock(&b->lock);
                blk_rbd_sent_del(b, cmd);
                pthread_mutex_unlock(&b->lock);
                rbd_aio_release(c);
        }
        return ret;
}

static int blk_rbd_submit(BlkBackend *base, BlkRequest *r) {
        BlkRbd *b = (BlkRbd *) base;
        RbdCmd *cmd;
        int ret;

        r->bounce_ = NULL;
        if (base->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
                return -EROFS;
        if (r->op != BLK_FLUSH && (r->offset > base->size || r->len > base->size - r->offset))
                return -ERANGE;
        cmd = g_new0(RbdCmd, 1);
        cmd->b = b;
        cmd->r = r;
        r->bounce_ = cmd;
        /* librbd queues internally: sent at once, "committed" by nature. */
        ret = (r->op == BLK_READ || r->op == BLK_WRITE || r->op == BLK_DISCARD || r->op == BLK_WRITE_ZEROES) &&
              r->len == 0 ? 1 : blk_rbd_send(b, r);
        if (ret < 0) {
                g_free(cmd);
                r->bounce_ = NULL;
                return ret;
        }
        b->inflight++;
        if (ret > 0) {          /* nothing to do: done at the next reap */
                r->ret_ = 0;
                pthread_mutex_lock(&b->lock);
                blk_list_push(&b->done, r);
                pthread_mutex_unlock(&b->lock);
                blk_event_signal(base);
        }
        return 0;
}

static void blk_rbd_commit(BlkBackend *base) {
        (void) base;
}

static unsigned blk_rbd_reap(BlkBackend *base) {
        BlkRbd *b = (BlkRbd *) base;
        BlkList done;
        BlkRequest *r;
        unsigned n = 0;

        blk_event_clear(base);
        pthread_mutex_lock(&b->lock);
        done = b->done;
        b->done = (BlkList) { 0 };
        pthread_mutex_unlock(&b->lock);
        while ((r = blk_list_pop(&done))) {
                RbdCmd *cmd = r->bounce_;
                int ret = r->ret_;

                if (ret == 0 && !cmd->flushing && (r->flags & BLK_F_FUA) &&
                    (r->op == BLK_WRITE || r->op == BLK_WRITE_ZEROES)) {
                        cmd->flushing = true;
                        ret = blk_rbd_send(b, r);
                        if (ret == 0)
                                continue;
                }
                g_free(cmd);
                r->bounce_ = NULL;
                b->inflight--;
                n++;
                r->cb(r, ret);
        }
        return n;
}

static unsigned blk_rbd_inflight(const BlkBackend *base) {
        return ((const BlkRbd *) base)->inflight;
}

static void blk_rbd_waiting(const BlkBackend *base, char *buf, size_t size) {
        BlkRbd *b = (BlkRbd *) base;
        gint64 now = g_get_monotonic_time(), oldest = 0;
        unsigned late = 0;

        pthread_mutex_lock(&b->lock);
        for (const RbdCmd *c = b->sent_head; c; c = c->next) {
                gint64 age = now - c->sent_us;
                if (age < (gint64) RBD_WAIT_REPORT_MS * 1000)
                        break;          /* oldest first: the rest are younger */
                if (!late)
                        oldest = age;
                late++;
        }
        pthread_mutex_unlock(&b->lock);
        if (!late) {
                g_strlcpy(buf, "", size);
                return;
        }
        snprintf(buf, size, "cluster for %s (%u request%s waiting, oldest %" G_GINT64_FORMAT " ms; they fail after %g s)",
                 base->path, late, late == 1 ? "" : "s", oldest / 1000, b->cl->op_timeout);
}

static void blk_rbd_destroy(BlkBackend *base) {
        BlkRbd *b = (BlkRbd *) base;

        blk_rbd_cluster_unref(b->cl);
        pthread_mutex_destroy(&b->lock);
        blk_base_close(base);
        g_free(b);
}

/* Wait for the reap that runs r's callback, here: the shutdown flush. */
typedef struct RbdSync {
        bool done;
        int ret;
} RbdSync;

static void blk_rbd_sync_cb(BlkRequest *r, int ret) {
        RbdSync *s = r->opaque;

        s->done = true;
        s->ret = ret;
}

static int blk_rbd_execute(BlkBackend *base, BlkRequest *r) {
        BlkRequest copy = *r;
        RbdSync s = { 0 };
        int ret;

        copy.cb = blk_rbd_sync_cb;
        copy.opaque = &s;
        ret = blk_rbd_submit(base, &copy);
        if (ret < 0)
                return ret;
        while (!s.done) {
                struct pollfd p = { .fd = base->event_fd, .events = POLLIN };
                if (blk_rbd_reap(base) == 0)
                        (void) poll(&p, 1, 100);
        }
        return s.ret;
}

static int blk_rbd_resize_op(BlkBackend *base, uint64_t new_size) {
        BlkRbd *b = (BlkRbd *) base;
        uint64_t cur = 0;
        int r = rbd_get_size(b->img, &cur);

        if (r < 0)
                return r;
        if (new_size == 0)
                new_size = cur;
        if (new_size < base->size)
                return -EINVAL;         /* shrinking would lose data the guest owns */
        if (new_size > cur) {
                if (base->read_only)
                        return -EROFS;
                r = rbd_resize(b->img, new_size);
                if (r < 0)
                        return r;
        }
        base->size = new_size;
        return 0;
}

static BlkRbd *blk_rbd_new(RbdCluster *cl, bool read_only);

static int blk_rbd_clone(const BlkBackend *base, BlkBackend **out) {
        const BlkRbd *b = (const BlkRbd *) base;
        BlkRbd *c;

        *out = NULL;
        g_atomic_int_inc(&b->cl->refs);
        c = blk_rbd_new(b->cl, base->read_only);
        if (!c)
                return -errno;
        c->base.size = base->size;
        c->base.caps = base->caps;
        *out = &c->base;
        return 0;
}

static const BlkBackendOps blk_rbd_ops = {
        .name = "rbd",
        .submit = blk_rbd_submit,
        .commit = blk_rbd_commit,
        .reap = blk_rbd_reap,
        .inflight = blk_rbd_inflight,
        .destroy = blk_rbd_destroy,
        .execute = blk_rbd_execute,
        .resize = blk_rbd_resize_op,
        .clone = blk_rbd_clone,
        .waiting = blk_rbd_waiting,
};

/* A backend on cl (taking its reference), without an image yet; NULL with errno. */
static BlkRbd *blk_rbd_new(RbdCluster *cl, bool read_only) {
        BlkRbd *b = g_new0(BlkRbd, 1);

        b->cl = cl;
        b->img = cl->img;
        pthread_mutex_init(&b->lock, NULL);
        b->base = (BlkBackend) {
                .ops = &blk_rbd_ops,
                .path = cl->ns && *cl->ns ? g_strdup_printf("rbd:%s/%s/%s", cl->pool, cl->ns, cl->image)
                                          : g_strdup_printf("rbd:%s/%s", cl->pool, cl->image),
                .fd = -1,
                .event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
                .dio_align = 1,
                .read_only = read_only,
        };
        if (b->base.event_fd < 0) {
                int e = errno;
                blk_rbd_destroy(&b->base);
                errno = e;
                return NULL;
        }
        return b;
}

/* Open cl's image (creating it of size when missing and size is given), lock it, size it. 0 or -errno. */
static int blk_rbd_open_image(RbdCluster *cl, const BlkOpenOptions *o, uint64_t size, bool lock, uint64_t *out_size) {
        uint64_t cur = 0;
        int r;

        r = o->read_only ? rbd_open_read_only(cl->io, cl->image, &cl->img, NULL) : rbd_open(cl->io, cl->image, &cl->img, NULL);
        if (r == -ENOENT && size > 0 && !o->read_only) {
                int order = 22;
                r = rbd_create(cl->io, cl->image, size, &order);
                if (r == 0)
                        r = rbd_open(cl->io, cl->image, &cl->img, NULL);
        }
        if (r < 0) {
                cl->img = NULL;
                return r;
        }
        if (lock && !o->read_only) {
                r = rbd_lock_acquire(cl->img, RBD_LOCK_MODE_EXCLUSIVE);
                if (r < 0)
                        return r;
                cl->locked = true;
        }
        r = rbd_get_size(cl->img, &cur);
        if (r < 0)
                return r;
        if (size > cur) {
                r = o->read_only ? -EROFS : rbd_resize(cl->img, size);
                if (r < 0)
                        return r;
                cur = size;
        }
        *out_size = size ? size : cur;
        return 0;
}

int blk_rbd_create(const BlkOpenOptions *opts, BlkBackend **out) {
        RbdCluster *cl = NULL;
        int r;

        if (!opts->rbd_pool || !*opts->rbd_pool || !opts->rbd_image || !*opts->rbd_image)
                return -EINVAL;
        r = blk_rbd_cluster_connect(opts, &cl);
        if (r < 0)
                return r;
        uint64_t size = 0;
        r = blk_rbd_open_image(cl, opts, opts->size, opts->rbd_lock, &size);
        if (r < 0) {
                blk_rbd_cluster_unref(cl);
                return r;
        }
        BlkRbd *b = blk_rbd_new(cl, opts->read_only);
        if (!b)
                return -errno;
        b->base.size = size;
        b->base.caps = opts->read_only ? 0 : BLK_CAP_DISCARD | BLK_CAP_DISCARD_ZEROES | BLK_CAP_WRITE_ZEROES_UNMAP;
        *out = &b->base;
        return 0;
}
