/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfuctl: the command-line client of vfud.  One verb table (vfuctl.c), one
 * file per group of verbs, output helpers (output.c) and the bus helpers
 * (bus-json.c).  See vfuctl(1).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>

#include "common/limits.h"

/* Exit codes, documented in vfuctl(1). */
enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,
        EXIT_USAGE = 2,
        EXIT_NO_DEVICE = 3,
        EXIT_DENIED = 4,
        EXIT_CONFLICT = 5,
        EXIT_UNREACHABLE = 6,
        EXIT_BACKEND = 7,
        EXIT_NOT_SUPPORTED = 8,
        EXIT_NOT_RUNNING = 9,
};

typedef struct Options {
        char *host, *bus;
        bool help, json, no_legend, no_ask_password;
        char *vm, *name, *file, *block, *serial, *tap, *mac, *domain_xml, *to, *storage, *nbd;
        char *rbd, *rbd_conf, *rbd_id, *rbd_keyring;
        bool have_size, have_queues, have_mtu, have_block_size, have_null, have_iothreads, have_poll_us, passt, read_only, msi, hotplug;
        uint64_t size;
        uint64_t null_size;             /* create nvme|virtio-blk --null SIZE */
        unsigned queues, mtu, block_size, iothreads, poll_us;
        unsigned timeout;               /* migrate: live hand-over seconds, 0: vfud's default */
        char *libvirt_uri;              /* migrate --vm: the destination's libvirt */
        /* create: the limits of the worker's systemd unit */
        bool have_cpu_quota, have_memory_max, have_io_weight, have_tasks_max;
        unsigned cpu_quota, io_weight, tasks_max;
        uint64_t memory_max;
        JsonObject *limits;             /* create, limit: limit option → value (common/limits.h) */
        unsigned nsid;                  /* limit --namespace */
        bool have_nsid;
} Options;

struct Ctx {
        Options opt;
        sd_bus *bus;
        const char *verb;
        pid_t agent_pid;                /* the polkit agent vfuctl started, 0 none */
};

/* getopt values of the long options without a short form. */
enum {
        ARG_BUS = 0x100,
        ARG_JSON,
        ARG_NO_LEGEND,
        ARG_VM,
        ARG_NAME,
        ARG_SIZE,
        ARG_FILE,
        ARG_BLOCK,
        ARG_SERIAL,
        ARG_QUEUES,
        ARG_TAP,
        ARG_PASST,
        ARG_MAC,
        ARG_MTU,
        ARG_BLOCK_SIZE,
        ARG_NULL,
        ARG_VERSION,
        ARG_DOMAIN_XML,
        ARG_TO,
        ARG_STORAGE,
        ARG_TIMEOUT,
        ARG_LIBVIRT_URI,
        ARG_READ_ONLY,
        ARG_IOTHREADS,
        ARG_POLL_US,
        ARG_MSI,
        ARG_NO_ASK_PASSWORD,
        ARG_CPU_QUOTA,
        ARG_MEMORY_MAX,
        ARG_IO_WEIGHT,
        ARG_TASKS_MAX,
        ARG_NAMESPACE,
        ARG_HOTPLUG,
        ARG_NBD,
        ARG_RBD,
        ARG_RBD_CONF,
        ARG_RBD_ID,
        ARG_RBD_KEYRING,
        ARG_LIMIT_BASE = 0x400,         /* + the index in limit_options() */
};

/* commands.c: one row per option and per verb; parsing and help read them. */
typedef struct OptionInfo {
        const char *name;               /* long name, without "--" */
        char short_name;                /* or 0 */
        int id;                         /* what getopt_long returns */
        const char *arg;                /* the value's name; NULL: takes no value */
        bool global;                    /* every verb takes it */
        const char *help;
} OptionInfo;

typedef struct VerbOption {
        const char *name;               /* an OptionInfo name */
        const char *help;               /* what it means for this verb; NULL: the option's help */
} VerbOption;

typedef struct Ctx Ctx;
typedef struct Verb {
        const char *name;
        int min_args, max_args;         /* after the verb; -1: unlimited */
        int (*run)(Ctx *c, int argc, char **argv);
        const char *args;               /* usage after the verb name */
        const char *summary;            /* one line in vfuctl --help */
        const char *description;        /* vfuctl help VERB */
        const VerbOption *options;      /* the non-global options it takes, { NULL } ended; or NULL */
} Verb;

extern const OptionInfo option_table[];
extern const size_t option_table_len;
extern const Verb verb_table[];
extern const size_t verb_table_len;
const Verb *verb_find(const char *name);
const OptionInfo *option_find(const char *name);
const VerbOption *verb_option(const Verb *v, const char *name);

/*
 * The limit options (common/limits.h): nvme's, the group's ("group-"),
 * virtio-net's, NULL-name ended; set says whose, group the "group-" ones.
 */
typedef struct LimitOption {
        const char *name;
        const char *help;
        LimitsSet set;
        bool group;
} LimitOption;
const LimitOption *limit_options(void);
const LimitOption *limit_option_find(const char *name);

/* help.c */
void help_main(void);
void help_verb(const Verb *v);

/* Connect (once) to the bus the options name.  EXIT_OK or an exit code, message printed. */
int ctx_bus(Ctx *c);
/* End the polkit agent ctx_bus() started, if any. */
void ctx_agent_close(Ctx *c);

/* Report a failed call: prints "vfuctl: what: message" and returns the exit code for the error. */
int report_bus_error(const char *what, const sd_bus_error *error, int r);
int usage_error(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Call a Manager method; reply may be NULL. */
int manager_call(Ctx *c, const char *what, const char *method, sd_bus_message **reply, const char *types, ...);
/* The object path of device name, or an exit code (printed). */
int device_path(Ctx *c, const char *name, char **ret);
/* Every property of a device as a JSON object, keys at every depth mapped by json_key. */
int device_properties(Ctx *c, const char *path, JsonNode **ret);

/* bus-json.c: read the next complete value of m as JSON. */
int bus_read_json(sd_bus_message *m, JsonNode **ret);
/*
 * The key vfuctl prints for a D-Bus name or dictionary key: snake_case, [a-z0-9_] only.
 * "SocketPath" → "socket_path", "bytes-read" → "bytes_read", "vfio_user.connects" → "vfio_user_connects".
 */
char *json_key(const char *s);
/* A copy of n with every object key, at every depth, mapped by json_key. */
JsonNode *json_snake_keys(JsonNode *n);

/* output.c */
void print_json(JsonNode *n);
typedef struct Table Table;
Table *table_new(const char *first_header, ...) G_GNUC_NULL_TERMINATED;
void table_add_row(Table *t, const char *first_cell, ...) G_GNUC_NULL_TERMINATED;
void table_print(Table *t, bool legend);
void table_free(Table *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Table, table_free)

/* Verbs. */
int verb_list(Ctx *c, int argc, char **argv);
int verb_show(Ctx *c, int argc, char **argv);
int verb_metrics(Ctx *c, int argc, char **argv);
int verb_create(Ctx *c, int argc, char **argv);
int verb_start(Ctx *c, int argc, char **argv);
int verb_stop(Ctx *c, int argc, char **argv);
int verb_destroy(Ctx *c, int argc, char **argv);
int verb_namespace(Ctx *c, int argc, char **argv);
int verb_limit(Ctx *c, int argc, char **argv);
/* verbs-runtime.c: the limit options into a{sv}; a device's Limits for show. */
int append_limits(sd_bus_message *m, JsonObject *limits);
void print_limits(JsonObject *props);
int verb_link(Ctx *c, int argc, char **argv);
int verb_xml(Ctx *c, int argc, char **argv);
int verb_attach(Ctx *c, int argc, char **argv);
int verb_detach(Ctx *c, int argc, char **argv);
int verb_migrate(Ctx *c, int argc, char **argv);
int verb_receive_image(Ctx *c, int argc, char **argv);
int verb_help(Ctx *c, int argc, char **argv);
/* After a create: warn on stderr when the VM's libvirt definition could not be updated. */
void warn_libvirt_status(JsonNode *props);
