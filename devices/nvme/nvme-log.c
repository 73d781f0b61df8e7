/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Get Log Page (NVMe 1.4 §5.14): error information, SMART / health,
 * firmware slot, changed namespace list, commands supported and effects;
 * and Asynchronous Event Request (§5.2) with its event queue.
 */
#include <string.h>

#include <glib.h>

#include "nvme-internal.h"

/* Any I/O thread (c->ev_lock). */
void nvme_error_log_add(NvmeCtrl *c, uint16_t sqid, uint16_t cid, NvmeStatus st, uint32_t nsid, uint64_t lba) {
        pthread_mutex_lock(&c->ev_lock);
        NvmeErrorLogEntry *e = &c->errlog[c->err_head];

        memset(e, 0, sizeof(*e));
        e->error_count = ++c->err_count;
        e->sqid = sqid;
        e->cid = cid;
        e->status = (uint16_t) ((st & 0x47ffu) << 1);
        e->param_loc = 0xffff;
        e->lba = lba;
        e->nsid = nsid;
        c->err_head = (c->err_head + 1) % (NVME_ELPE + 1);
        pthread_mutex_unlock(&c->ev_lock);
}

/* Any I/O thread, or the control thread with them parked: io[0] dispatches it. */
void nvme_aen_post(NvmeCtrl *c, uint8_t type, uint8_t info, uint8_t log_page) {
        uint32_t ev = type | ((uint32_t) info << 8) | ((uint32_t) log_page << 16);
        bool posted = false;

        pthread_mutex_lock(&c->ev_lock);
        bool dup = false;
        for (unsigned i = 0; i < c->n_aen; i++)
                dup |= c->aen_queue[i] == ev;   /* already pending: one is enough */
        if (!dup && c->n_aen < NVME_MAX_PENDING_AEN) {
                c->aen_queue[c->n_aen] = ev;
                __atomic_store_n(&c->n_aen, c->n_aen + 1, __ATOMIC_RELEASE);
                posted = true;
        }
        pthread_mutex_unlock(&c->ev_lock);
        if (posted && c->n_io > 1)
                nvme_thread_kick(&c->io[0]);
}

/* io[0]. */
void nvme_aen_dispatch(NvmeCtrl *c) {
        unsigned i = 0;

        pthread_mutex_lock(&c->ev_lock);
        while (c->n_aer > 0 && i < c->n_aen) {
                uint32_t ev = c->aen_queue[i];
                uint8_t type = ev & 7;
                if (c->aen_masked & (1u << type)) {
                        i++;            /* wait until the host reads that log page */
                        continue;
                }
                c->aen_masked |= 1u << type;
                memmove(&c->aen_queue[i], &c->aen_queue[i + 1], (c->n_aen - i - 1) * sizeof(uint32_t));
                c->n_aen--;
                NvmeReq *aer = c->aer[--c->n_aer];
                aer->dw0 = ev;
                aer->status = NVME_SUCCESS;
                /* A success posts no error log entry: completing under ev_lock is safe. */
                nvme_req_complete(aer);
        }
        pthread_mutex_unlock(&c->ev_lock);
}

void nvme_ns_changed(NvmeCtrl *c, uint32_t nsid) {
        if (!c->changed_ns_overflow) {
                for (unsigned i = 0; i < c->n_changed_ns; i++)
                        if (c->changed_ns[i] == nsid)
                                goto post;
                if (c->n_changed_ns < NVME_MAX_CHANGED_NS)
                        c->changed_ns[c->n_changed_ns++] = nsid;
                else
                        c->changed_ns_overflow = true;
        }
post:
        /* §5.21.1.11: notices only when the host enabled them. */
        if (c->feat.aec & (1u << 8))
                nvme_aen_post(c, NVME_AER_TYPE_NOTICE, NVME_AER_INFO_NOTICE_NS_ATTR, NVME_LOG_CHANGED_NS);
}

NvmeStatus nvme_adm_async_event(NvmeCtrl *c, NvmeReq *req) {
        if (c->n_aer > NVME_AERL)
                return NVME_SC_AER_LIMIT;
        c->aer[c->n_aer++] = req;
        return NVME_ASYNC;
}

#define put_u128(dst, v) do { uint64_t v128_[2] = { (v), 0 }; memcpy((dst), v128_, 16); } while (0)

static void nvme_log_smart(NvmeCtrl *c, uint8_t *buf) {
        NvmeSmartLog s;
        uint64_t hours = (nvme_now_ns() - c->created_ns) / 3600000000000ull;

        memset(&s, 0, sizeof(s));
        s.temperature = NVME_TEMPERATURE;
        s.avail_spare = 100;
        s.spare_thresh = 10;
        if (NVME_TEMPERATURE >= c->feat.temp_over || NVME_TEMPERATURE < c->feat.temp_under)
                s.critical_warning |= 1u << 1;
        /* Data units: thousands of 512-byte units, rounded up (§5.14.1.2). */
        NvmeStats st;
        nvme_ctrl_get_stats(c, &st);
        put_u128(s.data_units_read, (st.read_bytes / 512 + 999) / 1000);
        put_u128(s.data_units_written, (st.write_bytes / 512 + 999) / 1000);
        put_u128(s.host_reads, st.read_cmds);
        put_u128(s.host_writes, st.write_cmds);
        put_u128(s.power_cycles, 1);
        put_u128(s.power_on_hours, hours);
        put_u128(s.num_err_log_entries, c->err_count);
        s.temp_sensor[0] = NVME_TEMPERATURE;
        memcpy(buf, &s, sizeof(s));
}

static void nvme_log_effects(uint8_t *buf) {
        for (unsigned op = 0; op < 256; op++) {
                memcpy(buf + 4 * op, &nvme_admin_cmds[op].effects, 4);
                memcpy(buf + 1024 + 4 * op, &nvme_io_cmds[op].effects, 4);
        }
}

NvmeStatus nvme_adm_get_log_page(NvmeCtrl *c, NvmeReq *req) {
        uint8_t lid = req->cmd.cdw10 & 0xff;
        bool rae = req->cmd.cdw10 & (1u << 15);
        uint32_t numd = (req->cmd.cdw10 >> 16) | ((req->cmd.cdw11 & 0xffff) << 16);
        uint64_t off = (uint64_t) req->cmd.cdw13 << 32 | req->cmd.cdw12;
        uint64_t len = ((uint64_t) numd + 1) * 4;
        uint8_t buf[4096];
        size_t size;

        if (off & 3)
                return NVME_SC_INVALID_FIELD;
        memset(buf, 0, sizeof(buf));
        switch (lid) {
        case NVME_LOG_ERROR: {
                size = (NVME_ELPE + 1) * sizeof(NvmeErrorLogEntry);
                pthread_mutex_lock(&c->ev_lock);
                for (unsigned i = 0; i <= NVME_ELPE; i++) {
                        /* Newest first. */
                        unsigned idx = (c->err_head + NVME_ELPE - i) % (NVME_ELPE + 1);
                        memcpy(buf + i * sizeof(NvmeErrorLogEntry), &c->errlog[idx], sizeof(NvmeErrorLogEntry));
                }
                pthread_mutex_unlock(&c->ev_lock);
                break;
        }
        case NVME_LOG_SMART:
                size = sizeof(NvmeSmartLog);
                nvme_log_smart(c, buf);
                break;
        case NVME_LOG_FW_SLOT:
                size = 512;
                buf[0] = 1;                             /* AFI: slot 1 active */
                memcpy(buf + 8, c->id_ctrl + 64, 8);    /* FRS1 = FR */
                break;
        case NVME_LOG_CHANGED_NS:
                size = 4096;
                if (c->changed_ns_overflow) {
                        memset(buf, 0, 4);
                        uint32_t all = 0xffffffffu;
                        memcpy(buf, &all, 4);
                } else {
                        memcpy(buf, c->changed_ns, c->n_changed_ns * sizeof(uint32_t));
                }
                break;
        case NVME_LOG_CMD_EFFECTS:
                size = 4096;
                nvme_log_effects(buf);
                break;
        default:
                return NVME_SC_INVALID_LOG_PAGE;
        }
        if (off > size)
                return NVME_SC_INVALID_FIELD;
        if (len > NVME_MAX_XFER)
                return NVME_SC_INVALID_FIELD;

        /* Bytes past the end of the log read as zero. */
        g_autofree uint8_t *out = g_malloc0(len);
        memcpy(out, buf + off, MIN(len, size - off));
        NvmeStatus st = nvme_data_to_host(c, req, out, len);
        if (st)
                return st;

        if (!rae) {
                /* Reading the log re-arms events of its type (§5.2). */
                if (lid == NVME_LOG_CHANGED_NS) {
                        c->n_changed_ns = 0;
                        c->changed_ns_overflow = false;
                        c->aen_masked &= ~(1u << NVME_AER_TYPE_NOTICE);
                } else if (lid == NVME_LOG_ERROR) {
                        c->aen_masked &= ~(1u << NVME_AER_TYPE_ERROR);
                } else if (lid == NVME_LOG_SMART) {
                        c->aen_masked &= ~(1u << NVME_AER_TYPE_SMART);
                }
        }
        return NVME_SUCCESS;
}
