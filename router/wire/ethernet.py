"""Ethernet II frames (IEEE 802.3 with an EtherType), with at most one IEEE 802.1Q tag.

The frame is what a TAP device hands over: destination, source, EtherType, payload. There is no
preamble and no FCS, and :meth:`EthernetFrame.encode` does not pad to the 60-byte minimum (the
kernel pads frames it puts on a wire; a TAP peer does not need it). Trailing padding on a received
frame stays in ``payload``: the IPv4 total length or the ARP size says where the packet ends.

MAC addresses are :class:`MacAddress` values throughout ``router.wire``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from router.wire.errors import EncodeError, check_uint, need

_HEADER = struct.Struct("!6s6sH")
_TAG = struct.Struct("!HH")  # TCI, then the EtherType of the payload

HEADER_SIZE = _HEADER.size
TAG_SIZE = _TAG.size


class EtherType(IntEnum):
    """EtherTypes the appliance handles (IEEE "EtherType" registry; RFC 7042 appendix B)."""

    IPV4 = 0x0800
    ARP = 0x0806
    VLAN = 0x8100  # IEEE 802.1Q customer tag
    IPV6 = 0x86DD


_ETHERTYPES: dict[int, EtherType] = {m.value: m for m in EtherType}


@dataclass(frozen=True, slots=True, order=True, repr=False)
class MacAddress:
    """A 48-bit IEEE 802 MAC address, held as its 6 packed bytes."""

    packed: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.packed, bytes) or len(self.packed) != 6:
            raise EncodeError(f"a MAC address is 6 bytes, not {self.packed!r}")

    @classmethod
    def parse(cls, text: str) -> MacAddress:
        """Parse ``aa:bb:cc:dd:ee:ff`` (``-`` also accepted as separator, any case).

        Raises :class:`ValueError` on anything else: this reads configuration, not peer bytes.
        """
        parts = text.strip().replace("-", ":").split(":")
        if len(parts) != 6 or not all(
            len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
        ):
            raise ValueError(f"not a MAC address: {text!r}")
        return cls(bytes(int(p, 16) for p in parts))

    def __str__(self) -> str:
        return self.packed.hex(":")

    def __repr__(self) -> str:
        return f"MacAddress('{self}')"

    @property
    def is_broadcast(self) -> bool:
        return self.packed == b"\xff" * 6

    @property
    def is_multicast(self) -> bool:
        """The group bit (least significant bit of the first octet) is set; broadcast included."""
        return bool(self.packed[0] & 0x01)

    @property
    def is_locally_administered(self) -> bool:
        return bool(self.packed[0] & 0x02)


BROADCAST_MAC = MacAddress(b"\xff" * 6)
ZERO_MAC = MacAddress(b"\x00" * 6)


@dataclass(frozen=True, slots=True)
class VlanTag:
    """An IEEE 802.1Q tag: priority (PCP), drop eligible (DEI) and VLAN ID."""

    vid: int
    pcp: int = 0
    dei: bool = False

    def __post_init__(self) -> None:
        check_uint(self.vid, 12, "vlan.vid")
        check_uint(self.pcp, 3, "vlan.pcp")
        if not isinstance(self.dei, bool):
            raise EncodeError(f"vlan.dei={self.dei!r} is not a bool")

    @property
    def tci(self) -> int:
        """The 16-bit Tag Control Information: PCP(3) DEI(1) VID(12)."""
        return (self.pcp << 13) | (int(self.dei) << 12) | self.vid

    @classmethod
    def from_tci(cls, tci: int) -> VlanTag:
        return cls(vid=tci & 0x0FFF, pcp=tci >> 13, dei=bool(tci & 0x1000))


@dataclass(frozen=True, slots=True)
class EthernetFrame:
    """An Ethernet II frame without FCS.

    ``ethertype`` is the type of ``payload``: with a ``vlan`` tag it is the EtherType after the
    tag, and the 0x8100 before the tag is implied. Known values decode as :class:`EtherType`,
    others (including IEEE 802.3 length values below 0x0600) stay plain ints.
    """

    dst: MacAddress
    src: MacAddress
    ethertype: int
    payload: bytes = b""
    vlan: VlanTag | None = None

    def __post_init__(self) -> None:
        check_uint(self.ethertype, 16, "ethernet.ethertype")
        if not isinstance(self.payload, bytes):
            raise EncodeError("ethernet.payload must be bytes")
        if self.ethertype == EtherType.VLAN and self.vlan is None:
            # It would decode as a tagged frame: the round trip could not be exact.
            raise EncodeError("ethernet.ethertype 0x8100 needs a vlan tag")

    @property
    def header_size(self) -> int:
        return HEADER_SIZE + (TAG_SIZE if self.vlan is not None else 0)

    def encode(self) -> bytes:
        if self.vlan is None:
            return _HEADER.pack(self.dst.packed, self.src.packed, self.ethertype) + self.payload
        return (
            _HEADER.pack(self.dst.packed, self.src.packed, EtherType.VLAN)
            + _TAG.pack(self.vlan.tci, self.ethertype)
            + self.payload
        )

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> EthernetFrame:
        """Decode the frame starting at ``offset``; the payload runs to the end of ``data``."""
        n = len(data)
        need(n, offset, HEADER_SIZE, "ethernet.header")
        dst, src, ethertype = _HEADER.unpack_from(data, offset)
        pos = offset + HEADER_SIZE
        vlan = None
        if ethertype == EtherType.VLAN:
            need(n, pos, TAG_SIZE, "ethernet.vlan")
            tci, ethertype = _TAG.unpack_from(data, pos)
            vlan = VlanTag.from_tci(tci)
            pos += TAG_SIZE
        return cls(
            dst=MacAddress(dst),
            src=MacAddress(src),
            ethertype=_ETHERTYPES.get(ethertype, ethertype),
            payload=bytes(data[pos:]),
            vlan=vlan,
        )
