"""IPv4 header codec (RFC 791)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.wire.errors import (
    ChecksumError,
    EncodeError,
    FieldValueError,
    LengthError,
    TruncatedError,
)
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet
from tests.unit._checksum_reference import reference_checksum

# The header of the worked example in Wikipedia's "IPv4 header checksum" article: 115 bytes,
# DF, TTL 64, UDP, 192.168.0.1 -> 192.168.0.199, checksum 0xb861.
WIKI_HEADER = bytes.fromhex("45000073" "00004000" "4011b861" "c0a80001" "c0a800c7")  # fmt: skip
WIKI_PACKET = WIKI_HEADER + bytes(range(95))

# A 24-byte header carrying a Router Alert option (RFC 2113: 94 04 00 00), checksum computed
# below from scratch.
RA_HEADER = bytearray.fromhex(
    "46c00020" "12344000" "01020000" "c0000201" "e0000016" "94040000"
)  # fmt: skip
RA_HEADER[10:12] = reference_checksum(bytes(RA_HEADER)).to_bytes(2, "big")
RA_PACKET = bytes(RA_HEADER) + b"\x22\x00\xfa\x02\x00\x00\x00\x00"


def test_decode_known_header() -> None:
    assert reference_checksum(WIKI_HEADER) == 0  # the vector is self-consistent
    packet = IPv4Packet.decode(WIKI_PACKET)
    assert packet.src == IPv4Address("192.168.0.1")
    assert packet.dst == IPv4Address("192.168.0.199")
    assert packet.protocol is IPProto.UDP
    assert packet.ttl == 64
    assert packet.flags == IPv4Flags.DF and packet.dont_fragment
    assert packet.fragment_offset == 0 and not packet.is_fragment
    assert packet.identification == 0
    assert packet.tos == 0 and packet.options == b""
    assert packet.payload == bytes(range(95))
    assert packet.total_length == 115 and packet.header_length == 20
    assert packet.encode() == WIKI_PACKET


def test_encode_computes_the_checksum() -> None:
    packet = IPv4Packet(
        src=IPv4Address("192.168.0.1"),
        dst=IPv4Address("192.168.0.199"),
        protocol=IPProto.UDP,
        payload=bytes(range(95)),
        flags=IPv4Flags.DF,
    )
    assert packet.encode()[10:12] == b"\xb8\x61"


def test_options_and_tos() -> None:
    packet = IPv4Packet.decode(RA_PACKET)
    assert packet.options == bytes.fromhex("94040000")
    assert packet.header_length == 24
    assert packet.protocol is IPProto.IGMP
    assert (packet.dscp, packet.ecn) == (0x30, 0)  # CS6
    assert packet.dst == IPv4Address("224.0.0.22")
    assert packet.payload == RA_PACKET[24:]
    assert packet.encode() == RA_PACKET


def test_trailing_bytes_are_ignored() -> None:
    packet = IPv4Packet.decode(RA_PACKET + bytes(14))  # Ethernet padding
    assert packet.encode() == RA_PACKET


def test_decode_at_offset_reports_absolute_offsets() -> None:
    frame = bytes(14) + WIKI_PACKET
    assert IPv4Packet.decode(frame, 14) == IPv4Packet.decode(WIKI_PACKET)
    bad = bytearray(frame)
    bad[14 + 10] ^= 0xFF
    with pytest.raises(ChecksumError) as info:
        IPv4Packet.decode(bad, 14)
    assert (info.value.field, info.value.offset) == ("ipv4.checksum", 24)


def test_fragment_fields() -> None:
    header = bytearray(WIKI_HEADER)
    header[6:8] = (0x2000 | 185).to_bytes(2, "big")  # MF, offset 185 * 8 = 1480
    header[10:12] = b"\x00\x00"
    header[10:12] = reference_checksum(bytes(header)).to_bytes(2, "big")
    packet = IPv4Packet.decode(bytes(header) + bytes(95))
    assert packet.flags == IPv4Flags.MF
    assert packet.fragment_offset == 185
    assert packet.is_fragment and not packet.dont_fragment
    assert packet.encode()[:20] == bytes(header)


def test_truncated_fixed_part() -> None:
    with pytest.raises(TruncatedError) as info:
        IPv4Packet.decode(WIKI_HEADER[:19])
    assert (info.value.field, info.value.offset) == ("ipv4.header", 0)


def test_bad_version() -> None:
    with pytest.raises(FieldValueError) as info:
        IPv4Packet.decode(b"\x65" + WIKI_PACKET[1:])
    assert (info.value.field, info.value.offset) == ("ipv4.version", 0)


def test_bad_ihl() -> None:
    with pytest.raises(LengthError) as info:
        IPv4Packet.decode(b"\x44" + WIKI_PACKET[1:])
    assert (info.value.field, info.value.offset) == ("ipv4.ihl", 0)


def test_total_length_below_header_length() -> None:
    data = b"\x4f" + WIKI_PACKET[1:2] + (40).to_bytes(2, "big") + WIKI_PACKET[4:]  # IHL 15 = 60
    with pytest.raises(LengthError) as info:
        IPv4Packet.decode(data)
    assert (info.value.field, info.value.offset) == ("ipv4.total_length", 2)


def test_total_length_beyond_buffer() -> None:
    with pytest.raises(TruncatedError) as info:
        IPv4Packet.decode(WIKI_PACKET[:114])
    assert (info.value.field, info.value.offset) == ("ipv4.total_length", 2)


def test_bad_checksum() -> None:
    data = WIKI_HEADER[:10] + b"\xb8\x62" + WIKI_PACKET[12:]
    with pytest.raises(ChecksumError) as info:
        IPv4Packet.decode(data)
    assert (info.value.field, info.value.offset) == ("ipv4.checksum", 10)
    assert IPv4Packet.decode(data, verify_checksum=False) == IPv4Packet.decode(WIKI_PACKET)


def test_unknown_protocol_stays_int() -> None:
    header = bytearray(WIKI_HEADER)
    header[9] = 253  # RFC 3692 experimentation
    packet = IPv4Packet.decode(bytes(header) + bytes(95), verify_checksum=False)
    assert packet.protocol == 253 and type(packet.protocol) is int


@pytest.mark.parametrize(
    "kwargs",
    [
        {"options": b"\x01\x01\x01"},
        {"options": bytes(44)},
        {"ttl": 256},
        {"tos": -1},
        {"identification": 0x10000},
        {"fragment_offset": 0x2000},
        {"flags": 8},
        {"ttl": True},
        {"payload": bytes(65516)},
    ],
)
def test_encode_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        IPv4Packet(IPv4Address(0), IPv4Address(0), IPProto.UDP, **kwargs)  # type: ignore[arg-type]


def test_largest_packet() -> None:
    packet = IPv4Packet(IPv4Address(0), IPv4Address(0), IPProto.UDP, payload=bytes(65515))
    assert len(packet.encode()) == 65535


def test_protocol_width() -> None:
    with pytest.raises(EncodeError):
        IPv4Packet(IPv4Address(0), IPv4Address(0), 256)
