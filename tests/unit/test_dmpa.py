"""DMPA specifics not covered by the pair tests: visitor fields, revocation answers, AAA."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from router.core.aaa import LocalAAA, LocalProfile
from router.core.actions import AAARequest, Action, Bind, Persist, SendMH, Unbind
from router.core.dmpa import DMPA, DMPAConfig, Profile, State
from router.wire.constants import BRAStatus, BRFlag
from router.wire.dialect import DRAFT, RFC5844
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
)
from router.wire.mh_options import (
    IPv4DefaultRouterAddress,
    IPv4HomeAddressReply,
    MobileNodeIdentifier,
    SeedIPv4HomeAddress,
)

SELF = IPv6Address("2001:db8:1::1")
DLMAP_A = IPv6Address("2001:db8:2::1")
DLMAP_B = IPv6Address("2001:db8:4::1")
PSEUDO = MacAddress.parse("02:00:5e:00:00:01")
GATEWAY = IPv4Address("192.0.2.1")
MS = MacAddress.parse("02:00:00:00:00:01")
HOA = IPv4Address("192.0.2.20")


def dmpa() -> DMPA:
    return DMPA(DMPAConfig(SELF, PSEUDO, GATEWAY, {DLMAP_A: DRAFT, DLMAP_B: RFC5844}))


def sent(actions: list[Action]) -> list[tuple[IPv6Address, object]]:
    return [(a.peer, a.message) for a in actions if isinstance(a, SendMH)]


def registered(node: DMPA, dlmap: IPv6Address = DLMAP_A) -> None:
    assert isinstance(node.attach(MS, 3, 0.0)[0], AAARequest)
    actions = node.aaa_result(MS, Profile("ms@example.net", "static", dlmap, HOA), 0.0, 1e9)
    ((peer, pbu),) = sent(actions)
    assert peer == dlmap and isinstance(pbu, BindingUpdate)
    if dlmap == DLMAP_A:
        options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA))
        pba = BindingAck(0, DRAFT.pba_flags(ipv4=True), pbu.sequence, 900, options)
    else:
        pba = BindingAck(0, 0x20, pbu.sequence, 900, (IPv4HomeAddressReply(0, HOA, 24),))
    node.receive(pba, dlmap, 0.1, 1e9)


def test_visitor_list_has_every_field_of_seed_5_1() -> None:
    node = dmpa()
    registered(node)
    v = node.visitors[MS]
    assert (v.nai, v.mac, v.hoa) == ("ms@example.net", MS, HOA)
    assert (v.tunnel_src, v.tunnel_dst) == (SELF, DLMAP_A)
    assert (v.pseudo_mac, v.gateway, v.sequence) == (PSEUDO, GATEWAY, 4)
    assert v.state is State.REGISTERED and v.link == 3


def test_profiles_name_the_dlmap_so_one_dmpa_serves_several() -> None:
    node = dmpa()
    registered(node, DLMAP_B)  # the rfc5844 DLMAP
    assert node.visitors[MS].tunnel_dst == DLMAP_B and node.visitors[MS].hoa == HOA


def test_a_profile_naming_an_unconfigured_dlmap_is_a_reject() -> None:
    node = dmpa()
    node.attach(MS, 1, 0.0)
    other = IPv6Address("2001:db8:99::1")
    node.aaa_result(MS, Profile("ms@example.net", "dlmap", other), 0.0, 0.0)
    assert node.visitors[MS].state is State.REJECTED


@pytest.mark.parametrize(
    ("options", "flags", "status"),
    [
        ((MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA)), 0xC000, 0),
        ((MobileNodeIdentifier.from_nai("nobody@example.net"),), 0x8000, 128),
        ((MobileNodeIdentifier.from_nai("ms@example.net"),), 0xC000, 129),
        ((), 0x8000, 131),
    ],
    ids=["revoked", "no-binding", "v-without-hoa", "no-identity"],
)
def test_revocation_answers(options: tuple, flags: int, status: int) -> None:
    node = dmpa()
    registered(node)
    actions = node.receive(BindingRevocationIndication(2, 77, flags, options), DLMAP_A, 1.0, 1e9)
    ((peer, bra),) = sent(actions)
    # The BRA names back what the BRI named (seed figure 7, step 4).
    assert peer == DLMAP_A and bra == BindingRevocationAck(status, 77, flags, options)
    assert (MS in node.visitors) == (status != BRAStatus.SUCCESS)


def test_revocation_from_another_dlmap_does_not_remove_the_visitor() -> None:
    node = dmpa()
    registered(node)
    options = (MobileNodeIdentifier.from_nai("ms@example.net"),)
    actions = node.receive(BindingRevocationIndication(2, 1, BRFlag.P, options), DLMAP_B, 1.0, 1e9)
    assert sent(actions)[0][1].status == BRAStatus.BINDING_DOES_NOT_EXIST
    assert MS in node.visitors


def test_local_aaa_by_mac_then_nai_and_allowed() -> None:
    aaa = LocalAAA(
        [
            LocalProfile("a@x", "dhcp", DLMAP_A, mac=MS),
            LocalProfile("b@x", "static", DLMAP_A, hoa=HOA),
            LocalProfile(
                "c@x", "dlmap", DLMAP_A, mac=MacAddress.parse("02:00:00:00:00:09"), allowed=False
            ),
        ]
    )
    assert aaa.authenticate(MS) == Profile("a@x", "dhcp", DLMAP_A)
    assert aaa.authenticate(MacAddress.parse("02:00:00:00:00:05"), "b@x").hoa == HOA
    assert aaa.authenticate(MacAddress.parse("02:00:00:00:00:09")) is None
    assert aaa.authenticate(MacAddress.parse("02:00:00:00:00:05")) is None
    assert aaa.static_addresses() == {"b@x": HOA}
    # the log says why, not a RADIUS word: local AAA needs a profile per MAC
    unknown = aaa.why_rejected(MacAddress.parse("02:00:00:00:00:05"))
    assert unknown.startswith("no profile for this MAC")
    assert (
        aaa.why_rejected(MacAddress.parse("02:00:00:00:00:09")) == "profile c@x says allowed = no"
    )
    node = dmpa()
    node.attach(MS, 0, 0.0)
    (said,) = node.aaa_result(MS, None, 0.0, 0.0, unknown)
    assert said.fields == {"mac": MS, "why": unknown}  # type: ignore[attr-defined]


def test_local_aaa_refuses_inconsistent_profiles() -> None:
    with pytest.raises(ValueError, match="needs a home address"):
        LocalAAA([LocalProfile("b@x", "static", DLMAP_A)])
    with pytest.raises(ValueError, match="two profiles"):
        LocalAAA([LocalProfile("b@x", "dhcp", DLMAP_A), LocalProfile("b@x", "dlmap", DLMAP_A)])


def refresh_at(node: DMPA) -> float:
    deadline = node.get_timer()
    assert deadline is not None
    return deadline


def _bind(actions: list[Action]) -> Bind:
    (bind,) = [a for a in actions if isinstance(a, Bind)]
    return bind


def test_the_bind_carries_the_profiles_gateway() -> None:
    """Issue 15, defect 4: the data path must know the MS's own gateway (seed 3.4)."""
    node = dmpa()
    node.attach(MS, 3, 0.0)
    own = IPv4Address("192.0.2.62")
    profile = Profile("ms@example.net", "static", DLMAP_A, HOA, gateway=own)
    ((_, pbu),) = sent(node.aaa_result(MS, profile, 0.0, 1e9))
    assert isinstance(pbu, BindingUpdate)
    options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA))
    pba = BindingAck(0, DRAFT.pba_flags(ipv4=True), pbu.sequence, 900, options)
    bind = _bind(node.receive(pba, DLMAP_A, 0.1, 1e9))
    assert (bind.hoa, bind.mac, bind.link, bind.gateway) == (HOA, MS, 3, own)


def test_the_pbas_default_router_rebinds_with_the_new_gateway() -> None:
    """RFC 5844's IPv4 Default-Router Address option in a PBA, first and on a refresh."""
    node = dmpa()
    node.attach(MS, 3, 0.0)
    profile = Profile("ms@example.net", "static", DLMAP_B, HOA)
    ((_, pbu),) = sent(node.aaa_result(MS, profile, 0.0, 1e9))
    assert isinstance(pbu, BindingUpdate)

    def pba(sequence: int, router: str) -> BindingAck:
        options = (IPv4HomeAddressReply(0, HOA, 24), IPv4DefaultRouterAddress(IPv4Address(router)))
        return BindingAck(0, 0x20, sequence, 900, options)

    first = _bind(node.receive(pba(pbu.sequence, "192.0.2.30"), DLMAP_B, 0.1, 1e9))
    assert first.gateway == IPv4Address("192.0.2.30")
    ((_, refresh),) = sent(node.handle_timer(refresh_at(node), 1e9))
    assert isinstance(refresh, BindingUpdate)
    moved = _bind(node.receive(pba(refresh.sequence, "192.0.2.29"), DLMAP_B, refresh_at(node), 1e9))
    assert moved.gateway == IPv4Address("192.0.2.29") and moved.hoa == HOA
    ((_, refresh),) = sent(node.handle_timer(refresh_at(node), 1e9))
    assert isinstance(refresh, BindingUpdate)
    same = node.receive(pba(refresh.sequence, "192.0.2.29"), DLMAP_B, refresh_at(node), 1e9)
    assert not [a for a in same if isinstance(a, Bind)]  # nothing changed: no rebind


def test_a_registered_ms_on_another_port_takes_its_binding_along() -> None:
    """A frame of a known MS on another access link of ours (router.services.access calls
    attach): the fastpath checks the port both ways, so the HoA is bound again there, with its
    gateway, and the stored row says the new port."""
    node = dmpa()
    registered(node)
    moved = node.attach(MS, 5, 1.0)
    assert Unbind(HOA) in moved and Bind(HOA, DLMAP_A, MS, 5, GATEWAY) in moved
    assert any(isinstance(a, Persist) and a.record and a.record["link"] == 5 for a in moved)
    assert node.visitors[MS].link == 5
    assert node.attach(MS, 5, 1.1) == []  # the same port again: nothing to do


def test_an_authentication_during_the_deregistration_is_taken_up_after_it() -> None:
    """A PPP client dialling again at once, a new EAP login: the visitor is still waiting for
    the PBA of its de-registration. Its authentication is kept and taken up when that ends
    (before, it was dropped, and the MS was cut off until it authenticated once more)."""
    node = dmpa()
    profile = Profile("ms@example.net", "static", DLMAP_A, HOA)
    ((_, pbu),) = sent(node.authorized(MS, 3, profile, 0.0, 1e9))
    options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA))
    node.receive(
        BindingAck(0, DRAFT.pba_flags(ipv4=True), pbu.sequence, 225, options), DLMAP_A, 0.1, 1e9
    )
    ((_, dereg),) = sent(node.detach(MS, 5.0, 1e9 + 5))
    busy = node.authorized(MS, 4, profile, 5.01, 1e9 + 5)
    assert sent(busy) == []  # no second de-registration, the attempt count stands
    assert node.visitors[MS].state is State.DEREGISTERING
    ack = BindingAck(0, DRAFT.pba_flags(ipv4=True), dereg.sequence, 0, options)
    after = node.receive(ack, DLMAP_A, 5.05, 1e9 + 5)
    ((peer, again),) = sent(after)
    assert peer == DLMAP_A and isinstance(again, BindingUpdate) and again.lifetime > 0
    visitor = node.visitors[MS]
    assert visitor.state is State.REGISTERING and visitor.link == 4


def test_an_ordinary_refresh_is_no_registered_again_line() -> None:
    """``registered ... again=true`` is for a DLMAP restart (docs/service.md), not every
    refresh."""
    node = dmpa()
    registered(node)
    at = refresh_at(node)
    ((_, pbu),) = sent(node.handle_timer(at, 1e9 + at))
    options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA))
    ack = BindingAck(0, DRAFT.pba_flags(ipv4=True), pbu.sequence, 900, options)
    after = node.receive(ack, DLMAP_A, at + 0.1, 1e9 + at)
    assert node.visitors[MS].state is State.REGISTERED
    assert [a for a in after if getattr(a, "kind", None) == "registered"] == []


def test_a_logoff_after_that_authentication_voids_it() -> None:
    node = dmpa()
    profile = Profile("ms@example.net", "static", DLMAP_A, HOA)
    ((_, pbu),) = sent(node.authorized(MS, 3, profile, 0.0, 1e9))
    options = (MobileNodeIdentifier.from_nai("ms@example.net"), SeedIPv4HomeAddress(4, HOA))
    ack = BindingAck(0, DRAFT.pba_flags(ipv4=True), pbu.sequence, 225, options)
    node.receive(ack, DLMAP_A, 0.1, 1e9)
    node.detach(MS, 5.0, 1e9 + 5)
    node.authorized(MS, 4, profile, 5.01, 1e9 + 5)
    ((_, dereg),) = sent(node.detach(MS, 5.02, 1e9 + 5))  # EAP logoff: the MS left again
    ack = BindingAck(0, DRAFT.pba_flags(ipv4=True), dereg.sequence, 0, options)
    after = node.receive(ack, DLMAP_A, 5.05, 1e9 + 5)
    assert sent(after) == [] and MS not in node.visitors
