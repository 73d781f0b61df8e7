/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * BAR0: controller registers (NVMe 1.4 §3.1) and doorbells (§3.1.16-17).
 * Runs on the control thread.  Doorbell writes are only posted to the I/O
 * thread; CC.EN transitions park it briefly (no I/O can be in flight when
 * enabling, and disabling must finish in-flight I/O anyway).
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

/* The register file as the host sees it (0x00-0x3f). */
static void nvme_regs_image(NvmeCtrl *c, uint8_t img[64]) {
        uint32_t csts = atomic_load(&c->csts);
        uint32_t vs = NVME_VS_1_4;

        memset(img, 0, 64);
        memcpy(img + NVME_REG_CAP, &c->cap, 8);
        memcpy(img + NVME_REG_VS, &vs, 4);
        memcpy(img + NVME_REG_INTMS, &c->intms, 4);
        memcpy(img + NVME_REG_INTMC, &c->intms, 4);
        memcpy(img + NVME_REG_CC, &c->cc, 4);
        memcpy(img + NVME_REG_CSTS, &csts, 4);
        memcpy(img + NVME_REG_AQA, &c->aqa, 4);
        memcpy(img + NVME_REG_ASQ, &c->asq, 8);
        memcpy(img + NVME_REG_ACQ, &c->acq, 8);
        /* CMBLOC/CMBSZ (0x38/0x3c) stay 0: no controller memory buffer. */
}

int nvme_ctrl_bar0_read(NvmeCtrl *c, uint64_t off, void *buf, size_t len) {
        if (len == 0 || off >= c->bar0_size || len > c->bar0_size - off)
                return -EINVAL;
        memset(buf, 0, len);
        if (off < 64) {
                uint8_t img[64];
                nvme_regs_image(c, img);
                size_t n = MIN(len, 64 - off);
                memcpy(buf, img + off, n);
        }
        /* Everything else (reserved registers, doorbells) reads as zero. */
        return 0;
}

static void nvme_write_cc(NvmeCtrl *c, uint32_t val) {
        uint32_t old = c->cc;

        val &= NVME_CC_WRITABLE;
        c->cc = val;
        if (!(old & NVME_CC_EN) && (val & NVME_CC_EN)) {
                /* §7.6.1: 0→1 starts the controller; a write with EN=0 only configures. */
                nvme_ctrl_quiesce(c);
                if (c->state == NVME_STATE_DISABLED)
                        nvme_ctrl_enable(c);
                nvme_ctrl_resume(c);
        } else if ((old & NVME_CC_EN) && !(val & NVME_CC_EN)) {
                /* §7.3.2 controller reset: in-flight commands finish, queues go away. */
                nvme_ctrl_quiesce(c);
                nvme_ctrl_disable(c);
                atomic_store(&c->shutdown_req, false);
                nvme_ctrl_resume(c);
        }
        if (NVME_CC_SHN(val) && !NVME_CC_SHN(old)) {
                /* §7.6.2: shutdown runs on the I/O thread; SHST tells the host when it is done. */
                uint32_t csts = atomic_load(&c->csts);
                atomic_store(&c->csts, (csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_OCCUR);
                atomic_store(&c->shutdown_req, true);
                nvme_thread_kick(&c->io[0]);
        }
}

static void nvme_write_doorbell(NvmeCtrl *c, uint64_t off, uint32_t val) {
        uint64_t idx = (off - NVME_REG_DBS) / 4;

        atomic_fetch_add_explicit(&c->st_doorbells, 1, memory_order_relaxed);
        if (!(atomic_load(&c->csts) & NVME_CSTS_RDY))
                return;         /* §3.1.16: ignored while the controller is not ready */
        if (idx >= c->ndb || (off & 3)) {
                atomic_fetch_add(&c->bad_db, 1);
                nvme_thread_kick(&c->io[0]);
                return;
        }
        /* To the thread that runs the queue (it passes it on if the SQ moved meanwhile). */
        uint16_t qid = (uint16_t) (idx / 2);
        NvmeIoThread *t = idx & 1 ? nvme_cq_thread(c, qid)
                                  : &c->io[atomic_load_explicit(&c->sq_thread[qid], memory_order_relaxed)];
        atomic_store_explicit(&c->db_val[idx], val, memory_order_release);
        atomic_fetch_or_explicit(&t->db_dirty[idx / 64], 1ull << (idx % 64), memory_order_release);
        /* When the work arrived, for the thread's polling window: not when the wake-up reached it. */
        atomic_store_explicit(&t->kick_ns, nvme_now_ns(), memory_order_relaxed);
        nvme_thread_kick(t);
}

int nvme_ctrl_bar0_write(NvmeCtrl *c, uint64_t off, const void *buf, size_t len) {
        uint64_t v = 0;

        if (len == 0 || off >= c->bar0_size || len > c->bar0_size - off)
                return -EINVAL;
        if (off >= NVME_REG_DBS) {
                if (len != 4)
                        return 0;       /* doorbells are 32-bit registers */
                uint32_t val;
                memcpy(&val, buf, 4);
                nvme_write_doorbell(c, off, val);
                return 0;
        }
        if (len != 4 && len != 8)
                return 0;               /* §3: registers are accessed as dwords or qwords */
        memcpy(&v, buf, len);

        /* A qword write is two dword writes, low half first. */
        for (size_t part = 0; part < len; part += 4) {
                uint64_t o = off + part;
                uint32_t val = (uint32_t) (v >> (part * 8));
                switch (o) {
                case NVME_REG_INTMS:
                        c->intms |= val;
                        break;
                case NVME_REG_INTMC:
                        c->intms &= ~val;
                        break;
                case NVME_REG_CC:
                        nvme_write_cc(c, val);
                        break;
                case NVME_REG_AQA:
                        c->aqa = val & 0x0fff0fffu;
                        break;
                case NVME_REG_ASQ:
                        c->asq = (c->asq & ~0xffffffffull) | (val & ~NVME_PAGE_MASK);
                        break;
                case NVME_REG_ASQ + 4:
                        c->asq = (c->asq & 0xffffffffull) | ((uint64_t) val << 32);
                        break;
                case NVME_REG_ACQ:
                        c->acq = (c->acq & ~0xffffffffull) | (val & ~NVME_PAGE_MASK);
                        break;
                case NVME_REG_ACQ + 4:
                        c->acq = (c->acq & 0xffffffffull) | ((uint64_t) val << 32);
                        break;
                default:
                        /* CAP, VS, CSTS, NSSR (NSSRS=0), CMB*: read-only or absent. */
                        break;
                }
        }
        return 0;
}
