/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Golden files for the domain-XML editor.  For every golden/<case>.in.xml:
 *   golden/<case>.devices   the device set, one "NAME SOCKET_PATH" a line
 *   golden/<case>.out.xml   the expected definition, or
 *   golden/<case>.err       "CODE: message" of the expected refusal
 * Each case also checks idempotence (rendering the output again is
 * byte-identical and reports "unchanged") and that the output lists
 * exactly the devices it was given.
 * VFU_REGENERATE_GOLDEN=1 rewrites the expected files from the current
 * output instead of comparing; review the diff before committing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "vlv.h"

typedef struct {
        char *name;
        char *dir;
} Case;

static const char *const error_names[] = {
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

static gboolean
regenerate(void)
{
        return g_strcmp0(g_getenv("VFU_REGENERATE_GOLDEN"), "1") == 0;
}

static char *
case_file(const Case *c, const char *suffix)
{
        g_autofree char *base = g_strconcat(c->name, suffix, NULL);

        return g_build_filename(c->dir, base, NULL);
}

/* Devices from <case>.devices; the strings live in *storage. */
static VlvDevice *
load_devices(const Case *c, size_t *n, char ***storage)
{
        g_autofree char *path = case_file(c, ".devices");
        g_autofree char *text = NULL;
        g_auto(GStrv) lines = NULL;
        VlvDevice *devs;
        GPtrArray *keep = g_ptr_array_new();

        *n = 0;
        if (!g_file_get_contents(path, &text, NULL, NULL))
                text = g_strdup("");
        lines = g_strsplit(text, "\n", -1);
        devs = g_new0(VlvDevice, g_strv_length(lines) + 1);
        for (char **l = lines; *l; l++) {
                g_auto(GStrv) f = NULL;

                g_strstrip(*l);
                if (!**l || **l == '#')
                        continue;
                f = g_strsplit_set(*l, " \t", 2);
                assert_non_null(f[0]);
                assert_non_null(f[1]);
                g_ptr_array_add(keep, g_strdup(f[0]));
                g_ptr_array_add(keep, g_strdup(g_strstrip(f[1])));
                devs[*n].name = keep->pdata[keep->len - 2];
                devs[*n].socket_path = keep->pdata[keep->len - 1];
                (*n)++;
        }
        g_ptr_array_add(keep, NULL);
        *storage = (char **)g_ptr_array_free(keep, FALSE);
        return devs;
}

static void
write_or_fail(const char *path, const char *text)
{
        g_autoptr(GError) error = NULL;

        if (!g_file_set_contents(path, text, -1, &error))
                fail_msg("cannot write %s: %s", path, error->message);
}

static void
check_lists(const char *xml, const VlvDevice *devs, size_t n)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) found = vlv_domxml_list_devices(xml, &error);

        assert_non_null(found);
        assert_int_equal(found->len, n);
        for (size_t i = 0; i < n; i++) {
                gboolean seen = FALSE;

                for (guint k = 0; k < found->len; k++) {
                        VlvDomainDevice *d = found->pdata[k];

                        if (strcmp(d->name, devs[i].name) == 0) {
                                assert_string_equal(d->socket_path, devs[i].socket_path);
                                assert_non_null(d->bus);
                                assert_non_null(d->addr);
                                seen = TRUE;
                        }
                }
                if (!seen)
                        fail_msg("device %s missing from the output", devs[i].name);
        }
}

static void
run_case(void **state)
{
        const Case *c = *state;
        g_autofree char *in_path = case_file(c, ".in.xml");
        g_autofree char *out_path = case_file(c, ".out.xml");
        g_autofree char *err_path = case_file(c, ".err");
        g_autofree char *in = NULL, *out = NULL, *again = NULL, *expected = NULL;
        g_autofree VlvDevice *devs = NULL;
        g_auto(GStrv) storage = NULL;
        g_autoptr(GError) error = NULL;
        gboolean changed = TRUE, ok;
        size_t n;

        assert_true(g_file_get_contents(in_path, &in, NULL, NULL));
        devs = load_devices(c, &n, &storage);
        ok = vlv_domxml_render(in, devs, n, &out, &changed, &error);

        if (!ok) {
                g_autofree char *got = g_strdup_printf("%s: %s\n",
                                                       error_names[error->code],
                                                       error->message);

                assert_true(error->domain == VLV_ERROR);
                assert_null(out);
                if (regenerate()) {
                        write_or_fail(err_path, got);
                        remove(out_path);
                        return;
                }
                if (!g_file_get_contents(err_path, &expected, NULL, NULL))
                        fail_msg("%s: unexpected refusal: %s", c->name, got);
                assert_string_equal(got, expected);
                return;
        }
        if (regenerate()) {
                write_or_fail(out_path, out);
                remove(err_path);
        } else {
                if (!g_file_get_contents(out_path, &expected, NULL, NULL))
                        fail_msg("%s: rendered, but the refusal %s was expected",
                                 c->name, err_path);
                assert_string_equal(out, expected);
        }

        /* idempotent: the output renders to itself, reported unchanged */
        assert_true(vlv_domxml_render(out, devs, n, &again, &changed, &error));
        assert_false(changed);
        assert_string_equal(again, out);
        check_lists(out, devs, n);
}

static int
by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(void)
{
        const char *dir = g_getenv("VLV_GOLDEN_DIR");
        g_autoptr(GDir) d = NULL;
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_autofree struct CMUnitTest *tests = NULL;
        g_autofree Case *cases = NULL;
        const char *entry;

        if (!dir) {
                fprintf(stderr, "VLV_GOLDEN_DIR is not set\n");
                return 1;
        }
        d = g_dir_open(dir, 0, NULL);
        if (!d) {
                fprintf(stderr, "cannot open %s\n", dir);
                return 1;
        }
        while ((entry = g_dir_read_name(d)))
                if (g_str_has_suffix(entry, ".in.xml"))
                        g_ptr_array_add(names, g_strndup(entry, strlen(entry) - strlen(".in.xml")));
        qsort(names->pdata, names->len, sizeof(char *), by_name);
        if (names->len == 0) {
                fprintf(stderr, "no golden cases in %s\n", dir);
                return 1;
        }
        tests = g_new0(struct CMUnitTest, names->len);
        cases = g_new0(Case, names->len);
        for (guint i = 0; i < names->len; i++) {
                cases[i].name = names->pdata[i];
                cases[i].dir = (char *)dir;
                tests[i].name = cases[i].name;
                tests[i].test_func = run_case;
                tests[i].initial_state = &cases[i];
        }
        return _cmocka_run_group_tests("domxml-golden", tests, names->len, NULL, NULL);
}
