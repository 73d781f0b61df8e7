/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Internal seams of the vlv library, shared between its files and tests. */
#pragma once

#include <libxml/tree.h>
#include "vlv.h"

#define VLV_QEMU_NS        "http://libvirt.org/schemas/domain/qemu/1.0"
#define VLV_QEMU_NS_PREFIX "qemu"
#define VLV_DEVICE_PREFIX  "vfu-" /* QEMU id of a device: vfu-<name> */
#define VLV_CTRL_PREFIX    "vfu." /* QEMU id of vfu's ports/bridge */
#define VLV_DRIVER         "vfio-user-pci"
#define VLV_NAME_MAX       64
#define VLV_SUN_PATH_MAX   108 /* sizeof(((struct sockaddr_un *)0)->sun_path) */

G_DEFINE_AUTOPTR_CLEANUP_FUNC(xmlDoc, xmlFreeDoc)

/* ------------------------------------------------------ vlv-device.c */

/* The compact JSON object for `-device` / QMP device_add of @dev at
 * @bus/@addr.  Returns a new string. */
char *vlv_device_json(const VlvDevice *dev, const char *bus, const char *addr);

/* An argument value that is a JSON object whose "id" starts with one of
 * vfu's prefixes: returns TRUE and fills what it finds (any out may be
 * NULL; strings are new).  FALSE for anything else, never an error. */
gboolean vlv_arg_parse(const char *value, char **id, char **driver, char **socket_path, char **bus, char **addr);

/* ------------------------------------------------------ vlv-pci.c */

typedef enum {
        VLV_LAYOUT_Q35,
        VLV_LAYOUT_PC,
} VlvLayoutKind;

typedef struct {
        VlvLayoutKind kind;
        const char *machine; /* "q35" / "pc", for messages */
        const char *root_bus; /* QEMU id of the root bus */
        guint root_slot; /* root-bus slot vfu's controllers occupy */
        guint n_places; /* device places (ports / bridge slots) */
} VlvLayout;

/* The layout for the machine type in @root's <os><type>; NULL with
 * VLV_ERROR_UNSUPPORTED for machines vfu has no layout for. */
const VlvLayout *vlv_layout_for(xmlNode *root, GError **error);

/* Refuse a definition whose own devices use the root-bus slot or the
 * chassis number vfu's controllers need (VLV_ERROR_ADDRESS). */
gboolean vlv_layout_check_free(const VlvLayout *layout, xmlNode *root, const char *vm, GError **error);

/* Number of controller `-device` arguments and the JSON of each. */
guint vlv_layout_n_controllers(const VlvLayout *layout);
char *vlv_layout_controller_json(const VlvLayout *layout, guint i);

/* Device place @place (0-based) → QEMU bus id and addr (new strings). */
void vlv_layout_place(const VlvLayout *layout, guint place, char **bus, char **addr);

/* The place a device at @bus/@addr occupies, or -1 when that is not one
 * of @layout's places. */
int vlv_layout_place_of(const VlvLayout *layout, const char *bus, const char *addr);

/* ------------------------------------------------------ vlv-memory.c */

/* Refuse domains that are not QEMU's (VLV_ERROR_UNSUPPORTED). */
gboolean vlv_domain_type_check(xmlNode *root, const char *vm, GError **error);

/* Check (and with @edit, convert) the domain's memory so that guest RAM
 * is shared and fd-backed; see vlv.h "Memory policy".  Sets *@changed
 * when it edited something.  @vm names the domain in messages. */
gboolean vlv_memory_prepare(xmlNode *root, const char *vm, gboolean edit, gboolean *changed, GError **error);

/* ------------------------------------------------------ vlv-cmdline.c */

typedef struct {
        xmlNode *dash; /* <qemu:arg value='-device'/> */
        xmlNode *value; /* <qemu:arg value='{...}'/> */
        char *id;
        char *driver;
        char *socket_path;
        char *bus;
        char *addr;
} VlvArgPair;

void vlv_arg_pair_free(VlvArgPair *pair);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VlvArgPair, vlv_arg_pair_free)

/* The <qemu:commandline> element of @root (NULL when absent); error
 * VLV_ERROR_XML when there is more than one. */
gboolean vlv_cmdline_find(xmlNode *root, xmlNode **cmdline, GError **error);

/* vfu's `-device` pairs in @cmdline, in document order (GPtrArray of
 * VlvArgPair). */
GPtrArray *vlv_cmdline_vfu_pairs(xmlNode *cmdline);

/* Make vfu's arguments in @root exactly @values (each one JSON for a
 * `-device`), after every foreign argument; adds the namespace and the
 * commandline element as needed, removes an emptied commandline.
 * Sets *@changed when it edited something. */
gboolean vlv_cmdline_set(xmlNode *root, GPtrArray *values, gboolean *changed, GError **error);

/* ------------------------------------------------------ vlv-domxml.c */

/* Parse a domain definition (no network, no entity expansion).  Returns
 * the document, or NULL with VLV_ERROR_XML naming the parse error. */
xmlDoc *vlv_xml_parse(const char *xml, GError **error);

/* Serialise as libvirt does: no declaration, two-space indent. */
char *vlv_xml_format(xmlDoc *doc);

/* First element child of @parent named @name in no namespace. */
xmlNode *vlv_xml_child(xmlNode *parent, const char *name);

/* The domain's <name> text (new string; "?" when absent), for messages. */
char *vlv_xml_domain_name(xmlNode *root);

/* Render into @doc in place (vlv_domxml_render without the text). */
gboolean vlv_domxml_edit(xmlDoc *doc, const VlvDevice *devs, size_t n_devs, gboolean *changed, GError **error);
