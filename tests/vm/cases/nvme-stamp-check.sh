# SPDX-License-Identifier: LGPL-2.1-or-later
# The namespace holds the stamp generation GEN that an earlier guest wrote.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
expect_eq "stamp generation" "$(stamp_check /dev/nvme0n1)" "$GEN"
