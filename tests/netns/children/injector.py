"""A packet socket on an interface, for ``tests/netns/forge.py``: ``python -m
tests.netns.children.injector IFNAME``. Prints ``ready``; then for each stdin line writes the
hex frames on it (space-separated) and prints how many the kernel took. Ends at stdin EOF."""

from __future__ import annotations

import socket
import sys


def main(argv: list[str]) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((argv[0], 0))
    print("ready", flush=True)
    for line in sys.stdin:
        sent = 0
        for frame in line.split():
            try:
                sock.send(bytes.fromhex(frame))
                sent += 1
            except OSError:
                pass  # a full queue under a flood: the count says so
        print(sent, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
