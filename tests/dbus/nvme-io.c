/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nvme-io SOCKET: a VMM doing verified NVMe I/O against a device that
 * vfud-worker serves.  It connects as QEMU would (our vfio-user client,
 * guest RAM in a memfd), brings the controller up like Linux's driver,
 * creates an I/O queue pair, then loops: write a 4 KiB block whose bytes
 * encode (block, generation), read it back, compare.  Every block written
 * once is also re-read later and must still hold its last generation.
 *
 * Prints "ready" after the first verified round trip, "ops N" every 200
 * I/Os, and "ok N ERRORS" when its stdin closes.  Exit status 0 when every
 * command succeeded and every byte matched.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-srv.h"

#define GPA 0x100000000ull
#define RAM (16ull << 20)
#define IO 4096u
#define BLOCKS 1024u            /* 4 MiB of the namespace */

static void fill(uint8_t *p, uint64_t block, uint32_t gen) {
        for (unsigned i = 0; i < IO; i += 16) {
                uint64_t a = block ^ 0x5646550000000000ull, b = (uint64_t) gen << 32 | i;

                memcpy(p + i, &a, 8);
                memcpy(p + i + 8, &b, 8);
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

int main(int argc, char **argv) {
        NvmeVmm v;
        NvmeDrv *d;
        uint64_t wbuf, rbuf, idbuf;
        g_autofree uint32_t *gen = g_new0(uint32_t, BLOCKS);
        unsigned long ops = 0, errors = 0, next_report = 200;
        unsigned lbs, nlb;
        bool ready = false;
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: nvme-io SOCKET\n");
                return 2;
        }
        r = nvme_vmm_connect(&v, argv[1], GPA, RAM, 2);
        if (r < 0) {
                fprintf(stderr, "nvme-io: cannot connect to %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        d = &v.d;
        r = nvme_drv_enable(d, 32);
        if (r == 0)
                r = nvme_drv_create_io_queues(d, 1, 64, 1);
        idbuf = nvme_drv_alloc(d, 4096, 4096);
        wbuf = nvme_drv_alloc(d, IO, 4096);
        rbuf = nvme_drv_alloc(d, IO, 4096);
        lbs = r == 0 ? lba_size(d, idbuf) : 0;
        if (r != 0 || lbs == 0) {
                fprintf(stderr, "nvme-io: controller bring-up failed (%d, LBA size %u)\n", r, lbs);
                return 1;
        }
        nlb = IO / lbs;

        for (uint64_t i = 0;; i++) {
                struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
                uint64_t block = (i * 7919) % BLOCKS;
                uint8_t expect[IO];
                int sw = 0, sr;

                if (poll(&p, 1, 0) > 0) {
                        char c[64];

                        if (read(STDIN_FILENO, c, sizeof(c)) <= 0)
                                break;
                }
                /* Odd rounds only re-read: a block must keep what was last written to it. */
                if (i % 2 == 0 || gen[block] == 0) {
                        gen[block]++;
                        fill(nvme_drv_ptr(d, wbuf), block, gen[block]);
                        sw = nvme_drv_rw(d, 1, true, 1, block * nlb, nlb, lbs, wbuf, false);
                        ops++;
                }
                memset(nvme_drv_ptr(d, rbuf), 0, IO);
                sr = nvme_drv_rw(d, 1, false, 1, block * nlb, nlb, lbs, rbuf, false);
                ops++;
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
