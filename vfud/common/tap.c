/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gio.h>

#include "tap.h"
#include "util.h"

int tap_open(const char *ifname, bool multi_queue, GError **error) {
        struct ifreq ifr = { 0 };
        int fd, e;

        if (!util_ifname_is_valid(ifname)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                            "invalid TAP interface name '%s': use at most %d printable characters without '/', ':' or spaces",
                            ifname ? ifname : "", IFNAMSIZ - 1);
                return -1;
        }
        fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0) {
                e = errno;
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                            "cannot open /dev/net/tun for TAP '%s': %s%s", ifname, g_strerror(e),
                            e == ENOENT ? " (load the tun module: modprobe tun)" :
                            e == EACCES || e == EPERM ? " (vfud needs CAP_NET_ADMIN and access to /dev/net/tun)" : "");
                return -1;
        }
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (multi_queue ? IFF_MULTI_QUEUE : 0);
        memcpy(ifr.ifr_name, ifname, strlen(ifname));
        if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
                e = errno;
                close(fd);
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                            "cannot attach to TAP interface '%s': %s%s", ifname, g_strerror(e),
                            e == EBUSY ? " (it is in use by another process, or exists as a non-TAP or with different multi-queue settings: pick another name or delete it with 'ip link del')" :
                            e == EPERM ? " (creating TAP interfaces needs CAP_NET_ADMIN; create it beforehand with 'ip tuntap add mode tap' and a matching user)" :
                            e == EINVAL ? " (the name is taken by an interface that is not a TAP)" : "");
                return -1;
        }
        return fd;
}

bool tap_exists(const char *ifname) {
        return util_ifname_is_valid(ifname) && if_nametoindex(ifname) != 0;
}

/* SIOCGIFMTU / SIOCSIFMTU on ifr: 0 or -errno. */
static int tap_mtu_ioctl(unsigned long req, struct ifreq *ifr) {
        int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), r = 0;

        if (s < 0)
                return -errno;
        if (ioctl(s, req, ifr) < 0)
                r = -errno;
        close(s);
        return r;
}

int tap_get_mtu(const char *ifname, GError **error) {
        struct ifreq ifr = { 0 };
        int r;

        g_strlcpy(ifr.ifr_name, ifname, IFNAMSIZ);
        r = tap_mtu_ioctl(SIOCGIFMTU, &ifr);
        if (r < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-r), "cannot read the MTU of %s: %s", ifname,
                            g_strerror(-r));
                return -1;
        }
        return ifr.ifr_mtu;
}

gboolean tap_set_mtu(const char *ifname, unsigned mtu, GError **error) {
        struct ifreq ifr = { .ifr_mtu = (int) mtu };
        int r;

        g_strlcpy(ifr.ifr_name, ifname, IFNAMSIZ);
        r = tap_mtu_ioctl(SIOCSIFMTU, &ifr);
        if (r < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(-r), "cannot set the MTU of %s to %u: %s%s",
                            ifname, mtu, g_strerror(-r),
                            r == -EPERM ? " (needs CAP_NET_ADMIN)" : "");
                return FALSE;
        }
        return TRUE;
}
