"""IPv4 packets (RFC 791): header with options, header checksum, payload.

Derived fields are not stored: :meth:`IPv4Packet.encode` computes version/IHL, total length and
the header checksum. :meth:`IPv4Packet.decode` reads ``total length`` bytes and ignores what
follows (Ethernet padding). Options are kept as raw bytes, so a round trip is exact.
Reassembly is not done here: a fragment decodes as a packet whose payload is the fragment data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address

from router.wire.checksum import internet_checksum
from router.wire.constants import IPPROTO_IPIP, IPPROTO_MH
from router.wire.errors import (
    ChecksumError,
    EncodeError,
    FieldValueError,
    LengthError,
    TruncatedError,
    check_uint,
    need,
)

_HEADER = struct.Struct("!BBHHHBBH4s4s")

MIN_HEADER_SIZE = _HEADER.size  # 20
MAX_OPTIONS_SIZE = 40  # IHL is 4 bits: at most 15 words of header
MAX_TOTAL_LENGTH = 0xFFFF


class IPProto(IntEnum):
    """Protocol numbers the appliance meets (IANA "Assigned Internet Protocol Numbers")."""

    ICMP = 1
    IGMP = 2
    IPV4 = IPPROTO_IPIP  # IPv4 in IPv6: the DMPA-DLMAP tunnel (RFC 2473 section 5)
    TCP = 6
    UDP = 17
    IPV6 = 41
    GRE = 47
    ESP = 50
    AH = 51
    ICMPV6 = 58
    NONE = 59
    MH = IPPROTO_MH  # Mobility Header (RFC 6275 section 6.1.1)


_PROTOS: dict[int, IPProto] = {m.value: m for m in IPProto}


class IPv4Flags(IntFlag):
    """The 3-bit flags field (RFC 791 section 3.1); bit 0 is reserved and "must be zero"."""

    MF = 0x1
    DF = 0x2
    RESERVED = 0x4


NO_FLAGS = IPv4Flags(0)


@dataclass(frozen=True, slots=True)
class IPv4Packet:
    """An IPv4 packet. ``fragment_offset`` counts 8-octet units; ``tos`` is DSCP(6) + ECN(2).

    ``protocol`` is an :class:`IPProto` when known, else a plain int.
    """

    src: IPv4Address
    dst: IPv4Address
    protocol: int
    payload: bytes = b""
    ttl: int = 64
    tos: int = 0
    identification: int = 0
    flags: IPv4Flags = NO_FLAGS
    fragment_offset: int = 0
    options: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.protocol, 8, "ipv4.protocol")
        check_uint(self.ttl, 8, "ipv4.ttl")
        check_uint(self.tos, 8, "ipv4.tos")
        check_uint(self.identification, 16, "ipv4.identification")
        check_uint(self.flags, 3, "ipv4.flags")
        check_uint(self.fragment_offset, 13, "ipv4.fragment_offset")
        if not isinstance(self.options, bytes) or not isinstance(self.payload, bytes):
            raise EncodeError("ipv4.options and ipv4.payload must be bytes")
        if len(self.options) % 4 or len(self.options) > MAX_OPTIONS_SIZE:
            raise EncodeError(f"ipv4.options of {len(self.options)} bytes: not 4n and <= 40")
        if self.total_length > MAX_TOTAL_LENGTH:
            raise EncodeError(f"ipv4 total length {self.total_length} exceeds 65535")

    @property
    def header_length(self) -> int:
        return MIN_HEADER_SIZE + len(self.options)

    @property
    def total_length(self) -> int:
        return self.header_length + len(self.payload)

    @property
    def dscp(self) -> int:
        return self.tos >> 2

    @property
    def ecn(self) -> int:
        return self.tos & 0x3

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags & IPv4Flags.DF)

    @property
    def is_fragment(self) -> bool:
        """True for every fragment, the first one included (MF set or a non-zero offset)."""
        return bool(self.flags & IPv4Flags.MF) or self.fragment_offset != 0

    def encode(self) -> bytes:
        hlen = self.header_length
        header = bytearray(
            _HEADER.pack(
                0x40 | (hlen >> 2),
                self.tos,
                hlen + len(self.payload),
                self.identification,
                (self.flags << 13) | self.fragment_offset,
                self.ttl,
                self.protocol,
                0,
                self.src.packed,
                self.dst.packed,
            )
        )
        header += self.options
        struct.pack_into("!H", header, 10, internet_checksum(header))
        return bytes(header) + self.payload

    @classmethod
    def decode(
        cls,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        verify_checksum: bool = True,
    ) -> IPv4Packet:
        """Decode the packet at ``offset``; bytes after its total length are ignored."""
        n = len(data)
        need(n, offset, MIN_HEADER_SIZE, "ipv4.header")
        (vihl, tos, total, ident, frag, ttl, proto, _, src, dst) = _HEADER.unpack_from(data, offset)
        if vihl >> 4 != 4:
            raise FieldValueError(f"version {vihl >> 4}", field="ipv4.version", offset=offset)
        hlen = (vihl & 0x0F) * 4
        if hlen < MIN_HEADER_SIZE:
            # RFC 791 section 3.1: "the minimum value for a correct header is 5".
            raise LengthError(f"IHL {hlen // 4} below 5", field="ipv4.ihl", offset=offset)
        if total < hlen:
            raise LengthError(
                f"total length {total} below the header length {hlen}",
                field="ipv4.total_length",
                offset=offset + 2,
            )
        if offset + total > n:
            raise TruncatedError(
                f"total length {total}, {n - offset} bytes present",
                field="ipv4.total_length",
                offset=offset + 2,
            )
        if verify_checksum and internet_checksum(data[offset : offset + hlen]) != 0:
            raise ChecksumError(
                "header checksum does not verify", field="ipv4.checksum", offset=offset + 10
            )
        return cls(
            src=IPv4Address(src),
            dst=IPv4Address(dst),
            protocol=_PROTOS.get(proto, proto),
            payload=bytes(data[offset + hlen : offset + total]),
            ttl=ttl,
            tos=tos,
            identification=ident,
            flags=IPv4Flags(frag >> 13),
            fragment_offset=frag & 0x1FFF,
            options=bytes(data[offset + MIN_HEADER_SIZE : offset + hlen]),
        )
