/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The migration v2 state machine (linux/vfio.h "vfio_device_mig_state",
 * vfio-user.rst "VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE"): the direct arcs a
 * device implements, and the shortest path between any two states that
 * never passes through a saving state (PRE_COPY, STOP_COPY).
 */
#include <errno.h>

#include <glib.h>

#include "migration.h"
#include "migration-fsm.h"

static const char *const state_names[_VU_MIG_STATE_MAX] = {
        [VU_MIG_ERROR] = "error",
        [VU_MIG_STOP] = "stop",
        [VU_MIG_RUNNING] = "running",
        [VU_MIG_STOP_COPY] = "stop-copy",
        [VU_MIG_RESUMING] = "resuming",
        [VU_MIG_RUNNING_P2P] = "running-p2p",
        [VU_MIG_PRE_COPY] = "pre-copy",
        [VU_MIG_PRE_COPY_P2P] = "pre-copy-p2p",
};

const char *vu_mig_state_to_string(enum vu_mig_state s) {
        return (unsigned) s < _VU_MIG_STATE_MAX ? state_names[s] : NULL;
}

bool vu_mig_state_supported(enum vu_mig_state s) {
        return s == VU_MIG_STOP || s == VU_MIG_RUNNING || s == VU_MIG_STOP_COPY || s == VU_MIG_RESUMING ||
               s == VU_MIG_PRE_COPY;
}

bool vu_mig_arc(enum vu_mig_state from, enum vu_mig_state to) {
        switch (from) {
        case VU_MIG_RUNNING:
                return to == VU_MIG_STOP || to == VU_MIG_PRE_COPY;
        case VU_MIG_STOP:
                return to == VU_MIG_RUNNING || to == VU_MIG_STOP_COPY || to == VU_MIG_RESUMING;
        case VU_MIG_PRE_COPY:
                return to == VU_MIG_RUNNING || to == VU_MIG_STOP_COPY;
        case VU_MIG_STOP_COPY:
        case VU_MIG_RESUMING:
                return to == VU_MIG_STOP;
        default:
                return false;
        }
}

static bool saving(enum vu_mig_state s) {
        return s == VU_MIG_PRE_COPY || s == VU_MIG_STOP_COPY;
}

int vu_mig_path(enum vu_mig_state from, enum vu_mig_state to, enum vu_mig_state path[VU_MIG_MAX_PATH]) {
        enum vu_mig_state queue[_VU_MIG_STATE_MAX], prev[_VU_MIG_STATE_MAX];
        bool seen[_VU_MIG_STATE_MAX] = { false };
        unsigned head = 0, tail = 0;
        int n = 0;

        if (!vu_mig_state_supported(from) || !vu_mig_state_supported(to))
                return -EINVAL;
        if (from == to)
                return 0;
        /* The one pair a shortest path would allow but the protocol forbids. */
        if (from == VU_MIG_STOP_COPY && to == VU_MIG_PRE_COPY)
                return -EINVAL;

        queue[tail++] = from;
        seen[from] = true;
        while (head < tail) {
                enum vu_mig_state cur = queue[head++];

                if (cur == to)
                        break;
                /* A saving state may end a path but not be passed through. */
                if (cur != from && saving(cur))
                        continue;
                for (int nx = 0; nx < _VU_MIG_STATE_MAX; nx++) {
                        if (seen[nx] || !vu_mig_state_supported(nx) || !vu_mig_arc(cur, nx))
                                continue;
                        seen[nx] = true;
                        prev[nx] = cur;
                        queue[tail++] = nx;
                }
        }
        if (!seen[to])
                return -EINVAL;
        for (enum vu_mig_state s = to; s != from; s = prev[s])
                n++;
        if (n > VU_MIG_MAX_PATH)
                return -EINVAL;
        for (enum vu_mig_state s = to, *p = path + n; s != from; s = prev[s])
                *--p = s;
        return n;
}
