/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device operations shared by the Device object's methods and the Manager's
 * by-name methods.  Each checks authorization, then replies to msg when the
 * operation completes.  Return: 1 (reply pending) or negative errno with
 * error set.
 */
#pragma once

#include "device.h"

int device_bus_start(Device *d, sd_bus_message *msg, sd_bus_error *error);
int device_bus_stop(Device *d, sd_bus_message *msg, sd_bus_error *error);
int device_bus_destroy(Device *d, sd_bus_message *msg, sd_bus_error *error);
