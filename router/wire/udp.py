"""UDP over IPv4 (RFC 768), with the pseudo-header checksum.

The checksum depends on the IPv4 addresses around the datagram, so they are arguments of
:meth:`UdpDatagram.encode` and :meth:`UdpDatagram.decode` rather than fields. Length and checksum
are derived, not stored. Over IPv4 a zero checksum means "not computed" (RFC 768), so a computed
zero is sent as 0xFFFF and a received zero is accepted without verification.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from router.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_v4
from router.wire.errors import (
    ChecksumError,
    EncodeError,
    LengthError,
    TruncatedError,
    check_uint,
    need,
)

_HEADER = struct.Struct("!HHHH")

HEADER_SIZE = _HEADER.size  # 8
MAX_LENGTH = 0xFFFF
PROTO_UDP = 17  # IANA protocol number, the pseudo-header's protocol field


def _checksum(src: IPv4Address, dst: IPv4Address, segment: bytes | bytearray | memoryview) -> int:
    """The Internet checksum of ``segment`` preceded by the IPv4 pseudo-header."""
    pseudo = pseudo_header_v4(src, dst, PROTO_UDP, len(segment))
    return internet_checksum(segment, ones_complement_sum(pseudo))


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """A UDP datagram: ports and payload."""

    src_port: int
    dst_port: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.src_port, 16, "udp.src_port")
        check_uint(self.dst_port, 16, "udp.dst_port")
        if not isinstance(self.payload, bytes):
            raise EncodeError("udp.payload must be bytes")
        if self.length > MAX_LENGTH:
            raise EncodeError(f"udp length {self.length} exceeds 65535")

    @property
    def length(self) -> int:
        """The Length field: header plus payload."""
        return HEADER_SIZE + len(self.payload)

    def encode(self, src: IPv4Address, dst: IPv4Address, *, checksum: bool = True) -> bytes:
        """The datagram sent from ``src`` to ``dst``; ``checksum=False`` sends zero (none)."""
        segment = _HEADER.pack(self.src_port, self.dst_port, self.length, 0) + self.payload
        if not checksum:
            return segment
        # RFC 768: "If the computed checksum is zero, it is transmitted as all ones".
        value = _checksum(src, dst, segment) or 0xFFFF
        return segment[:6] + value.to_bytes(2, "big") + segment[8:]

    @classmethod
    def decode(
        cls,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        src: IPv4Address | None = None,
        dst: IPv4Address | None = None,
    ) -> UdpDatagram:
        """Decode the datagram at ``offset``; bytes after its Length are ignored.

        The checksum is verified when ``src`` and ``dst`` are both given and it is not zero.
        """
        if (src is None) != (dst is None):
            raise TypeError("pass both src and dst to verify the checksum, or neither")
        n = len(data)
        need(n, offset, HEADER_SIZE, "udp.header")
        src_port, dst_port, length, checksum = _HEADER.unpack_from(data, offset)
        if length < HEADER_SIZE:
            raise LengthError(f"length {length} below 8", field="udp.length", offset=offset + 4)
        if offset + length > n:
            raise TruncatedError(
                f"length {length}, {n - offset} bytes present",
                field="udp.length",
                offset=offset + 4,
            )
        segment = data[offset : offset + length]
        if src is not None and dst is not None and checksum != 0 and _checksum(src, dst, segment):
            raise ChecksumError("checksum does not verify", field="udp.checksum", offset=offset + 6)
        return cls(src_port, dst_port, bytes(segment[HEADER_SIZE:]))
