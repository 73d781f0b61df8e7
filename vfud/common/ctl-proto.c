/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl-proto.h"

void ctl_reader_init(CtlReader *r) {
        r->buf = g_byte_array_new();
        r->fds = g_array_new(FALSE, FALSE, sizeof(int));
}

void ctl_fds_free(GArray *fds) {
        if (!fds)
                return;
        for (guint i = 0; i < fds->len; i++)
                if (g_array_index(fds, int, i) >= 0)
                        close(g_array_index(fds, int, i));
        g_array_free(fds, TRUE);
}

void ctl_reader_clear(CtlReader *r) {
        if (r->buf)
                g_byte_array_free(r->buf, TRUE);
        r->buf = NULL;
        ctl_fds_free(r->fds);
        r->fds = NULL;
}

int ctl_reader_fill(CtlReader *r, int fd) {
        uint8_t data[16384];
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
        } control;
        struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
        struct msghdr mh = {
                .msg_iov = &iov, .msg_iovlen = 1,
                .msg_control = &control, .msg_controllen = sizeof(control),
        };
        ssize_t n;

        n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                const int *p = (const int *) CMSG_DATA(c);

                for (size_t i = 0; i < nfd; i++) {
                        int f;

                        memcpy(&f, p + i, sizeof(int));
                        if (r->fds->len >= CTL_MAX_FDS)
                                close(f);
                        else
                                g_array_append_val(r->fds, f);
                }
        }
        if (mh.msg_flags & MSG_CTRUNC)
                return -EMSGSIZE;
        if (n == 0)
                return 0;
        g_byte_array_append(r->buf, data, (guint) n);
        if (r->buf->len > CTL_MAX_LINE && !memchr(r->buf->data, '\n', r->buf->len))
                return -EMSGSIZE;
        return (int) n;
}

int ctl_reader_next(CtlReader *r, JsonNode **msg, GArray **fds) {
        g_autoptr(JsonParser) parser = NULL;
        g_autoptr(GError) error = NULL;
        uint8_t *nl;
        size_t len;
        JsonNode *root;
        JsonArray *names = NULL;
        guint want = 0;

        if (r->buf->len == 0)
                return 0;
        nl = memchr(r->buf->data, '\n', r->buf->len);
        if (!nl)
                return 0;
        len = (size_t) (nl - r->buf->data);
        parser = json_parser_new_immutable();
        if (!json_parser_load_from_data(parser, (const char *) r->buf->data, (gssize) len, &error)) {
                g_byte_array_remove_range(r->buf, 0, (guint) len + 1);
                return -EBADMSG;
        }
        g_byte_array_remove_range(r->buf, 0, (guint) len + 1);
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root))
                return -EBADMSG;
        if (json_object_has_member(json_node_get_object(root), "fds")) {
                JsonNode *n = json_object_get_member(json_node_get_object(root), "fds");

                if (!JSON_NODE_HOLDS_ARRAY(n))
                        return -EBADMSG;
                names = json_node_get_array(n);
                want = json_array_get_length(names);
        }
        if (want > r->fds->len)
                return -EBADMSG;
        *fds = g_array_new(FALSE, FALSE, sizeof(int));
        g_array_append_vals(*fds, r->fds->data, want);
        g_array_remove_range(r->fds, 0, want);
        *msg = json_node_copy(root);
        return 1;
}

static int64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ctl_send(int fd, JsonNode *msg, const int *fds, unsigned n_fds) {
        g_autofree char *line = NULL;
        size_t len, off = 0;
        int64_t deadline = now_ms() + 5000;

        if (n_fds > CTL_MAX_FDS)
                return -EINVAL;
        line = json_to_string(msg, FALSE);
        len = strlen(line);
        line = g_realloc(line, len + 2);
        line[len++] = '\n';
        line[len] = '\0';
        if (len > CTL_MAX_LINE)
                return -EMSGSIZE;

        while (off < len) {
                union {
                        struct cmsghdr h;
                        uint8_t buf[CMSG_SPACE(sizeof(int) * CTL_MAX_FDS)];
                } control;
                struct iovec iov = { .iov_base = line + off, .iov_len = len - off };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t n;

                if (off == 0 && n_fds > 0) {
                        memset(&control, 0, sizeof(control));
                        mh.msg_control = &control;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                        memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
                }
                n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        struct pollfd p = { .fd = fd, .events = POLLOUT };
                        int64_t left;

                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                return -errno;
                        left = deadline - now_ms();
                        if (left <= 0)
                                return -ETIMEDOUT;
                        (void) poll(&p, 1, (int) left);
                        continue;
                }
                off += (size_t) n;
        }
        return 0;
}

int ctl_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int e = errno;

                close(fd);
                return -e;
        }
        return fd;
}

int ctl_call_sync(int fd, CtlReader *r, JsonNode *req, JsonNode **reply, int timeout_ms) {
        int64_t id = json_object_get_int_member_with_default(json_node_get_object(req), "id", 0);
        int64_t deadline = now_ms() + timeout_ms;
        int ret;

        ret = ctl_send(fd, req, NULL, 0);
        if (ret < 0)
                return ret;
        for (;;) {
                JsonNode *msg = NULL;
                GArray *fds = NULL;
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int64_t left;

                while ((ret = ctl_reader_next(r, &msg, &fds)) == 1) {
                        JsonObject *o = json_node_get_object(msg);

                        ctl_fds_free(fds);
                        if (json_object_has_member(o, "id") &&
                            json_object_get_int_member_with_default(o, "id", -1) == id) {
                                *reply = msg;
                                return 0;
                        }
                        json_node_unref(msg);
                }
                if (ret < 0)
                        return ret;
                left = deadline - now_ms();
                if (left <= 0)
                        return -ETIMEDOUT;
                ret = poll(&p, 1, (int) left);
                if (ret < 0 && errno != EINTR)
                        return -errno;
                if (ret <= 0)
                        continue;
                ret = ctl_reader_fill(r, fd);
                if (ret == 0)
                        return -ECONNRESET;
                if (ret < 0 && ret != -EAGAIN)
                        return ret;
        }
}

JsonNode *ctl_request_new(int64_t id, const char *method, JsonNode *params, const char *const *fd_names) {
        JsonObject *o = json_object_new();
        JsonNode *n = json_node_new(JSON_NODE_OBJECT);

        json_object_set_int_member(o, "id", id);
        json_object_set_string_member(o, "method", method);
        if (params)
                json_object_set_member(o, "params", params);
        if (fd_names && fd_names[0]) {
                JsonArray *a = json_array_new();

                for (size_t i = 0; fd_names[i]; i++)
                        json_array_add_string_element(a, fd_names[i]);
                json_object_set_array_member(o, "fds", a);
        }
        json_node_take_object(n, o);
        return n;
}
