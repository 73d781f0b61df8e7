/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DEVICE_GET_IRQ_INFO and DEVICE_SET_IRQS (vfio-user.rst, linux/vfio.h
 * VFIO_DEVICE_SET_IRQS semantics): no INTx; MSI-X, or MSI, with the
 * device's vectors (the other index has none); ERR and REQ with one each.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server-internal.h"

static uint32_t irq_count(const VuServer *s, uint32_t index) {
        switch (index) {
        case VU_PCI_MSIX_IRQ:
                return s->msix.nvec;
        case VU_PCI_MSI_IRQ:
                return s->msi.nvec;
        case VU_PCI_ERR_IRQ:
        case VU_PCI_REQ_IRQ:
                return 1;
        default:
                return 0;       /* INTx (pin 0) is not offered */
        }
}

int vu_handle_get_irq_info(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_irq_info in, *out;

        memcpy(&in, m->body, sizeof(in));
        if (in.argsz < sizeof(in) || in.index >= VU_PCI_NUM_IRQS)
                return -EINVAL;
        out = vu_reply_append(s, r, sizeof(*out));
        out->argsz = sizeof(*out);
        out->index = in.index;
        out->count = irq_count(s, in.index);
        switch (in.index) {
        case VU_PCI_INTX_IRQ:
                out->flags = VU_IRQ_INFO_EVENTFD | VU_IRQ_INFO_MASKABLE | VU_IRQ_INFO_AUTOMASKED;
                break;
        case VU_PCI_MSI_IRQ:
                out->flags = VU_IRQ_INFO_EVENTFD | VU_IRQ_INFO_NORESIZE;
                break;
        case VU_PCI_MSIX_IRQ:
                /* Vectors can be assigned one at a time while enabled: no NORESIZE. */
                out->flags = VU_IRQ_INFO_EVENTFD | VU_IRQ_INFO_MASKABLE;
                break;
        default:
                out->flags = VU_IRQ_INFO_EVENTFD;
                break;
        }
        return 0;
}

/*
 * The filesystem every eventfd lives on (the kernel's anonymous inodes),
 * learnt from one of our own.
 */
static dev_t efd_dev;
static mode_t efd_type;
static bool efd_known;

static void efd_learn(void) {
        struct stat st;
        int fd = eventfd(0, EFD_CLOEXEC);

        if (fd >= 0 && fstat(fd, &st) == 0) {
                efd_dev = st.st_dev;
                efd_type = st.st_mode & S_IFMT;
                efd_known = true;
        }
        if (fd >= 0)
                close(fd);
}

/*
 * Interrupt fds must be eventfds: we write to them from data-path threads,
 * and a pipe or socket blocks that write once full (a blocking pipe wedged
 * the worker after 8192 interrupts).  Without /proc (the worker's sandbox
 * cannot open files) an eventfd is told by its filesystem and file type;
 * the other anonymous-inode files (timerfd, signalfd, epoll, ...) that pass
 * refuse every write at once, so none of them can block either.
 */
static bool is_eventfd(int fd) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        struct stat st;

        pthread_once(&once, efd_learn);
        return efd_known && fstat(fd, &st) == 0 && st.st_dev == efd_dev && (st.st_mode & S_IFMT) == efd_type;
}

static bool one_bit(uint32_t v) {
        return v && !(v & (v - 1));
}

/* ERR / REQ: one vector, TRIGGER only. */
static int set_aux(VuServer *s, VuMsg *m, const struct vu_irq_set *is, uint32_t data, const uint8_t *bools) {
        bool err = is->index == VU_PCI_ERR_IRQ;

        if (is->count == 0) {
                vu_msix_set_aux_efd(&s->msix, err, -1);
                return 0;
        }
        switch (data) {
        case VU_IRQ_SET_DATA_EVENTFD:
                vu_msix_set_aux_efd(&s->msix, err, m->n_fds ? m->fds[0] : -1);
                if (m->n_fds)
                        m->fds[0] = -1;
                break;
        case VU_IRQ_SET_DATA_BOOL:
                if (bools[0])
                        vu_msix_signal_aux(&s->msix, err);
                break;
        default:
                vu_msix_signal_aux(&s->msix, err);
                break;
        }
        return 0;
}

/* MSI-X or MSI vectors of vec; a trigger from the client fires through vu_server_irq(). */
static int set_vectors(VuServer *s, VuMsix *vec, VuMsg *m, const struct vu_irq_set *is, uint32_t action,
                       uint32_t data, const uint8_t *bools) {
        if (is->count == 0) {
                vu_msix_disable(vec);
                return 0;
        }
        for (uint32_t i = 0; i < is->count; i++) {
                unsigned v = is->start + i;

                if (data == VU_IRQ_SET_DATA_BOOL && !bools[i])
                        continue;
                switch (action) {
                case VU_IRQ_SET_ACTION_TRIGGER:
                        if (data == VU_IRQ_SET_DATA_EVENTFD) {
                                /* No fds: de-assign the run [start, start+count). */
                                int fd = m->n_fds ? m->fds[i] : -1;

                                if (m->n_fds)
                                        m->fds[i] = -1;
                                vu_msix_set_efd(vec, v, fd);
                        } else
                                vu_server_irq(s, v);
                        break;
                case VU_IRQ_SET_ACTION_MASK:
                        vu_msix_set_mask(vec, v, true);
                        break;
                case VU_IRQ_SET_ACTION_UNMASK:
                        vu_msix_set_mask(vec, v, false);
                        break;
                }
        }
        return 0;
}

int vu_handle_set_irqs(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_irq_set is;
        const uint8_t *bools = m->body + sizeof(is);
        size_t data_len = m->len - sizeof(is);
        uint32_t data, action, max;

        memcpy(&is, m->body, sizeof(is));
        data = is.flags & VU_IRQ_SET_DATA_MASK;
        action = is.flags & VU_IRQ_SET_ACTION_ALL;
        if (is.argsz < sizeof(is) || is.argsz > m->len ||
            (is.flags & ~(VU_IRQ_SET_DATA_MASK | VU_IRQ_SET_ACTION_ALL)) || !one_bit(data) || !one_bit(action) ||
            is.index >= VU_PCI_NUM_IRQS)
                return -EINVAL;
        /* fds only with EVENTFD, and then one per vector or none (de-assign). */
        if (m->n_fds && (data != VU_IRQ_SET_DATA_EVENTFD || m->n_fds != is.count))
                return -EINVAL;
        if (data_len != (data == VU_IRQ_SET_DATA_BOOL ? is.count : 0))
                return -EINVAL;
        for (unsigned i = 0; i < m->n_fds; i++)
                if (!is_eventfd(m->fds[i])) {
                        g_debug("%s: SET_IRQS fd %u of %u is not an eventfd: refused", s->name, i + 1, m->n_fds);
                        return -EINVAL;
                }

        max = irq_count(s, is.index);
        if (is.count == 0) {
                /* Only TRIGGER|NONE with start 0: disable the whole index. */
                if (action != VU_IRQ_SET_ACTION_TRIGGER || data != VU_IRQ_SET_DATA_NONE || is.start != 0)
                        return -EINVAL;
        } else if (is.start >= max || is.count > max - is.start)
                return -EINVAL;
        if ((is.index == VU_PCI_ERR_IRQ || is.index == VU_PCI_REQ_IRQ) && action != VU_IRQ_SET_ACTION_TRIGGER)
                return -EINVAL;
        /* MASK/UNMASK with an eventfd is INTx resampling, and there is no INTx. */
        if (data == VU_IRQ_SET_DATA_EVENTFD && action != VU_IRQ_SET_ACTION_TRIGGER)
                return -EINVAL;

        g_debug("%s: SET_IRQS index %u start %u count %u flags 0x%x fds %u", s->name, is.index, is.start,
                is.count, is.flags, m->n_fds);
        switch (is.index) {
        case VU_PCI_MSIX_IRQ:
                return set_vectors(s, &s->msix, m, &is, action, data, bools);
        case VU_PCI_MSI_IRQ:
                return set_vectors(s, &s->msi, m, &is, action, data, bools);
        case VU_PCI_ERR_IRQ:
        case VU_PCI_REQ_IRQ:
                return set_aux(s, m, &is, data, bools);
        default:
                return 0;       /* INTx, or MSI/MSI-X without vectors: only "disable all", which has nothing to do */
        }
}
