/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test-device.h"

static uint32_t reg32(TestDevice *td, unsigned off) {
        uint32_t v;

        memcpy(&v, td->regs + off, sizeof(v));
        return v;
}

static uint64_t reg64(TestDevice *td, unsigned off) {
        uint64_t v;

        memcpy(&v, td->regs + off, sizeof(v));
        return v;
}

static void set_status(TestDevice *td, int32_t st) {
        memcpy(td->regs + TD_REG_STATUS, &st, sizeof(st));
}

static void dma_copy(TestDevice *td) {
        const VuMem *mem = vu_server_mem(td->server);
        uint32_t len = reg32(td, TD_REG_DMA_LEN);
        g_autofree uint8_t *buf = NULL;
        int r;

        if (len > TD_DMA_MAX) {
                set_status(td, -EINVAL);
                return;
        }
        buf = g_malloc(len + 1);
        r = vu_mem_read(mem, reg64(td, TD_REG_DMA_SRC), buf, len);
        if (r == 0)
                r = vu_mem_write(mem, reg64(td, TD_REG_DMA_DST), buf, len);
        set_status(td, r);
        if (r == 0)
                vu_server_irq(td->server, reg32(td, TD_REG_DMA_VEC));
}

static int bar0_read(void *opaque, uint64_t off, void *buf, size_t len) {
        TestDevice *td = opaque;

        g_assert_cmpuint(off + len, <=, TD_AREA_OFF);   /* the area never reaches us */
        if (off < TD_REG_BROKEN + 4 && off + len > TD_REG_BROKEN)
                return -EIO;
        g_mutex_lock(&td->lock);
        memcpy(buf, td->regs + off, len);
        g_mutex_unlock(&td->lock);
        return 0;
}

static int bar0_write(void *opaque, uint64_t off, const void *buf, size_t len) {
        TestDevice *td = opaque;

        g_assert_cmpuint(off + len, <=, TD_AREA_OFF);
        g_mutex_lock(&td->lock);
        memcpy(td->regs + off, buf, len);
        if (off <= TD_REG_DMA_CMD && off + len > TD_REG_DMA_CMD && reg32(td, TD_REG_DMA_CMD) == 1)
                dma_copy(td);
        if (off <= TD_REG_FIRE && off + len > TD_REG_FIRE)
                set_status(td, vu_server_irq(td->server, reg32(td, TD_REG_FIRE)));
        g_mutex_unlock(&td->lock);
        return 0;
}

static const VuRegionOps bar0_ops = {
        .read = bar0_read,
        .write = bar0_write,
};

static void td_quiesce(void *opaque) {
        TestDevice *td = opaque;

        td->quiesced++;
        td->quiesce_calls++;
}

static void td_resume(void *opaque) {
        TestDevice *td = opaque;

        g_assert_cmpint(td->quiesced, >, 0);
        td->quiesced--;
}

static void td_reset(void *opaque, VuResetKind kind) {
        TestDevice *td = opaque;

        g_assert_cmpint(td->quiesced, >, 0);    /* reset runs quiesced */
        td->reset_calls[kind]++;
        g_mutex_lock(&td->lock);
        memset(td->regs, 0, sizeof(td->regs));
        g_mutex_unlock(&td->lock);
}

static void td_cfg_event(void *opaque, unsigned ev) {
        TestDevice *td = opaque;

        td->cfg_events++;
        td->last_cfg_events = ev;
}

static void td_attach(void *opaque) {
        ((TestDevice *) opaque)->attaches++;
}

static void td_detach(void *opaque) {
        ((TestDevice *) opaque)->detaches++;
}

static int td_transition(void *opaque, enum vu_mig_state from, enum vu_mig_state to) {
        TestDevice *td = opaque;
        size_t l = strlen(td->arcs);
        int r;

        g_assert_cmpint(td->quiesced, >, 0);
        if (td->fail_transition) {
                r = td->fail_transition;
                td->fail_transition = 0;
                return r;
        }
        if (l + 32 < sizeof(td->arcs))
                g_snprintf(td->arcs + l, sizeof(td->arcs) - l, "%s>%s,", vu_mig_state_to_string(from),
                           vu_mig_state_to_string(to));
        /* A new stream starts with PRE_COPY, or with STOP_COPY when there was no pre-copy. */
        if (to == VU_MIG_PRE_COPY || (to == VU_MIG_STOP_COPY && from == VU_MIG_STOP))
                td->mig_read_pos = 0;
        if (to == VU_MIG_RESUMING)
                td->mig_in_len = 0;
        if (from == VU_MIG_RESUMING && to == VU_MIG_STOP) {
                if (td->mig_in_len != TD_MIG_BLOB)
                        return -EINVAL;
                memcpy(td->regs, td->mig_in, TD_MIG_BLOB);
        }
        return 0;
}

static ssize_t td_read_data(void *opaque, void *buf, size_t len) {
        TestDevice *td = opaque;
        size_t n = MIN(len, TD_MIG_BLOB - td->mig_read_pos);

        memcpy(buf, td->regs + td->mig_read_pos, n);
        td->mig_read_pos += n;
        return (ssize_t) n;
}

static int td_write_data(void *opaque, const void *buf, size_t len) {
        TestDevice *td = opaque;

        if (len > TD_MIG_BLOB - td->mig_in_len)
                return -EFBIG;
        memcpy(td->mig_in + td->mig_in_len, buf, len);
        td->mig_in_len += len;
        return 0;
}

static const VuMigrationOps td_mig_ops = {
        .transition = td_transition,
        .read_data = td_read_data,
        .write_data = td_write_data,
};

static const VuDeviceOps td_ops = {
        .quiesce = td_quiesce,
        .resume = td_resume,
        .reset = td_reset,
        .cfg_event = td_cfg_event,
        .attach = td_attach,
        .detach = td_detach,
};

static const VuDeviceOps td_ops_mig = {
        .quiesce = td_quiesce,
        .resume = td_resume,
        .reset = td_reset,
        .cfg_event = td_cfg_event,
        .attach = td_attach,
        .detach = td_detach,
        .migration = &td_mig_ops,
};

TestDevice *td_new(bool with_migration) {
        return td_new_irq(with_migration, 0);
}

TestDevice *td_new_irq(bool with_migration, unsigned msi_nvec) {
        TestDevice *td = g_new0(TestDevice, 1);
        VuPciId id = {
                .vendor = 0x1b36, .device = 0x0005, .subsys_vendor = 0x1af4, .subsys = 0x1100,
                .revision = 1, .class_code = 0x00ff00,
        };
        VuPciCfg *cfg = vu_pci_cfg_new(&id);
        VuServerConfig sc = { 0 };

        g_mutex_init(&td->lock);
        td->with_migration = with_migration;
        td->area_fd = memfd_create("td-area", MFD_CLOEXEC);
        g_assert_cmpint(td->area_fd, >=, 0);
        g_assert_cmpint(ftruncate(td->area_fd, TD_AREA_OFF + TD_AREA_SIZE), ==, 0);
        td->area = mmap(NULL, TD_AREA_OFF + TD_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, td->area_fd, 0);
        g_assert(td->area != MAP_FAILED);

        g_assert_cmpint(vu_pci_cfg_set_bar(cfg, 0, 0x2000, VU_BAR_MEM32), ==, 0);
        g_assert_cmpint(vu_pci_cfg_set_bar(cfg, 1, 0x100, VU_BAR_IO), ==, 0);
        g_assert_cmpint(vu_pci_cfg_set_bar(cfg, 2, 0x4000, VU_BAR_MEM64 | VU_BAR_PREFETCH), ==, 0);
        g_assert_cmpint(vu_pci_cfg_set_bar(cfg, 4, 0x1000, VU_BAR_MEM32), ==, 0);
        g_assert_cmpint(vu_pci_cfg_add_pm(cfg), >, 0);
        g_assert_cmpint(vu_pci_cfg_add_pcie(cfg, true), >, 0);
        if (!msi_nvec)
                g_assert_cmpint(vu_pci_cfg_add_msix(cfg, TD_NVEC, TD_MSIX_BAR, 0, TD_MSIX_BAR, TD_PBA_OFF), >, 0);

        sc.cfg = cfg;
        sc.bars[0] = (VuRegion) {
                .ops = &bar0_ops, .opaque = td, .mmap_fd = td->area_fd, .n_areas = 1,
                .areas = { { TD_AREA_OFF, TD_AREA_SIZE } },
        };
        sc.msix_bar = TD_MSIX_BAR;
        sc.msix_nvec = msi_nvec ? 0 : TD_NVEC;
        sc.msi_nvec = msi_nvec;         /* the server adds the MSI capability */
        sc.ops = with_migration ? &td_ops_mig : &td_ops;
        sc.opaque = td;
        sc.name = "test-device";
        g_assert_cmpint(vu_server_new(&sc, &td->server), ==, 0);
        return td;
}

void td_free(TestDevice *td) {
        if (!td)
                return;
        vu_server_free(td->server);
        munmap(td->area, TD_AREA_OFF + TD_AREA_SIZE);
        close(td->area_fd);
        g_mutex_clear(&td->lock);
        g_free(td);
}
