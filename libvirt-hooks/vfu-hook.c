/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfu-hook: libvirt's qemu hook for vfu (man vfu-hook(8)).
 *
 * libvirt runs it as  vfu-hook DOMAIN OPERATION SUB-OPERATION EXTRA
 * with the domain XML on stdin, synchronously, holding the domain's lock.
 * So it never calls libvirt (that would deadlock); it reads the vfio-user
 * devices from the XML and talks only to vfud, over D-Bus, with a short
 * deadline.
 *
 *   prepare begin    every device listens, or exit 1 naming device and
 *                    reason (libvirt shows stderr and does not start QEMU)
 *   release end      every device back to idle; definitions are kept
 *   migrate begin    refused while the VM has vfio-user devices: QEMU's
 *   restore begin    vfio-user client does not carry device state
 *   reconnect begin  devices of the running VM ensured; never fails (a
 *                    failing reconnect hook makes libvirt kill the VM)
 *   anything else    exit 0, silently
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vlv.h"
#include "hook-vfud.h"

#define HOOK_TIMEOUT_SEC_DEFAULT 5
#define HOOK_STDIN_MAX           (64u << 20) /* libvirt's own XML limit is far below */

typedef struct {
        const char *vm;
        const char *op;
        const char *subop;
        const char *bus_address;
        unsigned timeout_sec;
        char *xml; /* stdin; NULL when unreadable */
        GPtrArray *devices; /* VlvDomainDevice; NULL when the XML is unusable */
} Hook;

typedef int (*HookFunc)(Hook *h);

static int G_GNUC_PRINTF(2, 3) say(Hook *h, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "vfu-hook: VM '%s': ", h->vm);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return 1;
}

static char *device_names(GPtrArray *devices) {
        GString *s = g_string_new(NULL);

        for (guint i = 0; i < devices->len; i++) {
                VlvDomainDevice *d = devices->pdata[i];

                g_string_append_printf(s, "%s%s", i ? ", " : "", d->name);
        }
        return g_string_free(s, FALSE);
}

static int open_bus(Hook *h, HookBus *hb) {
        g_autofree char *msg = NULL;
        g_autofree char *names = device_names(h->devices);

        if (hook_bus_open(hb, h->bus_address, (uint64_t) h->timeout_sec * 1000000u, &msg) < 0) {
                say(h, "its vfio-user devices (%s) need vfud, but %s", names, msg);
                return -1;
        }
        return 0;
}

/* prepare begin: every device listening before QEMU starts and connects */
static int op_prepare(Hook *h) {
        HookBus hb;
        int failed = 0;

        if (h->devices->len == 0)
                return 0;
        if (open_bus(h, &hb) < 0)
                return 1;
        for (guint i = 0; i < h->devices->len; i++) {
                VlvDomainDevice *d = h->devices->pdata[i];
                g_autofree char *msg = NULL;

                if (hook_vfud_start(&hb, d->name, d->socket_path, &msg) < 0) {
                        say(h, "vfio-user device '%s' is not ready: %s", d->name, msg);
                        failed = 1;
                }
        }
        hook_bus_close(&hb);
        return failed;
}

/* release end: QEMU is gone; the devices go idle, definitions stay */
static int op_release(Hook *h) {
        HookBus hb;
        int failed = 0;

        if (h->devices->len == 0)
                return 0;
        if (open_bus(h, &hb) < 0)
                return 1;
        for (guint i = 0; i < h->devices->len; i++) {
                VlvDomainDevice *d = h->devices->pdata[i];
                g_autofree char *msg = NULL;

                if (hook_vfud_stop(&hb, d->name, &msg) < 0) {
                        say(h, "could not stop vfio-user device '%s': %s", d->name, msg);
                        failed = 1;
                }
        }
        hook_bus_close(&hb);
        return failed;
}

/* reconnect begin: libvirtd restarted and found the VM running.  A
 * failure here makes libvirt kill the VM, which a device problem does
 * not justify: report, never fail. */
static int op_reconnect(Hook *h) {
        HookBus hb;

        if (h->devices->len == 0 || open_bus(h, &hb) < 0)
                return 0;
        for (guint i = 0; i < h->devices->len; i++) {
                VlvDomainDevice *d = h->devices->pdata[i];
                g_autofree char *msg = NULL;

                if (hook_vfud_start(&hb, d->name, d->socket_path, &msg) < 0)
                        say(h,
                            "vfio-user device '%s' of the running VM is not ready: %s "
                            "(the VM keeps running; check vfuctl show %s)",
                            d->name, msg, d->name);
        }
        hook_bus_close(&hb);
        return 0;
}

/*
 * migrate begin (on the destination) and restore begin.  QEMU's
 * vfio-user client (10.1 to 11.x) neither transfers device state nor
 * tracks dirty pages, and adds no migration blocker, so an incoming
 * migration or a restored save image would resume the guest against
 * devices in reset state.  Refuse.  libvirt runs this hook for offline
 * migrations too and does not say which kind it is; the VM is known to be
 * shut off when every device already arrived here by a cold migration
 * (vfuctl migrate: MigratedFrom set, no client since), since vfud never
 * moves a device a VM is using: accept then.  Once a client can migrate
 * device state, this is where the destination's socket paths are
 * rewritten: libvirt takes the XML printed on stdout as the incoming
 * definition.
 */
static int op_migrate(Hook *h) {
        g_autofree char *names = NULL, *why = NULL;
        HookBus hb;
        int arrived = 1;

        if (h->devices->len == 0)
                return 0;
        names = device_names(h->devices);
        if (hook_bus_open(&hb, h->bus_address, (uint64_t) h->timeout_sec * 1000000u, &why) >= 0) {
                for (guint i = 0; arrived > 0 && i < h->devices->len; i++) {
                        VlvDomainDevice *d = h->devices->pdata[i];
                        g_autofree char *from = NULL;

                        g_clear_pointer(&why, g_free);
                        arrived = hook_vfud_arrived(&hb, d->name, &from, &why);
                }
                hook_bus_close(&hb);
        } else
                arrived = -1;
        if (arrived > 0)
                return 0; /* an offline migration after vfuctl migrate */
        return say(h,
                   "refusing live migration: it has vfio-user devices (%s), and "
                   "QEMU's vfio-user client cannot migrate device state (%s). Shut the VM "
                   "down and move it cold (vfuctl migrate --vm %s --to HOST moves its "
                   "devices and then its libvirt domain), or detach the devices "
                   "(vfuctl detach) before migrating",
                   names, why ? why : "", h->vm);
}

static int op_restore(Hook *h) {
        g_autofree char *names = NULL;

        if (h->devices->len == 0)
                return 0;
        names = device_names(h->devices);
        return say(h,
                   "refusing to restore a saved state: it has vfio-user devices "
                   "(%s), whose state QEMU's vfio-user client does not save. Start the "
                   "VM afresh instead (for a managed save, discard it first: virsh "
                   "managedsave-remove %s)",
                   names, h->vm);
}

static const struct {
        const char *op;
        const char *subop;
        HookFunc func;
} ops[] = {
        { "prepare", "begin", op_prepare }, { "release", "end", op_release },       { "migrate", "begin", op_migrate },
        { "restore", "begin", op_restore }, { "reconnect", "begin", op_reconnect },
};

static char *read_stdin(void) {
        GString *s = g_string_new(NULL);
        char buf[65536];
        ssize_t n;

        /* read it all even when unused: libvirt writes the whole XML */
        while ((n = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (s->len + (size_t) n > HOOK_STDIN_MAX) {
                        g_string_free(s, TRUE);
                        return NULL;
                }
                g_string_append_len(s, buf, n);
        }
        return g_string_free(s, FALSE);
}

static void usage(FILE *f) {
        fprintf(f,
                "usage: vfu-hook [--bus ADDRESS] [--timeout SECONDS] DOMAIN OPERATION SUB-OPERATION [EXTRA]\n"
                "libvirt's qemu hook for vfu; reads the domain XML on stdin. See vfu-hook(8).\n"
                "  --bus ADDRESS      vfud's bus: system (default), session, or a D-Bus address\n"
                "                     (default from $VFU_HOOK_BUS)\n"
                "  --timeout SECONDS  budget per device operation (default %d)\n",
                HOOK_TIMEOUT_SEC_DEFAULT);
}

int main(int argc, char **argv) {
        static const struct option options[] = { { "bus", required_argument, NULL, 'b' },
                                                 { "timeout", required_argument, NULL, 't' },
                                                 { "help", no_argument, NULL, 'h' },
                                                 { "version", no_argument, NULL, 'V' },
                                                 {} };
        Hook h = { .timeout_sec = HOOK_TIMEOUT_SEC_DEFAULT };
        g_autoptr(GError) error = NULL;
        HookFunc func = NULL;
        int c, rc;

        h.bus_address = getenv("VFU_HOOK_BUS");
        while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
                switch (c) {
                case 'b':
                        h.bus_address = optarg;
                        break;
                case 't': {
                        char *end;
                        unsigned long v = strtoul(optarg, &end, 10);

                        if (*end || v == 0 || v > 300) {
                                fprintf(stderr, "vfu-hook: --timeout takes 1 to 300 seconds\n");
                                return 2;
                        }
                        h.timeout_sec = (unsigned) v;
                        break;
                }
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("vfu-hook %s\n", PACKAGE_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (argc - optind < 3) {
                usage(stderr);
                return 2;
        }
        if (!h.bus_address || !*h.bus_address)
                h.bus_address = "system";
        h.vm = argv[optind];
        h.op = argv[optind + 1];
        h.subop = argv[optind + 2];

        for (size_t i = 0; i < G_N_ELEMENTS(ops); i++)
                if (strcmp(ops[i].op, h.op) == 0 && strcmp(ops[i].subop, h.subop) == 0)
                        func = ops[i].func;
        h.xml = read_stdin();
        if (!func) {
                g_free(h.xml);
                return 0;
        }
        if (!h.xml) {
                say(&h, "the domain XML on stdin is larger than %u MiB", HOOK_STDIN_MAX >> 20);
                return 1;
        }
        h.devices = vlv_domxml_list_devices(h.xml, &error);
        if (!h.devices) {
                g_free(h.xml);
                /* A start or stop is not blocked over XML this hook cannot
                 * read (QEMU reports a missing device itself); a migration
                 * or restore that cannot be judged safe is refused. */
                say(&h, "cannot read the domain XML from libvirt: %s", error->message);
                return func == op_migrate || func == op_restore;
        }
        rc = func(&h);
        g_ptr_array_unref(h.devices);
        g_free(h.xml);
        return rc;
}
