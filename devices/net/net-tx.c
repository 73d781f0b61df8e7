/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Transmit (virtio-v1.2 5.1.6.2): each chain on the transmit queue is one
 * frame, header first.  The header is copied and checked before use; the
 * frame itself goes to the backend straight from guest memory.  Frames the
 * backend cannot take are dropped and counted; the chain is always returned.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "net/vnet-priv.h"
#include "virtio/virtio.h"

#define VNET_TX_BUDGET 256

/* Send one chain; the counters say what became of it. */
static void tx_one(VNetPair *p, VqChain *c) {
        VNet *n = p->n;
        VNetHdr h;
        unsigned nv = 1;
        size_t skip = VNET_HDR_LEN;
        size_t frame_len;
        int r;

        if (c->out_len < VNET_HDR_LEN + 14 || c->out_len > VNET_HDR_LEN + VNET_MAX_FRAME) {
                VNET_STAT_ADD(p, tx_errors, 1);
                return;
        }
        frame_len = c->out_len - VNET_HDR_LEN;
        /* One private copy of the header (double fetch): checked, then sent. */
        vq_iov_to_buf(c->iov, c->out_num, 0, &h, sizeof(h));
        if (vnet_tx_hdr_check(n->features, &h, frame_len) < 0) {
                VNET_STAT_ADD(p, tx_errors, 1);
                return;
        }
        if (!__atomic_load_n(&n->link_up, __ATOMIC_RELAXED)) {
                VNET_STAT_ADD(p, tx_drops, 1);
                return;
        }

        p->tx_iov[0].iov_base = &h;
        p->tx_iov[0].iov_len = VNET_HDR_LEN;
        for (unsigned i = 0; i < c->out_num; i++) {
                size_t l = c->iov[i].iov_len;
                if (skip >= l) {
                        skip -= l;
                        continue;
                }
                p->tx_iov[nv].iov_base = (uint8_t *) c->iov[i].iov_base + skip;
                p->tx_iov[nv].iov_len = l - skip;
                skip = 0;
                nv++;
        }

        r = n->be->ops->send(n->be, p->index, p->tx_iov, nv);
        if (r == 0) {
                VNET_STAT_ADD(p, tx_packets, 1);
                VNET_STAT_ADD(p, tx_bytes, frame_len);
        } else if (r == -EAGAIN) {
                VNET_STAT_ADD(p, tx_drops, 1);
                p->tx_blocked = true;
        } else {
                VNET_STAT_ADD(p, tx_errors, 1);
        }
}

int vnet_tx_process(VNetPair *p) {
        VirtQueue *vq = p->tx;
        bool poll = p->n->opt.poll;
        int r = 0;

        if (!vq || !vq_ready(vq))
                return 0;
        if (p->tx_blocked && p->n->be->ops->flush(p->n->be, p->index) == 0)
                p->tx_blocked = false;

        vq_notify_disable(vq);
        for (;;) {
                unsigned budget = VNET_TX_BUDGET;

                while (budget > 0 && !vnet_qos_wait(p, VNET_QOS_TX) && (r = vq_pop(vq, p->chain)) > 0) {
                        tx_one(p, p->chain);
                        vnet_qos_charge(p, VNET_QOS_TX, p->chain->out_len > VNET_HDR_LEN ? p->chain->out_len - VNET_HDR_LEN : 0);
                        vq_push(vq, p->chain->id, p->chain->ndesc, 0);
                        budget--;
                }
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
