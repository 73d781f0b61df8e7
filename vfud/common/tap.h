/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Opening TAP queues (/dev/net/tun, TUNSETIFF).  The manager opens them and
 * passes the fds to the device's worker; a standalone worker opens its own.
 */
#pragma once

#include <stdbool.h>

#include <glib.h>

/*
 * Attach one queue of TAP interface ifname (created if it does not exist),
 * IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, IFF_MULTI_QUEUE when multi_queue.
 * Returns the fd (O_CLOEXEC, O_NONBLOCK), or -1 with error saying why and
 * what to do.
 */
int tap_open(const char *ifname, bool multi_queue, GError **error);

/* Whether an interface called ifname exists in this network namespace. */
bool tap_exists(const char *ifname);

/*
 * The MTU of interface ifname (SIOCGIFMTU), or set it (SIOCSIFMTU, needs
 * CAP_NET_ADMIN).  The MTU, TRUE, or -1 / FALSE with error saying why.
 */
int tap_get_mtu(const char *ifname, GError **error);
gboolean tap_set_mtu(const char *ifname, unsigned mtu, GError **error);
