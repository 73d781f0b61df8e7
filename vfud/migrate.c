/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Migration (see migrate.h; the D-Bus surface is migrate-dbus.c, the image stream migrate-stream.c,
 * the receiving end migrate-receive.c, definitions migrate-options.c).  Steps:
 *   1. on the event loop: check every device (a connected one only when its
 *      client uses vfio-user migration v2 — QEMU's vfio-user-pci never does
 *      — and its storage is shared), check the storage choice against each
 *      namespace, stop the devices nobody uses;
 *   2. in a thread, on a connection of its own to the destination: refuse
 *      names the destination already has, CreateDevice with the same
 *      definition, check shared backings (same path, same size) or stream
 *      the images (one image stream per namespace, migrate-stream.h), start the
 *      copies that were running here; on any failure destroy what was
 *      created there;
 *      live devices are created there as "incoming", then the thread waits
 *      for the VMM to hand each over: this side saved (STOP_COPY) and no
 *      longer running, the destination resumed (its state loaded); the
 *      VMM cancelling (running here again), either side in ERROR, the
 *      client leaving before saving, or the timeout fail the migration;
 *   3. MigrateVm of a cold VM defined in this host's libvirt (checked
 *      first in the thread, before anything moves: a running VM is
 *      refused): once every device arrived, its domain moves offline to
 *      the destination's libvirt (the destination's hook accepts it only
 *      then); a failure there leaves the devices moved and says how to
 *      finish;
 *   4. back on the loop: after success remove the devices here (stopping
 *      handed-over workers first; and from the VM's libvirt definition,
 *      unless the domain moved or is left for the operator to move);
 *      after failure restart what ran.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/bus-names.h"
#include "device-dbus.h"
#include "device-limits.h"
#include "image-lock.h"
#include "manager-libvirt.h"
#include "migrate.h"
#include "migrate-stream.h"

#define REMOTE_TIMEOUT_USEC (120 * G_USEC_PER_SEC)
#define PROGRESS_INTERVAL_USEC (200 * 1000)
#define HAND_OVER_POLL_USEC (50 * 1000)

typedef struct MigrateImage {
        uint32_t nsid;
        char *path;
        uint64_t size;
} MigrateImage;

typedef struct Migration Migration;

typedef struct MigrateDev {
        Migration *mg;
        Device *device;
        char *name, *type, *vm;
        JsonNode *options;
        bool was_running;
        bool created;                   /* on the destination */
        GArray *images;                 /* MigrateImage to copy */

        /* live: a client that migrates is connected; it moves the state, we watch */
        bool live;
        char *dest_path;                /* the destination's object (thread only) */
        bool handed_over;               /* thread only */
        unsigned cancel_polls;          /* thread only: polls since the VMM resumed it here */
        /* the client's progress here, copied on the loop (Migration.lock) */
        char src_state[16];
        bool src_connected, src_saved, src_failed, src_cancelled;
        bool src_dropped;               /* the VMM's connection went (a worker killed) before it saved */
        uint64_t src_bytes;
        uint64_t base_bytes;            /* the client's bytes_read when the migration began */
        bool base_failed;
        char *dest_socket;              /* where the VMM connects there (Migration.lock) */
} MigrateDev;

struct Migration {
        Manager *manager;
        sd_bus_message *msg;
        char *destination;
        bool by_vm;                     /* MigrateVm: the reply says what became of the domain */
        char *vm;
        /* the VM's libvirt domain (MigrateVm, cold): NULL lv_dest_uri when it stays */
        char *lv_uri;                   /* this host's libvirt */
        char *lv_dest_uri;              /* the destination's libvirt, as seen from here */
        bool lv_explicit;               /* libvirt-uri given: a domain must move */
        bool domain_moved;              /* thread, then loop */
        char *domain_note;              /* what became of the domain (the reply) */
        GError *domain_error;           /* the devices moved, the domain did not */
        bool copy;
        bool live;                      /* some device is handed over live */
        uint64_t timeout_usec;          /* for the hand-over */
        GPtrArray *devs;                /* MigrateDev */
        unsigned stops_pending;
        unsigned removals_pending;      /* handed-over workers still exiting */
        GHashTable *vms;                /* whose libvirt definitions to update at the end */
        GError *error;

        GThread *thread;
        gint cancelled;                 /* atomic: vfud is exiting */
        int cancel_fd;                  /* eventfd, readable once cancelled: the copy polls it */
        char *cancel_reason;            /* set before cancelled */
        int efd;
        sd_event_source *done_source, *timer;

        /*
         * The hand-off between the thread and the loop: the thread checks the
         * destination, sets checked and wakes the loop, which stops the cold
         * devices and sets stopped (stop_error); the thread then moves them.
         * committed: every device arrived, past which a cancel is refused.
         */
        GMutex lock;                    /* these and the thread's progress */
        GCond cond;
        bool checked, stopping, stopped, committed, thread_done;
        GError *stop_error;
        uint64_t bytes, total;
        int64_t started;
        MigrationState phase;           /* what the devices show */
};

static void migrate_dev_free(MigrateDev *md) {
        if (md->device)
                md->device->migration = NULL;
        device_unref(md->device);
        g_free(md->name);
        g_free(md->type);
        g_free(md->vm);
        g_free(md->dest_path);
        g_free(md->dest_socket);
        if (md->options)
                json_node_unref(md->options);
        for (guint i = 0; md->images && i < md->images->len; i++)
                g_free(g_array_index(md->images, MigrateImage, i).path);
        if (md->images)
                g_array_free(md->images, TRUE);
        g_free(md);
}

static void device_unref_notify(gpointer d) {
        device_unref(d);
}

static void migration_free(Migration *mg) {
        if (mg->manager->migrations)
                g_ptr_array_remove(mg->manager->migrations, mg);
        g_ptr_array_unref(mg->devs);
        sd_bus_message_unref(mg->msg);
        g_free(mg->destination);
        g_free(mg->cancel_reason);
        g_free(mg->vm);
        g_free(mg->lv_uri);
        g_free(mg->lv_dest_uri);
        g_free(mg->domain_note);
        g_clear_error(&mg->domain_error);
        if (mg->vms)
                g_hash_table_unref(mg->vms);
        g_clear_error(&mg->error);
        sd_event_source_disable_unref(mg->done_source);
        sd_event_source_disable_unref(mg->timer);
        if (mg->efd >= 0)
                close(mg->efd);
        if (mg->cancel_fd >= 0)
                close(mg->cancel_fd);
        g_clear_error(&mg->stop_error);
        g_mutex_clear(&mg->lock);
        g_cond_clear(&mg->cond);
        g_free(mg);
}

static void device_set_migration(Device *d, MigrationState state, uint64_t bytes, uint64_t total, uint64_t rate,
                                 uint64_t remaining);

/*
 * Stop the migration (on the loop): the copy and the hand-over end with
 * reason, the thread rolls the destination back.  FALSE when it is past
 * committing (every device arrived) and force is not set.
 */
static bool migration_cancel(Migration *mg, const char *reason, bool force) {
        uint64_t one = 1;

        g_mutex_lock(&mg->lock);
        if (g_atomic_int_get(&mg->cancelled) || (mg->committed && !force)) {
                bool already = g_atomic_int_get(&mg->cancelled);

                g_mutex_unlock(&mg->lock);
                return already;
        }
        mg->cancel_reason = g_strdup(reason);
        g_atomic_int_set(&mg->cancelled, 1);
        g_cond_broadcast(&mg->cond);
        g_mutex_unlock(&mg->lock);
        if (mg->cancel_fd >= 0 && write(mg->cancel_fd, &one, sizeof(one)) < 0)
                g_warning("cannot cancel the migration's copy: %s", g_strerror(errno));
        return true;
}

static const char *const migration_state_table[_MIGRATION_STATE_MAX] = {
        [MIGRATION_NONE] = "",
        [MIGRATION_PREPARING] = "preparing",
        [MIGRATION_COPYING] = "copying",
        [MIGRATION_WAITING] = "waiting",
        [MIGRATION_TRANSFERRING] = "transferring",
        [MIGRATION_COMPLETED] = "completed",
        [MIGRATION_FAILED] = "failed",
        [MIGRATION_INCOMING] = "incoming",
        [MIGRATION_RESUMED] = "resumed",
        [MIGRATION_REFUSED] = "refused",
};

const char *migration_state_to_string(MigrationState s) {
        if (s < 0 || s >= _MIGRATION_STATE_MAX)
                return NULL;
        return migration_state_table[s];
}

MigrationState migration_state_from_string(const char *s) {
        for (int i = 0; s && i < _MIGRATION_STATE_MAX; i++)
                if (strcmp(migration_state_table[i], s) == 0)
                        return (MigrationState) i;
        return _MIGRATION_STATE_INVALID;
}

bool device_is_migrating(Device *d) {
        return d->migration != NULL || d->receive != NULL;
}

void migrate_device_event(Device *d) {
        Migration *mg = d->migration;

        if (d->incoming && d->client_mig.resumed) {
                d->incoming = false;
                device_log(d, G_LOG_LEVEL_MESSAGE, "arrived: the client loaded the migrated device state");
                device_set_migration(d, MIGRATION_RESUMED, 0, 0, 0, 0);
        } else if (d->incoming && (d->client_mig.failed || g_strcmp0(d->client_mig.state, "error") == 0)) {
                d->incoming = false;
                device_log(d, G_LOG_LEVEL_WARNING, "the migrated device state was refused (ERROR state)");
                device_set_migration(d, MIGRATION_REFUSED, 0, 0, 0, 0);
        }
        /*
         * The image locks change hands with the device state, as QEMU's do: the
         * source lets go once its client saved it (nothing writes any more), the
         * destination takes them once its client resumed it, the source again
         * when a client runs it on after a failed hand-over (not when the
         * client that saved it leaves: the copy took over).
         */
        if (mg && g_strcmp0(d->client_mig.state, "stop-copy") == 0)
                device_images_inactivate(d);
        else if (d->client_mig.resumed && !d->incoming)
                device_images_activate(d);
        else if (d->state == DEVICE_CONNECTED && g_strcmp0(d->client_mig.state, "running") == 0)
                device_images_reactivate(d);
        for (guint i = 0; mg && i < mg->devs->len; i++) {
                MigrateDev *md = mg->devs->pdata[i];

                if (md->device != d || !md->live)
                        continue;
                /* Latched here, where every step is seen in order; the thread polls. */
                g_mutex_lock(&mg->lock);
                g_strlcpy(md->src_state, d->client_mig.state ? d->client_mig.state : "", sizeof(md->src_state));
                md->src_connected = d->state == DEVICE_CONNECTED;
                md->src_saved = md->src_saved || strcmp(md->src_state, "stop-copy") == 0 ||
                                d->client_mig.bytes_read > md->base_bytes;
                md->src_failed = md->src_failed || strcmp(md->src_state, "error") == 0 ||
                                 (d->client_mig.failed && !md->base_failed);
                md->src_cancelled = md->src_cancelled ||
                                    (md->src_saved && md->src_connected && strcmp(md->src_state, "running") == 0);
                /* Latched: a VMM reconnecting to a restarted worker at once must not hide it from the thread. */
                md->src_dropped = md->src_dropped || (!md->src_connected && !md->src_saved);
                if (d->client_mig.bytes_read > md->base_bytes)
                        md->src_bytes = d->client_mig.bytes_read - md->base_bytes;
                g_mutex_unlock(&mg->lock);
        }
}

/* ---- progress ---- */

static void device_set_migration(Device *d, MigrationState state, uint64_t bytes, uint64_t total, uint64_t rate,
                                 uint64_t remaining) {
        bool changed_state = d->migration_state != state;
        bool changed = d->mig_bytes != bytes || d->mig_total != total || d->mig_rate != rate ||
                       d->mig_remaining != remaining;

        d->migration_state = state;
        d->mig_bytes = bytes;
        d->mig_total = total;
        d->mig_rate = rate;
        d->mig_remaining = remaining;
        if (changed_state && changed)
                device_emit_changed(d, "MigrationState", "MigrationProgress", NULL);
        else if (changed_state)
                device_emit_changed(d, "MigrationState", NULL);
        else if (changed)
                device_emit_changed(d, "MigrationProgress", NULL);
}

static bool saving(const char *state) {
        return strcmp(state, "pre-copy") == 0 || strcmp(state, "stop-copy") == 0;
}

/* A live device's figures: the state the client read here so far; its socket there. */
static void progress_publish_live(MigrateDev *md, MigrationState phase, int64_t elapsed) {
        Device *d = md->device;
        uint64_t bytes;
        g_autofree char *sock = NULL;

        g_mutex_lock(&md->mg->lock);
        bytes = md->src_bytes;
        if (phase == MIGRATION_WAITING && (md->src_saved || saving(md->src_state)))
                phase = MIGRATION_TRANSFERRING;
        sock = g_strdup(md->dest_socket);
        g_mutex_unlock(&md->mg->lock);
        if (g_strcmp0(sock, d->mig_socket) != 0 && !(sock == NULL && d->mig_socket == NULL)) {
                g_free(d->mig_socket);
                d->mig_socket = g_steal_pointer(&sock);
                device_emit_changed(d, "MigrationSocket", NULL);
        }
        device_set_migration(d, phase, bytes, 0,
                             elapsed > 0 ? (uint64_t) ((double) bytes * G_USEC_PER_SEC / (double) elapsed) : 0, 0);
}

static void progress_publish(Migration *mg) {
        uint64_t bytes, total, rate = 0, remaining = 0;
        MigrationState phase;
        int64_t elapsed;

        g_mutex_lock(&mg->lock);
        bytes = mg->bytes;
        total = mg->total;
        phase = mg->phase;
        elapsed = mg->started ? g_get_monotonic_time() - mg->started : 0;
        g_mutex_unlock(&mg->lock);
        if (elapsed > 0 && bytes > 0) {
                rate = (uint64_t) ((double) bytes * G_USEC_PER_SEC / (double) elapsed);
                remaining = rate ? (total - bytes + rate - 1) / rate : 0;
        }
        for (guint i = 0; i < mg->devs->len; i++) {
                MigrateDev *md = mg->devs->pdata[i];

                if (!md->device)
                        continue;
                if (md->live)
                        progress_publish_live(md, phase, elapsed);
                else
                        device_set_migration(md->device, phase, bytes, total, rate, remaining);
        }
}

static int on_progress_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Migration *mg = userdata;

        progress_publish(mg);
        /* a time source fires once unless switched on again */
        (void) sd_event_source_set_time(s, usec + PROGRESS_INTERVAL_USEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static void set_phase(Migration *mg, MigrationState phase) {
        g_mutex_lock(&mg->lock);
        mg->phase = phase;
        g_mutex_unlock(&mg->lock);
}

/* ---- the thread: talking to the destination ---- */

/* Connect to the destination's bus: an address, or [USER@]HOST through ssh and systemd-stdio-bridge.
 * The connection is made before returning (ssh failing shows here, not in the first call). */
static sd_bus *dest_open(const char *dest, GError **error) {
        gboolean address = strchr(dest, '=') || strchr(dest, ':');
        const char *unique;
        sd_bus *b = NULL;
        int r;

        if (address) {
                r = sd_bus_new(&b);
                if (r >= 0)
                        r = sd_bus_set_address(b, dest);
                if (r >= 0)
                        r = sd_bus_set_bus_client(b, 1);
                if (r >= 0)
                        r = sd_bus_start(b);
        } else
                r = sd_bus_open_system_remote(&b, dest);
        if (r >= 0)
                r = sd_bus_set_method_call_timeout(b, REMOTE_TIMEOUT_USEC);
        if (r >= 0)
                r = sd_bus_get_unique_name(b, &unique);
        if (r < 0) {
                if (address)
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "cannot reach the destination %s over D-Bus: %s (give a bus address or [USER@]HOST reachable by ssh)",
                                    dest, g_strerror(-r));
                else
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "cannot reach the destination %s: ssh %s systemd-stdio-bridge failed: %s (ssh's own message is in vfud's log; "
                                    "check that `ssh %s` works without a prompt for the user vfud runs as and that the host has systemd-stdio-bridge)",
                                    dest, dest, g_strerror(-r), dest);
                sd_bus_flush_close_unref(b);
                return NULL;
        }
        return b;
}

static gboolean call_failed(GError **error, sd_bus_error *e, int r, const char *dest, const char *what) {
        manager_error_from_bus(error, e, r, "on %s: %s", dest, what);
        sd_bus_error_free(e);
        return FALSE;
}

/* Append the CreateDevice options that reproduce md's definition (the type's own in migrate-options.c). */
static int append_create_options(sd_bus_message *m, MigrateDev *md, GError **error) {
        JsonObject *o = json_node_get_object(md->options);
        int r = sd_bus_message_open_container(m, 'a', "{sv}");

        if (r >= 0 && md->live)
                r = sd_bus_message_append(m, "{sv}", "incoming", "b", 1);
        /* cold: the destination's libvirt hook then accepts the VM's offline migration (vfu-hook(8)) */
        if (r >= 0 && !md->live)
                r = sd_bus_message_append(m, "{sv}", "migrated-from", "s", g_get_host_name());
        if (r >= 0)
                r = migrate_append_create_options(md->device->dtype, o, m);
        if (r >= 0)
                r = device_limits_append_create_options(m, md->type, o);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        return r;
}

/* The namespaces beyond the first, added after CreateDevice. */
static gboolean add_extra_namespaces(sd_bus *b, Migration *mg, MigrateDev *md, const char *path, GError **error) {
        JsonObject *o = json_node_get_object(md->options);
        JsonArray *nss = strcmp(md->type, "nvme") == 0 && json_object_has_member(o, "namespaces") ?
                         json_object_get_array_member(o, "namespaces") : NULL;

        for (guint i = 0; nss && i < json_array_get_length(nss); i++) {
                JsonObject *ns = json_array_get_object_element(nss, i);
                uint32_t nsid = (uint32_t) json_object_get_int_member_with_default(ns, "nsid", 0);
                const char *kind = json_object_get_string_member_with_default(ns, "kind", "image");
                sd_bus_error e = SD_BUS_ERROR_NULL;
                int r;

                if (nsid == 1)
                        continue;
                r = sd_bus_call_method(b, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, "AddNamespace", &e, NULL, "ust",
                                       nsid, strcmp(kind, "image") == 0 ? "" :
                                       json_object_get_string_member_with_default(ns, "path", ""),
                                       (uint64_t) json_object_get_int_member_with_default(ns, "size", 0));
                if (r >= 0)
                        r = device_limits_call_set(b, path, nsid, ns, &e);
                if (r < 0) {
                        g_autofree char *what = g_strdup_printf("adding namespace %u of %s", nsid, md->name);

                        return call_failed(error, &e, r, mg->destination, what);
                }
        }
        return TRUE;
}

/* Shared storage: the destination's namespaces have the sizes they have here. */
static gboolean check_shared(sd_bus *b, Migration *mg, MigrateDev *md, const char *path, GError **error) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        JsonObject *o = json_node_get_object(md->options);
        JsonArray *nss = json_object_has_member(o, "namespaces") ? json_object_get_array_member(o, "namespaces") : NULL;
        g_autoptr(GHashTable) sizes = g_hash_table_new(g_direct_hash, g_direct_equal);
        int r;

        if (!nss)
                return TRUE;
        r = sd_bus_get_property(b, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, "Backend", &e, &reply, "a{sv}");
        if (r < 0)
                return call_failed(error, &e, r, mg->destination, "reading the new device's backend");
        /* Backend: a{sv} with "namespaces" aa{sv} of nsid (t), size (t), ... */
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && strcmp(key, "namespaces") == 0) {
                        r = sd_bus_message_enter_container(reply, 'v', "aa{sv}");
                        if (r >= 0)
                                r = sd_bus_message_enter_container(reply, 'a', "a{sv}");
                        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'a', "{sv}")) > 0) {
                                uint64_t nsid = 0, size = 0;

                                while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                                        const char *k;
                                        char t;
                                        const char *contents;

                                        r = sd_bus_message_read(reply, "s", &k);
                                        if (r >= 0)
                                                r = sd_bus_message_peek_type(reply, &t, &contents);
                                        if (r >= 0 && contents && strcmp(contents, "t") == 0 &&
                                            (strcmp(k, "nsid") == 0 || strcmp(k, "size") == 0))
                                                r = sd_bus_message_read(reply, "v", "t", strcmp(k, "nsid") == 0 ? &nsid : &size);
                                        else if (r >= 0)
                                                r = sd_bus_message_skip(reply, "v");
                                        if (r >= 0)
                                                r = sd_bus_message_exit_container(reply);
                                        if (r < 0)
                                                break;
                                }
                                if (r >= 0)
                                        r = sd_bus_message_exit_container(reply);
                                g_hash_table_insert(sizes, GUINT_TO_POINTER((guint) nsid), GSIZE_TO_POINTER((gsize) size));
                        }
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(reply);
                } else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "unexpected Backend from %s: %s",
                            mg->destination, g_strerror(-r));
                return FALSE;
        }
        for (guint i = 0; i < json_array_get_length(nss); i++) {
                JsonObject *ns = json_array_get_object_element(nss, i);
                guint nsid = (guint) json_object_get_int_member_with_default(ns, "nsid", 0);
                uint64_t want = (uint64_t) json_object_get_int_member_with_default(ns, "size", 0);
                gpointer got;

                if (!g_hash_table_lookup_extended(sizes, GUINT_TO_POINTER(nsid), NULL, &got) ||
                    (uint64_t) GPOINTER_TO_SIZE(got) != want) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                                    "namespace %u of %s is %" G_GUINT64_FORMAT " bytes here but %" G_GUINT64_FORMAT " on %s: %s is not the same storage there",
                                    nsid, md->name, want, (uint64_t) GPOINTER_TO_SIZE(got), mg->destination,
                                    json_object_get_string_member_with_default(ns, "path", "?"));
                        return FALSE;
                }
        }
        return TRUE;
}

/* ---- the image copy: one stream per namespace (migrate-stream.h) ---- */

typedef struct ReceiveCall {
        bool done;
        sd_bus_error error;
        int errno_;
} ReceiveCall;

static int on_receive_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        ReceiveCall *rc = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        rc->done = true;
        if (e) {
                rc->errno_ = sd_bus_message_get_errno(reply);
                sd_bus_error_copy(&rc->error, e);
        }
        return 0;
}

typedef struct CopyProgress {
        Migration *mg;
        uint64_t base;                  /* bytes of the images before this one */
} CopyProgress;

static void on_copy_progress(uint64_t covered, void *userdata) {
        CopyProgress *cp = userdata;

        g_mutex_lock(&cp->mg->lock);
        cp->mg->bytes = cp->base + covered;
        g_mutex_unlock(&cp->mg->lock);
}

static gboolean send_image(Migration *mg, const MigrateImage *img, int out_fd, GError **error) {
        CopyProgress cp = { mg, 0 };
        int fd = open(img->path, O_RDONLY | O_CLOEXEC);
        gboolean ok;

        g_mutex_lock(&mg->lock);
        cp.base = mg->bytes;
        g_mutex_unlock(&mg->lock);
        if (fd < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED, "cannot read %s: %s", img->path,
                            g_strerror(errno));
                return FALSE;
        }
        ok = image_stream_send(fd, img->size, out_fd, mg->cancel_fd, on_copy_progress, &cp, NULL, error);
        close(fd);
        return ok;
}

/* A pipe whose read end the receiver gets; a large buffer so that both ends run at disk speed. */
static gboolean stream_pipe(int p[2], GError **error) {
        if (pipe2(p, O_CLOEXEC) < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot make a pipe: %s", g_strerror(errno));
                return FALSE;
        }
        (void) fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        return TRUE;
}

/* Which failure to report: ours when the migration was cancelled here, else the receiver's reason
 * (a damaged extent, a full disk there), which explains ours (the stream broke). */
static gboolean copy_result(Migration *mg, GError *send_error, GError *recv_error, GError **error) {
        if (g_atomic_int_get(&mg->cancelled)) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s", mg->cancel_reason);
                g_clear_error(&send_error);
                g_clear_error(&recv_error);
                return FALSE;
        }
        if (send_error && !recv_error) {
                g_propagate_error(error, send_error);
                g_clear_error(&recv_error);
                return FALSE;
        }
        g_clear_error(&send_error);
        if (recv_error) {
                g_propagate_error(error, recv_error);
                return FALSE;
        }
        return TRUE;
}

/* To a bus address: the pipe goes to the destination vfud with ReceiveImage on the migration's connection. */
static gboolean copy_image_bus(sd_bus *b, Migration *mg, MigrateDev *md, const MigrateImage *img, GError **error) {
        ReceiveCall call = { .error = SD_BUS_ERROR_NULL };
        GError *send_error = NULL, *recv_error = NULL;
        sd_bus_message *m = NULL;
        sd_bus_slot *slot = NULL;
        int p[2], r;
        int64_t deadline;

        if (!stream_pipe(p, error))
                return FALSE;
        r = sd_bus_message_new_method_call(b, &m, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MIGRATION_PEER_IFACE,
                                           "ReceiveImage");
        if (r >= 0)
                r = sd_bus_message_append(m, "suh", md->name, img->nsid, p[0]);
        /* the reply comes when the image is complete: no timeout while the stream flows */
        if (r >= 0)
                r = sd_bus_call_async(b, &slot, m, on_receive_reply, &call, UINT64_MAX);
        if (r >= 0)
                r = sd_bus_flush(b);
        sd_bus_message_unref(m);
        close(p[0]);
        if (r < 0) {
                close(p[1]);
                sd_bus_slot_unref(slot);
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot send the image of %s to %s: %s",
                            md->name, mg->destination, g_strerror(-r));
                return FALSE;
        }
        (void) send_image(mg, img, p[1], &send_error);
        close(p[1]);
        /* the receiver ends at the stream's end, or at its break: wait for its word before anything else */
        deadline = g_get_monotonic_time() + REMOTE_TIMEOUT_USEC;
        while (!call.done && g_get_monotonic_time() < deadline) {
                r = sd_bus_process(b, NULL);
                if (r < 0)
                        break;
                if (r == 0)
                        (void) sd_bus_wait(b, 100 * 1000);
        }
        sd_bus_slot_unref(slot);
        if (!call.done)
                g_set_error(&recv_error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "%s did not confirm the image of %s: %s", mg->destination, md->name,
                            r < 0 ? g_strerror(-r) : "no answer");
        else if (sd_bus_error_is_set(&call.error)) {
                g_autofree char *what = g_strdup_printf("receiving namespace %u of %s", img->nsid, md->name);

                manager_error_from_bus(&recv_error, &call.error, -call.errno_, "on %s: %s", mg->destination, what);
        }
        sd_bus_error_free(&call.error);
        return copy_result(mg, send_error, recv_error, error);
}

/* To [USER@]HOST: ssh's stdin is the pipe, `vfuctl receive-image` there hands it to that host's vfud. */
static gboolean copy_image_ssh(Migration *mg, MigrateDev *md, const MigrateImage *img, GError **error) {
        g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE |
                                                                    G_SUBPROCESS_FLAGS_STDERR_PIPE);
        g_autoptr(GSubprocess) ssh = NULL;
        g_autofree char *name = g_shell_quote(md->name), *nsid = g_strdup_printf("%u", img->nsid);
        g_autofree char *err_text = NULL;
        GError *send_error = NULL, *recv_error = NULL, *e = NULL;
        int p[2];

        if (!stream_pipe(p, error))
                return FALSE;
        g_subprocess_launcher_take_stdin_fd(l, p[0]);
        ssh = g_subprocess_launcher_spawn(l, &e, "ssh", "-xT", "--", mg->destination, "vfuctl", "receive-image",
                                          name, nsid, NULL);
        /* the launcher holds the read end until it goes: the writer must see the reader leave */
        g_clear_object(&l);
        if (!ssh) {
                close(p[1]);
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot run ssh to send the image of %s: %s",
                            md->name, e->message);
                g_clear_error(&e);
                return FALSE;
        }
        (void) send_image(mg, img, p[1], &send_error);
        close(p[1]);
        /* cancelled: ssh goes at once (the other end sees its stream break); its stderr is of no interest */
        if (g_atomic_int_get(&mg->cancelled)) {
                g_subprocess_force_exit(ssh);
                (void) g_subprocess_wait(ssh, NULL, NULL);
        } else if (!g_subprocess_communicate_utf8(ssh, NULL, NULL, NULL, &err_text, &e)) {
                g_set_error(&recv_error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "ssh %s: %s", mg->destination,
                            e->message);
                g_clear_error(&e);
        } else if (!g_subprocess_get_successful(ssh)) {
                g_strstrip(err_text);
                g_set_error(&recv_error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "on %s: receiving namespace %u of %s: %s", mg->destination, img->nsid, md->name,
                            err_text && *err_text ? err_text : "ssh or vfuctl receive-image failed");
        }
        return copy_result(mg, send_error, recv_error, error);
}

static gboolean dest_is_address(const char *dest) {
        return strchr(dest, '=') || strchr(dest, ':');
}

static gboolean copy_image(sd_bus *b, Migration *mg, MigrateDev *md, const MigrateImage *img, GError **error) {
        if (dest_is_address(mg->destination))
                return copy_image_bus(b, mg, md, img, error);
        return copy_image_ssh(mg, md, img, error);
}

static gboolean migrate_one(sd_bus *b, Migration *mg, MigrateDev *md, GError **error) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *reply = NULL;
        g_autofree char *path = NULL;
        const char *p;
        int r;

        if (g_atomic_int_get(&mg->cancelled)) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s", mg->cancel_reason);
                return FALSE;
        }
        r = sd_bus_message_new_method_call(b, &m, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, "CreateDevice");
        if (r >= 0)
                r = sd_bus_message_append(m, "sss", md->type, md->name, md->vm);
        if (r >= 0)
                r = append_create_options(m, md, error);
        if (r >= 0)
                r = sd_bus_call(b, m, 0, &e, &reply);
        sd_bus_message_unref(m);
        if (r < 0) {
                g_autofree char *what = g_strdup_printf("creating %s", md->name);

                return call_failed(error, &e, r, mg->destination, what);
        }
        md->created = true;
        r = sd_bus_message_read(reply, "o", &p);
        path = r >= 0 ? g_strdup(p) : NULL;
        sd_bus_message_unref(reply);
        if (!path) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "unexpected reply from %s", mg->destination);
                return FALSE;
        }
        if (!add_extra_namespaces(b, mg, md, path, error))
                return FALSE;
        if (md->live) {
                g_autofree char *sock = NULL;

                r = sd_bus_get_property_string(b, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, "SocketPath", &e, &sock);
                if (r < 0)
                        return call_failed(error, &e, r, mg->destination, "reading the new device's socket");
                md->dest_path = g_strdup(path);
                g_mutex_lock(&mg->lock);
                md->dest_socket = g_steal_pointer(&sock);
                g_mutex_unlock(&mg->lock);
        }
        if (!mg->copy)
                return check_shared(b, mg, md, path, error);
        if (md->images->len) {
                r = sd_bus_call_method(b, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, "Stop", &e, NULL, NULL);
                if (r < 0)
                        return call_failed(error, &e, r, mg->destination, "stopping the new device for the copy");
                for (guint i = 0; i < md->images->len; i++)
                        if (!copy_image(b, mg, md, &g_array_index(md->images, MigrateImage, i), error))
                                return FALSE;
                if (md->was_running) {
                        r = sd_bus_call_method(b, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, "Start", &e, NULL, NULL);
                        if (r < 0)
                                return call_failed(error, &e, r, mg->destination, "starting the copied device");
                }
        }
        return TRUE;
}

/* The destination's view of an incoming device: its MigrationState and its client's migration state. */
static gboolean dest_status(sd_bus *b, Migration *mg, MigrateDev *md, char **mig_state, char **client_state,
                            GError **error) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_get_property_string(b, VFUD_BUS_NAME, md->dest_path, VFUD_DEVICE_IFACE, "MigrationState", &e,
                                       mig_state);
        if (r >= 0)
                r = sd_bus_get_property(b, VFUD_BUS_NAME, md->dest_path, VFUD_DEVICE_IFACE, "ClientMigration", &e,
                                        &reply, "a{sv}");
        if (r < 0) {
                g_autofree char *what = g_strdup_printf("watching %s arrive", md->name);

                return call_failed(error, &e, r, mg->destination, what);
        }
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key, *v;

                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && strcmp(key, "state") == 0 && (r = sd_bus_message_read(reply, "v", "s", &v)) >= 0)
                        *client_state = g_strdup(v);
                else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        if (!*client_state)
                *client_state = g_strdup("");
        return TRUE;
}

/* One live device: TRUE with *done when handed over, FALSE with error when the hand-over failed. */
static gboolean hand_over_check(sd_bus *b, Migration *mg, MigrateDev *md, bool *done, GError **error) {
        g_autofree char *dest_mig = NULL, *dest_client = NULL;
        char src_state[sizeof(md->src_state)];
        bool src_connected, src_saved, src_failed, src_cancelled, src_dropped;

        if (!dest_status(b, mg, md, &dest_mig, &dest_client, error))
                return FALSE;
        g_mutex_lock(&mg->lock);
        memcpy(src_state, md->src_state, sizeof(src_state));
        src_connected = md->src_connected;
        src_saved = md->src_saved;
        src_failed = md->src_failed;
        src_cancelled = md->src_cancelled;
        src_dropped = md->src_dropped;
        g_mutex_unlock(&mg->lock);

        if (migration_state_from_string(dest_mig) == MIGRATION_REFUSED || strcmp(dest_client, "error") == 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "%s refused the device state of %s (its copy entered the migration ERROR state: the stream "
                            "was damaged, from another version or for another device); %s stays here, where the VMM "
                            "can resume it", mg->destination, md->name, md->name);
                return FALSE;
        }
        if (src_failed) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "%s entered the migration ERROR state here while its state was being saved: the VMM must "
                            "reset the device; nothing was handed over to %s", md->name, mg->destination);
                return FALSE;
        }
        /* A refusal there makes the VMM resume here: give the destination's report time to win. */
        if (src_cancelled && ++md->cancel_polls < 5) {
                *done = false;
                return TRUE;
        }
        if (src_cancelled) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "the VMM resumed %s here instead of on %s: the migration was cancelled, %s keeps running here",
                            md->name, mg->destination, md->name);
                return FALSE;
        }
        if (src_dropped && !src_saved) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                            "the VMM disconnected from %s before saving its state: nothing was handed over to %s",
                            md->name, mg->destination);
                return FALSE;
        }
        *done = migration_state_from_string(dest_mig) == MIGRATION_RESUMED && src_saved &&
                (!src_connected || strcmp(src_state, "stop") == 0 || strcmp(src_state, "stop-copy") == 0);
        return TRUE;
}

/* Wait until the VMM moved every live device's state to its copy there. */
static gboolean await_hand_over(sd_bus *b, Migration *mg, GError **error) {
        int64_t deadline = g_get_monotonic_time() + (int64_t) mg->timeout_usec;

        set_phase(mg, MIGRATION_WAITING);
        for (;;) {
                bool all = true;

                if (g_atomic_int_get(&mg->cancelled)) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                    "%s; the devices keep running here", mg->cancel_reason);
                        return FALSE;
                }
                for (guint i = 0; i < mg->devs->len; i++) {
                        MigrateDev *md = mg->devs->pdata[i];
                        bool done = false;

                        if (!md->live || md->handed_over)
                                continue;
                        if (!hand_over_check(b, mg, md, &done, error))
                                return FALSE;
                        md->handed_over = done;
                        all = all && done;
                }
                if (all)
                        return TRUE;
                if (g_get_monotonic_time() > deadline) {
                        for (guint i = 0; i < mg->devs->len; i++) {
                                MigrateDev *md = mg->devs->pdata[i];

                                if (md->live && !md->handed_over) {
                                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED,
                                                    "no VMM moved the state of %s to %s within %" G_GUINT64_FORMAT
                                                    " s: %s keeps running here; have the VMM migrate to the socket "
                                                    "MigrationSocket names and try again (option timeout gives it longer)",
                                                    md->name, mg->destination, mg->timeout_usec / G_USEC_PER_SEC, md->name);
                                        break;
                                }
                        }
                        return FALSE;
                }
                g_usleep(HAND_OVER_POLL_USEC);
        }
}

/* How long a rollback waits for a copy there that is busy (its worker restarting) to be removable. */
#define ROLLBACK_BUSY_USEC (15 * G_USEC_PER_SEC)

static void rollback(sd_bus *b, Migration *mg) {
        for (guint i = 0; i < mg->devs->len; i++) {
                MigrateDev *md = mg->devs->pdata[i];
                int64_t deadline = g_get_monotonic_time() + ROLLBACK_BUSY_USEC;
                sd_bus_error e = SD_BUS_ERROR_NULL;
                int r;

                if (!md->created)
                        continue;
                /* A copy whose worker was killed is starting again there: removable once it listens. */
                while ((r = sd_bus_call_method(b, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, "DestroyDevice",
                                               &e, NULL, "s", md->name)) < 0 &&
                       sd_bus_error_has_name(&e, VFUD_DBUS_ERROR_DEVICE_BUSY) && g_get_monotonic_time() < deadline) {
                        sd_bus_error_free(&e);
                        g_usleep(HAND_OVER_POLL_USEC);
                }
                if (r < 0)
                        g_warning("migration of %s: could not remove the copy on %s: %s; remove it there by hand (vfuctl destroy %s)",
                                  md->name, mg->destination, e.message ? e.message : "no reply", md->name);
                else
                        md->created = false;
                sd_bus_error_free(&e);
        }
}

/* The device names, for messages: "a, b". */
static char *device_list(Migration *mg) {
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < mg->devs->len; i++)
                g_string_append_printf(s, "%s%s", i ? ", " : "", ((MigrateDev *) mg->devs->pdata[i])->name);
        return g_string_free(s, FALSE);
}

/* The command that moves the domain by hand. */
static char *virsh_command(Migration *mg) {
        g_autofree char *conn = strcmp(mg->lv_uri, "qemu:///system") == 0 ? g_strdup("") :
                                g_strdup_printf(" -c '%s'", mg->lv_uri);

        return g_strdup_printf("virsh%s migrate --offline --persistent --undefinesource %s '%s'", conn, mg->vm,
                               mg->lv_dest_uri);
}

/* Before anything moves: whether the VM's domain is here to move, and refuse a running one.
 * FALSE with error to refuse; otherwise lv_dest_uri stays set only when the domain moves. */
static gboolean domain_check(Migration *mg, GError **error) {
        g_autoptr(GError) err = NULL;
        bool active = false;

        if (manager_libvirt_probe_domain(mg->lv_uri, mg->vm, &active, &err)) {
                if (!active)
                        return TRUE;
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_MIGRATABLE,
                            "VM %s is running in libvirt (%s): only a shut-off VM moves cold, with its domain; "
                            "shut it down first (virsh shutdown %s), then migrate it; nothing was moved",
                            mg->vm, mg->lv_uri, mg->vm);
                return FALSE;
        }
        if (mg->lv_explicit) {
                g_set_error(error, MANAGER_ERROR, err->code,
                            "option libvirt-uri asks to move VM %s's libvirt domain, but: %s; nothing was moved "
                            "(without libvirt-uri the devices move alone)", mg->vm, err->message);
                return FALSE;
        }
        g_free(mg->domain_note);
        mg->domain_note = g_strdup_printf("VM %s's libvirt domain did not move: %s (only the devices moved)", mg->vm,
                                          err->message);
        g_clear_pointer(&mg->lv_dest_uri, g_free);
        return TRUE;
}

/* Every device arrived: move the domain.  A failure leaves the devices there and says how to finish. */
static void domain_move(Migration *mg) {
        g_autoptr(GError) err = NULL;
        g_autofree char *names = device_list(mg), *cmd = virsh_command(mg);

        set_phase(mg, MIGRATION_COMPLETED);
        if (g_atomic_int_get(&mg->cancelled))
                g_set_error(&err, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s", mg->cancel_reason);
        else
                (void) manager_libvirt_migrate_domain(mg->lv_uri, mg->vm, mg->lv_dest_uri, &err);
        if (!err) {
                mg->domain_moved = true;
                g_free(mg->domain_note);
                mg->domain_note = g_strdup_printf("VM %s's libvirt domain moved to %s (defined there, undefined here)",
                                                  mg->vm, mg->lv_dest_uri);
                return;
        }
        g_set_error(&mg->domain_error, MANAGER_ERROR, err->code,
                    "VM %s's devices (%s) moved to %s and are removed here, but its libvirt domain did not move to "
                    "%s: %s. The domain is still defined here, unchanged; once the cause is fixed, finish with: %s",
                    mg->vm, names, mg->destination, mg->lv_dest_uri, err->message, cmd);
}

/*
 * Before anything moves: the destination's vfud answers and has none of the
 * names, and the libvirt the VM's domain is to move to answers and does not
 * have it yet.
 */
static gboolean dest_check(sd_bus *b, Migration *mg, GError **error) {
        for (guint i = 0; i < mg->devs->len; i++) {
                MigrateDev *md = mg->devs->pdata[i];
                sd_bus_error e = SD_BUS_ERROR_NULL;
                int r;

                r = sd_bus_call_method(b, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, "GetDevice", &e, NULL,
                                       "s", md->name);
                if (r >= 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_EXISTS,
                                    "%s already has a device named %s: destroy or rename it there first; nothing "
                                    "was moved", mg->destination, md->name);
                        return FALSE;
                }
                if (!sd_bus_error_has_name(&e, VFUD_DBUS_ERROR_NO_SUCH_DEVICE))
                        return call_failed(error, &e, r, mg->destination, "looking the device up");
                sd_bus_error_free(&e);
        }
        if (mg->lv_dest_uri) {
                g_autoptr(GError) err = NULL;
                bool active = false;

                if (manager_libvirt_probe_domain(mg->lv_dest_uri, mg->vm, &active, &err)) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_EXISTS,
                                    "VM %s is already defined in the destination's libvirt (%s): undefine it there "
                                    "first; nothing was moved", mg->vm, mg->lv_dest_uri);
                        return FALSE;
                }
                if (err->code != MANAGER_ERROR_NO_SUCH_VM) {
                        g_set_error(error, MANAGER_ERROR, err->code,
                                    "VM %s's libvirt domain is to move to %s, which does not answer: %s; nothing was "
                                    "moved (give libvirt-uri for another way there, or migrate the devices alone "
                                    "with vfuctl migrate NAME)", mg->vm, mg->lv_dest_uri, err->message);
                        return FALSE;
                }
        }
        return TRUE;
}

static void thread_wake_loop(Migration *mg) {
        uint64_t one = 1;

        if (write(mg->efd, &one, sizeof(one)) < 0)
                g_warning("cannot wake the event loop: %s", g_strerror(errno));
}

/* The destination checked: have the loop stop the cold devices, and wait for it (it always answers). */
static gboolean await_stopped(Migration *mg, GError **error) {
        g_mutex_lock(&mg->lock);
        mg->checked = true;
        g_mutex_unlock(&mg->lock);
        thread_wake_loop(mg);
        g_mutex_lock(&mg->lock);
        while (!mg->stopped)
                g_cond_wait(&mg->cond, &mg->lock);
        if (mg->stop_error)
                g_propagate_error(error, g_steal_pointer(&mg->stop_error));
        else if (g_atomic_int_get(&mg->cancelled))
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s", mg->cancel_reason);
        g_mutex_unlock(&mg->lock);
        return *error == NULL;
}

/* Every device arrived: from here on a cancel is refused (unless vfud exits). */
static gboolean commit(Migration *mg, GError **error) {
        g_mutex_lock(&mg->lock);
        if (g_atomic_int_get(&mg->cancelled))
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "%s", mg->cancel_reason);
        else
                mg->committed = true;
        g_mutex_unlock(&mg->lock);
        return mg->committed;
}

static gpointer migrate_thread(gpointer data) {
        Migration *mg = data;
        GError *error = NULL;
        sd_bus *b = NULL;

        if (!mg->lv_dest_uri || domain_check(mg, &error))
                b = dest_open(mg->destination, &error);
        if (b && dest_check(b, mg, &error) && await_stopped(mg, &error)) {
                g_mutex_lock(&mg->lock);
                mg->started = g_get_monotonic_time();
                mg->phase = mg->copy ? MIGRATION_COPYING : MIGRATION_PREPARING;
                g_mutex_unlock(&mg->lock);
                for (guint i = 0; !error && i < mg->devs->len; i++)
                        (void) migrate_one(b, mg, mg->devs->pdata[i], &error);
                if (!error && mg->live)
                        (void) await_hand_over(b, mg, &error);
                if (!error)
                        (void) commit(mg, &error);
                if (error)
                        rollback(b, mg);
        }
        if (b)
                sd_bus_flush_close_unref(b);
        /* checks failed: the loop stopped nothing */
        if (!error && mg->lv_dest_uri)
                domain_move(mg);
        g_mutex_lock(&mg->lock);
        mg->error = error;
        mg->phase = error ? MIGRATION_FAILED : MIGRATION_COMPLETED;
        mg->thread_done = true;
        g_mutex_unlock(&mg->lock);
        thread_wake_loop(mg);
        return NULL;
}

/* ---- back on the loop ---- */

/* The answer: the failure, the domain step's failure, or (MigrateVm) what became of the domain. */
static void migration_reply(Migration *mg) {
        if (mg->error || mg->domain_error) {
                if (mg->domain_error)
                        g_warning("migration of VM %s: %s", mg->vm, mg->domain_error->message);
                (void) manager_reply_error(mg->msg, mg->error ? mg->error : mg->domain_error);
        } else if (mg->by_vm) {
                if (mg->domain_note)
                        g_message("migration of VM %s: %s", mg->vm, mg->domain_note);
                (void) sd_bus_reply_method_return(mg->msg, "ss", mg->domain_moved ? mg->lv_dest_uri : "",
                                                  mg->domain_note ? mg->domain_note : "");
        } else
                (void) sd_bus_reply_method_return(mg->msg, NULL);
}

/* Every device is gone here (or the migration failed): answer the caller. */
static void migration_finish(Migration *mg) {
        GHashTableIter it;
        gpointer vm;

        /* the devices leave the VM's definition here, unless the domain itself moved or is to be moved */
        g_hash_table_iter_init(&it, mg->vms);
        while (!mg->error && !mg->domain_moved && !mg->domain_error && g_hash_table_iter_next(&it, &vm, NULL))
                manager_libvirt_apply(mg->manager, vm, NULL, NULL);
        migration_reply(mg);
        migration_free(mg);
}

static void remove_migrated(Migration *mg, Device *d) {
        Manager *m = mg->manager;

        device_log(d, G_LOG_LEVEL_MESSAGE, "migrated to %s, removing it here", mg->destination);
        device_ref(d);
        manager_emit_device_removed(m, d);
        device_remove_files(d);
        manager_remove_device(m, d);
        device_unref(d);
}

/* A handed-over device's worker exited (its client had moved on): remove the device. */
static void handed_over_stopped(Device *d, const GError *error, void *userdata) {
        Migration *mg = userdata;

        if (error)
                device_log(d, G_LOG_LEVEL_WARNING, "stopping the handed-over worker: %s", error->message);
        if (!d->removed)
                remove_migrated(mg, d);
        if (--mg->removals_pending == 0)
                migration_finish(mg);
}

static void stopped_for_migration(Device *d, const GError *error, void *userdata);

/* The cold devices stopped (or a cancel came first): the thread goes on. */
static void devices_stopped(Migration *mg, const GError *error) {
        g_mutex_lock(&mg->lock);
        mg->stopped = true;
        if (error && !mg->stop_error)
                mg->stop_error = g_error_copy(error);
        g_cond_broadcast(&mg->cond);
        g_mutex_unlock(&mg->lock);
}

/* Nothing may connect while the definitions move; live devices keep serving their client. */
static void stop_devices(Migration *mg) {
        g_autoptr(GPtrArray) cold = g_ptr_array_new_with_free_func(device_unref_notify);

        for (guint i = 0; i < mg->devs->len; i++) {
                MigrateDev *md = mg->devs->pdata[i];

                if (!md->live)
                        g_ptr_array_add(cold, device_ref(md->device));
        }
        mg->stops_pending = cold->len;
        if (cold->len == 0 || g_atomic_int_get(&mg->cancelled)) {
                devices_stopped(mg, NULL);
                return;
        }
        for (guint i = 0; i < cold->len; i++)
                device_stop(cold->pdata[i], stopped_for_migration, mg);
}

static void stopped_for_migration(Device *d, const GError *error, void *userdata) {
        Migration *mg = userdata;

        if (error) {
                g_mutex_lock(&mg->lock);
                if (!mg->stop_error)
                        mg->stop_error = g_error_copy(error);
                g_mutex_unlock(&mg->lock);
        }
        if (--mg->stops_pending == 0)
                devices_stopped(mg, NULL);
}

static int on_thread_done(Migration *mg);

/* The thread checked the destination (stop the devices) or is done. */
static int on_thread_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Migration *mg = userdata;
        bool done, stop;
        uint64_t v;

        if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                g_warning("migration: reading the thread's eventfd: %s", g_strerror(errno));
        g_mutex_lock(&mg->lock);
        done = mg->thread_done;
        stop = mg->checked && !mg->stopping;
        mg->stopping = mg->stopping || stop;
        g_mutex_unlock(&mg->lock);
        if (stop)
                stop_devices(mg);
        return done ? on_thread_done(mg) : 0;
}

static int on_thread_done(Migration *mg) {
        g_autoptr(GPtrArray) handed_over = g_ptr_array_new_with_free_func(device_unref_notify);

        g_thread_join(mg->thread);
        mg->thread = NULL;
        mg->done_source = sd_event_source_disable_unref(mg->done_source);
        mg->timer = sd_event_source_disable_unref(mg->timer);
        progress_publish(mg);
        for (guint i = 0; i < mg->devs->len; i++) {
                MigrateDev *md = mg->devs->pdata[i];
                Device *d = md->device;

                if (!d)
                        continue;
                d->migration = NULL;
                if (d->removed)
                        continue;
                if (md->live && d->mig_socket) {
                        g_clear_pointer(&d->mig_socket, g_free);
                        device_emit_changed(d, "MigrationSocket", NULL);
                }
                if (mg->error) {
                        device_log(d, G_LOG_LEVEL_WARNING, "migration to %s failed: %s", mg->destination,
                                   mg->error->message);
                        if (md->was_running && !md->live)
                                device_start(d, NULL, NULL);
                        continue;
                }
                if (*d->vm)
                        g_hash_table_add(mg->vms, g_strdup(d->vm));
                if (md->live)
                        g_ptr_array_add(handed_over, device_ref(d));
                else
                        remove_migrated(mg, d);
        }
        if (handed_over->len == 0) {
                migration_finish(mg);
                return 0;
        }
        /* The client works on the destination now: this side's workers go, then the devices. */
        mg->removals_pending = handed_over->len + 1;
        for (guint i = 0; i < handed_over->len; i++)
                device_stop_handed_over(handed_over->pdata[i], handed_over_stopped, mg);
        if (--mg->removals_pending == 0)
                migration_finish(mg);
        return 0;
}

static void migration_start_thread(Migration *mg) {
        Manager *m = mg->manager;
        uint64_t now;
        int r;

        mg->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        r = mg->efd < 0 ? -errno : sd_event_add_io(m->event, &mg->done_source, mg->efd, EPOLLIN, on_thread_event, mg);
        if (r >= 0) {
                (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
                r = sd_event_add_time(m->event, &mg->timer, CLOCK_MONOTONIC, now + PROGRESS_INTERVAL_USEC, 0,
                                      on_progress_timer, mg);
        }
        if (r < 0) {
                g_set_error(&mg->error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot start the migration: %s",
                            g_strerror(-r));
                if (mg->efd >= 0) {
                        uint64_t one = 1;

                        if (write(mg->efd, &one, sizeof(one)) >= 0 && mg->done_source)
                                return;
                }
                (void) manager_reply_error(mg->msg, mg->error);
                migration_free(mg);
                return;
        }
        mg->thread = g_thread_new("vfud-migrate", migrate_thread, mg);
        g_ptr_array_add(m->migrations, mg);
}

void manager_migrations_abort(Manager *m) {
        GHashTableIter it;
        gpointer v;

        /* images arriving here: their senders see the stream break */
        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v))
                migrate_receive_cancel(v);
        while (m->migrations && m->migrations->len) {
                Migration *mg = m->migrations->pdata[0];

                /* Stop copying, let the thread roll the destination back, and keep the devices here. */
                migration_cancel(mg, "vfud on this host is exiting: migrate again once it is back", true);
                /* a thread waiting for the loop to stop the devices goes on without: the loop is gone */
                g_mutex_lock(&mg->lock);
                mg->stopped = true;
                g_cond_broadcast(&mg->cond);
                g_mutex_unlock(&mg->lock);
                g_message("migration to %s: vfud is exiting, stopping it (the destination is rolled back)",
                          mg->destination);
                if (mg->thread)
                        g_thread_join(mg->thread);
                mg->thread = NULL;
                for (guint i = 0; i < mg->devs->len; i++) {
                        MigrateDev *md = mg->devs->pdata[i];
                        Device *d = md->device;

                        if (!d || d->removed)
                                continue;
                        d->migration = NULL;
                        if (mg->error) {
                                /* the next vfud starts it again */
                                if (md->was_running)
                                        device_set_stopped_marker(d, false);
                                continue;
                        }
                        /* handed over: its client works on the destination */
                        if (md->live)
                                device_worker_kill(d, SIGTERM);
                        remove_migrated(mg, d);
                }
                migration_reply(mg);
                migration_free(mg);
        }
        g_clear_pointer(&m->migrations, g_ptr_array_unref);
}

static gboolean add_device(Migration *mg, Device *d, const char *storage, GError **error) {
        JsonObject *o = json_node_get_object(d->options);
        JsonArray *nss = json_object_has_member(o, "namespaces") ? json_object_get_array_member(o, "namespaces") : NULL;
        MigrateDev *md;

        if (d->migration) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY, "device %s is being migrated already",
                            d->name);
                return FALSE;
        }
        if (d->state == DEVICE_CONNECTED && !d->client_mig.client) {
                if (*d->vm)
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_MIGRATABLE,
                                    "device %s is connected to VM %s, whose vfio-user client has not negotiated vfio-user "
                                    "migration (QEMU's vfio-user-pci client cannot migrate device state), so it cannot move "
                                    "while the VM runs: shut the VM down, then migrate it cold (vfuctl migrate --vm %s --to HOST)",
                                    d->name, d->vm, d->vm);
                else
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_MIGRATABLE,
                                    "device %s is connected to a vfio-user client that has not negotiated vfio-user migration "
                                    "(QEMU's vfio-user-pci client cannot migrate device state), so it cannot move while in use: "
                                    "stop the client, then migrate it cold (vfuctl migrate %s --to HOST)",
                                    d->name, d->name);
                return FALSE;
        }
        if (d->state == DEVICE_CONNECTED && mg->copy && nss && json_array_get_length(nss) > 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_MIGRATABLE,
                            "device %s is in use, and a disk in use cannot be copied consistently: live migration needs "
                            "its namespaces on storage both hosts share (storage=shared); or stop the VM and migrate cold "
                            "with storage=copy", d->name);
                return FALSE;
        }
        if (d->state == DEVICE_STARTING || d->state == DEVICE_STOPPING) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY, "device %s is %s: try again in a moment",
                            d->name, device_state_to_string(d->state));
                return FALSE;
        }
        md = g_new0(MigrateDev, 1);
        md->mg = mg;
        md->device = device_ref(d);
        md->live = d->state == DEVICE_CONNECTED;
        if (md->live) {
                mg->live = true;
                g_strlcpy(md->src_state, d->client_mig.state ? d->client_mig.state : "", sizeof(md->src_state));
                md->src_connected = true;
                md->base_bytes = d->client_mig.bytes_read;
                md->base_failed = d->client_mig.failed;
        }
        md->name = g_strdup(d->name);
        md->type = g_strdup(d->type);
        md->vm = g_strdup(d->vm);
        md->options = json_node_copy(d->options);
        md->was_running = d->state == DEVICE_LISTENING;
        md->images = g_array_new(FALSE, TRUE, sizeof(MigrateImage));
        g_ptr_array_add(mg->devs, md);
        for (guint i = 0; nss && i < json_array_get_length(nss); i++) {
                JsonObject *ns = json_array_get_object_element(nss, i);
                const char *kind = json_object_get_string_member_with_default(ns, "kind", "image");
                const char *path = json_object_get_string_member_with_default(ns, "path",
                                   json_object_get_string_member_with_default(ns, "uri",
                                   json_object_get_string_member_with_default(ns, "image", "")));
                uint32_t nsid = (uint32_t) json_object_get_int_member_with_default(ns, "nsid", 0);

                if (strcmp(kind, "null") == 0)
                        continue;               /* no data to move */
                if (!*storage) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "say how %s's storage gets to the destination: storage=copy (images vfud created are copied) "
                                    "or storage=shared (the same paths exist there)", d->name);
                        return FALSE;
                }
                if (strcmp(kind, "image") == 0 && !mg->copy) {
                        if (md->live)
                                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_MIGRATABLE,
                                            "namespace %u of %s is an image in vfud's state directory (%s), which no other "
                                            "host shares, and a disk in use cannot be copied: live migration needs "
                                            "namespaces on shared storage (file= or block= paths both hosts see); or stop "
                                            "the VM and migrate cold with storage=copy", nsid, d->name, path);
                        else
                                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_MIGRATABLE,
                                            "namespace %u of %s is an image in vfud's state directory (%s), which no other host shares: use storage=copy",
                                            nsid, d->name, path);
                        return FALSE;
                }
                if (strcmp(kind, "image") != 0 && mg->copy) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_MIGRATABLE,
                                    "namespace %u of %s is backed by %s, which vfud did not create and does not copy: "
                                    "put it on storage both hosts share and use storage=shared",
                                    nsid, d->name, path);
                        return FALSE;
                }
                if (mg->copy) {
                        MigrateImage img = { nsid, g_strdup(path),
                                             (uint64_t) json_object_get_int_member_with_default(ns, "size", 0) };

                        g_array_append_val(md->images, img);
                        mg->total += img.size;
                }
        }
        return TRUE;
}


/* MigrateVm: whether the VM's libvirt domain follows its devices (checked again in the thread). */
static gboolean plan_domain(Migration *mg, const char *vm, const char *libvirt_uri, GError **error) {
        Manager *m = mg->manager;
        gboolean address = strchr(mg->destination, '=') || strchr(mg->destination, ':');

        mg->by_vm = true;
        mg->vm = g_strdup(vm);
        mg->lv_uri = g_strdup(m->config.libvirt_uri ? m->config.libvirt_uri : "qemu:///system");
        if (mg->live) {
                if (libvirt_uri) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "VM %s's devices are in use by a VMM that migrates them live, so it is not a "
                                    "libvirt VM whose domain moves offline: drop libvirt-uri", vm);
                        return FALSE;
                }
                mg->domain_note = g_strdup_printf("VM %s's devices moved live: its VMM moves the VM itself, no "
                                                  "libvirt domain moved", vm);
                return TRUE;
        }
        if (!m->config.libvirt_enabled) {
                if (libvirt_uri) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_LIBVIRT_UNAVAILABLE,
                                    "option libvirt-uri asks to move VM %s's libvirt domain, but libvirt integration "
                                    "is disabled here ([Libvirt] Enabled=no in vfud.conf): enable it, or drop "
                                    "libvirt-uri and move the domain with virsh migrate --offline", vm);
                        return FALSE;
                }
                mg->domain_note = g_strdup_printf("VM %s's libvirt domain did not move: libvirt integration is "
                                                  "disabled here ([Libvirt] Enabled=no; only the devices moved)", vm);
                return TRUE;
        }
        if (libvirt_uri)
                mg->lv_dest_uri = g_strdup(libvirt_uri);
        else if (!address)
                mg->lv_dest_uri = g_strdup_printf("qemu+ssh://%s/system", mg->destination);
        else {
                mg->domain_note = g_strdup_printf("VM %s's libvirt domain did not move: the destination is a bus "
                                                  "address, whose libvirt cannot be guessed (give libvirt-uri to "
                                                  "move it along; to move it now: virsh migrate --offline "
                                                  "--persistent --undefinesource %s URI)", vm, vm);
                return TRUE;
        }
        mg->lv_explicit = libvirt_uri != NULL;
        return TRUE;
}

gboolean migration_begin(Manager *m, sd_bus_message *msg, GPtrArray *devices, const MigrateRequest *req,
                         GError **error) {
        Migration *mg;

        mg = g_new0(Migration, 1);
        mg->manager = m;
        mg->efd = -1;
        mg->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        mg->destination = g_strdup(req->destination);
        mg->copy = strcmp(req->storage, "copy") == 0;
        mg->timeout_usec = (uint64_t) req->timeout * G_USEC_PER_SEC;
        mg->devs = g_ptr_array_new_with_free_func((GDestroyNotify) migrate_dev_free);
        mg->vms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        mg->phase = MIGRATION_PREPARING;
        g_mutex_init(&mg->lock);
        g_cond_init(&mg->cond);
        for (guint i = 0; i < devices->len; i++)
                if (!add_device(mg, devices->pdata[i], req->storage, error)) {
                        migration_free(mg);
                        return FALSE;
                }
        if (req->vm && !plan_domain(mg, req->vm, req->libvirt_uri, error)) {
                migration_free(mg);
                return FALSE;
        }
        mg->msg = sd_bus_message_ref(msg);
        for (guint i = 0; i < mg->devs->len; i++) {
                MigrateDev *md = mg->devs->pdata[i];

                md->device->migration = mg;
                device_set_migration(md->device, MIGRATION_PREPARING, 0, mg->total, 0, 0);
                device_log(md->device, G_LOG_LEVEL_MESSAGE, "migrating to %s (%s, storage %s)", req->destination,
                           md->live ? "live" : "cold", mg->copy ? "copied" : *req->storage ? "shared" : "none");
        }
        /* the thread checks the destination, then has the loop stop the cold devices (stop_devices) */
        migration_start_thread(mg);
        return TRUE;
}

int migration_cancel_device(Device *d, const char *reason, GError **error) {
        Migration *mg = d->migration;

        if (!mg) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_NOT_RUNNING, "no migration of %s is running", d->name);
                return -ESRCH;
        }
        if (!migration_cancel(mg, reason, false)) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY,
                            "the migration to %s is past its point of no return (every device arrived there): it "
                            "finishes", mg->destination);
                return -EBUSY;
        }
        g_message("migration to %s: cancelled (%s)", mg->destination, d->name);
        return 0;
}

const char *migration_destination(Device *d) {
        return d->migration ? d->migration->destination : NULL;
}
