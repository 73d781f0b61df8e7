/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A device's definition and life cycle: start, stop, crash and automatic
 * restart.  The worker process and its control connection are in
 * device-worker.c, the bus face in device-dbus.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "device-type.h"
#include "device.h"
#include "image-lock.h"
#include "migrate.h"

static const char *const device_state_table[_DEVICE_STATE_MAX] = {
        [DEVICE_IDLE] = "idle",
        [DEVICE_STARTING] = "starting",
        [DEVICE_LISTENING] = "listening",
        [DEVICE_CONNECTED] = "connected",
        [DEVICE_STOPPING] = "stopping",
        [DEVICE_FAILED] = "failed",
};

const char *device_state_to_string(DeviceState s) {
        if (s < 0 || s >= _DEVICE_STATE_MAX)
                return NULL;
        return device_state_table[s];
}

DeviceState device_state_from_string(const char *s) {
        for (int i = 0; s && i < _DEVICE_STATE_MAX; i++)
                if (strcmp(device_state_table[i], s) == 0)
                        return (DeviceState) i;
        return _DEVICE_STATE_INVALID;
}

static void stats_value_free(gpointer p) {
        g_free(p);
}

Device *device_new(Manager *m, const DeviceType *dtype, const char *name, const char *vm,
                   JsonNode *options) {
        Device *d = g_new0(Device, 1);
        g_autofree char *sock = g_strdup_printf("%s.sock", name);
        g_autofree char *ctl = g_strdup_printf("%s.ctl", name);
        g_autofree char *pid = g_strdup_printf("%s.pid", name);
        g_autofree char *stopped = g_strdup_printf("%s.stopped", name);
        g_autofree char *def = g_strdup_printf("%s.json", name);

        d->n_ref = 1;
        d->manager = m;
        d->dtype = dtype;
        d->name = g_strdup(name);
        d->type = g_strdup(dtype->name);
        d->vm = g_strdup(vm ? vm : "");
        d->libvirt_status = g_strdup("");
        d->libvirt_error = g_strdup("");
        d->options = json_node_copy(options);
        d->object_path = device_bus_path(name);
        d->socket_path = g_build_filename(m->config.runtime_dir, sock, NULL);
        d->control_path = g_build_filename(m->workers_dir, ctl, NULL);
        d->pid_path = g_build_filename(m->workers_dir, pid, NULL);
        d->stopped_path = g_build_filename(m->workers_dir, stopped, NULL);
        d->definition_path = g_build_filename(m->devices_dir, def, NULL);
        d->state = DEVICE_IDLE;
        d->pidfd = -1;
        d->ready_fd = -1;
        d->ctl_fd = -1;
        d->start_waiters = g_array_new(FALSE, FALSE, sizeof(DeviceWaiter));
        d->stop_waiters = g_array_new(FALSE, FALSE, sizeof(DeviceWaiter));
        d->restart_times = g_array_new(FALSE, FALSE, sizeof(uint64_t));
        ctl_reader_init(&d->ctl_reader);
        g_queue_init(&d->ctl_pending);
        d->stats = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, stats_value_free);
        return d;
}

Device *device_ref(Device *d) {
        if (d)
                d->n_ref++;
        return d;
}

Device *device_unref(Device *d) {
        if (!d || --d->n_ref > 0)
                return NULL;
        device_detach_worker(d);
        device_images_forget(d);
        d->restart_timer = sd_event_source_disable_unref(d->restart_timer);
        g_array_free(d->start_waiters, TRUE);
        g_array_free(d->stop_waiters, TRUE);
        g_array_free(d->restart_times, TRUE);
        ctl_reader_clear(&d->ctl_reader);
        g_hash_table_unref(d->stats);
        g_clear_error(&d->start_error);
        json_node_unref(d->options);
        g_free(d->name);
        g_free(d->type);
        g_free(d->vm);
        g_free(d->object_path);
        g_free(d->socket_path);
        g_free(d->control_path);
        g_free(d->pid_path);
        g_free(d->stopped_path);
        g_free(d->definition_path);
        g_free(d->last_error);
        g_free(d->waiting);
        g_free(d->libvirt_status);
        g_free(d->libvirt_error);
        g_free(d->mig_socket);
        g_free(d->migrated_from);
        g_free(d->client_mig.state);
        g_free(d);
        return NULL;
}

JsonNode *device_definition(Device *d) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "name");
        json_builder_add_string_value(b, d->name);
        json_builder_set_member_name(b, "type");
        json_builder_add_string_value(b, d->type);
        json_builder_set_member_name(b, "vm");
        json_builder_add_string_value(b, d->vm);
        json_builder_set_member_name(b, "options");
        json_builder_add_value(b, json_node_copy(d->options));
        if (d->migrated_from) {
                json_builder_set_member_name(b, "migrated_from");
                json_builder_add_string_value(b, d->migrated_from);
        }
        json_builder_end_object(b);
        return json_builder_get_root(b);
}

gboolean device_save(Device *d, GError **error) {
        g_autoptr(JsonNode) def = device_definition(d);
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autofree char *data = NULL;
        gsize len;
        g_autofree char *text = NULL;
        int r;

        json_generator_set_root(gen, def);
        json_generator_set_pretty(gen, TRUE);
        json_generator_set_indent(gen, 2);
        data = json_generator_to_data(gen, &len);
        text = g_strconcat(data, "\n", NULL);
        r = util_write_file_atomic(d->definition_path, text, strlen(text), 0600);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "cannot write %s: %s (check that the state directory is writable)",
                            d->definition_path, g_strerror(-r));
                return FALSE;
        }
        return TRUE;
}

Device *device_load(Manager *m, const char *path, GError **error) {
        Device *d;
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) local = NULL;
        g_autofree char *base = g_path_get_basename(path);
        JsonNode *root, *options;
        JsonObject *o;
        const char *name, *type, *vm;
        const DeviceType *dtype;

        if (!json_parser_load_from_file(parser, path, &local)) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s: %s", path, local->message);
                return NULL;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s: not a JSON object", path);
                return NULL;
        }
        o = json_node_get_object(root);
        name = json_object_get_string_member_with_default(o, "name", NULL);
        type = json_object_get_string_member_with_default(o, "type", NULL);
        vm = json_object_get_string_member_with_default(o, "vm", "");
        options = json_object_get_member(o, "options");
        if (!util_name_is_valid(name) || !g_str_has_suffix(base, ".json") ||
            strlen(base) != strlen(name) + 5 || strncmp(base, name, strlen(name)) != 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "%s: \"name\" is missing, invalid or does not match the file name", path);
                return NULL;
        }
        dtype = device_type_find(type);
        if (!dtype) {
                g_autofree char *known = device_type_list();

                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "%s: unknown device type '%s' (this vfud knows %s)", path, type ? type : "", known);
                return NULL;
        }
        if (!options || !JSON_NODE_HOLDS_OBJECT(options)) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s: \"options\" is not an object", path);
                return NULL;
        }
        d = device_new(m, dtype, name, vm, options);
        if (*json_object_get_string_member_with_default(o, "migrated_from", ""))
                d->migrated_from = g_strdup(json_object_get_string_member(o, "migrated_from"));
        return d;
}

void device_log(Device *d, GLogLevelFlags level, const char *fmt, ...) {
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_log_structured(G_LOG_DOMAIN, level,
                         "VFU_DEVICE", d->name,
                         "VFU_DEVICE_TYPE", d->type,
                         "MESSAGE", "%s: %s", d->name, msg);
}

void device_set_state(Device *d, DeviceState s) {
        bool connected = s == DEVICE_CONNECTED;

        if (d->state == s)
                return;
        device_log(d, G_LOG_LEVEL_MESSAGE, "%s -> %s", device_state_to_string(d->state), device_state_to_string(s));
        d->state = s;
        /* Stopped: the worker's copies of the images went with it, ours go too (and the locks). */
        if (s == DEVICE_IDLE)
                device_images_release(d);
        if (connected != d->connected) {
                d->connected = connected;
                device_stats_timer_set(d, connected);
                device_emit_changed(d, "State", "Connected", "WorkerPID", NULL);
        } else
                device_emit_changed(d, "State", "WorkerPID", NULL);
}

void device_set_last_error(Device *d, const char *msg) {
        if (g_strcmp0(d->last_error, msg) == 0)
                return;
        g_free(d->last_error);
        d->last_error = g_strdup(msg);
        device_emit_changed(d, "LastError", NULL);
}

static void waiters_run(Device *d, GArray *waiters, const GError *error) {
        g_autoptr(GArray) copy = NULL;

        if (waiters->len == 0)
                return;
        copy = g_array_copy(waiters);
        g_array_set_size(waiters, 0);
        device_ref(d);
        for (guint i = 0; i < copy->len; i++) {
                DeviceWaiter *w = &g_array_index(copy, DeviceWaiter, i);

                w->func(d, error, w->userdata);
        }
        device_unref(d);
}

static void waiter_add(GArray *waiters, DeviceDoneFunc func, void *userdata) {
        DeviceWaiter w = { .func = func, .userdata = userdata };

        if (func)
                g_array_append_val(waiters, w);
}

void device_set_stopped_marker(Device *d, bool stopped) {
        if (stopped) {
                int fd = open(d->stopped_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

                if (fd >= 0)
                        close(fd);
        } else
                (void) unlink(d->stopped_path);
}

void device_start_completed(Device *d, const GError *error) {
        device_ref(d);          /* a waiter may drop the device */
        d->timeout_source = sd_event_source_disable_unref(d->timeout_source);
        if (error) {
                device_log(d, G_LOG_LEVEL_WARNING, "start failed: %s", error->message);
                device_set_last_error(d, error->message);
                device_images_release(d);
                device_set_state(d, DEVICE_FAILED);
        } else
                device_set_state(d, d->connected ? DEVICE_CONNECTED : DEVICE_LISTENING);
        waiters_run(d, d->start_waiters, error);
        if (d->initial) {
                d->initial = false;
                manager_initial_done(d->manager);
        }
        device_unref(d);
}

void device_start(Device *d, DeviceDoneFunc func, void *userdata) {
        g_autoptr(GError) error = NULL;

        switch (d->state) {
        case DEVICE_LISTENING:
        case DEVICE_CONNECTED:
                device_set_stopped_marker(d, false);
                if (func)
                        func(d, NULL, userdata);
                return;
        case DEVICE_STARTING:
                waiter_add(d->start_waiters, func, userdata);
                return;
        case DEVICE_STOPPING:
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY,
                            "device %s is stopping: start it again once it is idle", d->name);
                if (func)
                        func(d, error, userdata);
                return;
        case DEVICE_IDLE:
        case DEVICE_FAILED:
        default:
                break;
        }
        d->restart_timer = sd_event_source_disable_unref(d->restart_timer);
        device_set_stopped_marker(d, false);
        waiter_add(d->start_waiters, func, userdata);
        g_clear_error(&d->start_error);
        device_set_state(d, DEVICE_STARTING);
        device_worker_spawn(d);
}

static int on_stop_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Device *d = userdata;

        device_log(d, G_LOG_LEVEL_WARNING, "worker did not exit within %" G_GUINT64_FORMAT " s, killing it",
                   d->manager->config.stop_timeout_usec / G_USEC_PER_SEC);
        d->timeout_source = sd_event_source_disable_unref(d->timeout_source);
        device_worker_kill(d, SIGKILL);
        return 0;
}

static void on_shutdown_reply(Device *d, JsonNode *result, const GError *error, void *userdata) {
        /* The worker exits after replying; a lost reply means it is gone or going. */
        if (error && d->state == DEVICE_STOPPING)
                device_worker_kill(d, SIGTERM);
}

static void device_stop_internal(Device *d, bool handed_over, DeviceDoneFunc func, void *userdata) {
        g_autoptr(GError) error = NULL;

        switch (d->state) {
        case DEVICE_IDLE:
                device_set_stopped_marker(d, true);
                if (func)
                        func(d, NULL, userdata);
                return;
        case DEVICE_FAILED:
                d->restart_timer = sd_event_source_disable_unref(d->restart_timer);
                device_set_stopped_marker(d, true);
                device_set_state(d, DEVICE_IDLE);
                if (func)
                        func(d, NULL, userdata);
                return;
        case DEVICE_CONNECTED:
                if (handed_over)
                        break;
                if (*d->vm)
                        g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY,
                                    "device %s is connected to a client (VM %s): shut the VM down or detach the device first",
                                    d->name, d->vm);
                else
                        g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY,
                                    "device %s is connected to a client: disconnect it (stop the VM) first", d->name);
                if (func)
                        func(d, error, userdata);
                return;
        case DEVICE_STARTING:
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY,
                            "device %s is starting: stop it once it is listening", d->name);
                if (func)
                        func(d, error, userdata);
                return;
        case DEVICE_STOPPING:
                waiter_add(d->stop_waiters, func, userdata);
                return;
        case DEVICE_LISTENING:
        default:
                break;
        }
        device_set_stopped_marker(d, true);
        waiter_add(d->stop_waiters, func, userdata);
        device_set_state(d, DEVICE_STOPPING);
        (void) sd_event_add_time_relative(d->manager->event, &d->timeout_source, CLOCK_MONOTONIC,
                                          d->manager->config.stop_timeout_usec, 0, on_stop_timeout, d);
        if (d->ctl_fd >= 0)
                device_ctl_call(d, "shutdown", NULL, NULL, NULL, on_shutdown_reply, NULL);
        else
                device_worker_kill(d, SIGTERM);
}

void device_stop(Device *d, DeviceDoneFunc func, void *userdata) {
        device_stop_internal(d, false, func, userdata);
}

void device_stop_handed_over(Device *d, DeviceDoneFunc func, void *userdata) {
        device_stop_internal(d, true, func, userdata);
}

static void device_crashed(Device *d, const char *how);

static void on_restart_done(Device *d, const GError *error, void *userdata) {
        if (!error)
                return;
        device_log(d, G_LOG_LEVEL_WARNING, "automatic restart failed: %s", error->message);
        /* A worker that died on its way up counts as another crash; a setup error it reported does not heal by retrying. */
        if (g_error_matches(error, MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED) && d->state == DEVICE_FAILED)
                device_crashed(d, "died while restarting");
}

static int on_restart_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Device *d = userdata;

        d->restart_timer = sd_event_source_disable_unref(d->restart_timer);
        if (d->state != DEVICE_FAILED)
                return 0;
        d->restarts++;
        device_emit_changed(d, "Restarts", NULL);
        device_log(d, G_LOG_LEVEL_MESSAGE, "restarting the worker (restart %u)", d->restarts);
        device_start(d, on_restart_done, NULL);
        return 0;
}

/* A worker that was serving died: failed, and restarted unless it keeps dying. */
static void device_crashed(Device *d, const char *how) {
        const ManagerConfig *c = &d->manager->config;
        uint64_t now = 0, delay;
        g_autofree char *msg = NULL;
        guint recent;

        (void) sd_event_now(d->manager->event, CLOCK_MONOTONIC, &now);
        while (d->restart_times->len > 0 &&
               g_array_index(d->restart_times, uint64_t, 0) + c->restart_interval_usec < now)
                g_array_remove_index(d->restart_times, 0);
        recent = d->restart_times->len;

        if (recent >= c->restart_burst) {
                msg = g_strdup_printf("worker %s; gave up after %u restarts within %" G_GUINT64_FORMAT
                                      " s: find the cause in the journal, then run 'vfuctl start %s'",
                                      how, recent, c->restart_interval_usec / G_USEC_PER_SEC, d->name);
                device_log(d, G_LOG_LEVEL_WARNING, "%s", msg);
                device_set_last_error(d, msg);
                device_images_release(d);
                device_set_state(d, DEVICE_FAILED);
                return;
        }
        msg = g_strdup_printf("worker %s", how);
        device_log(d, G_LOG_LEVEL_WARNING, "%s", msg);
        device_set_last_error(d, msg);
        device_set_state(d, DEVICE_FAILED);
        g_array_append_val(d->restart_times, now);
        delay = c->restart_delay_usec << MIN(recent, 5u);
        (void) sd_event_add_time_relative(d->manager->event, &d->restart_timer, CLOCK_MONOTONIC,
                                          delay, 0, on_restart_timer, d);
}

void device_worker_exited(Device *d, const char *how, bool clean) {
        g_autoptr(GError) error = NULL;

        device_ref(d);
        d->timeout_source = sd_event_source_disable_unref(d->timeout_source);
        device_detach_worker(d);
        device_cleanup_runtime_files(d);
        if (d->connected) {
                d->connected = false;
                device_stats_timer_set(d, false);
                device_emit_changed(d, "Connected", NULL);
        }
        if (d->client_mig.state || d->client_mig.client) {
                g_clear_pointer(&d->client_mig.state, g_free);
                memset(&d->client_mig, 0, sizeof(d->client_mig));
                device_emit_changed(d, "ClientMigration", NULL);
                migrate_device_event(d);
        }

        switch (d->state) {
        case DEVICE_STOPPING:
                device_log(d, G_LOG_LEVEL_MESSAGE, "worker %s", how);
                device_set_state(d, DEVICE_IDLE);
                waiters_run(d, d->stop_waiters, NULL);
                break;
        case DEVICE_STARTING:
                if (d->start_error)
                        error = g_error_copy(d->start_error);
                else
                        g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                                    "the worker of %s %s before it listened: see 'journalctl -u vfud' for its messages",
                                    d->name, how);
                g_clear_error(&d->start_error);
                device_start_completed(d, error);
                break;
        case DEVICE_LISTENING:
        case DEVICE_CONNECTED:
                device_crashed(d, how);
                break;
        default:
                break;
        }
        device_unref(d);
}

void device_cleanup_runtime_files(Device *d) {
        (void) unlink(d->socket_path);
        (void) unlink(d->control_path);
        (void) unlink(d->pid_path);
}

void device_remove_files(Device *d) {
        device_cleanup_runtime_files(d);
        (void) unlink(d->stopped_path);
        if (d->dtype->unprovision)
                d->dtype->unprovision(d);
        if (unlink(d->definition_path) < 0 && errno != ENOENT)
                device_log(d, G_LOG_LEVEL_WARNING, "cannot remove %s: %s", d->definition_path, g_strerror(errno));
}
