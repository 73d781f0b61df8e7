/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Capability builders for the config-space model: PCI Power Management
 * (PCI PM 1.2 §3.2), PCI Express (PCIe Base 6.0 §7.5.3), MSI-X (§7.7.2) and
 * vendor-specific (PCI Local Bus 3.0 §6.8.4).  Capability ID and next-pointer
 * bytes are never writable.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "pci-cfg-internal.h"

int vu_cfg_cap_alloc(VuPciCfg *c, uint8_t id, unsigned len) {
        unsigned off = c->next_cap;

        if (len < 2 || len > VU_CFG_STD_END - VU_CFG_CAP_START || off + len > VU_CFG_STD_END)
                return -ENOSPC;
        c->next_cap = (off + len + 3) & ~3u;
        c->cfg[off] = id;
        c->cfg[off + 1] = 0;
        if (c->last_cap)
                c->cfg[c->last_cap + 1] = (uint8_t) off;
        else {
                c->cfg[VU_CFG_CAP_PTR] = (uint8_t) off;
                c->cfg[VU_CFG_STATUS] |= VU_STATUS_CAP_LIST;
        }
        c->last_cap = off;
        return (int) off;
}

int vu_pci_cfg_add_pm(VuPciCfg *c) {
        int off;

        if (c->pm_off)
                return -EEXIST;
        off = vu_cfg_cap_alloc(c, VU_CAP_ID_PM, VU_PM_SIZEOF);
        if (off < 0)
                return off;
        /* Version 3 (PM 1.2), no PME, no D1/D2, no aux current. */
        vu_put16(c->cfg, off + VU_PM_PMC, 0x0003);
        /* D0; No_Soft_Reset: D3hot → D0 keeps the device's state. */
        vu_put16(c->cfg, off + VU_PM_CSR, VU_PM_CSR_NO_SOFT_RESET);
        vu_put16(c->wmask, off + VU_PM_CSR, VU_PM_CSR_STATE_MASK);
        c->pm_off = (unsigned) off;
        vu_pci_cfg_save_defaults(c);
        return off;
}

int vu_pci_cfg_add_pcie(VuPciCfg *c, bool flr) {
        uint32_t devcap = VU_PCIE_DEVCAP_RBER;  /* MPS 128 bytes */
        int off;

        if (c->pcie_off)
                return -EEXIST;
        off = vu_cfg_cap_alloc(c, VU_CAP_ID_PCIE, VU_PCIE_SIZEOF);
        if (off < 0)
                return off;
        if (flr)
                devcap |= VU_PCIE_DEVCAP_FLR;
        vu_put16(c->cfg, off + VU_PCIE_FLAGS, 0x0002);          /* v2, PCI Express Endpoint */
        vu_put32(c->cfg, off + VU_PCIE_DEVCAP, devcap);
        vu_put16(c->cfg, off + VU_PCIE_DEVCTL, 0x2810);         /* RO+NS enabled, MRRS 512 */
        vu_put16(c->wmask, off + VU_PCIE_DEVCTL, VU_PCIE_DEVCTL_WMASK);
        c->w1cmask[off + VU_PCIE_DEVSTA] = 0x0f;                /* error detected bits */
        vu_put32(c->cfg, off + VU_PCIE_LNKCAP, 0x00000011);     /* 2.5 GT/s, x1 */
        vu_put16(c->wmask, off + VU_PCIE_LNKCTL, 0x00c8);       /* RCB, common clock, ext sync */
        vu_put16(c->cfg, off + VU_PCIE_LNKSTA, 0x0011);
        vu_put32(c->cfg, off + VU_PCIE_LNKCAP2, 0x00000002);    /* supports 2.5 GT/s */
        vu_put16(c->cfg, off + VU_PCIE_LNKCTL2, 0x0001);
        c->pcie_off = (unsigned) off;
        c->flr = flr;
        vu_pci_cfg_save_defaults(c);
        return off;
}

int vu_pci_cfg_add_msix(VuPciCfg *c, unsigned nvec, unsigned table_bar, uint32_t table_off,
                        unsigned pba_bar, uint32_t pba_off) {
        int off;

        if (c->msix_off || c->msi_off)
                return -EEXIST;
        if (nvec == 0 || nvec > VU_MSIX_MAX_VECTORS || table_bar >= 6 || pba_bar >= 6 ||
            (table_off & 7) || (pba_off & 7))
                return -EINVAL;
        off = vu_cfg_cap_alloc(c, VU_CAP_ID_MSIX, VU_MSIX_SIZEOF);
        if (off < 0)
                return off;
        vu_put16(c->cfg, off + VU_MSIX_CTRL, (uint16_t) (nvec - 1));
        vu_put16(c->wmask, off + VU_MSIX_CTRL, VU_MSIX_CTRL_ENABLE | VU_MSIX_CTRL_MASKALL);
        vu_put32(c->cfg, off + VU_MSIX_TABLE, table_off | table_bar);
        vu_put32(c->cfg, off + VU_MSIX_PBA, pba_off | pba_bar);
        c->msix_off = (unsigned) off;
        c->msix_nvec = nvec;
        c->msix_table_bar = table_bar;
        c->msix_table_off = table_off;
        c->msix_pba_bar = pba_bar;
        c->msix_pba_off = pba_off;
        vu_pci_cfg_save_defaults(c);
        return off;
}

int vu_pci_cfg_add_msi(VuPciCfg *c, unsigned nvec) {
        unsigned log2 = 0;
        int off;

        if (c->msi_off || c->msix_off)
                return -EEXIST;
        if (nvec == 0 || nvec > VU_MSI_MAX_VECTORS || (nvec & (nvec - 1)))
                return -EINVAL;
        while ((1u << log2) < nvec)
                log2++;
        off = vu_cfg_cap_alloc(c, VU_CAP_ID_MSI, VU_MSI_SIZEOF);
        if (off < 0)
                return off;
        vu_put16(c->cfg, off + VU_MSI_CTRL,
                 (uint16_t) (log2 << VU_MSI_CTRL_MMC_SHIFT | VU_MSI_CTRL_64BIT | VU_MSI_CTRL_PVM));
        vu_put16(c->wmask, off + VU_MSI_CTRL, VU_MSI_CTRL_ENABLE | VU_MSI_CTRL_MME_MASK);
        vu_put32(c->wmask, off + VU_MSI_ADDR_LO, 0xfffffffcu);
        vu_put32(c->wmask, off + VU_MSI_ADDR_HI, 0xffffffffu);
        vu_put16(c->wmask, off + VU_MSI_DATA, 0xffff);
        /* Mask bits of unimplemented vectors are read-only 0; Pending Bits are read-only. */
        vu_put32(c->wmask, off + VU_MSI_MASK, nvec == 32 ? 0xffffffffu : (1u << nvec) - 1);
        c->msi_off = (unsigned) off;
        c->msi_nvec = nvec;
        vu_pci_cfg_save_defaults(c);
        return off;
}

int vu_pci_cfg_add_vendor(VuPciCfg *c, const void *body, size_t len, const uint8_t *wmask) {
        int off;

        if (!body || len == 0 || len > VU_CFG_STD_END - VU_CFG_CAP_START - 2)
                return -EINVAL;
        if (c->n_vendor >= G_N_ELEMENTS(c->vendor))
                return -ENOSPC;
        off = vu_cfg_cap_alloc(c, VU_CAP_ID_VENDOR, (unsigned) len + 2);
        if (off < 0)
                return off;
        memcpy(c->cfg + off + 2, body, len);
        if (wmask)
                memcpy(c->wmask + off + 2, wmask, len);
        c->vendor[c->n_vendor].off = (uint16_t) off;
        c->vendor[c->n_vendor].len = (uint16_t) (len + 2);
        c->n_vendor++;
        vu_pci_cfg_save_defaults(c);
        return off;
}
