/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Test guest RAM: a memfd mapped at a non-zero guest address, with a
 * VuMem translator that refuses anything outside it, and an interrupt sink
 * with one eventfd per vector.  For unit tests, before a vfio-user server is
 * involved.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "vfio-user/mem.h"
#include "virtio/virtio-pci.h"

typedef struct FakeMem {
        VuMem mem;
        int fd;
        uint8_t *host;
        uint64_t gpa;
        uint64_t size;
        uint64_t next;                  /* bump allocator */
        uint64_t hole_gpa, hole_len;    /* a range that translates to -EFAULT */
        GArray *dirty;                  /* FakeDirty: writes reported, when not NULL */
        GMutex lock;
} FakeMem;

/* One range the device reported as written (translations for writing and vu_mem_mark_dirty()). */
typedef struct FakeDirty {
        uint64_t gpa, len;
        uint8_t *snap;                  /* the bytes as they were when reported */
} FakeDirty;

/* Start recording dirty ranges (clearing what was recorded), or stop (NULL). */
void fake_mem_log(FakeMem *m, bool on);
/* Is every byte of [gpa, gpa+len) covered by a recorded range? */
bool fake_mem_logged(FakeMem *m, uint64_t gpa, uint64_t len);
/*
 * Was every byte of [gpa, gpa+len) last reported with the value it has now?
 * False when a write came after its report: a migration would miss it.
 */
bool fake_mem_logged_after_write(FakeMem *m, uint64_t gpa, uint64_t len);

void fake_mem_init(FakeMem *m, uint64_t gpa, uint64_t size);
void fake_mem_fini(FakeMem *m);
/* Allocate len bytes (aligned); returns the guest address. */
uint64_t fake_mem_alloc(FakeMem *m, uint64_t len, uint64_t align);
void *fake_mem_ptr(FakeMem *m, uint64_t gpa);

#define FAKE_IRQ_MAX 160
typedef struct FakeIrq {
        VirtioIrqOps ops;
        int fds[FAKE_IRQ_MAX];
        unsigned count[FAKE_IRQ_MAX];   /* atomic */
} FakeIrq;

void fake_irq_init(FakeIrq *irq);
void fake_irq_fini(FakeIrq *irq);
/* 1 fired, 0 timeout. */
int fake_irq_wait(FakeIrq *irq, unsigned vector, int timeout_ms);
