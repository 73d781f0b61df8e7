# SPDX-License-Identifier: LGPL-2.1-or-later
# virtio-net whose link the host sets: up, traffic, then down and up again
# from vfuctl, each seen by the guest as its carrier, and traffic again.
. /vfu/lib.sh
wait_path /sys/class/net/eth0 60
expect_eq "driver" "$(basename "$(readlink /sys/class/net/eth0/device/driver)")" virtio_net
expect_eq "MAC" "$(cat /sys/class/net/eth0/address)" "$MAC"
check "link set up" ip link set eth0 up
check "address" ip addr add "$GUEST_IP/24" dev eth0
wait_carrier 1 30
check "ping the host" ping -c 3 -W 5 "$HOST_IP"

# get BYTES: receive BYTES from the host's peer; they must match the sha256
# it sent first.
get() {
        local f=/tmp/get.$$
        echo "GET $1" | nc "$HOST_IP" "$PORT" >$f || fail "TCP receive"
        [ "$(tail -c +66 $f | wc -c)" = "$1" ] || fail "received $(tail -c +66 $f | wc -c) bytes, expected $1"
        [ "$(head -n 1 $f)" = "$(tail -c +66 $f | sha256sum | cut -d' ' -f1)" ] ||
                fail "received other bytes than the host sent"
        rm -f $f
}
get $((1 << 20))
say "ok: 1 MiB received, checksum verified"

marker "ready-for-link-down"
wait_carrier 0 30
expect_eq "operstate" "$(cat /sys/class/net/eth0/operstate)" down
ping -c 1 -W 2 "$HOST_IP" >/dev/null 2>&1 && fail "the host answered a ping while the link was down"
say "ok: link down seen, no traffic"
marker "ready-for-link-up"
wait_carrier 1 30
check "ping after link up" ping -c 2 -W 5 "$HOST_IP"
get $((1 << 20))
say "ok: traffic after link up"
