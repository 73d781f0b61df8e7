#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# unit-check UNIT VFUD: systemd accepts vfud's unit without a complaint, and
# the settings that keep VMs running across manager restarts are there.
unit=$1 vfud=$2
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
               NoNewPrivileges=yes Alias=dbus-org.vfu.vfud1.service; do
        if ! grep -qx "$setting" "$unit"; then
                echo "$unit lacks $setting"
                exit 1
        fi
done
echo "unit ok"
