/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net throughput: our client acting as the guest driver sends and
 * receives UDP frames through the device (vfio-user socket, TAP backend)
 * with trapped notifications and with the mmapped-and-polled notify page,
 * side by side with raw TAP writev/read from this process in the same run.
 * The TAP lives in a private network namespace with 10.77.0.1; frames go
 * to and come from a UDP socket there.  Needs root and /dev/net/tun.
 *
 *   net-bench [--seconds S] [--size BYTES]
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "host-cmd.h"
#include "srv-thread.h"
#include "frames.h"
#include "net/vnet.h"
#include "vfio-user/client.h"
#include "vfio-user/server.h"
#include "vnet-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)

typedef struct Bench {
        char ns[32], ifname[16], sock[64];
        VNet *n;
        VuServer *s;
        SrvThread thread;
        VuClient *c;
        VuGuestRam ram;
        int irq[8];
        Vd d;
        FrameAddr me, peer;
} Bench;

static double seconds = 1.0;
static size_t payload = 64;

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static int ns_enter(const char *ns) {
        g_autofree char *path = g_strdup_printf("/run/netns/%s", ns);
        int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) < 0)
                abort();
        close(fd);
        return self;
}

/* Interrupts the device raised, and driver sleeps that ended with one, for the per-frame figures. */
static uint64_t irqs_fired, irq_wakeups;

static int irq_fire(void *o, unsigned v) {
        __atomic_add_fetch(&irqs_fired, 1, __ATOMIC_RELAXED);
        return vu_server_irq(o, v);
}
static const VirtioIrqOps irq_ops = { .fire = irq_fire };
static int c_read(void *o, uint64_t off, void *buf, size_t len) { return vu_client_region_read(((Bench *) o)->c, 0, off, buf, (uint32_t) len); }
static int c_write(void *o, uint64_t off, const void *buf, size_t len) { return vu_client_region_write(((Bench *) o)->c, 0, off, buf, (uint32_t) len, true); }
static int c_wait(void *o, unsigned v, int ms) {
        int r = v < 8 ? vu_client_wait_irq(((Bench *) o)->irq[v], ms) : 0;
        irq_wakeups += r > 0;
        return r;
}
static const VdOps ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

static void device_up(Bench *b, NetBackend *be, bool poll_mode) {
        VNetOptions o = { .pairs = 1, .mtu = 1500, .link_up = true, .queue_size = 256, .poll = poll_mode };
        VuServerConfig scfg = { 0 };

        memcpy(o.mac, b->me.mac, 6);
        if (vnet_new(&o, be, &b->n) < 0 || vnet_server_config(b->n, &scfg) < 0 || vu_server_new(&scfg, &b->s) < 0)
                abort();
        vnet_attach(b->n, vu_server_mem(b->s), &irq_ops, b->s);
        g_snprintf(b->sock, sizeof(b->sock), "/tmp/vfu-nb-%d.sock", getpid());
        if (vu_server_listen(b->s, b->sock) < 0 || srv_thread_start(&b->thread, b->s) < 0)
                abort();
        if (vu_client_connect(b->sock, &b->c) < 0 || vu_client_negotiate(b->c, NULL) < 0 ||
            vu_guest_ram_new(0x100000000ull, 64 << 20, &b->ram) < 0 || vu_client_map_ram(b->c, &b->ram) < 0 ||
            vu_client_enable_msix(b->c, 4, b->irq) < 0)
                abort();
        vd_init(&b->d, &ops, b, b->ram.host, b->ram.gpa_base, b->ram.size);
        b->d.napi_rx = true;            /* the driver loop Linux runs: a slow driver is not what we measure */
        uint64_t want = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | F(MAC) | F(MRG_RXBUF) | F(STATUS);
        if (vd_probe(&b->d, want, 1, 0) < 0)
                abort();
        vd_rx_post(&b->d, 0);
}

static void device_down(Bench *b) {
        vu_client_free(b->c);
        for (int i = 0; i < 4; i++)
                close(b->irq[i]);
        srv_thread_stop(&b->thread);
        vu_server_free(b->s);
        vnet_free(b->n);
        vu_guest_ram_free(&b->ram);
        unlink(b->sock);
        b->c = NULL;
        b->s = NULL;
        b->n = NULL;
}

static NetBackend *tap_up(Bench *b) {
        NetBackend *be;
        if (net_tap_open(b->ifname, 1, NULL, &be) < 0)
                abort();
        host_run("ip link set %s netns %s", b->ifname, b->ns);
        host_run("ip -n %s addr add 10.77.0.1/24 dev %s", b->ns, b->ifname);
        host_run("ip -n %s link set %s up", b->ns, b->ifname);
        g_autofree char *mac = g_strdup_printf("%02x:%02x:%02x:%02x:%02x:%02x", b->me.mac[0], b->me.mac[1],
                                               b->me.mac[2], b->me.mac[3], b->me.mac[4], b->me.mac[5]);
        host_run("ip -n %s neigh replace 10.77.0.2 lladdr %s dev %s", b->ns, mac, b->ifname);
        /* the TAP's own MAC, for frames we address to it */
        g_autofree char *p = g_strdup_printf("ip -n %s -br link show %s", b->ns, b->ifname);
        FILE *f = popen(p, "r");
        char line[256] = { 0 };
        unsigned m[6];
        if (f && fgets(line, sizeof(line), f)) {
                char *s = strstr(line, ":");
                while (s && sscanf(s - 2, "%2x:%2x:%2x:%2x:%2x:%2x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
                        s = strstr(s + 1, ":");
                for (int i = 0; s && i < 6; i++)
                        b->peer.mac[i] = (uint8_t) m[i];
        }
        if (f)
                pclose(f);
        return be;
}

typedef struct Sink {
        int fd;
        volatile bool stop;
        uint64_t count;
} Sink;

static void *sink_main(void *arg) {
        Sink *s = arg;
        char buf[2048];
        while (!s->stop) {
                struct pollfd p = { .fd = s->fd, .events = POLLIN };
                if (poll(&p, 1, 50) > 0)
                        while (recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
                                s->count++;
        }
        return NULL;
}

static int ns_udp(Bench *b, uint16_t port) {
        int self = ns_enter(b->ns);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = b->peer.ip, .sin_port = htons(port) };
        int big = 8 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                abort();
        setns(self, CLONE_NEWNET);
        close(self);
        return fd;
}

static void report(const char *what, uint64_t frames, uint64_t delivered, double t) {
        printf("  %-34s %9.0f frames/s %8.3f Gbit/s  (%" PRIu64 " sent, %" PRIu64 " delivered)\n", what,
               (double) delivered / t, (double) delivered * (double) (payload + 42) * 8 / t / 1e9, frames, delivered);
}

/* Guest → TAP: frames to a UDP socket in the namespace, kicks suppressed by EVENT_IDX as Linux does. */
static void bench_tx_device(Bench *b, const char *label) {
        uint8_t f[2048], data[1500] = { 0 };
        uint16_t cs = 0, co = 0;
        size_t len = frame_udp(f, &b->me, &b->peer, 5000, 9999, data, payload, false, &cs, &co);
        Sink s = { .fd = ns_udp(b, 9999) };
        pthread_t th;
        VdQueue *q = &b->d.q[1];
        uint64_t sent = 0;
        VNetHdr h = { 0 };

        pthread_create(&th, NULL, sink_main, &s);
        double t0 = now();
        while (now() - t0 < seconds) {
                for (int k = 0; k < 64; k++) {
                        vd_tx_reclaim(&b->d, 0);
                        if (q->n_free < 2)
                                break;
                        uint16_t id = q->free_ids[q->n_free - 1];
                        uint64_t gpa = q->buf_gpa + (uint64_t) id * VD_BUF_LEN;
                        memcpy(b->ram.host + (gpa - b->ram.gpa_base), &h, sizeof(h));
                        memcpy(b->ram.host + (gpa - b->ram.gpa_base) + sizeof(h), f, len);
                        uint32_t l = (uint32_t) (sizeof(h) + len);
                        bool w = false;
                        uint16_t old = q->avail_idx;
                        if (vd_add_chain(&b->d, 1, &gpa, &l, &w, 1, false) < 0)
                                break;
                        sent++;
                        /* 2.7.10: kick only when the device asked for it (avail_event). */
                        uint16_t ev = *(volatile uint16_t *) ((uint8_t *) q->dev + 4 + 8 * (size_t) q->size);
                        __atomic_thread_fence(__ATOMIC_SEQ_CST);
                        if (vq_need_event(le16toh(ev), q->avail_idx, old))
                                vd_kick(&b->d, 1);
                }
                if (q->n_free < 2)
                        c_wait(b, q->vector, 1);
        }
        double t = now() - t0;
        usleep(200000);
        s.stop = true;
        pthread_join(th, NULL);
        close(s.fd);
        report(label, sent, s.count, t);
        printf("  %-34s %9.2f kicks per 1000 frames\n", "", sent ? 1000.0 * (double) q->kicks / (double) sent : 0);
}

static void bench_tx_raw(Bench *b) {
        uint8_t f[2048], data[1500] = { 0 };
        uint8_t hdr[12] = { 0 };
        uint16_t cs, co;
        NetBackend *be;
        Sink s;
        pthread_t th;
        uint64_t sent = 0;

        g_snprintf(b->ifname, sizeof(b->ifname), "vfunb%d", getpid() % 10000);
        be = tap_up(b);
        size_t len = frame_udp(f, &b->me, &b->peer, 5000, 9998, data, payload, false, &cs, &co);
        s = (Sink) { .fd = ns_udp(b, 9998) };
        pthread_create(&th, NULL, sink_main, &s);
        struct iovec iov[2] = { { hdr, 12 }, { f, len } };
        double t0 = now();
        while (now() - t0 < seconds)
                for (int k = 0; k < 64; k++)
                        if (be->ops->send(be, 0, iov, 2) == 0)
                                sent++;
        double t = now() - t0;
        usleep(200000);
        s.stop = true;
        pthread_join(th, NULL);
        close(s.fd);
        report("raw TAP writev (baseline)", sent, s.count, t);
        net_backend_free(be);
}

static void *blast_main(void *arg) {
        Bench *b = arg;
        int self = ns_enter(b->ns);
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = b->me.ip, .sin_port = htons(7000) };
        char data[1500] = { 0 };
        double t0 = now();
        (void) self;
        while (now() - t0 < seconds + 0.3)
                for (int k = 0; k < 64; k++)
                        sendto(fd, data, payload, MSG_DONTWAIT, (struct sockaddr *) &sa, sizeof(sa));
        close(fd);
        return NULL;
}

/* TAP → guest: a sender in the namespace floods UDP at the guest's address. */
static void bench_rx_device(Bench *b, const char *label) {
        pthread_t th;
        uint64_t got = 0;
        VNetHdr h;
        VNetStats st0, st;
        static uint8_t frame[2048];

        vnet_get_stats(b->n, &st0);
        pthread_create(&th, NULL, blast_main, b);
        usleep(100000);
        uint64_t kicks0 = b->d.q[0].kicks, fired0 = __atomic_load_n(&irqs_fired, __ATOMIC_RELAXED);
        uint64_t wake0 = irq_wakeups;
        double t0 = now();
        while (now() - t0 < seconds)
                if (vd_recv(&b->d, 0, &h, frame, sizeof(frame), 10) > 0)
                        got++;
        double t = now() - t0;
        uint64_t kicks = b->d.q[0].kicks - kicks0, fired = __atomic_load_n(&irqs_fired, __ATOMIC_RELAXED) - fired0;
        uint64_t wakes = irq_wakeups - wake0;
        pthread_join(th, NULL);
        vnet_get_stats(b->n, &st);
        report(label, got, got, t);
        printf("  %-34s %9" PRIu64 " dropped by the device (no buffer)\n", "", st.rx_drops - st0.rx_drops);
        if (got)
                printf("  %-34s %9.2f interrupts, %.2f driver wake-ups, %.2f kicks per 1000 frames\n", "",
                       1000.0 * (double) fired / (double) got, 1000.0 * (double) wakes / (double) got,
                       1000.0 * (double) kicks / (double) got);
}

static void bench_rx_raw(Bench *b) {
        NetBackend *be;
        pthread_t th;
        uint64_t got = 0;
        uint8_t buf[70000];

        g_snprintf(b->ifname, sizeof(b->ifname), "vfunb%d", getpid() % 10000);
        be = tap_up(b);
        pthread_create(&th, NULL, blast_main, b);
        usleep(100000);
        double t0 = now();
        int fd = be->ops->fd(be, 0);
        while (now() - t0 < seconds) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 10) > 0)
                        while (be->ops->recv(be, 0, buf, sizeof(buf)) > 0)
                                got++;
        }
        double t = now() - t0;
        pthread_join(th, NULL);
        report("raw TAP read (baseline)", got, got, t);
        net_backend_free(be);
}

int main(int argc, char **argv) {
        Bench b = { 0 };

        for (int i = 1; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--seconds") == 0)
                        seconds = atof(argv[i + 1]);
                else if (strcmp(argv[i], "--size") == 0)
                        payload = (size_t) atoi(argv[i + 1]);
        }
        if (payload < 18 || payload > 1472) {
                fprintf(stderr, "net-bench: --size is the UDP payload, 18 to 1472 bytes\n");
                return 1;
        }
        if (geteuid() != 0 || access("/dev/net/tun", R_OK | W_OK) != 0) {
                fprintf(stderr, "net-bench: needs root and /dev/net/tun (TAP in a private network namespace); skipped\n");
                return 77;
        }
        g_snprintf(b.ns, sizeof(b.ns), "vfu-nb-%d", getpid());
        host_run("ip netns add %s", b.ns);
        host_run("ip -n %s link set lo up", b.ns);
        memcpy(b.me.mac, "\x52\x54\x00\xbe\xec\x01", 6);
        b.me.ip = inet_addr("10.77.0.2");
        b.peer.ip = inet_addr("10.77.0.1");

        printf("virtio-net, UDP payload %zu bytes, %.1f s per run, 1 queue pair, queue size 256\n", payload, seconds);
        printf("transmit (guest -> TAP -> UDP socket):\n");
        bench_tx_raw(&b);
        for (int mode = 0; mode < 2; mode++) {
                g_snprintf(b.ifname, sizeof(b.ifname), "vfunb%d", getpid() % 10000);
                device_up(&b, tap_up(&b), mode == 1);
                bench_tx_device(&b, mode ? "device, notify polled (mmap)" : "device, notify trapped (posted)");
                device_down(&b);
        }
        printf("receive (UDP socket -> TAP -> guest):\n");
        bench_rx_raw(&b);
        for (int mode = 0; mode < 2; mode++) {
                g_snprintf(b.ifname, sizeof(b.ifname), "vfunb%d", getpid() % 10000);
                device_up(&b, tap_up(&b), mode == 1);
                bench_rx_device(&b, mode ? "device, notify polled (mmap)" : "device, notify trapped (posted)");
                device_down(&b);
        }
        host_run("ip netns del %s", b.ns);
        return 0;
}
