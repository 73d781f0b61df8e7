/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request parsing (virtio-v1.2 5.2.6).  Every chain is checked before
 * anything is done with it:
 *   - 16 device-readable header bytes and at least one device-writable byte
 *     (the status) or the chain cannot be answered: the device needs reset;
 *   - the data direction matches the type: IN has only the header readable,
 *     OUT/FLUSH/DISCARD/WRITE_ZEROES only the status writable;
 *   - reads and writes are whole logical blocks, aligned, inside the
 *     capacity (overflow-safe), at most max_xfer bytes;
 *   - discard and write-zeroes segments: a whole number of them, bounded
 *     in count and sectors, inside the capacity, no unknown flags.
 * Unknown and unnegotiated types, and flags the spec says so for, are
 * answered UNSUPP (5.2.6.1); everything else that is wrong, IOERR.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "vblk/vblk-req.h"
#include "virtio/virtio.h"

void vblk_id_bytes(const char *serial, uint8_t out[VBLK_ID_BYTES]) {
        size_t n = serial ? strnlen(serial, VBLK_ID_BYTES) : 0;

        memset(out, 0, VBLK_ID_BYTES);
        if (n)
                memcpy(out, serial, n);
}

/*
 * Point out[] at bytes [off, off + len) of iov[0, n).  Count of iovecs, or
 * -ENOSPC when more than cap would be needed.
 */
static int iov_slice(const struct iovec *iov, unsigned n, uint64_t off, uint64_t len, struct iovec *out,
                     unsigned cap) {
        unsigned k = 0;

        for (unsigned i = 0; i < n && len > 0; i++) {
                uint64_t l = iov[i].iov_len;
                if (off >= l) {
                        off -= l;
                        continue;
                }
                uint64_t take = l - off < len ? l - off : len;
                if (k == cap)
                        return -ENOSPC;
                out[k].iov_base = (uint8_t *) iov[i].iov_base + off;
                out[k].iov_len = (size_t) take;
                k++;
                len -= take;
                off = 0;
        }
        return (int) k;
}

static int done(VBlkCmd *cmd, uint8_t answer) {
        cmd->answer = answer;
        return VBLK_PARSE_DONE;
}

/* A range of 512-byte sectors inside the capacity and on logical block boundaries. */
static bool range_ok(const VBlkLimits *l, uint64_t sector, uint64_t sectors) {
        uint64_t per_block = l->block_size >> VBLK_SECTOR_SHIFT;

        if (sector > l->capacity || sectors > l->capacity - sector)
                return false;
        return (sector | sectors) % per_block == 0;
}

static int parse_rw(const VBlkLimits *l, const VqChain *c, VBlkCmd *cmd, struct iovec *iov, unsigned cap) {
        bool write = cmd->type == VIRTIO_BLK_T_OUT;
        int n;

        if (write ? c->in_len != 1 : c->out_len != VBLK_HDR_LEN)
                return done(cmd, VIRTIO_BLK_S_IOERR);          /* data in the wrong direction */
        if (write && l->read_only)
                return done(cmd, VIRTIO_BLK_S_IOERR);          /* 5.2.6.1: RO offered */
        cmd->data_len = write ? c->out_len - VBLK_HDR_LEN : c->in_len - 1;
        if (cmd->data_len % l->block_size || cmd->data_len > l->max_xfer ||
            !range_ok(l, cmd->sector, cmd->data_len >> VBLK_SECTOR_SHIFT))
                return done(cmd, VIRTIO_BLK_S_IOERR);
        if (write)
                n = iov_slice(c->iov, c->out_num, VBLK_HDR_LEN, cmd->data_len, iov, cap);
        else
                n = iov_slice(c->iov + c->out_num, c->in_num, 0, cmd->data_len, iov, cap);
        if (n < 0)
                return done(cmd, VIRTIO_BLK_S_IOERR);
        cmd->niov = (unsigned) n;
        return VBLK_PARSE_EXEC;
}

static int parse_dwz(const VBlkLimits *l, const VqChain *c, VBlkCmd *cmd) {
        bool discard = cmd->type == VIRTIO_BLK_T_DISCARD;
        unsigned max_seg = discard ? VBLK_MAX_DWZ_SEG : VBLK_MAX_WZ_SEG;
        uint32_t known_flags = discard ? 0 : VIRTIO_BLK_WZ_F_UNMAP;
        uint64_t payload = c->out_len - VBLK_HDR_LEN;

        if (!virtio_has(l->features, discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES))
                return done(cmd, VIRTIO_BLK_S_UNSUPP);
        if (c->in_len != 1 || payload == 0 || payload % sizeof(VBlkDwzSeg) ||
            payload / sizeof(VBlkDwzSeg) > max_seg)
                return done(cmd, VIRTIO_BLK_S_IOERR);
        if (l->read_only)
                return done(cmd, VIRTIO_BLK_S_IOERR);
        cmd->nseg = (unsigned) (payload / sizeof(VBlkDwzSeg));
        for (unsigned i = 0; i < cmd->nseg; i++) {
                VBlkDwzSeg s;
                vq_iov_to_buf(c->iov, c->out_num, VBLK_HDR_LEN + i * sizeof(s), &s, sizeof(s));
                s.sector = le64toh(s.sector);
                s.num_sectors = le32toh(s.num_sectors);
                s.flags = le32toh(s.flags);
                /* 5.2.6.1: unknown flags, and unmap on a discard, are UNSUPP. */
                if (s.flags & ~known_flags)
                        return done(cmd, VIRTIO_BLK_S_UNSUPP);
                if (s.num_sectors > VBLK_MAX_DWZ_SECTORS || !range_ok(l, s.sector, s.num_sectors))
                        return done(cmd, VIRTIO_BLK_S_IOERR);
                cmd->seg[i] = s;
        }
        return VBLK_PARSE_EXEC;
}

int vblk_req_parse(const VBlkLimits *l, const VqChain *c, VBlkCmd *cmd, struct iovec *iov, unsigned cap) {
        const struct iovec *last;
        VBlkReqHdr h;

        memset(cmd, 0, offsetof(VBlkCmd, seg));
        /* Without a header or a status byte there is no way to answer: 5.2.6 layout. */
        if (c->out_len < VBLK_HDR_LEN || c->in_len < 1 || c->in_num == 0)
                return -EINVAL;
        last = &c->iov[c->out_num + c->in_num - 1];
        if (last->iov_len == 0)
                return -EINVAL;
        cmd->status = (uint8_t *) last->iov_base + last->iov_len - 1;
        cmd->used_len = c->in_len > UINT32_MAX ? UINT32_MAX : (uint32_t) c->in_len;

        vq_iov_to_buf(c->iov, c->out_num, 0, &h, sizeof(h));   /* one private copy */
        cmd->type = le32toh(h.type);
        cmd->sector = le64toh(h.sector);

        switch (cmd->type) {
        case VIRTIO_BLK_T_IN:
        case VIRTIO_BLK_T_OUT:
                return parse_rw(l, c, cmd, iov, cap);
        case VIRTIO_BLK_T_FLUSH:
                if (!virtio_has(l->features, VIRTIO_BLK_F_FLUSH))
                        return done(cmd, VIRTIO_BLK_S_UNSUPP);
                if (c->out_len != VBLK_HDR_LEN || c->in_len != 1)
                        return done(cmd, VIRTIO_BLK_S_IOERR);
                return VBLK_PARSE_EXEC;
        case VIRTIO_BLK_T_GET_ID: {
                int n;
                if (c->out_len != VBLK_HDR_LEN || c->in_len < 2)
                        return done(cmd, VIRTIO_BLK_S_IOERR);
                cmd->data_len = c->in_len - 1 < VBLK_ID_BYTES ? c->in_len - 1 : VBLK_ID_BYTES;
                n = iov_slice(c->iov + c->out_num, c->in_num, 0, cmd->data_len, iov, cap);
                if (n < 0)
                        return done(cmd, VIRTIO_BLK_S_IOERR);
                cmd->niov = (unsigned) n;
                return VBLK_PARSE_EXEC;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
                return parse_dwz(l, c, cmd);
        default:
                return done(cmd, VIRTIO_BLK_S_UNSUPP);
        }
}
