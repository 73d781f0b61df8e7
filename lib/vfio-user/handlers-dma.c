/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DMA_MAP / DMA_UNMAP (vfio-user.rst "VFIO_USER_DMA_MAP", "..._UNMAP").
 * The device is quiesced around every change so data-path translations
 * never see the table move.
 */
#include <errno.h>
#include <string.h>

#include "server-internal.h"

int vu_handle_dma_map(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_dma_map dm;
        int fd = m->n_fds ? m->fds[0] : -1;
        int ret;

        memcpy(&dm, m->body, sizeof(dm));
        if (dm.argsz != sizeof(dm) || (dm.flags & ~(VU_DMA_READ | VU_DMA_WRITE)))
                return -EINVAL;
        vu_server_quiesce(s);
        ret = vu_dma_map(s->dma, dm.addr, dm.size, dm.offset, dm.flags, fd);
        vu_server_resume(s);
        g_debug("%s: DMA_MAP [0x%" G_GINT64_MODIFIER "x, +0x%" G_GINT64_MODIFIER "x) %s%s: %s", s->name,
                dm.addr, dm.size, fd >= 0 ? "fd" : "no fd", (dm.flags & VU_DMA_WRITE) ? " rw" : " ro",
                ret < 0 ? g_strerror(-ret) : "ok");
        return ret;
}

int vu_handle_dma_unmap(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_dma_unmap du;
        int ret = 0;

        memcpy(&du, m->body, sizeof(du));
        if (du.argsz != sizeof(du))
                return -EINVAL;
        if (du.flags == VU_DMA_UNMAP_ALL) {
                if (du.addr || du.size)
                        return -EINVAL;
                vu_server_quiesce(s);
                vu_dma_unmap_all(s->dma);
                vu_server_resume(s);
        } else if (du.flags == 0) {
                vu_server_quiesce(s);
                ret = vu_dma_unmap(s->dma, du.addr, du.size);
                vu_server_resume(s);
        } else
                return -EINVAL;     /* GET_DIRTY_BITMAP (migration v1) and unknown bits */
        if (ret < 0)
                return ret;
        memcpy(vu_reply_append(s, r, sizeof(du)), &du, sizeof(du));
        return 0;
}
