/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A shut-off domain's definition moved to another libvirt (offline migration). */
#include "vlv-libvirt.h"

gboolean vlv_domain_probe(const char *uri, const char *vm, gboolean *active, gboolean *persistent, GError **error) {
        g_autoptr(virConnect) conn = NULL;
        g_autoptr(virDomain) dom = NULL;
        int a, p;

        if (!(conn = vlv_connect(uri, error)) || !(dom = vlv_lookup(conn, uri, vm, error)))
                return FALSE;
        a = virDomainIsActive(dom);
        p = virDomainIsPersistent(dom);
        if (a < 0 || p < 0) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT, "cannot read the state of VM '%s'", vm);
                return FALSE;
        }
        *active = a == 1;
        *persistent = p == 1;
        return TRUE;
}

gboolean vlv_domain_migrate_offline(const char *uri, const char *vm, const char *dest_uri, GError **error) {
        const unsigned int flags = VIR_MIGRATE_OFFLINE | VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE;
        g_autoptr(virConnect) conn = NULL, dconn = NULL;
        g_autoptr(virDomain) dom = NULL, moved = NULL;
        g_autofree char *name = NULL;

        if (!dest_uri || !*dest_uri) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID, "no destination libvirt URI given");
                return FALSE;
        }
        if (!(conn = vlv_connect(uri, error)) || !(dom = vlv_lookup(conn, uri, vm, error)))
                return FALSE;
        name = g_strdup(virDomainGetName(dom));
        if (virDomainIsActive(dom) == 1) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_RUNNING,
                            "VM '%s' is running: only a shut-off VM's definition moves "
                            "offline (shut it down first: virsh shutdown %s)",
                            name, name);
                return FALSE;
        }
        if (virDomainIsPersistent(dom) != 1) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_LIBVIRT,
                            "VM '%s' is transient: it has no persistent definition to move", name);
                return FALSE;
        }
        dconn = virConnectOpen(dest_uri);
        if (!dconn) {
                vlv_set_libvirt_error(error, VLV_ERROR_UNREACHABLE,
                                      "cannot connect to the destination libvirt at %s "
                                      "(is libvirtd or virtqemud running there, and may "
                                      "this host's root reach it, e.g. by ssh without a prompt?)",
                                      dest_uri);
                return FALSE;
        }
        moved = virDomainMigrate3(dom, dconn, NULL, 0, flags);
        if (!moved) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT,
                                      "libvirt did not migrate VM '%s' offline to %s "
                                      "(its definition here is unchanged)",
                                      name, dest_uri);
                return FALSE;
        }
        if (virDomainIsPersistent(moved) != 1) {
                vlv_set_libvirt_error(error, VLV_ERROR_LIBVIRT,
                                      "libvirt at %s reports VM '%s' migrated but not "
                                      "persistently defined there",
                                      dest_uri, name);
                return FALSE;
        }
        return TRUE;
}
