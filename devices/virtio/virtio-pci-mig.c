/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-user migration v2 for virtio devices (VuMigrationOps): one callback
 * per direct arc of the state machine the server walks, always with the
 * device quiesced.
 *
 *   RUNNING  → STOP       hold the data path stopped
 *   RUNNING  → PRE_COPY   keep running; the pre-copy stream is empty (the
 *                         state is small and only final once stopped)
 *   PRE_COPY → STOP_COPY  hold stopped, save the state into the stream
 *   STOP     → STOP_COPY  save the state into the stream
 *   STOP_COPY→ STOP       drop the stream
 *   STOP     → RESUMING   reset the device, open a reader for the stream
 *   RESUMING → STOP       check everything received, then apply it (any
 *                         failure: device reset, arc fails, server → ERROR)
 *   STOP / PRE_COPY → RUNNING  release the data path
 *
 * The stream is written and read by the devstate library (state/devstate.h).
 */
#include <errno.h>

#include <glib.h>

#include "virtio/virtio-pci-priv.h"

static void drop_streams(VirtioPci *vp) {
        g_clear_pointer(&vp->mig_out, devstate_writer_free);
        g_clear_pointer(&vp->mig_in, devstate_reader_free);
}

void virtio_pci_mig_reset(VirtioPci *vp) {
        drop_streams(vp);
        vp->mig_state = VU_MIG_RUNNING;
        vp->mig_hold = false;
}

bool virtio_pci_may_run(const VirtioPci *vp) {
        return !vp->mig_hold;
}

enum vu_mig_state virtio_pci_migration_state(const VirtioPci *vp) {
        return vp->mig_state;
}

const char *virtio_pci_migration_error(const VirtioPci *vp) {
        return vp->mig_error;
}

static int arc(VirtioPci *vp, enum vu_mig_state from, enum vu_mig_state to) {
        int r;

        switch (to) {
        case VU_MIG_RUNNING:
                drop_streams(vp);
                vp->mig_hold = false;
                return 0;
        case VU_MIG_PRE_COPY:
                return 0;
        case VU_MIG_STOP_COPY:
                vp->mig_hold = true;
                drop_streams(vp);
                return virtio_pci_state_save(vp, &vp->mig_out);
        case VU_MIG_STOP:
                vp->mig_hold = true;
                r = 0;
                if (from == VU_MIG_RESUMING)
                        r = vp->mig_in ? virtio_pci_state_load(vp, vp->mig_in) : -EINVAL;
                drop_streams(vp);
                return r;
        case VU_MIG_RESUMING:
                vp->mig_hold = true;
                drop_streams(vp);
                g_clear_pointer(&vp->mig_error, g_free);
                virtio_pci_reset(vp);
                vp->mig_in = virtio_pci_state_reader(vp);
                return 0;
        default:
                return -EINVAL;
        }
}

static int mig_transition(void *opaque, enum vu_mig_state from, enum vu_mig_state to) {
        VirtioPci *vp = opaque;
        int r = arc(vp, from, to);

        if (r < 0) {
                /* The server puts the device in ERROR: it stays stopped until a reset. */
                vp->mig_hold = true;
                vp->mig_state = VU_MIG_ERROR;
                drop_streams(vp);
                return r;
        }
        vp->mig_state = to;
        return 0;
}

static ssize_t mig_read(void *opaque, void *buf, size_t len) {
        VirtioPci *vp = opaque;

        if (vp->mig_state == VU_MIG_PRE_COPY)
                return 0;
        if (!vp->mig_out)
                return -EINVAL;
        return devstate_writer_read(vp->mig_out, buf, len);
}

static int mig_write(void *opaque, const void *buf, size_t len) {
        VirtioPci *vp = opaque;
        int r;

        if (!vp->mig_in)
                return -EINVAL;
        r = devstate_reader_feed(vp->mig_in, buf, len);
        if (r < 0 && !vp->mig_error) {
                vp->mig_error = g_strdup(devstate_reader_error(vp->mig_in));
                g_debug("virtio %s: incoming device state refused: %s", vp->cfg.name ? vp->cfg.name : "",
                        vp->mig_error);
        }
        return r;
}

const VuMigrationOps virtio_pci_mig_ops = {
        .transition = mig_transition,
        .read_data = mig_read,
        .write_data = mig_write,
};
