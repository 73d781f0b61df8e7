/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Virtio 1.x constants shared by the transport, the virtqueues and device
 * models (virtio-v1.2 spec section numbers in comments).  Only values and
 * small pure helpers: no behaviour.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* 2.1 Device Status Field */
#define VIRTIO_STATUS_ACKNOWLEDGE        0x01
#define VIRTIO_STATUS_DRIVER             0x02
#define VIRTIO_STATUS_DRIVER_OK          0x04
#define VIRTIO_STATUS_FEATURES_OK        0x08
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED             0x80

/* 6 Reserved Feature Bits */
#define VIRTIO_F_INDIRECT_DESC      28
#define VIRTIO_F_EVENT_IDX          29
#define VIRTIO_F_VERSION_1          32
#define VIRTIO_F_ACCESS_PLATFORM    33
#define VIRTIO_F_RING_PACKED        34
#define VIRTIO_F_IN_ORDER           35
#define VIRTIO_F_NOTIFICATION_DATA  38

#define VIRTIO_BIT(b) (UINT64_C(1) << (b))

static inline bool virtio_has(uint64_t features, unsigned bit) {
        return (features >> bit) & 1;
}

/* 4.1.4 Virtio Structure PCI Capabilities: cfg_type */
#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG    3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4
#define VIRTIO_PCI_CAP_PCI_CFG    5

/* 4.1.4.3 Common configuration structure layout */
#define VIRTIO_PCI_COMMON_DFSELECT      0x00
#define VIRTIO_PCI_COMMON_DF            0x04
#define VIRTIO_PCI_COMMON_GFSELECT      0x08
#define VIRTIO_PCI_COMMON_GF            0x0c
#define VIRTIO_PCI_COMMON_MSIX          0x10
#define VIRTIO_PCI_COMMON_NUMQ          0x12
#define VIRTIO_PCI_COMMON_STATUS        0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT      0x16
#define VIRTIO_PCI_COMMON_Q_SIZE        0x18
#define VIRTIO_PCI_COMMON_Q_MSIX        0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE      0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF        0x1e
#define VIRTIO_PCI_COMMON_Q_DESCLO      0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI      0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO     0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI     0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO      0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI      0x34
#define VIRTIO_PCI_COMMON_CFG_SIZE      0x38    /* what Linux requires: 56 bytes */

#define VIRTIO_MSI_NO_VECTOR 0xffff

/* 4.1.4.5 ISR status */
#define VIRTIO_ISR_QUEUE  0x1
#define VIRTIO_ISR_CONFIG 0x2

/* 2.7.5 / 2.8 descriptor flags (same bit values for split and packed) */
#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
/* 2.8.1 packed ring availability bits */
#define VIRTQ_DESC_F_AVAIL    (1 << 7)
#define VIRTQ_DESC_F_USED     (1 << 15)

/* 2.7.6 / 2.7.8 split ring suppression flags */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

/* 2.8.10 packed event suppression */
#define VIRTQ_EVENT_F_ENABLE  0
#define VIRTQ_EVENT_F_DISABLE 1
#define VIRTQ_EVENT_F_DESC    2

/* 2.7.5 split descriptor, 2.8.13 packed descriptor: both 16 bytes */
typedef struct VqDescSplit {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;
} VqDescSplit;

typedef struct VqDescPacked {
        uint64_t addr;
        uint32_t len;
        uint16_t id;
        uint16_t flags;
} VqDescPacked;

typedef struct VqUsedElem {
        uint32_t id;
        uint32_t len;
} VqUsedElem;

typedef struct VqEventSuppress {
        uint16_t off_wrap;
        uint16_t flags;
} VqEventSuppress;

/*
 * 2.7.7.2 vring_need_event: true when event_idx lies in (old, new].
 * All arithmetic modulo 2^16.
 */
static inline bool vq_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old_idx) {
        return (uint16_t) (new_idx - event_idx - 1) < (uint16_t) (new_idx - old_idx);
}
