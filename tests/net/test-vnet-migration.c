/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live migration of virtio-net over real vfio-user sockets, with our client
 * as the VMM.  Two hosts are modelled in one process: a source and a
 * destination device, each on its own server thread and TAP, the TAPs
 * bridged in a network namespace whose stack is the peer.  Guest RAM is a
 * memfd on each side; the VMM copies it as a migration would (everything
 * once, then the pages the device reports dirty), and the test's view of
 * guest memory is moved to the destination's copy at switch-over.
 *
 *   live_split_mq, live_packed  a TCP stream into the guest and pings keep
 *                               flowing across PRE_COPY → STOP_COPY →
 *                               RESUMING → RUNNING; every byte is checked,
 *                               guest RAM copied by dirty bitmap must equal
 *                               the source's, ring positions continue
 *   refused_streams             corrupted, truncated, wrong-version and
 *                               wrong-device streams: clear errno, the
 *                               destination stays reset and stopped, the
 *                               source runs on
 *   dirty_rx_only               frames received are reported, nothing else
 *   state_arcs                  every transition, probes, argsz errors and
 *                               command gating against the real device
 *
 * Needs root, /dev/net/tun and ip(8); otherwise skipped (77) with the reason.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "host-cmd.h"
#include "srv-thread.h"
#include "frames.h"
#include "net/vnet.h"
#include "state/devstate-wire.h"
#include "vfio-user/client.h"
#include "vfio-user/migration.h"
#include "vfio-user/server.h"
#include "vnet-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)
#define BASE_FEATURES (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | \
                       VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | F(MAC) | F(STATUS) | F(MTU) | F(MRG_RXBUF) | \
                       F(CTRL_VQ) | F(CTRL_RX) | F(CTRL_MAC_ADDR) | F(MQ) | F(GUEST_ANNOUNCE))
#define TMO 3000
#define RAM_GPA 0x100000000ull
#define RAM_SIZE (32ull << 20)
#define PAGE 4096u
#define BITMAP_LEN (RAM_SIZE / PAGE / 8)
#define STREAM_TOTAL (900u << 10)
#define MIG_ID "net0"

/* One host: a device on its server thread, and the VMM's client of it. */
typedef struct Side {
        VNet *n;
        VuServer *s;
        SrvThread thread;
        char sock[80];
        VuClient *c;
        VuGuestRam ram;
        int irq[16];
        unsigned nvec;
} Side;

typedef struct Mig {
        char ns[32];
        char tap[2][16];
        Side src, dst;
        Side *cur;                      /* where the guest runs */
        Vd d;
        unsigned pairs;
        bool packed;
        FrameAddr me, peer;

        /* a TCP stream from the namespace to the guest */
        int lsock, csock;
        pthread_t writer;
        bool writer_started;
        uint16_t myport, port;
        uint32_t iss, base, rcv_nxt;    /* our ISN; the peer's first data byte; next expected */
        size_t received;
        unsigned datagrams;             /* injected datagrams received intact */
        uint8_t buf[70000];
} Mig;

/* ---- environment ------------------------------------------------------------------------ */

static uint8_t pattern(size_t k) {
        return (uint8_t) ((k * 131) ^ (k >> 9));
}

/* ---- the two hosts ------------------------------------------------------------------------ */

static int irq_fire(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps irq_ops = { .fire = irq_fire };

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Mig *) o)->cur->c, 0, off, buf, (uint32_t) len);
}

static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        return vu_client_region_write(((Mig *) o)->cur->c, 0, off, buf, (uint32_t) len, true);
}

static int c_wait(void *o, unsigned vector, int ms) {
        Side *sd = ((Mig *) o)->cur;
        return vector < sd->nvec ? vu_client_wait_irq(sd->irq[vector], ms) : 0;
}

static const VdOps client_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

/* A device on tap[which], its server, and the VMM connected with its own guest RAM and MSI-X. */
static void side_start(Mig *t, Side *sd, unsigned which, const char *id) {
        VNetOptions o = { .pairs = t->pairs, .mtu = 1500, .link_up = true, .queue_size = 256,
                          .packed = t->packed, .migration_id = id };
        VuServerConfig scfg = { 0 };
        NetBackend *be;

        memcpy(o.mac, t->me.mac, 6);
        assert_int_equal(net_tap_open(t->tap[which], t->pairs, NULL, &be), 0);
        assert_int_equal(host_run("ip link set %s netns %s", t->tap[which], t->ns), 0);
        assert_int_equal(host_run("ip -n %s link set %s master br0", t->ns, t->tap[which]), 0);
        assert_int_equal(host_run("ip -n %s link set %s up", t->ns, t->tap[which]), 0);
        assert_int_equal(vnet_new(&o, be, &sd->n), 0);
        assert_int_equal(vnet_server_config(sd->n, &scfg), 0);
        scfg.name = which ? "vnet-dst" : "vnet-src";
        assert_int_equal(vu_server_new(&scfg, &sd->s), 0);
        vnet_attach(sd->n, vu_server_mem(sd->s), &irq_ops, sd->s);
        g_snprintf(sd->sock, sizeof(sd->sock), "/tmp/vfu-nm-%d-%u.sock", getpid(), which);
        assert_int_equal(vu_server_listen(sd->s, sd->sock), 0);
        assert_int_equal(srv_thread_start(&sd->thread, sd->s), 0);

        assert_int_equal(vu_client_connect(sd->sock, &sd->c), 0);
        assert_int_equal(vu_client_negotiate(sd->c, NULL), 0);
        assert_int_equal(vu_guest_ram_new(RAM_GPA, RAM_SIZE, &sd->ram), 0);
        assert_int_equal(vu_client_map_ram(sd->c, &sd->ram), 0);
        sd->nvec = 2 * t->pairs + 2;
        assert_int_equal(vu_client_enable_msix(sd->c, sd->nvec, sd->irq), 0);
}

static void side_stop(Side *sd) {
        if (sd->c) {
                vu_client_free(sd->c);
                for (unsigned i = 0; i < sd->nvec; i++)
                        close(sd->irq[i]);
        }
        if (sd->s) {
                srv_thread_stop(&sd->thread);
                vu_server_free(sd->s);
        }
        vnet_free(sd->n);
        if (sd->ram.host)
                vu_guest_ram_free(&sd->ram);
        memset(sd, 0, sizeof(*sd));
}

/* A namespace with a bridge at 10.77.0.1/24: the network both hosts' TAPs join. */
static int setup(void **state) {
        const char *why = host_netns_skip_reason();
        Mig *t;

        if (why) {
                fprintf(stderr, "skipped: %s\n", why);
                exit(77);
        }
        t = calloc(1, sizeof(*t));
        t->lsock = t->csock = -1;
        g_snprintf(t->ns, sizeof(t->ns), "vfu-nm-%d", getpid());
        g_snprintf(t->tap[0], sizeof(t->tap[0]), "vfus%d", getpid() % 100000);
        g_snprintf(t->tap[1], sizeof(t->tap[1]), "vfud%d", getpid() % 100000);
        host_run("ip netns del %s", t->ns);
        assert_int_equal(host_run("ip netns add %s", t->ns), 0);
        assert_int_equal(host_run("ip -n %s link set lo up", t->ns), 0);
        /* No IPv6: nothing but the test's own traffic reaches the guest. */
        host_run("ip netns exec %s sysctl -w net.ipv6.conf.all.disable_ipv6=1", t->ns);
        host_run("ip netns exec %s sysctl -w net.ipv6.conf.default.disable_ipv6=1", t->ns);
        /* A fixed address: a bridge otherwise takes its lowest port's, which changes as TAPs join. */
        assert_int_equal(host_run("ip -n %s link add br0 address 02:00:00:00:77:01 type bridge", t->ns), 0);
        assert_int_equal(host_run("ip -n %s addr add 10.77.0.1/24 dev br0", t->ns), 0);
        assert_int_equal(host_run("ip -n %s link set br0 up", t->ns), 0);
        memcpy(t->me.mac, "\x52\x54\x00\xab\xcd\x02", 6);
        t->me.ip = inet_addr("10.77.0.2");
        t->peer.ip = inet_addr("10.77.0.1");
        t->pairs = 1;
        *state = t;
        return 0;
}

static int teardown(void **state) {
        Mig *t = *state;

        if (t->csock >= 0)
                shutdown(t->csock, SHUT_RDWR);
        if (t->writer_started)
                pthread_join(t->writer, NULL);
        if (t->csock >= 0)
                close(t->csock);
        if (t->lsock >= 0)
                close(t->lsock);
        side_stop(&t->src);
        side_stop(&t->dst);
        host_run("ip netns del %s", t->ns);
        free(t);
        return 0;
}

/* ---- the VMM's migration calls ---------------------------------------------------------- */

static int mig_set(Side *sd, uint32_t state) {
        struct vu_feature_mig_state st = { .device_state = state };

        return vu_client_device_feature(sd->c, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st), NULL, 0,
                                        NULL);
}

static uint32_t mig_get(Side *sd) {
        struct vu_feature_mig_state st = { 0 };
        size_t len;

        assert_int_equal(vu_client_device_feature(sd->c, VU_FEATURE_GET | VU_FEATURE_MIG_DEVICE_STATE, NULL, 0, &st,
                                                  sizeof(st), &len),
                         0);
        assert_int_equal(len, sizeof(st));
        return st.device_state;
}

static void log_start(Side *sd) {
        struct vu_feature_dma_logging_control c = { .page_size = PAGE, .num_ranges = 0 };
        struct vu_feature_dma_logging_control out;

        assert_int_equal(vu_client_device_feature(sd->c, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &c, sizeof(c),
                                                  &out, sizeof(out), NULL),
                         0);
}

static void log_stop(Side *sd) {
        assert_int_equal(vu_client_device_feature(sd->c, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_STOP, NULL, 0, NULL, 0,
                                                  NULL),
                         0);
}

/* The pages of guest RAM dirtied since the last report (one bit per 4 KiB page). */
static void log_report(Side *sd, uint8_t bitmap[BITMAP_LEN]) {
        struct vu_feature_dma_logging_report rep = { .iova = RAM_GPA, .length = RAM_SIZE, .page_size = PAGE };
        g_autofree uint8_t *out = g_malloc0(sizeof(rep) + BITMAP_LEN);
        size_t len;

        assert_int_equal(vu_client_device_feature(sd->c, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep,
                                                  sizeof(rep), out, sizeof(rep) + BITMAP_LEN, &len),
                         0);
        assert_int_equal(len, sizeof(rep) + BITMAP_LEN);
        memcpy(bitmap, out + sizeof(rep), BITMAP_LEN);
}

static unsigned copy_dirty(Mig *t, const uint8_t bitmap[BITMAP_LEN]) {
        unsigned n = 0;

        for (size_t p = 0; p < RAM_SIZE / PAGE; p++) {
                if (bitmap[p / 8] & (1u << (p % 8))) {
                        memcpy(t->dst.ram.host + p * PAGE, t->src.ram.host + p * PAGE, PAGE);
                        n++;
                }
        }
        return n;
}

/* STOP_COPY: read the device state to its end, in pieces of piece bytes. */
static GByteArray *read_stream(Side *sd, uint32_t piece) {
        GByteArray *s = g_byte_array_new();
        g_autofree uint8_t *buf = g_malloc(piece);
        int n;

        while ((n = vu_client_mig_data_read(sd->c, buf, piece)) > 0)
                g_byte_array_append(s, buf, (guint) n);
        assert_int_equal(n, 0);
        assert_true(s->len > 0);
        return s;
}

/* RESUMING, the stream in pieces, STOP.  The first error, or 0. */
static int write_stream(Side *sd, const uint8_t *s, size_t len, uint32_t piece, int *write_err) {
        int r;

        *write_err = 0;
        r = mig_set(sd, VU_MIG_RESUMING);
        if (r < 0)
                return r;
        for (size_t off = 0; off < len && *write_err == 0; off += piece)
                *write_err = vu_client_mig_data_write(sd->c, s + off, (uint32_t) MIN(piece, len - off));
        return mig_set(sd, VU_MIG_STOP);
}

/* ---- the guest ---------------------------------------------------------------------------------- */

static void send_frame(Mig *t, const void *f, size_t len) {
        VNetHdr h = { 0 };

        for (int i = 0; i < 100 && vd_send(&t->d, 0, &h, f, len) == -ENOSPC; i++)
                g_usleep(1000);
}

static void send_ack(Mig *t) {
        uint8_t f[100];

        send_frame(t, f, frame_tcp(f, &t->me, &t->peer, t->myport, t->port, t->iss + 1, t->rcv_nxt, 0x10, NULL, 0));
}

/* Handle one received frame as the guest's stack would. */
static void guest_input(Mig *t, ssize_t n, const VNetHdr *hdr, FrameInfo *last) {
        FrameInfo fi;
        bool partial = hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;

        if (!frame_parse(t->buf, (size_t) n, partial, le16toh(hdr->csum_start), le16toh(hdr->csum_offset), &fi))
                return;
        if (last)
                *last = fi;
        if (fi.ethertype == ETH_P_ARP_ && fi.arp_op == 1 && fi.arp_tip == t->me.ip) {
                FrameAddr asker = { .ip = fi.arp_sip };
                uint8_t reply[64];

                memcpy(asker.mac, fi.src_mac, 6);
                send_frame(t, reply, frame_arp_reply(reply, &t->me, &asker));
                return;
        }
        /* IPv4 from the test: ICMP, TCP, UDP (the bridge's IGMP is not ours). */
        if (fi.ethertype != ETH_P_IP_ || (fi.proto != 1 && fi.proto != 6 && fi.proto != 17))
                return;
        assert_true(fi.ip_csum_ok);
        assert_true(fi.l4_csum_ok);
        if (fi.proto == 17 && fi.dport == 5555) {
                char want[32];
                int l = g_snprintf(want, sizeof(want), "datagram %u", t->datagrams);
                assert_int_equal(fi.payload_len, (size_t) l);
                assert_memory_equal(fi.payload, want, (size_t) l);
                t->datagrams++;
                return;
        }
        if (fi.proto != 6 || fi.dport != t->myport || fi.payload_len == 0)
                return;
        if (fi.tcp_seq == t->rcv_nxt) {
                size_t off = t->rcv_nxt - t->base;
                for (size_t i = 0; i < fi.payload_len; i++)
                        if (fi.payload[i] != pattern(off + i))
                                fail_msg("stream byte %zu is 0x%02x, sent 0x%02x", off + i, fi.payload[i],
                                         pattern(off + i));
                t->rcv_nxt += (uint32_t) fi.payload_len;
                t->received += fi.payload_len;
        }
        /* In order or not (a segment lost in the switch-over), say what we have: the peer resends. */
        send_ack(t);
}

/* Run the guest until the stream reached until bytes and want datagrams arrived. */
static void pump(Mig *t, size_t until, unsigned want_datagrams) {
        gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

        while (t->received < until || t->datagrams < want_datagrams) {
                bool any = false;

                if (g_get_monotonic_time() > end)
                        fail_msg("stream stalled at %zu of %zu bytes, %u of %u datagrams", t->received, until,
                                 t->datagrams, want_datagrams);
                for (unsigned p = 0; p < t->d.pairs; p++) {
                        VNetHdr hdr;
                        ssize_t n = vd_recv(&t->d, p, &hdr, t->buf, sizeof(t->buf), any ? 0 : 5);
                        if (n >= 0) {
                                guest_input(t, n, &hdr, NULL);
                                any = true;
                        }
                }
                vd_tx_reclaim(&t->d, 0);
        }
}

/* Receive (answering as the guest) until a frame matches; *out (may be NULL) gets it. */
static bool wait_frame(Mig *t, bool (*match)(const FrameInfo *, const void *), const void *arg, int ms,
                       FrameInfo *out) {
        gint64 end = g_get_monotonic_time() + (gint64) ms * 1000;

        while (g_get_monotonic_time() < end) {
                for (unsigned p = 0; p < t->d.pairs; p++) {
                        VNetHdr hdr;
                        FrameInfo fi = { 0 };
                        ssize_t n = vd_recv(&t->d, p, &hdr, t->buf, sizeof(t->buf), 5);
                        if (n < 0)
                                continue;
                        guest_input(t, n, &hdr, &fi);
                        if (match(&fi, arg)) {
                                if (out)
                                        *out = fi;
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
        return fi->ethertype == ETH_P_IP_ && fi->proto == 1 && fi->icmp_type == 0 && fi->payload_len >= 8 &&
               memcmp(fi->payload, arg, 8) == 0;
}

static bool is_synack(const FrameInfo *fi, const void *arg) {
        return fi->ethertype == ETH_P_IP_ && fi->proto == 6 && fi->dport == *(const uint16_t *) arg &&
               (fi->tcp_flags & 0x12) == 0x12;
}

static void arp_peer(Mig *t) {
        uint8_t f[64];

        send_frame(t, f, frame_arp_request(f, &t->me, t->peer.ip));
        assert_true(wait_frame(t, is_arp_reply, &t->peer.ip, TMO, NULL));
        /* The bridge answers with its own address. */
        memcpy(t->peer.mac, t->buf + 6, 6);
}

static void ping(Mig *t, uint16_t seq) {
        uint8_t f[200], data[32];

        memset(data, 0x5a, sizeof(data));
        memcpy(data, "vfumig", 6);
        data[6] = (uint8_t) (seq >> 8);
        data[7] = (uint8_t) seq;
        send_frame(t, f, frame_icmp_echo(f, &t->me, &t->peer, 0x4243, seq, data, sizeof(data)));
        assert_true(wait_frame(t, is_echo_reply, data, TMO, NULL));
}

/* Tell the network where the guest is now (what a guest does on GUEST_ANNOUNCE). */
static void announce(Mig *t) {
        uint8_t f[64];

        send_frame(t, f, frame_arp_request(f, &t->me, t->me.ip));
}

/* A socket in the namespace, bound to addr:port (listening for TCP). */
static int netns_socket(Mig *t, int type, uint32_t addr, uint16_t port) {
        g_autofree char *path = g_strdup_printf("/run/netns/%s", t->ns);
        int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        int nsfd = open(path, O_RDONLY | O_CLOEXEC);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = addr, .sin_port = htons(port) };
        int one = 1, fd;

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

static void *writer_main(void *arg) {
        Mig *t = arg;
        uint8_t chunk[16384];
        size_t off = 0;

        while (off < STREAM_TOTAL) {
                size_t n = MIN(sizeof(chunk), STREAM_TOTAL - off);
                ssize_t w;

                for (size_t i = 0; i < n; i++)
                        chunk[i] = pattern(off + i);
                w = write(t->csock, chunk, n);
                if (w <= 0)
                        break;
                off += (size_t) w;
        }
        return NULL;
}

/* The guest connects to a listener in the namespace, which then streams STREAM_TOTAL bytes to it. */
static void stream_start(Mig *t) {
        uint8_t f[100];
        FrameInfo fi = { 0 };
        struct pollfd p;

        t->port = 8088;
        t->myport = (uint16_t) (42000 + getpid() % 1000);
        t->iss = 7000;
        t->lsock = netns_socket(t, SOCK_STREAM, t->peer.ip, t->port);
        send_frame(t, f, frame_tcp(f, &t->me, &t->peer, t->myport, t->port, t->iss, 0, 0x02, NULL, 0));
        assert_true(wait_frame(t, is_synack, &t->myport, TMO, &fi));
        t->base = t->rcv_nxt = fi.tcp_seq + 1;
        send_ack(t);
        p = (struct pollfd) { .fd = t->lsock, .events = POLLIN };
        assert_int_equal(poll(&p, 1, TMO), 1);
        t->csock = accept4(t->lsock, NULL, NULL, SOCK_CLOEXEC);
        assert_true(t->csock >= 0);
        assert_int_equal(pthread_create(&t->writer, NULL, writer_main, t), 0);
        t->writer_started = true;
}

/* count datagrams from the namespace to the guest's port 5555. */
static void inject_datagrams(Mig *t, unsigned first, unsigned count) {
        int s = netns_socket(t, SOCK_DGRAM, t->peer.ip, 0);
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = t->me.ip, .sin_port = htons(5555) };

        for (unsigned i = first; i < first + count; i++) {
                char msg[32];
                int l = g_snprintf(msg, sizeof(msg), "datagram %u", i);
                assert_int_equal(sendto(s, msg, (size_t) l, 0, (struct sockaddr *) &to, sizeof(to)), l);
        }
        close(s);
}

static uint64_t rx_packets(Side *sd) {
        VNetStats st;

        vnet_get_stats(sd->n, &st);
        return st.rx_packets;
}

static void wait_rx_packets(Side *sd, uint64_t at_least) {
        for (int i = 0; i < 2000 && rx_packets(sd) < at_least; i++)
                g_usleep(1000);
        assert_true(rx_packets(sd) >= at_least);
}

/* Probe on the source, receive buffers posted, all pairs in use, the peer known. */
static void guest_up(Mig *t) {
        assert_int_equal(vd_probe(&t->d, BASE_FEATURES | (t->packed ? VIRTIO_BIT(VIRTIO_F_RING_PACKED) : 0),
                                  t->pairs, 0),
                         0);
        assert_int_equal(virtio_has(t->d.features, VIRTIO_F_RING_PACKED), t->packed);
        for (unsigned p = 0; p < t->pairs; p++)
                vd_rx_post(&t->d, p);
        if (t->pairs > 1) {
                uint16_t pairs = htole16((uint16_t) t->pairs);
                assert_int_equal(vd_ctrl(&t->d, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, TMO),
                                 VIRTIO_NET_OK);
        }
        arp_peer(t);
        ping(t, 1);
}

static void start_source(Mig *t) {
        side_start(t, &t->src, 0, MIG_ID);
        vd_init(&t->d, &client_ops, t, t->src.ram.host, t->src.ram.gpa_base, t->src.ram.size);
        t->cur = &t->src;
        guest_up(t);
}

/* The guest's memory is the destination's from now on (same host address, the other memfd). */
static void switch_ram(Mig *t) {
        void *p = mmap(t->src.ram.host, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, t->dst.ram.fd, 0);

        assert_ptr_equal(p, t->src.ram.host);
        t->cur = &t->dst;
}

/*
 * After a successful migration the source device is destroyed (its TAP
 * closed: frames queued there are dropped, so the peer's TCP resends them
 * instead of waiting on a queue nobody reads).  Guest RAM stays mapped: the
 * test's view of it is the destination's now; it is freed at teardown.
 */
static void retire_source(Mig *t) {
        VuGuestRam keep = t->src.ram;

        t->src.ram = (VuGuestRam) { .fd = -1 };
        side_stop(&t->src);
        t->src.ram = keep;
}

typedef struct QPos {
        uint16_t last_avail, used_idx;
        bool avail_wrap, used_wrap, started;
} QPos;

static void queue_positions(Side *sd, QPos *q, unsigned n) {
        for (unsigned i = 0; i < n; i++) {
                VirtQueue *vq = virtio_pci_queue(vnet_virtio(sd->n), i);
                q[i] = (QPos) { vq->last_avail, vq->used_idx, vq->avail_wrap, vq->used_wrap, vq->started };
        }
}

/* ---- live migration ------------------------------------------------------------------------------------ */

static void live(Mig *t) {
        uint8_t bitmap[BITMAP_LEN];
        g_autoptr(GByteArray) stream = NULL;
        QPos before[VD_MAX_QUEUES], after[VD_MAX_QUEUES];
        unsigned nq = 2 * t->pairs + 1, copied;
        uint64_t rx0;
        int werr;
        char x;

        start_source(t);
        stream_start(t);
        pump(t, 200 << 10, 0);

        /* Pre-copy: the device runs with dirty logging on while RAM is copied, then copied again by bitmap. */
        log_start(&t->src);
        assert_int_equal(mig_set(&t->src, VU_MIG_PRE_COPY), 0);
        assert_int_equal(vu_client_mig_data_read(t->src.c, &x, 1), 0);        /* empty until stopped */
        side_start(t, &t->dst, 1, MIG_ID);
        memcpy(t->dst.ram.host, t->src.ram.host, RAM_SIZE);
        pump(t, 400 << 10, 0);
        log_report(&t->src, bitmap);
        copied = copy_dirty(t, bitmap);
        assert_true(copied > 0);        /* receives were reported */

        /*
         * The guest pauses.  The VMM copies what its CPUs dirtied (here: all of
         * RAM) after taking a report; the device keeps receiving meanwhile.
         */
        log_report(&t->src, bitmap);
        memcpy(t->dst.ram.host, t->src.ram.host, RAM_SIZE);
        rx0 = rx_packets(&t->src);
        inject_datagrams(t, 0, 4);
        wait_rx_packets(&t->src, rx0 + 4);

        /* Stop-and-copy: the device state, and the last pages the device dirtied. */
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP_COPY), 0);
        assert_int_equal(mig_get(&t->src), VU_MIG_STOP_COPY);
        stream = read_stream(&t->src, 777);
        log_report(&t->src, bitmap);
        copy_dirty(t, bitmap);
        /* Every device write was reported after it was made: the copies are identical. */
        for (size_t off = 0; off < RAM_SIZE; off += PAGE)
                if (memcmp(t->src.ram.host + off, t->dst.ram.host + off, PAGE) != 0)
                        fail_msg("guest page 0x%" G_GINT64_MODIFIER "x differs after the dirty-bitmap copy: a device "
                                 "write was not reported", RAM_GPA + off);
        queue_positions(&t->src, before, nq);
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP), 0);
        log_stop(&t->src);

        /* The destination takes the state and runs. */
        assert_int_equal(write_stream(&t->dst, stream->data, stream->len, 1000, &werr), 0);
        assert_int_equal(werr, 0);
        assert_null(vnet_migration_error(t->dst.n));
        queue_positions(&t->dst, after, nq);
        for (unsigned i = 0; i < nq; i++) {
                assert_int_equal(after[i].started, before[i].started);
                assert_int_equal(after[i].last_avail, before[i].last_avail);
                assert_int_equal(after[i].used_idx, before[i].used_idx);
                assert_int_equal(after[i].avail_wrap, before[i].avail_wrap);
                assert_int_equal(after[i].used_wrap, before[i].used_wrap);
        }
        assert_int_equal(vnet_active_pairs(t->dst.n), t->pairs);
        assert_int_equal(mig_set(&t->dst, VU_MIG_RUNNING), 0);
        switch_ram(t);
        announce(t);
        /* The source stays stopped until the orchestrator destroys it, which it does on success. */
        assert_int_equal(mig_get(&t->src), VU_MIG_STOP);
        assert_false(virtio_pci_may_run(vnet_virtio(t->src.n)));
        retire_source(t);

        /* The datagrams the source received after the RAM copy, then the stream, go on intact. */
        pump(t, STREAM_TOTAL, 4);
        assert_int_equal(t->received, STREAM_TOTAL);
        ping(t, 2);
        assert_true(rx_packets(&t->dst) > 0);
}

static void live_split_mq(void **state) {
        Mig *t = *state;

        t->pairs = 2;
        live(t);
}

static void live_packed(void **state) {
        Mig *t = *state;

        t->packed = true;
        live(t);
}

/* ---- bad streams -------------------------------------------------------------------------------------- */

static GByteArray *copy_of(const GByteArray *s, size_t len) {
        GByteArray *c = g_byte_array_new();

        g_byte_array_append(c, s->data, (guint) len);
        return c;
}

/* Offset of the value of field in section (sec, instance) of a raw stream (devstate.h layout), or 0. */
static size_t find_field(const GByteArray *s, uint16_t sec, uint32_t inst, uint16_t field) {
        size_t off = DEVSTATE_HDR_FIXED + devstate_le16(s->data + DEVSTATE_MAGIC_LEN + 4);

        off += 2 + devstate_le16(s->data + off);
        while (off + DEVSTATE_SECTION_HDR <= s->len) {
                uint16_t id = devstate_le16(s->data + off);
                uint32_t in = devstate_le32(s->data + off + 4), len = devstate_le32(s->data + off + 8);
                size_t f = off + DEVSTATE_SECTION_HDR, end = f + len;

                if (id == 0)
                        break;
                while (id == sec && in == inst && f + DEVSTATE_FIELD_HDR <= end) {
                        if (devstate_le16(s->data + f) == field)
                                return f + DEVSTATE_FIELD_HDR;
                        f += DEVSTATE_FIELD_HDR + devstate_le32(s->data + f + 4);
                }
                off = end;
        }
        return 0;
}

static void fix_crc(GByteArray *s) {
        uint32_t crc = htole32(devstate_crc32c(0, s->data, s->len - 4));

        memcpy(s->data + s->len - 4, &crc, 4);
}

/* The destination refuses the stream with err, is in ERROR, reset and stopped; a reset brings it back. */
static void expect_refused(Mig *t, GByteArray *s, int err, const char *needle) {
        int werr, r = write_stream(&t->dst, s->data, s->len, 500, &werr);
        const char *msg;

        assert_int_equal(r, err);
        assert_true(werr == 0 || werr == err);
        assert_int_equal(mig_get(&t->dst), VU_MIG_ERROR);
        assert_false(virtio_pci_may_run(vnet_virtio(t->dst.n)));
        assert_int_equal(virtio_pci_status(vnet_virtio(t->dst.n)), 0);
        msg = vnet_migration_error(t->dst.n);
        assert_non_null(msg);
        if (!strstr(msg, needle))
                fail_msg("\"%s\" lacks \"%s\"", msg, needle);
        /* ERROR only leaves through a reset. */
        assert_int_equal(mig_set(&t->dst, VU_MIG_RUNNING), -EINVAL);
        assert_int_equal(vu_client_reset(t->dst.c), 0);
        assert_int_equal(mig_get(&t->dst), VU_MIG_RUNNING);
        g_byte_array_unref(s);
}

static void refused_streams(void **state) {
        Mig *t = *state;
        g_autoptr(GByteArray) s = NULL;
        GByteArray *c;

        start_source(t);
        stream_start(t);
        pump(t, 150 << 10, 0);
        assert_int_equal(mig_set(&t->src, VU_MIG_PRE_COPY), 0);
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP_COPY), 0);
        s = read_stream(&t->src, 4096);
        side_start(t, &t->dst, 1, MIG_ID);
        memcpy(t->dst.ram.host, t->src.ram.host, RAM_SIZE);

        /* A bit of a value (the station MAC, field 2 of the virtio-net section): only the checksum sees it. */
        c = copy_of(s, s->len);
        assert_true(find_field(s, VIRTIO_STATE_SEC_DEVICE + 1, 0, 2) > 0);
        c->data[find_field(s, VIRTIO_STATE_SEC_DEVICE + 1, 0, 2) + 4] ^= 0x04;
        expect_refused(t, c, -EBADMSG, "checksum mismatch");
        expect_refused(t, copy_of(s, s->len - 7), -ENODATA, "truncated");
        expect_refused(t, copy_of(s, s->len / 2), -ENODATA, "truncated");
        c = copy_of(s, s->len);
        c->data[DEVSTATE_MAGIC_LEN] = 9;                        /* format major version */
        fix_crc(c);
        expect_refused(t, c, -EPROTONOSUPPORT, "version 9.0");
        c = copy_of(s, s->len);
        memcpy(c->data + DEVSTATE_HDR_FIXED, "virtio-blk", 10); /* another device type */
        fix_crc(c);
        expect_refused(t, c, -ENODEV, "type 'virtio-blk'");
        c = copy_of(s, s->len);
        memcpy(c->data, "NOTSTATE", 8);
        expect_refused(t, c, -EBADMSG, "bad magic");

        /* A destination made for another device refuses the intact stream. */
        side_stop(&t->dst);
        side_start(t, &t->dst, 1, "net7");
        expect_refused(t, copy_of(s, s->len), -ENODEV, "this device is 'net7'");

        /* The source goes back to running and the stream completes there. */
        assert_int_equal(mig_set(&t->src, VU_MIG_RUNNING), 0);
        assert_int_equal(mig_get(&t->src), VU_MIG_RUNNING);
        pump(t, STREAM_TOTAL, 0);
        ping(t, 3);
}

/* ---- dirty logging: what receives write, and nothing else -------------------------------------------- */

static void page_set(uint8_t *bm, uint64_t gpa, uint64_t len) {
        for (uint64_t p = (gpa - RAM_GPA) / PAGE; p <= (gpa + len - 1 - RAM_GPA) / PAGE; p++)
                bm[p / 8] |= (uint8_t) (1u << (p % 8));
}

static void dirty_rx_only(void **state) {
        Mig *t = *state;
        uint8_t got[BITMAP_LEN], want[BITMAP_LEN] = { 0 };
        VdQueue *rxq = &t->d.q[0];
        uint16_t first, last;
        g_autofree char *mac = NULL;

        start_source(t);
        /* The namespace knows the guest: no ARP, the guest sends nothing. */
        mac = g_strdup_printf("%02x:%02x:%02x:%02x:%02x:%02x", t->me.mac[0], t->me.mac[1], t->me.mac[2],
                              t->me.mac[3], t->me.mac[4], t->me.mac[5]);
        assert_int_equal(host_run("ip -n %s neigh replace 10.77.0.2 lladdr %s dev br0 nud permanent", t->ns, mac), 0);
        log_start(&t->src);
        /*
         * Six datagrams in.  A straggler from the earlier cases' traffic (a
         * late retransmission to the guest's address) may land too: every
         * frame the device wrote counts, but none may land between reading
         * the used index and the report, so such a round is measured again.
         */
        for (int round = 0;; round++) {
                log_report(&t->src, got);               /* start from clean */
                first = le16toh(__atomic_load_n(&((uint16_t *) rxq->dev)[1], __ATOMIC_ACQUIRE));
                inject_datagrams(t, 0, 6);
                for (int i = 0; i < 2000 && (uint16_t) (le16toh(((uint16_t *) rxq->dev)[1]) - first) < 6; i++)
                        g_usleep(1000);
                g_usleep(100 * 1000);                   /* let stragglers land before the count */
                last = le16toh(__atomic_load_n(&((uint16_t *) rxq->dev)[1], __ATOMIC_ACQUIRE));
                assert_true((uint16_t) (last - first) >= 6);
                log_report(&t->src, got);
                if (le16toh(__atomic_load_n(&((uint16_t *) rxq->dev)[1], __ATOMIC_ACQUIRE)) == last)
                        break;
                assert_true(round < 3);
        }

        /* What the device wrote: used elements and index, and each frame's buffer. */
        page_set(want, rxq->dev_gpa, 4);
        for (uint16_t i = first; i != last; i++) {
                VqUsedElem *e = (VqUsedElem *) ((uint8_t *) rxq->dev + 4) + (i & (rxq->size - 1));
                page_set(want, (uint64_t) rxq->dev_gpa + 4 + 8ull * (i & (rxq->size - 1)), 8);
                page_set(want, rxq->buf_gpa + (uint64_t) le32toh(e->id) * VD_BUF_LEN, le32toh(e->len));
        }
        for (size_t p = 0; p < RAM_SIZE / PAGE; p++) {
                bool g = got[p / 8] & (1u << (p % 8)), w = want[p / 8] & (1u << (p % 8));
                if (g != w)
                        fail_msg("page 0x%" G_GINT64_MODIFIER "x: %s", RAM_GPA + p * PAGE,
                                 g ? "reported but the device did not write it" : "written but not reported");
        }
        /* Reported once: the next report is empty. */
        log_report(&t->src, got);
        for (size_t i = 0; i < BITMAP_LEN; i++)
                assert_int_equal(got[i], 0);
        log_stop(&t->src);
}

/* ---- the state machine against the real device -------------------------------------------------------- */

static int feature_raw(Side *sd, uint32_t argsz, uint32_t flags, const void *data, size_t len) {
        struct vu_device_feature f = { argsz, flags };

        return vu_client_request(sd->c, VU_CMD_DEVICE_FEATURE, 0, &f, sizeof(f), data, len, NULL, 0, NULL);
}

/* Back to RUNNING from wherever an arc test left the device, then reset it. */
static void back_to_running(Side *sd) {
        if (mig_set(sd, VU_MIG_RUNNING) < 0)
                assert_int_equal(mig_get(sd), VU_MIG_ERROR);
        assert_int_equal(vu_client_reset(sd->c), 0);
        assert_int_equal(mig_get(sd), VU_MIG_RUNNING);
}

static bool supported(uint32_t s) {
        return s == VU_MIG_STOP || s == VU_MIG_RUNNING || s == VU_MIG_STOP_COPY || s == VU_MIG_RESUMING ||
               s == VU_MIG_PRE_COPY;
}

static void state_arcs(void **state) {
        Mig *t = *state;
        g_autoptr(GByteArray) s = NULL;
        const uint32_t all[] = { VU_MIG_ERROR, VU_MIG_STOP, VU_MIG_RUNNING, VU_MIG_STOP_COPY, VU_MIG_RESUMING,
                                 VU_MIG_RUNNING_P2P, VU_MIG_PRE_COPY, VU_MIG_PRE_COPY_P2P, 99 };
        uint64_t flags;
        size_t len;
        int werr;
        uint8_t f[64];

        start_source(t);
        /* A stream of this very device, for arcs that leave RESUMING. */
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP_COPY), 0);
        s = read_stream(&t->src, 4096);
        assert_int_equal(mig_set(&t->src, VU_MIG_RUNNING), 0);

        assert_int_equal(vu_client_device_feature(t->src.c, VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, &flags,
                                                  sizeof(flags), &len),
                         0);
        assert_int_equal(flags, VU_MIGRATION_STOP_COPY | VU_MIGRATION_PRE_COPY);

        for (size_t i = 0; i < G_N_ELEMENTS(all); i++) {
                for (size_t j = 0; j < G_N_ELEMENTS(all); j++) {
                        uint32_t from = all[i], to = all[j];
                        bool ok = supported(to) && !(from == VU_MIG_STOP_COPY && to == VU_MIG_PRE_COPY);
                        int r;

                        if (!supported(from))
                                continue;
                        back_to_running(&t->src);
                        assert_int_equal(mig_set(&t->src, from), 0);
                        if (from == VU_MIG_RESUMING)
                                for (size_t off = 0; off < s->len; off += 100)
                                        assert_int_equal(vu_client_mig_data_write(t->src.c, s->data + off,
                                                                                  (uint32_t) MIN(100, s->len - off)),
                                                         0);
                        r = mig_set(&t->src, to);
                        if (r != (ok ? 0 : -EINVAL))
                                fail_msg("%s -> %u: %d (%s)", vu_mig_state_to_string(from), to, r,
                                         vnet_migration_error(t->src.n));
                        if (!ok) {
                                assert_int_equal(r, -EINVAL);
                                assert_int_equal(mig_get(&t->src), from);
                                continue;
                        }
                        assert_int_equal(r, 0);
                        assert_int_equal(mig_get(&t->src), to);
                        assert_int_equal(virtio_pci_may_run(vnet_virtio(t->src.n)),
                                         to == VU_MIG_RUNNING || to == VU_MIG_PRE_COPY);
                        assert_int_equal(virtio_pci_migration_state(vnet_virtio(t->src.n)), to);
                }
        }
        /* Leaving RESUMING without a complete stream: refused, ERROR until reset. */
        back_to_running(&t->src);
        assert_int_equal(write_stream(&t->src, s->data, s->len - 1, 4096, &werr), -ENODATA);
        assert_int_equal(mig_get(&t->src), VU_MIG_ERROR);
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP), -EINVAL);
        assert_int_equal(vu_client_reset(t->src.c), 0);

        /* Probes: supported operations echo the request, others fail. */
        assert_int_equal(feature_raw(&t->src, 8, VU_FEATURE_PROBE | VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0), 0);
        assert_int_equal(feature_raw(&t->src, 8, VU_FEATURE_PROBE | VU_FEATURE_SET | VU_FEATURE_MIGRATION, NULL, 0),
                         -EINVAL);
        assert_int_equal(feature_raw(&t->src, 8,
                                     VU_FEATURE_PROBE | VU_FEATURE_GET | VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE,
                                     NULL, 0),
                         0);
        assert_int_equal(feature_raw(&t->src, 8, VU_FEATURE_PROBE | VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, NULL,
                                     0),
                         0);
        assert_int_equal(feature_raw(&t->src, 8, VU_FEATURE_PROBE | VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_START, NULL,
                                     0),
                         -EINVAL);
        assert_int_equal(feature_raw(&t->src, 8, VU_FEATURE_PROBE | VU_FEATURE_GET | 9, NULL, 0), -ENOTSUP);
        /* argsz too small for what is asked or carried. */
        assert_int_equal(feature_raw(&t->src, 12, VU_FEATURE_GET | VU_FEATURE_MIG_DEVICE_STATE, NULL, 0), -EINVAL);
        assert_int_equal(feature_raw(&t->src, 12, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE,
                                     &(struct vu_feature_mig_state) { VU_MIG_STOP, 0 }, 8),
                         -EINVAL);
        assert_int_equal(feature_raw(&t->src, 15, VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0), -EINVAL);
        assert_int_equal(feature_raw(&t->src, 16, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE,
                                     &(struct vu_feature_mig_state) { VU_MIG_STOP, 0 }, 4),
                         -EINVAL);
        assert_int_equal(mig_get(&t->src), VU_MIG_RUNNING);
        /* Data in the wrong state. */
        assert_int_equal(vu_client_mig_data_read(t->src.c, f, sizeof(f)), -EINVAL);
        assert_int_equal(vu_client_mig_data_write(t->src.c, f, sizeof(f)), -EINVAL);
        {
                struct vu_mig_data m = { 8 + 4, 64 };
                assert_int_equal(mig_set(&t->src, VU_MIG_STOP_COPY), 0);
                assert_int_equal(vu_client_request(t->src.c, VU_CMD_MIG_DATA_READ, 0, &m, sizeof(m), NULL, 0, NULL, 0,
                                                   NULL),
                                 -EINVAL);
        }

        /* Stopped: only accesses and migration run, and the data path holds. */
        back_to_running(&t->src);
        guest_up(t);
        assert_int_equal(mig_set(&t->src, VU_MIG_STOP), 0);
        assert_int_equal(vu_client_dma_map(t->src.c, RAM_GPA + RAM_SIZE, PAGE, t->src.ram.fd, 0, VU_DMA_READ), -EBUSY);
        {
                VNetStats a, b;
                uint8_t fr[64];

                vnet_get_stats(t->src.n, &a);
                send_frame(t, fr, frame_arp_request(fr, &t->me, t->peer.ip));   /* the kick is a register write */
                g_usleep(200 * 1000);
                vnet_get_stats(t->src.n, &b);
                assert_int_equal(b.tx_packets, a.tx_packets);
                assert_int_equal(mig_set(&t->src, VU_MIG_RUNNING), 0);
                assert_true(wait_frame(t, is_arp_reply, &t->peer.ip, TMO, NULL));  /* sent once running */
        }
        ping(t, 9);
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(live_split_mq, setup, teardown),
                cmocka_unit_test_setup_teardown(live_packed, setup, teardown),
                cmocka_unit_test_setup_teardown(refused_streams, setup, teardown),
                cmocka_unit_test_setup_teardown(dirty_rx_only, setup, teardown),
                cmocka_unit_test_setup_teardown(state_arcs, setup, teardown),
        };

        /* One test by name (a glob) when asked: test-vnet-migration 'live_*' */
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        /* One test by name (a glob) when asked: test-vnet-migration 'live_*' */
        if (argc > 1)
                cmocka_set_test_filter(argv[1]);
        return cmocka_run_group_tests_name("vnet-migration", tests, NULL, NULL);
}
