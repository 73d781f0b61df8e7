/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The server's private state, shared by server.c (connection, framing,
 * dispatch table) and the handlers-*.c files (one per command family).
 * Not installed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration.h"
#include "msix.h"
#include "server.h"
#include "transport.h"

/* One received message: header, body (hdr.size - 16 bytes) and its fds. */
typedef struct VuMsg {
        struct vu_hdr hdr;
        uint8_t *body;
        size_t len;
        int fds[VU_MAX_MSG_FDS];        /* a handler that keeps one sets it to -1 */
        unsigned n_fds;
        bool fds_truncated;             /* more fds than allowed, or control data cut */
} VuMsg;

/* A reply being built: payload in the server's tx buffer, fds borrowed (not closed). */
typedef struct VuReply {
        size_t len;
        int fds[1];
        unsigned n_fds;
} VuReply;

typedef int (*VuHandler)(VuServer *s, VuMsg *m, VuReply *r);

typedef struct VuMigState {
        enum vu_mig_state state;
        uint64_t pgsize;                /* client's migration.pgsize (dirty logging default) */
        VuMigInfo info;                 /* since the client connected (vu_server_mig_info) */
} VuMigState;

struct VuServer {
        char *name;
        VuPciCfg *cfg;
        VuRegion bars[6];               /* mmap_fd dup'ed by us */
        uint64_t bar_size[6];
        const VuDeviceOps *ops;
        void *opaque;
        VuDma *dma;
        VuMem mem;
        VuMsix msix;
        VuMsix msi;                             /* MSI vectors (nvec 0: MSI-X or none) */
        unsigned msix_table_bar, msix_pba_bar;
        uint32_t msix_table_off, msix_pba_off;
        unsigned max_dma_maps;

        int listen_fd;
        char *listen_path;              /* unlinked at free when we created it */
        int epoll_fd;                   /* the stable fd vu_server_fd() returns */

        /* the attached client */
        bool connected;
        const VuTransportOps *tr;
        void *tr_opaque;
        int conn_fd;                    /* -1 for non-socket transports */
        bool negotiated;
        uint32_t client_max_fds;
        uint32_t client_max_xfer;

        /* receive state of the message being assembled */
        struct {
                struct vu_hdr hdr;
                size_t got;
                VuMsg msg;
                size_t body_cap;
        } rx;
        uint8_t *tx;
        size_t tx_cap;

        VuMigState mig;
        VuServerStats stats;
};

/* Reply payload helpers: append len zeroed bytes, return where they start. */
void *vu_reply_append(VuServer *s, VuReply *r, size_t len);
static inline uint8_t *vu_reply_data(VuServer *s) {
        return s->tx;
}

/* Quiesce bracket for map/unmap/reset. */
void vu_server_quiesce(VuServer *s);
void vu_server_resume(VuServer *s);
/* Reset the device (kind), config space, MSI-X and migration state; quiesces itself. */
void vu_server_reset_device(VuServer *s, VuResetKind kind);

/* Region access after bounds checks (handlers-region.c). */
int vu_server_region_access(VuServer *s, unsigned idx, uint64_t off, void *buf, size_t len, bool write);
uint64_t vu_server_region_size(const VuServer *s, unsigned idx);

/* Migration gating (handlers-mig.c): may cmd run in the current migration state? */
bool vu_mig_cmd_allowed(const VuServer *s, unsigned cmd);
void vu_mig_reset(VuServer *s);

/* Handlers, one per command. */
int vu_handle_version(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_dma_map(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_dma_unmap(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_device_get_info(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_get_region_info(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_get_region_io_fds(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_get_irq_info(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_set_irqs(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_region_read(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_region_write(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_device_reset(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_region_write_multi(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_device_feature(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_mig_data_read(VuServer *s, VuMsg *m, VuReply *r);
int vu_handle_mig_data_write(VuServer *s, VuMsg *m, VuReply *r);

/* Safe arithmetic: a + b, saturating at UINT64_MAX. */
static inline uint64_t vu_sat_add(uint64_t a, uint64_t b) {
        return a + b < a ? UINT64_MAX : a + b;
}
