# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write initramfs archives (cpio "newc", as the Linux kernel unpacks them).

The host has no cpio(1) and needs none: provision packs the guest tree with
`python3 cpio.py pack DIR > out.cpio`, and run-case appends a small archive
holding one case's scripts.  The kernel unpacks concatenated archives in
order, so a later archive adds files to the earlier one.
"""
import os
import stat
import sys

TRAILER = "TRAILER!!!"


class Writer:
    """Streams newc entries to a binary file object."""

    def __init__(self, out):
        self.out = out
        self.ino = 1

    def _pad(self, n):
        self.out.write(b"\0" * ((4 - n % 4) % 4))

    def entry(self, name, mode, data=b"", rdev=(0, 0)):
        name_b = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(name_b), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.out.write(header + name_b)
        self._pad(len(header) + len(name_b))
        self.out.write(data)
        self._pad(len(data))
        self.ino += 1

    def directory(self, name, perm=0o755):
        self.entry(name, stat.S_IFDIR | perm)

    def file(self, name, data, perm=0o644):
        self.entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name, target):
        self.entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, perm=0o600):
        self.entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def tree(self, root):
        """Add every file, directory and symlink under root (sorted, so the
        archive is reproducible)."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            if rel != ".":
                self.directory(rel, stat.S_IMODE(os.lstat(dirpath).st_mode))
            for f in sorted(filenames + [d for d in dirnames
                                         if os.path.islink(os.path.join(dirpath, d))]):
                path = os.path.join(dirpath, f)
                name = os.path.normpath(os.path.join(rel, f))
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    self.symlink(name, os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as fh:
                        self.file(name, fh.read(), stat.S_IMODE(st.st_mode))

    def finish(self):
        self.entry(TRAILER, 0)
        self.out.flush()


def main(argv):
    if len(argv) != 3 or argv[1] != "pack":
        sys.stderr.write("usage: cpio.py pack DIR > archive.cpio\n")
        return 2
    w = Writer(sys.stdout.buffer)
    w.tree(argv[2])
    # The kernel opens /dev/console before /init runs.
    if not os.path.isdir(os.path.join(argv[2], "dev")):
        w.directory("dev")
    w.chardev("dev/console", 5, 1)
    w.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
