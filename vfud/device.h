/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A device: its persisted definition, its D-Bus object and the worker
 * process that runs it.  States (the same strings appear in logs, on D-Bus
 * and in vfuctl):
 *
 *   idle       defined, no worker (never started, stopped, or gave up)
 *   starting   worker spawned, waiting for it to listen
 *   listening  worker ready, no client
 *   connected  a vfio-user client (the VM) is attached
 *   stopping   worker asked to exit
 *   failed     worker crashed or could not start; restarted automatically
 *              after a crash, LastError says why
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/ctl-proto.h"
#include "manager.h"

typedef enum DeviceState {
        DEVICE_IDLE,
        DEVICE_STARTING,
        DEVICE_LISTENING,
        DEVICE_CONNECTED,
        DEVICE_STOPPING,
        DEVICE_FAILED,
        _DEVICE_STATE_MAX,
        _DEVICE_STATE_INVALID = -1,
} DeviceState;

const char *device_state_to_string(DeviceState s);
DeviceState device_state_from_string(const char *s);

/*
 * A device's part in a migration (D-Bus MigrationState; migrate.h says what
 * each means and docs/migration.md draws the machine).
 */
typedef enum MigrationState {
        MIGRATION_NONE,                 /* "": never migrated by this vfud */
        MIGRATION_PREPARING,
        MIGRATION_COPYING,
        MIGRATION_WAITING,
        MIGRATION_TRANSFERRING,
        MIGRATION_COMPLETED,
        MIGRATION_FAILED,
        MIGRATION_INCOMING,
        MIGRATION_RESUMED,
        MIGRATION_REFUSED,
        _MIGRATION_STATE_MAX,
        _MIGRATION_STATE_INVALID = -1,
} MigrationState;

const char *migration_state_to_string(MigrationState s);
MigrationState migration_state_from_string(const char *s);

typedef struct DeviceType DeviceType;
typedef struct DeviceImages DeviceImages;

/* Completion of an asynchronous operation; error NULL on success. */
typedef void (*DeviceDoneFunc)(Device *d, const GError *error, void *userdata);
/* Reply of a worker control call: result or error. */
typedef void (*DeviceCtlFunc)(Device *d, JsonNode *result, const GError *error, void *userdata);

typedef struct DeviceWaiter {
        DeviceDoneFunc func;
        void *userdata;
} DeviceWaiter;

struct Device {
        unsigned n_ref;
        Manager *manager;
        const DeviceType *dtype;
        char *name, *type, *vm;
        JsonNode *options;              /* normalized options object */
        char *object_path;
        char *socket_path, *control_path, *pid_path, *definition_path, *stopped_path;

        DeviceState state;
        bool exported;                  /* on the bus (creation finished) */
        bool removed;
        char *last_error;
        char *waiting;                  /* what the backend waits for (a lost NBD server), or NULL */
        char *libvirt_status, *libvirt_error;   /* manager-libvirt.h */
        /* migration (migrate.h): this device leaving */
        struct Migration *migration;
        MigrationState migration_state;
        uint64_t mig_bytes, mig_total, mig_rate, mig_remaining;
        char *mig_socket;               /* leaving live: the destination's vfio-user socket */
        char *migrated_from;            /* arrived by cold migration from there; cleared by the first client */
        bool incoming;                  /* arriving live: waiting for the VMM to load the state */
        /* the client's use of migration v2, as the worker reports it (see vu_server_mig_info()) */
        struct {
                char *state;            /* "running", "stop", "pre-copy", "stop-copy", "resuming", "error" */
                bool client, saved, resumed, failed;
                uint64_t bytes_read, bytes_written;
        } client_mig;
        struct ImageReceive *receive;   /* its image arriving (migrate-receive.c) */
        DeviceImages *images;           /* the images its worker writes, kept open for their locks (image-lock.h) */
        unsigned restarts;              /* automatic restarts since the manager started */
        GArray *restart_times;          /* uint64_t CLOCK_MONOTONIC µs of recent restarts */
        sd_event_source *restart_timer;

        /* the worker */
        pid_t pid;
        int pidfd;
        bool own_child;
        sd_event_source *pidfd_source;
        int ready_fd;
        sd_event_source *ready_source;
        GString *ready_buf;
        sd_event_source *timeout_source;        /* start or stop deadline */
        GArray *start_waiters, *stop_waiters;   /* DeviceWaiter */
        GError *start_error;            /* what the worker reported before exiting */
        bool initial;                   /* counted in manager->pending_initial */

        /* control connection */
        int ctl_fd;
        sd_event_source *ctl_source;
        CtlReader ctl_reader;
        GQueue ctl_pending;             /* DeviceCtlCall */

        /* statistics */
        bool connected;
        sd_event_source *stats_timer;
        GHashTable *stats;              /* char* → uint64_t*, flattened */
};

Device *device_new(Manager *m, const DeviceType *dtype, const char *name, const char *vm,
                   JsonNode *options);
Device *device_ref(Device *d);
Device *device_unref(Device *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Device, device_unref)

/* Load <state>/devices/<file>; NULL with error for an unreadable or invalid file. */
Device *device_load(Manager *m, const char *path, GError **error);
/* Write the definition atomically. */
gboolean device_save(Device *d, GError **error);
/* The definition object {"name","type","vm","options"} (new reference). */
JsonNode *device_definition(Device *d);

/* Log about d: the message prefixed with its name, and VFU_DEVICE=/VFU_DEVICE_TYPE= journal fields. */
void device_log(Device *d, GLogLevelFlags level, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

void device_set_state(Device *d, DeviceState s);
void device_set_last_error(Device *d, const char *msg);

/*
 * Start the worker; func runs once the device listens or the start failed.
 * A device already listening or connected completes at once.
 */
void device_start(Device *d, DeviceDoneFunc func, void *userdata);
/* Stop the worker (refused while a client is connected); func runs when it exited. */
void device_stop(Device *d, DeviceDoneFunc func, void *userdata);
/* Stop the worker although a client is connected: its state moved to another host (live migration). */
void device_stop_handed_over(Device *d, DeviceDoneFunc func, void *userdata);
/* Try to take over a worker left running by an earlier manager.  TRUE if adopted. */
bool device_adopt(Device *d);
/* Forget the device: remove its definition, images and runtime files. */
void device_remove_files(Device *d);
/* Tell the device it is being torn down with the manager (keep workers running). */
void device_detach_worker(Device *d);
/* Mark a device stopped across manager restarts (until reboot or Start). */
void device_set_stopped_marker(Device *d, bool stopped);

/* Call a worker control method (device-worker.c).  fds are duplicated. */
void device_ctl_call(Device *d, const char *method, JsonNode *params,
                     const int *fds, const char *const *fd_names,
                     DeviceCtlFunc func, void *userdata);

/* Bus (device-dbus.c). */
int device_bus_register(Manager *m);
void device_emit_changed(Device *d, const char *property, ...) G_GNUC_NULL_TERMINATED;
char *device_bus_path(const char *name);

/* Internal to the device-*.c files. */
void device_worker_spawn(Device *d);
void device_worker_kill(Device *d, int sig);
/* The spawner learnt that d's worker will not run (its unit could not be started): complete the start with error. */
void device_worker_spawn_failed(Device *d, const GError *error);
void device_ctl_close(Device *d, const char *why);
bool device_ctl_open(Device *d, int fd);
void device_stats_update(Device *d);
void device_stats_timer_set(Device *d, bool on);
void device_worker_exited(Device *d, const char *how, bool clean);
void device_start_completed(Device *d, const GError *error);
void device_cleanup_runtime_files(Device *d);
