# SPDX-License-Identifier: LGPL-2.1-or-later
"""A private libvirtd from the provisioned trixie tree, for the libvirt case.

    unshare --mount --propagation private --pid --fork --kill-child \\
        python3 lvroot.py CONFIG.json

runs as PID 1 of fresh mount and PID namespaces: it mounts what libvirtd
needs over the trixie tree (private /run, /tmp, /var/{lib,cache,log}/libvirt
and /etc/libvirt, the host's /dev, /sys and /usr for the hook's libraries,
the case's run directory at its host path), then runs the tree's own
/usr/sbin/libvirtd chrooted there, reaping every orphan meanwhile (libvirt
daemonizes its QEMU capability probes and waits for them to be gone).
Nothing of this is visible outside the namespaces; when libvirtd ends (or
this process is killed) the kernel tears it all down, QEMU included.

CONFIG (JSON): root (the trixie tree), dir (this libvirtd's directory on the
host: etc/ is bound to /etc/libvirt, run-libvirt/ to /run/libvirt, so its
socket and log are reachable from the host), binds (host directories made
visible at the same path inside), hide_kvm (bind /dev/null over /dev/kvm).
"""
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "libvirt"))
import lvenv  # noqa: E402  (the namespace's PID-1 reaper)

# Where the host's /usr appears inside the tree (the hook is a host program).
HOST_USR = "/run/host-usr"


def mount(*args):
    subprocess.run(["mount"] + list(args), check=True)


def setup(c):
    root = c["root"]

    def inside(path):
        return os.path.join(root, path.lstrip("/"))

    mount("-t", "proc", "proc", inside("/proc"))
    mount("--rbind", "/sys", inside("/sys"))
    mount("--rbind", "/dev", inside("/dev"))
    if c.get("hide_kvm") and os.path.exists(inside("/dev/kvm")):
        mount("--bind", "/dev/null", inside("/dev/kvm"))
    for d in ("/run", "/tmp", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt"):
        os.makedirs(inside(d), exist_ok=True)
        mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", inside(d))
    for d in ("/run/libvirt", HOST_USR):
        os.makedirs(inside(d))
    mount("--bind", os.path.join(c["dir"], "run-libvirt"), inside("/run/libvirt"))
    mount("--bind", "-o", "ro", "/usr", inside(HOST_USR))
    mount("--bind", os.path.join(c["dir"], "etc"), inside("/etc/libvirt"))
    for path in c.get("binds", []):
        os.makedirs(inside(path), exist_ok=True)
        mount("--bind", path, inside(path))


def main():
    with open(sys.argv[1]) as f:
        c = json.load(f)
    setup(c)
    child = os.fork()
    if child == 0:
        os.chroot(c["root"])
        os.chdir("/")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
        os.execve("/usr/sbin/libvirtd", ["libvirtd", "-f", "/etc/libvirt/libvirtd.conf"], env)

    lvenv.reap_as_init(child, signal.SIGTERM)


if __name__ == "__main__":
    main()
