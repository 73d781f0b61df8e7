/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Submission and completion queues (NVMe 1.4 §4.1), doorbells and shadow
 * doorbells with EventIdx (§5.7 Doorbell Buffer Config), interrupts with
 * aggregation (§5.21.1.8).  Runs on the I/O thread (or with it parked).
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

void nvme_req_list_push(NvmeReqList *l, NvmeReq *r) {
        r->next = NULL;
        if (l->tail)
                l->tail->next = r;
        else
                l->head = r;
        l->tail = r;
}

NvmeReq *nvme_req_list_pop(NvmeReqList *l) {
        NvmeReq *r = l->head;
        if (r) {
                l->head = r->next;
                if (!l->head)
                        l->tail = NULL;
                r->next = NULL;
        }
        return r;
}

/* Dirty logging for writes through kept pointers (CQ entries, EventIdx). */
static void nvme_ptr_written(NvmeCtrl *c, uint64_t gpa, uint64_t len) {
        if (c->mem && c->mem->ops->mark_dirty)
                vu_mem_mark_dirty(c->mem, gpa, len);
}

static uint64_t nvme_ei_gpa(const NvmeCtrl *c, uint16_t qid, bool is_cq) {
        return c->dbbuf_ei + (2ull * qid + (is_cq ? 1 : 0)) * 4;
}

static void nvme_shadow_resolve(NvmeCtrl *c, uint16_t qid, bool is_cq,
                                volatile uint32_t **db, volatile uint32_t **ei) {
        uint64_t off = (2ull * qid + (is_cq ? 1 : 0)) * 4;   /* DSTRD = 0 */
        *db = nvme_mem_ptr(c->mem, c->dbbuf_db + off, 4, VU_PROT_READ);
        *ei = nvme_mem_ptr(c->mem, c->dbbuf_ei + off, 4, VU_PROT_WRITE);
}

static bool nvme_sq_resolve(NvmeCtrl *c, NvmeSQ *sq) {
        if (!c->mem)
                return false;
        if (!sq->ring)
                sq->ring = nvme_mem_ptr(c->mem, sq->gpa, (size_t) sq->size * sizeof(NvmeSqe), VU_PROT_READ);
        if (sq->shadow && (!sq->shadow_db || !sq->shadow_ei))
                nvme_shadow_resolve(c, sq->qid, false, &sq->shadow_db, &sq->shadow_ei);
        return sq->ring && (!sq->shadow || (sq->shadow_db && sq->shadow_ei));
}

static bool nvme_cq_resolve(NvmeCtrl *c, NvmeCQ *cq) {
        if (!c->mem)
                return false;
        if (!cq->ring)
                cq->ring = nvme_mem_ptr(c->mem, cq->gpa, (size_t) cq->size * sizeof(NvmeCqe), VU_PROT_WRITE);
        if (cq->shadow && (!cq->shadow_db || !cq->shadow_ei))
                nvme_shadow_resolve(c, cq->qid, true, &cq->shadow_db, &cq->shadow_ei);
        return cq->ring && (!cq->shadow || (cq->shadow_db && cq->shadow_ei));
}

/* The CQs thread t runs: io[0] has the admin CQ, then every thread each n_io-th I/O CQ. */
#define FOR_EACH_CQ_OF(t, q) \
        for (unsigned q = (t)->idx ? (t)->idx + 1 : 0; q <= (t)->c->cfg.max_ioqs; q = q ? q + (t)->c->n_io : 1)

void nvme_queues_forget_mappings(NvmeCtrl *c, NvmeIoThread *t) {
        for (unsigned i = 0; i < t->n_sqs; i++) {
                NvmeSQ *sq = &c->sq[t->sqs[i]];
                sq->ring = NULL;
                sq->shadow_db = sq->shadow_ei = NULL;
        }
        FOR_EACH_CQ_OF(t, q) {
                c->cq[q].ring = NULL;
                c->cq[q].shadow_db = c->cq[q].shadow_ei = NULL;
        }
}

void nvme_queue_shadow_enable(NvmeCtrl *c, uint16_t qid) {
        /* The admin queue keeps MMIO doorbells: hosts (Linux) only shadow I/O queues. */
        if (qid == 0 || !c->dbbuf_db)
                return;
        NvmeSQ *sq = &c->sq[qid];
        NvmeCQ *cq = &c->cq[qid];
        if (sq->created && !sq->shadow) {
                sq->shadow = true;
                sq->shadow_db = sq->shadow_ei = NULL;
                if (nvme_sq_resolve(c, sq)) {
                        __atomic_store_n(sq->shadow_ei, sq->tail, __ATOMIC_RELEASE);
                        nvme_ptr_written(c, nvme_ei_gpa(c, qid, false), 4);
                }
        }
        if (cq->created && !cq->shadow) {
                cq->shadow = true;
                cq->shadow_db = cq->shadow_ei = NULL;
                if (nvme_cq_resolve(c, cq)) {
                        __atomic_store_n(cq->shadow_ei, cq->head, __ATOMIC_RELEASE);
                        nvme_ptr_written(c, nvme_ei_gpa(c, qid, true), 4);
                }
        }
}

NvmeStatus nvme_cq_create(NvmeCtrl *c, uint16_t qid, uint32_t size, uint64_t gpa, bool ien, uint16_t vector) {
        NvmeCQ *cq = &c->cq[qid];

        memset(cq, 0, sizeof(*cq));
        cq->qid = qid;
        cq->size = size;
        cq->gpa = gpa;
        cq->ien = ien;
        cq->vector = vector;
        cq->phase = 1;
        cq->t = nvme_cq_thread(c, qid);
        cq->created = true;
        c->db_val[2 * qid + 1] = 0;
        nvme_queue_shadow_enable(c, qid);
        return NVME_SUCCESS;
}

NvmeStatus nvme_sq_create(NvmeCtrl *c, uint16_t qid, uint16_t cqid, uint32_t size, uint64_t gpa) {
        NvmeSQ *sq = &c->sq[qid];
        unsigned nreqs = MIN(size, NVME_SQ_MAX_INFLIGHT);

        if (cqid > c->cfg.max_ioqs || !c->cq[cqid].created)
                return NVME_SC_CQ_INVALID;
        NvmeReq *reqs = g_try_new0(NvmeReq, nreqs);
        if (!reqs)
                return NVME_SC_INTERNAL;
        memset(sq, 0, sizeof(*sq));
        sq->qid = qid;
        sq->cqid = cqid;
        sq->size = size;
        sq->gpa = gpa;
        sq->reqs = reqs;
        sq->nreqs = nreqs;
        for (unsigned i = 0; i < nreqs; i++) {
                reqs[i].c = c;
                reqs[i].sq = sq;
                reqs[i].next = i + 1 < nreqs ? &reqs[i + 1] : NULL;
                reqs[i].iov.ext_free = &sq->iov_ext_free;
                nvme_iov_reset(&reqs[i].iov);
        }
        sq->free = &reqs[0];
        /* An SQ runs where its CQ does: its completions never cross threads. */
        sq->t = c->cq[cqid].t;
        sq->t->sqs[sq->t->n_sqs++] = qid;
        atomic_store(&c->sq_thread[qid], (uint8_t) sq->t->idx);
        sq->created = true;
        c->cq[cqid].n_sqs++;
        c->db_val[2 * qid] = 0;
        nvme_queue_shadow_enable(c, qid);
        return NVME_SUCCESS;
}

void nvme_sq_destroy(NvmeCtrl *c, NvmeSQ *sq) {
        if (!sq->created)
                return;
        if (c->cq[sq->cqid].created && c->cq[sq->cqid].n_sqs > 0)
                c->cq[sq->cqid].n_sqs--;
        NvmeIoThread *t = sq->t;
        for (unsigned i = 0; i < t->n_sqs; i++)
                if (t->sqs[i] == sq->qid) {
                        t->sqs[i] = t->sqs[--t->n_sqs];
                        break;
                }
        for (unsigned i = 0; i < sq->nreqs; i++)
                g_free(sq->reqs[i].iov.ext);
        while (sq->iov_ext_free) {
                NvmeIovExt *e = sq->iov_ext_free;
                sq->iov_ext_free = e->next;
                g_free(e);
        }
        g_free(sq->reqs);
        memset(sq, 0, sizeof(*sq));
}

void nvme_cq_destroy(NvmeCtrl *c, NvmeCQ *cq) {
        memset(cq, 0, sizeof(*cq));
}

void nvme_queues_reset(NvmeCtrl *c) {
        /* Callers drained the backends: no request is in a backend any more. */
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++)
                nvme_sq_destroy(c, &c->sq[q]);
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++)
                nvme_cq_destroy(c, &c->cq[q]);
        c->n_aer = 0;
        c->mail = (NvmeReqList) { 0 };  /* Delete SQ completions: their admin queue is gone */
        atomic_store(&c->mail_pending, false);
        for (unsigned i = 0; i < c->ndb; i++)
                atomic_store(&c->db_val[i], 0);
        for (unsigned t = 0; t < c->n_io; t++)
                for (unsigned i = 0; i < (c->ndb + 63) / 64; i++)
                        atomic_store(&c->io[t].db_dirty[i], 0);
}

static void nvme_req_release(NvmeCtrl *c, NvmeReq *req) {
        NvmeSQ *sq = req->sq;

        g_free(req->aux);
        req->aux = NULL;
        nvme_iov_release(&req->iov);
        req->next = sq->free;
        sq->free = req;
        sq->inflight--;
        if (sq->deleting)
                nvme_sq_maybe_finish_delete(c, sq);
}

static void nvme_bad_doorbell(NvmeCtrl *c, uint8_t info) {
        nvme_error_log_add(c, 0xffff, 0xffff, NVME_SC_INVALID_FIELD, 0, 0);
        nvme_aen_post(c, NVME_AER_TYPE_ERROR, info, NVME_LOG_ERROR);
}

/* A head the host may write: within the queue, consuming no more entries than were posted (§5.2). */
static bool nvme_cq_head_valid(const NvmeCQ *cq, uint32_t v) {
        uint32_t posted = (cq->tail + cq->size - cq->head) % cq->size;
        return v < cq->size && (v + cq->size - cq->head) % cq->size <= posted;
}

/*
 * Current CQ head, from the shadow buffer when the host uses one.  An
 * invalid shadow head is reported once per value and not taken: the
 * entries it would free are still the host's.
 */
static void nvme_cq_refresh_head(NvmeCtrl *c, NvmeCQ *cq) {
        if (!cq->shadow || !cq->shadow_db)
                return;
        uint32_t h = __atomic_load_n(cq->shadow_db, __ATOMIC_ACQUIRE);
        if (h == cq->head)
                return;
        if (!nvme_cq_head_valid(cq, h)) {
                if (cq->shadow_bad != h + 1) {
                        cq->shadow_bad = h + 1;
                        nvme_bad_doorbell(c, NVME_AER_INFO_ERR_INVALID_DB_VALUE);
                }
                return;
        }
        cq->shadow_bad = 0;
        cq->head = h;
}

/* Current SQ tail, from the shadow buffer when the host uses one. */
static void nvme_sq_refresh_tail(NvmeCtrl *c, NvmeSQ *sq) {
        if (!sq->shadow || !nvme_sq_resolve(c, sq))
                return;
        uint32_t t = __atomic_load_n(sq->shadow_db, __ATOMIC_ACQUIRE);
        if (t == sq->tail)
                return;
        if (t >= sq->size) {
                if (sq->shadow_bad != t + 1) {
                        sq->shadow_bad = t + 1;
                        nvme_bad_doorbell(c, NVME_AER_INFO_ERR_INVALID_DB_VALUE);
                }
                return;
        }
        sq->shadow_bad = 0;
        sq->tail = t;
}

static bool nvme_cq_room(NvmeCtrl *c, NvmeCQ *cq) {
        if (!nvme_cq_resolve(c, cq))
                return false;
        nvme_cq_refresh_head(c, cq);
        return (cq->tail + 1) % cq->size != cq->head;
}

/* Write one completion entry (room checked) and release the request. */
static void nvme_cq_write(NvmeCtrl *c, NvmeCQ *cq, NvmeReq *req) {
        NvmeCqe *e = &cq->ring[cq->tail];
        e->dw0 = req->dw0;
        e->dw1 = 0;
        e->sq_head = (uint16_t) req->sq->head;
        e->sq_id = req->sq->qid;
        e->cid = req->cmd.cid;
        /* The phase tag makes the entry valid: it is written last (§4.6). */
        uint16_t status = (uint16_t) (((req->status & 0x47ffu) << 1) | cq->phase);
        __atomic_store_n(&e->status, status, __ATOMIC_RELEASE);
        nvme_ptr_written(c, cq->gpa + (uint64_t) cq->tail * sizeof(NvmeCqe), sizeof(NvmeCqe));
        if (++cq->tail == cq->size) {
                cq->tail = 0;
                cq->phase ^= 1;
        }
        if (cq->irq_pending++ == 0)
                cq->irq_first = cq->t->pass_ns;
        nvme_req_release(c, req);
}

void nvme_req_complete(NvmeReq *req) {
        NvmeCtrl *c = req->c;
        NvmeCQ *cq = &c->cq[req->sq->cqid];
        NvmeIoThread *t = req->sq->t;

        atomic_fetch_add_explicit(&t->st.commands, 1, memory_order_relaxed);
        /* Data the command wrote into guest memory has landed: report it now (§ dirty logging). */
        for (unsigned i = 0; i < req->iov.n_gpa; i++)
                nvme_ptr_written(c, req->iov.gpa[i].gpa, req->iov.gpa[i].len);
        req->iov.n_gpa = 0;
        if (req->status != NVME_SUCCESS) {
                atomic_fetch_add_explicit(&t->st.errors, 1, memory_order_relaxed);
                nvme_error_log_add(c, req->sq->qid, req->cmd.cid, req->status, req->cmd.nsid,
                                   (uint64_t) req->cmd.cdw11 << 32 | req->cmd.cdw10);
        }
        if (req->sq->qid != 0 && req->t_start) {
                /* To the pass's clock: fetched and completed in one pass counts as 0. */
                uint64_t lat = t->pass_ns > req->t_start ? t->pass_ns - req->t_start : 0;
                lat_stats_add(&t->st.lat, nvme_lat_op(req->cmd.opcode), lat);
                if (lat > atomic_load_explicit(&t->st.lat_max, memory_order_relaxed))
                        atomic_store_explicit(&t->st.lat_max, lat, memory_order_relaxed);
        }
        if (cq->backlog.head || c->dma_off || !nvme_cq_room(c, cq))
                nvme_req_list_push(&cq->backlog, req);
        else
                nvme_cq_write(c, cq, req);
}

void nvme_sq_maybe_finish_delete(NvmeCtrl *c, NvmeSQ *sq) {
        /* The Delete SQ command itself lives on the admin queue, never on sq. */
        if (!sq->deleting || sq->inflight > 0)
                return;
        NvmeReq *del = sq->delete_req;
        bool admin_thread = sq->t->idx == 0;
        nvme_sq_destroy(c, sq);
        if (del) {
                del->status = NVME_SUCCESS;
                if (admin_thread)
                        nvme_req_complete(del);
                else
                        nvme_mail_admin(c, del);        /* the admin CQ is io[0]'s */
        }
}

static unsigned nvme_cq_flush_backlog(NvmeCtrl *c, NvmeCQ *cq) {
        unsigned n = 0;
        while (cq->backlog.head && nvme_cq_room(c, cq)) {
                nvme_cq_write(c, cq, nvme_req_list_pop(&cq->backlog));
                n++;
        }
        return n;
}

/*
 * A doorbell register write.  For a queue with a shadow doorbell (§5.7;
 * the procedure of NVMe 1.3 §7.13) the host updates the Shadow Doorbell
 * buffer first and writes the register only to wake the controller, so the
 * register value can be older than the shadow value already acted on:
 * the write comes in on another thread, and the host may have moved the
 * shadow on meanwhile (reaping a burst of completions while we post more).
 * Judged against the current head, such a stale head would consume more
 * than was posted.  The register value is only range-checked then, and
 * the position is taken from the shadow buffer, which is never older.
 */
static void nvme_sq_set_tail(NvmeCtrl *c, NvmeSQ *sq, uint32_t v) {
        if (v >= sq->size) {
                nvme_bad_doorbell(c, NVME_AER_INFO_ERR_INVALID_DB_VALUE);
                return;
        }
        if (sq->shadow) {
                nvme_sq_refresh_tail(c, sq);
                return;
        }
        sq->tail = v;
}

static void nvme_cq_set_head(NvmeCtrl *c, NvmeCQ *cq, uint32_t v) {
        if (cq->shadow && v < cq->size) {
                if (nvme_cq_resolve(c, cq))
                        nvme_cq_refresh_head(c, cq);
                return;
        }
        if (!nvme_cq_head_valid(cq, v)) {
                /* §5.2: consuming more entries than were posted is an invalid value. */
                nvme_bad_doorbell(c, NVME_AER_INFO_ERR_INVALID_DB_VALUE);
                return;
        }
        cq->head = v;
}

static void nvme_doorbells_scan(NvmeIoThread *t) {
        NvmeCtrl *c = t->c;

        if (t->idx == 0 && atomic_load_explicit(&c->bad_db, memory_order_relaxed) &&
            atomic_exchange(&c->bad_db, 0))
                nvme_bad_doorbell(c, NVME_AER_INFO_ERR_INVALID_DB);

        for (unsigned w = 0; w < (c->ndb + 63) / 64; w++) {
                if (!atomic_load_explicit(&t->db_dirty[w], memory_order_relaxed))
                        continue;
                uint64_t bits = atomic_exchange_explicit(&t->db_dirty[w], 0, memory_order_acquire);
                while (bits) {
                        unsigned idx = w * 64 + (unsigned) __builtin_ctzll(bits);
                        bits &= bits - 1;
                        uint16_t qid = (uint16_t) (idx / 2);
                        uint32_t v = atomic_load_explicit(&c->db_val[idx], memory_order_acquire);
                        if (idx & 1) {
                                NvmeCQ *cq = &c->cq[qid];
                                if (!cq->created)
                                        nvme_bad_doorbell(c, NVME_AER_INFO_ERR_INVALID_DB);
                                else
                                        nvme_cq_set_head(c, cq, v);
                                continue;
                        }
                        unsigned owner = atomic_load_explicit(&c->sq_thread[qid], memory_order_relaxed);
                        if (owner != t->idx) {
                                /* The SQ moved (deleted, created again on another CQ): pass it on. */
                                NvmeIoThread *o = &c->io[owner];
                                atomic_fetch_or_explicit(&o->db_dirty[w], 1ull << (idx % 64), memory_order_release);
                                nvme_thread_kick(o);
                                continue;
                        }
                        NvmeSQ *sq = &c->sq[qid];
                        if (!sq->created)
                                nvme_bad_doorbell(c, NVME_AER_INFO_ERR_INVALID_DB);
                        else
                                nvme_sq_set_tail(c, sq, v);
                }
        }
}

static unsigned nvme_sq_fetch(NvmeCtrl *c, NvmeSQ *sq) {
        NvmeCQ *cq = &c->cq[sq->cqid];
        unsigned n = 0;

        if (!sq->created || sq->deleting)
                return 0;
        nvme_sq_refresh_tail(c, sq);
        while (sq->head != sq->tail && n < NVME_SQ_BURST) {
                if (cq->backlog.head || !sq->free)
                        break;                  /* flow control: wait for room */
                if (!nvme_sq_resolve(c, sq))
                        break;                  /* not mapped (yet): retried on the next kick */
                NvmeReq *req = sq->free;
                /* Copy the entry, then act only on the copy; over a limit it stays in the SQ. */
                memcpy(&req->cmd, &sq->ring[sq->head], sizeof(NvmeSqe));
                if (sq->qid && atomic_load_explicit(&c->qos_on, memory_order_relaxed) &&
                    !nvme_qos_admit(sq, &req->cmd))
                        break;
                sq->free = req->next;
                sq->inflight++;
                req->next = NULL;
                req->dw0 = 0;
                req->status = NVME_SUCCESS;
                req->ns = NULL;
                req->bytes = 0;
                req->aux = NULL;
                req->aux_idx = req->aux_count = 0;
                req->iov.n_gpa = 0;
                req->t_start = sq->qid ? sq->t->pass_ns : 0;
                if (++sq->head == sq->size)
                        sq->head = 0;
                NvmeStatus st = sq->qid == 0 ? nvme_admin_exec(c, req) : nvme_io_exec(c, req);
                if (st != NVME_ASYNC) {
                        req->status = st;
                        nvme_req_complete(req);
                }
                n++;
        }
        return n;
}

/* io[0]: admin completions other threads finished. */
static unsigned nvme_mail_flush(NvmeCtrl *c) {
        NvmeReqList mail;
        NvmeReq *r;
        unsigned n = 0;

        pthread_mutex_lock(&c->mail_lock);
        mail = c->mail;
        c->mail = (NvmeReqList) { 0 };
        atomic_store(&c->mail_pending, false);
        pthread_mutex_unlock(&c->mail_lock);
        while ((r = nvme_req_list_pop(&mail))) {
                nvme_req_complete(r);
                n++;
        }
        return n;
}

unsigned nvme_queues_process(NvmeIoThread *t, bool fetch) {
        NvmeCtrl *c = t->c;
        unsigned n = 0;

        /* Bus mastering off: doorbells stay pending, entries unread, completions held. */
        if (c->dma_off)
                return 0;
        nvme_doorbells_scan(t);
        if (t->idx == 0 && atomic_load_explicit(&c->mail_pending, memory_order_acquire))
                n += nvme_mail_flush(c);
        FOR_EACH_CQ_OF(t, q) {
                NvmeCQ *cq = &c->cq[q];
                if (cq->created && cq->backlog.head)
                        n += nvme_cq_flush_backlog(c, cq);
        }
        if (fetch)
                /* An admin command may delete an SQ of this list (swapped out): the
                 * one moved into its slot waits a pass; the admin command made n > 0. */
                for (unsigned i = 0; i < t->n_sqs; i++)
                        n += nvme_sq_fetch(c, &c->sq[t->sqs[i]]);
        if (t->idx == 0 && c->n_aer && __atomic_load_n(&c->n_aen, __ATOMIC_RELAXED)) {
                unsigned before = c->n_aer;
                nvme_aen_dispatch(c);
                n += before - c->n_aer;
        }
        return n;
}

bool nvme_queues_arm_and_recheck(NvmeIoThread *t) {
        NvmeCtrl *c = t->c;
        bool work = false;

        if (c->dma_off)
                return false;           /* EventIdx is guest memory too */
        for (unsigned i = 0; i < t->n_sqs; i++) {
                NvmeSQ *sq = &c->sq[t->sqs[i]];
                if (sq->qid && sq->created && sq->shadow && !sq->deleting && nvme_sq_resolve(c, sq) &&
                    __atomic_load_n(sq->shadow_ei, __ATOMIC_RELAXED) != sq->tail) {
                        __atomic_store_n(sq->shadow_ei, sq->tail, __ATOMIC_RELEASE);
                        nvme_ptr_written(c, nvme_ei_gpa(c, sq->qid, false), 4);
                }
        }
        FOR_EACH_CQ_OF(t, q) {
                NvmeCQ *cq = &c->cq[q];
                if (q && cq->created && cq->shadow && cq->backlog.head && nvme_cq_resolve(c, cq) &&
                    __atomic_load_n(cq->shadow_ei, __ATOMIC_RELAXED) != cq->head) {
                        __atomic_store_n(cq->shadow_ei, cq->head, __ATOMIC_RELEASE);
                        nvme_ptr_written(c, nvme_ei_gpa(c, (uint16_t) q, true), 4);
                }
        }
        /* EventIdx stores must be visible before we look at the shadow values again. */
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        /* A shadow value already refused is no work: it would keep us awake until the host fixes it. */
        uint32_t v;
        for (unsigned i = 0; i < t->n_sqs && !work; i++) {
                NvmeSQ *sq = &c->sq[t->sqs[i]];
                if (sq->qid && sq->created && sq->shadow && sq->shadow_db && !sq->deleting && sq->free &&
                    !c->cq[sq->cqid].backlog.head &&
                    (v = __atomic_load_n(sq->shadow_db, __ATOMIC_ACQUIRE)) != sq->tail && v + 1 != sq->shadow_bad)
                        work = true;
        }
        FOR_EACH_CQ_OF(t, q) {
                NvmeCQ *cq = &c->cq[q];
                if (q && cq->created && cq->shadow && cq->shadow_db && cq->backlog.head &&
                    (v = __atomic_load_n(cq->shadow_db, __ATOMIC_ACQUIRE)) != cq->head && v + 1 != cq->shadow_bad)
                        work = true;
        }
        return work;
}

int nvme_irqs_flush(NvmeIoThread *t, uint64_t now) {
        NvmeCtrl *c = t->c;
        uint64_t fired[4] = { 0 };
        int64_t wait_ns = -1;

        if (c->dma_off)
                return -1;              /* an MSI-X message is a memory write: they wait */
        FOR_EACH_CQ_OF(t, q) {
                NvmeCQ *cq = &c->cq[q];
                if (!cq->created || cq->irq_pending == 0)
                        continue;
                if (!cq->ien) {
                        cq->irq_pending = 0;
                        continue;
                }
                if (q != 0 && now != UINT64_MAX && nvme_vector_coalescing(c, cq->vector)) {
                        uint64_t time_ns = (uint64_t) c->feat.coalesce_time * 100000ull;
                        uint64_t age = now > cq->irq_first ? now - cq->irq_first : 0;
                        if (cq->irq_pending < (unsigned) c->feat.coalesce_thr + 1u && age < time_ns) {
                                int64_t left = (int64_t) (time_ns - age);
                                if (wait_ns < 0 || left < wait_ns)
                                        wait_ns = left;
                                continue;
                        }
                }
                cq->irq_pending = 0;
                unsigned v = cq->vector;
                if (v < 256) {
                        if (fired[v / 64] & (1ull << (v % 64)))
                                continue;
                        fired[v / 64] |= 1ull << (v % 64);
                }
                atomic_fetch_add_explicit(&t->st.irqs, 1, memory_order_relaxed);
                if (c->irq)
                        c->irq(c->irq_opaque, v);
        }
        return wait_ns < 0 ? -1 : (int) ((wait_ns + 999999) / 1000000);
}
