/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A VMM's side of vfio-user migration v2 (vfio-user.rst "Migration"), as
 * the test VMMs nvme-io and net-io do it with our client library: the
 * device they drive decides what happens around it, this does the protocol.
 * Return convention: 0 or -errno.
 */
#pragma once

#include <glib.h>

#include "vfio-user/client.h"

/* MIG_DEVICE_STATE set (the server walks the path). */
int vmm_mig_set(VuClient *c, uint32_t state);
/* GET MIGRATION, as a VMM that migrates asks right after connecting: 0 when STOP_COPY is offered,
 * -EOPNOTSUPP when the device offers migration without it, or the error of the request. */
int vmm_mig_probe(VuClient *c);
/* PRE_COPY: the device keeps running; its pre-copy data is read (and dropped: ours has none). */
int vmm_mig_pre_copy(VuClient *c);
/* STOP_COPY and the whole stream; NULL on failure. */
GByteArray *vmm_mig_stop_copy(VuClient *c);

/* The device's part of attaching a new connection: PCI enable, MSI-X eventfds into irq. */
typedef int (*VmmAttachFunc)(VuClient *c, int *irq, void *opaque);

/*
 * The destination: connect to sock, negotiate, ask for migration, map ram,
 * attach(), then RESUMING with the stream in pieces, STOP, RUNNING.  0 with
 * *out; on failure nothing stays open except irq fds attach() filled (the
 * caller sets irq to -1 first and closes what is ≥ 0).
 */
int vmm_mig_load(const char *sock, const VuGuestRam *ram, const GByteArray *st, VmmAttachFunc attach,
                 void *opaque, int *irq, VuClient **out);

/*
 * The VMM's command channel: what stdin has now, without waiting.  Complete
 * lines are appended to lines (g_free'd strings), the rest stays in buf.
 * 0, or -1 at end of input.
 */
int vmm_stdin_lines(GString *buf, GPtrArray *lines);
