/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* virtio-net internals shared by vnet.c, net-thread.c, net-rx.c, net-tx.c, net-ctrl.c, net-hdr.c. */
#pragma once

#include <pthread.h>

#include "net/vnet.h"
#include "net/vnet-proto.h"
#include "qos/qos.h"

#define VNET_MAC_TABLE_MAX 64

/* Receive filter (5.1.6.5.1, 5.1.6.5.2). */
typedef struct VNetFilter {
        bool promisc;
        bool allmulti;
        bool uni_overflow;
        bool multi_overflow;
        unsigned n_uni, n_multi;
        uint8_t uni[VNET_MAC_TABLE_MAX][6];
        uint8_t multi[VNET_MAC_TABLE_MAX][6];
} VNetFilter;

typedef enum VNetPairState {
        VNET_PAIR_IDLE,         /* not touching guest memory */
        VNET_PAIR_RUN,
        VNET_PAIR_EXIT,
        _VNET_PAIR_STATE_MAX,
} VNetPairState;

const char *vnet_pair_state_to_string(VNetPairState s);

typedef struct VNetCounters {
        uint64_t rx_packets, rx_bytes, rx_drops, rx_errors;
        uint64_t tx_packets, tx_bytes, tx_drops, tx_errors;
} VNetCounters;

/* A transmit chain taken in the current batch. */
typedef struct VNetTxSlot {
        VNetHdr h;                      /* the header's private copy, sent */
        uint16_t id, ndesc;
        int kind;                       /* net-tx.c: sent, or an error or drop to count */
        unsigned frame;                 /* sent: its index in tx_frames */
        size_t frame_len;
} VNetTxSlot;

/* Transmit iovecs of a pair: room for a batch of short chains and always for one of VQ_MAX_IOV. */
#define VNET_TX_IOV_POOL (2 * (VQ_MAX_IOV + 1))

typedef struct VNetPair {
        VNet *n;
        unsigned index;
        pthread_t thread;
        bool thread_started;
        int epfd;
        int kick_fd;                    /* trapped notifications and wake-ups */
        bool want_input;                /* receive waits for backend input */
        unsigned be_mask;               /* epoll events registered for the backend fd */

        /* Handshake with the control thread, under n->lock. */
        VNetPairState want;
        unsigned req_seq;               /* atomic */
        unsigned ack_seq;
        VNetPairState state;            /* owned by the thread */

        VirtQueue *rx, *tx;             /* NULL when the driver did not enable them */
        VqChain *chain;
        struct iovec *tx_iov;           /* header copies + frames, VNET_TX_IOV_POOL */
        VNetTxSlot *tx_slots;           /* NET_TX_BATCH_MAX */
        NetTxFrame *tx_frames;          /* NET_TX_BATCH_MAX */
        uint8_t *frame;                 /* received frame, header first */
        size_t frame_len;
        bool have_frame;
        bool tx_blocked;                /* backend output waiting for POLLOUT */
        VNetCounters c;                 /* atomics */
        uint64_t qos_wake_ns;           /* this round: when a limit lets the next frame go, 0 none */
        bool qos_waiting[_QOS_DIR_MAX]; /* the next frame waits for a limit (counted once) */
        uint64_t qos_hits[_QOS_DIR_MAX];        /* frames that waited (atomic) */
} VNetPair;

struct VNet {
        VNetOptions opt;
        NetBackend *be;
        VirtioPci *vp;
        uint64_t offered;
        uint64_t features;              /* negotiated, set at start */
        bool mrg_rxbuf;
        bool started;

        pthread_mutex_t lock;           /* config space, pair handshakes */
        pthread_cond_t cond;
        uint8_t mac[6];
        uint16_t status;                /* atomic */
        bool link_up;                   /* atomic */
        unsigned active_pairs;          /* atomic */
        unsigned guest_offloads;        /* VNET_OFFLOAD_* in effect */

        pthread_rwlock_t filter_lock;
        VNetFilter filter;

        VirtQueue *ctrl;
        VNetPair *pairs;

        /* Limits (net-qos.c): [VNET_QOS_TX] what the guest sends, [VNET_QOS_RX] what it receives. */
        pthread_mutex_t qos_lock;
        Qos qos[_QOS_DIR_MAX];
        bool qos_on[_QOS_DIR_MAX];      /* atomic */
};

#define VNET_QOS_TX QOS_WRITE
#define VNET_QOS_RX QOS_READ

/* vnet.c: bind the started queues and the backend for features, without starting the data path. */
int vnet_bind(VNet *n, uint64_t driver_features, uint64_t features, unsigned active_pairs);
/* vnet-state.c */
extern const DevStateSectionSpec vnet_state_sections[];
extern const size_t vnet_n_state_sections;
int vnet_state_save(void *opaque, DevStateWriter *w);
int vnet_state_check(void *opaque, DevStateReader *r, uint64_t features, bool started);
int vnet_state_apply(void *opaque, DevStateReader *r, uint64_t features, bool started);

/* net-thread.c */
int vnet_pairs_create(VNet *n);
void vnet_pairs_destroy(VNet *n);
void vnet_pairs_set(VNet *n, VNetPairState want);
void vnet_pair_wake(VNetPair *p);

/* net-rx.c: 1 more work may remain, 0 done/waiting, -errno queue broken */
int vnet_rx_process(VNetPair *p);
bool vnet_filter_accepts(VNet *n, const uint8_t *frame, size_t len);
void vnet_filter_reset(VNet *n);
/* net-tx.c */
int vnet_tx_process(VNetPair *p);
/* net-ctrl.c */
int vnet_ctrl_process(VNet *n, VqChain *c);
uint8_t vnet_ctrl_handle(VNet *n, uint8_t cls, uint8_t cmd, const uint8_t *data, size_t len);
/* net-qos.c: must the next frame in dir wait (the pair's wake-up time set)?  Then charge what went. */
void vnet_qos_init(VNet *n);
void vnet_qos_free(VNet *n);
bool vnet_qos_wait(VNetPair *p, QosDir dir);
/* Transmit: only a frame in the ring waits (and counts). */
bool vnet_qos_tx_wait(VNetPair *p);
void vnet_qos_charge(VNetPair *p, QosDir dir, size_t bytes);
/* epoll timeout (ms, -1 none) until the pair's limits let a frame go. */
int vnet_qos_timeout(VNetPair *p);
/* net-hdr.c */
int vnet_tx_hdr_check(uint64_t features, VNetHdr *h, size_t frame_len);
int vnet_rx_hdr_fix(uint64_t features, VNetHdr *h);

void vnet_guest_error(VNet *n, const char *what, int err);

#define VNET_STAT_ADD(p, field, v) __atomic_fetch_add(&(p)->c.field, (v), __ATOMIC_RELAXED)
