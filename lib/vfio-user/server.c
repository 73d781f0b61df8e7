/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vfio-user server: device definition, the listening socket, one client
 * at a time, message framing and the command table.  Handlers live in
 * handlers-*.c, one file per command family.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "server-internal.h"

/* Messages handled per vu_server_dispatch() call, so one client cannot starve the loop. */
#define VU_DISPATCH_BUDGET 64

static const char *const reset_kind_names[_VU_RESET_KIND_MAX] = {
        [VU_RESET_DEVICE] = "device",
        [VU_RESET_FLR] = "flr",
        [VU_RESET_LOST_CONN] = "lost-connection",
};

const char *vu_reset_kind_to_string(VuResetKind k) {
        return (unsigned) k < _VU_RESET_KIND_MAX ? reset_kind_names[k] : NULL;
}

/* What each command accepts: payload size bounds, fds, and its handler. */
typedef struct VuCmd {
        const char *name;
        uint32_t min, max;
        unsigned max_fds;
        VuHandler handle;
} VuCmd;

static const VuCmd cmd_table[_VU_CMD_MAX] = {
        [VU_CMD_VERSION] = { "VERSION", sizeof(struct vu_version) + 3, 4096, 0, vu_handle_version },
        [VU_CMD_DMA_MAP] = { "DMA_MAP", sizeof(struct vu_dma_map), sizeof(struct vu_dma_map), 1,
                             vu_handle_dma_map },
        [VU_CMD_DMA_UNMAP] = { "DMA_UNMAP", sizeof(struct vu_dma_unmap), sizeof(struct vu_dma_unmap), 0,
                               vu_handle_dma_unmap },
        [VU_CMD_DEVICE_GET_INFO] = { "DEVICE_GET_INFO", sizeof(struct vu_device_info),
                                     sizeof(struct vu_device_info), 0, vu_handle_device_get_info },
        [VU_CMD_DEVICE_GET_REGION_INFO] = { "DEVICE_GET_REGION_INFO", sizeof(struct vu_region_info),
                                            sizeof(struct vu_region_info), 0, vu_handle_get_region_info },
        [VU_CMD_DEVICE_GET_REGION_IO_FDS] = { "DEVICE_GET_REGION_IO_FDS", sizeof(struct vu_region_io_fds_req),
                                              sizeof(struct vu_region_io_fds_req), 0,
                                              vu_handle_get_region_io_fds },
        [VU_CMD_DEVICE_GET_IRQ_INFO] = { "DEVICE_GET_IRQ_INFO", sizeof(struct vu_irq_info),
                                         sizeof(struct vu_irq_info), 0, vu_handle_get_irq_info },
        [VU_CMD_DEVICE_SET_IRQS] = { "DEVICE_SET_IRQS", sizeof(struct vu_irq_set),
                                     sizeof(struct vu_irq_set) + 2048, VU_MAX_MSG_FDS, vu_handle_set_irqs },
        [VU_CMD_REGION_READ] = { "REGION_READ", sizeof(struct vu_region_access),
                                 sizeof(struct vu_region_access), 0, vu_handle_region_read },
        [VU_CMD_REGION_WRITE] = { "REGION_WRITE", sizeof(struct vu_region_access) + 1,
                                  sizeof(struct vu_region_access) + VU_MAX_DATA_XFER, 0,
                                  vu_handle_region_write },
        [VU_CMD_DEVICE_RESET] = { "DEVICE_RESET", 0, 0, 0, vu_handle_device_reset },
        [VU_CMD_REGION_WRITE_MULTI] = { "REGION_WRITE_MULTI",
                                        sizeof(struct vu_write_multi) + sizeof(struct vu_write_multi_entry),
                                        sizeof(struct vu_write_multi) +
                                                VU_WRITE_MULTI_MAX * sizeof(struct vu_write_multi_entry),
                                        0, vu_handle_region_write_multi },
        [VU_CMD_DEVICE_FEATURE] = { "DEVICE_FEATURE", sizeof(struct vu_device_feature),
                                    VU_MAX_MSG_SIZE - sizeof(struct vu_hdr), 0, vu_handle_device_feature },
        [VU_CMD_MIG_DATA_READ] = { "MIG_DATA_READ", sizeof(struct vu_mig_data), sizeof(struct vu_mig_data), 0,
                                   vu_handle_mig_data_read },
        [VU_CMD_MIG_DATA_WRITE] = { "MIG_DATA_WRITE", sizeof(struct vu_mig_data),
                                    sizeof(struct vu_mig_data) + VU_MAX_DATA_XFER, 0,
                                    vu_handle_mig_data_write },
};

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
        return a < b + blen && b < a + alen;
}

/* Page-rounded span of [off, off+len), for keeping mmap areas off the MSI-X pages. */
static void page_span(uint64_t off, uint64_t len, uint64_t *start, uint64_t *plen) {
        *start = off & ~(uint64_t) (VU_PGSIZE - 1);
        *plen = ((off + len + VU_PGSIZE - 1) & ~(uint64_t) (VU_PGSIZE - 1)) - *start;
}

static int setup_msix(VuServer *s, const VuServerConfig *cfg) {
        unsigned nvec = vu_pci_cfg_msix_nvec(cfg->cfg), msi = vu_pci_cfg_msi_nvec(cfg->cfg);
        uint64_t tsize, psize;

        if (msi == 0 && cfg->msi_nvec && !cfg->msix_nvec) {
                int r = vu_pci_cfg_add_msi(cfg->cfg, cfg->msi_nvec);
                if (r < 0)
                        return r;
                msi = cfg->msi_nvec;
        }
        if (cfg->msi_nvec && cfg->msi_nvec != msi) {
                g_debug("%s: msi_nvec %u differs from the MSI capability's %u", s->name, cfg->msi_nvec, msi);
                return -EINVAL;
        }
        vu_msix_init(&s->msi, msi);
        if (nvec == 0 && cfg->msix_nvec) {
                /* No capability yet: table at 0 of msix_bar, PBA right after it. */
                int r = vu_pci_cfg_add_msix(cfg->cfg, cfg->msix_nvec, cfg->msix_bar, 0, cfg->msix_bar,
                                            cfg->msix_nvec * VU_MSIX_ENTRY_SIZE);
                if (r < 0)
                        return r;
                nvec = cfg->msix_nvec;
        }
        if (cfg->msix_nvec && cfg->msix_nvec != nvec) {
                g_debug("%s: msix_nvec %u differs from the MSI-X capability's %u", s->name, cfg->msix_nvec, nvec);
                return -EINVAL;
        }
        vu_msix_init(&s->msix, nvec);
        if (nvec == 0)
                return 0;
        vu_pci_cfg_msix_layout(cfg->cfg, &s->msix_table_bar, &s->msix_table_off, &s->msix_pba_bar,
                               &s->msix_pba_off);
        if (s->msix_table_bar != cfg->msix_bar) {
                g_debug("%s: MSI-X table is in BAR%u, msix_bar says %u", s->name, s->msix_table_bar, cfg->msix_bar);
                return -EINVAL;
        }
        tsize = vu_msix_table_size(&s->msix);
        psize = vu_msix_pba_size(&s->msix);
        if (s->msix_table_off + tsize > s->bar_size[s->msix_table_bar] ||
            s->msix_pba_off + psize > s->bar_size[s->msix_pba_bar] ||
            (s->msix_table_bar == s->msix_pba_bar &&
             ranges_overlap(s->msix_table_off, tsize, s->msix_pba_off, psize))) {
                g_debug("%s: MSI-X table or PBA outside its BAR or overlapping", s->name);
                return -EINVAL;
        }
        return 0;
}

static int check_region(VuServer *s, unsigned i, const VuRegion *r) {
        uint64_t size = s->bar_size[i];
        struct stat st;

        if (r->n_areas == 0)
                return 0;
        if (r->n_areas > VU_MAX_MMAP_AREAS || r->mmap_fd < 0 || size == 0)
                return -EINVAL;
        if (fstat(r->mmap_fd, &st) < 0)
                return -errno;
        for (unsigned a = 0; a < r->n_areas; a++) {
                const VuMmapArea *ar = &r->areas[a];

                if (ar->size == 0 || ((ar->offset | ar->size) & (VU_PGSIZE - 1)) ||
                    ar->offset > size || ar->size > size - ar->offset ||
                    ar->offset + ar->size > (uint64_t) st.st_size)
                        return -EINVAL;
                for (unsigned b = 0; b < a; b++)
                        if (ranges_overlap(ar->offset, ar->size, r->areas[b].offset, r->areas[b].size))
                                return -EINVAL;
                if (s->msix.nvec) {
                        uint64_t ps, pl;

                        page_span(s->msix_table_off, vu_msix_table_size(&s->msix), &ps, &pl);
                        if (i == s->msix_table_bar && ranges_overlap(ar->offset, ar->size, ps, pl))
                                return -EINVAL;
                        page_span(s->msix_pba_off, vu_msix_pba_size(&s->msix), &ps, &pl);
                        if (i == s->msix_pba_bar && ranges_overlap(ar->offset, ar->size, ps, pl))
                                return -EINVAL;
                }
        }
        return 0;
}

int vu_server_new(const VuServerConfig *cfg, VuServer **out) {
        VuServer *s;
        int r;

        if (!cfg || !cfg->cfg || !cfg->ops || !cfg->ops->quiesce || !cfg->ops->resume ||
            cfg->msix_bar >= 6 || cfg->max_dma_maps > VU_MAX_DMA_MAPS)
                return -EINVAL;
        if (cfg->ops->migration && (!cfg->ops->migration->transition || !cfg->ops->migration->read_data ||
                                    !cfg->ops->migration->write_data))
                return -EINVAL;

        s = g_new0(VuServer, 1);
        s->name = g_strdup(cfg->name ? cfg->name : "vfio-user");
        s->ops = cfg->ops;
        s->opaque = cfg->opaque;
        s->listen_fd = s->epoll_fd = s->conn_fd = -1;
        for (unsigned i = 0; i < 6; i++) {
                s->bars[i] = cfg->bars[i];
                s->bars[i].mmap_fd = -1;
                s->bar_size[i] = vu_pci_cfg_bar_size(cfg->cfg, i);
        }
        r = setup_msix(s, cfg);
        for (unsigned i = 0; r == 0 && i < 6; i++) {
                r = check_region(s, i, &cfg->bars[i]);
                if (r == 0 && cfg->bars[i].n_areas) {
                        s->bars[i].mmap_fd = fcntl(cfg->bars[i].mmap_fd, F_DUPFD_CLOEXEC, 3);
                        if (s->bars[i].mmap_fd < 0)
                                r = -errno;
                } else
                        s->bars[i].n_areas = 0;
                if (r < 0)
                        g_debug("%s: BAR%u definition rejected: %s", s->name, i, g_strerror(-r));
        }
        if (r == 0) {
                s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
                if (s->epoll_fd < 0)
                        r = -errno;
        }
        if (r < 0) {
                s->cfg = NULL;  /* still the caller's */
                vu_server_free(s);
                return r;
        }
        s->cfg = cfg->cfg;
        vu_pci_cfg_save_defaults(s->cfg);
        s->dma = vu_dma_new(cfg->max_dma_maps);
        s->max_dma_maps = vu_dma_max_maps(s->dma);      /* what VERSION advertises */
        s->mem = vu_dma_mem(s->dma);
        s->mig.state = VU_MIG_RUNNING;
        s->client_max_fds = 1;
        s->client_max_xfer = VU_MAX_DATA_XFER;
        *out = s;
        return 0;
}

void vu_server_free(VuServer *s) {
        if (!s)
                return;
        vu_server_disconnect(s);
        close_fd(&s->listen_fd);
        if (s->listen_path)
                unlink(s->listen_path);
        g_free(s->listen_path);
        close_fd(&s->epoll_fd);
        vu_dma_free(s->dma);
        if (s->msix.efd)
                vu_msix_fini(&s->msix);
        if (s->msi.efd)
                vu_msix_fini(&s->msi);
        for (unsigned i = 0; i < 6; i++)
                close_fd(&s->bars[i].mmap_fd);
        vu_pci_cfg_free(s->cfg);
        g_free(s->rx.msg.body);
        g_free(s->tx);
        g_free(s->name);
        g_free(s);
}

static int epoll_add(VuServer *s, int fd) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

        return epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int set_listener(VuServer *s, int fd) {
        int r, fl;

        if (s->listen_fd >= 0)
                return -EBUSY;
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        r = epoll_add(s, fd);
        if (r < 0)
                return r;
        s->listen_fd = fd;
        return 0;
}

int vu_server_listen(VuServer *s, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        int fd, r;

        if (s->listen_fd >= 0)
                return -EBUSY;
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        /* A stale socket from an earlier run goes; anything else at the path is not ours. */
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                if (unlink(path) < 0)
                        return -errno;
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        r = set_listener(s, fd);
        if (r < 0) {
                close(fd);
                unlink(path);
                return r;
        }
        s->listen_path = g_strdup(path);
        g_debug("%s: listening on %s", s->name, path);
        return 0;
}

int vu_server_adopt_listener(VuServer *s, int fd) {
        return set_listener(s, fd);
}

int vu_server_fd(const VuServer *s) {
        return s->epoll_fd;
}

bool vu_server_connected(const VuServer *s) {
        return s->connected;
}

static void rx_reset(VuServer *s) {
        for (unsigned i = 0; i < s->rx.msg.n_fds; i++)
                close_fd(&s->rx.msg.fds[i]);
        s->rx.msg.n_fds = 0;
        s->rx.msg.fds_truncated = false;
        s->rx.got = 0;
}

int vu_server_attach_transport(VuServer *s, const VuTransportOps *ops, void *t) {
        if (s->connected)
                return -EBUSY;
        s->tr = ops;
        s->tr_opaque = t;
        s->conn_fd = -1;
        s->connected = true;
        memset(&s->mig.info, 0, sizeof(s->mig.info));
        s->negotiated = false;
        s->client_max_fds = 1;
        s->client_max_xfer = VU_MAX_DATA_XFER;
        rx_reset(s);
        s->stats.connects++;
        if (s->ops->attach)
                s->ops->attach(s->opaque);
        return 0;
}

int vu_server_attach_fd(VuServer *s, int fd) {
        int r, fl;

        if (s->connected)
                return -EBUSY;
        fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
        r = epoll_add(s, fd);
        if (r < 0)
                return r;
        vu_server_attach_transport(s, &vu_sock_transport_ops, (void *) (intptr_t) fd);
        s->conn_fd = fd;
        g_debug("%s: client attached", s->name);
        return 0;
}

void vu_server_quiesce(VuServer *s) {
        s->ops->quiesce(s->opaque);
}

void vu_server_resume(VuServer *s) {
        s->ops->resume(s->opaque);
}

void vu_server_reset_device(VuServer *s, VuResetKind kind) {
        g_debug("%s: reset (%s)", s->name, vu_reset_kind_to_string(kind));
        vu_server_quiesce(s);
        if (s->ops->reset)
                s->ops->reset(s->opaque, kind);
        vu_pci_cfg_reset(s->cfg);
        vu_msix_reset(&s->msix);
        vu_msix_reset(&s->msi);
        vu_mig_reset(s);
        vu_server_resume(s);
}

void vu_server_disconnect(VuServer *s) {
        if (!s->connected)
                return;
        g_debug("%s: client gone, dropping its maps and eventfds", s->name);
        if (s->conn_fd >= 0)
                epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, s->conn_fd, NULL);
        if (s->tr->close)
                s->tr->close(s->tr_opaque);
        s->conn_fd = -1;
        s->connected = false;
        s->negotiated = false;
        rx_reset(s);

        vu_server_quiesce(s);
        vu_dma_logging_stop(s->dma);
        vu_dma_unmap_all(s->dma);
        vu_msix_drop_client(&s->msix);
        vu_msix_drop_client(&s->msi);
        if (s->ops->reset)
                s->ops->reset(s->opaque, VU_RESET_LOST_CONN);
        vu_pci_cfg_reset(s->cfg);
        vu_mig_reset(s);
        vu_server_resume(s);
        if (s->ops->detach)
                s->ops->detach(s->opaque);
}

void *vu_reply_append(VuServer *s, VuReply *r, size_t len) {
        uint8_t *p;

        if (r->len + len > s->tx_cap) {
                s->tx_cap = MAX(r->len + len, MAX(s->tx_cap * 2, 256));
                s->tx = g_realloc(s->tx, s->tx_cap);
        }
        p = s->tx + r->len;
        memset(p, 0, len);
        r->len += len;
        return p;
}

static int send_reply(VuServer *s, const struct vu_hdr *req, int err, const VuReply *r) {
        struct vu_hdr h = {
                .msg_id = req->msg_id,
                .cmd = req->cmd,
                .flags = VU_F_TYPE_REPLY,
                .size = sizeof(struct vu_hdr),
        };
        struct iovec iov[2] = { { &h, sizeof(h) } };
        unsigned iovcnt = 1;

        if (err) {
                h.flags |= VU_F_ERROR;
                h.error = (uint32_t) err;
                return s->tr->send(s->tr_opaque, iov, 1, NULL, 0);
        }
        if (r->len) {
                h.size += (uint32_t) r->len;
                iov[1].iov_base = s->tx;
                iov[1].iov_len = r->len;
                iovcnt = 2;
        }
        return s->tr->send(s->tr_opaque, iov, iovcnt, r->fds, r->n_fds);
}

/* Validate a complete message against the command table and run its handler.  Positive errno or 0. */
static int handle(VuServer *s, VuMsg *m, VuReply *r) {
        const VuCmd *c = m->hdr.cmd < _VU_CMD_MAX ? &cmd_table[m->hdr.cmd] : NULL;
        uint32_t known = VU_F_TYPE_MASK | VU_F_NO_REPLY;

        if (!c || !c->handle) {
                g_debug("%s: unknown command %u", s->name, m->hdr.cmd);
                return ENOSYS;
        }
        if (m->hdr.flags & ~known) {
                g_debug("%s: %s with bad flags 0x%x", s->name, c->name, m->hdr.flags);
                return EINVAL;
        }
        if (m->fds_truncated || m->n_fds > c->max_fds) {
                g_debug("%s: %s with %u fds%s", s->name, c->name, m->n_fds,
                        m->fds_truncated ? " (and more)" : "");
                return EINVAL;
        }
        if (m->hdr.cmd == VU_CMD_VERSION ? s->negotiated : !s->negotiated) {
                g_debug("%s: %s out of order (VERSION first, once)", s->name, c->name);
                return EINVAL;
        }
        if (m->len < c->min || m->len > c->max) {
                g_debug("%s: %s payload of %zu bytes, want %u..%u", s->name, c->name, m->len, c->min, c->max);
                return EINVAL;
        }
        if (!vu_mig_cmd_allowed(s, m->hdr.cmd)) {
                g_debug("%s: %s not allowed in migration state %s", s->name, c->name,
                        vu_mig_state_to_string(s->mig.state));
                return EBUSY;
        }
        return -c->handle(s, m, r);
}

/* Handle the assembled message.  0, or -ENOTCONN if the reply could not be sent. */
static int process(VuServer *s) {
        VuMsg *m = &s->rx.msg;
        VuReply r = { 0 };
        int err, ret;

        m->hdr = s->rx.hdr;
        m->len = m->hdr.size - sizeof(struct vu_hdr);
        s->stats.messages++;
        err = handle(s, m, &r);
        if (err < 0 || err > 4095)
                err = EIO;
        if (err)
                s->stats.errors++;
        rx_reset(s);    /* closes the fds the handler did not take */
        if (m->hdr.flags & VU_F_NO_REPLY)
                return 0;
        ret = send_reply(s, &m->hdr, err, &r);
        if (ret < 0) {
                g_debug("%s: cannot send reply: %s", s->name, g_strerror(-ret));
                vu_server_disconnect(s);
                return -ENOTCONN;
        }
        return 0;
}

/* Read what is available of the current message.  1 when complete, 0 when waiting, -ENOTCONN. */
static int rx_step(VuServer *s) {
        VuMsg *m = &s->rx.msg;

        for (;;) {
                size_t want;
                uint8_t *dst;
                ssize_t n;

                if (s->rx.got < sizeof(struct vu_hdr)) {
                        dst = (uint8_t *) &s->rx.hdr + s->rx.got;
                        want = sizeof(struct vu_hdr) - s->rx.got;
                } else {
                        dst = m->body + (s->rx.got - sizeof(struct vu_hdr));
                        want = s->rx.hdr.size - s->rx.got;
                }
                n = s->tr->recv(s->tr_opaque, dst, want, m->fds, VU_MAX_MSG_FDS, &m->n_fds,
                                &m->fds_truncated);
                if (n == -EAGAIN)
                        return 0;
                if (n <= 0) {
                        if (n < 0)
                                g_debug("%s: receive failed: %s", s->name, g_strerror((int) -n));
                        vu_server_disconnect(s);
                        return -ENOTCONN;
                }
                s->rx.got += (size_t) n;
                if (s->rx.got == sizeof(struct vu_hdr)) {
                        const struct vu_hdr *h = &s->rx.hdr;

                        /* Without a sane size and type the next message cannot be found: the stream is lost. */
                        if (h->size < sizeof(struct vu_hdr) || h->size > VU_MAX_MSG_SIZE ||
                            (h->flags & VU_F_TYPE_MASK) != VU_F_TYPE_CMD) {
                                g_debug("%s: untrustworthy header (size %u, flags 0x%x): closing", s->name,
                                        h->size, h->flags);
                                vu_server_disconnect(s);
                                return -ENOTCONN;
                        }
                        if (h->size - sizeof(struct vu_hdr) > s->rx.body_cap) {
                                s->rx.body_cap = h->size - sizeof(struct vu_hdr);
                                m->body = g_realloc(m->body, s->rx.body_cap);
                        }
                }
                if (s->rx.got >= sizeof(struct vu_hdr) && s->rx.got == s->rx.hdr.size)
                        return 1;
        }
}

static void accept_pending(VuServer *s) {
        for (;;) {
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (fd < 0)
                        return;
                if (s->connected) {
                        g_debug("%s: refusing a second client", s->name);
                        close(fd);
                        continue;
                }
                if (vu_server_attach_fd(s, fd) < 0)
                        close(fd);
        }
}

int vu_server_dispatch(VuServer *s) {
        if (s->listen_fd >= 0 && !s->connected)
                accept_pending(s);
        if (s->connected) {
                for (unsigned budget = VU_DISPATCH_BUDGET; budget > 0; budget--) {
                        int r = rx_step(s);

                        if (r < 0)
                                return r;
                        if (r == 0)
                                break;
                        if (process(s) < 0)
                                return -ENOTCONN;
                        if (!s->connected)
                                return -ENOTCONN;
                }
        }
        if (s->listen_fd >= 0 && s->connected)
                accept_pending(s);
        return 0;
}

const VuMem *vu_server_mem(VuServer *s) {
        return &s->mem;
}

VuDma *vu_server_dma(VuServer *s) {
        return s->dma;
}

VuPciCfg *vu_server_cfg(VuServer *s) {
        return s->cfg;
}

int vu_server_irq(VuServer *s, unsigned vector) {
        int r = vu_msix_fire(s->msi.nvec ? &s->msi : &s->msix, vector);

        if (r == 0)
                __atomic_fetch_add(&s->stats.irqs, 1, __ATOMIC_RELAXED);
        return r;
}

void vu_server_irq_err(VuServer *s) {
        vu_msix_signal_aux(&s->msix, true);
}

void vu_server_irq_req(VuServer *s) {
        vu_msix_signal_aux(&s->msix, false);
}

void vu_server_mig_info(const VuServer *s, VuMigInfo *info) {
        *info = s->mig.info;
        info->state = s->mig.state;
}

void vu_server_get_stats(const VuServer *s, VuServerStats *st) {
        *st = s->stats;
        st->irqs = __atomic_load_n(&s->stats.irqs, __ATOMIC_RELAXED);
}
