/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The client's private state (client.c, client-vmm.c).  Not installed. */
#pragma once

#include <glib.h>

#include "client.h"

struct VuClient {
        int fd;
        uint16_t next_id;
        int timeout_ms;
        char *caps;                     /* the server's VERSION JSON */
        uint32_t server_max_fds;
        uint32_t max_xfer;
        int lost;                       /* 0, or the -errno that ended the connection */
};

/* Note r (a socket errno) if it means the server is gone; returns r. */
int vu_client_note_error(VuClient *c, int r);

#define VU_CLIENT_REPLY_INIT { .data = NULL, .len = 0, .fd = -1 }
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VuClientReply, vu_client_reply_clear)
