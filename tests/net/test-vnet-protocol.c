/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net over a real vfio-user socket: our client maps guest RAM,
 * installs MSI-X eventfds and acts as Linux's virtio_net driver; the device
 * runs on our server with a real backend.  Frames are built by hand and
 * exchanged with the Linux network stack of a network namespace the test
 * creates (TAP), or with passt running in one.  Needs root, /dev/net/tun
 * and ip(8); otherwise every test is skipped (77) with the reason.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "host-cmd.h"
#include "srv-thread.h"
#include "frames.h"
#include "net/vnet.h"
#include "vfio-user/client.h"
#include "vfio-user/server.h"
#include "virtio/virtio-pci.h"
#include "vnet-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)
#define BASE_FEATURES (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
                       VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | F(MAC) | F(STATUS) | F(MTU) | F(MRG_RXBUF) | \
                       F(CTRL_VQ) | F(CTRL_RX) | F(CTRL_MAC_ADDR) | F(MQ))
#define TMO 3000

typedef struct Net {
        char ns[32];
        char ifname[16];
        char sock[64];
        VNet *n;
        VuServer *s;
        SrvThread thread;
        VuClient *c;
        VuGuestRam ram;
        int irq[16];
        unsigned nvec;
        Vd d;
        FrameAddr me, peer;
        pid_t passt;
        unsigned irq_wakeups;           /* driver sleeps an interrupt ended */
        uint16_t mtu;                   /* the device's option; 0: the backend's */
        bool own_tap;                   /* a TAP of ours that outlives its fds */
        uint8_t buf[70000];
} Net;

static int irq_fire(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps irq_ops = { .fire = irq_fire };

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Net *) o)->c, 0, off, buf, (uint32_t) len);
}

static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        /* Posted, as QEMU sends MMIO writes when nothing is mmapped. */
        return vu_client_region_write(((Net *) o)->c, 0, off, buf, (uint32_t) len, true);
}

static int c_wait(void *o, unsigned vector, int ms) {
        Net *t = o;
        int r = vector < t->nvec ? vu_client_wait_irq(t->irq[vector], ms) : 0;
        t->irq_wakeups += r > 0;
        return r;
}

static const VdOps client_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

/* Device on a server thread, our client connected with 64 MiB of guest RAM and MSI-X. */
static void start_device(Net *t, NetBackend *be, unsigned pairs, bool packed) {
        VNetOptions o = { .pairs = pairs, .mtu = t->mtu, .link_up = true, .queue_size = 256, .packed = packed };
        VuServerConfig scfg = { 0 };

        memcpy(o.mac, t->me.mac, 6);
        assert_int_equal(vnet_new(&o, be, &t->n), 0);
        assert_int_equal(vnet_server_config(t->n, &scfg), 0);
        scfg.name = "vnet-test";
        assert_int_equal(vu_server_new(&scfg, &t->s), 0);
        vnet_attach(t->n, vu_server_mem(t->s), &irq_ops, t->s);
        g_snprintf(t->sock, sizeof(t->sock), "/tmp/vfu-nt-%d.sock", getpid());
        assert_int_equal(vu_server_listen(t->s, t->sock), 0);
        assert_int_equal(srv_thread_start(&t->thread, t->s), 0);

        assert_int_equal(vu_client_connect(t->sock, &t->c), 0);
        assert_int_equal(vu_client_negotiate(t->c, NULL), 0);
        assert_int_equal(vu_guest_ram_new(0x100000000ull, 64 << 20, &t->ram), 0);
        assert_int_equal(vu_client_map_ram(t->c, &t->ram), 0);
        t->nvec = 2 * pairs + 2;
        assert_int_equal(vu_client_enable_msix(t->c, t->nvec, t->irq), 0);
        vd_init(&t->d, &client_ops, t, t->ram.host, t->ram.gpa_base, t->ram.size);
}

static void stop_device(Net *t) {
        if (t->c) {
                vu_client_free(t->c);
                for (unsigned i = 0; i < t->nvec; i++)
                        close(t->irq[i]);
        }
        if (t->s) {
                srv_thread_stop(&t->thread);
                vu_server_free(t->s);
        }
        vnet_free(t->n);
        vu_guest_ram_free(&t->ram);
}

static int setup_common(void **state) {
        const char *why = host_netns_skip_reason();
        Net *t;

        if (why) {
                fprintf(stderr, "skipped: %s\n", why);
                exit(77);
        }
        t = calloc(1, sizeof(*t));
        g_snprintf(t->ns, sizeof(t->ns), "vfu-nt-%d", getpid());
        host_run("ip netns del %s", t->ns);
        assert_int_equal(host_run("ip netns add %s", t->ns), 0);
        assert_int_equal(host_run("ip -n %s link set lo up", t->ns), 0);
        memcpy(t->me.mac, "\x52\x54\x00\xab\xcd\x01", 6);
        *state = t;
        return 0;
}

/* The TAP moves into the namespace as 10.77.0.1/24; the guest is 10.77.0.2. */
static void tap_move(Net *t) {
        assert_int_equal(host_run("ip link set %s netns %s", t->ifname, t->ns), 0);
        assert_int_equal(host_run("ip -n %s addr add 10.77.0.1/24 dev %s", t->ns, t->ifname), 0);
        assert_int_equal(host_run("ip -n %s link set %s up", t->ns, t->ifname), 0);
        t->me.ip = inet_addr("10.77.0.2");
        t->peer.ip = inet_addr("10.77.0.1");
}

/* A TAP created by opening it, in the namespace. */
static void tap_into_netns(Net *t, unsigned pairs, NetBackend **be) {
        g_snprintf(t->ifname, sizeof(t->ifname), "vfut%d", getpid() % 100000);
        assert_int_equal(net_tap_open(t->ifname, pairs, NULL, be), 0);
        tap_move(t);
}

/* A TAP that existed before the device, with an MTU of its own (an operator's), in the namespace. */
static void tap_with_mtu(Net *t, unsigned mtu, NetBackend **be) {
        g_snprintf(t->ifname, sizeof(t->ifname), "vfut%d", getpid() % 100000);
        assert_int_equal(host_run("ip tuntap add dev %s mode tap vnet_hdr multi_queue", t->ifname), 0);
        t->own_tap = true;
        assert_int_equal(host_run("ip link set %s mtu %u", t->ifname, mtu), 0);
        assert_int_equal(net_tap_open(t->ifname, 1, NULL, be), 0);
        assert_int_equal((*be)->mtu, mtu);
        tap_move(t);
}

static int teardown(void **state) {
        Net *t = *state;
        stop_device(t);
        if (t->passt > 0) {
                kill(t->passt, SIGTERM);
                waitpid(t->passt, NULL, 0);
        }
        host_run("ip netns del %s", t->ns);
        if (t->own_tap)         /* when it never reached the namespace */
                host_run("ip link del %s", t->ifname);
        unlink(t->sock);
        free(t);
        return 0;
}

/* Run fn with the calling thread inside the test namespace (sockets stay there). */
static int netns_socket(Net *t, int type, uint32_t addr, uint16_t port) {
        g_autofree char *path = g_strdup_printf("/run/netns/%s", t->ns);
        int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        int nsfd = open(path, O_RDONLY | O_CLOEXEC);
        int fd;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = addr, .sin_port = htons(port) };
        int one = 1;

        assert_true(self >= 0 && nsfd >= 0);
        assert_int_equal(setns(nsfd, CLONE_NEWNET), 0);
        fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        if (type == SOCK_STREAM)
                assert_int_equal(listen(fd, 4), 0);
        assert_int_equal(setns(self, CLONE_NEWNET), 0);
        close(self);
        close(nsfd);
        return fd;
}

typedef bool (*Match)(const FrameInfo *fi, const void *arg);

/*
 * Receive until a frame matches, on any set-up pair, answering ARP requests
 * for our address meanwhile.  The frame stays in t->buf.  Returns its header.
 */
static bool net_wait(Net *t, Match m, const void *arg, FrameInfo *fi, VNetHdr *hdr_out, int timeout_ms) {
        gint64 end = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

        while (g_get_monotonic_time() < end) {
                for (unsigned p = 0; p < t->d.pairs; p++) {
                        VNetHdr hdr;
                        ssize_t n = vd_recv(&t->d, p, &hdr, t->buf, sizeof(t->buf), 10);
                        if (n < 0)
                                continue;
                        bool partial = hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
                        if (!frame_parse(t->buf, (size_t) n, partial, le16toh(hdr.csum_start),
                                         le16toh(hdr.csum_offset), fi))
                                continue;
                        if (fi->ethertype == ETH_P_ARP_ && fi->arp_op == 1 && fi->arp_tip == t->me.ip) {
                                FrameAddr asker = { .ip = fi->arp_sip };
                                uint8_t reply[64];
                                VNetHdr h0 = { 0 };
                                memcpy(asker.mac, fi->src_mac, 6);
                                size_t l = frame_arp_reply(reply, &t->me, &asker);
                                vd_send(&t->d, 0, &h0, reply, l);
                                continue;
                        }
                        if (m(fi, arg)) {
                                if (hdr_out)
                                        *hdr_out = hdr;
                                return true;
                        }
                }
        }
        return false;
}

static bool is_arp_reply(const FrameInfo *fi, const void *arg) {
        return fi->ethertype == ETH_P_ARP_ && fi->arp_op == 2 && fi->arp_sip == *(const uint32_t *) arg;
}

static bool is_echo_reply(const FrameInfo *fi, const void *arg) {
        return fi->ethertype == ETH_P_IP_ && fi->proto == 1 && fi->icmp_type == 0 &&
               fi->payload_len >= 8 && memcmp(fi->payload, arg, 8) == 0;
}

static bool is_udp_to(const FrameInfo *fi, const void *arg) {
        return fi->ethertype == ETH_P_IP_ && fi->proto == 17 && fi->dport == *(const uint16_t *) arg;
}

static bool is_tcp_to(const FrameInfo *fi, const void *arg) {
        return fi->ethertype == ETH_P_IP_ && fi->proto == 6 && fi->dport == *(const uint16_t *) arg;
}

static void send_frame(Net *t, unsigned pair, const void *f, size_t len) {
        VNetHdr h = { 0 };
        assert_int_equal(vd_send(&t->d, pair, &h, f, len), 0);
}

/* ARP for the peer, learn its MAC. */
static void arp_peer(Net *t) {
        uint8_t f[64];
        FrameInfo fi;

        send_frame(t, 0, f, frame_arp_request(f, &t->me, t->peer.ip));
        assert_true(net_wait(t, is_arp_reply, &t->peer.ip, &fi, NULL, TMO));
        memcpy(t->peer.mac, fi.src_mac, 6);
}

static void ping(Net *t, unsigned pair, uint16_t seq, bool expect) {
        uint8_t f[200], data[32];
        FrameInfo fi;

        for (unsigned i = 0; i < sizeof(data); i++)
                data[i] = (uint8_t) (seq + i);
        memcpy(data, "vfuping", 7);
        data[7] = (uint8_t) seq;
        send_frame(t, pair, f, frame_icmp_echo(f, &t->me, &t->peer, 0x4242, seq, data, sizeof(data)));
        bool got = net_wait(t, is_echo_reply, data, &fi, NULL, expect ? TMO : 300);
        assert_int_equal(got, expect);
        if (got) {
                assert_true(fi.ip_csum_ok);
                assert_true(fi.l4_csum_ok);
                assert_int_equal(fi.saddr, t->peer.ip);
                assert_memory_equal(fi.payload, data, sizeof(data));
        }
}

static void udp_both_ways(Net *t, uint32_t dst_ip_in_ns, uint16_t port, bool partial) {
        int s = netns_socket(t, SOCK_DGRAM, dst_ip_in_ns, port);
        uint8_t f[300], got[64];
        const char msg[] = "datagram from the guest";
        uint16_t cs = 0, co = 0, myport = 40000;
        VNetHdr h = { 0 };
        FrameInfo fi;
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        struct pollfd p = { .fd = s, .events = POLLIN };

        size_t l = frame_udp(f, &t->me, &t->peer, myport, port, msg, sizeof(msg), partial, &cs, &co);
        if (partial) {
                h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
                h.csum_start = htole16(cs);
                h.csum_offset = htole16(co);
        }
        assert_int_equal(vd_send(&t->d, 0, &h, f, l), 0);
        assert_int_equal(poll(&p, 1, TMO), 1);
        assert_int_equal(recvfrom(s, got, sizeof(got), 0, (struct sockaddr *) &from, &fl), sizeof(msg));
        assert_memory_equal(got, msg, sizeof(msg));

        const char back[] = "datagram to the guest";
        assert_int_equal(sendto(s, back, sizeof(back), 0, (struct sockaddr *) &from, fl), sizeof(back));
        assert_true(net_wait(t, is_udp_to, &myport, &fi, NULL, TMO));
        assert_true(fi.ip_csum_ok);
        assert_true(fi.l4_csum_ok);
        assert_int_equal(fi.payload_len, sizeof(back));
        assert_memory_equal(fi.payload, back, sizeof(back));
        close(s);
}

/* Handshake with a listening socket, data both ways; returns the accepted socket. */
static int tcp_exchange(Net *t, uint32_t listen_ip, uint16_t port, size_t reply_len, bool expect_gso,
                        bool guest_data) {
        int ls = netns_socket(t, SOCK_STREAM, listen_ip, port);
        uint16_t myport = 41000 + (uint16_t) (getpid() % 1000);
        uint32_t iss = 1000;
        uint8_t f[300];
        FrameInfo fi;
        VNetHdr hdr;

        send_frame(t, 0, f, frame_tcp(f, &t->me, &t->peer, myport, port, iss, 0, 0x02, NULL, 0));
        assert_true(net_wait(t, is_tcp_to, &myport, &fi, NULL, TMO));
        assert_int_equal(fi.tcp_flags & 0x12, 0x12);    /* SYN-ACK */
        assert_int_equal(fi.tcp_ack, iss + 1);
        assert_true(fi.ip_csum_ok);
        assert_true(fi.l4_csum_ok);
        uint32_t rcv = fi.tcp_seq + 1;
        const char hello[] = "hello over virtio-net";
        size_t sent = guest_data ? sizeof(hello) : 0;
        send_frame(t, 0, f, frame_tcp(f, &t->me, &t->peer, myport, port, iss + 1, rcv, guest_data ? 0x18 : 0x10,
                                      hello, sent));

        struct pollfd p = { .fd = ls, .events = POLLIN };
        assert_int_equal(poll(&p, 1, TMO), 1);
        int cs = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        assert_true(cs >= 0);
        if (guest_data) {
                char got[64];
                p.fd = cs;
                assert_int_equal(poll(&p, 1, TMO), 1);
                assert_int_equal(read(cs, got, sizeof(got)), sizeof(hello));
                assert_memory_equal(got, hello, sizeof(hello));
        }

        g_autofree uint8_t *data = g_malloc(reply_len);
        for (size_t i = 0; i < reply_len; i++)
                data[i] = (uint8_t) (i * 13);
        assert_int_equal(write(cs, data, reply_len), (ssize_t) reply_len);
        size_t seen = 0;
        bool gso_seen = false;
        while (seen < reply_len) {
                assert_true(net_wait(t, is_tcp_to, &myport, &fi, &hdr, TMO));
                assert_true(fi.ip_csum_ok);
                assert_true(fi.l4_csum_ok);
                if (fi.payload_len == 0)
                        continue;
                if (hdr.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
                        assert_int_equal(hdr.gso_type, VIRTIO_NET_HDR_GSO_TCPV4);
                        gso_seen = true;
                }
                assert_int_equal(fi.tcp_seq, rcv + seen);
                assert_memory_equal(fi.payload, data + seen, fi.payload_len);
                seen += fi.payload_len;
                /* Acknowledge so the sender goes on. */
                send_frame(t, 0, f, frame_tcp(f, &t->me, &t->peer, myport, port, (uint32_t) (iss + 1 + sent),
                                              rcv + (uint32_t) seen, 0x10, NULL, 0));
        }
        if (expect_gso)
                assert_true(gso_seen);
        close(ls);
        return cs;
}

static void tap_traffic(void **state) {
        Net *t = *state;
        NetBackend *be;
        VNetStats st;

        tap_into_netns(t, 1, &be);
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        for (uint16_t i = 1; i <= 5; i++)
                ping(t, 0, i, true);
        udp_both_ways(t, t->peer.ip, 7777, false);
        close(tcp_exchange(t, t->peer.ip, 8080, 4000, false, true));
        vnet_get_stats(t->n, &st);
        assert_true(st.tx_packets >= 9);        /* those answered; later ACKs may still be in flight */
        assert_true(st.rx_packets >= 9);
        assert_int_equal(st.rx_errors + st.tx_errors, 0);
}

/*
 * NAPI-style receive (Vd.napi_rx): a driver asleep with its interrupt enabled
 * (EVENT_IDX used_event, or NO_INTERRUPT cleared) is woken by the device's
 * interrupt for a single frame, not by its own poll timeout; a burst that
 * arrives while the driver is not waiting is delivered intact and in order,
 * and with EVENT_IDX costs a handful of interrupts, not one per frame.
 */
typedef struct LateSend {
        int fd;
        struct sockaddr_in to;
        char msg[32];
        int len;
} LateSend;

/* Send one datagram 50 ms from now, when the driver is asleep in its wait. */
static void *late_send(void *arg) {
        LateSend *ls = arg;
        g_usleep(50000);
        if (sendto(ls->fd, ls->msg, (size_t) ls->len, 0, (struct sockaddr *) &ls->to, sizeof(ls->to)) != ls->len)
                ls->len = -1;
        return NULL;
}

static void rx_napi(Net *t, uint64_t features) {
        enum { BURST = 200 };
        NetBackend *be;
        int s;
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(7100) };
        char msg[32];
        FrameInfo fi;
        VNetHdr h;
        uint16_t port = 7100;

        tap_into_netns(t, 1, &be);
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, features, 1, 0), 0);
        t->d.napi_rx = true;
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        to.sin_addr.s_addr = t->me.ip;
        s = netns_socket(t, SOCK_DGRAM, t->peer.ip, 7101);

        /* One frame to a sleeping driver: the interrupt must end the sleep (the poll timeout is 20 ms). */
        for (int i = 0; i < 3; i++) {
                unsigned woken = t->irq_wakeups;
                ssize_t n;
                pthread_t th;
                LateSend ls = { .fd = s, .to = to };
                int l = ls.len = g_snprintf(ls.msg, sizeof(ls.msg), "single %d", i);
                memcpy(msg, ls.msg, sizeof(msg));
                assert_int_equal(pthread_create(&th, NULL, late_send, &ls), 0);
                do
                        n = vd_recv(&t->d, 0, &h, t->buf, sizeof(t->buf), TMO);
                while (n > 0 && (!frame_parse(t->buf, (size_t) n, h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                              le16toh(h.csum_start), le16toh(h.csum_offset), &fi) ||
                                 !is_udp_to(&fi, &port)));
                pthread_join(th, NULL);
                assert_int_equal(ls.len, l);
                assert_true(n > 0);
                assert_int_equal(fi.payload_len, (size_t) l);
                assert_memory_equal(fi.payload, msg, (size_t) l);
                assert_true(t->irq_wakeups > woken);
        }

        /* A burst while the driver does not look; then the driver polls it all. */
        VirtQueue *rxq = virtio_pci_queue(vnet_virtio(t->n), 0);
        uint64_t irqs0 = __atomic_load_n(&rxq->n_irqs, __ATOMIC_RELAXED);
        for (int i = 0; i < BURST; i++) {
                int l = g_snprintf(msg, sizeof(msg), "burst %d", i);
                assert_int_equal(sendto(s, msg, (size_t) l, 0, (struct sockaddr *) &to, sizeof(to)), l);
        }
        for (int i = 0; i < BURST; i++) {
                assert_true(net_wait(t, is_udp_to, &port, &fi, NULL, TMO));
                int l = g_snprintf(msg, sizeof(msg), "burst %d", i);
                assert_int_equal(fi.payload_len, (size_t) l);
                assert_memory_equal(fi.payload, msg, (size_t) l);
                assert_true(fi.l4_csum_ok);
        }
        uint64_t irqs = __atomic_load_n(&rxq->n_irqs, __ATOMIC_RELAXED) - irqs0;
        if (virtio_has(features, VIRTIO_F_EVENT_IDX))
                assert_true(irqs < BURST / 10);
        close(s);
}

/*
 * Transmit batching: a burst queued before one notification arrives whole
 * and in order; the TAP takes it in a few system calls (one io_uring_enter
 * for up to NET_TX_BATCH_MAX frames), or with batching off (tx_batch 1,
 * as without io_uring) in one writev per frame.
 */
static void tap_tx_burst(Net *t, unsigned tx_batch) {
        enum { N = 96 };
        NetBackend *be;
        VNetStats st;
        uint8_t f[200];
        char msg[32], got[64];
        uint16_t cs, co;

        tap_into_netns(t, 1, &be);
        if (tx_batch)
                be->tx_batch = tx_batch;
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        int s = netns_socket(t, SOCK_DGRAM, t->peer.ip, 7300);
        int rcvbuf = 1 << 20;
        assert_int_equal(setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)), 0);
        vnet_get_stats(t->n, &st);
        uint64_t sent0 = st.tx_packets, calls0 = __atomic_load_n(&be->tx_calls, __ATOMIC_RELAXED);

        t->d.hold_tx_kick = true;
        for (unsigned i = 0; i < N; i++) {
                VNetHdr h = { 0 };
                int l = g_snprintf(msg, sizeof(msg), "burst frame %u", i);
                size_t fl = frame_udp(f, &t->me, &t->peer, 40300, 7300, msg, (size_t) l, false, &cs, &co);
                assert_int_equal(vd_send(&t->d, 0, &h, f, fl), 0);
        }
        t->d.hold_tx_kick = false;
        vd_kick(&t->d, 1);
        for (unsigned i = 0; i < N; i++) {
                struct pollfd p = { .fd = s, .events = POLLIN };
                assert_int_equal(poll(&p, 1, TMO), 1);
                int l = g_snprintf(msg, sizeof(msg), "burst frame %u", i);
                assert_int_equal(recv(s, got, sizeof(got), 0), l);
                assert_memory_equal(got, msg, (size_t) l);
        }
        close(s);
        /* The device counts a batch after the TAP took it: the last count may trail the last datagram. */
        for (int ms = 0; ms < TMO; ms += 10) {
                vnet_get_stats(t->n, &st);
                if (st.tx_packets - sent0 >= N)
                        break;
                g_usleep(10000);
        }
        assert_int_equal(st.tx_packets - sent0, N);
        assert_int_equal(st.tx_errors + st.tx_drops, 0);
        uint64_t calls = __atomic_load_n(&be->tx_calls, __ATOMIC_RELAXED) - calls0;
        print_message("%u frames, batch %u: %" PRIu64 " system calls\n", N, be->tx_batch, calls);
        /* With io_uring, the TAP batches by default. */
        if (tx_batch ? tx_batch > 1 : HAVE_LIBURING)
                assert_true(calls <= N / 8);
        else
                assert_int_equal(calls, N);
}

static void tap_tx_batched(void **state) {
        tap_tx_burst(*state, 0);
}

static void tap_tx_unbatched(void **state) {
        tap_tx_burst(*state, 1);
}

/*
 * Receive batching: frames that waited in the TAP (held back by a receive
 * limit of one frame a second, then released) reach the driver whole and
 * in order; the TAP reads them ahead, up to 8 per io_uring_enter, or with
 * batching off (rx_batch 1, as without io_uring) in one read each.
 */
static void tap_rx_burst(Net *t, unsigned rx_batch) {
        enum { N = 64 };
        NetBackend *be;
        QosConfig lim = { 0 }, none = { 0 };
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(7401) };
        uint16_t port = 7401;
        char msg[32];
        FrameInfo fi;

        tap_into_netns(t, 1, &be);
        if (rx_batch)
                be->rx_batch = rx_batch;
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        int s = netns_socket(t, SOCK_DGRAM, t->peer.ip, 7400);
        to.sin_addr.s_addr = t->me.ip;
        lim.rate[QOS_OPS_TOTAL].avg = 1;
        assert_int_equal(vnet_set_limits(t->n, &none, &lim), 0);
        for (unsigned i = 0; i < N; i++) {
                int l = g_snprintf(msg, sizeof(msg), "rx burst %u", i);
                assert_int_equal(sendto(s, msg, (size_t) l, 0, (struct sockaddr *) &to, sizeof(to)), l);
        }
        g_usleep(200000);
        uint64_t calls0 = __atomic_load_n(&be->rx_calls, __ATOMIC_RELAXED);
        assert_int_equal(vnet_set_limits(t->n, &none, &none), 0);
        for (unsigned i = 0; i < N; i++) {
                assert_true(net_wait(t, is_udp_to, &port, &fi, NULL, TMO));
                int l = g_snprintf(msg, sizeof(msg), "rx burst %u", i);
                assert_int_equal(fi.payload_len, l);
                assert_memory_equal(fi.payload, msg, (size_t) l);
        }
        close(s);
        uint64_t calls = __atomic_load_n(&be->rx_calls, __ATOMIC_RELAXED) - calls0;
        print_message("%u frames received, batch %u: %" PRIu64 " system calls\n", N, be->rx_batch, calls);
        /* With io_uring, the TAP reads ahead by default; a frame or two may have gone before the limit. */
        if (rx_batch ? rx_batch > 1 : HAVE_LIBURING)
                assert_true(calls <= N / 4);
        else
                assert_true(calls >= N - 2);
}

static void tap_rx_batched(void **state) {
        tap_rx_burst(*state, 0);
}

static void tap_rx_unbatched(void **state) {
        tap_rx_burst(*state, 1);
}

static void tap_rx_napi_event_idx(void **state) {
        rx_napi(*state, BASE_FEATURES);
}

static void tap_rx_napi_flags(void **state) {
        rx_napi(*state, BASE_FEATURES & ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX));
}

static void tap_packed(void **state) {
        Net *t = *state;
        NetBackend *be;

        tap_into_netns(t, 1, &be);
        start_device(t, be, 1, true);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES | VIRTIO_BIT(VIRTIO_F_RING_PACKED), 1, 0), 0);
        assert_true(virtio_has(t->d.features, VIRTIO_F_RING_PACKED));
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        for (uint16_t i = 1; i <= 5; i++)
                ping(t, 0, i, true);
        udp_both_ways(t, t->peer.ip, 7777, false);
        close(tcp_exchange(t, t->peer.ip, 8080, 3000, false, true));
}

static void tap_offloads(void **state) {
        Net *t = *state;
        NetBackend *be;

        tap_into_netns(t, 1, &be);
        start_device(t, be, 1, false);
        uint64_t off = F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4) | F(GUEST_TSO4) | F(HOST_TSO6) | F(GUEST_TSO6);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES | off, 1, 0), 0);
        assert_int_equal(t->d.features & off, off);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        /* Transmit checksum offload: the kernel completes our partial UDP checksum. */
        udp_both_ways(t, t->peer.ip, 7778, true);
        /* Receive: large TCP writes arrive as TSO frames with partial checksums. */
        close(tcp_exchange(t, t->peer.ip, 8081, 60000, true, true));
}

static void tap_multiqueue(void **state) {
        Net *t = *state;
        NetBackend *be;
        uint16_t pairs;
        VNetStats st;

        tap_into_netns(t, 2, &be);
        start_device(t, be, 2, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 2, 0), 0);
        assert_true(t->d.features & F(MQ));
        vd_rx_post(&t->d, 0);
        vd_rx_post(&t->d, 1);
        pairs = htole16(3);
        assert_int_equal(vd_ctrl(&t->d, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, TMO), VIRTIO_NET_ERR);
        pairs = 0;
        assert_int_equal(vd_ctrl(&t->d, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, TMO), VIRTIO_NET_ERR);
        pairs = htole16(2);
        assert_int_equal(vd_ctrl(&t->d, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, TMO), VIRTIO_NET_OK);
        assert_int_equal(vnet_active_pairs(t->n), 2);
        arp_peer(t);
        for (uint16_t i = 1; i <= 8; i++)
                ping(t, i % 2, i, true);
        /* Several flows: the kernel spreads them over both TAP queues. */
        for (uint16_t port = 9000; port < 9008; port++)
                udp_both_ways(t, t->peer.ip, port, false);
        vnet_get_stats(t->n, &st);
        assert_true(st.tx_packets >= 17);
}

static void tap_link(void **state) {
        Net *t = *state;
        NetBackend *be;
        uint16_t status;

        tap_into_netns(t, 1, &be);
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        ping(t, 0, 1, true);
        while (vu_client_wait_irq(t->irq[0], 0) == 1)
                ;
        vnet_set_link(t->n, false);
        assert_int_equal(vu_client_wait_irq(t->irq[0], TMO), 1);
        vd_cfg_read(&t->d, offsetof(VNetConfigSpace, status), &status, 2);
        assert_int_equal(le16toh(status) & VIRTIO_NET_S_LINK_UP, 0);
        ping(t, 0, 2, false);
        vnet_set_link(t->n, true);
        assert_int_equal(vu_client_wait_irq(t->irq[0], TMO), 1);
        vd_cfg_read(&t->d, offsetof(VNetConfigSpace, status), &status, 2);
        assert_int_equal(le16toh(status) & VIRTIO_NET_S_LINK_UP, VIRTIO_NET_S_LINK_UP);
        ping(t, 0, 3, true);
}

/* What the device offers in its configuration space: the MTU, when F_MTU was negotiated. */
static uint16_t offered_mtu(Net *t) {
        uint16_t mtu;

        assert_true(virtio_has(t->d.features, VIRTIO_NET_F_MTU));
        vd_cfg_read(&t->d, offsetof(VNetConfigSpace, mtu), &mtu, 2);
        return le16toh(mtu);
}

static void fill(uint8_t *p, size_t len, unsigned seed) {
        for (size_t i = 0; i < len; i++)
                p[i] = (uint8_t) (i * 7 + seed + (i >> 8));
}

/*
 * An echo request with len bytes of data and DF set (ping -s len -M do):
 * the reply, a frame of the same size, arrives byte for byte.
 */
static void ping_big(Net *t, uint16_t seq, size_t len, VNetHdr *hdr) {
        g_autofree uint8_t *f = g_malloc(len + 64), *data = g_malloc(len);
        FrameInfo fi;

        fill(data, len, seq);
        memcpy(data, "vfuping", 7);
        data[7] = (uint8_t) seq;
        send_frame(t, 0, f, frame_icmp_echo(f, &t->me, &t->peer, 0x4243, seq, data, len));
        assert_true(net_wait(t, is_echo_reply, data, &fi, hdr, TMO));
        assert_true(fi.ip_csum_ok);
        assert_true(fi.l4_csum_ok);
        assert_int_equal(fi.payload_len, len);
        assert_memory_equal(fi.payload, data, len);
}

/* A datagram of len bytes each way between the guest and a socket in the namespace, verified. */
static void udp_big(Net *t, uint16_t port, size_t len, VNetHdr *hdr) {
        int s = netns_socket(t, SOCK_DGRAM, t->peer.ip, port);
        g_autofree uint8_t *f = g_malloc(len + 64), *msg = g_malloc(len), *got = g_malloc(len + 1);
        uint16_t myport = 40100;
        VNetHdr h = { 0 };
        FrameInfo fi;
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        struct pollfd p = { .fd = s, .events = POLLIN };

        fill(msg, len, 1);
        assert_int_equal(vd_send(&t->d, 0, &h, f, frame_udp(f, &t->me, &t->peer, myport, port, msg, len, false,
                                                            NULL, NULL)), 0);
        assert_int_equal(poll(&p, 1, TMO), 1);
        assert_int_equal(recvfrom(s, got, len + 1, 0, (struct sockaddr *) &from, &fl), (ssize_t) len);
        assert_memory_equal(got, msg, len);

        fill(msg, len, 2);
        assert_int_equal(sendto(s, msg, len, 0, (struct sockaddr *) &from, fl), (ssize_t) len);
        assert_true(net_wait(t, is_udp_to, &myport, &fi, hdr, TMO));
        assert_true(fi.ip_csum_ok);
        assert_true(fi.l4_csum_ok);
        assert_int_equal(fi.payload_len, len);
        assert_memory_equal(fi.payload, msg, len);
        close(s);
}

/*
 * Jumbo frames: a TAP with MTU 9000 and a device that takes its MTU from
 * it.  The driver sees 9000 in the configuration space and exchanges
 * 9014-byte frames with the namespace's stack: with MRG_RXBUF spread over
 * 2 KiB receive buffers (num_buffers > 1), without it in one large buffer
 * each, as Linux's big-packet mode posts them.
 */
static void jumbo(Net *t, bool mrg) {
        NetBackend *be;
        VNetHdr hdr;
        VNetStats st;
        uint64_t want = mrg ? BASE_FEATURES : BASE_FEATURES & ~F(MRG_RXBUF);

        tap_with_mtu(t, 9000, &be);
        start_device(t, be, 1, false);
        t->d.buf_len = 16384;
        t->d.rx_len = mrg ? 2048 : 0;
        assert_int_equal(vd_probe(&t->d, want, 1, 0), 0);
        assert_int_equal(virtio_has(t->d.features, VIRTIO_NET_F_MRG_RXBUF), mrg);
        assert_int_equal(offered_mtu(t), 9000);
        assert_int_equal(vnet_mtu(t->n), 9000);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        ping_big(t, 1, 9000 - 28, &hdr);
        assert_int_equal(le16toh(hdr.num_buffers), mrg ? 5 : 1);
        ping_big(t, 2, 100, NULL);
        udp_big(t, 7801, 9000 - 28, &hdr);
        assert_int_equal(le16toh(hdr.num_buffers), mrg ? 5 : 1);
        vnet_get_stats(t->n, &st);
        assert_int_equal(st.rx_drops + st.rx_errors + st.tx_drops + st.tx_errors, 0);
        assert_true(st.rx_bytes >= 2 * 9014);
}

static void tap_jumbo_mrg(void **state) {
        jumbo(*state, true);
}

static void tap_jumbo_big_buffers(void **state) {
        jumbo(*state, false);
}

/* The IPv4 payload bytes of UDP frames from the peer that arrive within ms; each frame at most max bytes. */
static size_t udp_fragments(Net *t, size_t max, int ms) {
        gint64 end = g_get_monotonic_time() + (gint64) ms * 1000;
        size_t total = 0;

        while (g_get_monotonic_time() < end) {
                VNetHdr h;
                ssize_t n = vd_recv(&t->d, 0, &h, t->buf, sizeof(t->buf), 10);
                const uint8_t *ip = t->buf + 14;
                if (n < 34 || t->buf[12] != 0x08 || t->buf[13] != 0x00 || ip[9] != 17 ||
                    memcmp(ip + 12, &t->peer.ip, 4) != 0)
                        continue;
                assert_true((size_t) n <= max);
                total += (size_t) (ip[2] << 8 | ip[3]) - (size_t) (ip[0] & 15) * 4;
        }
        return total;
}

/*
 * A smaller TAP (MTU 1450, as under VXLAN): the device offers 1450, full
 * size frames pass both ways, and a larger datagram from the host reaches
 * the guest as fragments of at most 1450 bytes.
 */
static void tap_mtu_small(void **state) {
        Net *t = *state;
        NetBackend *be;
        VNetStats st;
        uint8_t big[2000] = { 0 };
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(7811) };
        int s;

        tap_with_mtu(t, 1450, &be);
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        assert_int_equal(offered_mtu(t), 1450);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        ping_big(t, 1, 1450 - 28, NULL);
        udp_big(t, 7810, 1450 - 28, NULL);

        s = netns_socket(t, SOCK_DGRAM, t->peer.ip, 7812);
        to.sin_addr.s_addr = t->me.ip;
        assert_int_equal(sendto(s, big, sizeof(big), 0, (struct sockaddr *) &to, sizeof(to)), sizeof(big));
        assert_int_equal(udp_fragments(t, 14 + 1450, 500), 8 + sizeof(big));
        close(s);
        vnet_get_stats(t->n, &st);
        assert_int_equal(st.rx_drops + st.rx_errors, 0);
}

/* An MTU given as an option is what the driver is offered, whatever the TAP's. */
static void tap_mtu_option(void **state) {
        Net *t = *state;
        NetBackend *be;

        tap_into_netns(t, 1, &be);
        t->mtu = 4000;
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        assert_int_equal(offered_mtu(t), 4000);
}

static void passt_traffic(void **state) {
        Net *t = *state;
        NetBackend *be;
        int sv[2];

        if (host_run("passt --version") != 0) {
                fprintf(stderr, "skipped: passt is not installed (apt install passt)\n");
                skip();
        }
        /*
         * A namespace with an uplink and a default route, for passt to take
         * its addresses from, and a second local address (10.88.0.3) our
         * guest talks to through passt's ping, UDP and TCP sockets.
         */
        assert_int_equal(host_run("ip -n %s link add up0 type veth peer name up1", t->ns), 0);
        assert_int_equal(host_run("ip -n %s addr add 10.88.0.2/24 dev up0", t->ns), 0);
        assert_int_equal(host_run("ip -n %s link set up0 up", t->ns), 0);
        assert_int_equal(host_run("ip -n %s link set up1 up", t->ns), 0);
        assert_int_equal(host_run("ip -n %s route add default via 10.88.0.1 dev up0", t->ns), 0);
        assert_int_equal(host_run("ip -n %s addr add 10.88.0.3/32 dev up1", t->ns), 0);
        host_run("ip netns exec %s sysctl -w net.ipv4.ping_group_range='0 2147483647'", t->ns);

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        t->passt = fork();
        if (t->passt == 0) {
                g_autofree char *path = g_strdup_printf("/run/netns/%s", t->ns);
                int nsfd = open(path, O_RDONLY);
                if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0 || dup2(sv[1], 3) < 0)
                        _exit(127);
                execlp("passt", "passt", "--foreground", "--quiet", "--fd", "3", "--runas", "0:0", NULL);
                _exit(127);
        }
        close(sv[1]);
        assert_int_equal(net_passt_new(sv[0], &be), 0);

        /* passt gives the guest the host's address and answers ARP for the gateway. */
        t->me.ip = inet_addr("10.88.0.2");
        t->peer.ip = inet_addr("10.88.0.1");
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        vd_rx_post(&t->d, 0);
        arp_peer(t);
        /* Everything else goes to 10.88.0.3 through the gateway's MAC. */
        t->peer.ip = inet_addr("10.88.0.3");
        ping(t, 0, 1, true);
        udp_both_ways(t, t->peer.ip, 7790, false);
        close(tcp_exchange(t, t->peer.ip, 8090, 5000, false, false));
}

/*
 * The null backend: transmitted frames are counted and dropped; received
 * ones are copies of one broadcast IPv4/UDP template of the configured
 * length, as many as the guest's buffers take; its fd is readable exactly
 * when it receives.
 */
static void null_backend(void **state) {
        Net *t = *state;
        NetBackend *be = NULL, *quiet = NULL;
        NetNullStats st;
        enum { N = 300 };

        assert_int_equal(net_null_open(1, 59, &be), -EINVAL);
        assert_int_equal(net_null_open(1, 1515, &be), -EINVAL);
        assert_int_equal(net_null_open(0, 60, &be), -EINVAL);
        assert_int_equal(net_null_open(1, 0, &quiet), 0);
        struct pollfd pf = { .fd = quiet->ops->fd(quiet, 0), .events = POLLIN };
        assert_int_equal(poll(&pf, 1, 0), 0);
        assert_int_equal(quiet->ops->recv(quiet, 0, t->buf, sizeof(t->buf)), -EAGAIN);
        assert_false(net_null_get_stats(NULL, 0, &st));
        assert_false(net_null_get_stats(quiet, 1, &st));
        net_backend_free(quiet);

        assert_int_equal(net_null_open(1, 60, &be), 0);
        pf.fd = be->ops->fd(be, 0);
        assert_int_equal(poll(&pf, 1, 0), 1);
        start_device(t, be, 1, false);
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES, 1, 0), 0);
        vd_rx_post(&t->d, 0);

        /* Receive: the template, every time, more than one ring's worth. */
        static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
        for (unsigned i = 0; i < N; i++) {
                VNetHdr h;
                ssize_t n = vd_recv(&t->d, 0, &h, t->buf, sizeof(t->buf), 2000);
                assert_int_equal(n, 60);
                assert_memory_equal(t->buf, bcast, 6);
                assert_int_equal(t->buf[12], 0x08);
                assert_int_equal(t->buf[13], 0x00);
                assert_int_equal(t->buf[14], 0x45);
                assert_int_equal(frame_csum(t->buf + 14, 20, 0), 0);    /* a valid IPv4 header */
                assert_int_equal(t->buf[23], 17);
        }

        /* Transmit: counted (bytes without the header) and dropped. */
        uint8_t f[1514];
        memset(f, 0x5a, sizeof(f));
        VNetHdr h0 = { 0 };
        for (unsigned i = 0; i < N; i++) {
                while (vd_send(&t->d, 0, &h0, f, sizeof(f)) == -ENOSPC)
                        if (vd_tx_reclaim(&t->d, 0) == 0)
                                c_wait(t, t->d.q[1].vector, 10);
        }
        VNetStats vs;
        for (unsigned tries = 0; tries < 500; tries++) {
                vnet_get_stats(t->n, &vs);
                if (vs.tx_packets >= N)
                        break;
                usleep(10000);
        }
        assert_true(net_null_get_stats(be, 0, &st));
        assert_int_equal(st.tx_frames, N);
        assert_int_equal(st.tx_bytes, (uint64_t) N * sizeof(f));
        assert_true(st.rx_frames >= N);
        assert_int_equal(st.rx_bytes, st.rx_frames * 60);
        vnet_get_stats(t->n, &vs);
        assert_int_equal(vs.tx_packets, N);
        assert_true(vs.rx_packets >= N);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(tap_traffic, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_tx_batched, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_tx_unbatched, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_rx_batched, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_rx_unbatched, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_rx_napi_event_idx, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_rx_napi_flags, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_packed, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_offloads, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_multiqueue, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_link, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_jumbo_mrg, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_jumbo_big_buffers, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_mtu_small, setup_common, teardown),
                cmocka_unit_test_setup_teardown(tap_mtu_option, setup_common, teardown),
                cmocka_unit_test_setup_teardown(passt_traffic, setup_common, teardown),
                cmocka_unit_test_setup_teardown(null_backend, setup_common, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
