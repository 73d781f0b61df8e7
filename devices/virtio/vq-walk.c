/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Descriptor chain walker for split (virtio-v1.2 2.7.5, 2.7.5.3 indirect)
 * and packed (2.8.13, 2.8.19 indirect) rings.  See vq-walk.h for the rules.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "virtio/vq-walk.h"

/* A descriptor after its one copy out of guest memory, in host order. */
typedef struct VqDesc {
        uint64_t addr;
        uint32_t len;
        uint16_t flags;
        uint16_t next;          /* split only */
        uint16_t id;            /* packed only */
} VqDesc;

/* Keep the compiler from reading guest memory again instead of the copy. */
#define vq_copy_barrier() __asm__ __volatile__("" ::: "memory")

static VqDesc vq_desc_from_split(const VqDescSplit *raw) {
        VqDescSplit s;
        memcpy(&s, raw, sizeof(s));
        vq_copy_barrier();
        return (VqDesc) {
                .addr = le64toh(s.addr),
                .len = le32toh(s.len),
                .flags = le16toh(s.flags),
                .next = le16toh(s.next),
        };
}

static VqDesc vq_desc_from_packed(const VqDescPacked *raw) {
        VqDescPacked p;
        memcpy(&p, raw, sizeof(p));
        vq_copy_barrier();
        return (VqDesc) {
                .addr = le64toh(p.addr),
                .len = le32toh(p.len),
                .flags = le16toh(p.flags),
                .id = le16toh(p.id),
        };
}

static void vq_chain_reset(VqChain *c) {
        c->id = 0;
        c->ndesc = 0;
        c->out_num = c->in_num = 0;
        c->out_len = c->in_len = 0;
        c->n_in_seg = 0;
}

/* Translate one buffer descriptor and append its iovecs. */
static int vq_chain_add(const VqWalkCtx *ctx, VqChain *c, const VqDesc *d) {
        bool writable = d->flags & VIRTQ_DESC_F_WRITE;
        unsigned used = c->out_num + c->in_num;
        int n;

        /* 2.7.4.2: device-writable descriptors come after device-readable ones. */
        if (!writable && c->in_num > 0)
                return -EINVAL;
        if (d->len == 0)
                return 0;
        if (used >= VQ_MAX_IOV)
                return -ENOSPC;

        n = vu_mem_translate(ctx->mem, d->addr, d->len,
                             writable ? VU_PROT_WRITE : VU_PROT_READ,
                             c->iov + used, VQ_MAX_IOV - used);
        if (n < 0)
                return n;
        if (n == 0 || (unsigned) n > VQ_MAX_IOV - used)
                return -EFAULT;         /* a translator breaking its contract */

        if (writable) {
                /* One segment per descriptor, each ≥ 1 iovec: n_in_seg ≤ in_num ≤ VQ_MAX_IOV. */
                c->in_seg[c->n_in_seg++] = (VqSeg) { .gpa = d->addr, .len = d->len };
                c->in_num += n;
                c->in_len += d->len;
        } else {
                c->out_num += n;
                c->out_len += d->len;
        }
        return 0;
}

/*
 * Walk the indirect table d points to.  Split tables are followed through
 * next (bounded by the table size); packed tables are read in order.
 */
static int vq_walk_indirect(const VqWalkCtx *ctx, VqChain *c, const VqDesc *d, bool packed) {
        struct iovec tiov[16];
        uint32_t count;
        int n;

        if (!ctx->indirect)
                return -EINVAL;
        /* 2.7.5.3.1: the driver MUST NOT set both INDIRECT and NEXT. */
        if (d->flags & VIRTQ_DESC_F_NEXT)
                return -EINVAL;
        if (d->len == 0 || d->len % sizeof(VqDescSplit) != 0)
                return -EINVAL;
        count = d->len / sizeof(VqDescSplit);
        if (count > VQ_MAX_SIZE)
                return -EINVAL;

        n = vu_mem_translate(ctx->mem, d->addr, d->len, VU_PROT_READ, tiov, 16);
        if (n < 0)
                return n;

        uint32_t i = 0;
        for (uint32_t visited = 0;; visited++) {
                VqDescSplit raw;
                VqDesc e;
                int r;

                if (visited >= count)
                        return -EINVAL;         /* a loop inside the table */
                if (vq_iov_to_buf(tiov, (unsigned) n, (size_t) i * sizeof(raw), &raw, sizeof(raw)) != sizeof(raw))
                        return -EFAULT;
                e = packed ? vq_desc_from_packed((const VqDescPacked *) &raw) : vq_desc_from_split(&raw);

                /* 2.7.5.3.1: no INDIRECT inside an indirect table. */
                if (e.flags & VIRTQ_DESC_F_INDIRECT)
                        return -EINVAL;
                r = vq_chain_add(ctx, c, &e);
                if (r < 0)
                        return r;

                if (packed) {
                        /* 2.8.19: a packed table is used in full, NEXT is ignored. */
                        if (++i == count)
                                return 0;
                        continue;
                }
                if (!(e.flags & VIRTQ_DESC_F_NEXT))
                        return 0;
                if (e.next >= count)
                        return -EINVAL;
                i = e.next;
        }
}

int vq_walk_split(const VqWalkCtx *ctx, const VqDescSplit *ring, uint16_t head, VqChain *c) {
        uint16_t i = head;

        vq_chain_reset(c);
        c->id = head;
        c->ndesc = 1;
        if (ctx->qsize == 0 || ctx->qsize > VQ_MAX_SIZE || head >= ctx->qsize)
                return -EINVAL;

        for (unsigned visited = 0;; visited++) {
                VqDesc d;
                int r;

                if (visited >= ctx->qsize)
                        return -EINVAL;         /* loop, or longer than the queue */
                d = vq_desc_from_split(&ring[i]);

                if (d.flags & VIRTQ_DESC_F_INDIRECT)
                        return vq_walk_indirect(ctx, c, &d, false);

                r = vq_chain_add(ctx, c, &d);
                if (r < 0)
                        return r;
                if (!(d.flags & VIRTQ_DESC_F_NEXT))
                        return 0;
                if (d.next >= ctx->qsize)
                        return -EINVAL;
                i = d.next;
        }
}

int vq_walk_packed(const VqWalkCtx *ctx, const VqDescPacked *ring, uint16_t start, VqChain *c) {
        uint16_t slot = start;

        vq_chain_reset(c);
        if (ctx->qsize == 0 || ctx->qsize > VQ_MAX_SIZE || start >= ctx->qsize)
                return -EINVAL;

        for (;;) {
                VqDesc d;
                int r;

                if (c->ndesc >= ctx->qsize)
                        return -EINVAL;         /* NEXT all the way round the ring */
                d = vq_desc_from_packed(&ring[slot]);
                c->ndesc++;
                slot = (uint16_t) (slot + 1 == ctx->qsize ? 0 : slot + 1);
                /* 2.8.6: the buffer id is in the chain's last descriptor. */
                c->id = d.id;

                if (d.flags & VIRTQ_DESC_F_INDIRECT)
                        return vq_walk_indirect(ctx, c, &d, true);

                r = vq_chain_add(ctx, c, &d);
                if (r < 0)
                        return r;
                if (!(d.flags & VIRTQ_DESC_F_NEXT))
                        return 0;
        }
}
