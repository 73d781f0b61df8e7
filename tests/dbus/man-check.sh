#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# man-check PAGE...: every page formats without a groff warning, its JSON
# examples still parse once formatted (roff eats '"' in macro arguments),
# and its .TH names the file.
json_check="$(dirname "$0")/../common/man-json.py"
status=0
for page in "$@"; do
        out=$(groff -man -ww -z -t "$page" 2>&1)
        if [ -n "$out" ]; then
                echo "$page: groff warnings:"
                echo "$out"
                status=1
        fi
        if command -v mandoc >/dev/null 2>&1; then
                out=$(mandoc -Tlint -Wwarning "$page" 2>&1)
                if [ -n "$out" ]; then
                        echo "$page: mandoc:"
                        echo "$out"
                        status=1
                fi
        fi
        if ! out=$(python3 "$json_check" "$page" 2>&1); then
                echo "$out"
                status=1
        fi
        name=$(basename "$page")
        head=$(sed -n 's/^\.TH \([^ ]*\) \([0-9]\).*/\1.\2/p' "$page" | tr 'A-Z' 'a-z' | sed 's/\\//g')
        if [ "$head" != "$name" ]; then
                echo "$page: .TH says $head"
                status=1
        fi
done
[ $status = 0 ] && echo "$# pages ok"
exit $status
