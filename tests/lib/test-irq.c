/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * GET_IRQ_INFO and SET_IRQS, and MSI-X delivery: eventfds, masking, the
 * PBA, re-firing pending vectors, ERR/REQ, and interrupt fds that are not
 * eventfds refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define TRIG_EFD (VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER)
#define TRIG_NONE (VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_TRIGGER)

static int set_irqs(Pair *p, uint32_t index, uint32_t flags, uint32_t start, uint32_t count, const int *fds,
                    unsigned n_fds, const uint8_t *bools, size_t blen) {
        struct vu_irq_set is = { (uint32_t) (sizeof(is) + blen), flags, index, start, count };

        return pair_xfer(p, VU_CMD_DEVICE_SET_IRQS, 0, &is, sizeof(is), bools, blen, fds, n_fds, NULL, 0, NULL);
}

/* Has eventfd fd fired (consuming it)? */
static bool fired(int fd) {
        uint64_t v;

        return read(fd, &v, sizeof(v)) == sizeof(v);
}

static uint8_t pba(Pair *p) {
        struct vu_region_access a = { TD_PBA_OFF, TD_MSIX_BAR, 8 };
        uint8_t out[sizeof(a) + 8];

        assert_int_equal(pair_xfer(p, VU_CMD_REGION_READ, 0, &a, sizeof(a), NULL, 0, NULL, 0, out, sizeof(out), NULL),
                         0);
        return out[sizeof(a)];
}

static int msix_cap(Pair *p) {
        for (unsigned off = pair_cfg_read(p, 0x34, 1); off; off = pair_cfg_read(p, off + 1, 1))
                if (pair_cfg_read(p, off, 1) == 0x11)
                        return (int) off;
        fail();
        return -1;
}

static void msix_ctrl(Pair *p, bool enable, bool mask) {
        int cap = msix_cap(p);

        pair_cfg_write(p, (uint32_t) cap + 3, (enable ? 0x80 : 0) | (mask ? 0x40 : 0), 1);
}

static int msi_cap(Pair *p) {
        for (unsigned off = pair_cfg_read(p, 0x34, 1); off; off = pair_cfg_read(p, off + 1, 1))
                if (pair_cfg_read(p, off, 1) == 0x05)
                        return (int) off;
        fail();
        return -1;
}

static void test_irq_info(void **state) {
        Pair *p = pair_new(false, true);
        static const uint32_t count[5] = { 0, 0, TD_NVEC, 1, 1 };
        struct vu_irq_info in = { .argsz = 16 }, out;

        for (uint32_t i = 0; i < 5; i++) {
                in.index = i;
                assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_IRQ_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, &out,
                                           sizeof(out), NULL),
                                 0);
                assert_int_equal(out.index, i);
                assert_int_equal(out.count, count[i]);
                assert_true(out.flags & VU_IRQ_INFO_EVENTFD);
        }
        in.index = VU_PCI_MSIX_IRQ;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_IRQ_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, &out,
                                   sizeof(out), NULL),
                         0);
        assert_false(out.flags & VU_IRQ_INFO_NORESIZE);
        in.index = 5;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_IRQ_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        in.index = 0;
        in.argsz = 15;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_IRQ_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, NULL, 0, NULL),
                         -EINVAL);
        /* Interrupt pin 0: no INTx. */
        assert_int_equal(pair_cfg_read(p, 0x3d, 1), 0);
        pair_free(p);
}

static void test_msix_delivery(void **state) {
        Pair *p = pair_new(false, true);
        VuServer *s = p->td->server;
        int efd[TD_NVEC], before = count_open_fds();

        for (int i = 0; i < TD_NVEC; i++)
                efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, TD_NVEC, efd, TD_NVEC, NULL, 0), 0);

        /* MSI-X still disabled in config space: pending, not delivered. */
        assert_int_equal(vu_server_irq(s, 1), 0);
        assert_false(fired(efd[1]));
        assert_int_equal(pba(p), 0x02);
        /* Enabling delivers what was pending. */
        msix_ctrl(p, true, false);
        assert_true(fired(efd[1]));
        assert_int_equal(pba(p), 0);
        assert_int_equal(vu_server_irq(s, 7), 0);
        assert_true(fired(efd[7]));
        assert_int_equal(vu_server_irq(s, TD_NVEC), -EINVAL);

        /* Function mask. */
        msix_ctrl(p, true, true);
        assert_int_equal(vu_server_irq(s, 2), 0);
        assert_false(fired(efd[2]));
        assert_int_equal(pba(p), 0x04);
        msix_ctrl(p, true, false);
        assert_true(fired(efd[2]));

        /* Vector mask in the table (a client that writes the table itself). */
        {
                uint32_t ctrl = 1;
                struct vu_region_access a = { 3 * 16 + 12, TD_MSIX_BAR, 4 };

                assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE, 0, &a, sizeof(a), &ctrl, 4, NULL, 0, NULL, 0, NULL),
                                 0);
                assert_int_equal(vu_server_irq(s, 3), 0);
                assert_false(fired(efd[3]));
                assert_int_equal(pba(p), 0x08);
                ctrl = 0;
                assert_int_equal(pair_xfer(p, VU_CMD_REGION_WRITE, 0, &a, sizeof(a), &ctrl, 4, NULL, 0, NULL, 0, NULL),
                                 0);
                assert_true(fired(efd[3]));
                assert_int_equal(pba(p), 0);
        }

        /* SET_IRQS mask/unmask, NONE and BOOL. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_MASK, 4, 2, NULL, 0,
                                  NULL, 0),
                         0);
        vu_server_irq(s, 4);
        vu_server_irq(s, 5);
        assert_false(fired(efd[4]) || fired(efd[5]));
        {
                uint8_t b[2] = { 0, 1 };

                assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_BOOL | VU_IRQ_SET_ACTION_UNMASK, 4, 2,
                                          NULL, 0, b, 2),
                                 0);
        }
        assert_false(fired(efd[4]));
        assert_true(fired(efd[5]));
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_UNMASK, 4, 1, NULL, 0,
                                  NULL, 0),
                         0);
        assert_true(fired(efd[4]));
        /* Client-side trigger. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, 6, 1, NULL, 0, NULL, 0), 0);
        assert_true(fired(efd[6]));
        {
                uint8_t b[3] = { 1, 0, 1 };

                assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_BOOL | VU_IRQ_SET_ACTION_TRIGGER, 0, 3,
                                          NULL, 0, b, 3),
                                 0);
        }
        assert_true(fired(efd[0]));
        assert_false(fired(efd[1]));
        assert_true(fired(efd[2]));

        /* De-assign a run with no fds (QEMU's "-1" runs): pending instead of delivered. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 5, 2, NULL, 0, NULL, 0), 0);
        vu_server_irq(s, 5);
        assert_false(fired(efd[5]));
        assert_int_equal(pba(p), 0x20);
        /* Re-assigning delivers it. */
        {
                int nfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

                assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 5, 1, &nfd, 1, NULL, 0), 0);
                assert_true(fired(nfd));
                assert_int_equal(pba(p), 0);
                close(nfd);
        }

        /* Disable all: every eventfd released. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, 0, 0, NULL, 0, NULL, 0), 0);
        vu_server_irq(s, 0);
        assert_false(fired(efd[0]));
        for (int i = 0; i < TD_NVEC; i++)
                close(efd[i]);
        assert_int_equal(count_open_fds(), before);
        pair_free(p);
}

/*
 * De-assigning one vector n > 0 must drop exactly that vector's eventfd
 * (the start..count loop bug of another implementation would keep it).
 */
static void test_deassign_single_high_vector(void **state) {
        Pair *p = pair_new(false, true);
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), other = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

        msix_ctrl(p, true, false);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 6, 1, &efd, 1, NULL, 0), 0);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 2, 1, &other, 1, NULL, 0), 0);
        vu_server_irq(p->td->server, 6);
        assert_true(fired(efd));
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 6, 1, NULL, 0, NULL, 0), 0);
        vu_server_irq(p->td->server, 6);
        assert_false(fired(efd));
        /* Vector 2 kept its eventfd. */
        vu_server_irq(p->td->server, 2);
        assert_true(fired(other));
        close(efd);
        close(other);
        pair_free(p);
}

static void test_err_req(void **state) {
        Pair *p = pair_new(false, true);
        int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), req = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

        vu_server_irq_err(p->td->server);       /* no eventfd: nothing, no crash */
        assert_int_equal(set_irqs(p, VU_PCI_ERR_IRQ, TRIG_EFD, 0, 1, &efd, 1, NULL, 0), 0);
        assert_int_equal(set_irqs(p, VU_PCI_REQ_IRQ, TRIG_EFD, 0, 1, &req, 1, NULL, 0), 0);
        vu_server_irq_err(p->td->server);
        assert_true(fired(efd));
        assert_false(fired(req));
        assert_int_equal(set_irqs(p, VU_PCI_REQ_IRQ, TRIG_NONE, 0, 1, NULL, 0, NULL, 0), 0);
        assert_true(fired(req));
        vu_server_irq_req(p->td->server);
        assert_true(fired(req));
        assert_false(fired(efd));
        /* ERR/REQ take only TRIGGER, one vector. */
        assert_int_equal(set_irqs(p, VU_PCI_ERR_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_MASK, 0, 1, NULL, 0, NULL,
                                  0),
                         -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_ERR_IRQ, TRIG_NONE, 0, 2, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_ERR_IRQ, TRIG_NONE, 1, 1, NULL, 0, NULL, 0), -EINVAL);
        /* Disable. */
        assert_int_equal(set_irqs(p, VU_PCI_ERR_IRQ, TRIG_NONE, 0, 0, NULL, 0, NULL, 0), 0);
        vu_server_irq_err(p->td->server);
        assert_false(fired(efd));
        close(efd);
        close(req);
        pair_free(p);
}

/*
 * A device with MSI instead of MSI-X: the vectors on the MSI index, with
 * the capability's enable, Multiple Message Enable (vectors beyond it
 * alias), Mask and Pending Bits, and SET_IRQS masks.
 */
static void test_msi_delivery(void **state) {
        Pair *p = pair_new_irq(false, true, 4);
        VuServer *s = p->td->server;
        struct vu_irq_info in = { .argsz = 16 }, out;
        int efd[4], cap = msi_cap(p), before;

        in.index = VU_PCI_MSI_IRQ;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_IRQ_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, &out,
                                   sizeof(out), NULL),
                         0);
        assert_int_equal(out.count, 4);
        assert_true(out.flags & VU_IRQ_INFO_EVENTFD);
        in.index = VU_PCI_MSIX_IRQ;
        assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_GET_IRQ_INFO, 0, &in, sizeof(in), NULL, 0, NULL, 0, &out,
                                   sizeof(out), NULL),
                         0);
        assert_int_equal(out.count, 0);
        for (unsigned off = pair_cfg_read(p, 0x34, 1); off; off = pair_cfg_read(p, off + 1, 1))
                assert_int_not_equal(pair_cfg_read(p, off, 1), 0x11);  /* no MSI-X capability */

        for (int i = 0; i < 4; i++)
                efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        before = count_open_fds();
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, 1, efd, 1, NULL, 0), -EINVAL);
        assert_int_equal(count_open_fds(), before);
        assert_int_equal(set_irqs(p, VU_PCI_MSI_IRQ, TRIG_EFD, 0, 5, efd, 4, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSI_IRQ, TRIG_EFD, 0, 4, efd, 4, NULL, 0), 0);

        /* MSI off: pending, shown in Pending Bits; enabling with 4 messages delivers it. */
        assert_int_equal(vu_server_irq(s, 1), 0);
        assert_false(fired(efd[1]));
        assert_int_equal(pair_cfg_read(p, (uint32_t) cap + 0x14, 4), 0x2);
        pair_cfg_write(p, (uint32_t) cap + 2, 0x21, 1);
        assert_true(fired(efd[1]));
        assert_int_equal(pair_cfg_read(p, (uint32_t) cap + 0x14, 4), 0);
        assert_int_equal(vu_server_irq(s, 3), 0);
        assert_true(fired(efd[3]));
        assert_int_equal(vu_server_irq(s, 4), -EINVAL);

        /* Per-vector mask in the capability. */
        pair_cfg_write(p, (uint32_t) cap + 0x10, 0x4, 4);
        assert_int_equal(vu_server_irq(s, 2), 0);
        assert_false(fired(efd[2]));
        assert_int_equal(pair_cfg_read(p, (uint32_t) cap + 0x14, 4), 0x4);
        pair_cfg_write(p, (uint32_t) cap + 0x10, 0, 4);
        assert_true(fired(efd[2]));

        /* SET_IRQS mask / unmask. */
        assert_int_equal(set_irqs(p, VU_PCI_MSI_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_MASK, 0, 1, NULL, 0,
                                  NULL, 0),
                         0);
        assert_int_equal(vu_server_irq(s, 0), 0);
        assert_false(fired(efd[0]));
        assert_int_equal(set_irqs(p, VU_PCI_MSI_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_UNMASK, 0, 1, NULL, 0,
                                  NULL, 0),
                         0);
        assert_true(fired(efd[0]));

        /* One message granted: every vector arrives as vector 0 (§7.7.1.2). */
        pair_cfg_write(p, (uint32_t) cap + 2, 0x01, 1);
        assert_int_equal(vu_server_irq(s, 3), 0);
        assert_true(fired(efd[0]));
        assert_false(fired(efd[3]));

        /* Disable the index: eventfds released, vectors pend again. */
        assert_int_equal(set_irqs(p, VU_PCI_MSI_IRQ, TRIG_NONE, 0, 0, NULL, 0, NULL, 0), 0);
        assert_int_equal(vu_server_irq(s, 0), 0);
        assert_false(fired(efd[0]));
        assert_int_equal(pair_cfg_read(p, (uint32_t) cap + 0x14, 4), 0x1);
        pair_free(p);
        for (int i = 0; i < 4; i++)
                close(efd[i]);
}

static void test_set_irqs_validation(void **state) {
        Pair *p = pair_new(false, true);
        int fds[4];
        int before;
        uint8_t b[8] = { 1 };

        for (int i = 0; i < 4; i++)
                fds[i] = eventfd(0, EFD_CLOEXEC);
        before = count_open_fds();

        /* Out of range. */
        assert_int_equal(set_irqs(p, 5, TRIG_NONE, 0, 0, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, 7, 2, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, TD_NVEC, 1, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, UINT32_MAX, 2, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, 1, UINT32_MAX, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_INTX_IRQ, TRIG_NONE, 0, 1, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSI_IRQ, TRIG_EFD, 0, 1, fds, 1, NULL, 0), -EINVAL);
        /* Disabling an index without vectors is fine (QEMU does it at reset). */
        assert_int_equal(set_irqs(p, VU_PCI_INTX_IRQ, TRIG_NONE, 0, 0, NULL, 0, NULL, 0), 0);
        assert_int_equal(set_irqs(p, VU_PCI_MSI_IRQ, TRIG_NONE, 0, 0, NULL, 0, NULL, 0), 0);
        /* Flags: one data type and one action, nothing else. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_ACTION_TRIGGER, 0, 1, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_NONE, 0, 1, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE | VU_IRQ_SET_DATA_BOOL, 0, 1, NULL, 0, b, 1), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE | VU_IRQ_SET_ACTION_MASK, 0, 1, NULL, 0, NULL, 0),
                         -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE | 0x40, 0, 1, NULL, 0, NULL, 0), -EINVAL);
        /* count 0 only as TRIGGER|NONE from 0. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, 0, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, 1, 0, NULL, 0, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_MASK, 0, 0, NULL, 0,
                                  NULL, 0),
                         -EINVAL);
        /* fds: only with EVENTFD, as many as vectors. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, 0, 1, fds, 1, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, 3, fds, 2, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, 1, fds, 2, NULL, 0), -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_UNMASK, 0, 1, fds, 1,
                                  NULL, 0),
                         -EINVAL);
        /* BOOL payload must be exactly count bytes; others carry none. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_BOOL | VU_IRQ_SET_ACTION_TRIGGER, 0, 3, NULL, 0,
                                  b, 2),
                         -EINVAL);
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_NONE, 0, 1, NULL, 0, b, 1), -EINVAL);
        /* argsz smaller than the header, or larger than the message. */
        {
                struct vu_irq_set is = { 8, TRIG_NONE, VU_PCI_MSIX_IRQ, 0, 1 };

                assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_SET_IRQS, 0, &is, sizeof(is), NULL, 0, NULL, 0, NULL, 0,
                                           NULL),
                                 -EINVAL);
                is.argsz = 64;
                assert_int_equal(pair_xfer(p, VU_CMD_DEVICE_SET_IRQS, 0, &is, sizeof(is), NULL, 0, NULL, 0, NULL, 0,
                                           NULL),
                                 -EINVAL);
        }
        assert_int_equal(count_open_fds(), before);     /* every refused fd was closed */
        for (int i = 0; i < 4; i++)
                close(fds[i]);
        pair_free(p);
}

/*
 * Interrupt fds must be eventfds.  A blocking pipe took 8192 interrupts
 * and then blocked the thread firing the next one forever; sockets and
 * files are no better.  Every refused fd is closed and nothing changes.
 */
static void test_irq_fds_must_be_eventfds(void **state) {
        Pair *p = pair_new(false, true);
        VuServer *s = p->td->server;
        int pipefd[2], sv[2], efd[2], before;

        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int memfd = memfd_create("not-an-eventfd", MFD_CLOEXEC);
        assert_true(memfd >= 0);
        for (int i = 0; i < 2; i++)
                efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        before = count_open_fds();

        const int bad[] = { pipefd[1], pipefd[0], sv[0], memfd };
        for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
                assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 1, 1, &bad[i], 1, NULL, 0), -EINVAL);
                assert_int_equal(set_irqs(p, VU_PCI_ERR_IRQ, TRIG_EFD, 0, 1, &bad[i], 1, NULL, 0), -EINVAL);
                assert_int_equal(set_irqs(p, VU_PCI_REQ_IRQ, TRIG_EFD, 0, 1, &bad[i], 1, NULL, 0), -EINVAL);
        }
        /* One bad fd in a run refuses the whole run: the good one is not assigned either. */
        int run[3] = { efd[0], pipefd[1], efd[1] };
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, 3, run, 3, NULL, 0), -EINVAL);
        assert_int_equal(count_open_fds(), before);

        msix_ctrl(p, true, false);
        assert_int_equal(vu_server_irq(s, 0), 0);
        assert_false(fired(efd[0]));
        /* Eventfds still work, and the pipe never got anything. */
        assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, 1, &efd[0], 1, NULL, 0), 0);
        assert_true(fired(efd[0]));             /* the vector left pending above */
        for (unsigned i = 0; i < 9000; i++)
                assert_int_equal(vu_server_irq(s, 0), 0);
        assert_true(fired(efd[0]));
        assert_int_equal(set_irqs(p, VU_PCI_ERR_IRQ, TRIG_EFD, 0, 1, &efd[1], 1, NULL, 0), 0);
        vu_server_irq_err(s);
        assert_true(fired(efd[1]));
        char c;
        assert_int_equal(fcntl(pipefd[0], F_SETFL, O_NONBLOCK), 0);
        assert_int_equal(read(pipefd[0], &c, 1), -1);

        pair_free(p);
        for (int i = 0; i < 2; i++)
                close(efd[i]);
        close(pipefd[0]);
        close(pipefd[1]);
        close(sv[0]);
        close(sv[1]);
        close(memfd);
}

/* vu_server_irq from other threads while the control thread re-assigns. */
typedef struct FireCtx {
        VuServer *s;
        volatile bool stop;
        unsigned long n;
} FireCtx;

static gpointer fire_thread(gpointer data) {
        FireCtx *f = data;

        while (!f->stop) {
                vu_server_irq(f->s, (unsigned) (f->n % TD_NVEC));
                f->n++;
        }
        return NULL;
}

static void test_irq_threads(void **state) {
        Pair *p = pair_new(false, true);
        FireCtx f = { .s = p->td->server };
        GThread *t[2];
        int efd[TD_NVEC];
        VuServerStats st;

        msix_ctrl(p, true, false);
        t[0] = g_thread_new("fire0", fire_thread, &f);
        t[1] = g_thread_new("fire1", fire_thread, &f);
        for (int round = 0; round < 200; round++) {
                for (int i = 0; i < TD_NVEC; i++)
                        efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, TD_NVEC, efd, TD_NVEC, NULL, 0), 0);
                assert_int_equal(set_irqs(p, VU_PCI_MSIX_IRQ, TRIG_EFD, 0, TD_NVEC, NULL, 0, NULL, 0), 0);
                for (int i = 0; i < TD_NVEC; i++)
                        close(efd[i]);
        }
        f.stop = true;
        g_thread_join(t[0]);
        g_thread_join(t[1]);
        vu_server_get_stats(p->td->server, &st);
        assert_true(st.irqs > 0);
        pair_free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_irq_info),
                cmocka_unit_test(test_msix_delivery),
                cmocka_unit_test(test_msi_delivery),
                cmocka_unit_test(test_deassign_single_high_vector),
                cmocka_unit_test(test_err_req),
                cmocka_unit_test(test_set_irqs_validation),
                cmocka_unit_test(test_irq_fds_must_be_eventfds),
                cmocka_unit_test(test_irq_threads),
        };

        return cmocka_run_group_tests_name("irq", tests, NULL, NULL);
}
