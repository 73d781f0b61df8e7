/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Migration v2 on the wire (vfio-user.rst "VFIO_USER_DEVICE_FEATURE",
 * "VFIO_USER_MIG_DATA_READ/WRITE"): MIGRATION, MIG_DEVICE_STATE and
 * DMA_LOGGING_START/STOP/REPORT features, the data stream, and which
 * commands a stopped device still executes.  A device without
 * VuMigrationOps answers every one of them with ENOTSUP.
 */
#include <errno.h>
#include <string.h>

#include "migration-fsm.h"
#include "server-internal.h"

/* Logging ranges we accept in one DMA_LOGGING_START. */
#define VU_MAX_LOG_RANGES 4096
#define VU_MAX_LOG_PGSIZE (1u << 30)

void vu_mig_reset(VuServer *s) {
        s->mig.state = VU_MIG_RUNNING;
}

bool vu_mig_cmd_allowed(const VuServer *s, unsigned cmd) {
        if (s->mig.state != VU_MIG_STOP && s->mig.state != VU_MIG_STOP_COPY)
                return true;
        /* A stopped device only serves accesses and migration. */
        return cmd == VU_CMD_REGION_READ || cmd == VU_CMD_REGION_WRITE || cmd == VU_CMD_REGION_WRITE_MULTI ||
               cmd == VU_CMD_DEVICE_FEATURE || cmd == VU_CMD_MIG_DATA_READ;
}

/* Step along the shortest path, one device callback per direct arc, quiesced throughout. */
static int set_state(VuServer *s, enum vu_mig_state to) {
        enum vu_mig_state path[VU_MIG_MAX_PATH];
        int n, ret = 0;

        if (s->mig.state == VU_MIG_ERROR)
                return -EINVAL; /* only DEVICE_RESET leaves ERROR */
        n = vu_mig_path(s->mig.state, to, path);
        if (n < 0)
                return n;
        vu_server_quiesce(s);
        for (int i = 0; i < n && ret == 0; i++) {
                ret = s->ops->migration->transition(s->opaque, s->mig.state, path[i]);
                if (ret == 0 && path[i] == VU_MIG_STOP_COPY)
                        s->mig.info.saved = true;
                if (ret == 0 && s->mig.state == VU_MIG_RESUMING)
                        s->mig.info.resumed = true;
                if (ret < 0)
                        s->mig.info.failed = true;
                g_debug("%s: migration %s -> %s: %s", s->name, vu_mig_state_to_string(s->mig.state),
                        vu_mig_state_to_string(path[i]), ret < 0 ? g_strerror(-ret) : "ok");
                s->mig.state = ret < 0 ? VU_MIG_ERROR : path[i];
        }
        vu_server_resume(s);
        return ret;
}

static int logging_start(VuServer *s, VuMsg *m, VuReply *r, const uint8_t *data, size_t len) {
        struct vu_feature_dma_logging_control c;
        uint64_t pg;
        uint8_t *out;
        int ret;

        if (len < sizeof(c))
                return -EINVAL;
        memcpy(&c, data, sizeof(c));
        if (c.num_ranges > VU_MAX_LOG_RANGES || len != sizeof(c) + (size_t) c.num_ranges * sizeof(c.ranges[0]) ||
            c.page_size == 0)
                return -EINVAL;
        for (uint32_t i = 0; i < c.num_ranges; i++) {
                struct vu_dma_logging_range rg;

                memcpy(&rg, data + sizeof(c) + i * sizeof(rg), sizeof(rg));
                if (rg.length == 0 || rg.iova + rg.length - 1 < rg.iova)
                        return -EINVAL;
        }
        /* The page size is a hint: we log at 4 KiB to 1 GiB, rounded up to a power of two. */
        pg = MIN(MAX(c.page_size, (uint64_t) VU_PGSIZE), (uint64_t) VU_MAX_LOG_PGSIZE);
        if (pg & (pg - 1))
                pg = 1ull << (64 - __builtin_clzll(pg));
        /* Every fd-backed map is logged: a superset of the ranges asked for. */
        vu_server_quiesce(s);
        ret = vu_dma_logging_start(s->dma, pg);
        vu_server_resume(s);
        if (ret < 0)
                return ret;
        out = vu_reply_append(s, r, m->len);
        memcpy(out, m->body, m->len);
        c.page_size = pg;
        memcpy(out + sizeof(struct vu_device_feature), &c, sizeof(c));
        return 0;
}

static int logging_report(VuServer *s, VuReply *r, const struct vu_device_feature *f, const uint8_t *data,
                          size_t len) {
        struct vu_feature_dma_logging_report rep;
        uint64_t pages, bm_len;
        uint8_t *out;
        int ret;

        if (len != sizeof(rep))
                return -EINVAL;
        memcpy(&rep, data, sizeof(rep));
        if (rep.length == 0 || rep.page_size == 0 || (rep.page_size & (rep.page_size - 1)))
                return -EINVAL;
        pages = (rep.length - 1) / rep.page_size + 1;
        if (pages > (uint64_t) VU_MAX_DATA_XFER * 8)
                return -E2BIG;  /* the client asks for smaller pieces */
        bm_len = (pages + 63) / 64 * 8;
        if (f->argsz < sizeof(*f) + sizeof(rep) + bm_len)
                return -EINVAL;
        out = vu_reply_append(s, r, sizeof(*f) + sizeof(rep) + bm_len);
        ret = vu_dma_logging_report(s->dma, rep.iova, rep.length, rep.page_size,
                                    out + sizeof(*f) + sizeof(rep), (size_t) bm_len);
        if (ret < 0)
                return ret;
        memcpy(out, f, sizeof(*f));
        ((struct vu_device_feature *) out)->argsz = (uint32_t) (sizeof(*f) + sizeof(rep) + bm_len);
        memcpy(out + sizeof(*f), &rep, sizeof(rep));
        return 0;
}

/* Reply to a GET with data appended; argsz grows by its length. */
static int get_reply(VuServer *s, VuReply *r, const struct vu_device_feature *f, const void *d, size_t len) {
        struct vu_device_feature *out;

        if (f->argsz < sizeof(*f) + len)
                return -EINVAL;
        out = vu_reply_append(s, r, sizeof(*f) + len);
        out->argsz = (uint32_t) (sizeof(*f) + len);
        out->flags = f->flags;
        memcpy(out->data, d, len);
        return 0;
}

int vu_handle_device_feature(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_device_feature f;
        const uint8_t *data = m->body + sizeof(f);
        size_t len = m->len - sizeof(f);
        uint32_t feature, ops_ok;
        bool get, set, probe;

        memcpy(&f, m->body, sizeof(f));
        feature = f.flags & VU_FEATURE_MASK;
        get = f.flags & VU_FEATURE_GET;
        set = f.flags & VU_FEATURE_SET;
        probe = f.flags & VU_FEATURE_PROBE;
        if (f.argsz < sizeof(f) || (f.flags & ~(VU_FEATURE_MASK | VU_FEATURE_GET | VU_FEATURE_SET | VU_FEATURE_PROBE)))
                return -EINVAL;
        if (!probe && get == set)
                return -EINVAL; /* exactly one of GET and SET, unless probing */

        switch (feature) {
        case VU_FEATURE_MIGRATION:
        case VU_FEATURE_DMA_LOGGING_REPORT:
                ops_ok = VU_FEATURE_GET;
                break;
        case VU_FEATURE_MIG_DEVICE_STATE:
                ops_ok = VU_FEATURE_GET | VU_FEATURE_SET;
                break;
        case VU_FEATURE_DMA_LOGGING_START:
        case VU_FEATURE_DMA_LOGGING_STOP:
                ops_ok = VU_FEATURE_SET;
                break;
        default:
                return -ENOTSUP;
        }
        if (!s->ops->migration)
                return -ENOTSUP;
        if ((f.flags & (VU_FEATURE_GET | VU_FEATURE_SET)) & ~ops_ok)
                return -EINVAL;
        if (feature == VU_FEATURE_MIGRATION || feature == VU_FEATURE_MIG_DEVICE_STATE)
                s->mig.info.client_uses = true;
        if (probe) {
                memcpy(vu_reply_append(s, r, m->len), m->body, m->len);
                return 0;
        }

        switch (feature) {
        case VU_FEATURE_MIGRATION: {
                uint64_t flags = VU_MIGRATION_STOP_COPY | VU_MIGRATION_PRE_COPY;

                return get_reply(s, r, &f, &flags, sizeof(flags));
        }
        case VU_FEATURE_MIG_DEVICE_STATE: {
                struct vu_feature_mig_state st = { .device_state = s->mig.state, .data_fd = UINT32_MAX };
                int ret;

                if (get)
                        return get_reply(s, r, &f, &st, sizeof(st));
                if (len != sizeof(st) || f.argsz < sizeof(f) + sizeof(st))
                        return -EINVAL;
                memcpy(&st, data, sizeof(st));
                ret = set_state(s, (enum vu_mig_state) st.device_state);
                if (ret < 0)
                        return ret;
                memcpy(vu_reply_append(s, r, m->len), m->body, m->len);
                return 0;
        }
        case VU_FEATURE_DMA_LOGGING_START:
                return logging_start(s, m, r, data, len);
        case VU_FEATURE_DMA_LOGGING_STOP:
                if (len != 0)
                        return -EINVAL;
                vu_server_quiesce(s);
                vu_dma_logging_stop(s->dma);
                vu_server_resume(s);
                memcpy(vu_reply_append(s, r, m->len), m->body, m->len);
                return 0;
        default:
                return logging_report(s, r, &f, data, len);
        }
}

int vu_handle_mig_data_read(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_mig_data in, *out;
        ssize_t n;

        if (!s->ops->migration)
                return -ENOTSUP;
        memcpy(&in, m->body, sizeof(in));
        if (s->mig.state != VU_MIG_PRE_COPY && s->mig.state != VU_MIG_STOP_COPY)
                return -EINVAL;
        if (in.size > s->client_max_xfer || in.size > VU_MAX_DATA_XFER || in.argsz < sizeof(in) + (uint64_t) in.size)
                return -EINVAL;
        out = vu_reply_append(s, r, sizeof(in) + in.size);
        n = in.size ? s->ops->migration->read_data(s->opaque, out->data, in.size) : 0;
        if (n < 0)
                return (int) n;
        if ((size_t) n > in.size)
                return -EIO;
        r->len = sizeof(in) + (size_t) n;
        s->mig.info.bytes_read += (uint64_t) n;
        out = (struct vu_mig_data *) vu_reply_data(s);
        out->argsz = (uint32_t) r->len;
        out->size = (uint32_t) n;
        return 0;
}

int vu_handle_mig_data_write(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_mig_data in;
        int ret;

        if (!s->ops->migration)
                return -ENOTSUP;
        memcpy(&in, m->body, sizeof(in));
        if (s->mig.state != VU_MIG_RESUMING)
                return -EINVAL;
        if (in.argsz < sizeof(in) || in.size != m->len - sizeof(in) || in.size == 0)
                return -EINVAL;
        ret = s->ops->migration->write_data(s->opaque, m->body + sizeof(in), in.size);
        if (ret == 0)
                s->mig.info.bytes_written += in.size;
        else
                s->mig.info.failed = true;
        return ret;
}
