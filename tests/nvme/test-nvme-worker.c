/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The nvme device type in a real vfud-worker process: definition JSON in,
 * vfio-user socket out, our client as the VMM doing verified I/O against
 * the backing files the worker created; bad options rejected with a message;
 * live migration between two workers with writes in flight at STOP; a
 * worker killed under its client seen gone at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "nvme-srv.h"

static const char *worker_path;

typedef struct Fx {
        char *dir;
        GPid pid, pid2;
} Fx;

static int setup(void **state) {
        Fx *f = g_new0(Fx, 1);
        f->dir = g_build_filename(BUILDDIR, "tests-nvme-worker-XXXXXX", NULL);
        assert_non_null(g_mkdtemp(f->dir));
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        if (f->pid > 0) {
                kill(f->pid, SIGTERM);
                waitpid(f->pid, NULL, 0);
        }
        if (f->pid2 > 0) {
                kill(f->pid2, SIGTERM);
                waitpid(f->pid2, NULL, 0);
        }
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        g_free(f->dir);
        g_free(f);
        return 0;
}

/*
 * Start a worker on a definition (in subdirectory tag, "" for the test's
 * directory); returns its exit status if it exits early, or -1 while it runs.
 */
static int start_worker_at(Fx *f, const char *tag, GPid *pid, const char *options_json, char **sock_out,
                           char **err_out) {
        g_autofree char *dir = g_build_filename(f->dir, tag, NULL);
        g_mkdir_with_parents(dir, 0700);
        g_autofree char *def = g_build_filename(dir, "dev.json", NULL);
        g_autofree char *json = g_strdup_printf("{\"name\": \"w0\", \"type\": \"nvme\", \"vm\": \"t\", \"options\": %s}",
                                                options_json);
        char *sock = g_build_filename(dir, "w0.sock", NULL);
        g_autofree char *errlog = g_build_filename(dir, "stderr.log", NULL);
        assert_true(g_file_set_contents(def, json, -1, NULL));
        g_autofree char *cmd = g_strdup_printf("exec '%s' --definition '%s' --socket '%s' --no-seccomp 2>'%s'",
                                               worker_path, def, sock, errlog);
        char *argv[] = { "/bin/sh", "-c", cmd, NULL };
        assert_true(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, pid, NULL));
        for (int i = 0; i < 1000; i++) {
                int status;
                if (waitpid(*pid, &status, WNOHANG) == *pid) {
                        *pid = 0;
                        if (err_out)
                                g_file_get_contents(errlog, err_out, NULL, NULL);
                        g_free(sock);
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
                }
                if (access(sock, F_OK) == 0)
                        break;
                usleep(10000);
        }
        *sock_out = sock;
        return -1;
}

static int start_worker(Fx *f, const char *options_json, char **sock_out, char **err_out) {
        return start_worker_at(f, "", &f->pid, options_json, sock_out, err_out);
}

static void test_worker_verified_io(void **state) {
        Fx *f = *state;
        g_autofree char *p1 = g_build_filename(f->dir, "a.img", NULL), *p2 = g_build_filename(f->dir, "b.img", NULL);
        g_autofree char *opts = g_strdup_printf(
                "{\"serial\": \"W0SERIAL\", \"queues\": 2, \"host-uuid\": \"6b1d2c3a-1f2e-4d5c-9b8a-7f6e5d4c3b2a\","
                " \"namespaces\": [{\"nsid\": 1, \"path\": \"%s\", \"size\": 8388608},"
                " {\"nsid\": 2, \"path\": \"%s\", \"size\": 4194304, \"block-size\": 4096}]}", p1, p2);
        g_autofree char *sock = NULL;
        assert_int_equal(start_worker(f, opts, &sock, NULL), -1);

        NvmeVmm v;
        assert_int_equal(nvme_vmm_connect(&v, sock, 0x100000000ull, 16 << 20, 3), 0);
        NvmeDrv *d = &v.d;
        uint64_t buf = nvme_drv_alloc(d, 1 << 20, 4096), buf2 = nvme_drv_alloc(d, 1 << 20, 4096);
        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_identify(d, 1, 0, buf), 0);
        assert_memory_equal((uint8_t *) nvme_drv_ptr(d, buf) + 4, "W0SERIAL            ", 20);
        assert_int_equal(nvme_drv_set_features(d, 0x07, 1 | 1 << 16, NULL), 0);
        assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 64, 1), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 2, 64, 2), 0);
        uint8_t *w = nvme_drv_ptr(d, buf), *r = nvme_drv_ptr(d, buf2);
        for (unsigned i = 0; i < 65536; i++)
                w[i] = (uint8_t) (i * 7 + 3);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 100, 128, 512, buf, true), 0);
        assert_int_equal(nvme_drv_rw(d, 2, true, 2, 7, 16, 4096, buf, false), 0);
        NvmeSqe fl = { .opcode = NVME_CMD_FLUSH, .nsid = 0xffffffff };
        assert_int_equal(nvme_drv_cmd(d, 1, &fl, NULL), 0);
        assert_int_equal(nvme_drv_rw(d, 2, false, 1, 100, 128, 512, buf2, false), 0);
        assert_memory_equal(w, r, 65536);
        /* The files the worker created hold the data. */
        uint8_t disk[65536];
        int fd = open(p2, O_RDONLY);
        assert_true(pread(fd, disk, sizeof(disk), 7 * 4096) == (ssize_t) sizeof(disk));
        close(fd);
        assert_memory_equal(disk, w, sizeof(disk));
        /* NGUIDs follow the host UUID: the same in a second worker with the same definition. */
        assert_int_equal(nvme_drv_identify(d, 0, 1, buf), 0);
        uint8_t nguid[16];
        memcpy(nguid, w + 104, 16);
        uint8_t host[16] = { 0x6b, 0x1d, 0x2c, 0x3a, 0x1f, 0x2e, 0x4d, 0x5c, 0x9b, 0x8a, 0x7f, 0x6e, 0x5d, 0x4c, 0x3b, 0x2a };
        uint8_t ng[16], eui[8], uu[16];
        nvme_derive_ns_ids(host, "w0", 1, ng, eui, uu);
        assert_memory_equal(nguid, ng, 16);
        nvme_vmm_disconnect(&v);
}

static void test_worker_bad_options(void **state) {
        Fx *f = *state;
        g_autofree char *err = NULL, *sock = NULL;
        assert_true(start_worker(f, "{\"queues\": 0}", &sock, &err) > 0);
        assert_non_null(strstr(err, "queues"));
        g_clear_pointer(&err, g_free);
        assert_true(start_worker(f, "{\"namespaces\": [{\"nsid\": 1, \"path\": \"/nonexistent/x.img\"}]}", &sock, &err) > 0);
        assert_non_null(strstr(err, "/nonexistent/x.img"));
        g_clear_pointer(&err, g_free);
        assert_true(start_worker(f, "{\"namespaces\": [{\"nsid\": 1, \"path\": \"/tmp/x\", \"block-size\": 1000}]}",
                                 &sock, &err) > 0);
        assert_non_null(strstr(err, "block-size"));
}

static int mig_set(VuClient *c, uint32_t st) {
        struct vu_feature_mig_state m = { .device_state = st };
        return vu_client_device_feature(c, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &m, sizeof(m), NULL, 0, NULL);
}

/*
 * Live migration between two worker processes from the same definition.
 * Storage is shared (both definitions name the same files, as on shared
 * storage): the source writes nothing after STOP, the destination nothing
 * before RUNNING, and both use the page cache, so the destination reads
 * what the source wrote.  Guest RAM is one memfd mapped by both clients.
 */
static void test_worker_live_migration(void **state) {
        Fx *f = *state;
        g_autofree char *p1 = g_build_filename(f->dir, "a.img", NULL);
        g_autofree char *opts = g_strdup_printf(
                "{\"serial\": \"W0SERIAL\", \"queues\": 2, \"host-uuid\": \"6b1d2c3a-1f2e-4d5c-9b8a-7f6e5d4c3b2a\","
                " \"namespaces\": [{\"nsid\": 1, \"path\": \"%s\", \"size\": 8388608}]}", p1);
        g_autofree char *sock = NULL, *sock2 = NULL;
        assert_int_equal(start_worker_at(f, "src", &f->pid, opts, &sock, NULL), -1);
        assert_int_equal(start_worker_at(f, "dst", &f->pid2, opts, &sock2, NULL), -1);

        NvmeVmm v;
        assert_int_equal(nvme_vmm_connect(&v, sock, 0x100000000ull, 16 << 20, 3), 0);
        NvmeDrv *d = &v.d;
        uint64_t buf = nvme_drv_alloc(d, 1 << 20, 4096), buf2 = nvme_drv_alloc(d, 1 << 20, 4096);
        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_set_features(d, 0x07, 1 | 1 << 16, NULL), 0);
        assert_int_equal(nvme_drv_dbbuf_config(d), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 64, 1), 0);
        uint8_t *w = nvme_drv_ptr(d, buf), *r = nvme_drv_ptr(d, buf2);
        for (unsigned i = 0; i < 65536; i++)
                w[i] = (uint8_t) (i * 11 + 1);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 200, 128, 512, buf, false), 0);
        /* Writes in flight as the source stops. */
        for (unsigned i = 0; i < 8; i++) {
                NvmeSqe c = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw10 = 1000 + i * 128, .cdw12 = 127 };
                nvme_drv_build_prps(d, &c, buf, 65536);
                nvme_drv_queue(d, 1, &c);
        }
        nvme_drv_ring(d, 1);

        assert_int_equal(mig_set(v.c, VU_MIG_STOP_COPY), 0);
        GByteArray *st = g_byte_array_new();
        uint8_t chunk[4096];
        int n;
        while ((n = vu_client_mig_data_read(v.c, chunk, sizeof(chunk))) > 0)
                g_byte_array_append(st, chunk, (guint) n);
        assert_int_equal(n, 0);
        assert_int_equal(mig_set(v.c, VU_MIG_STOP), 0);

        /* The destination VMM: its own connection, the same RAM. */
        VuClient *c2 = NULL;
        int irq2[3];
        assert_int_equal(vu_client_connect(sock2, &c2), 0);
        assert_int_equal(vu_client_negotiate(c2, NULL), 0);
        assert_int_equal(vu_client_map_ram(c2, &v.ram), 0);
        uint16_t cmd = 0x6;
        assert_int_equal(vu_client_region_write(c2, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false), 0);
        assert_int_equal(vu_client_enable_msix(c2, 3, irq2), 0);
        assert_int_equal(mig_set(c2, VU_MIG_RESUMING), 0);
        for (guint off = 0; off < st->len; off += 1000)
                assert_int_equal(vu_client_mig_data_write(c2, st->data + off, MIN(1000u, st->len - off)), 0);
        assert_int_equal(mig_set(c2, VU_MIG_STOP), 0);
        assert_int_equal(mig_set(c2, VU_MIG_RUNNING), 0);
        g_byte_array_unref(st);

        /* The driver now talks to the destination (the same NvmeVmm, its client and interrupts swapped). */
        VuClient *c1 = v.c;
        int irq1[3] = { v.irq_fds[0], v.irq_fds[1], v.irq_fds[2] };
        v.c = c2;
        memcpy(v.irq_fds, irq2, sizeof(irq2));
        NvmeCqe e;
        for (unsigned i = 0; i < 8; i++) {
                assert_int_equal(nvme_drv_reap(d, 1, &e, 10000), 0);
                assert_int_equal(nvme_drv_status(&e), 0);
        }
        for (unsigned i = 0; i < 9; i++) {
                memset(r, 0, 65536);
                assert_int_equal(nvme_drv_rw(d, 1, false, 1, i == 8 ? 200 : 1000 + i * 128, 128, 512, buf2, false), 0);
                assert_memory_equal(w, r, 65536);
        }
        vu_client_free(c1);
        for (unsigned i = 0; i < 3; i++)
                close(irq1[i]);
        nvme_vmm_disconnect(&v);
}

/*
 * The worker is killed with a write in flight: the client sees its socket
 * close and fails the pending command with ECONNRESET at once, and every
 * later request too, instead of waiting out the driver's timeout.
 */
static void test_worker_killed_under_client(void **state) {
        Fx *f = *state;
        g_autofree char *p1 = g_build_filename(f->dir, "a.img", NULL);
        g_autofree char *opts = g_strdup_printf("{\"namespaces\": [{\"nsid\": 1, \"path\": \"%s\", \"size\": 4194304}]}",
                                                p1);
        g_autofree char *sock = NULL;
        assert_int_equal(start_worker(f, opts, &sock, NULL), -1);

        NvmeVmm v;
        assert_int_equal(nvme_vmm_connect(&v, sock, 0x100000000ull, 16 << 20, 2), 0);
        NvmeDrv *d = &v.d;
        uint64_t buf = nvme_drv_alloc(d, 65536, 4096);
        assert_int_equal(nvme_drv_enable(d, 32), 0);
        assert_int_equal(nvme_drv_create_io_queues(d, 1, 64, 1), 0);
        assert_int_equal(nvme_drv_rw(d, 1, true, 1, 0, 8, 512, buf, false), 0);

        /* Stopped, it cannot complete the write; killed, its end of the socket closes. */
        d->timeout_ms = 60000;
        assert_int_equal(kill(f->pid, SIGSTOP), 0);
        NvmeSqe w = { .opcode = NVME_CMD_WRITE, .nsid = 1, .cdw12 = 7 };
        nvme_drv_build_prps(d, &w, buf, 4096);
        nvme_drv_submit(d, 1, &w);
        assert_int_equal(kill(f->pid, SIGKILL), 0);
        assert_int_equal(waitpid(f->pid, NULL, 0), f->pid);
        f->pid = 0;

        NvmeCqe e;
        assert_int_equal(nvme_drv_reap(d, 1, &e, d->timeout_ms), -ECONNRESET);
        assert_int_equal(vu_client_lost(v.c), -ECONNRESET);
        assert_int_equal(nvme_drv_rw(d, 1, false, 1, 0, 8, 512, buf, false), -ECONNRESET);
        uint32_t csts;
        assert_int_equal(vu_client_region_read(v.c, VU_PCI_BAR0_REGION, NVME_REG_CSTS, &csts, 4), -ECONNRESET);
        nvme_vmm_disconnect(&v);
}

int main(int argc, char **argv) {
        worker_path = argc > 1 ? argv[1] : NULL;
        if (!worker_path) {
                fprintf(stderr, "usage: test-nvme-worker PATH-TO-vfud-worker\n");
                return 2;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_worker_verified_io, setup, teardown),
                cmocka_unit_test_setup_teardown(test_worker_bad_options, setup, teardown),
                cmocka_unit_test_setup_teardown(test_worker_live_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_worker_killed_under_client, setup, teardown),
        };
        return cmocka_run_group_tests_name("nvme-worker", tests, NULL, NULL);
}
