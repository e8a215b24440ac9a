"""Mobility Header messages (RFC 6275 section 6.1): one frozen dataclass per message.

``encode(src, dst)`` lays out the fixed part, the options with their alignment padding, pads to a
multiple of 8 octets and, when both addresses are given, fills the checksum over the IPv6
pseudo-header (section 6.1.1). The kernel fills it again on a raw MH socket; computing it here
keeps vectors, pcaps and tests complete.

:func:`decode_message` applies the RFC 6275 section 9.2 checks the Linux kernel skips when it
has no Mobile IPv6 (wire-reference 3.2): length a multiple of 8 and equal to Header Len, Payload
Proto 59, Header Len at least the type's minimum, a known type. It raises only
:class:`~router.wire.errors.DecodeError` subclasses; an unknown type raises
:class:`~router.wire.errors.UnknownTypeError`, the case answered with a Binding Error status 2.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import ClassVar, TypeVar

from router.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_v6
from router.wire.constants import (
    IPPROTO_MH,
    LIFETIME_UNIT_SECONDS,
    MH_PAYLOAD_PROTO_NONE,
    BindingErrorStatus,
    BRAStatus,
    BRType,
    MHType,
    RevocationTrigger,
    Status,
    known,
)
from router.wire.dialect import DRAFT, Dialect
from router.wire.errors import (
    AlignmentError,
    ChecksumError,
    EncodeError,
    FieldValueError,
    LengthError,
    TruncatedError,
    UnknownTypeError,
)
from router.wire.fields import U8, U16, U32, trusted, validate
from router.wire.mh_options import MobilityOption, decode_options, encode_options

_COMMON = struct.Struct("!BBBBH")  # payload proto, header len, MH type, reserved, checksum
_BU = struct.Struct("!HHH")  # sequence, flags, lifetime
_BA = struct.Struct("!BBHH")  # status, flags, sequence, lifetime
_BR = struct.Struct("!BBHH")  # B.R. type, trigger or status, sequence, flags
_BE = struct.Struct("!Bx16s")  # status, reserved, home address
_HB = struct.Struct("!HI")  # reserved|U|R, sequence
_BRR = struct.Struct("!2x")  # reserved

COMMON_HEADER_SIZE = _COMMON.size
CHECKSUM_OFFSET = 4
ZERO_ADDRESS = IPv6Address("::")

OptionT = TypeVar("OptionT", bound=MobilityOption)


class MobilityMessage:
    """Base of every MH message: the common header, the options, the checksum."""

    __slots__ = ()
    MH_TYPE: ClassVar[int] = -1
    #: Smallest legal Header Len for the type (RFC 6275 section 9.2; wire-reference 2.1).
    MIN_HEADER_LEN: ClassVar[int] = 1
    FIXED: ClassVar[struct.Struct] = _BRR
    NAME: ClassVar[str] = "mh"

    options: tuple[MobilityOption, ...]

    def fixed_part(self) -> bytes:
        raise NotImplementedError

    def find(self, kind: type[OptionT]) -> OptionT | None:
        """The first option of class ``kind``, or None."""
        for option in self.options:
            if isinstance(option, kind):
                return option
        return None

    def find_all(self, kind: type[OptionT]) -> list[OptionT]:
        return [option for option in self.options if isinstance(option, kind)]

    def layout(self) -> tuple[bytearray, list[int]]:
        """The message with a zero checksum, and the MH offset of each option."""
        fixed = self.fixed_part()
        start = COMMON_HEADER_SIZE + len(fixed)
        body, offsets = encode_options(self.options, start)
        total = start + len(body)
        header_len = total // 8 - 1
        if header_len > 255:
            raise EncodeError(f"{self.NAME}: {total} bytes exceed the 2048-byte MH maximum")
        buf = bytearray(_COMMON.pack(MH_PAYLOAD_PROTO_NONE, header_len, self.MH_TYPE, 0, 0))
        buf += fixed
        buf += body
        return buf, offsets

    def encode(self, src: IPv6Address | None = None, dst: IPv6Address | None = None) -> bytes:
        """Wire bytes; the checksum is filled when both addresses are known, else left 0."""
        buf, _ = self.layout()
        if src is not None and dst is not None:
            fill_checksum(buf, src, dst)
        return bytes(buf)

    @classmethod
    def decode_body(
        cls, buf: bytes, options: tuple[MobilityOption, ...]
    ) -> MobilityMessage:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError


def _options(options: Iterable[MobilityOption]) -> tuple[MobilityOption, ...]:
    result = tuple(options)
    for option in result:
        if not isinstance(option, MobilityOption):
            raise EncodeError(f"{option!r} is not a mobility option")
    return result


@dataclass(frozen=True, slots=True)
class BindingUpdate(MobilityMessage):
    """Binding Update (RFC 6275 section 6.1.7); with P set, the Proxy BU (RFC 5213 section 8.1).

    ``flags`` is the whole 16-bit word (:class:`~router.wire.constants.BUFlag`); the seed's V flag
    is read through the peer's :class:`~router.wire.dialect.Dialect`. ``lifetime`` is in units of
    4 seconds; 0 is a de-registration.
    """

    sequence: U16
    flags: U16
    lifetime: U16
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_UPDATE
    FIXED: ClassVar[struct.Struct] = _BU
    NAME: ClassVar[str] = "binding_update"

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "options", _options(self.options))

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * LIFETIME_UNIT_SECONDS

    def fixed_part(self) -> bytes:
        return _BU.pack(self.sequence, self.flags, self.lifetime)

    @classmethod
    def decode_body(cls, buf: bytes, options: tuple[MobilityOption, ...]) -> BindingUpdate:
        sequence, flags, lifetime = _BU.unpack_from(buf, COMMON_HEADER_SIZE)
        return trusted(cls, sequence, flags, lifetime, options)


@dataclass(frozen=True, slots=True)
class BindingAck(MobilityMessage):
    """Binding Acknowledgement (RFC 6275 section 6.1.8); with P set, the Proxy BA (RFC 5213 8.2).

    ``flags`` is the whole flag byte (:class:`~router.wire.constants.BAFlag`). On status 135 the
    sequence number is the last accepted one, otherwise the BU's.
    """

    status: U8
    flags: U8
    sequence: U16
    lifetime: U16
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_ACK
    FIXED: ClassVar[struct.Struct] = _BA
    NAME: ClassVar[str] = "binding_ack"

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "options", _options(self.options))

    @property
    def accepted(self) -> bool:
        """Status values below 128 mean the binding update was accepted (RFC 6275 6.1.8)."""
        return self.status < 128

    @property
    def lifetime_seconds(self) -> int:
        return self.lifetime * LIFETIME_UNIT_SECONDS

    def fixed_part(self) -> bytes:
        return _BA.pack(self.status, self.flags, self.sequence, self.lifetime)

    @classmethod
    def decode_body(cls, buf: bytes, options: tuple[MobilityOption, ...]) -> BindingAck:
        status, flags, sequence, lifetime = _BA.unpack_from(buf, COMMON_HEADER_SIZE)
        return trusted(cls, known(Status, status), flags, sequence, lifetime, options)


@dataclass(frozen=True, slots=True)
class BindingRevocationIndication(MobilityMessage):
    """Binding Revocation Indication (RFC 5846 section 6.1): MH type 16, B.R. Type 1.

    ``flags`` is the 16-bit word with P, V, G (:class:`~router.wire.constants.BRFlag`).
    """

    trigger: U8
    sequence: U16
    flags: U16
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_REVOCATION
    FIXED: ClassVar[struct.Struct] = _BR
    NAME: ClassVar[str] = "binding_revocation_indication"

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "options", _options(self.options))

    def fixed_part(self) -> bytes:
        return _BR.pack(BRType.INDICATION, self.trigger, self.sequence, self.flags)

    @classmethod
    def decode_body(
        cls, buf: bytes, options: tuple[MobilityOption, ...]
    ) -> BindingRevocationIndication:
        _, trigger, sequence, flags = _BR.unpack_from(buf, COMMON_HEADER_SIZE)
        return trusted(cls, known(RevocationTrigger, trigger), sequence, flags, options)


@dataclass(frozen=True, slots=True)
class BindingRevocationAck(MobilityMessage):
    """Binding Revocation Acknowledgement (RFC 5846 section 6.2): MH type 16, B.R. Type 2.

    Sequence number and flags are copied from the BRI.
    """

    status: U8
    sequence: U16
    flags: U16
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_REVOCATION
    FIXED: ClassVar[struct.Struct] = _BR
    NAME: ClassVar[str] = "binding_revocation_ack"

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "options", _options(self.options))

    def fixed_part(self) -> bytes:
        return _BR.pack(BRType.ACKNOWLEDGEMENT, self.status, self.sequence, self.flags)

    @classmethod
    def decode_body(cls, buf: bytes, options: tuple[MobilityOption, ...]) -> BindingRevocationAck:
        _, status, sequence, flags = _BR.unpack_from(buf, COMMON_HEADER_SIZE)
        return trusted(cls, known(BRAStatus, status), sequence, flags, options)


@dataclass(frozen=True, slots=True)
class BindingError(MobilityMessage):
    """Binding Error (RFC 6275 section 6.1.9). ``home_address`` is :: when not applicable."""

    status: U8
    home_address: IPv6Address = ZERO_ADDRESS
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_ERROR
    MIN_HEADER_LEN: ClassVar[int] = 2
    FIXED: ClassVar[struct.Struct] = _BE
    NAME: ClassVar[str] = "binding_error"

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "options", _options(self.options))

    def fixed_part(self) -> bytes:
        return _BE.pack(self.status, self.home_address.packed)

    @classmethod
    def decode_body(cls, buf: bytes, options: tuple[MobilityOption, ...]) -> BindingError:
        status, home = _BE.unpack_from(buf, COMMON_HEADER_SIZE)
        return trusted(cls, known(BindingErrorStatus, status), IPv6Address(home), options)


@dataclass(frozen=True, slots=True)
class Heartbeat(MobilityMessage):
    """Heartbeat (RFC 5847 section 5.1): ``flags`` holds U (0x2) and R (0x1), 32-bit sequence."""

    sequence: U32
    flags: U16 = 0
    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.HEARTBEAT
    FIXED: ClassVar[struct.Struct] = _HB
    NAME: ClassVar[str] = "heartbeat"

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "options", _options(self.options))

    def fixed_part(self) -> bytes:
        return _HB.pack(self.flags, self.sequence)

    @classmethod
    def decode_body(cls, buf: bytes, options: tuple[MobilityOption, ...]) -> Heartbeat:
        flags, sequence = _HB.unpack_from(buf, COMMON_HEADER_SIZE)
        return trusted(cls, sequence, flags, options)


@dataclass(frozen=True, slots=True)
class BindingRefreshRequest(MobilityMessage):
    """Binding Refresh Request (RFC 6275 section 6.1.2): decoded so a peer's BRR is not an error."""

    options: tuple[MobilityOption, ...] = ()
    MH_TYPE: ClassVar[int] = MHType.BINDING_REFRESH_REQUEST
    MIN_HEADER_LEN: ClassVar[int] = 0
    FIXED: ClassVar[struct.Struct] = _BRR
    NAME: ClassVar[str] = "binding_refresh_request"

    def __post_init__(self) -> None:
        validate(self)
        object.__setattr__(self, "options", _options(self.options))

    def fixed_part(self) -> bytes:
        return _BRR.pack()

    @classmethod
    def decode_body(cls, buf: bytes, options: tuple[MobilityOption, ...]) -> BindingRefreshRequest:
        return trusted(cls, options)


#: Every message class, for registries and tests (a new class here is covered automatically).
MESSAGE_CLASSES: tuple[type[MobilityMessage], ...] = (
    BindingRefreshRequest,
    BindingUpdate,
    BindingAck,
    BindingError,
    Heartbeat,
    BindingRevocationIndication,
    BindingRevocationAck,
)
_BY_TYPE: dict[int, type[MobilityMessage]] = {
    cls.MH_TYPE: cls for cls in MESSAGE_CLASSES if cls.MH_TYPE != MHType.BINDING_REVOCATION
}
_REVOCATION: dict[int, type[MobilityMessage]] = {
    BRType.INDICATION: BindingRevocationIndication,
    BRType.ACKNOWLEDGEMENT: BindingRevocationAck,
}


def fill_checksum(buf: bytearray, src: IPv6Address, dst: IPv6Address) -> None:
    """Write the MH checksum into ``buf`` (RFC 6275 section 6.1.1; 0 stays 0, unlike UDP)."""
    buf[CHECKSUM_OFFSET : CHECKSUM_OFFSET + 2] = b"\x00\x00"
    pseudo = pseudo_header_v6(src, dst, IPPROTO_MH, len(buf))
    csum = internet_checksum(pseudo + buf)
    buf[CHECKSUM_OFFSET : CHECKSUM_OFFSET + 2] = csum.to_bytes(2, "big")


def checksum_ok(mh: bytes, src: IPv6Address, dst: IPv6Address) -> bool:
    """Whether the checksum of a received MH verifies (the sum must come to 0xFFFF)."""
    return ones_complement_sum(pseudo_header_v6(src, dst, IPPROTO_MH, len(mh)) + mh) == 0xFFFF


def message_class(buf: bytes) -> type[MobilityMessage]:
    """The class of a framed MH (after :func:`check_framing`), or :class:`UnknownTypeError`."""
    mh_type = buf[2]
    if mh_type == MHType.BINDING_REVOCATION:
        br_type = buf[6]
        cls = _REVOCATION.get(br_type)
        if cls is None:
            raise FieldValueError(
                f"B.R. Type {br_type} is neither BRI (1) nor BRA (2)", field="br.type", offset=6
            )
        return cls
    cls = _BY_TYPE.get(mh_type)
    if cls is None:
        raise UnknownTypeError(
            f"unrecognized MH type {mh_type}", field="mh.type", offset=2, type_value=mh_type
        )
    return cls


def check_framing(buf: bytes) -> None:
    """The RFC 6275 section 9.2 framing checks, in order; raises a DecodeError subclass."""
    size = len(buf)
    if size < 8:
        raise TruncatedError(f"{size} bytes, the MH minimum is 8", field="mh", offset=0)
    if size % 8:
        raise AlignmentError(f"{size} bytes is not a multiple of 8", field="mh", offset=0)
    proto, header_len = buf[0], buf[1]
    if (header_len + 1) * 8 > size:
        raise TruncatedError(
            f"Header Len {header_len} says {(header_len + 1) * 8} bytes, {size} present",
            field="mh.header_len",
            offset=1,
        )
    if (header_len + 1) * 8 < size:
        raise LengthError(
            f"Header Len {header_len} says {(header_len + 1) * 8} bytes, {size} present",
            field="mh.header_len",
            offset=1,
        )
    if proto != MH_PAYLOAD_PROTO_NONE:
        # RFC 6275 section 9.2: "the Payload Proto field ... MUST be IPPROTO_NONE".
        raise FieldValueError(f"Payload Proto {proto}, expected 59", field="mh.proto", offset=0)


def decode_message(
    data: bytes | bytearray | memoryview,
    dialect: Dialect = DRAFT,
    *,
    src: IPv6Address | None = None,
    dst: IPv6Address | None = None,
) -> MobilityMessage:
    """Decode one Mobility Header; verify the checksum too when both addresses are given."""
    buf = bytes(data)
    check_framing(buf)
    cls = message_class(buf)
    header_len = buf[1]
    if header_len < cls.MIN_HEADER_LEN:
        raise LengthError(
            f"Header Len {header_len} below {cls.MIN_HEADER_LEN} for {cls.NAME}",
            field="mh.header_len",
            offset=1,
        )
    if src is not None and dst is not None and not checksum_ok(buf, src, dst):
        raise ChecksumError("checksum does not verify", field="mh.checksum", offset=4)
    options = decode_options(buf, COMMON_HEADER_SIZE + cls.FIXED.size, len(buf), dialect)
    return cls.decode_body(buf, options)


def options_start(cls: type[MobilityMessage]) -> int:
    """MH offset where the options of ``cls`` begin."""
    return COMMON_HEADER_SIZE + cls.FIXED.size
