/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "vfio-user/migration.h"
#include "vmm-mig.h"

#define PIECE 1000u     /* the stream goes in odd-sized pieces, as a network would cut it */

int vmm_mig_set(VuClient *c, uint32_t state) {
        struct vu_feature_mig_state st = { .device_state = state };

        return vu_client_device_feature(c, VU_FEATURE_SET | VU_FEATURE_MIG_DEVICE_STATE, &st, sizeof(st), NULL, 0,
                                        NULL);
}

int vmm_mig_probe(VuClient *c) {
        uint64_t flags = 0;
        size_t len = 0;
        int r = vu_client_device_feature(c, VU_FEATURE_GET | VU_FEATURE_MIGRATION, NULL, 0, &flags, sizeof(flags),
                                         &len);

        if (r < 0)
                return r;
        /* A device offering no STOP_COPY cannot hand its state over: this VMM does not migrate it. */
        return (flags & VU_MIGRATION_STOP_COPY) ? 0 : -EOPNOTSUPP;
}

int vmm_mig_pre_copy(VuClient *c) {
        uint8_t chunk[4096];
        int r = vmm_mig_set(c, VU_MIG_PRE_COPY);

        if (r == 0)
                r = vu_client_mig_data_read(c, chunk, sizeof(chunk));
        return r < 0 ? r : 0;
}

GByteArray *vmm_mig_stop_copy(VuClient *c) {
        g_autoptr(GByteArray) st = g_byte_array_new();
        uint8_t chunk[4096];
        int n;

        if (vmm_mig_set(c, VU_MIG_STOP_COPY) < 0)
                return NULL;
        while ((n = vu_client_mig_data_read(c, chunk, sizeof(chunk))) > 0)
                g_byte_array_append(st, chunk, (guint) n);
        return n == 0 ? g_steal_pointer(&st) : NULL;
}

int vmm_mig_load(const char *sock, const VuGuestRam *ram, const GByteArray *st, VmmAttachFunc attach,
                 void *opaque, int *irq, VuClient **out) {
        VuClient *c = NULL;
        int r;

        if ((r = vu_client_connect(sock, &c)) < 0 || (r = vu_client_negotiate(c, NULL)) < 0 ||
            (r = vmm_mig_probe(c)) < 0 || (r = vu_client_map_ram(c, ram)) < 0 || (r = attach(c, irq, opaque)) < 0)
                goto fail;
        r = vmm_mig_set(c, VU_MIG_RESUMING);
        for (guint off = 0; r == 0 && off < st->len; off += PIECE)
                r = vu_client_mig_data_write(c, st->data + off, MIN(PIECE, st->len - off));
        if (r == 0)
                r = vmm_mig_set(c, VU_MIG_STOP);
        if (r == 0)
                r = vmm_mig_set(c, VU_MIG_RUNNING);
        if (r < 0)
                goto fail;
        *out = c;
        return 0;
fail:
        if (c)
                vu_client_free(c);
        return r;
}

int vmm_stdin_lines(GString *buf, GPtrArray *lines) {
        struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
        char chunk[512], *nl;
        ssize_t n;

        if (poll(&p, 1, 0) <= 0)
                return 0;
        n = read(STDIN_FILENO, chunk, sizeof(chunk));
        if (n <= 0)
                return -1;
        g_string_append_len(buf, chunk, n);
        while ((nl = strchr(buf->str, '\n'))) {
                g_ptr_array_add(lines, g_strndup(buf->str, (gsize) (nl - buf->str)));
                g_string_erase(buf, 0, nl - buf->str + 1);
        }
        return 0;
}
