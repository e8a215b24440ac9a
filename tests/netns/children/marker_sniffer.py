"""Counts frames carrying a forged packet's marker, for ``tests/netns/forge.py``:
``python -m tests.netns.children.marker_sniffer IFNAME MARKER``. Prints ``ready``; counts the
frames received on ``IFNAME`` that carry ``MARKER``, by the word after it, until stdin has a
line or closes; then prints the counts as one JSON object."""

from __future__ import annotations

import json
import select
import socket
import sys

ETH_P_ALL = 0x0003


def main(argv: list[str]) -> None:
    marker = argv[1].encode()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((argv[0], 0))
    sock.setblocking(False)
    seen: dict[str, int] = {}
    print("ready", flush=True)
    done = False
    while not done:
        ready, _, _ = select.select([sock, sys.stdin], [], [], 1.0)
        if sys.stdin in ready:
            done = True
        while True:
            try:
                frame, address = sock.recvfrom(65535)
            except BlockingIOError:
                break
            if address[2] == socket.PACKET_OUTGOING:
                continue  # what the host itself sends (an ICMP error quoting a marker) is not news
            at = frame.find(marker)
            if at >= 0:
                tail = frame[at + len(marker) : at + len(marker) + 24]
                word = tail.split(b";")[0].decode("ascii", "replace")
                seen[word] = seen.get(word, 0) + 1
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
