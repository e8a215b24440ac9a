"""DHCPv4 messages (RFC 2131, options RFC 2132) and the Relay Agent Information option (RFC 3046).

A message is the BOOTP fixed part (RFC 2131 section 2, figure 1), the magic cookie, then options.
Options are an ordered tuple of :class:`DhcpOption` kept exactly as received, duplicates included,
so a round trip is exact; Pad (0) and End (255) belong to the codec and are not kept. Decoding
stops at End; a message without End is accepted (the options run to the end of the buffer).

On encode, the message is padded with zeros after End to 300 bytes, the BOOTP minimum (RFC 1542
section 2.1), as ISC dhcpd and dnsmasq do: some clients and relays drop shorter messages.
Shorter messages are accepted on decode (only the 240-byte fixed part and cookie are required).

Options whose accessors return typed values (message type, addresses, lease time, MTU) have their
length checked at decode time, so an accessor never fails on a decoded message. Option 82 is
checked to be a well-formed list of sub-options. Option Overload (52) is not interpreted: ``sname``
and ``file`` stay raw bytes, and options they might carry are not looked at.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import IntEnum
from ipaddress import IPv4Address

from router.wire.errors import (
    DecodeError,
    EncodeError,
    FieldValueError,
    LengthError,
    TruncatedError,
    check_uint,
    need,
)
from router.wire.ethernet import MacAddress

_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")

FIXED_SIZE = _FIXED.size  # 240: BOOTP's 236 bytes plus the magic cookie
MAGIC_COOKIE = bytes((99, 130, 83, 99))  # RFC 2131 section 3
BOOTP_MIN_SIZE = 300  # RFC 1542 section 2.1
BROADCAST_FLAG = 0x8000  # RFC 2131 section 2, figure 2: the leftmost bit of 'flags'
SERVER_PORT = 67
CLIENT_PORT = 68
HTYPE_ETHERNET = 1
CHADDR_SIZE = 16
SNAME_SIZE = 64
FILE_SIZE = 128

_PAD = 0
_END = 255


class BootpOp(IntEnum):
    """The ``op`` field (RFC 2131 section 2)."""

    BOOTREQUEST = 1
    BOOTREPLY = 2


class DhcpMessageType(IntEnum):
    """Option 53 values (RFC 2132 section 9.6)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class DhcpOptionCode(IntEnum):
    """Option codes the appliance reads or writes (RFC 2132; IANA "BOOTP Vendor Extensions")."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS_SERVERS = 6
    HOST_NAME = 12
    DOMAIN_NAME = 15
    INTERFACE_MTU = 26
    BROADCAST_ADDRESS = 28
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    VENDOR_CLASS_ID = 60
    CLIENT_ID = 61
    RELAY_AGENT_INFO = 82  # RFC 3046
    END = 255


class RelayAgentSubOption(IntEnum):
    """Sub-options of option 82 (RFC 3046 section 3, RFC 3993)."""

    CIRCUIT_ID = 1
    REMOTE_ID = 2
    SUBSCRIBER_ID = 6  # RFC 3993


_OPS: dict[int, BootpOp] = {m.value: m for m in BootpOp}
_MESSAGE_TYPES: dict[int, DhcpMessageType] = {m.value: m for m in DhcpMessageType}
_CODES: dict[int, DhcpOptionCode] = {m.value: m for m in DhcpOptionCode}

# Options with a fixed data length (RFC 2132 sections 3.3, 5.1, 5.3, 9.1, 9.2, 9.3, 9.6, 9.7,
# 9.10, 9.11, 9.12). Their accessors rely on it, so decode checks it.
_FIXED_LENGTH: dict[int, int] = {
    DhcpOptionCode.SUBNET_MASK: 4,
    DhcpOptionCode.INTERFACE_MTU: 2,
    DhcpOptionCode.BROADCAST_ADDRESS: 4,
    DhcpOptionCode.REQUESTED_IP: 4,
    DhcpOptionCode.LEASE_TIME: 4,
    DhcpOptionCode.OVERLOAD: 1,
    DhcpOptionCode.MESSAGE_TYPE: 1,
    DhcpOptionCode.SERVER_ID: 4,
    DhcpOptionCode.MAX_MESSAGE_SIZE: 2,
    DhcpOptionCode.RENEWAL_TIME: 4,
    DhcpOptionCode.REBINDING_TIME: 4,
}
# Lists of addresses (RFC 2132 sections 3.5, 3.8): "the length MUST always be a multiple of 4".
_ADDRESS_LISTS = frozenset((DhcpOptionCode.ROUTER, DhcpOptionCode.DNS_SERVERS))


def _option_problem(code: int, data: bytes) -> str | None:
    """Why ``data`` cannot be option ``code`` (length rules above), or None when it can."""
    fixed = _FIXED_LENGTH.get(code)
    if fixed is not None and len(data) != fixed:
        return f"option {code} has {len(data)} bytes, not {fixed}"
    if code in _ADDRESS_LISTS and (not data or len(data) % 4):
        return f"option {code} has {len(data)} bytes, not a non-empty multiple of 4"
    return None


@dataclass(frozen=True, slots=True)
class DhcpOption:
    """One option instance: ``code`` (1..254) and its data (0..255 bytes), Pad/End excluded."""

    code: int
    data: bytes = b""

    def __post_init__(self) -> None:
        check_uint(self.code, 8, "dhcp.option.code")
        if self.code in (_PAD, _END):
            raise EncodeError("Pad and End are written by the encoder, not kept as options")
        if not isinstance(self.data, bytes) or len(self.data) > 255:
            raise EncodeError(f"dhcp option {self.code} data must be at most 255 bytes")
        problem = _option_problem(self.code, self.data)
        if problem is not None:
            raise EncodeError(problem)
        if self.code == DhcpOptionCode.RELAY_AGENT_INFO:
            try:
                RelayAgentInfo.decode(self.data)
            except DecodeError as exc:
                raise EncodeError(f"option 82 is not a list of sub-options: {exc}") from exc

    @classmethod
    def from_addresses(cls, code: int, *addresses: IPv4Address) -> DhcpOption:
        """An option whose data is the given addresses, in order (options 1, 3, 6, 50, 54 ...)."""
        return cls(code, b"".join(a.packed for a in addresses))

    @classmethod
    def from_uint(cls, code: int, value: int, size: int) -> DhcpOption:
        """An option whose data is ``value`` as a ``size``-byte big-endian integer."""
        check_uint(value, 8 * size, f"dhcp option {code}")
        return cls(code, value.to_bytes(size, "big"))

    def encode(self) -> bytes:
        return bytes((self.code, len(self.data))) + self.data


@dataclass(frozen=True, slots=True)
class RelayAgentInfo:
    """The data of option 82: sub-options as ordered ``(code, data)`` pairs (RFC 3046 section 2.0).

    Each sub-option is a code byte, a length byte and that many bytes; there is no padding.
    """

    suboptions: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        # Lists are accepted and stored as tuples, so the value stays hashable.
        object.__setattr__(self, "suboptions", tuple((c, d) for c, d in self.suboptions))
        for code, data in self.suboptions:
            check_uint(code, 8, "dhcp.option82.code")
            if not isinstance(data, bytes) or len(data) > 255:
                raise EncodeError(f"option 82 sub-option {code} data must be at most 255 bytes")
        if self.length > 255:
            raise EncodeError(f"option 82 data of {self.length} bytes exceeds 255")

    @classmethod
    def of(
        cls,
        *,
        circuit_id: bytes | None = None,
        remote_id: bytes | None = None,
        subscriber_id: bytes | None = None,
    ) -> RelayAgentInfo:
        """The usual sub-options, in code order, leaving out the ones not given."""
        pairs = (
            (RelayAgentSubOption.CIRCUIT_ID, circuit_id),
            (RelayAgentSubOption.REMOTE_ID, remote_id),
            (RelayAgentSubOption.SUBSCRIBER_ID, subscriber_id),
        )
        return cls(tuple((int(code), data) for code, data in pairs if data is not None))

    @property
    def length(self) -> int:
        return sum(2 + len(data) for _, data in self.suboptions)

    def get(self, code: int) -> bytes | None:
        """The data of the first sub-option ``code``, or None."""
        for c, data in self.suboptions:
            if c == code:
                return data
        return None

    @property
    def circuit_id(self) -> bytes | None:
        return self.get(RelayAgentSubOption.CIRCUIT_ID)

    @property
    def remote_id(self) -> bytes | None:
        return self.get(RelayAgentSubOption.REMOTE_ID)

    @property
    def subscriber_id(self) -> bytes | None:
        return self.get(RelayAgentSubOption.SUBSCRIBER_ID)

    def encode(self) -> bytes:
        """The option data (without the option's own code and length)."""
        return b"".join(bytes((code, len(data))) + data for code, data in self.suboptions)

    def to_option(self) -> DhcpOption:
        return DhcpOption(DhcpOptionCode.RELAY_AGENT_INFO, self.encode())

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> RelayAgentInfo:
        """Decode sub-options from ``offset`` to the end of ``data``."""
        n = len(data)
        need(n, offset, 0, "dhcp.option82")
        pairs: list[tuple[int, bytes]] = []
        pos = offset
        while pos < n:
            if pos + 2 > n:
                raise TruncatedError(
                    "sub-option length byte missing", field="dhcp.option82.length", offset=pos
                )
            length = data[pos + 1]
            if pos + 2 + length > n:
                raise LengthError(
                    f"sub-option {data[pos]} of {length} bytes runs past the option end",
                    field="dhcp.option82.length",
                    offset=pos + 1,
                )
            pairs.append((data[pos], bytes(data[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        return cls(tuple(pairs))


def _decode_options(data: bytes | bytearray | memoryview, pos: int) -> tuple[DhcpOption, ...]:
    """Walk the options from ``pos``: Pad skipped, stop at End or at the end of ``data``."""
    n = len(data)
    options: list[DhcpOption] = []
    while pos < n:
        code = data[pos]
        if code == _PAD:
            pos += 1
            continue
        if code == _END:
            break
        if pos + 2 > n:
            raise TruncatedError(
                f"option {code} length byte missing", field="dhcp.option.length", offset=pos
            )
        length = data[pos + 1]
        start = pos + 2
        end = start + length
        if end > n:
            raise LengthError(
                f"option {code} of {length} bytes runs past the message end",
                field="dhcp.option.length",
                offset=pos + 1,
            )
        body = bytes(data[start:end])
        problem = _option_problem(code, body)
        if problem is not None:
            raise LengthError(problem, field="dhcp.option.length", offset=pos + 1)
        if code == DhcpOptionCode.RELAY_AGENT_INFO:
            RelayAgentInfo.decode(memoryview(data)[:end], start)  # offsets stay absolute
        options.append(DhcpOption(_CODES.get(code, code), body))
        pos = end
    return tuple(options)


def _pad(value: bytes, size: int, field: str) -> bytes:
    if not isinstance(value, bytes) or len(value) > size:
        raise EncodeError(f"dhcp.{field} must be at most {size} bytes")
    return value.ljust(size, b"\x00")


_ZERO = IPv4Address(0)


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """A DHCP message. ``chaddr``, ``sname`` and ``file`` may be given short; they are stored
    zero-padded to their wire size (16, 64, 128), as they decode.

    ``options`` keeps order and duplicates; a list given is stored as a tuple.
    """

    op: int
    xid: int
    chaddr: bytes = b""
    options: tuple[DhcpOption, ...] = ()
    htype: int = HTYPE_ETHERNET
    hlen: int = 6
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = _ZERO
    yiaddr: IPv4Address = _ZERO
    siaddr: IPv4Address = _ZERO
    giaddr: IPv4Address = _ZERO
    sname: bytes = b""
    file: bytes = b""

    def __post_init__(self) -> None:
        for name in ("op", "htype", "hlen", "hops"):
            check_uint(getattr(self, name), 8, f"dhcp.{name}")
        check_uint(self.xid, 32, "dhcp.xid")
        check_uint(self.secs, 16, "dhcp.secs")
        check_uint(self.flags, 16, "dhcp.flags")
        object.__setattr__(self, "chaddr", _pad(self.chaddr, CHADDR_SIZE, "chaddr"))
        object.__setattr__(self, "sname", _pad(self.sname, SNAME_SIZE, "sname"))
        object.__setattr__(self, "file", _pad(self.file, FILE_SIZE, "file"))
        if not isinstance(self.options, tuple):
            object.__setattr__(self, "options", tuple(self.options))
        if not all(isinstance(o, DhcpOption) for o in self.options):
            raise EncodeError("dhcp.options must hold DhcpOption values")

    # -- wire ------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The message, End-terminated and zero-padded to 300 bytes (see the module docstring)."""
        fixed = _FIXED.pack(
            self.op,
            self.htype,
            self.hlen,
            self.hops,
            self.xid,
            self.secs,
            self.flags,
            self.ciaddr.packed,
            self.yiaddr.packed,
            self.siaddr.packed,
            self.giaddr.packed,
            self.chaddr,
            self.sname,
            self.file,
            MAGIC_COOKIE,
        )
        out = fixed + b"".join(o.encode() for o in self.options) + bytes((_END,))
        return out.ljust(BOOTP_MIN_SIZE, b"\x00")

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> DhcpMessage:
        """Decode the message from ``offset`` to the end of ``data`` (the UDP payload)."""
        need(len(data), offset, FIXED_SIZE, "dhcp.header")
        (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname,
         file, cookie) = _FIXED.unpack_from(data, offset)  # fmt: skip
        if cookie != MAGIC_COOKIE:
            # RFC 2131 section 3: the options field starts with 99, 130, 83, 99.
            raise FieldValueError(
                f"magic cookie {cookie.hex()}", field="dhcp.cookie", offset=offset + FIXED_SIZE - 4
            )
        return cls(
            op=_OPS.get(op, op),
            xid=xid,
            chaddr=chaddr,
            options=_decode_options(data, offset + FIXED_SIZE),
            htype=htype,
            hlen=hlen,
            hops=hops,
            secs=secs,
            flags=flags,
            ciaddr=IPv4Address(ciaddr),
            yiaddr=IPv4Address(yiaddr),
            siaddr=IPv4Address(siaddr),
            giaddr=IPv4Address(giaddr),
            sname=sname,
            file=file,
        )

    # -- option lookup ---------------------------------------------------------------------

    def get_option(self, code: int) -> bytes | None:
        """The data of option ``code``, every instance concatenated (RFC 3396), or None."""
        parts = [o.data for o in self.options if o.code == code]
        return b"".join(parts) if parts else None

    def _first(self, code: int) -> bytes | None:
        for o in self.options:
            if o.code == code:
                return o.data
        return None

    def _first_address(self, code: int) -> IPv4Address | None:
        data = self._first(code)
        return IPv4Address(data) if data is not None else None

    def _first_uint(self, code: int) -> int | None:
        data = self._first(code)
        return int.from_bytes(data, "big") if data is not None else None

    def _addresses(self, code: int) -> tuple[IPv4Address, ...]:
        data = self.get_option(code) or b""
        return tuple(IPv4Address(data[i : i + 4]) for i in range(0, len(data) - 3, 4))

    @property
    def message_type(self) -> int | None:
        """Option 53: a :class:`DhcpMessageType`, a plain int if unknown, None if absent."""
        value = self._first_uint(DhcpOptionCode.MESSAGE_TYPE)
        return _MESSAGE_TYPES.get(value, value) if value is not None else None

    @property
    def requested_ip(self) -> IPv4Address | None:
        return self._first_address(DhcpOptionCode.REQUESTED_IP)

    @property
    def server_id(self) -> IPv4Address | None:
        return self._first_address(DhcpOptionCode.SERVER_ID)

    @property
    def subnet_mask(self) -> IPv4Address | None:
        return self._first_address(DhcpOptionCode.SUBNET_MASK)

    @property
    def lease_time(self) -> int | None:
        """Option 51 in seconds; 0xFFFFFFFF means infinity (RFC 2131 section 3.3)."""
        return self._first_uint(DhcpOptionCode.LEASE_TIME)

    @property
    def interface_mtu(self) -> int | None:
        return self._first_uint(DhcpOptionCode.INTERFACE_MTU)

    @property
    def routers(self) -> tuple[IPv4Address, ...]:
        """Option 3, in preference order (empty if absent)."""
        return self._addresses(DhcpOptionCode.ROUTER)

    @property
    def dns_servers(self) -> tuple[IPv4Address, ...]:
        """Option 6, in preference order (empty if absent)."""
        return self._addresses(DhcpOptionCode.DNS_SERVERS)

    @property
    def client_id(self) -> bytes | None:
        """Option 61 raw: type byte then identifier (RFC 2132 section 9.14)."""
        return self.get_option(DhcpOptionCode.CLIENT_ID)

    @property
    def relay_agent_info(self) -> RelayAgentInfo | None:
        """Option 82 (first instance), already checked well-formed when decoded or built."""
        data = self._first(DhcpOptionCode.RELAY_AGENT_INFO)
        return RelayAgentInfo.decode(data) if data is not None else None

    @property
    def client_mac(self) -> MacAddress | None:
        """The client's MAC from ``chaddr`` when htype/hlen say Ethernet, else None."""
        if self.htype != HTYPE_ETHERNET or self.hlen != 6:
            return None
        return MacAddress(self.chaddr[:6])

    @property
    def broadcast(self) -> bool:
        """The client asks for broadcast replies (RFC 2131 section 4.1)."""
        return bool(self.flags & BROADCAST_FLAG)

    def reply(
        self,
        options: Iterable[DhcpOption],
        *,
        flags: int,
        ciaddr: IPv4Address = _ZERO,
        yiaddr: IPv4Address = _ZERO,
    ) -> DhcpMessage:
        """A BOOTREPLY to this request: its xid, chaddr, hardware type and length and giaddr
        (RFC 2131 section 4.3.1, table 3), with the options and addresses the server chose."""
        return DhcpMessage(
            op=BootpOp.BOOTREPLY,
            xid=self.xid,
            chaddr=self.chaddr,
            options=tuple(options),
            htype=self.htype,
            hlen=self.hlen,
            flags=flags,
            ciaddr=ciaddr,
            yiaddr=yiaddr,
            giaddr=self.giaddr,
        )

    # -- option editing (new messages; this one is frozen) ---------------------------------

    def with_options(self, options: Iterable[DhcpOption]) -> DhcpMessage:
        return replace(self, options=tuple(options))

    def with_option(self, option: DhcpOption) -> DhcpMessage:
        """Replace every instance of ``option.code`` by ``option`` at the first one's place, or
        append it when absent."""
        kept: list[DhcpOption] = []
        placed = False
        for o in self.options:
            if o.code != option.code:
                kept.append(o)
            elif not placed:
                kept.append(option)
                placed = True
        if not placed:
            kept.append(option)
        return replace(self, options=tuple(kept))

    def without_option(self, code: int) -> DhcpMessage:
        return replace(self, options=tuple(o for o in self.options if o.code != code))

    def with_relay_agent_info(self, info: RelayAgentInfo) -> DhcpMessage:
        """Add option 82, replacing any present, as the last option before End (RFC 3046
        section 2.1)."""
        rest = self.without_option(DhcpOptionCode.RELAY_AGENT_INFO).options
        return replace(self, options=(*rest, info.to_option()))

    def without_relay_agent_info(self) -> DhcpMessage:
        """Strip option 82, as a relay does before answering the client (RFC 3046 section 2.1)."""
        return self.without_option(DhcpOptionCode.RELAY_AGENT_INFO)
