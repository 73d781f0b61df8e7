/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small virtio-blk driver for tests, on the virtio test driver (Vd):
 * the probe Linux's virtio_blk does (num_queues read when MQ is offered,
 * request queues set up, DRIVER_OK), then requests laid out as Linux lays
 * them out: the 16-byte header in its own device-readable descriptor, the
 * data, the status byte in its own device-writable descriptor; or all
 * three through an indirect table.  Requests are asynchronous (submit,
 * kick, complete) so tests can keep many in flight across queues.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "vblk/vblk-proto.h"
#include "vnet-driver.h"

#define VB_MAX_INFLIGHT 1024u

typedef struct VbSlot {
        uint64_t gpa;                   /* header at +0, status at +16, discard segments at +32 */
        bool busy;
        void *user;
} VbSlot;

typedef struct VbDrv {
        Vd *d;
        unsigned nq;
        VbSlot *slots[VD_MAX_QUEUES];   /* 2 * queue size per queue */
        unsigned nslots[VD_MAX_QUEUES];
        int16_t by_id[VD_MAX_QUEUES][VB_MAX_INFLIGHT];
        bool indirect;                  /* put requests in indirect tables */
        bool unkicked[VD_MAX_QUEUES];   /* requests added since the last kick */
        uint16_t kick_from[VD_MAX_QUEUES];      /* the avail index at the first of them */
} VbDrv;

#define VB_SLOT_SIZE 64u
#define VB_MAX_DWZ 2u                   /* segments one slot carries */

/*
 * Probe: nq request queues (0: as many as the device offers, up to VD_MAX_QUEUES).
 * 0 or -errno as vd_probe_queues().  v must be zeroed or probed before.
 */
int vb_probe(VbDrv *v, Vd *d, uint64_t want, unsigned nq, uint16_t qsize);
void vb_fini(VbDrv *v);

/*
 * Queue a request without kicking: data at data_gpa, len bytes (0: none),
 * in the direction its type has; DISCARD/WRITE_ZEROES take nseg segments
 * (≤ VB_MAX_DWZ) instead.  Returns 0 or -ENOSPC.
 */
int vb_submit(VbDrv *v, unsigned q, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len,
              const VBlkDwzSeg *seg, unsigned nseg, void *user);
/* Kick queue q when the device asked for it (EVENT_IDX / NO_NOTIFY), as Linux's virtio_blk does. */
void vb_kick(VbDrv *v, unsigned q);
/* Wait for one completion: 1 with its status, used length and user pointer; -ETIMEDOUT, -EIO (needs reset). */
int vb_complete(VbDrv *v, unsigned q, uint8_t *status, uint32_t *used_len, void **user, int timeout_ms);
/* Submit, kick, wait: the status byte, or -errno. */
int vb_do(VbDrv *v, unsigned q, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len);
int vb_do_dwz(VbDrv *v, unsigned q, uint32_t type, const VBlkDwzSeg *seg, unsigned nseg);
