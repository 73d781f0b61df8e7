/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Hot attach and detach through libvirt's QEMU monitor pass-through
 * (QMP device_add / device_del), recorded in the persistent definition.
 * libvirt does not know these devices: they do not appear in the live
 * XML, so presence is read from QEMU (qom-list /machine/peripheral).
 */
#include <string.h>

#include "vlv-libvirt.h"
#include "vlv-hotplug.h"

/* Run one QMP command; returns its "return" member (a new node), or
 * NULL with VLV_ERROR_HOTPLUG carrying QEMU's description. */
JsonNode *vlv_qmp(virDomain *dom, const char *execute, JsonNode *arguments, GError **error) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) cmd = NULL;
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autofree char *text = NULL;
        char *result = NULL;
        JsonObject *reply;
        JsonNode *root;
        gboolean parsed;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "execute");
        json_builder_add_string_value(b, execute);
        if (arguments) {
                json_builder_set_member_name(b, "arguments");
                json_builder_add_value(b, json_node_copy(arguments));
        }
        json_builder_end_object(b);
        cmd = json_builder_get_root(b);
        json_generator_set_root(gen, cmd);
        text = json_generator_to_data(gen, NULL);

        if (virDomainQemuMonitorCommand(dom, text, &result, VIR_DOMAIN_QEMU_MONITOR_COMMAND_DEFAULT) < 0) {
                vlv_set_libvirt_error(error, VLV_ERROR_HOTPLUG, "QEMU monitor command %s on VM '%s' failed", execute,
                                      virDomainGetName(dom));
                return NULL;
        }
        parsed = json_parser_load_from_data(parser, result, -1, NULL);
        free(result);
        root = parsed ? json_parser_get_root(parser) : NULL;
        if (!root || JSON_NODE_TYPE(root) != JSON_NODE_OBJECT) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_HOTPLUG,
                            "QEMU answered %s on VM '%s' with something that is "
                            "not a QMP reply",
                            execute, virDomainGetName(dom));
                return NULL;
        }
        reply = json_node_get_object(root);
        if (json_object_has_member(reply, "error")) {
                JsonObject *e = json_object_get_object_member(reply, "error");
                const char *desc = e ? json_object_get_string_member_with_default(e, "desc", NULL) : NULL;

                g_set_error(error, VLV_ERROR, VLV_ERROR_HOTPLUG, "QEMU refused %s on VM '%s': %s", execute,
                            virDomainGetName(dom), desc ? desc : "no reason given");
                return NULL;
        }
        if (!json_object_has_member(reply, "return"))
                return json_node_new(JSON_NODE_NULL);
        return json_node_copy(json_object_get_member(reply, "return"));
}

/* Is a device with QEMU id @id plugged into the running @dom? */
gboolean vlv_qmp_has_device(virDomain *dom, const char *id, gboolean *present, GError **error) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonNode) args = NULL, ret = NULL;
        JsonArray *list;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "path");
        json_builder_add_string_value(b, "/machine/peripheral");
        json_builder_end_object(b);
        args = json_builder_get_root(b);
        if (!(ret = vlv_qmp(dom, "qom-list", args, error)))
                return FALSE;
        *present = FALSE;
        if (JSON_NODE_TYPE(ret) != JSON_NODE_ARRAY)
                return TRUE;
        list = json_node_get_array(ret);
        for (guint i = 0; i < json_array_get_length(list); i++) {
                JsonObject *o = json_array_get_object_element(list, i);
                const char *name = o ? json_object_get_string_member_with_default(o, "name", NULL) : NULL;

                if (g_strcmp0(name, id) == 0)
                        *present = TRUE;
        }
        return TRUE;
}

gboolean vlv_qmp_device_add(virDomain *dom, const char *device_json, GError **error) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(JsonNode) ret = NULL;

        if (!json_parser_load_from_data(p, device_json, -1, NULL)) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_XML, "vfu's -device argument is not JSON: %s", device_json);
                return FALSE;
        }
        ret = vlv_qmp(dom, "device_add", json_parser_get_root(p), error);
        return ret != NULL;
}

/* ------------------------------------------------------ device_del wait */

/*
 * QEMU's vfio-user client up to at least 11.1.3 aborts on device_del of a
 * vfio-user-pci function with MSI-X ("memory_region_del_subregion:
 * Assertion `subregion->container == mr' failed", seen by vfu's VM
 * suite: the PBA overlay is deleted in finalize from a BAR unrealize tore
 * down), killing the VM.  A function without MSI-X (an NVMe device made
 * with msi) never reaches that code.  No fixed release is known, so hot
 * unplug of an MSI-X function is refused below this version; raise it
 * when QEMU fixes the unplug path.
 */
#define VLV_QEMU_UNPLUG_OK_MAJOR 11
#define VLV_QEMU_UNPLUG_OK_MINOR 2

static gboolean check_unplug_safe(virDomain *dom, gboolean msix, GError **error) {
        g_autoptr(JsonNode) ret = NULL;
        JsonObject *o, *q;
        gint64 major, minor, micro;

        if (!msix)
                return TRUE;
        ret = vlv_qmp(dom, "query-version", NULL, error);
        if (!ret)
                return FALSE;
        o = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;
        q = o && json_object_has_member(o, "qemu") ? json_object_get_object_member(o, "qemu") : NULL;
        if (!q)
                return TRUE; /* unknown: let QEMU decide */
        major = json_object_get_int_member_with_default(q, "major", 0);
        minor = json_object_get_int_member_with_default(q, "minor", 0);
        micro = json_object_get_int_member_with_default(q, "micro", 0);
        if (major > VLV_QEMU_UNPLUG_OK_MAJOR ||
            (major == VLV_QEMU_UNPLUG_OK_MAJOR && minor >= VLV_QEMU_UNPLUG_OK_MINOR))
                return TRUE;
        g_set_error(error, VLV_ERROR, VLV_ERROR_HOTPLUG,
                    "VM '%s' runs QEMU %" G_GINT64_FORMAT ".%" G_GINT64_FORMAT ".%" G_GINT64_FORMAT
                    ", whose vfio-user client aborts when a device "
                    "with MSI-X is hot-unplugged (the VM would crash); shut the VM down and "
                    "detach the device then (the persistent definition is unchanged), or "
                    "use an NVMe device created with msi (--msi), which QEMU can unplug",
                    virDomainGetName(dom), major, minor, micro);
        return FALSE;
}

typedef struct {
        GMutex lock;
        GCond cond;
        char *id;
        gboolean deleted;
} DeleteWait;

static DeleteWait *delete_wait_new(const char *id) {
        DeleteWait *w = g_atomic_rc_box_new0(DeleteWait);

        g_mutex_init(&w->lock);
        g_cond_init(&w->cond);
        w->id = g_strdup(id);
        return w;
}

static void delete_wait_clear(DeleteWait *w) {
        g_mutex_clear(&w->lock);
        g_cond_clear(&w->cond);
        g_free(w->id);
}

static void delete_wait_unref(void *w) {
        g_atomic_rc_box_release_full(w, (GDestroyNotify) delete_wait_clear);
}

/* QEMU monitor event, in the vlv-events thread */
static void on_monitor_event(virConnectPtr conn, virDomainPtr dom, const char *event, long long seconds,
                             unsigned int micros, const char *details, void *opaque) {
        DeleteWait *w = opaque;
        g_autoptr(JsonParser) p = json_parser_new();
        JsonNode *root;
        const char *device = NULL;

        if (g_strcmp0(event, "DEVICE_DELETED") != 0 || !details || !json_parser_load_from_data(p, details, -1, NULL))
                return;
        root = json_parser_get_root(p);
        if (root && JSON_NODE_TYPE(root) == JSON_NODE_OBJECT)
                device = json_object_get_string_member_with_default(json_node_get_object(root), "device", NULL);
        if (g_strcmp0(device, w->id) != 0)
                return;
        g_mutex_lock(&w->lock);
        w->deleted = TRUE;
        g_cond_broadcast(&w->cond);
        g_mutex_unlock(&w->lock);
}

gboolean vlv_qmp_device_del_wait(virConnect *conn, virDomain *dom, const char *id, guint timeout_ms, GError **error) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonNode) args = NULL, ret = NULL;
        DeleteWait *w = delete_wait_new(id);
        gboolean done, present = TRUE, ok = FALSE;
        gint64 deadline;
        int cb;

        /* listen before asking, so the event cannot slip past */
        cb = virConnectDomainQemuMonitorEventRegister(conn, dom, "DEVICE_DELETED", on_monitor_event,
                                                      g_atomic_rc_box_acquire(w), delete_wait_unref, 0);
        if (cb < 0) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT, "cannot watch QEMU events of VM '%s'",
                                      virDomainGetName(dom));
                delete_wait_unref(w); /* the reference given to libvirt */
                delete_wait_unref(w);
                return FALSE;
        }

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "id");
        json_builder_add_string_value(b, id);
        json_builder_end_object(b);
        args = json_builder_get_root(b);
        ret = vlv_qmp(dom, "device_del", args, error);
        if (ret) {
                deadline = g_get_monotonic_time() + (gint64) timeout_ms * G_TIME_SPAN_MILLISECOND;
                g_mutex_lock(&w->lock);
                while (!w->deleted && g_cond_wait_until(&w->cond, &w->lock, deadline))
                        ;
                done = w->deleted;
                g_mutex_unlock(&w->lock);
                /* the event is the signal; QEMU's device list is the truth */
                if (virDomainIsActive(dom) != 1)
                        g_set_error(error, VLV_ERROR, VLV_ERROR_HOTPLUG,
                                    "VM '%s' stopped while device %s was being "
                                    "unplugged; the persistent definition is unchanged",
                                    virDomainGetName(dom), id);
                else if (vlv_qmp_has_device(dom, id, &present, error))
                        ok = !present;
                if (!ok && !(error && *error))
                        g_set_error(error, VLV_ERROR, VLV_ERROR_TIMEOUT,
                                    "the guest in VM '%s' did not release device %s "
                                    "within %u ms%s; the unplug request stays pending "
                                    "and the persistent definition is unchanged: check "
                                    "the guest (is its OS running and does it support "
                                    "PCI hot-unplug?) and detach again",
                                    virDomainGetName(dom), id, timeout_ms,
                                    done ? " (QEMU reported it deleted, yet it is still listed)" : "");
        }
        virConnectDomainQemuMonitorEventDeregister(conn, cb);
        delete_wait_unref(w);
        return ok;
}

/* ------------------------------------------------------ attach / detach */

/* @devs from the persistent definition, with @dev added or replaced
 * (@dev NULL: @drop removed).  Pointers are into @found and @dev. */
static VlvDevice *edited_set(GPtrArray *found, const VlvDevice *dev, const char *drop, size_t *n) {
        VlvDevice *devs = g_new0(VlvDevice, found->len + 2);

        *n = 0;
        for (guint i = 0; i < found->len; i++) {
                VlvDomainDevice *d = found->pdata[i];

                if ((dev && strcmp(d->name, dev->name) == 0) || (drop && strcmp(d->name, drop) == 0))
                        continue;
                devs[*n].name = d->name;
                devs[*n].socket_path = d->socket_path;
                (*n)++;
        }
        if (dev)
                devs[(*n)++] = *dev;
        return devs;
}

/* The `-device` JSON vfu rendered for device @name in @xml. */
static char *rendered_device_json(const char *xml, const char *name, GError **error) {
        g_autoptr(xmlDoc) doc = vlv_xml_parse(xml, error);
        g_autoptr(GPtrArray) pairs = NULL;
        g_autofree char *id = g_strconcat(VLV_DEVICE_PREFIX, name, NULL);
        xmlNode *cmdline = NULL;

        if (!doc || !vlv_cmdline_find(xmlDocGetRootElement(doc), &cmdline, error))
                return NULL;
        pairs = vlv_cmdline_vfu_pairs(cmdline);
        for (guint i = 0; i < pairs->len; i++) {
                VlvArgPair *p = pairs->pdata[i];

                if (strcmp(p->id, id) == 0)
                        return (char *) xmlGetProp(p->value, BAD_CAST "value");
        }
        g_set_error(error, VLV_ERROR, VLV_ERROR_XML, "device %s is missing from the rendered definition", name);
        return NULL;
}

/* The running VM can take a vfio-user device at @bus: shared fd-backed
 * RAM, and vfu's controllers (it was started with vfu devices). */
static gboolean check_live(virDomain *dom, const char *bus, GError **error) {
        g_autofree char *xml = vlv_domain_xml(dom, FALSE, error);
        g_autoptr(xmlDoc) doc = NULL;
        g_autoptr(GPtrArray) pairs = NULL;
        g_autofree char *vm = NULL;
        xmlNode *root, *cmdline = NULL;
        gboolean changed = FALSE;

        if (!xml || !(doc = vlv_xml_parse(xml, error)))
                return FALSE;
        root = xmlDocGetRootElement(doc);
        vm = vlv_xml_domain_name(root);
        if (!vlv_memory_prepare(root, vm, FALSE, &changed, error) || !vlv_cmdline_find(root, &cmdline, error))
                return FALSE;
        pairs = vlv_cmdline_vfu_pairs(cmdline);
        for (guint i = 0; i < pairs->len; i++) {
                VlvArgPair *p = pairs->pdata[i];

                if (g_strcmp0(p->id, bus) == 0)
                        return TRUE;
        }
        g_set_error(error, VLV_ERROR, VLV_ERROR_HOTPLUG,
                    "VM '%s' was started without vfu's hot-plug ports (it had no "
                    "vfio-user device at boot), so a device cannot be hot-plugged "
                    "into it; record the device in its definition (apply) and "
                    "restart the VM",
                    vm);
        return FALSE;
}

gboolean vlv_attach(const char *uri, const char *vm, const VlvDevice *dev, GError **error) {
        g_autoptr(virConnect) conn = NULL;
        g_autoptr(virDomain) dom = NULL;
        g_autofree char *old_xml = NULL, *new_xml = NULL, *json = NULL, *id = NULL;
        g_autofree VlvDevice *devs = NULL;
        g_autoptr(GPtrArray) found = NULL;
        g_autoptr(VlvDomainDevice) placed = NULL;
        gboolean changed = FALSE, plugged = FALSE, present = FALSE;
        size_t n;

        if (!vlv_device_check(dev, error) || !(conn = vlv_connect(uri, error)) ||
            !(dom = vlv_lookup(conn, uri, vm, error)))
                return FALSE;
        if (virDomainIsPersistent(dom) != 1) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_LIBVIRT,
                            "VM '%s' is transient; vfu attaches devices to persistent "
                            "VMs only",
                            virDomainGetName(dom));
                return FALSE;
        }
        if (!vlv_check_not_elsewhere(conn, dom, dev, 1, error) || !(old_xml = vlv_domain_xml(dom, TRUE, error)) ||
            !(found = vlv_domxml_list_devices(old_xml, error)))
                return FALSE;
        devs = edited_set(found, dev, NULL, &n);
        if (!vlv_domxml_render(old_xml, devs, n, &new_xml, &changed, error))
                return FALSE;

        if (virDomainIsActive(dom) == 1) {
                g_autoptr(GPtrArray) rendered = vlv_domxml_list_devices(new_xml, error);

                id = g_strconcat(VLV_DEVICE_PREFIX, dev->name, NULL);
                if (!rendered)
                        return FALSE;
                for (guint i = 0; i < rendered->len; i++) {
                        VlvDomainDevice *d = rendered->pdata[i];

                        if (strcmp(d->name, dev->name) == 0)
                                placed = g_steal_pointer(&rendered->pdata[i]);
                }
                if (!placed) {
                        g_set_error(error, VLV_ERROR, VLV_ERROR_XML,
                                    "device %s is missing from the rendered definition", dev->name);
                        return FALSE;
                }
                if (!check_live(dom, placed->bus, error) || !vlv_qmp_has_device(dom, id, &present, error))
                        return FALSE;
                if (!present) {
                        if (!(json = rendered_device_json(new_xml, dev->name, error)) ||
                            !vlv_qmp_device_add(dom, json, error))
                                return FALSE;
                        plugged = TRUE;
                }
        }
        if (!changed)
                return TRUE;
        if (vlv_define_checked(conn, dom, virDomainGetName(dom), new_xml, old_xml, devs, n, error))
                return TRUE;
        if (plugged) {
                /* undo: the device must not stay live without a record */
                g_autoptr(JsonBuilder) b = json_builder_new();
                g_autoptr(JsonNode) args = NULL, ret = NULL;

                json_builder_begin_object(b);
                json_builder_set_member_name(b, "id");
                json_builder_add_string_value(b, id);
                json_builder_end_object(b);
                args = json_builder_get_root(b);
                ret = vlv_qmp(dom, "device_del", args, NULL);
        }
        return FALSE;
}

gboolean vlv_detach(const char *uri, const char *vm, const char *name, gboolean msix, guint timeout_ms,
                    GError **error) {
        g_autoptr(virConnect) conn = NULL;
        g_autoptr(virDomain) dom = NULL;
        g_autofree char *old_xml = NULL, *new_xml = NULL, *id = NULL;
        g_autofree VlvDevice *devs = NULL;
        g_autoptr(GPtrArray) found = NULL;
        gboolean changed = FALSE, present = FALSE;
        VlvDevice probe = { .name = name, .socket_path = "/" };
        size_t n;

        if (!vlv_device_check(&probe, error) || !(conn = vlv_connect(uri, error)) ||
            !(dom = vlv_lookup(conn, uri, vm, error)))
                return FALSE;
        id = g_strconcat(VLV_DEVICE_PREFIX, name, NULL);
        if (virDomainIsActive(dom) == 1) {
                if (!vlv_qmp_has_device(dom, id, &present, error))
                        return FALSE;
                if (present &&
                    (!check_unplug_safe(dom, msix, error) ||
                     !vlv_qmp_device_del_wait(conn, dom, id, timeout_ms, error)))
                        return FALSE;
        }
        if (virDomainIsPersistent(dom) != 1)
                return TRUE;
        if (!(old_xml = vlv_domain_xml(dom, TRUE, error)) || !(found = vlv_domxml_list_devices(old_xml, error)))
                return FALSE;
        devs = edited_set(found, NULL, name, &n);
        if (n == found->len)
                return TRUE; /* not in the definition */
        if (!vlv_domxml_render(old_xml, devs, n, &new_xml, &changed, error))
                return FALSE;
        if (!changed)
                return TRUE;
        return vlv_define_checked(conn, dom, virDomainGetName(dom), new_xml, old_xml, devs, n, error);
}
