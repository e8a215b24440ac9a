"""docs/protocol.md says what the code does: its tables marked *(checked)* are read here.

* section 7, the codepoints: every row names an enum member of :mod:`router.wire.constants` and
  its value; every MH type we decode and every option type we encode must have a row;
* section 2, the dialects: each row is an attribute of :class:`router.wire.dialect.Dialect`
  with its value in ``DRAFT`` and ``RFC5844``;
* section 3, the messages: a DMPA and a DLMAP (the in-memory pair of tests/pair) register an MS,
  hand it over to a second DMPA and refuse a static address the MS is not entitled to, in each
  dialect; the first PBU, accepted PBA, rejected PBA, BRI and BRA on the wire must have the
  flags and the option types, in order, that the table gives.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from router.core.dmpa import Profile
from router.wire import constants
from router.wire.constants import OptionType, Status
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    MESSAGE_CLASSES,
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    MobilityMessage,
)
from router.wire.mh_options import OPTION_CLASSES
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, DMPA2, Pair

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
PADS = (OptionType.PAD1, OptionType.PADN)


def _section(title: str) -> str:
    """The text of the ``## <n>. <title>`` section."""
    text = DOC.read_text()
    match = re.search(rf"^## \d+\. {re.escape(title)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/protocol.md has no section {title!r}"
    return match.group(1)


def _table(title: str) -> list[list[str]]:
    lines = [line for line in _section(title).splitlines() if line.startswith("|")]
    assert len(lines) > 2, f"no table in {title!r}"
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines[2:]]


# --- section 7: codepoints --------------------------------------------------------------------


def test_codepoint_rows_match_the_registries() -> None:
    rows = _table("Codepoints")
    assert len(rows) > 50
    for name, value, *_ in rows:
        match = re.fullmatch(r"`(\w+)\.(\w+)`", name)
        assert match, f"not an enum member: {name}"
        enum = getattr(constants, match.group(1))
        member = enum[match.group(2)]
        assert int(member) == int(value, 0), f"{name} is {int(member)}, the doc says {value}"


def test_every_message_and_encoded_option_has_a_row() -> None:
    named = {cell[0].strip("`") for cell in _table("Codepoints")}
    for cls in MESSAGE_CLASSES:
        assert f"MHType.{constants.MHType(cls.MH_TYPE).name}" in named, cls.__name__
    for option_type in (*OPTION_CLASSES, OptionType.PAD1):
        assert f"OptionType.{OptionType(option_type).name}" in named, option_type


# --- section 2: dialects ----------------------------------------------------------------------


def _doc_value(cell: str) -> int | None:
    text = cell.strip("`")
    return None if text == "none" else int(text, 0)


def test_dialect_table_matches_the_dialects() -> None:
    rows = _table("The two dialects")
    attributes = {row[0].strip("`") for row in rows}
    assert attributes == {
        "bu_v_flag",
        "ba_v_flag",
        "seed_option_type",
        "status_hoa_unavailable",
        "status_invalid_hoa",
    }
    for attribute, draft, rfc5844, *_ in rows:
        name = attribute.strip("`")
        assert getattr(DRAFT, name) == _doc_value(draft), name
        assert getattr(RFC5844, name) == _doc_value(rfc5844), name
    # The two status rows are what the seed and RFC 5844 call them.
    assert DRAFT.status_hoa_unavailable == Status.NOT_AUTHORIZED_FOR_PREFIX == 142
    assert RFC5844.status_invalid_hoa == Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS


# --- section 3: messages on the wire ----------------------------------------------------------

MS = MacAddress.parse("02:00:00:00:00:01")
INTRUDER = MacAddress.parse("02:00:00:00:00:07")


def _exchange(dialect: Dialect) -> dict[str, MobilityMessage]:
    """Register, hand over, refuse; the first message of each kind the table describes."""
    pair = Pair(dialect)
    pair.profiles[MS] = Profile("ms@example.net", "dlmap", DLMAP_ADDRESS, None)
    pair.attach(MS, DMPA1)
    hoa = pair.dmpas[DMPA1].visitors[MS].hoa
    assert hoa is not None
    pair.advance(10)
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(1)
    # A static address the DLMAP has no profile for: refused (143 / 171).
    pair.profiles[INTRUDER] = Profile(
        "intruder@example.net", "static", DLMAP_ADDRESS, IPv4Address("192.0.2.10")
    )
    pair.attach(INTRUDER, DMPA1)
    first: dict[str, MobilityMessage] = {}

    def keep(kind: str, message: MobilityMessage) -> None:
        first.setdefault(kind, message)

    for wire in pair.sent:
        message = wire.message
        if isinstance(message, BindingUpdate):
            keep("PBU", message)
        elif isinstance(message, BindingAck):
            keep("PBA accepted" if message.status < 128 else "PBA rejected", message)
        elif isinstance(message, BindingRevocationIndication):
            keep("BRI", message)
        elif isinstance(message, BindingRevocationAck):
            keep("BRA", message)
    rejected = first.get("PBA rejected")
    assert isinstance(rejected, BindingAck) and rejected.status == dialect.status_invalid_hoa
    return first


@pytest.mark.parametrize("dialect", [DRAFT, RFC5844], ids=["draft", "rfc5844"])
def test_message_table_matches_the_wire(dialect: Dialect) -> None:
    rows = [row for row in _table("Messages") if row[0] == dialect.name]
    assert {row[1] for row in rows} == {"PBU", "PBA accepted", "PBA rejected", "BRI", "BRA"}
    sent = _exchange(dialect)
    for _, kind, mh_type, flags, options in rows:
        message = sent[kind]
        assert int(mh_type) == message.MH_TYPE, kind
        flag_value = re.search(r"\((0x[0-9A-Fa-f]+)\)", flags)
        assert flag_value, f"{dialect.name} {kind}: no (0x..) in {flags!r}"
        assert getattr(message, "flags", None) == int(flag_value.group(1), 16), kind
        documented = [int(n) for n in re.findall(r"\((\d+)\)", options)]
        on_wire = [
            o.option_type for o in getattr(message, "options", ()) if o.option_type not in PADS
        ]
        assert on_wire == documented, f"{dialect.name} {kind}: wire {on_wire}, doc {documented}"
