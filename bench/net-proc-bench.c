/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * net-proc-bench: what the virtio-net device itself costs per packet, with
 * the driver in its own process as a VM's driver is.  The device (model,
 * vfio-user server, backend) runs in a forked child; this process is the
 * guest: our client library maps its RAM and drives one queue pair with
 * the loops Linux's virtio_net runs (EVENT_IDX kicks, NAPI-style receive
 * refills).  Every case reports packets per second and the device's CPU
 * per packet: the CPU time of the child's threads (thread CPU clocks) over
 * the packets it moved, split into the data-path thread ("vnet-q0") and
 * the rest (the vfio-user dispatch thread: trapped notifications); packets
 * per device core follow from it.
 *
 *   net-proc-bench [--seconds S] [--case null|tap] [--json]
 *
 * Cases, for 64-byte and 1500-byte packets (60- and 1514-byte frames, as
 * pktgen counts them: UDP payloads of 18 and 1472 bytes), transmit and
 * receive, with notifications trapped (posted MMIO writes) and polled (the
 * mmapped notify page):
 *   null   the null backend: transmitted frames are counted and dropped,
 *          received ones generated as fast as the rings take them
 *   tap    a TAP in a private network namespace, frames to (and from) a
 *          UDP socket there, next to raw TAP writev/read from one thread of
 *          this process (its thread CPU per packet); needs root and
 *          /dev/net/tun, else skipped
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "frames.h"
#include "host-cmd.h"
#include "net/vnet.h"
#include "srv-thread.h"
#include "vfio-user/client.h"
#include "vfio-user/server.h"
#include "vnet-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)
#define GPA 0x100000000ull
#define RAM (64ull << 20)

typedef struct Opts {
        double secs;
        bool json;
        const char *only;
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

/* The CPU clock of thread tid of this process (Linux: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)). */
static clockid_t thread_clock(pid_t tid) {
        return (clockid_t) ((~(unsigned) tid << 3) | 6);
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

/* ---- the device process ---- */

typedef struct DevSample {
        uint64_t io_ns, other_ns;       /* the data-path threads, the rest */
        VNetStats st;
} DevSample;

static void dev_sample(VNet *n, DevSample *s) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *e;

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
                if (g_str_has_prefix(comm, "vnet-q"))
                        s->io_ns += ns;
                else
                        s->other_ns += ns;
        }
        if (d)
                closedir(d);
        vnet_get_stats(n, &s->st);
}

static int dev_irq(void *o, unsigned v) {
        return vu_server_irq(o, v);
}
static const VirtioIrqOps dev_irq_ops = { .fire = dev_irq };

/* The child: the device on be, served on sock, sampled on request until EOF. */
static G_NORETURN void device_main(NetBackend *be, bool poll, const char *sock, int cmd_fd, int reply_fd) {
        VNetOptions o = { .pairs = 1, .mtu = 1500, .link_up = true, .queue_size = 256, .poll = poll };
        VuServerConfig scfg = { 0 };
        VNet *n = NULL;
        VuServer *s = NULL;
        SrvThread th;
        char cmd;

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        prctl(PR_SET_NAME, "bench-device");
        memcpy(o.mac, "\x52\x54\x00\xbe\xec\x01", 6);
        if (vnet_new(&o, be, &n) < 0 || vnet_server_config(n, &scfg) < 0 || vu_server_new(&scfg, &s) < 0)
                _exit(2);
        vnet_attach(n, vu_server_mem(s), &dev_irq_ops, s);
        if (vu_server_listen(s, sock) < 0 || srv_thread_start(&th, s) < 0)
                _exit(2);
        cmd = 'r';
        write_all(reply_fd, &cmd, 1);
        while (read_all(cmd_fd, &cmd, 1) && cmd == 's') {
                DevSample ds;
                dev_sample(n, &ds);
                write_all(reply_fd, &ds, sizeof(ds));
        }
        srv_thread_stop(&th);
        vu_server_free(s);
        vnet_free(n);
        _exit(0);
}

typedef struct Device {
        pid_t pid;
        int cmd_fd, reply_fd;
        VuClient *c;
        VuGuestRam ram;
        int irq[4];
        Vd d;
} Device;

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Device *) o)->c, 0, off, buf, (uint32_t) len);
}
static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        return vu_client_region_write(((Device *) o)->c, 0, off, buf, (uint32_t) len, true);
}
static int c_wait(void *o, unsigned v, int ms) {
        return v < 4 ? vu_client_wait_irq(((Device *) o)->irq[v], ms) : 0;
}
static const VdOps vd_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

static void device_sample(Device *dv, DevSample *s) {
        char c = 's';
        write_all(dv->cmd_fd, &c, 1);
        if (!read_all(dv->reply_fd, s, sizeof(*s))) {
                fprintf(stderr, "net-proc-bench: the device process died\n");
                exit(1);
        }
}

/* Fork the device on be (the child owns it from then on), connect, and probe like Linux. */
static void device_start(Device *dv, NetBackend *be, bool poll, const char *sock) {
        int cmd[2], reply[2];
        char c;

        memset(dv, 0, sizeof(*dv));
        g_assert_cmpint(pipe2(cmd, O_CLOEXEC), ==, 0);
        g_assert_cmpint(pipe2(reply, O_CLOEXEC), ==, 0);
        fflush(stdout);
        dv->pid = fork();
        g_assert_cmpint(dv->pid, >=, 0);
        if (dv->pid == 0) {
                close(cmd[1]);
                close(reply[0]);
                device_main(be, poll, sock, cmd[0], reply[1]);
        }
        net_backend_free(be);           /* the parent's copies of its fds */
        close(cmd[0]);
        close(reply[1]);
        dv->cmd_fd = cmd[1];
        dv->reply_fd = reply[0];
        if (!read_all(dv->reply_fd, &c, 1) || c != 'r') {
                fprintf(stderr, "net-proc-bench: the device did not start\n");
                exit(1);
        }
        if (vu_client_connect(sock, &dv->c) < 0 || vu_client_negotiate(dv->c, NULL) < 0 ||
            vu_guest_ram_new(GPA, RAM, &dv->ram) < 0 || vu_client_map_ram(dv->c, &dv->ram) < 0 ||
            vu_client_enable_msix(dv->c, 4, dv->irq) < 0) {
                fprintf(stderr, "net-proc-bench: cannot connect to the device\n");
                exit(1);
        }
        vd_init(&dv->d, &vd_ops, dv, dv->ram.host, dv->ram.gpa_base, dv->ram.size);
        dv->d.napi_rx = true;           /* the receive loop Linux runs */
        uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | F(MAC) | F(MRG_RXBUF) | F(STATUS);
        if (vd_probe(&dv->d, want, 1, 0) < 0) {
                fprintf(stderr, "net-proc-bench: the driver's probe failed\n");
                exit(1);
        }
        vd_rx_post(&dv->d, 0);
}

static void device_stop(Device *dv, const char *sock) {
        int status;

        vu_client_free(dv->c);
        for (int i = 0; i < 4; i++)
                close(dv->irq[i]);
        vu_guest_ram_free(&dv->ram);
        close(dv->cmd_fd);
        close(dv->reply_fd);
        waitpid(dv->pid, &status, 0);
        unlink(sock);
}

/* ---- the host side of TAP cases ---- */

typedef struct Net {
        char ns[32], ifname[16];
        FrameAddr me, peer;             /* the guest; the TAP's end in the namespace */
        bool tap;
} Net;

static int ns_enter(const char *ns) {
        g_autofree char *path = g_strdup_printf("/run/netns/%s", ns);
        int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
                abort();
        close(fd);
        return self;
}

static NetBackend *tap_up(Net *nt) {
        NetBackend *be;
        g_snprintf(nt->ifname, sizeof(nt->ifname), "vfunp%d", getpid() % 10000);
        if (net_tap_open(nt->ifname, 1, NULL, &be) < 0)
                abort();
        host_run("ip link set %s netns %s", nt->ifname, nt->ns);
        host_run("ip -n %s addr add 10.79.0.1/24 dev %s", nt->ns, nt->ifname);
        host_run("ip -n %s link set %s address 02:76:66:75:00:02 up", nt->ns, nt->ifname);
        host_run("ip -n %s neigh replace 10.79.0.2 lladdr 52:54:00:be:ec:01 dev %s", nt->ns, nt->ifname);
        memcpy(nt->peer.mac, "\x02\x76\x66\x75\x00\x02", 6);
        return be;
}

typedef struct Peer {
        Net *nt;
        int fd;
        size_t payload;
        volatile bool stop;
        uint64_t count;
        pthread_t th;
} Peer;

static int ns_udp(Net *nt, uint32_t ip, uint16_t port, bool bind_it) {
        int self = ns_enter(nt->ns);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        int big = 8 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
        setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
        if (bind_it) {
                struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = ip, .sin_port = htons(port) };
                if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        abort();
        }
        setns(self, CLONE_NEWNET);
        close(self);
        return fd;
}

/* The UDP socket in the namespace that transmitted frames go to. */
static void *sink_main(void *arg) {
        Peer *p = arg;
        char buf[2048];
        while (!p->stop) {
                struct pollfd pf = { .fd = p->fd, .events = POLLIN };
                if (poll(&pf, 1, 50) > 0)
                        while (recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                                p->count++;
        }
        return NULL;
}

/* A sender in the namespace flooding the guest's address. */
static void *blast_main(void *arg) {
        Peer *p = arg;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = p->nt->me.ip, .sin_port = htons(7000) };
        char data[1500] = { 0 };
        while (!p->stop)
                for (int k = 0; k < 64; k++)
                        sendto(p->fd, data, p->payload, MSG_DONTWAIT, (struct sockaddr *) &sa, sizeof(sa));
        return NULL;
}

static void peer_start(Peer *p, Net *nt, bool sink, size_t payload) {
        memset(p, 0, sizeof(*p));
        p->nt = nt;
        p->payload = payload;
        p->fd = ns_udp(nt, nt->peer.ip, 9999, sink);
        pthread_create(&p->th, NULL, sink ? sink_main : blast_main, p);
}

static void peer_stop(Peer *p) {
        p->stop = true;
        pthread_join(p->th, NULL);
        close(p->fd);
}

/* ---- measurement ---- */

typedef struct Result {
        const char *backend, *dir, *notify;
        unsigned size;                  /* packet size: 64 or 1500 */
        double pps;
        bool have_dev;
        double dev_us, dev_io_us, pps_per_dev_core, dev_cores;
        double own_us;                  /* raw TAP: the sending/receiving thread's CPU per packet */
        double drops_per_pkt;
} Result;

static size_t payload_of(unsigned size) {
        return size == 64 ? 18 : 1472;  /* 60- and 1514-byte frames */
}

static void dev_result(Result *r, const DevSample *s0, const DevSample *s1, uint64_t pkts, double secs) {
        double io = (double) (s1->io_ns - s0->io_ns), all = io + (double) (s1->other_ns - s0->other_ns);
        r->pps = (double) pkts / secs;
        r->have_dev = true;
        r->dev_us = pkts ? all / (double) pkts / 1000 : 0;
        r->dev_io_us = pkts ? io / (double) pkts / 1000 : 0;
        r->pps_per_dev_core = all > 0 ? (double) pkts / (all / 1e9) : 0;
        r->dev_cores = all / 1e9 / secs;
}

/* Transmit as the Linux driver does: queue, kick only when avail_event asks, reclaim. */
static void run_tx(Device *dv, Net *nt, unsigned size, double secs, bool tap, Result *r) {
        uint8_t f[2048], data[1500] = { 0 };
        uint16_t cs = 0, co = 0;
        size_t len = frame_udp(f, &nt->me, &nt->peer, 5000, 9999, data, payload_of(size), false, &cs, &co);
        VdQueue *q = &dv->d.q[1];
        VNetHdr h = { 0 };
        DevSample s0, s1;
        Peer sink;

        if (tap)
                peer_start(&sink, nt, true, 0);
        device_sample(dv, &s0);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9);
        while (now_ns() < end) {
                for (int k = 0; k < 64; k++) {
                        vd_tx_reclaim(&dv->d, 0);
                        if (q->n_free < 2)
                                break;
                        uint16_t id = q->free_ids[q->n_free - 1];
                        uint64_t gpa = q->buf_gpa + (uint64_t) id * VD_BUF_LEN;
                        memcpy(dv->ram.host + (gpa - dv->ram.gpa_base), &h, sizeof(h));
                        memcpy(dv->ram.host + (gpa - dv->ram.gpa_base) + sizeof(h), f, len);
                        uint32_t l = (uint32_t) (sizeof(h) + len);
                        bool w = false;
                        uint16_t old = q->avail_idx;
                        if (vd_add_chain(&dv->d, 1, &gpa, &l, &w, 1, false) < 0)
                                break;
                        /* 2.7.10: kick only when the device asked for it (avail_event). */
                        uint16_t ev = *(volatile uint16_t *) ((uint8_t *) q->dev + 4 + 8 * (size_t) q->size);
                        __atomic_thread_fence(__ATOMIC_SEQ_CST);
                        if (vq_need_event(le16toh(ev), q->avail_idx, old))
                                vd_kick(&dv->d, 1);
                }
                if (q->n_free < 2) {
                        /* Ring full: ask for an interrupt at the next used buffer (Linux stops the
                         * queue and enables the callback), look once more, then sleep. */
                        vd_irq_enable(&dv->d, 1);
                        if (vd_tx_reclaim(&dv->d, 0) == 0)
                                c_wait(dv, q->vector, 1);
                }
        }
        double t = (now_ns() - t0) / 1e9;
        device_sample(dv, &s1);
        uint64_t pkts = s1.st.tx_packets - s0.st.tx_packets;
        dev_result(r, &s0, &s1, pkts, t);
        if (tap) {
                usleep(200000);
                peer_stop(&sink);
                /* What the UDP socket got, of what the device sent. */
                r->drops_per_pkt = pkts ? 1.0 - MIN((double) sink.count / (double) pkts, 1.0) : 0;
        }
}

static void run_rx(Device *dv, Net *nt, unsigned size, double secs, bool tap, Result *r) {
        static uint8_t frame[2048];
        VNetHdr h;
        DevSample s0, s1;
        Peer blaster;
        uint64_t got = 0;

        if (tap) {
                peer_start(&blaster, nt, false, payload_of(size));
                usleep(100000);
        }
        device_sample(dv, &s0);
        uint64_t t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9);
        while (now_ns() < end)
                if (vd_recv(&dv->d, 0, &h, frame, sizeof(frame), 10) > 0)
                        got++;
        double t = (now_ns() - t0) / 1e9;
        device_sample(dv, &s1);
        if (tap)
                peer_stop(&blaster);
        dev_result(r, &s0, &s1, got, t);
        uint64_t drops = s1.st.rx_drops - s0.st.rx_drops;
        r->drops_per_pkt = got ? (double) drops / (double) got : 0;
}

/* Baselines: raw TAP from one thread of this process, no device. */
static void run_raw_tx(Net *nt, unsigned size, double secs, Result *r) {
        uint8_t f[2048], data[1500] = { 0 }, hdr[12] = { 0 };
        uint16_t cs, co;
        NetBackend *be = tap_up(nt);
        size_t len = frame_udp(f, &nt->me, &nt->peer, 5000, 9999, data, payload_of(size), false, &cs, &co);
        struct iovec iov[2] = { { hdr, 12 }, { f, len } };
        Peer sink;
        uint64_t sent = 0;

        peer_start(&sink, nt, true, 0);
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9);
        while (now_ns() < end)
                for (int k = 0; k < 64; k++)
                        if (be->ops->send(be, 0, iov, 2) == 0)
                                sent++;
        double t = (now_ns() - t0) / 1e9;
        uint64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
        usleep(200000);
        peer_stop(&sink);
        r->pps = (double) sent / t;
        r->own_us = sent ? (double) cpu / (double) sent / 1000 : 0;
        r->drops_per_pkt = sent ? 1.0 - MIN((double) sink.count / (double) sent, 1.0) : 0;
        net_backend_free(be);
}

static void run_raw_rx(Net *nt, unsigned size, double secs, Result *r) {
        NetBackend *be = tap_up(nt);
        static uint8_t buf[70000];
        Peer blaster;
        uint64_t got = 0;

        peer_start(&blaster, nt, false, payload_of(size));
        usleep(100000);
        int fd = be->ops->fd(be, 0);
        uint64_t c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), t0 = now_ns(), end = t0 + (uint64_t) (secs * 1e9);
        while (now_ns() < end) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 10) > 0)
                        while (be->ops->recv(be, 0, buf, sizeof(buf)) > 0)
                                got++;
        }
        double t = (now_ns() - t0) / 1e9;
        uint64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
        peer_stop(&blaster);
        r->pps = (double) got / t;
        r->own_us = got ? (double) cpu / (double) got / 1000 : 0;
        net_backend_free(be);
}

/* ---- output ---- */

static void print_header(const Opts *o) {
        if (o->json)
                return;
        printf("%-8s %-3s %5s %-8s | %10s | %8s %8s %6s %11s | %8s | %7s\n", "backend", "dir", "size", "notify",
               "pps", "dev µs", "vnet-q0", "cores", "pps/core", "own µs", "lost");
        printf("%-8s %-3s %5s %-8s | %10s | %8s %8s %6s %11s | %8s | %7s\n", "", "", "", "", "", "per pkt",
               "per pkt", "", "(device)", "per pkt", "per pkt");
}

static void print_result(const Opts *o, const Result *r, bool *first) {
        if (o->json) {
                printf("%s\n    {\"backend\": \"%s\", \"direction\": \"%s\", \"packet_bytes\": %u, \"notify\": \"%s\", "
                       "\"pps\": %.0f, \"lost_per_packet\": %.4f",
                       *first ? "" : ",", r->backend, r->dir, r->size, r->notify, r->pps, r->drops_per_pkt);
                if (r->have_dev)
                        printf(", \"device_cpu_us_per_packet\": %.4f, \"device_io_thread_cpu_us_per_packet\": %.4f, "
                               "\"device_cores\": %.3f, \"pps_per_device_core\": %.0f",
                               r->dev_us, r->dev_io_us, r->dev_cores, r->pps_per_dev_core);
                else
                        printf(", \"own_thread_cpu_us_per_packet\": %.4f", r->own_us);
                printf("}");
        } else if (r->have_dev) {
                printf("%-8s %-3s %5u %-8s | %10.0f | %8.3f %8.3f %6.2f %11.0f | %8s | %7.4f\n", r->backend, r->dir,
                       r->size, r->notify, r->pps, r->dev_us, r->dev_io_us, r->dev_cores, r->pps_per_dev_core, "-",
                       r->drops_per_pkt);
        } else {
                printf("%-8s %-3s %5u %-8s | %10.0f | %8s %8s %6s %11s | %8.3f | %7.4f\n", r->backend, r->dir, r->size,
                       r->notify, r->pps, "-", "-", "-", "-", r->own_us, r->drops_per_pkt);
        }
        *first = false;
        fflush(stdout);
}

static bool want(const Opts *o, const char *c) {
        return !o->only || strcmp(o->only, c) == 0;
}

int main(int argc, char **argv) {
        Opts o = { .secs = 2 };
        static const struct option opts[] = {
                { "seconds", required_argument, NULL, 't' },
                { "case", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "t:c:jh", opts, NULL)) >= 0) {
                switch (c) {
                case 't': o.secs = strtod(optarg, NULL); break;
                case 'c': o.only = optarg; break;
                case 'j': o.json = true; break;
                default:
                        printf("usage: %s [--seconds S] [--case null|tap] [--json]\n", argv[0]);
                        return c == 'h' ? 0 : 2;
                }
        }
        static const unsigned sizes[] = { 64, 1500 };
        static const char *const notify[] = { "trapped", "polled" };
        g_autofree char *dir = g_dir_make_tmp("net-proc-bench-XXXXXX", NULL);
        g_autofree char *sock = g_build_filename(dir, "dev.sock", NULL);
        Net nt = { 0 };
        bool first = true;
        Result r;

        memcpy(nt.me.mac, "\x52\x54\x00\xbe\xec\x01", 6);
        nt.me.ip = inet_addr("10.79.0.2");
        nt.peer.ip = inet_addr("10.79.0.1");
        memset(nt.peer.mac, 0xff, 6);           /* null cases: broadcast */
        nt.tap = geteuid() == 0 && access("/dev/net/tun", R_OK | W_OK) == 0;

        if (o.json)
                printf("{\"benchmark\": \"net-proc-bench\", \"seconds\": %.1f, \"results\": [", o.secs);
        else
                printf("net-proc-bench: virtio-net, driver and device in separate processes, 1 queue pair of 256, "
                       "%.1f s per case\n", o.secs);
        print_header(&o);

        if (want(&o, "null"))
                for (unsigned si = 0; si < G_N_ELEMENTS(sizes); si++)
                        for (unsigned dir_i = 0; dir_i < 2; dir_i++)
                                for (unsigned m = 0; m < 2; m++) {
                                        NetBackend *be = NULL;
                                        Device dv;
                                        /* Receive: the backend generates frames of the packet size. */
                                        g_assert_cmpint(net_null_open(1, dir_i ? payload_of(sizes[si]) + 42 : 0, &be), ==, 0);
                                        device_start(&dv, be, m == 1, sock);
                                        r = (Result) { .backend = "null", .dir = dir_i ? "rx" : "tx",
                                                       .notify = notify[m], .size = sizes[si] };
                                        if (dir_i)
                                                run_rx(&dv, &nt, sizes[si], o.secs, false, &r);
                                        else
                                                run_tx(&dv, &nt, sizes[si], o.secs, false, &r);
                                        print_result(&o, &r, &first);
                                        device_stop(&dv, sock);
                                }
        if (want(&o, "tap") && !nt.tap && !o.json)
                printf("tap: needs root and /dev/net/tun; skipped\n");
        if (want(&o, "tap") && nt.tap) {
                g_snprintf(nt.ns, sizeof(nt.ns), "vfu-np-%d", getpid());
                host_run("ip netns add %s", nt.ns);
                host_run("ip -n %s link set lo up", nt.ns);
                for (unsigned si = 0; si < G_N_ELEMENTS(sizes); si++)
                        for (unsigned dir_i = 0; dir_i < 2; dir_i++) {
                                r = (Result) { .backend = "raw-tap", .dir = dir_i ? "rx" : "tx", .notify = "-",
                                               .size = sizes[si] };
                                if (dir_i)
                                        run_raw_rx(&nt, sizes[si], o.secs, &r);
                                else
                                        run_raw_tx(&nt, sizes[si], o.secs, &r);
                                print_result(&o, &r, &first);
                                for (unsigned m = 0; m < 2; m++) {
                                        Device dv;
                                        device_start(&dv, tap_up(&nt), m == 1, sock);
                                        r = (Result) { .backend = "tap", .dir = dir_i ? "rx" : "tx",
                                                       .notify = notify[m], .size = sizes[si] };
                                        if (dir_i)
                                                run_rx(&dv, &nt, sizes[si], o.secs, true, &r);
                                        else
                                                run_tx(&dv, &nt, sizes[si], o.secs, true, &r);
                                        print_result(&o, &r, &first);
                                        device_stop(&dv, sock);
                                }
                        }
                host_run("ip netns del %s", nt.ns);
        }
        if (o.json)
                printf("\n]}\n");
        rmdir(dir);
        return 0;
}
