#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The libvirt path end to end with QEMU's real vfio-user client.

A private libvirtd (lvenv) runs the QEMU >= 10.1 that the VM suite
provisions (tests/vm/provision: $VFU_VM_CACHE, default /var/cache/vfu-vm),
vfu-hook is installed, vfud serves NVMe devices on a private bus.  vfud is
started after that libvirtd, with [Libvirt] URI= it: it is connected and
sees every define, and it is the only writer of the VM's definition (as on
a host; two writers were why this test failed where vfud happened to reach
the test's libvirtd).  Then:

  CreateDevice   nvme0 for the VM: vfud writes memfd shared RAM, vfu's
                 ports and the device into the definition
  virsh start    the prepare hook starts the device, QEMU connects, a Linux
                 guest (the VM suite's kernel and initramfs) sees /dev/nvme0
  AttachDevice   nvme1 hot-plugged through QMP device_add; the guest sees
                 it; it is recorded in the persistent definition
  DetachDevice   nvme1 (made with msi: MSI, no MSI-X): device_del; the
                 guest releases it; DEVICE_DELETED; gone from the persistent
                 definition; Vm "" and it stays out.  nvme0 (MSI-X) on QEMU
                 releases whose client aborts on its device_del: refused
                 while running, with the reason
  virsh destroy  the release hook returns the devices to idle

Skips (77) when the provisioned QEMU/guest is absent, or as non-root.
Environment: VLV_RENDER, VFU_HOOK, VFUD, VFUD_WORKER.
"""

import glob
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, '..', 'vm'))
import lvenv  # noqa: E402

CACHE = os.environ.get('VFU_VM_CACHE', '/var/cache/vfu-vm')
HOOK = os.environ.get('VFU_HOOK', '')

GUEST_CASE = r'''
# Report the NVMe controllers as the host adds and removes them.
wait_for() {    # wait_for SECONDS TEST...
        n=$(($1 * 10)); shift
        while [ $n -gt 0 ]; do "$@" && return 0; sleep 0.1; n=$((n - 1)); done
        return 1
}
ctrls() { ls /sys/class/nvme 2>/dev/null | tr '\n' ' '; }
wait_for 60 test -e /sys/class/nvme/nvme0
echo "GUEST-NVME: boot $(ctrls)"
wait_for 300 test -e /sys/class/nvme/nvme1
wait_for 30 test -e /sys/class/nvme/nvme1/model
echo "GUEST-NVME: plugged $(ctrls)"
wait_for 300 test ! -e /sys/class/nvme/nvme1
echo "GUEST-NVME: unplugged $(ctrls)"
'''


def provisioned():
    qemu = os.path.join(CACHE, 'bin', 'qemu-system-x86_64')
    images = sorted(glob.glob(os.path.join(CACHE, 'images', '*', 'vmlinuz')),
                    key=os.path.getmtime)
    if not os.path.exists(qemu) or not images:
        lvenv.skip('no provisioned QEMU/guest in %s (run tests/vm/provision, '
                   'or the vm suite, first)' % CACHE)
    d = os.path.dirname(images[-1])
    initrd = os.path.join(d, 'initramfs.cpio.gz')
    if not os.path.exists(initrd):
        lvenv.skip('no guest initramfs in %s' % d)
    r = subprocess.run([qemu, '-device', 'vfio-user-pci,help'], capture_output=True, text=True)
    if r.returncode != 0:
        lvenv.skip('the provisioned QEMU has no vfio-user-pci: %s' % r.stderr.strip())
    return qemu, images[-1], initrd


def guest_initrd(base, out):
    import cpio
    case = io.BytesIO()
    w = cpio.Writer(case)
    w.directory('vfu')
    w.file('vfu/case.sh', GUEST_CASE.encode(), 0o755)
    w.finish()
    with open(base, 'rb') as f:
        data = f.read()
    with open(out, 'wb') as f:
        f.write(data)
        f.write(b'\0' * (-len(data) % 512))
        f.write(gzip.compress(case.getvalue(), 1))


def main():
    lvenv.reexec_in_namespace()
    if not HOOK:
        lvenv.skip('VFU_HOOK not set (run through meson test)')
    qemu, kernel, base_initrd = provisioned()
    failures = []

    def check(cond, what):
        print(('ok   ' if cond else 'FAIL ') + what, flush=True)
        if not cond:
            failures.append(what)
        return cond

    def wait_for(cond, timeout=120):
        deadline = time.monotonic() + timeout
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.2)
        return cond()

    # vfud starts after libvirtd (whose hook needs vfud's bus: it reads it from a file)
    work = tempfile.mkdtemp(prefix='vfu-e2e-')
    bus_file = os.path.join(work, 'bus')
    try:
        run(qemu, kernel, base_initrd, work, bus_file, check, wait_for, failures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish(failures)


def run(qemu, kernel, base_initrd, work, bus_file, check, wait_for, failures):
    wrapper = '#!/bin/sh\nexec %s --bus "$(cat %s)" "$@"\n' % (HOOK, bus_file)
    # libvirt lists every QOM type, which makes QEMU load every module
    # it finds, including the host's own in the same directory (another
    # QEMU build: an assertion fails).  The provisioned QEMU finds its
    # own through QEMU_MODULE_DIR, so hide the host's.  And when the VM
    # suite found KVM unusable here, hide it from libvirt's probe too.
    binds = []
    moddir = '/usr/lib/x86_64-linux-gnu/qemu'
    if os.path.isdir(moddir):
        binds.append((tempfile.mkdtemp(prefix='no-modules-', dir=work), moddir))
    probe = os.path.join(CACHE, 'accel-probe')
    kvm = os.path.exists(probe) and open(probe).read().strip().endswith('kvm')
    if not kvm and os.path.exists('/dev/kvm'):
        binds.append(('/dev/null', '/dev/kvm'))
    with lvenv.Libvirtd(hooks={'vfu-hook': wrapper}, keep=[CACHE], binds=binds) as lv, \
            lvenv.Vfud(libvirt_uri=lv.uri) as vf:
        if 'nvme' not in vf.types():
            lvenv.skip('vfud-worker has no nvme device type in this build')
        with open(bus_file, 'w') as f:
            f.write(vf.address)
        initrd = os.path.join(lv.dir, 'guest.initrd')
        guest_initrd(base_initrd, initrd)
        serial = os.path.join(lv.dir, 'serial.log')

        def call(method, signature, *args):
            """A manager method that may wait on libvirt; (ok, error text)."""
            r = vf.busctl('--timeout=300', 'call', vf.NAME, vf.PATH, vf.MANAGER, method,
                          signature, *args, check=False)
            return r.returncode == 0, r.stderr.strip()

        def persistent_devices():
            return subprocess.run([os.environ['VLV_RENDER'], '--list', '-'],
                                  input=lv.virsh_out('dumpxml', 'e2e', '--inactive'),
                                  capture_output=True, text=True).stdout

        lv.define('''<domain type='%s'>
  <name>e2e</name>
  <memory unit='MiB'>512</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%s</kernel>
    <initrd>%s</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='%s'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>%s</emulator>
    <serial type='file'><source path='%s'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>''' % ('kvm' if kvm else 'qemu', kernel, initrd,
            'host-passthrough' if kvm else 'maximum', qemu, serial))

        # nvme0 for the VM: vfud writes it into the definition; idle until
        # the prepare hook starts it.  nvme1 for no VM yet.
        vf.create_nvme('nvme0', 'e2e')
        vf.manager('StopDevice', 's', 'nvme0')
        vf.create_nvme('nvme1', '', msi=True)
        check(wait_for(lambda: vf.prop('nvme0', 'LibvirtStatus') == 'applied'),
              'vfud applied the definition: %s %s' % (vf.prop('nvme0', 'LibvirtStatus'),
                                                      vf.prop('nvme0', 'LibvirtError')))
        check(persistent_devices().startswith('nvme0 ') and 'nvme1 ' not in persistent_devices(),
              'the definition carries nvme0 only')
        r = lv.virsh('start', 'e2e', check=False)
        if not check(r.returncode == 0, 'libvirtd started the VM (hook, QEMU, device) '
                     + r.stderr.strip()):
            return finish(failures)

        def console_has(text, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    with open(serial, errors='replace') as f:
                        if text in f.read():
                            return True
                except FileNotFoundError:
                    pass
                time.sleep(0.2)
            return False

        def console_tail():
            try:
                with open(serial, errors='replace') as f:
                    return '\n'.join(f.read().splitlines()[-15:])
            except FileNotFoundError:
                return '(no console)'

        check(vf.state('nvme0') == 'connected', 'QEMU connected to the device')
        if not check(console_has('GUEST-NVME: boot nvme0', 180),
                     'the guest sees the cold-plugged controller'):
            print(console_tail())
            return finish(failures)

        ok, err = call('AttachDevice', 'ss', 'nvme1', 'e2e')
        check(ok, 'hot attach through QMP device_add ' + err)
        check(console_has('GUEST-NVME: plugged nvme0 nvme1', 120),
              'the guest sees the hot-plugged controller')
        check('nvme1 ' in persistent_devices() and vf.prop('nvme1', 'Vm') == 'e2e',
              'the attach is recorded in the persistent definition and in vfud')

        version = json.loads(lv.virsh_out('qemu-monitor-command', 'e2e',
                                          '{"execute":"query-version"}'))['return']['qemu']
        unplug_ok = (version['major'], version['minor']) >= (11, 2)
        if not unplug_ok:
            # this QEMU aborts on device_del of a vfio-user device with
            # MSI-X (nvme0): vfu refuses instead of crashing the VM
            ok, err = call('DetachDevice', 's', 'nvme0')
            check(not ok and 'aborts when a device with MSI-X is hot-unplugged' in err,
                  'hot detach of the MSI-X device refused on QEMU %(major)d.%(minor)d.%(micro)d: '
                  % version + err)
            check(lv.virsh_out('domstate', 'e2e').strip() == 'running',
                  'the VM keeps running with both controllers')
            check('nvme0 ' in persistent_devices() and vf.prop('nvme0', 'Vm') == 'e2e',
                  'the definition and vfud are unchanged')
        # nvme1 has MSI, not MSI-X: every QEMU can unplug it (the guest then powers off)
        ok, err = call('DetachDevice', 's', 'nvme1')
        check(ok, 'hot detach of the MSI device: device_del, DEVICE_DELETED ' + err)
        check(console_has('GUEST-NVME: unplugged nvme0', 60),
              'the guest released the controller')
        listed = persistent_devices()
        check('nvme1 ' not in listed and 'nvme0 ' in listed and vf.prop('nvme1', 'Vm') == '',
              'the detach is recorded in the persistent definition and in vfud: %r' % listed)
        # a define (of the same definition) makes vfud read it again: it stays detached,
        # nvme0 stays
        path = os.path.join(lv.dir, 'again.xml')
        with open(path, 'w') as f:
            f.write(lv.virsh_out('dumpxml', 'e2e', '--inactive'))
        lv.virsh('define', path)
        vf.create_nvme('mark', 'e2e-mark')
        lv.define(lvenv.domain_xml('e2e-mark').replace('/usr/bin/qemu-system-x86_64', qemu))
        wait_for(lambda: vf.prop('mark', 'LibvirtStatus') == 'applied')
        listed = persistent_devices()
        check(vf.prop('mark', 'LibvirtStatus') == 'applied' and 'nvme1 ' not in listed and
              'nvme0 ' in listed and vf.prop('nvme1', 'Vm') == '' and
              vf.prop('nvme0', 'LibvirtStatus') == 'applied',
              'after vfud handled a later define: still %r' % listed)

        lv.virsh('destroy', 'e2e', check=False)
        deadline = time.monotonic() + 20
        while vf.state('nvme0') != 'idle' and time.monotonic() < deadline:
            time.sleep(0.1)
        check(vf.state('nvme0') == 'idle', 'the release hook returned the device to idle')
        if failures:
            print(console_tail())


def finish(failures):
    if failures:
        print('%d failure(s)' % len(failures))
        sys.exit(1)
    sys.exit(0)


if __name__ == '__main__':
    main()
