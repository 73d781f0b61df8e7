/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the domain-XML editor.  Any input either is
 * refused with an error, or renders to XML that
 *   - renders to itself again, byte for byte, reported unchanged, and
 *   - lists exactly the devices it was given.
 * The input's length picks how many of two devices to render.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vlv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const VlvDevice devs[] = {
                { .name = "a", .socket_path = "/run/vfud/a.sock" },
                { .name = "b", .socket_path = "/run/vfud/b.sock" },
        };
        size_t n = size % 3;
        g_autofree char *xml = g_strndup((const char *)data, size);
        g_autofree char *out = NULL, *again = NULL;
        g_autoptr(GPtrArray) listed = NULL, found = NULL;
        gboolean changed = FALSE;

        found = vlv_domxml_list_devices(xml, NULL);
        if (!vlv_domxml_render(xml, devs, n, &out, &changed, NULL))
                return 0;
        if (!vlv_domxml_render(out, devs, n, &again, &changed, NULL))
                abort();        /* its own output refused */
        if (changed || strcmp(out, again) != 0)
                abort();        /* not idempotent */
        listed = vlv_domxml_list_devices(out, NULL);
        if (!listed || listed->len != n)
                abort();
        return 0;
}
