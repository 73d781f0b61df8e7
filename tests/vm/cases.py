# SPDX-License-Identifier: LGPL-2.1-or-later
"""The VM suite's cases: host-side orchestration of each.  A case's guest
side is cases/<script>.sh; see vmlib for the Context it receives."""
import array
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import vmlib
from vmlib import Fail, Skip

CASES = {}
MiB = 1 << 20


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


class WorkerServer:
    """One standalone vfud-worker serving one device on a socket, with its
    control socket for runtime changes."""

    def __init__(self, ctx, name, dev_type, options, netns=None):
        self.ctx = ctx
        self.netns = netns
        self.name = name
        self.type = dev_type
        self.socket = ctx.path(f"{name}.sock")
        self.control = ctx.path(f"{name}.ctl")
        self.definition = ctx.path(f"{name}.json")
        with open(self.definition, "w") as f:
            json.dump({"name": name, "type": dev_type, "vm": ctx.case, "options": options}, f)
        self.process = None
        self.next_id = 1

    def start(self):
        worker = self.ctx.program("VFU_WORKER", "vfud-worker")
        prefix = self.netns.prefix() if self.netns else []
        self.process = self.ctx.spawn(self.name, prefix + [
            worker, "--definition", self.definition,
            "--socket", self.socket, "--control", self.control])
        try:
            self.process.wait_path(self.socket)
            self.process.wait_path(self.control)
        except Fail:
            if f"unknown device type '{self.type}'" in vmlib.tail(self.process.log):
                raise Skip(f"vfud-worker was built without the {self.type} device type "
                           f"(its library is not part of this build)")
            raise
        return self

    def device(self, dev_id=None, **props):
        return vmlib.vfio_user_device(self.socket, dev_id or self.name, **props)

    def call(self, method, fds=None, **params):
        """One control request, with fds ({name: fd}) passed alongside as the
        protocol says (SCM_RIGHTS on the first byte); returns its result or
        raises Fail with the worker's error."""
        req = {"id": self.next_id, "method": method, "params": params}
        if fds:
            req["fds"] = list(fds)
        self.next_id += 1
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(self.control)
            data = json.dumps(req).encode() + b"\n"
            if fds:
                s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                    array.array("i", list(fds.values())))])
            else:
                s.sendall(data)
            buf = b""
            while True:
                while b"\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise Fail(f"{self.name}: control socket closed during {method}")
                    buf += chunk
                line, buf = buf.split(b"\n", 1)
                reply = json.loads(line)
                if reply.get("id") != req["id"]:
                    continue
                if "error" in reply:
                    raise Fail(f"{self.name}: {method} failed: {reply['error']}")
                return reply.get("result")


class Manager:
    """vfud on a private D-Bus bus with its own state and runtime
    directories, driven through vfuctl.  Its workers are stopped at cleanup
    (they outlive the manager by design)."""

    BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

    def __init__(self, ctx, name="", netns=None, config=""):
        """name: a suffix for this manager's bus, state and runtime paths, so
        that several can run in one case; netns: run vfud (and so its
        workers and the TAPs it opens) in that NetNs; config: vfud.conf."""
        self.ctx = ctx
        self.name = name
        self.netns = netns
        self.vfud_path = ctx.program("VFUD", "vfud")
        self.vfuctl_path = ctx.program("VFUCTL", "vfuctl")
        self.worker_path = ctx.program("VFU_WORKER", "vfud-worker")
        sfx = f"-{name}" if name else ""
        self.label = f"vfud{sfx}"
        self.state = ctx.path(f"state{sfx}")
        self.runtime = ctx.path(f"rt{sfx}")
        bus_path = ctx.path(f"bus{sfx}")
        self.bus = f"unix:path={bus_path}"
        conf = ctx.path(f"bus{sfx}.conf")
        with open(conf, "w") as f:
            f.write(self.BUS_CONF.format(path=bus_path))
        self.config = ctx.path(f"vfud{sfx}.conf")
        with open(self.config, "w") as f:
            # workers drop to a user every host has (vfu-worker exists only where the package is installed)
            f.write("[Worker]\nUser=nobody\n" + config)
        ctx.spawn(f"dbus-daemon{sfx}", ["dbus-daemon", f"--config-file={conf}", "--nofork",
                                        "--nopidfile"]).wait_path(bus_path)
        ctx.cleanups.append(self.stop_workers)
        self.vfud = None
        self.starts = 0

    def start(self):
        self.starts += 1
        prefix = self.netns.prefix() if self.netns else []
        self.vfud = self.ctx.spawn(f"{self.label}.{self.starts}", prefix + [
            self.vfud_path, "--bus", self.bus, "--state-dir", self.state,
            "--runtime-dir", self.runtime, "--worker", self.worker_path,
            "--config", self.config])
        deadline = time.monotonic() + 20
        while self.run("list", check=False).returncode != 0:
            if not self.vfud.alive() or time.monotonic() > deadline:
                raise Fail(f"{self.label} did not come up:\n{vmlib.tail(self.vfud.log)}")
            time.sleep(0.1)
        return self

    def kill(self):
        """SIGKILL the manager, as a crash would."""
        self.vfud.stop(signal.SIGKILL)

    def run(self, *args, check=True):
        p = subprocess.run([self.vfuctl_path, "--bus", self.bus] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with open(os.path.join(self.ctx.workdir, "vfuctl.log"), "a") as log:
            log.write(f"$ vfuctl --bus {self.bus} {' '.join(args)}\n{p.stdout}{p.stderr}[exit {p.returncode}]\n")
        if check and p.returncode != 0:
            raise Fail(f"vfuctl {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def json(self, *args):
        return json.loads(self.run("--json", *args).stdout)

    def create_nvme(self, name, vm, size):
        self.run("create", "nvme", "--vm", vm, "--name", name, "--size", str(size))
        dev = self.json("show", name)
        return dev["socket_path"]

    def wait_connected(self, name, connected=True, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            dev = self.json("show", name)
            if bool(dev.get("connected")) == connected:
                return dev
            if time.monotonic() > deadline:
                raise Fail(f"vfuctl show {name}: connected is {dev.get('connected')}, "
                           f"expected {connected}: {dev}")
            time.sleep(0.2)

    def wait_statistic(self, name, key, at_least, timeout=120):
        """Wait until statistic key of device name reaches at_least; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            got = int(self.json("show", name).get("statistics", {}).get(key, 0))
            if got >= at_least:
                return got
            if time.monotonic() > deadline:
                raise Fail(f"vfuctl show {name}: {key} is {got} after {timeout} s, expected >= {at_least}")
            time.sleep(0.2)

    def stop_workers(self):
        if self.vfud:
            self.vfud.stop()
        workers = os.path.join(self.runtime, "workers")
        for name in os.listdir(workers) if os.path.isdir(workers) else []:
            if name.endswith(".pid"):
                try:
                    with open(os.path.join(workers, name)) as f:
                        os.kill(int(f.read().strip()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass


def backing_file(ctx, name, size):
    """A sparse backing file of size bytes in the case's run directory."""
    path = ctx.path(name)
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def nvme_server(ctx, name, ns_sizes, **options):
    """A started NVMe worker with one namespace per size (NSIDs from 1),
    and further definition options (msi=True)."""
    namespaces = [{"nsid": i, "size": size,
                   "path": backing_file(ctx, f"{name}-ns{i}.img", size)}
                  for i, size in enumerate(ns_sizes, 1)]
    return WorkerServer(ctx, name, "nvme", {"namespaces": namespaces, **options}).start()


# --- the cases ---------------------------------------------------------------

@case
def boot(ctx):
    """The guest boots, loads its modules and runs its tools (no device)."""
    ctx.vm("boot", "boot.sh", timeout=120).run()


@case
def nvme_identify(ctx):
    """/dev/nvme0n1 appears; id-ctrl, id-ns, smart-log, error-log are sane."""
    size = 256 * MiB
    nvme = nvme_server(ctx, "nvme0", [size])
    ctx.vm("guest", "nvme-identify.sh", devices=[nvme.device()],
           params={"NS_BYTES": size}).run()


@case
def nvme_fio(ctx):
    """fio write+verify at QD1 and QD32 with several jobs."""
    nvme = nvme_server(ctx, "nvme0", [256 * MiB])
    ctx.vm("guest", "nvme-fio.sh", devices=[nvme.device()], timeout=600).run()


@case
def nvme_ext4(ctx):
    """mkfs.ext4, files written and verified, fsck clean."""
    nvme = nvme_server(ctx, "nvme0", [256 * MiB])
    ctx.vm("guest", "nvme-ext4.sh", devices=[nvme.device()], timeout=400).run()


@case
def nvme_namespaces(ctx):
    """Several namespaces on one controller, each with its size and data."""
    sizes = [64 * MiB, 128 * MiB, 48 * MiB]
    nvme = nvme_server(ctx, "nvme0", sizes)
    ctx.vm("guest", "nvme-namespaces.sh", devices=[nvme.device()],
           params={"NS_SIZES": " ".join(str(s) for s in sizes)}).run()


@case
def nvme_reboot(ctx):
    """Guest reboot loop; data intact across every DEVICE_RESET."""
    reboots = 3
    nvme = nvme_server(ctx, "nvme0", [64 * MiB])
    vm = ctx.vm("guest", "nvme-reboot.sh", devices=[nvme.device()], reboot=True,
                params={"REBOOTS": reboots}, timeout=120 * (reboots + 1))
    out = vm.run()
    boots = out.count("VFU-VM-BOOT:")
    if boots != reboots + 1:
        raise Fail(f"the guest booted {boots} times, expected {reboots + 1}")
    if not nvme.process.alive():
        raise Fail("the NVMe worker died during the reboot loop")


@case
def nvme_vm_restart(ctx):
    """The VM is stopped and started again (a new QEMU) against the same
    device server; the file system and its data are intact."""
    nvme = nvme_server(ctx, "nvme0", [128 * MiB])
    ctx.vm("first", "nvme-persist.sh", devices=[nvme.device()],
           params={"PHASE": "write"}, timeout=300).run()
    if not nvme.process.alive():
        raise Fail("the NVMe worker exited when its VM stopped")
    ctx.vm("second", "nvme-persist.sh", devices=[nvme.device()],
           params={"PHASE": "check"}, timeout=300).run()


@case
def nvme_two_vms(ctx):
    """Two VMs at once, each with its own NVMe device on this host, both
    doing verified I/O and file-system work."""
    a = nvme_server(ctx, "nvme-a", [128 * MiB])
    b = nvme_server(ctx, "nvme-b", [128 * MiB])
    vms = [ctx.vm("vm-a", "nvme-ext4.sh", devices=[a.device()], timeout=600),
           ctx.vm("vm-b", "nvme-ext4.sh", devices=[b.device()], timeout=600)]
    for vm in vms:
        vm.start()
    for vm in vms:
        vm.wait()


@case
def nvme_ns_runtime(ctx):
    """A namespace added and another grown while the guest runs; the guest
    sees both without a manual rescan."""
    ns1, ns1_new, ns2 = 64 * MiB, 96 * MiB, 32 * MiB
    nvme = nvme_server(ctx, "nvme0", [ns1])
    vm = ctx.vm("guest", "nvme-ns-runtime.sh", devices=[nvme.device()], timeout=300,
                params={"NS1_BYTES": ns1, "NS1_NEW_BYTES": ns1_new, "NS2_BYTES": ns2})
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-add$")
    # As the manager does: the new backing file is opened here and its fd
    # handed over (the worker's sandbox opens no files once it serves).
    path = backing_file(ctx, "nvme0-ns2.img", ns2)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        nvme.call("namespace-add", fds={"ns2": fd}, nsid=2, size=ns2, path=path)
    finally:
        os.close(fd)
    vm.wait_for("^VFU-VM-MARK: ready-for-resize$")
    nvme.call("namespace-resize", nsid=1, size=ns1_new)
    vm.wait()


@case
def nvme_hotplug(ctx):
    """vfio-user-pci attached with device_add while the guest runs and used;
    the guest removes the function and finds it again by a rescan."""
    nvme = nvme_server(ctx, "nvme0", [64 * MiB])
    vm = ctx.vm("guest", "nvme-hotplug.sh", root_ports=1, timeout=400)
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-attach$")
    vm.connect_qmp().cmd("device_add", **nvme.device("hot0", bus="rp0"))
    vm.wait()


# QEMU 11.1's vfio-user-pci removes its MSI-X PBA subregion in
# instance_finalize, after unrealize has torn the BARs down: device_del of
# any vfio-user-pci function with MSI-X aborts QEMU with this assertion.
QEMU_UNPLUG_ABORT = "memory_region_del_subregion: Assertion `subregion->container == mr' failed"


def hot_attach_detach(ctx, nvme, qmp, vm):
    qmp.cmd("device_add", **nvme.device("hot0", bus="rp0"))
    vm.wait_for("^VFU-VM-MARK: ready-for-detach$")
    qmp.cmd("device_del", id="hot0")
    qmp.wait_event("DEVICE_DELETED", timeout=60)
    vm.wait_for("^VFU-VM-MARK: ready-for-reattach$")
    qmp.cmd("device_add", **nvme.device("hot0", bus="rp0"))


@case
def nvme_hot_detach(ctx):
    """An NVMe device made with msi (MSI, no MSI-X), which QEMU 11.1 can
    unplug: attached with device_add, used over MSI, detached with
    device_del while the guest runs (the guest sees it go, the VM runs on),
    attached again with the data intact; the worker serves on."""
    nvme = nvme_server(ctx, "nvme0", [64 * MiB], msi=True)
    vm = ctx.vm("guest", "nvme-hot-detach.sh", root_ports=1, timeout=400, params={"MSI": 1})
    vm.start()
    qmp = vm.connect_qmp()
    vm.wait_for("^VFU-VM-MARK: ready-for-attach$")
    hot_attach_detach(ctx, nvme, qmp, vm)
    vm.wait()
    if not nvme.process.alive():
        raise Fail("the NVMe worker died")


@case
def nvme_hot_detach_msix(ctx):
    """The same with MSI-X.  QEMU releases before 11.2 abort on device_del
    of such a function (vfud and vfuctl detach refuse it there, see the
    libvirt case): on that abort the case checks that our side survived the
    client's crash and reports SKIP."""
    nvme = nvme_server(ctx, "nvme0", [64 * MiB])
    vm = ctx.vm("guest", "nvme-hot-detach.sh", root_ports=1, timeout=400, params={"MSI": 0})
    vm.start()
    qmp = vm.connect_qmp()
    vm.wait_for("^VFU-VM-MARK: ready-for-attach$")
    try:
        hot_attach_detach(ctx, nvme, qmp, vm)
    except Fail:
        vm.process.proc.wait(10)
        if QEMU_UNPLUG_ABORT in vmlib.tail(vm.process.log):
            if not nvme.process.alive():
                raise Fail("QEMU aborted on device_del and the NVMe worker died with it")
            # Our side must shrug off a client that died mid-session: a new
            # VM gets the device with the data the first one wrote.
            ctx.vm("after-abort", "nvme-stamp-check.sh", devices=[nvme.device()],
                   params={"GEN": 1}).run()
            raise Skip(f"QEMU {ctx.env['QEMU_VERSION']} aborts on device_del of a "
                       f"vfio-user-pci device with MSI-X ({QEMU_UNPLUG_ABORT}); "
                       f"hot detach of an MSI-X device cannot be tested with this client "
                       f"(checked instead: the worker survived the client's crash and "
                       f"served a new VM the data written before it)")
        raise
    vm.wait()


@case
def vblk(ctx):
    """A virtio-blk disk: /dev/vda with its size, serial, queues, write cache
    and discard; fio verify at QD1 and QD32 across the queues; ext4 with
    fsck; grown by the host while the guest runs, seen without a rescan."""
    size, new_size, queues = 256 * MiB, 320 * MiB, 2
    disk = {"nsid": 1, "size": size, "kind": "file", "path": backing_file(ctx, "vblk0.img", size)}
    blk = WorkerServer(ctx, "vblk0", "virtio-blk",
                       {"namespaces": [disk], "queues": queues, "serial": "vfu-vm-disk"}).start()
    vm = ctx.vm("guest", "vblk.sh", devices=[blk.device()], timeout=900,
                params={"DISK_BYTES": size, "NEW_BYTES": new_size, "SERIAL": "vfu-vm-disk", "QUEUES": queues})
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-resize$", timeout=800)
    with open(disk["path"], "r+b") as f:
        f.truncate(new_size)
    blk.call("resize", size=new_size)
    vm.wait()


@case
def vblk_reboot(ctx):
    """Guest reboot loop on a virtio-blk disk; data intact across every reset."""
    reboots = 3
    size = 64 * MiB
    disk = {"nsid": 1, "size": size, "kind": "file", "path": backing_file(ctx, "vblk0.img", size)}
    blk = WorkerServer(ctx, "vblk0", "virtio-blk", {"namespaces": [disk]}).start()
    vm = ctx.vm("guest", "vblk-reboot.sh", devices=[blk.device()], reboot=True,
                params={"REBOOTS": reboots}, timeout=120 * (reboots + 1))
    out = vm.run()
    boots = out.count("VFU-VM-BOOT:")
    if boots != reboots + 1:
        raise Fail(f"the guest booted {boots} times, expected {reboots + 1}")
    if not blk.process.alive():
        raise Fail("the virtio-blk worker died during the reboot loop")


@case
def net_basic(ctx):
    """virtio-net on a TAP in a network namespace of the case's own: link up,
    ping, TCP both ways with checksums, every queue pair used, link down/up
    from the host seen by the guest."""
    pairs, mac = 2, "52:54:00:76:66:75"
    ns = vmlib.NetNs(ctx, queues=pairs)
    net = WorkerServer(ctx, "net0", "virtio-net",
                       {"tap": ns.tap, "mac": mac, "queues": pairs}, netns=ns).start()
    vm = ctx.vm("guest", "net-basic.sh", devices=[net.device()], timeout=400,
                params=dict(ns.params(), MAC=mac, PAIRS=pairs))
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-link-down$", timeout=300)
    net.call("link-set", up=False)
    vm.wait_for("^VFU-VM-MARK: ready-for-link-up$")
    net.call("link-set", up=True)
    vm.wait()


@case
def vfud_two_vms(ctx):
    """Two VMs at once with NVMe devices that vfud made (vfuctl create), both
    doing verified file-system work; vfuctl shows each connected to its VM."""
    m = Manager(ctx).start()
    socks = {vm: m.create_nvme(f"{vm}-disk", vm, 128 * MiB) for vm in ("vm-a", "vm-b")}
    listed = m.json("list", "--vm", "vm-a")
    names = sorted(d["name"] for d in (listed if isinstance(listed, list) else listed["devices"]))
    if names != ["vm-a-disk"]:
        raise Fail(f"vfuctl list --vm vm-a shows {names}, expected only vm-a-disk")
    vms = [ctx.vm(vm, "nvme-ext4.sh", devices=[vmlib.vfio_user_device(sock, "disk")],
                  timeout=600) for vm, sock in socks.items()]
    for vm in vms:
        vm.start()
    for vm in vms:
        m.wait_connected(f"{vm.name}-disk", True, timeout=120)
    for vm in vms:
        vm.wait()
    for vm in vms:
        m.wait_connected(f"{vm.name}-disk", False)


@case
def vfud_vblk(ctx):
    """A virtio-blk disk that vfud made (vfuctl create virtio-blk, its image
    opened and locked by vfud): the guest's checks, fio and ext4 as in vblk,
    and the resize given to vfuctl while the guest runs reaches it."""
    size, new_size = 256 * MiB, 320 * MiB
    m = Manager(ctx).start()
    m.run("create", "virtio-blk", "--vm", "vm-b", "--name", "vm-b-disk", "--size", str(size),
          "--serial", "vfud-disk")
    sock = m.json("show", "vm-b-disk")["socket_path"]
    # vfud's default of 4 request queues; Linux uses one per vCPU (the guest has 2).
    vm = ctx.vm("guest", "vblk.sh", devices=[vmlib.vfio_user_device(sock, "disk")], timeout=900,
                params={"DISK_BYTES": size, "NEW_BYTES": new_size, "SERIAL": "vfud-disk", "QUEUES": 2})
    vm.start()
    m.wait_connected("vm-b-disk", True, timeout=120)
    vm.wait_for("^VFU-VM-MARK: ready-for-resize$", timeout=800)
    m.run("namespace", "resize", "vm-b-disk", "1", str(new_size))
    vm.wait()
    m.wait_connected("vm-b-disk", False)


@case
def vfud_rbd(ctx):
    """An NVMe namespace on a Ceph RBD image (vfuctl create nvme --rbd, a
    single-node cluster from tests/common/ceph-cluster): the guest runs fio
    write+verify, then mkfs.ext4, files written, verified and fsck'd, in a
    second boot on the same image."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common", "ceph-cluster")
    if not shutil.which("ceph-mon") or not shutil.which("ceph-osd"):
        raise Skip("ceph-mon or ceph-osd is missing (./scripts/deps installs them)")
    ceph_dir = ctx.path("ceph")
    p = subprocess.run([script, "start", ceph_dir, "vfu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=300)
    if p.returncode != 0:
        raise Fail(f"ceph-cluster start exited {p.returncode}: {p.stderr.strip()}")
    conf = p.stdout.strip()
    ctx.cleanups.append(lambda: subprocess.run([script, "stop", ceph_dir], timeout=60))
    m = Manager(ctx).start()
    p = m.run("create", "nvme", "--vm", "vm-r", "--name", "vm-r-disk", "--rbd", "vfu/vm-r-disk",
              "--size", str(256 * MiB), "--rbd-conf", conf, check=False)
    if p.returncode != 0 and "built without librbd" in p.stderr:
        raise Skip("vfud-worker was built without librbd")
    if p.returncode != 0:
        raise Fail(f"vfuctl create nvme --rbd exited {p.returncode}: {p.stderr.strip()}")
    sock = m.json("show", "vm-r-disk")["socket_path"]
    for name, script_name in (("guest-fio", "nvme-fio.sh"), ("guest-ext4", "nvme-ext4.sh")):
        vm = ctx.vm(name, script_name, devices=[vmlib.vfio_user_device(sock, "vm-r-disk")], timeout=600)
        vm.start()
        m.wait_connected("vm-r-disk", True, timeout=120)
        vm.wait()
        m.wait_connected("vm-r-disk", False)


@case
def vfud_restart_during_fio(ctx):
    """vfud is killed (SIGKILL) and started again while the guest runs a
    verified fio: the worker keeps serving, the guest sees no I/O error, and
    the new manager shows the device connected."""
    m = Manager(ctx).start()
    sock = m.create_nvme("disk0", "vm0", 128 * MiB)
    vm = ctx.vm("guest", "nvme-fio-long.sh", devices=[vmlib.vfio_user_device(sock, "disk0")],
                params={"FIO_SECONDS": 40}, timeout=600)
    vm.start()
    vm.wait_for("^VFU-VM-MARK: fio-started$", timeout=300)
    dev = m.wait_connected("disk0", True)
    worker_pid = dev["worker_pid"]
    # vfud goes down with the guest's fio under way (a few hundred commands in) ...
    done = int(dev.get("statistics", {}).get("io_commands", 0))
    done = m.wait_statistic("disk0", "io_commands", done + 300)
    m.kill()
    # ... and stays down for an outage of 2 s, a length of time, not a wait for an event
    time.sleep(2)
    m.start()
    dev = m.wait_connected("disk0", True)
    # the worker served on: its counters, read by the new manager, went on from there
    m.wait_statistic("disk0", "io_commands", done + 1)
    if dev.get("state") != "connected" or dev.get("restarts"):
        raise Fail(f"after the restart vfud shows disk0 as {dev.get('state')}: {dev}")
    if dev.get("worker_pid") != worker_pid:
        raise Fail(f"the worker changed across the manager restart ({worker_pid} -> "
                   f"{dev.get('worker_pid')}): it was restarted, not adopted")
    vm.wait()


@case
def vfud_ns_runtime(ctx):
    """vfuctl namespace add and resize while the guest runs: the guest sees
    the new namespace and the larger one and uses both."""
    ns1, ns1_new, ns2 = 64 * MiB, 96 * MiB, 32 * MiB
    m = Manager(ctx).start()
    sock = m.create_nvme("disk0", "vm0", ns1)
    vm = ctx.vm("guest", "nvme-ns-runtime.sh", devices=[vmlib.vfio_user_device(sock, "disk0")],
                timeout=300, params={"NS1_BYTES": ns1, "NS1_NEW_BYTES": ns1_new, "NS2_BYTES": ns2})
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-add$")
    m.run("namespace", "add", "disk0", "2", "--size", str(ns2))
    vm.wait_for("^VFU-VM-MARK: ready-for-resize$")
    m.run("namespace", "resize", "disk0", "1", str(ns1_new))
    vm.wait()


@case
def vfud_net_link(ctx):
    """virtio-net made by vfud (vfuctl create virtio-net) on a TAP in the
    case's network namespace, where vfud runs and opens it: the guest links
    up and reaches the host; vfuctl link down/up is seen as the guest's
    carrier, and traffic flows again."""
    mac = "52:54:00:76:66:6c"
    ns = vmlib.NetNs(ctx)
    m = Manager(ctx, netns=ns).start()
    m.run("create", "virtio-net", "--vm", "vm0", "--name", "net0", "--tap", ns.tap,
          "--mac", mac)
    sock = m.json("show", "net0")["socket_path"]
    vm = ctx.vm("guest", "net-link.sh", devices=[vmlib.vfio_user_device(sock, "net0")],
                timeout=300, params=dict(ns.params(), MAC=mac))
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-link-down$", timeout=240)
    m.run("link", "down", "net0")
    vm.wait_for("^VFU-VM-MARK: ready-for-link-up$")
    m.run("link", "up", "net0")
    vm.wait()


@case
def vfud_net_mtu(ctx):
    """Jumbo frames and a smaller MTU on devices vfud made: "jumbo" with
    --mtu 9000 on a TAP vfud creates (which gets MTU 9000), "small" without
    --mtu on an existing TAP of MTU 1450 (the device offers 1450).  The guest
    starts each interface at its MTU and cannot go above it; 8972- and
    1422-byte pings with DF set cross unfragmented both ways (the host's
    `ping -M do`, and one size more refused); TCP transfers both ways arrive
    with the right checksums."""
    small_mac, jumbo_mac = "52:54:00:76:66:31", "52:54:00:76:66:32"
    jumbo_host, jumbo_guest = "198.51.100.1", "198.51.100.2"
    if not shutil.which("ping"):
        raise Skip("ping(8) with -M is missing on the host (apt install iputils-ping)")
    ns = vmlib.NetNs(ctx, tap="vfusmall0", mtu=1450, peer_addr="0.0.0.0")
    m = Manager(ctx, netns=ns).start()
    m.run("create", "virtio-net", "--vm", "vm0", "--name", "small", "--tap", ns.tap, "--mac", small_mac)
    m.run("create", "virtio-net", "--vm", "vm0", "--name", "jumbo", "--tap", "vfujumbo0", "--mtu", "9000",
          "--mac", jumbo_mac)
    if ns.mtu("vfujumbo0") != 9000:
        raise Fail(f"vfud created vfujumbo0 with MTU {ns.mtu('vfujumbo0')}, not the 9000 given")
    if ns.mtu(ns.tap) != 1450:
        raise Fail(f"vfud changed the MTU of the existing {ns.tap} to {ns.mtu(ns.tap)}")
    ns.address("vfujumbo0", jumbo_host)
    for name, mtu in (("small", 1450), ("jumbo", 9000)):
        deadline = time.monotonic() + 10
        while (got := m.json("show", name).get("statistics", {}).get("mtu")) != mtu:
            if time.monotonic() > deadline:
                raise Fail(f"vfuctl show {name} says the device offers MTU {got}, expected {mtu}")
            time.sleep(0.2)
    devices = [vmlib.vfio_user_device(m.json("show", n)["socket_path"], n) for n in ("small", "jumbo")]
    vm = ctx.vm("guest", "net-mtu.sh", devices=devices, timeout=400,
                params=dict(ns.params(), SMALL_MAC=small_mac, JUMBO_MAC=jumbo_mac,
                            JUMBO_HOST_IP=jumbo_host, JUMBO_GUEST_IP=jumbo_guest))
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-host-ping$", timeout=300)
    for ip, size in ((jumbo_guest, 8972), (ns.GUEST_IP, 1422)):
        out = ns.exec(["ping", "-c", "3", "-W", "5", "-M", "do", "-s", str(size), ip])
        print(f"host: ping -M do -s {size} {ip}: {out.strip().splitlines()[-2:]}", flush=True)
        p = subprocess.run(ns.prefix() + ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", str(size + 1), ip],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode == 0:
            raise Fail(f"ping -M do -s {size + 1} {ip} went through a link of MTU {size + 28}")
    vm.wait()


# What a refused live migration must tell the user: why, and what to do.
MIGRATE_REFUSAL = ("cannot migrate device state", "shut the VM down")


@case
def vfud_migrate_refused(ctx):
    """vfuctl migrate of a device (and of its VM) that QEMU's client is
    using, to a second vfud: refused with why and what to do; the source
    device keeps serving verified guest I/O, the destination got nothing."""
    src = Manager(ctx, "src").start()
    dst = Manager(ctx, "dst").start()
    sock = src.create_nvme("disk0", "vm0", 64 * MiB)
    vm = ctx.vm("guest", "nvme-keep-serving.sh", timeout=300,
                devices=[vmlib.vfio_user_device(sock, "disk0")])
    vm.start()
    vm.wait_for("^VFU-VM-MARK: ready-for-host$", timeout=240)
    before = src.wait_connected("disk0", True)
    for args in (["disk0"], ["--vm", "vm0"]):
        argv = ["migrate"] + args + ["--to", dst.bus, "--storage=copy"]
        p = src.run(*argv, check=False)
        what = f"vfuctl {' '.join(argv)}"
        if p.returncode == 0:
            raise Fail(f"{what} succeeded for a device QEMU is using: {p.stdout.strip()}")
        missing = [s for s in MIGRATE_REFUSAL if s not in p.stderr]
        if missing:
            raise Fail(f"{what} exited {p.returncode} without saying {missing}: "
                       f"{p.stderr.strip()}")
        now = src.json("show", "disk0")
        if now.get("state") != "connected" or now.get("worker_pid") != before.get("worker_pid"):
            raise Fail(f"after the refused {what} the source device is {now}, "
                       f"before it was {before}")
        listed = dst.json("list")
        listed = listed if isinstance(listed, list) else listed.get("devices")
        if listed:
            raise Fail(f"after the refused {what} the destination has devices: {listed}")
    # The go-ahead: the guest does more verified I/O, then checks its data.
    src.run("namespace", "add", "disk0", "2", "--size", str(4 * MiB))
    vm.wait()


@case
def demo(ctx):
    """./scripts/demo on this build (VFU_DEMO_BUILD): its VM (demo.py) boots
    with a vfu NVMe disk and virtio-net NIC vfuctl made, the guest's checks
    pass (ext4 verified, ping, TCP both ways with checksums), both devices'
    statistics show the guest's I/O, the devices are destroyed at the end,
    and nothing alarming is printed."""
    for var, name in (("VFUD", "vfud"), ("VFUCTL", "vfuctl"), ("VFU_WORKER", "vfud-worker")):
        ctx.program(var, name)
    if not os.environ.get("VFU_DEMO_BUILD"):
        raise Skip("VFU_DEMO_BUILD (the build scripts/demo uses) is unset: run the case through meson")
    p = subprocess.run([os.path.join(vmlib.HERE, "..", "..", "scripts", "demo")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(os.path.join(ctx.workdir, "demo.log"), "w") as f:
        f.write(f"{p.stdout}\n--- stderr ---\n{p.stderr}[exit {p.returncode}]\n")
    out = p.stdout
    if "showing the client-driven demo instead" in out:
        raise Skip(f"the VM demo cannot run here: {p.stderr.strip()}")
    if p.returncode != 0:
        raise Fail(f"scripts/demo exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    for line in ("  guest| all checks passed",
                 "  guest| link down seen (vfuctl link down): powering off",
                 "vfu: the guest's I/O is in both devices' statistics",
                 "(no devices)", "vfu: demo finished"):
        if line not in out.splitlines():
            raise Fail(f"scripts/demo did not print {line!r}:\n{out}")
    for stat in ("read_bytes", "write_bytes", "rx_bytes", "tx_bytes"):
        values = [int(v) for v in re.findall(rf"\b{stat}: (\d+)$", out, re.M)]
        if not values or not all(values):
            raise Fail(f"vfuctl show in scripts/demo: {stat} is {values or 'missing'}:\n{out}")
    bad = [ln for ln in (out + p.stderr).splitlines() if re.search(r"warning|failed", ln, re.I)]
    if bad:
        raise Fail("scripts/demo printed what a new user should not see:\n" + "\n".join(bad))


class Libvirtd:
    """A private libvirtd from the trixie tree (lvroot.py): chrooted there in
    mount and PID namespaces of its own, its socket and logs in
    <rundir>/<name>/run-libvirt, qemu hooks from hooks ({name: script}),
    driven with the tree's virsh."""

    QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
"""

    def __init__(self, ctx, name, host_uuid, hooks):
        if os.geteuid() != 0:
            raise Skip("the libvirt case runs libvirtd in mount and PID namespaces: it needs root")
        self.ctx = ctx
        self.name = name
        self.dir = ctx.path(name)
        etc = os.path.join(self.dir, "etc")
        run = os.path.join(self.dir, "run-libvirt")
        os.makedirs(os.path.join(etc, "hooks", "qemu.d"))
        os.makedirs(run)
        self.log = os.path.join(run, "libvirtd.log")
        with open(os.path.join(etc, "libvirtd.conf"), "w") as f:
            f.write(f'log_outputs = "3:file:/run/libvirt/libvirtd.log"\n'
                    f'host_uuid = "{host_uuid}"\n'
                    f'auth_unix_rw = "none"\nauth_unix_ro = "none"\n')
        with open(os.path.join(etc, "qemu.conf"), "w") as f:
            f.write(self.QEMU_CONF)
        for hook, text in hooks.items():
            path = os.path.join(etc, "hooks", "qemu.d", hook)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, 0o755)
        self.uri = f"qemu+unix:///system?socket={run}/libvirt-sock"
        config = os.path.join(self.dir, "lvroot.json")
        with open(config, "w") as f:
            json.dump({"root": ctx.env["ROOT"], "dir": self.dir, "binds": [ctx.rundir],
                       "hide_kvm": ctx.accel != "kvm"}, f)
        self.process = ctx.spawn(name, [
            "unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
            sys.executable, os.path.join(vmlib.HERE, "lvroot.py"), config])
        ctx.cleanups.append(self.keep_logs)
        deadline = time.monotonic() + 60
        while self.virsh("list", "--all", check=False).returncode != 0:
            if not self.process.alive() or time.monotonic() > deadline:
                raise Fail(f"libvirtd {name} from {ctx.env['ROOT']} did not come up "
                           f"(exit {self.process.proc.poll()}):\n{vmlib.tail(self.process.log)}\n"
                           f"{vmlib.tail(self.log)}")
            time.sleep(0.2)

    def virsh(self, *args, check=True, quiet=False):
        p = subprocess.run([self.ctx.env["VIRSH"], "-c", self.uri] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
        if not quiet:
            with open(os.path.join(self.ctx.workdir, f"virsh-{self.name}.log"), "a") as log:
                log.write(f"$ virsh {' '.join(args)}\n{p.stdout}{p.stderr}[exit {p.returncode}]\n")
        if check and p.returncode != 0:
            raise Fail(f"virsh ({self.name}) {' '.join(args)} exited {p.returncode}: "
                       f"{p.stderr.strip()}")
        return p

    def domstate(self, dom):
        p = self.virsh("domstate", dom, check=False, quiet=True)
        return p.stdout.strip() if p.returncode == 0 else "undefined"

    def keep_logs(self):
        for src in (self.log, os.path.join(self.dir, "hook.log")):
            if os.path.exists(src):
                shutil.copy(src, os.path.join(self.ctx.workdir, f"{self.name}-{os.path.basename(src)}"))


class LibvirtVm(vmlib.Vm):
    """A guest libvirt starts: a domain the case defined, with the case's
    kernel, initramfs and serial console in the run directory (libvirtd
    sees it at the same path)."""

    class Domain:
        def __init__(self, vm):
            self.vm = vm
            self.log = vm.lv.log
            self.asked = 0
            self.running = True

        def alive(self):
            """Whether libvirt shows the domain running (asked once a second)."""
            if time.monotonic() - self.asked >= 1:
                self.asked = time.monotonic()
                self.running = self.vm.lv.domstate(self.vm.name) in ("running", "paused",
                                                                     "in shutdown")
            return self.running

        def stop(self, sig=None, timeout=None):
            self.vm.lv.virsh("destroy", self.vm.name, check=False)

    def __init__(self, ctx, lv, name, script, **kw):
        super().__init__(ctx, name, script, **kw)
        self.lv = lv
        self.serial = ctx.path(f"{name}.serial.log")
        ctx.cleanups.append(self.keep_serial)

    def define(self):
        kernel = self.ctx.path("vmlinuz")
        shutil.copy(self.ctx.env["KERNEL"], kernel)
        xml = self.ctx.path(f"{self.name}.xml")
        with open(xml, "w") as f:
            f.write(f"""<domain type='qemu'>
  <name>{self.name}</name>
  <memory unit='MiB'>{int(vmlib.GUEST_RAM.rstrip('M'))}</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{self._initrd()}</initrd>
    <cmdline>{vmlib.KERNEL_ARGS}</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{self.serial}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
""")
        self.lv.virsh("define", xml)
        return self

    def start(self):
        self.started = time.monotonic()
        self.seen = 0
        self.lv.virsh("start", self.name)
        self.process = self.Domain(self)
        return self

    def wait(self):
        deadline = self.started + self.timeout
        while self.process.alive():
            if time.monotonic() > deadline:
                self.process.stop()
                raise Fail(f"{self.name}: guest still running after {self.timeout} s (hard "
                           f"timeout); last console lines:\n{vmlib.tail(self.serial, 30)}")
            time.sleep(0.5)
        self.ctx.timings.append(f"{self.name} {time.monotonic() - self.started:.0f}s")
        out = self.output()
        results = vmlib.RESULT_RE.findall(out)
        if not results or results[-1] != "PASS":
            raise Fail(f"{self.name}: guest reported {results[-1] if results else 'nothing'}; "
                       f"console:\n" + "\n".join(out.splitlines()[-40:]))
        return out

    def keep_serial(self):
        if os.path.exists(self.serial):
            shutil.copy(self.serial, os.path.join(self.ctx.workdir, f"{self.name}.serial.log"))


def host_program_hook(ctx, lv_dir, bus, log):
    """The qemu hook script for a chrooted libvirtd: vfu-hook is a host
    program, run through the host's dynamic loader and libraries (the
    host's /usr is at lvroot.HOST_USR inside); each call is logged."""
    hook = ctx.program("VFU_HOOK", "vfu-hook")
    copy = os.path.join(lv_dir, "vfu-hook.bin")
    shutil.copy(hook, copy)
    usr = "/run/host-usr/lib/x86_64-linux-gnu"
    return (f"#!/bin/sh\n"
            f"echo \"$*\" >>{log}\n"
            f"exec {usr}/ld-linux-x86-64.so.2 --library-path {usr} {copy} --bus {bus} \"$@\"\n")


@case
def libvirt(ctx):
    """libvirtd from the trixie tree starts a domain whose definition vfud
    wrote (vfuctl create for the VM); vfu's qemu hook starts the device
    before QEMU; the guest sees our NVMe controller and does verified I/O;
    a live migration (to a second libvirtd with the hook, as a destination
    host) is refused with the hook's reason, and so is a hot detach of the
    MSI-X device on QEMU < 11.2; the VM keeps running and serving; the
    release hook stops the device when the guest powers off."""
    if not ctx.env.get("VIRSH"):
        raise Skip(f"the trixie tree in {vmlib.CACHE} has no libvirt: provisioning could not "
                   f"install it (see its warning above); run tests/vm/provision with the "
                   f"package archive reachable")
    vm_name, disk = "lv-vm", "lvdisk"
    hook_logs = {n: os.path.join(ctx.path(n), "hook.log") for n in ("lv-src", "lv-dst")}
    src_dir = ctx.path("lv-src")
    lv_uri = f"qemu+unix:///system?socket={src_dir}/run-libvirt/libvirt-sock"
    m = Manager(ctx, config=f"[Libvirt]\nEnabled=yes\nURI={lv_uri}\n")
    hooks = {}
    for n in ("lv-src", "lv-dst"):
        os.makedirs(ctx.path(n), exist_ok=True)
        hooks[n] = {"vfu-hook": host_program_hook(ctx, ctx.path(n), m.bus, hook_logs[n])}
    src = Libvirtd(ctx, "lv-src", "5c0f8a52-7d1e-4c3b-9a6f-2e4d1b7c8a90", hooks["lv-src"])
    # The daemon is the tree's (the host's libvirt is another release), and
    # it runs the tree's QEMU.
    ver = src.virsh("version", "--daemon").stdout
    want = (f"Running against daemon: {ctx.env['LIBVIRT_VERSION']}",
            f"Running hypervisor: QEMU {ctx.env['QEMU_VERSION'].split()[0]}")
    if not all(w in ver for w in want):
        raise Fail(f"virsh version --daemon does not show {want}:\n{ver}")
    vm = LibvirtVm(ctx, src, vm_name, "nvme-keep-serving.sh", timeout=400,
                   params={"MODEL": "vfu NVMe Controller"}).define()
    m.start()
    m.run("create", "nvme", "--vm", vm_name, "--name", disk, "--size", str(64 * MiB))
    deadline = time.monotonic() + 60
    while (dev := m.json("show", disk)).get("libvirt_status") != "applied":
        if time.monotonic() > deadline:
            raise Fail(f"vfud did not write {vm_name}'s definition: {dev}")
        time.sleep(0.5)
    defined = src.virsh("dumpxml", "--inactive", vm_name).stdout
    for what in ("vfio-user-pci", dev["socket_path"], "memfd"):
        if what not in defined:
            raise Fail(f"{vm_name}'s definition in libvirtd lacks {what!r}:\n{defined}")
    if "vfio-user-pci" not in m.run("xml", "--vm", vm_name).stdout:
        raise Fail(f"vfuctl xml --vm {vm_name} shows no vfio-user-pci device")
    # Idle until libvirt starts the VM: only the prepare hook can start it.
    m.run("stop", disk)
    vm.start()
    if f"{vm_name} prepare begin" not in vmlib.tail(hook_logs["lv-src"]):
        raise Fail("libvirtd did not run vfu's prepare hook")
    vm.wait_for("^VFU-VM-MARK: ready-for-host$", timeout=300)
    m.wait_connected(disk, True)

    dst = Libvirtd(ctx, "lv-dst", "a3e1b0c4-2f6d-4e8b-8c7a-5d9f0e1b2c3d", hooks["lv-dst"])
    p = src.virsh("migrate", "--live", vm_name, dst.uri, "--migrateuri", "tcp://127.0.0.1",
                  check=False)
    expect = f"vfu-hook: VM '{vm_name}': refusing live migration"
    if p.returncode == 0 or expect not in p.stderr or "cannot migrate device state" not in p.stderr:
        raise Fail(f"virsh migrate --live exited {p.returncode}, expected the hook's refusal "
                   f"({expect} ... cannot migrate device state): {p.stderr.strip()}")
    if f"{vm_name} migrate begin" not in vmlib.tail(hook_logs["lv-dst"]):
        raise Fail("the destination libvirtd did not run vfu's migrate hook")
    if src.domstate(vm_name) != "running":
        raise Fail(f"after the refused migration {vm_name} is {src.domstate(vm_name)}")
    if dst.virsh("list", "--all", "--name").stdout.strip():
        raise Fail(f"the refused migration left a domain on the destination: "
                   f"{dst.virsh('list', '--all').stdout}")
    # Hot detach of this MSI-X device from the running VM: refused, with the
    # reason, where QEMU would abort on the unplug (before 11.2).
    qemu = tuple(int(x) for x in ctx.env["QEMU_VERSION"].split()[0].split(".")[:2])
    if qemu < (11, 2):
        p = m.run("detach", disk, check=False)
        expect = "aborts when a device with MSI-X is hot-unplugged"
        if p.returncode == 0 or expect not in p.stderr or "--msi" not in p.stderr:
            raise Fail(f"vfuctl detach {disk} from the running VM on QEMU "
                       f"{ctx.env['QEMU_VERSION']} exited {p.returncode}, expected the "
                       f"refusal ({expect} ... --msi): {p.stderr.strip()}")
        if src.domstate(vm_name) != "running" or m.json("show", disk).get("vm") != vm_name:
            raise Fail(f"after the refused detach {vm_name} is {src.domstate(vm_name)} and "
                       f"{disk} is {m.json('show', disk)}")
    # The go-ahead: the guest does more verified I/O, checks its data, powers off.
    m.run("namespace", "add", disk, "2", "--size", str(4 * MiB))
    vm.wait()
    deadline = time.monotonic() + 30
    while (state := m.json("show", disk).get("state")) != "idle":
        if time.monotonic() > deadline:
            raise Fail(f"the release hook did not stop {disk}: it is {state}")
        time.sleep(0.5)


def _helper(ctx, script, what):
    """Run a tests/vm helper that prints KEY=VALUE lines last; 77 is Skip."""
    t = time.monotonic()
    p = subprocess.run([os.path.join(vmlib.HERE, script)], stdout=subprocess.PIPE, text=True)
    if p.returncode == 77:
        raise Skip(f"{script} cannot {what} (see above)")
    if p.returncode != 0:
        raise Fail(f"{script} failed with exit code {p.returncode} (see above)")
    ctx.timings.append(f"{script} {time.monotonic() - t:.0f}s")
    return dict(ln.split("=", 1) for ln in p.stdout.splitlines() if "=" in ln)


class SystemdHostVm(vmlib.Vm):
    """A guest booted from the systemd host image (provision-systemd-host):
    systemd as PID 1 on a virtio root disk (a snapshot: the cached image is
    not written), the case's files on a second disk labelled vfucase."""

    def __init__(self, ctx, name, image, payload, **kw):
        super().__init__(ctx, name, "systemd-host.sh", **kw)
        self.image = image
        self.payload = payload

    def argv(self):
        ctx = self.ctx
        return [ctx.env["QEMU"], "-name", self.name, "-machine", "q35", "-accel", ctx.accel,
                "-cpu", "host" if ctx.accel == "kvm" else "max", "-smp", "2", "-m", "1024",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-serial", f"file:{self.serial}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-kernel", self.image["KERNEL"], "-initrd", self.image["INITRD"],
                # udev would load drivers for q35's built-in AHCI, SMBus and watchdog and KVM's
                # modules, seconds each under TCG while the case runs: nothing here uses them.
                "-append", "console=ttyS0 panic=-1 quiet modprobe.blacklist=ahci,libahci,i2c_i801,i2c_smbus,"
                "lpc_ich,iTCO_wdt,iTCO_vendor_support,kvm_amd,kvm_intel,kvm",
                "-drive", f"file={self.image['ROOT_IMG']},if=virtio,format=raw,snapshot=on",
                "-drive", f"file={self.payload},if=virtio,format=raw,readonly=on"]


@case
def systemd_host(ctx):
    """vfu's packages, built from this tree, on a booted trixie with systemd as
    PID 1: install, D-Bus activation, a device in its own worker unit with its
    limits in the cgroup, verified I/O with our client, vfud restarted with the
    worker adopted, a killed worker back in a new unit, systemd-analyze
    security, polkit, purge (cases/systemd-host.sh)."""
    nvme_io = ctx.program("NVME_IO", "nvme-io")
    debs = _helper(ctx, "build-deb", "build the packages")["DEB_DIR"]
    image = _helper(ctx, "provision-systemd-host", "build the systemd host image")
    payload = ctx.path("payload")
    os.mkdir(payload)
    for name in os.listdir(debs):
        if name.startswith(("vfu_", "libvfu-vfio-user0_")) and name.endswith(".deb"):
            shutil.copy(os.path.join(debs, name), payload)
    shutil.copy(nvme_io, os.path.join(payload, "nvme-io"))
    shutil.copy(os.path.join(vmlib.HERE, "cases", "systemd-host.sh"), os.path.join(payload, "case.sh"))
    disk = ctx.path("payload.img")
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "vfucase", "-d", payload, disk, "64M"], check=True)
    vm = SystemdHostVm(ctx, "host", image, disk, timeout=720)
    out = vm.run()
    # The case's own lines, without the console's timestamps and unit prefixes.
    for line in out.splitlines():
        m = re.search(r"vfu-case\[\d+\]: (.*)", line)
        if m:
            print(m.group(1))
