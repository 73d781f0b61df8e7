/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* DMA_MAP / DMA_UNMAP messages: validation, quiescing, fds, and the device's view. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define PG 0x1000ull

static int dma_map(Pair *p, uint32_t argsz, uint32_t flags, uint64_t off, uint64_t addr, uint64_t size, int fd) {
        struct vu_dma_map m = { argsz, flags, off, addr, size };

        return pair_xfer(p, VU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0, fd >= 0 ? &fd : NULL, fd >= 0, NULL, 0, NULL);
}

static int dma_unmap(Pair *p, uint32_t argsz, uint32_t flags, uint64_t addr, uint64_t size) {
        struct vu_dma_unmap u = { argsz, flags, addr, size }, out = { 0 };
        size_t rlen = 0;
        int r = pair_xfer(p, VU_CMD_DMA_UNMAP, 0, &u, sizeof(u), NULL, 0, NULL, 0, &out, sizeof(out), &rlen);

        if (r == 0) {
                /* The reply echoes the request. */
                assert_int_equal(rlen, sizeof(out));
                assert_memory_equal(&u, &out, sizeof(u));
        }
        return r;
}

static void test_map_and_use(void **state) {
        Pair *p = pair_new(false, true);
        int fd = memfd_create("guest", MFD_CLOEXEC);
        const VuMem *mem = vu_server_mem(p->td->server);
        uint8_t *host, b = 0;
        unsigned q;
        int before;

        assert_int_equal(ftruncate(fd, 16 * PG), 0);
        host = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        host[0x10] = 0x99;
        before = count_open_fds();

        q = p->td->quiesce_calls;
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x100000, 8 * PG, fd), 0);
        assert_true(p->td->quiesce_calls > q);  /* the device was quiesced around it */
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 8 * PG, 0x200000, 8 * PG, fd), 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, 0xfffc0000, 0x40000, -1), 0);
        assert_int_equal(vu_dma_count(vu_server_dma(p->td->server)), 3);
        /* The maps hold the file: the server keeps no fd. */
        assert_int_equal(count_open_fds(), before);

        assert_int_equal(vu_mem_read(mem, 0x100010, &b, 1), 0);
        assert_int_equal(b, 0x99);
        assert_int_equal(vu_mem_read(mem, 0xfffc0000, &b, 1), -EFAULT);        /* fd-less: never touched */

        /* Overlap and unknown ranges. */
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, 0x101000, PG, fd), -EINVAL);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x100000, 8 * PG, fd), 0);   /* identical */
        assert_int_equal(dma_unmap(p, 24, 0, 0x100000, PG), -ENOENT);
        assert_int_equal(dma_unmap(p, 24, 0, 0x300000, PG), -ENOENT);

        assert_int_equal(dma_unmap(p, 24, 0, 0x100000, 8 * PG), 0);
        assert_int_equal(vu_mem_read(mem, 0x100010, &b, 1), -EFAULT);
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_ALL, 0, 0), 0);
        assert_int_equal(vu_dma_count(vu_server_dma(p->td->server)), 0);
        assert_int_equal(count_open_fds(), before);
        assert_int_equal(p->td->quiesced, 0);
        munmap(host, 16 * PG);
        close(fd);
        pair_free(p);
}

/* A sealable memfd gets sealed against shrinking: the client cannot SIGBUS us. */
static void test_map_seals_memfd(void **state) {
        Pair *p = pair_new(false, true);
        int fd = memfd_create("guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        const VuMem *mem = vu_server_mem(p->td->server);
        uint8_t b = 1;

        assert_int_equal(ftruncate(fd, 8 * PG), 0);
        assert_int_equal(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK, 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x100000, 8 * PG, fd), 0);
        assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_SHRINK);
        assert_int_equal(ftruncate(fd, PG), -1);
        assert_int_equal(errno, EPERM);
        assert_int_equal(vu_mem_write(mem, 0x100000 + 7 * PG, &b, 1), 0);      /* still backed */
        assert_int_equal(ftruncate(fd, 16 * PG), 0);                          /* growing is fine */
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_ALL, 0, 0), 0);
        close(fd);
        pair_free(p);
}

static void test_map_errors(void **state) {
        Pair *p = pair_new(false, true);
        int fd = memfd_create("guest", MFD_CLOEXEC);
        int before;

        assert_int_equal(ftruncate(fd, 4 * PG), 0);
        before = count_open_fds();
        assert_int_equal(dma_map(p, 24, VU_DMA_READ, 0, 0x100000, PG, fd), -EINVAL);            /* argsz */
        assert_int_equal(dma_map(p, 40, VU_DMA_READ, 0, 0x100000, PG, fd), -EINVAL);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | 0x4, 0, 0x100000, PG, fd), -EINVAL);      /* mmap ext flag */
        assert_int_equal(dma_map(p, 32, 0x80000000, 0, 0x100000, PG, fd), -EINVAL);
        assert_int_equal(dma_map(p, 32, 0, 0, 0x100000, PG, fd), -EINVAL);                     /* no access */
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, 0x100000, 0, fd), -EINVAL);            /* empty */
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, 0x100100, PG, fd), -EINVAL);           /* unaligned */
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, UINT64_MAX & ~(PG - 1), 2 * PG, -1), -EINVAL);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, 0, VU_MAX_DMA_SIZE + PG, -1), -EINVAL);
        /* The memfd is 4 pages: a larger map would fault the server later. */
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, 0x100000, 8 * PG, fd), -EINVAL);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 3 * PG, 0x100000, 2 * PG, fd), -EINVAL);
        /* A shrunk memfd: sized for the map at first, smaller by the time it arrives. */
        assert_int_equal(ftruncate(fd, PG), 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, 0x100000, 2 * PG, fd), -EINVAL);
        assert_int_equal(count_open_fds(), before);     /* every refused fd was closed */
        assert_int_equal(vu_dma_count(vu_server_dma(p->td->server)), 0);

        /* Unmap: flags and ALL's arguments. */
        assert_int_equal(dma_unmap(p, 16, 0, 0x100000, PG), -EINVAL);
        assert_int_equal(dma_unmap(p, 32, 0, 0x100000, PG), -EINVAL);
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_GET_DIRTY_BITMAP, 0x100000, PG), -EINVAL);
        assert_int_equal(dma_unmap(p, 24, 0x4, 0x100000, PG), -EINVAL);
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_ALL, 0x100000, 0), -EINVAL);
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_ALL, 0, PG), -EINVAL);
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_ALL, 0, 0), 0);   /* nothing mapped: fine */
        close(fd);
        pair_free(p);
}

/*
 * max_dma_maps is what the host allows, below vm.max_map_count (every map
 * is a mapping of the process), and enforced with ENOSPC before the kernel
 * runs out.  Maps sent in descending order, the worst case for a sorted
 * array, all go in, and each translates to its own page.
 */
static void test_map_limit(void **state) {
        Pair *p = pair_new(false, true);
        VuDma *dma = vu_server_dma(p->td->server);
        const VuMem *mem = vu_server_mem(p->td->server);
        unsigned limit = vu_dma_max_maps(dma), i;
        g_autofree char *text = NULL;
        int fd = memfd_create("guest", MFD_CLOEXEC), r = 0;
        uint8_t b;

        assert_int_equal(limit, vu_dma_host_limit());
        if (g_file_get_contents("/proc/sys/vm/max_map_count", &text, NULL, NULL))
                assert_true(limit + 1024 <= strtoul(text, NULL, 10));
        assert_true(limit <= VU_MAX_DMA_MAPS);
        /* One page at offset 0 for every map: no two can merge into one kernel mapping. */
        assert_int_equal(ftruncate(fd, PG), 0);
#define G(k) ((uint64_t) (k) * 2 * PG)
        for (i = 0; i <= limit && r == 0; i++)
                r = dma_map(p, 32, VU_DMA_READ, 0, G(limit - i), PG, fd);
        assert_int_equal(r, -ENOSPC);
        assert_int_equal(i, limit + 1);
        assert_int_equal(vu_dma_count(dma), limit);
        assert_int_equal(vu_mem_read(mem, G(1), &b, 1), 0);
        assert_int_equal(vu_mem_read(mem, G(limit) + PG - 1, &b, 1), 0);
        assert_int_equal(vu_mem_read(mem, G(1) + PG, &b, 1), -EFAULT);
        assert_int_equal(vu_mem_read(mem, G(limit / 2) + PG, &b, 1), -EFAULT);
        assert_int_equal(vu_mem_read(mem, G(limit + 1), &b, 1), -EFAULT);
        /* A freed slot takes one map again, and no more. */
        assert_int_equal(dma_unmap(p, 24, 0, G(limit / 2), PG), 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, G(limit + 1), PG, fd), 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ, 0, G(limit + 2), PG, fd), -ENOSPC);
#undef G
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_ALL, 0, 0), 0);
        assert_int_equal(vu_dma_count(dma), 0);
        close(fd);
        pair_free(p);
}

/*
 * What cannot be sealed (a plain file, as QEMU's memory-backend-file; a
 * memfd made without sealing) is accepted, and shrinking it under a map
 * does not kill the server: the copy that hits the hole fails with EFAULT,
 * and so does every later access to that map; other maps work on, and the
 * client can map the range again.
 */
static void test_map_shrunk_under_us(void **state) {
        Pair *p = pair_new(false, true);
        const VuMem *mem = vu_server_mem(p->td->server);
        VuDma *dma = vu_server_dma(p->td->server);
        g_autofree char *path = g_build_filename(g_get_tmp_dir(), "vfu-test-ram-XXXXXX", NULL);
        int file = g_mkstemp(path);
        int unsealable = memfd_create("guest", MFD_CLOEXEC);
        int sealed = memfd_create("guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        static uint8_t buf[8 * PG];
        uint8_t m = 0x5a;

        assert_true(file >= 0 && unsealable >= 0 && sealed >= 0);
        unlink(path);
        for (int *fd = (int[]) { file, unsealable, sealed, -1 }; *fd >= 0; fd++) {
                assert_int_equal(ftruncate(*fd, 8 * PG), 0);
                assert_int_equal(pwrite(*fd, &m, 1, 3 * PG), 1);
        }
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x100000, 8 * PG, file), 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x200000, 8 * PG, unsealable), 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x300000, 8 * PG, sealed), 0);
        assert_int_equal(fcntl(unsealable, F_GET_SEALS) & F_SEAL_SHRINK, 0);
        assert_int_equal(vu_mem_read(mem, 0x100000 + 3 * PG, &m, 1), 0);
        assert_int_equal(m, 0x5a);

        assert_int_equal(ftruncate(file, 0), 0);
        assert_int_equal(ftruncate(unsealable, PG), 0);
        assert_int_equal(vu_mem_read(mem, 0x100000, buf, sizeof(buf)), -EFAULT);       /* hit the hole */
        assert_int_equal(vu_mem_read(mem, 0x100000, buf, 1), -EFAULT);                 /* and from then on */
        assert_int_equal(vu_mem_write(mem, 0x200000 + 3 * PG, buf, 1), -EFAULT);
        assert_int_equal(vu_mem_read(mem, 0x200000, buf, 1), -EFAULT);                 /* the whole map */
        assert_null(vu_mem_ptr(mem, 0x200000, 8, VU_PROT_READ));
        assert_int_equal(vu_dma_lost_count(dma), 2);
        assert_int_equal(vu_mem_read(mem, 0x300000 + 3 * PG, &m, 1), 0);               /* others work on */
        assert_int_equal(m, 0x5a);

        /* The client unmaps and maps again, from a file of the right size. */
        assert_int_equal(dma_unmap(p, 24, 0, 0x100000, 8 * PG), 0);
        assert_int_equal(ftruncate(file, 8 * PG), 0);
        assert_int_equal(dma_map(p, 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x100000, 8 * PG, file), 0);
        assert_int_equal(vu_mem_write(mem, 0x100000 + PG, &m, 1), 0);
        m = 0;
        assert_int_equal(pread(file, &m, 1, PG), 1);
        assert_int_equal(m, 0x5a);
        assert_int_equal(dma_unmap(p, 24, VU_DMA_UNMAP_ALL, 0, 0), 0);
        close(file);
        close(unsealable);
        close(sealed);
        pair_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_map_and_use),
                cmocka_unit_test(test_map_errors),
                cmocka_unit_test(test_map_seals_memfd),
                cmocka_unit_test(test_map_shrunk_under_us),
                cmocka_unit_test(test_map_limit),
        };

        return cmocka_run_group_tests_name("dma-msgs", tests, NULL, NULL);
}
