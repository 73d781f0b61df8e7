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
        if (prot & VU_PROT_WRITE)
                m->mem.ops->mark_dirty(m, gpa, len);
        return 1;
}

static void fake_mark_dirty(void *opaque, uint64_t gpa, uint64_t len) {
        FakeMem *m = opaque;
        FakeDirty d = { gpa, len, NULL };

        g_mutex_lock(&m->lock);
        if (m->dirty && len && gpa >= m->gpa && gpa - m->gpa < m->size && len <= m->size - (gpa - m->gpa)) {
                d.snap = g_memdup2(m->host + (gpa - m->gpa), len);
                g_array_append_val(m->dirty, d);
        }
        g_mutex_unlock(&m->lock);
}

static void dirty_clear(gpointer p) {
        g_free(((FakeDirty *) p)->snap);
}

static const VuMemOps fake_mem_ops = { .translate = fake_translate, .mark_dirty = fake_mark_dirty };

void fake_mem_log(FakeMem *m, bool on) {
        g_mutex_lock(&m->lock);
        g_clear_pointer(&m->dirty, g_array_unref);
        if (on) {
                m->dirty = g_array_new(FALSE, FALSE, sizeof(FakeDirty));
                g_array_set_clear_func(m->dirty, dirty_clear);
        }
        g_mutex_unlock(&m->lock);
}

bool fake_mem_logged(FakeMem *m, uint64_t gpa, uint64_t len) {
        bool progress = true;

        g_mutex_lock(&m->lock);
        while (len > 0 && progress && m->dirty) {
                progress = false;
                for (unsigned i = 0; i < m->dirty->len && len > 0; i++) {
                        FakeDirty *d = &g_array_index(m->dirty, FakeDirty, i);
                        if (gpa >= d->gpa && gpa < d->gpa + d->len) {
                                uint64_t n = MIN(len, d->gpa + d->len - gpa);
                                gpa += n;
                                len -= n;
                                progress = true;
                        }
                }
        }
        g_mutex_unlock(&m->lock);
        return len == 0;
}

bool fake_mem_logged_after_write(FakeMem *m, uint64_t gpa, uint64_t len) {
        bool ok = true;

        g_mutex_lock(&m->lock);
        for (uint64_t a = gpa; a < gpa + len && ok; a++) {
                const FakeDirty *last = NULL;

                for (unsigned i = 0; m->dirty && i < m->dirty->len; i++) {
                        const FakeDirty *d = &g_array_index(m->dirty, FakeDirty, i);
                        if (a >= d->gpa && a < d->gpa + d->len)
                                last = d;
                }
                ok = last && last->snap[a - last->gpa] == m->host[a - m->gpa];
        }
        g_mutex_unlock(&m->lock);
        return ok;
}

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
        g_mutex_init(&m->lock);
}

void fake_mem_fini(FakeMem *m) {
        fake_mem_log(m, false);
        g_mutex_clear(&m->lock);
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
