/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A device's worker process: spawning it with its fds, waiting for it to
 * listen, watching it through a pidfd (children and re-adopted orphans
 * alike), its control connection, and statistics polling.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "device.h"
#include "device-spawn.h"
#include "device-type.h"
#include "migrate.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define DEVICE_CTL_TIMEOUT_USEC (10 * G_USEC_PER_SEC)
#define DEVICE_ADOPT_TIMEOUT_MS 3000

typedef struct DeviceCtlCall {
        Device *device;
        int64_t id;
        DeviceCtlFunc func;
        void *userdata;
        sd_event_source *timeout;
} DeviceCtlCall;

static int on_pidfd(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int on_ready_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static int on_start_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Device *d = userdata;

        d->timeout_source = sd_event_source_disable_unref(d->timeout_source);
        g_clear_error(&d->start_error);
        g_set_error(&d->start_error, MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                    "the worker of %s did not listen within %" G_GUINT64_FORMAT " s and was killed: see the journal",
                    d->name, d->manager->config.start_timeout_usec / G_USEC_PER_SEC);
        if (d->pidfd < 0)
                /* A unit whose worker never said it runs: nothing to kill, give up on it. */
                device_worker_exited(d, "did not start", false);
        else
                device_worker_kill(d, SIGKILL);
        return 0;
}

void device_worker_spawn_failed(Device *d, const GError *error) {
        if (d->pidfd >= 0 || d->state != DEVICE_STARTING)
                return;
        g_clear_error(&d->start_error);
        d->start_error = g_error_copy(error);
        device_worker_exited(d, "could not be started", false);
}

static bool device_watch_pidfd(Device *d, pid_t pid, int pidfd, bool own_child) {
        int r;

        d->pid = pid;
        d->pidfd = pidfd;
        d->own_child = own_child;
        r = sd_event_add_io(d->manager->event, &d->pidfd_source, pidfd, EPOLLIN, on_pidfd, d);
        if (r < 0) {
                device_log(d, G_LOG_LEVEL_WARNING, "cannot watch worker %d: %s", (int) pid, g_strerror(-r));
                return false;
        }
        return true;
}

void device_worker_spawn(Device *d) {
        Manager *m = d->manager;
        const ManagerConfig *c = &m->config;
        const WorkerSpawner *spawner = manager_worker_spawner(m);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GArray) fds = g_array_new(FALSE, FALSE, sizeof(int));
        g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;
        int ready_fd = -1, pidfd;
        pid_t pid = 0;

        device_cleanup_runtime_files(d);
        if (d->dtype->open_fds && !d->dtype->open_fds(d, names, fds, &error)) {
                for (guint i = 0; i < fds->len; i++)
                        close(g_array_index(fds, int, i));
                device_start_completed(d, error);
                return;
        }

        g_ptr_array_add(argv, g_strdup(c->worker_path));
        g_ptr_array_add(argv, g_strdup("--definition"));
        g_ptr_array_add(argv, g_strdup(d->definition_path));
        g_ptr_array_add(argv, g_strdup("--socket"));
        g_ptr_array_add(argv, g_strdup(d->socket_path));
        g_ptr_array_add(argv, g_strdup("--control"));
        g_ptr_array_add(argv, g_strdup(d->control_path));
        g_ptr_array_add(argv, g_strdup("--pid-file"));
        g_ptr_array_add(argv, g_strdup(d->pid_path));
        g_ptr_array_add(argv, g_strdup_printf("--socket-mode=%04o", (unsigned) c->socket_mode));
        if (c->socket_group && *c->socket_group)
                g_ptr_array_add(argv, g_strdup_printf("--socket-group=%s", c->socket_group));
        if (!worker_user_is_root(c->worker_user))
                g_ptr_array_add(argv, g_strdup_printf("--user=%s", c->worker_user));
        if (!c->seccomp)
                g_ptr_array_add(argv, g_strdup("--no-seccomp"));
        g_ptr_array_add(argv, NULL);

        if (!spawner->spawn(d, argv, names, fds, &ready_fd, &pid, &error)) {
                device_start_completed(d, error);
                return;
        }
        if (pid > 0) {
                pidfd = pidfd_open(pid, 0);
                if (pidfd < 0) {
                        int e = errno;

                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        close(ready_fd);
                        g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "cannot watch the worker (pidfd_open: %s); vfud needs Linux 5.4 or newer", g_strerror(e));
                        device_start_completed(d, error);
                        return;
                }
                device_log(d, G_LOG_LEVEL_MESSAGE, "started worker %d", (int) pid);
                (void) device_watch_pidfd(d, pid, pidfd, true);
        }
        d->ready_fd = ready_fd;
        d->ready_buf = g_string_new(NULL);
        (void) sd_event_add_io(m->event, &d->ready_source, d->ready_fd, EPOLLIN, on_ready_io, d);
        (void) sd_event_add_time_relative(m->event, &d->timeout_source, CLOCK_MONOTONIC,
                                          c->start_timeout_usec, 0, on_start_timeout, d);
}

void device_worker_kill(Device *d, int sig) {
        if (d->pidfd >= 0 && pidfd_send_signal(d->pidfd, sig, NULL, 0) < 0 && errno != ESRCH)
                device_log(d, G_LOG_LEVEL_WARNING, "cannot signal worker %d: %s", (int) d->pid, g_strerror(errno));
}

static void ready_close(Device *d) {
        d->ready_source = sd_event_source_disable_unref(d->ready_source);
        if (d->ready_fd >= 0)
                close(d->ready_fd);
        d->ready_fd = -1;
        if (d->ready_buf)
                g_string_free(d->ready_buf, TRUE);
        d->ready_buf = NULL;
}

static ManagerErrorCode worker_code_to_error(const char *code) {
        static const struct {
                const char *code;
                ManagerErrorCode error;
        } map[] = {
                { "invalid", MANAGER_ERROR_INVALID_ARGUMENT },
                { "backend", MANAGER_ERROR_BACKEND_FAILED },
                { "unsupported", MANAGER_ERROR_NOT_SUPPORTED },
                { "busy", MANAGER_ERROR_DEVICE_BUSY },
        };

        for (size_t i = 0; code && i < G_N_ELEMENTS(map); i++)
                if (strcmp(map[i].code, code) == 0)
                        return map[i].error;
        return MANAGER_ERROR_WORKER_FAILED;
}

static GError *error_from_reply(JsonObject *e) {
        const char *code = json_object_get_string_member_with_default(e, "code", "failed");
        const char *message = json_object_get_string_member_with_default(e, "message", "the worker reported an error");

        return g_error_new_literal(MANAGER_ERROR, worker_code_to_error(code), message);
}

static void on_subscribed(Device *d, JsonNode *result, const GError *error, void *userdata) {
        if (error)
                device_log(d, G_LOG_LEVEL_WARNING, "cannot subscribe to worker events: %s", error->message);
}

static void on_stats(Device *d, JsonNode *result, const GError *error, void *userdata);
static void device_arrival_used(Device *d);

static void on_initial_stats(Device *d, JsonNode *result, const GError *error, void *userdata) {
        on_stats(d, result, error, userdata);
        if (d->state != DEVICE_STARTING)
                return;
        /*
         * A VMM that retries its connection (as one whose worker was just
         * restarted does) may have connected before the subscription: no
         * event told us, the reply (sent after the subscription) does.
         */
        if (!error && result && JSON_NODE_HOLDS_OBJECT(result) &&
            json_object_get_boolean_member_with_default(json_node_get_object(result), "connected", FALSE)) {
                device_set_state(d, DEVICE_CONNECTED);
                if (d->migrated_from)
                        device_arrival_used(d);
        }
        device_start_completed(d, NULL);
}

/* The worker reported: started (a worker in a unit of its own), ready, or the reason it cannot start. */
static void ready_parse(Device *d) {
        g_autoptr(JsonParser) p = json_parser_new();
        JsonObject *o;
        char *nl = strchr(d->ready_buf->str, '\n');
        int fd;

        if (!nl)
                return;
        *nl = '\0';
        if (!json_parser_load_from_data(p, d->ready_buf->str, -1, NULL) ||
            !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
                ready_close(d);
                return;
        }
        o = json_node_get_object(json_parser_get_root(p));
        if (json_object_get_boolean_member_with_default(o, "started", FALSE)) {
                /* Its pid came with the message's credentials (ready_read()); the report follows. */
                g_string_erase(d->ready_buf, 0, nl - d->ready_buf->str + 1);
                ready_parse(d);
                return;
        }
        if (json_object_has_member(o, "error")) {
                g_clear_error(&d->start_error);
                d->start_error = error_from_reply(json_object_get_object_member(o, "error"));
                ready_close(d);
                return;         /* the worker exits; on_pidfd completes the start */
        }
        ready_close(d);
        if (!json_object_get_boolean_member_with_default(o, "ready", FALSE) || d->state != DEVICE_STARTING)
                return;
        fd = ctl_connect(d->control_path);
        if (fd < 0 || !device_ctl_open(d, fd)) {
                if (fd >= 0)
                        close(fd);
                g_clear_error(&d->start_error);
                g_set_error(&d->start_error, MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                            "cannot reach the worker of %s on %s: %s", d->name, d->control_path,
                            g_strerror(fd < 0 ? -fd : EIO));
                device_worker_kill(d, SIGKILL);
                return;
        }
        device_ctl_call(d, "subscribe", NULL, NULL, NULL, on_subscribed, NULL);
        /* Listening: complete once the first statistics are in, so a reader never sees them empty. */
        device_ctl_call(d, "stats", NULL, NULL, NULL, on_initial_stats, NULL);
}

/*
 * Read from the ready fd.  A worker whose pid vfud does not know yet (one
 * started in a unit of its own) is watched from its first message on: the
 * kernel gives the sender's pid with it (SO_PASSCRED).
 */
static ssize_t ready_read(Device *d, char *buf, size_t size) {
        union {
                struct cmsghdr h;
                uint8_t buf[CMSG_SPACE(sizeof(struct ucred))];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = size };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        ssize_t n;

        if (d->pidfd >= 0)
                return read(d->ready_fd, buf, size);
        n = recvmsg(d->ready_fd, &mh, MSG_CMSG_CLOEXEC);
        if (n <= 0)
                return n;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                struct ucred cred;
                int pidfd;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS ||
                    c->cmsg_len < CMSG_LEN(sizeof(cred)))
                        continue;
                memcpy(&cred, CMSG_DATA(c), sizeof(cred));
                if (cred.pid <= 0 || d->pidfd >= 0)
                        continue;
                pidfd = pidfd_open(cred.pid, 0);
                if (pidfd < 0) {
                        device_log(d, G_LOG_LEVEL_WARNING, "cannot watch worker %d: %s", (int) cred.pid, g_strerror(errno));
                        continue;
                }
                {
                        g_autofree char *unit = worker_unit_name(d->name);

                        device_log(d, G_LOG_LEVEL_MESSAGE, "started worker %d in %s", (int) cred.pid, unit);
                }
                (void) device_watch_pidfd(d, cred.pid, pidfd, false);
        }
        return n;
}

static void ready_drain(Device *d) {
        char buf[4096];
        ssize_t n;

        while (d->ready_fd >= 0) {
                n = ready_read(d, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return;
                if (n <= 0 && d->pidfd < 0 && (d->state == DEVICE_STARTING || d->state == DEVICE_STOPPING)) {
                        g_autofree char *unit = worker_unit_name(d->name);
                        g_autofree char *how = g_strdup_printf("ended before it ran (see 'journalctl -u %s')", unit);

                        device_worker_exited(d, how, false);
                        return;
                }
                if (n <= 0) {
                        ready_close(d);
                        return;
                }
                if (d->ready_buf->len + (size_t) n > 65536) {
                        ready_close(d);
                        return;
                }
                g_string_append_len(d->ready_buf, buf, n);
                ready_parse(d);
        }
}

static int on_ready_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Device *d = userdata;

        device_ref(d);
        ready_drain(d);
        device_unref(d);
        return 0;
}

static int on_pidfd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Device *d = userdata;
        g_autofree char *how = NULL;
        bool clean = false;

        if (d->own_child) {
                siginfo_t si = { 0 };

                if (waitid((idtype_t) P_PIDFD, (id_t) d->pidfd, &si, WEXITED | WNOHANG) < 0 ||
                    si.si_pid == 0) {
                        if (errno == ECHILD || si.si_pid == 0)
                                how = g_strdup("exited");
                } else if (si.si_code == CLD_EXITED) {
                        clean = si.si_status == 0;
                        how = g_strdup_printf("exited with status %d", si.si_status);
                } else
                        how = g_strdup_printf("was killed by signal %s%s", sigabbrev_np(si.si_status) ?: "?",
                                              si.si_code == CLD_DUMPED ? " (core dumped)" : "");
        }
        if (!how)
                how = g_strdup("exited");
        if (d->state == DEVICE_STARTING)
                ready_drain(d);
        device_worker_exited(d, how, clean);
        return 0;
}

void device_detach_worker(Device *d) {
        ready_close(d);
        device_ctl_close(d, "the worker is gone");
        device_stats_timer_set(d, false);
        d->pidfd_source = sd_event_source_disable_unref(d->pidfd_source);
        if (d->pidfd >= 0)
                close(d->pidfd);
        d->pidfd = -1;
        d->pid = 0;
        d->timeout_source = sd_event_source_disable_unref(d->timeout_source);
}

/* ---- control connection ---- */

static void ctl_call_free(DeviceCtlCall *call) {
        sd_event_source_disable_unref(call->timeout);
        g_free(call);
}

static void ctl_call_complete(DeviceCtlCall *call, JsonNode *result, const GError *error) {
        Device *d = call->device;

        g_queue_remove(&d->ctl_pending, call);
        device_ref(d);
        if (call->func)
                call->func(d, result, error, call->userdata);
        ctl_call_free(call);
        device_unref(d);
}

static int on_ctl_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        DeviceCtlCall *call = userdata;
        g_autoptr(GError) error = g_error_new(MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                                              "the worker of %s did not answer within %d s",
                                              call->device->name, (int) (DEVICE_CTL_TIMEOUT_USEC / G_USEC_PER_SEC));

        ctl_call_complete(call, NULL, error);
        return 0;
}

void device_ctl_close(Device *d, const char *why) {
        d->ctl_source = sd_event_source_disable_unref(d->ctl_source);
        if (d->ctl_fd >= 0)
                close(d->ctl_fd);
        d->ctl_fd = -1;
        ctl_reader_clear(&d->ctl_reader);
        ctl_reader_init(&d->ctl_reader);
        while (!g_queue_is_empty(&d->ctl_pending)) {
                DeviceCtlCall *call = g_queue_peek_head(&d->ctl_pending);
                g_autoptr(GError) error = g_error_new(MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                                                      "lost the connection to the worker of %s: %s", d->name, why);

                ctl_call_complete(call, NULL, error);
        }
}

/* A device that arrived by cold migration got its first client: it is at home here now. */
static void device_arrival_used(Device *d) {
        g_autoptr(GError) error = NULL;

        g_clear_pointer(&d->migrated_from, g_free);
        if (!device_save(d, &error))
                device_log(d, G_LOG_LEVEL_WARNING, "cannot save the definition: %s", error->message);
        device_emit_changed(d, "MigratedFrom", NULL);
}

/* The worker's "migration" member (worker_build_migration()), from an event, stats or info. */
static void client_mig_update(Device *d, JsonObject *o) {
        JsonObject *m;
        const char *state;
        __typeof__(d->client_mig) before;
        bool changed;

        if (!json_object_has_member(o, "migration") || !JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "migration")))
                return;
        m = json_object_get_object_member(o, "migration");
        state = json_object_get_string_member_with_default(m, "state", "running");
        before = d->client_mig;
        changed = g_strcmp0(state, d->client_mig.state) != 0;
        if (changed) {
                g_free(d->client_mig.state);
                d->client_mig.state = g_strdup(state);
        }
        d->client_mig.client = json_object_get_boolean_member_with_default(m, "client", FALSE);
        d->client_mig.saved = json_object_get_boolean_member_with_default(m, "saved", FALSE);
        d->client_mig.resumed = json_object_get_boolean_member_with_default(m, "resumed", FALSE);
        d->client_mig.failed = json_object_get_boolean_member_with_default(m, "failed", FALSE);
        d->client_mig.bytes_read = (uint64_t) MAX(json_object_get_int_member_with_default(m, "bytes_read", 0), 0);
        d->client_mig.bytes_written = (uint64_t) MAX(json_object_get_int_member_with_default(m, "bytes_written", 0), 0);
        changed = changed || before.client != d->client_mig.client ||
                  before.saved != d->client_mig.saved || before.resumed != d->client_mig.resumed ||
                  before.failed != d->client_mig.failed || before.bytes_read != d->client_mig.bytes_read ||
                  before.bytes_written != d->client_mig.bytes_written;
        if (changed)
                device_emit_changed(d, "ClientMigration", NULL);
        migrate_device_event(d);
}

static void ctl_handle_event(Device *d, JsonObject *o) {
        const char *event = json_object_get_string_member_with_default(o, "event", "");

        if (strcmp(event, "connected") == 0 || strcmp(event, "disconnected") == 0) {
                bool connected = strcmp(event, "connected") == 0;

                if (d->state == DEVICE_LISTENING || d->state == DEVICE_CONNECTED)
                        device_set_state(d, connected ? DEVICE_CONNECTED : DEVICE_LISTENING);
                device_stats_update(d);
                if (connected && d->migrated_from)
                        device_arrival_used(d);
        }
        client_mig_update(d, o);
}

static void ctl_handle(Device *d, JsonNode *msg) {
        JsonObject *o = json_node_get_object(msg);

        if (json_object_has_member(o, "id")) {
                int64_t id = json_object_get_int_member_with_default(o, "id", -1);

                for (GList *l = d->ctl_pending.head; l; l = l->next) {
                        DeviceCtlCall *call = l->data;
                        g_autoptr(GError) error = NULL;

                        if (call->id != id)
                                continue;
                        if (json_object_has_member(o, "error") &&
                            JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "error")))
                                error = error_from_reply(json_object_get_object_member(o, "error"));
                        ctl_call_complete(call, error ? NULL : json_object_get_member(o, "result"), error);
                        return;
                }
                return;
        }
        if (json_object_has_member(o, "event"))
                ctl_handle_event(d, o);
}

static int on_ctl_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Device *d = userdata;
        int r;

        device_ref(d);
        r = ctl_reader_fill(&d->ctl_reader, d->ctl_fd);
        while (r > 0 && d->ctl_fd >= 0) {
                JsonNode *msg = NULL;
                GArray *fds = NULL;
                int k = ctl_reader_next(&d->ctl_reader, &msg, &fds);

                if (k <= 0) {
                        r = k < 0 ? k : 1;
                        break;
                }
                ctl_fds_free(fds);
                ctl_handle(d, msg);
                json_node_unref(msg);
        }
        if (r <= 0 && r != -EAGAIN && d->ctl_fd >= 0)
                device_ctl_close(d, r == 0 ? "it closed the control connection" : g_strerror(-r));
        device_unref(d);
        return 0;
}

bool device_ctl_open(Device *d, int fd) {
        int r;

        (void) fcntl(fd, F_SETFL, O_NONBLOCK);
        d->ctl_fd = fd;
        r = sd_event_add_io(d->manager->event, &d->ctl_source, fd, EPOLLIN, on_ctl_io, d);
        if (r < 0) {
                d->ctl_fd = -1;
                return false;
        }
        return true;
}

void device_ctl_call(Device *d, const char *method, JsonNode *params,
                     const int *fds, const char *const *fd_names,
                     DeviceCtlFunc func, void *userdata) {
        g_autoptr(JsonNode) req = NULL;
        g_autoptr(GError) error = NULL;
        DeviceCtlCall *call;
        unsigned n = 0;
        int r;

        if (d->ctl_fd < 0) {
                if (params)
                        json_node_unref(params);
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_NOT_RUNNING,
                            "device %s has no running worker (it is %s): start it first",
                            d->name, device_state_to_string(d->state));
                if (func)
                        func(d, NULL, error, userdata);
                return;
        }
        while (fd_names && fd_names[n])
                n++;
        call = g_new0(DeviceCtlCall, 1);
        call->device = d;
        call->id = ++d->manager->next_ctl_id;
        call->func = func;
        call->userdata = userdata;
        req = ctl_request_new(call->id, method, params, fd_names);
        g_queue_push_tail(&d->ctl_pending, call);
        (void) sd_event_add_time_relative(d->manager->event, &call->timeout, CLOCK_MONOTONIC,
                                          DEVICE_CTL_TIMEOUT_USEC, 0, on_ctl_timeout, call);
        r = ctl_send(d->ctl_fd, req, fds, n);
        if (r < 0) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                            "cannot reach the worker of %s: %s", d->name, g_strerror(-r));
                ctl_call_complete(call, NULL, error);
        }
}

/* ---- statistics ---- */

static void stats_flatten(GHashTable *out, const char *prefix, JsonObject *o) {
        g_autoptr(GList) members = json_object_get_members(o);

        for (GList *l = members; l; l = l->next) {
                const char *k = l->data;
                JsonNode *n = json_object_get_member(o, k);
                g_autofree char *key = prefix ? g_strdup_printf("%s.%s", prefix, k) : g_strdup(k);

                if (JSON_NODE_HOLDS_OBJECT(n))
                        stats_flatten(out, key, json_node_get_object(n));
                else if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64 &&
                         json_node_get_int(n) >= 0) {
                        uint64_t *v = g_new(uint64_t, 1);

                        *v = (uint64_t) json_node_get_int(n);
                        g_hash_table_replace(out, g_steal_pointer(&key), v);
                }
        }
}

static bool stats_equal(GHashTable *a, GHashTable *b) {
        GHashTableIter it;
        gpointer k, v;

        if (g_hash_table_size(a) != g_hash_table_size(b))
                return false;
        g_hash_table_iter_init(&it, a);
        while (g_hash_table_iter_next(&it, &k, &v)) {
                uint64_t *w = g_hash_table_lookup(b, k);

                if (!w || *w != *(uint64_t *) v)
                        return false;
        }
        return true;
}

/* The device's "waiting" member: what its backend waits for (Waiting). */
static void waiting_update(Device *d, JsonObject *o) {
        JsonObject *dev = json_object_has_member(o, "device") &&
                          JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "device")) ?
                          json_object_get_object_member(o, "device") : NULL;
        const char *w = dev ? json_object_get_string_member_with_default(dev, "waiting", NULL) : NULL;

        if (w && !*w)
                w = NULL;
        if (g_strcmp0(w, d->waiting) == 0)
                return;
        if (w && !d->waiting)
                device_log(d, G_LOG_LEVEL_WARNING, "waiting: %s", w);
        else if (!w)
                device_log(d, G_LOG_LEVEL_MESSAGE, "the backend is back");
        g_free(d->waiting);
        d->waiting = g_strdup(w);
        device_emit_changed(d, "Waiting", NULL);
}

static void on_stats(Device *d, JsonNode *result, const GError *error, void *userdata) {
        g_autoptr(GHashTable) st = NULL;
        JsonObject *o;

        if (error || !result || !JSON_NODE_HOLDS_OBJECT(result))
                return;
        o = json_node_get_object(result);
        client_mig_update(d, o);
        waiting_update(d, o);
        st = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        if (json_object_has_member(o, "vfio_user") &&
            JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "vfio_user")))
                stats_flatten(st, "vfio_user", json_object_get_object_member(o, "vfio_user"));
        if (json_object_has_member(o, "device") &&
            JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "device")))
                stats_flatten(st, NULL, json_object_get_object_member(o, "device"));
        if (stats_equal(st, d->stats))
                return;
        g_hash_table_unref(d->stats);
        d->stats = g_steal_pointer(&st);
        device_emit_changed(d, "Statistics", NULL);
}

void device_stats_update(Device *d) {
        if (d->ctl_fd >= 0)
                device_ctl_call(d, "stats", NULL, NULL, NULL, on_stats, NULL);
}

static int on_stats_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Device *d = userdata;

        device_stats_update(d);
        (void) sd_event_source_set_time_relative(s, d->manager->config.stats_interval_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

void device_stats_timer_set(Device *d, bool on) {
        if (!on) {
                d->stats_timer = sd_event_source_disable_unref(d->stats_timer);
                return;
        }
        if (d->stats_timer)
                return;
        (void) sd_event_add_time_relative(d->manager->event, &d->stats_timer, CLOCK_MONOTONIC,
                                          d->manager->config.stats_interval_usec, 0, on_stats_timer, d);
}

/* ---- adoption ---- */

static void kill_and_wait(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };

        (void) pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
        (void) poll(&p, 1, 2000);
}

/*
 * A worker that no longer answers on its control socket but still runs
 * (found through its pid file, identified by its command line) would keep
 * the device's socket: end it before a new worker starts.
 */
static void kill_stale_worker(Device *d) {
        g_autofree char *text = NULL, *cmdline_path = NULL, *cmdline = NULL;
        gsize len = 0;
        long pid;
        int pidfd;
        bool ours = false;

        if (!g_file_get_contents(d->pid_path, &text, NULL, NULL))
                return;
        pid = strtol(text, NULL, 10);
        if (pid <= 1)
                return;
        pidfd = pidfd_open((pid_t) pid, 0);
        if (pidfd < 0)
                return;
        cmdline_path = g_strdup_printf("/proc/%ld/cmdline", pid);
        if (g_file_get_contents(cmdline_path, &cmdline, &len, NULL))
                for (gsize i = 0; i < len; i += strlen(cmdline + i) + 1)
                        if (strcmp(cmdline + i, d->control_path) == 0)
                                ours = true;
        if (ours) {
                device_log(d, G_LOG_LEVEL_WARNING, "worker %ld does not answer on %s: killing it", pid, d->control_path);
                kill_and_wait(pidfd);
        }
        close(pidfd);
}

bool device_adopt(Device *d) {
        g_autoptr(JsonNode) reply = NULL, req = NULL, sub = NULL;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        JsonObject *info;
        int fd, pidfd, r;

        fd = ctl_connect(d->control_path);
        if (fd < 0) {
                kill_stale_worker(d);
                return false;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0) {
                close(fd);
                return false;
        }
        pidfd = pidfd_open(cred.pid, 0);
        if (pidfd < 0) {
                close(fd);
                return false;
        }
        sub = ctl_request_new(++d->manager->next_ctl_id, "subscribe", NULL, NULL);
        r = ctl_call_sync(fd, &d->ctl_reader, sub, &reply, DEVICE_ADOPT_TIMEOUT_MS);
        if (r == 0) {
                g_clear_pointer(&reply, json_node_unref);
                req = ctl_request_new(++d->manager->next_ctl_id, "info", NULL, NULL);
                r = ctl_call_sync(fd, &d->ctl_reader, req, &reply, DEVICE_ADOPT_TIMEOUT_MS);
        }
        info = r == 0 ? json_object_get_object_member(json_node_get_object(reply), "result") : NULL;
        if (!info || g_strcmp0(json_object_get_string_member_with_default(info, "name", ""), d->name) != 0 ||
            json_object_get_int_member_with_default(info, "pid", 0) != cred.pid) {
                device_log(d, G_LOG_LEVEL_WARNING, "the worker %d on %s does not answer as this device (%s): replacing it", (int) cred.pid, d->control_path, r < 0 ? g_strerror(-r) : "wrong identity");
                kill_and_wait(pidfd);
                close(pidfd);
                close(fd);
                ctl_reader_clear(&d->ctl_reader);
                ctl_reader_init(&d->ctl_reader);
                return false;
        }
        if (!device_ctl_open(d, fd) || !device_watch_pidfd(d, cred.pid, pidfd, false)) {
                close(fd);
                close(pidfd);
                d->pidfd = -1;
                return false;
        }
        d->connected = json_object_get_boolean_member_with_default(info, "connected", FALSE);
        d->state = d->connected ? DEVICE_CONNECTED : DEVICE_LISTENING;
        client_mig_update(d, info);
        if (d->connected)
                device_stats_timer_set(d, true);
        device_log(d, G_LOG_LEVEL_MESSAGE, "adopted running worker %d (%s)", (int) cred.pid,
                  device_state_to_string(d->state));
        device_stats_update(d);
        return true;
}
