/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Protocol suite: our vfio-user client acts as QEMU + the Linux nvme driver
 * against the real server on a real socket, with real backing files:
 * the probe sequence of linux-driver-probe.md §1 replayed exactly, then
 * data-verified I/O on several namespaces and queues, bad PRPs, resets,
 * PCI bus mastering turned off and on under I/O, a disconnect in the
 * middle of I/O, and an idle controller that stays idle after many clients.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "nvme-srv.h"

#define GPA 0x100000000ull
#define RAM (64ull << 20)
#define QUEUES 4
#define NVEC (QUEUES + 1)

typedef struct Fx {
        char *dir, *sock;
        NvmeSrv srv;
        NvmeVmm vmm;
        NvmeDrv *d;
        uint64_t buf, buf2;
        unsigned iothreads, poll_us;
        unsigned nvec;
} Fx;

/* A case's controller: I/O threads and the longest polling window (prestate; default 1 and 20 µs). */
typedef struct FxParams {
        unsigned iothreads, poll_us;
        bool msi;               /* MSI with MSI_NVEC messages instead of MSI-X */
} FxParams;

#define MSI_NVEC 8              /* QUEUES + 1 rounded up to a power of two */

static char *path_in(Fx *f, const char *n) { return g_build_filename(f->dir, n, NULL); }

static void add_ns(Fx *f, uint32_t nsid, const char *file, uint64_t size, uint32_t bs) {
        g_autofree char *p = path_in(f, file);
        BlkOpenOptions o = { .path = p, .fd = -1, .size = size };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(nvme_ctrl_ns_add(f->srv.c, nsid, b, bs, false), 0);
}

static void connect_vmm(Fx *f) {
        assert_int_equal(nvme_vmm_connect(&f->vmm, f->sock, GPA, RAM, f->nvec), 0);
        f->d = &f->vmm.d;
        f->buf = nvme_drv_alloc(f->d, 2 << 20, 4096);
        f->buf2 = nvme_drv_alloc(f->d, 2 << 20, 4096);
}

static int setup(void **state) {
        Fx *f = g_new0(Fx, 1);
        const FxParams *fp = *state;
        f->iothreads = fp ? fp->iothreads : 1;
        f->poll_us = fp ? fp->poll_us : 20;
        f->nvec = fp && fp->msi ? MSI_NVEC : NVEC;
        f->dir = g_build_filename(BUILDDIR, "tests-nvme-proto-XXXXXX", NULL);
        assert_non_null(g_mkdtemp(f->dir));
        f->sock = path_in(f, "nvme.sock");
        NvmeCtrlConfig cfg = { .name = "proto0", .serial = "VFU-PROTO-1", .max_ioqs = QUEUES,
                               .msix_nvec = f->nvec, .cntlid = 1, .poll_us = f->poll_us,
                               .iothreads = f->iothreads, .msi = fp && fp->msi };
        memset(cfg.host_uuid, 7, 16);
        assert_int_equal(nvme_srv_start(&f->srv, &cfg, f->sock), 0);
        add_ns(f, 1, "ns1.img", 32 << 20, 512);
        add_ns(f, 2, "ns2.img", 16 << 20, 4096);
        connect_vmm(f);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        nvme_vmm_disconnect(&f->vmm);
        nvme_srv_stop(&f->srv);
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        g_free(f->sock);
        g_free(f->dir);
        g_free(f);
        return 0;
}

static uint8_t *ptr(Fx *f, uint64_t gpa) { return nvme_drv_ptr(f->d, gpa); }

static void fill(uint8_t *p, size_t n, unsigned seed) {
        uint32_t x = seed * 2654435761u + 1;
        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                p[i] = (uint8_t) x;
        }
}

/* Linux's probe, in order (linux-driver-probe.md §1), as the register trace shows it. */
static void probe_like_linux(Fx *f) {
        NvmeDrv *d = f->d;
        d->n_trace = 0;
        assert_int_equal(nvme_drv_enable(d, 32), 0);
        /* The trace: CSTS, CAP lo, CAP hi, CMBSZ, VS, CC, CC←EN=0, CSTS…, AQA, ASQ lo/hi, ACQ lo/hi,
         * CC←config (EN=0), CAP lo/hi, CC←EN=1, CSTS… */
        static const uint32_t want[] = {
                0x1c, 0x00, 0x04, 0x3c, 0x08, 0x14, 0x80000014, 0x1c,
                0x80000024, 0x80000028, 0x8000002c, 0x80000030, 0x80000034,
                0x80000014, 0x00, 0x04, 0x80000014, 0x1c,
        };
        unsigned j = 0;
        for (unsigned i = 0; i < d->n_trace && j < G_N_ELEMENTS(want); i++) {
                if (d->trace[i] == 0x1c && j > 0 && want[j - 1] == 0x1c && want[j] != 0x1c)
                        continue;       /* CSTS polled more than once */
                assert_int_equal(d->trace[i], want[j]);
                j++;
        }
        assert_int_equal(j, G_N_ELEMENTS(want));
        assert_int_equal((d->cap >> 24) & 0xff, 20);

        /* Identify controller, set features 7, queues, AEC + AER, namespace scan. */
        uint8_t *id = ptr(f, f->buf);
        assert_int_equal(nvme_drv_identify(d, 1, 0, f->buf), 0);
        assert_memory_equal(id + 4, "VFU-PROTO-1         ", 20);
        assert_int_equal(id[512], 0x66);
        uint16_t oacs = id[256] | id[257] << 8;
        uint32_t dw0 = 0;
        assert_int_equal(nvme_drv_set_features(d, 0x07, 1 | 1 << 16, &dw0), 0);
        assert_int_equal(dw0, 1 | 1 << 16);
        if (oacs & (1u << 8))
                assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 256, 1), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 2, 256, 2), 0);
        assert_int_equal(nvme_drv_set_features(d, 0x0b, 1u << 8, NULL), 0);
        NvmeSqe aer = { .opcode = NVME_ADM_ASYNC_EVENT };
        nvme_drv_submit(d, 0, &aer);
        assert_int_equal(nvme_drv_identify(d, 2, 0, f->buf), 0);
        uint32_t list[4];
        memcpy(list, id, sizeof(list));
        assert_int_equal(list[0], 1);
        assert_int_equal(list[1], 2);
        assert_int_equal(list[2], 0);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(nvme_drv_identify(d, 3, list[i], f->buf), 0);
                assert_int_equal(id[0], 1);             /* an EUI-64 descriptor first */
                assert_int_equal(nvme_drv_identify(d, 0, list[i], f->buf), 0);
        }
}

static void test_probe_replay(void **state) {
        Fx *f = *state;
        probe_like_linux(f);
        /* Config space: PM, PCIe (FLR), MSI-X in BAR4 with ≥ queues+1 vectors. */
        uint8_t cfg[256];
        assert_int_equal(vu_client_region_read(f->vmm.c, VU_PCI_CONFIG_REGION, 0, cfg, 256), 0);
        bool pm = false, pcie = false, msix = false;
        for (unsigned p = cfg[0x34], n = 0; p && n < 48; p = cfg[p + 1], n++) {
                pm |= cfg[p] == 0x01;
                pcie |= cfg[p] == 0x10;
                if (cfg[p] == 0x11) {
                        msix = true;
                        assert_int_equal((cfg[p + 2] | cfg[p + 3] << 8) & 0x7ff, NVEC - 1);
                        assert_int_equal(cfg[p + 4] & 7, 4);
                }
        }
        assert_true(pm && pcie && msix);
        struct vu_region_info ri;
        assert_int_equal(vu_client_region_info(f->vmm.c, 0, &ri, NULL, NULL, NULL), 0);
        assert_true(ri.size >= 16384);
}

static void test_verified_io(void **state) {
        Fx *f = *state;
        probe_like_linux(f);
        NvmeDrv *d = f->d;
        enum { N = 400, QD = 32, MAXB = 64 };
        typedef struct { uint32_t nsid, bs, nlb; uint64_t slba; uint64_t gpa; } Io;
        Io *ios = g_new0(Io, N);
        GRand *rnd = g_rand_new_with_seed(42);
        uint64_t area = nvme_drv_alloc(d, (uint64_t) QD * MAXB * 4096, 4096);

        /* Non-overlapping writes spread over both namespaces and both queues, QD 32. */
        for (unsigned i = 0; i < N; i++) {
                ios[i].nsid = 1 + (i % 2);
                ios[i].bs = ios[i].nsid == 1 ? 512 : 4096;
                uint64_t slots = (ios[i].nsid == 1 ? (32u << 20) / 512 : (16u << 20) / 4096) / (N / 2);
                ios[i].nlb = 1 + g_rand_int_range(rnd, 0, MIN((int) slots, ios[i].nsid == 1 ? 8 * MAXB : MAXB));
                ios[i].slba = (i / 2) * slots;
        }
        unsigned sent = 0, done = 0;
        uint16_t cid_of[N];
        uint64_t slot_gpa[QD];
        int slot_io[QD];
        for (unsigned s = 0; s < QD; s++) {
                slot_gpa[s] = area + (uint64_t) s * MAXB * 4096;
                slot_io[s] = -1;
        }
        while (done < N) {
                for (unsigned s = 0; s < QD && sent < N; s++) {
                        if (slot_io[s] >= 0)
                                continue;
                        Io *io = &ios[sent];
                        uint64_t len = (uint64_t) io->nlb * io->bs;
                        fill(ptr(f, slot_gpa[s]), len, sent);
                        NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = io->nsid, .cdw10 = (uint32_t) io->slba,
                                      .cdw12 = io->nlb - 1 };
                        nvme_drv_build_prps(d, &c, slot_gpa[s], len);
                        cid_of[sent] = nvme_drv_submit(d, 1 + sent % 2, &c);
                        slot_io[s] = (int) sent++;
                }
                NvmeCqe e;
                for (uint16_t q = 1; q <= 2; q++)
                        while (nvme_drv_poll(d, q, &e)) {
                                assert_int_equal(nvme_drv_status(&e), 0);
                                for (unsigned s = 0; s < QD; s++)
                                        if (slot_io[s] >= 0 && cid_of[slot_io[s]] == e.cid &&
                                            (unsigned) slot_io[s] % 2 == (unsigned) (q - 1)) {
                                                slot_io[s] = -1;
                                                done++;
                                                break;
                                        }
                        }
                if (sent == N && done < N)
                        vu_client_wait_irq(f->vmm.irq_fds[1], 5);
        }
        NvmeSqe fl = { .opcode = NVME_CMD_FLUSH, .nsid = 0xffffffff };
        assert_int_equal(nvme_drv_cmd(d, 1, &fl, NULL), 0);

        /* Read every extent back (other queue) and compare; and the files agree. */
        g_autofree char *p1 = path_in(f, "ns1.img"), *p2 = path_in(f, "ns2.img");
        int fd1 = open(p1, O_RDONLY), fd2 = open(p2, O_RDONLY);
        g_autofree uint8_t *want = g_malloc(MAXB * 4096 * 8), *disk = g_malloc(MAXB * 4096 * 8);
        for (unsigned i = 0; i < N; i++) {
                Io *io = &ios[i];
                uint64_t len = (uint64_t) io->nlb * io->bs;
                fill(want, len, i);
                memset(ptr(f, f->buf), 0, len);
                assert_int_equal(nvme_drv_rw(d, 2 - i % 2, false, io->nsid, io->slba, io->nlb, io->bs, f->buf, false), 0);
                assert_memory_equal(ptr(f, f->buf), want, len);
                assert_true(pread(io->nsid == 1 ? fd1 : fd2, disk, len, (off_t) (io->slba * io->bs)) == (ssize_t) len);
                assert_memory_equal(disk, want, len);
        }
        close(fd1);
        close(fd2);

        /* Write zeroes and deallocate, verified. */
        uint8_t zero[8192] = { 0 };
        NvmeSqe wz = { .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 1, .cdw10 = (uint32_t) ios[0].slba, .cdw12 = 0 };
        assert_int_equal(nvme_drv_cmd(d, 1, &wz, NULL), 0);
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, ios[0].slba, 1, 512, f->buf, false), 0);
        assert_memory_equal(ptr(f, f->buf), zero, 512);
        NvmeDsmRange r = { .nlb = 2, .slba = ios[1].slba };
        memcpy(ptr(f, f->buf2), &r, sizeof(r));
        NvmeSqe dsm = { .opcode = NVME_CMD_DSM, .nsid = 2, .prp1 = f->buf2, .cdw11 = 1u << 2 };
        assert_int_equal(nvme_drv_cmd(d, 2, &dsm, NULL), 0);
        assert_int_equal(nvme_drv_rw(d, 2, false, 2, ios[1].slba, 2, 4096, f->buf, false), 0);
        assert_memory_equal(ptr(f, f->buf), zero, 8192);

        NvmeStats st;
        nvme_ctrl_get_stats(f->srv.c, &st);
        print_message("verified I/O: %u writes + reads, %" G_GUINT64_FORMAT " trapped doorbell writes, %"
                      G_GUINT64_FORMAT " interrupts\n", N, st.doorbell_writes, st.irqs);
        /* The latency histograms, summed over the I/O threads: every command once, in its operation's. */
        assert_int_equal(st.errors, 0);
        assert_int_equal(st.lat.op[LAT_OP_READ].count, st.read_cmds);
        assert_int_equal(st.lat.op[LAT_OP_WRITE].count, st.write_cmds);
        assert_int_equal(st.lat.op[LAT_OP_OTHER].count, 2);            /* write zeroes, DSM */
        assert_int_equal(st.io_cmds, st.read_cmds + st.write_cmds + 2 + st.lat.op[LAT_OP_FLUSH].count);
        g_rand_free(rnd);
        g_free(ios);
}

static void test_bad_prps_and_commands(void **state) {
        Fx *f = *state;
        probe_like_linux(f);
        NvmeDrv *d = f->d;
        NvmeSqe c = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = 0x1000 };     /* below guest RAM */
        assert_int_equal(nvme_drv_cmd(d, 1, &c, NULL), NVME_SC_DATA_XFER_ERROR);
        c.prp1 = GPA + RAM;                                                     /* just past it */
        assert_int_equal(nvme_drv_cmd(d, 1, &c, NULL), NVME_SC_DATA_XFER_ERROR);
        c.prp1 = f->buf + 4000;
        c.prp2 = GPA + RAM + 4096;
        assert_int_equal(nvme_drv_cmd(d, 1, &c, NULL), NVME_SC_DATA_XFER_ERROR);
        c.cdw12 = 63;
        c.prp2 = GPA + RAM - 8;                                                 /* PRP list at the edge */
        assert_int_equal(nvme_drv_cmd(d, 1, &c, NULL), NVME_SC_DATA_XFER_ERROR);
        c.cdw12 = 0;
        c.nsid = 3;
        assert_int_equal(nvme_drv_cmd(d, 1, &c, NULL), NVME_SC_INVALID_NS);
        c.nsid = 1;
        c.cdw10 = (32u << 20) / 512;
        assert_int_equal(nvme_drv_cmd(d, 1, &c, NULL), NVME_SC_LBA_RANGE);
        c.opcode = 0x99;
        assert_int_equal(nvme_drv_cmd(d, 1, &c, NULL), NVME_SC_INVALID_OPCODE);
        /* The device survived: good I/O still works. */
        fill(ptr(f, f->buf), 4096, 1);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 0, 8, 512, f->buf, true), 0);
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 0, 8, 512, f->buf2, false), 0);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 4096);
}

static void submit_burst(Fx *f, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw10 = 4096 + i * 256, .cdw12 = 255 };
                nvme_drv_build_prps(f->d, &c, f->buf, 128 * 1024);
                nvme_drv_queue(f->d, 1, &c);
        }
        nvme_drv_ring(f->d, 1);
}

static void test_reset_mid_io(void **state) {
        Fx *f = *state;
        probe_like_linux(f);
        uint8_t want[4096];
        fill(ptr(f, f->buf), 128 * 1024, 5);
        memcpy(want, ptr(f, f->buf), sizeof(want));
        assert_int_equal(nvme_drv_rw(f->d, 1, true, 1, 0, 8, 512, f->buf, true), 0);

        /* DEVICE_RESET while writes are in flight. */
        submit_burst(f, 100);
        assert_int_equal(vu_client_reset(f->vmm.c), 0);
        assert_int_equal(nvme_drv_read32(f->d, NVME_REG_CSTS), 0);
        assert_int_equal(nvme_drv_read32(f->d, NVME_REG_CC), 0);
        /* MSI-X and bus mastering come back as the VMM re-enables them. */
        uint16_t cmd = 0x6;
        assert_int_equal(vu_client_region_write(f->vmm.c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false), 0);
        for (unsigned i = 0; i < NVEC; i++)
                close(f->vmm.irq_fds[i]);
        assert_int_equal(vu_client_enable_msix(f->vmm.c, NVEC, f->vmm.irq_fds), 0);
        f->d->alloc_next = f->buf2 + (2 << 20);
        probe_like_linux(f);
        assert_int_equal(nvme_drv_rw(f->d, 1, false, 1, 0, 8, 512, f->buf2, false), 0);
        assert_memory_equal(want, ptr(f, f->buf2), 4096);

        /* CC.EN = 0 mid-I/O, then FLR through the PCIe capability. */
        submit_burst(f, 100);
        assert_int_equal(nvme_drv_disable(f->d), 0);
        f->d->alloc_next = f->buf2 + (4 << 20);
        probe_like_linux(f);
        submit_burst(f, 50);
        uint8_t cfg[256];
        assert_int_equal(vu_client_region_read(f->vmm.c, VU_PCI_CONFIG_REGION, 0, cfg, 256), 0);
        unsigned pcie = 0;
        for (unsigned p = cfg[0x34], n = 0; p && n < 48; p = cfg[p + 1], n++)
                if (cfg[p] == 0x10)
                        pcie = p;
        assert_int_not_equal(pcie, 0);
        uint16_t devctl = (uint16_t) (cfg[pcie + 8] | cfg[pcie + 9] << 8) | 0x8000;
        assert_int_equal(vu_client_region_write(f->vmm.c, VU_PCI_CONFIG_REGION, pcie + 8, &devctl, 2, false), 0);
        assert_int_equal(nvme_drv_read32(f->d, NVME_REG_CSTS), 0);
        assert_string_equal(nvme_ctrl_state_string(f->srv.c), "disabled");
}

static void set_pci_command(Fx *f, uint16_t cmd) {
        assert_int_equal(vu_client_region_write(f->vmm.c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false), 0);
}

/* Interrupts signalled on the vectors of queues 0..2 since the last call. */
static unsigned take_irqs(Fx *f) {
        unsigned n = 0;
        for (unsigned v = 0; v < 3; v++)
                while (vu_client_wait_irq(f->vmm.irq_fds[v], 0) == 1)
                        n++;
        return n;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != v)
                        return false;
        return true;
}

/*
 * PCI Bus Master Enable clear: the controller issues no DMA.  Commands in
 * progress when it is cleared finish first; commands submitted while it is
 * clear are not fetched, nothing is written into guest memory and no
 * interrupt is sent until it is set again; then each command completes
 * exactly once.
 */
static void test_bus_master_gates_dma(void **state) {
        Fx *f = *state;
        NvmeDrv *d = f->d;
        NvmeCqe e;

        probe_like_linux(f);
        fill(ptr(f, f->buf), 128 * 1024, 11);
        /* What the read below finds: written and completed before (commands have no order among themselves). */
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 0, 8, 512, f->buf, true), 0);
        enum { BURST = 48 };
        submit_burst(f, BURST);
        set_pci_command(f, 0x2);                /* memory space only */
        unsigned before = nvme_drv_posted(d, 1);
        (void) take_irqs(f);

        /* While it is clear: a read into a marked buffer on queue 2, an Identify on the admin queue. */
        uint8_t *rbuf = ptr(f, f->buf2), *idbuf = ptr(f, f->buf2 + 8192);
        memset(rbuf, 0xa5, 4096);
        memset(idbuf, 0xa5, 4096);
        NvmeSqe rd = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = f->buf2, .cdw10 = 0, .cdw12 = 7 };
        uint16_t rd_cid = nvme_drv_submit(d, 2, &rd);
        NvmeSqe id = { .opcode = NVME_ADM_IDENTIFY, .prp1 = f->buf2 + 8192, .cdw10 = 1 };
        uint16_t id_cid = nvme_drv_submit(d, 0, &id);
        usleep(200 * 1000);
        assert_int_equal(nvme_drv_posted(d, 1), before);
        assert_int_equal(nvme_drv_posted(d, 2), 0);
        assert_int_equal(nvme_drv_posted(d, 0), 0);
        assert_true(all_bytes(rbuf, 4096, 0xa5));
        assert_true(all_bytes(idbuf, 4096, 0xa5));
        assert_int_equal(take_irqs(f), 0);
        print_message("bus mastering off: %u of %u writes had completed, nothing moved for 200 ms\n", before, BURST);

        /* Set again: everything completes, each command once. */
        set_pci_command(f, 0x6);
        /* The held read and Identify complete now, each with its interrupt (waited for
         * before reaping: a reap that finds its queue empty consumes the interrupt). */
        assert_int_equal(vu_client_wait_irq(f->vmm.irq_fds[d->q[2].vector], 10000), 1);
        assert_int_equal(vu_client_wait_irq(f->vmm.irq_fds[d->q[0].vector], 10000), 1);
        uint64_t seen = 0;
        for (unsigned i = 0; i < BURST; i++) {
                assert_int_equal(nvme_drv_reap(d, 1, &e, 10000), 0);
                assert_int_equal(nvme_drv_status(&e), 0);
                assert_true(e.cid < 64 && !(seen & (1ull << e.cid)));
                seen |= 1ull << e.cid;
        }
        assert_int_equal(nvme_drv_reap(d, 2, &e, 10000), 0);
        assert_int_equal(e.cid, rd_cid);
        assert_int_equal(nvme_drv_status(&e), 0);
        assert_memory_equal(rbuf, ptr(f, f->buf), 4096);
        assert_int_equal(nvme_drv_reap(d, 0, &e, 10000), 0);
        assert_int_equal(e.cid, id_cid);
        assert_int_equal(nvme_drv_status(&e), 0);
        assert_memory_equal(idbuf + 4, "VFU-PROTO-1         ", 20);
        assert_int_equal(nvme_drv_poll(d, 1, &e) + nvme_drv_poll(d, 2, &e) + nvme_drv_poll(d, 0, &e), 0);
}

static void test_disconnect_mid_io_and_reconnect(void **state) {
        Fx *f = *state;
        probe_like_linux(f);
        fill(ptr(f, f->buf), 128 * 1024, 6);
        submit_burst(f, 100);
        /* The VMM goes away with I/O in flight: maps dropped only after I/O finished. */
        nvme_vmm_disconnect(&f->vmm);
        usleep(50000);
        connect_vmm(f);
        probe_like_linux(f);
        fill(ptr(f, f->buf), 4096, 7);
        assert_int_equal(nvme_drv_rw(f->d, 2, true, 2, 3, 1, 4096, f->buf, false), 0);
        assert_int_equal(nvme_drv_rw(f->d, 1, false, 2, 3, 1, 4096, f->buf2, false), 0);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 4096);
}

static void test_namespace_hotplug(void **state) {
        Fx *f = *state;
        probe_like_linux(f);
        NvmeCqe e;
        add_ns(f, 3, "ns3.img", 4 << 20, 512);
        assert_int_equal(nvme_drv_reap(f->d, 0, &e, 10000), 0);       /* the AER posted by the probe */
        assert_int_equal(e.dw0, 0x040002);
        NvmeSqe log = { .opcode = NVME_ADM_GET_LOG_PAGE, .prp1 = f->buf, .cdw10 = 0x04 | 1023u << 16 };
        assert_int_equal(nvme_drv_cmd(f->d, 0, &log, NULL), 0);
        assert_int_equal(((uint32_t *) ptr(f, f->buf))[0], 3);
        fill(ptr(f, f->buf), 4096, 8);
        assert_int_equal(nvme_drv_rw(f->d, 1, true, 3, 10, 8, 512, f->buf, false), 0);
        assert_int_equal(nvme_drv_rw(f->d, 2, false, 3, 10, 8, 512, f->buf2, false), 0);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 4096);
}

/* A null namespace: 1 TiB with no file; reads return the pattern, writes are dropped, bounds hold. */
static void test_null_namespace(void **state) {
        Fx *f = *state;
        NvmeDrv *d = f->d;
        const uint64_t size = 1ull << 40;
        BlkOpenOptions o = { .fd = -1, .size = size, .null = true, .null_pattern = 0xa5 };
        BlkBackend *b = NULL;
        NvmeCqe e;

        probe_like_linux(f);
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(nvme_ctrl_ns_add(f->srv.c, 3, b, 4096, false), 0);
        assert_int_equal(nvme_drv_reap(d, 0, &e, 10000), 0);           /* namespace attribute changed */
        assert_int_equal(nvme_drv_identify(d, 0, 3, f->buf), 0);
        uint64_t nsze;
        memcpy(&nsze, ptr(f, f->buf), 8);
        assert_int_equal(nsze, size / 4096);

        /* Write data, read it back: the pattern, not the data, on two queues at depth. */
        const uint64_t last = size / 4096 - 1;
        fill(ptr(f, f->buf), 64 << 10, 3);
        assert_int_equal(nvme_drv_rw(d, 1, true, 3, last - 15, 16, 4096, f->buf, true), 0);
        enum { QD = 24 };
        for (unsigned q = 1; q <= 2; q++) {
                memset(ptr(f, f->buf2), 0, QD * 8192);
                for (unsigned i = 0; i < QD; i++) {
                        NvmeSqe rd = { .opcode = NVME_CMD_READ, .nsid = 3, .cdw12 = 1 };
                        uint64_t slba = (i * 7919ull) % (last - 1);
                        rd.cdw10 = (uint32_t) slba;
                        rd.cdw11 = (uint32_t) (slba >> 32);
                        nvme_drv_build_prps(d, &rd, f->buf2 + i * 8192, 8192);
                        nvme_drv_queue(d, q, &rd);
                }
                nvme_drv_ring(d, q);
                for (unsigned i = 0; i < QD; i++) {
                        assert_int_equal(nvme_drv_reap(d, q, &e, 10000), 0);
                        assert_int_equal(nvme_drv_status(&e), 0);
                }
                for (unsigned i = 0; i < QD * 8192; i++)
                        if (ptr(f, f->buf2)[i] != 0xa5)
                                fail_msg("byte %u of the reads on queue %u is %#x, not the pattern", i, q,
                                         ptr(f, f->buf2)[i]);
        }

        /* Flush, write zeroes and deallocate complete; past the end is an LBA range error. */
        NvmeSqe flush = { .opcode = NVME_CMD_FLUSH, .nsid = 3 };
        assert_int_equal(nvme_drv_cmd(d, 1, &flush, NULL), 0);
        NvmeSqe wz = { .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 3, .cdw10 = 0, .cdw12 = 1023 };
        assert_int_equal(nvme_drv_cmd(d, 1, &wz, NULL), 0);
        assert_int_equal(nvme_drv_rw(d, 2, false, 3, last, 2, 4096, f->buf, false), NVME_SC_LBA_RANGE);

        /* Namespace 1 (a file) still stores what it is given. */
        fill(ptr(f, f->buf), 4096, 9);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 8, 8, 512, f->buf, false), 0);
        assert_int_equal(nvme_drv_rw(d, 2, false, 1, 8, 8, 512, f->buf2, false), 0);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 4096);
}

/* CPU time (user + system, in clock ticks) of this process's thread named comm. */
/* CPU ticks of the controller's I/O threads ("nvme-io:NAME", or "nvme-ioN:NAME" with several), summed. */
static uint64_t io_threads_cpu_ticks(Fx *f) {
        g_autoptr(GDir) dir = g_dir_open("/proc/self/task", 0, NULL);
        const char *tid;
        uint64_t sum = 0;
        unsigned found = 0;

        assert_non_null(dir);
        while ((tid = g_dir_read_name(dir))) {
                g_autofree char *cpath = g_strdup_printf("/proc/self/task/%s/comm", tid);
                g_autofree char *spath = g_strdup_printf("/proc/self/task/%s/stat", tid);
                g_autofree char *name = NULL, *stat = NULL;
                unsigned long long ut, st;

                if (!g_file_get_contents(cpath, &name, NULL, NULL) || !g_str_has_prefix(name, "nvme-io") ||
                    !g_str_has_suffix(g_strchomp(name), ":proto0") || !g_file_get_contents(spath, &stat, NULL, NULL))
                        continue;
                /* After "pid (comm) ": state, then fields 4..13, then utime and stime. */
                const char *p = strrchr(stat, ')');
                assert_non_null(p);
                assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st), 2);
                sum += ut + st;
                found++;
        }
        assert_int_equal(found, f->iothreads);
        return sum;
}

/*
 * Several I/O threads, and SQs paired with CQs of other threads: CQ q runs
 * on thread (q - 1) % n and an SQ on its CQ's thread.  With three threads
 * and four queue pairs, SQ 3 is re-created on CQ 4 (thread 0) and SQ 4 on
 * CQ 3 (thread 2): both SQs change threads, their doorbells follow, and
 * every completion lands on the CQ it was created for.  Then all four SQs
 * write at once, data-verified by reading back on other queues.
 */
static void cross_paired_queues(Fx *f, bool shadow) {
        NvmeDrv *d = f->d;
        enum { ROUNDS = 24, PER_Q = 8, NLB = 4 };

        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_set_features(d, 0x07, 3 | 3 << 16, NULL), 0);
        if (shadow)
                assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        for (uint16_t q = 1; q <= 4; q++)
                assert_int_equal(nvme_drv_create_io_queues(d, q, 64, q), 0);
        for (uint16_t q = 3; q <= 4; q++) {
                NvmeSqe del = { .opcode = NVME_ADM_DELETE_SQ, .cdw10 = q };
                assert_int_equal(nvme_drv_cmd(d, 0, &del, NULL), 0);
        }
        /* A CQ that still has an SQ cannot go; one without can, and comes back. */
        NvmeSqe delcq = { .opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1 };
        assert_int_equal(nvme_drv_cmd(d, 0, &delcq, NULL), NVME_SC_INVALID_QUEUE_DELETION);
        for (uint16_t q = 3; q <= 4; q++) {
                NvmeSqe sq = { .opcode = NVME_ADM_CREATE_SQ, .prp1 = d->q[q].sq_gpa,
                               .cdw10 = q | (64u - 1) << 16, .cdw11 = 1 | (uint32_t) (7 - q) << 16 };
                d->q[q].sq_tail = 0;
                d->rung[q] = 0;
                if (d->shadow)
                        d->db_shadow[2 * q] = d->db_ei[2 * q] = 0;
                assert_int_equal(nvme_drv_cmd(d, 0, &sq, NULL), 0);
        }

        uint64_t area = nvme_drv_alloc(d, 4ull * PER_Q * NLB * 4096, 4096);
        unsigned nsent = 0;
        for (unsigned r = 0; r < ROUNDS; r++) {
                uint16_t cid[5][PER_Q];
                bool seen[5][PER_Q] = { { false } };
                for (uint16_t q = 1; q <= 4; q++)
                        for (unsigned i = 0; i < PER_Q; i++) {
                                unsigned n = (r * 4 + (q - 1)) * PER_Q + i;
                                uint64_t gpa = area + (((q - 1) * PER_Q + i) * NLB) * 4096ull;
                                fill(ptr(f, gpa), NLB * 4096, n + 1000);
                                NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 2, .cdw10 = n * NLB, .cdw12 = NLB - 1 };
                                nvme_drv_build_prps(d, &c, gpa, NLB * 4096);
                                cid[q][i] = nvme_drv_queue(d, q, &c);
                        }
                for (uint16_t q = 1; q <= 4; q++)
                        nvme_drv_ring(d, q);
                for (unsigned got = 0, idle = 0; got < 4 * PER_Q;) {
                        NvmeCqe e;
                        bool any = false;
                        for (uint16_t cq = 1; cq <= 4; cq++)
                                while (nvme_drv_poll(d, cq, &e)) {
                                        uint16_t want_sq = cq <= 2 ? cq : 7 - cq;
                                        assert_int_equal(e.sq_id, want_sq);
                                        assert_int_equal(nvme_drv_status(&e), 0);
                                        unsigned i = 0;
                                        while (i < PER_Q && (cid[want_sq][i] != e.cid || seen[want_sq][i]))
                                                i++;
                                        assert_true(i < PER_Q);
                                        seen[want_sq][i] = true;
                                        got++;
                                        any = true;
                                }
                        if (!any) {
                                assert_true(++idle < 200000);   /* ~10 s without a completion: lost */
                                usleep(50);
                        }
                }
                nsent += 4 * PER_Q;
        }

        /* Read back on queue pair 1 or 2 (threads 0 and 1), not the writer's, and compare. */
        g_autofree uint8_t *want = g_malloc(NLB * 4096);
        for (unsigned n = 0; n < nsent; n++) {
                uint16_t q = (uint16_t) (1 + (n / PER_Q + 1) % 2);
                memset(ptr(f, f->buf), 0, NLB * 4096);
                assert_int_equal(nvme_drv_rw(d, q, false, 2, n * NLB, NLB, 4096, f->buf, false), 0);
                fill(want, NLB * 4096, n + 1000);
                assert_memory_equal(ptr(f, f->buf), want, NLB * 4096);
        }
        NvmeStats st;
        nvme_ctrl_get_stats(f->srv.c, &st);
        assert_true(st.write_cmds >= nsent && st.read_cmds >= nsent);
        (void) io_threads_cpu_ticks(f);         /* all the threads are there */
}

/* With MMIO doorbells (each write must reach the SQ's new thread), then shadow doorbells. */
static void test_threads_cross_paired_queues(void **state) {
        Fx *f = *state;
        cross_paired_queues(f, false);
        assert_int_equal(nvme_drv_disable(f->d), 0);
        cross_paired_queues(f, true);
}

/*
 * Clients that each write a few hundred blocks and go away must leave an
 * idle controller idle: its I/O thread asleep, ~0 CPU, no wakeups.  A
 * backend completion signal that arrives after its completion was reaped
 * once left the thread spinning on a readable event fd until the next I/O.
 * (The disconnect's quiesce and resume may still wake it a few times.)
 */
static void test_idle_after_clients(void **state) {
        Fx *f = *state;
        enum { CLIENTS = 25, BLOCKS = 300, IDLE_MS = 200 };
        long hz = sysconf(_SC_CLK_TCK);
        uint64_t budget = (uint64_t) hz * IDLE_MS / 1000 / 20;         /* 5% of the interval */

        for (unsigned k = 0; k < CLIENTS; k++) {
                if (k > 0)
                        connect_vmm(f);
                probe_like_linux(f);
                for (unsigned i = 0; i < BLOCKS; i++) {
                        fill(ptr(f, f->buf), 4096, k * BLOCKS + i);
                        assert_int_equal(nvme_drv_rw(f->d, 1 + i % 2, true, 2, i, 1, 4096, f->buf, false), 0);
                }
                nvme_vmm_disconnect(&f->vmm);

                NvmeStats s0, s1;
                nvme_ctrl_get_stats(f->srv.c, &s0);
                uint64_t t0 = io_threads_cpu_ticks(f);
                usleep(IDLE_MS * 1000);
                uint64_t t1 = io_threads_cpu_ticks(f);
                nvme_ctrl_get_stats(f->srv.c, &s1);
                if (t1 - t0 > MAX(budget, 1) || s1.wakeups - s0.wakeups > 20)
                        fail_msg("after client %u: the idle I/O threads used %" G_GUINT64_FORMAT " ticks of %u ms "
                                 "and woke %" G_GUINT64_FORMAT " times", k + 1, t1 - t0, IDLE_MS,
                                 s1.wakeups - s0.wakeups);
        }
        connect_vmm(f);         /* for the teardown */
}

/*
 * Adaptive polling: with a 10 ms polling window and one I/O every 25 ms,
 * a fixed window would spin 10 ms after each I/O (40 % of a core); the
 * adaptive one sees every sleep outlast the window and shrinks to
 * sleeping at once, so the I/O threads use ~0 CPU.  Then back-to-back
 * I/O still completes (the window grows again).
 */
static void test_adaptive_polling_sparse_io(void **state) {
        Fx *f = *state;
        enum { N = 20, GAP_MS = 25 };
        long hz = sysconf(_SC_CLK_TCK);
        uint64_t budget = (uint64_t) hz * N * GAP_MS / 1000 / 10;      /* 10 % of the interval */

        probe_like_linux(f);
        for (unsigned i = 0; i < 3; i++)        /* the window learns from these */
                assert_int_equal(nvme_drv_rw(f->d, 1, false, 2, i, 1, 4096, f->buf, false), 0);
        usleep(GAP_MS * 1000);
        uint64_t t0 = io_threads_cpu_ticks(f);
        for (unsigned i = 0; i < N; i++) {
                fill(ptr(f, f->buf), 4096, i);
                assert_int_equal(nvme_drv_rw(f->d, 1 + i % 2, true, 2, i, 1, 4096, f->buf, false), 0);
                usleep(GAP_MS * 1000);
        }
        uint64_t t1 = io_threads_cpu_ticks(f);
        if (t1 - t0 > MAX(budget, 1))
                fail_msg("%u I/Os %u ms apart: the I/O threads used %" G_GUINT64_FORMAT " ticks (budget %"
                         G_GUINT64_FORMAT ")", N, GAP_MS, t1 - t0, budget);
        for (unsigned i = 0; i < 200; i++)
                assert_int_equal(nvme_drv_rw(f->d, 1 + i % 2, false, 2, i % N, 1, 4096, f->buf, false), 0);
        fill(ptr(f, f->buf2), 4096, (200 - 1) % N);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 4096);
}

/*
 * The VMM maps more guest RAM from a memfd it cannot seal, then shrinks it
 * to nothing: commands whose PRP list or data lies there complete with a
 * Data Transfer Error, the controller lives on, and I/O elsewhere works.
 */
static void test_guest_ram_shrunk_under_io(void **state) {
        Fx *f = *state;
        const uint64_t xgpa = 0x200000000ull, xsize = 16 * 4096;
        int fd = memfd_create("guest-extra", MFD_CLOEXEC);
        NvmeDrv *d = f->d;

        probe_like_linux(f);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) xsize), 0);
        assert_int_equal(vu_client_dma_map(f->vmm.c, xgpa, xsize, fd, 0, VU_DMA_READ | VU_DMA_WRITE), 0);
        assert_int_equal(ftruncate(fd, 0), 0);

        /* A three-page write: its PRP list, in the lost RAM, is read by the device first. */
        NvmeSqe w = { .opcode = NVME_CMD_WRITE, .nsid = 2, .cdw10 = 5, .cdw12 = 2, .prp1 = xgpa,
                      .prp2 = xgpa + 8 * 4096 };
        assert_int_equal(nvme_drv_cmd(d, 1, &w, NULL), NVME_SC_DATA_XFER_ERROR);
        /* From then on the whole map is refused, data pages too. */
        NvmeSqe r = { .opcode = NVME_CMD_READ, .nsid = 2, .cdw10 = 5, .prp1 = xgpa + 4096 };
        assert_int_equal(nvme_drv_cmd(d, 2, &r, NULL), NVME_SC_DATA_XFER_ERROR);
        assert_int_equal(vu_dma_lost_count(vu_server_dma(f->srv.s)), 1);

        fill(ptr(f, f->buf), 8192, 11);
        assert_int_equal(nvme_drv_rw(d, 1, true, 2, 5, 2, 4096, f->buf, false), 0);
        assert_int_equal(nvme_drv_rw(d, 2, false, 2, 5, 2, 4096, f->buf2, false), 0);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 8192);
        assert_int_equal(vu_client_dma_unmap(f->vmm.c, xgpa, xsize, 0), 0);
        close(fd);
}

static uint32_t cfg_read32(Fx *f, uint32_t off) {
        uint32_t v = 0;
        assert_int_equal(vu_client_region_read(f->vmm.c, VU_PCI_CONFIG_REGION, off, &v, 4), 0);
        return v;
}

static void cfg_write(Fx *f, uint32_t off, uint32_t v, uint32_t len) {
        assert_int_equal(vu_client_region_write(f->vmm.c, VU_PCI_CONFIG_REGION, off, &v, len, false), 0);
}

/* Submit a read on qid, wait for the interrupt on eventfd irq (-1: none expected), reap it. */
static void read_irq(Fx *f, uint16_t qid, int irq) {
        NvmeSqe c = { .opcode = NVME_CMD_READ, .nsid = 1 };
        NvmeCqe e;
        nvme_drv_build_prps(f->d, &c, f->buf, 512);
        uint16_t cid = nvme_drv_submit(f->d, qid, &c);
        if (irq >= 0)
                assert_int_equal(vu_client_wait_irq(irq, 5000), 1);
        assert_int_equal(nvme_drv_reap(f->d, qid, &e, 5000), 0);
        assert_int_equal(e.cid, cid);
        assert_int_equal(nvme_drv_status(&e), 0);
}

/*
 * A controller made with msi (vfuctl --msi): no MSI-X capability and
 * nothing in BAR4, MSI with 8 messages and per-vector masking; each
 * queue's completions interrupt on its MSI vector, a masked vector's
 * interrupt waits in Pending Bits until unmasked, and with one message
 * granted every queue interrupts on it.
 */
static void test_msi_interrupts(void **state) {
        Fx *f = *state;
        VuClient *c = f->vmm.c;
        int *irq = f->vmm.irq_fds;
        probe_like_linux(f);

        assert_int_equal(vu_client_find_cap(c, 0x11), -ENOENT);
        int cap = vu_client_find_cap(c, 0x05);
        assert_true(cap >= 0x40);
        uint32_t ctrl = cfg_read32(f, (uint32_t) cap) >> 16;
        assert_int_equal((ctrl >> 1) & 7, 3);           /* 8 messages capable */
        assert_int_equal((ctrl >> 4) & 7, 3);           /* 8 enabled */
        assert_true(ctrl & 0x0001);
        assert_true(ctrl & 0x0100);                     /* per-vector masking */
        struct vu_region_info ri;
        assert_int_equal(vu_client_region_info(c, NVME_PCI_MSIX_BAR, &ri, NULL, NULL, NULL), 0);
        assert_int_equal(ri.size, 0);
        struct vu_irq_info ii;
        assert_int_equal(vu_client_irq_info(c, VU_PCI_MSI_IRQ, &ii), 0);
        assert_int_equal(ii.count, MSI_NVEC);
        assert_int_equal(vu_client_irq_info(c, VU_PCI_MSIX_IRQ, &ii), 0);
        assert_int_equal(ii.count, 0);

        for (unsigned i = 0; i < MSI_NVEC; i++)
                while (vu_client_wait_irq(irq[i], 0) == 1)
                        ;
        read_irq(f, 1, irq[1]);
        read_irq(f, 2, irq[2]);

        /* Vector 1 masked: the completion comes, its interrupt pends. */
        cfg_write(f, (uint32_t) cap + 0x10, 0x2, 4);
        read_irq(f, 1, -1);
        for (int i = 0; i < 5000 && !(cfg_read32(f, (uint32_t) cap + 0x14) & 0x2); i++)
                usleep(1000);
        assert_int_equal(cfg_read32(f, (uint32_t) cap + 0x14), 0x2);
        assert_int_equal(vu_client_wait_irq(irq[1], 0), 0);
        cfg_write(f, (uint32_t) cap + 0x10, 0, 4);
        assert_int_equal(vu_client_wait_irq(irq[1], 5000), 1);
        assert_int_equal(cfg_read32(f, (uint32_t) cap + 0x14), 0);

        /* One message granted (Linux without interrupt remapping): queue 2 interrupts on vector 0. */
        cfg_write(f, (uint32_t) cap + 2, (ctrl & ~0x70u) | 0x1, 2);
        read_irq(f, 2, irq[0]);
        assert_int_equal(vu_client_wait_irq(irq[2], 0), 0);
}

/*
 * A backend whose flushes take SLOW_NS: a null backend for everything else,
 * flushes held until SLOW_NS after they were submitted (by the I/O thread's
 * reap; arm keeps the thread looking meanwhile).
 */
#define SLOW_NS 100000000ull            /* 100 ms: well above the 50 ms bucket bound */

typedef struct SlowBlk {
        BlkBackend base;
        BlkBackend *inner;
        BlkRequest *head, *tail;        /* held flushes */
        unsigned n_held;
        uint64_t release_ns;
} SlowBlk;

static uint64_t mono_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static int slow_submit(BlkBackend *b, BlkRequest *r) {
        SlowBlk *s = (SlowBlk *) b;
        if (r->op != BLK_FLUSH)
                return blk_backend_submit(s->inner, r);
        r->next_ = NULL;
        if (s->tail)
                s->tail->next_ = r;
        else
                s->head = r;
        s->tail = r;
        s->n_held++;
        s->release_ns = mono_ns() + SLOW_NS;
        return 0;
}

static void slow_commit(BlkBackend *b) { blk_backend_commit(((SlowBlk *) b)->inner); }

static unsigned slow_reap(BlkBackend *b) {
        SlowBlk *s = (SlowBlk *) b;
        unsigned n = blk_backend_reap(s->inner);
        if (s->head && mono_ns() >= s->release_ns) {
                BlkRequest *r = s->head;
                s->head = s->tail = NULL;
                while (r) {
                        BlkRequest *next = r->next_;
                        s->n_held--;
                        n++;
                        r->cb(r, 0);
                        r = next;
                }
        }
        return n;
}

static unsigned slow_inflight(const BlkBackend *b) {
        const SlowBlk *s = (const SlowBlk *) b;
        return blk_backend_inflight(s->inner) + s->n_held;
}

static bool slow_arm(BlkBackend *b) {
        SlowBlk *s = (SlowBlk *) b;
        return blk_backend_arm(s->inner) || s->head;
}

static void slow_destroy(BlkBackend *b) {
        SlowBlk *s = (SlowBlk *) b;
        blk_backend_free(s->inner);
        g_free(s);
}

static const BlkBackendOps slow_ops = {
        .name = "slow-flush", .submit = slow_submit, .commit = slow_commit, .reap = slow_reap,
        .inflight = slow_inflight, .arm = slow_arm, .destroy = slow_destroy,
};

static BlkBackend *slow_backend(uint64_t size) {
        BlkOpenOptions o = { .fd = -1, .size = size, .null = true };
        SlowBlk *s = g_new0(SlowBlk, 1);
        assert_int_equal(blk_backend_open(&o, &s->inner), 0);
        s->base = *s->inner;            /* size, caps, the event fd (the inner one's) */
        s->base.ops = &slow_ops;
        s->base.opened_ = NULL;
        return &s->base;
}

/* A flush the backend takes 100 ms over lands in a bucket above 50 ms; the reads do not. */
static void test_slow_op_latency_bucket(void **state) {
        Fx *f = *state;
        probe_like_linux(f);
        NvmeDrv *d = f->d;
        NvmeStats st0, st;
        NvmeCqe e;

        assert_int_equal(nvme_ctrl_ns_add(f->srv.c, 3, slow_backend(1 << 20), 512, false), 0);
        nvme_ctrl_get_stats(f->srv.c, &st0);
        for (unsigned i = 0; i < 8; i++)
                assert_int_equal(nvme_drv_rw(d, 1, false, 3, i, 1, 512, f->buf2, false), 0);
        NvmeSqe c = { .opcode = NVME_CMD_FLUSH, .nsid = 3 };
        assert_int_equal(nvme_drv_cmd(d, 1, &c, &e), 0);
        assert_int_equal(nvme_drv_status(&e), 0);
        nvme_ctrl_get_stats(f->srv.c, &st);

        const LatHistSnapshot *fl = &st.lat.op[LAT_OP_FLUSH], *fl0 = &st0.lat.op[LAT_OP_FLUSH];
        unsigned above = lat_hist_index(50000000) + 1;  /* the first bucket above 50 ms */
        assert_int_equal(fl->count - fl0->count, 1);
        for (unsigned i = 0; i < above; i++)
                assert_int_equal(fl->bucket[i], fl0->bucket[i]);
        uint64_t high = 0;
        for (unsigned i = above; i < LAT_HIST_BUCKETS; i++)
                high += fl->bucket[i] - fl0->bucket[i];
        assert_int_equal(high, 1);
        assert_true(fl->sum_ns - fl0->sum_ns > 50000000);
        assert_int_equal(st.lat.op[LAT_OP_READ].count - st0.lat.op[LAT_OP_READ].count, 8);
        assert_int_equal(st.lat.op[LAT_OP_WRITE].count, st0.lat.op[LAT_OP_WRITE].count);
}

int main(void) {
        static FxParams three = { .iothreads = 3, .poll_us = 20 };
        static FxParams sparse1 = { .iothreads = 1, .poll_us = 10000 }, sparse3 = { .iothreads = 3, .poll_us = 10000 };
        static FxParams msi = { .iothreads = 1, .poll_us = 20, .msi = true };
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_probe_replay, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verified_io, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_prps_and_commands, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reset_mid_io, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bus_master_gates_dma, setup, teardown),
                cmocka_unit_test_setup_teardown(test_disconnect_mid_io_and_reconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_namespace_hotplug, setup, teardown),
                cmocka_unit_test_setup_teardown(test_null_namespace, setup, teardown),
                cmocka_unit_test_setup_teardown(test_idle_after_clients, setup, teardown),
                cmocka_unit_test_setup_teardown(test_guest_ram_shrunk_under_io, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slow_op_latency_bucket, setup, teardown),
                /* Every case again with three I/O threads over the four queue pairs. */
                cmocka_unit_test_prestate_setup_teardown(test_probe_replay, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_verified_io, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_bad_prps_and_commands, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_reset_mid_io, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_bus_master_gates_dma, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_disconnect_mid_io_and_reconnect, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_namespace_hotplug, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_null_namespace, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_threads_cross_paired_queues, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_idle_after_clients, setup, teardown, &three),
                cmocka_unit_test_prestate_setup_teardown(test_guest_ram_shrunk_under_io, setup, teardown, &three),
                /* A 10 ms polling window, I/O every 25 ms. */
                cmocka_unit_test_prestate_setup_teardown(test_adaptive_polling_sparse_io, setup, teardown, &sparse1),
                cmocka_unit_test_prestate_setup_teardown(test_adaptive_polling_sparse_io, setup, teardown, &sparse3),
                /* MSI instead of MSI-X. */
                cmocka_unit_test_prestate_setup_teardown(test_msi_interrupts, setup, teardown, &msi),
                cmocka_unit_test_prestate_setup_teardown(test_verified_io, setup, teardown, &msi),
                cmocka_unit_test_prestate_setup_teardown(test_disconnect_mid_io_and_reconnect, setup, teardown, &msi),
        };
        return cmocka_run_group_tests_name("nvme-protocol", tests, NULL, NULL);
}
