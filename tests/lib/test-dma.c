/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The DMA map table and the guest-memory copies on top of it, with real memfds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "vfio-user/dma.h"
#include "vfio-user/proto.h"

#define PG 4096ull
#define RW (VU_DMA_READ | VU_DMA_WRITE)

static int count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        while ((e = readdir(d)))
                n++;
        closedir(d);
        return n;
}

static int memfd(size_t size) {
        int fd = memfd_create("test-dma", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) size), 0);
        return fd;
}

static void test_map_unmap(void **state) {
        int before = count_fds();
        VuDma *d = vu_dma_new(0);
        int fd = memfd(16 * PG);

        assert_int_equal(vu_dma_map(d, 0x100000, 4 * PG, 0, RW, fd), 0);
        assert_int_equal(vu_dma_map(d, 0x200000, 4 * PG, 4 * PG, VU_DMA_READ, fd), 0);
        assert_int_equal(vu_dma_map(d, 0xfffc0000, 0x40000, 0, VU_DMA_READ, -1), 0);  /* fd-less (BIOS) */
        assert_int_equal(vu_dma_count(d), 3);
        /* The maps hold the file: no fd is kept (the caller's one is still open). */
        assert_int_equal(count_fds(), before + 1);

        /* Identical re-map is fine, any other overlap is not. */
        assert_int_equal(vu_dma_map(d, 0x100000, 4 * PG, 0, RW, fd), 0);
        assert_int_equal(vu_dma_map(d, 0xfffc0000, 0x40000, 0, VU_DMA_READ, -1), 0);
        assert_int_equal(vu_dma_map(d, 0x100000, 4 * PG, 0, VU_DMA_READ, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 0x100000, 4 * PG, PG, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 0x100000, 4 * PG, 0, RW, -1), -EINVAL);
        assert_int_equal(vu_dma_map(d, 0x101000, PG, 0, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 0x0ff000, 2 * PG, 0, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 0x103000, 2 * PG, 0, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 0x0f0000, 0x20000, 0, RW, fd), -EINVAL);       /* covers it */
        assert_int_equal(vu_dma_count(d), 3);

        /* Adjacent is not overlapping. */
        assert_int_equal(vu_dma_map(d, 0x104000, PG, 8 * PG, RW, fd), 0);
        assert_int_equal(vu_dma_map(d, 0x0ff000, PG, 9 * PG, RW, fd), 0);
        assert_int_equal(vu_dma_count(d), 5);

        /* Exact-match unmap only. */
        assert_int_equal(vu_dma_unmap(d, 0x100000, 2 * PG), -ENOENT);
        assert_int_equal(vu_dma_unmap(d, 0x101000, 3 * PG), -ENOENT);
        assert_int_equal(vu_dma_unmap(d, 0x300000, PG), -ENOENT);
        assert_int_equal(vu_dma_unmap(d, 0x100000, 4 * PG), 0);
        assert_int_equal(vu_dma_unmap(d, 0x100000, 4 * PG), -ENOENT);
        assert_int_equal(vu_dma_unmap(d, 0xfffc0000, 0x40000), 0);
        assert_int_equal(vu_dma_count(d), 3);

        vu_dma_unmap_all(d);
        assert_int_equal(vu_dma_count(d), 0);
        assert_int_equal(count_fds(), before + 1);      /* only our memfd */
        vu_dma_free(d);
        close(fd);
        assert_int_equal(count_fds(), before);
}

static void test_map_validation(void **state) {
        VuDma *d = vu_dma_new(4);
        int fd = memfd(4 * PG);
        int dev_null = open("/dev/null", O_RDWR | O_CLOEXEC);

        assert_int_equal(vu_dma_map(d, 0, PG, 0, 0, fd), -EINVAL);                      /* no permission */
        assert_int_equal(vu_dma_map(d, 0, PG, 0, 0x4, fd), -EINVAL);                    /* unknown flag */
        assert_int_equal(vu_dma_map(d, 0, 0, 0, RW, fd), -EINVAL);                      /* empty */
        assert_int_equal(vu_dma_map(d, 0x800, PG, 0, RW, fd), -EINVAL);                 /* unaligned */
        assert_int_equal(vu_dma_map(d, 0, PG + 1, 0, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, UINT64_MAX - PG + 1, 2 * PG, 0, RW, -1), -EINVAL);  /* wraps */
        assert_int_equal(vu_dma_map(d, 0, VU_MAX_DMA_SIZE + PG, 0, RW, -1), -EINVAL);    /* > 8 TiB */
        assert_int_equal(vu_dma_map(d, 0, VU_MAX_DMA_SIZE, 0, RW, -1), 0);               /* fd-less 8 TiB */
        /* The fd must hold offset + size: a short memfd would SIGBUS us. */
        assert_int_equal(vu_dma_map(d, 1ull << 44, 8 * PG, 0, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 1ull << 44, 2 * PG, 3 * PG, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 1ull << 44, PG, UINT64_MAX - 10, RW, fd), -EINVAL);
        assert_int_equal(vu_dma_map(d, 1ull << 44, PG, 0, RW, dev_null), -EINVAL);      /* not a file */
        assert_int_equal(vu_dma_map(d, 1ull << 44, PG, 0, RW, 9999), -EBADF);
        /* The last page of the file is fine. */
        assert_int_equal(vu_dma_map(d, 1ull << 44, PG, 3 * PG, RW, fd), 0);

        /* Count limit. */
        assert_int_equal(vu_dma_map(d, 2ull << 44, PG, 0, RW, -1), 0);
        assert_int_equal(vu_dma_map(d, 3ull << 44, PG, 0, RW, -1), 0);
        assert_int_equal(vu_dma_count(d), 4);
        assert_int_equal(vu_dma_map(d, 4ull << 44, PG, 0, RW, -1), -ENOSPC);
        assert_int_equal(vu_dma_map(d, 3ull << 44, PG, 0, RW, -1), 0);  /* identical re-map still fine */
        vu_dma_free(d);
        close(fd);
        close(dev_null);
}

static void test_translate(void **state) {
        VuDma *d = vu_dma_new(0);
        int fd = memfd(16 * PG);
        uint8_t *host = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        VuMem m = vu_dma_mem(d);
        struct iovec iov[4];
        uint8_t buf[3 * PG];
        int n;

        assert_true(host != MAP_FAILED);
        /* Guest layout: [0x10000, +2 pages) → file pages 4-5, [0x12000, +2) → pages 0-1 (read-only),
         * a hole, then [0x20000, +1) fd-less. */
        assert_int_equal(vu_dma_map(d, 0x10000, 2 * PG, 4 * PG, RW, fd), 0);
        assert_int_equal(vu_dma_map(d, 0x12000, 2 * PG, 0, VU_DMA_READ, fd), 0);
        assert_int_equal(vu_dma_map(d, 0x20000, PG, 0, RW, -1), 0);

        /* The server has its own mappings: check where iovecs point by content. */
        for (unsigned pg = 0; pg < 16; pg++)
                memset(host + pg * PG, 0x10 + pg, PG);
        assert_int_equal(vu_mem_translate(&m, 0x10010, 16, VU_PROT_READ, iov, 4), 1);
        assert_int_equal(*(uint8_t *) iov[0].iov_base, 0x14);
        assert_int_equal(iov[0].iov_len, 16);
        assert_int_equal(vu_mem_translate(&m, 0x10010, 0, VU_PROT_READ, iov, 4), 0);
        host[4 * PG + 0x10] = 0xee;
        assert_int_equal(vu_mem_translate(&m, 0x10010, 1, VU_PROT_READ, iov, 4), 1);
        assert_int_equal(*(uint8_t *) iov[0].iov_base, 0xee);   /* the same memory, shared */

        /*
         * Crossing two maps: two iovecs, or one when the server's two
         * mappings happen to be adjacent in its address space.
         */
        n = vu_mem_translate(&m, 0x11ff0, 0x20, VU_PROT_READ, iov, 4);
        assert_int_equal(*(uint8_t *) iov[0].iov_base, 0x15);
        if (n == 2) {
                assert_int_equal(iov[0].iov_len, 0x10);
                assert_int_equal(iov[1].iov_len, 0x10);
                assert_int_equal(*(uint8_t *) iov[1].iov_base, 0x10);
                assert_int_equal(vu_mem_translate(&m, 0x11ff0, 0x20, VU_PROT_READ, iov, 1), -ENOSPC);
        } else {
                assert_int_equal(n, 1);
                assert_int_equal(iov[0].iov_len, 0x20);
                assert_int_equal(((uint8_t *) iov[0].iov_base)[0x10], 0x10);
        }

        /* Permission: the second map is read-only. */
        assert_int_equal(vu_mem_translate(&m, 0x11ff0, 0x20, VU_PROT_WRITE, iov, 4), -EACCES);
        assert_int_equal(vu_mem_translate(&m, 0x10000, PG, VU_PROT_WRITE, iov, 4), 1);
        /* Unmapped, partly unmapped, fd-less, overflow. */
        assert_int_equal(vu_mem_translate(&m, 0x0, 1, VU_PROT_READ, iov, 4), -EFAULT);
        assert_int_equal(vu_mem_translate(&m, 0x13ff0, 0x20, VU_PROT_READ, iov, 4), -EFAULT);
        assert_int_equal(vu_mem_translate(&m, 0x20000, 8, VU_PROT_READ, iov, 4), -EFAULT);
        assert_int_equal(vu_mem_translate(&m, UINT64_MAX, 2, VU_PROT_READ, iov, 4), -EINVAL);

        /* Copies go through the same checks and never half-write. */
        memset(host, 0xab, 16 * PG);
        assert_int_equal(vu_mem_read(&m, 0x11000, buf, 3 * PG), 0);
        assert_int_equal(buf[0], 0xab);
        memset(buf, 0x5a, sizeof(buf));
        assert_int_equal(vu_mem_write(&m, 0x11000, buf, 2 * PG), -EACCES);
        assert_int_equal(host[5 * PG], 0xab);           /* the writable part was not touched */
        assert_int_equal(vu_mem_write(&m, 0x10800, buf, PG), 0);
        assert_int_equal(host[4 * PG + 0x800], 0x5a);
        assert_int_equal(vu_mem_read(&m, 0x13800, buf, PG), -EFAULT);
        {
                uint8_t *ptr = vu_mem_ptr(&m, 0x10008, 8, VU_PROT_WRITE);

                assert_non_null(ptr);
                *ptr = 0x61;
                assert_int_equal(host[4 * PG + 8], 0x61);
        }
        if (n == 2)
                assert_null(vu_mem_ptr(&m, 0x11ff8, 16, VU_PROT_READ));        /* not contiguous */
        assert_null(vu_mem_ptr(&m, 0x12000, 8, VU_PROT_WRITE));                /* read-only */
        assert_null(vu_mem_ptr(&m, 0x20000, 8, VU_PROT_READ));                 /* fd-less */

        munmap(host, 16 * PG);
        vu_dma_free(d);
        close(fd);
}

/* More maps than the copy helper has iovecs for: it must still copy everything. */
static void test_many_maps_copy(void **state) {
        VuDma *d = vu_dma_new(0);
        int fd = memfd(64 * PG);
        uint8_t *host = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        VuMem m = vu_dma_mem(d);
        static uint8_t in[40 * PG], out[40 * PG];

        /* 40 one-page maps in reverse file order, so no two are host-contiguous. */
        for (unsigned i = 0; i < 40; i++)
                assert_int_equal(vu_dma_map(d, 0x100000 + i * PG, PG, (63 - i) * PG, RW, fd), 0);
        for (unsigned i = 0; i < sizeof(in); i++)
                in[i] = (uint8_t) (i * 7 + i / PG);
        assert_int_equal(vu_mem_write(&m, 0x100000, in, sizeof(in)), 0);
        for (unsigned i = 0; i < 40; i++)
                assert_memory_equal(host + (63 - i) * PG, in + i * PG, PG);
        assert_int_equal(vu_mem_read(&m, 0x100000, out, sizeof(out)), 0);
        assert_memory_equal(in, out, sizeof(in));
        /* A hole in the middle fails the whole write before anything moves. */
        assert_int_equal(vu_dma_unmap(d, 0x100000 + 30 * PG, PG), 0);
        memset(out, 0, sizeof(out));
        assert_int_equal(vu_mem_write(&m, 0x100000, out, sizeof(out)), -EFAULT);
        assert_memory_equal(host + 63 * PG, in, PG);
        munmap(host, 64 * PG);
        vu_dma_free(d);
        close(fd);
}

/* A file offset that is not page-aligned still lands on the right bytes. */
static void test_unaligned_offset(void **state) {
        VuDma *d = vu_dma_new(0);
        int fd = memfd(8 * PG);
        uint8_t *host = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        VuMem m = vu_dma_mem(d);
        uint8_t b = 0;

        assert_int_equal(vu_dma_map(d, 0x40000, PG, 0x123, RW, fd), 0);
        host[0x123 + 5] = 0x42;
        host[0x123 + PG - 1] = 0x43;
        assert_int_equal(vu_mem_read(&m, 0x40005, &b, 1), 0);
        assert_int_equal(b, 0x42);
        assert_int_equal(vu_mem_read(&m, 0x40000 + PG - 1, &b, 1), 0);
        assert_int_equal(b, 0x43);
        assert_int_equal(vu_mem_read(&m, 0x40000 + PG, &b, 1), -EFAULT);
        munmap(host, 8 * PG);
        vu_dma_free(d);
        close(fd);
}

static void test_dirty_logging(void **state) {
        VuDma *d = vu_dma_new(0);
        int fd = memfd(64 * PG);
        VuMem m = vu_dma_mem(d);
        uint8_t bm[16], buf[16] = { 0 };
        struct iovec iov[2];

        assert_int_equal(vu_dma_map(d, 0x100000, 32 * PG, 0, RW, fd), 0);
        assert_int_equal(vu_dma_logging_report(d, 0x100000, 32 * PG, PG, bm, sizeof(bm)), -EINVAL); /* off */
        assert_int_equal(vu_dma_logging_start(d, 1000), -EINVAL);
        assert_int_equal(vu_dma_logging_start(d, PG), 0);
        assert_true(vu_dma_logging_active(d));
        assert_int_equal(vu_dma_logging_start(d, PG), -EBUSY);
        /* A map made while logging is tracked too. */
        assert_int_equal(vu_dma_map(d, 0x200000, 16 * PG, 32 * PG, RW, fd), 0);

        /* Reads do not dirty; writes and write translations do. */
        assert_int_equal(vu_mem_read(&m, 0x100000, buf, sizeof(buf)), 0);
        assert_int_equal(vu_mem_write(&m, 0x100000 + 3 * PG + 100, buf, 16), 0);
        assert_int_equal(vu_mem_write(&m, 0x100000 + 5 * PG - 8, buf, 16), 0);   /* pages 4 and 5 */
        assert_int_equal(vu_mem_translate(&m, 0x200000 + PG, 1, VU_PROT_WRITE, iov, 2), 1);
        vu_mem_mark_dirty(&m, 0x100000 + 31 * PG, 1);
        vu_mem_mark_dirty(&m, 0x180000, PG);    /* a hole: ignored */

        assert_int_equal(vu_dma_logging_report(d, 0x100000, 32 * PG, PG, bm, 3), -EINVAL); /* bitmap too small */
        assert_int_equal(vu_dma_logging_report(d, 0x100000, 32 * PG, 3000, bm, sizeof(bm)), -EINVAL);
        assert_int_equal(vu_dma_logging_report(d, 0x100000, 32 * PG, PG, bm, sizeof(bm)), 0);
        assert_int_equal(bm[0], 0x38);          /* pages 3, 4, 5 */
        assert_int_equal(bm[1], 0);
        assert_int_equal(bm[3], 0x80);          /* page 31 */
        /* Reported pages are cleared. */
        assert_int_equal(vu_dma_logging_report(d, 0x100000, 32 * PG, PG, bm, sizeof(bm)), 0);
        assert_int_equal(bm[0] | bm[3], 0);

        /* Coarser report pages: 16 KiB per bit. */
        assert_int_equal(vu_dma_logging_report(d, 0x200000, 16 * PG, 4 * PG, bm, sizeof(bm)), 0);
        assert_int_equal(bm[0], 0x01);
        /* Finer report pages than logged: a logged page sets all its bits. */
        assert_int_equal(vu_mem_write(&m, 0x200000 + 2 * PG, buf, 1), 0);
        assert_int_equal(vu_dma_logging_report(d, 0x200000, 4 * PG, PG / 2, bm, sizeof(bm)), 0);
        assert_int_equal(bm[0], 0x30);
        /* A range across a hole and two maps. */
        assert_int_equal(vu_mem_write(&m, 0x100000, buf, 1), 0);
        assert_int_equal(vu_mem_write(&m, 0x200000, buf, 1), 0);
        {
                uint8_t big[64] = { 0 };

                assert_int_equal(vu_dma_logging_report(d, 0x100000, 0x110000, 1ull << 16, big, sizeof(big)), 0);
                assert_int_equal(big[0], 0x01);
                assert_int_equal(big[2], 0x01);
        }

        vu_dma_logging_stop(d);
        assert_false(vu_dma_logging_active(d));
        assert_int_equal(vu_mem_write(&m, 0x100000, buf, 1), 0);
        assert_int_equal(vu_dma_logging_start(d, 2 * PG), 0);
        assert_int_equal(vu_dma_logging_report(d, 0x100000, 32 * PG, PG, bm, sizeof(bm)), 0);
        assert_int_equal(bm[0], 0);     /* nothing from before the restart */
        vu_dma_free(d);
        close(fd);
}

/* The map limit follows vm.max_map_count: room left for the process's own maps, capped by the protocol. */
static void test_limit_for_host(void **state) {
        assert_int_equal(vu_dma_limit_for(65530), 65530 - 16382);       /* the kernel's default */
        assert_int_equal(vu_dma_limit_for(0), vu_dma_limit_for(65530));  /* unknown */
        assert_int_equal(vu_dma_limit_for(-1), vu_dma_limit_for(65530));
        assert_int_equal(vu_dma_limit_for(1048576), VU_MAX_DMA_MAPS);     /* raised by the admin */
        assert_int_equal(vu_dma_limit_for(3000), 3000 - 1024);
        assert_int_equal(vu_dma_limit_for(1000), 1);
        assert_true(vu_dma_host_limit() <= VU_MAX_DMA_MAPS);
        VuDma *d = vu_dma_new(0);
        assert_int_equal(vu_dma_max_maps(d), vu_dma_host_limit());
        vu_dma_free(d);
        d = vu_dma_new(10);
        assert_int_equal(vu_dma_max_maps(d), 10);
        vu_dma_free(d);
}

/* Maps in any order, unmapped in another: lookups stay right (the tree, not an array). */
static void test_many_maps_any_order(void **state) {
        enum { N = 4096 };
        VuDma *d = vu_dma_new(0);
        VuMem mem = vu_dma_mem(d);
        int fd = memfd(N * PG);
        uint8_t *host = mmap(NULL, N * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), b;

        assert_true(host != MAP_FAILED);
        for (unsigned i = 0; i < N; i++)
                host[(uint64_t) i * PG] = (uint8_t) (i * 31 + 7);
        /* Descending, then the gaps' neighbours checked. */
        for (unsigned i = N; i-- > 0;)
                assert_int_equal(vu_dma_map(d, (uint64_t) i * 3 * PG, PG, (uint64_t) i * PG, VU_DMA_READ, fd), 0);
        assert_int_equal(vu_dma_count(d), N);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(vu_mem_read(&mem, (uint64_t) i * 3 * PG, &b, 1), 0);
                assert_int_equal(b, (uint8_t) (i * 31 + 7));
                assert_int_equal(vu_mem_read(&mem, (uint64_t) i * 3 * PG + PG, &b, 1), -EFAULT);
        }
        /* Every other one out, then back in ascending order. */
        for (unsigned i = 0; i < N; i += 2)
                assert_int_equal(vu_dma_unmap(d, (uint64_t) i * 3 * PG, PG), 0);
        assert_int_equal(vu_dma_count(d), N / 2);
        for (unsigned i = 0; i < N; i++)
                assert_int_equal(vu_mem_read(&mem, (uint64_t) i * 3 * PG, &b, 1), i % 2 ? 0 : -EFAULT);
        for (unsigned i = 0; i < N; i += 2)
                assert_int_equal(vu_dma_map(d, (uint64_t) i * 3 * PG, PG, (uint64_t) i * PG, VU_DMA_READ, fd), 0);
        for (unsigned i = 0; i < N; i++) {
                assert_int_equal(vu_mem_read(&mem, (uint64_t) i * 3 * PG, &b, 1), 0);
                assert_int_equal(b, (uint8_t) (i * 31 + 7));
        }
        vu_dma_free(d);
        munmap(host, N * PG);
        close(fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_limit_for_host),
                cmocka_unit_test(test_many_maps_any_order),
                cmocka_unit_test(test_map_unmap),
                cmocka_unit_test(test_map_validation),
                cmocka_unit_test(test_translate),
                cmocka_unit_test(test_many_maps_copy),
                cmocka_unit_test(test_unaligned_offset),
                cmocka_unit_test(test_dirty_logging),
        };

        return cmocka_run_group_tests_name("dma", tests, NULL, NULL);
}
