#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# demo-check DEMO BUILD: ./scripts/demo --client (no VM: the vm suite runs
# that one, case demo), run on this build, succeeds and shows
# a new user nothing alarming: no output on stderr, no warning or failure.
set -u
err=$(mktemp)
trap 'rm -f "$err"' EXIT
out=$(VFU_DEMO_BUILD=$2 "$1" --client 2>"$err")
rc=$?
status=0
if [ $rc -ne 0 ]; then
        echo "demo exited with status $rc"
        status=1
fi
if [ -s "$err" ]; then
        echo "demo wrote to stderr:"
        cat "$err"
        status=1
fi
if printf '%s\n' "$out" | grep -Ein 'warning|failed'; then
        echo "^ demo output a new user should not see"
        status=1
fi
[ $status = 0 ] || { echo "---- demo output ----"; printf '%s\n' "$out"; }
[ $status = 0 ] && echo "demo ok"
exit $status
