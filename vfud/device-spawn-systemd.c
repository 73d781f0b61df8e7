/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The systemd spawner: each worker a transient service vfu-worker@NAME of
 * its own, started with StartTransientUnit on vfud's bus connection (the
 * system bus, where systemd is).  Its cgroup takes the device's limits
 * (cpu-quota, memory-max, io-weight, tasks-max), its sandbox is its own
 * (below), and it outlives vfud by construction: the next vfud adopts it
 * through its control socket as it adopts forked workers.
 *
 * The fds: the unit's standard input is one end of a socket pair.  vfud
 * sends the device's fds on it at once, as handoff control messages (they
 * wait in the socket until the worker reads them); the worker answers
 * {"started": true}, whose credentials (SO_PASSCRED) give vfud its pid, and
 * later reports ready or its error on it as a forked worker does on its
 * pipe.  systemd closes its copy when the unit goes away: end of stream
 * before a pid means the unit never ran its worker.
 *
 * The worker starts as root with only CAP_SETUID, CAP_SETGID and CAP_CHOWN
 * in its bounding set: it opens its sockets in vfud's runtime directory,
 * gives the vfio-user socket to SocketGroup= and drops to [Worker] User=
 * (vfu-worker), after which it holds no capability.  No worker reaches a
 * network or makes namespaces: a passt backend's passt runs outside the
 * unit, started by vfud, and the worker gets its socket (device-type-net.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "device-spawn.h"

#define SYSTEMD_DEST "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define START_CALL_TIMEOUT_USEC (30 * G_USEC_PER_SEC)

/* The sandbox every worker unit gets, whatever its backend (systemd.exec(5)). */
static const struct {
        const char *name;
        char type;
        union {
                int b;
                const char *s;
        };
} unit_hardening[] = {
        { "NoNewPrivileges", 'b', { .b = 1 } },
        { "ProtectSystem", 's', { .s = "strict" } },
        { "ProtectHome", 's', { .s = "yes" } },
        { "PrivateTmp", 'b', { .b = 1 } },
        { "PrivateDevices", 'b', { .b = 1 } },
        { "PrivateIPC", 'b', { .b = 1 } },
        { "PrivateMounts", 'b', { .b = 1 } },
        { "ProtectKernelTunables", 'b', { .b = 1 } },
        { "ProtectKernelModules", 'b', { .b = 1 } },
        { "ProtectKernelLogs", 'b', { .b = 1 } },
        { "ProtectControlGroups", 'b', { .b = 1 } },
        { "ProtectClock", 'b', { .b = 1 } },
        { "ProtectHostname", 'b', { .b = 1 } },
        { "ProtectProc", 's', { .s = "invisible" } },
        { "ProcSubset", 's', { .s = "pid" } },
        { "RestrictRealtime", 'b', { .b = 1 } },
        { "RestrictSUIDSGID", 'b', { .b = 1 } },
        { "LockPersonality", 'b', { .b = 1 } },
        { "MemoryDenyWriteExecute", 'b', { .b = 1 } },
        { "DevicePolicy", 's', { .s = "closed" } },
        { "KeyringMode", 's', { .s = "private" } },
        { "Type", 's', { .s = "exec" } },
        { "StandardOutput", 's', { .s = "journal" } },
        { "StandardError", 's', { .s = "journal" } },
        { "SyslogIdentifier", 's', { .s = "vfud-worker" } },
        /* A worker that exits (stopped, crashed, failed) leaves no unit behind: vfud starts the next one. */
        { "CollectMode", 's', { .s = "inactive-or-failed" } },
};

/* Limits: device option → unit property, and the factor from the option's unit to the property's. */
static const struct {
        const char *option, *property;
        uint64_t factor;
} unit_limits[] = {
        { "cpu-quota", "CPUQuotaPerSecUSec", 10000 },   /* percent → µs per second */
        { "memory-max", "MemoryMax", 1 },
        { "io-weight", "IOWeight", 1 },
        { "tasks-max", "TasksMax", 1 },
};

/* Open "(sv)" with the name and the variant of signature sig: close both afterwards. */
static int open_property(sd_bus_message *m, const char *name, const char *sig) {
        int r = sd_bus_message_open_container(m, 'r', "sv");

        if (r >= 0)
                r = sd_bus_message_append(m, "s", name);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', sig);
        return r;
}

static int append_strv_property(sd_bus_message *m, const char *name, const char *const *strv) {
        int r = open_property(m, name, "as");

        if (r >= 0)
                r = sd_bus_message_append_strv(m, (char **) strv);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* SystemCallFilter=, RestrictAddressFamilies=: (allow-list, names). */
static int append_list_property(sd_bus_message *m, const char *name, bool allow, const char *const *strv) {
        int r = open_property(m, name, "(bas)");

        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "bas");
        if (r >= 0)
                r = sd_bus_message_append(m, "b", allow);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, (char **) strv);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_exec_start(sd_bus_message *m, const char *path, char **argv) {
        int r = open_property(m, "ExecStart", "a(sasb)");

        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", path);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0);
        for (int i = 0; i < 4 && r >= 0; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

/* IPAddressDeny=any: every IPv4 and IPv6 address, prefix length 0. */
static int append_ip_deny_any(sd_bus_message *m) {
        static const uint8_t zero[16];
        int r = open_property(m, "IPAddressDeny", "a(iayu)");

        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(iayu)");
        for (int i = 0; i < 2 && r >= 0; i++) {
                r = sd_bus_message_open_container(m, 'r', "iayu");
                if (r >= 0)
                        r = sd_bus_message_append(m, "i", i == 0 ? AF_INET : AF_INET6);
                if (r >= 0)
                        r = sd_bus_message_append_array(m, 'y', zero, i == 0 ? 4 : 16);
                if (r >= 0)
                        r = sd_bus_message_append(m, "u", 0);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        for (int i = 0; i < 3 && r >= 0; i++)
                r = sd_bus_message_close_container(m);
        return r;
}

static int append_properties(sd_bus_message *m, Device *d, const char *path, char **argv, int stdin_fd) {
        const ManagerConfig *c = &d->manager->config;
        JsonObject *o = json_node_get_object(d->options);
        g_autofree char *description = g_strdup_printf("vfu %s device %s", d->type, d->name);
        const char *rw[] = { c->runtime_dir, NULL };
        const char *arch[] = { "native", NULL };
        const char *filter[] = { "@system-service", NULL };
        const char *families[] = { "AF_UNIX", NULL };
        uint64_t caps = (1ULL << CAP_CHOWN) | (worker_user_is_root(c->worker_user) ? 0 :
                                               (1ULL << CAP_SETUID) | (1ULL << CAP_SETGID));
        int r;

        r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "Description", "s", description);
        if (r >= 0)
                r = append_exec_start(m, path, argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "StandardInputFileDescriptor", "h", stdin_fd);
        for (size_t i = 0; i < G_N_ELEMENTS(unit_hardening) && r >= 0; i++) {
                if (unit_hardening[i].type == 'b')
                        r = sd_bus_message_append(m, "(sv)", unit_hardening[i].name, "b", unit_hardening[i].b);
                else
                        r = sd_bus_message_append(m, "(sv)", unit_hardening[i].name, "s", unit_hardening[i].s);
        }
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "CapabilityBoundingSet", "t", caps);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "UMask", "u", (uint32_t) 0077);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "SystemCallErrorNumber", "i", (int32_t) EPERM);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "LimitNOFILE", "t", (uint64_t) 65536);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "LimitNOFILESoft", "t", (uint64_t) 65536);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "TimeoutStopUSec", "t", c->stop_timeout_usec);
        if (r >= 0)
                r = append_strv_property(m, "ReadWritePaths", rw);
        if (r >= 0)
                r = append_strv_property(m, "SystemCallArchitectures", arch);
        if (r >= 0)
                r = append_list_property(m, "SystemCallFilter", true, filter);
        if (r >= 0)
                r = append_list_property(m, "RestrictAddressFamilies", true, families);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "RestrictNamespaces", "t", (uint64_t) 0);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)", "PrivateNetwork", "b", 1);
        if (r >= 0)
                r = append_ip_deny_any(m);
        for (size_t i = 0; i < G_N_ELEMENTS(unit_limits) && r >= 0; i++)
                if (json_object_has_member(o, unit_limits[i].option))
                        r = sd_bus_message_append(m, "(sv)", unit_limits[i].property, "t",
                                                  (uint64_t) json_object_get_int_member(o, unit_limits[i].option) *
                                                          unit_limits[i].factor);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

static int on_started(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Device *d = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e) {
                g_autofree char *unit = worker_unit_name(d->name);
                bool exists = sd_bus_error_has_name(e, "org.freedesktop.systemd1.UnitExists");
                g_autoptr(GError) error = g_error_new(MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                                                      "systemd did not start the worker unit of %s: %s%s", d->name,
                                                      e->message ? e->message : e->name,
                                                      exists ? " (a worker that no longer answers on its control "
                                                               "socket: its unit is being stopped, start again)" : "");

                /*
                 * A unit of this name that vfud could not adopt holds the
                 * device's socket without answering: end it, as the fork path
                 * kills such a worker, so that the next start (automatic
                 * after a crash) gets the name.
                 */
                if (exists)
                        (void) sd_bus_call_method_async(d->manager->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH,
                                                        SYSTEMD_MANAGER, "StopUnit", NULL, NULL, "ss", unit,
                                                        "replace");
                device_worker_spawn_failed(d, error);
        }
        device_unref(d);
        return 0;
}

/* The handoff messages: the fds CTL_MAX_FDS at a time, the last one saying done. */
static int send_handoff(int fd, GPtrArray *names, GArray *fds) {
        guint i = 0;

        do {
                guint n = MIN(fds->len - i, (guint) CTL_MAX_FDS);
                g_autoptr(GPtrArray) batch = g_ptr_array_new();
                g_autoptr(JsonNode) msg = NULL;
                int r;

                for (guint k = 0; k < n; k++)
                        g_ptr_array_add(batch, names->pdata[i + k]);
                g_ptr_array_add(batch, NULL);
                msg = ctl_request_new(0, "handoff", NULL, (const char *const *) batch->pdata);
                json_object_set_boolean_member(json_node_get_object(msg), "done", i + n == fds->len);
                r = ctl_send(fd, msg, &g_array_index(fds, int, i), n);
                if (r < 0)
                        return r;
                i += n;
        } while (i < fds->len);
        return 0;
}

static gboolean systemd_spawn(Device *d, GPtrArray *argv, GPtrArray *names, GArray *fds,
                              int *ret_ready_fd, pid_t *ret_pid, GError **error) {
        Manager *m = d->manager;
        g_autofree char *unit = worker_unit_name(d->name);
        g_autofree char *path = g_path_is_absolute(m->config.worker_path) ? g_strdup(m->config.worker_path) :
                                g_find_program_in_path(m->config.worker_path);
        g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
        sd_bus_message *msg = NULL;
        int sv[2] = { -1, -1 }, one = 1, r;
        bool called = false;

        if (!path) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_WORKER_FAILED,
                            "cannot find %s (set Executable= in the [Worker] section of vfud.conf)",
                            m->config.worker_path);
                goto fail;
        }
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
            setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "socketpair: %s", g_strerror(errno));
                goto fail;
        }
        r = send_handoff(sv[0], names, fds);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot pass the fds to the worker: %s",
                            g_strerror(-r));
                goto fail;
        }
        for (guint i = 0; i + 1 < argv->len; i++)
                g_ptr_array_add(args, g_strdup(argv->pdata[i]));
        g_ptr_array_add(args, g_strdup("--handoff-fd=0"));
        g_ptr_array_add(args, NULL);

        /* A unit left failed by an earlier worker would keep the name: clear it first (ordered before the start). */
        (void) sd_bus_call_method_async(m->bus, NULL, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                        "ResetFailedUnit", NULL, NULL, "s", unit);
        r = sd_bus_message_new_method_call(m->bus, &msg, SYSTEMD_DEST, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                           "StartTransientUnit");
        if (r >= 0)
                r = sd_bus_message_append(msg, "ss", unit, "fail");
        if (r >= 0)
                r = append_properties(msg, d, path, (char **) args->pdata, sv[1]);
        if (r >= 0)
                r = sd_bus_message_append(msg, "a(sa(sv))", 0);
        if (r >= 0) {
                called = true;
                r = sd_bus_call_async(m->bus, NULL, msg, on_started, device_ref(d), START_CALL_TIMEOUT_USEC);
        }
        if (r < 0) {
                if (called)
                        device_unref(d);        /* the reference the call would have held */
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot ask systemd for %s: %s", unit,
                            g_strerror(-r));
                goto fail;
        }
        sd_bus_message_unref(msg);
        close(sv[1]);           /* the message holds its own copy */
        for (guint i = 0; i < fds->len; i++)
                close(g_array_index(fds, int, i));
        g_array_set_size(fds, 0);
        (void) fcntl(sv[0], F_SETFL, O_NONBLOCK);
        device_log(d, G_LOG_LEVEL_INFO, "starting its worker as %s", unit);
        *ret_ready_fd = sv[0];
        *ret_pid = 0;
        return TRUE;

fail:
        sd_bus_message_unref(msg);
        for (int i = 0; i < 2; i++)
                if (sv[i] >= 0)
                        close(sv[i]);
        for (guint i = 0; i < fds->len; i++)
                close(g_array_index(fds, int, i));
        g_array_set_size(fds, 0);
        return FALSE;
}

const WorkerSpawner worker_spawner_systemd = {
        .name = "systemd",
        .spawn = systemd_spawn,
};
