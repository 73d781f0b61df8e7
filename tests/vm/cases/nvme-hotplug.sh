# SPDX-License-Identifier: LGPL-2.1-or-later
# Hot attach through QMP while the guest runs, then the guest itself removes
# the PCI function and finds it again by a bus rescan: the driver lets go of
# the controller and binds it anew, and the data is still there.
. /vfu/lib.sh
[ ! -e /dev/nvme0 ] || fail "an NVMe controller exists before the host attached one"
marker "ready-for-attach"
wait_path /dev/nvme0n1 90
check "write after attach" stamp_write /dev/nvme0n1 1
pci=$(readlink -f /sys/class/nvme/nvme0/device)
say "controller at ${pci##*/}"
echo 1 >"$pci/remove"
wait_gone /dev/nvme0n1 60
say "ok: removed by the guest"
echo 1 >/sys/bus/pci/rescan
wait_path /dev/nvme0n1 90
expect_eq "stamp generation after the rescan" "$(stamp_check /dev/nvme0n1)" 1
check "write after the rescan" stamp_write /dev/nvme0n1 2
expect_eq "stamp generation" "$(stamp_check /dev/nvme0n1)" 2
