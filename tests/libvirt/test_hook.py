#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""vfu-hook run the way libvirt runs it: argv DOMAIN OPERATION SUB-OPERATION
EXTRA, the domain XML on stdin, a minimal environment.

    test_hook.py argv      every operation without vfud (refusals, silence,
                           unreachable bus)
    test_hook.py vfud      every operation against the real vfud on a
                           private bus (skips until vfud is built)
    test_hook.py libvirtd  the hook installed in a private libvirtd: a
                           domain start runs prepare/release against vfud,
                           a restore is refused (root; skips otherwise)

Environment: VFU_HOOK, VLV_RENDER, VFUD, VFUD_WORKER, VU_HOLD.
"""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lvenv  # noqa: E402

HOOK = os.environ.get('VFU_HOOK', '')
RENDER = os.environ.get('VLV_RENDER', '')
UNREACHABLE = 'unix:path=/nonexistent/vfu-hook-test/bus'
HOOK_ENV = {'LC_ALL': 'C', 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': '/'}


def domain(name, *devices):
    """A domain definition carrying vfu's devices (NAME=SOCKET)."""
    base = lvenv.domain_xml(name)
    if not devices:
        return base
    r = subprocess.run([RENDER, '-'] + list(devices), input=base, capture_output=True,
                       text=True, check=True)
    return r.stdout


def hook(vm, op, subop, xml, bus=UNREACHABLE, extra='-', timeout=5):
    args = [HOOK]
    if bus:
        args += ['--bus', bus]
    args += ['--timeout', str(timeout), vm, op, subop, extra]
    return subprocess.run(args, input=xml, capture_output=True, text=True, env=HOOK_ENV,
                          timeout=60)


class Argv(unittest.TestCase):
    """No vfud anywhere: what the hook decides from argv and the XML."""

    def test_domains_without_devices_are_left_alone(self):
        xml = domain('plain')
        for op, subop in (('prepare', 'begin'), ('start', 'begin'), ('started', 'begin'),
                          ('stopped', 'end'), ('release', 'end'), ('migrate', 'begin'),
                          ('restore', 'begin'), ('reconnect', 'begin'), ('attach', 'begin')):
            r = hook('plain', op, subop, xml)
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, '', ''), (op, subop))

    def test_unhandled_operations_are_silent(self):
        xml = domain('vm1', 'nvme0=/run/vfud/nvme0.sock')
        for op, subop in (('start', 'begin'), ('started', 'begin'), ('stopped', 'end'),
                          ('attach', 'begin'), ('prepare', 'end'), ('whatever', 'else')):
            r = hook('vm1', op, subop, xml)
            self.assertEqual((r.returncode, r.stdout, r.stderr), (0, '', ''), (op, subop))

    def test_migrate_is_refused(self):
        xml = domain('vm1', 'nvme0=/run/vfud/nvme0.sock', 'net0=/run/vfud/net0.sock')
        r = hook('vm1', 'migrate', 'begin', xml)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, '')      # no replacement XML for libvirt
        self.assertIn("vfu-hook: VM 'vm1': refusing live migration", r.stderr)
        self.assertIn('(net0, nvme0)', r.stderr)
        self.assertIn('cannot migrate device state', r.stderr)
        self.assertIn('vfuctl migrate', r.stderr)

    def test_restore_is_refused(self):
        xml = domain('vm1', 'nvme0=/run/vfud/nvme0.sock')
        r = hook('vm1', 'restore', 'begin', xml)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, '')
        self.assertIn('refusing to restore a saved state', r.stderr)
        self.assertIn('virsh managedsave-remove vm1', r.stderr)

    def test_unreachable_vfud(self):
        xml = domain('vm1', 'nvme0=/run/vfud/nvme0.sock')
        t0 = time.monotonic()
        r = hook('vm1', 'prepare', 'begin', xml)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(r.returncode, 1)
        self.assertIn("VM 'vm1': its vfio-user devices (nvme0) need vfud", r.stderr)
        self.assertIn(UNREACHABLE, r.stderr)
        r = hook('vm1', 'release', 'end', xml)
        self.assertEqual(r.returncode, 1)
        self.assertIn('need vfud', r.stderr)
        # reconnect never fails: libvirt would kill the running VM
        r = hook('vm1', 'reconnect', 'begin', xml)
        self.assertEqual(r.returncode, 0)
        self.assertIn('need vfud', r.stderr)

    def test_bus_from_environment(self):
        xml = domain('vm1', 'nvme0=/run/vfud/nvme0.sock')
        r = subprocess.run([HOOK, 'vm1', 'prepare', 'begin', '-'], input=xml,
                           capture_output=True, text=True,
                           env=dict(HOOK_ENV, VFU_HOOK_BUS=UNREACHABLE))
        self.assertEqual(r.returncode, 1)
        self.assertIn(UNREACHABLE, r.stderr)

    def test_unreadable_xml(self):
        for op, subop, rc in (('prepare', 'begin', 0), ('release', 'end', 0),
                              ('migrate', 'begin', 1), ('restore', 'begin', 1)):
            r = hook('vm1', op, subop, '<domain><name>vm1</name')
            self.assertEqual(r.returncode, rc, (op, r.stderr))
            self.assertIn('cannot read the domain XML', r.stderr)

    def test_usage(self):
        r = subprocess.run([HOOK], capture_output=True, text=True, input='')
        self.assertEqual(r.returncode, 2)
        self.assertIn('usage: vfu-hook', r.stderr)
        r = subprocess.run([HOOK, '--help'], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        r = subprocess.run([HOOK, '--timeout', '0', 'a', 'b', 'c'], capture_output=True,
                           text=True, input='')
        self.assertEqual(r.returncode, 2)


class WithVfud(unittest.TestCase):
    """Every operation against the real vfud on a private bus."""

    @classmethod
    def setUpClass(cls):
        cls.env = lvenv.Vfud().__enter__()
        if 'nvme' not in cls.env.types():
            cls.env.__exit__(None, None, None)
            lvenv.skip('vfud-worker has no nvme device type in this build')
        cls.env.create_nvme('nvme0', 'vm1')
        cls.sock = cls.env.prop('nvme0', 'SocketPath')

    @classmethod
    def tearDownClass(cls):
        cls.env.__exit__(None, None, None)

    def xml(self, *devs):
        return domain('vm1', *(devs or ('nvme0=' + self.sock,)))

    def run_hook(self, op, subop, xml=None, **kw):
        return hook('vm1', op, subop, xml or self.xml(), bus=self.env.address, **kw)

    def test_lifecycle(self):
        env = self.env
        env.manager('StopDevice', 's', 'nvme0')
        self.assertEqual(env.state('nvme0'), 'idle')
        r = self.run_hook('prepare', 'begin')
        self.assertEqual((r.returncode, r.stderr), (0, ''))
        self.assertEqual(env.state('nvme0'), 'listening')
        self.assertTrue(os.path.exists(self.sock))
        r = self.run_hook('prepare', 'begin')           # idempotent
        self.assertEqual((r.returncode, r.stderr), (0, ''))
        r = self.run_hook('release', 'end')
        self.assertEqual((r.returncode, r.stderr), (0, ''))
        self.assertEqual(env.state('nvme0'), 'idle')
        # the definition stays
        self.assertIn('nvme0', env.manager('ListDevices', 's', 'vm1').stdout)
        r = self.run_hook('release', 'end')             # idempotent
        self.assertEqual((r.returncode, r.stderr), (0, ''))
        r = self.run_hook('reconnect', 'begin')
        self.assertEqual((r.returncode, r.stderr), (0, ''))
        self.assertEqual(env.state('nvme0'), 'listening')
        # migrate/restore refusals do not depend on vfud
        self.assertEqual(self.run_hook('migrate', 'begin').returncode, 1)
        self.assertEqual(env.state('nvme0'), 'listening')

    def test_offline_migration_after_vfuctl_migrate(self):
        # a device that arrived by cold migration (vfud passes migrated-from) and no client used yet:
        # the VM's incoming migration is the offline one that follows vfuctl migrate
        env = self.env
        env.manager('CreateDevice', 'sssa{sv}', 'nvme', 'arrived0', 'vm1', '2', 'size', 't', str(1 << 20),
                    'migrated-from', 's', 'host-a')
        sock = env.prop('arrived0', 'SocketPath')
        self.assertEqual(env.prop('arrived0', 'MigratedFrom'), 'host-a')
        r = self.run_hook('migrate', 'begin', self.xml('arrived0=' + sock))
        self.assertEqual((r.returncode, r.stderr), (0, ''))
        # one device that did not arrive that way is enough to refuse
        r = self.run_hook('migrate', 'begin', self.xml('arrived0=' + sock, 'nvme0=' + self.sock))
        self.assertEqual(r.returncode, 1)
        self.assertIn("device 'nvme0' here did not arrive by vfuctl migrate", r.stderr)
        r = self.run_hook('migrate', 'begin', self.xml('arrived0=' + sock, 'ghost=/run/vfud/ghost.sock'))
        self.assertEqual(r.returncode, 1)
        self.assertIn("device 'ghost' is not on this host", r.stderr)
        env.manager('DestroyDevice', 's', 'arrived0')

    def test_prepare_failures_name_the_device(self):
        r = self.run_hook('prepare', 'begin',
                          self.xml('nvme0=' + self.sock, 'ghost=/run/vfud/ghost.sock'))
        self.assertEqual(r.returncode, 1)
        self.assertIn("vfio-user device 'ghost' is not ready: vfud has no device 'ghost'",
                      r.stderr)
        self.assertNotIn("'nvme0'", r.stderr)
        # a definition pointing QEMU at another socket than vfud's
        r = self.run_hook('prepare', 'begin', self.xml('nvme0=/elsewhere/nvme0.sock'))
        self.assertEqual(r.returncode, 1)
        self.assertIn("device 'nvme0' is not ready: it listens on %s but the VM's "
                      "definition points QEMU at /elsewhere/nvme0.sock" % self.sock, r.stderr)
        # release of a device vfud does not know is fine
        r = self.run_hook('release', 'end', self.xml('ghost=/run/vfud/ghost.sock'))
        self.assertEqual((r.returncode, r.stderr), (0, ''))

    def test_release_waits_for_the_client_to_go(self):
        hold = os.environ.get('VU_HOLD')
        if not hold:
            self.skipTest('VU_HOLD not set')
        env = self.env
        self.assertEqual(self.run_hook('prepare', 'begin').returncode, 0)
        client = subprocess.Popen([hold, self.sock, '--idle'], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            self.assertTrue(client.stdout.readline().startswith('connected'))
            deadline = time.monotonic() + 10
            while env.state('nvme0') != 'connected' and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(env.state('nvme0'), 'connected')
            # the client goes while the hook is waiting, as QEMU does at exit
            xml_path = os.path.join(env.dir, 'vm1.xml')
            with open(xml_path, 'w') as f:
                f.write(self.xml())
            with open(xml_path) as xml_in:
                hook_proc = subprocess.Popen([HOOK, '--bus', env.address, '--timeout', '10',
                                              'vm1', 'release', 'end', '-'],
                                             stdin=xml_in, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True, env=HOOK_ENV)
            time.sleep(0.5)
            self.assertIsNone(hook_proc.poll(), 'the hook did not wait for the client')
            client.stdin.close()
            client.wait(10)
            out, err = hook_proc.communicate(timeout=15)
            self.assertEqual((hook_proc.returncode, err), (0, ''))
            self.assertEqual(env.state('nvme0'), 'idle')
        finally:
            if client.poll() is None:
                client.kill()
            client.wait()
            client.stdout.close()
            if not client.stdin.closed:
                client.stdin.close()

    def test_vfud_gone(self):
        env = self.env
        env.stop()
        try:
            r = self.run_hook('prepare', 'begin')
            self.assertEqual(r.returncode, 1)
            self.assertIn('vfud is not running', r.stderr)
        finally:
            env.start()


def libvirtd_main():
    """The hook installed into a private libvirtd, with vfud on a private bus."""
    lvenv.reexec_in_namespace()
    failures = []

    def check(cond, what):
        print(('ok   ' if cond else 'FAIL ') + what)
        if not cond:
            failures.append(what)

    with lvenv.Vfud() as vf:
        if 'nvme' not in vf.types():
            lvenv.skip('vfud-worker has no nvme device type in this build')
        wrapper = '#!/bin/sh\nexec %s --bus %s "$@"\n' % (HOOK, vf.address)
        with lvenv.Libvirtd(hooks={'vfu-hook': wrapper},
                            host_uuid='7a1c9d2e-4b3f-4e8a-a6d5-1f2e3d4c5b6a') as lv:
            vf.create_nvme('nvme0', 'hooked')
            vf.manager('StopDevice', 's', 'nvme0')
            sock = vf.prop('nvme0', 'SocketPath')
            lv.define(domain('hooked', 'nvme0=' + sock))

            # start: prepare brings the device up, then QEMU 7.2 refuses the
            # unknown vfio-user-pci device and release takes it down again
            r = lv.virsh('start', 'hooked', check=False)
            check(r.returncode != 0 and 'vfio-user-pci' in r.stderr,
                  'QEMU got as far as the vfio-user device: %s' % r.stderr.strip())
            with open(vf.log) as f:
                log = f.read()
            check('nvme0: idle -> starting' in log and 'starting -> listening' in log,
                  'the prepare hook started the device before QEMU')
            check(vf.state('nvme0') == 'idle', 'the release hook stopped it again')

            # vfud down: the start is refused by the hook, with its reason
            vf.stop()
            r = lv.virsh('start', 'hooked', check=False)
            check(r.returncode != 0 and 'Hook script execution failed' in r.stderr and
                  "vfu-hook: VM 'hooked': vfio-user device 'nvme0' is not ready: "
                  "vfud is not running" in r.stderr,
                  'a start without vfud fails with the hook\'s message: %s' % r.stderr.strip())
            vf.start()

            # restore: a saved VM whose definition (now) has a vfu device
            lv.define(lvenv.domain_xml('saved', memory_backing=
                      "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"))
            lv.virsh('start', 'saved')
            image = os.path.join(lv.dir, 'saved.img')
            lv.virsh('save', 'saved', image)
            vf.create_nvme('nvme1', 'saved')
            sock1 = vf.prop('nvme1', 'SocketPath')
            xml = lv.virsh_out('save-image-dumpxml', image)
            path = os.path.join(lv.dir, 'saved-vfu.xml')
            with open(path, 'w') as f:
                f.write(domain_from(xml, 'nvme1=' + sock1))
            lv.virsh('save-image-define', image, path)
            r = lv.virsh('restore', image, check=False)
            check(r.returncode != 0 and 'refusing to restore a saved state' in r.stderr,
                  'a restore is refused by the hook: %s' % r.stderr.strip())
            check('saved' not in lv.virsh_out('list', '--name').split(),
                  'the refused restore left no running VM')

            # migrate: a second host (a namespace and libvirtd of its own),
            # hook installed, refuses an incoming VM with vfu devices
            memfd = "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
            with lvenv.Libvirtd(hooks={'vfu-hook': wrapper}, nested=True,
                                host_uuid='2f0b5e3c-8a4d-4f6e-9b1a-0c7d2e3f4a5b') as dst:
                lv.define(lvenv.domain_xml('mig', memory_backing=memfd))
                lv.virsh('start', 'mig')
                xml = lv.virsh_out('dumpxml', '--migratable', 'mig')
                path = os.path.join(lv.dir, 'mig-vfu.xml')
                with open(path, 'w') as f:
                    f.write(domain_from(xml, 'nvme2=/run/vfud/nvme2.sock'))
                migrate = ['migrate', '--live', 'mig', dst.uri, '--migrateuri', 'tcp://127.0.0.1']
                r = lv.virsh(*(migrate + ['--xml', path]), check=False)
                check(r.returncode != 0 and "vfu-hook: VM 'mig': refusing live migration" in
                      r.stderr, 'a live migration with vfu devices is refused at the '
                      'destination: %s' % r.stderr.strip())
                check('mig' in lv.virsh_out('list', '--name').split(),
                      'the VM keeps running on the source')
                # control: the same VM without vfu devices migrates
                r = lv.virsh(*migrate, check=False)
                check(r.returncode == 0 and 'mig' in dst.virsh_out('list', '--name').split(),
                      'the same migration without vfu devices goes through: %s'
                      % r.stderr.strip())

                # offline, after vfuctl migrate: the devices arrived here (MigratedFrom) and no
                # client used them, so the hook lets the shut-off VM's definition in
                vf.manager('CreateDevice', 'sssa{sv}', 'nvme', 'nvme3', 'off', '2', 'size', 't',
                           str(1 << 20), 'migrated-from', 's', 'host-a')
                vf.manager('CreateDevice', 'sssa{sv}', 'nvme', 'nvme4', 'off2', '1', 'size', 't',
                           str(1 << 20))
                for name, dev in (('off', 'nvme3'), ('off2', 'nvme4')):
                    lv.define(lvenv.domain_xml(name, memory_backing=memfd))
                    xml = lv.virsh_out('dumpxml', '--inactive', name)
                    lv.define(domain_from(xml, '%s=%s' % (dev, vf.prop(dev, 'SocketPath'))))
                r = lv.virsh('migrate', '--offline', '--persistent', 'off2', dst.uri, check=False)
                check(r.returncode != 0 and "device 'nvme4' here did not arrive by vfuctl migrate"
                      in r.stderr, 'an offline migration of devices never moved is refused: %s'
                      % r.stderr.strip())
                r = lv.virsh('migrate', '--offline', '--persistent', 'off', dst.uri, check=False)
                check(r.returncode == 0 and 'off' in dst.virsh_out('list', '--all', '--name').split(),
                      'the offline migration after vfuctl migrate goes through: %s' % r.stderr.strip())
    if failures:
        print('%d failure(s)' % len(failures))
        sys.exit(1)


def domain_from(xml, *devices):
    r = subprocess.run([RENDER, '-'] + list(devices), input=xml, capture_output=True,
                       text=True, check=True)
    return r.stdout


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ('argv', 'vfud', 'libvirtd'):
        print('usage: test_hook.py argv|vfud|libvirtd')
        sys.exit(2)
    if not HOOK or not RENDER:
        lvenv.skip('VFU_HOOK/VLV_RENDER not set (run through meson test)')
    which = sys.argv[1]
    if which == 'libvirtd':
        libvirtd_main()
        return
    cls = Argv if which == 'argv' else WithVfud
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(cls)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == '__main__':
    main()
