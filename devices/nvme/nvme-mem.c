/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Copy helpers over the VuMem translator and over mapped transfers. */
#include <errno.h>
#include <string.h>
#include <sys/param.h>

#include "nvme-dma.h"

static int nvme_mem_copy(const VuMem *m, uint64_t gpa, void *buf, size_t len, int prot) {
        unsigned mark = vu_mem_fault_mark();
        uint8_t *p = buf;

        while (len > 0) {
                struct iovec iov[4];
                size_t chunk = NVME_PAGE_SIZE - (gpa & NVME_PAGE_MASK);
                if (chunk > len)
                        chunk = len;
                int n = vu_mem_translate(m, gpa, chunk, prot, iov, 4);
                if (n < 0)
                        return n;
                for (int i = 0; i < n; i++) {
                        if (prot == VU_PROT_READ)
                                memcpy(p, iov[i].iov_base, iov[i].iov_len);
                        else
                                memcpy(iov[i].iov_base, p, iov[i].iov_len);
                        p += iov[i].iov_len;
                }
                gpa += chunk;
                len -= chunk;
        }
        return vu_mem_fault_mark() == mark ? 0 : -EFAULT;      /* guest RAM vanished under the copy */
}

int nvme_mem_read(const VuMem *m, uint64_t gpa, void *buf, size_t len) {
        return nvme_mem_copy(m, gpa, buf, len, VU_PROT_READ);
}

int nvme_mem_write(const VuMem *m, uint64_t gpa, const void *buf, size_t len) {
        return nvme_mem_copy(m, gpa, (void *) buf, len, VU_PROT_WRITE);
}

void *nvme_mem_ptr(const VuMem *m, uint64_t gpa, size_t len, int prot) {
        struct iovec iov;

        if (len == 0)
                return NULL;
        int n = vu_mem_translate(m, gpa, len, prot, &iov, 1);
        if (n != 1 || iov.iov_len != len)
                return NULL;
        return iov.iov_base;
}

int nvme_iov_add(const VuMem *m, NvmeIov *out, uint64_t gpa, uint64_t len, int prot) {
        if (len == 0)
                return 0;
        if (out->n >= NVME_MAX_IOV)
                return -ENOSPC;
        struct iovec *dst = &out->iov[out->n];
        int n = vu_mem_translate(m, gpa, len, prot, dst, NVME_MAX_IOV - out->n);
        if (n < 0)
                return n;
        if (prot & VU_PROT_WRITE) {
                if (out->n_gpa > 0 && out->gpa[out->n_gpa - 1].gpa + out->gpa[out->n_gpa - 1].len == gpa) {
                        out->gpa[out->n_gpa - 1].len += len;
                } else if (out->n_gpa < NVME_MAX_IOV) {
                        out->gpa[out->n_gpa++] = (typeof(out->gpa[0])) { gpa, len };
                } else {
                        /* Full: widen the last range over this one (reporting more is safe, less is not). */
                        uint64_t lo = MIN(out->gpa[out->n_gpa - 1].gpa, gpa);
                        uint64_t hi = MAX(out->gpa[out->n_gpa - 1].gpa + out->gpa[out->n_gpa - 1].len, gpa + len);
                        out->gpa[out->n_gpa - 1].gpa = lo;
                        out->gpa[out->n_gpa - 1].len = hi - lo;
                }
        }
        /* Merge host-contiguous neighbours, so long transfers stay short lists. */
        for (int i = 0; i < n; i++) {
                struct iovec cur = dst[i];
                if (out->n > 0) {
                        struct iovec *prev = &out->iov[out->n - 1];
                        if (prev->iov_base && (uint8_t *) prev->iov_base + prev->iov_len == cur.iov_base) {
                                prev->iov_len += cur.iov_len;
                                continue;
                        }
                }
                out->iov[out->n++] = cur;
        }
        out->len += len;
        return 0;
}

size_t nvme_iov_from_buf(const NvmeIov *v, const void *buf, size_t len) {
        const uint8_t *p = buf;
        size_t done = 0;

        for (unsigned i = 0; i < v->n && done < len; i++) {
                size_t c = v->iov[i].iov_len < len - done ? v->iov[i].iov_len : len - done;
                if (v->iov[i].iov_base)
                        memcpy(v->iov[i].iov_base, p + done, c);
                done += c;
        }
        return done;
}

size_t nvme_iov_to_buf(const NvmeIov *v, void *buf, size_t len) {
        uint8_t *p = buf;
        size_t done = 0;

        for (unsigned i = 0; i < v->n && done < len; i++) {
                size_t c = v->iov[i].iov_len < len - done ? v->iov[i].iov_len : len - done;
                if (v->iov[i].iov_base)
                        memcpy(p + done, v->iov[i].iov_base, c);
                else
                        memset(p + done, 0, c);
                done += c;
        }
        return done;
}
