/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Image locking (see image-lock.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image-lock.h"

/* QEMU's lock bytes (block/file-posix.c) and permissions (include/block/block-common.h). */
#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
enum {
        PERM_CONSISTENT_READ,
        PERM_WRITE,
        PERM_WRITE_UNCHANGED,
        PERM_RESIZE,
        _PERM_MAX,
};
/* A writer: holds every permission above, shares consistent-read and write-unchanged. */
#define WRITER_UNSHARED ((1u << PERM_WRITE) | (1u << PERM_RESIZE))

/* After a hand-over the source may still be letting go: try again this often, this many times. */
#define ACTIVATE_RETRY_USEC (100 * 1000)
#define ACTIVATE_TRIES 100

typedef struct DeviceImage {
        unsigned id;                    /* namespace id */
        int fd;                         /* vfud's copy of the worker's fd */
        bool locked;
} DeviceImage;

struct DeviceImages {
        GArray *held;                   /* DeviceImage */
        sd_event_source *retry;
        unsigned tries;
        bool inactive;                  /* let go for a hand-over (device_images_inactivate) */
};

static int ofd_lock(int fd, short type, off_t byte) {
        struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

        return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* 1 when another open file holds a lock on byte, 0 when none does, -errno. */
static int ofd_held_elsewhere(int fd, off_t byte) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1 };

        if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
                return -errno;
        return fl.l_type != F_UNLCK;
}

void image_lock_release(int fd) {
        struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = LOCK_PERM_BASE,
                            .l_len = LOCK_SHARED_BASE + _PERM_MAX - LOCK_PERM_BASE };

        (void) fcntl(fd, F_OFD_SETLK, &fl);
}

int image_lock_write(int fd) {
        int r = 0;

        /* Lock first, then look: of two openers racing, at least one sees the other (as QEMU does). */
        for (int i = 0; r == 0 && i < _PERM_MAX; i++) {
                r = ofd_lock(fd, F_RDLCK, LOCK_PERM_BASE + i);
                if (r == 0 && (WRITER_UNSHARED & (1u << i)))
                        r = ofd_lock(fd, F_RDLCK, LOCK_SHARED_BASE + i);
        }
        /* Someone refuses to share what we hold, or holds what we refuse to share. */
        for (int i = 0; r == 0 && i < _PERM_MAX; i++) {
                r = ofd_held_elsewhere(fd, LOCK_SHARED_BASE + i);
                if (r == 0 && (WRITER_UNSHARED & (1u << i)))
                        r = ofd_held_elsewhere(fd, LOCK_PERM_BASE + i);
                if (r > 0)
                        r = -EAGAIN;
        }
        if (r == -EACCES)
                r = -EAGAIN;
        if (r < 0)
                image_lock_release(fd);
        return r;
}

static bool same_image(const struct stat *a, const struct stat *b) {
        if (S_ISBLK(a->st_mode) && S_ISBLK(b->st_mode))
                return a->st_rdev == b->st_rdev;
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

bool device_uses_image(Device *o, const struct stat *st) {
        JsonObject *opts = o->options ? json_node_get_object(o->options) : NULL;
        JsonArray *nss = opts && json_object_has_member(opts, "namespaces") ?
                         json_object_get_array_member(opts, "namespaces") : NULL;

        for (guint i = 0; nss && i < json_array_get_length(nss); i++) {
                JsonObject *ns = json_array_get_object_element(nss, i);
                const char *path = ns ? json_object_get_string_member_with_default(ns, "path", NULL) : NULL;
                struct stat ost;

                if (path && *path && stat(path, &ost) == 0 && same_image(&ost, st))
                        return true;
        }
        return false;
}

Device *image_user(Manager *m, const char *self, const struct stat *st) {
        GHashTableIter it;
        gpointer v;
        Device *found = NULL;

        if (!m || !m->devices)
                return NULL;
        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Device *o = v;

                if ((self && strcmp(o->name, self) == 0) || !device_uses_image(o, st))
                        continue;
                /* a running one first: that is the holder */
                if (!found || o->state == DEVICE_LISTENING || o->state == DEVICE_CONNECTED)
                        found = o;
        }
        return found;
}

static void set_in_use(GError **error, Device *d, const char *path, const struct stat *st, bool block) {
        Device *holder = image_user(d->manager, d->name, st);

        if (holder)
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            "%s is in use by device %s: an image has one writer (stop or destroy %s first)",
                            path, holder->name, holder->name);
        else if (block)
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            "block device %s is in use (mounted, part of a RAID or LVM volume, or opened "
                            "exclusively by another program, e.g. a VM's disk)", path);
        else
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            "%s is locked by another process (a VM's disk?): an image has one writer; "
                            "stop what uses it or give another image", path);
}

#define IMAGE_LOCK_RETRIES      40
#define IMAGE_LOCK_RETRY_USEC   (50 * 1000)     /* 2 s in all */

int image_open(Device *d, const char *path, bool lock, GError **error) {
        struct stat st;
        bool block = stat(path, &st) == 0 && S_ISBLK(st.st_mode);
        int fd, r;

        /* An incoming copy opens it unlocked: the source still writes until the hand-over. */
        fd = open(path, O_RDWR | O_CLOEXEC | (block && lock ? O_EXCL : 0));
        if (fd < 0) {
                int e = errno;

                if (e == EBUSY && block)
                        set_in_use(error, d, path, &st, true);
                else
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                                    "cannot open backing %s: %s%s", path, g_strerror(e),
                                    e == ENOENT ? " (it was removed: restore it or destroy the device)" : "");
                return -1;
        }
        if (!lock)
                return fd;
        r = image_lock_write(fd);
        /*
         * No other device of ours uses it: the holder may be this device's worker that
         * just died, whose io_uring lets go of the file only after the process is gone.
         * Give it a moment (bounded) before calling the image someone else's.
         */
        for (int i = 0; r == -EAGAIN && i < IMAGE_LOCK_RETRIES && fstat(fd, &st) == 0 &&
                        !image_user(d->manager, d->name, &st); i++) {
                g_usleep(IMAGE_LOCK_RETRY_USEC);
                r = image_lock_write(fd);
        }
        if (r == -EAGAIN) {
                if (fstat(fd, &st) == 0)
                        set_in_use(error, d, path, &st, false);
                close(fd);
                return -1;
        }
        if (r < 0)
                /* A file system without locks (some network ones): the image is used, unguarded. */
                device_log(d, G_LOG_LEVEL_WARNING, "cannot lock %s (%s): nothing keeps others from writing it",
                           path, g_strerror(-r));
        return fd;
}

static DeviceImages *images_get(Device *d) {
        if (!d->images) {
                d->images = g_new0(DeviceImages, 1);
                d->images->held = g_array_new(FALSE, FALSE, sizeof(DeviceImage));
        }
        return d->images;
}

void device_images_hold(Device *d, unsigned id, int fd, bool locked) {
        DeviceImage im = { .id = id, .locked = locked };

        device_images_drop(d, id);
        im.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (im.fd < 0) {
                device_log(d, G_LOG_LEVEL_WARNING, "cannot keep the image of namespace %u open: %s", id, g_strerror(errno));
                return;
        }
        g_array_append_val(images_get(d)->held, im);
}

int device_images_get(Device *d, unsigned id) {
        for (guint i = 0; d->images && i < d->images->held->len; i++)
                if (g_array_index(d->images->held, DeviceImage, i).id == id)
                        return g_array_index(d->images->held, DeviceImage, i).fd;
        return -1;
}

/*
 * Close our copy; unlock first when no worker uses the image any more.  The
 * lock belongs to the open file description, which a dead worker's io_uring
 * (a registered file) keeps for a while after the process is gone: closing
 * alone would leave the image locked until the kernel tears the ring down.
 */
static void image_close(DeviceImage *im, bool unlock) {
        if (unlock && im->locked)
                image_lock_release(im->fd);
        close(im->fd);
}

void device_images_drop(Device *d, unsigned id) {
        for (guint i = 0; d->images && i < d->images->held->len; i++)
                if (g_array_index(d->images->held, DeviceImage, i).id == id) {
                        image_close(&g_array_index(d->images->held, DeviceImage, i), true);
                        g_array_remove_index(d->images->held, i);
                        return;
                }
}

static void images_close(Device *d, bool unlock) {
        if (!d->images)
                return;
        for (guint i = 0; i < d->images->held->len; i++)
                image_close(&g_array_index(d->images->held, DeviceImage, i), unlock);
        g_array_free(d->images->held, TRUE);
        sd_event_source_disable_unref(d->images->retry);
        g_clear_pointer(&d->images, g_free);
}

void device_images_release(Device *d) {
        images_close(d, true);
}

void device_images_forget(Device *d) {
        images_close(d, false);
}

void device_images_inactivate(Device *d) {
        bool any = false;

        for (guint i = 0; d->images && i < d->images->held->len; i++) {
                DeviceImage *im = &g_array_index(d->images->held, DeviceImage, i);

                if (im->locked) {
                        image_lock_release(im->fd);
                        im->locked = false;
                        any = true;
                }
        }
        if (any) {
                d->images->inactive = true;
                device_log(d, G_LOG_LEVEL_MESSAGE, "let go of its image locks: the client saved the device state");
        }
}

void device_images_reactivate(Device *d) {
        if (d->images && d->images->inactive)
                device_images_activate(d);
}

/* Lock what is not locked yet: the number still unlocked, -errno for another failure. */
static int images_try_activate(Device *d) {
        int left = 0;

        for (guint i = 0; d->images && i < d->images->held->len; i++) {
                DeviceImage *im = &g_array_index(d->images->held, DeviceImage, i);
                int r;

                if (im->locked)
                        continue;
                r = image_lock_write(im->fd);
                if (r == -EAGAIN) {
                        left++;
                        continue;
                }
                if (r < 0)
                        device_log(d, G_LOG_LEVEL_WARNING, "cannot lock the image of namespace %u (%s): it stays unguarded",
                                   im->id, g_strerror(-r));
                im->locked = true;      /* as far as the file system goes */
        }
        return left;
}

static int on_activate_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Device *d = userdata;

        d->images->retry = sd_event_source_disable_unref(d->images->retry);
        device_images_activate(d);
        return 0;
}

void device_images_activate(Device *d) {
        int left;

        if (!d->images || d->images->retry)
                return;
        left = images_try_activate(d);
        if (left == 0) {
                d->images->tries = 0;
                d->images->inactive = false;
                return;
        }
        if (++d->images->tries >= ACTIVATE_TRIES) {
                device_log(d, G_LOG_LEVEL_WARNING,
                           "%d of its images stay locked by their previous user after the hand-over: "
                           "they are written unguarded until it lets go and the device restarts", left);
                d->images->tries = 0;
                return;
        }
        /* the source lets go once its client saved the state; its vfud may not have heard yet */
        (void) sd_event_add_time_relative(d->manager->event, &d->images->retry, CLOCK_MONOTONIC,
                                          ACTIVATE_RETRY_USEC, 0, on_activate_retry, d);
}
