/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Human tables and JSON output. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vfuctl.h"

void print_json(JsonNode *n) {
        g_autoptr(JsonGenerator) g = json_generator_new();
        g_autofree char *s = NULL;

        json_generator_set_root(g, n);
        json_generator_set_pretty(g, TRUE);
        json_generator_set_indent(g, 2);
        s = json_generator_to_data(g, NULL);
        printf("%s\n", s);
}

struct Table {
        guint columns;
        GPtrArray *rows;        /* GStrv */
};

Table *table_new(const char *first_header, ...) {
        Table *t = g_new0(Table, 1);
        GPtrArray *h = g_ptr_array_new();
        va_list ap;

        va_start(ap, first_header);
        for (const char *s = first_header; s; s = va_arg(ap, const char *))
                g_ptr_array_add(h, g_strdup(s));
        va_end(ap);
        t->columns = h->len;
        g_ptr_array_add(h, NULL);
        t->rows = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        g_ptr_array_add(t->rows, g_ptr_array_free(h, FALSE));
        return t;
}

void table_add_row(Table *t, const char *first_cell, ...) {
        char **row = g_new0(char *, t->columns + 1);
        va_list ap;
        const char *s = first_cell;

        va_start(ap, first_cell);
        for (guint i = 0; i < t->columns; i++) {
                row[i] = g_strdup(s && *s ? s : "-");
                s = va_arg(ap, const char *);
        }
        va_end(ap);
        g_ptr_array_add(t->rows, row);
}

void table_print(Table *t, bool legend) {
        g_autofree int *width = g_new0(int, t->columns);

        for (guint r = 0; r < t->rows->len; r++) {
                char **row = t->rows->pdata[r];

                for (guint i = 0; i < t->columns; i++)
                        width[i] = MAX(width[i], (int) g_utf8_strlen(row[i], -1));
        }
        for (guint r = legend ? 0 : 1; r < t->rows->len; r++) {
                char **row = t->rows->pdata[r];

                for (guint i = 0; i < t->columns; i++) {
                        if (i + 1 == t->columns)
                                printf("%s", row[i]);
                        else
                                printf("%-*s  ", width[i] + (int) (strlen(row[i]) - g_utf8_strlen(row[i], -1)), row[i]);
                }
                printf("\n");
        }
        if (legend && t->rows->len == 1)
                printf("(no devices)\n");
}

void table_free(Table *t) {
        if (!t)
                return;
        g_ptr_array_unref(t->rows);
        g_free(t);
}
