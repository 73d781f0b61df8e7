/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Verbs for libvirt VMs: xml, attach, detach. */
#include <stdio.h>
#include <string.h>

#include "common/bus-names.h"
#include "vfuctl.h"

int verb_xml(Ctx *c, int argc, char **argv) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        g_autofree char *input = NULL;
        const char *xml;
        int code, r;

        if (!c->opt.vm)
                return usage_error("xml needs --vm=VM");
        if (c->opt.domain_xml) {
                g_autoptr(GError) gerr = NULL;

                if (!g_file_get_contents(c->opt.domain_xml, &input, NULL, &gerr))
                        return usage_error("--domain-xml: %s", gerr->message);
        }
        code = ctx_bus(c);
        if (code)
                return code;
        r = sd_bus_message_new_method_call(c->bus, &m, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE,
                                           "GetVmXml");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", c->opt.vm);
        if (r >= 0)
                r = input ? sd_bus_message_append(m, "a{sv}", 1, "domain-xml", "s", input)
                          : sd_bus_message_append(m, "a{sv}", 0);
        if (r >= 0)
                r = sd_bus_call(c->bus, m, 120 * 1000000ULL, &error, &reply);
        sd_bus_message_unref(m);
        if (r < 0) {
                g_autofree char *what = g_strdup_printf("VM %s", c->opt.vm);

                code = report_bus_error(what, &error, r);
                sd_bus_error_free(&error);
                return code;
        }
        r = sd_bus_message_read(reply, "s", &xml);
        if (r >= 0)
                fputs(xml, stdout);
        sd_bus_message_unref(reply);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

int verb_attach(Ctx *c, int argc, char **argv) {
        int code;

        if (!c->opt.vm)
                return usage_error("attach needs --vm=VM");
        code = manager_call(c, argv[0], "AttachDevice", NULL, "ss", argv[0], c->opt.vm);
        if (!code)
                printf("%s: attached to VM %s\n", argv[0], c->opt.vm);
        return code;
}

int verb_detach(Ctx *c, int argc, char **argv) {
        int ret = EXIT_OK;

        for (int i = 0; i < argc; i++) {
                int code = manager_call(c, argv[i], "DetachDevice", NULL, "s", argv[i]);

                if (code && !ret)
                        ret = code;
                else if (!code)
                        printf("%s: detached\n", argv[i]);
        }
        return ret;
}

void warn_libvirt_status(JsonNode *props) {
        JsonObject *o = json_node_get_object(props);
        const char *status = json_object_get_string_member_with_default(o, "libvirt_status", "");

        if (strcmp(status, "failed") == 0)
                fprintf(stderr, "vfuctl: warning: VM %s's libvirt definition was not updated: %s\n",
                        json_object_get_string_member_with_default(o, "vm", "?"),
                        json_object_get_string_member_with_default(o, "libvirt_error", "?"));
}
