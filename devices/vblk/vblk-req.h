/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The request parser (virtio-v1.2 5.2.6): one walked descriptor chain in,
 * a checked command out.  Pure: it reads the chain's device-readable bytes
 * once (header, discard/write-zeroes segments) into private copies, looks at
 * nothing else, and touches no device state, so it is fuzzed alone.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vblk/vblk-proto.h"
#include "virtio/vq-walk.h"

#define VBLK_MAX_DWZ_SEG 32u            /* max_discard_seg */
#define VBLK_MAX_WZ_SEG 1u              /* max_write_zeroes_seg */
#define VBLK_MAX_DWZ_SECTORS (1u << 22) /* 2 GiB per discard / write-zeroes segment */

/* What the device accepts, fixed while the data path runs. */
typedef struct VBlkLimits {
        uint64_t capacity;              /* 512-byte sectors */
        uint32_t block_size;            /* logical block size in bytes: 512 or 4096 */
        uint64_t max_xfer;              /* data bytes of one read or write */
        uint64_t features;              /* negotiated: DISCARD, WRITE_ZEROES, FLUSH */
        bool read_only;
} VBlkLimits;

/* A parsed request.  The data iovecs are in the array given to vblk_req_parse(). */
typedef struct VBlkCmd {
        uint32_t type;                  /* VIRTIO_BLK_T_* */
        uint64_t sector;                /* IN/OUT */
        uint64_t data_len;              /* IN/OUT/GET_ID: bytes of data */
        unsigned niov;                  /* iovecs of data */
        uint8_t *status;                /* the status byte: the chain's last writable byte */
        uint32_t used_len;              /* what the used ring reports: every writable byte */
        uint8_t answer;                 /* VIRTIO_BLK_S_*: the status when parsing says "done" */
        unsigned nseg;                  /* DISCARD/WRITE_ZEROES: checked segments */
        VBlkDwzSeg seg[VBLK_MAX_DWZ_SEG];  /* host byte order */
} VBlkCmd;

enum {
        VBLK_PARSE_EXEC = 0,            /* execute cmd */
        VBLK_PARSE_DONE = 1,            /* complete at once with cmd->answer (IOERR, UNSUPP) */
};

/*
 * Parse chain c (device-readable header first, status byte last).  The
 * data part of IN/OUT/GET_ID requests goes to iov[0, cmd->niov), at most cap
 * entries (more: IOERR).  Returns VBLK_PARSE_EXEC, VBLK_PARSE_DONE, or
 * -EINVAL when the chain cannot be answered at all (no 16-byte header, no
 * device-writable status byte): the device needs a reset.
 */
int vblk_req_parse(const VBlkLimits *l, const VqChain *c, VBlkCmd *cmd, struct iovec *iov, unsigned cap);

/* The 20 bytes GET_ID answers for serial (NUL-padded, not terminated when 20 long). */
void vblk_id_bytes(const char *serial, uint8_t out[VBLK_ID_BYTES]);
