/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A small PCI device on our vfio-user server, for the library's tests and
 * its fuzzer:
 *   BAR0  8 KiB MEM32: page 0 a trapped register file, page 1 a mappable
 *         area backed by its own memfd
 *   BAR1  256 bytes of I/O space, no ops (reads 0)
 *   BAR2  16 KiB MEM64 prefetchable, no ops (BAR3 is its upper half)
 *   BAR4  4 KiB MEM32: the MSI-X table (offset 0) and PBA (0x800), or
 *         nothing when the device offers MSI instead
 * Registers (BAR0):
 *   0x000-0x0ff scratch
 *   0x100 DMA source gpa (u64), 0x108 destination gpa (u64), 0x110 length
 *   (u32), 0x114 command (u32: 1 = copy source → destination through
 *   vu_mem_read/vu_mem_write, then fire vector [0x11c]), 0x118 status
 *   (i32, 0 or -errno), 0x11c completion vector (u32)
 *   0x120 fire vector n (u32 write), status in 0x118
 *   0x200 a register whose reads fail with -EIO
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "vfio-user/migration.h"
#include "vfio-user/server.h"

#define TD_NVEC         8
#define TD_REG_DMA_SRC  0x100
#define TD_REG_DMA_DST  0x108
#define TD_REG_DMA_LEN  0x110
#define TD_REG_DMA_CMD  0x114
#define TD_REG_STATUS   0x118
#define TD_REG_DMA_VEC  0x11c
#define TD_REG_FIRE     0x120
#define TD_REG_BROKEN   0x200
#define TD_DMA_MAX      (64 * 1024)
#define TD_MSIX_BAR     4
#define TD_PBA_OFF      0x800
#define TD_AREA_OFF     0x1000
#define TD_AREA_SIZE    0x1000
#define TD_MIG_BLOB     256     /* migration stream: the scratch registers, in pieces */

typedef struct TestDevice {
        VuServer *server;
        GMutex lock;
        uint8_t regs[4096];
        int area_fd;
        uint8_t *area;

        /* what the server asked of us */
        int quiesced;                   /* current depth: must be back to 0 after each command */
        unsigned quiesce_calls, reset_calls[_VU_RESET_KIND_MAX], cfg_events, attaches, detaches;
        unsigned last_cfg_events;

        /* migration */
        bool with_migration;
        int fail_transition;            /* next transition fails with this -errno */
        char arcs[256];                 /* "running>stop,stop>stop-copy," ... */
        size_t mig_read_pos;
        uint8_t mig_in[TD_MIG_BLOB];
        size_t mig_in_len;
} TestDevice;

/* Build the device and its server (not listening).  Aborts on failure: test set-up. */
TestDevice *td_new(bool with_migration);
/* The same with MSI of msi_nvec vectors instead of MSI-X (BAR4 then holds nothing); 0: MSI-X. */
TestDevice *td_new_irq(bool with_migration, unsigned msi_nvec);
void td_free(TestDevice *td);
