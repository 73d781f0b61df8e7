/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfud-worker: runs one device.  Started by vfud with the device's
 * definition and its backing fds, or standalone for tests and demos:
 *
 *   vfud-worker --definition dev.json --socket /tmp/dev.sock [--control /tmp/dev.ctl]
 *
 * Under systemd, vfud starts it as a transient service whose standard input
 * is one end of a socket pair (--handoff-fd=0): the device's fds arrive on
 * it as control messages ({"method": "handoff", "fds": [...]}, the last one
 * with "done": true), the worker answers {"started": true} (vfud takes its
 * pid from the credentials) and later reports on it as on --ready-fd.
 *
 * Exit status: 0 after a shutdown request or SIGTERM, 1 when the device
 * could not be set up (the reason is on stderr and on the --ready-fd pipe),
 * 2 for bad command-line arguments.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ctl-proto.h"
#include "common/util.h"
#include "worker-internal.h"

static void ready_report(int fd, const GError *error) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonNode) root = NULL;
        g_autofree char *line = NULL;
        size_t len;

        if (fd < 0)
                return;
        json_builder_begin_object(b);
        if (error) {
                json_builder_set_member_name(b, "error");
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "code");
                json_builder_add_string_value(b, worker_error_code_to_string(error));
                json_builder_set_member_name(b, "message");
                json_builder_add_string_value(b, error->message);
                json_builder_end_object(b);
        } else {
                json_builder_set_member_name(b, "ready");
                json_builder_add_boolean_value(b, TRUE);
                json_builder_set_member_name(b, "pid");
                json_builder_add_int_value(b, getpid());
        }
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        line = json_to_string(root, FALSE);
        len = strlen(line);
        line = g_realloc(line, len + 2);
        line[len++] = '\n';
        (void) !write(fd, line, len);
        close(fd);
}

static gboolean write_pid_file(const char *path, GError **error) {
        g_autofree char *s = NULL;
        int r;

        if (!path)
                return TRUE;
        s = g_strdup_printf("%d\n", (int) getpid());
        r = util_write_file_atomic(path, s, strlen(s), 0644);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot write pid file %s: %s", path, g_strerror(-r));
                return FALSE;
        }
        return TRUE;
}

static gboolean parse_fd_arg(Worker *w, const char *arg, GError **error) {
        const char *eq = strchr(arg, '=');
        g_autofree char *name = NULL;
        char *end = NULL;
        long fd;

        if (!eq || eq == arg)
                goto bad;
        name = g_strndup(arg, eq - arg);
        errno = 0;
        fd = strtol(eq + 1, &end, 10);
        if (errno || !end || *end || fd < 3 || fd > INT32_MAX)
                goto bad;
        if (fcntl((int) fd, F_SETFD, FD_CLOEXEC) < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "--fd %s: fd %ld is not open", arg, fd);
                return FALSE;
        }
        worker_add_fd(w, name, (int) fd);
        return TRUE;
bad:
        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                    "--fd %s: expected NAME=FD with FD ≥ 3, e.g. --fd ns1=3", arg);
        return FALSE;
}

#define HANDOFF_TIMEOUT_MS 10000

/*
 * Take the device's fds from vfud on fd (see the top of this file), and
 * answer that the worker runs.  The socket then becomes the ready fd: moved
 * off fd 0, which gets /dev/null.  Returns the ready fd or -1 with error.
 */
static int handoff_receive(Worker *w, int fd, GError **error) {
        CtlReader r;
        bool done = false;
        int ready = -1, nul;
        static const char started[] = "{\"started\":true}\n";

        ctl_reader_init(&r);
        while (!done) {
                JsonNode *msg = NULL;
                GArray *fds = NULL;
                int k = ctl_reader_next(&r, &msg, &fds);

                if (k < 0) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID, "--handoff-fd: a malformed message");
                        break;
                }
                if (k == 0) {
                        struct pollfd p = { .fd = fd, .events = POLLIN };
                        int n = poll(&p, 1, HANDOFF_TIMEOUT_MS);

                        if (n < 0 && errno == EINTR)
                                continue;
                        n = n == 0 ? -ETIMEDOUT : n < 0 ? -errno : ctl_reader_fill(&r, fd);
                        if (n == -EAGAIN)
                                continue;
                        if (n <= 0) {
                                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                                            "--handoff-fd: no fds from vfud (%s)", n == 0 ? "end of stream" : g_strerror(-n));
                                break;
                        }
                        continue;
                }
                JsonObject *o = json_node_get_object(msg);
                JsonArray *names = json_object_has_member(o, "fds") ? json_object_get_array_member(o, "fds") : NULL;

                for (guint i = 0; i < fds->len; i++) {
                        const char *name = json_array_get_string_element(names, i);

                        if (name && util_name_is_valid(name))
                                worker_add_fd(w, name, g_array_index(fds, int, i));
                        else
                                close(g_array_index(fds, int, i));
                }
                g_array_free(fds, TRUE);
                done = json_object_get_boolean_member_with_default(o, "done", FALSE);
                json_node_unref(msg);
        }
        ctl_reader_clear(&r);
        if (!done)
                return -1;
        ready = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        nul = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (ready < 0 || nul < 0 || dup2(nul, fd) < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED, "--handoff-fd: %s", g_strerror(errno));
                if (ready >= 0)
                        close(ready);
                if (nul >= 0)
                        close(nul);
                return -1;
        }
        close(nul);
        (void) !write(ready, started, sizeof(started) - 1);
        return ready;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Worker *w = userdata;

        worker_log(w, G_LOG_LEVEL_MESSAGE, "signal %s, stopping", strsignal((int) si->ssi_signo));
        return sd_event_exit(w->event, 0);
}

int main(int argc, char **argv) {
        g_autofree char *definition = NULL, *socket_path = NULL, *control = NULL;
        g_autofree char *pid_file = NULL, *user = NULL, *socket_group = NULL;
        g_autofree char *socket_mode = NULL;
        g_auto(GStrv) fd_args = NULL;
        gboolean no_seccomp = FALSE, version = FALSE, list_types = FALSE;
        int ready_fd = -1, handoff_fd = -1;
        GOptionEntry entries[] = {
                { "definition", 0, 0, G_OPTION_ARG_FILENAME, &definition, "Device definition (JSON)", "FILE" },
                { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path, "vfio-user socket to listen on", "PATH" },
                { "control", 0, 0, G_OPTION_ARG_FILENAME, &control, "Control socket to listen on", "PATH" },
                { "pid-file", 0, 0, G_OPTION_ARG_FILENAME, &pid_file, "Write the process id here", "PATH" },
                { "fd", 0, 0, G_OPTION_ARG_STRING_ARRAY, &fd_args, "An inherited fd for the device (ns1, tap0, ...)", "NAME=FD" },
                { "ready-fd", 0, 0, G_OPTION_ARG_INT, &ready_fd, "Report readiness or the setup error on this fd", "FD" },
                { "handoff-fd", 0, 0, G_OPTION_ARG_INT, &handoff_fd, "Receive the device's fds on this socket and report on it (vfud under systemd)", "FD" },
                { "user", 0, 0, G_OPTION_ARG_STRING, &user, "Drop to this user after setup", "USER" },
                { "socket-group", 0, 0, G_OPTION_ARG_STRING, &socket_group, "Group owning the vfio-user socket", "GROUP" },
                { "socket-mode", 0, 0, G_OPTION_ARG_STRING, &socket_mode, "Mode of the vfio-user socket (default 0660)", "MODE" },
                { "no-seccomp", 0, 0, G_OPTION_ARG_NONE, &no_seccomp, "Do not apply the system call filter", NULL },
                { "types", 0, 0, G_OPTION_ARG_NONE, &list_types, "List the device types this worker runs", NULL },
                { "version", 0, 0, G_OPTION_ARG_NONE, &version, "Show the version", NULL },
                { NULL },
        };
        g_autoptr(GOptionContext) ctx = g_option_context_new("- run one vfio-user device");
        g_autoptr(GError) error = NULL;
        g_autoptr(Worker) w = NULL;
        WorkerOptions opts = { .socket_mode = 0660, .seccomp = true };
        sigset_t mask;
        int r;

        g_option_context_add_main_entries(ctx, entries, NULL);
        if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
                fprintf(stderr, "vfud-worker: %s (see --help)\n", error->message);
                return 2;
        }
        if (version) {
                printf("vfud-worker %s\n", PACKAGE_VERSION);
                return 0;
        }
        if (list_types) {
                for (size_t i = 0; worker_types[i]; i++)
                        printf("%s\n", worker_types[i]->type);
                return 0;
        }
        if (ready_fd >= 0 && fcntl(ready_fd, F_SETFD, FD_CLOEXEC) < 0)
                ready_fd = -1;
        if (!definition || !socket_path) {
                fprintf(stderr, "vfud-worker: --definition and --socket are required (see --help)\n");
                return 2;
        }
        if (socket_mode) {
                char *end = NULL;
                unsigned long m = strtoul(socket_mode, &end, 8);

                if (!end || *end || m > 07777) {
                        fprintf(stderr, "vfud-worker: --socket-mode %s: expected an octal mode such as 0660\n", socket_mode);
                        return 2;
                }
                opts.socket_mode = (mode_t) m;
        }

        /* Outlive the manager: a session of our own, no controlling terminal. */
        (void) setsid();
        signal(SIGPIPE, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        opts.definition_path = definition;
        opts.socket_path = socket_path;
        opts.control_path = control;
        opts.pid_file = pid_file;
        opts.user = user;
        opts.socket_group = socket_group;
        opts.seccomp = !no_seccomp;
        w = worker_new(&opts, &error);
        if (!w)
                goto fail;
        for (size_t i = 0; fd_args && fd_args[i]; i++)
                if (!parse_fd_arg(w, fd_args[i], &error))
                        goto fail;
        if (handoff_fd >= 0) {
                if (ready_fd >= 0)
                        close(ready_fd);
                ready_fd = handoff_receive(w, handoff_fd, &error);
                if (ready_fd < 0) {
                        ready_fd = handoff_fd;
                        goto fail;
                }
        }
        (void) sd_event_add_signal(w->event, NULL, SIGTERM, on_signal, w);
        (void) sd_event_add_signal(w->event, NULL, SIGINT, on_signal, w);

        if (!worker_setup(w, &error) ||
            !write_pid_file(pid_file, &error) ||
            !worker_sandbox_drop_privileges(user, &error) ||
            !worker_sandbox_no_new_privs(&error) ||
            (opts.seccomp && !worker_sandbox_seccomp(w->inet, &error)))
                goto fail;

        worker_log(w, G_LOG_LEVEL_MESSAGE, "%s device listening on %s", w->type_name, socket_path);
        ready_report(ready_fd, NULL);
        r = sd_event_loop(w->event);
        worker_cleanup_files(w);
        return r < 0 ? 1 : r;

fail:
        fprintf(stderr, "vfud-worker: %s%s%s\n", w && w->name ? w->name : "", w && w->name ? ": " : "",
                error->message);
        ready_report(ready_fd, error);
        if (w)
                worker_cleanup_files(w);
        return 1;
}
