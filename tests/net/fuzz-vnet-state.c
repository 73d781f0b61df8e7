/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for restoring virtio-net state: a probed device on fake
 * guest RAM is handed arbitrary streams.  Input: one control byte, then the
 * stream; control bit 0 rewrites the last four bytes as the stream's
 * checksum so mutations reach the transport's and the device's checks;
 * bits 1..7 pick the piece size.  Whatever is refused must leave the device
 * reset (status 0, no queue started); whatever is accepted is saved again
 * and must load again (the state a device accepts is state it can give).
 *
 * FUZZ_VNET_STATE_SEEDS=DIR writes seeds (this device's own state, probed
 * and with frames moved) into DIR and exits: state-corpus/ holds them.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "fake-mem.h"
#include "net/vnet.h"
#include "vnet-driver.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FakeMem mem;
static FakeIrq irq;
static VNet *net;
static int peer = -1;

static int bar_read(void *o, uint64_t off, void *buf, size_t len) {
        return virtio_pci_bar_read(vnet_virtio(net), off, buf, len);
}

static int bar_write(void *o, uint64_t off, const void *buf, size_t len) {
        return virtio_pci_bar_write(vnet_virtio(net), off, buf, len);
}

static int irq_wait(void *o, unsigned vector, int ms) {
        return fake_irq_wait(&irq, vector, ms);
}

static const VdOps ops = { .read = bar_read, .write = bar_write, .wait_irq = irq_wait };

static void write_seeds(const char *dir) {
        g_autoptr(DevStateWriter) w = NULL;
        const uint8_t ctl[] = { 0x00, 0x01, 0x0f };
        const uint8_t *d;
        size_t len;

        if (virtio_pci_state_save(vnet_virtio(net), &w) < 0 || !(d = devstate_writer_data(w, &len)))
                abort();
        for (size_t i = 0; i < G_N_ELEMENTS(ctl); i++) {
                g_autofree char *path = g_strdup_printf("%s/probed-%02x", dir, ctl[i]);
                g_autofree uint8_t *seed = g_malloc(len + 1);

                seed[0] = ctl[i];
                memcpy(seed + 1, d, len);
                if (!g_file_set_contents(path, (const char *) seed, (gssize) len + 1, NULL))
                        abort();
        }
        exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        VNetOptions o = { .pairs = 1, .mtu = 1500, .link_up = true, .queue_size = 64, .packed = true,
                          .mac = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 }, .migration_id = "net0" };
        NetBackend *be;
        static Vd d;
        int sv[2];

        fake_mem_init(&mem, 0x40000000, 8 << 20);
        fake_irq_init(&irq);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || net_passt_new(sv[0], &be) < 0 ||
            vnet_new(&o, be, &net) < 0)
                abort();
        peer = sv[1];
        vnet_attach(net, &mem.mem, &irq.ops, &irq);
        /* Rings and buffers in guest RAM, so streams naming them can be applied. */
        vd_init(&d, &ops, NULL, mem.host, mem.gpa, mem.size);
        if (vd_probe(&d, UINT64_MAX & ~VIRTIO_BIT(VIRTIO_F_RING_PACKED), 1, 0) < 0)
                abort();
        vd_rx_post(&d, 0);
        if (getenv("FUZZ_VNET_STATE_SEEDS"))
                write_seeds(getenv("FUZZ_VNET_STATE_SEEDS"));
        virtio_pci_reset(vnet_virtio(net));
        return 0;
}

/* A refused stream leaves nothing behind. */
static void check_reset(VirtioPci *vp) {
        if (virtio_pci_status(vp) != 0 || virtio_pci_driver_features(vp) != 0)
                abort();
        for (unsigned i = 0; i < virtio_pci_num_queues(vp); i++)
                if (virtio_pci_queue(vp, i)->started || virtio_pci_queue(vp, i)->enabled)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        VirtioPci *vp = vnet_virtio(net);
        g_autoptr(DevStateReader) r = NULL;
        g_autofree uint8_t *s = NULL;
        size_t len, chunk, off = 0;
        int ret = 0;

        if (size < 1)
                return 0;
        len = size - 1;
        s = g_memdup2(data + 1, len);
        if ((data[0] & 1) && len >= 4) {
                uint32_t crc = GUINT32_TO_LE(devstate_crc32c(0, s, len - 4));
                memcpy(s + len - 4, &crc, 4);
        }
        chunk = (data[0] >> 1) ? (data[0] >> 1) : len;
        r = virtio_pci_state_reader(vp);
        while (off < len && ret == 0) {
                size_t n = MIN(chunk, len - off);
                ret = devstate_reader_feed(r, s + off, n);
                off += n;
        }
        ret = virtio_pci_state_load(vp, r);
        if (ret < 0) {
                if (!virtio_pci_migration_error(vp))
                        abort();
                check_reset(vp);
                return 0;
        }
        /* Accepted: it saves, and what it saves loads again. */
        {
                g_autoptr(DevStateWriter) w = NULL;
                g_autoptr(DevStateReader) again = virtio_pci_state_reader(vp);
                const uint8_t *d;
                size_t dlen;

                if (virtio_pci_state_save(vp, &w) < 0 || !(d = devstate_writer_data(w, &dlen)) ||
                    devstate_reader_feed(again, d, dlen) < 0 || virtio_pci_state_load(vp, again) < 0)
                        abort();
        }
        virtio_pci_reset(vp);
        return 0;
}
