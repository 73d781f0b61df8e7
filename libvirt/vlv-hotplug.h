/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal: QMP through libvirt's monitor pass-through (vlv-hotplug.c). */
#pragma once

#include "vlv-libvirt.h"

/* One QMP command; its "return" (new node) or NULL with VLV_ERROR_HOTPLUG
 * carrying QEMU's description. */
JsonNode *vlv_qmp(virDomain *dom, const char *execute, JsonNode *arguments, GError **error);

/* Whether a device with QEMU id @id is plugged into the running VM. */
gboolean vlv_qmp_has_device(virDomain *dom, const char *id, gboolean *present, GError **error);

/* device_add with @device_json (a `-device` JSON object). */
gboolean vlv_qmp_device_add(virDomain *dom, const char *device_json, GError **error);

/* device_del @id, then wait up to @timeout_ms for DEVICE_DELETED and
 * check QEMU no longer lists it; VLV_ERROR_TIMEOUT when it still does. */
gboolean vlv_qmp_device_del_wait(virConnect *conn, virDomain *dom, const char *id, guint timeout_ms, GError **error);
