/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vlv's libvirt calls when vfu is built without libvirt: each one says so. */
#include "vlv.h"

static gboolean no_libvirt(GError **error) {
        g_set_error(error, VLV_ERROR, VLV_ERROR_UNREACHABLE,
                    "vfu was built without libvirt support (install libvirt-dev "
                    "and rebuild); the VM's definition was not changed");
        return FALSE;
}

gboolean vlv_domain_apply(const char *uri, const char *vm, const VlvDevice *devs, size_t n_devs, GError **error) {
        return no_libvirt(error);
}

char *vlv_domain_get_xml(const char *uri, const char *vm, const VlvDevice *devs, size_t n_devs, GError **error) {
        no_libvirt(error);
        return NULL;
}

GPtrArray *vlv_domain_list_devices(const char *uri, const char *vm, GError **error) {
        no_libvirt(error);
        return NULL;
}

gboolean vlv_attach(const char *uri, const char *vm, const VlvDevice *dev, GError **error) {
        return no_libvirt(error);
}

gboolean vlv_detach(const char *uri, const char *vm, const char *name, gboolean msix, guint timeout_ms,
                    GError **error) {
        return no_libvirt(error);
}

gboolean vlv_domain_probe(const char *uri, const char *vm, gboolean *active, gboolean *persistent, GError **error) {
        return no_libvirt(error);
}

gboolean vlv_domain_migrate_offline(const char *uri, const char *vm, const char *dest_uri, GError **error) {
        return no_libvirt(error);
}

VlvWatch *vlv_watch_new(const char *uri, guint retry_ms, VlvWatchFunc func, gpointer user_data, GError **error) {
        no_libvirt(error);
        return NULL;
}

void vlv_watch_free(VlvWatch *watch) {}
