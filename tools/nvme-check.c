/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * nvme-check: act as a VM's NVMe driver against a vfio-user NVMe device and
 * prove it does verified I/O.  It connects to the device socket as the VMM
 * (guest RAM in a memfd, MSI-X eventfds), brings the controller up the way
 * Linux's nvme driver does, writes seeded patterns spread over the
 * namespace (some with FUA), flushes, reads everything back and compares,
 * and checks Write Zeroes.  Exit status 0 only if every byte matched.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvme-srv.h"

#define RAM_GPA   0x100000000ull
#define RAM_SIZE  (64ull << 20)
#define CHUNK     (128u << 10)

static uint64_t mix(uint64_t x) {
        x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
        return x ^ (x >> 33);
}

static void fill(uint8_t *p, size_t len, uint64_t seed) {
        for (size_t i = 0; i < len; i += 8) {
                uint64_t v = mix(seed + i);
                memcpy(p + i, &v, 8);
        }
}

static void trim(char *dst, const uint8_t *src, size_t len) {
        memcpy(dst, src, len);
        dst[len] = 0;
        for (size_t i = len; i > 0 && dst[i - 1] == ' '; i--)
                dst[i - 1] = 0;
}

static int fail(const char *what, int r) {
        fprintf(stderr, "nvme-check: %s failed: %s\n", what,
                r < 0 ? strerror(-r) : "the device returned an NVMe error status");
        if (r > 0)
                fprintf(stderr, "nvme-check: status 0x%x (SCT %u, SC 0x%02x)\n", r, (r >> 8) & 7, r & 0xff);
        if (r == -ECONNRESET || r == -EPIPE)
                fprintf(stderr, "nvme-check: the device closed its socket: was its worker stopped or did it crash (vfuctl show)?\n");
        return 1;
}

int main(int argc, char **argv) {
        const char *sock = NULL;
        unsigned mib = 16, nsid = 1;
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "mib", required_argument, NULL, 'm' },
                { "nsid", required_argument, NULL, 'n' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        for (int c; (c = getopt_long(argc, argv, "s:m:n:h", opts, NULL)) >= 0;) {
                switch (c) {
                case 's': sock = optarg; break;
                case 'm': mib = (unsigned) strtoul(optarg, NULL, 0); break;
                case 'n': nsid = (unsigned) strtoul(optarg, NULL, 0); break;
                default:
                        printf("usage: nvme-check --socket PATH [--mib N] [--nsid N]\n");
                        return c == 'h' ? 0 : 2;
                }
        }
        if (!sock || mib == 0 || mib > 1024 || nsid == 0) {
                fprintf(stderr, "nvme-check: --socket PATH is required; --mib 1..1024, --nsid ≥ 1\n");
                return 2;
        }

        NvmeVmm v;
        int r = nvme_vmm_connect(&v, sock, RAM_GPA, RAM_SIZE, 2);
        if (r < 0) {
                fprintf(stderr, "nvme-check: cannot attach to %s as a VMM: %s\n", sock, strerror(-r));
                fprintf(stderr, "nvme-check: is the device listening (vfuctl show) and not in use by a VM?\n");
                return 1;
        }
        NvmeDrv *d = &v.d;
        uint64_t id = nvme_drv_alloc(d, 4096, 4096);
        uint64_t wbuf = nvme_drv_alloc(d, CHUNK, 4096), rbuf = nvme_drv_alloc(d, CHUNK, 4096);
        uint8_t *idp = nvme_drv_ptr(d, id), *w = nvme_drv_ptr(d, wbuf), *rd = nvme_drv_ptr(d, rbuf);

        if ((r = nvme_drv_enable(d, 32)) != 0)
                return fail("controller enable (CC.EN=1, CSTS.RDY)", r);
        if ((r = nvme_drv_identify(d, 1, 0, id)) != 0)
                return fail("Identify Controller", r);
        char sn[21], mn[41], fr[9];
        trim(sn, idp + 4, 20);
        trim(mn, idp + 24, 40);
        trim(fr, idp + 64, 8);
        uint32_t nn;
        memcpy(&nn, idp + 516, 4);
        printf("controller: %s, serial %s, firmware %s, %u namespace slot(s)\n", mn, sn, fr, nn);

        if ((r = nvme_drv_identify(d, 0, nsid, id)) != 0)
                return fail("Identify Namespace", r);
        uint64_t nsze;
        memcpy(&nsze, idp, 8);
        uint8_t lbads = idp[128 + 4 * (idp[26] & 0xf) + 2];
        uint32_t bs = 1u << lbads;
        if (nsze == 0 || lbads < 9 || lbads > 12) {
                fprintf(stderr, "nvme-check: namespace %u is not active or has an unexpected format\n", nsid);
                return 1;
        }
        printf("namespace %u: %" PRIu64 " blocks of %u bytes (%" PRIu64 " MiB)\n", nsid, nsze, bs,
               nsze * bs >> 20);

        if ((r = nvme_drv_set_features(d, 0x07, 0, NULL)) != 0 ||
            (r = nvme_drv_dbbuf_config(d)) != 0 ||
            (r = nvme_drv_create_io_queues(d, 1, 64, 1)) != 0)
                return fail("I/O queue setup", r);

        uint64_t chunks = (uint64_t) mib * (1 << 20) / CHUNK, blocks = CHUNK / bs;
        if (chunks * blocks > nsze)
                chunks = nsze / blocks;
        uint64_t stride = nsze / blocks / chunks * blocks;      /* spread over the namespace */
        uint64_t seed = mix((uint64_t) getpid());
        for (uint64_t i = 0; i < chunks; i++) {
                fill(w, CHUNK, seed + i * CHUNK);
                if ((r = nvme_drv_rw(d, 1, true, nsid, i * stride, (uint32_t) blocks, bs, wbuf, i % 8 == 0)) != 0)
                        return fail("Write", r);
        }
        NvmeSqe fl = { .opcode = NVME_CMD_FLUSH, .nsid = nsid };
        if ((r = nvme_drv_cmd(d, 1, &fl, NULL)) != 0)
                return fail("Flush", r);
        printf("wrote %" PRIu64 " KiB in %" PRIu64 " commands spread over the namespace (FUA on 1 in 8), flushed\n",
               chunks * CHUNK >> 10, chunks);

        uint64_t bad = 0;
        for (uint64_t i = 0; i < chunks; i++) {
                memset(rd, 0xa5, CHUNK);
                if ((r = nvme_drv_rw(d, 1, false, nsid, i * stride, (uint32_t) blocks, bs, rbuf, false)) != 0)
                        return fail("Read", r);
                fill(w, CHUNK, seed + i * CHUNK);
                for (uint64_t b = 0; b < blocks; b++)
                        bad += memcmp(w + b * bs, rd + b * bs, bs) != 0;
        }
        printf("read back %" PRIu64 " blocks: %" PRIu64 " mismatched\n", chunks * blocks, bad);
        if (bad)
                return 1;

        NvmeSqe wz = { .opcode = NVME_CMD_WRITE_ZEROES, .nsid = nsid, .cdw12 = (uint32_t) blocks - 1 };
        if ((r = nvme_drv_cmd(d, 1, &wz, NULL)) != 0)
                return fail("Write Zeroes", r);
        if ((r = nvme_drv_rw(d, 1, false, nsid, 0, (uint32_t) blocks, bs, rbuf, false)) != 0)
                return fail("Read", r);
        for (size_t i = 0; i < CHUNK; i++)
                if (rd[i]) {
                        fprintf(stderr, "nvme-check: Write Zeroes left data at byte %zu\n", i);
                        return 1;
                }
        printf("write zeroes over %u KiB: reads back as zeroes\n", CHUNK >> 10);

        nvme_drv_shutdown(d);
        nvme_vmm_disconnect(&v);
        printf("nvme-check: OK — every block read back as written\n");
        return 0;
}
