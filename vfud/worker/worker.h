/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfud-worker: one process per device.  It holds the device's vfio-user
 * socket, its DMA maps and eventfds, and its data path, so a restart of the
 * manager never touches a running VM.  The worker core (worker.c) owns the
 * event loop (sd-event), the VuServer and the control socket; each device
 * type plugs in through a WorkerDeviceType.
 *
 * Device definitions arrive as the JSON the manager persists:
 *   {"name": "...", "type": "nvme", "vm": "...", "options": {...}}
 * Backing files and TAP queues are opened by the manager and inherited as
 * fds; worker_take_fd() hands them out by name ("ns1", "tap0", ...).  A
 * standalone worker (tests, demos) opens paths itself when no fd was passed.
 *
 * Error convention: GError (domain WORKER_ERROR) at this layer.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <systemd/sd-event.h>

#include "vfio-user/server.h"

typedef struct Worker Worker;

#define WORKER_ERROR (worker_error_quark())
GQuark worker_error_quark(void);

typedef enum WorkerErrorCode {
        WORKER_ERROR_INVALID,           /* bad option: message names it */
        WORKER_ERROR_BACKEND,           /* backing file / TAP cannot be used */
        WORKER_ERROR_UNSUPPORTED,       /* control method unknown to the type */
        WORKER_ERROR_FAILED,
} WorkerErrorCode;

typedef struct WorkerDeviceType {
        const char *type;               /* "nvme", "virtio-net" */
        /*
         * Build the device model from options; fill scfg (PCI config, BARs,
         * ops) for the vfio-user server.  *state is the type's private data.
         */
        gboolean (*create)(Worker *w, JsonObject *options, VuServerConfig *scfg,
                           void **state, GError **error);
        /* The server exists: the model may now use vu_server_mem()/vu_server_irq(). */
        void (*start)(void *state, VuServer *server);
        void (*destroy)(void *state);
        /*
         * A runtime control method from the manager ("namespace-add",
         * "namespace-remove", "namespace-resize", "link-set", ...).  Returns a
         * JSON result node (may be NULL) or FALSE with error.
         */
        gboolean (*control)(void *state, const char *method, JsonObject *params,
                            JsonNode **result, GError **error);
        /* Add this device's statistics members to the open object in b. */
        void (*stats)(void *state, JsonBuilder *b);
} WorkerDeviceType;

extern const WorkerDeviceType worker_nvme_type;
extern const WorkerDeviceType worker_virtio_net_type;

/* Take ownership of an fd the manager passed under name; -1 if none. */
int worker_take_fd(Worker *w, const char *name);
const char *worker_device_name(const Worker *w);
sd_event *worker_event(Worker *w);
