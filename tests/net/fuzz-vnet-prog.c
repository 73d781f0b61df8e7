/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: a stateful, structure-aware virtio-net fuzzer.  The
 * input is a program of guest actions — a probe with negotiated features,
 * queue sizes, vectors and a hostile ordering; descriptor chains (direct or
 * indirect, split or packed, with malformations the harness knows of) made
 * available on any queue; raw descriptor and register writes; control
 * commands; guest data; resets (status 0 and the server's DEVICE_RESET);
 * DMA unmap and map of guest pages; a live migration onto the same device
 * (saved, loaded again and run) — against the real device (manual: no
 * data-path thread, this thread runs it) on fake guest RAM and the null
 * backend, whose receive side always has a frame.
 *
 * Invariants, checked after every action:
 *   - no access outside guest memory: ASan for the host, and unmapped
 *     pages are mprotect()ed, so a stale translation faults;
 *   - used rings: the device never runs more than a ring ahead of the
 *     driver, every used id is a buffer the harness made available and
 *     not yet used (no buffer used twice), and the length written is at
 *     most the chain's writable bytes;
 *   - a chain the harness knows to be malformed, once it is the oldest
 *     outstanding buffer of a queue the device serves, leaves the device
 *     in DEVICE_NEEDS_RESET, and a well-formed one on a transmit or the
 *     control queue is used (no buffer forgotten);
 *   - after a reset the device writes no ring any more;
 *   - bounded steps: the device runs out of work within a bounded number
 *     of rounds after each action (no livelock); interrupts only on the
 *     device's vectors.
 * After each input the device is reset and guest RAM cleared.
 *
 * Input: a sequence of actions, each [op][args...] (see run_action()).
 * FUZZ_TRACE=1 prints the actions (reproducing).
 */
#include <endian.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <glib.h>

#include "fake-mem.h"
#include "net/vnet.h"
#include "net/vnet-proto.h"
#include "vfio-user/migration.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define GPA      0x100000ull
#define PAGE     4096u
#define PAGES    32u
#define RAM      ((uint64_t) PAGES * PAGE)
#define NQ       5u                     /* rx0 tx0 rx1 tx1 ctrl */
#define QMAX     16u
#define PG_IND   5u                     /* indirect tables: 64 bytes per queue and id, pages 5..6 */
#define PG_DATA  8u                     /* data: pages 8..31 */
#define MAX_ROUNDS 2048u                /* a device still busy after this many rounds is livelocked */
#define MAX_CHAIN 6u
#define MAX_STEPS 64u                   /* actions per input */
#define FIFO_MAX 256u

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)

/* What the harness knows about a chain it made available. */
enum { CH_GOOD, CH_BAD, CH_UNKNOWN };

typedef struct Entry {
        uint16_t id;
        uint8_t kind;                   /* CH_* */
        uint32_t wlen;                  /* writable bytes, UINT32_MAX when unknown */
} Entry;

typedef struct Queue {
        bool live;                      /* set up by the harness's probe */
        bool checked;                   /* only the harness touched it, in order: liveness checks hold */
        bool tracked;                   /* used-ring checks hold */
        bool packed;
        uint16_t size;
        uint16_t avail;                 /* split: free-running; packed: next slot */
        bool avail_wrap;
        uint16_t used;                  /* split: free-running; packed: next slot */
        bool used_wrap;
        uint8_t out[QMAX];              /* times each id was made available and not yet used */
        uint8_t slots[QMAX];            /* packed: ring slots the id's chain took */
        unsigned n_slots;               /* packed: slots outstanding */
        Entry fifo[FIFO_MAX];           /* outstanding buffers, oldest first */
        unsigned n_fifo;
} Queue;

static FakeMem fm;
static VNet *net;
static VirtioPci *vp;
static VuServerConfig scfg;
static Queue q[NQ];
static uint64_t features;               /* negotiated by the harness's probe */
static bool running;                    /* DRIVER_OK reached by the probe, in order */
static enum vu_mig_state mig = VU_MIG_RUNNING;
static unsigned fired[FAKE_IRQ_MAX];
static bool trace;

/* ---- input ---- */

typedef struct In {
        const uint8_t *p;
        size_t left;
} In;

static uint8_t u8(In *in) {
        if (!in->left)
                return 0;
        in->left--;
        return *in->p++;
}

static uint16_t u16(In *in) {
        return (uint16_t) (u8(in) | u8(in) << 8);
}

static uint32_t u32(In *in) {
        return (uint32_t) u16(in) | (uint32_t) u16(in) << 16;
}

static uint64_t u64(In *in) {
        return (uint64_t) u32(in) | (uint64_t) u32(in) << 32;
}

/* ---- device and guest memory ---- */

static int count_fire(void *opaque, unsigned vector) {
        if (vector >= virtio_pci_nvec(vp))
                abort();                /* an interrupt on a vector the device does not have */
        fired[vector]++;
        return 0;
}

static const VirtioIrqOps irq_ops = { .fire = count_fire };

static void *ptr(uint64_t gpa) {
        return fake_mem_ptr(&fm, gpa);
}

static uint64_t page_gpa(unsigned page) {
        return GPA + (uint64_t) page * PAGE;
}

static bool in_hole(uint64_t gpa, uint64_t len) {
        return fm.hole_len && gpa < fm.hole_gpa + fm.hole_len && fm.hole_gpa < gpa + len;
}

/* A range the device may use now: inside RAM, outside the unmapped pages. */
static bool dma_ok(uint64_t gpa, uint64_t len) {
        return gpa >= GPA && len <= RAM && gpa - GPA <= RAM - len && !in_hole(gpa, len);
}

static void protect_hole(int prot) {
        if (fm.hole_len && mprotect(fm.host + (fm.hole_gpa - GPA), fm.hole_len, prot) < 0)
                abort();
}

/* The guest CPU writes its RAM, unmapped for the device or not. */
static void guest_write(uint64_t gpa, const void *src, size_t len) {
        bool lift = in_hole(gpa, len);

        if (lift)
                protect_hole(PROT_READ | PROT_WRITE);
        memcpy(ptr(gpa), src, len);
        if (lift)
                protect_hole(PROT_NONE);
}

static uint32_t rd(uint32_t off, size_t len) {
        uint32_t v = 0;

        virtio_pci_bar_read(vp, off, &v, len);
        return le32toh(v);
}

static void wr(uint32_t off, uint32_t v, size_t len) {
        v = htole32(v);
        virtio_pci_bar_write(vp, off, &v, len);
}

static uint8_t status(void) {
        return virtio_pci_status(vp);
}

static bool needs_reset(void) {
        return status() & VIRTIO_STATUS_DEVICE_NEEDS_RESET;
}

/*
 * Run the device until it has nothing to do; a bounded number of rounds.
 * The null backend is an endless source: a frame no posted buffer can take
 * (no carrier, a buffer too small) is dropped, and the next one, for ever,
 * as a flood would be.  Rounds that only dropped frames end the settling.
 */
static void settle(void) {
        unsigned rounds = 0, drop_rounds = 0;
        VNetStats a, b;

        vnet_get_stats(net, &a);
        while (vnet_poll(net)) {
                vnet_get_stats(net, &b);
                a.rx_drops = b.rx_drops;
                if (memcmp(&a, &b, sizeof(a)) == 0 && ++drop_rounds >= 2)
                        return;
                a = b;
                if (++rounds > MAX_ROUNDS) {
                        fprintf(stderr, "the device is still busy after %u rounds\n", MAX_ROUNDS);
                        abort();        /* livelock */
                }
        }
}

static void forget_queues(void) {
        memset(q, 0, sizeof(q));
        running = false;
}

static void untrack_all(void) {
        for (unsigned i = 0; i < NQ; i++)
                q[i].checked = q[i].tracked = false;
}

/* Outstanding chains may have changed under the harness: their verdicts no longer hold. */
static void verdicts_unknown(Queue *x) {
        for (unsigned i = 0; i < x->n_fifo; i++) {
                x->fifo[i].kind = CH_UNKNOWN;
                x->fifo[i].wlen = UINT32_MAX;
        }
}

static uint64_t ring_gpa(unsigned qi, unsigned part) {
        return page_gpa(qi) + 0x400u * part;    /* 0 descriptors, 1 driver area, 2 device area */
}

/* ---- used rings ---- */

static void take_used(unsigned qi, uint16_t id, uint32_t len) {
        Queue *x = &q[qi];
        unsigned i;

        if (id >= x->size || x->out[id] == 0) {
                fprintf(stderr, "queue %u: used id %u was not available\n", qi, id);
                abort();
        }
        x->out[id]--;
        for (i = 0; i < x->n_fifo && x->fifo[i].id != id; i++)
                ;
        if (i == x->n_fifo)
                abort();
        if (x->fifo[i].kind == CH_BAD) {
                fprintf(stderr, "queue %u: malformed chain %u used\n", qi, id);
                abort();
        }
        if (x->fifo[i].wlen != UINT32_MAX && len > x->fifo[i].wlen) {
                fprintf(stderr, "queue %u: used length %u beyond the chain's %u writable bytes\n", qi, len,
                        x->fifo[i].wlen);
                abort();
        }
        if (x->packed) {
                x->n_slots -= x->slots[id];
                x->used = (uint16_t) (x->used + x->slots[id]);
                if (x->used >= x->size) {
                        x->used = (uint16_t) (x->used - x->size);
                        x->used_wrap = !x->used_wrap;
                }
        }
        memmove(&x->fifo[i], &x->fifo[i + 1], (x->n_fifo - i - 1) * sizeof(Entry));
        x->n_fifo--;
}

static void scan_used(unsigned qi) {
        Queue *x = &q[qi];

        if (!x->live || !x->tracked || in_hole(page_gpa(qi), PAGE))
                return;
        if (x->packed) {
                for (unsigned n = 0; n < x->size; n++) {
                        VqDescPacked *d = (VqDescPacked *) ptr(ring_gpa(qi, 0)) + x->used;
                        uint16_t fl = le16toh(d->flags);
                        bool a = fl & VIRTQ_DESC_F_AVAIL, u = fl & VIRTQ_DESC_F_USED;

                        if (a != x->used_wrap || u != x->used_wrap || x->n_fifo == 0)
                                return;
                        take_used(qi, le16toh(d->id), le32toh(d->len));
                }
                return;
        }
        uint16_t idx = le16toh(((uint16_t *) ptr(ring_gpa(qi, 2)))[1]);
        uint16_t ahead = (uint16_t) (idx - x->used);
        if (ahead > x->size) {
                fprintf(stderr, "queue %u: used index %u is %u ahead of the driver's %u\n", qi, idx, ahead, x->used);
                abort();
        }
        while (x->used != idx) {
                VqUsedElem *e = (VqUsedElem *) ((uint8_t *) ptr(ring_gpa(qi, 2)) + 4) + (x->used % x->size);
                uint32_t id = le32toh(e->id);

                if (id >= x->size)
                        abort();
                take_used(qi, (uint16_t) id, le32toh(e->len));
                x->used++;
        }
}

/* Does the device serve queue qi unconditionally while running (tx of its pairs, rx0, control)? */
static int served(unsigned qi) {
        unsigned pairs = virtio_has(features, VIRTIO_NET_F_MQ) ? 2 : 1;
        unsigned ctrl = 2 * pairs;

        if (virtio_has(features, VIRTIO_NET_F_CTRL_VQ) && qi == ctrl)
                return 2;               /* everything used */
        if (qi < ctrl && qi % 2 == 1)
                return 2;
        if (qi == 0 && vnet_link(net))
                return 1;               /* reached, but a buffer may wait for more (mergeable) */
        return 0;
}

static void check(void) {
        bool nr = needs_reset();

        for (unsigned i = 0; i < NQ; i++)
                scan_used(i);
        if (!running || nr || mig != VU_MIG_RUNNING)
                return;
        for (unsigned i = 0; i < NQ; i++) {
                Queue *x = &q[i];
                int s = served(i);

                if (!x->live || !x->checked || !x->tracked || x->n_fifo == 0 || !s || in_hole(page_gpa(i), PAGE))
                        continue;
                if (x->fifo[0].kind == CH_BAD) {
                        fprintf(stderr, "queue %u: malformed chain %u reached without DEVICE_NEEDS_RESET\n", i,
                                x->fifo[0].id);
                        abort();
                }
                if (x->fifo[0].kind == CH_GOOD && s == 2) {
                        fprintf(stderr, "queue %u: chain %u left unused\n", i, x->fifo[0].id);
                        abort();
                }
        }
}

/* ---- actions ---- */

static void act_probe(In *in) {
        uint64_t want = u64(in), offered;
        uint8_t qsz = u8(in), vec = u8(in), mask = u8(in), flags = u8(in);
        bool hostile = flags & 1, skip_fok = flags & 2;

        forget_queues();
        wr(VIRTIO_PCI_COMMON_STATUS, 0, 1);
        wr(VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE, 1);
        wr(VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
        wr(VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
        offered = rd(VIRTIO_PCI_COMMON_DF, 4);
        wr(VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
        offered |= (uint64_t) rd(VIRTIO_PCI_COMMON_DF, 4) << 32;
        /* Mostly what Linux takes; the input may add anything, offered or not. */
        features = (offered & (want | VIRTIO_BIT(VIRTIO_F_VERSION_1))) | (flags & 4 ? want & ~offered : 0);
        wr(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
        wr(VIRTIO_PCI_COMMON_GF, (uint32_t) features, 4);
        wr(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
        wr(VIRTIO_PCI_COMMON_GF, (uint32_t) (features >> 32), 4);
        if (!skip_fok) {
                wr(VIRTIO_PCI_COMMON_STATUS, status() | VIRTIO_STATUS_FEATURES_OK, 1);
                if (!(status() & VIRTIO_STATUS_FEATURES_OK))
                        return;
        }
        wr(VIRTIO_PCI_COMMON_MSIX, vec % 4 == 3 ? VIRTIO_MSI_NO_VECTOR : vec % 4, 2);
        for (unsigned i = 0; i < NQ; i++) {
                Queue *x = &q[i];
                bool packed = virtio_has(features, VIRTIO_F_RING_PACKED);
                uint16_t size = packed ? (uint16_t) (qsz % QMAX + 1) : (uint16_t) (1u << (qsz % 5));

                if (!(mask & (1u << i)))
                        continue;
                /* Fresh rings, as a driver allocates them (the device must not rely on it). */
                bool fresh = !in_hole(page_gpa(i), PAGE);
                if (fresh)
                        memset(ptr(page_gpa(i)), 0, PAGE);
                wr(VIRTIO_PCI_COMMON_Q_SELECT, i, 2);
                wr(VIRTIO_PCI_COMMON_Q_SIZE, size, 2);
                wr(VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t) ring_gpa(i, 0), 4);
                wr(VIRTIO_PCI_COMMON_Q_DESCHI, 0, 4);
                wr(VIRTIO_PCI_COMMON_Q_AVAILLO, (uint32_t) ring_gpa(i, 1), 4);
                wr(VIRTIO_PCI_COMMON_Q_AVAILHI, 0, 4);
                wr(VIRTIO_PCI_COMMON_Q_USEDLO, (uint32_t) ring_gpa(i, 2), 4);
                wr(VIRTIO_PCI_COMMON_Q_USEDHI, 0, 4);
                wr(VIRTIO_PCI_COMMON_Q_MSIX, (vec >> 2) % 8 == 7 ? VIRTIO_MSI_NO_VECTOR : (vec >> 2) % 8 + i, 2);
                *x = (Queue) { .live = true, .checked = !hostile && !skip_fok, .tracked = fresh, .packed = packed,
                               .size = size, .avail_wrap = true, .used_wrap = true };
                if (!hostile)
                        wr(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
        }
        wr(VIRTIO_PCI_COMMON_STATUS, status() | VIRTIO_STATUS_DRIVER_OK, 1);
        for (unsigned i = 0; i < NQ && hostile; i++) {
                /* Enabled after DRIVER_OK (against 4.1.4.3.2): the device may or may not serve them. */
                wr(VIRTIO_PCI_COMMON_Q_SELECT, i, 2);
                wr(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
        }
        running = !hostile && !skip_fok && (status() & VIRTIO_STATUS_DRIVER_OK);
}

/*
 * A chain: [q][n][id][flags][lens...][mutation].  flags: bit 0 indirect,
 * bits 1..6 device-writable per descriptor (made to come last), bit 7 kick.
 * Mutation: what breaks it, known to the harness.
 */
enum { M_NONE, M_ADDR, M_NEXT, M_LOOP, M_ORDER, M_IND_NEXT, M_IND_LEN, M_IND_NESTED, M_ZERO, _M_MAX };

static void act_chain(In *in) {
        unsigned qi = u8(in) % NQ, n = u8(in) % MAX_CHAIN + 1;
        Queue *x = &q[qi];
        uint8_t idb = u8(in), flags = u8(in);
        uint32_t len[MAX_CHAIN];
        bool wflag[MAX_CHAIN];
        unsigned mut, nw = 0;
        bool indirect = flags & 1;
        Entry e = { .kind = CH_GOOD };
        uint64_t dgpa[MAX_CHAIN];
        VqDescSplit t[MAX_CHAIN];       /* the chain in split form; packed takes addr, len, flags, id */

        for (unsigned i = 0; i < n; i++)
                len[i] = u16(in) % 2048;
        mut = u8(in) % _M_MAX;
        if (!x->live)
                return;
        /* Device-writable descriptors last, as the driver must (2.7.4.2). */
        for (unsigned i = 0; i < n; i++)
                nw += (flags >> (1 + i)) & 1;
        for (unsigned i = 0; i < n; i++)
                wflag[i] = i >= n - nw;
        if (mut == M_ZERO)
                for (unsigned i = 0; i < n; i++)
                        len[i] = 0;
        /* Each buffer in its own part of the data pages. */
        for (unsigned i = 0; i < n; i++)
                dgpa[i] = page_gpa(PG_DATA) + ((uint64_t) qi * QMAX * MAX_CHAIN + (idb % QMAX) * MAX_CHAIN + i) *
                                                      ((RAM - PG_DATA * PAGE) / (NQ * QMAX * MAX_CHAIN) & ~63ull);
        if (mut == M_ORDER && n >= 2) {
                wflag[0] = true;
                wflag[n - 1] = false;
                len[0] = len[0] ? len[0] : 1;
        }
        if (mut == M_ADDR) {
                dgpa[n - 1] = GPA + RAM - 8;
                len[n - 1] = len[n - 1] < 16 ? 16 : len[n - 1];
        }
        for (unsigned i = 0; i < n; i++)
                t[i] = (VqDescSplit) { .addr = htole64(dgpa[i]), .len = htole32(len[i]),
                                       .flags = htole16((uint16_t) ((wflag[i] ? VIRTQ_DESC_F_WRITE : 0) |
                                                                    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0))) };

        /* What the spec makes malformed (and the device must refuse with NEEDS_RESET). */
        bool wseen = false;
        for (unsigned i = 0; i < n; i++) {
                if (!wflag[i] && wseen)
                        e.kind = CH_BAD;
                if (wflag[i] && len[i])
                        wseen = true;
                if (len[i] && !dma_ok(dgpa[i], len[i]))
                        e.kind = CH_BAD;
        }
        if (indirect && !virtio_has(features, VIRTIO_F_INDIRECT_DESC))
                e.kind = CH_BAD;
        e.wlen = 0;
        for (unsigned i = 0; i < n; i++)
                e.wlen += wflag[i] ? len[i] : 0;

        if (x->packed) {
                VqDescPacked *ring = ptr(ring_gpa(qi, 0));
                unsigned slots = indirect ? 1 : n;
                uint16_t id = (uint16_t) (idb % x->size), head = x->avail, head_flags = 0;

                if (x->out[id] || x->n_slots + slots > x->size || in_hole(page_gpa(qi), PAGE))
                        return;         /* the model keeps ids and slots unique */
                if (mut == M_NEXT || mut == M_LOOP)
                        mut = M_NONE;
                if (indirect) {
                        uint64_t tg = page_gpa(PG_IND) + 64ull * (qi * QMAX + id) * 2;
                        VqDescPacked pt[MAX_CHAIN];
                        for (unsigned i = 0; i < n; i++)
                                pt[i] = (VqDescPacked) { .addr = t[i].addr, .len = t[i].len,
                                                         .flags = htole16(wflag[i] ? VIRTQ_DESC_F_WRITE : 0) };
                        if (mut == M_IND_NESTED) {
                                pt[0].flags |= htole16(VIRTQ_DESC_F_INDIRECT);
                                e.kind = CH_BAD;
                        }
                        guest_write(tg, pt, n * sizeof(pt[0]));
                        uint32_t tlen = 16 * n;
                        if (mut == M_IND_LEN) {
                                tlen = (flags & 0x80) ? 0 : tlen - 3;
                                e.kind = CH_BAD;
                        }
                        if (!dma_ok(tg, tlen))
                                e.kind = CH_BAD;
                        uint16_t fl = VIRTQ_DESC_F_INDIRECT;
                        if (mut == M_IND_NEXT) {
                                /* NEXT on a packed indirect descriptor would take the next slot too: not modelled. */
                        }
                        ring[head] = (VqDescPacked) { .addr = htole64(tg), .len = htole32(tlen), .id = htole16(id) };
                        head_flags = fl;
                } else {
                        for (unsigned i = 0; i < n; i++) {
                                unsigned s = (head + i) % x->size;
                                bool wrap = (head + i) / x->size ? !x->avail_wrap : x->avail_wrap;
                                uint16_t fl = (uint16_t) (le16toh(t[i].flags) |
                                                          (wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED));
                                ring[s] = (VqDescPacked) { .addr = t[i].addr, .len = t[i].len, .id = htole16(id) };
                                if (i == 0)
                                        head_flags = fl;
                                else
                                        __atomic_store_n(&ring[s].flags, htole16(fl), __ATOMIC_RELEASE);
                        }
                }
                if (indirect)
                        head_flags |= x->avail_wrap ? VIRTQ_DESC_F_AVAIL : VIRTQ_DESC_F_USED;
                x->avail = (uint16_t) (x->avail + slots);
                if (x->avail >= x->size) {
                        x->avail = (uint16_t) (x->avail - x->size);
                        x->avail_wrap = !x->avail_wrap;
                }
                x->slots[id] = (uint8_t) slots;
                x->n_slots += slots;
                x->out[id]++;
                e.id = id;
                if (x->n_fifo < FIFO_MAX)
                        x->fifo[x->n_fifo++] = e;
                else
                        x->tracked = false;
                __atomic_store_n(&ring[head].flags, htole16(head_flags), __ATOMIC_RELEASE);
                if (trace)
                        fprintf(stderr, "  chain q%u packed id %u n %u%s kind %u\n", qi, id, n,
                                indirect ? " indirect" : "", e.kind);
                return;
        }

        VqDescSplit *desc = ptr(ring_gpa(qi, 0));
        uint16_t *avail = ptr(ring_gpa(qi, 1));
        uint16_t head = (uint16_t) (idb % x->size);

        if (in_hole(page_gpa(qi), PAGE))
                return;
        if (indirect) {
                uint64_t tg = page_gpa(PG_IND) + 64ull * (qi * QMAX + head) * 2;
                uint32_t tlen = 16 * n;
                uint16_t fl = VIRTQ_DESC_F_INDIRECT;

                for (unsigned i = 0; i < n; i++)
                        t[i].next = htole16((uint16_t) (i + 1));
                if (mut == M_NEXT) {
                        t[n - 1].flags |= htole16(VIRTQ_DESC_F_NEXT);
                        t[n - 1].next = htole16((uint16_t) n);
                        e.kind = CH_BAD;
                } else if (mut == M_LOOP) {
                        t[n - 1].flags |= htole16(VIRTQ_DESC_F_NEXT);
                        t[n - 1].next = 0;
                        e.kind = CH_BAD;
                } else if (mut == M_IND_NESTED) {
                        t[0].flags |= htole16(VIRTQ_DESC_F_INDIRECT);
                        e.kind = CH_BAD;
                } else if (mut == M_IND_LEN) {
                        tlen = (flags & 0x80) ? 0 : tlen - 3;
                        e.kind = CH_BAD;
                } else if (mut == M_IND_NEXT) {
                        fl |= VIRTQ_DESC_F_NEXT;
                        e.kind = CH_BAD;
                }
                guest_write(tg, t, n * sizeof(t[0]));
                if (!dma_ok(tg, tlen))
                        e.kind = CH_BAD;
                desc[head] = (VqDescSplit) { .addr = htole64(tg), .len = htole32(tlen), .flags = htole16(fl),
                                             .next = htole16((uint16_t) ((head + 1) % x->size)) };
        } else {
                if (n > x->size)
                        n = x->size;    /* loops otherwise: M_LOOP does that on purpose */
                for (unsigned i = 0; i < n; i++)
                        t[i].next = htole16((uint16_t) ((head + i + 1) % x->size));
                if (n < MAX_CHAIN && mut == M_NEXT) {
                        t[n - 1].flags |= htole16(VIRTQ_DESC_F_NEXT);
                        t[n - 1].next = htole16((uint16_t) (x->size + (idb >> 4)));
                        e.kind = CH_BAD;
                } else if (mut == M_LOOP) {
                        t[n - 1].flags |= htole16(VIRTQ_DESC_F_NEXT);
                        t[n - 1].next = htole16(head);
                        e.kind = CH_BAD;
                }
                /* The recomputed verdict for a chain cut to the ring's size. */
                e.wlen = 0;
                wseen = false;
                for (unsigned i = 0; i < n; i++) {
                        bool w = le16toh(t[i].flags) & VIRTQ_DESC_F_WRITE;
                        e.wlen += w ? len[i] : 0;
                        if (!w && wseen)
                                e.kind = CH_BAD;
                        if (w && len[i])
                                wseen = true;
                }
                for (unsigned i = 0; i < n; i++)
                        desc[(head + i) % x->size] = t[i];
                /* Descriptors of chains still outstanding may have been overwritten. */
                if (x->n_fifo)
                        verdicts_unknown(x);
        }
        if (x->out[head])
                verdicts_unknown(x);    /* the same head twice: which chain is which is not known */
        avail[2 + x->avail % x->size] = htole16(head);
        x->avail++;
        __atomic_store_n(&avail[1], htole16(x->avail), __ATOMIC_RELEASE);
        x->out[head]++;
        e.id = head;
        if (x->n_fifo < FIFO_MAX && x->n_fifo < x->size)
                x->fifo[x->n_fifo++] = e;
        else
                x->tracked = false;     /* more outstanding than the ring holds: the device must refuse it */
        if (trace)
                fprintf(stderr, "  chain q%u split head %u n %u%s mut %u kind %u\n", qi, head, n,
                        indirect ? " indirect" : "", mut, e.kind);
        if (flags & 0x80)
                wr(VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * qi, qi, 2);
}

/* A control command: [class][cmd][len][data...], out then a 1-byte ack. */
static void act_ctrl(In *in) {
        uint8_t cls = u8(in), cmd = u8(in), n = u8(in) % 64;
        unsigned pairs = virtio_has(features, VIRTIO_NET_F_MQ) ? 2 : 1, qi = 2 * pairs;
        Queue *x = &q[qi];
        uint8_t buf[66] = { cls, cmd };
        uint64_t b = page_gpa(PAGES - 1);

        for (unsigned i = 0; i < n; i++)
                buf[2 + i] = u8(in);
        if (qi >= NQ || !x->live || x->packed || in_hole(b, PAGE) || in_hole(page_gpa(qi), PAGE))
                return;
        memcpy(ptr(b), buf, 2u + n);
        VqDescSplit *desc = ptr(ring_gpa(qi, 0));
        uint16_t *avail = ptr(ring_gpa(qi, 1));
        uint16_t head = 0;

        if (x->size < 2 || x->n_fifo)
                return;
        desc[0] = (VqDescSplit) { .addr = htole64(b), .len = htole32(2u + n), .flags = htole16(VIRTQ_DESC_F_NEXT),
                                  .next = htole16(1) };
        desc[1] = (VqDescSplit) { .addr = htole64(b + 128), .len = htole32(1), .flags = htole16(VIRTQ_DESC_F_WRITE) };
        avail[2 + x->avail % x->size] = htole16(head);
        x->avail++;
        __atomic_store_n(&avail[1], htole16(x->avail), __ATOMIC_RELEASE);
        x->out[head]++;
        x->fifo[x->n_fifo++] = (Entry) { .id = head, .kind = CH_GOOD, .wlen = 1 };
        if (trace)
                fprintf(stderr, "  ctrl %u/%u len %u\n", cls, cmd, n);
}

/* Raw bytes into a descriptor slot: the chains outstanding there are no longer known. */
static void act_raw_desc(In *in) {
        unsigned qi = u8(in) % NQ, slot = u8(in) % QMAX;
        uint8_t raw[16];

        for (unsigned i = 0; i < sizeof(raw); i++)
                raw[i] = u8(in);
        if (in_hole(page_gpa(qi), PAGE))
                return;
        memcpy((uint8_t *) ptr(ring_gpa(qi, 0)) + 16 * slot, raw, sizeof(raw));
        verdicts_unknown(&q[qi]);
        if (q[qi].packed)
                q[qi].tracked = false;  /* ids come from the descriptors */
}

/* A register write anywhere in BAR0: the harness's model of the rings no longer holds. */
static void act_reg(In *in) {
        uint16_t off = u16(in) % VIRTIO_PCI_BAR_SIZE;
        uint8_t sz = (uint8_t) (1u << (u8(in) % 4));
        uint64_t v = u64(in);

        if (off < VIRTIO_PCI_ISR_OFF && (v & 0xff) == 0 && off == VIRTIO_PCI_COMMON_STATUS)
                forget_queues();
        virtio_pci_bar_write(vp, off, &v, sz);
        if (off < VIRTIO_PCI_ISR_OFF) {
                untrack_all();
                running = false;
        }
        if (status() == 0)
                forget_queues();
}

static void act_read(In *in) {
        uint16_t off = u16(in) % VIRTIO_PCI_BAR_SIZE;
        uint8_t sz = (uint8_t) (1u << (u8(in) % 4));
        uint64_t v;

        virtio_pci_bar_read(vp, off, &v, sz);
}

/* Guest data into the data pages (headers, frames, control payloads). */
static void act_fill(In *in) {
        uint32_t off = u32(in) % (uint32_t) (RAM - PG_DATA * PAGE);
        uint8_t n = u8(in);
        uint64_t gpa = page_gpa(PG_DATA) + off;

        for (unsigned i = 0; i < n; i++) {
                uint8_t b = u8(in);
                if (gpa + i < GPA + RAM)
                        guest_write(gpa + i, &b, 1);
        }
}

/* After a reset the device must leave the rings alone. */
static void reset_and_watch(bool server) {
        static uint8_t before[NQ * PAGE];

        if (server) {
                scfg.ops->quiesce(scfg.opaque);
                scfg.ops->reset(scfg.opaque, VU_RESET_DEVICE);
                scfg.ops->resume(scfg.opaque);
                mig = VU_MIG_RUNNING;
        } else {
                wr(VIRTIO_PCI_COMMON_STATUS, 0, 1);
        }
        forget_queues();
        if (fm.hole_len)
                return;
        memcpy(before, ptr(GPA), sizeof(before));
        settle();
        if (memcmp(before, ptr(GPA), sizeof(before)) != 0)
                abort();
}

/* DMA unmap of [page, page + n) as the server does it (quiesced), or the map back. */
static void act_dma(In *in) {
        uint8_t page = u8(in) % PAGES, n = u8(in) % 4 + 1;

        scfg.ops->quiesce(scfg.opaque);
        if (fm.hole_len) {
                protect_hole(PROT_READ | PROT_WRITE);
                fm.hole_len = 0;
        } else {
                fm.hole_gpa = page_gpa(page);
                fm.hole_len = (uint64_t) MIN(n, PAGES - page) * PAGE;
                protect_hole(PROT_NONE);
        }
        scfg.ops->resume(scfg.opaque);
        for (unsigned i = 0; i < NQ; i++)
                verdicts_unknown(&q[i]);
}

static int arc(enum vu_mig_state to) {
        int r;

        scfg.ops->quiesce(scfg.opaque);
        r = scfg.ops->migration->transition(scfg.opaque, mig, to);
        mig = r < 0 ? VU_MIG_ERROR : to;
        scfg.ops->resume(scfg.opaque);
        return r;
}

/* A live migration onto the same device: stopped, saved, loaded again, running. */
static void act_migrate(In *in) {
        const VuMigrationOps *m = scfg.ops->migration;
        g_autoptr(GByteArray) s = g_byte_array_new();
        uint8_t piece = u8(in) % 200 + 1, buf[256];
        ssize_t got;

        if (mig != VU_MIG_RUNNING || fm.hole_len)
                return;
        if (arc(VU_MIG_STOP) < 0 || arc(VU_MIG_STOP_COPY) < 0)
                abort();
        while ((got = m->read_data(scfg.opaque, buf, piece)) > 0)
                g_byte_array_append(s, buf, (guint) got);
        if (got < 0 || arc(VU_MIG_STOP) < 0 || arc(VU_MIG_RESUMING) < 0)
                abort();
        if (m->write_data(scfg.opaque, s->data, s->len) < 0 || arc(VU_MIG_STOP) < 0) {
                fprintf(stderr, "a state the device saved did not load: %s\n", vnet_migration_error(net));
                abort();
        }
        if (arc(VU_MIG_RUNNING) < 0)
                abort();
        if (trace)
                fprintf(stderr, "  migrated (%u bytes)\n", s->len);
}

static void act_link(In *in) {
        vnet_set_link(net, !vnet_link(net));
        if (!vnet_link(net))
                untrack_all();          /* frames dropped: the receive side keeps running */
}

static void act_reset(In *in) {
        reset_and_watch(u8(in) & 1);
}

typedef void (*Action)(In *in);

/* Chains and control commands most often; migration, costly, once in sixteen. */
static const struct {
        const char *name;
        Action fn;
} actions[16] = {
        { "probe", act_probe },
        { "chain", act_chain },
        { "chain", act_chain },
        { "chain", act_chain },
        { "chain", act_chain },
        { "chain", act_chain },
        { "ctrl", act_ctrl },
        { "ctrl", act_ctrl },
        { "raw-desc", act_raw_desc },
        { "reg", act_reg },
        { "read", act_read },
        { "fill", act_fill },
        { "dma", act_dma },
        { "migrate", act_migrate },
        { "link", act_link },
        { "reset", act_reset },
};

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        VNetOptions o = { .pairs = 2, .mtu = 1500, .link_up = true, .queue_size = QMAX, .packed = true,
                          .manual = true, .mac = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }, .migration_id = "net0" };
        NetBackend *be;

        trace = getenv("FUZZ_TRACE") != NULL;
        fake_mem_init(&fm, GPA, RAM);
        if (net_null_open(2, 60, &be) < 0 || vnet_new(&o, be, &net) < 0)
                abort();
        vp = vnet_virtio(net);
        vnet_attach(net, &fm.mem, &irq_ops, NULL);
        if (vnet_server_config(net, &scfg) < 0 || !scfg.ops->migration)
                abort();
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        In in = { data, size };
        unsigned steps = 0;

        while (in.left && steps++ < MAX_STEPS) {
                unsigned k = u8(&in) % G_N_ELEMENTS(actions);

                if (trace)
                        fprintf(stderr, "%s\n", actions[k].name);
                actions[k].fn(&in);
                settle();
                check();
        }

        /* Back to power-on for the next input. */
        if (mig != VU_MIG_RUNNING) {
                scfg.ops->quiesce(scfg.opaque);
                scfg.ops->reset(scfg.opaque, VU_RESET_DEVICE);
                scfg.ops->resume(scfg.opaque);
                mig = VU_MIG_RUNNING;
        }
        if (fm.hole_len) {
                scfg.ops->quiesce(scfg.opaque);
                protect_hole(PROT_READ | PROT_WRITE);
                fm.hole_len = 0;
                scfg.ops->resume(scfg.opaque);
        }
        virtio_pci_reset(vp);
        if (!vnet_link(net))
                vnet_set_link(net, true);
        memset(fm.host, 0, RAM);
        forget_queues();
        features = 0;
        return 0;
}
