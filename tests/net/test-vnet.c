/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net device behaviour through its PCI registers, with a test driver
 * doing what Linux's virtio_net does, fake guest RAM and interrupt sink, and
 * the real passt backend on a socketpair whose other end the test plays.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake-mem.h"
#include "net/vnet.h"
#include "net/vnet-priv.h"
#include "vnet-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)
#define ALL_FEATURES UINT64_MAX
#define TMO 2000

static const uint8_t our_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

typedef struct Fx {
        FakeMem m;
        FakeIrq irq;
        VNet *n;
        int peer;
        Vd d;
} Fx;

static int bar_read(void *o, uint64_t off, void *buf, size_t len) {
        return virtio_pci_bar_read(vnet_virtio(((Fx *) o)->n), off, buf, len);
}

static int bar_write(void *o, uint64_t off, const void *buf, size_t len) {
        return virtio_pci_bar_write(vnet_virtio(((Fx *) o)->n), off, buf, len);
}

static int irq_wait(void *o, unsigned vector, int timeout_ms) {
        return fake_irq_wait(&((Fx *) o)->irq, vector, timeout_ms);
}

static const VdOps fx_ops = { .read = bar_read, .write = bar_write, .wait_irq = irq_wait };

static int setup(void **state) {
        Fx *f = calloc(1, sizeof(*f));
        NetBackend *be;
        int sv[2];

        fake_mem_init(&f->m, 0x40000000, 64 << 20);
        fake_irq_init(&f->irq);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(net_passt_new(sv[0], &be), 0);
        f->peer = sv[1];
        VNetOptions o = { .pairs = 1, .mtu = 1500, .link_up = true, .queue_size = 64 };
        memcpy(o.mac, our_mac, 6);
        assert_int_equal(vnet_new(&o, be, &f->n), 0);
        vnet_attach(f->n, &f->m.mem, &f->irq.ops, &f->irq);
        vd_init(&f->d, &fx_ops, f, f->m.host, f->m.gpa, f->m.size);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fx *f = *state;
        vnet_free(f->n);
        close(f->peer);
        fake_irq_fini(&f->irq);
        fake_mem_fini(&f->m);
        free(f);
        return 0;
}

/* The passt side: one frame, or -1 on timeout. */
static ssize_t peer_recv(Fx *f, void *buf, size_t cap) {
        uint32_t be_len;
        size_t got = 0;
        struct pollfd p = { .fd = f->peer, .events = POLLIN };

        while (got < 4) {
                if (poll(&p, 1, TMO) <= 0)
                        return -1;
                ssize_t n = read(f->peer, (uint8_t *) &be_len + got, 4 - got);
                if (n <= 0)
                        return -1;
                got += (size_t) n;
        }
        size_t len = ntohl(be_len);
        if (len > cap)
                return -1;
        got = 0;
        while (got < len) {
                if (poll(&p, 1, TMO) <= 0)
                        return -1;
                ssize_t n = read(f->peer, (uint8_t *) buf + got, len - got);
                if (n <= 0)
                        return -1;
                got += (size_t) n;
        }
        return (ssize_t) len;
}

static void peer_send(Fx *f, const void *frame, size_t len) {
        uint32_t be_len = htonl((uint32_t) len);
        assert_int_equal(write(f->peer, &be_len, 4), 4);
        assert_int_equal(write(f->peer, frame, len), (ssize_t) len);
}

static size_t make_frame(uint8_t *buf, const uint8_t *dst, size_t len, uint8_t fill) {
        memcpy(buf, dst, 6);
        memcpy(buf + 6, "\x02\x00\x00\x00\x00\x01", 6);
        buf[12] = 0x88;
        buf[13] = 0xb5;         /* local experimental ethertype */
        for (size_t i = 14; i < len; i++)
                buf[i] = (uint8_t) (fill + i);
        return len;
}

/* The MTU offered: the option when given, else the backend's, else 1500; below 68 refused. */
static void mtu_choice(void **state) {
        static const struct { uint16_t opt; unsigned be; int ret; uint16_t want; } cases[] = {
                { 0, 0, 0, 1500 }, { 0, 9000, 0, 9000 }, { 0, 1450, 0, 1450 }, { 4000, 9000, 0, 4000 },
                { 65535, 0, 0, 65535 }, { 67, 0, -EINVAL, 0 }, { 0, 40, 0, 1500 }, { 0, 70000, 0, 1500 },
        };

        (void) state;
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                NetBackend *be;
                VNet *n = NULL;
                int sv[2];

                assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
                assert_int_equal(net_passt_new(sv[0], &be), 0);
                be->mtu = cases[i].be;
                VNetOptions o = { .pairs = 1, .mtu = cases[i].opt, .link_up = true, .queue_size = 64 };
                memcpy(o.mac, our_mac, 6);
                assert_int_equal(vnet_new(&o, be, &n), cases[i].ret);
                if (n) {
                        uint16_t mtu;
                        assert_int_equal(vnet_mtu(n), cases[i].want);
                        assert_int_equal(virtio_pci_bar_read(vnet_virtio(n), VIRTIO_PCI_DEVICE_OFF +
                                                             offsetof(VNetConfigSpace, mtu), &mtu, 2), 0);
                        assert_int_equal(le16toh(mtu), cases[i].want);
                }
                vnet_free(n);
                close(sv[1]);
        }
}

static void probe_and_config(void **state) {
        Fx *f = *state;
        uint8_t mac[6];
        uint16_t status, mtu;

        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        assert_true(virtio_has(f->d.features, VIRTIO_F_VERSION_1));
        assert_true(f->d.features & F(MAC));
        assert_true(f->d.features & F(CTRL_VQ));
        /* passt carries no offloads: none offered. */
        assert_false(f->d.features & (F(CSUM) | F(GUEST_CSUM) | F(HOST_TSO4)));
        assert_false(f->d.features & F(MQ));
        vd_cfg_read(&f->d, 0, mac, 6);
        assert_memory_equal(mac, our_mac, 6);
        vd_cfg_read(&f->d, 6, &status, 2);
        assert_int_equal(le16toh(status), VIRTIO_NET_S_LINK_UP);
        vd_cfg_read(&f->d, 10, &mtu, 2);
        assert_int_equal(le16toh(mtu), 1500);
        assert_int_equal(vd_status(&f->d) & VIRTIO_STATUS_DRIVER_OK, VIRTIO_STATUS_DRIVER_OK);
        /* Feature words beyond 1 read 0. */
        uint32_t sel = 2, v = 0xdead;
        bar_write(f, VIRTIO_PCI_COMMON_DFSELECT, &sel, 4);
        bar_read(f, VIRTIO_PCI_COMMON_DF, &v, 4);
        assert_int_equal(v, 0);
        /* Reset reads back 0, and the device takes a new probe. */
        assert_int_equal(vd_reset(&f->d), 0);
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
}

static void features_refused(void **state) {
        Fx *f = *state;

        /* No VERSION_1. */
        assert_int_equal(vd_probe(&f->d, F(MAC), 1, 0), -ENODEV);
        /* CTRL_RX without CTRL_VQ (5.1.3.1). */
        assert_int_equal(vd_probe(&f->d, VIRTIO_BIT(VIRTIO_F_VERSION_1) | F(CTRL_RX), 1, 0), -ENODEV);
        /* A feature that was not offered. */
        assert_int_equal(vd_reset(&f->d), 0);
        uint8_t st = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
        bar_write(f, VIRTIO_PCI_COMMON_STATUS, &st, 1);
        uint32_t sel = 0, lo = 1u << VIRTIO_NET_F_GUEST_TSO4 | 1u << VIRTIO_NET_F_GUEST_CSUM, hi = 1;
        bar_write(f, VIRTIO_PCI_COMMON_GFSELECT, &sel, 4);
        bar_write(f, VIRTIO_PCI_COMMON_GF, &lo, 4);
        sel = 1;
        bar_write(f, VIRTIO_PCI_COMMON_GFSELECT, &sel, 4);
        bar_write(f, VIRTIO_PCI_COMMON_GF, &hi, 4);
        st |= VIRTIO_STATUS_FEATURES_OK;
        bar_write(f, VIRTIO_PCI_COMMON_STATUS, &st, 1);
        assert_false(vd_status(&f->d) & VIRTIO_STATUS_FEATURES_OK);
        /* Acceptable ones; later feature writes are ignored once FEATURES_OK is set. */
        lo = 1u << VIRTIO_NET_F_MAC;
        sel = 0;
        bar_write(f, VIRTIO_PCI_COMMON_GFSELECT, &sel, 4);
        bar_write(f, VIRTIO_PCI_COMMON_GF, &lo, 4);
        bar_write(f, VIRTIO_PCI_COMMON_STATUS, &st, 1);
        assert_true(vd_status(&f->d) & VIRTIO_STATUS_FEATURES_OK);
        lo = 0;
        bar_write(f, VIRTIO_PCI_COMMON_GF, &lo, 4);
        bar_read(f, VIRTIO_PCI_COMMON_GF, &lo, 4);
        assert_int_equal(lo, 1u << VIRTIO_NET_F_MAC);
        /* DRIVER_OK without queues: the first pair is required, so NEEDS_RESET. */
        st |= VIRTIO_STATUS_DRIVER_OK;
        bar_write(f, VIRTIO_PCI_COMMON_STATUS, &st, 1);
        assert_true(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(vd_reset(&f->d), 0);
}

static void msix_vectors(void **state) {
        Fx *f = *state;
        uint16_t v, q;
        unsigned nvec = virtio_pci_nvec(vnet_virtio(f->n));

        assert_int_equal(nvec, 4);      /* config + rx + tx + ctrl */
        v = 3;
        bar_write(f, VIRTIO_PCI_COMMON_MSIX, &v, 2);
        bar_read(f, VIRTIO_PCI_COMMON_MSIX, &v, 2);
        assert_int_equal(v, 3);
        v = (uint16_t) nvec;
        bar_write(f, VIRTIO_PCI_COMMON_MSIX, &v, 2);
        bar_read(f, VIRTIO_PCI_COMMON_MSIX, &v, 2);
        assert_int_equal(v, VIRTIO_MSI_NO_VECTOR);
        q = 2;
        bar_write(f, VIRTIO_PCI_COMMON_Q_SELECT, &q, 2);
        v = 1;
        bar_write(f, VIRTIO_PCI_COMMON_Q_MSIX, &v, 2);
        bar_read(f, VIRTIO_PCI_COMMON_Q_MSIX, &v, 2);
        assert_int_equal(v, 1);
        v = 200;
        bar_write(f, VIRTIO_PCI_COMMON_Q_MSIX, &v, 2);
        bar_read(f, VIRTIO_PCI_COMMON_Q_MSIX, &v, 2);
        assert_int_equal(v, VIRTIO_MSI_NO_VECTOR);
        /* A queue beyond num_queues has size 0. */
        q = 3;
        bar_write(f, VIRTIO_PCI_COMMON_Q_SELECT, &q, 2);
        bar_read(f, VIRTIO_PCI_COMMON_Q_SIZE, &v, 2);
        assert_int_equal(v, 0);
        bar_read(f, VIRTIO_PCI_COMMON_NUMQ, &v, 2);
        assert_int_equal(v, 3);
}

static void tx_rx_roundtrip(Fx *f) {
        uint8_t frame[1514], got[4096];
        VNetHdr hdr = { 0 };
        VNetStats st0, st;
        ssize_t n;

        vnet_get_stats(f->n, &st0);
        for (int i = 0; i < 40; i++) {
                size_t len = make_frame(frame, (const uint8_t *) "\x02\x00\x00\x00\x00\x01", 60 + (size_t) i * 30, (uint8_t) i);
                assert_int_equal(vd_send(&f->d, 0, &hdr, frame, len), 0);
                n = peer_recv(f, got, sizeof(got));
                assert_int_equal(n, (ssize_t) len);
                assert_memory_equal(got, frame, len);
        }
        assert_int_equal(vd_rx_post(&f->d, 0) > 0, 1);
        for (int i = 0; i < 100; i++) {
                size_t len = make_frame(frame, our_mac, 60 + (size_t) i * 14, (uint8_t) (i * 7));
                peer_send(f, frame, len);
                memset(&hdr, 0xaa, sizeof(hdr));
                n = vd_recv(&f->d, 0, &hdr, got, sizeof(got), TMO);
                assert_int_equal(n, (ssize_t) len);
                assert_memory_equal(got, frame, len);
                assert_int_equal(hdr.flags, 0);
                assert_int_equal(hdr.gso_type, 0);
                assert_int_equal(le16toh(hdr.num_buffers), 1);
        }
        vnet_get_stats(f->n, &st);
        assert_int_equal(st.tx_packets - st0.tx_packets, 40);
        assert_int_equal(st.rx_packets - st0.rx_packets, 100);
        assert_int_equal(st.tx_errors + st.rx_errors + st.rx_drops + st.tx_drops,
                         st0.tx_errors + st0.rx_errors + st0.rx_drops + st0.tx_drops);
}

static void split_tx_rx(void **state) {
        Fx *f = *state;
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES & ~VIRTIO_BIT(VIRTIO_F_RING_PACKED), 1, 0), 0);
        tx_rx_roundtrip(f);
}

static void split_indirect_no_event_idx(void **state) {
        Fx *f = *state;
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES & ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX), 1, 0), 0);
        assert_false(virtio_has(f->d.features, VIRTIO_F_EVENT_IDX));
        f->d.indirect_tx = true;
        tx_rx_roundtrip(f);
}

static void split_chained_tx(void **state) {
        Fx *f = *state;
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES & ~F(MRG_RXBUF), 1, 0), 0);
        f->d.split_tx = true;
        tx_rx_roundtrip(f);
}

static int setup_packed(void **state) {
        setup(state);
        Fx *f = *state;
        vnet_free(f->n);
        NetBackend *be;
        int sv[2];
        close(f->peer);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(net_passt_new(sv[0], &be), 0);
        f->peer = sv[1];
        VNetOptions o = { .pairs = 1, .mtu = 1500, .link_up = true, .queue_size = 64, .packed = true };
        memcpy(o.mac, our_mac, 6);
        assert_int_equal(vnet_new(&o, be, &f->n), 0);
        vnet_attach(f->n, &f->m.mem, &f->irq.ops, &f->irq);
        return 0;
}

static void packed_tx_rx(void **state) {
        Fx *f = *state;
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        assert_true(virtio_has(f->d.features, VIRTIO_F_RING_PACKED));
        tx_rx_roundtrip(f);
        /* and with indirect tables, no event index */
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES & ~VIRTIO_BIT(VIRTIO_F_EVENT_IDX), 1, 0), 0);
        f->d.indirect_tx = true;
        tx_rx_roundtrip(f);
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        f->d.indirect_tx = false;
        f->d.split_tx = true;
        tx_rx_roundtrip(f);
}

static void mergeable_rx(void **state) {
        Fx *f = *state;
        uint8_t frame[6000], got[8192];
        VNetHdr hdr;
        VNetStats st;

        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        assert_true(f->d.features & F(MRG_RXBUF));
        vd_rx_post(&f->d, 0);
        size_t len = make_frame(frame, our_mac, 5000, 3);
        peer_send(f, frame, len);
        assert_int_equal(vd_recv(&f->d, 0, &hdr, got, sizeof(got), TMO), (ssize_t) len);
        assert_int_equal(le16toh(hdr.num_buffers), 3);
        assert_memory_equal(got, frame, len);

        /* Without MRG_RXBUF a frame larger than one buffer is dropped and counted. */
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES & ~F(MRG_RXBUF), 1, 0), 0);
        vd_rx_post(&f->d, 0);
        peer_send(f, frame, len);
        size_t small = make_frame(frame, our_mac, 100, 9);
        peer_send(f, frame, small);
        assert_int_equal(vd_recv(&f->d, 0, &hdr, got, sizeof(got), TMO), (ssize_t) small);
        vnet_get_stats(f->n, &st);
        assert_int_equal(st.rx_drops, 1);
}

static void expect_rx(Fx *f, const uint8_t *dst, bool delivered) {
        uint8_t frame[64], got[2048];
        VNetHdr hdr;
        static uint8_t tag;

        /* Each probe frame is followed by a marker the filter always passes (broadcast). */
        make_frame(frame, dst, 64, ++tag);
        peer_send(f, frame, 64);
        make_frame(frame, (const uint8_t *) "\xff\xff\xff\xff\xff\xff", 64, 0);
        peer_send(f, frame, 64);
        ssize_t n = vd_recv(&f->d, 0, &hdr, got, sizeof(got), TMO);
        assert_int_equal(n, 64);
        if (delivered) {
                assert_memory_equal(got, dst, 6);
                assert_int_equal(vd_recv(&f->d, 0, &hdr, got, sizeof(got), TMO), 64);
        }
        assert_memory_equal(got, "\xff\xff\xff\xff\xff\xff", 6);
}

static void ctrl_commands(void **state) {
        Fx *f = *state;
        const uint8_t other[6] = { 0x02, 0x11, 0x22, 0x33, 0x44, 0x55 };
        const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
        uint8_t on = 1, off = 0, tbl[4 + 6 + 4];
        uint8_t gen0, gen1, mac[6];

        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        vd_rx_post(&f->d, 0);
        /* Promiscuous until told otherwise. */
        expect_rx(f, other, true);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1, TMO), VIRTIO_NET_OK);
        expect_rx(f, other, false);
        expect_rx(f, our_mac, true);
        expect_rx(f, mcast, false);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1, TMO), VIRTIO_NET_OK);
        expect_rx(f, mcast, true);
        /* MAC table: one unicast entry, no multicast. */
        uint32_t one = htole32(1), zero = 0;
        memcpy(tbl, &one, 4);
        memcpy(tbl + 4, other, 6);
        memcpy(tbl + 10, &zero, 4);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tbl, sizeof(tbl), TMO),
                         VIRTIO_NET_OK);
        expect_rx(f, other, true);
        /* Malformed table (count beyond payload), wrong sizes, unknown class: ERR. */
        uint32_t big = htole32(5);
        memcpy(tbl, &big, 4);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tbl, sizeof(tbl), TMO),
                         VIRTIO_NET_ERR);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, tbl, 2, TMO), VIRTIO_NET_ERR);
        assert_int_equal(vd_ctrl(&f->d, 77, 0, &on, 1, TMO), VIRTIO_NET_ERR);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_RX, 9, &on, 1, TMO), VIRTIO_NET_ERR);
        /* MQ not negotiated with one pair. */
        uint16_t pairs = htole16(1);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, TMO),
                         VIRTIO_NET_ERR);
        /* CTRL_MAC_ADDR: config space follows, generation bumps. */
        bar_read(f, VIRTIO_PCI_COMMON_CFGGENERATION, &gen0, 1);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, other, 6, TMO), VIRTIO_NET_OK);
        bar_read(f, VIRTIO_PCI_COMMON_CFGGENERATION, &gen1, 1);
        assert_int_not_equal(gen0, gen1);
        vd_cfg_read(&f->d, 0, mac, 6);
        assert_memory_equal(mac, other, 6);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, mcast, 6, TMO), VIRTIO_NET_ERR);
        /* GUEST_ANNOUNCE: the device asks, the driver acks. */
        assert_int_equal(vnet_announce(f->n), 0);
        assert_int_equal(fake_irq_wait(&f->irq, 0, TMO), 1);
        uint16_t st;
        vd_cfg_read(&f->d, 6, &st, 2);
        assert_int_equal(le16toh(st), VIRTIO_NET_S_LINK_UP | VIRTIO_NET_S_ANNOUNCE);
        assert_int_equal(vd_ctrl(&f->d, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0, TMO), VIRTIO_NET_OK);
        vd_cfg_read(&f->d, 6, &st, 2);
        assert_int_equal(le16toh(st), VIRTIO_NET_S_LINK_UP);
        /* Reset restores the configured MAC. */
        assert_int_equal(vd_reset(&f->d), 0);
        vd_cfg_read(&f->d, 0, mac, 6);
        assert_memory_equal(mac, our_mac, 6);
}

static void link_down_up(void **state) {
        Fx *f = *state;
        uint8_t frame[64], got[2048], gen0, gen1, isr;
        VNetHdr hdr = { 0 };
        VNetStats st;
        uint16_t status;

        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        vd_rx_post(&f->d, 0);
        while (fake_irq_wait(&f->irq, 0, 0))
                ;
        bar_read(f, VIRTIO_PCI_COMMON_CFGGENERATION, &gen0, 1);
        vnet_set_link(f->n, false);
        assert_int_equal(fake_irq_wait(&f->irq, 0, TMO), 1);
        bar_read(f, VIRTIO_PCI_COMMON_CFGGENERATION, &gen1, 1);
        assert_int_not_equal(gen0, gen1);
        vd_cfg_read(&f->d, 6, &status, 2);
        assert_int_equal(status, 0);
        /* ISR: config bit, cleared by the read. */
        bar_read(f, VIRTIO_PCI_ISR_OFF, &isr, 1);
        assert_true(isr & VIRTIO_ISR_CONFIG);
        bar_read(f, VIRTIO_PCI_ISR_OFF, &isr, 1);
        assert_int_equal(isr, 0);

        make_frame(frame, our_mac, 64, 1);
        assert_int_equal(vd_send(&f->d, 0, &hdr, frame, 64), 0);
        peer_send(f, frame, 64);
        assert_int_equal(vd_recv(&f->d, 0, &hdr, got, sizeof(got), 200), -ETIMEDOUT);
        vnet_get_stats(f->n, &st);
        assert_int_equal(st.tx_drops, 1);
        assert_int_equal(st.rx_drops, 1);

        vnet_set_link(f->n, true);
        assert_int_equal(fake_irq_wait(&f->irq, 0, TMO), 1);
        vd_cfg_read(&f->d, 6, &status, 2);
        assert_int_equal(le16toh(status), VIRTIO_NET_S_LINK_UP);
        make_frame(frame, our_mac, 64, 2);
        peer_send(f, frame, 64);
        assert_int_equal(vd_recv(&f->d, 0, &hdr, got, sizeof(got), TMO), 64);
        assert_memory_equal(got, frame, 64);
}

static void bad_descriptor_needs_reset(void **state) {
        Fx *f = *state;
        uint16_t id;
        uint32_t len;

        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        while (fake_irq_wait(&f->irq, 0, 0))
                ;
        /* A transmit buffer outside guest RAM. */
        uint64_t gpa = 0x1000;
        uint32_t l = 100;
        bool w = false;
        assert_true(vd_add_chain(&f->d, 1, &gpa, &l, &w, 1, false) >= 0);
        vd_kick(&f->d, 1);
        assert_int_equal(fake_irq_wait(&f->irq, 0, TMO), 1);
        assert_true(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(vd_get_used(&f->d, 1, &id, &len), 0);
        /* The device recovers through reset. */
        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        assert_false(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        tx_rx_roundtrip(f);
}

static void bad_tx_frames_counted(void **state) {
        Fx *f = *state;
        uint8_t frame[64];
        VNetStats st;
        VNetHdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 14, .csum_offset = 16 };

        assert_int_equal(vd_probe(&f->d, ALL_FEATURES, 1, 0), 0);
        make_frame(frame, our_mac, 64, 0);
        /* NEEDS_CSUM without CSUM negotiated; a frame shorter than an Ethernet header. */
        assert_int_equal(vd_send(&f->d, 0, &h, frame, 64), 0);
        memset(&h, 0, sizeof(h));
        assert_int_equal(vd_send(&f->d, 0, &h, frame, 10), 0);
        assert_int_equal(vd_send(&f->d, 0, &h, frame, 64), 0);
        uint8_t got[128];
        assert_int_equal(peer_recv(f, got, sizeof(got)), 64);
        /* Counters are updated before buffers are returned: wait until every one is back. */
        for (int i = 0; i < 200 && f->d.q[1].n_free < f->d.q[1].size; i++) {
                vd_tx_reclaim(&f->d, 0);
                fake_irq_wait(&f->irq, f->d.q[1].vector, 10);
        }
        assert_int_equal(f->d.q[1].n_free, f->d.q[1].size);
        vnet_get_stats(f->n, &st);
        assert_int_equal(st.tx_errors, 2);
        assert_int_equal(st.tx_packets, 1);
        assert_false(vd_status(&f->d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
}

static void header_rules(void **state) {
        const uint64_t csum = F(CSUM) | F(HOST_TSO4);
        VNetHdr h = { 0 };

        assert_int_equal(vnet_check_features(F(CTRL_VQ) | F(CTRL_RX) | F(MQ)), 0);
        assert_int_equal(vnet_check_features(F(MQ)), -EINVAL);
        assert_int_equal(vnet_check_features(F(GUEST_TSO6)), -EINVAL);
        assert_int_equal(vnet_check_features(F(HOST_TSO4)), -EINVAL);
        assert_int_equal(vnet_check_features(F(CSUM) | F(HOST_ECN)), -EINVAL);
        assert_int_equal(vnet_guest_offloads(F(GUEST_CSUM) | F(GUEST_TSO4) | F(GUEST_TSO6)),
                         VNET_OFFLOAD_CSUM | VNET_OFFLOAD_TSO4 | VNET_OFFLOAD_TSO6);

        /* Transmit. */
        h = (VNetHdr) { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID,
                        .csum_start = htole16(34), .csum_offset = htole16(16) };
        assert_int_equal(vnet_tx_hdr_check(csum, &h, 100), 0);
        assert_int_equal(h.flags, VIRTIO_NET_HDR_F_NEEDS_CSUM);
        assert_int_equal(vnet_tx_hdr_check(csum, &h, 51), -EINVAL);      /* checksum field beyond the frame */
        assert_int_equal(vnet_tx_hdr_check(0, &h, 100), -EINVAL);
        h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
        h.gso_size = htole16(1448);
        assert_int_equal(vnet_tx_hdr_check(csum, &h, 100), 0);
        h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
        assert_int_equal(vnet_tx_hdr_check(csum, &h, 100), -EINVAL);
        h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
        assert_int_equal(vnet_tx_hdr_check(csum, &h, 100), -EINVAL);
        h.gso_type = VIRTIO_NET_HDR_GSO_UDP;
        assert_int_equal(vnet_tx_hdr_check(csum, &h, 100), -EINVAL);
        h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
        h.gso_size = 0;
        assert_int_equal(vnet_tx_hdr_check(csum, &h, 100), -EINVAL);

        /* Receive. */
        h = (VNetHdr) { .flags = VIRTIO_NET_HDR_F_DATA_VALID };
        assert_int_equal(vnet_rx_hdr_fix(0, &h), 0);
        assert_int_equal(h.flags, 0);
        h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        assert_int_equal(vnet_rx_hdr_fix(0, &h), -EINVAL);
        assert_int_equal(vnet_rx_hdr_fix(F(GUEST_CSUM), &h), 0);
        h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
        assert_int_equal(vnet_rx_hdr_fix(F(GUEST_CSUM) | F(GUEST_TSO4), &h), -EINVAL);
        assert_int_equal(vnet_rx_hdr_fix(F(GUEST_CSUM) | F(GUEST_TSO6), &h), 0);
}

/* A manual device (no data-path thread) moves buffers only when polled, on the caller's thread. */
static VNet *manual_net;

static int mop_read(void *o, uint64_t off, void *b, size_t l) {
        return virtio_pci_bar_read(vnet_virtio(manual_net), off, b, l);
}

static int mop_write(void *o, uint64_t off, const void *b, size_t l) {
        return virtio_pci_bar_write(vnet_virtio(manual_net), off, b, l);
}

static int mop_wait(void *o, unsigned vector, int ms) {
        return 0;
}

static const VdOps manual_ops = { .read = mop_read, .write = mop_write, .wait_irq = mop_wait };

static void manual_device(void **state) {
        VNetOptions o = { .pairs = 2, .mtu = 1500, .link_up = true, .queue_size = 16, .manual = true };
        FakeMem m;
        FakeIrq irq;
        NetBackend *be;
        NetNullStats st;
        Vd d;
        uint8_t frame[64];
        VNetHdr h = { 0 };
        uint16_t id;
        uint32_t len;
        int posted;
        unsigned rounds = 0, received = 0;

        (void) state;
        fake_mem_init(&m, 0x40000000, 4 << 20);
        fake_irq_init(&irq);
        assert_int_equal(net_null_open(2, 60, &be), 0);
        assert_int_equal(vnet_new(&o, be, &manual_net), 0);
        vnet_attach(manual_net, &m.mem, &irq.ops, &irq);
        vd_init(&d, &manual_ops, NULL, m.host, m.gpa, m.size);
        assert_int_equal(vd_probe(&d, ALL_FEATURES, 1, 0), 0);
        make_frame(frame, our_mac, sizeof(frame), 0);
        assert_int_equal(vd_send(&d, 0, &h, frame, sizeof(frame)), 0);
        posted = vd_rx_post(&d, 0);
        assert_true(posted > 0);

        /* Nothing moves until polled. */
        assert_int_equal(vd_get_used(&d, 1, &id, &len), 0);
        assert_int_equal(vd_get_used(&d, 0, &id, &len), 0);
        assert_true(net_null_get_stats(be, 0, &st));
        assert_int_equal(st.tx_frames, 0);

        while (vnet_poll(manual_net))
                assert_true(++rounds < 100);
        assert_int_equal(vd_get_used(&d, 1, &id, &len), 1);
        while (vd_get_used(&d, 0, &id, &len) == 1)
                received++;
        assert_int_equal(received, posted);
        assert_true(net_null_get_stats(be, 0, &st));
        assert_int_equal(st.tx_frames, 1);
        assert_true(st.rx_frames >= (uint64_t) posted);  /* and one waiting for a buffer */
        assert_false(vd_status(&d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);

        /* Reset: nothing runs any more. */
        assert_int_equal(vd_reset(&d), 0);
        assert_false(vnet_poll(manual_net));
        vnet_free(manual_net);
        fake_irq_fini(&irq);
        fake_mem_fini(&m);
}

/*
 * A control command with no room for its ack breaks the control queue: the
 * device takes nothing more from it until reset (it went on taking chains
 * it never completed, more than the ring holds, and its state then did not
 * load anywhere).
 */
static void ctrl_error_stops_queue(void **state) {
        VNetOptions o = { .pairs = 1, .mtu = 1500, .link_up = true, .queue_size = 16, .manual = true };
        FakeMem m;
        FakeIrq irq;
        NetBackend *be;
        Vd d;
        uint64_t cmd;
        uint32_t len = 2;
        bool w = false;

        (void) state;
        fake_mem_init(&m, 0x40000000, 4 << 20);
        fake_irq_init(&irq);
        assert_int_equal(net_null_open(1, 0, &be), 0);
        assert_int_equal(vnet_new(&o, be, &manual_net), 0);
        vnet_attach(manual_net, &m.mem, &irq.ops, &irq);
        vd_init(&d, &manual_ops, NULL, m.host, m.gpa, m.size);
        assert_int_equal(vd_probe(&d, ALL_FEATURES, 1, 0), 0);
        assert_true(d.ctrl >= 0);
        cmd = vd_alloc(&d, 64, 8);
        for (unsigned i = 0; i < 3; i++) {
                assert_true(vd_add_chain(&d, (unsigned) d.ctrl, &cmd, &len, &w, 1, false) >= 0);
                while (vnet_poll(manual_net))
                        ;
        }
        assert_true(vd_status(&d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        assert_int_equal(virtio_pci_queue(vnet_virtio(manual_net), d.q[d.ctrl].index)->last_avail, 1);
        /* Reset brings it back. */
        assert_int_equal(vd_probe(&d, ALL_FEATURES, 1, 0), 0);
        assert_false(vd_status(&d) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
        vnet_free(manual_net);
        fake_irq_fini(&irq);
        fake_mem_fini(&m);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(mtu_choice),
                cmocka_unit_test_setup_teardown(probe_and_config, setup, teardown),
                cmocka_unit_test_setup_teardown(features_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(msix_vectors, setup, teardown),
                cmocka_unit_test_setup_teardown(split_tx_rx, setup, teardown),
                cmocka_unit_test_setup_teardown(split_indirect_no_event_idx, setup, teardown),
                cmocka_unit_test_setup_teardown(split_chained_tx, setup, teardown),
                cmocka_unit_test_setup_teardown(packed_tx_rx, setup_packed, teardown),
                cmocka_unit_test_setup_teardown(mergeable_rx, setup, teardown),
                cmocka_unit_test_setup_teardown(ctrl_commands, setup, teardown),
                cmocka_unit_test_setup_teardown(link_down_up, setup, teardown),
                cmocka_unit_test_setup_teardown(bad_descriptor_needs_reset, setup, teardown),
                cmocka_unit_test_setup_teardown(bad_tx_frames_counted, setup, teardown),
                cmocka_unit_test(header_rules),
                cmocka_unit_test(manual_device),
                cmocka_unit_test(ctrl_error_stops_queue),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
