/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NVM command set (NVMe 1.4 §6): Flush, Write (FUA), Read, Write Zeroes
 * (DEAC), Dataset Management (deallocate).  Commands become block backend
 * requests; multi-step commands (flush of every namespace, DSM with several
 * ranges) chain their steps from the completion callback.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

#define EFF_CSUPP (1u << 0)
#define EFF_LBCC  (1u << 1)

static NvmeStatus nvme_errno_status(int err, BlkOp op) {
        switch (err) {
        case 0:
                return NVME_SUCCESS;
        case -EROFS:
                return NVME_SC_NS_WRITE_PROTECTED;
        case -ERANGE:
                return NVME_SC_LBA_RANGE;
        case -ENOSPC:
        case -EDQUOT:
                return NVME_SC_CAP_EXCEEDED;
        case -ENOMEM:
                return NVME_SC_INTERNAL;
        case -ENOTCONN:
                /* A network backend waited for its server in vain: DNR clear, the host retries. */
                return NVME_SC_NS_NOT_READY;
        default:
                return op == BLK_READ ? NVME_SC_UNRECOVERED_READ
                     : op == BLK_WRITE || op == BLK_WRITE_ZEROES ? NVME_SC_WRITE_FAULT
                     : NVME_SC_INTERNAL;
        }
}

static void nvme_io_done(BlkRequest *b, int ret);

static NvmeStatus nvme_io_submit(NvmeCtrl *c, NvmeReq *req, NvmeNs *ns) {
        req->blk.cb = nvme_io_done;
        req->blk.opaque = ns;
        /* The submitting thread's own context in the backend: no lock, no shared ring. */
        NvmeIoThread *t = req->sq->t;
        int r = blk_backend_submit(ns->be[t->idx], &req->blk);
        if (r < 0)
                return nvme_errno_status(r, req->blk.op);
        t->backend_inflight++;
        return NVME_ASYNC;
}

/* The next step of a multi-step command, or NVME_SUCCESS when none is left. */
static NvmeStatus nvme_io_next_step(NvmeCtrl *c, NvmeReq *req) {
        while (req->aux_idx < req->aux_count) {
                unsigned i = req->aux_idx++;
                if (req->cmd.opcode == NVME_CMD_FLUSH) {
                        NvmeNs *ns = nvme_ns_get(c, ((uint32_t *) req->aux)[i]);
                        if (!ns)
                                continue;
                        req->blk = (BlkRequest) { .op = BLK_FLUSH };
                        return nvme_io_submit(c, req, ns);
                }
                const NvmeDsmRange *r = &((const NvmeDsmRange *) req->aux)[i];
                if (r->nlb == 0)
                        continue;
                req->blk = (BlkRequest) {
                        .op = BLK_DISCARD,
                        .offset = r->slba << req->ns->lbads,
                        .len = (uint64_t) r->nlb << req->ns->lbads,
                };
                return nvme_io_submit(c, req, req->ns);
        }
        return NVME_SUCCESS;
}

static void nvme_io_done(BlkRequest *b, int ret) {
        NvmeReq *req = (NvmeReq *) b;
        NvmeCtrl *c = req->c;
        NvmeIoThread *t = req->sq->t;
        NvmeStatus st = nvme_errno_status(ret, b->op);

        t->backend_inflight--;
        if (st == NVME_SUCCESS && req->aux_idx < req->aux_count) {
                st = nvme_io_next_step(c, req);
                if (st == NVME_ASYNC)
                        return;
        }
        if (st == NVME_SUCCESS) {
                if (req->cmd.opcode == NVME_CMD_READ) {
                        atomic_fetch_add_explicit(&t->st.read_cmds, 1, memory_order_relaxed);
                        atomic_fetch_add_explicit(&t->st.read_bytes, req->bytes, memory_order_relaxed);
                } else if (req->cmd.opcode == NVME_CMD_WRITE) {
                        atomic_fetch_add_explicit(&t->st.write_cmds, 1, memory_order_relaxed);
                        atomic_fetch_add_explicit(&t->st.write_bytes, req->bytes, memory_order_relaxed);
                }
        }
        req->status = st;
        nvme_req_complete(req);
}

/* Common LBA-range checks (§6.15, §6.9): namespace, range, write protection. */
static NvmeStatus nvme_io_lba_check(NvmeCtrl *c, NvmeReq *req, bool write, uint64_t *slba, uint32_t *nlb) {
        NvmeNs *ns = nvme_ns_get(c, req->cmd.nsid);

        if (!ns)
                return NVME_SC_INVALID_NS;
        *slba = (uint64_t) req->cmd.cdw11 << 32 | req->cmd.cdw10;
        *nlb = (req->cmd.cdw12 & 0xffff) + 1;
        if (*slba > ns->nsze || *nlb > ns->nsze - *slba)
                return NVME_SC_LBA_RANGE;
        if (write && ns->read_only)
                return NVME_SC_NS_WRITE_PROTECTED;
        req->ns = ns;
        return NVME_SUCCESS;
}

static NvmeStatus nvme_io_rw(NvmeCtrl *c, NvmeReq *req) {
        bool write = req->cmd.opcode == NVME_CMD_WRITE;
        bool fua = req->cmd.cdw12 & (1u << 30);
        uint64_t slba;
        uint32_t nlb;

        NvmeStatus st = nvme_io_lba_check(c, req, write, &slba, &nlb);
        if (st)
                return st;
        uint64_t len = (uint64_t) nlb << req->ns->lbads;
        if (len > NVME_MAX_XFER)
                return NVME_SC_INVALID_FIELD;   /* above MDTS */
        if (!c->mem)
                return NVME_SC_DATA_XFER_ERROR;
        st = nvme_map_dptr(c->mem, &req->cmd, len, write ? VU_PROT_READ : VU_PROT_WRITE, false, &req->iov);
        if (st)
                return st;
        if (req->iov.has_bucket)
                for (unsigned i = 0; i < req->iov.n; i++)
                        if (!req->iov.iov[i].iov_base)
                                req->iov.iov[i].iov_base = req->sq->t->discard_buf;   /* ≤ MDTS bytes */
        req->bytes = len;
        req->blk = (BlkRequest) {
                .op = write ? BLK_WRITE : BLK_READ,
                /* Without a volatile write cache every write is durable when it completes. */
                .flags = write && (fua || !c->feat.wce) ? BLK_F_FUA : 0,
                .offset = slba << req->ns->lbads,
                .len = len,
                .iov = req->iov.iov,
                .niov = req->iov.n,
        };
        return nvme_io_submit(c, req, req->ns);
}

static NvmeStatus nvme_io_flush(NvmeCtrl *c, NvmeReq *req) {
        uint32_t nsid = req->cmd.nsid;

        if (nsid == 0xffffffffu) {
                /* VWC bits 2:1 = 11b: flush every namespace, one after the other. */
                uint32_t *ids = g_new(uint32_t, NVME_MAX_NS);
                unsigned n = 0;
                for (uint32_t i = 1; i <= NVME_MAX_NS; i++)
                        if (c->ns[i])
                                ids[n++] = i;
                req->aux = ids;
                req->aux_count = n;
                return nvme_io_next_step(c, req);
        }
        NvmeNs *ns = nvme_ns_get(c, nsid);
        if (!ns)
                return NVME_SC_INVALID_NS;
        req->ns = ns;
        req->blk = (BlkRequest) { .op = BLK_FLUSH };
        return nvme_io_submit(c, req, ns);
}

static NvmeStatus nvme_io_write_zeroes(NvmeCtrl *c, NvmeReq *req) {
        bool deac = req->cmd.cdw12 & (1u << 25), fua = req->cmd.cdw12 & (1u << 30);
        uint64_t slba;
        uint32_t nlb;

        NvmeStatus st = nvme_io_lba_check(c, req, true, &slba, &nlb);
        if (st)
                return st;
        unsigned flags = 0;
        if (deac && (req->ns->backend->caps & BLK_CAP_WRITE_ZEROES_UNMAP))
                flags |= BLK_F_UNMAP;
        if (fua || !c->feat.wce)
                flags |= BLK_F_FUA;
        req->blk = (BlkRequest) {
                .op = BLK_WRITE_ZEROES,
                .flags = flags,
                .offset = slba << req->ns->lbads,
                .len = (uint64_t) nlb << req->ns->lbads,
        };
        return nvme_io_submit(c, req, req->ns);
}

/* §6.7 Dataset Management: only the deallocate attribute does something. */
static NvmeStatus nvme_io_dsm(NvmeCtrl *c, NvmeReq *req) {
        unsigned nr = (req->cmd.cdw10 & 0xff) + 1;
        bool ad = req->cmd.cdw11 & (1u << 2);
        NvmeNs *ns = nvme_ns_get(c, req->cmd.nsid);

        if (!ns)
                return NVME_SC_INVALID_NS;
        if (!ad)
                return NVME_SUCCESS;            /* integral read/write hints: advisory */
        if (ns->read_only)
                return NVME_SC_NS_WRITE_PROTECTED;
        NvmeDsmRange *ranges = g_new(NvmeDsmRange, nr);
        req->aux = ranges;                      /* freed with the request */
        NvmeStatus st = nvme_data_from_host(c, req, ranges, nr * sizeof(NvmeDsmRange));
        if (st)
                return st;
        /* Validate the private copy, all ranges before the first discard. */
        for (unsigned i = 0; i < nr; i++)
                if (ranges[i].slba > ns->nsze || ranges[i].nlb > ns->nsze - ranges[i].slba)
                        return NVME_SC_LBA_RANGE;
        if (!(ns->backend->caps & BLK_CAP_DISCARD))
                return NVME_SUCCESS;
        req->ns = ns;
        req->aux_count = nr;
        return nvme_io_next_step(c, req);
}

const NvmeCmdDesc nvme_io_cmds[256] = {
        [NVME_CMD_FLUSH] = { "flush", nvme_io_flush, EFF_CSUPP },
        [NVME_CMD_WRITE] = { "write", nvme_io_rw, EFF_CSUPP | EFF_LBCC },
        [NVME_CMD_READ] = { "read", nvme_io_rw, EFF_CSUPP },
        [NVME_CMD_WRITE_ZEROES] = { "write-zeroes", nvme_io_write_zeroes, EFF_CSUPP | EFF_LBCC },
        [NVME_CMD_DSM] = { "dataset-management", nvme_io_dsm, EFF_CSUPP | EFF_LBCC },
};

NvmeStatus nvme_io_exec(NvmeCtrl *c, NvmeReq *req) {
        const NvmeCmdDesc *d = &nvme_io_cmds[req->cmd.opcode];

        if (NVME_SQE_FUSE(req->cmd.flags))
                return NVME_SC_INVALID_FIELD;
        if (!d->exec)
                return NVME_SC_INVALID_OPCODE;
        return d->exec(c, req);
}
