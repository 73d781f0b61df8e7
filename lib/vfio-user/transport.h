/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The byte-stream transport under the vfio-user framing.  The server reads
 * and writes through this ops table; the socket implementation is the real
 * one, tests and the fuzzer plug in a memory transport
 * (vu_server_attach_transport()).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct VuTransportOps {
        /*
         * Read up to len bytes without blocking.  Received fds are appended
         * at fds[*n_fds], at most max_fds in all; fds beyond that, or
         * control data the kernel truncated, are closed and set *truncated.
         * Returns bytes read (> 0), 0 at end of stream, -EAGAIN when nothing
         * is available, or another -errno when the stream failed.
         */
        ssize_t (*recv)(void *t, void *buf, size_t len, int *fds, unsigned max_fds,
                        unsigned *n_fds, bool *truncated);
        /* Send every byte of iov, fds attached to the first byte.  0 or -errno. */
        int (*send)(void *t, const struct iovec *iov, unsigned iovcnt, const int *fds, unsigned n_fds);
        /* Release the transport (the server is done with it). */
        void (*close)(void *t);
} VuTransportOps;

/* How long a send may wait for a client that does not read (QEMU's own reply budget). */
#define VU_SEND_TIMEOUT_MS 5000

/* Socket helpers (AF_UNIX stream, SCM_RIGHTS, MSG_CMSG_CLOEXEC), shared with the client. */
ssize_t vu_sock_recv(int fd, void *buf, size_t len, int *fds, unsigned max_fds,
                     unsigned *n_fds, bool *truncated, bool nonblock);
int vu_sock_send(int fd, const struct iovec *iov, unsigned iovcnt, const int *fds,
                 unsigned n_fds, int timeout_ms);
/* Wait until fd is readable (events POLLIN) or writable (POLLOUT).  0, -ETIMEDOUT or -errno. */
int vu_sock_wait(int fd, short events, int timeout_ms);

/* The socket transport: opaque is the connected fd (cast through intptr_t). */
extern const VuTransportOps vu_sock_transport_ops;

typedef struct VuServer VuServer;
/*
 * Attach a client over a transport of the caller's (tests, fuzzing).  The
 * caller drives vu_server_dispatch(); ops->close runs when the server drops
 * the client.  0, -EBUSY if a client is attached.
 */
int vu_server_attach_transport(VuServer *s, const VuTransportOps *ops, void *t);
