/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The controller's migration callbacks without a server (fake guest RAM,
 * direct register access):
 *
 *   round_trip             a stopped controller's state restored into a
 *                          second one from the same definition; I/O goes
 *                          on there on the same queues and data
 *   every_field_hostile    every field of a real stream set to hostile
 *                          values, the checksum made right so the values
 *                          reach the controller's checks: each stream is
 *                          refused (controller reset, not running) or,
 *                          when the values are legal, the controller runs
 *                          on them without a sanitizer report and without
 *                          writing outside guest RAM; a reset always
 *                          brings it back
 *   arcs_outside_states    read/write outside STOP_COPY/RESUMING refused
 *   golden_stream          the stream of a controller brought up the same
 *                          way is byte for byte the one in golden/ (the
 *                          format is a promise: a stream written by an
 *                          older build must load), and loading it then
 *                          saving again gives the same bytes
 *                          (VFU_WRITE_GOLDEN=1 rewrites the file)
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "fake-mem.h"
#include "nvme-drv.h"
#include "nvme/nvme.h"
#include "state/devstate.h"

#define GPA 0x100000000ull
#define RAM (16ull << 20)
#define NVEC 5

typedef struct Ctl {
        NvmeCtrl *c;
        FakeMem fm;
        FakeIrq irq;
        NvmeDrv d;
} Ctl;

typedef struct Fx {
        char *dir;
        Ctl a, b;
} Fx;

static int op_read(void *o, uint64_t off, void *buf, size_t len) {
        return nvme_ctrl_bar0_read(((Ctl *) o)->c, off, buf, len);
}
static int op_write(void *o, uint64_t off, const void *buf, size_t len) {
        return nvme_ctrl_bar0_write(((Ctl *) o)->c, off, buf, len);
}
static int op_wait(void *o, unsigned vector, int ms) {
        return fake_irq_wait(&((Ctl *) o)->irq, vector, ms);
}
static const NvmeDrvOps direct_ops = { op_read, op_write, op_wait };

static void ctl_init(Fx *f, Ctl *k, const char *tag) {
        NvmeCtrlConfig cfg = { .name = "state0", .serial = "VFU-STATE-1", .max_ioqs = 4, .msix_nvec = NVEC,
                               .cntlid = 1 };
        memset(cfg.host_uuid, 0x33, 16);
        fake_mem_init(&k->fm, GPA, RAM);
        fake_irq_init(&k->irq, NVEC);
        assert_int_equal(nvme_ctrl_new(&cfg, &k->c), 0);
        nvme_ctrl_attach(k->c, &k->fm.mem, fake_irq_fire, &k->irq);
        for (unsigned ns = 1; ns <= 2; ns++) {
                g_autofree char *p = g_strdup_printf("%s/%s-ns%u.img", f->dir, tag, ns);
                BlkOpenOptions o = { .path = p, .fd = -1, .size = 4u << 20 };
                BlkBackend *b = NULL;
                assert_int_equal(blk_backend_open(&o, &b), 0);
                assert_int_equal(nvme_ctrl_ns_add(k->c, ns, b, ns == 1 ? 512 : 4096, false), 0);
        }
        nvme_drv_init(&k->d, &direct_ops, k, k->fm.host, GPA, RAM);
        k->d.timeout_ms = 10000;
}

static void ctl_fini(Ctl *k) {
        nvme_ctrl_free(k->c);
        fake_irq_fini(&k->irq);
        fake_mem_fini(&k->fm);
}

static int setup(void **state) {
        Fx *f = g_new0(Fx, 1);
        f->dir = g_build_filename(BUILDDIR, "tests-nvme-state-XXXXXX", NULL);
        assert_non_null(g_mkdtemp(f->dir));
        ctl_init(f, &f->a, "a");
        ctl_init(f, &f->b, "b");
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        ctl_fini(&f->a);
        ctl_fini(&f->b);
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        g_free(f->dir);
        g_free(f);
        return 0;
}

/* The server's walk: RUNNING → STOP → STOP_COPY, read everything, → STOP. */
static GByteArray *save(NvmeCtrl *c) {
        GByteArray *s = g_byte_array_new();
        uint8_t buf[333];
        ssize_t n;
        nvme_ctrl_quiesce(c);
        assert_int_equal(nvme_ctrl_mig_transition(c, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(nvme_ctrl_mig_transition(c, VU_MIG_STOP, VU_MIG_STOP_COPY), 0);
        nvme_ctrl_resume(c);
        while ((n = nvme_ctrl_mig_read(c, buf, sizeof(buf))) > 0)
                g_byte_array_append(s, buf, (guint) n);
        assert_int_equal(n, 0);
        nvme_ctrl_quiesce(c);
        assert_int_equal(nvme_ctrl_mig_transition(c, VU_MIG_STOP_COPY, VU_MIG_STOP), 0);
        nvme_ctrl_resume(c);
        return s;
}

/* RUNNING → STOP → RESUMING, the stream, → STOP (→ RUNNING when it was taken).  The STOP arc's result. */
static int restore(NvmeCtrl *c, const uint8_t *s, size_t len, bool run) {
        int r;
        nvme_ctrl_quiesce(c);
        assert_int_equal(nvme_ctrl_mig_transition(c, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(nvme_ctrl_mig_transition(c, VU_MIG_STOP, VU_MIG_RESUMING), 0);
        nvme_ctrl_resume(c);
        int werr = 0;
        for (size_t off = 0; off < len && werr == 0; off += 500)
                werr = nvme_ctrl_mig_write(c, s + off, MIN(500, len - off));
        nvme_ctrl_quiesce(c);
        r = nvme_ctrl_mig_transition(c, VU_MIG_RESUMING, VU_MIG_STOP);
        if (r == 0 && run)
                assert_int_equal(nvme_ctrl_mig_transition(c, VU_MIG_STOP, VU_MIG_RUNNING), 0);
        nvme_ctrl_resume(c);
        return werr ? werr : r;
}

/* The server's DEVICE_RESET. */
static void device_reset(NvmeCtrl *c) {
        nvme_ctrl_quiesce(c);
        nvme_ctrl_reset(c);
        nvme_ctrl_mig_reset(c);
        nvme_ctrl_resume(c);
}

static void bring_up(NvmeDrv *d) {
        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_set_features(d, 0x07, 3 | 3 << 16, NULL), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 64, 1), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 2, 16, 2), 0);
        assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        NvmeSqe aer = { .opcode = 0x0c };
        nvme_drv_submit(d, 0, &aer);
}

static void test_round_trip(void **state) {
        Fx *f = *state;
        bring_up(&f->a.d);
        uint64_t buf = nvme_drv_alloc(&f->a.d, 8192, 4096);
        memset(nvme_drv_ptr(&f->a.d, buf), 0x5a, 8192);
        assert_int_equal(nvme_drv_rw(&f->a.d, 1, true, 1, 0, 16, 512, buf, false), 0);
        /* A polled CQ (interrupts off): its vector field is unused and may be anything (§5.5). */
        uint64_t pcq = nvme_drv_alloc(&f->a.d, 4096, 4096);
        NvmeSqe ccq = { .opcode = 0x05, .prp1 = pcq, .cdw10 = 3 | (15u << 16), .cdw11 = 1 | (100u << 16) };
        assert_int_equal(nvme_drv_cmd(&f->a.d, 0, &ccq, NULL), 0);

        g_autoptr(GByteArray) s = save(f->a.c);
        g_autoptr(GString) desc = g_string_new(NULL);
        assert_int_equal(devstate_describe(s->data, s->len, desc), 0);
        assert_non_null(strstr(desc->str, "section #4 instance 2 "));        /* SQ 2 */

        /* Guest RAM and storage move; the driver with them. */
        memcpy(f->b.fm.host, f->a.fm.host, RAM);
        g_autofree char *from = g_strdup_printf("%s/a-ns1.img", f->dir), *to = g_strdup_printf("%s/b-ns1.img", f->dir);
        g_autofree char *data = NULL;
        gsize len;
        assert_true(g_file_get_contents(from, &data, &len, NULL));
        int fd = open(to, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, data, len, 0), (ssize_t) len);
        close(fd);
        assert_int_equal(restore(f->b.c, s->data, s->len, true), 0);
        assert_null(nvme_ctrl_mig_error(f->b.c));
        assert_string_equal(nvme_ctrl_state_string(f->b.c), "ready");

        NvmeDrv d = f->a.d;
        d.opaque = &f->b;
        d.ram = f->b.fm.host;
        d.db_shadow = (uint32_t *) (f->b.fm.host + ((uint8_t *) f->a.d.db_shadow - f->a.fm.host));
        d.db_ei = (uint32_t *) (f->b.fm.host + ((uint8_t *) f->a.d.db_ei - f->a.fm.host));
        for (unsigned q = 0; q <= 2; q++) {
                d.q[q].sq = nvme_drv_ptr(&d, d.q[q].sq_gpa);
                d.q[q].cq = nvme_drv_ptr(&d, d.q[q].cq_gpa);
        }
        uint64_t rd = nvme_drv_alloc(&d, 8192, 4096);
        for (unsigned q = 1; q <= 2; q++) {
                memset(nvme_drv_ptr(&d, rd), 0, 8192);
                assert_int_equal(nvme_drv_rw(&d, (uint16_t) q, false, 1, 0, 16, 512, rd, false), 0);
                assert_memory_equal(nvme_drv_ptr(&d, rd), nvme_drv_ptr(&d, buf), 8192);
        }
        /* The source, never resumed, is stopped: a doorbell does nothing until RUNNING. */
        assert_int_equal(nvme_ctrl_mig_state(f->a.c), VU_MIG_STOP);
}

/*
 * A host may write AQA/ASQ/ACQ and CC's other fields while the controller
 * is enabled (they take effect at the next enable): the state it then
 * saves must load, with the admin queues where they are and the registers
 * as written.  (Found by fuzz-nvme-prog: the load refused admin queues that
 * did not match them, and a CC.MPS or CC.CSS other than 0.)
 */
static void test_admin_registers_rewritten(void **state) {
        Fx *f = *state;
        bring_up(&f->a.d);
        nvme_drv_write32(&f->a.d, NVME_REG_ACQ + 4, 0xf4f4f4f4u);
        nvme_drv_write32(&f->a.d, NVME_REG_AQA, 0x00070007u);
        /* And CC with EN kept but another page size and command set (§3.1.5: used at enable only). */
        nvme_drv_write32(&f->a.d, NVME_REG_CC, nvme_drv_read32(&f->a.d, NVME_REG_CC) | 5u << 4 | 3u << 7);
        g_autoptr(GByteArray) s = save(f->a.c);
        memcpy(f->b.fm.host, f->a.fm.host, RAM);
        assert_int_equal(restore(f->b.c, s->data, s->len, true), 0);
        assert_null(nvme_ctrl_mig_error(f->b.c));
        assert_string_equal(nvme_ctrl_state_string(f->b.c), "ready");
        uint32_t v = 0;
        assert_int_equal(nvme_ctrl_bar0_read(f->b.c, NVME_REG_ACQ + 4, &v, 4), 0);
        assert_int_equal(v, 0xf4f4f4f4u);
        /* The admin queue still works where it was created. */
        NvmeDrv d = f->a.d;
        d.opaque = &f->b;
        d.ram = f->b.fm.host;
        d.db_shadow = (uint32_t *) (f->b.fm.host + ((uint8_t *) f->a.d.db_shadow - f->a.fm.host));
        d.db_ei = (uint32_t *) (f->b.fm.host + ((uint8_t *) f->a.d.db_ei - f->a.fm.host));
        for (unsigned q = 0; q <= 2; q++) {
                d.q[q].sq = nvme_drv_ptr(&d, d.q[q].sq_gpa);
                d.q[q].cq = nvme_drv_ptr(&d, d.q[q].cq_gpa);
        }
        uint64_t id = nvme_drv_alloc(&d, 4096, 4096);
        assert_int_equal(nvme_drv_identify(&d, 1, 0, id), 0);
}

typedef struct FieldPos {
        size_t off;
        uint32_t len;
} FieldPos;

/* Every field value in a stream (framing per devstate.h). */
static GArray *fields_of(const GByteArray *s) {
        GArray *out = g_array_new(false, false, sizeof(FieldPos));
        const uint8_t *p = s->data;
        size_t off = 12;
        uint16_t l16;
        memcpy(&l16, p + off, 2);
        off += 2 + l16;
        memcpy(&l16, p + off, 2);
        off += 2 + l16;
        while (off + 12 <= s->len) {
                uint16_t id;
                uint32_t len;
                memcpy(&id, p + off, 2);
                memcpy(&len, p + off + 8, 4);
                if (id == 0)
                        break;
                for (size_t q = off + 12; q + 8 <= off + 12 + len;) {
                        uint32_t flen;
                        memcpy(&flen, p + q + 4, 4);
                        FieldPos fp = { q + 8, flen };
                        g_array_append_val(out, fp);
                        q += 8 + flen;
                }
                off += 12 + len;
        }
        return out;
}

static void test_every_field_hostile(void **state) {
        Fx *f = *state;
        bring_up(&f->a.d);
        g_autoptr(GByteArray) good = save(f->a.c);
        g_autoptr(GArray) fields = fields_of(good);
        static const uint64_t values[] = { 0, 1, 2, 3, 4, 5, 63, 64, 65, 1023, 1024, 1025, 4095, 4096, 0x7fff, 0xffff,
                                           0x10000, 0xffffffffu, 0x100000000ull, GPA - 4096, GPA + RAM - 4096, GPA + RAM,
                                           UINT64_MAX };
        unsigned refused = 0, accepted = 0;

        memcpy(f->b.fm.host, f->a.fm.host, RAM);
        assert_true(fields->len > 50);
        for (guint i = 0; i < fields->len; i++) {
                FieldPos fp = g_array_index(fields, FieldPos, i);
                for (size_t k = 0; k < G_N_ELEMENTS(values) + 2; k++) {
                        g_autoptr(GByteArray) m = g_byte_array_new();
                        g_byte_array_append(m, good->data, good->len);
                        if (k < G_N_ELEMENTS(values)) {
                                if (fp.len > 8 && k > 2)
                                        continue;
                                uint8_t v[8];
                                memcpy(v, &values[k], 8);
                                if (fp.len == 1 && values[k] > 1 && k > 8)
                                        continue;       /* bytes: a few values are enough */
                                memcpy(m->data + fp.off, v, MIN(fp.len, 8));
                                if (fp.len > 8)
                                        memset(m->data + fp.off, k == 0 ? 0 : 0xff, fp.len);
                        } else if (fp.len > 0) {
                                m->data[fp.off + (k & 1 ? fp.len - 1 : 0)] ^= 0x81;
                        }
                        uint32_t crc = devstate_crc32c(0, m->data, m->len - 4);
                        memcpy(m->data + m->len - 4, &crc, 4);
                        int r = restore(f->b.c, m->data, m->len, true);
                        if (r < 0) {
                                refused++;
                                assert_non_null(nvme_ctrl_mig_error(f->b.c));
                                assert_int_equal(nvme_ctrl_mig_state(f->b.c), VU_MIG_ERROR);
                                assert_string_equal(nvme_ctrl_state_string(f->b.c), "disabled");
                                uint32_t csts = 0;
                                assert_int_equal(nvme_ctrl_bar0_read(f->b.c, 0x1c, &csts, 4), 0);
                                assert_int_equal(csts & 1, 0);
                        } else {
                                accepted++;
                                /* Let it run on the values: doorbells on every queue, then look. */
                                for (uint32_t db = 0; db < 10; db++) {
                                        uint32_t v = db & 1 ? 1 : 0;
                                        assert_int_equal(nvme_ctrl_bar0_write(f->b.c, 0x1000 + 4 * db, &v, 4), 0);
                                }
                                nvme_ctrl_quiesce(f->b.c);
                                nvme_ctrl_resume(f->b.c);
                        }
                        device_reset(f->b.c);
                        assert_int_equal(nvme_ctrl_mig_state(f->b.c), VU_MIG_RUNNING);
                        memcpy(f->b.fm.host, f->a.fm.host, RAM);
                }
        }
        print_message("%u fields, %u streams refused, %u accepted and run\n", fields->len, refused, accepted);
        assert_true(refused > 100);
        /* And the good stream still restores after all that. */
        assert_int_equal(restore(f->b.c, good->data, good->len, true), 0);
        assert_string_equal(nvme_ctrl_state_string(f->b.c), "ready");
}

static void test_arcs_outside_states(void **state) {
        Fx *f = *state;
        uint8_t buf[64];
        assert_int_equal(nvme_ctrl_mig_state(f->a.c), VU_MIG_RUNNING);
        assert_int_equal(nvme_ctrl_mig_read(f->a.c, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(nvme_ctrl_mig_write(f->a.c, buf, sizeof(buf)), -EINVAL);
        /* RESUMING → STOP with nothing received: refused, controller reset. */
        nvme_ctrl_quiesce(f->a.c);
        assert_int_equal(nvme_ctrl_mig_transition(f->a.c, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(nvme_ctrl_mig_transition(f->a.c, VU_MIG_STOP, VU_MIG_RESUMING), 0);
        assert_true(nvme_ctrl_mig_transition(f->a.c, VU_MIG_RESUMING, VU_MIG_STOP) < 0);
        nvme_ctrl_resume(f->a.c);
        assert_non_null(nvme_ctrl_mig_error(f->a.c));
        assert_int_equal(nvme_ctrl_mig_state(f->a.c), VU_MIG_ERROR);
        device_reset(f->a.c);
        /* Running again: the controller comes up. */
        bring_up(&f->a.d);
}

#define GOLDEN SOURCE_DIR "/golden/nvme-ctrl-v1.bin"

/*
 * The stream of c once it equals want: a doorbell the driver wrote last may
 * not have reached the I/O thread yet (saved as pending, a few bytes more),
 * so save, and while it differs run on a moment and save again.
 */
static GByteArray *save_settled(NvmeCtrl *c, const uint8_t *want, size_t len) {
        for (unsigned i = 0;; i++) {
                GByteArray *s = save(c);
                if (i == 100 || (s->len == len && memcmp(s->data, want, len) == 0))
                        return s;
                g_byte_array_unref(s);
                nvme_ctrl_quiesce(c);
                assert_int_equal(nvme_ctrl_mig_transition(c, VU_MIG_STOP, VU_MIG_RUNNING), 0);
                nvme_ctrl_resume(c);
                g_usleep(10000);
        }
}

static void test_golden_stream(void **state) {
        Fx *f = *state;
        g_autofree char *golden = NULL;
        gsize len;

        bring_up(&f->a.d);
        /* Admin commands run in order: once this one completed, the AER before it is outstanding. */
        NvmeSqe gf = { .opcode = 0x0a, .cdw10 = 0x07 };
        assert_int_equal(nvme_drv_cmd(&f->a.d, 0, &gf, NULL), 0);
        if (g_getenv("VFU_WRITE_GOLDEN")) {
                g_usleep(500000);
                g_autoptr(GByteArray) w = save(f->a.c);
                assert_true(g_file_set_contents(GOLDEN, (const char *) w->data, w->len, NULL));
                nvme_ctrl_quiesce(f->a.c);
                assert_int_equal(nvme_ctrl_mig_transition(f->a.c, VU_MIG_STOP, VU_MIG_RUNNING), 0);
                nvme_ctrl_resume(f->a.c);
        }
        assert_true(g_file_get_contents(GOLDEN, &golden, &len, NULL));
        g_autoptr(GByteArray) s = save_settled(f->a.c, (const uint8_t *) golden, len);
        assert_int_equal(s->len, len);
        assert_memory_equal(s->data, golden, len);

        /* The golden stream restores into a second controller, which saves it again unchanged. */
        memcpy(f->b.fm.host, f->a.fm.host, RAM);
        assert_int_equal(restore(f->b.c, (const uint8_t *) golden, len, true), 0);
        assert_null(nvme_ctrl_mig_error(f->b.c));
        g_autoptr(GByteArray) again = save_settled(f->b.c, (const uint8_t *) golden, len);
        assert_int_equal(again->len, len);
        assert_memory_equal(again->data, golden, len);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_registers_rewritten, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_field_hostile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_arcs_outside_states, setup, teardown),
                cmocka_unit_test_setup_teardown(test_golden_stream, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
