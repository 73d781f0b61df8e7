/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Regions: GET_REGION_INFO (with the argsz retry and the sparse-mmap
 * capability), GET_REGION_IO_FDS, REGION_READ/WRITE and REGION_WRITE_MULTI
 * (vfio-user.rst), and the access path behind them: config space, the
 * MSI-X table and PBA, mappable areas (their memfd) and the device's ops.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "server-internal.h"

uint64_t vu_server_region_size(const VuServer *s, unsigned idx) {
        if (idx < 6)
                return s->bar_size[idx];
        if (idx == VU_PCI_CONFIG_REGION)
                return VU_PCI_CFG_SIZE;
        return 0;       /* ROM, VGA and anything beyond */
}

static bool region_mappable(const VuServer *s, unsigned idx) {
        return idx < 6 && s->bar_size[idx] && s->bars[idx].n_areas && s->client_max_fds >= 1;
}

int vu_handle_get_region_info(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_region_info in, *out;
        size_t caps_len = 0, need;
        bool fits;

        memcpy(&in, m->body, sizeof(in));
        if (in.argsz < sizeof(in) || in.index >= VU_PCI_NUM_REGIONS)
                return -EINVAL;
        if (region_mappable(s, in.index))
                caps_len = sizeof(struct vu_cap_sparse_mmap) +
                           s->bars[in.index].n_areas * sizeof(struct vu_sparse_area);
        need = sizeof(in) + caps_len;
        fits = in.argsz >= need;

        out = vu_reply_append(s, r, fits ? need : sizeof(in));
        out->argsz = (uint32_t) need;
        out->index = in.index;
        out->size = vu_server_region_size(s, in.index);
        out->offset = 0;        /* every region has its own fd */
        if (out->size)
                out->flags = VU_REGION_F_READ | VU_REGION_F_WRITE;
        if (caps_len) {
                out->flags |= VU_REGION_F_MMAP | VU_REGION_F_CAPS;
                /* Capabilities and the fd go out only with the full answer; QEMU retries with it. */
                if (fits) {
                        struct vu_cap_sparse_mmap *cap = (void *) (vu_reply_data(s) + sizeof(in));
                        const VuRegion *reg = &s->bars[in.index];

                        out = (void *) vu_reply_data(s);
                        out->cap_offset = sizeof(in);
                        cap->header.id = VU_REGION_INFO_CAP_SPARSE_MMAP;
                        cap->header.version = 1;
                        cap->header.next = 0;
                        cap->nr_areas = reg->n_areas;
                        for (unsigned i = 0; i < reg->n_areas; i++) {
                                struct vu_sparse_area a = { reg->areas[i].offset, reg->areas[i].size };

                                memcpy(&cap->areas[i], &a, sizeof(a));
                        }
                        r->fds[0] = reg->mmap_fd;
                        r->n_fds = 1;
                }
        }
        return 0;
}

/* No ioeventfds are registered by our devices: the answer lists no sub-regions. */
int vu_handle_get_region_io_fds(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_region_io_fds_req in, *out;

        memcpy(&in, m->body, sizeof(in));
        if (in.argsz < sizeof(in) || in.flags || in.index >= VU_PCI_NUM_REGIONS ||
            vu_server_region_size(s, in.index) == 0)
                return -EINVAL;
        out = vu_reply_append(s, r, sizeof(*out));
        out->argsz = sizeof(*out);
        out->flags = 0;
        out->index = in.index;
        out->count = 0;
        return 0;
}

static void cfg_events(VuServer *s, unsigned ev) {
        if (ev & VU_CFG_EV_FLR) {
                vu_server_reset_device(s, VU_RESET_FLR);
                ev &= ~(unsigned) VU_CFG_EV_FLR;
        }
        if (ev & VU_CFG_EV_MSIX)
                vu_msix_set_cfg(&s->msix, vu_pci_cfg_msix_enabled(s->cfg), vu_pci_cfg_msix_masked(s->cfg));
        if (ev & VU_CFG_EV_MSI)
                vu_msi_set_cfg(&s->msi, vu_pci_cfg_msi_enabled(s->cfg), vu_pci_cfg_msi_nalloc(s->cfg),
                               vu_pci_cfg_msi_mask(s->cfg));
        if (ev && s->ops->cfg_event)
                s->ops->cfg_event(s->opaque, ev);
}

enum seg_kind { SEG_OPS, SEG_TABLE, SEG_PBA, SEG_AREA };

/* What serves the bytes at off of BAR idx, and where that stretch ends. */
static enum seg_kind classify(const VuServer *s, unsigned idx, uint64_t off, uint64_t *end) {
        struct { uint64_t lo, len; enum seg_kind k; } spans[2 + VU_MAX_MMAP_AREAS];
        unsigned n = 0;

        if (s->msix.nvec && idx == s->msix_table_bar)
                spans[n++] = (typeof(spans[0])) { s->msix_table_off, vu_msix_table_size(&s->msix), SEG_TABLE };
        if (s->msix.nvec && idx == s->msix_pba_bar)
                spans[n++] = (typeof(spans[0])) { s->msix_pba_off, vu_msix_pba_size(&s->msix), SEG_PBA };
        for (unsigned i = 0; i < s->bars[idx].n_areas; i++)
                spans[n++] = (typeof(spans[0])) { s->bars[idx].areas[i].offset, s->bars[idx].areas[i].size,
                                                  SEG_AREA };

        *end = s->bar_size[idx];
        for (unsigned i = 0; i < n; i++) {
                if (off >= spans[i].lo && off - spans[i].lo < spans[i].len) {
                        *end = spans[i].lo + spans[i].len;
                        return spans[i].k;
                }
                if (spans[i].lo > off && spans[i].lo < *end)
                        *end = spans[i].lo;
        }
        return SEG_OPS;
}

static int area_io(int fd, uint64_t off, void *buf, size_t len, bool write) {
        ssize_t n = write ? pwrite(fd, buf, len, (off_t) off) : pread(fd, buf, len, (off_t) off);

        if (n < 0)
                return -errno;
        if ((size_t) n != len)
                return -EIO;
        return 0;
}

int vu_server_region_access(VuServer *s, unsigned idx, uint64_t off, void *buf, size_t len, bool write) {
        uint8_t *b = buf;

        if (idx == VU_PCI_CONFIG_REGION) {
                unsigned ev = 0;
                int ret;

                if (!write) {
                        if (s->msi.nvec) {
                                uint32_t pending;

                                vu_msix_pba_read(&s->msi, 0, &pending, sizeof(pending));
                                vu_pci_cfg_msi_set_pending(s->cfg, pending);
                        }
                        return vu_pci_cfg_read(s->cfg, (uint32_t) off, buf, len);
                }
                ret = vu_pci_cfg_write(s->cfg, (uint32_t) off, buf, len, &ev);
                if (ret == 0)
                        cfg_events(s, ev);
                return ret;
        }
        if (idx >= 6)
                return -EINVAL;

        while (len > 0) {
                uint64_t end;
                enum seg_kind k = classify(s, idx, off, &end);
                size_t n = (size_t) MIN((uint64_t) len, end - off);
                const VuRegion *reg = &s->bars[idx];
                int ret = 0;

                switch (k) {
                case SEG_TABLE:
                        if (write)
                                vu_msix_table_write(&s->msix, off - s->msix_table_off, b, n);
                        else
                                vu_msix_table_read(&s->msix, off - s->msix_table_off, b, n);
                        break;
                case SEG_PBA:
                        /* The PBA is read-only; writes are dropped (PCIe 6.0 §7.7.2.5). */
                        if (!write)
                                vu_msix_pba_read(&s->msix, off - s->msix_pba_off, b, n);
                        break;
                case SEG_AREA:
                        ret = area_io(reg->mmap_fd, off, b, n, write);
                        break;
                case SEG_OPS:
                        if (reg->ops && write && reg->ops->write)
                                ret = reg->ops->write(reg->opaque, off, b, n);
                        else if (reg->ops && !write && reg->ops->read)
                                ret = reg->ops->read(reg->opaque, off, b, n);
                        else if (!write)
                                memset(b, 0, n);
                        break;
                }
                if (ret < 0)
                        return ret;
                off += n;
                b += n;
                len -= n;
        }
        return 0;
}

/* Region index, offset and count checked with saturating arithmetic. */
static int check_access(const VuServer *s, uint32_t region, uint64_t off, uint64_t count) {
        if (region >= VU_PCI_NUM_REGIONS || count == 0 || count > VU_MAX_DATA_XFER)
                return -EINVAL;
        if (vu_sat_add(off, count) > vu_server_region_size(s, region))
                return -EINVAL;
        return 0;
}

int vu_handle_region_read(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_region_access a;
        uint8_t *out;
        int ret;

        memcpy(&a, m->body, sizeof(a));
        ret = check_access(s, a.region, a.offset, a.count);
        if (ret < 0)
                return ret;
        out = vu_reply_append(s, r, sizeof(a) + a.count);
        memcpy(out, &a, sizeof(a));
        return vu_server_region_access(s, a.region, a.offset, out + sizeof(a), a.count, false);
}

int vu_handle_region_write(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_region_access a;
        int ret;

        memcpy(&a, m->body, sizeof(a));
        if (m->len - sizeof(a) != a.count)
                return -EINVAL;
        ret = check_access(s, a.region, a.offset, a.count);
        if (ret < 0)
                return ret;
        ret = vu_server_region_access(s, a.region, a.offset, m->body + sizeof(a), a.count, true);
        if (ret < 0)
                return ret;
        memcpy(vu_reply_append(s, r, sizeof(a)), &a, sizeof(a));
        return 0;
}

/* Every entry is checked before the first is applied; then they are applied in order. */
int vu_handle_region_write_multi(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_write_multi_entry e;
        uint64_t cnt;
        int ret;

        memcpy(&cnt, m->body, sizeof(cnt));
        if (cnt == 0 || cnt > VU_WRITE_MULTI_MAX ||
            m->len != sizeof(cnt) + cnt * sizeof(struct vu_write_multi_entry))
                return -EINVAL;
        for (uint64_t i = 0; i < cnt; i++) {
                memcpy(&e, m->body + sizeof(cnt) + i * sizeof(e), sizeof(e));
                if (e.count > VU_WRITE_MULTI_DATA)
                        return -EINVAL;
                ret = check_access(s, e.region, e.offset, e.count);
                if (ret < 0)
                        return ret;
        }
        for (uint64_t i = 0; i < cnt; i++) {
                memcpy(&e, m->body + sizeof(cnt) + i * sizeof(e), sizeof(e));
                ret = vu_server_region_access(s, e.region, e.offset, e.data, e.count, true);
                if (ret < 0)
                        return ret;
        }
        memcpy(vu_reply_append(s, r, sizeof(cnt)), &cnt, sizeof(cnt));
        return 0;
}
