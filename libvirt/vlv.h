/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vlv — vfu's libvirt integration.
 *
 * Two halves:
 *
 *  1. The domain-XML editor (no libvirt needed, only libxml2):
 *     vlv_domxml_render() turns a domain definition plus the VM's vfu
 *     devices into the definition QEMU needs for vfio-user:
 *       - <memoryBacking> with <source type='memfd'/> and
 *         <access mode='shared'/> (hugepages and other settings kept);
 *       - the qemu namespace and, in <qemu:commandline>, one
 *         `-device {"driver":"vfio-user-pci","id":"vfu-<name>",...}` per
 *         device, pinned to a PCI address libvirt never hands out (see
 *         "PCI layout" below);
 *       - nothing else: foreign qemu:commandline arguments, comments and
 *         every other element are kept.
 *     Rendering is idempotent: rendering the output again with the same
 *     devices gives byte-identical XML and reports "unchanged"; dropping
 *     a device removes only its entries; a device keeps its PCI address
 *     for as long as it stays in the definition.
 *
 *  2. The libvirt side (libvirt + libvirt-qemu): vlv_domain_apply() writes
 *     the rendered XML into a VM's persistent definition, vlv_attach() /
 *     vlv_detach() hot-plug through QEMU's monitor (QMP device_add /
 *     device_del via libvirt's pass-through) and record the change in the
 *     persistent definition, and VlvWatch reports domains being defined
 *     so the caller can re-render them.
 *
 * Memory policy: guest RAM must be shared with the device process
 * through a file descriptor, so
 *   - absent or source type='anonymous' memory becomes memfd; an explicit
 *     source type='file' is kept (file-backed RAM is fd-backed too);
 *   - access becomes 'shared' when it is absent;
 *   - an EXPLICIT private choice is refused, never silently overridden:
 *     <access mode='private'/>, a NUMA <cell memAccess='private'>, or a
 *     <memory> device with access='private' fail with VLV_ERROR_MEMORY
 *     naming the element and the fix.  (libvirt refuses the same for
 *     vhost-user devices; a private cell would give that node's RAM
 *     copy-on-write pages the device never sees.)
 *
 * PCI layout: libvirt does not know about qemu:commandline devices, and
 * it auto-assigns its own devices into any empty slot of any bus it
 * manages, including empty pcie-root-ports.  So vfu's devices sit behind
 * controllers that are themselves qemu:commandline devices, invisible to
 * libvirt's allocator, plugged into a root-bus slot libvirt's layout
 * leaves free:
 *   - q35 (pcie-root): eight pcie-root-ports "vfu.port0".."vfu.port7" as
 *     one multifunction slot at 00:1c.0-7 (the slot real ICH9 boards use
 *     for root ports; libvirt fills root ports from 00:01 upwards and puts
 *     its own fixed devices at 00:1b, 00:1d, 00:1e, 00:1f).  Device i sits
 *     at slot 0 of one port; at most 8 devices per VM.  The ports are
 *     hot-plug capable, so a free port takes a hot-attached device.
 *   - pc (i440fx, pci-root): one pci-bridge "vfu.bridge" at 00:1f.0;
 *     devices at its slots 1..31 (ACPI hot-plug); at most 31 devices.
 * The ports/bridge are present whenever the VM has at least one vfu
 * device.  A definition that already uses that root-bus slot, or a bridge
 * chassis number vfu needs, is refused with VLV_ERROR_ADDRESS.  QEMU ids
 * starting with "vfu-" and "vfu." are reserved for vfu.
 *
 * Errors: every function reports failure through GError in VLV_ERROR
 * (codes below) with a message a person can act on.  Nothing is
 * half-applied: the persistent definition is either replaced by the
 * complete new XML in one virDomainDefineXML call or left alone.
 *
 * Threads: the libvirt functions block (network round-trips to libvirtd,
 * possibly waiting on a domain lock).  NEVER call them from the thread
 * that serves vfud's D-Bus methods: libvirt holds a domain's lock while
 * its qemu hook runs, and the hook waits on vfud over D-Bus, so a
 * synchronous libvirt call about that domain from the bus thread would
 * deadlock until the hook's timeout fails the VM start.  Run them in a
 * worker thread (GTask, GThreadPool) or from a VlvWatch callback.
 */
#pragma once

#include <stddef.h>
#include <glib.h>

G_BEGIN_DECLS

#define VLV_ERROR (vlv_error_quark())
GQuark vlv_error_quark(void);

typedef enum {
        VLV_ERROR_INVALID, /* bad argument: device name, socket path */
        VLV_ERROR_XML, /* the domain XML cannot be parsed or edited */
        VLV_ERROR_UNSUPPORTED, /* domain type / machine type vfu cannot serve */
        VLV_ERROR_MEMORY, /* guest RAM not shareable and not convertible */
        VLV_ERROR_ADDRESS, /* PCI slot or chassis vfu needs is taken, or no slot left */
        VLV_ERROR_UNREACHABLE, /* libvirt not reachable (or not built in) */
        VLV_ERROR_NO_VM, /* no such domain */
        VLV_ERROR_ATTACHED_ELSEWHERE, /* device is in another domain's definition */
        VLV_ERROR_LIBVIRT, /* libvirt refused an operation; its message is included */
        VLV_ERROR_HOTPLUG, /* QEMU refused device_add/device_del; its message is included */
        VLV_ERROR_TIMEOUT, /* the guest did not release a device in time */
        VLV_ERROR_RUNNING, /* the domain runs; the operation needs it shut off */
} VlvError;

/* One vfu device as libvirt sees it. */
typedef struct {
        /* device name: 1..64 of [A-Za-z0-9_.-]; QEMU id "vfu-<name>" */
        const char *name;
        /* absolute path of the device's vfio-user socket (< 108 bytes) */
        const char *socket_path;
} VlvDevice;

/* Most devices one VM can carry, per machine family (see "PCI layout"). */
#define VLV_MAX_DEVICES_Q35 8
#define VLV_MAX_DEVICES_PC  31

/*
 * vlv_device_check:
 * Validate one device description (name charset/length, absolute
 * UTF-8 socket path without control characters that fits sun_path).
 * Returns TRUE, or FALSE with VLV_ERROR_INVALID set.
 */
gboolean vlv_device_check(const VlvDevice *dev, GError **error);

/* ---------------------------------------------------------------- XML */

/*
 * vlv_domxml_render:
 * @in_xml: a libvirt domain definition (typically
 *          virDomainGetXMLDesc(VIR_DOMAIN_XML_INACTIVE|VIR_DOMAIN_XML_SECURE))
 * @devs/@n_devs: the complete set of vfu devices the VM should carry
 *          (names unique); 0 removes every vfu entry.
 * @out_xml: (out): the new definition, g_free() it
 * @changed: (out, optional): FALSE when @in_xml already was exactly what
 *          vfu needs (structurally; formatting aside), so nothing needs to
 *          be written back.  Use it to avoid redefining a domain in a loop
 *          (a define raises VIR_DOMAIN_EVENT_DEFINED).
 * Returns TRUE on success; FALSE with @error set (VLV_ERROR_INVALID,
 * _XML, _UNSUPPORTED, _MEMORY, _ADDRESS), @out_xml untouched.
 */
gboolean vlv_domxml_render(const char *in_xml, const VlvDevice *devs, size_t n_devs, char **out_xml, gboolean *changed,
                           GError **error);

/* A vfu device found in a domain definition. */
typedef struct {
        char *name; /* without the "vfu-" prefix */
        char *socket_path;
        char *bus; /* QEMU bus id, e.g. "vfu.port0" (may be NULL) */
        char *addr; /* slot on that bus, e.g. "0x0" (may be NULL) */
} VlvDomainDevice;

void vlv_domain_device_free(VlvDomainDevice *dev);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VlvDomainDevice, vlv_domain_device_free)

/*
 * vlv_domxml_list_devices:
 * The vfu devices (vfio-user-pci with a "vfu-" id) in a domain
 * definition's qemu:commandline, in document order.  Returns a GPtrArray of VlvDomainDevice (free with
 * g_ptr_array_unref; empty when there are none), or NULL with
 * VLV_ERROR_XML set when @xml is not a domain definition.
 */
GPtrArray *vlv_domxml_list_devices(const char *xml, GError **error);

/* --------------------------------------------------------- libvirt API
 * @uri: libvirt connection URI; NULL means "qemu:///system".
 * @vm:  domain name or UUID.
 * All block; see "Threads" above.  When vfu is built without libvirt they
 * fail with VLV_ERROR_UNREACHABLE saying so. */

#define VLV_DEFAULT_URI "qemu:///system"

/*
 * vlv_domain_apply:
 * Render the persistent definition of @vm with exactly @devs and define
 * it (virDomainDefineXMLFlags with schema validation) when something
 * changed; then read it back and check that libvirt kept every vfu
 * entry.  A running VM keeps running; the new definition applies from
 * its next start (use vlv_attach/vlv_detach for the live VM).
 * Refuses a device that another domain's definition already carries
 * (VLV_ERROR_ATTACHED_ELSEWHERE) and transient domains.
 * Returns TRUE on success, FALSE with @error set; on failure the
 * definition is unchanged.
 */
gboolean vlv_domain_apply(const char *uri, const char *vm, const VlvDevice *devs, size_t n_devs, GError **error);

/*
 * vlv_domain_get_xml:
 * The XML vlv_domain_apply() would define for @vm with @devs, without
 * defining it (`vfuctl xml --vm`).  Returns a newly allocated string, or
 * NULL with @error set.
 */
char *vlv_domain_get_xml(const char *uri, const char *vm, const VlvDevice *devs, size_t n_devs, GError **error);

/*
 * vlv_domain_list_devices:
 * The vfu devices in @vm's persistent definition, as
 * vlv_domxml_list_devices() lists them (a GPtrArray of VlvDomainDevice,
 * g_ptr_array_unref it).  NULL with @error set: VLV_ERROR_NO_VM,
 * VLV_ERROR_UNREACHABLE, VLV_ERROR_LIBVIRT (also for a transient domain:
 * it has no persistent definition), VLV_ERROR_XML.
 */
GPtrArray *vlv_domain_list_devices(const char *uri, const char *vm, GError **error);

/*
 * vlv_attach:
 * Add @dev to @vm: if the VM runs, hot-plug it (QMP device_add at the
 * address the persistent definition gives it; the running VM must have
 * shared fd-backed RAM and vfu's hot-plug ports, i.e. it was started
 * with at least one vfu device); then record it in the persistent
 * definition.  Idempotent: a device already present live is not added
 * twice.  If recording fails after a hot-plug, the hot-plug is undone.
 * Returns TRUE on success, FALSE with @error set.
 */
gboolean vlv_attach(const char *uri, const char *vm, const VlvDevice *dev, GError **error);

/*
 * vlv_detach:
 * Remove device @name from @vm: if the VM runs and has the device,
 * request the unplug (QMP device_del) and wait up to @timeout_ms for
 * QEMU to report DEVICE_DELETED (the guest must release it); then drop
 * it from the persistent definition.  Idempotent: a device absent both
 * live and in the definition is success.  On VLV_ERROR_TIMEOUT the
 * unplug request stays pending in the guest and the persistent
 * definition is unchanged; calling again later completes it.
 * Hot unplug of a device with MSI-X (@msix) is refused
 * (VLV_ERROR_HOTPLUG) on QEMU releases whose vfio-user client aborts on
 * device_del of such a function (up to at least 11.1): the VM would
 * crash.  A device without MSI-X (NVMe with msi) is unplugged there too.
 * Detaching from a stopped VM always works.
 * Returns TRUE on success, FALSE with @error set.
 */
gboolean vlv_detach(const char *uri, const char *vm, const char *name, gboolean msix, guint timeout_ms, GError **error);

/*
 * vlv_domain_probe:
 * Whether @vm is defined in libvirt at @uri: TRUE with *@active (running
 * or paused) and *@persistent filled; FALSE with VLV_ERROR_NO_VM when
 * there is no such domain, VLV_ERROR_UNREACHABLE when libvirt cannot be
 * reached, VLV_ERROR_LIBVIRT for anything else.
 */
gboolean vlv_domain_probe(const char *uri, const char *vm, gboolean *active, gboolean *persistent, GError **error);

/*
 * vlv_domain_migrate_offline:
 * Move the persistent definition of the shut-off @vm from libvirt at @uri
 * to libvirt at @dest_uri, as `virsh migrate --offline --persistent
 * --undefinesource` does: virDomainMigrate3 with VIR_MIGRATE_OFFLINE |
 * VIR_MIGRATE_PERSIST_DEST | VIR_MIGRATE_UNDEFINE_SOURCE over a connection
 * this process opens to @dest_uri (so @dest_uri is as seen from here).
 * The destination's qemu hook runs (migrate begin) and may refuse.
 * Returns TRUE once the destination has the definition and this side no
 * longer does; FALSE with @error set and the definition here unchanged:
 * VLV_ERROR_RUNNING (the VM runs), VLV_ERROR_NO_VM, VLV_ERROR_UNREACHABLE
 * (this side's or the destination's libvirt), VLV_ERROR_LIBVIRT (a
 * transient domain, or libvirt refused; its message is included).
 */
gboolean vlv_domain_migrate_offline(const char *uri, const char *vm, const char *dest_uri, GError **error);

/* ---------------------------------------------------- lifecycle watch */

typedef enum {
        VLV_WATCH_CONNECTED, /* (re)connected to libvirt: resynchronise; vm is NULL */
        VLV_WATCH_DEFINED, /* a domain was defined or its definition changed */
        VLV_WATCH_UNDEFINED, /* a domain's persistent definition was removed */
} VlvWatchEvent;

/*
 * Called in VlvWatch's own worker thread, one event at a time, in the
 * order libvirt reported them.  It may call any vlv_* function (e.g.
 * vlv_domain_apply for VLV_WATCH_DEFINED: the XML it defines raises one
 * more DEFINED event, whose render then reports "unchanged").
 * @vm_name and @vm_uuid are NULL for VLV_WATCH_CONNECTED.
 */
typedef void (*VlvWatchFunc)(VlvWatchEvent event, const char *vm_name, const char *vm_uuid, gpointer user_data);

typedef struct VlvWatch VlvWatch;

/*
 * vlv_watch_new:
 * Watch @uri for domain definitions.  Connects in the background and
 * keeps one libvirt connection with keepalive; while libvirtd is absent
 * (not started yet, restarting) it retries every @retry_ms (0: 2000 ms)
 * and reports VLV_WATCH_CONNECTED each time a connection is made.
 * Returns the watch (free with vlv_watch_free), or NULL with @error set
 * only when vfu was built without libvirt (VLV_ERROR_UNREACHABLE).
 */
VlvWatch *vlv_watch_new(const char *uri, guint retry_ms, VlvWatchFunc func, gpointer user_data, GError **error);

/* Stop watching; waits for a running callback to return.  NULL-safe. */
void vlv_watch_free(VlvWatch *watch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VlvWatch, vlv_watch_free)

G_END_DECLS
