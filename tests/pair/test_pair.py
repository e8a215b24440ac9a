"""A DMPA and a DLMAP against each other in memory (fake clock, real wire codec)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from router.core.dmpa import Profile, State
from router.wire.constants import BRFlag, Status
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
)
from router.wire.mh_options import SeedIPv4HomeAddress
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, DMPA2, Pair

MS = MacAddress.parse("02:00:00:00:00:01")
MS2 = MacAddress.parse("02:00:00:00:00:02")
STATIC = IPv4Address("192.0.2.10")

DIALECTS = pytest.mark.parametrize("dialect", [DRAFT, RFC5844], ids=["draft", "rfc5844"])


def registered(pair: Pair, mac: MacAddress = MS, *, mode: str = "dlmap", at=DMPA1) -> Pair:
    nai = f"{mac}@example.net".replace(":", "")
    pair.profiles[mac] = Profile(nai, mode, DLMAP_ADDRESS, STATIC if mode == "static" else None)  # type: ignore[arg-type]
    pair.attach(mac, at)
    return pair


def hoa_of(pair: Pair, mac: MacAddress = MS, at=DMPA1) -> IPv4Address:
    visitor = pair.dmpas[at].visitors[mac]
    assert visitor.state is State.REGISTERED and visitor.hoa is not None
    return visitor.hoa


@DIALECTS
def test_attach_registers_and_binds_both_fastpaths(dialect: Dialect) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_of(pair)
    assert pair.fastpath["dlmap"][hoa] == (DMPA1, None)
    assert pair.fastpath["dmpa1"][hoa] == (DLMAP_ADDRESS, MS)
    pbu = pair.messages(BindingUpdate)[0]
    assert dialect.pbu_flags() == pbu.flags
    pba = pair.messages(BindingAck)[0]
    assert pba.status == Status.ACCEPTED and pba.flags == dialect.pba_flags(
        ipv4=dialect.name == "draft"
    )
    assert pair.dlmap.bindings[f"{MS}@example.net".replace(":", "")].hoa == hoa


def test_the_dmpas_bind_carries_the_ms_own_gateway_across_a_handover() -> None:
    """Issue 15, defect 4: a gateway from the MS's profile (or RADIUS attribute 161) reaches
    the fastpath of each DMPA that serves the MS; the DLMAP's binds name none."""
    pair = Pair()
    own = IPv4Address("192.0.2.62")
    nai = f"{MS}@example.net".replace(":", "")
    pair.profiles[MS] = Profile(nai, "dlmap", DLMAP_ADDRESS, gateway=own)
    pair.attach(MS, DMPA1)
    hoa = hoa_of(pair)
    assert pair.gateways["dmpa1"][hoa] == own and pair.gateways["dlmap"][hoa] is None
    pair.attach(MS, DMPA2, address=hoa)  # moved: the new DMPA asks AAA, registers
    assert hoa_of(pair, at=DMPA2) == hoa and pair.gateways["dmpa2"][hoa] == own


def test_an_rfc5844_pbas_default_router_becomes_the_bound_gateway() -> None:
    """RFC 5844 3.3.1: the LMA names the MS's IPv4 default router in the PBA; it travels
    through the wire codec to the DMPA's Bind."""
    router = IPv4Address("192.0.2.14")
    pair = Pair(RFC5844, dlmap_gateway=router, pool_ranges=[(STATIC, IPv4Address("192.0.2.13"))])
    registered(pair)
    hoa = hoa_of(pair)
    assert pair.gateways["dmpa1"][hoa] == router
    assert pair.dmpas[DMPA1].visitors[MS].gateway == router


def test_static_mode_registers_the_profile_address() -> None:
    pair = Pair(static={"020000000002@example.net": STATIC})
    registered(pair, MS2, mode="static")
    assert hoa_of(pair, MS2) == STATIC


def test_dhcp_mode_waits_for_the_ack() -> None:
    pair = registered(Pair(), mode="dhcp")
    assert pair.dmpas[DMPA1].visitors[MS].state is State.WAIT_ADDRESS
    assert pair.messages(BindingUpdate) == []
    # The DLMAP's DHCP side (built-in server or relay) records the lease it handed out.
    nai = "020000000001@example.net"
    leased = IPv4Address("192.0.2.7")
    assert pair.dlmap.pool.record(nai, leased, pair.now + 600)
    dmpa = pair.dmpas[DMPA1]
    pair.apply(dmpa, dmpa.dhcp_ack(MS, leased, pair.now, pair.wall))
    pair.deliver()
    assert hoa_of(pair) == leased
    pbu = pair.messages(BindingUpdate)[0]
    assert pbu.find(SeedIPv4HomeAddress).address == leased


def test_ms_arriving_with_an_address_registers_it_at_once() -> None:
    pair = registered(Pair())
    hoa = hoa_of(pair)
    pair.detach(MS, DMPA1)  # gone; its lease lives on at the DLMAP
    pair.profiles[MS] = Profile("020000000001@example.net", "dhcp", DLMAP_ADDRESS)
    pair.attach(MS, DMPA2, address=hoa)  # dhcp profile, but it already holds an address
    assert hoa_of(pair, at=DMPA2) == hoa


@DIALECTS
def test_refresh_keeps_the_binding_and_advances_the_per_ms_sequence(dialect: Dialect) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_of(pair)
    pair.advance(3600 * 0.8 + 1)
    pbus = pair.messages(BindingUpdate)
    assert len(pbus) == 2 and pbus[1].sequence == pbus[0].sequence + 1
    assert hoa_of(pair) == hoa and pair.fastpath["dlmap"][hoa][0] == DMPA1
    if dialect is DRAFT:
        assert pbus[1].find(SeedIPv4HomeAddress).sequence == 1
        assert pair.dmpas[DMPA1].visitors[MS].sequence == 2


def test_binding_expires_when_refreshes_are_lost() -> None:
    pair = registered(Pair())
    hoa = hoa_of(pair)
    nai = "020000000001@example.net"
    pair.lose = lambda wire: wire.dst == DLMAP_ADDRESS
    pair.advance(3601)
    assert nai not in pair.dlmap.bindings and hoa not in pair.fastpath["dlmap"]
    assert pair.dlmap.pool.allocated_to(nai) == hoa  # the lease outlives the binding ...
    pair.advance(pair.lease_time + 1)
    assert pair.dlmap.pool.allocated_to(nai) is None  # ... then the address is free
    assert "lease" not in pair.db("dlmap") or nai not in pair.db("dlmap")["lease"]


@DIALECTS
def test_detach_deregisters(dialect: Dialect) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_of(pair)
    pair.detach(MS, DMPA1)
    assert pair.messages(BindingUpdate)[-1].lifetime == 0
    assert pair.dlmap.bindings == {} and pair.fastpath["dlmap"] == {}
    assert pair.fastpath["dmpa1"] == {} and MS not in pair.dmpas[DMPA1].visitors
    assert hoa not in pair.fastpath["dmpa1"]


@DIALECTS
def test_handover_revokes_the_old_dmpa_and_keeps_the_address(dialect: Dialect) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_of(pair)
    pair.advance(10)
    pair.attach(MS, DMPA2, address=hoa)  # the MS moved with its address
    pair.advance(1)
    assert hoa_of(pair, at=DMPA2) == hoa
    assert pair.fastpath["dlmap"][hoa] == (DMPA2, None)
    assert pair.fastpath["dmpa1"] == {} and MS not in pair.dmpas[DMPA1].visitors
    bri = pair.messages(BindingRevocationIndication, dst=DMPA1)
    assert len(bri) == 1 and bri[0].flags & BRFlag.P
    if dialect is DRAFT:
        assert bri[0].flags & BRFlag.V and bri[0].find(SeedIPv4HomeAddress).address == hoa
    bra = pair.messages(BindingRevocationAck, dst=DLMAP_ADDRESS)
    assert [b.status for b in bra] == [0]
    # Seed figure 7: the new DMPA's PBA leaves after the old DMPA's acknowledgement.
    order = [type(w.message).__name__ for w in pair.sent[-3:]]
    assert order == ["BindingRevocationIndication", "BindingRevocationAck", "BindingAck"]


def test_handover_pba_not_blocked_past_the_budget_when_the_old_dmpa_is_silent() -> None:
    pair = registered(Pair())
    hoa = hoa_of(pair)
    pair.lose = lambda wire: wire.dst == DMPA1  # the old DMPA is gone
    start = pair.now
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(pair.revocation_budget + 0.01)
    assert hoa_of(pair, at=DMPA2) == hoa
    pba_at = [e for n, e in pair.events if e.kind == "pba_released"]
    assert pba_at and pair.now - start <= pair.revocation_budget + 0.01
    pair.advance(10)
    # 3 fast retries 1 s apart, then the slower pace (2 s, 4 s, ...): the revocation goes on.
    assert pair.dlmap.counters["bri.retransmitted"] == 5
    assert pair.dlmap.counters["bri.backoff"] == 1 and pair.dlmap.revocations


def test_stale_refresh_from_the_old_dmpa_is_refused() -> None:
    pair = registered(Pair())
    hoa = hoa_of(pair)
    old_sequence = pair.dmpas[DMPA1].visitors[MS].sequence
    pair.lose = lambda wire: wire.dst == DMPA1  # the BRI never reaches the old DMPA
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(1)
    pair.lose = lambda wire: False
    # The old DMPA still believes it serves the MS and refreshes with its old sequence number.
    dmpa1 = pair.dmpas[DMPA1]
    visitor = dmpa1.visitors[MS]
    assert visitor.sequence == old_sequence
    pair.apply(dmpa1, dmpa1.handle_timer(pair.now + 3600, pair.wall + 3600))
    pair.deliver()
    last = pair.messages(BindingAck, dst=DMPA1)[-1]
    assert last.status == Status.ADMINISTRATIVELY_PROHIBITED
    assert pair.fastpath["dlmap"][hoa] == (DMPA2, None)
    assert MS not in pair.dmpas[DMPA1].visitors or visitor.state is State.REJECTED


def test_old_dmpa_deregistration_after_handover_leaves_the_binding() -> None:
    pair = registered(Pair())
    hoa = hoa_of(pair)
    pair.lose = lambda wire: (
        wire.dst == DMPA1 and isinstance(wire.message, BindingRevocationIndication)
    )
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(1)
    pair.detach(MS, DMPA1)  # the old DMPA notices the MS left, after the handover
    assert pair.messages(BindingAck, dst=DMPA1)[-1].status == Status.ACCEPTED
    assert pair.fastpath["dlmap"][hoa] == (DMPA2, None)
    assert "stale_deregistration" in pair.event_kinds("dlmap")


@DIALECTS
def test_lost_pba_is_retransmitted_with_backoff_and_new_sequence_numbers(dialect: Dialect) -> None:
    pair = Pair(dialect)
    pair.lose = lambda wire: isinstance(wire.message, BindingAck)
    registered(pair)
    pair.advance(1.5 + 3 + 6 + 0.1)
    pbus = [w for w in pair.sent if isinstance(w.message, BindingUpdate)]
    assert len(pbus) == 4
    assert len({w.message.sequence for w in pbus}) == 4
    pair.lose = lambda wire: False
    pair.advance(12)
    assert hoa_of(pair) is not None


def test_retransmission_backoff_caps_at_32_seconds_and_keeps_trying() -> None:
    pair = Pair()
    pair.lose = lambda wire: wire.dst == DLMAP_ADDRESS
    registered(pair)
    pair.advance(1.5 + 3 + 6 + 12 + 24 + 32 * 3 + 1)
    dmpa = pair.dmpas[DMPA1]
    assert dmpa.visitors[MS].timeout == 32
    assert dmpa.counters["pbu.sent"] == 9  # 1 + 5 doublings (1.5 .. 24 -> 32) + 3 at the cap


def test_duplicated_pbu_gets_the_same_answer() -> None:
    pair = registered(Pair())
    first_pbu = next(w for w in pair.sent if isinstance(w.message, BindingUpdate))
    pair.queue.append(first_pbu)  # the network duplicates it
    pair.deliver()
    pbas = pair.messages(BindingAck, dst=DMPA1)
    assert len(pbas) == 2 and pbas[0] == pbas[1]
    assert pair.dlmap.counters["pbu.retransmission"] == 1


def test_reordered_pbu_is_refused_with_135_and_the_dmpa_recovers() -> None:
    pair = registered(Pair())
    registered(pair, MS2)
    # Both refreshes fire together; the network delivers the second one first.
    dmpa = pair.dmpas[DMPA1]
    pair.now += 3600 * 0.8
    pair.apply(dmpa, dmpa.handle_timer(pair.now, pair.wall))
    assert len(pair.queue) == 2
    pair.queue.reverse()
    pair.deliver()
    pbas = pair.messages(BindingAck, dst=DMPA1)
    assert [p.status for p in pbas[-3:]] == [0, 135, 0]
    # Registrations used BU sequence numbers 1 and 2, the refreshes 3 (MS) and 4 (MS2). The 135
    # carries the last accepted one, 4; the DMPA jumped past it and resent MS's refresh as 5.
    assert pbas[-2].sequence == 4
    assert pair.messages(BindingUpdate)[-1].sequence == 5 == pbas[-1].sequence
    assert dmpa.counters["pba.status.135"] == 1
    assert hoa_of(pair) and hoa_of(pair, MS2)


def test_pool_exhaustion_answers_142_in_draft() -> None:
    pair = Pair(pool_ranges=[(IPv4Address("192.0.2.2"), IPv4Address("192.0.2.2"))])
    registered(pair)
    registered(pair, MS2)
    refusal = pair.messages(BindingAck, dst=DMPA1)[-1]
    assert refusal.status == 142
    assert pair.dmpas[DMPA1].visitors[MS2].state is State.REJECTED


def test_pool_exhaustion_answers_130_with_reply_132_in_rfc5844() -> None:
    from router.wire.mh_options import IPv4HomeAddressReply

    pair = Pair(RFC5844, pool_ranges=[(IPv4Address("192.0.2.2"), IPv4Address("192.0.2.2"))])
    registered(pair)
    registered(pair, MS2)
    refusal = pair.messages(BindingAck, dst=DMPA1)[-1]
    assert refusal.status == Status.INSUFFICIENT_RESOURCES
    assert refusal.find(IPv4HomeAddressReply).status == 132


def test_static_address_of_another_nai_is_refused_with_143() -> None:
    pair = Pair(static={"someone-else@example.net": STATIC})
    pair.profiles[MS] = Profile("020000000001@example.net", "static", DLMAP_ADDRESS, STATIC)
    pair.attach(MS, DMPA1)
    refusal = pair.messages(BindingAck, dst=DMPA1)[-1]
    assert refusal.status == 143
    assert pair.fastpath.get("dlmap", {}) == {}


def test_aaa_reject_keeps_the_ms_out() -> None:
    pair = Pair()
    pair.attach(MS, DMPA1)  # no profile: Access-Reject
    assert pair.dmpas[DMPA1].visitors[MS].state is State.REJECTED
    assert pair.messages(BindingUpdate) == []


@DIALECTS
def test_dlmap_restart_from_the_database_keeps_bindings(dialect: Dialect, tmp_path: Path) -> None:
    pair = registered(Pair(dialect, store_dir=tmp_path))
    registered(pair, MS2, at=DMPA2)
    hoa1, hoa2 = hoa_of(pair), hoa_of(pair, MS2, DMPA2)
    pair.advance(100)
    pair.restart_dlmap()
    assert pair.fastpath["dlmap"] == {hoa1: (DMPA1, None), hoa2: (DMPA2, None)}
    # In the middle of it all: a handover right after the restart still revokes the old DMPA.
    pair.attach(MS, DMPA2, address=hoa1)
    pair.advance(1)
    assert hoa_of(pair, at=DMPA2) == hoa1 and MS not in pair.dmpas[DMPA1].visitors
    # The refreshes keep going past the old lifetime.
    pair.advance(3600 * 2)
    assert pair.fastpath["dlmap"][hoa1] == (DMPA2, None)


def test_dlmap_restart_after_lifetime_ran_out_removes_the_binding(tmp_path: Path) -> None:
    pair = registered(Pair(store_dir=tmp_path))
    hoa = hoa_of(pair)
    pair.lose = lambda wire: True
    pair.now += 4000  # the DLMAP was down longer than the lifetime
    pair.restart_dlmap()
    assert pair.fastpath["dlmap"] == {} and pair.dlmap.bindings == {}
    assert pair.dlmap.pool.allocated_to("020000000001@example.net") == hoa


def test_dmpa_restart_reregisters_its_visitors(tmp_path: Path) -> None:
    pair = registered(Pair(store_dir=tmp_path))
    hoa = hoa_of(pair)
    before = pair.dmpas[DMPA1].bu_sequence
    pair.restart_dmpa(DMPA1)
    pair.deliver()
    assert hoa_of(pair) == hoa
    assert pair.fastpath["dmpa1"][hoa] == (DLMAP_ADDRESS, MS)
    assert pair.dmpas[DMPA1].bu_sequence == before + 1  # the BU counter survived the restart
    assert pair.messages(BindingAck, dst=DMPA1)[-1].status == Status.ACCEPTED


# --- lost, repeated and stale messages around refreshes, deregistrations and restarts --


@DIALECTS
def test_a_lost_refresh_pba_is_retried_after_1_second_and_accepted(dialect: Dialect) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_of(pair)
    lost = {"count": 0}

    def lose_first_refresh_pba(wire) -> bool:  # type: ignore[no-untyped-def]
        if isinstance(wire.message, BindingAck) and lost["count"] == 0 and pair.now > 2000:
            lost["count"] += 1
            return True
        return False

    pair.lose = lose_first_refresh_pba
    pair.advance(3600 * 0.8 + 0.5)  # the refresh goes out; its PBA is lost
    sent_at = pair.now
    pair.advance(1.0)  # not a first registration: retransmitted after 1 s
    assert lost["count"] == 1
    pbus = pair.messages(BindingUpdate)
    assert len(pbus) == 3 and pair.now - sent_at <= 1.0
    assert pair.messages(BindingAck)[-1].status == Status.ACCEPTED
    assert hoa_of(pair) == hoa and pair.fastpath["dmpa1"][hoa] == (DLMAP_ADDRESS, MS)


def test_rfc5844_stale_refresh_from_the_old_dmpa_does_not_take_the_binding_back() -> None:
    pair = registered(Pair(RFC5844))
    hoa = hoa_of(pair)
    pair.advance(10)  # (timestamps order PBUs: the handover comes later than the attach)
    pair.lose = lambda wire: wire.dst == DMPA1  # the old DMPA never hears the revocation
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(10)
    pair.lose = lambda wire: False
    dmpa1 = pair.dmpas[DMPA1]
    pair.apply(dmpa1, dmpa1.handle_timer(pair.now + 3600, pair.wall + 3600))  # its refresh
    pair.deliver()
    assert pair.messages(BindingAck, dst=DMPA1)[-1].status == Status.ADMINISTRATIVELY_PROHIBITED
    assert pair.fastpath["dlmap"][hoa] == (DMPA2, None)
    assert hoa_of(pair, at=DMPA2) == hoa


def test_alternate_care_of_address_is_the_tunnel_endpoint() -> None:
    from router.core.dlmap import DLMAP
    from router.wire.mh_options import AlternateCareOfAddress, MobileNodeIdentifier

    pair = Pair()
    dlmap: DLMAP = pair.dlmap
    options = (
        MobileNodeIdentifier.from_nai("ms@example.net"),
        SeedIPv4HomeAddress(0, IPv4Address(0)),
        AlternateCareOfAddress(DMPA2),
    )
    pbu = BindingUpdate(1, DRAFT.pbu_flags(), 900, options)
    pair.apply(dlmap, dlmap.receive(pbu, DMPA1, pair.now, pair.wall))
    hoa = dlmap.bindings["ms@example.net"].hoa
    assert dlmap.bindings["ms@example.net"].dmpa == DMPA2
    assert pair.fastpath["dlmap"][hoa] == (DMPA2, None)
    assert pair.queue[-1].dst == DMPA1  # the PBA goes to the PBU's source


def test_detach_before_the_first_pba_still_deregisters() -> None:
    pair = Pair()
    pair.lose = lambda wire: isinstance(wire.message, BindingAck) and wire.message.lifetime > 0
    registered(pair)
    assert pair.dlmap.bindings  # the DLMAP accepted; the DMPA never heard
    pair.detach(MS, DMPA1)
    pair.advance(5)
    assert pair.dlmap.bindings == {} and pair.fastpath["dlmap"] == {}
    assert MS not in pair.dmpas[DMPA1].visitors


def test_a_duplicated_deregistration_gets_the_same_answer() -> None:
    pair = registered(Pair())
    pair.detach(MS, DMPA1)
    dereg = next(w for w in reversed(pair.sent) if isinstance(w.message, BindingUpdate))
    pair.queue.append(dereg)
    pair.deliver()
    answers = pair.messages(BindingAck, dst=DMPA1)[-2:]
    assert answers[0] == answers[1] and answers[1].status == Status.ACCEPTED


@DIALECTS
def test_a_deregistration_reusing_an_old_bu_sequence_is_not_taken_for_a_repeat(
    dialect: Dialect,
) -> None:
    pair = registered(Pair(dialect))
    first = pair.messages(BindingUpdate)[0]
    dmpa = pair.dmpas[DMPA1]
    dmpa.bu_sequence = (first.sequence - 1) % 65536  # the counter wrapped round to it
    before = len(pair.messages(BindingAck, dst=DMPA1))
    pair.detach(MS, DMPA1)
    assert pair.messages(BindingUpdate)[-2 if dialect is DRAFT else -1].sequence == first.sequence
    after = pair.messages(BindingAck, dst=DMPA1)[before:]
    # Never the old registration's PBA replayed: draft answers 135 then takes the resent one,
    # rfc5844 (ordered by timestamps) takes it at once.
    assert all(a.lifetime == 0 for a in after) and after[-1].status == Status.ACCEPTED
    assert pair.dlmap.bindings == {}


def test_dlmap_restart_during_a_handover_still_revokes_the_old_dmpa(tmp_path: Path) -> None:
    pair = registered(Pair(store_dir=tmp_path))
    hoa = hoa_of(pair)
    pair.lose = lambda wire: wire.dst == DMPA1  # the first BRI is lost ...
    pair.attach(MS, DMPA2, address=hoa)
    pair.restart_dlmap()  # ... and the DLMAP restarts before retransmitting it
    pair.lose = lambda wire: False
    pair.advance(5)
    assert MS not in pair.dmpas[DMPA1].visitors and pair.fastpath["dmpa1"] == {}
    assert hoa_of(pair, at=DMPA2) == hoa
    assert pair.db("dlmap").get("revocation", {}) == {}
