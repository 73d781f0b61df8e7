/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * An NVMe controller whose namespace is an NBD export served by qemu-nbd
 * (a raw file in a temporary directory): commands become NBD requests,
 * the bytes land in the file, and a server that stays away turns into
 * Namespace Not Ready with DNR clear, the status Linux retries, until it
 * is back.  Skipped (77) without qemu-nbd.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "fake-mem.h"
#include "nvme-drv.h"
#include "nvme/nvme.h"

#define GPA   0x100000000ull
#define RAM   (16ull << 20)
#define NVEC  3
#define DISK  (16u << 20)

typedef struct Fx {
        char *dir, *sock, *uri, *img;
        GPid server;
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

static void child_setup(gpointer data) {
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static bool server_listening(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool ok;

        g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
        ok = fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0;
        if (fd >= 0)
                close(fd);
        return ok;
}

static void server_start(Fx *f) {
        char *argv[] = { "qemu-nbd", "-k", f->sock, "-f", "raw", "-t", f->img, NULL };
        g_autoptr(GError) error = NULL;

        unlink(f->sock);
        assert_true(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH |
                                  G_SPAWN_STDOUT_TO_DEV_NULL, child_setup, NULL, &f->server, &error));
        for (int i = 0; i < 3000 && !server_listening(f->sock); i++)
                g_usleep(10000);
        assert_true(server_listening(f->sock));
}

static void server_kill(Fx *f) {
        if (f->server <= 0)
                return;
        kill(f->server, SIGKILL);
        waitpid(f->server, NULL, 0);
        f->server = 0;
        unlink(f->sock);
}

static int setup(void **state) {
        Fx *f = g_new0(Fx, 1);
        f->dir = g_dir_make_tmp("vfu-nvme-nbd-XXXXXX", NULL);
        assert_non_null(f->dir);
        f->sock = g_build_filename(f->dir, "nbd.sock", NULL);
        f->img = g_build_filename(f->dir, "disk.raw", NULL);
        f->uri = g_strdup_printf("nbd+unix:///?socket=%s", f->sock);
        int fd = open(f->img, O_RDWR | O_CREAT | O_EXCL, 0600);
        assert_true(fd >= 0 && ftruncate(fd, DISK) == 0);
        close(fd);
        server_start(f);

        fake_mem_init(&f->fm, GPA, RAM);
        fake_irq_init(&f->irq, NVEC);
        NvmeCtrlConfig cfg = { .name = "nbd0", .serial = "VFU-NBD-0001", .max_ioqs = 2, .msix_nvec = NVEC,
                               .cntlid = 1 };
        memset(cfg.host_uuid, 0x42, 16);
        assert_int_equal(nvme_ctrl_new(&cfg, &f->c), 0);
        nvme_ctrl_attach(f->c, &f->fm.mem, fake_irq_fire, &f->irq);
        BlkOpenOptions o = { .nbd_uri = f->uri, .fd = -1, .nbd_wait_ms = 300 };
        BlkBackend *b = NULL;
        assert_int_equal(blk_backend_open(&o, &b), 0);
        assert_int_equal(nvme_ctrl_ns_add(f->c, 1, b, 512, false), 0);
        nvme_drv_init(&f->d, &direct_ops, f, f->fm.host, GPA, RAM);
        f->d.timeout_ms = 20000;
        f->buf = nvme_drv_alloc(&f->d, 1 << 20, 4096);
        f->buf2 = nvme_drv_alloc(&f->d, 1 << 20, 4096);
        uint32_t dw0 = 0;
        assert_int_equal(nvme_drv_enable(&f->d, 32), 0);
        assert_int_equal(nvme_drv_set_features(&f->d, 0x07, 1 | 1 << 16, &dw0), 0);
        assert_int_equal(nvme_drv_create_io_queues(&f->d, 1, 64, 1), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        nvme_ctrl_free(f->c);
        fake_irq_fini(&f->irq);
        fake_mem_fini(&f->fm);
        server_kill(f);
        unlink(f->img);
        rmdir(f->dir);
        g_free(f->dir);
        g_free(f->sock);
        g_free(f->img);
        g_free(f->uri);
        g_free(f);
        return 0;
}

static uint8_t *ptr(Fx *f, uint64_t gpa) { return nvme_drv_ptr(&f->d, gpa); }

static void fill(uint8_t *p, size_t n, unsigned seed) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (i * 13 + seed * 101 + (i >> 12));
}

/* Writes and reads through the controller land in the server's file. */
static void test_io_lands_in_export(void **state) {
        Fx *f = *state;
        static const struct { uint32_t nlb; uint64_t slba; uint32_t off; } cases[] = {
                { 1, 0, 0 }, { 8, 1, 0 }, { 7, 100, 512 }, { 256, 2048, 0 }, { 33, 9999, 3584 },
        };
        for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
                uint64_t len = (uint64_t) cases[i].nlb * 512;
                uint64_t w = f->buf + cases[i].off, r = f->buf2 + cases[i].off;
                fill(ptr(f, w), len, i + 1);
                memset(ptr(f, r), 0, len);
                assert_int_equal(nvme_drv_rw(&f->d, 1, true, 1, cases[i].slba, cases[i].nlb, 512, w, i & 1), 0);
                assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, cases[i].slba, cases[i].nlb, 512, r, false), 0);
                assert_memory_equal(ptr(f, w), ptr(f, r), len);
                NvmeSqe fl = { .opcode = NVME_CMD_FLUSH, .nsid = 1 };
                assert_int_equal(nvme_drv_cmd(&f->d, 1, &fl, NULL), 0);
                g_autofree uint8_t *disk = g_malloc(len);
                int fd = open(f->img, O_RDONLY);
                assert_true(pread(fd, disk, len, (off_t) (cases[i].slba * 512)) == (ssize_t) len);
                close(fd);
                assert_memory_equal(disk, ptr(f, w), len);
        }
        /* Write Zeroes through the export. */
        NvmeSqe wz = { .opcode = NVME_CMD_WRITE_ZEROES, .nsid = 1, .cdw10 = 1, .cdw12 = 7 };
        assert_int_equal(nvme_drv_cmd(&f->d, 1, &wz, NULL), 0);
        assert_int_equal(nvme_drv_rw(&f->d, 1, false, 1, 0, 16, 512, f->buf2, false), 0);
        for (unsigned i = 512; i < 512 * 9; i++)
                assert_int_equal(ptr(f, f->buf2)[i], 0);
}

/* A server that stays away: Namespace Not Ready without DNR; back, the same command succeeds. */
static void test_server_gone_is_retryable(void **state) {
        Fx *f = *state;

        fill(ptr(f, f->buf), 4096, 3);
        assert_int_equal(nvme_drv_rw(&f->d, 1, true, 1, 64, 8, 512, f->buf, true), 0);
        server_kill(f);
        int st = nvme_drv_rw(&f->d, 1, false, 1, 64, 8, 512, f->buf2, false);
        assert_int_equal(st & 0x7ff, NVME_SC_NS_NOT_READY & 0x7ff);
        assert_int_equal(st & NVME_DNR, 0);

        server_start(f);
        do {
                g_usleep(50000);
                st = nvme_drv_rw(&f->d, 1, false, 1, 64, 8, 512, f->buf2, false);
        } while ((st & 0x7ff) == (NVME_SC_NS_NOT_READY & 0x7ff));
        assert_int_equal(st, 0);
        assert_memory_equal(ptr(f, f->buf), ptr(f, f->buf2), 4096);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_io_lands_in_export, setup, teardown),
                cmocka_unit_test_setup_teardown(test_server_gone_is_retryable, setup, teardown),
        };
        g_autofree char *qemu_nbd = g_find_program_in_path("qemu-nbd");

        signal(SIGPIPE, SIG_IGN);
        if (!qemu_nbd) {
                fprintf(stderr, "SKIP: qemu-nbd missing (./scripts/deps installs qemu-utils)\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
