/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * crash-writer [--seed N] SOCKET: a VMM that writes through our client
 * library while the device under it is killed, and checks after each kill
 * what the namespace holds (the dbus suite's crash-trials case drives it).
 *
 * It writes 4 KiB blocks of generation-numbered data with up to QD commands
 * in flight: random block ranges (1-4 blocks, never two in-flight writes to
 * one block), random FUA, and now and then a Flush.  Every 512-byte sector
 * holds the block number and the generation; the block's last 4 bytes are a
 * CRC-32 of the rest.  It keeps, per block,
 *   acked    the last generation whose write completed successfully
 *   durable  the last generation that a completed FUA write or a completed
 *            Flush (of writes that completed before it was submitted) made
 *            durable
 *   issued   the last generation ever submitted
 * When its connection fails (the worker was killed) it reconnects to the
 * same socket (whoever restarts the worker), brings the controller up again
 * and reads every block back:
 *   torn     sectors of different generations or blocks, or a bad CRC, or a
 *            generation that was never written
 *   lost     a generation older than durable
 *   stale    older than acked but not older than durable (allowed: the
 *            device has a volatile write cache; counted for information)
 * then takes what it read as the new baseline and writes on.
 *
 * Prints "ready lba N seed N" once connected, "verified TRIAL BLOCKS LOST TORN
 * STALE NSBYTES" after each reconnection (NSBYTES: namespace 1's size then), and when its stdin closes it verifies once more
 * (without a kill) and prints "ok TRIALS CHECKED LOST TORN STALE WRITES FLUSHES".
 *
 * It is a VMM that migrates (it asks for the MIGRATION feature), and takes
 * commands on stdin:
 *   migrate SOCKET  live-migrate, writes in flight, to the device listening
 *                   on SOCKET: PRE_COPY, a random pause, STOP_COPY, the
 *                   state loaded there, the source stopped, on there; prints
 *                   "migrated BYTES", or "stayed" when the destination did
 *                   not take it (the source runs again), or "lost" when the
 *                   source went away meanwhile (a reconnection to it and its
 *                   "verified" line follow)
 *   check           let what is in flight complete (reconnecting if the
 *                   device went away) and verify in place: "checked TRIAL
 *                   BLOCKS LOST TORN STALE NSBYTES"
 * After a migration, reconnections go to the device it moved to.
 * Exit status 0 when nothing was lost or torn and every command succeeded.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-srv.h"
#include "vmm-mig.h"

#define GPA 0x100000000ull
#define RAM (16ull << 20)
#define BS 4096u
#define BLOCKS 2048u            /* 8 MiB of namespace 1 */
#define QD 32u
#define MAXRUN 4u               /* blocks per write */
#define SLOT (BS * MAXRUN)
#define MAGIC 0x4853415243554656ull     /* "VFUCRASH" */
#define RECONNECT_MS 60000

typedef struct Sector {
        uint64_t magic;
        uint32_t block, gen, sector, pad;
} Sector;

typedef struct Inflight {
        bool used, flush, fua;
        uint16_t cid;
        uint32_t block, n;
        uint32_t *snap;         /* a Flush: acked[] when it was submitted */
} Inflight;

typedef struct Writer {
        NvmeVmm v;
        bool connected;
        const char *sock;
        char *moved_to;         /* the socket a migration moved the device to */
        unsigned lbs, nlb;      /* LBA size, LBAs per block */
        uint64_t ns_bytes;      /* namespace 1's size */
        uint64_t slots, lists, rbuf;    /* gpa: QD write slots and their PRP lists, the verify buffer */
        GRand *rng;
        uint32_t acked[BLOCKS], durable[BLOCKS], issued[BLOCKS];
        bool busy[BLOCKS];
        Inflight fl[QD];
        unsigned inflight;
        bool flush_inflight;
        /* totals */
        unsigned long trials, checked, lost, torn, stale, writes, flushes, errors;
} Writer;

static uint32_t crc32(const uint8_t *p, size_t n) {
        static uint32_t table[256];
        uint32_t c = 0xffffffffu;

        if (!table[1])
                for (uint32_t i = 0; i < 256; i++) {
                        uint32_t x = i;

                        for (int k = 0; k < 8; k++)
                                x = x & 1 ? 0xedb88320u ^ (x >> 1) : x >> 1;
                        table[i] = x;
                }
        for (size_t i = 0; i < n; i++)
                c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
        return ~c;
}

static void fill(uint8_t *p, uint32_t block, uint32_t gen, unsigned lbs) {
        uint64_t x = ((uint64_t) block << 32 | gen) * 0x9e3779b97f4a7c15ull + 1;
        uint32_t crc;

        for (unsigned i = 0; i < BS; i += 8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                memcpy(p + i, &x, 8);
        }
        for (unsigned s = 0; s < BS / lbs; s++) {
                Sector h = { .magic = MAGIC, .block = block, .gen = gen, .sector = s };

                memcpy(p + s * lbs, &h, sizeof(h));
        }
        crc = crc32(p, BS - 4);
        memcpy(p + BS - 4, &crc, 4);
}

/* The generation a block read back holds: 0 never written, -1 torn or corrupt. */
static int64_t parse(const uint8_t *p, uint32_t block, unsigned lbs) {
        static const uint8_t zero[BS];
        uint32_t crc, gen = 0;

        if (memcmp(p, zero, BS) == 0)
                return 0;
        memcpy(&crc, p + BS - 4, 4);
        if (crc != crc32(p, BS - 4))
                return -1;
        for (unsigned s = 0; s < BS / lbs; s++) {
                Sector h;

                memcpy(&h, p + s * lbs, sizeof(h));
                if (h.magic != MAGIC || h.block != block || h.sector != s || h.gen == 0 || (s && h.gen != gen))
                        return -1;
                gen = h.gen;
        }
        return gen;
}

/* ---- the connection ---- */

static void writer_disconnect(Writer *w) {
        if (w->connected)
                nvme_vmm_disconnect(&w->v);
        w->connected = false;
        for (unsigned i = 0; i < QD; i++)
                g_clear_pointer(&w->fl[i].snap, g_free);
        memset(w->fl, 0, sizeof(w->fl));
        memset(w->busy, 0, sizeof(w->busy));
        w->inflight = 0;
        w->flush_inflight = false;
}

/* Namespace 1's LBA size (0 when unusable) and size in bytes. */
static unsigned lba_size(NvmeDrv *d, uint64_t buf, uint64_t *bytes) {
        const uint8_t *id;
        unsigned flbas, lbads;
        uint64_t nsze;

        if (nvme_drv_identify(d, 0x00, 1, buf) != 0)
                return 0;
        id = nvme_drv_ptr(d, buf);
        memcpy(&nsze, id, 8);
        flbas = id[26] & 0x0f;
        lbads = id[128 + 4 * flbas + 2];
        if (lbads < 9 || lbads > 12)
                return 0;
        *bytes = nsze << lbads;
        return 1u << lbads;
}

/* Connect and bring the controller up: 0 or -errno (the worker may not listen yet). */
static int writer_connect(Writer *w) {
        NvmeDrv *d;
        uint64_t idbuf;
        int r;

        r = nvme_vmm_connect(&w->v, w->sock, GPA, RAM, 2);
        w->connected = true;
        if (r < 0)
                return r;
        /* A VMM that migrates says so first: the manager waits for it to move the state. */
        if ((r = vmm_mig_probe(w->v.c)) < 0)
                return r;
        d = &w->v.d;
        d->timeout_ms = 30000;
        if ((r = nvme_drv_enable(d, 32)) != 0 || (r = nvme_drv_create_io_queues(d, 1, 64, 1)) != 0)
                return r > 0 ? -EIO : r;
        idbuf = nvme_drv_alloc(d, 4096, 4096);
        w->slots = nvme_drv_alloc(d, (uint64_t) SLOT * QD, 4096);
        w->lists = nvme_drv_alloc(d, 4096ull * QD, 4096);
        w->rbuf = nvme_drv_alloc(d, 65536, 4096);
        w->lbs = lba_size(d, idbuf, &w->ns_bytes);
        if (w->lbs == 0 || w->lbs > BS || w->ns_bytes < (uint64_t) BLOCKS * BS)
                return -EIO;
        w->nlb = BS / w->lbs;
        return 0;
}

static int writer_reconnect(Writer *w) {
        int r = -ECONNREFUSED;

        for (unsigned ms = 0; ms < RECONNECT_MS; ms += 20) {
                writer_disconnect(w);
                if ((r = writer_connect(w)) == 0)
                        return 0;
                g_usleep(20 * 1000);
        }
        fprintf(stderr, "crash-writer: cannot reconnect to %s: %s\n", w->sock, strerror(-r));
        return r;
}

/* ---- live migration, as a VMM that migrates does it ---- */

/* A new connection to the controller: memory space and bus master on, MSI-X. */
static int attach(VuClient *c, int *irq, void *opaque) {
        NvmeVmm *v = opaque;
        uint16_t cmd = 0x6;
        int r = vu_client_region_write(c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false);

        return r < 0 ? r : vu_client_enable_msix(c, v->nvec, irq);
}

/* Move the device to sock, writes in flight.  0 (migrated or stayed), or -errno when the source went away. */
static int migrate(Writer *w, const char *sock) {
        g_autoptr(GByteArray) st = NULL;
        VuClient *c2 = NULL;
        int irq2[128], r;

        if (vmm_mig_pre_copy(w->v.c) < 0)
                return -ECONNRESET;
        g_usleep((gulong) g_rand_int_range(w->rng, 50, 400) * 1000);
        if (!(st = vmm_mig_stop_copy(w->v.c)))
                return -ECONNRESET;
        memset(irq2, -1, sizeof(irq2));
        r = vmm_mig_load(sock, &w->v.ram, st, attach, &w->v, irq2, &c2);
        if (r < 0) {
                for (unsigned i = 0; i < G_N_ELEMENTS(irq2); i++)
                        if (irq2[i] >= 0)
                                close(irq2[i]);
                /* Not handed over: the device runs here again. */
                if (vmm_mig_set(w->v.c, VU_MIG_RUNNING) < 0)
                        return -ECONNRESET;
                printf("stayed\n");
                fflush(stdout);
                return 0;
        }
        /* The source may be gone by now: it is left behind either way. */
        (void) vmm_mig_set(w->v.c, VU_MIG_STOP);
        vu_client_free(w->v.c);
        for (unsigned i = 0; i < w->v.nvec; i++) {
                close(w->v.irq_fds[i]);
                w->v.irq_fds[i] = irq2[i];
        }
        w->v.c = c2;
        g_free(w->moved_to);
        w->sock = w->moved_to = g_strdup(sock);
        printf("migrated %u\n", st->len);
        fflush(stdout);
        return 0;
}

/* ---- writing ---- */

static Inflight *slot_free(Writer *w, unsigned *idx) {
        for (unsigned i = 0; i < QD; i++)
                if (!w->fl[i].used) {
                        *idx = i;
                        return &w->fl[i];
                }
        return NULL;
}

static void submit_one(Writer *w) {
        NvmeDrv *d = &w->v.d;
        unsigned idx;
        Inflight *f = slot_free(w, &idx);
        NvmeSqe c = { .nsid = 1 };

        if (!f)
                return;
        if (!w->flush_inflight && g_rand_int_range(w->rng, 0, 12) == 0) {
                c.opcode = NVME_CMD_FLUSH;
                *f = (Inflight) { .used = true, .flush = true, .snap = g_memdup2(w->acked, sizeof(w->acked)) };
                w->flush_inflight = true;
        } else {
                uint32_t n = (uint32_t) g_rand_int_range(w->rng, 1, MAXRUN + 1);
                uint32_t b = (uint32_t) g_rand_int_range(w->rng, 0, (gint32) (BLOCKS - n + 1));
                uint64_t gpa = w->slots + (uint64_t) idx * SLOT;

                for (uint32_t i = 0; i < n; i++)
                        if (w->busy[b + i])
                                return;         /* another write to it is in flight: try again later */
                *f = (Inflight) { .used = true, .block = b, .n = n, .fua = g_rand_int_range(w->rng, 0, 4) == 0 };
                for (uint32_t i = 0; i < n; i++) {
                        w->busy[b + i] = true;
                        fill(nvme_drv_ptr(d, gpa + (uint64_t) i * BS), b + i, ++w->issued[b + i], w->lbs);
                }
                c.opcode = NVME_CMD_WRITE;
                c.cdw10 = b * w->nlb;
                c.cdw12 = (n * w->nlb - 1) | (f->fua ? 1u << 30 : 0);
                /* PRPs by hand: the slot's own list page, not the driver's bump allocator. */
                c.prp1 = gpa;
                if (n == 2) {
                        c.prp2 = gpa + BS;
                } else if (n > 2) {
                        uint64_t *list = nvme_drv_ptr(d, w->lists + (uint64_t) idx * 4096);

                        for (uint32_t i = 1; i < n; i++)
                                list[i - 1] = gpa + (uint64_t) i * BS;
                        c.prp2 = w->lists + (uint64_t) idx * 4096;
                }
        }
        f->cid = nvme_drv_submit(d, 1, &c);
        w->inflight++;
}

static void complete(Writer *w, const NvmeCqe *e) {
        Inflight *f = NULL;

        for (unsigned i = 0; i < QD && !f; i++)
                if (w->fl[i].used && w->fl[i].cid == e->cid)
                        f = &w->fl[i];
        if (!f) {
                fprintf(stderr, "crash-writer: completion of unknown command %u\n", e->cid);
                w->errors++;
                return;
        }
        if (nvme_drv_status(e) != 0) {
                fprintf(stderr, "crash-writer: %s failed with status 0x%x\n", f->flush ? "Flush" : "Write",
                        nvme_drv_status(e));
                w->errors++;
        } else if (f->flush) {
                for (unsigned b = 0; b < BLOCKS; b++)
                        w->durable[b] = MAX(w->durable[b], f->snap[b]);
                w->flushes++;
        } else {
                for (uint32_t i = 0; i < f->n; i++) {
                        uint32_t b = f->block + i;

                        w->acked[b] = w->issued[b];
                        if (f->fua)
                                w->durable[b] = w->acked[b];
                }
                w->writes++;
        }
        if (f->flush)
                w->flush_inflight = false;
        else
                for (uint32_t i = 0; i < f->n; i++)
                        w->busy[f->block + i] = false;
        g_free(f->snap);
        memset(f, 0, sizeof(*f));
        w->inflight--;
}

/* Keep the queue filled to a random depth and reap.  0, or -errno when the device went away. */
static int write_round(Writer *w) {
        unsigned depth = (unsigned) g_rand_int_range(w->rng, 1, QD + 1);
        NvmeCqe e;
        int r;

        for (unsigned i = 0; i < 2 * QD && w->inflight < depth; i++)
                submit_one(w);
        if (w->inflight == 0)
                return 0;
        r = nvme_drv_reap(&w->v.d, 1, &e, w->v.d.timeout_ms);
        if (r < 0)
                return r;
        complete(w, &e);
        while (nvme_drv_poll(&w->v.d, 1, &e))
                complete(w, &e);
        return 0;
}

/* ---- verifying ---- */

static int verify(Writer *w, unsigned long *lost, unsigned long *torn, unsigned long *stale) {
        NvmeDrv *d = &w->v.d;
        const unsigned per = 65536 / BS;

        for (uint32_t b0 = 0; b0 < BLOCKS; b0 += per) {
                const uint8_t *p = nvme_drv_ptr(d, w->rbuf);
                int r;

                memset(nvme_drv_ptr(d, w->rbuf), 0xa5, 65536);
                r = nvme_drv_rw(d, 1, false, 1, (uint64_t) b0 * w->nlb, per * w->nlb, w->lbs, w->rbuf, false);
                if (r != 0)
                        return r > 0 ? -EIO : r;
                for (uint32_t i = 0; i < per; i++) {
                        uint32_t b = b0 + i;
                        int64_t g = parse(p + (size_t) i * BS, b, w->lbs);

                        if (g < 0 || g > w->issued[b]) {
                                fprintf(stderr, "crash-writer: block %u torn or corrupt (durable %u acked %u "
                                        "issued %u, read %" G_GINT64_FORMAT ")\n",
                                        b, w->durable[b], w->acked[b], w->issued[b], g);
                                (*torn)++;
                                g = w->durable[b];      /* rewritten by the next writes */
                        } else if (g < w->durable[b]) {
                                fprintf(stderr, "crash-writer: block %u lost: generation %" G_GINT64_FORMAT
                                        " read, %u was durable\n", b, g, w->durable[b]);
                                (*lost)++;
                        } else if (g < w->acked[b]) {
                                (*stale)++;
                        }
                        w->acked[b] = w->durable[b] = (uint32_t) g;
                }
        }
        w->checked += BLOCKS;
        return 0;
}

static int verify_report(Writer *w, const char *what) {
        unsigned long lost = 0, torn = 0, stale = 0;
        int r = verify(w, &lost, &torn, &stale);

        if (r < 0)
                return r;
        w->lost += lost;
        w->torn += torn;
        w->stale += stale;
        if (what) {
                printf("%s %lu %u %lu %lu %lu %" G_GUINT64_FORMAT "\n", what, w->trials, BLOCKS, lost, torn, stale,
                       w->ns_bytes);
                fflush(stdout);
        }
        return 0;
}

/* The device went away under us: reconnect, read everything back.  0 or -errno. */
static int trial(Writer *w) {
        int r;

        w->trials++;
        if ((r = writer_reconnect(w)) < 0 || (r = verify_report(w, "verified")) < 0) {
                fprintf(stderr, "crash-writer: trial %lu: %s\n", w->trials, strerror(-r));
                w->errors++;
        }
        return r;
}

/* Let what is in flight complete.  0, or -errno when the device went away. */
static int drain(Writer *w) {
        while (w->inflight > 0) {
                NvmeCqe e;
                int r = nvme_drv_reap(&w->v.d, 1, &e, w->v.d.timeout_ms);

                if (r < 0)
                        return r;
                complete(w, &e);
        }
        return 0;
}

/* One stdin command.  0, or -errno when the writer cannot go on. */
static int command(Writer *w, const char *line) {
        int r = 0;

        if (g_str_has_prefix(line, "migrate ")) {
                if (migrate(w, line + 8) < 0) {
                        printf("lost\n");
                        fflush(stdout);
                        r = trial(w);
                }
        } else if (strcmp(line, "check") == 0) {
                if (drain(w) < 0 && (r = trial(w)) < 0)
                        return r;
                r = verify_report(w, "checked");
        } else {
                fprintf(stderr, "crash-writer: unknown command '%s'\n", line);
                w->errors++;
                r = -EINVAL;
        }
        return r;
}

int main(int argc, char **argv) {
        static Writer w;
        g_autoptr(GString) in = g_string_new(NULL);
        g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
        guint32 seed = (guint32) getpid();
        int opt, r;

        static const struct option longopts[] = { { "seed", required_argument, NULL, 's' }, { 0 } };
        while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
                if (opt != 's') {
                        fprintf(stderr, "usage: crash-writer [--seed N] SOCKET\n");
                        return 2;
                }
                seed = (guint32) strtoul(optarg, NULL, 0);
        }
        if (optind + 1 != argc) {
                fprintf(stderr, "usage: crash-writer [--seed N] SOCKET\n");
                return 2;
        }
        w.sock = argv[optind];
        w.rng = g_rand_new_with_seed(seed);
        if ((r = writer_connect(&w)) < 0) {
                fprintf(stderr, "crash-writer: cannot bring up %s: %s\n", w.sock, strerror(-r));
                return 1;
        }
        /* The namespace may hold an earlier run's blocks: they are the baseline. */
        if ((r = verify_report(&w, NULL)) < 0) {
                fprintf(stderr, "crash-writer: reading the namespace failed: %s\n", strerror(-r));
                return 1;
        }
        w.checked = 0;
        for (unsigned b = 0; b < BLOCKS; b++)
                w.issued[b] = w.acked[b];
        printf("ready lba %u seed %u\n", w.lbs, seed);
        fflush(stdout);

        while (w.errors == 0 && vmm_stdin_lines(in, lines) == 0) {
                for (guint l = 0; l < lines->len && w.errors == 0; l++)
                        command(&w, lines->pdata[l]);
                g_ptr_array_set_size(lines, 0);
                if (w.errors)
                        break;
                r = write_round(&w);
                if (r == 0 && w.errors == 0)
                        continue;
                if (r == 0)
                        break;
                /* The device went away under us: a trial. */
                if (trial(&w) < 0)
                        break;
        }
        /* The end: let what is in flight complete, then check without a kill. */
        while (w.errors == 0 && w.inflight > 0) {
                NvmeCqe e;

                if (nvme_drv_reap(&w.v.d, 1, &e, w.v.d.timeout_ms) < 0) {
                        w.errors++;
                        break;
                }
                complete(&w, &e);
        }
        /* Nothing was killed since the last check: every acknowledged write reads back. */
        if (w.errors == 0) {
                unsigned long stale = w.stale;

                if (verify_report(&w, NULL) < 0 || w.stale != stale) {
                        fprintf(stderr, "crash-writer: the final check (no kill) found stale blocks\n");
                        w.errors++;
                }
        }
        printf("ok %lu %lu %lu %lu %lu %lu %lu\n", w.trials, w.checked, w.lost, w.torn, w.stale, w.writes,
               w.flushes);
        fflush(stdout);
        writer_disconnect(&w);
        g_free(w.moved_to);
        g_rand_free(w.rng);
        return w.errors || w.lost || w.torn ? 1 : 0;
}
