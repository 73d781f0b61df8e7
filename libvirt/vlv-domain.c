/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Writing vfu's devices into a VM's persistent libvirt definition. */
#include "vlv-libvirt.h"

static gboolean check_persistent(virDomain *dom, GError **error) {
        if (virDomainIsPersistent(dom) == 1)
                return TRUE;
        g_set_error(error, VLV_ERROR, VLV_ERROR_LIBVIRT,
                    "VM '%s' is transient (it has no persistent definition); "
                    "vfu edits persistent definitions only: define it with "
                    "`virsh define` first",
                    virDomainGetName(dom));
        return FALSE;
}

/* The persistent definition of @vm rendered with @devs. */
static gboolean render_persistent(virConnect *conn, virDomain *dom, const VlvDevice *devs, size_t n, char **old_xml,
                                  char **new_xml, gboolean *changed, GError **error) {
        if (!check_persistent(dom, error))
                return FALSE;
        if (!vlv_check_not_elsewhere(conn, dom, devs, n, error))
                return FALSE;
        *old_xml = vlv_domain_xml(dom, TRUE, error);
        if (!*old_xml)
                return FALSE;
        return vlv_domxml_render(*old_xml, devs, n, new_xml, changed, error);
}

gboolean vlv_domain_apply(const char *uri, const char *vm, const VlvDevice *devs, size_t n_devs, GError **error) {
        g_autoptr(virConnect) conn = NULL;
        g_autoptr(virDomain) dom = NULL;
        g_autofree char *old_xml = NULL, *new_xml = NULL;
        gboolean changed = FALSE;

        if (!(conn = vlv_connect(uri, error)) || !(dom = vlv_lookup(conn, uri, vm, error)) ||
            !render_persistent(conn, dom, devs, n_devs, &old_xml, &new_xml, &changed, error))
                return FALSE;
        if (!changed)
                return TRUE;
        return vlv_define_checked(conn, dom, virDomainGetName(dom), new_xml, old_xml, devs, n_devs, error);
}

char *vlv_domain_get_xml(const char *uri, const char *vm, const VlvDevice *devs, size_t n_devs, GError **error) {
        g_autoptr(virConnect) conn = NULL;
        g_autoptr(virDomain) dom = NULL;
        g_autofree char *old_xml = NULL;
        char *new_xml = NULL;
        gboolean changed;

        if (!(conn = vlv_connect(uri, error)) || !(dom = vlv_lookup(conn, uri, vm, error)) ||
            !render_persistent(conn, dom, devs, n_devs, &old_xml, &new_xml, &changed, error))
                return NULL;
        return new_xml;
}

GPtrArray *vlv_domain_list_devices(const char *uri, const char *vm, GError **error) {
        g_autoptr(virConnect) conn = NULL;
        g_autoptr(virDomain) dom = NULL;
        g_autofree char *xml = NULL;

        if (!(conn = vlv_connect(uri, error)) || !(dom = vlv_lookup(conn, uri, vm, error)) ||
            !check_persistent(dom, error) || !(xml = vlv_domain_xml(dom, TRUE, error)))
                return NULL;
        return vlv_domxml_list_devices(xml, error);
}
