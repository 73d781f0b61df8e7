/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * net-io [--migratable] SOCKET GUEST_IP PEER_IP: a VMM whose guest keeps
 * traffic flowing through a virtio-net device that vfud-worker serves.  It
 * connects as QEMU would (our vfio-user client, guest RAM in a memfd),
 * brings the device up like Linux's virtio_net (every queue pair the device
 * offers, the control queue, VQ_PAIRS_SET), learns the peer's MAC by ARP,
 * then pings PEER_IP over and over: each echo request carries a payload
 * whose length and bytes derive from its sequence number, and a reply
 * counts only when it is that request's, byte for byte.  ARP requests for
 * GUEST_IP are answered as a guest's stack does.  A request whose reply
 * does not come within a short while is counted lost (and resent as a new
 * request), not an error: frames on their way during a hand-over may be
 * dropped; a reply that comes back different is an error.
 *
 * --migratable: a VMM that migrates (it asks for the MIGRATION feature right
 * after connecting, unlike QEMU 11), taking commands on stdin, one per line:
 *   migrate SOCKET  live-migrate to the device listening on SOCKET (the same
 *                   guest RAM): PRE_COPY while the guest keeps pinging,
 *                   requests sent without waiting, STOP_COPY and the whole
 *                   state, RESUMING there, run there, stop here, announce
 *                   the guest there (gratuitous ARP) and go on there; prints
 *                   "migrated BYTES"
 *   cancel          save the state, then resume here; "cancelled"
 * A destination that does not take the state: the device resumes here,
 * "refused", and it counts as an error.
 *
 * Prints "ready" after the first verified reply, "ops N lost L" every 20
 * verified replies (N counts from the start), and "ok N ERRORS" when its
 * stdin closes, or as soon as no reply came for 10 s (an error).  Exit
 * status 0 when every command succeeded, every reply matched, and replies
 * came after the last command.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "frames.h"
#include "vfio-user/client.h"
#include "vfio-user/migration.h"
#include "vmm-mig.h"
#include "vnet-driver.h"

#define GPA 0x100000000ull
#define RAM (16ull << 20)
#define QSIZE 256
#define REPLY_MS 300            /* a reply later than this is counted lost */
#define STALL_USEC (10 * G_USEC_PER_SEC)     /* no verified reply for this long: the traffic stopped */
#define ECHO_ID 0x7646
#define MAX_VEC 16
#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)
#define WANT (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | \
              F(MAC) | F(STATUS) | F(MTU) | F(MRG_RXBUF) | F(CTRL_VQ) | F(CTRL_RX) | F(MQ) | F(GUEST_ANNOUNCE))

typedef struct Vmm {
        VuClient *c;
        VuGuestRam ram;
        int irq[MAX_VEC];
        unsigned nvec;
        Vd d;
        FrameAddr me, peer;
        uint16_t seq;
        unsigned long replies, lost, errors;
        unsigned long since_command;    /* verified replies since the last command */
        unsigned long next_report;
        gint64 last_reply;              /* monotonic time of the last verified reply */
        uint8_t buf[65536];
} Vmm;

/* ---- the device through the vfio-user client: BAR 0, MSI-X eventfds ---- */

static int c_read(void *o, uint64_t off, void *buf, size_t len) {
        return vu_client_region_read(((Vmm *) o)->c, 0, off, buf, (uint32_t) len);
}

static int c_write(void *o, uint64_t off, const void *buf, size_t len) {
        return vu_client_region_write(((Vmm *) o)->c, 0, off, buf, (uint32_t) len, true);
}

static int c_wait(void *o, unsigned vector, int ms) {
        Vmm *v = o;

        return vector < v->nvec ? vu_client_wait_irq(v->irq[vector], ms) : 0;
}

static const VdOps client_ops = { .read = c_read, .write = c_write, .wait_irq = c_wait };

/* The MSI-X table size (§6.8.2 Message Control), at most MAX_VEC; or -errno. */
static int msix_vectors(VuClient *c) {
        uint16_t ctl = 0;
        int cap = vu_client_find_cap(c, 0x11), r;

        if (cap < 0)
                return cap;
        if ((r = vu_client_region_read(c, VU_PCI_CONFIG_REGION, (uint64_t) cap + 2, &ctl, 2)) < 0)
                return r;
        return (int) MIN((le16toh(ctl) & 0x7ffu) + 1u, (unsigned) MAX_VEC);
}

/* PCI identity as Linux's virtio_pci binds it (1af4:1041), memory space and bus master on, MSI-X. */
static int vmm_attach(VuClient *c, unsigned nvec, int *irq) {
        uint32_t id = 0;
        uint16_t cmd = 0x6;
        int r;

        if ((r = vu_client_region_read(c, VU_PCI_CONFIG_REGION, 0, &id, 4)) < 0)
                return r;
        if (le32toh(id) != 0x10411af4)
                return -ENODEV;
        if ((r = vu_client_region_write(c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false)) < 0)
                return r;
        return vu_client_enable_msix(c, nvec, irq);
}

/* ---- the guest ---- */

static void send_frame_on(Vmm *v, unsigned pair, const void *f, size_t len) {
        VNetHdr h = { 0 };

        vd_tx_reclaim(&v->d, pair);
        for (int i = 0; i < 100 && vd_send(&v->d, pair, &h, f, len) == -ENOSPC; i++) {
                g_usleep(1000);
                vd_tx_reclaim(&v->d, pair);
        }
}

static void send_frame(Vmm *v, const void *f, size_t len) {
        send_frame_on(v, 0, f, len);
}

/* The echo payload of request seq: 16 to 1400 bytes, every byte derived from seq. */
static size_t echo_payload(uint16_t seq, uint8_t *p) {
        size_t len = 16 + (seq * 97u) % 1385u;

        p[0] = (uint8_t) (seq >> 8);
        p[1] = (uint8_t) seq;
        for (size_t i = 2; i < len; i++)
                p[i] = (uint8_t) (seq * 31u + i * 7u + (i >> 8));
        return len;
}

static void send_echo(Vmm *v, uint16_t seq) {
        uint8_t f[1600], data[1400];
        size_t len = echo_payload(seq, data);

        /* over every pair's transmit queue in turn */
        send_frame_on(v, seq % v->d.pairs, f, frame_icmp_echo(f, &v->me, &v->peer, ECHO_ID, seq, data, len));
}

/* A gratuitous ARP: where the guest is now. */
static void announce(Vmm *v) {
        uint8_t f[64];

        send_frame(v, f, frame_arp_request(f, &v->me, v->me.ip));
}

/*
 * One received frame, as the guest's stack takes it: ARP requests for us
 * answered, ARP replies from the peer learnt, echo replies checked.  Returns
 * the sequence number of a verified echo reply, or -1.
 */
static int guest_input(Vmm *v, size_t n, const VNetHdr *hdr) {
        bool partial = hdr->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM;
        uint8_t want[1400];
        FrameInfo fi;
        uint16_t seq;
        size_t len;

        if (!frame_parse(v->buf, n, partial, le16toh(hdr->csum_start), le16toh(hdr->csum_offset), &fi))
                return -1;
        if (fi.ethertype == ETH_P_ARP_) {
                if (fi.arp_op == 1 && fi.arp_tip == v->me.ip && fi.arp_sip != v->me.ip) {
                        FrameAddr asker = { .ip = fi.arp_sip };
                        uint8_t reply[64];

                        memcpy(asker.mac, fi.src_mac, 6);
                        send_frame(v, reply, frame_arp_reply(reply, &v->me, &asker));
                } else if (fi.arp_op == 2 && fi.arp_sip == v->peer.ip) {
                        memcpy(v->peer.mac, fi.src_mac, 6);
                }
                return -1;
        }
        if (fi.ethertype != ETH_P_IP_ || fi.proto != 1 || fi.icmp_type != 0 || fi.saddr != v->peer.ip ||
            fi.daddr != v->me.ip)
                return -1;
        if (!fi.ip_csum_ok || !fi.l4_csum_ok || fi.payload_len < 2) {
                fprintf(stderr, "net-io: an echo reply arrived damaged (checksums ip %d icmp %d, %zu bytes)\n",
                        fi.ip_csum_ok, fi.l4_csum_ok, fi.payload_len);
                v->errors++;
                return -1;
        }
        seq = (uint16_t) (fi.payload[0] << 8 | fi.payload[1]);
        len = echo_payload(seq, want);
        if (fi.payload_len != len || memcmp(fi.payload, want, len) != 0) {
                fprintf(stderr, "net-io: the echo reply for request %u has %zu bytes that differ from the %zu sent\n",
                        seq, fi.payload_len, len);
                v->errors++;
                return -1;
        }
        return seq;
}

/* Receive on every pair until the reply to seq came (seq < 0: the peer's MAC is known) or ms passed. */
static bool wait_reply(Vmm *v, int seq, int ms) {
        gint64 end = g_get_monotonic_time() + (gint64) ms * 1000;

        do {
                for (unsigned p = 0; p < v->d.pairs; p++) {
                        VNetHdr hdr;
                        ssize_t n = vd_recv(&v->d, p, &hdr, v->buf, sizeof(v->buf), 2);

                        if (n > 0 && guest_input(v, (size_t) n, &hdr) == seq && seq >= 0)
                                return true;
                        if (seq < 0 && memcmp(v->peer.mac, "\0\0\0\0\0\0", 6) != 0)
                                return true;
                }
                for (unsigned p = 0; p < v->d.pairs; p++)
                        vd_tx_reclaim(&v->d, p);
        } while (g_get_monotonic_time() < end);
        return false;
}

/* Who has PEER_IP?  0, or -ETIMEDOUT. */
static int arp_peer(Vmm *v) {
        static const uint8_t zero[6];
        uint8_t f[64];

        memset(v->peer.mac, 0, 6);
        for (int i = 0; i < 20 && memcmp(v->peer.mac, zero, 6) == 0; i++) {
                send_frame(v, f, frame_arp_request(f, &v->me, v->peer.ip));
                wait_reply(v, -1, 200);
        }
        return memcmp(v->peer.mac, zero, 6) == 0 ? -ETIMEDOUT : 0;
}

/* One echo round trip; counts what happened. */
static void ping_once(Vmm *v) {
        uint16_t seq = ++v->seq;

        send_echo(v, seq);
        if (!wait_reply(v, seq, REPLY_MS)) {
                v->lost++;
                return;
        }
        v->replies++;
        v->since_command++;
        v->last_reply = g_get_monotonic_time();
        if (v->replies >= v->next_report) {
                printf("ops %lu lost %lu\n", v->replies, v->lost);
                fflush(stdout);
                v->next_report += 20;
        }
}

static int guest_up(Vmm *v) {
        uint16_t max = 1, pairs;
        int r;

        vd_init(&v->d, &client_ops, v, v->ram.host, GPA, RAM);
        /* Every pair the device offers, as Linux does (up to its CPUs; our VMM has enough). */
        if (virtio_has(vd_device_features(&v->d), VIRTIO_NET_F_MQ) &&
            vd_cfg_read(&v->d, offsetof(VNetConfigSpace, max_virtqueue_pairs), &max, 2) == 0)
                max = MAX(le16toh(max), 1);
        if (2u * max + 1 > v->nvec) {
                fprintf(stderr, "net-io: %u queue pairs need more MSI-X vectors than the device's %u\n", max, v->nvec);
                return -ENOSPC;
        }
        if ((r = vd_probe(&v->d, WANT, max, QSIZE)) < 0)
                return r;
        if ((r = vd_cfg_read(&v->d, offsetof(VNetConfigSpace, mac), v->me.mac, 6)) < 0)
                return r;
        for (unsigned p = 0; p < v->d.pairs; p++)
                vd_rx_post(&v->d, p);
        if (v->d.pairs > 1) {
                pairs = htole16((uint16_t) v->d.pairs);
                if (vd_ctrl(&v->d, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, 3000) !=
                    VIRTIO_NET_OK)
                        return -EIO;
        }
        return arp_peer(v);
}

/* After a hand-over: a guest told to announce itself (GUEST_ANNOUNCE) does, and acknowledges it. */
static void announce_after_move(Vmm *v) {
        uint16_t status = 0;

        announce(v);
        if (virtio_has(v->d.features, VIRTIO_NET_F_GUEST_ANNOUNCE) &&
            vd_cfg_read(&v->d, offsetof(VNetConfigSpace, status), &status, 2) == 0 &&
            (le16toh(status) & VIRTIO_NET_S_ANNOUNCE) &&
            vd_ctrl(&v->d, VIRTIO_NET_CTRL_ANNOUNCE, VIRTIO_NET_CTRL_ANNOUNCE_ACK, NULL, 0, 3000) != VIRTIO_NET_OK)
                fprintf(stderr, "net-io: the device refused the announce acknowledgement\n");
}

/*
 * PRE_COPY with traffic going on (the device keeps running), a few requests
 * sent without waiting, then STOP_COPY and the whole stream.  NULL on error.
 */
static GByteArray *save_state(Vmm *v) {
        gint64 end;

        if (vmm_mig_pre_copy(v->c) < 0)
                return NULL;
        /* long enough for a manager to see the transfer, the guest pinging all along */
        end = g_get_monotonic_time() + 300 * 1000;
        while (g_get_monotonic_time() < end)
                ping_once(v);
        for (unsigned i = 0; i < 4; i++)
                send_echo(v, ++v->seq);
        return vmm_mig_stop_copy(v->c);
}

static int attach(VuClient *c, int *irq, void *opaque) {
        return vmm_attach(c, ((Vmm *) opaque)->nvec, irq);
}

/* One stdin command.  0, or -1 when it failed. */
static int command(Vmm *v, const char *line) {
        g_auto(GStrv) w = g_strsplit(line, " ", 2);
        g_autoptr(GByteArray) st = NULL;
        bool cancel = strcmp(w[0], "cancel") == 0;
        VuClient *c2 = NULL;
        int irq2[MAX_VEC], r;

        if (!cancel && (strcmp(w[0], "migrate") != 0 || !w[1])) {
                fprintf(stderr, "net-io: unknown command '%s' (known: migrate SOCKET, cancel)\n", line);
                return -1;
        }
        v->since_command = 0;
        st = save_state(v);
        if (!st) {
                fprintf(stderr, "net-io: saving the device state failed\n");
                return -1;
        }
        memset(irq2, -1, sizeof(irq2));
        r = cancel ? -ECANCELED : vmm_mig_load(w[1], &v->ram, st, attach, v, irq2, &c2);
        if (r < 0) {
                for (unsigned i = 0; i < G_N_ELEMENTS(irq2); i++)
                        if (irq2[i] >= 0)
                                close(irq2[i]);
                /* Not handed over: the device runs here again. */
                if (vmm_mig_set(v->c, VU_MIG_RUNNING) < 0) {
                        fprintf(stderr, "net-io: cannot resume the source\n");
                        return -1;
                }
                if (!cancel)
                        fprintf(stderr, "net-io: the destination did not take the state: %s\n", strerror(-r));
                printf("%s\n", cancel ? "cancelled" : "refused");
                fflush(stdout);
                return cancel ? 0 : -1;
        }
        if (vmm_mig_set(v->c, VU_MIG_STOP) < 0)
                fprintf(stderr, "net-io: the source did not stop (ignored: it is left behind)\n");
        vu_client_free(v->c);
        for (unsigned i = 0; i < v->nvec; i++) {
                close(v->irq[i]);
                v->irq[i] = irq2[i];
        }
        v->c = c2;
        announce_after_move(v);
        printf("migrated %u\n", st->len);
        fflush(stdout);
        return 0;
}

int main(int argc, char **argv) {
        g_autofree Vmm *v = g_new0(Vmm, 1);
        bool migratable = argc == 5 && strcmp(argv[1], "--migratable") == 0;
        g_autoptr(GString) in = g_string_new(NULL);
        g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
        int k = 0;
        const char *sock = argv[argc - 3];
        bool ready = false;
        int r;

        if (argc != 4 && !migratable) {
                fprintf(stderr, "usage: net-io [--migratable] SOCKET GUEST_IP PEER_IP\n");
                return 2;
        }
        if (inet_pton(AF_INET, argv[argc - 2], &v->me.ip) != 1 || inet_pton(AF_INET, argv[argc - 1], &v->peer.ip) != 1) {
                fprintf(stderr, "net-io: '%s' or '%s' is not an IPv4 address\n", argv[argc - 2], argv[argc - 1]);
                return 2;
        }
        v->ram.fd = -1;
        v->next_report = 20;
        r = vu_client_connect(sock, &v->c);
        if (r == 0)
                r = vu_client_negotiate(v->c, NULL);
        if (r == 0 && migratable)
                r = vmm_mig_probe(v->c);
        if (r == 0 && (r = msix_vectors(v->c)) > 0) {
                v->nvec = (unsigned) r;
                r = 0;
        }
        if (r == 0)
                r = vu_guest_ram_new(GPA, RAM, &v->ram);
        if (r == 0)
                r = vu_client_map_ram(v->c, &v->ram);
        if (r == 0)
                r = vmm_attach(v->c, v->nvec, v->irq);
        if (r < 0) {
                fprintf(stderr, "net-io: cannot connect to %s: %s\n", sock, strerror(-r));
                return 1;
        }
        r = guest_up(v);
        v->last_reply = g_get_monotonic_time();
        if (r < 0) {
                fprintf(stderr, "net-io: the device did not come up, or the peer never answered ARP: %s\n",
                        strerror(-r));
                return 1;
        }

        for (;;) {
                if (vmm_stdin_lines(in, lines) < 0)
                        break;
                for (guint l = 0; migratable && k == 0 && l < lines->len; l++)
                        k = command(v, lines->pdata[l]);
                g_ptr_array_set_size(lines, 0);
                if (k < 0) {
                        v->errors++;
                        break;
                }
                ping_once(v);
                if (g_get_monotonic_time() - v->last_reply > STALL_USEC) {
                        fprintf(stderr, "net-io: no echo reply for %d s (%lu requests lost): the traffic stopped\n",
                                (int) (STALL_USEC / G_USEC_PER_SEC), v->lost);
                        v->errors++;
                        break;
                }
                if (!ready && v->replies > 0) {
                        printf("ready\n");
                        fflush(stdout);
                        ready = true;
                }
        }
        if (v->since_command == 0) {
                fprintf(stderr, "net-io: no reply came after the last command\n");
                v->errors++;
        }
        printf("ok %lu %lu\n", v->replies, v->errors);
        fflush(stdout);
        vu_client_free(v->c);
        for (unsigned i = 0; i < v->nvec; i++)
                close(v->irq[i]);
        vu_guest_ram_free(&v->ram);
        return v->errors ? 1 : 0;
}
