"""Handover and revocation against the seed (figure 7) and RFC 5846, through the wire codec.

The DLMAP revokes the old DMPA with a BRI carrying the MN-ID and the IPv4 HoA option; the old
DMPA answers with a BRA carrying them back; then the new DMPA gets its PBA. The races around it
(a PBA lost before the revocation, a stale BRI retransmitted after the MS came back, a
revocation lost for good) must all end with the MS known at one DMPA only.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

import pytest

from router.core.actions import SendMH
from router.core.dmpa import DMPA, Profile, State
from router.wire.constants import BRAStatus, OptionType, RevocationTrigger
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
)
from router.wire.mh_options import (
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    SeedIPv4HomeAddress,
)
from tests.pair.harness import DLMAP_ADDRESS, DMPA1, DMPA2, Pair

MS = MacAddress.parse("02:00:00:00:00:01")
NAI = "020000000001@example.net"
DIALECTS = pytest.mark.parametrize("dialect", [DRAFT, RFC5844], ids=["draft", "rfc5844"])


def registered(pair: Pair, *, mode: str = "dlmap", at=DMPA1) -> Pair:  # type: ignore[no-untyped-def]
    pair.profiles[MS] = Profile(NAI, mode, DLMAP_ADDRESS)  # type: ignore[arg-type]
    pair.attach(MS, at)
    return pair


def hoa_at(pair: Pair, at=DMPA1) -> IPv4Address:  # type: ignore[no-untyped-def]
    visitor = pair.dmpas[at].visitors[MS]
    assert visitor.state is State.REGISTERED and visitor.hoa is not None
    return visitor.hoa


def hoa_option_of(message: object, dialect: Dialect) -> tuple[int | None, IPv4Address] | None:
    """(per-MS sequence or None, address) of the message's IPv4 HoA option in ``dialect``."""
    find = message.find  # type: ignore[attr-defined]
    if dialect.name == "draft":
        seed = find(SeedIPv4HomeAddress)
        return None if seed is None else (seed.sequence, seed.address)
    option = find(IPv4HomeAddressRequest) or find(IPv4HomeAddressReply)
    return None if option is None else (None, option.address)


# --- defect: the BRA carried no IPv4 HoA option (seed figure 7, step 4) --------------------


@DIALECTS
def test_figure_7_bri_and_bra_carry_the_mn_id_and_the_hoa_option(dialect: Dialect) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_at(pair)
    pair.advance(10)
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(1)
    # Seed figure 7, steps 3-5: BRI to the old DMPA, its BRA, then the new DMPA's PBA.
    tail = [w for w in pair.sent if not isinstance(w.message, BindingUpdate)][-3:]
    bri, bra, pba = (w.message for w in tail)
    assert [(w.src, w.dst) for w in tail] == [
        (DLMAP_ADDRESS, DMPA1),
        (DMPA1, DLMAP_ADDRESS),
        (DLMAP_ADDRESS, DMPA2),
    ]
    assert isinstance(bri, BindingRevocationIndication)
    assert isinstance(bra, BindingRevocationAck) and bra.status == BRAStatus.SUCCESS
    assert isinstance(pba, BindingAck) and pba.accepted
    for message in (bri, bra, pba):
        mn_id = message.find(MobileNodeIdentifier)
        assert mn_id is not None and mn_id.nai == NAI, message
    bri_hoa, bra_hoa, pba_hoa = (hoa_option_of(m, dialect) for m in (bri, bra, pba))
    assert bri_hoa is not None and bri_hoa[1] == hoa
    assert bra_hoa == bri_hoa  # the BRA names the binding the BRI revoked
    assert pba_hoa is not None and pba_hoa[1] == hoa
    if dialect.name == "draft":
        # The per-MS sequence number the DLMAP assigned the new registration rides in all three.
        assert bri_hoa[0] == pba_hoa[0] == pair.dlmap.bindings[NAI].sequence
    else:
        assert bri.find(IPv4HomeAddressRequest).option_type == OptionType.IPV4_HOA_REQUEST
    assert pair.dlmap.revocations == {}


@DIALECTS
def test_a_bra_for_another_ms_does_not_acknowledge_the_revocation(dialect: Dialect) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_at(pair)
    pair.advance(10)
    pair.lose = lambda wire: wire.dst == DMPA1  # the BRI does not reach the old DMPA
    pair.attach(MS, DMPA2, address=hoa)
    ((key, revocation),) = pair.dlmap.revocations.items()
    other = IPv4Address("192.0.2.13")
    if dialect.name == "draft":
        hoa_option: object = SeedIPv4HomeAddress(1, other)
    else:
        hoa_option = IPv4HomeAddressRequest(other)
    forged = BindingRevocationAck(
        0,
        revocation.message.sequence,
        revocation.message.flags,
        (MobileNodeIdentifier.from_nai("someone-else@example.net"), hoa_option),  # type: ignore[arg-type]
    )
    dmpa1 = pair.dmpas[DMPA1]
    pair.apply(dmpa1, [SendMH(DLMAP_ADDRESS, forged)])
    pair.deliver()
    assert key in pair.dlmap.revocations  # still revoking
    assert pair.dlmap.counters["bra.mismatched"] == 1
    # The right answer still closes it.
    pair.lose = lambda wire: False
    pair.advance(1.1)
    assert pair.dlmap.revocations == {} and MS not in dmpa1.visitors


def test_a_draft_bra_without_the_hoa_option_is_not_taken() -> None:
    pair = registered(Pair())
    hoa = hoa_at(pair)
    pair.lose = lambda wire: wire.dst == DMPA1
    pair.attach(MS, DMPA2, address=hoa)
    ((key, revocation),) = pair.dlmap.revocations.items()
    bare = BindingRevocationAck(0, revocation.message.sequence, revocation.message.flags)
    pair.apply(pair.dmpas[DMPA1], [SendMH(DLMAP_ADDRESS, bare)])
    pair.deliver()
    assert key in pair.dlmap.revocations
    assert pair.dlmap.counters["bra.mismatched"] == 1


# --- defect: the trigger said "same access type" after a change of access type --------------


@pytest.mark.parametrize(
    ("dialect", "new_access", "expected"),
    [
        (RFC5844, 3, RevocationTrigger.INTER_MAG_HANDOVER_SAME_ACCESS_TYPE),
        (RFC5844, 4, RevocationTrigger.INTER_MAG_HANDOVER_DIFFERENT_ACCESS_TYPE),
        (DRAFT, 4, RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN),  # a draft PBU has no ATT
    ],
    ids=["same-att", "att-3-to-4", "draft-unknown"],
)
def test_the_revocation_trigger_follows_the_access_technology_types(
    dialect: Dialect, new_access: int, expected: RevocationTrigger
) -> None:
    pair = Pair(dialect)
    # DMPA 2 serves another access technology (ATT 4, IEEE 802.11) than DMPA 1 (3, 802.3).
    config = pair.dmpas[DMPA2].config
    pair.dmpas[DMPA2] = DMPA(dataclasses.replace(config, access_type=new_access))
    registered(pair)
    hoa = hoa_at(pair)
    pair.advance(10)
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(1)
    (bri,) = pair.messages(BindingRevocationIndication, dst=DMPA1)
    assert bri.trigger == expected
    assert hoa_at(pair, DMPA2) == hoa


# --- defect: a revocation before the old DMPA's first PBA was answered 128 ------------------


@DIALECTS
def test_a_revocation_before_the_first_pba_removes_the_visitor_and_its_retransmissions(
    dialect: Dialect,
) -> None:
    pair = Pair(dialect)
    # A's PBU is accepted but its PBA is lost: A does not know the HoA the DLMAP allocated.
    pair.lose = lambda wire: isinstance(wire.message, BindingAck) and wire.dst == DMPA1
    registered(pair)
    assert NAI in pair.dlmap.bindings
    visitor = pair.dmpas[DMPA1].visitors[MS]
    assert visitor.state is State.REGISTERING and visitor.hoa is None
    # The MS moves to B before A retransmits (1.5 s); B registers, the DLMAP revokes A.
    pair.advance(0.5)  # (rfc5844 orders PBUs by timestamp: B's comes later than A's)
    pair.attach(MS, DMPA2)
    pair.advance(0.1)
    (bra,) = pair.messages(BindingRevocationAck, dst=DLMAP_ADDRESS)
    assert bra.status == BRAStatus.SUCCESS
    assert MS not in pair.dmpas[DMPA1].visitors
    # A's retransmission timer would have fired at 1.5 s: nothing more from A, ever.
    pbus_from_a = len([w for w in pair.sent if w.src == DMPA1])
    pair.advance(60)
    assert len([w for w in pair.sent if w.src == DMPA1]) == pbus_from_a
    assert pair.dlmap.bindings[NAI].dmpa == DMPA2
    assert pair.messages(BindingRevocationIndication, dst=DMPA2) == []
    assert hoa_at(pair, DMPA2) == pair.dlmap.bindings[NAI].hoa


# --- defect: a stale, retransmitted BRI removed a fresh registration (A -> B -> A) -----------


@DIALECTS
def test_a_revocation_toward_a_dmpa_that_serves_the_ms_again_is_cancelled(
    dialect: Dialect,
) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_at(pair)
    pair.advance(10)
    # A gets the BRI and removes the MS, but its BRAs are lost: the DLMAP keeps revoking A.
    pair.lose = lambda wire: wire.src == DMPA1 and isinstance(wire.message, BindingRevocationAck)
    pair.attach(MS, DMPA2, address=hoa)
    assert MS not in pair.dmpas[DMPA1].visitors and pair.dlmap.revocations
    # Half a second later the MS is back at A, which registers it again.
    pair.advance(0.5)
    pair.lose = lambda wire: False
    pair.attach(MS, DMPA1, address=hoa)
    assert hoa_at(pair, DMPA1) == hoa and pair.dlmap.bindings[NAI].dmpa == DMPA1
    # The BRI still going to A would remove the MS A serves now.
    pair.advance(10)
    assert hoa_at(pair, DMPA1) == hoa
    assert pair.dlmap.bindings[NAI].dmpa == DMPA1
    assert pair.fastpath["dlmap"][hoa] == (DMPA1, None)
    assert pair.fastpath["dmpa1"][hoa] == (DLMAP_ADDRESS, MS)
    assert all(r.peer != DMPA1 for r in pair.dlmap.revocations.values())
    assert pair.dlmap.counters["bri.cancelled"] == 1


def test_a_bri_older_than_the_registration_is_refused_by_its_per_ms_sequence() -> None:
    pair = registered(Pair())
    hoa = hoa_at(pair)
    pair.attach(MS, DMPA2, address=hoa)  # A is revoked (BRI with the per-MS sequence 2) ...
    pair.advance(1)
    stale = next(w for w in pair.sent if isinstance(w.message, BindingRevocationIndication))
    pair.attach(MS, DMPA1, address=hoa)  # ... and the MS comes back: A registers it again
    pair.advance(1)
    registration = pair.dmpas[DMPA1].visitors[MS].sequence
    assert stale.message.find(SeedIPv4HomeAddress).sequence < registration
    # The network delivers the first BRI once more, late: A keeps the MS it serves.
    pair.queue.append(stale)
    pair.deliver()
    bra = pair.messages(BindingRevocationAck, dst=DLMAP_ADDRESS)[-1]
    assert bra.sequence == stale.message.sequence
    assert bra.status == BRAStatus.REVOCATION_FAILED_MN_ATTACHED
    assert hoa_at(pair, DMPA1) == hoa and pair.fastpath["dmpa1"][hoa] == (DLMAP_ADDRESS, MS)
    assert pair.dmpas[DMPA1].counters["bri.stale"] == 1


# --- defect: under loss a revocation could be lost for good -----------------------------------


def bri_to_a(wire) -> bool:  # type: ignore[no-untyped-def]
    return wire.dst == DMPA1 and isinstance(wire.message, BindingRevocationIndication)


@DIALECTS
def test_a_revocation_whose_fast_retries_are_all_lost_goes_on_at_a_slower_pace(
    dialect: Dialect,
) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_at(pair)
    pair.advance(10)
    pair.lose = bri_to_a  # the BRI and its 3 fast retries (1 s apart) are all lost
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(3.5)
    assert len(pair.messages(BindingRevocationIndication, dst=DMPA1)) == 4
    assert MS in pair.dmpas[DMPA1].visitors and pair.dlmap.counters["bri.unanswered"] == 0
    assert pair.dlmap.counters["bri.backoff"] == 1  # the fast retries ran out
    pair.lose = lambda wire: False
    # The next one goes 2 s after the last fast retry (the interval doubling, up to 32 s).
    pair.advance(2.0)
    assert MS not in pair.dmpas[DMPA1].visitors and pair.fastpath["dmpa1"] == {}
    assert pair.dlmap.revocations == {}
    assert hoa_at(pair, DMPA2) == hoa


def test_a_revocation_is_given_up_when_the_old_registration_would_have_ended() -> None:
    pair = registered(Pair())
    hoa = hoa_at(pair)
    lifetime = pair.dlmap.bindings[NAI].lifetime
    ends = pair.dlmap.bindings[NAI].expires  # the old registration's end
    sent_at: list[float] = []

    def a_is_gone(wire) -> bool:  # type: ignore[no-untyped-def]
        if bri_to_a(wire):
            sent_at.append(pair.now)
        return wire.dst == DMPA1 or wire.src == DMPA1

    pair.lose = a_is_gone
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(lifetime + 60)
    assert pair.dlmap.revocations == {} and pair.dlmap.counters["bri.unanswered"] == 1
    # It went on until the old registration was over (then A's own refresh would have been
    # refused), no longer: 1 + 3 fast, then 2, 4, 8, 16 and every 32 s.
    assert ends - 32 <= sent_at[-1] <= ends
    assert len(sent_at) <= 4 + 4 + lifetime // 32 + 1


@DIALECTS
def test_a_refresh_refused_because_the_ms_is_elsewhere_removes_the_visitor(
    dialect: Dialect,
) -> None:
    pair = registered(Pair(dialect))
    hoa = hoa_at(pair)
    pair.advance(10)
    pair.lose = bri_to_a  # no revocation ever reaches A ...
    pair.attach(MS, DMPA2, address=hoa)
    pair.advance(10)
    pair.dlmap.revoker.cancel(DMPA1, NAI)  # ... (nor will: only A's refresh can tell it now)
    dmpa1 = pair.dmpas[DMPA1]
    assert dmpa1.visitors[MS].state is State.REGISTERED
    pair.advance(3600 * 0.8)  # A refreshes; the DLMAP refuses: another DMPA serves the MS
    assert MS not in dmpa1.visitors and pair.fastpath["dmpa1"] == {}
    assert dmpa1.counters["refresh.refused"] == 1
    pbus_from_a = len([w for w in pair.sent if w.src == DMPA1])
    pair.advance(600)
    assert len([w for w in pair.sent if w.src == DMPA1]) == pbus_from_a  # nothing more from A
    assert pair.dlmap.bindings[NAI].dmpa == DMPA2 and hoa_at(pair, DMPA2) == hoa
