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
} FakeMem;

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
