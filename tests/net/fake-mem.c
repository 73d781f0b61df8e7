/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake-mem.h"

static int fake_translate(void *opaque, uint64_t gpa, uint64_t len, int prot, struct iovec *iov, unsigned max_iov) {
        FakeMem *m = opaque;

        if (len == 0)
                return 0;
        if (gpa + len < gpa)
                return -EINVAL;
        if (gpa < m->gpa || gpa + len > m->gpa + m->size)
                return -EFAULT;
        if (m->hole_len && gpa < m->hole_gpa + m->hole_len && gpa + len > m->hole_gpa)
                return -EFAULT;
        if (max_iov < 1)
                return -ENOSPC;
        iov[0].iov_base = m->host + (gpa - m->gpa);
        iov[0].iov_len = len;
        return 1;
}

static const VuMemOps fake_mem_ops = { .translate = fake_translate };

void fake_mem_init(FakeMem *m, uint64_t gpa, uint64_t size) {
        memset(m, 0, sizeof(*m));
        m->fd = memfd_create("fake-guest-ram", MFD_CLOEXEC);
        if (m->fd < 0 || ftruncate(m->fd, (off_t) size) < 0)
                abort();
        m->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
        if (m->host == MAP_FAILED)
                abort();
        m->gpa = gpa;
        m->size = size;
        m->next = gpa;
        m->mem.ops = &fake_mem_ops;
        m->mem.opaque = m;
}

void fake_mem_fini(FakeMem *m) {
        munmap(m->host, m->size);
        close(m->fd);
}

uint64_t fake_mem_alloc(FakeMem *m, uint64_t len, uint64_t align) {
        uint64_t a = (m->next + align - 1) & ~(align - 1);

        if (a + len > m->gpa + m->size)
                abort();
        m->next = a + len;
        memset(m->host + (a - m->gpa), 0, len);
        return a;
}

void *fake_mem_ptr(FakeMem *m, uint64_t gpa) {
        return m->host + (gpa - m->gpa);
}

static int fake_fire(void *opaque, unsigned vector) {
        FakeIrq *irq = opaque;

        if (vector >= FAKE_IRQ_MAX)
                return -EINVAL;
        __atomic_fetch_add(&irq->count[vector], 1, __ATOMIC_RELAXED);
        eventfd_write(irq->fds[vector], 1);
        return 0;
}

void fake_irq_init(FakeIrq *irq) {
        memset(irq, 0, sizeof(*irq));
        irq->ops.fire = fake_fire;
        for (unsigned i = 0; i < FAKE_IRQ_MAX; i++)
                irq->fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void fake_irq_fini(FakeIrq *irq) {
        for (unsigned i = 0; i < FAKE_IRQ_MAX; i++)
                close(irq->fds[i]);
}

int fake_irq_wait(FakeIrq *irq, unsigned vector, int timeout_ms) {
        struct pollfd p = { .fd = irq->fds[vector], .events = POLLIN };
        eventfd_t v;

        if (poll(&p, 1, timeout_ms) <= 0)
                return 0;
        eventfd_read(irq->fds[vector], &v);
        return 1;
}
