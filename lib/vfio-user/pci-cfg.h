/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PCI/PCIe configuration space model devices build on: a 4 KiB config space
 * with the standard type-0 header, a capability chain (PM, PCIe with FLR,
 * MSI or MSI-X, vendor-specific) and per-byte write masks, so a config write only
 * changes what the spec lets software change.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VU_PCI_CFG_SIZE 4096u

enum {
        VU_BAR_MEM32 = 0x0,
        VU_BAR_IO = 0x1,
        VU_BAR_MEM64 = 0x4,
        VU_BAR_PREFETCH = 0x8,
};

typedef struct VuPciCfg VuPciCfg;

typedef struct VuPciId {
        uint16_t vendor, device;
        uint16_t subsys_vendor, subsys;
        uint8_t revision;
        uint32_t class_code;    /* base << 16 | sub << 8 | prog-if */
} VuPciId;

/* What a config write changed, for the device to act on. */
typedef enum VuCfgEvent {
        VU_CFG_EV_COMMAND = 1 << 0,      /* command register (bus master, …) */
        VU_CFG_EV_FLR = 1 << 1,          /* PCIe DevCtl initiate FLR */
        VU_CFG_EV_MSIX = 1 << 2,         /* MSI-X enable / function mask */
        VU_CFG_EV_PM = 1 << 3,           /* PM state */
        VU_CFG_EV_VENDOR = 1 << 4,       /* a writable byte of a vendor capability */
        VU_CFG_EV_MSI = 1 << 5,          /* MSI enable, enabled vector count or mask bits */
} VuCfgEvent;

/* A type-0 header with these IDs, no BARs, no capabilities, interrupt pin 0.  Never NULL. */
VuPciCfg *vu_pci_cfg_new(const VuPciId *id);
void vu_pci_cfg_free(VuPciCfg *c);

/*
 * Define BAR idx: type is VU_BAR_MEM32 or VU_BAR_MEM64 (either optionally
 * | VU_BAR_PREFETCH) or VU_BAR_IO; size a power of two, 16 B..2 GiB for
 * MEM32, ≥ 16 B for MEM64 (≥ 4096 recommended), 4..256 B for I/O.  A
 * 64-bit BAR takes idx and idx+1.  Returns 0, -EINVAL, or -EBUSY (idx or
 * idx+1 is the upper half of another 64-bit BAR).
 */
int vu_pci_cfg_set_bar(VuPciCfg *c, unsigned idx, uint64_t size, uint32_t type);
uint64_t vu_pci_cfg_bar_size(const VuPciCfg *c, unsigned idx);   /* 0 for absent and for upper halves */

/*
 * Capabilities, appended to the chain in call order (4-byte aligned from
 * 0x40).  Return the capability's offset, or -EEXIST (PM/PCIe/MSI/MSI-X
 * twice, or MSI and MSI-X both), -EINVAL (bad arguments: MSI-X nvec
 * 1..2048, 8-byte aligned table/PBA offsets; MSI nvec 1, 2, 4, .., 32),
 * -ENOSPC (no room left below 0x100).
 */
int vu_pci_cfg_add_pm(VuPciCfg *c);
int vu_pci_cfg_add_pcie(VuPciCfg *c, bool flr);
int vu_pci_cfg_add_msix(VuPciCfg *c, unsigned nvec, unsigned table_bar, uint32_t table_off,
                        unsigned pba_bar, uint32_t pba_off);
/* MSI with nvec messages, 64-bit addresses and per-vector masking (Mask and Pending Bits). */
int vu_pci_cfg_add_msi(VuPciCfg *c, unsigned nvec);
/* A vendor capability (cap id 09h): body after the 2-byte header, len ≥ 1; writable bytes via wmask (may be NULL). */
int vu_pci_cfg_add_vendor(VuPciCfg *c, const void *body, size_t len, const uint8_t *wmask);

/* Config accesses from the client (len ≥ 1, off+len ≤ 4096).  Return 0 or -EINVAL (out of range). */
int vu_pci_cfg_read(VuPciCfg *c, uint32_t off, void *buf, size_t len);
/* Filtered write; *events (may be NULL) receives the VuCfgEvent bits it raised. */
int vu_pci_cfg_write(VuPciCfg *c, uint32_t off, const void *buf, size_t len, unsigned *events);

/* Direct access for the device model (no filtering). */
uint8_t *vu_pci_cfg_raw(VuPciCfg *c);
uint16_t vu_pci_cfg_command(const VuPciCfg *c);
bool vu_pci_cfg_bus_master(const VuPciCfg *c);
bool vu_pci_cfg_msix_enabled(const VuPciCfg *c);
bool vu_pci_cfg_msix_masked(const VuPciCfg *c);   /* function mask */
unsigned vu_pci_cfg_msix_nvec(const VuPciCfg *c);
bool vu_pci_cfg_msi_enabled(const VuPciCfg *c);
unsigned vu_pci_cfg_msi_nvec(const VuPciCfg *c);        /* Multiple Message Capable; 0 without MSI */
unsigned vu_pci_cfg_msi_nalloc(const VuPciCfg *c);      /* Multiple Message Enable: vectors the driver uses */
uint32_t vu_pci_cfg_msi_mask(const VuPciCfg *c);        /* Mask Bits */
/* The device's view of its pending messages into the read-only Pending Bits. */
void vu_pci_cfg_msi_set_pending(VuPciCfg *c, uint32_t bits);

/*
 * MSI-X table and PBA placement (BAR index and offset in that BAR).
 * Returns 0, or -ENOENT when there is no MSI-X capability.
 */
int vu_pci_cfg_msix_layout(const VuPciCfg *c, unsigned *table_bar, uint32_t *table_off,
                           unsigned *pba_bar, uint32_t *pba_off);
/* The BAR's VU_BAR_* type bits; -ENOENT for an absent BAR or the upper half of a 64-bit one. */
int vu_pci_cfg_bar_type(const VuPciCfg *c, unsigned idx);

/*
 * Make the current contents the power-on values vu_pci_cfg_reset() returns
 * to.  The builders above call it; vu_server_new() calls it too, so raw
 * edits made before the server exists survive resets.
 */
void vu_pci_cfg_save_defaults(VuPciCfg *c);

/* Return to power-on values (FLR, DEVICE_RESET), keeping BAR addresses. */
void vu_pci_cfg_reset(VuPciCfg *c);
