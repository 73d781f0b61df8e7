#!/bin/bash
# systemd-host: vfu's packages on a booted Debian trixie with systemd as PID 1
# (tests/vm/provision-systemd-host).  Run by vfu-case.service once the guest
# reached multi-user.target, from the disk labelled vfucase: the .debs built
# from this tree, nvme-io (our vfio-user client doing verified NVMe I/O) and
# this script.  Any failing command fails the case (bash -e).
P=$(cd "$(dirname "$0")" && pwd)
say() { echo "systemd-host: [$(cut -d' ' -f1 /proc/uptime)s] $*"; }
fail() { echo "systemd-host: FAIL: $*"; exit 1; }
expect() { [ "$1" = "$2" ] || fail "$3: '$1', expected '$2'"; }
wait_until() {          # SECONDS WHAT COMMAND...
        local t=$1 what=$2; shift 2
        for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
        fail "timed out after $t s waiting for $what"
}
main_pid() { systemctl show -P MainPID "vfu-worker@$1.service"; }
field() { vfuctl show "$1" --json | sed -n "s/.*\"$2\" *: *\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p" | head -n1; }
verified_io() {         # DEVICE: our client writes, reads back and compares for a few seconds
        local out
        out=$( (sleep 2) | "$P/nvme-io" "/run/vfud/$1.sock" )
        echo "$out" | grep -q '^ready' || fail "nvme-io on $1 never got ready: $out"
        echo "$out" | tail -n1 | grep -Eq '^ok [1-9][0-9]* 0$' || fail "nvme-io on $1: $(echo "$out" | tail -n1)"
        say "verified I/O on $1: $(echo "$out" | tail -n1)"
}
# On any failure, what vfud and the workers logged.
trap 'st=$?; [ $st -eq 0 ] || { echo "systemd-host: the journal of vfud and its workers:";
      journalctl -b -u vfud -u "vfu-worker@*" --no-pager 2>&1 | tail -n 40 | sed "s/^/    /"; }' EXIT
exposure() { systemd-analyze security "$1" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'; }

say "systemd $(systemctl --version | head -n1 | cut -d' ' -f2), PID 1 is $(cat /proc/1/comm)"
expect "$(cat /proc/1/comm)" systemd "PID 1"

say "installing $(cd "$P" && echo *.deb)"
dpkg -i "$P"/libvfu-vfio-user0_*.deb "$P"/vfu_*.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg -i"; }
expect "$(systemctl is-enabled vfud)" enabled "vfud.service after install"
expect "$(systemctl is-active vfud)" active "vfud.service after install (the postinst starts it)"
getent passwd vfu-worker >/dev/null || fail "no vfu-worker user (sysusers)"
getent group vfu >/dev/null || fail "no vfu group (sysusers)"
expect "$(stat -c %a /var/lib/vfud)" 700 "/var/lib/vfud's mode"

say "D-Bus activation: vfud stopped, a first vfuctl call starts it"
systemctl stop vfud
expect "$(systemctl is-active vfud)" inactive "vfud after stop"
vfuctl list >/dev/null
expect "$(systemctl is-active vfud)" active "vfud after the first vfuctl call"
journalctl -b -u vfud | grep -q 'workers start in systemd units of their own' || fail "vfud did not choose worker units"

say "vfuctl create nvme with limits"
vfuctl create nvme --name d1 --size 64M --memory-max 256M --cpu-quota 80 --tasks-max 64 --io-weight 200 >/dev/null
expect "$(systemctl is-active vfu-worker@d1.service)" active "vfu-worker@d1.service"
systemctl status --no-pager --lines=3 vfu-worker@d1.service | sed 's/^/    /'
pid=$(main_pid d1)
expect "$(field d1 worker_pid)" "$pid" "the worker vfud watches"
expect "$(stat -c %u "/proc/$pid")" "$(id -u vfu-worker)" "the worker's uid"
expect "$(awk '/^CapEff/ { print $2 }' "/proc/$pid/status")" 0000000000000000 "the worker's capabilities"
cg=/sys/fs/cgroup$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
expect "${cg##*/}" vfu-worker@d1.service "the worker's cgroup"
expect "$(cat "$cg/memory.max")" 268435456 "memory.max"
expect "$(cat "$cg/cpu.max")" "80000 100000" "cpu.max"
expect "$(cat "$cg/pids.max")" 64 "pids.max"
say "cgroup $cg: memory.max $(cat "$cg/memory.max"), cpu.max $(cat "$cg/cpu.max"), pids.max $(cat "$cg/pids.max")"
verified_io d1

say "systemctl restart vfud: the worker untouched and adopted"
systemctl restart vfud
expect "$(main_pid d1)" "$pid" "the worker's pid across the restart"
wait_until 30 "d1 to be adopted" sh -c "vfuctl show d1 --json | grep -q '\"state\" *: *\"listening\"'"
journalctl -b -u vfud | grep -q "adopted running worker $pid" || fail "vfud did not log the adoption"
verified_io d1

say "a killed worker comes back in a new unit"
kill -KILL "$pid"
wait_until 30 "a new worker for d1" sh -c "p=\$(systemctl show -P MainPID vfu-worker@d1.service); [ -n \"\$p\" ] && [ \"\$p\" != 0 ] && [ \"\$p\" != $pid ] && vfuctl show d1 --json | grep -q '\"state\" *: *\"listening\"'"
say "worker $pid killed, now $(main_pid d1)"
expect "$(cat "$cg/memory.max")" 268435456 "memory.max of the new unit"
verified_io d1

say "systemd-analyze security"
systemd-analyze security vfu-worker@d1.service 2>&1 | grep '✗' | sed 's/^/    /' || true
e=$(exposure vfud.service); w=$(exposure vfu-worker@d1.service)
say "exposure: vfud.service $e, vfu-worker@d1.service $w"
awk -v e="$e" -v w="$w" 'BEGIN { exit !(e != "" && w != "" && e <= 4.0 && w <= 2.5) }' ||
        fail "exposure vfud $e (at most 4.0), worker $w (at most 2.5)"

say "polkit: a user outside group vfu is refused, one in it allowed, reading open to all"
useradd -M -s /usr/sbin/nologin alice
useradd -M -s /usr/sbin/nologin -G vfu bob
runuser -u alice -- vfuctl list >/dev/null || fail "alice cannot list"
if runuser -u alice -- vfuctl --no-ask-password create nvme --name a1 --size 16M >/tmp/alice.out 2>&1; then
        fail "alice (not in vfu) created a device"
fi
say "alice: $(head -n1 /tmp/alice.out)"
runuser -u bob -- vfuctl --no-ask-password create nvme --name b1 --size 16M >/dev/null || fail "bob (in vfu) was refused"
expect "$(systemctl is-active vfu-worker@b1.service)" active "bob's device's unit"

say "destroy, then purge"
vfuctl destroy d1 b1
wait_until 15 "the worker units to go" sh -c '! systemctl is-active -q vfu-worker@d1.service && ! systemctl is-active -q vfu-worker@b1.service'
dpkg --purge vfu libvfu-vfio-user0 >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log; fail "dpkg --purge"; }
sed 's/^/    /' /tmp/dpkg.log
for f in /var/lib/vfud /run/vfud /etc/vfud /usr/sbin/vfud /usr/lib/systemd/system/vfud.service /lib/systemd/system/vfud.service; do
        [ ! -e "$f" ] || fail "$f is still there after purge"
done
expect "$(systemctl is-active vfud)" inactive "vfud after purge"
getent passwd vfu-worker >/dev/null || fail "purge removed the vfu-worker user (Debian keeps system users)"
say "purged"
