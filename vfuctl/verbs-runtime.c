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
