/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "device-limits.h"
#include "device-spawn.h"
#include "device-type.h"

const DeviceType *const device_types[] = {
        &device_type_nvme,
        &device_type_virtio_net,
        &device_type_virtio_blk,
        NULL,
};

const DeviceType *device_type_find(const char *name) {
        for (size_t i = 0; name && device_types[i]; i++)
                if (strcmp(device_types[i]->name, name) == 0)
                        return device_types[i];
        return NULL;
}

char *device_type_list(void) {
        GString *s = g_string_new(NULL);

        for (size_t i = 0; device_types[i]; i++)
                g_string_append_printf(s, "%s%s", i ? ", " : "", device_types[i]->name);
        return g_string_free(s, FALSE);
}

char *device_type_option_list(const DeviceType *t) {
        GString *s = g_string_new(NULL);

        for (size_t i = 0; t->options[i].name; i++)
                g_string_append_printf(s, "%s%s", i ? ", " : "", t->options[i].name);
        for (size_t i = 0; worker_unit_options[i].name; i++)
                g_string_append_printf(s, ", %s", worker_unit_options[i].name);
        {
                g_autofree char *limits = device_limits_option_list(t);

                g_string_append(s, limits);
        }
        return g_string_free(s, FALSE);
}
