/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A VuServer dispatched by a thread of its own: the worker's event loop in
 * miniature, for tests, benchmarks and tools that run the device and our
 * client in one process.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>

#include "vfio-user/server.h"

typedef struct SrvThread {
        VuServer *s;
        pthread_t thread;
        int stop_fd;
        bool running;
} SrvThread;

/* Dispatch s on a new thread until srv_thread_stop().  0 or -errno. */
int srv_thread_start(SrvThread *t, VuServer *s);
/* Stop and join the thread (a no-op when it does not run); the server stays the caller's. */
void srv_thread_stop(SrvThread *t);
