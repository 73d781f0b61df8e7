/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The PCI face of a virtio device (virtio-v1.2 4.1.2, 4.1.4): identity,
 * vendor capabilities, BARs, MSI-X, and the vfio-user device callbacks.
 * The VIRTIO_PCI_CAP_PCI_CFG window (4.1.4.9) is served from config writes:
 * a changed data window is written to the BAR, and after every write to the
 * capability the window is refilled from the BAR location it names.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <glib.h>

#include "virtio/virtio-pci-priv.h"

/* 4.1.4 struct virtio_pci_cap, after cap_vndr and cap_next. */
typedef struct VirtioPciCapBody {
        uint8_t cap_len;
        uint8_t cfg_type;
        uint8_t bar;
        uint8_t id;
        uint8_t padding[2];
        uint32_t offset;
        uint32_t length;
        uint8_t extra[4];               /* notify_off_multiplier, or pci_cfg_data */
} __attribute__((packed)) VirtioPciCapBody;

static int add_cap(VuPciCfg *c, uint8_t type, uint32_t off, uint32_t len, const uint32_t *extra) {
        VirtioPciCapBody b = {
                .cap_len = 16,
                .cfg_type = type,
                .bar = type == VIRTIO_PCI_CAP_PCI_CFG ? 0 : VIRTIO_PCI_BAR,
                .offset = htole32(off),
                .length = htole32(len),
        };
        uint8_t wmask[sizeof(b)] = { 0 };

        if (extra) {
                uint32_t e = htole32(*extra);
                memcpy(b.extra, &e, 4);
                b.cap_len = 20;
        }
        if (type == VIRTIO_PCI_CAP_PCI_CFG) {
                /* 4.1.4.9: bar, offset, length and the data window are driver-writable. */
                b.cap_len = 20;
                wmask[offsetof(VirtioPciCapBody, bar)] = 0xff;
                memset(wmask + offsetof(VirtioPciCapBody, offset), 0xff, 8);
                memset(wmask + offsetof(VirtioPciCapBody, extra), 0xff, 4);
        }
        return vu_pci_cfg_add_vendor(c, &b, b.cap_len - 2u, wmask);
}

static int region_read(void *opaque, uint64_t off, void *buf, size_t len) {
        return virtio_pci_bar_read(opaque, off, buf, len);
}

static int region_write(void *opaque, uint64_t off, const void *buf, size_t len) {
        return virtio_pci_bar_write(opaque, off, buf, len);
}

static const VuRegionOps bar0_ops = {
        .read = region_read,
        .write = region_write,
};

static void dev_quiesce(void *opaque) {
        VirtioPci *vp = opaque;

        if (vp->cfg.ops->quiesce)
                vp->cfg.ops->quiesce(vp->cfg.opaque);
}

static void dev_resume(void *opaque) {
        VirtioPci *vp = opaque;

        virtio_pci_remap_queues(vp);
        /* While migration holds the device stopped the data path stays idle. */
        if (vp->cfg.ops->resume && virtio_pci_may_run(vp))
                vp->cfg.ops->resume(vp->cfg.opaque);
}

static void dev_reset(void *opaque, VuResetKind kind) {
        VirtioPci *vp = opaque;

        /* Every server reset (DEVICE_RESET, FLR, lost client) also returns migration to RUNNING. */
        virtio_pci_reset(vp);
        devstate_mig_reset(&vp->mig);
}

/* 4.1.4.9: the VIRTIO_PCI_CAP_PCI_CFG access window. */
static void pci_cfg_window(VirtioPci *vp) {
        uint8_t *raw = vu_pci_cfg_raw(vp->pci);
        VirtioPciCapBody b;
        uint32_t off, len;

        memcpy(&b, raw + vp->pci_cfg_cap + 2, sizeof(b));
        off = le32toh(b.offset);
        len = le32toh(b.length);
        /* 4.1.4.9.1: only 1, 2 or 4 byte accesses, naturally aligned, in a BAR we have. */
        if (b.bar != VIRTIO_PCI_BAR || (len != 1 && len != 2 && len != 4) || off % len != 0 ||
            off >= VIRTIO_PCI_BAR_SIZE)
                return;
        if (memcmp(b.extra, vp->pci_cfg_data, sizeof(b.extra)) != 0)
                virtio_pci_bar_write(vp, off, b.extra, len);
        memset(b.extra, 0, sizeof(b.extra));
        virtio_pci_bar_read(vp, off, b.extra, len);
        memcpy(vp->pci_cfg_data, b.extra, sizeof(b.extra));
        memcpy(raw + vp->pci_cfg_cap + 2 + offsetof(VirtioPciCapBody, extra), b.extra, sizeof(b.extra));
}

static void dev_cfg_event(void *opaque, unsigned events) {
        VirtioPci *vp = opaque;

        /* PCIe FLR (6.6.2) resets the function like DEVICE_RESET. */
        if (events & VU_CFG_EV_FLR)
                virtio_pci_reset(vp);
        if ((events & VU_CFG_EV_VENDOR) && vp->pci && vp->pci_cfg_cap)
                pci_cfg_window(vp);
}

static const VuDeviceOps vu_ops = {
        .quiesce = dev_quiesce,
        .resume = dev_resume,
        .reset = dev_reset,
        .cfg_event = dev_cfg_event,
};

/* The same, for a device that describes its state: migration v2 too. */
static const VuDeviceOps vu_ops_migration = {
        .quiesce = dev_quiesce,
        .resume = dev_resume,
        .reset = dev_reset,
        .cfg_event = dev_cfg_event,
        .migration = &virtio_pci_mig_ops,
};

int virtio_pci_server_config(VirtioPci *vp, VuServerConfig *scfg) {
        VuPciId id = {
                .vendor = VIRTIO_PCI_VENDOR,
                .device = (uint16_t) (VIRTIO_PCI_DEVICE_BASE + vp->cfg.device_id),
                .subsys_vendor = VIRTIO_PCI_VENDOR,
                .subsys = vp->cfg.subsys_id,
                .revision = 1,          /* 4.1.2.1: non-transitional devices have revision ≥ 1 */
                .class_code = vp->cfg.class_code,
        };
        uint32_t mult = VIRTIO_PCI_NOTIFY_MULT;
        uint32_t table_len = vp->nvec * 16;
        uint32_t pba_off = (table_len + 0xfff) & ~0xfffu;
        uint64_t msix_size = 0x1000;
        VuPciCfg *c;
        int r;

        while (msix_size < pba_off + 0x1000u)
                msix_size <<= 1;

        c = vu_pci_cfg_new(&id);
        if (!c)
                return -ENOMEM;
        if ((r = vu_pci_cfg_set_bar(c, VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, VU_BAR_MEM32)) < 0 ||
            (r = vu_pci_cfg_set_bar(c, VIRTIO_PCI_MSIX_BAR, msix_size, VU_BAR_MEM32)) < 0 ||
            (r = vu_pci_cfg_add_pm(c)) < 0 ||
            (r = vu_pci_cfg_add_pcie(c, true)) < 0 ||
            (r = vu_pci_cfg_add_msix(c, vp->nvec, VIRTIO_PCI_MSIX_BAR, 0, VIRTIO_PCI_MSIX_BAR, pba_off)) < 0 ||
            (r = add_cap(c, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFF, VIRTIO_PCI_COMMON_CFG_SIZE, NULL)) < 0 ||
            (r = add_cap(c, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFF, 1, NULL)) < 0 ||
            (r = add_cap(c, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFF,
                         (uint32_t) MAX(vp->cfg.config_size, 4u), NULL)) < 0 ||
            (r = add_cap(c, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFF,
                         vp->cfg.num_queues * VIRTIO_PCI_NOTIFY_MULT, &mult)) < 0 ||
            (r = add_cap(c, VIRTIO_PCI_CAP_PCI_CFG, 0, 0, NULL)) < 0) {
                vu_pci_cfg_free(c);
                return r;
        }
        vp->pci_cfg_cap = (unsigned) r;
        memset(vp->pci_cfg_data, 0, sizeof(vp->pci_cfg_data));

        vp->pci = c;
        scfg->cfg = c;
        memset(scfg->bars, 0, sizeof(scfg->bars));
        for (unsigned i = 0; i < 6; i++)
                scfg->bars[i].mmap_fd = -1;
        scfg->bars[VIRTIO_PCI_BAR] = (VuRegion) {
                .ops = &bar0_ops,
                .opaque = vp,
                .mmap_fd = vp->notify_fd,
        };
        if (vp->notify_fd >= 0) {
                scfg->bars[VIRTIO_PCI_BAR].n_areas = 1;
                scfg->bars[VIRTIO_PCI_BAR].areas[0] = (VuMmapArea) {
                        .offset = VIRTIO_PCI_NOTIFY_OFF,
                        .size = VIRTIO_PCI_NOTIFY_LEN,
                };
        }
        scfg->msix_bar = VIRTIO_PCI_MSIX_BAR;
        scfg->msix_nvec = vp->nvec;
        scfg->ops = vp->state_type && vp->cfg.ops->save ? &vu_ops_migration : &vu_ops;
        scfg->opaque = vp;
        return 0;
}

