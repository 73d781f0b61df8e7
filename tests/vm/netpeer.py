# SPDX-License-Identifier: LGPL-2.1-or-later
"""The host end of the guest's TCP transfers (run inside the case's network
namespace): python3 netpeer.py ADDR PORT.

Per connection, one request line:
  PUT <n>   the client sends n bytes; the reply is their sha256 (hex, newline)
  GET <n>   the reply is the sha256 of n random bytes (hex, newline), then
            those bytes
and the connection closes.  Each transfer is logged on stdout.
"""
import hashlib
import os
import socket
import sys
import threading

MAX_BYTES = 1 << 30


def serve(conn, peer):
    with conn, conn.makefile("rb") as rf:
        words = rf.readline(100).decode(errors="replace").split()
        if len(words) != 2 or words[0] not in ("PUT", "GET") or not words[1].isdigit() \
                or int(words[1]) > MAX_BYTES:
            print(f"{peer}: bad request {words!r}", flush=True)
            return
        n = int(words[1])
        h = hashlib.sha256()
        if words[0] == "PUT":
            left = n
            while left:
                data = rf.read(min(left, 1 << 16))
                if not data:
                    break
                h.update(data)
                left -= len(data)
            conn.sendall(f"{h.hexdigest()}\n".encode())
            print(f"{peer}: PUT {n - left}/{n} bytes sha256 {h.hexdigest()}", flush=True)
        else:
            data = os.urandom(n)
            h.update(data)
            conn.sendall(f"{h.hexdigest()}\n".encode() + data)
            print(f"{peer}: GET {n} bytes sha256 {h.hexdigest()}", flush=True)


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(16)
    print(f"listening on {addr}:{port}", flush=True)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()


if __name__ == "__main__":
    main()
