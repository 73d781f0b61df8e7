/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's control socket: the manager (or a test) asks for info and
 * statistics, forwards runtime control methods to the device type, and
 * subscribes to connection events.  Protocol: common/ctl-proto.h.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/ctl-proto.h"
#include "worker-internal.h"

#define WORKER_CONTROL_MAX_CLIENTS 8

typedef struct ControlClient {
        WorkerControl *control;
        int fd;
        sd_event_source *source;
        CtlReader reader;
        bool subscribed;
} ControlClient;

struct WorkerControl {
        Worker *worker;
        int fd;
        sd_event_source *source;
        GPtrArray *clients;             /* ControlClient */
};

static void control_client_free(ControlClient *c) {
        if (!c)
                return;
        sd_event_source_disable_unref(c->source);
        if (c->fd >= 0)
                close(c->fd);
        ctl_reader_clear(&c->reader);
        g_free(c);
}

void worker_control_free(WorkerControl *c) {
        if (!c)
                return;
        g_ptr_array_unref(c->clients);
        sd_event_source_disable_unref(c->source);
        if (c->fd >= 0)
                close(c->fd);
        g_free(c);
}

static JsonNode *reply_new(JsonNode *id, JsonNode *result, const GError *error) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        if (id) {
                json_builder_set_member_name(b, "id");
                json_builder_add_value(b, json_node_copy(id));
        }
        if (error) {
                json_builder_set_member_name(b, "error");
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "code");
                json_builder_add_string_value(b, worker_error_code_to_string(error));
                json_builder_set_member_name(b, "message");
                json_builder_add_string_value(b, error->message);
                json_builder_end_object(b);
        } else {
                json_builder_set_member_name(b, "result");
                if (result)
                        json_builder_add_value(b, result);
                else
                        json_builder_add_null_value(b);
        }
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

static JsonNode *build_object(Worker *w, void (*fill)(Worker *, JsonBuilder *)) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        fill(w, b);
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

/* Handle one request.  Returns FALSE when the client must be dropped. */
static gboolean control_handle(ControlClient *c, JsonNode *msg, GArray *fds) {
        Worker *w = c->control->worker;
        JsonObject *o = json_node_get_object(msg);
        JsonNode *id = json_object_get_member(o, "id");
        const char *method = json_object_get_string_member_with_default(o, "method", NULL);
        JsonObject *params = NULL;
        JsonArray *fd_names = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(JsonNode) reply = NULL;
        JsonNode *result = NULL;
        bool shutdown = false;

        if (json_object_has_member(o, "params") &&
            JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "params")))
                params = json_object_get_object_member(o, "params");
        if (json_object_has_member(o, "fds"))
                fd_names = json_object_get_array_member(o, "fds");

        if (!method)
                g_set_error(&error, WORKER_ERROR, WORKER_ERROR_INVALID, "request without \"method\"");
        else if (strcmp(method, "info") == 0)
                result = build_object(w, worker_build_info);
        else if (strcmp(method, "stats") == 0)
                result = build_object(w, worker_build_stats);
        else if (strcmp(method, "subscribe") == 0)
                c->subscribed = true;
        else if (strcmp(method, "shutdown") == 0)
                shutdown = true;
        else
                (void) worker_device_control(w, method, params, fd_names, fds, &result, &error);

        reply = reply_new(id, error ? NULL : result, error);
        if (error && result)
                json_node_unref(result);
        if (ctl_send(c->fd, reply, NULL, 0) < 0)
                return FALSE;
        if (shutdown) {
                worker_log(w, G_LOG_LEVEL_MESSAGE, "shutdown requested");
                (void) sd_event_exit(w->event, 0);
        }
        return TRUE;
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ControlClient *c = userdata;
        int r;

        r = ctl_reader_fill(&c->reader, c->fd);
        if (r == -EAGAIN)
                return 0;
        while (r > 0) {
                JsonNode *msg = NULL;
                GArray *fds = NULL;
                int k = ctl_reader_next(&c->reader, &msg, &fds);
                gboolean keep;

                if (k == 0)
                        return 0;
                if (k < 0) {
                        r = k;
                        break;
                }
                keep = control_handle(c, msg, fds);
                json_node_unref(msg);
                ctl_fds_free(fds);
                if (!keep) {
                        r = -EPIPE;
                        break;
                }
        }
        if (r < 0 && r != -EPIPE)
                g_debug("control client dropped: %s", g_strerror(-r));
        g_ptr_array_remove(c->control->clients, c);
        return 0;
}

static int on_control_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WorkerControl *control = userdata;
        ControlClient *c;
        int cfd, r;

        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0)
                return 0;
        if (control->clients->len >= WORKER_CONTROL_MAX_CLIENTS) {
                close(cfd);
                return 0;
        }
        c = g_new0(ControlClient, 1);
        c->control = control;
        c->fd = cfd;
        ctl_reader_init(&c->reader);
        r = sd_event_add_io(control->worker->event, &c->source, cfd, EPOLLIN, on_client_io, c);
        if (r < 0) {
                control_client_free(c);
                return 0;
        }
        g_ptr_array_add(control->clients, c);
        return 0;
}

gboolean worker_control_start(Worker *w, const char *path, GError **error) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        g_autofree WorkerControl *c = NULL;
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "control socket path %s is too long", path);
                return FALSE;
        }
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED, "socket: %s", g_strerror(errno));
                return FALSE;
        }
        (void) unlink(path);
        {
                mode_t old = umask(0077);

                r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
                umask(old);
        }
        if (r < 0 || listen(fd, 8) < 0) {
                int e = errno;

                close(fd);
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot listen on control socket %s: %s", path, g_strerror(e));
                return FALSE;
        }
        c = g_new0(WorkerControl, 1);
        c->worker = w;
        c->fd = fd;
        c->clients = g_ptr_array_new_with_free_func((GDestroyNotify) control_client_free);
        r = sd_event_add_io(w->event, &c->source, fd, EPOLLIN, on_control_accept, c);
        if (r < 0) {
                g_ptr_array_unref(c->clients);
                close(fd);
                (void) unlink(path);
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot watch control socket %s: %s", path, g_strerror(-r));
                return FALSE;
        }
        w->control = g_steal_pointer(&c);
        return TRUE;
}

void worker_control_broadcast(Worker *w, const char *event) {
        g_autoptr(JsonBuilder) b = NULL;
        g_autoptr(JsonNode) msg = NULL;

        if (!w->control)
                return;
        b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "event");
        json_builder_add_string_value(b, event);
        json_builder_set_member_name(b, "connected");
        json_builder_add_boolean_value(b, w->connected);
        worker_build_migration(w, b);
        json_builder_end_object(b);
        msg = json_builder_get_root(b);
        for (guint i = 0; i < w->control->clients->len;) {
                ControlClient *c = g_ptr_array_index(w->control->clients, i);

                if (c->subscribed && ctl_send(c->fd, msg, NULL, 0) < 0) {
                        g_ptr_array_remove_index(w->control->clients, i);
                        continue;
                }
                i++;
        }
}
