/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Executing requests (virtio-v1.2 5.2.6) on the I/O thread: each chain
 * taken from a queue gets a request slot, is parsed, and becomes a block
 * backend request (discard and write zeroes: one per segment, chained from
 * the completions).  Completions write the status byte, report what the
 * device wrote to dirty logging, and go to the used ring; the interrupt
 * decision is made once per round (vblk_queue_flush).
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "vblk/vblk-priv.h"
#include "virtio/virtio.h"

/* Make room for n entries in a slot's array; false when the allocation fails. */
static bool grow(void **arr, unsigned *cap, unsigned n, size_t elem) {
        if (n <= *cap)
                return true;
        void *p = g_try_realloc_n(*arr, n, elem);
        if (!p)
                return false;
        *arr = p;
        *cap = n;
        return true;
}

/* The latency histogram of a request type; _LAT_OP_MAX: none (GET_ID, unknown types). */
static LatOp lat_op(uint32_t type) {
        switch (type) {
        case VIRTIO_BLK_T_IN: return LAT_OP_READ;
        case VIRTIO_BLK_T_OUT: return LAT_OP_WRITE;
        case VIRTIO_BLK_T_FLUSH: return LAT_OP_FLUSH;
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES: return LAT_OP_OTHER;
        default: return _LAT_OP_MAX;
        }
}

static void req_complete(VBlkReq *req, uint8_t status) {
        VBlkQueue *q = req->q;
        VBlk *b = q->b;
        VirtQueue *vq = q->vq;
        LatOp op = lat_op(req->cmd.type);

        if (op != _LAT_OP_MAX)
                lat_stats_add(&b->lat, op, b->pass_ns > req->t_start ? b->pass_ns - req->t_start : 0);

        __atomic_store_n(req->cmd.status, status, __ATOMIC_RELAXED);
        /* Every writable byte may have been written (data, status): report all of it. */
        for (unsigned i = 0; i < req->n_wseg; i++)
                vu_mem_mark_dirty(vq->mem, req->wseg[i].gpa, req->wseg[i].len);
        vq_push(vq, req->id, req->ndesc, req->cmd.used_len);
        q->completed = true;
        if (status == VIRTIO_BLK_S_IOERR)
                VBLK_STAT_ADD(b, io_errors, 1);
        else if (status == VIRTIO_BLK_S_UNSUPP)
                VBLK_STAT_ADD(b, unsupported, 1);
        req->next_free = q->free;
        q->free = req;
        q->inflight--;
        __atomic_fetch_sub(&b->c.inflight, 1, __ATOMIC_RELAXED);
}

static void req_done(BlkRequest *br, int ret);

static int req_submit(VBlkReq *req) {
        VBlk *b = req->q->b;
        int r;

        req->blk.cb = req_done;
        req->blk.opaque = req;
        r = blk_backend_submit(b->be, &req->blk);
        if (r == 0)
                b->inflight++;
        return r;
}

/* Writes are durable at completion unless the guest's write cache is on (5.2.6.1 stable writes). */
static unsigned durability_flags(VBlk *b) {
        return __atomic_load_n(&b->writeback, __ATOMIC_RELAXED) ? 0 : BLK_F_FUA;
}

/* DISCARD/WRITE_ZEROES: submit the next segment.  1 submitted, 0 none left, -errno. */
static int dwz_next(VBlkReq *req) {
        VBlk *b = req->q->b;

        if (req->step >= req->cmd.nseg)
                return 0;
        const VBlkDwzSeg *s = &req->cmd.seg[req->step++];
        bool wz = req->cmd.type == VIRTIO_BLK_T_WRITE_ZEROES;
        unsigned flags = 0;

        if (wz) {
                flags = durability_flags(b);
                if ((s->flags & VIRTIO_BLK_WZ_F_UNMAP) && (b->be->caps & BLK_CAP_WRITE_ZEROES_UNMAP))
                        flags |= BLK_F_UNMAP;
        }
        req->blk = (BlkRequest) {
                .op = wz ? BLK_WRITE_ZEROES : BLK_DISCARD,
                .flags = flags,
                .offset = s->sector << VBLK_SECTOR_SHIFT,
                .len = (uint64_t) s->num_sectors << VBLK_SECTOR_SHIFT,
        };
        if (req->blk.len == 0)
                return dwz_next(req);
        int r = req_submit(req);
        return r < 0 ? r : 1;
}

static void req_done(BlkRequest *br, int ret) {
        VBlkReq *req = (VBlkReq *) br;
        VBlk *b = req->q->b;

        b->inflight--;
        if (ret == 0 && (req->cmd.type == VIRTIO_BLK_T_DISCARD || req->cmd.type == VIRTIO_BLK_T_WRITE_ZEROES)) {
                ret = dwz_next(req);
                if (ret > 0)
                        return;
        }
        if (ret == 0) {
                if (req->cmd.type == VIRTIO_BLK_T_IN) {
                        VBLK_STAT_ADD(b, read_reqs, 1);
                        VBLK_STAT_ADD(b, read_bytes, req->cmd.data_len);
                } else if (req->cmd.type == VIRTIO_BLK_T_OUT) {
                        VBLK_STAT_ADD(b, write_reqs, 1);
                        VBLK_STAT_ADD(b, write_bytes, req->cmd.data_len);
                }
        }
        req_complete(req, ret == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
}

/* Start a parsed request; it completes now or from the backend. */
static void req_exec(VBlkReq *req) {
        VBlk *b = req->q->b;
        VBlkCmd *cmd = &req->cmd;
        int r;

        switch (cmd->type) {
        case VIRTIO_BLK_T_IN:
        case VIRTIO_BLK_T_OUT:
                if (cmd->data_len == 0) {
                        req_complete(req, VIRTIO_BLK_S_OK);
                        return;
                }
                req->blk = (BlkRequest) {
                        .op = cmd->type == VIRTIO_BLK_T_OUT ? BLK_WRITE : BLK_READ,
                        .flags = cmd->type == VIRTIO_BLK_T_OUT ? durability_flags(b) : 0,
                        .offset = cmd->sector << VBLK_SECTOR_SHIFT,
                        .len = cmd->data_len,
                        .iov = req->iov,
                        .niov = cmd->niov,
                };
                r = req_submit(req);
                break;
        case VIRTIO_BLK_T_FLUSH:
                VBLK_STAT_ADD(b, flush_reqs, 1);
                req->blk = (BlkRequest) { .op = BLK_FLUSH };
                r = req_submit(req);
                break;
        case VIRTIO_BLK_T_GET_ID: {
                uint8_t id[VBLK_ID_BYTES];
                VBLK_STAT_ADD(b, get_id_reqs, 1);
                vblk_id_bytes(b->serial, id);
                vq_buf_to_iov(req->iov, cmd->niov, 0, id, (size_t) cmd->data_len);
                req_complete(req, VIRTIO_BLK_S_OK);
                return;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
                if (cmd->type == VIRTIO_BLK_T_DISCARD)
                        VBLK_STAT_ADD(b, discard_reqs, 1);
                else
                        VBLK_STAT_ADD(b, write_zeroes_reqs, 1);
                req->step = 0;
                r = dwz_next(req);
                if (r == 0) {
                        req_complete(req, VIRTIO_BLK_S_OK);
                        return;
                }
                break;
        default:
                r = -EINVAL;    /* the parser answers every other type */
                break;
        }
        if (r < 0)
                req_complete(req, VIRTIO_BLK_S_IOERR);
}

/* Take chain c into slot req.  0, or -EINVAL for a chain that cannot be answered. */
static int req_start(VBlkQueue *q, VBlkReq *req, const VqChain *c) {
        VBlk *b = q->b;
        unsigned need = c->out_num + c->in_num;
        int r;

        req->id = c->id;
        req->ndesc = c->ndesc;
        req->t_start = b->pass_ns;
        req->n_wseg = 0;
        if (!grow((void **) &req->wseg, &req->wseg_cap, c->n_in_seg, sizeof(VqSeg)))
                return -ENOMEM;
        if (c->n_in_seg)
                memcpy(req->wseg, c->in_seg, c->n_in_seg * sizeof(VqSeg));
        req->n_wseg = c->n_in_seg;
        /* Without room for the data iovecs the parser answers IOERR. */
        if (!grow((void **) &req->iov, &req->iov_cap, need, sizeof(struct iovec)))
                need = 0;
        r = vblk_req_parse(&b->lim, c, &req->cmd, req->iov, MIN(need, req->iov_cap));
        if (r < 0)
                return r;
        q->inflight++;
        __atomic_fetch_add(&b->c.inflight, 1, __ATOMIC_RELAXED);
        if (r == VBLK_PARSE_DONE)
                req_complete(req, req->cmd.answer);
        else
                req_exec(req);
        return 0;
}

int vblk_queue_process(VBlkQueue *q, unsigned budget) {
        VBlk *b = q->b;
        VirtQueue *vq = q->vq;
        int taken = 0;

        if (!vq || !vq_ready(vq))
                return 0;
        vq_notify_disable(vq);
        while (taken < (int) budget && q->free) {
                int r = vq_pop(vq, b->chain);
                if (r == 0)
                        break;
                if (r < 0) {
                        VBLK_STAT_ADD(b, bad_chains, 1);
                        vblk_guest_error(b, q, "descriptor chain", r);
                        return r;
                }
                VBlkReq *req = q->free;
                q->free = req->next_free;
                r = req_start(q, req, b->chain);
                if (r < 0) {
                        req->next_free = q->free;
                        q->free = req;
                        if (r == -ENOMEM) {
                                vq_unpop(vq, 1, b->chain->ndesc);
                                break;          /* try again when memory is back */
                        }
                        VBLK_STAT_ADD(b, bad_chains, 1);
                        vq->broken = true;      /* nothing more from this queue until reset */
                        vblk_guest_error(b, q, "request without header or status byte", r);
                        return r;
                }
                taken++;
        }
        return taken;
}

void vblk_queue_flush(VBlkQueue *q) {
        if (!q->completed)
                return;
        q->completed = false;
        if (q->vq)
                vq_flush(q->vq);
}
