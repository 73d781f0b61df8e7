/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Split virtqueues (virtio-v1.2 2.7): the available ring is read with
 * acquire loads, each head index is loaded once, used elements become
 * visible with a release store of used->idx, and both directions of
 * notification suppression (2.7.7 flags, 2.7.10 EVENT_IDX) are honoured.
 * The rings stay mapped while the device runs, so every write to the used
 * ring is reported to dirty logging here, after it is made.
 */
#include <endian.h>
#include <errno.h>

#include <glib.h>

#include "virtio/virtqueue.h"

/* avail: le16 flags, le16 idx, le16 ring[size], le16 used_event */
#define AVAIL_FLAGS(vq)      (&((uint16_t *) (vq)->driver)[0])
#define AVAIL_IDX(vq)        (&((uint16_t *) (vq)->driver)[1])
#define AVAIL_RING(vq, i)    (&((uint16_t *) (vq)->driver)[2 + (i)])
#define AVAIL_USED_EVENT(vq) (&((uint16_t *) (vq)->driver)[2 + (vq)->size])
/* used: le16 flags, le16 idx, VqUsedElem ring[size], le16 avail_event */
#define USED_FLAGS(vq)       (&((uint16_t *) (vq)->device)[0])
#define USED_IDX(vq)         (&((uint16_t *) (vq)->device)[1])
#define USED_RING(vq)        ((VqUsedElem *) ((uint8_t *) (vq)->device + 4))
#define USED_AVAIL_EVENT(vq) ((uint16_t *) ((uint8_t *) (vq)->device + 4 + 8 * (size_t) (vq)->size))

static inline uint16_t load16(const uint16_t *p) {
        return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline void store16(uint16_t *p, uint16_t v) {
        __atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

/* Dirty logging for count used elements from slot first (wrapping) and the index before them. */
static void mark_used(VirtQueue *vq, uint16_t first, unsigned count) {
        uint64_t ring = vq->device_gpa + 4;
        unsigned start = first & (vq->size - 1u);
        unsigned n1 = MIN(count, vq->size - start);

        vu_mem_mark_dirty(vq->mem, vq->device_gpa, 4);
        vu_mem_mark_dirty(vq->mem, ring + 8ull * start, 8ull * n1);
        if (count > n1)
                vu_mem_mark_dirty(vq->mem, ring, 8ull * (count - n1));
}

static int split_map(VirtQueue *vq) {
        size_t n = vq->size;
        int err = 0;

        vq->desc = vq_map_area(vq->mem, vq->desc_gpa, 16 * n, VU_PROT_READ, &err);
        vq->driver = vq_map_area(vq->mem, vq->driver_gpa, 6 + 2 * n, VU_PROT_READ, &err);
        vq->device = vq_map_area(vq->mem, vq->device_gpa, 6 + 8 * n, VU_PROT_READ | VU_PROT_WRITE, &err);
        if (!vq->desc || !vq->driver || !vq->device)
                return err ? err : -EFAULT;
        return 0;
}

/* Buffers the driver made available, or -EINVAL when it claims more than the queue holds. */
static int split_avail_count(VirtQueue *vq) {
        uint16_t avail = load16(AVAIL_IDX(vq));
        uint16_t n = (uint16_t) (avail - vq->last_avail);

        if (n > vq->size)
                return -EINVAL;         /* 2.7.13.3 */
        return n;
}

static bool split_has_avail(VirtQueue *vq) {
        return split_avail_count(vq) != 0;
}

static int split_pop(VirtQueue *vq, VqChain *c) {
        int n = split_avail_count(vq);
        uint16_t head;
        int r;

        if (n <= 0)
                return n;
        /* idx was loaded with acquire: the ring entry behind it is valid; load it once. */
        head = load16(AVAIL_RING(vq, vq->last_avail & (vq->size - 1)));
        r = vq_walk_split(&vq->walk, vq->desc, head, c);
        if (r < 0)
                return r;
        vq->last_avail++;
        return 1;
}

static void split_unpop(VirtQueue *vq, unsigned chains, unsigned slots) {
        vq->last_avail = (uint16_t) (vq->last_avail - chains);
}

static bool split_publish(VirtQueue *vq) {
        VqUsedElem *ring = USED_RING(vq);
        uint16_t old = vq->used_idx;
        uint16_t new_idx;

        for (unsigned i = 0; i < vq->n_pending; i++) {
                VqUsedElem *e = &ring[(uint16_t) (old + i) & (vq->size - 1)];
                e->id = htole32(vq->pending[i].id);
                e->len = htole32(vq->pending[i].len);
        }
        new_idx = (uint16_t) (old + vq->n_pending);
        vq->used_idx = new_idx;
        store16(USED_IDX(vq), new_idx);
        mark_used(vq, old, vq->n_pending);
        vq->n_pending = 0;

        /* 2.7.7.2: used idx must be visible before we read the driver's suppression state. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);

        if (!vq->event_idx)
                return !(load16(AVAIL_FLAGS(vq)) & VIRTQ_AVAIL_F_NO_INTERRUPT);

        uint16_t prev = vq->signalled_used;
        bool valid = vq->signalled_valid;
        vq->signalled_used = new_idx;
        vq->signalled_valid = true;
        if (!valid)
                return true;
        return vq_need_event(load16(AVAIL_USED_EVENT(vq)), new_idx, prev);
}

/* Store a device-owned field only when it changes: an unchanged page stays clean for dirty logging. */
static void store16_dirty(VirtQueue *vq, uint16_t *p, uint16_t v) {
        if (load16(p) == v)
                return;
        store16(p, v);
        vu_mem_mark_dirty(vq->mem, vq->device_gpa + (uint64_t) ((uint8_t *) p - (uint8_t *) vq->device), 2);
}

static void split_set_notify(VirtQueue *vq, bool enable) {
        if (vq->event_idx) {
                /* 2.7.10: kick me when the driver passes the index I have reached. */
                if (enable)
                        store16_dirty(vq, USED_AVAIL_EVENT(vq), vq->last_avail);
                return;
        }
        store16_dirty(vq, USED_FLAGS(vq), enable ? 0 : VIRTQ_USED_F_NO_NOTIFY);
}

const VqRingOps vq_split_ops = {
        .map = split_map,
        .pop = split_pop,
        .unpop = split_unpop,
        .publish = split_publish,
        .set_notify = split_set_notify,
        .has_avail = split_has_avail,
};
