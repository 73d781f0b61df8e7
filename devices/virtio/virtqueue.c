/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Virtqueue configuration and the split/packed dispatch (virtio-v1.2 2.6). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "virtio/virtqueue.h"

void vq_init(VirtQueue *vq, unsigned index, uint16_t max_size) {
        g_free(vq->pending);
        memset(vq, 0, sizeof(*vq));
        vq->index = index;
        vq->max_size = max_size;
        vq->size = max_size;            /* 4.1.4.3: reads the maximum until written */
        vq->msix_vector = VIRTIO_MSI_NO_VECTOR;
}

void vq_reset(VirtQueue *vq) {
        vq_init(vq, vq->index, vq->max_size);
}

void *vq_map_area(const VuMem *mem, uint64_t gpa, uint64_t len, int prot, int *err) {
        struct iovec iov;
        int n = vu_mem_translate(mem, gpa, len, prot, &iov, 1);

        if (n == 1 && iov.iov_len == len)
                return iov.iov_base;
        *err = n < 0 ? n : -EFAULT;
        return NULL;
}

int vq_start(VirtQueue *vq, const VuMem *mem, uint64_t features, VqNotifyFn notify, void *opaque) {
        bool packed = virtio_has(features, VIRTIO_F_RING_PACKED);
        int r;

        vq_stop(vq);
        if (vq->size == 0 || vq->size > vq->max_size)
                return -EINVAL;
        /* 2.7: split queue sizes are powers of two; 2.8 packed ones need not be. */
        if (!packed && (vq->size & (vq->size - 1)) != 0)
                return -EINVAL;
        /* 2.7.2 / 2.8.10 alignment of the three areas. */
        if (vq->desc_gpa % 16 != 0 || vq->driver_gpa % (packed ? 4 : 2) != 0 || vq->device_gpa % 4 != 0)
                return -EINVAL;

        vq->ops = packed ? &vq_packed_ops : &vq_split_ops;
        vq->mem = mem;
        vq->walk = (VqWalkCtx) {
                .mem = mem,
                .qsize = vq->size,
                .indirect = virtio_has(features, VIRTIO_F_INDIRECT_DESC),
        };
        vq->event_idx = virtio_has(features, VIRTIO_F_EVENT_IDX);
        vq->last_avail = 0;
        vq->used_idx = 0;
        vq->avail_wrap = vq->used_wrap = true;  /* 2.8.1: both start at 1 */
        vq->signalled_used = 0;
        vq->signalled_valid = false;
        vq->n_pending = 0;
        vq->pending = g_try_new0(VqPending, vq->size);
        if (!vq->pending)
                return -ENOMEM;
        vq->notify = notify;
        vq->notify_opaque = opaque;
        vq->broken = false;
        vq->unmapped = false;

        r = vq->ops->map(vq);
        if (r < 0) {
                vq_stop(vq);
                return r;
        }
        vq->started = true;
        vq->notify_enabled = true;
        return 0;
}

int vq_remap(VirtQueue *vq) {
        int r;

        if (!vq->started)
                return 0;
        r = vq->ops->map(vq);
        vq->unmapped = r < 0;
        return r;
}

void vq_stop(VirtQueue *vq) {
        vq->started = false;
        vq->broken = false;
        vq->unmapped = false;
        vq->desc = vq->driver = vq->device = NULL;
        g_clear_pointer(&vq->pending, g_free);
        vq->n_pending = 0;
}

int vq_pop(VirtQueue *vq, VqChain *c) {
        int r;

        if (!vq_ready(vq))
                return -EIO;
        r = vq->ops->pop(vq, c);
        if (r < 0)
                vq->broken = true;
        else if (r > 0)
                vq->n_popped++;
        return r;
}

void vq_mark_written(VirtQueue *vq, const VqChain *c, uint64_t bytes) {
        for (unsigned i = 0; i < c->n_in_seg && bytes > 0; i++) {
                uint64_t n = MIN(bytes, (uint64_t) c->in_seg[i].len);

                vu_mem_mark_dirty(vq->mem, c->in_seg[i].gpa, n);
                bytes -= n;
        }
}

void vq_unpop(VirtQueue *vq, unsigned chains, unsigned slots) {
        if (vq_ready(vq) && chains > 0)
                vq->ops->unpop(vq, chains, slots);
}

void vq_push(VirtQueue *vq, uint16_t id, uint16_t ndesc, uint32_t len) {
        if (!vq_ready(vq))
                return;
        if (vq->n_pending == vq->size)
                vq_flush(vq);
        vq->pending[vq->n_pending++] = (VqPending) { .id = id, .ndesc = ndesc, .len = len };
}

void vq_flush(VirtQueue *vq) {
        if (!vq_ready(vq) || vq->n_pending == 0)
                return;
        if (vq->ops->publish(vq)) {
                vq->n_irqs++;
                if (vq->notify)
                        vq->notify(vq->notify_opaque, vq);
        } else {
                vq->n_irqs_suppressed++;
        }
}

bool vq_notify_enable(VirtQueue *vq) {
        if (!vq_ready(vq))
                return false;
        vq->notify_enabled = true;
        vq->ops->set_notify(vq, true);
        /* The store above must be visible before we look at the ring again. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        return vq->ops->has_avail(vq);
}

void vq_notify_disable(VirtQueue *vq) {
        if (!vq_ready(vq) || !vq->notify_enabled)
                return;
        vq->notify_enabled = false;
        vq->ops->set_notify(vq, false);
}

bool vq_has_avail(VirtQueue *vq) {
        return vq_ready(vq) && vq->ops->has_avail(vq);
}
