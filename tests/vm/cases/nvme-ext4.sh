# SPDX-License-Identifier: LGPL-2.1-or-later
# mkfs.ext4 on the namespace, files written through the file system, a clean
# fsck, then mounted again and the files verified.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
check "mkfs.ext4" mkfs.ext4 -q -F /dev/nvme0n1
check "fsck.ext4 of the new file system" fsck.ext4 -fn /dev/nvme0n1
mkdir -p /mnt/t
check "mount" mount -t ext4 /dev/nvme0n1 /mnt/t
i=0
while [ $i -lt 8 ]; do
        dd if=/dev/urandom of=/mnt/t/f$i bs=64k count=$((i * 16 + 1)) 2>/dev/null
        i=$((i + 1))
done
mkdir -p /mnt/t/dir/sub
dd if=/dev/urandom of=/mnt/t/dir/sub/big bs=1M count=24 2>/dev/null
(cd /mnt/t && find . -type f | sort | xargs sha256sum) >/tmp/sums
check "sync" sync
check "umount" umount /mnt/t
check "fsck.ext4 after writing" fsck.ext4 -fn /dev/nvme0n1
check "mount again" mount -t ext4 /dev/nvme0n1 /mnt/t
(cd /mnt/t && sha256sum -c /tmp/sums >/tmp/check.out 2>&1) || { cat /tmp/check.out; fail "file contents changed"; }
say "ok: $(wc -l </tmp/sums) files verified"
check "umount" umount /mnt/t
check "fsck.ext4 at the end" fsck.ext4 -fn /dev/nvme0n1
