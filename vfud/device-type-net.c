/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * virtio-net devices, manager side: a TAP interface (opened here, one fd
 * per queue pair, handed to the worker) or passt (started here on one end of
 * a socket pair, the other end handed to the worker), a MAC
 * address (stable, derived from the name unless given), queue pairs, MTU.
 * Options schema: vfud/worker/worker.h.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/tap.h"
#include "common/util.h"
#include "device-spawn.h"
#include "device-type.h"
#include "migrate.h"
#include "net/net-backend.h"

#define NET_MAX_QUEUES 16u
#define NET_MIN_MTU 68u
#define NET_MAX_MTU 65535u

static const DeviceOptionSpec net_options[] = {
        { "tap", DEVICE_OPTION_STRING, "TAP interface (created when missing)" },
        { "passt", DEVICE_OPTION_BOOL, "user-mode networking through passt" },
        { "mac", DEVICE_OPTION_STRING, "MAC address (default: derived from the name)" },
        { "queues", DEVICE_OPTION_UINT, "number of queue pairs" },
        { "mtu", DEVICE_OPTION_UINT, "MTU offered to the guest (default: the TAP's; set on a TAP vfud creates)" },
        { "null", DEVICE_OPTION_UINT, "a null backend instead of a network, for benchmarks: what the guest sends is dropped, "
                                      "it receives copies of a broadcast frame of this many bytes (0: nothing; 60 to 1514)" },
        { NULL },
};

/* A locally administered unicast address from the device name: stable across re-creation. */
static char *net_default_mac(const char *name) {
        g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
        uint8_t digest[32], mac[6];
        gsize len = sizeof(digest);

        g_checksum_update(c, (const guchar *) name, -1);
        g_checksum_get_digest(c, digest, &len);
        mac[0] = 0x52;
        mac[1] = 0x54;
        mac[2] = 0x00;
        memcpy(mac + 3, digest, 3);
        return util_format_mac(mac);
}

/* "vfu-<name>" when it fits IFNAMSIZ, else "vfu-" and a hash of the name. */
static char *net_default_tap(const char *name) {
        g_autofree char *t = g_strdup_printf("vfu-%s", name);

        if (util_ifname_is_valid(t))
                return g_steal_pointer(&t);
        {
                g_autofree char *h = g_compute_checksum_for_string(G_CHECKSUM_SHA256, name, -1);

                return g_strdup_printf("vfu-%.8s", h);
        }
}

static gboolean net_normalize(Manager *m, const char *name, GHashTable *in, JsonObject *out,
                              GError **error) {
        JsonNode *tap = g_hash_table_lookup(in, "tap"), *passt = g_hash_table_lookup(in, "passt");
        JsonNode *mac = g_hash_table_lookup(in, "mac"), *queues = g_hash_table_lookup(in, "queues");
        JsonNode *mtu = g_hash_table_lookup(in, "mtu"), *null = g_hash_table_lookup(in, "null");
        bool use_passt = passt && json_node_get_boolean(passt);
        uint64_t nq = queues ? (uint64_t) json_node_get_int(queues) : 1;

        if ((tap != NULL) + use_passt + (null != NULL) > 1) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "give one of tap=, passt=true or null= for the network backend");
                return FALSE;
        }
        if (null) {
                uint64_t frame = (uint64_t) json_node_get_int(null);

                if (frame != 0 && (frame < VNET_NULL_MIN_FRAME || frame > VNET_NULL_MAX_FRAME)) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "null=%" G_GUINT64_FORMAT " is out of range: give 0 (receive nothing) or a frame "
                                    "of %u to %u bytes", frame, VNET_NULL_MIN_FRAME, VNET_NULL_MAX_FRAME);
                        return FALSE;
                }
                json_object_set_string_member(out, "backend", "null");
                json_object_set_int_member(out, "null-frame", (int64_t) frame);
        } else if (use_passt) {
                g_autofree char *p = g_find_program_in_path("passt");

                if (!p) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                                    "passt is not installed (apt install passt), or use a TAP interface instead");
                        return FALSE;
                }
                json_object_set_string_member(out, "backend", "passt");
        } else {
                g_autofree char *t = tap ? g_strdup(json_node_get_string(tap)) : net_default_tap(name);

                if (!util_ifname_is_valid(t)) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "invalid TAP interface name '%s': use 1 to 15 characters without '/', ':' or spaces",
                                    t);
                        return FALSE;
                }
                json_object_set_string_member(out, "backend", "tap");
                json_object_set_string_member(out, "tap", t);
        }
        if (mac) {
                uint8_t b[6];
                g_autoptr(GError) local = NULL;
                g_autofree char *norm = NULL;

                if (!util_parse_mac(json_node_get_string(mac), b, &local)) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT, "%s", local->message);
                        return FALSE;
                }
                norm = util_format_mac(b);
                json_object_set_string_member(out, "mac", norm);
        } else {
                g_autofree char *def = net_default_mac(name);

                json_object_set_string_member(out, "mac", def);
        }
        if (nq < 1 || nq > NET_MAX_QUEUES) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "queues=%" G_GUINT64_FORMAT " is out of range: give 1 to %u queue pairs",
                            nq, NET_MAX_QUEUES);
                return FALSE;
        }
        if (use_passt && nq != 1) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "passt carries one queue pair: give queues=1 or use a TAP interface");
                return FALSE;
        }
        json_object_set_int_member(out, "queues", (int64_t) nq);
        if (mtu) {
                uint64_t v = (uint64_t) json_node_get_int(mtu);

                if (v < NET_MIN_MTU || v > NET_MAX_MTU) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "mtu=%" G_GUINT64_FORMAT " is out of range: give %u to %u",
                                    v, NET_MIN_MTU, NET_MAX_MTU);
                        return FALSE;
                }
                json_object_set_int_member(out, "mtu", (int64_t) v);
        }
        return TRUE;
}

/*
 * The MTU given at create time: set on a TAP vfud just created (as libvirt
 * does for the TAPs it creates); a TAP that existed is the operator's and
 * keeps its MTU, with a warning when the guest is offered another.
 */
static gboolean net_tap_mtu(Device *d, const char *ifname, unsigned mtu, bool created, GError **error) {
        g_autoptr(GError) local = NULL;
        int cur;

        if (created) {
                if (!tap_set_mtu(ifname, mtu, &local)) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED, "%s", local->message);
                        return FALSE;
                }
                return TRUE;
        }
        cur = tap_get_mtu(ifname, NULL);
        if (cur > 0 && (unsigned) cur != mtu)
                device_log(d, G_LOG_LEVEL_WARNING,
                           "TAP %s existed with MTU %d: left as it is, the guest is offered MTU %u", ifname, cur, mtu);
        return TRUE;
}

static void passt_child_setup(gpointer data) {
        sigset_t none;

        /* vfud blocks the signals its event loop takes: passt must not inherit that. */
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
}

/* passt, vfud's child, has left: reap it (the event source and the pidfd go with it). */
static int on_passt_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        pid_t pid = (pid_t) GPOINTER_TO_INT(userdata);

        (void) waitpid(pid, NULL, WNOHANG);
        close(fd);
        /* The loop's own source (it goes with the loop when vfud exits first): the loop lets go of it, it goes. */
        (void) sd_event_source_set_floating(s, false);
        return 0;
}

/*
 * passt for one run of the worker, started here so that the worker needs
 * neither the host's network nor namespaces (its unit keeps
 * PrivateNetwork=, AF_UNIX only and RestrictNamespaces=): passt gets one
 * end of a socket pair (--fd), the worker the other, as "passt".  passt
 * sets up its own sandbox; --fd makes it leave when its socket closes,
 * that is when the worker exits, so a restarted worker gets a passt of its
 * own.  It is vfud's child, reaped here, outside the worker's unit; a vfud
 * restart leaves it running with its worker (KillMode=process).
 */
static gboolean net_passt_start(Device *d, GPtrArray *names, GArray *fds, GError **error) {
        const char *argv[] = { "passt", "--foreground", "--quiet", "--fd", "3", NULL };
        g_auto(GStrv) env = worker_environment();
        g_autoptr(GError) local = NULL;
        int sv[2], target = 3, pidfd;
        GPid pid = 0;
        gboolean ok;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "socketpair: %s", g_strerror(errno));
                return FALSE;
        }
        ok = g_spawn_async_with_pipes_and_fds(NULL, argv, (const char *const *) env,
                                              G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                                      G_SPAWN_STDIN_FROM_DEV_NULL,
                                              passt_child_setup, NULL, -1, -1, -1, &sv[1], &target, 1, &pid,
                                              NULL, NULL, NULL, &local);
        close(sv[1]);
        if (!ok) {
                close(sv[0]);
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED,
                            "cannot run passt: %s (apt install passt, or use a TAP interface)", local->message);
                return FALSE;
        }
        pidfd = pidfd_open(pid, 0);
        if (pidfd < 0 || sd_event_add_io(d->manager->event, NULL, pidfd, EPOLLIN, on_passt_exit,
                                         GINT_TO_POINTER(pid)) < 0) {
                /* Unwatched, it would stay a zombie: reap it in the worst case now. */
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_FAILED, "cannot watch passt: %s",
                            g_strerror(pidfd < 0 ? errno : EINVAL));
                if (pidfd >= 0)
                        close(pidfd);
                close(sv[0]);
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
                return FALSE;
        }
        device_log(d, G_LOG_LEVEL_MESSAGE, "started passt %d for its worker", (int) pid);
        g_ptr_array_add(names, g_strdup("passt"));
        g_array_append_val(fds, sv[0]);
        return TRUE;
}

static gboolean net_open_fds(Device *d, GPtrArray *names, GArray *fds, GError **error) {
        JsonObject *o = json_node_get_object(d->options);
        const char *backend = json_object_get_string_member_with_default(o, "backend", "tap");
        const char *ifname = json_object_get_string_member_with_default(o, "tap", "");
        unsigned nq = (unsigned) json_object_get_int_member_with_default(o, "queues", 1);
        unsigned mtu = (unsigned) json_object_get_int_member_with_default(o, "mtu", 0);
        bool created;

        if (strcmp(backend, "passt") == 0)
                return net_passt_start(d, names, fds, error);
        if (strcmp(backend, "tap") != 0)
                return TRUE;
        created = !tap_exists(ifname);
        for (unsigned q = 0; q < nq; q++) {
                g_autoptr(GError) local = NULL;
                int fd = tap_open(ifname, nq > 1, &local);

                if (fd < 0) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_BACKEND_FAILED, "%s", local->message);
                        return FALSE;
                }
                g_ptr_array_add(names, g_strdup_printf("tap%u", q));
                g_array_append_val(fds, fd);
        }
        if (mtu)
                return net_tap_mtu(d, ifname, mtu, created, error);
        return TRUE;
}

typedef struct LinkOp {
        Device *device;
        DeviceDoneFunc func;
        void *userdata;
} LinkOp;

static void link_done(Device *d, JsonNode *result, const GError *error, void *userdata) {
        LinkOp *op = userdata;

        op->func(d, error, op->userdata);
        device_unref(op->device);
        g_free(op);
}

static void net_link_set(Device *d, bool up, DeviceDoneFunc func, void *userdata) {
        LinkOp *op;
        JsonNode *params;
        JsonObject *o;

        if (d->state != DEVICE_LISTENING && d->state != DEVICE_CONNECTED) {
                g_autoptr(GError) error = NULL;

                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_NOT_RUNNING,
                            "device %s is %s: start it before changing its link state",
                            d->name, device_state_to_string(d->state));
                return func(d, error, userdata);
        }
        op = g_new0(LinkOp, 1);
        op->device = device_ref(d);
        op->func = func;
        op->userdata = userdata;
        o = json_object_new();
        json_object_set_boolean_member(o, "up", up);
        params = json_node_new(JSON_NODE_OBJECT);
        json_node_take_object(params, o);
        device_ctl_call(d, "link-set", params, NULL, NULL, link_done, op);
}

const DeviceType device_type_virtio_net = {
        .name = "virtio-net",
        .options = net_options,
        .normalize = net_normalize,
        .open_fds = net_open_fds,
        .link_set = net_link_set,
        .append_create_options = migrate_net_create_options,
};
