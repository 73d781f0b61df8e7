/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A vfio-user client: enough of a VMM for tests, benchmarks and tools.  It
 * connects, negotiates, maps a memfd as guest RAM, accesses regions (trapped
 * or through mmapped sparse areas), and installs eventfds for MSI-X.
 *
 * Synchronous: each call sends one request and waits for its reply.
 * Return convention: 0 (or a count) on success, negative errno on failure
 * (for error replies, minus the errno the server sent).  Once the server
 * has closed the connection (EOF, ECONNRESET, EPIPE) every later call
 * fails at once with that error.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

typedef struct VuClient VuClient;

int vu_client_connect(const char *path, VuClient **out);
/* Use an already connected socket (taken over), e.g. one end of a socketpair. */
int vu_client_new_from_fd(int fd, VuClient **out);
void vu_client_free(VuClient *c);
int vu_client_fd(const VuClient *c);
/* 0 while connected, or the -errno with which the server's end went away. */
int vu_client_lost(const VuClient *c);
/* How long to wait for a reply (default 10 s); a late reply gives -ETIMEDOUT. */
void vu_client_set_timeout(VuClient *c, int timeout_ms);

/* VERSION.  caps_json may be NULL for a QEMU-like default.  The reply JSON is kept. */
int vu_client_negotiate(VuClient *c, const char *caps_json);
const char *vu_client_server_caps(const VuClient *c);
uint32_t vu_client_max_data_xfer(const VuClient *c);
uint32_t vu_client_server_max_fds(const VuClient *c);

/* A reply: its payload (g_free) and the fd that came with it (-1 if none; the caller closes it). */
typedef struct VuClientReply {
        uint8_t *data;
        size_t len;
        int fd;
} VuClientReply;
void vu_client_reply_clear(VuClientReply *rep);
/*
 * Any request: header flags (e.g. VU_F_NO_REPLY), payload in two parts,
 * fds.  Waits for the matching reply unless NO_REPLY; rep may be NULL.
 * 0, -errno from the server's error reply, -EBADMSG for a malformed reply,
 * -ETIMEDOUT, or a socket errno.
 */
int vu_client_request(VuClient *c, uint16_t cmd, uint32_t flags, const void *p1, size_t l1,
                      const void *p2, size_t l2, const int *fds, unsigned n_fds, VuClientReply *rep);

int vu_client_dma_map(VuClient *c, uint64_t gpa, uint64_t size, int fd, uint64_t fd_offset, uint32_t prot);
int vu_client_dma_unmap(VuClient *c, uint64_t gpa, uint64_t size, uint32_t flags);

int vu_client_device_info(VuClient *c, struct vu_device_info *info);
/* Region info; caps (may be NULL) receives the capability bytes (g_free), *fd the region fd or -1. */
int vu_client_region_info(VuClient *c, unsigned index, struct vu_region_info *info,
                          void **caps, size_t *caps_len, int *fd);
int vu_client_irq_info(VuClient *c, unsigned index, struct vu_irq_info *info);
/* SET_IRQS with fds (n_fds may be 0 for de-assign/disable), or with a bool payload. */
int vu_client_set_irqs(VuClient *c, unsigned index, uint32_t flags, uint32_t start,
                       uint32_t count, const int *fds, unsigned n_fds,
                       const uint8_t *bools);

int vu_client_region_read(VuClient *c, unsigned region, uint64_t off, void *buf, uint32_t len);
/* posted: NO_REPLY, like QEMU's posted MMIO writes. */
int vu_client_region_write(VuClient *c, unsigned region, uint64_t off, const void *buf,
                           uint32_t len, bool posted);
int vu_client_write_multi(VuClient *c, const struct vu_write_multi_entry *e, unsigned n);
int vu_client_reset(VuClient *c);

/* DEVICE_FEATURE: data in/out (may be NULL), *out_len receives the reply data length. */
int vu_client_device_feature(VuClient *c, uint32_t flags, const void *in, size_t in_len,
                             void *out, size_t out_cap, size_t *out_len);
int vu_client_mig_data_read(VuClient *c, void *buf, uint32_t len);     /* bytes read or -errno */
int vu_client_mig_data_write(VuClient *c, const void *buf, uint32_t len);

/*
 * Raw access for protocol tests: send a prepared message (header included)
 * with fds; receive one message, its header into *hdr and up to cap bytes
 * of its payload into buf (fds that came with it are closed).  send: 0 or
 * -errno; recv: the message size (header included) or -errno.
 */
int vu_client_send_raw(VuClient *c, const void *msg, size_t len, const int *fds, unsigned n_fds);
int vu_client_recv_raw(VuClient *c, void *buf, size_t cap, struct vu_hdr *hdr);

/*
 * A VMM helper: guest RAM as one memfd, mapped in this process too so the
 * test acts as the guest.  gpa_base is where it appears in guest space.
 */
typedef struct VuGuestRam {
        int fd;
        uint8_t *host;
        uint64_t gpa_base;
        uint64_t size;
} VuGuestRam;

int vu_guest_ram_new(uint64_t gpa_base, uint64_t size, VuGuestRam *ram);
void vu_guest_ram_free(VuGuestRam *ram);
void *vu_guest_ram_ptr(const VuGuestRam *ram, uint64_t gpa, size_t len);   /* NULL if outside */
/* DMA_MAP the whole RAM, read+write. */
int vu_client_map_ram(VuClient *c, const VuGuestRam *ram);

/*
 * MSI-X, as a guest driver plus its VMM would: create n eventfds, assign
 * them to vectors [0, n) (in runs of the server's max_msg_fds), then set
 * MSI-X Enable and clear Function Mask in config space.  The caller owns
 * the fds.  0 or -errno (-ENOENT: no MSI-X capability).
 */
int vu_client_enable_msix(VuClient *c, unsigned n, int *fds);
/*
 * MSI the same way: n (a power of two up to the capability's Multiple
 * Message Capable) eventfds; MSI Enable with Multiple Message Enable n,
 * then the vectors assigned.  0 or -errno (-ENOENT: no MSI capability).
 */
int vu_client_enable_msi(VuClient *c, unsigned n, int *fds);
/* Offset of capability id in config space (standard list), or -ENOENT. */
int vu_client_find_cap(VuClient *c, uint8_t id);
/* Wait until vector fd fires (timeout_ms < 0: forever). 1 fired, 0 timeout, -errno. */
int vu_client_wait_irq(int fd, int timeout_ms);
/*
 * The same, watching c's connection too: a server that dies (a killed
 * worker) ends the wait at once with -ECONNRESET, not at the timeout.
 */
int vu_client_wait_irq_or_hangup(VuClient *c, int fd, int timeout_ms);
