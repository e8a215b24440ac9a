"""The Internet checksum (RFC 1071) and the pseudo-headers that feed it.

Used by IPv4 (header checksum), UDP and ICMPv4, and the Mobility Header (RFC 6275 section
6.1.1: the IPv6 pseudo-header of RFC 8200 section 8.1 with Next Header 135).
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

_PSEUDO4 = struct.Struct("!4s4sxBH")
_PSEUDO6 = struct.Struct("!16s16sI3xB")


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """16-bit one's complement sum of ``data`` (odd length padded with a zero byte).

    Since 2^16 = 1 (mod 0xFFFF), the sum of the 16-bit words equals the whole buffer read as one
    big-endian integer, modulo 0xFFFF (RFC 1071 section 2(B), "byte order independence" and
    deferred carries taken to the limit); a non-zero sum that is a multiple of 0xFFFF folds to
    0xFFFF, not 0. One C-level conversion instead of a Python loop over words.
    """
    b = bytes(data)
    if len(b) % 2:
        b += b"\x00"
    value = int.from_bytes(b, "big") + initial
    if value == 0:
        return 0
    folded = value % 0xFFFF
    return folded or 0xFFFF


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The checksum to store: the one's complement of the one's complement sum."""
    return (~ones_complement_sum(data, initial)) & 0xFFFF


def pseudo_header_v4(src: IPv4Address, dst: IPv4Address, proto: int, length: int) -> bytes:
    """RFC 768 / RFC 793 pseudo-header for UDP and TCP over IPv4."""
    return _PSEUDO4.pack(src.packed, dst.packed, proto, length)


def pseudo_header_v6(src: IPv6Address, dst: IPv6Address, next_header: int, length: int) -> bytes:
    """RFC 8200 section 8.1 upper-layer pseudo-header."""
    return _PSEUDO6.pack(src.packed, dst.packed, length, next_header)
