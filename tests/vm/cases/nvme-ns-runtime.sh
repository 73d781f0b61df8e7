# SPDX-License-Identifier: LGPL-2.1-or-later
# Namespaces change while the guest runs: the host adds namespace 2 and grows
# namespace 1; the guest sees both (namespace-attribute-changed event, no
# rescan by hand) and uses the new space.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
expect_eq "nvme0n1 bytes" "$(( $(cat /sys/block/nvme0n1/size) * 512 ))" "$NS1_BYTES"
[ "$(ls -d /sys/block/nvme0n* | wc -l)" = 1 ] || fail "more than one namespace before the host added one"
marker "ready-for-add"
d2=$(ns_dev 2 120)
expect_eq "added namespace 2 bytes" "$(( $(cat /sys/block/$d2/size) * 512 ))" "$NS2_BYTES"
check "id-ns of the added namespace" nvme id-ns /dev/$d2
dd if=/dev/urandom of=/tmp/p bs=4k count=64 2>/dev/null
check "write to the added namespace" dd if=/tmp/p of=/dev/$d2 bs=4k oflag=direct
dd if=/dev/$d2 of=/tmp/b bs=4k count=64 iflag=direct 2>/dev/null
check "read back from the added namespace" cmp /tmp/p /tmp/b
marker "ready-for-resize"
n=600
while [ "$(( $(cat /sys/block/nvme0n1/size) * 512 ))" != "$NS1_NEW_BYTES" ]; do
        n=$((n - 1))
        [ $n -gt 0 ] || fail "nvme0n1 is still $(( $(cat /sys/block/nvme0n1/size) * 512 )) bytes, expected $NS1_NEW_BYTES"
        sleep 0.1
done
say "ok: nvme0n1 grew to $NS1_NEW_BYTES bytes"
expect_eq "id-ns nsze after growing" "$(( $(field "$(nvme id-ns /dev/nvme0n1)" nsze) * $(lba_bytes /dev/nvme0n1) ))" "$NS1_NEW_BYTES"
last=$(( NS1_NEW_BYTES / 4096 - 64 ))
check "write in the new space" dd if=/tmp/p of=/dev/nvme0n1 bs=4k seek=$last oflag=direct
dd if=/dev/nvme0n1 of=/tmp/b bs=4k skip=$last count=64 iflag=direct 2>/dev/null
check "read back from the new space" cmp /tmp/p /tmp/b
