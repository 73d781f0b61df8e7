/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The config-space model's private layout, shared by pci-cfg.c (header,
 * accesses, reset) and caps.c (capability builders).  Not installed.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "pci-cfg.h"

/* PCI Local Bus 3.0 §6.1 / PCIe Base 6.0 §7.5.1 type-0 header offsets. */
#define VU_CFG_VENDOR_ID        0x00
#define VU_CFG_DEVICE_ID        0x02
#define VU_CFG_COMMAND          0x04
#define VU_CFG_STATUS           0x06
#define VU_CFG_REVISION         0x08
#define VU_CFG_CLASS_PROG       0x09
#define VU_CFG_CACHE_LINE       0x0c
#define VU_CFG_HEADER_TYPE      0x0e
#define VU_CFG_BAR0             0x10
#define VU_CFG_SUBSYS_VENDOR    0x2c
#define VU_CFG_SUBSYS_ID        0x2e
#define VU_CFG_ROM              0x30
#define VU_CFG_CAP_PTR          0x34
#define VU_CFG_INT_LINE         0x3c
#define VU_CFG_INT_PIN          0x3d
#define VU_CFG_CAP_START        0x40
#define VU_CFG_STD_END          0x100

#define VU_CMD_IO               0x0001
#define VU_CMD_MEM              0x0002
#define VU_CMD_BUS_MASTER       0x0004
#define VU_CMD_PARITY           0x0040
#define VU_CMD_SERR             0x0100
#define VU_CMD_INTX_DISABLE     0x0400

#define VU_STATUS_CAP_LIST      0x0010
#define VU_STATUS_W1C           0xf900

/* Capability IDs (PCI Code and ID Assignment §2). */
#define VU_CAP_ID_PM            0x01
#define VU_CAP_ID_MSI           0x05
#define VU_CAP_ID_VENDOR        0x09
#define VU_CAP_ID_PCIE          0x10
#define VU_CAP_ID_MSIX          0x11

/* PM capability (PCI PM 1.2 §3.2). */
#define VU_PM_SIZEOF            8
#define VU_PM_PMC               2
#define VU_PM_CSR               4
#define VU_PM_CSR_STATE_MASK    0x0003
#define VU_PM_CSR_NO_SOFT_RESET 0x0008

/* PCIe capability (PCIe Base 6.0 §7.5.3), v2 layout. */
#define VU_PCIE_SIZEOF          0x3c
#define VU_PCIE_FLAGS           0x02
#define VU_PCIE_DEVCAP          0x04
#define VU_PCIE_DEVCTL          0x08
#define VU_PCIE_DEVSTA          0x0a
#define VU_PCIE_LNKCAP          0x0c
#define VU_PCIE_LNKCTL          0x10
#define VU_PCIE_LNKSTA          0x12
#define VU_PCIE_DEVCAP2         0x24
#define VU_PCIE_DEVCTL2         0x28
#define VU_PCIE_LNKCAP2         0x2c
#define VU_PCIE_LNKCTL2         0x30
#define VU_PCIE_DEVCAP_RBER     (1u << 15)
#define VU_PCIE_DEVCAP_FLR      (1u << 28)
#define VU_PCIE_DEVCTL_FLR      0x8000
#define VU_PCIE_DEVCTL_WMASK    0x78ff  /* error enables, relaxed ordering, MPS, no snoop, MRRS */

/* MSI-X capability (PCIe Base 6.0 §7.7.2). */
#define VU_MSIX_SIZEOF          12
#define VU_MSIX_CTRL            2
#define VU_MSIX_TABLE           4
#define VU_MSIX_PBA             8
#define VU_MSIX_CTRL_QSIZE      0x07ff
#define VU_MSIX_CTRL_MASKALL    0x4000
#define VU_MSIX_CTRL_ENABLE     0x8000
#define VU_MSIX_MAX_VECTORS     2048

/* MSI capability (PCIe Base 6.0 §7.7.1), 64-bit with per-vector masking. */
#define VU_MSI_SIZEOF           0x18
#define VU_MSI_CTRL             2
#define VU_MSI_ADDR_LO          4
#define VU_MSI_ADDR_HI          8
#define VU_MSI_DATA             0x0c
#define VU_MSI_MASK             0x10
#define VU_MSI_PENDING          0x14
#define VU_MSI_CTRL_ENABLE      0x0001
#define VU_MSI_CTRL_MMC_SHIFT   1       /* Multiple Message Capable, log2, RO */
#define VU_MSI_CTRL_MME_SHIFT   4       /* Multiple Message Enable, log2, RW */
#define VU_MSI_CTRL_MME_MASK    0x0070
#define VU_MSI_CTRL_64BIT       0x0080
#define VU_MSI_CTRL_PVM         0x0100  /* per-vector masking capable */
#define VU_MSI_MAX_VECTORS      32

#define VU_BAR_TYPE_NONE        0xffffffffu
#define VU_BAR_TYPE_UPPER       0xfffffffeu

struct VuPciCfg {
        uint8_t cfg[VU_PCI_CFG_SIZE];
        uint8_t wmask[VU_PCI_CFG_SIZE];         /* bits software may write */
        uint8_t w1cmask[VU_PCI_CFG_SIZE];       /* bits cleared by writing 1 */
        uint8_t init[VU_PCI_CFG_SIZE];          /* power-on values */
        uint64_t bar_size[6];
        uint32_t bar_type[6];                   /* VU_BAR_* bits, NONE or UPPER */
        unsigned next_cap;                      /* where the next capability goes */
        unsigned last_cap;                      /* 0: none yet */
        unsigned pm_off, pcie_off, msix_off, msi_off;
        unsigned n_vendor;
        struct { uint16_t off, len; } vendor[16];       /* vendor capability spans */
        bool flr;
        unsigned msix_nvec, msi_nvec;
        unsigned msix_table_bar, msix_pba_bar;
        uint32_t msix_table_off, msix_pba_off;
};

static inline uint16_t vu_cfg_get16(const VuPciCfg *c, unsigned off) {
        return (uint16_t) (c->cfg[off] | (c->cfg[off + 1] << 8));
}

static inline uint32_t vu_cfg_get32(const VuPciCfg *c, unsigned off) {
        return (uint32_t) c->cfg[off] | ((uint32_t) c->cfg[off + 1] << 8) |
               ((uint32_t) c->cfg[off + 2] << 16) | ((uint32_t) c->cfg[off + 3] << 24);
}

static inline void vu_put16(uint8_t *p, unsigned off, uint16_t v) {
        p[off] = (uint8_t) v;
        p[off + 1] = (uint8_t) (v >> 8);
}

static inline void vu_put32(uint8_t *p, unsigned off, uint32_t v) {
        for (unsigned i = 0; i < 4; i++)
                p[off + i] = (uint8_t) (v >> (8 * i));
}

/* Reserve len bytes for a capability with the given ID and chain it.  Offset or -errno. */
int vu_cfg_cap_alloc(VuPciCfg *c, uint8_t id, unsigned len);
