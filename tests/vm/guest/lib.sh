# SPDX-License-Identifier: LGPL-2.1-or-later
# Helpers for the guest's case scripts (busybox sh, run with -e by /init).
# /vfu/params holds the harness's parameters for this run as shell variables.
. /vfu/params

# say MSG: a line on the console the harness log shows.
say() { echo "VFU-VM: $*"; }

# fail MSG: end the case with a reason.
fail() { echo "VFU-VM: FAILED: $*"; exit 1; }

# check DESCRIPTION COMMAND...: run COMMAND; fail with DESCRIPTION if it fails.
check() {
        desc=$1; shift
        if ! out=$("$@" 2>&1); then
                echo "$out" | tail -n 30
                fail "$desc ($*)"
        fi
        say "ok: $desc"
}

# wait_path PATH [SECONDS]: wait until PATH exists (a device node appearing).
wait_path() {
        n=$(( ${2:-30} * 10 ))
        while [ ! -e "$1" ]; do
                n=$((n - 1))
                [ "$n" -gt 0 ] || fail "$1 did not appear within ${2:-30} s"
                sleep 0.1
        done
}

# wait_gone PATH [SECONDS]: wait until PATH is gone (a device removed).
wait_gone() {
        n=$(( ${2:-30} * 10 ))
        while [ -e "$1" ]; do
                n=$((n - 1))
                [ "$n" -gt 0 ] || fail "$1 still present after ${2:-30} s"
                sleep 0.1
        done
}

# field TEXT NAME: the value of "NAME : value" in nvme-cli's normal output.
field() {
        echo "$1" | sed -n "s/^$2 *: *//p" | head -n 1
}

# expect_eq WHAT ACTUAL EXPECTED
expect_eq() {
        [ "$2" = "$3" ] || fail "$1 is '$2', expected '$3'"
        say "ok: $1 = $2"
}

# marker TEXT: a line the harness waits for on the console.
marker() { echo "VFU-VM-MARK: $*"; }
