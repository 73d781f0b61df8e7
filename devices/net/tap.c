/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * TAP backend: one multi-queue TAP queue fd per queue pair, with the
 * 12-byte virtio-net header on every frame (TUNSETVNETHDRSZ) so guest
 * offloads map straight onto the kernel's (TUNSETOFFLOAD).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#if HAVE_LIBURING
#include <liburing.h>
#endif

#include "net/net-backend.h"
#include "net/vnet-proto.h"

#define TAP_RING_ENTRIES 64u            /* ≥ NET_TX_BATCH_MAX, TAP_RX_BATCH */

#define TAP_RX_BATCH 8u                 /* frames read ahead per system call at most */
#define TAP_RX_SLOT (VNET_HDR_LEN + VNET_MAX_FRAME)

/* Frames a queue read ahead: results [next, n) of the last batch, in order. */
typedef struct TapRx {
        uint8_t *buf;                   /* TAP_RX_BATCH slots of TAP_RX_SLOT bytes */
        int32_t res[TAP_RX_BATCH];      /* bytes read, or -errno */
        unsigned next, n;
        unsigned want;                  /* reads in the next batch: grows while batches fill */
        bool off;                       /* the kernel refused RWF_NOWAIT reads: one read each */
} TapRx;

typedef struct NetTap {
        NetBackend be;
        int *fds;
#if HAVE_LIBURING
        struct io_uring *rings;         /* per queue, set up by its thread's first batch */
        uint8_t *ring_state;            /* per queue: 0 not yet, 1 ready, 2 unavailable */
        TapRx *rx;                      /* per queue */
#endif
} NetTap;

static NetTap *tap_of(NetBackend *be) {
        return (NetTap *) be;
}

static ssize_t tap_read_result(ssize_t n, int err) {
        if (n < 0)
                return err == EWOULDBLOCK ? -EAGAIN : -err;
        if ((size_t) n < VNET_HDR_LEN)
                return -EPROTO;
        return n;
}

static ssize_t tap_read_one(NetBackend *be, unsigned q, void *buf, size_t cap) {
        ssize_t n = read(tap_of(be)->fds[q], buf, cap);
        int err = errno;

        __atomic_fetch_add(&be->rx_calls, 1, __ATOMIC_RELAXED);
        return tap_read_result(n, err);
}

#if HAVE_LIBURING
static struct io_uring *tap_ring(NetTap *t, unsigned q);

/*
 * Read up to rx->want frames ahead with one io_uring_enter: RWF_NOWAIT
 * makes a read of an empty TAP complete with -EAGAIN at once (without it
 * io_uring would keep the read armed until a frame came), so the batch is
 * done when the call returns, its frames in order.  false: no ring.
 */
static bool tap_read_batch(NetTap *t, unsigned q, TapRx *rx) {
        struct io_uring *ring = tap_ring(t, q);
        struct io_uring_cqe *cqe;
        unsigned want = MIN(rx->want, TAP_RX_BATCH), got = 0, done = 0;

        if (!ring)
                return false;
        if (!rx->buf && !(rx->buf = g_try_malloc((size_t) TAP_RX_BATCH * TAP_RX_SLOT)))
                return false;
        for (unsigned i = 0; i < want; i++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
                io_uring_prep_read(sqe, t->fds[q], rx->buf + (size_t) i * TAP_RX_SLOT, TAP_RX_SLOT, 0);
                sqe->rw_flags = RWF_NOWAIT;
                io_uring_sqe_set_data64(sqe, i);
                rx->res[i] = -EAGAIN;
        }
        int r;
        do
                r = io_uring_submit_and_wait(ring, want);
        while (r == -EINTR);
        __atomic_fetch_add(&t->be.rx_calls, 1, __ATOMIC_RELAXED);
        if (r < 0 && io_uring_cq_ready(ring) == 0) {
                g_debug("tap queue %u: io_uring_enter: %s", q, g_strerror(-r));
                io_uring_queue_exit(ring);
                t->ring_state[q] = 2;
                return false;
        }
        while (done < want && io_uring_wait_cqe(ring, &cqe) == 0) {
                uint64_t i = io_uring_cqe_get_data64(cqe);
                if (i < want) {
                        rx->res[i] = cqe->res;
                        got += cqe->res >= 0;
                }
                io_uring_cqe_seen(ring, cqe);
                done++;
        }
        rx->next = 0;
        rx->n = want;
        for (unsigned i = 0; i < want; i++) {
                if (rx->res[i] == -EOPNOTSUPP) {
                        /* No RWF_NOWAIT on this kernel's TAP: nothing was read. */
                        rx->off = true;
                        rx->n = 0;
                        return false;
                }
        }
        /* Full: read more ahead next time; else about what came. */
        rx->want = got == want ? MIN(want * 2, MIN(t->be.rx_batch, TAP_RX_BATCH)) : MAX(got, 1u);
        return true;
}
#endif

/*
 * One frame: from what the last batch read ahead, else by a batch (while
 * frames come in bursts) or a plain read.
 */
static ssize_t tap_recv(NetBackend *be, unsigned q, void *buf, size_t cap) {
#if HAVE_LIBURING
        NetTap *t = tap_of(be);
        TapRx *rx = &t->rx[q];

        for (;;) {
                while (rx->next < rx->n) {
                        unsigned i = rx->next++;
                        ssize_t n = rx->res[i];
                        if (n == -EAGAIN)
                                continue;
                        n = tap_read_result(n < 0 ? -1 : n, n < 0 ? (int) -n : 0);
                        if (n < 0)
                                return n;
                        if ((size_t) n > cap)
                                return -EMSGSIZE;
                        memcpy(buf, rx->buf + (size_t) i * TAP_RX_SLOT, (size_t) n);
                        return n;
                }
                if (be->rx_batch > 1 && rx->want > 1 && !rx->off && tap_read_batch(t, q, rx))
                        continue;
                ssize_t n = tap_read_one(be, q, buf, cap);
                /* A frame: more may follow, read two ahead next time. */
                rx->want = n >= 0 && be->rx_batch > 1 ? 2 : 1;
                return n;
        }
#else
        return tap_read_one(be, q, buf, cap);
#endif
}

static int tap_send_errno(int err) {
        return err == EWOULDBLOCK || err == ENOBUFS ? -EAGAIN : -err;
}

static int tap_send(NetBackend *be, unsigned q, const struct iovec *iov, unsigned n) {
        ssize_t r = writev(tap_of(be)->fds[q], iov, (int) n);

        __atomic_fetch_add(&be->tx_calls, 1, __ATOMIC_RELAXED);

        if (r < 0)
                return tap_send_errno(errno);
        return 0;
}

#if HAVE_LIBURING
/* Queue q's ring, made on first use by the thread that sends on q; NULL when io_uring is unavailable. */
static struct io_uring *tap_ring(NetTap *t, unsigned q) {
        if (t->ring_state[q] == 0) {
                /* Not SINGLE_ISSUER: a device restart sends from a new thread. */
                struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN };
                int r = io_uring_queue_init_params(TAP_RING_ENTRIES, &t->rings[q], &p);
                if (r == -EINVAL) {
                        p = (struct io_uring_params) { 0 };
                        r = io_uring_queue_init_params(TAP_RING_ENTRIES, &t->rings[q], &p);
                }
                if (r < 0)
                        g_debug("tap %s queue %u: no io_uring (%s): one writev per frame",
                                t->be.ifname ? t->be.ifname : "?", q, g_strerror(-r));
                t->ring_state[q] = r < 0 ? 2 : 1;
        }
        return t->ring_state[q] == 1 ? &t->rings[q] : NULL;
}
#endif

/*
 * One io_uring_enter for the batch: a TAP write never waits (the fd is
 * non-blocking: a full queue completes with -EAGAIN), so every write is
 * done when the call returns.  Writes to one fd run in submission order.
 */
static void tap_send_batch(NetBackend *be, unsigned q, NetTxFrame *f, unsigned count) {
        NetTap *t = tap_of(be);
#if HAVE_LIBURING
        struct io_uring *ring = count > 1 ? tap_ring(t, q) : NULL;

        if (ring) {
                struct io_uring_cqe *cqe;
                unsigned done = 0;

                for (unsigned i = 0; i < count; i++) {
                        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);   /* never NULL: count ≤ entries */
                        io_uring_prep_writev(sqe, t->fds[q], f[i].iov, f[i].n, 0);
                        io_uring_sqe_set_data64(sqe, i);
                        f[i].ret = -EIO;
                }
                int r;
                do
                        r = io_uring_submit_and_wait(ring, count);
                while (r == -EINTR);
                __atomic_fetch_add(&be->tx_calls, 1, __ATOMIC_RELAXED);
                if (r < 0 && io_uring_cq_ready(ring) == 0) {
                        /* The ring broke (nothing was written): one writev each from now on. */
                        g_debug("tap queue %u: io_uring_enter: %s", q, g_strerror(-r));
                        io_uring_queue_exit(ring);
                        t->ring_state[q] = 2;
                        goto one_by_one;
                }
                while (done < count && io_uring_wait_cqe(ring, &cqe) == 0) {
                        uint64_t i = io_uring_cqe_get_data64(cqe);
                        if (i < count)
                                f[i].ret = cqe->res < 0 ? tap_send_errno(-cqe->res) : 0;
                        io_uring_cqe_seen(ring, cqe);
                        done++;
                }
                return;
        }
one_by_one:
#endif
        for (unsigned i = 0; i < count; i++)
                f[i].ret = tap_send(be, q, f[i].iov, f[i].n);
}

static int tap_flush(NetBackend *be, unsigned q) {
        return 0;
}

static int tap_fd(NetBackend *be, unsigned q) {
        return tap_of(be)->fds[q];
}

static int tap_set_offloads(NetBackend *be, unsigned offloads) {
        unsigned flags = 0;

        if (offloads & VNET_OFFLOAD_CSUM)
                flags |= TUN_F_CSUM;
        if (offloads & VNET_OFFLOAD_TSO4)
                flags |= TUN_F_TSO4;
        if (offloads & VNET_OFFLOAD_TSO6)
                flags |= TUN_F_TSO6;
        if (offloads & VNET_OFFLOAD_TSO_ECN)
                flags |= TUN_F_TSO_ECN;
        /* One call sets the offloads of the whole device, every queue. */
        if (ioctl(tap_of(be)->fds[0], TUNSETOFFLOAD, (unsigned long) flags) < 0)
                return -errno;
        return 0;
}

static int tap_set_active_queues(NetBackend *be, unsigned n) {
        NetTap *t = tap_of(be);
        int ret = 0;

        if (be->nqueues == 1)
                return 0;
        for (unsigned i = 0; i < be->nqueues; i++) {
                struct ifreq ifr = { .ifr_flags = i < n ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE };
                /* EINVAL: already in that state. */
                if (ioctl(t->fds[i], TUNSETQUEUE, &ifr) < 0 && errno != EINVAL)
                        ret = -errno;
        }
        return ret;
}

static void tap_free(NetBackend *be) {
        NetTap *t = tap_of(be);

        for (unsigned i = 0; i < be->nqueues; i++)
                if (t->fds[i] >= 0)
                        close(t->fds[i]);
        g_free(t->fds);
#if HAVE_LIBURING
        for (unsigned i = 0; i < be->nqueues; i++)
                if (t->ring_state[i] == 1)
                        io_uring_queue_exit(&t->rings[i]);
        g_free(t->rings);
        g_free(t->ring_state);
        for (unsigned i = 0; i < be->nqueues; i++)
                g_free(t->rx[i].buf);
        g_free(t->rx);
#endif
        g_free(be->ifname);
        g_free(t);
}

static const NetBackendOps tap_ops = {
        .type = "tap",
        .recv = tap_recv,
        .send = tap_send,
        .send_batch = tap_send_batch,
        .flush = tap_flush,
        .fd = tap_fd,
        .set_offloads = tap_set_offloads,
        .set_active_queues = tap_set_active_queues,
        .free = tap_free,
};

/* Make fd usable as a queue: a TAP with a virtio-net header, 12 bytes long, non-blocking. */
static int tap_prepare(int fd, char ifname[IFNAMSIZ]) {
        struct ifreq ifr = { 0 };
        int hdr = VNET_HDR_LEN;
        int fl;

        if (ioctl(fd, TUNGETIFF, &ifr) < 0)
                return -errno;
        if ((ifr.ifr_flags & (IFF_TAP | IFF_TUN)) != IFF_TAP || !(ifr.ifr_flags & IFF_VNET_HDR) ||
            !(ifr.ifr_flags & IFF_NO_PI))
                return -EINVAL;
        memcpy(ifname, ifr.ifr_name, IFNAMSIZ);
        if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)
                return -errno;
        if (ioctl(fd, TUNSETOFFLOAD, 0UL) < 0)
                return -errno;
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        return 0;
}

static int tap_attach(const char *name, bool multi, int *out) {
        struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
        int fd;

        if (multi)
                ifr.ifr_flags |= IFF_MULTI_QUEUE;
        if (name)
                g_strlcpy(ifr.ifr_name, name, IFNAMSIZ);
        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        *out = fd;
        return 0;
}

/* The interface's MTU (SIOCGIFMTU, no privilege needed), or 0 when it cannot be read. */
static unsigned tap_read_mtu(const char *ifname) {
        struct ifreq ifr = { 0 };
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int r;

        if (s < 0)
                return 0;
        g_strlcpy(ifr.ifr_name, ifname, IFNAMSIZ);
        r = ioctl(s, SIOCGIFMTU, &ifr);
        close(s);
        return r == 0 && ifr.ifr_mtu > 0 ? (unsigned) ifr.ifr_mtu : 0;
}

int net_tap_open(const char *name, unsigned nqueues, int *fds, NetBackend **out) {
        g_autofree NetTap *t = NULL;
        char ifname[IFNAMSIZ] = { 0 };
        int r = 0;

        if (nqueues == 0 || nqueues > 256 || (name && strlen(name) >= IFNAMSIZ))
                return -EINVAL;

        t = g_new0(NetTap, 1);
        t->be.ops = &tap_ops;
        t->be.nqueues = nqueues;
        t->be.offloads = true;
        t->fds = g_new(int, nqueues);
#if HAVE_LIBURING
        t->rings = g_new0(struct io_uring, nqueues);
        t->ring_state = g_new0(uint8_t, nqueues);
        t->rx = g_new0(TapRx, nqueues);
        for (unsigned i = 0; i < nqueues; i++)
                t->rx[i].want = 1;
        t->be.tx_batch = NET_TX_BATCH_MAX;
        t->be.rx_batch = TAP_RX_BATCH;
#endif
        for (unsigned i = 0; i < nqueues; i++)
                t->fds[i] = -1;

        for (unsigned i = 0; i < nqueues && r == 0; i++) {
                if (fds && fds[i] >= 0) {
                        t->fds[i] = fds[i];
                        fds[i] = -1;
                } else {
                        /* The first queue may name the device; the others join it by its real name. */
                        const char *n = i == 0 ? (name && *name ? name : NULL) : ifname;
                        r = tap_attach(n, true, &t->fds[i]);
                        if (r < 0)
                                break;
                }
                char this_name[IFNAMSIZ];
                r = tap_prepare(t->fds[i], this_name);
                if (r == 0 && i == 0)
                        memcpy(ifname, this_name, IFNAMSIZ);
                else if (r == 0 && strncmp(ifname, this_name, IFNAMSIZ) != 0)
                        r = -EXDEV;     /* passed fds of different TAP devices */
        }
        if (r < 0) {
                for (unsigned i = 0; i < nqueues; i++)
                        if (t->fds[i] >= 0)
                                close(t->fds[i]);
                g_free(t->fds);
#if HAVE_LIBURING
                g_free(t->rings);
                g_free(t->ring_state);
                g_free(t->rx);
#endif
                return r;
        }
        ifname[IFNAMSIZ - 1] = 0;
        t->be.ifname = g_strdup(ifname);
        t->be.mtu = tap_read_mtu(ifname);
        *out = &g_steal_pointer(&t)->be;
        return 0;
}

void net_backend_free(NetBackend *be) {
        if (be)
                be->ops->free(be);
}
