/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-user migration v2 for any device whose state is a devstate stream:
 * the device-side half of the state machine (lib/vfio-user walks the
 * shortest path and calls one arc at a time, quiesced), the data stream
 * and the rule that a device never runs on state it has not checked.
 *
 *   RUNNING  → STOP       hold the data path
 *   RUNNING  → PRE_COPY   keep running; the pre-copy stream is empty (the
 *                         state is small and only final once stopped)
 *   PRE_COPY → STOP_COPY  hold, save the stream
 *   STOP     → STOP_COPY  save the stream
 *   STOP_COPY→ STOP       drop the stream
 *   STOP     → RESUMING   reset the device, open a reader
 *   RESUMING → STOP       load: check all of it, then apply (any failure:
 *                         the device is reset, the arc fails, the server
 *                         puts the device in ERROR: held until a reset)
 *   STOP / PRE_COPY → RUNNING  release the data path
 *
 * Any failed arc into or out of RESUMING leaves the device reset.
 *
 * A device embeds a DevStateMig, gives it DevStateMigOps, forwards its
 * VuMigrationOps callbacks to devstate_mig_transition/read/write, calls
 * devstate_mig_reset() from its VuDeviceOps.reset, and asks
 * devstate_mig_may_run() before starting or resuming its data path (or
 * gives ops.hold, told when the hold begins and ends).
 * Control thread only.  Return convention: 0 / counts, or negative errno.
 *
 * Sections whose fields are members of a C struct are saved and loaded by
 * table (DevStateFieldMap, devstate_put_mapped/devstate_get_mapped).
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

#include "state/devstate.h"
#include "vfio-user/proto.h"

typedef struct DevStateMigOps {
        /* The device's finished stream, built with its data path quiesced. */
        int (*save)(void *opaque, DevStateWriter **out);
        /* A reader for this device's streams: type, identity and every section it knows. */
        DevStateReader *(*reader)(void *opaque);
        /*
         * Check the complete stream in r, then apply it; on failure leave
         * the device reset and say why with devstate_reader_fail().
         */
        int (*load)(void *opaque, DevStateReader *r);
        /* Back to power-on state (entering RESUMING, and after a failed arc into or out of it). */
        void (*reset)(void *opaque);
        /*
         * Optional: the data path is held (on) or released; called only when
         * that changes, before saving, loading or resetting under the hold.
         */
        void (*hold)(void *opaque, bool on);
        /* Optional: the incoming state was refused, why for people (default: a debug message). */
        void (*refused)(void *opaque, const char *why);
} DevStateMigOps;

typedef struct DevStateMig {
        const DevStateMigOps *ops;
        void *opaque;
        enum vu_mig_state state;        /* as the device last entered it */
        bool hold;                      /* data path held stopped */
        DevStateWriter *out;            /* STOP_COPY: the stream being read */
        DevStateReader *in;             /* RESUMING: the stream being written */
        char *error;                    /* why the last incoming state was refused */
        char *name;                     /* for logs */
} DevStateMig;

void devstate_mig_init(DevStateMig *m, const DevStateMigOps *ops, void *opaque, const char *name);
void devstate_mig_fini(DevStateMig *m);
/* A device reset (DEVICE_RESET, FLR, lost client): RUNNING, streams dropped, data path released. */
void devstate_mig_reset(DevStateMig *m);

/* VuMigrationOps, for the device to forward to. */
int devstate_mig_transition(DevStateMig *m, enum vu_mig_state from, enum vu_mig_state to);
ssize_t devstate_mig_read(DevStateMig *m, void *buf, size_t len);
int devstate_mig_write(DevStateMig *m, const void *buf, size_t len);

/* May the data path run?  False while migration holds the device stopped. */
bool devstate_mig_may_run(const DevStateMig *m);
/* Why the last incoming state was refused, for people; NULL when none was. */
const char *devstate_mig_error(const DevStateMig *m);
/*
 * Load a stream outside the state machine (tools, tests): the ops' load,
 * recording why it failed.  0 or -errno.
 */
int devstate_mig_load(DevStateMig *m, DevStateReader *r);

/*
 * One field of a section as a member of the device's struct (offset and
 * size from offsetof/sizeof).  Scalars: size must be the type's width (1 for
 * U8 and BOOL, 2, 4, 8).  BYTES: the member is an array; with elem ≠ 0 it
 * holds up to size / elem elements and count is the offset of an unsigned
 * holding how many are in use, with elem 0 the field is exactly size bytes.
 * optional: present is the offset of a bool, saved only when true, set on
 * loading to whether the stream had the field.  what names it in refusals.
 */
typedef struct DevStateFieldMap {
        uint16_t id;
        DevStateType type;
        const char *what;
        size_t offset, size;
        size_t elem, count;
        bool optional;
        size_t present;
} DevStateFieldMap;

/* Put the n fields of map from the struct at base, in table order.  0 or the writer's -errno. */
int devstate_put_mapped(DevStateWriter *w, const DevStateFieldMap *map, size_t n, const void *base);
/*
 * Get the n fields of map from section s of the finished reader r into the
 * struct at base.  0, or -EINVAL with the reason recorded in r (a list too
 * long or not whole elements, bytes of another length).
 */
int devstate_get_mapped(DevStateReader *r, const DevStateSection *s, const DevStateFieldMap *map, size_t n,
                        void *base);
