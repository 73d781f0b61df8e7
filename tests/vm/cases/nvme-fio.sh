# SPDX-License-Identifier: LGPL-2.1-or-later
# fio write+verify at queue depth 1 and 32, several jobs on disjoint ranges,
# direct I/O, on /dev/nvme0n1.  fio exits non-zero on any I/O or verify error.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120

run_fio() {
        name=$1; shift
        if ! fio --name="$name" --filename=/dev/nvme0n1 --direct=1 --thread \
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
# What the QD32 jobs wrote, read again with many reads in flight and verified.
run_fio qd32-4jobs --ioengine=libaio --iodepth=32 --rw=randwrite --bs=4k \
        --numjobs=4 --size=8m --offset=32m --offset_increment=8m --verify_only=1
check "flush" nvme flush /dev/nvme0n1
