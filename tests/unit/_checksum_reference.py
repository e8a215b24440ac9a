"""From-scratch references for the link/network layer tests (kept apart from ``router.wire``).

The checksum here is written differently from :mod:`router.wire.checksum` (unpack every word at
once, fold at the end) so that a test comparing the two catches a mistake in either.
"""

from __future__ import annotations

import struct


def reference_checksum(*parts: bytes) -> int:
    """RFC 1071 Internet checksum of the concatenation of ``parts``."""
    data = b"".join(parts)
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """RFC 768 pseudo-header: source, destination, zero, protocol, UDP length."""
    return src + dst + bytes((0, proto)) + length.to_bytes(2, "big")
