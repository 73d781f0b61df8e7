/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <glib.h>

#include "host-cmd.h"

int host_run(const char *fmt, ...) {
        g_autofree char *cmd = NULL, *quiet = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        cmd = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        quiet = g_strdup_printf("%s >/dev/null 2>&1", cmd);
        r = system(quiet);
        return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

const char *host_netns_skip_reason(void) {
        if (geteuid() != 0)
                return "needs root (network namespaces, TAP)";
        if (access("/dev/net/tun", R_OK | W_OK) != 0)
                return "needs /dev/net/tun";
        if (host_run("ip -V") != 0)
                return "needs ip(8) (iproute2)";
        return NULL;
}
