/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * org.vfu.vfud1.Device: one object per device at
 * /org/vfu/vfud1/device/<escaped name>, through a fallback vtable and a node
 * enumerator.  Methods reply when the work is done.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus-util.h"
#include "common/bus-names.h"
#include "device-dbus.h"
#include "device-type.h"
#include "manager-libvirt.h"
#include "device-limits.h"
#include "migrate.h"

char *device_bus_path(const char *name) {
        char *p = NULL;

        if (sd_bus_path_encode(VFUD_DEVICE_PATH_PREFIX, name, &p) < 0)
                return g_strdup(VFUD_DEVICE_PATH_PREFIX "/_");
        {
                char *g = g_strdup(p);

                free(p);
                return g;
        }
}

void device_emit_changed(Device *d, const char *property, ...) {
        const char *names[16];
        size_t n = 0;
        va_list ap;

        if (!d->exported || d->removed || !d->manager->bus)
                return;
        va_start(ap, property);
        for (const char *p = property; p && n < G_N_ELEMENTS(names) - 1; p = va_arg(ap, const char *))
                names[n++] = p;
        va_end(ap);
        names[n] = NULL;
        (void) sd_bus_emit_properties_changed_strv(d->manager->bus, d->object_path, VFUD_DEVICE_IFACE,
                                                   (char **) names);
}

/* ---- asynchronous replies ---- */

static void reply_done(Device *d, const GError *error, void *userdata) {
        sd_bus_message *msg = userdata;

        if (error)
                (void) manager_reply_error(msg, error);
        else
                (void) sd_bus_reply_method_return(msg, NULL);
        sd_bus_message_unref(msg);
}

static void destroy_after_stop(Device *d, const GError *error, void *userdata) {
        sd_bus_message *msg = userdata;

        if (error) {
                reply_done(d, error, msg);
                return;
        }
        if (!d->removed) {
                Manager *m = d->manager;
                g_autofree char *vm = g_strdup(d->vm);

                device_log(d, G_LOG_LEVEL_MESSAGE, "destroyed");
                manager_emit_device_removed(m, d);
                device_remove_files(d);
                manager_remove_device(m, d);
                /* Drop its entries from the VM's definition; the other devices stay. */
                if (*vm)
                        manager_libvirt_apply(m, vm, NULL, NULL);
        }
        reply_done(NULL, NULL, msg);
}

int device_bus_start(Device *d, sd_bus_message *msg, sd_bus_error *error) {
        int r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "starting a device", error);

        if (r <= 0)
                return r < 0 ? r : 1;
        if (device_is_migrating(d))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                         "device %s is being migrated: wait for the migration to finish", d->name);
        device_start(d, reply_done, sd_bus_message_ref(msg));
        return 1;
}

int device_bus_stop(Device *d, sd_bus_message *msg, sd_bus_error *error) {
        int r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "stopping a device", error);

        if (r <= 0)
                return r < 0 ? r : 1;
        if (device_is_migrating(d))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                         "device %s is being migrated: wait for the migration to finish", d->name);
        device_stop(d, reply_done, sd_bus_message_ref(msg));
        return 1;
}

int device_bus_destroy(Device *d, sd_bus_message *msg, sd_bus_error *error) {
        int r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "destroying a device", error);

        if (r <= 0)
                return r < 0 ? r : 1;
        /* an image arriving for it stops (a migration's source rolling back) */
        migrate_receive_cancel(d);
        if (device_is_migrating(d))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                         "device %s is being migrated: wait for the migration to finish", d->name);
        /* An idle device is removed inside device_stop(): keep it alive until that returns. */
        device_ref(d);
        /* A live migration's copy whose state was never loaded serves nobody yet: its client may go too. */
        if (d->incoming || d->migration_state == MIGRATION_REFUSED)
                device_stop_handed_over(d, destroy_after_stop, sd_bus_message_ref(msg));
        else
                device_stop(d, destroy_after_stop, sd_bus_message_ref(msg));
        device_unref(d);
        return 1;
}

/* ---- properties ---- */

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", device_state_to_string(d->state));
}

static int property_get_connected(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "b", (int) d->connected);
}

static int property_get_last_error(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", d->last_error ? d->last_error : "");
}

static int property_get_libvirt(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        const char *v = strcmp(property, "LibvirtStatus") == 0 ? d->libvirt_status : d->libvirt_error;

        return sd_bus_message_append(reply, "s", v ? v : "");
}

static int property_get_migration_state(sd_bus *bus, const char *path, const char *interface,
                                        const char *property, sd_bus_message *reply, void *userdata,
                                        sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", migration_state_to_string(d->migration_state));
}

static int property_get_migration_progress(sd_bus *bus, const char *path, const char *interface,
                                           const char *property, sd_bus_message *reply, void *userdata,
                                           sd_bus_error *error) {
        Device *d = userdata;

        /* the time left only once a rate is known */
        if (!d->mig_rate || !d->mig_total)
                return sd_bus_message_append(reply, "a{st}", 3, "bytes", d->mig_bytes, "total", d->mig_total,
                                             "rate", d->mig_rate);
        return sd_bus_message_append(reply, "a{st}", 4, "bytes", d->mig_bytes, "total", d->mig_total,
                                     "rate", d->mig_rate, "remaining", d->mig_remaining);
}

static int property_get_client_migration(sd_bus *bus, const char *path, const char *interface,
                                         const char *property, sd_bus_message *reply, void *userdata,
                                         sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "a{sv}", 7,
                                     "state", "s", d->client_mig.state ? d->client_mig.state : "",
                                     "client", "b", (int) d->client_mig.client,
                                     "saved", "b", (int) d->client_mig.saved,
                                     "resumed", "b", (int) d->client_mig.resumed,
                                     "failed", "b", (int) d->client_mig.failed,
                                     "bytes-read", "t", d->client_mig.bytes_read,
                                     "bytes-written", "t", d->client_mig.bytes_written);
}

static int property_get_migration_socket(sd_bus *bus, const char *path, const char *interface,
                                         const char *property, sd_bus_message *reply, void *userdata,
                                         sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", d->mig_socket ? d->mig_socket : "");
}

static int property_get_migrated_from(sd_bus *bus, const char *path, const char *interface,
                                      const char *property, sd_bus_message *reply, void *userdata,
                                      sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", d->migrated_from ? d->migrated_from : "");
}

static int property_get_pid(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "u", (uint32_t) d->pid);
}

static int property_get_backend(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return bus_append_json_object(reply, json_node_get_object(d->options));
}

static int property_get_waiting(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;

        return sd_bus_message_append(reply, "s", d->waiting ? d->waiting : "");
}

static int property_get_statistics(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(d->stats), (GCompareFunc) strcmp);
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{st}");
        if (r < 0)
                return r;
        for (GList *l = keys; l; l = l->next) {
                r = sd_bus_message_append(reply, "{st}", (const char *) l->data,
                                          *(uint64_t *) g_hash_table_lookup(d->stats, l->data));
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_limits(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return device_limits_append_property(userdata, reply);
}

/* ---- methods ---- */

static int method_start(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return device_bus_start(userdata, msg, error);
}

static int method_stop(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return device_bus_stop(userdata, msg, error);
}

static int method_destroy(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return device_bus_destroy(userdata, msg, error);
}

static int not_supported(Device *d, const char *what, sd_bus_error *error) {
        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_NOT_SUPPORTED,
                                 "%s devices have no %s (device %s)", d->type, what, d->name);
}

static int method_add_namespace(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        const char *path;
        uint32_t nsid;
        uint64_t size;
        int r;

        r = sd_bus_message_read(msg, "ust", &nsid, &path, &size);
        if (r < 0)
                return r;
        r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "adding a namespace", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (!d->dtype->namespace_add)
                return not_supported(d, "namespaces", error);
        d->dtype->namespace_add(d, nsid, path, size, reply_done, sd_bus_message_ref(msg));
        return 1;
}

static int method_remove_namespace(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        uint32_t nsid;
        int r;

        r = sd_bus_message_read(msg, "u", &nsid);
        if (r < 0)
                return r;
        r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "removing a namespace", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (!d->dtype->namespace_remove)
                return not_supported(d, "namespaces", error);
        d->dtype->namespace_remove(d, nsid, reply_done, sd_bus_message_ref(msg));
        return 1;
}

static int method_resize_namespace(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        uint32_t nsid;
        uint64_t size;
        int r;

        r = sd_bus_message_read(msg, "ut", &nsid, &size);
        if (r < 0)
                return r;
        r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "resizing a namespace", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (!d->dtype->namespace_resize)
                return not_supported(d, "namespaces", error);
        d->dtype->namespace_resize(d, nsid, size, reply_done, sd_bus_message_ref(msg));
        return 1;
}

static int method_set_link(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        int up, r;

        r = sd_bus_message_read(msg, "b", &up);
        if (r < 0)
                return r;
        r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "changing the link state", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (!d->dtype->link_set)
                return not_supported(d, "link state", error);
        d->dtype->link_set(d, up, reply_done, sd_bus_message_ref(msg));
        return 1;
}

static int method_set_limits(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Device *d = userdata;
        g_autoptr(GHashTable) opts = NULL;
        g_autoptr(GError) gerr = NULL;
        GHashTableIter it;
        gpointer k;
        uint32_t nsid;
        int r;

        r = sd_bus_message_read(msg, "u", &nsid);
        if (r < 0)
                return r;
        if (!bus_read_options(msg, d->dtype, &opts, &gerr))
                return manager_set_bus_error(error, gerr);
        g_hash_table_iter_init(&it, opts);
        while (g_hash_table_iter_next(&it, &k, NULL))
                if (!device_limits_option(d->dtype, k))
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                                 "'%s' is not a limit: SetLimits takes the limit options of CreateDevice",
                                                 (const char *) k);
        r = manager_check_authorized(d->manager, msg, AUTH_MANAGE, "changing I/O limits", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        /* A migration carries the definition it started with: a change now would stay behind. */
        if (device_is_migrating(d))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                         "device %s is being migrated: change its limits when the migration is over",
                                         d->name);
        device_limits_set(d, nsid, opts, reply_done, sd_bus_message_ref(msg));
        return 1;
}

static const sd_bus_vtable device_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(Device, name), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Type", "s", NULL, offsetof(Device, type), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Vm", "s", NULL, offsetof(Device, vm), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("SocketPath", "s", NULL, offsetof(Device, socket_path), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Connected", "b", property_get_connected, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", property_get_last_error, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LibvirtStatus", "s", property_get_libvirt, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LibvirtError", "s", property_get_libvirt, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MigrationState", "s", property_get_migration_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MigrationProgress", "a{st}", property_get_migration_progress, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MigratedFrom", "s", property_get_migrated_from, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MigrationSocket", "s", property_get_migration_socket, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ClientMigration", "a{sv}", property_get_client_migration, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("WorkerPID", "u", property_get_pid, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Restarts", "u", NULL, offsetof(Device, restarts), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Backend", "a{sv}", property_get_backend, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Statistics", "a{st}", property_get_statistics, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Limits", "a{sa{st}}", property_get_limits, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Waiting", "s", property_get_waiting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD("Start", NULL, NULL, method_start, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Stop", NULL, NULL, method_stop, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD("Destroy", NULL, NULL, method_destroy, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("AddNamespace", "ust",
                                 SD_BUS_PARAM(nsid) SD_BUS_PARAM(path) SD_BUS_PARAM(size),
                                 NULL,,
                                 method_add_namespace, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("RemoveNamespace", "u", SD_BUS_PARAM(nsid), NULL,,
                                 method_remove_namespace, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ResizeNamespace", "ut", SD_BUS_PARAM(nsid) SD_BUS_PARAM(size), NULL,,
                                 method_resize_namespace, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("SetLink", "b", SD_BUS_PARAM(up), NULL,,
                                 method_set_link, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("SetLimits", "ua{sv}", SD_BUS_PARAM(nsid) SD_BUS_PARAM(limits), NULL,,
                                 method_set_limits, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

static int device_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                              void **found, sd_bus_error *error) {
        Manager *m = userdata;
        char *name = NULL;
        Device *d;
        int r;

        r = sd_bus_path_decode(path, VFUD_DEVICE_PATH_PREFIX, &name);
        if (r <= 0)
                return 0;
        d = manager_find_device(m, name);
        free(name);
        if (!d || !d->exported)
                return 0;
        *found = d;
        return 1;
}

static int device_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                  sd_bus_error *error) {
        Manager *m = userdata;
        GHashTableIter it;
        gpointer v;
        char **l = calloc(g_hash_table_size(m->devices) + 1, sizeof(char *));
        size_t n = 0;

        if (!l)
                return -ENOMEM;
        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Device *d = v;

                if (!d->exported)
                        continue;
                l[n] = strdup(d->object_path);
                if (!l[n]) {
                        for (size_t i = 0; i < n; i++)
                                free(l[i]);
                        free(l);
                        return -ENOMEM;
                }
                n++;
        }
        *nodes = l;
        return 1;
}

int device_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_fallback_vtable(m->bus, NULL, VFUD_DEVICE_PATH_PREFIX, VFUD_DEVICE_IFACE, device_vtable,
                                       device_object_find, m);
        if (r < 0)
                return r;
        return sd_bus_add_node_enumerator(m->bus, NULL, VFUD_DEVICE_PATH_PREFIX, device_node_enumerator, m);
}
