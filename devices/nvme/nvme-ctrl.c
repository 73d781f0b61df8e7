/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The controller object: creation, its I/O thread, quiesce/resume, and the
 * CC.EN / CC.SHN transitions (NVMe 1.4 §7.3 and §7.6).
 */
#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "nvme-internal.h"

static inline void nvme_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        __asm__ volatile("" ::: "memory");
#endif
}

static const char *const nvme_state_names[_NVME_STATE_MAX] = {
        [NVME_STATE_DISABLED] = "disabled",
        [NVME_STATE_READY] = "ready",
        [NVME_STATE_SHUTTING_DOWN] = "shutting-down",
        [NVME_STATE_SHUTDOWN] = "shutdown",
        [NVME_STATE_FATAL] = "fatal",
};

const char *nvme_ctrl_state_string(NvmeCtrl *c) {
        return nvme_state_names[c->state];
}

uint64_t nvme_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

void nvme_thread_kick(NvmeIoThread *t) {
        uint64_t one = 1;
        ssize_t n;

        if (t->c->cfg.manual)
                return;         /* nobody sleeps: the caller polls */
        do
                n = write(t->kick_fd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
}

void nvme_ctrl_fatal(NvmeCtrl *c, const char *why) {
        g_debug("nvme %s: controller fatal status: %s", c->name, why);
        atomic_fetch_or(&c->csts, NVME_CSTS_CFS);
        c->state = NVME_STATE_FATAL;
}

/*
 * Reap this thread's backends with requests in flight, and all of them
 * after one signalled: an event fd can turn readable after its completion
 * was reaped.  Returns completions run.  Event fds are cleared only by
 * nvme_arm_backends(), before the thread sleeps (else epoll_wait returns
 * at once, forever): a polling thread reads none.
 */
static unsigned nvme_reap_backends(NvmeIoThread *t) {
        NvmeCtrl *c = t->c;
        bool all = t->backend_signalled;
        unsigned n = 0;

        t->backend_signalled = false;
        for (unsigned i = 1; i <= NVME_MAX_NS; i++) {
                if (!c->ns[i])
                        continue;
                BlkBackend *b = c->ns[i]->be[t->idx];
                if (all || blk_backend_inflight(b))
                        n += blk_backend_reap(b);
        }
        return n;
}

/* Before sleeping: true when a backend of this thread already has completions waiting. */
static bool nvme_arm_backends(NvmeIoThread *t) {
        NvmeCtrl *c = t->c;
        bool any = false;

        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                if (c->ns[i] && blk_backend_arm(c->ns[i]->be[t->idx]))
                        any = true;
        return any;
}

static void nvme_commit_backends(NvmeIoThread *t) {
        NvmeCtrl *c = t->c;
        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                if (c->ns[i])
                        blk_backend_commit(c->ns[i]->be[t->idx]);
}

static void nvme_wait_events(NvmeIoThread *t, int timeout_ms) {
        struct epoll_event ev[8];
        int n = epoll_wait(t->epoll_fd, ev, 8, timeout_ms);
        atomic_fetch_add_explicit(&t->st.wakeups, 1, memory_order_relaxed);
        for (int i = 0; i < n; i++) {
                if (ev[i].data.fd == t->kick_fd) {
                        uint64_t v;
                        ssize_t r = read(t->kick_fd, &v, sizeof(v));
                        (void) r;
                } else {
                        t->backend_signalled = true;
                }
        }
}

/* Let every in-flight backend request of this thread finish (completions are posted). */
static void nvme_drain(NvmeIoThread *t) {
        nvme_commit_backends(t);
        while (t->backend_inflight > 0) {
                t->pass_ns = nvme_now_ns();
                if (nvme_reap_backends(t) == 0 && !nvme_arm_backends(t))
                        nvme_wait_events(t, 100);
                nvme_queues_process(t, false);
                /* Multi-step commands submit their next step from a completion. */
                nvme_commit_backends(t);
        }
        nvme_irqs_flush(t, UINT64_MAX);
}

/* io[0]: CC.SHN.  Every thread drains; then the namespaces are flushed. */
static void nvme_do_shutdown(NvmeIoThread *t) {
        NvmeCtrl *c = t->c;
        NvmeCtrlState prev = c->state;

        nvme_threads_pause_others(c);
        if (c->state == NVME_STATE_READY)
                c->state = NVME_STATE_SHUTTING_DOWN;
        nvme_drain(t);
        /* §7.6.2: everything completed must be on stable media. */
        for (unsigned i = 1; i <= NVME_MAX_NS; i++) {
                if (!c->ns[i])
                        continue;
                BlkRequest r = { .op = BLK_FLUSH };
                int ret = blk_execute_sync(c->ns[i]->backend, &r);
                if (ret < 0)
                        g_debug("nvme %s: flush of namespace %u at shutdown: %s", c->name, i, g_strerror(-ret));
        }
        if (prev == NVME_STATE_READY)
                c->state = NVME_STATE_SHUTDOWN;
        uint32_t csts = atomic_load(&c->csts);
        atomic_store(&c->csts, (csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_DONE);
        nvme_threads_resume_others(c);
}

/* Under c->lock: must t stay parked? */
static bool nvme_thread_held(const NvmeIoThread *t) {
        return t->c->pause_count > 0 || t->pause_count > 0;
}

static void nvme_park(NvmeIoThread *t) {
        NvmeCtrl *c = t->c;

        nvme_drain(t);
        pthread_mutex_lock(&c->lock);
        t->parked = true;
        pthread_cond_broadcast(&c->cond);
        while (nvme_thread_held(t) && !c->stop)
                pthread_cond_wait(&c->cond, &c->lock);
        t->parked = false;
        pthread_mutex_unlock(&c->lock);
        /* Guest mappings may have changed while we were parked. */
        nvme_queues_forget_mappings(c, t);
}

/*
 * Adaptive polling (QEMU's AioContext polling, per thread): gap_ns is how
 * long the thread went without work before a wake-up brought some: the
 * window it polled plus the time it slept, up to when the work arrived (a
 * trapped doorbell's time: the message and the wake-up that follow are
 * what polling saves, and must not count against it).  Work that came within the
 * longest window (cfg.poll_us) would have been caught by polling that
 * long, without the sleep and the wake-up: the window grows (doubling,
 * from NVME_POLL_START_NS).  A longer gap means polling would have been
 * spent for nothing: the window halves, down to 0 (sleep at once).  An
 * idle thread's window shrinks with every sleep.
 */
static void nvme_poll_adapt(NvmeIoThread *t, uint64_t gap_ns) {
        uint64_t max = (uint64_t) t->c->cfg.poll_us * 1000;

        if (gap_ns > max) {
                t->poll_ns /= 2;
                if (t->poll_ns < NVME_POLL_START_NS)
                        t->poll_ns = 0;
        } else if (gap_ns > t->poll_ns) {
                t->poll_ns = MIN(max, t->poll_ns ? t->poll_ns * 2 : NVME_POLL_START_NS);
        }
}

/* A manual controller: one pass of nvme_io_main's loop, without its polling and sleeping. */
unsigned nvme_ctrl_poll(NvmeCtrl *c) {
        NvmeIoThread *t = &c->io[0];
        unsigned n;

        if (!c->cfg.manual || c->pause_count > 0)
                return 0;
        if (atomic_exchange(&c->shutdown_req, false))
                nvme_do_shutdown(t);
        t->pass_ns = nvme_now_ns();
        n = nvme_reap_backends(t);
        n += nvme_queues_process(t, c->state == NVME_STATE_READY);
        nvme_commit_backends(t);
        nvme_irqs_flush(t, t->pass_ns);
        return n;
}

static void *nvme_io_main(void *arg) {
        NvmeIoThread *t = arg;
        NvmeCtrl *c = t->c;
        uint64_t last_busy = 0;
        bool slept = false;

        char tname[16];
        if (c->n_io > 1)
                g_snprintf(tname, sizeof(tname), "nvme-io%u:%s", t->idx, c->name);
        else
                g_snprintf(tname, sizeof(tname), "nvme-io:%s", c->name);
        pthread_setname_np(pthread_self(), tname);

        for (;;) {
                /* The fast path takes no lock: quiesce and stop raise attention first. */
                if (atomic_load_explicit(&t->attention, memory_order_acquire)) {
                        pthread_mutex_lock(&c->lock);
                        bool stop = c->stop;
                        bool pause = nvme_thread_held(t);
                        pthread_mutex_unlock(&c->lock);
                        if (stop) {
                                nvme_drain(t);
                                break;
                        }
                        if (pause) {
                                nvme_park(t);
                                continue;
                        }
                }
                if (t->idx == 0 && atomic_load_explicit(&c->shutdown_req, memory_order_relaxed) &&
                    atomic_exchange(&c->shutdown_req, false))
                        nvme_do_shutdown(t);

                /* One clock read per pass: commands fetched and completed in it share it. */
                uint64_t now = t->pass_ns = nvme_now_ns();
                if (slept) {
                        uint64_t k = atomic_exchange_explicit(&t->kick_ns, 0, memory_order_relaxed);
                        nvme_poll_adapt(t, (k > last_busy && k < now ? k : now) - last_busy);
                        slept = false;
                }
                unsigned n = nvme_reap_backends(t);
                n += nvme_queues_process(t, c->state == NVME_STATE_READY);
                nvme_commit_backends(t);
                int timeout = nvme_qos_timeout(t, nvme_irqs_flush(t, now), now);
                if (n > 0) {
                        last_busy = now;
                        continue;
                }
                if (now - last_busy < t->poll_ns) {
                        nvme_cpu_relax();
                        continue;
                }
                /* Going to sleep: arm EventIdx, then look once more (no lost wakeup). */
                if (c->state == NVME_STATE_READY && nvme_queues_arm_and_recheck(t))
                        continue;
                if (nvme_arm_backends(t))
                        continue;
                slept = true;
                nvme_wait_events(t, timeout);
        }
        return NULL;
}

/* Under c->lock: raise attention on t and wake it. */
static void nvme_thread_hold(NvmeIoThread *t) {
        atomic_store_explicit(&t->attention, true, memory_order_release);
        nvme_thread_kick(t);
}

/* Under c->lock: drop t's attention if nothing holds it any more. */
static void nvme_thread_release(NvmeIoThread *t) {
        atomic_store_explicit(&t->attention, nvme_thread_held(t) || t->c->stop, memory_order_release);
}

void nvme_threads_pause_others(NvmeCtrl *c) {
        if (c->n_io < 2)
                return;
        pthread_mutex_lock(&c->lock);
        for (unsigned i = 1; i < c->n_io; i++) {
                c->io[i].pause_count++;
                nvme_thread_hold(&c->io[i]);
        }
        for (unsigned i = 1; i < c->n_io; i++)
                while (!c->io[i].parked && !c->stop)
                        pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

void nvme_threads_resume_others(NvmeCtrl *c) {
        if (c->n_io < 2)
                return;
        pthread_mutex_lock(&c->lock);
        for (unsigned i = 1; i < c->n_io; i++) {
                c->io[i].pause_count--;
                nvme_thread_release(&c->io[i]);
        }
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->lock);
}

/* A thread other than io[0] finished an admin command (Delete SQ): io[0] posts it. */
void nvme_mail_admin(NvmeCtrl *c, NvmeReq *req) {
        pthread_mutex_lock(&c->mail_lock);
        nvme_req_list_push(&c->mail, req);
        atomic_store_explicit(&c->mail_pending, true, memory_order_release);
        pthread_mutex_unlock(&c->mail_lock);
        nvme_thread_kick(&c->io[0]);
}

void nvme_ctrl_quiesce(NvmeCtrl *c) {
        if (c->cfg.manual) {
                /* What parking does, on the caller's thread. */
                if (c->pause_count++ == 0) {
                        nvme_drain(&c->io[0]);
                        c->io[0].parked = true;
                }
                return;
        }
        pthread_mutex_lock(&c->lock);
        c->pause_count++;
        for (unsigned i = 0; i < c->n_io; i++)
                nvme_thread_hold(&c->io[i]);
        for (unsigned i = 0; i < c->n_io; i++)
                while (!c->io[i].parked)
                        pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

void nvme_ctrl_resume(NvmeCtrl *c) {
        if (c->cfg.manual) {
                if (c->pause_count > 0 && --c->pause_count == 0) {
                        c->io[0].parked = false;
                        /* Guest mappings may have changed while it was parked. */
                        nvme_queues_forget_mappings(c, &c->io[0]);
                }
                return;
        }
        pthread_mutex_lock(&c->lock);
        if (c->pause_count > 0 && --c->pause_count == 0) {
                for (unsigned i = 0; i < c->n_io; i++)
                        nvme_thread_release(&c->io[i]);
                pthread_cond_broadcast(&c->cond);
        }
        pthread_mutex_unlock(&c->lock);
        for (unsigned i = 0; i < c->n_io; i++)
                nvme_thread_kick(&c->io[i]);
}

void nvme_ctrl_enable(NvmeCtrl *c) {
        uint32_t asqs = (c->aqa & 0xfff) + 1, acqs = ((c->aqa >> 16) & 0xfff) + 1;

        if (NVME_CC_MPS(c->cc) != 0 || NVME_CC_CSS(c->cc) != 0 || asqs < 2 || acqs < 2 ||
            !c->asq || !c->acq) {
                nvme_ctrl_fatal(c, "invalid CC/AQA/ASQ/ACQ at enable");
                return;
        }
        nvme_features_reset(c);
        if (nvme_cq_create(c, 0, acqs, c->acq, true, 0) != NVME_SUCCESS ||
            nvme_sq_create(c, 0, 0, asqs, c->asq) != NVME_SUCCESS) {
                nvme_queues_reset(c);
                nvme_ctrl_fatal(c, "cannot set up the admin queues");
                return;
        }
        c->state = NVME_STATE_READY;
        atomic_store(&c->csts, NVME_CSTS_RDY);
}

void nvme_ctrl_disable(NvmeCtrl *c) {
        nvme_queues_reset(c);
        nvme_features_reset(c);
        c->n_aen = 0;
        c->aen_masked = 0;
        c->dbbuf_db = c->dbbuf_ei = 0;
        c->state = NVME_STATE_DISABLED;
        atomic_store(&c->csts, 0);
}

void nvme_ctrl_reset(NvmeCtrl *c) {
        nvme_ctrl_quiesce(c);
        nvme_ctrl_disable(c);
        c->cc = 0;
        c->aqa = 0;
        c->asq = c->acq = 0;
        c->intms = 0;
        atomic_store(&c->shutdown_req, false);
        nvme_ctrl_resume(c);
}

void nvme_ctrl_set_bus_master(NvmeCtrl *c, bool on) {
        /* The quiesce lets commands in progress finish their DMA first. */
        nvme_ctrl_quiesce(c);
        if (c->dma_off == on)
                g_debug("nvme %s: bus mastering %s", c->name, on ? "enabled" : "disabled: no DMA until enabled");
        c->dma_off = !on;
        nvme_ctrl_resume(c);
}

void nvme_ctrl_attach(NvmeCtrl *c, const VuMem *mem, NvmeIrqFn irq, void *irq_opaque) {
        nvme_ctrl_quiesce(c);
        c->mem = mem;
        c->irq = irq;
        c->irq_opaque = irq_opaque;
        nvme_ctrl_resume(c);
}

uint64_t nvme_ctrl_bar0_size(const NvmeCtrl *c) {
        return c->bar0_size;
}

static int nvme_thread_init(NvmeCtrl *c, NvmeIoThread *t, unsigned idx) {
        t->c = c;
        t->idx = idx;
        t->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        t->db_dirty = g_new0(_Atomic uint64_t, (c->ndb + 63) / 64);
        t->discard_buf = g_malloc(NVME_MAX_XFER);
        if (t->kick_fd < 0 || t->epoll_fd < 0)
                return -errno;
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = t->kick_fd };
        if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->kick_fd, &ev) < 0)
                return -errno;
        return 0;
}

static void nvme_thread_fini(NvmeIoThread *t) {
        if (t->kick_fd >= 0)
                close(t->kick_fd);
        if (t->epoll_fd >= 0)
                close(t->epoll_fd);
        g_free(t->db_dirty);
        g_free(t->discard_buf);
}

int nvme_ctrl_new(const NvmeCtrlConfig *cfg, NvmeCtrl **out) {
        *out = NULL;
        if (!cfg->name || cfg->max_ioqs < 1 || cfg->max_ioqs > NVME_MAX_IOQS ||
            cfg->iothreads > NVME_MAX_IOTHREADS || cfg->poll_us > NVME_MAX_POLL_US ||
            cfg->msix_nvec < 1 || (cfg->serial && strlen(cfg->serial) > 20))
                return -EINVAL;
        if (cfg->msi && (cfg->msix_nvec > NVME_MAX_MSI_VECTORS || (cfg->msix_nvec & (cfg->msix_nvec - 1))))
                return -EINVAL;

        NvmeCtrl *c = g_new0(NvmeCtrl, 1);
        c->cfg = *cfg;
        c->name = g_strdup(cfg->name);
        c->serial = g_strdup(cfg->serial ? cfg->serial : cfg->name);
        if (strlen(c->serial) > 20)
                c->serial[20] = '\0';
        c->cfg.name = c->name;
        c->cfg.serial = c->serial;
        c->n_io = cfg->manual ? 1 : MIN(MAX(cfg->iothreads, 1u), cfg->max_ioqs);
        c->cfg.iothreads = c->n_io;
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        pthread_mutex_init(&c->mail_lock, NULL);
        pthread_mutex_init(&c->ev_lock, NULL);
        nvme_qos_init(c);

        /* CAP (§3.1.1): CQR, TO, DSTRD 0, CSS NVM, MPSMIN = MPSMAX = 0 (4 KiB). */
        c->cap = NVME_CAP_MQES(NVME_MQES) | NVME_CAP_CQR | NVME_CAP_TO(NVME_CAP_TIMEOUT) |
                 NVME_CAP_CSS_NVM;
        c->ndb = 2 * (cfg->max_ioqs + 1);
        uint64_t need = NVME_REG_DBS + (uint64_t) c->ndb * 4;
        c->bar0_size = 16384;
        while (c->bar0_size < need)
                c->bar0_size <<= 1;
        c->db_val = g_new0(_Atomic uint32_t, c->ndb);
        c->sq_thread = g_new0(_Atomic uint8_t, cfg->max_ioqs + 1);
        for (unsigned q = 1; q <= cfg->max_ioqs; q++)
                c->sq_thread[q] = (uint8_t) ((q - 1) % c->n_io);     /* nvme_cq_thread() */
        c->sq = g_aligned_alloc0(cfg->max_ioqs + 1, sizeof(NvmeSQ), 64);
        c->cq = g_aligned_alloc0(cfg->max_ioqs + 1, sizeof(NvmeCQ), 64);
        c->io = g_aligned_alloc0(c->n_io, sizeof(NvmeIoThread), 64);
        for (unsigned i = 0; i < c->n_io; i++)
                c->io[i].kick_fd = c->io[i].epoll_fd = -1;
        for (unsigned i = 0; i < c->n_io; i++) {
                int r = nvme_thread_init(c, &c->io[i], i);
                if (r < 0) {
                        nvme_ctrl_free(c);
                        return r;
                }
        }
        c->created_ns = nvme_now_ns();
        nvme_mig_init(c);
        nvme_features_reset(c);
        nvme_identify_ctrl_init(c);

        for (unsigned i = 0; i < c->n_io && !cfg->manual; i++) {
                int r = pthread_create(&c->io[i].thread, NULL, nvme_io_main, &c->io[i]);
                if (r != 0) {
                        nvme_ctrl_free(c);
                        return -r;
                }
                c->io[i].started = true;
        }
        *out = c;
        return 0;
}

void nvme_ctrl_free(NvmeCtrl *c) {
        if (!c)
                return;
        if (c->io && c->cfg.manual && c->pause_count == 0)
                nvme_drain(&c->io[0]);
        if (c->io) {
                pthread_mutex_lock(&c->lock);
                c->stop = true;
                for (unsigned i = 0; i < c->n_io; i++)
                        atomic_store_explicit(&c->io[i].attention, true, memory_order_release);
                pthread_cond_broadcast(&c->cond);
                pthread_mutex_unlock(&c->lock);
                for (unsigned i = 0; i < c->n_io; i++) {
                        if (!c->io[i].started)
                                continue;
                        nvme_thread_kick(&c->io[i]);
                        pthread_join(c->io[i].thread, NULL);
                }
        }
        if (c->sq && c->io)
                nvme_queues_reset(c);
        nvme_mig_free(c);
        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                nvme_ns_free(c->ns[i]);
        for (unsigned i = 0; c->io && i < c->n_io; i++)
                nvme_thread_fini(&c->io[i]);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        pthread_mutex_destroy(&c->mail_lock);
        pthread_mutex_destroy(&c->ev_lock);
        nvme_qos_free(c);
        g_aligned_free(c->io);
        g_free(c->db_val);
        g_free(c->sq_thread);
        g_aligned_free(c->sq);
        g_aligned_free(c->cq);
        g_free(c->name);
        g_free(c->serial);
        g_free(c);
}

void nvme_ctrl_get_stats(NvmeCtrl *c, NvmeStats *st) {
        memset(st, 0, sizeof(*st));
        for (unsigned i = 0; i < c->n_io; i++) {
                const NvmeIoStats *s = &c->io[i].st;
                st->commands += atomic_load(&s->commands);
                st->read_cmds += atomic_load(&s->read_cmds);
                st->write_cmds += atomic_load(&s->write_cmds);
                st->read_bytes += atomic_load(&s->read_bytes);
                st->write_bytes += atomic_load(&s->write_bytes);
                st->errors += atomic_load(&s->errors);
                st->latency_ns_max = MAX(st->latency_ns_max, atomic_load(&s->lat_max));
                lat_stats_merge(&st->lat, &s->lat);
                st->irqs += atomic_load(&s->irqs);
                st->wakeups += atomic_load(&s->wakeups);
        }
        for (unsigned o = 0; o < _LAT_OP_MAX; o++) {
                st->io_cmds += st->lat.op[o].count;
                st->latency_ns_total += st->lat.op[o].sum_ns;
        }
        st->doorbell_writes = atomic_load(&c->st_doorbells);
        for (unsigned i = 0; i <= NVME_MAX_NS; i++)
                st->limit_hits += atomic_load(&c->qos_hits[i]);
}
