# SPDX-License-Identifier: LGPL-2.1-or-later
# The NVMe device keeps serving while the host tries something on it that
# must be refused (a migration): verified writes before the marker, rounds
# of verified writes until the host's go-ahead (a namespace 2 it adds
# afterwards), then more rounds and the data from before, intact.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
model=$(sed 's/ *$//' /sys/class/nvme/nvme0/model)
if [ -n "${MODEL:-}" ]; then
        expect_eq "model" "$model" "$MODEL"
fi
ctrl=$(nvme id-ctrl /dev/nvme0) || fail "nvme id-ctrl failed"
say "id-ctrl: mn '$(field "$ctrl" mn)', sn '$(field "$ctrl" sn)', ver $(field "$ctrl" ver)"
stamp_write /dev/nvme0n1 1
expect_eq "stamp" "$(stamp_check /dev/nvme0n1)" 1

# round N: 1 MiB of random data at 8 MiB + (N mod 16) MiB, written direct,
# flushed, read back direct and compared.
round() {
        local off=$((8 + $1 % 16))
        dd if=/dev/urandom of=/tmp/round bs=64k count=16 2>/dev/null
        dd if=/tmp/round of=/dev/nvme0n1 bs=64k seek=$((off * 16)) oflag=direct 2>/dev/null ||
                fail "round $1: write at $off MiB"
        nvme flush /dev/nvme0n1 >/dev/null || fail "round $1: flush"
        [ "$(dd if=/dev/nvme0n1 bs=64k skip=$((off * 16)) count=16 iflag=direct 2>/dev/null |
                sha256sum)" = "$(sha256sum </tmp/round)" ] || fail "round $1: read back other data at $off MiB"
}
round 0
marker "ready-for-host"
n=1
start=$(date +%s)
while :; do
        for b in /sys/block/nvme0n*; do
                [ "$(cat "$b/nsid" 2>/dev/null)" = 2 ] && break 2
        done
        [ $(($(date +%s) - start)) -lt "${GO_TIMEOUT:-180}" ] ||
                fail "no go-ahead (namespace 2) from the host within ${GO_TIMEOUT:-180} s"
        round $n
        n=$((n + 1))
done
say "ok: $n verified write rounds until the host's go-ahead"
for i in 1 2 3; do round $((n + i)); done
expect_eq "stamp after the host's work" "$(stamp_check /dev/nvme0n1)" 1
if dmesg | grep -E -i "I/O error|timeout|reset controller|nvme.*abort"; then
        fail "the kernel logged I/O trouble (above)"
fi
say "ok: verified I/O after the host's go-ahead, data from before intact"
