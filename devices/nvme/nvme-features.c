/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Get/Set Features (NVMe 1.4 §5.21, §5.9): one table entry per feature with
 * its default, its get and set handlers.  No feature is saveable.
 */
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

typedef struct NvmeFeatDesc {
        const char *name;
        NvmeStatus (*set)(NvmeCtrl *c, NvmeReq *req, uint32_t dw11);
        NvmeStatus (*get)(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0);
} NvmeFeatDesc;

void nvme_features_reset(NvmeCtrl *c) {
        NvmeFeatures *f = &c->feat;

        memset(f, 0, sizeof(*f));
        f->temp_over = NVME_WCTEMP;
        f->temp_under = 0;
        f->wce = true;
}

bool nvme_vector_coalescing(const NvmeCtrl *c, uint16_t vector) {
        if (c->feat.coalesce_time == 0)
                return false;
        if (vector < 64 * G_N_ELEMENTS(c->feat.irq_cd) &&
            (c->feat.irq_cd[vector / 64] & (1ull << (vector % 64))))
                return false;
        return true;
}

/* 01h Arbitration: stored; one round-robin arbiter serves all queues. */
static NvmeStatus set_arbitration(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        c->feat.arbitration = dw11;
        return NVME_SUCCESS;
}
static NvmeStatus get_arbitration(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        *dw0 = dflt ? 0 : c->feat.arbitration;
        return NVME_SUCCESS;
}

/* 02h Power Management: one power state (NPSS = 0). */
static NvmeStatus set_power(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        if ((dw11 & 0x1f) != 0)
                return NVME_SC_INVALID_FIELD;
        c->feat.power_state = dw11 & 0xff;
        return NVME_SUCCESS;
}
static NvmeStatus get_power(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        *dw0 = dflt ? 0 : c->feat.power_state;
        return NVME_SUCCESS;
}

/* 04h Temperature Threshold: the composite sensor (TMPSEL 0) only. */
static NvmeStatus set_temp(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        unsigned sel = (dw11 >> 16) & 0xf, thsel = (dw11 >> 20) & 0x3;
        uint16_t t = dw11 & 0xffff;

        if (sel != 0 || thsel > 1)
                return NVME_SC_INVALID_FIELD;
        if (thsel == 0)
                c->feat.temp_over = t;
        else
                c->feat.temp_under = t;
        return NVME_SUCCESS;
}
static NvmeStatus get_temp(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        unsigned sel = (dw11 >> 16) & 0xf, thsel = (dw11 >> 20) & 0x3;

        if (sel != 0 || thsel > 1)
                return NVME_SC_INVALID_FIELD;
        if (thsel == 0)
                *dw0 = dflt ? NVME_WCTEMP : c->feat.temp_over;
        else
                *dw0 = dflt ? 0 : c->feat.temp_under;
        return NVME_SUCCESS;
}

/* 05h Error Recovery: TLER kept; DULBE unsupported (NSFEAT bit 2 clear). */
static NvmeStatus set_err_recovery(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        if (dw11 & (1u << 16))
                return NVME_SC_INVALID_FIELD;
        c->feat.err_recovery = dw11 & 0xffff;
        return NVME_SUCCESS;
}
static NvmeStatus get_err_recovery(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        *dw0 = dflt ? 0 : c->feat.err_recovery;
        return NVME_SUCCESS;
}

/* 06h Volatile Write Cache: with WCE=0 every write is made durable before it completes. */
static NvmeStatus set_vwc(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        c->feat.wce = dw11 & 1;
        return NVME_SUCCESS;
}
static NvmeStatus get_vwc(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        *dw0 = dflt ? 1 : c->feat.wce;
        return NVME_SUCCESS;
}

/* 07h Number of Queues (§5.21.1.7): once per controller enable, before any I/O queue. */
static NvmeStatus set_num_queues(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        uint16_t nsqr = dw11 & 0xffff, ncqr = dw11 >> 16;

        if (nsqr == 0xffff || ncqr == 0xffff)
                return NVME_SC_INVALID_FIELD;
        for (unsigned q = 1; q <= c->cfg.max_ioqs; q++)
                if (c->sq[q].created || c->cq[q].created)
                        return NVME_SC_CMD_SEQ_ERROR;
        c->feat.nq_set = true;
        c->feat.nsqa = (uint16_t) MIN((unsigned) nsqr, c->cfg.max_ioqs - 1);
        c->feat.ncqa = (uint16_t) MIN((unsigned) ncqr, c->cfg.max_ioqs - 1);
        req->dw0 = c->feat.nsqa | (uint32_t) c->feat.ncqa << 16;
        return NVME_SUCCESS;
}
static NvmeStatus get_num_queues(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        uint32_t max = c->cfg.max_ioqs - 1;
        if (dflt || !c->feat.nq_set)
                *dw0 = max | max << 16;
        else
                *dw0 = c->feat.nsqa | (uint32_t) c->feat.ncqa << 16;
        return NVME_SUCCESS;
}

/* 08h Interrupt Coalescing: THR (0's based entries) and TIME (100 µs units). */
static NvmeStatus set_coalesce(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        c->feat.coalesce_thr = dw11 & 0xff;
        c->feat.coalesce_time = (dw11 >> 8) & 0xff;
        return NVME_SUCCESS;
}
static NvmeStatus get_coalesce(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        *dw0 = dflt ? 0 : c->feat.coalesce_thr | (uint32_t) c->feat.coalesce_time << 8;
        return NVME_SUCCESS;
}

/* 09h Interrupt Vector Configuration: CD (coalescing disable) per vector. */
static NvmeStatus set_irq_config(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        uint16_t iv = dw11 & 0xffff;
        bool cd = dw11 & (1u << 16);

        if (iv >= c->cfg.msix_nvec || iv >= 64 * G_N_ELEMENTS(c->feat.irq_cd))
                return NVME_SC_INVALID_FIELD;
        if (iv == 0 && !cd)
                return NVME_SC_INVALID_FIELD;   /* the admin vector is never coalesced */
        if (cd)
                c->feat.irq_cd[iv / 64] |= 1ull << (iv % 64);
        else
                c->feat.irq_cd[iv / 64] &= ~(1ull << (iv % 64));
        return NVME_SUCCESS;
}
static NvmeStatus get_irq_config(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        uint16_t iv = dw11 & 0xffff;

        if (iv >= c->cfg.msix_nvec || iv >= 64 * G_N_ELEMENTS(c->feat.irq_cd))
                return NVME_SC_INVALID_FIELD;
        bool cd = iv == 0 || (!dflt && (c->feat.irq_cd[iv / 64] & (1ull << (iv % 64))));
        *dw0 = iv | (cd ? 1u << 16 : 0);
        return NVME_SUCCESS;
}

/* 0Bh Asynchronous Event Configuration: SMART warnings 7:0, namespace notices bit 8. */
#define NVME_AEC_SUPPORTED (0xffu | (1u << 8))
static NvmeStatus set_aec(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        c->feat.aec = dw11 & NVME_AEC_SUPPORTED;
        return NVME_SUCCESS;
}
static NvmeStatus get_aec(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        *dw0 = dflt ? 0 : c->feat.aec;
        return NVME_SUCCESS;
}

/* 0Eh Timestamp (§5.21.1.14): 8 bytes of data, milliseconds since the epoch. */
static NvmeStatus set_timestamp(NvmeCtrl *c, NvmeReq *req, uint32_t dw11) {
        uint8_t data[8];
        NvmeStatus st = nvme_data_from_host(c, req, data, sizeof(data));
        if (st)
                return st;
        uint64_t ts = 0;
        memcpy(&ts, data, 6);
        c->feat.ts_base_ms = ts;
        c->feat.ts_set_ns = nvme_now_ns();
        c->feat.ts_set = true;
        return NVME_SUCCESS;
}
static NvmeStatus get_timestamp(NvmeCtrl *c, NvmeReq *req, uint32_t dw11, bool dflt, uint32_t *dw0) {
        uint8_t data[8] = { 0 };
        uint64_t ts;

        if (c->feat.ts_set && !dflt) {
                ts = c->feat.ts_base_ms + (nvme_now_ns() - c->feat.ts_set_ns) / 1000000;
                data[6] = 1u << 1;              /* origin 001b: set by Set Features */
        } else {
                ts = (nvme_now_ns() - c->created_ns) / 1000000;   /* since reset */
        }
        memcpy(data, &ts, 6);
        data[6] |= 0;                           /* synch = 0: the clock did not stop */
        return nvme_data_to_host(c, req, data, sizeof(data));
}

static const NvmeFeatDesc nvme_features[256] = {
        [NVME_FEAT_ARBITRATION] = { "arbitration", set_arbitration, get_arbitration },
        [NVME_FEAT_POWER_MGMT] = { "power-management", set_power, get_power },
        [NVME_FEAT_TEMP_THRESH] = { "temperature-threshold", set_temp, get_temp },
        [NVME_FEAT_ERR_RECOVERY] = { "error-recovery", set_err_recovery, get_err_recovery },
        [NVME_FEAT_VOLATILE_WC] = { "volatile-write-cache", set_vwc, get_vwc },
        [NVME_FEAT_NUM_QUEUES] = { "number-of-queues", set_num_queues, get_num_queues },
        [NVME_FEAT_IRQ_COALESCE] = { "interrupt-coalescing", set_coalesce, get_coalesce },
        [NVME_FEAT_IRQ_CONFIG] = { "interrupt-vector-config", set_irq_config, get_irq_config },
        [NVME_FEAT_ASYNC_EVENT] = { "async-event-config", set_aec, get_aec },
        [NVME_FEAT_TIMESTAMP] = { "timestamp", set_timestamp, get_timestamp },
};

/* None of ours is namespace specific: NSID must be 0 or FFFFFFFFh. */
static bool nvme_feat_nsid_ok(uint32_t nsid) {
        return nsid == 0 || nsid == 0xffffffffu;
}

NvmeStatus nvme_adm_set_features(NvmeCtrl *c, NvmeReq *req) {
        uint8_t fid = req->cmd.cdw10 & 0xff;
        bool save = req->cmd.cdw10 & (1u << 31);
        const NvmeFeatDesc *f = &nvme_features[fid];

        if (!f->set)
                return NVME_SC_INVALID_FIELD;
        if (save)
                return NVME_SC_FEAT_NOT_SAVEABLE;
        if (!nvme_feat_nsid_ok(req->cmd.nsid))
                return nvme_ns_get(c, req->cmd.nsid) || req->cmd.nsid <= NVME_MAX_NS
                               ? NVME_SC_FEAT_NOT_NS_SPECIFIC : NVME_SC_INVALID_NS;
        return f->set(c, req, req->cmd.cdw11);
}

NvmeStatus nvme_adm_get_features(NvmeCtrl *c, NvmeReq *req) {
        uint8_t fid = req->cmd.cdw10 & 0xff;
        unsigned sel = (req->cmd.cdw10 >> 8) & 0x7;
        const NvmeFeatDesc *f = &nvme_features[fid];
        uint32_t dw0 = 0;

        if (!f->get)
                return NVME_SC_INVALID_FIELD;
        if (!nvme_feat_nsid_ok(req->cmd.nsid) && req->cmd.nsid > NVME_MAX_NS)
                return NVME_SC_INVALID_NS;
        switch (sel) {
        case 0:                 /* current */
        case 1:                 /* default */
        case 2: {               /* saved: nothing is saveable, so the default */
                NvmeStatus st = f->get(c, req, req->cmd.cdw11, sel != 0, &dw0);
                if (st)
                        return st;
                break;
        }
        case 3:                 /* supported capabilities: changeable only */
                dw0 = 1u << 2;
                break;
        default:
                return NVME_SC_INVALID_FIELD;
        }
        req->dw0 = dw0;
        return NVME_SUCCESS;
}
