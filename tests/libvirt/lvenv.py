# SPDX-License-Identifier: LGPL-2.1-or-later
"""A private libvirtd for tests: Debian's libvirtd in the foreground, with
its own configuration, hooks and state, in a private mount namespace so the
host's /etc/libvirt, /run and /var are never touched.

    lvenv.reexec_in_namespace(reason_if_skipped)   # first thing in main
    with lvenv.Libvirtd(hooks={...}) as lv:
        lv.virsh('define', path)

Needs root (mount namespaces); skips (exit 77) with a reason otherwise.
"""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
NS_MARK = 'VFU_LVENV_IN_NAMESPACE'
URI = 'qemu:///system'


def skip(reason):
    print('SKIP: ' + reason)
    sys.exit(SKIP)


def require_programs(*names):
    for n in names:
        if not shutil.which(n):
            skip('%s not found (Debian packages: libvirt-daemon, '
                 'libvirt-daemon-driver-qemu, libvirt-clients, qemu-system-x86)' % n)


def reexec_in_namespace():
    """Re-run this script inside private mount and PID namespaces (once)."""
    if os.environ.get(NS_MARK) == '1':
        if os.getpid() == 1:
            _be_init()
        return
    if os.geteuid() != 0:
        skip('needs root to run a private libvirtd in a mount namespace')
    require_programs('unshare', 'libvirtd', 'virsh', 'qemu-system-x86_64')
    # A mount namespace for private /etc/libvirt, /run, /var; a PID
    # namespace so that nothing started here (libvirtd daemonizes its
    # capability probes) outlives the test.
    unshare = ['unshare', '--mount', '--propagation', 'private',
               '--pid', '--fork', '--mount-proc', '--kill-child']
    probe = subprocess.run(unshare + ['true'], capture_output=True, text=True)
    if probe.returncode != 0:
        skip('cannot create mount and PID namespaces here: %s' % probe.stderr.strip())
    env = dict(os.environ)
    env[NS_MARK] = '1'
    os.execvpe('unshare', unshare + [sys.executable] + sys.argv, env)


def reap_as_init(child, forward_signal):
    """As PID 1 of a namespace: pass SIGTERM/SIGINT on to child as
    forward_signal, reap every orphan (libvirtd's daemonized capability
    probes end up here; unreaped, libvirt would wait on their zombies), and
    exit with child's status when it ends."""
    def forward(signum, frame):
        os.kill(child, forward_signal)

    # PID 1 gets no signal it has no handler for
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def _be_init():
    """As PID 1 of the namespace: run the test in a child (reap_as_init).
    Returns in the child."""
    child = os.fork()
    if child == 0:
        return
    reap_as_init(child, signal.SIGKILL)

QEMU_CONF = '''\
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
'''


class Libvirtd:
    """libvirtd in the foreground with a private /etc/libvirt, /run, /var."""

    def __init__(self, hooks=None, keep=(), binds=(), nested=False, host_uuid=None,
                 workdir=None):
        """hooks: {name: script} for /etc/libvirt/hooks/qemu.d;
        keep: host directories under /var or /run to keep visible;
        binds: (source, target) bind mounts made in the namespace first;
        nested: run in a namespace of its own (a second host: its socket
        is then reached through self.uri); host_uuid: libvirt's host UUID
        (two libvirtds on one machine need different ones to migrate)."""
        self.hooks = hooks or {}
        self.keep = [os.path.realpath(k) for k in keep]
        self.binds = list(binds)
        self.nested = nested
        self.host_uuid = host_uuid
        self.proc = None
        self.dir = workdir or tempfile.mkdtemp(prefix='vfu-libvirtd-')
        self.log = os.path.join(self.dir, 'libvirtd.log')
        self.shared_run = os.path.join(self.dir, 'run-libvirt') if nested else None
        self.uri = ('qemu+unix:///system?socket=%s/libvirt-sock' % self.shared_run
                    if nested else URI)

    # --- namespace setup -------------------------------------------------
    def _mount(self, *args):
        subprocess.run(['mount'] + list(args), check=True)

    def _setup(self):
        etc = os.path.join(self.dir, 'etc')
        os.makedirs(os.path.join(etc, 'hooks', 'qemu.d'))
        with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
            f.write('log_outputs = "3:file:%s"\n' % self.log)
            if self.host_uuid:
                f.write('host_uuid = "%s"\n' % self.host_uuid)
        with open(os.path.join(etc, 'qemu.conf'), 'w') as f:
            f.write(QEMU_CONF)
        for name, text in self.hooks.items():
            path = os.path.join(etc, 'hooks', 'qemu.d', name)
            with open(path, 'w') as f:
                f.write(text)
            os.chmod(path, 0o755)
        # libvirt's qemu driver parses its packaged default user even
        # when qemu.conf names another one
        for db, line in (('passwd', 'libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin\n'),
                         ('group', 'libvirt-qemu:x:64055:\n')):
            copy = os.path.join(self.dir, db)
            shutil.copy('/etc/' + db, copy)
            with open(copy) as f:
                have = any(l.startswith('libvirt-qemu:') for l in f)
            if not have:
                with open(copy, 'a') as f:
                    f.write(line)
            self._mount('--bind', copy, '/etc/' + db)
        for source, target in self.binds:
            self._mount('--bind', source, target)
        held = []
        for i, path in enumerate(self.keep):
            hold = os.path.join(self.dir, 'keep%d' % i)
            os.makedirs(hold)
            self._mount('--bind', path, hold)
            held.append((hold, path))
        self._mount('-t', 'tmpfs', 'tmpfs', '/run')
        self._mount('-t', 'tmpfs', 'tmpfs', '/var')
        for hold, path in held:
            os.makedirs(path, exist_ok=True)
            self._mount('--bind', hold, path)
        for d in ('/var/lib/libvirt', '/var/cache/libvirt', '/var/log/libvirt',
                  '/var/tmp', '/run/libvirt'):
            os.makedirs(d, exist_ok=True)
        os.symlink('/run', '/var/run')
        if self.shared_run:
            os.makedirs(self.shared_run, exist_ok=True)
            self._mount('--bind', self.shared_run, '/run/libvirt')
        os.makedirs('/etc/libvirt', exist_ok=True)
        self._mount('--bind', etc, '/etc/libvirt')

    # --- daemon ----------------------------------------------------------
    def start(self):
        self.out = open(os.path.join(self.dir, 'libvirtd.out'), 'a')
        if self.nested:
            config = json.dumps({'hooks': self.hooks, 'keep': self.keep, 'binds': self.binds,
                                 'host_uuid': self.host_uuid, 'workdir': self.dir})
            argv = ['unshare', '--mount', '--propagation', 'private', sys.executable,
                    os.path.abspath(__file__), 'serve', config]
        else:
            argv = ['libvirtd', '-f', '/etc/libvirt/libvirtd.conf']
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('libvirtd exited with %d; see %s'
                                   % (self.proc.returncode, self.out.name))
            r = subprocess.run(['virsh', '-c', self.uri, 'list', '--all'], capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError('libvirtd did not answer within 30 s')

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, 'out', None):
            self.out.close()
            self.out = None

    def __enter__(self):
        try:
            if not self.nested:
                self._setup()
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        try:
            for name in self.virsh_out('list', '--name').split():
                self.virsh('destroy', name, check=False)
        except Exception:
            pass
        self.stop()
        # The keepN holds are bind mounts of host directories (the VM
        # suite's cache): unmount them first, or rmtree empties the host's.
        for hold in glob.glob(os.path.join(self.dir, 'keep*')):
            subprocess.run(['umount', '-l', hold], check=False)
        if exc[0] is not None:
            sys.stderr.write('libvirtd state kept in %s\n' % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    # --- helpers -----------------------------------------------------------
    def virsh(self, *args, check=True, input=None):
        r = subprocess.run(['virsh', '-c', self.uri] + list(args), capture_output=True,
                           text=True, input=input)
        if check and r.returncode != 0:
            raise AssertionError('virsh %s failed: %s' % (' '.join(args), r.stderr.strip()))
        return r

    def virsh_out(self, *args):
        return self.virsh(*args).stdout

    def define(self, xml):
        path = os.path.join(self.dir, 'define.xml')
        with open(path, 'w') as f:
            f.write(xml)
        self.virsh('define', '--validate', path)


def domain_xml(name, machine='q35', extra='', memory_backing='', devices='', vcpus=1):
    """A small TCG domain that starts without disks in about a second."""
    return '''<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>128</memory>
  %s
  <vcpu>%d</vcpu>
  <os><type arch='x86_64' machine='%s'>hvm</type></os>
  %s
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    %s
  </devices>
</domain>
''' % (name, memory_backing, vcpus, machine, extra, devices)


class Vfud:
    """vfud and its workers on a private dbus-daemon, driven with busctl.

    Environment: VFUD, VFUD_WORKER (built programs)."""

    NAME = 'org.vfu.vfud1'
    PATH = '/org/vfu/vfud1'
    MANAGER = 'org.vfu.vfud1.Manager'
    DEVICE = 'org.vfu.vfud1.Device'

    def __init__(self, workdir=None, libvirt_uri=None):
        """libvirt_uri: the libvirt this vfud uses ([Libvirt] URI=; default qemu:///system)."""
        for key in ('VFUD', 'VFUD_WORKER'):
            if not os.environ.get(key):
                skip('%s is not set: vfud is not part of this build' % key)
        if not shutil.which('dbus-daemon') or not shutil.which('busctl'):
            skip('dbus-daemon and busctl are needed (Debian packages dbus, systemd)')
        self.dir = tempfile.mkdtemp(prefix='vfu-hook-', dir=workdir)
        os.chmod(self.dir, 0o755)
        self.vfud = None
        self.bus_pid = None
        self.log = os.path.join(self.dir, 'vfud.log')
        self.libvirt_uri = libvirt_uri

    def types(self):
        r = subprocess.run([os.environ['VFUD_WORKER'], '--types'], capture_output=True, text=True)
        return r.stdout.split()

    def __enter__(self):
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, 'bus.conf')) as f:
            conf = f.read().replace('@LISTEN@', 'unix:path=%s/bus' % self.dir)
        conf_path = os.path.join(self.dir, 'bus.conf')
        with open(conf_path, 'w') as f:
            f.write(conf)
        out = subprocess.run(['dbus-daemon', '--config-file=' + conf_path, '--fork',
                              '--print-address=1', '--print-pid=1'],
                             capture_output=True, text=True, check=True).stdout.split()
        self.address, self.bus_pid = out[0], int(out[1])
        with open(os.path.join(self.dir, 'vfud.conf'), 'w') as f:
            f.write('[Manager]\nAdminGroup=\n')
            # workers drop to a user every host has (vfu-worker exists only where the package is installed)
            f.write('[Worker]\nUser=%s\n' % ('nobody' if os.geteuid() == 0 else ''))
            if self.libvirt_uri:
                f.write('[Libvirt]\nURI=%s\n' % self.libvirt_uri)
        try:
            self.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def start(self):
        env = dict(os.environ, VFUD_WORKER=os.environ['VFUD_WORKER'])
        env.pop('NOTIFY_SOCKET', None)
        self.logf = open(self.log, 'a')
        self.vfud = subprocess.Popen([os.environ['VFUD'], '--bus', self.address,
                                      '--state-dir', os.path.join(self.dir, 'state'),
                                      '--runtime-dir', os.path.join(self.dir, 'run'),
                                      '--config', os.path.join(self.dir, 'vfud.conf')],
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.vfud.poll() is not None:
                raise RuntimeError('vfud exited with %d; see %s' % (self.vfud.returncode, self.log))
            r = self.busctl('call', 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                            'org.freedesktop.DBus', 'NameHasOwner', 's', self.NAME, check=False)
            if r.stdout.strip() == 'b true':
                return
            time.sleep(0.05)
        raise RuntimeError('vfud did not take its bus name within 20 s')

    def stop(self):
        if self.vfud and self.vfud.poll() is None:
            self.vfud.terminate()
            try:
                self.vfud.wait(20)
            except subprocess.TimeoutExpired:
                self.vfud.kill()
                self.vfud.wait()
        self.vfud = None
        if getattr(self, 'logf', None):
            self.logf.close()
            self.logf = None

    def __exit__(self, *exc):
        self.stop()
        if self.bus_pid:
            try:
                os.kill(self.bus_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if exc[0] is not None:
            sys.stderr.write('vfud state kept in %s\n' % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def busctl(self, *args, check=True):
        r = subprocess.run(['busctl', '--address=' + self.address] + list(args),
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError('busctl %s: %s' % (' '.join(args), r.stderr.strip()))
        return r

    def manager(self, method, signature='', *args, check=True):
        return self.busctl('call', self.NAME, self.PATH, self.MANAGER, method,
                           *([signature] + list(args) if signature else []), check=check)

    def create_nvme(self, name, vm, size=16 << 20, msi=False):
        if msi:
            self.manager('CreateDevice', 'sssa{sv}', 'nvme', name, vm, '2', 'size', 't', str(size),
                         'msi', 'b', 'true')
        else:
            self.manager('CreateDevice', 'sssa{sv}', 'nvme', name, vm, '1', 'size', 't', str(size))

    def prop(self, name, prop):
        path = self.manager('GetDevice', 's', name).stdout.split()[1].strip('"')
        out = self.busctl('get-property', self.NAME, path, self.DEVICE, prop).stdout.strip()
        kind, value = out.split(' ', 1)
        return value.strip('"') if kind == 's' else value

    def state(self, name):
        return self.prop(name, 'State')


def serve(config):
    """In a fresh mount namespace: set up a Libvirtd and become libvirtd."""
    c = json.loads(config)
    lv = Libvirtd(hooks=c['hooks'], keep=c['keep'], binds=[tuple(b) for b in c['binds']],
                  nested=True, host_uuid=c['host_uuid'], workdir=c['workdir'])
    lv._setup()
    os.execvp('libvirtd', ['libvirtd', '-f', '/etc/libvirt/libvirtd.conf'])


if __name__ == '__main__' and len(sys.argv) == 3 and sys.argv[1] == 'serve':
    serve(sys.argv[2])
