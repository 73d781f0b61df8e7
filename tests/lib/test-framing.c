/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Framing and dispatch: headers, sizes, flags, fds, unknown commands,
 * posted requests, and when the connection is given up.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static void test_unknown_commands(void **state) {
        Pair *p = pair_new(false, true);
        uint16_t cmds[] = { 0, VU_CMD_DMA_READ, VU_CMD_DMA_WRITE, VU_CMD_DIRTY_PAGES, 19, 0xffff };
        uint64_t junk = 0;

        for (size_t i = 0; i < G_N_ELEMENTS(cmds); i++)
                assert_int_equal(pair_xfer(p, cmds[i], 0, &junk, sizeof(junk), NULL, 0, NULL, 0, NULL, 0, NULL),
                                 -ENOSYS);
        /* The connection is fine afterwards. */
        assert_true(vu_server_connected(p->td->server));
        pair_free(p);
}

static void test_bad_flags(void **state) {
        Pair *p = pair_new(false, true);
        struct vu_device_info di = { .argsz = sizeof(di) };
        VuServerStats st;

        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0x40, &di, sizeof(di), NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, VU_F_ERROR, &di, sizeof(di), NULL, 0, NULL, 0, NULL, 0,
                                   NULL),
                         -EINVAL);
        /* Bad flags with NO_REPLY: still no reply. */
        vu_server_get_stats(p->td->server, &st);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0x40 | VU_F_NO_REPLY, &di, sizeof(di), NULL, 0, NULL, 0,
                                   NULL, 0, NULL),
                         -ETIMEDOUT);
        {
                VuServerStats st2;

                vu_server_get_stats(p->td->server, &st2);
                assert_int_equal(st2.errors, st.errors + 1);
                assert_int_equal(st2.messages, st.messages + 1);
        }
        pair_free(p);
}

static void test_size_mismatch(void **state) {
        Pair *p = pair_new(false, true);
        uint8_t big[64] = { 0 };
        struct vu_device_info *di = (void *) big;

        di->argsz = sizeof(*di);
        /* Each command's payload has a fixed size or bounds. */
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, big, 8, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, big, 17, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DMA_MAP, 0, big, 31, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DMA_UNMAP, 0, big, 32, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_REGION_INFO, 0, big, 16, NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_IRQ_INFO, 0, big, 12, NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_SET_IRQS, 0, big, 19, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_READ, 0, big, 24, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE, 0, big, 16, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_RESET, 0, big, 4, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE_MULTI, 0, big, 8, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_MIG_DATA_READ, 0, big, 4, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_FEATURE, 0, big, 4, NULL, 0, NULL, 0, NULL, 0, NULL), -EINVAL);
        assert_true(vu_server_connected(p->td->server));
        pair_free(p);
}

static void test_unexpected_fds(void **state) {
        Pair *p = pair_new(false, true);
        struct vu_device_info di = { .argsz = sizeof(di) };
        int fds[VU_MAX_MSG_FDS + 4];
        int before;

        for (unsigned i = 0; i < G_N_ELEMENTS(fds); i++)
                fds[i] = eventfd(0, EFD_CLOEXEC);
        before = count_open_fds();
        /* A command that takes none. */
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), NULL, 0, fds, 1, NULL, 0, NULL),
                         -EINVAL);
        /* DMA_MAP takes at most one. */
        {
                struct vu_dma_map m = { sizeof(m), VU_DMA_READ, 0, 0x100000, 0x1000 };

                assert_int_equal(pair_xfer(p, VU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0, fds, 2, NULL, 0, NULL),
                                 -EINVAL);
        }
        /* More than we accept in one message, and more than our control buffer. */
        {
                struct vu_irq_set is = { sizeof(is), VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER,
                                         VU_PCI_MSIX_IRQ, 0, VU_MAX_MSG_FDS + 1 };

                assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_SET_IRQS, 0, &is, sizeof(is), NULL, 0, fds,
                                           VU_MAX_MSG_FDS + 1, NULL, 0, NULL),
                                 -EINVAL);
        }
        /* Posted with fds: no reply, fds closed all the same. */
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_INFO, VU_F_NO_REPLY, &di, sizeof(di), NULL, 0, fds, 3, NULL, 0,
                                   NULL),
                         -ETIMEDOUT);
        assert_int_equal(count_open_fds(), before);
        for (unsigned i = 0; i < G_N_ELEMENTS(fds); i++)
                close(fds[i]);
        pair_free(p);
}

static void expect_closed(const void *msg, size_t len) {
        Pair *p = pair_new(false, true);
        unsigned detaches = p->td->detaches;

        assert_int_equal(pair_raw(p, msg, len, NULL, 0, NULL, 0, NULL), -ECONNRESET);
        assert_int_equal(p->td->detaches, detaches + 1);
        assert_int_equal(p->td->reset_calls[VU_RESET_LOST_CONN], 1);
        pair_free(p);
}

static void test_untrustworthy_headers(void **state) {
        struct vu_hdr h = { .msg_id = 1, .cmd = VU_CMD_DEVICE_GET_INFO };

        h.size = 15;    /* shorter than a header */
        expect_closed(&h, sizeof(h));
        h.size = 0;
        expect_closed(&h, sizeof(h));
        h.size = VU_MAX_MSG_SIZE + 1;
        expect_closed(&h, sizeof(h));
        h.size = UINT32_MAX;
        expect_closed(&h, sizeof(h));
        h.size = sizeof(h);
        h.flags = VU_F_TYPE_REPLY;      /* we never asked anything */
        expect_closed(&h, sizeof(h));
        h.flags = 0x5;
        expect_closed(&h, sizeof(h));
}

static void test_partial_and_eof(void **state) {
        Pair *p = pair_new(false, true);
        struct {
                struct vu_hdr h;
                struct vu_device_info di;
        } __attribute__((packed)) m = { { .msg_id = 7, .cmd = VU_CMD_DEVICE_GET_INFO, .size = sizeof(m) },
                                        { .argsz = 16 } };
        uint8_t reply[64];
        struct vu_hdr h;

        /* Byte by byte: nothing happens until the message is complete. */
        for (size_t i = 0; i < sizeof(m); i++) {
                assert_int_equal(vu_client_send_raw(p->c, (uint8_t *) &m + i, 1, NULL, 0), 0);
                assert_int_equal(vu_server_dispatch(p->td->server), 0);
                if (i + 1 < sizeof(m))
                        assert_int_equal(vu_client_recv_raw(p->c, reply, sizeof(reply), &h), -ETIMEDOUT);
        }
        assert_int_equal(vu_client_recv_raw(p->c, reply, sizeof(reply), &h), (int) sizeof(m));
        assert_int_equal(h.msg_id, 7);

        /* Two messages in one write: both answered, in order. */
        {
                uint8_t two[2 * sizeof(m)];

                memcpy(two, &m, sizeof(m));
                m.h.msg_id = 8;
                memcpy(two + sizeof(m), &m, sizeof(m));
                assert_int_equal(vu_client_send_raw(p->c, two, sizeof(two), NULL, 0), 0);
                assert_int_equal(vu_server_dispatch(p->td->server), 0);
                assert_int_equal(vu_client_recv_raw(p->c, reply, sizeof(reply), &h), (int) sizeof(m));
                assert_int_equal(h.msg_id, 7);
                assert_int_equal(vu_client_recv_raw(p->c, reply, sizeof(reply), &h), (int) sizeof(m));
                assert_int_equal(h.msg_id, 8);
        }

        /* Half a message, then the client goes away. */
        assert_int_equal(vu_client_send_raw(p->c, &m, 10, NULL, 0), 0);
        assert_int_equal(vu_server_dispatch(p->td->server), 0);
        shutdown(vu_client_fd(p->c), SHUT_WR);
        assert_int_equal(vu_server_dispatch(p->td->server), -ENOTCONN);
        assert_false(vu_server_connected(p->td->server));
        assert_int_equal(p->td->reset_calls[VU_RESET_LOST_CONN], 1);
        pair_free(p);
}

/* A client flooding requests is served in bounded batches. */
static void test_dispatch_budget(void **state) {
        Pair *p = pair_new(false, true);
        struct {
                struct vu_hdr h;
                struct vu_device_info di;
        } __attribute__((packed)) m[100];
        uint8_t reply[64];
        struct vu_hdr h;
        int got = 0;

        for (int i = 0; i < 100; i++)
                m[i] = (typeof(m[0])) { { .msg_id = (uint16_t) i, .cmd = VU_CMD_DEVICE_GET_INFO, .size = sizeof(m[0]) },
                                        { .argsz = 16 } };
        assert_int_equal(vu_client_send_raw(p->c, m, sizeof(m), NULL, 0), 0);
        assert_int_equal(vu_server_dispatch(p->td->server), 0);
        while (vu_client_recv_raw(p->c, reply, sizeof(reply), &h) > 0)
                assert_int_equal(h.msg_id, got++);
        assert_true(got > 0 && got < 100);
        assert_int_equal(vu_server_dispatch(p->td->server), 0);
        while (vu_client_recv_raw(p->c, reply, sizeof(reply), &h) > 0)
                assert_int_equal(h.msg_id, got++);
        assert_int_equal(got, 100);
        pair_free(p);
}

static void test_reset_kind_names(void **state) {
        assert_string_equal(vu_reset_kind_to_string(VU_RESET_DEVICE), "device");
        assert_string_equal(vu_reset_kind_to_string(VU_RESET_FLR), "flr");
        assert_string_equal(vu_reset_kind_to_string(VU_RESET_LOST_CONN), "lost-connection");
        assert_null(vu_reset_kind_to_string(_VU_RESET_KIND_MAX));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unknown_commands),
                cmocka_unit_test(test_bad_flags),
                cmocka_unit_test(test_size_mismatch),
                cmocka_unit_test(test_unexpected_fds),
                cmocka_unit_test(test_untrustworthy_headers),
                cmocka_unit_test(test_partial_and_eof),
                cmocka_unit_test(test_dispatch_budget),
                cmocka_unit_test(test_reset_kind_names),
        };

        return cmocka_run_group_tests_name("framing", tests, NULL, NULL);
}
