# SPDX-License-Identifier: LGPL-2.1-or-later
# A vfu virtio-blk disk as Linux's virtio_blk sees it: /dev/vda with its size,
# serial, queues, write cache and discard; fio write+verify at QD1 and QD32
# across the queues; mkfs.ext4 (which discards), files verified, fsck clean;
# then the host grows the disk and the guest sees it without a rescan.
. /vfu/lib.sh
wait_path /dev/vda 120
expect_eq "vda bytes" "$(( $(cat /sys/block/vda/size) * 512 ))" "$DISK_BYTES"
expect_eq "vda serial" "$(cat /sys/block/vda/serial)" "$SERIAL"
expect_eq "vda queues" "$(ls /sys/block/vda/mq | wc -l)" "$QUEUES"
expect_eq "vda write cache" "$(cat /sys/block/vda/queue/write_cache)" "write back"
[ "$(cat /sys/block/vda/queue/discard_max_bytes)" -gt 0 ] || fail "vda offers no discard"
[ "$(cat /sys/block/vda/queue/write_zeroes_max_bytes)" -gt 0 ] || fail "vda offers no write zeroes"

run_fio() {
        name=$1; shift
        if ! fio --name="$name" --filename=/dev/vda --direct=1 --thread \
                --verify=crc32c --verify_fatal=1 --do_verify=1 --group_reporting --eta=never \
                --output=/tmp/fio.out "$@"; then
                cat /tmp/fio.out
                fail "fio $name"
        fi
        grep -E "err=|IOPS=" /tmp/fio.out | sed 's/^ */    /'
        say "ok: fio $name"
}

run_fio qd1-seq --ioengine=psync --rw=write --bs=4k --size=8m
run_fio qd1-rand --ioengine=libaio --iodepth=1 --rw=randwrite --bs=4k --size=8m --offset=16m
run_fio qd32-4jobs --ioengine=libaio --iodepth=32 --rw=randwrite --bs=4k \
        --numjobs=4 --size=8m --offset=32m --offset_increment=8m
run_fio qd32-mixed-bs --ioengine=libaio --iodepth=32 --rw=randwrite \
        --bsrange=512-128k --bs_unaligned=0 --numjobs=2 --size=16m --offset=64m --offset_increment=16m
run_fio qd32-large --ioengine=io_uring --iodepth=32 --rw=write --bs=1m --size=32m --offset=96m
run_fio qd32-4jobs --ioengine=libaio --iodepth=32 --rw=randwrite --bs=4k \
        --numjobs=4 --size=8m --offset=32m --offset_increment=8m --verify_only=1
# Every request queue carried requests.
used=0
for q in /sys/block/vda/mq/*; do
        n=$(cat $q/cpu*/completed 2>/dev/null | awk '{s += $1 + $2} END {print s + 0}')
        [ "$n" -gt 0 ] && used=$((used + 1))
done
say "request queues used: $used of $QUEUES"

check "mkfs.ext4" mkfs.ext4 -q -F /dev/vda
check "fsck.ext4 of the new file system" fsck.ext4 -fn /dev/vda
mkdir -p /mnt/t
check "mount" mount -t ext4 /dev/vda /mnt/t
i=0
while [ $i -lt 6 ]; do
        dd if=/dev/urandom of=/mnt/t/f$i bs=64k count=$((i * 16 + 1)) 2>/dev/null
        i=$((i + 1))
done
dd if=/dev/urandom of=/mnt/t/big bs=1M count=24 2>/dev/null
(cd /mnt/t && find . -type f | sort | xargs sha256sum) >/tmp/sums
check "sync" sync
check "umount" umount /mnt/t
check "fsck.ext4 after writing" fsck.ext4 -fn /dev/vda
check "mount again" mount -t ext4 /dev/vda /mnt/t
(cd /mnt/t && sha256sum -c /tmp/sums >/tmp/check.out 2>&1) || { cat /tmp/check.out; fail "file contents changed"; }
say "ok: $(wc -l </tmp/sums) files verified"
check "umount" umount /mnt/t

marker "ready-for-resize"
n=600
while [ "$(( $(cat /sys/block/vda/size) * 512 ))" != "$NEW_BYTES" ]; do
        n=$((n - 1))
        [ $n -gt 0 ] || fail "vda is still $(( $(cat /sys/block/vda/size) * 512 )) bytes, expected $NEW_BYTES"
        sleep 0.1
done
say "ok: vda grew to $NEW_BYTES bytes"
dd if=/dev/urandom of=/tmp/p bs=4k count=64 2>/dev/null
last=$(( NEW_BYTES / 4096 - 64 ))
check "write in the new space" dd if=/tmp/p of=/dev/vda bs=4k seek=$last oflag=direct conv=fsync
dd if=/dev/vda of=/tmp/b bs=4k skip=$last count=64 iflag=direct 2>/dev/null
check "read back from the new space" cmp /tmp/p /tmp/b
check "fsck.ext4 at the end" fsck.ext4 -fn /dev/vda
