/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk's part of a migration stream (the transport saves features,
 * status and the queues): the configuration the device was created with
 * (checked, never restored) and the guest-visible state (5.2.4: capacity
 * and the writeback field).  Requests in flight are not state: a quiesce
 * completes them all before the stream is written.
 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "vblk/vblk-priv.h"
#include "virtio/virtio.h"

enum {
        VBLK_SEC_CONFIG = VIRTIO_STATE_SEC_DEVICE,
        VBLK_SEC_BLK,
};

enum { CF_QUEUES = 1, CF_QUEUE_SIZE, CF_BLOCK_SIZE, CF_READ_ONLY, CF_OFFERED, CF_SERIAL };
enum { BK_FEATURES = 1, BK_CAPACITY, BK_WRITEBACK };

static const DevStateFieldSpec config_fields[] = {
        { CF_QUEUES, DEVSTATE_T_U16, "queues", 0, true },
        { CF_QUEUE_SIZE, DEVSTATE_T_U16, "queue-size", 0, true },
        { CF_BLOCK_SIZE, DEVSTATE_T_U32, "block-size", 0, true },
        { CF_READ_ONLY, DEVSTATE_T_BOOL, "read-only", 0, true },
        { CF_OFFERED, DEVSTATE_T_U64, "offered-features", 0, true },
        { CF_SERIAL, DEVSTATE_T_STRING, "serial", VBLK_ID_BYTES, true },
};

static const DevStateFieldSpec blk_fields[] = {
        { BK_FEATURES, DEVSTATE_T_U64, "features", 0, true },
        { BK_CAPACITY, DEVSTATE_T_U64, "capacity", 0, true },
        { BK_WRITEBACK, DEVSTATE_T_BOOL, "writeback", 0, true },
};

const DevStateSectionSpec vblk_state_sections[] = {
        { VBLK_SEC_CONFIG, "virtio-blk-config", 1, true, config_fields, G_N_ELEMENTS(config_fields) },
        { VBLK_SEC_BLK, "virtio-blk", 1, true, blk_fields, G_N_ELEMENTS(blk_fields) },
};
const size_t vblk_n_state_sections = G_N_ELEMENTS(vblk_state_sections);

int vblk_state_save(void *opaque, DevStateWriter *w) {
        VBlk *b = opaque;

        devstate_writer_begin(w, VBLK_SEC_CONFIG, 0, DEVSTATE_F_MANDATORY);
        devstate_put_u16(w, CF_QUEUES, (uint16_t) b->opt.queues);
        devstate_put_u16(w, CF_QUEUE_SIZE, b->opt.queue_size);
        devstate_put_u32(w, CF_BLOCK_SIZE, b->opt.block_size);
        devstate_put_bool(w, CF_READ_ONLY, b->opt.read_only);
        devstate_put_u64(w, CF_OFFERED, vblk_offered_features(b));
        devstate_put_string(w, CF_SERIAL, b->serial);
        devstate_writer_end(w);

        devstate_writer_begin(w, VBLK_SEC_BLK, 0, DEVSTATE_F_MANDATORY);
        devstate_put_u64(w, BK_FEATURES, b->features);
        devstate_put_u64(w, BK_CAPACITY, __atomic_load_n(&b->capacity, __ATOMIC_ACQUIRE));
        devstate_put_bool(w, BK_WRITEBACK, __atomic_load_n(&b->writeback, __ATOMIC_ACQUIRE));
        return devstate_writer_end(w);
}

typedef struct VBlkState {
        uint64_t features, capacity;
        bool writeback;
} VBlkState;

#define GET(fn, s, id, out)                                                                             \
        do {                                                                                            \
                int r_ = fn(s, id, out);                                                                \
                if (r_ < 0)                                                                             \
                        return devstate_reader_fail(r, r_, "virtio-blk state: field %u of %s unreadable", id, \
                                                    devstate_section_name(s));                          \
        } while (0)

static int read_state(VBlk *b, DevStateReader *r, uint64_t features, bool started, VBlkState *st) {
        const DevStateSection *cf = devstate_reader_find(r, VBLK_SEC_CONFIG, 0);
        const DevStateSection *bk = devstate_reader_find(r, VBLK_SEC_BLK, 0);
        uint16_t queues, qsize;
        uint32_t bs;
        bool ro;
        uint64_t offered;
        char serial[VBLK_ID_BYTES + 1];

        GET(devstate_get_u16, cf, CF_QUEUES, &queues);
        GET(devstate_get_u16, cf, CF_QUEUE_SIZE, &qsize);
        GET(devstate_get_u32, cf, CF_BLOCK_SIZE, &bs);
        GET(devstate_get_bool, cf, CF_READ_ONLY, &ro);
        GET(devstate_get_u64, cf, CF_OFFERED, &offered);
        int ret = devstate_get_string(cf, CF_SERIAL, serial, sizeof(serial));
        if (ret < 0)
                return devstate_reader_fail(r, ret, "virtio-blk state: serial unreadable");
        if (queues != b->opt.queues || qsize != b->opt.queue_size || bs != b->opt.block_size ||
            ro != b->opt.read_only || strcmp(serial, b->serial) != 0)
                return devstate_reader_fail(r, -EINVAL,
                                            "virtio-blk state comes from a device with %u queues, queue size %u, "
                                            "block size %u, %s, serial '%s'; this one has %u, %u, %u, %s, '%s': "
                                            "create the destination with the same options", queues, qsize, bs,
                                            ro ? "read-only" : "writable", serial, b->opt.queues,
                                            b->opt.queue_size, b->opt.block_size,
                                            b->opt.read_only ? "read-only" : "writable", b->serial);
        if (offered != vblk_offered_features(b))
                return devstate_reader_fail(r, -EINVAL,
                                            "virtio-blk state: the source offered features 0x%" G_GINT64_MODIFIER
                                            "x, this device 0x%" G_GINT64_MODIFIER "x (a backend without discard?)",
                                            offered, vblk_offered_features(b));

        GET(devstate_get_u64, bk, BK_FEATURES, &st->features);
        GET(devstate_get_u64, bk, BK_CAPACITY, &st->capacity);
        GET(devstate_get_bool, bk, BK_WRITEBACK, &st->writeback);
        if (st->capacity != __atomic_load_n(&b->capacity, __ATOMIC_ACQUIRE))
                return devstate_reader_fail(r, -EINVAL,
                                            "virtio-blk state: the source disk has %" G_GUINT64_FORMAT
                                            " sectors, this one %" G_GUINT64_FORMAT ": use the same storage",
                                            st->capacity, __atomic_load_n(&b->capacity, __ATOMIC_ACQUIRE));
        if (started && st->features != features)
                return devstate_reader_fail(r, -EINVAL,
                                            "virtio-blk state: features 0x%" G_GINT64_MODIFIER "x in use do not "
                                            "match the negotiated 0x%" G_GINT64_MODIFIER "x", st->features, features);
        if (st->writeback && !virtio_has(features, VIRTIO_BLK_F_FLUSH) &&
            (features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
                return devstate_reader_fail(r, -EINVAL, "virtio-blk state: write cache on without FLUSH");
        return 0;
}

int vblk_state_check(void *opaque, DevStateReader *r, uint64_t features, bool started) {
        VBlkState st;

        return read_state(opaque, r, features, started, &st);
}

int vblk_state_apply(void *opaque, DevStateReader *r, uint64_t features, bool started) {
        VBlk *b = opaque;
        VBlkState st;
        int ret = read_state(b, r, features, started, &st);

        if (ret < 0)
                return ret;
        __atomic_store_n(&b->writeback, st.writeback, __ATOMIC_RELEASE);
        if (!started)
                return 0;
        ret = vblk_bind(b, features);
        if (ret < 0)
                return devstate_reader_fail(r, ret, "virtio-blk state: the first request queue is not started (%s)",
                                            g_strerror(-ret));
        return 0;
}
