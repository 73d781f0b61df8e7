/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Confining a worker once its device is set up: dropping to an unprivileged
 * user, no_new_privs, and a seccomp allow-list of what a running device (its
 * event loop, data-path threads, block and TAP I/O, logging) needs.  Calls
 * outside the list fail with EPERM instead of running.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#if HAVE_SECCOMP
#include <seccomp.h>
#endif

#include "worker-internal.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WORKER_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define WORKER_SANITIZED 1
#endif

/*
 * Become the worker user for good: its group only (no supplementary groups,
 * none of root's), then real, effective and saved ids, so nothing can switch
 * back.  Everything the device needs was opened before (backing files, TAP
 * queues, the listening socket) or is passed by vfud over the control socket.
 */
gboolean worker_sandbox_drop_privileges(const char *user, GError **error) {
        struct passwd *pw;
        uid_t ruid, euid, suid;

        if (!user || !*user)
                return TRUE;
        pw = getpwnam(user);
        if (!pw) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_INVALID,
                            "worker user '%s' does not exist: create it (systemd-sysusers creates vfu-worker) or change "
                            "User= in the [Worker] section of vfud.conf (User=root keeps workers as root)",
                            user);
                return FALSE;
        }
        if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
                return TRUE;
        if (setgroups(0, NULL) < 0 ||
            setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot switch to user '%s': %s", user, g_strerror(errno));
                return FALSE;
        }
        if (getresuid(&ruid, &euid, &suid) < 0 || ruid != pw->pw_uid || euid != pw->pw_uid || suid != pw->pw_uid) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED, "still not user '%s' after switching", user);
                return FALSE;
        }
#ifdef WORKER_SANITIZED
        /* LeakSanitizer stops the worker's threads with ptrace at exit: the id change made it undumpable. */
        (void) prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif
        return TRUE;
}

gboolean worker_sandbox_no_new_privs(GError **error) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot set no_new_privs: %s", g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

#if HAVE_SECCOMP
/* What a running worker may call.  Names unknown to this libseccomp or architecture are skipped. */
static const char *const worker_syscalls[] = {
        /* memory */
        "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "mlock", "munlock",
        "membarrier", "memfd_create",
        /* threads and synchronisation */
        "clone", "clone3", "futex", "futex_waitv", "set_robust_list", "get_robust_list",
        "set_tid_address", "rseq", "sched_yield", "sched_getaffinity", "sched_setaffinity",
        "gettid", "getpid", "getppid", "tgkill", "exit", "exit_group",
        /* signals */
        "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "sigaltstack",
        "signalfd4", "restart_syscall",
        /* time */
        "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday",
        "timerfd_create", "timerfd_settime", "timerfd_gettime",
        /* event loop */
        "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2",
        "poll", "ppoll", "select", "pselect6", "eventfd2", "pipe2",
        /* fd I/O */
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev",
        "preadv2", "pwritev2", "lseek", "close", "close_range", "dup", "dup3", "fcntl",
        "ioctl", "fstat", "newfstatat", "statx", "fsync", "fdatasync", "sync_file_range",
        "fallocate", "ftruncate", "fadvise64", "copy_file_range",
        /* io_uring */
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        /* linux-aio */
        "io_setup", "io_destroy", "io_submit", "io_getevents", "io_pgetevents", "io_cancel",
        /* sockets: vfio-user and control connections, logging */
        "accept4", "recvmsg", "sendmsg", "recvfrom", "sendto", "recvmmsg", "sendmmsg",
        "shutdown", "getsockopt", "setsockopt", "getsockname", "getpeername", "connect",
        "socketpair",
        /* misc */
        "getrandom", "prctl", "uname", "getuid", "geteuid", "getgid", "getegid",
        "getrlimit", "prlimit64", "getrusage", "umask", "unlinkat", "unlink",
};

#ifdef WORKER_SANITIZED
/* AddressSanitizer's leak check at exit reads /proc and stops threads with ptrace. */
static const char *const sanitizer_syscalls[] = {
        "open", "openat", "getdents", "getdents64", "readlink", "readlinkat", "ptrace", "wait4", "waitid", "kill",
};
#endif

static int allow_all(scmp_filter_ctx ctx, const char *const *names, size_t n, GError **error) {
        for (size_t i = 0; i < n; i++) {
                int nr = seccomp_syscall_resolve_name(names[i]), r;

                if (nr == __NR_SCMP_ERROR)
                        continue;
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
                if (r < 0 && r != -EDOM && r != -EEXIST) {
                        g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                                    "cannot allow %s in the seccomp filter: %s", names[i], g_strerror(-r));
                        return r;
                }
        }
        return 0;
}

gboolean worker_sandbox_seccomp(bool inet, GError **error) {
        scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
        int r;

        if (!ctx) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED, "cannot create a seccomp filter");
                return FALSE;
        }
        if (allow_all(ctx, worker_syscalls, G_N_ELEMENTS(worker_syscalls), error) < 0) {
                seccomp_release(ctx);
                return FALSE;
        }
#ifdef WORKER_SANITIZED
        if (allow_all(ctx, sanitizer_syscalls, G_N_ELEMENTS(sanitizer_syscalls), error) < 0) {
                seccomp_release(ctx);
                return FALSE;
        }
#endif
        /* UNIX sockets (journal logging, NBD servers on a socket); IP ones for an nbd:// namespace's reconnects. */
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
        if (r == 0 && inet)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_INET));
        if (r == 0 && inet)
                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_INET6));
        if (r == 0)
                r = seccomp_load(ctx);
        seccomp_release(ctx);
        if (r < 0) {
                g_set_error(error, WORKER_ERROR, WORKER_ERROR_FAILED,
                            "cannot load the seccomp filter: %s (set Seccomp=no in the [Worker] section of vfud.conf to run without it)",
                            g_strerror(-r));
                return FALSE;
        }
        return TRUE;
}
#else
gboolean worker_sandbox_seccomp(bool inet, GError **error) {
        g_debug("built without libseccomp: no system call filter");
        return TRUE;
}
#endif
