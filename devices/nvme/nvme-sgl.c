/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SGL walker (NVMe 1.4 §4.4): data block, bit bucket, segment and last
 * segment descriptors with address subtype.  Segments are copied whole
 * before they are looked at; counts and lengths are bounded.
 */
#include <errno.h>
#include <string.h>

#include "nvme-dma.h"

#define SGL_TYPE(d)     ((d)->type >> 4)
#define SGL_SUBTYPE(d)  ((d)->type & 0xf)

typedef struct SglWalk {
        const VuMem *m;
        NvmeIov *out;
        uint64_t want;          /* bytes still to describe */
        int prot;
        unsigned descs;
} SglWalk;

static NvmeStatus sgl_data(SglWalk *w, const NvmeSglDesc *d) {
        if (SGL_SUBTYPE(d) != 0)
                return NVME_SC_SGL_TYPE_INVALID;        /* offsets are for fabrics */
        uint64_t take = d->len < w->want ? d->len : w->want;
        if (take == 0)
                return NVME_SUCCESS;
        if (SGL_TYPE(d) == NVME_SGL_BIT_BUCKET) {
                /* Bit buckets only make sense for data the controller returns. */
                if (w->prot != VU_PROT_WRITE)
                        return NVME_SC_SGL_TYPE_INVALID;
                int r = nvme_iov_add_bucket(w->out, take);
                if (r < 0)
                        return r == -ENOSPC ? NVME_SC_SGL_INVALID_COUNT : NVME_SC_DATA_XFER_ERROR;
        } else {
                int r = nvme_iov_add(w->m, w->out, d->addr, take, w->prot);
                if (r == -ENOSPC)
                        return NVME_SC_SGL_INVALID_COUNT;
                if (r < 0)
                        return NVME_SC_DATA_XFER_ERROR;
        }
        w->want -= take;
        return NVME_SUCCESS;
}

static bool sgl_is_segment(const NvmeSglDesc *d) {
        return SGL_TYPE(d) == NVME_SGL_SEGMENT || SGL_TYPE(d) == NVME_SGL_LAST_SEGMENT;
}

static bool sgl_is_data(const NvmeSglDesc *d) {
        return SGL_TYPE(d) == NVME_SGL_DATA_BLOCK || SGL_TYPE(d) == NVME_SGL_BIT_BUCKET;
}

NvmeStatus nvme_sgl_map(const VuMem *m, const NvmeSglDesc *sgl1, uint64_t len, int prot,
                        NvmeIov *out) {
        SglWalk w = { .m = m, .out = out, .want = len, .prot = prot };
        NvmeSglDesc cur = *sgl1;
        NvmeStatus st;

        nvme_iov_reset(out);
        if (len > NVME_MAX_XFER)
                return NVME_SC_INVALID_FIELD;

        if (sgl_is_data(&cur)) {
                st = sgl_data(&w, &cur);
                if (st)
                        return st;
                return w.want ? NVME_SC_SGL_DATA_LEN_INVALID : NVME_SUCCESS;
        }
        if (!sgl_is_segment(&cur))
                return NVME_SC_SGL_TYPE_INVALID;

        for (unsigned seg = 0; w.want > 0; seg++) {
                NvmeSglDesc descs[NVME_SGL_SEG_MAX_DESCS];

                if (seg >= NVME_SGL_MAX_SEGMENTS)
                        return NVME_SC_SGL_INVALID_COUNT;
                if (SGL_SUBTYPE(&cur) != 0)
                        return NVME_SC_SGL_TYPE_INVALID;
                if (cur.len == 0 || cur.len % sizeof(NvmeSglDesc) || (cur.addr & 3))
                        return NVME_SC_SGL_INVALID_SEG;
                unsigned n = cur.len / sizeof(NvmeSglDesc);
                if (n > NVME_SGL_SEG_MAX_DESCS || w.descs + n > NVME_SGL_MAX_DESCS)
                        return NVME_SC_SGL_INVALID_COUNT;
                w.descs += n;
                /* Copy the whole segment first: validate the copy, never the guest's page. */
                if (nvme_mem_read(m, cur.addr, descs, n * sizeof(NvmeSglDesc)) < 0)
                        return NVME_SC_DATA_XFER_ERROR;

                bool last_segment = SGL_TYPE(&cur) == NVME_SGL_LAST_SEGMENT;
                bool next = false;
                for (unsigned i = 0; i < n && w.want > 0; i++) {
                        const NvmeSglDesc *d = &descs[i];
                        if (sgl_is_segment(d)) {
                                /* Only the final descriptor of a (non-last) segment may chain. */
                                if (last_segment || i != n - 1)
                                        return NVME_SC_SGL_INVALID_SEG;
                                cur = *d;
                                next = true;
                        } else if (sgl_is_data(d)) {
                                st = sgl_data(&w, d);
                                if (st)
                                        return st;
                        } else {
                                return NVME_SC_SGL_TYPE_INVALID;
                        }
                }
                if (!next) {
                        /* A Segment (not Last) must end by pointing at the next one. */
                        if (!last_segment && w.want > 0)
                                return NVME_SC_SGL_INVALID_SEG;
                        break;
                }
        }
        return w.want ? NVME_SC_SGL_DATA_LEN_INVALID : NVME_SUCCESS;
}
