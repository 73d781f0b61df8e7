/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtio-net wire constants (virtio-v1.2 5.1).  Values only. */
#pragma once

#include <stdint.h>

#define VIRTIO_ID_NET 1

/* 5.1.3 Feature bits */
#define VIRTIO_NET_F_CSUM                0
#define VIRTIO_NET_F_GUEST_CSUM          1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS 2
#define VIRTIO_NET_F_MTU                 3
#define VIRTIO_NET_F_MAC                 5
#define VIRTIO_NET_F_GUEST_TSO4          7
#define VIRTIO_NET_F_GUEST_TSO6          8
#define VIRTIO_NET_F_GUEST_ECN           9
#define VIRTIO_NET_F_GUEST_UFO           10
#define VIRTIO_NET_F_HOST_TSO4           11
#define VIRTIO_NET_F_HOST_TSO6           12
#define VIRTIO_NET_F_HOST_ECN            13
#define VIRTIO_NET_F_HOST_UFO            14
#define VIRTIO_NET_F_MRG_RXBUF           15
#define VIRTIO_NET_F_STATUS              16
#define VIRTIO_NET_F_CTRL_VQ             17
#define VIRTIO_NET_F_CTRL_RX             18
#define VIRTIO_NET_F_CTRL_VLAN           19
#define VIRTIO_NET_F_CTRL_RX_EXTRA       20
#define VIRTIO_NET_F_GUEST_ANNOUNCE      21
#define VIRTIO_NET_F_MQ                  22
#define VIRTIO_NET_F_CTRL_MAC_ADDR       23

/* 5.1.4 status */
#define VIRTIO_NET_S_LINK_UP  1
#define VIRTIO_NET_S_ANNOUNCE 2

/* 5.1.4 struct virtio_net_config */
typedef struct VNetConfigSpace {
        uint8_t mac[6];
        uint16_t status;
        uint16_t max_virtqueue_pairs;
        uint16_t mtu;
        uint32_t speed;
        uint8_t duplex;
        uint8_t rss_max_key_size;
        uint16_t rss_max_indirection_table_length;
} __attribute__((packed)) VNetConfigSpace;

/* 5.1.6 struct virtio_net_hdr: always 12 bytes with VERSION_1 */
typedef struct VNetHdr {
        uint8_t flags;
        uint8_t gso_type;
        uint16_t hdr_len;
        uint16_t gso_size;
        uint16_t csum_start;
        uint16_t csum_offset;
        uint16_t num_buffers;
} __attribute__((packed)) VNetHdr;

#define VNET_HDR_LEN 12u

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_F_RSC_INFO   4

#define VIRTIO_NET_HDR_GSO_NONE  0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_UDP   3
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN   0x80

/* 5.1.6.5 control virtqueue */
#define VIRTIO_NET_OK  0
#define VIRTIO_NET_ERR 1

#define VIRTIO_NET_CTRL_RX 0
#define  VIRTIO_NET_CTRL_RX_PROMISC  0
#define  VIRTIO_NET_CTRL_RX_ALLMULTI 1
#define VIRTIO_NET_CTRL_MAC 1
#define  VIRTIO_NET_CTRL_MAC_TABLE_SET 0
#define  VIRTIO_NET_CTRL_MAC_ADDR_SET  1
#define VIRTIO_NET_CTRL_VLAN 2
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define  VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define VIRTIO_NET_CTRL_MQ 4
#define  VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET 0
#define  VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MIN 1
#define  VIRTIO_NET_CTRL_MQ_VQ_PAIRS_MAX 0x8000
#define VIRTIO_NET_CTRL_GUEST_OFFLOADS 5
#define  VIRTIO_NET_CTRL_GUEST_OFFLOADS_SET 0

/* Largest frame a backend hands us or we hand it: 64 KiB GSO + Ethernet/VLAN header. */
#define VNET_MAX_FRAME (65535u + 14u + 4u)
