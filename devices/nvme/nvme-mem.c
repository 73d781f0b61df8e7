/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Copy helpers over the VuMem translator and over mapped transfers. */
#include <errno.h>
#include <string.h>
#include <sys/param.h>

#include <glib.h>

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

void nvme_iov_reset(NvmeIov *v) {
        v->n = v->n_gpa = 0;
        v->len = 0;
        v->has_bucket = false;
        v->iov = v->ext ? v->ext->iov : v->iov_inline;
        v->gpa = v->ext ? v->ext->gpa : v->gpa_inline;
}

void nvme_iov_release(NvmeIov *v) {
        if (v->ext) {
                if (v->ext_free) {
                        v->ext->next = *v->ext_free;
                        *v->ext_free = v->ext;
                } else {
                        g_free(v->ext);
                }
                v->ext = NULL;
        }
        nvme_iov_reset(v);
}

static unsigned nvme_iov_cap(const NvmeIov *v) {
        return v->ext ? NVME_MAX_IOV : NVME_IOV_INLINE;
}

/* Move v's entries into an ext.  0, -ENOSPC (it has one: the longest transfer is exceeded) or -ENOMEM. */
static int nvme_iov_grow(NvmeIov *v) {
        NvmeIovExt *e;

        if (v->ext)
                return -ENOSPC;
        if (v->ext_free && *v->ext_free) {
                e = *v->ext_free;
                *v->ext_free = e->next;
        } else if (!(e = g_try_new(NvmeIovExt, 1))) {
                return -ENOMEM;
        }
        memcpy(e->iov, v->iov_inline, sizeof(v->iov_inline[0]) * v->n);
        memcpy(e->gpa, v->gpa_inline, sizeof(v->gpa_inline[0]) * v->n_gpa);
        v->ext = e;
        v->iov = e->iov;
        v->gpa = e->gpa;
        return 0;
}

int nvme_iov_add_bucket(NvmeIov *v, uint64_t len) {
        if (!v->iov)
                nvme_iov_reset(v);
        struct iovec *prev = v->n ? &v->iov[v->n - 1] : NULL;
        if (prev && !prev->iov_base) {
                prev->iov_len += len;
        } else {
                if (v->n >= nvme_iov_cap(v)) {
                        int r = nvme_iov_grow(v);
                        if (r < 0)
                                return r;
                }
                v->iov[v->n++] = (struct iovec) { NULL, len };
        }
        v->len += len;
        v->has_bucket = true;
        return 0;
}

int nvme_iov_add(const VuMem *m, NvmeIov *out, uint64_t gpa, uint64_t len, int prot) {
        struct iovec *dst;
        int n;

        if (len == 0)
                return 0;
        if (!out->iov)
                nvme_iov_reset(out);
        for (;;) {
                if (out->n >= nvme_iov_cap(out)) {
                        int r = nvme_iov_grow(out);
                        if (r < 0)
                                return r;
                }
                dst = &out->iov[out->n];
                n = vu_mem_translate(m, gpa, len, prot, dst, nvme_iov_cap(out) - out->n);
                if (n != -ENOSPC || out->ext)
                        break;
                int r = nvme_iov_grow(out);     /* the inline entries are too few: retry with room */
                if (r < 0)
                        return r;
        }
        if (n < 0)
                return n;
        if (prot & VU_PROT_WRITE) {
                /* dst stays valid: growing copies the first n entries and leaves the inline ones. */
                if (out->n_gpa >= nvme_iov_cap(out) && !out->ext)
                        (void) nvme_iov_grow(out);      /* else the last range widens */
                if (out->n_gpa > 0 && out->gpa[out->n_gpa - 1].gpa + out->gpa[out->n_gpa - 1].len == gpa) {
                        out->gpa[out->n_gpa - 1].len += len;
                } else if (out->n_gpa < nvme_iov_cap(out)) {
                        out->gpa[out->n_gpa++] = (NvmeIovGpa) { gpa, len };
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
