/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The command line as data: every option, every verb with the options it
 * takes, its arguments and its help.  Parsing, dispatch and both levels of
 * help (vfuctl --help, vfuctl help VERB) are driven from these two tables.
 */
#include <string.h>

#include "vfuctl.h"

const OptionInfo option_table[] = {
        /* global: every verb takes them */
        { "host", 'H', 'H', "[USER@]HOST", true, "Operate on a remote host, over ssh" },
        { "bus", 0, ARG_BUS, "BUS", true,
          "system (default), session or a D-Bus address; $VFUD_BUS sets the default" },
        { "no-ask-password", 0, ARG_NO_ASK_PASSWORD, NULL, true,
          "Do not ask for a password when polkit wants one: fail instead" },
        { "help", 'h', 'h', NULL, true, "Show this help (after a command: that command's help)" },
        { "version", 0, ARG_VERSION, NULL, true, "Show the version" },
        /* taken by the verbs that list them */
        { "json", 0, ARG_JSON, NULL, false, "Print the result as JSON (snake_case keys, see vfuctl(1))" },
        { "no-legend", 0, ARG_NO_LEGEND, NULL, false, "Print the table without its header" },
        { "vm", 0, ARG_VM, "VM", false, "The VM the device belongs to" },
        { "name", 0, ARG_NAME, "NAME", false, "Device name (default: generated, e.g. VM-nvme0)" },
        { "size", 0, ARG_SIZE, "SIZE", false,
          "Size of a new image: K, M, G or T (binary), a multiple of 4096" },
        { "file", 0, ARG_FILE, "PATH", false, "An existing backing file" },
        { "block", 0, ARG_BLOCK, "DEVICE", false, "A block device" },
        { "nbd", 0, ARG_NBD, "URI", false,
          "(nvme, virtio-blk) An NBD export served by qemu-storage-daemon, qemu-nbd or nbdkit: nbd://HOST[:PORT]/EXPORT or "
          "nbd+unix:///EXPORT?socket=PATH" },
        { "rbd", 0, ARG_RBD, "POOL/IMAGE", false,
          "(nvme, virtio-blk) A Ceph RBD image (POOL/IMAGE or POOL/NAMESPACE/IMAGE), created of --size when missing" },
        { "rbd-conf", 0, ARG_RBD_CONF, "PATH", false, "(nvme, virtio-blk) The Ceph cluster's configuration (default /etc/ceph/ceph.conf)" },
        { "rbd-id", 0, ARG_RBD_ID, "ID", false, "(nvme, virtio-blk) The Ceph client id (default admin)" },
        { "rbd-keyring", 0, ARG_RBD_KEYRING, "PATH", false, "(nvme, virtio-blk) The keyring with the client's key" },
        { "serial", 0, ARG_SERIAL, "SERIAL", false, "(nvme, virtio-blk) Serial number" },
        { "block-size", 0, ARG_BLOCK_SIZE, "BYTES", false, "(nvme, virtio-blk) Logical block size: 512 or 4096" },
        { "null", 0, ARG_NULL, "SIZE", false,
          "(nvme, virtio-blk) The disk stores no data (reads return zeroes, writes are dropped): for benchmarks; "
          "(virtio-net) no network: sent frames are dropped, broadcast frames of SIZE bytes (0: none) are received" },
        { "read-only", 0, ARG_READ_ONLY, NULL, false, "(virtio-blk) The guest may only read the disk" },
        { "msi", 0, ARG_MSI, NULL, false,
          "(nvme) MSI instead of MSI-X: the device can be hot-detached from a running VM on QEMU 11.1" },
        { "hotplug", 0, ARG_HOTPLUG, NULL, false,
          "(nvme) The device will be hot-attached to and detached from running VMs: MSI as with --msi" },
        { "queues", 0, ARG_QUEUES, "N", false, "Queue pairs (virtio-blk: request queues)" },
        { "iothreads", 0, ARG_IOTHREADS, "N", false, "(nvme) I/O threads the queue pairs are spread over (default 1)" },
        { "poll-us", 0, ARG_POLL_US, "US", false,
          "(nvme) Longest polling window of an I/O thread in microseconds, 0: never poll (default 50)" },
        { "tap", 0, ARG_TAP, "IFNAME", false,
          "(virtio-net) TAP interface, created if missing (default: vfu-NAME)" },
        { "passt", 0, ARG_PASST, NULL, false, "(virtio-net) User-mode networking through passt" },
        { "mac", 0, ARG_MAC, "MAC", false, "(virtio-net) MAC address (default: derived from the name)" },
        { "mtu", 0, ARG_MTU, "MTU", false, "(virtio-net) MTU offered to the guest (default: the TAP's)" },
        { "cpu-quota", 0, ARG_CPU_QUOTA, "PERCENT", false,
          "CPU time of the device's worker, in percent of one CPU (its systemd unit's CPUQuota=)" },
        { "memory-max", 0, ARG_MEMORY_MAX, "SIZE", false,
          "Memory of the device's worker: K, M, G or T (its systemd unit's MemoryMax=)" },
        { "io-weight", 0, ARG_IO_WEIGHT, "WEIGHT", false,
          "I/O weight of the device's worker, 1 to 10000 (its systemd unit's IOWeight=)" },
        { "tasks-max", 0, ARG_TASKS_MAX, "N", false,
          "Threads of the device's worker (its systemd unit's TasksMax=)" },
        { "domain-xml", 0, ARG_DOMAIN_XML, "FILE", false, "Render this domain XML instead of libvirt's" },
        { "to", 0, ARG_TO, "DEST", false, "Destination vfud: [USER@]HOST (over ssh) or a D-Bus address" },
        { "storage", 0, ARG_STORAGE, "HOW", false,
          "copy (the images vfud created) or shared (the same backing files are there)" },
        { "timeout", 0, ARG_TIMEOUT, "SEC", false, "How long a live hand-over may take (default 300)" },
        { "namespace", 0, ARG_NAMESPACE, "NSID", false, "(nvme) The namespace whose limits change (default 1)" },
        { "libvirt-uri", 0, ARG_LIBVIRT_URI, "URI", false,
          "The destination's libvirt, where the VM's domain moves (default: qemu+ssh://DEST/system)" },
};
const size_t option_table_len = G_N_ELEMENTS(option_table);

/* An entry with help NULL uses the option's own help. */
#define OPTS(...) ((const VerbOption[]) { __VA_ARGS__, { NULL, NULL } })

const Verb verb_table[] = {
        { "list", 0, 0, verb_list, "[--vm VM]", "List devices",
          "List devices: name, type, VM, state, whether a client is connected, and the vfio-user socket.",
          OPTS({ "vm", "Only the devices of this VM" }, { "json", NULL }, { "no-legend", NULL }) },
        { "show", 1, 1, verb_show, "NAME", "Show a device: state, backend, statistics",
          "Show a device: state, socket, worker, last error, libvirt and migration state, backend and "
          "statistics.",
          OPTS({ "json", NULL }) },
        { "metrics", 0, -1, verb_metrics, "[NAME...] [--vm VM]", "Print device statistics as OpenMetrics",
          "Print every device's statistics (or those of the devices named, or of a VM's) in the OpenMetrics "
          "text format, with the labels device, vm and type: state, connection, restarts, vfio-user messages "
          "and interrupts, and each device type's counters.  docs/metrics.md lists every metric.",
          OPTS({ "vm", "Only the devices of this VM" }) },
        { "create", 1, 1, verb_create, "nvme|virtio-blk|virtio-net [OPTIONS]", "Create a device and start it",
          "Create a device and start it.  An NVMe controller's namespace 1, or a virtio-blk disk, is a new "
          "sparse image of --size, an existing file (--file), a block device (--block), an NBD export (--nbd: "
          "the worker reconnects when its server restarts), a Ceph RBD image (--rbd) or a "
          "null backend that "
          "stores nothing (--null).  A virtio-net adapter uses a TAP "
          "interface (--tap), user-mode networking (--passt) or a null backend (--null FRAME-BYTES).  Creating a device again with the same "
          "definition changes nothing.",
          OPTS({ "vm", NULL }, { "name", NULL },
               { "size", "(nvme, virtio-blk) Size of namespace 1 or of the disk: K, M, G or T (binary), a "
                         "multiple of 4096; default: the whole file or device" },
               { "file", "(nvme, virtio-blk) An existing backing file" },
               { "block", "(nvme, virtio-blk) A block device" }, { "nbd", NULL }, { "rbd", NULL },
               { "rbd-conf", NULL }, { "rbd-id", NULL }, { "rbd-keyring", NULL }, { "serial", NULL },
               { "block-size", NULL },
               { "null", NULL }, { "read-only", NULL }, { "queues", NULL }, { "iothreads", NULL }, { "poll-us", NULL }, { "msi", NULL }, { "hotplug", NULL }, { "tap", NULL }, { "passt", NULL },
               { "mac", NULL }, { "mtu", NULL }, { "cpu-quota", NULL }, { "memory-max", NULL },
               { "io-weight", NULL }, { "tasks-max", NULL }, { "json", NULL }) },
        { "start", 1, -1, verb_start, "NAME...", "Start devices (they listen for a client)",
          "Start devices: their workers listen for a VMM.", NULL },
        { "stop", 1, -1, verb_stop, "NAME...", "Stop devices",
          "Stop devices.  Refused while a VMM is connected: shut the VM down first.  A stopped device stays "
          "stopped until it is started or the host reboots.", NULL },
        { "destroy", 1, -1, verb_destroy, "NAME...", "Stop and remove devices",
          "Stop devices and remove their definitions and the images vfud created.", NULL },
        { "namespace", 3, 4, verb_namespace, "add|remove|resize NAME NSID [SIZE]", "Change NVMe namespaces",
          "Change an NVMe device's namespaces, at runtime if it is running (the guest is told through an "
          "asynchronous event).  add: a new namespace NSID, a new image of SIZE (or --size), or --file or "
          "--block.  remove: remove namespace NSID (and its image if vfud created it).  resize: grow "
          "namespace NSID to SIZE (or --size); vfud grows its images, a file or block device must be "
          "grown first.  A virtio-blk device's disk is namespace 1: resize grows it (the guest is told "
          "through a configuration interrupt).",
          OPTS({ "size", "The SIZE argument as an option" },
               { "file", "(add) Back the namespace with this file" },
               { "block", "(add) Back the namespace with this block device" }) },
        { "limit", 1, 1, verb_limit, "NAME [--namespace NSID] [LIMIT OPTIONS]", "Show or change I/O limits",
          "Show a device's I/O limits, or change them while it runs, without stopping I/O: the limit options "
          "given change (0 removes a limit), the others stay; the definition keeps them.  nvme: a namespace's "
          "limits (--namespace, default 1) and, with the group- options, those all its namespaces share; "
          "virtio-net: what the guest sends (tx-) and receives (rx-).  The limit options are those of create "
          "(vfuctl help create lists them).",
          OPTS({ "namespace", NULL }, { "json", NULL }) },
        { "link", 2, 2, verb_link, "up|down NAME", "Set a virtio-net device's link state",
          "Set the link state a virtio-net device reports to the guest.", NULL },
        { "xml", 0, 0, verb_xml, "--vm VM [--domain-xml FILE]", "Print the libvirt XML vfud applies to a VM",
          "Print the libvirt domain definition vfud applies to a VM (its persistent definition with shared "
          "memfd memory and the VM's devices), without applying it.",
          OPTS({ "vm", "The VM (required)" }, { "domain-xml", NULL }) },
        { "attach", 1, 1, verb_attach, "NAME --vm VM", "Hot-plug a device into a VM and record it",
          "Hot-plug a device into a running VM and record it in the VM's persistent definition (for a VM "
          "that is shut off, only the definition changes).",
          OPTS({ "vm", "The VM (required)" }) },
        { "detach", 1, -1, verb_detach, "NAME...", "Hot-unplug devices from their VM",
          "Hot-unplug devices from their VM (the guest must release them) and remove them from its "
          "persistent definition; the devices stay defined.", NULL },
        { "migrate", 0, 1, verb_migrate, "NAME|--vm VM --to DEST [OPTIONS]", "Move devices to another host",
          "Move a device, or every device of a VM, to the vfud at DEST.  Devices without a client move "
          "cold (stopped, defined there, storage moved, started there if they ran here); a device whose "
          "VMM uses vfio-user migration moves live.  With --vm, the VM's libvirt domain follows offline.  "
          "Progress is printed while images move (one line rewritten on a terminal); Ctrl-C cancels and rolls "
          "back both sides; on failure the devices run here again.",
          OPTS({ "vm", "Move every device of this VM, then its libvirt domain" },
               { "to", "Destination vfud (required): [USER@]HOST (over ssh) or a D-Bus address" },
               { "storage", NULL }, { "timeout", NULL }, { "libvirt-uri", NULL },
               { "json", "Progress and the result as JSON lines" }) },
        { "receive-image", 2, 2, verb_receive_image, "DEVICE NSID",
          "Receive a migrated image (run by vfud)",
          "Hand standard input, an image stream (docs/migration.md), to this host's vfud as namespace NSID of "
          "DEVICE, and wait until the image is complete, checked and flushed.  The source vfud of "
          "vfuctl migrate --to HOST runs it through ssh; it is not meant to be run by hand.",
          OPTS({ "json", "Print the data bytes and extents received as JSON" }) },
        { "help", 0, 1, verb_help, "[COMMAND]", "Show the help of vfuctl or of a command",
          "Show the summary of commands and global options, or a command's usage, options and description.",
          NULL },
};
const size_t verb_table_len = G_N_ELEMENTS(verb_table);

const Verb *verb_find(const char *name) {
        for (size_t i = 0; i < verb_table_len; i++)
                if (strcmp(verb_table[i].name, name) == 0)
                        return &verb_table[i];
        return NULL;
}

const OptionInfo *option_find(const char *name) {
        for (size_t i = 0; i < option_table_len; i++)
                if (strcmp(option_table[i].name, name) == 0)
                        return &option_table[i];
        return NULL;
}

const VerbOption *verb_option(const Verb *v, const char *name) {
        for (const VerbOption *o = v->options; o && o->name; o++)
                if (strcmp(o->name, name) == 0)
                        return o;
        return NULL;
}

/* The limit options, built once from common/limits.h. */
const LimitOption *limit_options(void) {
        static LimitOption *all;
        GArray *a;

        if (all)
                return all;
        a = g_array_new(TRUE, TRUE, sizeof(LimitOption));
        for (unsigned group = 0; group < 2; group++)
                for (const LimitsKey *k = limits_keys(LIMITS_NVME); k->name; k++) {
                        LimitOption o = {
                                .name = group ? g_strconcat(LIMITS_GROUP_PREFIX, k->name, NULL) : k->name,
                                .help = group ? g_strconcat("(nvme) All namespaces together: ", k->help, NULL)
                                              : g_strconcat("(nvme) Namespace 1: ", k->help, NULL),
                                .set = LIMITS_NVME,
                                .group = group,
                        };
                        g_array_append_val(a, o);
                }
        for (const LimitsKey *k = limits_keys(LIMITS_NET); k->name; k++) {
                LimitOption o = { .name = k->name, .help = g_strconcat("(virtio-net) ", k->help, NULL),
                                  .set = LIMITS_NET };
                g_array_append_val(a, o);
        }
        all = (LimitOption *) (void *) g_array_free(a, FALSE);
        return all;
}

const LimitOption *limit_option_find(const char *name) {
        for (const LimitOption *o = limit_options(); o->name; o++)
                if (strcmp(o->name, name) == 0)
                        return o;
        return NULL;
}
