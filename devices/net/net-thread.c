/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One data-path thread per queue pair.  It sleeps in epoll on its kick
 * eventfd (trapped notifications, wake-ups) and its backend fd, or, in poll
 * mode, spins over the rings and the backend, napping briefly in epoll once
 * a run of rounds moved nothing.  The control thread changes
 * its state (idle, run, exit) with a handshake: the request is acknowledged
 * only between two rounds of work, so once vnet_pairs_set() returns no
 * thread holds a guest-memory translation.
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>
#include <glib-unix.h>

#include "net/vnet-priv.h"

static const char *const pair_state_names[_VNET_PAIR_STATE_MAX] = {
        [VNET_PAIR_IDLE] = "idle",
        [VNET_PAIR_RUN] = "run",
        [VNET_PAIR_EXIT] = "exit",
};

const char *vnet_pair_state_to_string(VNetPairState s) {
        return s < _VNET_PAIR_STATE_MAX ? pair_state_names[s] : NULL;
}

void vnet_pair_wake(VNetPair *p) {
        if (p->n->opt.manual)
                return;         /* nobody sleeps: the caller polls */
        eventfd_write(p->kick_fd, 1);
}

/* Register the backend fd for what the pair waits on: input for the guest, room for output. */
static void watch_backend(VNetPair *p, bool active) {
        VNet *n = p->n;
        struct epoll_event ev = { .data.u32 = 1 };
        unsigned want = 0;

        if (active && p->want_input)
                want |= EPOLLIN;
        if (active && p->tx_blocked)
                want |= EPOLLOUT;
        if (want == p->be_mask)
                return;
        ev.events = want;
        if (epoll_ctl(p->epfd, EPOLL_CTL_MOD, n->be->ops->fd(n->be, p->index), &ev) == 0)
                p->be_mask = want;
}

/* Take a state change request, if any.  Called between rounds of work only. */
static void take_request(VNetPair *p) {
        VNet *n = p->n;

        if (__atomic_load_n(&p->req_seq, __ATOMIC_ACQUIRE) == p->ack_seq)
                return;
        pthread_mutex_lock(&n->lock);
        VNetPairState prev = p->state;
        p->state = p->want;
        p->ack_seq = p->req_seq;
        pthread_cond_broadcast(&n->cond);
        pthread_mutex_unlock(&n->lock);

        if (p->state == VNET_PAIR_RUN && prev != VNET_PAIR_RUN) {
                p->have_frame = false;
                p->tx_blocked = false;
                p->want_input = false;
                vnet_pair_wake(p);      /* look at the rings once: buffers may be waiting */
        }
}

/*
 * Poll mode: after this many rounds in a row that moved nothing, the thread
 * waits for backend input (or a wake-up) for at most VNET_POLL_NAP_NS before
 * it looks at the rings again.  A busy queue never naps; an idle one stops
 * taking a whole CPU away from the guest and the backend, which matters most
 * on hosts with few CPUs, at the cost of up to VNET_POLL_NAP_NS latency on
 * the first buffer after a quiet spell.
 */
#define VNET_POLL_IDLE_ROUNDS 64
#define VNET_POLL_NAP_NS 50000

/* Everything the pair has moved so far: a change means a round did work. */
static uint64_t pair_progress(const VNetPair *p) {
        return __atomic_load_n(&p->c.rx_packets, __ATOMIC_RELAXED) + __atomic_load_n(&p->c.rx_drops, __ATOMIC_RELAXED) +
               __atomic_load_n(&p->c.tx_packets, __ATOMIC_RELAXED) + __atomic_load_n(&p->c.tx_drops, __ATOMIC_RELAXED) +
               __atomic_load_n(&p->c.rx_errors, __ATOMIC_RELAXED) + __atomic_load_n(&p->c.tx_errors, __ATOMIC_RELAXED) +
               (p->rx ? p->rx->n_popped : 0) + (p->tx ? p->tx->n_popped : 0);
}

/* One round over the pair's queues.  True when work remains. */
static bool work(VNetPair *p) {
        VNet *n = p->n;
        bool more = false;

        p->qos_wake_ns = 0;
        if (p->index == 0 && n->ctrl)
                vnet_ctrl_process(n, p->chain);
        more |= vnet_tx_process(p) > 0;
        more |= vnet_rx_process(p) > 0;
        return more;
}

static void *pair_main(void *arg) {
        VNetPair *p = arg;
        VNet *n = p->n;
        struct epoll_event evs[4];
        unsigned idle_rounds = 0;

        g_autofree char *tname = g_strdup_printf("vnet-q%u", p->index);
        pthread_setname_np(pthread_self(), tname);

        for (;;) {
                take_request(p);
                if (p->state == VNET_PAIR_EXIT)
                        break;

                if (p->state != VNET_PAIR_RUN) {
                        /* Idle: only a request or a wake-up can change anything. */
                        eventfd_t v;
                        watch_backend(p, false);
                        if (__atomic_load_n(&p->req_seq, __ATOMIC_ACQUIRE) == p->ack_seq)
                                eventfd_read(p->kick_fd, &v);
                        continue;
                }

                if (n->opt.poll) {
                        uint64_t before = pair_progress(p);
                        if (work(p) || pair_progress(p) != before) {
                                idle_rounds = 0;
                                continue;
                        }
                        if (++idle_rounds < VNET_POLL_IDLE_ROUNDS)
                                continue;
                        idle_rounds = 0;
                        watch_backend(p, true);
                        struct timespec nap = { .tv_nsec = VNET_POLL_NAP_NS };
                        int nev = epoll_pwait2(p->epfd, evs, G_N_ELEMENTS(evs), &nap, NULL);
                        for (int i = 0; i < nev; i++) {
                                if (evs[i].data.u32 == 0) {
                                        eventfd_t v;
                                        eventfd_read(p->kick_fd, &v);
                                }
                        }
                        continue;
                }

                int nev = epoll_wait(p->epfd, evs, G_N_ELEMENTS(evs), vnet_qos_timeout(p));
                for (int i = 0; i < nev; i++) {
                        if (evs[i].data.u32 == 0) {
                                eventfd_t v;
                                eventfd_read(p->kick_fd, &v);
                        }
                }
                take_request(p);
                if (p->state != VNET_PAIR_RUN)
                        continue;
                while (work(p)) {
                        if (__atomic_load_n(&p->req_seq, __ATOMIC_ACQUIRE) != p->ack_seq)
                                break;
                }
                watch_backend(p, true);
        }
        return NULL;
}

/* A manual device: one round of every running pair's work, on the caller's thread. */
bool vnet_poll(VNet *n) {
        bool more = false;

        if (!n->opt.manual)
                return false;
        for (unsigned i = 0; i < n->opt.pairs; i++)
                if (n->pairs[i].state == VNET_PAIR_RUN)
                        more |= work(&n->pairs[i]);
        return more;
}

void vnet_pairs_set(VNet *n, VNetPairState want) {
        if (n->opt.manual) {
                /* No thread to hand the request to: take it here, between two polls. */
                for (unsigned i = 0; i < n->opt.pairs; i++) {
                        VNetPair *p = &n->pairs[i];
                        p->want = want;
                        __atomic_add_fetch(&p->req_seq, 1, __ATOMIC_RELEASE);
                        take_request(p);
                }
                return;
        }
        pthread_mutex_lock(&n->lock);
        for (unsigned i = 0; i < n->opt.pairs; i++) {
                VNetPair *p = &n->pairs[i];
                p->want = want;
                __atomic_add_fetch(&p->req_seq, 1, __ATOMIC_RELEASE);
                vnet_pair_wake(p);
        }
        for (unsigned i = 0; i < n->opt.pairs; i++) {
                VNetPair *p = &n->pairs[i];
                while (p->thread_started && p->ack_seq != p->req_seq)
                        pthread_cond_wait(&n->cond, &n->lock);
        }
        pthread_mutex_unlock(&n->lock);
}

int vnet_pairs_create(VNet *n) {
        n->pairs = g_new0(VNetPair, n->opt.pairs);
        for (unsigned i = 0; i < n->opt.pairs; i++) {
                VNetPair *p = &n->pairs[i];
                struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };

                p->n = n;
                p->index = i;
                p->epfd = -1;
                p->kick_fd = -1;
                p->chain = g_new0(VqChain, 1);
                p->tx_iov = g_new0(struct iovec, VNET_TX_IOV_POOL);
                p->tx_slots = g_new0(VNetTxSlot, NET_TX_BATCH_MAX);
                p->tx_frames = g_new0(NetTxFrame, NET_TX_BATCH_MAX);
                p->frame = g_malloc(VNET_HDR_LEN + VNET_MAX_FRAME);
                p->epfd = epoll_create1(EPOLL_CLOEXEC);
                p->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (p->epfd < 0 || p->kick_fd < 0)
                        return -errno;
                if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->kick_fd, &ev) < 0)
                        return -errno;
                struct epoll_event bev = { .events = 0, .data.u32 = 1 };
                if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, n->be->ops->fd(n->be, i), &bev) < 0)
                        return -errno;
        }
        /* Idle threads block in eventfd_read: make the kick fd blocking for that. */
        for (unsigned i = 0; i < n->opt.pairs && !n->opt.manual; i++) {
                VNetPair *p = &n->pairs[i];
                int r;
                g_autoptr(GError) err = NULL;
                if (!g_unix_set_fd_nonblocking(p->kick_fd, FALSE, &err))
                        return -EIO;
                r = pthread_create(&p->thread, NULL, pair_main, p);
                if (r != 0)
                        return -r;
                p->thread_started = true;
        }
        return 0;
}

void vnet_pairs_destroy(VNet *n) {
        if (!n->pairs)
                return;
        vnet_pairs_set(n, VNET_PAIR_EXIT);
        for (unsigned i = 0; i < n->opt.pairs; i++) {
                VNetPair *p = &n->pairs[i];
                if (p->thread_started)
                        pthread_join(p->thread, NULL);
                if (p->epfd >= 0)
                        close(p->epfd);
                if (p->kick_fd >= 0)
                        close(p->kick_fd);
                g_free(p->chain);
                g_free(p->tx_iov);
                g_free(p->tx_slots);
                g_free(p->tx_frames);
                g_free(p->frame);
        }
        g_clear_pointer(&n->pairs, g_free);
}
