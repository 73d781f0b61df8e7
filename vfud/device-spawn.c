/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fork spawner (workers as vfud's children, in their own session), the
 * choice between it and the systemd spawner, and the per-device limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "device-spawn.h"

static const char *const child_env_drop[] = {
        "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC",
};

char **worker_environment(void) {
        char **env = g_get_environ();

        for (size_t i = 0; i < G_N_ELEMENTS(child_env_drop); i++)
                env = g_environ_unsetenv(env, child_env_drop[i]);
        return env;
}

static void child_setup(gpointer data) {
        /* A session of its own: the worker outlives the manager and its process group. */
        (void) setsid();
}

static void close_fds(GArray *fds) {
        for (guint i = 0; i < fds->len; i++)
                close(g_array_index(fds, int, i));
        g_array_set_size(fds, 0);
}

static gboolean fork_spawn(Device *d, GPtrArray *argv, GPtrArray *names, GArray *fds,
                           int *ret_ready_fd, pid_t *ret_pid, GError **error) {
        const ManagerConfig *c = &d->manager->config;
        g_autoptr(GArray) src = g_array_new(FALSE, FALSE, sizeof(int));
        g_autoptr(GArray) dst = g_array_new(FALSE, FALSE, sizeof(int));
        g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
        g_auto(GStrv) env = NULL;
        g_autoptr(GError) local = NULL;
        int pipefd[2], target = 3;
        GPid pid = 0;
        gboolean ok;

        if (pipe2(pipefd, O_CLOEXEC) < 0) {
                close_fds(fds);
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "pipe: %s", g_strerror(errno));
                return FALSE;
        }
        for (guint i = 0; i + 1 < argv->len; i++)
                g_ptr_array_add(args, g_strdup(argv->pdata[i]));
        g_array_append_val(src, pipefd[1]);
        g_array_append_val(dst, target);
        g_ptr_array_add(args, g_strdup_printf("--ready-fd=%d", target++));
        for (guint i = 0; i < fds->len; i++) {
                g_array_append_val(src, g_array_index(fds, int, i));
                g_array_append_val(dst, target);
                g_ptr_array_add(args, g_strdup_printf("--fd=%s=%d", (char *) names->pdata[i], target++));
        }
        g_ptr_array_add(args, NULL);

        env = worker_environment();
        ok = g_spawn_async_with_pipes_and_fds(NULL, (const char *const *) args->pdata, (const char *const *) env,
                                              G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDIN_FROM_DEV_NULL,
                                              child_setup, NULL, -1, -1, -1,
                                              (const int *) src->data, (const int *) dst->data, src->len,
                                              &pid, NULL, NULL, NULL, &local);
        close(pipefd[1]);
        close_fds(fds);
        if (!ok) {
                close(pipefd[0]);
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                            "cannot run %s: %s (set Executable= in the [Worker] section of vfud.conf)",
                            c->worker_path, local->message);
                return FALSE;
        }
        (void) fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
        *ret_ready_fd = pipefd[0];
        *ret_pid = pid;
        return TRUE;
}

const WorkerSpawner worker_spawner_fork = {
        .name = "fork",
        .spawn = fork_spawn,
};

/* vfud is a service of the system's systemd (not a test's vfud on a private bus, not a container's shell). */
static bool under_systemd(Manager *m) {
        return sd_booted() > 0 && getenv("INVOCATION_ID") && g_strcmp0(m->bus_description, "system") == 0;
}

const WorkerSpawner *manager_worker_spawner(Manager *m) {
        const char *units = m->config.worker_units;

        if (g_strcmp0(units, "yes") == 0 || ((!units || g_strcmp0(units, "auto") == 0) && under_systemd(m)))
                return &worker_spawner_systemd;
        return &worker_spawner_fork;
}

char *worker_unit_name(const char *device) {
        return g_strdup_printf("vfu-worker@%s.service", device);
}

/* ---- per-device limits ---- */

const DeviceOptionSpec worker_unit_options[] = {
        { "cpu-quota", DEVICE_OPTION_UINT, "CPU time of the worker's unit in percent of one CPU (CPUQuota=)" },
        { "memory-max", DEVICE_OPTION_UINT, "memory of the worker's unit in bytes (MemoryMax=)" },
        { "io-weight", DEVICE_OPTION_UINT, "I/O weight of the worker's unit, 1 to 10000 (IOWeight=)" },
        { "tasks-max", DEVICE_OPTION_UINT, "tasks (threads) of the worker's unit (TasksMax=)" },
        {}
};

static const struct {
        const char *name;
        uint64_t min, max;
        const char *what;
} limit_ranges[] = {
        { "cpu-quota", 1, 100000, "1 to 100000 (percent of one CPU)" },
        { "memory-max", 16ULL << 20, INT64_MAX, "at least 16777216 (16 MiB)" },
        { "io-weight", 1, 10000, "1 to 10000" },
        { "tasks-max", 8, 1000000, "8 to 1000000" },
};

gboolean worker_unit_options_normalize(GHashTable *in, JsonObject *out, GError **error) {
        for (size_t i = 0; i < G_N_ELEMENTS(limit_ranges); i++) {
                JsonNode *n = g_hash_table_lookup(in, limit_ranges[i].name);
                int64_t v;

                if (!n)
                        continue;
                v = json_node_get_int(n);
                if (v < 0 || (uint64_t) v < limit_ranges[i].min || (uint64_t) v > limit_ranges[i].max) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "%s=%" G_GINT64_FORMAT " is out of range: give %s", limit_ranges[i].name, v,
                                    limit_ranges[i].what);
                        return FALSE;
                }
                json_object_set_int_member(out, limit_ranges[i].name, v);
        }
        return TRUE;
}
