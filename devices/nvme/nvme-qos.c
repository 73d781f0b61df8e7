/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * I/O limits (devices/qos) per namespace and for the controller's group
 * of namespaces, checked where an I/O thread fetches a command: a Read,
 * Write or Write Zeroes over a limit is left in its SQ, unfetched, until
 * the buckets let it start.  Nothing fails, and nothing behind it in that
 * SQ (a Flush included) overtakes it; other SQs go on.  The thread sleeps
 * no longer than the wait.
 */
#include <errno.h>

#include <glib.h>

#include "nvme-internal.h"

void nvme_qos_init(NvmeCtrl *c) {
        QosConfig none = { 0 };
        uint64_t now = nvme_now_ns();

        pthread_mutex_init(&c->qos_lock, NULL);
        for (unsigned i = 0; i <= NVME_MAX_NS; i++)
                qos_init(&c->qos[i], &none, now);
}

void nvme_qos_free(NvmeCtrl *c) {
        pthread_mutex_destroy(&c->qos_lock);
}

int nvme_ctrl_set_limits(NvmeCtrl *c, uint32_t nsid, const QosConfig *cfg) {
        bool on = false;

        if (nsid > NVME_MAX_NS)
                return -ENOENT;
        if (qos_config_check(cfg, NULL))
                return -EINVAL;
        pthread_mutex_lock(&c->qos_lock);
        qos_set_config(&c->qos[nsid], cfg, nvme_now_ns());
        for (unsigned i = 0; i <= NVME_MAX_NS && !on; i++)
                on = qos_config_active(&c->qos[i].cfg);
        atomic_store_explicit(&c->qos_on, on, memory_order_release);
        pthread_mutex_unlock(&c->qos_lock);
        /* A waiting thread takes the new limits now, not when its old wait ends. */
        for (unsigned i = 0; i < c->n_io; i++)
                nvme_thread_kick(&c->io[i]);
        return 0;
}

uint64_t nvme_ctrl_limit_hits(NvmeCtrl *c, uint32_t nsid) {
        return nsid <= NVME_MAX_NS ? atomic_load_explicit(&c->qos_hits[nsid], memory_order_relaxed) : 0;
}

/* The direction and bytes a command charges, false for a command no limit applies to. */
static bool nvme_qos_cost(NvmeCtrl *c, const NvmeSqe *cmd, QosDir *dir, uint64_t *bytes) {
        NvmeNs *ns;

        switch (cmd->opcode) {
        case NVME_CMD_READ:
                *dir = QOS_READ;
                break;
        case NVME_CMD_WRITE:
        case NVME_CMD_WRITE_ZEROES:
                *dir = QOS_WRITE;
                break;
        default:
                return false;
        }
        ns = cmd->nsid >= 1 && cmd->nsid <= NVME_MAX_NS ? c->ns[cmd->nsid] : NULL;
        if (!ns)
                return false;   /* fails with Invalid Namespace: nothing to charge */
        *bytes = (uint64_t) ((cmd->cdw12 & 0xffff) + 1) << ns->lbads;
        return true;
}

bool nvme_qos_admit(NvmeSQ *sq, const NvmeSqe *cmd) {
        NvmeIoThread *t = sq->t;
        NvmeCtrl *c = t->c;
        uint64_t now = t->pass_ns, wait_ns, wait_group;
        QosDir dir;
        uint64_t bytes;

        if (!nvme_qos_cost(c, cmd, &dir, &bytes))
                return true;
        pthread_mutex_lock(&c->qos_lock);
        wait_ns = qos_wait_ns(&c->qos[cmd->nsid], dir, now);
        wait_group = qos_wait_ns(&c->qos[0], dir, now);
        if (!wait_ns && !wait_group) {
                qos_account(&c->qos[cmd->nsid], dir, bytes, now);
                qos_account(&c->qos[0], dir, bytes, now);
        }
        pthread_mutex_unlock(&c->qos_lock);
        if (!wait_ns && !wait_group) {
                sq->qos_waiting = false;
                return true;
        }
        if (!sq->qos_waiting) {
                /* Counted once per command that had to wait, for the limit that held it. */
                sq->qos_waiting = true;
                atomic_fetch_add_explicit(&c->qos_hits[wait_ns >= wait_group ? cmd->nsid : 0], 1,
                                          memory_order_relaxed);
        }
        wait_ns = MAX(wait_ns, wait_group);
        if (!t->qos_wake_ns || now + wait_ns < t->qos_wake_ns)
                t->qos_wake_ns = now + wait_ns;
        return false;
}

int nvme_qos_timeout(NvmeIoThread *t, int timeout_ms, uint64_t now) {
        uint64_t wake = t->qos_wake_ns;
        int ms;

        t->qos_wake_ns = 0;
        if (!wake)
                return timeout_ms;
        ms = wake > now ? (int) MIN((wake - now + 999999) / 1000000, (uint64_t) INT_MAX) : 0;
        return timeout_ms < 0 || ms < timeout_ms ? ms : timeout_ms;
}
