/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: incoming migration streams into a live controller.
 * Invariants: no crash, no sanitizer report; a refused stream leaves the
 * controller disabled with CSTS.RDY clear; a device reset always brings it
 * back to RUNNING.
 *
 * Input: [mode] then
 *   mode even: patches (u16 offset, u8 value)... applied to a real stream
 *              saved at start-up, with its checksum made right again, so
 *              the values reach the controller's own checks;
 *   mode odd:  the stream itself, as given.
 *
 * Both controllers are manual ones (no I/O thread: this thread runs their
 * queues) set up once; the destination is reset after each input.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "fake-mem.h"
#include "nvme-drv.h"
#include "nvme/nvme.h"
#include "state/devstate.h"

#define GPA 0x100000ull
#define RAM (64ull << 10)       /* what the source's queues use, and more: restored per input */

static FakeMem fm_src, fm_dst;
static FakeIrq irq_src, irq_dst;
static NvmeCtrl *src, *dst;
static GByteArray *good;

static int op_read(void *o, uint64_t off, void *b, size_t l) { return nvme_ctrl_bar0_read(src, off, b, l); }
static int op_write(void *o, uint64_t off, const void *b, size_t l) { return nvme_ctrl_bar0_write(src, off, b, l); }
/* Run a manual controller until it has nothing left to do (bounded). */
static void run(NvmeCtrl *c) {
        for (unsigned i = 0; i < 64 && nvme_ctrl_poll(c) > 0; i++)
                ;
}
static int op_wait(void *o, unsigned v, int ms) {
        run(src);
        return 1;
}

/* Interrupts are counted, not signalled: nobody waits on them. */
static void count_irq(void *opaque, unsigned vector) {
        FakeIrq *f = opaque;

        if (vector >= f->nvec)
                abort();
        f->count[vector]++;
}
static const NvmeDrvOps ops = { op_read, op_write, op_wait };

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static NvmeCtrl *make(FakeMem *fm, FakeIrq *irq) {
        NvmeCtrl *c = NULL;
        NvmeCtrlConfig cfg = { .name = "fuzzmig", .serial = "FUZZMIG", .max_ioqs = 2, .msix_nvec = 3, .cntlid = 1,
                               .manual = true };
        fake_mem_init(fm, GPA, RAM);
        fake_irq_init(irq, 3);
        if (nvme_ctrl_new(&cfg, &c) < 0)
                abort();
        nvme_ctrl_attach(c, &fm->mem, count_irq, irq);
        BlkOpenOptions o = { .path = "fuzz-ns", .fd = -1, .null = true, .size = 1 << 20 };
        BlkBackend *b = NULL;
        if (blk_backend_open(&o, &b) < 0 || nvme_ctrl_ns_add(c, 1, b, 512, false) < 0)
                abort();
        return c;
}

static int arc(NvmeCtrl *c, enum vu_mig_state from, enum vu_mig_state to) {
        nvme_ctrl_quiesce(c);
        int r = nvme_ctrl_mig_transition(c, from, to);
        nvme_ctrl_resume(c);
        return r;
}

static GLogWriterOutput quiet(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer user) {
        return G_LOG_WRITER_HANDLED;    /* refusals are expected by the thousand */
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        NvmeDrv d;
        uint8_t buf[512];
        ssize_t n;

        g_log_set_writer_func(quiet, NULL, NULL);
        src = make(&fm_src, &irq_src);
        dst = make(&fm_dst, &irq_dst);
        nvme_drv_init(&d, &ops, NULL, fm_src.host, GPA, RAM);
        d.timeout_ms = 1000;
        if (nvme_drv_enable(&d, 8) < 0 || nvme_drv_set_features(&d, 0x07, 1 | 1 << 16, NULL) != 0 ||
            nvme_drv_create_io_queues(&d, 1, 16, 1) != 0 || nvme_drv_create_io_queues(&d, 2, 8, 2) != 0 ||
            nvme_drv_dbbuf_config(&d) != 0)
                abort();
        NvmeSqe aer = { .opcode = 0x0c };
        nvme_drv_submit(&d, 0, &aer);
        run(src);
        if (arc(src, VU_MIG_RUNNING, VU_MIG_STOP) < 0 || arc(src, VU_MIG_STOP, VU_MIG_STOP_COPY) < 0)
                abort();
        good = g_byte_array_new();
        while ((n = nvme_ctrl_mig_read(src, buf, sizeof(buf))) > 0)
                g_byte_array_append(good, buf, (guint) n);
        if (n < 0 || good->len < 100)
                abort();
        memcpy(fm_dst.host, fm_src.host, RAM);
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        g_autoptr(GByteArray) s = g_byte_array_new();

        if (size < 1)
                return 0;
        if (data[0] & 1) {
                g_byte_array_append(s, data + 1, (guint) (size - 1));
        } else {
                g_byte_array_append(s, good->data, good->len);
                for (size_t i = 1; i + 3 <= size; i += 3) {
                        uint16_t off = (uint16_t) (data[i] | data[i + 1] << 8);
                        if (off < s->len - 4)
                                s->data[off] = data[i + 2];
                }
                uint32_t crc = devstate_crc32c(0, s->data, s->len - 4);
                memcpy(s->data + s->len - 4, &crc, 4);
        }
        if (arc(dst, VU_MIG_RUNNING, VU_MIG_STOP) < 0 || arc(dst, VU_MIG_STOP, VU_MIG_RESUMING) < 0)
                abort();
        int r = 0;
        for (size_t off = 0; off < s->len && r == 0; off += 700)
                r = nvme_ctrl_mig_write(dst, s->data + off, MIN(700, s->len - off));
        int t = arc(dst, VU_MIG_RESUMING, VU_MIG_STOP);
        if (t < 0) {
                uint32_t csts = 0;
                nvme_ctrl_bar0_read(dst, 0x1c, &csts, 4);
                if ((csts & 1) || strcmp(nvme_ctrl_state_string(dst), "disabled") != 0 ||
                    nvme_ctrl_mig_state(dst) != VU_MIG_ERROR)
                        abort();
        } else {
                if (arc(dst, VU_MIG_STOP, VU_MIG_RUNNING) < 0)
                        abort();
                for (uint32_t db = 0; db < 6; db++) {
                        uint32_t v = db;
                        nvme_ctrl_bar0_write(dst, 0x1000 + 4 * db, &v, 4);
                }
                run(dst);
        }
        nvme_ctrl_quiesce(dst);
        nvme_ctrl_reset(dst);
        nvme_ctrl_mig_reset(dst);
        nvme_ctrl_resume(dst);
        if (nvme_ctrl_mig_state(dst) != VU_MIG_RUNNING)
                abort();
        memcpy(fm_dst.host, fm_src.host, RAM);
        return 0;
}
