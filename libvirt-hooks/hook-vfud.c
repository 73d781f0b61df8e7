/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vfu-hook's calls to vfud over D-Bus (sd-bus, with deadlines). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>
#include <glib.h>

#include "hook-vfud.h"

#define VFUD_NAME               "org.vfu.vfud1"
#define VFUD_PATH               "/org/vfu/vfud1"
#define VFUD_MANAGER            "org.vfu.vfud1.Manager"
#define VFUD_DEVICE             "org.vfu.vfud1.Device"
#define VFUD_ERR_NO_SUCH_DEVICE "org.vfu.vfud1.Error.NoSuchDevice"
#define VFUD_ERR_DEVICE_BUSY    "org.vfu.vfud1.Error.DeviceBusy"

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

int hook_bus_open(HookBus *hb, const char *address, uint64_t timeout_usec, char **msg) {
        int r;

        hb->bus = NULL;
        hb->address = address;
        hb->timeout_usec = timeout_usec;
        if (strcmp(address, "system") == 0)
                r = sd_bus_open_system(&hb->bus);
        else if (strcmp(address, "session") == 0)
                r = sd_bus_open_user(&hb->bus);
        else {
                r = sd_bus_new(&hb->bus);
                if (r >= 0)
                        r = sd_bus_set_address(hb->bus, address);
                if (r >= 0)
                        r = sd_bus_set_bus_client(hb->bus, 1);
                if (r >= 0)
                        r = sd_bus_start(hb->bus);
        }
        if (r >= 0)
                r = sd_bus_set_method_call_timeout(hb->bus, timeout_usec);
        if (r < 0) {
                *msg = g_strdup_printf("cannot connect to the D-Bus bus '%s': %s", address, g_strerror(-r));
                hb->bus = sd_bus_flush_close_unref(hb->bus);
                return r;
        }
        return 0;
}

void hook_bus_close(HookBus *hb) {
        hb->bus = sd_bus_flush_close_unref(hb->bus);
}

/* "vfud is not running" reads better than ServiceUnknown */
static char *describe_call_error(HookBus *hb, const sd_bus_error *e, int r) {
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                return g_strdup_printf("vfud is not running on the %s bus "
                                       "(start it: systemctl start vfud)",
                                       hb->address);
        if (r == -ETIMEDOUT || sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY))
                return g_strdup_printf("vfud did not answer within %" PRIu64 " s", hb->timeout_usec / 1000000u);
        if (sd_bus_error_is_set(e))
                return g_strdup(e->message ? e->message : e->name);
        return g_strdup(g_strerror(-r));
}

static int call_by_name(HookBus *hb, const char *method, const char *name, sd_bus_error *e, sd_bus_message **reply) {
        return sd_bus_call_method(hb->bus, VFUD_NAME, VFUD_PATH, VFUD_MANAGER, method, e, reply, "s", name);
}

static int on_changed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        *(int *) userdata = 1;
        return 0;
}

/* Wait until device @path reports a property change or @deadline passes.
 * Returns 1 on a change, 0 at the deadline, negative errno on failure. */
static int wait_change(HookBus *hb, const char *path, uint64_t deadline) {
        sd_bus_slot *slot = NULL;
        int changed = 0, r;

        r = sd_bus_match_signal(hb->bus, &slot, VFUD_NAME, path, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                on_changed, &changed);
        if (r < 0)
                return r;
        while (!changed) {
                uint64_t now = now_usec();

                r = sd_bus_process(hb->bus, NULL);
                if (r < 0)
                        break;
                if (r > 0)
                        continue;
                if (now >= deadline) {
                        r = 0;
                        break;
                }
                r = sd_bus_wait(hb->bus, deadline - now);
                if (r < 0)
                        break;
        }
        sd_bus_slot_unref(slot);
        return changed ? 1 : r;
}

static int device_path(HookBus *hb, const char *name, char **path, char **msg) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *p;
        int r;

        r = call_by_name(hb, "GetDevice", name, &e, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &p);
        if (r >= 0)
                *path = g_strdup(p);
        else if (sd_bus_error_has_name(&e, VFUD_ERR_NO_SUCH_DEVICE)) {
                *msg = g_strdup_printf("vfud has no device '%s' (create it with "
                                       "vfuctl create, or remove it from the VM)",
                                       name);
                r = -ENOENT;
        } else
                *msg = describe_call_error(hb, &e, r);
        sd_bus_message_unref(reply);
        sd_bus_error_free(&e);
        return r;
}

/* Call @method on device @name; while vfud answers DeviceBusy (the
 * device is between states), wait for its next change and try again,
 * until the budget is spent. */
static int call_waiting_busy(HookBus *hb, const char *method, const char *name, const char *path, sd_bus_error *e) {
        uint64_t deadline = now_usec() + hb->timeout_usec;
        int r;

        for (;;) {
                sd_bus_error_free(e);
                r = call_by_name(hb, method, name, e, NULL);
                if (r >= 0 || !sd_bus_error_has_name(e, VFUD_ERR_DEVICE_BUSY) || now_usec() >= deadline)
                        return r;
                if (wait_change(hb, path, deadline) <= 0)
                        return r;
        }
}

int hook_vfud_arrived(HookBus *hb, const char *name, char **from, char **msg) {
        g_autofree char *path = NULL, *state = NULL, *origin = NULL;
        sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        r = device_path(hb, name, &path, msg);
        if (r == -ENOENT) {
                g_clear_pointer(msg, g_free);
                *msg = g_strdup_printf("device '%s' is not on this host", name);
                return 0;
        }
        if (r < 0)
                return r;
        r = sd_bus_get_property_string(hb->bus, VFUD_NAME, path, VFUD_DEVICE, "MigratedFrom", &e, &origin);
        if (r >= 0)
                r = sd_bus_get_property_string(hb->bus, VFUD_NAME, path, VFUD_DEVICE, "State", &e, &state);
        if (r < 0) {
                *msg = describe_call_error(hb, &e, r);
                sd_bus_error_free(&e);
                return r;
        }
        if (!*origin) {
                *msg = g_strdup_printf("device '%s' here did not arrive by vfuctl migrate", name);
                return 0;
        }
        if (strcmp(state, "connected") == 0) {
                *msg = g_strdup_printf("device '%s' here is in use", name);
                return 0;
        }
        *from = g_steal_pointer(&origin);
        return 1;
}

int hook_vfud_start(HookBus *hb, const char *name, const char *socket_path, char **msg) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autofree char *path = NULL, *state = NULL, *sock = NULL, *last = NULL;
        int r;

        r = device_path(hb, name, &path, msg);
        if (r < 0)
                return r;
        r = call_waiting_busy(hb, "StartDevice", name, path, &e);
        if (r < 0) {
                g_autofree char *why = describe_call_error(hb, &e, r);

                *msg = g_strdup_printf("vfud could not start it: %s", why);
                sd_bus_error_free(&e);
                return r;
        }
        r = sd_bus_get_property_string(hb->bus, VFUD_NAME, path, VFUD_DEVICE, "State", &e, &state);
        if (r >= 0)
                r = sd_bus_get_property_string(hb->bus, VFUD_NAME, path, VFUD_DEVICE, "SocketPath", &e, &sock);
        if (r < 0) {
                *msg = describe_call_error(hb, &e, r);
                sd_bus_error_free(&e);
                return r;
        }
        if (strcmp(state, "listening") != 0 && strcmp(state, "connected") != 0) {
                if (sd_bus_get_property_string(hb->bus, VFUD_NAME, path, VFUD_DEVICE, "LastError", NULL, &last) < 0)
                        last = NULL;
                *msg = g_strdup_printf("it is %s, not listening%s%s", state, last && *last ? ": " : "",
                                       last ? last : "");
                return -EIO;
        }
        if (socket_path && strcmp(sock, socket_path) != 0) {
                *msg = g_strdup_printf("it listens on %s but the VM's definition points "
                                       "QEMU at %s; re-apply vfu's definition of the VM",
                                       sock, socket_path);
                return -EINVAL;
        }
        return 0;
}

int hook_vfud_stop(HookBus *hb, const char *name, char **msg) {
        sd_bus_error e = SD_BUS_ERROR_NULL;
        g_autofree char *path = NULL;
        g_autofree char *why = NULL;
        int r;

        r = device_path(hb, name, &path, &why);
        if (r < 0) {
                if (r == -ENOENT)
                        return 0; /* destroyed meanwhile: nothing to stop */
                *msg = g_steal_pointer(&why);
                return r;
        }
        r = call_waiting_busy(hb, "StopDevice", name, path, &e);
        if (r < 0) {
                if (sd_bus_error_has_name(&e, VFUD_ERR_NO_SUCH_DEVICE))
                        r = 0;
                else
                        *msg = describe_call_error(hb, &e, r);
        }
        sd_bus_error_free(&e);
        return r;
}
