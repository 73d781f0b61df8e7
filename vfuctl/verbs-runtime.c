/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runtime changes: NVMe namespaces, virtio-net link state. */
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

int verb_namespace(Ctx *c, int argc, char **argv) {
        const char *op = argv[0], *name = argv[1];
        uint32_t nsid = 0;
        uint64_t size = c->opt.have_size ? c->opt.size : 0;
        int code;

        code = parse_nsid(argv[2], &nsid);
        if (code)
                return code;
        if (strcmp(op, "add") == 0) {
                if (argc > 3)
                        return usage_error("usage: vfuctl namespace add NAME NSID [--size SIZE] [--file PATH | --block DEVICE]");
                if (c->opt.file && c->opt.block)
                        return usage_error("give either --file or --block, not both");
                if (!c->opt.file && !c->opt.block && !c->opt.have_size)
                        return usage_error("a new namespace needs --size (a new image), --file or --block");
                code = device_call(c, name, "AddNamespace", "ust", nsid,
                                   c->opt.file ? c->opt.file : c->opt.block ? c->opt.block : "", size);
                if (!code)
                        printf("%s: namespace %u added\n", name, nsid);
                return code;
        }
        if (strcmp(op, "remove") == 0) {
                if (argc > 3)
                        return usage_error("usage: vfuctl namespace remove NAME NSID");
                code = device_call(c, name, "RemoveNamespace", "u", nsid);
                if (!code)
                        printf("%s: namespace %u removed\n", name, nsid);
                return code;
        }
        if (strcmp(op, "resize") == 0) {
                if (argc > 3) {
                        g_autoptr(GError) error = NULL;

                        if (!util_parse_size(argv[3], &size, &error))
                                return usage_error("%s", error->message);
                } else if (!c->opt.have_size)
                        return usage_error("usage: vfuctl namespace resize NAME NSID SIZE");
                code = device_call(c, name, "ResizeNamespace", "ut", nsid, size);
                if (!code)
                        printf("%s: namespace %u resized\n", name, nsid);
                return code;
        }
        return usage_error("unknown namespace operation '%s': use add, remove or resize", op);
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
