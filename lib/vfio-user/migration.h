/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Migration v2 (DEVICE_FEATURE MIGRATION / MIG_DEVICE_STATE, MIG_DATA_READ /
 * MIG_DATA_WRITE).  The server owns the state machine and the shortest-path
 * search; the device supplies one callback per direct arc and a data stream.
 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "proto.h"

const char *vu_mig_state_to_string(enum vu_mig_state s);

struct VuMigrationOps {
        /* One direct arc, from → to.  Called quiesced. 0 or -errno (the device then enters ERROR). */
        int (*transition)(void *opaque, enum vu_mig_state from, enum vu_mig_state to);
        /* PRE_COPY/STOP_COPY: fill up to len bytes; 0 means end of stream. ≥ 0 or -errno. */
        ssize_t (*read_data)(void *opaque, void *buf, size_t len);
        /* RESUMING: consume all len bytes. 0 or -errno. */
        int (*write_data)(void *opaque, const void *buf, size_t len);
};
