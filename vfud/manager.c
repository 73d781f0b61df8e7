/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The manager: directories, the single-instance lock, the bus, the device
 * table and the restore of persisted devices at start.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "device-spawn.h"
#include "common/bus-names.h"
#include "manager-libvirt.h"
#include "migrate.h"
#include "common/util.h"
#include "device-type.h"
#include "device.h"
#include "manager.h"

G_DEFINE_QUARK(vfud-manager-error-quark, manager_error)

static const char *const manager_error_names[_MANAGER_ERROR_MAX] = {
        [MANAGER_ERROR_NO_SUCH_DEVICE] = VFUD_DBUS_ERROR_NO_SUCH_DEVICE,
        [MANAGER_ERROR_DEVICE_EXISTS] = VFUD_DBUS_ERROR_DEVICE_EXISTS,
        [MANAGER_ERROR_INVALID_ARGUMENT] = VFUD_DBUS_ERROR_INVALID_ARGUMENT,
        [MANAGER_ERROR_BACKEND_FAILED] = VFUD_DBUS_ERROR_BACKEND_FAILED,
        [MANAGER_ERROR_DEVICE_BUSY] = VFUD_DBUS_ERROR_DEVICE_BUSY,
        [MANAGER_ERROR_NOT_SUPPORTED] = VFUD_DBUS_ERROR_NOT_SUPPORTED,
        [MANAGER_ERROR_WORKER_FAILED] = VFUD_DBUS_ERROR_WORKER_FAILED,
        [MANAGER_ERROR_NOT_RUNNING] = VFUD_DBUS_ERROR_NOT_RUNNING,
        [MANAGER_ERROR_ACCESS_DENIED] = VFUD_DBUS_ERROR_ACCESS_DENIED,
        [MANAGER_ERROR_FAILED] = SD_BUS_ERROR_FAILED,
        [MANAGER_ERROR_LIBVIRT_UNAVAILABLE] = VFUD_DBUS_ERROR_LIBVIRT_UNAVAILABLE,
        [MANAGER_ERROR_NO_SUCH_VM] = VFUD_DBUS_ERROR_NO_SUCH_VM,
        [MANAGER_ERROR_NOT_MIGRATABLE] = VFUD_DBUS_ERROR_NOT_MIGRATABLE,
};

const char *manager_error_to_dbus_name(const GError *error) {
        if (error->domain == MANAGER_ERROR && error->code >= 0 && error->code < _MANAGER_ERROR_MAX)
                return manager_error_names[error->code];
        return SD_BUS_ERROR_FAILED;
}

void manager_error_from_bus(GError **error, const sd_bus_error *e, int r, const char *fmt, ...) {
        ManagerErrorCode code = MANAGER_ERROR_FAILED;
        g_autofree char *what = NULL;
        va_list ap;

        for (int i = 0; e && e->name && i < _MANAGER_ERROR_MAX; i++)
                if (g_strcmp0(manager_error_names[i], e->name) == 0 && i != MANAGER_ERROR_FAILED)
                        code = i;
        va_start(ap, fmt);
        what = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, MANAGER_ERROR, code, "%s: %s", what,
                    e && e->message ? e->message : g_strerror(r < 0 ? -r : EIO));
}

int manager_reply_error(sd_bus_message *msg, const GError *error) {
        return sd_bus_reply_method_errorf(msg, manager_error_to_dbus_name(error), "%s", error->message);
}

int manager_set_bus_error(sd_bus_error *ret, const GError *error) {
        return sd_bus_error_setf(ret, manager_error_to_dbus_name(error), "%s", error->message);
}

/*
 * path exists as a directory with at most mode's permissions; tighten: also
 * an existing one (an older unit made devices/, images/ and workers/ 0755).
 */
static gboolean ensure_dir(const char *path, mode_t mode, bool tighten, GError **error) {
        struct stat st;

        if (g_mkdir_with_parents(path, (int) mode) < 0 || stat(path, &st) < 0) {
                int e = errno;

                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "cannot create directory %s: %s", path, g_strerror(e));
                return FALSE;
        }
        if (tighten && (st.st_mode & 07777 & ~mode)) {
                if (chmod(path, st.st_mode & 07777 & mode) < 0) {
                        int e = errno;

                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "cannot restrict directory %s to mode %04o: %s", path, (unsigned) mode,
                                    g_strerror(e));
                        return FALSE;
                }
                g_message("restricted %s to mode %04o", path, (unsigned) (st.st_mode & 07777 & mode));
        }
        return TRUE;
}

static void device_unref_notify(gpointer d) {
        device_unref(d);
}

/*
 * Say once, at start, what the workers will run as: a missing worker user
 * fails every device start (the worker refuses to stay root unless told),
 * a missing default socket group only means root's group keeps the sockets.
 */
static void manager_check_worker_ids(ManagerConfig *c) {
        if (worker_user_is_root(c->worker_user))
                g_message("workers run as root ([Worker] User=%s in vfud.conf)", c->worker_user);
        else if (!getpwnam(c->worker_user))
                g_warning("worker user '%s' does not exist: devices will not start until it is created "
                          "(systemd-sysusers creates '" WORKER_USER_DEFAULT "') or [Worker] User= names another "
                          "(User=root runs workers as root)", c->worker_user);
        if (c->socket_group_optional && *c->socket_group && !getgrnam(c->socket_group)) {
                g_message("socket group '%s' does not exist (libvirt is not installed?): vfio-user sockets keep "
                          "root's group; set [Worker] SocketGroup= to QEMU's group", c->socket_group);
                g_free(c->socket_group);
                c->socket_group = g_strdup("");
        }
}

/* Resolve AdminGroup= into the gid the checks use. */
static void manager_resolve_admin_group(Manager *m) {
        m->have_admin_gid = false;
        if (m->config.admin_group && *m->config.admin_group) {
                struct group *g = getgrnam(m->config.admin_group);

                if (g) {
                        m->admin_gid = g->gr_gid;
                        m->have_admin_gid = true;
                } else
                        g_message("admin group '%s' does not exist: only root may change devices",
                                  m->config.admin_group);
        }
}

Manager *manager_new(const ManagerConfig *config, GError **error) {
        g_autoptr(Manager) m = g_new0(Manager, 1);
        g_autofree char *lock = NULL;
        int r;

        m->lock_fd = -1;
        m->config = *config;
        m->config.state_dir = g_strdup(config->state_dir);
        m->config.runtime_dir = g_strdup(config->runtime_dir);
        m->config.admin_group = g_strdup(config->admin_group);
        m->config.worker_path = g_strdup(config->worker_path);
        m->config.worker_user = g_strdup(config->worker_user);
        m->config.worker_units = g_strdup(config->worker_units);
        m->config.socket_group = g_strdup(config->socket_group);
        m->config.libvirt_uri = g_strdup(config->libvirt_uri);
        m->config.metrics_dir = g_strdup(config->metrics_dir);
        m->devices = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, device_unref_notify);
        m->migrations = g_ptr_array_new();
        m->devices_dir = g_build_filename(m->config.state_dir, "devices", NULL);
        m->images_dir = g_build_filename(m->config.state_dir, "images", NULL);
        m->workers_dir = g_build_filename(m->config.runtime_dir, "workers", NULL);

        manager_check_worker_ids(&m->config);
        manager_resolve_admin_group(m);

        /*
         * The modes of data/vfud.service.in and vfud.tmpfiles: the runtime
         * directory searchable for the VMM's connections to the sockets,
         * everything else vfud's alone.  The top-level directories may be
         * the operator's (--state-dir, --runtime-dir): only created with it.
         */
        if (!ensure_dir(m->config.state_dir, 0700, false, error) ||
            !ensure_dir(m->devices_dir, 0700, true, error) ||
            !ensure_dir(m->images_dir, 0700, true, error) ||
            !ensure_dir(m->config.runtime_dir, 0755, false, error) ||
            !ensure_dir(m->workers_dir, 0700, true, error))
                return NULL;

        lock = g_build_filename(m->config.runtime_dir, "vfud.lock", NULL);
        m->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (m->lock_fd < 0 || flock(m->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;

                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            e == EWOULDBLOCK ?
                            "another vfud is running with runtime directory %s: stop it first, or give this one its own --runtime-dir" :
                            "cannot lock %s: %s", e == EWOULDBLOCK ? m->config.runtime_dir : lock, g_strerror(e));
                return NULL;
        }

        r = sd_event_default(&m->event);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot create the event loop: %s", g_strerror(-r));
                return NULL;
        }
        return g_steal_pointer(&m);
}

void manager_free(Manager *m) {
        if (!m)
                return;
        manager_migrations_abort(m);
        /* Workers keep running: the next manager adopts them. */
        if (m->devices) {
                GHashTableIter it;
                gpointer v;

                g_hash_table_iter_init(&it, m->devices);
                while (g_hash_table_iter_next(&it, NULL, &v))
                        device_detach_worker(v);
        }
        /* Pending libvirt completions still reply on the bus and find their devices. */
        manager_libvirt_free(m);
        manager_metrics_stop(m);
        manager_auth_free(m);
        if (m->devices)
                g_hash_table_unref(m->devices);
        sd_bus_flush_close_unref(m->bus);
        sd_event_unref(m->event);
        if (m->lock_fd >= 0)
                close(m->lock_fd);
        g_free(m->bus_description);
        g_free(m->config_path);
        g_free(m->devices_dir);
        g_free(m->images_dir);
        g_free(m->workers_dir);
        manager_config_clear(&m->config);
        g_free(m);
}

gboolean manager_connect_bus(Manager *m, const char *bus, GError **error) {
        int r;

        if (!bus || strcmp(bus, "system") == 0)
                r = sd_bus_open_system(&m->bus);
        else if (strcmp(bus, "session") == 0 || strcmp(bus, "user") == 0)
                r = sd_bus_open_user(&m->bus);
        else {
                r = sd_bus_new(&m->bus);
                if (r >= 0)
                        r = sd_bus_set_address(m->bus, bus);
                if (r >= 0)
                        r = sd_bus_set_bus_client(m->bus, 1);
                if (r >= 0)
                        r = sd_bus_start(m->bus);
        }
        m->bus_description = g_strdup(bus ? bus : "system");
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot connect to the %s bus: %s",
                            m->bus_description, g_strerror(-r));
                return FALSE;
        }
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_set_exit_on_disconnect(m->bus, 1);
        if (r >= 0)
                r = manager_bus_register(m);
        if (r >= 0)
                r = device_bus_register(m);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot export objects: %s", g_strerror(-r));
                return FALSE;
        }
        r = sd_bus_request_name(m->bus, VFUD_BUS_NAME, 0);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            r == -EEXIST ? "%s is already owned on the %s bus: another vfud is running" :
                            "cannot own %s on the %s bus: %s%s",
                            VFUD_BUS_NAME, m->bus_description, g_strerror(-r),
                            r == -EACCES ? " (is the D-Bus policy org.vfu.vfud1.conf installed?)" : "");
                return FALSE;
        }
        return TRUE;
}

Device *manager_find_device(Manager *m, const char *name) {
        return name ? g_hash_table_lookup(m->devices, name) : NULL;
}

void manager_add_device(Manager *m, Device *d) {
        g_hash_table_replace(m->devices, d->name, d);
}

void manager_remove_device(Manager *m, Device *d) {
        d->removed = true;
        g_hash_table_remove(m->devices, d->name);
}

char *manager_generate_name(Manager *m, const char *type, const char *vm) {
        const char *short_type = strrchr(type, '-') ? strrchr(type, '-') + 1 : type;

        for (unsigned i = 0;; i++) {
                g_autofree char *name = NULL;

                if (vm && *vm)
                        name = g_strdup_printf("%s-%s%u", vm, short_type, i);
                if (!name || !util_name_is_valid(name)) {
                        g_free(name);
                        name = g_strdup_printf("%s%u", short_type, i);
                }
                if (!manager_find_device(m, name))
                        return g_steal_pointer(&name);
        }
}

static void notify_ready(Manager *m) {
        g_autofree char *status = NULL;

        if (m->ready_sent)
                return;
        m->ready_sent = true;
        status = g_strdup_printf("READY=1\nSTATUS=Managing %u devices", g_hash_table_size(m->devices));
        (void) sd_notify(0, status);
        g_message("ready: %u devices on the %s bus", g_hash_table_size(m->devices), m->bus_description);
}

void manager_initial_done(Manager *m) {
        if (m->pending_initial > 0 && --m->pending_initial == 0 && m->event &&
            sd_event_get_state(m->event) != SD_EVENT_INITIAL)
                notify_ready(m);
}

gboolean manager_restore(Manager *m, GError **error) {
        g_autoptr(GDir) dir = NULL;
        g_autoptr(GError) local = NULL;
        g_autoptr(GPtrArray) loaded = g_ptr_array_new();
        const char *entry;

        g_message("workers start %s ([Worker] Units=%s)",
                  manager_worker_spawner(m) == &worker_spawner_systemd ?
                  "in systemd units of their own (vfu-worker@NAME.service)" : "as vfud's children",
                  m->config.worker_units);
        dir = g_dir_open(m->devices_dir, 0, &local);
        if (!dir) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot read %s: %s",
                            m->devices_dir, local->message);
                return FALSE;
        }
        while ((entry = g_dir_read_name(dir))) {
                g_autofree char *path = g_build_filename(m->devices_dir, entry, NULL);
                g_autoptr(GError) e = NULL;
                Device *d;

                if (strstr(entry, ".json.tmp.")) {
                        (void) unlink(path);
                        continue;
                }
                if (!g_str_has_suffix(entry, ".json"))
                        continue;
                d = device_load(m, path, &e);
                if (!d) {
                        g_warning("skipping device definition: %s", e->message);
                        continue;
                }
                d->exported = true;
                manager_add_device(m, d);
                g_ptr_array_add(loaded, d);
        }
        for (guint i = 0; i < loaded->len; i++) {
                Device *d = loaded->pdata[i];

                if (device_adopt(d))
                        continue;
                if (g_file_test(d->stopped_path, G_FILE_TEST_EXISTS)) {
                        device_log(d, G_LOG_LEVEL_MESSAGE, "stopped, not starting it");
                        device_cleanup_runtime_files(d);
                        continue;
                }
                d->initial = true;
                m->pending_initial++;
                device_start(d, NULL, NULL);
        }
        return TRUE;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        g_message("signal %s: exiting, workers keep running", strsignal((int) si->ssi_signo));
        return sd_event_exit(m->event, 0);
}

static void replace_string(char **field, const char *value) {
        g_free(*field);
        *field = g_strdup(value);
}

/*
 * systemctl reload vfud (SIGHUP): read vfud.conf and vfud.conf.d/ again and
 * take what applies without touching a device — who may change devices
 * ([Manager] AdminGroup=, Polkit=) and how workers are started from now on
 * (the [Worker] section but Executable=).  Running workers, directories,
 * [Libvirt] and [Metrics] stay as they are until vfud restarts.  A file that
 * does not parse changes nothing.
 */
gboolean manager_reload_config(Manager *m, GError **error) {
        ManagerConfig n;
        ManagerConfig *c = &m->config;

        manager_config_init(&n);
        if (!m->config_path || !manager_config_load_all(&n, m->config_path, false, error)) {
                manager_config_clear(&n);
                return m->config_path == NULL;
        }
        replace_string(&c->admin_group, n.admin_group);
        c->polkit = n.polkit;
        replace_string(&c->worker_user, n.worker_user);
        replace_string(&c->worker_units, n.worker_units);
        replace_string(&c->socket_group, n.socket_group);
        c->socket_group_optional = n.socket_group_optional;
        c->socket_mode = n.socket_mode;
        c->seccomp = n.seccomp;
        c->restart_delay_usec = n.restart_delay_usec;
        c->restart_burst = n.restart_burst;
        c->restart_interval_usec = n.restart_interval_usec;
        c->start_timeout_usec = n.start_timeout_usec;
        c->stop_timeout_usec = n.stop_timeout_usec;
        c->stats_interval_usec = n.stats_interval_usec;
        manager_config_clear(&n);
        manager_check_worker_ids(c);
        manager_resolve_admin_group(m);
        return TRUE;
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        g_autoptr(GError) error = NULL;
        g_autofree char *status = NULL;

        (void) sd_notify(0, "RELOADING=1");
        if (manager_reload_config(m, &error))
                g_message("configuration reloaded from %s (running devices untouched)", m->config_path);
        else
                g_warning("reload: %s; the configuration stays as it was", error->message);
        status = g_strdup_printf("READY=1\nSTATUS=Managing %u devices", g_hash_table_size(m->devices));
        (void) sd_notify(0, status);
        return 0;
}

int manager_run(Manager *m) {
        int r;

        (void) sd_event_add_signal(m->event, NULL, SIGTERM, on_signal, m);
        (void) sd_event_add_signal(m->event, NULL, SIGINT, on_signal, m);
        (void) sd_event_add_signal(m->event, NULL, SIGHUP, on_reload, m);
        /* WatchdogSec= in the unit: sd-event sends WATCHDOG=1 from the loop while it turns. */
        r = sd_event_set_watchdog(m->event, true);
        if (r > 0)
                g_message("watchdog: keep-alive every half of WatchdogSec=");
        if (m->pending_initial == 0)
                notify_ready(m);
        manager_metrics_start(m);
        r = sd_event_loop(m->event);
        (void) sd_notify(0, "STOPPING=1");
        return r;
}
