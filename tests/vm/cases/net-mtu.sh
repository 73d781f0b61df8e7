# SPDX-License-Identifier: LGPL-2.1-or-later
# Two virtio-net devices whose MTU the host chose: "jumbo" (9000) and
# "small" (1450).  Each interface starts at the offered MTU, which is also
# its maximum; full-size pings cross unfragmented both ways (the IP
# fragmentation counters stay put), one byte more is refused with DF; TCP
# transfers both ways arrive with the right checksums.
. /vfu/lib.sh

# ifname_of MAC: the interface with that address.
ifname_of() {
        local d
        for d in /sys/class/net/*; do
                if [ "$(cat "$d/address")" = "$1" ]; then
                        basename "$d"
                fi
        done
}
n=600
while [ -z "$(ifname_of "$SMALL_MAC")" ] || [ -z "$(ifname_of "$JUMBO_MAC")" ]; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || fail "the two virtio-net interfaces did not appear: $(ls /sys/class/net)"
        sleep 0.1
done
S=$(ifname_of "$SMALL_MAC")
J=$(ifname_of "$JUMBO_MAC")
expect_eq "driver of $J" "$(basename "$(readlink /sys/class/net/$J/device/driver)")" virtio_net

# virtio_net starts at the MTU the device offers, and goes no higher.
expect_eq "MTU of $J" "$(cat /sys/class/net/$J/mtu)" 9000
expect_eq "MTU of $S" "$(cat /sys/class/net/$S/mtu)" 1450
ip link set "$J" mtu 9001 2>/dev/null && fail "$J took MTU 9001 above the device's 9000"
ip link set "$S" mtu 1451 2>/dev/null && fail "$S took MTU 1451 above the device's 1450"
check "MTU 1500 on $J" ip link set "$J" mtu 1500
check "MTU 9000 on $J again" ip link set "$J" mtu 9000
say "ok: the offered MTUs are the interfaces' maxima"

check "link set up $S" ip link set "$S" up
check "link set up $J" ip link set "$J" up
check "address $S" ip addr add "$GUEST_IP/24" dev "$S"
check "address $J" ip addr add "$JUMBO_GUEST_IP/24" dev "$J"
wait_carrier 1 30 "$S"
wait_carrier 1 30 "$J"

# ip_stat NAME: a counter of /proc/net/snmp's Ip lines.
ip_stat() {
        awk -v k="$1" '/^Ip:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c[k] }' /proc/net/snmp
}
icmp_stat() {
        awk -v k="$1" '/^Icmp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c[k] }' /proc/net/snmp
}
# big_ping IP SIZE: the echo and its reply cross whole (no fragment made or reassembled).
big_ping() {
        local frag=$(ip_stat FragCreates) reasm=$(ip_stat ReasmReqds)
        check "ping -s $2 $1" ping -c 3 -W 5 -s "$2" "$1"
        expect_eq "fragments made for ping -s $2" $(( $(ip_stat FragCreates) - frag )) 0
        expect_eq "reassemblies for ping -s $2" $(( $(ip_stat ReasmReqds) - reasm )) 0
}
big_ping "$JUMBO_HOST_IP" 8972
big_ping "$HOST_IP" 1422

# The host pings with DF set (ping -M do): full size passes, one more byte cannot leave it.
echos=$(icmp_stat InEchos)
marker "ready-for-host-ping"
n=600
while [ $(( $(icmp_stat InEchos) - echos )) -lt 6 ]; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || fail "the host's pings did not arrive ($(( $(icmp_stat InEchos) - echos )) of 6)"
        sleep 0.1
done
say "ok: the host's 8972- and 1422-byte pings answered"

# put HOST BYTES: send BYTES random bytes; the host's sha256 must match.
put() {
        local f=/tmp/put.$$ reply
        dd if=/dev/urandom of=$f bs=64k count=$(($2 / 65536)) 2>/dev/null
        reply=$({ echo "PUT $2"; cat $f; } | nc "$1" "$PORT") || fail "TCP send to $1"
        [ "$reply" = "$(sha256sum $f | cut -d' ' -f1)" ] ||
                fail "$1 received other bytes than sent (host sha256 '$reply')"
        rm -f $f
}
# get HOST BYTES: receive BYTES; they must match the sha256 the host sent first.
get() {
        local f=/tmp/get.$$
        echo "GET $2" | nc "$1" "$PORT" >$f || fail "TCP receive from $1"
        [ "$(tail -c +66 $f | wc -c)" = "$2" ] || fail "received $(tail -c +66 $f | wc -c) bytes, expected $2"
        [ "$(head -n 1 $f)" = "$(tail -c +66 $f | sha256sum | cut -d' ' -f1)" ] ||
                fail "received other bytes than $1 sent"
        rm -f $f
}
put "$JUMBO_HOST_IP" $((8 << 20))
get "$JUMBO_HOST_IP" $((8 << 20))
say "ok: 8 MiB each way at MTU 9000, checksums verified"
put "$HOST_IP" $((4 << 20))
get "$HOST_IP" $((4 << 20))
say "ok: 4 MiB each way at MTU 1450, checksums verified"
