/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cold migration of devices to another vfud (migrate.c): Manager.MigrateDevice
 * and Manager.MigrateVm.  The destination is reached over D-Bus (a bus
 * address, or [USER@]HOST for its system bus over ssh); the remote calls run
 * in a thread of their own, progress comes back to the event loop.
 *
 * Device fields migration_state / mig_* (D-Bus MigrationState and
 * MigrationProgress):
 *   ""           never migrated by this vfud
 *   "preparing"  stopping the device, defining it on the destination
 *   "copying"    image data on its way (MigrationProgress counts it)
 *   "completed"  the destination serves it; the device is removed here next
 *   "failed"     nothing changed on the destination; LastError-style reason
 *                in the method's error, the device runs again if it did
 */
#pragma once

#include "device.h"

int manager_bus_migrate_device(Manager *m, sd_bus_message *msg, sd_bus_error *error);
int manager_bus_migrate_vm(Manager *m, sd_bus_message *msg, sd_bus_error *error);
/*
 * vfud is exiting: stop running migrations (each rolls the destination
 * back), wait for them and reply to their callers.  A migration that had
 * already succeeded leaves its devices here; the next vfud still has them.
 */
void manager_migrations_abort(Manager *m);
/* Whether d is being migrated (other changes are refused meanwhile). */
bool device_is_migrating(Device *d);
