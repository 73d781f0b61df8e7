/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-blk device (virtio-v1.2 5.2): properties and defaults, offered
 * features, device configuration space (5.2.4), the write cache (5.2.5,
 * 5.2.6.1), queue binding, start and stop of the data path, resize and
 * statistics.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "vblk/vblk-priv.h"
#include "virtio/virtio.h"

/* Properties and defaults. */
#define VBLK_SIZE_MAX (64u * 1024u)     /* bytes per data segment (size_max) */
#define VBLK_SEG_MAX 126u               /* data segments per request, ≤ queue size - 2 */
#define VBLK_PHYS_BLOCK 4096u           /* what the topology reports as the physical block */

#define F(x) VIRTIO_BIT(VIRTIO_BLK_F_##x)

static const uint64_t vblk_base_features =
        F(SIZE_MAX) | F(SEG_MAX) | F(BLK_SIZE) | F(TOPOLOGY) | F(FLUSH) | F(CONFIG_WCE) |
        VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX);

static uint32_t seg_max(const VBlk *b) {
        return MIN(VBLK_SEG_MAX, (uint32_t) b->opt.queue_size - 2);
}

void vblk_guest_error(VBlk *b, VBlkQueue *q, const char *what, int err) {
        /* Rate-limited by nature: the queue is broken until the driver resets the device. */
        g_debug("virtio-blk %s: queue %u: %s: %s; device needs reset", b->opt.name ? b->opt.name : "",
                q->index, what, g_strerror(-err));
        virtio_pci_set_needs_reset(b->vp);
}

/* 5.2.5: writeback starts as 1 when FLUSH is negotiated, 0 otherwise. */
static int vblk_validate_features(void *opaque, uint64_t features) {
        VBlk *b = opaque;

        __atomic_store_n(&b->writeback, virtio_has(features, VIRTIO_BLK_F_FLUSH) ? 1 : 0, __ATOMIC_RELEASE);
        return 0;
}

static void vblk_config_read(void *opaque, uint32_t off, void *buf, size_t len) {
        VBlk *b = opaque;
        uint32_t per_block = b->opt.block_size >> VBLK_SECTOR_SHIFT;
        uint32_t phys = MAX(VBLK_PHYS_BLOCK, b->opt.block_size);
        VBlkConfigSpace c = {
                .capacity = htole64(__atomic_load_n(&b->capacity, __ATOMIC_ACQUIRE)),
                .size_max = htole32(VBLK_SIZE_MAX),
                .seg_max = htole32(seg_max(b)),
                .blk_size = htole32(b->opt.block_size),
                .physical_block_exp = (uint8_t) __builtin_ctz(phys / b->opt.block_size),
                .min_io_size = htole16((uint16_t) (phys / b->opt.block_size)),
                .writeback = __atomic_load_n(&b->writeback, __ATOMIC_ACQUIRE),
                .num_queues = htole16((uint16_t) b->opt.queues),
                .max_discard_sectors = htole32(VBLK_MAX_DWZ_SECTORS),
                .max_discard_seg = htole32(VBLK_MAX_DWZ_SEG),
                .discard_sector_alignment = htole32(per_block),
                .max_write_zeroes_sectors = htole32(VBLK_MAX_DWZ_SECTORS),
                .max_write_zeroes_seg = htole32(VBLK_MAX_WZ_SEG),
                .write_zeroes_may_unmap = (b->be->caps & BLK_CAP_WRITE_ZEROES_UNMAP) ? 1 : 0,
        };

        if (off < sizeof(c))
                memcpy(buf, (uint8_t *) &c + off, MIN(len, sizeof(c) - off));
}

static void vblk_config_write(void *opaque, uint32_t off, const void *buf, size_t len) {
        VBlk *b = opaque;
        uint64_t f = virtio_pci_driver_features(b->vp);

        /* 5.2.4: only writeback is writable, and only with CONFIG_WCE. */
        if (off != VBLK_CFG_WRITEBACK_OFF || len != 1 || !virtio_has(f, VIRTIO_BLK_F_CONFIG_WCE))
                return;
        __atomic_store_n(&b->writeback, *(const uint8_t *) buf ? 1 : 0, __ATOMIC_RELEASE);
}

/* The I/O thread's limits, taken while it is idle. */
static void vblk_set_limits(VBlk *b, uint64_t features) {
        b->lim = (VBlkLimits) {
                .capacity = __atomic_load_n(&b->capacity, __ATOMIC_ACQUIRE),
                .block_size = b->opt.block_size,
                .max_xfer = (uint64_t) seg_max(b) * VBLK_SIZE_MAX,
                .features = features,
                .read_only = b->opt.read_only,
        };
}

static void queue_unbind(VBlkQueue *q) {
        for (unsigned i = 0; i < q->nreqs; i++) {
                g_free(q->reqs[i].iov);
                g_free(q->reqs[i].wseg);
        }
        g_clear_pointer(&q->reqs, g_free);
        q->nreqs = 0;
        q->free = NULL;
        q->inflight = 0;
        q->completed = false;
        q->vq = NULL;
}

void vblk_unbind(VBlk *b) {
        for (unsigned i = 0; i < b->opt.queues; i++)
                queue_unbind(&b->queues[i]);
        b->started = false;
        b->features = 0;
}

int vblk_bind(VBlk *b, uint64_t features) {
        unsigned nq = virtio_has(features, VIRTIO_BLK_F_MQ) ? b->opt.queues : 1;

        vblk_unbind(b);
        for (unsigned i = 0; i < nq; i++) {
                VBlkQueue *q = &b->queues[i];
                VirtQueue *vq = virtio_pci_queue(b->vp, i);
                if (!vq || !vq->started)
                        continue;
                q->reqs = g_try_new0(VBlkReq, vq->size);
                if (!q->reqs) {
                        vblk_unbind(b);
                        return -ENOMEM;
                }
                q->nreqs = vq->size;
                for (unsigned k = q->nreqs; k-- > 0;) {
                        q->reqs[k].q = q;
                        q->reqs[k].next_free = q->free;
                        q->free = &q->reqs[k];
                }
                q->vq = vq;
        }
        if (!b->queues[0].vq) {
                vblk_unbind(b);
                return -EINVAL;         /* requestq1 is always in use */
        }
        b->features = features;
        vblk_set_limits(b, features);
        b->started = true;
        return 0;
}

static int vblk_start(void *opaque, uint64_t features) {
        VBlk *b = opaque;
        int r = vblk_bind(b, features);

        if (r < 0)
                return r;
        if (virtio_pci_may_run(b->vp))
                vblk_thread_set(b, VBLK_THREAD_RUN);
        return 0;
}

static void vblk_stop(void *opaque) {
        VBlk *b = opaque;

        vblk_thread_set(b, VBLK_THREAD_IDLE);
        vblk_unbind(b);
}

static void vblk_kick(void *opaque, unsigned q) {
        (void) q;
        vblk_wake(opaque);
}

static void vblk_quiesce(void *opaque) {
        vblk_thread_set(opaque, VBLK_THREAD_IDLE);
}

static void vblk_resume(void *opaque) {
        VBlk *b = opaque;

        if (b->started && virtio_pci_may_run(b->vp))
                vblk_thread_set(b, VBLK_THREAD_RUN);
}

static const VirtioDeviceOps vblk_virtio_ops = {
        .validate_features = vblk_validate_features,
        .config_read = vblk_config_read,
        .config_write = vblk_config_write,
        .start = vblk_start,
        .stop = vblk_stop,
        .kick = vblk_kick,
        .quiesce = vblk_quiesce,
        .resume = vblk_resume,
        .save = vblk_state_save,
        .load_check = vblk_state_check,
        .load_apply = vblk_state_apply,
};

static bool serial_ok(const char *s) {
        if (!s)
                return true;
        if (strlen(s) > VBLK_ID_BYTES)
                return false;
        for (const char *p = s; *p; p++)
                if (*p < 0x20 || *p > 0x7e)
                        return false;
        return true;
}

int vblk_new(const VBlkOptions *opt, BlkBackend *be, VBlk **out) {
        g_autofree VBlk *b = NULL;
        VirtioPciConfig vc;
        uint16_t qs = opt->queue_size ? opt->queue_size : VBLK_DEFAULT_QUEUE_SIZE;
        uint32_t bs = opt->block_size ? opt->block_size : 512;
        int r;

        *out = NULL;
        if (!be)
                return -EINVAL;
        if (opt->queues == 0 || opt->queues > VBLK_MAX_QUEUES || qs < 4 || qs > VQ_MAX_SIZE ||
            (qs & (qs - 1)) != 0 || (bs != 512 && bs != 4096) || !serial_ok(opt->serial) ||
            opt->poll_us > VBLK_MAX_POLL_US ||
            be->size < bs) {
                blk_backend_free(be);
                return -EINVAL;
        }

        b = g_new0(VBlk, 1);
        b->opt = *opt;
        b->opt.queue_size = qs;
        b->opt.block_size = bs;
        b->opt.read_only = opt->read_only || be->read_only;
        b->opt.name = NULL;
        b->opt.serial = NULL;
        b->opt.migration_id = NULL;     /* the transport keeps its copy */
        b->serial = g_strdup(opt->serial ? opt->serial : "");
        b->be = be;
        b->epfd = b->kick_fd = -1;
        b->capacity = (be->size / bs) * (bs >> VBLK_SECTOR_SHIFT);
        b->writeback = 1;
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->cond, NULL);
        b->chain = g_new0(VqChain, 1);
        b->queues = g_new0(VBlkQueue, opt->queues);
        for (unsigned i = 0; i < opt->queues; i++) {
                b->queues[i].b = b;
                b->queues[i].index = i;
        }

        b->offered = vblk_base_features;
        if (b->opt.read_only) {
                b->offered |= F(RO);
        } else {
                b->offered |= F(WRITE_ZEROES);
                if (be->caps & BLK_CAP_DISCARD)
                        b->offered |= F(DISCARD);
        }
        if (opt->queues > 1)
                b->offered |= F(MQ);
        if (opt->packed)
                b->offered |= VIRTIO_BIT(VIRTIO_F_RING_PACKED);

        vc = (VirtioPciConfig) {
                .device_id = VIRTIO_ID_BLOCK,
                .class_code = 0x010000,         /* mass storage, SCSI (what virtio-blk has always used) */
                .subsys_id = VIRTIO_ID_BLOCK,
                .features = b->offered,
                .num_queues = opt->queues,
                .queue_size = qs,
                .config_size = sizeof(VBlkConfigSpace),
                .state_type = VBLK_STATE_TYPE,
                .state_id = opt->migration_id,
                .state_sections = vblk_state_sections,
                .n_state_sections = vblk_n_state_sections,
                .ops = &vblk_virtio_ops,
                .opaque = b,
                .name = opt->name,
        };
        r = virtio_pci_new(&vc, &b->vp);
        if (r < 0)
                goto fail;
        r = vblk_thread_create(b);
        if (r < 0)
                goto fail;
        b->opt.name = g_strdup(opt->name);
        *out = g_steal_pointer(&b);
        return 0;

fail:
        vblk_thread_destroy(b);
        virtio_pci_free(b->vp);
        blk_backend_free(b->be);
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->lock);
        g_free(b->chain);
        g_free(b->queues);
        g_free(b->serial);
        return r;
}

void vblk_free(VBlk *b) {
        if (!b)
                return;
        virtio_pci_reset(b->vp);
        vblk_thread_destroy(b);
        vblk_unbind(b);
        virtio_pci_free(b->vp);
        blk_backend_free(b->be);
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->lock);
        g_free(b->chain);
        g_free(b->queues);
        g_free(b->serial);
        g_free((char *) b->opt.name);
        g_free(b);
}

int vblk_server_config(VBlk *b, VuServerConfig *scfg) {
        return virtio_pci_server_config(b->vp, scfg);
}

void vblk_attach(VBlk *b, const VuMem *mem, const VirtioIrqOps *irq, void *irq_opaque) {
        virtio_pci_attach(b->vp, mem, irq, irq_opaque);
}

VirtioPci *vblk_virtio(VBlk *b) {
        return b->vp;
}

int vblk_resize(VBlk *b, uint64_t new_size) {
        uint32_t bs = b->opt.block_size;
        int r;

        if (new_size % bs)
                return -EINVAL;
        /* The backend's size is the I/O thread's (and its workers'): change it while they are idle. */
        vblk_thread_set(b, VBLK_THREAD_IDLE);
        r = blk_backend_resize(b->be, new_size);
        uint64_t cap = (b->be->size / bs) * (bs >> VBLK_SECTOR_SHIFT);
        bool changed = r == 0 && cap != __atomic_load_n(&b->capacity, __ATOMIC_ACQUIRE);
        if (changed) {
                __atomic_store_n(&b->capacity, cap, __ATOMIC_RELEASE);
                if (b->started)
                        b->lim.capacity = cap;
        }
        if (b->started && virtio_pci_may_run(b->vp))
                vblk_thread_set(b, VBLK_THREAD_RUN);
        /* 5.2.4: a capacity change is a configuration change, with its interrupt. */
        if (changed)
                virtio_pci_config_changed(b->vp, true);
        return r;
}

uint64_t vblk_capacity_bytes(const VBlk *b) {
        return __atomic_load_n(&b->capacity, __ATOMIC_ACQUIRE) << VBLK_SECTOR_SHIFT;
}

bool vblk_write_cache(const VBlk *b) {
        return __atomic_load_n(&b->writeback, __ATOMIC_ACQUIRE);
}

void vblk_get_stats(const VBlk *b, VBlkStats *st) {
        const VBlkCounters *c = &b->c;

        memset(st, 0, sizeof(*st));
#define GET(f) st->f = __atomic_load_n(&c->f, __ATOMIC_RELAXED)
        GET(read_reqs); GET(read_bytes); GET(write_reqs); GET(write_bytes);
        GET(flush_reqs); GET(discard_reqs); GET(write_zeroes_reqs); GET(get_id_reqs);
        GET(io_errors); GET(unsupported); GET(bad_chains); GET(inflight);
#undef GET
        lat_stats_merge(&st->lat, &b->lat);
}

uint64_t vblk_offered_features(const VBlk *b) {
        return b->offered | VIRTIO_BIT(VIRTIO_F_VERSION_1);
}

const char *vblk_migration_error(const VBlk *b) {
        return virtio_pci_migration_error(b->vp);
}
