/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Packed virtqueues (virtio-v1.2 2.8): availability from the AVAIL/USED
 * flag bits against the wrap counters (2.8.1), used descriptors written in
 * place with the flags stored last (2.8.7), event suppression structures in
 * both directions (2.8.10, 2.8.14).  Every write to the descriptor ring
 * and the device event structure is reported to dirty logging after it is
 * made: the rings stay mapped, no translation sees these writes.
 */
#include <endian.h>
#include <errno.h>

#include "virtio/virtqueue.h"

static inline VqDescPacked *ring(VirtQueue *vq) {
        return vq->desc;
}

static int packed_map(VirtQueue *vq) {
        int err = 0;

        vq->desc = vq_map_area(vq->mem, vq->desc_gpa, 16 * (size_t) vq->size,
                               VU_PROT_READ | VU_PROT_WRITE, &err);
        vq->driver = vq_map_area(vq->mem, vq->driver_gpa, sizeof(VqEventSuppress), VU_PROT_READ, &err);
        vq->device = vq_map_area(vq->mem, vq->device_gpa, sizeof(VqEventSuppress),
                                 VU_PROT_READ | VU_PROT_WRITE, &err);
        if (!vq->desc || !vq->driver || !vq->device)
                return err ? err : -EFAULT;
        return 0;
}

static bool desc_is_avail(uint16_t flags, bool wrap) {
        bool avail = flags & VIRTQ_DESC_F_AVAIL;
        bool used = flags & VIRTQ_DESC_F_USED;

        return avail != used && avail == wrap;
}

static bool packed_has_avail(VirtQueue *vq) {
        uint16_t flags = le16toh(__atomic_load_n(&ring(vq)[vq->last_avail].flags, __ATOMIC_ACQUIRE));

        return desc_is_avail(flags, vq->avail_wrap);
}

static void advance(uint16_t *slot, bool *wrap, unsigned n, uint16_t size) {
        unsigned s = *slot + n;

        while (s >= size) {
                s -= size;
                *wrap = !*wrap;
        }
        *slot = (uint16_t) s;
}

static int packed_pop(VirtQueue *vq, VqChain *c) {
        int r;

        /* The acquire load of the head's flags orders the reads of the whole chain (2.8.21). */
        if (!packed_has_avail(vq))
                return 0;
        r = vq_walk_packed(&vq->walk, ring(vq), vq->last_avail, c);
        if (r < 0)
                return r;
        advance(&vq->last_avail, &vq->avail_wrap, c->ndesc, vq->size);
        return 1;
}

static void packed_unpop(VirtQueue *vq, unsigned chains, unsigned slots) {
        unsigned back = slots % vq->size;

        if (back > vq->last_avail) {
                vq->last_avail = (uint16_t) (vq->last_avail + vq->size - back);
                vq->avail_wrap = !vq->avail_wrap;
        } else {
                vq->last_avail = (uint16_t) (vq->last_avail - back);
        }
}

static bool packed_publish(VirtQueue *vq) {
        VqEventSuppress ev;
        unsigned total = 0;

        for (unsigned i = 0; i < vq->n_pending; i++) {
                const VqPending *p = &vq->pending[i];
                VqDescPacked *d = &ring(vq)[vq->used_idx];
                uint16_t flags = vq->used_wrap ? (VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED) : 0;

                d->id = htole16(p->id);
                d->len = htole32(p->len);
                __atomic_store_n(&d->flags, htole16(flags), __ATOMIC_RELEASE);
                vu_mem_mark_dirty(vq->mem, vq->desc_gpa + 16ull * vq->used_idx, 16);
                advance(&vq->used_idx, &vq->used_wrap, p->ndesc, vq->size);
                total += p->ndesc;
        }
        vq->n_pending = 0;

        __atomic_thread_fence(__ATOMIC_SEQ_CST);

        ev.flags = le16toh(__atomic_load_n(&((VqEventSuppress *) vq->driver)->flags, __ATOMIC_ACQUIRE));
        ev.off_wrap = le16toh(__atomic_load_n(&((VqEventSuppress *) vq->driver)->off_wrap, __ATOMIC_RELAXED));

        switch (ev.flags) {
        case VIRTQ_EVENT_F_ENABLE:
                return true;
        case VIRTQ_EVENT_F_DISABLE:
                return false;
        case VIRTQ_EVENT_F_DESC:
                if (vq->event_idx) {
                        /* 2.8.10.1: off_wrap names a used slot and the wrap counter it belongs to. */
                        uint16_t event = ev.off_wrap & 0x7fff;
                        bool ev_wrap = ev.off_wrap >> 15;
                        uint16_t new_idx = vq->used_idx;
                        uint16_t old_idx = (uint16_t) (new_idx - total);

                        if (ev_wrap != vq->used_wrap)
                                event = (uint16_t) (event - vq->size);
                        return vq_need_event(event, new_idx, old_idx);
                }
                return true;
        default:
                return true;            /* reserved value: err on the side of waking the driver */
        }
}

static void packed_set_notify(VirtQueue *vq, bool enable) {
        VqEventSuppress *dev = vq->device;
        uint16_t flags, off_wrap = le16toh(__atomic_load_n(&dev->off_wrap, __ATOMIC_RELAXED));
        bool changed = false;

        if (!enable) {
                flags = VIRTQ_EVENT_F_DISABLE;
        } else if (vq->event_idx) {
                uint16_t want = (uint16_t) (vq->last_avail | (vq->avail_wrap ? 0x8000 : 0));
                if (want != off_wrap) {
                        __atomic_store_n(&dev->off_wrap, htole16(want), __ATOMIC_RELAXED);
                        changed = true;
                }
                flags = VIRTQ_EVENT_F_DESC;
        } else {
                flags = VIRTQ_EVENT_F_ENABLE;
        }
        /* Device-owned: store only what changes, so an idle queue leaves its page clean. */
        if (le16toh(__atomic_load_n(&dev->flags, __ATOMIC_RELAXED)) != flags) {
                __atomic_store_n(&dev->flags, htole16(flags), __ATOMIC_RELEASE);
                changed = true;
        }
        if (changed)
                vu_mem_mark_dirty(vq->mem, vq->device_gpa, sizeof(*dev));
}

const VqRingOps vq_packed_ops = {
        .map = packed_map,
        .pop = packed_pop,
        .unpop = packed_unpop,
        .publish = packed_publish,
        .set_notify = packed_set_notify,
        .has_avail = packed_has_avail,
};
