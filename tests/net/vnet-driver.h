/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small virtio-net driver for tests and benchmarks: it probes the device
 * the way Linux's virtio_pci + virtio_net do (reset, ACKNOWLEDGE, DRIVER,
 * features, FEATURES_OK re-read, per-queue setup with the MSI-X vector read
 * back, queue_enable last, DRIVER_OK), then moves frames over split or packed
 * rings in guest RAM it shares with the device.  Register accesses and
 * interrupt waits go through VdOps: direct calls in unit tests, a vfio-user
 * client in protocol tests.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/vnet-proto.h"
#include "virtio/virtio.h"

typedef struct VdOps {
        int (*read)(void *opaque, uint64_t off, void *buf, size_t len);
        int (*write)(void *opaque, uint64_t off, const void *buf, size_t len);
        /* 1 fired, 0 timeout. */
        int (*wait_irq)(void *opaque, unsigned vector, int timeout_ms);
} VdOps;

typedef struct VdRam {
        uint8_t *host;
        uint64_t gpa;
        uint64_t size;
        uint64_t next;
} VdRam;

#define VD_MAX_QUEUES 17
#define VD_BUF_LEN 2048u

typedef struct VdQueue {
        unsigned index;
        uint16_t size;
        uint16_t vector;
        bool packed;
        bool ready;
        uint64_t desc_gpa, drv_gpa, dev_gpa;
        void *desc, *drv, *dev;
        uint16_t avail_idx;             /* split: free-running; packed: next slot */
        bool avail_wrap;
        uint16_t last_used;             /* split: free-running; packed: next slot */
        bool used_wrap;
        uint16_t free_ids[1024];
        unsigned n_free;
        uint16_t id_slots[1024];        /* packed: ring slots each id's chain took */
        uint64_t buf_gpa;               /* id i owns vd_buf_len() bytes at buf_gpa + i * vd_buf_len() */
        uint64_t extra_gpa;             /* per id: a 64-byte area for indirect tables, headers, acks */
        uint64_t kicks;
} VdQueue;

typedef struct Vd {
        const VdOps *ops;
        void *opaque;
        VdRam ram;
        uint64_t features;
        unsigned pairs;                 /* queue pairs set up */
        unsigned nq;                    /* queues set up (with the control queue) */
        int ctrl;                       /* control queue index, or -1 */
        VdQueue q[VD_MAX_QUEUES];
        bool indirect_tx;               /* send header and frame through an indirect table */
        bool split_tx;                  /* header and frame in two descriptors */
        bool hold_tx_kick;              /* vd_send queues without notifying: the caller kicks */
        /*
         * Receive as Linux's virtio_net NAPI poll does: interrupts off while
         * the used ring has frames, buffers refilled in batches, the interrupt
         * enabled (used_event / NO_INTERRUPT) with a re-check only before
         * sleeping.  Off: every wait polls the ring with a bounded sleep and
         * never asks for an interrupt, and each frame's buffer is reposted.
         */
        bool napi_rx;
        /*
         * Buffer bytes per descriptor id, set before vd_probe (0: VD_BUF_LEN):
         * the largest frame vd_send takes; rx_len (0: all of them) is what
         * each posted receive buffer offers the device.
         */
        uint32_t buf_len, rx_len;
} Vd;

static inline uint32_t vd_buf_len(const Vd *d) {
        return d->buf_len ? d->buf_len : VD_BUF_LEN;
}

void vd_init(Vd *d, const VdOps *ops, void *opaque, uint8_t *host, uint64_t gpa, uint64_t size);

uint8_t vd_status(Vd *d);
uint64_t vd_device_features(Vd *d);
int vd_cfg_read(Vd *d, uint32_t off, void *buf, size_t len);

/*
 * The probe sequence; want is intersected with the device's features.
 * pairs: how many pairs to set up (the control queue too when negotiated).
 * 0, -ENODEV (FEATURES_OK refused), -EIO (NEEDS_RESET after DRIVER_OK), -EBUSY (vector refused).
 */
int vd_probe(Vd *d, uint64_t want, unsigned pairs, uint16_t qsize);
int vd_reset(Vd *d);
/*
 * The same probe for a device with nq plain queues (virtio-blk: request
 * queues 0..nq-1, no control queue); the caller read num_queues first.
 */
int vd_probe_queues(Vd *d, uint64_t want, unsigned nq, uint16_t qsize);
/* Guest RAM for the caller's own buffers (zeroed); 0 when full. */
uint64_t vd_alloc(Vd *d, uint64_t len, uint64_t align);
void *vd_ptr(Vd *d, uint64_t gpa);

/* Queue a frame (12-byte header + frame) on transmit queue of pair; 0 or -ENOSPC. */
int vd_send(Vd *d, unsigned pair, const VNetHdr *hdr, const void *frame, size_t len);
/* Reclaim finished transmit buffers; returns how many. */
int vd_tx_reclaim(Vd *d, unsigned pair);
/* Post every free receive buffer of pair (rx_len bytes each). */
int vd_rx_post(Vd *d, unsigned pair);
/*
 * Receive one frame: header into *hdr, frame into buf.  Frame length,
 * -ETIMEDOUT, or -EMSGSIZE.  Reposts the buffers it used (in batches with
 * napi_rx).
 */
ssize_t vd_recv(Vd *d, unsigned pair, VNetHdr *hdr, void *buf, size_t cap, int timeout_ms);
/* A control command; returns the ack byte (VIRTIO_NET_OK/ERR) or -errno. */
int vd_ctrl(Vd *d, uint8_t cls, uint8_t cmd, const void *data, size_t len, int timeout_ms);

/* Low level, for hostile tests. */
int vd_add_chain(Vd *d, unsigned q, const uint64_t *gpa, const uint32_t *len, const bool *write,
                 unsigned n, bool indirect);
int vd_get_used(Vd *d, unsigned q, uint16_t *id, uint32_t *len);
void vd_kick(Vd *d, unsigned q);
/*
 * Kick only when the device asked for it since the avail index was old
 * (2.7.10 avail_event, 2.7.7 NO_NOTIFY), as virtqueue_kick_prepare does;
 * packed rings: always.
 */
void vd_kick_if_wanted(Vd *d, unsigned q, uint16_t old);
int vd_wait_used(Vd *d, unsigned q, uint16_t *id, uint32_t *len, int timeout_ms);
/* Ask for an interrupt at the next used element (virtqueue_enable_cb); re-check the ring after it. */
void vd_irq_enable(Vd *d, unsigned q);
