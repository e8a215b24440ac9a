"""Round trips and garbage for every MH message and option, in every dialect."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.wire.dialect import Dialect
from router.wire.errors import DecodeError
from router.wire.mh import MESSAGE_CLASSES, MobilityMessage, checksum_ok, decode_message
from router.wire.mh_options import MobilityOption, decode_option
from tests.property.strategies import DIALECTS, message_strategy, option_strategy

SRC = IPv6Address("2001:db8:1::1")
DST = IPv6Address("2001:db8:2::1")
SETTINGS = settings(max_examples=150, suppress_health_check=[HealthCheck.filter_too_much])


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_message_round_trip(cls: type[MobilityMessage], dialect_name: str) -> None:
    dialect = DIALECTS[dialect_name]

    @SETTINGS
    @given(message_strategy(dialect, cls))
    def check(message: MobilityMessage) -> None:
        wire = message.encode(SRC, DST)
        assert len(wire) % 8 == 0 and wire[1] == len(wire) // 8 - 1
        assert checksum_ok(wire, SRC, DST)
        decoded = decode_message(wire, dialect, src=SRC, dst=DST)
        assert decoded == message
        assert decoded.encode(SRC, DST) == wire

    check()


@pytest.mark.parametrize("dialect_name", sorted(DIALECTS))
def test_option_round_trip(dialect_name: str) -> None:
    dialect = DIALECTS[dialect_name]

    @settings(max_examples=400)
    @given(option_strategy(dialect))
    def check(option: MobilityOption) -> None:
        tlv = option.encode()
        assert tlv[0] == option.option_type and tlv[1] == len(tlv) - 2
        assert decode_option(tlv[0], tlv[2:], 2, dialect) == option

    check()


def _only_decode_errors(data: bytes, dialect: Dialect) -> None:
    """Garbage decodes or raises DecodeError; what decodes is a valid message that round-trips.

    (Decoders build messages without re-validating fixed-width fields: this keeps them honest.)
    """
    try:
        decode_message(data, dialect, src=SRC, dst=DST)
        message = decode_message(data, dialect)
    except DecodeError as exc:
        assert exc.field and 0 <= exc.offset <= max(len(data), 8)
        return
    from router.wire.fields import validate

    validate(message)
    for option in message.options:
        validate(option)
    assert decode_message(message.encode(), dialect) == message


@settings(max_examples=1000)
@given(st.binary(max_size=300), st.sampled_from(sorted(DIALECTS)))
def test_garbage_raises_only_decode_error(data: bytes, dialect_name: str) -> None:
    _only_decode_errors(data, DIALECTS[dialect_name])


@st.composite
def framed_garbage(draw: st.DrawFn) -> bytes:
    """Bytes past the framing checks (proto 59, right Header Len), random beyond."""
    units = draw(st.integers(0, 20))
    mh_type = draw(st.sampled_from([0, 5, 6, 7, 13, 16, draw(st.integers(0, 255))]))
    body = draw(st.binary(min_size=(units + 1) * 8 - 3, max_size=(units + 1) * 8 - 3))
    return bytes((59, units, mh_type)) + body


@settings(max_examples=1000)
@given(framed_garbage(), st.sampled_from(sorted(DIALECTS)))
def test_framed_garbage_raises_only_decode_error(data: bytes, dialect_name: str) -> None:
    _only_decode_errors(data, DIALECTS[dialect_name])


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.data())
def test_mutated_messages_raise_only_decode_error(data: st.DataObject) -> None:
    dialect = DIALECTS[data.draw(st.sampled_from(sorted(DIALECTS)))]
    cls = data.draw(st.sampled_from(MESSAGE_CLASSES))
    wire = bytearray(data.draw(message_strategy(dialect, cls)).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(st.integers(0, 255))
    _only_decode_errors(bytes(wire), dialect)
