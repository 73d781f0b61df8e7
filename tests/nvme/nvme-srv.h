/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An NVMe controller behind our vfio-user server on a real UNIX socket,
 * dispatched by its own thread (the worker's event loop, in miniature), and
 * our client connected to it as the VMM, with guest RAM in a memfd.
 */
#pragma once

#include <pthread.h>

#include "nvme-drv.h"
#include "srv-thread.h"
#include "nvme/nvme-pci.h"
#include "nvme/nvme.h"
#include "vfio-user/client.h"

typedef struct NvmeSrv {
        NvmeCtrl *c;
        VuServer *s;
        SrvThread thread;
        char *sock;
} NvmeSrv;

/* Controller from cfg, server listening on sock, dispatch thread running.  0 or -errno. */
int nvme_srv_start(NvmeSrv *srv, const NvmeCtrlConfig *cfg, const char *sock);
void nvme_srv_stop(NvmeSrv *srv);

typedef struct NvmeVmm {
        VuClient *c;
        VuGuestRam ram;
        int irq_fds[128];
        unsigned nvec;
        NvmeDrv d;
} NvmeVmm;

/*
 * Connect, negotiate, map RAM, check the PCI identity, enable memory and bus
 * mastering and MSI-X (MSI with nvec messages when the controller has no
 * MSI-X), and set up the driver over BAR0.  0 or -errno.
 */
int nvme_vmm_connect(NvmeVmm *v, const char *sock, uint64_t ram_gpa, uint64_t ram_size, unsigned nvec);
void nvme_vmm_disconnect(NvmeVmm *v);
