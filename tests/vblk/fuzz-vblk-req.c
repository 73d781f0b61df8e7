/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the virtio-blk request parser: the input is the
 * device's limits (capacity, block size, negotiated features, read-only,
 * iovec room), a chain shape (how many readable and writable iovecs of which
 * lengths) and the bytes behind them.  Whatever the parser accepts must stay
 * inside the chain: the status byte is the last writable byte, the data
 * iovecs lie in the right direction and add up to the data length, read and
 * write ranges lie inside the capacity, segments are bounded.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vblk/vblk-req.h"
#include "virtio/virtio.h"

#define BUF_SIZE (64u * 1024u)
#define MAX_IOV 16u

static uint8_t buf[BUF_SIZE];
static VqChain chain;
static struct iovec data[MAX_IOV];
static VBlkCmd cmd;

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size);

static bool inside(const uint8_t *p, size_t len, unsigned first, unsigned n) {
        for (unsigned i = first; i < first + n; i++) {
                const uint8_t *b = chain.iov[i].iov_base;
                if (p >= b && p + len <= b + chain.iov[i].iov_len)
                        return true;
        }
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size) {
        VBlkLimits l;
        size_t off = 0;

        if (size < 16)
                return 0;
        l.capacity = (uint64_t) in[0] << 16 | (uint64_t) in[1] << 8 | in[2];
        if (in[3] & 0x80)
                l.capacity = UINT64_MAX >> (in[3] & 0x3f);
        l.block_size = in[4] & 1 ? 4096 : 512;
        l.max_xfer = (uint64_t) (in[5] + 1) * 4096;
        l.features = (uint64_t) in[6] << 8 | in[7];
        l.read_only = in[8] & 1;
        unsigned cap = in[9] % (MAX_IOV + 1);
        unsigned nout = in[10] % 6, nin = in[11] % 6;
        off = 12;

        memset(&chain, 0, sizeof(chain));
        size_t pos = 0;
        for (unsigned i = 0; i < nout + nin; i++) {
                if (off + 2 > size)
                        return 0;
                size_t len = ((size_t) in[off] << 8 | in[off + 1]) % 4097;
                off += 2;
                if (len == 0)
                        len = 1;
                if (pos + len > BUF_SIZE)
                        return 0;
                chain.iov[i].iov_base = buf + pos;
                chain.iov[i].iov_len = len;
                pos += len;
                if (i < nout)
                        chain.out_len += len;
                else
                        chain.in_len += len;
        }
        chain.out_num = nout;
        chain.in_num = nin;
        memset(buf, 0, pos);
        memcpy(buf, in + off, size - off < pos ? size - off : pos);

        int r = vblk_req_parse(&l, &chain, &cmd, data, cap);
        if (r < 0) {
                if (chain.out_len >= VBLK_HDR_LEN && chain.in_len >= 1)
                        abort();        /* answerable chains are answered */
                return 0;
        }
        if (r != VBLK_PARSE_EXEC && r != VBLK_PARSE_DONE)
                abort();
        const struct iovec *last = &chain.iov[nout + nin - 1];
        if (cmd.status != (uint8_t *) last->iov_base + last->iov_len - 1 || cmd.used_len != chain.in_len)
                abort();
        *cmd.status = 0;
        if (r == VBLK_PARSE_DONE) {
                if (cmd.answer != VIRTIO_BLK_S_IOERR && cmd.answer != VIRTIO_BLK_S_UNSUPP)
                        abort();
                return 0;
        }

        uint64_t total = 0;
        if (cmd.niov > cap)
                abort();
        for (unsigned i = 0; i < cmd.niov; i++) {
                bool readable = cmd.type == VIRTIO_BLK_T_OUT;
                if (!inside(data[i].iov_base, data[i].iov_len, readable ? 0 : nout, readable ? nout : nin))
                        abort();
                /* Data never covers the header or the status byte. */
                if ((uint8_t *) data[i].iov_base <= cmd.status &&
                    cmd.status < (uint8_t *) data[i].iov_base + data[i].iov_len)
                        abort();
                memset(data[i].iov_base, 0xa5, data[i].iov_len);
                total += data[i].iov_len;
        }
        switch (cmd.type) {
        case VIRTIO_BLK_T_IN:
        case VIRTIO_BLK_T_OUT:
                if (total != cmd.data_len || cmd.data_len > l.max_xfer || cmd.data_len % l.block_size ||
                    cmd.sector > l.capacity || (cmd.data_len >> 9) > l.capacity - cmd.sector ||
                    (cmd.type == VIRTIO_BLK_T_OUT && l.read_only))
                        abort();
                break;
        case VIRTIO_BLK_T_GET_ID:
                if (total != cmd.data_len || total == 0 || total > VBLK_ID_BYTES)
                        abort();
                break;
        case VIRTIO_BLK_T_FLUSH:
                if (!virtio_has(l.features, VIRTIO_BLK_F_FLUSH))
                        abort();
                break;
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES:
                if (cmd.nseg == 0 || cmd.nseg > VBLK_MAX_DWZ_SEG || l.read_only)
                        abort();
                for (unsigned i = 0; i < cmd.nseg; i++)
                        if (cmd.seg[i].sector > l.capacity || cmd.seg[i].num_sectors > l.capacity - cmd.seg[i].sector ||
                            cmd.seg[i].num_sectors > VBLK_MAX_DWZ_SECTORS)
                                abort();
                break;
        default:
                abort();
        }
        return 0;
}
