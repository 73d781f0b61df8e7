/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runtime changes: NVMe namespaces, virtio-net link state, I/O limits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bus-names.h"
#include "common/util.h"
#include "vfuctl.h"

static int device_call(Ctx *c, const char *name, const char *method, const char *types, ...) {
        g_autofree char *path = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        va_list ap;
        int code, r;

        code = device_path(c, name, &path);
        if (code)
                return code;
        r = sd_bus_message_new_method_call(c->bus, &m, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, method);
        if (r >= 0) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call(c->bus, m, 60 * 1000000ULL, &error, &reply);
        sd_bus_message_unref(m);
        sd_bus_message_unref(reply);
        if (r < 0) {
                code = report_bus_error(name, &error, r);
                sd_bus_error_free(&error);
                return code;
        }
        return EXIT_OK;
}

static int parse_nsid(const char *s, uint32_t *ret) {
        char *end = NULL;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || !*s || *end || v == 0 || v > UINT32_MAX)
                return usage_error("invalid namespace id '%s': expected a number from 1", s);
        *ret = (uint32_t) v;
        return EXIT_OK;
}

/* The SIZE argument or --size, given once: *have says whether there is one.  EXIT_OK or an exit code. */
static int namespace_size(Ctx *c, int argc, char **argv, uint64_t *ret, bool *have) {
        g_autoptr(GError) error = NULL;

        *have = c->opt.have_size;
        *ret = c->opt.have_size ? c->opt.size : 0;
        if (argc < 4)
                return EXIT_OK;
        if (c->opt.have_size)
                return usage_error("give the size once: as SIZE or as --size");
        if (!util_parse_size(argv[3], ret, &error))
                return usage_error("%s", error->message);
        *have = true;
        return EXIT_OK;
}

int verb_namespace(Ctx *c, int argc, char **argv) {
        const char *op = argv[0], *name = argv[1];
        uint32_t nsid = 0;
        uint64_t size = 0;
        bool have_size = false;
        int code;

        if (strcmp(op, "add") != 0 && strcmp(op, "remove") != 0 && strcmp(op, "resize") != 0)
                return usage_error("unknown namespace operation '%s': use add, remove or resize", op);
        code = parse_nsid(argv[2], &nsid);
        if (code)
                return code;
        if (strcmp(op, "remove") == 0) {
                if (argc > 3 || c->opt.have_size || c->opt.file || c->opt.block)
                        return usage_error("usage: vfuctl namespace remove NAME NSID");
                code = device_call(c, name, "RemoveNamespace", "u", nsid);
                if (!code)
                        printf("%s: namespace %u removed\n", name, nsid);
                return code;
        }
        code = namespace_size(c, argc, argv, &size, &have_size);
        if (code)
                return code;
        if (strcmp(op, "add") == 0) {
                if (c->opt.file && c->opt.block)
                        return usage_error("give either --file or --block, not both");
                if (!c->opt.file && !c->opt.block && !have_size)
                        return usage_error("usage: vfuctl namespace add NAME NSID SIZE (a new image), "
                                           "or NAME NSID --file PATH | --block DEVICE");
                code = device_call(c, name, "AddNamespace", "ust", nsid,
                                   c->opt.file ? c->opt.file : c->opt.block ? c->opt.block : "", size);
                if (!code)
                        printf("%s: namespace %u added\n", name, nsid);
                return code;
        }
        if (c->opt.file || c->opt.block)
                return usage_error("--file and --block apply to namespace add");
        if (!have_size)
                return usage_error("usage: vfuctl namespace resize NAME NSID SIZE");
        code = device_call(c, name, "ResizeNamespace", "ut", nsid, size);
        if (!code)
                printf("%s: namespace %u resized\n", name, nsid);
        return code;
}

int verb_link(Ctx *c, int argc, char **argv) {
        const char *state = argv[0], *name = argv[1];
        int up, code;

        if (strcmp(state, "up") == 0)
                up = 1;
        else if (strcmp(state, "down") == 0)
                up = 0;
        else
                return usage_error("usage: vfuctl link up|down NAME");
        code = device_call(c, name, "SetLink", "b", up);
        if (!code)
                printf("%s: link %s\n", name, state);
        return code;
}

/* Append the limit options as a{sv} (integers as t). */
int append_limits(sd_bus_message *m, JsonObject *limits) {
        g_autoptr(GList) members = limits ? json_object_get_members(limits) : NULL;
        int r = 0;

        for (GList *l = members; r >= 0 && l; l = l->next)
                r = sd_bus_message_append(m, "{sv}", (const char *) l->data, "t",
                                          (uint64_t) json_object_get_int_member(limits, l->data));
        return r;
}

/* A device's limits as "target: option=value ...", one target a line; "none" without any. */
void print_limits(JsonObject *props) {
        JsonNode *n = json_object_get_member(props, "limits");
        JsonObject *o = n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
        g_autoptr(GList) targets = o ? g_list_sort(json_object_get_members(o), (GCompareFunc) strcmp) : NULL;
        bool first = true;

        for (GList *t = targets; t; t = t->next) {
                JsonObject *l = json_object_get_object_member(o, t->data);
                g_autoptr(GList) keys = g_list_sort(json_object_get_members(l), (GCompareFunc) strcmp);
                g_autoptr(GString) s = g_string_new(t->data);

                g_string_append_c(s, ':');
                for (GList *k = keys; k; k = k->next) {
                        /* the keys are snake_case (json_key): shown as the options are spelled */
                        g_autofree char *opt = g_strdelimit(g_strdup(k->data), "_", '-');

                        g_string_append_printf(s, " %s=%" G_GINT64_FORMAT, opt,
                                               json_object_get_int_member(l, k->data));
                }
                printf("%12s%s %s\n", first ? "Limits" : "", first ? ":" : " ", s->str);
                first = false;
        }
        if (first)
                printf("%12s: %s\n", "Limits", "none");
}

int verb_limit(Ctx *c, int argc, char **argv) {
        const char *name = argv[0];
        g_autofree char *path = NULL;
        g_autoptr(JsonNode) props = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL;
        int code, r;

        code = device_path(c, name, &path);
        if (code)
                return code;
        if (c->opt.limits) {
                r = sd_bus_message_new_method_call(c->bus, &m, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, "SetLimits");
                if (r >= 0)
                        r = sd_bus_message_append(m, "u", c->opt.have_nsid ? c->opt.nsid : 0);
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'a', "{sv}");
                if (r >= 0)
                        r = append_limits(m, c->opt.limits);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_call(c->bus, m, 60 * 1000000ULL, &error, NULL);
                sd_bus_message_unref(m);
                if (r < 0) {
                        code = report_bus_error(name, &error, r);
                        sd_bus_error_free(&error);
                        return code;
                }
        } else if (c->opt.have_nsid)
                return usage_error("--namespace selects whose limits change: give limit options too");
        code = device_properties(c, path, &props);
        if (code)
                return code;
        if (c->opt.json) {
                JsonObject *o = json_node_get_object(props);
                g_autoptr(JsonNode) out = json_node_new(JSON_NODE_OBJECT);
                JsonObject *res = json_object_new();

                json_object_set_string_member(res, "name", name);
                json_object_set_member(res, "limits", json_node_copy(json_object_get_member(o, "limits")));
                json_node_take_object(out, res);
                print_json(out);
                return EXIT_OK;
        }
        printf("%s\n", name);
        print_limits(json_node_get_object(props));
        return EXIT_OK;
}
