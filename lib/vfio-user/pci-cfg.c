/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PCI configuration space model: the type-0 header (PCI Local Bus 3.0 §6.1,
 * PCIe Base 6.0 §7.5.1), BAR type bits and size masks (§7.5.1.2.1), and
 * filtered accesses.  Capability builders live in caps.c.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "pci-cfg-internal.h"

static bool is_pow2(uint64_t v) {
        return v && !(v & (v - 1));
}

static void update_command_wmask(VuPciCfg *c) {
        uint16_t m = VU_CMD_MEM | VU_CMD_BUS_MASTER | VU_CMD_PARITY | VU_CMD_SERR |
                     VU_CMD_INTX_DISABLE;

        for (unsigned i = 0; i < 6; i++)
                if (c->bar_type[i] == VU_BAR_IO)
                        m |= VU_CMD_IO;
        vu_put16(c->wmask, VU_CFG_COMMAND, m);
}

VuPciCfg *vu_pci_cfg_new(const VuPciId *id) {
        VuPciCfg *c = g_new0(VuPciCfg, 1);

        vu_put16(c->cfg, VU_CFG_VENDOR_ID, id->vendor);
        vu_put16(c->cfg, VU_CFG_DEVICE_ID, id->device);
        c->cfg[VU_CFG_REVISION] = id->revision;
        c->cfg[VU_CFG_CLASS_PROG] = (uint8_t) id->class_code;
        c->cfg[VU_CFG_CLASS_PROG + 1] = (uint8_t) (id->class_code >> 8);
        c->cfg[VU_CFG_CLASS_PROG + 2] = (uint8_t) (id->class_code >> 16);
        c->cfg[VU_CFG_HEADER_TYPE] = 0x00;      /* type 0, single function */
        vu_put16(c->cfg, VU_CFG_SUBSYS_VENDOR, id->subsys_vendor);
        vu_put16(c->cfg, VU_CFG_SUBSYS_ID, id->subsys);
        c->cfg[VU_CFG_INT_PIN] = 0;             /* no INTx: MSI or MSI-X only */

        for (unsigned i = 0; i < 6; i++)
                c->bar_type[i] = VU_BAR_TYPE_NONE;
        update_command_wmask(c);
        c->w1cmask[VU_CFG_STATUS] = (uint8_t) VU_STATUS_W1C;
        c->w1cmask[VU_CFG_STATUS + 1] = (uint8_t) (VU_STATUS_W1C >> 8);
        c->wmask[VU_CFG_CACHE_LINE] = 0xff;
        c->wmask[VU_CFG_INT_LINE] = 0xff;
        c->next_cap = VU_CFG_CAP_START;
        vu_pci_cfg_save_defaults(c);
        return c;
}

void vu_pci_cfg_free(VuPciCfg *c) {
        g_free(c);
}

void vu_pci_cfg_save_defaults(VuPciCfg *c) {
        memcpy(c->init, c->cfg, sizeof(c->init));
}

static void clear_bar(VuPciCfg *c, unsigned idx) {
        vu_put32(c->cfg, VU_CFG_BAR0 + 4 * idx, 0);
        vu_put32(c->wmask, VU_CFG_BAR0 + 4 * idx, 0);
        c->bar_size[idx] = 0;
        c->bar_type[idx] = VU_BAR_TYPE_NONE;
}

int vu_pci_cfg_set_bar(VuPciCfg *c, unsigned idx, uint64_t size, uint32_t type) {
        unsigned off = VU_CFG_BAR0 + 4 * idx;
        uint32_t lo_mask;

        if (idx >= 6 || !is_pow2(size))
                return -EINVAL;
        switch (type) {
        case VU_BAR_IO:
                if (size < 4 || size > 256)
                        return -EINVAL;
                lo_mask = (uint32_t) ~(size - 1) & ~0x3u;
                break;
        case VU_BAR_MEM32:
        case VU_BAR_MEM32 | VU_BAR_PREFETCH:
                if (size < 16 || size > (1ull << 31))
                        return -EINVAL;
                lo_mask = (uint32_t) ~(size - 1) & ~0xfu;
                break;
        case VU_BAR_MEM64:
        case VU_BAR_MEM64 | VU_BAR_PREFETCH:
                if (size < 16 || size > (1ull << 63) || idx >= 5)
                        return -EINVAL;
                if (c->bar_type[idx + 1] != VU_BAR_TYPE_NONE)
                        return -EBUSY;
                lo_mask = (uint32_t) ~(size - 1) & ~0xfu;
                break;
        default:
                return -EINVAL;
        }
        if (c->bar_type[idx] == VU_BAR_TYPE_UPPER)
                return -EBUSY;
        if (c->bar_type[idx] != VU_BAR_TYPE_NONE && (c->bar_type[idx] & VU_BAR_MEM64))
                clear_bar(c, idx + 1);

        c->bar_size[idx] = size;
        c->bar_type[idx] = type;
        vu_put32(c->cfg, off, type);
        vu_put32(c->wmask, off, lo_mask);
        if (type & VU_BAR_MEM64) {
                uint32_t hi_mask = (uint32_t) ~((size - 1) >> 32);

                c->bar_size[idx + 1] = 0;
                c->bar_type[idx + 1] = VU_BAR_TYPE_UPPER;
                vu_put32(c->cfg, off + 4, 0);
                vu_put32(c->wmask, off + 4, hi_mask);
        }
        update_command_wmask(c);
        vu_pci_cfg_save_defaults(c);
        return 0;
}

uint64_t vu_pci_cfg_bar_size(const VuPciCfg *c, unsigned idx) {
        if (idx >= 6 || c->bar_type[idx] == VU_BAR_TYPE_NONE || c->bar_type[idx] == VU_BAR_TYPE_UPPER)
                return 0;
        return c->bar_size[idx];
}

int vu_pci_cfg_bar_type(const VuPciCfg *c, unsigned idx) {
        if (idx >= 6 || c->bar_type[idx] == VU_BAR_TYPE_NONE || c->bar_type[idx] == VU_BAR_TYPE_UPPER)
                return -ENOENT;
        return (int) c->bar_type[idx];
}

int vu_pci_cfg_read(VuPciCfg *c, uint32_t off, void *buf, size_t len) {
        if (len == 0 || off >= VU_PCI_CFG_SIZE || len > VU_PCI_CFG_SIZE - off)
                return -EINVAL;
        memcpy(buf, c->cfg + off, len);
        return 0;
}

static bool in_vendor_cap(const VuPciCfg *c, unsigned o) {
        for (unsigned i = 0; i < c->n_vendor; i++)
                if (o >= c->vendor[i].off && o < (unsigned) c->vendor[i].off + c->vendor[i].len)
                        return true;
        return false;
}

int vu_pci_cfg_write(VuPciCfg *c, uint32_t off, const void *buf, size_t len, unsigned *events) {
        const uint8_t *b = buf;
        unsigned ev = 0;
        uint16_t old_cmd, old_pm = 0, old_msix = 0, old_msi = 0;
        uint32_t old_msi_mask = 0;
        bool flr = false;

        if (events)
                *events = 0;
        if (len == 0 || off >= VU_PCI_CFG_SIZE || len > VU_PCI_CFG_SIZE - off)
                return -EINVAL;

        old_cmd = vu_cfg_get16(c, VU_CFG_COMMAND);
        if (c->pm_off)
                old_pm = vu_cfg_get16(c, c->pm_off + VU_PM_CSR);
        if (c->msix_off)
                old_msix = vu_cfg_get16(c, c->msix_off + VU_MSIX_CTRL);
        if (c->msi_off) {
                old_msi = vu_cfg_get16(c, c->msi_off + VU_MSI_CTRL);
                old_msi_mask = vu_cfg_get32(c, c->msi_off + VU_MSI_MASK);
        }

        for (size_t i = 0; i < len; i++) {
                unsigned o = off + (unsigned) i;
                uint8_t v = b[i];

                /* Initiate FLR is write-only: it triggers and always reads 0 (§7.5.3.4). */
                if (c->pcie_off && c->flr && o == c->pcie_off + VU_PCIE_DEVCTL + 1 &&
                    (v & (VU_PCIE_DEVCTL_FLR >> 8)))
                        flr = true;
                if (c->wmask[o] && in_vendor_cap(c, o))
                        ev |= VU_CFG_EV_VENDOR;
                c->cfg[o] = (uint8_t) ((c->cfg[o] & ~c->wmask[o]) | (v & c->wmask[o]));
                c->cfg[o] &= (uint8_t) ~(v & c->w1cmask[o]);
        }

        if (vu_cfg_get16(c, VU_CFG_COMMAND) != old_cmd)
                ev |= VU_CFG_EV_COMMAND;
        if (c->pm_off) {
                uint16_t pm = vu_cfg_get16(c, c->pm_off + VU_PM_CSR);
                unsigned st = pm & VU_PM_CSR_STATE_MASK;

                /* D1 and D2 are not advertised in PMC: such writes leave the state alone. */
                if (st == 1 || st == 2) {
                        pm = (uint16_t) ((pm & ~VU_PM_CSR_STATE_MASK) | (old_pm & VU_PM_CSR_STATE_MASK));
                        vu_put16(c->cfg, c->pm_off + VU_PM_CSR, pm);
                }
                if ((pm & VU_PM_CSR_STATE_MASK) != (old_pm & VU_PM_CSR_STATE_MASK))
                        ev |= VU_CFG_EV_PM;
        }
        if (c->msix_off && vu_cfg_get16(c, c->msix_off + VU_MSIX_CTRL) != old_msix)
                ev |= VU_CFG_EV_MSIX;
        if (c->msi_off) {
                uint16_t ctrl = vu_cfg_get16(c, c->msi_off + VU_MSI_CTRL);
                unsigned mmc = (ctrl >> VU_MSI_CTRL_MMC_SHIFT) & 7, mme = (ctrl & VU_MSI_CTRL_MME_MASK) >> VU_MSI_CTRL_MME_SHIFT;

                /* More messages than capable is undefined (§7.7.1.2): grant what the function has. */
                if (mme > mmc) {
                        ctrl = (uint16_t) ((ctrl & ~VU_MSI_CTRL_MME_MASK) | mmc << VU_MSI_CTRL_MME_SHIFT);
                        vu_put16(c->cfg, c->msi_off + VU_MSI_CTRL, ctrl);
                }
                if (ctrl != old_msi || vu_cfg_get32(c, c->msi_off + VU_MSI_MASK) != old_msi_mask)
                        ev |= VU_CFG_EV_MSI;
        }
        if (flr)
                ev |= VU_CFG_EV_FLR;
        if (events)
                *events = ev;
        return 0;
}

uint8_t *vu_pci_cfg_raw(VuPciCfg *c) {
        return c->cfg;
}

uint16_t vu_pci_cfg_command(const VuPciCfg *c) {
        return vu_cfg_get16(c, VU_CFG_COMMAND);
}

bool vu_pci_cfg_bus_master(const VuPciCfg *c) {
        return vu_pci_cfg_command(c) & VU_CMD_BUS_MASTER;
}

bool vu_pci_cfg_msix_enabled(const VuPciCfg *c) {
        return c->msix_off && (vu_cfg_get16(c, c->msix_off + VU_MSIX_CTRL) & VU_MSIX_CTRL_ENABLE);
}

bool vu_pci_cfg_msix_masked(const VuPciCfg *c) {
        return c->msix_off && (vu_cfg_get16(c, c->msix_off + VU_MSIX_CTRL) & VU_MSIX_CTRL_MASKALL);
}

unsigned vu_pci_cfg_msix_nvec(const VuPciCfg *c) {
        return c->msix_off ? c->msix_nvec : 0;
}

bool vu_pci_cfg_msi_enabled(const VuPciCfg *c) {
        return c->msi_off && (vu_cfg_get16(c, c->msi_off + VU_MSI_CTRL) & VU_MSI_CTRL_ENABLE);
}

unsigned vu_pci_cfg_msi_nvec(const VuPciCfg *c) {
        return c->msi_off ? c->msi_nvec : 0;
}

unsigned vu_pci_cfg_msi_nalloc(const VuPciCfg *c) {
        if (!c->msi_off)
                return 0;
        return 1u << ((vu_cfg_get16(c, c->msi_off + VU_MSI_CTRL) & VU_MSI_CTRL_MME_MASK) >> VU_MSI_CTRL_MME_SHIFT);
}

uint32_t vu_pci_cfg_msi_mask(const VuPciCfg *c) {
        return c->msi_off ? vu_cfg_get32(c, c->msi_off + VU_MSI_MASK) : 0;
}

void vu_pci_cfg_msi_set_pending(VuPciCfg *c, uint32_t bits) {
        if (c->msi_off)
                vu_put32(c->cfg, c->msi_off + VU_MSI_PENDING, bits);
}

int vu_pci_cfg_msix_layout(const VuPciCfg *c, unsigned *table_bar, uint32_t *table_off,
                           unsigned *pba_bar, uint32_t *pba_off) {
        if (!c->msix_off)
                return -ENOENT;
        if (table_bar)
                *table_bar = c->msix_table_bar;
        if (table_off)
                *table_off = c->msix_table_off;
        if (pba_bar)
                *pba_bar = c->msix_pba_bar;
        if (pba_off)
                *pba_off = c->msix_pba_off;
        return 0;
}

void vu_pci_cfg_reset(VuPciCfg *c) {
        uint8_t bars[6 * 4];

        memcpy(bars, c->cfg + VU_CFG_BAR0, sizeof(bars));
        memcpy(c->cfg, c->init, sizeof(c->cfg));
        memcpy(c->cfg + VU_CFG_BAR0, bars, sizeof(bars));
}
