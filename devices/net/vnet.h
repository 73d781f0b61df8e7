/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net device model (virtio-v1.2 5.1) on the virtio PCI transport:
 * N receive/transmit queue pairs plus a control queue, one data-path thread
 * per pair, frames to and from a NetBackend.
 *
 * A pure device model: no JSON, no D-Bus, no main loop.  The daemon's worker
 * builds it from options, hands its VuServerConfig to the vfio-user server,
 * and attaches guest memory and the interrupt sink.
 * Return convention: 0 or negative errno.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "net/net-backend.h"
#include "qos/qos.h"
#include "virtio/virtio-pci.h"

#define VNET_MAX_PAIRS 64u
#define VNET_MIN_MTU 68u
#define VNET_DEFAULT_MTU 1500u

typedef struct VNet VNet;

typedef struct VNetOptions {
        uint8_t mac[6];
        unsigned pairs;                 /* 1..VNET_MAX_PAIRS; > 1 offers MQ */
        /*
         * 68..65535, offered with VIRTIO_NET_F_MTU (5.1.4.1: the guest's
         * maximum); 0: the backend's (a TAP's MTU), else VNET_DEFAULT_MTU.
         */
        uint16_t mtu;
        uint16_t queue_size;            /* 0: 256 */
        bool packed;                    /* offer VIRTIO_F_RING_PACKED */
        bool poll;                      /* mmapped notify page, busy-polling data path */
        bool link_up;                   /* initial link state */
        bool manual;                    /* no data-path threads: the caller runs the queues
                                         * with vnet_poll(), on its own thread (tests, fuzzers) */
        const char *name;               /* for logs */
        /*
         * Identity in migration streams (copied; NULL: none).  A stream is
         * only accepted by a device with the same identity: give source and
         * destination the same one, e.g. the device's name.
         */
        const char *migration_id;
} VNetOptions;

typedef struct VNetStats {
        uint64_t rx_packets, rx_bytes, rx_drops, rx_errors;
        uint64_t tx_packets, tx_bytes, tx_drops, tx_errors;
} VNetStats;

/* Takes ownership of be (its queue count must be ≥ pairs). */
int vnet_new(const VNetOptions *opt, NetBackend *be, VNet **out);
void vnet_free(VNet *n);

/* The PCI side: server configuration, and guest memory + interrupts once the server exists. */
int vnet_server_config(VNet *n, VuServerConfig *scfg);
void vnet_attach(VNet *n, const VuMem *mem, const VirtioIrqOps *irq, void *irq_opaque);
VirtioPci *vnet_virtio(VNet *n);

/* Link state (5.1.4 status): a change raises a configuration interrupt. Control thread. */
void vnet_set_link(VNet *n, bool up);
bool vnet_link(const VNet *n);
/* Ask the driver to announce itself (GUEST_ANNOUNCE): 0 or -EOPNOTSUPP when not negotiated. */
int vnet_announce(VNet *n);

/*
 * A manual device (opt.manual): one round of what the data-path threads do
 * — the control queue, then transmit and receive of every running pair.
 * Returns true while work remains; call it until false to let notified
 * buffers take effect.  Control thread.
 */
bool vnet_poll(VNet *n);

void vnet_get_stats(const VNet *n, VNetStats *st);

/*
 * Limits on what the guest transmits and receives (qos.h; only the
 * bytes-total and iops-total buckets: bytes and packets per second), for
 * all queue pairs together; any time, from the control thread; all-zero
 * configurations remove them.  Frames over a limit wait (transmit: in the
 * ring; receive: in the backend).  0, or -EINVAL.
 */
int vnet_set_limits(VNet *n, const QosConfig *tx, const QosConfig *rx);
/* Frames that waited for the transmit (tx) or receive limit. */
uint64_t vnet_limit_hits(const VNet *n, bool tx);
uint64_t vnet_offered_features(const VNet *n);
/* The MTU offered to the driver (the option, or what 0 resolved to). */
uint16_t vnet_mtu(const VNet *n);
unsigned vnet_active_pairs(const VNet *n);

/*
 * Migration (vnet-state.c): the device type in state streams, and why the
 * last incoming state was refused (NULL when none was).  The vfio-user
 * migration callbacks come with the server configuration.
 */
#define VNET_STATE_TYPE "virtio-net"
const char *vnet_migration_error(const VNet *n);

/* Features the driver may accept together (5.1.3.1): 0 or -EINVAL. */
int vnet_check_features(uint64_t features);
/* The receive offloads (VNET_OFFLOAD_*) negotiated guest features ask the backend for. */
unsigned vnet_guest_offloads(uint64_t features);
