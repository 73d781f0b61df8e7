/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * netblk-bench: an NVMe namespace on a network block backend next to the
 * backend's library driving the same storage directly, in the same run.
 *   --backend nbd: an NBD export, next to libnbd; the server is started
 *     here: nbdkit's memory plugin (the default: the network path, no disk)
 *     or qemu-nbd on a raw file in a temporary directory, on a UNIX socket.
 *   --backend rbd: a Ceph RBD image, next to librbd; a single-node cluster
 *     (tests/common/ceph-cluster: ceph-mon and ceph-osd on memstore,
 *     loopback) is started here and torn down at the end.
 * The device (controller, vfio-user server, backend) runs in a forked
 * child as in nvme-proc-bench; this process is the guest, driving 4 KiB
 * random reads and writes at QD1 and QD32 (reaping what is ready, sleeping
 * on the interrupt when nothing is).  Each case reports IOPS, p50/p99
 * latency and, for the device, its CPU per I/O (its threads' CPU clocks
 * over the completed I/Os: the I/O thread, where libnbd runs, and the
 * rest, such as librbd's threads).  The baseline is one thread with QD
 * requests in flight through the library's aio calls (libnbd polling its
 * socket, librbd's completions on an eventfd): what the backend itself
 * costs, in this thread (librbd's own threads are not counted there).
 *
 *   netblk-bench [--backend nbd|rbd] [--seconds S] [--size MiB]
 *                [--server nbdkit|qemu-nbd] [--json]
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libnbd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#if HAVE_LIBRBD
#include <pthread.h>
#include <sys/eventfd.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#endif

#include "nvme-srv.h"

#define BS 4096u
#define GPA 0x100000000ull
#define RAM (16ull << 20)
#define MAX_QD 32u
#define QDEPTH 64u

typedef struct Opts {
        double secs;
        uint64_t size_mib;
        const char *backend, *server;
        bool json;
} Opts;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static uint64_t clock_ns(clockid_t id) {
        struct timespec ts;
        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* ---- the NBD server ---- */

typedef struct Server {
        char *dir, *sock, *uri, *image;
        GPid pid;
        char *ceph_dir, *ceph_conf;     /* rbd: the cluster; its pool "vfu" holds the image "bench" */
} Server;

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

static void child_setup(gpointer data) {
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static void server_start(Server *s, const Opts *o) {
        g_autoptr(GError) error = NULL;
        g_autofree char *size = g_strdup_printf("%" G_GUINT64_FORMAT "M", o->size_mib);
        char *qemu_argv[] = { "qemu-nbd", "-k", NULL, "-f", "raw", "-t", "-e", "4", "--cache=writeback", NULL, NULL };
        char *nbdkit_argv[] = { "nbdkit", "-f", "-U", NULL, "memory", size, NULL };
        char **argv;

        s->dir = g_dir_make_tmp("vfu-netblk-bench-XXXXXX", NULL);
        g_assert_nonnull(s->dir);
        s->sock = g_build_filename(s->dir, "nbd.sock", NULL);
        s->uri = g_strdup_printf("nbd+unix:///?socket=%s", s->sock);
        if (strcmp(o->server, "qemu-nbd") == 0) {
                s->image = g_build_filename(s->dir, "disk.raw", NULL);
                int fd = open(s->image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                g_assert_true(fd >= 0 && ftruncate(fd, (off_t) (o->size_mib << 20)) == 0);
                close(fd);
                qemu_argv[2] = s->sock;
                qemu_argv[9] = s->image;
                argv = qemu_argv;
        } else {
                nbdkit_argv[3] = s->sock;
                argv = nbdkit_argv;
        }
        if (!g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_SEARCH_PATH |
                           G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL, child_setup, NULL, &s->pid, &error)) {
                fprintf(stderr, "netblk-bench: cannot start %s: %s\n", argv[0], error->message);
                exit(77);
        }
        for (int i = 0; i < 3000 && !server_listening(s->sock); i++)
                g_usleep(10000);
        if (!server_listening(s->sock)) {
                fprintf(stderr, "netblk-bench: %s does not listen on %s\n", argv[0], s->sock);
                exit(1);
        }
}

#define RBD_POOL "vfu"
#define RBD_IMAGE "bench"

static void ceph_start(Server *s, const Opts *o) {
#if HAVE_LIBRBD
        g_autofree char *out = NULL, *err = NULL;
        int status = -1, order = 22;
        rados_t cl;
        rados_ioctx_t io;

        s->ceph_dir = g_build_filename(s->dir, "ceph", NULL);
        char *argv[] = { (char *) CEPH_CLUSTER, "start", s->ceph_dir, (char *) RBD_POOL, NULL };
        if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status, NULL) ||
            !g_spawn_check_wait_status(status, NULL)) {
                fprintf(stderr, "netblk-bench: cannot start a Ceph cluster: %s\n", err ? err : "");
                exit(WIFEXITED(status) && WEXITSTATUS(status) == 77 ? 77 : 1);
        }
        s->ceph_conf = g_strdup(g_strchomp(out));
        if (rados_create(&cl, NULL) < 0 || rados_conf_read_file(cl, s->ceph_conf) < 0 || rados_connect(cl) < 0 ||
            rados_ioctx_create(cl, RBD_POOL, &io) < 0 || rbd_create(io, RBD_IMAGE, o->size_mib << 20, &order) < 0) {
                fprintf(stderr, "netblk-bench: cannot create the image\n");
                exit(1);
        }
        rados_ioctx_destroy(io);
        rados_shutdown(cl);
#else
        fprintf(stderr, "netblk-bench: built without librbd\n");
        exit(77);
#endif
}

static void server_stop(Server *s) {
        if (s->ceph_dir) {
#if HAVE_LIBRBD
                char *argv[] = { (char *) CEPH_CLUSTER, "stop", s->ceph_dir, NULL };
                g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, NULL, NULL, NULL);
#endif
                g_free(s->ceph_dir);
                g_free(s->ceph_conf);
        }
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                waitpid(s->pid, NULL, 0);
        }
        unlink(s->sock);
        if (s->image)
                unlink(s->image);
        rmdir(s->dir);
        g_free(s->dir);
        g_free(s->sock);
        g_free(s->uri);
        g_free(s->image);
}

/* ---- the device process ---- */

typedef struct DevSample {
        uint64_t io_ns, other_ns;       /* data-path threads, the rest */
        uint64_t ios;
} DevSample;

static clockid_t thread_clock(pid_t tid) {
        return (clockid_t) ((~(unsigned) tid << 3) | 6);
}

static void dev_sample(NvmeCtrl *c, DevSample *s) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;
        NvmeStats st;

        memset(s, 0, sizeof(*s));
        while (d && (e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                pid_t tid = (pid_t) atoi(e->d_name);
                g_autofree char *p = g_strdup_printf("/proc/self/task/%d/comm", tid);
                g_autofree char *comm = NULL;
                if (!g_file_get_contents(p, &comm, NULL, NULL))
                        continue;
                uint64_t ns = clock_ns(thread_clock(tid));
                if (g_str_has_prefix(comm, "nvme-io"))
                        s->io_ns += ns;
                else
                        s->other_ns += ns;
        }
        if (d)
                closedir(d);
        nvme_ctrl_get_stats(c, &st);
        s->ios = st.io_cmds;
}

static void write_all(int fd, const void *buf, size_t len) {
        while (len > 0) {
                ssize_t n = write(fd, buf, len);
                if (n <= 0 && errno != EINTR)
                        _exit(3);
                if (n > 0) {
                        buf = (const uint8_t *) buf + n;
                        len -= (size_t) n;
                }
        }
}

static bool read_all(int fd, void *buf, size_t len) {
        while (len > 0) {
                ssize_t n = read(fd, buf, len);
                if (n == 0 || (n < 0 && errno != EINTR))
                        return false;
                if (n > 0) {
                        buf = (uint8_t *) buf + n;
                        len -= (size_t) n;
                }
        }
        return true;
}

static G_NORETURN void device_main(const char *sock, const Server *target, int cmd_fd, int reply_fd) {
        NvmeSrv srv;
        NvmeCtrlConfig cfg = { .name = "netblk-bench", .serial = "VFU-NETBLK-BENCH", .max_ioqs = 1, .msix_nvec = 2,
                               .cntlid = 1, .poll_us = 50, .iothreads = 1 };
        BlkOpenOptions bo = { .nbd_uri = target->ceph_conf ? NULL : target->uri, .fd = -1,
                              .rbd_pool = target->ceph_conf ? RBD_POOL : NULL,
                              .rbd_image = target->ceph_conf ? RBD_IMAGE : NULL, .rbd_conf = target->ceph_conf };
        BlkBackend *b = NULL;
        char cmd;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "bench-device");
        if (nvme_srv_start(&srv, &cfg, sock) < 0 || blk_backend_open(&bo, &b) < 0 ||
            nvme_ctrl_ns_add(srv.c, 1, b, 4096, false) < 0)
                _exit(2);
        cmd = 'r';
        write_all(reply_fd, &cmd, 1);
        while (read_all(cmd_fd, &cmd, 1) && cmd == 's') {
                DevSample s;
                dev_sample(srv.c, &s);
                write_all(reply_fd, &s, sizeof(s));
        }
        nvme_srv_stop(&srv);
        _exit(0);
}

typedef struct Device {
        pid_t pid;
        int cmd_fd, reply_fd;
        NvmeVmm vmm;
        uint64_t data;
        char *sock;
} Device;

static void device_sample(Device *dv, DevSample *s) {
        char c = 's';
        write_all(dv->cmd_fd, &c, 1);
        if (!read_all(dv->reply_fd, s, sizeof(*s))) {
                fprintf(stderr, "netblk-bench: the device process died\n");
                exit(1);
        }
}

static void device_start(Device *dv, const Server *srv) {
        int cmd[2], reply[2];
        char c;

        memset(dv, 0, sizeof(*dv));
        dv->sock = g_build_filename(srv->dir, "vfio-user.sock", NULL);
        g_assert_cmpint(pipe2(cmd, O_CLOEXEC), ==, 0);
        g_assert_cmpint(pipe2(reply, O_CLOEXEC), ==, 0);
        fflush(stdout);
        dv->pid = fork();
        g_assert_cmpint(dv->pid, >=, 0);
        if (dv->pid == 0) {
                close(cmd[1]);
                close(reply[0]);
                device_main(dv->sock, srv, cmd[0], reply[1]);
        }
        close(cmd[0]);
        close(reply[1]);
        dv->cmd_fd = cmd[1];
        dv->reply_fd = reply[0];
        if (!read_all(dv->reply_fd, &c, 1) || c != 'r') {
                fprintf(stderr, "netblk-bench: the device did not start\n");
                exit(1);
        }
        g_assert_cmpint(nvme_vmm_connect(&dv->vmm, dv->sock, GPA, RAM, 2), ==, 0);
        NvmeDrv *d = &dv->vmm.d;
        g_assert_cmpint(nvme_drv_enable(d, 32), ==, 0);
        g_assert_cmpint(nvme_drv_set_features(d, 0x07, 0, NULL), ==, 0);
        g_assert_cmpint(nvme_drv_dbbuf_config(d), ==, 0);
        g_assert_cmpint(nvme_drv_create_io_queues(d, 1, QDEPTH, 1), ==, 0);
        dv->data = nvme_drv_alloc(d, (uint64_t) MAX_QD * BS, 4096);
}

static void device_stop(Device *dv) {
        nvme_vmm_disconnect(&dv->vmm);
        close(dv->cmd_fd);
        close(dv->reply_fd);
        waitpid(dv->pid, NULL, 0);
        unlink(dv->sock);
        g_free(dv->sock);
}

/* ---- measurement ---- */

typedef struct Result {
        const char *name;
        bool write;
        unsigned qd;
        double iops, p50_us, p99_us;
        bool have_dev;
        double dev_us_per_io, dev_io_us_per_io;
        double drv_us_per_io;
} Result;

typedef struct Lat {
        uint32_t *v;
        size_t n, cap;
} Lat;

static void lat_add(Lat *l, uint64_t ns) {
        if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 1 << 16;
                l->v = g_renew(uint32_t, l->v, l->cap);
        }
        l->v[l->n++] = (uint32_t) MIN(ns, UINT32_MAX);
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

static void lat_finish(Lat *l, double secs, Result *r) {
        qsort(l->v, l->n, sizeof(uint32_t), cmp_u32);
        r->iops = l->n / secs;
        r->p50_us = l->n ? l->v[l->n / 2] / 1000.0 : 0;
        r->p99_us = l->n ? l->v[MIN((size_t) (l->n * 0.99), l->n - 1)] / 1000.0 : 0;
        g_free(l->v);
        memset(l, 0, sizeof(*l));
}

static uint64_t rnd_block(GRand *g, uint64_t nblocks) {
        return ((uint64_t) g_rand_int(g) << 32 | g_rand_int(g)) % nblocks;
}

static void dev_submit(Device *dv, GRand *g, uint64_t nblocks, bool write, unsigned slot) {
        uint64_t lba = rnd_block(g, nblocks);
        NvmeSqe c = { .opcode = write ? NVME_CMD_WRITE : NVME_CMD_READ, .nsid = 1,
                      .prp1 = dv->data + (uint64_t) slot * BS, .cdw10 = (uint32_t) lba,
                      .cdw11 = (uint32_t) (lba >> 32) };
        nvme_drv_queue(&dv->vmm.d, 1, &c);
}

static void run_dev(Device *dv, bool write, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        NvmeDrv *d = &dv->vmm.d;
        GRand *g = g_rand_new_with_seed(1);
        static uint64_t start[MAX_QD];
        static uint16_t slot_of[65536];
        Lat lat = { 0 };
        DevSample s0, s1;

        device_sample(dv, &s0);
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;
        for (unsigned s = 0; s < qd; s++) {
                slot_of[d->q[1].next_cid] = (uint16_t) s;
                start[s] = now_ns();
                dev_submit(dv, g, nblocks, write, s);
        }
        nvme_drv_ring(d, 1);
        unsigned inflight = qd;
        while (inflight > 0) {
                NvmeCqe e;
                unsigned reaped = 0;
                while (nvme_drv_poll(d, 1, &e)) {
                        if (nvme_drv_status(&e) != 0) {
                                fprintf(stderr, "netblk-bench: I/O failed, status %#x\n", nvme_drv_status(&e));
                                exit(1);
                        }
                        unsigned s = slot_of[e.cid];
                        now = now_ns();
                        lat_add(&lat, now - start[s]);
                        reaped++;
                        inflight--;
                        if (now < end) {
                                slot_of[d->q[1].next_cid] = (uint16_t) s;
                                start[s] = now;
                                dev_submit(dv, g, nblocks, write, s);
                                inflight++;
                        }
                }
                if (reaped)
                        nvme_drv_ring(d, 1);
                else
                        vu_client_wait_irq(dv->vmm.irq_fds[1], 100);
        }
        double elapsed = (now_ns() - t0) / 1e9;
        uint64_t drv_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
        device_sample(dv, &s1);
        lat_finish(&lat, elapsed, res);
        uint64_t ios = s1.ios - s0.ios;
        double io_ns = (double) (s1.io_ns - s0.io_ns), all_ns = io_ns + (double) (s1.other_ns - s0.other_ns);
        res->have_dev = true;
        res->dev_us_per_io = ios ? all_ns / ios / 1000 : 0;
        res->dev_io_us_per_io = ios ? io_ns / ios / 1000 : 0;
        res->drv_us_per_io = ios ? (double) drv_ns / ios / 1000 : 0;
        g_rand_free(g);
}

/* Baseline: libnbd's aio calls from this thread, qd in flight, polling the socket. */
typedef struct Slot {
        uint64_t start;
        bool done;
} Slot;

static int nbd_slot_done(void *opaque, int *error) {
        Slot *s = opaque;

        if (*error) {
                fprintf(stderr, "netblk-bench: libnbd I/O failed: %s\n", strerror(*error));
                exit(1);
        }
        s->done = true;
        return 1;
}

static void nbd_issue(struct nbd_handle *h, GRand *g, uint64_t nblocks, bool write, uint8_t *buf, Slot *s) {
        nbd_completion_callback cb = { .callback = nbd_slot_done, .user_data = s };
        uint64_t off = rnd_block(g, nblocks) * BS;
        int64_t r = write ? nbd_aio_pwrite(h, buf, BS, off, cb, 0) : nbd_aio_pread(h, buf, BS, off, cb, 0);

        if (r < 0) {
                fprintf(stderr, "netblk-bench: %s\n", nbd_get_error());
                exit(1);
        }
        s->done = false;
        s->start = now_ns();
}

static void run_libnbd(const char *uri, bool write, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        struct nbd_handle *h = nbd_create();
        g_autofree uint8_t *bufs = g_malloc0((size_t) qd * BS);
        static Slot slots[MAX_QD];
        GRand *g = g_rand_new_with_seed(1);
        Lat lat = { 0 };

        if (!h || nbd_connect_uri(h, uri) < 0) {
                fprintf(stderr, "netblk-bench: %s\n", nbd_get_error());
                exit(1);
        }
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;
        for (unsigned s = 0; s < qd; s++)
                nbd_issue(h, g, nblocks, write, bufs + (size_t) s * BS, &slots[s]);
        unsigned inflight = qd;
        while (inflight > 0) {
                if (nbd_poll(h, -1) < 0) {
                        fprintf(stderr, "netblk-bench: %s\n", nbd_get_error());
                        exit(1);
                }
                now = now_ns();
                for (unsigned s = 0; s < qd; s++) {
                        if (!slots[s].done || slots[s].start == 0)
                                continue;
                        lat_add(&lat, now - slots[s].start);
                        slots[s].start = 0;
                        inflight--;
                        if (now < end) {
                                nbd_issue(h, g, nblocks, write, bufs + (size_t) s * BS, &slots[s]);
                                inflight++;
                        }
                }
        }
        double elapsed = (now_ns() - t0) / 1e9;
        res->drv_us_per_io = lat.n ? (double) (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / lat.n / 1000 : 0;
        lat_finish(&lat, elapsed, res);
        nbd_shutdown(h, 0);
        nbd_close(h);
        g_rand_free(g);
}

#if HAVE_LIBRBD
/* Baseline: librbd's aio calls from this thread, qd in flight; completions come back on an eventfd. */
typedef struct RbdBench {
        pthread_mutex_t lock;
        unsigned done[MAX_QD], n_done;
        int efd;
        uint64_t start[MAX_QD];
} RbdBench;

typedef struct RbdSlotRef {
        RbdBench *rb;
        unsigned idx;
} RbdSlotRef;

static void rbd_slot_done(rbd_completion_t c, void *arg) {
        RbdSlotRef *ref = arg;
        ssize_t r = rbd_aio_get_return_value(c);
        uint64_t one = 1;

        rbd_aio_release(c);
        if (r < 0) {
                fprintf(stderr, "netblk-bench: librbd I/O failed: %s\n", strerror((int) -r));
                _exit(1);
        }
        pthread_mutex_lock(&ref->rb->lock);
        ref->rb->done[ref->rb->n_done++] = ref->idx;
        pthread_mutex_unlock(&ref->rb->lock);
        if (write(ref->rb->efd, &one, sizeof(one)) < 0)
                _exit(1);
}

static void rbd_issue(rbd_image_t img, GRand *g, uint64_t nblocks, bool wr, uint8_t *buf, RbdSlotRef *ref) {
        rbd_completion_t c;
        uint64_t off = rnd_block(g, nblocks) * BS;

        ref->rb->start[ref->idx] = now_ns();
        if (rbd_aio_create_completion(ref, rbd_slot_done, &c) < 0 ||
            (wr ? rbd_aio_write(img, off, BS, (const char *) buf, c) : rbd_aio_read(img, off, BS, (char *) buf, c)) < 0) {
                fprintf(stderr, "netblk-bench: cannot submit to librbd\n");
                exit(1);
        }
}

static void run_librbd(const char *conf, bool wr, unsigned qd, double secs, uint64_t nblocks, Result *res) {
        static RbdBench rb;
        static RbdSlotRef refs[MAX_QD];
        g_autofree uint8_t *bufs = g_malloc0((size_t) qd * BS);
        GRand *g = g_rand_new_with_seed(1);
        Lat lat = { 0 };
        rados_t cl;
        rados_ioctx_t io;
        rbd_image_t img;

        if (rados_create(&cl, NULL) < 0 || rados_conf_read_file(cl, conf) < 0 || rados_connect(cl) < 0 ||
            rados_ioctx_create(cl, RBD_POOL, &io) < 0 || rbd_open(io, RBD_IMAGE, &img, NULL) < 0) {
                fprintf(stderr, "netblk-bench: cannot open the image\n");
                exit(1);
        }
        pthread_mutex_init(&rb.lock, NULL);
        rb.n_done = 0;
        rb.efd = eventfd(0, EFD_CLOEXEC);
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9), now = t0;
        for (unsigned s = 0; s < qd; s++) {
                refs[s] = (RbdSlotRef) { &rb, s };
                rbd_issue(img, g, nblocks, wr, bufs + (size_t) s * BS, &refs[s]);
        }
        unsigned inflight = qd;
        while (inflight > 0) {
                uint64_t v;
                unsigned done[MAX_QD], n;

                if (read(rb.efd, &v, sizeof(v)) < 0 && errno != EINTR)
                        exit(1);
                pthread_mutex_lock(&rb.lock);
                n = rb.n_done;
                memcpy(done, rb.done, n * sizeof(done[0]));
                rb.n_done = 0;
                pthread_mutex_unlock(&rb.lock);
                now = now_ns();
                for (unsigned i = 0; i < n; i++) {
                        unsigned s = done[i];
                        lat_add(&lat, now - rb.start[s]);
                        inflight--;
                        if (now < end) {
                                rbd_issue(img, g, nblocks, wr, bufs + (size_t) s * BS, &refs[s]);
                                inflight++;
                        }
                }
        }
        double elapsed = (now_ns() - t0) / 1e9;
        res->drv_us_per_io = lat.n ? (double) (clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / lat.n / 1000 : 0;
        lat_finish(&lat, elapsed, res);
        close(rb.efd);
        pthread_mutex_destroy(&rb.lock);
        rbd_close(img);
        rados_ioctx_destroy(io);
        rados_shutdown(cl);
        g_rand_free(g);
}
#endif

/* ---- output ---- */

static void print_header(const Opts *o) {
        if (o->json)
                return;
        printf("%-14s %-9s %4s | %9s %8s %8s | %9s %9s | %9s\n", "case", "rw", "qd", "IOPS", "p50 µs",
               "p99 µs", "dev µs", "io-thr µs", "client µs");
        printf("%-14s %-9s %4s | %9s %8s %8s | %9s %9s | %9s\n", "", "", "", "", "", "", "per I/O", "per I/O",
               "per I/O");
}

static void print_result(const Opts *o, const Result *r, bool *first) {
        const char *rw = r->write ? "randwrite" : "randread";

        if (o->json) {
                printf("%s\n    {\"case\": \"%s\", \"rw\": \"%s\", \"qd\": %u, \"iops\": %.0f, \"p50_us\": %.2f, "
                       "\"p99_us\": %.2f, \"client_cpu_us_per_io\": %.3f",
                       *first ? "" : ",", r->name, rw, r->qd, r->iops, r->p50_us, r->p99_us, r->drv_us_per_io);
                if (r->have_dev)
                        printf(", \"device_cpu_us_per_io\": %.3f, \"device_io_thread_cpu_us_per_io\": %.3f",
                               r->dev_us_per_io, r->dev_io_us_per_io);
                printf("}");
        } else if (r->have_dev) {
                printf("%-14s %-9s %4u | %9.0f %8.1f %8.1f | %9.3f %9.3f | %9.3f\n", r->name, rw, r->qd, r->iops,
                       r->p50_us, r->p99_us, r->dev_us_per_io, r->dev_io_us_per_io, r->drv_us_per_io);
        } else {
                printf("%-14s %-9s %4u | %9.0f %8.1f %8.1f | %9s %9s | %9.3f\n", r->name, rw, r->qd, r->iops,
                       r->p50_us, r->p99_us, "-", "-", r->drv_us_per_io);
        }
        *first = false;
        fflush(stdout);
}

int main(int argc, char **argv) {
        Opts o = { .secs = 2, .size_mib = 256, .backend = "nbd", .server = "nbdkit" };
        static const struct option opts[] = {
                { "seconds", required_argument, NULL, 't' },
                { "size", required_argument, NULL, 's' },
                { "server", required_argument, NULL, 'S' },
                { "backend", required_argument, NULL, 'b' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "t:s:S:b:jh", opts, NULL)) >= 0) {
                switch (c) {
                case 't': o.secs = strtod(optarg, NULL); break;
                case 's': o.size_mib = MAX(strtoull(optarg, NULL, 10), 1); break;
                case 'S': o.server = optarg; break;
                case 'b': o.backend = optarg; break;
                case 'j': o.json = true; break;
                default:
                        printf("usage: %s [--backend nbd|rbd] [--seconds S] [--size MiB] [--server nbdkit|qemu-nbd] [--json]\n",
                               argv[0]);
                        return c == 'h' ? 0 : 2;
                }
        }
        bool rbd = strcmp(o.backend, "rbd") == 0;
        if ((!rbd && strcmp(o.backend, "nbd") != 0) ||
            (strcmp(o.server, "nbdkit") != 0 && strcmp(o.server, "qemu-nbd") != 0)) {
                fprintf(stderr, "netblk-bench: --backend nbd or rbd, --server nbdkit or qemu-nbd\n");
                return 2;
        }
        signal(SIGPIPE, SIG_IGN);
        Server srv = { 0 };
        if (rbd) {
                srv.dir = g_dir_make_tmp("vfu-rbd-bench-XXXXXX", NULL);
                g_assert_nonnull(srv.dir);
                srv.sock = g_build_filename(srv.dir, "unused.sock", NULL);
                ceph_start(&srv, &o);
        } else {
                server_start(&srv, &o);
        }
        uint64_t nblocks = (o.size_mib << 20) / BS;
        static const unsigned qds[] = { 1, 32 };
        bool first = true;

        const char *where = rbd ? "single-node Ceph, memstore" : o.server;
        if (o.json)
                printf("{\"benchmark\": \"netblk-bench\", \"backend\": \"%s\", \"server\": \"%s\", \"seconds\": %.1f, "
                       "\"results\": [", o.backend, where, o.secs);
        else
                printf("4 KiB random I/O on %s (%s, %" G_GUINT64_FORMAT " MiB, loopback), %.1f s each\n",
                       rbd ? "an RBD image" : "an NBD export", where, o.size_mib, o.secs);
        print_header(&o);
        for (int w = 0; w <= 1; w++)
                for (size_t i = 0; i < G_N_ELEMENTS(qds); i++) {
                        Result r = { .name = rbd ? "librbd direct" : "libnbd direct", .write = w, .qd = qds[i] };
#if HAVE_LIBRBD
                        if (rbd)
                                run_librbd(srv.ceph_conf, w, qds[i], o.secs, nblocks, &r);
                        else
#endif
                                run_libnbd(srv.uri, w, qds[i], o.secs, nblocks, &r);
                        print_result(&o, &r, &first);

                        Device dv;
                        Result v = { .name = "vfu NVMe", .write = w, .qd = qds[i] };
                        device_start(&dv, &srv);
                        run_dev(&dv, w, qds[i], o.secs, nblocks, &v);
                        device_stop(&dv);
                        print_result(&o, &v, &first);
                }
        if (o.json)
                printf("\n]}\n");
        server_stop(&srv);
        return 0;
}
