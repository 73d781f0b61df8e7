# SPDX-License-Identifier: LGPL-2.1-or-later
# ./scripts/demo's guest: what it sees of its vfu NVMe disk and virtio-net
# NIC and what it does with them, every line on the console for the demo to
# show.  ext4 made, written, read back after a remount and checked; ping and
# TCP both ways with the host, checksums compared.  KEEP=1: a shell on the
# console afterwards instead of powering off; otherwise the guest powers off
# when the host sets its link down.
. /vfu/lib.sh

# show CMD...: "$ CMD" and its output, as console lines the demo prints.
show() {
        say "\$ $*"
        "$@" 2>&1 | while IFS= read -r line; do say "  $line"; done
}

# pci: lspci -nk's view of the bus (the guest has no pciutils: sysfs has it all).
pci() {
        local d class name drv
        for d in /sys/bus/pci/devices/*; do
                class=$(cut -c3-6 "$d/class")
                case $class in
                0108) name="Non-Volatile memory controller" ;;
                0200) name="Ethernet controller" ;;
                0600) name="Host bridge" ;;
                0601) name="ISA bridge" ;;
                0106) name="SATA controller" ;;
                0c05) name="SMBus" ;;
                *) name="Class $class" ;;
                esac
                drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
                echo "${d##*/devices/0000:} $name [$class]: [$(cut -c3- "$d/vendor"):$(cut -c3- "$d/device")]${drv:+ driver $drv}"
        done
}

wait_path /dev/nvme0n1 120
wait_path /sys/class/net/eth0 60
say "PCI devices (lspci -nk):"
pci | while IFS= read -r line; do say "  $line"; done
show nvme list

# The disk: a file system, files written, read back after a remount, checked.
check "mkfs.ext4 /dev/nvme0n1" mkfs.ext4 -q -F /dev/nvme0n1
mkdir -p /mnt/disk
check "mount" mount -t ext4 /dev/nvme0n1 /mnt/disk
dd if=/dev/urandom of=/mnt/disk/random.bin bs=1M count=32 2>/dev/null
cp -r /vfu /mnt/disk/vfu
(cd /mnt/disk && find . -type f | sort | xargs sha256sum) >/tmp/sums
check "sync and umount" umount /mnt/disk
check "fsck.ext4 -fn" fsck.ext4 -fn /dev/nvme0n1
check "mount again" mount -t ext4 -o ro /dev/nvme0n1 /mnt/disk
(cd /mnt/disk && sha256sum -c /tmp/sums >/tmp/check.out 2>&1) || { cat /tmp/check.out; fail "file contents changed"; }
say "ok: $(wc -l </tmp/sums) files ($(du -sm /mnt/disk | cut -f1) MiB) read back, sha256 verified"
show df -h /mnt/disk
umount /mnt/disk

# The NIC: the host at HOST_IP on the TAP behind the device.
expect_eq "eth0 driver" "$(basename "$(readlink /sys/class/net/eth0/device/driver)")" virtio_net
check "ip link set eth0 up" ip link set eth0 up
check "ip addr add $GUEST_IP/24 dev eth0" ip addr add "$GUEST_IP/24" dev eth0
wait_carrier 1 30
show ip addr show dev eth0
ping -c 3 -W 5 "$HOST_IP" >/tmp/ping.out 2>&1 || { cat /tmp/ping.out; fail "ping $HOST_IP"; }
say "\$ ping -c 3 $HOST_IP"
tail -n 2 /tmp/ping.out | while IFS= read -r line; do say "  $line"; done
n=$((16 << 20))
f=/tmp/put.bin
dd if=/dev/urandom of=$f bs=1M count=16 2>/dev/null
mine=$(sha256sum $f | cut -d' ' -f1)
theirs=$({ echo "PUT $n"; cat $f; } | nc "$HOST_IP" "$PORT") || fail "TCP send"
[ "$theirs" = "$mine" ] || fail "the host received other bytes: sha256 $theirs, sent $mine"
say "ok: TCP 16 MiB to the host, sha256 ${mine%"${mine#????????????????}"}... on both ends"
f=/tmp/get.bin
echo "GET $n" | nc "$HOST_IP" "$PORT" >$f || fail "TCP receive"
sent=$(head -n 1 $f)
got=$(tail -c +66 $f | sha256sum | cut -d' ' -f1)
[ "$(tail -c +66 $f | wc -c)" = "$n" ] || fail "received $(tail -c +66 $f | wc -c) bytes, expected $n"
[ "$got" = "$sent" ] || fail "received other bytes than the host sent"
say "ok: TCP 16 MiB from the host, sha256 ${got%"${got#????????????????}"}... on both ends"
say "all checks passed"

marker "demo-done"
if [ "${KEEP:-0}" = 1 ]; then
        echo "vfu demo guest: /dev/nvme0n1, eth0 $GUEST_IP; the host is $HOST_IP (port $PORT: netpeer). poweroff -f ends the VM."
        while :; do setsid cttyhack sh </dev/ttyS0 >/dev/ttyS0 2>&1 || sleep 1; done
fi
# The host shows its statistics while the devices are in use, then sets the
# link down: the guest's cue to power off.
wait_carrier 0 300
say "link down seen (vfuctl link down): powering off"
