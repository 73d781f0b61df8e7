/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fake guest RAM for unit tests: a memfd mapped once, seen by the device
 * through a VuMem translator with the same contract as the library's DMA
 * table (whole range or nothing, permissions, max_iov), plus a hole and a
 * read-only window to provoke errors.  Split into two "maps" at the middle.
 */
#pragma once

#include <stdint.h>

#include "vfio-user/mem.h"

typedef struct FakeMem {
        VuMem mem;
        int fd;
        uint8_t *host;
        uint64_t gpa, size;
        uint64_t hole_gpa, hole_len;    /* unmapped window */
        uint64_t ro_gpa, ro_len;        /* device may read, not write */
        unsigned translations;
} FakeMem;

void fake_mem_init(FakeMem *m, uint64_t gpa, uint64_t size);
void fake_mem_fini(FakeMem *m);
void *fake_mem_ptr(FakeMem *m, uint64_t gpa);

/* Fake MSI-X: one eventfd per vector, and counts. */
typedef struct FakeIrq {
        unsigned nvec;
        int fds[128];
        unsigned count[128];
} FakeIrq;

void fake_irq_init(FakeIrq *f, unsigned nvec);
void fake_irq_fini(FakeIrq *f);
void fake_irq_fire(void *opaque, unsigned vector);
int fake_irq_wait(FakeIrq *f, unsigned vector, int timeout_ms);
