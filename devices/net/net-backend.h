/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The network backend seam: where frames leave and enter the host.  Every
 * frame crossing it carries the 12-byte virtio-net header first (5.1.6); a
 * backend without offloads (passt) writes a zero header on receive and
 * ignores it on send.
 *
 * Backends never block: a frame that cannot be taken now is refused with
 * -EAGAIN and the device drops and counts it.  Queue q is a queue pair.
 * Return convention: negative errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct NetBackend NetBackend;

/* TAP offload flags (linux/if_tun.h TUN_F_*), the backend-neutral offload language. */
#define VNET_OFFLOAD_CSUM 0x01
#define VNET_OFFLOAD_TSO4 0x02
#define VNET_OFFLOAD_TSO6 0x04
#define VNET_OFFLOAD_TSO_ECN 0x08

/* One frame of a transmit batch: its iovecs (header first) and, after the call, what send would return. */
typedef struct NetTxFrame {
        const struct iovec *iov;
        unsigned n;
        int ret;
} NetTxFrame;

/* Frames one send_batch call takes at most. */
#define NET_TX_BATCH_MAX 32u

typedef struct NetBackendOps {
        const char *type;
        /* One frame (header first) into buf: its length, -EAGAIN when none, -EPROTO/-errno when broken. */
        ssize_t (*recv)(NetBackend *be, unsigned q, void *buf, size_t cap);
        /* One frame (header first): 0 sent, -EAGAIN cannot take it now, -errno (frame rejected). */
        int (*send)(NetBackend *be, unsigned q, const struct iovec *iov, unsigned n);
        /*
         * Optional: count ≤ NET_TX_BATCH_MAX frames, in order, with as few
         * system calls as the backend can (each frame's ret as send's).
         */
        void (*send_batch)(NetBackend *be, unsigned q, NetTxFrame *f, unsigned count);
        /* Push out buffered output; 0 when empty, -EAGAIN when more remains (wait for POLLOUT). */
        int (*flush)(NetBackend *be, unsigned q);
        /* The fd to poll for queue q. */
        int (*fd)(NetBackend *be, unsigned q);
        /* Offloads the guest accepts on receive (VNET_OFFLOAD_*); optional. */
        int (*set_offloads)(NetBackend *be, unsigned offloads);
        /* Only queues [0, n) carry traffic; optional. */
        int (*set_active_queues)(NetBackend *be, unsigned n);
        void (*free)(NetBackend *be);
} NetBackendOps;

struct NetBackend {
        const NetBackendOps *ops;
        unsigned nqueues;
        bool offloads;                  /* honours VNET_OFFLOAD_* and the header on send */
        char *ifname;                   /* TAP interface name, or NULL */
        unsigned mtu;                   /* the interface's MTU when opened (TAP), or 0: unknown */
        unsigned tx_batch;              /* frames the device hands send_batch at once; ≤ 1: send each */
        uint64_t tx_calls;              /* TAP: system calls that sent frames (atomic) */
        unsigned rx_batch;              /* TAP: frames read ahead per system call at most; ≤ 1: one read each */
        uint64_t rx_calls;              /* TAP: system calls that read frames (atomic) */
};

void net_backend_free(NetBackend *be);

/*
 * TAP: queue i uses fds[i] when fds is non-NULL and fds[i] ≥ 0 (opened by a
 * privileged process, checked to be a TAP with IFF_VNET_HDR), otherwise the
 * queue is attached to the TAP called name, creating it when it does not
 * exist (name NULL or "": the kernel picks vfuN-style "tap%d").  Sets
 * IFF_NO_PI|IFF_VNET_HDR|IFF_MULTI_QUEUE, TUNSETVNETHDRSZ 12, non-blocking,
 * no offloads until set_offloads().  be->mtu is the interface's MTU at this
 * point (SIOCGIFMTU in the caller's network namespace; 0 when it cannot be
 * read).  0 or -errno; passed fds are consumed.  Transmit batches
 * (be->tx_batch frames) go out through an io_uring per queue, one
 * io_uring_enter for the batch, made by the queue's thread at its first
 * batch; without io_uring (or with tx_batch set to 1) each frame is a
 * writev.  Receive reads frames ahead while they come in bursts, up to
 * be->rx_batch per io_uring_enter (RWF_NOWAIT reads: an empty TAP ends the
 * batch), handing them out in order; set rx_batch to 1 for one read per
 * frame.
 */
int net_tap_open(const char *name, unsigned nqueues, int *fds, NetBackend **out);

/*
 * passt: a connected UNIX stream socket carrying 32-bit big-endian
 * length-prefixed Ethernet frames (QEMU's "stream" netdev protocol).
 * net_passt_new() adopts fd; net_passt_connect() connects to path;
 * net_passt_spawn() starts passt on one end of a socketpair (*pid receives
 * its pid; the caller reaps it).
 */
int net_passt_new(int fd, NetBackend **out);
int net_passt_connect(const char *path, NetBackend **out);
int net_passt_spawn(const char *passt_path, NetBackend **out, pid_t *pid);

/*
 * null: stores and sends nothing, for measuring the device.  Sent frames
 * are counted and dropped; every receive returns a copy of one broadcast
 * IPv4/UDP frame of rx_frame_len bytes (VNET_NULL_MIN_FRAME..
 * VNET_NULL_MAX_FRAME, without FCS), as fast as the guest takes them, or
 * nothing when rx_frame_len is 0.  0 or -EINVAL/-errno.
 */
#define VNET_NULL_MIN_FRAME 60u
#define VNET_NULL_MAX_FRAME 1514u
int net_null_open(unsigned nqueues, size_t rx_frame_len, NetBackend **out);

typedef struct NetNullStats {
        uint64_t tx_frames, tx_bytes;   /* sent by the guest, dropped */
        uint64_t rx_frames, rx_bytes;   /* handed to the device for the guest */
} NetNullStats;

/* Queue q's counters (any thread): true, or false when be is not a null backend. */
bool net_null_get_stats(NetBackend *be, unsigned q, NetNullStats *st);
