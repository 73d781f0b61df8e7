/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libvirt connections, lookups and errors for vlv. */
#include <string.h>

#include "vlv-libvirt.h"

static void quiet_errors(void *data, virErrorPtr err) {
        /* vlv reports libvirt errors through GError; nothing on stderr */
}

static gpointer event_thread(gpointer data) {
        for (;;)
                if (virEventRunDefaultImpl() < 0)
                        g_debug("vlv: libvirt event loop iteration failed: %s", virGetLastErrorMessage());
        return NULL;
}

static gpointer init_once(gpointer data) {
        virInitialize();
        virSetErrorFunc(NULL, quiet_errors);
        if (virEventRegisterDefaultImpl() < 0)
                g_warning("vlv: cannot set up libvirt's event loop: %s", virGetLastErrorMessage());
        else
                g_thread_unref(g_thread_new("vlv-events", event_thread, NULL));
        return NULL;
}

void vlv_libvirt_init(void) {
        static GOnce once = G_ONCE_INIT;

        g_once(&once, init_once, NULL);
}

void vlv_set_libvirt_error(GError **error, VlvError code, const char *fmt, ...) {
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, VLV_ERROR, code, "%s: %s", msg, virGetLastErrorMessage());
}

virConnect *vlv_connect(const char *uri, GError **error) {
        virConnect *conn;

        vlv_libvirt_init();
        if (!uri)
                uri = VLV_DEFAULT_URI;
        conn = virConnectOpen(uri);
        if (!conn)
                vlv_set_libvirt_error(error, VLV_ERROR_UNREACHABLE,
                                      "cannot connect to libvirt at %s (is libvirtd "
                                      "or virtqemud running, and may this user "
                                      "manage VMs there?)",
                                      uri);
        return conn;
}

virDomain *vlv_lookup(virConnect *conn, const char *uri, const char *vm, GError **error) {
        virDomain *dom = NULL;

        if (!vm || !*vm) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID, "no VM name given");
                return NULL;
        }
        if (g_uuid_string_is_valid(vm))
                dom = virDomainLookupByUUIDString(conn, vm);
        if (!dom)
                dom = virDomainLookupByName(conn, vm);
        if (dom)
                return dom;
        if (virGetLastErrorCode() == VIR_ERR_NO_DOMAIN)
                g_set_error(error, VLV_ERROR, VLV_ERROR_NO_VM,
                            "there is no VM '%s' in libvirt at %s (see `virsh -c %s "
                            "list --all`)",
                            vm, uri ? uri : VLV_DEFAULT_URI, uri ? uri : VLV_DEFAULT_URI);
        else
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT, "cannot look up VM '%s'", vm);
        return NULL;
}

char *vlv_domain_xml(virDomain *dom, gboolean inactive, GError **error) {
        unsigned int flags = VIR_DOMAIN_XML_SECURE;
        char *xml, *out;

        if (inactive)
                flags |= VIR_DOMAIN_XML_INACTIVE;
        xml = virDomainGetXMLDesc(dom, flags);
        if (!xml) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT, "cannot read the definition of VM '%s'",
                                      virDomainGetName(dom));
                return NULL;
        }
        /* libvirt's strings are malloc()ed; hand out GLib-owned ones */
        out = g_strdup(xml);
        free(xml);
        return out;
}

VlvDevice *vlv_devices_view(GPtrArray *found, size_t *n) {
        VlvDevice *devs = g_new0(VlvDevice, found->len + 1);

        for (guint i = 0; i < found->len; i++) {
                VlvDomainDevice *d = found->pdata[i];

                devs[i].name = d->name;
                devs[i].socket_path = d->socket_path;
        }
        *n = found->len;
        return devs;
}

static gboolean check_one(virDomain *other, gboolean inactive, const VlvDevice *devs, size_t n, GError **error) {
        g_autofree char *xml = vlv_domain_xml(other, inactive, NULL);
        g_autoptr(GPtrArray) found = NULL;

        if (!xml || !(found = vlv_domxml_list_devices(xml, NULL)))
                return TRUE; /* unreadable: nothing known to conflict */
        for (guint k = 0; k < found->len; k++) {
                VlvDomainDevice *d = found->pdata[k];

                for (size_t i = 0; i < n; i++) {
                        if (strcmp(d->name, devs[i].name) != 0 && g_strcmp0(d->socket_path, devs[i].socket_path) != 0)
                                continue;
                        g_set_error(error, VLV_ERROR, VLV_ERROR_ATTACHED_ELSEWHERE,
                                    "device '%s' is already attached to VM '%s' (%s "
                                    "definition); detach it there first "
                                    "(vfuctl detach %s)",
                                    devs[i].name, virDomainGetName(other), inactive ? "persistent" : "running",
                                    devs[i].name);
                        return FALSE;
                }
        }
        return TRUE;
}

gboolean vlv_check_not_elsewhere(virConnect *conn, virDomain *dom, const VlvDevice *devs, size_t n, GError **error) {
        unsigned char self[VIR_UUID_BUFLEN], uuid[VIR_UUID_BUFLEN];
        virDomainPtr *doms = NULL;
        gboolean ok = TRUE;
        int count;

        if (n == 0)
                return TRUE;
        if (virDomainGetUUID(dom, self) < 0) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT, "cannot read a VM's UUID");
                return FALSE;
        }
        count = virConnectListAllDomains(conn, &doms, 0);
        if (count < 0) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT, "cannot list VMs");
                return FALSE;
        }
        for (int i = 0; i < count; i++) {
                if (ok && virDomainGetUUID(doms[i], uuid) == 0 && memcmp(uuid, self, sizeof(self)) != 0) {
                        if (virDomainIsPersistent(doms[i]) == 1)
                                ok = check_one(doms[i], TRUE, devs, n, error);
                        if (ok && virDomainIsActive(doms[i]) == 1)
                                ok = check_one(doms[i], FALSE, devs, n, error);
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        return ok;
}

static gboolean same_devices(GPtrArray *found, const VlvDevice *devs, size_t n) {
        if (found->len != n)
                return FALSE;
        for (size_t i = 0; i < n; i++) {
                gboolean seen = FALSE;

                for (guint k = 0; k < found->len && !seen; k++) {
                        VlvDomainDevice *d = found->pdata[k];

                        seen = strcmp(d->name, devs[i].name) == 0 &&
                                g_strcmp0(d->socket_path, devs[i].socket_path) == 0;
                }
                if (!seen)
                        return FALSE;
        }
        return TRUE;
}

gboolean vlv_define_checked(virConnect *conn, virDomain *dom, const char *vm, const char *xml, const char *old_xml,
                            const VlvDevice *devs, size_t n, GError **error) {
        g_autoptr(virDomain) defined = NULL;
        g_autoptr(virDomain) restored = NULL;
        g_autofree char *back = NULL;
        g_autoptr(GPtrArray) found = NULL;

        defined = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE);
        if (!defined) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT,
                                      "libvirt refused vfu's definition of VM '%s' "
                                      "(the definition is unchanged)",
                                      vm);
                return FALSE;
        }
        back = vlv_domain_xml(defined, TRUE, error);
        if (!back)
                return FALSE;
        found = vlv_domxml_list_devices(back, error);
        if (found && same_devices(found, devs, n))
                return TRUE;

        /* e.g. a driver that silently drops the qemu namespace */
        g_clear_error(error);
        if (old_xml && !(restored = virDomainDefineXMLFlags(conn, old_xml, 0)))
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT,
                                      "libvirt dropped vfu's <qemu:commandline> "
                                      "entries from VM '%s', and putting the previous "
                                      "definition back failed too",
                                      vm);
        else
                g_set_error(error, VLV_ERROR, VLV_ERROR_LIBVIRT,
                            "libvirt accepted the definition of VM '%s' but dropped "
                            "vfu's <qemu:commandline> entries (does this connection "
                            "use the QEMU driver?); the previous definition was put "
                            "back",
                            vm);
        return FALSE;
}
