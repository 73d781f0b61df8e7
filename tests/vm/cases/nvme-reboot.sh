# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest reboot loop: each boot checks the data the previous boot wrote
# (the device went through DEVICE_RESET and the driver probed it again), writes
# new data and reboots, REBOOTS times.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
gen=$(stamp_check /dev/nvme0n1)
say "boot with stamp generation $gen: data intact"
if [ "$gen" -lt "$REBOOTS" ]; then
        stamp_write /dev/nvme0n1 $((gen + 1))
        marker "rebooting after generation $((gen + 1))"
        sync
        reboot -f
        sleep 30
        fail "reboot -f returned"
fi
expect_eq "generations seen" "$gen" "$REBOOTS"
