/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DEVICE_FEATURE and MIG_DATA_READ/WRITE messages: the migration state
 * machine as the client drives it, probes, argsz errors, command gating
 * while stopped, the data stream, and DMA logging.
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

static int feature(Pair *p, uint32_t argsz, uint32_t flags, const void *data, size_t len, void *out, size_t cap,
                   size_t *rlen) {
        struct vu_device_feature f = { argsz, flags };

        return pair_xfer(p, VU_CMD_DEVICE_FEATURE, 0, &f, sizeof(f), data, len, NULL, 0, out, cap, rlen);
}

static int set_state(Pair *p, uint32_t st) {
        struct vu_feature_mig_state s = { st, 0 };
        uint8_t out[16];
        size_t rlen;
        int r = feature(p, 16, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &s, sizeof(s), out, sizeof(out), &rlen);

        if (r == 0)
                assert_int_equal(rlen, 16);
        return r;
}

static uint32_t get_state(Pair *p) {
        uint8_t out[16];
        struct vu_feature_mig_state s;
        size_t rlen;

        assert_int_equal(feature(p, 16, VU_FEATURE_GET | VU_FEATURE_MIG_DEVICE_STATE, NULL, 0, out, sizeof(out), &rlen),
                         0);
        assert_int_equal(rlen, 16);
        memcpy(&s, out + 8, sizeof(s));
        return s.device_state;
}

static int data_read(Pair *p, void *buf, uint32_t len) {
        struct vu_mig_data m = { (uint32_t) (sizeof(m) + len), len };
        g_autofree uint8_t *out = g_malloc(sizeof(m) + len);
        struct vu_mig_data rm;
        size_t rlen;
        int r = pair_xfer(p, VU_CMD_MIG_DATA_READ, 0, &m, sizeof(m), NULL, 0, NULL, 0, out, sizeof(m) + len, &rlen);

        if (r < 0)
                return r;
        memcpy(&rm, out, sizeof(rm));
        assert_int_equal(rlen, sizeof(rm) + rm.size);
        assert_int_equal(rm.argsz, rlen);
        assert_true(rm.size <= len);
        memcpy(buf, out + sizeof(rm), rm.size);
        return (int) rm.size;
}

static int data_write(Pair *p, const void *buf, uint32_t len) {
        struct vu_mig_data m = { (uint32_t) (sizeof(m) + len), len };

        return pair_xfer(p, VU_CMD_MIG_DATA_WRITE, 0, &m, sizeof(m), buf, len, NULL, 0, NULL, 0, NULL);
}

static void test_without_migration_ops(void **state) {
        Pair *p = pair_new(false, true);
        uint8_t out[64] = { 0 };
        uint32_t feats[] = { VU_FEATURE_MIGRATION, VU_FEATURE_MIG_DEVICE_STATE, VU_FEATURE_DMA_LOGGING_START };

        for (size_t i = 0; i < G_N_ELEMENTS(feats); i++) {
                assert_int_equal(feature(p, 64, VU_FEATURE_GET | feats[i], NULL, 0, out, sizeof(out), NULL), -ENOTSUP);
                assert_int_equal(feature(p, 64, VU_FEATURE_PROBE | VU_FEATURE_GET | feats[i], NULL, 0, out, sizeof(out),
                                         NULL),
                                 -ENOTSUP);
        }
        assert_int_equal(data_read(p, out, 16), -ENOTSUP);
        assert_int_equal(data_write(p, out, 16), -ENOTSUP);
        pair_free(p);
}

static void test_features(void **state) {
        Pair *p = pair_new(true, true);
        uint8_t out[64];
        uint64_t flags;
        size_t rlen;

        assert_int_equal(feature(p, 16, VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, out, sizeof(out), &rlen), 0);
        assert_int_equal(rlen, 16);
        memcpy(&flags, out + 8, 8);
        assert_int_equal(flags, VU_MIGRATION_STOP_COPY | VU_MIGRATION_PRE_COPY);
        /* argsz too small for the data. */
        assert_int_equal(feature(p, 8, VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, out, sizeof(out), NULL), -EINVAL);
        assert_int_equal(feature(p, 4, VU_FEATURE_PROBE | VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, out,
                                 sizeof(out), NULL),
                         -EINVAL);
        /* Probes: supported operations answer with the request, others fail. */
        assert_int_equal(feature(p, 8, VU_FEATURE_PROBE | VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, out,
                                 sizeof(out), &rlen),
                         0);
        assert_int_equal(rlen, 8);
        assert_int_equal(feature(p, 8, VU_FEATURE_PROBE | VU_FEATURE_SET | VU_FEATURE_MIGRATION, NULL, 0, out,
                                 sizeof(out), NULL),
                         -EINVAL);
        assert_int_equal(feature(p, 8, VU_FEATURE_PROBE | VU_FEATURE_GET | VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE,
                                 NULL, 0, out, sizeof(out), NULL),
                         0);
        assert_int_equal(feature(p, 8, VU_FEATURE_PROBE | VU_FEATURE_DMA_LOGGING_START, NULL, 0, out, sizeof(out),
                                 NULL),
                         0);
        /* GET and SET together without PROBE, neither, unknown bits, unknown feature. */
        assert_int_equal(feature(p, 16, VU_FEATURE_GET | VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, NULL, 0, out,
                                 sizeof(out), NULL),
                         -EINVAL);
        assert_int_equal(feature(p, 16, VU_FEATURE_MIG_DEVICE_STATE, NULL, 0, out, sizeof(out), NULL), -EINVAL);
        assert_int_equal(feature(p, 16, (1u << 20) | VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, out, sizeof(out),
                                 NULL),
                         -EINVAL);
        assert_int_equal(feature(p, 16, VU_FEATURE_GET | 3, NULL, 0, out, sizeof(out), NULL), -ENOTSUP);
        assert_int_equal(feature(p, 16, VU_FEATURE_GET | 0xffff, NULL, 0, out, sizeof(out), NULL), -ENOTSUP);
        pair_free(p);
}

static void test_state_machine(void **state) {
        Pair *p = pair_new(true, true);
        TestDevice *td = p->td;

        assert_int_equal(get_state(p), VU_MIG_RUNNING);
        /* Multi-step transitions run one device callback per arc, quiesced. */
        assert_int_equal(set_state(p, VU_MIG_STOP_COPY), 0);
        assert_string_equal(td->arcs, "running>stop,stop>stop-copy,");
        assert_int_equal(get_state(p), VU_MIG_STOP_COPY);
        /* Forbidden arc. */
        assert_int_equal(set_state(p, VU_MIG_PRE_COPY), -EINVAL);
        assert_int_equal(get_state(p), VU_MIG_STOP_COPY);
        td->arcs[0] = 0;
        assert_int_equal(set_state(p, VU_MIG_RUNNING), 0);
        assert_string_equal(td->arcs, "stop-copy>stop,stop>running,");
        td->arcs[0] = 0;
        assert_int_equal(set_state(p, VU_MIG_PRE_COPY), 0);
        assert_int_equal(set_state(p, VU_MIG_RESUMING), 0);
        assert_string_equal(td->arcs, "running>pre-copy,pre-copy>running,running>stop,stop>resuming,");
        assert_int_equal(set_state(p, VU_MIG_RESUMING), 0);     /* no-op */
        /* States we do not support, and bad payloads. */
        assert_int_equal(set_state(p, VU_MIG_ERROR), -EINVAL);
        assert_int_equal(set_state(p, VU_MIG_RUNNING_P2P), -EINVAL);
        assert_int_equal(set_state(p, VU_MIG_PRE_COPY_P2P), -EINVAL);
        assert_int_equal(set_state(p, 99), -EINVAL);
        {
                struct vu_feature_mig_state s = { VU_MIG_STOP, 0 };

                assert_int_equal(feature(p, 12, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &s, sizeof(s), NULL, 0,
                                         NULL),
                                 -EINVAL);
                assert_int_equal(feature(p, 16, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &s, 4, NULL, 0, NULL),
                                 -EINVAL);
        }
        assert_int_equal(get_state(p), VU_MIG_RESUMING);

        /* A failing arc leaves the device in ERROR; only a reset brings it back. */
        td->fail_transition = -EIO;
        assert_int_equal(set_state(p, VU_MIG_RUNNING), -EIO);
        assert_int_equal(get_state(p), VU_MIG_ERROR);
        assert_int_equal(set_state(p, VU_MIG_RUNNING), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL), 0);
        assert_int_equal(get_state(p), VU_MIG_RUNNING);
        {
                VuMigInfo info;

                vu_server_mig_info(td->server, &info);
                assert_true(info.failed);       /* latched across the reset, for the manager */
                assert_false(info.resumed);
        }
        assert_int_equal(td->quiesced, 0);
        pair_free(p);
}

static void test_stopped_gating(void **state) {
        Pair *p = pair_new(true, true);
        struct vu_device_info di = { .argsz = 16 };
        struct vu_dma_map m = { 32, VU_DMA_READ, 0, 0x100000, 0x1000 };
        struct vu_region_access a = { 0, 0, 4 };
        uint32_t v = 7;

        assert_int_equal(set_state(p, VU_MIG_STOP), 0);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EBUSY);
        assert_int_equal(pair_xfer(p, VU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0, NULL, 0, NULL, 0, NULL), -EBUSY);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0, NULL, 0, NULL, 0, NULL), -EBUSY);
        /* Accesses and migration still work. */
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE, 0, &a, sizeof(a), &v, 4, NULL, 0, NULL, 0, NULL), 0);
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_READ, 0, &a, sizeof(a), NULL, 0, NULL, 0, NULL, 0, NULL), 0);
        assert_int_equal(set_state(p, VU_MIG_STOP_COPY), 0);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EBUSY);
        assert_int_equal(set_state(p, VU_MIG_RUNNING), 0);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), NULL, 0, NULL, 0, NULL, 0, NULL), 0);
        /* The client going away returns the device to RUNNING. */
        assert_int_equal(set_state(p, VU_MIG_STOP), 0);
        vu_server_disconnect(p->td->server);
        assert_int_equal(p->td->reset_calls[VU_RESET_LOST_CONN], 1);
        pair_free(p);
}

/* Save from one device, restore into another, through the stream. */
static void test_data_stream(void **state) {
        Pair *src = pair_new(true, true), *dst = pair_new(true, true);
        uint8_t stream[1024], buf[100];
        VuMigInfo info;
        size_t total = 0;
        int n;

        for (int i = 0; i < TD_MIG_BLOB; i++)
                src->td->regs[i] = (uint8_t) (i * 3 + 1);
        /* Not in a saving state; and no DEVICE_FEATURE yet: the client has not shown it migrates. */
        assert_int_equal(data_read(src, buf, sizeof(buf)), -EINVAL);
        vu_server_mig_info(src->td->server, &info);
        assert_false(info.client_uses);
        assert_int_equal(info.state, VU_MIG_RUNNING);
        assert_int_equal(set_state(src, VU_MIG_PRE_COPY), 0);
        vu_server_mig_info(src->td->server, &info);
        assert_true(info.client_uses);
        assert_false(info.saved);
        n = data_read(src, stream, 100);
        assert_int_equal(n, 100);
        total = (size_t) n;
        assert_int_equal(set_state(src, VU_MIG_STOP_COPY), 0);
        while ((n = data_read(src, stream + total, 64)) > 0)
                total += (size_t) n;
        assert_int_equal(n, 0);         /* end of stream */
        assert_int_equal(total, TD_MIG_BLOB);
        vu_server_mig_info(src->td->server, &info);
        assert_true(info.saved);
        assert_int_equal(info.state, VU_MIG_STOP_COPY);
        assert_int_equal(info.bytes_read, TD_MIG_BLOB);
        /* Size limits. */
        {
                struct vu_mig_data m = { 8 + 16, 32 };

                assert_int_equal(pair_xfer(src, VU_CMD_MIG_DATA_READ, 0, &m, sizeof(m), NULL, 0, NULL, 0, NULL, 0,
                                           NULL),
                                 -EINVAL);      /* argsz smaller than the data asked */
                m.argsz = UINT32_MAX;
                m.size = VU_MAX_DATA_XFER + 1;
                assert_int_equal(pair_xfer(src, VU_CMD_MIG_DATA_READ, 0, &m, sizeof(m), NULL, 0, NULL, 0, NULL, 0,
                                           NULL),
                                 -EINVAL);
        }
        assert_int_equal(data_write(src, stream, 16), -EBUSY);   /* stopped: only reads run */

        assert_int_equal(set_state(dst, VU_MIG_RESUMING), 0);
        assert_int_equal(data_write(dst, stream, 200), 0);
        assert_int_equal(data_write(dst, stream + 200, TD_MIG_BLOB - 200), 0);
        assert_int_equal(data_write(dst, stream, 1), -EFBIG);           /* the device refuses extra bytes */
        vu_server_mig_info(dst->td->server, &info);
        assert_true(info.failed);       /* and the manager hears of it */
        {
                struct vu_mig_data m = { 8 + 4, 8 };

                assert_int_equal(pair_xfer(dst, VU_CMD_MIG_DATA_WRITE, 0, &m, sizeof(m), stream, 4, NULL, 0, NULL, 0,
                                           NULL),
                                 -EINVAL);      /* size does not match the data */
        }
        vu_server_mig_info(dst->td->server, &info);
        assert_false(info.resumed);
        assert_int_equal(info.bytes_written, TD_MIG_BLOB);
        assert_int_equal(set_state(dst, VU_MIG_RUNNING), 0);
        assert_memory_equal(dst->td->regs, src->td->regs, TD_MIG_BLOB);
        vu_server_mig_info(dst->td->server, &info);
        assert_true(info.resumed);
        assert_false(info.saved);
        /* What the client did stays visible after it left (the next client clears it). */
        vu_server_disconnect(dst->td->server);
        vu_server_mig_info(dst->td->server, &info);
        assert_true(info.resumed && info.client_uses);
        assert_int_equal(info.state, VU_MIG_RUNNING);
        assert_int_equal(info.bytes_written, TD_MIG_BLOB);
        pair_free(src);
        pair_free(dst);
}

static void test_dma_logging(void **state) {
        Pair *p = pair_new(true, true);
        int fd = memfd_create("guest", MFD_CLOEXEC);
        struct vu_dma_map m = { 32, VU_DMA_READ | VU_DMA_WRITE, 0, 0x100000, 0x10000 };
        struct {
                struct vu_feature_dma_logging_control c;
                struct vu_dma_logging_range r;
        } __attribute__((packed)) start = { { 3000, 1, 0 }, { 0x100000, 0x10000 } };
        struct vu_feature_dma_logging_report rep = { 0x100000, 0x10000, 0x1000 };
        uint8_t out[128], b = 1;
        size_t rlen;

        assert_int_equal(ftruncate(fd, 0x10000), 0);
        assert_int_equal(pair_xfer(p, VU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0, &fd, 1, NULL, 0, NULL), 0);
        /* Report before start fails. */
        assert_int_equal(feature(p, 64, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep, sizeof(rep), out,
                                 sizeof(out), NULL),
                         -EINVAL);
        /* Start: a page size hint of 3000 becomes 4096. */
        assert_int_equal(feature(p, 8 + sizeof(start), VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &start,
                                 sizeof(start), out, sizeof(out), &rlen),
                         0);
        assert_int_equal(rlen, 8 + sizeof(start));
        {
                uint64_t pg;

                memcpy(&pg, out + 8, 8);
                assert_int_equal(pg, 4096);
        }
        assert_int_equal(feature(p, 8 + sizeof(start), VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &start,
                                 sizeof(start), NULL, 0, NULL),
                         -EBUSY);
        /* The device writes two pages. */
        assert_int_equal(vu_mem_write(vu_server_mem(p->td->server), 0x100000 + 0x3000, &b, 1), 0);
        assert_int_equal(vu_mem_write(vu_server_mem(p->td->server), 0x10f000, &b, 1), 0);
        assert_int_equal(feature(p, 8 + 24 + 8, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep, sizeof(rep), out,
                                 sizeof(out), &rlen),
                         0);
        assert_int_equal(rlen, 8 + 24 + 8);     /* 16 pages: one u64 of bitmap */
        assert_int_equal(out[32], 0x08);
        assert_int_equal(out[33], 0x80);
        /* argsz too small for the bitmap, bad page size, bad ranges. */
        assert_int_equal(feature(p, 8 + 24, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep, sizeof(rep), out,
                                 sizeof(out), NULL),
                         -EINVAL);
        rep.page_size = 3000;
        assert_int_equal(feature(p, 64, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep, sizeof(rep), out,
                                 sizeof(out), NULL),
                         -EINVAL);
        rep.page_size = 1;
        rep.length = UINT64_MAX;
        assert_int_equal(feature(p, UINT32_MAX, VU_FEATURE_GET | VU_FEATURE_DMA_LOGGING_REPORT, &rep, sizeof(rep), out,
                                 sizeof(out), NULL),
                         -E2BIG);
        assert_int_equal(feature(p, 16, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_STOP, NULL, 0, out, sizeof(out), NULL),
                         0);
        assert_false(vu_dma_logging_active(vu_server_dma(p->td->server)));
        /* Bad start requests. */
        start.c.num_ranges = 2;
        assert_int_equal(feature(p, 64, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &start, sizeof(start), NULL, 0,
                                 NULL),
                         -EINVAL);
        start.c.num_ranges = 1;
        start.c.page_size = 0;
        assert_int_equal(feature(p, 64, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &start, sizeof(start), NULL, 0,
                                 NULL),
                         -EINVAL);
        start.c.page_size = 4096;
        start.r.length = 0;
        assert_int_equal(feature(p, 64, VU_FEATURE_SET | VU_FEATURE_DMA_LOGGING_START, &start, sizeof(start), NULL, 0,
                                 NULL),
                         -EINVAL);
        close(fd);
        pair_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_without_migration_ops),
                cmocka_unit_test(test_features),
                cmocka_unit_test(test_state_machine),
                cmocka_unit_test(test_stopped_gating),
                cmocka_unit_test(test_data_stream),
                cmocka_unit_test(test_dma_logging),
        };

        return cmocka_run_group_tests_name("migration", tests, NULL, NULL);
}
