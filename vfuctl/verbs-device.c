/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Verbs that change devices: create, start, stop, destroy. */
#include <stdio.h>
#include <string.h>

#include "common/bus-names.h"
#include "vfuctl.h"

typedef struct CreateFlag {
        const char *flag;
        const char *types;              /* device types it applies to, space separated */
        bool (*given)(const Options *o);
} CreateFlag;

static bool given_size(const Options *o) { return o->have_size; }
static bool given_file(const Options *o) { return o->file; }
static bool given_block(const Options *o) { return o->block; }
static bool given_nbd(const Options *o) { return o->nbd; }
static bool given_rbd(const Options *o) { return o->rbd || o->rbd_conf || o->rbd_id || o->rbd_keyring; }
static bool given_serial(const Options *o) { return o->serial; }
static bool given_block_size(const Options *o) { return o->have_block_size; }
static bool given_null(const Options *o) { return o->have_null; }
static bool given_iothreads(const Options *o) { return o->have_iothreads; }
static bool given_poll_us(const Options *o) { return o->have_poll_us; }
static bool given_tap(const Options *o) { return o->tap; }
static bool given_passt(const Options *o) { return o->passt; }
static bool given_mac(const Options *o) { return o->mac; }
static bool given_mtu(const Options *o) { return o->have_mtu; }
static bool given_read_only(const Options *o) { return o->read_only; }
static bool given_msi(const Options *o) { return o->msi; }
static bool given_hotplug(const Options *o) { return o->hotplug; }

static const CreateFlag create_flags[] = {
        { "--size", "nvme virtio-blk", given_size },
        { "--file", "nvme virtio-blk", given_file },
        { "--block", "nvme virtio-blk", given_block },
        { "--nbd", "nvme virtio-blk", given_nbd },
        { "--rbd", "nvme virtio-blk", given_rbd },
        { "--serial", "nvme virtio-blk", given_serial },
        { "--block-size", "nvme virtio-blk", given_block_size },
        { "--null", "nvme virtio-blk virtio-net", given_null },
        { "--read-only", "virtio-blk", given_read_only },
        { "--iothreads", "nvme", given_iothreads },
        { "--poll-us", "nvme", given_poll_us },
        { "--msi", "nvme", given_msi },
        { "--hotplug", "nvme", given_hotplug },
        { "--tap", "virtio-net", given_tap },
        { "--passt", "virtio-net", given_passt },
        { "--mac", "virtio-net", given_mac },
        { "--mtu", "virtio-net", given_mtu },
};

static bool type_in(const char *type, const char *list) {
        g_auto(GStrv) l = g_strsplit(list, " ", -1);

        return g_strv_contains((const char *const *) l, type);
}

static int append_options(sd_bus_message *m, const Options *o) {
        int r = sd_bus_message_open_container(m, 'a', "{sv}");

        if (r >= 0 && o->have_size)
                r = sd_bus_message_append(m, "{sv}", "size", "t", o->size);
        if (r >= 0 && o->file)
                r = sd_bus_message_append(m, "{sv}", "file", "s", o->file);
        if (r >= 0 && o->block)
                r = sd_bus_message_append(m, "{sv}", "block", "s", o->block);
        if (r >= 0 && o->nbd)
                r = sd_bus_message_append(m, "{sv}", "nbd", "s", o->nbd);
        if (r >= 0 && o->rbd)
                r = sd_bus_message_append(m, "{sv}", "rbd", "s", o->rbd);
        if (r >= 0 && o->rbd_conf)
                r = sd_bus_message_append(m, "{sv}", "rbd-conf", "s", o->rbd_conf);
        if (r >= 0 && o->rbd_id)
                r = sd_bus_message_append(m, "{sv}", "rbd-id", "s", o->rbd_id);
        if (r >= 0 && o->rbd_keyring)
                r = sd_bus_message_append(m, "{sv}", "rbd-keyring", "s", o->rbd_keyring);
        if (r >= 0 && o->serial)
                r = sd_bus_message_append(m, "{sv}", "serial", "s", o->serial);
        if (r >= 0 && o->have_null)
                r = sd_bus_message_append(m, "{sv}", "null", "t", o->null_size);
        if (r >= 0 && o->have_block_size)
                r = sd_bus_message_append(m, "{sv}", "block-size", "u", o->block_size);
        if (r >= 0 && o->have_queues)
                r = sd_bus_message_append(m, "{sv}", "queues", "u", o->queues);
        if (r >= 0 && o->have_iothreads)
                r = sd_bus_message_append(m, "{sv}", "iothreads", "u", o->iothreads);
        if (r >= 0 && o->have_poll_us)
                r = sd_bus_message_append(m, "{sv}", "poll-us", "u", o->poll_us);
        if (r >= 0 && o->tap)
                r = sd_bus_message_append(m, "{sv}", "tap", "s", o->tap);
        if (r >= 0 && o->passt)
                r = sd_bus_message_append(m, "{sv}", "passt", "b", 1);
        if (r >= 0 && o->mac)
                r = sd_bus_message_append(m, "{sv}", "mac", "s", o->mac);
        if (r >= 0 && o->have_mtu)
                r = sd_bus_message_append(m, "{sv}", "mtu", "u", o->mtu);
        if (r >= 0 && o->read_only)
                r = sd_bus_message_append(m, "{sv}", "read-only", "b", 1);
        if (r >= 0 && o->msi)
                r = sd_bus_message_append(m, "{sv}", "msi", "b", 1);
        if (r >= 0 && o->hotplug)
                r = sd_bus_message_append(m, "{sv}", "hotplug", "b", 1);
        if (r >= 0 && o->have_cpu_quota)
                r = sd_bus_message_append(m, "{sv}", "cpu-quota", "u", o->cpu_quota);
        if (r >= 0 && o->have_memory_max)
                r = sd_bus_message_append(m, "{sv}", "memory-max", "t", o->memory_max);
        if (r >= 0 && o->have_io_weight)
                r = sd_bus_message_append(m, "{sv}", "io-weight", "u", o->io_weight);
        if (r >= 0 && o->have_tasks_max)
                r = sd_bus_message_append(m, "{sv}", "tasks-max", "u", o->tasks_max);
        if (r >= 0)
                r = append_limits(m, o->limits);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

int verb_create(Ctx *c, int argc, char **argv) {
        const char *type = argv[0];
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        g_autoptr(JsonNode) props = NULL;
        int code, r;

        if (strcmp(type, "nvme") == 0 || strcmp(type, "virtio-net") == 0 || strcmp(type, "virtio-blk") == 0) {
                for (size_t i = 0; i < G_N_ELEMENTS(create_flags); i++)
                        if (create_flags[i].given(&c->opt) && !type_in(type, create_flags[i].types))
                                return usage_error("%s does not apply to %s devices (it is for %s)",
                                                   create_flags[i].flag, type, create_flags[i].types);
        }
        if (c->opt.limits) {
                g_autoptr(GList) given = json_object_get_members(c->opt.limits);

                for (GList *l = given; l; l = l->next) {
                        const LimitOption *lo = limit_option_find(l->data);
                        const char *for_type = lo->set == LIMITS_NVME ? "nvme" : "virtio-net";

                        if (strcmp(type, for_type) != 0)
                                return usage_error("--%s does not apply to %s devices (it is for %s)",
                                                   lo->name, type, for_type);
                }
        }
        code = ctx_bus(c);
        if (code)
                return code;
        r = sd_bus_message_new_method_call(c->bus, &m, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE,
                                           "CreateDevice");
        if (r >= 0)
                r = sd_bus_message_append(m, "sss", type, c->opt.name ? c->opt.name : "", c->opt.vm ? c->opt.vm : "");
        if (r >= 0)
                r = append_options(m, &c->opt);
        if (r >= 0)
                r = sd_bus_call(c->bus, m, 120 * 1000000ULL, &error, &reply);
        sd_bus_message_unref(m);
        if (r < 0) {
                code = report_bus_error("create", &error, r);
                sd_bus_error_free(&error);
                return code;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                sd_bus_message_unref(reply);
                return EXIT_FAILED;
        }
        code = device_properties(c, path, &props);
        sd_bus_message_unref(reply);
        if (code)
                return code;
        warn_libvirt_status(props);
        if (c->opt.json)
                print_json(props);
        else {
                JsonObject *o = json_node_get_object(props);
                const char *vm = json_object_get_string_member_with_default(o, "vm", "");

                printf("%s: %s device%s%s, %s on %s\n",
                       json_object_get_string_member_with_default(o, "name", "?"), type,
                       *vm ? " of VM " : "", vm,
                       json_object_get_string_member_with_default(o, "state", "?"),
                       json_object_get_string_member_with_default(o, "socket_path", "?"));
        }
        return EXIT_OK;
}

static int by_name(Ctx *c, int argc, char **argv, const char *method, const char *done) {
        int ret = EXIT_OK;

        for (int i = 0; i < argc; i++) {
                int code = manager_call(c, argv[i], method, NULL, "s", argv[i]);

                if (code && !ret)
                        ret = code;
                else if (!code && done)
                        printf("%s: %s\n", argv[i], done);
        }
        return ret;
}

int verb_start(Ctx *c, int argc, char **argv) {
        return by_name(c, argc, argv, "StartDevice", "listening");
}

int verb_stop(Ctx *c, int argc, char **argv) {
        return by_name(c, argc, argv, "StopDevice", "stopped");
}

int verb_destroy(Ctx *c, int argc, char **argv) {
        return by_name(c, argc, argv, "DestroyDevice", "destroyed");
}
