/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * passt backend: user-mode networking over a UNIX stream socket.  Each
 * frame is a 32-bit big-endian length followed by the Ethernet frame (the
 * protocol of QEMU's stream netdev, which libvirt pairs with passt).
 *
 * Input is parsed from a buffer; output goes straight to the socket and,
 * when the socket is full, into a bounded buffer flushed on POLLOUT.  A
 * frame that does not fit there is refused (-EAGAIN: dropped and counted);
 * a frame is never split across a drop, so the stream stays in sync.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "net/net-backend.h"
#include "net/vnet-proto.h"

#define PASST_RX_BUF (2 * (VNET_MAX_FRAME + 4))
#define PASST_TX_BUF (1024 * 1024)

typedef struct NetPasst {
        NetBackend be;
        int fd;
        bool broken;
        uint8_t *rx;            /* [rx_start, rx_end) holds unparsed input */
        size_t rx_start, rx_end;
        uint8_t *tx;            /* [tx_start, tx_end) waits for the socket */
        size_t tx_start, tx_end;
} NetPasst;

static NetPasst *passt_of(NetBackend *be) {
        return (NetPasst *) be;
}

/* A complete frame at the head of the input buffer: its length, 0 when incomplete, -EPROTO. */
static ssize_t parse_one(NetPasst *p) {
        size_t avail = p->rx_end - p->rx_start;
        uint32_t len;

        if (avail < 4)
                return 0;
        memcpy(&len, p->rx + p->rx_start, 4);
        len = ntohl(len);
        if (len < 14 || len > VNET_MAX_FRAME)
                return -EPROTO;
        return avail - 4 >= len ? (ssize_t) len : 0;
}

static ssize_t passt_recv(NetBackend *be, unsigned q, void *buf, size_t cap) {
        NetPasst *p = passt_of(be);

        if (p->broken)
                return -EPROTO;
        for (;;) {
                ssize_t len = parse_one(p);

                if (len < 0) {
                        p->broken = true;
                        return len;
                }
                if (len > 0) {
                        if ((size_t) len + VNET_HDR_LEN > cap) {
                                p->rx_start += 4 + (size_t) len;   /* cannot hold it: skip it whole */
                                return -EMSGSIZE;
                        }
                        memset(buf, 0, VNET_HDR_LEN);
                        memcpy((uint8_t *) buf + VNET_HDR_LEN, p->rx + p->rx_start + 4, (size_t) len);
                        p->rx_start += 4 + (size_t) len;
                        return (ssize_t) len + VNET_HDR_LEN;
                }

                /* Need more input: compact, then read what the socket has. */
                if (p->rx_start > 0) {
                        memmove(p->rx, p->rx + p->rx_start, p->rx_end - p->rx_start);
                        p->rx_end -= p->rx_start;
                        p->rx_start = 0;
                }
                ssize_t n = recv(p->fd, p->rx + p->rx_end, PASST_RX_BUF - p->rx_end, MSG_DONTWAIT);
                if (n == 0) {
                        p->broken = true;
                        return -ECONNRESET;
                }
                if (n < 0)
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                p->rx_end += (size_t) n;
        }
}

static int passt_flush(NetBackend *be, unsigned q) {
        NetPasst *p = passt_of(be);

        while (p->tx_start < p->tx_end) {
                ssize_t n = send(p->fd, p->tx + p->tx_start, p->tx_end - p->tx_start, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0)
                        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
                p->tx_start += (size_t) n;
        }
        p->tx_start = p->tx_end = 0;
        return 0;
}

static int passt_send(NetBackend *be, unsigned q, const struct iovec *iov, unsigned n) {
        NetPasst *p = passt_of(be);
        struct iovec v[VNET_MAX_FRAME / 512 + 2];
        size_t skip = VNET_HDR_LEN, total = 0;
        unsigned nv = 1;
        uint32_t be_len;
        ssize_t w = 0;

        if (p->broken)
                return -EPIPE;
        /* The frame without its virtio-net header. */
        for (unsigned i = 0; i < n; i++) {
                size_t l = iov[i].iov_len;
                if (skip >= l) {
                        skip -= l;
                        continue;
                }
                if (nv == G_N_ELEMENTS(v))
                        return -EMSGSIZE;
                v[nv].iov_base = (uint8_t *) iov[i].iov_base + skip;
                v[nv].iov_len = l - skip;
                total += l - skip;
                skip = 0;
                nv++;
        }
        if (total < 14 || total > VNET_MAX_FRAME)
                return -EMSGSIZE;
        be_len = htonl((uint32_t) total);
        v[0].iov_base = &be_len;
        v[0].iov_len = 4;

        if (p->tx_end == p->tx_start) {
                struct msghdr m = { .msg_iov = v, .msg_iovlen = nv };
                w = sendmsg(p->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w < 0 && errno != EWOULDBLOCK)
                        return -errno;
                if (w < 0)
                        w = 0;
                if ((size_t) w == total + 4)
                        return 0;
        } else if (passt_flush(be, q) == 0) {
                return passt_send(be, q, iov, n);
        }

        /* Keep the rest of the frame (never half of one) for POLLOUT, or refuse it. */
        size_t rest = total + 4 - (size_t) w;
        if (w == 0 && p->tx_end + rest > PASST_TX_BUF && p->tx_start > 0) {
                memmove(p->tx, p->tx + p->tx_start, p->tx_end - p->tx_start);
                p->tx_end -= p->tx_start;
                p->tx_start = 0;
        }
        if (p->tx_end + rest > PASST_TX_BUF) {
                if (w == 0)
                        return -EAGAIN;
                /* Part of this frame is on the wire: it must be completed. */
                memmove(p->tx, p->tx + p->tx_start, p->tx_end - p->tx_start);
                p->tx_end -= p->tx_start;
                p->tx_start = 0;
        }
        size_t skipped = (size_t) w;
        for (unsigned i = 0; i < nv; i++) {
                size_t l = v[i].iov_len;
                if (skipped >= l) {
                        skipped -= l;
                        continue;
                }
                memcpy(p->tx + p->tx_end, (uint8_t *) v[i].iov_base + skipped, l - skipped);
                p->tx_end += l - skipped;
                skipped = 0;
        }
        return 0;
}

static int passt_fd(NetBackend *be, unsigned q) {
        return passt_of(be)->fd;
}

static void passt_free(NetBackend *be) {
        NetPasst *p = passt_of(be);

        if (p->fd >= 0)
                close(p->fd);
        g_free(p->rx);
        g_free(p->tx);
        g_free(p);
}

static const NetBackendOps passt_ops = {
        .type = "passt",
        .recv = passt_recv,
        .send = passt_send,
        .flush = passt_flush,
        .fd = passt_fd,
        .free = passt_free,
};

int net_passt_new(int fd, NetBackend **out) {
        NetPasst *p;
        int fl = fcntl(fd, F_GETFL);

        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        p = g_new0(NetPasst, 1);
        p->be.ops = &passt_ops;
        p->be.nqueues = 1;
        p->be.offloads = false;
        p->fd = fd;
        p->rx = g_malloc(PASST_RX_BUF);
        p->tx = g_malloc(PASST_TX_BUF);
        *out = &p->be;
        return 0;
}

int net_passt_connect(const char *path, NetBackend **out) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        r = net_passt_new(fd, out);
        if (r < 0)
                close(fd);
        return r;
}

int net_passt_spawn(const char *passt_path, NetBackend **out, pid_t *pid) {
        extern char **environ;
        posix_spawn_file_actions_t fa;
        int sv[2], r;
        char fdarg[16];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                return -errno;
        /* passt's end: keep it across exec as fd 3. */
        g_snprintf(fdarg, sizeof(fdarg), "%d", 3);
        char *argv[] = { (char *) passt_path, "--foreground", "--quiet", "--fd", fdarg, NULL };

        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
        r = -posix_spawnp(pid, passt_path, &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        close(sv[1]);
        if (r < 0) {
                close(sv[0]);
                return r;
        }
        r = net_passt_new(sv[0], out);
        if (r < 0) {
                close(sv[0]);
                kill(*pid, SIGTERM);
        }
        return r;
}
