# SPDX-License-Identifier: LGPL-2.1-or-later
# One NVMe controller with one namespace of NS_BYTES: the guest's nvme driver
# binds it, the block device has the right size, and what nvme-cli reads back
# (identify controller/namespace, SMART, error log) is sane.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
say "$(cat /sys/class/nvme/nvme0/model) / $(cat /sys/class/nvme/nvme0/serial) / fw $(cat /sys/class/nvme/nvme0/firmware_rev)"
expect_eq "namespaces in /sys" "$(ls -d /sys/block/nvme0n* | wc -l)" 1

ctrl=$(nvme id-ctrl /dev/nvme0) || fail "nvme id-ctrl failed"
vid=$(num "$ctrl" vid)
[ "$vid" != 0 ] || fail "id-ctrl vid is 0"
# Our own IDs: Linux applies quirks to QEMU's (1b36) and Intel's (8086).
[ "$vid" != $((0x1b36)) ] && [ "$vid" != $((0x8086)) ] ||
        fail "id-ctrl vid $(field "$ctrl" vid) belongs to another device family"
sn=$(field "$ctrl" sn); [ -n "$sn" ] || fail "id-ctrl serial number is empty"
mn=$(field "$ctrl" mn); [ -n "$mn" ] || fail "id-ctrl model number is empty"
nn=$(num "$ctrl" nn)
[ "$nn" -ge 1 ] || fail "id-ctrl nn is $nn"
ver=$(num "$ctrl" ver)
[ "$ver" -ge $((0x10400)) ] || fail "id-ctrl ver $(field "$ctrl" ver) is below NVMe 1.4"
say "ok: vid $(field "$ctrl" vid), sn '$sn', mn '$mn', ver $(field "$ctrl" ver), mdts $(field "$ctrl" mdts), nn $nn"
[ "$(sed 's/ *$//' /sys/class/nvme/nvme0/serial)" = "$(echo "$sn" | sed 's/ *$//')" ] ||
        fail "sysfs serial differs from id-ctrl serial"

ns=$(nvme id-ns /dev/nvme0n1) || fail "nvme id-ns failed"
lba=$(lba_bytes /dev/nvme0n1)
nsze=$(num "$ns" nsze)
ncap=$(num "$ns" ncap)
expect_eq "id-ns nsze (LBAs of $lba bytes)" "$nsze" "$((NS_BYTES / lba))"
expect_eq "id-ns ncap" "$ncap" "$((NS_BYTES / lba))"
expect_eq "block device bytes" "$(( $(cat /sys/block/nvme0n1/size) * 512 ))" "$NS_BYTES"
expect_eq "logical block size" "$(cat /sys/block/nvme0n1/queue/logical_block_size)" "$lba"

smart=$(nvme smart-log /dev/nvme0) || fail "nvme smart-log failed"
cw=$(num "$smart" critical_warning)
expect_eq "smart critical_warning" "$cw" 0
temp=$(field "$smart" temperature | sed 's/[^0-9].*//')
[ -n "$temp" ] && [ "$temp" -gt 0 ] && [ "$temp" -lt 100 ] ||
        fail "smart temperature '$(field "$smart" temperature)' is not sane"
used=$(field "$smart" percentage_used | tr -d '%')
[ -n "$used" ] && [ "$used" -le 100 ] || fail "smart percentage_used '$used' is not sane"
say "ok: temperature $temp C, $used% used"

elog=$(nvme error-log /dev/nvme0 -e 16) || fail "nvme error-log failed"
# Linux probes optional commands and features at boot; a controller may log
# their rejection (Invalid Opcode, Invalid Field).  Anything else in the log
# of a fresh controller (data transfer, internal, queue errors...) is a defect.
for sf in $(echo "$elog" | sed -n 's/^status_field[[:space:]]*:[[:space:]]*\([0-9a-fx]*\).*/\1/p'); do
        sc=$(( sf & 0x7ff ))
        [ "$sc" = 0 ] || [ "$sc" = 1 ] || [ "$sc" = 2 ] ||
                fail "error log of a fresh controller holds status $sf: $(echo "$elog" | grep "^status_field.*$sf")"
done
say "ok: error-log: $(echo "$elog" | grep '^status_field' | grep -vc ': 0 ') probe rejections, no other errors"

# The NVM command set's controller data (Identify CNS 06h) was read: the
# Write Zeroes limit is its WZSL (2^13 pages of 4 KiB), not MDTS.
expect_eq "write zeroes limit (bytes)" "$(cat /sys/block/nvme0n1/queue/write_zeroes_max_bytes)" $((32 << 20))

# The I/O queues the driver got (one per vCPU when the device allows).
say "I/O queues: $(ls -d /sys/block/nvme0n1/mq/* | wc -l)"

# A first read and write through the block layer.
check "read the first MiB" dd if=/dev/nvme0n1 of=/dev/null bs=64k count=16
dd if=/dev/urandom of=/tmp/pat bs=4k count=64 2>/dev/null
check "write 256 KiB" dd if=/tmp/pat of=/dev/nvme0n1 bs=4k count=64 oflag=direct
check "read it back" dd if=/dev/nvme0n1 of=/tmp/back bs=4k count=64 iflag=direct
check "the data read equals the data written" cmp /tmp/pat /tmp/back
check "flush" nvme flush /dev/nvme0n1
