/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The migrate verb: MigrateDevice / MigrateVm, with progress while it runs. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "common/bus-names.h"
#include "common/util.h"
#include "vfuctl.h"

#define MIGRATE_TIMEOUT_USEC (24ull * 3600 * 1000000)
#define POLL_USEC (500 * 1000)

typedef struct MigrateCall {
        bool done;
        int code;
        char *domain_note;              /* MigrateVm: what became of the libvirt domain */
} MigrateCall;

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MigrateCall *mc = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *uri, *note;

        mc->done = true;
        mc->code = e ? report_bus_error("migrate", e, -sd_bus_message_get_errno(reply)) : EXIT_OK;
        if (!e && sd_bus_message_read(reply, "ss", &uri, &note) > 0 && *note)
                mc->domain_note = g_strdup(note);
        return 0;
}

/* One progress line per device whose figures changed since the last one. */
static void print_progress(Ctx *c, GPtrArray *paths, GPtrArray *names, GHashTable *last) {
        for (guint i = 0; i < paths->len; i++) {
                sd_bus_message *reply = NULL;
                uint64_t bytes = 0, total = 0, rate = 0, remaining = 0;
                const char *key;
                uint64_t v;
                g_autofree char *line = NULL;

                if (sd_bus_get_property(c->bus, VFUD_BUS_NAME, paths->pdata[i], VFUD_DEVICE_IFACE, "MigrationProgress",
                                        NULL, &reply, "a{st}") < 0)
                        continue;
                if (sd_bus_message_enter_container(reply, 'a', "{st}") >= 0)
                        while (sd_bus_message_read(reply, "{st}", &key, &v) > 0) {
                                if (strcmp(key, "bytes") == 0)
                                        bytes = v;
                                else if (strcmp(key, "total") == 0)
                                        total = v;
                                else if (strcmp(key, "rate") == 0)
                                        rate = v;
                                else if (strcmp(key, "remaining") == 0)
                                        remaining = v;
                        }
                sd_bus_message_unref(reply);
                if (total == 0) {
                        /* live: the VMM moves the state; show where it goes and how much it read */
                        g_autofree char *state = NULL, *sock = NULL;

                        if (sd_bus_get_property_string(c->bus, VFUD_BUS_NAME, paths->pdata[i], VFUD_DEVICE_IFACE,
                                                       "MigrationState", NULL, &state) < 0 ||
                            sd_bus_get_property_string(c->bus, VFUD_BUS_NAME, paths->pdata[i], VFUD_DEVICE_IFACE,
                                                       "MigrationSocket", NULL, &sock) < 0)
                                continue;
                        if (strcmp(state, "waiting") == 0)
                                line = g_strdup_printf("%s: live, waiting for the VMM to move its state to %s (socket there: %s)",
                                                       (char *) names->pdata[i], c->opt.to, sock);
                        else if (strcmp(state, "transferring") == 0) {
                                g_autofree char *b = util_format_size(bytes);

                                line = g_strdup_printf("%s: live, the VMM is moving its state (%s read)",
                                                       (char *) names->pdata[i], b);
                        } else
                                continue;
                } else {
                        g_autofree char *b = util_format_size(bytes), *t = util_format_size(total);
                        g_autofree char *r = util_format_size(rate);

                        line = g_strdup_printf("%s: copied %s of %s (%u%%), %s/s, %" G_GUINT64_FORMAT " s left",
                                               (char *) names->pdata[i], b, t, (unsigned) (bytes * 100 / total), r,
                                               remaining);
                }
                if (g_strcmp0(g_hash_table_lookup(last, paths->pdata[i]), line) != 0) {
                        printf("%s\n", line);
                        fflush(stdout);
                        g_hash_table_insert(last, paths->pdata[i], g_steal_pointer(&line));
                }
        }
}

int verb_migrate(Ctx *c, int argc, char **argv) {
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GHashTable) last = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
        sd_bus_message *m = NULL;
        sd_bus_slot *slot = NULL;
        MigrateCall mc = { 0 };
        const char *what;
        int code, r;

        if (!c->opt.to)
                return usage_error("migrate needs --to=DESTINATION (a bus address or [USER@]HOST)");
        if ((argc == 1) == (c->opt.vm != NULL))
                return usage_error("usage: vfuctl migrate NAME --to DESTINATION, or vfuctl migrate --vm VM --to DESTINATION");
        if (argc == 1 && c->opt.libvirt_uri)
                return usage_error("--libvirt-uri moves a VM's libvirt domain: use it with migrate --vm VM");
        what = argc == 1 ? argv[0] : c->opt.vm;
        code = ctx_bus(c);
        if (code)
                return code;

        /* The devices whose progress to show. */
        if (argc == 1) {
                char *p = NULL;

                code = device_path(c, what, &p);
                if (code)
                        return code;
                g_ptr_array_add(paths, p);
                g_ptr_array_add(names, g_strdup(what));
        } else {
                sd_bus_message *reply = NULL;
                const char *name, *type, *vm, *state, *p;

                code = manager_call(c, what, "ListDevices", &reply, "s", what);
                if (code)
                        return code;
                if (sd_bus_message_enter_container(reply, 'a', "(sssso)") >= 0)
                        while (sd_bus_message_read(reply, "(sssso)", &name, &type, &vm, &state, &p) > 0) {
                                g_ptr_array_add(paths, g_strdup(p));
                                g_ptr_array_add(names, g_strdup(name));
                        }
                sd_bus_message_unref(reply);
        }

        r = sd_bus_message_new_method_call(c->bus, &m, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE,
                                           argc == 1 ? "MigrateDevice" : "MigrateVm");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", what, c->opt.to);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && c->opt.storage)
                r = sd_bus_message_append(m, "{sv}", "storage", "s", c->opt.storage);
        if (r >= 0 && c->opt.timeout)
                r = sd_bus_message_append(m, "{sv}", "timeout", "u", (uint32_t) c->opt.timeout);
        if (r >= 0 && c->opt.libvirt_uri)
                r = sd_bus_message_append(m, "{sv}", "libvirt-uri", "s", c->opt.libvirt_uri);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_call_async(c->bus, &slot, m, on_reply, &mc, MIGRATE_TIMEOUT_USEC);
        sd_bus_message_unref(m);
        if (r < 0) {
                fprintf(stderr, "vfuctl: migrate: %s\n", g_strerror(-r));
                return EXIT_FAILED;
        }
        while (!mc.done) {
                r = sd_bus_process(c->bus, NULL);
                if (r < 0)
                        break;
                if (r > 0)
                        continue;
                r = sd_bus_wait(c->bus, POLL_USEC);
                if (r < 0)
                        break;
                if (!mc.done)
                        print_progress(c, paths, names, last);
        }
        sd_bus_slot_unref(slot);
        if (r < 0 && !mc.done) {
                fprintf(stderr, "vfuctl: migrate: lost the connection to vfud: %s\n", g_strerror(-r));
                return EXIT_UNREACHABLE;
        }
        if (mc.code == EXIT_OK)
                for (guint i = 0; i < names->len; i++)
                        printf("%s: migrated to %s\n", (char *) names->pdata[i], c->opt.to);
        if (mc.domain_note)
                printf("%s\n", mc.domain_note);
        g_free(mc.domain_note);
        return mc.code;
}

/*
 * The receiving end of an image copy over ssh: the source vfud runs
 * `ssh HOST vfuctl receive-image DEVICE NSID` with the stream on stdin;
 * this hands stdin to the local vfud (MigrationPeer.ReceiveImage) and waits
 * until the image is complete, checked and flushed.
 */
int verb_receive_image(Ctx *c, int argc, char **argv) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        uint64_t bytes, extents;
        sd_bus_message *m = NULL, *reply = NULL;
        char *end = NULL;
        unsigned long nsid;
        int code, r;

        if (c->opt.host)
                return usage_error("receive-image hands its standard input to the local vfud: it takes no -H");
        nsid = strtoul(argv[1], &end, 10);
        if (!*argv[1] || *end || nsid == 0 || nsid > UINT32_MAX)
                return usage_error("receive-image: '%s' is not a namespace id", argv[1]);
        code = ctx_bus(c);
        if (code)
                return code;
        r = sd_bus_message_new_method_call(c->bus, &m, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MIGRATION_PEER_IFACE,
                                           "ReceiveImage");
        if (r >= 0)
                r = sd_bus_message_append(m, "suh", argv[0], (uint32_t) nsid, STDIN_FILENO);
        if (r >= 0)
                r = sd_bus_call(c->bus, m, UINT64_MAX, &e, &reply);
        sd_bus_message_unref(m);
        if (r < 0) {
                code = report_bus_error("receive-image", &e, r);
                sd_bus_error_free(&e);
                return code;
        }
        if (sd_bus_message_read(reply, "tt", &bytes, &extents) > 0 && c->opt.json)
                printf("{\"data_bytes\": %" G_GUINT64_FORMAT ", \"extents\": %" G_GUINT64_FORMAT "}\n", bytes, extents);
        sd_bus_message_unref(reply);
        return EXIT_OK;
}
