/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The null network backend: to measure the device rather than a host
 * network stack (as the NVMe null namespace measures it without a disk).
 * Sent frames are counted and dropped; received frames are copies of one
 * template (broadcast, so every receive filter passes it: an IPv4/UDP
 * frame of the configured length) handed out as fast as the guest's
 * receive rings take them.  Each queue's fd is an eventfd that stays
 * readable while the queue receives (and is never readable when it does
 * not), so the data-path thread sleeps only when the guest has no buffers.
 * Each queue is used by its own thread only: its counters sit on their own
 * cache line.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <glib.h>

#include "net/net-backend.h"
#include "net/vnet-proto.h"

typedef struct NetNullQueue {
        _Alignas(64) int fd;
        NetNullStats st;
} NetNullQueue;

typedef struct NetNull {
        NetBackend be;
        size_t rx_len;                  /* header + frame, 0: receives nothing */
        uint8_t *rx_frame;
        NetNullQueue *q;
} NetNull;

static NetNull *null_of(NetBackend *be) {
        return (NetNull *) be;
}

/* The queue's own thread counts (no locked add: nobody else writes), readers load. */
static void null_count(uint64_t *frames, uint64_t *bytes, size_t len) {
        __atomic_store_n(frames, __atomic_load_n(frames, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
        __atomic_store_n(bytes, __atomic_load_n(bytes, __ATOMIC_RELAXED) + len, __ATOMIC_RELAXED);
}

static ssize_t null_recv(NetBackend *be, unsigned q, void *buf, size_t cap) {
        NetNull *n = null_of(be);

        if (n->rx_len == 0)
                return -EAGAIN;
        if (cap < n->rx_len)
                return -EMSGSIZE;
        memcpy(buf, n->rx_frame, n->rx_len);
        null_count(&n->q[q].st.rx_frames, &n->q[q].st.rx_bytes, n->rx_len - VNET_HDR_LEN);
        return (ssize_t) n->rx_len;
}

static int null_send(NetBackend *be, unsigned q, const struct iovec *iov, unsigned niov) {
        NetNullQueue *nq = &null_of(be)->q[q];
        size_t len = 0;

        for (unsigned i = 0; i < niov; i++)
                len += iov[i].iov_len;
        null_count(&nq->st.tx_frames, &nq->st.tx_bytes, len > VNET_HDR_LEN ? len - VNET_HDR_LEN : 0);
        return 0;
}

static int null_flush(NetBackend *be, unsigned q) {
        return 0;
}

static int null_fd(NetBackend *be, unsigned q) {
        return null_of(be)->q[q].fd;
}

static int null_set_offloads(NetBackend *be, unsigned offloads) {
        return 0;
}

static void null_free(NetBackend *be) {
        NetNull *n = null_of(be);

        for (unsigned i = 0; i < be->nqueues; i++)
                if (n->q[i].fd >= 0)
                        close(n->q[i].fd);
        g_aligned_free(n->q);
        g_free(n->rx_frame);
        g_free(n);
}

static const NetBackendOps null_ops = {
        .type = "null",
        .recv = null_recv,
        .send = null_send,
        .flush = null_flush,
        .fd = null_fd,
        .set_offloads = null_set_offloads,
        .free = null_free,
};

/* A broadcast IPv4/UDP frame of len bytes (no FCS), header zeroed in front. */
static void null_template(uint8_t *p, size_t len) {
        static const uint8_t src[6] = { 0x02, 0x76, 0x66, 0x75, 0x00, 0x01 };
        uint8_t *eth = p + VNET_HDR_LEN, *ip = eth + 14, *udp = ip + 20;
        uint16_t ip_len = (uint16_t) (len - 14), udp_len = (uint16_t) (len - 34);
        uint32_t sum = 0;

        memset(p, 0, VNET_HDR_LEN + len);
        memset(eth, 0xff, 6);
        memcpy(eth + 6, src, 6);
        eth[12] = 0x08;
        ip[0] = 0x45;
        ip[2] = (uint8_t) (ip_len >> 8);
        ip[3] = (uint8_t) ip_len;
        ip[8] = 64;
        ip[9] = 17;                     /* UDP */
        memcpy(ip + 12, "\x0a\x4e\x00\x01", 4);         /* 10.78.0.1 */
        memset(ip + 16, 0xff, 4);                       /* to 255.255.255.255 */
        for (unsigned i = 0; i < 20; i += 2)
                sum += (uint32_t) ip[i] << 8 | ip[i + 1];
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        ip[10] = (uint8_t) (~sum >> 8);
        ip[11] = (uint8_t) ~sum;
        udp[0] = 0x13;                  /* 5000 → 9 (discard) */
        udp[1] = 0x88;
        udp[3] = 9;
        udp[4] = (uint8_t) (udp_len >> 8);
        udp[5] = (uint8_t) udp_len;     /* checksum 0: none (IPv4) */
}

int net_null_open(unsigned nqueues, size_t rx_frame_len, NetBackend **out) {
        if (nqueues == 0 || nqueues > 256 ||
            (rx_frame_len && (rx_frame_len < VNET_NULL_MIN_FRAME || rx_frame_len > VNET_NULL_MAX_FRAME)))
                return -EINVAL;

        NetNull *n = g_new0(NetNull, 1);
        n->be.ops = &null_ops;
        n->be.nqueues = nqueues;
        n->be.offloads = true;          /* accepts any header; hands out a zero one */
        n->q = g_aligned_alloc0(nqueues, sizeof(NetNullQueue), 64);
        for (unsigned i = 0; i < nqueues; i++)
                n->q[i].fd = -1;
        if (rx_frame_len) {
                n->rx_len = VNET_HDR_LEN + rx_frame_len;
                n->rx_frame = g_malloc(n->rx_len);
                null_template(n->rx_frame, rx_frame_len);
        }
        for (unsigned i = 0; i < nqueues; i++) {
                /* Readable for good when the queue receives: a count nobody reads. */
                n->q[i].fd = eventfd(rx_frame_len ? 1 : 0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (n->q[i].fd < 0) {
                        int r = -errno;
                        null_free(&n->be);
                        return r;
                }
        }
        *out = &n->be;
        return 0;
}

bool net_null_get_stats(NetBackend *be, unsigned q, NetNullStats *st) {
        if (!be || be->ops != &null_ops || q >= be->nqueues)
                return false;
        NetNullQueue *nq = &null_of(be)->q[q];
        st->tx_frames = __atomic_load_n(&nq->st.tx_frames, __ATOMIC_RELAXED);
        st->tx_bytes = __atomic_load_n(&nq->st.tx_bytes, __ATOMIC_RELAXED);
        st->rx_frames = __atomic_load_n(&nq->st.rx_frames, __ATOMIC_RELAXED);
        st->rx_bytes = __atomic_load_n(&nq->st.rx_bytes, __ATOMIC_RELAXED);
        return true;
}
