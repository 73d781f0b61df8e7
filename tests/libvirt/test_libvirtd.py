#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""vlv against a real libvirtd (Debian 12: libvirt 9.0, QEMU 7.2, TCG).

Defines vfu's XML through the libvirt API, reads it back with virsh,
renders the QEMU command line with domxml-to-native, starts domains with
vfu's PCI topology to prove QEMU and libvirt's own devices coexist with
it, exercises hot-plug through libvirt's monitor pass-through, the
lifecycle watch, and every refusal.  QEMU 7.2 has no vfio-user-pci: the
topology and hot-plug mechanics are exercised with a stand-in device
(e1000e) at exactly the addresses vfu gives vfio-user devices.

Environment: VLV_TOOL, VLV_RENDER (built helpers).
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lvenv  # noqa: E402

TOOL = os.environ.get('VLV_TOOL', '')
RENDER = os.environ.get('VLV_RENDER', '')
LV = None


def tool(*args, check=None):
    """Run vlv-tool; check=None returns the result, 'ok' asserts success,
    an error code name asserts that refusal."""
    r = subprocess.run([TOOL] + list(args), capture_output=True, text=True, timeout=120)
    if check == 'ok' and r.returncode != 0:
        raise AssertionError('vlv-tool %s failed: %s' % (' '.join(args), r.stderr.strip()))
    if check and check != 'ok':
        if r.returncode != 1 or not r.stderr.startswith('vlv-tool: %s: ' % check):
            raise AssertionError('vlv-tool %s: expected %s, got rc=%d %s'
                                 % (' '.join(args), check, r.returncode, r.stderr.strip()))
    return r


def render(xml, *devs, check_unchanged=False):
    args = [RENDER] + (['--check-unchanged'] if check_unchanged else []) + ['-'] + list(devs)
    return subprocess.run(args, input=xml, capture_output=True, text=True)


def listed(xml):
    r = subprocess.run([RENDER, '--list', '-'], input=xml, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [l.split() for l in r.stdout.splitlines()]


def dumpxml(name, inactive=True):
    args = ['dumpxml', name] + (['--inactive'] if inactive else [])
    return LV.virsh_out(*args)


def stand_in(xml):
    """vfu's vfio-user-pci devices replaced by e1000e at the same place."""
    xml = xml.replace('&quot;driver&quot;:&quot;vfio-user-pci&quot;',
                      '&quot;driver&quot;:&quot;e1000e&quot;')
    return re.sub(r'&quot;socket&quot;:\{[^}]*\},', '', xml)


def qmp(name, cmd):
    return json.loads(LV.virsh_out('qemu-monitor-command', name, json.dumps(cmd)))


def pci_devices(name):
    """{qdev_id: (bus, slot, function)} from query-pci, recursively."""
    out = {}

    def walk(bus):
        for d in bus['devices']:
            out[d.get('qdev_id', '')] = (d['bus'], d['slot'], d['function'])
            sub = d.get('pci_bridge', {}).get('devices')
            if sub is not None:
                walk(d['pci_bridge'])

    for bus in qmp(name, {'execute': 'query-pci'})['return']:
        walk(bus)
    return out


def devs(tag):
    """Two devices; device names and sockets are unique per test, since
    one device cannot be in two VMs' definitions."""
    return ['%s-nvme0=/run/vfud/%s/nvme0.sock' % (tag, tag),
            '%s-net0=/run/vfud/%s/net0.sock' % (tag, tag)]


class Libvirtd(unittest.TestCase):

    def test_apply_roundtrip(self):
        DEVS_ = devs('rt')
        LV.define(lvenv.domain_xml('rt-q35'))
        tool('apply', 'rt-q35', *DEVS_, check='ok')
        xml = dumpxml('rt-q35')
        # libvirt kept the qemu:commandline intact: vfu renders it unchanged
        self.assertEqual(render(xml, *DEVS_, check_unchanged=True).returncode, 0,
                         'dumpxml differs from what vfu renders:\n' + xml)
        self.assertEqual(sorted(d[0] for d in listed(xml)), ['rt-net0', 'rt-nvme0'])
        self.assertIn("<source type='memfd'/>", xml)
        self.assertIn("<access mode='shared'/>", xml)
        # applying again is a no-op
        tool('apply', 'rt-q35', *DEVS_, check='ok')
        self.assertEqual(dumpxml('rt-q35'), xml)
        # `vfuctl xml` view: what apply would define, without defining
        shown = tool('xml', 'rt-q35', DEVS_[0], check='ok').stdout
        self.assertEqual([d[0] for d in listed(shown)], ['rt-nvme0'])
        self.assertEqual(dumpxml('rt-q35'), xml)

    def test_domxml_to_native(self):
        for name, machine, bus in (('native-q35', 'q35', 'vfu.port'),
                                   ('native-pc', 'pc', 'vfu.bridge')):
            DEVS_ = devs(name)
            LV.define(lvenv.domain_xml(name, machine=machine))
            tool('apply', name, *DEVS_, check='ok')
            argv = LV.virsh_out('domxml-to-native', 'qemu-argv', '--domain', name)
            args = shlex.split(argv)
            devices = [json.loads(args[i + 1]) for i, a in enumerate(args[:-1])
                       if a == '-device' and args[i + 1].startswith('{')]
            vfu = {d['id']: d for d in devices if d['driver'] == 'vfio-user-pci'}
            nvme, net = 'vfu-%s-nvme0' % name, 'vfu-%s-net0' % name
            self.assertEqual(sorted(vfu), sorted([nvme, net]))
            self.assertEqual(vfu[nvme]['socket'],
                             {'type': 'unix', 'path': '/run/vfud/%s/nvme0.sock' % name})
            self.assertTrue(vfu[nvme]['bus'].startswith(bus))
            # the controllers come before the devices that sit on them
            ids = [d['id'] for d in devices]
            for d in vfu.values():
                self.assertLess(ids.index(d['bus']), ids.index(d['id']))
            mem = [json.loads(args[i + 1]) for i, a in enumerate(args[:-1])
                   if a == '-object' and 'memory-backend' in args[i + 1]]
            self.assertEqual(len(mem), 1)
            self.assertEqual(mem[0]['qom-type'], 'memory-backend-memfd')
            self.assertIs(mem[0]['share'], True)

    def test_topology_coexists(self):
        """libvirt's own devices (root ports, disks, NICs, controllers it
        auto-places) and vfu's ports/bridge start together in QEMU, and
        the devices sit where vfu put them."""
        extra = '''
    <controller type='usb' model='qemu-xhci'/>
    <interface type='user'><model type='virtio'/></interface>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <serial type='pty'/>
    <video><model type='vga'/></video>'''
        for name, machine in (('topo-q35', 'q35'), ('topo-pc', 'pc')):
            DEVS_ = devs(name)
            nvme, net = 'vfu-%s-nvme0' % name, 'vfu-%s-net0' % name
            LV.define(lvenv.domain_xml(name, machine=machine, devices=extra))
            tool('apply', name, *DEVS_, check='ok')
            LV.define(stand_in(dumpxml(name)))
            LV.virsh('start', name)
            try:
                # devices behind bridges are listed once the firmware has
                # numbered the buses, a moment after start
                deadline = time.monotonic() + 30
                while True:
                    pci = pci_devices(name)
                    if (nvme in pci and net in pci) or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                if machine == 'q35':
                    for i in range(8):
                        self.assertEqual(pci['vfu.port%d' % i][1:], (0x1c, i))
                    places = {pci[d][1:] for d in (nvme, net)}
                    self.assertEqual(places, {(0, 0)})
                else:
                    self.assertEqual(pci['vfu.bridge'][1:], (0x1f, 0))
                    self.assertEqual({pci[net][1], pci[nvme][1]}, {1, 2})
                # libvirt's devices are all there too
                for alias in ('net0', 'rng0', 'video0'):
                    self.assertIn(alias, pci)
            finally:
                LV.virsh('destroy', name)

    def test_refusals(self):
        DEVS_ = devs('ref')
        before = None
        # no such VM
        tool('apply', 'no-such-vm', *DEVS_, check='NO_VM')
        # NUMA cell with private memory: refused, definition unchanged
        numa = '''<cpu><numa>
      <cell id='0' cpus='0' memory='64' unit='MiB'/>
      <cell id='1' cpus='1' memory='64' unit='MiB' memAccess='private'/>
    </numa></cpu>'''
        LV.define(lvenv.domain_xml('ref-numa', extra=numa, vcpus=2))
        before = dumpxml('ref-numa')
        r = tool('apply', 'ref-numa', *DEVS_, check='MEMORY')
        self.assertIn("NUMA cell 1 has memAccess='private'", r.stderr)
        self.assertEqual(dumpxml('ref-numa'), before)
        # a device another VM already carries
        LV.define(lvenv.domain_xml('ref-a'))
        LV.define(lvenv.domain_xml('ref-b'))
        tool('apply', 'ref-a', 'shared0=/run/vfud/shared0.sock', check='ok')
        before = dumpxml('ref-b')
        r = tool('apply', 'ref-b', 'shared0=/run/vfud/shared0.sock', check='ATTACHED_ELSEWHERE')
        self.assertIn("VM 'ref-a'", r.stderr)
        tool('attach', 'ref-b', 'other=/run/vfud/shared0.sock', check='ATTACHED_ELSEWHERE')
        self.assertEqual(dumpxml('ref-b'), before)
        # libvirt unreachable
        tool('--uri', 'qemu:///system?socket=/nonexistent/sock', 'apply', 'ref-a', *DEVS_,
             check='UNREACHABLE')

    def test_dropped_namespace_is_restored(self):
        DEVS_ = devs('drop')
        """A driver that silently drops qemu:commandline (libvirt's test
        driver) is caught, and the previous definition is put back."""
        node = os.path.join(LV.dir, 'testnode.xml')
        with open(node, 'w') as f:
            f.write('<node>\n' + lvenv.domain_xml('drop-me') + '</node>\n')
        r = tool('--uri', 'test://' + node, 'apply', 'drop-me', *DEVS_, check='LIBVIRT')
        self.assertIn('dropped', r.stderr)
        self.assertIn('previous definition was put back', r.stderr)

    def test_hotplug(self):
        # a running VM with vfu's ports: apply one device, boot it with a
        # stand-in in its place
        LV.define(lvenv.domain_xml('hot'))
        tool('apply', 'hot', 'seed=/run/vfud/seed.sock', check='ok')
        LV.define(stand_in(dumpxml('hot')))
        LV.virsh('start', 'hot')
        try:
            persistent = dumpxml('hot')
            # the real device: QEMU 7.2 has no vfio-user-pci → QEMU's refusal,
            # persistent definition untouched
            r = tool('attach', 'hot', 'nvme9=/run/vfud/nvme9.sock', check='HOTPLUG')
            self.assertIn('vfio-user-pci', r.stderr)
            self.assertEqual(dumpxml('hot'), persistent)
            # the mechanics with a stand-in at a vfu port
            tool('qmp-add', 'hot', json.dumps({'driver': 'e1000e', 'id': 'vfu-x',
                                               'bus': 'vfu.port3', 'addr': '0x0'}), check='ok')
            self.assertEqual(tool('qmp-has', 'hot', 'vfu-x', check='ok').stdout.strip(), 'yes')
            self.assertEqual(pci_devices('hot')['vfu-x'][1:], (0, 0))
            # no guest OS answers the unplug request: a clear timeout
            t0 = time.monotonic()
            r = tool('qmp-del', 'hot', 'vfu-x', '1500', check='TIMEOUT')
            self.assertGreaterEqual(time.monotonic() - t0, 1.4)
            self.assertIn('did not release device vfu-x', r.stderr)
            self.assertEqual(tool('qmp-has', 'hot', 'vfu-x', check='ok').stdout.strip(), 'yes')
            # detaching what is not there succeeds
            tool('detach', 'hot', 'never-attached', check='ok')
        finally:
            LV.virsh('destroy', 'hot')
        # a running VM started without vfu devices cannot take one
        LV.define(lvenv.domain_xml('hot-plain', memory_backing=
                  "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"))
        LV.virsh('start', 'hot-plain')
        try:
            persistent = dumpxml('hot-plain')
            r = tool('attach', 'hot-plain', 'nvme8=/run/vfud/nvme8.sock', check='HOTPLUG')
            self.assertIn('without vfu\'s hot-plug ports', r.stderr)
            self.assertEqual(dumpxml('hot-plain'), persistent)
        finally:
            LV.virsh('destroy', 'hot-plain')
        # ...nor one without shared memory
        LV.define(lvenv.domain_xml('hot-private'))
        LV.virsh('start', 'hot-private')
        try:
            tool('attach', 'hot-private', 'nvme7=/run/vfud/nvme7.sock', check='MEMORY')
        finally:
            LV.virsh('destroy', 'hot-private')

    def test_attach_detach_stopped(self):
        LV.define(lvenv.domain_xml('cold'))
        tool('apply', 'cold', 'net0=/run/vfud/net0.sock', 'nvme0=/run/vfud/nvme0.sock', check='ok')
        tool('attach', 'cold', 'nvme1=/run/vfud/nvme1.sock', check='ok')
        self.assertEqual(sorted(d[0] for d in listed(dumpxml('cold'))),
                         ['net0', 'nvme0', 'nvme1'])
        tool('attach', 'cold', 'nvme1=/run/vfud/nvme1.sock', check='ok')   # idempotent
        places = {d[0]: d[2:] for d in listed(dumpxml('cold'))}
        tool('detach', 'cold', 'nvme0', check='ok')
        after = {d[0]: d[2:] for d in listed(dumpxml('cold'))}
        self.assertEqual(sorted(after), ['net0', 'nvme1'])
        # the others kept their PCI addresses
        self.assertEqual(after['net0'], places['net0'])
        self.assertEqual(after['nvme1'], places['nvme1'])
        tool('detach', 'cold', 'nvme0', check='ok')   # idempotent

    def test_watch(self):
        DEVS_ = devs('w')
        w = subprocess.Popen([TOOL, 'watch', '60', 'watch-', *DEVS_],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []

        def expect(line, timeout=20):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = w.stdout.readline().strip()
                lines.append(got)
                if got == line:
                    return
                if got == '' and w.poll() is not None:
                    break
            raise AssertionError('watch: expected %r, saw %r' % (line, lines))

        try:
            expect('CONNECTED')
            LV.define(lvenv.domain_xml('watch-1'))
            expect('DEFINED watch-1')
            expect('APPLIED watch-1')
            # vfu's own define raises one more DEFINED, which renders unchanged
            expect('DEFINED watch-1')
            expect('APPLIED watch-1')
            self.assertEqual(sorted(d[0] for d in listed(dumpxml('watch-1'))),
                             ['w-net0', 'w-nvme0'])
            # a restart of libvirtd: the watch reconnects and says so
            LV.stop()
            LV.start()
            expect('CONNECTED')
            LV.define(lvenv.domain_xml('other'))
            expect('DEFINED other')
            LV.virsh('undefine', 'other')
            expect('UNDEFINED other')
            # no define loop: nothing more about watch-1
            self.assertEqual([l for l in lines if 'watch-1' in l],
                             ['DEFINED watch-1', 'APPLIED watch-1'] * 2)
        finally:
            w.kill()
            w.communicate()


def main():
    lvenv.reexec_in_namespace()
    if not TOOL or not RENDER:
        lvenv.skip('VLV_TOOL/VLV_RENDER not set (run through meson test)')
    global LV
    with lvenv.Libvirtd() as lv:
        LV = lv
        prog = unittest.main(exit=False, verbosity=2)
        ok = prog.result.wasSuccessful()
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
