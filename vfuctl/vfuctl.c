/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfuctl: manage vfio-user devices through vfud.  See vfuctl(1).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bus-names.h"
#include "common/util.h"
#include "vfuctl.h"

int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "vfuctl: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\n");
        return EXIT_USAGE;
}

static const struct {
        const char *name;
        int code;
} error_codes[] = {
        { VFUD_DBUS_ERROR_NO_SUCH_DEVICE, EXIT_NO_DEVICE },
        { VFUD_DBUS_ERROR_DEVICE_EXISTS, EXIT_CONFLICT },
        { VFUD_DBUS_ERROR_DEVICE_BUSY, EXIT_CONFLICT },
        { VFUD_DBUS_ERROR_INVALID_ARGUMENT, EXIT_USAGE },
        { VFUD_DBUS_ERROR_BACKEND_FAILED, EXIT_BACKEND },
        { VFUD_DBUS_ERROR_NOT_SUPPORTED, EXIT_NOT_SUPPORTED },
        { VFUD_DBUS_ERROR_NOT_RUNNING, EXIT_NOT_RUNNING },
        { VFUD_DBUS_ERROR_NO_SUCH_VM, EXIT_NO_DEVICE },
        { VFUD_DBUS_ERROR_LIBVIRT_UNAVAILABLE, EXIT_BACKEND },
        { VFUD_DBUS_ERROR_NOT_MIGRATABLE, EXIT_NOT_SUPPORTED },
        { VFUD_DBUS_ERROR_WORKER_FAILED, EXIT_FAILED },
        { SD_BUS_ERROR_ACCESS_DENIED, EXIT_DENIED },
        { SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED, EXIT_DENIED },
        { SD_BUS_ERROR_INVALID_ARGS, EXIT_USAGE },
        { SD_BUS_ERROR_SERVICE_UNKNOWN, EXIT_UNREACHABLE },
        { SD_BUS_ERROR_NAME_HAS_NO_OWNER, EXIT_UNREACHABLE },
        { SD_BUS_ERROR_NO_REPLY, EXIT_UNREACHABLE },
        { SD_BUS_ERROR_TIMEOUT, EXIT_UNREACHABLE },
        { SD_BUS_ERROR_DISCONNECTED, EXIT_UNREACHABLE },
};

int report_bus_error(const char *what, const sd_bus_error *error, int r) {
        const char *name = error && error->name ? error->name : NULL;

        if (name && (strcmp(name, SD_BUS_ERROR_SERVICE_UNKNOWN) == 0 ||
                     strcmp(name, SD_BUS_ERROR_NAME_HAS_NO_OWNER) == 0))
                fprintf(stderr, "vfuctl: %s: vfud is not running (start it: systemctl start vfud)\n", what);
        else
                fprintf(stderr, "vfuctl: %s: %s\n", what,
                        error && error->message ? error->message : g_strerror(r < 0 ? -r : EIO));
        for (size_t i = 0; name && i < G_N_ELEMENTS(error_codes); i++)
                if (strcmp(error_codes[i].name, name) == 0)
                        return error_codes[i].code;
        return EXIT_FAILED;
}

/*
 * As systemctl does: on a terminal, run polkit's text agent (pkttyagent)
 * for this process, so that polkit can ask for a password, and wait until it
 * has registered.  Not for root (always allowed), remote hosts (ssh carries
 * no agent) or --no-ask-password.  Without pkttyagent, a desktop session's
 * agent may still answer.
 */
static void polkit_agent_open(Ctx *c) {
        g_autofree char *agent = NULL, *pid_arg = NULL, *fd_arg = NULL;
        int pipefd[2];
        pid_t pid;

        if (c->opt.no_ask_password || c->opt.host || geteuid() == 0 || !isatty(STDIN_FILENO) || c->agent_pid)
                return;
        agent = g_find_program_in_path("pkttyagent");
        if (!agent || pipe2(pipefd, O_CLOEXEC) < 0)
                return;
        pid_arg = g_strdup_printf("%d", (int) getpid());
        fd_arg = g_strdup_printf("%d", pipefd[1]);
        pid = fork();
        if (pid == 0) {
                (void) fcntl(pipefd[1], F_SETFD, 0);    /* the agent's notify fd survives exec */
                execl(agent, agent, "--notify-fd", fd_arg, "--fallback", "--process", pid_arg, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        if (pid > 0) {
                /* The agent writes or closes the fd once it is registered (or gives up). */
                struct pollfd p = { .fd = pipefd[0], .events = POLLIN };

                (void) poll(&p, 1, 10 * 1000);
                c->agent_pid = pid;
        }
        close(pipefd[0]);
}

void ctx_agent_close(Ctx *c) {
        if (c->agent_pid <= 0)
                return;
        (void) kill(c->agent_pid, SIGTERM);
        (void) waitpid(c->agent_pid, NULL, 0);
        c->agent_pid = 0;
}

int ctx_bus(Ctx *c) {
        const char *bus = c->opt.bus ? c->opt.bus : getenv(VFUD_BUS_ENV);
        int r;

        if (c->bus)
                return EXIT_OK;
        if (c->opt.host) {
                const char *unique;

                /* connect now: ssh failing shows here as an unreachable host, not in the first call */
                r = sd_bus_open_system_remote(&c->bus, c->opt.host);
                if (r >= 0)
                        r = sd_bus_get_unique_name(c->bus, &unique);
        } else if (!bus || strcmp(bus, "system") == 0)
                r = sd_bus_open_system(&c->bus);
        else if (strcmp(bus, "session") == 0 || strcmp(bus, "user") == 0)
                r = sd_bus_open_user(&c->bus);
        else {
                r = sd_bus_new(&c->bus);
                if (r >= 0)
                        r = sd_bus_set_address(c->bus, bus);
                if (r >= 0)
                        r = sd_bus_set_bus_client(c->bus, 1);
                if (r >= 0)
                        r = sd_bus_start(c->bus);
        }
        /* As systemctl: polkit may ask for a password (through the caller's agent) unless told not to. */
        if (r >= 0)
                r = sd_bus_set_allow_interactive_authorization(c->bus, !c->opt.no_ask_password);
        if (r >= 0)
                polkit_agent_open(c);
        if (r < 0) {
                fprintf(stderr, "vfuctl: cannot connect to the %s bus%s%s: %s\n",
                        c->opt.host ? "remote system" : bus ? bus : "system",
                        c->opt.host ? " of " : "", c->opt.host ? c->opt.host : "", g_strerror(-r));
                c->bus = sd_bus_flush_close_unref(c->bus);
                return EXIT_UNREACHABLE;
        }
        return EXIT_OK;
}

int manager_call(Ctx *c, const char *what, const char *method, sd_bus_message **reply, const char *types, ...) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *m = NULL, *rep = NULL;
        va_list ap;
        int r, code;

        code = ctx_bus(c);
        if (code)
                return code;
        r = sd_bus_message_new_method_call(c->bus, &m, VFUD_BUS_NAME, VFUD_MANAGER_PATH, VFUD_MANAGER_IFACE, method);
        if (r >= 0 && types) {
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call(c->bus, m, 60 * 1000000ULL, &error, &rep);
        sd_bus_message_unref(m);
        if (r < 0) {
                code = report_bus_error(what, &error, r);
                sd_bus_error_free(&error);
                return code;
        }
        if (reply)
                *reply = rep;
        else
                sd_bus_message_unref(rep);
        return EXIT_OK;
}

int device_path(Ctx *c, const char *name, char **ret) {
        sd_bus_message *reply = NULL;
        const char *path;
        int code, r;

        code = manager_call(c, name, "GetDevice", &reply, "s", name);
        if (code)
                return code;
        r = sd_bus_message_read(reply, "o", &path);
        if (r >= 0)
                *ret = g_strdup(path);
        sd_bus_message_unref(reply);
        return r < 0 ? EXIT_FAILED : EXIT_OK;
}

int device_properties(Ctx *c, const char *path, JsonNode **ret) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        g_autoptr(JsonNode) raw = NULL;
        int r, code;

        r = sd_bus_call_method(c->bus, VFUD_BUS_NAME, path, "org.freedesktop.DBus.Properties", "GetAll",
                               &error, &reply, "s", VFUD_DEVICE_IFACE);
        if (r < 0) {
                code = report_bus_error(path, &error, r);
                sd_bus_error_free(&error);
                return code;
        }
        r = bus_read_json(reply, &raw);
        sd_bus_message_unref(reply);
        if (r < 0 || !JSON_NODE_HOLDS_OBJECT(raw)) {
                fprintf(stderr, "vfuctl: unexpected reply from vfud: %s\n", g_strerror(r < 0 ? -r : EBADMSG));
                return EXIT_FAILED;
        }
        *ret = json_snake_keys(raw);
        return EXIT_OK;
}

/* A number from 1 to max; max 0 leaves the upper bound to vfud (it is the device type's). */
static int parse_uint(const char *opt, const char *s, unsigned max, unsigned *ret) {
        char *end = NULL;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (max == 0 && (errno || !*s || *s == '-' || *end || v == 0 || v > UINT32_MAX))
                return usage_error("--%s=%s: expected a positive number", opt, s);
        if (max != 0 && (errno || !*s || *end || v == 0 || v > max))
                return usage_error("--%s=%s: expected a number from 1 to %u", opt, s, max);
        *ret = (unsigned) v;
        return EXIT_OK;
}

/* A number from 0; the upper bound is vfud's (the device type's). */
static int parse_uint0(const char *opt, const char *s, unsigned *ret) {
        char *end = NULL;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno || !g_ascii_isdigit(*s) || *end || v > UINT32_MAX)
                return usage_error("--%s=%s: expected a number from 0", opt, s);
        *ret = (unsigned) v;
        return EXIT_OK;
}

/* getopt_long's table, from option_table. */
static const struct option *getopt_options(void) {
        static struct option options[160];
        size_t n = option_table_len;

        G_STATIC_ASSERT(G_N_ELEMENTS(options) > 30);
        g_assert(option_table_len < G_N_ELEMENTS(options));
        for (size_t i = 0; i < option_table_len; i++)
                options[i] = (struct option) {
                        option_table[i].name, option_table[i].arg ? required_argument : no_argument, NULL,
                        option_table[i].id,
                };
        /* the limit options, ARG_LIMIT_BASE + their index */
        for (const LimitOption *l = limit_options(); l->name; l++) {
                g_assert(n + 1 < G_N_ELEMENTS(options));
                options[n++] = (struct option) { l->name, required_argument, NULL,
                                                 ARG_LIMIT_BASE + (int) (l - limit_options()) };
        }
        return options;
}

/* --iops-total=N and the other limit options: a whole number, 0 removes the limit (limit). */
static int parse_limit(Options *o, const LimitOption *l, const char *arg) {
        guint64 v;
        g_autoptr(GError) error = NULL;

        if (!g_ascii_string_to_unsigned(arg, 10, 0, QOS_VALUE_MAX, &v, &error))
                return usage_error("--%s=%s: give a whole number from 0 to %llu", l->name, arg,
                                   (unsigned long long) QOS_VALUE_MAX);
        if (!o->limits)
                o->limits = json_object_new();
        json_object_set_int_member(o->limits, l->name, (int64_t) v);
        return EXIT_OK;
}

/*
 * Options may come anywhere; positional arguments go to args, the options
 * given to given (OptionInfo rows).  -1 when all is well, else an exit code.
 */
static int parse_args(Ctx *c, int argc, char **argv, GPtrArray *args, GPtrArray *given) {
        const struct option *options = getopt_options();
        Options *o = &c->opt;
        int ch, code;

        opterr = 0;
        for (;;) {
                g_autoptr(GError) error = NULL;

                /* leading ':': a missing value is told apart from an unknown option */
                ch = getopt_long(argc, argv, "+:hH:", options, NULL);
                if (ch == -1) {
                        if (optind >= argc)
                                break;
                        g_ptr_array_add(args, argv[optind++]);
                        continue;
                }
                for (size_t i = 0; i < option_table_len; i++)
                        if (option_table[i].id == ch)
                                g_ptr_array_add(given, (gpointer) &option_table[i]);
                if (ch >= ARG_LIMIT_BASE) {
                        code = parse_limit(o, &limit_options()[ch - ARG_LIMIT_BASE], optarg);
                        if (code)
                                return code;
                        continue;
                }
                switch (ch) {
                case 'h': o->help = true; break;
                case ARG_VERSION:
                        printf("vfuctl %s\n", PACKAGE_VERSION);
                        exit(EXIT_OK);
                case 'H': g_free(o->host); o->host = g_strdup(optarg); break;
                case ARG_BUS: g_free(o->bus); o->bus = g_strdup(optarg); break;
                case ARG_JSON: o->json = true; break;
                case ARG_NO_ASK_PASSWORD: o->no_ask_password = true; break;
                case ARG_NO_LEGEND: o->no_legend = true; break;
                case ARG_VM: g_free(o->vm); o->vm = g_strdup(optarg); break;
                case ARG_NAME:
                        if (!util_check_name("device name", optarg, &error))
                                return usage_error("--name: %s", error->message);
                        g_free(o->name);
                        o->name = g_strdup(optarg);
                        break;
                case ARG_SIZE:
                        if (!util_parse_size(optarg, &o->size, &error))
                                return usage_error("--size: %s", error->message);
                        o->have_size = true;
                        break;
                case ARG_NULL:
                        if (!util_parse_size(optarg, &o->null_size, &error))
                                return usage_error("--null: %s", error->message);
                        o->have_null = true;
                        break;
                case ARG_FILE:
                        g_free(o->file);
                        o->file = g_canonicalize_filename(optarg, NULL);
                        break;
                case ARG_NBD: g_free(o->nbd); o->nbd = g_strdup(optarg); break;
                case ARG_RBD: g_free(o->rbd); o->rbd = g_strdup(optarg); break;
                case ARG_RBD_ID: g_free(o->rbd_id); o->rbd_id = g_strdup(optarg); break;
                case ARG_RBD_CONF:
                        g_free(o->rbd_conf);
                        o->rbd_conf = g_canonicalize_filename(optarg, NULL);
                        break;
                case ARG_RBD_KEYRING:
                        g_free(o->rbd_keyring);
                        o->rbd_keyring = g_canonicalize_filename(optarg, NULL);
                        break;
                case ARG_BLOCK:
                        g_free(o->block);
                        o->block = g_canonicalize_filename(optarg, NULL);
                        break;
                case ARG_DOMAIN_XML: g_free(o->domain_xml); o->domain_xml = g_strdup(optarg); break;
                case ARG_TO: g_free(o->to); o->to = g_strdup(optarg); break;
                case ARG_STORAGE:
                        if (strcmp(optarg, "copy") != 0 && strcmp(optarg, "shared") != 0)
                                return usage_error("--storage=%s: give copy or shared", optarg);
                        g_free(o->storage);
                        o->storage = g_strdup(optarg);
                        break;
                case ARG_TIMEOUT:
                        code = parse_uint("timeout", optarg, 86400, &o->timeout);
                        if (code)
                                return code;
                        if (o->timeout == 0)
                                return usage_error("--timeout=0: give seconds from 1 to 86400");
                        break;
                case ARG_LIBVIRT_URI:
                        if (!*optarg)
                                return usage_error("--libvirt-uri: give the destination's libvirt URI, e.g. qemu+ssh://HOST/system");
                        g_free(o->libvirt_uri);
                        o->libvirt_uri = g_strdup(optarg);
                        break;
                case ARG_SERIAL: g_free(o->serial); o->serial = g_strdup(optarg); break;
                case ARG_QUEUES:
                        code = parse_uint("queues", optarg, 0, &o->queues);
                        if (code)
                                return code;
                        o->have_queues = true;
                        break;
                case ARG_IOTHREADS:
                        code = parse_uint("iothreads", optarg, 0, &o->iothreads);
                        if (code)
                                return code;
                        o->have_iothreads = true;
                        break;
                case ARG_POLL_US:
                        code = parse_uint0("poll-us", optarg, &o->poll_us);
                        if (code)
                                return code;
                        o->have_poll_us = true;
                        break;
                case ARG_TAP:
                        if (!util_ifname_is_valid(optarg))
                                return usage_error("--tap=%s: not a valid interface name (1 to 15 characters without '/', ':' or spaces)", optarg);
                        g_free(o->tap);
                        o->tap = g_strdup(optarg);
                        break;
                case ARG_CPU_QUOTA: {
                        g_autofree char *num = g_strdup(optarg);

                        if (g_str_has_suffix(num, "%"))
                                num[strlen(num) - 1] = '\0';
                        code = parse_uint("cpu-quota", num, 0, &o->cpu_quota);
                        if (code)
                                return code;
                        o->have_cpu_quota = true;
                        break;
                }
                case ARG_MEMORY_MAX:
                        if (!util_parse_size(optarg, &o->memory_max, &error))
                                return usage_error("--memory-max: %s", error->message);
                        o->have_memory_max = true;
                        break;
                case ARG_IO_WEIGHT:
                        code = parse_uint("io-weight", optarg, 10000, &o->io_weight);
                        if (code)
                                return code;
                        o->have_io_weight = true;
                        break;
                case ARG_TASKS_MAX:
                        code = parse_uint("tasks-max", optarg, 0, &o->tasks_max);
                        if (code)
                                return code;
                        o->have_tasks_max = true;
                        break;
                case ARG_PASST: o->passt = true; break;
                case ARG_READ_ONLY: o->read_only = true; break;
                case ARG_MSI: o->msi = true; break;
                case ARG_HOTPLUG: o->hotplug = true; break;
                case ARG_MAC: {
                        uint8_t mac[6];

                        if (!util_parse_mac(optarg, mac, &error))
                                return usage_error("--mac: %s", error->message);
                        g_free(o->mac);
                        o->mac = util_format_mac(mac);
                        break;
                }
                case ARG_BLOCK_SIZE:
                        code = parse_uint("block-size", optarg, 65536, &o->block_size);
                        if (code)
                                return code;
                        o->have_block_size = true;
                        break;
                case ARG_MTU:
                        code = parse_uint("mtu", optarg, 65535, &o->mtu);
                        if (code)
                                return code;
                        o->have_mtu = true;
                        break;
                case ARG_NAMESPACE:
                        code = parse_uint("namespace", optarg, 0, &o->nsid);
                        if (code)
                                return code;
                        o->have_nsid = true;
                        break;
                case ':':
                        return usage_error("option '%s' needs a value", argv[optind - 1]);
                case '?':
                default:
                        if (optopt && g_str_has_prefix(argv[optind - 1], "--") && strchr(argv[optind - 1], '=')) {
                                g_autofree char *opt = g_strndup(argv[optind - 1], strcspn(argv[optind - 1], "="));

                                return usage_error("option '%s' takes no value", opt);
                        }
                        if (optopt && optopt < 0x100 && !g_str_has_prefix(argv[optind - 1], "--"))
                                return usage_error("unknown option '-%c' (see vfuctl --help)", optopt);
                        return usage_error("unknown option '%s' (see vfuctl --help)", argv[optind - 1]);
                }
        }
        return -1;
}

static void options_clear(Options *o) {
        g_free(o->host);
        g_free(o->bus);
        g_free(o->vm);
        g_free(o->name);
        g_free(o->file);
        g_free(o->block);
        g_free(o->nbd);
        g_free(o->rbd);
        g_free(o->rbd_conf);
        g_free(o->rbd_id);
        g_free(o->rbd_keyring);
        g_free(o->serial);
        g_free(o->tap);
        g_free(o->mac);
        g_free(o->domain_xml);
        g_free(o->to);
        g_free(o->storage);
        g_free(o->libvirt_uri);
        if (o->limits)
                json_object_unref(o->limits);
        memset(o, 0, sizeof(*o));
}

static int run(Ctx *c, int argc, char **argv);

int main(int argc, char **argv) {
        Ctx c = { 0 };
        int code = run(&c, argc, argv);

        sd_bus_flush_close_unref(c.bus);
        ctx_agent_close(&c);
        options_clear(&c.opt);
        return code;
}

/* Every option given is one the verb takes. */
static int check_options(const Verb *verb, GPtrArray *given) {
        for (guint i = 0; i < given->len; i++) {
                const OptionInfo *o = given->pdata[i];

                if (!o->global && !verb_option(verb, o->name))
                        return usage_error("--%s does not apply to %s (see vfuctl help %s)", o->name, verb->name,
                                           verb->name);
        }
        return EXIT_OK;
}

static int run(Ctx *c, int argc, char **argv) {
        g_autoptr(GPtrArray) args = g_ptr_array_new();
        g_autoptr(GPtrArray) given = g_ptr_array_new();
        const Verb *verb = NULL;
        int code;

        code = parse_args(c, argc, argv, args, given);
        if (code >= 0)
                return code;
        if (args->len == 0) {
                help_main();
                return c->opt.help ? EXIT_OK : EXIT_USAGE;
        }
        verb = verb_find(args->pdata[0]);
        if (!verb)
                return usage_error("unknown command '%s' (see vfuctl --help)", (char *) args->pdata[0]);
        if (c->opt.help) {              /* vfuctl VERB --help */
                help_verb(verb);
                return EXIT_OK;
        }
        if ((int) args->len - 1 < verb->min_args || (verb->max_args >= 0 && (int) args->len - 1 > verb->max_args))
                return usage_error("usage: vfuctl %s %s", verb->name, verb->args);
        code = check_options(verb, given);
        if (code)
                return code;
        if (c->opt.limits && strcmp(verb->name, "create") != 0 && strcmp(verb->name, "limit") != 0)
                return usage_error("limit options apply to create and limit, not to %s (see vfuctl help limit)",
                                   verb->name);
        c->verb = verb->name;
        return verb->run(c, (int) args->len - 1, (char **) args->pdata + 1);
}
