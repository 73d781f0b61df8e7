/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The NVMe controller as a vfio-user PCI function: identity (class
 * 01h/08h/02h, vfu's own vendor/device IDs), BAR0 registers + trapped
 * doorbells, MSI-X table and PBA in BAR4 (implemented by the server) or
 * MSI with per-vector masking (cfg.msi, no BAR4), PM, PCIe with FLR.
 */
#pragma once

#include "nvme/nvme.h"
#include "vfio-user/server.h"

#define NVME_PCI_MSIX_BAR 4u

/*
 * Fill scfg (PCI config space, BARs, device ops) for controller c.  The
 * config space is newly allocated and owned by scfg (the server takes it).
 * Returns 0 or -errno.
 */
int nvme_pci_config(NvmeCtrl *c, VuServerConfig *scfg);

/* The server exists: route guest memory and interrupts through it; DMA follows its Bus Master Enable. */
void nvme_pci_start(NvmeCtrl *c, VuServer *server);
