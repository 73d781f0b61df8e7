/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PRP and SGL walkers: every edge the spec and a hostile guest offer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "fake-mem.h"
#include "nvme/nvme-dma.h"

#define BASE 0x100000ull
#define SIZE (4ull << 20)
#define HOLE (BASE + 0x300000)
#define RO   (BASE + 0x340000)
#define PG   4096ull

static FakeMem fm;
static NvmeIov v;
static NvmeIovExt *ext_free;    /* v's room for long transfers comes from here, as an SQ slot's does */

/* v as a used SQ slot leaves it: its room given back, stale counts and entries. */
static void scribble(void) {
        v.ext_free = &ext_free;
        nvme_iov_release(&v);
        v.n = v.n_gpa = 0xa5a5a5a5u;
        v.len = 0xa5a5a5a5a5a5a5a5ull;
        v.has_bucket = true;
        memset(v.iov_inline, 0xa5, sizeof(v.iov_inline));
        memset(v.gpa_inline, 0xa5, sizeof(v.gpa_inline));
}

static int setup(void **state) {
        fake_mem_init(&fm, BASE, SIZE);
        fm.hole_gpa = HOLE;
        fm.hole_len = 0x10000;
        fm.ro_gpa = RO;
        fm.ro_len = 0x10000;
        return 0;
}

static int teardown(void **state) {
        fake_mem_fini(&fm);
        return 0;
}

static uint64_t *list_at(uint64_t gpa) { return fake_mem_ptr(&fm, gpa); }
static uint8_t *host(uint64_t gpa) { return fake_mem_ptr(&fm, gpa); }

static NvmeStatus prp(uint64_t p1, uint64_t p2, uint64_t len, int prot) {
        scribble();
        return nvme_prp_map(&fm.mem, p1, p2, len, prot, &v);
}

static void test_prp_simple(void **state) {
        assert_int_equal(prp(BASE, 0, 0, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.n, 0);

        assert_int_equal(prp(BASE, 0xdead, 4096, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.n, 1);
        assert_ptr_equal(v.iov[0].iov_base, host(BASE));
        assert_int_equal(v.iov[0].iov_len, 4096);

        /* Offset into the page; PRP2 ignored when the data fits. */
        assert_int_equal(prp(BASE + 0x200, 0xdead001, 512, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.n, 1);
        assert_int_equal(v.len, 512);

        /* PRP1 must be dword aligned. */
        assert_int_equal(prp(BASE + 2, 0, 512, VU_PROT_WRITE), NVME_SC_PRP_OFFSET_INVALID);
}

static void test_prp_two_pages(void **state) {
        /* Crossing into a second page: PRP2 is a data pointer without offset. */
        assert_int_equal(prp(BASE + 0x200, BASE + 0x10000, 4096, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(v.n, 2);
        assert_int_equal(v.iov[0].iov_len, 4096 - 0x200);
        assert_ptr_equal(v.iov[1].iov_base, host(BASE + 0x10000));
        assert_int_equal(v.iov[1].iov_len, 0x200);
        assert_int_equal(prp(BASE + 0x200, BASE + 0x10008, 4096, VU_PROT_READ), NVME_SC_PRP_OFFSET_INVALID);

        /* Exactly two pages: still no list. */
        assert_int_equal(prp(BASE, BASE + 0x20000, 8192, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(v.n, 2);
        /* Contiguous pages are merged. */
        assert_int_equal(prp(BASE, BASE + PG, 8192, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(v.n, 1);
        assert_int_equal(v.iov[0].iov_len, 8192);
}

static void test_prp_list(void **state) {
        uint64_t list = BASE + 0x80000;
        uint64_t *e = list_at(list);

        /* Three pages in reverse order: a list of two, order preserved. */
        e[0] = BASE + 0x5000;
        e[1] = BASE + 0x4000;
        assert_int_equal(prp(BASE + 0x6000, list, 3 * PG, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.n, 3);
        assert_ptr_equal(v.iov[0].iov_base, host(BASE + 0x6000));
        assert_ptr_equal(v.iov[1].iov_base, host(BASE + 0x5000));
        assert_ptr_equal(v.iov[2].iov_base, host(BASE + 0x4000));

        /* A partial last page. */
        assert_int_equal(prp(BASE + 0x6800, list, 2 * PG + 100, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.len, 2 * PG + 100);
        assert_int_equal(v.iov[2].iov_len, 100 + 0x800);

        /* List entries must be page aligned. */
        e[1] = BASE + 0x4010;
        assert_int_equal(prp(BASE + 0x6000, list, 3 * PG, VU_PROT_WRITE), NVME_SC_PRP_OFFSET_INVALID);
        e[1] = BASE + 0x4000;

        /* The list pointer may carry a (qword) offset; not a dword one. */
        list_at(list + 0x100)[0] = BASE + 0x7000;
        list_at(list + 0x100)[1] = BASE + 0x8000;
        assert_int_equal(prp(BASE, list + 0x100, 3 * PG, VU_PROT_WRITE), NVME_SUCCESS);
        assert_ptr_equal(v.iov[1].iov_base, host(BASE + 0x7000));
        assert_int_equal(prp(BASE, list + 0x104, 3 * PG, VU_PROT_WRITE), NVME_SC_PRP_OFFSET_INVALID);
}

static void test_prp_max_and_chain(void **state) {
        uint64_t data = BASE + 0x100000;
        uint64_t list1 = BASE + 0x90000 + PG - 16, list2 = BASE + 0xa0000;

        /* 512 KiB, list starting 16 bytes before a page end: 1 entry + chain. */
        list_at(list1)[0] = data + PG;
        list_at(list1)[1] = list2;
        for (unsigned i = 0; i < 126; i++)
                list_at(list2)[i] = data + (i + 2) * PG;
        assert_int_equal(prp(data, list1, NVME_MAX_XFER, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.len, NVME_MAX_XFER);
        assert_int_equal(v.n, 1);               /* all contiguous: one iovec */

        /* A chain pointer with an offset is refused. */
        list_at(list1)[1] = list2 + 8;
        assert_int_equal(prp(data, list1, NVME_MAX_XFER, VU_PROT_WRITE), NVME_SC_PRP_OFFSET_INVALID);
        list_at(list1)[1] = list2;

        /* Above MDTS. */
        assert_int_equal(prp(data, list1, NVME_MAX_XFER + 4096, VU_PROT_WRITE), NVME_SC_INVALID_FIELD);

        /* Non-contiguous pages: one iovec each, bounded by NVME_MAX_IOV. */
        for (unsigned i = 0; i < 127; i++)
                list_at(list2)[i] = data + (uint64_t) (126 - i) * 2 * PG;
        list_at(list1)[0] = data + 200 * PG;
        assert_int_equal(prp(data + 300 * PG, list1, NVME_MAX_XFER, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.n, 128);
}

/*
 * An SQ slot keeps NVME_IOV_INLINE entries in itself; a longer transfer
 * takes room from its SQ's free list (or the heap) and gives it back when
 * released, and the entries already mapped move with it.
 */
static void test_iov_inline_and_ext(void **state) {
        uint64_t data = BASE + 0x100000, list = BASE + 0x40000;
        NvmeIovExt *spare = g_new0(NvmeIovExt, 1);

        assert_true(sizeof(NvmeIov) <= 256);
        /* Four scattered pages stay inline. */
        for (unsigned i = 0; i < 3; i++)
                list_at(list)[i] = data + (uint64_t) (i + 1) * 2 * PG;
        assert_int_equal(prp(data, list, 4 * PG, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.n, 4);
        assert_null(v.ext);
        assert_ptr_equal(v.iov, v.iov_inline);
        assert_int_equal(v.n_gpa, 4);

        /* Five take the spare from the free list, every entry in order. */
        ext_free = spare;
        for (unsigned i = 0; i < 4; i++)
                list_at(list)[i] = data + (uint64_t) (i + 1) * 2 * PG;
        assert_int_equal(prp(data, list, 5 * PG, VU_PROT_WRITE), NVME_SUCCESS);
        assert_ptr_equal(v.ext, spare);
        assert_null(ext_free);
        assert_ptr_equal(v.iov, spare->iov);
        assert_int_equal(v.n, 5);
        assert_int_equal(v.n_gpa, 5);
        for (unsigned i = 0; i < 5; i++) {
                assert_ptr_equal(v.iov[i].iov_base, host(data + (uint64_t) i * 2 * PG));
                assert_int_equal(v.iov[i].iov_len, PG);
                assert_int_equal(v.gpa[i].gpa, data + (uint64_t) i * 2 * PG);
        }
        /* Released: back on the list, the slot inline again. */
        nvme_iov_release(&v);
        assert_ptr_equal(ext_free, spare);
        assert_null(v.ext);
        assert_ptr_equal(v.iov, v.iov_inline);

        /* An SGL of bit buckets and data past the inline entries; an empty list takes from the heap. */
        g_free(spare);
        ext_free = NULL;
        NvmeSglDesc segs[8];
        for (unsigned i = 0; i < 8; i++)
                segs[i] = (NvmeSglDesc) { .addr = data + (uint64_t) i * 2 * PG, .len = 512,
                                          .type = (i & 1 ? NVME_SGL_BIT_BUCKET : NVME_SGL_DATA_BLOCK) << 4 };
        memcpy(host(list), segs, sizeof(segs));
        NvmeSglDesc d = { .addr = list, .len = sizeof(segs), .type = NVME_SGL_LAST_SEGMENT << 4 };
        v.ext_free = &ext_free;
        nvme_iov_release(&v);
        assert_int_equal(nvme_sgl_map(&fm.mem, &d, 8 * 512, VU_PROT_WRITE, &v), NVME_SUCCESS);
        assert_non_null(v.ext);
        assert_int_equal(v.n, 8);
        assert_true(v.has_bucket);
        for (unsigned i = 0; i < 8; i++)
                assert_true((v.iov[i].iov_base == NULL) == (i & 1));
        nvme_iov_release(&v);
        assert_non_null(ext_free);
        g_free(ext_free);
        ext_free = NULL;
}

static void test_prp_bad_memory(void **state) {
        uint64_t list = BASE + 0x80000;

        /* Outside guest RAM, in the hole, across the end. */
        assert_int_equal(prp(0x1000, 0, 512, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
        assert_int_equal(prp(HOLE, 0, 512, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
        assert_int_equal(prp(BASE + SIZE - 512, BASE + SIZE, 1024, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
        assert_int_equal(prp(~0ull & ~3ull, 0, 512, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
        /* The list itself unmapped; an entry unmapped. */
        assert_int_equal(prp(BASE, HOLE, 3 * PG, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
        list_at(list)[0] = BASE + PG;
        list_at(list)[1] = HOLE + PG;
        assert_int_equal(prp(BASE, list, 3 * PG, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
        /* Read-only memory: the device may read it, never write it. */
        assert_int_equal(prp(RO, 0, 4096, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(prp(RO, 0, 4096, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
        /* Across the two maps: accepted, host-contiguous here so merged. */
        assert_int_equal(prp(BASE + SIZE / 2 - PG, BASE + SIZE / 2, 2 * PG, VU_PROT_WRITE), NVME_SUCCESS);
        assert_int_equal(v.len, 2 * PG);
}

static NvmeSglDesc sgl(uint8_t type, uint64_t addr, uint32_t len) {
        NvmeSglDesc d = { .addr = addr, .len = len, .type = (uint8_t) (type << 4) };
        return d;
}

static NvmeStatus sglmap(NvmeSglDesc d, uint64_t len, int prot) {
        scribble();
        return nvme_sgl_map(&fm.mem, &d, len, prot, &v);
}

static void put_descs(uint64_t gpa, const NvmeSglDesc *d, unsigned n) {
        memcpy(host(gpa), d, n * sizeof(*d));
}

static void test_sgl_data_block(void **state) {
        assert_int_equal(sglmap(sgl(NVME_SGL_DATA_BLOCK, BASE + 3, 1000), 1000, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(v.n, 1);
        assert_ptr_equal(v.iov[0].iov_base, host(BASE + 3));
        /* Longer than needed: truncated.  Shorter: Data SGL Length Invalid. */
        assert_int_equal(sglmap(sgl(NVME_SGL_DATA_BLOCK, BASE, 8192), 4096, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(v.len, 4096);
        assert_int_equal(sglmap(sgl(NVME_SGL_DATA_BLOCK, BASE, 100), 4096, VU_PROT_READ),
                         NVME_SC_SGL_DATA_LEN_INVALID);
        /* Offset subtype (fabrics) and unknown types. */
        NvmeSglDesc d = sgl(NVME_SGL_DATA_BLOCK, BASE, 4096);
        d.type |= 1;
        assert_int_equal(sglmap(d, 4096, VU_PROT_READ), NVME_SC_SGL_TYPE_INVALID);
        assert_int_equal(sglmap(sgl(4, BASE, 4096), 4096, VU_PROT_READ), NVME_SC_SGL_TYPE_INVALID);
        assert_int_equal(sglmap(sgl(0xf, BASE, 4096), 4096, VU_PROT_READ), NVME_SC_SGL_TYPE_INVALID);
        /* Bad memory. */
        assert_int_equal(sglmap(sgl(NVME_SGL_DATA_BLOCK, HOLE, 512), 512, VU_PROT_READ), NVME_SC_DATA_XFER_ERROR);
        assert_int_equal(sglmap(sgl(NVME_SGL_DATA_BLOCK, ~0ull - 10, 512), 512, VU_PROT_READ),
                         NVME_SC_DATA_XFER_ERROR);
        assert_int_equal(sglmap(sgl(NVME_SGL_DATA_BLOCK, RO, 512), 512, VU_PROT_WRITE), NVME_SC_DATA_XFER_ERROR);
}

static void test_sgl_bit_bucket(void **state) {
        uint64_t seg = BASE + 0x40000;
        NvmeSglDesc d[3] = {
                sgl(NVME_SGL_DATA_BLOCK, BASE, 512),
                sgl(NVME_SGL_BIT_BUCKET, 0, 1024),
                sgl(NVME_SGL_DATA_BLOCK, BASE + 0x8000, 512),
        };
        put_descs(seg, d, 3);
        /* Read (device writes guest memory): bucket allowed, NULL iovec. */
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, seg, 48), 2048, VU_PROT_WRITE), NVME_SUCCESS);
        assert_true(v.has_bucket);
        assert_int_equal(v.n, 3);
        assert_null(v.iov[1].iov_base);
        assert_int_equal(v.iov[1].iov_len, 1024);
        /* Buckets are skipped when copying. */
        uint8_t buf[2048];
        memset(buf, 7, sizeof(buf));
        memset(host(BASE), 0, 512);
        assert_int_equal(nvme_iov_from_buf(&v, buf, sizeof(buf)), 2048);
        assert_int_equal(host(BASE)[511], 7);
        assert_int_equal(host(BASE + 0x8000)[0], 7);
        /* Write (device reads guest memory): a bucket is a type error. */
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, seg, 48), 2048, VU_PROT_READ), NVME_SC_SGL_TYPE_INVALID);
}

static void test_sgl_segments(void **state) {
        uint64_t s1 = BASE + 0x40000, s2 = BASE + 0x41000, s3 = BASE + 0x42000;
        NvmeSglDesc a[2] = { sgl(NVME_SGL_DATA_BLOCK, BASE + 0x10000, 4096), sgl(NVME_SGL_SEGMENT, s2, 32) };
        NvmeSglDesc b[2] = { sgl(NVME_SGL_DATA_BLOCK, BASE + 0x20000, 0), sgl(NVME_SGL_LAST_SEGMENT, s3, 32) };
        NvmeSglDesc c[2] = { sgl(NVME_SGL_DATA_BLOCK, BASE + 0x30000, 4096), sgl(NVME_SGL_DATA_BLOCK, BASE + 0x50000, 4096) };
        put_descs(s1, a, 2);
        put_descs(s2, b, 2);
        put_descs(s3, c, 2);
        assert_int_equal(sglmap(sgl(NVME_SGL_SEGMENT, s1, 32), 3 * 4096, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(v.n, 3);
        assert_ptr_equal(v.iov[2].iov_base, host(BASE + 0x50000));

        /* Not enough data described. */
        assert_int_equal(sglmap(sgl(NVME_SGL_SEGMENT, s1, 32), 4 * 4096, VU_PROT_READ), NVME_SC_SGL_DATA_LEN_INVALID);

        /* A Last Segment must not chain. */
        NvmeSglDesc bad[2] = { sgl(NVME_SGL_DATA_BLOCK, BASE, 16), sgl(NVME_SGL_SEGMENT, s2, 32) };
        put_descs(s3, bad, 2);
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, s3, 32), 8192, VU_PROT_READ), NVME_SC_SGL_INVALID_SEG);
        /* A segment descriptor only as the last entry. */
        NvmeSglDesc mid[3] = { sgl(NVME_SGL_SEGMENT, s2, 32), sgl(NVME_SGL_DATA_BLOCK, BASE, 16),
                               sgl(NVME_SGL_DATA_BLOCK, BASE, 16) };
        put_descs(s3, mid, 3);
        assert_int_equal(sglmap(sgl(NVME_SGL_SEGMENT, s3, 48), 8192, VU_PROT_READ), NVME_SC_SGL_INVALID_SEG);
        /* A (non-last) Segment that ends without a pointer while data is still wanted. */
        NvmeSglDesc end[1] = { sgl(NVME_SGL_DATA_BLOCK, BASE, 16) };
        put_descs(s3, end, 1);
        assert_int_equal(sglmap(sgl(NVME_SGL_SEGMENT, s3, 16), 8192, VU_PROT_READ), NVME_SC_SGL_INVALID_SEG);
        /* Segment lengths: zero, not a multiple of 16, too many descriptors, unmapped. */
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, s3, 0), 16, VU_PROT_READ), NVME_SC_SGL_INVALID_SEG);
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, s3, 24), 16, VU_PROT_READ), NVME_SC_SGL_INVALID_SEG);
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, s3, 257 * 16), 16, VU_PROT_READ), NVME_SC_SGL_INVALID_COUNT);
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, HOLE, 32), 16, VU_PROT_READ), NVME_SC_DATA_XFER_ERROR);
}

static void test_sgl_loop_and_limits(void **state) {
        uint64_t s = BASE + 0x60000;
        /* A segment chaining to itself: bounded, not an endless walk. */
        NvmeSglDesc loop[2] = { sgl(NVME_SGL_DATA_BLOCK, BASE, 16), sgl(NVME_SGL_SEGMENT, s, 32) };
        put_descs(s, loop, 2);
        assert_int_equal(sglmap(sgl(NVME_SGL_SEGMENT, s, 32), NVME_MAX_XFER, VU_PROT_READ), NVME_SC_SGL_INVALID_COUNT);

        /* More pieces than iovecs: 256 scattered 16-byte blocks. */
        NvmeSglDesc many[256];
        for (unsigned i = 0; i < 256; i++)
                many[i] = sgl(NVME_SGL_DATA_BLOCK, BASE + 0x100000 + i * 64ull, 16);
        put_descs(s, many, 256);
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, s, 256 * 16), 256 * 16, VU_PROT_READ),
                         NVME_SC_SGL_INVALID_COUNT);
        /* The same within the iovec budget works. */
        assert_int_equal(sglmap(sgl(NVME_SGL_LAST_SEGMENT, s, 100 * 16), 100 * 16, VU_PROT_READ), NVME_SUCCESS);
        assert_int_equal(v.n, 100);
        /* Above MDTS. */
        assert_int_equal(sglmap(sgl(NVME_SGL_DATA_BLOCK, BASE, 0xffffffff), NVME_MAX_XFER + 1, VU_PROT_READ),
                         NVME_SC_INVALID_FIELD);
}

static void test_map_dptr(void **state) {
        NvmeSqe cmd = { .prp1 = BASE, .flags = NVME_PSDT_SGL_MPTR_BUF << 6 };
        NvmeSglDesc d = sgl(NVME_SGL_DATA_BLOCK, BASE, 512);
        memcpy(cmd.sgl1, &d, 16);
        assert_int_equal(nvme_map_dptr(&fm.mem, &cmd, 512, VU_PROT_READ, false, &v), NVME_SUCCESS);
        /* Admin commands over PCIe use PRPs only. */
        assert_int_equal(nvme_map_dptr(&fm.mem, &cmd, 512, VU_PROT_READ, true, &v), NVME_SC_INVALID_FIELD);
        cmd.flags = 3 << 6;
        assert_int_equal(nvme_map_dptr(&fm.mem, &cmd, 512, VU_PROT_READ, false, &v), NVME_SC_INVALID_FIELD);
        cmd.flags = 0;
        cmd.prp1 = BASE;
        assert_int_equal(nvme_map_dptr(&fm.mem, &cmd, 512, VU_PROT_READ, true, &v), NVME_SUCCESS);
}

static void test_mem_helpers(void **state) {
        uint8_t buf[10000], back[10000];
        for (unsigned i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) i;
        assert_int_equal(nvme_mem_write(&fm.mem, BASE + 100, buf, sizeof(buf)), 0);
        assert_int_equal(nvme_mem_read(&fm.mem, BASE + 100, back, sizeof(back)), 0);
        assert_memory_equal(buf, back, sizeof(buf));
        assert_int_equal(nvme_mem_read(&fm.mem, HOLE - 10, back, 100), -EFAULT);
        assert_int_equal(nvme_mem_write(&fm.mem, RO, buf, 10), -EACCES);
        assert_non_null(nvme_mem_ptr(&fm.mem, BASE, 4096, VU_PROT_READ));
        assert_null(nvme_mem_ptr(&fm.mem, BASE + SIZE / 2 - 8, 16, VU_PROT_READ));   /* two maps */
        assert_null(nvme_mem_ptr(&fm.mem, HOLE, 16, VU_PROT_READ));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_prp_simple),
                cmocka_unit_test(test_iov_inline_and_ext),
                cmocka_unit_test(test_prp_two_pages),
                cmocka_unit_test(test_prp_list),
                cmocka_unit_test(test_prp_max_and_chain),
                cmocka_unit_test(test_prp_bad_memory),
                cmocka_unit_test(test_sgl_data_block),
                cmocka_unit_test(test_sgl_bit_bucket),
                cmocka_unit_test(test_sgl_segments),
                cmocka_unit_test(test_sgl_loop_and_limits),
                cmocka_unit_test(test_map_dptr),
                cmocka_unit_test(test_mem_helpers),
        };
        return cmocka_run_group_tests_name("nvme-dma", tests, setup, teardown);
}
