/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vlv-render: the domain-XML editor on the command line, for tests.
 *   vlv-render [--check-unchanged] FILE|- [NAME=SOCKET_PATH...]
 *       prints the rendered definition; with --check-unchanged prints
 *       nothing and exits 0 when FILE already is what vfu renders, 3 when
 *       it would change
 *   vlv-render --list FILE|-
 *       prints "NAME SOCKET_PATH BUS ADDR" per vfu device in FILE
 * Exit 1 with the error on stderr when rendering fails.
 */
#include <stdio.h>
#include <string.h>

#include "vlv.h"

static char *
read_input(const char *path, GError **error)
{
        char *text = NULL;

        if (strcmp(path, "-") == 0) {
                GString *s = g_string_new(NULL);
                char buf[4096];
                size_t n;

                while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
                        g_string_append_len(s, buf, (gssize)n);
                return g_string_free(s, FALSE);
        }
        if (!g_file_get_contents(path, &text, NULL, error))
                return NULL;
        return text;
}

int
main(int argc, char **argv)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *in = NULL, *out = NULL;
        g_autofree VlvDevice *devs = NULL;
        gboolean check = FALSE, list = FALSE, changed = FALSE;
        int i = 1;
        size_t n = 0;

        for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
                if (strcmp(argv[i], "--check-unchanged") == 0)
                        check = TRUE;
                else if (strcmp(argv[i], "--list") == 0)
                        list = TRUE;
                else {
                        fprintf(stderr, "vlv-render: unknown option %s\n", argv[i]);
                        return 2;
                }
        }
        if (i >= argc) {
                fprintf(stderr, "usage: vlv-render [--check-unchanged|--list] FILE|- [NAME=PATH...]\n");
                return 2;
        }
        if (!(in = read_input(argv[i++], &error))) {
                fprintf(stderr, "vlv-render: %s\n", error->message);
                return 1;
        }
        if (list) {
                g_autoptr(GPtrArray) found = vlv_domxml_list_devices(in, &error);

                if (!found) {
                        fprintf(stderr, "vlv-render: %s\n", error->message);
                        return 1;
                }
                for (guint k = 0; k < found->len; k++) {
                        VlvDomainDevice *d = found->pdata[k];

                        printf("%s %s %s %s\n", d->name, d->socket_path ? d->socket_path : "-",
                               d->bus ? d->bus : "-", d->addr ? d->addr : "-");
                }
                return 0;
        }
        devs = g_new0(VlvDevice, (size_t)(argc - i) + 1);
        for (; i < argc; i++) {
                char *eq = strchr(argv[i], '=');

                if (!eq) {
                        fprintf(stderr, "vlv-render: expected NAME=SOCKET_PATH, got %s\n", argv[i]);
                        return 2;
                }
                *eq = '\0';
                devs[n].name = argv[i];
                devs[n].socket_path = eq + 1;
                n++;
        }
        if (!vlv_domxml_render(in, devs, n, &out, &changed, &error)) {
                fprintf(stderr, "vlv-render: %s\n", error->message);
                return 1;
        }
        if (check)
                return changed ? 3 : 0;
        fputs(out, stdout);
        return 0;
}
