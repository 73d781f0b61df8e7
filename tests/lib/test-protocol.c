/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol suite: the test device served on a real listening socket by
 * a thread running an event loop, our client acting as the VMM: QEMU's
 * start-up sequence, guest memory DMA, MSI-X, mmapped areas, every bad
 * input the issue lists, fd accounting, disconnect and reconnect, one
 * client at a time, migration between two servers.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "vfio-user/client.h"

typedef struct Srv {
        TestDevice *td;
        char *dir, *path;
        GThread *thread;
        int stop;
} Srv;

static gpointer srv_loop(gpointer data) {
        Srv *s = data;
        struct pollfd p[2] = { { vu_server_fd(s->td->server), POLLIN, 0 }, { s->stop, POLLIN, 0 } };

        for (;;) {
                if (poll(p, 2, -1) < 0)
                        continue;
                if (p[1].revents)
                        return NULL;
                if (p[0].revents)
                        vu_server_dispatch(s->td->server);
        }
}

static Srv *srv_new(bool with_migration) {
        Srv *s = g_new0(Srv, 1);

        s->dir = g_dir_make_tmp("vu-proto-XXXXXX", NULL);
        g_assert(s->dir);
        s->path = g_build_filename(s->dir, "dev.sock", NULL);
        s->td = td_new(with_migration);
        assert_int_equal(vu_server_listen(s->td->server, s->path), 0);
        s->stop = eventfd(0, EFD_CLOEXEC);
        s->thread = g_thread_new("vu-server", srv_loop, s);
        return s;
}

static void srv_free(Srv *s) {
        uint64_t one = 1;

        assert_int_equal(write(s->stop, &one, sizeof(one)), sizeof(one));
        g_thread_join(s->thread);
        close(s->stop);
        td_free(s->td);
        /* vu_server_free() removed the socket it created. */
        assert_int_equal(access(s->path, F_OK), -1);
        rmdir(s->dir);
        g_free(s->path);
        g_free(s->dir);
        g_free(s);
}

/* Wait (bounded) until the server thread has seen the client go. */
static void wait_detached(Srv *s, unsigned detaches) {
        for (int i = 0; i < 5000 && __atomic_load_n(&s->td->detaches, __ATOMIC_ACQUIRE) < detaches; i++)
                g_usleep(1000);
        assert_int_equal(__atomic_load_n(&s->td->detaches, __ATOMIC_ACQUIRE), detaches);
}

static VuClient *connect_client(Srv *s) {
        VuClient *c = NULL;

        assert_int_equal(vu_client_connect(s->path, &c), 0);
        assert_int_equal(vu_client_negotiate(c, NULL), 0);
        return c;
}

static uint32_t cfg32(VuClient *c, uint32_t off) {
        uint32_t v = 0;

        assert_int_equal(vu_client_region_read(c, VU_PCI_CONFIG_REGION, off, &v, 4), 0);
        return v;
}

/* QEMU 11's realize sequence (interop §1.5), checked step by step. */
static void test_qemu_startup(void **state) {
        Srv *s = srv_new(false);
        VuClient *c = NULL;
        VuGuestRam ram;
        struct vu_device_info di;
        struct vu_region_info ri;
        struct vu_irq_info ii;
        uint8_t cfg[4096];
        void *caps = NULL;
        size_t caps_len = 0;
        int fd = -1, efd;

        assert_int_equal(vu_client_connect(s->path, &c), 0);
        assert_int_equal(vu_client_negotiate(c, NULL), 0);
        assert_non_null(strstr(vu_client_server_caps(c), "\"pgsizes\":4096"));
        assert_int_equal(vu_client_server_max_fds(c), 16);
        assert_int_equal(vu_client_max_data_xfer(c), 1048576);

        /* Guest RAM (memfd, share=on) and the BIOS window without an fd. */
        assert_int_equal(vu_guest_ram_new(0, 1 << 20, &ram), 0);
        assert_int_equal(vu_client_map_ram(c, &ram), 0);
        assert_int_equal(vu_client_dma_map(c, 0xfffc0000, 0x40000, -1, 0, VU_DMA_READ), 0);

        assert_int_equal(vu_client_device_info(c, &di), 0);
        assert_int_equal(di.flags, VU_DEV_FLAGS_PCI | VU_DEV_FLAGS_RESET);
        assert_int_equal(di.num_regions, 9);
        assert_int_equal(di.num_irqs, 5);

        for (unsigned i = 0; i < 8; i++) {
                if (i == 6)
                        continue;
                assert_int_equal(vu_client_region_info(c, i, &ri, &caps, &caps_len, &fd), 0);
                if (i == 0) {
                        struct vu_cap_sparse_mmap cap;
                        struct vu_sparse_area a;

                        assert_true(ri.flags & VU_REGION_F_MMAP);
                        assert_int_equal(caps_len, sizeof(cap) + sizeof(a));
                        memcpy(&cap, caps, sizeof(cap));
                        memcpy(&a, (uint8_t *) caps + sizeof(cap), sizeof(a));
                        assert_int_equal(cap.nr_areas, 1);
                        assert_int_equal(a.offset, TD_AREA_OFF);
                        assert_true(fd >= 0);
                        close(fd);
                } else
                        assert_int_equal(fd, -1);
                g_free(caps);
                caps = NULL;
        }
        assert_int_equal(vu_client_irq_info(c, VU_PCI_ERR_IRQ, &ii), 0);
        assert_int_equal(ii.count, 1);

        /* One read of the whole config space. */
        assert_int_equal(vu_client_region_read(c, VU_PCI_CONFIG_REGION, 0, cfg, sizeof(cfg)), 0);
        assert_int_equal(cfg[0x3d], 0);
        assert_int_equal(vu_client_region_info(c, VU_PCI_ROM_REGION, &ri, NULL, NULL, NULL), 0);
        assert_int_equal(ri.size, 0);
        /* BAR type bits; the upper half of the 64-bit BAR has size 0 in region info. */
        assert_int_equal(cfg32(c, 0x10) & 0xf, 0x0);
        assert_int_equal(cfg32(c, 0x14) & 0x3, 0x1);
        assert_int_equal(cfg32(c, 0x18) & 0xf, 0xc);
        assert_int_equal(vu_client_region_info(c, 3, &ri, NULL, NULL, NULL), 0);
        assert_int_equal(ri.size, 0);
        assert_int_equal(vu_client_irq_info(c, VU_PCI_MSIX_IRQ, &ii), 0);
        assert_int_equal(ii.count, TD_NVEC);

        efd = eventfd(0, EFD_CLOEXEC);
        assert_int_equal(vu_client_set_irqs(c, VU_PCI_ERR_IRQ, VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER, 0,
                                            1, &efd, 1, NULL),
                         0);
        /* Machine reset: interrupts off, command cleared, DEVICE_RESET. */
        assert_int_equal(vu_client_set_irqs(c, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_TRIGGER, 0, 0,
                                            NULL, 0, NULL),
                         0);
        {
                uint16_t cmd = 0;

                assert_int_equal(vu_client_region_write(c, VU_PCI_CONFIG_REGION, 4, &cmd, 2, false), 0);
        }
        assert_int_equal(vu_client_reset(c), 0);
        assert_int_equal(s->td->reset_calls[VU_RESET_DEVICE], 1);
        /* DMA maps survive the reset. */
        assert_int_equal(vu_dma_count(vu_server_dma(s->td->server)), 2);

        close(efd);
        vu_client_free(c);
        wait_detached(s, 1);
        vu_guest_ram_free(&ram);
        srv_free(s);
}

static void bar0_write32(VuClient *c, uint64_t off, uint32_t v, bool posted) {
        assert_int_equal(vu_client_region_write(c, 0, off, &v, 4, posted), 0);
}

static void bar0_write64(VuClient *c, uint64_t off, uint64_t v) {
        assert_int_equal(vu_client_region_write(c, 0, off, &v, 8, true), 0);
}

static int32_t dma_echo(VuClient *c, uint64_t src, uint64_t dst, uint32_t len, uint32_t vec) {
        int32_t st = 1;

        /* Posted writes, as QEMU sends memory-BAR writes; the final read orders them. */
        bar0_write64(c, TD_REG_DMA_SRC, src);
        bar0_write64(c, TD_REG_DMA_DST, dst);
        bar0_write32(c, TD_REG_DMA_LEN, len, true);
        bar0_write32(c, TD_REG_DMA_VEC, vec, true);
        bar0_write32(c, TD_REG_DMA_CMD, 1, true);
        assert_int_equal(vu_client_region_read(c, 0, TD_REG_STATUS, &st, 4), 0);
        return st;
}

static void test_dma_and_msix(void **state) {
        Srv *s = srv_new(false);
        VuClient *c = connect_client(s);
        VuGuestRam ram, ro;
        int fds[TD_NVEC];
        uint8_t *src, *dst;

        assert_int_equal(vu_guest_ram_new(0x100000, 4 << 20, &ram), 0);
        assert_int_equal(vu_client_map_ram(c, &ram), 0);
        assert_int_equal(vu_guest_ram_new(0x80000000, 1 << 20, &ro), 0);
        assert_int_equal(vu_client_dma_map(c, ro.gpa_base, ro.size, ro.fd, 0, VU_DMA_READ), 0);
        assert_int_equal(vu_client_enable_msix(c, TD_NVEC, fds), 0);

        src = vu_guest_ram_ptr(&ram, 0x101000, 3 * 4096);
        dst = vu_guest_ram_ptr(&ram, 0x300000, 3 * 4096);
        assert_non_null(src);
        assert_null(vu_guest_ram_ptr(&ram, 0x100000 + (4 << 20) - 1, 2));
        for (int i = 0; i < 3 * 4096; i++)
                src[i] = (uint8_t) (i * 13 + 5);

        assert_int_equal(dma_echo(c, 0x101000, 0x300000, 3 * 4096, 3), 0);
        assert_int_equal(vu_client_wait_irq(fds[3], 5000), 1);
        assert_memory_equal(src, dst, 3 * 4096);
        assert_int_equal(vu_client_wait_irq(fds[2], 0), 0);     /* only the vector asked for */

        /* Guest memory the device must not use. */
        assert_int_equal(dma_echo(c, 0x101000, 0x700000, 16, 3), -EFAULT);             /* beyond RAM */
        assert_int_equal(dma_echo(c, 0x100000 + (4 << 20) - 8, 0x300000, 16, 3), -EFAULT);  /* runs off the end */
        assert_int_equal(dma_echo(c, 0x101000, ro.gpa_base, 16, 3), -EACCES);           /* read-only map */
        assert_int_equal(dma_echo(c, ro.gpa_base, 0x300000, 16, 3), 0);                 /* but readable */
        assert_int_equal(vu_client_wait_irq(fds[3], 5000), 1);
        assert_int_equal(dma_echo(c, 0x101000, 0x300000, TD_DMA_MAX + 1, 3), -EINVAL);

        /* After an unmap the device cannot reach the range any more. */
        assert_int_equal(vu_client_dma_unmap(c, ram.gpa_base, ram.size, 0), 0);
        assert_int_equal(dma_echo(c, 0x101000, 0x300000, 16, 3), -EFAULT);
        assert_int_equal(vu_client_dma_unmap(c, ram.gpa_base, ram.size, 0), -ENOENT);

        /* A vector fired by the device while it has no eventfd shows in the PBA. */
        assert_int_equal(vu_client_set_irqs(c, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER, 4,
                                            1, NULL, 0, NULL),
                         0);
        bar0_write32(c, TD_REG_FIRE, 4, false);
        {
                uint64_t pba = 0;

                assert_int_equal(vu_client_region_read(c, TD_MSIX_BAR, TD_PBA_OFF, &pba, 8), 0);
                assert_int_equal(pba, 1u << 4);
                assert_int_equal(vu_client_set_irqs(c, VU_PCI_MSIX_IRQ,
                                                    VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER, 4, 1, &fds[4],
                                                    1, NULL),
                                 0);
                assert_int_equal(vu_client_wait_irq(fds[4], 5000), 1);
                assert_int_equal(vu_client_region_read(c, TD_MSIX_BAR, TD_PBA_OFF, &pba, 8), 0);
                assert_int_equal(pba, 0);
        }
        /* The MSI-X table reads back what the client wrote. */
        {
                uint32_t e[4] = { 0xfee00000, 0, 0x4021, 0 }, r[4];

                assert_int_equal(vu_client_region_write(c, TD_MSIX_BAR, 16, e, 16, false), 0);
                assert_int_equal(vu_client_region_read(c, TD_MSIX_BAR, 16, r, 16), 0);
                assert_memory_equal(e, r, 16);
        }
        for (int i = 0; i < TD_NVEC; i++)
                close(fds[i]);
        vu_client_free(c);
        wait_detached(s, 1);
        vu_guest_ram_free(&ram);
        vu_guest_ram_free(&ro);
        srv_free(s);
}

static void test_mmap_area(void **state) {
        Srv *s = srv_new(false);
        VuClient *c = connect_client(s);
        struct vu_region_info ri;
        void *caps = NULL;
        size_t caps_len;
        int fd;
        uint8_t *m, b = 0;

        assert_int_equal(vu_client_region_info(c, 0, &ri, &caps, &caps_len, &fd), 0);
        g_free(caps);
        m = mmap(NULL, TD_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t) (ri.offset + TD_AREA_OFF));
        assert_true(m != MAP_FAILED);
        m[0x80] = 0x3c;                                 /* a doorbell write: no message */
        assert_int_equal(s->td->area[TD_AREA_OFF + 0x80], 0x3c);
        assert_int_equal(vu_client_region_read(c, 0, TD_AREA_OFF + 0x80, &b, 1), 0);
        assert_int_equal(b, 0x3c);
        munmap(m, TD_AREA_SIZE);
        close(fd);
        vu_client_free(c);
        wait_detached(s, 1);
        srv_free(s);
}

static int raw(VuClient *c, uint16_t cmd, uint32_t flags, const void *p, size_t len, const int *fds, unsigned n) {
        return vu_client_request(c, cmd, flags, p, len, NULL, 0, fds, n, NULL);
}

/* Every malformed message in issue 2's list gets an error reply; the connection survives. */
static void test_bad_input(void **state) {
        Srv *s = srv_new(false);
        VuClient *c = connect_client(s);
        int efd[VU_MAX_MSG_FDS + 8];
        uint8_t junk[64] = { 0 };
        int memfd = memfd_create("guest", MFD_CLOEXEC);

        assert_int_equal(ftruncate(memfd, 1 << 20), 0);
        for (unsigned i = 0; i < G_N_ELEMENTS(efd); i++)
                efd[i] = eventfd(0, EFD_CLOEXEC);

        /* Size mismatch. */
        assert_int_equal(raw(c, VU_CMD_DEVICE_GET_INFO, 0, junk, 3, NULL, 0), -EINVAL);
        assert_int_equal(raw(c, VU_CMD_DMA_MAP, 0, junk, 40, NULL, 0), -EINVAL);
        /* Unknown command. */
        assert_int_equal(raw(c, 42, 0, junk, 8, NULL, 0), -ENOSYS);
        /* Region, offset, count out of range. */
        {
                uint8_t b[8] = { 0 };

                assert_int_equal(vu_client_region_read(c, 9, 0, b, 4), -EINVAL);
                assert_int_equal(vu_client_region_read(c, 0, 0x2000, b, 4), -EINVAL);
                assert_int_equal(vu_client_region_read(c, 0, UINT64_MAX - 2, b, 4), -EINVAL);
                assert_int_equal(vu_client_region_write(c, VU_PCI_CONFIG_REGION, 4094, b, 4, false), -EINVAL);
                assert_int_equal(vu_client_region_read(c, 0, 0, b, 0), 0);      /* nothing asked, nothing sent */
                {
                        struct vu_region_access a = { 0, 0, 0 };

                        assert_int_equal(raw(c, VU_CMD_REGION_READ, 0, &a, sizeof(a), NULL, 0), -EINVAL);
                }
        }
        /* Too many fds, and fds where none belong. */
        assert_int_equal(vu_client_set_irqs(c, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER, 0,
                                            VU_MAX_MSG_FDS + 8, efd, VU_MAX_MSG_FDS + 8, NULL),
                         -EINVAL);
        {
                struct vu_device_info di = { .argsz = 16 };

                assert_int_equal(raw(c, VU_CMD_DEVICE_GET_INFO, 0, &di, sizeof(di), efd, 2), -EINVAL);
        }
        /* Bad flags. */
        {
                struct vu_device_info di = { .argsz = 16 };

                assert_int_equal(raw(c, VU_CMD_DEVICE_GET_INFO, 0x100, &di, sizeof(di), NULL, 0), -EINVAL);
                assert_int_equal(vu_client_dma_map(c, 0, 4096, -1, 0, 0x10), -EINVAL);
                assert_int_equal(vu_client_dma_unmap(c, 0, 4096, 0x8), -EINVAL);
        }
        /* Overlapping and unknown DMA ranges. */
        assert_int_equal(vu_client_dma_map(c, 0x100000, 0x10000, memfd, 0, VU_DMA_READ | VU_DMA_WRITE), 0);
        assert_int_equal(vu_client_dma_map(c, 0x108000, 0x10000, memfd, 0, VU_DMA_READ), -EINVAL);
        assert_int_equal(vu_client_dma_map(c, 0x0f8000, 0x10000, -1, 0, VU_DMA_READ), -EINVAL);
        assert_int_equal(vu_client_dma_unmap(c, 0x100000, 0x8000, 0), -ENOENT);
        assert_int_equal(vu_client_dma_unmap(c, 0x200000, 0x1000, 0), -ENOENT);
        /* SET_IRQS out of range. */
        assert_int_equal(vu_client_set_irqs(c, VU_PCI_MSIX_IRQ, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_TRIGGER,
                                            TD_NVEC - 1, 2, NULL, 0, NULL),
                         -EINVAL);
        assert_int_equal(vu_client_set_irqs(c, 7, VU_IRQ_SET_DATA_NONE | VU_IRQ_SET_ACTION_TRIGGER, 0, 1, NULL, 0,
                                            NULL),
                         -EINVAL);
        /* Still connected and serving. */
        {
                struct vu_device_info di;

                assert_int_equal(vu_client_device_info(c, &di), 0);
        }
        assert_int_equal(s->td->detaches, 0);
        for (unsigned i = 0; i < G_N_ELEMENTS(efd); i++)
                close(efd[i]);
        close(memfd);
        vu_client_free(c);
        wait_detached(s, 1);
        srv_free(s);
}

/* A header that cannot be framed closes that client only; the next one is served. */
static void test_untrustworthy_stream(void **state) {
        Srv *s = srv_new(false);
        VuClient *c = connect_client(s), *c2;
        struct vu_hdr h = { .msg_id = 1, .cmd = VU_CMD_DEVICE_GET_INFO, .size = 8 };
        struct vu_device_info di;
        uint8_t b;

        assert_int_equal(vu_client_send_raw(c, &h, sizeof(h), NULL, 0), 0);
        assert_int_equal(vu_client_recv_raw(c, &b, 1, NULL), -ECONNRESET);
        wait_detached(s, 1);
        assert_int_equal(s->td->reset_calls[VU_RESET_LOST_CONN], 1);
        vu_client_free(c);

        c2 = connect_client(s);
        assert_int_equal(vu_client_device_info(c2, &di), 0);
        vu_client_free(c2);
        wait_detached(s, 2);
        srv_free(s);
}

static void test_fd_accounting(void **state) {
        Srv *s = srv_new(false);
        int before = count_open_fds();
        VuClient *c = connect_client(s);
        VuGuestRam ram;
        int fds[TD_NVEC], rfd;
        struct vu_region_info ri;

        assert_int_equal(vu_guest_ram_new(0, 1 << 20, &ram), 0);
        assert_int_equal(vu_client_map_ram(c, &ram), 0);
        assert_int_equal(vu_client_dma_map(c, 1 << 20, 1 << 20, -1, 0, VU_DMA_READ), 0);
        assert_int_equal(vu_client_enable_msix(c, TD_NVEC, fds), 0);
        assert_int_equal(vu_client_region_info(c, 0, &ri, NULL, NULL, &rfd), 0);
        {
                int e = eventfd(0, EFD_CLOEXEC);

                assert_int_equal(vu_client_set_irqs(c, VU_PCI_ERR_IRQ,
                                                    VU_IRQ_SET_DATA_EVENTFD | VU_IRQ_SET_ACTION_TRIGGER, 0, 1, &e, 1,
                                                    NULL),
                                 0);
                close(e);
        }
        /* The client goes away without cleaning up: the server drops everything it held. */
        vu_client_free(c);
        wait_detached(s, 1);
        assert_int_equal(vu_dma_count(vu_server_dma(s->td->server)), 0);
        for (int i = 0; i < TD_NVEC; i++)
                close(fds[i]);
        close(rfd);
        vu_guest_ram_free(&ram);
        assert_int_equal(count_open_fds(), before);
        srv_free(s);
}

static void test_reconnect(void **state) {
        Srv *s = srv_new(false);
        VuClient *c = connect_client(s);
        VuGuestRam ram;
        uint32_t v = 0xabcd;

        assert_int_equal(vu_guest_ram_new(0, 1 << 20, &ram), 0);
        assert_int_equal(vu_client_map_ram(c, &ram), 0);
        assert_int_equal(vu_client_region_write(c, 0, 0, &v, 4, false), 0);
        vu_client_free(c);
        wait_detached(s, 1);
        assert_int_equal(s->td->reset_calls[VU_RESET_LOST_CONN], 1);
        assert_int_equal(vu_dma_count(vu_server_dma(s->td->server)), 0);

        /* The definition stays; a new client starts from a reset device. */
        c = connect_client(s);
        v = 1;
        assert_int_equal(vu_client_region_read(c, 0, 0, &v, 4), 0);
        assert_int_equal(v, 0);
        assert_int_equal(vu_client_map_ram(c, &ram), 0);
        assert_int_equal(s->td->attaches, 2);
        vu_client_free(c);
        wait_detached(s, 2);
        vu_guest_ram_free(&ram);
        srv_free(s);
}

static void test_one_client_at_a_time(void **state) {
        Srv *s = srv_new(false);
        VuClient *a = connect_client(s), *b = NULL;
        struct vu_device_info di;
        char byte;

        assert_int_equal(vu_client_connect(s->path, &b), 0);
        /* The second connection is accepted by the kernel, then closed by the server. */
        {
                struct pollfd p = { vu_client_fd(b), POLLIN, 0 };

                assert_int_equal(poll(&p, 1, 5000), 1);
                assert_int_equal(recv(vu_client_fd(b), &byte, 1, 0), 0);
        }
        assert_int_equal(vu_client_device_info(a, &di), 0);
        assert_int_equal(s->td->attaches, 1);
        vu_client_free(b);
        vu_client_free(a);
        wait_detached(s, 1);
        srv_free(s);
}

static void test_write_multi_client(void **state) {
        Srv *s = srv_new(false);
        VuClient *c = connect_client(s);
        struct vu_write_multi_entry e[2] = { { 0x10, 0, 4, { 1, 2, 3, 4 } }, { 0x14, 0, 2, { 5, 6 } } };
        uint8_t b[6];

        assert_int_equal(vu_client_write_multi(c, e, 2), 0);
        assert_int_equal(vu_client_region_read(c, 0, 0x10, b, 6), 0);
        assert_memory_equal(b, ((uint8_t[]) { 1, 2, 3, 4, 5, 6 }), 6);
        e[1].region = 9;
        assert_int_equal(vu_client_write_multi(c, e, 2), -EINVAL);
        vu_client_free(c);
        wait_detached(s, 1);
        srv_free(s);
}

static void test_migration(void **state) {
        Srv *src = srv_new(true), *dst = srv_new(true);
        VuClient *cs = connect_client(src), *cd = connect_client(dst);
        struct vu_feature_mig_state st = { VU_MIG_PRE_COPY, 0 };
        uint8_t regs[TD_MIG_BLOB], stream[2 * TD_MIG_BLOB], out[64];
        uint64_t flags = 0;
        size_t olen, total = 0;
        int n;

        for (int i = 0; i < TD_MIG_BLOB; i++)
                regs[i] = (uint8_t) (255 - i);
        assert_int_equal(vu_client_region_write(cs, 0, 0, regs, TD_MIG_BLOB, false), 0);

        assert_int_equal(vu_client_device_feature(cs, VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, &flags,
                                                   sizeof(flags), &olen),
                         0);
        assert_int_equal(olen, 8);
        assert_true(flags & VU_MIGRATION_STOP_COPY);
        assert_int_equal(vu_client_device_feature(cs, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st),
                                                  out, sizeof(out), &olen),
                         0);
        while ((n = vu_client_mig_data_read(cs, stream + total, 100)) > 0 && total < sizeof(stream))
                total += (size_t) n;
        assert_int_equal(n, 0);
        st.device_state = VU_MIG_STOP_COPY;
        assert_int_equal(vu_client_device_feature(cs, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st),
                                                  NULL, 0, NULL),
                         0);
        assert_int_equal(vu_client_mig_data_read(cs, stream + total, 100), 0);
        assert_int_equal(total, TD_MIG_BLOB);

        st.device_state = VU_MIG_RESUMING;
        assert_int_equal(vu_client_device_feature(cd, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st),
                                                  NULL, 0, NULL),
                         0);
        assert_int_equal(vu_client_mig_data_write(cd, stream, (uint32_t) total), 0);
        st.device_state = VU_MIG_RUNNING;
        assert_int_equal(vu_client_device_feature(cd, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st),
                                                  NULL, 0, NULL),
                         0);
        {
                uint8_t got[TD_MIG_BLOB];

                assert_int_equal(vu_client_region_read(cd, 0, 0, got, TD_MIG_BLOB), 0);
                assert_memory_equal(got, regs, TD_MIG_BLOB);
        }
        vu_client_free(cs);
        vu_client_free(cd);
        wait_detached(src, 1);
        wait_detached(dst, 1);
        srv_free(src);
        srv_free(dst);
}

static void test_listen_paths(void **state) {
        g_autofree char *dir = g_dir_make_tmp("vu-listen-XXXXXX", NULL);
        g_autofree char *sock = g_build_filename(dir, "s", NULL);
        g_autofree char *file = g_build_filename(dir, "f", NULL);
        char longpath[200];
        TestDevice *td = td_new(false);
        int fd;

        /* A stale socket is replaced. */
        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                int s2 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

                strcpy(sa.sun_path, sock);
                assert_int_equal(bind(s2, (struct sockaddr *) &sa, sizeof(sa)), 0);
                close(s2);
        }
        assert_int_equal(vu_server_listen(td->server, sock), 0);
        assert_int_equal(vu_server_listen(td->server, sock), -EBUSY);
        td_free(td);
        assert_int_equal(access(sock, F_OK), -1);

        /* Something that is not a socket is left alone. */
        td = td_new(false);
        fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        close(fd);
        assert_int_equal(vu_server_listen(td->server, file), -EEXIST);
        assert_int_equal(access(file, F_OK), 0);
        memset(longpath, 'x', sizeof(longpath) - 1);
        longpath[sizeof(longpath) - 1] = 0;
        assert_int_equal(vu_server_listen(td->server, longpath), -ENAMETOOLONG);
        td_free(td);
        unlink(file);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_qemu_startup),
                cmocka_unit_test(test_dma_and_msix),
                cmocka_unit_test(test_mmap_area),
                cmocka_unit_test(test_bad_input),
                cmocka_unit_test(test_untrustworthy_stream),
                cmocka_unit_test(test_fd_accounting),
                cmocka_unit_test(test_reconnect),
                cmocka_unit_test(test_one_client_at_a_time),
                cmocka_unit_test(test_write_multi_client),
                cmocka_unit_test(test_migration),
                cmocka_unit_test(test_listen_paths),
        };

        return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
