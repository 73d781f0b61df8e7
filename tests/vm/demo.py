#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""./scripts/demo's VM: a real guest using a vfu NVMe disk and a vfu
virtio-net NIC that vfuctl creates on a vfud of the demo's own.

    demo.py [--keep]

The VM suite's harness does the work (vmlib: provisioning, QEMU, the
network namespace with the TAP and the host's TCP peer; cases.Manager: vfud
on a private bus).  The guest's script is cases/demo.sh; its console lines
are shown as they come.  --keep: the VM stays up afterwards, its console
attached here (Ctrl-] detaches and ends the demo), with the vfuctl commands
to try from another terminal.

Environment: VFUD, VFUCTL, VFU_WORKER (the built programs), and the VM
suite's VFU_VM_CACHE, VFU_VM_ACCEL.  Exit 0 done, 77 the VM cannot run here
(the reason printed; scripts/demo then shows the client-driven demo), 1
failed (the logs are kept and their folder named).
"""
import argparse
import os
import re
import select
import shutil
import sys
import tempfile
import termios
import time
import traceback
import tty
import socket

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import vmlib  # noqa: E402
import cases  # noqa: E402

MAC = "52:54:00:76:66:64"
GUEST_LINE = re.compile(r"^VFU-VM(?:-MARK)?: (.*)$", re.M)


def say(msg=""):
    print(msg, flush=True)


class DemoVm(vmlib.Vm):
    """The suite's guest with its serial console on a socket (--keep
    attaches to it), still logged to the console file the harness reads."""

    def argv(self):
        a = super().argv()
        i = a.index("-serial")
        self.console = self.ctx.path("console")
        a[i:i + 2] = ["-chardev", f"socket,id=con,path={self.console},server=on,wait=off,"
                      f"logfile={self.serial}", "-serial", "chardev:con"]
        return a


class Demo:
    def __init__(self, ctx, keep):
        self.ctx = ctx
        self.keep = keep
        self.printed = 0

    def ctl(self, *args):
        """vfuctl as the user would type it, with its output."""
        say(f"$ vfuctl {' '.join(args)}")
        out = self.m.run(*args).stdout
        if out:
            say(out.rstrip("\n"))

    def follow(self, vm, until):
        """Print the guest's lines as they come, until its line `until` or its end."""
        while True:
            out = vm.output()
            for m in GUEST_LINE.finditer(out, self.printed):
                self.printed = m.end()
                if m.group(1) == until:
                    return
                say(f"  guest| {m.group(1)}")
            if not vm.process.alive():
                return
            if time.monotonic() > vm.started + vm.timeout:
                raise vmlib.Fail(f"the guest did not finish within {vm.timeout} s")
            time.sleep(0.2)

    def settled_stats(self, names):
        """The devices' statistics once the manager's next poll has them all
        (it polls the workers every second while a client is connected)."""
        def read():
            return {n: self.m.json("show", n).get("statistics", {}) for n in names}
        last = read()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(1.2)
            now = read()
            if now == last and all(any(v for v in s.values()) for s in now.values()):
                return now
            last = now
        return last

    def run(self):
        ctx = self.ctx
        ns = vmlib.NetNs(ctx)
        # libvirt stays out of it (vfud.conf(5) [Libvirt]): the demo's VM exists only in name.
        self.m = cases.Manager(ctx, netns=ns, config="[Libvirt]\nEnabled=no\n").start()
        say(f"vfu: vfud on the private bus {self.m.bus}, in the network namespace {ns.name}")
        say(f"vfu: host end of the guest's network: {ns.tap} {ns.HOST_IP}/24, a TCP peer on port {ns.PORT}")
        say()
        self.ctl("create", "nvme", "--vm", "demo-vm", "--name", "demo-disk", "--size", "256M")
        self.ctl("create", "virtio-net", "--vm", "demo-vm", "--name", "demo-nic", "--tap", ns.tap,
                 "--mac", MAC)
        self.ctl("list")
        devices = [vmlib.vfio_user_device(self.m.json("show", n)["socket_path"], n)
                   for n in ("demo-disk", "demo-nic")]
        say()
        say(f"vfu: booting the guest (QEMU {ctx.env.get('QEMU_VERSION', '').split()[0]}, "
            f"{ctx.accel.upper()}, Debian kernel {ctx.env.get('KVER')}) with -device vfio-user-pci "
            "for each")
        timeout = 10 ** 7 if self.keep else 500
        vm = DemoVm(ctx, "demo-vm", "demo.sh", devices=devices, timeout=timeout,
                    params=dict(ns.params(), MAC=MAC, KEEP=int(self.keep)))
        vm.start()
        vm.wait_for(r"^VFU-VM-BOOT: .*", timeout=300)
        say(f"vfu: the guest is up after {time.monotonic() - vm.started:.0f} s")
        self.follow(vm, "demo-done")
        if "VFU-VM-MARK: demo-done" not in vm.output():
            vm.wait()  # its failure, with the console
            raise vmlib.Fail("the guest ended before its checks were done")
        say()
        say("vfu: the host's view, the guest still running:")
        stats = self.settled_stats(["demo-disk", "demo-nic"])
        self.ctl("list")
        self.ctl("show", "demo-disk")
        self.ctl("show", "demo-nic")
        idle = [n for n, s in stats.items() if not any(v for v in s.values())]
        if idle:
            raise vmlib.Fail(f"no statistics from {', '.join(idle)} after the guest's I/O")
        say("vfu: the guest's I/O is in both devices' statistics")
        if self.keep:
            self.hold(vm)
        else:
            say()
            self.ctl("link", "down", "demo-nic")
            self.follow(vm, None)
            vm.wait()
            say("vfu: the guest powered off")
        for n in ("demo-disk", "demo-nic"):
            self.m.wait_connected(n, False)
        say()
        self.ctl("destroy", "demo-disk", "demo-nic")
        self.ctl("list")

    def hold(self, vm):
        vfuctl = f"{self.m.vfuctl_path} --bus {self.m.bus}"
        say(f"""
vfu: --keep: the VM stays up.  From another terminal (as root), try:
  {vfuctl} list
  {vfuctl} show demo-disk
  {vfuctl} metrics
  {vfuctl} link down demo-nic        # the guest's eth0 loses its carrier
  {vfuctl} link up demo-nic
  {vfuctl} namespace resize demo-disk 1 512M
vfu: the guest's console follows (Ctrl-] or poweroff -f in the guest ends the demo).""")
        attach(vm.console, vm)
        say("\nvfu: console closed; stopping the VM")
        vm.process.stop()


def attach(path, vm):
    """The serial console on this terminal until Ctrl-] or QEMU's end;
    without a terminal, wait for QEMU's end."""
    interactive = sys.stdin.isatty()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"\n")
    saved = termios.tcgetattr(sys.stdin) if interactive else None
    try:
        if interactive:
            tty.setraw(sys.stdin)
        fds = [s] + ([sys.stdin] if interactive else [])
        while vm.process.alive():
            ready, _, _ = select.select(fds, [], [], 0.5)
            if s in ready:
                data = s.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if sys.stdin in ready:
                data = os.read(sys.stdin.fileno(), 1024)
                if not data or b"\x1d" in data:
                    break
                s.sendall(data)
    finally:
        if saved:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave the VM running, its console attached")
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="vfu-demo-logs-")
    ctx = vmlib.Context("demo", workdir)
    result = 1
    try:
        if os.geteuid() != 0:
            raise vmlib.Skip("it needs root (a network namespace with a TAP for the guest's NIC)")
        if not os.path.exists(os.path.join(vmlib.CACHE, "images")):
            say(f"vfu: first run: provisioning the VM into {vmlib.CACHE} (about 650 MB): Debian "
                "trixie by debootstrap, QEMU 11 from trixie-backports, the Debian guest kernel; "
                "usually 3 to 10 minutes with a good mirror.  Later runs start in seconds.")
        else:
            say(f"vfu: checking the VM's cache in {vmlib.CACHE}")
        t = time.monotonic()
        try:
            ctx.setup()
        except vmlib.Fail as e:
            raise vmlib.Skip(f"preparing the VM failed: {e}")
        say(f"vfu: VM ready in {time.monotonic() - t:.1f} s (QEMU {ctx.env.get('QEMU_VERSION')}, "
            f"{ctx.accel})")
        Demo(ctx, args.keep).run()
        say("vfu: demo finished")
        result = 0
    except vmlib.Skip as e:
        print(f"vfu: the VM demo cannot run here: {e}", file=sys.stderr)
        result = 77
    except vmlib.Fail as e:
        print(f"vfu: the VM demo FAILED: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("vfu: interrupted", file=sys.stderr)
    except Exception:
        traceback.print_exc()
    finally:
        ctx.cleanup()
    if result == 1:
        ctx.dump_logs()
        print(f"vfu: logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
