/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Image locking: one writer per image, as QEMU does it, so that two devices,
 * or a device and a VM's own disk, never write the same image.
 *
 * The locks are open file description (OFD) locks on the bytes QEMU uses
 * (block/file-posix.c: byte 100 + i when permission i is held, 200 + i when
 * it is not shared with others), so vfud and QEMU see each other's locks:
 * a device writing an image holds consistent-read, write, write-unchanged
 * and resize and shares consistent-read and write-unchanged, like a
 * writable QEMU disk.  Block devices are also opened O_EXCL (refused when
 * mounted or claimed).  An OFD lock belongs to the open file description,
 * so it travels with the fd to the worker (SCM_RIGHTS, exec) and lasts as
 * long as any copy of it is open.
 *
 * vfud opens the images (device-type-nvme.c), locks them, and keeps its own
 * copy of each fd while the device runs (Device.images): a worker that
 * crashes is restarted on the same open files, so the lock is never let go;
 * after a vfud restart the running workers' copies keep it.  A live
 * migration hands the lock over as QEMU's does: the source lets go once its
 * client saved the device state (stop-copy), the destination's incoming
 * copy opens the image unlocked (a block device without O_EXCL: the source
 * holds that claim until its worker stops) and takes the lock when its
 * client resumes.
 *
 * Return convention: 0 or a file descriptor, negative errno; GError
 * (MANAGER_ERROR) where noted.
 */
#pragma once

#include <stdbool.h>
#include <sys/stat.h>

#include "device.h"

/* Take the writer's locks on fd: 0, -EAGAIN when another open file holds a conflicting lock, -errno. */
int image_lock_write(int fd);
/* Let go of this open file's locks (the other holders of the same open file too). */
void image_lock_release(int fd);

/*
 * Open path for a device to write (O_EXCL for a block device), locked when
 * lock: the fd, or -1 with an error that names the holder (another device of
 * this vfud, or "another process") and what to do.
 */
int image_open(Device *d, const char *path, bool lock, GError **error);

/* Whether a namespace of d's definition is the image st describes. */
bool device_uses_image(Device *d, const struct stat *st);
/* A device of m other than the one named self whose definition uses the image st describes (a running one first), or NULL. */
Device *image_user(Manager *m, const char *self, const struct stat *st);

/* Keep a copy of fd (an image of namespace id) while d runs; locked says whether it holds the lock. */
void device_images_hold(Device *d, unsigned id, int fd, bool locked);
/* The kept fd of id, or -1 (not a copy: do not close). */
int device_images_get(Device *d, unsigned id);
/* Unlock and close id's copy (the namespace was removed: no worker writes it). */
void device_images_drop(Device *d, unsigned id);
/* Unlock and close every kept fd: the device stopped (its worker's copies went with it). */
void device_images_release(Device *d);
/* Close every kept fd, locks left to the running worker's copies (vfud exits, the worker serves on). */
void device_images_forget(Device *d);
/*
 * Hand-over of a live migration: let go of the locks (source, its client
 * saved the state), take them (destination, its client resumed; retried
 * while the source may still be letting go), take them back (source, its
 * client runs on after a failed hand-over: only what inactivate let go).
 */
void device_images_inactivate(Device *d);
void device_images_activate(Device *d);
void device_images_reactivate(Device *d);
