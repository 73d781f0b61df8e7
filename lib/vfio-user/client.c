/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vfio-user client: one synchronous request/reply at a time over an
 * AF_UNIX socket, replies matched by message id and command and checked for
 * size before they are used.  The VMM helpers (guest RAM, MSI-X) are in
 * client-vmm.c.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "client-internal.h"
#include "transport.h"

#define VU_CLIENT_TIMEOUT_MS 10000
#define VU_CLIENT_RX_FDS 4

/* What QEMU 11.1.3 offers. */
static const char qemu_caps[] =
        "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576,\"migration\":{\"pgsize\":4096}}}";

int vu_client_new_from_fd(int fd, VuClient **out) {
        VuClient *c = g_new0(VuClient, 1);

        c->fd = fd;
        c->timeout_ms = VU_CLIENT_TIMEOUT_MS;
        c->server_max_fds = 1;
        c->max_xfer = VU_MAX_DATA_XFER;
        *out = c;
        return 0;
}

int vu_client_connect(const char *path, VuClient **out) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return vu_client_new_from_fd(fd, out);
}

void vu_client_free(VuClient *c) {
        if (!c)
                return;
        if (c->fd >= 0)
                close(c->fd);
        g_free(c->caps);
        g_free(c);
}

int vu_client_note_error(VuClient *c, int r) {
        if (!c->lost && (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN || r == -ESHUTDOWN))
                c->lost = r;
        return r;
}

int vu_client_lost(const VuClient *c) {
        return c->lost;
}

int vu_client_fd(const VuClient *c) {
        return c->fd;
}

void vu_client_set_timeout(VuClient *c, int timeout_ms) {
        c->timeout_ms = timeout_ms;
}

const char *vu_client_server_caps(const VuClient *c) {
        return c->caps;
}

uint32_t vu_client_max_data_xfer(const VuClient *c) {
        return c->max_xfer;
}

uint32_t vu_client_server_max_fds(const VuClient *c) {
        return c->server_max_fds;
}

/* Read exactly len bytes, collecting fds, within the client's timeout. */
static int recv_exact(VuClient *c, void *buf, size_t len, int *fds, unsigned max_fds, unsigned *n_fds) {
        uint8_t *b = buf;
        bool trunc = false;

        while (len > 0) {
                ssize_t n = vu_sock_recv(c->fd, b, len, fds, max_fds, n_fds, &trunc, true);

                if (n == -EAGAIN) {
                        int r = vu_sock_wait(c->fd, POLLIN, c->timeout_ms);

                        if (r < 0)
                                return r;
                        continue;
                }
                if (n < 0)
                        return (int) n;
                if (n == 0)
                        return -ECONNRESET;
                b += n;
                len -= (size_t) n;
        }
        return trunc ? -EBADMSG : 0;
}

int vu_client_send_raw(VuClient *c, const void *msg, size_t len, const int *fds, unsigned n_fds) {
        struct iovec iov = { (void *) msg, len };

        if (c->lost)
                return c->lost;
        return vu_client_note_error(c, vu_sock_send(c->fd, &iov, 1, fds, n_fds, c->timeout_ms));
}

static void close_fds(int *fds, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

/* Receive one message: header, then its body into a new buffer.  0 or -errno. */
static int recv_msg(VuClient *c, struct vu_hdr *h, uint8_t **body, int *fds, unsigned *n_fds) {
        int r;

        *body = NULL;
        *n_fds = 0;
        r = recv_exact(c, h, sizeof(*h), fds, VU_CLIENT_RX_FDS, n_fds);
        if (r < 0)
                goto fail;
        if (h->size < sizeof(*h) || h->size > VU_MAX_MSG_SIZE) {
                r = -EBADMSG;
                goto fail;
        }
        *body = g_malloc(h->size - sizeof(*h) + 1);
        r = recv_exact(c, *body, h->size - sizeof(*h), fds, VU_CLIENT_RX_FDS, n_fds);
        if (r < 0)
                goto fail;
        return 0;
fail:
        g_clear_pointer(body, g_free);
        close_fds(fds, *n_fds);
        *n_fds = 0;
        return r;
}

int vu_client_recv_raw(VuClient *c, void *buf, size_t cap, struct vu_hdr *hdr) {
        g_autofree uint8_t *body = NULL;
        int fds[VU_CLIENT_RX_FDS];
        unsigned n_fds;
        struct vu_hdr h;
        int r = c->lost ? c->lost : recv_msg(c, &h, &body, fds, &n_fds);

        if (r < 0)
                return vu_client_note_error(c, r);
        close_fds(fds, n_fds);
        if (hdr)
                *hdr = h;
        if (buf)
                memcpy(buf, body, MIN(cap, (size_t) h.size - sizeof(h)));
        return (int) h.size;
}

int vu_client_request(VuClient *c, uint16_t cmd, uint32_t flags, const void *p1, size_t l1, const void *p2,
                      size_t l2, const int *fds, unsigned n_fds, VuClientReply *rep) {
        struct vu_hdr h = {
                .msg_id = c->next_id++,
                .cmd = cmd,
                .flags = VU_F_TYPE_CMD | flags,
                .size = (uint32_t) (sizeof(h) + l1 + l2),
        };
        struct iovec iov[3] = { { &h, sizeof(h) }, { (void *) p1, l1 }, { (void *) p2, l2 } };
        struct vu_hdr rh;
        int rfds[VU_CLIENT_RX_FDS];
        unsigned n_rfds;
        uint8_t *body;
        int r;

        if (rep) {
                memset(rep, 0, sizeof(*rep));
                rep->fd = -1;           /* an error reply must leave no fd for vu_client_reply_clear() to close */
        }
        if (sizeof(h) + l1 + l2 > VU_MAX_MSG_SIZE)
                return -E2BIG;
        if (c->lost)
                return c->lost;         /* the server is gone: fail at once */
        r = vu_sock_send(c->fd, iov, 3, fds, n_fds, c->timeout_ms);
        if (r < 0 || (flags & VU_F_NO_REPLY))
                return vu_client_note_error(c, r);

        r = recv_msg(c, &rh, &body, rfds, &n_rfds);
        if (r < 0)
                return vu_client_note_error(c, r);
        if ((rh.flags & VU_F_TYPE_MASK) != VU_F_TYPE_REPLY || rh.msg_id != h.msg_id || rh.cmd != cmd) {
                r = -EBADMSG;
        } else if (rh.flags & VU_F_ERROR) {
                /* Clamp what the server says to a real errno. */
                r = (rh.error >= 1 && rh.error < 4096) ? -(int) rh.error : -EIO;
        }
        if (r < 0 || !rep) {
                g_free(body);
                close_fds(rfds, n_rfds);
                return r;
        }
        rep->data = body;
        rep->len = rh.size - sizeof(rh);
        rep->fd = n_rfds ? rfds[0] : -1;
        if (n_rfds > 1)
                close_fds(rfds + 1, n_rfds - 1);
        return 0;
}

void vu_client_reply_clear(VuClientReply *rep) {
        g_clear_pointer(&rep->data, g_free);
        if (rep->fd >= 0)
                close(rep->fd);
        rep->fd = -1;
}

static int simple(VuClient *c, uint16_t cmd, const void *req, size_t len, void *out, size_t out_len) {
        g_auto(VuClientReply) rep = VU_CLIENT_REPLY_INIT;
        int r = vu_client_request(c, cmd, 0, req, len, NULL, 0, NULL, 0, &rep);

        if (r < 0)
                return r;
        if (rep.len < out_len)
                return -EBADMSG;
        if (out)
                memcpy(out, rep.data, out_len);
        return 0;
}

static int get_int(JsonObject *o, const char *name, int64_t *v) {
        JsonNode *n = json_object_get_member(o, name);

        if (!n)
                return 0;
        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return -EBADMSG;
        *v = json_node_get_int(n);
        return 0;
}

int vu_client_negotiate(VuClient *c, const char *caps_json) {
        g_auto(VuClientReply) rep = VU_CLIENT_REPLY_INIT;
        g_autoptr(JsonParser) p = json_parser_new();
        struct vu_version v = { VU_MAJOR, VU_MINOR };
        const char *json = caps_json ? caps_json : qemu_caps;
        int64_t fds = 1, xfer = VU_MAX_DATA_XFER;
        const char *rjson;
        size_t rlen;
        JsonNode *root, *caps;
        int r;

        r = vu_client_request(c, VU_CMD_VERSION, 0, &v, sizeof(v), json, strlen(json) + 1, NULL, 0, &rep);
        if (r < 0)
                return r;
        if (rep.len < sizeof(v) + 1)
                return -EBADMSG;
        memcpy(&v, rep.data, sizeof(v));
        rjson = (const char *) rep.data + sizeof(v);
        rlen = rep.len - sizeof(v);
        if (v.major != VU_MAJOR || v.minor != VU_MINOR || rjson[rlen - 1] != '\0' || strlen(rjson) != rlen - 1)
                return -EBADMSG;
        if (!json_parser_load_from_data(p, rjson, -1, NULL))
                return -EBADMSG;
        root = json_parser_get_root(p);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root))
                return -EBADMSG;
        caps = json_object_get_member(json_node_get_object(root), "capabilities");
        if (caps) {
                if (!JSON_NODE_HOLDS_OBJECT(caps))
                        return -EBADMSG;
                if (get_int(json_node_get_object(caps), "max_msg_fds", &fds) < 0 ||
                    get_int(json_node_get_object(caps), "max_data_xfer_size", &xfer) < 0 || fds < 0 ||
                    fds > 1024 || xfer < 1 || xfer > (int64_t) VU_MAX_DATA_XFER * 64)
                        return -EBADMSG;
        }
        g_free(c->caps);
        c->caps = g_strdup(rjson);
        c->server_max_fds = (uint32_t) fds;
        c->max_xfer = (uint32_t) MIN(xfer, (int64_t) VU_MAX_DATA_XFER);
        return 0;
}

int vu_client_dma_map(VuClient *c, uint64_t gpa, uint64_t size, int fd, uint64_t fd_offset, uint32_t prot) {
        struct vu_dma_map m = { sizeof(m), prot, fd_offset, gpa, size };

        return vu_client_request(c, VU_CMD_DMA_MAP, 0, &m, sizeof(m), NULL, 0, fd >= 0 ? &fd : NULL,
                                 fd >= 0 ? 1 : 0, NULL);
}

int vu_client_dma_unmap(VuClient *c, uint64_t gpa, uint64_t size, uint32_t flags) {
        struct vu_dma_unmap u = { sizeof(u), flags, gpa, size }, out;
        int r = simple(c, VU_CMD_DMA_UNMAP, &u, sizeof(u), &out, sizeof(out));

        if (r == 0 && (out.addr != gpa || out.size != size))
                return -EBADMSG;
        return r;
}

int vu_client_device_info(VuClient *c, struct vu_device_info *info) {
        struct vu_device_info in = { .argsz = sizeof(in) };

        return simple(c, VU_CMD_DEVICE_GET_INFO, &in, sizeof(in), info, sizeof(*info));
}

int vu_client_region_info(VuClient *c, unsigned index, struct vu_region_info *info, void **caps,
                          size_t *caps_len, int *fd) {
        struct vu_region_info in = { .argsz = sizeof(in), .index = index };

        if (caps)
                *caps = NULL;
        if (caps_len)
                *caps_len = 0;
        if (fd)
                *fd = -1;
        for (int attempt = 0; attempt < 2; attempt++) {
                g_auto(VuClientReply) rep = VU_CLIENT_REPLY_INIT;
                int r = vu_client_request(c, VU_CMD_DEVICE_GET_REGION_INFO, 0, &in, sizeof(in), NULL, 0,
                                          NULL, 0, &rep);

                if (r < 0)
                        return r;
                if (rep.len < sizeof(*info) || rep.len > in.argsz)
                        return -EBADMSG;
                memcpy(info, rep.data, sizeof(*info));
                if (info->argsz > in.argsz) {
                        /* Too small for the capabilities: ask again with the size the server named. */
                        if (info->argsz > 65536 || rep.fd >= 0)
                                return -EBADMSG;
                        in.argsz = info->argsz;
                        continue;
                }
                if (rep.len > sizeof(*info) &&
                    (info->cap_offset < sizeof(*info) || info->cap_offset >= rep.len))
                        return -EBADMSG;
                if (caps && rep.len > sizeof(*info)) {
                        *caps = g_memdup2(rep.data + sizeof(*info), rep.len - sizeof(*info));
                        if (caps_len)
                                *caps_len = rep.len - sizeof(*info);
                }
                if (fd) {
                        *fd = rep.fd;
                        rep.fd = -1;
                }
                return 0;
        }
        return -EBADMSG;
}

int vu_client_irq_info(VuClient *c, unsigned index, struct vu_irq_info *info) {
        struct vu_irq_info in = { .argsz = sizeof(in), .index = index };

        return simple(c, VU_CMD_DEVICE_GET_IRQ_INFO, &in, sizeof(in), info, sizeof(*info));
}

int vu_client_set_irqs(VuClient *c, unsigned index, uint32_t flags, uint32_t start, uint32_t count,
                       const int *fds, unsigned n_fds, const uint8_t *bools) {
        size_t blen = bools ? count : 0;
        struct vu_irq_set is = {
                .argsz = (uint32_t) (sizeof(is) + blen),
                .flags = flags,
                .index = index,
                .start = start,
                .count = count,
        };

        return vu_client_request(c, VU_CMD_DEVICE_SET_IRQS, 0, &is, sizeof(is), bools, blen, fds, n_fds, NULL);
}

int vu_client_region_read(VuClient *c, unsigned region, uint64_t off, void *buf, uint32_t len) {
        uint8_t *b = buf;

        while (len > 0) {
                g_auto(VuClientReply) rep = VU_CLIENT_REPLY_INIT;
                uint32_t n = MIN(len, c->max_xfer);
                struct vu_region_access a = { off, region, n }, ra;
                int r = vu_client_request(c, VU_CMD_REGION_READ, 0, &a, sizeof(a), NULL, 0, NULL, 0, &rep);

                if (r < 0)
                        return r;
                if (rep.len != sizeof(a) + n)
                        return -EBADMSG;
                memcpy(&ra, rep.data, sizeof(ra));
                if (ra.offset != off || ra.region != region || ra.count != n)
                        return -EBADMSG;
                memcpy(b, rep.data + sizeof(a), n);
                b += n;
                off += n;
                len -= n;
        }
        return 0;
}

int vu_client_region_write(VuClient *c, unsigned region, uint64_t off, const void *buf, uint32_t len,
                           bool posted) {
        const uint8_t *b = buf;

        while (len > 0) {
                uint32_t n = MIN(len, c->max_xfer);
                struct vu_region_access a = { off, region, n };
                int r = vu_client_request(c, VU_CMD_REGION_WRITE, posted ? VU_F_NO_REPLY : 0, &a, sizeof(a), b,
                                          n, NULL, 0, NULL);

                if (r < 0)
                        return r;
                b += n;
                off += n;
                len -= n;
        }
        return 0;
}

int vu_client_write_multi(VuClient *c, const struct vu_write_multi_entry *e, unsigned n) {
        uint64_t cnt = n, done;
        int r;

        if (n == 0 || n > VU_WRITE_MULTI_MAX)
                return -EINVAL;
        {
                g_auto(VuClientReply) rep = VU_CLIENT_REPLY_INIT;

                r = vu_client_request(c, VU_CMD_REGION_WRITE_MULTI, 0, &cnt, sizeof(cnt), e,
                                      n * sizeof(*e), NULL, 0, &rep);
                if (r < 0)
                        return r;
                if (rep.len != sizeof(done))
                        return -EBADMSG;
                memcpy(&done, rep.data, sizeof(done));
        }
        return done == cnt ? 0 : -EIO;
}

int vu_client_reset(VuClient *c) {
        return vu_client_request(c, VU_CMD_DEVICE_RESET, 0, NULL, 0, NULL, 0, NULL, 0, NULL);
}

int vu_client_device_feature(VuClient *c, uint32_t flags, const void *in, size_t in_len, void *out,
                             size_t out_cap, size_t *out_len) {
        g_auto(VuClientReply) rep = VU_CLIENT_REPLY_INIT;
        struct vu_device_feature f = {
                .argsz = (uint32_t) (sizeof(f) + MAX(in_len, out_cap)),
                .flags = flags,
        };
        int r;

        if (out_len)
                *out_len = 0;
        r = vu_client_request(c, VU_CMD_DEVICE_FEATURE, 0, &f, sizeof(f), in, in_len, NULL, 0, &rep);
        if (r < 0)
                return r;
        if (rep.len < sizeof(f))
                return -EBADMSG;
        if (out)
                memcpy(out, rep.data + sizeof(f), MIN(out_cap, rep.len - sizeof(f)));
        if (out_len)
                *out_len = rep.len - sizeof(f);
        return 0;
}

int vu_client_mig_data_read(VuClient *c, void *buf, uint32_t len) {
        g_auto(VuClientReply) rep = VU_CLIENT_REPLY_INIT;
        struct vu_mig_data m = { .argsz = (uint32_t) (sizeof(m) + len), .size = len }, rm;
        int r;

        r = vu_client_request(c, VU_CMD_MIG_DATA_READ, 0, &m, sizeof(m), NULL, 0, NULL, 0, &rep);
        if (r < 0)
                return r;
        if (rep.len < sizeof(rm))
                return -EBADMSG;
        memcpy(&rm, rep.data, sizeof(rm));
        if (rm.size > len || rep.len != sizeof(rm) + rm.size)
                return -EBADMSG;
        memcpy(buf, rep.data + sizeof(rm), rm.size);
        return (int) rm.size;
}

int vu_client_mig_data_write(VuClient *c, const void *buf, uint32_t len) {
        struct vu_mig_data m = { .argsz = (uint32_t) (sizeof(m) + len), .size = len };

        return vu_client_request(c, VU_CMD_MIG_DATA_WRITE, 0, &m, sizeof(m), buf, len, NULL, 0, NULL);
}
