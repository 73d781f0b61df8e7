# SPDX-License-Identifier: LGPL-2.1-or-later
# The guest boots and its tools run: the pipeline works before any device.
. /vfu/lib.sh
check "modules loaded" grep -q '^nvme ' /proc/modules
check "virtio_net loaded" grep -q '^virtio_net ' /proc/modules
check "nvme-cli runs" nvme version
check "fio runs" fio --version
check "mkfs.ext4 on a file" mkfs.ext4 -q -F /tmp/fs.img 8M
check "fsck.ext4 clean" fsck.ext4 -fn /tmp/fs.img
say "cpus $(grep -c ^processor /proc/cpuinfo), $(grep MemTotal /proc/meminfo)"
