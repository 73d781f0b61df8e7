/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>

#include "fake-mem.h"

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
        return blen && a < b + blen && b < a + alen;
}

static int fake_translate(void *opaque, uint64_t gpa, uint64_t len, int prot,
                          struct iovec *iov, unsigned max_iov) {
        FakeMem *m = opaque;

        __atomic_fetch_add(&m->translations, 1, __ATOMIC_RELAXED);
        if (len == 0)
                return 0;
        if (gpa + len < gpa)
                return -EINVAL;
        if (gpa < m->gpa || gpa + len > m->gpa + m->size || overlaps(gpa, len, m->hole_gpa, m->hole_len))
                return -EFAULT;
        if ((prot & VU_PROT_WRITE) && overlaps(gpa, len, m->ro_gpa, m->ro_len))
                return -EACCES;
        uint64_t split = m->gpa + m->size / 2;
        unsigned n = 0;
        uint64_t cur = gpa, end = gpa + len;
        while (cur < end) {
                uint64_t stop = cur < split && end > split ? split : end;
                if (n >= max_iov)
                        return -ENOSPC;
                iov[n].iov_base = m->host + (cur - m->gpa);
                iov[n].iov_len = stop - cur;
                n++;
                cur = stop;
        }
        return (int) n;
}

static const VuMemOps fake_mem_ops = { .translate = fake_translate };

void fake_mem_init(FakeMem *m, uint64_t gpa, uint64_t size) {
        memset(m, 0, sizeof(*m));
        m->fd = memfd_create("fake-guest-ram", MFD_CLOEXEC);
        g_assert_cmpint(m->fd, >=, 0);
        g_assert_cmpint(ftruncate(m->fd, (off_t) size), ==, 0);
        m->host = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
        g_assert_true(m->host != MAP_FAILED);
        m->gpa = gpa;
        m->size = size;
        m->mem.ops = &fake_mem_ops;
        m->mem.opaque = m;
}

void fake_mem_fini(FakeMem *m) {
        munmap(m->host, m->size);
        close(m->fd);
}

void *fake_mem_ptr(FakeMem *m, uint64_t gpa) {
        return m->host + (gpa - m->gpa);
}

void fake_irq_init(FakeIrq *f, unsigned nvec) {
        memset(f, 0, sizeof(*f));
        f->nvec = nvec;
        for (unsigned i = 0; i < nvec; i++)
                f->fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

void fake_irq_fini(FakeIrq *f) {
        for (unsigned i = 0; i < f->nvec; i++)
                close(f->fds[i]);
}

void fake_irq_fire(void *opaque, unsigned vector) {
        FakeIrq *f = opaque;
        uint64_t one = 1;
        g_assert_cmpuint(vector, <, f->nvec);
        __atomic_fetch_add(&f->count[vector], 1, __ATOMIC_RELAXED);
        ssize_t r = write(f->fds[vector], &one, sizeof(one));
        (void) r;
}

int fake_irq_wait(FakeIrq *f, unsigned vector, int timeout_ms) {
        struct pollfd p = { .fd = f->fds[vector], .events = POLLIN };
        int r = poll(&p, 1, timeout_ms);
        if (r > 0) {
                uint64_t v;
                ssize_t n = read(f->fds[vector], &v, sizeof(v));
                (void) n;
        }
        return r >= 0 ? r : errno == EINTR ? 0 : -errno;
}
