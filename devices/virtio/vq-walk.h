/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The descriptor chain walker: the one place where guest descriptors become
 * host iovecs, for split (2.7.5) and packed (2.8.13) rings alike.
 *
 * Pure and bounded: it reads descriptors only through the pointers and the
 * VuMem it is given, copies each descriptor once before looking at it
 * (double-fetch safe), visits at most queue-size descriptors per chain
 * (2.7.5.3.1: "A driver MUST NOT create a descriptor chain longer than the
 * Queue Size"), fills at most VQ_MAX_IOV iovecs, and translates every buffer
 * address through vu_mem_translate() with the permission its direction needs.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vfio-user/mem.h"
#include "virtio/virtio.h"

#define VQ_MAX_SIZE 1024u       /* largest queue size a device may offer */
#define VQ_MAX_IOV 1024u        /* iovecs per chain (also UIO_MAXIOV) */

/* A guest range of one device-writable descriptor. */
typedef struct VqSeg {
        uint64_t gpa;
        uint32_t len;
} VqSeg;

/*
 * One walked chain.  Device-readable iovecs come first, then device-writable
 * ones.  The guest ranges behind the writable iovecs are kept too (in_seg),
 * so the device can report what it wrote to dirty logging after writing.
 */
typedef struct VqChain {
        uint16_t id;            /* split: head descriptor index; packed: buffer id */
        uint16_t ndesc;         /* ring slots the chain occupies (packed used-ring skip) */
        unsigned out_num;       /* iov[0, out_num): device reads */
        unsigned in_num;        /* iov[out_num, out_num + in_num): device writes */
        uint64_t out_len;
        uint64_t in_len;
        unsigned n_in_seg;      /* in_seg[0, n_in_seg): writable descriptors, in order */
        struct iovec iov[VQ_MAX_IOV];
        VqSeg in_seg[VQ_MAX_IOV];
} VqChain;

static inline struct iovec *vq_chain_in(VqChain *c) {
        return c->iov + c->out_num;
}

typedef struct VqWalkCtx {
        const VuMem *mem;
        uint16_t qsize;         /* queue size: bound on the chain and on indirect tables */
        bool indirect;          /* VIRTIO_F_INDIRECT_DESC negotiated */
} VqWalkCtx;

/*
 * Walk the split chain starting at descriptor head of the table ring[0, qsize).
 * ring is a host pointer to the descriptor table (validated by the caller to
 * cover qsize entries).
 * Returns 0 with *c filled, or
 *   -EINVAL  malformed: head/next out of range, loop or chain too long, bad
 *            indirect table (empty, misaligned length, nested, INDIRECT with
 *            NEXT, not negotiated), readable descriptor after a writable one,
 *            a 64-bit length overflow;
 *   -EFAULT/-EACCES  a buffer outside guest memory or without the permission;
 *   -ENOSPC  more than VQ_MAX_IOV iovecs would be needed.
 */
int vq_walk_split(const VqWalkCtx *ctx, const VqDescSplit *ring, uint16_t head, VqChain *c);

/*
 * Walk the packed chain starting at ring slot start (whose availability the
 * caller checked).  c->ndesc receives the number of ring slots used and
 * c->id the buffer id of the chain's last descriptor (2.8.6).  Same returns
 * as vq_walk_split().
 */
int vq_walk_packed(const VqWalkCtx *ctx, const VqDescPacked *ring, uint16_t start, VqChain *c);

/* Copy len bytes from the chain's device-readable part starting at offset. Returns bytes copied. */
size_t vq_iov_to_buf(const struct iovec *iov, unsigned n, size_t offset, void *buf, size_t len);
/* Copy len bytes into the iovecs starting at offset. Returns bytes copied. */
size_t vq_buf_to_iov(const struct iovec *iov, unsigned n, size_t offset, const void *buf, size_t len);
