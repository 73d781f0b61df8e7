/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The destination's end of a cold migration's image copy:
 * MigrationPeer.ReceiveImage(s device, u nsid, h stream).  The source vfud
 * (or, over ssh, `vfuctl receive-image` on this host with the ssh
 * channel as its stdin) hands over the read end of a byte stream; a thread
 * reads it into the namespace's image (migrate-stream.c) and the reply
 * comes once the image is complete, checked and flushed, or with the
 * reason it is not.  Only images vfud created, only while the device is
 * idle; the device refuses Start, Stop and Destroy meanwhile (its sender
 * closes the stream on cancel, which ends the receive).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/bus-names.h"
#include "device-dbus.h"
#include "migrate.h"
#include "migrate-stream.h"

struct ImageReceive {
        Device *device;
        uint32_t nsid;
        uint64_t size;
        sd_bus_message *msg;            /* answered when the thread is done */
        int in_fd, image_fd, cancel_fd, done_fd;
        sd_event_source *done_source;
        GThread *thread;
        GError *error;                  /* the thread's */
        ImageStreamStats stats;
};

static void receive_free(ImageReceive *rc) {
        if (rc->thread)
                g_thread_join(rc->thread);
        sd_event_source_disable_unref(rc->done_source);
        sd_bus_message_unref(rc->msg);
        for (int *fd = &rc->in_fd; fd <= &rc->done_fd; fd++)
                if (*fd >= 0)
                        close(*fd);
        g_clear_error(&rc->error);
        device_unref(rc->device);
        g_free(rc);
}

static gpointer receive_thread(gpointer data) {
        ImageReceive *rc = data;
        uint64_t one = 1;

        (void) image_stream_receive(rc->in_fd, rc->image_fd, rc->size, rc->cancel_fd, &rc->stats, &rc->error);
        if (write(rc->done_fd, &one, sizeof(one)) < 0)
                g_warning("cannot wake the event loop: %s", g_strerror(errno));
        return NULL;
}

/* The thread is done: answer, and the device is free again. */
static void receive_finish(ImageReceive *rc) {
        Device *d = rc->device;

        g_thread_join(rc->thread);
        rc->thread = NULL;
        d->receive = NULL;
        if (rc->error) {
                device_log(d, G_LOG_LEVEL_WARNING, "receiving namespace %u failed: %s", rc->nsid, rc->error->message);
                (void) manager_reply_error(rc->msg, rc->error);
        } else {
                device_log(d, G_LOG_LEVEL_MESSAGE,
                           "namespace %u received and flushed (%" G_GUINT64_FORMAT " bytes of data in %"
                           G_GUINT64_FORMAT " extents)", rc->nsid, rc->stats.data_bytes, rc->stats.records);
                (void) sd_bus_reply_method_return(rc->msg, "tt", rc->stats.data_bytes, rc->stats.records);
        }
        receive_free(rc);
}

static int on_receive_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        receive_finish(userdata);
        return 0;
}

void migrate_receive_cancel(Device *d) {
        ImageReceive *rc = d->receive;
        uint64_t one = 1;

        if (!rc)
                return;
        if (write(rc->cancel_fd, &one, sizeof(one)) < 0)
                g_warning("cannot cancel the image receive: %s", g_strerror(errno));
        receive_finish(rc);
}

/* The image namespace nsid of d: its path and size; NULL with error set. */
static JsonObject *image_namespace(Device *d, uint32_t nsid, sd_bus_error *error) {
        JsonObject *o = json_node_get_object(d->options);
        JsonArray *nss = json_object_has_member(o, "namespaces") ? json_object_get_array_member(o, "namespaces") : NULL;

        for (guint i = 0; nss && i < json_array_get_length(nss); i++) {
                JsonObject *ns = json_array_get_object_element(nss, i);

                if ((uint32_t) json_object_get_int_member_with_default(ns, "nsid", 0) != nsid)
                        continue;
                if (g_strcmp0(json_object_get_string_member_with_default(ns, "kind", ""), "image") != 0) {
                        sd_bus_error_setf(error, VFUD_DBUS_ERROR_NOT_SUPPORTED,
                                          "namespace %u of %s is not an image vfud created: only those are received",
                                          nsid, d->name);
                        return NULL;
                }
                return ns;
        }
        sd_bus_error_setf(error, VFUD_DBUS_ERROR_INVALID_ARGUMENT, "device %s has no namespace %u", d->name, nsid);
        return NULL;
}

int migrate_bus_receive_image(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        const char *name;
        uint32_t nsid;
        int fd, r;
        Device *d;
        JsonObject *ns;
        ImageReceive *rc;

        r = sd_bus_message_read(msg, "suh", &name, &nsid, &fd);
        if (r < 0)
                return r;
        r = manager_check_authorized(m, msg, AUTH_MIGRATE, "receiving a device image", error);
        if (r <= 0)
                return r < 0 ? r : 1;
        d = manager_find_device(m, name);
        if (!d || !d->exported)
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_NO_SUCH_DEVICE, "no device named '%s'", name);
        if (d->state != DEVICE_IDLE || device_is_migrating(d))
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_DEVICE_BUSY,
                                         "device %s is %s: only an idle device not being migrated receives an image",
                                         d->name, d->receive ? "receiving an image" : device_state_to_string(d->state));
        ns = image_namespace(d, nsid, error);
        if (!ns)
                return -EINVAL;

        rc = g_new0(ImageReceive, 1);
        rc->in_fd = rc->image_fd = rc->cancel_fd = rc->done_fd = -1;
        rc->device = device_ref(d);
        rc->nsid = nsid;
        rc->in_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        rc->image_fd = open(json_object_get_string_member(ns, "path"), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (rc->in_fd < 0 || rc->image_fd < 0) {
                int e = errno;

                receive_free(rc);
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_BACKEND_FAILED, "cannot receive namespace %u of %s: %s",
                                         nsid, name, g_strerror(e));
        }
        (void) fcntl(rc->in_fd, F_SETFL, fcntl(rc->in_fd, F_GETFL) | O_NONBLOCK);
        rc->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        rc->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        r = rc->cancel_fd < 0 || rc->done_fd < 0 ? -errno :
            sd_event_add_io(m->event, &rc->done_source, rc->done_fd, EPOLLIN, on_receive_done, rc);
        if (r < 0) {
                receive_free(rc);
                return sd_bus_error_setf(error, VFUD_DBUS_ERROR_BACKEND_FAILED, "cannot receive an image: %s",
                                         g_strerror(-r));
        }
        rc->msg = sd_bus_message_ref(msg);
        rc->size = (uint64_t) json_object_get_int_member_with_default(ns, "size", 0);
        d->receive = rc;
        device_log(d, G_LOG_LEVEL_MESSAGE, "receiving namespace %u (%" G_GUINT64_FORMAT " bytes)", nsid, rc->size);
        rc->thread = g_thread_new("vfud-receive", receive_thread, rc);
        return 1;
}
