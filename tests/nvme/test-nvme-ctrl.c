/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The controller model driven like Linux drives it, through direct register
 * calls, fake guest RAM and a fake interrupt sink, over real backing files.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "fake-mem.h"
#include "nvme-drv.h"
#include "nvme/nvme.h"

#define GPA   0x100000000ull    /* above 4 GiB: ASQ/ACQ high halves matter */
#define RAM   (32ull << 20)
#define NVEC  5

typedef struct Fx {
        char *dir;
        FakeMem fm;
        FakeIrq irq;
        NvmeCtrl *c;
        NvmeDrv d;
        uint64_t buf, buf2;
} Fx;

static int op_read(void *o, uint64_t off, void *b, size_t l) { return nvme_ctrl_bar0_read(((Fx *) o)->c, off, b, l); }
static int op_write(void *o, uint64_t off, const void *b, size_t l) { return nvme_ctrl_bar0_write(((Fx *) o)->c, off, b, l); }
static int op_wait(void *o, unsigned v, int t) { return fake_irq_wait(&((Fx *) o)->irq, v, t); }
static const NvmeDrvOps direct_ops = { op_read, op_write, op_wait };

static BlkBackend *backend(Fx *f, const char *name, uint64_t size) {
        g_autofree char *path = g_build_filename(f->dir, name, NULL);
        BlkOpenOptions o = { .path = path, .fd = -1, .size = size };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        return b;
}

static char *ns_path(Fx *f, const char *name) { return g_build_filename(f->dir, name, NULL); }

static int setup(void **state) {
        unsigned poll_us = *state ? *(const unsigned *) *state : 0;
        Fx *f = g_new0(Fx, 1);
        f->dir = g_build_filename(BUILDDIR, "tests-nvme-XXXXXX", NULL);
        assert_non_null(g_mkdtemp(f->dir));
        fake_mem_init(&f->fm, GPA, RAM);
        fake_irq_init(&f->irq, NVEC);
        NvmeCtrlConfig cfg = { .name = "unit0", .serial = "VFU-UNIT-0001", .max_ioqs = 4, .msix_nvec = NVEC,
                               .cntlid = 1, .poll_us = poll_us };
        memset(cfg.host_uuid, 0x42, 16);
        assert_int_equal(nvme_ctrl_new(&cfg, &f->c), 0);
        nvme_ctrl_attach(f->c, &f->fm.mem, fake_irq_fire, &f->irq);
        assert_int_equal(nvme_ctrl_ns_add(f->c, 1, backend(f, "ns1.img", 16 << 20), 512, false), 0);
        assert_int_equal(nvme_ctrl_ns_add(f->c, 2, backend(f, "ns2.img", 8 << 20), 4096, false), 0);
        nvme_drv_init(&f->d, &direct_ops, f, f->fm.host, GPA, RAM);
        f->d.timeout_ms = 10000;
        f->buf = nvme_drv_alloc(&f->d, 1 << 20, 4096);
        f->buf2 = nvme_drv_alloc(&f->d, 1 << 20, 4096);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        nvme_ctrl_free(f->c);
        fake_irq_fini(&f->irq);
        fake_mem_fini(&f->fm);
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        g_free(f->dir);
        g_free(f);
        return 0;
}

static void bring_up(Fx *f) {
        uint32_t dw0 = 0;
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x07, 3 | 3 << 16, &dw0), 0);
        assert_int_equal(nvme_drv_create_io_queues(&f->d, 1, 64, 1), 0);
}

static uint32_t rd32(Fx *f, uint64_t off) { return nvme_drv_read32(&f->d, off); }
static void wr32(Fx *f, uint64_t off, uint32_t v) { nvme_drv_write32(&f->d, off, v); }
static uint8_t *ptr(Fx *f, uint64_t gpa) { return nvme_drv_ptr(&f->d, gpa); }

static int admin(Fx *f, NvmeSqe c, NvmeCqe *e) { return nvme_drv_cmd(&f->d, 0, &c, e); }
static int io(Fx *f, NvmeSqe c, NvmeCqe *e) { return nvme_drv_cmd(&f->d, 1, &c, e); }

static void fill(uint8_t *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (i * 13 + seed * 101 + (i >> 12));
}

/* ---- registers ---- */

static void test_power_on_registers(void **state) {
        Fx *f = *state;
        uint64_t cap = (uint64_t) rd32(f, 4) << 32 | rd32(f, 0);

        assert_int_equal(rd32(f, NVME_REG_CSTS), 0);
        assert_int_equal(cap & 0xffff, 1023);                   /* MQES */
        assert_true(cap & (1ull << 16));                        /* CQR */
        assert_int_not_equal((cap >> 24) & 0xff, 0);            /* TO */
        assert_int_equal((cap >> 32) & 0xf, 0);                 /* DSTRD */
        assert_int_equal((cap >> 36) & 1, 0);                   /* NSSRS */
        assert_int_equal((cap >> 37) & 0xff, 1);                /* CSS: NVM only */
        assert_int_equal((cap >> 48) & 0xf, 0);                 /* MPSMIN */
        assert_int_equal((cap >> 59) & 3, 0);                   /* CRMS */
        assert_int_equal(rd32(f, NVME_REG_VS), 0x00010400);
        assert_int_equal(rd32(f, NVME_REG_CMBSZ), 0);
        assert_int_equal(rd32(f, NVME_REG_CMBLOC), 0);
        assert_true(nvme_ctrl_bar0_size(f->c) >= 16384);
        assert_int_equal(nvme_ctrl_bar0_size(f->c) & (nvme_ctrl_bar0_size(f->c) - 1), 0);
        uint8_t b[8];
        assert_int_equal(nvme_ctrl_bar0_read(f->c, nvme_ctrl_bar0_size(f->c) - 4, b, 8), -EINVAL);
        /* INTMS/INTMC set and clear the same mask. */
        wr32(f, NVME_REG_INTMS, 0x5);
        wr32(f, NVME_REG_INTMC, 0x1);
        assert_int_equal(rd32(f, NVME_REG_INTMS), 0x4);
        /* CAP/VS are read-only. */
        wr32(f, NVME_REG_VS, 0);
        assert_int_equal(rd32(f, NVME_REG_VS), 0x00010400);
}

static void test_cc_config_does_not_enable(void **state) {
        Fx *f = *state;
        wr32(f, NVME_REG_AQA, 31 | 31 << 16);
        wr32(f, NVME_REG_ASQ, 0x1000);
        wr32(f, NVME_REG_ASQ + 4, 0x1);
        wr32(f, NVME_REG_ACQ, 0x2000);
        wr32(f, NVME_REG_ACQ + 4, 0x1);
        /* High halves at +4 stick; low 12 bits of ASQ/ACQ are reserved. */
        assert_int_equal(rd32(f, NVME_REG_ASQ + 4), 1);
        assert_int_equal(rd32(f, NVME_REG_ACQ), 0x2000);
        wr32(f, NVME_REG_ASQ, 0x1234);
        assert_int_equal(rd32(f, NVME_REG_ASQ), 0x1000);
        wr32(f, NVME_REG_CC, (6u << 16) | (4u << 20));
        usleep(20000);
        assert_int_equal(rd32(f, NVME_REG_CSTS), 0);
        assert_int_equal(rd32(f, NVME_REG_CC), (6u << 16) | (4u << 20));
        assert_string_equal(nvme_ctrl_state_string(f->c), "disabled");
}

static void test_enable_disable_cycle(void **state) {
        Fx *f = *state;
        for (int i = 0; i < 3; i++) {
                assert_int_equal(nvme_drv_enable(&f->d, 32), 0);
                assert_string_equal(nvme_ctrl_state_string(f->c), "ready");
                assert_int_equal(nvme_drv_identify(&f->d, 1, 0, f->buf), 0);
                assert_int_equal(nvme_drv_disable(&f->d), 0);
                assert_int_equal(rd32(f, NVME_REG_CSTS), 0);
        }
}

static void test_enable_invalid_config(void **state) {
        Fx *f = *state;
        wr32(f, NVME_REG_AQA, 31 | 31 << 16);
        wr32(f, NVME_REG_ASQ, 0x1000);
        wr32(f, NVME_REG_ACQ, 0x2000);
        wr32(f, NVME_REG_CC, NVME_CC_EN | (1u << 7));   /* MPS = 8 KiB: CAP.MPSMAX is 0 */
        assert_true(rd32(f, NVME_REG_CSTS) & NVME_CSTS_CFS);
        assert_true(rd32(f, NVME_REG_CSTS) != 0xffffffffu);
        wr32(f, NVME_REG_CC, 0);
        assert_int_equal(rd32(f, NVME_REG_CSTS), 0);
        /* And a good enable works afterwards. */
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);
}

static void test_shutdown(void **state) {
        Fx *f = *state;
        bring_up(f);
        fill(ptr(f, f->buf), 4096, 1);
        assert_int_equal(nvme_drv_rw(&f->d, 1, true, 1, 0, 8, 512, f->buf, false), 0);
        assert_int_equal(nvme_drv_shutdown(&f->d), 0);
        assert_string_equal(nvme_ctrl_state_string(f->c), "shutdown");
        assert_int_equal(nvme_drv_disable(&f->d), 0);
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);
}

/* ---- identify ---- */

static void test_identify(void **state) {
        Fx *f = *state;
        bring_up(f);
        uint8_t *id = ptr(f, f->buf);

        assert_int_equal(nvme_drv_identify(&f->d, 1, 0, f->buf), 0);
        assert_int_equal(id[0] | id[1] << 8, 0x4e56);
        assert_memory_equal(id + 4, "VFU-UNIT-0001       ", 20);
        assert_memory_equal(id + 24, "vfu NVMe Controller ", 20);
        assert_int_equal(id[512], 0x66);
        assert_int_equal(id[513], 0x44);
        assert_int_equal(id[516], 32);                  /* NN */
        assert_int_equal(id[77], 7);                    /* MDTS */
        assert_true(id[256 + 1] & 1);                   /* OACS bit 8: DBBUF */
        assert_true(id[520] & (1 << 2));                /* ONCS DSM */
        assert_true(id[520] & (1 << 3));                /* ONCS write zeroes */
        assert_true(id[525] & 1);                       /* VWC */
        assert_true(strncmp((char *) id + 768, "nqn.", 4) == 0);
        assert_int_equal(id[78], 1);                    /* CNTLID */

        /* Active namespace list, and after nsid 1. */
        assert_int_equal(nvme_drv_identify(&f->d, 2, 0, f->buf), 0);
        assert_int_equal(((uint32_t *) id)[0], 1);
        assert_int_equal(((uint32_t *) id)[1], 2);
        assert_int_equal(((uint32_t *) id)[2], 0);
        assert_int_equal(nvme_drv_identify(&f->d, 2, 1, f->buf), 0);
        assert_int_equal(((uint32_t *) id)[0], 2);
        assert_int_equal(nvme_drv_identify(&f->d, 2, 0xfffffffe, f->buf), NVME_SC_INVALID_NS);

        /* Namespace data. */
        assert_int_equal(nvme_drv_identify(&f->d, 0, 1, f->buf), 0);
        uint64_t nsze;
        memcpy(&nsze, id, 8);
        assert_int_equal(nsze, (16 << 20) / 512);
        assert_int_equal(id[128 + 2], 9);
        uint8_t nguid1[16];
        memcpy(nguid1, id + 104, 16);
        assert_int_equal(nvme_drv_identify(&f->d, 0, 2, f->buf), 0);
        assert_int_equal(id[128 + 2], 12);
        assert_memory_not_equal(nguid1, id + 104, 16);
        /* Inactive but valid nsid: zeroes.  Invalid: Invalid Namespace. */
        memset(id, 0xff, 4096);
        assert_int_equal(nvme_drv_identify(&f->d, 0, 7, f->buf), 0);
        assert_int_equal(id[0] | id[100] | id[4095], 0);
        assert_int_equal(nvme_drv_identify(&f->d, 0, 0, f->buf), NVME_SC_INVALID_NS);
        assert_int_equal(nvme_drv_identify(&f->d, 0, 33, f->buf), NVME_SC_INVALID_NS);

        /* Descriptor list: EUI-64, NGUID, UUID, matching namespace data and the derivation. */
        assert_int_equal(nvme_drv_identify(&f->d, 3, 1, f->buf), 0);
        assert_int_equal(id[0], 1);
        assert_int_equal(id[1], 8);
        assert_int_equal(id[12], 2);
        assert_int_equal(id[13], 16);
        assert_memory_equal(id + 16, nguid1, 16);
        assert_int_equal(id[32], 3);
        uint8_t host[16], ng[16], eui[8], uu[16];
        memset(host, 0x42, 16);
        nvme_derive_ns_ids(host, "unit0", 1, ng, eui, uu);
        assert_memory_equal(ng, nguid1, 16);
        assert_memory_equal(id + 36, uu, 16);
        assert_int_equal(nvme_drv_identify(&f->d, 3, 9, f->buf), NVME_SC_INVALID_NS);

        /* NVM command set controller data (Linux reads it at every probe): the
         * Write Zeroes limit, 32 MiB; another command set: Invalid Field. */
        memset(id, 0xff, 4096);
        assert_int_equal(nvme_drv_identify(&f->d, 6, 0, f->buf), 0);
        assert_int_equal(id[1], 13);
        assert_int_equal(id[0] | id[2] | id[3] | id[4] | id[8] | id[4095], 0);
        NvmeSqe cs = { .opcode = NVME_ADM_IDENTIFY, .prp1 = f->buf, .cdw10 = 6, .cdw11 = 2u << 24 };
        assert_int_equal(nvme_drv_cmd(&f->d, 0, &cs, NULL), NVME_SC_INVALID_FIELD);

        /* Other CNS values: Invalid Field. */
        assert_int_equal(nvme_drv_identify(&f->d, 5, 0, f->buf), NVME_SC_INVALID_FIELD);
        assert_int_equal(nvme_drv_identify(&f->d, 0x10, 0, f->buf), NVME_SC_INVALID_FIELD);
}

static void test_ns_ids_unique_and_stable(void **state) {
        uint8_t h1[16], h2[16];
        memset(h1, 1, 16);
        memset(h2, 2, 16);
        GHashTable *seen = g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify) g_bytes_unref, NULL);
        const char *names[] = { "a", "b", "db", "web" };
        for (unsigned h = 0; h < 2; h++)
                for (unsigned n = 0; n < G_N_ELEMENTS(names); n++)
                        for (uint32_t ns = 1; ns <= 32; ns++) {
                                uint8_t ng[16], eui[8], uu[16], ng2[16], eui2[8], uu2[16];
                                nvme_derive_ns_ids(h ? h2 : h1, names[n], ns, ng, eui, uu);
                                nvme_derive_ns_ids(h ? h2 : h1, names[n], ns, ng2, eui2, uu2);
                                assert_memory_equal(ng, ng2, 16);       /* stable */
                                assert_true(g_hash_table_add(seen, g_bytes_new(ng, 16)));
                                assert_true(g_hash_table_add(seen, g_bytes_new(eui, 8)));
                                assert_true(g_hash_table_add(seen, g_bytes_new(uu, 16)));
                                assert_int_equal(uu[6] >> 4, 5);
                        }
        g_hash_table_unref(seen);
}

/* ---- features ---- */

static int getf(Fx *f, uint8_t fid, unsigned sel, uint32_t dw11, uint32_t *dw0) {
        NvmeSqe c = { .opcode = NVME_ADM_GET_FEATURES, .cdw10 = fid | sel << 8, .cdw11 = dw11, .prp1 = f->buf };
        NvmeCqe e;
        int r = admin(f, c, &e);
        *dw0 = e.dw0;
        return r;
}

static void test_features(void **state) {
        Fx *f = *state;
        uint32_t dw0;
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);

        /* Number of queues: 0's based, granted up to our maximum, once before queues exist. */
        assert_int_equal(nvme_drv_set_features(&f->d, 0x07, 15 | 15 << 16, &dw0), 0);
        assert_int_equal(dw0, 3 | 3 << 16);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x07, 0xffff, &dw0), NVME_SC_INVALID_FIELD);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x07, 1 | 1 << 16, &dw0), 0);
        assert_int_equal(getf(f, 0x07, 0, 0, &dw0), 0);
        assert_int_equal(dw0, 1 | 1 << 16);
        assert_int_equal(nvme_drv_create_io_queues(&f->d, 1, 16, 1), 0);
        /* QID 3 is beyond what was granted. */
        assert_int_equal(nvme_drv_create_io_queues(&f->d, 3, 16, 1), NVME_SC_INVALID_QID);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x07, 3 | 3 << 16, &dw0), NVME_SC_CMD_SEQ_ERROR);

        /* Stored values come back; defaults and capabilities by SEL. */
        assert_int_equal(nvme_drv_set_features(&f->d, 0x01, 0x03020103, NULL), 0);
        assert_int_equal(getf(f, 0x01, 0, 0, &dw0), 0);
        assert_int_equal(dw0, 0x03020103);
        assert_int_equal(getf(f, 0x01, 1, 0, &dw0), 0);
        assert_int_equal(dw0, 0);
        assert_int_equal(getf(f, 0x01, 3, 0, &dw0), 0);
        assert_int_equal(dw0, 1u << 2);
        assert_int_equal(getf(f, 0x01, 4, 0, &dw0), NVME_SC_INVALID_FIELD);

        assert_int_equal(nvme_drv_set_features(&f->d, 0x02, 1, NULL), NVME_SC_INVALID_FIELD);   /* PS 1 */
        assert_int_equal(nvme_drv_set_features(&f->d, 0x02, 0, NULL), 0);

        assert_int_equal(nvme_drv_set_features(&f->d, 0x04, 350, NULL), 0);
        assert_int_equal(getf(f, 0x04, 0, 0, &dw0), 0);
        assert_int_equal(dw0, 350);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x04, 1u << 16, NULL), NVME_SC_INVALID_FIELD);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x04, 2u << 20, NULL), NVME_SC_INVALID_FIELD);

        assert_int_equal(nvme_drv_set_features(&f->d, 0x05, 100, NULL), 0);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x05, 1u << 16, NULL), NVME_SC_INVALID_FIELD);

        assert_int_equal(getf(f, 0x06, 0, 0, &dw0), 0);
        assert_int_equal(dw0, 1);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x06, 0, NULL), 0);
        assert_int_equal(getf(f, 0x06, 0, 0, &dw0), 0);
        assert_int_equal(dw0, 0);

        assert_int_equal(nvme_drv_set_features(&f->d, 0x08, 0x0a07, NULL), 0);
        assert_int_equal(getf(f, 0x08, 0, 0, &dw0), 0);
        assert_int_equal(dw0, 0x0a07);

        assert_int_equal(nvme_drv_set_features(&f->d, 0x09, 1 | 1u << 16, NULL), 0);
        assert_int_equal(getf(f, 0x09, 0, 1, &dw0), 0);
        assert_int_equal(dw0, 1 | 1u << 16);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x09, NVEC, NULL), NVME_SC_INVALID_FIELD);
        assert_int_equal(getf(f, 0x09, 0, 99, &dw0), NVME_SC_INVALID_FIELD);

        assert_int_equal(nvme_drv_set_features(&f->d, 0x0b, 0x1ff | 0x1000, NULL), 0);
        assert_int_equal(getf(f, 0x0b, 0, 0, &dw0), 0);
        assert_int_equal(dw0, 0x1ff);

        /* Timestamp: set 8 bytes, read back at least that, origin "set". */
        uint64_t ts = 1700000000000ull;
        memcpy(ptr(f, f->buf), &ts, 8);
        NvmeSqe st = { .opcode = NVME_ADM_SET_FEATURES, .cdw10 = 0x0e, .prp1 = f->buf };
        assert_int_equal(admin(f, st, NULL), 0);
        memset(ptr(f, f->buf), 0, 8);
        assert_int_equal(getf(f, 0x0e, 0, 0, &dw0), 0);
        uint64_t back = 0;
        memcpy(&back, ptr(f, f->buf), 6);
        assert_true(back >= ts && back < ts + 60000);
        assert_int_equal((ptr(f, f->buf)[6] >> 1) & 7, 1);

        /* Unknown feature, save bit, namespace-specific nsid. */
        assert_int_equal(nvme_drv_set_features(&f->d, 0x0c, 0, NULL), NVME_SC_INVALID_FIELD);
        NvmeSqe sv = { .opcode = NVME_ADM_SET_FEATURES, .cdw10 = 0x01 | 1u << 31 };
        assert_int_equal(admin(f, sv, NULL), NVME_SC_FEAT_NOT_SAVEABLE);
        NvmeSqe ns = { .opcode = NVME_ADM_SET_FEATURES, .cdw10 = 0x01, .nsid = 1 };
        assert_int_equal(admin(f, ns, NULL), NVME_SC_FEAT_NOT_NS_SPECIFIC);
}

/* ---- queues ---- */

static int create_cq(Fx *f, uint16_t qid, uint32_t size, uint32_t flags, uint16_t iv, uint64_t base) {
        NvmeSqe c = { .opcode = NVME_ADM_CREATE_CQ, .prp1 = base, .cdw10 = qid | (size - 1) << 16,
                      .cdw11 = flags | (uint32_t) iv << 16 };
        return admin(f, c, NULL);
}

static int create_sq(Fx *f, uint16_t qid, uint32_t size, uint32_t flags, uint16_t cqid, uint64_t base) {
        NvmeSqe c = { .opcode = NVME_ADM_CREATE_SQ, .prp1 = base, .cdw10 = qid | (size - 1) << 16,
                      .cdw11 = flags | (uint32_t) cqid << 16 };
        return admin(f, c, NULL);
}

static void test_queue_errors(void **state) {
        Fx *f = *state;
        uint64_t q = nvme_drv_alloc(&f->d, 1 << 16, 4096);
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);

        assert_int_equal(create_cq(f, 0, 16, 3, 1, q), NVME_SC_INVALID_QID);
        assert_int_equal(create_cq(f, 5, 16, 3, 1, q), NVME_SC_INVALID_QID);
        assert_int_equal(create_cq(f, 1, 1, 3, 1, q), NVME_SC_INVALID_QSIZE);
        assert_int_equal(create_cq(f, 1, 1025, 3, 1, q), NVME_SC_INVALID_QSIZE);
        assert_int_equal(create_cq(f, 1, 16, 2, 1, q), NVME_SC_INVALID_FIELD);         /* PC = 0 */
        assert_int_equal(create_cq(f, 1, 16, 3, NVEC, q), NVME_SC_INVALID_VECTOR);
        assert_int_equal(create_cq(f, 1, 16, 3, 1, q + 8), NVME_SC_PRP_OFFSET_INVALID);
        assert_int_equal(create_cq(f, 1, 16, 3, 1, 0x1000), NVME_SC_INVALID_FIELD);    /* not guest RAM */
        assert_int_equal(create_cq(f, 1, 16, 1, NVEC + 10, q), 0);    /* IEN clear: vector unused */
        assert_int_equal(create_cq(f, 1, 16, 3, 1, q), NVME_SC_INVALID_QID);           /* exists */
        assert_int_equal(create_cq(f, 2, 16, 3, 2, q + 4096), 0);

        assert_int_equal(create_sq(f, 1, 16, 1, 0, q + 8192), NVME_SC_CQ_INVALID);
        assert_int_equal(create_sq(f, 1, 16, 1, 3, q + 8192), NVME_SC_CQ_INVALID);
        assert_int_equal(create_sq(f, 0, 16, 1, 1, q + 8192), NVME_SC_INVALID_QID);
        assert_int_equal(create_sq(f, 9, 16, 1, 1, q + 8192), NVME_SC_INVALID_QID);
        assert_int_equal(create_sq(f, 1, 1, 1, 1, q + 8192), NVME_SC_INVALID_QSIZE);
        assert_int_equal(create_sq(f, 1, 16, 0, 1, q + 8192), NVME_SC_INVALID_FIELD);
        assert_int_equal(create_sq(f, 1, 16, 1, 1, q + 8200), NVME_SC_PRP_OFFSET_INVALID);
        assert_int_equal(create_sq(f, 1, 16, 1, 1, q + 8192), 0);
        assert_int_equal(create_sq(f, 1, 16, 1, 1, q + 8192), NVME_SC_INVALID_QID);
        /* Two SQs may share a CQ. */
        assert_int_equal(create_sq(f, 2, 16, 1, 1, q + 3 * 4096), 0);

        NvmeSqe dcq = { .opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1 };
        assert_int_equal(admin(f, dcq, NULL), NVME_SC_INVALID_QUEUE_DELETION);
        NvmeSqe dsq = { .opcode = NVME_ADM_DELETE_SQ, .cdw10 = 3 };
        assert_int_equal(admin(f, dsq, NULL), NVME_SC_INVALID_QID);
        dsq.cdw10 = 0;
        assert_int_equal(admin(f, dsq, NULL), NVME_SC_INVALID_QID);
        dsq.cdw10 = 1;
        assert_int_equal(admin(f, dsq, NULL), 0);
        assert_int_equal(admin(f, dsq, NULL), NVME_SC_INVALID_QID);
        dsq.cdw10 = 2;
        assert_int_equal(admin(f, dsq, NULL), 0);
        assert_int_equal(admin(f, dcq, NULL), 0);
        assert_int_equal(admin(f, dcq, NULL), NVME_SC_INVALID_QID);
        dcq.cdw10 = 0;
        assert_int_equal(admin(f, dcq, NULL), NVME_SC_INVALID_QID);

        /* Unknown admin opcode, fused command, Abort. */
        NvmeSqe bad = { .opcode = 0x7f };
        assert_int_equal(admin(f, bad, NULL), NVME_SC_INVALID_OPCODE);
        NvmeSqe fused = { .opcode = NVME_ADM_IDENTIFY, .flags = 1, .cdw10 = 1, .prp1 = f->buf };
        assert_int_equal(admin(f, fused, NULL), NVME_SC_INVALID_FIELD);
        NvmeSqe ab = { .opcode = NVME_ADM_ABORT, .cdw10 = 1 | 5u << 16 };
        NvmeCqe e;
        assert_int_equal(admin(f, ab, &e), 0);
        assert_int_equal(e.dw0 & 1, 1);
}

/* ---- log pages ---- */

static int get_log(Fx *f, uint8_t lid, uint32_t len, uint64_t off, bool rae) {
        uint32_t numd = len / 4 - 1;
        NvmeSqe c = { .opcode = NVME_ADM_GET_LOG_PAGE, .nsid = 0xffffffff, .prp1 = f->buf,
                      .cdw10 = lid | (rae ? 1u << 15 : 0) | (numd & 0xffff) << 16, .cdw11 = numd >> 16,
                      .cdw12 = (uint32_t) off, .cdw13 = (uint32_t) (off >> 32) };
        nvme_drv_build_prps(&f->d, &c, f->buf, len);
        return admin(f, c, NULL);
}

static void test_log_pages(void **state) {
        Fx *f = *state;
        bring_up(f);
        uint8_t *b = ptr(f, f->buf);

        /* A failing command lands in the error log, newest first. */
        NvmeSqe bad = { .opcode = NVME_CMD_READ, .nsid = 9, .cdw12 = 0 };
        NvmeCqe e;
        assert_int_equal(io(f, bad, &e), NVME_SC_INVALID_NS);
        assert_int_equal(get_log(f, 0x01, 4096, 0, false), 0);
        NvmeErrorLogEntry ent;
        memcpy(&ent, b, sizeof(ent));
        assert_true(ent.error_count >= 1);
        assert_int_equal(ent.sqid, 1);
        assert_int_equal(ent.cid, e.cid);
        assert_int_equal(ent.status >> 1, NVME_SC_INVALID_NS);
        assert_int_equal(ent.nsid, 9);

        /* SMART: counts host reads. */
        fill(ptr(f, f->buf2), 4096, 2);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 8, 512, f->buf2, false), 0);
        assert_int_equal(get_log(f, 0x02, 512, 0, false), 0);
        NvmeSmartLog s;
        memcpy(&s, b, sizeof(s));
        assert_int_equal(s.host_reads[0], 1);
        assert_int_equal(s.data_units_read[0], 1);
        assert_true(s.temperature > 273);
        assert_int_equal(s.avail_spare, 100);

        assert_int_equal(get_log(f, 0x03, 512, 0, false), 0);
        assert_int_equal(b[0], 1);
        assert_memory_equal(b + 8, PACKAGE_VERSION, strlen(PACKAGE_VERSION));

        /* Effects log: the same table as dispatch. */
        assert_int_equal(get_log(f, 0x05, 4096, 0, false), 0);
        uint32_t *eff = (uint32_t *) b;
        assert_int_equal(eff[NVME_ADM_IDENTIFY] & 1, 1);
        assert_int_equal(eff[NVME_ADM_DBBUF_CONFIG] & 1, 1);
        assert_int_equal(eff[0x10], 0);                 /* firmware commit: unsupported */
        assert_int_equal(eff[256 + NVME_CMD_WRITE], 3);  /* CSUPP | LBCC */
        assert_int_equal(eff[256 + NVME_CMD_READ], 1);
        assert_int_equal(eff[256 + 0x05], 0);            /* compare: unsupported */

        /* Offset and size rules. */
        assert_int_equal(get_log(f, 0x05, 8, 1024, false), 0);
        assert_int_equal(eff[0], 1);                     /* IOCS[0]: flush */
        assert_int_equal(get_log(f, 0x02, 512, 2, false), NVME_SC_INVALID_FIELD);
        assert_int_equal(get_log(f, 0x02, 512, 1024, false), NVME_SC_INVALID_FIELD);
        assert_int_equal(get_log(f, 0x06, 512, 0, false), NVME_SC_INVALID_LOG_PAGE);
        assert_int_equal(get_log(f, 0xc0, 512, 0, false), NVME_SC_INVALID_LOG_PAGE);
        /* Reading past the end of a short log gives zeroes. */
        memset(b, 0xff, 8192);
        assert_int_equal(get_log(f, 0x03, 1024, 0, false), 0);
        assert_int_equal(b[1000], 0);
}

/* ---- I/O ---- */

static void test_io_write_read_verify(void **state) {
        Fx *f = *state;
        bring_up(f);
        static const struct { uint32_t nsid, bs, nlb; uint64_t slba; uint32_t off; } cases[] = {
                { 1, 512, 1, 0, 0 }, { 1, 512, 8, 1, 0 }, { 1, 512, 7, 100, 512 },
                { 1, 512, 256, 2048, 0 }, { 1, 512, 1024, 4096, 0 }, { 1, 512, 33, 9999, 3584 },
                { 2, 4096, 1, 0, 0 }, { 2, 4096, 128, 10, 0 }, { 2, 4096, 3, 2045, 1024 },
        };
        for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
                uint64_t len = (uint64_t) cases[i].nlb * cases[i].bs;
                uint64_t w = f->buf + cases[i].off, r = f->buf2 + cases[i].off;
                fill(ptr(f, w), len, i + 10);
                memset(ptr(f, r), 0, len);
                assert_int_equal(nvme_drv_rw(&f->d, 1, true, cases[i].nsid, cases[i].slba, cases[i].nlb,
                                             cases[i].bs, w, i & 1), 0);
                assert_int_equal(nvme_drv_rw(&f->d, 1, false, cases[i].nsid, cases[i].slba, cases[i].nlb,
                                             cases[i].bs, r, false), 0);
                assert_memory_equal(ptr(f, w), ptr(f, r), len);
                /* And the bytes are in the file where the LBA says. */
                g_autofree char *path = ns_path(f, cases[i].nsid == 1 ? "ns1.img" : "ns2.img");
                g_autofree uint8_t *disk = g_malloc(len);
                int fd = open(path, O_RDONLY);
                assert_true(pread(fd, disk, len, (off_t) (cases[i].slba * cases[i].bs)) == (ssize_t) len);
                close(fd);
                assert_memory_equal(disk, ptr(f, w), len);
        }
        NvmeStats st;
        nvme_ctrl_get_stats(f->c, &st);
        assert_int_equal(st.write_cmds, G_N_ELEMENTS(cases));
        assert_int_equal(st.read_cmds, G_N_ELEMENTS(cases));
        assert_true(st.irqs > 0);
        assert_true(f->irq.count[1] > 0);
}

static void test_io_errors(void **state) {
        Fx *f = *state;
        bring_up(f);
        uint64_t nsze = (16 << 20) / 512;

        NvmeSqe c = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = f->buf };
        c.cdw10 = (uint32_t) nsze;
        assert_int_equal(io(f, c, NULL), NVME_SC_LBA_RANGE);
        c.cdw10 = (uint32_t) nsze - 1;
        c.cdw12 = 1;
        assert_int_equal(io(f, c, NULL), NVME_SC_LBA_RANGE);
        c.cdw10 = 0xffffffff;
        c.cdw11 = 0xffffffff;
        c.cdw12 = 0xffff;
        assert_int_equal(io(f, c, NULL), NVME_SC_LBA_RANGE);         /* no overflow */
        c.cdw10 = c.cdw11 = 0;
        c.cdw12 = 1024;                                               /* 1025 blocks > MDTS */
        assert_int_equal(io(f, c, NULL), NVME_SC_INVALID_FIELD);
        c.cdw12 = 0;
        c.nsid = 0;
        assert_int_equal(io(f, c, NULL), NVME_SC_INVALID_NS);
        c.nsid = 0xffffffff;
        assert_int_equal(io(f, c, NULL), NVME_SC_INVALID_NS);
        c.nsid = 5;
        assert_int_equal(io(f, c, NULL), NVME_SC_INVALID_NS);
        c.nsid = 1;
        c.opcode = 0x05;                                              /* compare */
        assert_int_equal(io(f, c, NULL), NVME_SC_INVALID_OPCODE);
        c.opcode = 0x81;
        assert_int_equal(io(f, c, NULL), NVME_SC_INVALID_OPCODE);

        /* Memory the guest does not have: Data Transfer Error, nothing written anywhere. */
        c.opcode = NVME_CMD_READ;
        c.prp1 = 0x2000;
        assert_int_equal(io(f, c, NULL), NVME_SC_DATA_XFER_ERROR);
        c.prp1 = GPA + RAM - 256;
        assert_int_equal(io(f, c, NULL), NVME_SC_DATA_XFER_ERROR);
        c.prp1 = f->buf + 4096 - 256;
        c.prp2 = GPA + RAM;
        assert_int_equal(io(f, c, NULL), NVME_SC_DATA_XFER_ERROR);
        c.prp2 = f->buf2 + 8;
        assert_int_equal(io(f, c, NULL), NVME_SC_PRP_OFFSET_INVALID);
        f->fm.ro_gpa = f->buf2;
        f->fm.ro_len = 4096;
        c.prp1 = f->buf2;
        assert_int_equal(io(f, c, NULL), NVME_SC_DATA_XFER_ERROR);    /* read into read-only */
        c.opcode = NVME_CMD_WRITE;
        assert_int_equal(io(f, c, NULL), 0);                          /* write from it is fine */
        f->fm.ro_len = 0;

        /* A read-only namespace refuses writes. */
        g_autofree char *p3 = ns_path(f, "ns3.img");
        BlkOpenOptions o = { .path = p3, .fd = -1, .size = 1 << 20 };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(nvme_ctrl_ns_add(f->c, 3, b, 512, true), 0);
        c.nsid = 3;
        c.prp1 = f->buf;
        assert_int_equal(io(f, c, NULL), NVME_SC_NS_WRITE_PROTECTED);
        NvmeSqe wz = { .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 3 };
        assert_int_equal(io(f, wz, NULL), NVME_SC_NS_WRITE_PROTECTED);
        c.opcode = NVME_CMD_READ;
        assert_int_equal(io(f, c, NULL), 0);
        assert_int_equal(nvme_drv_identify(&f->d, 0, 3, f->buf), 0);
        assert_int_equal(ptr(f, f->buf)[99] & 1, 1);                 /* NSATTR write protected */
}

static void put_sgl(uint8_t *p, uint8_t type, uint64_t addr, uint32_t len) {
        NvmeSglDesc d = { .addr = addr, .len = len, .type = (uint8_t) (type << 4) };
        memcpy(p, &d, 16);
}

static void test_io_sgl(void **state) {
        Fx *f = *state;
        bring_up(f);
        uint64_t seg = nvme_drv_alloc(&f->d, 4096, 4096);
        uint8_t *w = ptr(f, f->buf), *r = ptr(f, f->buf2);

        /* Write 4 KiB from three scattered pieces. */
        fill(w, 65536, 77);
        put_sgl(ptr(f, seg), NVME_SGL_DATA_BLOCK, f->buf + 100, 1000);
        put_sgl(ptr(f, seg) + 16, NVME_SGL_DATA_BLOCK, f->buf + 20000, 96);
        put_sgl(ptr(f, seg) + 32, NVME_SGL_DATA_BLOCK, f->buf + 40000, 3000);
        NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 1, .flags = 1 << 6, .cdw10 = 64, .cdw12 = 7 };
        put_sgl(c.sgl1, NVME_SGL_LAST_SEGMENT, seg, 48);
        assert_int_equal(io(f, c, NULL), 0);
        /* Read it back through a single data block. */
        NvmeSqe rd = { .opcode = NVME_CMD_READ, .nsid = 1, .flags = 1 << 6, .cdw10 = 64, .cdw12 = 7 };
        put_sgl(rd.sgl1, NVME_SGL_DATA_BLOCK, f->buf2, 4096);
        assert_int_equal(io(f, rd, NULL), 0);
        assert_memory_equal(r, w + 100, 1000);
        assert_memory_equal(r + 1000, w + 20000, 96);
        assert_memory_equal(r + 1096, w + 40000, 3000);

        /* Bit bucket: skip the middle 1 KiB of a 4 KiB read. */
        memset(r, 0xee, 8192);
        put_sgl(ptr(f, seg), NVME_SGL_DATA_BLOCK, f->buf2, 1536);
        put_sgl(ptr(f, seg) + 16, NVME_SGL_BIT_BUCKET, 0, 1024);
        put_sgl(ptr(f, seg) + 32, NVME_SGL_DATA_BLOCK, f->buf2 + 4096, 1536);
        put_sgl(rd.sgl1, NVME_SGL_LAST_SEGMENT, seg, 48);
        assert_int_equal(io(f, rd, NULL), 0);
        assert_memory_equal(r, w + 100, 1000);
        assert_int_equal(r[2000], 0xee);
        assert_memory_equal(r + 4096, w + 40000 + 2560 - 1096, 1536 - (2560 - 1096) > 0 ? 10 : 10);
        /* Too short an SGL: Data SGL Length Invalid; bad descriptor type. */
        put_sgl(rd.sgl1, NVME_SGL_DATA_BLOCK, f->buf2, 100);
        assert_int_equal(io(f, rd, NULL), NVME_SC_SGL_DATA_LEN_INVALID);
        put_sgl(rd.sgl1, 0x5, f->buf2, 4096);
        assert_int_equal(io(f, rd, NULL), NVME_SC_SGL_TYPE_INVALID);
        put_sgl(c.sgl1, NVME_SGL_BIT_BUCKET, 0, 4096);
        assert_int_equal(io(f, c, NULL), NVME_SC_SGL_TYPE_INVALID);
}

static void test_io_flush_fua_zeroes_dsm(void **state) {
        Fx *f = *state;
        bring_up(f);
        uint8_t *w = ptr(f, f->buf), *r = ptr(f, f->buf2);
        uint8_t zero[65536] = { 0 };

        fill(w, 65536, 5);
        assert_int_equal(nvme_drv_rw(&f->d, 1, true, 1, 0, 128, 512, f->buf, true), 0);
        NvmeSqe fl = { .opcode = NVME_CMD_FLUSH, .nsid = 1 };
        assert_int_equal(io(f, fl, NULL), 0);
        fl.nsid = 0xffffffff;
        assert_int_equal(io(f, fl, NULL), 0);
        fl.nsid = 7;
        assert_int_equal(io(f, fl, NULL), NVME_SC_INVALID_NS);

        /* Write Zeroes blocks 8..15, with and without DEAC. */
        NvmeSqe wz = { .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 1, .cdw10 = 8, .cdw12 = 7 };
        assert_int_equal(io(f, wz, NULL), 0);
        wz.cdw10 = 24;
        wz.cdw12 = 7 | 1u << 25 | 1u << 30;
        assert_int_equal(io(f, wz, NULL), 0);
        wz.cdw10 = (16 << 20) / 512 - 4;
        assert_int_equal(io(f, wz, NULL), NVME_SC_LBA_RANGE);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 128, 512, f->buf2, false), 0);
        assert_memory_equal(r, w, 8 * 512);
        assert_memory_equal(r + 8 * 512, zero, 8 * 512);
        assert_memory_equal(r + 16 * 512, w + 16 * 512, 8 * 512);
        assert_memory_equal(r + 24 * 512, zero, 8 * 512);
        assert_memory_equal(r + 32 * 512, w + 32 * 512, 96 * 512);

        /* DSM deallocate two ranges (reads back zeroes: DLFEAT says so). */
        assert_int_equal(nvme_drv_identify(&f->d, 0, 1, f->buf2), 0);
        bool dz = (r[33] & 7) == 1;
        NvmeDsmRange rng[2] = { { .nlb = 16, .slba = 64 }, { .nlb = 8, .slba = 100 } };
        uint64_t rg = nvme_drv_alloc(&f->d, 4096, 4096);
        memcpy(ptr(f, rg), rng, sizeof(rng));
        NvmeSqe dsm = { .opcode = NVME_CMD_DSM, .nsid = 1, .prp1 = rg, .cdw10 = 1, .cdw11 = 1u << 2 };
        assert_int_equal(io(f, dsm, NULL), 0);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 128, 512, f->buf2, false), 0);
        assert_memory_equal(r + 32 * 512, w + 32 * 512, 32 * 512);
        if (dz) {
                assert_memory_equal(r + 64 * 512, zero, 16 * 512);
                assert_memory_equal(r + 100 * 512, zero, 8 * 512);
        }
        assert_memory_equal(r + 80 * 512, w + 80 * 512, 20 * 512);
        /* A range beyond the namespace: LBA Out of Range, nothing deallocated. */
        rng[1].slba = (16 << 20) / 512 - 1;
        rng[1].nlb = 2;
        rng[0].slba = 0;
        memcpy(ptr(f, rg), rng, sizeof(rng));
        assert_int_equal(io(f, dsm, NULL), NVME_SC_LBA_RANGE);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 8, 512, f->buf2, false), 0);
        assert_memory_equal(r, w, 8 * 512);
        /* Without AD it is a hint. */
        dsm.cdw11 = 1;
        assert_int_equal(io(f, dsm, NULL), 0);
        /* DSM with its range list outside guest memory. */
        dsm.cdw11 = 1u << 2;
        dsm.prp1 = 0x3000;
        assert_int_equal(io(f, dsm, NULL), NVME_SC_DATA_XFER_ERROR);
}

/* ---- events ---- */

static void post_aer(Fx *f) {
        NvmeSqe aer = { .opcode = NVME_ADM_ASYNC_EVENT };
        nvme_drv_submit(&f->d, 0, &aer);
}

static void wait_cqe(Fx *f, uint16_t qid, NvmeCqe *e) {
        assert_int_equal(nvme_drv_reap(&f->d, qid, e, 10000), 0);
}

static void test_aer_namespace_changes(void **state) {
        Fx *f = *state;
        bring_up(f);
        NvmeCqe e;
        assert_int_equal(nvme_drv_set_features(&f->d, 0x0b, 1u << 8, NULL), 0);
        post_aer(f);
        /* AERL: four may be outstanding, the fifth is refused. */
        post_aer(f);
        post_aer(f);
        post_aer(f);
        NvmeSqe aer = { .opcode = NVME_ADM_ASYNC_EVENT };
        assert_int_equal(admin(f, aer, NULL), NVME_SC_AER_LIMIT);

        g_autofree char *p5 = ns_path(f, "ns5.img");
        BlkOpenOptions o = { .path = p5, .fd = -1, .size = 1 << 20 };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(nvme_ctrl_ns_add(f->c, 5, b, 4096, false), 0);
        wait_cqe(f, 0, &e);
        assert_int_equal(nvme_drv_status(&e), 0);
        assert_int_equal(e.dw0, 0x040002);              /* notice, ns attribute changed, log 04h */

        /* Masked until the log is read: a resize now is recorded, not reported. */
        assert_int_equal(nvme_ctrl_ns_resize(f->c, 1, 32 << 20), 0);
        assert_int_equal(nvme_drv_poll(&f->d, 0, &e), 0);
        usleep(10000);
        assert_int_equal(nvme_drv_poll(&f->d, 0, &e), 0);
        assert_int_equal(get_log(f, 0x04, 4096, 0, false), 0);
        uint32_t *list = (uint32_t *) ptr(f, f->buf);
        assert_int_equal(list[0], 5);
        assert_int_equal(list[1], 1);
        assert_int_equal(list[2], 0);
        /* The event that waited is delivered now that the log was read. */
        wait_cqe(f, 0, &e);
        assert_int_equal(e.dw0, 0x040002);
        assert_int_equal(get_log(f, 0x04, 4096, 0, false), 0);
        assert_int_equal(list[0], 0);                   /* cleared by the read */
        assert_int_equal(nvme_drv_identify(&f->d, 0, 1, f->buf), 0);
        uint64_t nsze;
        memcpy(&nsze, ptr(f, f->buf), 8);
        assert_int_equal(nsze, (32 << 20) / 512);
        assert_int_equal(nvme_ctrl_ns_resize(f->c, 1, 8 << 20), -EINVAL);   /* no shrinking */

        assert_int_equal(nvme_ctrl_ns_remove(f->c, 5), 0);
        assert_int_equal(nvme_ctrl_ns_remove(f->c, 5), -ENOENT);
        wait_cqe(f, 0, &e);
        assert_int_equal(e.dw0, 0x040002);
        assert_int_equal(nvme_drv_identify(&f->d, 2, 0, f->buf), 0);
        assert_int_equal(list[0], 1);
        assert_int_equal(list[1], 2);
        assert_int_equal(list[2], 0);
        NvmeSqe rd = { .opcode = NVME_CMD_READ, .nsid = 5, .prp1 = f->buf };
        assert_int_equal(io(f, rd, NULL), NVME_SC_INVALID_NS);
        assert_int_equal(nvme_ctrl_ns_add(f->c, 1, backend(f, "dup.img", 1 << 20), 512, false), -EEXIST);
        assert_int_equal(nvme_ctrl_ns_add(f->c, 40, backend(f, "big.img", 1 << 20), 512, false), -EINVAL);
}

static void test_invalid_doorbells(void **state) {
        Fx *f = *state;
        bring_up(f);
        NvmeCqe e;
        post_aer(f);
        post_aer(f);
        /* A doorbell of a queue that does not exist. */
        wr32(f, NVME_REG_DBS + 8 * 3, 1);
        wait_cqe(f, 0, &e);
        assert_int_equal(e.dw0, 0x010000);              /* error, invalid doorbell, log 01h */
        assert_int_equal(get_log(f, 0x01, 64, 0, false), 0);
        /* A tail beyond the queue size (64 entries). */
        wr32(f, NVME_REG_DBS + 8 * 1, 64);
        wait_cqe(f, 0, &e);
        assert_int_equal(e.dw0, 0x010100);              /* invalid doorbell write value */
        /* Outside the doorbell array altogether, and unaligned. */
        assert_int_equal(nvme_ctrl_bar0_write(f->c, nvme_ctrl_bar0_size(f->c) - 4, "\1\0\0\0", 4), 0);
        /* The queue still works afterwards. */
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 1, 512, f->buf, false), 0);
}

static void test_shadow_doorbells(void **state) {
        Fx *f = *state;
        uint32_t dw0;
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x07, 1 | 1 << 16, &dw0), 0);
        NvmeSqe bad = { .opcode = NVME_ADM_DBBUF_CONFIG, .prp1 = f->buf + 8, .prp2 = f->buf2 };
        assert_int_equal(admin(f, bad, NULL), NVME_SC_INVALID_FIELD);
        bad.prp1 = 0x5000;
        assert_int_equal(admin(f, bad, NULL), NVME_SC_INVALID_FIELD);
        assert_int_equal(nvme_drv_dbbuf_config(&f->d), 0);
        assert_int_equal(nvme_drv_create_io_queues(&f->d, 1, 256, 1), 0);
        assert_int_equal(nvme_drv_create_io_queues(&f->d, 2, 256, 2), 0);

        /* Keep the queue busy: 32 in flight at a time. */
        enum { N = 2000, QD = 32 };
        uint64_t before = f->d.mmio_doorbells, before_cq = f->d.mmio_cq_doorbells;
        NvmeStats st0;
        nvme_ctrl_get_stats(f->c, &st0);
        unsigned done = 0, sent = 0;
        fill(ptr(f, f->buf), 65536, 9);
        while (done < N) {
                while (sent < N && sent - done < QD) {
                        NvmeSqe c = { .opcode = sent % 3 ? NVME_CMD_READ : NVME_CMD_WRITE, .nsid = 1,
                                      .prp1 = f->buf + (sent % 16) * 4096, .cdw10 = (sent * 8) % 30000, .cdw12 = 7 };
                        nvme_drv_submit(&f->d, 1 + sent % 2, &c);
                        sent++;
                }
                NvmeCqe e;
                for (uint16_t q = 1; q <= 2; q++)
                        while (nvme_drv_poll(&f->d, q, &e)) {
                                assert_int_equal(nvme_drv_status(&e), 0);
                                done++;
                        }
        }
        uint64_t mmio = f->d.mmio_doorbells - before, mmio_cq = f->d.mmio_cq_doorbells - before_cq;
        NvmeStats st;
        nvme_ctrl_get_stats(f->c, &st);
        uint64_t sleeps = st.wakeups - st0.wakeups;
        print_message("shadow doorbells: %u commands, %" PRIu64 " MMIO doorbell writes (%" PRIu64
                      " CQ), %" PRIu64 " controller sleeps\n", N, mmio, mmio_cq, sleeps);
        /*
         * Without shadow doorbells there would be 2 per command (SQ tail + CQ
         * head).  CQ heads are only rung when a wrap crosses EventIdx; SQ
         * tails only when the controller armed EventIdx to go to sleep (once
         * per queue per sleep) or at a wrap.
         */
        uint64_t wraps = N / 256 + 2;
        assert_true(mmio_cq <= 2 * wraps);
        assert_true(mmio - mmio_cq <= 2 * sleeps + 2 * wraps);
        assert_true(mmio < 2 * N);
        assert_true(st.io_cmds >= N);
        /* Every command in its operation's latency histogram, and nowhere else. */
        assert_int_equal(st.lat.op[LAT_OP_READ].count - st0.lat.op[LAT_OP_READ].count, st.read_cmds - st0.read_cmds);
        assert_int_equal(st.lat.op[LAT_OP_WRITE].count - st0.lat.op[LAT_OP_WRITE].count, st.write_cmds - st0.write_cmds);
        assert_int_equal(st.read_cmds - st0.read_cmds + st.write_cmds - st0.write_cmds, N);
        assert_int_equal(st.lat.op[LAT_OP_FLUSH].count, st0.lat.op[LAT_OP_FLUSH].count);
        assert_int_equal(st.io_cmds, st.lat.op[LAT_OP_READ].count + st.lat.op[LAT_OP_WRITE].count +
                                     st.lat.op[LAT_OP_FLUSH].count + st.lat.op[LAT_OP_OTHER].count);
        /* Idle now: a new command still gets through (EventIdx armed before sleeping). */
        usleep(20000);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 1, 512, f->buf2, false), 0);
        assert_int_equal(nvme_drv_rw(&f->d, 2, false, 1, 0, 1, 512, f->buf2, false), 0);
}

static void wait_posted(Fx *f, uint16_t qid, unsigned n) {
        for (int i = 0; i < 10000 && nvme_drv_posted(&f->d, qid) < n; i++)
                usleep(1000);
        assert_int_equal(nvme_drv_posted(&f->d, qid), n);
}

/* An admin round trip during which the AER aer_cid must not complete. */
static void admin_no_event(Fx *f, uint16_t aer_cid) {
        NvmeSqe gf = { .opcode = NVME_ADM_GET_FEATURES, .cdw10 = 0x07 };
        uint16_t cid = nvme_drv_submit(&f->d, 0, &gf);
        NvmeCqe e;
        do {
                wait_cqe(f, 0, &e);
                if (e.cid == aer_cid)
                        fail_msg("asynchronous event 0x%08x reported", e.dw0);
        } while (e.cid != cid);
}

/*
 * Shadow doorbells (§5.7): the host updates the shadow value, then writes
 * the register when EventIdx asks for it, and goes on reaping.  The
 * register write can reach the controller after it has already acted on a
 * newer shadow value; that older value is no error.  A shadow head beyond
 * the posted entries is one, reported once.
 */
static void test_shadow_doorbell_late_register(void **state) {
        Fx *f = *state;
        NvmeDrv *d = &f->d;
        NvmeDrvQueue *q = &d->q[1];
        NvmeSqe rd = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = f->buf };
        NvmeCqe e;

        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_set_features(d, 0x07, 1 | 1 << 16, NULL), 0);
        assert_int_equal(nvme_drv_set_features(d, 0x0b, 1u << 8, NULL), 0);
        assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 8, 1), 0);
        NvmeSqe aer = { .opcode = NVME_ADM_ASYNC_EVENT };
        uint16_t aer_cid = nvme_drv_submit(d, 0, &aer);

        /* Three completions; the host consumes two and, so far, says so in the shadow buffer only. */
        for (unsigned i = 0; i < 3; i++)
                nvme_drv_queue(d, 1, &rd);
        nvme_drv_ring(d, 1);
        wait_posted(f, 1, 3);
        q->cq_head = 2;
        __atomic_store_n(&d->db_shadow[3], 2, __ATOMIC_RELEASE);
        /* A fourth: the controller takes head 2 from the shadow buffer as it posts it. */
        nvme_drv_submit(d, 1, &rd);
        wait_posted(f, 1, 2);
        /* Only now the register write of head 1, made on the way from 0 to 2, arrives. */
        wr32(f, NVME_REG_DBS + 4 * 3, 1);
        admin_no_event(f, aer_cid);
        admin_no_event(f, aer_cid);

        /* A shadow head of 6 with entries 2 and 3 posted: invalid, not taken, reported once. */
        __atomic_store_n(&d->db_shadow[3], 6, __ATOMIC_RELEASE);
        nvme_drv_submit(d, 1, &rd);
        wait_posted(f, 1, 3);
        nvme_drv_submit(d, 1, &rd);
        wait_posted(f, 1, 4);           /* both posted: taking head 6 would have left room for one */
        wait_cqe(f, 0, &e);
        assert_int_equal(e.cid, aer_cid);
        assert_int_equal(e.dw0, 0x010100);      /* error, invalid doorbell write value, log 01h */
        assert_int_equal(get_log(f, 0x01, 64, 0, false), 0);
        aer_cid = nvme_drv_submit(d, 0, &aer);
        admin_no_event(f, aer_cid);
        admin_no_event(f, aer_cid);

        /* The host consumes what was posted and the queue goes on. */
        for (unsigned i = 0; i < 4; i++) {
                assert_int_equal(nvme_drv_poll(d, 1, &e), 1);
                assert_int_equal(nvme_drv_status(&e), 0);
        }
        assert_int_equal(nvme_drv_poll(d, 1, &e), 0);
        for (unsigned i = 0; i < 20; i++)
                assert_int_equal(nvme_drv_rw(d, 1, false, 1, i, 1, 512, f->buf2, false), 0);
        admin_no_event(f, aer_cid);
}

static void test_irq_coalescing(void **state) {
        Fx *f = *state;
        bring_up(f);
        /* 8 entries or 25.5 ms. */
        assert_int_equal(nvme_drv_set_features(&f->d, 0x08, 7 | 255 << 8, NULL), 0);
        unsigned before = f->irq.count[1];
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        NvmeSqe c = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = f->buf };
        nvme_drv_submit(&f->d, 1, &c);
        NvmeCqe e;
        while (!nvme_drv_poll(&f->d, 1, &e))
                usleep(50);
        unsigned at_cqe = f->irq.count[1];
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ms < 20)
                assert_int_equal(at_cqe, before);       /* held back by aggregation time */
        /* It does arrive. */
        assert_int_equal(fake_irq_wait(&f->irq, 1, 2000), 1);
        assert_true(f->irq.count[1] > before);
        /* Threshold: 8 completions in one batch → an interrupt without waiting for the time. */
        for (int i = 0; i < 8; i++)
                nvme_drv_queue(&f->d, 1, &c);
        nvme_drv_ring(&f->d, 1);
        int got = 0;
        while (got < 8) {
                if (nvme_drv_poll(&f->d, 1, &e))
                        got++;
        }
        /* Coalescing disabled for vector 1: immediate again. */
        assert_int_equal(nvme_drv_set_features(&f->d, 0x09, 1 | 1u << 16, NULL), 0);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 1, 512, f->buf, false), 0);
}

static void test_reset_with_io_in_flight(void **state) {
        Fx *f = *state;
        bring_up(f);
        fill(ptr(f, f->buf), 1 << 20, 3);
        for (int round = 0; round < 3; round++) {
                for (int i = 0; i < 60; i++) {
                        NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw10 = (uint32_t) i * 256, .cdw12 = 255 };
                        nvme_drv_build_prps(&f->d, &c, f->buf, 128 * 1024);
                        nvme_drv_queue(&f->d, 1, &c);
                }
                nvme_drv_ring(&f->d, 1);
                if (round == 0)
                        assert_int_equal(nvme_drv_disable(&f->d), 0);          /* CC.EN = 0 */
                else if (round == 1)
                        nvme_ctrl_reset(f->c);                                  /* DEVICE_RESET / FLR */
                else
                        nvme_ctrl_quiesce(f->c), nvme_ctrl_resume(f->c);        /* DMA unmap path */
                assert_true(rd32(f, NVME_REG_CSTS) != 0xffffffffu);
                if (round < 2) {
                        assert_int_equal(rd32(f, NVME_REG_CSTS) & NVME_CSTS_RDY, 0);
                        f->d.alloc_next = f->buf2 + (1 << 20);
                        bring_up(f);
                } else {
                        /* Quiesce only pauses: every command completes. */
                        NvmeCqe e;
                        for (int i = 0; i < 60; i++) {
                                assert_int_equal(nvme_drv_reap(&f->d, 1, &e, 10000), 0);
                                assert_int_equal(nvme_drv_status(&e), 0);
                        }
                }
        }
        assert_int_equal(nvme_drv_rw(&f->d, 1, true, 1, 0, 8, 512, f->buf, false), 0);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 8, 512, f->buf2, false), 0);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 4096);
}

static void test_delete_sq_with_io_in_flight(void **state) {
        Fx *f = *state;
        bring_up(f);
        for (int i = 0; i < 40; i++) {
                NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw10 = (uint32_t) i * 256, .cdw12 = 255 };
                nvme_drv_build_prps(&f->d, &c, f->buf, 128 * 1024);
                nvme_drv_queue(&f->d, 1, &c);
        }
        nvme_drv_ring(&f->d, 1);
        /* The controller is fetching (one completion seen), the rest still in flight. */
        NvmeCqe e;
        assert_int_equal(nvme_drv_reap(&f->d, 1, &e, 10000), 0);
        /* Delete SQ completes after its commands; their completions reach the CQ first. */
        NvmeSqe dsq = { .opcode = NVME_ADM_DELETE_SQ, .cdw10 = 1 };
        assert_int_equal(admin(f, dsq, NULL), 0);
        int n = 1;
        while (nvme_drv_poll(&f->d, 1, &e))
                n++;
        assert_true(n > 0);
        NvmeSqe dcq = { .opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1 };
        assert_int_equal(admin(f, dcq, NULL), 0);
        assert_int_equal(nvme_drv_create_io_queues(&f->d, 1, 64, 1), 0);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 8, 512, f->buf2, false), 0);
}

static void test_cq_full_backpressure(void **state) {
        Fx *f = *state;
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);
        /* CQ of 4 entries, SQ of 16: completions wait for room, none are lost. */
        assert_int_equal(create_cq(f, 1, 4, 3, 1, nvme_drv_alloc(&f->d, 4096, 4096)), 0);
        f->d.q[1] = (NvmeDrvQueue) { .live = true, .qid = 1, .depth = 16, .vector = 1, .phase = 1 };
        /* Re-create by hand with different depths. */
        NvmeDrvQueue *q = &f->d.q[1];
        q->cq_gpa = nvme_drv_alloc(&f->d, 4096, 4096);
        NvmeSqe dcq = { .opcode = NVME_ADM_DELETE_CQ, .cdw10 = 1 };
        assert_int_equal(admin(f, dcq, NULL), 0);
        assert_int_equal(create_cq(f, 1, 4, 3, 1, q->cq_gpa), 0);
        q->sq_gpa = nvme_drv_alloc(&f->d, 16 * 64, 4096);
        assert_int_equal(create_sq(f, 1, 16, 1, 1, q->sq_gpa), 0);
        q->sq = nvme_drv_ptr(&f->d, q->sq_gpa);
        q->cq = nvme_drv_ptr(&f->d, q->cq_gpa);
        q->depth = 16;
        for (int i = 0; i < 12; i++) {
                NvmeSqe c = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = f->buf, .cdw10 = (uint32_t) i };
                nvme_drv_queue(&f->d, 1, &c);
        }
        nvme_drv_ring(&f->d, 1);
        /* Consume with a 4-entry CQ view. */
        unsigned head = 0, phase = 1, got = 0;
        uint32_t seen = 0;
        for (int spin = 0; got < 12 && spin < 200000; spin++) {
                NvmeCqe *e = &q->cq[head];
                if ((__atomic_load_n(&e->status, __ATOMIC_ACQUIRE) & 1) != phase) {
                        usleep(10);
                        continue;
                }
                assert_int_equal(e->status >> 1, 0);
                seen |= 1u << e->cid;
                got++;
                if (++head == 4) {
                        head = 0;
                        phase ^= 1;
                }
                wr32(f, NVME_REG_DBS + 12, head);
        }
        assert_int_equal(got, 12);
        assert_int_equal(seen, 0xfff);
}

static const unsigned poll_200us = 200;

/* A manual controller (no I/O thread) runs only when polled: on the null backend, from this thread. */
static NvmeCtrl *manual_ctrl;
static int mop_read(void *o, uint64_t off, void *b, size_t l) { return nvme_ctrl_bar0_read(manual_ctrl, off, b, l); }
static int mop_write(void *o, uint64_t off, const void *b, size_t l) { return nvme_ctrl_bar0_write(manual_ctrl, off, b, l); }
static int mop_wait(void *o, unsigned v, int t) {
        while (nvme_ctrl_poll(manual_ctrl) > 0)
                ;
        return fake_irq_wait(o, v, 0);
}

static void test_manual_controller(void **state) {
        static const NvmeDrvOps ops = { mop_read, mop_write, mop_wait };
        FakeMem fm;
        FakeIrq irq;
        NvmeDrv d;
        NvmeCtrlConfig cfg = { .name = "manual0", .max_ioqs = 2, .msix_nvec = 3, .cntlid = 1, .manual = true };
        BlkOpenOptions o = { .path = "null", .fd = -1, .null = true, .size = 1 << 20, .null_pattern = 0x5a };
        BlkBackend *b = NULL;

        fake_mem_init(&fm, GPA, 4 << 20);
        fake_irq_init(&irq, 3);
        assert_int_equal(nvme_ctrl_new(&cfg, &manual_ctrl), 0);
        nvme_ctrl_attach(manual_ctrl, &fm.mem, fake_irq_fire, &irq);
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(nvme_ctrl_ns_add(manual_ctrl, 1, b, 512, false), 0);
        nvme_drv_init(&d, &ops, &irq, fm.host, GPA, 4 << 20);
        d.timeout_ms = 10000;
        uint64_t buf = nvme_drv_alloc(&d, 8192, 4096);
        assert_int_equal(nvme_drv_enable(&d, 8), 0);
        assert_int_equal(nvme_drv_create_io_queues(&d, 1, 8, 1), 0);
        /* Posted, not run: nothing happens until the caller polls. */
        NvmeSqe c = { .opcode = NVME_CMD_READ, .nsid = 1, .prp1 = buf, .cdw12 = 7 };
        uint16_t cid = nvme_drv_submit(&d, 1, &c);
        NvmeCqe e;
        assert_int_equal(nvme_drv_poll(&d, 1, &e), 0);
        assert_true(nvme_ctrl_poll(manual_ctrl) > 0);
        while (nvme_ctrl_poll(manual_ctrl) > 0)
                ;
        assert_int_equal(nvme_drv_poll(&d, 1, &e), 1);
        assert_int_equal(e.cid, cid);
        assert_int_equal(nvme_drv_status(&e), 0);
        assert_int_equal(((uint8_t *) nvme_drv_ptr(&d, buf))[4095], 0x5a);
        assert_int_equal(nvme_ctrl_poll(manual_ctrl), 0);
        /* Quiesced, it does nothing even when polled. */
        nvme_drv_submit(&d, 1, &c);
        nvme_ctrl_quiesce(manual_ctrl);
        assert_int_equal(nvme_ctrl_poll(manual_ctrl), 0);
        nvme_ctrl_resume(manual_ctrl);
        assert_int_equal(nvme_drv_reap(&d, 1, &e, 1000), 0);
        assert_int_equal(nvme_drv_status(&e), 0);
        /* A shutdown runs at the next poll. */
        nvme_drv_write32(&d, NVME_REG_CC, nvme_drv_read32(&d, NVME_REG_CC) | 1u << 14);
        assert_int_equal(nvme_drv_read32(&d, NVME_REG_CSTS) & NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_OCCUR);
        nvme_ctrl_poll(manual_ctrl);
        assert_int_equal(nvme_drv_read32(&d, NVME_REG_CSTS) & NVME_CSTS_SHST_MASK, NVME_CSTS_SHST_DONE);
        nvme_ctrl_free(manual_ctrl);
        fake_irq_fini(&irq);
        fake_mem_fini(&fm);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
                T(test_power_on_registers),
                T(test_cc_config_does_not_enable),
                T(test_enable_disable_cycle),
                T(test_enable_invalid_config),
                T(test_shutdown),
                T(test_identify),
                cmocka_unit_test(test_ns_ids_unique_and_stable),
                T(test_features),
                T(test_queue_errors),
                T(test_log_pages),
                T(test_io_write_read_verify),
                T(test_io_errors),
                T(test_io_sgl),
                T(test_io_flush_fua_zeroes_dsm),
                T(test_aer_namespace_changes),
                T(test_invalid_doorbells),
                cmocka_unit_test_prestate_setup_teardown(test_shadow_doorbells, setup, teardown, (void *) &poll_200us),
                T(test_shadow_doorbell_late_register),
                T(test_irq_coalescing),
                T(test_reset_with_io_in_flight),
                T(test_delete_sq_with_io_in_flight),
                T(test_cq_full_backpressure),
                cmocka_unit_test(test_manual_controller),
        };
        return cmocka_run_group_tests_name("nvme-ctrl", tests, NULL, NULL);
}
