"""IPv6 Neighbor Discovery for the DMPA's access links (RFC 4861) and the addresses it uses.

The DMPA's router address on every access link is the link-local address derived from the
domain's shared pseudo-MAC (modified EUI-64, RFC 4291 appendix A), so it is the same on every
DMPA: an MS's default router does not change at a handover (RFC 5213 section 6.8).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv6Address, IPv6Network

from router.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_v6
from router.wire.errors import ChecksumError, FieldValueError, LengthError, need
from router.wire.ethernet import MacAddress

_LINK_LOCAL_PREFIX = 0xFE80 << 112


def interface_id_from_mac(mac: MacAddress) -> int:
    """The 64-bit modified EUI-64 interface identifier of ``mac`` (RFC 4291 appendix A)."""
    raw = mac.packed
    eui = bytes((raw[0] ^ 0x02,)) + raw[1:3] + b"\xff\xfe" + raw[3:6]
    return int.from_bytes(eui, "big")


def link_local_from_mac(mac: MacAddress) -> IPv6Address:
    """fe80::/64 plus the modified EUI-64 of ``mac``."""
    return IPv6Address(_LINK_LOCAL_PREFIX | interface_id_from_mac(mac))


# --- IPv6 (RFC 8200) and ICMPv6 Neighbor Discovery (RFC 4861) -------------------------------

IPPROTO_ICMPV6 = 58
#: RFC 4861 6.1.1 / 7.1.1: ND messages are sent and accepted with hop limit 255 only.
ND_HOP_LIMIT = 255
ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")
UNSPECIFIED6 = IPv6Address("::")
_IP6 = struct.Struct("!IHBB16s16s")  # version/class/flow, payload length, next header, hops
_ICMP6 = struct.Struct("!BBH")  # type, code, checksum


class NDType(IntEnum):
    """ICMPv6 types of Neighbor Discovery (RFC 4861 section 4)."""

    ROUTER_SOLICITATION = 133
    ROUTER_ADVERTISEMENT = 134
    NEIGHBOR_SOLICITATION = 135
    NEIGHBOR_ADVERTISEMENT = 136


class NDOption(IntEnum):
    """ND option types (RFC 4861 section 4.6)."""

    SOURCE_LINK_LAYER_ADDRESS = 1
    TARGET_LINK_LAYER_ADDRESS = 2
    PREFIX_INFORMATION = 3
    MTU = 5


@dataclass(frozen=True, slots=True)
class IPv6Packet:
    """An IPv6 header without extension headers, and what follows it."""

    src: IPv6Address
    dst: IPv6Address
    next_header: int
    hop_limit: int
    payload: bytes
    traffic_class: int = 0
    flow_label: int = 0

    def encode(self) -> bytes:
        first = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        return (
            _IP6.pack(
                first,
                len(self.payload),
                self.next_header,
                self.hop_limit,
                self.src.packed,
                self.dst.packed,
            )
            + self.payload
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> IPv6Packet:
        need(len(data), 0, _IP6.size, "ipv6.header")
        first, length, next_header, hop_limit, src, dst = _IP6.unpack_from(data)
        if first >> 28 != 6:
            raise FieldValueError("not IPv6", field="ipv6.version", offset=0)
        if _IP6.size + length > len(data):
            raise LengthError("payload length past the buffer", field="ipv6.length", offset=4)
        return cls(
            IPv6Address(src),
            IPv6Address(dst),
            next_header,
            hop_limit,
            bytes(data[_IP6.size : _IP6.size + length]),
            (first >> 20) & 0xFF,
            first & 0xFFFFF,
        )


@dataclass(frozen=True, slots=True)
class PrefixInformation:
    """Prefix Information option (RFC 4861 section 4.6.2)."""

    prefix: IPv6Network
    on_link: bool = True
    autonomous: bool = True
    valid_lifetime: int = 0xFFFFFFFF
    preferred_lifetime: int = 0xFFFFFFFF

    def encode(self) -> bytes:
        flags = (0x80 if self.on_link else 0) | (0x40 if self.autonomous else 0)
        return _PIO.pack(
            NDOption.PREFIX_INFORMATION,
            4,
            self.prefix.prefixlen,
            flags,
            self.valid_lifetime,
            self.preferred_lifetime,
            self.prefix.network_address.packed,
        )


_PIO = struct.Struct("!BBBBII4x16s")
_RA = struct.Struct("!BBHII")  # cur hop limit, M|O, router lifetime, reachable, retrans
_MTU = struct.Struct("!BBxxI")


@dataclass(frozen=True, slots=True)
class RouterSolicitation:
    source_lla: MacAddress | None = None

    def body(self) -> bytes:
        out = bytes(4)
        if self.source_lla is not None:
            out += _lla_option(NDOption.SOURCE_LINK_LAYER_ADDRESS, self.source_lla)
        return out


@dataclass(frozen=True, slots=True)
class RouterAdvertisement:
    """RFC 4861 section 4.2, with its Source Link-layer Address, MTU and Prefix options."""

    router_lifetime: int
    prefixes: tuple[PrefixInformation, ...] = ()
    source_lla: MacAddress | None = None
    mtu: int | None = None
    cur_hop_limit: int = 64
    managed: bool = False
    other: bool = False
    reachable_time: int = 0
    retrans_timer: int = 0

    def body(self) -> bytes:
        flags = (0x80 if self.managed else 0) | (0x40 if self.other else 0)
        out = _RA.pack(
            self.cur_hop_limit,
            flags,
            self.router_lifetime,
            self.reachable_time,
            self.retrans_timer,
        )
        if self.source_lla is not None:
            out += _lla_option(NDOption.SOURCE_LINK_LAYER_ADDRESS, self.source_lla)
        if self.mtu is not None:
            out += _MTU.pack(NDOption.MTU, 1, self.mtu)
        for prefix in self.prefixes:
            out += prefix.encode()
        return out


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    target: IPv6Address
    source_lla: MacAddress | None = None

    def body(self) -> bytes:
        out = bytes(4) + self.target.packed
        if self.source_lla is not None:
            out += _lla_option(NDOption.SOURCE_LINK_LAYER_ADDRESS, self.source_lla)
        return out


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """RFC 4861 section 4.4: R(outer), S(olicited), O(verride), and the Target LLA option."""

    target: IPv6Address
    router: bool
    solicited: bool
    override: bool = True
    target_lla: MacAddress | None = None

    def body(self) -> bytes:
        flags = (
            (0x80 if self.router else 0)
            | (0x40 if self.solicited else 0)
            | (0x20 if self.override else 0)
        )
        out = bytes((flags, 0, 0, 0)) + self.target.packed
        if self.target_lla is not None:
            out += _lla_option(NDOption.TARGET_LINK_LAYER_ADDRESS, self.target_lla)
        return out


NDMessage = RouterSolicitation | RouterAdvertisement | NeighborSolicitation | NeighborAdvertisement


def _lla_option(kind: int, mac: MacAddress) -> bytes:
    return bytes((kind, 1)) + mac.packed


_TYPES = {
    RouterSolicitation: NDType.ROUTER_SOLICITATION,
    RouterAdvertisement: NDType.ROUTER_ADVERTISEMENT,
    NeighborSolicitation: NDType.NEIGHBOR_SOLICITATION,
    NeighborAdvertisement: NDType.NEIGHBOR_ADVERTISEMENT,
}


def icmpv6_packet(
    src: IPv6Address, dst: IPv6Address, message: NDMessage, hop_limit: int = ND_HOP_LIMIT
) -> bytes:
    """The whole IPv6 packet of an ND message: hop limit 255, checksum filled."""
    kind = _TYPES[type(message)]
    body = message.body()
    head = _ICMP6.pack(kind, 0, 0)
    total = len(head) + len(body)
    checksum = internet_checksum(
        head + body, ones_complement_sum(pseudo_header_v6(src, dst, IPPROTO_ICMPV6, total))
    )
    payload = _ICMP6.pack(kind, 0, checksum) + body
    return IPv6Packet(src, dst, IPPROTO_ICMPV6, hop_limit, payload).encode()


def _options(data: bytes, start: int) -> dict[int, bytes]:
    """The ND options from ``start``: type -> first occurrence's data (RFC 4861 4.6: a length
    of 0 is invalid, the message is dropped)."""
    found: dict[int, bytes] = {}
    pos = start
    while pos < len(data):
        need(len(data), pos, 2, "nd.option")
        kind, units = data[pos], data[pos + 1]
        if units == 0:
            raise LengthError("option length 0", field="nd.option.length", offset=pos + 1)
        end = pos + units * 8
        if end > len(data):
            raise LengthError("option past the message", field="nd.option.length", offset=pos)
        found.setdefault(kind, data[pos + 2 : end])
        pos = end
    return found


def _lla(options: dict[int, bytes], kind: int) -> MacAddress | None:
    data = options.get(kind)
    return MacAddress(data[:6]) if data is not None and len(data) >= 6 else None


def decode_nd(packet: IPv6Packet) -> NDMessage | None:
    """The ND message a host sent, validated as RFC 4861 6.1.1 / 7.1.1 say (hop limit 255,
    checksum, code 0, lengths); None when ``packet`` is ICMPv6 but not RS/RA/NS/NA.

    Raises :class:`DecodeError` for a malformed one (counted and dropped by the caller)."""
    data = packet.payload
    if packet.next_header != IPPROTO_ICMPV6:
        return None
    need(len(data), 0, _ICMP6.size, "icmpv6.header")
    kind, code, _ = _ICMP6.unpack_from(data)
    if kind not in (133, 134, 135, 136):
        return None
    total = ones_complement_sum(
        data, ones_complement_sum(pseudo_header_v6(packet.src, packet.dst, 58, len(data)))
    )
    if total != 0xFFFF:
        raise ChecksumError("bad ICMPv6 checksum", field="icmpv6.checksum", offset=2)
    if packet.hop_limit != ND_HOP_LIMIT or code != 0:
        raise FieldValueError("ND needs hop limit 255, code 0", field="icmpv6.code", offset=1)
    if kind == NDType.ROUTER_SOLICITATION:
        need(len(data), 0, 8, "nd.rs")
        return RouterSolicitation(_lla(_options(data, 8), NDOption.SOURCE_LINK_LAYER_ADDRESS))
    if kind == NDType.NEIGHBOR_SOLICITATION:
        need(len(data), 0, 24, "nd.ns")
        target = IPv6Address(bytes(data[8:24]))
        if target.is_multicast:
            raise FieldValueError("multicast target", field="nd.ns.target", offset=8)
        options = _options(data, 24)
        return NeighborSolicitation(target, _lla(options, NDOption.SOURCE_LINK_LAYER_ADDRESS))
    if kind == NDType.NEIGHBOR_ADVERTISEMENT:
        need(len(data), 0, 24, "nd.na")
        flags = data[4]
        options = _options(data, 24)
        return NeighborAdvertisement(
            IPv6Address(bytes(data[8:24])),
            bool(flags & 0x80),
            bool(flags & 0x40),
            bool(flags & 0x20),
            _lla(options, NDOption.TARGET_LINK_LAYER_ADDRESS),
        )
    need(len(data), 0, 16, "nd.ra")
    hops, flags, lifetime, reachable, retrans = _RA.unpack_from(data, 4)
    options = _options(data, 16)
    mtu = options.get(NDOption.MTU)
    pio = options.get(NDOption.PREFIX_INFORMATION)
    prefixes: tuple[PrefixInformation, ...] = ()
    if pio is not None and len(pio) == 30:
        length, pflags, valid, preferred, raw = struct.unpack("!BBII4x16s", pio)
        network = IPv6Network((IPv6Address(raw), min(length, 128)), strict=False)
        prefixes = (
            PrefixInformation(network, bool(pflags & 0x80), bool(pflags & 0x40), valid, preferred),
        )
    return RouterAdvertisement(
        lifetime,
        prefixes,
        _lla(options, NDOption.SOURCE_LINK_LAYER_ADDRESS),
        struct.unpack("!2xI", mtu)[0] if mtu is not None and len(mtu) == 6 else None,
        hops,
        bool(flags & 0x80),
        bool(flags & 0x40),
        reachable,
        retrans,
    )
