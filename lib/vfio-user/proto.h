/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-user wire format, protocol 0.0 (QEMU docs/interop/vfio-user.rst).
 * Host endianness, packed exactly as the spec lays it out.  Only structs and
 * constants live here: no behaviour.
 */
#pragma once

#include <stdint.h>

#define VU_MAJOR 0
#define VU_MINOR 0

enum vu_cmd {
        VU_CMD_VERSION = 1,
        VU_CMD_DMA_MAP = 2,
        VU_CMD_DMA_UNMAP = 3,
        VU_CMD_DEVICE_GET_INFO = 4,
        VU_CMD_DEVICE_GET_REGION_INFO = 5,
        VU_CMD_DEVICE_GET_REGION_IO_FDS = 6,
        VU_CMD_DEVICE_GET_IRQ_INFO = 7,
        VU_CMD_DEVICE_SET_IRQS = 8,
        VU_CMD_REGION_READ = 9,
        VU_CMD_REGION_WRITE = 10,
        VU_CMD_DMA_READ = 11,
        VU_CMD_DMA_WRITE = 12,
        VU_CMD_DEVICE_RESET = 13,
        VU_CMD_DIRTY_PAGES = 14,
        VU_CMD_REGION_WRITE_MULTI = 15,
        VU_CMD_DEVICE_FEATURE = 16,
        VU_CMD_MIG_DATA_READ = 17,
        VU_CMD_MIG_DATA_WRITE = 18,
        _VU_CMD_MAX,
};

/* header flags */
#define VU_F_TYPE_MASK   0x0fu
#define VU_F_TYPE_CMD    0x0u
#define VU_F_TYPE_REPLY  0x1u
#define VU_F_NO_REPLY    0x10u
#define VU_F_ERROR       0x20u

struct vu_hdr {
        uint16_t msg_id;
        uint16_t cmd;
        uint32_t size;          /* whole message, header included */
        uint32_t flags;
        uint32_t error;         /* positive errno in error replies */
} __attribute__((packed));

struct vu_version {
        uint16_t major;
        uint16_t minor;
        char caps[];            /* NUL-terminated JSON */
} __attribute__((packed));

#define VU_DMA_READ   0x1u
#define VU_DMA_WRITE  0x2u

struct vu_dma_map {
        uint32_t argsz;
        uint32_t flags;
        uint64_t offset;
        uint64_t addr;
        uint64_t size;
} __attribute__((packed));

#define VU_DMA_UNMAP_GET_DIRTY_BITMAP 0x1u
#define VU_DMA_UNMAP_ALL              0x2u

struct vu_dma_unmap {
        uint32_t argsz;
        uint32_t flags;
        uint64_t addr;
        uint64_t size;
} __attribute__((packed));

#define VU_DEV_FLAGS_RESET 0x1u
#define VU_DEV_FLAGS_PCI   0x2u

struct vu_device_info {
        uint32_t argsz;
        uint32_t flags;
        uint32_t num_regions;
        uint32_t num_irqs;
} __attribute__((packed));

#define VU_REGION_F_READ  0x1u
#define VU_REGION_F_WRITE 0x2u
#define VU_REGION_F_MMAP  0x4u
#define VU_REGION_F_CAPS  0x8u

struct vu_region_info {
        uint32_t argsz;
        uint32_t flags;
        uint32_t index;
        uint32_t cap_offset;
        uint64_t size;
        uint64_t offset;
} __attribute__((packed));

struct vu_cap_header {
        uint16_t id;
        uint16_t version;
        uint32_t next;
} __attribute__((packed));

#define VU_REGION_INFO_CAP_SPARSE_MMAP 1

struct vu_sparse_area {
        uint64_t offset;
        uint64_t size;
} __attribute__((packed));

struct vu_cap_sparse_mmap {
        struct vu_cap_header header;
        uint32_t nr_areas;
        uint32_t reserved;
        struct vu_sparse_area areas[];
} __attribute__((packed));

struct vu_region_io_fds_req {
        uint32_t argsz;
        uint32_t flags;
        uint32_t index;
        uint32_t count;
} __attribute__((packed));

struct vu_sub_region_ioeventfd {
        uint64_t offset;
        uint64_t size;
        uint32_t fd_index;
        uint32_t type;          /* 0 = ioeventfd */
        uint32_t flags;         /* 1 = datamatch */
        uint32_t padding;
        uint64_t datamatch;
} __attribute__((packed));

#define VU_IRQ_INFO_EVENTFD    0x1u
#define VU_IRQ_INFO_MASKABLE   0x2u
#define VU_IRQ_INFO_AUTOMASKED 0x4u
#define VU_IRQ_INFO_NORESIZE   0x8u

struct vu_irq_info {
        uint32_t argsz;
        uint32_t flags;
        uint32_t index;
        uint32_t count;
} __attribute__((packed));

#define VU_IRQ_SET_DATA_NONE      0x1u
#define VU_IRQ_SET_DATA_BOOL      0x2u
#define VU_IRQ_SET_DATA_EVENTFD   0x4u
#define VU_IRQ_SET_DATA_MASK      0x7u
#define VU_IRQ_SET_ACTION_MASK    0x8u
#define VU_IRQ_SET_ACTION_UNMASK  0x10u
#define VU_IRQ_SET_ACTION_TRIGGER 0x20u
#define VU_IRQ_SET_ACTION_ALL     0x38u

struct vu_irq_set {
        uint32_t argsz;
        uint32_t flags;
        uint32_t index;
        uint32_t start;
        uint32_t count;
        uint8_t data[];
} __attribute__((packed));

struct vu_region_access {
        uint64_t offset;
        uint32_t region;
        uint32_t count;
        uint8_t data[];
} __attribute__((packed));

#define VU_WRITE_MULTI_DATA  8
#define VU_WRITE_MULTI_MAX   200

struct vu_write_multi_entry {
        uint64_t offset;
        uint32_t region;
        uint32_t count;
        uint8_t data[VU_WRITE_MULTI_DATA];
} __attribute__((packed));

struct vu_write_multi {
        uint64_t wr_cnt;
        struct vu_write_multi_entry wrs[];
} __attribute__((packed));

/* DEVICE_FEATURE (migration v2, vfio-user.rst "VFIO_USER_DEVICE_FEATURE") */
#define VU_FEATURE_MASK   0xffffu
#define VU_FEATURE_GET    (1u << 16)
#define VU_FEATURE_SET    (1u << 17)
#define VU_FEATURE_PROBE  (1u << 18)

#define VU_FEATURE_MIGRATION          1
#define VU_FEATURE_MIG_DEVICE_STATE   2
#define VU_FEATURE_DMA_LOGGING_START  6
#define VU_FEATURE_DMA_LOGGING_STOP   7
#define VU_FEATURE_DMA_LOGGING_REPORT 8

#define VU_MIGRATION_STOP_COPY 0x1u
#define VU_MIGRATION_P2P       0x2u
#define VU_MIGRATION_PRE_COPY  0x4u

enum vu_mig_state {
        VU_MIG_ERROR = 0,
        VU_MIG_STOP = 1,
        VU_MIG_RUNNING = 2,
        VU_MIG_STOP_COPY = 3,
        VU_MIG_RESUMING = 4,
        VU_MIG_RUNNING_P2P = 5,
        VU_MIG_PRE_COPY = 6,
        VU_MIG_PRE_COPY_P2P = 7,
        _VU_MIG_STATE_MAX,
};

struct vu_device_feature {
        uint32_t argsz;
        uint32_t flags;
        uint8_t data[];
} __attribute__((packed));

struct vu_feature_mig_state {
        uint32_t device_state;
        uint32_t data_fd;
} __attribute__((packed));

struct vu_dma_logging_range {
        uint64_t iova;
        uint64_t length;
} __attribute__((packed));

struct vu_feature_dma_logging_control {
        uint64_t page_size;
        uint32_t num_ranges;
        uint32_t reserved;
        struct vu_dma_logging_range ranges[];
} __attribute__((packed));

struct vu_feature_dma_logging_report {
        uint64_t iova;
        uint64_t length;
        uint64_t page_size;
        uint8_t bitmap[];
} __attribute__((packed));

struct vu_mig_data {
        uint32_t argsz;
        uint32_t size;
        uint8_t data[];
} __attribute__((packed));

/* Region and IRQ indexes of a PCI device (linux/vfio.h numbering). */
enum {
        VU_PCI_BAR0_REGION = 0,
        VU_PCI_BAR5_REGION = 5,
        VU_PCI_ROM_REGION = 6,
        VU_PCI_CONFIG_REGION = 7,
        VU_PCI_VGA_REGION = 8,
        VU_PCI_NUM_REGIONS = 9,
};

enum {
        VU_PCI_INTX_IRQ = 0,
        VU_PCI_MSI_IRQ = 1,
        VU_PCI_MSIX_IRQ = 2,
        VU_PCI_ERR_IRQ = 3,
        VU_PCI_REQ_IRQ = 4,
        VU_PCI_NUM_IRQS = 5,
};

/* Limits we advertise and enforce. */
#define VU_MAX_MSG_FDS        16
#define VU_MAX_DATA_XFER      (1u << 20)
#define VU_MAX_MSG_SIZE       (VU_MAX_DATA_XFER + 64)
#define VU_PGSIZE             4096u
#define VU_MAX_DMA_MAPS       65535u
#define VU_MAX_DMA_SIZE       (8ull << 40)
