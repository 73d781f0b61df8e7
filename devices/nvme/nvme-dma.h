/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest memory for the NVMe model: PRP (§4.3) and SGL (§4.4) walkers and
 * small copy helpers, all through the injected VuMem translator.
 *
 * The walkers are pure and bounded: they copy every list page or segment
 * they read before looking at it (the guest may change it under us), refuse
 * anything past the transfer length they are given (the caller bounds it by
 * MDTS), and never return a host address that the translator did not hand
 * out for the requested direction.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vfio-user/mem.h"
#include "nvme-spec.h"

/* MDTS 7 with 4 KiB pages: 512 KiB, 128 pages, +1 for an unaligned start. */
#define NVME_MDTS               7u
#define NVME_MAX_XFER           (NVME_PAGE_SIZE << NVME_MDTS)
#define NVME_MAX_IOV            (NVME_MAX_XFER / NVME_PAGE_SIZE + 8)
#define NVME_SGL_MAX_SEGMENTS   64u
#define NVME_SGL_MAX_DESCS      1024u
#define NVME_SGL_SEG_MAX_DESCS  256u

/* A guest range the device writes (prot VU_PROT_WRITE), reported to dirty logging at completion. */
typedef struct NvmeIovGpa {
        uint64_t gpa, len;
} NvmeIovGpa;

/* Room for the longest transfer, taken by an NvmeIov when its inline entries are full. */
typedef struct NvmeIovExt NvmeIovExt;
struct NvmeIovExt {
        NvmeIovExt *next;               /* on a free list */
        struct iovec iov[NVME_MAX_IOV];
        NvmeIovGpa gpa[NVME_MAX_IOV];
};

/* Entries kept inline: a 4 KiB command needs one or two, most up to 16 KiB no more. */
#define NVME_IOV_INLINE         4u

/*
 * A translated transfer.  An iovec with iov_base == NULL is an SGL bit
 * bucket: that many bytes of read data are discarded.  Up to
 * NVME_IOV_INLINE entries live in the structure (every SQ slot has one:
 * ~200 bytes instead of the 4.4 KB room for NVME_MAX_IOV); a longer
 * transfer takes an NvmeIovExt from *ext_free (or the heap when that is
 * NULL or empty) and keeps it until nvme_iov_release().  iov and gpa
 * point at the entries in use; the map functions set them up.
 */
typedef struct NvmeIov {
        unsigned n;
        bool has_bucket;
        uint64_t len;
        struct iovec *iov;
        unsigned n_gpa;
        NvmeIovGpa *gpa;
        NvmeIovExt *ext;
        NvmeIovExt **ext_free;          /* where ext comes from and goes back to; NULL: the heap */
        struct iovec iov_inline[NVME_IOV_INLINE];
        NvmeIovGpa gpa_inline[NVME_IOV_INLINE];
} NvmeIov;

/* Empty v for a new transfer (keeping an ext it holds). */
void nvme_iov_reset(NvmeIov *v);
/* Give back v's ext, if any, and empty it. */
void nvme_iov_release(NvmeIov *v);

/*
 * Map len bytes described by PRP1/PRP2 (4 KiB memory pages).  prot is
 * VU_PROT_WRITE when the device writes guest memory (reads), VU_PROT_READ
 * otherwise.  Returns NVME_SUCCESS or the status to complete with:
 * PRP Offset Invalid, Data Transfer Error (unmapped or forbidden memory),
 * Invalid Field (len above NVME_MAX_XFER).
 */
NvmeStatus nvme_prp_map(const VuMem *m, uint64_t prp1, uint64_t prp2, uint64_t len,
                        int prot, NvmeIov *out);

/*
 * Map len bytes described by the SGL whose first descriptor is sgl1
 * (data block, bit bucket, segment, last segment).  Returns NVME_SUCCESS or
 * SGL Descriptor Type Invalid, Invalid SGL Segment Descriptor, Invalid
 * Number of SGL Descriptors, Data SGL Length Invalid, Data Transfer Error.
 */
NvmeStatus nvme_sgl_map(const VuMem *m, const NvmeSglDesc *sgl1, uint64_t len, int prot,
                        NvmeIov *out);

/* Map the data pointer of an SQE by its PSDT.  admin: SGLs are refused (PCIe, §4.4). */
NvmeStatus nvme_map_dptr(const VuMem *m, const NvmeSqe *sqe, uint64_t len, int prot,
                         bool admin, NvmeIov *out);

/*
 * Append [gpa, gpa+len) to out, merging with the previous iovec.  0,
 * -ENOSPC (more than NVME_MAX_IOV entries), -ENOMEM, or -errno of the
 * translator.
 */
int nvme_iov_add(const VuMem *m, NvmeIov *out, uint64_t gpa, uint64_t len, int prot);
/* Append a bit bucket of len bytes.  0, -ENOSPC (NVME_MAX_IOV entries) or -ENOMEM. */
int nvme_iov_add_bucket(NvmeIov *v, uint64_t len);

/* Copy between a buffer and a mapped transfer (bit buckets skipped). Returns bytes copied. */
size_t nvme_iov_from_buf(const NvmeIov *v, const void *buf, size_t len);
size_t nvme_iov_to_buf(const NvmeIov *v, void *buf, size_t len);

/* Copy guest memory into buf (a private copy).  0 or -errno. */
int nvme_mem_read(const VuMem *m, uint64_t gpa, void *buf, size_t len);
/* Copy buf into guest memory.  0 or -errno. */
int nvme_mem_write(const VuMem *m, uint64_t gpa, const void *buf, size_t len);
/* A direct pointer to len contiguous bytes at gpa with prot, or NULL. */
void *nvme_mem_ptr(const VuMem *m, uint64_t gpa, size_t len, int prot);
