# SPDX-License-Identifier: LGPL-2.1-or-later
"""A private libvirtd for tests: Debian's libvirtd in the foreground, with
its own configuration, hooks and state, in a private mount namespace so the
host's /etc/libvirt, /run and /var are never touched.

    lvenv.reexec_in_namespace(reason_if_skipped)   # first thing in main
    with lvenv.Libvirtd(hooks={...}) as lv:
        lv.virsh('define', path)

Needs root (mount namespaces); skips (exit 77) with a reason otherwise.
"""

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
    """Re-run this script inside a private mount namespace (once)."""
    if os.environ.get(NS_MARK) == '1':
        return
    if os.geteuid() != 0:
        skip('needs root to run a private libvirtd in a mount namespace')
    require_programs('unshare', 'libvirtd', 'virsh', 'qemu-system-x86_64')
    env = dict(os.environ)
    env[NS_MARK] = '1'
    os.execvpe('unshare', ['unshare', '--mount', '--propagation', 'private',
                           sys.executable] + sys.argv, env)


QEMU_CONF = '''\
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
stdio_handler = "file"
'''


class Libvirtd:
    """libvirtd in the foreground with a private /etc/libvirt, /run, /var."""

    def __init__(self, hooks=None):
        self.hooks = hooks or {}
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix='vfu-libvirtd-')
        self.log = os.path.join(self.dir, 'libvirtd.log')

    # --- namespace setup -------------------------------------------------
    def _mount(self, *args):
        subprocess.run(['mount'] + list(args), check=True)

    def _setup(self):
        etc = os.path.join(self.dir, 'etc')
        os.makedirs(os.path.join(etc, 'hooks', 'qemu.d'))
        with open(os.path.join(etc, 'libvirtd.conf'), 'w') as f:
            f.write('log_outputs = "3:file:%s"\n' % self.log)
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
        self._mount('-t', 'tmpfs', 'tmpfs', '/run')
        self._mount('-t', 'tmpfs', 'tmpfs', '/var')
        for d in ('/var/lib/libvirt', '/var/cache/libvirt', '/var/log/libvirt',
                  '/var/tmp', '/run/libvirt'):
            os.makedirs(d, exist_ok=True)
        os.symlink('/run', '/var/run')
        os.makedirs('/etc/libvirt', exist_ok=True)
        self._mount('--bind', etc, '/etc/libvirt')

    # --- daemon ----------------------------------------------------------
    def start(self):
        self.out = open(os.path.join(self.dir, 'libvirtd.out'), 'a')
        self.proc = subprocess.Popen(['libvirtd', '-f', '/etc/libvirt/libvirtd.conf'],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('libvirtd exited with %d; see %s'
                                   % (self.proc.returncode, self.out.name))
            r = subprocess.run(['virsh', '-c', URI, 'version'], capture_output=True)
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
        self._setup()
        self.start()
        return self

    def __exit__(self, *exc):
        try:
            for name in self.virsh_out('list', '--name').split():
                self.virsh('destroy', name, check=False)
        except Exception:
            pass
        self.stop()
        if exc[0] is not None:
            sys.stderr.write('libvirtd state kept in %s\n' % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    # --- helpers -----------------------------------------------------------
    def virsh(self, *args, check=True, input=None):
        r = subprocess.run(['virsh', '-c', URI] + list(args), capture_output=True,
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
