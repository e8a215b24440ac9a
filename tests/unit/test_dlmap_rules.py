"""The DLMAP's rules one by one (seed section 6, RFC 5213/5844), each a named test, no sockets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from router.core.actions import Action, Bind, SendMH
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.pool import HoAPool
from router.wire.constants import BUFlag, HoAReplyStatus, Status
from router.wire.dialect import DRAFT, RFC5844
from router.wire.mh import BindingAck, BindingError, BindingUpdate
from router.wire.mh_options import (
    AccessTechnologyTypeOption,
    HandoffIndicatorOption,
    HomeNetworkPrefix,
    IPv4DefaultRouterAddress,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    MobilityOption,
    SeedIPv4HomeAddress,
    Timestamp,
)

DMPA = IPv6Address("2001:db8:1::1")
OTHER_DMPA = IPv6Address("2001:db8:3::1")
STRANGER = IPv6Address("2001:db8:99::1")
NAI = "ms1@example.net"
STATIC_NAI = "static@example.net"
STATIC = IPv4Address("192.0.2.100")
NOW, WALL = 50.0, 1_700_000_000.0
ANY = IPv4Address("0.0.0.0")


def dlmap(dialect=DRAFT, first="192.0.2.2", last="192.0.2.9") -> DLMAP:
    config = DLMAPConfig(
        IPv6Address("2001:db8:2::1"),
        IPv4Address("192.0.2.1"),
        {DMPA: dialect, OTHER_DMPA: dialect},
        revocation_budget=0,
    )
    return DLMAP(config, HoAPool([(IPv4Address(first), IPv4Address(last))], {STATIC_NAI: STATIC}))


def draft_pbu(
    seq: int = 1,
    hoa: IPv4Address = ANY,
    option_seq: int = 0,
    *,
    nai: str | None = NAI,
    lifetime: int = 900,
    flags: int | None = None,
    extra: tuple[MobilityOption, ...] = (),
    seed: bool = True,
) -> BindingUpdate:
    options: list[MobilityOption] = []
    if nai is not None:
        options.append(MobileNodeIdentifier.from_nai(nai))
    if seed:
        options.append(SeedIPv4HomeAddress(option_seq, hoa))
    return BindingUpdate(
        seq, DRAFT.pbu_flags() if flags is None else flags, lifetime, (*options, *extra)
    )


def rfc_pbu(
    seq: int = 1,
    hoa: IPv4Address = ANY,
    *,
    ts: float = WALL,
    lifetime: int = 900,
    drop: tuple[type, ...] = (),
    extra: tuple[MobilityOption, ...] = (),
) -> BindingUpdate:
    options = [
        MobileNodeIdentifier.from_nai(NAI),
        HandoffIndicatorOption(1),
        AccessTechnologyTypeOption(3),
        Timestamp.from_unix(ts),
        IPv4HomeAddressRequest(hoa),
    ]
    kept = tuple(o for o in options if not isinstance(o, drop)) + extra
    return BindingUpdate(seq, RFC5844.pbu_flags(), lifetime, kept)


def pba(actions: list[Action], to: IPv6Address = DMPA) -> BindingAck:
    sent = [a.message for a in actions if isinstance(a, SendMH) and a.peer == to]
    acks = [m for m in sent if isinstance(m, BindingAck)]
    assert len(acks) == 1, actions
    return acks[0]


def run(
    node: DLMAP, message: BindingUpdate, src: IPv6Address = DMPA, now: float = NOW
) -> BindingAck:
    return pba(node.receive(message, src, now, WALL + now - NOW), src)


# --- seed section 6 ----------------------------------------------------------------------


def test_v1_with_unspecified_hoa_allocates_from_the_pool() -> None:
    reply = run(dlmap(), draft_pbu())
    assert reply.status == Status.ACCEPTED
    assert reply.find(SeedIPv4HomeAddress).address == IPv4Address("192.0.2.2")


def test_v1_with_unspecified_hoa_and_the_pool_exhausted_answers_142() -> None:
    node = dlmap(first="192.0.2.2", last="192.0.2.2")
    assert run(node, draft_pbu(nai="a@x")).status == 0
    assert run(node, draft_pbu(2, nai="b@x")).status == 142


def test_v1_with_the_nais_own_unicast_hoa_is_accepted() -> None:
    node = dlmap()
    assert run(node, draft_pbu(hoa=STATIC, nai=STATIC_NAI)).status == Status.ACCEPTED


def test_v1_with_a_unicast_hoa_not_allocated_to_that_nai_answers_143() -> None:
    node = dlmap()
    assert run(node, draft_pbu(hoa=STATIC)).status == 143  # STATIC is another NAI's
    assert run(node, draft_pbu(2, hoa=IPv4Address("192.0.2.5"))).status == 143  # nobody's


def test_a_multicast_hoa_is_an_invalid_ipv4_address_143() -> None:
    assert run(dlmap(), draft_pbu(hoa=IPv4Address("224.0.0.1"))).status == 143


def test_option_sequence_zero_is_accepted_and_the_pba_carries_max_plus_one() -> None:
    node = dlmap()
    first = run(node, draft_pbu(1, option_seq=0))
    assert first.find(SeedIPv4HomeAddress).sequence == 1
    assert node.bindings[NAI].sequence == 1
    hoa = first.find(SeedIPv4HomeAddress).address
    again = run(node, draft_pbu(2, hoa, option_seq=0))  # 0 is always accepted
    assert again.find(SeedIPv4HomeAddress).sequence == 2


def test_option_sequence_at_least_the_bindings_is_accepted() -> None:
    node = dlmap()
    hoa = run(node, draft_pbu(1)).find(SeedIPv4HomeAddress).address
    reply = run(node, draft_pbu(2, hoa, option_seq=7))  # 7 >= 1: max(1, 7) + 1
    assert reply.status == 0 and reply.find(SeedIPv4HomeAddress).sequence == 8
    assert node.bindings[NAI].sequence == 8


def test_option_sequence_below_the_bindings_from_another_dmpa_is_administratively_prohibited() -> (
    None
):
    # The stale refresh of seed 6: the old DMPA still holds an earlier per-MS sequence number.
    node = dlmap()
    hoa = run(node, draft_pbu(1)).find(SeedIPv4HomeAddress).address
    run(node, draft_pbu(2, hoa, option_seq=7))
    refused = run(node, draft_pbu(3, hoa, option_seq=5), OTHER_DMPA)
    assert refused.status == Status.ADMINISTRATIVELY_PROHIBITED
    assert node.bindings[NAI].dmpa == DMPA


def test_the_serving_dmpa_one_pba_behind_is_accepted() -> None:
    # A refresh's PBA was lost: the serving DMPA retries with the value before the last one.
    node = dlmap()
    hoa = run(node, draft_pbu(1)).find(SeedIPv4HomeAddress).address  # binding: 1
    run(node, draft_pbu(2, hoa, option_seq=1))  # binding: 2; this PBA is lost
    reply = run(node, draft_pbu(3, hoa, option_seq=1))  # a new BU sequence, the old option value
    assert reply.status == 0 and reply.find(SeedIPv4HomeAddress).sequence == 3


def test_option_sequence_compares_modulo_2_16() -> None:
    node = dlmap()
    hoa = run(node, draft_pbu(1, option_seq=65534)).find(SeedIPv4HomeAddress).address
    assert node.bindings[NAI].sequence == 65535
    reply = run(node, draft_pbu(2, hoa, option_seq=65535))
    # Wrapped: 65535 + 1 is 0, which means "accept always", so the DLMAP assigns 1.
    assert reply.find(SeedIPv4HomeAddress).sequence == 1
    # From another DMPA, 65535 now precedes the binding's 1 in serial order: stale.
    assert run(node, draft_pbu(3, hoa, option_seq=65535), OTHER_DMPA).status == 129
    assert run(node, draft_pbu(4, hoa, option_seq=0), OTHER_DMPA).status == 0


def test_a_retransmitted_pbu_gets_the_same_answer_not_129() -> None:
    node = dlmap()
    pbu = draft_pbu(1)
    first = run(node, pbu)
    assert run(node, pbu) == first
    assert node.counters["pbu.retransmission"] == 1


def test_v1_never_creates_an_ipv6_binding() -> None:
    # seed 3.1.1: "DLMAP SHALL NOT set up MIPv6 binding entry ... even if the home address
    # options is included". An HNP asks for IPv6 service: it is ignored, nothing IPv6 is bound.
    node = dlmap()
    hnp = HomeNetworkPrefix(64, IPv6Address("2001:db8:aa::"))
    actions = node.receive(draft_pbu(extra=(hnp,)), DMPA, NOW, WALL)
    reply = pba(actions)
    assert reply.status == 0 and reply.find(HomeNetworkPrefix) is None
    binds = [a for a in actions if isinstance(a, Bind)]
    assert binds == [Bind(IPv4Address("192.0.2.2"), DMPA)]
    assert all(isinstance(b.hoa, IPv4Address) for b in binds)


def test_the_pba_has_the_v_flag_and_the_seed_option() -> None:
    reply = run(dlmap(), draft_pbu())
    assert DRAFT.ba_has_v(reply.flags) and reply.flags & 0x20
    assert reply.find(SeedIPv4HomeAddress) is not None
    assert reply.find(MobileNodeIdentifier).nai == NAI


def test_v0_without_a_prefix_pool_is_refused_129() -> None:
    flags = int(BUFlag.A | BUFlag.H | BUFlag.P)
    assert run(dlmap(), draft_pbu(flags=flags)).status == Status.ADMINISTRATIVELY_PROHIBITED


def test_no_seed_option_is_refused_129() -> None:
    assert run(dlmap(), draft_pbu(seed=False)).status == Status.ADMINISTRATIVELY_PROHIBITED


# --- PMIPv6 checks -------------------------------------------------------------------------


def test_missing_mn_id_answers_160() -> None:
    assert run(dlmap(), draft_pbu(nai=None)).status == Status.MISSING_MN_IDENTIFIER_OPTION


def test_unknown_dmpa_answers_154() -> None:
    assert run(dlmap(), draft_pbu(), STRANGER).status == Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG


def test_no_p_flag_answers_152() -> None:
    flags = DRAFT.pbu_flags() & ~BUFlag.P
    assert run(dlmap(), draft_pbu(flags=flags)).status == Status.PROXY_REG_NOT_ENABLED


def test_bu_sequence_is_per_dmpa_and_modulo_2_16() -> None:
    node = dlmap()
    hoa = run(node, draft_pbu(65535)).find(SeedIPv4HomeAddress).address
    assert run(node, draft_pbu(0, hoa, 1)).status == 0  # 0 follows 65535
    refused = run(node, draft_pbu(65000, hoa, 2))
    assert refused.status == Status.SEQUENCE_NUMBER_OUT_OF_WINDOW and refused.sequence == 0
    # Another DMPA has its own counter.
    assert run(node, draft_pbu(5, nai="b@x"), OTHER_DMPA).status == 0


def test_lifetime_zero_deregisters() -> None:
    node = dlmap()
    hoa = run(node, draft_pbu(1)).find(SeedIPv4HomeAddress).address
    reply = run(node, draft_pbu(2, hoa, 1, lifetime=0))
    assert reply.status == 0 and reply.lifetime == 0
    assert NAI not in node.bindings
    assert node.pool.allocated_to(NAI) == hoa  # the same NAI gets it back while the lease lives
    assert run(node, draft_pbu(3)).find(SeedIPv4HomeAddress).address == hoa


def test_a_refreshed_binding_lives_to_its_new_expiry_and_then_expires() -> None:
    node = dlmap()
    hoa = run(node, draft_pbu(1, lifetime=25)).find(SeedIPv4HomeAddress).address  # 4 s units
    first = node.bindings[NAI].expires
    assert first == NOW + 100 and node.get_timer() == first
    run(node, draft_pbu(2, hoa, 1, lifetime=25), now=NOW + 50)
    expires = node.bindings[NAI].expires
    assert expires == NOW + 150
    # the wake may come at the first deadline: it finds nothing due and sets the real one
    woken = node.get_timer()
    assert woken is not None and first <= woken <= expires
    assert node.handle_timer(woken, WALL) == [] or woken == expires
    assert NAI in node.bindings and node.get_timer() == expires
    node.handle_timer(expires - 0.1, WALL)
    assert NAI in node.bindings
    node.handle_timer(expires, WALL)
    assert NAI not in node.bindings  # (the pool's lease timer runs on)


def test_a_shorter_lifetime_brings_the_expiry_forward() -> None:
    node = dlmap()
    hoa = run(node, draft_pbu(1, lifetime=25)).find(SeedIPv4HomeAddress).address
    run(node, draft_pbu(2, hoa, 1, lifetime=2), now=NOW + 5)
    assert node.bindings[NAI].expires == NOW + 13 and node.get_timer() == NOW + 13
    node.handle_timer(NOW + 13, WALL)
    assert NAI not in node.bindings


def test_deregistration_from_a_dmpa_that_no_longer_serves_the_nai_is_answered_only() -> None:
    node = dlmap()
    hoa = run(node, draft_pbu(1)).find(SeedIPv4HomeAddress).address
    run(node, draft_pbu(1, hoa), OTHER_DMPA)  # handover
    reply = run(node, draft_pbu(2, hoa, 1, lifetime=0))  # the old DMPA's late detach
    assert reply.status == 0
    assert node.bindings[NAI].dmpa == OTHER_DMPA


def held_handover(budget: float, lifetime: int = 900) -> tuple[DLMAP, IPv4Address]:
    """A DLMAP holding the PBA of a handover to OTHER_DMPA at NOW + 1 (the old DMPA has not
    acknowledged the revocation yet, and ``budget`` has not run out)."""
    config = DLMAPConfig(
        IPv6Address("2001:db8:2::1"),
        IPv4Address("192.0.2.1"),
        {DMPA: DRAFT, OTHER_DMPA: DRAFT},
        revocation_budget=budget,
    )
    node = DLMAP(config, HoAPool([(IPv4Address("192.0.2.2"), IPv4Address("192.0.2.9"))]))
    hoa = run(node, draft_pbu(1)).find(SeedIPv4HomeAddress).address
    sequence = node.bindings[NAI].sequence
    actions = node.receive(
        draft_pbu(1, hoa, sequence, lifetime=lifetime), OTHER_DMPA, NOW + 1, WALL + 1
    )
    assert not [a for a in actions if isinstance(a, SendMH) and a.peer == OTHER_DMPA]
    assert NAI in node.pending
    return node, hoa


def sent_to(actions: list[Action], peer: IPv6Address) -> list[tuple[int, int]]:
    """The (sequence, lifetime) of each PBA sent to ``peer``, in order."""
    return [
        (a.message.sequence, a.message.lifetime)
        for a in actions
        if isinstance(a, SendMH) and a.peer == peer and isinstance(a.message, BindingAck)
    ]


def test_a_deregistration_during_a_held_handover_sends_the_held_pba_first() -> None:
    node, hoa = held_handover(budget=0.5)
    actions = node.receive(draft_pbu(2, hoa, 0, lifetime=0), OTHER_DMPA, NOW + 1.1, WALL + 1.1)
    assert sent_to(actions, OTHER_DMPA) == [(1, 900), (2, 0)]  # the held one (4 s units), then 0
    assert NAI not in node.bindings and NAI not in node.pending
    # registered again before the budget's end: the old PBA never leaves a second time
    run(node, draft_pbu(3), OTHER_DMPA, now=NOW + 1.2)
    assert sent_to(node.handle_timer(NOW + 1.6, WALL + 1.6), OTHER_DMPA) == []


def test_a_binding_that_expires_while_its_pba_is_held_drops_the_pba() -> None:
    node, _ = held_handover(budget=30.0, lifetime=1)  # 4 s, shorter than the budget
    node.handle_timer(NOW + 5, WALL + 5)
    assert NAI not in node.bindings and NAI not in node.pending
    assert node.get_timer() is None or node.get_timer() > NOW + 5
    assert sent_to(node.handle_timer(NOW + 31, WALL + 31), OTHER_DMPA) == []


def test_lifetime_is_capped_by_configuration() -> None:
    reply = run(dlmap(), draft_pbu(lifetime=0xFFFF))
    assert reply.lifetime_seconds == 3600


def test_unknown_mh_type_is_answered_with_a_rate_limited_binding_error() -> None:
    node = dlmap()
    first = node.receive_unknown_type(42, DMPA, NOW)
    second = node.receive_unknown_type(42, DMPA, NOW + 0.1)
    errors = [a.message for a in first + second if isinstance(a, SendMH)]
    assert errors == [BindingError(2)]


# --- rfc5844 dialect ----------------------------------------------------------------------


def test_rfc5844_accepts_and_answers_with_reply_and_default_router() -> None:
    reply = run(dlmap(RFC5844), rfc_pbu())
    assert reply.status == 0 and reply.flags == 0x20
    hoa_reply = reply.find(IPv4HomeAddressReply)
    assert hoa_reply.status == 0 and hoa_reply.address == IPv4Address("192.0.2.2")
    assert reply.find(IPv4DefaultRouterAddress).address == IPv4Address("192.0.2.1")
    assert reply.find(Timestamp) == Timestamp.from_unix(WALL)


@pytest.mark.parametrize(
    ("drop", "status"),
    [
        (HandoffIndicatorOption, Status.MISSING_HANDOFF_INDICATOR_OPTION),
        (AccessTechnologyTypeOption, Status.MISSING_ACCESS_TECH_TYPE_OPTION),
        (IPv4HomeAddressRequest, Status.MISSING_HOME_NETWORK_PREFIX_OPTION),
    ],
)
def test_rfc5844_missing_mandatory_options(drop: type, status: int) -> None:
    assert run(dlmap(RFC5844), rfc_pbu(drop=(drop,))).status == status


def test_rfc5844_ipv6_service_without_a_prefix_pool_is_not_offered_172() -> None:
    hnp = HomeNetworkPrefix(64, IPv6Address("2001:db8:aa::"))
    reply = run(dlmap(RFC5844), rfc_pbu(drop=(IPv4HomeAddressRequest,), extra=(hnp,)))
    assert reply.status == Status.NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE


def test_rfc5844_timestamp_outside_the_window_answers_156_with_our_time() -> None:
    reply = run(dlmap(RFC5844), rfc_pbu(ts=WALL - 5))
    assert reply.status == Status.TIMESTAMP_MISMATCH
    assert reply.find(Timestamp) == Timestamp.from_unix(WALL)


def test_rfc5844_timestamp_not_newer_than_the_last_answers_157() -> None:
    node = dlmap(RFC5844)
    run(node, rfc_pbu(1))
    assert run(node, rfc_pbu(2, IPv4Address("192.0.2.2"), ts=WALL - 0.1)).status == 157


def test_rfc5844_address_errors_carry_reply_statuses() -> None:
    node = dlmap(RFC5844)
    wrong = run(node, rfc_pbu(hoa=STATIC))
    assert wrong.status == Status.NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS
    assert wrong.find(IPv4HomeAddressReply).status == HoAReplyStatus.INCORRECT_IPV4_HOME_ADDRESS
    invalid = run(node, rfc_pbu(2, hoa=IPv4Address("255.255.255.255")))
    assert invalid.find(IPv4HomeAddressReply).status == HoAReplyStatus.INVALID_IPV4_ADDRESS
