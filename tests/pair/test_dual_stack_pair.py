"""Dual-stack MSs between a DMPA and a DLMAP (seed 3.1.1 V=0, RFC 5213 home network prefixes):
both registered together, moved together at a handover, kept across restarts, and the RFC 5213
refusals. In memory, fake clock, every message through the wire codec."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from router.core.dmpa import Profile, State
from router.wire.constants import BRFlag, Status
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingAck, BindingRevocationIndication, BindingUpdate
from router.wire.mh_options import HomeNetworkPrefix, LinkLocalAddress
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, DMPA2, Pair

MS = MacAddress.parse("02:00:00:00:00:01")
MS2 = MacAddress.parse("02:00:00:00:00:02")
MS3 = MacAddress.parse("02:00:00:00:00:03")
POOL = IPv6Network("2001:db8:ff00::/63")  # two /64s
FIRST = IPv6Network("2001:db8:ff00::/64")
ROUTER_LL = IPv6Address("fe80::5eff:fe00:1")  # the harness's pseudo-MAC 02:00:5e:00:00:01

DIALECTS = pytest.mark.parametrize("dialect", [DRAFT, RFC5844], ids=["draft", "rfc5844"])


def dual(pair: Pair, mac: MacAddress = MS, *, at: IPv6Address = DMPA1, ipv6: bool = True) -> Pair:
    nai = f"{mac}@example.net".replace(":", "")
    pair.profiles[mac] = Profile(nai, "dlmap", DLMAP_ADDRESS, ipv6=ipv6)
    pair.attach(mac, at)
    return pair


def state(pair: Pair, mac: MacAddress = MS, at: IPv6Address = DMPA1):
    visitor = pair.dmpas[at].visitors[mac]
    assert visitor.state is State.REGISTERED
    return visitor


@DIALECTS
def test_a_dual_stack_ms_gets_both_in_one_binding(dialect: Dialect) -> None:
    pair = dual(Pair(dialect, ipv6_pool=POOL))
    visitor = state(pair)
    assert visitor.hoa is not None and visitor.prefix == FIRST
    pbu = pair.messages(BindingUpdate)[0]
    assert pbu.flags == dialect.pbu_flags(v=False)  # seed 3.1.1: V=0
    assert pbu.find(HomeNetworkPrefix) == HomeNetworkPrefix(0, IPv6Address("::"))
    assert pbu.find(LinkLocalAddress) == LinkLocalAddress(ROUTER_LL)
    pba = pair.messages(BindingAck)[0]
    assert pba.status == Status.ACCEPTED and pba.find(HomeNetworkPrefix).prefix_length == 64
    assert pair.fastpath["dlmap"][visitor.hoa] == (DMPA1, None)
    assert pair.prefixes["dlmap"] == {FIRST: (DMPA1, None)}
    assert pair.prefixes["dmpa1"] == {FIRST: (DLMAP_ADDRESS, MS)}
    bce = pair.dlmap.bindings[visitor.nai]
    assert (bce.hoa, bce.prefix) == (visitor.hoa, FIRST)


def test_an_ipv4_only_profile_keeps_v1_and_gets_no_prefix() -> None:
    pair = dual(Pair(ipv6_pool=POOL), ipv6=False)
    assert state(pair).prefix is None and pair.prefixes.get("dlmap", {}) == {}
    assert pair.messages(BindingUpdate)[0].flags == DRAFT.pbu_flags()


@DIALECTS
def test_a_dlmap_without_ipv6_service_leaves_the_ms_ipv4_only(dialect: Dialect) -> None:
    pair = dual(Pair(dialect))  # no ipv6_pool: V=0 refused (129 / 172)
    visitor = state(pair)
    assert visitor.hoa is not None and visitor.prefix is None and not visitor.ipv6
    first, second = pair.messages(BindingAck)[:2]
    assert first.status in (Status.ADMINISTRATIVELY_PROHIBITED, 172) and second.status == 0
    assert "ipv6_refused" in pair.event_kinds("dmpa1")


@DIALECTS
def test_handover_moves_the_address_and_the_prefix_together(dialect: Dialect) -> None:
    pair = dual(Pair(dialect, ipv6_pool=POOL))
    hoa = state(pair).hoa
    pair.advance(10)
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(1)
    moved = state(pair, at=DMPA2)
    assert (moved.hoa, moved.prefix) == (hoa, FIRST)  # asked ::/0, got its prefix back
    assert pair.prefixes["dlmap"] == {FIRST: (DMPA2, None)}
    assert pair.prefixes["dmpa2"] == {FIRST: (DLMAP_ADDRESS, MS)}
    assert pair.prefixes["dmpa1"] == {} and pair.fastpath["dmpa1"] == {}
    bri = pair.messages(BindingRevocationIndication, dst=DMPA1)
    assert len(bri) == 1 and not bri[0].flags & BRFlag.V  # the whole binding is revoked


def test_prefix_exhaustion_answers_130_and_the_ms_keeps_ipv4() -> None:
    pair = Pair(ipv6_pool=POOL)
    dual(pair, MS)
    dual(pair, MS2)
    dual(pair, MS3)
    refused = [p for p in pair.messages(BindingAck) if p.status == Status.INSUFFICIENT_RESOURCES]
    assert len(refused) == 1
    third = state(pair, MS3)
    assert third.hoa is not None and third.prefix is None  # registered again, IPv4 only
    assert pair.dlmap.counters["prefix.exhausted"] == 1


def test_a_foreign_prefix_answers_155_and_another_than_the_bindings_159() -> None:
    pair = dual(Pair(ipv6_pool=POOL))
    # A new MS whose DMPA claims a prefix it was never given: its first PBU is lost, then the
    # retransmission carries the claim.
    pair.lose = lambda wire: True
    dual(pair, MS2)
    pair.dmpas[DMPA1].visitors[MS2].prefix = IPv6Network("2001:db8:aaaa::/64")
    pair.lose = lambda wire: False
    pair.advance(2)
    refusals = [p.status for p in pair.messages(BindingAck) if p.status >= 128]
    assert refusals == [Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX]
    # The registered MS's refresh with another prefix than its binding's: 159.
    state(pair).prefix = IPv6Network("2001:db8:ff00:1::/64")
    pair.advance(3600)
    refusals = [p.status for p in pair.messages(BindingAck) if p.status >= 128]
    assert Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH in refusals


@DIALECTS
def test_restart_keeps_the_prefix(dialect: Dialect, tmp_path: Path) -> None:
    pair = dual(Pair(dialect, ipv6_pool=POOL, store_dir=tmp_path))
    hoa = state(pair).hoa
    pair.advance(100)
    pair.restart_dlmap()
    assert pair.prefixes["dlmap"] == {FIRST: (DMPA1, None)}
    assert pair.dlmap.bindings[state(pair).nai].prefix == FIRST
    pair.restart_dmpa(DMPA1)
    assert pair.prefixes["dmpa1"] == {FIRST: (DLMAP_ADDRESS, MS)}  # from its own database
    pair.deliver()
    visitor = state(pair)
    assert (visitor.hoa, visitor.prefix) == (hoa, FIRST)
    refresh = pair.messages(BindingUpdate)[-1]
    assert refresh.find(HomeNetworkPrefix) == HomeNetworkPrefix(64, FIRST.network_address)


@DIALECTS
def test_detach_releases_both(dialect: Dialect) -> None:
    pair = dual(Pair(dialect, ipv6_pool=POOL))
    pair.detach(MS, DMPA1)
    pair.advance(1)
    assert pair.prefixes["dlmap"] == {} and pair.prefixes["dmpa1"] == {}
    assert pair.dlmap.bindings == {}
    assert pair.dlmap.prefixes is not None and pair.dlmap.prefixes.in_use() == 0
    assert IPv4Address("192.0.2.2") not in pair.fastpath["dlmap"]
