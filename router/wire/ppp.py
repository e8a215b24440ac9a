"""PPP over Ethernet (RFC 2516) and the PPP packets a PPPoE server exchanges: LCP (RFC 1661),
PAP (RFC 1334), CHAP with MD5 (RFC 1994), IPCP (RFC 1332, DNS options RFC 1877).

Seed 4.1: a PPP MS authenticates during LCP (PAP or CHAP, its user name the NAI) and learns its
home address by IPCP after the PBA. This module holds the frames only; nothing uses them yet
(the PPPoE server does not exist: docs/operations.md).

Layout:

- PPPoE header (RFC 2516 4): VER 1 and TYPE 1 in one octet, CODE, SESSION_ID, LENGTH (of the
  payload), then the payload; Ethernet padding past LENGTH is ignored. Discovery (EtherType
  0x8863) payloads are tags (TYPE, LENGTH, VALUE); session (0x8864) payloads are PPP: a 2-octet
  protocol field and the information.
- LCP and IPCP share the packet format of RFC 1661 5: CODE, IDENTIFIER, LENGTH (the whole
  packet), data; Configure-* data is options (TYPE, LENGTH incl. both octets, value).
- PAP and CHAP have their own data layouts (RFC 1334 2.2, RFC 1994 4).

Decoders raise only :class:`~router.wire.errors.DecodeError` subclasses on the peer's bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from router.wire.errors import EncodeError, FieldValueError, LengthError, check_uint, need

ETHERTYPE_DISCOVERY = 0x8863
ETHERTYPE_SESSION = 0x8864
VER_TYPE = 0x11  # RFC 2516 4: VER = 1, TYPE = 1
_PPPOE = struct.Struct("!BBHH")
_TAG = struct.Struct("!HH")
_CONTROL = struct.Struct("!BBH")
#: RFC 2516 7: the largest MRU a PPPoE peer may negotiate on a 1500-octet Ethernet.
MAX_MRU = 1492


class PPPoECode(IntEnum):
    SESSION = 0x00
    PADO = 0x07
    PADI = 0x09
    PADR = 0x19
    PADS = 0x65
    PADT = 0xA7


class TagType(IntEnum):
    """RFC 2516 appendix A."""

    END_OF_LIST = 0x0000
    SERVICE_NAME = 0x0101
    AC_NAME = 0x0102
    HOST_UNIQ = 0x0103
    AC_COOKIE = 0x0104
    VENDOR_SPECIFIC = 0x0105
    RELAY_SESSION_ID = 0x0110
    SERVICE_NAME_ERROR = 0x0201
    AC_SYSTEM_ERROR = 0x0202
    GENERIC_ERROR = 0x0203


class Protocol(IntEnum):
    """PPP protocol field values (RFC 1661 2; IANA PPP DLL protocol numbers)."""

    IPV4 = 0x0021
    IPCP = 0x8021
    LCP = 0xC021
    PAP = 0xC023
    CHAP = 0xC223


class Code(IntEnum):
    """LCP (and, codes 1-7, IPCP) packet codes (RFC 1661 5)."""

    CONFIGURE_REQUEST = 1
    CONFIGURE_ACK = 2
    CONFIGURE_NAK = 3
    CONFIGURE_REJECT = 4
    TERMINATE_REQUEST = 5
    TERMINATE_ACK = 6
    CODE_REJECT = 7
    PROTOCOL_REJECT = 8
    ECHO_REQUEST = 9
    ECHO_REPLY = 10
    DISCARD_REQUEST = 11


class LcpOption(IntEnum):
    MRU = 1
    AUTH_PROTOCOL = 3
    MAGIC_NUMBER = 5


class IpcpOption(IntEnum):
    IP_ADDRESS = 3  # RFC 1332 3.3
    PRIMARY_DNS = 129  # RFC 1877 1.1
    SECONDARY_DNS = 131  # RFC 1877 1.3


CHAP_MD5 = 5  # RFC 1994 2.1: the Algorithm octet of the Authentication-Protocol option


@dataclass(frozen=True, slots=True)
class Tag:
    type: int
    value: bytes = b""

    def encode(self) -> bytes:
        check_uint(self.type, 16, "pppoe.tag.type")
        check_uint(len(self.value), 16, "pppoe.tag.length")
        return _TAG.pack(self.type, len(self.value)) + self.value


@dataclass(frozen=True, slots=True)
class PPPoEFrame:
    """A PPPoE packet: discovery (``code`` != 0, ``payload`` = tags) or session (code 0,
    ``payload`` = a PPP frame)."""

    code: int
    session: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.code, 8, "pppoe.code")
        check_uint(self.session, 16, "pppoe.session_id")
        check_uint(len(self.payload), 16, "pppoe.length")

    def encode(self) -> bytes:
        return _PPPOE.pack(VER_TYPE, self.code, self.session, len(self.payload)) + self.payload

    @classmethod
    def decode(cls, buf: bytes | bytearray | memoryview) -> PPPoEFrame:
        data = bytes(buf)
        need(len(data), 0, _PPPOE.size, "pppoe.header")
        ver_type, code, session, length = _PPPOE.unpack_from(data)
        if ver_type != VER_TYPE:
            raise FieldValueError(
                f"VER/TYPE {ver_type:#04x}, not 0x11", field="pppoe.ver", offset=0
            )
        if _PPPOE.size + length > len(data):
            raise LengthError(
                f"LENGTH {length} past the {len(data) - _PPPOE.size} octets there",
                field="pppoe.length",
                offset=4,
            )
        return cls(code, session, data[_PPPOE.size : _PPPOE.size + length])

    @classmethod
    def discovery(cls, code: int, session: int, tags: tuple[Tag, ...]) -> PPPoEFrame:
        return cls(code, session, b"".join(tag.encode() for tag in tags))

    def tags(self) -> tuple[Tag, ...]:
        """The discovery payload's tags, up to End-Of-List (RFC 2516 A: the rest is ignored)."""
        out: list[Tag] = []
        data, offset = self.payload, 0
        while offset < len(data):
            need(len(data), offset, _TAG.size, "pppoe.tag")
            kind, length = _TAG.unpack_from(data, offset)
            need(len(data), offset + _TAG.size, length, "pppoe.tag.value")
            if kind == TagType.END_OF_LIST:
                break
            out.append(Tag(kind, data[offset + 4 : offset + 4 + length]))
            offset += _TAG.size + length
        return tuple(out)

    def ppp(self) -> tuple[int, bytes]:
        """A session payload: (PPP protocol, information). Address/control and protocol-field
        compression are not used on PPPoE (RFC 2516 7)."""
        need(len(self.payload), 0, 2, "ppp.protocol")
        return struct.unpack_from("!H", self.payload)[0], self.payload[2:]

    @classmethod
    def session_ppp(cls, session: int, protocol: int, information: bytes) -> PPPoEFrame:
        check_uint(protocol, 16, "ppp.protocol")
        return cls(PPPoECode.SESSION, session, struct.pack("!H", protocol) + information)


@dataclass(frozen=True, slots=True)
class Option:
    type: int
    value: bytes = b""

    def encode(self) -> bytes:
        check_uint(self.type, 8, "ppp.option.type")
        if len(self.value) > 253:
            raise EncodeError("an option value has at most 253 octets")
        return bytes((self.type, len(self.value) + 2)) + self.value


@dataclass(frozen=True, slots=True)
class ControlPacket:
    """An LCP or IPCP packet (RFC 1661 5): code, identifier and its data."""

    code: int
    identifier: int
    data: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.code, 8, "ppp.code")
        check_uint(self.identifier, 8, "ppp.identifier")
        check_uint(len(self.data) + _CONTROL.size, 16, "ppp.length")

    def encode(self) -> bytes:
        return _CONTROL.pack(self.code, self.identifier, len(self.data) + 4) + self.data

    @classmethod
    def decode(cls, buf: bytes) -> ControlPacket:
        """RFC 1661 5: octets past LENGTH are padding; a LENGTH past the data is an error."""
        need(len(buf), 0, _CONTROL.size, "ppp.header")
        code, identifier, length = _CONTROL.unpack_from(buf)
        if length < _CONTROL.size or length > len(buf):
            raise LengthError(
                f"LENGTH {length} with {len(buf)} octets", field="ppp.length", offset=2
            )
        return cls(code, identifier, bytes(buf[_CONTROL.size : length]))

    @classmethod
    def configure(cls, code: int, identifier: int, options: tuple[Option, ...]) -> ControlPacket:
        return cls(code, identifier, b"".join(option.encode() for option in options))

    def options(self) -> tuple[Option, ...]:
        """The options of a Configure-Request, -Ack, -Nak or -Reject."""
        out: list[Option] = []
        data, offset = self.data, 0
        while offset < len(data):
            need(len(data), offset, 2, "ppp.option")
            kind, length = data[offset], data[offset + 1]
            if length < 2:
                raise LengthError(
                    f"option length {length}", field="ppp.option.length", offset=offset + 5
                )
            need(len(data), offset, length, "ppp.option.value")
            out.append(Option(kind, data[offset + 2 : offset + length]))
            offset += length
        return tuple(out)

    def magic(self) -> int | None:
        """The Magic-Number of an Echo-Request/-Reply or Discard-Request (RFC 1661 5.8)."""
        return struct.unpack_from("!I", self.data)[0] if len(self.data) >= 4 else None


@dataclass(frozen=True, slots=True)
class PapRequest:
    """RFC 1334 2.2.1 Authenticate-Request: the peer's ID (here the NAI) and password."""

    identifier: int
    peer_id: bytes
    password: bytes

    def encode(self) -> bytes:
        if len(self.peer_id) > 255 or len(self.password) > 255:
            raise EncodeError("PAP peer ID and password have at most 255 octets each")
        body = bytes((len(self.peer_id),)) + self.peer_id
        body += bytes((len(self.password),)) + self.password
        return ControlPacket(1, self.identifier, body).encode()

    @classmethod
    def decode(cls, packet: ControlPacket) -> PapRequest:
        data = packet.data
        need(len(data), 0, 1, "pap.peer_id_length")
        peer_len = data[0]
        need(len(data), 1, peer_len + 1, "pap.peer_id")
        pass_len = data[1 + peer_len]
        need(len(data), 2 + peer_len, pass_len, "pap.password")
        peer = data[1 : 1 + peer_len]
        return cls(packet.identifier, peer, data[2 + peer_len : 2 + peer_len + pass_len])


@dataclass(frozen=True, slots=True)
class ChapPacket:
    """RFC 1994 4.1 Challenge (code 1) or Response (code 2): a value and a name."""

    code: int
    identifier: int
    value: bytes
    name: bytes = b""

    def encode(self) -> bytes:
        if not 1 <= len(self.value) <= 255:
            raise EncodeError("a CHAP value has 1 to 255 octets")
        body = bytes((len(self.value),)) + self.value + self.name
        return ControlPacket(self.code, self.identifier, body).encode()

    @classmethod
    def decode(cls, packet: ControlPacket) -> ChapPacket:
        data = packet.data
        need(len(data), 0, 1, "chap.value_size")
        size = data[0]
        if size == 0:
            raise LengthError("value size 0", field="chap.value_size", offset=4)
        need(len(data), 1, size, "chap.value")
        return cls(packet.code, packet.identifier, data[1 : 1 + size], data[1 + size :])


@dataclass(frozen=True, slots=True)
class Message:
    """PAP Authenticate-Ack/-Nak (RFC 1334 2.2.2: a message-length octet first) or CHAP
    Success/Failure (RFC 1994 4.2: the message alone)."""

    code: int
    identifier: int
    message: bytes = b""
    pap: bool = field(default=False)

    def encode(self) -> bytes:
        body = bytes((len(self.message),)) + self.message if self.pap else self.message
        return ControlPacket(self.code, self.identifier, body).encode()
