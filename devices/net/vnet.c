/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net device (virtio-v1.2 5.1): properties and defaults, offered
 * features, device configuration space, queue layout (5.1.2: receiveq1,
 * transmitq1, ..., receiveqN, transmitqN, controlq), start and stop of the
 * data path, link state and statistics.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "net/vnet-priv.h"
#include "virtio/virtio.h"

/* Properties and defaults. */
#define VNET_DEFAULT_QUEUE_SIZE 256

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)

static const uint64_t vnet_base_features =
        F(MAC) | F(STATUS) | F(MRG_RXBUF) | F(CTRL_VQ) | F(CTRL_RX) | F(CTRL_MAC_ADDR) |
        F(GUEST_ANNOUNCE) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
/* Only with a backend that carries the header (TAP). */
static const uint64_t vnet_offload_features =
        F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4) | F(HOST_TSO6) | F(GUEST_TSO4) | F(GUEST_TSO6) |
        F(CTRL_GUEST_OFFLOADS);

void vnet_guest_error(VNet *n, const char *what, int err) {
        /* Rate-limited by nature: the queue is broken until the driver resets the device. */
        g_debug("virtio-net %s: %s: %s; device needs reset", n->opt.name ? n->opt.name : "", what,
                g_strerror(-err));
        virtio_pci_set_needs_reset(n->vp);
}

static unsigned ctrl_index(const VNet *n, uint64_t features) {
        /* 5.1.2: N is max_virtqueue_pairs only when MQ is negotiated. */
        return 2 * (virtio_has(features, VIRTIO_NET_F_MQ) ? n->opt.pairs : 1);
}

static int vnet_validate_features(void *opaque, uint64_t features) {
        VNet *n = opaque;

        (void) n;
        return vnet_check_features(features);
}

static void vnet_config_read(void *opaque, uint32_t off, void *buf, size_t len) {
        VNet *n = opaque;
        VNetConfigSpace c = {
                .status = htole16(__atomic_load_n(&n->status, __ATOMIC_ACQUIRE)),
                .max_virtqueue_pairs = htole16((uint16_t) n->opt.pairs),
                .mtu = htole16(n->opt.mtu),
                .speed = htole32(UINT32_MAX),   /* unknown */
                .duplex = 0xff,                 /* unknown */
        };

        pthread_mutex_lock(&n->lock);
        memcpy(c.mac, n->mac, 6);
        pthread_mutex_unlock(&n->lock);
        if (off < sizeof(c))
                memcpy(buf, (uint8_t *) &c + off, MIN(len, sizeof(c) - off));
}

int vnet_bind(VNet *n, uint64_t driver_features, uint64_t features, unsigned active_pairs) {
        unsigned pairs = virtio_has(driver_features, VIRTIO_NET_F_MQ) ? n->opt.pairs : 1;
        int r;

        n->features = features;
        n->mrg_rxbuf = virtio_has(features, VIRTIO_NET_F_MRG_RXBUF);
        n->ctrl = NULL;
        if (virtio_has(driver_features, VIRTIO_NET_F_CTRL_VQ)) {
                VirtQueue *q = virtio_pci_queue(n->vp, ctrl_index(n, driver_features));
                n->ctrl = q && q->started ? q : NULL;
        }
        for (unsigned i = 0; i < n->opt.pairs; i++) {
                VirtQueue *rx = virtio_pci_queue(n->vp, 2 * i), *tx = virtio_pci_queue(n->vp, 2 * i + 1);
                n->pairs[i].rx = i < pairs && rx->started ? rx : NULL;
                n->pairs[i].tx = i < pairs && tx->started ? tx : NULL;
        }
        if (!n->pairs[0].rx || !n->pairs[0].tx)
                return -EINVAL;         /* the first pair is always in use */

        if (active_pairs == 0 || active_pairs > pairs)
                return -EINVAL;
        for (unsigned i = 0; i < active_pairs; i++)
                if (!n->pairs[i].rx || !n->pairs[i].tx)
                        return -EINVAL;

        n->guest_offloads = vnet_guest_offloads(features);
        if (n->be->ops->set_offloads) {
                r = n->be->ops->set_offloads(n->be, n->guest_offloads);
                if (r < 0)
                        return r;
        }
        __atomic_store_n(&n->active_pairs, active_pairs, __ATOMIC_RELEASE);
        if (n->be->ops->set_active_queues)
                n->be->ops->set_active_queues(n->be, active_pairs);
        n->started = true;
        return 0;
}

static int vnet_start(void *opaque, uint64_t features) {
        VNet *n = opaque;
        /* 5.1.6.5.5: one pair until the driver asks for more. */
        int r = vnet_bind(n, features, features, 1);

        if (r < 0)
                return r;
        if (virtio_pci_may_run(n->vp))
                vnet_pairs_set(n, VNET_PAIR_RUN);
        return 0;
}

static void vnet_stop(void *opaque) {
        VNet *n = opaque;

        vnet_pairs_set(n, VNET_PAIR_IDLE);
        n->started = false;
        n->ctrl = NULL;
        for (unsigned i = 0; i < n->opt.pairs; i++)
                n->pairs[i].rx = n->pairs[i].tx = NULL;
        /* Device reset: back to the configured address, filters and status. */
        pthread_mutex_lock(&n->lock);
        memcpy(n->mac, n->opt.mac, 6);
        pthread_mutex_unlock(&n->lock);
        __atomic_and_fetch(&n->status, (uint16_t) ~VIRTIO_NET_S_ANNOUNCE, __ATOMIC_ACQ_REL);
        vnet_filter_reset(n);
        n->features = 0;
}

static void vnet_kick(void *opaque, unsigned q) {
        VNet *n = opaque;
        unsigned pair = q / 2;

        /* The control queue is served by the first pair's thread. */
        if (pair >= n->opt.pairs || (n->ctrl && q == n->ctrl->index))
                pair = 0;
        vnet_pair_wake(&n->pairs[pair]);
}

static void vnet_quiesce(void *opaque) {
        vnet_pairs_set(opaque, VNET_PAIR_IDLE);
}

static void vnet_resume(void *opaque) {
        VNet *n = opaque;

        if (n->started && virtio_pci_may_run(n->vp))
                vnet_pairs_set(n, VNET_PAIR_RUN);
}

static const VirtioDeviceOps vnet_virtio_ops = {
        .validate_features = vnet_validate_features,
        .config_read = vnet_config_read,
        .start = vnet_start,
        .stop = vnet_stop,
        .kick = vnet_kick,
        .quiesce = vnet_quiesce,
        .resume = vnet_resume,
        .save = vnet_state_save,
        .load_check = vnet_state_check,
        .load_apply = vnet_state_apply,
};

int vnet_new(const VNetOptions *opt, NetBackend *be, VNet **out) {
        g_autofree VNet *n = NULL;
        VirtioPciConfig vc;
        int r;

        if (!be)
                return -EINVAL;
        if (opt->pairs == 0 || opt->pairs > VNET_MAX_PAIRS || opt->pairs > be->nqueues ||
            (opt->mtu != 0 && opt->mtu < VNET_MIN_MTU) || (opt->queue_size & (opt->queue_size - 1)) != 0 ||
            opt->queue_size > VQ_MAX_SIZE) {
                net_backend_free(be);
                return -EINVAL;
        }

        n = g_new0(VNet, 1);
        n->opt = *opt;
        n->opt.name = NULL;
        n->opt.migration_id = NULL;     /* the transport keeps its copy */
        if (n->opt.queue_size == 0)
                n->opt.queue_size = VNET_DEFAULT_QUEUE_SIZE;
        if (n->opt.mtu == 0)
                n->opt.mtu = be->mtu >= VNET_MIN_MTU && be->mtu <= UINT16_MAX ? (uint16_t) be->mtu : VNET_DEFAULT_MTU;
        n->be = be;
        memcpy(n->mac, opt->mac, 6);
        n->link_up = opt->link_up;
        n->status = opt->link_up ? VIRTIO_NET_S_LINK_UP : 0;
        pthread_mutex_init(&n->lock, NULL);
        pthread_cond_init(&n->cond, NULL);
        pthread_rwlock_init(&n->filter_lock, NULL);
        vnet_qos_init(n);
        vnet_filter_reset(n);

        n->offered = vnet_base_features | F(MTU);
        if (be->offloads)
                n->offered |= vnet_offload_features;
        if (opt->pairs > 1)
                n->offered |= F(MQ);
        if (opt->packed)
                n->offered |= VIRTIO_BIT(VIRTIO_F_RING_PACKED);

        vc = (VirtioPciConfig) {
                .device_id = VIRTIO_ID_NET,
                .class_code = 0x020000,         /* network controller, Ethernet */
                .subsys_id = VIRTIO_ID_NET,
                .features = n->offered,
                .num_queues = 2 * opt->pairs + 1,
                .queue_size = n->opt.queue_size,
                .config_size = sizeof(VNetConfigSpace),
                .notify_mmap = opt->poll,
                .state_type = VNET_STATE_TYPE,
                .state_id = opt->migration_id,
                .state_sections = vnet_state_sections,
                .n_state_sections = vnet_n_state_sections,
                .ops = &vnet_virtio_ops,
                .opaque = n,
                .name = opt->name,
        };
        r = virtio_pci_new(&vc, &n->vp);
        if (r < 0)
                goto fail;
        r = vnet_pairs_create(n);
        if (r < 0)
                goto fail;
        *out = g_steal_pointer(&n);
        return 0;

fail:
        vnet_pairs_destroy(n);
        virtio_pci_free(n->vp);
        net_backend_free(n->be);
        return r;
}

void vnet_free(VNet *n) {
        if (!n)
                return;
        virtio_pci_reset(n->vp);
        vnet_pairs_destroy(n);
        virtio_pci_free(n->vp);
        net_backend_free(n->be);
        pthread_rwlock_destroy(&n->filter_lock);
        vnet_qos_free(n);
        pthread_cond_destroy(&n->cond);
        pthread_mutex_destroy(&n->lock);
        g_free(n);
}

int vnet_server_config(VNet *n, VuServerConfig *scfg) {
        return virtio_pci_server_config(n->vp, scfg);
}

void vnet_attach(VNet *n, const VuMem *mem, const VirtioIrqOps *irq, void *irq_opaque) {
        virtio_pci_attach(n->vp, mem, irq, irq_opaque);
}

VirtioPci *vnet_virtio(VNet *n) {
        return n->vp;
}

void vnet_set_link(VNet *n, bool up) {
        if (__atomic_exchange_n(&n->link_up, up, __ATOMIC_ACQ_REL) == up)
                return;
        if (up)
                __atomic_or_fetch(&n->status, VIRTIO_NET_S_LINK_UP, __ATOMIC_ACQ_REL);
        else
                __atomic_and_fetch(&n->status, (uint16_t) ~VIRTIO_NET_S_LINK_UP, __ATOMIC_ACQ_REL);
        /* 5.1.4.2: a status change is a configuration change, with its interrupt. */
        virtio_pci_config_changed(n->vp, virtio_has(n->features, VIRTIO_NET_F_STATUS));
        for (unsigned i = 0; i < n->opt.pairs; i++)
                vnet_pair_wake(&n->pairs[i]);
}

bool vnet_link(const VNet *n) {
        return __atomic_load_n(&n->link_up, __ATOMIC_ACQUIRE);
}

int vnet_announce(VNet *n) {
        if (!n->started || !virtio_has(n->features, VIRTIO_NET_F_GUEST_ANNOUNCE))
                return -EOPNOTSUPP;
        __atomic_or_fetch(&n->status, VIRTIO_NET_S_ANNOUNCE, __ATOMIC_ACQ_REL);
        virtio_pci_config_changed(n->vp, true);
        return 0;
}

void vnet_get_stats(const VNet *n, VNetStats *st) {
        memset(st, 0, sizeof(*st));
        for (unsigned i = 0; i < n->opt.pairs; i++) {
                const VNetCounters *c = &n->pairs[i].c;
#define SUM(f) st->f += __atomic_load_n(&c->f, __ATOMIC_RELAXED)
                SUM(rx_packets); SUM(rx_bytes); SUM(rx_drops); SUM(rx_errors);
                SUM(tx_packets); SUM(tx_bytes); SUM(tx_drops); SUM(tx_errors);
#undef SUM
        }
}

uint64_t vnet_offered_features(const VNet *n) {
        return n->offered | VIRTIO_BIT(VIRTIO_F_VERSION_1);
}

uint16_t vnet_mtu(const VNet *n) {
        return n->opt.mtu;
}

const char *vnet_migration_error(const VNet *n) {
        return virtio_pci_migration_error(n->vp);
}

unsigned vnet_active_pairs(const VNet *n) {
        return __atomic_load_n(&n->active_pairs, __ATOMIC_ACQUIRE);
}
