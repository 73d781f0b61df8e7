# SPDX-License-Identifier: LGPL-2.1-or-later
# Hot attach and detach through QMP while the guest runs: the controller
# appears, is used, is unplugged (device_del, PCIe hotplug in the guest) and
# comes back with its data.
. /vfu/lib.sh
[ ! -e /dev/nvme0 ] || fail "an NVMe controller exists before the host attached one"
marker "ready-for-attach"
wait_path /dev/nvme0n1 90
check "write after attach" stamp_write /dev/nvme0n1 1
marker "ready-for-detach"
wait_gone /dev/nvme0n1 90
say "ok: the controller went away"
marker "ready-for-reattach"
wait_path /dev/nvme0n1 90
expect_eq "stamp generation after re-attach" "$(stamp_check /dev/nvme0n1)" 1
