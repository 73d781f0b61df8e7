/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * I/O limits of a device, manager side (common/limits.h names them): the
 * create options that set them, their place in the definition (an NVMe
 * namespace's "limits" and the device's "group-limits"; virtio-net's
 * "limits"), the runtime change (SetLimits: definition, worker, saved),
 * the Limits property, and what migration asks of the destination.
 */
#pragma once

#include <systemd/sd-bus.h>

#include "common/limits.h"
#include "device-type.h"

/* The create and SetLimits option of t named name (a limit), or NULL. */
const DeviceOptionSpec *device_limits_option(const DeviceType *t, const char *name);
/* The limit options of t, by index (0 to device_limits_n_options(t) - 1). */
size_t device_limits_n_options(const DeviceType *t);
const DeviceOptionSpec *device_limits_option_at(const DeviceType *t, size_t i);
/* ", iops-total, ..." for error messages (g_free; "" for a type without limits). */
char *device_limits_option_list(const DeviceType *t);
/* Create: the limit options of in into the normalized definition out (after the type's normalizer). */
gboolean device_limits_normalize(const DeviceType *t, GHashTable *in, JsonObject *out, GError **error);
/*
 * SetLimits: the limit options in (as bus_read_options returns them; 0
 * removes a limit) for namespace nsid of an NVMe device (0: namespace 1;
 * group- options for the group), or for a virtio-net device (nsid 0).
 * Checked, given to a running worker, saved; func gets the outcome.
 */
void device_limits_set(Device *d, uint32_t nsid, GHashTable *in, DeviceDoneFunc func, void *userdata);
/* The Limits property, a{sa{st}}: "ns<N>", "group" or "device" → option → value. */
int device_limits_append_property(Device *d, sd_bus_message *reply);
/*
 * Migration: the CreateDevice options that give a new device options'
 * limits (nvme: namespace 1's and the group's; virtio-net: all), and the
 * SetLimits call for another namespace's.
 */
int device_limits_append_create_options(sd_bus_message *m, const char *type, JsonObject *options);
int device_limits_call_set(sd_bus *b, const char *path, uint32_t nsid, JsonObject *ns, sd_bus_error *e);
