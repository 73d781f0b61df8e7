/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Receiving a migrated image (device-incoming.c).  The bus handlers return
 * sd-bus style: ≥ 0 replied, negative errno with error set.
 */
#pragma once

#include "device.h"

/* Device.WriteImage(u nsid, t offset, ay data): one chunk, ascending; offset 0 starts over. */
int device_bus_write_image(Device *d, sd_bus_message *msg, sd_bus_error *error);
/* Device.CommitImage(u nsid, s sha256): check the transfer's checksum and flush the image. */
int device_bus_commit_image(Device *d, sd_bus_message *msg, sd_bus_error *error);
/* Drop a transfer in progress. */
void device_incoming_reset(Device *d);
