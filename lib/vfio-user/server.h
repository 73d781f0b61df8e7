/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A vfio-user server for one PCI device, on one UNIX socket, one client at a
 * time.  The caller owns the event loop: it polls vu_server_fd() for input and
 * calls vu_server_dispatch(); messages are handled strictly in order.
 *
 * Return convention: 0 (or a count) on success, negative errno on failure.
 * The library logs at debug level only (g_debug, domain "vu").
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dma.h"
#include "pci-cfg.h"
#include "proto.h"

typedef struct VuServer VuServer;

/*
 * Trapped region accesses.  len is 1..VU_MAX_DATA_XFER; offset+len is
 * within the region.  Accesses to the MSI-X table/PBA and to mappable areas
 * never reach these: the server serves the former and reads/writes the
 * area's memfd for the latter, so message and mmap accesses agree.
 * Return 0 or -errno (the client gets that errno).
 */
typedef struct VuRegionOps {
        int (*read)(void *opaque, uint64_t offset, void *buf, size_t len);
        int (*write)(void *opaque, uint64_t offset, const void *buf, size_t len);
} VuRegionOps;

typedef struct VuMmapArea {
        uint64_t offset;        /* page-aligned, relative to the region */
        uint64_t size;          /* page-aligned */
} VuMmapArea;

#define VU_MAX_MMAP_AREAS 4

/* A BAR region.  Region sizes come from the config model's BAR sizes. */
typedef struct VuRegion {
        const VuRegionOps *ops;         /* NULL: reads as zero, writes ignored */
        void *opaque;
        int mmap_fd;                    /* dedicated memfd backing the mmap areas, or -1; the
                                         * server dups it.  Area bytes sit at the same offsets
                                         * in the memfd as in the BAR. */
        unsigned n_areas;
        VuMmapArea areas[VU_MAX_MMAP_AREAS];
} VuRegion;

typedef enum VuResetKind {
        VU_RESET_DEVICE,        /* DEVICE_RESET */
        VU_RESET_FLR,           /* PCIe function-level reset */
        VU_RESET_LOST_CONN,     /* client went away */
        _VU_RESET_KIND_MAX,
} VuResetKind;

const char *vu_reset_kind_to_string(VuResetKind k);

typedef struct VuMigrationOps VuMigrationOps;   /* see migration.h */

typedef struct VuDeviceOps {
        /*
         * Stop touching guest memory and return only when no data-path
         * thread holds a translation.  Called on the control thread before
         * DMA map/unmap, reset, dirty-logging start/stop and migration
         * state changes; resume() follows when the change is done.
         * Required (both).  resume() only undoes quiesce(): a device the
         * migration state machine stopped keeps its data path idle itself.
         */
        void (*quiesce)(void *opaque);
        void (*resume)(void *opaque);
        /* Called quiesced.  Return the device to power-on state. */
        void (*reset)(void *opaque, VuResetKind kind);
        /*
         * Config write side effects (VuCfgEvent bits); optional.  FLR is
         * handled by the server (reset(VU_RESET_FLR)) and not passed here.
         */
        void (*cfg_event)(void *opaque, unsigned events);
        /* A client connected / went away (after LOST_CONN reset); optional. */
        void (*attach)(void *opaque);
        void (*detach)(void *opaque);
        const VuMigrationOps *migration;        /* NULL: no DEVICE_FEATURE migration */
} VuDeviceOps;

typedef struct VuServerConfig {
        VuPciCfg *cfg;                          /* owned by the server after vu_server_new() */
        VuRegion bars[6];
        unsigned msix_bar;                      /* BAR holding the MSI-X table+PBA (the server implements it) */
        unsigned msix_nvec;                     /* ≥ 1, or 0 with msi_nvec */
        unsigned msi_nvec;                      /* MSI instead of MSI-X: 1, 2, 4, .., 32 vectors */
        const VuDeviceOps *ops;
        void *opaque;
        unsigned max_dma_maps;                  /* 0: as many as the host allows (vu_dma_host_limit) */
        const char *name;                       /* for logs */
} VuServerConfig;

/*
 * Create a server for the device described by cfg.  On success the server
 * owns cfg->cfg; on failure it stays the caller's.  When cfg->cfg has no
 * MSI-X capability and msix_nvec ≥ 1, one is added with the table at offset
 * 0 of msix_bar and the PBA right after it; with msi_nvec (and msix_nvec
 * 0) an MSI capability is added instead.  Mappable areas must be
 * page-aligned, inside the BAR and the memfd, and off the MSI-X pages.
 * Returns 0 or -EINVAL (bad definition), -errno.
 */
int vu_server_new(const VuServerConfig *cfg, VuServer **out);
/*
 * Drop the client (quiescing the device: free the server before the device
 * model), close the sockets and release everything.
 */
void vu_server_free(VuServer *s);

/*
 * Listen on a new socket at path (unlinking a stale socket there; -EEXIST if
 * something else is), or adopt a bound listening fd (taken over).  The path
 * is unlinked again by vu_server_free().  0 or -errno.
 */
int vu_server_listen(VuServer *s, const char *path);
int vu_server_adopt_listener(VuServer *s, int fd);
/*
 * Attach an already connected AF_UNIX stream socket as the client (taken
 * over): socket activation, socketpair tests.  0, -EBUSY if one is attached.
 */
int vu_server_attach_fd(VuServer *s, int fd);

/*
 * The fd to poll for input (POLLIN).  It is an epoll fd over the listener
 * and the connection, so it stays the same across connects and
 * disconnects: register it once.
 */
int vu_server_fd(const VuServer *s);
bool vu_server_connected(const VuServer *s);

/*
 * Accept a client, or handle every complete message available.  Returns 0,
 * or -ENOTCONN when the client went away or sent something that made the
 * stream untrustworthy (it has then been cleaned up: maps, fds and eventfds
 * dropped, device reset with VU_RESET_LOST_CONN, listening again).
 */
int vu_server_dispatch(VuServer *s);

/*
 * Drop the current client, as if it had disconnected.  Like every call here
 * except vu_server_irq*() and vu_server_mem() translations, control thread
 * only.
 */
void vu_server_disconnect(VuServer *s);

/* Guest memory for the device (valid for the server's lifetime). */
const VuMem *vu_server_mem(VuServer *s);
VuDma *vu_server_dma(VuServer *s);
VuPciCfg *vu_server_cfg(VuServer *s);

/*
 * Fire MSI-X vector n (MSI vector n on an MSI device).  Thread-safe,
 * callable from data-path threads.  When the vector has no eventfd, is
 * masked (entry, function or MSI Mask Bit) or MSI(-X) is disabled, its
 * PBA (Pending) bit is set and it fires on unmask / assign.
 * Returns 0, or -EINVAL for n ≥ nvec.
 */
int vu_server_irq(VuServer *s, unsigned vector);
/* Signal the ERR (AER) eventfd, if the client set one.  Thread-safe. */
void vu_server_irq_err(VuServer *s);
/* Signal the REQ eventfd (ask the guest to release the device), if set.  Thread-safe. */
void vu_server_irq_req(VuServer *s);

/* Statistics (messages handled, errors replied, bytes). */
typedef struct VuServerStats {
        uint64_t messages;
        uint64_t errors;
        uint64_t irqs;
        uint64_t connects;
} VuServerStats;
void vu_server_get_stats(const VuServer *s, VuServerStats *st);

/*
 * What the client has done with migration v2 since it connected; after it
 * left, what it had done (cleared when the next client connects), so a
 * manager sees how a hand-over ended: whether the client can migrate the
 * device, whether the state was saved here or loaded here, or failed.
 */
typedef struct VuMigInfo {
        enum vu_mig_state state;        /* the device's migration state now */
        bool client_uses;               /* the client asked for MIGRATION or MIG_DEVICE_STATE */
        bool saved;                     /* the device reached STOP_COPY */
        bool resumed;                   /* the device left RESUMING successfully (state loaded) */
        bool failed;                    /* a migration arc failed (ERROR) or the device refused stream data */
        uint64_t bytes_read;            /* MIG_DATA_READ payload handed out */
        uint64_t bytes_written;         /* MIG_DATA_WRITE payload accepted */
} VuMigInfo;
void vu_server_mig_info(const VuServer *s, VuMigInfo *info);
