/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfud's manager: configuration, the device table, the bus connection and
 * the event loop.  Devices (device.h) belong to it; each runs in a worker
 * process the manager spawns or re-adopts after a restart.
 *
 * Error convention: GError (domain MANAGER_ERROR) inside the daemon,
 * converted once to an org.vfu.vfud1.Error.* D-Bus error (manager_reply_error).
 */
#pragma once

#include <stdbool.h>
#include <string.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

typedef struct Device Device;
typedef struct Manager Manager;
typedef struct ManagerLibvirt ManagerLibvirt;

#define MANAGER_ERROR (manager_error_quark())
GQuark manager_error_quark(void);

typedef enum ManagerErrorCode {
        MANAGER_ERROR_NO_SUCH_DEVICE,
        MANAGER_ERROR_DEVICE_EXISTS,
        MANAGER_ERROR_INVALID_ARGUMENT,
        MANAGER_ERROR_BACKEND_FAILED,
        MANAGER_ERROR_DEVICE_BUSY,
        MANAGER_ERROR_NOT_SUPPORTED,
        MANAGER_ERROR_WORKER_FAILED,
        MANAGER_ERROR_NOT_RUNNING,
        MANAGER_ERROR_ACCESS_DENIED,
        MANAGER_ERROR_FAILED,
        MANAGER_ERROR_LIBVIRT_UNAVAILABLE,
        MANAGER_ERROR_NO_SUCH_VM,
        MANAGER_ERROR_NOT_MIGRATABLE,
        _MANAGER_ERROR_MAX,
} ManagerErrorCode;

/* The D-Bus error name for a GError (MANAGER_ERROR codes; others map to Failed). */
const char *manager_error_to_dbus_name(const GError *error);

/* Workers run as this system user (data/vfud.sysusers) unless [Worker] User= says otherwise. */
#define WORKER_USER_DEFAULT "vfu-worker"
/* The group QEMU runs in under Debian's libvirt (qemu.conf group=): it may connect to the sockets. */
#define SOCKET_GROUP_DEFAULT "libvirt-qemu"

/* [Worker] User= that keeps workers as root: "root" or empty. */
static inline bool worker_user_is_root(const char *user) {
        return !user || !*user || strcmp(user, "root") == 0;
}

typedef struct ManagerConfig {
        char *state_dir;                /* /var/lib/vfud */
        char *runtime_dir;              /* /run/vfud */
        char *admin_group;              /* may call mutating methods besides root; "" none */
        char *worker_path;              /* vfud-worker */
        char *worker_user;              /* drop workers to this user; "" or "root" stay root */
        char *worker_units;             /* "auto", "yes", "no": each worker a systemd unit (device-spawn.h) */
        char *socket_group;             /* group of vfio-user sockets, "" none */
        bool socket_group_optional;     /* the default: skipped when the group does not exist */
        mode_t socket_mode;
        bool seccomp;
        uint64_t restart_delay_usec;    /* first automatic restart after a crash */
        unsigned restart_burst;         /* at most this many restarts ... */
        uint64_t restart_interval_usec; /* ... within this interval */
        uint64_t start_timeout_usec;
        uint64_t stop_timeout_usec;
        uint64_t stats_interval_usec;
        bool libvirt_enabled;           /* [Libvirt] Enabled= */
        char *libvirt_uri;              /* [Libvirt] URI= */
        char *metrics_dir;              /* [Metrics] TextfileDirectory=; NULL or "": no metrics file */
        uint64_t metrics_interval_usec; /* [Metrics] Interval= */
        bool polkit;                    /* [Manager] Polkit= */
} ManagerConfig;

void manager_config_init(ManagerConfig *c);
void manager_config_clear(ManagerConfig *c);
/* Read a vfud.conf(5) file over c.  A missing file is fine when !required. */
gboolean manager_config_load(ManagerConfig *c, const char *path, bool required, GError **error);
/* The file, then the *.conf files in PATH.d/ in the order of their names (vfud.conf.d/ next to vfud.conf). */
gboolean manager_config_load_all(ManagerConfig *c, const char *path, bool required, GError **error);

struct Manager {
        ManagerConfig config;
        sd_event *event;
        sd_bus *bus;
        char *bus_description;          /* "system", "session" or the address */
        GHashTable *devices;            /* name → Device (owned) */
        int lock_fd;
        unsigned pending_initial;       /* devices still starting from the restore */
        bool ready_sent;
        gid_t admin_gid;
        bool have_admin_gid;
        char *config_path;              /* re-read on SIGHUP (systemctl reload vfud) */
        GHashTable *auth_queries;       /* request sd_bus_message → AuthQuery (manager-auth.c) */
        char *devices_dir, *images_dir, *workers_dir;
        int64_t next_ctl_id;
        ManagerLibvirt *libvirt;        /* manager-libvirt.c */
        GPtrArray *migrations;          /* running Migration (migrate.c), not owned */
        sd_event_source *metrics_timer; /* manager-metrics.c */
        char *metrics_error;            /* the last failure to write the metrics file, logged once */
};

Manager *manager_new(const ManagerConfig *config, GError **error);
void manager_free(Manager *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Manager, manager_free)

/* Connect to the bus ("system", "session" or an address), export the objects, take the name. */
gboolean manager_connect_bus(Manager *m, const char *bus, GError **error);
/* Load the persisted definitions; adopt running workers or start them. */
gboolean manager_restore(Manager *m, GError **error);
int manager_run(Manager *m);
/* Re-read the configuration (SIGHUP): see manager.c for what changes without a restart. */
gboolean manager_reload_config(Manager *m, GError **error);

Device *manager_find_device(Manager *m, const char *name);
/* A free name "<vm>-<type><n>" (or "<type><n>" without a VM). */
char *manager_generate_name(Manager *m, const char *type, const char *vm);
void manager_add_device(Manager *m, Device *d);
void manager_remove_device(Manager *m, Device *d);
/* One device finished its initial start from the restore (for READY=1). */
void manager_initial_done(Manager *m);

/*
 * Metrics (manager-metrics.c): with [Metrics] TextfileDirectory=, the
 * devices' metrics in DIR/vfud.prom, rewritten every Interval= (a temporary
 * file renamed over it) for prometheus-node-exporter's textfile collector.
 */
void manager_metrics_start(Manager *m);
void manager_metrics_stop(Manager *m);
gboolean manager_metrics_write(Manager *m, GError **error);

/* D-Bus (manager-dbus.c). */
int manager_bus_register(Manager *m);
void manager_emit_device_new(Manager *m, Device *d);
void manager_emit_device_removed(Manager *m, Device *d);

/* The polkit actions (data/org.vfu.vfud1.policy): changing devices, and moving them between hosts. */
typedef enum AuthAction {
        AUTH_MANAGE,
        AUTH_MIGRATE,
        _AUTH_ACTION_MAX,
} AuthAction;

const char *auth_action_to_string(AuthAction a);

/*
 * Authorization (manager-auth.c).  Root and the daemon's own user always
 * may.  Others are asked about through polkit (CheckAuthorization, the
 * caller's allow-interactive-authorization flag passed on) when [Manager]
 * Polkit= is on and polkit answers on the bus; without polkit, members of
 * AdminGroup may.
 *
 * 1: authorized.  0: polkit is deciding; the handler returns 1 without a
 * reply and is called again with the same message once polkit answered
 * (`if (r <= 0) return r < 0 ? r : 1;`).
 * Negative errno with error set (AccessDenied, InteractiveAuthorizationRequired)
 * otherwise.  Callers authorize before anything else (their reads of the
 * message are repeated on the second call).
 */
int manager_check_authorized(Manager *m, sd_bus_message *msg, AuthAction action, const char *what,
                             sd_bus_error *error);
void manager_auth_free(Manager *m);

/* A GError from a failed remote call: "what: message", the code following the D-Bus error name. */
void manager_error_from_bus(GError **error, const sd_bus_error *e, int r, const char *fmt, ...) G_GNUC_PRINTF(4, 5);
/* Reply to a method call with the D-Bus form of error. */
int manager_reply_error(sd_bus_message *msg, const GError *error);
/* Set a D-Bus error from a GError; returns the negative errno sd-bus expects from a handler. */
int manager_set_bus_error(sd_bus_error *ret, const GError *error);
