/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtio-net header (virtio-v1.2 5.1.6) against the negotiated
 * features: what the driver may send (5.1.6.2), what we may hand it
 * (5.1.6.3), the feature dependencies (5.1.3.1), and the TAP offloads the
 * guest's receive features ask for.
 */
#include <endian.h>
#include <errno.h>

#include "net/vnet-priv.h"
#include "virtio/virtio.h"

#define F(x) VIRTIO_BIT(VIRTIO_NET_F_##x)

static const struct {
        uint64_t feature;
        uint64_t needs;         /* any one of these */
} vnet_feature_deps[] = {
        { F(GUEST_TSO4), F(GUEST_CSUM) },
        { F(GUEST_TSO6), F(GUEST_CSUM) },
        { F(GUEST_ECN), F(GUEST_TSO4) | F(GUEST_TSO6) },
        { F(GUEST_UFO), F(GUEST_CSUM) },
        { F(HOST_TSO4), F(CSUM) },
        { F(HOST_TSO6), F(CSUM) },
        { F(HOST_ECN), F(HOST_TSO4) | F(HOST_TSO6) },
        { F(HOST_UFO), F(CSUM) },
        { F(CTRL_RX), F(CTRL_VQ) },
        { F(CTRL_VLAN), F(CTRL_VQ) },
        { F(GUEST_ANNOUNCE), F(CTRL_VQ) },
        { F(MQ), F(CTRL_VQ) },
        { F(CTRL_MAC_ADDR), F(CTRL_VQ) },
        { F(CTRL_GUEST_OFFLOADS), F(CTRL_VQ) },
        { F(CTRL_RX_EXTRA), F(CTRL_RX) },
};

int vnet_check_features(uint64_t features) {
        for (unsigned i = 0; i < sizeof(vnet_feature_deps) / sizeof(vnet_feature_deps[0]); i++)
                if ((features & vnet_feature_deps[i].feature) && !(features & vnet_feature_deps[i].needs))
                        return -EINVAL;
        return 0;
}

unsigned vnet_guest_offloads(uint64_t features) {
        unsigned o = 0;

        if (features & F(GUEST_CSUM))
                o |= VNET_OFFLOAD_CSUM;
        if (features & F(GUEST_TSO4))
                o |= VNET_OFFLOAD_TSO4;
        if (features & F(GUEST_TSO6))
                o |= VNET_OFFLOAD_TSO6;
        if (features & F(GUEST_ECN))
                o |= VNET_OFFLOAD_TSO_ECN;
        return o;
}

int vnet_tx_hdr_check(uint64_t features, VNetHdr *h, size_t frame_len) {
        uint8_t gso = h->gso_type & (uint8_t) ~VIRTIO_NET_HDR_GSO_ECN;

        /* 5.1.6.2.2: flags other than NEEDS_CSUM mean nothing on transmit. */
        h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h->num_buffers = 0;

        if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
                uint32_t start = le16toh(h->csum_start), off = le16toh(h->csum_offset);
                if (!(features & F(CSUM)))
                        return -EINVAL;
                if (start + off + 2u > frame_len)
                        return -EINVAL;
        }

        switch (gso) {
        case VIRTIO_NET_HDR_GSO_NONE:
                if (h->gso_type & VIRTIO_NET_HDR_GSO_ECN)
                        return -EINVAL;
                return 0;
        case VIRTIO_NET_HDR_GSO_TCPV4:
                if (!(features & F(HOST_TSO4)))
                        return -EINVAL;
                break;
        case VIRTIO_NET_HDR_GSO_TCPV6:
                if (!(features & F(HOST_TSO6)))
                        return -EINVAL;
                break;
        default:
                return -EINVAL;         /* UFO/USO: not offered */
        }
        if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !(features & F(HOST_ECN)))
                return -EINVAL;
        /* Segmentation needs a segment size and checksum offload (5.1.6.2.1). */
        if (h->gso_size == 0 || !(h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM))
                return -EINVAL;
        return 0;
}

int vnet_rx_hdr_fix(uint64_t features, VNetHdr *h) {
        uint8_t gso = h->gso_type & (uint8_t) ~VIRTIO_NET_HDR_GSO_ECN;

        if (!(features & F(GUEST_CSUM))) {
                /* 5.1.6.3.1: without GUEST_CSUM the flags are zero, checksums complete. */
                if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
                        return -EINVAL;
                h->flags = 0;
        } else {
                h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID;
        }

        switch (gso) {
        case VIRTIO_NET_HDR_GSO_NONE:
                h->gso_type = VIRTIO_NET_HDR_GSO_NONE;
                h->gso_size = 0;
                h->hdr_len = 0;
                return 0;
        case VIRTIO_NET_HDR_GSO_TCPV4:
                if (!(features & F(GUEST_TSO4)))
                        return -EINVAL;
                break;
        case VIRTIO_NET_HDR_GSO_TCPV6:
                if (!(features & F(GUEST_TSO6)))
                        return -EINVAL;
                break;
        default:
                return -EINVAL;
        }
        if ((h->gso_type & VIRTIO_NET_HDR_GSO_ECN) && !(features & F(GUEST_ECN)))
                return -EINVAL;
        return 0;
}
