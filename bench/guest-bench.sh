# SPDX-License-Identifier: LGPL-2.1-or-later
# The guest side of bench/guest-bench (run by the VM suite's /init).  Finds
# each disk by its serial and each network interface by its MAC, runs fio
# 4 KiB random reads at QD1 and QD32 on every disk, then ping and timed TCP
# transfers through every interface; one "VFU-BENCH:" line per figure.
. /vfu/lib.sh
dmesg -n 1  # kernel messages would interleave with the figures

# disk_by_serial SERIAL: the /dev node of the disk (NVMe namespace or
# virtio-blk) whose controller reports SERIAL.
disk_by_serial() {
        local b s
        for b in /sys/block/nvme*n1 /sys/block/vd*; do
                [ -e "$b" ] || continue
                s=$(cat "$b/device/serial" 2>/dev/null || cat "$b/serial" 2>/dev/null) || continue
                s=$(echo $s)
                [ "$s" = "$1" ] && { echo "/dev/${b##*/}"; return 0; }
        done
        return 1
}

for d in $DISKS; do
        serial=${d#*:}
        n=0
        until dev=$(disk_by_serial "$serial"); do
                n=$((n + 1))
                [ $n -lt 600 ] || fail "no disk with serial $serial"
                sleep 0.1
        done
        for qd in 1 32; do
                fio --name="${d%%:*}-qd$qd" --filename="$dev" --direct=1 --ioengine=io_uring \
                        --rw=randread --bs=4k --iodepth=$qd --time_based --runtime="$RUNTIME" \
                        --ramp_time=1 --norandommap --eta=never --output-format=terse --output=/tmp/fio.out ||
                        { cat /tmp/fio.out; fail "fio on $dev ($serial) at QD$qd"; }
                echo "VFU-BENCH: fio ${d%%:*} $qd $(grep -v '^$' /tmp/fio.out | tail -n 1)"
        done
done

uptime_s() { cut -d' ' -f1 /proc/uptime; }

i=0
for n in $NICS; do
        name=${n%%:*}; rest=${n#*:}; mac=${rest%%@*}; addrs=${rest#*@}
        host=${addrs%%/*}; guest=${addrs#*/}
        ifc=
        for x in /sys/class/net/*; do
                [ "$(cat $x/address)" = "$mac" ] && ifc=${x##*/}
        done
        [ -n "$ifc" ] || fail "no interface with MAC $mac"
        check "$ifc up" ip link set "$ifc" up
        check "$ifc address" ip addr add "$guest/24" dev "$ifc"
        wait_carrier_if() {
                local k=0
                until [ "$(cat /sys/class/net/$ifc/carrier 2>/dev/null)" = 1 ]; do
                        k=$((k + 1)); [ $k -lt 300 ] || fail "$ifc: no carrier"; sleep 0.1
                done
        }
        wait_carrier_if
        ping -c 3 -W 5 "$host" >/dev/null || fail "$name: ping $host"
        out=$(ping -c "$PINGS" -i 0.2 -W 5 "$host") || fail "$name: ping"
        echo "VFU-BENCH: ping $name $(echo "$out" | sed -n 's/.*min\/avg\/max = \([^ ]*\) ms.*/\1/p')"
        # guest -> host: PUT, zeros from the guest, hashed by the host's peer
        t0=$(uptime_s)
        reply=$({ echo "PUT $NET_BYTES"; dd if=/dev/zero bs=64k count=$((NET_BYTES / 65536)) 2>/dev/null; } |
                nc "$host" "$PORT") || fail "$name: TCP send"
        t1=$(uptime_s)
        [ -n "$reply" ] || fail "$name: the host did not confirm the transfer"
        echo "VFU-BENCH: tcp $name tx $NET_BYTES $t0 $t1"
        # host -> guest: GET, counted by the guest
        t0=$(uptime_s)
        got=$(echo "GET $NET_BYTES" | nc "$host" "$PORT" | wc -c) || fail "$name: TCP receive"
        t1=$(uptime_s)
        [ "$got" -gt "$NET_BYTES" ] || fail "$name: received $got bytes, expected $NET_BYTES and a hash line"
        echo "VFU-BENCH: tcp $name rx $NET_BYTES $t0 $t1"
        i=$((i + 1))
done
