/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Virtio over PCI bus, modern interface (virtio-v1.2 4.1): identity
 * (4.1.2), the vendor capabilities (4.1.4), BAR0 dispatch, ISR (4.1.4.5)
 * and notifications (4.1.4.4, 4.1.5).
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "virtio/virtio-pci-priv.h"

int virtio_pci_new(const VirtioPciConfig *cfg, VirtioPci **out) {
        g_autofree VirtioPci *vp = NULL;

        if (!cfg->ops || !cfg->ops->start || !cfg->ops->stop)
                return -EINVAL;
        if (cfg->num_queues == 0 || cfg->num_queues > VIRTIO_PCI_MAX_QUEUES)
                return -EINVAL;
        if (cfg->queue_size == 0 || cfg->queue_size > VQ_MAX_SIZE)
                return -EINVAL;
        if (cfg->config_size > VIRTIO_PCI_DEVICE_LEN)
                return -EINVAL;

        vp = g_new0(VirtioPci, 1);
        vp->cfg = *cfg;
        vp->state_type = g_strdup(cfg->state_type);
        vp->state_id = g_strdup(cfg->state_id);
        vp->cfg.state_type = vp->cfg.state_id = NULL;   /* owned copies above */
        devstate_mig_init(&vp->mig, &virtio_pci_state_ops, vp, cfg->name ? cfg->name : "virtio");
        vp->device_features = cfg->features | VIRTIO_BIT(VIRTIO_F_VERSION_1);
        vp->nvec = cfg->num_queues + 1;
        vp->notify_fd = -1;
        vp->queues = g_new0(VirtQueue, cfg->num_queues);
        for (unsigned i = 0; i < cfg->num_queues; i++)
                vq_init(&vp->queues[i], i, cfg->queue_size);

        if (cfg->notify_mmap) {
                /* The page the client may map: a memfd of its own, holding nothing else. */
                int fd = memfd_create("virtio-notify", MFD_CLOEXEC);
                if (fd < 0 || ftruncate(fd, VIRTIO_PCI_BAR_SIZE) < 0) {
                        int r = -errno;
                        if (fd >= 0)
                                close(fd);
                        g_free(vp->queues);
                        g_free(vp->state_type);
                        g_free(vp->state_id);
                        devstate_mig_fini(&vp->mig);
                        return r;
                }
                vp->notify_fd = fd;
        }
        virtio_pci_reset(vp);
        *out = g_steal_pointer(&vp);
        return 0;
}

void virtio_pci_free(VirtioPci *vp) {
        if (!vp)
                return;
        virtio_pci_reset(vp);
        for (unsigned i = 0; i < vp->cfg.num_queues; i++)
                vq_stop(&vp->queues[i]);
        g_free(vp->queues);
        if (vp->notify_fd >= 0)
                close(vp->notify_fd);
        devstate_mig_fini(&vp->mig);
        g_free(vp->state_type);
        g_free(vp->state_id);
        g_free(vp);
}

void virtio_pci_attach(VirtioPci *vp, const VuMem *mem, const VirtioIrqOps *irq, void *irq_opaque) {
        vp->mem = mem;
        vp->irq = irq;
        vp->irq_opaque = irq_opaque;
}

int virtio_pci_bar_read(VirtioPci *vp, uint64_t off, void *buf, size_t len) {
        if (len == 0 || len > 8 || off >= VIRTIO_PCI_BAR_SIZE || len > VIRTIO_PCI_BAR_SIZE - off)
                return -EINVAL;
        memset(buf, 0, len);

        if (off < VIRTIO_PCI_ISR_OFF) {
                virtio_pci_common_read(vp, (uint32_t) off, buf, len);
        } else if (off < VIRTIO_PCI_DEVICE_OFF) {
                /* 4.1.4.5.1: reading ISR status clears it. */
                if (off == VIRTIO_PCI_ISR_OFF)
                        *(uint8_t *) buf = __atomic_exchange_n(&vp->isr, 0, __ATOMIC_ACQ_REL);
        } else if (off < VIRTIO_PCI_NOTIFY_OFF) {
                uint32_t rel = (uint32_t) (off - VIRTIO_PCI_DEVICE_OFF);
                if (rel < vp->cfg.config_size && vp->cfg.ops->config_read)
                        vp->cfg.ops->config_read(vp->cfg.opaque, rel, buf, MIN(len, vp->cfg.config_size - rel));
        }
        return 0;
}

int virtio_pci_bar_write(VirtioPci *vp, uint64_t off, const void *buf, size_t len) {
        if (len == 0 || len > 8 || off >= VIRTIO_PCI_BAR_SIZE || len > VIRTIO_PCI_BAR_SIZE - off)
                return -EINVAL;

        if (off < VIRTIO_PCI_ISR_OFF) {
                virtio_pci_common_write(vp, (uint32_t) off, buf, len);
        } else if (off >= VIRTIO_PCI_DEVICE_OFF && off < VIRTIO_PCI_NOTIFY_OFF) {
                uint32_t rel = (uint32_t) (off - VIRTIO_PCI_DEVICE_OFF);
                if (rel < vp->cfg.config_size && vp->cfg.ops->config_write)
                        vp->cfg.ops->config_write(vp->cfg.opaque, rel, buf, MIN(len, vp->cfg.config_size - rel));
        } else if (off >= VIRTIO_PCI_NOTIFY_OFF) {
                /* 4.1.5.2: the queue is named by the address (notify_off = queue index). */
                unsigned q = (unsigned) ((off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT);
                if (vp->started && q < vp->cfg.num_queues && vp->queues[q].enabled && vp->cfg.ops->kick)
                        vp->cfg.ops->kick(vp->cfg.opaque, q);
        }
        return 0;
}

void virtio_pci_fire(VirtioPci *vp, uint16_t vector, uint8_t isr_bit) {
        __atomic_fetch_or(&vp->isr, isr_bit, __ATOMIC_ACQ_REL);
        if (vector != VIRTIO_MSI_NO_VECTOR && vp->irq)
                vp->irq->fire(vp->irq_opaque, vector);
}

void virtio_pci_notify_queue(VirtioPci *vp, VirtQueue *vq) {
        virtio_pci_fire(vp, __atomic_load_n(&vq->msix_vector, __ATOMIC_RELAXED), VIRTIO_ISR_QUEUE);
}

void virtio_pci_config_changed(VirtioPci *vp, bool interrupt) {
        __atomic_fetch_add(&vp->generation, 1, __ATOMIC_ACQ_REL);
        if (interrupt && (virtio_pci_status_load(vp) & VIRTIO_STATUS_DRIVER_OK))
                virtio_pci_fire(vp, __atomic_load_n(&vp->msix_config, __ATOMIC_RELAXED), VIRTIO_ISR_CONFIG);
}

void virtio_pci_set_needs_reset(VirtioPci *vp) {
        uint8_t old = __atomic_fetch_or(&vp->status, VIRTIO_STATUS_DEVICE_NEEDS_RESET, __ATOMIC_ACQ_REL);

        /* 2.1.2: after DRIVER_OK, NEEDS_RESET comes with a configuration change notification. */
        if (!(old & VIRTIO_STATUS_DEVICE_NEEDS_RESET) && (old & VIRTIO_STATUS_DRIVER_OK))
                virtio_pci_fire(vp, __atomic_load_n(&vp->msix_config, __ATOMIC_RELAXED), VIRTIO_ISR_CONFIG);
}

void virtio_pci_remap_queues(VirtioPci *vp) {
        for (unsigned i = 0; i < vp->cfg.num_queues; i++) {
                VirtQueue *q = &vp->queues[i];
                /* Not a guest error: the VMM may map the rings again with its next message. */
                if (q->started && !q->broken && vq_remap(q) < 0)
                        g_debug("virtio %s: queue %u is outside guest memory after a DMA change; idle until it "
                                "is mapped again", vp->cfg.name ? vp->cfg.name : "", i);
        }
}

VirtQueue *virtio_pci_queue(VirtioPci *vp, unsigned q) {
        return q < vp->cfg.num_queues ? &vp->queues[q] : NULL;
}

unsigned virtio_pci_num_queues(const VirtioPci *vp) {
        return vp->cfg.num_queues;
}

uint64_t virtio_pci_driver_features(const VirtioPci *vp) {
        return vp->driver_features;
}

uint8_t virtio_pci_status(const VirtioPci *vp) {
        return virtio_pci_status_load(vp);
}

uint16_t virtio_pci_msix_config(const VirtioPci *vp) {
        return vp->msix_config;
}

unsigned virtio_pci_nvec(const VirtioPci *vp) {
        return vp->nvec;
}

int virtio_pci_notify_fd(const VirtioPci *vp) {
        return vp->notify_fd;
}
