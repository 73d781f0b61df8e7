/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * org.vfu.vfud1.Manager at /org/vfu/vfud1, with an ObjectManager: device
 * creation (idempotent for an identical definition), lookup, listing,
 * by-name start/stop/destroy, and the libvirt methods (GetVmXml,
 * AttachDevice, DetachDevice) whose libvirt calls run off the bus thread.
 */
#include <errno.h>
#include <string.h>

#include "bus-util.h"
#include "common/bus-names.h"
#include "common/util.h"
#include "device-dbus.h"
#include "device-limits.h"
#include "device-spawn.h"
#include "device-type.h"
#include "manager-libvirt.h"
#include "migrate.h"

#define VM_NAME_MAX 256

static int no_such_device(const char *name, sd_bus_error *error) {
        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_NO_SUCH_DEVICE,
                                 "no device named '%s': 'vfuctl list' shows the devices", name);
}

static Device *find_exported(Manager *m, const char *name) {
        Device *d = manager_find_device(m, name);

        return d && d->exported ? d : NULL;
}

void manager_emit_device_new(Manager *m, Device *d) {
        if (!m->bus)
                return;
        (void) sd_bus_emit_signal(m->bus, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, "DeviceNew", "so",
                                  d->name, d->object_path);
        (void) sd_bus_emit_object_added(m->bus, d->object_path);
}

void manager_emit_device_removed(Manager *m, Device *d) {
        if (!m->bus || !d->exported)
                return;
        (void) sd_bus_emit_object_removed(m->bus, d->object_path);
        (void) sd_bus_emit_signal(m->bus, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, "DeviceRemoved", "so",
                                  d->name, d->object_path);
}

static gboolean check_vm(const char *vm, GError **error) {
        size_t n = strlen(vm);

        if (n > VM_NAME_MAX || !g_utf8_validate(vm, -1, NULL) || strchr(vm, '/')) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "invalid VM name '%s': at most %d characters of UTF-8 without '/'", vm, VM_NAME_MAX);
                return FALSE;
        }
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) vm[i] < 0x20 || vm[i] == 0x7f) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "invalid VM name: it contains control characters");
                        return FALSE;
                }
        return TRUE;
}

typedef struct PendingReply {
        sd_bus_message *msg;
        char *path;
} PendingReply;

/* The VM's definition was updated (or not: LibvirtStatus says why): the creation is complete. */
static void create_applied(Manager *m, const char *result, const GError *error, void *userdata) {
        PendingReply *p = userdata;

        (void) sd_bus_reply_method_return(p->msg, "o", p->path);
        sd_bus_message_unref(p->msg);
        g_free(p->path);
        g_free(p);
}

static void create_done(Device *d, const GError *error, void *userdata) {
        sd_bus_message *msg = userdata;
        Manager *m = d->manager;

        if (error) {
                device_log(d, G_LOG_LEVEL_WARNING, "creation failed, removing it: %s", error->message);
                device_ref(d);
                device_remove_files(d);
                manager_remove_device(m, d);
                (void) manager_reply_error(msg, error);
                device_unref(d);
        } else {
                d->exported = true;
                device_log(d, G_LOG_LEVEL_MESSAGE, "created (%s%s%s)", d->type, *d->vm ? ", VM " : "", d->vm);
                manager_emit_device_new(m, d);
                if (*d->vm) {
                        PendingReply *p = g_new0(PendingReply, 1);

                        p->msg = msg;
                        p->path = g_strdup(d->object_path);
                        manager_libvirt_apply(m, d->vm, create_applied, p);
                        return;
                }
                (void) sd_bus_reply_method_return(msg, "o", d->object_path);
        }
        sd_bus_message_unref(msg);
}

static int method_create_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *type, *name, *vm;
        const DeviceType *dtype;
        g_autoptr(GHashTable) opts = NULL;
        g_autoptr(GError) gerr = NULL;
        g_autoptr(JsonNode) options = NULL;
        g_autofree char *generated = NULL;
        Device *existing, *d;
        bool incoming = false;
        g_autofree char *migrated_from = NULL;
        JsonNode *n;
        int r;

        r = sd_bus_message_read(msg, "sss", &type, &name, &vm);
        if (r < 0)
                return r;
        r = manager_check_authorized(m, msg, AUTH_MANAGE, "creating a device", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        dtype = device_type_find(type);
        if (!dtype) {
                g_autofree char *known = device_type_list();

                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                         "unknown device type '%s': use one of %s", type, known);
        }
        if (!bus_read_options(msg, dtype, &opts, &gerr))
                return manager_set_bus_error(error, gerr);
        n = g_hash_table_lookup(opts, "incoming");
        if (n) {
                incoming = json_node_get_boolean(n);
                g_hash_table_remove(opts, "incoming");
        }
        n = g_hash_table_lookup(opts, "migrated-from");
        if (n) {
                const char *from = json_node_get_string(n);

                /* a host name, persisted and shown: printable and bounded */
                for (const char *c = from; *c; c++)
                        if ((unsigned char) *c < 0x21 || *c == 0x7f || c - from >= 255)
                                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                                         "option migrated-from must be the source's host name "
                                                         "(printable, no spaces, at most 255 bytes)");
                migrated_from = g_strdup(from);
                g_hash_table_remove(opts, "migrated-from");
        }
        if (!check_vm(vm, &gerr))
                return manager_set_bus_error(error, gerr);
        if (!*name)
                name = generated = manager_generate_name(m, type, vm);
        else if (!util_check_name("device name", name, &gerr))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT, "%s", gerr->message);

        options = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(options, json_object_new());
        if (!dtype->normalize(m, name, opts, json_node_get_object(options), &gerr) ||
            !worker_unit_options_normalize(opts, json_node_get_object(options), &gerr) ||
            !device_limits_normalize(dtype, opts, json_node_get_object(options), &gerr))
                return manager_set_bus_error(error, gerr);

        existing = manager_find_device(m, name);
        if (existing) {
                if (!existing->exported)
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                                 "device %s is being created right now: try again in a moment", name);
                if (existing->dtype == dtype && strcmp(existing->vm, vm) == 0 &&
                    json_node_equal(existing->options, options))
                        return sd_bus_reply_method_return(msg, "o", existing->object_path);
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_EXISTS,
                                         "device %s already exists with a different definition (%s%s%s): destroy it first or pick another name",
                                         name, existing->type, *existing->vm ? ", VM " : "", existing->vm);
        }

        d = device_new(m, dtype, name, vm, options);
        if (migrated_from && *migrated_from)
                d->migrated_from = g_steal_pointer(&migrated_from);
        if (incoming) {
                d->incoming = true;
                d->migration_state = MIGRATION_INCOMING;
        }
        if (dtype->provision && !dtype->provision(d, &gerr)) {
                device_unref(d);
                return manager_set_bus_error(error, gerr);
        }
        if (!device_save(d, &gerr)) {
                if (dtype->unprovision)
                        dtype->unprovision(d);
                device_unref(d);
                return manager_set_bus_error(error, gerr);
        }
        manager_add_device(m, d);
        device_start(d, create_done, sd_bus_message_ref(msg));
        return 1;
}

static int method_get_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        Device *d;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        d = find_exported(m, name);
        if (!d)
                return no_such_device(name, error);
        return sd_bus_reply_method_return(msg, "o", d->object_path);
}

static gint device_compare_name(gconstpointer a, gconstpointer b) {
        return strcmp((*(Device *const *) a)->name, (*(Device *const *) b)->name);
}

static int method_list_devices(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autoptr(GPtrArray) list = g_ptr_array_new();
        sd_bus_message *reply = NULL;
        GHashTableIter it;
        gpointer v;
        const char *vm;
        int r;

        r = sd_bus_message_read(msg, "s", &vm);
        if (r < 0)
                return r;
        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Device *d = v;

                if (d->exported && (!*vm || strcmp(vm, d->vm) == 0))
                        g_ptr_array_add(list, d);
        }
        g_ptr_array_sort(list, device_compare_name);
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(sssso)");
        for (guint i = 0; r >= 0 && i < list->len; i++) {
                Device *d = list->pdata[i];

                r = sd_bus_message_append(reply, "(sssso)", d->name, d->type, d->vm,
                                          device_state_to_string(d->state), d->object_path);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_send(NULL, reply, NULL);
        sd_bus_message_unref(reply);
        return r;
}

typedef int (*DeviceBusOp)(Device *d, sd_bus_message *msg, sd_bus_error *error);

static int by_name(sd_bus_message *msg, Manager *m, DeviceBusOp op, sd_bus_error *error) {
        const char *name;
        Device *d;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        d = find_exported(m, name);
        if (!d) {
                /* Refuse the unauthorized before telling them what exists. */
                r = manager_check_authorized(m, msg, AUTH_MANAGE, "changing devices", error);
                if (r <= 0)
                        return r < 0 ? r : 1;
                return no_such_device(name, error);
        }
        return op(d, msg, error);
}

static int method_destroy_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return by_name(msg, userdata, device_bus_destroy, error);
}

static int method_start_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return by_name(msg, userdata, device_bus_start, error);
}

static int method_stop_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return by_name(msg, userdata, device_bus_stop, error);
}

/* ---- libvirt ---- */

static void reply_xml(Manager *m, const char *result, const GError *error, void *userdata) {
        sd_bus_message *msg = userdata;

        if (error)
                (void) manager_reply_error(msg, error);
        else
                (void) sd_bus_reply_method_return(msg, "s", result ? result : "");
        sd_bus_message_unref(msg);
}

static int method_get_vm_xml(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autoptr(GError) gerr = NULL;
        g_autofree char *in_xml = NULL;
        const char *vm;
        int r;

        r = sd_bus_message_read(msg, "s", &vm);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key, *value;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "domain-xml") != 0)
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                                 "unknown option '%s': GetVmXml takes domain-xml (s)", key);
                r = sd_bus_message_read(msg, "v", "s", &value);
                if (r < 0)
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                                 "option domain-xml must be a string (s)");
                g_free(in_xml);
                in_xml = g_strdup(value);
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        if (!*vm || !check_vm(vm, &gerr)) {
                if (!gerr)
                        g_set_error(&gerr, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT, "no VM given");
                return manager_set_bus_error(error, gerr);
        }
        if (in_xml) {
                /* Pure XML editing: no libvirt, so no need to leave the bus thread. */
                g_autofree char *out = manager_libvirt_render(m, vm, in_xml, &gerr);

                if (!out)
                        return manager_set_bus_error(error, gerr);
                return sd_bus_reply_method_return(msg, "s", out);
        }
        manager_libvirt_get_xml(m, vm, reply_xml, sd_bus_message_ref(msg));
        return 1;
}

typedef struct AttachCall {
        sd_bus_message *msg;
        Device *device;
        char *vm, *old_vm;
} AttachCall;

static void attach_call_free(AttachCall *a) {
        sd_bus_message_unref(a->msg);
        device_unref(a->device);
        g_free(a->vm);
        g_free(a->old_vm);
        g_free(a);
}

/* Record the device's VM (empty: none) in its definition. */
static gboolean device_set_vm(Device *d, const char *vm, GError **error) {
        g_autofree char *old = d->vm;

        d->vm = g_strdup(vm);
        if (!device_save(d, error)) {
                g_free(d->vm);
                d->vm = g_steal_pointer(&old);
                return FALSE;
        }
        device_emit_changed(d, "Vm", NULL);
        return TRUE;
}

static void attach_done(Manager *m, const char *result, const GError *error, void *userdata) {
        AttachCall *a = userdata;

        if (error) {
                g_autoptr(GError) gerr = NULL;

                /* Back to the VM it had (none). */
                if (!a->device->removed && !device_set_vm(a->device, a->old_vm, &gerr))
                        device_log(a->device, G_LOG_LEVEL_WARNING, "cannot restore its definition: %s", gerr->message);
                (void) manager_reply_error(a->msg, error);
        } else {
                device_log(a->device, G_LOG_LEVEL_MESSAGE, "attached to VM %s", a->vm);
                device_set_libvirt_status(a->device, "applied", NULL);
                (void) sd_bus_reply_method_return(a->msg, NULL);
        }
        attach_call_free(a);
}

static void attach_started(Device *d, const GError *error, void *userdata) {
        AttachCall *a = userdata;
        g_autoptr(GError) gerr = NULL;

        if (error) {
                (void) manager_reply_error(a->msg, error);
                attach_call_free(a);
                return;
        }
        /*
         * Record the VM first: the attach redefines the domain, and the
         * re-render that libvirt's event triggers must already include the
         * device, or it would drop it again.
         */
        if (!d->removed && !device_set_vm(d, a->vm, &gerr)) {
                (void) manager_reply_error(a->msg, gerr);
                attach_call_free(a);
                return;
        }
        manager_libvirt_attach(d->manager, d, a->vm, attach_done, a);
}

static int method_attach_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autoptr(GError) gerr = NULL;
        const char *name, *vm;
        AttachCall *a;
        Device *d;
        int r;

        r = sd_bus_message_read(msg, "ss", &name, &vm);
        if (r < 0)
                return r;
        r = manager_check_authorized(m, msg, AUTH_MANAGE, "attaching a device", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        d = find_exported(m, name);
        if (!d)
                return no_such_device(name, error);
        if (!*vm || !check_vm(vm, &gerr)) {
                if (!gerr)
                        g_set_error(&gerr, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT, "no VM given");
                return manager_set_bus_error(error, gerr);
        }
        if (device_is_migrating(d))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY, "device %s is being migrated", name);
        if (*d->vm && strcmp(d->vm, vm) != 0)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                         "device %s belongs to VM %s: detach it first (vfuctl detach %s)",
                                         name, d->vm, name);
        a = g_new0(AttachCall, 1);
        a->msg = sd_bus_message_ref(msg);
        a->device = device_ref(d);
        a->vm = g_strdup(vm);
        a->old_vm = g_strdup(d->vm);
        /* The VM connects at once: the device must listen first. */
        device_start(d, attach_started, a);
        return 1;
}

static void detach_done(Manager *m, const char *result, const GError *error, void *userdata) {
        AttachCall *a = userdata;

        if (error) {
                g_autoptr(GError) gerr = NULL;

                /* Still in the VM (the unplug may be pending in the guest): say so again. */
                if (!a->device->removed && !device_set_vm(a->device, a->old_vm, &gerr))
                        device_log(a->device, G_LOG_LEVEL_WARNING, "cannot restore its definition: %s", gerr->message);
                (void) manager_reply_error(a->msg, error);
        } else {
                device_log(a->device, G_LOG_LEVEL_MESSAGE, "detached from VM %s", a->old_vm);
                device_set_libvirt_status(a->device, "", NULL);
                (void) sd_bus_reply_method_return(a->msg, NULL);
        }
        attach_call_free(a);
}

static int method_detach_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autoptr(GError) gerr = NULL;
        const char *name;
        AttachCall *a;
        Device *d;
        int r;

        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        r = manager_check_authorized(m, msg, AUTH_MANAGE, "detaching a device", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        d = find_exported(m, name);
        if (!d)
                return no_such_device(name, error);
        if (!*d->vm)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                         "device %s belongs to no VM: there is nothing to detach", name);
        if (device_is_migrating(d))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY, "device %s is being migrated", name);
        a = g_new0(AttachCall, 1);
        a->msg = sd_bus_message_ref(msg);
        a->device = device_ref(d);
        a->old_vm = g_strdup(d->vm);
        /* The detach job takes the VM from the job, not the device: forget it first so that a
         * re-render triggered meanwhile does not put the device back. */
        manager_libvirt_detach(m, d, detach_done, a);
        if (!device_set_vm(d, "", &gerr)) {
                device_log(d, G_LOG_LEVEL_WARNING, "cannot record the detach: %s", gerr->message);
        }
        return 1;
}

static int method_migrate_device(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return manager_bus_migrate_device(userdata, msg, error);
}

static int method_migrate_vm(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return manager_bus_migrate_vm(userdata, msg, error);
}

static int property_get_types(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        int r = sd_bus_message_open_container(reply, 'a', "s");

        for (size_t i = 0; r >= 0 && device_types[i]; i++)
                r = sd_bus_message_append(reply, "s", device_types[i]->name);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        if (strcmp(property, "StateDirectory") == 0)
                return sd_bus_message_append(reply, "s", m->config.state_dir);
        return sd_bus_message_append(reply, "s", m->config.runtime_dir);
}

static int method_cancel_migration(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return manager_bus_cancel_migration(userdata, msg, error);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("DeviceTypes", "as", property_get_types, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("StateDirectory", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("RuntimeDirectory", "s", property_get_string, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_NAMES("CreateDevice", "sssa{sv}",
                                 SD_BUS_PARAM(type) SD_BUS_PARAM(name) SD_BUS_PARAM(vm) SD_BUS_PARAM(options),
                                 "o", SD_BUS_PARAM(path),
                                 method_create_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("DestroyDevice", "s", SD_BUS_PARAM(name), NULL,,
                                 method_destroy_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetDevice", "s", SD_BUS_PARAM(name), "o", SD_BUS_PARAM(path),
                                 method_get_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("ListDevices", "s", SD_BUS_PARAM(vm), "a(sssso)", SD_BUS_PARAM(devices),
                                 method_list_devices, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("StartDevice", "s", SD_BUS_PARAM(name), NULL,,
                                 method_start_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("StopDevice", "s", SD_BUS_PARAM(name), NULL,,
                                 method_stop_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("GetVmXml", "sa{sv}", SD_BUS_PARAM(vm) SD_BUS_PARAM(options),
                                 "s", SD_BUS_PARAM(xml),
                                 method_get_vm_xml, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("AttachDevice", "ss", SD_BUS_PARAM(name) SD_BUS_PARAM(vm), NULL,,
                                 method_attach_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("DetachDevice", "s", SD_BUS_PARAM(name), NULL,,
                                 method_detach_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("MigrateDevice", "ssa{sv}",
                                 SD_BUS_PARAM(name) SD_BUS_PARAM(destination) SD_BUS_PARAM(options), NULL,,
                                 method_migrate_device, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("MigrateVm", "ssa{sv}",
                                 SD_BUS_PARAM(vm) SD_BUS_PARAM(destination) SD_BUS_PARAM(options),
                                 "ss", SD_BUS_PARAM(domain_uri) SD_BUS_PARAM(domain_note),
                                 method_migrate_vm, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_NAMES("CancelMigration", "s", SD_BUS_PARAM(name), NULL,,
                                 method_cancel_migration, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_NAMES("DeviceNew", "so", SD_BUS_PARAM(name) SD_BUS_PARAM(path), 0),
        SD_BUS_SIGNAL_WITH_NAMES("DeviceRemoved", "so", SD_BUS_PARAM(name) SD_BUS_PARAM(path), 0),
        SD_BUS_VTABLE_END,
};

int manager_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, NULL, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, manager_vtable, m);
        if (r >= 0)
                r = migrate_bus_register(m);
        if (r < 0)
                return r;
        return sd_bus_add_object_manager(m->bus, NULL, VFUD_MANAGER_PATH);
}
