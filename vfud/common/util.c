/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "util.h"

static const struct {
        char suffix;
        unsigned shift;
} size_suffixes[] = {
        { 'K', 10 }, { 'M', 20 }, { 'G', 30 }, { 'T', 40 }, { 'P', 50 }, { 'E', 60 },
};

gboolean util_parse_size(const char *s, uint64_t *ret, GError **error) {
        const char *p, *end;
        unsigned shift = 0;
        char *num_end = NULL;
        double v;
        uint64_t whole;

        if (!s || !*s)
                goto invalid;
        for (p = s; g_ascii_isdigit(*p) || *p == '.'; p++)
                ;
        if (p == s)
                goto invalid;
        end = p;
        if (*p) {
                char c = g_ascii_toupper(*p);
                gboolean found = FALSE;

                if (c == 'B' && p[1] == '\0')
                        p++;
                else {
                        for (size_t i = 0; i < G_N_ELEMENTS(size_suffixes); i++)
                                if (size_suffixes[i].suffix == c) {
                                        shift = size_suffixes[i].shift;
                                        found = TRUE;
                                }
                        if (!found)
                                goto invalid;
                        p++;
                        if (*p == 'i' || *p == 'I')
                                p++;
                        if (*p == 'b' || *p == 'B')
                                p++;
                }
                if (*p)
                        goto invalid;
        }

        if (memchr(s, '.', end - s)) {
                g_autofree char *n = g_strndup(s, end - s);

                v = g_ascii_strtod(n, &num_end);
                if (*num_end || !isfinite(v) || v < 0)
                        goto invalid;
                v = ldexp(v, (int) shift);
                if (v >= 18446744073709551615.0)
                        goto overflow;
                *ret = (uint64_t) v;
                return TRUE;
        }

        errno = 0;
        whole = g_ascii_strtoull(s, &num_end, 10);
        if (errno || num_end != end)
                goto overflow;
        if (shift && whole > (UINT64_MAX >> shift))
                goto overflow;
        *ret = whole << shift;
        return TRUE;

invalid:
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid size '%s': use a number of bytes with an optional K, M, G, T or P suffix (binary multiples), e.g. 10G",
                    s ? s : "");
        return FALSE;
overflow:
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "size '%s' is too large", s);
        return FALSE;
}

char *util_format_size(uint64_t size) {
        static const char units[] = "KMGTPE";
        double v = (double) size;
        int u = -1;

        if (size < 1024)
                return g_strdup_printf("%" G_GUINT64_FORMAT "B", size);
        while (v >= 1024.0 && u < (int) sizeof(units) - 2) {
                v /= 1024.0;
                u++;
        }
        return g_strdup_printf("%.1f%c", v, units[u]);
}

gboolean util_parse_mac(const char *s, uint8_t mac[6], GError **error) {
        gboolean ok = s && strlen(s) == 17;

        for (int i = 0; ok && i < 6; i++) {
                const char *p = s + i * 3;

                if (!g_ascii_isxdigit(p[0]) || !g_ascii_isxdigit(p[1]) || (i < 5 && p[2] != ':'))
                        ok = FALSE;
                else
                        mac[i] = (uint8_t) (g_ascii_xdigit_value(p[0]) << 4 | g_ascii_xdigit_value(p[1]));
        }
        if (!ok) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "invalid MAC address '%s': use six hex bytes separated by colons, e.g. 52:54:00:12:34:56",
                            s ? s : "");
                return FALSE;
        }
        if (mac[0] & 1) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "MAC address '%s' is a multicast address: the first byte must be even (e.g. 52:54:00:...)", s);
                return FALSE;
        }
        if (!(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5])) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "MAC address '%s' is all zeroes", s);
                return FALSE;
        }
        return TRUE;
}

char *util_format_mac(const uint8_t mac[6]) {
        return g_strdup_printf("%02x:%02x:%02x:%02x:%02x:%02x",
                               mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

gboolean util_name_is_valid(const char *name) {
        size_t n;

        if (!name)
                return FALSE;
        n = strlen(name);
        if (n == 0 || n > UTIL_NAME_MAX || name[0] == '.' || name[0] == '-')
                return FALSE;
        for (size_t i = 0; i < n; i++)
                if (!g_ascii_isalnum(name[i]) && !strchr("_.-", name[i]))
                        return FALSE;
        return TRUE;
}

gboolean util_check_name(const char *what, const char *name, GError **error) {
        if (util_name_is_valid(name))
                return TRUE;
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "invalid %s '%s': use 1 to %d letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                    what, name ? name : "", UTIL_NAME_MAX);
        return FALSE;
}

gboolean util_ifname_is_valid(const char *name) {
        size_t n;

        if (!name)
                return FALSE;
        n = strlen(name);
        if (n == 0 || n >= IFNAMSIZ || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return FALSE;
        for (size_t i = 0; i < n; i++)
                if (name[i] == '/' || name[i] == ':' || g_ascii_isspace(name[i]) || !g_ascii_isprint(name[i]))
                        return FALSE;
        return TRUE;
}

static int write_all(int fd, const void *data, size_t len) {
        const uint8_t *p = data;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int util_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode) {
        g_autofree char *dir = g_path_get_dirname(path);
        g_autofree char *tmp = g_strdup_printf("%s.tmp.%d", path, (int) getpid());
        int fd, dfd, r;

        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        r = write_all(fd, data, len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        r = fsync(dfd) < 0 ? -errno : 0;
        close(dfd);
        return r;
}
