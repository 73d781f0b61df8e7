/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * MSI-X delivery (PCIe Base 6.0 §6.1.4.2 / §7.7.2): a vector is delivered
 * by writing its eventfd (a KVM irqfd on the client side) only when MSI-X
 * is enabled, the function is not masked, the vector is unmasked in the
 * table and by SET_IRQS, and an eventfd is assigned; otherwise its PBA bit
 * is set and it is delivered when the last of these conditions clears.
 *
 * The client emulates the table for its guest (QEMU never forwards table
 * writes), so the table starts with every vector unmasked and only a
 * client that writes the table itself masks vectors here.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "msix.h"

#define CTRL_MASKBIT 0x1u

void vu_msix_init(VuMsix *m, unsigned nvec) {
        g_mutex_init(&m->lock);
        m->nvec = nvec;
        m->table = g_new0(uint32_t, (size_t) nvec * 4 + 1);
        m->pba = g_new0(uint64_t, (nvec + 63) / 64 + 1);
        m->efd = g_new(int, nvec + 1);
        m->irq_mask = g_new0(uint8_t, nvec + 1);
        for (unsigned i = 0; i < nvec; i++)
                m->efd[i] = -1;
        m->err_efd = m->req_efd = -1;
}

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

void vu_msix_fini(VuMsix *m) {
        vu_msix_drop_client(m);
        g_free(m->table);
        g_free(m->pba);
        g_free(m->efd);
        g_free(m->irq_mask);
        g_mutex_clear(&m->lock);
}

static void signal_fd(VuMsix *m, int fd) {
        uint64_t one = 1;

        /* An eventfd counter cannot overflow in practice; a failed write loses nothing we could recover. */
        if (write(fd, &one, sizeof(one)) == sizeof(one))
                m->fired++;
}

static bool deliverable(const VuMsix *m, unsigned n) {
        return m->enabled && !m->fmask && !(m->table[n * 4 + 3] & CTRL_MASKBIT) &&
               !m->irq_mask[n] && m->efd[n] >= 0;
}

static bool pending(const VuMsix *m, unsigned n) {
        return m->pba[n / 64] & (1ull << (n % 64));
}

static void fire_locked(VuMsix *m, unsigned n) {
        if (deliverable(m, n)) {
                m->pba[n / 64] &= ~(1ull << (n % 64));
                signal_fd(m, m->efd[n]);
        } else
                m->pba[n / 64] |= 1ull << (n % 64);
}

static void flush_locked(VuMsix *m, unsigned n) {
        if (pending(m, n) && deliverable(m, n))
                fire_locked(m, n);
}

static void flush_all_locked(VuMsix *m) {
        for (unsigned w = 0; w < (m->nvec + 63) / 64; w++) {
                if (!m->pba[w])
                        continue;
                for (unsigned b = 0; b < 64 && w * 64 + b < m->nvec; b++)
                        flush_locked(m, w * 64 + b);
        }
}

int vu_msix_fire(VuMsix *m, unsigned n) {
        if (n >= m->nvec)
                return -EINVAL;
        g_mutex_lock(&m->lock);
        if (m->nalloc)
                n &= m->nalloc - 1;
        fire_locked(m, n);
        g_mutex_unlock(&m->lock);
        return 0;
}

void vu_msix_set_cfg(VuMsix *m, bool enabled, bool fmask) {
        g_mutex_lock(&m->lock);
        m->enabled = enabled;
        m->fmask = fmask;
        flush_all_locked(m);
        g_mutex_unlock(&m->lock);
}

void vu_msi_set_cfg(VuMsix *m, bool enabled, unsigned nalloc, uint32_t mask) {
        g_mutex_lock(&m->lock);
        m->enabled = enabled;
        m->fmask = false;
        m->nalloc = nalloc && nalloc <= m->nvec && !(nalloc & (nalloc - 1)) ? nalloc : 1;
        for (unsigned n = 0; n < m->nvec; n++) {
                m->table[n * 4 + 3] = n < 32 ? (mask >> n) & CTRL_MASKBIT : 0;
                /* Pending on a vector no longer granted: it is its alias's now. */
                if (n >= m->nalloc && pending(m, n)) {
                        m->pba[n / 64] &= ~(1ull << (n % 64));
                        m->pba[0] |= 1ull << (n & (m->nalloc - 1));
                }
        }
        flush_all_locked(m);
        g_mutex_unlock(&m->lock);
}

void vu_msix_set_efd(VuMsix *m, unsigned n, int efd) {
        g_mutex_lock(&m->lock);
        close_fd(&m->efd[n]);
        m->efd[n] = efd;
        flush_locked(m, n);
        g_mutex_unlock(&m->lock);
}

void vu_msix_set_mask(VuMsix *m, unsigned n, bool masked) {
        g_mutex_lock(&m->lock);
        m->irq_mask[n] = masked;
        flush_locked(m, n);
        g_mutex_unlock(&m->lock);
}

void vu_msix_disable(VuMsix *m) {
        g_mutex_lock(&m->lock);
        for (unsigned i = 0; i < m->nvec; i++) {
                close_fd(&m->efd[i]);
                m->irq_mask[i] = 0;
        }
        g_mutex_unlock(&m->lock);
}

void vu_msix_reset(VuMsix *m) {
        g_mutex_lock(&m->lock);
        memset(m->table, 0, (size_t) m->nvec * 4 * sizeof(uint32_t));
        memset(m->pba, 0, (m->nvec + 63) / 64 * sizeof(uint64_t));
        memset(m->irq_mask, 0, m->nvec);
        m->enabled = m->fmask = false;
        g_mutex_unlock(&m->lock);
}

void vu_msix_drop_client(VuMsix *m) {
        vu_msix_disable(m);
        vu_msix_reset(m);
        g_mutex_lock(&m->lock);
        close_fd(&m->err_efd);
        close_fd(&m->req_efd);
        g_mutex_unlock(&m->lock);
}

void vu_msix_table_read(VuMsix *m, size_t off, void *buf, size_t len) {
        g_mutex_lock(&m->lock);
        memcpy(buf, (uint8_t *) m->table + off, len);
        g_mutex_unlock(&m->lock);
}

void vu_msix_table_write(VuMsix *m, size_t off, const void *buf, size_t len) {
        size_t first = off / VU_MSIX_ENTRY_SIZE, last = (off + len - 1) / VU_MSIX_ENTRY_SIZE;

        g_mutex_lock(&m->lock);
        memcpy((uint8_t *) m->table + off, buf, len);
        /* Only the mask bit of Vector Control is defined; the rest is reserved (reads 0). */
        for (size_t v = first; v <= last; v++) {
                m->table[v * 4 + 3] &= CTRL_MASKBIT;
                flush_locked(m, (unsigned) v);
        }
        g_mutex_unlock(&m->lock);
}

void vu_msix_pba_read(VuMsix *m, size_t off, void *buf, size_t len) {
        g_mutex_lock(&m->lock);
        memcpy(buf, (uint8_t *) m->pba + off, len);
        g_mutex_unlock(&m->lock);
}

void vu_msix_set_aux_efd(VuMsix *m, bool err, int efd) {
        g_mutex_lock(&m->lock);
        close_fd(err ? &m->err_efd : &m->req_efd);
        if (err)
                m->err_efd = efd;
        else
                m->req_efd = efd;
        g_mutex_unlock(&m->lock);
}

void vu_msix_signal_aux(VuMsix *m, bool err) {
        g_mutex_lock(&m->lock);
        if ((err ? m->err_efd : m->req_efd) >= 0)
                signal_fd(m, err ? m->err_efd : m->req_efd);
        g_mutex_unlock(&m->lock);
}
