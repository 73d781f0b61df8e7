/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The receiving end of a cold migration's image copy (Device.WriteImage and
 * Device.CommitImage): the source vfud streams an image namespace in
 * ascending chunks; ranges it skips are zeros.  The first chunk empties the
 * image (so skipped ranges read as zeros), every chunk goes into a running
 * SHA-256 over (offset, data), and CommitImage compares it with the
 * sender's, then makes the image durable.  Only images vfud created, only
 * while the device is idle.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/bus-names.h"
#include "device-dbus.h"
#include "device-incoming.h"

void device_incoming_reset(Device *d) {
        if (d->incoming_fd >= 0)
                close(d->incoming_fd);
        d->incoming_fd = -1;
        d->incoming_nsid = 0;
        d->incoming_offset = 0;
        g_clear_pointer(&d->incoming_sum, g_checksum_free);
}

/* The image namespace nsid of d, or NULL with error set. */
static JsonObject *image_namespace(Device *d, uint32_t nsid, sd_bus_error *error) {
        JsonObject *o = json_node_get_object(d->options);
        JsonArray *nss = json_object_has_member(o, "namespaces") ? json_object_get_array_member(o, "namespaces") : NULL;

        for (guint i = 0; nss && i < json_array_get_length(nss); i++) {
                JsonObject *ns = json_array_get_object_element(nss, i);

                if ((uint32_t) json_object_get_int_member_with_default(ns, "nsid", 0) != nsid)
                        continue;
                if (g_strcmp0(json_object_get_string_member_with_default(ns, "kind", ""), "image") != 0) {
                        sd_bus_error_setf(error, VFUD_DBUS_ERROR_NOT_SUPPORTED,
                                          "namespace %u of %s is not an image vfud created: only those are written through the bus",
                                          nsid, d->name);
                        return NULL;
                }
                return ns;
        }
        sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT, "device %s has no namespace %u", d->name, nsid);
        return NULL;
}

static void sum_chunk(GChecksum *sum, uint64_t offset, const void *data, size_t n) {
        uint64_t le = GUINT64_TO_LE(offset);

        g_checksum_update(sum, (const guchar *) &le, sizeof(le));
        g_checksum_update(sum, data, (gssize) n);
}

int device_bus_write_image(Device *d, sd_bus_message *msg, sd_bus_error *error) {
        uint32_t nsid;
        uint64_t offset, size;
        const void *data;
        size_t n;
        JsonObject *ns;
        int r;

        r = sd_bus_message_read(msg, "ut", &nsid, &offset);
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(msg, 'y', &data, &n);
        if (r < 0)
                return r;
        r = manager_check_authorized(d->manager, msg, AUTH_MIGRATE, "writing a device image", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (d->state != DEVICE_IDLE)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                         "device %s is %s: stop it before writing its image", d->name,
                                         device_state_to_string(d->state));
        ns = image_namespace(d, nsid, error);
        if (!ns)
                return -EINVAL;
        size = (uint64_t) json_object_get_int_member_with_default(ns, "size", 0);
        if (offset > size || n > size - offset)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                         "%zu bytes at offset %" G_GUINT64_FORMAT " do not fit namespace %u (%" G_GUINT64_FORMAT " bytes)",
                                         n, offset, nsid, size);
        if (offset == 0 || d->incoming_fd < 0 || d->incoming_nsid != nsid) {
                const char *path = json_object_get_string_member(ns, "path");

                if (offset != 0)
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                                 "an image transfer starts at offset 0");
                device_incoming_reset(d);
                d->incoming_fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
                if (d->incoming_fd < 0 || ftruncate(d->incoming_fd, 0) < 0 ||
                    ftruncate(d->incoming_fd, (off_t) size) < 0) {
                        int e = errno;

                        device_incoming_reset(d);
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_BACKEND_FAILED, "cannot write %s: %s",
                                                 path, g_strerror(e));
                }
                d->incoming_nsid = nsid;
                d->incoming_sum = g_checksum_new(G_CHECKSUM_SHA256);
        } else if (offset < d->incoming_offset)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                         "chunks must come in ascending order (offset %" G_GUINT64_FORMAT " after %" G_GUINT64_FORMAT ")",
                                         offset, d->incoming_offset);
        for (size_t done = 0; done < n;) {
                ssize_t w = pwrite(d->incoming_fd, (const uint8_t *) data + done, n - done, (off_t) (offset + done));

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0) {
                        int e = w < 0 ? errno : EIO;

                        device_incoming_reset(d);
                        return sd_bus_error_setf(error, VFUD_DBUS_ERROR_BACKEND_FAILED,
                                                 "writing the image of %s failed: %s", d->name, g_strerror(e));
                }
                done += (size_t) w;
        }
        sum_chunk(d->incoming_sum, offset, data, n);
        d->incoming_offset = offset + n;
        return sd_bus_reply_method_return(msg, NULL);
}

int device_bus_commit_image(Device *d, sd_bus_message *msg, sd_bus_error *error) {
        const char *want, *got;
        uint32_t nsid;
        int r;

        r = sd_bus_message_read(msg, "us", &nsid, &want);
        if (r < 0)
                return r;
        r = manager_check_authorized(d->manager, msg, AUTH_MIGRATE, "writing a device image", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (d->incoming_fd < 0 || d->incoming_nsid != nsid)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT,
                                         "no image transfer to namespace %u of %s is under way", nsid, d->name);
        got = g_checksum_get_string(d->incoming_sum);
        if (g_ascii_strcasecmp(got, want) != 0) {
                device_incoming_reset(d);
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_BACKEND_FAILED,
                                         "the image of %s arrived damaged (SHA-256 %s, sent %s)", d->name, got, want);
        }
        if (fdatasync(d->incoming_fd) < 0) {
                int e = errno;

                device_incoming_reset(d);
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_BACKEND_FAILED, "cannot flush the image of %s: %s",
                                         d->name, g_strerror(e));
        }
        device_incoming_reset(d);
        device_log(d, G_LOG_LEVEL_MESSAGE, "namespace %u received and flushed", nsid);
        return sd_bus_reply_method_return(msg, NULL);
}
