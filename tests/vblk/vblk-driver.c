/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <glib.h>

#include "virtio/virtio-pci.h"
#include "vblk-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_BLK_F_##x)

int vb_probe(VbDrv *v, Vd *d, uint64_t want, unsigned nq, uint16_t qsize) {
        int r;

        vb_fini(v);             /* a probe again (after a reset) starts over */
        memset(v, 0, sizeof(*v));
        v->d = d;
        /* virtio_blk init_vq(): num_queues only with MQ, else one queue. */
        unsigned max = 1;
        if (vd_device_features(d) & want & F(MQ)) {
                uint16_t n = 0;
                vd_cfg_read(d, offsetof(VBlkConfigSpace, num_queues), &n, 2);
                max = le16toh(n) ? le16toh(n) : 1;
        }
        if (nq == 0)
                nq = MIN(max, VD_MAX_QUEUES);
        if (nq > max)
                return -EINVAL;
        r = vd_probe_queues(d, want, nq, qsize);
        if (r < 0)
                return r;
        v->nq = nq;
        for (unsigned q = 0; q < nq; q++) {
                v->nslots[q] = 2u * d->q[q].size;
                v->slots[q] = g_new0(VbSlot, v->nslots[q]);
                uint64_t base = vd_alloc(d, (uint64_t) v->nslots[q] * VB_SLOT_SIZE, 64);
                if (!base)
                        return -ENOMEM;
                for (unsigned i = 0; i < v->nslots[q]; i++)
                        v->slots[q][i].gpa = base + (uint64_t) i * VB_SLOT_SIZE;
                for (unsigned i = 0; i < VB_MAX_INFLIGHT; i++)
                        v->by_id[q][i] = -1;
        }
        return 0;
}

void vb_fini(VbDrv *v) {
        for (unsigned q = 0; q < VD_MAX_QUEUES; q++)
                g_clear_pointer(&v->slots[q], g_free);
}

int vb_submit(VbDrv *v, unsigned q, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len,
              const VBlkDwzSeg *seg, unsigned nseg, void *user) {
        VbSlot *s = NULL;
        unsigned si;

        for (si = 0; si < v->nslots[q]; si++)
                if (!v->slots[q][si].busy) {
                        s = &v->slots[q][si];
                        break;
                }
        if (!s || nseg > VB_MAX_DWZ)
                return -ENOSPC;
        uint8_t *p = vd_ptr(v->d, s->gpa);
        VBlkReqHdr h = { .type = htole32(type), .sector = htole64(sector) };
        memcpy(p, &h, sizeof(h));
        p[16] = 0xff;                   /* the device must overwrite it */
        for (unsigned i = 0; i < nseg; i++) {
                VBlkDwzSeg le = { htole64(seg[i].sector), htole32(seg[i].num_sectors), htole32(seg[i].flags) };
                memcpy(p + 32 + 16 * i, &le, sizeof(le));
        }

        uint64_t gpa[3];
        uint32_t l[3];
        bool w[3];
        unsigned n = 0;
        gpa[n] = s->gpa;
        l[n] = VBLK_HDR_LEN;
        w[n++] = false;
        if (nseg) {
                gpa[n] = s->gpa + 32;
                l[n] = 16 * nseg;
                w[n++] = false;
        } else if (len) {
                gpa[n] = data_gpa;
                l[n] = len;
                w[n++] = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
        }
        gpa[n] = s->gpa + 16;
        l[n] = 1;
        w[n++] = true;
        if (!v->unkicked[q]) {
                v->unkicked[q] = true;
                v->kick_from[q] = v->d->q[q].avail_idx;
        }
        int id = vd_add_chain(v->d, q, gpa, l, w, n, v->indirect);
        if (id < 0)
                return id;
        if ((unsigned) id >= VB_MAX_INFLIGHT)
                return -EPROTO;
        s->busy = true;
        s->user = user;
        v->by_id[q][id] = (int16_t) si;
        return 0;
}

void vb_kick(VbDrv *v, unsigned q) {
        if (!v->unkicked[q])
                return;
        v->unkicked[q] = false;
        vd_kick_if_wanted(v->d, q, v->kick_from[q]);
}

static int64_t now_ms(void) {
        return g_get_monotonic_time() / 1000;
}

/* virtblk_done: drain the used ring; before sleeping, ask for the interrupt and look once more. */
static int wait_used(VbDrv *v, unsigned q, uint16_t *id, uint32_t *len, int timeout_ms) {
        int64_t end = now_ms() + timeout_ms;

        for (;;) {
                int r = vd_get_used(v->d, q, id, len);
                if (r != 0)
                        return r;
                vd_irq_enable(v->d, q);
                r = vd_get_used(v->d, q, id, len);
                if (r != 0)
                        return r;
                int64_t left = end - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                if (v->d->ops->wait_irq(v->d->opaque, v->d->q[q].vector, (int) MIN(left, 100)) == 0 &&
                    (vd_status(v->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET))
                        return -EIO;
        }
}

int vb_complete(VbDrv *v, unsigned q, uint8_t *status, uint32_t *used_len, void **user, int timeout_ms) {
        uint16_t id;
        uint32_t len;
        int r = wait_used(v, q, &id, &len, timeout_ms);

        if (r < 0)
                return r;
        if (id >= VB_MAX_INFLIGHT || v->by_id[q][id] < 0)
                return -EPROTO;
        VbSlot *s = &v->slots[q][v->by_id[q][id]];
        v->by_id[q][id] = -1;
        *status = ((uint8_t *) vd_ptr(v->d, s->gpa))[16];
        if (used_len)
                *used_len = len;
        if (user)
                *user = s->user;
        s->busy = false;
        return 1;
}

int vb_do(VbDrv *v, unsigned q, uint32_t type, uint64_t sector, uint64_t data_gpa, uint32_t len) {
        uint8_t st;
        int r = vb_submit(v, q, type, sector, data_gpa, len, NULL, 0, NULL);

        if (r < 0)
                return r;
        vb_kick(v, q);
        r = vb_complete(v, q, &st, NULL, NULL, 5000);
        return r < 0 ? r : st;
}

int vb_do_dwz(VbDrv *v, unsigned q, uint32_t type, const VBlkDwzSeg *seg, unsigned nseg) {
        uint8_t st;
        int r = vb_submit(v, q, type, 0, 0, 0, seg, nseg, NULL);

        if (r < 0)
                return r;
        vb_kick(v, q);
        r = vb_complete(v, q, &st, NULL, NULL, 5000);
        return r < 0 ? r : st;
}
