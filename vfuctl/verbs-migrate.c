/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The migrate verb: MigrateDevice / MigrateVm, with progress while it runs. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "common/bus-names.h"
#include "common/util.h"
#include "vfuctl.h"

#define MIGRATE_TIMEOUT_USEC (24ull * 3600 * 1000000)
#define LINE_INTERVAL_USEC (1000 * 1000)

/*
 * Progress comes from the devices' PropertiesChanged (MigrationState,
 * MigrationProgress, MigrationSocket): on a terminal one line rewritten in
 * place, with --json one JSON object per change, otherwise a line per
 * device at most every second and at each change of state.  Ctrl-C asks
 * vfud to cancel (CancelMigration) and waits for the migration to roll
 * back; a second Ctrl-C stops waiting.
 */
typedef struct MigrateDevProgress {
        char *name, *path;
        char *state, *socket;
        uint64_t bytes, total, rate, remaining;
        bool has_remaining;
        uint64_t printed_at;            /* CLOCK_MONOTONIC µs of the last line */
        char *printed_state;
} MigrateDevProgress;

typedef struct MigrateCall {
        Ctx *c;
        bool done;
        int code;
        char *domain_note;              /* MigrateVm: what became of the libvirt domain */
        GPtrArray *devs;                /* MigrateDevProgress */
        bool tty, line_open;            /* a terminal line is being rewritten */
} MigrateCall;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
        interrupted++;
}

static void dev_progress_free(MigrateDevProgress *p) {
        g_free(p->name);
        g_free(p->path);
        g_free(p->state);
        g_free(p->socket);
        g_free(p->printed_state);
        g_free(p);
}

static void line_end(MigrateCall *mc) {
        if (mc->line_open) {
                fputc('\n', stdout);
                mc->line_open = false;
        }
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        MigrateCall *mc = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *uri, *note;

        line_end(mc);
        fflush(stdout);
        mc->done = true;
        mc->code = e ? report_bus_error("migrate", e, -sd_bus_message_get_errno(reply)) : EXIT_OK;
        if (!e && sd_bus_message_read(reply, "ss", &uri, &note) > 0 && *note)
                mc->domain_note = g_strdup(note);
        return 0;
}

static char *progress_line(MigrateCall *mc, MigrateDevProgress *p) {
        if (g_strcmp0(p->state, "waiting") == 0)
                return g_strdup_printf("%s: live, waiting for the VMM to move its state to %s (socket there: %s)",
                                       p->name, mc->c->opt.to, p->socket ? p->socket : "");
        if (g_strcmp0(p->state, "transferring") == 0) {
                g_autofree char *b = util_format_size(p->bytes);

                return g_strdup_printf("%s: live, the VMM is moving its state (%s read)", p->name, b);
        }
        if (g_strcmp0(p->state, "copying") == 0 && p->total) {
                g_autofree char *b = util_format_size(p->bytes), *t = util_format_size(p->total);
                g_autofree char *r = util_format_size(p->rate);
                g_autofree char *eta = p->has_remaining ?
                                       g_strdup_printf(", %" G_GUINT64_FORMAT " s left", p->remaining) : g_strdup("");

                return g_strdup_printf("%s: copied %s of %s (%u%%), %s/s%s", p->name, b, t,
                                       (unsigned) (p->bytes * 100 / p->total), r, eta);
        }
        if (p->state && *p->state)
                return g_strdup_printf("%s: %s", p->name, p->state);
        return NULL;
}

static void progress_show(MigrateCall *mc, MigrateDevProgress *p) {
        bool new_state = g_strcmp0(p->state, p->printed_state) != 0;
        uint64_t now = g_get_monotonic_time();
        g_autofree char *line = NULL;

        if (mc->c->opt.json) {
                g_autoptr(JsonBuilder) b = json_builder_new();
                g_autoptr(JsonNode) n = NULL;

                json_builder_begin_object(b);
                json_builder_set_member_name(b, "device");
                json_builder_add_string_value(b, p->name);
                json_builder_set_member_name(b, "state");
                json_builder_add_string_value(b, p->state ? p->state : "");
                json_builder_set_member_name(b, "bytes");
                json_builder_add_int_value(b, (gint64) p->bytes);
                json_builder_set_member_name(b, "total");
                json_builder_add_int_value(b, (gint64) p->total);
                json_builder_set_member_name(b, "rate");
                json_builder_add_int_value(b, (gint64) p->rate);
                if (p->has_remaining) {
                        json_builder_set_member_name(b, "remaining");
                        json_builder_add_int_value(b, (gint64) p->remaining);
                }
                if (p->socket && *p->socket) {
                        json_builder_set_member_name(b, "socket");
                        json_builder_add_string_value(b, p->socket);
                }
                json_builder_end_object(b);
                n = json_builder_get_root(b);
                line = json_to_string(n, FALSE);
                printf("%s\n", line);
        } else {
                line = progress_line(mc, p);
                if (!line)
                        return;
                if (mc->tty) {
                        printf("\r\033[K%s", line);
                        mc->line_open = true;
                } else if (new_state || now - p->printed_at >= LINE_INTERVAL_USEC)
                        printf("%s\n", line);
                else
                        return;
        }
        fflush(stdout);
        p->printed_at = now;
        g_free(p->printed_state);
        p->printed_state = g_strdup(p->state);
}

static int read_progress(sd_bus_message *m, MigrateDevProgress *p) {
        const char *key;
        uint64_t v;
        int r;

        p->has_remaining = false;
        r = sd_bus_message_enter_container(m, 'a', "{st}");
        while (r >= 0 && (r = sd_bus_message_read(m, "{st}", &key, &v)) > 0) {
                if (strcmp(key, "bytes") == 0)
                        p->bytes = v;
                else if (strcmp(key, "total") == 0)
                        p->total = v;
                else if (strcmp(key, "rate") == 0)
                        p->rate = v;
                else if (strcmp(key, "remaining") == 0) {
                        p->remaining = v;
                        p->has_remaining = true;
                }
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

/* PropertiesChanged of one device: its figures, then what to show. */
static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        MigrateCall *mc = userdata;
        MigrateDevProgress *p = NULL;
        const char *iface, *path = sd_bus_message_get_path(m);
        bool changed = false;
        int r;

        for (guint i = 0; path && i < mc->devs->len; i++)
                if (strcmp(((MigrateDevProgress *) mc->devs->pdata[i])->path, path) == 0)
                        p = mc->devs->pdata[i];
        if (!p || mc->done)
                return 0;
        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || strcmp(iface, VFUD_DEVICE_IFACE) != 0)
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *v;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        break;
                if (strcmp(key, "MigrationProgress") == 0) {
                        r = sd_bus_message_enter_container(m, 'v', "a{st}");
                        if (r >= 0)
                                r = read_progress(m, p);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                        changed = true;
                } else if (strcmp(key, "MigrationState") == 0 || strcmp(key, "MigrationSocket") == 0) {
                        r = sd_bus_message_read(m, "v", "s", &v);
                        if (r >= 0 && strcmp(key, "MigrationState") == 0) {
                                g_free(p->state);
                                p->state = g_strdup(v);
                        } else if (r >= 0) {
                                g_free(p->socket);
                                p->socket = g_strdup(v);
                        }
                        changed = true;
                } else
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (changed)
                progress_show(mc, p);
        return 0;
}

/* Ctrl-C: ask vfud to cancel; the migration's own reply says how it ended. */
static void request_cancel(MigrateCall *mc, const char *what) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        line_end(mc);
        fprintf(stderr, "vfuctl: migrate: cancelling the migration of %s (Ctrl-C again to stop waiting)\n", what);
        r = sd_bus_call_method(mc->c->bus, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, "CancelMigration", &e,
                               NULL, "s", what);
        if (r < 0)
                fprintf(stderr, "vfuctl: migrate: cannot cancel: %s\n", e.message ? e.message : g_strerror(-r));
        sd_bus_error_free(&e);
}

static void slot_unref(gpointer s) {
        sd_bus_slot_unref(s);
}

int verb_migrate(Ctx *c, int argc, char **argv) {
        g_autoptr(GPtrArray) devs = g_ptr_array_new_with_free_func((GDestroyNotify) dev_progress_free);
        g_autoptr(GPtrArray) slots = g_ptr_array_new_with_free_func(slot_unref);
        struct sigaction sa = { .sa_handler = on_sigint }, old;
        sd_bus_message *m = NULL;
        sd_bus_slot *slot = NULL;
        MigrateCall mc = { .c = c, .devs = devs, .tty = isatty(STDOUT_FILENO) && !c->opt.json };
        int handled = 0;
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
                MigrateDevProgress *p = g_new0(MigrateDevProgress, 1);

                g_ptr_array_add(devs, p);
                p->name = g_strdup(what);
                code = device_path(c, what, &p->path);
                if (code)
                        return code;
        } else {
                sd_bus_message *reply = NULL;
                const char *name, *type, *vm, *state, *path;

                code = manager_call(c, what, "ListDevices", &reply, "s", what);
                if (code)
                        return code;
                if (sd_bus_message_enter_container(reply, 'a', "(sssso)") >= 0)
                        while (sd_bus_message_read(reply, "(sssso)", &name, &type, &vm, &state, &path) > 0) {
                                MigrateDevProgress *p = g_new0(MigrateDevProgress, 1);

                                p->name = g_strdup(name);
                                p->path = g_strdup(path);
                                g_ptr_array_add(devs, p);
                        }
                sd_bus_message_unref(reply);
        }
        for (guint i = 0; i < devs->len; i++) {
                sd_bus_slot *s = NULL;

                if (sd_bus_match_signal(c->bus, &s, VFUD_BUS_NAME, ((MigrateDevProgress *) devs->pdata[i])->path,
                                        "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                        on_properties_changed, &mc) >= 0)
                        g_ptr_array_add(slots, s);
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
        interrupted = 0;
        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, &old);
        while (!mc.done) {
                if (interrupted > handled) {
                        if (handled++ > 0)
                                break;
                        request_cancel(&mc, what);
                        continue;
                }
                r = sd_bus_process(c->bus, NULL);
                if (r < 0)
                        break;
                if (r > 0)
                        continue;
                r = sd_bus_wait(c->bus, UINT64_MAX);
                if (r == -EINTR)
                        r = 0;
                if (r < 0)
                        break;
        }
        (void) sigaction(SIGINT, &old, NULL);
        line_end(&mc);
        sd_bus_slot_unref(slot);
        if (!mc.done && handled > 1) {
                fprintf(stderr, "vfuctl: migrate: stopped waiting; the migration may still be rolling back "
                        "(vfuctl show %s)\n", what);
                return EXIT_FAILED;
        }
        if (r < 0 && !mc.done) {
                fprintf(stderr, "vfuctl: migrate: lost the connection to vfud: %s\n", g_strerror(-r));
                return EXIT_UNREACHABLE;
        }
        if (mc.code == EXIT_OK && c->opt.json) {
                for (guint i = 0; i < devs->len; i++)
                        printf("{\"device\": \"%s\", \"state\": \"migrated\"}\n",
                               ((MigrateDevProgress *) devs->pdata[i])->name);
                if (mc.domain_note) {
                        g_autoptr(JsonNode) n = json_node_new(JSON_NODE_VALUE);
                        g_autofree char *s = NULL;

                        json_node_set_string(n, mc.domain_note);
                        s = json_to_string(n, FALSE);
                        printf("{\"domain_note\": %s}\n", s);
                }
        } else if (mc.code == EXIT_OK) {
                for (guint i = 0; i < devs->len; i++)
                        printf("%s: migrated to %s\n", ((MigrateDevProgress *) devs->pdata[i])->name, c->opt.to);
                if (mc.domain_note)
                        printf("%s\n", mc.domain_note);
        }
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
