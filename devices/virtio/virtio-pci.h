/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtio 1.x modern PCI transport (virtio-v1.2 4.1) on the vfio-user
 * library: PCI identity and vendor capabilities, the BAR holding the common,
 * ISR, device and notify structures, the MSI-X vectors, and the device status
 * state machine with feature negotiation.
 *
 * BAR layout (all inside BAR0, a 16 KiB 32-bit memory BAR):
 *   0x0000 common configuration (56 bytes)          trapped
 *   0x1000 ISR status (1 byte, clear on read)         trapped
 *   0x2000 device configuration                       trapped
 *   0x3000 notify area, 4 bytes per queue             trapped, or an mmapped
 *                                                     page the data path polls
 * BAR1 holds the MSI-X table (offset 0) and PBA, implemented by the server.
 *
 * Migration (virtio-pci-mig.c, virtio-pci-state.c): a device that
 * describes its state (state_type, save/load_check/load_apply) gets the
 * vfio-user migration v2 callbacks: the transport saves and restores the
 * common configuration and every queue, the device adds its own sections.
 * While migration holds the device stopped (STOP, STOP_COPY, RESUMING,
 * ERROR) its data path must not run: devices ask virtio_pci_may_run().
 *
 * Threading: register accesses, reset, quiesce and migration run on the
 * control thread.  virtio_pci_notify_queue(), virtio_pci_config_changed()
 * and virtio_pci_set_needs_reset() may be called from data-path threads.
 * Return convention: 0 or negative errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "state/devstate.h"
#include "vfio-user/mem.h"
#include "vfio-user/server.h"
#include "virtio/virtio.h"
#include "virtio/virtqueue.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040   /* 4.1.2.1: 0x1040 + virtio device id */

#define VIRTIO_PCI_BAR 0
#define VIRTIO_PCI_BAR_SIZE 0x4000u
#define VIRTIO_PCI_COMMON_OFF 0x0000u
#define VIRTIO_PCI_ISR_OFF 0x1000u
#define VIRTIO_PCI_DEVICE_OFF 0x2000u
#define VIRTIO_PCI_DEVICE_LEN 0x1000u
#define VIRTIO_PCI_NOTIFY_OFF 0x3000u
#define VIRTIO_PCI_NOTIFY_LEN 0x1000u
#define VIRTIO_PCI_NOTIFY_MULT 4u
#define VIRTIO_PCI_MSIX_BAR 1
#define VIRTIO_PCI_MAX_QUEUES (VIRTIO_PCI_NOTIFY_LEN / VIRTIO_PCI_NOTIFY_MULT)

typedef struct VirtioPci VirtioPci;

/* What the device model behind the transport provides. */
typedef struct VirtioDeviceOps {
        /* FEATURES_OK: 0 to accept the driver's features, -EINVAL to refuse (2.2.2). */
        int (*validate_features)(void *opaque, uint64_t features);
        /* Device configuration space accesses, offset relative to its start. */
        void (*config_read)(void *opaque, uint32_t off, void *buf, size_t len);
        void (*config_write)(void *opaque, uint32_t off, const void *buf, size_t len);
        /*
         * DRIVER_OK: the queues the driver enabled are started; begin the data
         * path.  A negative errno sets DEVICE_NEEDS_RESET.
         */
        int (*start)(void *opaque, uint64_t features);
        /* Stop the data path and return only when it no longer touches queues (reset, FAILED). */
        void (*stop)(void *opaque);
        /* A trapped notification for queue q.  Must only wake the data path. */
        void (*kick)(void *opaque, unsigned q);
        /* VuDeviceOps.quiesce/resume passed through; rings are re-mapped by the transport. */
        void (*quiesce)(void *opaque);
        void (*resume)(void *opaque);
        /*
         * Migration; optional (without save the device does not migrate).
         * save: add the device's sections to w; the data path is quiesced.
         * load_check: r is a complete stream with a verified checksum whose
         * transport sections were accepted (features: what the driver
         * negotiated; started: DRIVER_OK was accepted); refuse bad values
         * with devstate_reader_fail() and change nothing.
         * load_apply: apply what load_check accepted, after the transport
         * restored its registers and queues, without starting the data path
         * (virtio_pci_may_run() is false).  A failure (devstate_reader_fail()
         * says why) resets the device.
         * 0 or -errno.
         */
        int (*save)(void *opaque, DevStateWriter *w);
        int (*load_check)(void *opaque, DevStateReader *r, uint64_t features, bool started);
        int (*load_apply)(void *opaque, DevStateReader *r, uint64_t features, bool started);
} VirtioDeviceOps;

/* The interrupt seam: vu_server_irq() in the daemon, a recorder in tests. */
typedef struct VirtioIrqOps {
        int (*fire)(void *opaque, unsigned vector);
} VirtioIrqOps;

typedef struct VirtioPciConfig {
        uint16_t device_id;             /* virtio device id (1 = net) */
        uint32_t class_code;            /* base << 16 | sub << 8 | prog-if */
        uint16_t subsys_id;
        uint64_t features;              /* offered; VERSION_1 is always added */
        unsigned num_queues;            /* 1..VIRTIO_PCI_MAX_QUEUES */
        uint16_t queue_size;            /* maximum per queue, ≤ VQ_MAX_SIZE */
        size_t config_size;             /* device configuration bytes, ≤ VIRTIO_PCI_DEVICE_LEN */
        bool notify_mmap;               /* notify page mmappable (polled data path) */
        /* Migration: device type and identity in state streams (copied); NULL type: no migration. */
        const char *state_type;
        const char *state_id;
        /* The device's own sections (ids ≥ VIRTIO_STATE_SEC_DEVICE), for the reader's checks. */
        const DevStateSectionSpec *state_sections;
        size_t n_state_sections;
        const VirtioDeviceOps *ops;
        void *opaque;
        const char *name;
} VirtioPciConfig;

int virtio_pci_new(const VirtioPciConfig *cfg, VirtioPci **out);
void virtio_pci_free(VirtioPci *vp);

/*
 * Build the PCI configuration space (ids, vendor capabilities, MSI-X) and
 * fill scfg: cfg, bars, msix, ops.  The caller still owns scfg->name etc.
 * 0 or -errno.
 */
int virtio_pci_server_config(VirtioPci *vp, VuServerConfig *scfg);

/* Guest memory and interrupt sink; valid until virtio_pci_free(). */
void virtio_pci_attach(VirtioPci *vp, const VuMem *mem, const VirtioIrqOps *irq, void *irq_opaque);

/* BAR0 accesses (also the VuRegionOps behind BAR0).  0 or -EINVAL. */
int virtio_pci_bar_read(VirtioPci *vp, uint64_t off, void *buf, size_t len);
int virtio_pci_bar_write(VirtioPci *vp, uint64_t off, const void *buf, size_t len);

/* Device reset (status 0 written, DEVICE_RESET, FLR, lost connection). */
void virtio_pci_reset(VirtioPci *vp);

VirtQueue *virtio_pci_queue(VirtioPci *vp, unsigned q);
unsigned virtio_pci_num_queues(const VirtioPci *vp);
uint64_t virtio_pci_driver_features(const VirtioPci *vp);
uint8_t virtio_pci_status(const VirtioPci *vp);
uint16_t virtio_pci_msix_config(const VirtioPci *vp);
unsigned virtio_pci_nvec(const VirtioPci *vp);

/* Raise the queue's MSI-X vector (ISR queue bit when it has none).  Any thread. */
void virtio_pci_notify_queue(VirtioPci *vp, VirtQueue *vq);
/* The device configuration changed: bump config_generation, raise the config vector. Any thread. */
void virtio_pci_config_changed(VirtioPci *vp, bool interrupt);
/* A guest error: set DEVICE_NEEDS_RESET and, after DRIVER_OK, notify (2.1.2). Any thread. */
void virtio_pci_set_needs_reset(VirtioPci *vp);
/*
 * Re-map started queues after a DMA change; the transport calls it while
 * quiesced.  A queue whose rings are no longer mapped stays idle until a
 * later call finds them again (vq_remap()).
 */
void virtio_pci_remap_queues(VirtioPci *vp);
/* The memfd behind the mmappable notify page, or -1. */
int virtio_pci_notify_fd(const VirtioPci *vp);

/* Section ids in state streams: the transport's below VIRTIO_STATE_SEC_DEVICE, the device's from it. */
enum {
        VIRTIO_STATE_SEC_TRANSPORT = 1,         /* what the device offers: checked, not restored */
        VIRTIO_STATE_SEC_COMMON = 2,            /* common configuration registers (4.1.4.3) */
        VIRTIO_STATE_SEC_QUEUE = 3,             /* one per queue, instance = queue index */
        VIRTIO_STATE_SEC_DEVICE = 16,
};

/* May the device's data path run?  False while migration holds the device stopped.  Control thread. */
bool virtio_pci_may_run(const VirtioPci *vp);
/* The migration state as the device last entered it (VU_MIG_RUNNING when none is under way). */
enum vu_mig_state virtio_pci_migration_state(const VirtioPci *vp);
/* Why the last incoming state was refused, for people; NULL when none was. */
const char *virtio_pci_migration_error(const VirtioPci *vp);
/*
 * Save the device state into a finished stream (the data path must be
 * quiesced), or restore one: check all of it, then apply it, leaving the
 * device reset on any failure (the reason in virtio_pci_migration_error()).
 * The migration callbacks use these; tools and tests may too.  0 or -errno.
 */
int virtio_pci_state_save(VirtioPci *vp, DevStateWriter **out);
int virtio_pci_state_load(VirtioPci *vp, DevStateReader *r);
/* A reader for this device's streams: type, identity and every section it knows. */
DevStateReader *virtio_pci_state_reader(VirtioPci *vp);
