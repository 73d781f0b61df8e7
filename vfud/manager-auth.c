/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who may change things: root and the daemon's own user always; others as
 * polkit decides (actions org.vfu.vfud1.manage and org.vfu.vfud1.migrate),
 * or, where polkit does not answer on the bus, members of the configured
 * AdminGroup.  Checked explicitly for every mutating method on every bus
 * (sd-bus's built-in gate applies to the system bus only), from the
 * credentials the bus daemon vouches for — never from augmented /proc data,
 * which a caller could race.
 *
 * polkit is asked asynchronously, as systemd's daemons do: the first call
 * of a handler sends CheckAuthorization and returns without a reply; when
 * polkit answers, the request is queued again (sd_bus_enqueue_for_read) and
 * the handler runs once more, finding the answer here.
 */
#include <errno.h>
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

#define POLKIT_NAME "org.freedesktop.PolicyKit1"
#define POLKIT_PATH "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_IFACE "org.freedesktop.PolicyKit1.Authority"
#define POLKIT_ALLOW_USER_INTERACTION 1u
/* A password prompt waits for a person: give it longer than a D-Bus call's default. */
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (5 * 60 * G_USEC_PER_SEC)

const char *auth_action_to_string(AuthAction a) {
        static const char *const names[_AUTH_ACTION_MAX] = {
                [AUTH_MANAGE] = "org.vfu.vfud1.manage",
                [AUTH_MIGRATE] = "org.vfu.vfud1.migrate",
        };

        return a >= 0 && a < _AUTH_ACTION_MAX ? names[a] : NULL;
}

typedef struct AuthQuery {
        Manager *manager;
        sd_bus_message *request;        /* the caller's method call, queued again when polkit answered */
        sd_bus_slot *slot;              /* the CheckAuthorization call in flight */
        AuthAction action;
        bool done;
        sd_bus_message *reply;          /* polkit's answer, or ... */
        sd_bus_error error;             /* ... why there is none */
} AuthQuery;

static void auth_query_free(gpointer p) {
        AuthQuery *q = p;

        if (!q)
                return;
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        sd_bus_message_unref(q->reply);
        sd_bus_error_free(&q->error);
        g_free(q);
}

void manager_auth_free(Manager *m) {
        g_clear_pointer(&m->auth_queries, g_hash_table_unref);
}

static int auth_query_answered(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        AuthQuery *q = userdata;
        int r;

        q->slot = sd_bus_slot_unref(q->slot);
        if (sd_bus_message_is_method_error(reply, NULL))
                (void) sd_bus_error_copy(&q->error, sd_bus_message_get_error(reply));
        else
                q->reply = sd_bus_message_ref(reply);
        q->done = true;
        /* The handler reads its arguments again from the start. */
        r = sd_bus_message_rewind(q->request, true);
        if (r >= 0)
                r = sd_bus_enqueue_for_read(sd_bus_message_get_bus(q->request), q->request);
        if (r < 0) {
                g_warning("cannot resume a call after polkit answered: %s", g_strerror(-r));
                (void) sd_bus_reply_method_errorf(q->request, SD_BUS_ERROR_ACCESS_DENIED,
                                                  "authorization could not complete: %s", g_strerror(-r));
                g_hash_table_remove(q->manager->auth_queries, q->request);
        }
        return 1;
}

/* Send CheckAuthorization for msg's sender; 0 when under way, negative errno when polkit cannot be asked. */
static int auth_query_start(Manager *m, sd_bus_message *msg, AuthAction action) {
        sd_bus *bus = sd_bus_message_get_bus(msg);
        const char *sender = sd_bus_message_get_sender(msg);
        bool interactive = sd_bus_message_get_allow_interactive_authorization(msg) > 0;
        sd_bus_message *call = NULL;
        AuthQuery *q;
        int r;

        if (!sender)
                return -ENOTCONN;               /* a direct connection: no bus name for polkit to judge */
        r = sd_bus_message_new_method_call(bus, &call, POLKIT_NAME, POLKIT_PATH, POLKIT_IFACE, "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})s", "system-bus-name", 1, "name", "s", sender,
                                          auth_action_to_string(action));
        if (r >= 0)
                r = sd_bus_message_append(call, "a{ss}us", 0, interactive ? POLKIT_ALLOW_USER_INTERACTION : 0u, "");
        if (r < 0) {
                sd_bus_message_unref(call);
                return r;
        }
        q = g_new0(AuthQuery, 1);
        q->manager = m;
        q->action = action;
        q->error = SD_BUS_ERROR_NULL;
        r = sd_bus_call_async(bus, &q->slot, call, auth_query_answered, q,
                              interactive ? POLKIT_INTERACTIVE_TIMEOUT_USEC : 0);
        sd_bus_message_unref(call);
        if (r < 0) {
                auth_query_free(q);
                return r;
        }
        q->request = sd_bus_message_ref(msg);
        if (!m->auth_queries)
                m->auth_queries = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, auth_query_free);
        g_hash_table_replace(m->auth_queries, msg, q);
        return 0;
}

/* polkit is not there to ask (not installed, not running, a private bus): the group decides. */
static bool polkit_absent(const sd_bus_error *e) {
        return sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                      "org.freedesktop.systemd1.NoSuchUnit");
}

/* polkit's verdict on q: 1 yes, 0 no answer (fall back to the group), negative errno with error set. */
static int auth_query_verdict(AuthQuery *q, const char *what, uid_t euid, sd_bus_error *error) {
        const char *action = auth_action_to_string(q->action);
        int authorized = 0, challenge = 0, r;

        if (!q->reply) {
                if (polkit_absent(&q->error))
                        return 0;
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s: polkit could not decide on %s (%s: %s): access denied", what, action,
                                         q->error.name, q->error.message ? q->error.message : "");
        }
        r = sd_bus_message_enter_container(q->reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(q->reply, "bb", &authorized, &challenge);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s: polkit's answer on %s is malformed: access denied", what, action);
        if (authorized)
                return 1;
        if (challenge)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                         "%s needs authentication (polkit action %s, caller uid %d): run it from a "
                                         "terminal without --no-ask-password, or as root", what, action, (int) euid);
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "%s is not allowed by polkit (action %s, caller uid %d): run it as root (sudo) or "
                                 "ask an administrator to grant %s (the shipped rule grants it to group 'vfu')",
                                 what, action, (int) euid, action);
}

int manager_check_authorized(Manager *m, sd_bus_message *msg, AuthAction action, const char *what,
                             sd_bus_error *error) {
        sd_bus_creds *creds = NULL;
        uint64_t augmented;
        uid_t euid = (uid_t) -1;
        bool known = false;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID, &creds);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "cannot determine who is calling (%s): access denied", g_strerror(-r));
        augmented = sd_bus_creds_get_augmented_mask(creds);
        known = !(augmented & SD_BUS_CREDS_EUID) && sd_bus_creds_get_euid(creds, &euid) >= 0;
        sd_bus_creds_unref(creds);
        if (!known)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "cannot determine who is calling (%s): access denied", what);
        if (euid == 0 || euid == geteuid())
                return 1;

        if (m->config.polkit) {
                AuthQuery *q = m->auth_queries ? g_hash_table_lookup(m->auth_queries, msg) : NULL;

                if (q && !q->done)
                        return 0;
                if (q) {
                        g_hash_table_steal(m->auth_queries, msg);
                        r = auth_query_verdict(q, what, euid, error);
                        auth_query_free(q);
                        if (r != 0)
                                return r;
                } else if (auth_query_start(m, msg, action) == 0)
                        return 0;
        }

        if (m->have_admin_gid && (bus_sender_in_group(msg, m->admin_gid) > 0 || user_in_group(euid, m->admin_gid)))
                return 1;
        if (m->have_admin_gid)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s needs root or membership in group '%s' (caller uid %d): run it as root (sudo) or have an administrator add you to '%s'",
                                         what, m->config.admin_group, (int) euid, m->config.admin_group);
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "%s needs root (caller uid %d): run it as root (sudo), or set AdminGroup= in vfud.conf to allow a group",
                                 what, (int) euid);
}
