/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The descriptor walker: split and packed chains, good and hostile. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake-mem.h"
#include "virtio/vq-walk.h"

#define QSZ 16
#define RAM_GPA 0x100000
#define RAM_SIZE (1 << 20)

typedef struct Fx {
        FakeMem m;
        VqWalkCtx ctx;
        VqDescSplit *split;
        VqDescPacked *packed;
        VqChain c;
        uint64_t buf;
} Fx;

static int setup(void **state) {
        Fx *f = calloc(1, sizeof(*f));
        fake_mem_init(&f->m, RAM_GPA, RAM_SIZE);
        f->split = fake_mem_ptr(&f->m, fake_mem_alloc(&f->m, 16 * QSZ, 16));
        f->packed = (VqDescPacked *) f->split;
        f->buf = fake_mem_alloc(&f->m, 64 * 1024, 4096);
        f->ctx = (VqWalkCtx) { .mem = &f->m.mem, .qsize = QSZ, .indirect = true };
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        fake_mem_fini(&f->m);
        free(f);
        return 0;
}

static void sd(VqDescSplit *d, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        *d = (VqDescSplit) { .addr = addr, .len = len, .flags = flags, .next = next };
}

static void split_chain(void **state) {
        Fx *f = *state;

        sd(&f->split[3], f->buf, 12, VIRTQ_DESC_F_NEXT, 7);
        sd(&f->split[7], f->buf + 100, 1000, VIRTQ_DESC_F_NEXT, 1);
        sd(&f->split[1], f->buf + 2000, 1500, VIRTQ_DESC_F_WRITE, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 3, &f->c), 0);
        assert_int_equal(f->c.id, 3);
        assert_int_equal(f->c.out_num, 2);
        assert_int_equal(f->c.in_num, 1);
        assert_int_equal(f->c.out_len, 1012);
        assert_int_equal(f->c.in_len, 1500);
        assert_ptr_equal(f->c.iov[0].iov_base, fake_mem_ptr(&f->m, f->buf));
        assert_ptr_equal(vq_chain_in(&f->c)[0].iov_base, fake_mem_ptr(&f->m, f->buf + 2000));
}

static void split_loop(void **state) {
        Fx *f = *state;

        sd(&f->split[0], f->buf, 10, VIRTQ_DESC_F_NEXT, 1);
        sd(&f->split[1], f->buf, 10, VIRTQ_DESC_F_NEXT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), -EINVAL);
        /* A self-loop too. */
        sd(&f->split[5], f->buf, 10, VIRTQ_DESC_F_NEXT, 5);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 5, &f->c), -EINVAL);
}

static void split_too_long(void **state) {
        Fx *f = *state;

        /* QSZ descriptors are fine; the walker must not accept more (only possible with a loop). */
        for (unsigned i = 0; i < QSZ; i++)
                sd(&f->split[i], f->buf + i, 1, i + 1 < QSZ ? VIRTQ_DESC_F_NEXT : 0, (uint16_t) (i + 1));
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), 0);
        assert_int_equal(f->c.out_num, QSZ);
        sd(&f->split[QSZ - 1], f->buf, 1, VIRTQ_DESC_F_NEXT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), -EINVAL);
}

static void split_out_of_range(void **state) {
        Fx *f = *state;

        /* head, next index, buffer address, address overflow, crossing the end of RAM */
        assert_int_equal(vq_walk_split(&f->ctx, f->split, QSZ, &f->c), -EINVAL);
        sd(&f->split[0], f->buf, 10, VIRTQ_DESC_F_NEXT, QSZ);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), -EINVAL);
        sd(&f->split[0], 0x1000, 10, 0, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), -EFAULT);
        sd(&f->split[0], UINT64_MAX - 4, 10, 0, 0);
        assert_true(vq_walk_split(&f->ctx, f->split, 0, &f->c) < 0);
        sd(&f->split[0], RAM_GPA + RAM_SIZE - 8, 16, VIRTQ_DESC_F_WRITE, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), -EFAULT);
}

static void split_order(void **state) {
        Fx *f = *state;

        /* 2.7.4.2: a readable descriptor after a writable one. */
        sd(&f->split[0], f->buf, 10, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
        sd(&f->split[1], f->buf, 10, 0, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), -EINVAL);
}

static void split_indirect(void **state) {
        Fx *f = *state;
        uint64_t tgpa = fake_mem_alloc(&f->m, 16 * 4, 16);
        VqDescSplit *t = fake_mem_ptr(&f->m, tgpa);

        sd(&t[0], f->buf, 12, VIRTQ_DESC_F_NEXT, 2);
        sd(&t[2], f->buf + 12, 100, VIRTQ_DESC_F_NEXT, 1);
        sd(&t[1], f->buf + 200, 300, VIRTQ_DESC_F_WRITE, 0);
        sd(&f->split[4], tgpa, 16 * 4, VIRTQ_DESC_F_INDIRECT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), 0);
        assert_int_equal(f->c.out_len, 112);
        assert_int_equal(f->c.in_len, 300);
        assert_int_equal(f->c.id, 4);

        /* Direct descriptors before the indirect one. */
        sd(&f->split[2], f->buf + 4000, 8, VIRTQ_DESC_F_NEXT, 4);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 2, &f->c), 0);
        assert_int_equal(f->c.out_len, 120);

        /* Not negotiated. */
        f->ctx.indirect = false;
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EINVAL);
        f->ctx.indirect = true;

        /* INDIRECT with NEXT, bad table lengths, table outside RAM. */
        sd(&f->split[4], tgpa, 16 * 4, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EINVAL);
        sd(&f->split[4], tgpa, 17, VIRTQ_DESC_F_INDIRECT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EINVAL);
        sd(&f->split[4], tgpa, 0, VIRTQ_DESC_F_INDIRECT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EINVAL);
        sd(&f->split[4], 0x2000, 64, VIRTQ_DESC_F_INDIRECT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EFAULT);

        /* Indirect in indirect. */
        sd(&t[1], tgpa, 64, VIRTQ_DESC_F_INDIRECT, 0);
        sd(&f->split[4], tgpa, 16 * 4, VIRTQ_DESC_F_INDIRECT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EINVAL);

        /* A loop inside the table, and next beyond it. */
        sd(&t[1], f->buf, 10, VIRTQ_DESC_F_NEXT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EINVAL);
        sd(&t[1], f->buf, 10, VIRTQ_DESC_F_NEXT, 4);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 4, &f->c), -EINVAL);
}

static void split_iov_limit(void **state) {
        Fx *f = *state;
        uint64_t tgpa = fake_mem_alloc(&f->m, 16 * VQ_MAX_SIZE, 16);
        VqDescSplit *t = fake_mem_ptr(&f->m, tgpa);

        /* VQ_MAX_SIZE entries fit exactly; one more table entry is refused. */
        for (unsigned i = 0; i < VQ_MAX_SIZE; i++)
                sd(&t[i], f->buf + i, 1, i + 1 < VQ_MAX_SIZE ? VIRTQ_DESC_F_NEXT : 0, (uint16_t) (i + 1));
        sd(&f->split[0], tgpa, 16 * VQ_MAX_SIZE, VIRTQ_DESC_F_INDIRECT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), 0);
        assert_int_equal(f->c.out_num, VQ_MAX_SIZE);
        /* One direct descriptor first: 1025 iovecs needed. */
        sd(&f->split[1], f->buf, 1, VIRTQ_DESC_F_NEXT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 1, &f->c), -ENOSPC);
        sd(&f->split[0], tgpa, 16 * (VQ_MAX_SIZE + 1), VIRTQ_DESC_F_INDIRECT, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), -EINVAL);
}

static void pd(VqDescPacked *d, uint64_t addr, uint32_t len, uint16_t id, uint16_t flags) {
        *d = (VqDescPacked) { .addr = addr, .len = len, .id = id, .flags = flags };
}

static void packed_chain(void **state) {
        Fx *f = *state;

        /* A chain wrapping from the last slot to slot 0; the id is the last descriptor's. */
        pd(&f->packed[QSZ - 1], f->buf, 12, 0, VIRTQ_DESC_F_NEXT);
        pd(&f->packed[0], f->buf + 12, 88, 9, VIRTQ_DESC_F_NEXT);
        pd(&f->packed[1], f->buf + 100, 400, 9, VIRTQ_DESC_F_WRITE);
        assert_int_equal(vq_walk_packed(&f->ctx, f->packed, QSZ - 1, &f->c), 0);
        assert_int_equal(f->c.ndesc, 3);
        assert_int_equal(f->c.id, 9);
        assert_int_equal(f->c.out_len, 100);
        assert_int_equal(f->c.in_len, 400);
}

static void packed_too_long(void **state) {
        Fx *f = *state;

        for (unsigned i = 0; i < QSZ; i++)
                pd(&f->packed[i], f->buf, 1, 0, VIRTQ_DESC_F_NEXT);
        assert_int_equal(vq_walk_packed(&f->ctx, f->packed, 5, &f->c), -EINVAL);
        pd(&f->packed[4], f->buf, 1, 0, 0);
        assert_int_equal(vq_walk_packed(&f->ctx, f->packed, 5, &f->c), 0);
        assert_int_equal(f->c.ndesc, QSZ);
        assert_int_equal(vq_walk_packed(&f->ctx, f->packed, QSZ, &f->c), -EINVAL);
}

static void packed_indirect(void **state) {
        Fx *f = *state;
        uint64_t tgpa = fake_mem_alloc(&f->m, 16 * 3, 16);
        VqDescPacked *t = fake_mem_ptr(&f->m, tgpa);

        /* 2.8.19: NEXT inside a packed table is ignored, the whole table is used. */
        pd(&t[0], f->buf, 12, 0, 0);
        pd(&t[1], f->buf + 12, 50, 0, 0);
        pd(&t[2], f->buf + 100, 60, 0, VIRTQ_DESC_F_WRITE);
        pd(&f->packed[2], tgpa, 48, 5, VIRTQ_DESC_F_INDIRECT);
        assert_int_equal(vq_walk_packed(&f->ctx, f->packed, 2, &f->c), 0);
        assert_int_equal(f->c.ndesc, 1);
        assert_int_equal(f->c.id, 5);
        assert_int_equal(f->c.out_len, 62);
        assert_int_equal(f->c.in_len, 60);

        pd(&t[1], tgpa, 48, 0, VIRTQ_DESC_F_INDIRECT);
        assert_int_equal(vq_walk_packed(&f->ctx, f->packed, 2, &f->c), -EINVAL);
        pd(&t[1], 0x10, 48, 0, 0);
        assert_int_equal(vq_walk_packed(&f->ctx, f->packed, 2, &f->c), -EFAULT);
}

static void double_fetch(void **state) {
        Fx *f = *state;

        /* The walker's result depends only on the copy it took: later guest writes change nothing. */
        sd(&f->split[0], f->buf, 100, 0, 0);
        assert_int_equal(vq_walk_split(&f->ctx, f->split, 0, &f->c), 0);
        sd(&f->split[0], 0x10, 0xffffffff, VIRTQ_DESC_F_NEXT, 99);
        assert_int_equal(f->c.out_len, 100);
        assert_ptr_equal(f->c.iov[0].iov_base, fake_mem_ptr(&f->m, f->buf));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(split_chain, setup, teardown),
                cmocka_unit_test_setup_teardown(split_loop, setup, teardown),
                cmocka_unit_test_setup_teardown(split_too_long, setup, teardown),
                cmocka_unit_test_setup_teardown(split_out_of_range, setup, teardown),
                cmocka_unit_test_setup_teardown(split_order, setup, teardown),
                cmocka_unit_test_setup_teardown(split_indirect, setup, teardown),
                cmocka_unit_test_setup_teardown(split_iov_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(packed_chain, setup, teardown),
                cmocka_unit_test_setup_teardown(packed_too_long, setup, teardown),
                cmocka_unit_test_setup_teardown(packed_indirect, setup, teardown),
                cmocka_unit_test_setup_teardown(double_fetch, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
