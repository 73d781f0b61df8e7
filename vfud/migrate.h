/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Migration of devices to another vfud: Manager.MigrateDevice, MigrateVm
 * and CancelMigration.  The module:
 *   migrate-dbus.c     the D-Bus surface (Manager methods, MigrationPeer)
 *   migrate.c          one migration: checks, the thread that talks to the
 *                      destination, the hand-off with the loop, rollback
 *   migrate-options.c  a definition as CreateDevice options (DeviceType)
 *   migrate-stream.c   the image stream (sender and receiver)
 *   migrate-receive.c  the destination's end: ReceiveImage
 * The destination is reached over D-Bus (a bus address, or [USER@]HOST for
 * its system bus over ssh); the remote calls run in a thread of their own,
 * progress comes back to the event loop.  docs/migration.md draws the
 * states and the order of the steps.
 *
 * Cold: devices without a client are stopped (once the destination was
 * checked), defined there, their images streamed (or shared storage
 * checked).  Live: a device whose client uses
 * vfio-user migration v2 (our client library as the VMM; never QEMU 11's
 * vfio-user-pci) keeps serving; its copy there is created "incoming" and
 * the VMM moves the device state itself (MIG_DATA_READ here, MIG_DATA_WRITE
 * there); vfud watches both ends and removes the device here once the copy
 * resumed.  Live needs shared storage.
 *
 * MigrateVm, cold, of a VM defined in this host's libvirt: a running VM is
 * refused before anything moves; once every device arrived, the domain
 * migrates offline to the destination's libvirt (option libvirt-uri;
 * qemu+ssh://[USER@]HOST/system by default for a host destination).  If
 * that fails the devices stay moved and the error says how to finish.
 * The reply (domain_uri, domain_note) says what became of the domain.
 *
 * Device fields migration_state (MigrationState, device.h) / mig_* (D-Bus
 * MigrationState and MigrationProgress):
 *   ""             never migrated by this vfud
 *   "preparing"    stopping the device, defining it on the destination
 *   "copying"      image data on its way (MigrationProgress counts it)
 *   "waiting"      live: the copy there waits for the VMM (MigrationSocket)
 *   "transferring" live: the VMM is saving the state here
 *   "completed"    the destination serves it; the device is removed here next
 *   "failed"       nothing changed on the destination; the reason is in the
 *                  method's error, the device runs again if it did
 *   "incoming"     (on the destination) created live, waiting for the state
 *   "resumed"      (on the destination) its client loaded the state
 *   "refused"      (on the destination) its client's state was refused (ERROR)
 */
#pragma once

#include "device.h"

/* The D-Bus surface (migrate-dbus.c): Manager.MigrateDevice, MigrateVm, CancelMigration. */
int manager_bus_migrate_device(Manager *m, sd_bus_message *msg, sd_bus_error *error);
int manager_bus_migrate_vm(Manager *m, sd_bus_message *msg, sd_bus_error *error);
/* Manager.CancelMigration(s name): stop the migration of device or VM name and roll it back. */
int manager_bus_cancel_migration(Manager *m, sd_bus_message *msg, sd_bus_error *error);
/*
 * vfud is exiting: stop running migrations (each rolls the destination
 * back), wait for them and reply to their callers.  A migration that had
 * already succeeded leaves its devices here; the next vfud still has them.
 */
void manager_migrations_abort(Manager *m);
/* d's client migration state or connection changed (device-worker.c): follow the hand-over. */
void migrate_device_event(Device *d);
/*
 * The CreateDevice options that make a copy of a definition on another
 * vfud (migrate-options.c), appended inside an open a{sv}: every top-level
 * member of def named like one of t's options and of its kind travels as
 * that option, so a new scalar option needs no edit here; then t's
 * append_create_options adds what the definition keeps otherwise (namespace
 * 1, the backend).  Negative errno.
 */
int migrate_append_create_options(const DeviceType *t, JsonObject *def, sd_bus_message *m);
/* DeviceType.append_create_options of the disks (nvme, virtio-blk: namespace 1) and of virtio-net (its backend). */
int migrate_disk_create_options(JsonObject *def, sd_bus_message *m);
int migrate_net_create_options(JsonObject *def, sd_bus_message *m);

/* Whether d is being migrated or receiving an image (other changes are refused meanwhile). */
bool device_is_migrating(Device *d);

/* The MigrationPeer interface (migrate-dbus.c): ReceiveImage, the destination's end of an image copy. */
typedef struct ImageReceive ImageReceive;
int migrate_bus_register(Manager *m);
/* MigrationPeer.ReceiveImage (migrate-receive.c): starts the receive, replied when it ends. */
int migrate_bus_receive_image(Manager *m, sd_bus_message *msg, sd_bus_error *error);

/* What MigrateDevice / MigrateVm ask (migrate-dbus.c read it). */
typedef struct MigrateRequest {
        const char *destination;        /* a bus address or [USER@]HOST */
        const char *storage;            /* "copy", "shared" or "" */
        uint32_t timeout;               /* seconds a live hand-over may take */
        const char *vm;                 /* MigrateVm: the VM whose domain may follow; else NULL */
        const char *libvirt_uri;        /* the destination's libvirt, or NULL */
} MigrateRequest;

/*
 * Start migrating devices (Device*, by name) as req says; msg is answered
 * when it ends.  FALSE with error when it is refused before anything
 * happened (a device in use that cannot move, storage not said...).
 */
gboolean migration_begin(Manager *m, sd_bus_message *msg, GPtrArray *devices, const MigrateRequest *req,
                         GError **error);
/* Cancel the migration d is part of, with reason for its caller; negative errno with error (none, past commit). */
int migration_cancel_device(Device *d, const char *reason, GError **error);
/* Where d is being migrated to, or NULL. */
const char *migration_destination(Device *d);
/* Stop d's image receive, answering its caller with an error (vfud exiting). */
void migrate_receive_cancel(Device *d);
