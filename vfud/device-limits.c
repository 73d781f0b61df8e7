/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* I/O limits of a device, manager side (device-limits.h). */
#include <errno.h>
#include <string.h>

#include "bus-util.h"
#include "common/bus-names.h"
#include "device-limits.h"

/* Every limit option of a set, with the group's for nvme: built once. */
typedef struct LimitOption {
        DeviceOptionSpec spec;
        const LimitsKey *key;
        bool group;
} LimitOption;

static GPtrArray *limit_options[_LIMITS_SET_MAX];

static int type_limits(const DeviceType *t) {
        if (strcmp(t->name, "nvme") == 0)
                return LIMITS_NVME;
        if (strcmp(t->name, "virtio-net") == 0)
                return LIMITS_NET;
        return -1;
}

static GPtrArray *options_of(LimitsSet set) {
        if (limit_options[set])
                return limit_options[set];
        limit_options[set] = g_ptr_array_new();
        for (unsigned group = 0; group < (set == LIMITS_NVME ? 2u : 1u); group++)
                for (const LimitsKey *k = limits_keys(set); k->name; k++) {
                        LimitOption *o = g_new0(LimitOption, 1);

                        o->key = k;
                        o->group = group;
                        o->spec.name = group ? g_strconcat(LIMITS_GROUP_PREFIX, k->name, NULL) : k->name;
                        o->spec.kind = DEVICE_OPTION_UINT;
                        o->spec.help = group ? g_strconcat("the group of all namespaces: ", k->help, NULL) :
                                       set == LIMITS_NVME ? g_strconcat("namespace 1: ", k->help, NULL) : k->help;
                        g_ptr_array_add(limit_options[set], o);
                }
        return limit_options[set];
}

static const LimitOption *limit_option(const DeviceType *t, const char *name) {
        int set = type_limits(t);
        GPtrArray *a;

        if (set < 0)
                return NULL;
        a = options_of((LimitsSet) set);
        for (guint i = 0; i < a->len; i++) {
                const LimitOption *o = a->pdata[i];

                if (strcmp(o->spec.name, name) == 0)
                        return o;
        }
        return NULL;
}

const DeviceOptionSpec *device_limits_option(const DeviceType *t, const char *name) {
        const LimitOption *o = limit_option(t, name);

        return o ? &o->spec : NULL;
}

size_t device_limits_n_options(const DeviceType *t) {
        int set = type_limits(t);

        return set < 0 ? 0 : options_of((LimitsSet) set)->len;
}

const DeviceOptionSpec *device_limits_option_at(const DeviceType *t, size_t i) {
        return i < device_limits_n_options(t) ?
               &((LimitOption *) options_of((LimitsSet) type_limits(t))->pdata[i])->spec : NULL;
}

char *device_limits_option_list(const DeviceType *t) {
        GString *s = g_string_new(NULL);
        int set = type_limits(t);

        if (set >= 0) {
                GPtrArray *a = options_of((LimitsSet) set);

                for (guint i = 0; i < a->len; i++)
                        g_string_append_printf(s, ", %s", ((LimitOption *) a->pdata[i])->spec.name);
        }
        return g_string_free(s, FALSE);
}

/* An nvme definition's namespace nsid, or NULL. */
static JsonObject *find_ns(JsonObject *options, uint32_t nsid) {
        JsonArray *a = json_object_has_member(options, "namespaces") ?
                       json_object_get_array_member(options, "namespaces") : NULL;

        for (guint i = 0; a && i < json_array_get_length(a); i++) {
                JsonObject *ns = json_array_get_object_element(a, i);

                if (ns && (uint32_t) json_object_get_int_member_with_default(ns, "nsid", 0) == nsid)
                        return ns;
        }
        return NULL;
}

/* The limits object of a target in options (created empty when missing): a namespace's, the group's, the NIC's. */
static JsonObject *target_limits(JsonObject *options, JsonObject *ns, bool group) {
        JsonObject *owner = ns && !group ? ns : options;
        const char *member = group ? "group-limits" : "limits";

        if (!json_object_has_member(owner, member))
                json_object_set_object_member(owner, member, json_object_new());
        return json_object_get_object_member(owner, member);
}

/* Drop an empty limits object: a definition without limits stays as it was. */
static void prune(JsonObject *owner, const char *member) {
        if (owner && json_object_has_member(owner, member) &&
            json_object_get_size(json_object_get_object_member(owner, member)) == 0)
                json_object_remove_member(owner, member);
}

static void prune_all(JsonObject *options, JsonObject *ns) {
        prune(ns, "limits");
        prune(options, "limits");
        prune(options, "group-limits");
}

/* Check a target's limits object as the worker will: FALSE with why. */
static gboolean check_target(const DeviceType *t, JsonObject *limits, const char *what, GError **error) {
        QosConfig cfg[2];
        g_autofree char *why = limits_to_qos((LimitsSet) type_limits(t), limits, cfg);

        if (why) {
                g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT, "%s%s", what, why);
                return FALSE;
        }
        return TRUE;
}

/*
 * Apply the limit options of in to options (nsid's namespace for nvme):
 * merged, checked.  *ns_changed / *group_changed say which targets moved.
 */
static gboolean apply(const DeviceType *t, JsonObject *options, uint32_t nsid, GHashTable *in, bool *ns_changed,
                      bool *group_changed, GError **error) {
        g_autoptr(JsonObject) ns_changes = json_object_new(), group_changes = json_object_new();
        JsonObject *ns = NULL;
        GHashTableIter it;
        gpointer k, v;

        g_hash_table_iter_init(&it, in);
        while (g_hash_table_iter_next(&it, &k, &v)) {
                const LimitOption *o = limit_option(t, k);

                if (!o)
                        continue;
                json_object_set_member(o->group ? group_changes : ns_changes, o->key->name,
                                       json_node_copy(v));
        }
        *ns_changed = json_object_get_size(ns_changes) > 0;
        *group_changed = json_object_get_size(group_changes) > 0;
        if (type_limits(t) == LIMITS_NVME) {
                ns = find_ns(options, nsid);
                if (!ns && *ns_changed) {
                        g_set_error(error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                                    "there is no namespace %u to limit", nsid);
                        return FALSE;
                }
        }
        if (*ns_changed) {
                JsonObject *l = target_limits(options, ns, false);
                g_autofree char *what = ns ? g_strdup_printf("namespace %u: ", nsid) : g_strdup("");

                limits_merge(l, ns_changes);
                if (!check_target(t, l, what, error))
                        return FALSE;
        }
        if (*group_changed) {
                JsonObject *l = target_limits(options, NULL, true);

                limits_merge(l, group_changes);
                if (!check_target(t, l, "the group: ", error))
                        return FALSE;
        }
        prune_all(options, ns);
        return TRUE;
}

gboolean device_limits_normalize(const DeviceType *t, GHashTable *in, JsonObject *out, GError **error) {
        bool ns_changed, group_changed;

        if (type_limits(t) < 0)
                return TRUE;
        return apply(t, out, 1, in, &ns_changed, &group_changed, error);
}

/* ---- SetLimits ---- */

/* A copy sharing nothing with n (json_node_copy shares the objects inside). */
static JsonNode *deep_copy(JsonNode *n) {
        g_autofree char *text = json_to_string(n, FALSE);

        return json_from_string(text, NULL);
}

typedef struct LimitsOp {
        Device *device;
        JsonNode *options;              /* the new definition, applied once the worker took it */
        uint32_t nsid;
        bool group_left;                /* the group's limits still to be sent */
        DeviceDoneFunc func;
        void *userdata;
} LimitsOp;

static void op_finish(LimitsOp *op, const GError *error) {
        Device *d = op->device;
        g_autoptr(GError) save_error = NULL;

        if (!error) {
                json_node_unref(d->options);
                d->options = g_steal_pointer(&op->options);
                if (!device_save(d, &save_error))
                        error = save_error;
                device_emit_changed(d, "Backend", "Limits", NULL);
        }
        op->func(d, error, op->userdata);
        if (op->options)
                json_node_unref(op->options);
        device_unref(d);
        g_free(op);
}

static void op_send(LimitsOp *op, uint32_t nsid, bool group);

static void op_ctl_done(Device *d, JsonNode *result, const GError *error, void *userdata) {
        LimitsOp *op = userdata;

        if (!error && op->group_left) {
                op->group_left = false;
                op_send(op, 0, true);
                return;
        }
        op_finish(op, error);
}

/* The worker's limits-set for a target: its whole limits object. */
static void op_send(LimitsOp *op, uint32_t nsid, bool group) {
        JsonObject *options = json_node_get_object(op->options);
        JsonObject *params = json_object_new(), *owner = options;
        const char *member = group ? "group-limits" : "limits";
        JsonNode *n = json_node_new(JSON_NODE_OBJECT);

        if (!group && type_limits(op->device->dtype) == LIMITS_NVME) {
                owner = find_ns(options, nsid);
                json_object_set_int_member(params, "nsid", nsid);
        }
        if (group)
                json_object_set_int_member(params, "nsid", 0);
        json_object_set_object_member(params, "limits",
                                      owner && json_object_has_member(owner, member) ?
                                      json_object_ref(json_object_get_object_member(owner, member)) :
                                      json_object_new());
        json_node_take_object(n, params);
        device_ctl_call(op->device, "limits-set", n, NULL, NULL, op_ctl_done, op);
}

void device_limits_set(Device *d, uint32_t nsid, GHashTable *in, DeviceDoneFunc func, void *userdata) {
        g_autoptr(GError) error = NULL;
        bool ns_changed = false, group_changed = false;
        LimitsOp *op;

        if (type_limits(d->dtype) < 0) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_NOT_SUPPORTED,
                            "%s devices have no I/O limits (device %s)", d->type, d->name);
                return func(d, error, userdata);
        }
        if (type_limits(d->dtype) == LIMITS_NET && nsid) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_INVALID_ARGUMENT,
                            "virtio-net devices have no namespaces: give namespace 0");
                return func(d, error, userdata);
        }
        if (d->state == DEVICE_STARTING || d->state == DEVICE_STOPPING) {
                g_set_error(&error, MANAGER_ERROR, MANAGER_ERROR_DEVICE_BUSY,
                            "device %s is %s: try again when it is listening or idle", d->name,
                            device_state_to_string(d->state));
                return func(d, error, userdata);
        }
        op = g_new0(LimitsOp, 1);
        op->device = device_ref(d);
        op->options = deep_copy(d->options);
        op->nsid = nsid ? nsid : 1;
        op->func = func;
        op->userdata = userdata;
        if (!apply(d->dtype, json_node_get_object(op->options), op->nsid, in, &ns_changed, &group_changed, &error))
                return op_finish(op, error);
        if (d->state != DEVICE_LISTENING && d->state != DEVICE_CONNECTED)
                return op_finish(op, NULL);     /* the worker takes them at its start */
        if (ns_changed) {
                op->group_left = group_changed;
                op_send(op, op->nsid, false);
        } else if (group_changed)
                op_send(op, 0, true);
        else
                op_finish(op, NULL);
}

/* ---- the Limits property ---- */

static int append_target(sd_bus_message *reply, const char *target, JsonObject *limits) {
        g_autoptr(GList) members = limits ? json_object_get_members(limits) : NULL;
        int r;

        if (!members)
                return 0;
        members = g_list_sort(members, (GCompareFunc) strcmp);
        r = sd_bus_message_open_container(reply, 'e', "sa{st}");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", target);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{st}");
        for (GList *l = members; r >= 0 && l; l = l->next)
                r = sd_bus_message_append(reply, "{st}", (const char *) l->data,
                                          (uint64_t) json_object_get_int_member(limits, l->data));
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static JsonObject *member_object(JsonObject *o, const char *name) {
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;

        return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

int device_limits_append_property(Device *d, sd_bus_message *reply) {
        JsonObject *o = json_node_get_object(d->options);
        int r = sd_bus_message_open_container(reply, 'a', "{sa{st}}");

        if (r >= 0 && type_limits(d->dtype) == LIMITS_NVME) {
                JsonArray *a = json_object_has_member(o, "namespaces") ?
                               json_object_get_array_member(o, "namespaces") : NULL;

                for (guint i = 0; r >= 0 && a && i < json_array_get_length(a); i++) {
                        JsonObject *ns = json_array_get_object_element(a, i);
                        g_autofree char *target = g_strdup_printf(
                                "ns%u", (unsigned) json_object_get_int_member_with_default(ns, "nsid", 0));

                        r = append_target(reply, target, member_object(ns, "limits"));
                }
                if (r >= 0)
                        r = append_target(reply, "group", member_object(o, "group-limits"));
        } else if (r >= 0 && type_limits(d->dtype) == LIMITS_NET)
                r = append_target(reply, "device", member_object(o, "limits"));
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

/* ---- migration ---- */

static int append_limits(sd_bus_message *m, const char *prefix, JsonObject *limits) {
        g_autoptr(GList) members = limits ? json_object_get_members(limits) : NULL;
        int r = 0;

        for (GList *l = members; r >= 0 && l; l = l->next) {
                g_autofree char *name = g_strconcat(prefix, (const char *) l->data, NULL);

                r = sd_bus_message_append(m, "{sv}", name, "t",
                                          (uint64_t) json_object_get_int_member(limits, l->data));
        }
        return r;
}

int device_limits_append_create_options(sd_bus_message *m, const char *type, JsonObject *options) {
        if (strcmp(type, "nvme") == 0) {
                int r = append_limits(m, "", member_object(find_ns(options, 1), "limits"));

                return r < 0 ? r : append_limits(m, LIMITS_GROUP_PREFIX, member_object(options, "group-limits"));
        }
        if (strcmp(type, "virtio-net") == 0)
                return append_limits(m, "", member_object(options, "limits"));
        return 0;
}

int device_limits_call_set(sd_bus *b, const char *path, uint32_t nsid, JsonObject *ns, sd_bus_error *e) {
        JsonObject *limits = member_object(ns, "limits");
        sd_bus_message *m = NULL;
        int r;

        if (!limits || json_object_get_size(limits) == 0)
                return 0;
        r = sd_bus_message_new_method_call(b, &m, VFUD_BUS_NAME, path, VFUD_DEVICE_IFACE, "SetLimits");
        if (r >= 0)
                r = sd_bus_message_append(m, "u", nsid);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = append_limits(m, "", limits);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_call(b, m, 0, e, NULL);
        sd_bus_message_unref(m);
        return r;
}
