"""UDP over IPv4 (RFC 768)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.wire.errors import ChecksumError, EncodeError, LengthError, TruncatedError
from router.wire.udp import UdpDatagram
from tests.unit._checksum_reference import ipv4_pseudo_header, reference_checksum

SRC = IPv4Address("192.0.2.1")
DST = IPv4Address("192.0.2.10")
PAYLOAD = b"hello, world"


def _expected(payload: bytes, src: IPv4Address = SRC, dst: IPv4Address = DST) -> bytes:
    length = 8 + len(payload)
    header = (67).to_bytes(2, "big") + (68).to_bytes(2, "big") + length.to_bytes(2, "big")
    pseudo = ipv4_pseudo_header(src.packed, dst.packed, 17, length)
    checksum = reference_checksum(pseudo, header, b"\x00\x00", payload) or 0xFFFF
    return header + checksum.to_bytes(2, "big") + payload


def test_encode_matches_reference() -> None:
    wire = UdpDatagram(67, 68, PAYLOAD).encode(SRC, DST)
    assert wire == _expected(PAYLOAD)
    odd = UdpDatagram(67, 68, b"odd").encode(SRC, DST)
    assert odd == _expected(b"odd")


def test_decode_verifies() -> None:
    wire = _expected(PAYLOAD)
    datagram = UdpDatagram.decode(wire, src=SRC, dst=DST)
    assert datagram == UdpDatagram(67, 68, PAYLOAD)
    assert datagram.length == 20


def test_bad_checksum() -> None:
    wire = bytearray(_expected(PAYLOAD))
    wire[-1] ^= 0x20
    with pytest.raises(ChecksumError) as info:
        UdpDatagram.decode(bytes(20) + wire, 20, src=SRC, dst=DST)
    assert (info.value.field, info.value.offset) == ("udp.checksum", 26)
    # The pseudo-header is part of the sum: the right bytes from another source fail too.
    with pytest.raises(ChecksumError):
        UdpDatagram.decode(_expected(PAYLOAD), src=IPv4Address("192.0.2.2"), dst=DST)
    # Without addresses nothing is verified.
    assert UdpDatagram.decode(bytes(wire)).payload[-1] == ord("d") ^ 0x20


def test_zero_checksum_means_none() -> None:
    wire = UdpDatagram(67, 68, PAYLOAD).encode(SRC, DST, checksum=False)
    assert wire[6:8] == b"\x00\x00"
    assert UdpDatagram.decode(wire, src=SRC, dst=DST).payload == PAYLOAD


def test_computed_zero_is_sent_as_all_ones() -> None:
    # Choose the two payload bytes so that the one's complement sum is 0xFFFF: the checksum
    # computes to zero and must go out as 0xFFFF (RFC 768).
    pseudo = ipv4_pseudo_header(SRC.packed, DST.packed, 17, 10)
    # With a zero payload the checksum is ~S; adding ~S as the payload makes the sum S + ~S.
    complement = reference_checksum(pseudo, bytes.fromhex("00430044000a0000"), b"\x00\x00")
    payload = complement.to_bytes(2, "big")
    assert reference_checksum(pseudo, bytes.fromhex("00430044000a0000"), payload) == 0
    wire = UdpDatagram(67, 68, payload).encode(SRC, DST)
    assert wire[6:8] == b"\xff\xff"
    assert UdpDatagram.decode(wire, src=SRC, dst=DST).payload == payload


def test_trailing_bytes_are_ignored() -> None:
    wire = _expected(PAYLOAD)
    assert UdpDatagram.decode(wire + b"\x00\x00", src=SRC, dst=DST).payload == PAYLOAD


def test_truncated_header() -> None:
    with pytest.raises(TruncatedError) as info:
        UdpDatagram.decode(_expected(PAYLOAD)[:7])
    assert (info.value.field, info.value.offset) == ("udp.header", 0)


def test_length_below_header() -> None:
    wire = _expected(PAYLOAD)
    with pytest.raises(LengthError) as info:
        UdpDatagram.decode(wire[:4] + b"\x00\x07" + wire[6:])
    assert (info.value.field, info.value.offset) == ("udp.length", 4)


def test_length_beyond_buffer() -> None:
    with pytest.raises(TruncatedError) as info:
        UdpDatagram.decode(_expected(PAYLOAD)[:19])
    assert (info.value.field, info.value.offset) == ("udp.length", 4)


def test_both_addresses_or_neither() -> None:
    with pytest.raises(TypeError):
        UdpDatagram.decode(_expected(PAYLOAD), src=SRC)


def test_encode_errors() -> None:
    with pytest.raises(EncodeError):
        UdpDatagram(0x10000, 1)
    with pytest.raises(EncodeError):
        UdpDatagram(1, 1, bytes(65528))
    assert UdpDatagram(1, 1, bytes(65527)).length == 65535
