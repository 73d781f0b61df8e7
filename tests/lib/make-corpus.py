#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the fuzzer's seed corpus (tests/lib/corpus/): client byte streams
for fuzz-server.c, one file per scenario.  Each starts with VERSION and then
walks one part of the protocol the way a VMM would.  Run it again after
changing it; the files are committed."""

import os
import struct
import sys

VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, REGION_INFO, IO_FDS, IRQ_INFO, SET_IRQS = 1, 2, 3, 4, 5, 6, 7, 8
READ, WRITE, RESET, MULTI, FEATURE, MIG_READ, MIG_WRITE = 9, 10, 13, 15, 16, 17, 18
NO_REPLY = 0x10
CFG = 7

_id = 0


def msg(cmd, payload=b"", flags=0, msg_id=None):
    global _id
    _id += 1
    mid = _id if msg_id is None else msg_id
    return struct.pack("<HHII I", mid & 0xFFFF, cmd, 16 + len(payload), flags, 0) + payload


def version(caps=b'{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"migration":{"pgsize":4096}}}'):
    return msg(VERSION, struct.pack("<HH", 0, 0) + caps + b"\0")


def dma_map(addr, size, off=0, flags=3):
    # fuzz-server.c attaches a 1 MiB memfd to every DMA_MAP header
    return msg(DMA_MAP, struct.pack("<IIQQQ", 32, flags, off, addr, size))


def dma_unmap(addr, size, flags=0):
    return msg(DMA_UNMAP, struct.pack("<IIQQ", 24, flags, addr, size))


def rd(region, off, count):
    return msg(READ, struct.pack("<QII", off, region, count))


def wr(region, off, data, flags=0):
    return msg(WRITE, struct.pack("<QII", off, region, len(data)) + data, flags)


def set_irqs(index, flags, start, count, data=b"", nfds=0):
    # fuzz-server.c attaches (msg_id & 0xf) eventfds to a SET_IRQS header
    return msg(SET_IRQS, struct.pack("<IIIII", 20 + len(data), flags, index, start, count) + data,
               msg_id=((_id + 1) << 4 | nfds) & 0xFFFF)


def feature(flags, data=b"", argsz=None):
    return msg(FEATURE, struct.pack("<II", argsz if argsz is not None else 8 + max(len(data), 64), flags) + data)


def seeds():
    s = {}
    s["startup"] = (version() + dma_map(0, 0x100000) + dma_map(0xfffc0000, 0x40000, flags=1)
                    + msg(GET_INFO, struct.pack("<IIII", 16, 0, 0, 0))
                    + b"".join(msg(REGION_INFO, struct.pack("<IIIIQQ", 32, 0, i, 0, 0, 0)) for i in range(9))
                    + msg(REGION_INFO, struct.pack("<IIIIQQ", 64, 0, 0, 0, 0, 0))
                    + b"".join(msg(IRQ_INFO, struct.pack("<IIII", 16, 0, i, 0)) for i in range(5))
                    + rd(CFG, 0, 4096) + rd(CFG, 0x10, 4) + msg(RESET))
    s["dma-echo"] = (version() + dma_map(0x100000, 0x100000)
                     + set_irqs(2, 0x24, 0, 8, nfds=8)
                     + wr(CFG, 0x04, struct.pack("<H", 6))
                     + wr(CFG, 0x86, struct.pack("<H", 0x8000))
                     + wr(0, 0x100, struct.pack("<Q", 0x100000), NO_REPLY)
                     + wr(0, 0x108, struct.pack("<Q", 0x180000), NO_REPLY)
                     + wr(0, 0x110, struct.pack("<I", 4096), NO_REPLY)
                     + wr(0, 0x11c, struct.pack("<I", 3), NO_REPLY)
                     + wr(0, 0x114, struct.pack("<I", 1))
                     + rd(0, 0x118, 4) + wr(0, 0x120, struct.pack("<I", 5)) + rd(4, 0x800, 8))
    s["irqs"] = (version() + set_irqs(2, 0x24, 0, 4, nfds=4) + set_irqs(2, 0x24, 2, 2)
                 + set_irqs(2, 0x09, 0, 2) + set_irqs(2, 0x12, 0, 2, b"\1\0")
                 + set_irqs(2, 0x21, 0, 0) + set_irqs(3, 0x24, 0, 1, nfds=1) + set_irqs(3, 0x21, 0, 1)
                 + wr(CFG, 0x86, struct.pack("<H", 0xc000)) + wr(4, 12, struct.pack("<I", 1)) + wr(4, 12, struct.pack("<I", 0)) + rd(4, 0, 64))
    s["regions"] = (version() + wr(0, 0, bytes(range(64))) + rd(0, 0, 64) + rd(0, 0xffc, 8)
                    + wr(0, 0x1000, b"\xaa" * 16) + rd(0, 0x1000, 16) + rd(1, 0, 0x100) + rd(2, 0, 0x4000)
                    + rd(0, 0x200, 4) + wr(CFG, 0x10, struct.pack("<I", 0xffffffff)) + rd(CFG, 0x10, 24)
                    + msg(IO_FDS, struct.pack("<IIII", 16, 0, 0, 0))
                    + msg(MULTI, struct.pack("<Q", 2) + struct.pack("<QII8s", 0x10, 0, 4, b"\1\2\3\4")
                          + struct.pack("<QII8s", 0x14, 0, 8, b"\5" * 8)))
    s["flr"] = (version() + wr(CFG, 0x04, struct.pack("<H", 6)) + rd(CFG, 0x40, 0x40)
                + wr(CFG, 0x50, struct.pack("<H", 0x8000)) + wr(CFG, 0x44, struct.pack("<H", 3))
                + rd(CFG, 0x04, 2))
    s["dma-maps"] = (version() + dma_map(0, 0x10000) + dma_map(0x10000, 0x10000, 0x10000)
                     + dma_map(0x8000, 0x1000) + dma_unmap(0, 0x1000) + dma_unmap(0, 0x10000)
                     + dma_map(0x200000, 0x1000, 0x100000) + dma_unmap(0, 0, 2))
    # odd length: fuzz-server.c gives odd inputs a device with migration support
    mig = (version() + dma_map(0, 0x100000)
           + feature(0x10000 | 1) + feature(0x40000 | 0x10000 | 2)
           + feature(0x20000 | 6, struct.pack("<QII", 4096, 1, 0) + struct.pack("<QQ", 0, 0x100000))
           + feature(0x20000 | 2, struct.pack("<II", 6, 0), 16) + msg(MIG_READ, struct.pack("<II", 8 + 200, 200))
           + feature(0x20000 | 2, struct.pack("<II", 3, 0), 16) + msg(MIG_READ, struct.pack("<II", 8 + 200, 200))
           + feature(0x10000 | 8, struct.pack("<QQQ", 0, 0x100000, 4096), 8 + 24 + 64)
           + feature(0x20000 | 7, b"", 8) + feature(0x20000 | 2, struct.pack("<II", 4, 0), 16)
           + msg(MIG_WRITE, struct.pack("<II", 8 + 256, 256) + bytes(256))
           + feature(0x20000 | 2, struct.pack("<II", 2, 0), 16) + feature(0x10000 | 2, b"", 16))
    if len(mig) % 2 == 0:
        mig += b"\0"
    s["migration"] = mig
    s["bad-header"] = version() + struct.pack("<HHIII", 1, 4, 8, 0, 0)
    # length 2 mod 4: fuzz-server.c gives it a device with MSI (4 messages, capability at 0x84), no MSI-X
    msi = (version() + dma_map(0x100000, 0x100000) + rd(CFG, 0x84, 0x18)
           + set_irqs(1, 0x24, 0, 4, nfds=4) + wr(CFG, 0x04, struct.pack("<H", 6))
           + wr(0, 0x120, struct.pack("<I", 1)) + rd(CFG, 0x98, 4)              # pending while MSI is off
           + wr(CFG, 0x86, struct.pack("<H", 0x21)) + wr(0, 0x120, struct.pack("<I", 3))   # on, 4 messages
           + wr(CFG, 0x94, struct.pack("<I", 4)) + wr(0, 0x120, struct.pack("<I", 2)) + rd(CFG, 0x98, 4)
           + wr(CFG, 0x94, struct.pack("<I", 0))                                    # per-vector mask
           + set_irqs(1, 0x09, 0, 1) + wr(0, 0x120, struct.pack("<I", 0)) + set_irqs(1, 0x11, 0, 1)
           + wr(CFG, 0x86, struct.pack("<H", 0x01)) + wr(0, 0x120, struct.pack("<I", 3))   # one message: aliased
           + set_irqs(1, 0x21, 0, 0) + wr(0, 0x120, struct.pack("<I", 1)) + msg(RESET))
    while len(msi) % 4 != 2:
        msi += b"\0"
    s["msi"] = msi
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
