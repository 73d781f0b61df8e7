/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest memory access: the one seam through which device models reach guest
 * RAM.  The server's DMA table implements it; unit tests plug a fake in.
 *
 * Every guest address a device uses goes through vu_mem_translate(): a range
 * that is not fully covered by fd-backed DMA maps with the requested
 * permission is refused, never partially honoured.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define VU_PROT_READ  0x1   /* device reads guest memory (guest → device) */
#define VU_PROT_WRITE 0x2   /* device writes guest memory (device → guest) */

typedef struct VuMemOps {
        /*
         * Translate [gpa, gpa+len) into at most max_iov host iovecs.
         * Returns the number of iovecs filled (≥ 1 when len > 0, 0 for
         * len == 0), or
         *   -EFAULT  a byte of the range is unmapped or in an fd-less map,
         *   -EACCES  a map lacks the permission asked for,
         *   -ENOSPC  more than max_iov iovecs would be needed,
         *   -EINVAL  gpa + len overflows.
         * When prot has VU_PROT_WRITE and dirty logging is on, the pages
         * are marked dirty.
         */
        int (*translate)(void *opaque, uint64_t gpa, uint64_t len, int prot,
                         struct iovec *iov, unsigned max_iov);
        /*
         * Optional: record that the device wrote [gpa, gpa+len) through a
         * pointer it obtained earlier (rings it keeps mapped), for dirty
         * logging.  Unmapped bytes are ignored.
         */
        void (*mark_dirty)(void *opaque, uint64_t gpa, uint64_t len);
} VuMemOps;

typedef struct VuMem {
        const VuMemOps *ops;
        void *opaque;
} VuMem;

static inline int vu_mem_translate(const VuMem *m, uint64_t gpa, uint64_t len,
                                   int prot, struct iovec *iov, unsigned max_iov) {
        return m->ops->translate(m->opaque, gpa, len, prot, iov, max_iov);
}

/* Copy guest → buf (a private copy: validate after, never before). 0 or -errno. */
int vu_mem_read(const VuMem *m, uint64_t gpa, void *buf, size_t len);
/* Copy buf → guest. 0 or -errno. */
int vu_mem_write(const VuMem *m, uint64_t gpa, const void *buf, size_t len);
/*
 * A direct pointer to len bytes at gpa if they are contiguous in one map,
 * else NULL.  For rings and queues the device polls; the caller must copy
 * what it validates.
 */
void *vu_mem_ptr(const VuMem *m, uint64_t gpa, size_t len, int prot);
/* Tell dirty logging about writes made through a pointer from vu_mem_ptr(). */
void vu_mem_mark_dirty(const VuMem *m, uint64_t gpa, uint64_t len);

/*
 * Guest memory can vanish under a map: a client that truncates the file
 * behind it.  The DMA table's SIGBUS guard then puts zeroed memory in its
 * place, refuses later translations there (-EFAULT), and counts the fault
 * on the thread that took it.  A copy takes a mark before and compares it
 * after: a different mark means it read zeroes or wrote nowhere, and must
 * fail (vu_mem_read and vu_mem_write do).  Async-signal-safe.
 */
unsigned vu_mem_fault_mark(void);
void vu_mem_fault_note(void);
