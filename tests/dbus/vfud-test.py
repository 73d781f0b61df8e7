#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The dbus suite: the real vfud and vfud-worker on a private dbus-daemon.

Usage: vfud-test.py CASE [--trials N] [--seed N]
       (the cases are the test_* functions below; crash-trials takes the options)

Every case gets its own bus, state and runtime directories and vfud, and
ends every process it started.  Paths come from the environment meson sets:
VFUD, VFUD_WORKER, VFUCTL, VU_HOLD, NVME_IO, NET_IO, CRASH_WRITER, XML_DIR, BUS_CONF.  Exit
status 0 pass, 1 fail, 77 skip (with the reason on stdout).
"""

import fcntl
import glob
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

SKIP = 77
NAME = 'org.vfu.vfud1'
MPATH = '/org/vfu/vfud1'
MIFACE = 'org.vfu.vfud1.Manager'
DIFACE = 'org.vfu.vfud1.Device'
ERR = 'org.vfu.vfud1.Error.'
DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups']
MiB = 1 << 20
# Workers drop to an unprivileged user by default (vfu-worker, which the package creates); the cases
# name one every host has.  Without root they stay the caller.
WORKER_USER = 'User=nobody\n' if os.geteuid() == 0 else 'User=\n'


class Skip(Exception):
    pass


class Fail(Exception):
    pass


class DBusError(Exception):
    def __init__(self, name, message):
        super().__init__(f'{name}: {message}')
        self.name = name
        self.message = message


def check(cond, what):
    if not cond:
        raise Fail(what)


def env_path(key):
    value = os.environ.get(key)
    if not value:
        raise Skip(f'{key} is not set (run through meson test)')
    return value


def worker_types():
    out = subprocess.run([env_path('VFUD_WORKER'), '--types'], capture_output=True, text=True)
    return out.stdout.split()


def need_type(t):
    if t not in worker_types():
        raise Skip(f'vfud-worker has no {t} device type in this build')


def any_type():
    types = worker_types()
    if 'nvme' in types:
        return 'nvme'
    if 'virtio-net' in types and tap_usable():
        return 'virtio-net'
    raise Skip('vfud-worker has no usable device type in this build')


def tap_usable():
    return os.geteuid() == 0 and os.path.exists('/dev/net/tun')


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except FileNotFoundError:
        return False


def unpack_error(e):
    name = Gio.DBusError.get_remote_error(e) or 'unknown'
    Gio.DBusError.strip_remote_error(e)
    return DBusError(name, e.message)


class Env:
    """A private bus, a vfud and its directories."""

    def __init__(self, config=''):
        self.dir = tempfile.mkdtemp(prefix='vfud-test-')
        os.chmod(self.dir, 0o755)
        self.state = os.path.join(self.dir, 'state')
        self.runtime = os.path.join(self.dir, 'run')
        self.config = os.path.join(self.dir, 'vfud.conf')
        with open(self.config, 'w') as f:
            # libvirt stays out of the cases unless one turns it on (a [Libvirt] section appended later wins)
            f.write('[Manager]\nAdminGroup=\n[Libvirt]\nEnabled=no\n[Worker]\nRestartDelaySec=0.2\n' +
                    WORKER_USER + config)
        self.vfud = None
        self.wrap = []          # a prefix vfud runs under (e.g. ip netns exec NS)
        self.seen_pids = set()
        self.signals = []
        self.children = []
        self.log = open(os.path.join(self.dir, 'vfud.log'), 'a')
        with open(env_path('BUS_CONF')) as f:
            conf = f.read().replace('<keep_umask/>', f'<keep_umask/>\n  <listen>unix:path={self.dir}/bus</listen>')
        conf_path = os.path.join(self.dir, 'bus.conf')
        with open(conf_path, 'w') as f:
            f.write(conf)
        out = subprocess.run(['dbus-daemon', f'--config-file={conf_path}', '--fork', '--print-address=1',
                              '--print-pid=1'], capture_output=True, text=True, check=True)
        lines = out.stdout.split()
        self.addr, self.bus_pid = lines[0], int(lines[1])
        self.conn = Gio.DBusConnection.new_for_address_sync(
            self.addr, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
        self.conn.signal_subscribe(NAME, None, None, None, None, Gio.DBusSignalFlags.NONE, self._on_signal)
        self.notify_path = os.path.join(self.dir, 'notify')
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        self.notified = []      # sd_notify messages from vfud, in order

    def _on_signal(self, conn, sender, path, iface, member, params):
        self.signals.append((path, iface, member, params.unpack()))

    # ---- processes ----

    def start_vfud(self, **extra_env):
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path, G_MESSAGES_DEBUG='', **extra_env)
        with open(self.config) as f:
            if 'Executable=' not in f.read():
                env['VFUD_WORKER'] = env_path('VFUD_WORKER')
            else:
                env.pop('VFUD_WORKER', None)
        env.pop('VFUD_BUS', None)
        self.ready = False
        self.vfud = subprocess.Popen(self.wrap + [env_path('VFUD'), '--bus', self.addr, '--state-dir', self.state,
                                      '--runtime-dir', self.runtime, '--config', self.config],
                                     stdout=self.log, stderr=self.log, env=env)
        self.wait_for(lambda: self.name_owned(), 10, 'vfud to own org.vfu.vfud1')
        self.wait_for(lambda: self.got_ready(), 30, 'vfud to send READY=1')

    def got_ready(self):
        check(self.vfud.poll() is None, f'vfud exited with status {self.vfud.returncode}')
        try:
            while True:
                msg = self.notify.recv(4096)
                self.notified.append(msg.decode())
                if b'READY=1' in msg:
                    self.ready = True
        except BlockingIOError:
            pass
        return self.ready

    def name_owned(self):
        check(self.vfud.poll() is None, f'vfud exited with status {self.vfud.returncode}')
        r = self.conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                'NameHasOwner', GLib.Variant('(s)', (NAME,)), None, 0, 5000, None)
        return r.unpack()[0]

    def stop_vfud(self, sig=signal.SIGTERM):
        self.vfud.send_signal(sig)
        self.vfud.wait(timeout=20)
        self.wait_for(lambda: not self.name_owned_raw(), 10, 'the bus name to be released')

    def name_owned_raw(self):
        r = self.conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                'NameHasOwner', GLib.Variant('(s)', (NAME,)), None, 0, 5000, None)
        return r.unpack()[0]

    def worker_pidfiles(self):
        d = os.path.join(self.runtime, 'workers')
        pids = {}
        if os.path.isdir(d):
            for f in os.listdir(d):
                if f.endswith('.pid'):
                    try:
                        with open(os.path.join(d, f)) as fh:
                            pids[f[:-4]] = int(fh.read())
                    except (OSError, ValueError):
                        pass
        return pids

    def spawn_raw(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.children.append(p)
        return p

    def spawn(self, args, **kw):
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, **kw)
        self.children.append(p)
        return p

    def cleanup(self, failed):
        for p in self.children:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.vfud and self.vfud.poll() is None:
            self.vfud.kill()
            self.vfud.wait()
        pids = set(self.worker_pidfiles().values()) | self.seen_pids | set(self.worker_processes())
        for pid in pids:
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    ours = self.dir.encode() in f.read()
            except OSError:
                ours = False
            if ours:
                os.kill(pid, signal.SIGKILL)
        try:
            os.kill(self.bus_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.log.close()
        if failed:
            with open(os.path.join(self.dir, 'vfud.log')) as f:
                sys.stdout.write('---- vfud log ----\n' + f.read())
        subprocess.run(['rm', '-rf', self.dir])

    # ---- bus ----

    def pump(self, seconds=0.0):
        ctx = GLib.MainContext.default()
        end = time.monotonic() + seconds
        while True:
            while ctx.iteration(False):
                pass
            if time.monotonic() >= end:
                return
            time.sleep(0.02)

    def wait_for(self, cond, timeout, what):
        end = time.monotonic() + timeout
        while True:
            self.pump()
            if cond():
                return
            if time.monotonic() > end:
                raise Fail(f'timed out waiting for {what}')
            time.sleep(0.05)

    def call(self, path, iface, method, sig=None, args=None, timeout=60):
        try:
            r = self.conn.call_sync(NAME, path, iface, method, GLib.Variant(sig, args) if sig else None,
                                    None, Gio.DBusCallFlags.NONE, timeout * 1000, None)
        except GLib.Error as e:
            raise unpack_error(e)
        return r.unpack() if r else ()

    def mgr(self, method, sig=None, *args):
        return self.call(MPATH, MIFACE, method, sig, tuple(args))

    def path(self, name):
        return self.mgr('GetDevice', '(s)', name)[0]

    def dev(self, name, method, sig=None, *args):
        return self.call(self.path(name), DIFACE, method, sig, tuple(args))

    def prop(self, name, prop):
        v = self.call(self.path(name), 'org.freedesktop.DBus.Properties', 'Get', '(ss)', (DIFACE, prop))[0]
        if prop == 'WorkerPID' and v:
            self.seen_pids.add(v)
        return v

    def props(self, name):
        return self.call(self.path(name), 'org.freedesktop.DBus.Properties', 'GetAll', '(s)', (DIFACE,))[0]

    def error(self, fn, *args, **kw):
        try:
            fn(*args, **kw)
        except DBusError as e:
            return e
        raise Fail(f'{getattr(fn, "__name__", fn)}{args} succeeded, expected an error')

    def expect(self, errname, fn, *args, **kw):
        e = self.error(fn, *args, **kw)
        check(e.name == errname, f'{args}: expected {errname}, got {e.name}: {e.message}')
        return e.message

    def create(self, type_, name, vm='', **options):
        opts = {}
        for k, v in options.items():
            if isinstance(v, bool):
                opts[k] = GLib.Variant('b', v)
            elif isinstance(v, int):
                opts[k] = GLib.Variant('t', v)
            else:
                opts[k] = GLib.Variant('s', v)
        path = self.mgr('CreateDevice', '(sssa{sv})', type_, name, vm, opts)[0]
        return path

    def create_any(self, type_, name, vm='', **extra):
        if type_ == 'nvme':
            return self.create('nvme', name, vm, size=extra.pop('size', MiB), **extra)
        tap = extra.pop('tap', 'vt' + name[-8:] + str(os.getpid() % 1000))
        return self.create('virtio-net', name, vm, tap=tap[:15], **extra)

    def vfuctl(self, *args, user=None, bus=None):
        cmd = (user or []) + [env_path('VFUCTL'), '--bus', bus or self.addr] + list(args)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def members(self, member):
        return [s for s in self.signals if s[2] == member]

    def leftovers(self):
        """Files and processes a failed operation must not leave behind."""
        left = []
        for sub in ('devices', 'images'):
            d = os.path.join(self.state, sub)
            if os.path.isdir(d):
                left += [os.path.join(sub, f) for f in os.listdir(d)]
        if os.path.isdir(self.runtime):
            left += [f for f in os.listdir(self.runtime) if f.endswith('.sock')]
            wd = os.path.join(self.runtime, 'workers')
            if os.path.isdir(wd):
                left += [os.path.join('workers', f) for f in os.listdir(wd)]
        for pid in self.seen_pids:
            if pid_alive(pid):
                left.append(f'worker {pid}')
        left += [f'worker {p}' for p in self.worker_processes()]
        return left

    def worker_processes(self):
        found = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open(f'/proc/{pid}/cmdline', 'rb') as f:
                    cmd = f.read()
            except OSError:
                continue
            if b'vfud-worker' in cmd and self.dir.encode() in cmd and pid_alive(int(pid)):
                found.append(int(pid))
        return found


# ---------------------------------------------------------------------------
# cases

def test_introspect(env):
    """The live interfaces equal the XML in xml/ (the contract)."""
    env.start_vfud()
    t = any_type()
    env.create_any(t, 'intro')
    xml_dir = env_path('XML_DIR')

    def canon(elem):
        members = []
        for m in elem:
            args = tuple((a.tag, tuple(sorted(a.attrib.items()))) for a in m)
            members.append((m.tag, tuple(sorted(m.attrib.items())), args))
        return sorted(members)

    def live(path, iface):
        out = subprocess.run(['busctl', f'--address={env.addr}', 'introspect', '--xml-interface', NAME, path],
                             capture_output=True, text=True, check=True).stdout
        root = ET.fromstring(out.split('\n', 2)[2] if out.startswith('<!DOCTYPE') else out)
        found = [i for i in root.findall('interface') if i.get('name') == iface]
        check(found, f'{path} has no interface {iface}')
        return found[0], root

    for iface, path in ((MIFACE, MPATH), (DIFACE, env.path('intro')), ('org.vfu.vfud1.MigrationPeer', MPATH)):
        contract = ET.parse(os.path.join(xml_dir, f'{iface}.xml')).getroot().find('interface')
        got, root = live(path, iface)
        a, b = canon(contract), canon(got)
        if a != b:
            raise Fail(f'{iface} differs from xml/{iface}.xml:\n  only in the XML: {sorted(set(a) - set(b))}\n'
                       f'  only in vfud: {sorted(set(b) - set(a))}')
        if iface == MIFACE:
            names = [i.get('name') for i in root.findall('interface')]
            check('org.freedesktop.DBus.ObjectManager' in names, 'no ObjectManager on /org/vfu/vfud1')


def test_manager(env):
    """Every Manager method, its signals and its errors."""
    env.start_vfud()
    t = any_type()
    check(env.call(MPATH, 'org.freedesktop.DBus.Properties', 'Get', '(ss)', (MIFACE, 'StateDirectory'))[0]
          == env.state, 'StateDirectory')
    types = env.call(MPATH, 'org.freedesktop.DBus.Properties', 'Get', '(ss)', (MIFACE, 'DeviceTypes'))[0]
    check(sorted(types) == ['nvme', 'virtio-blk', 'virtio-net'], f'DeviceTypes {types}')

    path = env.create_any(t, 'm1', 'vmA')
    check(path == '/org/vfu/vfud1/device/m1', f'path {path}')
    env.wait_for(lambda: env.members('DeviceNew'), 5, 'DeviceNew')
    check(env.members('DeviceNew')[0][3] == ('m1', path), f'DeviceNew {env.members("DeviceNew")}')
    check(any(s[2] == 'InterfacesAdded' and s[3][0] == path for s in env.signals), 'InterfacesAdded')
    check(env.path('m1') == path, 'GetDevice')
    check(env.prop('m1', 'State') == 'listening', 'State after create')
    check(os.path.exists(env.prop('m1', 'SocketPath')), 'socket exists')

    # Idempotent: the same definition again is the same device, no new signal.
    n_new = len(env.members('DeviceNew'))
    pid = env.prop('m1', 'WorkerPID')
    check(env.create_any(t, 'm1', 'vmA') == path, 'identical CreateDevice returns the same path')
    env.pump(0.3)
    check(len(env.members('DeviceNew')) == n_new, 'no DeviceNew for an identical definition')
    check(env.prop('m1', 'WorkerPID') == pid, 'the worker is untouched')
    msg = env.expect(ERR + 'DeviceExists', env.create_any, t, 'm1', 'vmB')
    check('destroy it' in msg, f'DeviceExists message says what to do: {msg}')

    # Generated names.
    p0 = env.create_any(t, '', 'vmA', **({'tap': 'vtgen0x'} if t == 'virtio-net' else {}))
    p1 = env.create_any(t, '', 'vmA', **({'tap': 'vtgen1x'} if t == 'virtio-net' else {}))
    short = 'nvme' if t == 'nvme' else 'net'
    check(p0.endswith(f'vmA_2d{short}0') and p1.endswith(f'vmA_2d{short}1'), f'generated names {p0} {p1}')

    # Listing, filtered by VM.
    env.create_any(t, 'other', 'vmB')
    all_ = env.mgr('ListDevices', '(s)', '')[0]
    check([d[0] for d in all_] == ['m1', 'other', f'vmA-{short}0', f'vmA-{short}1'], f'ListDevices {all_}')
    check(all(d[3] == 'listening' for d in all_), 'all listening')
    only_b = env.mgr('ListDevices', '(s)', 'vmB')[0]
    check(only_b == [('other', t, 'vmB', 'listening', '/org/vfu/vfud1/device/other')], f'ListDevices vmB {only_b}')

    # Errors.
    env.expect(ERR + 'InvalidArgument', env.create, 'floppy', 'x')
    env.expect(ERR + 'InvalidArgument', env.create, t, 'x', '', bogus='1')
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'x', '', size='big')
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', '../x', '', size=MiB)
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'x', 'a/b', size=MiB)
    # integer options in any D-Bus width; beyond int64 or of another type they are refused by name
    if 'nvme' in worker_types():
        for sig in 'yqnuixt':
            opts = {'size': GLib.Variant('t', MiB), 'queues': GLib.Variant(sig, 4 if sig != 'u' else 3)}
            env.mgr('CreateDevice', '(sssa{sv})', 'nvme', f'w{sig}', '', opts)
            check(env.prop(f'w{sig}', 'Backend')['queues'] == (4 if sig != 'u' else 3), f'queues as {sig}')
            env.mgr('DestroyDevice', '(s)', f'w{sig}')
        msg = env.expect(ERR + 'InvalidArgument', env.mgr, 'CreateDevice', '(sssa{sv})', 'nvme', 'w', '',
                         {'size': GLib.Variant('t', 1 << 63)})
        check("option 'size' is out of range" in msg, msg)
        msg = env.expect(ERR + 'InvalidArgument', env.mgr, 'CreateDevice', '(sssa{sv})', 'nvme', 'w', '',
                         {'size': GLib.Variant('d', 1.5)})
        check("option 'size' has an unsupported D-Bus type" in msg, msg)
        for bad in ('two words', 'line\nbreak', 'h' * 256):
            msg = env.expect(ERR + 'InvalidArgument', env.mgr, 'CreateDevice', '(sssa{sv})', 'nvme', 'w', '',
                             {'size': GLib.Variant('t', MiB), 'migrated-from': GLib.Variant('s', bad)})
            check('migrated-from must be' in msg, msg)
        check('w' not in [d[0] for d in env.mgr('ListDevices', '(s)', '')[0]], 'nothing left by the refusals')
    for m in ('GetDevice', 'DestroyDevice', 'StartDevice', 'StopDevice'):
        msg = env.expect(ERR + 'NoSuchDevice', env.mgr, m, '(s)', 'nope')
        check('nope' in msg, f'{m} message names the device: {msg}')

    # Stop, start, stop again.
    sock = env.prop('m1', 'SocketPath')
    env.mgr('StopDevice', '(s)', 'm1')
    check(env.prop('m1', 'State') == 'idle' and env.prop('m1', 'WorkerPID') == 0, 'stopped')
    check(not os.path.exists(sock), 'socket removed when stopped')
    check(not pid_alive(pid), 'worker gone when stopped')
    env.mgr('StopDevice', '(s)', 'm1')
    env.mgr('StartDevice', '(s)', 'm1')
    check(env.prop('m1', 'State') == 'listening' and os.path.exists(sock), 'started again')
    env.mgr('StartDevice', '(s)', 'm1')

    # Destroy.
    pid = env.prop('m1', 'WorkerPID')
    env.mgr('DestroyDevice', '(s)', 'm1')
    env.wait_for(lambda: env.members('DeviceRemoved'), 5, 'DeviceRemoved')
    check(env.members('DeviceRemoved')[-1][3] == ('m1', path), 'DeviceRemoved args')
    check(any(s[2] == 'InterfacesRemoved' and s[3][0] == path for s in env.signals), 'InterfacesRemoved')
    env.expect(ERR + 'NoSuchDevice', env.path, 'm1')
    check(not os.path.exists(os.path.join(env.state, 'devices', 'm1.json')), 'definition removed')
    check(not os.path.exists(os.path.join(env.state, 'images', 'm1-ns1.img')), 'image removed')
    check(not pid_alive(pid), 'worker gone')


def test_device(env):
    """Device object methods, properties, PropertiesChanged, namespaces."""
    need_type('nvme')
    env.start_vfud()
    env.create('nvme', 'd1', 'vm1', size=2 * MiB, queues=2, serial='SN-d1')
    p = env.props('d1')
    check(p['Name'] == 'd1' and p['Type'] == 'nvme' and p['Vm'] == 'vm1', f'identity {p}')
    check(p['SocketPath'] == os.path.join(env.runtime, 'd1.sock'), 'SocketPath')
    check(p['State'] == 'listening' and p['Connected'] is False and p['WorkerPID'] > 0, f'state {p}')
    check(p['Restarts'] == 0 and p['LastError'] == '', 'no restarts')
    ns = p['Backend']['namespaces']
    img = os.path.join(env.state, 'images', 'd1-ns1.img')
    check(ns == [{'nsid': 1, 'path': img, 'size': 2 * MiB, 'kind': 'image'}], f'Backend {ns}')
    check(p['Backend']['queues'] == 2 and p['Backend']['serial'] == 'SN-d1', 'Backend options')
    # Several I/O threads and the polling window: persisted, and the worker runs that many I/O threads.
    env.create('nvme', 'd3', 'vm1', size=MiB, queues=4, iothreads=3, **{'poll-us': 0})
    b3 = env.prop('d3', 'Backend')
    check(b3['iothreads'] == 3 and b3['poll-us'] == 0, f'iothreads, poll-us {b3}')
    wpid = env.prop('d3', 'WorkerPID')
    names = []
    for tid in os.listdir(f'/proc/{wpid}/task'):
        with open(f'/proc/{wpid}/task/{tid}/comm') as f:
            names.append(f.read().strip())
    check(sorted(n for n in names if n.startswith('nvme-io')) == ['nvme-io0:d3', 'nvme-io1:d3', 'nvme-io2:d3'],
          f'worker threads {names}')
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'd4', '', size=MiB, iothreads=17)
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'd4', '', size=MiB, iothreads=0)
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'd4', '', size=MiB, **{'poll-us': 10001})
    env.mgr('DestroyDevice', '(s)', 'd3')
    # MSI instead of MSI-X: persisted, and the worker builds that controller.
    env.create('nvme', 'd5', '', size=MiB, msi=True)
    check(env.prop('d5', 'Backend').get('msi') is True and env.prop('d5', 'State') == 'listening',
          f'msi {env.prop("d5", "Backend")} {env.prop("d5", "State")}')
    env.mgr('DestroyDevice', '(s)', 'd5')
    env.create('nvme', 'd5', '', size=MiB, msi=False)
    check('msi' not in env.prop('d5', 'Backend'), f'msi=false is the default {env.prop("d5", "Backend")}')
    env.mgr('DestroyDevice', '(s)', 'd5')
    # Made for hot plug: MSI chosen (QEMU before 11.2 cannot unplug MSI-X), unless msi=false says otherwise.
    rc, out, err = env.vfuctl('create', 'nvme', '--size', '1M', '--name', 'd6', '--hotplug', '--json')
    check(rc == 0 and json.loads(out)['backend'].get('msi') is True and json.loads(out)['backend'].get('hotplug'),
          f'--hotplug: {rc} {out} {err}')
    env.mgr('DestroyDevice', '(s)', 'd6')
    env.create('nvme', 'd6', '', size=MiB, hotplug=True, msi=False)
    check('msi' not in env.prop('d6', 'Backend') and env.prop('d6', 'Backend')['hotplug'] is True,
          f'hotplug with msi=false keeps MSI-X {env.prop("d6", "Backend")}')
    env.mgr('DestroyDevice', '(s)', 'd6')
    check(os.stat(img).st_size == 2 * MiB and os.stat(img).st_blocks == 0, 'sparse image')
    check('vfio_user.messages' in p['Statistics'], f'Statistics {p["Statistics"]}')

    # PropertiesChanged on Stop/Start through the device object.
    path = env.path('d1')
    env.signals.clear()
    env.dev('d1', 'Stop')
    env.wait_for(lambda: any(s[2] == 'PropertiesChanged' and s[0] == path and
                             s[3][1].get('State') == 'idle' for s in env.signals), 5, 'State idle signal')
    env.dev('d1', 'Start')
    env.wait_for(lambda: any(s[2] == 'PropertiesChanged' and s[3][1].get('State') == 'listening'
                             for s in env.signals), 5, 'State listening signal')
    # Statistics are polled while a client is connected, and emitted only when they change.
    idle = env.spawn([env_path('VU_HOLD'), env.prop('d1', 'SocketPath'), '--idle'])
    check(idle.stdout.readline().startswith('connected'), 'idle client connected')
    env.wait_for(lambda: env.prop('d1', 'Connected'), 5, 'Connected')
    env.pump(1.5)
    env.signals.clear()
    env.pump(2.5)
    check(not any(s[2] == 'PropertiesChanged' and 'Statistics' in s[3][1] for s in env.signals),
          f'Statistics emitted without a change: {env.signals}')
    hold_finish(idle)
    env.wait_for(lambda: not env.prop('d1', 'Connected'), 5, 'Connected=false')

    # Namespaces.
    def nss():
        return {n['nsid']: n for n in env.prop('d1', 'Backend')['namespaces']}

    env.dev('d1', 'AddNamespace', '(ust)', 2, '', 4 * MiB)
    check(nss()[2]['size'] == 4 * MiB and nss()[2]['kind'] == 'image', f'ns2 {nss()}')
    with open(os.path.join(env.state, 'devices', 'd1.json')) as f:
        persisted = json.load(f)
    check([n['nsid'] for n in persisted['options']['namespaces']] == [1, 2], f'persisted {persisted}')
    msg = env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'AddNamespace', '(ust)', 2, '', MiB)
    check('already exists' in msg, msg)
    env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'AddNamespace', '(ust)', 0, '', MiB)
    env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'AddNamespace', '(ust)', 3, '', 0)
    env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'AddNamespace', '(ust)', 3, '', 1000)
    env.expect(ERR + 'BackendFailed', env.dev, 'd1', 'AddNamespace', '(ust)', 3, '/nonexistent/file', 0)
    backing = os.path.join(env.dir, 'ns3.img')
    with open(backing, 'wb') as f:
        f.truncate(3 * MiB)
    env.dev('d1', 'AddNamespace', '(ust)', 3, backing, 0)
    check(nss()[3] == {'nsid': 3, 'path': backing, 'size': 3 * MiB, 'kind': 'file'}, f'ns3 {nss()}')
    env.dev('d1', 'ResizeNamespace', '(ut)', 2, 8 * MiB)
    check(nss()[2]['size'] == 8 * MiB, 'resized')
    check(os.stat(os.path.join(env.state, 'images', 'd1-ns2.img')).st_size == 8 * MiB, 'image grown')
    msg = env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'ResizeNamespace', '(ut)', 2, 4 * MiB)
    check('shrink' in msg, msg)
    msg = env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'ResizeNamespace', '(ut)', 3, 16 * MiB)
    check('grow it first' in msg, msg)
    env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'ResizeNamespace', '(ut)', 9, 16 * MiB)
    env.dev('d1', 'RemoveNamespace', '(u)', 2)
    check(2 not in nss() and not os.path.exists(os.path.join(env.state, 'images', 'd1-ns2.img')), 'ns2 removed')
    env.dev('d1', 'RemoveNamespace', '(u)', 3)
    check(os.path.exists(backing), 'a caller-provided backing file is kept')
    env.expect(ERR + 'InvalidArgument', env.dev, 'd1', 'RemoveNamespace', '(u)', 3)
    msg = env.expect(ERR + 'NotSupported', env.dev, 'd1', 'SetLink', '(b)', True)
    check('nvme' in msg, msg)

    # Changes to a stopped device go to its definition and apply at the next start.
    env.dev('d1', 'Stop')
    env.dev('d1', 'AddNamespace', '(ust)', 4, '', MiB)
    env.dev('d1', 'Start')
    check(4 in nss() and env.prop('d1', 'State') == 'listening', 'namespace added while stopped')

    # A 4 KiB logical block size reaches the controller the guest sees.
    env.create('nvme', 'd4k', '', size=4 * MiB, **{'block-size': 4096})
    check(env.prop('d4k', 'Backend')['namespaces'][0]['block-size'] == 4096, 'block-size in the definition')
    io = os.environ.get('NVME_IO')
    if io:
        c = env.spawn([io, env.prop('d4k', 'SocketPath')])
        line = c.stdout.readline()
        check(line.strip() == 'ready lba 4096', f'the guest sees 4096-byte blocks: {line!r}')
        hold_finish(c)
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'dbs', '', size=MiB, **{'block-size': 1000})
    env.dev('d4k', 'Destroy')

    env.dev('d1', 'Destroy')
    env.expect(ERR + 'NoSuchDevice', env.path, 'd1')
    check(env.leftovers() == [], f'leftovers after Destroy: {env.leftovers()}')


def test_null(env):
    """A null NVMe namespace: created from vfuctl, marked as storing no data, persisted, I/O through it."""
    need_type('nvme')
    env.start_vfud()
    rc, out, err = env.vfuctl('create', 'nvme', '--null', '1T', '--name', 'n1', '--json')
    check(rc == 0, f'create --null: {rc} {err}')
    ns = json.loads(out)['backend']['namespaces']
    check(ns == [{'nsid': 1, 'size': 1 << 40, 'kind': 'null', 'stores_data': False}], f'null namespace {ns}')
    check(json.loads(out)['state'] == 'listening', 'a null device starts')
    rc, out, err = env.vfuctl('show', 'n1')
    check(rc == 0 and 'Warning: namespace 1 is a null backend: it STORES NO DATA' in out, f'show {out}')
    imgs = os.path.join(env.state, 'images')
    check(not os.path.isdir(imgs) or not os.listdir(imgs), 'no image for a null namespace')

    # I/O: writes complete, reads return zeroes whatever was written.
    io = os.environ.get('NVME_IO')
    if io:
        c = env.spawn([io, '--null', env.prop('n1', 'SocketPath')])
        line = c.stdout.readline()
        check(line.strip() == 'ready lba 512', f'nvme-io --null: {line!r}')
        hold_progress(env, c, 2)
        env.wait_for(lambda: env.prop('n1', 'Statistics').get('write_commands', 0) > 0, 10, 'writes counted')
        check(hold_finish(c) > 0, 'I/O through the null namespace')

    # A pattern, and what is refused.
    env.create('nvme', 'n2', '', null=MiB, **{'null-pattern': 0xa5})
    check(env.prop('n2', 'Backend')['namespaces'][0]['pattern'] == 0xa5, 'pattern in the definition')
    for opts in ({'null': MiB, 'size': MiB}, {'null': MiB, 'file': '/dev/null'}, {'null': 1000},
                 {'null': 0}, {'null': MiB, 'null-pattern': 256}, {'null-pattern': 1, 'size': MiB}):
        env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'bad', '', **opts)
    rc, out, err = env.vfuctl('create', 'virtio-net', '--null', '64', '--tap', 'x')
    check(rc == 2 and 'null=' in err, f'--null and --tap on virtio-net: {rc} {err}')

    # The definition survives a restart of vfud, and the worker opens it again.
    env.vfud.kill()
    env.vfud.wait()
    env.start_vfud()
    check(env.prop('n1', 'State') == 'listening', 'null device restarted')
    check(env.prop('n1', 'Backend')['namespaces'][0]['kind'] == 'null', 'persisted')
    env.dev('n1', 'ResizeNamespace', '(ut)', 1, 2 << 40)
    check(env.prop('n1', 'Backend')['namespaces'][0]['size'] == 2 << 40, 'a null namespace grows')
    env.dev('n1', 'Destroy')
    env.dev('n2', 'Destroy')
    check(env.leftovers() == [], f'leftovers {env.leftovers()}')


def test_limits(env):
    """I/O limits: set at create (vfuctl), kept in the definition and shown in Limits, show and --json;
    changed at run time (SetLimits, vfuctl limit) while verified I/O runs, which the worker then holds back
    (limit hits counted) without an error; refused when they make no sense; kept across a restart of vfud."""
    need_type('nvme')
    env.start_vfud()
    t = lambda v: GLib.Variant('t', v)
    rc, out, err = env.vfuctl('create', 'nvme', '--null', '1G', '--name', 'q1', '--iops-total', '5000',
                              '--group-bytes-read', '1000000', '--json')
    check(rc == 0, f'create with limits: {rc} {err}')
    check(json.loads(out)['limits'] == {'ns1': {'iops_total': 5000}, 'group': {'bytes_read': 1000000}},
          f'--json limits {out}')
    check(env.prop('q1', 'Limits') == {'ns1': {'iops-total': 5000}, 'group': {'bytes-read': 1000000}},
          f'Limits {env.prop("q1", "Limits")}')
    b = env.prop('q1', 'Backend')
    check(b['namespaces'][0]['limits'] == {'iops-total': 5000} and b['group-limits'] == {'bytes-read': 1000000},
          f'definition {b}')

    # At run time, under verified I/O: held back (hits counted), never failed; then lifted.
    io = os.environ.get('NVME_IO')
    c = env.spawn([io, '--null', env.prop('q1', 'SocketPath')]) if io else None
    if c:
        check(c.stdout.readline().strip() == 'ready lba 512', 'nvme-io ready')
    env.dev('q1', 'SetLimits', '(ua{sv})', 0, {'iops-total': t(300), 'iops-total-max': t(600),
                                               'iops-total-max-length': t(2)})
    check(env.prop('q1', 'Limits')['ns1'] == {'iops-total': 300, 'iops-total-max': 600, 'iops-total-max-length': 2},
          f'SetLimits {env.prop("q1", "Limits")}')
    if c:
        hold_progress(env, c, 2)
        env.wait_for(lambda: env.prop('q1', 'Statistics').get('limit_hits.ns1', 0) > 0, 20, 'limit hits counted')
    rc, out, err = env.vfuctl('limit', 'q1', '--iops-total', '0', '--iops-total-max', '0',
                              '--iops-total-max-length', '0', '--group-bytes-read', '0')
    check(rc == 0 and 'Limits: none' in out, f'vfuctl limit removing them: {rc} {out} {err}')
    check(env.prop('q1', 'Limits') == {}, f'no limits left {env.prop("q1", "Limits")}')
    check('limits' not in env.prop('q1', 'Backend')['namespaces'][0], 'the definition without them')
    if c:
        hold_progress(env, c, 2)
        check(hold_finish(c) > 0, 'I/O went on through the changes')

    # What is refused: a total with a read limit of the same unit, a burst below its average, a namespace
    # that does not exist, another type's limits, a limit of a type without any.
    rc, out, err = env.vfuctl('limit', 'q1', '--bytes-write', '4096', '--namespace', '1')
    check(rc == 0 and 'ns1: bytes-write=4096' in out, f'vfuctl limit --namespace: {rc} {out} {err}')
    for opts in ({'bytes-total': t(100)}, {'bytes-write-max': t(10)}, {'bytes-read-max-length': t(3)}):
        env.expect(ERR + 'InvalidArgument', env.dev, 'q1', 'SetLimits', '(ua{sv})', 0, opts)
    env.expect(ERR + 'InvalidArgument', env.dev, 'q1', 'SetLimits', '(ua{sv})', 7, {'iops-read': t(10)})
    env.expect(ERR + 'InvalidArgument', env.dev, 'q1', 'SetLimits', '(ua{sv})', 0, {'tx-average': t(10)})
    env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'bad', '', null=MiB, **{'iops-total': 10, 'iops-read': 5})
    rc, out, err = env.vfuctl('create', 'nvme', '--null', '1M', '--tx-pps', '10')
    check(rc == 2 and 'virtio-net' in err, f'--tx-pps on nvme: {rc} {err}')
    rc, out, err = env.vfuctl('list', '--iops-total', '10')
    check(rc == 2, f'a limit option on list: {rc} {err}')
    check(env.prop('q1', 'Limits') == {'ns1': {'bytes-write': 4096}}, f'refusals changed nothing {env.prop("q1", "Limits")}')

    # A namespace of its own, and virtio-net's limits.
    env.dev('q1', 'AddNamespace', '(ust)', 2, '', MiB)
    env.dev('q1', 'SetLimits', '(ua{sv})', 2, {'iops-write': t(100), 'size-iops': t(8192)})
    check(env.prop('q1', 'Limits')['ns2'] == {'iops-write': 100, 'size-iops': 8192}, 'namespace 2 limits')
    if 'virtio-net' in worker_types():
        rc, out, err = env.vfuctl('create', 'virtio-net', '--null', '0', '--name', 'qn', '--tx-average', '1000',
                                  '--tx-peak', '2000', '--tx-burst', '500', '--rx-pps', '1000')
        check(rc == 0, f'virtio-net with limits: {rc} {err}')
        check(env.prop('qn', 'Limits') == {'device': {'tx-average': 1000, 'tx-peak': 2000, 'tx-burst': 500,
                                                      'rx-pps': 1000}}, f'net Limits {env.prop("qn", "Limits")}')
        env.dev('qn', 'SetLimits', '(ua{sv})', 0, {'rx-average': t(100), 'tx-peak': t(0)})
        check(env.prop('qn', 'Limits')['device'] == {'tx-average': 1000, 'tx-burst': 500, 'rx-pps': 1000,
                                                     'rx-average': 100}, 'net SetLimits')
        env.expect(ERR + 'InvalidArgument', env.dev, 'qn', 'SetLimits', '(ua{sv})', 0, {'tx-peak': t(10)})
        env.expect(ERR + 'InvalidArgument', env.dev, 'qn', 'SetLimits', '(ua{sv})', 1, {'rx-pps': t(10)})
        env.wait_for(lambda: 'limit_hits.tx' in env.prop('qn', 'Statistics'), 20, 'net limit hits reported')

    # Kept across a restart of vfud, and the worker started again takes them.
    env.vfud.kill()
    env.vfud.wait()
    env.start_vfud()
    check(env.prop('q1', 'Limits') == {'ns1': {'bytes-write': 4096}, 'ns2': {'iops-write': 100, 'size-iops': 8192}},
          f'persisted {env.prop("q1", "Limits")}')
    env.dev('q1', 'Stop')
    env.dev('q1', 'SetLimits', '(ua{sv})', 0, {'bytes-write': t(8192)})
    env.dev('q1', 'Start')
    check(env.prop('q1', 'State') == 'listening' and env.prop('q1', 'Limits')['ns1'] == {'bytes-write': 8192},
          'changed while stopped, taken at the start')
    rc, out, err = env.vfuctl('show', 'q1')
    check(rc == 0 and 'ns1: bytes-write=8192' in out, f'show {out}')
    for n in ('q1', 'qn'):
        if env.name_owned() and n in [d[0] for d in env.mgr('ListDevices', '(s)', '')[0]]:
            env.dev(n, 'Destroy')
    check(env.leftovers() == [], f'leftovers {env.leftovers()}')


class NbdServer:
    """qemu-nbd serving a raw file on a UNIX socket in the test's directory; killed and started again at will."""

    def __init__(self, env, size=16 * MiB, name='nbd'):
        if not os.environ.get('HAVE_NBD'):
            raise Skip('built without libnbd (meson option nbd)')
        if not shutil.which('qemu-nbd'):
            raise Skip('qemu-nbd is missing (./scripts/deps installs qemu-utils)')
        self.env = env
        self.image = os.path.join(env.dir, name + '.raw')
        self.sock = os.path.join(env.dir, name + '.sock')
        self.uri = f'nbd+unix:///?socket={self.sock}'
        with open(self.image, 'wb') as f:
            f.truncate(size)
        self.proc = None
        self.start()

    def listening(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def start(self):
        self.proc = subprocess.Popen(['qemu-nbd', '-k', self.sock, '-f', 'raw', '-t', '-e', '4', self.image],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.env.wait_for(self.listening, 30, 'qemu-nbd to listen')
        # reconnecting happens as the worker's user (nobody here, vfu-worker installed)
        os.chmod(self.sock, 0o777)

    def kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        if os.path.exists(self.sock):
            os.unlink(self.sock)


def test_nbd(env):
    """An NVMe namespace on an NBD export: verified I/O, a server restart under it, what show says meanwhile."""
    need_type('nvme')
    env.start_vfud()
    srv = NbdServer(env)
    srv2 = NbdServer(env, name='nbd2')
    try:
        env.create('nvme', 'nb1', '', nbd=srv.uri)
        check(env.prop('nb1', 'State') == 'listening', 'an NBD device starts')
        ns = env.prop('nb1', 'Backend')['namespaces']
        check(ns == [{'nsid': 1, 'kind': 'nbd', 'uri': srv.uri}], f'NBD namespace {ns}')
        check(env.prop('nb1', 'Waiting') == '', 'waiting for nothing')
        imgs = os.path.join(env.state, 'images')
        check(not os.path.isdir(imgs) or not os.listdir(imgs), 'no image for an NBD namespace')

        # through vfuctl, and what is refused
        rc, out, err = env.vfuctl('create', 'nvme', '--name', 'nb2', '--nbd', srv2.uri, '--size', '8M', '--json')
        check(rc == 0, f'vfuctl create --nbd: {rc} {err}')
        check(env.prop('nb2', 'Backend')['namespaces'][0]['size'] == 8 * MiB, 'size= within the export')
        env.dev('nb2', 'Destroy')
        # one writer per export, across device types
        msg = env.expect(ERR + 'BackendFailed', env.create, 'virtio-blk', 'dup', '', nbd=srv.uri)
        check('nb1' in msg, f'an export in use: {msg}')
        for opts in ({'nbd': 'http://x/y'}, {'nbd': srv.uri, 'file': '/dev/null'}, {'nbd': srv.uri, 'null': MiB},
                     {'nbd': 'nbds://localhost/x'}):
            env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'bad', '', **opts)
        rc, out, err = env.vfuctl('create', 'virtio-net', '--nbd', srv.uri)
        check(rc == 2 and '--nbd' in err, f'--nbd on virtio-net: {rc} {err}')
        if 'virtio-blk' in worker_types():
            # virtio-blk shares the backend: a disk on the same export
            rc, out, err = env.vfuctl('create', 'virtio-blk', '--name', 'nbv', '--nbd', srv2.uri, '--json')
            check(rc == 0, f'vfuctl create virtio-blk --nbd: {rc} {err}')
            check(env.prop('nbv', 'Backend')['namespaces'] == [{'nsid': 1, 'kind': 'nbd', 'uri': srv2.uri}],
                  f'virtio-blk on NBD {env.prop("nbv", "Backend")}')
            env.wait_for(lambda: env.prop('nbv', 'Statistics').get('size') == 16 * MiB, 10, 'the disk has the export\'s size')
            env.dev('nbv', 'Destroy')
        gone = f'nbd+unix:///?socket={env.dir}/none.sock'
        msg = env.error(env.create, 'nvme', 'bad', '', nbd=gone).message
        check('none.sock' in msg, f'an unreachable server: {msg}')

        io = os.environ.get('NVME_IO')
        if io:
            c = env.spawn([io, env.prop('nb1', 'SocketPath')])
            check(c.stdout.readline().startswith('ready'), 'the client is ready')
            hold_progress(env, c, 2)
            # the server restarts under I/O: the device waits for it (well within its 10 s) and goes on
            srv.kill()
            srv.start()
            hold_progress(env, c, 2)
            check(hold_finish(c) > 0, 'verified I/O across the server restart')
            env.wait_for(lambda: env.prop('nb1', 'Waiting') == '', 15, 'Waiting to clear')
            # the server away under I/O for as long as a loaded machine takes to look (its
            # commands may fail after the device's 10 s: this client's result is not checked):
            # the device says what it waits for
            c = env.spawn([io, env.prop('nb1', 'SocketPath')])
            check(c.stdout.readline().startswith('ready'), 'the client is ready')
            srv.kill()
            env.wait_for(lambda: srv.uri in env.prop('nb1', 'Waiting'), 15, 'Waiting to name the lost server')
            rc, out, err = env.vfuctl('show', 'nb1')
            check(rc == 0 and 'Waiting: namespace 1: ' in out and srv.uri in out, f'show while waiting: {out}')
            rc, out, err = env.vfuctl('show', 'nb1', '--json')
            check(rc == 0 and srv.uri in json.loads(out)['waiting'], f'show --json while waiting: {out}')
            srv.start()
            env.wait_for(lambda: env.prop('nb1', 'Waiting') == '', 15, 'Waiting to clear')
            c.kill()
            c.wait()
        env.dev('nb1', 'Destroy')
        check(os.path.getsize(srv.image) == 16 * MiB, 'the export is the server\'s: destroying keeps it')
        check(env.leftovers() == [], f'leftovers {env.leftovers()}')
    finally:
        srv.kill()
        srv2.kill()


def test_migrate_nbd(env):
    """An NBD namespace moves with storage=shared without a copy: the destination reaches the same export."""
    need_type('nvme')

    def run(env, dst):
        srv = NbdServer(env)
        try:
            env.create('nvme', 'mn1', '', nbd=srv.uri)
            env.mgr('StopDevice', '(s)', 'mn1')
            msg = env.expect(ERR + 'NotMigratable', env.mgr, 'MigrateDevice', '(ssa{sv})', 'mn1', dst.addr,
                             copy_opts())
            check('storage=shared' in msg and srv.uri in msg, msg)
            env.mgr('MigrateDevice', '(ssa{sv})', 'mn1', dst.addr, copy_opts('shared'))
            check(dst.prop('mn1', 'State') == 'listening', 'created on the destination')
            ns = dst.prop('mn1', 'Backend')['namespaces']
            check(ns == [{'nsid': 1, 'kind': 'nbd', 'uri': srv.uri}], f'the same export there: {ns}')
            check(env.mgr('ListDevices', '(s)', '')[0] == [], 'gone from the source')
            dst.dev('mn1', 'Destroy')
        finally:
            srv.kill()

    migrate_case(env, run)


class CephCluster:
    """A single-node Ceph cluster (tests/common/ceph-cluster) with a pool 'vfu', in the test's directory."""

    def __init__(self, env):
        script = os.environ.get('CEPH_CLUSTER')
        if not script:
            raise Skip('built without librbd (meson option rbd)')
        if not shutil.which('ceph-mon') or not shutil.which('ceph-osd'):
            raise Skip('ceph-mon or ceph-osd is missing (./scripts/deps installs them)')
        self.script = script
        self.dir = os.path.join(env.dir, 'ceph')
        p = subprocess.run([script, 'start', self.dir, 'vfu'], capture_output=True, text=True, timeout=150)
        check(p.returncode == 0, f'ceph-cluster start: {p.returncode} {p.stderr}')
        self.conf = p.stdout.strip()

    def stop(self):
        subprocess.run([self.script, 'stop', self.dir], timeout=60)


def test_rbd(env):
    """An NVMe namespace on a Ceph RBD image: created with size=, verified I/O, kept by the cluster; refusals."""
    need_type('nvme')
    ceph = CephCluster(env)
    try:
        env.start_vfud()
        env.create('nvme', 'rb1', '', rbd='vfu/disk1', size=16 * MiB, **{'rbd-conf': ceph.conf})
        check(env.prop('rb1', 'State') == 'listening', 'an RBD device starts')
        ns = env.prop('rb1', 'Backend')['namespaces']
        check(ns == [{'nsid': 1, 'kind': 'rbd', 'pool': 'vfu', 'image': 'disk1', 'conf': ceph.conf,
                      'size': 16 * MiB}], f'RBD namespace {ns}')
        imgs = os.path.join(env.state, 'images')
        check(not os.path.isdir(imgs) or not os.listdir(imgs), 'no image file for an RBD namespace')

        io = os.environ.get('NVME_IO')
        if io:
            c = env.spawn([io, env.prop('rb1', 'SocketPath')])
            check(c.stdout.readline().startswith('ready'), 'the client is ready')
            hold_progress(env, c, 2)
            check(env.prop('rb1', 'Waiting') == '', 'waiting for nothing')
            # the OSD stops answering under I/O: the device says what its requests wait for
            with open(os.path.join(ceph.dir, 'run', 'osd.0.pid')) as f:
                osd = int(f.read())
            os.kill(osd, signal.SIGSTOP)
            try:
                env.wait_for(lambda: 'rbd:vfu/disk1' in env.prop('rb1', 'Waiting'), 15,
                             'Waiting to name the image')
                rc, out, err = env.vfuctl('show', 'rb1')
                check(rc == 0 and 'Waiting: namespace 1: ' in out and 'rbd:vfu/disk1' in out, f'show while waiting: {out}')
            finally:
                os.kill(osd, signal.SIGCONT)
            hold_progress(env, c, 2)
            env.wait_for(lambda: env.prop('rb1', 'Waiting') == '', 15, 'Waiting to clear')
            check(hold_finish(c) > 0, 'verified I/O on the RBD image')
        env.dev('rb1', 'Destroy')

        # the image stays in the cluster: a new device opens it at its size, through vfuctl
        rc, out, err = env.vfuctl('create', 'nvme', '--name', 'rb2', '--rbd', 'vfu/disk1', '--rbd-conf', ceph.conf,
                                  '--json')
        check(rc == 0, f'vfuctl create --rbd: {rc} {err}')
        rc, out, err = env.vfuctl('show', 'rb2', '--json')
        check(rc == 0 and json.loads(out)['backend']['namespaces'][0]['image'] == 'disk1', f'show {out}')
        msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'dup', '', rbd='vfu/disk1',
                         **{'rbd-conf': ceph.conf})
        check('rb2' in msg, f'an image in use: {msg}')
        env.dev('rb2', 'Destroy')

        for opts in ({'rbd': 'nopool'}, {'rbd': 'a/b/c/d'}, {'rbd': 'vfu/x', 'file': '/dev/null'},
                     {'rbd': 'vfu/x', 'nbd': 'nbd://localhost/x'}, {'rbd-conf': ceph.conf, 'size': MiB},
                     {'rbd': 'vfu/x', 'rbd-conf': 'relative.conf'}):
            env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'bad', '', **opts)
        rc, out, err = env.vfuctl('create', 'virtio-net', '--rbd', 'vfu/x')
        check(rc == 2 and '--rbd' in err, f'--rbd on virtio-net: {rc} {err}')
        if 'virtio-blk' in worker_types():
            # virtio-blk shares the backend: a disk on a new image of its own
            rc, out, err = env.vfuctl('create', 'virtio-blk', '--name', 'rbv', '--rbd', 'vfu/vdisk', '--size', '8M',
                                      '--rbd-conf', ceph.conf, '--json')
            check(rc == 0, f'vfuctl create virtio-blk --rbd: {rc} {err}')
            check(env.prop('rbv', 'Backend')['namespaces'][0]['image'] == 'vdisk', 'virtio-blk on RBD')
            env.wait_for(lambda: env.prop('rbv', 'Statistics').get('size') == 8 * MiB, 10, 'the disk has its size')
            env.dev('rbv', 'Destroy')
        msg = env.error(env.create, 'nvme', 'bad', '', rbd='vfu/missing', **{'rbd-conf': ceph.conf}).message
        check('missing' in msg, f'a missing image without size=: {msg}')
        check(env.leftovers() == [], f'leftovers {env.leftovers()}')
    finally:
        ceph.stop()


def test_migrate_rbd(env):
    """An RBD namespace moves with storage=shared without a copy: the destination opens the same image."""
    need_type('nvme')

    def run(env, dst):
        ceph = CephCluster(env)
        try:
            env.create('nvme', 'mr1', '', rbd='vfu/mig', size=8 * MiB, **{'rbd-conf': ceph.conf})
            env.mgr('StopDevice', '(s)', 'mr1')
            msg = env.expect(ERR + 'NotMigratable', env.mgr, 'MigrateDevice', '(ssa{sv})', 'mr1', dst.addr,
                             copy_opts())
            check('storage=shared' in msg, msg)
            env.mgr('MigrateDevice', '(ssa{sv})', 'mr1', dst.addr, copy_opts('shared'))
            check(dst.prop('mr1', 'State') == 'listening', 'created and started on the destination')
            ns = dst.prop('mr1', 'Backend')['namespaces']
            check(ns == [{'nsid': 1, 'kind': 'rbd', 'pool': 'vfu', 'image': 'mig', 'conf': ceph.conf,
                          'size': 8 * MiB}], f'the same image there: {ns}')
            check(env.mgr('ListDevices', '(s)', '')[0] == [], 'gone from the source')
            dst.dev('mr1', 'Destroy')
        finally:
            ceph.stop()

    migrate_case(env, run)


def passt_pids(env, name):
    """The passt processes vfud started for device name, in order (from vfud's log)."""
    with open(os.path.join(env.dir, 'vfud.log')) as f:
        return [int(m.group(1)) for m in re.finditer(rf'{re.escape(name)}\S*:? started passt (\d+) for its worker',
                                                   f.read())]


def check_passt_outside_worker(env, name):
    """vfud runs a passt device's passt, not its worker; passt follows the worker's runs and the device's life."""
    env.wait_for(lambda: passt_pids(env, name), 10, 'vfud to log its passt')
    passt, worker = passt_pids(env, name)[-1], env.prop(name, 'WorkerPID')
    check(pid_alive(passt), 'passt runs')
    check(int(proc_status(passt)['PPid']) not in (worker, os.getpid()) and
          str(passt) not in os.listdir(f'/proc/{worker}/task'), 'passt is not the worker\'s')
    # vfud restarts: worker and passt untouched, the worker adopted.
    env.stop_vfud()
    check(pid_alive(passt) and pid_alive(worker), 'passt and the worker outlive vfud')
    env.start_vfud()
    check(env.prop(name, 'WorkerPID') == worker and env.prop(name, 'State') == 'listening', 'the worker is adopted')
    check(pid_alive(passt), 'passt is kept through the adoption')
    # A crashed worker: its passt leaves with its socket, the next worker gets a passt of its own.
    os.kill(worker, signal.SIGKILL)
    env.wait_for(lambda: env.prop(name, 'WorkerPID') not in (0, worker) and env.prop(name, 'State') == 'listening',
                 10, 'the worker to be restarted')
    env.wait_for(lambda: not pid_alive(passt), 10, 'the crashed worker\'s passt to leave')
    check(len(passt_pids(env, name)) == 2 and pid_alive(passt_pids(env, name)[-1]), 'a new passt for the new worker')
    return passt_pids(env, name)[-1]


def test_net(env):
    """virtio-net devices: TAP backend, MAC, queues, link state."""
    need_type('virtio-net')
    if not tap_usable():
        raise Skip('needs root and /dev/net/tun for TAP interfaces')
    env.start_vfud()
    tap = f'vft{os.getpid() % 100000}'
    env.create('virtio-net', 'n1', 'vm1', tap=tap, queues=2, mac='52:54:00:AB:cd:01')
    b = env.prop('n1', 'Backend')
    check(b == {'backend': 'tap', 'tap': tap, 'mac': '52:54:00:ab:cd:01', 'queues': 2}, f'Backend {b}')
    check(os.path.exists(f'/sys/class/net/{tap}'), 'TAP interface exists')
    env.dev('n1', 'SetLink', '(b)', False)
    env.dev('n1', 'SetLink', '(b)', True)
    env.expect(ERR + 'NotSupported', env.dev, 'n1', 'AddNamespace', '(ust)', 2, '', MiB)
    env.create('virtio-net', 'n2', '', tap=tap + 'b')
    mac = env.prop('n2', 'Backend')['mac']
    check(mac.startswith('52:54:00:'), f'generated MAC {mac}')
    env.mgr('DestroyDevice', '(s)', 'n2')
    env.create('virtio-net', 'n2', '', tap=tap + 'b')
    check(env.prop('n2', 'Backend')['mac'] == mac, 'the generated MAC is stable across re-creation')
    if shutil.which('passt'):
        env.create('virtio-net', 'np', '', passt=True)
        check(env.prop('np', 'Backend')['backend'] == 'passt' and env.prop('np', 'State') == 'listening',
              'a passt-backed device listens')
        passt = check_passt_outside_worker(env, 'np')
        env.mgr('DestroyDevice', '(s)', 'np')
        env.wait_for(lambda: not pid_alive(passt), 10, 'passt to leave with its device')
    env.dev('n1', 'Stop')
    env.expect(ERR + 'NotRunning', env.dev, 'n1', 'SetLink', '(b)', True)
    env.expect(ERR + 'InvalidArgument', env.create, 'virtio-net', 'n3', '', mac='01:00:00:00:00:01')
    env.expect(ERR + 'InvalidArgument', env.create, 'virtio-net', 'n3', '', tap='x' * 16)
    env.expect(ERR + 'InvalidArgument', env.create, 'virtio-net', 'n3', '', queues=99)
    env.expect(ERR + 'InvalidArgument', env.create, 'virtio-net', 'n3', '', passt=True, queues=2)
    msg = env.expect(ERR + 'BackendFailed', env.create, 'virtio-net', 'n3', '', tap='lo')
    check('lo' in msg, msg)
    env.mgr('DestroyDevice', '(s)', 'n1')
    env.mgr('DestroyDevice', '(s)', 'n2')
    check(env.leftovers() == [], f'leftovers: {env.leftovers()}')


def test_net_null(env):
    """A virtio-net device on the null backend (no TAP, no privileges): from vfuctl, persisted, refused sizes."""
    need_type('virtio-net')
    env.start_vfud()
    rc, out, err = env.vfuctl('create', 'virtio-net', '--null', '64', '--name', 'nn1', '--queues', '2', '--json')
    check(rc == 0, f'create virtio-net --null: {rc} {err}')
    b = json.loads(out)['backend']
    check(b['backend'] == 'null' and b['null_frame'] == 64 and b['queues'] == 2 and 'tap' not in b, f'backend {b}')
    check(json.loads(out)['state'] == 'listening', 'a null network device starts')
    env.create('virtio-net', 'nn2', '', null=0)
    check(env.prop('nn2', 'Backend')['null-frame'] == 0 and env.prop('nn2', 'State') == 'listening', 'null=0')
    for opts in ({'null': 59}, {'null': 1515}, {'null': 64, 'passt': True}, {'null': 64, 'tap': 'x'}):
        env.expect(ERR + 'InvalidArgument', env.create, 'virtio-net', 'bad', '', **opts)
    env.vfud.kill()
    env.vfud.wait()
    env.start_vfud()
    check(env.prop('nn1', 'State') == 'listening' and env.prop('nn1', 'Backend')['backend'] == 'null', 'persisted')
    env.dev('nn1', 'Destroy')
    env.dev('nn2', 'Destroy')
    check(env.leftovers() == [], f'leftovers {env.leftovers()}')


def test_vblk(env):
    """virtio-blk devices: image, file, read-only and null disks from vfuctl, the definition, persistence,
    a runtime resize through the worker, statistics, what is refused."""
    need_type('virtio-blk')
    env.start_vfud()
    rc, out, err = env.vfuctl('create', 'virtio-blk', '--vm', 'bv', '--size', '8M', '--queues', '2',
                              '--serial', 'disk-one', '--json')
    check(rc == 0, f'create virtio-blk: {rc} {err}')
    shown = json.loads(out)
    check(shown['name'] == 'bv-blk0' and shown['type'] == 'virtio-blk' and shown['state'] == 'listening',
          f'created {shown}')
    img = ns_path(env, 'bv-blk0')
    b = env.prop('bv-blk0', 'Backend')
    check(b == {'namespaces': [{'nsid': 1, 'path': img, 'size': 8 * MiB, 'kind': 'image'}], 'queues': 2,
                'serial': 'disk-one'}, f'Backend {b}')
    check(os.path.getsize(img) == 8 * MiB, 'sparse image of the size given')
    rc, out, err = env.vfuctl('show', 'bv-blk0', '--json')
    st = json.loads(out)['statistics']
    check(rc == 0 and st.get('size') == 8 * MiB and st.get('write_cache') in (0, 1, True, False)
          and 'read_requests' in st, f'show statistics {st}')

    # A runtime resize: the image grows, the worker tells the guest, the definition follows.
    rc, out, err = env.vfuctl('namespace', 'resize', 'bv-blk0', '1', '16M')
    check(rc == 0, f'resize: {rc} {err}')
    check(os.path.getsize(img) == 16 * MiB, 'image grown')
    env.wait_for(lambda: env.prop('bv-blk0', 'Statistics').get('size') == 16 * MiB, 10, 'the worker has the new size')
    # Its statistics as metrics: the virtio-blk families, each documented.
    rc, out, err = env.vfuctl('metrics', 'bv-blk0')
    fams = {line.split()[2] for line in out.splitlines() if line.startswith('# TYPE ')}
    with open(os.path.join(os.path.dirname(env_path('README')), 'docs', 'metrics.md')) as f:
        doc = f.read()
    check(rc == 0 and 'vfu_virtio_blk_read_requests' in fams and 'vfu_virtio_blk_size_bytes' in fams,
          f'vfuctl metrics: {rc} {err} {sorted(fams)}')
    check(all(f'`{fam}' in doc for fam in fams), f'undocumented: {[f for f in fams if f"`{f}" not in doc]}')
    check(env.prop('bv-blk0', 'Backend')['namespaces'][0]['size'] == 16 * MiB, 'definition updated')
    env.expect(ERR + 'InvalidArgument', env.dev, 'bv-blk0', 'ResizeNamespace', '(ut)', 1, 4 * MiB)
    env.expect(ERR + 'InvalidArgument', env.dev, 'bv-blk0', 'ResizeNamespace', '(ut)', 2, 32 * MiB)
    env.expect(ERR + 'NotSupported', env.dev, 'bv-blk0', 'AddNamespace', '(ust)', 2, '', MiB)
    env.expect(ERR + 'NotSupported', env.dev, 'bv-blk0', 'SetLink', '(b)', True)
    # One writer per image, across device types.
    msg = env.expect(ERR + 'BackendFailed', env.create, 'virtio-blk', 'dup', '', file=img)
    check('bv-blk0' in msg, msg)
    msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'dup', '', file=img)
    check('bv-blk0' in msg, msg)

    # An existing file, read-only; a null disk.
    f = os.path.join(env.dir, 'ro.img')
    with open(f, 'wb') as fh:
        fh.truncate(4 * MiB)
    os.chmod(f, 0o400)
    rc, out, err = env.vfuctl('create', 'virtio-blk', '--name', 'ro', '--file', f, '--read-only', '--json')
    check(rc == 0, f'create --read-only: {rc} {err}')
    b = json.loads(out)['backend']
    check(b['read_only'] is True and b['namespaces'][0]['kind'] == 'file' and b['namespaces'][0]['size'] == 4 * MiB,
          f'read-only backend {b}')
    env.create('virtio-blk', 'nb', '', null=1 << 40, **{'block-size': 4096})
    nb = env.prop('nb', 'Backend')['namespaces'][0]
    check(nb['kind'] == 'null' and nb['block-size'] == 4096 and env.prop('nb', 'State') == 'listening', f'null {nb}')

    # The definitions survive a restart of vfud; the workers are adopted.
    pid = env.prop('bv-blk0', 'WorkerPID')
    env.vfud.kill()
    env.vfud.wait()
    env.start_vfud()
    check(env.prop('bv-blk0', 'WorkerPID') == pid and env.prop('bv-blk0', 'State') == 'listening', 'adopted')
    check(env.prop('bv-blk0', 'Backend')['namespaces'][0]['size'] == 16 * MiB, 'persisted size')
    env.dev('bv-blk0', 'Stop')
    env.dev('bv-blk0', 'Start')
    env.wait_for(lambda: env.prop('bv-blk0', 'Statistics').get('size') == 16 * MiB, 10, 'restarted at its size')

    # What is refused, named as such, with nothing left behind.
    f2 = os.path.join(env.dir, 'small.img')
    with open(f2, 'wb') as fh:
        fh.truncate(4 * MiB)
    for opts in ({}, {'size': 1000}, {'size': 8 * MiB, 'file': f2}, {'null': MiB, 'size': MiB}, {'size': MiB, 'queues': 65},
                 {'size': MiB, 'queues': 0}, {'size': MiB, 'block-size': 1024}, {'size': MiB, 'serial': 'x' * 21},
                 {'size': MiB, 'serial': 'tab\there'}, {'size': MiB, 'read-only': True}, {'file': 'relative.img'},
                 {'null-pattern': 3, 'size': MiB}, {'size': MiB, 'tap': 'x'}):
        check(env.error(env.create, 'virtio-blk', 'bad', '', **opts).name == ERR + 'InvalidArgument', f'refused: {opts}')
    rc, out, err = env.vfuctl('create', 'virtio-blk', '--tap', 'x', '--size', '1M')
    check(rc == 2 and '--tap' in err, f'--tap on virtio-blk: {rc} {err}')
    rc, out, err = env.vfuctl('create', 'nvme', '--read-only', '--size', '1M')
    check(rc == 2 and '--read-only' in err, f'--read-only on nvme: {rc} {err}')

    rc, out, err = env.vfuctl('destroy', 'bv-blk0', 'ro', 'nb')
    check(rc == 0, f'destroy: {rc} {err}')
    check(not os.path.exists(img) and os.path.exists(f), 'the image vfud made is gone, the given file stays')
    check(env.leftovers() == [], f'leftovers {env.leftovers()}')


def test_vblk_migrate(env):
    """Cold migration of a virtio-blk disk between two vfuds: the image arrives byte for byte, the definition
    (queues, serial) with it."""
    need_type('virtio-blk')

    def run(env, dst):
        env.create('virtio-blk', 'bm1', 'vmb', size=4 * MiB, queues=2, serial='MIGBLK')
        with open(ns_path(env, 'bm1'), 'r+b') as f:
            data = os.urandom(MiB)
            f.seek(MiB)
            f.write(data)
        rc, out, err = env.vfuctl('migrate', '--vm', 'vmb', '--to', dst.addr, '--storage', 'copy')
        check(rc == 0, f'vfuctl migrate: {rc} {err}')
        b = dst.prop('bm1', 'Backend')
        check(b['serial'] == 'MIGBLK' and b['queues'] == 2 and b['namespaces'][0]['size'] == 4 * MiB, f'arrived {b}')
        with open(ns_path(dst, 'bm1'), 'rb') as f:
            got = f.read()
        check(got[MiB:2 * MiB] == data and len(got) == 4 * MiB, 'the image arrived byte for byte')
        check(dst.prop('bm1', 'State') == 'listening', 'it listens there')
        check(env.mgr('ListDevices', '(s)', '')[0] == [] and env.leftovers() == [], 'the source is empty')

    migrate_case(env, run)


def test_net_mtu(env):
    """virtio-net MTU: --mtu is set on a TAP vfud creates; without it the
    device offers the TAP's own MTU; an existing TAP keeps its MTU."""
    need_type('virtio-net')
    if not tap_usable():
        raise Skip('needs root and /dev/net/tun for TAP interfaces')
    env.start_vfud()
    tap = f'vfm{os.getpid() % 100000}'
    owned = tap + 'o'

    def sys_mtu(ifname):
        with open(f'/sys/class/net/{ifname}/mtu') as f:
            return int(f.read())

    def offered(name, mtu):
        env.wait_for(lambda: env.prop(name, 'Statistics').get('mtu') == mtu, 10, f'{name} to offer MTU {mtu}')

    check(not os.path.exists(f'/sys/class/net/{tap}'), f'{tap} does not exist yet')
    env.create('virtio-net', 'j1', '', tap=tap, mtu=9000)
    check(sys_mtu(tap) == 9000, f'the TAP vfud created has MTU {sys_mtu(tap)}')
    check(env.prop('j1', 'Backend')['mtu'] == 9000, f'Backend {env.prop("j1", "Backend")}')
    offered('j1', 9000)
    rc, out, err = env.vfuctl('show', 'j1', '--json')
    check(rc == 0 and json.loads(out)['statistics']['mtu'] == 9000, f'show --json: {rc} {out} {err}')
    env.mgr('DestroyDevice', '(s)', 'j1')

    subprocess.run(['ip', 'tuntap', 'add', 'dev', owned, 'mode', 'tap', 'vnet_hdr'], check=True)
    try:
        subprocess.run(['ip', 'link', 'set', owned, 'mtu', '1450'], check=True)
        env.create('virtio-net', 'j2', '', tap=owned)
        check('mtu' not in env.prop('j2', 'Backend'), 'no MTU option given')
        offered('j2', 1450)
        env.mgr('DestroyDevice', '(s)', 'j2')
        env.create('virtio-net', 'j3', '', tap=owned, mtu=4000)
        offered('j3', 4000)
        check(sys_mtu(owned) == 1450, f'an existing TAP keeps its MTU: {sys_mtu(owned)}')
        env.mgr('DestroyDevice', '(s)', 'j3')
    finally:
        subprocess.run(['ip', 'link', 'del', owned])
    for bad in (67, 65536):
        env.expect(ERR + 'InvalidArgument', env.create, 'virtio-net', 'j4', '', tap=tap, mtu=bad)
    check(env.leftovers() == [], f'leftovers: {env.leftovers()}')


# The metric each statistic of show --json becomes (docs/metrics.md): (type or None, key) → sample name.
METRIC_NAMES = {
    (None, 'vfio_user_messages'): 'vfu_vfio_user_messages_total',
    (None, 'vfio_user_errors'): 'vfu_vfio_user_errors_total',
    (None, 'vfio_user_irqs'): 'vfu_vfio_user_interrupts_total',
    (None, 'vfio_user_connects'): 'vfu_vfio_user_connects_total',
    ('nvme', 'commands'): 'vfu_nvme_commands_total',
    ('nvme', 'read_commands'): 'vfu_nvme_read_commands_total',
    ('nvme', 'write_commands'): 'vfu_nvme_write_commands_total',
    ('nvme', 'read_bytes'): 'vfu_nvme_read_bytes_total',
    ('nvme', 'write_bytes'): 'vfu_nvme_write_bytes_total',
    ('nvme', 'errors'): 'vfu_nvme_errors_total',
    ('nvme', 'doorbell_writes'): 'vfu_nvme_doorbell_writes_total',
    ('nvme', 'interrupts'): 'vfu_nvme_interrupts_total',
    ('nvme', 'io_thread_wakeups'): 'vfu_nvme_io_thread_wakeups_total',
    ('nvme', 'io_commands'): 'vfu_nvme_io_latency_seconds_count',
    ('nvme', 'latency_total_ns'): 'vfu_nvme_io_latency_seconds_sum',
    ('nvme', 'latency_max_us'): 'vfu_nvme_io_latency_max_seconds',
    ('nvme', 'latency_avg_us'): None,
    ('nvme', 'limit_hits_ns1'): 'vfu_nvme_namespace1_limit_waits_total',
    ('nvme', 'limit_hits_group'): 'vfu_nvme_group_limit_waits_total',
    ('virtio-net', 'rx_packets'): 'vfu_virtio_net_rx_packets_total',
    ('virtio-net', 'rx_bytes'): 'vfu_virtio_net_rx_bytes_total',
    ('virtio-net', 'rx_drops'): 'vfu_virtio_net_rx_dropped_total',
    ('virtio-net', 'rx_errors'): 'vfu_virtio_net_rx_errors_total',
    ('virtio-net', 'tx_packets'): 'vfu_virtio_net_tx_packets_total',
    ('virtio-net', 'tx_bytes'): 'vfu_virtio_net_tx_bytes_total',
    ('virtio-net', 'tx_drops'): 'vfu_virtio_net_tx_dropped_total',
    ('virtio-net', 'tx_errors'): 'vfu_virtio_net_tx_errors_total',
    ('virtio-net', 'limit_hits_tx'): 'vfu_virtio_net_tx_limit_waits_total',
    ('virtio-net', 'limit_hits_rx'): 'vfu_virtio_net_rx_limit_waits_total',
    ('virtio-net', 'active_pairs'): 'vfu_virtio_net_active_queue_pairs',
    ('virtio-net', 'mtu'): 'vfu_virtio_net_mtu_bytes',
    ('virtio-net', 'link_up'): 'vfu_virtio_net_link_up',
}
METRIC_SCALE = {'vfu_nvme_io_latency_seconds_sum': 1e-9, 'vfu_nvme_io_latency_max_seconds': 1e-6}
# Latency histograms: statistics latency_ns_OP_le_NS, _count, _sum → a histogram family with op and le labels.
HISTOGRAMS = {'nvme': 'vfu_nvme_command_latency_seconds', 'virtio-blk': 'vfu_virtio_blk_request_latency_seconds'}
HISTOGRAM_KEY = re.compile(r'latency_ns_(read|write|flush|other)_(?:le_(\d+)|(count|sum))')


def histogram_sample(dtype, key):
    """The sample key (name, op, le or None) and extra labels a histogram statistic becomes, or None."""
    m = HISTOGRAM_KEY.fullmatch(key)
    if not m or dtype not in HISTOGRAMS:
        return None
    op, le, part = m.groups()
    if le is not None:
        return (HISTOGRAMS[dtype] + '_bucket', op, int(le) / 1e9), {'op': op}
    return (HISTOGRAMS[dtype] + '_' + part, op, None), {'op': op}


def metric_samples(families):
    """{(sample name, device): (labels, value)} of parsed metric families; every sample has device, vm, type."""
    out = {}
    for fam in families:
        for smp in fam.samples:
            check({'device', 'vm', 'type'} <= set(smp.labels), f'labels of {smp.name}: {smp.labels}')
            key = (smp.name, smp.labels['device'])
            if smp.name == 'vfu_device_statistic':
                key += (smp.labels['statistic'],)
            if 'op' in smp.labels:
                key += (smp.labels['op'], float(smp.labels['le']) if 'le' in smp.labels else None)
            check(key not in out, f'{key} twice')
            out[key] = (smp.labels, smp.value)
    return out


def metrics_match(env, samples, names, source):
    """Every device's show --json as samples: labels, state, connection, restarts, each statistic."""
    for name in names:
        rc, out, err = env.vfuctl('show', name, '--json')
        check(rc == 0, f'show {name}: {rc} {err}')
        dev = json.loads(out)
        labels = {'device': name, 'vm': dev['vm'], 'type': dev['type']}
        # A mismatch may be a file written before the last change: the caller waits and looks again.
        state = samples.get(('vfu_device_state', name))
        if not state or state[0] != dict(labels, state=dev['state']) or state[1] != 1:
            return f'{source}: state {state}, show --json says {dev["state"]}'
        if samples.get(('vfu_device_connected', name), (0, -1))[1] != int(dev['connected']):
            return f'{source}: connected of {name}'
        if samples.get(('vfu_device_restarts_total', name), (0, -1))[1] != dev['restarts']:
            return f'{source}: restarts of {name}'
        for key, value in dev['statistics'].items():
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            hist = histogram_sample(dev['type'], key)
            if hist:
                (sample, op, le), extra = hist
                got = samples.get((sample, name, op, le))
                labels_got = dict(got[0]) if got else {}
                labels_got.pop('le', None)
                want = value * (1e-9 if sample.endswith('_sum') else 1)
                if not got or labels_got != dict(labels, **extra) or abs(got[1] - want) > 1e-9 * max(1, want):
                    return f'{source}: {sample} of {name} {op} {le} is {got}, show --json says {key} = {value}'
                continue
            sample = METRIC_NAMES.get((None, key), METRIC_NAMES.get((dev['type'], key), ''))
            if sample is None:
                continue
            got = samples.get((sample, name) if sample else ('vfu_device_statistic', name, key))
            if not got or got[0] != dict(labels, **({} if sample else {'statistic': key})):
                return f'{source}: no sample {sample or key} for {name} {key} = {value}: {got}'
            want = value * METRIC_SCALE.get(sample, 1)
            if abs(got[1] - want) > 1e-9 * max(1, abs(want)):
                return f'{source}: {sample} of {name} is {got[1]}, show --json says {key} = {value}'
    return None


def test_metrics(env):
    """vfuctl metrics in the OpenMetrics format and vfud's textfile for node-exporter: both parsed by
    prometheus_client, every statistic of show --json under its documented name with device, vm, type."""
    try:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
        from prometheus_client.parser import text_string_to_metric_families as prom_parse
    except ImportError:
        raise Skip('python3-prometheus-client is not installed (./scripts/deps)')
    t = any_type()
    textdir = os.path.join(env.dir, 'node-exporter')
    os.mkdir(textdir)
    with open(env.config, 'a') as f:
        f.write(f'\n[Metrics]\nTextfileDirectory={textdir}\nInterval=0.2\n')
    env.start_vfud()
    names = []
    if t == 'nvme':
        env.create('nvme', 'mt1', 'vmm', size=4 * MiB)
        names.append('mt1')
        io = os.environ.get('NVME_IO')
        if io:
            # Verified I/O (every block read back as written, no error) for the histogram's counts.
            c = env.spawn([io, env.prop('mt1', 'SocketPath')])
            check(c.stdout.readline().startswith('ready'), 'nvme-io ready')
            hold_progress(env, c, 2)
            env.wait_for(lambda: env.prop('mt1', 'Statistics').get('write_commands', 0) > 0, 10, 'writes counted')
            hold_finish(c)
            env.wait_for(lambda: not env.prop('mt1', 'Connected'), 10, 'the client gone')
    if 'virtio-net' in worker_types() and tap_usable():
        env.create('virtio-net', 'mt2', '', tap=f'vfx{os.getpid() % 100000}')
        names.append('mt2')
    env.wait_for(lambda: all('vfio_user.messages' in env.prop(n, 'Statistics') for n in names), 10, 'statistics')

    def om_matches():
        rc, out, err = env.vfuctl('metrics')
        check(rc == 0 and out.endswith('# EOF\n'), f'vfuctl metrics: {rc} {err} {out[-200:]!r}')
        why = metrics_match(env, metric_samples(om_parse(out)), names, 'vfuctl metrics')
        if why:
            print(why)
        return why is None
    env.wait_for(om_matches, 30, 'vfuctl metrics to agree with show --json')
    rc, out, err = env.vfuctl('metrics')
    fams = list(om_parse(out))
    if t == 'nvme' and os.environ.get('NVME_IO'):
        lat = [f for f in fams if f.name == 'vfu_nvme_io_latency_seconds']
        check(lat and lat[0].type == 'summary' and
              any(s.name.endswith('_count') and s.value > 0 for s in lat[0].samples), f'latency summary {lat}')
        check(any(f.name == 'vfu_nvme_write_commands' and f.type == 'counter' for f in fams), 'counters typed')
        # The latency histogram: one per operation, buckets rising to +Inf, which is the count, and the
        # count is the commands of that operation the device counted.
        rc, out, err = env.vfuctl('show', 'mt1', '--json')
        st = json.loads(out)['statistics']
        check(st['errors'] == 0, f'errors: {st["errors"]}')
        hist = [f for f in fams if f.name == 'vfu_nvme_command_latency_seconds']
        check(len(hist) == 1 and hist[0].type == 'histogram', f'latency histogram {[f.name for f in fams]}')
        total = 0
        for op in ('read', 'write', 'flush', 'other'):
            smp = [x for x in hist[0].samples if x.labels['device'] == 'mt1' and x.labels['op'] == op]
            buckets = [(float(x.labels['le']), x.value) for x in smp if x.name.endswith('_bucket')]
            count = [x.value for x in smp if x.name.endswith('_count')]
            check(len(buckets) == 20 and buckets == sorted(buckets) and buckets[-1][0] == math.inf,
                  f'{op} buckets {buckets}')
            check(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), f'{op} buckets rise: {buckets}')
            check(count and buckets[-1][1] == count[0], f'{op}: +Inf {buckets[-1]} is the count {count}')
            if op in ('read', 'write'):
                check(count[0] == st[f'{op}_commands'] and count[0] > 0,
                      f'{op}: {count} commands in the histogram, {st[f"{op}_commands"]} counted')
            total += count[0]
        check(total == st['io_commands'], f'{total} I/O commands in the histograms, {st["io_commands"]} counted')
        # show sums the buckets up (a line per operation) instead of listing them.
        rc, out, err = env.vfuctl('show', 'mt1')
        check(rc == 0 and 'latency_ns_' not in out and 'p99' in out, f'show: {rc} {err} {out}')

    # Every family is documented.
    with open(os.path.join(os.path.dirname(env_path('README')), 'docs', 'metrics.md')) as f:
        doc = f.read()
    for fam in fams:
        check(f'`{fam.name}' in doc, f'{fam.name} is not in docs/metrics.md')

    # A device or a VM only; an unknown device.
    rc, out, err = env.vfuctl('metrics', names[0])
    check(rc == 0 and {s.labels['device'] for f in om_parse(out) for s in f.samples} == {names[0]}, f'metrics NAME {out}')
    rc, out, err = env.vfuctl('metrics', '--vm', 'nosuchvm')
    check(rc == 0 and out == '# EOF\n', f'metrics --vm with no devices: {out!r}')
    rc, out, err = env.vfuctl('metrics', 'nosuch')
    check(rc == 3, f'metrics of a missing device: {rc} {err}')

    # The textfile: Prometheus text format, replaced whole (no temporary file left), the same values.
    prom = os.path.join(textdir, 'vfud.prom')

    def prom_matches():
        if not os.path.exists(prom):
            return False
        with open(prom) as f:
            text = f.read()
        why = metrics_match(env, metric_samples(prom_parse(text)), names, 'vfud.prom')
        if why:
            print(why)
        return why is None
    env.wait_for(prom_matches, 30, 'vfud.prom to agree with show --json')
    check(os.listdir(textdir) == ['vfud.prom'], f'only vfud.prom in the textfile directory: {os.listdir(textdir)}')
    check(oct(os.stat(prom).st_mode & 0o777) == '0o644', 'vfud.prom readable by node-exporter')
    with open(prom) as f:
        check('# EOF' not in f.read(), 'no OpenMetrics EOF in the Prometheus text file')
    # Devices come and go in the file.
    env.dev(names[0], 'Destroy')
    env.wait_for(lambda: f'device="{names[0]}"' not in open(prom).read(), 10, 'a destroyed device to leave vfud.prom')


def test_bad_input(env):
    """Bad input: a clear error, an exit code, and nothing half-created."""
    env.start_vfud()
    t = any_type()
    missing = os.path.join(env.dir, 'missing.img')
    small = os.path.join(env.dir, 'small.img')
    with open(small, 'wb') as f:
        f.truncate(MiB)
    cases = [
        (['create', 'floppy'], 2, 'unknown device type'),
        (['create', 'nvme', '--size', '10Q'], 2, 'invalid size'),
        (['create', 'nvme', '--size', '1000'], 2, 'multiple of 4096'),
        (['create', 'nvme'], 2, 'needs a size'),
        (['create', 'nvme', '--file', missing], 7, 'does not exist'),
        (['create', 'nvme', '--file', small, '--size', '2M'], 2, 'larger than'),
        (['create', 'nvme', '--file', small, '--block', small], 2, 'not both'),
        (['create', 'nvme', '--block', small], 2, 'not a block device'),
        (['create', 'nvme', '--size', '1M', '--queues', 'x'], 2, 'positive number'),
        # vfuctl leaves the range to the device type: one bound, vfud's
        (['create', 'nvme', '--size', '1M', '--queues', '999'], 2, 'out of range: give 1 to 64'),
        (['create', 'virtio-net', '--queues', '999'], 2, 'out of range'),
        # the device model's bound, checked at create: no worker is started to find out
        (['create', 'nvme', '--size', '1M', '--queues', '65'], 2, 'out of range: give 1 to 64'),
        (['create', 'nvme', '--size', '1M', '--iothreads', '17'], 2, 'out of range: give 1 to 16'),
        (['create', 'nvme', '--size', '1M', '--poll-us', '10001'], 2, 'out of range: give 0 to 10000'),
        (['create', 'nvme', '--size', '1M', '--poll-us', '-1'], 2, 'from 0'),
        (['create', 'virtio-net', '--iothreads', '2'], 2, 'does not apply'),
        (['create', 'virtio-blk', '--size', '1M', '--msi'], 2, 'does not apply'),
        (['create', 'virtio-net', '--hotplug'], 2, 'does not apply'),
        (['create', 'nvme', '--size', '1M', '--serial', 'é'], 2, 'printable ASCII'),
        (['create', 'nvme', '--size', '1M', '--tap', 'x'], 2, 'does not apply'),
        (['create', 'nvme', '--size', '1M', '--name', '-bad'], 2, 'invalid device name'),
        (['create', 'virtio-net', '--mac', 'zz:00:00:00:00:00'], 2, 'invalid MAC'),
        (['create', 'virtio-net', '--mtu', '10'], 2, 'mtu'),
        (['create', 'virtio-net', '--tap', 'lo'], 7 if tap_usable() else 7, 'lo'),
    ]
    for args, code, text in cases:
        rc, out, err = env.vfuctl(*args)
        check(rc == code, f'vfuctl {" ".join(args)}: exit {rc}, expected {code} ({err.strip()})')
        check(text in err, f'vfuctl {" ".join(args)}: message "{err.strip()}" lacks "{text}"')
        check(env.leftovers() == [], f'vfuctl {" ".join(args)} left {env.leftovers()}')

    # Serials the Identify data cannot carry: refused by name, and the manager lives on.
    for serial in ('é', 'caf\u00e9', 'a\x01b', '\t', 'x\x7f', '\x1b[2J', '', 'S' * 21, '\u20ac' * 7):
        msg = env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'ser', '', size=MiB, serial=serial)
        check('serial' in msg, f'serial {serial!r}: {msg}')
        check(env.vfud.poll() is None, f'vfud survives serial {serial!r}')
    check(env.leftovers() == [], f'bad serials left {env.leftovers()}')
    if 'nvme' in worker_types():
        env.create('nvme', 'ser', '', size=MiB, serial='S' * 20)
        check(env.prop('ser', 'Backend')['serial'] == 'S' * 20, 'a 20-character serial is fine')
        # Namespace ids the device model has: a stopped device would otherwise keep one it cannot start with.
        env.mgr('StopDevice', '(s)', 'ser')
        env.expect(ERR + 'InvalidArgument', env.dev, 'ser', 'AddNamespace', '(ust)', 33, '', MiB)
        env.dev('ser', 'AddNamespace', '(ust)', 32, '', MiB)
        env.mgr('StartDevice', '(s)', 'ser')
        env.mgr('DestroyDevice', '(s)', 'ser')

    # A duplicate name with another definition.
    env.create_any(t, 'dup')
    rc, out, err = env.vfuctl('create', 'nvme', '--size', '2M', '--name', 'dup')
    check(rc == 5 and 'already exists' in err, f'duplicate: {rc} {err}')

    # An image left over from elsewhere is neither used nor removed.
    os.makedirs(os.path.join(env.state, 'images'), exist_ok=True)
    stale = os.path.join(env.state, 'images', 'old-ns1.img')
    with open(stale, 'w') as f:
        f.write('precious')
    rc, out, err = env.vfuctl('create', 'nvme', '--size', '1M', '--name', 'old')
    check(rc == 7 and 'already exists' in err, f'stale image: {rc} {err}')
    with open(stale) as f:
        check(f.read() == 'precious', 'the stale image is untouched')
    env.expect(ERR + 'NoSuchDevice', env.path, 'old')


def test_worker_failure(env):
    """A worker that cannot start: WorkerFailed, and the creation is rolled back."""
    t = any_type()
    with open(env.config, 'a') as f:
        f.write('Executable=/bin/false\n')
    env.start_vfud()
    msg = env.expect(ERR + 'WorkerFailed', env.create_any, t, 'wf')
    check('before it listened' in msg, msg)
    env.expect(ERR + 'NoSuchDevice', env.path, 'wf')
    check(env.leftovers() == [], f'leftovers: {env.leftovers()}')


def test_vfuctl(env):
    """vfuctl end to end, --json parsed, exit codes."""
    need_type('nvme')
    env.start_vfud()
    rc, out, err = env.vfuctl('create', 'nvme', '--vm', 'foo', '--size', '2M', '--name', 'c1', '--json')
    check(rc == 0, f'create: {rc} {err}')
    created = json.loads(out)
    check(created['name'] == 'c1' and created['state'] == 'listening' and created['vm'] == 'foo', f'{created}')
    rc, out, err = env.vfuctl('create', 'nvme', '--vm', 'bar', '--size', '1M')
    check(rc == 0 and out.startswith('bar-nvme0:'), f'create without a name: {rc} {out} {err}')

    rc, out, err = env.vfuctl('list', '--json')
    lst = json.loads(out)
    check(rc == 0 and [d['name'] for d in lst] == ['bar-nvme0', 'c1'], f'list {lst}')
    check(all(set(d) >= {'name', 'type', 'vm', 'state', 'connected', 'socket_path', 'path'} for d in lst), 'keys')
    rc, out, err = env.vfuctl('list', '--vm', 'foo', '--json')
    check([d['name'] for d in json.loads(out)] == ['c1'], 'list --vm')
    rc, out, err = env.vfuctl('list')
    check(rc == 0 and out.splitlines()[0].split()[:4] == ['NAME', 'TYPE', 'VM', 'STATE'], f'table {out}')
    rc, out2, err = env.vfuctl('list', '--no-legend')
    check(out2.splitlines() == out.splitlines()[1:], '--no-legend')

    rc, out, err = env.vfuctl('show', 'c1', '--json')
    s = json.loads(out)
    check(rc == 0 and s['name'] == 'c1' and s['backend']['namespaces'][0]['size'] == 2 * MiB, f'show {s}')
    check({'state', 'connected', 'socket_path', 'worker_pid', 'statistics', 'last_error', 'restarts'} <= set(s),
          f'show keys {sorted(s)}')
    rc, out, err = env.vfuctl('show', 'c1')
    check(rc == 0 and 'State: listening' in out and 'namespaces: nsid=1' in out, f'show {out}')

    rc, out, err = env.vfuctl('create', 'nvme', '--size', '1M', '--block-size', '4096', '--name', 'c4k', '--json')
    check(rc == 0 and json.loads(out)['backend']['namespaces'][0]['block_size'] == 4096, f'--block-size: {err}')
    rc, out, err = env.vfuctl('destroy', 'c4k')
    rc, out, err = env.vfuctl('namespace', 'add', 'c1', '2', '--size', '1M')
    check(rc == 0, f'namespace add {err}')
    rc, out, err = env.vfuctl('namespace', 'resize', 'c1', '2', '2M')
    check(rc == 0, f'namespace resize {err}')
    rc, out, err = env.vfuctl('show', 'c1', '--json')
    check(json.loads(out)['backend']['namespaces'][1]['size'] == 2 * MiB, 'resized')
    rc, out, err = env.vfuctl('namespace', 'remove', 'c1', '2')
    check(rc == 0, f'namespace remove {err}')
    rc, out, err = env.vfuctl('link', 'down', 'c1')
    check(rc == 8 and 'nvme' in err, f'link on nvme: {rc} {err}')

    for args, code in ((['show', 'nope'], 3), (['stop', 'nope'], 3), (['frobnicate'], 2), (['start', 'c1', '--json'], 2),
                       (['create', 'nvme', '--size', 'x'], 2), (['namespace', 'add', 'c1', 'zero', '--size', '1M'], 2)):
        rc, out, err = env.vfuctl(*args)
        check(rc == code, f'vfuctl {" ".join(args)}: exit {rc}, expected {code}: {err}')
        check(err.startswith('vfuctl: '), f'error message {err!r}')
    rc, out, err = env.vfuctl('list', bus=f'unix:path={env.dir}/nothing')
    check(rc == 6, f'unreachable bus: {rc} {err}')

    rc, out, err = env.vfuctl('stop', 'c1', 'bar-nvme0')
    check(rc == 0 and 'c1: stopped' in out, f'stop {out} {err}')
    rc, out, err = env.vfuctl('start', 'c1')
    check(rc == 0, f'start {err}')
    rc, out, err = env.vfuctl('destroy', 'c1', 'bar-nvme0')
    check(rc == 0, f'destroy {err}')
    rc, out, err = env.vfuctl('list', '--json')
    check(json.loads(out) == [], f'empty {out}')
    check(env.leftovers() == [], f'leftovers {env.leftovers()}')


def test_cli_usage(env):
    """vfuctl's command line: an option missing its value is named as such, not as unknown."""
    for args in (['create', 'nvme', '--size'], ['migrate', 'x', '--to'], ['list', '--vm'], ['-H'],
                 ['create', 'nvme', '--name']):
        rc, out, err = env.vfuctl(*args)
        check(rc == 2 and f"option '{args[-1]}' needs a value" in err, f'vfuctl {" ".join(args)}: {rc} {err!r}')
    rc, out, err = env.vfuctl('list', '--json=yes')
    check(rc == 2 and "option '--json' takes no value" in err, f'--json=yes: {rc} {err!r}')
    for args in (['list', '--frobnicate'], ['list', '-x']):
        rc, out, err = env.vfuctl(*args)
        check(rc == 2 and 'unknown option' in err, f'vfuctl {" ".join(args)}: {rc} {err!r}')


def help_verbs(env):
    """The verbs vfuctl --help lists."""
    rc, out, err = env.vfuctl('--help')
    check(rc == 0 and '\nCommands:\n' in out, f'--help: {rc} {out!r} {err!r}')
    section = out.split('\nCommands:\n', 1)[1].split('\n\n', 1)[0]
    return [line.split()[0] for line in section.splitlines() if re.match(r'  \S', line)]


def help_options(text):
    """The long options a help text lists."""
    return set(re.findall(r'^  (?:-\w,|   ) --([a-z][a-z-]*)', text, re.M))


def test_cli_help(env):
    """vfuctl --help, vfuctl help VERB and vfuctl VERB --help: every verb has help, within 80 columns."""
    rc, main_help, err = env.vfuctl('--help')
    check(rc == 0, f'--help: {rc} {err}')
    rc, out, err = env.vfuctl()
    check(rc == 2 and out == main_help, f'no command: {rc}')
    rc, out, err = env.vfuctl('help')
    check(rc == 0 and out == main_help, f'help: {rc} {err}')
    verbs = help_verbs(env)
    check({'list', 'show', 'create', 'namespace', 'migrate', 'help'} <= set(verbs), f'verbs in --help: {verbs}')
    check({'host', 'bus', 'help', 'version'} <= help_options(main_help), f'global options: {help_options(main_help)}')
    texts = {'--help': main_help}
    for verb in verbs:
        rc, out, err = env.vfuctl('help', verb)
        check(rc == 0 and out.startswith(f'Usage: vfuctl {verb}'), f'help {verb}: {rc} {out!r} {err!r}')
        paragraphs = out.split('\n\n')
        check(len(paragraphs) >= 3 and paragraphs[1].strip(), f'help {verb}: no description: {out!r}')
        rc, out2, err = env.vfuctl(verb, '--help')
        check(rc == 0 and out2 == out, f'{verb} --help differs from help {verb}: {rc} {out2!r} {err!r}')
        texts[f'help {verb}'] = out
    for what, text in texts.items():
        wide = [line for line in text.splitlines() if len(line) > 80]
        check(not wide, f'{what}: lines past 80 columns: {wide}')
    check(help_options(texts['help create']) >= {'size', 'file', 'tap', 'passt', 'mac', 'json'},
          f'create options: {help_options(texts["help create"])}')
    rc, out, err = env.vfuctl('help', 'frobnicate')
    check(rc == 2, f'help of an unknown verb: {rc} {err}')
    # an option the verb does not take is refused, not ignored
    for args in (['show', 'x', '--vm', 'y'], ['start', 'x', '--json'], ['list', '--size', '1M']):
        rc, out, err = env.vfuctl(*args)
        check(rc == 2, f'vfuctl {" ".join(args)}: {rc} {err}')


def test_cli_namespace(env):
    """vfuctl namespace: SIZE as an argument (as the README and --help show it) or as --size, given once."""
    need_type('nvme')
    env.start_vfud()
    rc, out, err = env.vfuctl('create', 'nvme', '--name', 'ns1', '--size', '1M')
    check(rc == 0, f'create: {rc} {err}')
    # the README's own lines, as a user pastes them
    with open(env_path('README')) as f:
        lines = [line.split('#')[0] for line in f if line.startswith('vfuctl namespace ')]
    check(lines, 'README has no vfuctl namespace example')
    for line in lines:
        for cmd in line.split(';'):
            args = cmd.split()[1:]
            if args:
                rc, out, err = env.vfuctl(*[a.replace('NAME', 'ns1') for a in args])
                check(rc == 0, f'README: {cmd.strip()}: {rc} {err}')

    def sizes():
        rc, out, err = env.vfuctl('show', 'ns1', '--json')
        return {n['nsid']: n['size'] for n in json.loads(out)['backend']['namespaces']}
    rc, out, err = env.vfuctl('namespace', 'add', 'ns1', '3', '2M')
    check(rc == 0 and sizes().get(3) == 2 * MiB, f'add NAME NSID SIZE: {rc} {err} {sizes()}')
    rc, out, err = env.vfuctl('namespace', 'add', 'ns1', '4', '--size', '1M')
    check(rc == 0 and sizes().get(4) == MiB, f'add --size: {rc} {err}')
    rc, out, err = env.vfuctl('namespace', 'resize', 'ns1', '4', '--size', '3M')
    check(rc == 0 and sizes().get(4) == 3 * MiB, f'resize --size: {rc} {err}')
    rc, out, err = env.vfuctl('namespace', 'resize', 'ns1', '4', '4M')
    check(rc == 0 and sizes().get(4) == 4 * MiB, f'resize SIZE: {rc} {err}')
    for args in (['add', 'ns1', '5', '1M', '--size', '1M'], ['add', 'ns1', '5'], ['add', 'ns1', '5', 'big'],
                 ['remove', 'ns1', '4', '1M'], ['resize', 'ns1', '4'], ['grow', 'ns1', '4', '1M']):
        rc, out, err = env.vfuctl('namespace', *args)
        check(rc == 2, f'namespace {" ".join(args)}: {rc} {err}')
    check(5 not in sizes(), f'namespace 5 added by a refused command: {sizes()}')


SNAKE_KEY = re.compile(r'[a-z][a-z0-9]*(_[a-z0-9]+)*\Z')


def json_keys(value, where=''):
    """Every object key in a JSON value, with where it is."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, f'{where}.{k}'
            yield from json_keys(v, f'{where}.{k}')
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_keys(v, f'{where}[{i}]')


def crc32c(data):
    """CRC-32C (Castagnoli), bitwise: the checksum of image streams."""
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff


def test_cli_json(env):
    """Every --json output of vfuctl (every verb that takes --json, each device type, at every depth)
    has snake_case keys, as vfuctl(1) promises."""
    env.start_vfud()
    # the verbs that print JSON: a new one must be walked here too
    json_verbs = set()
    for verb in help_verbs(env):
        rc, text, err = env.vfuctl('help', verb)
        if 'json' in help_options(text):
            json_verbs.add(verb)
    check(json_verbs == {'list', 'show', 'create', 'limit', 'receive-image', 'migrate'},
          f'verbs taking --json: {sorted(json_verbs)}: walk them here')
    outputs = {}
    created = []
    for t in worker_types():
        if t == 'nvme':
            args = ['create', 'nvme', '--vm', 'jv', '--name', 'j-nvme', '--size', '1M', '--block-size', '4096',
                    '--iops-read', '100', '--group-bytes-total-max', '0']
        elif t == 'virtio-net':
            if not tap_usable():
                continue
            args = ['create', 'virtio-net', '--vm', 'jv', '--name', 'j-net', '--tap', f'vj{os.getpid() % 100000}']
        elif t == 'virtio-blk':
            args = ['create', 'virtio-blk', '--vm', 'jv', '--name', 'j-blk', '--size', '1M']
        else:
            continue
        rc, out, err = env.vfuctl(*args, '--json')
        check(rc == 0, f'{" ".join(args)}: {rc} {err}')
        outputs[' '.join(args)] = out
        created.append(args[args.index('--name') + 1])
    check(created, 'no device type to create')
    if 'j-nvme' in created:
        env.create('nvme', 'j-null', 'jv', null=MiB)
        created.append('j-null')
    for args in [['list'], ['list', '--vm', 'jv']] + [['show', n] for n in created] + \
            [['limit', n] for n in created if n == 'j-nvme']:
        rc, out, err = env.vfuctl(*args, '--json')
        check(rc == 0, f'{" ".join(args)} --json: {rc} {err}')
        outputs[' '.join(args)] = out
    if 'j-nvme' in created:
        # receive-image: an empty image's stream (docs/migration.md) into the stopped device's namespace
        env.mgr('StopDevice', '(s)', 'j-nvme')
        head = b'VFUIMG\r\n' + struct.pack('<HHIQI', 1, 0, 0, MiB, 0)
        end = struct.pack('<QQ', 0, 0)
        rec = struct.pack('<IIQI', 2, len(end), 0, crc32c(end))
        stream = head + struct.pack('<I', crc32c(head)) + rec + struct.pack('<I', crc32c(rec)) + end
        p = subprocess.run([env_path('VFUCTL'), '--bus', env.addr, 'receive-image', 'j-nvme', '1', '--json'],
                           input=stream, capture_output=True, timeout=120)
        check(p.returncode == 0, f'receive-image --json: {p.returncode} {p.stderr.decode()}')
        outputs['receive-image j-nvme 1'] = p.stdout.decode()
    if 'j-null' in created:
        # migrate: JSON lines, progress then the result, to a second vfud
        dst = Env()
        try:
            dst.start_vfud()
            rc, out, err = env.vfuctl('migrate', 'j-null', '--to', dst.addr, '--json')
            check(rc == 0, f'migrate --json: {rc} {err}')
            lines = out.splitlines()
            check(lines and json.loads(lines[-1]) == {'device': 'j-null', 'state': 'migrated'}, f'migrate: {out!r}')
            for i, line in enumerate(lines):
                outputs[f'migrate j-null, line {i + 1}'] = line
            created.remove('j-null')
            dst.stop_vfud()
        finally:
            dst.cleanup(False)
    for what, out in outputs.items():
        keys = list(json_keys(json.loads(out)))
        check(keys, f'{what}: no keys')
        bad = [where for k, where in keys if not SNAKE_KEY.match(k)]
        check(not bad, f'vfuctl {what} --json: keys not in snake_case: {bad}')
    shown = json.loads(outputs[f'show {created[0]}'])
    check({'socket_path', 'worker_pid', 'client_migration', 'statistics'} <= set(shown), f'show keys {sorted(shown)}')
    check(any(k.startswith('vfio_user_') for k in shown['statistics']), f'statistics {sorted(shown["statistics"])}')
    check('bytes_read' in shown['client_migration'], f'client_migration {shown["client_migration"]}')
    rc, out, err = env.vfuctl('destroy', *created)
    check(rc == 0, f'destroy: {rc} {err}')


CALLER = r'''
import json, sys
import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib
addr, path, iface, method, sig, args = sys.argv[1:7]
conn = Gio.DBusConnection.new_for_address_sync(addr, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
    Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
try:
    v = GLib.Variant.parse(GLib.VariantType.new(sig), args, None, None) if sig else None
    conn.call_sync('org.vfu.vfud1', path, iface, method, v, None, 0, 30000, None)
    print(json.dumps({'ok': True}))
except GLib.Error as e:
    name = Gio.DBusError.get_remote_error(e)
    Gio.DBusError.strip_remote_error(e)
    print(json.dumps({'error': name, 'message': e.message}))
'''


def call_as(env, user, path, iface, method, sig='', args=()):
    text = GLib.Variant(sig, tuple(args)).print_(True) if sig else ''
    out = subprocess.run(user + [sys.executable, '-c', CALLER, env.addr, path, iface, method, sig, text],
                         capture_output=True, text=True, timeout=60)
    check(out.returncode == 0, f'caller failed: {out.stderr}')
    return json.loads(out.stdout)


def mutating_calls(dpath):
    """Every method that changes something, with arguments (the device a1 of VM vm at dpath)."""
    return [
        (MPATH, MIFACE, 'CreateDevice', '(sssa{sv})', ['nvme', 'x', '', {}]),
        (MPATH, MIFACE, 'DestroyDevice', '(s)', ['a1']),
        (MPATH, MIFACE, 'DestroyDevice', '(s)', ['nonexistent']),
        (MPATH, MIFACE, 'StartDevice', '(s)', ['a1']),
        (MPATH, MIFACE, 'StopDevice', '(s)', ['a1']),
        (dpath, DIFACE, 'Start', '', []),
        (dpath, DIFACE, 'Stop', '', []),
        (dpath, DIFACE, 'Destroy', '', []),
        (dpath, DIFACE, 'AddNamespace', '(ust)', [2, '', MiB]),
        (dpath, DIFACE, 'RemoveNamespace', '(u)', [1]),
        (dpath, DIFACE, 'ResizeNamespace', '(ut)', [1, 2 * MiB]),
        (dpath, DIFACE, 'SetLink', '(b)', [True]),
        (dpath, DIFACE, 'SetLimits', '(ua{sv})', [0, {'iops-total': GLib.Variant('t', 100)}]),
        # authorization before the options are looked at: bad options from an outsider are still "denied"
        (MPATH, MIFACE, 'MigrateDevice', '(ssa{sv})', ['a1', 'unix:path=/nonexistent', {}]),
        (MPATH, MIFACE, 'MigrateDevice', '(ssa{sv})', ['a1', '', {'bogus': GLib.Variant('s', 'x')}]),
        (MPATH, MIFACE, 'MigrateDevice', '(ssa{sv})', ['a1', 'h', {'storage': GLib.Variant('s', 'tape')}]),
        (MPATH, MIFACE, 'MigrateVm', '(ssa{sv})', ['vm', 'h', {'timeout': GLib.Variant('u', 0)}]),
        (MPATH, MIFACE, 'MigrateVm', '(ssa{sv})', ['nosuchvm', 'h', {'libvirt-uri': GLib.Variant('s', 'x')}]),
    ]


def test_auth(env):
    """Unprivileged callers read everything and change nothing."""
    need_type('nvme')
    env.start_vfud()
    env.create('nvme', 'a1', 'vm', size=MiB)
    dpath = env.path('a1')
    mutating = mutating_calls(dpath)
    for path, iface, method, sig, args in mutating:
        r = call_as(env, NOBODY, path, iface, method, sig, args)
        check(r.get('error') == DENIED, f'{method} as nobody: {r}')
        check('root' in r['message'], f'{method}: the message says who may: {r["message"]}')
    readonly = [
        (MPATH, MIFACE, 'ListDevices', '(s)', ['']),
        (MPATH, MIFACE, 'GetDevice', '(s)', ['a1']),
        (dpath, 'org.freedesktop.DBus.Properties', 'GetAll', '(s)', [DIFACE]),
        (MPATH, 'org.freedesktop.DBus.ObjectManager', 'GetManagedObjects', '', []),
    ]
    for path, iface, method, sig, args in readonly:
        r = call_as(env, NOBODY, path, iface, method, sig, args)
        check(r.get('ok'), f'{method} as nobody: {r}')
    check(env.prop('a1', 'State') == 'listening' and len(env.mgr('ListDevices', '(s)', '')[0]) == 1,
          'nothing changed')
    rc, out, err = env.vfuctl('list', user=NOBODY)
    check(rc == 0 and 'a1' in out, f'vfuctl list as nobody: {rc} {err}')
    rc, out, err = env.vfuctl('show', 'a1', '--json', user=NOBODY)
    check(rc == 0 and json.loads(out)['name'] == 'a1', f'vfuctl show as nobody: {rc} {err}')
    rc, out, err = env.vfuctl('stop', 'a1', user=NOBODY)
    check(rc == 4 and 'needs root' in err, f'vfuctl stop as nobody: {rc} {err}')


def fake_polkit(env, rules):
    """A polkit authority on the test's bus answering from rules ({uid: {action: verdict}}); returns its log."""
    rules_path, log = os.path.join(env.dir, 'polkit-rules.json'), os.path.join(env.dir, 'polkit.log')
    with open(rules_path, 'w') as f:
        json.dump(rules, f)
    open(log, 'w').close()
    p = env.spawn([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake-polkit.py'),
                   env.addr, rules_path, log])
    check(p.stdout.readline().strip() == 'ready', 'the fake polkit authority owns its name')

    def queries():
        with open(log) as f:
            return [json.loads(line) for line in f]
    return queries


def test_polkit(env):
    """With polkit on the bus, it decides for everyone but root: the action per method, interactivity, challenges."""
    need_type('nvme')
    if os.geteuid() != 0:
        raise Skip('needs root to call as other users')
    manage, migrate = 'org.vfu.vfud1.manage', 'org.vfu.vfud1.migrate'
    # nobody: manage yes, migrate no; daemon (uid 1): needs authentication; bin (uid 2): polkit fails.
    queries = fake_polkit(env, {'65534': {manage: 'yes', migrate: 'no'}, '1': {manage: 'challenge'},
                                '2': {manage: 'error'}})
    with open(env.config, 'a') as f:
        f.write('[Manager]\nAdminGroup=sys\n')
    env.start_vfud()
    env.create('nvme', 'a1', 'vm', size=MiB)
    dpath = env.path('a1')
    check(queries() == [], 'root is never asked about')

    # Every mutating method asks polkit with its action; a "no" is final, even for a member of AdminGroup.
    in_sys = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--groups=sys']
    for path, iface, method, sig, args in mutating_calls(dpath):
        if not method.startswith('Migrate'):
            continue
        n = len(queries())
        r = call_as(env, in_sys, path, iface, method, sig, args)
        check(r.get('error') == DENIED and f'not allowed by polkit (action {migrate}' in r['message'],
              f'{method} as nobody: {r}')
        q = queries()[n:]
        check(len(q) == 1 and q[0]['action'] == migrate and q[0]['uid'] == 65534 and
              q[0]['kind'] == 'system-bus-name' and q[0]['name'].startswith(':'), f'{method}: asked {q}')
    # Reading asks nobody.
    n = len(queries())
    for path, iface, method, sig, args in [(MPATH, MIFACE, 'ListDevices', '(s)', ['']),
                                           (MPATH, MIFACE, 'GetDevice', '(s)', ['a1']),
                                           (dpath, 'org.freedesktop.DBus.Properties', 'GetAll', '(s)', [DIFACE])]:
        check(call_as(env, NOBODY, path, iface, method, sig, args).get('ok'), f'{method} as nobody')
    check(len(queries()) == n, 'reading asks polkit nothing')
    # polkit's yes: the call goes through (its arguments read again after the answer).
    r = call_as(env, NOBODY, dpath, DIFACE, 'ResizeNamespace', '(ut)', [1, 2 * MiB])
    check(r.get('ok'), f'ResizeNamespace allowed by polkit: {r}')
    check(env.prop('a1', 'Backend')['namespaces'][0]['size'] == 2 * MiB, 'resized as asked')
    check(queries()[-1]['action'] == manage and queries()[-1]['flags'] == 0, f'asked {queries()[-1]}')
    # vfuctl lets polkit ask for a password unless --no-ask-password, as systemctl does.
    rc, out, err = env.vfuctl('stop', 'a1', user=NOBODY)
    check(rc == 0 and env.prop('a1', 'State') == 'idle', f'vfuctl stop as nobody: {rc} {err}')
    check(queries()[-1]['flags'] == 1, f'interactive authorization allowed: {queries()[-1]}')
    rc, out, err = env.vfuctl('--no-ask-password', 'start', 'a1', user=NOBODY)
    check(rc == 0 and env.prop('a1', 'State') == 'listening', f'vfuctl start as nobody: {rc} {err}')
    check(queries()[-1]['flags'] == 0, f'--no-ask-password: {queries()[-1]}')
    # On a terminal, vfuctl runs polkit's text agent for itself (as systemctl does) and ends it.
    agent_dir, agent_log = os.path.join(env.dir, 'agent'), os.path.join(env.dir, 'agent.log')
    os.mkdir(agent_dir)
    os.chmod(env.dir, 0o755)
    open(agent_log, 'w').close()
    os.chmod(agent_log, 0o666)
    with open(os.path.join(agent_dir, 'pkttyagent'), 'w') as f:
        f.write('#!/bin/sh\n'
                f'echo "started $*" >> {agent_log}\n'
                f'trap \'echo stopped >> {agent_log}; exit 0\' TERM\n'
                'fd=$2; eval "exec $fd>&-"\n'
                'while :; do sleep 1; done\n')
    os.chmod(os.path.join(agent_dir, 'pkttyagent'), 0o755)

    # nobody runs its own copy: the build tree may sit where nobody cannot reach (a clone in /root, 0700)
    vfuctl = os.path.join(agent_dir, 'vfuctl')
    shutil.copy(env_path('VFUCTL'), vfuctl)
    os.chmod(vfuctl, 0o755)

    def on_tty(*args):
        cmd = ' '.join([f'PATH={agent_dir}:/usr/bin:/bin', vfuctl, '--bus', f"'{env.addr}'"] + list(args))
        return subprocess.run(NOBODY + ['script', '-qec', cmd, '/dev/null'], capture_output=True, text=True,
                              timeout=60)
    p = on_tty('stop', 'a1')
    with open(agent_log) as f:
        log = f.read().split('\n')
    check(p.returncode == 0 and env.prop('a1', 'State') == 'idle', f'vfuctl stop on a terminal: {p}')
    check(log[0].startswith('started --notify-fd ') and '--fallback --process ' in log[0] and log[1] == 'stopped',
          f'the agent was started for vfuctl and stopped: {log}')
    p = on_tty('--no-ask-password', 'start', 'a1')
    with open(agent_log) as f:
        check(p.returncode == 0 and f.read().count('started') == 1, '--no-ask-password starts no agent')
    # A challenge: authentication is needed, and the caller is told so.
    daemon = ['setpriv', '--reuid=daemon', '--regid=daemon', '--clear-groups']
    r = call_as(env, daemon, MPATH, MIFACE, 'StopDevice', '(s)', ['a1'])
    check(r.get('error') == 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired' and
          'needs authentication' in r['message'], f'challenge: {r}')
    rc, out, err = env.vfuctl('--no-ask-password', 'stop', 'a1', user=daemon)
    check(rc == 4 and 'authentication' in err, f'vfuctl --no-ask-password under a challenge: {rc} {err}')
    # polkit failing denies (no fallback to the group).
    r = call_as(env, ['setpriv', '--reuid=bin', '--regid=bin', '--groups=sys'], MPATH, MIFACE, 'StopDevice', '(s)',
                ['a1'])
    check(r.get('error') == DENIED and 'polkit could not decide' in r['message'], f'polkit failing: {r}')
    check(env.prop('a1', 'State') == 'listening', 'nothing was stopped by those refused')

    # Polkit=no: the group decides, polkit is not asked.
    env.stop_vfud()
    with open(env.config, 'a') as f:
        f.write('Polkit=no\n')
    env.start_vfud()
    n = len(queries())
    r = call_as(env, in_sys, MPATH, MIFACE, 'StopDevice', '(s)', ['a1'])
    check(r.get('ok'), f'Polkit=no: a member of AdminGroup: {r}')
    r = call_as(env, NOBODY, MPATH, MIFACE, 'StartDevice', '(s)', ['a1'])
    check(r.get('error') == DENIED and "group 'sys'" in r['message'], f'Polkit=no: an outsider: {r}')
    check(len(queries()) == n, 'Polkit=no asks nothing')


def test_reload(env):
    """vfud.conf.d/ drop-ins in name order; SIGHUP (systemctl reload) re-reads them without touching devices."""
    need_type('nvme')
    if os.geteuid() != 0:
        raise Skip('needs root to call as other users')
    dropins = env.config + '.d'
    os.mkdir(dropins)

    def dropin(name, text):
        with open(os.path.join(dropins, name), 'w') as f:
            f.write(text)
    member = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--groups=sys']
    dropin('10-admin.conf', '[Manager]\nAdminGroup=sys\n')
    dropin('20-mode.conf', '[Worker]\nSocketMode=0640\n')
    dropin('30-mode.conf', '[Worker]\nSocketMode=0660\n')      # later names win
    dropin('40-ignored.conf.disabled', '[Worker]\nSocketMode=0666\n')
    env.start_vfud(WATCHDOG_USEC='200000')
    env.create('nvme', 'r1', '', size=MiB)
    sock = env.prop('r1', 'SocketPath')
    check(os.stat(sock).st_mode & 0o777 == 0o660, f'drop-ins in name order: {oct(os.stat(sock).st_mode)}')
    r = call_as(env, member, MPATH, MIFACE, 'StopDevice', '(s)', ['r1'])
    check(r.get('ok'), f'AdminGroup from a drop-in: {r}')
    env.mgr('StartDevice', '(s)', 'r1')
    # The watchdog: WATCHDOG=1 from the loop, every half of WATCHDOG_USEC.
    env.wait_for(lambda: env.got_ready() and sum('WATCHDOG=1' in m for m in env.notified) >= 3, 10,
                 'WATCHDOG=1 keep-alives')

    # Reload: the group goes, sockets become 0600 for workers started from now on; nothing restarts.
    pid, sock_mode = env.prop('r1', 'WorkerPID'), os.stat(sock).st_mode & 0o777
    dropin('50-reload.conf', '[Manager]\nAdminGroup=\n[Worker]\nSocketMode=0600\n')
    env.notified.clear()
    env.vfud.send_signal(signal.SIGHUP)
    env.wait_for(lambda: env.got_ready() and any('READY=1' in m for m in env.notified), 10, 'READY=1 after the reload')
    # Keep-alives go on meanwhile; of the rest, RELOADING=1 comes before READY=1.
    states = [m for m in env.notified if m != 'WATCHDOG=1']
    check(states and 'RELOADING=1' in states[0], f'RELOADING=1 first: {env.notified}')
    r = call_as(env, member, MPATH, MIFACE, 'StopDevice', '(s)', ['r1'])
    check(r.get('error') == DENIED, f'AdminGroup= emptied by the reload: {r}')
    check(env.prop('r1', 'WorkerPID') == pid and env.prop('r1', 'State') == 'listening' and
          os.stat(sock).st_mode & 0o777 == sock_mode, 'the running device is untouched')
    env.dev('r1', 'Stop')
    env.dev('r1', 'Start')
    check(os.stat(sock).st_mode & 0o777 == 0o600, f'a worker started after the reload: {oct(os.stat(sock).st_mode)}')

    # A drop-in that does not parse changes nothing, and vfud keeps serving.
    dropin('60-bad.conf', '[Worker]\nSocketMode=rw-rw----\n')
    env.notified.clear()
    env.vfud.send_signal(signal.SIGHUP)
    env.wait_for(lambda: env.got_ready() and any('READY=1' in m for m in env.notified), 10, 'READY=1 after a bad reload')
    with open(os.path.join(env.dir, 'vfud.log')) as f:
        check('60-bad.conf' in f.read(), 'the bad drop-in is named in the log')
    env.dev('r1', 'Stop')
    env.dev('r1', 'Start')
    check(os.stat(sock).st_mode & 0o777 == 0o600, 'the configuration stayed as it was')


def test_auth_group(env):
    """Members of AdminGroup may change devices (the group the caller's process has, as the bus saw it)."""
    need_type('nvme')
    with open(env.config, 'w') as f:
        f.write('[Manager]\nAdminGroup=sys\n[Worker]\n' + WORKER_USER)
    env.start_vfud()
    env.create('nvme', 'g1', '', size=MiB)
    member = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--groups=sys']
    r = call_as(env, member, MPATH, MIFACE, 'StopDevice', '(s)', ['g1'])
    check(r.get('ok'), f'StopDevice by a member of sys: {r}')
    check(env.prop('g1', 'State') == 'idle', 'stopped by the group member')
    r = call_as(env, NOBODY, MPATH, MIFACE, 'StartDevice', '(s)', ['g1'])
    check(r.get('error') == DENIED and "'sys'" in r['message'], f'StartDevice by an outsider: {r}')
    check(env.prop('g1', 'State') == 'idle', 'still stopped')


def test_persistence(env):
    """Definitions survive restarts; running workers are adopted; a reboot restarts them."""
    need_type('nvme')
    env.start_vfud()
    env.create('nvme', 'p1', 'vm1', size=MiB, queues=2)
    env.create('nvme', 'p2', 'vm2', size=2 * MiB)
    env.create('nvme', 'p3', '', size=MiB)
    env.mgr('StopDevice', '(s)', 'p3')
    with open(os.path.join(env.state, 'devices', 'p1.json')) as f:
        d = json.load(f)
    img = os.path.join(env.state, 'images', 'p1-ns1.img')
    check(d == {'name': 'p1', 'type': 'nvme', 'vm': 'vm1',
                'options': {'namespaces': [{'nsid': 1, 'path': img, 'size': MiB, 'kind': 'image'}], 'queues': 2}},
          f'persisted definition {d}')
    check(oct(os.stat(os.path.join(env.state, 'devices', 'p1.json')).st_mode & 0o777) == '0o600', 'mode 0600')
    pids = {n: env.prop(n, 'WorkerPID') for n in ('p1', 'p2')}

    # A clean manager stop leaves workers serving; the next manager adopts them.
    env.stop_vfud(signal.SIGTERM)
    check(all(pid_alive(p) for p in pids.values()), 'workers outlive the manager')
    for n in ('p1', 'p2'):
        check(os.path.exists(os.path.join(env.runtime, f'{n}.sock')), f'{n} socket kept')
    env.start_vfud()
    lst = env.mgr('ListDevices', '(s)', '')[0]
    check([(x[0], x[3]) for x in lst] == [('p1', 'listening'), ('p2', 'listening'), ('p3', 'idle')], f'{lst}')
    check({n: env.prop(n, 'WorkerPID') for n in ('p1', 'p2')} == pids, 'same workers adopted')
    check(env.prop('p1', 'Backend')['queues'] == 2, 'options restored')

    # After a reboot (workers and /run gone) every device that was not stopped starts again.
    env.stop_vfud(signal.SIGTERM)
    for p in pids.values():
        os.kill(p, signal.SIGKILL)
    for p in pids.values():
        env.wait_for(lambda: not pid_alive(p), 5, 'worker to die')
    subprocess.run(['rm', '-rf', env.runtime], check=True)
    env.start_vfud()
    lst = env.mgr('ListDevices', '(s)', '')[0]
    check([(x[0], x[3]) for x in lst] == [('p1', 'listening'), ('p2', 'listening'), ('p3', 'listening')], f'{lst}')
    check(all(env.prop(n, 'WorkerPID') not in pids.values() for n in ('p1', 'p2')), 'new workers')


def hold(env, name):
    sock = env.prop(name, 'SocketPath')
    p = env.spawn([env_path('VU_HOLD'), sock])
    line = p.stdout.readline()
    check(line.startswith('connected'), f'vu-hold on {name}: {line!r}')
    return p


def hold_progress(env, p, n=2):
    for _ in range(n):
        line = p.stdout.readline()
        check(line.startswith('ops '), f'client progress: {line!r}')


def hold_finish(p):
    p.stdin.close()
    out = p.stdout.read()
    rc = p.wait(timeout=30)
    last = out.strip().splitlines()[-1] if out.strip() else ''
    check(rc == 0 and last.startswith('ok ') and last.split()[2] == '0', f'client: rc {rc}, {out!r}')
    return int(last.split()[1])


def test_restart(env):
    """SIGKILL the manager under a connected client: it keeps working, the new manager sees it connected."""
    t = any_type()
    env.start_vfud()
    env.create_any(t, 'r1', 'vm1')
    path = env.path('r1')
    env.signals.clear()
    c = hold(env, 'r1')
    env.wait_for(lambda: env.prop('r1', 'Connected'), 5, 'Connected=true')
    check(env.prop('r1', 'State') == 'connected', 'State connected')
    env.wait_for(lambda: any(s[2] == 'PropertiesChanged' and s[0] == path and s[3][1].get('Connected') is True
                             for s in env.signals), 5, 'Connected PropertiesChanged')
    env.wait_for(lambda: any(s[2] == 'PropertiesChanged' and 'Statistics' in s[3][1] for s in env.signals),
                 5, 'Statistics PropertiesChanged while connected')
    msg = env.expect(ERR + 'DeviceBusy', env.mgr, 'StopDevice', '(s)', 'r1')
    check('connected' in msg, msg)
    env.expect(ERR + 'DeviceBusy', env.mgr, 'DestroyDevice', '(s)', 'r1')
    pid = env.prop('r1', 'WorkerPID')

    env.vfud.kill()
    env.vfud.wait()
    hold_progress(env, c, 3)
    env.start_vfud()
    check(env.prop('r1', 'Connected') is True and env.prop('r1', 'State') == 'connected',
          'the new manager sees the client connected')
    check(env.prop('r1', 'WorkerPID') == pid, 'same worker')
    hold_progress(env, c, 2)
    env.signals.clear()
    ops = hold_finish(c)
    check(ops >= 500, f'the client kept working ({ops} reads)')
    env.wait_for(lambda: env.prop('r1', 'Connected') is False, 5, 'Connected=false after the client left')
    check(env.prop('r1', 'State') == 'listening', 'listening again')
    c = hold(env, 'r1')
    hold_finish(c)

    # A worker adopted from the previous manager is watched as closely as one it started.
    adopted = env.prop('r1', 'WorkerPID')
    os.kill(adopted, signal.SIGKILL)
    env.wait_for(lambda: env.prop('r1', 'WorkerPID') not in (0, adopted) and env.prop('r1', 'State') == 'listening',
                 10, 'the adopted worker to be replaced')
    check(env.prop('r1', 'Restarts') == 1, 'counted as a restart')


def test_crash(env):
    """A worker killed: only its device fails, restarts and listens again; the others keep serving."""
    t = any_type()
    with open(env.config, 'a') as f:
        f.write('RestartBurst=3\n')
    env.start_vfud()
    env.create_any(t, 'k1')
    env.create_any(t, 'k2')
    path = env.path('k1')
    c = hold(env, 'k2')
    other = env.prop('k2', 'WorkerPID')
    victim = env.prop('k1', 'WorkerPID')
    env.signals.clear()
    os.kill(victim, signal.SIGKILL)
    env.wait_for(lambda: any(s[2] == 'PropertiesChanged' and s[0] == path and s[3][1].get('State') == 'failed'
                             for s in env.signals), 5, 'State=failed signal')
    env.wait_for(lambda: env.prop('k1', 'State') == 'listening', 10, 'k1 to listen again')
    check(env.prop('k1', 'Restarts') == 1, 'Restarts=1')
    check('SIGKILL' in env.prop('k1', 'LastError') or 'KILL' in env.prop('k1', 'LastError'),
          f'LastError {env.prop("k1", "LastError")}')
    check(env.prop('k1', 'WorkerPID') not in (0, victim), 'a new worker')
    check(env.prop('k2', 'WorkerPID') == other and env.prop('k2', 'State') == 'connected', 'k2 untouched')
    hold_progress(env, c, 2)
    hold_finish(c)
    c = hold(env, 'k1')
    hold_finish(c)

    # A worker that keeps dying is given up on, with a message saying what to do.
    for i in range(3):
        env.wait_for(lambda: env.prop('k1', 'State') == 'listening', 15, 'k1 to listen again')
        os.kill(env.prop('k1', 'WorkerPID'), signal.SIGKILL)
        env.wait_for(lambda: env.prop('k1', 'State') != 'listening', 15, 'k1 to notice')
    env.wait_for(lambda: 'gave up' in env.prop('k1', 'LastError'), 15, 'giving up')
    check(env.prop('k1', 'State') == 'failed', 'failed after the burst')
    check('vfuctl start k1' in env.prop('k1', 'LastError'), 'the message says what to do')
    env.mgr('StartDevice', '(s)', 'k1')
    check(env.prop('k1', 'State') == 'listening', 'a manual start works')


def test_restart_io(env):
    """Verified NVMe I/O continues while the manager is SIGKILLed and restarted."""
    need_type('nvme')
    io = os.environ.get('NVME_IO')
    if not io:
        raise Skip('the NVMe I/O client is not built')
    env.start_vfud()
    env.create('nvme', 'io1', 'vm1', size=16 * MiB)
    sock = env.prop('io1', 'SocketPath')
    c = env.spawn([io, sock])
    line = c.stdout.readline()
    check(line.startswith('ready'), f'nvme-io: {line!r}')
    env.wait_for(lambda: env.prop('io1', 'Connected'), 5, 'Connected')
    hold_progress(env, c, 2)
    env.vfud.kill()
    env.vfud.wait()
    hold_progress(env, c, 2)
    env.start_vfud()
    check(env.prop('io1', 'Connected') is True, 'connected after the restart')
    hold_progress(env, c, 2)
    stats = env.prop('io1', 'Statistics')
    check(any(v > 0 for k, v in stats.items() if 'write' in k), f'statistics count the I/O: {stats}')
    n = hold_finish(c)
    check(n > 0, 'I/O done')


def test_crash_trials(env):
    """Crash consistency: a writer's worker SIGKILLed at random moments and restarted by vfud, many times.

    The writer (crash-writer) writes generation-numbered, checksummed 4 KiB blocks with random FUA and Flush;
    each trial kills the worker at a random moment, sometimes right after a namespace resize was asked for,
    sometimes with vfud itself killed -9 first (the worker killed while no manager runs, or after the new
    manager adopted it).  vfud restarts the worker, the writer reconnects and reads every block back: none
    acknowledged as durable (FUA, or before a completed Flush) may hold an older generation, none may be torn.
    `--trials N` (default 10) and `--seed N` when run by hand.
    """
    need_type('nvme')
    writer = os.environ.get('CRASH_WRITER')
    if not writer:
        raise Skip('the crash-consistency writer is not built')
    trials = int(OPTIONS.get('trials', 10))
    seed = int(OPTIONS.get('seed', int.from_bytes(os.urandom(4), 'little')))
    rng = random.Random(seed)
    print(f'crash-trials: {trials} trials, seed {seed}')
    with open(env.config, 'a') as f:
        f.write('RestartBurst=1000000\n')
    env.start_vfud()
    size = 16 * MiB
    env.create('nvme', 'cc', 'vm1', size=size)
    path = env.path('cc')
    sock = env.prop('cc', 'SocketPath')
    c = env.spawn([writer, '--seed', str(seed), sock])
    line = c.stdout.readline()
    check(line.startswith('ready'), f'crash-writer: {line!r}')
    kinds = {'worker': 0, 'resize': 0, 'vfud-down': 0, 'vfud-restart': 0}
    checked = lost = torn = stale = 0
    for t in range(1, trials + 1):
        kind = rng.choice(['worker', 'worker', 'resize', 'vfud-down', 'vfud-restart'])
        kinds[kind] += 1
        env.wait_for(lambda: env.prop('cc', 'Connected'), 10, 'the writer connected')
        pid = env.prop('cc', 'WorkerPID')
        time.sleep(rng.uniform(0.01, 0.5))
        resized = None
        if kind == 'worker':
            os.kill(pid, signal.SIGKILL)
        elif kind == 'resize':
            reply = []
            env.conn.call(NAME, path, DIFACE, 'ResizeNamespace', GLib.Variant('(ut)', (1, size + MiB)), None,
                          Gio.DBusCallFlags.NONE, 60000, None,
                          lambda conn, res, _: reply.append(_call_result(conn, res)), None)
            time.sleep(rng.uniform(0, 0.01))
            os.kill(pid, signal.SIGKILL)
            env.wait_for(lambda: reply, 60, 'the ResizeNamespace reply')
            resized = reply[0] is None
            if resized:
                size += MiB
        elif kind == 'vfud-down':
            env.vfud.kill()
            env.vfud.wait()
            time.sleep(rng.uniform(0, 0.2))
            os.kill(pid, signal.SIGKILL)
            env.start_vfud()
        else:
            env.vfud.kill()
            env.vfud.wait()
            env.start_vfud()
            check(env.prop('cc', 'WorkerPID') == pid, 'the new manager adopted the worker')
            time.sleep(rng.uniform(0, 0.2))
            os.kill(pid, signal.SIGKILL)
        line = c.stdout.readline()
        f = line.split()
        check(len(f) == 7 and f[0] == 'verified' and int(f[1]) == t,
              f'trial {t} ({kind}): crash-writer said {line!r} (rc {c.poll()})')
        checked += int(f[2])
        lost += int(f[3])
        torn += int(f[4])
        stale += int(f[5])
        ns = int(f[6])
        if resized is not None:
            # Refused or not, the namespace has one of the two sizes, and the one the reply said once it succeeded.
            check(ns == size if resized else ns in (size, size + MiB),
                  f'trial {t}: namespace of {ns} bytes after a resize to {size + MiB} ({"ok" if resized else reply[0]})')
            size = ns
        check(int(f[3]) == 0 and int(f[4]) == 0, f'trial {t} ({kind}): {f[3]} blocks lost, {f[4]} torn')
    c.stdin.close()
    out = c.stdout.read()
    rc = c.wait(timeout=60)
    last = out.strip().splitlines()[-1] if out.strip() else ''
    f = last.split()
    check(rc == 0 and len(f) == 8 and f[0] == 'ok', f'crash-writer: rc {rc}, {out!r}')
    print(f'crash-trials: trials {trials} ({", ".join(f"{k} {v}" for k, v in kinds.items())}), '
          f'blocks checked {checked}, lost {lost}, torn {torn}, stale {stale} (acknowledged, not yet flushed), '
          f'writes {f[6]}, flushes {f[7]}, seed {seed}')
    check(int(f[1]) == trials, f'the writer counted {f[1]} trials')


def test_crash_migrate(env):
    """Crash consistency across live migration: the crash-trials writer moved between two vfuds, back and forth,
    with writes in flight, while the source worker, the destination's or (once moved) the one serving it is
    SIGKILLed at a random moment of the hand-over.  Whatever the kill hit, the device ends in exactly one vfud, the
    one the writer says (moved or stayed), and none of the blocks acknowledged as durable is lost or torn.
    `--trials N` (default 6) and `--seed N` when run by hand.
    """
    need_type('nvme')
    writer = os.environ.get('CRASH_WRITER')
    if not writer:
        raise Skip('the crash-consistency writer is not built')
    trials = int(OPTIONS.get('trials', 6))
    seed = int(OPTIONS.get('seed', int.from_bytes(os.urandom(4), 'little')))
    rng = random.Random(seed)
    print(f'crash-migrate: {trials} trials, seed {seed}')

    def devices(e):
        return [d[0] for d in e.mgr('ListDevices', '(s)', '')[0]]

    def run(env, dst):
        disk = os.path.join(env.dir, 'cm.img')
        with open(disk, 'wb') as f:
            f.truncate(16 * MiB)
        env.create('nvme', 'cm', 'vmc', file=disk)
        c = env.spawn([writer, '--seed', str(seed), env.prop('cm', 'SocketPath')])
        line = c.stdout.readline()
        check(line.startswith('ready'), f'crash-writer: {line!r}')
        here, there = env, dst
        kinds = {'source': 0, 'destination': 0, 'after': 0}
        outcomes = {'migrated': 0, 'stayed': 0, 'lost': 0}
        checked = lost = torn = reconnects = 0

        def tally(line):
            nonlocal checked, lost, torn, reconnects
            f = line.split()
            check(len(f) == 7, f'crash-writer said {line!r} (rc {c.poll()})')
            checked += int(f[2])
            lost += int(f[3])
            torn += int(f[4])
            reconnects += f[0] == 'verified'
            check(int(f[3]) == 0 and int(f[4]) == 0, f'{line.strip()}: blocks lost or torn')

        def read_until(words):
            while True:
                line = c.stdout.readline()
                check(line != '', f'crash-writer ended (rc {c.poll()})')
                w = line.split()[0]
                if w in ('verified', 'checked'):
                    tally(line)
                if w in words:
                    return w

        for t in range(1, trials + 1):
            kind = rng.choice(list(kinds))
            kinds[kind] += 1
            here.wait_for(lambda: here.prop('cm', 'Connected') and
                          here.prop('cm', 'ClientMigration')['client'], 30, 'the writer, migratable, connected')
            cli = env.spawn([env_path('VFUCTL'), '--bus', here.addr, 'migrate', 'cm', '--to', there.addr,
                             '--storage', 'shared', '--timeout', '60'], stderr=subprocess.PIPE)
            here.wait_for(lambda: here.prop('cm', 'MigrationState') == 'waiting' and
                          here.prop('cm', 'MigrationSocket') and 'cm' in devices(there), 30, 'waiting for the VMM')
            sock = here.prop('cm', 'MigrationSocket')
            src_pid, dst_pid = here.prop('cm', 'WorkerPID'), there.prop('cm', 'WorkerPID')
            c.stdin.write(f'migrate {sock}\n')
            c.stdin.flush()
            if kind == 'after':
                outcome = read_until(('migrated', 'stayed', 'lost'))
                time.sleep(rng.uniform(0, 0.2))
                pid = dst_pid if outcome == 'migrated' else here.prop('cm', 'WorkerPID')
            else:
                # The writer pauses 50-400 ms in PRE_COPY: most kills land before or while the state moves.
                time.sleep(rng.uniform(0, 0.45))
                pid = src_pid if kind == 'source' else dst_pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass            # already gone: the hand-over was over
            if kind != 'after':
                outcome = read_until(('migrated', 'stayed', 'lost'))
            outcomes[outcome] += 1
            out, err = cli.communicate(timeout=120)
            moved = cli.returncode == 0
            check(moved == (outcome == 'migrated'),
                  f'trial {t} ({kind}): the writer {outcome}, vfuctl migrate: {cli.returncode} {out!r} {err!r}')
            owner, other = (there, here) if moved else (here, there)
            try:
                owner.wait_for(lambda: devices(owner) == ['cm'] and devices(other) == [], 30, 'one copy')
            except Fail:
                raise Fail(f'trial {t} ({kind}, {outcome}): the device in one vfud only: '
                           f'{devices(owner)} here, {devices(other)} there '
                           f'({other.prop("cm", "MigrationState") if devices(other) else ""}, '
                           f'{other.prop("cm", "State") if devices(other) else ""}); vfuctl: {err!r}')
            c.stdin.write('check\n')
            c.stdin.flush()
            read_until(('checked',))
            print(f'crash-migrate: trial {t}: kill {kind}, {outcome}', flush=True)
            if moved:
                here, there = there, here
        c.stdin.close()
        out = c.stdout.read()
        rc = c.wait(timeout=60)
        last = out.strip().splitlines()[-1] if out.strip() else ''
        f = last.split()
        check(rc == 0 and len(f) == 8 and f[0] == 'ok', f'crash-writer: rc {rc}, {out!r}')
        check(int(f[1]) == reconnects, f'the writer counted {f[1]} reconnections, {reconnects} seen')
        print(f'crash-migrate: trials {trials} (kills: {", ".join(f"{k} {v}" for k, v in kinds.items())}; '
              f'{", ".join(f"{k} {v}" for k, v in outcomes.items())}), reconnections {reconnects}, '
              f'blocks checked {checked}, lost {lost}, torn {torn}, writes {f[6]}, flushes {f[7]}, seed {seed}')

    migrate_case(env, run)


def _call_result(conn, res):
    """An asynchronous call's outcome: None, or the error."""
    try:
        conn.call_finish(res)
        return None
    except GLib.Error as e:
        return unpack_error(e)


def proc_status(pid):
    with open(f'/proc/{pid}/status') as f:
        return dict(line.rstrip('\n').split(':\t', 1) for line in f if ':\t' in line)


def test_directories(env):
    """One mode per directory (unit, tmpfiles and vfud agree): sockets reachable, the rest vfud's alone."""
    need_type('nvme')
    if os.geteuid() != 0:
        raise Skip('needs root to connect as another user')
    with open(env.config, 'a') as f:
        f.write('SocketGroup=sys\nSocketMode=0660\n')
    private = [os.path.join(env.state, 'devices'), os.path.join(env.state, 'images'),
               os.path.join(env.runtime, 'workers')]

    def mode(p):
        return os.stat(p).st_mode & 0o7777

    env.start_vfud()
    check(mode(env.state) == 0o700 and mode(env.runtime) == 0o755, f'{mode(env.state):o} {mode(env.runtime):o}')
    check(all(mode(p) == 0o700 for p in private), f'{[oct(mode(p)) for p in private]}')
    # An older unit left them 0755: the next vfud tightens them.
    env.stop_vfud()
    for p in private:
        os.chmod(p, 0o755)
    env.start_vfud()
    check(all(mode(p) == 0o700 for p in private), f'tightened: {[oct(mode(p)) for p in private]}')
    # The VMM runs as another user (libvirt's qemu user): it reaches the socket through the runtime
    # directory when SocketGroup= lets it, and only then.
    env.create('nvme', 'd1', '', size=MiB)
    sock = env.prop('d1', 'SocketPath')
    c = env.spawn(['setpriv', '--reuid=nobody', '--regid=nogroup', '--groups=sys', env_path('VU_HOLD'), sock])
    line = c.stdout.readline()
    check(line.startswith('connected'), f'a member of SocketGroup connects: {line!r}')
    hold_finish(c)
    c = env.spawn(NOBODY + [env_path('VU_HOLD'), sock])
    check(not c.stdout.readline().startswith('connected') and c.wait(timeout=30) != 0, 'an outsider cannot connect')


# Image locks as QEMU takes them (block/file-posix.c): OFD locks on byte 100 + permission held and
# 200 + permission not shared; permission 1 is write.
F_OFD_GETLK, F_OFD_SETLK = 36, 37
FLOCK = 'hhqqi4x'

LOCKER = r'''
import fcntl, struct, sys
path, how = sys.argv[1:3]
f = open(path, 'r+b')
fd = f.fileno()
def lock(kind, start, length):
    fcntl.fcntl(fd, 37, struct.pack('hhqqi4x', kind, 0, start, length, 0))
if how == 'whole':              # a plain exclusive OFD lock on the whole file
    lock(fcntl.F_WRLCK, 0, 0)
else:                           # a writable QEMU disk: holds read, write, write-unchanged; shares neither write nor resize
    for b in (100, 101, 102, 201, 203):
        lock(fcntl.F_RDLCK, b, 1)
print('locked', flush=True)
sys.stdin.read()
'''


def image_locked(path):
    """Whether a writer holds the image, tested as QEMU tests it: is 'write not shared' (byte 201) locked?"""
    fd = os.open(path, os.O_RDONLY)
    try:
        fl = fcntl.fcntl(fd, F_OFD_GETLK, struct.pack(FLOCK, fcntl.F_WRLCK, 0, 201, 1, 0))
        return struct.unpack(FLOCK, fl)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


def test_image_lock(env):
    """One writer per image: a second device or a foreign lock holder is refused by name; the lock stays
    through worker and manager restarts and goes with the device."""
    need_type('nvme')
    env.start_vfud()
    disks = []
    for i in range(3):
        disks.append(os.path.join(env.dir, f'disk{i}.img'))
        with open(disks[i], 'wb') as f:
            f.truncate(4 * MiB)
    disk = disks[0]
    check(not image_locked(disk), 'a new file is not locked')
    env.create('nvme', 'l1', '', file=disk)
    check(image_locked(disk), 'a device writing an image locks it')

    # a second device on the same image, running or not
    msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'l2', '', file=disk)
    check('in use by device l1' in msg, msg)
    rc, out, err = env.vfuctl('create', 'nvme', '--name', 'l2', '--file', disk)
    check(rc == 7 and 'in use by device l1' in err, f'vfuctl: {rc} {err}')
    env.mgr('StopDevice', '(s)', 'l1')
    check(not image_locked(disk), 'a stopped device lets go')
    msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'l2', '', file=disk)
    check('in use by device l1' in msg, f'refused while l1 is only defined: {msg}')
    env.mgr('StartDevice', '(s)', 'l1')
    check(image_locked(disk), 'locked again')
    env.expect(ERR + 'InvalidArgument', env.dev, 'l1', 'AddNamespace', '(ust)', 2, disk, 0)
    env.dev('l1', 'AddNamespace', '(ust)', 2, disks[1], 0)
    check(image_locked(disks[1]), 'an added namespace is locked')
    env.dev('l1', 'RemoveNamespace', '(u)', 2)
    check(not image_locked(disks[1]), 'a removed namespace lets go')

    # a worker crash: the restarted worker gets the same open file, lock and all
    pid = env.prop('l1', 'WorkerPID')
    os.kill(pid, signal.SIGKILL)
    env.wait_for(lambda: env.prop('l1', 'WorkerPID') not in (0, pid) and env.prop('l1', 'State') == 'listening',
                 15, 'the worker to be restarted')
    check(image_locked(disk), 'locked after the worker restart')
    # a manager restart: the running worker keeps it
    env.vfud.kill()
    env.vfud.wait()
    check(image_locked(disk), 'locked while vfud is down')
    env.start_vfud()
    check(env.prop('l1', 'State') == 'listening' and image_locked(disk), 'locked under the new vfud')
    msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'l2', '', file=disk)
    check('in use by device l1' in msg, msg)

    # foreign holders: a plain exclusive OFD lock, and a VM's disk as QEMU locks it
    for path, how in ((disks[1], 'whole'), (disks[2], 'qemu')):
        holder = env.spawn([sys.executable, '-c', LOCKER, path, how])
        check(holder.stdout.readline().strip() == 'locked', f'the {how} holder')
        msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'f1', '', file=path)
        check('locked by another process' in msg, f'{how}: {msg}')
        check(not [x for x in env.leftovers() if 'f1' in x], f'{how}: left {env.leftovers()}')
        env.expect(ERR + 'NoSuchDevice', env.path, 'f1')
        holder.stdin.close()
        holder.wait(timeout=10)
        env.create('nvme', 'f1', '', file=path)
        check(image_locked(path), f'{how}: taken once the holder left')
        env.mgr('DestroyDevice', '(s)', 'f1')
        check(not image_locked(path), f'{how}: let go by destroy')

    env.mgr('DestroyDevice', '(s)', 'l1')
    check(not image_locked(disk), 'let go by destroy')
    env.create('nvme', 'l2', '', file=disk)
    check(image_locked(disk), 'the next device takes it')
    env.mgr('DestroyDevice', '(s)', 'l2')

    # a block device is opened exclusively (O_EXCL): refused while mounted or claimed
    p = subprocess.run(['losetup', '--find', '--show', disk], capture_output=True, text=True)
    if p.returncode != 0:
        print(f'(no loop device for the block case: {p.stderr.strip()})')
        return
    loop = p.stdout.strip()
    try:
        env.create('nvme', 'b1', '', block=loop)
        msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'b2', '', block=loop)
        check('in use by device b1' in msg, msg)
        env.mgr('StopDevice', '(s)', 'b1')
        claim = os.open(loop, os.O_RDWR | os.O_EXCL)
        try:
            msg = env.expect(ERR + 'BackendFailed', env.mgr, 'StartDevice', '(s)', 'b1')
            check('is in use' in msg, f'an exclusive holder: {msg}')
        finally:
            os.close(claim)
        env.mgr('StartDevice', '(s)', 'b1')
        check(env.prop('b1', 'State') == 'listening', 'started once the holder left')
        env.mgr('DestroyDevice', '(s)', 'b1')
    finally:
        subprocess.run(['losetup', '-d', loop])


def test_sandbox(env):
    """Workers drop to the configured user, set no_new_privs and filter system calls, and still serve."""
    need_type('nvme')
    if os.geteuid() != 0:
        raise Skip('needs root to drop privileges')
    with open(env.config, 'a') as f:
        f.write('User=nobody\nSocketMode=0666\n')
    env.start_vfud()
    env.create('nvme', 's1', '', size=16 * MiB)
    st = proc_status(env.prop('s1', 'WorkerPID'))
    check(st['Uid'].split()[:2] == ['65534', '65534'] and st['Gid'].split()[0] == '65534', f'ids {st["Uid"]}')
    check(st['NoNewPrivs'] == '1' and st['Seccomp'] == '2', f'NoNewPrivs {st["NoNewPrivs"]} Seccomp {st["Seccomp"]}')
    check(st['CapEff'] == '0000000000000000', f'capabilities {st["CapEff"]}')
    sock = env.prop('s1', 'SocketPath')
    check(oct(os.stat(sock).st_mode & 0o777) == '0o666', 'SocketMode applied')
    io = os.environ.get('NVME_IO')
    if io:
        c = env.spawn(NOBODY + [io, sock])
        check(c.stdout.readline().startswith('ready'), 'an unprivileged VMM does I/O through the sandboxed worker')
        hold_progress(env, c, 3)
        hold_finish(c)
    env.dev('s1', 'AddNamespace', '(ust)', 2, '', MiB)
    check(len(env.prop('s1', 'Backend')['namespaces']) == 2, 'fds passed at runtime reach the sandboxed worker')
    env.dev('s1', 'Stop')
    check(not os.path.exists(sock), 'the manager cleans up what the unprivileged worker cannot')

    # Seccomp=no: no filter, still no_new_privs.
    env.stop_vfud()
    with open(env.config, 'a') as f:
        f.write('Seccomp=no\n')
    env.start_vfud()
    env.dev('s1', 'Start')
    st = proc_status(env.prop('s1', 'WorkerPID'))
    check(st['Seccomp'] == '0' and st['NoNewPrivs'] == '1', f'Seccomp=no: {st["Seccomp"]}')


def test_worker_user(env):
    """Workers run unprivileged by default: I/O through fds vfud opened, restarts, root only when configured."""
    need_type('nvme')
    io = os.environ.get('NVME_IO')
    if os.geteuid() != 0:
        raise Skip('needs root to drop privileges')
    if not io:
        raise Skip('the NVMe I/O client is not built')
    # An image only root can open: the worker (nobody) gets the fd from vfud.
    private = os.path.join(env.dir, 'private')
    os.mkdir(private, 0o700)
    image = os.path.join(private, 'disk.img')
    with open(image, 'wb') as f:
        f.truncate(16 * MiB)
    os.chmod(image, 0o600)
    r = subprocess.run(NOBODY + ['dd', f'if={image}', 'of=/dev/null', 'count=1'], capture_output=True)
    check(r.returncode != 0, 'the worker user cannot open the image itself')
    env.start_vfud()
    env.create('nvme', 'u1', '', file=image)

    def uid_of_worker():
        st = proc_status(env.prop('u1', 'WorkerPID'))
        return st['Uid'].split(), st['Gid'].split(), st['Groups'].split()

    def verified_io():
        c = env.spawn([io, env.prop('u1', 'SocketPath')])
        check(c.stdout.readline().startswith('ready'), 'the client is ready')
        hold_progress(env, c, 2)
        check(hold_finish(c) > 0, 'verified I/O')
        env.wait_for(lambda: env.prop('u1', 'Connected') is False, 10, 'the client to be seen gone')

    uids, gids, groups = uid_of_worker()
    check(uids == ['65534'] * 4 and gids == ['65534'] * 4, f'the worker is nobody: uid {uids} gid {gids}')
    check(groups == [], f'no supplementary groups: {groups}')
    verified_io()
    # A killed worker comes back as the same user, with the fd opened again by vfud.
    old = env.prop('u1', 'WorkerPID')
    os.kill(old, signal.SIGKILL)
    env.wait_for(lambda: env.prop('u1', 'WorkerPID') not in (0, old) and env.prop('u1', 'State') == 'listening',
                 10, 'the worker to be restarted')
    check(uid_of_worker()[0] == ['65534'] * 4, 'the restarted worker is unprivileged too')
    verified_io()
    env.dev('u1', 'Stop')
    env.stop_vfud()

    # The default (no User=): vfu-worker; where it does not exist, devices refuse to start as root.
    with open(env.config, 'w') as f:
        f.write('[Manager]\nAdminGroup=\n[Libvirt]\nEnabled=no\n')
    env.start_vfud()
    try:
        pw = __import__('pwd').getpwnam('vfu-worker')
    except KeyError:
        pw = None
    if pw:
        env.dev('u1', 'Start')
        check(uid_of_worker()[0][0] == str(pw.pw_uid), 'the default worker user is vfu-worker')
        env.dev('u1', 'Stop')
    else:
        msg = env.expect(ERR + 'InvalidArgument', env.dev, 'u1', 'Start')
        check("'vfu-worker' does not exist" in msg and 'User=root' in msg, msg)
        check(env.prop('u1', 'WorkerPID') == 0, 'no worker runs as root instead')
        with open(os.path.join(env.dir, 'vfud.log')) as f:
            check("worker user 'vfu-worker' does not exist" in f.read(), 'vfud warned at start')
    env.stop_vfud()

    # Root only by configuration.
    with open(env.config, 'a') as f:
        f.write('[Worker]\nUser=root\n')
    env.start_vfud()
    env.dev('u1', 'Start')
    check(uid_of_worker()[0] == ['0'] * 4, 'User=root keeps the worker as root')


def fake_systemd(env):
    """A systemd manager on the test's bus (fake-systemd.py); returns its calls and its unit directory."""
    log, units = os.path.join(env.dir, 'systemd.log'), os.path.join(env.dir, 'units')
    os.mkdir(units)
    open(log, 'w').close()
    p = env.spawn([sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake-systemd.py'),
                   env.addr, log, units])
    check(p.stdout.readline().strip() == 'ready', 'the fake systemd owns its name')

    def calls(method='StartTransientUnit'):
        with open(log) as f:
            return [c for c in (json.loads(line) for line in f) if c['method'] == method]
    return calls, units


def unit_exposure(path):
    """systemd-analyze security's overall exposure of a unit file, or None where this systemd cannot rate files."""
    if not shutil.which('systemd-analyze'):
        return None
    h = subprocess.run(['systemd-analyze', 'security', '--help'], capture_output=True, text=True)
    if '--offline' not in h.stdout:
        return None
    r = subprocess.run(['systemd-analyze', 'security', '--offline=yes', path], capture_output=True, text=True)
    m = re.search(r'Overall exposure level for \S+: ([0-9.]+)', r.stdout + r.stderr)
    check(m, f'systemd-analyze rated {path}: {r.stdout}{r.stderr}')
    return float(m.group(1)), r.stdout


def test_units(env):
    """[Worker] Units=yes: each worker a transient service through systemd's D-Bus API, fds passed, adopted, limits."""
    need_type('nvme')
    io = os.environ.get('NVME_IO')
    if os.geteuid() != 0:
        raise Skip('needs root to drop privileges')
    if not io:
        raise Skip('the NVMe I/O client is not built')
    calls, units = fake_systemd(env)
    with open(env.config, 'a') as f:
        f.write('[Worker]\nUnits=yes\n')
    # An image only root can open: the worker gets it over its standard input, from vfud.
    private = os.path.join(env.dir, 'private')
    os.mkdir(private, 0o700)
    image = os.path.join(private, 'disk.img')
    with open(image, 'wb') as f:
        f.truncate(16 * MiB)
    os.chmod(image, 0o600)
    env.start_vfud()
    env.create('nvme', 's1', '', file=image, **{'cpu-quota': 50, 'memory-max': 256 * MiB, 'io-weight': 200,
                                                 'tasks-max': 64})
    starts = calls()
    check([c['unit'] for c in starts] == ['vfu-worker@s1.service'], f'one transient unit: {starts}')
    props = starts[0]['properties']
    want = {'CPUQuotaPerSecUSec': [500000], 'MemoryMax': [256 * MiB], 'IOWeight': [200], 'TasksMax': [64],
            'PrivateNetwork': [True], 'ProtectSystem': ['strict'], 'NoNewPrivileges': [True],
            'StandardInputFileDescriptor': ['fd'], 'CapabilityBoundingSet': [(1 << 0) | (1 << 6) | (1 << 7)],
            'ReadWritePaths': [[env.runtime]], 'CollectMode': ['inactive-or-failed']}
    for k, v in want.items():
        check(props.get(k) == v, f'{k}: {props.get(k)}, expected {v}')
    check(starts[0]['mode'] == 'fail', 'the start does not replace a running unit')
    argv = props['ExecStart'][0][0][1]
    check('--handoff-fd=0' in argv and not any(a.startswith('--fd=') for a in argv), f'fds over stdin: {argv}')
    pid = env.prop('s1', 'WorkerPID')
    check(pid == starts[0]['pid'], f'vfud watches the unit\'s process ({pid}, the unit ran {starts[0]["pid"]})')
    check(proc_status(pid)['Uid'].split() == ['65534'] * 4, 'the worker dropped to its user')
    with open(os.path.join(env.dir, 'vfud.log')) as f:
        check(f'started worker {pid} in vfu-worker@s1.service' in f.read(), 'vfud logged the unit')

    def verified_io():
        c = env.spawn([io, env.prop('s1', 'SocketPath')])
        check(c.stdout.readline().startswith('ready'), 'the client is ready')
        hold_progress(env, c, 2)
        check(hold_finish(c) > 0, 'verified I/O')
        env.wait_for(lambda: env.prop('s1', 'Connected') is False, 10, 'the client to be seen gone')

    verified_io()
    # The unit's sandbox and limits, as systemd rates them (issue 14: at most 2.5).
    rated = unit_exposure(os.path.join(units, 'vfu-worker@s1.service'))
    if rated:
        check(rated[0] <= 2.5, f'worker unit exposure {rated[0]} > 2.5:\n{rated[1]}')
        print(f'worker unit exposure {rated[0]}')

    # vfud restarts: the unit's worker is adopted, no unit started.
    env.stop_vfud()
    check(pid_alive(pid), 'the worker outlives vfud')
    env.start_vfud()
    check(env.prop('s1', 'WorkerPID') == pid and env.prop('s1', 'State') == 'listening', 'the worker is adopted')
    check(len(calls()) == 1, 'adoption starts no unit')
    verified_io()

    # A killed worker: vfud clears the name and starts a new unit, with the fds again.
    os.kill(pid, signal.SIGKILL)
    env.wait_for(lambda: env.prop('s1', 'WorkerPID') not in (0, pid) and env.prop('s1', 'State') == 'listening',
                 10, 'the worker to be restarted')
    starts = calls()
    check(len(starts) == 2 and starts[1]['pid'] == env.prop('s1', 'WorkerPID'), f'a second unit: {starts}')
    check(any(c['unit'] == 'vfu-worker@s1.service' for c in calls('ResetFailedUnit')), 'the old unit reset first')
    verified_io()

    # A passt device's unit is sandboxed as the others: vfud runs passt outside it and hands over its socket.
    if shutil.which('passt'):
        env.create('virtio-net', 'sp', '', passt=True)
        start = [c for c in calls() if c['unit'] == 'vfu-worker@sp.service'][0]
        props = start['properties']
        for k, v in (('PrivateNetwork', [True]), ('RestrictAddressFamilies', [[True, ['AF_UNIX']]]),
                     ('RestrictNamespaces', [0]), ('CapabilityBoundingSet', [(1 << 0) | (1 << 6) | (1 << 7)])):
            check(props.get(k) == v, f'passt worker {k}: {props.get(k)}, expected {v}')
        rated = unit_exposure(os.path.join(units, 'vfu-worker@sp.service'))
        if rated:
            check(rated[0] <= 2.5, f'passt worker unit exposure {rated[0]} > 2.5:\n{rated[1]}')
            print(f'passt worker unit exposure {rated[0]}')
        check(env.prop('sp', 'WorkerPID') == start['pid'], 'the unit runs the passt device\'s worker')
        passt = check_passt_outside_worker(env, 'sp')
        check(len([c for c in calls() if c['unit'] == 'vfu-worker@sp.service']) == 2, 'the new worker in a new unit')
        env.mgr('DestroyDevice', '(s)', 'sp')
        env.wait_for(lambda: not pid_alive(passt), 10, 'passt to leave with its device')
    # Limits out of range are refused before anything runs.
    for opt, val in (('memory-max', 1024), ('io-weight', 0), ('io-weight', 10001), ('cpu-quota', 0)):
        msg = env.expect(ERR + 'InvalidArgument', env.create, 'nvme', 'bad1', '', size=MiB, **{opt: val})
        check(opt in msg, msg)
    # systemd refuses the unit, or the unit never runs its worker: the creation fails with the reason.
    msg = env.expect(ERR + 'WorkerFailed', env.create, 'nvme', 'refused1', '', size=MiB)
    check('did not start the worker unit' in msg and 'already loaded' in msg, msg)
    check({c['unit'] for c in calls('StopUnit')} == {'vfu-worker@refused1.service'},
          f'a unit of that name vfud could not adopt is stopped: {calls("StopUnit")}')
    msg = env.expect(ERR + 'WorkerFailed', env.create, 'nvme', 'noexec1', '', size=MiB)
    check('ended before it ran' in msg and 'journalctl -u vfu-worker@noexec1.service' in msg, msg)
    check(env.prop('s1', 'State') == 'listening', 'the other device is untouched')
    env.dev('s1', 'Stop')
    env.wait_for(lambda: not pid_alive(starts[1]['pid']), 10, 'the stopped worker to exit')


def test_worker_standalone(env):
    """vfud-worker on its own: a definition, a socket, verified I/O, control methods, clean shutdown."""
    need_type('nvme')
    worker = env_path('VFUD_WORKER')
    img = os.path.join(env.dir, 'sa.img')
    with open(img, 'wb') as f:
        f.truncate(16 * MiB)
    definition = os.path.join(env.dir, 'sa.json')
    with open(definition, 'w') as f:
        json.dump({'name': 'sa', 'type': 'nvme', 'vm': '', 'options': {
            'namespaces': [{'nsid': 1, 'path': img, 'size': 16 * MiB, 'kind': 'file'}]}}, f)
    sock, ctl = os.path.join(env.dir, 'sa.sock'), os.path.join(env.dir, 'sa.ctl')
    w = subprocess.Popen([worker, '--definition', definition, '--socket', sock, '--control', ctl],
                         stdout=env.log, stderr=env.log)
    env.children.append(w)
    env.wait_for(lambda: os.path.exists(ctl), 10, 'the worker to listen')
    io = os.environ.get('NVME_IO')
    if io:
        c = env.spawn([io, sock])
        check(c.stdout.readline().startswith('ready'), 'I/O through a standalone worker')
        hold_progress(env, c, 2)
        hold_finish(c)

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(ctl)
    f = s.makefile('rw')

    def ask(req):
        f.write(json.dumps(req) + '\n')
        f.flush()
        return json.loads(f.readline())

    info = ask({'id': 1, 'method': 'info'})['result']
    check(info['name'] == 'sa' and info['pid'] == w.pid and info['socket'] == sock, f'info {info}')
    stats = ask({'id': 2, 'method': 'stats'})['result']
    check('vfio_user' in stats and 'device' in stats, f'stats {stats}')
    if io:
        check(stats['vfio_user']['connects'] >= 1, f'stats count the connection: {stats}')
    err = ask({'id': 3, 'method': 'frobnicate', 'params': {'nsid': 1}})
    check(err['id'] == 3 and err['error']['code'] == 'unsupported', f'unknown method: {err}')
    err = ask({'id': 4, 'method': 'namespace-remove', 'params': {'nsid': 9}})
    check('error' in err, f'removing a missing namespace: {err}')
    check(ask({'id': 5, 'method': 'shutdown'}) == {'id': 5, 'result': None}, 'shutdown reply')
    check(w.wait(timeout=10) == 0, f'exit status {w.returncode}')
    check(not os.path.exists(sock) and not os.path.exists(ctl), 'sockets removed')

    # Bad invocations: a usage error, then setup errors that say what is wrong.
    r = subprocess.run([worker, '--definition', definition], capture_output=True, text=True, timeout=20)
    check(r.returncode == 2 and '--socket' in r.stderr, f'missing --socket: {r.returncode} {r.stderr}')
    for opts, text in (({'namespaces': [{'nsid': 1, 'path': '/nonexistent-dir/x.img', 'size': MiB}]}, 'nonexistent-dir'),
                       ({'queues': 0, 'namespaces': []}, 'queues')):
        with open(definition, 'w') as fh:
            json.dump({'name': 'sa', 'type': 'nvme', 'options': opts}, fh)
        r = subprocess.run([worker, '--definition', definition, '--socket', sock], capture_output=True, text=True,
                           timeout=20)
        check(r.returncode == 1 and text in r.stderr, f'{opts}: {r.returncode} {r.stderr}')
        check(not os.path.exists(sock), 'no socket left by a failed setup')
    with open(definition, 'w') as fh:
        json.dump({'name': 'sa', 'type': 'floppy'}, fh)
    r = subprocess.run([worker, '--definition', definition, '--socket', sock], capture_output=True, text=True,
                       timeout=20)
    check(r.returncode == 1 and 'unknown device type' in r.stderr, f'unknown type: {r.stderr}')


def test_completion(env):
    """bash completion of vfuctl: verbs, options per type, device names from vfud."""
    env.start_vfud()
    env.create_any(any_type(), 'cmp1')
    script = env_path('COMPLETION')

    def complete(*words):
        quoted = ' '.join("'" + w + "'" for w in words)
        cmd = f'source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _vfuctl; ' \
              'printf "%s\\n" "${COMPREPLY[@]}"'
        env_ = dict(os.environ, VFUD_BUS=env.addr,
                    PATH=os.path.dirname(env_path('VFUCTL')) + ':' + os.environ.get('PATH', ''))
        return subprocess.run(['bash', '-c', cmd], capture_output=True, text=True, env=env_).stdout.split()

    check(complete('vfuctl', 'cr') == ['create'], f'verb: {complete("vfuctl", "cr")}')
    check(complete('vfuctl', 'create', 'v') == ['virtio-blk', 'virtio-net'], 'type')
    check(sorted(complete('vfuctl', 'create', 'nvme', '--s')) == ['--serial', '--size', '--size-iops'], 'nvme options')
    check('--null' in complete('vfuctl', 'create', 'nvme', '--nu'), 'nvme --null')
    check('--tap' in complete('vfuctl', 'create', 'virtio-net', '--t'), 'virtio-net options')
    check(sorted(complete('vfuctl', 'create', 'virtio-blk', '--r')) ==
          ['--rbd', '--rbd-conf', '--rbd-id', '--rbd-keyring', '--read-only'], 'virtio-blk options')
    check('--tap' not in complete('vfuctl', 'create', 'virtio-blk', '--'), 'no virtio-net option for virtio-blk')
    check(complete('vfuctl', 'show', '') == ['cmp1'], f'device names: {complete("vfuctl", "show", "")}')
    check(complete('vfuctl', 'namespace', 'add', 'c') == ['cmp1'], 'namespace device')
    check(sorted(complete('vfuctl', 'link', '')) == ['down', 'up'], 'link states')


def completion_runner(env):
    script = env_path('COMPLETION')

    def complete(*words):
        quoted = ' '.join("'" + w + "'" for w in words)
        cmd = f'source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _vfuctl; ' \
              'printf "%s\\n" "${COMPREPLY[@]}"'
        env_ = dict(os.environ, VFUD_BUS=env.addr,
                    PATH=os.path.dirname(env_path('VFUCTL')) + ':' + os.environ.get('PATH', ''))
        return sorted(subprocess.run(['bash', '-c', cmd], capture_output=True, text=True, env=env_).stdout.split())
    return complete


def test_completion_slots(env):
    """bash completion: an option's value is never a device name, positional slots are counted,
    and the verbs and per-verb options agree with vfuctl's help."""
    env.start_vfud()
    env.create_any(any_type(), 'cmp1')
    complete = completion_runner(env)
    cases = [
        (('vfuctl', 'migrate', 'cmp1', '--timeout', ''), []),
        (('vfuctl', 'migrate', 'cmp1', '--libvirt-uri', ''), []),
        (('vfuctl', 'create', 'nvme', '--size', ''), []),
        (('vfuctl', 'create', 'nvme', '--null', ''), []),
        (('vfuctl', 'list', '--vm', ''), []),
        (('vfuctl', 'migrate', 'cmp1', '--storage', ''), ['copy', 'shared']),
        (('vfuctl', 'migrate', 'cmp1', '--storage', '=', 's'), ['shared']),
        (('vfuctl', 'migrate', 'cmp1', '--storage', '='), ['copy', 'shared']),
        (('vfuctl', 'migrate', 'cmp1', '--storage=c'), ['--storage=copy']),
        (('vfuctl', 'show', 'cmp1', ''), []),
        (('vfuctl', 'attach', 'cmp1', ''), []),
        (('vfuctl', 'migrate', 'cmp1', ''), []),
        (('vfuctl', 'migrate', '--vm', 'foo', ''), []),
        (('vfuctl', 'migrate', '--timeout', '5', ''), ['cmp1']),
        (('vfuctl', 'show', '--json', ''), ['cmp1']),
        (('vfuctl', '--bus', env.addr, 'show', ''), ['cmp1']),
        (('vfuctl', '--bus', '=', env.addr, 'show', ''), ['cmp1']),
        (('vfuctl', 'stop', 'cmp1', ''), ['cmp1']),
        (('vfuctl', 'namespace', 'add', 'cmp1', ''), []),
        (('vfuctl', 'namespace', 'add', 'cmp1', '2', ''), []),
        (('vfuctl', 'link', 'up', 'cmp1', ''), []),
        (('vfuctl', 'create', 'nvme', ''), []),
        (('vfuctl', 'help', 'mi'), ['migrate']),
        (('vfuctl', 'help', 'migrate', ''), []),
    ]
    for words, want in cases:
        got = complete(*words)
        check(got == want, f'{" ".join(words)!r}: {got}, expected {want}')

    # the verbs and each verb's options are the ones vfuctl's help lists
    verbs = help_verbs(env)
    check(complete('vfuctl', '') == sorted(verbs), f'verbs: {complete("vfuctl", "")} vs --help {verbs}')
    rc, main_help, err = env.vfuctl('--help')
    global_opts = help_options(main_help)
    for verb in verbs:
        rc, text, err = env.vfuctl('help', verb)
        want = help_options(text)
        if verb == 'create':
            got = [o for t in ('nvme', 'virtio-net', 'virtio-blk') for o in complete('vfuctl', 'create', t, '--')]
        else:
            got = complete('vfuctl', verb, '--')
        got = {o[2:] for o in got} - global_opts
        check(got == want, f'{verb}: completion offers {sorted(got)}, help lists {sorted(want)}')


DOMAIN_Q35 = """<domain type='kvm'>
  <name>lv1</name>
  <uuid>6f1b7c2e-0d43-4c1e-9b55-3a0d2f7e9a10</uuid>
  <memory unit='GiB'>1</memory>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
</domain>
"""


def vm_xml(env, vm, domain=None):
    opts = {'domain-xml': GLib.Variant('s', domain)} if domain is not None else {}
    return env.mgr('GetVmXml', '(sa{sv})', vm, opts)[0]


def test_libvirt(env):
    """libvirt unreachable: devices work, the reason is reported; rendering, attach and detach errors."""
    t = any_type()
    with open(env.config, 'a') as f:
        f.write(f'[Libvirt]\nEnabled=yes\nURI=qemu+unix:///system?socket={env.dir}/no-libvirt-sock\n')
    env.start_vfud()
    env.create_any(t, 'lv-a', 'lv1')
    check(env.prop('lv-a', 'State') == 'listening', 'the device works without libvirt')
    check(env.prop('lv-a', 'LibvirtStatus') == 'failed', f'LibvirtStatus {env.prop("lv-a", "LibvirtStatus")}')
    err = env.prop('lv-a', 'LibvirtError')
    check(err and 'libvirt' in err.lower(), f'LibvirtError says why: {err!r}')
    env.create_any(t, 'lv-free')
    check(env.prop('lv-free', 'LibvirtStatus') == '', 'a device without VM has no libvirt status')

    # vfuctl create warns, and still succeeds
    rc, out, errout = env.vfuctl('create', 'nvme', '--name', 'lv-b', '--vm', 'lv1', '--size', '1M') \
        if t == 'nvme' else (0, '', '')
    if t == 'nvme':
        check(rc == 0, f'vfuctl create: {rc} {errout}')
        check('warning' in errout and 'not updated' in errout, f'vfuctl create warns: {errout!r}')
    else:
        env.create_any(t, 'lv-b', 'lv1')

    rc, out, errout = env.vfuctl('show', 'lv-a')
    check(rc == 0 and 'Libvirt: failed: ' in out, f'vfuctl show reports the libvirt status: {out!r}')
    msg = env.expect(ERR + 'LibvirtUnavailable', vm_xml, env, 'lv1')
    check('libvirt' in msg.lower(), msg)
    rc, out, errout = env.vfuctl('xml', '--vm', 'lv1')
    check(rc == 7 and 'libvirt' in errout.lower(), f'vfuctl xml without libvirt: {rc} {errout!r}')

    # Rendering against a given definition: every device of the VM, memfd shared memory, stable output.
    out = vm_xml(env, 'lv1', DOMAIN_Q35)
    root = ET.fromstring(out)
    qemu_ns = '{http://libvirt.org/schemas/domain/qemu/1.0}'
    args = [a.get('value') for a in root.iter(qemu_ns + 'arg')]
    devs = [json.loads(a) for a in args if a and a.startswith('{') and '"vfio-user-pci"' in a]
    ids = sorted(d['id'] for d in devs)
    check(ids == ['vfu-lv-a', 'vfu-lv-b'], f'vfio-user-pci ids {ids}')
    for d in devs:
        check(d['socket'] == {'type': 'unix', 'path': env.prop(d['id'][4:], 'SocketPath')}, f'socket {d}')
    mb = root.find('memoryBacking')
    check(mb is not None and mb.find('source').get('type') == 'memfd' and mb.find('access').get('mode') == 'shared',
          'memfd shared memory')
    check(vm_xml(env, 'lv1', out) == out, 'rendering is idempotent')
    other = vm_xml(env, 'other-vm', DOMAIN_Q35)
    check('vfio-user-pci' not in other, 'a VM without devices gets none')

    xml_file = os.path.join(env.dir, 'dom.xml')
    with open(xml_file, 'w') as f:
        f.write(DOMAIN_Q35)
    rc, cli, errout = env.vfuctl('xml', '--vm', 'lv1', '--domain-xml', xml_file)
    check(rc == 0 and cli == out, f'vfuctl xml --domain-xml prints the same XML: {rc} {errout}')

    # Destroying a device removes only its entries.
    env.mgr('DestroyDevice', '(s)', 'lv-b')
    after = vm_xml(env, 'lv1', out)
    check('vfu-lv-b' not in after and 'vfu-lv-a' in after, 'only the destroyed device left the definition')

    # Bad input: clear errors, nothing changed.
    msg = env.expect(ERR + 'InvalidArgument', vm_xml, env, 'lv1', '<domain')
    check('XML' in msg or 'xml' in msg, msg)
    env.expect(ERR + 'InvalidArgument', vm_xml, env, '', DOMAIN_Q35)
    env.expect(ERR + 'LibvirtUnavailable', env.mgr, 'AttachDevice', '(ss)', 'lv-free', 'lv1')
    check(env.prop('lv-free', 'Vm') == '', 'a failed attach leaves the device unattached')
    msg = env.expect(ERR + 'DeviceBusy', env.mgr, 'AttachDevice', '(ss)', 'lv-a', 'lv2')
    check('lv1' in msg and 'detach' in msg, msg)
    env.expect(ERR + 'NoSuchDevice', env.mgr, 'AttachDevice', '(ss)', 'nope', 'lv1')
    env.expect(ERR + 'InvalidArgument', env.mgr, 'DetachDevice', '(s)', 'lv-free')
    env.expect(ERR + 'LibvirtUnavailable', env.mgr, 'DetachDevice', '(s)', 'lv-a')
    check(env.prop('lv-a', 'Vm') == 'lv1', 'a failed detach keeps the device in its VM')
    rc, out, errout = env.vfuctl('attach', 'lv-free', '--vm', 'lv1')
    check(rc == 7 and 'libvirt' in errout.lower(), f'vfuctl attach: {rc} {errout!r}')
    rc, out, errout = env.vfuctl('attach', 'lv-free')
    check(rc == 2 and '--vm' in errout, f'vfuctl attach without --vm: {rc} {errout!r}')
    rc, out, errout = env.vfuctl('detach', 'lv-free')
    check(rc == 2 and 'no VM' in errout, f'vfuctl detach: {rc} {errout!r}')


def test_libvirt_disabled(env):
    """[Libvirt] Enabled=no: devices report it, the libvirt methods say so."""
    t = any_type()
    env.start_vfud()
    env.create_any(t, 'ld', 'vm1')
    check(env.prop('ld', 'LibvirtStatus') == 'disabled', f'LibvirtStatus {env.prop("ld", "LibvirtStatus")}')
    msg = env.expect(ERR + 'LibvirtUnavailable', vm_xml, env, 'vm1')
    check('Enabled=no' in msg, msg)
    check('vfu-ld' in vm_xml(env, 'vm1', DOMAIN_Q35), 'rendering a given definition needs no libvirt')


def copy_opts(storage='copy'):
    return {'storage': GLib.Variant('s', storage)} if storage else {}


def ns_path(env, name, nsid=1):
    for ns in env.prop(name, 'Backend')['namespaces']:
        if ns['nsid'] == nsid:
            return ns['path']
    raise Fail(f'{name} has no namespace {nsid}')


def migrate_case(env, fn, wrap=()):
    """Run fn(env, dst) with a second vfud on a bus of its own as the destination (both under wrap)."""
    dst = Env()
    env.wrap = dst.wrap = list(wrap)
    failed = True
    try:
        env.start_vfud()
        dst.start_vfud()
        fn(env, dst)
        dst.stop_vfud(signal.SIGTERM)
        check(dst.vfud.returncode == 0, f'destination vfud exited with {dst.vfud.returncode}')
        dst.log.flush()
        with open(os.path.join(dst.dir, 'vfud.log')) as f:
            log = f.read()
        for marker in ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:', 'CRITICAL'):
            check(marker not in log, f'"{marker}" in the destination vfud log')
        failed = False
    finally:
        dst.cleanup(failed)


def test_migrate(env):
    """Cold migration between two vfuds: data written by a VMM arrives intact, with progress; the source goes."""
    need_type('nvme')
    io = os.environ.get('NVME_IO')
    if not io:
        raise Skip('the NVMe I/O client is not built')

    def run(env, dst):
        env.create('nvme', 'mg1', 'vmm', size=16 * MiB)
        env.create('nvme', 'mg2', 'vmm', size=8 * MiB, serial='MIG2', hotplug=True,
                   **{'iops-total': 5000, 'group-bytes-read': 10 ** 8})
        env.dev('mg2', 'AddNamespace', '(ust)', 2, '', MiB)
        env.dev('mg2', 'SetLimits', '(ua{sv})', 2, {'iops-write': GLib.Variant('t', 300)})
        limits = env.prop('mg2', 'Limits')
        c = env.spawn([io, env.prop('mg1', 'SocketPath')])
        check(c.stdout.readline().startswith('ready'), 'nvme-io ready')
        hold_progress(env, c, 2)
        hold_finish(c)
        env.wait_for(lambda: env.prop('mg1', 'Connected') is False, 5, 'the VMM to leave')
        with open(ns_path(env, 'mg1'), 'rb') as f:
            data = f.read()
        check(len(data) == 16 * MiB and len(data) - data.count(0) > 64 * 1024,
              f'the VMM wrote data ({len(data) - data.count(0)} non-zero bytes)')

        env.signals.clear()
        rc, out, err = env.vfuctl('migrate', '--vm', 'vmm', '--to', dst.addr, '--storage', 'copy')
        check(rc == 0, f'vfuctl migrate: {rc} {err}')
        check('mg1: migrated to' in out and 'mg2: migrated to' in out, f'vfuctl output {out!r}')
        got = dst.mgr('ListDevices', '(s)', '')[0]
        check(sorted((d[0], d[2], d[3]) for d in got) == [('mg1', 'vmm', 'listening'), ('mg2', 'vmm', 'listening')],
              f'destination devices {got}')
        with open(ns_path(dst, 'mg1'), 'rb') as f:
            check(f.read() == data, 'the image arrived byte for byte')
        check(dst.prop('mg2', 'Backend')['serial'] == 'MIG2', 'the definition arrived with it')
        check(dst.prop('mg2', 'Backend').get('msi') is True and dst.prop('mg2', 'Backend').get('hotplug') is True,
              f'an MSI device stays one: {dst.prop("mg2", "Backend")}')
        check(dst.prop('mg2', 'Limits') == limits == {'ns1': {'iops-total': 5000}, 'ns2': {'iops-write': 300},
                                                     'group': {'bytes-read': 10 ** 8}},
              f'the I/O limits arrived with it: {dst.prop("mg2", "Limits")}')
        check(dst.prop('mg1', 'MigratedFrom') == socket.gethostname(), 'the copy says where it came from')
        check(env.mgr('ListDevices', '(s)', '')[0] == [], 'the source devices are gone')
        check(env.leftovers() == [], f'source leftovers {env.leftovers()}')

        # progress as properties: the final figures cover every image (mg2's second namespace too)
        env.pump(0.3)
        path = '/org/vfu/vfud1/device/mg1'
        prog = [s[3][1]['MigrationProgress'] for s in env.signals
                if s[2] == 'PropertiesChanged' and s[0] == path and 'MigrationProgress' in s[3][1]]
        check(prog and prog[-1]['bytes'] == prog[-1]['total'] == 25 * MiB, f'progress {prog[-1:] if prog else prog}')
        check(all(a['bytes'] <= b['bytes'] for a, b in zip(prog, prog[1:])), 'progress only grows')
        states = [s[3][1]['MigrationState'] for s in env.signals
                  if s[2] == 'PropertiesChanged' and s[0] == path and 'MigrationState' in s[3][1]]
        check(states[0] == 'preparing' and states[-1] == 'completed', f'states {states}')

        # the copy serves: a VMM does verified I/O on the destination
        c = dst.spawn([io, dst.prop('mg1', 'SocketPath')])
        check(c.stdout.readline().startswith('ready'), 'nvme-io ready on the destination')
        hold_finish(c)
        check(dst.prop('mg1', 'MigratedFrom') == '', 'its first client makes it at home there')
        with open(os.path.join(dst.state, 'devices', 'mg1.json')) as f:
            check('migrated_from' not in json.load(f), 'and the saved definition says so')
        with open(os.path.join(dst.state, 'devices', 'mg2.json')) as f:
            check(json.load(f).get('migrated_from') == socket.gethostname(), 'the unused one still arrived')

    migrate_case(env, run)


def test_migrate_refused(env):
    """Refusals change nothing: a connected client, storage not said or wrong, a destination that says no."""
    t = any_type()
    need_type('nvme')

    def run(env, dst):
        env.create('nvme', 'mr1', 'vmr', size=MiB)
        c = hold(env, 'mr1')
        env.wait_for(lambda: env.prop('mr1', 'Connected'), 5, 'Connected')
        msg = env.expect(ERR + 'NotMigratable', env.mgr, 'MigrateDevice', '(ssa{sv})', 'mr1', dst.addr, copy_opts())
        check('QEMU' in msg and 'shut the VM down' in msg and 'vfuctl migrate --vm vmr' in msg, msg)
        rc, out, err = env.vfuctl('migrate', 'mr1', '--to', dst.addr, '--storage', 'copy')
        check(rc == 8 and 'cannot move while the VM runs' in err, f'vfuctl migrate while connected: {rc} {err!r}')
        check(env.prop('mr1', 'State') == 'connected', 'the device keeps serving')
        hold_progress(env, c, 1)
        hold_finish(c)
        env.wait_for(lambda: env.prop('mr1', 'State') == 'listening', 5, 'listening')

        msg = env.expect(ERR + 'InvalidArgument', env.mgr, 'MigrateDevice', '(ssa{sv})', 'mr1', dst.addr, {})
        check('storage=copy' in msg, msg)
        msg = env.expect(ERR + 'NotMigratable', env.mgr, 'MigrateDevice', '(ssa{sv})', 'mr1', dst.addr,
                         copy_opts('shared'))
        check('storage=copy' in msg, msg)
        env.expect(ERR + 'InvalidArgument', env.mgr, 'MigrateDevice', '(ssa{sv})', 'mr1', dst.addr,
                   copy_opts('teleport'))
        env.expect(ERR + 'NoSuchDevice', env.mgr, 'MigrateDevice', '(ssa{sv})', 'nope', dst.addr, copy_opts())
        env.expect(ERR + 'NoSuchVm', env.mgr, 'MigrateVm', '(ssa{sv})', 'novm', dst.addr, copy_opts())
        rc, out, err = env.vfuctl('migrate', 'mr1')
        check(rc == 2 and '--to' in err, f'vfuctl migrate without --to: {rc} {err!r}')
        e = env.error(env.mgr, 'MigrateDevice', '(ssa{sv})', 'mr1', f'unix:path={env.dir}/no-bus', copy_opts())
        check('cannot reach the destination' in e.message, e.message)
        check(env.prop('mr1', 'MigrationState') == 'failed', 'MigrationState failed')
        env.wait_for(lambda: env.prop('mr1', 'State') == 'listening', 10, 'the device to listen again')

        # The destination refuses the second device: the first is rolled back there.
        env.create('nvme', 'mr2', 'vmr', size=MiB)
        dst.create('nvme', 'mr2', 'other', size=2 * MiB)
        msg = env.expect(ERR + 'DeviceExists', env.mgr, 'MigrateVm', '(ssa{sv})', 'vmr', dst.addr, copy_opts())
        check('mr2' in msg, msg)
        got = [(d[0], d[2]) for d in dst.mgr('ListDevices', '(s)', '')[0]]
        check(got == [('mr2', 'other')], f'the destination is as it was: {got}')
        check(sorted(os.listdir(os.path.join(dst.state, 'images'))) == ['mr2-ns1.img']
              or len(os.listdir(os.path.join(dst.state, 'images'))) == 1, 'no image left behind on the destination')
        for n in ('mr1', 'mr2'):
            env.wait_for(lambda: env.prop(n, 'State') == 'listening', 10, f'{n} to listen again after the rollback')
            check(env.prop(n, 'MigrationState') == 'failed', f'{n} MigrationState')
        # and a retry after the clash is cleared goes through
        dst.mgr('DestroyDevice', '(s)', 'mr2')
        env.mgr('MigrateVm', '(ssa{sv})', 'vmr', dst.addr, copy_opts())
        check(sorted(d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]) == ['mr1', 'mr2'], 'migrated after all')

    migrate_case(env, run)


def test_migrate_shared(env):
    """Shared storage: the same path must exist on the destination; images cannot be shared."""
    need_type('nvme')

    def run(env, dst):
        disk = os.path.join(env.dir, 'shared.img')
        with open(disk, 'wb') as f:
            f.truncate(4 * MiB)
        env.create('nvme', 'ms1', '', file=disk)
        env.mgr('StopDevice', '(s)', 'ms1')
        msg = env.expect(ERR + 'NotMigratable', env.mgr, 'MigrateDevice', '(ssa{sv})', 'ms1', dst.addr, copy_opts())
        check('storage=shared' in msg, msg)
        env.mgr('MigrateDevice', '(ssa{sv})', 'ms1', dst.addr, copy_opts('shared'))
        check(dst.prop('ms1', 'State') == 'listening', 'created on the destination')
        check(ns_path(dst, 'ms1') == disk, 'same backing path')
        check(os.path.exists(disk), 'the shared backing file stays')
        check(env.mgr('ListDevices', '(s)', '')[0] == [], 'gone from the source')

        # a path the destination does not have: refused there, nothing left anywhere
        gone = os.path.join(env.dir, 'vanishing.img')
        with open(gone, 'wb') as f:
            f.truncate(MiB)
        env.create('nvme', 'ms2', '', file=gone)
        dst_dir = dst.dir
        os.rename(gone, os.path.join(dst_dir, 'moved.img'))
        e = env.error(env.mgr, 'MigrateDevice', '(ssa{sv})', 'ms2', dst.addr, copy_opts('shared'))
        check('vanishing.img' in e.message, e.message)
        check([d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['ms1'], 'nothing created on the destination')
        check(env.prop('ms2', 'MigrationState') == 'failed', 'the source device is kept')

    migrate_case(env, run)


def remote_source(env, dst):
    """The ssh shim in place and the source vfud restarted so that its ssh to root@vfu-remote reaches dst's bus;
    returns the relay's control file (see STREAM_RELAY): absent, the stream passes untouched."""
    log = ssh_shim(env)
    env.stop_vfud()
    os.environ['VFU_TEST_SSH_BUS'] = dst.addr
    env.start_vfud()
    return log + '.relay'


def relay_set(relay, op, at):
    for f in (relay + '.held', relay + '.release'):
        if os.path.exists(f):
            os.unlink(f)
    with open(relay, 'w') as f:
        f.write(f'{op} {at}')


def random_image(env, name, size):
    env.mgr('StopDevice', '(s)', name)
    with open(ns_path(env, name), 'r+b') as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    with open(ns_path(env, name), 'rb') as f:
        data = f.read()
    env.mgr('StartDevice', '(s)', name)
    return data


def test_migrate_abort(env):
    """vfud stopped in the middle of a copy: the destination is rolled back, the device stays and runs again.

    The image stream goes through the ssh transport with a relay that holds it after 8 MiB of 64 until the
    source vfud says it is stopping the migration: the abort always lands mid-copy."""
    need_type('nvme')

    def run(env, dst):
        relay = remote_source(env, dst)
        env.create('nvme', 'big', 'vmb', size=64 * MiB)
        random_image(env, 'big', 64 * MiB)
        relay_set(relay, 'hold', 8 * MiB)
        # vfuctl prints the progress it reads from MigrationProgress while the copy runs
        cli = env.spawn([env_path('VFUCTL'), '--bus', env.addr, 'migrate', 'big', '--to', 'root@vfu-remote',
                         '--storage', 'copy'])
        env.wait_for(lambda: os.path.exists(relay + '.held'), 60, 'the copy to reach the hold point')
        env.wait_for(lambda: env.prop('big', 'MigrationProgress').get('bytes', 0) > 0, 10, 'progress')
        check([d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['big'], 'the copy exists there')
        env.vfud.send_signal(signal.SIGTERM)
        env.wait_for(lambda: 'vfud is exiting, stopping it' in open(os.path.join(env.dir, 'vfud.log')).read(),
                     20, 'the source to stop the migration')
        open(relay + '.release', 'w').close()
        env.vfud.wait(timeout=60)
        check(env.vfud.returncode == 0, f'vfud exited with {env.vfud.returncode}')
        env.wait_for(lambda: not env.name_owned_raw(), 10, 'the bus name to be released')
        cli.wait(timeout=30)
        check(cli.returncode != 0, f'vfuctl migrate failed: {cli.returncode}')
        os.unlink(relay)
        env.start_vfud()
        here = [d[0] for d in env.mgr('ListDevices', '(s)', '')[0]]
        there = [d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]]
        check((here, there) == (['big'], []), f'rolled back: here {here}, there {there}')
        env.wait_for(lambda: env.prop('big', 'State') == 'listening', 10, 'the device to run again')
        check(os.listdir(os.path.join(dst.state, 'images')) == [], 'no image left on the destination')
        check(env.prop('big', 'MigrationState') == 'failed' or env.prop('big', 'MigrationState') == '',
              f'MigrationState {env.prop("big", "MigrationState")!r}')

    migrate_case(env, run)


def rolled_back(env, dst, name, leftover=()):
    """The migration of name failed: it runs here again, nothing of it is on dst (but leftover names)."""
    env.wait_for(lambda: env.prop(name, 'State') == 'listening', 20, f'{name} to listen again')
    check(env.prop(name, 'MigrationState') == 'failed', f'MigrationState {env.prop(name, "MigrationState")!r}')
    env.wait_for(lambda: sorted(d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]) == sorted(leftover), 20,
                 'the destination to be rolled back')
    if not leftover:
        check(os.listdir(os.path.join(dst.state, 'images')) == [], 'no image left on the destination')


def test_migrate_cancel(env):
    """CancelMigration before any byte arrived, mid-copy, and Ctrl-C in vfuctl migrate (--json progress): the
    copy stops, the destination is rolled back, the device runs here with its image unchanged; after the
    migration finished there is nothing to cancel.  The image goes through the ssh transport with a relay that
    holds the stream (STREAM_RELAY), so each cancel lands where it is meant to."""
    need_type('nvme')

    def start(env, relay, op, at, *extra):
        relay_set(relay, op, at)
        cli = env.spawn([env_path('VFUCTL'), '--bus', env.addr, 'migrate', 'mc', '--to', 'root@vfu-remote',
                         '--storage', 'copy'] + list(extra), stderr=subprocess.PIPE)
        env.wait_for(lambda: os.path.exists(relay + '.held'), 60, 'the copy to reach the hold point')
        return cli

    def finish(cli, relay):
        out, err = cli.communicate(timeout=60)
        open(relay + '.release', 'w').close()
        return out, err

    def run(env, dst):
        relay = remote_source(env, dst)
        env.create('nvme', 'mc', 'vmc', size=32 * MiB)
        data = random_image(env, 'mc', 32 * MiB)

        # before the copy: the device exists there, no byte of its image arrived
        cli = start(env, relay, 'hold', 0)
        check([d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['mc'], 'the copy exists there')
        env.mgr('CancelMigration', '(s)', 'mc')
        out, err = finish(cli, relay)
        check(cli.returncode != 0 and 'cancelled (CancelMigration)' in err, f'vfuctl migrate: {cli.returncode} {err!r}')
        rolled_back(env, dst, 'mc')

        # mid-copy, by VM name
        cli = start(env, relay, 'hold', 8 * MiB)
        env.wait_for(lambda: 0 < env.prop('mc', 'MigrationProgress').get('bytes', 0) < 32 * MiB, 10, 'progress')
        env.mgr('CancelMigration', '(s)', 'vmc')
        out, err = finish(cli, relay)
        check(cli.returncode != 0 and 'cancelled' in err, f'vfuctl migrate: {cli.returncode} {err!r}')
        rolled_back(env, dst, 'mc')

        # Ctrl-C in vfuctl migrate --json: progress as JSON lines, then the cancel
        cli = start(env, relay, 'hold', 8 * MiB, '--json')
        env.wait_for(lambda: 0 < env.prop('mc', 'MigrationProgress').get('bytes', 0), 10, 'progress')
        env.pump(0.5)
        cli.send_signal(signal.SIGINT)
        out, err = finish(cli, relay)
        check(cli.returncode != 0 and 'cancelling the migration of mc' in err and 'cancelled' in err,
              f'vfuctl migrate after Ctrl-C: {cli.returncode} {err!r}')
        lines = [json.loads(x) for x in out.splitlines()]
        check(lines and all(x['device'] == 'mc' for x in lines), f'JSON lines {out!r}')
        copying = [x for x in lines if x['state'] == 'copying']
        check(copying and all(0 <= x['bytes'] < x['total'] == 32 * MiB for x in copying), f'progress {copying}')
        check(all('remaining' not in x or x['rate'] > 0 for x in lines), f'a time left only with a rate: {lines}')
        rolled_back(env, dst, 'mc')
        with open(ns_path(env, 'mc'), 'rb') as f:
            check(f.read() == data, 'the image here is as it was')

        # nothing held: it completes, and then there is nothing to cancel
        os.unlink(relay)
        rc, out, err = env.vfuctl('migrate', 'mc', '--to', 'root@vfu-remote', '--storage', 'copy')
        check(rc == 0 and 'mc: migrated to root@vfu-remote' in out, f'migrate: {rc} {out!r} {err!r}')
        env.expect(ERR + 'NotRunning', env.mgr, 'CancelMigration', '(s)', 'mc')
        check([d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['mc'], 'it stays there')
        check(env.mgr('ListDevices', '(s)', '')[0] == [], 'and is gone here')
        with open(ns_path(dst, 'mc'), 'rb') as f:
            check(f.read() == data, 'the image arrived byte for byte')

    migrate_case(env, run)


def test_migrate_stream_faults(env):
    """The destination vfud killed mid-copy, and a corrupted extent: each fails with the reason, the device runs
    here again, and (killed) the copy left there is named in the source's log."""
    need_type('nvme')

    def run(env, dst):
        relay = remote_source(env, dst)
        env.create('nvme', 'mf', 'vmf', size=16 * MiB)
        data = random_image(env, 'mf', 16 * MiB)

        # one byte of the second MiB inverted on its way
        relay_set(relay, 'flip', MiB + 12345)
        rc, out, err = env.vfuctl('migrate', 'mf', '--to', 'root@vfu-remote', '--storage', 'copy')
        check(rc != 0 and 'checksum mismatch in the extent of' in err, f'corrupted: {rc} {err!r}')
        rolled_back(env, dst, 'mf')

        # the destination's vfud dies mid-copy
        relay_set(relay, 'hold', 4 * MiB)
        cli = env.spawn([env_path('VFUCTL'), '--bus', env.addr, 'migrate', 'mf', '--to', 'root@vfu-remote',
                         '--storage', 'copy'], stderr=subprocess.PIPE)
        env.wait_for(lambda: os.path.exists(relay + '.held'), 60, 'the copy to reach the hold point')
        dst.vfud.send_signal(signal.SIGKILL)
        dst.vfud.wait(timeout=20)
        open(relay + '.release', 'w').close()
        out, err = cli.communicate(timeout=60)
        check(cli.returncode != 0 and 'receiving namespace 1 of mf' in err, f'destination killed: {cli.returncode} '
              f'{err!r}')
        env.wait_for(lambda: env.prop('mf', 'State') == 'listening', 20, 'mf to listen again')
        check(env.prop('mf', 'MigrationState') == 'failed', 'MigrationState failed')
        env.log.flush()
        with open(os.path.join(env.dir, 'vfud.log')) as f:
            check('could not remove the copy on root@vfu-remote' in f.read(), 'the leftover is named in the log')
        os.unlink(relay)
        dst.start_vfud()
        check([d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['mf'], 'the half copy is there')
        dst.mgr('DestroyDevice', '(s)', 'mf')
        with open(ns_path(env, 'mf'), 'rb') as f:
            check(f.read() == data, 'the image here is as it was')

    migrate_case(env, run)


def test_migrate_full_disk(env):
    """A destination whose state directory fills up mid-copy (a 6 MiB tmpfs in a mount namespace of its own):
    the migration fails with ENOSPC's reason, both sides as before."""
    need_type('nvme')
    if os.geteuid() != 0 or not shutil.which('unshare'):
        raise Skip('needs root and unshare(1) for a small tmpfs')
    probe = tempfile.mkdtemp(prefix='vfud-test-mnt-')
    try:
        if subprocess.run(['unshare', '-m', '--propagation', 'private', 'mount', '-t', 'tmpfs', '-o', 'size=1m',
                           'vfu-test', probe], capture_output=True).returncode != 0:
            raise Skip('cannot mount a tmpfs in a mount namespace here')
    finally:
        os.rmdir(probe)

    def run(env, dst):
        dst.stop_vfud()
        dst.wrap = ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
                    f'mount -t tmpfs -o size=6m,mode=0755 vfu-test {dst.state} && exec "$@"', 'sh']
        dst.start_vfud()
        env.create('nvme', 'mfull', '', size=16 * MiB)
        data = random_image(env, 'mfull', 16 * MiB)
        msg = env.expect(ERR + 'BackendFailed', env.mgr, 'MigrateDevice', '(ssa{sv})', 'mfull', dst.addr,
                         copy_opts())
        check('No space left on device' in msg, msg)
        env.wait_for(lambda: env.prop('mfull', 'State') == 'listening', 20, 'mfull to listen again')
        check(dst.mgr('ListDevices', '(s)', '')[0] == [], 'nothing left on the destination')
        with open(ns_path(env, 'mfull'), 'rb') as f:
            check(f.read() == data, 'the image here is as it was')

    migrate_case(env, run)


def test_migrate_sparse(env):
    """An image of holes, zero blocks and data arrives byte for byte with its holes kept (through the pipe to a
    bus address); the progress covers the whole image and ends at it."""
    need_type('nvme')

    def run(env, dst):
        env.create('nvme', 'msp', '', size=256 * MiB)
        env.mgr('StopDevice', '(s)', 'msp')
        path = ns_path(env, 'msp')
        with open(path, 'r+b') as f:
            for off in (0, 5 * MiB + 4096, 100 * MiB, 256 * MiB - 8192):
                f.seek(off)
                f.write(os.urandom(8192))
            f.seek(50 * MiB)
            f.write(bytes(4 * MiB))             # written zeros: allocated here, not sent
        with open(path, 'rb') as f:
            data = f.read()
        env.signals.clear()
        env.mgr('MigrateDevice', '(ssa{sv})', 'msp', dst.addr, copy_opts())
        got = ns_path(dst, 'msp')
        with open(got, 'rb') as f:
            check(f.read() == data, 'the image arrived byte for byte')
        used = os.stat(got).st_blocks * 512
        check(used <= 1 * MiB, f'holes and zero blocks stay holes there ({used} bytes allocated)')
        env.pump(0.3)
        prog = [x[3][1]['MigrationProgress'] for x in env.signals
                if x[2] == 'PropertiesChanged' and 'MigrationProgress' in x[3][1]]
        check(prog and prog[-1]['bytes'] == prog[-1]['total'] == 256 * MiB, f'progress {prog[-1:]}')

    migrate_case(env, run)


def check_handed_over(env, dst, name, moved):
    """After a live hand-over of name: the copy resumed with the moved bytes and serves the VMM; the source
    went preparing, waiting, transferring, completed."""
    check(dst.prop(name, 'MigrationState') == 'resumed', 'the copy says it resumed')
    check(dst.prop(name, 'MigratedFrom') == '', 'a live copy is in use, not waiting for its VM')
    check(dst.prop(name, 'State') == 'connected', 'the VMM works with the copy')
    cm = dst.prop(name, 'ClientMigration')
    check(cm['resumed'] and cm['bytes-written'] == moved, f'ClientMigration there: {cm}')
    env.pump(0.3)
    path = f'/org/vfu/vfud1/device/{name}'
    states = [x[3][1]['MigrationState'] for x in env.signals
              if x[2] == 'PropertiesChanged' and x[0] == path and 'MigrationState' in x[3][1]]
    check(states[:2] == ['preparing', 'waiting'] and 'transferring' in states and states[-1] == 'completed',
          f'states {states}')


def test_migrate_live(env):
    """Live migration between two vfuds with our client as the VMM: refusals, a timeout, a cancel and a
    corrupted stream change nothing; then the state moves with writes in flight and I/O goes on there, verified."""
    need_type('nvme')
    io = os.environ.get('NVME_IO')
    if not io:
        raise Skip('the NVMe I/O client is not built')

    def incoming(dst):
        return [d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['lm1'] and \
            dst.prop('lm1', 'MigrationState') == 'incoming'

    def background(dst, *extra):
        return env.spawn([env_path('VFUCTL'), '--bus', env.addr, 'migrate', 'lm1', '--to', dst.addr,
                          '--storage', 'shared'] + list(extra), stderr=subprocess.PIPE)

    def vmm_said(c):
        # the answer to a command, past the progress lines
        while True:
            line = c.stdout.readline()
            if not line.startswith('ops '):
                return line.strip()

    def unchanged(dst, what):
        env.wait_for(lambda: dst.mgr('ListDevices', '(s)', '')[0] == [], 30, f'the destination copy to go ({what})')
        check(env.prop('lm1', 'State') == 'connected', f'the source keeps serving ({what})')
        check(env.prop('lm1', 'MigrationState') == 'failed', f'the source reports the failure ({what})')
        check(env.prop('lm1', 'MigrationSocket') == '', f'no destination socket left ({what})')
        check(image_locked(env.prop('lm1', 'Backend')['namespaces'][0]['path']), f'the source holds the image ({what})')

    def run(env, dst):
        disk = os.path.join(env.dir, 'live.img')
        with open(disk, 'wb') as f:
            f.truncate(16 * MiB)
        env.create('nvme', 'lm1', 'vml', file=disk)
        c = env.spawn([io, '--migratable', env.prop('lm1', 'SocketPath')])
        check(c.stdout.readline().startswith('ready'), 'nvme-io ready')
        env.wait_for(lambda: env.prop('lm1', 'ClientMigration')['client'], 15, 'the client to show it migrates')
        hold_progress(env, c, 2)

        # a disk in use is never copied
        rc, out, err = env.vfuctl('migrate', 'lm1', '--to', dst.addr, '--storage', 'copy')
        check(rc == 8 and 'storage=shared' in err, f'live with storage=copy: {rc} {err!r}')
        # nobody moves the state: the timeout rolls back
        rc, out, err = env.vfuctl('migrate', 'lm1', '--to', dst.addr, '--storage', 'shared', '--timeout', '2')
        check(rc != 0 and 'no VMM moved the state of lm1' in err, f'timeout: {rc} {err!r}')
        check('waiting for the VMM' in out, f'vfuctl shows the wait: {out!r}')
        unchanged(dst, 'timeout')
        hold_progress(env, c, 1)

        # the VMM saves the state, then resumes it here
        cli = background(dst)
        env.wait_for(lambda: incoming(dst), 30, 'the incoming copy')
        # the copy took the definition as it was: its limits wait for the end of the migration
        env.expect(ERR + 'DeviceBusy', env.dev, 'lm1', 'SetLimits', '(ua{sv})', 0,
                   {'iops-total': GLib.Variant('t', 100)})
        c.stdin.write('cancel\n')
        said = vmm_said(c)
        check(said == 'cancelled', f'the VMM cancelled: {said!r}')
        out, err = cli.communicate(timeout=30)
        check(cli.returncode != 0 and 'the migration was cancelled' in err, f'cancel: {cli.returncode} {err!r}')
        unchanged(dst, 'cancel')
        hold_progress(env, c, 1)

        # a damaged stream: the destination refuses it, the VMM goes on here
        cli = background(dst)
        env.wait_for(lambda: incoming(dst) and env.prop('lm1', 'MigrationSocket'), 30, 'the incoming copy')
        sock = env.prop('lm1', 'MigrationSocket')
        check(sock == dst.prop('lm1', 'SocketPath'), f'MigrationSocket {sock!r} names the copy')
        c.stdin.write(f'corrupt {sock}\n')
        said = vmm_said(c)
        check(said == 'refused', f'the destination refused the damaged stream: {said!r}')
        out, err = cli.communicate(timeout=30)
        check(cli.returncode != 0 and 'refused the device state of lm1' in err, f'corrupt: {cli.returncode} {err!r}')
        unchanged(dst, 'corrupt stream')
        hold_progress(env, c, 1)

        # the hand-over
        env.signals.clear()
        cli = background(dst)
        env.wait_for(lambda: incoming(dst) and env.prop('lm1', 'MigrationState') == 'waiting' and
                     env.prop('lm1', 'MigrationSocket'), 30, 'waiting')
        sock = env.prop('lm1', 'MigrationSocket')
        c.stdin.write(f'migrate {sock}\n')
        line = vmm_said(c).split()
        check(line[:1] == ['migrated'] and int(line[1]) > 0, f'the VMM moved the state: {line}')
        out, err = cli.communicate(timeout=30)
        check(cli.returncode == 0 and 'lm1: migrated to' in out, f'vfuctl migrate: {cli.returncode} {out!r} {err!r}')
        check('waiting for the VMM' in out or 'the VMM is moving its state' in out, f'progress: {out!r}')
        check(env.mgr('ListDevices', '(s)', '')[0] == [], 'the source device is gone')
        check(env.leftovers() == [], f'source leftovers {env.leftovers()}')
        check(os.path.exists(disk), 'the shared disk stays')
        # the source let go when its client saved the state, the copy takes it once its client resumed
        env.wait_for(lambda: image_locked(disk), 15, 'the destination to take the image lock over')
        msg = env.expect(ERR + 'BackendFailed', env.create, 'nvme', 'lm2', '', file=disk)
        check('locked by another process' in msg, f'another device here is refused: {msg}')
        check_handed_over(env, dst, 'lm1', int(line[1]))
        # I/O goes on against the destination, every byte verified (also the writes in flight)
        hold_progress(env, c, 2)
        check(hold_finish(c) > 0, 'the VMM did I/O')

    migrate_case(env, run)


def test_migrate_live_rbd(env):
    """Live migration of an NVMe device on RBD with storage=shared and our client as the VMM: nothing is copied,
    the destination opens the same image, and I/O goes on there with every byte written before verified."""
    need_type('nvme')
    io = os.environ.get('NVME_IO')
    if not io:
        raise Skip('the NVMe I/O client is not built')

    def run(env, dst):
        ceph = CephCluster(env)
        try:
            env.create('nvme', 'lr1', 'vmr', rbd='vfu/live', size=16 * MiB, **{'rbd-conf': ceph.conf})
            c = env.spawn([io, '--migratable', env.prop('lr1', 'SocketPath')])
            check(c.stdout.readline().startswith('ready'), 'nvme-io ready')
            env.wait_for(lambda: env.prop('lr1', 'ClientMigration')['client'], 15, 'the client to show it migrates')
            hold_progress(env, c, 2)

            env.signals.clear()
            cli = env.spawn([env_path('VFUCTL'), '--bus', env.addr, 'migrate', 'lr1', '--to', dst.addr,
                             '--storage', 'shared'], stderr=subprocess.PIPE)
            env.wait_for(lambda: [d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['lr1'] and
                         env.prop('lr1', 'MigrationState') == 'waiting' and env.prop('lr1', 'MigrationSocket'),
                         60, 'waiting for the VMM')
            c.stdin.write(f'migrate {env.prop("lr1", "MigrationSocket")}\n')
            while True:
                line = c.stdout.readline()
                if not line.startswith('ops '):
                    break
            line = line.split()
            check(line[:1] == ['migrated'] and int(line[1]) > 0, f'the VMM moved the state: {line}')
            out, err = cli.communicate(timeout=60)
            check(cli.returncode == 0 and 'lr1: migrated to' in out, f'vfuctl migrate: {cli.returncode} {out!r} {err!r}')
            check(env.mgr('ListDevices', '(s)', '')[0] == [], 'the source device is gone')
            check_handed_over(env, dst, 'lr1', int(line[1]))

            # nothing was copied: no image file on either side, no storage progress, the same image there
            for e in (env, dst):
                imgs = os.path.join(e.state, 'images')
                check(not os.path.isdir(imgs) or not os.listdir(imgs), f'no image file in {e.state}')
            path = '/org/vfu/vfud1/device/lr1'
            prog = [x[3][1]['MigrationProgress'] for x in env.signals
                    if x[2] == 'PropertiesChanged' and x[0] == path and 'MigrationProgress' in x[3][1]]
            # (the progress counts the device state the VMM moved, a few KiB: an image copy would add 16 MiB)
            check(prog and all(p.get('total', 0) == 0 and p.get('bytes', 0) <= int(line[1]) for p in prog),
                  f'no storage copied: {prog}, {line[1]} bytes of device state')
            ns = dst.prop('lr1', 'Backend')['namespaces']
            check(ns == [{'nsid': 1, 'kind': 'rbd', 'pool': 'vfu', 'image': 'live', 'conf': ceph.conf,
                          'size': 16 * MiB}], f'the same image there: {ns}')
            # I/O goes on against the destination; every byte the client wrote, before too, is read back verified
            hold_progress(env, c, 2)
            check(hold_finish(c) > 0, 'the VMM did I/O')
            dst.dev('lr1', 'Destroy')
        finally:
            ceph.stop()

    migrate_case(env, run)


def run_quiet(*args):
    p = subprocess.run(list(args), capture_output=True, text=True)
    return p.returncode, p.stderr.strip()


def test_migrate_live_net(env):
    """Live migration of virtio-net between two vfuds with our client as the VMM and traffic flowing: both vfuds
    in a network namespace of the case's own attach to one multi-queue TAP holding the peer's address; the guest
    pings it (every reply verified) through a cancel and a hand-over, and goes on through the destination."""
    need_type('virtio-net')
    io = os.environ.get('NET_IO')
    if not io:
        raise Skip('the virtio-net VMM client (net-io) is not built')
    if os.geteuid() != 0:
        raise Skip('needs root: a network namespace and a TAP interface')
    if not os.path.exists('/dev/net/tun'):
        raise Skip('/dev/net/tun is missing (modprobe tun)')
    if not shutil.which('ip'):
        raise Skip('ip(8) is missing (Debian: iproute2)')
    ns = f'vfu-lmn-{os.getpid()}'
    tap = f'vlmn{os.getpid() % 100000}'
    guest, peer = '10.79.0.2', '10.79.0.1'
    rc, err = run_quiet('ip', 'netns', 'add', ns)
    if rc != 0:
        raise Skip(f'cannot create a network namespace: {err}')

    def vmm_said(c):
        # the answer to a command, past the progress lines
        while True:
            line = c.stdout.readline()
            if not line.startswith('ops '):
                return line.strip()

    def background(dst):
        return env.spawn([env_path('VFUCTL'), '--bus', env.addr, 'migrate', 'ln1', '--to', dst.addr],
                         stderr=subprocess.PIPE)

    def incoming(dst):
        return [d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['ln1'] and \
            dst.prop('ln1', 'MigrationState') == 'incoming'

    def replies(c, n):
        # n progress lines: each says 20 more echo replies came back verified
        for _ in range(n):
            line = c.stdout.readline()
            check(line.startswith('ops '), f"the guest's traffic flows: {line!r}")

    def run(env, dst):
        env.create('virtio-net', 'ln1', 'vmn', tap=tap, queues=2, mac='52:54:00:4c:4d:01')
        c = env.spawn([io, '--migratable', env.prop('ln1', 'SocketPath'), guest, peer])
        check(c.stdout.readline().strip() == 'ready', 'net-io ready (the device up, the peer answering)')
        env.wait_for(lambda: env.prop('ln1', 'ClientMigration')['client'], 5, 'the client to show it migrates')
        replies(c, 2)

        # the copy there attaches its queues to the same TAP; the VMM saves the state, then resumes it here
        cli = background(dst)
        env.wait_for(lambda: incoming(dst), 10, 'the incoming copy')
        c.stdin.write('cancel\n')
        said = vmm_said(c)
        check(said == 'cancelled', f'the VMM cancelled: {said!r}')
        out, err = cli.communicate(timeout=30)
        check(cli.returncode != 0 and 'the migration was cancelled' in err, f'cancel: {cli.returncode} {err!r}')
        env.wait_for(lambda: dst.mgr('ListDevices', '(s)', '')[0] == [], 10, 'the destination copy to go')
        check(env.prop('ln1', 'State') == 'connected', 'the source keeps serving after the cancel')
        replies(c, 1)

        # the hand-over, the guest pinging until the device stops here
        env.signals.clear()
        cli = background(dst)
        env.wait_for(lambda: incoming(dst) and env.prop('ln1', 'MigrationState') == 'waiting' and
                     env.prop('ln1', 'MigrationSocket'), 10, 'waiting')
        sock = env.prop('ln1', 'MigrationSocket')
        check(sock == dst.prop('ln1', 'SocketPath'), f'MigrationSocket {sock!r} names the copy')
        c.stdin.write(f'migrate {sock}\n')
        line = vmm_said(c).split()
        check(line[:1] == ['migrated'] and int(line[1]) > 0, f'the VMM moved the state: {line}')
        out, err = cli.communicate(timeout=30)
        check(cli.returncode == 0 and 'ln1: migrated to' in out, f'vfuctl migrate: {cli.returncode} {out!r} {err!r}')
        check(env.mgr('ListDevices', '(s)', '')[0] == [], 'the source device is gone')
        check(env.leftovers() == [], f'source leftovers {env.leftovers()}')
        b = dst.prop('ln1', 'Backend')
        check(b['tap'] == tap and b['queues'] == 2 and b['mac'] == '52:54:00:4c:4d:01', f"the copy's backend {b}")
        check_handed_over(env, dst, 'ln1', int(line[1]))
        # the source's worker is gone: every reply from now on came through the copy
        replies(c, 3)
        # its counters start at zero there (they are not part of the state): it carried the guest's traffic
        dst.wait_for(lambda: dst.prop('ln1', 'Statistics').get('rx_packets', 0) >= 60 and
                     dst.prop('ln1', 'Statistics').get('tx_packets', 0) >= 60, 10, 'the copy to count the traffic')
        check(hold_finish(c) > 0, 'the guest got replies')

    try:
        for cmd in (['link', 'set', 'lo', 'up'],
                    ['tuntap', 'add', 'dev', tap, 'mode', 'tap', 'multi_queue', 'vnet_hdr'],
                    ['addr', 'add', f'{peer}/24', 'dev', tap],
                    ['link', 'set', tap, 'up']):
            rc, err = run_quiet('ip', '-n', ns, *cmd)
            check(rc == 0, f'ip -n {ns} {" ".join(cmd)}: {err}')
        # no IPv6: nothing but the case's own traffic reaches the guest
        run_quiet('ip', 'netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1')
        migrate_case(env, run, ['ip', 'netns', 'exec', ns])
    finally:
        # the namespace (and the TAP in it) goes once the last vfud and worker in it exit
        run_quiet('ip', 'netns', 'del', ns)


LIBVIRTD_SETUP = r"""
set -e
D="$1"
for db in passwd group; do mount --bind "$D/$db" /etc/$db; done
mount -t tmpfs tmpfs /var
mkdir -p /var/lib/libvirt /var/cache/libvirt /var/log/libvirt /var/tmp
ln -s /run /var/run
mount -t tmpfs tmpfs /run
mkdir -p /run/libvirt
mount --bind "$D/run-libvirt" /run/libvirt
mkdir -p /etc/libvirt
mount --bind "$D/etc" /etc/libvirt
exec libvirtd -f /etc/libvirt/libvirtd.conf
"""


class PrivateLibvirtd:
    """Debian's libvirtd in the foreground in a mount namespace of its own (tmpfs /run and /var, its own
    /etc/libvirt), its socket bind-mounted to a directory the test sees."""

    def __init__(self, env):
        if os.geteuid() != 0:
            raise Skip('a private libvirtd needs root (mount namespaces)')
        for prog in ('libvirtd', 'virsh', 'unshare', 'qemu-system-x86_64'):
            if not shutil.which(prog):
                raise Skip(f'{prog} not found (Debian: libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, '
                           'qemu-system-x86)')
        if not glob.glob('/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so'):
            raise Skip('libvirt-daemon-driver-qemu is not installed')
        self.dir = os.path.join(env.dir, 'libvirt')
        etc = os.path.join(self.dir, 'etc')
        os.makedirs(os.path.join(etc, 'hooks'))
        os.makedirs(os.path.join(self.dir, 'run-libvirt'))
        with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
            f.write(f'log_outputs = "3:file:{self.dir}/libvirtd.log"\n')
        with open(os.path.join(etc, 'qemu.conf'), 'w') as f:
            f.write('user = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\n')
        # the qemu driver resolves its packaged default user even when qemu.conf names another
        for db, line in (('passwd', 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n'),
                         ('group', 'libvirt-qemu:x:64055:\n')):
            with open('/etc/' + db) as f:
                text = f.read()
            if not any(x.startswith('libvirt-qemu:') for x in text.splitlines()):
                text += line
            with open(os.path.join(self.dir, db), 'w') as f:
                f.write(text)
        self.uri = f'qemu+unix:///system?socket={self.dir}/run-libvirt/libvirt-sock'
        self.out = open(os.path.join(self.dir, 'libvirtd.out'), 'w')
        self.proc = env.spawn_raw(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', LIBVIRTD_SETUP,
                                   'setup', self.dir], stdout=self.out, stderr=subprocess.STDOUT)
        end = time.monotonic() + 30
        while subprocess.run(['virsh', '-c', self.uri, 'list', '--all'], capture_output=True).returncode != 0:
            if self.proc.poll() is not None:
                with open(self.out.name) as f:
                    raise Skip(f'libvirtd cannot run here: {f.read().strip()[-300:]}')
            if time.monotonic() > end:
                raise Fail('libvirtd did not answer within 30 s')
            time.sleep(0.1)

    def virsh(self, *args, check_rc=True):
        p = subprocess.run(['virsh', '-c', self.uri] + list(args), capture_output=True, text=True, timeout=60)
        if check_rc and p.returncode != 0:
            raise Fail(f'virsh {" ".join(args)}: {p.stderr.strip()}')
        return p.stdout

    def define(self, name):
        path = os.path.join(self.dir, f'{name}.xml')
        with open(path, 'w') as f:
            f.write(DOMAIN_Q35.replace("<domain type='kvm'>", "<domain type='qemu'>")
                    .replace('<name>lv1</name>', f'<name>{name}</name>')
                    .replace('<uuid>6f1b7c2e-0d43-4c1e-9b55-3a0d2f7e9a10</uuid>', ''))
        self.virsh('define', path)

    def dumpxml(self, name):
        return self.virsh('dumpxml', '--inactive', name)

    def stop(self):
        if self.proc.poll() is not None:
            with open(self.out.name) as f:
                print(f'libvirtd exited with {self.proc.returncode}: {f.read()[-2000:]}')
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def qemu_args(xml):
    root = ET.fromstring(xml)
    return [a.get('value') for a in root.iter('{http://libvirt.org/schemas/domain/qemu/1.0}arg')]


def test_libvirtd(env):
    """A real libvirtd: definitions follow device creation, later defines, destruction, attach and detach."""
    need_type('nvme')
    lv = PrivateLibvirtd(env)
    try:
        lv.define('lvdom')
        with open(env.config, 'a') as f:
            f.write(f'[Libvirt]\nEnabled=yes\nURI={lv.uri}\n')
        env.start_vfud()

        env.create('nvme', 'lvd1', 'lvdom', size=MiB)
        check(env.prop('lvd1', 'LibvirtStatus') == 'applied',
              f'applied on create: {env.prop("lvd1", "LibvirtStatus")} {env.prop("lvd1", "LibvirtError")}')
        xml = lv.dumpxml('lvdom')
        check('vfu-lvd1' in xml and env.prop('lvd1', 'SocketPath') in xml, 'the device is in the definition')
        check("<source type='memfd'/>" in xml and "<access mode='shared'/>" in xml, 'shared memfd memory')
        check(qemu_args(vm_xml(env, 'lvdom')) == qemu_args(xml), 'GetVmXml shows what libvirt holds')
        rc, out, err = env.vfuctl('xml', '--vm', 'lvdom')
        check(rc == 0 and qemu_args(out) == qemu_args(xml), f'vfuctl xml: {rc} {err}')

        # a device for a VM libvirt does not know yet: applied once the VM is defined
        env.create('nvme', 'lvd2', 'lvlate', size=MiB)
        check(env.prop('lvd2', 'LibvirtStatus') == 'failed', 'not applied before the VM exists')
        env.expect(ERR + 'NoSuchVm', vm_xml, env, 'lvlate')
        lv.define('lvlate')
        env.wait_for(lambda: env.prop('lvd2', 'LibvirtStatus') == 'applied', 20, 'the later define to be followed')
        check('vfu-lvd2' in lv.dumpxml('lvlate'), 'the late VM carries its device')

        # attach to a shut-off VM records it; detach removes it; the other entries stay
        env.create('nvme', 'lvd3', '', size=MiB)
        env.mgr('AttachDevice', '(ss)', 'lvd3', 'lvdom')
        check(env.prop('lvd3', 'Vm') == 'lvdom', 'Vm follows the attach')
        xml = lv.dumpxml('lvdom')
        check('vfu-lvd3' in xml and 'vfu-lvd1' in xml, 'attached in the definition')
        rc, out, err = env.vfuctl('detach', 'lvd3')
        check(rc == 0 and 'lvd3: detached' in out, f'vfuctl detach: {rc} {err}')
        check(env.prop('lvd3', 'Vm') == '', 'Vm cleared')
        xml = lv.dumpxml('lvdom')
        check('vfu-lvd3' not in xml and 'vfu-lvd1' in xml, 'only the detached device left')
        env.expect(ERR + 'NoSuchVm', env.mgr, 'AttachDevice', '(ss)', 'lvd3', 'no-such-vm')
        check(env.prop('lvd3', 'Vm') == '', 'a failed attach changes nothing')

        # destroying a device removes only its entries; the last one takes the vfu controllers with it
        env.mgr('DestroyDevice', '(s)', 'lvd1')
        env.wait_for(lambda: 'vfu-lvd1' not in lv.dumpxml('lvdom'), 20, 'the destroyed device to leave the definition')
        check('vfio-user-pci' not in lv.dumpxml('lvdom'), 'no vfu device left in lvdom')
        check('vfu-lvd2' in lv.dumpxml('lvlate'), 'the other VM is untouched')
    finally:
        lv.stop()


# ssh as sd_bus_open_system_remote() runs it: `ssh -xT -- [USER@]HOST systemd-stdio-bridge` (libsystemd 252.x;
# older releases leave out the `--`).  The shim logs who called it and how, then, for the one host it knows,
# bridges to the bus in VFU_TEST_SSH_BUS as systemd-stdio-bridge on that host would; any other host fails the
# way ssh does (exit 255, the reason on stderr).
SSH_SHIM = r'''#!/bin/sh
{ cat /proc/$PPID/comm | tr -d '\n'; for a in "$@"; do printf '\t%s' "$a"; done; echo; } >> "$VFU_TEST_SSH_LOG"
[ "$2" = -- ] && set -- "$1" "$3" "$4" "$5" "$6" "$7"
if [ "$1" = -xT ] && [ "$3" = vfuctl ] && [ "$4" = receive-image ] && [ "${2#*@}" = "$VFU_TEST_SSH_HOST" ]; then
        # vfud's image stream: the words after the host run in the remote shell, with ssh's stdin
        vfuctl() {
                if [ -f "$VFU_TEST_SSH_LOG.relay" ]; then
                        # the stream passes the test's relay (stream-relay in ssh_shim)
                        python3 "$VFU_TEST_SSH_RELAY" "$VFU_TEST_SSH_LOG.relay" |
                                "$VFU_TEST_VFUCTL" --bus "$VFU_TEST_SSH_BUS" "$@"
                        exit
                fi
                exec "$VFU_TEST_VFUCTL" --bus "$VFU_TEST_SSH_BUS" "$@"
        }
        shift 2
        eval "$*"
fi
[ -z "$5" ] || { echo "ssh: not called as libsystemd or vfud calls it" >&2; exit 255; }
set -- "$1" "$2" "$3" "$4"
if [ $# -ne 4 ] || [ "$1" != -xT ] || [ "$3" != systemd-stdio-bridge ] || [ -n "$4" ]; then
        echo "ssh: not called as libsystemd calls it" >&2
        exit 255
fi
if [ "${2#*@}" != "$VFU_TEST_SSH_HOST" ]; then
        echo "ssh: Could not resolve hostname ${2#*@}: Name or service not known" >&2
        exit 255
fi
exec @BRIDGE@ --bus-path="$VFU_TEST_SSH_BUS"
'''

STREAM_RELAY = r'''import os, sys, time
# stdin to stdout, as the file argv[1] says: "hold N" passes N bytes, then waits for argv[1].release;
# "flip N" inverts byte N; "cut N" passes N bytes and ends the stream
op, at = open(sys.argv[1]).read().split()
at, done = int(at), 0


def out(data):
    while data:
        data = data[os.write(1, data):]


while True:
    data = os.read(0, 1 << 20)
    if not data:
        break
    if done <= at < done + len(data):
        k = at - done
        if op == 'flip':
            data = data[:k] + bytes([data[k] ^ 0xff]) + data[k + 1:]
        elif op == 'cut':
            out(data[:k])
            sys.exit(0)
        elif op == 'hold':
            out(data[:k])
            open(sys.argv[1] + '.held', 'w').close()
            while not os.path.exists(sys.argv[1] + '.release'):
                time.sleep(0.05)
    out(data[at - done:] if op == 'hold' and done <= at < done + len(data) else data)
    done += len(data)
'''


def ssh_shim(env):
    """Put the ssh shim first in PATH for this process and its children (vfuctl, vfud); return its log's path.

    The private buses are reachable only through it: no VFUD_BUS, and the system bus address leads nowhere,
    so a vfuctl or vfud that ignored the host would fail instead of reaching a bus some other way."""
    bridge = shutil.which('systemd-stdio-bridge')
    if not bridge:
        raise Skip('systemd-stdio-bridge is not installed')
    d = os.path.join(env.dir, 'bin')
    os.makedirs(d)
    with open(os.path.join(d, 'ssh'), 'w') as f:
        f.write(SSH_SHIM.replace('@BRIDGE@', bridge))
    with open(os.path.join(d, 'stream-relay'), 'w') as f:
        f.write(STREAM_RELAY)
    os.chmod(os.path.join(d, 'ssh'), 0o755)
    log = os.path.join(env.dir, 'ssh.log')
    open(log, 'w').close()
    os.environ.update(PATH=d + ':' + os.environ['PATH'], VFU_TEST_SSH_LOG=log, VFU_TEST_SSH_HOST='vfu-remote',
                      VFU_TEST_VFUCTL=env_path('VFUCTL'), VFU_TEST_SSH_RELAY=os.path.join(d, 'stream-relay'),
                      DBUS_SYSTEM_BUS_ADDRESS=f'unix:path={env.dir}/no-system-bus')
    os.environ.pop('VFUD_BUS', None)
    os.environ.pop('DBUS_SESSION_BUS_ADDRESS', None)
    return log


def ssh_calls(log):
    """The shim's invocations so far: (caller, argv without the program name)."""
    with open(log) as f:
        return [(line.split('\t')[0], line.rstrip('\n').split('\t')[1:]) for line in f]


def vfuctl_remote(bus, *args):
    """vfuctl ARGS with no --bus, its ssh reaching bus."""
    p = subprocess.run([env_path('VFUCTL')] + list(args), capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, VFU_TEST_SSH_BUS=bus))
    return p.returncode, p.stdout, p.stderr


def test_remote(env):
    """vfuctl -H and migrate --to [USER@]HOST over ssh (a shim in its place) and systemd-stdio-bridge."""
    need_type('nvme')
    log = ssh_shim(env)
    remote = ['-xT', '--', 'root@vfu-remote', 'systemd-stdio-bridge']

    def run(env, dst):
        # the source vfud's ssh reaches the destination's bus
        env.stop_vfud()
        os.environ['VFU_TEST_SSH_BUS'] = dst.addr
        env.start_vfud()

        # without -H there is no way to the private bus
        rc, out, err = vfuctl_remote(env.addr, 'list')
        check(rc == 6, f'vfuctl list without -H: {rc} {out!r} {err!r}')
        check(ssh_calls(log) == [], f'ssh called without -H: {ssh_calls(log)}')

        rc, out, err = vfuctl_remote(env.addr, '-H', 'root@vfu-remote', 'list')
        check(rc == 0 and out.splitlines()[0].split()[:4] == ['NAME', 'TYPE', 'VM', 'STATE'], f'list: {rc} {out!r} {err}')
        rc, out, err = vfuctl_remote(env.addr, '-H', 'root@vfu-remote', 'create', 'nvme', '--vm', 'r', '--size', '1M',
                                     '--name', 'rdisk')
        check(rc == 0 and out.startswith('rdisk:'), f'create: {rc} {out!r} {err}')
        check([d[0] for d in env.mgr('ListDevices', '(s)', '')[0]] == ['rdisk'], 'rdisk made on the private bus')
        rc, out, err = vfuctl_remote(env.addr, '-H', 'root@vfu-remote', 'show', 'rdisk', '--json')
        s = json.loads(out) if rc == 0 else {}
        check(s.get('name') == 'rdisk' and s['vm'] == 'r' and s['backend']['namespaces'][0]['size'] == MiB,
              f'show: {rc} {out!r} {err}')
        calls = ssh_calls(log)
        check(calls == [('vfuctl', remote)] * 3, f'vfuctl ran ssh as {calls}')

        # another host is another host: the shim's ssh error reaches the caller
        rc, out, err = vfuctl_remote(env.addr, '-H', 'root@elsewhere', 'list')
        check(rc == 6 and 'Could not resolve hostname elsewhere' in err and
              'vfuctl: cannot connect to the remote system bus of root@elsewhere' in err,
              f'list on an unknown host: {rc} {err!r}')
        check(ssh_calls(log)[-1] == ('vfuctl', ['-xT', '--', 'root@elsewhere', 'systemd-stdio-bridge']),
              f'{ssh_calls(log)[-1]}')

        # cold migration to root@vfu-remote: the source vfud runs ssh, the image is copied over the bridge
        with open(ns_path(env, 'rdisk'), 'r+b') as f:
            data = bytes((i * 7) & 0xff for i in range(MiB))
            f.write(data)
        del os.environ['VFU_TEST_SSH_BUS']
        n = len(ssh_calls(log))
        rc, out, err = env.vfuctl('migrate', '--vm', 'r', '--to', 'root@vfu-remote', '--storage', 'copy')
        check(rc == 0 and 'rdisk: migrated to' in out, f'vfuctl migrate --to root@vfu-remote: {rc} {out!r} {err}')
        check(ssh_calls(log)[n:] == [('vfud', remote), ('vfud', ['-xT', '--', 'root@vfu-remote', 'vfuctl',
                                                                'receive-image', "'rdisk'", '1'])],
              f'vfud ran ssh as {ssh_calls(log)[n:]}')
        got = dst.mgr('ListDevices', '(s)', '')[0]
        check([(d[0], d[2], d[3]) for d in got] == [('rdisk', 'r', 'listening')], f'destination devices {got}')
        with open(ns_path(dst, 'rdisk'), 'rb') as f:
            check(f.read() == data, 'the image arrived byte for byte')
        check(env.mgr('ListDevices', '(s)', '')[0] == [] and env.leftovers() == [],
              f'the source is empty: {env.leftovers()}')

        # a destination ssh cannot reach: a clear error, the device stays, nothing arrives anywhere
        env.create('nvme', 'rdisk2', 'r2', size=MiB)
        before = sorted(os.listdir(os.path.join(dst.state, 'images')))
        n = len(ssh_calls(log))
        rc, out, err = env.vfuctl('migrate', '--vm', 'r2', '--to', 'root@unreachable', '--storage', 'copy')
        check(rc != 0 and 'cannot reach the destination root@unreachable' in err,
              f'migrate to an unreachable host: {rc} {out!r} {err!r}')
        check(ssh_calls(log)[n:] == [('vfud', ['-xT', '--', 'root@unreachable', 'systemd-stdio-bridge'])],
              f'vfud ran ssh as {ssh_calls(log)[n:]}')
        env.wait_for(lambda: env.prop('rdisk2', 'State') == 'listening', 10, 'rdisk2 to listen again')
        check(env.prop('rdisk2', 'MigrationState') == 'failed', 'MigrationState failed')
        check([d[0] for d in env.mgr('ListDevices', '(s)', '')[0]] == ['rdisk2'], 'the source keeps rdisk2')
        check([d[0] for d in dst.mgr('ListDevices', '(s)', '')[0]] == ['rdisk'], 'nothing arrived')
        check(sorted(os.listdir(os.path.join(dst.state, 'images'))) == before, 'no image left on the destination')
        env.log.flush()
        with open(os.path.join(env.dir, 'vfud.log')) as f:
            check('Could not resolve hostname unreachable' in f.read(), "ssh's own message is in vfud's log")

        # and vfuctl -H on the destination host removes the migrated device
        rc, out, err = vfuctl_remote(dst.addr, '-H', 'root@vfu-remote', 'destroy', 'rdisk')
        check(rc == 0, f'destroy: {rc} {err}')
        check(dst.mgr('ListDevices', '(s)', '')[0] == [] and dst.leftovers() == [],
              f'the destination is empty: {dst.leftovers()}')
        env.mgr('DestroyDevice', '(s)', 'rdisk2')

    migrate_case(env, run)


CASES = {name[5:].replace('_', '-'): fn for name, fn in globals().items() if name.startswith('test_')}


OPTIONS = {}


def main():
    args = sys.argv[1:]
    while len(args) >= 3 and args[-2] in ('--trials', '--seed') and args[-1].isdigit():
        OPTIONS[args[-2][2:]] = args[-1]
        args = args[:-2]
    if len(args) != 1 or args[0] not in CASES:
        print(f'usage: {sys.argv[0]} CASE [--trials N] [--seed N]\ncases: {" ".join(sorted(CASES))}')
        return 2
    # meson's timeout sends SIGTERM: unwind so the cleanup ends every process the case started.
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(f'FAIL: {sys.argv[1]} interrupted'))
    try:
        env = Env()
    except Skip as e:
        print(f'SKIP: {e}')
        return SKIP
    failed = True
    try:
        CASES[sys.argv[1]](env)
        # A clean exit lets sanitizer builds report leaks; anything they found in vfud or a worker fails the case.
        if env.vfud and env.vfud.poll() is None:
            env.stop_vfud(signal.SIGTERM)
            check(env.vfud.returncode == 0, f'vfud exited with status {env.vfud.returncode} on SIGTERM')
        env.log.flush()
        with open(os.path.join(env.dir, 'vfud.log')) as f:
            log = f.read()
        for marker in ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:', 'CRITICAL'):
            check(marker not in log, f'"{marker}" in the vfud log')
        failed = False
        print(f'{sys.argv[1]}: ok')
        return 0
    except Skip as e:
        failed = False
        print(f'SKIP: {e}')
        return SKIP
    except (Fail, DBusError) as e:
        print(f'FAIL: {e}')
        return 1
    finally:
        env.cleanup(failed)


if __name__ == '__main__':
    sys.exit(main())
