/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Network block backends of a disk, worker side: see worker-netblk.h. */
#include <errno.h>
#include <string.h>

#include "worker-netblk.h"

static const char *member(JsonObject *o, const char *name) {
        return json_object_get_string_member_with_default(o, name, NULL);
}

gboolean worker_netblk_options(Worker *w, JsonObject *disk, BlkOpenOptions *o, char **name, GError **error) {
        const char *kind = json_object_get_string_member_with_default(disk, "kind", "");

        *name = NULL;
        if (strcmp(kind, "nbd") == 0) {
                const char *uri = member(disk, "uri");
                JsonNode *wn = json_object_get_member(disk, "wait-ms");
                int64_t wait_ms = wn && JSON_NODE_HOLDS_VALUE(wn) ? json_node_get_int(wn) : 0;

                if (!uri || !*uri || wait_ms < 0 || wait_ms > UINT32_MAX) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "an nbd disk needs a \"uri\" (and \"wait-ms\" 0..2^32-1)");
                        return FALSE;
                }
                if (g_str_has_prefix(uri, "nbd:"))
                        worker_allow_inet(w);   /* reconnecting makes TCP sockets */
                o->nbd_uri = uri;
                o->nbd_wait_ms = (unsigned) wait_ms;
                *name = g_strdup(uri);
        } else if (strcmp(kind, "rbd") == 0) {
                const char *pool = member(disk, "pool"), *image = member(disk, "image");

                if (!pool || !*pool || !image || !*image) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "an rbd disk needs a \"pool\" and an \"image\"");
                        return FALSE;
                }
                worker_allow_inet(w);           /* librados connects to OSDs as it needs them */
                o->rbd_pool = pool;
                o->rbd_namespace = member(disk, "namespace");
                o->rbd_image = image;
                o->rbd_conf = member(disk, "conf");
                o->rbd_id = member(disk, "id");
                o->rbd_keyring = member(disk, "keyring");
                *name = o->rbd_namespace ? g_strdup_printf("rbd:%s/%s/%s", pool, o->rbd_namespace, image)
                                         : g_strdup_printf("rbd:%s/%s", pool, image);
        }
        return TRUE;
}

const char *worker_netblk_hint(const BlkOpenOptions *o, int r) {
        if (o->nbd_uri)
                return r == -EPROTONOSUPPORT ? ": use nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH (no TLS), "
                                               "with a vfud-worker built with libnbd"
                     : r == -EINVAL ? ": not an NBD URI, or \"size\" is larger than the export"
                     : r == -EROFS ? ": the export is read-only"
                     : ": is the NBD server running and reachable?";
        if (o->rbd_image)
                return r == -EPROTONOSUPPORT ? ": this vfud-worker was built without librbd"
                     : r == -ENOENT ? ": no such pool or image: create it, or give \"size\" to have the image created"
                     : r == -ETIMEDOUT ? ": the cluster did not answer (its monitors, the configuration)"
                     : r == -EACCES || r == -EPERM ? ": check the client id and its keyring"
                     : "";
        return "";
}
