/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfud and libvirt (see manager-libvirt.h): one worker thread runs the
 * blocking vlv_* calls in submission order; finished jobs and lifecycle
 * events come back to the event loop through an eventfd.
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "manager-libvirt.h"
#include "device.h"
#include "device-type.h"
#include "vlv.h"

/* How long a detach waits for the guest to release the device. */
#define DETACH_TIMEOUT_MS 20000

typedef enum JobKind {
        JOB_APPLY,
        JOB_GET_XML,
        JOB_ATTACH,
        JOB_DETACH,
        JOB_SYNC,               /* read which devices vm's persistent definition carries */
        JOB_EVENT,              /* from the watch: vm defined or (re)connected */
} JobKind;

typedef struct Job {
        JobKind kind;
        char *vm, *vm_uuid;
        VlvWatchEvent event;
        GPtrArray *names, *sockets;     /* the VM's devices (char*) */
        GPtrArray *found;               /* JOB_SYNC: the definition's devices (VlvDomainDevice) */
        char *result;
        GError *error;
        Device *device;                 /* attach/detach */
        gboolean msix;                  /* detach: the device has MSI-X */
        LibvirtDoneFunc done;
        void *userdata;
} Job;

struct ManagerLibvirt {
        Manager *manager;
        GThreadPool *pool;
        GAsyncQueue *finished;          /* Job */
        int efd;
        sd_event_source *source;
        VlvWatch *watch;
};

static void job_free(Job *j) {
        g_free(j->vm);
        g_free(j->vm_uuid);
        if (j->names)
                g_ptr_array_unref(j->names);
        if (j->sockets)
                g_ptr_array_unref(j->sockets);
        if (j->found)
                g_ptr_array_unref(j->found);
        g_free(j->result);
        g_clear_error(&j->error);
        device_unref(j->device);
        g_free(j);
}

void device_set_libvirt_status(Device *d, const char *status, const char *error) {
        if (g_strcmp0(d->libvirt_status, status) == 0 && g_strcmp0(d->libvirt_error, error ? error : "") == 0)
                return;
        g_free(d->libvirt_status);
        d->libvirt_status = g_strdup(status);
        g_free(d->libvirt_error);
        d->libvirt_error = g_strdup(error ? error : "");
        device_emit_changed(d, "LibvirtStatus", "LibvirtError", NULL);
}

/* A vlv error as a manager error: the message stays, the D-Bus name follows the cause. */
static void set_from_vlv(GError **dest, GError *src) {
        ManagerErrorCode code = MANAGER_ERROR_BACKEND_FAILED;

        if (src->domain == VLV_ERROR)
                switch ((VlvError) src->code) {
                case VLV_ERROR_INVALID:
                case VLV_ERROR_XML:
                        code = MANAGER_ERROR_INVALID_ARGUMENT;
                        break;
                case VLV_ERROR_UNSUPPORTED:
                case VLV_ERROR_MEMORY:
                case VLV_ERROR_ADDRESS:
                        code = MANAGER_ERROR_NOT_SUPPORTED;
                        break;
                case VLV_ERROR_UNREACHABLE:
                        code = MANAGER_ERROR_LIBVIRT_UNAVAILABLE;
                        break;
                case VLV_ERROR_NO_VM:
                        code = MANAGER_ERROR_NO_SUCH_VM;
                        break;
                case VLV_ERROR_ATTACHED_ELSEWHERE:
                        code = MANAGER_ERROR_DEVICE_BUSY;
                        break;
                case VLV_ERROR_RUNNING:
                        code = MANAGER_ERROR_NOT_MIGRATABLE;
                        break;
                case VLV_ERROR_LIBVIRT:
                case VLV_ERROR_HOTPLUG:
                case VLV_ERROR_TIMEOUT:
                        code = MANAGER_ERROR_BACKEND_FAILED;
                        break;
                }
        g_set_error_literal(dest, MANAGER_ERROR, code, src->message);
        g_error_free(src);
}

static VlvDevice *job_devices(Job *j, size_t *n) {
        VlvDevice *devs = g_new0(VlvDevice, j->names->len + 1);

        for (guint i = 0; i < j->names->len; i++) {
                devs[i].name = j->names->pdata[i];
                devs[i].socket_path = j->sockets->pdata[i];
        }
        *n = j->names->len;
        return devs;
}

/* ---- blocking calls for other threads (migrate.c) ---- */

gboolean manager_libvirt_probe_domain(const char *uri, const char *vm, bool *active, GError **error) {
        gboolean a = FALSE, p = FALSE;
        GError *err = NULL;

        if (!vlv_domain_probe(uri, vm, &a, &p, &err)) {
                set_from_vlv(error, err);
                return FALSE;
        }
        *active = a;
        return TRUE;
}

gboolean manager_libvirt_migrate_domain(const char *uri, const char *vm, const char *dest_uri, GError **error) {
        GError *err = NULL;

        if (!vlv_domain_migrate_offline(uri, vm, dest_uri, &err)) {
                set_from_vlv(error, err);
                return FALSE;
        }
        return TRUE;
}

/* ---- the worker thread ---- */

static void job_run(gpointer data, gpointer userdata) {
        Job *j = data;
        ManagerLibvirt *lv = userdata;
        const char *uri = lv->manager->config.libvirt_uri;
        GError *err = NULL;
        uint64_t one = 1;

        switch (j->kind) {
        case JOB_APPLY:
        case JOB_GET_XML: {
                size_t n;
                g_autofree VlvDevice *devs = job_devices(j, &n);

                if (j->kind == JOB_APPLY)
                        (void) vlv_domain_apply(uri, j->vm, devs, n, &err);
                else
                        j->result = vlv_domain_get_xml(uri, j->vm, devs, n, &err);
                break;
        }
        case JOB_ATTACH: {
                VlvDevice dev = { j->names->pdata[0], j->sockets->pdata[0] };

                (void) vlv_attach(uri, j->vm, &dev, &err);
                break;
        }
        case JOB_DETACH:
                (void) vlv_detach(uri, j->vm, j->names->pdata[0], j->msix, DETACH_TIMEOUT_MS, &err);
                break;
        case JOB_SYNC:
                j->found = vlv_domain_list_devices(uri, j->vm, &err);
                break;
        case JOB_EVENT:
                break;
        }
        if (err)
                set_from_vlv(&j->error, err);
        g_async_queue_push(lv->finished, j);
        if (write(lv->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                g_warning("cannot wake the event loop: %s", g_strerror(errno));
}

/* The watch's thread: hand the event to the event loop. */
static void on_watch(VlvWatchEvent event, const char *vm_name, const char *vm_uuid, gpointer userdata) {
        ManagerLibvirt *lv = userdata;
        Job *j = g_new0(Job, 1);
        uint64_t one = 1;

        j->kind = JOB_EVENT;
        j->event = event;
        j->vm = g_strdup(vm_name);
        j->vm_uuid = g_strdup(vm_uuid);
        g_async_queue_push(lv->finished, j);
        if (write(lv->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
                g_warning("cannot wake the event loop: %s", g_strerror(errno));
}

/* ---- the event loop ---- */

static Job *job_new(Manager *m, JobKind kind, const char *vm, LibvirtDoneFunc done, void *userdata) {
        Job *j = g_new0(Job, 1);

        j->kind = kind;
        j->vm = g_strdup(vm);
        j->names = g_ptr_array_new_with_free_func(g_free);
        j->sockets = g_ptr_array_new_with_free_func(g_free);
        j->done = done;
        j->userdata = userdata;
        return j;
}

static gint compare_names(gconstpointer a, gconstpointer b) {
        return strcmp((*(Device *const *) a)->name, (*(Device *const *) b)->name);
}

/* The devices of vm that belong in its definition, sorted by name. */
static void job_add_vm_devices(Manager *m, Job *j) {
        g_autoptr(GPtrArray) list = g_ptr_array_new();
        GHashTableIter it;
        gpointer v;

        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Device *d = v;

                if (d->exported && !d->removed && strcmp(d->vm, j->vm) == 0)
                        g_ptr_array_add(list, d);
        }
        g_ptr_array_sort(list, compare_names);
        for (guint i = 0; i < list->len; i++) {
                Device *d = list->pdata[i];

                g_ptr_array_add(j->names, g_strdup(d->name));
                g_ptr_array_add(j->sockets, g_strdup(d->socket_path));
        }
}

static void job_finish(Manager *m, Job *j, const GError *error) {
        if (j->done)
                j->done(m, j->result, error, j->userdata);
        job_free(j);
}

static void job_submit(Manager *m, Job *j) {
        g_autoptr(GError) error = NULL;

        if (!m->libvirt || !m->config.libvirt_enabled) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_LIBVIRT_UNAVAILABLE,
                            "libvirt integration is disabled ([Libvirt] Enabled=no in vfud.conf)");
                job_finish(m, j, error);
                return;
        }
        if (!g_thread_pool_push(m->libvirt->pool, j, &error))
                job_finish(m, j, error);
}

static void device_failed(Device *d, const char *vm, const GError *error) {
        device_set_libvirt_status(d, "failed", error->message);
        device_log(d, G_LOG_LEVEL_WARNING, "VM %s's definition not updated: %s", vm, error->message);
}

static void apply_finished(Manager *m, Job *j) {
        for (guint i = 0; i < j->names->len; i++) {
                Device *d = manager_find_device(m, j->names->pdata[i]);

                if (!d || strcmp(d->vm, j->vm) != 0)
                        continue;
                if (j->error)
                        device_failed(d, j->vm, j->error);
                else
                        device_set_libvirt_status(d, "applied", NULL);
        }
}

void manager_libvirt_apply(Manager *m, const char *vm, LibvirtDoneFunc done, void *userdata) {
        Job *j = job_new(m, JOB_APPLY, vm, done, userdata);

        job_add_vm_devices(m, j);
        for (guint i = 0; i < j->names->len; i++) {
                Device *d = manager_find_device(m, j->names->pdata[i]);

                if (d)
                        device_set_libvirt_status(d, m->config.libvirt_enabled ? "pending" : "disabled", NULL);
        }
        if (!m->config.libvirt_enabled) {
                job_finish(m, j, NULL);
                return;
        }
        job_submit(m, j);
}

void manager_libvirt_get_xml(Manager *m, const char *vm, LibvirtDoneFunc done, void *userdata) {
        Job *j = job_new(m, JOB_GET_XML, vm, done, userdata);

        job_add_vm_devices(m, j);
        job_submit(m, j);
}

char *manager_libvirt_render(Manager *m, const char *vm, const char *in_xml, GError **error) {
        g_autoptr(GPtrArray) devs = NULL;
        Job *j = job_new(m, JOB_GET_XML, vm, NULL, NULL);
        g_autofree VlvDevice *list = NULL;
        GError *err = NULL;
        char *out = NULL;
        size_t n;

        job_add_vm_devices(m, j);
        list = job_devices(j, &n);
        if (!vlv_domxml_render(in_xml, list, n, &out, NULL, &err))
                set_from_vlv(error, err);
        job_free(j);
        return out;
}

void manager_libvirt_attach(Manager *m, Device *d, const char *vm, LibvirtDoneFunc done, void *userdata) {
        Job *j = job_new(m, JOB_ATTACH, vm, done, userdata);

        j->device = device_ref(d);
        g_ptr_array_add(j->names, g_strdup(d->name));
        g_ptr_array_add(j->sockets, g_strdup(d->socket_path));
        job_submit(m, j);
}

void manager_libvirt_detach(Manager *m, Device *d, LibvirtDoneFunc done, void *userdata) {
        Job *j = job_new(m, JOB_DETACH, d->vm, done, userdata);

        j->device = device_ref(d);
        j->msix = !d->dtype->uses_msix || d->dtype->uses_msix(d);
        g_ptr_array_add(j->names, g_strdup(d->name));
        g_ptr_array_add(j->sockets, g_strdup(d->socket_path));
        job_submit(m, j);
}

/* The device's entry in defs (VlvDomainDevice), or NULL. */
static VlvDomainDevice *found_device(GPtrArray *defs, const char *name) {
        for (guint i = 0; i < defs->len; i++) {
                VlvDomainDevice *f = defs->pdata[i];

                if (strcmp(f->name, name) == 0)
                        return f;
        }
        return NULL;
}

/*
 * The VM's definition no longer carries a device vfud had written into it: someone
 * (virsh edit, a tool, an orchestrator's define) detached it.  Follow them: the
 * device belongs to no VM any more, and vfud does not put it back.
 */
static void detached_outside(Device *d, const char *vm) {
        g_autofree char *old = d->vm;
        g_autoptr(GError) error = NULL;

        device_log(d, G_LOG_LEVEL_MESSAGE,
                   "VM %s's persistent definition was changed without it: detached (`vfuctl attach %s %s` "
                   "puts it back)", vm, d->name, vm);
        d->vm = g_strdup("");
        if (!device_save(d, &error)) {
                device_log(d, G_LOG_LEVEL_WARNING, "cannot record the detach: %s", error->message);
                g_free(d->vm);
                d->vm = g_steal_pointer(&old);
                return;
        }
        device_set_libvirt_status(d, "", NULL);
        device_emit_changed(d, "Vm", NULL);
}

/*
 * What vm's persistent definition carries, against vfud's record of vm's devices:
 *   carried                    applied
 *   missing, had been applied  detached outside vfud (detached_outside)
 *   missing, never applied     (VM defined after its device, or defined again after
 *                              an undefine): written in
 * and vfu entries of devices vfud does not record for vm are dropped.
 */
static void sync_finished(Manager *m, Job *j) {
        g_autoptr(GPtrArray) mine = g_ptr_array_new();
        bool apply = false;
        GHashTableIter it;
        gpointer v;

        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Device *d = v;

                if (d->exported && !d->removed && strcmp(d->vm, j->vm) == 0)
                        g_ptr_array_add(mine, d);
        }
        for (guint i = 0; i < mine->len; i++) {
                Device *d = mine->pdata[i];
                VlvDomainDevice *f = j->found ? found_device(j->found, d->name) : NULL;

                if (j->error)
                        device_failed(d, j->vm, j->error);
                else if (f && g_strcmp0(f->socket_path, d->socket_path) == 0)
                        device_set_libvirt_status(d, "applied", NULL);
                else if (!f && g_strcmp0(d->libvirt_status, "applied") == 0)
                        detached_outside(d, j->vm);
                else
                        apply = true;
        }
        for (guint i = 0; j->found && i < j->found->len; i++) {
                VlvDomainDevice *f = j->found->pdata[i];
                Device *d = manager_find_device(m, f->name);

                if (!d || !d->exported || d->removed || strcmp(d->vm, j->vm) != 0)
                        apply = true;
        }
        if (apply)
                manager_libvirt_apply(m, j->vm, NULL, NULL);
}

static void manager_libvirt_sync(Manager *m, const char *vm) {
        job_submit(m, job_new(m, JOB_SYNC, vm, NULL, NULL));
}

/* A VM was defined (or libvirt came back): bring the definitions of the VMs with devices up to date. */
static void watch_event(Manager *m, Job *ev) {
        g_autoptr(GHashTable) vms = g_hash_table_new(g_str_hash, g_str_equal);
        GHashTableIter it;
        gpointer v;

        g_hash_table_iter_init(&it, m->devices);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Device *d = v;

                if (!d->exported || d->removed || !*d->vm)
                        continue;
                if (ev->event == VLV_WATCH_CONNECTED ||
                    (ev->event == VLV_WATCH_DEFINED &&
                     (g_strcmp0(d->vm, ev->vm) == 0 || g_strcmp0(d->vm, ev->vm_uuid) == 0)))
                        g_hash_table_add(vms, d->vm);
                else if (ev->event == VLV_WATCH_UNDEFINED &&
                         (g_strcmp0(d->vm, ev->vm) == 0 || g_strcmp0(d->vm, ev->vm_uuid) == 0))
                        device_set_libvirt_status(d, "failed",
                                                  "the VM's persistent definition was removed (undefined); defining it again brings the device back");
        }
        g_hash_table_iter_init(&it, vms);
        while (g_hash_table_iter_next(&it, &v, NULL))
                manager_libvirt_sync(m, v);
}

static int on_finished(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        ManagerLibvirt *lv = userdata;
        uint64_t n;
        Job *j;

        if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
                g_warning("cannot read the libvirt completion eventfd: %s", g_strerror(errno));
        while ((j = g_async_queue_try_pop(lv->finished))) {
                if (j->kind == JOB_EVENT) {
                        watch_event(lv->manager, j);
                        job_free(j);
                        continue;
                }
                if (j->kind == JOB_APPLY)
                        apply_finished(lv->manager, j);
                else if (j->kind == JOB_SYNC)
                        sync_finished(lv->manager, j);
                job_finish(lv->manager, j, j->error);
        }
        return 0;
}

gboolean manager_libvirt_init(Manager *m, GError **error) {
        ManagerLibvirt *lv = g_new0(ManagerLibvirt, 1);
        int r;

        lv->manager = m;
        m->libvirt = lv;
        lv->finished = g_async_queue_new();
        lv->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (lv->efd < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot create an eventfd: %s",
                            g_strerror(errno));
                return FALSE;
        }
        r = sd_event_add_io(m->event, &lv->source, lv->efd, EPOLLIN, on_finished, lv);
        if (r < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot watch an eventfd: %s",
                            g_strerror(-r));
                return FALSE;
        }
        if (!m->config.libvirt_enabled)
                return TRUE;
        lv->pool = g_thread_pool_new(job_run, lv, 1, TRUE, error);
        if (!lv->pool)
                return FALSE;
        {
                g_autoptr(GError) werr = NULL;

                lv->watch = vlv_watch_new(m->config.libvirt_uri, 0, on_watch, lv, &werr);
                if (!lv->watch)
                        g_message("not watching libvirt for VM definitions: %s", werr->message);
        }
        return TRUE;
}

void manager_libvirt_free(Manager *m) {
        ManagerLibvirt *lv = m->libvirt;
        Job *j;

        if (!lv)
                return;
        vlv_watch_free(lv->watch);
        if (lv->pool)
                g_thread_pool_free(lv->pool, FALSE, TRUE);
        while ((j = g_async_queue_try_pop(lv->finished)))
                job_finish(m, j, j->error);
        g_async_queue_unref(lv->finished);
        sd_event_source_disable_unref(lv->source);
        if (lv->efd >= 0)
                close(lv->efd);
        m->libvirt = NULL;
        g_free(lv);
}
