/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NBD engine: an export of an NBD server (qemu-storage-daemon, qemu-nbd,
 * nbdkit) through libnbd's asynchronous calls, so an image with QEMU's block
 * layer behind it (qcow2 backing chains, snapshots, LUKS) is a namespace.
 *
 * No thread: the device's I/O thread polls the backend's event fd, an
 * epoll set holding the libnbd socket (read, and write while libnbd has
 * output queued), a timer for reconnecting and a kick eventfd; reap() lets
 * libnbd run (nbd_aio_notify_read/write) and runs the callbacks of the
 * commands it finished.
 *
 * A lost server (closed socket, a dead handle, ESHUTDOWN) is reconnected
 * with back-off (100 ms doubling to 2 s); the requests that were in flight,
 * and those submitted meanwhile, wait and are sent again on the new
 * connection (a write sent twice writes the same data).  Once the server has
 * been gone for the wait time (10 s by default: less than Linux's 30 s NVMe
 * I/O timeout), waiting and new requests fail with -ENOTCONN until it is
 * back, which the device reports as a status its driver retries.
 *
 * Flush, FUA, trim and zero are sent when the export advertises them: a
 * flush without NBD_FLAG_SEND_FLUSH completes at once (the server has no
 * cache to write back), a FUA write without NBD_FLAG_SEND_FUA is followed
 * by a flush, a discard without trim does nothing, write-zeroes without
 * zero writes a zero buffer.  Each backend (each clone) is one connection:
 * clones of a writable export need multi-conn, where a flush on one
 * connection covers the writes of all.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <libnbd.h>

#include "blk-internal.h"

#define NBD_DEFAULT_PORT "10809"
#define NBD_DEFAULT_WAIT_MS 10000u
#define NBD_BACKOFF_FIRST_MS 100u
#define NBD_BACKOFF_MAX_MS 2000u
#define NBD_OPEN_TIMEOUT_MS 10000
#define NBD_PIECE_MAX (1ull << 30)              /* largest trim/zero in one command */
#define NBD_ZERO_BUF (1u << 20)                 /* the zero buffer of write-zeroes without zero */

typedef enum NbdState {
        NBD_STATE_UP,                   /* handshake done: requests go out */
        NBD_STATE_CONNECTING,           /* socket connecting or handshake running */
        NBD_STATE_BACKOFF,              /* lost: the next attempt is due at next_attempt_ns */
        _NBD_STATE_MAX,
} NbdState;

static const char *const nbd_state_names[_NBD_STATE_MAX] = {
        [NBD_STATE_UP] = "up",
        [NBD_STATE_CONNECTING] = "connecting",
        [NBD_STATE_BACKOFF] = "reconnecting",
};

/* Where the export is: parsed once, so reconnecting needs no name service (the worker is sandboxed). */
typedef struct NbdTarget {
        char *uri;
        char *export_name;
        struct sockaddr_storage addr;
        socklen_t addrlen;
} NbdTarget;

typedef struct BlkNbd BlkNbd;

/* A request's backend state (r->bounce_). */
typedef struct NbdCmd {
        BlkNbd *n;
        void *buf;                      /* bounce buffer (several iovecs), or the zero buffer */
        uint64_t done;                  /* trim/zero: bytes finished in earlier pieces */
        uint64_t piece;                 /* trim/zero: bytes of the piece in flight */
        bool fua_flush;                 /* a FUA write's flush is next (the export has no FUA) */
        bool flushing;                  /* that flush is in flight */
        bool with_libnbd;               /* sent: libnbd calls nbd_cmd_cb() once */
} NbdCmd;

struct BlkNbd {
        BlkBackend base;                /* base.event_fd: the epoll set */
        NbdTarget t;
        unsigned wait_ms;
        struct nbd_handle *h;
        int reg_fd;                     /* the libnbd fd in the set, or -1 */
        uint32_t reg_events;
        int timer_fd, kick_fd;
        NbdState state;
        BlkList staged;                 /* submitted, not committed */
        BlkList waiting;                /* for a connection */
        BlkList finished;               /* by libnbd or at once: callbacks to run */
        unsigned inflight;
        unsigned connections;           /* handshakes done */
        unsigned attempts;              /* since the connection was lost */
        unsigned backoff_ms;
        uint64_t next_attempt_ns;
        uint64_t down_since_ns;         /* 0 while up */
        bool failing;                   /* down longer than wait_ms: requests fail */
        uint64_t export_size;
        bool can_flush, can_fua, can_trim, can_zero, can_multi_conn;
        char last_error[160];
        GMutex status_lock;             /* status is read by other threads */
        char status[256];
};

static uint64_t nbd_now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* ---- the target ---- */

static void nbd_target_clear(NbdTarget *t) {
        g_free(t->uri);
        g_free(t->export_name);
        *t = (NbdTarget) { 0 };
}

static void nbd_target_copy(NbdTarget *dst, const NbdTarget *src) {
        *dst = *src;
        dst->uri = g_strdup(src->uri);
        dst->export_name = g_strdup(src->export_name);
}

/* The export name of a URI's path: without the leading '/', unescaped. */
static char *nbd_uri_export(GUri *u) {
        const char *p = g_uri_get_path(u);

        if (*p == '/')
                p++;
        return g_uri_unescape_string(p, NULL);
}

/* The value of query parameter key, or NULL. */
static char *nbd_uri_param(GUri *u, const char *key) {
        const char *q = g_uri_get_query(u);
        g_autoptr(GHashTable) params = NULL;

        if (!q)
                return NULL;
        params = g_uri_parse_params(q, -1, "&", G_URI_PARAMS_NONE, NULL);
        return params ? g_strdup(g_hash_table_lookup(params, key)) : NULL;
}

/*
 * Parse nbd://HOST[:PORT]/[EXPORT] or nbd+unix:///[EXPORT]?socket=PATH and
 * resolve the host.  0, -EINVAL (not such a URI), -EPROTONOSUPPORT (TLS,
 * vsock) or -EHOSTUNREACH (the host does not resolve).
 */
static int nbd_target_parse(const char *uri, NbdTarget *t) {
        g_autoptr(GUri) u = g_uri_parse(uri, G_URI_FLAGS_ENCODED, NULL);
        const char *scheme;

        *t = (NbdTarget) { 0 };
        if (!u)
                return -EINVAL;
        scheme = g_uri_get_scheme(u);
        if (strcmp(scheme, "nbd+unix") == 0) {
                g_autofree char *sock = nbd_uri_param(u, "socket");
                struct sockaddr_un *sa = (struct sockaddr_un *) &t->addr;

                if (!sock || !*sock || strlen(sock) >= sizeof(sa->sun_path))
                        return -EINVAL;
                sa->sun_family = AF_UNIX;
                memcpy(sa->sun_path, sock, strlen(sock) + 1);
                t->addrlen = sizeof(*sa);
        } else if (strcmp(scheme, "nbd") == 0) {
                const char *host = g_uri_get_host(u);
                g_autofree char *port = g_uri_get_port(u) > 0 ? g_strdup_printf("%d", g_uri_get_port(u))
                                                              : g_strdup(NBD_DEFAULT_PORT);
                struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;

                if (!host || !*host)
                        return -EINVAL;
                if (host[0] == '[') {
                        /* GUri keeps IPv6 literals bracketed */
                        g_autofree char *h6 = g_strndup(host + 1, strlen(host) - 2);
                        if (getaddrinfo(h6, port, &hints, &ai) != 0)
                                return -EHOSTUNREACH;
                } else if (getaddrinfo(host, port, &hints, &ai) != 0)
                        return -EHOSTUNREACH;
                memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
                t->addrlen = ai->ai_addrlen;
                freeaddrinfo(ai);
        } else if (g_str_has_prefix(scheme, "nbds") || strcmp(scheme, "nbd+vsock") == 0) {
                return -EPROTONOSUPPORT;
        } else {
                return -EINVAL;
        }
        t->export_name = nbd_uri_export(u);
        if (!t->export_name)
                return -EINVAL;
        t->uri = g_strdup(uri);
        return 0;
}

/* ---- status, for vfuctl show ---- */

static void nbd_status_update(BlkNbd *n) {
        char s[sizeof(n->status)] = "";

        if (n->state != NBD_STATE_UP) {
                uint64_t down_ms = (nbd_now_ns() - n->down_since_ns) / 1000000u;

                snprintf(s, sizeof(s), "%s %s (attempt %u%s%s, down %" G_GUINT64_FORMAT " ms): %s",
                         nbd_state_names[n->state], n->t.uri, n->attempts,
                         n->last_error[0] ? ", " : "", n->last_error, down_ms,
                         n->failing ? "I/O fails until it is back"
                                    : "I/O waits");
        }
        g_mutex_lock(&n->status_lock);
        memcpy(n->status, s, sizeof(s));
        g_mutex_unlock(&n->status_lock);
}

static void nbd_waiting(const BlkBackend *b, char *buf, size_t size) {
        BlkNbd *n = (BlkNbd *) b;

        g_mutex_lock(&n->status_lock);
        g_strlcpy(buf, n->status, size);
        g_mutex_unlock(&n->status_lock);
}

static void nbd_set_error(BlkNbd *n, const char *what, int err) {
        snprintf(n->last_error, sizeof(n->last_error), "%s%s%s", what, err ? ": " : "",
                 err ? g_strerror(err) : "");
}

/* ---- the epoll set ---- */

static void nbd_kick(BlkNbd *n) {
        uint64_t one = 1;
        ssize_t r;

        do
                r = write(n->kick_fd, &one, sizeof(one));
        while (r < 0 && errno == EINTR);
}

static void nbd_drain_fd(int fd) {
        uint64_t v;
        ssize_t r;

        do
                r = read(fd, &v, sizeof(v));
        while (r < 0 && errno == EINTR);
}

/* Watch the libnbd fd for what it waits for (nothing once dead). */
static void nbd_register(BlkNbd *n) {
        int fd = n->h ? nbd_aio_get_fd(n->h) : -1;
        unsigned dir = n->h ? nbd_aio_get_direction(n->h) : 0;
        uint32_t ev = ((dir & LIBNBD_AIO_DIRECTION_READ) ? EPOLLIN : 0u) |
                      ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? EPOLLOUT : 0u);

        if (fd != n->reg_fd && n->reg_fd >= 0) {
                epoll_ctl(n->base.event_fd, EPOLL_CTL_DEL, n->reg_fd, NULL);
                n->reg_fd = -1;
        }
        if (fd < 0)
                return;
        if (fd == n->reg_fd && ev == n->reg_events)
                return;
        struct epoll_event e = { .events = ev, .data.fd = fd };
        if (epoll_ctl(n->base.event_fd, fd == n->reg_fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &e) == 0) {
                n->reg_fd = fd;
                n->reg_events = ev;
        }
}

/* The timer: the next attempt, or the end of the wait, whichever comes first. */
static void nbd_arm_timer(BlkNbd *n) {
        struct itimerspec its = { 0 };
        uint64_t at = 0;

        if (n->state == NBD_STATE_BACKOFF)
                at = n->next_attempt_ns;
        if (n->state != NBD_STATE_UP && !n->failing) {
                uint64_t end = n->down_since_ns + (uint64_t) n->wait_ms * 1000000u;
                at = at && at < end ? at : end;
        }
        if (at) {
                its.it_value.tv_sec = (time_t) (at / 1000000000u);
                its.it_value.tv_nsec = (long) (at % 1000000000u);
                if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
                        its.it_value.tv_nsec = 1;
        }
        timerfd_settime(n->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* ---- commands ---- */

static void nbd_finish(BlkNbd *n, BlkRequest *r, int ret) {
        r->ret_ = ret;
        blk_list_push(&n->finished, r);
}

static int nbd_cmd_cb(void *opaque, int *error) {
        BlkRequest *r = opaque;
        NbdCmd *c = r->bounce_;

        r->ret_ = *error ? -*error : 0;
        c->with_libnbd = false;
        blk_list_push(&c->n->finished, r);
        return 1;
}

/* A request's buffer: its only iovec, or the bounce buffer. */
static void *nbd_cmd_buf(BlkRequest *r) {
        NbdCmd *c = r->bounce_;

        return c->buf ? c->buf : r->niov ? r->iov[0].iov_base : NULL;
}

/* Send r's next command.  0, or -errno: ENOTCONN and friends when the handle is dead. */
static int nbd_send(BlkNbd *n, BlkRequest *r) {
        NbdCmd *c = r->bounce_;
        nbd_completion_callback cb = { .callback = nbd_cmd_cb, .user_data = r };
        uint32_t fua = (r->flags & BLK_F_FUA) && n->can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
        int64_t cookie = 0;

        if (c->flushing) {
                cookie = nbd_aio_flush(n->h, cb, 0);
                goto sent;
        }
        switch (r->op) {
        case BLK_READ:
                cookie = nbd_aio_pread(n->h, nbd_cmd_buf(r), r->len, r->offset, cb, 0);
                break;
        case BLK_WRITE:
                cookie = nbd_aio_pwrite(n->h, nbd_cmd_buf(r), r->len, r->offset, cb, fua);
                break;
        case BLK_FLUSH:
                cookie = nbd_aio_flush(n->h, cb, 0);
                break;
        case BLK_DISCARD:
                c->piece = MIN(r->len - c->done, NBD_PIECE_MAX);
                cookie = nbd_aio_trim(n->h, c->piece, r->offset + c->done, cb, fua);
                break;
        case BLK_WRITE_ZEROES:
                if (!n->can_zero) {
                        c->piece = MIN(r->len - c->done, NBD_ZERO_BUF);
                        cookie = nbd_aio_pwrite(n->h, c->buf, c->piece, r->offset + c->done, cb, fua);
                        break;
                }
                c->piece = MIN(r->len - c->done, NBD_PIECE_MAX);
                cookie = nbd_aio_zero(n->h, c->piece, r->offset + c->done, cb,
                                      fua | ((r->flags & BLK_F_UNMAP) ? 0 : LIBNBD_CMD_FLAG_NO_HOLE));
                break;
        default:
                return -EINVAL;
        }
sent:
        if (cookie < 0) {
                int e = nbd_get_errno();
                return -(e ? e : EIO);
        }
        return 0;
}

/* Errors that mean "the connection went away", not "the server refused". */
static bool nbd_conn_error(int ret) {
        return ret == -ENOTCONN || ret == -ESHUTDOWN || ret == -ECONNRESET || ret == -EPIPE ||
               ret == -EINPROGRESS;
}

static void nbd_lost(BlkNbd *n, const char *why);

/* Send r now, make it wait for a connection, or fail it. */
static void nbd_dispatch(BlkNbd *n, BlkRequest *r) {
        if (n->state != NBD_STATE_UP) {
                if (n->failing)
                        nbd_finish(n, r, -ENOTCONN);
                else
                        blk_list_push(&n->waiting, r);
                return;
        }
        NbdCmd *c = r->bounce_;
        c->with_libnbd = true;
        int ret = nbd_send(n, r);
        if (ret == 0)
                return;
        if (!c->with_libnbd)
                return;         /* failed, and completed by libnbd already: it is on the finished list */
        c->with_libnbd = false;
        if (nbd_conn_error(ret) || nbd_aio_is_dead(n->h) || nbd_aio_is_closed(n->h)) {
                blk_list_push(&n->waiting, r);
                nbd_lost(n, nbd_get_error());
                return;
        }
        nbd_finish(n, r, ret);
}

/* Requests done without the server: no flush or trim on this export, nothing to transfer. */
static bool nbd_local(const BlkNbd *n, const BlkRequest *r) {
        switch (r->op) {
        case BLK_FLUSH:
                return !n->can_flush;
        case BLK_DISCARD:
                return !n->can_trim || r->len == 0;
        default:
                return r->len == 0;
        }
}

static int nbd_submit(BlkBackend *b, BlkRequest *r) {
        BlkNbd *n = (BlkNbd *) b;
        NbdCmd *c;

        r->bounce_ = NULL;
        if (b->read_only && r->op != BLK_READ && r->op != BLK_FLUSH)
                return -EROFS;
        if (r->op != BLK_FLUSH && (r->offset > b->size || r->len > b->size - r->offset))
                return -ERANGE;
        if ((unsigned) r->op >= _BLK_OP_MAX)
                return -EINVAL;
        c = g_new0(NbdCmd, 1);
        c->n = n;
        if ((r->op == BLK_READ || r->op == BLK_WRITE) && r->niov != 1 && r->len) {
                c->buf = g_try_malloc(r->len);
                if (!c->buf) {
                        g_free(c);
                        return -ENOMEM;
                }
                if (r->op == BLK_WRITE) {
                        size_t off = 0;
                        for (unsigned i = 0; i < r->niov; i++) {
                                memcpy((uint8_t *) c->buf + off, r->iov[i].iov_base, r->iov[i].iov_len);
                                off += r->iov[i].iov_len;
                        }
                }
        } else if (r->op == BLK_WRITE_ZEROES && !n->can_zero && r->len) {
                c->buf = g_malloc0(MIN(r->len, NBD_ZERO_BUF));
        }
        c->fua_flush = (r->op == BLK_WRITE || r->op == BLK_WRITE_ZEROES) && (r->flags & BLK_F_FUA) &&
                       !n->can_fua && n->can_flush;
        r->bounce_ = c;
        blk_list_push(&n->staged, r);
        n->inflight++;
        return 0;
}

static void nbd_commit(BlkBackend *b) {
        BlkNbd *n = (BlkNbd *) b;
        BlkList staged = n->staged;
        BlkRequest *r;
        bool local = false;

        n->staged = (BlkList) { 0 };
        while ((r = blk_list_pop(&staged))) {
                if (nbd_local(n, r)) {
                        nbd_finish(n, r, 0);
                        local = true;
                } else {
                        nbd_dispatch(n, r);
                }
        }
        nbd_register(n);
        nbd_arm_timer(n);
        if (local || n->finished.head)
                nbd_kick(n);
}

/* ---- connections ---- */

/* A new handle on a new socket; the handshake runs from reap().  0 or -errno. */
static int nbd_connect_start(BlkNbd *n) {
        int fd, r;

        n->state = NBD_STATE_CONNECTING;
        n->attempts++;
        fd = socket(n->t.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                r = -errno;
                nbd_set_error(n, "socket", -r);
                return r;
        }
        if (connect(fd, (struct sockaddr *) &n->t.addr, n->t.addrlen) < 0 && errno != EINPROGRESS) {
                r = -errno;
                close(fd);
                nbd_set_error(n, "connect", -r);
                return r;
        }
        n->h = nbd_create();
        if (!n->h) {
                close(fd);
                nbd_set_error(n, nbd_get_error(), 0);
                return -ENOMEM;
        }
        if (nbd_set_export_name(n->h, n->t.export_name) < 0 ||
            nbd_aio_connect_socket(n->h, fd) < 0) {     /* owns fd from here on */
                int e = nbd_get_errno();
                nbd_set_error(n, nbd_get_error(), 0);
                nbd_close(n->h);
                n->h = NULL;
                return -(e ? e : EIO);
        }
        return 0;
}

static void nbd_close_handle(BlkNbd *n) {
        if (n->reg_fd >= 0) {
                epoll_ctl(n->base.event_fd, EPOLL_CTL_DEL, n->reg_fd, NULL);
                n->reg_fd = -1;
        }
        /* A dead handle completed its commands (ENOTCONN) already. */
        nbd_close(n->h);
        n->h = NULL;
}

static void nbd_schedule_retry(BlkNbd *n) {
        uint64_t now = nbd_now_ns();

        n->state = NBD_STATE_BACKOFF;
        n->next_attempt_ns = now + (uint64_t) n->backoff_ms * 1000000u;
        n->backoff_ms = MIN(n->backoff_ms * 2, NBD_BACKOFF_MAX_MS);
}

/* The connection is gone: requests wait, the next attempt is scheduled. */
static void nbd_lost(BlkNbd *n, const char *why) {
        if (n->state == NBD_STATE_UP) {
                g_debug("nbd %s: connection lost: %s", n->t.uri, why ? why : "");
                n->down_since_ns = nbd_now_ns();
                n->attempts = 0;
                n->backoff_ms = NBD_BACKOFF_FIRST_MS;
        }
        if (why && *why)
                nbd_set_error(n, why, 0);
        if (n->h)
                nbd_close_handle(n);
        nbd_schedule_retry(n);
        nbd_status_update(n);
}

/* Read what the export offers: 0, or -errno when it cannot serve this backend any more. */
static int nbd_read_export(BlkNbd *n) {
        int64_t size = nbd_get_size(n->h);
        int ro = nbd_is_read_only(n->h);

        if (size < 0 || ro < 0)
                return -EIO;
        if (ro && !n->base.read_only) {
                nbd_set_error(n, "the export is read-only now", 0);
                return -EROFS;
        }
        if ((uint64_t) size < n->base.size) {
                nbd_set_error(n, "the export shrank", 0);
                return -ERANGE;
        }
        n->export_size = (uint64_t) size;
        n->can_flush = nbd_can_flush(n->h) > 0;
        n->can_fua = nbd_can_fua(n->h) > 0;
        n->can_trim = nbd_can_trim(n->h) > 0;
        n->can_zero = nbd_can_zero(n->h) > 0;
        n->can_multi_conn = nbd_can_multi_conn(n->h) > 0;
        return 0;
}

static void nbd_up(BlkNbd *n) {
        BlkList waiting = n->waiting;
        BlkRequest *r;

        if (n->connections > 0 && nbd_read_export(n) < 0) {
                nbd_lost(n, NULL);      /* not this export any more: keep trying, I/O fails meanwhile */
                return;
        }
        if (n->connections > 0)
                g_debug("nbd %s: reconnected after %u attempts", n->t.uri, n->attempts);
        n->connections++;
        n->state = NBD_STATE_UP;
        n->down_since_ns = 0;
        n->failing = false;
        n->attempts = 0;
        n->last_error[0] = '\0';
        n->waiting = (BlkList) { 0 };
        while ((r = blk_list_pop(&waiting)))
                nbd_dispatch(n, r);
        nbd_status_update(n);
}

/* Fail everything that waits: the server has been gone for the wait time. */
static void nbd_give_up(BlkNbd *n) {
        BlkRequest *r;

        n->failing = true;
        while ((r = blk_list_pop(&n->waiting)))
                nbd_finish(n, r, -ENOTCONN);
        nbd_status_update(n);
}

/* Let libnbd run on what the socket has, and move the connection along. */
static void nbd_progress(BlkNbd *n) {
        uint64_t now;

        if (n->h) {
                unsigned dir = nbd_aio_get_direction(n->h);
                struct pollfd p = {
                        .fd = nbd_aio_get_fd(n->h),
                        .events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                  ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0),
                };
                if (p.fd >= 0 && poll(&p, 1, 0) > 0) {
                        if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_READ))
                                (void) nbd_aio_notify_read(n->h);
                        if ((p.revents & POLLOUT) && !nbd_aio_is_dead(n->h) && !nbd_aio_is_closed(n->h) &&
                            (nbd_aio_get_direction(n->h) & LIBNBD_AIO_DIRECTION_WRITE))
                                (void) nbd_aio_notify_write(n->h);
                        if ((p.revents & (POLLHUP | POLLERR)) && !(dir & LIBNBD_AIO_DIRECTION_READ))
                                (void) nbd_aio_notify_read(n->h);
                }
                if (nbd_aio_is_dead(n->h) || nbd_aio_is_closed(n->h))
                        nbd_lost(n, nbd_get_error());
                else if (n->state == NBD_STATE_CONNECTING && nbd_aio_is_ready(n->h))
                        nbd_up(n);
        }
        now = nbd_now_ns();
        if (n->state == NBD_STATE_BACKOFF && now >= n->next_attempt_ns) {
                if (nbd_connect_start(n) < 0) {
                        if (n->h)
                                nbd_close_handle(n);
                        nbd_schedule_retry(n);
                }
                nbd_status_update(n);
        }
        if (n->state != NBD_STATE_UP && !n->failing &&
            now >= n->down_since_ns + (uint64_t) n->wait_ms * 1000000u)
                nbd_give_up(n);
        nbd_register(n);
        nbd_arm_timer(n);
}

/* r finished a command with ret: the next step, a wait for a connection, or its end. */
static void nbd_step(BlkNbd *n, BlkRequest *r, int ret, BlkList *done) {
        NbdCmd *c = r->bounce_;

        if (nbd_conn_error(ret) && !n->failing) {
                /* sent on a connection that died: again on the next one */
                blk_list_push(n->state == NBD_STATE_UP ? &n->staged : &n->waiting, r);
                return;
        }
        if (ret == 0 && !c->flushing && (r->op == BLK_DISCARD || r->op == BLK_WRITE_ZEROES)) {
                c->done += c->piece;
                c->piece = 0;
                if (c->done < r->len) {
                        nbd_dispatch(n, r);
                        return;
                }
        }
        if (ret == 0 && c->fua_flush && !c->flushing) {
                c->flushing = true;
                nbd_dispatch(n, r);
                return;
        }
        r->ret_ = ret;
        blk_list_push(done, r);
}

static void nbd_cmd_end(BlkRequest *r) {
        NbdCmd *c = r->bounce_;

        if (r->ret_ == 0 && r->op == BLK_READ && c->buf) {
                size_t off = 0;
                for (unsigned i = 0; i < r->niov; i++) {
                        memcpy(r->iov[i].iov_base, (uint8_t *) c->buf + off, r->iov[i].iov_len);
                        off += r->iov[i].iov_len;
                }
        }
        g_free(c->buf);
        g_free(c);
        r->bounce_ = NULL;
}

static unsigned nbd_reap(BlkBackend *b) {
        BlkNbd *n = (BlkNbd *) b;
        struct epoll_event ev[4];
        BlkList finished, done = { 0 };
        BlkRequest *r;
        unsigned cnt = 0;
        int k;

        /* Clear what announced this reap; the socket itself is polled below. */
        k = epoll_wait(b->event_fd, ev, G_N_ELEMENTS(ev), 0);
        for (int i = 0; i < k; i++)
                if (ev[i].data.fd == n->timer_fd || ev[i].data.fd == n->kick_fd)
                        nbd_drain_fd(ev[i].data.fd);
        nbd_progress(n);

        finished = n->finished;
        n->finished = (BlkList) { 0 };
        while ((r = blk_list_pop(&finished)))
                nbd_step(n, r, r->ret_, &done);
        if (n->staged.head)
                nbd_commit(b);
        else if (n->finished.head)
                nbd_kick(n);    /* steps that finished at once: the next reap runs them */

        /* Callbacks may submit again: those go out at the next commit. */
        while ((r = blk_list_pop(&done))) {
                int ret = r->ret_;
                nbd_cmd_end(r);
                n->inflight--;
                cnt++;
                r->cb(r, ret);
        }
        return cnt;
}

static unsigned nbd_inflight(const BlkBackend *b) {
        return ((const BlkNbd *) b)->inflight;
}

static void nbd_destroy(BlkBackend *b) {
        BlkNbd *n = (BlkNbd *) b;

        if (n->h) {
                if (nbd_aio_is_ready(n->h))
                        (void) nbd_shutdown(n->h, 0);
                nbd_close_handle(n);
        }
        if (n->timer_fd >= 0)
                close(n->timer_fd);
        if (n->kick_fd >= 0)
                close(n->kick_fd);
        nbd_target_clear(&n->t);
        g_mutex_clear(&n->status_lock);
        blk_base_close(b);
        g_free(n);
}

/* Wait for the reap that runs r's callback, here: the shutdown flush. */
typedef struct NbdSync {
        bool done;
        int ret;
} NbdSync;

static void nbd_sync_cb(BlkRequest *r, int ret) {
        NbdSync *s = r->opaque;

        s->done = true;
        s->ret = ret;
}

static int nbd_execute(BlkBackend *b, BlkRequest *r) {
        BlkRequest copy = *r;
        NbdSync s = { 0 };
        int ret;

        copy.cb = nbd_sync_cb;
        copy.opaque = &s;
        ret = nbd_submit(b, &copy);
        if (ret < 0)
                return ret;
        nbd_commit(b);
        while (!s.done) {
                struct pollfd p = { .fd = b->event_fd, .events = POLLIN };
                if (nbd_reap(b) == 0)
                        (void) poll(&p, 1, 100);
        }
        return s.ret;
}

static int nbd_resize(BlkBackend *b, uint64_t new_size) {
        BlkNbd *n = (BlkNbd *) b;

        if (n->h && n->state == NBD_STATE_UP) {
                int64_t size = nbd_get_size(n->h);
                if (size > 0)
                        n->export_size = (uint64_t) size;
        }
        if (new_size == 0)
                new_size = n->export_size;
        if (new_size < b->size || new_size > n->export_size)
                return -EINVAL;         /* the export's size is the server's */
        b->size = new_size;
        return 0;
}

static int nbd_open(const NbdTarget *t, uint64_t size, bool read_only, unsigned wait_ms, BlkBackend **out);

static int nbd_clone(const BlkBackend *b, BlkBackend **out) {
        const BlkNbd *n = (const BlkNbd *) b;

        *out = NULL;
        if (!b->read_only && !n->can_multi_conn)
                return -EOPNOTSUPP;     /* a flush on one connection would not cover the others */
        return nbd_open(&n->t, b->size, b->read_only, n->wait_ms, out);
}

static const BlkBackendOps blk_nbd_ops = {
        .name = "nbd",
        .submit = nbd_submit,
        .commit = nbd_commit,
        .reap = nbd_reap,
        .inflight = nbd_inflight,
        .destroy = nbd_destroy,
        .execute = nbd_execute,
        .resize = nbd_resize,
        .clone = nbd_clone,
        .waiting = nbd_waiting,
};

static int nbd_add_watch(int ep, int fd) {
        struct epoll_event e = { .events = EPOLLIN, .data.fd = fd };

        return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

/* Connect (waiting up to NBD_OPEN_TIMEOUT_MS for the handshake) and read the export. */
static int nbd_open(const NbdTarget *t, uint64_t size, bool read_only, unsigned wait_ms, BlkBackend **out) {
        BlkNbd *n = g_new0(BlkNbd, 1);
        uint64_t deadline = nbd_now_ns() + NBD_OPEN_TIMEOUT_MS * 1000000ull;
        int r;

        n->base = (BlkBackend) {
                .ops = &blk_nbd_ops,
                .path = g_strdup(t->uri),
                .fd = -1,
                .dio_align = 1,
                .read_only = read_only,
        };
        nbd_target_copy(&n->t, t);
        g_mutex_init(&n->status_lock);
        n->wait_ms = wait_ms ? wait_ms : NBD_DEFAULT_WAIT_MS;
        n->reg_fd = -1;
        n->backoff_ms = NBD_BACKOFF_FIRST_MS;
        n->base.event_fd = epoll_create1(EPOLL_CLOEXEC);
        n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
        n->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (n->base.event_fd < 0 || n->timer_fd < 0 || n->kick_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = nbd_add_watch(n->base.event_fd, n->timer_fd);
        if (r == 0)
                r = nbd_add_watch(n->base.event_fd, n->kick_fd);
        if (r == 0)
                r = nbd_connect_start(n);
        while (r == 0 && !nbd_aio_is_ready(n->h)) {
                uint64_t now = nbd_now_ns();
                unsigned dir = nbd_aio_get_direction(n->h);
                struct pollfd p = {
                        .fd = nbd_aio_get_fd(n->h),
                        .events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                                  ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0),
                };
                if (nbd_aio_is_dead(n->h) || nbd_aio_is_closed(n->h) || p.fd < 0) {
                        int e = nbd_get_errno();
                        g_debug("nbd %s: %s", t->uri, nbd_get_error());
                        r = -(e ? e : ECONNREFUSED);
                        break;
                }
                if (now >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                int k = poll(&p, 1, (int) ((deadline - now) / 1000000u) + 1);
                if (k < 0 && errno != EINTR)
                        r = -errno;
                else if (k > 0 && (p.revents & POLLOUT))
                        (void) nbd_aio_notify_write(n->h);
                else if (k > 0)
                        (void) nbd_aio_notify_read(n->h);
        }
        if (r == 0)
                r = nbd_read_export(n);
        if (r == 0 && !read_only && nbd_is_read_only(n->h) > 0)
                r = -EROFS;
        if (r == 0 && size > n->export_size)
                r = -EINVAL;
        if (r < 0)
                goto fail;
        n->base.size = size ? size : n->export_size;
        n->base.caps = read_only ? 0 : n->can_trim ? BLK_CAP_DISCARD : 0;
        if (!read_only && n->can_zero)
                n->base.caps |= BLK_CAP_WRITE_ZEROES_UNMAP;
        n->connections = 1;
        n->state = NBD_STATE_UP;
        nbd_register(n);
        *out = &n->base;
        return 0;
fail:
        nbd_destroy(&n->base);
        return r;
}

int blk_nbd_create(const BlkOpenOptions *opts, BlkBackend **out) {
        NbdTarget t;
        int r = nbd_target_parse(opts->nbd_uri, &t);

        if (r == 0)
                r = nbd_open(&t, opts->size, opts->read_only, opts->nbd_wait_ms, out);
        nbd_target_clear(&t);
        return r;
}
