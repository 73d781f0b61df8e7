/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Admin command set (NVMe 1.4 §5): the opcode table that drives dispatch
 * and the Commands Supported and Effects log, queue management (§5.3-5.6),
 * Abort (§5.1) and Doorbell Buffer Config (§5.7).
 */
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

#define EFF_CSUPP (1u << 0)
#define EFF_LBCC  (1u << 1)

NvmeStatus nvme_data_to_host(NvmeCtrl *c, NvmeReq *req, const void *buf, size_t len) {
        if (!c->mem)
                return NVME_SC_DATA_XFER_ERROR;
        NvmeStatus st = nvme_map_dptr(c->mem, &req->cmd, len, VU_PROT_WRITE, req->sq->qid == 0, &req->iov);
        if (st)
                return st;
        nvme_iov_from_buf(&req->iov, buf, len);
        return NVME_SUCCESS;
}

NvmeStatus nvme_data_from_host(NvmeCtrl *c, NvmeReq *req, void *buf, size_t len) {
        if (!c->mem)
                return NVME_SC_DATA_XFER_ERROR;
        NvmeStatus st = nvme_map_dptr(c->mem, &req->cmd, len, VU_PROT_READ, req->sq->qid == 0, &req->iov);
        if (st)
                return st;
        nvme_iov_to_buf(&req->iov, buf, len);
        return NVME_SUCCESS;
}

/* How many I/O queues the host may create: what Set Features 07h granted. */
static unsigned nvme_max_sqid(const NvmeCtrl *c) {
        return c->feat.nq_set ? c->feat.nsqa + 1u : c->cfg.max_ioqs;
}

static unsigned nvme_max_cqid(const NvmeCtrl *c) {
        return c->feat.nq_set ? c->feat.ncqa + 1u : c->cfg.max_ioqs;
}

/* §5.5 Create I/O Completion Queue. */
static NvmeStatus nvme_adm_create_cq(NvmeCtrl *c, NvmeReq *req) {
        uint16_t qid = req->cmd.cdw10 & 0xffff;
        uint32_t qsize = (req->cmd.cdw10 >> 16) + 1;
        bool pc = req->cmd.cdw11 & 1, ien = req->cmd.cdw11 & 2;
        uint16_t iv = req->cmd.cdw11 >> 16;
        uint64_t base = req->cmd.prp1;

        if (qid == 0 || qid > nvme_max_cqid(c) || c->cq[qid].created)
                return NVME_SC_INVALID_QID;
        if (qsize < 2 || qsize > NVME_MQES + 1)
                return NVME_SC_INVALID_QSIZE;
        if (!pc || NVME_CC_IOCQES(c->cc) != 4)
                return NVME_SC_INVALID_FIELD;   /* CAP.CQR: queues are physically contiguous */
        if (ien && iv >= c->cfg.msix_nvec)
                return NVME_SC_INVALID_VECTOR;
        if (base & NVME_PAGE_MASK)
                return NVME_SC_PRP_OFFSET_INVALID;
        if (!c->mem || !nvme_mem_ptr(c->mem, base, (size_t) qsize * sizeof(NvmeCqe), VU_PROT_WRITE))
                return NVME_SC_INVALID_FIELD;
        return nvme_cq_create(c, qid, qsize, base, ien, iv);
}

/* §5.4 Create I/O Submission Queue. */
static NvmeStatus nvme_adm_create_sq(NvmeCtrl *c, NvmeReq *req) {
        uint16_t qid = req->cmd.cdw10 & 0xffff;
        uint32_t qsize = (req->cmd.cdw10 >> 16) + 1;
        bool pc = req->cmd.cdw11 & 1;
        uint16_t cqid = req->cmd.cdw11 >> 16;
        uint64_t base = req->cmd.prp1;

        if (qid == 0 || qid > nvme_max_sqid(c) || c->sq[qid].created)
                return NVME_SC_INVALID_QID;
        if (cqid == 0 || cqid > c->cfg.max_ioqs || !c->cq[cqid].created)
                return NVME_SC_CQ_INVALID;
        if (qsize < 2 || qsize > NVME_MQES + 1)
                return NVME_SC_INVALID_QSIZE;
        if (!pc || NVME_CC_IOSQES(c->cc) != 6)
                return NVME_SC_INVALID_FIELD;
        if (base & NVME_PAGE_MASK)
                return NVME_SC_PRP_OFFSET_INVALID;
        if (!c->mem || !nvme_mem_ptr(c->mem, base, (size_t) qsize * sizeof(NvmeSqe), VU_PROT_READ))
                return NVME_SC_INVALID_FIELD;
        return nvme_sq_create(c, qid, cqid, qsize, base);
}

/* §5.6 Delete I/O Submission Queue: in-progress commands finish first. */
static NvmeStatus nvme_adm_delete_sq(NvmeCtrl *c, NvmeReq *req) {
        uint16_t qid = req->cmd.cdw10 & 0xffff;

        if (qid == 0 || qid > c->cfg.max_ioqs || !c->sq[qid].created || c->sq[qid].deleting)
                return NVME_SC_INVALID_QID;
        NvmeSQ *sq = &c->sq[qid];
        sq->deleting = true;
        if (sq->inflight == 0) {
                nvme_sq_destroy(c, sq);
                return NVME_SUCCESS;
        }
        sq->delete_req = req;
        return NVME_ASYNC;
}

/* §5.3 Delete I/O Completion Queue. */
static NvmeStatus nvme_adm_delete_cq(NvmeCtrl *c, NvmeReq *req) {
        uint16_t qid = req->cmd.cdw10 & 0xffff;

        if (qid == 0 || qid > c->cfg.max_ioqs || !c->cq[qid].created)
                return NVME_SC_INVALID_QID;
        if (c->cq[qid].n_sqs > 0)
                return NVME_SC_INVALID_QUEUE_DELETION;
        nvme_cq_destroy(c, &c->cq[qid]);
        return NVME_SUCCESS;
}

/*
 * §5.1 Abort: commands are executed as soon as they are fetched, so there
 * is never one waiting that could be aborted; dw0 bit 0 says "not aborted".
 */
static NvmeStatus nvme_adm_abort(NvmeCtrl *c, NvmeReq *req) {
        req->dw0 = 1;
        return NVME_SUCCESS;
}

/* §5.7 Doorbell Buffer Config: shadow doorbells and EventIdx for the I/O queues. */
static NvmeStatus nvme_adm_dbbuf_config(NvmeCtrl *c, NvmeReq *req) {
        uint64_t db = req->cmd.prp1, ei = req->cmd.prp2;

        if (!db || !ei || (db & NVME_PAGE_MASK) || (ei & NVME_PAGE_MASK) || db == ei)
                return NVME_SC_INVALID_FIELD;
        if (!c->mem || !nvme_mem_ptr(c->mem, db, NVME_PAGE_SIZE, VU_PROT_READ | VU_PROT_WRITE) ||
            !nvme_mem_ptr(c->mem, ei, NVME_PAGE_SIZE, VU_PROT_WRITE))
                return NVME_SC_INVALID_FIELD;
        c->dbbuf_db = db;
        c->dbbuf_ei = ei;
        for (uint16_t q = 1; q <= c->cfg.max_ioqs; q++) {
                /* Existing queues: seed the shadow values with where we are. */
                if (c->sq[q].created && !c->sq[q].shadow)
                        nvme_mem_write(c->mem, db + 8ull * q, &c->sq[q].tail, 4);
                if (c->cq[q].created && !c->cq[q].shadow)
                        nvme_mem_write(c->mem, db + 8ull * q + 4, &c->cq[q].head, 4);
                nvme_queue_shadow_enable(c, q);
        }
        return NVME_SUCCESS;
}

const NvmeCmdDesc nvme_admin_cmds[256] = {
        [NVME_ADM_DELETE_SQ] = { "delete-io-sq", nvme_adm_delete_sq, EFF_CSUPP, true },
        [NVME_ADM_CREATE_SQ] = { "create-io-sq", nvme_adm_create_sq, EFF_CSUPP, true },
        [NVME_ADM_GET_LOG_PAGE] = { "get-log-page", nvme_adm_get_log_page, EFF_CSUPP },
        [NVME_ADM_DELETE_CQ] = { "delete-io-cq", nvme_adm_delete_cq, EFF_CSUPP, true },
        [NVME_ADM_CREATE_CQ] = { "create-io-cq", nvme_adm_create_cq, EFF_CSUPP, true },
        [NVME_ADM_IDENTIFY] = { "identify", nvme_adm_identify, EFF_CSUPP },
        [NVME_ADM_ABORT] = { "abort", nvme_adm_abort, EFF_CSUPP },
        [NVME_ADM_SET_FEATURES] = { "set-features", nvme_adm_set_features, EFF_CSUPP, true },
        [NVME_ADM_GET_FEATURES] = { "get-features", nvme_adm_get_features, EFF_CSUPP },
        [NVME_ADM_ASYNC_EVENT] = { "async-event-request", nvme_adm_async_event, EFF_CSUPP },
        [NVME_ADM_DBBUF_CONFIG] = { "doorbell-buffer-config", nvme_adm_dbbuf_config, EFF_CSUPP, true },
};

NvmeStatus nvme_admin_exec(NvmeCtrl *c, NvmeReq *req) {
        const NvmeCmdDesc *d = &nvme_admin_cmds[req->cmd.opcode];

        if (NVME_SQE_FUSE(req->cmd.flags))
                return NVME_SC_INVALID_FIELD;   /* no fused operations (FUSES = 0) */
        if (!d->exec)
                return NVME_SC_INVALID_OPCODE;
        if (!d->all_threads)
                return d->exec(c, req);
        /* Queues, shadow doorbells, interrupt settings of other threads: they park (drained). */
        nvme_threads_pause_others(c);
        NvmeStatus st = d->exec(c, req);
        nvme_threads_resume_others(c);
        return st;
}
