/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Transmit and receive limits (devices/qos, libvirt's <bandwidth>: average,
 * peak and burst in bytes, plus packets per second) shared by all the
 * device's queue pairs.  Over a limit, transmit leaves the guest's chains
 * in the ring (with notifications off) and receive leaves frames in the
 * backend, until the buckets let the next one go; the pair thread sleeps
 * no longer than that.
 */
#include <errno.h>
#include <limits.h>

#include <glib.h>

#include "net/vnet-priv.h"
#include "virtio/virtqueue.h"

static uint64_t vnet_now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* Only totals mean something for a direction of a NIC. */
static bool vnet_qos_valid(const QosConfig *cfg) {
        for (unsigned k = 0; k < _QOS_KIND_MAX; k++)
                if (k != QOS_BYTES_TOTAL && k != QOS_OPS_TOTAL && cfg->rate[k].avg)
                        return false;
        return !cfg->size_iops && !qos_config_check(cfg, NULL);
}

void vnet_qos_init(VNet *n) {
        QosConfig none = { 0 };

        pthread_mutex_init(&n->qos_lock, NULL);
        for (unsigned d = 0; d < _QOS_DIR_MAX; d++)
                qos_init(&n->qos[d], &none, vnet_now_ns());
}

void vnet_qos_free(VNet *n) {
        pthread_mutex_destroy(&n->qos_lock);
}

int vnet_set_limits(VNet *n, const QosConfig *tx, const QosConfig *rx) {
        uint64_t now = vnet_now_ns();

        if (!vnet_qos_valid(tx) || !vnet_qos_valid(rx))
                return -EINVAL;
        pthread_mutex_lock(&n->qos_lock);
        qos_set_config(&n->qos[VNET_QOS_TX], tx, now);
        qos_set_config(&n->qos[VNET_QOS_RX], rx, now);
        __atomic_store_n(&n->qos_on[VNET_QOS_TX], qos_config_active(tx), __ATOMIC_RELEASE);
        __atomic_store_n(&n->qos_on[VNET_QOS_RX], qos_config_active(rx), __ATOMIC_RELEASE);
        pthread_mutex_unlock(&n->qos_lock);
        /* A waiting pair takes the new limits now. */
        for (unsigned i = 0; n->pairs && i < n->opt.pairs; i++)
                vnet_pair_wake(&n->pairs[i]);
        return 0;
}

uint64_t vnet_limit_hits(const VNet *n, bool tx) {
        uint64_t sum = 0;

        for (unsigned i = 0; n->pairs && i < n->opt.pairs; i++)
                sum += __atomic_load_n(&n->pairs[i].qos_hits[tx ? VNET_QOS_TX : VNET_QOS_RX], __ATOMIC_RELAXED);
        return sum;
}

bool vnet_qos_wait(VNetPair *p, QosDir dir) {
        VNet *n = p->n;
        uint64_t now, wait;

        if (!__atomic_load_n(&n->qos_on[dir], __ATOMIC_RELAXED))
                return false;
        now = vnet_now_ns();
        pthread_mutex_lock(&n->qos_lock);
        wait = qos_wait_ns(&n->qos[dir], dir, now);
        pthread_mutex_unlock(&n->qos_lock);
        if (!wait) {
                p->qos_waiting[dir] = false;
                return false;
        }
        if (!p->qos_waiting[dir]) {
                /* Counted once per frame that had to wait. */
                p->qos_waiting[dir] = true;
                __atomic_fetch_add(&p->qos_hits[dir], 1, __ATOMIC_RELAXED);
        }
        if (!p->qos_wake_ns || now + wait < p->qos_wake_ns)
                p->qos_wake_ns = now + wait;
        return true;
}

bool vnet_qos_tx_wait(VNetPair *p) {
        return __atomic_load_n(&p->n->qos_on[VNET_QOS_TX], __ATOMIC_RELAXED) && vq_has_avail(p->tx) &&
               vnet_qos_wait(p, VNET_QOS_TX);
}

void vnet_qos_charge(VNetPair *p, QosDir dir, size_t bytes) {
        VNet *n = p->n;

        if (!__atomic_load_n(&n->qos_on[dir], __ATOMIC_RELAXED))
                return;
        pthread_mutex_lock(&n->qos_lock);
        qos_account(&n->qos[dir], dir, bytes, vnet_now_ns());
        pthread_mutex_unlock(&n->qos_lock);
}

int vnet_qos_timeout(VNetPair *p) {
        uint64_t wake = p->qos_wake_ns, now;

        if (!wake)
                return -1;
        now = vnet_now_ns();
        return wake > now ? (int) MIN((wake - now + 999999) / 1000000, (uint64_t) INT_MAX) : 0;
}
