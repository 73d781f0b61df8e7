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

#include "block/lat-hist.h"
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
        const char *type;               /* "nvme", "virtio-net", "virtio-blk" */
        /*
         * Build the device model from options; fill scfg (PCI config, BARs,
         * ops) for the vfio-user server.  *state is the type's private data.
         */
        gboolean (*create)(Worker *w, JsonObject *options, VuServerConfig *scfg,
                           void **state, GError **error);
        /* The server exists: the model may now use vu_server_mem()/vu_server_irq(). */
        void (*start)(void *state, VuServer *server);
        /*
         * Free the model.  Called after the client was disconnected (reset
         * with VU_RESET_LOST_CONN) and the server freed; also when create()
         * succeeded but the worker could not start.
         */
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
extern const WorkerDeviceType worker_virtio_blk_type;

/*
 * Add the member "latency_ns": per operation ("read", ...) the cumulative
 * bucket counts "le_<bound in ns>" (the +Inf bucket is "count"), "count"
 * and "sum" (ns).  vfud flattens it to "latency_ns.read.le_5000".
 */
void worker_stats_latency(JsonBuilder *b, const LatStatsSnapshot *s);

/* Take ownership of an fd the manager passed under name; -1 if none. */
int worker_take_fd(Worker *w, const char *name);
/* The device connects to TCP servers (an nbd:// namespace): the sandbox lets it make IP sockets. */
void worker_allow_inet(Worker *w);
const char *worker_device_name(const Worker *w);
sd_event *worker_event(Worker *w);

/*
 * A backing file or block device: the fd the manager passed under name
 * ("ns1"), or, in standalone mode, path opened here with flags (O_CLOEXEC is
 * added).  Returns the fd (the caller owns it), or -1 with a
 * WORKER_ERROR_BACKEND error naming the path and the reason.
 */
int worker_open_backing(Worker *w, const char *name, const char *path, int flags, GError **error);

/*
 * TAP queue q of interface ifname: the fd the manager passed as "tap<q>",
 * or, in standalone mode, opened here (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
 * IFF_MULTI_QUEUE when n_queues > 1).  Returns the fd (O_NONBLOCK; the caller
 * owns it) or -1 with a WORKER_ERROR_BACKEND error.
 */
int worker_open_tap(Worker *w, const char *ifname, unsigned q, unsigned n_queues, GError **error);

/* The device's server, NULL before the type's start(). */
VuServer *worker_server(Worker *w);

/*
 * Definition options, per type (the "options" object of the definition; the
 * manager fills defaults and validates what it can before a worker starts,
 * the type validates everything again and fails create() with
 * WORKER_ERROR_INVALID naming the option):
 *
 * nvme
 *   "namespaces": [ {"nsid": 1, "path": "/var/lib/vfud/images/db-ns1.img",
 *                    "size": 10737418240, "kind": "image" | "file" | "block",
 *                    "block-size": 512 | 4096 (optional)}, ... ]
 *                 one entry per active namespace, nsid 1..N; the fd is named
 *                 "ns<nsid>" (worker_open_backing(w, "ns1", path, O_RDWR, ...));
 *                 size is the namespace size in bytes (≤ the backing size).
 *   "queues":     number of I/O queue pairs (optional; type default)
 *   "iothreads":  I/O threads, 1..NVME_MAX_IOTHREADS (optional; 1); at most one per queue pair runs
 *   "poll-us":    an I/O thread's polling window, 0..NVME_MAX_POLL_US µs (optional; 50)
 *   "serial":     serial number string (optional; type default)
 * control methods:
 *   "namespace-add"    {"nsid": N, "path": "...", "size": S, "kind": "..."}, fd "ns<N>"
 *   "namespace-remove" {"nsid": N}
 *   "namespace-resize" {"nsid": N, "size": S}
 *
 * virtio-net
 *   "backend": "tap" | "passt" | "null"
 *   "null-frame": bytes of the frames a null backend receives (0: none; 60..1514)
 *   "tap":     interface name (backend "tap"); fds "tap0".."tap<queues-1>"
 *              (worker_open_tap)
 *   "mac":     "52:54:00:12:34:56"
 *   "queues":  number of queue pairs (≥ 1)
 *   "mtu":     68..65535 offered to the guest (optional; default the TAP's
 *              MTU, 1500 with passt)
 * control methods:
 *   "link-set" {"up": true | false}
 *
 * virtio-blk
 *   "namespaces": [ {"nsid": 1, "path", "size", "kind", "block-size", "pattern"} ]
 *              the disk, described as NVMe's namespace 1; fd "disk"
 *   "queues":  request queues (≥ 1), "queue-size"
 *   "serial":  GET_ID string (optional; default: the device name)
 *   "read-only", "direct", "packed", "engine", "poll-us": optional
 * control methods:
 *   "resize" {"size": S}   (0: the backing file's size)
 *
 * Control methods the core handles itself (not forwarded): "info", "stats",
 * "subscribe", "shutdown".
 */
