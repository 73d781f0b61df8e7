/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfud.conf(5): a GKeyFile with [Manager], [Worker], [Libvirt] and [Metrics] sections.  Every key
 * is optional; the defaults here are what the man page documents.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "manager.h"

void manager_config_init(ManagerConfig *c) {
        memset(c, 0, sizeof(*c));
        c->state_dir = g_strdup(STATEDIR);
        c->runtime_dir = g_strdup(RUNDIR);
        c->admin_group = g_strdup("vfu");
        c->worker_path = g_build_filename(LIBEXECDIR, "vfud-worker", NULL);
        c->worker_user = g_strdup(WORKER_USER_DEFAULT);
        c->worker_units = g_strdup("auto");
        c->socket_group = g_strdup(SOCKET_GROUP_DEFAULT);
        c->socket_group_optional = true;
        c->socket_mode = 0660;
        c->seccomp = true;
        c->restart_delay_usec = G_USEC_PER_SEC;
        c->restart_burst = 5;
        c->restart_interval_usec = 60 * G_USEC_PER_SEC;
        c->start_timeout_usec = 30 * G_USEC_PER_SEC;
        c->stop_timeout_usec = 10 * G_USEC_PER_SEC;
        c->stats_interval_usec = G_USEC_PER_SEC;
        c->libvirt_enabled = true;
        c->polkit = true;
        c->libvirt_uri = g_strdup("qemu:///system");
        c->metrics_interval_usec = 15 * G_USEC_PER_SEC;
}

void manager_config_clear(ManagerConfig *c) {
        g_free(c->state_dir);
        g_free(c->runtime_dir);
        g_free(c->admin_group);
        g_free(c->worker_path);
        g_free(c->worker_user);
        g_free(c->worker_units);
        g_free(c->socket_group);
        g_free(c->libvirt_uri);
        g_free(c->metrics_dir);
        memset(c, 0, sizeof(*c));
}

typedef enum ConfigKind {
        CONFIG_STRING,
        CONFIG_PATH,            /* absolute */
        CONFIG_BOOL,
        CONFIG_UINT,
        CONFIG_SECONDS,         /* > 0, fractions allowed, stored in µs */
        CONFIG_MODE,            /* octal */
} ConfigKind;

typedef struct ConfigKey {
        const char *section, *key;
        ConfigKind kind;
        size_t offset;
} ConfigKey;

#define KEY(s, k, kind, field) { s, k, kind, offsetof(ManagerConfig, field) }
static const ConfigKey config_keys[] = {
        KEY("Manager", "StateDirectory", CONFIG_PATH, state_dir),
        KEY("Manager", "RuntimeDirectory", CONFIG_PATH, runtime_dir),
        KEY("Manager", "AdminGroup", CONFIG_STRING, admin_group),
        KEY("Manager", "Polkit", CONFIG_BOOL, polkit),
        KEY("Worker", "Executable", CONFIG_PATH, worker_path),
        KEY("Worker", "User", CONFIG_STRING, worker_user),
        KEY("Worker", "Units", CONFIG_STRING, worker_units),
        KEY("Worker", "SocketGroup", CONFIG_STRING, socket_group),
        KEY("Worker", "SocketMode", CONFIG_MODE, socket_mode),
        KEY("Worker", "Seccomp", CONFIG_BOOL, seccomp),
        KEY("Worker", "RestartDelaySec", CONFIG_SECONDS, restart_delay_usec),
        KEY("Worker", "RestartBurst", CONFIG_UINT, restart_burst),
        KEY("Worker", "RestartIntervalSec", CONFIG_SECONDS, restart_interval_usec),
        KEY("Worker", "StartTimeoutSec", CONFIG_SECONDS, start_timeout_usec),
        KEY("Worker", "StopTimeoutSec", CONFIG_SECONDS, stop_timeout_usec),
        KEY("Worker", "StatisticsIntervalSec", CONFIG_SECONDS, stats_interval_usec),
        KEY("Libvirt", "Enabled", CONFIG_BOOL, libvirt_enabled),
        KEY("Libvirt", "URI", CONFIG_STRING, libvirt_uri),
        KEY("Metrics", "TextfileDirectory", CONFIG_PATH, metrics_dir),
        KEY("Metrics", "Interval", CONFIG_SECONDS, metrics_interval_usec),
};

static const ConfigKey *config_key_find(const char *section, const char *key) {
        for (size_t i = 0; i < G_N_ELEMENTS(config_keys); i++)
                if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].key, key) == 0)
                        return &config_keys[i];
        return NULL;
}

static gboolean config_set(ManagerConfig *c, const ConfigKey *k, const char *path, const char *value,
                           GError **error) {
        void *field = (uint8_t *) c + k->offset;
        g_autofree char *v = g_strstrip(g_strdup(value));
        char *end = NULL;

        switch (k->kind) {
        case CONFIG_PATH:
                if (v[0] != '/')
                        goto bad;
                G_GNUC_FALLTHROUGH;
        case CONFIG_STRING:
                g_free(*(char **) field);
                *(char **) field = g_steal_pointer(&v);
                return TRUE;
        case CONFIG_BOOL:
                if (g_ascii_strcasecmp(v, "yes") == 0 || g_ascii_strcasecmp(v, "true") == 0 ||
                    strcmp(v, "1") == 0 || g_ascii_strcasecmp(v, "on") == 0)
                        *(bool *) field = true;
                else if (g_ascii_strcasecmp(v, "no") == 0 || g_ascii_strcasecmp(v, "false") == 0 ||
                         strcmp(v, "0") == 0 || g_ascii_strcasecmp(v, "off") == 0)
                        *(bool *) field = false;
                else
                        goto bad;
                return TRUE;
        case CONFIG_UINT: {
                unsigned long n;

                errno = 0;
                n = strtoul(v, &end, 10);
                if (errno || !*v || *end || n > 1000000)
                        goto bad;
                *(unsigned *) field = (unsigned) n;
                return TRUE;
        }
        case CONFIG_SECONDS: {
                double s = g_ascii_strtod(v, &end);

                if (!*v || *end || !(s > 0) || s > 86400)
                        goto bad;
                *(uint64_t *) field = (uint64_t) (s * G_USEC_PER_SEC);
                return TRUE;
        }
        case CONFIG_MODE: {
                unsigned long n;

                errno = 0;
                n = strtoul(v, &end, 8);
                if (errno || !*v || *end || n > 0777)
                        goto bad;
                *(mode_t *) field = (mode_t) n;
                return TRUE;
        }
        }
bad:
        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                    "%s: [%s] %s=%s is invalid: expected %s (see vfud.conf(5))", path, k->section, k->key, value,
                    k->kind == CONFIG_PATH ? "an absolute path" :
                    k->kind == CONFIG_BOOL ? "yes or no" :
                    k->kind == CONFIG_UINT ? "a number" :
                    k->kind == CONFIG_SECONDS ? "a positive number of seconds" :
                    k->kind == CONFIG_MODE ? "an octal mode such as 0660" : "a string");
        return FALSE;
}

gboolean manager_config_load(ManagerConfig *c, const char *path, bool required, GError **error) {
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) local = NULL;
        g_auto(GStrv) groups = NULL;

        if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &local)) {
                if (!required && g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return TRUE;
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "cannot read configuration %s: %s", path, local->message);
                return FALSE;
        }
        groups = g_key_file_get_groups(kf, NULL);
        for (size_t i = 0; groups[i]; i++) {
                g_auto(GStrv) keys = g_key_file_get_keys(kf, groups[i], NULL, NULL);

                for (size_t j = 0; keys && keys[j]; j++) {
                        const ConfigKey *k = config_key_find(groups[i], keys[j]);
                        g_autofree char *value = NULL;

                        if (!k) {
                                g_warning("%s: unknown setting [%s] %s, ignored", path, groups[i], keys[j]);
                                continue;
                        }
                        value = g_key_file_get_value(kf, groups[i], keys[j], NULL);
                        if (!config_set(c, k, path, value, error))
                                return FALSE;
                        if (k->offset == offsetof(ManagerConfig, socket_group))
                                c->socket_group_optional = false;
                        if (k->offset == offsetof(ManagerConfig, worker_units) &&
                            !g_strv_contains((const char *const[]) { "auto", "yes", "no", NULL }, c->worker_units)) {
                                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                            "%s: [Worker] Units=%s is invalid: expected auto, yes or no (see vfud.conf(5))",
                                            path, c->worker_units);
                                return FALSE;
                        }
                }
        }
        return TRUE;
}

static gint compare_strings(gconstpointer a, gconstpointer b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

gboolean manager_config_load_all(ManagerConfig *c, const char *path, bool required, GError **error) {
        g_autofree char *dropins = g_strconcat(path, ".d", NULL);
        g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GDir) dir = NULL;
        g_autoptr(GError) local = NULL;
        const char *entry;

        if (!manager_config_load(c, path, required, error))
                return FALSE;
        dir = g_dir_open(dropins, 0, &local);
        if (!dir) {
                if (g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
                        return TRUE;
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "cannot read %s: %s", dropins, local->message);
                return FALSE;
        }
        while ((entry = g_dir_read_name(dir)))
                if (g_str_has_suffix(entry, ".conf") && entry[0] != '.')
                        g_ptr_array_add(files, g_build_filename(dropins, entry, NULL));
        /* In the order of their names, as systemd reads its drop-ins: a later one wins. */
        g_ptr_array_sort(files, compare_strings);
        for (guint i = 0; i < files->len; i++)
                if (!manager_config_load(c, files->pdata[i], true, error))
                        return FALSE;
        return TRUE;
}
