/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vfuctl --help and vfuctl help VERB, from the tables in commands.c, within 80 columns. */
#include <stdio.h>
#include <string.h>

#include "vfuctl.h"

#define HELP_WIDTH 79           /* the last column text may use */
#define OPTION_COLUMN 26        /* where an option's help starts */
#define VERB_COLUMN 32          /* the widest synopsis a summary follows on the same line */

/* Print text from column col on, breaking lines between words; continuation lines start at indent. */
static void print_wrapped(int col, int indent, const char *text) {
        g_auto(GStrv) words = g_strsplit(text, " ", -1);
        bool first = true;

        for (char **w = words; *w; w++) {
                int len = (int) g_utf8_strlen(*w, -1);

                if (!**w)
                        continue;
                if (!first && col + 1 + len > HELP_WIDTH) {
                        printf("\n%*s", indent, "");
                        col = indent;
                } else if (!first) {
                        putchar(' ');
                        col++;
                }
                fputs(*w, stdout);
                col += len;
                first = false;
        }
        putchar('\n');
}

/* "  -H, --host=[USER@]HOST   Operate on ..." */
static void print_option(const OptionInfo *o, const char *help) {
        g_autofree char *head = g_strdup_printf("  %c%c%c --%s%s%s", o->short_name ? '-' : ' ',
                                                o->short_name ? o->short_name : ' ', o->short_name ? ',' : ' ',
                                                o->name, o->arg ? "=" : "", o->arg ? o->arg : "");
        int col = (int) strlen(head);

        fputs(head, stdout);
        if (col + 2 > OPTION_COLUMN) {
                printf("\n%*s", OPTION_COLUMN, "");
                col = OPTION_COLUMN;
        } else {
                printf("%*s", OPTION_COLUMN - col, "");
                col = OPTION_COLUMN;
        }
        print_wrapped(col, OPTION_COLUMN, help ? help : o->help);
}

void help_main(void) {
        int width = 0;

        printf("Usage: vfuctl [OPTIONS] COMMAND ...\n\n"
               "Manage vfio-user devices served by vfud.\n\nCommands:\n");
        for (size_t i = 0; i < verb_table_len; i++)
                width = MAX(width, (int) MIN(strlen(verb_table[i].name) + 1 + strlen(verb_table[i].args),
                                             VERB_COLUMN));
        for (size_t i = 0; i < verb_table_len; i++) {
                const Verb *v = &verb_table[i];
                g_autofree char *synopsis = g_strdup_printf("%s %s", v->name, v->args);

                if ((int) strlen(synopsis) > width)
                        printf("  %s\n%*s%s\n", synopsis, 2 + width + 2, "", v->summary);
                else
                        printf("  %-*s  %s\n", width, synopsis, v->summary);
        }
        printf("\nGlobal options:\n");
        for (size_t i = 0; i < option_table_len; i++)
                if (option_table[i].global)
                        print_option(&option_table[i], NULL);
        printf("\nA command's options: vfuctl help COMMAND, or vfuctl COMMAND --help.\nSee vfuctl(1).\n");
}

void help_verb(const Verb *v) {
        printf("Usage: vfuctl %s %s\n\n", v->name, v->args);
        print_wrapped(0, 0, v->description);
        if (v->options) {
                printf("\nOptions:\n");
                for (const VerbOption *o = v->options; o->name; o++)
                        print_option(option_find(o->name), o->help);
        }
        if (strcmp(v->name, "create") == 0 || strcmp(v->name, "limit") == 0) {
                printf("\nLimit options (vfuctl(1), I/O LIMITS):\n");
                for (const LimitOption *l = limit_options(); l->name; l++) {
                        OptionInfo o = { .name = l->name, .arg = "N", .help = l->help };

                        print_option(&o, NULL);
                }
        }
        printf("\nGlobal options (-H, --bus): see vfuctl --help.  See vfuctl(1).\n");
}

int verb_help(Ctx *c, int argc, char **argv) {
        const Verb *v;

        if (argc == 0) {
                help_main();
                return EXIT_OK;
        }
        v = verb_find(argv[0]);
        if (!v)
                return usage_error("unknown command '%s' (see vfuctl --help)", argv[0]);
        help_verb(v);
        return EXIT_OK;
}
