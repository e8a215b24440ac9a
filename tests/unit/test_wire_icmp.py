"""ICMPv4 (RFC 792, RFC 950, RFC 1191)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.wire.errors import ChecksumError, EncodeError, FieldValueError, TruncatedError
from router.wire.icmp import (
    IcmpAddressMask,
    IcmpEcho,
    IcmpMessage,
    IcmpTimestamp,
    IcmpType,
    TimeExceededCode,
    UnreachableCode,
    destination_unreachable,
    fragmentation_needed,
    quote_datagram,
    time_exceeded,
    ut_milliseconds,
)
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet
from tests.unit._checksum_reference import reference_checksum
from tests.vectors import load_hex

DATA = b"abcdefghijklmnopqrstuvwabcdefghi"  # what Windows ping sends


def _with_checksum(message: bytes) -> bytes:
    return message[:2] + reference_checksum(message).to_bytes(2, "big") + message[4:]


ECHO_REQUEST = _with_checksum(bytes.fromhex("0800" "0000" "0001" "002a") + DATA)  # fmt: skip


def test_decode_echo_request() -> None:
    echo = IcmpEcho.decode(ECHO_REQUEST)
    assert echo == IcmpEcho(identifier=1, sequence=42, data=DATA)
    assert echo.encode() == ECHO_REQUEST
    message = IcmpMessage.decode(ECHO_REQUEST)
    assert message.type is IcmpType.ECHO_REQUEST
    assert (message.code, message.rest, message.payload) == (0, b"\x00\x01\x00\x2a", DATA)


def test_echo_reply() -> None:
    reply = IcmpEcho.decode(ECHO_REQUEST).make_reply()
    wire = reply.encode()
    assert wire == _with_checksum(b"\x00\x00\x00\x00" + ECHO_REQUEST[4:])
    # Only the type changed, by 8 << 8: the checksum moves by the same amount (RFC 1624 idea).
    assert int.from_bytes(wire[2:4], "big") == int.from_bytes(ECHO_REQUEST[2:4], "big") + 0x0800
    assert IcmpEcho.decode(wire) == reply and reply.reply


def test_odd_length_payload() -> None:
    echo = IcmpEcho(7, 8, b"odd")
    wire = echo.encode()
    assert reference_checksum(wire) == 0
    assert IcmpEcho.decode(wire) == echo


def test_bad_checksum() -> None:
    data = bytearray(ECHO_REQUEST)
    data[-1] ^= 1
    with pytest.raises(ChecksumError) as info:
        IcmpMessage.decode(b"\x00" * 20 + data, 20)
    assert (info.value.field, info.value.offset) == ("icmp.checksum", 22)
    assert IcmpEcho.decode(bytes(data), verify_checksum=False).data[-1] == ord("h")


def test_truncated() -> None:
    with pytest.raises(TruncatedError) as info:
        IcmpMessage.decode(ECHO_REQUEST[:7])
    assert (info.value.field, info.value.offset) == ("icmp.header", 0)


def test_echo_view_rejects_other_messages() -> None:
    unreachable = destination_unreachable(b"", UnreachableCode.PORT).encode()
    with pytest.raises(FieldValueError) as info:
        IcmpEcho.decode(unreachable)
    assert (info.value.field, info.value.offset) == ("icmp.type", 0)
    odd_code = _with_checksum(b"\x08\x01\x00\x00" + ECHO_REQUEST[4:])
    with pytest.raises(FieldValueError) as info:
        IcmpEcho.decode(odd_code)
    assert (info.value.field, info.value.offset) == ("icmp.code", 1)


# The datagram an ICMP error is about: a 24-byte header (one option), then UDP.
ORIGINAL = IPv4Packet(
    src=IPv4Address("192.0.2.10"),
    dst=IPv4Address("198.51.100.7"),
    protocol=IPProto.UDP,
    payload=bytes.fromhex("c35000350588abcd") + bytes(1400),
    flags=IPv4Flags.DF,
    options=b"\x01\x01\x01\x00",
).encode()


def test_fragmentation_needed() -> None:
    message = fragmentation_needed(ORIGINAL, 1240)
    wire = message.encode()
    assert wire[:2] == b"\x03\x04"
    assert wire[4:8] == b"\x00\x00\x04\xd8"  # unused, Next-Hop MTU 1240 (RFC 1191 section 4)
    assert wire[8:] == ORIGINAL[:32]  # 24-byte header + 8 bytes of data
    assert reference_checksum(wire) == 0
    decoded = IcmpMessage.decode(wire)
    assert decoded.type is IcmpType.DEST_UNREACHABLE
    assert decoded.code == UnreachableCode.FRAGMENTATION_NEEDED
    assert decoded.next_hop_mtu == 1240


def test_time_exceeded() -> None:
    wire = time_exceeded(ORIGINAL).encode()
    assert wire[:2] == b"\x0b\x00" and wire[4:8] == bytes(4)
    assert wire[8:] == ORIGINAL[:32]
    assert reference_checksum(wire) == 0
    reassembly = time_exceeded(ORIGINAL, TimeExceededCode.REASSEMBLY_EXCEEDED)
    assert reassembly.code == 1


def test_quote() -> None:
    assert quote_datagram(ORIGINAL) == ORIGINAL[:32]
    assert quote_datagram(ORIGINAL[:26]) == ORIGINAL[:26]
    assert quote_datagram(b"") == b""
    assert quote_datagram(memoryview(ORIGINAL)) == ORIGINAL[:32]


def test_encode_errors() -> None:
    with pytest.raises(EncodeError):
        destination_unreachable(ORIGINAL, UnreachableCode.HOST, next_hop_mtu=1400)
    with pytest.raises(EncodeError):
        fragmentation_needed(ORIGINAL, 0x10000)
    with pytest.raises(EncodeError):
        IcmpMessage(3, 4, rest=b"\x00")
    with pytest.raises(EncodeError):
        IcmpMessage(256, 0)
    with pytest.raises(EncodeError):
        IcmpEcho(0x10000, 0)


# --- Timestamp (RFC 792) and Address Mask (RFC 950): the vectors of tests/vectors/icmp ----------


def test_timestamp_vectors() -> None:
    wire = load_hex("icmp/timestamp_request")
    asked = IcmpTimestamp.from_message(IcmpMessage.decode(wire))  # checksum verified
    assert asked == IcmpTimestamp(0x1234, 9, 43_200_000)
    assert asked.encode() == wire
    answered = asked.make_reply(ut_milliseconds(1_000_000_000.25))
    assert answered == IcmpTimestamp(0x1234, 9, 43_200_000, 6_400_250, 6_400_250, reply=True)
    assert answered.encode() == load_hex("icmp/timestamp_reply")


def test_address_mask_vectors() -> None:
    wire = load_hex("icmp/mask_request")
    asked = IcmpAddressMask.from_message(IcmpMessage.decode(wire))
    assert asked == IcmpAddressMask(77, 3) and asked.encode() == wire
    answered = asked.make_reply(IPv4Address("255.255.255.0"))
    assert answered.encode() == load_hex("icmp/mask_reply")
    assert IcmpAddressMask.from_message(IcmpMessage.decode(answered.encode())) == answered


def test_ut_milliseconds_wrap_at_midnight() -> None:
    assert ut_milliseconds(86_400.0) == 0
    assert ut_milliseconds(86_399.999) == 86_399_999


@pytest.mark.parametrize(
    ("message", "field", "offset"),
    [
        (IcmpMessage(IcmpType.ECHO_REQUEST, 0, bytes(4), bytes(12)), "icmp.type", 0),
        (IcmpMessage(IcmpType.TIMESTAMP, 2, bytes(4), bytes(12)), "icmp.code", 1),
        (IcmpMessage(IcmpType.TIMESTAMP, 0, bytes(4), bytes(13)), "icmp.body", 8),
    ],
)
def test_timestamp_view_rejects(message: IcmpMessage, field: str, offset: int) -> None:
    with pytest.raises(FieldValueError) as info:
        IcmpTimestamp.from_message(message)
    assert (info.value.field, info.value.offset) == (field, offset)


def test_address_mask_view_rejects_a_short_body_and_bad_values() -> None:
    with pytest.raises(FieldValueError) as info:
        IcmpAddressMask.from_message(IcmpMessage(IcmpType.ADDRESS_MASK_REPLY, 0, bytes(4), b"ab"))
    assert (info.value.field, info.value.offset) == ("icmp.body", 8)
    with pytest.raises(EncodeError):
        IcmpTimestamp(1, 1, 1 << 32)
    with pytest.raises(EncodeError):
        IcmpAddressMask(1 << 16, 1)
