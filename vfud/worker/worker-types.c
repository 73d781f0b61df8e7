/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The device types a vfud-worker serves: one entry per worker-<type>.c. */
#include <string.h>

#include "worker-internal.h"

const WorkerDeviceType *const worker_types[] = {
        &worker_nvme_type,
        &worker_virtio_net_type,
        &worker_virtio_blk_type,
        NULL,
};

const WorkerDeviceType *worker_type_find(const char *name) {
        for (size_t i = 0; worker_types[i]; i++)
                if (strcmp(worker_types[i]->type, name) == 0)
                        return worker_types[i];
        return NULL;
}
