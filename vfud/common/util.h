/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small parsers and validators shared by vfud, vfud-worker and vfuctl:
 * sizes with binary suffixes, MAC addresses, device and interface names.
 *
 * Return convention: TRUE/FALSE with a GError (domain G_IO_ERROR,
 * G_IO_ERROR_INVALID_ARGUMENT) whose message names the bad value and what
 * is accepted instead.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#define UTIL_NAME_MAX 64

/* "10G", "512M", "4096", "1.5T", "10GiB": binary multiples. */
gboolean util_parse_size(const char *s, uint64_t *ret, GError **error);
/* "10.0G": human form of a size (g_free). */
char *util_format_size(uint64_t size);

/* "52:54:00:12:34:56" → bytes; refuses multicast and all-zero addresses. */
gboolean util_parse_mac(const char *s, uint8_t mac[6], GError **error);
char *util_format_mac(const uint8_t mac[6]);

/* A device name: 1..64 of [A-Za-z0-9_.-], not starting with '.' or '-'. */
gboolean util_name_is_valid(const char *name);
gboolean util_check_name(const char *what, const char *name, GError **error);

/* A network interface name (IFNAMSIZ-1 bytes, no '/', ':' or whitespace). */
gboolean util_ifname_is_valid(const char *name);

/* Write data to path atomically: temporary file, fsync, rename, fsync dir. 0 or -errno. */
int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
