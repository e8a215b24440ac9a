"""ARP for IPv4 over Ethernet (RFC 826), with the RFC 5227 probe and announcement forms.

Only the Ethernet/IPv4 flavour exists on an access link, so the codec fixes hardware type 1,
protocol type 0x0800 and the 6/4 address lengths, and refuses anything else. The packet is 28
bytes; the Ethernet padding after it is ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address

from router.wire.errors import EncodeError, FieldValueError, check_uint, need
from router.wire.ethernet import ZERO_MAC, EtherType, MacAddress

_ARP = struct.Struct("!HHBBH6s4s6s4s")

SIZE = _ARP.size  # 28
HTYPE_ETHERNET = 1  # RFC 826 "ar$hrd"; IANA ARP hardware type 1
HLEN_ETHERNET = 6
PLEN_IPV4 = 4

_UNSPECIFIED = IPv4Address(0)


class ArpOp(IntEnum):
    """ARP operation codes (RFC 826; IANA "Operation Codes")."""

    REQUEST = 1
    REPLY = 2


_OPS: dict[int, ArpOp] = {m.value: m for m in ArpOp}


@dataclass(frozen=True, slots=True)
class ArpPacket:
    """An Ethernet/IPv4 ARP packet. ``op`` is an :class:`ArpOp` when known, else a plain int."""

    op: int
    sender_mac: MacAddress
    sender_ip: IPv4Address
    target_mac: MacAddress
    target_ip: IPv4Address

    def __post_init__(self) -> None:
        check_uint(self.op, 16, "arp.op")

    @classmethod
    def request(
        cls, sender_mac: MacAddress, sender_ip: IPv4Address, target_ip: IPv4Address
    ) -> ArpPacket:
        """A request for ``target_ip``; the target MAC is zero (RFC 5227 section 2.1.1)."""
        return cls(ArpOp.REQUEST, sender_mac, sender_ip, ZERO_MAC, target_ip)

    @classmethod
    def announcement(cls, mac: MacAddress, ip: IPv4Address) -> ArpPacket:
        """A gratuitous request announcing ``ip`` at ``mac`` (RFC 5227 section 2.3)."""
        return cls(ArpOp.REQUEST, mac, ip, ZERO_MAC, ip)

    @property
    def is_probe(self) -> bool:
        """RFC 5227 section 2.1.1: a request whose sender IP is "all zeroes"."""
        return self.op == ArpOp.REQUEST and self.sender_ip == _UNSPECIFIED

    @property
    def is_gratuitous(self) -> bool:
        """Sender and target IP are the same, non-zero address (request or reply form)."""
        return self.sender_ip == self.target_ip and self.sender_ip != _UNSPECIFIED

    def encode(self) -> bytes:
        return _ARP.pack(
            HTYPE_ETHERNET,
            EtherType.IPV4,
            HLEN_ETHERNET,
            PLEN_IPV4,
            self.op,
            self.sender_mac.packed,
            self.sender_ip.packed,
            self.target_mac.packed,
            self.target_ip.packed,
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> ArpPacket:
        """Decode the 28 bytes at ``offset``; anything after them is ignored."""
        need(len(data), offset, SIZE, "arp")
        htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(data, offset)
        if htype != HTYPE_ETHERNET:
            raise FieldValueError(
                f"hardware type {htype}, not Ethernet", field="arp.htype", offset=offset
            )
        if ptype != EtherType.IPV4:
            raise FieldValueError(
                f"protocol type {ptype:#06x}, not IPv4", field="arp.ptype", offset=offset + 2
            )
        if hlen != HLEN_ETHERNET:
            raise FieldValueError(
                f"hardware length {hlen}, not 6", field="arp.hlen", offset=offset + 4
            )
        if plen != PLEN_IPV4:
            raise FieldValueError(
                f"protocol length {plen}, not 4", field="arp.plen", offset=offset + 5
            )
        return cls(
            op=_OPS.get(op, op),
            sender_mac=MacAddress(sha),
            sender_ip=IPv4Address(spa),
            target_mac=MacAddress(tha),
            target_ip=IPv4Address(tpa),
        )


def reply_to(request: ArpPacket, mac: MacAddress) -> ArpPacket:
    """The reply saying that ``request.target_ip`` is at ``mac``.

    RFC 826: "Swap hardware and protocol fields, putting the local hardware and protocol
    addresses in the sender fields." Replying to a probe gives a reply whose target IP is 0.0.0.0;
    whether to defend an address that way is the caller's decision (RFC 5227 section 2.4).
    """
    if request.op != ArpOp.REQUEST:
        raise EncodeError(f"reply_to needs a request, got op {request.op}")
    return ArpPacket(
        op=ArpOp.REPLY,
        sender_mac=mac,
        sender_ip=request.target_ip,
        target_mac=request.sender_mac,
        target_ip=request.sender_ip,
    )
