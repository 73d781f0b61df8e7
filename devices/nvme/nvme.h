/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NVMe controller model (NVM Express 1.4, PCIe transport): a pure state
 * machine with three seams — VuMem for guest memory, an interrupt callback,
 * and one block backend per namespace.  No D-Bus, no JSON, no main loop.
 *
 * Threads: the caller's control thread does register accesses, resets,
 * quiesce/resume and namespace changes; the controller's own I/O threads
 * (cfg.iothreads) each run their queues, with their own submission
 * context in every namespace's backend, and send their CQs' interrupts.
 * Register writes never wait for I/O: doorbells are posted to the thread
 * that owns the queue.  Only nvme_ctrl_quiesce() (and what runs
 * quiesced) waits for in-flight I/O to finish, on every thread.
 *
 * Return convention: 0 or a count on success, negative errno on failure.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/lat-hist.h"
#include <sys/types.h>

#include "block/blk.h"
#include "qos/qos.h"
#include "vfio-user/mem.h"
#include "vfio-user/proto.h"

typedef struct NvmeCtrl NvmeCtrl;

#define NVME_MAX_IOQS   64u     /* I/O queue pairs a controller can offer */
#define NVME_MAX_NS     32u     /* namespace IDs 1..NVME_MAX_NS */
#define NVME_MAX_IOTHREADS 16u  /* I/O threads a controller can run */
#define NVME_MAX_POLL_US 10000u /* longest polling window of an I/O thread, µs */
#define NVME_MAX_MSI_VECTORS 32u /* MSI's limit (PCIe Base 6.0 §7.7.1.2) */
#define NVME_SN_MAX     20u     /* serial number: 1..NVME_SN_MAX printable ASCII characters */

/* Fire MSI-X vector n (vu_server_irq in production).  Called from any I/O thread. */
typedef void (*NvmeIrqFn)(void *opaque, unsigned vector);

typedef struct NvmeCtrlConfig {
        const char *name;               /* device name: logs, NQN, identifier derivation */
        const char *serial;             /* SN, ≤ NVME_SN_MAX ASCII characters; stable per device */
        uint8_t host_uuid[16];          /* per-host seed for NGUID/EUI-64/UUID */
        unsigned max_ioqs;              /* 1..NVME_MAX_IOQS I/O queue pairs */
        unsigned msix_nvec;             /* interrupt vectors: MSI-X (≥ max_ioqs + 1 for one per queue),
                                         * or with msi a power of two ≤ NVME_MAX_MSI_VECTORS */
        bool msi;                       /* MSI (multiple messages, per-vector masking) instead of
                                         * MSI-X: no MSI-X capability, nothing in BAR4 */
        unsigned poll_us;               /* 0..NVME_MAX_POLL_US: longest adaptive polling window of an
                                         * I/O thread before it sleeps (0: never polls) */
        unsigned iothreads;             /* 0..NVME_MAX_IOTHREADS I/O threads (0: one; more than
                                         * max_ioqs: max_ioqs); CQ q runs on thread (q - 1) % n,
                                         * an SQ on its CQ's thread, the admin queue on thread 0 */
        uint16_t cntlid;                /* controller ID */
        bool manual;                    /* no I/O thread: the caller runs the queues with
                                         * nvme_ctrl_poll(), on its own thread (tests, fuzzers) */
} NvmeCtrlConfig;

typedef struct NvmeStats {
        uint64_t commands;              /* completed, admin + I/O */
        uint64_t read_cmds, write_cmds;
        uint64_t read_bytes, write_bytes;
        uint64_t errors;                /* commands completed with an error status */
        uint64_t latency_ns_total;      /* I/O commands, fetch to completion */
        uint64_t latency_ns_max;
        uint64_t io_cmds;
        LatStatsSnapshot lat;           /* I/O commands by operation: read, write, flush, other */
        uint64_t doorbell_writes;       /* trapped doorbell writes (exits) */
        uint64_t irqs;
        uint64_t wakeups;               /* I/O thread sleeps ended */
        uint64_t limit_hits;            /* commands that waited for an I/O limit */
} NvmeStats;

/*
 * Create a controller (power-on state, CC.EN=0) and start its I/O thread.
 * Returns 0 and *out, or -EINVAL for a bad configuration, or -errno.
 */
int nvme_ctrl_new(const NvmeCtrlConfig *cfg, NvmeCtrl **out);
/*
 * A manual controller (cfg.manual): one pass of what its I/O thread does —
 * a requested shutdown, backend completions, doorbells and commands,
 * interrupts.  Returns the work done (0: nothing to do now).  Call it
 * until it returns 0 to let posted doorbells take effect.
 */
unsigned nvme_ctrl_poll(NvmeCtrl *c);
/* Stop the I/O thread (draining I/O), free namespaces and backends. NULL-safe. */
void nvme_ctrl_free(NvmeCtrl *c);

/* Guest memory and interrupt sink.  Call before the guest enables the controller, or quiesced. */
void nvme_ctrl_attach(NvmeCtrl *c, const VuMem *mem, NvmeIrqFn irq, void *irq_opaque);

/* BAR0: registers (0x0-0xfff) and doorbells; size is a power of two ≥ 16 KiB. */
uint64_t nvme_ctrl_bar0_size(const NvmeCtrl *c);
/* Register/doorbell access.  0, or -EINVAL (offset/len outside BAR0). */
int nvme_ctrl_bar0_read(NvmeCtrl *c, uint64_t off, void *buf, size_t len);
int nvme_ctrl_bar0_write(NvmeCtrl *c, uint64_t off, const void *buf, size_t len);

/*
 * Quiesce: stop fetching commands, let in-flight I/O finish, and return
 * when the I/O thread holds no guest-memory translation.  Nests.
 */
void nvme_ctrl_quiesce(NvmeCtrl *c);
void nvme_ctrl_resume(NvmeCtrl *c);

/* Power-on reset (DEVICE_RESET, FLR, lost connection): quiesces itself. */
void nvme_ctrl_reset(NvmeCtrl *c);

/*
 * PCI Bus Master Enable (command register bit 2).  Off, the controller
 * issues no DMA at all: it fetches no command, reads no PRP list, shadow
 * doorbell or data, writes no completion entry, EventIdx or data, and
 * sends no MSI-X message; doorbell writes and completions are kept and
 * acted on once it is on again.  Commands already in progress finish
 * (their data and completions land) before this returns.  A new
 * controller is on (no PCI function around it); nvme_pci_start() follows
 * the config space.  Quiesces itself.
 */
void nvme_ctrl_set_bus_master(NvmeCtrl *c, bool on);

/*
 * Namespaces.  add takes ownership of b (also on failure).  block_size is
 * 512 or 4096.  Changes on a live controller raise a Namespace Attribute
 * Changed event (§5.2) and update the Changed Namespace List log.
 * add: 0, -EEXIST (nsid in use), -EINVAL (nsid, block size, size).
 * remove/resize: 0, -ENOENT; resize: -EINVAL (shrinking), or the backend's errno.
 */
int nvme_ctrl_ns_add(NvmeCtrl *c, uint32_t nsid, BlkBackend *b, uint32_t block_size, bool read_only);
int nvme_ctrl_ns_remove(NvmeCtrl *c, uint32_t nsid);
int nvme_ctrl_ns_resize(NvmeCtrl *c, uint32_t nsid, uint64_t new_size);
/* Size in bytes of namespace nsid, or 0 if absent. */
uint64_t nvme_ctrl_ns_size(NvmeCtrl *c, uint32_t nsid);
/* What namespace nsid's backends wait for (blk_backend_waiting), "" when nothing.  The control thread. */
void nvme_ctrl_ns_waiting(NvmeCtrl *c, uint32_t nsid, char *buf, size_t size);

/*
 * I/O limits (qos.h) of namespace nsid, or with nsid 0 of the group all
 * namespaces share; any time, from the control thread; an all-zero cfg
 * removes them.  A limit may be set before its namespace exists.
 * Commands over a limit stay in their SQ until they may start (never
 * failed, nothing behind them in that SQ overtakes them).  0, -ENOENT
 * (nsid above NVME_MAX_NS), -EINVAL (qos_config_check refuses cfg).
 */
int nvme_ctrl_set_limits(NvmeCtrl *c, uint32_t nsid, const QosConfig *cfg);
/* Commands that waited for the limit of nsid (0: the group's). */
uint64_t nvme_ctrl_limit_hits(NvmeCtrl *c, uint32_t nsid);

/* Namespace identifiers derived from (host uuid, device name, nsid): stable and host-unique. */
void nvme_derive_ns_ids(const uint8_t host_uuid[16], const char *name, uint32_t nsid,
                        uint8_t nguid[16], uint8_t eui64[8], uint8_t uuid[16]);

/*
 * Live migration (vfio-user migration v2, nvme-mig.c).  The server walks
 * the state machine and calls transition once per direct arc, with the
 * controller quiesced: 0, or -errno (the server then enters ERROR; a
 * failed RESUMING leaves the controller reset and stopped, never running
 * on what it was given).  While STOP, STOP_COPY or RESUMING the I/O thread
 * stays parked.  read: the saved state in STOP_COPY (bytes, 0 at the end;
 * an empty stream in PRE_COPY), -EINVAL otherwise.  write: stream bytes in
 * RESUMING, checked as they come: 0 or the reader's -errno.  reset: a
 * device reset took the server back to RUNNING.
 */
int nvme_ctrl_mig_transition(NvmeCtrl *c, enum vu_mig_state from, enum vu_mig_state to);
ssize_t nvme_ctrl_mig_read(NvmeCtrl *c, void *buf, size_t len);
int nvme_ctrl_mig_write(NvmeCtrl *c, const void *buf, size_t len);
void nvme_ctrl_mig_reset(NvmeCtrl *c);
enum vu_mig_state nvme_ctrl_mig_state(const NvmeCtrl *c);
/* Why the last incoming stream was refused (for people), or NULL. */
const char *nvme_ctrl_mig_error(const NvmeCtrl *c);

void nvme_ctrl_get_stats(NvmeCtrl *c, NvmeStats *st);

/* Controller state for logs and tests: "disabled", "enabling", "ready", "shutting-down", "shutdown", "fatal". */
const char *nvme_ctrl_state_string(NvmeCtrl *c);
