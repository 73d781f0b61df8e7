/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration of the controller (vfio-user migration v2): one callback
 * per direct arc of the state machine the server walks, always quiesced;
 * DevStateMig (state/devstate-mig.h) runs the arcs, this file gives it the
 * controller's hold, save, load and reset:
 *
 *   RUNNING  → STOP       hold the I/O thread parked (the quiesce before
 *                         the arc already completed every in-flight command
 *                         and posted its completion on this side)
 *   RUNNING  → PRE_COPY   keep running; the pre-copy stream is empty (the
 *                         state is small and only final once stopped)
 *   PRE_COPY → STOP_COPY  hold, save the state into the stream
 *   STOP     → STOP_COPY  save the state into the stream
 *   STOP_COPY→ STOP       drop the stream
 *   STOP     → RESUMING   power-on reset, open a reader for the stream
 *   RESUMING → STOP       check the whole stream, then apply it; on any
 *                         failure the controller is reset again and the
 *                         arc fails (the server enters ERROR)
 *   STOP / PRE_COPY → RUNNING  release the I/O thread
 *
 * What travels: registers (NVMe 1.4 §3.1), admin and I/O queues (§4.1)
 * with their positions, pending doorbell writes, shadow doorbell buffers
 * (§5.7), outstanding Asynchronous Event Requests and pending events
 * (§5.2), completions waiting for room in a full CQ, features (§5.21), the
 * error log (§5.14.1.1) and SMART data units, and the namespaces'
 * identities, which the destination checks against its own (its backends
 * are opened from an identical definition; their data is not in the
 * stream).  Guest memory is not in the stream either: queues live in
 * guest RAM, which the VMM migrates.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

#define NVME_STATE_TYPE "nvme"

enum {
        SEC_CTRL = 1,
        SEC_FEAT,
        SEC_CQ,
        SEC_SQ,
        SEC_NS,
};

enum {
        CT_MAX_IOQS = 1,
        CT_NVEC,
        CT_CAP,
        CT_CC,
        CT_CSTS,
        CT_AQA,
        CT_ASQ,
        CT_ACQ,
        CT_INTMS,
        CT_STATE,
        CT_SHUTDOWN_REQ,
        CT_DBBUF_DB,
        CT_DBBUF_EI,
        CT_AER_CIDS,
        CT_AEN_QUEUE,
        CT_AEN_MASKED,
        CT_CHANGED_NS,
        CT_CHANGED_NS_OVERFLOW,
        CT_ERRLOG,
        CT_ERR_HEAD,
        CT_ERR_COUNT,
        CT_UNITS_READ,
        CT_UNITS_WRITTEN,
        CT_NS_COUNT,
};

enum {
        FT_ARBITRATION = 1,
        FT_POWER,
        FT_TEMP_OVER,
        FT_TEMP_UNDER,
        FT_ERR_RECOVERY,
        FT_WCE,
        FT_NQ_SET,
        FT_NSQA,
        FT_NCQA,
        FT_COALESCE_THR,
        FT_COALESCE_TIME,
        FT_IRQ_CD,
        FT_AEC,
        FT_TS_SET,
        FT_TS_MS,
};

enum {
        CQ_SIZE = 1,
        CQ_GPA,
        CQ_HEAD,
        CQ_TAIL,
        CQ_PHASE,
        CQ_VECTOR,
        CQ_IEN,
        CQ_SHADOW,
        CQ_IRQ_PENDING,
        CQ_DB_PENDING,          /* optional: a head doorbell written and not yet seen */
        CQ_BACKLOG,             /* completions waiting for room, NvmeMigCqe each */
};

enum {
        SQ_CQID = 1,
        SQ_SIZE,
        SQ_GPA,
        SQ_HEAD,
        SQ_TAIL,
        SQ_SHADOW,
        SQ_DB_PENDING,          /* optional: a tail doorbell written and not yet seen */
};

enum {
        NS_BLOCK_SIZE = 1,
        NS_NSZE,
        NS_READ_ONLY,
        NS_NGUID,
        NS_EUI64,
        NS_UUID,
};

/* A completion waiting in a CQ backlog, on the wire (little-endian hosts only, like the rest of the model). */
typedef struct NvmeMigCqe {
        uint16_t sqid;
        uint16_t cid;
        uint16_t status;
        uint16_t reserved;
        uint32_t dw0;
} NvmeMigCqe;
_Static_assert(sizeof(NvmeMigCqe) == 12, "backlog entry is 12 bytes");

/* ---- the stream as a struct ---------------------------------------------------------- */

/* One CQ or SQ as the stream has it. */
typedef struct NvmeMigCq {
        bool created, ien, shadow, has_db;
        uint32_t size, head, tail, irq_pending, db;
        uint64_t gpa;
        uint8_t phase;
        uint16_t vector;
        const NvmeMigCqe *backlog;
        size_t n_backlog;
} NvmeMigCq;

typedef struct NvmeMigSq {
        bool created, shadow, has_db;
        uint16_t cqid;
        uint32_t size, head, tail, db;
        uint64_t gpa;
        unsigned held;
} NvmeMigSq;

/* Everything the stream says: saved from it, or read and checked before any of it touches the controller. */
typedef struct NvmeMigImage {
        uint16_t max_ioqs, nvec;
        uint64_t cap;
        uint32_t cc, csts, aqa, intms;
        uint64_t asq, acq, dbbuf_db, dbbuf_ei;
        uint8_t state;
        bool shutdown_req;
        uint16_t aer_cids[NVME_AERL + 1];
        unsigned n_aer;
        uint32_t aen_queue[NVME_MAX_PENDING_AEN];
        unsigned n_aen;
        uint8_t aen_masked;
        uint32_t changed_ns[NVME_MAX_CHANGED_NS];
        unsigned n_changed_ns;
        bool changed_ns_overflow;
        NvmeErrorLogEntry errlog[NVME_ELPE + 1];
        uint32_t err_head;
        uint64_t err_count, units_read, units_written;
        uint32_t nns;
        NvmeFeatures feat;
        uint64_t ts_ms;
        NvmeMigCq cq[NVME_MAX_IOQS + 1];
        NvmeMigSq sq[NVME_MAX_IOQS + 1];
} NvmeMigImage;

/*
 * Each section's fields in stream order, once: the reader's spec and the
 * map to the structs above are both made from these lists.
 * X(struct, kind, id, type, wire name, member, count or presence, what for people)
 */
#define CTRL_FIELDS(X) \
        X(NvmeMigImage, VAL, CT_MAX_IOQS, U16, "max-io-queues", max_ioqs, -, "I/O queues") \
        X(NvmeMigImage, VAL, CT_NVEC, U16, "msix-vectors", nvec, -, "vectors") \
        X(NvmeMigImage, VAL, CT_CAP, U64, "cap", cap, -, "CAP") \
        X(NvmeMigImage, VAL, CT_CC, U32, "cc", cc, -, "CC") \
        X(NvmeMigImage, VAL, CT_CSTS, U32, "csts", csts, -, "CSTS") \
        X(NvmeMigImage, VAL, CT_AQA, U32, "aqa", aqa, -, "AQA") \
        X(NvmeMigImage, VAL, CT_ASQ, U64, "asq", asq, -, "ASQ") \
        X(NvmeMigImage, VAL, CT_ACQ, U64, "acq", acq, -, "ACQ") \
        X(NvmeMigImage, VAL, CT_INTMS, U32, "intms", intms, -, "INTMS") \
        X(NvmeMigImage, VAL, CT_STATE, U8, "state", state, -, "controller state") \
        X(NvmeMigImage, VAL, CT_SHUTDOWN_REQ, BOOL, "shutdown-requested", shutdown_req, -, "shutdown request") \
        X(NvmeMigImage, VAL, CT_DBBUF_DB, U64, "dbbuf-doorbells", dbbuf_db, -, "shadow doorbell buffer") \
        X(NvmeMigImage, VAL, CT_DBBUF_EI, U64, "dbbuf-eventidx", dbbuf_ei, -, "event index buffer") \
        X(NvmeMigImage, LIST, CT_AER_CIDS, BYTES, "aer-cids", aer_cids, n_aer, "outstanding AERs") \
        X(NvmeMigImage, LIST, CT_AEN_QUEUE, BYTES, "pending-events", aen_queue, n_aen, "pending events") \
        X(NvmeMigImage, VAL, CT_AEN_MASKED, U8, "events-masked", aen_masked, -, "masked events") \
        X(NvmeMigImage, LIST, CT_CHANGED_NS, BYTES, "changed-ns", changed_ns, n_changed_ns, "changed namespaces") \
        X(NvmeMigImage, VAL, CT_CHANGED_NS_OVERFLOW, BOOL, "changed-ns-overflow", changed_ns_overflow, -, \
          "changed namespace overflow") \
        X(NvmeMigImage, BYTES, CT_ERRLOG, BYTES, "error-log", errlog, -, "error log") \
        X(NvmeMigImage, VAL, CT_ERR_HEAD, U32, "error-log-head", err_head, -, "error log head") \
        X(NvmeMigImage, VAL, CT_ERR_COUNT, U64, "error-count", err_count, -, "error count") \
        X(NvmeMigImage, VAL, CT_UNITS_READ, U64, "data-units-read", units_read, -, "data units read") \
        X(NvmeMigImage, VAL, CT_UNITS_WRITTEN, U64, "data-units-written", units_written, -, "data units written") \
        X(NvmeMigImage, VAL, CT_NS_COUNT, U32, "namespaces", nns, -, "namespaces")

#define FEAT_FIELDS(X) \
        X(NvmeMigImage, VAL, FT_ARBITRATION, U32, "arbitration", feat.arbitration, -, "arbitration") \
        X(NvmeMigImage, VAL, FT_POWER, U32, "power-state", feat.power_state, -, "power state") \
        X(NvmeMigImage, VAL, FT_TEMP_OVER, U16, "temp-over", feat.temp_over, -, "over temperature threshold") \
        X(NvmeMigImage, VAL, FT_TEMP_UNDER, U16, "temp-under", feat.temp_under, -, "under temperature threshold") \
        X(NvmeMigImage, VAL, FT_ERR_RECOVERY, U32, "error-recovery", feat.err_recovery, -, "error recovery") \
        X(NvmeMigImage, VAL, FT_WCE, BOOL, "volatile-write-cache", feat.wce, -, "volatile write cache") \
        X(NvmeMigImage, VAL, FT_NQ_SET, BOOL, "queues-set", feat.nq_set, -, "number of queues set") \
        X(NvmeMigImage, VAL, FT_NSQA, U16, "nsqa", feat.nsqa, -, "SQs allocated") \
        X(NvmeMigImage, VAL, FT_NCQA, U16, "ncqa", feat.ncqa, -, "CQs allocated") \
        X(NvmeMigImage, VAL, FT_COALESCE_THR, U8, "coalesce-threshold", feat.coalesce_thr, -, "coalescing threshold") \
        X(NvmeMigImage, VAL, FT_COALESCE_TIME, U8, "coalesce-time", feat.coalesce_time, -, "coalescing time") \
        X(NvmeMigImage, BYTES, FT_IRQ_CD, BYTES, "iv-coalescing-disabled", feat.irq_cd, -, \
          "interrupt vector configuration") \
        X(NvmeMigImage, VAL, FT_AEC, U32, "async-event-config", feat.aec, -, "asynchronous event configuration") \
        X(NvmeMigImage, VAL, FT_TS_SET, BOOL, "timestamp-set", feat.ts_set, -, "timestamp set") \
        X(NvmeMigImage, VAL, FT_TS_MS, U64, "timestamp-ms", ts_ms, -, "timestamp")

/* Then the backlog, a list of NvmeMigCqe put and taken apart on its own. */
#define CQ_FIELDS(X) \
        X(NvmeMigCq, VAL, CQ_SIZE, U32, "size", size, -, "CQ size") \
        X(NvmeMigCq, VAL, CQ_GPA, U64, "base", gpa, -, "CQ base") \
        X(NvmeMigCq, VAL, CQ_HEAD, U32, "head", head, -, "CQ head") \
        X(NvmeMigCq, VAL, CQ_TAIL, U32, "tail", tail, -, "CQ tail") \
        X(NvmeMigCq, VAL, CQ_PHASE, U8, "phase", phase, -, "CQ phase") \
        X(NvmeMigCq, VAL, CQ_VECTOR, U16, "vector", vector, -, "CQ vector") \
        X(NvmeMigCq, VAL, CQ_IEN, BOOL, "ien", ien, -, "CQ interrupts enabled") \
        X(NvmeMigCq, VAL, CQ_SHADOW, BOOL, "shadow", shadow, -, "CQ shadow doorbell") \
        X(NvmeMigCq, VAL, CQ_IRQ_PENDING, U32, "irq-pending", irq_pending, -, "CQ interrupts pending") \
        X(NvmeMigCq, OPT, CQ_DB_PENDING, U32, "doorbell-pending", db, has_db, "CQ head doorbell")

#define SQ_FIELDS(X) \
        X(NvmeMigSq, VAL, SQ_CQID, U16, "cqid", cqid, -, "SQ's CQ") \
        X(NvmeMigSq, VAL, SQ_SIZE, U32, "size", size, -, "SQ size") \
        X(NvmeMigSq, VAL, SQ_GPA, U64, "base", gpa, -, "SQ base") \
        X(NvmeMigSq, VAL, SQ_HEAD, U32, "head", head, -, "SQ head") \
        X(NvmeMigSq, VAL, SQ_TAIL, U32, "tail", tail, -, "SQ tail") \
        X(NvmeMigSq, VAL, SQ_SHADOW, BOOL, "shadow", shadow, -, "SQ shadow doorbell") \
        X(NvmeMigSq, OPT, SQ_DB_PENDING, U32, "doorbell-pending", db, has_db, "SQ tail doorbell")

#define MEMBER_SIZE(S, m) sizeof(((S *) 0)->m)

/* What the reader accepts: BYTES up to the member's size. */
#define SPEC(S, kind, id, type, name, m, extra, what) SPEC_##kind(S, id, type, name, m),
#define SPEC_VAL(S, id, type, name, m) { id, DEVSTATE_T_##type, name, 0, true }
#define SPEC_OPT(S, id, type, name, m) { id, DEVSTATE_T_##type, name, 0, false }
#define SPEC_LIST(S, id, type, name, m) { id, DEVSTATE_T_BYTES, name, MEMBER_SIZE(S, m), true }
#define SPEC_BYTES SPEC_LIST

/* Where each value lives. */
#define MAP(S, kind, id, type, name, m, extra, what) MAP_##kind(S, id, type, m, extra, what),
#define MAP_VAL(S, id, type, m, extra, what) \
        { id, DEVSTATE_T_##type, what, offsetof(S, m), MEMBER_SIZE(S, m), 0, 0, false, 0 }
#define MAP_OPT(S, id, type, m, has, what) \
        { id, DEVSTATE_T_##type, what, offsetof(S, m), MEMBER_SIZE(S, m), 0, 0, true, offsetof(S, has) }
#define MAP_LIST(S, id, type, m, n, what) \
        { id, DEVSTATE_T_BYTES, what, offsetof(S, m), MEMBER_SIZE(S, m), MEMBER_SIZE(S, m[0]), offsetof(S, n), \
          false, 0 }
#define MAP_BYTES(S, id, type, m, extra, what) \
        { id, DEVSTATE_T_BYTES, what, offsetof(S, m), MEMBER_SIZE(S, m), 0, 0, false, 0 }

static const DevStateFieldSpec ctrl_fields[] = { CTRL_FIELDS(SPEC) };
static const DevStateFieldSpec feat_fields[] = { FEAT_FIELDS(SPEC) };
static const DevStateFieldSpec cq_fields[] = {
        CQ_FIELDS(SPEC)
        { CQ_BACKLOG, DEVSTATE_T_BYTES, "backlog", (NVME_MAX_IOQS + 1) * NVME_SQ_MAX_INFLIGHT * sizeof(NvmeMigCqe),
          true },
};
static const DevStateFieldSpec sq_fields[] = { SQ_FIELDS(SPEC) };

static const DevStateFieldMap ctrl_map[] = { CTRL_FIELDS(MAP) };
static const DevStateFieldMap feat_map[] = { FEAT_FIELDS(MAP) };
static const DevStateFieldMap cq_map[] = { CQ_FIELDS(MAP) };
static const DevStateFieldMap sq_map[] = { SQ_FIELDS(MAP) };

static const DevStateFieldSpec ns_fields[] = {
        { NS_BLOCK_SIZE, DEVSTATE_T_U32, "block-size", 0, true },
        { NS_NSZE, DEVSTATE_T_U64, "blocks", 0, true },
        { NS_READ_ONLY, DEVSTATE_T_BOOL, "read-only", 0, true },
        { NS_NGUID, DEVSTATE_T_BYTES, "nguid", 16, true },
        { NS_EUI64, DEVSTATE_T_BYTES, "eui64", 8, true },
        { NS_UUID, DEVSTATE_T_BYTES, "uuid", 16, true },
};

static const DevStateSectionSpec nvme_sections[] = {
        { SEC_CTRL, "nvme-controller", 1, true, ctrl_fields, G_N_ELEMENTS(ctrl_fields) },
        { SEC_FEAT, "nvme-features", 1, true, feat_fields, G_N_ELEMENTS(feat_fields) },
        { SEC_CQ, "nvme-cq", NVME_MAX_IOQS + 1, false, cq_fields, G_N_ELEMENTS(cq_fields) },
        { SEC_SQ, "nvme-sq", NVME_MAX_IOQS + 1, false, sq_fields, G_N_ELEMENTS(sq_fields) },
        { SEC_NS, "nvme-namespace", NVME_MAX_NS + 1, false, ns_fields, G_N_ELEMENTS(ns_fields) },
};

/* ---- save ---------------------------------------------------------------------------- */

/* A doorbell written and not yet seen by an I/O thread (any: an SQ's may be on its way). */
static bool db_pending(const NvmeCtrl *c, unsigned idx, uint32_t *v) {
        bool dirty = false;
        for (unsigned t = 0; t < c->n_io; t++)
                dirty |= atomic_load(&c->io[t].db_dirty[idx / 64]) & (1ull << (idx % 64));
        if (!dirty)
                return false;
        *v = atomic_load(&c->db_val[idx]);
        return true;
}

/* The parked controller's registers, events, logs and features. */
static void image_of(NvmeCtrl *c, NvmeMigImage *im) {
        const NvmeFeatures *f = &c->feat;

        im->max_ioqs = (uint16_t) c->cfg.max_ioqs;
        im->nvec = (uint16_t) c->cfg.msix_nvec;
        im->cap = c->cap;
        im->cc = c->cc;
        im->csts = atomic_load(&c->csts);
        im->aqa = c->aqa;
        im->asq = c->asq;
        im->acq = c->acq;
        im->intms = c->intms;
        im->state = (uint8_t) c->state;
        im->shutdown_req = atomic_load(&c->shutdown_req);
        im->dbbuf_db = c->dbbuf_db;
        im->dbbuf_ei = c->dbbuf_ei;
        for (unsigned i = 0; i < c->n_aer; i++)
                im->aer_cids[i] = c->aer[i]->cmd.cid;
        im->n_aer = c->n_aer;
        memcpy(im->aen_queue, c->aen_queue, sizeof(im->aen_queue));
        im->n_aen = c->n_aen;
        im->aen_masked = c->aen_masked;
        memcpy(im->changed_ns, c->changed_ns, sizeof(im->changed_ns));
        im->n_changed_ns = c->n_changed_ns;
        im->changed_ns_overflow = c->changed_ns_overflow;
        memcpy(im->errlog, c->errlog, sizeof(im->errlog));
        im->err_head = c->err_head;
        im->err_count = c->err_count;
        im->units_read = c->units_read;
        im->units_written = c->units_written;
        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                im->nns += c->ns[i] != NULL;
        im->feat = *f;
        if (f->ts_set)
                im->ts_ms = f->ts_base_ms + (nvme_now_ns() - f->ts_set_ns) / 1000000;
}

static void save_cq(NvmeCtrl *c, DevStateWriter *w, unsigned q) {
        const NvmeCQ *cq = &c->cq[q];
        NvmeMigCq m = {
                .size = cq->size, .gpa = cq->gpa, .head = cq->head, .tail = cq->tail, .phase = cq->phase,
                .vector = cq->vector, .ien = cq->ien, .shadow = cq->shadow, .irq_pending = cq->irq_pending,
        };
        g_autofree NvmeMigCqe *bl = NULL;
        size_t nbl = 0;

        m.has_db = db_pending(c, 2 * q + 1, &m.db);
        for (NvmeReq *req = cq->backlog.head; req; req = req->next)
                nbl++;
        bl = g_new0(NvmeMigCqe, nbl ? nbl : 1);
        nbl = 0;
        for (NvmeReq *req = cq->backlog.head; req; req = req->next)
                bl[nbl++] = (NvmeMigCqe) { req->sq->qid, req->cmd.cid, req->status, 0, req->dw0 };
        devstate_writer_begin(w, SEC_CQ, q, DEVSTATE_F_MANDATORY);
        devstate_put_mapped(w, cq_map, G_N_ELEMENTS(cq_map), &m);
        devstate_put_bytes(w, CQ_BACKLOG, bl, nbl * sizeof(NvmeMigCqe));
        devstate_writer_end(w);
}

static void save_sq(NvmeCtrl *c, DevStateWriter *w, unsigned q) {
        const NvmeSQ *sq = &c->sq[q];
        NvmeMigSq m = {
                .cqid = sq->cqid, .size = sq->size, .gpa = sq->gpa, .head = sq->head, .tail = sq->tail,
                .shadow = sq->shadow,
        };

        m.has_db = db_pending(c, 2 * q, &m.db);
        devstate_writer_begin(w, SEC_SQ, q, DEVSTATE_F_MANDATORY);
        devstate_put_mapped(w, sq_map, G_N_ELEMENTS(sq_map), &m);
        devstate_writer_end(w);
}

/* The controller is parked.  0, or -EBUSY when a command is in a state we cannot carry. */
static int save_state(NvmeCtrl *c, DevStateWriter **out) {
        g_autoptr(DevStateWriter) w = devstate_writer_new(NVME_STATE_TYPE, NULL);
        g_autofree NvmeMigImage *im = g_new0(NvmeMigImage, 1);
        unsigned held[NVME_MAX_IOQS + 1] = { 0 };
        int r;

        held[0] = c->n_aer;
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++)
                for (NvmeReq *req = c->cq[q].backlog.head; req; req = req->next)
                        held[req->sq->qid]++;
        /* After the drain, every command still held is an AER or a completion waiting for room. */
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++) {
                if (c->sq[q].created && (c->sq[q].deleting || c->sq[q].inflight != held[q])) {
                        g_warning("nvme %s: cannot save: SQ %u has %u commands in progress that are not "
                                  "waiting completions%s", c->name, q, c->sq[q].inflight - held[q],
                                  c->sq[q].deleting ? " (being deleted)" : "");
                        return -EBUSY;
                }
        }

        image_of(c, im);
        devstate_writer_begin(w, SEC_CTRL, 0, DEVSTATE_F_MANDATORY);
        devstate_put_mapped(w, ctrl_map, G_N_ELEMENTS(ctrl_map), im);
        devstate_writer_end(w);
        devstate_writer_begin(w, SEC_FEAT, 0, DEVSTATE_F_MANDATORY);
        devstate_put_mapped(w, feat_map, G_N_ELEMENTS(feat_map), im);
        devstate_writer_end(w);
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++)
                if (c->cq[q].created)
                        save_cq(c, w, q);
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++)
                if (c->sq[q].created)
                        save_sq(c, w, q);
        for (unsigned i = 1; i <= NVME_MAX_NS; i++) {
                const NvmeNs *ns = c->ns[i];
                if (!ns)
                        continue;
                devstate_writer_begin(w, SEC_NS, i, DEVSTATE_F_MANDATORY);
                devstate_put_u32(w, NS_BLOCK_SIZE, ns->block_size);
                devstate_put_u64(w, NS_NSZE, ns->nsze);
                devstate_put_bool(w, NS_READ_ONLY, ns->read_only);
                devstate_put_bytes(w, NS_NGUID, ns->nguid, 16);
                devstate_put_bytes(w, NS_EUI64, ns->eui64, 8);
                devstate_put_bytes(w, NS_UUID, ns->uuid, 16);
                devstate_writer_end(w);
        }
        if ((r = devstate_writer_finish(w)) < 0)
                return r;
        *out = g_steal_pointer(&w);
        return 0;
}

/* ---- load ---------------------------------------------------------------------------- */

#define FAIL(r, ...) devstate_reader_fail((r), -EINVAL, __VA_ARGS__)

static int check_ctrl(NvmeCtrl *c, DevStateReader *r, NvmeMigImage *im) {
        const DevStateSection *s = devstate_reader_find(r, SEC_CTRL, 0);
        int ret;

        if ((ret = devstate_get_mapped(r, s, ctrl_map, G_N_ELEMENTS(ctrl_map), im)) < 0)
                return ret;
        if (im->max_ioqs != c->cfg.max_ioqs || im->nvec != c->cfg.msix_nvec || im->cap != c->cap)
                return FAIL(r, "the source controller has %u I/O queues, %u vectors and CAP %#" PRIx64
                            "; this one %u, %u and %#" PRIx64 ": define both devices identically",
                            im->max_ioqs, im->nvec, im->cap, c->cfg.max_ioqs, c->cfg.msix_nvec, c->cap);
        if (im->err_head > NVME_ELPE)
                return FAIL(r, "error log: newest entry at %u, beyond its %u entries", im->err_head, NVME_ELPE + 1);
        for (unsigned i = 0; i < im->n_changed_ns; i++)
                if (im->changed_ns[i] == 0 || im->changed_ns[i] > NVME_MAX_NS)
                        return FAIL(r, "changed namespace list holds nsid %u", im->changed_ns[i]);
        for (unsigned i = 0; i < im->n_aen; i++)
                if ((im->aen_queue[i] & 7) > NVME_AER_TYPE_NOTICE || (im->aen_queue[i] >> 24) != 0)
                        return FAIL(r, "pending event %#x has an unknown type", im->aen_queue[i]);

        /* CC/CSTS/state consistency (§3.1.5, §3.1.6, §7.6). */
        bool en = im->cc & NVME_CC_EN, rdy = im->csts & NVME_CSTS_RDY, cfs = im->csts & NVME_CSTS_CFS;
        if ((im->cc & ~NVME_CC_WRITABLE) || (im->csts & ~(NVME_CSTS_RDY | NVME_CSTS_CFS | NVME_CSTS_SHST_MASK)) ||
            (im->csts & NVME_CSTS_SHST_MASK) == NVME_CSTS_SHST_MASK)
                return FAIL(r, "CC %#x / CSTS %#x have reserved bits set", im->cc, im->csts);
        if (im->aqa & 0xf000f000u)
                return FAIL(r, "AQA %#x has reserved bits set", im->aqa);
        if (im->asq & NVME_PAGE_MASK || im->acq & NVME_PAGE_MASK)
                return FAIL(r, "ASQ %#" PRIx64 " / ACQ %#" PRIx64 " are not page aligned", im->asq, im->acq);
        switch (im->state) {
        case NVME_STATE_DISABLED:
                if (en || rdy || cfs)
                        return FAIL(r, "a disabled controller with CC.EN %d, CSTS.RDY %d, CSTS.CFS %d", en, rdy, cfs);
                break;
        case NVME_STATE_READY:
        case NVME_STATE_SHUTTING_DOWN:
        case NVME_STATE_SHUTDOWN:
                /*
                 * CC.MPS and CC.CSS were checked when it was enabled; a host
                 * may write other values since (they would count at the next
                 * enable), as CC writes keep them: not a reason to refuse.
                 */
                if (!en || !rdy || cfs)
                        return FAIL(r, "an enabled controller with CC %#x and CSTS %#x", im->cc, im->csts);
                break;
        case NVME_STATE_FATAL:
                if (!cfs)
                        return FAIL(r, "a failed controller without CSTS.CFS");
                break;
        default:
                return FAIL(r, "controller state %u is unknown", im->state);
        }
        if ((im->dbbuf_db == 0) != (im->dbbuf_ei == 0) || (im->dbbuf_db & NVME_PAGE_MASK) ||
            (im->dbbuf_ei & NVME_PAGE_MASK) || (im->dbbuf_db && im->dbbuf_db == im->dbbuf_ei))
                return FAIL(r, "shadow doorbell buffers %#" PRIx64 " / %#" PRIx64 " are invalid", im->dbbuf_db,
                            im->dbbuf_ei);

        unsigned have = 0;
        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                have += c->ns[i] != NULL;
        if (im->nns != have || devstate_reader_count(r, SEC_NS) != im->nns)
                return FAIL(r, "the source has %u namespaces, this controller %u: define both devices identically",
                            im->nns, have);
        return 0;
}

static int check_feat(NvmeCtrl *c, DevStateReader *r, NvmeMigImage *im) {
        const DevStateSection *s = devstate_reader_find(r, SEC_FEAT, 0);
        const NvmeFeatures *f = &im->feat;
        int ret;

        if ((ret = devstate_get_mapped(r, s, feat_map, G_N_ELEMENTS(feat_map), im)) < 0)
                return ret;
        if (f->power_state != 0)
                return FAIL(r, "power state %u does not exist (one power state)", f->power_state);
        if (f->nsqa >= c->cfg.max_ioqs || f->ncqa >= c->cfg.max_ioqs)
                return FAIL(r, "number of queues %u/%u beyond %u", f->nsqa + 1u, f->ncqa + 1u, c->cfg.max_ioqs);
        return 0;
}

/* The queue of a CQ or SQ section, within the controller's. */
static int queue_of(NvmeCtrl *c, DevStateReader *r, const DevStateSection *s, const char *kind, uint32_t *q) {
        *q = devstate_section_instance(s);
        if (*q > c->cfg.max_ioqs)
                return FAIL(r, "%s %u beyond the %u I/O queues", kind, *q, c->cfg.max_ioqs);
        return 0;
}

/* A queue's size and base as Create I/O CQ/SQ accept them (§5.3, §5.4), the admin queues' as AQA/ASQ/ACQ. */
static int check_ring(DevStateReader *r, const char *kind, uint32_t q, uint32_t size, uint64_t gpa) {
        uint32_t max = q == 0 ? 4096 : NVME_MQES + 1;

        if (size < 2 || size > max)
                return FAIL(r, "%s %u: size %u outside 2..%u", kind, q, size, max);
        if ((gpa & NVME_PAGE_MASK) || (q == 0 && !gpa))
                return FAIL(r, "%s %u: base %#" PRIx64 " is not a page", kind, q, gpa);
        return 0;
}

static int check_queues(NvmeCtrl *c, DevStateReader *r, NvmeMigImage *im) {
        unsigned n;
        int ret;

        n = devstate_reader_count(r, SEC_CQ);
        for (unsigned i = 0; i < n; i++) {
                const DevStateSection *s = devstate_reader_nth(r, SEC_CQ, i);
                const void *p;
                size_t len;
                uint32_t q;
                if ((ret = queue_of(c, r, s, "CQ", &q)) < 0)
                        return ret;
                NvmeMigCq *cq = &im->cq[q];
                cq->created = true;
                if ((ret = devstate_get_mapped(r, s, cq_map, G_N_ELEMENTS(cq_map), cq)) < 0 ||
                    (ret = check_ring(r, "CQ", q, cq->size, cq->gpa)) < 0)
                        return ret;
                if (cq->head >= cq->size || cq->tail >= cq->size || cq->phase > 1)
                        return FAIL(r, "CQ %u: head %u, tail %u, phase %u for %u entries", q, cq->head, cq->tail,
                                    cq->phase, cq->size);
                /* §5.5: the vector matters only with interrupts enabled (and then it was checked at creation). */
                if ((cq->ien && cq->vector >= c->cfg.msix_nvec) || (q == 0 && (cq->vector != 0 || !cq->ien)))
                        return FAIL(r, "CQ %u: vector %u (%u vectors)", q, cq->vector, c->cfg.msix_nvec);
                if (cq->irq_pending > cq->size)
                        return FAIL(r, "CQ %u: %u interrupts pending for %u entries", q, cq->irq_pending, cq->size);
                if (cq->shadow && (q == 0 || !im->dbbuf_db))
                        return FAIL(r, "CQ %u: shadow doorbell without a doorbell buffer", q);
                if (devstate_get_bytes(s, CQ_BACKLOG, &p, &len) < 0 || len % sizeof(NvmeMigCqe) != 0)
                        return FAIL(r, "CQ %u: backlog of %zu bytes", q, len);
                cq->backlog = p;
                cq->n_backlog = len / sizeof(NvmeMigCqe);
        }
        n = devstate_reader_count(r, SEC_SQ);
        for (unsigned i = 0; i < n; i++) {
                const DevStateSection *s = devstate_reader_nth(r, SEC_SQ, i);
                uint32_t q;
                if ((ret = queue_of(c, r, s, "SQ", &q)) < 0)
                        return ret;
                NvmeMigSq *sq = &im->sq[q];
                sq->created = true;
                if ((ret = devstate_get_mapped(r, s, sq_map, G_N_ELEMENTS(sq_map), sq)) < 0 ||
                    (ret = check_ring(r, "SQ", q, sq->size, sq->gpa)) < 0)
                        return ret;
                if (sq->head >= sq->size || sq->tail >= sq->size)
                        return FAIL(r, "SQ %u: head %u, tail %u for %u entries", q, sq->head, sq->tail, sq->size);
                if (sq->cqid > c->cfg.max_ioqs || !im->cq[sq->cqid].created || (q == 0) != (sq->cqid == 0))
                        return FAIL(r, "SQ %u: completion queue %u does not exist", q, sq->cqid);
                if (sq->shadow && (q == 0 || !im->dbbuf_db))
                        return FAIL(r, "SQ %u: shadow doorbell without a doorbell buffer", q);
        }
        /* Completions waiting for room: each from an SQ that posts to this CQ, within its command slots. */
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++) {
                for (size_t k = 0; k < im->cq[q].n_backlog; k++) {
                        NvmeMigCqe e;
                        memcpy(&e, &im->cq[q].backlog[k], sizeof(e));
                        if (e.sqid > c->cfg.max_ioqs || !im->sq[e.sqid].created || im->sq[e.sqid].cqid != q ||
                            e.reserved != 0)
                                return FAIL(r, "CQ %u: waiting completion for SQ %u that does not post to it", q,
                                            e.sqid);
                        im->sq[e.sqid].held++;
                }
        }
        if (im->n_aer && !im->sq[0].created)
                return FAIL(r, "%u outstanding AERs without an admin queue", im->n_aer);
        im->sq[0].held += im->n_aer;
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++)
                if (im->sq[q].created && im->sq[q].held > MIN(im->sq[q].size, NVME_SQ_MAX_INFLIGHT))
                        return FAIL(r, "SQ %u: %u commands held for %u slots", q, im->sq[q].held,
                                    MIN(im->sq[q].size, NVME_SQ_MAX_INFLIGHT));
        /*
         * Admin queues while enabled (checked as rings above); no queue at
         * all while disabled.  Not necessarily where AQA/ASQ/ACQ say: a
         * host may write them while enabled, for the next enable (§3.1.8-10).
         */
        bool enabled = im->state != NVME_STATE_DISABLED && im->state != NVME_STATE_FATAL;
        if (enabled) {
                if (!im->sq[0].created || !im->cq[0].created)
                        return FAIL(r, "enabled without admin queues");
        } else {
                for (unsigned q = 0; q <= c->cfg.max_ioqs; q++)
                        if (im->sq[q].created || im->cq[q].created)
                                return FAIL(r, "queue %u exists on a controller that is not enabled", q);
                if (im->n_aer)
                        return FAIL(r, "outstanding AERs on a controller that is not enabled");
        }
        return 0;
}

static int check_namespaces(NvmeCtrl *c, DevStateReader *r) {
        unsigned n = devstate_reader_count(r, SEC_NS);

        for (unsigned i = 0; i < n; i++) {
                const DevStateSection *s = devstate_reader_nth(r, SEC_NS, i);
                uint32_t nsid = devstate_section_instance(s);
                const void *nguid, *eui, *uuid;
                size_t l1, l2, l3;
                uint32_t bs;
                uint64_t nsze;
                bool ro;

                devstate_get_u32(s, NS_BLOCK_SIZE, &bs);
                devstate_get_u64(s, NS_NSZE, &nsze);
                devstate_get_bool(s, NS_READ_ONLY, &ro);
                devstate_get_bytes(s, NS_NGUID, &nguid, &l1);
                devstate_get_bytes(s, NS_EUI64, &eui, &l2);
                devstate_get_bytes(s, NS_UUID, &uuid, &l3);
                NvmeNs *ns = nsid >= 1 && nsid <= NVME_MAX_NS ? c->ns[nsid] : NULL;
                if (!ns)
                        return FAIL(r, "namespace %u of the source does not exist here: define both devices "
                                    "identically", nsid);
                if (bs != ns->block_size || nsze != ns->nsze || ro != ns->read_only)
                        return devstate_reader_fail(r, -ENODEV,
                                                    "namespace %u: the source has %" PRIu64 " blocks of %u bytes%s, "
                                                    "this one %" PRIu64 " of %u%s: same size and block size needed",
                                                    nsid, nsze, bs, ro ? " read-only" : "", ns->nsze,
                                                    ns->block_size, ns->read_only ? " read-only" : "");
                if (l1 != 16 || l2 != 8 || l3 != 16 || memcmp(nguid, ns->nguid, 16) != 0 ||
                    memcmp(eui, ns->eui64, 8) != 0 || memcmp(uuid, ns->uuid, 16) != 0)
                        return devstate_reader_fail(r, -ENODEV,
                                                    "namespace %u: NGUID/EUI-64/UUID differ from this one's: the "
                                                    "guest would see another disk (same device name and host "
                                                    "UUID needed)", nsid);
        }
        return 0;
}

static int take_req(NvmeSQ *sq, uint16_t cid, NvmeReq **out) {
        NvmeReq *req = sq->free;
        if (!req)
                return -ENOSPC;
        sq->free = req->next;
        sq->inflight++;
        memset(&req->cmd, 0, sizeof(req->cmd));
        req->cmd.cid = cid;
        req->next = NULL;
        req->aux = NULL;
        req->ns = NULL;
        req->t_start = 0;
        req->iov.n_gpa = 0;
        *out = req;
        return 0;
}

/* Parked and reset: build the controller from a checked image.  0 or -ENOMEM/-ENOSPC. */
static int apply_image(NvmeCtrl *c, const NvmeMigImage *im) {
        uint64_t now = nvme_now_ns();

        c->cc = im->cc;
        c->aqa = im->aqa;
        c->asq = im->asq;
        c->acq = im->acq;
        c->intms = im->intms;
        c->feat = im->feat;
        c->feat.ts_base_ms = im->ts_ms;
        c->feat.ts_set_ns = now;
        /* Queues first with shadow doorbells off (creating them writes nothing into guest memory). */
        c->dbbuf_db = c->dbbuf_ei = 0;
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++) {
                if (!im->cq[q].created)
                        continue;
                if (nvme_cq_create(c, (uint16_t) q, im->cq[q].size, im->cq[q].gpa, im->cq[q].ien,
                                   im->cq[q].vector) != NVME_SUCCESS)
                        return -ENOMEM;
                NvmeCQ *cq = &c->cq[q];
                cq->head = im->cq[q].head;
                cq->tail = im->cq[q].tail;
                cq->phase = im->cq[q].phase;
                cq->shadow = im->cq[q].shadow;
                cq->irq_pending = im->cq[q].irq_pending;
                cq->irq_first = now;
        }
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++) {
                if (!im->sq[q].created)
                        continue;
                if (nvme_sq_create(c, (uint16_t) q, im->sq[q].cqid, im->sq[q].size, im->sq[q].gpa) != NVME_SUCCESS)
                        return -ENOMEM;
                NvmeSQ *sq = &c->sq[q];
                sq->head = im->sq[q].head;
                sq->tail = im->sq[q].tail;
                sq->shadow = im->sq[q].shadow;
        }
        c->dbbuf_db = im->dbbuf_db;
        c->dbbuf_ei = im->dbbuf_ei;
        for (unsigned t = 0; t < c->n_io; t++)
                nvme_queues_forget_mappings(c, &c->io[t]);
        /* Posted doorbells the source had not looked at yet: the queue's thread checks them as any other. */
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++) {
                if (im->sq[q].created && im->sq[q].has_db) {
                        NvmeIoThread *t = c->sq[q].t;
                        atomic_store(&c->db_val[2 * q], im->sq[q].db);
                        atomic_fetch_or(&t->db_dirty[(2 * q) / 64], 1ull << ((2 * q) % 64));
                }
                if (im->cq[q].created && im->cq[q].has_db) {
                        NvmeIoThread *t = c->cq[q].t;
                        atomic_store(&c->db_val[2 * q + 1], im->cq[q].db);
                        atomic_fetch_or(&t->db_dirty[(2 * q + 1) / 64], 1ull << ((2 * q + 1) % 64));
                }
        }
        for (unsigned i = 0; i < im->n_aer; i++) {
                NvmeReq *req;
                if (take_req(&c->sq[0], im->aer_cids[i], &req) < 0)
                        return -ENOSPC;
                req->cmd.opcode = NVME_ADM_ASYNC_EVENT;
                c->aer[c->n_aer++] = req;
        }
        for (unsigned q = 0; q <= c->cfg.max_ioqs; q++) {
                for (size_t k = 0; k < im->cq[q].n_backlog; k++) {
                        NvmeMigCqe e;
                        NvmeReq *req;
                        memcpy(&e, &im->cq[q].backlog[k], sizeof(e));
                        if (take_req(&c->sq[e.sqid], e.cid, &req) < 0)
                                return -ENOSPC;
                        req->status = e.status;
                        req->dw0 = e.dw0;
                        nvme_req_list_push(&c->cq[q].backlog, req);
                }
        }
        memcpy(c->aen_queue, im->aen_queue, sizeof(c->aen_queue));
        c->n_aen = im->n_aen;
        c->aen_masked = im->aen_masked;
        memcpy(c->changed_ns, im->changed_ns, im->n_changed_ns * sizeof(uint32_t));
        c->n_changed_ns = im->n_changed_ns;
        c->changed_ns_overflow = im->changed_ns_overflow;
        memcpy(c->errlog, im->errlog, sizeof(c->errlog));
        c->err_head = im->err_head;
        c->err_count = im->err_count;
        c->units_read = im->units_read;
        c->units_written = im->units_written;
        c->state = (NvmeCtrlState) im->state;
        atomic_store(&c->shutdown_req, im->shutdown_req);
        atomic_store(&c->csts, im->csts);
        return 0;
}

/* Back to power-on (parked). */
static void mig_ctrl_reset(NvmeCtrl *c) {
        nvme_ctrl_disable(c);
        c->cc = 0;
        c->aqa = 0;
        c->asq = c->acq = 0;
        c->intms = 0;
        c->n_changed_ns = 0;
        c->changed_ns_overflow = false;
        atomic_store(&c->shutdown_req, false);
}

/* Check the complete stream, then apply it; on failure the controller is left reset. */
static int load_state(NvmeCtrl *c, DevStateReader *r) {
        g_autofree NvmeMigImage *im = g_new0(NvmeMigImage, 1);
        int ret;

        if ((ret = devstate_reader_finish(r)) < 0 || (ret = check_ctrl(c, r, im)) < 0 ||
            (ret = check_feat(c, r, im)) < 0 || (ret = check_queues(c, r, im)) < 0 ||
            (ret = check_namespaces(c, r)) < 0) {
                mig_ctrl_reset(c);
                return ret;
        }
        /* Whatever register writes reached the controller while RESUMING are forgotten. */
        mig_ctrl_reset(c);
        ret = apply_image(c, im);
        if (ret < 0) {
                devstate_reader_fail(r, ret, "cannot rebuild the queues: %s", g_strerror(-ret));
                mig_ctrl_reset(c);
        }
        return ret;
}

/* ---- the state machine (DevStateMig runs it) ------------------------------------------- */

static int ops_save(void *opaque, DevStateWriter **out) {
        return save_state(opaque, out);
}

static DevStateReader *ops_reader(void *opaque) {
        g_autoptr(DevStateReader) r = devstate_reader_new(NVME_STATE_TYPE, NULL, 0);

        if (devstate_reader_add_sections(r, nvme_sections, G_N_ELEMENTS(nvme_sections)) < 0)
                return NULL;
        return g_steal_pointer(&r);
}

static int ops_load(void *opaque, DevStateReader *r) {
        return load_state(opaque, r);
}

static void ops_reset(void *opaque) {
        mig_ctrl_reset(opaque);
}

/* The hold is one quiesce: the I/O thread stays parked (the quiesce drained every in-flight command). */
static void ops_hold(void *opaque, bool on) {
        if (on)
                nvme_ctrl_quiesce(opaque);
        else
                nvme_ctrl_resume(opaque);
}

static void ops_refused(void *opaque, const char *why) {
        g_warning("nvme %s: incoming device state refused: %s", ((NvmeCtrl *) opaque)->name, why);
}

static const DevStateMigOps nvme_state_ops = {
        .save = ops_save,
        .reader = ops_reader,
        .load = ops_load,
        .reset = ops_reset,
        .hold = ops_hold,
        .refused = ops_refused,
};

void nvme_mig_init(NvmeCtrl *c) {
        devstate_mig_init(&c->mig, &nvme_state_ops, c, c->name);
}

void nvme_mig_free(NvmeCtrl *c) {
        devstate_mig_fini(&c->mig);
}

int nvme_ctrl_mig_transition(NvmeCtrl *c, enum vu_mig_state from, enum vu_mig_state to) {
        return devstate_mig_transition(&c->mig, from, to);
}

ssize_t nvme_ctrl_mig_read(NvmeCtrl *c, void *buf, size_t len) {
        return devstate_mig_read(&c->mig, buf, len);
}

int nvme_ctrl_mig_write(NvmeCtrl *c, const void *buf, size_t len) {
        return devstate_mig_write(&c->mig, buf, len);
}

void nvme_ctrl_mig_reset(NvmeCtrl *c) {
        devstate_mig_reset(&c->mig);
}

enum vu_mig_state nvme_ctrl_mig_state(const NvmeCtrl *c) {
        return c->mig.state;
}

const char *nvme_ctrl_mig_error(const NvmeCtrl *c) {
        return devstate_mig_error(&c->mig);
}
