# SPDX-License-Identifier: LGPL-2.1-or-later
# Data survives the VM: PHASE=write builds an ext4 file system with files and
# their checksums and powers off; PHASE=check (a new QEMU process against the
# same device server) finds the file system clean and every file intact.
. /vfu/lib.sh
wait_path /dev/nvme0n1 120
mkdir -p /mnt/t
case "$PHASE" in
write)
        check "mkfs.ext4" mkfs.ext4 -q -F /dev/nvme0n1
        check "mount" mount -t ext4 /dev/nvme0n1 /mnt/t
        for i in 1 2 3 4 5 6; do
                dd if=/dev/urandom of=/mnt/t/f$i bs=32k count=$((i * i * 8)) 2>/dev/null
        done
        (cd /mnt/t && sha256sum f* >SUMS)
        check "umount" umount /mnt/t
        ;;
check)
        check "fsck.ext4 clean after the VM restarted" fsck.ext4 -fn /dev/nvme0n1
        check "mount" mount -t ext4 /dev/nvme0n1 /mnt/t
        (cd /mnt/t && sha256sum -c SUMS >/tmp/check.out 2>&1) || { cat /tmp/check.out; fail "file contents changed across the VM restart"; }
        say "ok: $(wc -l </mnt/t/SUMS) files intact"
        check "umount" umount /mnt/t
        ;;
*)
        fail "PHASE '$PHASE' unknown"
        ;;
esac
