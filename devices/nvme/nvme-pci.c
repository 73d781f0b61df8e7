/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-user wiring of the NVMe controller: PCI identity, BARs, device ops,
 * interrupts through MSI-X (BAR4) or, with cfg.msi, MSI.
 */
#include <errno.h>

#include "nvme-internal.h"
#include "nvme-pci.h"
#include "vfio-user/migration.h"
#include "vfio-user/pci-cfg.h"

static int nvme_bar0_read(void *opaque, uint64_t off, void *buf, size_t len) {
        return nvme_ctrl_bar0_read(opaque, off, buf, len);
}

static int nvme_bar0_write(void *opaque, uint64_t off, const void *buf, size_t len) {
        return nvme_ctrl_bar0_write(opaque, off, buf, len);
}

static const VuRegionOps nvme_bar0_ops = {
        .read = nvme_bar0_read,
        .write = nvme_bar0_write,
};

static void nvme_dev_quiesce(void *opaque) {
        nvme_ctrl_quiesce(opaque);
}

static void nvme_dev_resume(void *opaque) {
        nvme_ctrl_resume(opaque);
}

/*
 * DEVICE_RESET, FLR, lost connection: back to power-on, in-flight I/O
 * finished first; migration back to RUNNING.  The server then returns the
 * config space to its power-on values: Bus Master Enable clear.
 */
static void nvme_dev_reset(void *opaque, VuResetKind kind) {
        nvme_ctrl_reset(opaque);
        nvme_ctrl_mig_reset(opaque);
        nvme_ctrl_set_bus_master(opaque, false);
}

/* Command register writes: Bus Master Enable gates all of the controller's DMA. */
static void nvme_dev_cfg_event(void *opaque, unsigned events) {
        NvmeCtrl *c = opaque;

        if ((events & VU_CFG_EV_COMMAND) && c->pci_server)
                nvme_ctrl_set_bus_master(c, vu_pci_cfg_bus_master(vu_server_cfg(c->pci_server)));
}

static int nvme_mig_transition(void *opaque, enum vu_mig_state from, enum vu_mig_state to) {
        return nvme_ctrl_mig_transition(opaque, from, to);
}

static ssize_t nvme_mig_read(void *opaque, void *buf, size_t len) {
        return nvme_ctrl_mig_read(opaque, buf, len);
}

static int nvme_mig_write(void *opaque, const void *buf, size_t len) {
        return nvme_ctrl_mig_write(opaque, buf, len);
}

static const VuMigrationOps nvme_mig_ops = {
        .transition = nvme_mig_transition,
        .read_data = nvme_mig_read,
        .write_data = nvme_mig_write,
};

static const VuDeviceOps nvme_dev_ops = {
        .quiesce = nvme_dev_quiesce,
        .resume = nvme_dev_resume,
        .reset = nvme_dev_reset,
        .cfg_event = nvme_dev_cfg_event,
        .migration = &nvme_mig_ops,
};

int nvme_pci_config(NvmeCtrl *c, VuServerConfig *scfg) {
        const VuPciId id = {
                .vendor = NVME_PCI_VENDOR,
                .device = NVME_PCI_DEVICE,
                .subsys_vendor = NVME_PCI_VENDOR,
                .subsys = NVME_PCI_DEVICE,
                .revision = 1,
                .class_code = 0x010802,         /* mass storage, NVM, NVMe I/O controller */
        };
        unsigned nvec = c->cfg.msix_nvec;
        bool msi = c->cfg.msi;
        int r;

        if (nvec == 0 || nvec > 2048)
                return -EINVAL;
        VuPciCfg *cfg = vu_pci_cfg_new(&id);
        if (!cfg)
                return -ENOMEM;
        /* MSI-X table at 0, PBA on its own page after it (never in the doorbell BAR). */
        uint32_t table = nvec * 16, pba_off = (table + 4095) & ~4095u;
        uint64_t bar4 = 4096;
        while (bar4 < pba_off + (nvec + 63) / 64 * 8)
                bar4 <<= 1;
        r = vu_pci_cfg_set_bar(cfg, 0, nvme_ctrl_bar0_size(c), VU_BAR_MEM64);
        if (r == 0 && !msi)
                r = vu_pci_cfg_set_bar(cfg, NVME_PCI_MSIX_BAR, bar4, VU_BAR_MEM64);
        if (r == 0)
                r = vu_pci_cfg_add_pm(cfg);
        if (r >= 0)
                r = vu_pci_cfg_add_pcie(cfg, true);
        /*
         * MSI instead of MSI-X: QEMU 11.1's vfio-user-pci aborts when it
         * unplugs a function with MSI-X, and Linux's nvme driver falls back
         * to MSI when there is no MSI-X.
         */
        if (r >= 0)
                r = msi ? vu_pci_cfg_add_msi(cfg, nvec)
                        : vu_pci_cfg_add_msix(cfg, nvec, NVME_PCI_MSIX_BAR, 0, NVME_PCI_MSIX_BAR, pba_off);
        if (r < 0) {
                vu_pci_cfg_free(cfg);
                return r;
        }
        *scfg = (VuServerConfig) {
                .cfg = cfg,
                .msix_bar = msi ? 0 : NVME_PCI_MSIX_BAR,
                .msix_nvec = msi ? 0 : nvec,
                .msi_nvec = msi ? nvec : 0,
                .ops = &nvme_dev_ops,
                .opaque = c,
                .name = c->name,
        };
        for (unsigned i = 0; i < 6; i++)
                scfg->bars[i].mmap_fd = -1;
        scfg->bars[0].ops = &nvme_bar0_ops;
        scfg->bars[0].opaque = c;
        return 0;
}

static void nvme_pci_irq(void *opaque, unsigned vector) {
        (void) vu_server_irq(opaque, vector);
}

void nvme_pci_start(NvmeCtrl *c, VuServer *server) {
        nvme_ctrl_attach(c, vu_server_mem(server), nvme_pci_irq, server);
        c->pci_server = server;
        nvme_ctrl_set_bus_master(c, vu_pci_cfg_bus_master(vu_server_cfg(server)));
}
