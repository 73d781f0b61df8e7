/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the descriptor walker: the input is a queue shape
 * (size, head, split/packed, indirect) and a guest RAM image holding the
 * descriptor table, indirect tables and buffers.  The translator splits at
 * every page, so chains need many iovecs.  Every accepted chain must lie in
 * guest RAM with consistent lengths; every byte of it is touched.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/vq-walk.h"

#define RAM_GPA 0x1000u
#define RAM_SIZE (64u * 1024u)

static uint8_t ram[RAM_SIZE];

static int page_translate(void *opaque, uint64_t gpa, uint64_t len, int prot, struct iovec *iov, unsigned max) {
        unsigned n = 0;

        if (len == 0)
                return 0;
        if (gpa + len < gpa)
                return -EINVAL;
        if (gpa < RAM_GPA || gpa + len > RAM_GPA + RAM_SIZE)
                return -EFAULT;
        while (len > 0) {
                uint64_t in_page = 4096 - (gpa & 4095), take = len < in_page ? len : in_page;
                if (n == max)
                        return -ENOSPC;
                iov[n].iov_base = ram + (gpa - RAM_GPA);
                iov[n].iov_len = take;
                n++;
                gpa += take;
                len -= take;
        }
        return (int) n;
}

static const VuMemOps ops = { .translate = page_translate };
static VqChain chain;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        VuMem mem = { .ops = &ops };
        VqWalkCtx ctx = { .mem = &mem };
        uint16_t head;
        bool packed;
        int r;

        if (size < 5)
                return 0;
        ctx.qsize = (uint16_t) (((data[0] | data[1] << 8) % VQ_MAX_SIZE) + 1);
        head = (uint16_t) (data[2] | data[3] << 8);
        packed = data[4] & 1;
        ctx.indirect = data[4] & 2;
        data += 5;
        size -= 5;
        memset(ram, 0, sizeof(ram));
        memcpy(ram, data, size < sizeof(ram) ? size : sizeof(ram));

        /* The ring is the start of RAM (qsize * 16 ≤ 16 KiB fits). */
        if (packed)
                r = vq_walk_packed(&ctx, (const VqDescPacked *) ram, head, &chain);
        else
                r = vq_walk_split(&ctx, (const VqDescSplit *) ram, head, &chain);
        if (r < 0)
                return 0;

        uint64_t out = 0, in = 0;
        if (chain.out_num + chain.in_num > VQ_MAX_IOV || chain.ndesc > ctx.qsize)
                abort();
        for (unsigned i = 0; i < chain.out_num + chain.in_num; i++) {
                uint8_t *b = chain.iov[i].iov_base;
                size_t l = chain.iov[i].iov_len;
                if (b < ram || b + l > ram + sizeof(ram) || l == 0)
                        abort();
                if (i < chain.out_num) {
                        volatile uint8_t sink = 0;
                        for (size_t k = 0; k < l; k++)
                                sink ^= b[k];
                        (void) sink;
                        out += l;
                } else {
                        memset(b, 0xa5, l);
                        in += l;
                }
        }
        if (out != chain.out_len || in != chain.in_len)
                abort();
        return 0;
}
