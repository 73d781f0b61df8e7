/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Interrupt state of a device: the MSI-X table and PBA the server
 * implements in the device's MSI-X BAR, the per-vector eventfds the client
 * assigned with SET_IRQS, and the ERR/REQ eventfds.  Every field is under
 * one mutex so vu_msix_fire() can run on any thread.  A device offering
 * MSI instead uses a second instance for the MSI vectors: its "table" holds
 * only the Mask Bits of the capability (one vector control word each), its
 * PBA the Pending Bits.  Not installed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define VU_MSIX_ENTRY_SIZE 16

typedef struct VuMsix {
        GMutex lock;
        unsigned nvec;
        uint32_t *table;        /* 4 dwords per vector: addr lo, addr hi, data, vector control */
        uint64_t *pba;          /* pending bits */
        int *efd;               /* per-vector eventfd, -1 none */
        uint8_t *irq_mask;      /* SET_IRQS MASK/UNMASK state */
        bool enabled, fmask;    /* mirrored from the config-space capability */
        unsigned nalloc;        /* MSI: vectors enabled (Multiple Message Enable); 0 for MSI-X */
        int err_efd, req_efd;
        uint64_t fired;         /* eventfd signals sent */
} VuMsix;

void vu_msix_init(VuMsix *m, unsigned nvec);
void vu_msix_fini(VuMsix *m);

static inline size_t vu_msix_table_size(const VuMsix *m) {
        return (size_t) m->nvec * VU_MSIX_ENTRY_SIZE;
}
static inline size_t vu_msix_pba_size(const VuMsix *m) {
        return ((size_t) m->nvec + 63) / 64 * 8;
}

/* Deliver vector n or record it pending.  -EINVAL for n ≥ nvec. */
int vu_msix_fire(VuMsix *m, unsigned n);
/* MSI-X enable / function mask changed in config space: deliver what became deliverable. */
void vu_msix_set_cfg(VuMsix *m, bool enabled, bool fmask);
/*
 * MSI capability changed: enable, nalloc vectors granted (a power of two;
 * a vector n ≥ nalloc is delivered as n mod nalloc, as a function with
 * fewer messages than it asked for does, §7.7.1.2), Mask Bits.
 */
void vu_msi_set_cfg(VuMsix *m, bool enabled, unsigned nalloc, uint32_t mask);
/* Install efd (taken over; -1 de-assigns) for vector n and deliver it if pending. */
void vu_msix_set_efd(VuMsix *m, unsigned n, int efd);
void vu_msix_set_mask(VuMsix *m, unsigned n, bool masked);
/* SET_IRQS disable: close every vector eventfd, clear SET_IRQS masks. */
void vu_msix_disable(VuMsix *m);
/* Device reset: table and PBA to power-on values, MSI-X off; eventfds stay. */
void vu_msix_reset(VuMsix *m);
/* Client gone: everything above plus every eventfd (ERR/REQ too). */
void vu_msix_drop_client(VuMsix *m);

/* Table / PBA accesses; off and len are already checked against the sizes. */
void vu_msix_table_read(VuMsix *m, size_t off, void *buf, size_t len);
void vu_msix_table_write(VuMsix *m, size_t off, const void *buf, size_t len);
void vu_msix_pba_read(VuMsix *m, size_t off, void *buf, size_t len);

/* ERR / REQ: install (taken over, -1 de-assigns) and signal. */
void vu_msix_set_aux_efd(VuMsix *m, bool err, int efd);
void vu_msix_signal_aux(VuMsix *m, bool err);
