/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net migration without a socket: two devices on the same fake
 * guest RAM, driven through the VuDeviceOps/VuMigrationOps the server would
 * call (quiesce, one arc, resume).  The source is saved, the destination
 * restored, and the driver carries on against the destination; streams
 * with bad values (each edited and re-checksummed so only the device's
 * checks can catch it) are refused with the device left reset and stopped.
 * Dirty logging of ring and buffer writes is checked range by range.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake-mem.h"
#include "net/vnet.h"
#include "state/devstate-wire.h"
#include "vfio-user/migration.h"
#include "vfio-user/pci-cfg.h"
#include "vnet-driver.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)
#define TMO 2000
#define WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | F(MAC) | F(STATUS) | F(MTU) | \
              F(CTRL_VQ) | F(CTRL_RX) | F(CTRL_MAC_ADDR) | F(MRG_RXBUF) | VIRTIO_BIT(VIRTIO_F_RING_PACKED))

static const uint8_t cfg_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
static const uint8_t new_mac[6] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
static const uint8_t extra_mac[6] = { 0x52, 0x54, 0x00, 0x99, 0x88, 0x77 };
static const uint8_t other_mac[6] = { 0x52, 0x54, 0x00, 0x01, 0x01, 0x01 };

typedef struct Dev {
        VNet *n;
        VuServerConfig scfg;
        int peer;                       /* the passt side of its backend */
        enum vu_mig_state state;
} Dev;

typedef struct Mx {
        FakeMem m;
        FakeIrq irq;
        Dev src, dst;
        Dev *cur;                       /* the device the driver talks to */
        Vd d;
        bool packed;
} Mx;

static int bar_read(void *o, uint64_t off, void *buf, size_t len) {
        return virtio_pci_bar_read(vnet_virtio(((Mx *) o)->cur->n), off, buf, len);
}

static int bar_write(void *o, uint64_t off, const void *buf, size_t len) {
        return virtio_pci_bar_write(vnet_virtio(((Mx *) o)->cur->n), off, buf, len);
}

static int irq_wait(void *o, unsigned vector, int timeout_ms) {
        return fake_irq_wait(&((Mx *) o)->irq, vector, timeout_ms);
}

static const VdOps mx_ops = { .read = bar_read, .write = bar_write, .wait_irq = irq_wait };

static void dev_new(Mx *x, Dev *d, const char *id, uint16_t mtu) {
        VNetOptions o = { .pairs = 1, .mtu = mtu, .link_up = true, .queue_size = 64, .packed = x->packed,
                          .migration_id = id };
        NetBackend *be;
        int sv[2];

        memcpy(o.mac, cfg_mac, 6);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(net_passt_new(sv[0], &be), 0);
        d->peer = sv[1];
        assert_int_equal(vnet_new(&o, be, &d->n), 0);
        vnet_attach(d->n, &x->m.mem, &x->irq.ops, &x->irq);
        assert_int_equal(vnet_server_config(d->n, &d->scfg), 0);
        assert_non_null(d->scfg.ops->migration);
        d->state = VU_MIG_RUNNING;
}

static void dev_free(Dev *d) {
        if (!d->n)
                return;
        vnet_free(d->n);
        vu_pci_cfg_free(d->scfg.cfg);
        close(d->peer);
        memset(d, 0, sizeof(*d));
}

/* One direct arc, as the server runs it: quiesced around the callback. */
static int arc(Dev *d, enum vu_mig_state to) {
        int r;

        d->scfg.ops->quiesce(d->scfg.opaque);
        r = d->scfg.ops->migration->transition(d->scfg.opaque, d->state, to);
        d->state = r < 0 ? VU_MIG_ERROR : to;
        d->scfg.ops->resume(d->scfg.opaque);
        return r;
}

/* DEVICE_RESET, as the server does it. */
static void dev_reset(Dev *d) {
        d->scfg.ops->quiesce(d->scfg.opaque);
        d->scfg.ops->reset(d->scfg.opaque, VU_RESET_DEVICE);
        d->scfg.ops->resume(d->scfg.opaque);
        d->state = VU_MIG_RUNNING;
}

static int mx_setup(void **state, bool packed) {
        Mx *x = calloc(1, sizeof(*x));

        x->packed = packed;
        fake_mem_init(&x->m, 0x40000000, 32 << 20);
        fake_irq_init(&x->irq);
        dev_new(x, &x->src, "net0", 1500);
        dev_new(x, &x->dst, "net0", 1500);
        x->cur = &x->src;
        vd_init(&x->d, &mx_ops, x, x->m.host, x->m.gpa, x->m.size);
        *state = x;
        return 0;
}

static int setup_split(void **state) {
        return mx_setup(state, false);
}

static int setup_packed(void **state) {
        return mx_setup(state, true);
}

static int teardown(void **state) {
        Mx *x = *state;

        dev_free(&x->src);
        dev_free(&x->dst);
        fake_irq_fini(&x->irq);
        fake_mem_fini(&x->m);
        free(x);
        return 0;
}

/* ---- the passt side ----------------------------------------------------------------- */

static ssize_t peer_recv(int fd, void *buf, size_t cap) {
        uint32_t be_len;
        size_t got = 0, len;
        struct pollfd p = { .fd = fd, .events = POLLIN };

        while (got < 4) {
                if (poll(&p, 1, TMO) <= 0)
                        return -1;
                ssize_t n = read(fd, (uint8_t *) &be_len + got, 4 - got);
                if (n <= 0)
                        return -1;
                got += (size_t) n;
        }
        len = ntohl(be_len);
        if (len > cap)
                return -1;
        for (got = 0; got < len;) {
                if (poll(&p, 1, TMO) <= 0)
                        return -1;
                ssize_t n = read(fd, (uint8_t *) buf + got, len - got);
                if (n <= 0)
                        return -1;
                got += (size_t) n;
        }
        return (ssize_t) len;
}

static void peer_send(int fd, const uint8_t *dst, unsigned seq) {
        uint8_t f[4 + 100];
        uint32_t be_len = htonl(100);

        memcpy(f, &be_len, 4);
        memcpy(f + 4, dst, 6);
        memcpy(f + 10, "\x02\x00\x00\x00\x00\x01", 6);
        f[16] = 0x88;
        f[17] = 0xb5;
        for (unsigned i = 18; i < sizeof(f); i++)
                f[i] = (uint8_t) (seq + i);
        assert_int_equal(write(fd, f, sizeof(f)), (ssize_t) sizeof(f));
}

/* A frame from the peer reaches the driver intact (or, expect false, never does). */
static void rx_one(Mx *x, int peer, const uint8_t *dst, unsigned seq, bool expect) {
        uint8_t buf[2048];
        VNetHdr h;
        ssize_t n;

        peer_send(peer, dst, seq);
        n = vd_recv(&x->d, 0, &h, buf, sizeof(buf), expect ? TMO : 200);
        if (!expect) {
                assert_int_equal(n, -ETIMEDOUT);
                return;
        }
        assert_int_equal(n, 100);
        assert_memory_equal(buf, dst, 6);
        for (unsigned i = 14; i < 100; i++)
                assert_int_equal(buf[i], (uint8_t) (seq + i + 4));
}

/* A frame from the driver reaches the peer intact. */
static void tx_one(Mx *x, int peer, unsigned seq) {
        uint8_t f[80], got[200];
        VNetHdr h = { 0 };

        memcpy(f, other_mac, 6);
        memcpy(f + 6, new_mac, 6);
        f[12] = 0x88;
        f[13] = 0xb5;
        for (unsigned i = 14; i < sizeof(f); i++)
                f[i] = (uint8_t) (seq * 7 + i);
        assert_int_equal(vd_send(&x->d, 0, &h, f, sizeof(f)), 0);
        assert_int_equal(peer_recv(peer, got, sizeof(got)), (ssize_t) sizeof(f));
        assert_memory_equal(got, f, sizeof(f));
}

/* Probe, give the device a MAC and a filter, and move frames so ring positions are not at 0. */
static void bring_up(Mx *x, unsigned frames) {
        uint8_t tables[4 + 6 + 4];
        uint8_t off = 0;

        assert_int_equal(vd_probe(&x->d, WANT, 1, 0), 0);
        assert_int_equal(virtio_has(x->d.features, VIRTIO_F_RING_PACKED), x->packed);
        vd_rx_post(&x->d, 0);
        assert_int_equal(vd_ctrl(&x->d, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, new_mac, 6, TMO),
                         VIRTIO_NET_OK);
        /* Unicast table: one extra address; no multicast; promiscuous off. */
        memcpy(tables, (uint32_t[]) { htole32(1) }, 4);
        memcpy(tables + 4, extra_mac, 6);
        memset(tables + 10, 0, 4);
        assert_int_equal(vd_ctrl(&x->d, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, tables, sizeof(tables),
                                 TMO),
                         VIRTIO_NET_OK);
        assert_int_equal(vd_ctrl(&x->d, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1, TMO), VIRTIO_NET_OK);
        for (unsigned i = 0; i < frames; i++) {
                rx_one(x, x->src.peer, i % 2 ? new_mac : extra_mac, i, true);
                tx_one(x, x->src.peer, i);
        }
        rx_one(x, x->src.peer, other_mac, 999, false);  /* filtered */
}

/* The source's whole stream, after RUNNING → PRE_COPY (empty) → STOP_COPY. */
static GByteArray *save_source(Mx *x) {
        GByteArray *s = g_byte_array_new();
        const VuMigrationOps *m = x->src.scfg.ops->migration;
        uint8_t buf[97];
        ssize_t n;

        assert_int_equal(arc(&x->src, VU_MIG_PRE_COPY), 0);
        assert_int_equal(m->read_data(x->src.scfg.opaque, buf, sizeof(buf)), 0);
        assert_int_equal(arc(&x->src, VU_MIG_STOP_COPY), 0);
        assert_false(virtio_pci_may_run(vnet_virtio(x->src.n)));
        while ((n = m->read_data(x->src.scfg.opaque, buf, sizeof(buf))) > 0)
                g_byte_array_append(s, buf, (guint) n);
        assert_int_equal(n, 0);
        return s;
}

/* Feed a stream to the destination: RUNNING → STOP → RESUMING, write, RESUMING → STOP.  The first error. */
static int restore(Dev *d, const uint8_t *s, size_t len, size_t piece) {
        const VuMigrationOps *m = d->scfg.ops->migration;
        int r;

        assert_int_equal(arc(d, VU_MIG_STOP), 0);
        assert_int_equal(arc(d, VU_MIG_RESUMING), 0);
        for (size_t off = 0; off < len; off += piece) {
                r = m->write_data(d->scfg.opaque, s + off, MIN(piece, len - off));
                if (r < 0) {
                        assert_int_equal(arc(d, VU_MIG_STOP), r);       /* the device stays refused */
                        return r;
                }
        }
        return arc(d, VU_MIG_STOP);
}

static void expect_queues_equal(Mx *x) {
        VirtioPci *a = vnet_virtio(x->src.n), *b = vnet_virtio(x->dst.n);

        for (unsigned i = 0; i < virtio_pci_num_queues(a); i++) {
                VirtQueue *qa = virtio_pci_queue(a, i), *qb = virtio_pci_queue(b, i);

                assert_int_equal(qa->started, qb->started);
                assert_int_equal(qa->size, qb->size);
                assert_int_equal(qa->last_avail, qb->last_avail);
                assert_int_equal(qa->used_idx, qb->used_idx);
                assert_int_equal(qa->avail_wrap, qb->avail_wrap);
                assert_int_equal(qa->used_wrap, qb->used_wrap);
                assert_int_equal(qa->msix_vector, qb->msix_vector);
        }
        assert_int_equal(virtio_pci_status(a), virtio_pci_status(b));
        assert_int_equal(virtio_pci_driver_features(a), virtio_pci_driver_features(b));
}

static void migrate_and_continue(Mx *x, unsigned frames) {
        g_autoptr(GByteArray) s = NULL;
        uint8_t mac[6];

        bring_up(x, frames);
        s = save_source(x);
        assert_int_equal(restore(&x->dst, s->data, s->len, 61), 0);
        assert_null(vnet_migration_error(x->dst.n));
        expect_queues_equal(x);
        assert_false(virtio_pci_may_run(vnet_virtio(x->dst.n)));
        assert_int_equal(arc(&x->dst, VU_MIG_RUNNING), 0);
        assert_true(virtio_pci_may_run(vnet_virtio(x->dst.n)));

        /* The driver goes on against the destination: MAC, filter and rings as they were. */
        x->cur = &x->dst;
        vd_cfg_read(&x->d, offsetof(VNetConfigSpace, mac), mac, 6);
        assert_memory_equal(mac, new_mac, 6);
        for (unsigned i = 0; i < frames; i++) {
                rx_one(x, x->dst.peer, i % 2 ? new_mac : extra_mac, 500 + i, true);
                tx_one(x, x->dst.peer, 500 + i);
        }
        rx_one(x, x->dst.peer, other_mac, 998, false);
        assert_int_equal(vd_ctrl(&x->d, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, (uint8_t[]) { 1 }, 1, TMO),
                         VIRTIO_NET_OK);
        rx_one(x, x->dst.peer, other_mac, 997, true);
}

static void split_round_trip(void **state) {
        migrate_and_continue(*state, 40);
}

/* 100 frames each way on 64-entry packed rings: the wrap counters have flipped, and moved across. */
static void packed_round_trip(void **state) {
        Mx *x = *state;

        migrate_and_continue(x, 100);
        assert_false(virtio_pci_queue(vnet_virtio(x->dst.n), 0)->used_wrap ==
                     virtio_pci_queue(vnet_virtio(x->dst.n), 0)->avail_wrap &&
                     virtio_pci_queue(vnet_virtio(x->dst.n), 0)->used_idx == 0);
}

/* A device that was never started migrates too (nothing but registers). */
static void idle_device(void **state) {
        Mx *x = *state;
        g_autoptr(GByteArray) s = NULL;

        s = save_source(x);
        assert_int_equal(restore(&x->dst, s->data, s->len, s->len), 0);
        assert_int_equal(arc(&x->dst, VU_MIG_RUNNING), 0);
        x->cur = &x->dst;
        assert_int_equal(vd_probe(&x->d, WANT, 1, 0), 0);
        vd_rx_post(&x->d, 0);
        rx_one(x, x->dst.peer, cfg_mac, 1, true);
}

static void reg_write(Dev *d, uint32_t off, uint32_t v, size_t len) {
        v = htole32(v);
        assert_int_equal(virtio_pci_bar_write(vnet_virtio(d->n), off, &v, len), 0);
}

static uint32_t reg_read(Dev *d, uint32_t off, size_t len) {
        uint32_t v = 0;

        assert_int_equal(virtio_pci_bar_read(vnet_virtio(d->n), off, &v, len), 0);
        return le32toh(v);
}

/*
 * A driver stopped between writing its features and FEATURES_OK: what it
 * wrote, offered or not, is not negotiated yet and migrates as it is (a
 * device refused its state for features it never accepted).
 */
static void features_not_yet_accepted(void **state) {
        Mx *x = *state;
        g_autoptr(GByteArray) s = NULL;
        const uint32_t hi = 0x40000000 | (uint32_t) (WANT >> 32);

        reg_write(&x->src, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER, 1);
        reg_write(&x->src, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
        reg_write(&x->src, VIRTIO_PCI_COMMON_GF, hi, 4);
        s = save_source(x);
        assert_int_equal(restore(&x->dst, s->data, s->len, 61), 0);
        assert_int_equal(arc(&x->dst, VU_MIG_RUNNING), 0);
        assert_int_equal(reg_read(&x->dst, VIRTIO_PCI_COMMON_STATUS, 1), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        reg_write(&x->dst, VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
        assert_int_equal(reg_read(&x->dst, VIRTIO_PCI_COMMON_GF, 4), hi);
        /* Still not acceptable: FEATURES_OK is refused there as it would have been here. */
        reg_write(&x->dst, VIRTIO_PCI_COMMON_STATUS,
                  VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK, 1);
        assert_false(reg_read(&x->dst, VIRTIO_PCI_COMMON_STATUS, 1) & VIRTIO_STATUS_FEATURES_OK);
}

/* Status bits the specification does not define are not kept: the state still migrates. */
static void status_undefined_bits(void **state) {
        Mx *x = *state;
        g_autoptr(GByteArray) s = NULL;

        reg_write(&x->src, VIRTIO_PCI_COMMON_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | 0x30, 1);
        assert_int_equal(reg_read(&x->src, VIRTIO_PCI_COMMON_STATUS, 1),
                         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
        s = save_source(x);
        assert_int_equal(restore(&x->dst, s->data, s->len, 61), 0);
        assert_int_equal(arc(&x->dst, VU_MIG_RUNNING), 0);
        assert_int_equal(reg_read(&x->dst, VIRTIO_PCI_COMMON_STATUS, 1),
                         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
}

/* ---- refusals ----------------------------------------------------------------------------- */

/* Offset of the value of field in section (sec, instance) of a raw stream, or 0. */
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

/* A copy of s with one field's value replaced (same size) and the checksum made right again. */
static GByteArray *edit(const GByteArray *s, uint16_t sec, uint32_t inst, uint16_t field, const void *v, size_t len) {
        GByteArray *c = g_byte_array_new();
        size_t off = find_field(s, sec, inst, field);

        assert_true(off > 0);
        g_byte_array_append(c, s->data, s->len);
        memcpy(c->data + off, v, len);
        fix_crc(c);
        return c;
}

/* The destination refuses: errno, message, device reset and stopped; after a reset it works. */
static void expect_refused(Mx *x, GByteArray *s, int err, const char *needle) {
        const char *msg;

        assert_int_equal(restore(&x->dst, s->data, s->len, 50), err);
        assert_int_equal(x->dst.state, VU_MIG_ERROR);
        msg = vnet_migration_error(x->dst.n);
        assert_non_null(msg);
        if (!strstr(msg, needle))
                fail_msg("\"%s\" lacks \"%s\"", msg, needle);
        assert_int_equal(virtio_pci_status(vnet_virtio(x->dst.n)), 0);
        assert_false(virtio_pci_may_run(vnet_virtio(x->dst.n)));
        for (unsigned i = 0; i < virtio_pci_num_queues(vnet_virtio(x->dst.n)); i++)
                assert_false(virtio_pci_queue(vnet_virtio(x->dst.n), i)->started);
        dev_reset(&x->dst);
        assert_true(virtio_pci_may_run(vnet_virtio(x->dst.n)));
        g_byte_array_unref(s);
}

/* Field numbers of the stream (virtio-pci-state.c, vnet-state.c): part of the format. */
enum { CM_DRIVER_FEATURES = 1, CM_STATUS = 2 };
enum { Q_SIZE = 1, Q_MSIX_VECTOR = 2, Q_DESC = 4, Q_LAST_AVAIL = 9, Q_USED_IDX = 11 };
enum { NT_MAC = 2, NT_STATUS = 3, NT_ACTIVE_PAIRS = 5 };
#define VNET_SEC_NET (VIRTIO_STATE_SEC_DEVICE + 1)

static void refusals(void **state) {
        Mx *x = *state;
        g_autoptr(GByteArray) s = NULL;
        uint16_t v16;
        uint64_t v64;
        uint8_t v8;

        bring_up(x, 3);
        s = save_source(x);

        v16 = 0;
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 0, Q_SIZE, &v16, 2), -EINVAL, "size 0 is not valid");
        if (!x->packed) {
                v16 = htole16(48);
                expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 0, Q_SIZE, &v16, 2), -EINVAL,
                               "size 48 is not valid for a split ring");
        }
        v16 = htole16(128);
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 0, Q_SIZE, &v16, 2), -EINVAL, "above the maximum 64");
        v64 = htole64(0x1000);
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 1, Q_DESC, &v64, 8), -EFAULT, "not in guest memory");
        v64 = htole64(x->m.gpa + x->m.size - 16);
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 1, Q_DESC, &v64, 8), -EFAULT, "descriptor ring");
        v64 = htole64(0x4000000000000000ull | WANT);
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_COMMON, 0, CM_DRIVER_FEATURES, &v64, 8), -EINVAL,
                       "does not offer");
        v8 = 0x2f;
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_COMMON, 0, CM_STATUS, &v8, 1), -EINVAL, "undefined bits");
        v8 = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_COMMON, 0, CM_STATUS, &v8, 1), -EINVAL, "started with status");
        v16 = htole16(77);
        expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 2, Q_MSIX_VECTOR, &v16, 2), -EINVAL, "vector 77");
        v16 = htole16(2);
        expect_refused(x, edit(s, VNET_SEC_NET, 0, NT_ACTIVE_PAIRS, &v16, 2), -EINVAL, "queue pairs in use");
        v16 = htole16(0x80);
        expect_refused(x, edit(s, VNET_SEC_NET, 0, NT_STATUS, &v16, 2), -EINVAL, "status 0x80");
        expect_refused(x, edit(s, VNET_SEC_NET, 0, NT_MAC, "\x01\x02\x03\x04\x05\x06", 6), -EINVAL,
                       "multicast station address");
        if (x->packed) {
                v16 = htole16(64);
                expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 0, Q_LAST_AVAIL, &v16, 2), -EINVAL,
                               "outside 64 slots");
        }
        /* More completed than taken: the used index one past the last buffer taken. */
        {
                const VirtQueue *q = virtio_pci_queue(vnet_virtio(x->src.n), 1);
                v16 = htole16((uint16_t) ((q->used_idx + 1) % (x->packed ? q->size : 0x10000)));
                expect_refused(x, edit(s, VIRTIO_STATE_SEC_QUEUE, 1, Q_USED_IDX, &v16, 2), -EINVAL,
                               "completed, in a ring of 64");
        }

        /* Format-level damage: truncated, corrupted, another version, another device type. */
        {
                GByteArray *t = g_byte_array_new();
                g_byte_array_append(t, s->data, s->len - 9);
                expect_refused(x, t, -ENODATA, "truncated");
        }
        {
                /* A flipped bit inside a value: the framing is intact, only the checksum can tell. */
                GByteArray *c = g_byte_array_new();
                g_byte_array_append(c, s->data, s->len);
                c->data[find_field(s, VNET_SEC_NET, 0, NT_MAC) + 3] ^= 0x20;
                expect_refused(x, c, -EBADMSG, "checksum mismatch");
        }
        {
                GByteArray *c = g_byte_array_new();
                g_byte_array_append(c, s->data, s->len);
                c->data[DEVSTATE_MAGIC_LEN] = 2;
                fix_crc(c);
                expect_refused(x, c, -EPROTONOSUPPORT, "version 2.0");
        }
        {
                GByteArray *c = g_byte_array_new();
                g_byte_array_append(c, s->data, s->len);
                memcpy(c->data + DEVSTATE_HDR_FIXED, "virtio-blk", 10);
                fix_crc(c);
                expect_refused(x, c, -ENODEV, "type 'virtio-blk'");
        }

        /* A destination with another identity or other options. */
        dev_free(&x->dst);
        dev_new(x, &x->dst, "net1", 1500);
        expect_refused(x, g_byte_array_ref(s), -ENODEV, "the device 'net0', this device is 'net1'");
        dev_free(&x->dst);
        dev_new(x, &x->dst, "net0", 9000);
        expect_refused(x, g_byte_array_ref(s), -EINVAL, "MTU 1500");

        /* The source still runs after all that: back to RUNNING, frames flow. */
        assert_int_equal(arc(&x->src, VU_MIG_STOP), 0);
        assert_int_equal(arc(&x->src, VU_MIG_RUNNING), 0);
        rx_one(x, x->src.peer, new_mac, 42, true);
        tx_one(x, x->src.peer, 42);

        /* And the intact stream into a fresh destination still works. */
        dev_free(&x->dst);
        dev_new(x, &x->dst, "net0", 1500);
        assert_int_equal(restore(&x->dst, s->data, s->len, s->len), 0);
}

/* Reach state st from RUNNING along direct arcs. */
static void reach(Dev *d, enum vu_mig_state st) {
        if (st == VU_MIG_RUNNING)
                return;
        if (st == VU_MIG_PRE_COPY) {
                assert_int_equal(arc(d, VU_MIG_PRE_COPY), 0);
                return;
        }
        assert_int_equal(arc(d, VU_MIG_STOP), 0);
        if (st != VU_MIG_STOP)
                assert_int_equal(arc(d, st), 0);
}

/*
 * Every direct arc the server may call (it breaks other transitions into
 * these): the device takes each one and holds or releases its data path.
 * RESUMING → STOP with nothing written is a truncated stream.
 */
static void arcs(void **state) {
        Mx *x = *state;
        static const struct {
                enum vu_mig_state from, to;
        } direct[] = {
                { VU_MIG_RUNNING, VU_MIG_STOP },        { VU_MIG_RUNNING, VU_MIG_PRE_COPY },
                { VU_MIG_STOP, VU_MIG_RUNNING },        { VU_MIG_STOP, VU_MIG_STOP_COPY },
                { VU_MIG_STOP, VU_MIG_RESUMING },       { VU_MIG_PRE_COPY, VU_MIG_RUNNING },
                { VU_MIG_PRE_COPY, VU_MIG_STOP_COPY },  { VU_MIG_STOP_COPY, VU_MIG_STOP },
                { VU_MIG_RESUMING, VU_MIG_STOP },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(direct); i++) {
                enum vu_mig_state to = direct[i].to;
                int r;

                bring_up(x, 1);
                reach(&x->src, direct[i].from);
                r = arc(&x->src, to);
                assert_int_equal(r, direct[i].from == VU_MIG_RESUMING ? -ENODATA : 0);
                assert_int_equal(virtio_pci_may_run(vnet_virtio(x->src.n)),
                                 r == 0 && (to == VU_MIG_RUNNING || to == VU_MIG_PRE_COPY));
                assert_int_equal(virtio_pci_migration_state(vnet_virtio(x->src.n)), r == 0 ? to : VU_MIG_ERROR);
                /* Data flows again in the running states, after a reset otherwise. */
                if (r < 0 || (to != VU_MIG_RUNNING && to != VU_MIG_PRE_COPY))
                        dev_reset(&x->src);
                if (virtio_pci_status(vnet_virtio(x->src.n)) & VIRTIO_STATUS_DRIVER_OK) {
                        rx_one(x, x->src.peer, new_mac, (unsigned) i, true);
                        tx_one(x, x->src.peer, (unsigned) i);
                }
                dev_reset(&x->src);
        }
}

/* ---- dirty logging: ring and buffer writes are reported after they are made ---------------------- */

static void dirty_rings(void **state) {
        Mx *x = *state;
        VdQueue *rxq, *txq;

        assert_int_equal(vd_probe(&x->d, WANT & ~(F(CTRL_VQ) | F(CTRL_RX) | F(CTRL_MAC_ADDR)), 1, 0), 0);
        vd_rx_post(&x->d, 0);
        rxq = &x->d.q[0];
        txq = &x->d.q[1];
        for (unsigned i = 0; i < 5; i++) {
                unsigned before = rxq->last_used;
                uint16_t id;
                uint32_t len;

                fake_mem_log(&x->m, true);
                peer_send(x->src.peer, cfg_mac, i);
                assert_int_equal(vd_wait_used(&x->d, 0, &id, &len, TMO), 1);
                assert_int_equal(len, VNET_HDR_LEN + 100);
                /* The used element or descriptor, the used index, and the buffer the frame went to. */
                if (x->packed) {
                        assert_true(fake_mem_logged(&x->m, rxq->desc_gpa + 16ull * before, 16));
                } else {
                        assert_true(fake_mem_logged(&x->m, rxq->dev_gpa + 2, 2));
                        assert_true(fake_mem_logged(&x->m, rxq->dev_gpa + 4 + 8ull * (before & (rxq->size - 1)), 8));
                }
                assert_true(fake_mem_logged(&x->m, rxq->buf_gpa + (uint64_t) id * VD_BUF_LEN, len));
                /* Reported after being written: a report taken in between cannot lose the frame. */
                assert_true(fake_mem_logged_after_write(&x->m, rxq->buf_gpa + (uint64_t) id * VD_BUF_LEN, len));
                if (x->packed)
                        assert_true(fake_mem_logged_after_write(&x->m, rxq->desc_gpa + 16ull * before, 16));
                else
                        assert_true(fake_mem_logged_after_write(&x->m, rxq->dev_gpa + 2, 2) &&
                                    fake_mem_logged_after_write(&x->m, rxq->dev_gpa + 4 + 8ull * (before & (rxq->size - 1)),
                                                                8));
                /* Nothing the device only reads: the available ring, other buffers. */
                assert_false(fake_mem_logged(&x->m, rxq->drv_gpa, 2));
                assert_false(fake_mem_logged(&x->m, rxq->buf_gpa + (uint64_t) ((id + 1) % rxq->size) * VD_BUF_LEN, 1));
                fake_mem_log(&x->m, false);
                vd_rx_post(&x->d, 0);
        }
        /* Transmit: only the used ring (split) or the descriptor written back (packed), never the frame. */
        fake_mem_log(&x->m, true);
        {
                while (vd_tx_reclaim(&x->d, 0) > 0)     /* earlier frames' completions, if still unreaped */
                        ;
                unsigned before = txq->last_used;
                tx_one(x, x->src.peer, 1);
                /* The device completes in order: our frame's used element is the last one published. */
                unsigned reaped = 0;
                for (int quiet = 0; reaped == 0 || quiet < 5; ) {
                        int n = vd_tx_reclaim(&x->d, 0);
                        reaped += (unsigned) n;
                        quiet = n ? 0 : quiet + 1;
                        g_usleep(1000);
                }
                if (x->packed)
                        assert_true(fake_mem_logged(&x->m, txq->desc_gpa + 16ull * before, 16));
                else
                        assert_true(fake_mem_logged(&x->m, txq->dev_gpa + 4 +
                                                    8ull * ((uint16_t) (txq->last_used - 1) & (txq->size - 1)), 8));
                assert_false(fake_mem_logged(&x->m, txq->buf_gpa, 1));
        }
        fake_mem_log(&x->m, false);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(split_round_trip, setup_split, teardown),
                cmocka_unit_test_setup_teardown(packed_round_trip, setup_packed, teardown),
                cmocka_unit_test_setup_teardown(idle_device, setup_split, teardown),
                cmocka_unit_test_setup_teardown(features_not_yet_accepted, setup_split, teardown),
                cmocka_unit_test_setup_teardown(status_undefined_bits, setup_split, teardown),
                cmocka_unit_test_setup_teardown(refusals, setup_split, teardown),
                cmocka_unit_test_setup_teardown(refusals, setup_packed, teardown),
                cmocka_unit_test_setup_teardown(arcs, setup_split, teardown),
                cmocka_unit_test_setup_teardown(dirty_rings, setup_split, teardown),
                cmocka_unit_test_setup_teardown(dirty_rings, setup_packed, teardown),
        };

        return cmocka_run_group_tests_name("vnet-state", tests, NULL, NULL);
}
