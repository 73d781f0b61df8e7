/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vu-hold SOCKET [--idle]: a vfio-user client that stays connected.  It
 * negotiates, then reads the PCI configuration header in a loop and checks
 * every read against the first (with --idle it sends nothing more), until
 * its stdin closes.  Prints "connected" once
 * attached, "ops N" every 100 reads, and "ok N ERRORS" at the end.
 * Exit status: 0 when every read succeeded and matched, 1 otherwise.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vfio-user/client.h"

int main(int argc, char **argv) {
        VuClient *c = NULL;
        uint8_t first[64], now[64];
        unsigned long ops = 0, errors = 0;
        bool idle = argc == 3 && strcmp(argv[2], "--idle") == 0;
        int r;

        if (argc != 2 && !idle) {
                fprintf(stderr, "usage: vu-hold SOCKET [--idle]\n");
                return 2;
        }
        r = vu_client_connect(argv[1], &c);
        if (r == 0)
                r = vu_client_negotiate(c, NULL);
        if (r == 0)
                r = vu_client_region_read(c, VU_PCI_CONFIG_REGION, 0, first, sizeof(first));
        if (r < 0) {
                fprintf(stderr, "vu-hold: %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        printf("connected %04x:%04x\n", first[0] | first[1] << 8, first[2] | first[3] << 8);
        fflush(stdout);
        for (;;) {
                struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };

                if (poll(&p, 1, idle ? -1 : 5) > 0) {
                        char buf[64];

                        if (read(STDIN_FILENO, buf, sizeof(buf)) <= 0)
                                break;
                }
                if (idle)
                        continue;
                r = vu_client_region_read(c, VU_PCI_CONFIG_REGION, 0, now, sizeof(now));
                ops++;
                /* The status register (bytes 6-7) may change; the identity must not. */
                if (r < 0 || memcmp(first, now, 4) != 0 || memcmp(first + 8, now + 8, 8) != 0) {
                        errors++;
                        fprintf(stderr, "vu-hold: read %lu failed: %s\n", ops, r < 0 ? strerror(-r) : "data changed");
                        if (r == -ECONNRESET || r == -EPIPE || r == -ENOTCONN)
                                break;
                }
                if (ops % 100 == 0) {
                        printf("ops %lu\n", ops);
                        fflush(stdout);
                }
        }
        printf("ok %lu %lu\n", ops, errors);
        vu_client_free(c);
        return errors ? 1 : 0;
}
