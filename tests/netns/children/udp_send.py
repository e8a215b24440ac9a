"""One UDP datagram: ``python -m tests.netns.children.udp_send ADDRESS PORT TEXT`` (from the
namespace it runs in, e.g. the CN's)."""

from __future__ import annotations

import socket
import sys


def main(argv: list[str]) -> None:
    address, port, text = argv[0], int(argv[1]), argv[2]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(text.encode(), (address, port))


if __name__ == "__main__":
    main(sys.argv[1:])
