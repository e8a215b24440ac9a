"""What a DMPA accepts of an accepting PBA (seed 3.1.2, RFC 5213 8.2, RFC 5844 3.3.2).

A PBA that accepts a registration must be a proxy one (P; V too in the seed's dialect: "The P
flag SHOULD be 1 for IPv4 MS registration", "The 'V' bit is set to 1 only if the corresponding
proxy binding update has the IPv4 MS flag set") and must grant the home address the DMPA asked
for when it asked for one (static profile, DHCP lease, refresh). Anything else is counted and
ignored: the PBU is retransmitted as if no answer had come, and the genuine PBA still registers.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest

from router.core.actions import SendMH
from router.core.dmpa import Profile, State
from router.wire.constants import BAFlag
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingAck, BindingUpdate
from router.wire.mh_options import IPv4HomeAddressReply, MobilityOption, SeedIPv4HomeAddress
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, Pair

MS = MacAddress.parse("02:00:00:00:00:01")
NAI = "020000000001@example.net"
STATIC = IPv4Address("192.0.2.10")
LEASED = IPv4Address("192.0.2.7")
OTHER = IPv4Address("192.0.2.12")


def _other_address(option: MobilityOption) -> MobilityOption:
    if isinstance(option, SeedIPv4HomeAddress | IPv4HomeAddressReply):
        return dataclasses.replace(option, address=OTHER)
    return option


def _tamper(pba: BindingAck, how: str, dialect: Dialect) -> BindingAck:
    if how == "no-p":
        return dataclasses.replace(pba, flags=pba.flags & ~BAFlag.P)
    if how == "no-v":
        return dataclasses.replace(pba, flags=pba.flags & ~dialect.ba_v_flag)
    assert how == "other-hoa"
    return dataclasses.replace(pba, options=tuple(_other_address(o) for o in pba.options))


def start(pair: Pair, mode: str) -> None:
    """Attach the MS in ``mode``; in dhcp mode its DHCP ACK (through the DLMAP) gave LEASED."""
    hoa = STATIC if mode == "static" else None
    pair.profiles[MS] = Profile(NAI, mode, DLMAP_ADDRESS, hoa)  # type: ignore[arg-type]
    pair.attach(MS, DMPA1)
    if mode == "dhcp":
        assert pair.dlmap.pool.record(NAI, LEASED, pair.now + 600)
        dmpa = pair.dmpas[DMPA1]
        pair.apply(dmpa, dmpa.dhcp_ack(MS, LEASED, pair.now, pair.wall))
        pair.deliver()


CASES = [
    (DRAFT, "static", "no-p"),
    (DRAFT, "static", "no-v"),
    (DRAFT, "static", "other-hoa"),
    (DRAFT, "dhcp", "other-hoa"),
    (RFC5844, "static", "no-p"),
    (RFC5844, "static", "other-hoa"),
    (RFC5844, "dhcp", "other-hoa"),
]


@pytest.mark.parametrize(
    ("dialect", "mode", "how"), CASES, ids=[f"{d.name}-{m}-{h}" for d, m, h in CASES]
)
def test_a_pba_without_p_or_v_or_with_another_hoa_is_counted_and_the_pbu_retried(
    dialect: Dialect, mode: str, how: str
) -> None:
    pair = Pair(dialect, static={NAI: STATIC} if mode == "static" else {})
    tampered: list[BindingAck] = []

    def tamper_first_pba(wire) -> bool:  # type: ignore[no-untyped-def]
        if isinstance(wire.message, BindingAck) and wire.dst == DMPA1 and not tampered:
            tampered.append(_tamper(wire.message, how, dialect))
            return True  # the genuine one is lost; the tampered one is delivered instead
        return False

    pair.lose = tamper_first_pba
    start(pair, mode)
    assert len(tampered) == 1 and tampered[0].accepted
    pair.apply(pair.dlmap, [SendMH(DMPA1, tampered[0])])  # through the codec, from the DLMAP
    pair.deliver()
    dmpa = pair.dmpas[DMPA1]
    visitor = dmpa.visitors[MS]
    assert visitor.state is State.REGISTERING and visitor.bound is None
    assert pair.fastpath.get("dmpa1", {}) == {}
    name = "pba.other_address" if how == "other-hoa" else "pba.not_proxy"
    assert dmpa.counters[name] == 1
    # The PBU is retransmitted and the genuine answer registers the address asked for.
    pbus = len(pair.messages(BindingUpdate))
    pair.advance(2)
    assert len(pair.messages(BindingUpdate)) == pbus + 1
    expected = {"static": STATIC, "dhcp": LEASED}[mode]
    assert visitor.state is State.REGISTERED and visitor.hoa == expected
    assert pair.fastpath["dmpa1"][expected] == (DLMAP_ADDRESS, MS)
