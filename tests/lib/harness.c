/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

int count_open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        int n = 0;

        g_assert(d);
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1;   /* the directory's own fd */
}

static const char qemu_caps[] =
        "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,\"migration\":{\"pgsize\":4096}}}";

Pair *pair_new(bool with_migration, bool negotiate) {
        return pair_new_irq(with_migration, negotiate, 0);
}

Pair *pair_new_irq(bool with_migration, bool negotiate, unsigned msi_nvec) {
        Pair *p = g_new0(Pair, 1);
        int sv[2];

        p->td = td_new_irq(with_migration, msi_nvec);
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
        g_assert_cmpint(vu_server_attach_fd(p->td->server, sv[0]), ==, 0);
        g_assert_cmpint(vu_client_new_from_fd(sv[1], &p->c), ==, 0);
        /* Everything is dispatched before we read: a missing reply is missing now. */
        vu_client_set_timeout(p->c, 0);
        if (negotiate) {
                struct vu_version v = { 0, 0 };

                g_assert_cmpint(pair_xfer(p, VU_CMD_VERSION, 0, &v, sizeof(v), qemu_caps, sizeof(qemu_caps), NULL,
                                          0, NULL, 0, NULL),
                                ==, 0);
        }
        return p;
}

void pair_free(Pair *p) {
        vu_client_free(p->c);
        td_free(p->td);
        g_free(p);
}

static int collect(Pair *p, void *reply, size_t cap, size_t *rlen, uint16_t id, uint16_t cmd) {
        struct vu_hdr h;
        int r;

        if (rlen)
                *rlen = 0;
        r = vu_client_recv_raw(p->c, reply, reply ? cap : 0, &h);
        if (r < 0)
                return r;
        g_assert_cmpuint(h.flags & VU_F_TYPE_MASK, ==, VU_F_TYPE_REPLY);
        g_assert_cmpuint(h.msg_id, ==, id);
        g_assert_cmpuint(h.cmd, ==, cmd);
        if (h.flags & VU_F_ERROR) {
                g_assert_cmpuint(h.size, ==, sizeof(h));
                g_assert_cmpuint(h.error, >, 0);
                return -(int) h.error;
        }
        g_assert_cmpuint(h.error, ==, 0);
        if (rlen)
                *rlen = h.size - sizeof(h);
        return 0;
}

int pair_raw(Pair *p, const void *msg, size_t len, const int *fds, unsigned n_fds, void *reply, size_t cap,
             size_t *rlen) {
        struct vu_hdr h = { 0 };
        int r;

        if (len >= sizeof(h))
                memcpy(&h, msg, sizeof(h));
        r = vu_client_send_raw(p->c, msg, len, fds, n_fds);
        g_assert_cmpint(r, ==, 0);
        p->dispatch_ret = vu_server_dispatch(p->td->server);
        g_assert_cmpint(p->td->quiesced, ==, 0);       /* every quiesce was resumed */
        if (p->dispatch_ret == -ENOTCONN) {
                char b;

                g_assert_false(vu_server_connected(p->td->server));
                /* The server's end is closed: we see end of stream. */
                g_assert_cmpint(recv(vu_client_fd(p->c), &b, 1, MSG_DONTWAIT), ==, 0);
                return -ECONNRESET;
        }
        g_assert_cmpint(p->dispatch_ret, ==, 0);
        return collect(p, reply, cap, rlen, h.msg_id, h.cmd);
}

int pair_xfer(Pair *p, uint16_t cmd, uint32_t flags, const void *p1, size_t l1, const void *p2, size_t l2,
              const int *fds, unsigned n_fds, void *reply, size_t cap, size_t *rlen) {
        static uint16_t id = 0x100;
        size_t len = sizeof(struct vu_hdr) + l1 + l2;
        g_autofree uint8_t *msg = g_malloc(len);
        struct vu_hdr h = { .msg_id = id++, .cmd = cmd, .size = (uint32_t) len, .flags = flags };

        memcpy(msg, &h, sizeof(h));
        if (l1)
                memcpy(msg + sizeof(h), p1, l1);
        if (l2)
                memcpy(msg + sizeof(h) + l1, p2, l2);
        return pair_raw(p, msg, len, fds, n_fds, reply, cap, rlen);
}

int pair_cfg_write(Pair *p, uint32_t off, uint32_t v, uint32_t len) {
        struct vu_region_access a = { off, VU_PCI_CONFIG_REGION, len };

        return pair_xfer(p, VU_CMD_REGION_WRITE, 0, &a, sizeof(a), &v, len, NULL, 0, NULL, 0, NULL);
}

uint32_t pair_cfg_read(Pair *p, uint32_t off, uint32_t len) {
        struct vu_region_access a = { off, VU_PCI_CONFIG_REGION, len };
        uint8_t out[sizeof(a) + 4] = { 0 };
        uint32_t v = 0;

        g_assert_cmpint(pair_xfer(p, VU_CMD_REGION_READ, 0, &a, sizeof(a), NULL, 0, NULL, 0, out, sizeof(out),
                                  NULL),
                        ==, 0);
        memcpy(&v, out + sizeof(a), len);
        return v;
}
