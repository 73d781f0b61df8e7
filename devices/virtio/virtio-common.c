/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The common configuration structure (virtio-v1.2 4.1.4.3) and the device
 * status state machine (2.1, 3.1): reset, feature negotiation with
 * FEATURES_OK refusal, queue configuration, DRIVER_OK.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "virtio/virtio-pci-priv.h"

static void put16(uint8_t *p, uint16_t v) {
        v = htole16(v);
        memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v) {
        v = htole32(v);
        memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v) {
        v = htole64(v);
        memcpy(p, &v, 8);
}

static uint32_t get_le(const void *buf, size_t len) {
        uint32_t v = 0;

        memcpy(&v, buf, len < 4 ? len : 4);
        return le32toh(v);
}

uint8_t virtio_pci_status_load(const VirtioPci *vp) {
        return __atomic_load_n(&vp->status, __ATOMIC_ACQUIRE);
}

/* Replace the driver-owned bits of status, keeping a concurrently set NEEDS_RESET. */
static void status_store(VirtioPci *vp, uint8_t v) {
        uint8_t old = virtio_pci_status_load(vp);
        uint8_t next;

        do {
                next = (uint8_t) ((v & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET) |
                                  (old & VIRTIO_STATUS_DEVICE_NEEDS_RESET));
        } while (!__atomic_compare_exchange_n(&vp->status, &old, next, false,
                                              __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
}

static VirtQueue *selected(VirtioPci *vp) {
        return vp->queue_select < vp->cfg.num_queues ? &vp->queues[vp->queue_select] : NULL;
}

void virtio_pci_common_read(VirtioPci *vp, uint32_t off, void *buf, size_t len) {
        uint8_t b[0x40] = { 0 };
        VirtQueue *q = selected(vp);

        put32(b + VIRTIO_PCI_COMMON_DFSELECT, vp->dfselect);
        /* Linux may read feature words ≥ 2 ("extended features"): they are 0. */
        if (vp->dfselect < 2)
                put32(b + VIRTIO_PCI_COMMON_DF, (uint32_t) (vp->device_features >> (32 * vp->dfselect)));
        put32(b + VIRTIO_PCI_COMMON_GFSELECT, vp->gfselect);
        if (vp->gfselect < 2)
                put32(b + VIRTIO_PCI_COMMON_GF, (uint32_t) (vp->driver_features >> (32 * vp->gfselect)));
        put16(b + VIRTIO_PCI_COMMON_MSIX, vp->msix_config);
        put16(b + VIRTIO_PCI_COMMON_NUMQ, (uint16_t) vp->cfg.num_queues);
        b[VIRTIO_PCI_COMMON_STATUS] = virtio_pci_status_load(vp);
        b[VIRTIO_PCI_COMMON_CFGGENERATION] = __atomic_load_n(&vp->generation, __ATOMIC_ACQUIRE);
        put16(b + VIRTIO_PCI_COMMON_Q_SELECT, vp->queue_select);
        if (q) {
                put16(b + VIRTIO_PCI_COMMON_Q_SIZE, q->size);
                put16(b + VIRTIO_PCI_COMMON_Q_MSIX, q->msix_vector);
                put16(b + VIRTIO_PCI_COMMON_Q_ENABLE, q->enabled);
                put16(b + VIRTIO_PCI_COMMON_Q_NOFF, (uint16_t) q->index);
                put64(b + VIRTIO_PCI_COMMON_Q_DESCLO, q->desc_gpa);
                put64(b + VIRTIO_PCI_COMMON_Q_AVAILLO, q->driver_gpa);
                put64(b + VIRTIO_PCI_COMMON_Q_USEDLO, q->device_gpa);
        }

        memset(buf, 0, len);
        if (off < sizeof(b))
                memcpy(buf, b + off, MIN(len, sizeof(b) - off));
}

/* 2.2.2: FEATURES_OK only for a subset of what we offered that the device accepts. */
bool virtio_pci_features_acceptable(VirtioPci *vp, uint64_t f) {
        if (f & ~vp->device_features)
                return false;
        if (!virtio_has(f, VIRTIO_F_VERSION_1))
                return false;           /* we are a non-transitional device */
        if (vp->cfg.ops->validate_features && vp->cfg.ops->validate_features(vp->cfg.opaque, f) < 0)
                return false;
        return true;
}

void virtio_pci_queue_notify(void *opaque, VirtQueue *vq) {
        virtio_pci_notify_queue(opaque, vq);
}

static void device_start(VirtioPci *vp) {
        int r = 0;

        for (unsigned i = 0; i < vp->cfg.num_queues && r == 0; i++) {
                VirtQueue *q = &vp->queues[i];
                if (!q->enabled)
                        continue;
                if (!vp->mem) {
                        r = -ENXIO;
                        break;
                }
                r = vq_start(q, vp->mem, vp->driver_features, virtio_pci_queue_notify, vp);
                if (r < 0)
                        g_debug("virtio %s: queue %u refused: %s", vp->cfg.name ? vp->cfg.name : "",
                                i, g_strerror(-r));
        }
        if (r == 0)
                r = vp->cfg.ops->start(vp->cfg.opaque, vp->driver_features);
        if (r < 0) {
                for (unsigned i = 0; i < vp->cfg.num_queues; i++)
                        vq_stop(&vp->queues[i]);
                virtio_pci_set_needs_reset(vp);
                return;
        }
        vp->started = true;
}

static void device_stop(VirtioPci *vp) {
        if (vp->started) {
                vp->cfg.ops->stop(vp->cfg.opaque);
                vp->started = false;
        }
        for (unsigned i = 0; i < vp->cfg.num_queues; i++)
                vq_stop(&vp->queues[i]);
}

void virtio_pci_reset(VirtioPci *vp) {
        device_stop(vp);
        for (unsigned i = 0; i < vp->cfg.num_queues; i++)
                vq_reset(&vp->queues[i]);
        vp->dfselect = vp->gfselect = 0;
        vp->driver_features = 0;
        vp->msix_config = VIRTIO_MSI_NO_VECTOR;
        vp->queue_select = 0;
        __atomic_store_n(&vp->isr, 0, __ATOMIC_RELEASE);
        __atomic_store_n(&vp->status, 0, __ATOMIC_RELEASE);
}

static void write_status(VirtioPci *vp, uint8_t v) {
        const uint8_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |
                              VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED;
        uint8_t old = virtio_pci_status_load(vp);

        /* Bits the specification does not define are not kept (nor migrated): as if not written. */
        v &= known;
        /* 2.4.1: writing 0 resets the device; it reads back 0 once done. */
        if (v == 0) {
                virtio_pci_reset(vp);
                return;
        }

        if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) &&
            !virtio_pci_features_acceptable(vp, vp->driver_features))
                v &= (uint8_t) ~VIRTIO_STATUS_FEATURES_OK;

        if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
                status_store(vp, v);
                /* 3.1.1: DRIVER_OK without FEATURES_OK is a driver error. */
                if (!(v & VIRTIO_STATUS_FEATURES_OK))
                        virtio_pci_set_needs_reset(vp);
                else
                        device_start(vp);
                return;
        }

        if ((v & VIRTIO_STATUS_FAILED) && !(old & VIRTIO_STATUS_FAILED))
                device_stop(vp);
        status_store(vp, v);
}

static uint16_t valid_vector(VirtioPci *vp, uint16_t v) {
        /* 4.1.5.1.2: a vector we cannot map reads back NO_VECTOR. */
        return v < vp->nvec ? v : VIRTIO_MSI_NO_VECTOR;
}

static void write_addr(VirtQueue *q, uint64_t *field, uint32_t rel, const void *buf, size_t len) {
        if (q->enabled)
                return;                 /* 4.1.4.3.2: configured before enabling */
        if (len == 8 && rel == 0) {
                uint64_t v;
                memcpy(&v, buf, 8);
                *field = le64toh(v);
        } else if (len == 4 && rel == 0) {
                *field = (*field & ~UINT64_C(0xffffffff)) | get_le(buf, 4);
        } else if (len == 4 && rel == 4) {
                *field = (*field & UINT64_C(0xffffffff)) | ((uint64_t) get_le(buf, 4) << 32);
        }
}

void virtio_pci_common_write(VirtioPci *vp, uint32_t off, const void *buf, size_t len) {
        VirtQueue *q = selected(vp);
        uint32_t v = get_le(buf, len);
        bool fok = virtio_pci_status_load(vp) & VIRTIO_STATUS_FEATURES_OK;

        if (off >= VIRTIO_PCI_COMMON_Q_DESCLO && off < VIRTIO_PCI_COMMON_CFG_SIZE) {
                uint32_t field = off & ~7u;
                if (!q)
                        return;
                if (field == VIRTIO_PCI_COMMON_Q_DESCLO)
                        write_addr(q, &q->desc_gpa, off - field, buf, len);
                else if (field == VIRTIO_PCI_COMMON_Q_AVAILLO)
                        write_addr(q, &q->driver_gpa, off - field, buf, len);
                else
                        write_addr(q, &q->device_gpa, off - field, buf, len);
                return;
        }

        switch (off) {
        case VIRTIO_PCI_COMMON_DFSELECT:
                if (len == 4)
                        vp->dfselect = v;
                break;
        case VIRTIO_PCI_COMMON_GFSELECT:
                if (len == 4)
                        vp->gfselect = v;
                break;
        case VIRTIO_PCI_COMMON_GF:
                /* 3.1.1: features are fixed once FEATURES_OK is set. */
                if (len == 4 && vp->gfselect < 2 && !fok) {
                        unsigned sh = 32 * vp->gfselect;
                        vp->driver_features = (vp->driver_features & ~(UINT64_C(0xffffffff) << sh)) |
                                              ((uint64_t) v << sh);
                }
                break;
        case VIRTIO_PCI_COMMON_MSIX:
                if (len == 2)
                        vp->msix_config = valid_vector(vp, (uint16_t) v);
                break;
        case VIRTIO_PCI_COMMON_STATUS:
                if (len == 1)
                        write_status(vp, (uint8_t) v);
                break;
        case VIRTIO_PCI_COMMON_Q_SELECT:
                if (len == 2)
                        vp->queue_select = (uint16_t) v;
                break;
        case VIRTIO_PCI_COMMON_Q_SIZE:
                if (len == 2 && q && !q->enabled)
                        q->size = (uint16_t) v;         /* validated when the device starts */
                break;
        case VIRTIO_PCI_COMMON_Q_MSIX:
                if (len == 2 && q)
                        q->msix_vector = valid_vector(vp, (uint16_t) v);
                break;
        case VIRTIO_PCI_COMMON_Q_ENABLE:
                /* 4.1.4.3.2: the driver never writes 0; queues start at DRIVER_OK. */
                if (len == 2 && q && v == 1 && !vp->started)
                        q->enabled = true;
                break;
        default:
                break;                  /* read-only or reserved */
        }
}
