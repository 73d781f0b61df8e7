/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <arpa/inet.h>
#include <string.h>

#include <glib.h>

#include "frames.h"

uint16_t frame_csum(const void *data, size_t len, uint32_t sum) {
        const uint8_t *p = data;

        for (size_t i = 0; i + 1 < len; i += 2)
                sum += (uint32_t) (p[i] << 8 | p[i + 1]);
        if (len & 1)
                sum += (uint32_t) p[len - 1] << 8;
        while (sum >> 16)
                sum = (sum & 0xffff) + (sum >> 16);
        return (uint16_t) ~sum;
}

uint32_t frame_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len) {
        uint32_t s = ntohl(src), d = ntohl(dst);
        return (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + proto + len;
}

static size_t eth(uint8_t *buf, const uint8_t *dst, const uint8_t *src, uint16_t type) {
        memcpy(buf, dst, 6);
        memcpy(buf + 6, src, 6);
        buf[12] = (uint8_t) (type >> 8);
        buf[13] = (uint8_t) type;
        return 14;
}

static size_t arp(uint8_t *buf, uint16_t op, const uint8_t *dmac, const FrameAddr *src, const uint8_t *tmac,
                  uint32_t tip) {
        size_t o = eth(buf, dmac, src->mac, ETH_P_ARP_);
        uint8_t *a = buf + o;

        a[0] = 0; a[1] = 1;             /* Ethernet */
        a[2] = 0x08; a[3] = 0x00;       /* IPv4 */
        a[4] = 6; a[5] = 4;
        a[6] = 0; a[7] = (uint8_t) op;
        memcpy(a + 8, src->mac, 6);
        memcpy(a + 14, &src->ip, 4);
        memcpy(a + 18, tmac, 6);
        memcpy(a + 24, &tip, 4);
        memset(a + 28, 0, 18);          /* pad to 60 bytes */
        return o + 46;
}

size_t frame_arp_request(uint8_t *buf, const FrameAddr *src, uint32_t target_ip) {
        static const uint8_t bc[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, zero[6] = { 0 };
        return arp(buf, 1, bc, src, zero, target_ip);
}

size_t frame_arp_reply(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst) {
        return arp(buf, 2, dst->mac, src, dst->mac, dst->ip);
}

size_t frame_ipv4(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint8_t proto,
                  const void *l4, size_t l4_len, bool partial, uint16_t *csum_start, uint16_t *csum_off) {
        static uint16_t ident = 1;
        size_t o = eth(buf, dst->mac, src->mac, ETH_P_IP_);
        uint8_t *ip = buf + o;
        uint16_t tot = (uint16_t) (20 + l4_len), c;
        size_t coff = proto == 6 ? 16 : proto == 17 ? 6 : 2;

        memset(ip, 0, 20);
        ip[0] = 0x45;
        ip[2] = (uint8_t) (tot >> 8);
        ip[3] = (uint8_t) tot;
        ip[4] = (uint8_t) (ident >> 8);
        ip[5] = (uint8_t) ident++;
        ip[6] = 0x40;                   /* DF */
        ip[8] = 64;
        ip[9] = proto;
        memcpy(ip + 12, &src->ip, 4);
        memcpy(ip + 16, &dst->ip, 4);
        c = frame_csum(ip, 20, 0);
        ip[10] = (uint8_t) (c >> 8);
        ip[11] = (uint8_t) c;
        memcpy(ip + 20, l4, l4_len);

        uint8_t *l = ip + 20;
        l[coff] = l[coff + 1] = 0;
        if (proto == 1) {
                c = frame_csum(l, l4_len, 0);
        } else {
                uint32_t ps = frame_pseudo_sum(src->ip, dst->ip, proto, (uint16_t) l4_len);
                if (partial) {
                        /* NEEDS_CSUM: the field holds the folded pseudo-header sum (5.1.6.2). */
                        while (ps >> 16)
                                ps = (ps & 0xffff) + (ps >> 16);
                        c = (uint16_t) ps;
                        *csum_start = (uint16_t) (o + 20);
                        *csum_off = (uint16_t) coff;
                } else {
                        c = frame_csum(l, l4_len, ps);
                        if (proto == 17 && c == 0)
                                c = 0xffff;
                }
        }
        l[coff] = (uint8_t) (c >> 8);
        l[coff + 1] = (uint8_t) c;
        return o + tot;
}

size_t frame_icmp_echo(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint16_t id, uint16_t seq,
                       const void *data, size_t len) {
        g_autofree uint8_t *l4 = g_malloc(8 + len);
        l4[0] = 8;
        l4[1] = 0;
        l4[2] = l4[3] = 0;
        l4[4] = (uint8_t) (id >> 8); l4[5] = (uint8_t) id;
        l4[6] = (uint8_t) (seq >> 8); l4[7] = (uint8_t) seq;
        memcpy(l4 + 8, data, len);
        return frame_ipv4(buf, src, dst, 1, l4, 8 + len, false, NULL, NULL);
}

size_t frame_udp(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint16_t sport, uint16_t dport,
                 const void *data, size_t len, bool partial, uint16_t *csum_start, uint16_t *csum_off) {
        g_autofree uint8_t *l4 = g_malloc(8 + len);
        uint16_t ul = (uint16_t) (8 + len);
        l4[0] = (uint8_t) (sport >> 8); l4[1] = (uint8_t) sport;
        l4[2] = (uint8_t) (dport >> 8); l4[3] = (uint8_t) dport;
        l4[4] = (uint8_t) (ul >> 8); l4[5] = (uint8_t) ul;
        memcpy(l4 + 8, data, len);
        return frame_ipv4(buf, src, dst, 17, l4, ul, partial, csum_start, csum_off);
}

size_t frame_tcp(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint16_t sport, uint16_t dport,
                 uint32_t seq, uint32_t ack, uint8_t flags, const void *data, size_t len) {
        g_autofree uint8_t *l4 = g_malloc(20 + len);
        uint32_t s = htonl(seq), a = htonl(ack);
        memset(l4, 0, 20);
        l4[0] = (uint8_t) (sport >> 8); l4[1] = (uint8_t) sport;
        l4[2] = (uint8_t) (dport >> 8); l4[3] = (uint8_t) dport;
        memcpy(l4 + 4, &s, 4);
        memcpy(l4 + 8, &a, 4);
        l4[12] = 5 << 4;
        l4[13] = flags;
        l4[14] = 0xff; l4[15] = 0xff;   /* window */
        if (len)
                memcpy(l4 + 20, data, len);
        return frame_ipv4(buf, src, dst, 6, l4, 20 + len, false, NULL, NULL);
}

bool frame_parse(uint8_t *f, size_t len, bool partial, uint16_t cstart, uint16_t coff, FrameInfo *fi) {
        memset(fi, 0, sizeof(*fi));
        if (len < 14)
                return false;
        memcpy(fi->dst_mac, f, 6);
        memcpy(fi->src_mac, f + 6, 6);
        fi->ethertype = (uint16_t) (f[12] << 8 | f[13]);
        if (fi->ethertype == ETH_P_ARP_) {
                if (len < 42)
                        return false;
                fi->arp_op = (uint16_t) (f[20] << 8 | f[21]);
                memcpy(&fi->arp_sip, f + 28, 4);
                memcpy(&fi->arp_tip, f + 38, 4);
                return true;
        }
        if (fi->ethertype != ETH_P_IP_ || len < 34)
                return false;
        uint8_t *ip = f + 14;
        size_t ihl = (size_t) (ip[0] & 15) * 4, tot = (size_t) (ip[2] << 8 | ip[3]);
        if (ihl < 20 || tot < ihl || 14 + tot > len)
                return false;
        fi->ip_csum_ok = frame_csum(ip, ihl, 0) == 0;
        fi->proto = ip[9];
        memcpy(&fi->saddr, ip + 12, 4);
        memcpy(&fi->daddr, ip + 16, 4);
        uint8_t *l = ip + ihl;
        size_t ll = tot - ihl;
        if (partial) {
                /* Complete the checksum the device left partial: sum from csum_start, store at +offset. */
                if ((size_t) cstart + coff + 2 > len)
                        return false;
                uint16_t c = frame_csum(f + cstart, 14 + tot - cstart, 0);
                f[cstart + coff] = (uint8_t) (c >> 8);
                f[cstart + coff + 1] = (uint8_t) c;
        }
        if (fi->proto == 1 && ll >= 8) {
                fi->icmp_type = l[0];
                fi->l4_csum_ok = frame_csum(l, ll, 0) == 0;
                fi->payload = l + 8;
                fi->payload_len = ll - 8;
        } else if ((fi->proto == 17 && ll >= 8) || (fi->proto == 6 && ll >= 20)) {
                fi->sport = (uint16_t) (l[0] << 8 | l[1]);
                fi->dport = (uint16_t) (l[2] << 8 | l[3]);
                fi->l4_csum_ok = frame_csum(l, ll, frame_pseudo_sum(fi->saddr, fi->daddr, fi->proto, (uint16_t) ll)) == 0;
                /* RFC 768: a zero UDP checksum over IPv4 means "none computed". */
                if (fi->proto == 17 && l[6] == 0 && l[7] == 0)
                        fi->l4_csum_ok = true;
                if (fi->proto == 17) {
                        fi->payload = l + 8;
                        fi->payload_len = ll - 8;
                } else {
                        size_t doff = (size_t) (l[12] >> 4) * 4;
                        uint32_t s, a;
                        memcpy(&s, l + 4, 4);
                        memcpy(&a, l + 8, 4);
                        fi->tcp_seq = ntohl(s);
                        fi->tcp_ack = ntohl(a);
                        fi->tcp_flags = l[13];
                        if (doff < 20 || doff > ll)
                                return false;
                        fi->payload = l + doff;
                        fi->payload_len = ll - doff;
                }
        }
        return true;
}
