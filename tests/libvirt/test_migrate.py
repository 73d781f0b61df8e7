#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""vfuctl migrate --vm moves a shut-off VM's devices and then its libvirt
domain, in one command, between two hosts on this machine: two vfuds on
private buses and two private libvirtds (lvenv; the second in a namespace
of its own, different host UUIDs), each libvirtd with vfu-hook talking to
its own vfud.

  cold + domain   the device and its image arrive on the destination vfud,
                  the domain is defined on the destination libvirtd and
                  undefined here; virsh start there gets past the hook (the
                  device listens for QEMU)
  running VM      refused before anything moves
  bad libvirt-uri the devices move, the domain does not: the error says what
                  moved and the virsh command that finishes; that command
                  then works

Needs root (namespaces); skips (77) otherwise, or without libvirtd/QEMU.
Environment: VFU_HOOK, VFUCTL, VFUD, VFUD_WORKER.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lvenv  # noqa: E402

HOOK = os.environ.get('VFU_HOOK', '')
VFUCTL = os.environ.get('VFUCTL', '')
MEMFD = "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>"
MiB = 1 << 20

failures = []


def check(cond, what):
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def vfuctl(vf, *args):
    r = subprocess.run([VFUCTL, '--bus', vf.address] + list(args), capture_output=True, text=True,
                       timeout=300)
    return r.returncode, r.stdout, r.stderr


def show(vf, name):
    rc, out, err = vfuctl(vf, 'show', name, '--json')
    if rc != 0:
        raise AssertionError('vfuctl show %s: %s' % (name, err))
    return json.loads(out)


def devices(vf):
    out = vf.manager('ListDevices', 's', '').stdout
    return sorted(w.strip('"') for w in out.split()[2::5])


def wait_for(cond, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return check(False, 'timed out waiting for ' + what)


def domains(lv):
    return lv.virsh_out('list', '--all', '--name').split()


def vm_with_disk(lv, vf, vm, disk, start=False):
    """A domain whose vfu device vfud put into its definition."""
    lv.define(lvenv.domain_xml(vm, memory_backing=MEMFD))
    if start:
        lv.virsh('start', vm)
    rc, out, err = vfuctl(vf, 'create', 'nvme', '--vm', vm, '--size', '4M', '--name', disk)
    if rc != 0:
        raise AssertionError('vfuctl create: %s' % err)
    vf.manager('StopDevice', 's', disk)
    wait_for(lambda: vf.prop(disk, 'LibvirtStatus') == 'applied', '%s in %s\'s definition' % (disk, vm))
    check('vfu-' + disk in lv.virsh_out('dumpxml', '--inactive', vm),
          'vfud put %s into %s\'s definition' % (disk, vm))


def run():
    lvenv.reexec_in_namespace()
    if not HOOK or not VFUCTL:
        lvenv.skip('VFU_HOOK/VFUCTL not set (run through meson test)')
    # the destination libvirtd's URI is known before it runs: its vfud is configured with it
    dst_lv = lvenv.Libvirtd(nested=True, host_uuid='5e1d0c2b-3a49-4f7e-8d6c-b2a1f0e9d8c7')
    with lvenv.Vfud() as src, lvenv.Vfud(libvirt_uri=dst_lv.uri) as dst:
        if 'nvme' not in src.types():
            lvenv.skip('vfud-worker has no nvme device type in this build')
        hook = '#!/bin/sh\nexec %s --bus %s "$@"\n'
        dst_lv.hooks = {'vfu-hook': hook % (HOOK, dst.address)}
        with lvenv.Libvirtd(hooks={'vfu-hook': hook % (HOOK, src.address)},
                            host_uuid='9c3b7a1e-2d4f-4e6a-b8c0-d1e2f3a4b5c6') as lv, dst_lv:
            cases(lv, dst_lv, src, dst)


def cases(lv, dst_lv, src, dst):
    # ---- a running VM is refused before anything moves
    vm_with_disk(lv, src, 'runvm', 'rdisk', start=True)
    rc, out, err = vfuctl(src, 'migrate', '--vm', 'runvm', '--to', dst.address, '--storage', 'copy',
                          '--libvirt-uri', dst_lv.uri)
    check(rc != 0 and 'VM runvm is running in libvirt' in err and 'shut it down first' in err and
          'nothing was moved' in err, 'a running VM is refused: %d %r' % (rc, err))
    check(devices(dst) == [] and 'rdisk' in devices(src), 'nothing moved: %s / %s' % (devices(src), devices(dst)))
    check(src.prop('rdisk', 'MigrationState') == 'failed', 'MigrationState failed')
    check('runvm' in lv.virsh_out('list', '--name').split() and 'runvm' not in domains(dst_lv),
          'the VM keeps running here')
    lv.virsh('destroy', 'runvm')
    src.manager('DestroyDevice', 's', 'rdisk')

    # ---- cold: the device and its image, then the domain
    vm_with_disk(lv, src, 'mvm', 'mdisk')
    path = show(src, 'mdisk')['backend']['namespaces'][0]['path']
    data = bytes((i * 13 + 7) & 0xff for i in range(MiB))
    with open(path, 'r+b') as f:
        f.seek(MiB)
        f.write(data)
    with open(path, 'rb') as f:
        image = f.read()
    rc, out, err = vfuctl(src, 'migrate', '--vm', 'mvm', '--to', dst.address, '--storage', 'copy',
                          '--libvirt-uri', dst_lv.uri)
    check(rc == 0 and 'mdisk: migrated to' in out and
          "VM mvm's libvirt domain moved to %s" % dst_lv.uri in out,
          'vfuctl migrate --vm --libvirt-uri: %d %r %r' % (rc, out, err))
    check(devices(src) == [] and devices(dst) == ['mdisk'],
          'the device moved: %s / %s' % (devices(src), devices(dst)))
    got = show(dst, 'mdisk')
    with open(got['backend']['namespaces'][0]['path'], 'rb') as f:
        check(f.read() == image, 'the image arrived byte for byte')
    check(dst.prop('mdisk', 'MigratedFrom') != '', 'the copy says it arrived by migration')
    check('mvm' not in domains(lv), 'the domain is undefined here: %s' % domains(lv))
    check('mvm' in domains(dst_lv) and
          dst_lv.virsh_out('domstate', 'mvm').strip() == 'shut off', 'the domain is defined there, shut off')
    # the destination's vfud points the definition at its own socket
    sock = dst.prop('mdisk', 'SocketPath')
    wait_for(lambda: dst.prop('mdisk', 'LibvirtStatus') == 'applied', "the destination vfud's definition")
    check(sock in dst_lv.virsh_out('dumpxml', '--inactive', 'mvm'),
          'the definition there names the device\'s socket there')
    # start there: the prepare hook finds the device and brings it up before QEMU
    # (Debian's QEMU 7.2 then refuses vfio-user-pci; a QEMU >= 10.1 would connect)
    check(dst.state('mdisk') == 'idle', 'the device arrived stopped, as it was here')
    with open(dst.log) as f:
        seen = len(f.read())
    r = dst_lv.virsh('start', 'mvm', check=False)
    check('Hook script execution failed' not in r.stderr and
          (r.returncode == 0 or 'vfio-user-pci' in r.stderr),
          'virsh start there gets past the hook to QEMU: %r' % r.stderr.strip())
    with open(dst.log) as f:
        log = f.read()[seen:]
    check('mdisk: idle -> starting' in log and 'starting -> listening' in log,
          'the prepare hook there started the device: it listened for QEMU')
    dst_lv.virsh('destroy', 'mvm', check=False)

    # ---- the destination's libvirt does not answer: refused before anything moves; then the right URI
    vm_with_disk(lv, src, 'bvm', 'bdisk')
    bad = 'qemu+unix:///system?socket=%s/no-libvirt-sock' % src.dir
    rc, out, err = vfuctl(src, 'migrate', '--vm', 'bvm', '--to', dst.address, '--storage', 'copy',
                          '--libvirt-uri', bad)
    check(rc != 0 and "VM bvm's libvirt domain is to move to %s, which does not answer" % bad in err and
          'cannot connect' in err and 'nothing was moved' in err,
          'an unreachable destination libvirt is refused first: %d %r' % (rc, err))
    check(devices(src) == ['bdisk'] and devices(dst) == ['mdisk'],
          'nothing moved: %s / %s' % (devices(src), devices(dst)))
    check('bvm' in domains(lv) and 'vfu-bdisk' in lv.virsh_out('dumpxml', '--inactive', 'bvm'),
          'the domain is still defined here, unchanged')
    rc, out, err = vfuctl(src, 'migrate', '--vm', 'bvm', '--to', dst.address, '--storage', 'copy',
                          '--libvirt-uri', dst_lv.uri)
    check(rc == 0 and 'bvm' in domains(dst_lv) and 'bvm' not in domains(lv) and devices(src) == [] and
          'bdisk' in devices(dst), 'with the right URI it moves: %d %r' % (rc, err))

    # ---- a bus-address destination without libvirt-uri: the devices move, the domain stays, the reply says so
    vm_with_disk(lv, src, 'nvm', 'ndisk')
    rc, out, err = vfuctl(src, 'migrate', '--vm', 'nvm', '--to', dst.address, '--storage', 'copy')
    check(rc == 0 and "VM nvm's libvirt domain did not move: the destination is a bus address" in out,
          'without libvirt-uri the reply says the domain stayed: %d %r %r' % (rc, out, err))
    check('ndisk' in devices(dst) and 'nvm' in domains(lv) and 'nvm' not in domains(dst_lv),
          'the device moved, the domain did not')


def main():
    try:
        run()
    except AssertionError as e:
        check(False, str(e))
    if failures:
        print('%d failure(s)' % len(failures))
        sys.exit(1)


if __name__ == '__main__':
    main()
