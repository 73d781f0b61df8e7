/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Handler tests: the test device's server on one end of a socketpair, our
 * client on the other, both driven from the test's own thread: send a
 * request, run vu_server_dispatch(), read what came back.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "test-device.h"
#include "vfio-user/client.h"

typedef struct Pair {
        TestDevice *td;
        VuClient *c;
        int dispatch_ret;               /* what the last dispatch returned */
} Pair;

/* A device and a client; negotiated unless raw. */
Pair *pair_new(bool with_migration, bool negotiate);
/* With MSI of msi_nvec vectors instead of MSI-X (0: MSI-X). */
Pair *pair_new_irq(bool with_migration, bool negotiate, unsigned msi_nvec);
void pair_free(Pair *p);

/*
 * One request: header built from cmd/flags, payload p1+p2, fds.  Returns the
 * reply's errno as -errno (0 for success), -ETIMEDOUT when no reply came,
 * -ECONNRESET when the server closed the connection.  reply (may be NULL)
 * receives up to cap payload bytes, *rlen the payload length.
 */
int pair_xfer(Pair *p, uint16_t cmd, uint32_t flags, const void *p1, size_t l1, const void *p2, size_t l2,
              const int *fds, unsigned n_fds, void *reply, size_t cap, size_t *rlen);
/* Send bytes as they are (any header), dispatch, and report like pair_xfer. */
int pair_raw(Pair *p, const void *msg, size_t len, const int *fds, unsigned n_fds, void *reply, size_t cap,
             size_t *rlen);

int count_open_fds(void);
int pair_cfg_write(Pair *p, uint32_t off, uint32_t v, uint32_t len);
uint32_t pair_cfg_read(Pair *p, uint32_t off, uint32_t len);
