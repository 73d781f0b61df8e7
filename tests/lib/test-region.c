/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DEVICE_GET_INFO, GET_REGION_INFO, GET_REGION_IO_FDS, REGION_READ/WRITE,
 * REGION_WRITE_MULTI, DEVICE_RESET and FLR, against the test device.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "vfio-user/transport.h"

static int rd(Pair *p, uint32_t region, uint64_t off, void *buf, uint32_t count) {
        struct vu_region_access a = { off, region, count };
        g_autofree uint8_t *out = g_malloc0(sizeof(a) + count + 1);
        size_t rlen;
        int r = pair_xfer(p, VU_CMD_REGION_READ, 0, &a, sizeof(a), NULL, 0, NULL, 0, out, sizeof(a) + count, &rlen);

        if (r == 0) {
                assert_int_equal(rlen, sizeof(a) + count);
                assert_memory_equal(out, &a, sizeof(a));
                memcpy(buf, out + sizeof(a), count);
        }
        return r;
}

static int wr(Pair *p, uint32_t region, uint64_t off, const void *buf, uint32_t count, bool posted) {
        struct vu_region_access a = { off, region, count }, out;
        size_t rlen;
        int r = pair_xfer(p, VU_CMD_REGION_WRITE, posted ? VU_F_NO_REPLY : 0, &a, sizeof(a), buf, count, NULL, 0, &out,
                          sizeof(out), &rlen);

        if (r == 0) {
                assert_int_equal(rlen, sizeof(a));
                assert_memory_equal(&out, &a, sizeof(a));
        }
        return r;
}

static void test_device_info(void **state) {
        Pair *p = pair_new(false, true);
        struct vu_device_info in = { .argsz = 16 }, out;
        size_t rlen;

        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, &out, sizeof(out),
                                   &rlen),
                         0);
        assert_int_equal(rlen, 16);
        assert_int_equal(out.argsz, 16);
        assert_int_equal(out.flags, VU_DEV_FLAGS_PCI | VU_DEV_FLAGS_RESET);
        assert_int_equal(out.num_regions, 9);
        assert_int_equal(out.num_irqs, 5);
        in.argsz = 8;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        pair_free(p);
}

static int region_info(Pair *p, uint32_t index, uint32_t argsz, uint8_t *out, size_t cap, size_t *rlen) {
        struct vu_region_info in = { .argsz = argsz, .index = index };
        struct vu_hdr h = { .msg_id = 0x4242, .cmd = VU_CMD_DEVICE_GET_REGION_INFO, .size = sizeof(h) + sizeof(in) };
        uint8_t msg[sizeof(h) + sizeof(in)];
        int r;

        memcpy(msg, &h, sizeof(h));
        memcpy(msg + sizeof(h), &in, sizeof(in));
        assert_int_equal(vu_client_send_raw(p->c, msg, sizeof(msg), NULL, 0), 0);
        assert_int_equal(vu_server_dispatch(p->td->server), 0);
        r = vu_client_recv_raw(p->c, out, cap, &h);     /* closes any fd that came along */
        if (r < 0)
                return r;
        if (h.flags & VU_F_ERROR)
                return -(int) h.error;
        *rlen = h.size - sizeof(h);
        return 0;
}

static void test_region_info(void **state) {
        Pair *p = pair_new(false, true);
        static const uint64_t sizes[9] = { 0x2000, 0x100, 0x4000, 0, 0x1000, 0, 0, 4096, 0 };
        uint8_t out[256];
        struct vu_region_info ri;
        size_t rlen;

        for (uint32_t i = 0; i < 9; i++) {
                assert_int_equal(region_info(p, i, 32, out, sizeof(out), &rlen), 0);
                memcpy(&ri, out, sizeof(ri));
                assert_int_equal(ri.index, i);
                assert_int_equal(ri.size, sizes[i]);
                assert_int_equal(ri.offset, 0);
                if (sizes[i])
                        assert_int_equal(ri.flags & 3, VU_REGION_F_READ | VU_REGION_F_WRITE);
                else
                        assert_int_equal(ri.flags, 0);
                if (i == 0) {
                        /* Mappable: the capability does not fit in 32 bytes; argsz says how much is needed. */
                        assert_int_equal(rlen, 32);
                        assert_int_equal(ri.argsz, 32 + 16 + 16);
                        assert_int_equal(ri.flags, 0xf);
                        assert_int_equal(ri.cap_offset, 0);
                } else {
                        assert_int_equal(rlen, 32);
                        assert_int_equal(ri.argsz, 32);
                }
        }
        assert_int_equal(region_info(p, 9, 32, out, sizeof(out), &rlen), -EINVAL);
        assert_int_equal(region_info(p, UINT32_MAX, 32, out, sizeof(out), &rlen), -EINVAL);
        assert_int_equal(region_info(p, 0, 16, out, sizeof(out), &rlen), -EINVAL);
        pair_free(p);
}

/* The retry with the larger argsz brings the sparse capability and exactly one fd. */
static void test_region_info_caps_fd(void **state) {
        Pair *p = pair_new(false, true);
        struct vu_region_info in = { .argsz = 64, .index = 0 }, ri;
        struct vu_cap_sparse_mmap cap;
        struct vu_sparse_area area;
        int region_fd = -1;

        {
                struct vu_hdr h = { .msg_id = 9, .cmd = VU_CMD_DEVICE_GET_REGION_INFO, .size = 16 + 32 };
                uint8_t msg[48];

                memcpy(msg, &h, 16);
                memcpy(msg + 16, &in, 32);
                assert_int_equal(vu_client_send_raw(p->c, msg, sizeof(msg), NULL, 0), 0);
                assert_int_equal(vu_server_dispatch(p->td->server), 0);
        }
        {
                /* Receive with the socket helper, which hands the fds over. */
                int fds[4];
                unsigned n = 0;
                bool trunc = false;
                uint8_t buf[128];
                ssize_t got = vu_sock_recv(vu_client_fd(p->c), buf, sizeof(buf), fds, 4, &n, &trunc, true);

                assert_int_equal(got, 16 + 64);
                assert_int_equal(n, 1);
                assert_false(trunc);
                region_fd = fds[0];
                memcpy(&ri, buf + 16, sizeof(ri));
                memcpy(&cap, buf + 16 + 32, sizeof(cap));
                memcpy(&area, buf + 16 + 32 + sizeof(cap), sizeof(area));
        }
        assert_int_equal(ri.argsz, 64);
        assert_int_equal(ri.flags, VU_REGION_F_READ | VU_REGION_F_WRITE | VU_REGION_F_MMAP | VU_REGION_F_CAPS);
        assert_int_equal(ri.cap_offset, 32);
        assert_int_equal(cap.header.id, VU_REGION_INFO_CAP_SPARSE_MMAP);
        assert_int_equal(cap.header.version, 1);
        assert_int_equal(cap.header.next, 0);
        assert_int_equal(cap.nr_areas, 1);
        assert_int_equal(area.offset, TD_AREA_OFF);
        assert_int_equal(area.size, TD_AREA_SIZE);

        /* The fd maps the area: what the client writes, the device sees, and the server too. */
        {
                uint8_t *m = mmap(NULL, TD_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd, TD_AREA_OFF);
                uint32_t v = 0;

                assert_true(m != MAP_FAILED);
                m[0x10] = 0x5c;
                assert_int_equal(p->td->area[TD_AREA_OFF + 0x10], 0x5c);
                assert_int_equal(rd(p, 0, TD_AREA_OFF + 0x10, &v, 1), 0);
                assert_int_equal(v, 0x5c);
                v = 0xa5a5a5a5;
                assert_int_equal(wr(p, 0, TD_AREA_OFF + 0x20, &v, 4, false), 0);
                assert_int_equal(m[0x20], 0xa5);
                munmap(m, TD_AREA_SIZE);
        }
        close(region_fd);
        pair_free(p);
}

static void test_read_write(void **state) {
        Pair *p = pair_new(false, true);
        uint8_t buf[4096] = { 0 }, cfg[4096] = { 0 };
        uint64_t v64 = 0x1122334455667788ull, r64 = 0;
        uint32_t v = 0;

        /* Trapped registers. */
        assert_int_equal(wr(p, 0, 0x8, &v64, 8, false), 0);
        assert_int_equal(rd(p, 0, 0x8, &r64, 8), 0);
        assert_int_equal(r64, v64);
        assert_int_equal(rd(p, 0, 0xc, &v, 2), 0);
        assert_int_equal(v, 0x3344);
        /* Posted write: no reply, but applied (in order, before the next request). */
        v = 0xcafe;
        assert_int_equal(wr(p, 0, 0x40, &v, 4, true), -ETIMEDOUT);
        assert_int_equal(rd(p, 0, 0x40, &r64, 4), 0);
        assert_int_equal((uint32_t) r64, 0xcafe);
        /* A read spanning registers and the mappable area. */
        p->td->area[TD_AREA_OFF] = 0x77;
        assert_int_equal(rd(p, 0, TD_AREA_OFF - 4, buf, 8), 0);
        assert_int_equal(buf[4], 0x77);
        /* BARs without ops read zero and ignore writes; the I/O BAR and the 64-bit BAR. */
        assert_int_equal(wr(p, 1, 0, &v64, 8, false), 0);
        assert_int_equal(rd(p, 1, 0xf8, &r64, 8), 0);
        assert_int_equal(r64, 0);
        assert_int_equal(rd(p, 2, 0x3ff8, &r64, 8), 0);
        /* Config space, all of it in one read, as QEMU does. */
        assert_int_equal(rd(p, VU_PCI_CONFIG_REGION, 0, cfg, 4096), 0);
        assert_int_equal(cfg[0], 0x36);
        assert_int_equal(cfg[1], 0x1b);
        assert_int_equal(cfg[0x10] & 0xf, 0x0);                 /* BAR0 mem32 */
        assert_int_equal(cfg[0x14] & 0x3, 0x1);                 /* BAR1 io */
        assert_int_equal(cfg[0x18] & 0xf, 0xc);                 /* BAR2 mem64 prefetch */

        /* Out of range, with saturating arithmetic. */
        assert_int_equal(rd(p, 0, 0x2000, buf, 1), -EINVAL);
        assert_int_equal(rd(p, 0, 0x1fff, buf, 2), -EINVAL);
        assert_int_equal(rd(p, 0, UINT64_MAX, buf, 2), -EINVAL);
        assert_int_equal(rd(p, 0, UINT64_MAX - 1, buf, 4), -EINVAL);
        assert_int_equal(rd(p, 0, 0, buf, 0), -EINVAL);
        assert_int_equal(rd(p, 3, 0, buf, 4), -EINVAL);         /* upper half of BAR2: size 0 */
        assert_int_equal(rd(p, 5, 0, buf, 4), -EINVAL);
        assert_int_equal(rd(p, VU_PCI_ROM_REGION, 0, buf, 4), -EINVAL);
        assert_int_equal(rd(p, VU_PCI_VGA_REGION, 0, buf, 4), -EINVAL);
        assert_int_equal(rd(p, 9, 0, buf, 4), -EINVAL);
        assert_int_equal(rd(p, UINT32_MAX, 0, buf, 4), -EINVAL);
        assert_int_equal(rd(p, VU_PCI_CONFIG_REGION, 4095, buf, 2), -EINVAL);
        assert_int_equal(wr(p, 0, 0x2000, buf, 1, false), -EINVAL);
        /* A count larger than the data sent, and smaller. */
        {
                struct vu_region_access a = { 0, 0, 8 };

                assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE, 0, &a, sizeof(a), buf, 4, NULL, 0, NULL, 0, NULL),
                                 -EINVAL);
                assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE, 0, &a, sizeof(a), buf, 12, NULL, 0, NULL, 0, NULL),
                                 -EINVAL);
                a.count = VU_MAX_DATA_XFER + 1;
                assert_int_equal(pair_xfer(p, VU_CMD_REGION_READ, 0, &a, sizeof(a), NULL, 0, NULL, 0, NULL, 0, NULL),
                                 -EINVAL);
        }
        /* The device's own error reaches the client. */
        assert_int_equal(rd(p, 0, TD_REG_BROKEN, buf, 4), -EIO);
        /* A posted write that fails is not answered either. */
        {
                VuServerStats a, b;

                vu_server_get_stats(p->td->server, &a);
                assert_int_equal(wr(p, 0, 0x3000, buf, 4, true), -ETIMEDOUT);
                vu_server_get_stats(p->td->server, &b);
                assert_int_equal(b.errors, a.errors + 1);
        }
        pair_free(p);
}

static void test_write_multi(void **state) {
        Pair *p = pair_new(false, true);
        struct vu_write_multi_entry e[VU_WRITE_MULTI_MAX + 1];
        uint64_t cnt, done = 0;
        uint32_t v = 0;
        size_t rlen;

        memset(e, 0, sizeof(e));
        for (int i = 0; i < 3; i++) {
                e[i].offset = 0x20;
                e[i].region = 0;
                e[i].count = 4;
                e[i].data[0] = (uint8_t) (i + 1);
        }
        e[1].offset = 0x24;
        cnt = 3;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, 3 * sizeof(e[0]), NULL, 0, &done,
                                   sizeof(done), &rlen),
                         0);
        assert_int_equal(rlen, 8);
        assert_int_equal(done, 3);
        assert_int_equal(rd(p, 0, 0x20, &v, 4), 0);
        assert_int_equal(v, 3);         /* applied in order: the last write to 0x20 wins */
        assert_int_equal(rd(p, 0, 0x24, &v, 4), 0);
        assert_int_equal(v, 2);

        /* Nothing is applied when any entry is bad. */
        e[0].data[0] = 0x55;
        e[2].count = 9;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, 3 * sizeof(e[0]), NULL, 0, NULL, 0,
                                   NULL),
                         -EINVAL);
        e[2].count = 4;
        e[2].region = 9;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, 3 * sizeof(e[0]), NULL, 0, NULL, 0,
                                   NULL),
                         -EINVAL);
        e[2].region = 0;
        e[2].offset = 0x1ffe;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, 3 * sizeof(e[0]), NULL, 0, NULL, 0,
                                   NULL),
                         -EINVAL);
        assert_int_equal(rd(p, 0, 0x20, &v, 4), 0);
        assert_int_equal(v, 3);
        /* Counts: 0, more than 200, not matching the payload. */
        cnt = 0;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, sizeof(e[0]), NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        cnt = 2;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, sizeof(e[0]), NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        cnt = UINT64_MAX;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, sizeof(e[0]), NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        for (int i = 0; i <= VU_WRITE_MULTI_MAX; i++)
                e[i] = (struct vu_write_multi_entry) { .offset = 0x30, .region = 0, .count = 1 };
        cnt = VU_WRITE_MULTI_MAX + 1;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, 8, e, sizeof(e), NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        cnt = VU_WRITE_MULTI_MAX;
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, VU_F_NO_REPLY, &cnt, 8, e,
                                   VU_WRITE_MULTI_MAX * sizeof(e[0]), NULL, 0, NULL, 0, NULL),
                         -ETIMEDOUT);
        pair_free(p);
}

static void test_io_fds(void **state) {
        Pair *p = pair_new(false, true);
        struct vu_region_io_fds_req in = { .argsz = 16, .index = 0 }, out;
        size_t rlen;

        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_REGION_IO_FDS, 0, &in, sizeof(in), NULL, 0, NULL, 0, &out,
                                   sizeof(out), &rlen),
                         0);
        assert_int_equal(rlen, 16);
        assert_int_equal(out.count, 0);
        assert_int_equal(out.index, 0);
        in.index = VU_PCI_ROM_REGION;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_REGION_IO_FDS, 0, &in, sizeof(in), NULL, 0, NULL, 0, NULL, 0,
                                   NULL),
                         -EINVAL);
        in.index = 9;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_REGION_IO_FDS, 0, &in, sizeof(in), NULL, 0, NULL, 0, NULL, 0,
                                   NULL),
                         -EINVAL);
        in.index = 0;
        in.argsz = 8;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_REGION_IO_FDS, 0, &in, sizeof(in), NULL, 0, NULL, 0, NULL, 0,
                                   NULL),
                         -EINVAL);
        pair_free(p);
}

static void test_reset_and_flr(void **state) {
        Pair *p = pair_new(false, true);
        int fd = memfd_create("guest", MFD_CLOEXEC);
        struct vu_dma_map m = { 32, VU_DMA_READ, 0, 0x100000, 0x1000 };
        uint32_t v = 0x1234, bar0;
        int pcie = -1;

        assert_int_equal(ftruncate(fd, 0x1000), 0);
        assert_int_equal(pair_xfer(p, VU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0, &fd, 1, NULL, 0, NULL), 0);
        assert_int_equal(wr(p, 0, 0, &v, 4, false), 0);
        pair_cfg_write(p, 0x10, 0xfe000000, 4);
        pair_cfg_write(p, 0x04, 0x0006, 2);
        assert_int_equal(p->td->last_cfg_events, VU_CFG_EV_COMMAND);
        bar0 = pair_cfg_read(p, 0x10, 4);
        assert_int_equal(bar0, 0xfe000000);

        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL), 0);
        assert_int_equal(p->td->reset_calls[VU_RESET_DEVICE], 1);
        assert_int_equal(pair_cfg_read(p, 0x04, 2), 0);         /* command cleared */
        assert_int_equal(pair_cfg_read(p, 0x10, 4), bar0);      /* BAR kept */
        assert_int_equal(vu_dma_count(vu_server_dma(p->td->server)), 1);      /* maps survive */
        assert_int_equal(rd(p, 0, 0, &v, 4), 0);
        assert_int_equal(v, 0);         /* the device reset its registers */

        /* FLR through the PCIe capability's Device Control. */
        for (unsigned off = pair_cfg_read(p, 0x34, 1); off; off = pair_cfg_read(p, off + 1, 1))
                if (pair_cfg_read(p, off, 1) == 0x10)
                        pcie = (int) off;
        assert_true(pcie > 0);
        pair_cfg_write(p, 0x04, 0x0006, 2);
        assert_int_equal(pair_cfg_write(p, (uint32_t) pcie + 8, 0x8000, 2), 0);
        assert_int_equal(p->td->reset_calls[VU_RESET_FLR], 1);
        assert_int_equal(pair_cfg_read(p, 0x04, 2), 0);
        assert_int_equal(pair_cfg_read(p, 0x10, 4), bar0);
        assert_int_equal(p->td->quiesced, 0);
        close(fd);
        pair_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_device_info),
                cmocka_unit_test(test_region_info),
                cmocka_unit_test(test_region_info_caps_fd),
                cmocka_unit_test(test_read_write),
                cmocka_unit_test(test_write_multi),
                cmocka_unit_test(test_io_fds),
                cmocka_unit_test(test_reset_and_flr),
        };

        return cmocka_run_group_tests_name("region", tests, NULL, NULL);
}
