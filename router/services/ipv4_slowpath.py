"""What the slow path does with the fastpath's IPv4 punts that are not a protocol's business:
fragment a packet too big for the tunnel (DF clear), or answer with the ICMP error a router owes
(DF set: fragmentation needed; TTL expired: time exceeded).

The DMPA and the DLMAP are IPv4 routers whose next hop is the tunnel, a link of MTU "tunnel
MTU" (wire-reference 6.2). A DF-clear packet larger than that is fragmented as any IPv4 router
would (RFC 791 section 3.2, RFC 1812 section 5.2.6) and each fragment is then encapsulated by
the fastpath: the tunnel exit never has to reassemble, and no IPv6 fragment is ever sent. (RFC
2473 section 7.2 describes fragmenting the outer IPv6 packet instead; both leave the MS's
traffic intact, and this keeps the fastpath's per-packet work the same for every packet.)

ICMP errors follow RFC 1812 section 4.3.2.7: none about an ICMP error, a non-initial fragment,
or a packet to or from a broadcast, multicast or unspecified address.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from router.wire.errors import DecodeError
from router.wire.icmp import IcmpType, fragmentation_needed, time_exceeded
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet

#: The smallest MTU every IPv4 link has (RFC 791): 60-byte header + 8 bytes of data.
MIN_MTU = 68
_ICMP_ERRORS = frozenset(
    {
        IcmpType.DEST_UNREACHABLE,
        IcmpType.SOURCE_QUENCH,
        IcmpType.REDIRECT,
        IcmpType.TIME_EXCEEDED,
        IcmpType.PARAMETER_PROBLEM,
    }
)


def fragment(packet: bytes, mtu: int) -> list[bytes]:
    """The fragments of ``packet`` (DF clear), each at most ``mtu`` bytes (RFC 791 section 3.2).

    Options whose copy flag is set go into every fragment, the others only into the first.
    Returns ``[]`` for a packet that must not be fragmented (DF set) or cannot be decoded.
    """
    if mtu < MIN_MTU:
        raise ValueError(f"an IPv4 MTU is at least {MIN_MTU}, not {mtu}")
    try:
        original = IPv4Packet.decode(packet)
    except DecodeError:
        return []
    if original.total_length <= mtu:
        return [packet[: original.total_length]]
    if original.dont_fragment:
        return []
    later_options = _copied_options(original.options)
    fragments = []
    data, position = original.payload, 0
    more = bool(original.flags & IPv4Flags.MF)
    options = original.options
    while position < len(data):
        room = (mtu - 20 - len(options)) // 8 * 8
        chunk = data[position : position + room]
        last = position + len(chunk) >= len(data)
        flags = IPv4Flags.MF if (not last or more) else IPv4Flags(0)
        piece = IPv4Packet(
            src=original.src,
            dst=original.dst,
            protocol=original.protocol,
            payload=chunk,
            ttl=original.ttl,
            tos=original.tos,
            identification=original.identification,
            flags=flags,
            fragment_offset=original.fragment_offset + position // 8,
            options=options,
        )
        fragments.append(piece.encode())
        position += len(chunk)
        options = later_options
    return fragments


def _copied_options(options: bytes) -> bytes:
    """The options with the copy flag (RFC 791: high bit of the type), padded to 4 bytes."""
    kept = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # End of Option List
            break
        if kind == 1:  # No Operation
            i += 1
            continue
        length = options[i + 1] if i + 1 < len(options) else 0
        if length < 2 or i + length > len(options):
            break  # malformed: copy nothing further
        if kind & 0x80:
            kept += options[i : i + length]
        i += length
    kept += bytes(-len(kept) % 4)
    return bytes(kept)


def icmp_error(kind: str, packet: bytes, source: IPv4Address, mtu: int = 0) -> bytes | None:
    """The ICMP error (as an IPv4 packet from ``source``) for a punted ``packet``, or None.

    ``kind`` is ``"frag_needed"`` (type 3 code 4 carrying ``mtu``, RFC 1191) or ``"ttl"``
    (type 11 code 0).
    """
    try:
        original = IPv4Packet.decode(packet, verify_checksum=False)
    except DecodeError:
        return None
    if not _may_answer(original):
        return None
    quoted = packet[: original.total_length]
    if kind == "frag_needed":
        message = fragmentation_needed(quoted, mtu)
    elif kind == "ttl":
        message = time_exceeded(quoted)
    else:
        raise ValueError(f"unknown ICMP error kind {kind!r}")
    reply = IPv4Packet(source, original.src, IPProto.ICMP, message.encode(), ttl=64)
    return reply.encode()


def _may_answer(packet: IPv4Packet) -> bool:
    if packet.fragment_offset != 0:
        return False
    for address in (packet.src, packet.dst):
        if address.is_multicast or address.is_unspecified or address == _BROADCAST:
            return False
    if packet.src.is_loopback:
        return False
    return not (
        packet.protocol == IPProto.ICMP and packet.payload and packet.payload[0] in _ICMP_ERRORS
    )


_BROADCAST = IPv4Address("255.255.255.255")
