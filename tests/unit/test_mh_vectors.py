"""Golden vectors (wire-reference 2.9): decode to the expected fields, re-encode identically."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from router.wire import mh_auth
from router.wire.constants import (
    AccessTechnologyType,
    BAFlag,
    BRAStatus,
    BRFlag,
    BUFlag,
    HandoffIndicator,
    HoAReplyStatus,
    RevocationTrigger,
    Status,
)
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    MobilityMessage,
    checksum_ok,
    decode_message,
)
from router.wire.mh_options import (
    AccessTechnologyTypeOption,
    HandoffIndicatorOption,
    HomeNetworkPrefix,
    IPv4DefaultRouterAddress,
    IPv4DHCPSupportMode,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    LinkLocalAddress,
    MobileNodeIdentifier,
    MobilityMessageAuthentication,
    SeedIPv4HomeAddress,
    Timestamp,
)
from tests.vectors import load_hex

DMPA = IPv6Address("2001:db8:1::1")
DLMAP = IPv6Address("2001:db8:2::1")
OLD_DMPA = IPv6Address("2001:db8:3::1")
NAI = MobileNodeIdentifier.from_nai("ms1@example.net")
TS = Timestamp(0x65000000 << 16)
KEY = bytes(range(1, 17))
#: Dual-stack (V=0) vectors: the DMPA's link-local address is derived from the default
#: pseudo-MAC 02:00:5e:00:00:01 (modified EUI-64), the same on every DMPA.
LLA = LinkLocalAddress(IPv6Address("fe80::5eff:fe00:1"))
ASK_PREFIX = HomeNetworkPrefix(0, IPv6Address("::"))
PREFIX = HomeNetworkPrefix(64, IPv6Address("2001:db8:ff00:17::"))
HI = HandoffIndicatorOption(HandoffIndicator.ATTACHMENT_OVER_NEW_INTERFACE)
ATT = AccessTechnologyTypeOption(AccessTechnologyType.IEEE_802_3)

EXPECTED: dict[str, tuple[Dialect, IPv6Address, IPv6Address, int, MobilityMessage]] = {
    "pbu_rfc5844": (
        RFC5844,
        DMPA,
        DLMAP,
        0x25EC,
        BindingUpdate(
            sequence=1,
            flags=BUFlag.A | BUFlag.H | BUFlag.P,
            lifetime=900,
            options=(
                NAI,
                HandoffIndicatorOption(HandoffIndicator.ATTACHMENT_OVER_NEW_INTERFACE),
                AccessTechnologyTypeOption(AccessTechnologyType.IEEE_802_3),
                TS,
                IPv4HomeAddressRequest(IPv4Address("0.0.0.0"), 0),
            ),
        ),
    ),
    "pba_rfc5844": (
        RFC5844,
        DLMAP,
        DMPA,
        0x8543,
        BindingAck(
            status=Status.ACCEPTED,
            flags=BAFlag.P,
            sequence=1,
            lifetime=900,
            options=(
                NAI,
                HandoffIndicatorOption(HandoffIndicator.ATTACHMENT_OVER_NEW_INTERFACE),
                AccessTechnologyTypeOption(AccessTechnologyType.IEEE_802_3),
                TS,
                IPv4HomeAddressReply(HoAReplyStatus.SUCCESS, IPv4Address("10.1.0.23"), 24),
                IPv4DefaultRouterAddress(IPv4Address("10.1.0.1")),
                IPv4DHCPSupportMode(server=False),
            ),
        ),
    ),
    "bri": (
        DRAFT,
        DLMAP,
        OLD_DMPA,
        0x33A5,
        BindingRevocationIndication(
            trigger=RevocationTrigger.INTER_MAG_HANDOVER_SAME_ACCESS_TYPE,
            sequence=7,
            flags=BRFlag.P,
            options=(NAI,),
        ),
    ),
    "bra": (
        DRAFT,
        OLD_DMPA,
        DLMAP,
        0xD5E4,
        BindingRevocationAck(status=BRAStatus.SUCCESS, sequence=7, flags=BRFlag.P),
    ),
    "pbu_draft_auth": (
        DRAFT,
        DMPA,
        DLMAP,
        0x9083,
        BindingUpdate(
            sequence=2,
            flags=DRAFT.pbu_flags(),
            lifetime=900,
            options=(
                NAI,
                SeedIPv4HomeAddress(0, IPv4Address("0.0.0.0")),
                MobilityMessageAuthentication(256, bytes.fromhex("30a6f1ab5923a8624992d604")),
            ),
        ),
    ),
    "pba_draft": (
        DRAFT,
        DLMAP,
        DMPA,
        0x9ED2,
        BindingAck(
            status=Status.ACCEPTED,
            flags=DRAFT.pba_flags(ipv4=True),
            sequence=2,
            lifetime=900,
            options=(NAI, SeedIPv4HomeAddress(1, IPv4Address("10.1.0.23"))),
        ),
    ),
    "pbu_draft_dual": (
        DRAFT,
        DMPA,
        DLMAP,
        0x5A39,
        BindingUpdate(
            sequence=3,
            flags=BUFlag.A | BUFlag.H | BUFlag.P,
            lifetime=900,
            options=(NAI, SeedIPv4HomeAddress(0, IPv4Address("0.0.0.0")), ASK_PREFIX, LLA),
        ),
    ),
    "pba_draft_dual": (
        DRAFT,
        DLMAP,
        DMPA,
        0xE3EF,
        BindingAck(
            status=Status.ACCEPTED,
            flags=BAFlag.P,
            sequence=3,
            lifetime=900,
            options=(NAI, SeedIPv4HomeAddress(1, IPv4Address("10.1.0.23")), PREFIX, LLA),
        ),
    ),
    "pbu_rfc5844_dual": (
        RFC5844,
        DMPA,
        DLMAP,
        0x9A15,
        BindingUpdate(
            sequence=4,
            flags=BUFlag.A | BUFlag.H | BUFlag.P,
            lifetime=900,
            options=(NAI, HI, ATT, TS, IPv4HomeAddressRequest(IPv4Address(0), 0), ASK_PREFIX, LLA),
        ),
    ),
    "pba_rfc5844_dual": (
        RFC5844,
        DLMAP,
        DMPA,
        0xF25B,
        BindingAck(
            status=Status.ACCEPTED,
            flags=BAFlag.P,
            sequence=4,
            lifetime=900,
            options=(
                NAI,
                HI,
                ATT,
                TS,
                IPv4HomeAddressReply(HoAReplyStatus.SUCCESS, IPv4Address("10.1.0.23"), 24),
                IPv4DefaultRouterAddress(IPv4Address("10.1.0.1")),
                PREFIX,
                LLA,
            ),
        ),
    ),
    "pbu_rfc5213_v6only": (
        RFC5844,
        DMPA,
        DLMAP,
        0xBE23,
        BindingUpdate(
            sequence=5,
            flags=BUFlag.A | BUFlag.H | BUFlag.P,
            lifetime=900,
            options=(NAI, HI, ATT, TS, ASK_PREFIX, LLA),
        ),
    ),
}

#: The vectors the tshark oracle dissects too (tests/oracle/test_mh_tshark.py).
DUAL_STACK_VECTORS = (
    "pbu_draft_dual",
    "pba_draft_dual",
    "pbu_rfc5844_dual",
    "pba_rfc5844_dual",
    "pbu_rfc5213_v6only",
)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_decodes_to_expected_fields(name: str) -> None:
    dialect, src, dst, checksum, expected = EXPECTED[name]
    raw = load_hex(f"mh/{name}")
    assert int.from_bytes(raw[4:6], "big") == checksum
    assert checksum_ok(raw, src, dst)
    assert decode_message(raw, dialect, src=src, dst=dst) == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_vector_reencodes_to_identical_bytes(name: str) -> None:
    _, src, dst, _, expected = EXPECTED[name]
    assert expected.encode(src, dst) == load_hex(f"mh/{name}")


def test_draft_flags_are_the_seed_figure_positions() -> None:
    # seed 3.1.1: |A|H|L|K|M|R|P|V| -> V is the 8th bit of the BU flags; 3.1.2: |K|R|P|V|.
    assert DRAFT.pbu_flags() == 0xC300
    assert DRAFT.pba_flags(ipv4=True) == 0x30
    assert RFC5844.pbu_flags() == 0xC200
    assert DRAFT.bu_has_v(0xC300) and not RFC5844.bu_has_v(0xC300)
    # seed 3.1.1: V=0 registers a dual-stack MS; its PBA has no V either (seed 3.1.2).
    assert DRAFT.pbu_flags(v=False) == 0xC200 == RFC5844.pbu_flags(v=False)
    assert not DRAFT.bu_has_v(DRAFT.pbu_flags(v=False))
    assert DRAFT.pba_flags(ipv4=False) == 0x20


def test_the_link_local_address_is_the_pseudo_mac_eui64() -> None:
    from router.wire.ethernet import MacAddress
    from router.wire.nd import link_local_from_mac

    assert link_local_from_mac(MacAddress.parse("02:00:5e:00:00:01")) == LLA.address


def test_the_draft_vector_reads_as_experimental_option_in_rfc5844() -> None:
    from router.wire.mh_options import ExperimentalOption

    message = decode_message(load_hex("mh/pba_draft"), RFC5844)
    assert message.find(SeedIPv4HomeAddress) is None
    assert message.find(ExperimentalOption) == ExperimentalOption(bytes.fromhex("00010a010017"))


def test_authenticator_vector() -> None:
    raw = load_hex("mh/pbu_draft_auth")
    assert mh_auth.verify(raw, KEY, DMPA)
    assert not mh_auth.verify(raw, bytes(16), DMPA)
    assert not mh_auth.verify(raw, KEY, OLD_DMPA)
    unsigned = EXPECTED["pbu_draft_auth"][4]
    assert mh_auth.sign(unsigned, KEY, DMPA, src=DMPA, dst=DLMAP) == raw


def test_tampered_message_fails_authentication() -> None:
    raw = bytearray(load_hex("mh/pbu_draft_auth"))
    raw[37] ^= 0x01  # one bit of the HoA in the seed option
    assert not mh_auth.verify(bytes(raw), KEY, DMPA)
