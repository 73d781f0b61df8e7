/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal: the libvirt-facing helpers shared by vlv's API files. */
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/libvirt-qemu.h>
#include <libvirt/virterror.h>
#include <json-glib/json-glib.h>

#include "vlv-private.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

/* Process-wide setup, once: libvirt initialised, its default error
 * printer silenced (errors travel in GErrors), and libvirt's default
 * event loop running in a thread "vlv-events" (keepalives, domain and
 * QEMU monitor events).  vlv owns the process's libvirt event loop: do
 * not register another one. */
void vlv_libvirt_init(void);

/* Open @uri (NULL: VLV_DEFAULT_URI); VLV_ERROR_UNREACHABLE on failure. */
virConnect *vlv_connect(const char *uri, GError **error);

/* Look @vm up by UUID or name; VLV_ERROR_NO_VM when there is none. */
virDomain *vlv_lookup(virConnect *conn, const char *uri, const char *vm, GError **error);

/* Set @error with @code and the message, followed by libvirt's last
 * error message for this thread. */
void vlv_set_libvirt_error(GError **error, VlvError code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* The domain's definition: persistent (@inactive) or live; SECURE so that
 * redefining it keeps passwords.  NULL with VLV_ERROR_LIBVIRT. */
char *vlv_domain_xml(virDomain *dom, gboolean inactive, GError **error);

/* Refuse when a device of @devs (by name or socket path) is already in
 * the definition (persistent or live) of another domain than @dom. */
gboolean vlv_check_not_elsewhere(virConnect *conn, virDomain *dom, const VlvDevice *devs, size_t n, GError **error);

/* Define @xml; VLV_ERROR_LIBVIRT on refusal.  Then read the definition
 * back and check libvirt kept exactly @devs; if it did not, put @old_xml
 * back and fail. */
gboolean vlv_define_checked(virConnect *conn, virDomain *dom, const char *vm, const char *xml, const char *old_xml,
                            const VlvDevice *devs, size_t n, GError **error);

/* The VlvDevice views of a list of VlvDomainDevice (pointing into it). */
VlvDevice *vlv_devices_view(GPtrArray *found, size_t *n);
