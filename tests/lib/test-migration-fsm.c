/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The migration v2 state graph: every pair of states, legal or not. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vfio-user/migration-fsm.h"
#include "vfio-user/migration.h"

#define S VU_MIG_STOP
#define R VU_MIG_RUNNING
#define SC VU_MIG_STOP_COPY
#define RS VU_MIG_RESUMING
#define PC VU_MIG_PRE_COPY

typedef struct Case {
        int from, to;
        int n;                  /* -1: refused */
        int path[4];
} Case;

/* The expected shortest paths (linux/vfio.h vfio_mig_get_next_state without P2P). */
static const Case cases[] = {
        { R, R, 0, { 0 } },   { R, S, 1, { S } },       { R, SC, 2, { S, SC } },   { R, RS, 2, { S, RS } },
        { R, PC, 1, { PC } },
        { S, S, 0, { 0 } },   { S, R, 1, { R } },       { S, SC, 1, { SC } },      { S, RS, 1, { RS } },
        { S, PC, 2, { R, PC } },
        { SC, SC, 0, { 0 } }, { SC, S, 1, { S } },      { SC, R, 2, { S, R } },    { SC, RS, 2, { S, RS } },
        { SC, PC, -1, { 0 } },
        { RS, RS, 0, { 0 } }, { RS, S, 1, { S } },      { RS, R, 2, { S, R } },    { RS, SC, 2, { S, SC } },
        { RS, PC, 3, { S, R, PC } },
        { PC, PC, 0, { 0 } }, { PC, R, 1, { R } },      { PC, S, 2, { R, S } },    { PC, SC, 1, { SC } },
        { PC, RS, 3, { R, S, RS } },
};

static void test_all_pairs(void **state) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                enum vu_mig_state path[VU_MIG_MAX_PATH];
                int n = vu_mig_path(cases[i].from, cases[i].to, path);
                enum vu_mig_state cur = cases[i].from;

                if (cases[i].n < 0) {
                        assert_int_equal(n, -EINVAL);
                        continue;
                }
                assert_int_equal(n, cases[i].n);
                for (int k = 0; k < n; k++) {
                        assert_int_equal(path[k], cases[i].path[k]);
                        assert_true(vu_mig_arc(cur, path[k]));
                        cur = path[k];
                }
        }
}

static void test_unsupported(void **state) {
        enum vu_mig_state path[VU_MIG_MAX_PATH];
        int bad[] = { VU_MIG_ERROR, VU_MIG_RUNNING_P2P, VU_MIG_PRE_COPY_P2P, 8, 1000 };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(vu_mig_path(R, bad[i], path), -EINVAL);
                assert_int_equal(vu_mig_path(bad[i], R, path), -EINVAL);
        }
        assert_false(vu_mig_arc(SC, PC));
        assert_false(vu_mig_arc(R, SC));
        assert_false(vu_mig_arc(VU_MIG_ERROR, R));
        assert_string_equal(vu_mig_state_to_string(VU_MIG_STOP_COPY), "stop-copy");
        assert_null(vu_mig_state_to_string(_VU_MIG_STATE_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_all_pairs),
                cmocka_unit_test(test_unsupported),
        };

        return cmocka_run_group_tests_name("migration-fsm", tests, NULL, NULL);
}
