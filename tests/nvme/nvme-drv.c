/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-drv.h"

void nvme_drv_init(NvmeDrv *d, const NvmeDrvOps *ops, void *opaque, uint8_t *ram, uint64_t ram_gpa,
                   uint64_t ram_size) {
        memset(d, 0, sizeof(*d));
        d->ops = ops;
        d->opaque = opaque;
        d->ram = ram;
        d->ram_gpa = ram_gpa;
        d->ram_size = ram_size;
        d->alloc_next = ram_gpa;
        d->timeout_ms = 10000;
}

uint64_t nvme_drv_alloc(NvmeDrv *d, uint64_t size, uint64_t align) {
        uint64_t gpa = (d->alloc_next + align - 1) & ~(align - 1);
        g_assert_true(gpa + size <= d->ram_gpa + d->ram_size);
        d->alloc_next = gpa + size;
        memset(nvme_drv_ptr(d, gpa), 0, size);
        return gpa;
}

void *nvme_drv_ptr(NvmeDrv *d, uint64_t gpa) {
        g_assert_true(gpa >= d->ram_gpa && gpa < d->ram_gpa + d->ram_size);
        return d->ram + (gpa - d->ram_gpa);
}

static void trace(NvmeDrv *d, uint64_t off, bool write) {
        if (off < 0x1000 && d->n_trace < G_N_ELEMENTS(d->trace))
                d->trace[d->n_trace++] = (uint32_t) off | (write ? 0x80000000u : 0);
}

uint32_t nvme_drv_read32(NvmeDrv *d, uint64_t off) {
        uint32_t v = 0xffffffffu;
        trace(d, off, false);
        if (d->ops->reg_read(d->opaque, off, &v, 4) < 0)
                return 0xffffffffu;
        return v;
}

void nvme_drv_write32(NvmeDrv *d, uint64_t off, uint32_t v) {
        trace(d, off, true);
        d->ops->reg_write(d->opaque, off, &v, 4);
}

static uint64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static int wait_csts(NvmeDrv *d, uint32_t mask, uint32_t want) {
        uint64_t end = now_ms() + (uint64_t) d->timeout_ms;
        for (;;) {
                uint32_t csts = nvme_drv_read32(d, NVME_REG_CSTS);
                if (csts == 0xffffffffu)
                        return -ENODEV;
                if (csts & NVME_CSTS_CFS)
                        return -EIO;
                if ((csts & mask) == want)
                        return 0;
                if (now_ms() > end)
                        return -ETIMEDOUT;
                usleep(100);
        }
}

int nvme_drv_enable(NvmeDrv *d, uint32_t aq_depth) {
        /* nvme_pci_enable: CSTS, then CAP as two dwords, low first; CMBSZ. */
        if (nvme_drv_read32(d, NVME_REG_CSTS) == 0xffffffffu)
                return -ENODEV;
        uint32_t lo = nvme_drv_read32(d, NVME_REG_CAP), hi = nvme_drv_read32(d, NVME_REG_CAP + 4);
        d->cap = (uint64_t) hi << 32 | lo;
        (void) nvme_drv_read32(d, NVME_REG_CMBSZ);
        /* nvme_pci_configure_admin_queue: VS, disable, AQA, ASQ/ACQ halves. */
        (void) nvme_drv_read32(d, NVME_REG_VS);
        uint32_t cc = nvme_drv_read32(d, NVME_REG_CC);
        nvme_drv_write32(d, NVME_REG_CC, cc & ~(NVME_CC_EN | (3u << 14)));
        int r = wait_csts(d, NVME_CSTS_RDY, 0);
        if (r < 0)
                return r;

        NvmeDrvQueue *q = &d->q[0];
        memset(q, 0, sizeof(*q));
        q->depth = aq_depth;
        q->sq_gpa = nvme_drv_alloc(d, (uint64_t) aq_depth * 64, 4096);
        q->cq_gpa = nvme_drv_alloc(d, (uint64_t) aq_depth * 16, 4096);
        q->sq = nvme_drv_ptr(d, q->sq_gpa);
        q->cq = nvme_drv_ptr(d, q->cq_gpa);
        q->phase = 1;
        q->live = true;
        nvme_drv_write32(d, NVME_REG_AQA, (aq_depth - 1) | (aq_depth - 1) << 16);
        nvme_drv_write32(d, NVME_REG_ASQ, (uint32_t) q->sq_gpa);
        nvme_drv_write32(d, NVME_REG_ASQ + 4, (uint32_t) (q->sq_gpa >> 32));
        nvme_drv_write32(d, NVME_REG_ACQ, (uint32_t) q->cq_gpa);
        nvme_drv_write32(d, NVME_REG_ACQ + 4, (uint32_t) (q->cq_gpa >> 32));

        /* nvme_enable_ctrl (Linux ≥ 6.6): configuration with EN=0, re-read CAP, then EN=1. */
        cc = (0u << 4) | (0u << 7) | (0u << 11) | (6u << 16) | (4u << 20);
        nvme_drv_write32(d, NVME_REG_CC, cc);
        (void) nvme_drv_read32(d, NVME_REG_CAP);
        (void) nvme_drv_read32(d, NVME_REG_CAP + 4);
        nvme_drv_write32(d, NVME_REG_CC, cc | NVME_CC_EN);
        return wait_csts(d, NVME_CSTS_RDY, NVME_CSTS_RDY);
}

int nvme_drv_disable(NvmeDrv *d) {
        uint32_t cc = nvme_drv_read32(d, NVME_REG_CC);
        nvme_drv_write32(d, NVME_REG_CC, cc & ~NVME_CC_EN);
        for (unsigned i = 0; i < G_N_ELEMENTS(d->q); i++)
                d->q[i].live = false;
        d->shadow = false;
        return wait_csts(d, NVME_CSTS_RDY, 0);
}

int nvme_drv_shutdown(NvmeDrv *d) {
        uint32_t cc = nvme_drv_read32(d, NVME_REG_CC);
        nvme_drv_write32(d, NVME_REG_CC, (cc & ~(3u << 14)) | (1u << 14));
        return wait_csts(d, NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_DONE);
}

/* Linux's nvme_dbbuf_need_event. */
static bool need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old) {
        return (uint16_t) (new_idx - event_idx - 1) < (uint16_t) (new_idx - old);
}

static void ring_db(NvmeDrv *d, uint16_t qid, bool cq, uint32_t value, uint32_t old) {
        unsigned idx = 2u * qid + (cq ? 1 : 0);
        if (d->shadow && qid != 0) {
                __atomic_thread_fence(__ATOMIC_SEQ_CST);        /* entries before the shadow value */
                __atomic_store_n(&d->db_shadow[idx], value, __ATOMIC_RELEASE);
                __atomic_thread_fence(__ATOMIC_SEQ_CST);        /* shadow before reading EventIdx */
                uint32_t ei = __atomic_load_n(&d->db_ei[idx], __ATOMIC_ACQUIRE);
                if (!need_event((uint16_t) ei, (uint16_t) value, (uint16_t) old))
                        return;
        }
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        d->mmio_doorbells++;
        if (cq)
                d->mmio_cq_doorbells++;
        d->ops->reg_write(d->opaque, NVME_REG_DBS + 4ull * idx, &value, 4);
}

uint16_t nvme_drv_queue(NvmeDrv *d, uint16_t qid, NvmeSqe *cmd) {
        NvmeDrvQueue *q = &d->q[qid];
        cmd->cid = q->next_cid++;
        memcpy(&q->sq[q->sq_tail], cmd, sizeof(*cmd));
        q->sq_tail = (q->sq_tail + 1) % q->depth;
        return cmd->cid;
}

static uint32_t *rung_tail(NvmeDrv *d, uint16_t qid) {
        return &d->rung[qid];
}

void nvme_drv_ring(NvmeDrv *d, uint16_t qid) {
        NvmeDrvQueue *q = &d->q[qid];
        uint32_t *old = rung_tail(d, qid);
        ring_db(d, qid, false, q->sq_tail, *old);
        *old = q->sq_tail;
}

uint16_t nvme_drv_submit(NvmeDrv *d, uint16_t qid, NvmeSqe *cmd) {
        uint16_t cid = nvme_drv_queue(d, qid, cmd);
        nvme_drv_ring(d, qid);
        return cid;
}

int nvme_drv_poll(NvmeDrv *d, uint16_t qid, NvmeCqe *out) {
        NvmeDrvQueue *q = &d->q[qid];
        NvmeCqe *e = &q->cq[q->cq_head];
        uint16_t status = __atomic_load_n(&e->status, __ATOMIC_ACQUIRE);
        if ((status & 1) != q->phase)
                return 0;
        memcpy(out, e, sizeof(*out));
        uint32_t old = q->cq_head;
        if (++q->cq_head == q->depth) {
                q->cq_head = 0;
                q->phase ^= 1;
        }
        ring_db(d, qid, true, q->cq_head, old);
        return 1;
}

int nvme_drv_reap(NvmeDrv *d, uint16_t qid, NvmeCqe *out, int timeout_ms) {
        uint64_t end = now_ms() + (uint64_t) timeout_ms;
        int r;
        for (;;) {
                if (nvme_drv_poll(d, qid, out))
                        return 0;
                uint64_t now = now_ms();
                if (now >= end)
                        return -ETIMEDOUT;
                int left = (int) MIN(end - now, 10u);
                if (!d->ops->wait_irq)
                        usleep(50);
                else if ((r = d->ops->wait_irq(d->opaque, d->q[qid].vector, left)) < 0)
                        return r;       /* the device is gone (its connection closed) */
        }
}

int nvme_drv_cmd(NvmeDrv *d, uint16_t qid, NvmeSqe *cmd, NvmeCqe *out) {
        NvmeCqe tmp;
        if (!out)
                out = &tmp;
        uint16_t cid = nvme_drv_submit(d, qid, cmd);
        for (;;) {
                int r = nvme_drv_reap(d, qid, out, d->timeout_ms);
                if (r < 0)
                        return r;
                if (out->cid == cid)
                        return nvme_drv_status(out);
        }
}

int nvme_drv_identify(NvmeDrv *d, uint8_t cns, uint32_t nsid, uint64_t gpa) {
        NvmeSqe c = { .opcode = NVME_ADM_IDENTIFY, .nsid = nsid, .prp1 = gpa, .cdw10 = cns };
        return nvme_drv_cmd(d, 0, &c, NULL);
}

int nvme_drv_set_features(NvmeDrv *d, uint8_t fid, uint32_t dw11, uint32_t *dw0) {
        NvmeSqe c = { .opcode = NVME_ADM_SET_FEATURES, .cdw10 = fid, .cdw11 = dw11 };
        NvmeCqe e;
        int r = nvme_drv_cmd(d, 0, &c, &e);
        if (dw0)
                *dw0 = e.dw0;
        return r;
}

int nvme_drv_create_io_queues(NvmeDrv *d, uint16_t qid, uint32_t depth, uint16_t vector) {
        NvmeDrvQueue *q = &d->q[qid];
        memset(q, 0, sizeof(*q));
        q->qid = qid;
        q->depth = depth;
        q->vector = vector;
        q->phase = 1;
        q->sq_gpa = nvme_drv_alloc(d, (uint64_t) depth * 64, 4096);
        q->cq_gpa = nvme_drv_alloc(d, (uint64_t) depth * 16, 4096);
        q->sq = nvme_drv_ptr(d, q->sq_gpa);
        q->cq = nvme_drv_ptr(d, q->cq_gpa);
        *rung_tail(d, qid) = 0;
        if (d->shadow) {
                d->db_shadow[2 * qid] = d->db_shadow[2 * qid + 1] = 0;
                d->db_ei[2 * qid] = d->db_ei[2 * qid + 1] = 0;
        }
        NvmeSqe cq = { .opcode = NVME_ADM_CREATE_CQ, .prp1 = q->cq_gpa,
                       .cdw10 = qid | (depth - 1) << 16,
                       .cdw11 = 1 | (d->poll_queues ? 0 : 2) | (uint32_t) vector << 16 };
        int r = nvme_drv_cmd(d, 0, &cq, NULL);
        if (r)
                return r;
        NvmeSqe sq = { .opcode = NVME_ADM_CREATE_SQ, .prp1 = q->sq_gpa,
                       .cdw10 = qid | (depth - 1) << 16, .cdw11 = 1 | (uint32_t) qid << 16 };
        r = nvme_drv_cmd(d, 0, &sq, NULL);
        if (r == 0)
                q->live = true;
        return r;
}

int nvme_drv_delete_io_queues(NvmeDrv *d, uint16_t qid) {
        NvmeSqe sq = { .opcode = NVME_ADM_DELETE_SQ, .cdw10 = qid };
        int r = nvme_drv_cmd(d, 0, &sq, NULL);
        if (r)
                return r;
        NvmeSqe cq = { .opcode = NVME_ADM_DELETE_CQ, .cdw10 = qid };
        r = nvme_drv_cmd(d, 0, &cq, NULL);
        d->q[qid].live = false;
        return r;
}

int nvme_drv_dbbuf_config(NvmeDrv *d) {
        uint64_t db = nvme_drv_alloc(d, 4096, 4096), ei = nvme_drv_alloc(d, 4096, 4096);
        NvmeSqe c = { .opcode = NVME_ADM_DBBUF_CONFIG, .prp1 = db, .prp2 = ei };
        int r = nvme_drv_cmd(d, 0, &c, NULL);
        if (r == 0) {
                d->db_shadow = nvme_drv_ptr(d, db);
                d->db_ei = nvme_drv_ptr(d, ei);
                d->shadow = true;
        }
        return r;
}

void nvme_drv_build_prps(NvmeDrv *d, NvmeSqe *cmd, uint64_t gpa, uint64_t len) {
        uint64_t first = 4096 - (gpa & 4095);
        cmd->prp1 = gpa;
        cmd->prp2 = 0;
        if (len <= first)
                return;
        uint64_t rem = len - first, next = gpa + first;
        if (rem <= 4096) {
                cmd->prp2 = next;
                return;
        }
        uint64_t n = (rem + 4095) / 4096;
        uint64_t list = nvme_drv_alloc(d, 4096 * ((n + 510) / 511), 4096);
        uint64_t *e = nvme_drv_ptr(d, list);
        cmd->prp2 = list;
        for (uint64_t i = 0, slot = 0; i < n; i++, slot++) {
                if (slot == 511 && i + 1 < n) {
                        e[511] = list + 4096 * ((i / 511));
                        e = nvme_drv_ptr(d, e[511]);
                        slot = 0;
                }
                e[slot] = next + 4096 * i;
        }
}

int nvme_drv_rw(NvmeDrv *d, uint16_t qid, bool write, uint32_t nsid, uint64_t slba, uint32_t nlb,
                uint32_t lba_size, uint64_t gpa, bool fua) {
        NvmeSqe c = { .opcode = write ? NVME_CMD_WRITE : NVME_CMD_READ, .nsid = nsid,
                      .cdw10 = (uint32_t) slba, .cdw11 = (uint32_t) (slba >> 32),
                      .cdw12 = (nlb - 1) | (fua ? 1u << 30 : 0) };
        uint64_t save = d->alloc_next;
        nvme_drv_build_prps(d, &c, gpa, (uint64_t) nlb * lba_size);
        int r = nvme_drv_cmd(d, qid, &c, NULL);
        d->alloc_next = save;           /* list pages were temporary */
        return r;
}

unsigned nvme_drv_posted(NvmeDrv *d, uint16_t qid) {
        NvmeDrvQueue *q = &d->q[qid];
        uint32_t head = q->cq_head;
        uint8_t phase = q->phase;
        unsigned n = 0;

        while (n < q->depth && (__atomic_load_n(&q->cq[head].status, __ATOMIC_ACQUIRE) & 1) == phase) {
                n++;
                if (++head == q->depth) {
                        head = 0;
                        phase ^= 1;
                }
        }
        return n;
}
