/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small NVMe host driver for tests and the benchmark: it does what Linux's
 * nvme driver does (linux-driver-probe.md §1), over any register transport
 * (direct calls into the model, or our vfio-user client), with guest RAM
 * that is a host buffer at a guest-physical base.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvme/nvme-spec.h"

typedef struct NvmeDrvOps {
        int (*reg_read)(void *opaque, uint64_t off, void *buf, size_t len);
        /* posted: like a CPU's MMIO store, no reply awaited when the transport can */
        int (*reg_write)(void *opaque, uint64_t off, const void *buf, size_t len);
        /* 1 fired, 0 timeout, -errno (e.g. -ECONNRESET: the device went away). */
        int (*wait_irq)(void *opaque, unsigned vector, int timeout_ms);
} NvmeDrvOps;

typedef struct NvmeDrvQueue {
        bool live;
        uint16_t qid;
        uint32_t depth;
        uint16_t vector;
        uint64_t sq_gpa, cq_gpa;
        NvmeSqe *sq;
        NvmeCqe *cq;
        uint32_t sq_tail, cq_head;
        uint8_t phase;
        uint16_t next_cid;
} NvmeDrvQueue;

typedef struct NvmeDrv {
        const NvmeDrvOps *ops;
        void *opaque;
        uint8_t *ram;
        uint64_t ram_gpa, ram_size, alloc_next;
        NvmeDrvQueue q[65];
        bool shadow;
        bool poll_queues;               /* I/O CQs created with interrupts off (Linux's poll queues) */
        uint32_t *db_shadow, *db_ei;
        int timeout_ms;
        uint64_t mmio_doorbells;        /* doorbell MMIO writes issued */
        uint64_t mmio_cq_doorbells;     /* of which CQ head doorbells */
        uint64_t cap;
        uint32_t trace[64];             /* register offsets accessed, in order (probe replay) */
        unsigned n_trace;
        uint32_t rung[65];              /* last SQ tail rung per queue */
} NvmeDrv;

void nvme_drv_init(NvmeDrv *d, const NvmeDrvOps *ops, void *opaque, uint8_t *ram, uint64_t ram_gpa,
                   uint64_t ram_size);
/* Bump allocator in guest RAM (zeroed); returns a gpa, aborts the test when out of RAM. */
uint64_t nvme_drv_alloc(NvmeDrv *d, uint64_t size, uint64_t align);
void *nvme_drv_ptr(NvmeDrv *d, uint64_t gpa);

uint32_t nvme_drv_read32(NvmeDrv *d, uint64_t off);
void nvme_drv_write32(NvmeDrv *d, uint64_t off, uint32_t v);

/* Linux's nvme_pci_enable + configure_admin_queue: 0 or -errno (-ETIMEDOUT, -EIO for CFS). */
int nvme_drv_enable(NvmeDrv *d, uint32_t aq_depth);
/* CC.EN = 0 and wait for RDY = 0. */
int nvme_drv_disable(NvmeDrv *d);
/* CC.SHN = normal, wait for SHST = complete. */
int nvme_drv_shutdown(NvmeDrv *d);

/* Put cmd on queue qid (cid assigned), ring the doorbell.  Returns the cid. */
uint16_t nvme_drv_submit(NvmeDrv *d, uint16_t qid, NvmeSqe *cmd);
/* Place without ringing (for batching); nvme_drv_ring() rings once. */
uint16_t nvme_drv_queue(NvmeDrv *d, uint16_t qid, NvmeSqe *cmd);
void nvme_drv_ring(NvmeDrv *d, uint16_t qid);
/* Reap one completion from qid (waiting up to timeout).  0, -ETIMEDOUT, or wait_irq's -errno (device gone). */
int nvme_drv_reap(NvmeDrv *d, uint16_t qid, NvmeCqe *out, int timeout_ms);
/* Non-blocking: 1 reaped, 0 none. */
/* Completions posted on qid past the driver's head, counted without consuming them (no doorbell). */
unsigned nvme_drv_posted(NvmeDrv *d, uint16_t qid);
int nvme_drv_poll(NvmeDrv *d, uint16_t qid, NvmeCqe *out);
/* Submit and wait for that command's completion; returns the status (SC|SCT<<8|DNR<<14) or -errno. */
int nvme_drv_cmd(NvmeDrv *d, uint16_t qid, NvmeSqe *cmd, NvmeCqe *out);

/* Admin conveniences (4 KiB data buffer at gpa). */
int nvme_drv_identify(NvmeDrv *d, uint8_t cns, uint32_t nsid, uint64_t gpa);
int nvme_drv_set_features(NvmeDrv *d, uint8_t fid, uint32_t dw11, uint32_t *dw0);
int nvme_drv_create_io_queues(NvmeDrv *d, uint16_t qid, uint32_t depth, uint16_t vector);
int nvme_drv_delete_io_queues(NvmeDrv *d, uint16_t qid);
int nvme_drv_dbbuf_config(NvmeDrv *d);

/* I/O: data at gpa (PRPs built by the driver, list pages allocated once per call). */
int nvme_drv_rw(NvmeDrv *d, uint16_t qid, bool write, uint32_t nsid, uint64_t slba, uint32_t nlb,
                uint32_t lba_size, uint64_t gpa, bool fua);
/* Build PRP1/PRP2 for a buffer (allocating list pages from the bump allocator). */
void nvme_drv_build_prps(NvmeDrv *d, NvmeSqe *cmd, uint64_t gpa, uint64_t len);

static inline uint16_t nvme_drv_status(const NvmeCqe *e) { return (uint16_t) (e->status >> 1) & 0x47ff; }
