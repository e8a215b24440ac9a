"""ICMP for IPv4 (RFC 792): the generic message, the queries a gateway answers (Echo,
Timestamp, Address Mask), and the two errors a router must send.

Every ICMP message is type, code, checksum, a 4-byte "rest of header" whose meaning depends on the
type, and a body. :class:`IcmpMessage` holds that generic form; :class:`IcmpEcho`,
:class:`IcmpTimestamp` (RFC 792) and :class:`IcmpAddressMask` (RFC 950) are the typed views of the
queries and their replies, whose "rest" is an identifier and a sequence number. The error
builders quote the offending datagram as RFC 792 asks: its "internet header plus the first 64
bits" of its data.

A message has no length field: it runs to the end of the buffer, so decode from the IPv4 payload
(or slice a memoryview to the IPv4 total length and pass the offset, to keep offsets absolute).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

from router.wire.checksum import internet_checksum
from router.wire.errors import ChecksumError, EncodeError, FieldValueError, check_uint, need

_HEADER = struct.Struct("!BBH4s")
_ECHO_REST = struct.Struct("!HH")  # identifier, sequence number (every query and its reply)
_TIMESTAMPS = struct.Struct("!III")  # originate, receive, transmit
_MASK = struct.Struct("!4s")
_MTU_REST = struct.Struct("!HH")  # unused, Next-Hop MTU

HEADER_SIZE = _HEADER.size  # 8
QUOTED_DATA_SIZE = 8  # RFC 792: "the first 64 bits of the original datagram's data"


class IcmpType(IntEnum):
    """ICMPv4 types (RFC 792; IANA "ICMP Type Numbers")."""

    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12
    TIMESTAMP = 13  # RFC 792
    TIMESTAMP_REPLY = 14
    ADDRESS_MASK_REQUEST = 17  # RFC 950
    ADDRESS_MASK_REPLY = 18


#: RFC 792: a timestamp is "milliseconds since midnight UT", 32 bits.
MS_PER_DAY = 86_400_000
#: The mask field of an Address Mask Request (RFC 950: zero).
NO_MASK = IPv4Address(0)


class UnreachableCode(IntEnum):
    """Destination Unreachable codes (RFC 792, RFC 1191, RFC 1812 section 5.2.7.1)."""

    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAGMENTATION_NEEDED = 4  # "fragmentation needed and DF set"; carries the next-hop MTU
    SOURCE_ROUTE_FAILED = 5
    ADMIN_PROHIBITED = 13


class TimeExceededCode(IntEnum):
    """Time Exceeded codes (RFC 792)."""

    TTL_EXCEEDED = 0
    REASSEMBLY_EXCEEDED = 1


_TYPES: dict[int, IcmpType] = {m.value: m for m in IcmpType}


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    """Any ICMPv4 message. ``rest`` is the 4 bytes after the checksum; the checksum is derived."""

    type: int
    code: int
    rest: bytes = bytes(4)
    payload: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.type, 8, "icmp.type")
        check_uint(self.code, 8, "icmp.code")
        if not isinstance(self.rest, bytes) or len(self.rest) != 4:
            raise EncodeError(f"icmp.rest must be 4 bytes, not {self.rest!r}")
        if not isinstance(self.payload, bytes):
            raise EncodeError("icmp.payload must be bytes")

    @property
    def next_hop_mtu(self) -> int:
        """RFC 1191 section 4: the low 16 bits of ``rest`` (meaningful for type 3 code 4)."""
        return int.from_bytes(self.rest[2:4], "big")

    def encode(self) -> bytes:
        body = _HEADER.pack(self.type, self.code, 0, self.rest) + self.payload
        checksum = internet_checksum(body)
        return body[:2] + checksum.to_bytes(2, "big") + body[4:]

    @classmethod
    def decode(
        cls,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        verify_checksum: bool = True,
    ) -> IcmpMessage:
        """Decode the message from ``offset`` to the end of ``data``."""
        need(len(data), offset, HEADER_SIZE, "icmp.header")
        icmp_type, code, _, rest = _HEADER.unpack_from(data, offset)
        # RFC 792: the checksum covers the whole ICMP message, "starting with the ICMP Type".
        if verify_checksum and internet_checksum(data[offset:]) != 0:
            raise ChecksumError(
                "checksum does not verify", field="icmp.checksum", offset=offset + 2
            )
        return cls(
            type=_TYPES.get(icmp_type, icmp_type),
            code=code,
            rest=rest,
            payload=bytes(data[offset + HEADER_SIZE :]),
        )


@dataclass(frozen=True, slots=True)
class IcmpEcho:
    """Echo Request (``reply=False``, type 8) or Echo Reply (``reply=True``, type 0), code 0."""

    identifier: int
    sequence: int
    data: bytes = b""
    reply: bool = False

    def __post_init__(self) -> None:
        check_uint(self.identifier, 16, "icmp.echo.identifier")
        check_uint(self.sequence, 16, "icmp.echo.sequence")
        if not isinstance(self.data, bytes) or not isinstance(self.reply, bool):
            raise EncodeError("icmp.echo.data must be bytes and reply a bool")

    def make_reply(self) -> IcmpEcho:
        """RFC 792: the reply returns the identifier, sequence number and data unchanged."""
        return IcmpEcho(self.identifier, self.sequence, self.data, reply=True)

    def to_message(self) -> IcmpMessage:
        icmp_type = IcmpType.ECHO_REPLY if self.reply else IcmpType.ECHO_REQUEST
        return IcmpMessage(icmp_type, 0, _ECHO_REST.pack(self.identifier, self.sequence), self.data)

    @classmethod
    def from_message(cls, message: IcmpMessage, offset: int = 0) -> IcmpEcho:
        """The echo view of ``message`` (``offset``: where it started, for errors)."""
        if message.type not in (IcmpType.ECHO_REQUEST, IcmpType.ECHO_REPLY):
            raise FieldValueError(
                f"type {message.type} is not an echo", field="icmp.type", offset=offset
            )
        if message.code != 0:
            raise FieldValueError(
                f"echo with code {message.code}", field="icmp.code", offset=offset + 1
            )
        identifier, sequence = _ECHO_REST.unpack(message.rest)
        return cls(identifier, sequence, message.payload, message.type == IcmpType.ECHO_REPLY)

    def encode(self) -> bytes:
        return self.to_message().encode()

    @classmethod
    def decode(
        cls,
        data: bytes | bytearray | memoryview,
        offset: int = 0,
        *,
        verify_checksum: bool = True,
    ) -> IcmpEcho:
        message = IcmpMessage.decode(data, offset, verify_checksum=verify_checksum)
        return cls.from_message(message, offset)


def _query_view(
    message: IcmpMessage, offset: int, request: int, reply: int, size: int | None, name: str
) -> tuple[int, int, bool]:
    """Identifier, sequence number and "is a reply" of a query ``message`` (request or reply
    type, code 0, a body of ``size`` bytes when given), or :class:`FieldValueError`."""
    if message.type not in (request, reply):
        raise FieldValueError(
            f"type {message.type} is not {name}", field="icmp.type", offset=offset
        )
    if message.code != 0:
        raise FieldValueError(
            f"{name} with code {message.code}", field="icmp.code", offset=offset + 1
        )
    if size is not None and len(message.payload) != size:
        raise FieldValueError(
            f"{name} body of {len(message.payload)} bytes, {size} expected",
            field="icmp.body",
            offset=offset + HEADER_SIZE,
        )
    identifier, sequence = _ECHO_REST.unpack(message.rest)
    return identifier, sequence, message.type == reply


@dataclass(frozen=True, slots=True)
class IcmpTimestamp:
    """Timestamp (type 13) or Timestamp Reply (type 14), RFC 792: three 32-bit times in
    milliseconds since midnight UT (``originate`` from the sender; ``receive`` and ``transmit``
    filled by the one that answers)."""

    identifier: int
    sequence: int
    originate: int
    receive: int = 0
    transmit: int = 0
    reply: bool = False

    def __post_init__(self) -> None:
        check_uint(self.identifier, 16, "icmp.timestamp.identifier")
        check_uint(self.sequence, 16, "icmp.timestamp.sequence")
        for name in ("originate", "receive", "transmit"):
            check_uint(getattr(self, name), 32, f"icmp.timestamp.{name}")
        if not isinstance(self.reply, bool):
            raise EncodeError("icmp.timestamp.reply must be a bool")

    def make_reply(self, now_ms: int) -> IcmpTimestamp:
        """RFC 792: the reply keeps identifier, sequence and originate, and gives our time as
        both the receive and the transmit timestamp (received and sent at once)."""
        return IcmpTimestamp(
            self.identifier, self.sequence, self.originate, now_ms, now_ms, reply=True
        )

    def to_message(self) -> IcmpMessage:
        kind = IcmpType.TIMESTAMP_REPLY if self.reply else IcmpType.TIMESTAMP
        body = _TIMESTAMPS.pack(self.originate, self.receive, self.transmit)
        return IcmpMessage(kind, 0, _ECHO_REST.pack(self.identifier, self.sequence), body)

    @classmethod
    def from_message(cls, message: IcmpMessage, offset: int = 0) -> IcmpTimestamp:
        identifier, sequence, reply = _query_view(
            message,
            offset,
            IcmpType.TIMESTAMP,
            IcmpType.TIMESTAMP_REPLY,
            _TIMESTAMPS.size,
            "a timestamp",
        )
        originate, receive, transmit = _TIMESTAMPS.unpack(message.payload)
        return cls(identifier, sequence, originate, receive, transmit, reply)

    def encode(self) -> bytes:
        return self.to_message().encode()


def ut_milliseconds(wall: float) -> int:
    """RFC 792's timestamp: milliseconds since midnight UT of the Unix time ``wall``."""
    return int(wall * 1000) % MS_PER_DAY


@dataclass(frozen=True, slots=True)
class IcmpAddressMask:
    """Address Mask Request (type 17) or Reply (type 18), RFC 950 Appendix I: the subnet mask of
    the network the request came from (0.0.0.0 in a request)."""

    identifier: int
    sequence: int
    mask: IPv4Address = NO_MASK
    reply: bool = False

    def __post_init__(self) -> None:
        check_uint(self.identifier, 16, "icmp.mask.identifier")
        check_uint(self.sequence, 16, "icmp.mask.sequence")
        if not isinstance(self.mask, IPv4Address) or not isinstance(self.reply, bool):
            raise EncodeError("icmp.mask.mask must be an IPv4Address and reply a bool")

    def make_reply(self, mask: IPv4Address) -> IcmpAddressMask:
        return IcmpAddressMask(self.identifier, self.sequence, mask, reply=True)

    def to_message(self) -> IcmpMessage:
        kind = IcmpType.ADDRESS_MASK_REPLY if self.reply else IcmpType.ADDRESS_MASK_REQUEST
        rest = _ECHO_REST.pack(self.identifier, self.sequence)
        return IcmpMessage(kind, 0, rest, _MASK.pack(self.mask.packed))

    @classmethod
    def from_message(cls, message: IcmpMessage, offset: int = 0) -> IcmpAddressMask:
        identifier, sequence, reply = _query_view(
            message,
            offset,
            IcmpType.ADDRESS_MASK_REQUEST,
            IcmpType.ADDRESS_MASK_REPLY,
            _MASK.size,
            "an address mask message",
        )
        return cls(identifier, sequence, IPv4Address(message.payload), reply)

    def encode(self) -> bytes:
        return self.to_message().encode()


def quote_datagram(original: bytes | bytearray | memoryview) -> bytes:
    """The part of ``original`` (an IPv4 packet) an ICMP error carries: header + 8 data bytes.

    Takes what exists when ``original`` is shorter. RFC 1812 section 4.3.2.3 allows quoting more;
    the RFC 792 minimum keeps the error small and is what every host parses.
    """
    if not original:
        return b""
    header_length = (original[0] & 0x0F) * 4
    return bytes(original[: header_length + QUOTED_DATA_SIZE])


def destination_unreachable(
    original: bytes | bytearray | memoryview, code: int, next_hop_mtu: int = 0
) -> IcmpMessage:
    """Destination Unreachable (type 3) about ``original``; ``next_hop_mtu`` only for code 4."""
    check_uint(next_hop_mtu, 16, "icmp.next_hop_mtu")
    if next_hop_mtu and code != UnreachableCode.FRAGMENTATION_NEEDED:
        raise EncodeError("icmp.next_hop_mtu is only carried by code 4")
    rest = _MTU_REST.pack(0, next_hop_mtu)
    return IcmpMessage(IcmpType.DEST_UNREACHABLE, code, rest, quote_datagram(original))


def fragmentation_needed(
    original: bytes | bytearray | memoryview, next_hop_mtu: int
) -> IcmpMessage:
    """Type 3 code 4 with the MTU of the next hop in the low 16 bits of ``rest`` (RFC 1191 §4)."""
    return destination_unreachable(original, UnreachableCode.FRAGMENTATION_NEEDED, next_hop_mtu)


def time_exceeded(
    original: bytes | bytearray | memoryview, code: int = TimeExceededCode.TTL_EXCEEDED
) -> IcmpMessage:
    """Time Exceeded (type 11) about ``original``; ``rest`` is unused (zero)."""
    return IcmpMessage(IcmpType.TIME_EXCEEDED, code, bytes(4), quote_datagram(original))
