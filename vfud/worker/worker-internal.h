/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker core's private state, shared by worker.c (device and server),
 * worker-control.c (control socket), worker-sandbox.c and worker-main.c.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "worker.h"

typedef struct WorkerControl WorkerControl;

typedef struct WorkerOptions {
        char *definition_path;
        char *socket_path;
        char *control_path;
        char *pid_file;
        char *user;                     /* drop to this user after setup, NULL: stay */
        char *socket_group;             /* group owning the vfio-user socket */
        mode_t socket_mode;
        bool seccomp;
} WorkerOptions;

struct Worker {
        sd_event *event;
        WorkerOptions opts;

        JsonNode *definition;           /* the whole definition object */
        char *name;
        char *type_name;
        char *vm;

        const WorkerDeviceType *type;
        void *state;
        bool have_state;

        VuServer *server;
        sd_event_source *server_source;
        int server_source_fd;
        bool connected;
        VuMigInfo mig;                  /* as last reported to control clients */
        uint64_t connected_since;       /* CLOCK_REALTIME µs, 0 when not connected */
        uint64_t started;               /* CLOCK_REALTIME µs */

        GHashTable *fds;                /* name → GINT_TO_POINTER(fd + 1) */
        WorkerControl *control;
        bool listening;                 /* the socket file is ours to remove */
        bool inet;                      /* IP sockets allowed in the sandbox (worker_allow_inet) */
};

/* The device types linked into this binary (worker-types.c), NULL-terminated. */
extern const WorkerDeviceType *const worker_types[];
const WorkerDeviceType *worker_type_find(const char *name);

Worker *worker_new(const WorkerOptions *opts, GError **error);
void worker_free(Worker *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Worker, worker_free)

/* Register an inherited or received fd under name (replacing and closing an older one). */
void worker_add_fd(Worker *w, const char *name, int fd);
/* Load the definition, create the device, listen.  FALSE with error on failure. */
gboolean worker_setup(Worker *w, GError **error);
/* Remove the files this worker created (socket, control socket, pid file). */
void worker_cleanup_files(Worker *w);

/* Add {"connected", "vfio_user": {...}, "device": {...}} members to the open object in b. */
void worker_build_stats(Worker *w, JsonBuilder *b);
/* Add a "migration" member: the client's use of migration v2 (vu_server_mig_info()). */
void worker_build_migration(Worker *w, JsonBuilder *b);
/* Add name, type, vm, pid, socket, connected, migration, definition members. */
void worker_build_info(Worker *w, JsonBuilder *b);

/* A control method of the device type, fds (names → fds) handed over for its duration. */
gboolean worker_device_control(Worker *w, const char *method, JsonObject *params,
                               JsonArray *fd_names, GArray *fds, JsonNode **result, GError **error);

/* Control socket (worker-control.c). */
gboolean worker_control_start(Worker *w, const char *path, GError **error);
void worker_control_free(WorkerControl *c);
/* Send {"event": event, "connected": b, "migration": {...}} to every subscribed control client. */
void worker_control_broadcast(Worker *w, const char *event);

/* Sandbox (worker-sandbox.c). */
gboolean worker_sandbox_drop_privileges(const char *user, GError **error);
gboolean worker_sandbox_no_new_privs(GError **error);
gboolean worker_sandbox_seccomp(bool inet, GError **error);

/* Log about the worker's device: prefixed with its name, VFU_DEVICE=/VFU_DEVICE_TYPE= journal fields. */
void worker_log(Worker *w, GLogLevelFlags level, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* "invalid", "backend", ... for a WORKER_ERROR code (others: "failed"). */
const char *worker_error_code_to_string(const GError *error);
