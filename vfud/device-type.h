/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the manager knows per device type: the options CreateDevice accepts,
 * how they become the persisted definition (defaults filled, paths checked),
 * what must exist before a worker starts (sparse images), which fds the
 * worker gets, and the type's runtime methods.  One table entry per type
 * (device-type-nvme.c, device-type-net.c, device-type-vblk.c); the worker side of each type is
 * a WorkerDeviceType in vfud/worker/.
 */
#pragma once

#include "device.h"

typedef enum DeviceOptionKind {
        DEVICE_OPTION_STRING = 's',
        DEVICE_OPTION_UINT = 'u',       /* any D-Bus integer type, ≥ 0 */
        DEVICE_OPTION_BOOL = 'b',
} DeviceOptionKind;

typedef struct DeviceOptionSpec {
        const char *name;
        DeviceOptionKind kind;
        const char *help;
} DeviceOptionSpec;

struct DeviceType {
        const char *name;
        const DeviceOptionSpec *options;        /* NULL-name terminated */
        /*
         * in: option name → JsonNode (a string, integer or boolean as the
         * spec says).  Fill out with the normalized options.  FALSE with a
         * MANAGER_ERROR saying which option is wrong and what to give.
         */
        gboolean (*normalize)(Manager *m, const char *name, GHashTable *in, JsonObject *out,
                              GError **error);
        /* Create what the definition refers to but does not exist yet; undone by unprovision. */
        gboolean (*provision)(Device *d, GError **error);
        void (*unprovision)(Device *d);
        /* Open the fds the worker gets at start: names (char*) and fds (int) appended. */
        gboolean (*open_fds)(Device *d, GPtrArray *names, GArray *fds, GError **error);

        /* Runtime methods; NULL: NotSupported.  Persist the definition on success. */
        void (*namespace_add)(Device *d, uint32_t nsid, const char *path, uint64_t size,
                              DeviceDoneFunc func, void *userdata);
        void (*namespace_remove)(Device *d, uint32_t nsid, DeviceDoneFunc func, void *userdata);
        void (*namespace_resize)(Device *d, uint32_t nsid, uint64_t size,
                                 DeviceDoneFunc func, void *userdata);
        void (*link_set)(Device *d, bool up, DeviceDoneFunc func, void *userdata);

        /*
         * Migration (migrate.h): the CreateDevice options for what the definition keeps in another
         * shape than its options (top-level scalars named like an option travel without it).
         */
        int (*append_create_options)(JsonObject *def, sd_bus_message *m);

        /* Whether the guest sees an MSI-X capability (hot unplug on QEMU < 11.2 aborts); NULL: always. */
        bool (*uses_msix)(Device *d);
};

extern const DeviceType device_type_nvme;
extern const DeviceType device_type_virtio_net;
extern const DeviceType device_type_virtio_blk;
extern const DeviceType *const device_types[];

const DeviceType *device_type_find(const char *name);
/* "nvme, virtio-net" (g_free). */
char *device_type_list(void);
/* "size, file, block, ..." (g_free). */
char *device_type_option_list(const DeviceType *t);
