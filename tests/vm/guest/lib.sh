# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers for the guest's case scripts (busybox sh, run with -e by /init).
# Their variables are local: case scripts keep theirs.
# /vfu/params holds the harness's parameters for this run as shell variables.
. /vfu/params

# say MSG: a line on the console the harness log shows.
say() { echo "VFU-VM: $*"; }

# fail MSG: end the case with a reason (on stderr, so that it reaches the
# console from a command substitution too).
fail() { echo "VFU-VM: FAILED: $*" >&2; exit 1; }

# check DESCRIPTION COMMAND...: run COMMAND; fail with DESCRIPTION if it fails.
check() {
        local desc=$1 out
        shift
        if ! out=$("$@" 2>&1); then
                echo "$out" | tail -n 30
                fail "$desc ($*)"
        fi
        say "ok: $desc"
}

# wait_path PATH [SECONDS]: wait until PATH exists (a device node appearing).
wait_path() {
        local n=$(( ${2:-30} * 10 ))
        while [ ! -e "$1" ]; do
                n=$((n - 1))
                [ "$n" -gt 0 ] || fail "$1 did not appear within ${2:-30} s"
                sleep 0.1
        done
}

# wait_gone PATH [SECONDS]: wait until PATH is gone (a device removed).
wait_gone() {
        local n=$(( ${2:-30} * 10 ))
        while [ -e "$1" ]; do
                n=$((n - 1))
                [ "$n" -gt 0 ] || fail "$1 still present after ${2:-30} s"
                sleep 0.1
        done
}

# ns_dev NSID [SECONDS]: wait for the namespace with NSID on nvme0 and print
# its device name (nvme0nX: Linux numbers them in discovery order, not by
# NSID).
ns_dev() {
        local n=$(( ${2:-30} * 10 )) b
        while :; do
                for b in /sys/block/nvme0n*; do
                        [ "$(cat "$b/nsid" 2>/dev/null)" = "$1" ] && [ -e "/dev/${b##*/}" ] &&
                                { echo "${b##*/}"; return 0; }
                done
                n=$((n - 1))
                [ "$n" -gt 0 ] || fail "namespace $1 of nvme0 did not appear within ${2:-30} s"
                sleep 0.1
        done
}

# wait_carrier 0|1 [SECONDS] [IFACE]: wait for the link state of IFACE (eth0).
wait_carrier() {
        local n=$(( ${2:-30} * 10 )) f=/sys/class/net/${3:-eth0}/carrier
        while [ "$(cat $f 2>/dev/null)" != "$1" ]; do
                n=$((n - 1))
                [ "$n" -gt 0 ] || fail "carrier of ${3:-eth0} is not $1 after ${2:-30} s"
                sleep 0.1
        done
}

# field TEXT NAME: the value of "NAME : value" in nvme-cli's normal output.
field() {
        echo "$1" | sed -n "s/^$2[[:space:]]*:[[:space:]]*//p" | head -n 1
}

# num TEXT NAME: that value as a decimal number; fails when it is missing.
# Use it in an assignment (x=$(num ...)) so that a failure ends the case.
num() {
        local v
        v=$(field "$1" "$2" | sed 's/[^0-9a-fx].*//')
        [ -n "$v" ] || fail "no '$2' in nvme-cli's output"
        echo $((v))
}

# lba_bytes DEV: the size of the LBA format in use on namespace DEV.
lba_bytes() {
        local lbads
        lbads=$(nvme id-ns "$1" | sed -n 's/.*lbads:\([0-9]*\).*(in use).*/\1/p')
        [ -n "$lbads" ] || fail "id-ns $1 shows no LBA format in use"
        echo $((1 << lbads))
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
        [ "$2" = "$3" ] || fail "$1 is '$2', expected '$3'"
        say "ok: $1 = $2"
}

# marker TEXT: a line the harness waits for on the console.
marker() { echo "VFU-VM-MARK: $*"; }

# Stamps: a generation number and the sha256 of 4 MiB of random data, kept
# on a raw namespace (header in the first 4 KiB, data from 1 MiB), to prove
# data survives reboots, restarts and re-attachment.
STAMP_DATA_OFFSET_BLOCKS=256        # x 4 KiB = 1 MiB
STAMP_DATA_BLOCKS=1024              # x 4 KiB = 4 MiB

# stamp_read DEV: print "GEN SHA" from the header, or nothing on a fresh disk.
stamp_read() {
        dd if="$1" bs=4096 count=1 iflag=direct 2>/dev/null | tr -d '\000' |
                sed -n 's/^VFUSTAMP \([0-9]*\) \([0-9a-f]*\)$/\1 \2/p'
}

# stamp_check DEV: verify the data against the header; print the generation
# (0 for a fresh disk).
stamp_check() {
        local hdr sum
        hdr=$(stamp_read "$1")
        if [ -z "$hdr" ]; then
                echo 0
                return
        fi
        set -- "$1" $hdr
        sum=$(dd if="$1" bs=4096 skip=$STAMP_DATA_OFFSET_BLOCKS count=$STAMP_DATA_BLOCKS \
                iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
        [ "$sum" = "$3" ] || fail "stamp generation $2 on $1: data sha256 $sum, header says $3"
        echo "$2"
}

# stamp_write DEV GEN: new random data and a header naming it, flushed.
stamp_write() {
        local sum
        dd if=/dev/urandom of=/tmp/stamp bs=4096 count=$STAMP_DATA_BLOCKS 2>/dev/null
        dd if=/tmp/stamp of="$1" bs=4096 seek=$STAMP_DATA_OFFSET_BLOCKS oflag=direct 2>/dev/null ||
                fail "writing stamp data to $1"
        sum=$(sha256sum /tmp/stamp | cut -d' ' -f1)
        { echo "VFUSTAMP $2 $sum"; dd if=/dev/zero bs=4000 count=1 2>/dev/null; } |
                dd of="$1" bs=4096 count=1 conv=sync,fsync oflag=direct 2>/dev/null ||
                fail "writing stamp header to $1"
        case $1 in
        /dev/nvme*) nvme flush "$1" >/dev/null || fail "flush $1" ;;
        esac
        rm -f /tmp/stamp
}
