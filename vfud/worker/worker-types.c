/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The device types this vfud-worker was built with.  meson defines
 * WORKER_HAVE_<TYPE> for each device library that is part of the build.
 */
#include <string.h>

#include "worker-internal.h"

const WorkerDeviceType *const worker_types[] = {
#if WORKER_HAVE_NVME
        &worker_nvme_type,
#endif
#if WORKER_HAVE_VIRTIO_NET
        &worker_virtio_net_type,
#endif
#if WORKER_HAVE_VIRTIO_BLK
        &worker_virtio_blk_type,
#endif
        NULL,
};

const WorkerDeviceType *worker_type_find(const char *name) {
        for (size_t i = 0; worker_types[i]; i++)
                if (strcmp(worker_types[i]->type, name) == 0)
                        return worker_types[i];
        return NULL;
}
