/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * AF_UNIX stream transport: fds travel as SCM_RIGHTS and are received with
 * MSG_CMSG_CLOEXEC.  Reads never block and never cross into the next
 * message (the framing asks for exact lengths), so fds stay with the
 * message they were sent with.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "transport.h"

/* Room for more fds than we accept, so "too many" is told apart from a short control buffer. */
#define VU_RX_CMSG_FDS 64

ssize_t vu_sock_recv(int fd, void *buf, size_t len, int *fds, unsigned max_fds,
                     unsigned *n_fds, bool *truncated, bool nonblock) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * VU_RX_CMSG_FDS)];
        } ctl;
        struct iovec iov = { .iov_base = buf, .iov_len = len };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = ctl.buf,
                .msg_controllen = sizeof(ctl.buf),
        };
        ssize_t n;

        do
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | (nonblock ? MSG_DONTWAIT : 0));
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;

        if (mh.msg_flags & MSG_CTRUNC)
                *truncated = true;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                size_t cnt;
                int *p;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                cnt = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                p = (int *) CMSG_DATA(c);
                for (size_t i = 0; i < cnt; i++) {
                        int rfd;

                        memcpy(&rfd, p + i, sizeof(int));
                        if (*n_fds < max_fds)
                                fds[(*n_fds)++] = rfd;
                        else {
                                close(rfd);
                                *truncated = true;
                        }
                }
        }
        return n;
}

int vu_sock_wait(int fd, short events, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = events };
        int r;

        do
                r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        return 0;
}

int vu_sock_send(int fd, const struct iovec *iov_in, unsigned iovcnt, const int *fds,
                 unsigned n_fds, int timeout_ms) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * VU_RX_CMSG_FDS)];
        } ctl;
        struct iovec iov[8];
        unsigned first = 0;

        if (iovcnt > G_N_ELEMENTS(iov) || n_fds > VU_RX_CMSG_FDS)
                return -EINVAL;
        memcpy(iov, iov_in, iovcnt * sizeof(*iov));

        while (first < iovcnt) {
                struct msghdr mh = { .msg_iov = iov + first, .msg_iovlen = iovcnt - first };
                ssize_t n;

                if (iov[first].iov_len == 0) {
                        first++;
                        continue;
                }
                if (n_fds) {
                        struct cmsghdr *c;

                        memset(&ctl, 0, sizeof(ctl));
                        mh.msg_control = ctl.buf;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                        c = CMSG_FIRSTHDR(&mh);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
                }
                n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        int r;

                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                return -errno;
                        r = vu_sock_wait(fd, POLLOUT, timeout_ms);
                        if (r < 0)
                                return r;
                        continue;
                }
                n_fds = 0;      /* the fds went with the first byte */
                while (n > 0 && first < iovcnt) {
                        size_t step = MIN((size_t) n, iov[first].iov_len);

                        iov[first].iov_base = (uint8_t *) iov[first].iov_base + step;
                        iov[first].iov_len -= step;
                        n -= (ssize_t) step;
                        if (iov[first].iov_len == 0)
                                first++;
                }
        }
        return 0;
}

static ssize_t sock_recv(void *t, void *buf, size_t len, int *fds, unsigned max_fds,
                         unsigned *n_fds, bool *truncated) {
        return vu_sock_recv((int) (intptr_t) t, buf, len, fds, max_fds, n_fds, truncated, true);
}

static int sock_send(void *t, const struct iovec *iov, unsigned iovcnt, const int *fds, unsigned n_fds) {
        return vu_sock_send((int) (intptr_t) t, iov, iovcnt, fds, n_fds, VU_SEND_TIMEOUT_MS);
}

static void sock_close(void *t) {
        close((int) (intptr_t) t);
}

const VuTransportOps vu_sock_transport_ops = {
        .recv = sock_recv,
        .send = sock_send,
        .close = sock_close,
};
