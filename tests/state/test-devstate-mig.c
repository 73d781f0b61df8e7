/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DevStateMig, the device side of migration v2, with a toy device whose
 * state is the sample stream: every direct arc the server may call, what
 * each holds or releases, the stream out and in, and refusals that leave
 * the device reset and held until a device reset.
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

/* The sample stream in, in pieces: checked, applied, held until RUNNING. */
static void resume(void **state) {
        Toy *t = *state;
        DevStateMig *m = &t->mig;
        g_autoptr(DevStateWriter) w = sample_write();
        size_t len;
        const uint8_t *d = devstate_writer_data(w, &len);

        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RESUMING), 0);
        for (size_t off = 0; off < len; off += 10)
                assert_int_equal(devstate_mig_write(m, d + off, MIN(10, len - off)), 0);
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

        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RESUMING), 0);
        assert_int_equal(devstate_mig_write(m, "garbage", 7), -EBADMSG);
        assert_non_null(strstr(devstate_mig_error(m), "bad magic"));
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RESUMING, VU_MIG_STOP), -EBADMSG);
        assert_int_equal(m->state, VU_MIG_ERROR);
        assert_false(t->loaded);
        assert_false(devstate_mig_may_run(m));
        devstate_mig_reset(m);

        /* A new RESUMING forgets the old refusal; a truncated stream fails at the end. */
        assert_int_equal(devstate_mig_transition(m, VU_MIG_RUNNING, VU_MIG_STOP), 0);
        assert_int_equal(devstate_mig_transition(m, VU_MIG_STOP, VU_MIG_RESUMING), 0);
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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(arcs, setup, teardown),
                cmocka_unit_test_setup_teardown(resume, setup, teardown),
                cmocka_unit_test_setup_teardown(refuse, setup, teardown),
        };

        return cmocka_run_group_tests_name("devstate-mig", tests, NULL, NULL);
}
