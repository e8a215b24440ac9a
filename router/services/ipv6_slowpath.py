"""The ICMPv6 errors the tunnel entry owes for a dual-stack MS's IPv6 (RFC 4443), the twin of
:mod:`router.services.ipv4_slowpath`'s ICMP errors.

The fastpath punts an inner IPv6 packet it does not forward as ``frag_needed`` (larger than the
tunnel MTU: IPv6 routers never fragment, RFC 8200 section 5) or ``ttl_expired`` (hop limit
<= 1). The slow path answers with Packet Too Big (type 2, the MTU the tunnel takes, at least
1280) or Time Exceeded (type 3 code 0), quoting as much of the packet as fits in 1280 bytes.

RFC 4443 section 2.4(e) decides whether one is owed: none about an ICMPv6 error message (or
a Redirect), or to a source that is unspecified or multicast; none about a packet sent to a
multicast address, except a Packet Too Big. Section 2.4(f) asks for a rate limit:
:class:`RateLimit`, a token bucket per node.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from router.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_v6
from router.wire.errors import DecodeError
from router.wire.nd import IPPROTO_ICMPV6, IPv6Packet

#: RFC 8200 section 5: every IPv6 link takes 1280 bytes.
MIN_MTU6 = 1280
PACKET_TOO_BIG = 2
TIME_EXCEEDED = 3
HOP_LIMIT_EXCEEDED = 0  # Time Exceeded code 0: hop limit exceeded in transit
REDIRECT = 137
#: Type (1 byte), code (1), checksum (2), MTU or unused (4).
_HEAD = struct.Struct("!BBHI")
#: The error's hop limit (the node's default, as the IPv4 errors' TTL).
HOP_LIMIT = 64


def icmpv6_error(kind: str, packet: bytes, source: IPv6Address, mtu: int = 0) -> bytes | None:
    """The ICMPv6 error (an IPv6 packet from ``source``) about a punted ``packet``, or None
    when none is owed.

    ``kind`` is ``"frag_needed"`` (Packet Too Big carrying ``max(mtu, 1280)``) or ``"ttl"``
    (Time Exceeded, hop limit exceeded in transit).
    """
    try:
        original = IPv6Packet.decode(packet)
    except DecodeError:
        return None
    if kind == "frag_needed":
        kind_type, code, rest = PACKET_TOO_BIG, 0, max(mtu, MIN_MTU6)
    elif kind == "ttl":
        kind_type, code, rest = TIME_EXCEEDED, HOP_LIMIT_EXCEEDED, 0
    else:
        raise ValueError(f"unknown ICMPv6 error kind {kind!r}")
    if not _may_answer(original, packet, kind_type):
        return None
    room = MIN_MTU6 - 40 - _HEAD.size  # the error is at most the minimum MTU
    quoted = bytes(packet[: min(len(packet), 40 + len(original.payload), room)])
    body = _HEAD.pack(kind_type, code, 0, rest) + quoted
    pseudo = pseudo_header_v6(source, original.src, IPPROTO_ICMPV6, len(body))
    checksum = internet_checksum(body, ones_complement_sum(pseudo))
    body = body[:2] + checksum.to_bytes(2, "big") + body[4:]
    return IPv6Packet(source, original.src, IPPROTO_ICMPV6, HOP_LIMIT, body).encode()


def _may_answer(original: IPv6Packet, packet: bytes, kind_type: int) -> bool:
    src, dst = original.src, original.dst
    if src.is_unspecified or src.is_multicast or src.is_loopback:
        return False
    if dst.is_multicast and kind_type != PACKET_TOO_BIG:
        return False
    if original.next_header == IPPROTO_ICMPV6 and original.payload:
        first = original.payload[0]
        if first < 128 or first == REDIRECT:  # an error message (RFC 4443 2.1), or a Redirect
            return False
    return True


class RateLimit:
    """A token bucket (RFC 4443 2.4(f)): ``burst`` errors at once, then ``per_second``."""

    def __init__(self, per_second: float = 100.0, burst: int = 10) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last: float | None = None
        self.limited = 0  # errors not sent for the limit

    def allow(self, now: float) -> bool:
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.per_second)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.limited += 1
        return False
