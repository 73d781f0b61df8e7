/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nvme-io [--migratable | --null] SOCKET: a VMM doing verified NVMe I/O against a
 * device that vfud-worker serves.  It connects as QEMU would (our vfio-user
 * client, guest RAM in a memfd), brings the controller up like Linux's
 * driver, creates an I/O queue pair, then loops: write a 4 KiB block whose
 * bytes encode (block, generation), read it back, compare.  Every block
 * written once is also re-read later and must still hold its last generation.
 *
 * --migratable: a VMM that migrates (it asks for the MIGRATION feature, as
 * such a VMM does, unlike QEMU 11), taking commands on stdin, one per line;
 * each first queues writes it does not wait for, so they are in flight as
 * the device stops:
 *   migrate SOCKET  live-migrate to the device listening on SOCKET (the same
 *                   guest RAM, the storage shared): save the state here
 *                   (PRE_COPY, STOP_COPY), load it there (RESUMING), run
 *                   there, stop here, go on there; prints "migrated BYTES"
 *   corrupt SOCKET  the same with one byte of the stream flipped: the
 *                   destination must refuse it; resumes here, "refused"
 *   cancel          save the state, then resume here; "cancelled"
 * The writes in flight are verified after each.
 *
 * --null: the device's namespace is a null backend: writes must complete,
 * and every read must return zeroes whatever was written.
 *
 * Prints "ready" after the first verified round trip, "ops N" every 200
 * I/Os, and "ok N ERRORS" when its stdin closes.  Exit status 0 when every
 * command succeeded and every byte matched.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-srv.h"
#include "vmm-mig.h"

#define GPA 0x100000000ull
#define RAM (16ull << 20)
#define IO 4096u
#define BLOCKS 1024u            /* 4 MiB of the namespace */
#define INFLIGHT 4u             /* the last blocks: written around migrations */
#define LOOP_BLOCKS (BLOCKS - INFLIGHT)

static void fill(uint8_t *p, uint64_t block, uint32_t gen) {
        for (unsigned i = 0; i < IO; i += 16) {
                uint64_t a = block ^ 0x5646550000000000ull, b = (uint64_t) gen << 32 | i;

                memcpy(p + i, &a, 8);
                memcpy(p + i + 8, &b, 8);
        }
}

/*
 * A read or write as Linux's nvme driver sends it: a command that fails
 * without Do Not Retry (Namespace Not Ready while a network backend waits
 * for its server, say) is sent again, up to nvme_max_retries (5) times.
 */
static int rw_as_linux(NvmeDrv *d, bool write, uint64_t slba, uint32_t nlb, uint32_t lbs, uint64_t gpa) {
        for (int tries = 0;; tries++) {
                int r = nvme_drv_rw(d, 1, write, 1, slba, nlb, lbs, gpa, false);

                if (r <= 0 || (r & NVME_DNR) || tries == 5)
                        return r;
        }
}

static unsigned lba_size(NvmeDrv *d, uint64_t buf) {
        const uint8_t *id;
        unsigned flbas, lbads;

        if (nvme_drv_identify(d, 0x00, 1, buf) != 0)
                return 0;
        id = nvme_drv_ptr(d, buf);
        flbas = id[26] & 0x0f;
        lbads = id[128 + 4 * flbas + 2];
        return lbads >= 9 && lbads <= 12 ? 1u << lbads : 0;
}

/* ---- migration, as a VMM that migrates does it ---- */

/* Writes of new generations to the reserved blocks, not waited for. */
static void queue_inflight(NvmeDrv *d, uint64_t fbuf, unsigned nlb, uint32_t *gen) {
        for (unsigned i = 0; i < INFLIGHT; i++) {
                uint64_t block = LOOP_BLOCKS + i, slba = block * nlb;
                NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw10 = (uint32_t) slba,
                              .cdw11 = (uint32_t) (slba >> 32), .cdw12 = nlb - 1 };

                gen[block]++;
                fill(nvme_drv_ptr(d, fbuf + (uint64_t) i * IO), block, gen[block]);
                nvme_drv_build_prps(d, &c, fbuf + (uint64_t) i * IO, IO);
                nvme_drv_queue(d, 1, &c);
        }
        nvme_drv_ring(d, 1);
}

/* Their completions (posted before the device stopped) and their data.  Errors counted. */
static unsigned check_inflight(NvmeDrv *d, unsigned nlb, unsigned lbs, uint64_t rbuf, const uint32_t *gen) {
        unsigned errors = 0;
        uint8_t expect[IO];
        NvmeCqe e;

        for (unsigned i = 0; i < INFLIGHT; i++)
                if (nvme_drv_reap(d, 1, &e, 10000) != 0 || nvme_drv_status(&e) != 0) {
                        fprintf(stderr, "nvme-io: a write in flight across the migration did not complete\n");
                        errors++;
                }
        for (unsigned i = 0; i < INFLIGHT; i++) {
                uint64_t block = LOOP_BLOCKS + i;

                memset(nvme_drv_ptr(d, rbuf), 0, IO);
                fill(expect, block, gen[block]);
                if (rw_as_linux(d, false, block * nlb, nlb, lbs, rbuf) != 0 ||
                    memcmp(expect, nvme_drv_ptr(d, rbuf), IO) != 0) {
                        fprintf(stderr, "nvme-io: block %" G_GUINT64_FORMAT " written in flight reads back wrong\n", block);
                        errors++;
                }
        }
        return errors;
}

/* PRE_COPY (the device keeps running), then STOP_COPY and the whole stream. */
static GByteArray *save_state(VuClient *c) {
        if (vmm_mig_pre_copy(c) < 0)
                return NULL;
        g_usleep(300 * 1000);   /* long enough for a manager to see the transfer */
        return vmm_mig_stop_copy(c);
}

/* A new connection to the controller: memory space and bus master on, MSI-X. */
static int attach(VuClient *c, int *irq, void *opaque) {
        NvmeVmm *v = opaque;
        uint16_t cmd = 0x6;
        int r = vu_client_region_write(c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false);

        return r < 0 ? r : vu_client_enable_msix(c, v->nvec, irq);
}

/* One stdin command.  Returns the errors it found; -1 when the VMM cannot go on. */
static int command(NvmeVmm *v, const char *line, uint64_t fbuf, uint64_t rbuf, unsigned nlb, unsigned lbs,
                   uint32_t *gen) {
        NvmeDrv *d = &v->d;
        g_auto(GStrv) w = g_strsplit(line, " ", 2);
        g_autoptr(GByteArray) st = NULL;
        bool corrupt = strcmp(w[0], "corrupt") == 0;
        VuClient *c2 = NULL;
        int irq2[128], r;

        if (strcmp(w[0], "migrate") != 0 && !corrupt && strcmp(w[0], "cancel") != 0) {
                fprintf(stderr, "nvme-io: unknown command '%s'\n", line);
                return 1;
        }
        queue_inflight(d, fbuf, nlb, gen);
        st = save_state(v->c);
        if (!st) {
                fprintf(stderr, "nvme-io: saving the device state failed\n");
                return -1;
        }
        if (corrupt && st->len > 64)
                st->data[st->len / 2] ^= 0x55;
        memset(irq2, -1, sizeof(irq2));
        r = strcmp(w[0], "cancel") == 0 ? -ECANCELED : !w[1] ? -EINVAL :
            vmm_mig_load(w[1], &v->ram, st, attach, v, irq2, &c2);
        if (r < 0) {
                for (unsigned i = 0; i < G_N_ELEMENTS(irq2); i++)
                        if (irq2[i] >= 0)
                                close(irq2[i]);
                /* Not handed over: the device runs here again. */
                if (vmm_mig_set(v->c, VU_MIG_RUNNING) < 0) {
                        fprintf(stderr, "nvme-io: cannot resume the source\n");
                        return -1;
                }
                printf("%s\n", r == -ECANCELED ? "cancelled" : "refused");
                fflush(stdout);
                return (int) check_inflight(d, nlb, lbs, rbuf, gen) + (corrupt || r == -ECANCELED ? 0 : 1);
        }
        if (vmm_mig_set(v->c, VU_MIG_STOP) < 0)
                fprintf(stderr, "nvme-io: the source did not stop (ignored: it is left behind)\n");
        vu_client_free(v->c);
        for (unsigned i = 0; i < v->nvec; i++) {
                close(v->irq_fds[i]);
                v->irq_fds[i] = irq2[i];
        }
        v->c = c2;
        printf("migrated %u\n", st->len);
        fflush(stdout);
        return (int) check_inflight(d, nlb, lbs, rbuf, gen);
}

int main(int argc, char **argv) {
        NvmeVmm v;
        NvmeDrv *d;
        uint64_t wbuf, rbuf, idbuf;
        g_autofree uint32_t *gen = g_new0(uint32_t, BLOCKS);
        unsigned long ops = 0, errors = 0, next_report = 200;
        unsigned lbs, nlb;
        bool ready = false, migratable = argc == 3 && strcmp(argv[1], "--migratable") == 0;
        bool null = argc == 3 && strcmp(argv[1], "--null") == 0;
        const char *sock = argv[argc - 1];
        g_autoptr(GString) in = g_string_new(NULL);
        g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
        uint64_t fbuf;
        int r, k = 0;

        if (argc != 2 && !migratable && !null) {
                fprintf(stderr, "usage: nvme-io [--migratable | --null] SOCKET\n");
                return 2;
        }
        r = nvme_vmm_connect(&v, sock, GPA, RAM, 2);
        if (r == 0 && migratable)
                r = vmm_mig_probe(v.c);
        if (r < 0) {
                fprintf(stderr, "nvme-io: cannot connect to %s: %s\n", sock, strerror(-r));
                return 1;
        }
        d = &v.d;
        d->timeout_ms = 30000;          /* Linux's io_timeout: above a network backend's 10 s wait */
        r = nvme_drv_enable(d, 32);
        if (r == 0)
                r = nvme_drv_create_io_queues(d, 1, 64, 1);
        idbuf = nvme_drv_alloc(d, 4096, 4096);
        wbuf = nvme_drv_alloc(d, IO, 4096);
        rbuf = nvme_drv_alloc(d, IO, 4096);
        fbuf = nvme_drv_alloc(d, (uint64_t) IO * INFLIGHT, 4096);
        lbs = r == 0 ? lba_size(d, idbuf) : 0;
        if (r != 0 || lbs == 0) {
                fprintf(stderr, "nvme-io: controller bring-up failed (%d, LBA size %u)\n", r, lbs);
                return 1;
        }
        nlb = IO / lbs;

        for (uint64_t i = 0;; i++) {
                uint64_t block = (i * 7919) % LOOP_BLOCKS;
                uint8_t expect[IO];
                int sw = 0, sr;

                if (vmm_stdin_lines(in, lines) < 0)
                        break;
                for (guint l = 0; migratable && k >= 0 && l < lines->len; l++) {
                        k = command(&v, lines->pdata[l], fbuf, rbuf, nlb, lbs, gen);
                        errors += k > 0 ? (unsigned long) k : k < 0 ? 1ul : 0ul;
                }
                g_ptr_array_set_size(lines, 0);
                if (k < 0)
                        break;
                /* Odd rounds only re-read: a block must keep what was last written to it. */
                if (i % 2 == 0 || gen[block] == 0) {
                        gen[block]++;
                        fill(nvme_drv_ptr(d, wbuf), block, gen[block]);
                        sw = rw_as_linux(d, true, block * nlb, nlb, lbs, wbuf);
                        ops++;
                }
                memset(nvme_drv_ptr(d, rbuf), null ? 0x5a : 0, IO);
                sr = rw_as_linux(d, false, block * nlb, nlb, lbs, rbuf);
                ops++;
                if (null)
                        memset(expect, 0, IO);
                else
                        fill(expect, block, gen[block]);
                if (sw != 0 || sr != 0 || memcmp(expect, nvme_drv_ptr(d, rbuf), IO) != 0) {
                        errors++;
                        fprintf(stderr, "nvme-io: block %" G_GUINT64_FORMAT " generation %u: write %d read %d %s\n",
                                block, gen[block], sw, sr,
                                sw || sr ? "" : "data mismatch");
                        if (sw < 0 || sr < 0)
                                break;
                }
                if (!ready) {
                        printf("ready lba %u\n", lbs);
                        fflush(stdout);
                        ready = true;
                }
                if (ops >= next_report) {
                        printf("ops %lu\n", ops);
                        fflush(stdout);
                        next_report += 200;
                }
        }
        printf("ok %lu %lu\n", ops, errors);
        fflush(stdout);
        nvme_vmm_disconnect(&v);
        return errors ? 1 : 0;
}
