"""Records the frames carrying a forged packet's marker, for the kernel tier's equivalence test:
``python -m tests.netns.children.marker_capture IFNAME MARKER``. Prints ``ready``; on each
line of stdin prints how many marked frames it has so far; when stdin closes (or says
``stop``) prints them all as one JSON list of ``[word, hex]`` (word: what follows the marker)
in arrival order. What the host itself sends is left out. An ICMP error quoting a packet with
IP ID 0x4exx (which quotes 8 bytes of its payload only, not the marker) is recorded as
``icmp<type>.<code>:<quoted source port>``."""

from __future__ import annotations

import json
import select
import socket
import sys

ETH_P_ALL = 0x0003


def _quoted(frame: bytes) -> str:
    """``icmp<type>.<code>:<port>`` for an IPv4 ICMP error quoting one of the test's packets."""
    if len(frame) < 14 + 20 + 8 + 28 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return ""
    ihl = (frame[14] & 15) * 4
    icmp = 14 + ihl
    if frame[icmp] not in (3, 11) or len(frame) < icmp + 8 + 28:
        return ""
    inner = icmp + 8
    if frame[inner + 4] != 0x4E:
        return ""
    port = int.from_bytes(frame[inner + 20 : inner + 22], "big")
    return f"icmp{frame[icmp]}.{frame[icmp + 1]}:{port}"


def main(argv: list[str]) -> None:
    marker = argv[1].encode()
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((argv[0], 0))
    sock.setblocking(False)
    seen: list[tuple[str, str]] = []
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select([sock, sys.stdin], [], [], 1.0)
        while True:
            try:
                frame, address = sock.recvfrom(65535)
            except BlockingIOError:
                break
            if address[2] == socket.PACKET_OUTGOING:
                continue
            at = frame.find(marker)
            quoted = _quoted(frame)
            if quoted:
                seen.append((quoted, frame.hex()))
            elif at >= 0:
                tail = frame[at + len(marker) : at + len(marker) + 24]
                seen.append((tail.split(b";")[0].decode("ascii", "replace"), frame.hex()))
        if sys.stdin in ready:
            line = sys.stdin.readline()
            if not line or line.strip() == "stop":
                break
            print(len(seen), flush=True)
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
