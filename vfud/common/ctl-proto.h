/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker control protocol: one JSON object per line over a SOCK_STREAM
 * UNIX socket (<runtime>/workers/<name>.ctl).
 *
 *   request   {"id": N, "method": "stats", "params": {...}, "fds": ["ns2"]}
 *   reply     {"id": N, "result": ...}
 *             {"id": N, "error": {"code": "invalid|backend|unsupported|busy|failed",
 *                                 "message": "..."}}
 *   event     {"event": "connected" | "disconnected", ...}   (after "subscribe")
 *
 * A message naming fds carries them as SCM_RIGHTS with its first byte; they
 * are matched to the names in order.  Lines are at most CTL_MAX_LINE bytes.
 *
 * Return convention: 0 or a count on success, negative errno on failure.
 */
#pragma once

#include <stdbool.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#define CTL_MAX_LINE (1024 * 1024)
#define CTL_MAX_FDS 16

typedef struct CtlReader {
        GByteArray *buf;
        GArray *fds;            /* int: received, not yet claimed by a message */
} CtlReader;

void ctl_reader_init(CtlReader *r);
/* Free the buffer and close unclaimed fds. */
void ctl_reader_clear(CtlReader *r);

/*
 * Read what the socket has.  Returns the byte count (> 0), 0 at end of
 * stream, -EAGAIN when nothing is available, -EMSGSIZE when a line exceeds
 * CTL_MAX_LINE, or another -errno.
 */
int ctl_reader_fill(CtlReader *r, int fd);

/*
 * Take the next complete message.  Returns 1 with *msg (a JSON object) and
 * *fds (an int GArray of the fds it named, owned by the caller; may be empty),
 * 0 when no complete line is buffered, -EBADMSG for a line that is not a JSON
 * object or names more fds than arrived.
 */
int ctl_reader_next(CtlReader *r, JsonNode **msg, GArray **fds);

/* Send one message with optional fds, waiting at most 5 s for buffer space.  0 or -errno. */
int ctl_send(int fd, JsonNode *msg, const int *fds, unsigned n_fds);

/*
 * Connect to a control socket (blocking connect, then non-blocking, CLOEXEC).
 * Returns the fd or -errno.
 */
int ctl_connect(const char *path);

/*
 * Send req and wait up to timeout_ms for the reply with the same id (events
 * in between are dropped).  Returns 0 with *reply (the whole reply object), or
 * -ETIMEDOUT, -ECONNRESET or another -errno.
 */
int ctl_call_sync(int fd, CtlReader *r, JsonNode *req, JsonNode **reply, int timeout_ms);

/* Build {"id": id, "method": method, "params": params (consumed, may be NULL), "fds": [names]} */
JsonNode *ctl_request_new(int64_t id, const char *method, JsonNode *params, const char *const *fd_names);

/* Close every fd in an int GArray and free it. */
void ctl_fds_free(GArray *fds);

