#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A stand-in polkit authority for the dbus suite (polkitd cannot run on a private bus).

Usage: fake-polkit.py BUS_ADDRESS RULES LOG

Owns org.freedesktop.PolicyKit1 on the bus and answers CheckAuthorization
from RULES, a JSON file read at every call: {"UID": {"ACTION": VERDICT}}
with VERDICT "yes", "no", "challenge" (authentication needed) or "error"
(a D-Bus error); anything else is "no".  Every query is appended to LOG as
a JSON line: action, uid, flags, subject kind and name.  Prints "ready"
once it owns the name.
"""

import json
import sys

import gi

gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

XML = '''<node><interface name="org.freedesktop.PolicyKit1.Authority">
<method name="CheckAuthorization">
  <arg type="(sa{sv})" name="subject" direction="in"/>
  <arg type="s" name="action_id" direction="in"/>
  <arg type="a{ss}" name="details" direction="in"/>
  <arg type="u" name="flags" direction="in"/>
  <arg type="s" name="cancellation_id" direction="in"/>
  <arg type="(bba{ss})" name="result" direction="out"/>
</method></interface></node>'''


def main():
    addr, rules_path, log_path = sys.argv[1:4]
    conn = Gio.DBusConnection.new_for_address_sync(
        addr, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]

    def on_call(conn, sender, path, iface, method, params, inv):
        (kind, details), action, _, flags, _ = params.unpack()
        name = details.get('name', '')
        uid = conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                             'GetConnectionUnixUser', GLib.Variant('(s)', (name,)), None, 0, 5000,
                             None).unpack()[0] if name else -1
        with open(log_path, 'a') as f:
            f.write(json.dumps({'action': action, 'uid': uid, 'flags': flags, 'kind': kind, 'name': name}) + '\n')
        try:
            with open(rules_path) as f:
                verdict = json.load(f).get(str(uid), {}).get(action, 'no')
        except (OSError, ValueError):
            verdict = 'no'
        if verdict == 'error':
            inv.return_dbus_error('org.freedesktop.PolicyKit1.Error.Failed', 'the fake authority fails on purpose')
            return
        inv.return_value(GLib.Variant('((bba{ss}))', ((verdict == 'yes', verdict == 'challenge', {}),)))

    conn.register_object('/org/freedesktop/PolicyKit1/Authority', info, on_call, None, None)
    loop = GLib.MainLoop()

    def acquired(*_):
        print('ready', flush=True)

    def lost(*_):
        print('cannot own org.freedesktop.PolicyKit1', file=sys.stderr, flush=True)
        loop.quit()

    Gio.bus_own_name_on_connection(conn, 'org.freedesktop.PolicyKit1', Gio.BusNameOwnerFlags.NONE, acquired, lost)
    loop.run()


if __name__ == '__main__':
    main()
