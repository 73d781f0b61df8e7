/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfud's libvirt side (manager-libvirt.c): keeping each VM's persistent
 * definition in step with its devices, rendering it on request, and hot
 * attach/detach.  Every libvirt call runs in one worker thread, never on
 * the bus thread (see the "Threads" note in vlv.h); completions run back on
 * the manager's event loop in submission order.
 *
 * Device fields libvirt_status/libvirt_error (D-Bus LibvirtStatus and
 * LibvirtError) say whether a device's VM definition carries it:
 *   ""          the device belongs to no VM
 *   "disabled"  [Libvirt] Enabled=no
 *   "pending"   an update is queued
 *   "applied"   the VM's persistent definition carries the device
 *   "failed"    it could not be applied; LibvirtError says why
 *
 * When libvirt reports a VM defined, its definition is read again (see "libvirt" in
 * vfud(8)): an "applied" device it lacks was detached by someone else and vfud
 * follows (Vm ""); a device not yet applied is written in.
 */
#pragma once

#include "manager.h"

/* Completion on the event loop: result (GetVmXml's XML) or error. */
typedef void (*LibvirtDoneFunc)(Manager *m, const char *result, const GError *error, void *userdata);

/* Start the worker thread and, when enabled, the lifecycle watch.  FALSE with error on failure. */
gboolean manager_libvirt_init(Manager *m, GError **error);
/* Stop watching, finish queued work (completions get "vfud is exiting"). NULL-safe. */
void manager_libvirt_free(Manager *m);

/* Re-render vm's persistent definition with its current devices.  done may be NULL. */
void manager_libvirt_apply(Manager *m, const char *vm, LibvirtDoneFunc done, void *userdata);
/* The definition vfud would apply for vm, without applying it. */
void manager_libvirt_get_xml(Manager *m, const char *vm, LibvirtDoneFunc done, void *userdata);
/* Render in_xml (a domain definition) with vm's devices; no libvirt involved.  NULL with error. */
char *manager_libvirt_render(Manager *m, const char *vm, const char *in_xml, GError **error);
/* Hot-attach d to the running vm and record it in vm's persistent definition. */
void manager_libvirt_attach(Manager *m, Device *d, const char *vm, LibvirtDoneFunc done, void *userdata);
/* Hot-detach d from its VM and drop it from the persistent definition. */
void manager_libvirt_detach(Manager *m, Device *d, LibvirtDoneFunc done, void *userdata);

/*
 * Blocking (a libvirt round-trip each): call them from a thread of their own, never from
 * the event loop (see vlv.h "Threads").  libvirt at uri is this host's ([Libvirt] URI=).
 *
 * manager_libvirt_probe_domain: TRUE with *active when vm is defined there; FALSE with
 * error NO_SUCH_VM when it is not, LIBVIRT_UNAVAILABLE when libvirt cannot be reached.
 * manager_libvirt_migrate_domain: move the shut-off vm's definition to libvirt at dest_uri
 * (offline, persistent there, undefined here); TRUE, or FALSE with error and the
 * definition here unchanged (NOT_MIGRATABLE when the VM runs).
 */
gboolean manager_libvirt_probe_domain(const char *uri, const char *vm, bool *active, GError **error);
gboolean manager_libvirt_migrate_domain(const char *uri, const char *vm, const char *dest_uri, GError **error);

/* Set a device's libvirt status (see above) and emit the change. */
void device_set_libvirt_status(Device *d, const char *status, const char *error);
