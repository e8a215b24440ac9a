"""Packet helpers of the reference twin (the compiled twin's ``packet.pxi``): byte order,
checksums, and the IPv4 and IPv6 option checks. Nothing here raises on packet content."""

from __future__ import annotations

from fastpath.common import (
    ECN_CE,
    IP6_LEN,
    OPT_PAD1,
    OPT_PADN,
    OPT_TUNNEL_ENCAP_LIMIT,
    PROTO_UDP,
    Reason,
)

Buf = bytes | bytearray | memoryview  # what the packet arguments accept


def be16(b: Buf, i: int) -> int:
    return (b[i] << 8) | b[i + 1]


def be32(b: Buf, i: int) -> int:
    return (b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]


def fold(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def sum16(b: Buf) -> int:
    """The one's complement sum of ``b`` as big-endian 16-bit words (an odd last byte padded
    with zero), folded to 16 bits: 0 only when every byte is 0."""
    v = int.from_bytes(bytes(b) + b"\0" * (len(b) & 1), "big")
    return 0 if v == 0 else (v % 0xFFFF or 0xFFFF)


def checksum_ok(b: Buf, off: int, hlen: int) -> bool:
    s = sum(be16(b, off + i) for i in range(0, hlen, 2))
    return fold(s) == 0xFFFF


def incremental(cs: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')."""
    return ~fold((~cs & 0xFFFF) + (~old & 0xFFFF) + new) & 0xFFFF


def rewrite_word(out: bytearray, p: int, word_at: int, new_hi: int, new_lo: int) -> None:
    """Replace the 16-bit word at ``p + word_at`` and update the IPv4 checksum at ``p + 10``."""
    old = be16(out, p + word_at)
    new = (new_hi << 8) | new_lo
    cs = incremental(be16(out, p + 10), old, new)
    out[p + word_at] = new_hi
    out[p + word_at + 1] = new_lo
    out[p + 10] = cs >> 8
    out[p + 11] = cs & 0xFF


def decrement_ttl(out: bytearray, p: int) -> None:
    rewrite_word(out, p, 8, out[p + 8] - 1, out[p + 9])


def mark_ce(out: bytearray, p: int) -> None:
    """RFC 6040 normal mode decapsulation: outer CE over inner ECT(0)/ECT(1) becomes inner CE."""
    rewrite_word(out, p, 0, out[p], out[p + 1] | ECN_CE)


def ipv4_check(b: Buf, off: int, avail: int, exact: bool) -> tuple[int, int]:
    """Check an IPv4 header: (reason, total length). ``exact``: no trailing bytes allowed."""
    if avail < 20:
        return Reason.TRUNCATED, 0
    if b[off] >> 4 != 4:
        return Reason.BAD_VERSION, 0
    ihl = (b[off] & 0x0F) * 4
    if ihl < 20:
        return Reason.BAD_IHL, 0
    tot = be16(b, off + 2)
    if tot < ihl:
        return Reason.BAD_LENGTH, 0
    if tot > avail:
        return Reason.TRUNCATED, 0
    if exact and tot != avail:
        return Reason.BAD_LENGTH, 0
    if not checksum_ok(b, off, ihl):
        return Reason.BAD_CHECKSUM, 0
    return Reason.FORWARDED, tot


def be64(b: Buf, i: int) -> int:
    return int.from_bytes(bytes(b[i : i + 8]), "big")


def ipv6_check(b: Buf, off: int, avail: int, exact: bool) -> tuple[int, int]:
    """Check an IPv6 header: (reason, total length). ``exact``: no trailing bytes allowed."""
    if avail < IP6_LEN:
        return Reason.TRUNCATED, 0
    if b[off] >> 4 != 6:
        return Reason.BAD_VERSION, 0
    tot = IP6_LEN + be16(b, off + 4)
    if tot > avail:
        return Reason.TRUNCATED, 0
    if exact and tot != avail:
        return Reason.BAD_LENGTH, 0
    return Reason.FORWARDED, tot


def ecn6(b: Buf, off: int) -> int:
    """The ECN field of an IPv6 header (the low 2 bits of its traffic class)."""
    return (b[off + 1] >> 4) & ECN_CE


def traffic_class(b: Buf, off: int) -> int:
    return ((b[off] & 0x0F) << 4) | (b[off + 1] >> 4)


def udp_dport(b: Buf, off: int, tot: int) -> int:
    """UDP destination port of a first fragment, else -1."""
    ihl = (b[off] & 0x0F) * 4
    if b[off + 9] != PROTO_UDP or be16(b, off + 6) & 0x1FFF or ihl + 4 > tot:
        return -1
    return be16(b, off + ihl + 2)


def options_ok(pkt: Buf, i: int, end: int) -> bool:
    """The options of a Destination Options header in ``pkt[i:end]``: only padding and the
    tunnel encapsulation limit (RFC 2473 4.1.1), or options we may skip."""
    while i < end:
        t = pkt[i]
        if t == OPT_PAD1:
            i += 1
            continue
        if i + 2 > end or i + 2 + pkt[i + 1] > end:
            return False
        if t == OPT_TUNNEL_ENCAP_LIMIT:
            if pkt[i + 1] != 1:
                return False
        elif t != OPT_PADN and t >> 6:
            return False  # RFC 8200 4.2: the top two bits say "do not skip"
        i += 2 + pkt[i + 1]
    return True
