#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A stand-in systemd manager for the dbus suite (the test machines do not boot systemd).

Usage: fake-systemd.py BUS_ADDRESS LOG UNITDIR

Owns org.freedesktop.systemd1 on the bus and answers StartTransientUnit
as systemd does for a service: it writes the unit's properties as a unit
file UNITDIR/NAME (for systemd-analyze security --offline), runs ExecStart
with the StandardInputFileDescriptor as its standard input and holds its
own copy of that fd until the process exits, as systemd does.  Its output
goes to UNITDIR/NAME.log.  ResetFailedUnit and StopUnit are accepted (and
only logged).  Every call is
appended to LOG as a JSON line (method, unit, properties, and the pid of
the process started).  A unit whose name contains "refused" gets the
error org.freedesktop.systemd1.UnitExists; one containing "noexec" is
accepted but never runs (its fd is closed at once, as for a unit that
failed).  Prints "ready" once it owns the name.
"""

import json
import os
import subprocess
import sys

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

XML = '''<node><interface name="org.freedesktop.systemd1.Manager">
<method name="StartTransientUnit">
  <arg type="s" name="name" direction="in"/>
  <arg type="s" name="mode" direction="in"/>
  <arg type="a(sv)" name="properties" direction="in"/>
  <arg type="a(sa(sv))" name="aux" direction="in"/>
  <arg type="o" name="job" direction="out"/>
</method>
<method name="ResetFailedUnit">
  <arg type="s" name="name" direction="in"/>
</method>
<method name="StopUnit">
  <arg type="s" name="name" direction="in"/>
  <arg type="s" name="mode" direction="in"/>
  <arg type="o" name="job" direction="out"/>
</method></interface></node>'''

CAPS = {0: 'CAP_CHOWN', 1: 'CAP_DAC_OVERRIDE', 5: 'CAP_KILL', 6: 'CAP_SETGID', 7: 'CAP_SETUID',
        12: 'CAP_NET_ADMIN', 21: 'CAP_SYS_ADMIN'}
UNIT_SECTION = ('Description', 'CollectMode')
NAMESPACES = {0x10000000: 'user', 0x00020000: 'mnt', 0x40000000: 'net', 0x20000000: 'pid',
              0x04000000: 'uts', 0x08000000: 'ipc', 0x02000000: 'cgroup'}


def unit_line(name, sig, value):
    """One property as the unit file line systemd would read back, or None for what is not a setting."""
    if name == 'StandardInputFileDescriptor':
        return None             # an fd, not a setting a file can hold
    if sig == 'b':
        return f'{name}={"yes" if value else "no"}'
    if sig in ('s', 'i'):
        return f'{name}={value}'
    if sig == 'u' and name == 'UMask':
        return f'UMask={value:04o}'
    if sig == 'as':
        return f'{name}={" ".join(value)}'
    if sig == '(bas)':
        allow, names = value
        return f'{name}={"" if allow else "~"}{" ".join(names)}'
    if sig == 'a(sasb)':
        path, argv, _ = value[0]
        return f'ExecStart={path} {" ".join(argv[1:])}'
    if sig == 'a(iayu)':
        return f'{name}=any' if all(p == 0 for _, _, p in value) else None
    if name == 'CapabilityBoundingSet':
        return 'CapabilityBoundingSet=' + ' '.join(CAPS.get(i, f'cap{i}') for i in range(64) if value >> i & 1)
    if name == 'RestrictNamespaces':
        return 'RestrictNamespaces=' + (' '.join(n for f, n in NAMESPACES.items() if value & f) or 'yes')
    if name == 'CPUQuotaPerSecUSec':
        return f'CPUQuota={value // 10000}%'
    if name in ('LimitNOFILE', 'LimitNOFILESoft'):
        return 'LimitNOFILE=' + str(value) if name == 'LimitNOFILE' else None
    if name == 'TimeoutStopUSec':
        return f'TimeoutStopSec={value}us'
    if sig == 't':
        return f'{name}={value}'
    return None


def main():
    addr, log_path, unit_dir = sys.argv[1:4]
    conn = Gio.DBusConnection.new_for_address_sync(
        addr, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
    jobs = [0]

    def log(entry):
        with open(log_path, 'a') as f:
            f.write(json.dumps(entry) + '\n')

    def on_call(conn, sender, path, iface, method, params, inv):
        if method == 'ResetFailedUnit':
            log({'method': method, 'unit': params.unpack()[0]})
            inv.return_value(None)
            return
        if method == 'StopUnit':
            log({'method': method, 'unit': params.unpack()[0], 'mode': params.unpack()[1]})
            jobs[0] += 1
            inv.return_value(GLib.Variant('(o)', (f'/org/freedesktop/systemd1/job/{jobs[0]}',)))
            return
        name = params.get_child_value(0).get_string()
        if 'refused' in name:
            log({'method': method, 'unit': name, 'refused': True})
            inv.return_dbus_error('org.freedesktop.systemd1.UnitExists', f'Unit {name} was already loaded.')
            return
        # Taken out of the message, so that no copy but ours keeps them open.
        msg_fds = inv.get_message().get_unix_fd_list()
        fdlist = msg_fds.steal_fds() if msg_fds else []
        props, lines, unit_lines, stdin_fd = {}, [], [], -1
        plist = params.get_child_value(2)
        for i in range(plist.n_children()):
            entry = plist.get_child_value(i)
            pname = entry.get_child_value(0).get_string()
            var = entry.get_child_value(1).get_variant()
            sig = var.get_type_string()
            if sig == 'h':
                stdin_fd = fdlist[var.get_handle()]
                value = 'fd'
            else:
                value = var.unpack()
            props.setdefault(pname, []).append(value)
            line = unit_line(pname, sig, value)
            if line:
                (unit_lines if pname in UNIT_SECTION else lines).append(line)
        with open(os.path.join(unit_dir, name), 'w') as f:
            f.write('[Unit]\n' + '\n'.join(unit_lines) + '\n[Service]\n' + '\n'.join(lines) + '\n')
        pid = 0
        if 'noexec' in name:
            os.close(stdin_fd)
        else:
            path_, argv, _ = props['ExecStart'][0][0]
            out = open(os.path.join(unit_dir, name + '.log'), 'a')
            p = subprocess.Popen(argv, executable=path_, stdin=stdin_fd, stdout=out, stderr=out,
                                 start_new_session=True)
            out.close()
            pid = p.pid

            def exited(child, status, fd=stdin_fd):
                os.close(fd)        # systemd lets go of the unit's stdin when the unit is gone
                p.returncode = status
            GLib.child_watch_add(GLib.PRIORITY_DEFAULT, pid, exited)
        log({'method': method, 'unit': name, 'mode': params.get_child_value(1).get_string(),
             'properties': props, 'pid': pid})
        jobs[0] += 1
        inv.return_value(GLib.Variant('(o)', (f'/org/freedesktop/systemd1/job/{jobs[0]}',)))

    conn.register_object('/org/freedesktop/systemd1', info, on_call, None, None)
    loop = GLib.MainLoop()

    def acquired(*_):
        print('ready', flush=True)

    def lost(*_):
        print('cannot own org.freedesktop.systemd1', file=sys.stderr, flush=True)
        loop.quit()

    Gio.bus_own_name_on_connection(conn, 'org.freedesktop.systemd1', Gio.BusNameOwnerFlags.NONE, acquired, lost)
    loop.run()


if __name__ == '__main__':
    main()
