/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Receive (virtio-v1.2 5.1.6.3, 5.1.6.4): a frame from the backend is
 * filtered (5.1.6.5.1/2), its header checked against the guest's features,
 * then copied into one receive buffer, or several with MRG_RXBUF
 * (num_buffers in the first).  With no buffer available the frame waits and
 * the backend is not read until the driver adds buffers.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <glib.h>

#include "net/vnet-priv.h"
#include "virtio/virtio.h"

#define VNET_RX_BUDGET 256

typedef struct RxUse {
        uint16_t id, ndesc;
        uint32_t len;
} RxUse;

void vnet_filter_reset(VNet *n) {
        pthread_rwlock_wrlock(&n->filter_lock);
        memset(&n->filter, 0, sizeof(n->filter));
        /* Until the driver says otherwise, receive everything (as without CTRL_RX). */
        n->filter.promisc = true;
        pthread_rwlock_unlock(&n->filter_lock);
}

static bool mac_in(const uint8_t (*table)[6], unsigned count, const uint8_t *mac) {
        for (unsigned i = 0; i < count; i++)
                if (memcmp(table[i], mac, 6) == 0)
                        return true;
        return false;
}

bool vnet_filter_accepts(VNet *n, const uint8_t *frame, size_t len) {
        static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        const uint8_t *dst = frame;
        const VNetFilter *f = &n->filter;
        bool ok;

        if (len < 6)
                return false;
        pthread_rwlock_rdlock(&n->filter_lock);
        if (f->promisc || memcmp(dst, bcast, 6) == 0)
                ok = true;
        else if (dst[0] & 1)
                ok = f->allmulti || f->multi_overflow || mac_in(f->multi, f->n_multi, dst);
        else {
                pthread_mutex_lock(&n->lock);
                ok = memcmp(dst, n->mac, 6) == 0;
                pthread_mutex_unlock(&n->lock);
                ok = ok || f->uni_overflow || mac_in(f->uni, f->n_uni, dst);
        }
        pthread_rwlock_unlock(&n->filter_lock);
        return ok;
}

/*
 * Place the pending frame into receive buffers.  1 placed or dropped, 0 no
 * buffers (frame kept), -errno the queue broke.
 */
static int rx_place(VNetPair *p) {
        VNet *n = p->n;
        VirtQueue *vq = p->rx;
        VqChain *c = p->chain;
        RxUse use[64];
        struct iovec hdr_iov[VNET_HDR_LEN] = { { 0 } };
        VqSeg hdr_seg[VNET_HDR_LEN];
        unsigned nbufs = 0, slots = 0, hdr_n = 0, hdr_segs = 0;
        size_t off = 0, total = p->frame_len;
        int r;

        while (off < total) {
                r = vq_pop(vq, c);
                if (r < 0)
                        return r;
                if (r == 0 || nbufs == G_N_ELEMENTS(use)) {
                        vq_unpop(vq, nbufs + (r > 0), slots + (r > 0 ? c->ndesc : 0));
                        /* Every buffer the ring can hold is not enough: the frame can never fit. */
                        if (r > 0 || nbufs >= vq->size) {
                                VNET_STAT_ADD(p, rx_drops, 1);
                                return 1;
                        }
                        return 0;
                }
                /* 5.1.6.3.1: receive buffers are device-writable and hold at least the header. */
                if (c->out_num > 0 || (nbufs == 0 && c->in_len < VNET_HDR_LEN)) {
                        vq_unpop(vq, nbufs + 1, slots + c->ndesc);
                        return -EINVAL;
                }
                if (nbufs == 0 && !n->mrg_rxbuf && c->in_len < total) {
                        /* Without MRG_RXBUF the frame must fit one buffer: drop it, keep the buffer. */
                        vq_unpop(vq, 1, c->ndesc);
                        VNET_STAT_ADD(p, rx_drops, 1);
                        return 1;
                }
                if (nbufs == 0) {
                        /* Remember where the header lives, to write num_buffers at the end. */
                        size_t need = VNET_HDR_LEN;
                        struct iovec *in = vq_chain_in(c);
                        for (unsigned i = 0; i < c->in_num && need > 0 && hdr_n < G_N_ELEMENTS(hdr_iov); i++) {
                                hdr_iov[hdr_n++] = in[i];
                                need -= MIN(need, in[i].iov_len);
                        }
                        need = VNET_HDR_LEN;
                        for (unsigned i = 0; i < c->n_in_seg && need > 0 && hdr_segs < G_N_ELEMENTS(hdr_seg); i++) {
                                hdr_seg[hdr_segs] = c->in_seg[i];
                                hdr_seg[hdr_segs].len = (uint32_t) MIN(need, (size_t) c->in_seg[i].len);
                                need -= hdr_seg[hdr_segs++].len;
                        }
                }
                size_t take = MIN(total - off, c->in_len);
                size_t done = vq_buf_to_iov(vq_chain_in(c), c->in_num, 0, p->frame + off, take);
                /* Dirty logging learns of guest pages after they are written. */
                vq_mark_written(vq, c, done);
                use[nbufs++] = (RxUse) { .id = c->id, .ndesc = c->ndesc, .len = (uint32_t) done };
                slots += c->ndesc;
                off += done;
        }

        uint16_t nb = htole16((uint16_t) nbufs);
        vq_buf_to_iov(hdr_iov, hdr_n, offsetof(VNetHdr, num_buffers), &nb, sizeof(nb));
        for (unsigned i = 0; i < hdr_segs; i++)
                vu_mem_mark_dirty(vq->mem, hdr_seg[i].gpa, hdr_seg[i].len);
        for (unsigned i = 0; i < nbufs; i++)
                vq_push(vq, use[i].id, use[i].ndesc, use[i].len);
        VNET_STAT_ADD(p, rx_packets, 1);
        VNET_STAT_ADD(p, rx_bytes, total - VNET_HDR_LEN);
        return 1;
}

/* Read the next frame the guest should see into p->frame.  1 got one, 0 none, -errno. */
static int rx_fetch(VNetPair *p) {
        VNet *n = p->n;

        for (;;) {
                ssize_t len = n->be->ops->recv(n->be, p->index, p->frame, VNET_HDR_LEN + VNET_MAX_FRAME);
                VNetHdr *h = (VNetHdr *) p->frame;

                if (len == -EAGAIN)
                        return 0;
                if (len == -EMSGSIZE) {
                        VNET_STAT_ADD(p, rx_drops, 1);
                        continue;
                }
                if (len < 0) {
                        VNET_STAT_ADD(p, rx_errors, 1);
                        return (int) len;
                }
                if ((size_t) len < VNET_HDR_LEN + 14 ||
                    !vnet_filter_accepts(n, p->frame + VNET_HDR_LEN, (size_t) len - VNET_HDR_LEN))
                        continue;
                if (vnet_rx_hdr_fix(n->features, h) < 0) {
                        VNET_STAT_ADD(p, rx_drops, 1);
                        continue;
                }
                h->num_buffers = htole16(1);
                p->frame_len = (size_t) len;
                return 1;
        }
}

int vnet_rx_process(VNetPair *p) {
        VNet *n = p->n;
        VirtQueue *vq = p->rx;
        unsigned budget = VNET_RX_BUDGET;
        int ret = 0;

        p->want_input = false;          /* decided below */
        if (!vq || !vq_ready(vq) || p->index >= __atomic_load_n(&n->active_pairs, __ATOMIC_RELAXED))
                return 0;
        if (!__atomic_load_n(&n->link_up, __ATOMIC_RELAXED)) {
                /* No carrier: what arrives is lost, as on a cable, and counted. */
                if (p->have_frame)
                        VNET_STAT_ADD(p, rx_drops, 1);
                p->have_frame = false;
                while (budget-- > 0) {
                        int r = rx_fetch(p);
                        if (r <= 0) {
                                p->want_input = r == 0;
                                return 0;
                        }
                        VNET_STAT_ADD(p, rx_drops, 1);
                }
                return 1;
        }

        /* Kicks for new receive buffers are only wanted while a frame waits for one. */
        vq_notify_disable(vq);
        while (budget-- > 0) {
                if (!p->have_frame) {
                        if (vnet_qos_wait(p, VNET_QOS_RX))
                                break;          /* frames wait in the backend; a timer wakes us */
                        int r = rx_fetch(p);
                        if (r < 0) {
                                ret = 0;        /* backend broken: counted, nothing to wait for */
                                break;
                        }
                        if (r == 0) {
                                p->want_input = true;
                                break;
                        }
                        p->have_frame = true;
                }
                int r = rx_place(p);
                if (r < 0) {
                        vq_flush(vq);
                        vnet_guest_error(n, "receive queue", r);
                        return r;
                }
                if (r == 0) {
                        /* No buffers: wait for the driver's kick, not for the backend. */
                        if (n->opt.poll || !vq_notify_enable(vq))
                                break;
                        vq_notify_disable(vq);
                        continue;
                }
                p->have_frame = false;
                vnet_qos_charge(p, VNET_QOS_RX, p->frame_len - VNET_HDR_LEN);
        }
        if (budget == (unsigned) -1)
                ret = 1;
        vq_flush(vq);
        return ret;
}
