/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtio-net device type of vfud-worker: options → backend + device
 * model, vfio-user wiring (guest memory, MSI-X through vu_server_irq), the
 * "link-set" and "announce" control methods, statistics.
 *
 * Options:
 *   {"mac": "52:54:00:..", "queues": N, "mtu": 9000, "queue-size": 256,
 *    "packed": false, "notify": "trap" | "poll", "link": true,
 *    "backend": {"type": "tap", "name": "vfu0"}
 *             | {"type": "passt", "socket": PATH} | {"type": "passt"}}
 *             | {"type": "null", "frame": BYTES}
 * The manager's flat form {"backend": "tap", "tap": "vfu0"} / {"backend":
 * "passt"} / {"backend": "null", "null-frame": BYTES} is accepted too.  The
 * null backend drops what the guest sends and hands it copies of a
 * broadcast frame of BYTES (0: nothing) as fast as it takes them.  TAP queue fds passed as "tap0".."tapN-1" are
 * used; missing ones are opened by name.  {"type": "passt"} uses the
 * socket passed as "passt" (vfud starts passt on its other end), else, run
 * on its own, starts passt on a socketpair.  Without "mtu" the device offers the TAP's
 * MTU (1500 with passt).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "net/vnet.h"
#include "common/limits.h"
#include "worker.h"

typedef struct WorkerNet {
        VNet *n;
        VuServer *server;
        char *backend_desc;
        pid_t passt_pid;
} WorkerNet;

static gboolean parse_mac(const char *s, uint8_t mac[6], GError **error) {
        unsigned b[6];
        char tail;

        if (!s || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6 ||
            (b[0] & 1)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "invalid MAC address '%s': give a unicast address like 52:54:00:12:34:56", s ? s : "");
                return FALSE;
        }
        for (int i = 0; i < 6; i++)
                mac[i] = (uint8_t) b[i];
        return TRUE;
}

static int64_t get_int(JsonObject *o, const char *name, int64_t def) {
        JsonNode *n = json_object_get_member(o, name);
        return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_int(n) : def;
}

static NetBackend *open_backend(Worker *w, JsonObject *o, unsigned pairs, WorkerNet *wn, GError **error) {
        JsonNode *bn = json_object_get_member(o, "backend");
        const char *type = "tap", *name = NULL, *socket = NULL;
        int64_t frame = json_object_get_int_member_with_default(o, "null-frame", 0);
        NetBackend *be = NULL;
        int r;

        if (bn && JSON_NODE_HOLDS_OBJECT(bn)) {
                JsonObject *b = json_node_get_object(bn);
                type = json_object_get_string_member_with_default(b, "type", "tap");
                name = json_object_get_string_member_with_default(b, "name", NULL);
                socket = json_object_get_string_member_with_default(b, "socket", NULL);
                frame = json_object_get_int_member_with_default(b, "frame", frame);
        } else if (bn && JSON_NODE_HOLDS_VALUE(bn)) {
                type = json_node_get_string(bn);
                name = json_object_get_string_member_with_default(o, "tap", NULL);
        }
        if (!type)
                type = "tap";
        if (!bn)        /* the short form: {"tap": "NAME"} */
                name = json_object_get_string_member_with_default(o, "tap", NULL);

        if (strcmp(type, "tap") == 0) {
                g_autofree int *fds = g_new(int, pairs);
                for (unsigned i = 0; i < pairs; i++) {
                        g_autofree char *fdname = g_strdup_printf("tap%u", i);
                        fds[i] = worker_take_fd(w, fdname);
                }
                r = net_tap_open(name, pairs, fds, &be);
                for (unsigned i = 0; i < pairs; i++)
                        if (fds[i] >= 0)
                                close(fds[i]);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                                    "cannot open TAP interface %s with %u queue(s): %s (needs CAP_NET_ADMIN and "
                                    "/dev/net/tun, or TAP fds passed by vfud)",
                                    name && *name ? name : "(new)", pairs, g_strerror(-r));
                        return NULL;
                }
                wn->backend_desc = g_strdup_printf("tap:%s", be->ifname ? be->ifname : "");
                return be;
        }
        if (strcmp(type, "passt") == 0) {
                if (pairs != 1) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "passt carries one queue pair: give queues=1 or use a TAP backend");
                        return NULL;
                }
                int fd = worker_take_fd(w, "passt");

                if (fd >= 0) {
                        r = net_passt_new(fd, &be);
                        if (r < 0)
                                close(fd);
                        wn->backend_desc = g_strdup("passt");
                } else if (socket) {
                        r = net_passt_connect(socket, &be);
                        wn->backend_desc = g_strdup_printf("passt:%s", socket);
                } else {
                        r = net_passt_spawn("passt", &be, &wn->passt_pid);
                        wn->backend_desc = g_strdup("passt");
                }
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND,
                                    socket ? "cannot connect to passt at %s: %s (is passt running with --socket?)"
                                           : "cannot run passt%s: %s (apt install passt)",
                                    socket ? socket : "", g_strerror(-r));
                        return NULL;
                }
                return be;
        }
        if (strcmp(type, "null") == 0) {
                if (frame != 0 && (frame < VNET_NULL_MIN_FRAME || frame > VNET_NULL_MAX_FRAME)) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "null-frame=%" G_GINT64_FORMAT " is invalid: use 0 (receive nothing) or %u..%u bytes",
                                    frame, VNET_NULL_MIN_FRAME, VNET_NULL_MAX_FRAME);
                        return NULL;
                }
                r = net_null_open(pairs, (size_t) frame, &be);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_BACKEND, "cannot open the null backend: %s",
                                    g_strerror(-r));
                        return NULL;
                }
                wn->backend_desc = g_strdup("null");
                return be;
        }
        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                    "unknown network backend '%s': use \"tap\", \"passt\" or \"null\"", type);
        return NULL;
}

/* The definition's "limits" (common/limits.h) onto the device. */
static gboolean net_apply_limits(WorkerNet *wn, JsonObject *limits, GError **error) {
        QosConfig cfg[2];
        g_autofree char *why = limits_to_qos(LIMITS_NET, limits, cfg);

        if (why) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID, "limits: %s", why);
                return FALSE;
        }
        if (vnet_set_limits(wn->n, &cfg[0], &cfg[1]) < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID, "limits: not valid for virtio-net");
                return FALSE;
        }
        return TRUE;
}

static JsonObject *get_object(JsonObject *o, const char *name) {
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static gboolean net_create(Worker *w, JsonObject *o, VuServerConfig *scfg, void **state, GError **error) {
        g_autofree WorkerNet *wn = g_new0(WorkerNet, 1);
        VNetOptions opt = { .link_up = TRUE };
        const char *notify = json_object_get_string_member_with_default(o, "notify", "trap");
        int64_t pairs = get_int(o, "queues", 1), mtu = get_int(o, "mtu", 0), qs = get_int(o, "queue-size", 256);
        NetBackend *be;
        int r;

        if (!parse_mac(json_object_get_string_member_with_default(o, "mac", "52:54:00:12:34:56"), opt.mac, error))
                return FALSE;
        if (pairs < 1 || pairs > VNET_MAX_PAIRS) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "queues=%" G_GINT64_FORMAT " is out of range: give 1 to %u", pairs, VNET_MAX_PAIRS);
                return FALSE;
        }
        if (mtu != 0 && (mtu < VNET_MIN_MTU || mtu > 65535)) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "mtu=%" G_GINT64_FORMAT " is out of range: give %u to 65535", mtu, VNET_MIN_MTU);
                return FALSE;
        }
        if (qs < 2 || qs > VQ_MAX_SIZE || (qs & (qs - 1))) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "queue-size=%" G_GINT64_FORMAT " is invalid: give a power of two from 2 to %u",
                            qs, VQ_MAX_SIZE);
                return FALSE;
        }
        if (strcmp(notify, "trap") != 0 && strcmp(notify, "poll") != 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "notify='%s' is invalid: use \"trap\" (posted MMIO writes) or \"poll\" (mmapped, polled)",
                            notify);
                return FALSE;
        }
        opt.pairs = (unsigned) pairs;
        opt.mtu = (uint16_t) mtu;
        opt.queue_size = (uint16_t) qs;
        opt.packed = json_object_get_boolean_member_with_default(o, "packed", FALSE);
        opt.poll = strcmp(notify, "poll") == 0;
        opt.link_up = json_object_get_boolean_member_with_default(o, "link", TRUE);
        opt.name = worker_device_name(w);
        /* Migration streams carry the device name: a stream for another device is refused. */
        opt.migration_id = opt.name;

        be = open_backend(w, o, opt.pairs, wn, error);
        if (!be)
                return FALSE;
        r = vnet_new(&opt, be, &wn->n);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED, "cannot create the virtio-net device: %s",
                            g_strerror(-r));
                return FALSE;
        }
        if (!net_apply_limits(wn, get_object(o, "limits"), error)) {
                vnet_free(wn->n);
                return FALSE;
        }
        r = vnet_server_config(wn->n, scfg);
        if (r < 0) {
                vnet_free(wn->n);
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot build the PCI configuration of the virtio-net device: %s", g_strerror(-r));
                return FALSE;
        }
        *state = g_steal_pointer(&wn);
        return TRUE;
}

static int net_irq(void *opaque, unsigned vector) {
        return vu_server_irq(opaque, vector);
}

static const VirtioIrqOps net_irq_ops = { .fire = net_irq };

static void net_start(void *state, VuServer *server) {
        WorkerNet *wn = state;

        wn->server = server;
        vnet_attach(wn->n, vu_server_mem(server), &net_irq_ops, server);
}

static void net_destroy(void *state) {
        WorkerNet *wn = state;

        /* passt (when we ran it) leaves when its socket closes with the backend. */
        vnet_free(wn->n);
        g_free(wn->backend_desc);
        g_free(wn);
}

static gboolean net_control(void *state, const char *method, JsonObject *params, JsonNode **result,
                            GError **error) {
        WorkerNet *wn = state;

        if (strcmp(method, "link-set") == 0) {
                JsonNode *up = params ? json_object_get_member(params, "up") : NULL;
                if (!up || !JSON_NODE_HOLDS_VALUE(up) || json_node_get_value_type(up) != G_TYPE_BOOLEAN) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                    "link-set needs {\"up\": true|false}");
                        return FALSE;
                }
                vnet_set_link(wn->n, json_node_get_boolean(up));
                *result = NULL;
                return TRUE;
        }
        if (strcmp(method, "announce") == 0) {
                int r = vnet_announce(wn->n);
                if (r < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_UNSUPPORTED,
                                    "the guest driver did not negotiate GUEST_ANNOUNCE, or is not running");
                        return FALSE;
                }
                *result = NULL;
                return TRUE;
        }
        if (strcmp(method, "limits-set") == 0) {
                /* {"limits": {...}}: the whole new set, replacing the old */
                if (!net_apply_limits(wn, get_object(params, "limits"), error))
                        return FALSE;
                *result = NULL;
                return TRUE;
        }
        g_set_error(error, WORKER_ERROR, WORKER_ERROR_UNSUPPORTED,
                    "virtio-net has no control method '%s' (known: link-set, announce, limits-set)", method);
        return FALSE;
}

static void net_stats(void *state, JsonBuilder *b) {
        WorkerNet *wn = state;
        VNetStats st;

        vnet_get_stats(wn->n, &st);
#define MEMBER(k, v) do { json_builder_set_member_name(b, k); json_builder_add_int_value(b, (int64_t) (v)); } while (0)
        MEMBER("rx_packets", st.rx_packets);
        MEMBER("rx_bytes", st.rx_bytes);
        MEMBER("rx_drops", st.rx_drops);
        MEMBER("rx_errors", st.rx_errors);
        MEMBER("tx_packets", st.tx_packets);
        MEMBER("tx_bytes", st.tx_bytes);
        MEMBER("tx_drops", st.tx_drops);
        MEMBER("tx_errors", st.tx_errors);
        MEMBER("active_pairs", vnet_active_pairs(wn->n));
        MEMBER("mtu", vnet_mtu(wn->n));
        MEMBER("link_up", vnet_link(wn->n));
        /* frames that waited for a limit */
        json_builder_set_member_name(b, "limit_hits");
        json_builder_begin_object(b);
        MEMBER("tx", vnet_limit_hits(wn->n, true));
        MEMBER("rx", vnet_limit_hits(wn->n, false));
        json_builder_end_object(b);
#undef MEMBER
        json_builder_set_member_name(b, "link");
        json_builder_add_boolean_value(b, vnet_link(wn->n));
        json_builder_set_member_name(b, "backend");
        json_builder_add_string_value(b, wn->backend_desc ? wn->backend_desc : "");
}

const WorkerDeviceType worker_virtio_net_type = {
        .type = "virtio-net",
        .create = net_create,
        .start = net_start,
        .destroy = net_destroy,
        .control = net_control,
        .stats = net_stats,
};
