# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest reboot loop on a virtio-blk disk: each boot checks the data the
# previous boot wrote (the device was reset and probed again), writes new
# data, flushes and reboots, REBOOTS times.
. /vfu/lib.sh
wait_path /dev/vda 120
gen=$(stamp_check /dev/vda)
say "boot with stamp generation $gen: data intact"
if [ "$gen" -lt "$REBOOTS" ]; then
        stamp_write /dev/vda $((gen + 1))
        marker "rebooting after generation $((gen + 1))"
        sync
        reboot -f
        sleep 30
        fail "reboot -f returned"
fi
expect_eq "generations seen" "$gen" "$REBOOTS"
