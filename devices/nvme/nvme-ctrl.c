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

void nvme_ctrl_kick(NvmeCtrl *c) {
        uint64_t one = 1;
        ssize_t n;
        do
                n = write(c->kick_fd, &one, sizeof(one));
        while (n < 0 && errno == EINTR);
}

void nvme_ctrl_fatal(NvmeCtrl *c, const char *why) {
        g_debug("nvme %s: controller fatal status: %s", c->name, why);
        atomic_fetch_or(&c->csts, NVME_CSTS_CFS);
        c->state = NVME_STATE_FATAL;
}

/*
 * Reap the backends with requests in flight, and all of them after one
 * signalled: an event fd can turn readable after its completion was
 * reaped, and only a reap clears it (else epoll_wait returns at once,
 * forever).  Returns completions run.
 */
static unsigned nvme_reap_backends(NvmeCtrl *c) {
        bool all = c->backend_signalled;
        unsigned n = 0;

        c->backend_signalled = false;
        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                if (c->ns[i] && (all || blk_backend_inflight(c->ns[i]->backend)))
                        n += blk_backend_reap(c->ns[i]->backend);
        return n;
}

static void nvme_commit_backends(NvmeCtrl *c) {
        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                if (c->ns[i])
                        blk_backend_commit(c->ns[i]->backend);
}

static void nvme_wait_events(NvmeCtrl *c, int timeout_ms) {
        struct epoll_event ev[8];
        int n = epoll_wait(c->epoll_fd, ev, 8, timeout_ms);
        atomic_fetch_add_explicit(&c->st_wakeups, 1, memory_order_relaxed);
        for (int i = 0; i < n; i++) {
                if (ev[i].data.fd == c->kick_fd) {
                        uint64_t v;
                        ssize_t r = read(c->kick_fd, &v, sizeof(v));
                        (void) r;
                } else {
                        c->backend_signalled = true;
                }
        }
}

/* Let every in-flight backend request finish (completions are posted). */
static void nvme_drain(NvmeCtrl *c) {
        nvme_commit_backends(c);
        while (c->backend_inflight > 0) {
                c->pass_ns = nvme_now_ns();
                if (nvme_reap_backends(c) == 0)
                        nvme_wait_events(c, 100);
                nvme_queues_process(c, false);
                /* Multi-step commands submit their next step from a completion. */
                nvme_commit_backends(c);
        }
        nvme_irqs_flush(c, UINT64_MAX);
}

static void nvme_do_shutdown(NvmeCtrl *c) {
        NvmeCtrlState prev = c->state;

        if (c->state == NVME_STATE_READY)
                c->state = NVME_STATE_SHUTTING_DOWN;
        nvme_drain(c);
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
}

static void nvme_park(NvmeCtrl *c) {
        nvme_drain(c);
        pthread_mutex_lock(&c->lock);
        c->parked = true;
        pthread_cond_broadcast(&c->cond);
        while (c->pause_count > 0 && !c->stop)
                pthread_cond_wait(&c->cond, &c->lock);
        c->parked = false;
        pthread_mutex_unlock(&c->lock);
        /* Guest mappings may have changed while we were parked. */
        nvme_queues_forget_mappings(c);
}

static void *nvme_io_main(void *arg) {
        NvmeCtrl *c = arg;
        uint64_t last_busy = 0;

        char tname[16];
        g_snprintf(tname, sizeof(tname), "nvme-io:%s", c->name);
        pthread_setname_np(pthread_self(), tname);

        for (;;) {
                /* The fast path takes no lock: quiesce and stop raise attention first. */
                if (atomic_load_explicit(&c->attention, memory_order_acquire)) {
                        pthread_mutex_lock(&c->lock);
                        bool pause = c->pause_count > 0 || c->stop;
                        bool stop = c->stop;
                        pthread_mutex_unlock(&c->lock);
                        if (stop) {
                                nvme_drain(c);
                                break;
                        }
                        if (pause) {
                                nvme_park(c);
                                continue;
                        }
                }
                if (atomic_load_explicit(&c->shutdown_req, memory_order_relaxed) &&
                    atomic_exchange(&c->shutdown_req, false))
                        nvme_do_shutdown(c);

                /* One clock read per pass: commands fetched and completed in it share it. */
                uint64_t now = c->pass_ns = nvme_now_ns();
                unsigned n = nvme_reap_backends(c);
                n += nvme_queues_process(c, c->state == NVME_STATE_READY);
                nvme_commit_backends(c);
                int timeout = nvme_irqs_flush(c, now);
                if (n > 0) {
                        last_busy = now;
                        continue;
                }
                if (c->cfg.poll_us && now - last_busy < (uint64_t) c->cfg.poll_us * 1000) {
                        nvme_cpu_relax();
                        continue;
                }
                /* Going to sleep: arm EventIdx, then look once more (no lost wakeup). */
                if (c->state == NVME_STATE_READY && nvme_queues_arm_and_recheck(c))
                        continue;
                nvme_wait_events(c, timeout);
        }
        return NULL;
}

void nvme_ctrl_quiesce(NvmeCtrl *c) {
        pthread_mutex_lock(&c->lock);
        c->pause_count++;
        atomic_store_explicit(&c->attention, true, memory_order_release);
        nvme_ctrl_kick(c);
        while (!c->parked)
                pthread_cond_wait(&c->cond, &c->lock);
        pthread_mutex_unlock(&c->lock);
}

void nvme_ctrl_resume(NvmeCtrl *c) {
        pthread_mutex_lock(&c->lock);
        if (c->pause_count > 0 && --c->pause_count == 0) {
                atomic_store_explicit(&c->attention, c->stop, memory_order_release);
                pthread_cond_broadcast(&c->cond);
        }
        pthread_mutex_unlock(&c->lock);
        nvme_ctrl_kick(c);
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

int nvme_ctrl_new(const NvmeCtrlConfig *cfg, NvmeCtrl **out) {
        *out = NULL;
        if (!cfg->name || cfg->max_ioqs < 1 || cfg->max_ioqs > NVME_MAX_IOQS ||
            cfg->msix_nvec < 1 || (cfg->serial && strlen(cfg->serial) > 20))
                return -EINVAL;

        NvmeCtrl *c = g_new0(NvmeCtrl, 1);
        c->cfg = *cfg;
        c->name = g_strdup(cfg->name);
        c->serial = g_strdup(cfg->serial ? cfg->serial : cfg->name);
        if (strlen(c->serial) > 20)
                c->serial[20] = '\0';
        c->cfg.name = c->name;
        c->cfg.serial = c->serial;
        c->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        c->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->cond, NULL);
        if (c->kick_fd < 0 || c->epoll_fd < 0) {
                int r = -errno;
                nvme_ctrl_free(c);
                return r;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = c->kick_fd };
        epoll_ctl(c->epoll_fd, EPOLL_CTL_ADD, c->kick_fd, &ev);

        /* CAP (§3.1.1): CQR, TO, DSTRD 0, CSS NVM, MPSMIN = MPSMAX = 0 (4 KiB). */
        c->cap = NVME_CAP_MQES(NVME_MQES) | NVME_CAP_CQR | NVME_CAP_TO(NVME_CAP_TIMEOUT) |
                 NVME_CAP_CSS_NVM;
        c->ndb = 2 * (cfg->max_ioqs + 1);
        uint64_t need = NVME_REG_DBS + (uint64_t) c->ndb * 4;
        c->bar0_size = 16384;
        while (c->bar0_size < need)
                c->bar0_size <<= 1;
        c->db_val = g_new0(_Atomic uint32_t, c->ndb);
        c->db_dirty = g_new0(_Atomic uint64_t, (c->ndb + 63) / 64);
        c->sq = g_new0(NvmeSQ, cfg->max_ioqs + 1);
        c->cq = g_new0(NvmeCQ, cfg->max_ioqs + 1);
        c->discard_buf = g_malloc(NVME_MAX_XFER);
        c->created_ns = nvme_now_ns();
        nvme_mig_init(c);
        nvme_features_reset(c);
        nvme_identify_ctrl_init(c);

        int r = pthread_create(&c->thread, NULL, nvme_io_main, c);
        if (r != 0) {
                c->thread = 0;
                nvme_ctrl_free(c);
                return -r;
        }
        *out = c;
        return 0;
}

void nvme_ctrl_free(NvmeCtrl *c) {
        if (!c)
                return;
        if (c->thread) {
                pthread_mutex_lock(&c->lock);
                c->stop = true;
                atomic_store_explicit(&c->attention, true, memory_order_release);
                pthread_cond_broadcast(&c->cond);
                pthread_mutex_unlock(&c->lock);
                nvme_ctrl_kick(c);
                pthread_join(c->thread, NULL);
        }
        if (c->sq)
                nvme_queues_reset(c);
        nvme_mig_free(c);
        for (unsigned i = 1; i <= NVME_MAX_NS; i++)
                nvme_ns_free(c->ns[i]);
        if (c->kick_fd >= 0)
                close(c->kick_fd);
        if (c->epoll_fd >= 0)
                close(c->epoll_fd);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->cond);
        g_free(c->db_val);
        g_free(c->db_dirty);
        g_free(c->sq);
        g_free(c->cq);
        g_free(c->discard_buf);
        g_free(c->name);
        g_free(c->serial);
        g_free(c);
}

void nvme_ctrl_get_stats(NvmeCtrl *c, NvmeStats *st) {
        st->commands = atomic_load(&c->st_commands);
        st->read_cmds = atomic_load(&c->st_read_cmds);
        st->write_cmds = atomic_load(&c->st_write_cmds);
        st->read_bytes = atomic_load(&c->st_read_bytes);
        st->write_bytes = atomic_load(&c->st_write_bytes);
        st->errors = atomic_load(&c->st_errors);
        st->latency_ns_total = atomic_load(&c->st_lat_total);
        st->latency_ns_max = atomic_load(&c->st_lat_max);
        st->io_cmds = atomic_load(&c->st_io_cmds);
        st->doorbell_writes = atomic_load(&c->st_doorbells);
        st->irqs = atomic_load(&c->st_irqs);
        st->wakeups = atomic_load(&c->st_wakeups);
}
