/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may change things: root, the daemon's own user, and members of the
 * configured AdminGroup.  Checked explicitly for every mutating method on
 * every bus (sd-bus's built-in gate applies to the system bus only), from
 * the credentials the bus daemon vouches for — never from augmented /proc
 * data, which a caller could race.
 */
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "common/bus-names.h"
#include "manager.h"

static bool user_in_group(uid_t uid, gid_t gid) {
        struct passwd *pw = getpwuid(uid);
        g_autofree gid_t *groups = NULL;
        int n = 64;

        if (!pw)
                return false;
        if (pw->pw_gid == gid)
                return true;
        for (int attempt = 0; attempt < 4; attempt++) {
                int want = n;

                groups = g_renew(gid_t, groups, n);
                if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &want) >= 0) {
                        for (int i = 0; i < want; i++)
                                if (groups[i] == gid)
                                        return true;
                        return false;
                }
                n = want > n ? want : n * 2;
        }
        return false;
}

/*
 * The groups of the sender's process as the bus daemon recorded them when it
 * connected (GetConnectionCredentials "UnixGroupIDs"; sd-bus 252 does not
 * read them).  1 member, 0 not, negative errno when unknown.
 */
static int bus_sender_in_group(sd_bus_message *msg, gid_t gid) {
        sd_bus_message *reply = NULL;
        const char *key;
        int r, found = -ENODATA;

        r = sd_bus_call_method(sd_bus_message_get_bus(msg), "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "GetConnectionCredentials", NULL, &reply, "s",
                               sd_bus_message_get_sender(msg));
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        break;
                if (strcmp(key, "UnixGroupIDs") == 0) {
                        const uint32_t *ids;
                        size_t size;

                        r = sd_bus_message_enter_container(reply, 'v', "au");
                        if (r >= 0)
                                r = sd_bus_message_read_array(reply, 'u', (const void **) &ids, &size);
                        if (r >= 0) {
                                found = 0;
                                for (size_t i = 0; i < size / sizeof(uint32_t); i++)
                                        if (ids[i] == gid)
                                                found = 1;
                                r = sd_bus_message_exit_container(reply);
                        }
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        sd_bus_message_unref(reply);
        return r < 0 ? r : found;
}

int manager_check_authorized(Manager *m, sd_bus_message *msg, const char *what, sd_bus_error *error) {
        sd_bus_creds *creds = NULL;
        uint64_t augmented;
        uid_t euid = (uid_t) -1;
        bool ok = false;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "cannot determine who is calling (%s): access denied", g_strerror(-r));
        augmented = sd_bus_creds_get_augmented_mask(creds);
        if (!(augmented & SD_BUS_CREDS_EUID) && sd_bus_creds_get_euid(creds, &euid) >= 0) {
                if (euid == 0 || euid == geteuid())
                        ok = true;
                else if (m->have_admin_gid)
                        ok = bus_sender_in_group(msg, m->admin_gid) > 0 || user_in_group(euid, m->admin_gid);
        }
        sd_bus_creds_unref(creds);
        if (ok)
                return 1;
        if (m->have_admin_gid)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s needs root or membership in group '%s' (caller uid %d): run it as root (sudo) or have an administrator add you to '%s'",
                                         what, m->config.admin_group, (int) euid, m->config.admin_group);
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "%s needs root (caller uid %d): run it as root (sudo), or set AdminGroup= in vfud.conf to allow a group",
                                 what, (int) euid);
}
