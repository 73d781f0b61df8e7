/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Namespaces: one block backend each, identifiers derived from a host-wide
 * seed, and runtime add/remove/resize with the Namespace Attribute Changed
 * event (NVMe 1.4 §5.2, §5.14.1.4).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include <glib.h>

#include "nvme-internal.h"

NvmeNs *nvme_ns_get(NvmeCtrl *c, uint32_t nsid) {
        if (nsid == 0 || nsid > NVME_MAX_NS)
                return NULL;
        return c->ns[nsid];
}

void nvme_ns_free(NvmeNs *ns) {
        if (!ns)
                return;
        for (unsigned i = 0; i < NVME_MAX_IOTHREADS; i++)
                if (ns->be[i] != ns->backend)
                        blk_backend_free(ns->be[i]);
        blk_backend_free(ns->backend);
        g_free(ns);
}

static void nvme_hash(const char *tag, const uint8_t host_uuid[16], const char *name, uint32_t nsid,
                      uint8_t out[32]) {
        g_autoptr(GChecksum) h = g_checksum_new(G_CHECKSUM_SHA256);
        uint8_t le[4] = { nsid & 0xff, (nsid >> 8) & 0xff, (nsid >> 16) & 0xff, nsid >> 24 };
        gsize len = 32;

        g_checksum_update(h, (const guchar *) tag, (gssize) strlen(tag) + 1);
        g_checksum_update(h, host_uuid, 16);
        g_checksum_update(h, (const guchar *) name, (gssize) strlen(name) + 1);
        g_checksum_update(h, le, 4);
        g_checksum_get_digest(h, out, &len);
}

void nvme_derive_ns_ids(const uint8_t host_uuid[16], const char *name, uint32_t nsid,
                        uint8_t nguid[16], uint8_t eui64[8], uint8_t uuid[16]) {
        uint8_t d[32], u[32];

        nvme_hash("vfu-nvme-nguid-eui64", host_uuid, name, nsid, d);
        memcpy(nguid, d, 16);
        memcpy(eui64, d + 16, 8);
        eui64[0] = (uint8_t) ((eui64[0] & ~0x01u) | 0x02u);   /* locally administered, unicast */
        nvme_hash("vfu-nvme-uuid", host_uuid, name, nsid, u);
        memcpy(uuid, u, 16);
        uuid[6] = (uint8_t) ((uuid[6] & 0x0fu) | 0x50u);      /* name-based (SHA) version 5 */
        uuid[8] = (uint8_t) ((uuid[8] & 0x3fu) | 0x80u);      /* RFC 4122 variant */
}

static bool nvme_live(NvmeCtrl *c) {
        return c->state == NVME_STATE_READY;
}

int nvme_ctrl_ns_add(NvmeCtrl *c, uint32_t nsid, BlkBackend *b, uint32_t block_size, bool read_only) {
        if (nsid == 0 || nsid > NVME_MAX_NS || (block_size != 512 && block_size != 4096) ||
            b->size < block_size || (b->direct && b->dio_align > block_size)) {
                blk_backend_free(b);
                return -EINVAL;
        }
        NvmeNs *ns = g_new0(NvmeNs, 1);
        ns->nsid = nsid;
        ns->backend = ns->be[0] = b;
        for (unsigned i = 1; i < c->n_io; i++) {
                int r = blk_backend_clone(b, &ns->be[i]);
                if (r < 0) {
                        nvme_ns_free(ns);
                        return r;
                }
        }
        ns->block_size = block_size;
        ns->lbads = block_size == 512 ? 9 : 12;
        ns->nsze = b->size >> ns->lbads;
        ns->read_only = read_only || b->read_only;
        nvme_derive_ns_ids(c->cfg.host_uuid, c->name, nsid, ns->nguid, ns->eui64, ns->uuid);

        nvme_ctrl_quiesce(c);
        if (c->ns[nsid]) {
                nvme_ctrl_resume(c);
                nvme_ns_free(ns);
                return -EEXIST;
        }
        for (unsigned i = 0; i < c->n_io; i++) {
                int fd = blk_backend_fd(ns->be[i]);
                struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
                if (epoll_ctl(c->io[i].epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        int r = -errno;
                        while (i-- > 0)
                                epoll_ctl(c->io[i].epoll_fd, EPOLL_CTL_DEL, blk_backend_fd(ns->be[i]), NULL);
                        nvme_ctrl_resume(c);
                        nvme_ns_free(ns);
                        return r;
                }
        }
        c->ns[nsid] = ns;
        if (nvme_live(c))
                nvme_ns_changed(c, nsid);
        nvme_ctrl_resume(c);
        return 0;
}

int nvme_ctrl_ns_remove(NvmeCtrl *c, uint32_t nsid) {
        NvmeNs *ns;

        nvme_ctrl_quiesce(c);   /* in-flight I/O on it finishes first */
        ns = nvme_ns_get(c, nsid);
        if (!ns) {
                nvme_ctrl_resume(c);
                return -ENOENT;
        }
        for (unsigned i = 0; i < c->n_io; i++)
                epoll_ctl(c->io[i].epoll_fd, EPOLL_CTL_DEL, blk_backend_fd(ns->be[i]), NULL);
        c->ns[nsid] = NULL;
        if (nvme_live(c))
                nvme_ns_changed(c, nsid);
        nvme_ctrl_resume(c);
        nvme_ns_free(ns);
        return 0;
}

int nvme_ctrl_ns_resize(NvmeCtrl *c, uint32_t nsid, uint64_t new_size) {
        int r;

        nvme_ctrl_quiesce(c);
        NvmeNs *ns = nvme_ns_get(c, nsid);
        if (!ns) {
                r = -ENOENT;
        } else {
                r = blk_backend_resize(ns->backend, new_size);
                /* The other threads' contexts: the file has the size already. */
                for (unsigned i = 1; r == 0 && i < c->n_io; i++)
                        r = blk_backend_resize(ns->be[i], ns->backend->size);
                if (r == 0 && (ns->backend->size >> ns->lbads) != ns->nsze) {
                        ns->nsze = ns->backend->size >> ns->lbads;
                        if (nvme_live(c))
                                nvme_ns_changed(c, nsid);
                }
        }
        nvme_ctrl_resume(c);
        return r;
}

uint64_t nvme_ctrl_ns_size(NvmeCtrl *c, uint32_t nsid) {
        NvmeNs *ns = nvme_ns_get(c, nsid);
        return ns ? ns->nsze << ns->lbads : 0;
}

void nvme_ctrl_ns_waiting(NvmeCtrl *c, uint32_t nsid, char *buf, size_t size) {
        NvmeNs *ns = nvme_ns_get(c, nsid);

        if (size)
                buf[0] = '\0';
        for (unsigned i = 0; ns && i < c->n_io && size && !buf[0]; i++)
                blk_backend_waiting(ns->be[i], buf, size);
}
