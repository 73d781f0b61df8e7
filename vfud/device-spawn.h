/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How a device's worker process comes to exist: forked by vfud
 * (device-spawn.c), or as a transient service of its own started through
 * systemd's D-Bus API (device-spawn-systemd.c) when vfud runs under systemd
 * ([Worker] Units= in vfud.conf(5)).  Either way the worker gets the same
 * command line and the same fds, reports on one fd, and is then watched,
 * stopped and adopted through its pidfd and control socket
 * (device-worker.c).
 */
#pragma once

#include "device-type.h"

typedef struct WorkerSpawner {
        const char *name;       /* "fork", "systemd" */
        /*
         * Start d's worker: argv (NULL-terminated, without fd arguments)
         * and the fds the device type opened (names: char*, fds: int;
         * consumed: closed whatever happens).  TRUE with *ret_ready_fd, on
         * which the worker reports (non-blocking, CLOEXEC), and *ret_pid:
         * its pid, or 0 when the worker's first message carries it as
         * credentials (SO_PASSCRED is set on the fd).  FALSE with a
         * MANAGER_ERROR.  Completion may also come later through the ready
         * fd's end of stream.
         */
        gboolean (*spawn)(Device *d, GPtrArray *argv, GPtrArray *names, GArray *fds,
                          int *ret_ready_fd, pid_t *ret_pid, GError **error);
} WorkerSpawner;

extern const WorkerSpawner worker_spawner_fork;
extern const WorkerSpawner worker_spawner_systemd;

/* The spawner [Worker] Units= picks for this manager (auto: systemd when vfud is a system service). */
const WorkerSpawner *manager_worker_spawner(Manager *m);

/* vfud's environment without what systemd gave vfud itself (g_strfreev): for the processes it starts. */
char **worker_environment(void);

/* "vfu-worker@NAME.service" (g_free). */
char *worker_unit_name(const char *device);

/*
 * Per-device limits, options every device type takes (cpu-quota,
 * memory-max, io-weight, tasks-max), applied to the worker's unit.
 */
extern const DeviceOptionSpec worker_unit_options[];
/* Check the limits in in and copy them to out; FALSE with a MANAGER_ERROR naming the option. */
gboolean worker_unit_options_normalize(GHashTable *in, JsonObject *out, GError **error);
