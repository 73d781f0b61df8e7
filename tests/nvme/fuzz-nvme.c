/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the PRP and SGL walkers over hostile lists, and whole
 * SQEs through a live controller (admin or I/O queue) whose guest RAM holds
 * the fuzzer's bytes.  Invariants: no crash, no sanitizer report, every
 * translated iovec inside guest RAM, lengths adding up.
 *
 * The controller is a manual one (no I/O thread: this thread runs its
 * queues) on the null backend, set up once; each input enables it, creates
 * an I/O queue pair, runs one command and disables it again.
 *
 * Input: [mode][64-byte SQE][guest RAM window contents...]
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <glib.h>

#include "fake-mem.h"
#include "nvme-drv.h"
#include "nvme/nvme-dma.h"
#include "nvme/nvme.h"

#define GPA     0x100000ull
#define RAM     (2ull << 20)
#define WINDOW  (GPA + (1ull << 20))    /* fuzz bytes land here */

static FakeMem fm;
static FakeIrq irq;
static NvmeCtrl *ctrl;
static NvmeDrv drv;
static uint64_t queues_end;

static int op_read(void *o, uint64_t off, void *b, size_t l) { return nvme_ctrl_bar0_read(ctrl, off, b, l); }
static int op_write(void *o, uint64_t off, const void *b, size_t l) { return nvme_ctrl_bar0_write(ctrl, off, b, l); }
/* "Waiting for an interrupt" is running the controller until it has nothing left to do. */
static int op_wait(void *o, unsigned vector, int timeout_ms) {
        for (unsigned i = 0; i < 64 && nvme_ctrl_poll(ctrl) > 0; i++)
                ;
        return 1;
}
static const NvmeDrvOps ops = { op_read, op_write, op_wait };

/* Interrupts are counted, not signalled: nobody waits on them. */
static void count_irq(void *opaque, unsigned vector) {
        FakeIrq *f = opaque;

        if (vector >= f->nvec)
                abort();
        f->count[vector]++;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        fake_mem_init(&fm, GPA, RAM);
        fm.hole_gpa = GPA + RAM - 65536;        /* an unmapped page range inside */
        fm.hole_len = 4096;
        fake_irq_init(&irq, 3);
        NvmeCtrlConfig cfg = { .name = "fuzz", .serial = "FUZZ", .max_ioqs = 2, .msix_nvec = 3, .cntlid = 1,
                               .manual = true };
        if (nvme_ctrl_new(&cfg, &ctrl) < 0)
                abort();
        nvme_ctrl_attach(ctrl, &fm.mem, count_irq, &irq);
        BlkOpenOptions o = { .path = "fuzz-ns", .fd = -1, .null = true, .size = 1 << 20 };
        BlkBackend *b = NULL;
        if (blk_backend_open(&o, &b) < 0 || nvme_ctrl_ns_add(ctrl, 1, b, 512, false) < 0)
                abort();
        nvme_drv_init(&drv, &ops, NULL, fm.host, GPA, RAM);
        drv.timeout_ms = 1000;
        return 0;
}

static void check_iov(const NvmeIov *v, uint64_t len) {
        uint64_t sum = 0;
        for (unsigned i = 0; i < v->n; i++) {
                const uint8_t *p = v->iov[i].iov_base;
                sum += v->iov[i].iov_len;
                if (p && (p < fm.host || p + v->iov[i].iov_len > fm.host + RAM))
                        abort();
        }
        if (sum != len || v->len != len)
                abort();
}

static void fuzz_walkers(const NvmeSqe *sqe) {
        static NvmeIov v;
        uint64_t len = (uint64_t) ((sqe->cdw12 & 0xffff) + 1) * 512;
        NvmeSglDesc d;

        memcpy(&d, sqe->sgl1, sizeof(d));
        for (int prot = VU_PROT_READ; prot <= VU_PROT_WRITE; prot++) {
                if (nvme_prp_map(&fm.mem, sqe->prp1, sqe->prp2, len, prot, &v) == NVME_SUCCESS)
                        check_iov(&v, len);
                if (nvme_sgl_map(&fm.mem, &d, len, prot, &v) == NVME_SUCCESS)
                        check_iov(&v, len);
        }
}

static void fuzz_command(NvmeSqe *sqe, bool admin) {
        drv.alloc_next = GPA;
        if (nvme_drv_enable(&drv, 8) < 0)
                abort();
        if (nvme_drv_create_io_queues(&drv, 1, 8, 1) != 0)
                abort();
        queues_end = drv.alloc_next;
        if (queues_end > WINDOW)
                abort();
        uint16_t qid = admin ? 0 : 1;
        uint16_t cid = nvme_drv_submit(&drv, qid, sqe);
        NvmeCqe e;
        /* AERs and deletions may legitimately never complete: a bounded run. */
        op_wait(NULL, 0, 0);
        for (int i = 0; i < 4; i++)
                if (!nvme_drv_poll(&drv, qid, &e) || e.cid == cid)
                        break;
        if (nvme_drv_read32(&drv, 0x1c) == 0xffffffffu)
                abort();
        nvme_drv_disable(&drv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        NvmeSqe sqe = { 0 };

        if (size < 1)
                return 0;
        uint8_t mode = data[0];
        memcpy(&sqe, data + 1, MIN(size - 1, sizeof(sqe)));
        memset(fake_mem_ptr(&fm, WINDOW), 0, 256 * 1024);
        if (size > 1 + sizeof(sqe))
                memcpy(fake_mem_ptr(&fm, WINDOW), data + 1 + sizeof(sqe), MIN(size - 1 - sizeof(sqe), 256u * 1024));
        /* Steer most pointers into guest RAM so the walkers get past the first check. */
        if (mode & 0x10) {
                sqe.prp1 = WINDOW + (sqe.prp1 & 0x3ffff);
                sqe.prp2 = WINDOW + (sqe.prp2 & 0x3ffff);
        }
        switch (mode & 3) {
        case 0:
        case 1:
                fuzz_walkers(&sqe);
                break;
        case 2:
                fuzz_command(&sqe, true);
                break;
        default:
                sqe.nsid = (mode & 0x20) ? 1 : sqe.nsid;
                fuzz_command(&sqe, false);
                break;
        }
        return 0;
}
