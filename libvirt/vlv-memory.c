/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Guest RAM shared with the device process through a file descriptor
 * (vlv.h, "Memory policy").  QEMU's vfio-user client hands the server
 * one fd per RAM block in DMA_MAP; RAM without an fd, or mapped
 * MAP_PRIVATE, leaves the device blind to what the guest writes.
 */
#include <string.h>

#include "vlv-private.h"

/* libvirt's order of the <domain> children that precede <memoryBacking>,
 * and of <memoryBacking>'s children (domain_conf.c formats in this order;
 * the schema itself does not care). */
static const char *const before_backing[] = {
        "name",      "uuid",   "genid",         "title",     "description", "metadata",
        "maxMemory", "memory", "currentMemory", "blkiotune", "memtune",
};
static const char *const before_source[] = { "hugepages", "nosharepages", "locked" };
static const char *const before_access[] = { "hugepages", "nosharepages", "locked", "source" };

static gboolean is_one_of(xmlNode *n, const char *const *names, size_t n_names) {
        if (n->type != XML_ELEMENT_NODE || n->ns)
                return FALSE;
        for (size_t i = 0; i < n_names; i++)
                if (strcmp((const char *) n->name, names[i]) == 0)
                        return TRUE;
        return FALSE;
}

/* Insert a new element @name into @parent after the last child that is
 * one of @after (first child when none is). */
static xmlNode *insert_child(xmlNode *parent, const char *name, const char *const *after, size_t n_after) {
        xmlNode *last = NULL;
        xmlNode *n = xmlNewDocNode(parent->doc, NULL, BAD_CAST name, NULL);

        for (xmlNode *c = parent->children; c; c = c->next)
                if (is_one_of(c, after, n_after))
                        last = c;
        if (last)
                return xmlAddNextSibling(last, n);
        if (parent->children)
                return xmlAddPrevSibling(parent->children, n);
        return xmlAddChild(parent, n);
}

static gboolean prop_is(xmlNode *n, const char *attr, const char *value) {
        g_autofree char *v = (char *) xmlGetProp(n, BAD_CAST attr);

        return v && strcmp(v, value) == 0;
}

gboolean vlv_domain_type_check(xmlNode *root, const char *vm, GError **error) {
        g_autofree char *type = (char *) xmlGetProp(root, BAD_CAST "type");

        if (type && (strcmp(type, "kvm") == 0 || strcmp(type, "qemu") == 0))
                return TRUE;
        g_set_error(error, VLV_ERROR, VLV_ERROR_UNSUPPORTED,
                    "VM '%s' is a domain of type '%s'; vfio-user devices need "
                    "a QEMU domain (type 'kvm' or 'qemu')",
                    vm, type ? type : "(none)");
        return FALSE;
}

static gboolean check_numa(xmlNode *root, const char *vm, GError **error) {
        xmlNode *cpu = vlv_xml_child(root, "cpu");
        xmlNode *numa = cpu ? vlv_xml_child(cpu, "numa") : NULL;

        if (!numa)
                return TRUE;
        for (xmlNode *cell = numa->children; cell; cell = cell->next) {
                g_autofree char *id = NULL;

                if (cell->type != XML_ELEMENT_NODE || cell->ns || strcmp((const char *) cell->name, "cell") != 0 ||
                    !prop_is(cell, "memAccess", "private"))
                        continue;
                id = (char *) xmlGetProp(cell, BAD_CAST "id");
                g_set_error(error, VLV_ERROR, VLV_ERROR_MEMORY,
                            "VM '%s': NUMA cell %s has memAccess='private', so its "
                            "RAM cannot be shared with vfio-user devices (the "
                            "device would not see what the guest writes there); "
                            "set memAccess='shared' on that cell, or remove the "
                            "attribute, and retry",
                            vm, id ? id : "?");
                return FALSE;
        }
        return TRUE;
}

static gboolean check_memory_devices(xmlNode *root, const char *vm, GError **error) {
        xmlNode *devices = vlv_xml_child(root, "devices");

        if (!devices)
                return TRUE;
        for (xmlNode *m = devices->children; m; m = m->next) {
                g_autofree char *model = NULL;

                if (m->type != XML_ELEMENT_NODE || m->ns || strcmp((const char *) m->name, "memory") != 0 ||
                    !prop_is(m, "access", "private"))
                        continue;
                model = (char *) xmlGetProp(m, BAD_CAST "model");
                g_set_error(error, VLV_ERROR, VLV_ERROR_MEMORY,
                            "VM '%s': memory device <memory model='%s'> has "
                            "access='private', so its RAM cannot be shared with "
                            "vfio-user devices; set access='shared' on it, or "
                            "remove the attribute, and retry",
                            vm, model ? model : "?");
                return FALSE;
        }
        return TRUE;
}

gboolean vlv_memory_prepare(xmlNode *root, const char *vm, gboolean edit, gboolean *changed, GError **error) {
        xmlNode *backing, *source, *access;
        g_autofree char *stype = NULL, *mode = NULL;

        if (!vlv_domain_type_check(root, vm, error) || !check_numa(root, vm, error) ||
            !check_memory_devices(root, vm, error))
                return FALSE;

        backing = vlv_xml_child(root, "memoryBacking");
        source = backing ? vlv_xml_child(backing, "source") : NULL;
        access = backing ? vlv_xml_child(backing, "access") : NULL;
        stype = source ? (char *) xmlGetProp(source, BAD_CAST "type") : NULL;
        mode = access ? (char *) xmlGetProp(access, BAD_CAST "mode") : NULL;

        if (mode && strcmp(mode, "shared") != 0) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_MEMORY,
                            "VM '%s' has <memoryBacking><access mode='%s'/>, so its "
                            "RAM cannot be shared with vfio-user devices; change it "
                            "to <access mode='shared'/> (or remove it) and retry",
                            vm, mode);
                return FALSE;
        }
        if (stype && strcmp(stype, "memfd") != 0 && strcmp(stype, "file") != 0 && strcmp(stype, "anonymous") != 0) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_XML,
                            "VM '%s' has an unknown <memoryBacking><source type='%s'/>", vm, stype);
                return FALSE;
        }
        if (!edit) {
                /* A running VM: report what is missing, change nothing. */
                if (!mode || !stype || strcmp(stype, "anonymous") == 0) {
                        g_set_error(error, VLV_ERROR, VLV_ERROR_MEMORY,
                                    "VM '%s' is running without shared, fd-backed "
                                    "RAM (<memoryBacking> needs <source type='memfd'/> "
                                    "and <access mode='shared'/>), so vfio-user "
                                    "devices cannot reach guest memory; apply vfu's "
                                    "definition, restart the VM, then attach",
                                    vm);
                        return FALSE;
                }
                return TRUE;
        }

        if (!backing) {
                backing = insert_child(root, "memoryBacking", before_backing, G_N_ELEMENTS(before_backing));
                *changed = TRUE;
        }
        if (!source) {
                source = insert_child(backing, "source", before_source, G_N_ELEMENTS(before_source));
                *changed = TRUE;
        }
        if (!stype || strcmp(stype, "anonymous") == 0) {
                xmlSetProp(source, BAD_CAST "type", BAD_CAST "memfd");
                *changed = TRUE;
        }
        if (!access) {
                access = insert_child(backing, "access", before_access, G_N_ELEMENTS(before_access));
                *changed = TRUE;
        }
        if (!mode) {
                xmlSetProp(access, BAD_CAST "mode", BAD_CAST "shared");
                *changed = TRUE;
        }
        return TRUE;
}
