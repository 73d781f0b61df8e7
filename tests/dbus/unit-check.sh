#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# unit-check UNIT VFUD TMPFILES: systemd accepts vfud's unit without a
# complaint, the settings that keep VMs running across manager restarts are
# there, and every directory the unit creates has the mode tmpfiles gives it.
unit=$1 vfud=$2 tmpfiles=$3
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
sed "s|^ExecStart=.*|ExecStart=$vfud|" "$unit" > "$dir/vfud.service"
out=$(systemd-analyze verify --man=no "$dir/vfud.service" 2>&1)
status=$?
if [ $status != 0 ] || [ -n "$out" ]; then
        echo "systemd-analyze verify: status $status"
        echo "$out"
        exit 1
fi
for setting in Type=notify BusName=org.vfu.vfud1 KillMode=process RuntimeDirectoryPreserve=yes \
               NoNewPrivileges=yes Alias=dbus-org.vfu.vfud1.service UMask=0077 PrivateTmp=yes ProtectHome=yes \
               ProtectProc=invisible ProcSubset=pid 'ExecReload=/bin/kill -HUP $MAINPID' WatchdogSec=60s; do
        if ! grep -qx "$setting" "$unit"; then
                echo "$unit lacks $setting"
                exit 1
        fi
done
# systemd applies one mode to all of a setting's directories.
dirs_ok=true
for kind in Runtime:/run State:/var/lib; do
        setting=${kind%%:*}Directory base=${kind#*:}
        mode=$(sed -n "s/^${setting}Mode=//p" "$unit")
        for d in $(sed -n "s/^${setting}=//p" "$unit"); do
                want=$(awk -v p="$base/$d" '$1 == "d" && $2 == p { print $3 }' "$tmpfiles")
                if [ "$want" != "$mode" ]; then
                        echo "$unit: $setting=$d gets mode ${mode:-?}, $tmpfiles says ${want:-nothing} for $base/$d"
                        dirs_ok=false
                fi
        done
done
$dirs_ok || exit 1
# The exposure systemd rates the unit at (issue 14: at most 4.0), where this systemd can rate a unit file.
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
        sec=$(systemd-analyze security --offline=yes "$dir/vfud.service" 2>&1)
        score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for vfud.service: \([0-9.]*\).*/\1/p')
        if [ -z "$score" ] || ! awk -v s="$score" 'BEGIN { exit !(s <= 4.0) }'; then
                printf '%s\n' "$sec" | grep -E '✗|Overall'
                echo "exposure ${score:-unknown}: more than 4.0"
                exit 1
        fi
        echo "exposure $score"
fi
echo "unit ok"
