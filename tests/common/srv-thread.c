/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "srv-thread.h"

static void *srv_thread_main(void *arg) {
        SrvThread *t = arg;

        for (;;) {
                struct pollfd p[2] = { { .fd = vu_server_fd(t->s), .events = POLLIN },
                                       { .fd = t->stop_fd, .events = POLLIN } };

                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        break;
                if (p[1].revents)
                        break;
                if (p[0].revents)
                        (void) vu_server_dispatch(t->s);
        }
        return NULL;
}

int srv_thread_start(SrvThread *t, VuServer *s) {
        int r;

        t->s = s;
        t->running = false;
        t->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (t->stop_fd < 0)
                return -errno;
        r = pthread_create(&t->thread, NULL, srv_thread_main, t);
        if (r != 0) {
                close(t->stop_fd);
                t->stop_fd = -1;
                return -r;
        }
        t->running = true;
        return 0;
}

void srv_thread_stop(SrvThread *t) {
        if (!t->running)
                return;
        (void) eventfd_write(t->stop_fd, 1);
        pthread_join(t->thread, NULL);
        close(t->stop_fd);
        t->stop_fd = -1;
        t->running = false;
}
