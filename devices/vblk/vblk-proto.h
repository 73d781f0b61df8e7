/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtio-blk wire constants (virtio-v1.2 5.2).  Values only. */
#pragma once

#include <stdint.h>

#define VIRTIO_ID_BLOCK 2

/* 5.2.3 Feature bits */
#define VIRTIO_BLK_F_SIZE_MAX     1
#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_GEOMETRY     4
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_TOPOLOGY     10
#define VIRTIO_BLK_F_CONFIG_WCE   11
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define VIRTIO_BLK_F_LIFETIME     15
#define VIRTIO_BLK_F_SECURE_ERASE 16

/* 5.2.4 struct virtio_blk_config, up to write_zeroes_may_unmap (what we offer) */
typedef struct VBlkConfigSpace {
        uint64_t capacity;                      /* 512-byte sectors */
        uint32_t size_max;
        uint32_t seg_max;
        uint16_t cylinders;
        uint8_t heads;
        uint8_t sectors;
        uint32_t blk_size;
        uint8_t physical_block_exp;
        uint8_t alignment_offset;
        uint16_t min_io_size;
        uint32_t opt_io_size;
        uint8_t writeback;
        uint8_t unused0;
        uint16_t num_queues;
        uint32_t max_discard_sectors;
        uint32_t max_discard_seg;
        uint32_t discard_sector_alignment;
        uint32_t max_write_zeroes_sectors;
        uint32_t max_write_zeroes_seg;
        uint8_t write_zeroes_may_unmap;
        uint8_t unused1[3];
} __attribute__((packed)) VBlkConfigSpace;

#define VBLK_CFG_WRITEBACK_OFF 32u

/* 5.2.6 request types */
#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_GET_LIFETIME 10
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_T_SECURE_ERASE 14

/* 5.2.6 status byte */
#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

/* 5.2.6 struct virtio_blk_req: the device-readable header */
typedef struct VBlkReqHdr {
        uint32_t type;
        uint32_t reserved;
        uint64_t sector;
} __attribute__((packed)) VBlkReqHdr;

#define VBLK_HDR_LEN 16u
#define VBLK_SECTOR_SHIFT 9
#define VBLK_ID_BYTES 20u

/* 5.2.6 struct virtio_blk_discard_write_zeroes */
typedef struct VBlkDwzSeg {
        uint64_t sector;
        uint32_t num_sectors;
        uint32_t flags;
} __attribute__((packed)) VBlkDwzSeg;

#define VIRTIO_BLK_WZ_F_UNMAP 1u
