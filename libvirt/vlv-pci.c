/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Where vfu's devices sit on the guest's PCI topology (vlv.h, "PCI
 * layout"): controllers that are themselves qemu:commandline devices, so
 * libvirt's address allocator never sees an empty slot it could hand to
 * one of its own devices.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <json-glib/json-glib.h>

#include "vlv-private.h"

/* A chassis number for vfu's controllers.  q35 ports pair it with
 * physical slot numbers libvirt never sets (it leaves `slot` at 0), so
 * (chassis, slot) cannot clash; the pc bridge's chassis_nr is checked
 * against the definition's own pci-bridges. */
#define VLV_CHASSIS    254
#define VLV_PORT_SLOT0 200

static const VlvLayout layout_q35 = {
        .kind = VLV_LAYOUT_Q35,
        .machine = "q35",
        .root_bus = "pcie.0",
        .root_slot = 0x1c,
        .n_places = VLV_MAX_DEVICES_Q35,
};

static const VlvLayout layout_pc = {
        .kind = VLV_LAYOUT_PC,
        .machine = "pc (i440fx)",
        .root_bus = "pci.0",
        .root_slot = 0x1f,
        .n_places = VLV_MAX_DEVICES_PC,
};

const VlvLayout *vlv_layout_for(xmlNode *root, GError **error) {
        xmlNode *os = vlv_xml_child(root, "os");
        xmlNode *type = os ? vlv_xml_child(os, "type") : NULL;
        g_autofree char *arch = type ? (char *) xmlGetProp(type, BAD_CAST "arch") : NULL;
        g_autofree char *machine = type ? (char *) xmlGetProp(type, BAD_CAST "machine") : NULL;

        if (arch && strcmp(arch, "x86_64") != 0 && strcmp(arch, "i686") != 0) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_UNSUPPORTED,
                            "architecture '%s' is not supported for vfio-user "
                            "devices; vfu places them on x86 q35 and pc machines",
                            arch);
                return NULL;
        }
        /* No machine attribute: QEMU's (and so libvirt's) x86 default, pc.
         * Definitions read back from libvirt always name the machine. */
        if (!machine)
                return &layout_pc;
        if (strstr(machine, "q35"))
                return &layout_q35;
        if (strcmp(machine, "pc") == 0 || g_str_has_prefix(machine, "pc-i440fx") ||
            (g_str_has_prefix(machine, "pc-") && g_ascii_isdigit(machine[3])))
                return &layout_pc;
        g_set_error(error, VLV_ERROR, VLV_ERROR_UNSUPPORTED,
                    "machine type '%s' is not supported for vfio-user devices; "
                    "use a q35 or pc (i440fx) machine",
                    machine);
        return NULL;
}

static gboolean parse_number(const char *s, unsigned long *out) {
        char *end = NULL;

        if (!s || !*s)
                return FALSE;
        errno = 0;
        *out = strtoul(s, &end, 0);
        return errno == 0 && end && *end == '\0';
}

/* "<controller type='pci' index='3' model='pcie-root-port'>" and the like */
static char *describe_element(xmlNode *n) {
        static const char *const attrs[] = { "type", "index", "model", "device", "id" };
        GString *s = g_string_new("<");

        g_string_append(s, (const char *) n->name);
        for (size_t i = 0; i < G_N_ELEMENTS(attrs); i++) {
                g_autofree char *v = (char *) xmlGetProp(n, BAD_CAST attrs[i]);

                if (v)
                        g_string_append_printf(s, " %s='%s'", attrs[i], v);
        }
        g_string_append_c(s, '>');
        return g_string_free(s, FALSE);
}

static gboolean check_addresses(const VlvLayout *layout, xmlNode *devices, const char *vm, GError **error) {
        for (xmlNode *dev = devices->children; dev; dev = dev->next) {
                if (dev->type != XML_ELEMENT_NODE)
                        continue;
                for (xmlNode *a = dev->children; a; a = a->next) {
                        g_autofree char *type = NULL, *domain = NULL, *bus = NULL, *slot = NULL;
                        g_autofree char *what = NULL;
                        unsigned long d = 0, b, s;

                        if (a->type != XML_ELEMENT_NODE || a->ns || strcmp((const char *) a->name, "address") != 0)
                                continue;
                        type = (char *) xmlGetProp(a, BAD_CAST "type");
                        if (!type || strcmp(type, "pci") != 0)
                                continue;
                        domain = (char *) xmlGetProp(a, BAD_CAST "domain");
                        bus = (char *) xmlGetProp(a, BAD_CAST "bus");
                        slot = (char *) xmlGetProp(a, BAD_CAST "slot");
                        if ((domain && !parse_number(domain, &d)) || !parse_number(bus, &b) || !parse_number(slot, &s))
                                continue; /* libvirt rejects it anyway */
                        if (d != 0 || b != 0 || s != layout->root_slot)
                                continue;
                        what = describe_element(dev);
                        g_set_error(error, VLV_ERROR, VLV_ERROR_ADDRESS,
                                    "VM '%s': %s is at PCI slot 00:%02x, which vfu "
                                    "reserves for its vfio-user %s on %s machines; "
                                    "move that device to another slot (or drop its "
                                    "<address> so libvirt picks one) and retry",
                                    vm, what, layout->root_slot, layout->kind == VLV_LAYOUT_Q35 ? "ports" : "bridge",
                                    layout->machine);
                        return FALSE;
                }
        }
        return TRUE;
}

static gboolean check_chassis(const VlvLayout *layout, xmlNode *devices, const char *vm, GError **error) {
        if (layout->kind != VLV_LAYOUT_PC)
                return TRUE;
        for (xmlNode *c = devices->children; c; c = c->next) {
                g_autofree char *type = NULL, *model = NULL, *index = NULL, *nr = NULL;
                xmlNode *target;
                unsigned long chassis;

                if (c->type != XML_ELEMENT_NODE || c->ns || strcmp((const char *) c->name, "controller") != 0)
                        continue;
                type = (char *) xmlGetProp(c, BAD_CAST "type");
                model = (char *) xmlGetProp(c, BAD_CAST "model");
                if (!type || strcmp(type, "pci") != 0 || !model || strcmp(model, "pci-bridge") != 0)
                        continue;
                target = vlv_xml_child(c, "target");
                nr = target ? (char *) xmlGetProp(target, BAD_CAST "chassisNr") : NULL;
                index = (char *) xmlGetProp(c, BAD_CAST "index");
                /* libvirt's default chassisNr is the controller index */
                if (!parse_number(nr ? nr : index, &chassis) || chassis != VLV_CHASSIS)
                        continue;
                g_set_error(error, VLV_ERROR, VLV_ERROR_ADDRESS,
                            "VM '%s': pci-bridge index='%s' uses chassis number %d, "
                            "which vfu's bridge needs; give that bridge another "
                            "<target chassisNr='…'/> and retry",
                            vm, index ? index : "?", VLV_CHASSIS);
                return FALSE;
        }
        return TRUE;
}

gboolean vlv_layout_check_free(const VlvLayout *layout, xmlNode *root, const char *vm, GError **error) {
        xmlNode *devices = vlv_xml_child(root, "devices");

        if (!devices)
                return TRUE;
        return check_addresses(layout, devices, vm, error) && check_chassis(layout, devices, vm, error);
}

guint vlv_layout_n_controllers(const VlvLayout *layout) {
        return layout->kind == VLV_LAYOUT_Q35 ? layout->n_places : 1;
}

static char *to_json(JsonBuilder *b) {
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = json_builder_get_root(b);

        json_generator_set_root(gen, root);
        return json_generator_to_data(gen, NULL);
}

static void add_str(JsonBuilder *b, const char *k, const char *v) {
        json_builder_set_member_name(b, k);
        json_builder_add_string_value(b, v);
}

static void add_int(JsonBuilder *b, const char *k, gint64 v) {
        json_builder_set_member_name(b, k);
        json_builder_add_int_value(b, v);
}

char *vlv_layout_controller_json(const VlvLayout *layout, guint i) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autofree char *id = NULL, *addr = NULL;

        json_builder_begin_object(b);
        if (layout->kind == VLV_LAYOUT_Q35) {
                /* One multifunction slot of hot-plug capable root ports; no
                 * I/O window reserved (vfu devices have no I/O BARs, and
                 * the guest's 64 KiB of port space is scarce). */
                id = g_strdup_printf(VLV_CTRL_PREFIX "port%u", i);
                addr = g_strdup_printf("0x%x.0x%x", layout->root_slot, i);
                add_str(b, "driver", "pcie-root-port");
                add_str(b, "id", id);
                add_str(b, "bus", layout->root_bus);
                add_str(b, "addr", addr);
                if (i == 0) {
                        json_builder_set_member_name(b, "multifunction");
                        json_builder_add_boolean_value(b, TRUE);
                }
                add_int(b, "chassis", VLV_CHASSIS);
                add_int(b, "slot", VLV_PORT_SLOT0 + i);
                add_int(b, "io-reserve", 0);
        } else {
                addr = g_strdup_printf("0x%x", layout->root_slot);
                add_str(b, "driver", "pci-bridge");
                add_str(b, "id", VLV_CTRL_PREFIX "bridge");
                add_str(b, "bus", layout->root_bus);
                add_str(b, "addr", addr);
                add_int(b, "chassis_nr", VLV_CHASSIS);
                add_int(b, "io-reserve", 0);
        }
        json_builder_end_object(b);
        return to_json(b);
}

void vlv_layout_place(const VlvLayout *layout, guint place, char **bus, char **addr) {
        if (layout->kind == VLV_LAYOUT_Q35) {
                *bus = g_strdup_printf(VLV_CTRL_PREFIX "port%u", place);
                *addr = g_strdup("0x0");
        } else {
                /* pci-bridge slot 0 is not usable (SHPC), as libvirt knows */
                *bus = g_strdup(VLV_CTRL_PREFIX "bridge");
                *addr = g_strdup_printf("0x%x", place + 1);
        }
}

int vlv_layout_place_of(const VlvLayout *layout, const char *bus, const char *addr) {
        unsigned long n, slot;

        if (!bus || !addr || !parse_number(addr, &slot))
                return -1;
        if (layout->kind == VLV_LAYOUT_Q35) {
                const char *p = VLV_CTRL_PREFIX "port";

                if (!g_str_has_prefix(bus, p) || slot != 0 || !g_ascii_isdigit(bus[strlen(p)]) ||
                    !parse_number(bus + strlen(p), &n) || n >= layout->n_places)
                        return -1;
                return (int) n;
        }
        if (strcmp(bus, VLV_CTRL_PREFIX "bridge") != 0 || slot < 1 || slot > layout->n_places)
                return -1;
        return (int) slot - 1;
}
