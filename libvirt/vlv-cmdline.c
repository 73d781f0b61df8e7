/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfu's entries in <qemu:commandline>: pairs of <qemu:arg value='-device'/>
 * and <qemu:arg value='{"driver":…,"id":"vfu-…"}'/>.  Everything else in
 * the element (foreign args, <qemu:env>) is left where it is.
 */
#include <string.h>

#include "vlv-private.h"

void vlv_arg_pair_free(VlvArgPair *pair) {
        if (!pair)
                return;
        g_free(pair->id);
        g_free(pair->driver);
        g_free(pair->socket_path);
        g_free(pair->bus);
        g_free(pair->addr);
        g_free(pair);
}

static gboolean is_qemu_element(xmlNode *n, const char *name) {
        return n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
                strcmp((const char *) n->ns->href, VLV_QEMU_NS) == 0 && strcmp((const char *) n->name, name) == 0;
}

gboolean vlv_cmdline_find(xmlNode *root, xmlNode **cmdline, GError **error) {
        *cmdline = NULL;
        for (xmlNode *c = root->children; c; c = c->next) {
                if (!is_qemu_element(c, "commandline"))
                        continue;
                if (*cmdline) {
                        g_set_error(error, VLV_ERROR, VLV_ERROR_XML, "the domain has more than one <qemu:commandline>");
                        return FALSE;
                }
                *cmdline = c;
        }
        return TRUE;
}

static char *arg_value(xmlNode *n) {
        return (char *) xmlGetProp(n, BAD_CAST "value");
}

static gboolean is_dash_device(xmlNode *n) {
        g_autofree char *value = NULL;

        if (!n || !is_qemu_element(n, "arg"))
                return FALSE;
        value = arg_value(n);
        return g_strcmp0(value, "-device") == 0;
}

GPtrArray *vlv_cmdline_vfu_pairs(xmlNode *cmdline) {
        GPtrArray *pairs = g_ptr_array_new_with_free_func((GDestroyNotify) vlv_arg_pair_free);

        if (!cmdline)
                return pairs;
        /* A vfu pair is a vfu JSON <qemu:arg> whose immediately preceding
         * node is a '-device' <qemu:arg>; anything else (a dangling
         * '-device', a vfu-like value after a comment or text) is foreign
         * and stays as it is. */
        for (xmlNode *c = cmdline->children; c; c = c->next) {
                g_autofree char *value = NULL;
                g_autoptr(VlvArgPair) pair = NULL;

                if (!is_qemu_element(c, "arg") || !is_dash_device(c->prev))
                        continue;
                value = arg_value(c);
                pair = g_new0(VlvArgPair, 1);
                if (!vlv_arg_parse(value, &pair->id, &pair->driver, &pair->socket_path, &pair->bus, &pair->addr))
                        continue;
                pair->dash = c->prev;
                pair->value = c;
                g_ptr_array_add(pairs, g_steal_pointer(&pair));
        }
        return pairs;
}

static xmlNs *ensure_namespace(xmlNode *root, GError **error) {
        xmlNs *ns = xmlSearchNsByHref(root->doc, root, BAD_CAST VLV_QEMU_NS);

        if (ns)
                return ns;
        if (xmlSearchNs(root->doc, root, BAD_CAST VLV_QEMU_NS_PREFIX)) {
                g_set_error(error, VLV_ERROR, VLV_ERROR_XML,
                            "the domain binds the prefix '%s' to another namespace "
                            "than libvirt's %s",
                            VLV_QEMU_NS_PREFIX, VLV_QEMU_NS);
                return NULL;
        }
        return xmlNewNs(root, BAD_CAST VLV_QEMU_NS, BAD_CAST VLV_QEMU_NS_PREFIX);
}

/* Are vfu's args already exactly @values, after every foreign arg? */
static gboolean cmdline_matches(xmlNode *cmdline, GPtrArray *pairs, GPtrArray *values) {
        xmlNode *last_arg = NULL;
        VlvArgPair *last_pair;

        if (pairs->len != values->len)
                return FALSE;
        if (pairs->len == 0)
                return TRUE;
        for (guint i = 0; i < pairs->len; i++) {
                VlvArgPair *p = pairs->pdata[i];
                g_autofree char *v = arg_value(p->value);

                if (g_strcmp0(v, values->pdata[i]) != 0)
                        return FALSE;
                /* contiguous: each pair follows the previous one */
                if (i > 0 && ((VlvArgPair *) pairs->pdata[i - 1])->value->next != p->dash)
                        return FALSE;
        }
        for (xmlNode *c = cmdline->children; c; c = c->next)
                if (is_qemu_element(c, "arg"))
                        last_arg = c;
        last_pair = pairs->pdata[pairs->len - 1];
        return last_arg == last_pair->value;
}

static void unlink_free(xmlNode *n) {
        xmlUnlinkNode(n);
        xmlFreeNode(n);
}

static gboolean has_element_children(xmlNode *n) {
        for (xmlNode *c = n->children; c; c = c->next)
                if (c->type == XML_ELEMENT_NODE)
                        return TRUE;
        return FALSE;
}

gboolean vlv_cmdline_set(xmlNode *root, GPtrArray *values, gboolean *changed, GError **error) {
        xmlNode *cmdline = NULL, *anchor = NULL, *first_child;
        g_autoptr(GPtrArray) pairs = NULL;
        xmlNs *ns;

        if (!vlv_cmdline_find(root, &cmdline, error))
                return FALSE;
        pairs = vlv_cmdline_vfu_pairs(cmdline);
        if (cmdline && cmdline_matches(cmdline, pairs, values))
                return TRUE;
        if (!cmdline && values->len == 0)
                return TRUE;

        *changed = TRUE;
        for (guint i = 0; i < pairs->len; i++) {
                VlvArgPair *p = pairs->pdata[i];

                unlink_free(p->dash);
                unlink_free(p->value);
        }
        if (values->len == 0) {
                if (!has_element_children(cmdline))
                        unlink_free(cmdline);
                return TRUE;
        }

        if (!cmdline) {
                if (!(ns = ensure_namespace(root, error)))
                        return FALSE;
                /* libvirt formats the namespace's elements last */
                cmdline = xmlNewChild(root, ns, BAD_CAST "commandline", NULL);
        }
        ns = cmdline->ns;
        /* after the last foreign <qemu:arg>, before any <qemu:env> */
        for (xmlNode *c = cmdline->children; c; c = c->next)
                if (is_qemu_element(c, "arg"))
                        anchor = c;
        first_child = cmdline->children;
        for (guint i = 0; i < values->len; i++) {
                xmlNode *dash = xmlNewDocNode(root->doc, ns, BAD_CAST "arg", NULL);
                xmlNode *val = xmlNewDocNode(root->doc, ns, BAD_CAST "arg", NULL);

                xmlSetProp(dash, BAD_CAST "value", BAD_CAST "-device");
                xmlSetProp(val, BAD_CAST "value", BAD_CAST values->pdata[i]);
                if (anchor)
                        anchor = xmlAddNextSibling(anchor, dash);
                else if (first_child)
                        anchor = xmlAddPrevSibling(first_child, dash);
                else
                        anchor = xmlAddChild(cmdline, dash);
                anchor = xmlAddNextSibling(anchor, val);
        }
        return TRUE;
}
