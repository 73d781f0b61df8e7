#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every golden output, and the input it came from, validates against
# libvirt's domain schema, qemu namespace included.  (Inputs of refusal
# cases may be deliberately broken.)
# usage: validate-golden.sh GOLDEN_DIR
set -u
dir=$1
if ! command -v virt-xml-validate >/dev/null 2>&1; then
        echo "SKIP: virt-xml-validate not found (Debian package libvirt-clients)"
        exit 77
fi
n=0
failed=0
for f in "$dir"/*.out.xml "$dir"/*.in.xml; do
        case $f in
        *.in.xml) [ -f "${f%.in.xml}.out.xml" ] || continue ;;
        esac
        n=$((n + 1))
        if out=$(virt-xml-validate "$f" domain 2>&1); then
                echo "ok $f"
        else
                echo "FAIL $f: $out"
                failed=$((failed + 1))
        fi
done
[ "$n" -gt 0 ] || { echo "FAIL: no golden files in $dir"; exit 1; }
# The schema must actually be checking the qemu namespace: a misspelled
# element has to be rejected, or the passes above prove nothing.
bad=$(mktemp)
trap 'rm -f "$bad"' EXIT
sed 's/qemu:commandline/qemu:commandlin/g' "$dir/plain-q35.out.xml" > "$bad"
if virt-xml-validate "$bad" domain >/dev/null 2>&1; then
        echo "FAIL: a misspelled <qemu:commandlin> validated; the schema check is not effective"
        failed=$((failed + 1))
fi
echo "$n files, $failed failures"
[ "$failed" -eq 0 ]
