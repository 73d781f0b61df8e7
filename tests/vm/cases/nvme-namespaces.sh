# SPDX-License-Identifier: LGPL-2.1-or-later
# Several namespaces on one controller (NS_SIZES, bytes, for NSIDs 1, 2, ...):
# each appears with its size and its own data; writing one never changes
# another.
. /vfu/lib.sh
n=0
for size in $NS_SIZES; do
        n=$((n + 1))
        d=$(ns_dev $n 120)
        expect_eq "namespace $n ($d) bytes" "$(( $(cat /sys/block/$d/size) * 512 ))" "$size"
        check "id-ns $d" nvme id-ns /dev/$d
done
# NN is the highest NSID the controller supports (NVMe 1.4 5.15.2.1), not a count.
nn=$(( $(field "$(nvme id-ctrl /dev/nvme0)" nn) ))
[ "$nn" -ge "$n" ] || fail "id-ctrl nn is $nn, below the $n namespaces present"
expect_eq "namespaces in /sys" "$(ls -d /sys/block/nvme0n* | wc -l)" "$n"
check "list-ns" nvme list-ns /dev/nvme0

i=1
while [ $i -le $n ]; do
        d=$(ns_dev $i)
        dd if=/dev/urandom of=/tmp/p$i bs=4k count=256 2>/dev/null
        # The first and the last MiB of each namespace.
        last=$(( $(cat /sys/block/$d/size) / 8 - 256 ))
        check "write head of namespace $i" dd if=/tmp/p$i of=/dev/$d bs=4k oflag=direct
        check "write tail of namespace $i" dd if=/tmp/p$i of=/dev/$d bs=4k seek=$last oflag=direct
        i=$((i + 1))
done
i=1
while [ $i -le $n ]; do
        d=$(ns_dev $i)
        last=$(( $(cat /sys/block/$d/size) / 8 - 256 ))
        dd if=/dev/$d of=/tmp/h bs=4k count=256 iflag=direct 2>/dev/null
        dd if=/dev/$d of=/tmp/t bs=4k skip=$last count=256 iflag=direct 2>/dev/null
        cmp -s /tmp/p$i /tmp/h || fail "namespace $i head holds other data than written"
        cmp -s /tmp/p$i /tmp/t || fail "namespace $i tail holds other data than written"
        say "ok: namespace $i ($d) holds its own data"
        i=$((i + 1))
done
