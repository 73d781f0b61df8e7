/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vlv-tool: vlv's libvirt calls on the command line, for the libvirtd
 * tests.  Errors print "vlv-tool: CODE: message" on stderr, exit 1.
 *   vlv-tool [--uri URI] apply VM [NAME=PATH...]
 *   vlv-tool [--uri URI] xml VM [NAME=PATH...]
 *   vlv-tool [--uri URI] attach VM NAME=PATH
 *   vlv-tool [--uri URI] detach VM NAME [TIMEOUT_MS [msi]]  (msi: the device has no MSI-X)
 *   vlv-tool [--uri URI] watch SECONDS PREFIX [NAME=PATH...]
 *       prints CONNECTED / DEFINED vm / UNDEFINED vm, one a line; applies
 *       the devices to every domain defined whose name starts with PREFIX
 *       and prints APPLIED vm (or FAILED vm CODE)
 *   vlv-tool [--uri URI] qmp-add VM JSON        device_add a raw JSON
 *   vlv-tool [--uri URI] qmp-del VM ID TIMEOUT_MS
 *   vlv-tool [--uri URI] qmp-has VM ID          prints yes/no
 */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "vlv-hotplug.h"

static const char *const code_names[] = {
        [VLV_ERROR_INVALID] = "INVALID",
        [VLV_ERROR_XML] = "XML",
        [VLV_ERROR_UNSUPPORTED] = "UNSUPPORTED",
        [VLV_ERROR_MEMORY] = "MEMORY",
        [VLV_ERROR_ADDRESS] = "ADDRESS",
        [VLV_ERROR_UNREACHABLE] = "UNREACHABLE",
        [VLV_ERROR_NO_VM] = "NO_VM",
        [VLV_ERROR_ATTACHED_ELSEWHERE] = "ATTACHED_ELSEWHERE",
        [VLV_ERROR_LIBVIRT] = "LIBVIRT",
        [VLV_ERROR_HOTPLUG] = "HOTPLUG",
        [VLV_ERROR_TIMEOUT] = "TIMEOUT",
        [VLV_ERROR_RUNNING] = "RUNNING",
};

static const char *uri;

static int
fail(GError *error)
{
        const char *code = "?";

        if (error->domain == VLV_ERROR && error->code >= 0 &&
            (size_t)error->code < G_N_ELEMENTS(code_names))
                code = code_names[error->code];
        fprintf(stderr, "vlv-tool: %s: %s\n", code, error->message);
        g_error_free(error);
        return 1;
}

static VlvDevice *
parse_devices(char **args, int n)
{
        VlvDevice *devs = g_new0(VlvDevice, (size_t)n + 1);

        for (int i = 0; i < n; i++) {
                char *eq = strchr(args[i], '=');

                if (!eq) {
                        fprintf(stderr, "vlv-tool: expected NAME=PATH, got %s\n", args[i]);
                        exit(2);
                }
                *eq = '\0';
                devs[i].name = args[i];
                devs[i].socket_path = eq + 1;
        }
        return devs;
}

typedef struct {
        const char *prefix;
        VlvDevice *devs;
        size_t n;
} WatchCtx;

static void
on_watch(VlvWatchEvent event, const char *name, const char *uuid, gpointer data)
{
        WatchCtx *ctx = data;
        GError *error = NULL;

        switch (event) {
        case VLV_WATCH_CONNECTED:
                printf("CONNECTED\n");
                break;
        case VLV_WATCH_UNDEFINED:
                printf("UNDEFINED %s\n", name);
                break;
        case VLV_WATCH_DEFINED:
                printf("DEFINED %s\n", name);
                if (!g_str_has_prefix(name, ctx->prefix))
                        break;
                fflush(stdout);
                if (vlv_domain_apply(uri, uuid, ctx->devs, ctx->n, &error))
                        printf("APPLIED %s\n", name);
                else {
                        printf("FAILED %s %s\n", name, error->message);
                        g_clear_error(&error);
                }
                break;
        }
        fflush(stdout);
}

int
main(int argc, char **argv)
{
        GError *error = NULL;
        g_autofree VlvDevice *devs = NULL;
        const char *verb;
        int i = 1;

        if (argc > 2 && strcmp(argv[1], "--uri") == 0) {
                uri = argv[2];
                i = 3;
        }
        if (argc - i < 2) {
                fprintf(stderr, "usage: see the comment at the top of vlv-tool.c\n");
                return 2;
        }
        verb = argv[i++];

        if (strcmp(verb, "apply") == 0 || strcmp(verb, "xml") == 0) {
                const char *vm = argv[i++];
                g_autofree char *xml = NULL;

                devs = parse_devices(argv + i, argc - i);
                if (strcmp(verb, "apply") == 0)
                        return vlv_domain_apply(uri, vm, devs, (size_t)(argc - i), &error) ? 0 : fail(error);
                if (!(xml = vlv_domain_get_xml(uri, vm, devs, (size_t)(argc - i), &error)))
                        return fail(error);
                fputs(xml, stdout);
                return 0;
        }
        if (strcmp(verb, "attach") == 0 && argc - i == 2) {
                devs = parse_devices(argv + i + 1, 1);
                return vlv_attach(uri, argv[i], devs, &error) ? 0 : fail(error);
        }
        if (strcmp(verb, "detach") == 0 && argc - i >= 2) {
                guint timeout = argc - i > 2 ? (guint)atoi(argv[i + 2]) : 5000;
                gboolean msix = !(argc - i > 3 && strcmp(argv[i + 3], "msi") == 0);

                return vlv_detach(uri, argv[i], argv[i + 1], msix, timeout, &error) ? 0 : fail(error);
        }
        if (strcmp(verb, "watch") == 0 && argc - i >= 2) {
                WatchCtx ctx = { .prefix = argv[i + 1] };
                int seconds = atoi(argv[i]);
                g_autoptr(VlvWatch) w = NULL;

                ctx.n = (size_t)(argc - i - 2);
                ctx.devs = devs = parse_devices(argv + i + 2, argc - i - 2);
                setvbuf(stdout, NULL, _IOLBF, 0);
                if (!(w = vlv_watch_new(uri, 200, on_watch, &ctx, &error)))
                        return fail(error);
                g_usleep((gulong)seconds * G_USEC_PER_SEC);
                return 0;
        }
        if (strncmp(verb, "qmp-", 4) == 0) {
                g_autoptr(virConnect) conn = NULL;
                g_autoptr(virDomain) dom = NULL;
                gboolean present = FALSE;

                if (!(conn = vlv_connect(uri, &error)) ||
                    !(dom = vlv_lookup(conn, uri, argv[i], &error)))
                        return fail(error);
                if (strcmp(verb, "qmp-add") == 0 && argc - i == 2)
                        return vlv_qmp_device_add(dom, argv[i + 1], &error) ? 0 : fail(error);
                if (strcmp(verb, "qmp-del") == 0 && argc - i == 3)
                        return vlv_qmp_device_del_wait(conn, dom, argv[i + 1],
                                                       (guint)atoi(argv[i + 2]), &error) ? 0 : fail(error);
                if (strcmp(verb, "qmp-has") == 0 && argc - i == 2) {
                        if (!vlv_qmp_has_device(dom, argv[i + 1], &present, &error))
                                return fail(error);
                        printf("%s\n", present ? "yes" : "no");
                        return 0;
                }
        }
        fprintf(stderr, "vlv-tool: bad arguments for %s\n", verb);
        return 2;
}
