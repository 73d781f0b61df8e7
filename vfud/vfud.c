/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfud: the vfio-user device manager.  See vfud(8).
 *
 * Exit status: 0 after SIGTERM/SIGINT, 1 on a start-up failure (the reason
 * is logged), 2 for bad command-line arguments.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/bus-names.h"
#include "manager.h"
#include "manager-libvirt.h"

static const sd_bus_error_map vfud_errors[] = {
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_NO_SUCH_DEVICE, ENOENT),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_DEVICE_EXISTS, EEXIST),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_INVALID_ARGUMENT, EINVAL),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_BACKEND_FAILED, EIO),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_DEVICE_BUSY, EBUSY),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_NOT_SUPPORTED, EOPNOTSUPP),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_WORKER_FAILED, ECHILD),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_NOT_RUNNING, ESRCH),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_LIBVIRT_UNAVAILABLE, EHOSTUNREACH),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_NO_SUCH_VM, ENXIO),
        SD_BUS_ERROR_MAP(VFUD_DBUS_ERROR_NOT_MIGRATABLE, EXDEV),
        SD_BUS_ERROR_MAP_END,
};

int main(int argc, char **argv) {
        g_autofree char *bus = NULL, *state_dir = NULL, *runtime_dir = NULL, *config = NULL, *worker = NULL;
        gboolean version = FALSE;
        GOptionEntry entries[] = {
                { "bus", 0, 0, G_OPTION_ARG_STRING, &bus, "Bus to serve on: system (default), session, or an address", "BUS" },
                { "config", 0, 0, G_OPTION_ARG_FILENAME, &config, "Configuration file (default " SYSCONFDIR "/vfud/vfud.conf)", "FILE" },
                { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "Device definitions and images (default " STATEDIR ")", "DIR" },
                { "runtime-dir", 0, 0, G_OPTION_ARG_FILENAME, &runtime_dir, "Sockets and worker state (default " RUNDIR ")", "DIR" },
                { "worker", 0, 0, G_OPTION_ARG_FILENAME, &worker, "The vfud-worker program", "PATH" },
                { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Show the version", NULL },
                { NULL },
        };
        g_autoptr(GOptionContext) ctx = g_option_context_new("- vfio-user device manager");
        g_autoptr(GError) error = NULL;
        g_autoptr(Manager) m = NULL;
        ManagerConfig c;
        bool config_required;
        sigset_t mask;
        int r;

        g_option_context_add_main_entries(ctx, entries, NULL);
        g_option_context_set_description(ctx, "See vfud(8) and vfud.conf(5).");
        if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
                fprintf(stderr, "vfud: %s (see --help)\n", error->message);
                return 2;
        }
        if (version) {
                printf("vfud %s\n", PACKAGE_VERSION);
                return 0;
        }
        if (argc > 1) {
                fprintf(stderr, "vfud: unexpected argument '%s' (see --help)\n", argv[1]);
                return 2;
        }
        if (!bus && getenv(VFUD_BUS_ENV))
                bus = g_strdup(getenv(VFUD_BUS_ENV));
        if (!worker && getenv("VFUD_WORKER"))
                worker = g_strdup(getenv("VFUD_WORKER"));

        /* Only a configuration file given explicitly must exist. */
        config_required = config != NULL;
        if (!config)
                config = g_strdup(SYSCONFDIR "/vfud/vfud.conf");
        manager_config_init(&c);
        if (!manager_config_load_all(&c, config, config_required, &error)) {
                g_printerr("vfud: %s\n", error->message);
                manager_config_clear(&c);
                return 1;
        }
        if (state_dir) {
                g_free(c.state_dir);
                c.state_dir = g_steal_pointer(&state_dir);
        }
        if (runtime_dir) {
                g_free(c.runtime_dir);
                c.runtime_dir = g_steal_pointer(&runtime_dir);
        }
        if (worker) {
                g_free(c.worker_path);
                c.worker_path = g_steal_pointer(&worker);
        }

        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        (void) sd_bus_error_add_map(vfud_errors);

        m = manager_new(&c, &error);
        manager_config_clear(&c);
        if (m)
                m->config_path = g_steal_pointer(&config);
        if (!m || !manager_connect_bus(m, bus, &error) || !manager_restore(m, &error) ||
            !manager_libvirt_init(m, &error)) {
                g_printerr("vfud: %s\n", error->message);
                return 1;
        }
        r = manager_run(m);
        if (r < 0) {
                g_printerr("vfud: event loop failed: %s\n", g_strerror(-r));
                return 1;
        }
        return 0;
}
