/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Copies to and from guest memory on top of a VuMem translator.  A range is
 * validated completely before the first byte moves, so a failed write never
 * leaves guest memory half written.
 */
#include <errno.h>
#include <string.h>

#include "mem.h"

#define VU_MEM_IOV 16

static __thread volatile unsigned fault_seq;

unsigned vu_mem_fault_mark(void) {
        return fault_seq;
}

void vu_mem_fault_note(void) {
        fault_seq = fault_seq + 1;
}

/*
 * Translate [gpa, gpa+len) in pieces small enough for VU_MEM_IOV iovecs and
 * call fn on each.  Ranges crossing many maps are halved until they fit.
 */
typedef void (*vu_mem_fn)(const struct iovec *iov, int n, void *buf);

static int walk(const VuMem *m, uint64_t gpa, uint8_t *buf, size_t len, int prot, vu_mem_fn fn) {
        struct iovec iov[VU_MEM_IOV];

        if (len == 0)
                return 0;
        if (gpa + len - 1 < gpa)
                return -EINVAL;
        while (len > 0) {
                size_t chunk = len;
                int n;

                for (;;) {
                        n = vu_mem_translate(m, gpa, chunk, prot, iov, VU_MEM_IOV);
                        if (n != -ENOSPC)
                                break;
                        chunk /= 2;
                }
                if (n < 0)
                        return n;
                if (fn) {
                        fn(iov, n, buf);
                        buf += chunk;
                }
                gpa += chunk;
                len -= chunk;
        }
        return 0;
}

static void copy_out(const struct iovec *iov, int n, void *buf) {
        uint8_t *b = buf;

        for (int i = 0; i < n; i++) {
                memcpy(b, iov[i].iov_base, iov[i].iov_len);
                b += iov[i].iov_len;
        }
}

static void copy_in(const struct iovec *iov, int n, void *buf) {
        const uint8_t *b = buf;

        for (int i = 0; i < n; i++) {
                memcpy(iov[i].iov_base, b, iov[i].iov_len);
                b += iov[i].iov_len;
        }
}

/* The common case, one translation; else validate everything, then copy. */
static int copy(const VuMem *m, uint64_t gpa, uint8_t *buf, size_t len, int prot, vu_mem_fn fn) {
        struct iovec iov[VU_MEM_IOV];
        unsigned mark = vu_mem_fault_mark();
        int n;

        if (len == 0)
                return 0;
        n = vu_mem_translate(m, gpa, len, prot, iov, VU_MEM_IOV);
        if (n >= 0)
                fn(iov, n, buf);
        else if (n == -ENOSPC && (n = walk(m, gpa, buf, len, prot, NULL)) == 0)
                n = walk(m, gpa, buf, len, prot, fn);
        if (n < 0)
                return n;
        return vu_mem_fault_mark() == mark ? 0 : -EFAULT;      /* the memory vanished under the copy */
}

int vu_mem_read(const VuMem *m, uint64_t gpa, void *buf, size_t len) {
        return copy(m, gpa, buf, len, VU_PROT_READ, copy_out);
}

int vu_mem_write(const VuMem *m, uint64_t gpa, const void *buf, size_t len) {
        return copy(m, gpa, (uint8_t *) buf, len, VU_PROT_WRITE, copy_in);
}

void *vu_mem_ptr(const VuMem *m, uint64_t gpa, size_t len, int prot) {
        struct iovec iov;

        if (len == 0 || vu_mem_translate(m, gpa, len, prot, &iov, 1) != 1)
                return NULL;
        return iov.iov_base;
}

void vu_mem_mark_dirty(const VuMem *m, uint64_t gpa, uint64_t len) {
        if (m->ops->mark_dirty)
                m->ops->mark_dirty(m->opaque, gpa, len);
}
