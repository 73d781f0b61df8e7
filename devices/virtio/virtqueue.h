/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A virtqueue as the device sees it: the configuration the driver wrote
 * through the common configuration structure, and the runtime state of the
 * data path (split, 2.7, or packed, 2.8, behind one ops table).
 *
 * Threading: the control thread writes the configuration part while the
 * device is not running; once vq_start() succeeded, only the data-path thread
 * that owns the queue touches the runtime part.
 *
 * Return convention: 0 / counts on success, negative errno on failure.  A
 * queue that saw malformed guest input is "broken": every later call fails
 * with -EIO until vq_stop(); the device model then sets NEEDS_RESET.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "vfio-user/mem.h"
#include "virtio/virtio.h"
#include "virtio/vq-walk.h"

typedef struct VirtQueue VirtQueue;
typedef struct VqRingOps VqRingOps;

/* Raise the queue's interrupt (called from the owning data-path thread). */
typedef void (*VqNotifyFn)(void *opaque, VirtQueue *vq);

typedef struct VqPending {
        uint16_t id;
        uint16_t ndesc;
        uint32_t len;
} VqPending;

struct VirtQueue {
        unsigned index;

        /* Driver-written configuration (4.1.4.3), control thread. */
        uint16_t max_size;
        uint16_t size;
        uint16_t msix_vector;
        bool enabled;
        uint64_t desc_gpa;
        uint64_t driver_gpa;
        uint64_t device_gpa;

        /* Runtime, data-path thread. */
        const VqRingOps *ops;
        const VuMem *mem;
        VqWalkCtx walk;
        bool started;
        bool broken;
        bool unmapped;                  /* rings outside guest memory since a DMA change: idle until mapped */
        bool event_idx;
        bool notify_enabled;
        void *desc;                     /* VqDescSplit[size] or VqDescPacked[size] */
        void *driver;                   /* split avail ring, packed driver event suppression */
        void *device;                   /* split used ring, packed device event suppression */
        uint16_t last_avail;            /* split: free-running index; packed: ring slot */
        bool avail_wrap;                /* packed */
        uint16_t used_idx;              /* split: free-running; packed: ring slot */
        bool used_wrap;                 /* packed */
        uint16_t signalled_used;        /* used index at the last interrupt decision */
        bool signalled_valid;
        unsigned n_pending;
        VqPending *pending;             /* completions not yet published, size entries */

        VqNotifyFn notify;
        void *notify_opaque;

        /* Counters (data-path thread writes, anyone may read). */
        uint64_t n_popped;
        uint64_t n_irqs;
        uint64_t n_irqs_suppressed;
};

struct VqRingOps {
        int (*map)(VirtQueue *vq);
        int (*pop)(VirtQueue *vq, VqChain *c);
        void (*unpop)(VirtQueue *vq, unsigned chains, unsigned slots);
        bool (*publish)(VirtQueue *vq);         /* true: the driver wants an interrupt */
        void (*set_notify)(VirtQueue *vq, bool enable);
        bool (*has_avail)(VirtQueue *vq);
};

extern const VqRingOps vq_split_ops;
extern const VqRingOps vq_packed_ops;

/* Power-on configuration of queue index with the device's maximum size. */
void vq_init(VirtQueue *vq, unsigned index, uint16_t max_size);
/* Back to the power-on configuration (device reset); frees runtime state. */
void vq_reset(VirtQueue *vq);

/*
 * Validate the driver's configuration for the negotiated features and map
 * the rings (each must be contiguous in one DMA map).  0, -EINVAL (size not a
 * power of two for split, zero, above max, misaligned ring), -EFAULT/-EACCES
 * (rings outside guest memory), -ENOMEM.
 */
int vq_start(VirtQueue *vq, const VuMem *mem, uint64_t features, VqNotifyFn notify, void *opaque);
/*
 * Re-map the rings after the DMA maps changed (while quiesced).  0, or -errno:
 * the rings are not in guest memory now, and the queue is idle ("unmapped",
 * not broken) until a later remap finds them: a VMM replacing its maps sends
 * the unmap and the new map as two messages, and firmware drives devices
 * while its memory map changes.
 */
int vq_remap(VirtQueue *vq);
/* Drop runtime state (keeps the configuration). */
void vq_stop(VirtQueue *vq);

/* 1: a chain was walked into *c; 0: nothing available; -errno: the queue broke. */
int vq_pop(VirtQueue *vq, VqChain *c);
/*
 * Tell dirty logging that the device wrote the first bytes bytes of the
 * chain's device-writable part (call after writing, before vq_push()).
 */
void vq_mark_written(VirtQueue *vq, const VqChain *c, uint64_t bytes);
/* Give back the last popped chains (not pushed): count of chains and their ring slots (sum of ndesc). */
void vq_unpop(VirtQueue *vq, unsigned chains, unsigned slots);
/* Record a completion of a popped chain with len bytes written; published by vq_flush(). */
void vq_push(VirtQueue *vq, uint16_t id, uint16_t ndesc, uint32_t len);
/* Publish completions; raise the interrupt unless the driver suppressed it. */
void vq_flush(VirtQueue *vq);
/*
 * Ask the driver for notifications (enable) or not.  Enabling returns true
 * when buffers arrived meanwhile, so the caller must process again instead
 * of sleeping.
 */
bool vq_notify_enable(VirtQueue *vq);
void vq_notify_disable(VirtQueue *vq);
bool vq_has_avail(VirtQueue *vq);

static inline bool vq_ready(const VirtQueue *vq) {
        return vq->started && !vq->broken && !vq->unmapped;
}

/* Translate one ring area: must be contiguous.  Host pointer or NULL with *err. */
void *vq_map_area(const VuMem *mem, uint64_t gpa, uint64_t len, int prot, int *err);
