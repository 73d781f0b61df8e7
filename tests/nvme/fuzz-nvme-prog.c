/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: a stateful, structure-aware NVMe fuzzer.  The input is
 * a program of guest actions — register writes (CC, AQA/ASQ/ACQ, INTMS/
 * INTMC), a scripted enable, controller reset, I/O queue creation, admin
 * and I/O commands placed in guest memory on several queues (PRP lists
 * and SGL segments built from the input), raw doorbell and shadow doorbell
 * writes, Doorbell Buffer Config, reaping completions, DMA unmap and map of
 * guest pages, bus mastering off and on, namespace resize, shutdown, a live
 * migration onto the same controller (state saved and loaded again) — run
 * against the real controller (manual: no I/O thread, this thread runs it)
 * on fake guest RAM and null backends: with MSI-X (5 vectors) for inputs of
 * even length, with MSI (8 messages, what create --msi and --hotplug give)
 * for odd ones.
 *
 * Invariants, checked after every action:
 *   - no access outside guest memory: ASan for the host, and the pages of
 *     an unmapped range (or a device-read-only one) are mprotect()ed, so a
 *     stale or wrong translation faults;
 *   - on every completion queue the harness owns: at most size - 1 entries
 *     unconsumed (never one overwritten), each entry's SQ and SQ head in
 *     range, every command the harness submitted completed at most once and
 *     no completion for a command it did not submit — unless the controller
 *     failed (CSTS.CFS) or the program itself wrote that queue's doorbells;
 *   - bounded steps: the controller runs out of work within a bounded
 *     number of passes after each action (no livelock).
 * After each input the controller is reset to power-on and RAM cleared.
 *
 * Input: a sequence of actions, each [op][args...] (see the table below).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "fake-mem.h"
#include "nvme/nvme-spec.h"
#include "nvme/nvme.h"

#define GPA     0x100000ull
#define PAGE    4096u
#define PAGES   256u
#define RAM     ((uint64_t) PAGES * PAGE)
#define NQ      5u                      /* admin + 4 I/O queue pairs */
#define NVEC    5u                      /* MSI-X: one per queue */
#define NVEC_MSI 8u                     /* MSI: a power of two */
#define PG_ASQ  0u                      /* queue q: SQ at page 2q, CQ at 2q + 1 */
#define PG_DB   10u                     /* shadow doorbells */
#define PG_EI   11u                     /* EventIdx */
#define PG_LIST 12u                     /* PRP lists and SGL segments: pages 12..15 */
#define PG_DATA 16u                     /* data: pages 16..255 */
#define MAX_PASSES 4096u                /* a controller still busy after this many passes is livelocked */

typedef struct Queue {
        bool sq_live, cq_live;          /* created by the harness, and believed to exist */
        bool tracked;                   /* only the harness rang its doorbells: invariants hold */
        uint32_t size;                  /* both rings */
        uint32_t sq_tail, sq_head;
        uint32_t cq_head, seen;         /* consumed, and looked at (seen ≥ head) */
        uint8_t seen_phase;
        uint8_t *outstanding;           /* bitmap of cids submitted and not completed */
        uint16_t next_cid;
} Queue;

static FakeMem fm;
static VuMem tracked_mem;               /* fm's translations, noting the pages the device may write */
static uint64_t dirty[PAGES / 64];      /* pages written since the last input: cleared after it */
static NvmeCtrl *ctrl;                  /* this input's: ctrls[0] MSI-X, ctrls[1] MSI */
static NvmeCtrl *ctrls[2];
static unsigned nvec;                   /* its vectors */
static unsigned irqs[NVEC_MSI];
static Queue q[NQ];
static bool shadow;                     /* Doorbell Buffer Config done by the harness */
static bool ns_changed;
static bool trace;                      /* FUZZ_TRACE=1: print actions and completions (reproducing) */

/* ---- the controller and guest memory ---- */

static void count_irq(void *opaque, unsigned vector) {
        if (vector >= nvec)
                abort();
        irqs[vector]++;
}

static BlkBackend *null_backend(uint64_t size) {
        BlkOpenOptions o = { .path = "null", .fd = -1, .null = true, .size = size };
        BlkBackend *b = NULL;

        if (blk_backend_open(&o, &b) < 0)
                abort();
        return b;
}

static void add_namespaces(void) {
        if (nvme_ctrl_ns_add(ctrl, 1, null_backend(1 << 20), 512, false) < 0 ||
            nvme_ctrl_ns_add(ctrl, 2, null_backend(1 << 20), 4096, false) < 0)
                abort();
}

static void mark_dirty(uint64_t gpa, uint64_t len) {
        if (len == 0 || gpa < GPA || gpa >= GPA + RAM)
                return;
        uint64_t last = MIN(gpa + len - 1, GPA + RAM - 1);

        for (uint64_t p = (gpa - GPA) / PAGE; p <= (last - GPA) / PAGE; p++)
                dirty[p / 64] |= 1ull << (p % 64);
}

static int tracked_translate(void *opaque, uint64_t gpa, uint64_t len, int prot, struct iovec *iov,
                             unsigned max_iov) {
        if (prot & VU_PROT_WRITE)
                mark_dirty(gpa, len);
        return vu_mem_translate(&fm.mem, gpa, len, prot, iov, max_iov);
}

static void tracked_mark_dirty(void *opaque, uint64_t gpa, uint64_t len) {
        mark_dirty(gpa, len);
}

static const VuMemOps tracked_ops = { .translate = tracked_translate, .mark_dirty = tracked_mark_dirty };

static uint64_t page_gpa(unsigned page) {
        return GPA + (uint64_t) page * PAGE;
}

static void *ptr(uint64_t gpa) {
        return fake_mem_ptr(&fm, gpa);
}

/* Make every page readable and writable again, as the harness (the guest's CPU) needs. */
static void protect_all(int prot) {
        if (mprotect(fm.host, RAM, prot) < 0)
                abort();
}

static bool in_hole(uint64_t gpa, uint64_t len) {
        return fm.hole_len && gpa < fm.hole_gpa + fm.hole_len && fm.hole_gpa < gpa + len;
}

/* The guest CPU writes guest RAM: never into the unmapped range; a device-read-only one is lifted for it. */
static bool guest_write(uint64_t gpa, const void *src, size_t len) {
        if (gpa < GPA || gpa + len > GPA + RAM || in_hole(gpa, len))
                return false;
        if (fm.ro_len)
                mprotect(fm.host + (fm.ro_gpa - GPA), fm.ro_len, PROT_READ | PROT_WRITE);
        mark_dirty(gpa, len);
        memcpy(ptr(gpa), src, len);
        if (fm.ro_len)
                mprotect(fm.host + (fm.ro_gpa - GPA), fm.ro_len, PROT_READ);
        return true;
}

/* Clear a queue's two pages.  False when its CQ page is unmapped (stale entries would look new). */
static bool queue_zero(unsigned qid) {
        static const uint8_t zero[PAGE];

        guest_write(page_gpa(2 * qid), zero, PAGE);
        return guest_write(page_gpa(2 * qid + 1), zero, PAGE);
}

static void reg_write(uint64_t off, uint32_t v) {
        nvme_ctrl_bar0_write(ctrl, off, &v, 4);
}

static uint32_t reg_read(uint64_t off) {
        uint32_t v = 0;

        nvme_ctrl_bar0_read(ctrl, off, &v, 4);
        return v;
}

static bool fatal(void) {
        return reg_read(NVME_REG_CSTS) & NVME_CSTS_CFS;
}

/* ---- the harness's view of the queues ---- */

static void queue_forget(unsigned qid) {
        Queue *x = &q[qid];
        uint8_t *bits = x->outstanding;

        memset(bits, 0, 65536 / 8);
        *x = (Queue) { .outstanding = bits };
}

static void queues_forget(void) {
        for (unsigned i = 0; i < NQ; i++)
                queue_forget(i);
        shadow = false;
}

/* Look at what the controller posted on a tracked CQ since the last look; check it. */
static void cq_scan(unsigned qid) {
        Queue *x = &q[qid];

        if (!x->cq_live || !x->tracked || fatal() || in_hole(page_gpa(2 * qid + 1), PAGE))
                return;
        for (;;) {
                const NvmeCqe *e = (const NvmeCqe *) ptr(page_gpa(2 * qid + 1)) + x->seen;
                uint32_t unconsumed = (x->seen + x->size - x->cq_head) % x->size;

                if ((e->status & 1) != x->seen_phase)
                        return;
                if (unconsumed == x->size - 1)
                        abort();        /* an entry posted over one the host has not consumed */
                if (trace)
                        fprintf(stderr, "  cq %u[%u]: sq %u head %u cid %u status 0x%x\n", qid, x->seen, e->sq_id,
                                e->sq_head, e->cid, e->status >> 1);
                if (e->sq_id >= NQ)
                        abort();        /* only SQs 0..4 can exist */
                Queue *s = &q[e->sq_id];
                if (s->sq_live && s->tracked) {
                        if (e->sq_head >= s->size)
                                abort();
                        if (!(s->outstanding[e->cid / 8] & (1u << (e->cid % 8))))
                                abort();        /* completed twice, or never submitted */
                        s->outstanding[e->cid / 8] &= (uint8_t) ~(1u << (e->cid % 8));
                        s->sq_head = e->sq_head;
                }
                if (++x->seen == x->size) {
                        x->seen = 0;
                        x->seen_phase ^= 1;
                }
        }
}

static void ring(unsigned idx, uint32_t v) {
        if (shadow)
                guest_write(page_gpa(PG_DB) + 4ull * idx, &v, 4);
        reg_write(NVME_REG_DBS + 4ull * idx, v);
}

/* Consume what was looked at, and say so. */
static void cq_reap(unsigned qid) {
        Queue *x = &q[qid];

        cq_scan(qid);
        if (!x->cq_live || !x->tracked || x->cq_head == x->seen)
                return;
        x->cq_head = x->seen;
        ring(2 * qid + 1, x->cq_head);
}

/* Put a command on a tracked SQ and ring.  Returns false when it cannot (full, gone, unmapped). */
static bool submit(unsigned qid, NvmeSqe *cmd) {
        Queue *x = &q[qid];

        if (!x->sq_live || (x->sq_tail + 1) % x->size == x->sq_head)
                return false;
        cmd->cid = x->next_cid++;
        if (x->outstanding[cmd->cid / 8] & (1u << (cmd->cid % 8)))
                return false;   /* 65536 commands outstanding: not this harness */
        if (!guest_write(page_gpa(2 * qid) + (uint64_t) x->sq_tail * sizeof(NvmeSqe), cmd, sizeof(*cmd)))
                return false;
        x->outstanding[cmd->cid / 8] |= (uint8_t) (1u << (cmd->cid % 8));
        if (trace)
                fprintf(stderr, "  sq %u[%u]: opcode 0x%x cid %u\n", qid, x->sq_tail, cmd->opcode, cmd->cid);
        x->sq_tail = (x->sq_tail + 1) % x->size;
        ring(2 * qid, x->sq_tail);
        return true;
}

/* Run the controller until it has nothing to do. */
static void run(void) {
        unsigned n = 0;

        while (nvme_ctrl_poll(ctrl) > 0)
                if (++n == MAX_PASSES)
                        abort();        /* livelock */
        for (unsigned i = 0; i < NQ; i++)
                cq_scan(i);
}

/* ---- reading the program ---- */

typedef struct Prog {
        const uint8_t *p;
        size_t n;
} Prog;

static uint8_t u8(Prog *g) {
        if (g->n == 0)
                return 0;
        g->n--;
        return *g->p++;
}

static uint16_t u16(Prog *g) {
        return (uint16_t) (u8(g) | u8(g) << 8);
}

static uint32_t u32(Prog *g) {
        return (uint32_t) u16(g) | (uint32_t) u16(g) << 16;
}

static uint64_t data_gpa(Prog *g) {
        /* Mostly page-aligned data, sometimes not; always somewhere in RAM, often in the data pages. */
        uint16_t v = u16(g);
        uint64_t page = PG_DATA + v % (PAGES - PG_DATA);

        return page_gpa(page) + ((v & 0x8000) ? (uint64_t) (v >> 8 & 0x7f) * 4 : 0);
}

/* ---- actions ---- */

static void act_enable(Prog *g) {
        uint32_t depth = 2 + u8(g) % 63;

        reg_write(NVME_REG_CC, 0);
        queues_forget();
        bool zeroed = queue_zero(0);
        reg_write(NVME_REG_AQA, (depth - 1) | (depth - 1) << 16);
        reg_write(NVME_REG_ASQ, (uint32_t) page_gpa(0));
        reg_write(NVME_REG_ASQ + 4, 0);
        reg_write(NVME_REG_ACQ, (uint32_t) page_gpa(1));
        reg_write(NVME_REG_ACQ + 4, 0);
        reg_write(NVME_REG_CC, NVME_CC_EN | 6u << 16 | 4u << 20);
        if (reg_read(NVME_REG_CSTS) & NVME_CSTS_RDY)
                q[0] = (Queue) { .sq_live = true, .cq_live = true, .tracked = zeroed, .size = depth,
                                 .seen_phase = 1, .outstanding = q[0].outstanding };
}

static void act_reg(Prog *g) {
        static const uint16_t regs[] = { NVME_REG_CC, NVME_REG_AQA, NVME_REG_ASQ, NVME_REG_ASQ + 4, NVME_REG_ACQ,
                                         NVME_REG_ACQ + 4, NVME_REG_INTMS, NVME_REG_INTMC, NVME_REG_NSSR,
                                         NVME_REG_CSTS, NVME_REG_CAP, 0x50, 0xe00 };
        uint16_t off = regs[u8(g) % G_N_ELEMENTS(regs)];
        uint32_t v = u32(g), before = reg_read(NVME_REG_CC);

        reg_write(off, v);
        if (off == NVME_REG_CC && ((before ^ v) & NVME_CC_EN))
                queues_forget();        /* enabled or reset: the controller dropped every queue */
        else if (off == NVME_REG_AQA || off == NVME_REG_ASQ || off == NVME_REG_ACQ)
                q[0].tracked = q[0].tracked && !(reg_read(NVME_REG_CSTS) & NVME_CSTS_RDY);
}

static void act_create(Prog *g) {
        unsigned qid = 1 + u8(g) % (NQ - 1);
        uint32_t size = 2 + u8(g) % 63;
        uint8_t flags = u8(g);
        uint16_t vector = flags % nvec;
        NvmeSqe cq = { .opcode = NVME_ADM_CREATE_CQ, .prp1 = page_gpa(2 * qid + 1),
                       .cdw10 = qid | (size - 1) << 16, .cdw11 = 1 | ((flags & 0x80) ? 0 : 2) | (uint32_t) vector << 16 };
        NvmeSqe sq = { .opcode = NVME_ADM_CREATE_SQ, .prp1 = page_gpa(2 * qid),
                       .cdw10 = qid | (size - 1) << 16, .cdw11 = 1 | (uint32_t) qid << 16 };

        if (q[qid].sq_live || q[qid].cq_live)
                return;
        q[qid].size = size;
        q[qid].seen_phase = 1;
        q[qid].tracked = queue_zero(qid);
        if (shadow) {
                /* Its shadow doorbells start at 0, as Linux's nvme_dbbuf_init sets them. */
                static const uint32_t zero[2];

                q[qid].tracked = q[qid].tracked && guest_write(page_gpa(PG_DB) + 8ull * qid, zero, 8);
        }
        /* Believed to exist once asked for: a refused create leaves nothing to complete on it. */
        if (!submit(0, &cq))
                return;
        q[qid].cq_live = true;
        if (submit(0, &sq))
                q[qid].sq_live = true;
}

static void act_admin(Prog *g) {
        NvmeSqe c;

        for (unsigned i = 0; i < sizeof(c); i++)
                ((uint8_t *) &c)[i] = u8(g);
        if (c.opcode & 0x80)
                c.prp1 = data_gpa(g);
        c.opcode &= 0x7f;
        if (c.opcode == 0x7f)
                c.opcode = NVME_ADM_DBBUF_CONFIG;
        /* Queue commands on its own: the harness stops trusting that queue (it may go, or change). */
        if (c.opcode == NVME_ADM_DELETE_SQ || c.opcode == NVME_ADM_CREATE_SQ || c.opcode == NVME_ADM_DELETE_CQ ||
            c.opcode == NVME_ADM_CREATE_CQ) {
                uint16_t qid = (uint16_t) c.cdw10;

                if (qid > 0 && qid < NQ)
                        q[qid].tracked = false;
                if (c.opcode == NVME_ADM_CREATE_CQ || c.opcode == NVME_ADM_DELETE_CQ)
                        for (unsigned i = 1; i < NQ; i++)
                                q[i].tracked = false;   /* SQs point at CQs by id */
        }
        if (c.opcode == NVME_ADM_DBBUF_CONFIG)
                for (unsigned i = 0; i < NQ; i++)
                        q[i].tracked = false;           /* shadow buffers the harness does not write */
        submit(0, &c);
}

static void act_dbbuf(Prog *g) {
        NvmeSqe c = { .opcode = NVME_ADM_DBBUF_CONFIG, .prp1 = page_gpa(PG_DB), .prp2 = page_gpa(PG_EI) };
        uint32_t db[2 * NQ];

        (void) g;
        /* The shadow starts at the values last rung, as Linux's nvme_dbbuf_init leaves it. */
        for (unsigned i = 0; i < NQ; i++) {
                db[2 * i] = q[i].sq_tail;
                db[2 * i + 1] = q[i].cq_head;
        }
        if (!guest_write(page_gpa(PG_DB), db, sizeof(db)))
                return;
        if (submit(0, &c))
                shadow = true;
}

/* An I/O command with its data described by PRPs (a list when needed) or an SGL. */
static void act_io(Prog *g) {
        static const uint8_t ops[] = { NVME_CMD_READ, NVME_CMD_WRITE, NVME_CMD_FLUSH, NVME_CMD_WRITE_ZEROES,
                                       NVME_CMD_DSM, 0x04, 0x05, 0x7f };
        unsigned qid = 1 + u8(g) % (NQ - 1);
        uint8_t how = u8(g);
        uint16_t nlb = u16(g) & 0x3ff;
        NvmeSqe c = { .opcode = ops[how % G_N_ELEMENTS(ops)], .nsid = (how & 0x08) ? 2 : (how & 0x10) ? u32(g) : 1,
                      .cdw10 = u16(g), .cdw12 = nlb | ((how & 0x20) ? 1u << 30 : 0), .cdw13 = u8(g) };
        uint64_t list = page_gpa(PG_LIST + u8(g) % 4);
        unsigned n = 1 + u8(g) % 64;

        if (how & 0x40) {
                /* SGL: a Data Block, or a Last Segment of n descriptors from the input. */
                NvmeSglDesc d = { .addr = data_gpa(g), .len = u32(g) & 0x3ffff, .type = u8(g) };

                c.flags = 1 << 6;
                if (d.type & 1) {
                        for (unsigned i = 0; i < n && i < PAGE / sizeof(d); i++) {
                                NvmeSglDesc e = { .addr = data_gpa(g), .len = u16(g), .type = u8(g) };

                                guest_write(list + i * sizeof(e), &e, sizeof(e));
                        }
                        d = (NvmeSglDesc) { .addr = list, .len = n * 16, .type = (d.type & 2) ? 0x20 : 0x30 };
                }
                memcpy(c.sgl1, &d, sizeof(d));
        } else {
                /* PRPs: PRP1 somewhere, PRP2 a page or a list of n entries. */
                c.prp1 = data_gpa(g);
                if (how & 0x80) {
                        for (unsigned i = 0; i < n; i++) {
                                uint64_t e = (u8(g) & 0x80) ? u32(g) : data_gpa(g) & ~(uint64_t) (PAGE - 1);

                                guest_write(list + i * 8, &e, 8);
                        }
                        c.prp2 = list;
                } else {
                        c.prp2 = data_gpa(g) & ~(uint64_t) (PAGE - 1);
                }
        }
        submit(qid, &c);
}

static void act_doorbell(Prog *g) {
        uint8_t idx = u8(g) % (2 * NQ + 2);
        uint32_t v = u16(g);

        if (idx / 2 < NQ)
                q[idx / 2].tracked = false;
        if (idx / 2 == 0)
                for (unsigned i = 1; i < NQ; i++)
                        q[i].tracked = false;   /* creates and deletes may then go astray */
        reg_write(NVME_REG_DBS + 4ull * idx, v);
}

static void act_shadow(Prog *g) {
        uint8_t idx = u8(g) % (2 * NQ);
        uint32_t v = u16(g);

        q[idx / 2].tracked = false;
        if (idx / 2 == 0)
                for (unsigned i = 1; i < NQ; i++)
                        q[i].tracked = false;
        guest_write(page_gpa(PG_DB) + 4ull * idx, &v, 4);
}

/* Unmap a page range (as a VMM's DMA_UNMAP: the controller quiesced around it), or map it back. */
static void act_unmap(Prog *g) {
        unsigned first = u8(g) % PAGES, count = 1 + u8(g) % 16;

        count = MIN(count, PAGES - first);
        nvme_ctrl_quiesce(ctrl);
        protect_all(PROT_READ | PROT_WRITE);
        fm.hole_gpa = page_gpa(first);
        fm.hole_len = (uint64_t) count * PAGE;
        if (fm.ro_len)
                mprotect(fm.host + (fm.ro_gpa - GPA), fm.ro_len, PROT_READ);
        mprotect(fm.host + (uint64_t) first * PAGE, fm.hole_len, PROT_NONE);
        nvme_ctrl_resume(ctrl);
}

static void act_map(Prog *g) {
        (void) g;
        if (!fm.hole_len && !fm.ro_len)
                return;
        nvme_ctrl_quiesce(ctrl);
        fm.hole_gpa = fm.hole_len = 0;
        fm.ro_gpa = fm.ro_len = 0;
        protect_all(PROT_READ | PROT_WRITE);
        nvme_ctrl_resume(ctrl);
}

/* A range the device may read but not write (a read-only DMA map). */
static void act_readonly(Prog *g) {
        unsigned first = u8(g) % PAGES, count = 1 + u8(g) % 16;

        count = MIN(count, PAGES - first);
        nvme_ctrl_quiesce(ctrl);
        protect_all(PROT_READ | PROT_WRITE);
        fm.ro_gpa = page_gpa(first);
        fm.ro_len = (uint64_t) count * PAGE;
        mprotect(fm.host + (uint64_t) first * PAGE, fm.ro_len, PROT_READ);
        if (fm.hole_len)
                mprotect(fm.host + (fm.hole_gpa - GPA), fm.hole_len, PROT_NONE);
        nvme_ctrl_resume(ctrl);
}

static void act_reap(Prog *g) {
        cq_reap(u8(g) % NQ);
}

static void act_reset(Prog *g) {
        (void) g;
        nvme_ctrl_reset(ctrl);
        queues_forget();
}

static void act_bus_master(Prog *g) {
        nvme_ctrl_set_bus_master(ctrl, u8(g) & 1);
}

static void act_resize(Prog *g) {
        uint32_t nsid = 1 + u8(g) % 3;
        uint64_t size = (1ull << 20) + (uint64_t) u16(g) * 4096;

        (void) nvme_ctrl_ns_resize(ctrl, nsid, size);
        ns_changed = true;
}

static void act_shutdown(Prog *g) {
        uint32_t cc = reg_read(NVME_REG_CC);

        reg_write(NVME_REG_CC, (cc & ~(3u << 14)) | (uint32_t) (1 + u8(g) % 2) << 14);
}

static int arc(enum vu_mig_state from, enum vu_mig_state to) {
        nvme_ctrl_quiesce(ctrl);
        int r = nvme_ctrl_mig_transition(ctrl, from, to);
        nvme_ctrl_resume(ctrl);
        return r;
}

/*
 * A live migration onto the same controller, mid-program: save the state
 * (RUNNING, STOP, STOP_COPY), load it again (STOP, RESUMING, STOP) and run
 * (RUNNING), with the same guest RAM.  The program then goes on: every
 * invariant must still hold, commands not yet fetched are fetched after it.
 * A state the controller saved it must load; one it cannot save (-EBUSY)
 * leaves it to a reset.
 */
static void act_migrate(Prog *g) {
        g_autoptr(GByteArray) st = g_byte_array_new();
        uint8_t buf[1024];
        ssize_t n;
        unsigned piece = 1 + u8(g) * 8;

        if (arc(VU_MIG_RUNNING, VU_MIG_STOP) < 0 || arc(VU_MIG_STOP, VU_MIG_STOP_COPY) < 0) {
                nvme_ctrl_reset(ctrl);
                nvme_ctrl_mig_reset(ctrl);
                queues_forget();
                return;
        }
        while ((n = nvme_ctrl_mig_read(ctrl, buf, sizeof(buf))) > 0)
                g_byte_array_append(st, buf, (guint) n);
        if (n < 0 || arc(VU_MIG_STOP_COPY, VU_MIG_STOP) < 0 || arc(VU_MIG_STOP, VU_MIG_RESUMING) < 0)
                abort();
        for (guint off = 0; off < st->len; off += piece)
                if (nvme_ctrl_mig_write(ctrl, st->data + off, MIN(piece, st->len - off)) < 0)
                        abort();        /* its own state refused */
        if (arc(VU_MIG_RESUMING, VU_MIG_STOP) < 0 || arc(VU_MIG_STOP, VU_MIG_RUNNING) < 0)
                abort();
}

typedef void (*Action)(Prog *g);
static const Action actions[] = {
        act_enable, act_reg, act_create, act_admin, act_dbbuf, act_io, act_io, act_io, act_doorbell,
        act_shadow, act_unmap, act_map, act_readonly, act_reap, act_reap, act_reset, act_bus_master,
        act_resize, act_shutdown, act_migrate,
};

/* ---- libFuzzer ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static GLogWriterOutput quiet(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer user) {
        return G_LOG_WRITER_HANDLED;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        trace = getenv("FUZZ_TRACE") != NULL;
        if (!trace)
                g_log_set_writer_func(quiet, NULL, NULL);
        fake_mem_init(&fm, GPA, RAM);
        tracked_mem = (VuMem) { .ops = &tracked_ops };
        for (unsigned msi = 0; msi < 2; msi++) {
                NvmeCtrlConfig cfg = { .name = "fuzzprog", .serial = "FUZZPROG", .max_ioqs = NQ - 1,
                                       .msix_nvec = msi ? NVEC_MSI : NVEC, .msi = msi, .cntlid = 1, .manual = true };

                if (nvme_ctrl_new(&cfg, &ctrls[msi]) < 0)
                        abort();
                ctrl = ctrls[msi];
                nvme_ctrl_attach(ctrl, &tracked_mem, count_irq, NULL);
                add_namespaces();
        }
        for (unsigned i = 0; i < NQ; i++)
                q[i].outstanding = g_malloc0(65536 / 8);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Prog g = { data, size };
        unsigned steps = 0;

        ctrl = ctrls[size & 1];
        nvec = size & 1 ? NVEC_MSI : NVEC;
        while (g.n > 0 && steps++ < 256) {
                uint8_t op = u8(&g) % G_N_ELEMENTS(actions);

                if (trace)
                        fprintf(stderr, "action %u\n", op);
                actions[op](&g);
                run();
        }
        /* Back to power-on for the next input. */
        if (nvme_ctrl_mig_state(ctrl) != VU_MIG_RUNNING)
                abort();
        nvme_ctrl_reset(ctrl);
        nvme_ctrl_set_bus_master(ctrl, true);
        act_map(NULL);
        if (reg_read(NVME_REG_CSTS) != 0 || nvme_ctrl_poll(ctrl) != 0)
                abort();
        if (ns_changed) {
                for (uint32_t nsid = 1; nsid <= 2; nsid++)
                        nvme_ctrl_ns_remove(ctrl, nsid);
                add_namespaces();
                ns_changed = false;
        }
        queues_forget();
        for (unsigned p = 0; p < PAGES; p++)
                if (dirty[p / 64] & (1ull << (p % 64)))
                        memset(fm.host + (uint64_t) p * PAGE, 0, PAGE);
        memset(dirty, 0, sizeof(dirty));
        memset(irqs, 0, sizeof(irqs));
        return 0;
}
