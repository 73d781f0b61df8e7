/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Hand-built Ethernet/ARP/IPv4/ICMP/UDP/TCP frames and checksum checks for the network tests. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETH_P_ARP_ 0x0806
#define ETH_P_IP_ 0x0800

typedef struct FrameAddr {
        uint8_t mac[6];
        uint32_t ip;            /* network order */
} FrameAddr;

uint16_t frame_csum(const void *data, size_t len, uint32_t sum);
/* Pseudo-header sum (not folded) for an IPv4 L4 protocol. */
uint32_t frame_pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, uint16_t len);

size_t frame_arp_request(uint8_t *buf, const FrameAddr *src, uint32_t target_ip);
size_t frame_arp_reply(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst);
/* IPv4 packet with a complete L4 checksum (or, when partial, only the pseudo-header sum). */
size_t frame_ipv4(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint8_t proto,
                  const void *l4, size_t l4_len, bool partial, uint16_t *csum_start, uint16_t *csum_off);
size_t frame_icmp_echo(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint16_t id, uint16_t seq,
                       const void *data, size_t len);
size_t frame_udp(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint16_t sport, uint16_t dport,
                 const void *data, size_t len, bool partial, uint16_t *csum_start, uint16_t *csum_off);
size_t frame_tcp(uint8_t *buf, const FrameAddr *src, const FrameAddr *dst, uint16_t sport, uint16_t dport,
                 uint32_t seq, uint32_t ack, uint8_t flags, const void *data, size_t len);

/* What a received frame is. */
typedef struct FrameInfo {
        uint16_t ethertype;
        uint8_t src_mac[6], dst_mac[6];
        /* ARP */
        uint16_t arp_op;
        uint32_t arp_sip, arp_tip;
        /* IPv4 */
        uint32_t saddr, daddr;
        uint8_t proto;
        bool ip_csum_ok, l4_csum_ok;
        uint8_t icmp_type;
        uint16_t sport, dport;
        uint32_t tcp_seq, tcp_ack;
        uint8_t tcp_flags;
        const uint8_t *payload;
        size_t payload_len;
} FrameInfo;

/*
 * Parse frame.  When partial_csum (a NEEDS_CSUM frame), the L4 checksum is
 * completed at csum_start/csum_offset first, as a driver would.
 */
bool frame_parse(uint8_t *frame, size_t len, bool partial_csum, uint16_t csum_start, uint16_t csum_off,
                 FrameInfo *fi);
