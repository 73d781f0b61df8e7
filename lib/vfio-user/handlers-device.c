/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DEVICE_GET_INFO and DEVICE_RESET (vfio-user.rst): a PCI device with reset,
 * 9 regions (BAR0-5, ROM, config, VGA) and 5 IRQ indexes.
 */
#include <errno.h>
#include <string.h>

#include "server-internal.h"

int vu_handle_device_get_info(VuServer *s, VuMsg *m, VuReply *r) {
        struct vu_device_info in, *out;

        memcpy(&in, m->body, sizeof(in));
        if (in.argsz < sizeof(in))
                return -EINVAL;
        out = vu_reply_append(s, r, sizeof(*out));
        out->argsz = sizeof(*out);
        out->flags = VU_DEV_FLAGS_PCI | VU_DEV_FLAGS_RESET;
        out->num_regions = VU_PCI_NUM_REGIONS;
        out->num_irqs = VU_PCI_NUM_IRQS;
        return 0;
}

/* DMA maps and eventfds survive a reset; QEMU disables interrupts around it itself. */
int vu_handle_device_reset(VuServer *s, VuMsg *m, VuReply *r) {
        vu_server_reset_device(s, VU_RESET_DEVICE);
        return 0;
}
