/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Transmit (virtio-v1.2 5.1.6.2): each chain on the transmit queue is one
 * frame, header first.  The header is copied and checked before use; the
 * frame itself goes to the backend straight from guest memory.  Frames the
 * backend cannot take are dropped and counted; the chain is always returned.
 * Up to be->tx_batch chains are taken before their frames go to the
 * backend in one call (TAP: one system call for them all) and the chains
 * are returned, in the order taken.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "net/vnet-priv.h"
#include "virtio/virtio.h"

#define VNET_TX_BUDGET 256

enum { TX_SEND, TX_ERROR, TX_DROP };

/*
 * Check one chain and describe its frame (a private copy of the header,
 * then the guest's buffers) in p->tx_iov from *iov_used on.  TX_SEND, or
 * what to count instead: TX_ERROR, TX_DROP.
 */
static int tx_prepare(VNetPair *p, VqChain *c, VNetTxSlot *s, NetTxFrame *f, unsigned *iov_used) {
        VNet *n = p->n;
        struct iovec *iov = p->tx_iov + *iov_used;
        unsigned nv = 1;
        size_t skip = VNET_HDR_LEN;

        if (c->out_len < VNET_HDR_LEN + 14 || c->out_len > VNET_HDR_LEN + VNET_MAX_FRAME)
                return TX_ERROR;
        s->frame_len = c->out_len - VNET_HDR_LEN;
        /* One private copy of the header (double fetch): checked, then sent. */
        vq_iov_to_buf(c->iov, c->out_num, 0, &s->h, sizeof(s->h));
        if (vnet_tx_hdr_check(n->features, &s->h, s->frame_len) < 0)
                return TX_ERROR;
        if (!__atomic_load_n(&n->link_up, __ATOMIC_RELAXED))
                return TX_DROP;

        iov[0].iov_base = &s->h;
        iov[0].iov_len = VNET_HDR_LEN;
        for (unsigned i = 0; i < c->out_num; i++) {
                size_t l = c->iov[i].iov_len;
                if (skip >= l) {
                        skip -= l;
                        continue;
                }
                iov[nv].iov_base = (uint8_t *) c->iov[i].iov_base + skip;
                iov[nv].iov_len = l - skip;
                skip = 0;
                nv++;
        }
        *f = (NetTxFrame) { .iov = iov, .n = nv };
        *iov_used += nv;
        return TX_SEND;
}

/*
 * Send the frames of the slots taken (one backend call for a batch where
 * the backend batches), count what became of each, return every chain in
 * the order taken.
 */
static void tx_finish(VNetPair *p, unsigned nslots, unsigned nframes) {
        NetBackend *be = p->n->be;
        VirtQueue *vq = p->tx;

        if (nframes > 1 && be->ops->send_batch)
                be->ops->send_batch(be, p->index, p->tx_frames, nframes);
        else
                for (unsigned i = 0; i < nframes; i++)
                        p->tx_frames[i].ret = be->ops->send(be, p->index, p->tx_frames[i].iov, p->tx_frames[i].n);
        for (unsigned i = 0; i < nslots; i++) {
                VNetTxSlot *s = &p->tx_slots[i];
                int r = s->kind == TX_SEND ? p->tx_frames[s->frame].ret : 0;
                if (s->kind == TX_ERROR) {
                        VNET_STAT_ADD(p, tx_errors, 1);
                } else if (s->kind == TX_DROP) {
                        VNET_STAT_ADD(p, tx_drops, 1);
                } else if (r == 0) {
                        VNET_STAT_ADD(p, tx_packets, 1);
                        VNET_STAT_ADD(p, tx_bytes, s->frame_len);
                } else if (r == -EAGAIN) {
                        VNET_STAT_ADD(p, tx_drops, 1);
                        p->tx_blocked = true;
                } else {
                        VNET_STAT_ADD(p, tx_errors, 1);
                }
                vq_push(vq, s->id, s->ndesc, 0);
        }
}

int vnet_tx_process(VNetPair *p) {
        VirtQueue *vq = p->tx;
        bool poll = p->n->opt.poll;
        unsigned batch = CLAMP(p->n->be->tx_batch, 1u, NET_TX_BATCH_MAX);
        int r = 0;

        if (!vq || !vq_ready(vq))
                return 0;
        if (p->tx_blocked && p->n->be->ops->flush(p->n->be, p->index) == 0)
                p->tx_blocked = false;

        vq_notify_disable(vq);
        for (;;) {
                unsigned budget = VNET_TX_BUDGET;

                unsigned nslots = 0, nframes = 0, iov_used = 0;

                while (budget > 0 && !vnet_qos_tx_wait(p) && (r = vq_pop(vq, p->chain)) > 0) {
                        VqChain *c = p->chain;
                        VNetTxSlot *s = &p->tx_slots[nslots++];
                        s->id = c->id;
                        s->ndesc = c->ndesc;
                        s->kind = tx_prepare(p, c, s, &p->tx_frames[nframes], &iov_used);
                        if (s->kind == TX_SEND)
                                s->frame = nframes++;
                        vnet_qos_charge(p, VNET_QOS_TX, c->out_len > VNET_HDR_LEN ? c->out_len - VNET_HDR_LEN : 0);
                        budget--;
                        /* A full batch, or no room left for the longest chain's iovecs: out with it. */
                        if (nslots == batch || iov_used + VQ_MAX_IOV + 1 > VNET_TX_IOV_POOL) {
                                tx_finish(p, nslots, nframes);
                                nslots = nframes = iov_used = 0;
                        }
                }
                if (nslots > 0)
                        tx_finish(p, nslots, nframes);
                vq_flush(vq);
                if (r < 0) {
                        vnet_guest_error(p->n, "transmit queue", r);
                        return r;
                }
                if (budget == 0)
                        return 1;               /* more may wait: let receive run too */
                if (p->qos_wake_ns)
                        return 0;               /* over the limit: notifications stay off, a timer wakes us */
                if (poll)
                        return 0;               /* the poller comes back; no notifications */
                if (!vq_notify_enable(vq))
                        return 0;
                vq_notify_disable(vq);
        }
}
