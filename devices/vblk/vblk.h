/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk device model (virtio-v1.2 5.2) on the virtio PCI transport:
 * up to VBLK_MAX_QUEUES request queues served by one I/O thread, requests
 * turned into block backend requests whose completions the thread reaps.
 *
 * A pure device model: no JSON, no D-Bus, no main loop.  The daemon's worker
 * builds it from options and a BlkBackend, hands its VuServerConfig to the
 * vfio-user server, and attaches guest memory and the interrupt sink.
 *
 * Durability (5.2.6.1): writes complete into the backend's volatile cache
 * while the write cache is on (FLUSH negotiated, and writeback set when
 * CONFIG_WCE is); FLUSH is fdatasync.  With the cache off every write is
 * made durable before it completes.
 *
 * Return convention: 0 or negative errno.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "block/blk.h"
#include "block/lat-hist.h"
#include "virtio/virtio-pci.h"

#define VBLK_MAX_QUEUES 64u
#define VBLK_DEFAULT_QUEUE_SIZE 256u
#define VBLK_MAX_POLL_US 10000u

typedef struct VBlk VBlk;

typedef struct VBlkOptions {
        unsigned queues;                /* 1..VBLK_MAX_QUEUES; > 1 offers MQ */
        uint16_t queue_size;            /* 0: 256; split rings need a power of two */
        uint32_t block_size;            /* logical block size: 512 or 4096 (0: 512) */
        bool read_only;                 /* offer RO; writes fail (also when the backend is) */
        bool packed;                    /* offer VIRTIO_F_RING_PACKED */
        /*
         * After the last request the I/O thread keeps looking at the rings
         * (notifications off, so the driver does not kick) for this many
         * microseconds before it sleeps: a busy queue causes no exits, an idle
         * device sleeps.  0: sleep at once.  At most VBLK_MAX_POLL_US.
         */
        unsigned poll_us;
        const char *serial;             /* GET_ID, ≤ 20 bytes; NULL: offered empty */
        const char *name;               /* for logs */
        /* Identity in migration streams (copied; NULL: none), as VNetOptions.migration_id. */
        const char *migration_id;
} VBlkOptions;

typedef struct VBlkStats {
        uint64_t read_reqs, read_bytes;
        uint64_t write_reqs, write_bytes;
        uint64_t flush_reqs, discard_reqs, write_zeroes_reqs, get_id_reqs;
        uint64_t io_errors;             /* requests answered IOERR */
        uint64_t unsupported;           /* requests answered UNSUPP */
        uint64_t bad_chains;            /* malformed chains (device needs reset) */
        uint64_t inflight;
        LatStatsSnapshot lat;           /* read, write, flush, other (discard, write zeroes) */
} VBlkStats;

/* Takes ownership of be (its size is the capacity, rounded down to the block size). */
int vblk_new(const VBlkOptions *opt, BlkBackend *be, VBlk **out);
void vblk_free(VBlk *b);

int vblk_server_config(VBlk *b, VuServerConfig *scfg);
void vblk_attach(VBlk *b, const VuMem *mem, const VirtioIrqOps *irq, void *irq_opaque);
VirtioPci *vblk_virtio(VBlk *b);

/*
 * Grow the disk (the backend's resize: 0 re-reads the backing size) and tell
 * the driver with a configuration change interrupt (5.2.4).  Control thread.
 * 0, -EINVAL (smaller, or not a multiple of the block size), or the backend's errno.
 */
int vblk_resize(VBlk *b, uint64_t new_size);
uint64_t vblk_capacity_bytes(const VBlk *b);
/* Is the guest's write cache on (writes complete before they are durable)? */
bool vblk_write_cache(const VBlk *b);

void vblk_get_stats(const VBlk *b, VBlkStats *st);
uint64_t vblk_offered_features(const VBlk *b);

#define VBLK_STATE_TYPE "virtio-blk"
const char *vblk_migration_error(const VBlk *b);
