/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfu-hook's D-Bus client for vfud (org.vfu.vfud1, see xml/).  Every call
 * has a deadline; errors are negative errno plus a message for people.
 */
#pragma once

#include <stdint.h>
#include <systemd/sd-bus.h>

typedef struct {
        sd_bus *bus;
        const char *address;    /* as given: "system", "session" or an address */
        uint64_t timeout_usec;  /* budget for each device operation */
} HookBus;

/* Connect to @address ("system", "session" or a D-Bus address).
 * Returns 0, or negative errno with *@msg set (g_free it). */
int hook_bus_open(HookBus *hb, const char *address, uint64_t timeout_usec,
                  char **msg);
void hook_bus_close(HookBus *hb);

/* Ensure device @name's worker listens: StartDevice, then check its
 * State ("listening"/"connected") and that its SocketPath is
 * @socket_path (when not NULL).  Waits out a device that is stopping.
 * Returns 0, or negative errno with *@msg naming the problem. */
int hook_vfud_start(HookBus *hb, const char *name, const char *socket_path,
                    char **msg);

/* Whether device @name arrived here by a cold migration (vfuctl migrate)
 * and no client has used it since: MigratedFrom set, not connected.
 * Returns 1 (and the source host in *@from, g_free it), 0 with *@msg
 * saying why not, or negative errno with *@msg. */
int hook_vfud_arrived(HookBus *hb, const char *name, char **from, char **msg);

/* Return device @name to idle (StopDevice; the definition stays).  A
 * device vfud no longer knows is fine; one still connected (QEMU just
 * exited, the worker has not noticed yet) is waited for.
 * Returns 0, or negative errno with *@msg. */
int hook_vfud_stop(HookBus *hb, const char *name, char **msg);
