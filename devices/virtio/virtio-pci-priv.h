/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* VirtioPci internals shared by virtio-pci.c (capabilities, BAR, interrupts) and virtio-common.c (registers). */
#pragma once

#include "state/devstate-mig.h"
#include "vfio-user/migration.h"
#include "virtio/virtio-pci.h"

struct VirtioPci {
        VirtioPciConfig cfg;
        uint64_t device_features;

        /* Common configuration registers (4.1.4.3), control thread. */
        uint32_t dfselect;
        uint32_t gfselect;
        uint64_t driver_features;
        uint16_t msix_config;
        uint16_t queue_select;
        uint8_t status;                 /* atomic: data paths set NEEDS_RESET */
        uint8_t generation;             /* atomic */
        uint8_t isr;                    /* atomic, clear on read */
        bool started;                   /* DRIVER_OK accepted, device started */

        VirtQueue *queues;
        unsigned nvec;

        const VuMem *mem;
        const VirtioIrqOps *irq;
        void *irq_opaque;
        int notify_fd;
        VuPciCfg *pci;                  /* built by virtio_pci_server_config(), owned by the server */
        unsigned pci_cfg_cap;           /* offset of the VIRTIO_PCI_CAP_PCI_CFG capability */
        uint8_t pci_cfg_data[4];        /* the window as last filled from the BAR */

        /* Migration (virtio-pci-mig.c, virtio-pci-state.c), control thread. */
        char *state_type, *state_id;
        DevStateMig mig;
};

uint8_t virtio_pci_status_load(const VirtioPci *vp);
void virtio_pci_common_read(VirtioPci *vp, uint32_t off, void *buf, size_t len);
void virtio_pci_common_write(VirtioPci *vp, uint32_t off, const void *buf, size_t len);
void virtio_pci_fire(VirtioPci *vp, uint16_t vector, uint8_t isr_bit);
/* The VqNotifyFn of every started queue. */
void virtio_pci_queue_notify(void *opaque, VirtQueue *vq);
/* FEATURES_OK: may the driver's features be accepted (2.2.2)? */
bool virtio_pci_features_acceptable(VirtioPci *vp, uint64_t features);
/* Migration: the callbacks for VuDeviceOps.migration, and what DevStateMig needs of the transport. */
extern const VuMigrationOps virtio_pci_mig_ops;
extern const DevStateMigOps virtio_pci_state_ops;
/* Check all of r, then apply it; any failure leaves the device reset.  0 or -errno. */
int virtio_pci_state_apply(VirtioPci *vp, DevStateReader *r);
