/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The I/O thread: it serves every request queue and reaps the block
 * backend's completions, sleeping in epoll on its kick eventfd (trapped
 * notifications, wake-ups) and the backend's event fd.  After the last
 * work it keeps polling the rings and the backend for the poll window
 * (notifications stay off, so a busy driver causes no exits); before
 * sleeping it re-enables queue notifications and looks at the rings once
 * more, so no kick is lost.  The control thread changes its state (idle, run, exit)
 * with a handshake acknowledged only between rounds and after every request
 * in flight completed: once vblk_thread_set() returns, nothing touches
 * guest memory or the backend.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "vblk/vblk-priv.h"

#define VBLK_QUEUE_BUDGET 64u           /* chains taken per queue per round */

static const char *const thread_state_names[_VBLK_THREAD_STATE_MAX] = {
        [VBLK_THREAD_IDLE] = "idle",
        [VBLK_THREAD_RUN] = "run",
        [VBLK_THREAD_EXIT] = "exit",
};

const char *vblk_thread_state_to_string(VBlkThreadState s) {
        return s < _VBLK_THREAD_STATE_MAX ? thread_state_names[s] : NULL;
}

void vblk_wake(VBlk *b) {
        eventfd_write(b->kick_fd, 1);
}

static void flush_queues(VBlk *b) {
        for (unsigned i = 0; i < b->opt.queues; i++)
                vblk_queue_flush(&b->queues[i]);
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

/* Complete everything in flight (its completions are published). */
static void drain(VBlk *b) {
        blk_backend_commit(b->be);
        while (b->inflight > 0) {
                struct pollfd p = { .fd = blk_backend_fd(b->be), .events = POLLIN };
                b->pass_ns = now_ns();
                if (blk_backend_reap(b->be) == 0 && !blk_backend_arm(b->be))
                        (void) poll(&p, 1, 100);
                /* Multi-step requests submit their next step from a completion. */
                blk_backend_commit(b->be);
        }
        blk_backend_reap(b->be);
        flush_queues(b);
}

/* Take a state change request, if any.  Called between rounds of work only. */
static void take_request(VBlk *b) {
        if (__atomic_load_n(&b->req_seq, __ATOMIC_ACQUIRE) == b->ack_seq)
                return;
        pthread_mutex_lock(&b->lock);
        VBlkThreadState want = b->want;
        unsigned seq = b->req_seq;
        pthread_mutex_unlock(&b->lock);

        if (want != VBLK_THREAD_RUN)
                drain(b);

        pthread_mutex_lock(&b->lock);
        VBlkThreadState prev = b->state;
        b->state = want;
        b->ack_seq = seq;
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);
        if (b->state == VBLK_THREAD_RUN && prev != VBLK_THREAD_RUN)
                vblk_wake(b);   /* look at the rings once: requests may be waiting */
}

/* One round: completions, then new requests.  Work done. */
static unsigned round_work(VBlk *b) {
        b->pass_ns = now_ns();         /* the latencies' clock: started and completed in one round is 0 */
        unsigned n = blk_backend_reap(b->be);

        for (unsigned i = 0; i < b->opt.queues; i++) {
                int r = vblk_queue_process(&b->queues[i], VBLK_QUEUE_BUDGET);
                if (r > 0)
                        n += (unsigned) r;
        }
        blk_backend_commit(b->be);
        flush_queues(b);
        return n;
}

/* Ask for notifications before sleeping; true when requests arrived meanwhile. */
static bool arm_and_recheck(VBlk *b) {
        bool more = false;

        for (unsigned i = 0; i < b->opt.queues; i++) {
                VBlkQueue *q = &b->queues[i];
                if (q->vq && q->free && vq_notify_enable(q->vq))
                        more = true;
        }
        return more;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        __asm__ volatile("" ::: "memory");
#endif
}

static void *io_main(void *arg) {
        VBlk *b = arg;
        struct epoll_event evs[4];
        uint64_t poll_ns = (uint64_t) b->opt.poll_us * 1000, last_busy = 0;

        pthread_setname_np(pthread_self(), "vblk-io");

        for (;;) {
                take_request(b);
                if (b->state == VBLK_THREAD_EXIT)
                        break;
                if (b->state != VBLK_THREAD_RUN) {
                        /* Idle: only a request or a wake-up can change anything. */
                        eventfd_t v;
                        if (__atomic_load_n(&b->req_seq, __ATOMIC_ACQUIRE) == b->ack_seq)
                                eventfd_read(b->kick_fd, &v);
                        continue;
                }
                if (round_work(b) > 0) {
                        last_busy = b->pass_ns;
                        continue;
                }
                if (poll_ns && now_ns() - last_busy < poll_ns) {
                        cpu_relax();
                        continue;
                }
                if (arm_and_recheck(b) || blk_backend_arm(b->be))
                        continue;
                int nev = epoll_wait(b->epfd, evs, G_N_ELEMENTS(evs), -1);
                for (int i = 0; i < nev; i++) {
                        if (evs[i].data.u32 == 0) {
                                eventfd_t v;
                                eventfd_read(b->kick_fd, &v);
                        }
                }
        }
        return NULL;
}

void vblk_thread_set(VBlk *b, VBlkThreadState want) {
        pthread_mutex_lock(&b->lock);
        b->want = want;
        __atomic_add_fetch(&b->req_seq, 1, __ATOMIC_RELEASE);
        vblk_wake(b);
        while (b->thread_started && b->ack_seq != b->req_seq)
                pthread_cond_wait(&b->cond, &b->lock);
        pthread_mutex_unlock(&b->lock);
}

int vblk_thread_create(VBlk *b) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
        struct epoll_event bev = { .events = EPOLLIN, .data.u32 = 1 };
        g_autoptr(GError) err = NULL;
        int r;

        b->epfd = epoll_create1(EPOLL_CLOEXEC);
        b->kick_fd = eventfd(0, EFD_CLOEXEC);   /* blocking: the idle thread waits in read */
        if (b->epfd < 0 || b->kick_fd < 0)
                return -errno;
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->kick_fd, &ev) < 0 ||
            epoll_ctl(b->epfd, EPOLL_CTL_ADD, blk_backend_fd(b->be), &bev) < 0)
                return -errno;
        b->state = VBLK_THREAD_IDLE;
        r = pthread_create(&b->thread, NULL, io_main, b);
        if (r != 0)
                return -r;
        b->thread_started = true;
        return 0;
}

void vblk_thread_destroy(VBlk *b) {
        if (b->thread_started) {
                vblk_thread_set(b, VBLK_THREAD_EXIT);
                pthread_join(b->thread, NULL);
                b->thread_started = false;
        }
        if (b->epfd >= 0)
                close(b->epfd);
        if (b->kick_fd >= 0)
                close(b->kick_fd);
        b->epfd = b->kick_fd = -1;
}
