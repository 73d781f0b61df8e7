/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The migration state machine's graph (migration.c).  Not installed. */
#pragma once

#include <stdbool.h>

#include "proto.h"

#define VU_MIG_MAX_PATH 4

/* States we implement: STOP, RUNNING, STOP_COPY, RESUMING, PRE_COPY (no P2P states). */
bool vu_mig_state_supported(enum vu_mig_state s);
/* Is from → to one direct arc a device implements? */
bool vu_mig_arc(enum vu_mig_state from, enum vu_mig_state to);
/*
 * The states to step through from → to (to included, from not), shortest
 * first, never through PRE_COPY or STOP_COPY.  Returns the number of steps
 * (0 when from == to), or -EINVAL for an unsupported state or a forbidden
 * transition (STOP_COPY → PRE_COPY, anything from ERROR).
 */
int vu_mig_path(enum vu_mig_state from, enum vu_mig_state to, enum vu_mig_state path[VU_MIG_MAX_PATH]);
