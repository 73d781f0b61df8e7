/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DevStateMig, the device side of migration v2, with a toy device whose
 * state is the sample stream: every direct arc the server may call, what
 * each holds or releases, the stream out and in, and refusals that leave
 * the device reset and held until a device reset; the optional hooks (told
 * when the hold begins and ends, told of a refusal once); sections saved
 * and loaded by table.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "sample.h"
#include "state/devstate-mig.h"

typedef struct Toy {
        DevStateMig mig;
        unsigned resets, loads;
        unsigned holds, releases, refusals;     /* hook calls */
        bool held;
        bool loaded;                    /* applied a checked stream */
        int fail_save;
} Toy;

static int toy_save(void *opaque, DevStateWriter **out) {
        Toy *t = opaque;

        if (t->fail_save)
                return t->fail_save;
        *out = sample_write();
        return 0;
}

static DevStateReader *toy_reader(void *opaque) {
        return sample_reader();
}

static int toy_load(void *opaque, DevStateReader *r) {
        Toy *t = opaque;
        int ret = devstate_reader_finish(r);

        t->loads++;
        if (ret == 0 && sample_check(r) < 0)
                ret = devstate_reader_fail(r, -EINVAL, "sample values differ");
        if (ret < 0) {
                t->resets++;            /* the contract: refused means reset */
                t->loaded = false;
                return ret;
        }
        t->loaded = true;
        return 0;
}

static void toy_reset(void *opaque) {
        Toy *t = opaque;

        t->resets++;
        t->loaded = false;
}

static const DevStateMigOps toy_ops = {
        .save = toy_save,
        .reader = toy_reader,
        .load = toy_load,
        .reset = toy_reset,
};

static void toy_hold(void *opaque, bool on) {
        Toy *t = opaque;

        assert_true(on != t->held);             /* told only of changes */
        t->held = on;
        if (on)
                t->holds++;
        else
                t->releases++;
}

static void toy_refused(void *opaque, const char *why) {
        Toy *t = opaque;

        assert_non_null(why);
        t->refusals++;
}

static const DevStateMigOps toy_hook_ops = {
        .save = toy_save,
        .reader = toy_reader,
        .load = toy_load,
        .reset = toy_reset,
        .hold = toy_hold,
        .refused = toy_refused,
};

static int setup(void **state) {
        Toy *t = g_new0(Toy, 1);

        devstate_mig_init(&t->mig, &toy_ops, t, "toy");
        *state = t;
        return 0;
}

static int teardown(void **state) {
        Toy *t = *state;

        devstate_mig_fini(&t->mig);
        g_free(t);
        return 0;
}

static GByteArray *stream_of(DevStateMig *m, size_t piece) {
        GByteArray *s = g_byte_array_new();
        uint8_t buf[64];
        ssize_t n;

        while ((n = devstate_mig_read(m, buf, MIN(piece, sizeof(buf)))) > 0)
                g_byte_array_append(s, buf, (guint) n);
        assert_int_equal(n, 0);
        return s;
}

static void arcs(void **state) {
        Toy *t = *state;
        DevStateMig *m = &t->mig;
        uint8_t b;

        assert_true(devstate_mig_may_run(m));
        assert_int_equal(devstate_mig_read(m, &b, 1), -EINVAL);          /* not saving */
        assert_int_equal(devstate_mig_write(m, &b, 1), -EINVAL);         /* not resuming */
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_PRE_COPY), 0);
        assert_true(devstate_mig_may_run(m));
        assert_int_equal(devstate_mig_read(m, &b, 1), 0);                /* empty until stopped */
        assert_int_equal(devstate_mig_transition(m, VU_MIG_PRE_COPY, VU_MIG_RUNNING), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_false(devstate_mig_may_run(m));
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RUNNING), 0);
        assert_true(devstate_mig_may_run(m));
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_PRE_COPY), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_PRE_COPY, VU_MIG_STOP_COPY), 0);
        assert_false(devstate_mig_may_run(m));
        {
                g_autoptr(GByteArray) s = stream_of(m, 7);
                g_autoptr(DevStateWriter) w = sample_write();
                size_t len;
                const uint8_t *d = devstate_writer_data(w, &len);

                assert_int_equal(s->len, len);
                assert_memory_equal(s->data, d, len);
        }
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP_COPY, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_read(m, &b, 1), -EINVAL);          /* the stream is gone */
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_STOP_COPY), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP_COPY, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RESUMING), 0);
        assert_int_equal(t->resets, 1);
        assert_false(devstate_mig_may_run(m));
        /* Not a direct arc: a caller bug, refused, and the device held in ERROR. */
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_ERROR), -EINVAL);
        assert_int_equal(m->state, VU_MIG_ERROR);
        assert_false(devstate_mig_may_run(m));
        devstate_mig_reset(m);
        assert_int_equal(m->state, VU_MIG_RUNNING);
        assert_true(devstate_mig_may_run(m));
}

/* The server's walk from RUNNING to RESUMING. */
static void to_resuming(DevStateMig *m) {
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RESUMING), 0);
}

/* A good stream in pieces of 10 bytes. */
static void feed(DevStateMig *m, const uint8_t *d, size_t len) {
        for (size_t off = 0; off < len; off += 10)
                assert_int_equal(devstate_mig_write(m, d + off, MIN(10, len - off)), 0);
}

/* The sample stream in, in pieces: checked, applied, held until RUNNING. */
static void resume(void **state) {
        Toy *t = *state;
        DevStateMig *m = &t->mig;
        g_autoptr(DevStateWriter) w = sample_write();
        size_t len;
        const uint8_t *d = devstate_writer_data(w, &len);

        to_resuming(m);
        feed(m, d, len);
        assert_false(t->loaded);                        /* nothing applied before the end */
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_STOP), 0);
        assert_true(t->loaded);
        assert_null(devstate_mig_error(m));
        assert_false(devstate_mig_may_run(m));
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RUNNING), 0);
        assert_true(devstate_mig_may_run(m));
}

/* Refusals: early (bad header) or at the end (truncated); the device is reset and held in ERROR. */
static void refuse(void **state) {
        Toy *t = *state;
        DevStateMig *m = &t->mig;
        g_autoptr(DevStateWriter) w = sample_write();
        size_t len;
        const uint8_t *d = devstate_writer_data(w, &len);

        to_resuming(m);
        assert_int_equal(devstate_mig_write(m, "garbage", 7), -EBADMSG);
        assert_non_null(strstr(devstate_mig_error(m), "bad magic"));
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_STOP), -EBADMSG);
        assert_int_equal(m->state, VU_MIG_ERROR);
        assert_false(t->loaded);
        assert_false(devstate_mig_may_run(m));
        devstate_mig_reset(m);

        /* A new RESUMING forgets the old refusal; a truncated stream fails at the end. */
        to_resuming(m);
        assert_null(devstate_mig_error(m));
        assert_int_equal(devstate_mig_write(m, d, len - 1), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_STOP), -ENODATA);
        assert_non_null(strstr(devstate_mig_error(m), "truncated"));
        assert_false(t->loaded);
        devstate_mig_reset(m);

        /* A failing save fails STOP_COPY the same way. */
        t->fail_save = -ENOMEM;
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_STOP_COPY), -ENOMEM);
        assert_int_equal(m->state, VU_MIG_ERROR);
        {
                uint8_t b;
                assert_int_equal(devstate_mig_read(m, &b, 1), -EINVAL);
        }
}

/* The hooks: hold told at its start and end only, a refusal told once, a failed arc out of RESUMING resets. */
static void hooks(void **state) {
        Toy *t = *state;
        DevStateMig *m = &t->mig;
        g_autoptr(DevStateWriter) w = sample_write();
        size_t len;
        const uint8_t *d = devstate_writer_data(w, &len);

        devstate_mig_fini(m);
        devstate_mig_init(m, &toy_hook_ops, t, "toy");
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_PRE_COPY), 0);
        assert_int_equal(t->holds, 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_PRE_COPY, VU_MIG_STOP_COPY), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP_COPY, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RESUMING), 0);
        assert_true(t->held);
        assert_int_equal(t->holds, 1);
        feed(m, d, len);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RUNNING), 0);
        assert_false(t->held);
        assert_int_equal(t->holds, 1);
        assert_int_equal(t->releases, 1);
        assert_int_equal(t->refusals, 0);

        /* Refused while arriving and again at the end: told once. */
        to_resuming(m);
        assert_int_equal(devstate_mig_write(m, "garbage", 7), -EBADMSG);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_STOP), -EBADMSG);
        assert_int_equal(t->refusals, 1);
        assert_true(t->held);
        devstate_mig_reset(m);
        assert_false(t->held);
        assert_int_equal(t->releases, 2);

        /* Not a direct arc out of RESUMING: refused, and the device reset. */
        to_resuming(m);
        unsigned resets = t->resets;
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_ERROR), -EINVAL);
        assert_int_equal(t->resets, resets + 1);
        assert_int_equal(m->state, VU_MIG_ERROR);
        assert_true(t->held);
        devstate_mig_reset(m);
        assert_false(t->held);
}

/* A section as a struct. */
typedef struct Rec {
        uint8_t a;
        uint16_t b;
        uint32_t c;
        uint64_t d;
        bool e;
        uint32_t list[4];
        unsigned n_list;
        uint8_t id[6];
        bool has_opt;
        uint32_t opt;
} Rec;

static const DevStateFieldSpec rec_fields[] = {
        { 1, DEVSTATE_T_U8, "a", 0, true },
        { 2, DEVSTATE_T_U16, "b", 0, true },
        { 3, DEVSTATE_T_U32, "c", 0, true },
        { 4, DEVSTATE_T_U64, "d", 0, true },
        { 5, DEVSTATE_T_BOOL, "e", 0, true },
        { 6, DEVSTATE_T_BYTES, "list", 64, true },
        { 7, DEVSTATE_T_BYTES, "id", 64, true },
        { 8, DEVSTATE_T_U32, "opt", 0, false },
};

static const DevStateSectionSpec rec_sections[] = {
        { 1, "rec", 1, true, rec_fields, G_N_ELEMENTS(rec_fields) },
};

static const DevStateFieldMap rec_map[] = {
        { 1, DEVSTATE_T_U8, "a", offsetof(Rec, a), sizeof(uint8_t), 0, 0, false, 0 },
        { 2, DEVSTATE_T_U16, "b", offsetof(Rec, b), sizeof(uint16_t), 0, 0, false, 0 },
        { 3, DEVSTATE_T_U32, "c", offsetof(Rec, c), sizeof(uint32_t), 0, 0, false, 0 },
        { 4, DEVSTATE_T_U64, "d", offsetof(Rec, d), sizeof(uint64_t), 0, 0, false, 0 },
        { 5, DEVSTATE_T_BOOL, "e", offsetof(Rec, e), sizeof(bool), 0, 0, false, 0 },
        { 6, DEVSTATE_T_BYTES, "the list", offsetof(Rec, list), sizeof(((Rec *) 0)->list), sizeof(uint32_t),
          offsetof(Rec, n_list), false, 0 },
        { 7, DEVSTATE_T_BYTES, "the identity", offsetof(Rec, id), 6, 0, 0, false, 0 },
        { 8, DEVSTATE_T_U32, "opt", offsetof(Rec, opt), sizeof(uint32_t), 0, 0, true, offsetof(Rec, has_opt) },
};

/* Write rec through the map, or (raw) with its own list and identity bytes; read it back into out. */
static int rec_round_trip(const Rec *rec, const void *list, size_t list_len, size_t id_len, Rec *out,
                          char **why) {
        g_autoptr(DevStateWriter) w = devstate_writer_new("rec", NULL);
        g_autoptr(DevStateReader) r = devstate_reader_new("rec", NULL, 0);
        size_t len;
        const uint8_t *d;
        int ret;

        devstate_writer_begin(w, 1, 0, DEVSTATE_F_MANDATORY);
        if (!list) {
                assert_int_equal(devstate_put_mapped(w, rec_map, G_N_ELEMENTS(rec_map), rec), 0);
        } else {
                assert_int_equal(devstate_put_mapped(w, rec_map, 5, rec), 0);
                devstate_put_bytes(w, 6, list, list_len);
                devstate_put_bytes(w, 7, rec->id, id_len);
        }
        devstate_writer_end(w);
        assert_int_equal(devstate_writer_finish(w), 0);
        d = devstate_writer_data(w, &len);
        assert_int_equal(devstate_reader_add_sections(r, rec_sections, G_N_ELEMENTS(rec_sections)), 0);
        assert_int_equal(devstate_reader_feed(r, d, len), 0);
        assert_int_equal(devstate_reader_finish(r), 0);
        memset(out, 0xee, sizeof(*out));
        ret = devstate_get_mapped(r, devstate_reader_find(r, 1, 0), rec_map, G_N_ELEMENTS(rec_map), out);
        if (why)
                *why = g_strdup(devstate_reader_error(r));
        return ret;
}

static void mapped(void **state) {
        Rec in = { .a = 0xa1, .b = 0xb2b3, .c = 0xc4c5c6c7, .d = 0xd8d9dadbdcdddedfull, .e = true,
                   .list = { 11, 22, 33 }, .n_list = 3, .id = "abcde", .has_opt = true, .opt = 77 };
        Rec out;
        uint32_t five[5] = { 1, 2, 3, 4, 5 };
        g_autofree char *why = NULL;

        assert_int_equal(rec_round_trip(&in, NULL, 0, 0, &out, NULL), 0);
        assert_int_equal(out.a, in.a);
        assert_int_equal(out.b, in.b);
        assert_int_equal(out.c, in.c);
        assert_true(out.d == in.d);
        assert_true(out.e);
        assert_int_equal(out.n_list, 3);
        assert_memory_equal(out.list, in.list, 3 * sizeof(uint32_t));
        assert_memory_equal(out.id, in.id, 6);
        assert_true(out.has_opt);
        assert_int_equal(out.opt, 77);

        /* An optional field left out reads back as absent. */
        in.has_opt = false;
        in.n_list = 0;
        assert_int_equal(rec_round_trip(&in, NULL, 0, 0, &out, NULL), 0);
        assert_false(out.has_opt);
        assert_int_equal(out.n_list, 0);

        /* Lists too long or not whole entries, bytes of another length: refused with the field's name. */
        assert_int_equal(rec_round_trip(&in, five, sizeof(five), 6, &out, &why), -EINVAL);
        assert_non_null(strstr(why, "the list: 20 bytes is not a list of at most 4 entries"));
        g_clear_pointer(&why, g_free);
        assert_int_equal(rec_round_trip(&in, five, 6, 6, &out, &why), -EINVAL);
        assert_non_null(strstr(why, "the list: 6 bytes"));
        g_clear_pointer(&why, g_free);
        assert_int_equal(rec_round_trip(&in, five, 8, 5, &out, &why), -EINVAL);
        assert_non_null(strstr(why, "the identity: 5 bytes, expected 6"));

        /* A list count beyond the array is the caller's bug: refused, nothing written past it. */
        {
                g_autoptr(DevStateWriter) w = devstate_writer_new("rec", NULL);
                in.n_list = 5;
                devstate_writer_begin(w, 1, 0, DEVSTATE_F_MANDATORY);
                assert_int_equal(devstate_put_mapped(w, rec_map, G_N_ELEMENTS(rec_map), &in), -EINVAL);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(arcs, setup, teardown),
                cmocka_unit_test_setup_teardown(resume, setup, teardown),
                cmocka_unit_test_setup_teardown(refuse, setup, teardown),
                cmocka_unit_test_setup_teardown(hooks, setup, teardown),
                cmocka_unit_test(mapped),
        };

        return cmocka_run_group_tests_name("devstate-mig", tests, NULL, NULL);
}
