#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""vfud and the persistent definitions of a private libvirtd it watches.

vfud is started after the private libvirtd, inside its namespace, with
[Libvirt] URI= that libvirtd: it is certainly connected and sees every
define.  Devices of a shut-off VM, and what becomes of them when the
definition changes:

  vfuctl detach (DetachDevice)   Vm "", gone from the definition, and a
                                 later define does not bring it back
  a detach without vfud          (vlv-tool detach, as virsh edit would):
                                 vfud follows it: Vm "", not put back
  virsh define without a device  (a template without vfu entries) the
                                 same: the device is detached
  undefine, then define again    the device comes back (vfud had it;
                                 the new definition never did)
  a VM defined after its device  gets it

Each "does not come back" is checked after a barrier that proves vfud has
handled the define: a marker VM defined right after it, whose own device
vfud writes in only once it got there (events and libvirt jobs are
handled in order).

Skips (77) as non-root or without libvirtd.  Environment: VLV_TOOL,
VLV_RENDER, VFUD, VFUD_WORKER.
"""

import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lvenv  # noqa: E402

TOOL = os.environ.get('VLV_TOOL', '')
RENDER = os.environ.get('VLV_RENDER', '')
failures = []


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def wait_for(cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for ' + what)
        time.sleep(0.05)


def main():
    lvenv.reexec_in_namespace()
    if not TOOL or not RENDER:
        lvenv.skip('VLV_TOOL/VLV_RENDER not set (run through meson test)')
    with lvenv.Libvirtd() as lv, lvenv.Vfud(libvirt_uri=lv.uri) as vf:
        if 'nvme' not in vf.types():
            lvenv.skip('vfud-worker has no nvme device type in this build')
        cases(lv, vf)
    if failures:
        print('%d failure(s)' % len(failures))
        sys.exit(1)


def cases(lv, vf):
    plain = lvenv.domain_xml('dv')

    def listed(vm):
        out = subprocess.run([RENDER, '--list', '-'], capture_output=True, text=True, check=True,
                             input=lv.virsh_out('dumpxml', vm, '--inactive')).stdout
        return sorted(line.split()[0] for line in out.splitlines())

    def status(name):
        return vf.prop(name, 'LibvirtStatus')

    # the marker: device mk of VM mark, applied whenever mark is defined afresh
    vf.create_nvme('mk', 'mark', size=1 << 20)
    wait_for(lambda: status('mk') == 'failed', 'mk to find no VM mark')

    def barrier():
        """Every define before this one has been handled by vfud."""
        lv.define(lvenv.domain_xml('mark'))
        wait_for(lambda: status('mk') == 'applied', 'vfud to write mark')
        lv.virsh('undefine', 'mark')
        wait_for(lambda: status('mk') == 'failed', 'vfud to see mark undefined')

    def redefine(vm, xml=None):
        """virsh define vm's current definition again (or xml): a DEFINED event."""
        path = os.path.join(lv.dir, 'redefine.xml')
        with open(path, 'w') as f:
            f.write(xml if xml is not None else lv.virsh_out('dumpxml', vm, '--inactive'))
        lv.virsh('define', path)
        barrier()

    lv.define(plain)
    for name in ('d1', 'd2'):
        vf.create_nvme(name, 'dv', size=1 << 20)
        wait_for(lambda: status(name) == 'applied', name + ' to be applied')
    check(listed('dv') == ['d1', 'd2'], 'both devices in the definition: %s' % listed('dv'))

    # vfud's own detach from the shut-off VM
    vf.manager('DetachDevice', 's', 'd2')
    check(vf.prop('d2', 'Vm') == '' and status('d2') == '', 'DetachDevice: Vm and LibvirtStatus cleared')
    check(listed('dv') == ['d1'], 'DetachDevice: gone from the definition: %s' % listed('dv'))
    redefine('dv')
    check(listed('dv') == ['d1'] and vf.prop('d2', 'Vm') == '',
          'a later define does not bring the detached device back: %s' % listed('dv'))

    # a detach vfud did not make (vlv-tool edits the definition as any libvirt client)
    r = subprocess.run([TOOL, 'detach', 'dv', 'd1'], capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, 'vlv-tool detach from the shut-off VM ' + r.stderr.strip())
    barrier()
    check(listed('dv') == [], 'the outside detach stands: %s' % listed('dv'))
    check(vf.prop('d1', 'Vm') == '' and status('d1') == '',
          'vfud followed it: Vm %r, LibvirtStatus %r' % (vf.prop('d1', 'Vm'), status('d1')))
    with open(vf.log) as f:
        check('changed without it: detached' in f.read(), 'vfud says why in its log')
    redefine('dv')
    check(listed('dv') == [], 'and stays after another define: %s' % listed('dv'))

    # attach again through vfud; a define from a template without vfu entries detaches it too
    vf.manager('AttachDevice', 'ss', 'd1', 'dv')
    check(listed('dv') == ['d1'] and vf.prop('d1', 'Vm') == 'dv', 'AttachDevice puts it back')
    uuid = lv.virsh_out('domuuid', 'dv').strip()
    redefine('dv', plain.replace('</name>', '</name>\n  <uuid>%s</uuid>' % uuid, 1))
    check(listed('dv') == [] and vf.prop('d1', 'Vm') == '',
          'a define without the device detaches it: %s %r' % (listed('dv'), vf.prop('d1', 'Vm')))

    # undefined, then defined again: the device comes back
    vf.manager('AttachDevice', 'ss', 'd1', 'dv')
    lv.virsh('undefine', 'dv')
    wait_for(lambda: status('d1') == 'failed', 'vfud to see dv undefined')
    lv.define(plain)
    wait_for(lambda: status('d1') == 'applied', 'd1 to come back')
    check(listed('dv') == ['d1'] and vf.prop('d1', 'Vm') == 'dv',
          'defined again after an undefine: the device is back: %s' % listed('dv'))

    # a VM defined after its device gets it
    vf.create_nvme('d3', 'late', size=1 << 20)
    wait_for(lambda: status('d3') == 'failed', 'd3 to find no VM late')
    lv.define(lvenv.domain_xml('late'))
    wait_for(lambda: status('d3') == 'applied', 'd3 to be applied')
    check(listed('late') == ['d3'], 'the late VM carries its device: %s' % listed('late'))


if __name__ == '__main__':
    main()
