# SPDX-License-Identifier: LGPL-2.1-or-later
# virtio-net: the interface appears with the MAC the host gave, its link
# comes up, the host's TAP answers ping, TCP transfers both ways arrive with
# the right checksums, every queue pair carries traffic, and a link
# down/up from the host is seen by the guest.
. /vfu/lib.sh
wait_path /sys/class/net/eth0 60
expect_eq "driver" "$(basename "$(readlink /sys/class/net/eth0/device/driver)")" virtio_net
expect_eq "MAC" "$(cat /sys/class/net/eth0/address)" "$MAC"
check "link set up" ip link set eth0 up
check "address" ip addr add "$GUEST_IP/24" dev eth0
wait_carrier 1 30
check "ping the host" ping -c 3 -W 5 "$HOST_IP"

expect_eq "rx queues" "$(ls -d /sys/class/net/eth0/queues/rx-* | wc -l)" "$PAIRS"
expect_eq "tx queues" "$(ls -d /sys/class/net/eth0/queues/tx-* | wc -l)" "$PAIRS"

# put CPU BYTES [TAG]: send BYTES random bytes from CPU; the host's sha256
# must match.
put() {
        local f=/tmp/put.$1.$3 reply
        dd if=/dev/urandom of=$f bs=64k count=$(($2 / 65536)) 2>/dev/null
        reply=$({ echo "PUT $2"; cat $f; } | taskset -c $1 nc "$HOST_IP" "$PORT") ||
                fail "TCP send from cpu $1"
        [ "$reply" = "$(sha256sum $f | cut -d' ' -f1)" ] ||
                fail "host received other bytes than cpu $1 sent (host sha256 '$reply')"
        rm -f $f
}
# get BYTES: receive BYTES from the host; they must match the sha256 it sent first.
get() {
        local f=/tmp/get.$$
        echo "GET $1" | nc "$HOST_IP" "$PORT" >$f || fail "TCP receive"
        [ "$(tail -c +66 $f | wc -c)" = "$1" ] || fail "received $(tail -c +66 $f | wc -c) bytes, expected $1"
        [ "$(head -n 1 $f)" = "$(tail -c +66 $f | sha256sum | cut -d' ' -f1)" ] ||
                fail "received other bytes than the host sent"
        rm -f $f
}

cpus=$(grep -c ^processor /proc/cpuinfo)
cpu=0
while [ $cpu -lt "$cpus" ]; do
        put $cpu $((8 << 20))
        say "ok: 8 MiB sent from cpu $cpu, checksum verified by the host"
        cpu=$((cpu + 1))
done
get $((8 << 20))
say "ok: 8 MiB received, checksum verified"
# Several flows at once.
pids=
for i in 1 2 3 4; do
        put $((i % cpus)) $((2 << 20)) $i &
        pids="$pids $!"
done
for p in $pids; do wait $p || fail "a parallel flow failed"; done
say "ok: 4 parallel flows"

# Multiqueue in use: each CPU transmits on its own queue (XPS), so every
# TX queue up to the CPU count has notified the device.  Which RX queue a
# flow lands on is the TAP's hash: reported, not required.
stats=$(ethtool -S eth0) || fail "ethtool -S eth0"
q=0
while [ $q -lt "$PAIRS" ] && [ $q -lt "$cpus" ]; do
        kicks=$(echo "$stats" | sed -n "s/^ *tx${q}_kicks: //p")
        [ -n "$kicks" ] && [ "$kicks" -gt 0 ] || fail "TX queue $q was never used: $(echo "$stats" | grep kicks)"
        say "ok: TX queue $q: $kicks notifications"
        q=$((q + 1))
done
grep -E "virtio[0-9]+-(input|output)" /proc/interrupts | awk '{ s = 0; for (i = 2; i <= NF - 2; i++) s += $i; print "VFU-VM: interrupts " $NF ": " s }'

marker "ready-for-link-down"
wait_carrier 0 30
say "ok: link down seen"
marker "ready-for-link-up"
wait_carrier 1 30
check "ping after link up" ping -c 2 -W 5 "$HOST_IP"
get $((1 << 20))
say "ok: traffic after link up"
