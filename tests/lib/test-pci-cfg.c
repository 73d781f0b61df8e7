/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The config-space model: header, BARs, capabilities, write filtering, reset. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vfio-user/pci-cfg.h"

static const VuPciId test_id = {
        .vendor = 0x1234, .device = 0xabcd, .subsys_vendor = 0x5678, .subsys = 0x9abc,
        .revision = 7, .class_code = 0x010802,
};

static uint32_t rd(VuPciCfg *c, uint32_t off, size_t len) {
        uint32_t v = 0;

        assert_int_equal(vu_pci_cfg_read(c, off, &v, len), 0);
        return v;
}

static unsigned wr(VuPciCfg *c, uint32_t off, uint32_t v, size_t len) {
        unsigned ev = 0xdead;

        assert_int_equal(vu_pci_cfg_write(c, off, &v, len, &ev), 0);
        return ev;
}

static void test_header(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id);

        assert_int_equal(rd(c, 0x00, 2), 0x1234);
        assert_int_equal(rd(c, 0x02, 2), 0xabcd);
        assert_int_equal(rd(c, 0x08, 1), 7);
        assert_int_equal(rd(c, 0x09, 1), 0x02);
        assert_int_equal(rd(c, 0x0a, 2), 0x0108);
        assert_int_equal(rd(c, 0x0e, 1), 0);            /* type 0 */
        assert_int_equal(rd(c, 0x2c, 2), 0x5678);
        assert_int_equal(rd(c, 0x2e, 2), 0x9abc);
        assert_int_equal(rd(c, 0x3d, 1), 0);            /* no INTx */
        assert_int_equal(rd(c, 0x06, 2) & 0x10, 0);      /* no capabilities yet */

        /* Read-only fields ignore writes. */
        wr(c, 0x00, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x00, 4), 0xabcd1234);
        wr(c, 0x08, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x08, 4), 0x01080207);
        wr(c, 0x3d, 0xff, 1);
        assert_int_equal(rd(c, 0x3d, 1), 0);
        /* Interrupt line and cache line size are software's. */
        wr(c, 0x3c, 0x5a, 1);
        assert_int_equal(rd(c, 0x3c, 1), 0x5a);

        /* Command: MEM, bus master; IO stays 0 without an I/O BAR. */
        assert_int_equal(wr(c, 0x04, 0xffff, 2), VU_CFG_EV_COMMAND);
        assert_int_equal(vu_pci_cfg_command(c), 0x0546);
        assert_true(vu_pci_cfg_bus_master(c));
        assert_int_equal(wr(c, 0x04, 0x0546, 2), 0);     /* unchanged: no event */

        /* Out of range. */
        uint8_t b[8];
        assert_int_equal(vu_pci_cfg_read(c, 4096, b, 1), -EINVAL);
        assert_int_equal(vu_pci_cfg_read(c, 4095, b, 2), -EINVAL);
        assert_int_equal(vu_pci_cfg_read(c, 0, b, 0), -EINVAL);
        assert_int_equal(vu_pci_cfg_write(c, 4094, b, 4, NULL), -EINVAL);
        assert_int_equal(vu_pci_cfg_read(c, UINT32_MAX, b, 2), -EINVAL);
        assert_int_equal(vu_pci_cfg_read(c, 4095, b, 1), 0);
        vu_pci_cfg_free(c);
}

static void test_status_w1c(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id);
        uint8_t *raw = vu_pci_cfg_raw(c);

        raw[0x07] = 0xf9;       /* error bits set by the device */
        wr(c, 0x06, 0x0800, 2);  /* clear Signaled Target Abort only */
        assert_int_equal(rd(c, 0x06, 2), 0xf100);
        wr(c, 0x06, 0xffff, 2);
        assert_int_equal(rd(c, 0x06, 2), 0x0000);
        vu_pci_cfg_free(c);
}

static void test_bars(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id);

        assert_int_equal(vu_pci_cfg_set_bar(c, 0, 0x4000, VU_BAR_MEM64 | VU_BAR_PREFETCH), 0);
        assert_int_equal(vu_pci_cfg_set_bar(c, 2, 0x100, VU_BAR_IO), 0);
        assert_int_equal(vu_pci_cfg_set_bar(c, 3, 0x1000, VU_BAR_MEM32), 0);
        assert_int_equal(vu_pci_cfg_set_bar(c, 4, 1ull << 33, VU_BAR_MEM64), 0);

        /* Bad definitions. */
        assert_int_equal(vu_pci_cfg_set_bar(c, 1, 0x1000, VU_BAR_MEM32), -EBUSY);     /* upper half of BAR0 */
        assert_int_equal(vu_pci_cfg_set_bar(c, 5, 0x1000, VU_BAR_MEM64), -EINVAL);    /* no room for the upper half */
        assert_int_equal(vu_pci_cfg_set_bar(c, 6, 0x1000, VU_BAR_MEM32), -EINVAL);
        assert_int_equal(vu_pci_cfg_set_bar(c, 3, 0x1800, VU_BAR_MEM32), -EINVAL);    /* not a power of two */
        assert_int_equal(vu_pci_cfg_set_bar(c, 3, 8, VU_BAR_MEM32), -EINVAL);
        assert_int_equal(vu_pci_cfg_set_bar(c, 3, 512, VU_BAR_IO), -EINVAL);
        assert_int_equal(vu_pci_cfg_set_bar(c, 3, 0x1000, VU_BAR_IO | VU_BAR_PREFETCH), -EINVAL);
        assert_int_equal(vu_pci_cfg_set_bar(c, 3, 0, VU_BAR_MEM32), -EINVAL);

        assert_int_equal(vu_pci_cfg_bar_size(c, 0), 0x4000);
        assert_int_equal(vu_pci_cfg_bar_size(c, 1), 0);      /* upper half */
        assert_int_equal(vu_pci_cfg_bar_size(c, 2), 0x100);
        assert_int_equal(vu_pci_cfg_bar_size(c, 4), 1ull << 33);
        assert_int_equal(vu_pci_cfg_bar_size(c, 5), 0);
        assert_int_equal(vu_pci_cfg_bar_type(c, 0), VU_BAR_MEM64 | VU_BAR_PREFETCH);
        assert_int_equal(vu_pci_cfg_bar_type(c, 1), -ENOENT);
        assert_int_equal(vu_pci_cfg_bar_type(c, 2), VU_BAR_IO);

        /* Type bits read back. */
        assert_int_equal(rd(c, 0x10, 4), 0xc);
        assert_int_equal(rd(c, 0x18, 4), 0x1);
        assert_int_equal(rd(c, 0x1c, 4), 0x0);

        /* Sizing: all ones reads back the size mask with the type bits. */
        wr(c, 0x10, 0xffffffff, 4);
        wr(c, 0x14, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x10, 4), 0xffffc00c);
        assert_int_equal(rd(c, 0x14, 4), 0xffffffff);
        wr(c, 0x18, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x18, 4), 0xffffff01);
        wr(c, 0x1c, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x1c, 4), 0xfffff000);
        wr(c, 0x20, 0xffffffff, 4);
        wr(c, 0x24, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x20, 4), 0x4);          /* 8 GiB: low dword has only type bits */
        assert_int_equal(rd(c, 0x24, 4), 0xfffffffe);
        /* Absent BAR and ROM stay 0. */
        wr(c, 0x30, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x30, 4), 0);

        /* An address is kept, aligned. */
        wr(c, 0x10, 0xfebc1234, 4);
        assert_int_equal(rd(c, 0x10, 4), 0xfebc000c);

        /* I/O BAR lets the IO enable bit through. */
        wr(c, 0x04, 0x0001, 2);
        assert_int_equal(vu_pci_cfg_command(c) & 1, 1);

        /* Reset keeps BAR addresses, clears the command register. */
        vu_pci_cfg_reset(c);
        assert_int_equal(rd(c, 0x10, 4), 0xfebc000c);
        assert_int_equal(vu_pci_cfg_command(c), 0);

        /* Redefining a 64-bit BAR as 32-bit frees its upper half. */
        assert_int_equal(vu_pci_cfg_set_bar(c, 0, 0x1000, VU_BAR_MEM32), 0);
        assert_int_equal(vu_pci_cfg_set_bar(c, 1, 0x1000, VU_BAR_MEM32), 0);
        vu_pci_cfg_free(c);
}

/* Walk the capability list; returns the number found and fills ids/offsets. */
static int walk_caps(VuPciCfg *c, uint8_t *ids, unsigned *offs) {
        unsigned off = rd(c, 0x34, 1);
        int n = 0;

        while (off && n < 16) {
                ids[n] = (uint8_t) rd(c, off, 1);
                offs[n++] = off;
                off = rd(c, off + 1, 1);
        }
        return n;
}

static void test_cap_chain(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id);
        uint8_t vbody[6] = { 8, 0xaa, 0xbb, 0xcc, 0xdd, 0xee };
        uint8_t vmask[6] = { 0, 0, 0xff, 0, 0, 0 };
        uint8_t ids[16];
        unsigned offs[16];
        int pm, pcie, msix, ven;

        pm = vu_pci_cfg_add_pm(c);
        pcie = vu_pci_cfg_add_pcie(c, true);
        msix = vu_pci_cfg_add_msix(c, 16, 4, 0, 4, 0x800);
        ven = vu_pci_cfg_add_vendor(c, vbody, sizeof(vbody), vmask);
        assert_true(pm >= 0x40 && pcie > pm && msix > pcie && ven > msix);
        assert_int_equal(pm % 4, 0);
        assert_int_equal(pcie % 4, 0);
        assert_int_equal(msix % 4, 0);
        assert_int_equal(ven % 4, 0);
        assert_int_equal(vu_pci_cfg_add_pm(c), -EEXIST);
        assert_int_equal(vu_pci_cfg_add_pcie(c, false), -EEXIST);
        assert_int_equal(vu_pci_cfg_add_msix(c, 4, 0, 0, 0, 0x800), -EEXIST);

        assert_int_equal(rd(c, 0x06, 2) & 0x10, 0x10);
        assert_int_equal(walk_caps(c, ids, offs), 4);
        assert_int_equal(ids[0], 0x01);
        assert_int_equal(ids[1], 0x10);
        assert_int_equal(ids[2], 0x11);
        assert_int_equal(ids[3], 0x09);
        assert_int_equal(offs[0], (unsigned) pm);
        assert_int_equal(offs[3], (unsigned) ven);
        assert_int_equal(rd(c, ven + 2, 1), 8);

        /* Headers are read-only: the chain cannot be rewired. */
        wr(c, 0x34, 0, 1);
        wr(c, pm, 0xffff, 2);
        wr(c, msix, 0xffff, 2);
        assert_int_equal(walk_caps(c, ids, offs), 4);

        /* Vendor capability: only the byte the mask allows changes, with an event. */
        assert_int_equal(wr(c, ven + 2, 0x11223344, 4), VU_CFG_EV_VENDOR);
        assert_int_equal(rd(c, ven + 2, 4), 0xcc22aa08);
        assert_int_equal(wr(c, ven + 5, 0x55, 1), 0);
        assert_int_equal(rd(c, ven + 5, 1), 0xcc);

        /* Extended config space reads zero: no extended capabilities. */
        assert_int_equal(rd(c, 0x100, 4), 0);
        wr(c, 0x100, 0xffffffff, 4);
        assert_int_equal(rd(c, 0x100, 4), 0);
        assert_int_equal(rd(c, 0xffc, 4), 0);
        vu_pci_cfg_free(c);
}

static void test_pm(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id);
        int pm = vu_pci_cfg_add_pm(c);

        assert_int_equal(rd(c, pm + 2, 2) & 0x7, 3);          /* PM 1.2 */
        assert_int_equal(rd(c, pm + 4, 2), 0x0008);            /* D0, No_Soft_Reset */
        assert_int_equal(wr(c, pm + 4, 0x0003, 2), VU_CFG_EV_PM);
        assert_int_equal(rd(c, pm + 4, 2) & 3, 3);
        /* D1/D2 are not supported: such writes leave the state alone. */
        assert_int_equal(wr(c, pm + 4, 0x0001, 2), 0);
        assert_int_equal(rd(c, pm + 4, 2) & 3, 3);
        assert_int_equal(wr(c, pm + 4, 0x0000, 2), VU_CFG_EV_PM);
        assert_int_equal(rd(c, pm + 4, 2), 0x0008);
        vu_pci_cfg_free(c);
}

static void test_pcie_flr(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id), *c2 = vu_pci_cfg_new(&test_id);
        int x = vu_pci_cfg_add_pcie(c, true), y = vu_pci_cfg_add_pcie(c2, false);
        uint32_t devctl;

        assert_int_equal(rd(c, x + 2, 2) & 0xf, 2);           /* version 2 */
        assert_int_equal((rd(c, x + 2, 2) >> 4) & 0xf, 0);    /* endpoint */
        assert_true(rd(c, x + 4, 4) & (1u << 28));
        assert_false(rd(c2, y + 4, 4) & (1u << 28));
        assert_int_equal(rd(c, x + 0x12, 2), 0x0011);         /* link up x1 2.5 GT/s */

        devctl = rd(c, x + 8, 2);
        assert_int_equal(wr(c, x + 8, devctl | 0x8000, 2), VU_CFG_EV_FLR);
        assert_int_equal(rd(c, x + 8, 2) & 0x8000, 0);        /* reads as 0 */
        /* A byte write of the upper half triggers too. */
        assert_int_equal(wr(c, x + 9, 0x80, 1), VU_CFG_EV_FLR);
        /* Without the capability bit, no FLR. */
        assert_int_equal(wr(c2, y + 8, 0x8000, 2), 0);

        /* Writable fields: MPS/MRRS, error enables; not the reserved bit 15 storage. */
        wr(c, x + 8, 0x700f, 2);
        assert_int_equal(rd(c, x + 8, 2), 0x700f);
        /* Link status and capabilities are read-only. */
        wr(c, x + 0x12, 0xffff, 2);
        assert_int_equal(rd(c, x + 0x12, 2), 0x0011);
        /* Device status error bits are RW1C. */
        vu_pci_cfg_raw(c)[x + 0x0a] = 0x0f;
        wr(c, x + 0x0a, 0x0005, 2);
        assert_int_equal(rd(c, x + 0x0a, 2), 0x000a);
        vu_pci_cfg_free(c);
        vu_pci_cfg_free(c2);
}

static void test_msix(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id), *bad = vu_pci_cfg_new(&test_id);
        int m = vu_pci_cfg_add_msix(c, 33, 2, 0x2000, 3, 0x100);
        unsigned tb, pb;
        uint32_t to, po;

        assert_int_equal(vu_pci_cfg_add_msix(bad, 0, 0, 0, 0, 0), -EINVAL);
        assert_int_equal(vu_pci_cfg_add_msix(bad, 2049, 0, 0, 0, 0x800), -EINVAL);
        assert_int_equal(vu_pci_cfg_add_msix(bad, 4, 0, 4, 0, 0x800), -EINVAL);    /* unaligned table */
        assert_int_equal(vu_pci_cfg_add_msix(bad, 4, 6, 0, 0, 0x800), -EINVAL);
        vu_pci_cfg_free(bad);
        assert_int_equal(rd(c, m + 2, 2), 32);                 /* table size N-1 */
        assert_int_equal(rd(c, m + 4, 4), 0x2002);
        assert_int_equal(rd(c, m + 8, 4), 0x103);
        assert_int_equal(vu_pci_cfg_msix_nvec(c), 33);
        assert_int_equal(vu_pci_cfg_msix_layout(c, &tb, &to, &pb, &po), 0);
        assert_int_equal(tb, 2);
        assert_int_equal(to, 0x2000);
        assert_int_equal(pb, 3);
        assert_int_equal(po, 0x100);
        assert_false(vu_pci_cfg_msix_enabled(c));

        assert_int_equal(wr(c, m + 2, 0xffff, 2), VU_CFG_EV_MSIX);
        assert_true(vu_pci_cfg_msix_enabled(c));
        assert_true(vu_pci_cfg_msix_masked(c));
        assert_int_equal(rd(c, m + 2, 2), 0xc020);             /* size is read-only */
        assert_int_equal(wr(c, m + 3, 0x80, 1), VU_CFG_EV_MSIX);
        assert_false(vu_pci_cfg_msix_masked(c));
        assert_int_equal(wr(c, m + 3, 0x80, 1), 0);
        /* Table/PBA location is read-only. */
        wr(c, m + 4, 0, 4);
        assert_int_equal(rd(c, m + 4, 4), 0x2002);
        vu_pci_cfg_reset(c);
        assert_false(vu_pci_cfg_msix_enabled(c));
        vu_pci_cfg_free(c);
}

/* MSI (§7.7.1): 64-bit, per-vector masking, Multiple Message Enable capped at Capable. */
static void test_msi(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id), *bad = vu_pci_cfg_new(&test_id);
        int m;

        assert_int_equal(vu_pci_cfg_add_msi(bad, 0), -EINVAL);
        assert_int_equal(vu_pci_cfg_add_msi(bad, 3), -EINVAL);
        assert_int_equal(vu_pci_cfg_add_msi(bad, 64), -EINVAL);
        assert_true(vu_pci_cfg_add_msix(bad, 4, 0, 0, 0, 0x800) > 0);
        assert_int_equal(vu_pci_cfg_add_msi(bad, 4), -EEXIST);  /* MSI or MSI-X, not both */
        vu_pci_cfg_free(bad);

        m = vu_pci_cfg_add_msi(c, 8);
        assert_true(m >= 0x40);
        assert_int_equal(vu_pci_cfg_add_msi(c, 8), -EEXIST);
        assert_int_equal(vu_pci_cfg_add_msix(c, 4, 0, 0, 0, 0x800), -EEXIST);
        assert_int_equal(rd(c, m, 1), 0x05);
        assert_int_equal(rd(c, m + 2, 2), 0x0186);             /* PVM, 64-bit, 8 capable, 1 enabled, off */
        assert_int_equal(vu_pci_cfg_msi_nvec(c), 8);
        assert_int_equal(vu_pci_cfg_msi_nalloc(c), 1);
        assert_false(vu_pci_cfg_msi_enabled(c));
        assert_int_equal(vu_pci_cfg_msix_nvec(c), 0);

        /* Enable, asking for 128 messages: granted the 8 the function has. */
        assert_int_equal(wr(c, m + 2, 0xffff, 2), VU_CFG_EV_MSI);
        assert_int_equal(rd(c, m + 2, 2), 0x01b7);
        assert_true(vu_pci_cfg_msi_enabled(c));
        assert_int_equal(vu_pci_cfg_msi_nalloc(c), 8);
        assert_int_equal(wr(c, m + 2, 0x0121, 2), VU_CFG_EV_MSI);
        assert_int_equal(vu_pci_cfg_msi_nalloc(c), 4);
        /* Address (dword aligned) and data are the driver's; no event. */
        assert_int_equal(wr(c, m + 4, 0xffffffff, 4), 0);
        assert_int_equal(rd(c, m + 4, 4), 0xfffffffc);
        assert_int_equal(wr(c, m + 8, 0x12345678, 4), 0);
        assert_int_equal(rd(c, m + 8, 4), 0x12345678);
        assert_int_equal(wr(c, m + 0xc, 0xabcd, 2), 0);
        assert_int_equal(rd(c, m + 0xc, 2), 0xabcd);
        /* Mask Bits: only the 8 implemented vectors; Pending Bits read-only, set by the device. */
        assert_int_equal(wr(c, m + 0x10, 0xffffffff, 4), VU_CFG_EV_MSI);
        assert_int_equal(vu_pci_cfg_msi_mask(c), 0xff);
        assert_int_equal(wr(c, m + 0x10, 0xff, 4), 0);
        assert_int_equal(wr(c, m + 0x14, 0xffffffff, 4), 0);
        assert_int_equal(rd(c, m + 0x14, 4), 0);
        vu_pci_cfg_msi_set_pending(c, 0x5);
        assert_int_equal(rd(c, m + 0x14, 4), 0x5);
        /* Capable count and the chain are read-only. */
        wr(c, m, 0xffff, 2);
        assert_int_equal(rd(c, m, 2), 0x0005);

        vu_pci_cfg_reset(c);
        assert_false(vu_pci_cfg_msi_enabled(c));
        assert_int_equal(vu_pci_cfg_msi_mask(c), 0);
        assert_int_equal(vu_pci_cfg_msi_nalloc(c), 1);
        vu_pci_cfg_free(c);
}

static void test_space_limits(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id);
        uint8_t body[200] = { 202 };
        uint8_t small[20] = { 22 };
        int r;

        assert_int_equal(vu_pci_cfg_add_vendor(c, body, 0, NULL), -EINVAL);
        assert_int_equal(vu_pci_cfg_add_vendor(c, body, sizeof(body), NULL), -EINVAL);
        /* Fill the 192 bytes of standard capability space. */
        for (int i = 0; i < 8; i++)
                assert_true(vu_pci_cfg_add_vendor(c, small, sizeof(small), NULL) >= 0x40);
        r = vu_pci_cfg_add_vendor(c, small, sizeof(small), NULL);
        assert_int_equal(r, -ENOSPC);
        assert_int_equal(vu_pci_cfg_add_pcie(c, true), -ENOSPC);
        vu_pci_cfg_free(c);
}

static void test_reset_defaults(void **state) {
        VuPciCfg *c = vu_pci_cfg_new(&test_id);
        int pm = vu_pci_cfg_add_pm(c);

        /* Device-made raw edits become defaults once saved. */
        vu_pci_cfg_raw(c)[0x3c] = 0x0b;
        vu_pci_cfg_save_defaults(c);
        wr(c, 0x3c, 0x33, 1);
        wr(c, 0x0c, 0x10, 1);
        wr(c, pm + 4, 3, 2);
        wr(c, 0x04, 0x0006, 2);
        vu_pci_cfg_reset(c);
        assert_int_equal(rd(c, 0x3c, 1), 0x0b);
        assert_int_equal(rd(c, 0x0c, 1), 0);
        assert_int_equal(rd(c, pm + 4, 2) & 3, 0);
        assert_int_equal(vu_pci_cfg_command(c), 0);
        vu_pci_cfg_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_header),
                cmocka_unit_test(test_status_w1c),
                cmocka_unit_test(test_bars),
                cmocka_unit_test(test_cap_chain),
                cmocka_unit_test(test_pm),
                cmocka_unit_test(test_pcie_flr),
                cmocka_unit_test(test_msix),
                cmocka_unit_test(test_msi),
                cmocka_unit_test(test_space_limits),
                cmocka_unit_test(test_reset_defaults),
        };

        return cmocka_run_group_tests_name("pci-cfg", tests, NULL, NULL);
}
