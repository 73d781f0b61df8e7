/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The D-Bus names of vfud's API, shared by the daemon and its clients.
 * xml/org.vfu.vfud1.*.xml and org.vfu.vfud1(5) describe them.
 */
#pragma once

#define VFUD_BUS_NAME           "org.vfu.vfud1"
#define VFUD_MANAGER_PATH       "/org/vfu/vfud1"
#define VFUD_DEVICE_PATH_PREFIX "/org/vfu/vfud1/device"
#define VFUD_MANAGER_IFACE      "org.vfu.vfud1.Manager"
#define VFUD_DEVICE_IFACE       "org.vfu.vfud1.Device"
/* between two vfuds (and vfuctl receive-image): the receiving end of a migration */
#define VFUD_MIGRATION_PEER_IFACE "org.vfu.vfud1.MigrationPeer"

#define VFUD_DBUS_ERROR_NO_SUCH_DEVICE       "org.vfu.vfud1.Error.NoSuchDevice"
#define VFUD_DBUS_ERROR_DEVICE_EXISTS        "org.vfu.vfud1.Error.DeviceExists"
#define VFUD_DBUS_ERROR_INVALID_ARGUMENT     "org.vfu.vfud1.Error.InvalidArgument"
#define VFUD_DBUS_ERROR_BACKEND_FAILED       "org.vfu.vfud1.Error.BackendFailed"
#define VFUD_DBUS_ERROR_DEVICE_BUSY          "org.vfu.vfud1.Error.DeviceBusy"
#define VFUD_DBUS_ERROR_NOT_SUPPORTED        "org.vfu.vfud1.Error.NotSupported"
#define VFUD_DBUS_ERROR_WORKER_FAILED        "org.vfu.vfud1.Error.WorkerFailed"
#define VFUD_DBUS_ERROR_NOT_RUNNING          "org.vfu.vfud1.Error.NotRunning"
#define VFUD_DBUS_ERROR_LIBVIRT_UNAVAILABLE  "org.vfu.vfud1.Error.LibvirtUnavailable"
#define VFUD_DBUS_ERROR_NO_SUCH_VM           "org.vfu.vfud1.Error.NoSuchVm"
#define VFUD_DBUS_ERROR_NOT_MIGRATABLE       "org.vfu.vfud1.Error.NotMigratable"
#define VFUD_DBUS_ERROR_ACCESS_DENIED        "org.freedesktop.DBus.Error.AccessDenied"

/* The environment variable naming the bus for vfud and vfuctl: session, system or an address. */
#define VFUD_BUS_ENV "VFUD_BUS"
