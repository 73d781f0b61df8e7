/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Network block backends of a disk (NVMe namespace 1, the virtio-blk disk),
 * manager side: nbd=URI or rbd=POOL/IMAGE with rbd-conf=, rbd-id=,
 * rbd-keyring=, checked and turned into the definition's disk object
 * (kind "nbd" or "rbd").  The worker connects; vfud opens nothing, creates
 * nothing, copies nothing when such a device migrates.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/* The options, for a device type's DeviceOptionSpec table. */
#define NETBLK_OPTION_SPECS \
        { "nbd", DEVICE_OPTION_STRING, "NBD export of the disk: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH" }, \
        { "rbd", DEVICE_OPTION_STRING, "Ceph RBD image of the disk: POOL/IMAGE or POOL/NAMESPACE/IMAGE (created of size= when missing)" }, \
        { "rbd-conf", DEVICE_OPTION_STRING, "the Ceph cluster's configuration file (default: Ceph's search, /etc/ceph/ceph.conf)" }, \
        { "rbd-id", DEVICE_OPTION_STRING, "the Ceph client id (default: admin)" }, \
        { "rbd-keyring", DEVICE_OPTION_STRING, "the keyring with the client's key (default: the configuration's)" }

/* Does in ask for a network backend (nbd=, rbd= or an rbd-* option)? */
bool netblk_requested(GHashTable *in);

typedef struct Manager Manager;

/*
 * The disk object (nsid 1) for nbd= or rbd= in in, with size= when
 * have_size; have_other: another backend (file=, block=, null=) was given
 * too.  NULL with a MANAGER_ERROR_INVALID_ARGUMENT error when the options
 * make no sense, or MANAGER_ERROR_BACKEND_FAILED when another device than
 * name has that export or image already (a disk has one writer).
 */
JsonObject *netblk_resolve(Manager *m, const char *name, GHashTable *in, bool have_size, uint64_t size,
                           bool have_other, GError **error);

/* Is a disk object's kind a network backend's ("nbd", "rbd")? */
bool netblk_kind(const char *kind);
