"""The ICMPv6 errors the tunnel entry owes for a dual-stack MS's IPv6 (RFC 4443), the twin of
:mod:`router.services.ipv4_slowpath`'s ICMP errors.

The fastpath punts an inner IPv6 packet it does not forward as ``frag_needed`` (larger than the
tunnel MTU: IPv6 routers never fragment, RFC 8200 section 5) or ``ttl_expired`` (hop limit
<= 1). The slow path answers with Packet Too Big (type 2, the MTU the tunnel takes, at least
1280) or Time Exceeded (type 3 code 0), quoting as much of the packet as fits in 1280 bytes.

RFC 4443 section 2.4(e) decides whether one is owed: none about an ICMPv6 error message (or
a Redirect), or to a source that is unspecified or multicast; none about a packet sent to a
multicast address, except a Packet Too Big. The upper layer is found behind the Hop-by-Hop,
Routing, Destination Options and (first) Fragment headers; a chain too long to follow gets no
error. Section 2.4(f) asks for a rate limit: :class:`Icmpv6Errors` keeps a token bucket per
source of the offending packets, so one host that floods does not use up the others' errors.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

from router.core.counters import Counters, Declared
from router.core.limits import Rate, TokenBuckets
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
#: RFC 4443 2.4(f): errors a second, and the burst, per source of the offending packets.
ERROR_RATE = Rate(100.0, 10)
#: Extension headers of the generic form (next header, length in 8 octets less one), and the
#: Fragment header (8 octets): skipped to find the upper layer. At most this many.
_EXTENSIONS = frozenset((0, 43, 60))
_FRAGMENT = 44
_MAX_EXTENSIONS = 8


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
    if not _may_answer(original, kind_type):
        return None
    room = MIN_MTU6 - 40 - _HEAD.size  # the error is at most the minimum MTU
    quoted = bytes(packet[: min(len(packet), 40 + len(original.payload), room)])
    body = _HEAD.pack(kind_type, code, 0, rest) + quoted
    pseudo = pseudo_header_v6(source, original.src, IPPROTO_ICMPV6, len(body))
    checksum = internet_checksum(body, ones_complement_sum(pseudo))
    body = body[:2] + checksum.to_bytes(2, "big") + body[4:]
    return IPv6Packet(source, original.src, IPPROTO_ICMPV6, HOP_LIMIT, body).encode()


def _may_answer(original: IPv6Packet, kind_type: int) -> bool:
    src, dst = original.src, original.dst
    if src.is_unspecified or src.is_multicast or src.is_loopback:
        return False
    if dst.is_multicast and kind_type != PACKET_TOO_BIG:
        return False
    upper = _upper_layer(original)
    if upper is None:
        return False  # not followed to its end: it might be an error message
    next_header, at = upper
    if next_header == IPPROTO_ICMPV6 and at < len(original.payload):
        first = original.payload[at]
        if first < 128 or first == REDIRECT:  # an error message (RFC 4443 2.1), or a Redirect
            return False
    return True


def _upper_layer(original: IPv6Packet) -> tuple[int, int] | None:
    """The upper-layer protocol and where it starts in the payload, past the extension
    headers; None when the chain goes past the packet or :data:`_MAX_EXTENSIONS` headers. A
    later fragment (offset not 0) shows no upper layer: the Fragment header's own next header
    is returned with the end of the payload."""
    payload, next_header, at = original.payload, original.next_header, 0
    for _ in range(_MAX_EXTENSIONS):
        if next_header == _FRAGMENT:
            if at + 8 > len(payload):
                return None
            if int.from_bytes(payload[at + 2 : at + 4], "big") >> 3:  # a later fragment
                return payload[at], len(payload)
            next_header, at = payload[at], at + 8
        elif next_header in _EXTENSIONS:
            if at + 2 > len(payload):
                return None
            next_header, at = payload[at], at + 8 * (payload[at + 1] + 1)
        else:
            return next_header, at
    return None


class Icmpv6Errors:
    """The ICMPv6 errors one node sends (RFC 4443), limited per source of the offending packets
    (section 2.4(f)); those owed but not sent for the limit are counted as ``limited`` in
    ``counters``."""

    def __init__(self, counters: Counters, limited: Declared, rate: Rate = ERROR_RATE) -> None:
        self.counters = counters
        self.limited = limited
        self.buckets = TokenBuckets(rate)

    def answer(
        self, kind: str, packet: bytes, source: IPv6Address, mtu: int, now: float
    ) -> bytes | None:
        """:func:`icmpv6_error`'s answer, if one is owed and the limit allows it."""
        reply = icmpv6_error(kind, packet, source, mtu)
        if reply is None:
            return None
        if not self.buckets.allow(bytes(packet[8:24]), now):  # the offending packet's source
            self.counters[self.limited] += 1
            return None
        return reply
