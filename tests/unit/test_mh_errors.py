"""Bad input: each malformation raises its own DecodeError subclass with field and offset."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.errors import (
    AlignmentError,
    ChecksumError,
    DecodeError,
    EncodeError,
    FieldValueError,
    LengthError,
    TextEncodingError,
    TruncatedError,
    UnknownTypeError,
)
from router.wire.mh import BindingUpdate, decode_message
from router.wire.mh_options import (
    MobileNodeIdentifier,
    MobilityMessageAuthentication,
    PadN,
    SeedIPv4HomeAddress,
)
from tests.vectors import load_hex

SRC = IPv6Address("2001:db8:1::1")
DST = IPv6Address("2001:db8:2::1")


def mh(mh_type: int, body: bytes, *, proto: int = 59, header_len: int | None = None) -> bytes:
    total = 4 + 2 + len(body)
    hl = total // 8 - 1 if header_len is None else header_len
    return bytes((proto, hl, mh_type, 0, 0, 0)) + body


def raises(exc: type[DecodeError], data: bytes, field: str, offset: int) -> DecodeError:
    with pytest.raises(exc) as info:
        decode_message(data, DRAFT)
    assert info.value.field == field
    assert info.value.offset == offset
    return info.value


def test_shorter_than_the_minimum_mh() -> None:
    raises(TruncatedError, bytes((59, 0, 5, 0, 0)), "mh", 0)


def test_length_not_a_multiple_of_8_breaks_alignment() -> None:
    raises(AlignmentError, load_hex("mh/bra") + b"\x00\x00", "mh", 0)


def test_header_len_beyond_the_buffer_is_truncation() -> None:
    raises(TruncatedError, mh(5, bytes(10), header_len=3), "mh.header_len", 1)


def test_header_len_shorter_than_the_buffer() -> None:
    raises(LengthError, mh(5, bytes(18), header_len=1), "mh.header_len", 1)


def test_payload_proto_must_be_none() -> None:
    raises(FieldValueError, mh(5, bytes(10), proto=6), "mh.proto", 0)


def test_truncated_fixed_part_below_the_type_minimum() -> None:
    # A Binding Error needs Header Len >= 2 (24 bytes); 16 bytes cannot hold its fixed part.
    raises(LengthError, mh(7, bytes(10)), "mh.header_len", 1)
    raises(LengthError, mh(5, bytes(2)), "mh.header_len", 1)


def test_unknown_mh_type_carries_the_type_for_the_binding_error() -> None:
    error = raises(UnknownTypeError, mh(42, bytes(10)), "mh.type", 2)
    assert isinstance(error, UnknownTypeError) and error.type_value == 42


def test_unknown_revocation_type() -> None:
    raises(FieldValueError, mh(16, bytes((3,)) + bytes(9)), "br.type", 6)


def test_option_beyond_the_mh_length() -> None:
    # MN-ID at 12 claims 17 bytes of data; only 4 remain in a 16-byte message.
    raises(LengthError, mh(5, bytes(6) + bytes((8, 17, 1, 0x61))), "option.length", 13)


def test_option_type_byte_without_length_at_the_end() -> None:
    raises(TruncatedError, mh(5, bytes(6) + b"\x00\x00\x00\x08"), "option.length", 15)


def test_nai_that_is_not_utf8() -> None:
    body = bytes(6) + bytes((8, 4, 1, 0x61, 0xFF, 0xFE)) + bytes(6)
    raises(TextEncodingError, mh(5, body), "mn_id.identifier", 16)


def test_fixed_size_option_with_the_wrong_length() -> None:
    # Timestamp (27) must carry 8 bytes; this one says 6.
    raises(LengthError, mh(5, bytes(6) + bytes((27, 6)) + bytes(6) + bytes(4)), "timestamp", 13)


def test_an_option_after_the_authentication_option() -> None:
    auth = bytes((9, 5, 1, 0, 0, 1, 0))
    body = bytes(6) + b"\x00" + auth + bytes((23, 2, 0, 1))
    raises(LengthError, mh(5, body), "option", 20)


def test_bad_checksum() -> None:
    raw = bytearray(load_hex("mh/bri"))
    raw[5] ^= 0xFF
    with pytest.raises(ChecksumError):
        decode_message(bytes(raw), DRAFT, src=DST, dst=IPv6Address("2001:db8:3::1"))
    decode_message(bytes(raw), DRAFT)  # without addresses the kernel's check is trusted


def test_empty_mn_id_is_refused() -> None:
    raises(LengthError, mh(5, bytes(6) + bytes((8, 1, 1, 0))), "mn_id", 14)


def test_seed_option_of_another_length_is_experimental_not_seed() -> None:
    body = bytes(6) + bytes((18, 4)) + bytes(4) + bytes(6)
    message = decode_message(mh(5, body), DRAFT)
    assert message.find(SeedIPv4HomeAddress) is None


# --- our own mistakes raise EncodeError at construction ------------------------------------


def test_fields_out_of_range_are_refused_at_construction() -> None:
    with pytest.raises(EncodeError, match="sequence"):
        BindingUpdate(sequence=70000, flags=0, lifetime=0)
    with pytest.raises(EncodeError, match="spi"):
        MobilityMessageAuthentication(spi=-1, authenticator=b"")
    with pytest.raises(EncodeError):
        MobileNodeIdentifier(b"\xff\xfe")
    with pytest.raises(EncodeError):
        SeedIPv4HomeAddress(1 << 16, IPv4Address("192.0.2.1"))


def test_padding_and_auth_placement_are_the_encoders_job() -> None:
    auth = MobilityMessageAuthentication(256, bytes(12))
    nai = MobileNodeIdentifier.from_nai("ms1@example.net")
    with pytest.raises(EncodeError, match="last"):
        BindingUpdate(1, 0, 0, (auth, nai)).encode()
    with pytest.raises(EncodeError, match="padding"):
        BindingUpdate(1, 0, 0, (PadN(4), nai)).encode()


def test_too_large_a_message_is_refused() -> None:
    big = tuple(MobileNodeIdentifier(b"x" * 254) for _ in range(9))
    with pytest.raises(EncodeError, match="2048"):
        BindingUpdate(1, 0, 0, big).encode()


def test_dialect_settings_that_collide_are_refused() -> None:
    with pytest.raises(EncodeError, match="bu_v_flag"):
        Dialect.draft(v_bu=0x0200)  # that is P
    with pytest.raises(EncodeError, match="seed_option_type"):
        Dialect.draft(seed_option_type=8)  # that is MN-ID
    with pytest.raises(EncodeError, match="status"):
        Dialect.draft(status_hoa_unavailable=5)
    assert RFC5844.seed_option_type is None
