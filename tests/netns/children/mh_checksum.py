"""Inside a namespace of ``tests/netns/test_mh_kernel_checksum.py``: send each Mobility Header
given (hex, a JSON list in ``argv[1]``) and a corrupted copy to ``::1`` with the kernel's own
checksumming off, and report which ones a verifying MH socket received, byte for byte."""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

IPV6_CHECKSUM = 7
IPPROTO_MH = 135


def main(argv: list[str]) -> None:
    messages = [bytes.fromhex(h) for h in json.loads(argv[0])]
    rx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
    rx.settimeout(0.5)
    tx = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
    tx.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, -1)
    report: dict[str, Any] = {
        "verify_offset": rx.getsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM),
        "results": [],
    }
    for mh in messages:
        bad = bytearray(mh)
        bad[4] ^= 0x5A
        got: list[str] = []
        for payload in (bytes(bad), mh):
            tx.sendto(payload, ("::1", 0))
        for _ in range(2):  # at most the two sent; a timeout is the dropped one
            try:
                got.append(rx.recv(4096).hex())
            except TimeoutError:
                break
        report["results"].append(got)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
