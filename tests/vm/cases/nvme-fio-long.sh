# SPDX-License-Identifier: LGPL-2.1-or-later
# A long verified fio run (FIO_SECONDS of random writes at QD32, then the
# verify pass) while the host does something disruptive around the device;
# the guest must see no I/O error at all.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
marker "fio-started"
if ! fio --name=long --filename=/dev/nvme0n1 --direct=1 --thread --ioengine=libaio \
        --iodepth=32 --numjobs=2 --rw=randwrite --bs=4k --size=16m --offset_increment=16m \
        --time_based --runtime="$FIO_SECONDS" --verify=crc32c --verify_fatal=1 \
        --do_verify=1 --group_reporting --eta=never --output=/tmp/fio.out; then
        cat /tmp/fio.out
        fail "fio reported an error"
fi
grep -E "err=|IOPS=" /tmp/fio.out | sed 's/^ */    /'
if dmesg | grep -E -i "I/O error|timeout|reset controller|nvme.*abort"; then
        fail "the kernel logged I/O trouble (above)"
fi
say "ok: fio ran $FIO_SECONDS s and verified with no I/O error"
