/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The controller's private state, shared by its files. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>

#include "nvme.h"
#include "nvme-dma.h"
#include "nvme-spec.h"
#include "qos/qos.h"
#include "state/devstate-mig.h"

/* Properties and defaults. */
#define NVME_MQES               1023u   /* CAP.MQES: 1024 entries per I/O queue */
#define NVME_CAP_TIMEOUT        20u     /* CAP.TO: 10 s in 500 ms units */
#define NVME_SQ_MAX_INFLIGHT    256u    /* commands one SQ may have in progress */
#define NVME_AERL               3u      /* 4 outstanding AERs (0's based) */
#define NVME_ACL                3u      /* 4 outstanding Aborts (0's based) */
#define NVME_ELPE               63u     /* 64 error log entries (0's based) */
#define NVME_SQ_BURST           64u     /* commands fetched per queue per pass */
#define NVME_POLL_START_NS      1000u   /* first adaptive polling window after sleeping */
#define NVME_WCTEMP             343u    /* 70 °C in kelvin */
#define NVME_CCTEMP             373u    /* 100 °C */
#define NVME_TEMPERATURE        313u    /* 40 °C: what we report */
#define NVME_MAX_CHANGED_NS     1024u
#define NVME_MODEL              "vfu NVMe Controller"
#define NVME_PCI_VENDOR         0x4e56u /* "NV": vfu's own IDs, free of Linux quirks */
#define NVME_PCI_DEVICE         0x0001u

typedef struct NvmeCtrl NvmeCtrl;
typedef struct NvmeSQ NvmeSQ;
typedef struct NvmeCQ NvmeCQ;
typedef struct NvmeReq NvmeReq;
typedef struct NvmeNs NvmeNs;
typedef struct NvmeIoThread NvmeIoThread;

/* A handler's answer: a status to complete with now, or "completes later". */
#define NVME_ASYNC ((NvmeStatus) 0xffffu)

struct NvmeReq {
        BlkRequest blk;
        NvmeCtrl *c;
        NvmeSQ *sq;
        NvmeReq *next;
        NvmeSqe cmd;            /* private copy of the SQE */
        uint32_t dw0;
        NvmeStatus status;
        NvmeNs *ns;
        uint64_t t_start;
        uint64_t bytes;
        unsigned aux_idx, aux_count;    /* multi-step commands (DSM, flush all) */
        void *aux;
        NvmeIov iov;
};

typedef struct NvmeReqList {
        NvmeReq *head, *tail;
} NvmeReqList;

void nvme_req_list_push(NvmeReqList *l, NvmeReq *r);
NvmeReq *nvme_req_list_pop(NvmeReqList *l);

/* SQs and CQs each start a cache line: neighbours may run on other threads. */
struct NvmeSQ {
        _Alignas(64) bool created;
        bool deleting;
        uint16_t qid, cqid;
        uint32_t size;
        uint64_t gpa;
        NvmeSqe *ring;                  /* resolved lazily; NULL after a quiesce */
        uint32_t head, tail;
        NvmeReq *reqs;
        NvmeReq *free;
        NvmeIovExt *iov_ext_free;       /* room for long transfers, kept for the next (at most nreqs) */
        unsigned nreqs, inflight;
        NvmeReq *delete_req;            /* admin Delete SQ waiting for inflight == 0 */
        NvmeIoThread *t;                /* the thread that runs it: its CQ's */
        volatile uint32_t *shadow_db, *shadow_ei;
        bool shadow;
        uint32_t shadow_bad;            /* invalid shadow tail last reported, plus one; 0 none */
        bool qos_waiting;               /* the entry at head waits for a limit (counted once) */
};

struct NvmeCQ {
        _Alignas(64) bool created;
        uint16_t qid;
        uint16_t vector;
        bool ien;
        uint32_t size;
        uint64_t gpa;
        NvmeCqe *ring;
        uint32_t head, tail;
        uint8_t phase;
        unsigned n_sqs;
        NvmeIoThread *t;                /* the thread that runs it: nvme_cq_thread() */
        NvmeReqList backlog;            /* completions waiting for room */
        unsigned irq_pending;           /* entries posted since the last interrupt */
        uint64_t irq_first;             /* when the oldest of them was posted */
        volatile uint32_t *shadow_db, *shadow_ei;
        bool shadow;
        uint32_t shadow_bad;            /* invalid shadow head last reported, plus one; 0 none */
};

struct NvmeNs {
        uint32_t nsid;
        BlkBackend *backend;            /* I/O thread 0's, and the control thread's */
        BlkBackend *be[NVME_MAX_IOTHREADS];     /* per I/O thread: its own submission context */
        uint32_t block_size;
        uint8_t lbads;
        uint64_t nsze;                  /* blocks */
        bool read_only;
        uint8_t nguid[16], eui64[8], uuid[16];
};

typedef struct NvmeFeatures {
        uint32_t arbitration;
        uint32_t power_state;
        uint16_t temp_over, temp_under;
        uint32_t err_recovery;
        bool wce;
        bool nq_set;
        uint16_t nsqa, ncqa;            /* 0's based */
        uint8_t coalesce_thr, coalesce_time;
        uint64_t irq_cd[(NVME_MAX_IOQS + 1 + 63) / 64 + 1];      /* per vector: coalescing disabled */
        uint32_t aec;
        uint64_t ts_base_ms;            /* host timestamp at ts_set_ns */
        uint64_t ts_set_ns;
        bool ts_set;
} NvmeFeatures;

typedef enum NvmeCtrlState {
        NVME_STATE_DISABLED,
        NVME_STATE_READY,
        NVME_STATE_SHUTTING_DOWN,
        NVME_STATE_SHUTDOWN,
        NVME_STATE_FATAL,
        _NVME_STATE_MAX,
} NvmeCtrlState;

#define NVME_MAX_PENDING_AEN 16u

struct NvmeCtrl {
        NvmeCtrlConfig cfg;
        char *name, *serial;
        const VuMem *mem;
        NvmeIrqFn irq;
        void *irq_opaque;

        /* Registers (control thread), CSTS shared. */
        uint64_t cap;
        uint32_t cc, aqa, intms;
        uint64_t asq, acq;
        _Atomic uint32_t csts;
        uint64_t bar0_size;

        /* Posted doorbells: control thread stores, the queue's I/O thread consumes. */
        unsigned ndb;                           /* 2 * (max_ioqs + 1) */
        _Atomic uint32_t *db_val;
        _Atomic uint8_t *sq_thread;             /* per SQ: index of the thread that runs it */
        _Atomic uint32_t bad_db;                /* invalid doorbell writes seen (count) */
        _Atomic uint32_t bad_db_value;          /* writes of out-of-range values (count) */

        /* I/O threads: io[0] also runs the admin queue, shutdown and events. */
        NvmeIoThread *io;
        unsigned n_io;
        pthread_mutex_t lock;                   /* pause counts, parked, stop */
        pthread_cond_t cond;
        unsigned pause_count;                   /* control thread's quiesces */
        bool stop;
        _Atomic bool shutdown_req;
        /* Admin completions finished on another thread (Delete SQ), for io[0]. */
        pthread_mutex_t mail_lock;
        NvmeReqList mail;
        _Atomic bool mail_pending;
        /* Error log and event queue: written from any I/O thread. */
        pthread_mutex_t ev_lock;

        /* Queue and controller state: I/O thread, or control thread while parked. */
        NvmeCtrlState state;
        NvmeSQ *sq;                             /* [max_ioqs + 1] */
        NvmeCQ *cq;
        NvmeNs *ns[NVME_MAX_NS + 1];
        NvmeFeatures feat;
        uint64_t dbbuf_db, dbbuf_ei;            /* Doorbell Buffer Config addresses, 0 = off */
        bool dma_off;                           /* PCI Bus Master Enable clear: no DMA (changed parked) */
        struct VuServer *pci_server;            /* nvme-pci.c: the server whose config space we follow */

        /* Asynchronous events (§5.2). */
        NvmeReq *aer[NVME_AERL + 1];
        unsigned n_aer;
        uint32_t aen_queue[NVME_MAX_PENDING_AEN];
        unsigned n_aen;
        uint8_t aen_masked;                     /* bit per event type, cleared by reading its log */
        uint32_t changed_ns[NVME_MAX_CHANGED_NS];
        unsigned n_changed_ns;
        bool changed_ns_overflow;

        /* Error information log (§5.14.1.1), newest at err_head - 1. */
        NvmeErrorLogEntry errlog[NVME_ELPE + 1];
        unsigned err_head;
        uint64_t err_count;

        uint8_t id_ctrl[NVME_IDENTIFY_SIZE];
        uint64_t created_ns;

        /* Migration (nvme-mig.c): control thread only; its hold is one quiesce. */
        DevStateMig mig;

        /* I/O limits (nvme-qos.c): [nsid], [0] the group of all namespaces. */
        pthread_mutex_t qos_lock;
        Qos qos[NVME_MAX_NS + 1];
        _Atomic bool qos_on;                    /* any limit set: fetching checks them */
        _Atomic uint64_t qos_hits[NVME_MAX_NS + 1];     /* commands that waited for [nsid]'s limit */

        /* Statistics: the control thread's; the I/O threads keep theirs. */
        _Atomic uint64_t st_doorbells;
        uint64_t units_read, units_written;     /* SMART, in 512-byte units */
};

/* Statistics one I/O thread writes: summed when read. */
typedef struct NvmeIoStats {
        _Atomic uint64_t commands, read_cmds, write_cmds, read_bytes, write_bytes, errors,
                lat_max, irqs, wakeups;
        LatStats lat;                           /* I/O commands: their count and sum too */
} NvmeIoStats;

/* The histogram an I/O command's latency goes to. */
static inline LatOp nvme_lat_op(uint8_t opcode) {
        return opcode == NVME_CMD_READ ? LAT_OP_READ : opcode == NVME_CMD_WRITE ? LAT_OP_WRITE
               : opcode == NVME_CMD_FLUSH ? LAT_OP_FLUSH : LAT_OP_OTHER;
}

/*
 * One I/O thread: it owns the CQs nvme_cq_thread() gives it and the SQs
 * that post to them, its submission context in every namespace's backend,
 * its doorbell bits and statistics.  Nothing on its fast path is written
 * by another thread; it starts on its own cache line.
 */
struct NvmeIoThread {
        _Alignas(64) NvmeCtrl *c;
        unsigned idx;
        pthread_t thread;
        bool started;
        int kick_fd;
        int epoll_fd;
        _Atomic bool attention;                 /* paused or stopping: look under c->lock */
        unsigned pause_count;                   /* io[0]'s pauses for admin commands (c->lock) */
        bool parked;                            /* c->lock */
        uint64_t pass_ns;                       /* the thread's clock, read once per pass */
        uint64_t poll_ns;                       /* adaptive polling window, 0..cfg.poll_us µs */
        _Atomic uint64_t kick_ns;               /* when a trapped doorbell for it was written, 0: none */
        bool backend_signalled;                 /* a backend's event fd woke the thread */
        unsigned backend_inflight;
        unsigned n_sqs;
        uint16_t sqs[NVME_MAX_IOQS + 1];        /* the SQs it runs */
        _Atomic uint64_t *db_dirty;             /* bitmap of doorbells posted to it */
        uint8_t *discard_buf;                   /* sink for SGL bit buckets */
        uint64_t qos_wake_ns;                   /* this pass: when the first command held by a limit may start, 0 none */
        NvmeIoStats st;
};

static inline NvmeIoThread *nvme_cq_thread(NvmeCtrl *c, unsigned qid) {
        return &c->io[qid ? (qid - 1) % c->n_io : 0];
}

uint64_t nvme_now_ns(void);

/* nvme-ctrl.c */
void nvme_thread_kick(NvmeIoThread *t);
/* io[0], running an admin command: park (drain) every other I/O thread around a change to their state. */
void nvme_threads_pause_others(NvmeCtrl *c);
void nvme_threads_resume_others(NvmeCtrl *c);
void nvme_mail_admin(NvmeCtrl *c, NvmeReq *req);
void nvme_ctrl_fatal(NvmeCtrl *c, const char *why);
void nvme_ctrl_enable(NvmeCtrl *c);           /* parked: CC.EN 0→1 */
void nvme_ctrl_disable(NvmeCtrl *c);          /* parked: CC.EN 1→0 and resets */

/* nvme-queue.c */
NvmeStatus nvme_sq_create(NvmeCtrl *c, uint16_t qid, uint16_t cqid, uint32_t size, uint64_t gpa);
NvmeStatus nvme_cq_create(NvmeCtrl *c, uint16_t qid, uint32_t size, uint64_t gpa, bool ien, uint16_t vector);
void nvme_sq_destroy(NvmeCtrl *c, NvmeSQ *sq);
void nvme_cq_destroy(NvmeCtrl *c, NvmeCQ *cq);
void nvme_queues_reset(NvmeCtrl *c);
void nvme_queues_forget_mappings(NvmeCtrl *c, NvmeIoThread *t);
void nvme_queue_shadow_enable(NvmeCtrl *c, uint16_t qid);
unsigned nvme_queues_process(NvmeIoThread *t, bool fetch);
bool nvme_queues_arm_and_recheck(NvmeIoThread *t);
int nvme_irqs_flush(NvmeIoThread *t, uint64_t now);   /* ms until a coalesced irq is due, -1 none */
void nvme_req_complete(NvmeReq *req);
void nvme_sq_maybe_finish_delete(NvmeCtrl *c, NvmeSQ *sq);

/* nvme-admin.c */
NvmeStatus nvme_admin_exec(NvmeCtrl *c, NvmeReq *req);
typedef struct NvmeCmdDesc {
        const char *name;
        NvmeStatus (*exec)(NvmeCtrl *c, NvmeReq *req);
        uint32_t effects;       /* Commands Supported and Effects entry (§5.14.1.5) */
        bool all_threads;       /* admin: changes state other I/O threads run on: they park around it */
} NvmeCmdDesc;
extern const NvmeCmdDesc nvme_admin_cmds[256];
extern const NvmeCmdDesc nvme_io_cmds[256];
NvmeStatus nvme_data_to_host(NvmeCtrl *c, NvmeReq *req, const void *buf, size_t len);
NvmeStatus nvme_data_from_host(NvmeCtrl *c, NvmeReq *req, void *buf, size_t len);

/* nvme-identify.c */
void nvme_identify_ctrl_init(NvmeCtrl *c);
NvmeStatus nvme_adm_identify(NvmeCtrl *c, NvmeReq *req);

/* nvme-log.c */
NvmeStatus nvme_adm_get_log_page(NvmeCtrl *c, NvmeReq *req);
void nvme_error_log_add(NvmeCtrl *c, uint16_t sqid, uint16_t cid, NvmeStatus st, uint32_t nsid, uint64_t lba);
void nvme_aen_post(NvmeCtrl *c, uint8_t type, uint8_t info, uint8_t log_page);
void nvme_aen_dispatch(NvmeCtrl *c);
void nvme_ns_changed(NvmeCtrl *c, uint32_t nsid);
NvmeStatus nvme_adm_async_event(NvmeCtrl *c, NvmeReq *req);

/* nvme-features.c */
void nvme_features_reset(NvmeCtrl *c);
NvmeStatus nvme_adm_set_features(NvmeCtrl *c, NvmeReq *req);
NvmeStatus nvme_adm_get_features(NvmeCtrl *c, NvmeReq *req);
bool nvme_vector_coalescing(const NvmeCtrl *c, uint16_t vector);

/* nvme-io.c */
NvmeStatus nvme_io_exec(NvmeCtrl *c, NvmeReq *req);

/* nvme-mig.c */
void nvme_mig_init(NvmeCtrl *c);
void nvme_mig_free(NvmeCtrl *c);

/* nvme-qos.c */
void nvme_qos_init(NvmeCtrl *c);
void nvme_qos_free(NvmeCtrl *c);
/* I/O thread, fetching cmd at the head of sq: may it start now?  Charged if so. */
bool nvme_qos_admit(NvmeSQ *sq, const NvmeSqe *cmd);
/* The pass's sleep timeout (ms, -1 none) shortened to the first held command's wait. */
int nvme_qos_timeout(NvmeIoThread *t, int timeout_ms, uint64_t now);

/* nvme-ns.c */
NvmeNs *nvme_ns_get(NvmeCtrl *c, uint32_t nsid);
void nvme_ns_free(NvmeNs *ns);
