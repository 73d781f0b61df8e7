/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Converting between D-Bus a{sv} and JSON for the daemon: caller options in,
 * definitions and backend details out.
 *
 * Return convention: sd-bus style (≥ 0 success, negative errno), errors in
 * an sd_bus_error or GError as noted.
 */
#pragma once

#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>

#include "device-type.h"

/*
 * Read an a{sv} of device options, checked against specs: returns a table
 * option name → JsonNode (string, integer ≥ 0 or boolean).  An unknown
 * option, a repeated one or one of the wrong type: FALSE with a
 * MANAGER_ERROR_INVALID_ARGUMENT error naming it and the known options.
 */
gboolean bus_read_options(sd_bus_message *m, const DeviceType *t, GHashTable **ret, GError **error);

/* Append a JSON object as a{sv}: strings s, booleans b, integers t (x when negative), doubles d,
 * objects a{sv}, arrays of objects aa{sv}, arrays of strings as, arrays of integers at. */
int bus_append_json_object(sd_bus_message *m, JsonObject *o);
