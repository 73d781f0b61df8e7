/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The domain-XML editor: parse, render vfu's devices in, serialise. */
#include <string.h>
#include <libxml/parser.h>
#include <libxml/xmlsave.h>

#include "vlv-private.h"

static gpointer init_libxml(gpointer data) {
        xmlInitParser(); /* required once before threads use libxml2 */
        return NULL;
}

static char *last_error(xmlParserCtxt *ctxt, int *line) {
        xmlError *e = xmlCtxtGetLastError(ctxt);

        *line = e ? e->line : 0;
        return g_strchomp(g_strdup(e && e->message ? e->message : "unknown error"));
}

static gboolean is_blank_text(xmlNode *n) {
        return (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) && xmlIsBlankNode(n);
}

/* Drop whitespace-only text next to elements (indentation inside mixed
 * content, which the parser keeps and the formatter would then lay out
 * differently on every round).  Text-only elements keep their text.
 * libxml2 bounds the depth (256 without XML_PARSE_HUGE). */
static void strip_layout(xmlNode *parent) {
        gboolean has_element = FALSE;
        xmlNode *c, *next;

        for (c = parent->children; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE)
                        has_element = TRUE;
        for (c = parent->children; c; c = next) {
                next = c->next;
                if (has_element && is_blank_text(c)) {
                        xmlUnlinkNode(c);
                        xmlFreeNode(c);
                } else if (c->type == XML_ELEMENT_NODE) {
                        strip_layout(c);
                }
        }
}

xmlDoc *vlv_xml_parse(const char *xml, GError **error) {
        static GOnce once = G_ONCE_INIT;
        xmlParserCtxt *ctxt;
        xmlDoc *doc;
        size_t len;
        int line;

        g_once(&once, init_libxml, NULL);
        if (!xml) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_XML, "no domain XML given");
                return NULL;
        }
        len = strlen(xml);
        if (len > G_MAXINT) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_XML, "domain XML too large");
                return NULL;
        }
        ctxt = xmlNewParserCtxt();
        if (!ctxt) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_XML, "out of memory parsing XML");
                return NULL;
        }
        doc = xmlCtxtReadMemory(ctxt, xml, (int) len, "domain.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc || !ctxt->wellFormed) {
                g_autofree char *msg = last_error(ctxt, &line);

                g_set_error(error, VLV_ERROR, VLV_ERROR_XML, "the domain XML is not well-formed (line %d: %s)", line,
                            msg);
                if (doc)
                        xmlFreeDoc(doc);
                xmlFreeParserCtxt(ctxt);
                return NULL;
        }
        if (!ctxt->nsWellFormed) {
                /* e.g. <qemu:commandline> without xmlns:qemu: libxml2 keeps
                 * it as an element without namespace, which libvirt drops */
                g_autofree char *msg = last_error(ctxt, &line);

                g_set_error(error, VLV_ERROR, VLV_ERROR_XML,
                            "the domain XML has a namespace error (line %d: %s); "
                            "is an xmlns declaration missing or misspelled?",
                            line, msg);
                xmlFreeDoc(doc);
                xmlFreeParserCtxt(ctxt);
                return NULL;
        }
        xmlFreeParserCtxt(ctxt);
        if (xmlDocGetRootElement(doc))
                strip_layout(xmlDocGetRootElement(doc));
        return doc;
}

char *vlv_xml_format(xmlDoc *doc) {
        xmlBuffer *buf;
        xmlSaveCtxt *save;
        char *out;

        /* edits can turn a whitespace-only element into mixed content */
        if (xmlDocGetRootElement(doc))
                strip_layout(xmlDocGetRootElement(doc));
        buf = xmlBufferCreate();
        save = xmlSaveToBuffer(buf, "UTF-8", XML_SAVE_FORMAT | XML_SAVE_NO_DECL);
        xmlSaveDoc(save, doc);
        xmlSaveClose(save);
        out = g_strndup((const char *) xmlBufferContent(buf), (gsize) xmlBufferLength(buf));
        xmlBufferFree(buf);
        return out;
}

xmlNode *vlv_xml_child(xmlNode *parent, const char *name) {
        for (xmlNode *c = parent->children; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE && !c->ns && strcmp((const char *) c->name, name) == 0)
                        return c;
        return NULL;
}

char *vlv_xml_domain_name(xmlNode *root) {
        xmlNode *n = vlv_xml_child(root, "name");
        xmlChar *s = n ? xmlNodeGetContent(n) : NULL;
        char *out = g_strdup(s && *s ? (const char *) s : "?");

        xmlFree(s);
        return out;
}

static xmlNode *domain_root(xmlDoc *doc, GError **error) {
        xmlNode *root = xmlDocGetRootElement(doc);

        if (!root || root->ns || strcmp((const char *) root->name, "domain") != 0) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_XML,
                            "the XML is not a libvirt domain definition "
                            "(its root element is not <domain>)");
                return NULL;
        }
        return root;
}

static gboolean check_devices(const VlvDevice *devs, size_t n, GError **error) {
        for (size_t i = 0; i < n; i++) {
                if (!vlv_device_check(&devs[i], error))
                        return FALSE;
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(devs[i].name, devs[j].name) == 0) {
                                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID, "device '%s' is listed twice",
                                            devs[i].name);
                                return FALSE;
                        }
                        if (strcmp(devs[i].socket_path, devs[j].socket_path) == 0) {
                                g_set_error(error, VLV_ERROR, VLV_ERROR_INVALID,
                                            "devices '%s' and '%s' share the socket %s", devs[j].name, devs[i].name,
                                            devs[i].socket_path);
                                return FALSE;
                        }
                }
        }
        return TRUE;
}

static int compare_by_name(gconstpointer a, gconstpointer b, gpointer data) {
        const VlvDevice *devs = data;

        return strcmp(devs[*(const size_t *) a].name, devs[*(const size_t *) b].name);
}

/* Give every device a place: a device already in the definition keeps
 * its place when that is still valid; the others take the lowest free
 * place, in name order. */
static void assign_places(const VlvLayout *layout, GPtrArray *pairs, const VlvDevice *devs, size_t n,
                          const size_t *order, int *place) {
        g_autofree gboolean *taken = g_new0(gboolean, layout->n_places);

        for (size_t i = 0; i < n; i++)
                place[i] = -1;
        for (guint k = 0; k < pairs->len; k++) {
                VlvArgPair *p = pairs->pdata[k];
                const char *name;
                int pl;

                if (!g_str_has_prefix(p->id, VLV_DEVICE_PREFIX))
                        continue;
                name = p->id + strlen(VLV_DEVICE_PREFIX);
                pl = vlv_layout_place_of(layout, p->bus, p->addr);
                if (pl < 0 || taken[pl])
                        continue;
                for (size_t i = 0; i < n; i++) {
                        if (place[i] < 0 && strcmp(devs[i].name, name) == 0) {
                                place[i] = pl;
                                taken[pl] = TRUE;
                                break;
                        }
                }
        }
        for (size_t k = 0; k < n; k++) {
                size_t i = order[k];
                guint pl = 0;

                if (place[i] >= 0)
                        continue;
                while (taken[pl])
                        pl++; /* n <= n_places, so a free place exists */
                place[i] = (int) pl;
                taken[pl] = TRUE;
        }
}

gboolean vlv_domxml_edit(xmlDoc *doc, const VlvDevice *devs, size_t n, gboolean *changed, GError **error) {
        g_autoptr(GPtrArray) values = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GPtrArray) pairs = NULL;
        g_autofree size_t *order = NULL;
        g_autofree int *place = NULL;
        g_autofree char *vm = NULL;
        const VlvLayout *layout;
        xmlNode *root, *cmdline;

        *changed = FALSE;
        if (!(root = domain_root(doc, error)))
                return FALSE;
        if (!check_devices(devs, n, error))
                return FALSE;
        if (n == 0)
                return vlv_cmdline_set(root, values, changed, error);

        vm = vlv_xml_domain_name(root);
        if (!vlv_domain_type_check(root, vm, error) || !(layout = vlv_layout_for(root, error)))
                return FALSE;
        if (n > layout->n_places) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_ADDRESS,
                            "VM '%s' would have %zu vfio-user devices; a %s machine "
                            "takes at most %u",
                            vm, n, layout->machine, layout->n_places);
                return FALSE;
        }
        if (!vlv_layout_check_free(layout, root, vm, error) || !vlv_memory_prepare(root, vm, TRUE, changed, error) ||
            !vlv_cmdline_find(root, &cmdline, error))
                return FALSE;

        pairs = vlv_cmdline_vfu_pairs(cmdline);
        order = g_new(size_t, n);
        for (size_t i = 0; i < n; i++)
                order[i] = i;
        g_qsort_with_data(order, (gint) n, sizeof(*order), compare_by_name, (gpointer) devs);
        place = g_new(int, n);
        assign_places(layout, pairs, devs, n, order, place);

        for (guint i = 0; i < vlv_layout_n_controllers(layout); i++)
                g_ptr_array_add(values, vlv_layout_controller_json(layout, i));
        for (size_t k = 0; k < n; k++) {
                size_t i = order[k];
                g_autofree char *bus = NULL, *addr = NULL;

                vlv_layout_place(layout, (guint) place[i], &bus, &addr);
                g_ptr_array_add(values, vlv_device_json(&devs[i], bus, addr));
        }
        return vlv_cmdline_set(root, values, changed, error);
}

gboolean vlv_domxml_render(const char *in_xml, const VlvDevice *devs, size_t n_devs, char **out_xml, gboolean *changed,
                           GError **error) {
        g_autoptr(xmlDoc) doc = vlv_xml_parse(in_xml, error);
        gboolean did_change = FALSE;

        if (!doc || !vlv_domxml_edit(doc, devs, n_devs, &did_change, error))
                return FALSE;
        *out_xml = vlv_xml_format(doc);
        if (changed)
                *changed = did_change;
        return TRUE;
}

void vlv_domain_device_free(VlvDomainDevice *dev) {
        if (!dev)
                return;
        g_free(dev->name);
        g_free(dev->socket_path);
        g_free(dev->bus);
        g_free(dev->addr);
        g_free(dev);
}

GPtrArray *vlv_domxml_list_devices(const char *xml, GError **error) {
        g_autoptr(xmlDoc) doc = vlv_xml_parse(xml, error);
        g_autoptr(GPtrArray) pairs = NULL;
        GPtrArray *out;
        xmlNode *root, *cmdline;

        if (!doc || !(root = domain_root(doc, error)) || !vlv_cmdline_find(root, &cmdline, error))
                return NULL;
        pairs = vlv_cmdline_vfu_pairs(cmdline);
        out = g_ptr_array_new_with_free_func((GDestroyNotify) vlv_domain_device_free);
        for (guint i = 0; i < pairs->len; i++) {
                VlvArgPair *p = pairs->pdata[i];
                VlvDomainDevice *d;

                if (!g_str_has_prefix(p->id, VLV_DEVICE_PREFIX) || g_strcmp0(p->driver, VLV_DRIVER) != 0)
                        continue;
                d = g_new0(VlvDomainDevice, 1);
                d->name = g_strdup(p->id + strlen(VLV_DEVICE_PREFIX));
                d->socket_path = g_steal_pointer(&p->socket_path);
                d->bus = g_steal_pointer(&p->bus);
                d->addr = g_steal_pointer(&p->addr);
                g_ptr_array_add(out, d);
        }
        return out;
}
