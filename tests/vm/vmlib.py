# SPDX-License-Identifier: LGPL-2.1-or-later
"""The VM suite's harness: provisioning, guests under QEMU, device servers.

A case gets a Context.  ctx.vm(...) describes a guest (its case script, its
vfio-user devices), Vm.run() boots it and requires `VFU-VM-RESULT: PASS`;
ctx.spawn(...) runs a device server and waits for its socket.  Everything a
case starts is stopped by Context.cleanup(), whatever happened.
"""
import fcntl
import gzip
import io
import json
import os
import re
import signal
import socket
import subprocess
import shutil
import sys
import tempfile
import time

import cpio

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("VFU_VM_CACHE", "/var/cache/vfu-vm")
RESULT_RE = re.compile(r"^VFU-VM-RESULT: (PASS|FAIL.*)$", re.M)
GUEST_RAM = "512M"
KERNEL_ARGS = "console=ttyS0 panic=-1 quiet"


class Skip(Exception):
    """The case cannot run here; the message says why and what would fix it."""


class Fail(Exception):
    """The case ran and found a defect."""


def say_loudly(msg):
    bar = "#" * 72
    print(f"{bar}\n# {msg}\n# What this case is for was NOT tested.\n{bar}", file=sys.stderr)


def tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Process:
    """A host process started by a case, its output in workdir/<name>.log."""

    def __init__(self, ctx, name, argv, env=None):
        self.name = name
        self.argv = argv
        self.log = os.path.join(ctx.workdir, f"{name}.log")
        with open(self.log, "ab") as out:
            out.write(("$ " + " ".join(argv) + "\n").encode())
            out.flush()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        ctx.processes.append(self)

    def alive(self):
        return self.proc.poll() is None

    def wait_path(self, path, timeout=15):
        """Wait until the process has created path (its socket)."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if not self.alive():
                raise Fail(f"{self.name} exited with {self.proc.returncode} before "
                           f"creating {path}:\n{tail(self.log)}")
            if time.monotonic() > deadline:
                raise Fail(f"{self.name} did not create {path} within {timeout} s:\n"
                           f"{tail(self.log)}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Signal the process and reap it; SIGKILL if it lingers.  Returns its
        exit status."""
        if self.alive():
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Qmp:
    """A minimal QMP client: one command at a time, events collected."""

    def __init__(self, path, transcript):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.transcript = open(transcript, "a")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise Fail("QMP connection closed by QEMU")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        self.transcript.write("<- " + line.decode() + "\n")
        self.transcript.flush()
        return json.loads(line)

    def cmd(self, execute, **arguments):
        """Run one command; return its "return" value or raise Fail with
        QEMU's error."""
        msg = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        line = json.dumps(msg)
        self.transcript.write("-> " + line + "\n")
        self.sock.sendall(line.encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise Fail(f"QMP {execute} failed: {reply['error'].get('desc')}")
            elif "return" in reply:
                return reply["return"]

    def wait_event(self, name, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail(f"QMP event {name} did not arrive within {timeout} s")
            self.sock.settimeout(left)
            try:
                self.events.append(self._read())
            except socket.timeout:
                pass
            finally:
                self.sock.settimeout(30)

    def close(self):
        self.sock.close()
        self.transcript.close()


def vfio_user_device(socket_path, dev_id, **props):
    """The -device / device_add description of one vfio-user-pci device."""
    return dict(driver="vfio-user-pci", id=dev_id,
                socket={"type": "unix", "path": socket_path}, **props)


class NetNs:
    """A network namespace of the case's own, holding a TAP the guest's
    network device is backed by and a TCP peer (netpeer.py) on it.  The
    addresses are from TEST-NET-1 and exist only inside this namespace."""
    HOST_IP = "192.0.2.1"
    GUEST_IP = "192.0.2.2"
    PORT = 5001

    def __init__(self, ctx, tap="vfutap0", queues=1, mtu=None, peer_addr=None):
        """mtu: the TAP's (default the kernel's, 1500); peer_addr: where
        netpeer listens (default HOST_IP; "0.0.0.0" serves every TAP)."""
        self.ctx = ctx
        self.name = f"vfu-vm-{os.getpid()}"
        self.tap = tap
        self.run(["ip", "netns", "add", self.name])
        ctx.netns.append(self)
        mq = ["multi_queue"] if queues > 1 else []
        self.exec(["ip", "tuntap", "add", "dev", tap, "mode", "tap", "vnet_hdr"] + mq)
        if mtu:
            self.exec(["ip", "link", "set", tap, "mtu", str(mtu)])
        self.address(tap, self.HOST_IP)
        self.exec(["ip", "link", "set", "lo", "up"])
        self.peer = ctx.spawn("netpeer", self.prefix() + [
            sys.executable, os.path.join(HERE, "netpeer.py"), peer_addr or self.HOST_IP, str(self.PORT)])

    def address(self, ifname, ip):
        """Give an interface of the namespace ip/24 and bring it up."""
        self.exec(["ip", "addr", "add", f"{ip}/24", "dev", ifname])
        self.exec(["ip", "link", "set", ifname, "up"])

    def mtu(self, ifname):
        return json.loads(self.exec(["ip", "-j", "link", "show", "dev", ifname]))[0]["mtu"]

    @staticmethod
    def run(argv):
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            if os.geteuid() != 0 or "Operation not permitted" in p.stdout:
                raise Skip(f"cannot set up a network namespace ({' '.join(argv)}: "
                           f"{p.stdout.strip()}); the network cases need root")
            raise Fail(f"{' '.join(argv)}: {p.stdout.strip()}")
        return p.stdout

    def prefix(self):
        return ["ip", "netns", "exec", self.name]

    def exec(self, argv):
        return self.run(self.prefix() + argv)

    def params(self):
        return {"HOST_IP": self.HOST_IP, "GUEST_IP": self.GUEST_IP, "PORT": self.PORT}

    def delete(self):
        subprocess.run(["ip", "netns", "delete", self.name], stderr=subprocess.DEVNULL)


class Vm:
    """One guest: QEMU with its serial console in workdir/<name>.serial.log."""

    def __init__(self, ctx, name, script, devices=(), params=None, reboot=False,
                 timeout=240, root_ports=0, qemu_args=(), netns=None):
        self.ctx = ctx
        self.name = name
        self.script = script
        self.devices = list(devices)
        self.params = params or {}
        self.reboot = reboot
        self.timeout = timeout
        self.root_ports = root_ports
        self.qemu_args = list(qemu_args)
        self.netns = netns
        self.serial = os.path.join(ctx.workdir, f"{name}.serial.log")
        self.qmp_path = os.path.join(ctx.rundir, f"{name}.qmp")
        self.process = None
        self.qmp = None
        self.started = None
        self.seen = 0

    def _initrd(self):
        """The provisioned initramfs plus an archive with this case's files."""
        out = os.path.join(self.ctx.rundir, f"{self.name}.initrd")
        case = io.BytesIO()
        w = cpio.Writer(case)
        w.directory("vfu")
        with open(os.path.join(HERE, "guest", "lib.sh"), "rb") as f:
            w.file("vfu/lib.sh", f.read())
        with open(os.path.join(HERE, "cases", self.script), "rb") as f:
            w.file("vfu/case.sh", f.read(), 0o755)
        # The guest dumps its stacks (guest/init) shortly before the hard timeout.
        params = dict(WATCHDOG=max(int(self.timeout * 0.8) - 15, 20), **self.params)
        params = "".join(f"{k}='{v}'\n" for k, v in sorted(params.items()))
        w.file("vfu/params", params.encode())
        w.finish()
        with open(self.ctx.env["INITRD"], "rb") as f:
            base = f.read()
        with open(out, "wb") as f:
            f.write(base)
            f.write(b"\0" * (-len(base) % 512))  # the kernel skips zero padding
            f.write(gzip.compress(case.getvalue(), 1))
        return out

    def argv(self):
        ctx = self.ctx
        a = (self.netns.prefix() if self.netns else []) + [
             ctx.env["QEMU"], "-name", self.name,
             "-machine", "q35,memory-backend=mem", "-accel", ctx.accel,
             "-cpu", "host" if ctx.accel == "kvm" else "max",
             "-smp", "2", "-m", GUEST_RAM,
             "-object", f"memory-backend-memfd,id=mem,size={GUEST_RAM},share=on",
             "-nodefaults", "-no-user-config", "-display", "none",
             "-serial", f"file:{self.serial}",
             "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
             "-kernel", ctx.env["KERNEL"], "-initrd", self._initrd(),
             "-append", KERNEL_ARGS]
        if not self.reboot:
            a.append("-no-reboot")
        for i in range(self.root_ports):
            a += ["-device", f"pcie-root-port,id=rp{i},chassis={i + 1},slot={i + 1}"]
        for dev in self.devices:
            a += ["-device", json.dumps(dev)]
        return a + self.qemu_args

    def start(self):
        if os.path.exists(self.serial):
            os.rename(self.serial, self.serial + f".{int(time.time() * 1000)}")
        self.started = time.monotonic()
        self.seen = 0
        self.process = self.ctx.spawn(f"{self.name}.qemu", self.argv())
        return self

    def output(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read().replace("\r", "")
        except OSError:
            return ""

    def wait_for(self, pattern, timeout=300):
        """Wait for a line matching pattern on the serial console, after the
        previous match; returns the match.  Fails early if the guest already reported its result."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            out = self.output()
            m = rx.search(out, self.seen)
            if m:
                self.seen = m.end()
                return m
            if RESULT_RE.search(out) or not self.process.alive():
                raise Fail(f"{self.name}: guest finished without printing /{pattern}/:\n"
                           + "\n".join(out.splitlines()[-30:]))
            if time.monotonic() > deadline:
                raise Fail(f"{self.name}: no /{pattern}/ within {timeout} s:\n"
                           + "\n".join(out.splitlines()[-30:]))
            time.sleep(0.1)

    def connect_qmp(self):
        if self.qmp is None:
            self.process.wait_path(self.qmp_path)
            self.qmp = Qmp(self.qmp_path, os.path.join(self.ctx.workdir, f"{self.name}.qmp.log"))
        return self.qmp

    def wait(self):
        """Wait for the guest to power off; require its PASS marker."""
        deadline = self.started + self.timeout
        while self.process.alive():
            if time.monotonic() > deadline:
                self.process.stop(signal.SIGKILL)
                raise Fail(f"{self.name}: guest still running after {self.timeout} s (hard "
                           f"timeout); last console lines:\n{tail(self.serial, 30)}")
            # A vCPU KVM cannot run pauses the guest instead of ending QEMU.
            if "KVM internal error" in tail(self.process.log, 200):
                self.process.stop(signal.SIGKILL)
                raise Fail(f"{self.name}: KVM stopped the guest: {tail(self.process.log, 12)}")
            time.sleep(0.2)
        if self.qmp:
            self.qmp.close()
            self.qmp = None
        elapsed = time.monotonic() - self.started
        self.ctx.timings.append(f"{self.name} {elapsed:.0f}s")
        out = self.output()
        results = RESULT_RE.findall(out)
        if not results:
            raise Fail(f"{self.name}: QEMU exited ({self.process.proc.returncode}) without a "
                       f"result marker; console:\n" + "\n".join(out.splitlines()[-30:])
                       + f"\nQEMU: {tail(self.process.log, 10)}")
        if results[-1] != "PASS":
            raise Fail(f"{self.name}: guest reported {results[-1]}; console:\n"
                       + "\n".join(out.splitlines()[-60:]))
        return out

    def run(self):
        self.start()
        return self.wait()


class Context:
    def __init__(self, case, workdir):
        self.case = case
        self.workdir = workdir
        # Sockets, disk images and initrds: short paths (sun_path has 108
        # bytes), removed at cleanup.
        self.rundir = tempfile.mkdtemp(prefix=f"vfu-vm-{case}-")
        self.processes = []
        self.cleanups = []
        self.netns = []
        self.env = {}
        self.accel = None
        self.timings = []

    # --- setup -------------------------------------------------------------
    def setup(self):
        t = time.monotonic()
        p = subprocess.run([os.path.join(HERE, "provision")], stdout=subprocess.PIPE,
                           text=True)
        if p.returncode == 77:
            raise Skip("provisioning could not reach the package archive (see above)")
        if p.returncode != 0:
            raise Fail(f"provisioning failed with exit code {p.returncode} (see above)")
        for line in p.stdout.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                self.env[k] = v
        self.timings.append(f"provision {time.monotonic() - t:.1f}s")
        self.accel = self._choose_accel()

    def _choose_accel(self):
        forced = os.environ.get("VFU_VM_ACCEL")
        if forced:
            return forced
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            return "tcg"
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
        key = f"{boot_id} {self.env['QEMU_VERSION']} {self.env['KVER']}"
        stamp = os.path.join(CACHE, "accel-probe")
        # Cases start in parallel: one probes, the others wait for its answer.
        with open(os.path.join(CACHE, ".accel-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(stamp) as f:
                    cached_key, accel = f.read().rsplit("\n", 1)
                if cached_key == key:
                    return accel
            except (OSError, ValueError):
                pass
            accel = self._probe_kvm()
            with open(stamp + ".tmp", "w") as f:
                f.write(f"{key}\n{accel}")
            os.replace(stamp + ".tmp", stamp)
            return accel

    def _probe_kvm(self):
        """Boot the guest once under KVM; some hosts' /dev/kvm cannot run an
        unmodified guest (e.g. "emulation failure" with kvm_pvm)."""
        self.accel = "kvm"
        vm = Vm(self, "kvm-probe", "boot.sh", timeout=60)
        try:
            vm.run()
            return "kvm"
        except Fail as e:
            why = [ln for ln in tail(vm.process.log, 200).splitlines()
                   if "error" in ln or "failure" in ln] or str(e).splitlines()[:1]
            print(f"run-case: KVM cannot run the guest here, using TCG "
                  f"(probe: {'; '.join(why)})", file=sys.stderr)
            return "tcg"

    # --- what cases use ----------------------------------------------------
    def program(self, var, name):
        """A built program, from the environment meson sets, or Skip."""
        path = os.environ.get(var)
        if path and os.access(path, os.X_OK):
            return path
        if not path:
            raise Skip(f"{name} is not part of this build ({var} unset: meson defines no "
                       f"target for it yet)")
        raise Skip(f"{name} is not built at {path}: run meson compile, then the vm suite again")

    def spawn(self, name, argv, env=None):
        return Process(self, name, argv, env)

    def vm(self, name, script, **kw):
        return Vm(self, name, script, **kw)

    def path(self, name):
        """A file for this case in its run directory."""
        return os.path.join(self.rundir, name)

    # --- teardown ----------------------------------------------------------
    def cleanup(self):
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # cleanup goes on whatever one step says
                print(f"run-case: cleanup: {e}", file=sys.stderr)
        for p in reversed(self.processes):
            p.stop(signal.SIGTERM, timeout=5)
        for ns in self.netns:
            ns.delete()
        shutil.rmtree(self.rundir, ignore_errors=True)

    def dump_logs(self):
        for name in sorted(os.listdir(self.workdir)):
            path = os.path.join(self.workdir, name)
            if not os.path.isfile(path) or not name.endswith(".log"):
                continue
            if name.endswith(".serial.log"):
                # The case's own lines first: kernel messages would bury them.
                lines = tail(path, 100000).splitlines()
                own = [ln for ln in lines if not ln.startswith("[")]
                print(f"--- {name} (case lines) ---\n" + "\n".join(own[-40:]), file=sys.stderr)
            print(f"--- {name} (last lines) ---\n{tail(path, 25)}", file=sys.stderr)

    def summary(self):
        return f"QEMU {self.env.get('QEMU_VERSION')}, {self.accel}; " + ", ".join(self.timings)
