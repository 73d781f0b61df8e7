/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target: the input is the byte stream a client sends.  It goes
 * through the server's framing, command table and handlers, into the test
 * device, over a memory transport.  The transport attaches a guest-RAM
 * memfd to every DMA_MAP header and some eventfds to SET_IRQS headers, as a
 * VMM would.  The device asserts the server's contract (quiesced resets,
 * balanced quiesce/resume, accesses within the registers).
 */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test-device.h"
#include "vfio-user/transport.h"

typedef struct MemTransport {
        const uint8_t *data;
        size_t len, pos;
        int ram;
} MemTransport;

static ssize_t mem_recv(void *t, void *buf, size_t len, int *fds, unsigned max_fds, unsigned *n_fds,
                        bool *truncated) {
        MemTransport *m = t;
        size_t n = MIN(len, m->len - m->pos);

        if (n == 0)
                return 0;
        if (len == sizeof(struct vu_hdr) && n == len) {
                struct vu_hdr h;

                memcpy(&h, m->data + m->pos, sizeof(h));
                if (h.cmd == VU_CMD_DMA_MAP && *n_fds < max_fds)
                        fds[(*n_fds)++] = fcntl(m->ram, F_DUPFD_CLOEXEC, 3);
                else if (h.cmd == VU_CMD_DEVICE_SET_IRQS)
                        for (unsigned i = 0; i < (h.msg_id & 0xf) && *n_fds < max_fds; i++)
                                fds[(*n_fds)++] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        }
        memcpy(buf, m->data + m->pos, n);
        m->pos += n;
        return (ssize_t) n;
}

static int mem_send(void *t, const struct iovec *iov, unsigned iovcnt, const int *fds, unsigned n_fds) {
        const struct vu_hdr *h = iov[0].iov_base;

        /* Replies are well-formed: a header with the size of what follows. */
        if (iov[0].iov_len != sizeof(*h))
                abort();
        if (h->size != sizeof(*h) + (iovcnt > 1 ? iov[1].iov_len : 0))
                abort();
        if (h->size > VU_MAX_MSG_SIZE || n_fds > 1)
                abort();
        return 0;
}

static void mem_close(void *t) {
}

static const VuTransportOps mem_ops = {
        .recv = mem_recv,
        .send = mem_send,
        .close = mem_close,
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Set up once: guest RAM and four devices (with and without migration
 * support, with MSI-X or with MSI of 4 messages instead), reused by every
 * input as a worker's server is by one client after another.  Each input
 * is a connection: attach, dispatch until the stream ends, and the
 * disconnect resets the server for the next one.
 */
static int ram = -1;
static TestDevice *devs[4];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        ram = memfd_create("fuzz-guest-ram", MFD_CLOEXEC);
        if (ram < 0 || ftruncate(ram, 1 << 20) < 0)
                abort();
        for (unsigned i = 0; i < 4; i++)
                devs[i] = td_new_irq(i & 1, i & 2 ? 4 : 0);
        return 0;
}

/* What one connection may change in the test device, back to power-on. */
static void td_clear(TestDevice *td) {
        memset(td->regs, 0, sizeof(td->regs));
        td->fail_transition = 0;
        td->arcs[0] = '\0';
        td->mig_read_pos = td->mig_in_len = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        MemTransport m = { data, size, 0, ram };
        /* The length picks the device: bit 0 migration support, bit 1 MSI instead of MSI-X. */
        TestDevice *td = devs[size & 3];

        td_clear(td);
        if (vu_server_attach_transport(td->server, &mem_ops, &m) < 0)
                abort();
        while (vu_server_connected(td->server))
                vu_server_dispatch(td->server);
        if (td->quiesced != 0)
                abort();
        return 0;
}
