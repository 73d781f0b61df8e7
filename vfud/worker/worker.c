/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker core: one device, its vfio-user server on the worker's sd-event
 * loop, and the fds the manager handed over.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/tap.h"
#include "common/util.h"
#include "vfio-user/migration.h"
#include "worker-internal.h"

G_DEFINE_QUARK(vfud-worker-error-quark, worker_error)

const char *worker_error_code_to_string(const GError *error) {
        static const char *const codes[] = {
                [WORKER_ERROR_INVALID] = "invalid",
                [WORKER_ERROR_BACKEND] = "backend",
                [WORKER_ERROR_UNSUPPORTED] = "unsupported",
                [WORKER_ERROR_FAILED] = "failed",
        };

        if (error && error->domain == WORKER_ERROR && error->code >= 0 &&
            (size_t) error->code < G_N_ELEMENTS(codes))
                return codes[error->code];
        return "failed";
}

static void fd_value_close(gpointer p) {
        int fd = GPOINTER_TO_INT(p) - 1;

        if (fd >= 0)
                close(fd);
}

Worker *worker_new(const WorkerOptions *opts, GError **error) {
        g_autoptr(Worker) w = g_new0(Worker, 1);
        int r;

        w->mig.state = VU_MIG_RUNNING;  /* a device starts running (vu_server_mig_info()) */
        r = sd_event_default(&w->event);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot create the event loop: %s", g_strerror(-r));
                return NULL;
        }
        w->opts.definition_path = g_strdup(opts->definition_path);
        w->opts.socket_path = g_strdup(opts->socket_path);
        w->opts.control_path = g_strdup(opts->control_path);
        w->opts.pid_file = g_strdup(opts->pid_file);
        w->opts.user = g_strdup(opts->user);
        w->opts.socket_group = g_strdup(opts->socket_group);
        w->opts.socket_mode = opts->socket_mode;
        w->opts.seccomp = opts->seccomp;
        w->server_source_fd = -1;
        w->fds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, fd_value_close);
        return g_steal_pointer(&w);
}

void worker_free(Worker *w) {
        if (!w)
                return;
        worker_control_free(w->control);
        w->server_source = sd_event_source_disable_unref(w->server_source);
        if (w->server) {
                vu_server_disconnect(w->server);
                vu_server_free(w->server);
        }
        if (w->have_state && w->type->destroy)
                w->type->destroy(w->state);
        g_hash_table_unref(w->fds);
        if (w->definition)
                json_node_unref(w->definition);
        g_free(w->name);
        g_free(w->type_name);
        g_free(w->vm);
        g_free(w->opts.definition_path);
        g_free(w->opts.socket_path);
        g_free(w->opts.control_path);
        g_free(w->opts.pid_file);
        g_free(w->opts.user);
        g_free(w->opts.socket_group);
        sd_event_unref(w->event);
        g_free(w);
}

void worker_add_fd(Worker *w, const char *name, int fd) {
        g_hash_table_replace(w->fds, g_strdup(name), GINT_TO_POINTER(fd + 1));
}

int worker_take_fd(Worker *w, const char *name) {
        gpointer key, value;

        if (!g_hash_table_steal_extended(w->fds, name, &key, &value))
                return -1;
        g_free(key);
        return GPOINTER_TO_INT(value) - 1;
}

void worker_allow_inet(Worker *w) {
        w->inet = true;
}

const char *worker_device_name(const Worker *w) {
        return w->name;
}

sd_event *worker_event(Worker *w) {
        return w->event;
}

VuServer *worker_server(Worker *w) {
        return w->server;
}

int worker_open_backing(Worker *w, const char *name, const char *path, int flags, GError **error) {
        int fd = worker_take_fd(w, name);

        if (fd >= 0)
                return fd;
        if (!path || !*path) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                            "no backing file for '%s': give a path in the definition or pass an fd named '%s'",
                            name, name);
                return -1;
        }
        fd = open(path, flags | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;

                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                            "cannot open backing file %s for %s: %s", path, name, g_strerror(e));
                return -1;
        }
        return fd;
}

int worker_open_tap(Worker *w, const char *ifname, unsigned q, unsigned n_queues, GError **error) {
        g_autofree char *name = g_strdup_printf("tap%u", q);
        g_autoptr(GError) local = NULL;
        int fd = worker_take_fd(w, name);

        if (fd >= 0)
                return fd;
        fd = tap_open(ifname, n_queues > 1, &local);
        if (fd < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND, "%s", local->message);
                return -1;
        }
        return fd;
}

void worker_log(Worker *w, GLogLevelFlags level, const char *fmt, ...) {
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_log_structured(G_LOG_DOMAIN, level,
                         "VFU_DEVICE", w->name ? w->name : "",
                         "VFU_DEVICE_TYPE", w->type_name ? w->type_name : "",
                         "MESSAGE", "%s: %s", w->name ? w->name : "worker", msg);
}

static uint64_t now_realtime(void) {
        return (uint64_t) g_get_real_time();
}

static int on_server_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);

/* Report the client's migration steps (the manager orchestrates hand-overs from them). */
static void worker_check_migration(Worker *w) {
        VuMigInfo now;

        vu_server_mig_info(w->server, &now);
        if (now.state == w->mig.state && now.client_uses == w->mig.client_uses && now.saved == w->mig.saved &&
            now.resumed == w->mig.resumed && now.failed == w->mig.failed) {
                w->mig = now;
                return;
        }
        if (now.state != w->mig.state)
                worker_log(w, G_LOG_LEVEL_MESSAGE, "migration state %s -> %s", vu_mig_state_to_string(w->mig.state),
                           vu_mig_state_to_string(now.state));
        w->mig = now;
        worker_control_broadcast(w, "migration");
}

/* Watch whatever the server wants polled now; report connection changes. */
static int worker_server_rearm(Worker *w) {
        int fd = vu_server_fd(w->server);
        bool connected = vu_server_connected(w->server);
        int r;

        /* (a quick client may come and go within one dispatch: what it did is still reported) */
        if (connected == w->connected)
                worker_check_migration(w);
        if (connected != w->connected) {
                w->connected = connected;
                w->connected_since = connected ? now_realtime() : 0;
                vu_server_mig_info(w->server, &w->mig);
                worker_log(w, G_LOG_LEVEL_MESSAGE, "client %s", connected ? "connected" : "disconnected");
                worker_control_broadcast(w, connected ? "connected" : "disconnected");
                /* A new fd number may equal the one just closed: always re-register. */
                w->server_source = sd_event_source_disable_unref(w->server_source);
        }
        if (w->server_source && fd == w->server_source_fd)
                return 0;
        w->server_source = sd_event_source_disable_unref(w->server_source);
        w->server_source_fd = -1;
        if (fd < 0)
                return 0;
        r = sd_event_add_io(w->event, &w->server_source, fd, EPOLLIN, on_server_io, w);
        if (r < 0)
                return r;
        w->server_source_fd = fd;
        (void) sd_event_source_set_description(w->server_source, "vfio-user");
        return 0;
}

static int on_server_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Worker *w = userdata;
        int r;

        r = vu_server_dispatch(w->server);
        if (r < 0 && r != -ENOTCONN)
                worker_log(w, G_LOG_LEVEL_WARNING, "vfio-user server: %s", g_strerror(-r));
        r = worker_server_rearm(w);
        if (r < 0) {
                worker_log(w, G_LOG_LEVEL_WARNING, "cannot watch the vfio-user socket: %s", g_strerror(-r));
                return sd_event_exit(w->event, 1);
        }
        return 0;
}

static gboolean worker_load_definition(Worker *w, GError **error) {
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) local = NULL;
        JsonNode *root;
        JsonObject *o;
        const char *name, *type, *vm;

        if (!json_parser_load_from_file(parser, w->opts.definition_path, &local)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "cannot read device definition %s: %s", w->opts.definition_path, local->message);
                return FALSE;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "device definition %s is not a JSON object", w->opts.definition_path);
                return FALSE;
        }
        o = json_node_get_object(root);
        name = json_object_get_string_member_with_default(o, "name", NULL);
        type = json_object_get_string_member_with_default(o, "type", NULL);
        vm = json_object_get_string_member_with_default(o, "vm", "");
        if (!name || !util_name_is_valid(name)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "device definition %s: missing or invalid \"name\"", w->opts.definition_path);
                return FALSE;
        }
        if (!type) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "device definition %s: missing \"type\"", w->opts.definition_path);
                return FALSE;
        }
        if (json_object_has_member(o, "options") &&
            !JSON_NODE_HOLDS_OBJECT(json_object_get_member(o, "options"))) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "device definition %s: \"options\" must be an object", w->opts.definition_path);
                return FALSE;
        }
        w->definition = json_node_copy(root);
        w->name = g_strdup(name);
        w->type_name = g_strdup(type);
        w->vm = g_strdup(vm);
        return TRUE;
}

static gboolean worker_socket_permissions(Worker *w, GError **error) {
        const char *path = w->opts.socket_path;
        gid_t gid = (gid_t) -1;

        if (w->opts.socket_group && *w->opts.socket_group) {
                struct group *g = getgrnam(w->opts.socket_group);

                if (!g) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "socket group '%s' does not exist: create it or change SocketGroup= in vfud.conf",
                                    w->opts.socket_group);
                        return FALSE;
                }
                gid = g->gr_gid;
        }
        if (gid != (gid_t) -1 && chown(path, (uid_t) -1, gid) < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot give socket %s to group %s: %s", path, w->opts.socket_group, g_strerror(errno));
                return FALSE;
        }
        if (chmod(path, w->opts.socket_mode) < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot set mode %04o on socket %s: %s", (unsigned) w->opts.socket_mode, path, g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

gboolean worker_setup(Worker *w, GError **error) {
        VuServerConfig scfg = { 0 };
        g_autoptr(JsonNode) empty = NULL;
        JsonObject *options;
        int r;

        if (!worker_load_definition(w, error))
                return FALSE;
        w->type = worker_type_find(w->type_name);
        if (!w->type) {
                g_autoptr(GString) known = g_string_new(NULL);

                for (size_t i = 0; worker_types[i]; i++)
                        g_string_append_printf(known, "%s%s", i ? ", " : "", worker_types[i]->type);
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "unknown device type '%s' (this vfud-worker supports: %s)",
                            w->type_name, known->len ? known->str : "none");
                return FALSE;
        }

        options = json_object_get_object_member(json_node_get_object(w->definition), "options");
        if (!options) {
                empty = json_node_new(JSON_NODE_OBJECT);
                json_node_take_object(empty, json_object_new());
                options = json_node_get_object(empty);
        }
        if (!w->type->create(w, options, &scfg, &w->state, error))
                return FALSE;
        w->have_state = true;
        if (!scfg.name)
                scfg.name = w->name;

        r = vu_server_new(&scfg, &w->server);
        if (r < 0) {
                vu_pci_cfg_free(scfg.cfg);      /* still ours when the server was not created */
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot create the vfio-user server for %s: %s", w->name, g_strerror(-r));
                return FALSE;
        }
        if (w->type->start)
                w->type->start(w->state, w->server);

        r = vu_server_listen(w->server, w->opts.socket_path);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot listen on %s: %s", w->opts.socket_path, g_strerror(-r));
                return FALSE;
        }
        w->listening = true;
        if (!worker_socket_permissions(w, error))
                return FALSE;
        r = worker_server_rearm(w);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot watch %s: %s", w->opts.socket_path, g_strerror(-r));
                return FALSE;
        }
        if (w->opts.control_path && !worker_control_start(w, w->opts.control_path, error))
                return FALSE;
        w->started = now_realtime();
        return TRUE;
}

void worker_cleanup_files(Worker *w) {
        if (w->listening && w->opts.socket_path)
                (void) unlink(w->opts.socket_path);
        if (w->control && w->opts.control_path)
                (void) unlink(w->opts.control_path);
        if (w->opts.pid_file)
                (void) unlink(w->opts.pid_file);
}

void worker_stats_latency(JsonBuilder *b, const LatStatsSnapshot *s) {
        json_builder_set_member_name(b, "latency_ns");
        json_builder_begin_object(b);
        for (unsigned o = 0; o < _LAT_OP_MAX; o++) {
                const LatHistSnapshot *h = &s->op[o];
                uint64_t cum = 0;

                json_builder_set_member_name(b, lat_op_to_string(o));
                json_builder_begin_object(b);
                for (unsigned i = 0; i < LAT_HIST_BOUNDS; i++) {
                        char key[32];

                        cum += h->bucket[i];
                        g_snprintf(key, sizeof(key), "le_%" G_GUINT64_FORMAT, lat_hist_bounds_ns[i]);
                        json_builder_set_member_name(b, key);
                        json_builder_add_int_value(b, (int64_t) cum);
                }
                json_builder_set_member_name(b, "count");
                json_builder_add_int_value(b, (int64_t) h->count);
                json_builder_set_member_name(b, "sum");
                json_builder_add_int_value(b, (int64_t) h->sum_ns);
                json_builder_end_object(b);
        }
        json_builder_end_object(b);
}

void worker_build_stats(Worker *w, JsonBuilder *b) {
        VuServerStats st = { 0 };

        if (w->server)
                vu_server_get_stats(w->server, &st);
        json_builder_set_member_name(b, "connected");
        json_builder_add_boolean_value(b, w->connected);
        worker_build_migration(w, b);
        json_builder_set_member_name(b, "vfio_user");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "messages");
        json_builder_add_int_value(b, (int64_t) st.messages);
        json_builder_set_member_name(b, "errors");
        json_builder_add_int_value(b, (int64_t) st.errors);
        json_builder_set_member_name(b, "irqs");
        json_builder_add_int_value(b, (int64_t) st.irqs);
        json_builder_set_member_name(b, "connects");
        json_builder_add_int_value(b, (int64_t) st.connects);
        json_builder_end_object(b);
        json_builder_set_member_name(b, "device");
        json_builder_begin_object(b);
        if (w->have_state && w->type->stats)
                w->type->stats(w->state, b);
        json_builder_end_object(b);
}

void worker_build_migration(Worker *w, JsonBuilder *b) {
        VuMigInfo mi = { .state = VU_MIG_RUNNING };

        if (w->server)
                vu_server_mig_info(w->server, &mi);
        json_builder_set_member_name(b, "migration");
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "state");
        json_builder_add_string_value(b, vu_mig_state_to_string(mi.state));
        json_builder_set_member_name(b, "client");
        json_builder_add_boolean_value(b, mi.client_uses);
        json_builder_set_member_name(b, "saved");
        json_builder_add_boolean_value(b, mi.saved);
        json_builder_set_member_name(b, "resumed");
        json_builder_add_boolean_value(b, mi.resumed);
        json_builder_set_member_name(b, "failed");
        json_builder_add_boolean_value(b, mi.failed);
        json_builder_set_member_name(b, "bytes_read");
        json_builder_add_int_value(b, (int64_t) mi.bytes_read);
        json_builder_set_member_name(b, "bytes_written");
        json_builder_add_int_value(b, (int64_t) mi.bytes_written);
        json_builder_end_object(b);
}

void worker_build_info(Worker *w, JsonBuilder *b) {
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, w->name);
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, w->type_name);
        json_builder_set_member_name(b, "vm");
        json_builder_add_string_value(b, w->vm);
        json_builder_set_member_name(b, "pid");
        json_builder_add_int_value(b, getpid());
        json_builder_set_member_name(b, "socket");
        json_builder_add_string_value(b, w->opts.socket_path);
        json_builder_set_member_name(b, "connected");
        json_builder_add_boolean_value(b, w->connected);
        json_builder_set_member_name(b, "started_usec");
        json_builder_add_int_value(b, (int64_t) w->started);
        json_builder_set_member_name(b, "connected_since_usec");
        json_builder_add_int_value(b, (int64_t) w->connected_since);
        worker_build_migration(w, b);
        json_builder_set_member_name(b, "definition");
        json_builder_add_value(b, json_node_copy(w->definition));
}

gboolean worker_device_control(Worker *w, const char *method, JsonObject *params,
                               JsonArray *fd_names, GArray *fds, JsonNode **result, GError **error) {
        g_autoptr(JsonNode) empty = NULL;
        guint n = fd_names ? json_array_get_length(fd_names) : 0;
        gboolean ok;

        if (!w->type->control) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_UNSUPPORTED,
                            "%s devices have no control method '%s'", w->type_name, method);
                return FALSE;
        }
        for (guint i = 0; i < n && i < fds->len; i++) {
                const char *fd_name = json_array_get_string_element(fd_names, i);

                if (!fd_name) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID, "fd names must be strings");
                        return FALSE;
                }
        }
        for (guint i = 0; i < n && i < fds->len; i++) {
                worker_add_fd(w, json_array_get_string_element(fd_names, i), g_array_index(fds, int, i));
                g_array_index(fds, int, i) = -1;
        }
        if (!params) {
                empty = json_node_new(JSON_NODE_OBJECT);
                json_node_take_object(empty, json_object_new());
                params = json_node_get_object(empty);
        }
        ok = w->type->control(w->state, method, params, result, error);
        /* fds the method did not take are closed now. */
        for (guint i = 0; i < n; i++)
                g_hash_table_remove(w->fds, json_array_get_string_element(fd_names, i));
        return ok;
}
