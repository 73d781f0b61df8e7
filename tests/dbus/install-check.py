#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""install-check INTRO_INSTALLED_JSON UNIT: whatever the prefix, `meson install` puts every file a
system daemon reads where that daemon reads it (dbus-daemon and polkitd read only /usr/share and
/etc), and the unit starts the vfud that is installed."""

import json
import os
import sys

# file (as the build names it) -> the directories its reader searches
READERS = {
    'org.vfu.vfud1.conf': ('dbus-daemon', ['/usr/share/dbus-1/system.d', '/etc/dbus-1/system.d']),
    'org.vfu.vfud1.service': ('dbus-daemon', ['/usr/share/dbus-1/system-services',
                                              '/usr/local/share/dbus-1/system-services',
                                              '/lib/dbus-1/system-services']),
    'org.vfu.vfud1.policy': ('polkitd', ['/usr/share/polkit-1/actions']),
    'org.vfu.vfud1.rules': ('polkitd', ['/usr/share/polkit-1/rules.d', '/etc/polkit-1/rules.d']),
    'vfud.service': ('systemd', ['/lib/systemd/system', '/usr/lib/systemd/system', '/usr/local/lib/systemd/system',
                                 '/etc/systemd/system']),
    'vfud.tmpfiles.conf': ('systemd-tmpfiles', ['/usr/lib/tmpfiles.d', '/usr/local/lib/tmpfiles.d',
                                                '/etc/tmpfiles.d']),
    'vfud.sysusers': ('systemd-sysusers', ['/usr/lib/sysusers.d', '/usr/local/lib/sysusers.d', '/etc/sysusers.d']),
    'vfuctl.bash-completion': ('bash-completion', ['/usr/share/bash-completion/completions',
                                                   '/usr/local/share/bash-completion/completions']),
}


def main():
    with open(sys.argv[1]) as f:
        installed = json.load(f)
    failed = False
    seen = set()
    vfud = None
    for src, dst in installed.items():
        base = os.path.basename(src)
        if src.endswith('/vfud/vfud'):
            vfud = dst
        if base in READERS:
            seen.add(base)
            reader, dirs = READERS[base]
            if os.path.dirname(dst) not in dirs:
                print(f'{base} goes to {dst}: {reader} reads {", ".join(dirs)}')
                failed = True
    for base in READERS:
        if base not in seen:
            print(f'{base} is not installed')
            failed = True
    with open(sys.argv[2]) as f:
        exec_start = [line.split('=', 1)[1].strip() for line in f if line.startswith('ExecStart=')]
    if exec_start != [vfud]:
        print(f'the unit runs {exec_start}, meson installs vfud as {vfud}')
        failed = True
    if failed:
        sys.exit(1)
    print('install paths ok')


if __name__ == '__main__':
    main()
