/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transport's part of a migration stream: what the device offers
 * (checked against the destination, never restored), the common
 * configuration registers (virtio-v1.2 4.1.4.3) and each queue's
 * configuration and ring position (2.7 split, 2.8 packed).  Loading checks
 * the whole stream before it changes anything, then applies it; a device
 * never runs on state it has not checked, and any failure leaves it reset.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "virtio/virtio-pci-priv.h"

enum {
        TR_DEVICE_ID = 1,
        TR_NUM_QUEUES,
        TR_QUEUE_MAX,
        TR_DEVICE_FEATURES,
        TR_NVEC,
};

enum {
        CM_DRIVER_FEATURES = 1,
        CM_STATUS,
        CM_GENERATION,
        CM_ISR,
        CM_MSIX_CONFIG,
        CM_DFSELECT,
        CM_GFSELECT,
        CM_QUEUE_SELECT,
        CM_STARTED,
};

enum {
        Q_SIZE = 1,
        Q_MSIX_VECTOR,
        Q_ENABLED,
        Q_DESC,
        Q_DRIVER,
        Q_DEVICE,
        Q_STARTED,
        Q_BROKEN,
        Q_LAST_AVAIL,
        Q_AVAIL_WRAP,
        Q_USED_IDX,
        Q_USED_WRAP,
        Q_SIGNALLED_USED,
        Q_SIGNALLED_VALID,
        Q_NOTIFY_ENABLED,
};

#define FIELD(id, type, name) { id, DEVSTATE_T_##type, name, 0, true }

static const DevStateFieldSpec transport_fields[] = {
        FIELD(TR_DEVICE_ID, U16, "device-id"),
        FIELD(TR_NUM_QUEUES, U16, "num-queues"),
        FIELD(TR_QUEUE_MAX, U16, "queue-size-max"),
        FIELD(TR_DEVICE_FEATURES, U64, "device-features"),
        FIELD(TR_NVEC, U16, "msix-vectors"),
};

static const DevStateFieldSpec common_fields[] = {
        FIELD(CM_DRIVER_FEATURES, U64, "driver-features"),
        FIELD(CM_STATUS, U8, "device-status"),
        FIELD(CM_GENERATION, U8, "config-generation"),
        FIELD(CM_ISR, U8, "isr"),
        FIELD(CM_MSIX_CONFIG, U16, "config-msix-vector"),
        FIELD(CM_DFSELECT, U32, "device-feature-select"),
        FIELD(CM_GFSELECT, U32, "driver-feature-select"),
        FIELD(CM_QUEUE_SELECT, U16, "queue-select"),
        FIELD(CM_STARTED, BOOL, "started"),
};

static const DevStateFieldSpec queue_fields[] = {
        FIELD(Q_SIZE, U16, "size"),
        FIELD(Q_MSIX_VECTOR, U16, "msix-vector"),
        FIELD(Q_ENABLED, BOOL, "enabled"),
        FIELD(Q_DESC, U64, "desc-addr"),
        FIELD(Q_DRIVER, U64, "driver-addr"),
        FIELD(Q_DEVICE, U64, "device-addr"),
        FIELD(Q_STARTED, BOOL, "started"),
        FIELD(Q_BROKEN, BOOL, "broken"),
        FIELD(Q_LAST_AVAIL, U16, "last-avail"),
        FIELD(Q_AVAIL_WRAP, BOOL, "avail-wrap"),
        FIELD(Q_USED_IDX, U16, "used-idx"),
        FIELD(Q_USED_WRAP, BOOL, "used-wrap"),
        FIELD(Q_SIGNALLED_USED, U16, "signalled-used"),
        FIELD(Q_SIGNALLED_VALID, BOOL, "signalled-valid"),
        FIELD(Q_NOTIFY_ENABLED, BOOL, "notify-enabled"),
};

static const DevStateSectionSpec transport_sections[] = {
        { VIRTIO_STATE_SEC_TRANSPORT, "virtio-transport", 1, true, transport_fields, G_N_ELEMENTS(transport_fields) },
        { VIRTIO_STATE_SEC_COMMON, "virtio-common", 1, true, common_fields, G_N_ELEMENTS(common_fields) },
        { VIRTIO_STATE_SEC_QUEUE, "virtio-queue", VIRTIO_PCI_MAX_QUEUES, false, queue_fields,
          G_N_ELEMENTS(queue_fields) },
};

/* ---- save ---------------------------------------------------------------------------- */

static void save_queue(DevStateWriter *w, const VirtQueue *q) {
        devstate_writer_begin(w, VIRTIO_STATE_SEC_QUEUE, q->index, DEVSTATE_F_MANDATORY);
        devstate_put_u16(w, Q_SIZE, q->size);
        devstate_put_u16(w, Q_MSIX_VECTOR, q->msix_vector);
        devstate_put_bool(w, Q_ENABLED, q->enabled);
        devstate_put_u64(w, Q_DESC, q->desc_gpa);
        devstate_put_u64(w, Q_DRIVER, q->driver_gpa);
        devstate_put_u64(w, Q_DEVICE, q->device_gpa);
        devstate_put_bool(w, Q_STARTED, q->started);
        devstate_put_bool(w, Q_BROKEN, q->broken);
        devstate_put_u16(w, Q_LAST_AVAIL, q->last_avail);
        devstate_put_bool(w, Q_AVAIL_WRAP, q->avail_wrap);
        devstate_put_u16(w, Q_USED_IDX, q->used_idx);
        devstate_put_bool(w, Q_USED_WRAP, q->used_wrap);
        devstate_put_u16(w, Q_SIGNALLED_USED, q->signalled_used);
        devstate_put_bool(w, Q_SIGNALLED_VALID, q->signalled_valid);
        devstate_put_bool(w, Q_NOTIFY_ENABLED, q->notify_enabled);
        devstate_writer_end(w);
}

int virtio_pci_state_save(VirtioPci *vp, DevStateWriter **out) {
        g_autoptr(DevStateWriter) w = NULL;
        int r;

        if (!vp->state_type || !vp->cfg.ops->save)
                return -EOPNOTSUPP;
        w = devstate_writer_new(vp->state_type, vp->state_id);
        devstate_writer_begin(w, VIRTIO_STATE_SEC_TRANSPORT, 0, DEVSTATE_F_MANDATORY);
        devstate_put_u16(w, TR_DEVICE_ID, vp->cfg.device_id);
        devstate_put_u16(w, TR_NUM_QUEUES, (uint16_t) vp->cfg.num_queues);
        devstate_put_u16(w, TR_QUEUE_MAX, vp->cfg.queue_size);
        devstate_put_u64(w, TR_DEVICE_FEATURES, vp->device_features);
        devstate_put_u16(w, TR_NVEC, (uint16_t) vp->nvec);
        devstate_writer_end(w);

        devstate_writer_begin(w, VIRTIO_STATE_SEC_COMMON, 0, DEVSTATE_F_MANDATORY);
        devstate_put_u64(w, CM_DRIVER_FEATURES, vp->driver_features);
        devstate_put_u8(w, CM_STATUS, virtio_pci_status_load(vp));
        devstate_put_u8(w, CM_GENERATION, __atomic_load_n(&vp->generation, __ATOMIC_ACQUIRE));
        devstate_put_u8(w, CM_ISR, __atomic_load_n(&vp->isr, __ATOMIC_ACQUIRE));
        devstate_put_u16(w, CM_MSIX_CONFIG, vp->msix_config);
        devstate_put_u32(w, CM_DFSELECT, vp->dfselect);
        devstate_put_u32(w, CM_GFSELECT, vp->gfselect);
        devstate_put_u16(w, CM_QUEUE_SELECT, vp->queue_select);
        devstate_put_bool(w, CM_STARTED, vp->started);
        devstate_writer_end(w);

        for (unsigned i = 0; i < vp->cfg.num_queues; i++)
                save_queue(w, &vp->queues[i]);
        r = vp->cfg.ops->save(vp->cfg.opaque, w);
        if (r == 0)
                r = devstate_writer_finish(w);
        if (r < 0)
                return r;
        *out = g_steal_pointer(&w);
        return 0;
}

/* ---- load ------------------------------------------------------------------------------ */

/* A virtio stream is a few KiB (≤ 1024 queues of ~200 bytes): what a client may make us hold. */
#define VIRTIO_STATE_MAX_STREAM (1u << 20)

DevStateReader *virtio_pci_state_reader(VirtioPci *vp) {
        DevStateReader *r = devstate_reader_new(vp->state_type, vp->state_id, VIRTIO_STATE_MAX_STREAM);

        devstate_reader_add_sections(r, transport_sections, G_N_ELEMENTS(transport_sections));
        if (vp->cfg.n_state_sections)
                devstate_reader_add_sections(r, vp->cfg.state_sections, vp->cfg.n_state_sections);
        return r;
}

/* One queue as the stream has it. */
typedef struct QueueState {
        uint16_t size, msix_vector, last_avail, used_idx, signalled_used;
        bool enabled, started, broken, avail_wrap, used_wrap, signalled_valid, notify_enabled;
        uint64_t desc, driver, device;
} QueueState;

/* The transport's part, read and checked; applied only once everything was checked. */
typedef struct TransportState {
        uint64_t driver_features;
        uint8_t status, generation, isr;
        uint16_t msix_config, queue_select;
        uint32_t dfselect, gfselect;
        bool started;
        QueueState *q;
} TransportState;

static void transport_state_clear(TransportState *t) {
        g_free(t->q);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(TransportState, transport_state_clear)

#define GET(fn, s, id, out)                                                                             \
        do {                                                                                            \
                int r_ = fn(s, id, out);                                                                \
                if (r_ < 0)                                                                             \
                        return devstate_reader_fail(r, r_, "device state: field %u of %s unreadable", id, \
                                                    devstate_section_name(s));                          \
        } while (0)

static int check_transport(VirtioPci *vp, DevStateReader *r) {
        const DevStateSection *s = devstate_reader_find(r, VIRTIO_STATE_SEC_TRANSPORT, 0);
        uint16_t device_id, nq, qmax, nvec;
        uint64_t features;

        GET(devstate_get_u16, s, TR_DEVICE_ID, &device_id);
        GET(devstate_get_u16, s, TR_NUM_QUEUES, &nq);
        GET(devstate_get_u16, s, TR_QUEUE_MAX, &qmax);
        GET(devstate_get_u64, s, TR_DEVICE_FEATURES, &features);
        GET(devstate_get_u16, s, TR_NVEC, &nvec);
        if (device_id != vp->cfg.device_id)
                return devstate_reader_fail(r, -ENODEV, "device state is for virtio device id %u, this is %u",
                                            device_id, vp->cfg.device_id);
        if (nq != vp->cfg.num_queues || qmax != vp->cfg.queue_size || nvec != vp->nvec)
                return devstate_reader_fail(r, -EINVAL,
                                            "device state has %u queues of up to %u entries and %u MSI-X vectors, "
                                            "this device %u, %u and %u: create the destination with the same "
                                            "options", nq, qmax, nvec, vp->cfg.num_queues, vp->cfg.queue_size, vp->nvec);
        return 0;
}

static bool vector_ok(const VirtioPci *vp, uint16_t v) {
        return v == VIRTIO_MSI_NO_VECTOR || v < vp->nvec;
}

static int read_common(VirtioPci *vp, DevStateReader *r, TransportState *t) {
        const DevStateSection *s = devstate_reader_find(r, VIRTIO_STATE_SEC_COMMON, 0);
        const uint8_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |
                              VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED;

        GET(devstate_get_u64, s, CM_DRIVER_FEATURES, &t->driver_features);
        GET(devstate_get_u8, s, CM_STATUS, &t->status);
        GET(devstate_get_u8, s, CM_GENERATION, &t->generation);
        GET(devstate_get_u8, s, CM_ISR, &t->isr);
        GET(devstate_get_u16, s, CM_MSIX_CONFIG, &t->msix_config);
        GET(devstate_get_u32, s, CM_DFSELECT, &t->dfselect);
        GET(devstate_get_u32, s, CM_GFSELECT, &t->gfselect);
        GET(devstate_get_u16, s, CM_QUEUE_SELECT, &t->queue_select);
        GET(devstate_get_bool, s, CM_STARTED, &t->started);

        if (t->status & ~known)
                return devstate_reader_fail(r, -EINVAL, "device status 0x%02x has undefined bits", t->status);
        if (t->isr & ~(VIRTIO_ISR_QUEUE | VIRTIO_ISR_CONFIG))
                return devstate_reader_fail(r, -EINVAL, "ISR status 0x%02x has undefined bits", t->isr);
        /* Before FEATURES_OK the driver's features are only what it wrote: any value migrates. */
        if ((t->status & VIRTIO_STATUS_FEATURES_OK) && (t->driver_features & ~vp->device_features))
                return devstate_reader_fail(r, -EINVAL,
                                            "the driver negotiated features 0x%" G_GINT64_MODIFIER "x this device "
                                            "does not offer (it offers 0x%" G_GINT64_MODIFIER "x)",
                                            t->driver_features & ~vp->device_features, vp->device_features);
        if ((t->status & VIRTIO_STATUS_FEATURES_OK) && !virtio_pci_features_acceptable(vp, t->driver_features))
                return devstate_reader_fail(r, -EINVAL,
                                            "features 0x%" G_GINT64_MODIFIER "x were accepted, this device refuses "
                                            "them", t->driver_features);
        if (t->started && (!(t->status & VIRTIO_STATUS_DRIVER_OK) || !(t->status & VIRTIO_STATUS_FEATURES_OK) ||
                           (t->status & VIRTIO_STATUS_FAILED)))
                return devstate_reader_fail(r, -EINVAL, "device started with status 0x%02x", t->status);
        if (!vector_ok(vp, t->msix_config))
                return devstate_reader_fail(r, -EINVAL, "configuration vector %u, the device has %u",
                                            t->msix_config, vp->nvec);
        return 0;
}

/* A ring area must be inside guest memory, in one map, with the access the device needs. */
static int check_area(VirtioPci *vp, DevStateReader *r, unsigned qi, const char *what, uint64_t gpa, uint64_t len,
                      int prot) {
        int err = 0;

        if (vq_map_area(vp->mem, gpa, len, prot, &err))
                return 0;
        return devstate_reader_fail(r, err ? err : -EFAULT,
                                    "queue %u: %s ring at 0x%" G_GINT64_MODIFIER "x (%" G_GUINT64_FORMAT " bytes) is "
                                    "not in guest memory the device can %s: %s", qi, what, gpa, len,
                                    (prot & VU_PROT_WRITE) ? "write" : "read", g_strerror(-(err ? err : -EFAULT)));
}

static int read_queue(VirtioPci *vp, DevStateReader *r, const TransportState *t, unsigned qi, QueueState *q) {
        const DevStateSection *s = devstate_reader_find(r, VIRTIO_STATE_SEC_QUEUE, qi);
        const VirtQueue *vq = &vp->queues[qi];
        bool packed = virtio_has(t->driver_features, VIRTIO_F_RING_PACKED);
        uint64_t n;

        if (!s)
                return devstate_reader_fail(r, -EBADMSG, "device state lacks queue %u", qi);
        GET(devstate_get_u16, s, Q_SIZE, &q->size);
        GET(devstate_get_u16, s, Q_MSIX_VECTOR, &q->msix_vector);
        GET(devstate_get_bool, s, Q_ENABLED, &q->enabled);
        GET(devstate_get_u64, s, Q_DESC, &q->desc);
        GET(devstate_get_u64, s, Q_DRIVER, &q->driver);
        GET(devstate_get_u64, s, Q_DEVICE, &q->device);
        GET(devstate_get_bool, s, Q_STARTED, &q->started);
        GET(devstate_get_bool, s, Q_BROKEN, &q->broken);
        GET(devstate_get_u16, s, Q_LAST_AVAIL, &q->last_avail);
        GET(devstate_get_bool, s, Q_AVAIL_WRAP, &q->avail_wrap);
        GET(devstate_get_u16, s, Q_USED_IDX, &q->used_idx);
        GET(devstate_get_bool, s, Q_USED_WRAP, &q->used_wrap);
        GET(devstate_get_u16, s, Q_SIGNALLED_USED, &q->signalled_used);
        GET(devstate_get_bool, s, Q_SIGNALLED_VALID, &q->signalled_valid);
        GET(devstate_get_bool, s, Q_NOTIFY_ENABLED, &q->notify_enabled);

        if (!vector_ok(vp, q->msix_vector))
                return devstate_reader_fail(r, -EINVAL, "queue %u: vector %u, the device has %u", qi, q->msix_vector,
                                            vp->nvec);
        if (q->size > vq->max_size)
                return devstate_reader_fail(r, -EINVAL, "queue %u: size %u above the maximum %u", qi, q->size,
                                            vq->max_size);
        if (!q->started) {
                /* DRIVER_OK starts every enabled queue, or none (device_start()). */
                if (t->started && q->enabled)
                        return devstate_reader_fail(r, -EINVAL, "queue %u: enabled but not started", qi);
                if (q->broken)
                        return devstate_reader_fail(r, -EINVAL, "queue %u: broken but not started", qi);
                return 0;
        }
        if (!t->started || !q->enabled)
                return devstate_reader_fail(r, -EINVAL, "queue %u: started on a %s", qi,
                                            t->started ? "disabled queue" : "device that was not started");
        /* What vq_start() demands of a queue (2.7 / 2.8, 2.7.2 / 2.8.10 alignment). */
        if (q->size == 0 || (!packed && (q->size & (q->size - 1)) != 0))
                return devstate_reader_fail(r, -EINVAL, "queue %u: size %u is not valid for a %s ring", qi, q->size,
                                            packed ? "packed" : "split");
        if (q->desc % 16 || q->driver % (packed ? 4 : 2) || q->device % 4)
                return devstate_reader_fail(r, -EINVAL, "queue %u: misaligned ring address", qi);
        /* Packed positions are ring slots; split ones are free-running 16-bit counters. */
        if (packed && (q->last_avail >= q->size || q->used_idx >= q->size))
                return devstate_reader_fail(r, -EINVAL, "queue %u: ring position %u/%u outside %u slots", qi,
                                            q->last_avail, q->used_idx, q->size);
        /* The device cannot have completed more than it took, nor hold more than the ring. */
        {
                unsigned taken = packed ? (q->avail_wrap == q->used_wrap ? (unsigned) q->last_avail - q->used_idx
                                                                         : (unsigned) q->last_avail + q->size -
                                                                                   q->used_idx)
                                        : (uint16_t) (q->last_avail - q->used_idx);

                if ((int) taken < 0 || taken > q->size)
                        return devstate_reader_fail(r, -EINVAL,
                                                    "queue %u: %u buffers taken but %u completed, in a ring of %u",
                                                    qi, q->last_avail, q->used_idx, q->size);
        }
        if (q->broken)
                return 0;               /* never touched again until reset: its rings need not map */
        if (!vp->mem)
                return devstate_reader_fail(r, -ENXIO, "no guest memory attached to the device");
        n = q->size;
        if (packed)
                return check_area(vp, r, qi, "descriptor", q->desc, 16 * n, VU_PROT_READ | VU_PROT_WRITE) ?:
                       check_area(vp, r, qi, "driver event", q->driver, 4, VU_PROT_READ) ?:
                       check_area(vp, r, qi, "device event", q->device, 4, VU_PROT_READ | VU_PROT_WRITE);
        return check_area(vp, r, qi, "descriptor", q->desc, 16 * n, VU_PROT_READ) ?:
               check_area(vp, r, qi, "available", q->driver, 6 + 2 * n, VU_PROT_READ) ?:
               check_area(vp, r, qi, "used", q->device, 6 + 8 * n, VU_PROT_READ | VU_PROT_WRITE);
}

static int apply_queue(VirtioPci *vp, const TransportState *t, unsigned qi, const QueueState *qs) {
        VirtQueue *q = &vp->queues[qi];
        int ret;

        q->size = qs->size;
        q->msix_vector = qs->msix_vector;
        q->enabled = qs->enabled;
        q->desc_gpa = qs->desc;
        q->driver_gpa = qs->driver;
        q->device_gpa = qs->device;
        if (!qs->started)
                return 0;
        if (qs->broken) {
                /* Held broken until the driver resets the device: nothing is mapped or touched. */
                q->ops = virtio_has(t->driver_features, VIRTIO_F_RING_PACKED) ? &vq_packed_ops : &vq_split_ops;
                q->mem = vp->mem;
                q->started = true;
                q->broken = true;
                return 0;
        }
        ret = vq_start(q, vp->mem, t->driver_features, virtio_pci_queue_notify, vp);
        if (ret < 0)
                return ret;
        q->last_avail = qs->last_avail;
        q->avail_wrap = qs->avail_wrap;
        q->used_idx = qs->used_idx;
        q->used_wrap = qs->used_wrap;
        q->signalled_used = qs->signalled_used;
        q->signalled_valid = qs->signalled_valid;
        q->notify_enabled = qs->notify_enabled;
        return 0;
}

static int load(VirtioPci *vp, DevStateReader *r) {
        g_auto(TransportState) t = { 0 };
        int ret;

        if ((ret = devstate_reader_finish(r)) < 0)
                return ret;
        if ((ret = check_transport(vp, r)) < 0 || (ret = read_common(vp, r, &t)) < 0)
                return ret;
        if (devstate_reader_count(r, VIRTIO_STATE_SEC_QUEUE) != vp->cfg.num_queues)
                return devstate_reader_fail(r, -EBADMSG, "device state has %u queue sections for %u queues",
                                            devstate_reader_count(r, VIRTIO_STATE_SEC_QUEUE), vp->cfg.num_queues);
        t.q = g_new0(QueueState, vp->cfg.num_queues);
        for (unsigned i = 0; i < vp->cfg.num_queues; i++)
                if ((ret = read_queue(vp, r, &t, i, &t.q[i])) < 0)
                        return ret;
        if (vp->cfg.ops->load_check &&
            (ret = vp->cfg.ops->load_check(vp->cfg.opaque, r, t.driver_features, t.started)) < 0)
                return devstate_reader_fail(r, ret, "device state refused by the device: %s", g_strerror(-ret));

        /* Everything checked: apply, from a reset device. */
        virtio_pci_reset(vp);
        vp->dfselect = t.dfselect;
        vp->gfselect = t.gfselect;
        vp->driver_features = t.driver_features;
        vp->msix_config = t.msix_config;
        vp->queue_select = t.queue_select;
        __atomic_store_n(&vp->generation, t.generation, __ATOMIC_RELEASE);
        __atomic_store_n(&vp->isr, t.isr, __ATOMIC_RELEASE);
        __atomic_store_n(&vp->status, t.status, __ATOMIC_RELEASE);
        for (unsigned i = 0; i < vp->cfg.num_queues; i++) {
                if ((ret = apply_queue(vp, &t, i, &t.q[i])) < 0)
                        return devstate_reader_fail(r, ret, "queue %u: rings could not be mapped: %s", i,
                                                    g_strerror(-ret));
        }
        if (vp->cfg.ops->load_apply &&
            (ret = vp->cfg.ops->load_apply(vp->cfg.opaque, r, t.driver_features, t.started)) < 0)
                return devstate_reader_fail(r, ret, "device state could not be applied: %s", g_strerror(-ret));
        vp->started = t.started;
        return 0;
}

int virtio_pci_state_apply(VirtioPci *vp, DevStateReader *r) {
        int ret = load(vp, r);

        if (ret < 0)
                virtio_pci_reset(vp);
        return ret;
}

int virtio_pci_state_load(VirtioPci *vp, DevStateReader *r) {
        return devstate_mig_load(&vp->mig, r);
}
