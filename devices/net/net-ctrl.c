/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control virtqueue (virtio-v1.2 5.1.6.5): one table row per command
 * with the feature it needs and the exact or minimum payload size; anything
 * else is answered VIRTIO_NET_ERR.  A chain without room for the ack byte
 * is a driver error (NEEDS_RESET).
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "net/vnet-priv.h"
#include "virtio/virtio.h"

#define VNET_CTRL_MAX 4096      /* largest command we copy: MAC tables of 2 × 64 entries fit */

typedef uint8_t (*VNetCtrlFn)(VNet *n, uint8_t cmd, const uint8_t *data, size_t len);

typedef struct VNetCtrlCmd {
        uint8_t cls, cmd;
        unsigned feature;       /* VIRTIO_NET_F_* the command needs */
        size_t len;             /* exact payload size; 0 = checked by the handler */
        VNetCtrlFn fn;
} VNetCtrlCmd;

static uint8_t ctrl_rx_mode(VNet *n, uint8_t cmd, const uint8_t *data, size_t len) {
        bool on = data[0] != 0;

        pthread_rwlock_wrlock(&n->filter_lock);
        if (cmd == VIRTIO_NET_CTRL_RX_PROMISC)
                n->filter.promisc = on;
        else
                n->filter.allmulti = on;
        pthread_rwlock_unlock(&n->filter_lock);
        return VIRTIO_NET_OK;
}

/* One table: le32 entries, then entries × 6 bytes.  Bytes consumed or 0 on a malformed table. */
static size_t parse_table(const uint8_t *data, size_t len, uint8_t (*out)[6], unsigned *count, bool *overflow) {
        uint32_t entries;

        if (len < 4)
                return 0;
        memcpy(&entries, data, 4);
        entries = le32toh(entries);
        if (entries > (len - 4) / 6)
                return 0;
        *overflow = entries > VNET_MAC_TABLE_MAX;
        *count = *overflow ? 0 : entries;
        if (!*overflow)
                memcpy(out, data + 4, (size_t) entries * 6);
        return 4 + (size_t) entries * 6;
}

static uint8_t ctrl_mac_table(VNet *n, uint8_t cmd, const uint8_t *data, size_t len) {
        VNetFilter f;
        size_t a, b;

        pthread_rwlock_rdlock(&n->filter_lock);
        f = n->filter;
        pthread_rwlock_unlock(&n->filter_lock);

        /* 5.1.6.5.2: two tables, unicast then multicast, nothing after. */
        a = parse_table(data, len, f.uni, &f.n_uni, &f.uni_overflow);
        if (a == 0)
                return VIRTIO_NET_ERR;
        b = parse_table(data + a, len - a, f.multi, &f.n_multi, &f.multi_overflow);
        if (b == 0 || a + b != len)
                return VIRTIO_NET_ERR;

        pthread_rwlock_wrlock(&n->filter_lock);
        n->filter.n_uni = f.n_uni;
        n->filter.n_multi = f.n_multi;
        n->filter.uni_overflow = f.uni_overflow;
        n->filter.multi_overflow = f.multi_overflow;
        memcpy(n->filter.uni, f.uni, sizeof(f.uni));
        memcpy(n->filter.multi, f.multi, sizeof(f.multi));
        pthread_rwlock_unlock(&n->filter_lock);
        return VIRTIO_NET_OK;
}

static uint8_t ctrl_mac_addr(VNet *n, uint8_t cmd, const uint8_t *data, size_t len) {
        /* A multicast address cannot be a station address. */
        if (data[0] & 1)
                return VIRTIO_NET_ERR;
        pthread_mutex_lock(&n->lock);
        memcpy(n->mac, data, 6);
        pthread_mutex_unlock(&n->lock);
        virtio_pci_config_changed(n->vp, false);
        return VIRTIO_NET_OK;
}

static uint8_t ctrl_announce_ack(VNet *n, uint8_t cmd, const uint8_t *data, size_t len) {
        __atomic_fetch_and(&n->status, (uint16_t) ~VIRTIO_NET_S_ANNOUNCE, __ATOMIC_ACQ_REL);
        virtio_pci_config_changed(n->vp, false);
        return VIRTIO_NET_OK;
}

static uint8_t ctrl_mq_pairs(VNet *n, uint8_t cmd, const uint8_t *data, size_t len) {
        uint16_t pairs;

        memcpy(&pairs, data, 2);
        pairs = le16toh(pairs);
        /* 5.1.6.5.5: 1 ≤ pairs ≤ max_virtqueue_pairs. */
        if (pairs < VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN || pairs > n->opt.pairs)
                return VIRTIO_NET_ERR;
        for (unsigned i = 0; i < pairs; i++)
                if (!n->pairs[i].rx || !n->pairs[i].tx)
                        return VIRTIO_NET_ERR;          /* the driver did not enable those queues */
        __atomic_store_n(&n->active_pairs, pairs, __ATOMIC_RELEASE);
        if (n->be->ops->set_active_queues)
                n->be->ops->set_active_queues(n->be, pairs);
        for (unsigned i = 1; i < n->opt.pairs; i++)
                vnet_pair_wake(&n->pairs[i]);
        return VIRTIO_NET_OK;
}

static uint8_t ctrl_guest_offloads(VNet *n, uint8_t cmd, const uint8_t *data, size_t len) {
        const uint64_t allowed = VIRTIO_BIT(VIRTIO_NET_F_GUEST_CSUM) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO4) |
                                 VIRTIO_BIT(VIRTIO_NET_F_GUEST_TSO6) | VIRTIO_BIT(VIRTIO_NET_F_GUEST_ECN);
        uint64_t want;

        memcpy(&want, data, 8);
        want = le64toh(want);
        /* 5.1.6.5.6.2: only offloads that were negotiated, and consistent among themselves. */
        if ((want & ~(n->features & allowed)) || vnet_check_features(want) < 0)
                return VIRTIO_NET_ERR;
        if (n->be->ops->set_offloads && n->be->ops->set_offloads(n->be, vnet_guest_offloads(want)) < 0)
                return VIRTIO_NET_ERR;
        n->guest_offloads = vnet_guest_offloads(want);
        /* The receive path checks headers against these from now on. */
        n->features = (n->features & ~allowed) | want;
        return VIRTIO_NET_OK;
}

static const VNetCtrlCmd vnet_ctrl_cmds[] = {
        { VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, VIRTIO_NET_F_CTRL_RX, 1, ctrl_rx_mode },
        { VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, VIRTIO_NET_F_CTRL_RX, 1, ctrl_rx_mode },
        { VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, VIRTIO_NET_F_CTRL_RX, 0, ctrl_mac_table },
        { VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, VIRTIO_NET_F_CTRL_MAC_ADDR, 6, ctrl_mac_addr },
        { VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, VIRTIO_NET_F_GUEST_ANNOUNCE, 0, ctrl_announce_ack },
        { VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, VIRTIO_NET_F_MQ, 2, ctrl_mq_pairs },
        { VIRTIO_NET_CTRL_GUEST_OFFLOADS, VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET,
          VIRTIO_NET_F_CTRL_GUEST_OFFLOADS, 8, ctrl_guest_offloads },
};

uint8_t vnet_ctrl_handle(VNet *n, uint8_t cls, uint8_t cmd, const uint8_t *data, size_t len) {
        for (unsigned i = 0; i < G_N_ELEMENTS(vnet_ctrl_cmds); i++) {
                const VNetCtrlCmd *c = &vnet_ctrl_cmds[i];
                if (c->cls != cls || c->cmd != cmd)
                        continue;
                if (!virtio_has(n->features, c->feature))
                        return VIRTIO_NET_ERR;
                if (c->len && len != c->len)
                        return VIRTIO_NET_ERR;
                return c->fn(n, cmd, data, len);
        }
        return VIRTIO_NET_ERR;
}

int vnet_ctrl_process(VNet *n, VqChain *c) {
        VirtQueue *vq = n->ctrl;
        uint8_t buf[VNET_CTRL_MAX];
        int r;

        if (!vq || !vq_ready(vq))
                return 0;
again:
        while ((r = vq_pop(vq, c)) > 0) {
                uint8_t ack = VIRTIO_NET_ERR;
                size_t len;

                /* 5.1.6.5: class and command readable, the ack byte writable. */
                if (c->in_len < 1 || c->out_len < 2) {
                        vq_flush(vq);
                        vq->broken = true;      /* nothing more from this queue until reset */
                        vnet_guest_error(n, "control queue: no room for the header or the ack", -EINVAL);
                        return -EINVAL;
                }
                if (c->out_len <= sizeof(buf)) {
                        len = vq_iov_to_buf(c->iov, c->out_num, 0, buf, (size_t) c->out_len);
                        ack = vnet_ctrl_handle(n, buf[0], buf[1], buf + 2, len - 2);
                }
                vq_buf_to_iov(vq_chain_in(c), c->in_num, 0, &ack, 1);
                vq_mark_written(vq, c, 1);
                vq_push(vq, c->id, c->ndesc, 1);
        }
        vq_flush(vq);
        if (r < 0) {
                vnet_guest_error(n, "control queue", r);
                return r;
        }
        /*
         * Ask for the next kick (with EVENT_IDX: avail_event = what we have
         * reached), then look once more: a command that arrived before the
         * driver could see our request would otherwise wait for a kick the
         * driver will never send.
         */
        if (vq_notify_enable(vq))
                goto again;
        return 0;
}
