/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * PRP walker (NVMe 1.4 §4.3).  Memory page size is fixed at 4 KiB
 * (CAP.MPSMIN = CAP.MPSMAX = 0).
 */
#include <errno.h>

#include "nvme-dma.h"

#define PRP_PER_PAGE (NVME_PAGE_SIZE / sizeof(uint64_t))

static NvmeStatus nvme_prp_add(const VuMem *m, NvmeIov *out, uint64_t gpa, uint64_t len, int prot) {
        int r = nvme_iov_add(m, out, gpa, len, prot);
        return r < 0 ? NVME_SC_DATA_XFER_ERROR : NVME_SUCCESS;
}

NvmeStatus nvme_prp_map(const VuMem *m, uint64_t prp1, uint64_t prp2, uint64_t len,
                        int prot, NvmeIov *out) {
        NvmeStatus st;

        nvme_iov_reset(out);
        if (len == 0)
                return NVME_SUCCESS;
        if (len > NVME_MAX_XFER)
                return NVME_SC_INVALID_FIELD;
        /* §4.3: PRP entries are dword aligned (bits 1:0 cleared). */
        if (prp1 & 3)
                return NVME_SC_PRP_OFFSET_INVALID;

        uint64_t first = NVME_PAGE_SIZE - (prp1 & NVME_PAGE_MASK);
        if (first > len)
                first = len;
        st = nvme_prp_add(m, out, prp1, first, prot);
        if (st)
                return st;
        uint64_t rem = len - first;
        if (rem == 0)
                return NVME_SUCCESS;

        if (rem <= NVME_PAGE_SIZE) {
                /* PRP2 is the second data page: no offset allowed. */
                if (prp2 & NVME_PAGE_MASK)
                        return NVME_SC_PRP_OFFSET_INVALID;
                return nvme_prp_add(m, out, prp2, rem, prot);
        }

        /* PRP2 points at a PRP list, possibly at an offset in its page. */
        uint64_t list = prp2;
        uint64_t npages = (rem + NVME_PAGE_SIZE - 1) / NVME_PAGE_SIZE;
        if (list & 7)
                return NVME_SC_PRP_OFFSET_INVALID;
        while (npages > 0) {
                uint64_t buf[PRP_PER_PAGE];
                unsigned room = (unsigned) ((NVME_PAGE_SIZE - (list & NVME_PAGE_MASK)) / sizeof(uint64_t));
                bool chain = npages > room;
                unsigned take = chain ? room : (unsigned) npages;

                /* Copy the entries before using them: the guest may rewrite the list. */
                if (nvme_mem_read(m, list, buf, take * sizeof(uint64_t)) < 0)
                        return NVME_SC_DATA_XFER_ERROR;
                unsigned data = chain ? take - 1 : take;
                for (unsigned i = 0; i < data; i++) {
                        uint64_t chunk = rem < NVME_PAGE_SIZE ? rem : NVME_PAGE_SIZE;
                        if (buf[i] & NVME_PAGE_MASK)
                                return NVME_SC_PRP_OFFSET_INVALID;
                        st = nvme_prp_add(m, out, buf[i], chunk, prot);
                        if (st)
                                return st;
                        rem -= chunk;
                        npages--;
                }
                if (chain) {
                        list = buf[take - 1];
                        /* A chained list page starts at a page boundary. */
                        if (list & NVME_PAGE_MASK)
                                return NVME_SC_PRP_OFFSET_INVALID;
                }
        }
        return NVME_SUCCESS;
}

NvmeStatus nvme_map_dptr(const VuMem *m, const NvmeSqe *sqe, uint64_t len, int prot,
                         bool admin, NvmeIov *out) {
        switch (NVME_SQE_PSDT(sqe->flags)) {
        case NVME_PSDT_PRP:
                return nvme_prp_map(m, sqe->prp1, sqe->prp2, len, prot, out);
        case NVME_PSDT_SGL_MPTR_BUF:
        case NVME_PSDT_SGL_MPTR_SGL:
                if (admin)
                        return NVME_SC_INVALID_FIELD;
                NvmeSglDesc d;
                __builtin_memcpy(&d, sqe->sgl1, sizeof(d));
                return nvme_sgl_map(m, &d, len, prot, out);
        default:
                return NVME_SC_INVALID_FIELD;
        }
}
