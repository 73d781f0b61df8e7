#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# A man page formats without a warning: check-man.sh PAGE
set -u
if ! command -v groff >/dev/null 2>&1; then
        echo "SKIP: groff not found (Debian package groff-base)"
        exit 77
fi
out=$(LC_ALL=C.UTF-8 groff -t -man -ww -z "$1" 2>&1)
if [ -n "$out" ]; then
        echo "$1: groff warnings:"
        echo "$out"
        exit 1
fi
# its JSON examples still parse once formatted (roff eats '"' in macro arguments)
python3 "$(dirname "$0")/../common/man-json.py" "$1" || exit 1
# and it renders to something with the sections a reader expects
text=$(LC_ALL=C.UTF-8 groff -t -man -Tutf8 -P-cbou "$1" 2>/dev/null)
for s in NAME SYNOPSIS DESCRIPTION OPTIONS "EXIT STATUS" "SEE ALSO"; do
        printf '%s\n' "$text" | grep -q "^$s" || { echo "$1: no $s section"; exit 1; }
done
echo "ok $1"
