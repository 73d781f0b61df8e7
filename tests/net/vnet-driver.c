/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "virtio/virtio-pci.h"
#include "vnet-driver.h"

static uint64_t ram_alloc(VdRam *r, uint64_t len, uint64_t align) {
        uint64_t a = (r->next + align - 1) & ~(align - 1);

        if (a + len > r->gpa + r->size)
                return 0;
        r->next = a + len;
        memset(r->host + (a - r->gpa), 0, len);
        return a;
}

static void *ram_ptr(Vd *d, uint64_t gpa) {
        return d->ram.host + (gpa - d->ram.gpa);
}

void vd_init(Vd *d, const VdOps *ops, void *opaque, uint8_t *host, uint64_t gpa, uint64_t size) {
        memset(d, 0, sizeof(*d));
        d->ops = ops;
        d->opaque = opaque;
        d->ram = (VdRam) { .host = host, .gpa = gpa, .size = size, .next = gpa };
        d->ctrl = -1;
}

static uint32_t rd(Vd *d, uint32_t off, size_t len) {
        uint32_t v = 0;
        d->ops->read(d->opaque, off, &v, len);
        return le32toh(v);
}

static void wr(Vd *d, uint32_t off, uint32_t v, size_t len) {
        v = htole32(v);
        d->ops->write(d->opaque, off, &v, len);
}

uint8_t vd_status(Vd *d) {
        return (uint8_t) rd(d, VIRTIO_PCI_COMMON_STATUS, 1);
}

uint64_t vd_device_features(Vd *d) {
        wr(d, VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
        uint64_t lo = rd(d, VIRTIO_PCI_COMMON_DF, 4);
        wr(d, VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
        uint64_t hi = rd(d, VIRTIO_PCI_COMMON_DF, 4);
        return lo | hi << 32;
}

int vd_cfg_read(Vd *d, uint32_t off, void *buf, size_t len) {
        return d->ops->read(d->opaque, VIRTIO_PCI_DEVICE_OFF + off, buf, len);
}

int vd_reset(Vd *d) {
        wr(d, VIRTIO_PCI_COMMON_STATUS, 0, 1);
        for (int i = 0; i < 1000; i++)
                if (vd_status(d) == 0)
                        return 0;
        return -ETIMEDOUT;
}

static void set_status(Vd *d, uint8_t bits) {
        wr(d, VIRTIO_PCI_COMMON_STATUS, vd_status(d) | bits, 1);
}

static int setup_queue(Vd *d, unsigned slot, unsigned index, uint16_t qsize) {
        VdQueue *q = &d->q[slot];
        uint16_t max;

        memset(q, 0, sizeof(*q));
        q->index = index;
        q->packed = virtio_has(d->features, VIRTIO_F_RING_PACKED);
        wr(d, VIRTIO_PCI_COMMON_Q_SELECT, index, 2);
        max = (uint16_t) rd(d, VIRTIO_PCI_COMMON_Q_SIZE, 2);
        if (max == 0)
                return -ENOENT;
        if (rd(d, VIRTIO_PCI_COMMON_Q_ENABLE, 2) != 0)
                return -ENOENT;
        q->size = qsize && qsize < max ? qsize : max;
        wr(d, VIRTIO_PCI_COMMON_Q_SIZE, q->size, 2);

        if (q->packed) {
                q->desc_gpa = ram_alloc(&d->ram, 16 * (uint64_t) q->size, 16);
                q->drv_gpa = ram_alloc(&d->ram, 4, 4);
                q->dev_gpa = ram_alloc(&d->ram, 4, 4);
        } else {
                q->desc_gpa = ram_alloc(&d->ram, 16 * (uint64_t) q->size, 16);
                q->drv_gpa = ram_alloc(&d->ram, 6 + 2 * (uint64_t) q->size, 2);
                q->dev_gpa = ram_alloc(&d->ram, 6 + 8 * (uint64_t) q->size, 4);
        }
        q->buf_gpa = ram_alloc(&d->ram, (uint64_t) q->size * vd_buf_len(d), 4096);
        q->extra_gpa = ram_alloc(&d->ram, (uint64_t) q->size * 64, 64);
        if (!q->desc_gpa || !q->drv_gpa || !q->dev_gpa || !q->buf_gpa || !q->extra_gpa)
                return -ENOMEM;
        q->desc = ram_ptr(d, q->desc_gpa);
        q->drv = ram_ptr(d, q->drv_gpa);
        q->dev = ram_ptr(d, q->dev_gpa);
        q->avail_wrap = q->used_wrap = true;
        for (unsigned i = 0; i < q->size; i++)
                q->free_ids[i] = (uint16_t) (q->size - 1 - i);
        q->n_free = q->size;

        wr(d, VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t) q->desc_gpa, 4);
        wr(d, VIRTIO_PCI_COMMON_Q_DESCHI, (uint32_t) (q->desc_gpa >> 32), 4);
        wr(d, VIRTIO_PCI_COMMON_Q_AVAILLO, (uint32_t) q->drv_gpa, 4);
        wr(d, VIRTIO_PCI_COMMON_Q_AVAILHI, (uint32_t) (q->drv_gpa >> 32), 4);
        wr(d, VIRTIO_PCI_COMMON_Q_USEDLO, (uint32_t) q->dev_gpa, 4);
        wr(d, VIRTIO_PCI_COMMON_Q_USEDHI, (uint32_t) (q->dev_gpa >> 32), 4);
        q->vector = (uint16_t) (index + 1);
        wr(d, VIRTIO_PCI_COMMON_Q_MSIX, q->vector, 2);
        if (rd(d, VIRTIO_PCI_COMMON_Q_MSIX, 2) != q->vector)
                return -EBUSY;
        (void) rd(d, VIRTIO_PCI_COMMON_Q_NOFF, 2);
        return 0;
}

uint64_t vd_alloc(Vd *d, uint64_t len, uint64_t align) {
        return ram_alloc(&d->ram, len, align);
}

void *vd_ptr(Vd *d, uint64_t gpa) {
        return ram_ptr(d, gpa);
}

/* Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK re-read, config vector. */
static int negotiate(Vd *d, uint64_t want) {
        if (vd_reset(d) < 0)
                return -ETIMEDOUT;
        set_status(d, VIRTIO_STATUS_ACKNOWLEDGE);
        set_status(d, VIRTIO_STATUS_DRIVER);
        d->features = vd_device_features(d) & want;
        wr(d, VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
        wr(d, VIRTIO_PCI_COMMON_GF, (uint32_t) d->features, 4);
        wr(d, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
        wr(d, VIRTIO_PCI_COMMON_GF, (uint32_t) (d->features >> 32), 4);
        set_status(d, VIRTIO_STATUS_FEATURES_OK);
        if (!(vd_status(d) & VIRTIO_STATUS_FEATURES_OK))
                return -ENODEV;

        wr(d, VIRTIO_PCI_COMMON_MSIX, 0, 2);
        if (rd(d, VIRTIO_PCI_COMMON_MSIX, 2) != 0)
                return -EBUSY;
        return 0;
}

/* queue_enable last (vp_modern "has to be done last"), then DRIVER_OK. */
static int enable_all(Vd *d) {
        for (unsigned i = 0; i < d->nq; i++) {
                wr(d, VIRTIO_PCI_COMMON_Q_SELECT, d->q[i].index, 2);
                wr(d, VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
                d->q[i].ready = true;
        }
        set_status(d, VIRTIO_STATUS_DRIVER_OK);
        if (vd_status(d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
                return -EIO;
        return 0;
}

int vd_probe(Vd *d, uint64_t want, unsigned pairs, uint16_t qsize) {
        unsigned max_pairs = 1;
        int r;

        if ((r = negotiate(d, want)) < 0)
                return r;
        if (virtio_has(d->features, VIRTIO_NET_F_MQ)) {
                uint16_t m = 0;
                vd_cfg_read(d, offsetof(VNetConfigSpace, max_virtqueue_pairs), &m, 2);
                max_pairs = le16toh(m);
        }
        if (pairs == 0 || pairs > max_pairs || 2 * pairs + 1 > VD_MAX_QUEUES)
                return -EINVAL;
        d->pairs = pairs;
        d->nq = 2 * pairs;
        for (unsigned i = 0; i < 2 * pairs; i++)
                if ((r = setup_queue(d, i, i, qsize)) < 0)
                        return r;
        if (virtio_has(d->features, VIRTIO_NET_F_CTRL_VQ)) {
                d->ctrl = (int) d->nq;
                if ((r = setup_queue(d, d->nq, 2 * max_pairs, qsize)) < 0)
                        return r;
                d->nq++;
        }
        return enable_all(d);
}

int vd_probe_queues(Vd *d, uint64_t want, unsigned nq, uint16_t qsize) {
        int r;

        if ((r = negotiate(d, want)) < 0)
                return r;
        if (nq == 0 || nq > VD_MAX_QUEUES)
                return -EINVAL;
        d->pairs = 0;
        d->nq = nq;
        for (unsigned i = 0; i < nq; i++)
                if ((r = setup_queue(d, i, i, qsize)) < 0)
                        return r;
        return enable_all(d);
}

static int take_id(VdQueue *q) {
        return q->n_free ? q->free_ids[--q->n_free] : -1;
}

static void put_id(VdQueue *q, uint16_t id) {
        q->free_ids[q->n_free++] = id;
}

void vd_kick(Vd *d, unsigned slot) {
        uint16_t v = htole16((uint16_t) d->q[slot].index);
        d->q[slot].kicks++;
        d->ops->write(d->opaque, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * d->q[slot].index, &v, 2);
}

/*
 * After adding buffers (avail idx moved from old): kick only when the device
 * asked (2.7.10 avail_event, 2.7.7 NO_NOTIFY), as Linux's virtqueue_kick does.
 * Packed rings: always (this driver does not read their event suppression).
 */
static void kick_if_wanted(Vd *d, unsigned slot, uint16_t old);

void vd_kick_if_wanted(Vd *d, unsigned slot, uint16_t old) {
        kick_if_wanted(d, slot, old);
}

static void kick_if_wanted(Vd *d, unsigned slot, uint16_t old) {
        VdQueue *q = &d->q[slot];
        bool kick = true;

        if (!q->packed) {
                __atomic_thread_fence(__ATOMIC_SEQ_CST);
                uint16_t *used16 = q->dev;
                if (virtio_has(d->features, VIRTIO_F_EVENT_IDX)) {
                        uint16_t ev = __atomic_load_n((uint16_t *) ((uint8_t *) q->dev + 4 + 8 * (size_t) q->size),
                                                      __ATOMIC_ACQUIRE);
                        kick = vq_need_event(le16toh(ev), q->avail_idx, old);
                } else {
                        kick = !(__atomic_load_n(&used16[0], __ATOMIC_ACQUIRE) & VIRTQ_USED_F_NO_NOTIFY);
                }
        }
        if (kick)
                vd_kick(d, slot);
}


static int add_split(Vd *d, VdQueue *q, int head, const uint64_t *gpa, const uint32_t *len,
                     const bool *write, unsigned n, bool indirect) {
        VqDescSplit *desc = q->desc;
        uint16_t *avail = q->drv;

        if (indirect) {
                VqDescSplit *t = ram_ptr(d, q->extra_gpa + 64 * (uint64_t) head);
                if (n > 4)
                        return -EINVAL;
                for (unsigned i = 0; i < n; i++)
                        t[i] = (VqDescSplit) { .addr = gpa[i], .len = len[i],
                                               .flags = (uint16_t) ((write[i] ? VIRTQ_DESC_F_WRITE : 0) |
                                                                    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                                               .next = (uint16_t) (i + 1) };
                desc[head] = (VqDescSplit) { .addr = q->extra_gpa + 64 * (uint64_t) head,
                                             .len = 16 * n, .flags = VIRTQ_DESC_F_INDIRECT };
        } else {
                int cur = head;
                for (unsigned i = 0; i < n; i++) {
                        int next = i + 1 < n ? take_id(q) : 0;
                        if (next < 0)
                                return -ENOSPC;
                        desc[cur] = (VqDescSplit) { .addr = gpa[i], .len = len[i],
                                                    .flags = (uint16_t) ((write[i] ? VIRTQ_DESC_F_WRITE : 0) |
                                                                         (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                                                    .next = (uint16_t) next };
                        cur = next;
                }
        }
        avail[2 + (q->avail_idx & (q->size - 1))] = htole16((uint16_t) head);
        q->avail_idx++;
        __atomic_store_n(&avail[1], htole16(q->avail_idx), __ATOMIC_RELEASE);
        return head;
}

static int add_packed(Vd *d, VdQueue *q, int id, const uint64_t *gpa, const uint32_t *len,
                      const bool *write, unsigned n, bool indirect) {
        VqDescPacked *ring = q->desc;
        uint16_t head = q->avail_idx, head_flags = 0;
        uint16_t avail_bits = q->avail_wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
        VqDescPacked t_entries[4];
        unsigned slots = indirect ? 1 : n;

        if (indirect) {
                VqDescPacked *t = ram_ptr(d, q->extra_gpa + 64 * (uint64_t) id);
                if (n > 4)
                        return -EINVAL;
                for (unsigned i = 0; i < n; i++)
                        t_entries[i] = (VqDescPacked) { .addr = gpa[i], .len = len[i],
                                                        .flags = write[i] ? VIRTQ_DESC_F_WRITE : 0 };
                memcpy(t, t_entries, n * sizeof(VqDescPacked));
        }
        for (unsigned i = 0; i < slots; i++) {
                VqDescPacked *dd = &ring[q->avail_idx];
                uint16_t flags = avail_bits;
                if (indirect) {
                        dd->addr = q->extra_gpa + 64 * (uint64_t) id;
                        dd->len = 16 * n;
                        flags |= VIRTQ_DESC_F_INDIRECT;
                } else {
                        dd->addr = gpa[i];
                        dd->len = len[i];
                        flags |= (uint16_t) ((write[i] ? VIRTQ_DESC_F_WRITE : 0) |
                                             (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
                }
                dd->id = (uint16_t) id;
                if (i == 0)
                        head_flags = flags;
                else
                        __atomic_store_n(&dd->flags, flags, __ATOMIC_RELEASE);
                if (++q->avail_idx == q->size) {
                        q->avail_idx = 0;
                        q->avail_wrap = !q->avail_wrap;
                        avail_bits = q->avail_wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
                }
        }
        q->id_slots[id] = (uint16_t) slots;
        /* The head's flags last: it makes the whole chain available (2.8.21). */
        __atomic_store_n(&ring[head].flags, head_flags, __ATOMIC_RELEASE);
        return id;
}

int vd_add_chain(Vd *d, unsigned slot, const uint64_t *gpa, const uint32_t *len, const bool *write,
                 unsigned n, bool indirect) {
        VdQueue *q = &d->q[slot];
        int id = take_id(q);
        int r;

        if (id < 0)
                return -ENOSPC;
        r = q->packed ? add_packed(d, q, id, gpa, len, write, n, indirect)
                      : add_split(d, q, id, gpa, len, write, n, indirect);
        if (r < 0)
                put_id(q, (uint16_t) id);
        return r;
}

int vd_get_used(Vd *d, unsigned slot, uint16_t *id, uint32_t *len) {
        VdQueue *q = &d->q[slot];

        if (q->packed) {
                VqDescPacked *dd = &((VqDescPacked *) q->desc)[q->last_used];
                uint16_t flags = __atomic_load_n(&dd->flags, __ATOMIC_ACQUIRE);
                bool a = flags & VIRTQ_DESC_F_AVAIL, u = flags & VIRTQ_DESC_F_USED;
                if (a != q->used_wrap || u != q->used_wrap)
                        return 0;
                *id = dd->id;
                *len = dd->len;
                if (*id >= q->size)
                        return -EPROTO;
                unsigned s = q->last_used + q->id_slots[*id];
                if (s >= q->size) {
                        s -= q->size;
                        q->used_wrap = !q->used_wrap;
                }
                q->last_used = (uint16_t) s;
                put_id(q, *id);
                return 1;
        }

        uint16_t *used16 = q->dev;
        uint16_t idx = __atomic_load_n(&used16[1], __ATOMIC_ACQUIRE);
        if (idx == q->last_used)
                return 0;
        VqUsedElem *e = (VqUsedElem *) ((uint8_t *) q->dev + 4) + (q->last_used & (q->size - 1));
        *id = (uint16_t) e->id;
        *len = e->len;
        q->last_used++;
        if (*id >= q->size)
                return -EPROTO;
        /* Free the chain: head and every descriptor linked from it. */
        VqDescSplit *desc = q->desc;
        uint16_t cur = *id;
        for (unsigned i = 0; i < q->size; i++) {
                uint16_t fl = desc[cur].flags, nx = desc[cur].next;
                put_id(q, cur);
                if (!(fl & VIRTQ_DESC_F_NEXT) || (fl & VIRTQ_DESC_F_INDIRECT))
                        break;
                cur = nx;
        }
        return 1;
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vd_wait_used(Vd *d, unsigned slot, uint16_t *id, uint32_t *len, int timeout_ms) {
        int64_t end = now_ms() + timeout_ms;

        for (;;) {
                int r = vd_get_used(d, slot, id, len);
                if (r != 0)
                        return r;
                int64_t left = end - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                /* A register read is a round trip: look at the status only when no interrupt came. */
                if (d->ops->wait_irq(d->opaque, d->q[slot].vector, (int) (left < 20 ? left : 20)) == 0 &&
                    (vd_status(d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
                        return -EIO;
        }
}

int vd_send(Vd *d, unsigned pair, const VNetHdr *hdr, const void *frame, size_t len) {
        unsigned slot = 2 * pair + 1;
        VdQueue *q = &d->q[slot];
        int id;

        if (len + VNET_HDR_LEN > vd_buf_len(d))
                return -EMSGSIZE;
        vd_tx_reclaim(d, pair);
        id = q->n_free ? q->free_ids[q->n_free - 1] : -1;
        if (id < 0)
                return -ENOSPC;
        uint64_t b = q->buf_gpa + (uint64_t) id * vd_buf_len(d);
        memcpy(ram_ptr(d, b), hdr, VNET_HDR_LEN);
        memcpy(ram_ptr(d, b + VNET_HDR_LEN), frame, len);
        uint64_t gpa[2] = { b, b + VNET_HDR_LEN };
        uint32_t l[2] = { VNET_HDR_LEN, (uint32_t) len };
        bool w[2] = { false, false };
        int r;
        if (d->split_tx || d->indirect_tx)
                r = vd_add_chain(d, slot, gpa, l, w, 2, d->indirect_tx);
        else {
                l[0] = (uint32_t) (VNET_HDR_LEN + len);
                r = vd_add_chain(d, slot, gpa, l, w, 1, false);
        }
        if (r < 0)
                return r;
        if (!d->hold_tx_kick)
                vd_kick(d, slot);
        return 0;
}

int vd_tx_reclaim(Vd *d, unsigned pair) {
        uint16_t id;
        uint32_t len;
        int n = 0;

        while (vd_get_used(d, 2 * pair + 1, &id, &len) > 0)
                n++;
        return n;
}

int vd_rx_post(Vd *d, unsigned pair) {
        VdQueue *q = &d->q[2 * pair];
        uint16_t old = q->avail_idx;
        int n = 0;

        /* Single-descriptor buffers: split ids are descriptor indices, packed ids ring slots. */
        while (q->n_free > 0) {
                uint16_t id = q->free_ids[q->n_free - 1];
                uint64_t gpa = q->buf_gpa + (uint64_t) id * vd_buf_len(d);
                uint32_t len = d->rx_len && d->rx_len < vd_buf_len(d) ? d->rx_len : vd_buf_len(d);
                bool w = true;
                if (vd_add_chain(d, 2 * pair, &gpa, &len, &w, 1, false) < 0)
                        break;
                n++;
        }
        if (n)
                kick_if_wanted(d, 2 * pair, old);
        return n;
}

/*
 * Interrupt suppression for a split queue, as Linux's virtqueue_enable_cb /
 * virtqueue_disable_cb do it.  Enabling asks for an interrupt at the next used
 * element (2.7.10 used_event = the index we have consumed up to, or 2.7.7
 * clearing NO_INTERRUPT); disabling with EVENT_IDX leaves used_event behind
 * the used index, so the device stays quiet until we enable again.
 */
static void irq_enable(Vd *d, VdQueue *q) {
        uint16_t *avail = q->drv;

        if (q->packed)
                return;                 /* packed: the driver area keeps its default, interrupts on */
        if (virtio_has(d->features, VIRTIO_F_EVENT_IDX))
                __atomic_store_n(&avail[2 + q->size], htole16(q->last_used), __ATOMIC_RELEASE);
        else
                __atomic_store_n(&avail[0], htole16(0), __ATOMIC_RELEASE);
        /* The store must be visible before we look at the used ring again (2.7.7.2). */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void vd_irq_enable(Vd *d, unsigned slot) {
        irq_enable(d, &d->q[slot]);
}

static void irq_disable(Vd *d, VdQueue *q) {
        uint16_t *avail = q->drv;

        if (q->packed || virtio_has(d->features, VIRTIO_F_EVENT_IDX))
                return;
        __atomic_store_n(&avail[0], htole16(VIRTQ_AVAIL_F_NO_INTERRUPT), __ATOMIC_RELEASE);
}

/*
 * The next used receive buffer, NAPI style: poll the used ring; when it is
 * empty, refill every free buffer (one kick at most), enable the interrupt,
 * look once more (the race-free re-check), and only then sleep.  While frames
 * keep coming no interrupt is asked for and no buffer is posted one by one.
 */
static int rx_wait_used(Vd *d, unsigned pair, uint16_t *id, uint32_t *len, int timeout_ms) {
        unsigned slot = 2 * pair;
        VdQueue *q = &d->q[slot];
        int64_t end = now_ms() + timeout_ms;

        if (!d->napi_rx)
                return vd_wait_used(d, slot, id, len, timeout_ms);
        for (;;) {
                int r = vd_get_used(d, slot, id, len);
                if (r != 0)
                        return r;
                vd_rx_post(d, pair);
                irq_enable(d, q);
                r = vd_get_used(d, slot, id, len);
                if (r != 0) {
                        irq_disable(d, q);
                        return r;
                }
                int64_t left = end - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                int fired = d->ops->wait_irq(d->opaque, q->vector, (int) (left < 20 ? left : 20));
                irq_disable(d, q);
                /* A register read is a round trip: look at the status only when no interrupt came. */
                if (fired == 0 && (vd_status(d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
                        return -EIO;
        }
}

ssize_t vd_recv(Vd *d, unsigned pair, VNetHdr *hdr, void *buf, size_t cap, int timeout_ms) {
        VdQueue *q = &d->q[2 * pair];
        uint16_t id;
        uint32_t len;
        size_t got = 0;
        unsigned nbufs = 1;
        int r;

        for (unsigned i = 0; i < nbufs; i++) {
                r = rx_wait_used(d, pair, &id, &len, timeout_ms);
                if (r < 0)
                        return r;
                uint8_t *p = ram_ptr(d, q->buf_gpa + (uint64_t) id * vd_buf_len(d));
                if (len > vd_buf_len(d))
                        return -EPROTO;
                if (i == 0) {
                        if (len < VNET_HDR_LEN)
                                return -EPROTO;
                        memcpy(hdr, p, VNET_HDR_LEN);
                        nbufs = le16toh(hdr->num_buffers);
                        if (nbufs == 0 || (!virtio_has(d->features, VIRTIO_NET_F_MRG_RXBUF) && nbufs != 1))
                                return -EPROTO;
                        p += VNET_HDR_LEN;
                        len -= VNET_HDR_LEN;
                }
                if (got + len > cap)
                        return -EMSGSIZE;
                memcpy((uint8_t *) buf + got, p, len);
                got += len;
        }
        /* NAPI style refills in batches, once a good part of the ring is used, as virtio_net does. */
        if (!d->napi_rx || q->n_free >= q->size / 4u)
                vd_rx_post(d, pair);
        return (ssize_t) got;
}

int vd_ctrl(Vd *d, uint8_t cls, uint8_t cmd, const void *data, size_t len, int timeout_ms) {
        VdQueue *q;
        uint16_t id;
        uint32_t ulen;
        int r, slot = d->ctrl;

        if (slot < 0)
                return -ENOTSUP;
        q = &d->q[slot];
        if (!q->n_free || len + 2 > vd_buf_len(d))
                return -ENOSPC;
        uint16_t bid = q->free_ids[q->n_free - 1];
        uint64_t b = q->buf_gpa + (uint64_t) bid * vd_buf_len(d);
        uint64_t ack = q->extra_gpa + 64 * (uint64_t) bid + 63;
        uint8_t *p = ram_ptr(d, b);
        p[0] = cls;
        p[1] = cmd;
        if (len)
                memcpy(p + 2, data, len);
        *(uint8_t *) ram_ptr(d, ack) = 0xee;
        uint64_t gpa[3] = { b, b + 2, ack };
        uint32_t l[3] = { 2, (uint32_t) len, 1 };
        bool w[3] = { false, false, true };
        if (len == 0) {
                gpa[1] = ack;
                l[1] = 1;
                w[1] = true;
        }
        uint16_t old = q->avail_idx;
        r = vd_add_chain(d, (unsigned) slot, gpa, l, w, len ? 3 : 2, false);
        if (r < 0)
                return r;
        kick_if_wanted(d, (unsigned) slot, old);
        r = vd_wait_used(d, (unsigned) slot, &id, &ulen, timeout_ms);
        if (r < 0)
                return r;
        return *(uint8_t *) ram_ptr(d, ack);
}
