/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Migration's D-Bus surface: Manager.MigrateDevice, MigrateVm and
 * CancelMigration (arguments read, caller authorized, devices found, then
 * migrate.c), and the MigrationPeer interface another vfud calls here
 * (ReceiveImage, migrate-receive.c).  Handlers return sd-bus style: ≥ 0
 * replied or pending, negative errno with error set.
 */
#include <errno.h>
#include <string.h>

#include "common/bus-names.h"
#include "migrate.h"

#define DEFAULT_LIVE_TIMEOUT_SEC 300

static gboolean read_options(sd_bus_message *msg, bool by_vm, char **storage, uint32_t *timeout, char **libvirt_uri,
                             GError **error) {
        int r = sd_bus_message_enter_container(msg, 'a', "{sv}");

        while (r >= 0 && (r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key, *value;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        break;
                if (strcmp(key, "storage") == 0) {
                        r = sd_bus_message_read(msg, "v", "s", &value);
                        if (r < 0 || (strcmp(value, "copy") != 0 && strcmp(value, "shared") != 0)) {
                                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                            "option storage must be the string copy or shared");
                                return FALSE;
                        }
                        g_free(*storage);
                        *storage = g_strdup(value);
                } else if (strcmp(key, "timeout") == 0) {
                        r = sd_bus_message_read(msg, "v", "u", timeout);
                        if (r < 0 || *timeout == 0 || *timeout > 24 * 3600) {
                                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                            "option timeout must be seconds (u) from 1 to 86400");
                                return FALSE;
                        }
                } else if (by_vm && strcmp(key, "libvirt-uri") == 0) {
                        r = sd_bus_message_read(msg, "v", "s", &value);
                        if (r < 0 || !*value || !g_utf8_validate(value, -1, NULL) || strchr(value, '\'') ||
                            !strstr(value, ":/")) {
                                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                            "option libvirt-uri must be the destination's libvirt URI (s), "
                                            "e.g. qemu+ssh://HOST/system");
                                return FALSE;
                        }
                        g_free(*libvirt_uri);
                        *libvirt_uri = g_strdup(value);
                } else {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "unknown option '%s': migration takes storage (s: copy or shared), timeout "
                                    "(u: seconds a live hand-over may take)%s", key,
                                    by_vm ? " and libvirt-uri (s: the destination's libvirt)" : "");
                        return FALSE;
                }
                r = sd_bus_message_exit_container(msg);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(msg);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT, "malformed options: %s", g_strerror(-r));
                return FALSE;
        }
        return TRUE;
}

static gint compare_devices(gconstpointer a, gconstpointer b) {
        return strcmp((*(Device *const *) a)->name, (*(Device *const *) b)->name);
}

static int migrate(Manager *m, sd_bus_message *msg, bool by_vm, sd_bus_error *error) {
        g_autoptr(GError) gerr = NULL;
        g_autofree char *storage = g_strdup("");
        g_autofree char *libvirt_uri = NULL;
        g_autoptr(GPtrArray) list = g_ptr_array_new();
        const char *what, *dest;
        uint32_t timeout = DEFAULT_LIVE_TIMEOUT_SEC;
        MigrateRequest req;
        int r;

        r = sd_bus_message_read(msg, "ss", &what, &dest);
        if (r < 0)
                return r;
        /* Who asks comes first: an unprivileged caller learns nothing from our checks. */
        r = manager_check_authorized(m, msg, AUTH_MIGRATE, "migrating devices", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (!read_options(msg, by_vm, &storage, &timeout, &libvirt_uri, &gerr))
                return manager_set_bus_error(error, gerr);
        if (!*dest)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                         "no destination: give a bus address or [USER@]HOST");
        if (by_vm) {
                GHashTableIter it;
                gpointer v;

                g_hash_table_iter_init(&it, m->devices);
                while (g_hash_table_iter_next(&it, NULL, &v))
                        if (((Device *) v)->exported && *what && strcmp(((Device *) v)->vm, what) == 0)
                                g_ptr_array_add(list, v);
                if (list->len == 0)
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_NO_SUCH_VM, "VM '%s' has no devices here", what);
                g_ptr_array_sort(list, compare_devices);
        } else {
                Device *d = manager_find_device(m, what);

                if (!d || !d->exported)
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_NO_SUCH_DEVICE,
                                                 "no device named '%s': 'vfuctl list' shows the devices", what);
                g_ptr_array_add(list, d);
        }

        req = (MigrateRequest) { .destination = dest, .storage = storage, .timeout = timeout,
                                 .vm = by_vm ? what : NULL, .libvirt_uri = libvirt_uri };
        if (!migration_begin(m, msg, list, &req, &gerr))
                return manager_set_bus_error(error, gerr);
        return 1;
}

int manager_bus_migrate_device(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        return migrate(m, msg, false, error);
}

int manager_bus_migrate_vm(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        return migrate(m, msg, true, error);
}

int manager_bus_cancel_migration(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        g_autoptr(GError) gerr = NULL;
        g_autofree char *reason = NULL;
        const char *name;
        Device *d, *found = NULL;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        r = manager_check_authorized(m, msg, AUTH_MIGRATE, "cancelling a migration", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        d = manager_find_device(m, name);
        if (d && d->exported && d->migration)
                found = d;
        else if (!d) {
                GHashTableIter it;
                gpointer v;

                g_hash_table_iter_init(&it, m->devices);
                while (!found && g_hash_table_iter_next(&it, NULL, &v))
                        if (*name && strcmp(((Device *) v)->vm, name) == 0 && ((Device *) v)->migration)
                                found = v;
        }
        if (!found)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_NOT_RUNNING,
                                         "no migration of a device or VM named '%s' is running", name);
        reason = g_strdup_printf("the migration was cancelled (CancelMigration): nothing is left on %s, the "
                                 "devices stay here", migration_destination(found));
        if (migration_cancel_device(found, reason, &gerr) < 0)
                return manager_set_bus_error(error, gerr);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_receive_image(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return migrate_bus_receive_image(userdata, msg, error);
}

static const sd_bus_vtable migration_peer_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_NAMES("ReceiveImage", "suh",
                                 SD_BUS_PARAM(device) SD_BUS_PARAM(nsid) SD_BUS_PARAM(stream),
                                 "tt", SD_BUS_PARAM(data_bytes) SD_BUS_PARAM(extents),
                                 method_receive_image, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int migrate_bus_register(Manager *m) {
        return sd_bus_add_object_vtable(m->bus, NULL, VFUD_MANAGER_PATH, VFUD_MIGRATION_PEER_IFACE,
                                        migration_peer_vtable, m);
}
