/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-user migration v2 for virtio devices: the transport's state and the
 * device's sections in one devstate stream (virtio-pci-state.c), the arcs
 * of the state machine run by DevStateMig (state/devstate-mig.h).
 */
#include <glib.h>

#include "virtio/virtio-pci-priv.h"

static int ops_save(void *opaque, DevStateWriter **out) {
        return virtio_pci_state_save(opaque, out);
}

static DevStateReader *ops_reader(void *opaque) {
        return virtio_pci_state_reader(opaque);
}

static int ops_load(void *opaque, DevStateReader *r) {
        return virtio_pci_state_apply(opaque, r);
}

static void ops_reset(void *opaque) {
        virtio_pci_reset(opaque);
}

const DevStateMigOps virtio_pci_state_ops = {
        .save = ops_save,
        .reader = ops_reader,
        .load = ops_load,
        .reset = ops_reset,
};

static int mig_transition(void *opaque, enum vu_mig_state from, enum vu_mig_state to) {
        return devstate_mig_transition(&((VirtioPci *) opaque)->mig, from, to);
}

static ssize_t mig_read(void *opaque, void *buf, size_t len) {
        return devstate_mig_read(&((VirtioPci *) opaque)->mig, buf, len);
}

static int mig_write(void *opaque, const void *buf, size_t len) {
        return devstate_mig_write(&((VirtioPci *) opaque)->mig, buf, len);
}

const VuMigrationOps virtio_pci_mig_ops = {
        .transition = mig_transition,
        .read_data = mig_read,
        .write_data = mig_write,
};

bool virtio_pci_may_run(const VirtioPci *vp) {
        return devstate_mig_may_run(&vp->mig);
}

enum vu_mig_state virtio_pci_migration_state(const VirtioPci *vp) {
        return vp->mig.state;
}

const char *virtio_pci_migration_error(const VirtioPci *vp) {
        return devstate_mig_error(&vp->mig);
}
