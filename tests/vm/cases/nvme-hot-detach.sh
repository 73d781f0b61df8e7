# SPDX-License-Identifier: LGPL-2.1-or-later
# Hot attach and detach through QMP while the guest runs: the controller
# appears, is used, is unplugged (device_del, PCIe hotplug in the guest) and
# comes back with its data.
. /vfu/lib.sh
[ ! -e /dev/nvme0 ] || fail "an NVMe controller exists before the host attached one"
marker "ready-for-attach"
wait_path /dev/nvme0n1 90
check "write after attach" stamp_write /dev/nvme0n1 1
# The interrupt kind the driver chose (msi_irqs/N holds "msi" or "msix"):
# MSI for a device made with msi, MSI-X otherwise.
kinds=$(cat /sys/class/nvme/nvme0/device/msi_irqs/* 2>/dev/null | sort | uniq -c | tr -s ' \n' ' ')
say "nvme0 interrupts: $kinds"
if [ "${MSI:-0}" = 1 ]; then
    case " $kinds " in *" msi "*) ;; *) fail "the controller uses no MSI: $kinds" ;; esac
    case " $kinds " in *" msix "*) fail "a controller made with msi uses MSI-X: $kinds" ;; esac
else
    case " $kinds " in *" msix "*) ;; *) fail "the controller uses no MSI-X: $kinds" ;; esac
fi
marker "ready-for-detach"
wait_gone /dev/nvme0n1 90
say "ok: the controller went away"
marker "ready-for-reattach"
wait_path /dev/nvme0n1 90
expect_eq "stamp generation after re-attach" "$(stamp_check /dev/nvme0n1)" 1
