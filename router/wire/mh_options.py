"""Mobility options (RFC 6275 section 6.2 and the RFCs that add options), one class each.

Every option is a frozen dataclass with ``option_type``, ``encode()`` (the whole TLV) and a
``from_data(data, offset)`` class method that parses the option *data* (after Type and Length);
``offset`` is where that data starts in the outer buffer, for error reports. ``ALIGN`` is the
RFC 6275 ``xn+y`` rule, measured from the start of the Mobility Header (``None``: no rule).

Pad1/PadN exist as classes so they can be built and decoded on their own, but
:func:`decode_options` drops them and :func:`encode_options` computes them from ``ALIGN``: the
padding of a message is derived state (wire-reference section 2.8). Unknown option types are
kept verbatim as :class:`UnknownOption`, skipped as RFC 6275 section 6.2.1 says.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Annotated, ClassVar

from router.wire.constants import (
    AccessTechnologyType,
    AuthSubtype,
    HandoffIndicator,
    HoAReplyStatus,
    MNIDSubtype,
    OptionType,
    known,
)
from router.wire.dialect import SEED_OPTION_DATA_LENGTH
from router.wire.errors import EncodeError, LengthError, TextEncodingError, TruncatedError
from router.wire.fields import U6, U8, U16, U32, U64, IntRange, SizeRange, trusted, validate

if TYPE_CHECKING:
    from router.wire.dialect import Dialect

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_AUTH_HEAD = struct.Struct("!BI")  # subtype, SPI
_SEED = struct.Struct("!H4s")  # sequence, IPv4 HoA
_HNP = struct.Struct("!xB16s")  # reserved, prefix length, prefix

Align = tuple[int, int] | None


def _fixed(data: bytes, size: int, name: str, offset: int) -> None:
    if len(data) != size:
        raise LengthError(
            f"option data is {len(data)} bytes, {name} has {size}", field=name, offset=offset - 1
        )


class MobilityOption:
    """Base of every mobility option: the TLV framing and the alignment rule."""

    __slots__ = ()
    TYPE: ClassVar[int] = -1
    ALIGN: ClassVar[Align] = None
    NAME: ClassVar[str] = "option"

    @property
    def option_type(self) -> int:
        return self.TYPE

    def data(self) -> bytes:
        """The option data (what follows the Type and Length bytes)."""
        raise NotImplementedError

    def alignment(self) -> Align:
        return self.ALIGN

    def encode(self) -> bytes:
        payload = self.data()
        if len(payload) > 255:
            raise EncodeError(f"{self.NAME}: {len(payload)} bytes of data exceed 255")
        return bytes((self.option_type, len(payload))) + payload


@dataclass(frozen=True, slots=True)
class Pad1(MobilityOption):
    """A single zero byte, with no Length byte (RFC 6275 section 6.2.2)."""

    TYPE: ClassVar[int] = OptionType.PAD1
    NAME: ClassVar[str] = "pad1"

    def encode(self) -> bytes:
        return b"\x00"

    def data(self) -> bytes:
        return b""


@dataclass(frozen=True, slots=True)
class PadN(MobilityOption):
    """``size`` bytes of padding in all, Type and Length included (RFC 6275 section 6.2.3)."""

    size: Annotated[int, IntRange(2, 257)] = 2
    TYPE: ClassVar[int] = OptionType.PADN
    NAME: ClassVar[str] = "padn"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return bytes(self.size - 2)

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> PadN:
        # RFC 6275 section 6.2.3: the padding's content is ignored on receipt.
        return cls(len(data) + 2)


@dataclass(frozen=True, slots=True)
class AlternateCareOfAddress(MobilityOption):
    """Alternate Care-of Address (RFC 6275 section 6.2.5); the PBU's tunnel endpoint (seed 6)."""

    address: IPv6Address
    TYPE: ClassVar[int] = OptionType.ALTERNATE_COA
    ALIGN: ClassVar[Align] = (8, 6)
    NAME: ClassVar[str] = "alternate_coa"

    def data(self) -> bytes:
        return self.address.packed

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> AlternateCareOfAddress:
        _fixed(data, 16, cls.NAME, offset)
        return trusted(cls, IPv6Address(data))


@dataclass(frozen=True, slots=True)
class MobileNodeIdentifier(MobilityOption):
    """Mobile Node Identifier (RFC 4283 section 3). With subtype NAI the identifier is UTF-8."""

    identifier: Annotated[bytes, SizeRange(1, 254)]
    subtype: U8 = MNIDSubtype.NAI
    TYPE: ClassVar[int] = OptionType.MN_ID
    NAME: ClassVar[str] = "mn_id"

    def __post_init__(self) -> None:
        validate(self)
        if self.subtype == MNIDSubtype.NAI:
            try:
                self.identifier.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EncodeError("mn_id NAI is not UTF-8") from exc

    @classmethod
    def from_nai(cls, nai: str) -> MobileNodeIdentifier:
        return cls(nai.encode("utf-8"), MNIDSubtype.NAI)

    @property
    def nai(self) -> str | None:
        """The NAI as text, or ``None`` for another subtype."""
        if self.subtype != MNIDSubtype.NAI:
            return None
        return self.identifier.decode("utf-8")

    def data(self) -> bytes:
        return bytes((self.subtype,)) + self.identifier

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> MobileNodeIdentifier:
        if len(data) < 2:
            raise LengthError(
                "needs a subtype and at least one identifier byte", field=cls.NAME, offset=offset
            )
        subtype, identifier = data[0], bytes(data[1:])
        try:
            return cls(identifier, subtype)  # checks that an NAI is UTF-8
        except EncodeError:
            try:
                identifier.decode("utf-8")
                start = 0
            except UnicodeDecodeError as exc:
                start = exc.start
            raise TextEncodingError(
                "NAI is not UTF-8", field="mn_id.identifier", offset=offset + 1 + start
            ) from None


@dataclass(frozen=True, slots=True)
class MobilityMessageAuthentication(MobilityOption):
    """Mobility Message Authentication (RFC 4285 section 5). It MUST be the last option.

    ``authenticator`` is 12 bytes for HMAC-SHA1-96; :mod:`router.wire.mh_auth` computes it.
    """

    spi: U32
    authenticator: Annotated[bytes, SizeRange(0, 250)]
    subtype: U8 = AuthSubtype.MN_HA
    TYPE: ClassVar[int] = OptionType.AUTH
    ALIGN: ClassVar[Align] = (4, 1)
    NAME: ClassVar[str] = "auth"

    def __post_init__(self) -> None:
        validate(self)

    def alignment(self) -> Align:
        # Padding goes *before* the option so that it both ends the 8-octet-aligned MH and starts
        # at 4n+1 (wire-reference 2.7): with a 12-byte authenticator that is 8n+5.
        end_offset = (-(7 + len(self.authenticator))) % 8
        return (8, end_offset) if end_offset % 4 == 1 else self.ALIGN

    def data(self) -> bytes:
        return _AUTH_HEAD.pack(self.subtype, self.spi) + self.authenticator

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> MobilityMessageAuthentication:
        if len(data) < 5:
            raise LengthError("needs subtype and SPI (5 bytes)", field=cls.NAME, offset=offset)
        subtype, spi = _AUTH_HEAD.unpack_from(data)
        return cls(spi, bytes(data[5:]), subtype)


@dataclass(frozen=True, slots=True)
class MobilityMessageReplayProtection(MobilityOption):
    """Mobility Message Replay Protection, "MESG-ID" (RFC 4285 section 6): an NTP timestamp."""

    timestamp: U64
    TYPE: ClassVar[int] = OptionType.MESG_ID
    ALIGN: ClassVar[Align] = (8, 2)
    NAME: ClassVar[str] = "mesg_id"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return _U64.pack(self.timestamp)

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> MobilityMessageReplayProtection:
        _fixed(data, 8, cls.NAME, offset)
        return trusted(cls, _U64.unpack(data)[0])


@dataclass(frozen=True, slots=True)
class ExperimentalOption(MobilityOption):
    """Experimental Mobility Option (RFC 5096): opaque data."""

    payload: Annotated[bytes, SizeRange(0, 255)]
    TYPE: ClassVar[int] = OptionType.EXPERIMENTAL
    NAME: ClassVar[str] = "experimental"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return bytes(self.payload)

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> ExperimentalOption:
        return cls(bytes(data))


@dataclass(frozen=True, slots=True)
class SeedIPv4HomeAddress(MobilityOption):
    """The seed's IPv4 Home Address option (seed section 3.1.3).

    ``sequence`` is the per-MS sequence number the DLMAP assigns; ``address`` 0.0.0.0 in a PBU
    asks the DLMAP to allocate. The seed leaves the type "TBD": the dialect says which number
    carries it (default 18, the Experimental option), so the type is a field here.
    """

    sequence: U16
    address: IPv4Address
    carrier_type: U8 = OptionType.EXPERIMENTAL
    ALIGN: ClassVar[Align] = (4, 0)
    NAME: ClassVar[str] = "seed_ipv4_hoa"

    def __post_init__(self) -> None:
        validate(self)

    @property
    def option_type(self) -> int:
        return self.carrier_type

    def data(self) -> bytes:
        return _SEED.pack(self.sequence, self.address.packed)

    @classmethod
    def from_data_typed(cls, data: bytes, offset: int, carrier_type: int) -> SeedIPv4HomeAddress:
        _fixed(data, 6, cls.NAME, offset)
        sequence, address = _SEED.unpack(data)
        return trusted(cls, sequence, IPv4Address(address), carrier_type)


@dataclass(frozen=True, slots=True)
class HomeNetworkPrefix(MobilityOption):
    """Home Network Prefix (RFC 5213 section 8.3)."""

    prefix_length: U8
    prefix: IPv6Address
    TYPE: ClassVar[int] = OptionType.HOME_NETWORK_PREFIX
    ALIGN: ClassVar[Align] = (8, 4)
    NAME: ClassVar[str] = "hnp"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return _HNP.pack(self.prefix_length, self.prefix.packed)

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> HomeNetworkPrefix:
        _fixed(data, 18, cls.NAME, offset)
        prefix_length, prefix = _HNP.unpack(data)
        return trusted(cls, prefix_length, IPv6Address(prefix))


@dataclass(frozen=True, slots=True)
class HandoffIndicatorOption(MobilityOption):
    """Handoff Indicator (RFC 5213 section 8.4); ``value`` from :class:`HandoffIndicator`."""

    value: U8
    TYPE: ClassVar[int] = OptionType.HANDOFF_INDICATOR
    NAME: ClassVar[str] = "handoff_indicator"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return bytes((0, self.value))

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> HandoffIndicatorOption:
        _fixed(data, 2, cls.NAME, offset)
        return trusted(cls, known(HandoffIndicator, data[1]))


@dataclass(frozen=True, slots=True)
class AccessTechnologyTypeOption(MobilityOption):
    """Access Technology Type (RFC 5213 section 8.5): an :class:`AccessTechnologyType` value."""

    value: U8
    TYPE: ClassVar[int] = OptionType.ACCESS_TECHNOLOGY_TYPE
    NAME: ClassVar[str] = "access_technology_type"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return bytes((0, self.value))

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> AccessTechnologyTypeOption:
        _fixed(data, 2, cls.NAME, offset)
        return trusted(cls, known(AccessTechnologyType, data[1]))


@dataclass(frozen=True, slots=True)
class MNLinkLayerIdentifier(MobilityOption):
    """Mobile Node Link-layer Identifier (RFC 5213 section 8.6): the MS's MAC, for example."""

    link_layer_id: Annotated[bytes, SizeRange(1, 253)]
    TYPE: ClassVar[int] = OptionType.MN_LINK_LAYER_ID
    NAME: ClassVar[str] = "mn_link_layer_id"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return b"\x00\x00" + self.link_layer_id

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> MNLinkLayerIdentifier:
        if len(data) < 3:
            raise LengthError(
                "needs 2 reserved bytes and an identifier", field=cls.NAME, offset=offset
            )
        return cls(bytes(data[2:]))


@dataclass(frozen=True, slots=True)
class LinkLocalAddress(MobilityOption):
    """Link-local Address (RFC 5213 section 8.7)."""

    address: IPv6Address
    TYPE: ClassVar[int] = OptionType.LINK_LOCAL_ADDRESS
    ALIGN: ClassVar[Align] = (8, 6)
    NAME: ClassVar[str] = "link_local_address"

    def data(self) -> bytes:
        return self.address.packed

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> LinkLocalAddress:
        _fixed(data, 16, cls.NAME, offset)
        return trusted(cls, IPv6Address(data))


@dataclass(frozen=True, slots=True)
class Timestamp(MobilityOption):
    """Timestamp (RFC 5213 section 8.8): 48 bits of seconds since 1970, 16 bits of 1/65536 s."""

    value: U64
    TYPE: ClassVar[int] = OptionType.TIMESTAMP
    ALIGN: ClassVar[Align] = (8, 2)
    NAME: ClassVar[str] = "timestamp"

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def from_unix(cls, seconds: float) -> Timestamp:
        whole = int(seconds)
        return cls((whole << 16) | int((seconds - whole) * 65536))

    def to_unix(self) -> float:
        return (self.value >> 16) + (self.value & 0xFFFF) / 65536

    def data(self) -> bytes:
        return _U64.pack(self.value)

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> Timestamp:
        _fixed(data, 8, cls.NAME, offset)
        return trusted(cls, _U64.unpack(data)[0])


@dataclass(frozen=True, slots=True)
class RestartCounter(MobilityOption):
    """Restart Counter (RFC 5847 section 5.2), carried by Heartbeat messages."""

    counter: U32
    TYPE: ClassVar[int] = OptionType.RESTART_COUNTER
    ALIGN: ClassVar[Align] = (4, 2)  # [U] recalled 4n+2, so the counter is 4-aligned
    NAME: ClassVar[str] = "restart_counter"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return _U32.pack(self.counter)

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> RestartCounter:
        _fixed(data, 4, cls.NAME, offset)
        return trusted(cls, _U32.unpack(data)[0])


@dataclass(frozen=True, slots=True)
class IPv4HomeAddressRequest(MobilityOption):
    """IPv4 Home Address Request (RFC 5844 section 3.3.1); 0.0.0.0 asks the LMA to allocate."""

    address: IPv4Address
    prefix_length: U6 = 0
    TYPE: ClassVar[int] = OptionType.IPV4_HOA_REQUEST
    ALIGN: ClassVar[Align] = (4, 0)
    NAME: ClassVar[str] = "ipv4_hoa_request"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        # "Prefix-len" is the top 6 bits of the 16-bit word, the other 10 are reserved.
        return _U16.pack(self.prefix_length << 10) + self.address.packed

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> IPv4HomeAddressRequest:
        _fixed(data, 6, cls.NAME, offset)
        return trusted(cls, IPv4Address(data[2:6]), data[0] >> 2)


@dataclass(frozen=True, slots=True)
class IPv4HomeAddressReply(MobilityOption):
    """IPv4 Home Address Reply (RFC 5844 section 3.3.2); ``status`` from :class:`HoAReplyStatus`."""

    status: U8
    address: IPv4Address
    prefix_length: U6 = 0
    TYPE: ClassVar[int] = OptionType.IPV4_HOA_REPLY
    ALIGN: ClassVar[Align] = (4, 0)
    NAME: ClassVar[str] = "ipv4_hoa_reply"

    def __post_init__(self) -> None:
        validate(self)

    def data(self) -> bytes:
        return bytes((self.status, self.prefix_length << 2)) + self.address.packed

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> IPv4HomeAddressReply:
        _fixed(data, 6, cls.NAME, offset)
        return trusted(cls, known(HoAReplyStatus, data[0]), IPv4Address(data[2:6]), data[1] >> 2)


@dataclass(frozen=True, slots=True)
class IPv4DefaultRouterAddress(MobilityOption):
    """IPv4 Default-Router Address (RFC 5844 section 3.3.3)."""

    address: IPv4Address
    TYPE: ClassVar[int] = OptionType.IPV4_DEFAULT_ROUTER
    ALIGN: ClassVar[Align] = (4, 0)
    NAME: ClassVar[str] = "ipv4_default_router"

    def data(self) -> bytes:
        return b"\x00\x00" + self.address.packed

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> IPv4DefaultRouterAddress:
        _fixed(data, 6, cls.NAME, offset)
        return trusted(cls, IPv4Address(data[2:6]))


@dataclass(frozen=True, slots=True)
class IPv4DHCPSupportMode(MobilityOption):
    """IPv4 DHCP Support Mode (RFC 5844 section 3.3.4): S=1 MAG is the DHCP server, 0 relay."""

    server: bool
    TYPE: ClassVar[int] = OptionType.IPV4_DHCP_SUPPORT_MODE
    NAME: ClassVar[str] = "ipv4_dhcp_support_mode"

    def data(self) -> bytes:
        return _U16.pack(1 if self.server else 0)

    @classmethod
    def from_data(cls, data: bytes, offset: int) -> IPv4DHCPSupportMode:
        _fixed(data, 2, cls.NAME, offset)
        return trusted(cls, bool(_U16.unpack(data)[0] & 1))


@dataclass(frozen=True, slots=True)
class UnknownOption(MobilityOption):
    """An option this codec does not know, kept verbatim (RFC 6275 section 6.2.1: skipped)."""

    type_value: Annotated[int, IntRange(1, 255)]
    payload: Annotated[bytes, SizeRange(0, 255)]
    NAME: ClassVar[str] = "unknown"

    def __post_init__(self) -> None:
        validate(self)  # type 0 is Pad1, which has no length byte

    @property
    def option_type(self) -> int:
        return self.type_value

    def data(self) -> bytes:
        return bytes(self.payload)


#: Option classes by type, for decoding. The seed option is not here: its type is per dialect.
OPTION_CLASSES: dict[int, type[MobilityOption]] = {
    cls.TYPE: cls
    for cls in (
        PadN,
        AlternateCareOfAddress,
        MobileNodeIdentifier,
        MobilityMessageAuthentication,
        MobilityMessageReplayProtection,
        ExperimentalOption,
        HomeNetworkPrefix,
        HandoffIndicatorOption,
        AccessTechnologyTypeOption,
        MNLinkLayerIdentifier,
        LinkLocalAddress,
        Timestamp,
        RestartCounter,
        IPv4HomeAddressRequest,
        IPv4HomeAddressReply,
        IPv4DefaultRouterAddress,
        IPv4DHCPSupportMode,
    )
}


def decode_option(
    option_type: int, data: bytes, offset: int, dialect: Dialect | None = None
) -> MobilityOption:
    """Decode one option's data. ``offset`` is where ``data`` starts in the outer buffer."""
    if (
        dialect is not None
        and option_type == dialect.seed_option_type
        and len(data) == SEED_OPTION_DATA_LENGTH
    ):
        return SeedIPv4HomeAddress.from_data_typed(data, offset, option_type)
    cls = OPTION_CLASSES.get(option_type)
    if cls is None:
        return UnknownOption(option_type, bytes(data))
    option: MobilityOption = cls.from_data(data, offset)  # type: ignore[attr-defined]
    return option


def decode_options(
    buf: bytes, start: int, end: int, dialect: Dialect | None = None
) -> tuple[MobilityOption, ...]:
    """Walk the options in ``buf[start:end]`` by their lengths; padding is dropped.

    Offsets in errors are absolute in ``buf``. Alignment is not enforced on receipt (wire-reference
    2.2); an option running past ``end`` is malformed and the whole message is refused.
    """
    options: list[MobilityOption] = []
    pos = start
    auth_at: int | None = None
    while pos < end:
        option_type = buf[pos]
        if option_type == _PAD1:
            pos += 1
            continue
        if pos + 2 > end:
            raise TruncatedError("option length byte missing", field="option.length", offset=pos)
        length = buf[pos + 1]
        if pos + 2 + length > end:
            raise LengthError(
                f"option of type {option_type} with {length} bytes runs past the message end",
                field="option.length",
                offset=pos + 1,
            )
        if option_type != _PADN:
            if auth_at is not None:
                # RFC 4285 section 5: the authentication option MUST be the last option.
                raise LengthError(
                    "an option follows the authentication option", field="option", offset=pos
                )
            options.append(
                decode_option(option_type, buf[pos + 2 : pos + 2 + length], pos + 2, dialect)
            )
            if option_type == _AUTH:
                auth_at = pos
        pos += 2 + length
    return tuple(options)


# Plain ints for the per-option loop (IntEnum comparisons dispatch through the subclass).
_PAD1, _PADN, _AUTH = int(OptionType.PAD1), int(OptionType.PADN), int(OptionType.AUTH)

#: Padding of 0..7 bytes: nothing, Pad1, then PadN (RFC 6275 section 6.2.2/6.2.3).
_PADDING = (b"", b"\x00", *(PadN(size).encode() for size in range(2, 8)))


def _padding(size: int) -> bytes:
    return _PADDING[size]


def encode_options(options: Iterable[MobilityOption], start: int) -> tuple[bytes, list[int]]:
    """Lay out ``options`` from MH offset ``start``: alignment padding, then padding to 8.

    Returns the bytes and the MH offset of each option's Type byte (the authenticator needs it).
    """
    items: Sequence[MobilityOption] = tuple(options)
    out = bytearray()
    offsets: list[int] = []
    for index, option in enumerate(items):
        if isinstance(option, Pad1 | PadN):
            raise EncodeError("padding is computed by the encoder; do not pass Pad1/PadN")
        if isinstance(option, MobilityMessageAuthentication) and index != len(items) - 1:
            raise EncodeError("the authentication option must be the last option (RFC 4285)")
        align = option.alignment()
        if align is not None:
            x, y = align
            out += _padding((y - (start + len(out))) % x)
        offsets.append(start + len(out))
        out += option.encode()
    out += _padding((-(start + len(out))) % 8)
    return bytes(out), offsets
