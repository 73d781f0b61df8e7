/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* I/O limits: option names ↔ token buckets (limits.h). */
#include <string.h>

#include "limits.h"

#define NVME_RATE(unit, dir, K, what)                                                                   \
        { unit "-" dir, 0, K, LIMITS_AVG, 1, what " per second" },                                      \
        { unit "-" dir "-max", 0, K, LIMITS_MAX, 1, what " per second in a burst" },                    \
        { unit "-" dir "-max-length", 0, K, LIMITS_MAX_LENGTH, 1,                                       \
          "seconds a burst at " unit "-" dir "-max may last (default 1)" }

static const LimitsKey nvme_keys[] = {
        NVME_RATE("bytes", "total", QOS_BYTES_TOTAL, "bytes read and written"),
        NVME_RATE("bytes", "read", QOS_BYTES_READ, "bytes read"),
        NVME_RATE("bytes", "write", QOS_BYTES_WRITE, "bytes written"),
        NVME_RATE("iops", "total", QOS_OPS_TOTAL, "reads and writes"),
        NVME_RATE("iops", "read", QOS_OPS_READ, "reads"),
        NVME_RATE("iops", "write", QOS_OPS_WRITE, "writes"),
        { "size-iops", 0, 0, LIMITS_SIZE_IOPS, 1, "bytes: a larger I/O counts as size / size-iops operations" },
        { NULL },
};

#define NET_DIR(dir, i, what)                                                                           \
        { dir "-average", i, QOS_BYTES_TOTAL, LIMITS_AVG, 1024, "KiB per second " what },               \
        { dir "-peak", i, QOS_BYTES_TOTAL, LIMITS_MAX, 1024, "KiB per second " what " in a burst" },    \
        { dir "-burst", i, QOS_BYTES_TOTAL, LIMITS_BURST, 1024,                                         \
          "KiB " what " at up to " dir "-peak above " dir "-average" },                                 \
        { dir "-pps", i, QOS_OPS_TOTAL, LIMITS_AVG, 1, "packets per second " what }

static const LimitsKey net_keys[] = {
        NET_DIR("tx", 0, "the guest sends"),
        NET_DIR("rx", 1, "the guest receives"),
        { NULL },
};

const LimitsKey *limits_keys(LimitsSet set) {
        return set == LIMITS_NVME ? nvme_keys : set == LIMITS_NET ? net_keys : NULL;
}

const LimitsKey *limits_key_find(LimitsSet set, const char *name) {
        for (const LimitsKey *k = limits_keys(set); k && k->name; k++)
                if (strcmp(k->name, name) == 0)
                        return k;
        return NULL;
}

static void limits_put(QosConfig *cfg, const LimitsKey *k, uint64_t v) {
        QosRate *r = &cfg->rate[k->kind];

        switch (k->field) {
        case LIMITS_AVG:
                r->avg = v;
                break;
        case LIMITS_MAX:
                r->max = v;
                break;
        case LIMITS_MAX_LENGTH:
                r->max_length = v;
                break;
        case LIMITS_BURST:
                r->burst = v;
                break;
        case LIMITS_SIZE_IOPS:
                cfg->size_iops = v;
                break;
        }
}

/* The option of set that names the average of (config, kind). */
static const char *limits_avg_name(LimitsSet set, unsigned config, QosKind kind) {
        for (const LimitsKey *k = limits_keys(set); k->name; k++)
                if (k->config == config && k->kind == kind && k->field == LIMITS_AVG)
                        return k->name;
        return "?";
}

char *limits_to_qos(LimitsSet set, JsonObject *o, QosConfig *cfg) {
        g_autoptr(GList) members = o ? json_object_get_members(o) : NULL;

        memset(cfg, 0, sizeof(QosConfig) * (set == LIMITS_NET ? 2 : 1));
        for (GList *l = members; l; l = l->next) {
                const char *name = l->data;
                const LimitsKey *k = limits_key_find(set, name);
                JsonNode *n = json_object_get_member(o, name);
                int64_t v;

                if (!k)
                        return g_strdup_printf("'%s' is not a limit of %s devices", name,
                                               set == LIMITS_NVME ? "nvme" : "virtio-net");
                if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
                    (v = json_node_get_int(n)) < 0)
                        return g_strdup_printf("%s must be a whole number ≥ 0", name);
                if ((uint64_t) v > QOS_VALUE_MAX / k->scale)
                        return g_strdup_printf("%s=%" G_GINT64_FORMAT " is too large", name, v);
                limits_put(&cfg[k->config], k, (uint64_t) v * k->scale);
        }
        for (unsigned i = 0; i < (set == LIMITS_NET ? 2u : 1u); i++) {
                QosKind which;
                const char *why = qos_config_check(&cfg[i], &which);

                if (why)
                        return g_strdup_printf("the limit %s %s", limits_avg_name(set, i, which), why);
        }
        return NULL;
}

void limits_merge(JsonObject *dst, JsonObject *changes) {
        g_autoptr(GList) members = json_object_get_members(changes);

        for (GList *l = members; l; l = l->next) {
                const char *name = l->data;
                JsonNode *n = json_object_get_member(changes, name);

                if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_INT64 &&
                    json_node_get_int(n) == 0)
                        json_object_remove_member(dst, name);
                else
                        json_object_set_member(dst, name, json_node_copy(n));
        }
}
