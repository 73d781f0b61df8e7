/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Network block backends of a disk, worker side: a disk object of kind
 * "nbd" ({"uri", "wait-ms"}) or "rbd" ({"pool", "namespace", "image",
 * "conf", "id", "keyring"}) into the block layer's open options.
 */
#pragma once

#include <json-glib/json-glib.h>

#include "block/blk.h"
#include "worker.h"

/*
 * Set o's NBD or RBD fields from disk (its strings stay disk's) and
 * *name to what messages call it; allows the worker IP sockets when it
 * will connect over TCP.  TRUE; FALSE with a WORKER_ERROR_INVALID error
 * when a field is missing.  A disk of another kind: TRUE, *name NULL.
 */
gboolean worker_netblk_options(Worker *w, JsonObject *disk, BlkOpenOptions *o, char **name, GError **error);

/* Why opening o's network backend failed with -errno r, for the user ("" when nothing useful). */
const char *worker_netblk_hint(const BlkOpenOptions *o, int r);
