/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a VMM does around the protocol: guest RAM as a shared memfd mapped
 * into the device, and MSI-X vectors wired to eventfds.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "client-internal.h"

int vu_guest_ram_new(uint64_t gpa_base, uint64_t size, VuGuestRam *ram) {
        int r;

        memset(ram, 0, sizeof(*ram));
        ram->fd = -1;
        if (size == 0 || size > SIZE_MAX || gpa_base + size - 1 < gpa_base)
                return -EINVAL;
        ram->fd = memfd_create("vu-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (ram->fd < 0)
                return -errno;
        if (ftruncate(ram->fd, (off_t) size) < 0)
                goto fail;
        ram->host = mmap(NULL, (size_t) size, PROT_READ | PROT_WRITE, MAP_SHARED, ram->fd, 0);
        if (ram->host == MAP_FAILED) {
                ram->host = NULL;
                goto fail;
        }
        ram->gpa_base = gpa_base;
        ram->size = size;
        return 0;
fail:
        r = -errno;
        close(ram->fd);
        ram->fd = -1;
        return r;
}

void vu_guest_ram_free(VuGuestRam *ram) {
        if (ram->host)
                munmap(ram->host, (size_t) ram->size);
        if (ram->fd >= 0)
                close(ram->fd);
        memset(ram, 0, sizeof(*ram));
        ram->fd = -1;
}

void *vu_guest_ram_ptr(const VuGuestRam *ram, uint64_t gpa, size_t len) {
        if (gpa < ram->gpa_base || gpa - ram->gpa_base > ram->size || len > ram->size - (gpa - ram->gpa_base))
                return NULL;
        return ram->host + (gpa - ram->gpa_base);
}

int vu_client_map_ram(VuClient *c, const VuGuestRam *ram) {
        return vu_client_dma_map(c, ram->gpa_base, ram->size, ram->fd, 0, VU_DMA_READ | VU_DMA_WRITE);
}

int vu_client_find_cap(VuClient *c, uint8_t id) {
        uint8_t cfg[256];
        int r = vu_client_region_read(c, VU_PCI_CONFIG_REGION, 0, cfg, sizeof(cfg));
        unsigned off, hops = 0;

        if (r < 0)
                return r;
        if (!(cfg[0x06] & 0x10))
                return -ENOENT;
        /* Bounded walk: a loop in the list cannot hold us. */
        for (off = cfg[0x34] & ~3u; off >= 0x40 && off < 0xff && hops < 48; off = cfg[off + 1] & ~3u, hops++)
                if (cfg[off] == id)
                        return (int) off;
        return -ENOENT;
}

int vu_client_enable_msix(VuClient *c, unsigned n, int *fds) {
        unsigned chunk = MAX(c->server_max_fds, 1u);
        uint16_t ctrl;
        int cap, r;

        for (unsigned i = 0; i < n; i++)
                fds[i] = -1;
        cap = vu_client_find_cap(c, 0x11);
        if (cap < 0)
                return cap;
        for (unsigned i = 0; i < n; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[i] < 0) {
                        r = -errno;
                        goto fail;
                }
        }
        for (unsigned i = 0; i < n; i += chunk) {
                unsigned k = MIN(chunk, n - i);

                r = vu_client_set_irqs(c, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER, i,
                                       k, fds + i, k, NULL);
                if (r < 0)
                        goto fail;
        }
        r = vu_client_region_read(c, VU_PCI_CONFIG_REGION, (uint64_t) cap + 2, &ctrl, sizeof(ctrl));
        if (r < 0)
                goto fail;
        ctrl = (uint16_t) ((ctrl | 0x8000) & ~0x4000);
        r = vu_client_region_write(c, VU_PCI_CONFIG_REGION, (uint64_t) cap + 2, &ctrl, sizeof(ctrl), false);
        if (r < 0)
                goto fail;
        return 0;
fail:
        for (unsigned i = 0; i < n; i++) {
                if (fds[i] >= 0)
                        close(fds[i]);
                fds[i] = -1;
        }
        return r;
}

int vu_client_wait_irq(int fd, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        uint64_t v;
        int r;

        do
                r = poll(&p, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        if (r == 0)
                return 0;
        if (read(fd, &v, sizeof(v)) != sizeof(v))
                return errno == EAGAIN ? 0 : -errno;
        return 1;
}

int vu_client_wait_irq_or_hangup(VuClient *c, int fd, int timeout_ms) {
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = c->fd, .events = POLLRDHUP } };
        uint64_t v;
        int r;

        if (c->lost)
                return c->lost;
        do
                r = poll(p, 2, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        /* An interrupt that came before the hang-up is still delivered. */
        if ((p[0].revents & POLLIN) && read(fd, &v, sizeof(v)) == sizeof(v))
                return 1;
        if (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
                return vu_client_note_error(c, -ECONNRESET);
        return 0;
}

int vu_client_enable_msi(VuClient *c, unsigned n, int *fds) {
        unsigned chunk = MAX(c->server_max_fds, 1u), log2 = 0;
        uint16_t ctrl;
        int cap, r;

        for (unsigned i = 0; i < n; i++)
                fds[i] = -1;
        cap = vu_client_find_cap(c, 0x05);
        if (cap < 0)
                return cap;
        while ((1u << log2) < n)
                log2++;
        r = vu_client_region_read(c, VU_PCI_CONFIG_REGION, (uint64_t) cap + 2, &ctrl, sizeof(ctrl));
        if (r < 0)
                return r;
        if (n == 0 || (n & (n - 1)) || log2 > ((ctrl >> 1) & 7u))
                return -EINVAL;
        for (unsigned i = 0; i < n; i++) {
                fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (fds[i] < 0) {
                        r = -errno;
                        goto fail;
                }
        }
        /* As QEMU: the guest's enable reaches the device, then every vector (in runs of max_msg_fds). */
        ctrl = (uint16_t) ((ctrl & ~0x0070u) | log2 << 4 | 0x0001);
        r = vu_client_region_write(c, VU_PCI_CONFIG_REGION, (uint64_t) cap + 2, &ctrl, sizeof(ctrl), false);
        if (r < 0)
                goto fail;
        for (unsigned i = 0; i < n; i += chunk) {
                unsigned k = MIN(chunk, n - i);

                r = vu_client_set_irqs(c, VU_PCI_MSI_IRQ, VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER, i, k,
                                       fds + i, k, NULL);
                if (r < 0)
                        goto fail;
        }
        return 0;
fail:
        for (unsigned i = 0; i < n; i++) {
                if (fds[i] >= 0)
                        close(fds[i]);
                fds[i] = -1;
        }
        return r;
}
