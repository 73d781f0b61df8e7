/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Host commands for tests and benchmarks that build network namespaces and TAPs. */
#pragma once

/* Run a shell command (printf-style), output discarded: its exit status, or -1. */
int host_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Why network namespaces and TAPs cannot be used here (root, /dev/net/tun, ip(8)), or NULL. */
const char *host_netns_skip_reason(void);
