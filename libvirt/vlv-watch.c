/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * VlvWatch: domain definitions appearing or changing in libvirt, handed
 * to the caller in a worker thread of its own.
 *
 * libvirt calls our callbacks in the vlv-events thread; they only queue
 * what happened.  The worker thread owns the connection: it connects
 * (again, after libvirtd restarts), and runs the caller's function for
 * each queued event, so that function may block on libvirt without
 * stalling keepalives or other events.
 */
#include "vlv-libvirt.h"

typedef enum {
        ITEM_EVENT, /* a domain event for the caller */
        ITEM_CLOSED, /* the connection went away */
        ITEM_STOP, /* vlv_watch_free */
} ItemKind;

typedef struct {
        ItemKind kind;
        VlvWatchEvent event;
        char *name;
        char *uuid;
} Item;

struct VlvWatch {
        char *uri;
        guint retry_ms;
        VlvWatchFunc func;
        gpointer user_data;
        GAsyncQueue *queue; /* Item; also referenced by libvirt callbacks */
        GThread *worker;
};

static void item_free(Item *item) {
        g_free(item->name);
        g_free(item->uuid);
        g_free(item);
}

static void push(GAsyncQueue *queue, ItemKind kind, VlvWatchEvent event, virDomainPtr dom) {
        Item *item = g_new0(Item, 1);
        char uuid[VIR_UUID_STRING_BUFLEN];

        item->kind = kind;
        item->event = event;
        if (dom) {
                item->name = g_strdup(virDomainGetName(dom));
                if (virDomainGetUUIDString(dom, uuid) == 0)
                        item->uuid = g_strdup(uuid);
        }
        g_async_queue_push(queue, item);
}

/* in the vlv-events thread */
static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        if (event == VIR_DOMAIN_EVENT_DEFINED)
                push(opaque, ITEM_EVENT, VLV_WATCH_DEFINED, dom);
        else if (event == VIR_DOMAIN_EVENT_UNDEFINED)
                push(opaque, ITEM_EVENT, VLV_WATCH_UNDEFINED, dom);
        return 0;
}

/* in the vlv-events thread */
static void on_close(virConnectPtr conn, int reason, void *opaque) {
        push(opaque, ITEM_CLOSED, VLV_WATCH_CONNECTED, NULL);
}

typedef struct {
        virConnect *conn;
        int lifecycle_id;
} Connection;

static void disconnect(Connection *c) {
        if (!c->conn)
                return;
        if (c->lifecycle_id >= 0)
                virConnectDomainEventDeregisterAny(c->conn, c->lifecycle_id);
        virConnectUnregisterCloseCallback(c->conn, on_close);
        virConnectClose(c->conn);
        c->conn = NULL;
        c->lifecycle_id = -1;
}

static gboolean connect_watch(VlvWatch *w, Connection *c) {
        c->conn = virConnectOpen(w->uri);
        if (!c->conn) {
                g_debug("vlv: watch: cannot connect to %s: %s", w->uri, virGetLastErrorMessage());
                return FALSE;
        }
        if (virConnectSetKeepAlive(c->conn, 5, 3) < 0)
                g_debug("vlv: watch: no keepalive on %s: %s", w->uri, virGetLastErrorMessage());
        c->lifecycle_id = virConnectDomainEventRegisterAny(
                c->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
                g_async_queue_ref(w->queue), (virFreeCallback) g_async_queue_unref);
        if (c->lifecycle_id < 0 ||
            virConnectRegisterCloseCallback(c->conn, on_close, g_async_queue_ref(w->queue),
                                            (virFreeCallback) g_async_queue_unref) < 0) {
                g_debug("vlv: watch: cannot register for events on %s: %s", w->uri, virGetLastErrorMessage());
                disconnect(c);
                return FALSE;
        }
        return TRUE;
}

static gpointer worker(gpointer data) {
        VlvWatch *w = data;
        Connection c = { .conn = NULL, .lifecycle_id = -1 };

        for (;;) {
                Item *item;

                if (!c.conn && connect_watch(w, &c))
                        w->func(VLV_WATCH_CONNECTED, NULL, NULL, w->user_data);
                /* connected: wait for events; not: wait to retry */
                if (c.conn)
                        item = g_async_queue_pop(w->queue);
                else
                        item = g_async_queue_timeout_pop(w->queue, (guint64) w->retry_ms * 1000);
                if (!item)
                        continue;
                switch (item->kind) {
                case ITEM_STOP:
                        item_free(item);
                        disconnect(&c);
                        return NULL;
                case ITEM_CLOSED:
                        disconnect(&c);
                        break;
                case ITEM_EVENT:
                        w->func(item->event, item->name, item->uuid, w->user_data);
                        break;
                }
                item_free(item);
        }
}

VlvWatch *vlv_watch_new(const char *uri, guint retry_ms, VlvWatchFunc func, gpointer user_data, GError **error) {
        VlvWatch *w = g_new0(VlvWatch, 1);

        vlv_libvirt_init();
        w->uri = g_strdup(uri ? uri : VLV_DEFAULT_URI);
        w->retry_ms = retry_ms ? retry_ms : 2000;
        w->func = func;
        w->user_data = user_data;
        w->queue = g_async_queue_new_full((GDestroyNotify) item_free);
        w->worker = g_thread_new("vlv-watch", worker, w);
        return w;
}

void vlv_watch_free(VlvWatch *w) {
        Item *stop;

        if (!w)
                return;
        stop = g_new0(Item, 1);
        stop->kind = ITEM_STOP;
        /* ahead of queued events: stopping does not wait for them */
        g_async_queue_push_front(w->queue, stop);
        g_thread_join(w->worker);
        g_async_queue_unref(w->queue);
        g_free(w->uri);
        g_free(w);
}
