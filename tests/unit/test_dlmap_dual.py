"""The DLMAP's V=0 registrations (seed 3.1.1) and plain RFC 5213: IPv6 home network prefixes
beside (or instead of) the IPv4 home address, one rule per test, no sockets."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, IPv6Network

from router.core.actions import Action, Bind, BindPrefix, Persist, SendMH, Unbind, UnbindPrefix
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.pool import HoAPool
from router.core.prefix_pool import PrefixPool
from router.wire.constants import BRFlag, BUFlag, Status
from router.wire.dialect import DRAFT, RFC5844
from router.wire.mh import BindingAck, BindingRevocationIndication, BindingUpdate
from router.wire.mh_options import (
    HomeNetworkPrefix,
    IPv4HomeAddressReply,
    IPv4HomeAddressRequest,
    SeedIPv4HomeAddress,
)
from tests.unit.test_dlmap_rules import (
    DMPA,
    NOW,
    OTHER_DMPA,
    WALL,
    draft_pbu,
    pba,
    rfc_pbu,
    run,
)

V0 = int(BUFlag.A | BUFlag.H | BUFlag.P)
POOL = IPv6Network("2001:db8:ff00::/62")  # four /64s
ASK = HomeNetworkPrefix(0, IPv6Address("::"))
FIRST = IPv6Network("2001:db8:ff00::/64")
SECOND = IPv6Network("2001:db8:ff00:1::/64")


def node(dialect=DRAFT, pool: IPv6Network | None = POOL, last: str = "192.0.2.9") -> DLMAP:
    config = DLMAPConfig(
        IPv6Address("2001:db8:2::1"),
        IPv4Address("192.0.2.1"),
        {DMPA: dialect, OTHER_DMPA: dialect},
        revocation_budget=0,
    )
    hoas = HoAPool([(IPv4Address("192.0.2.2"), IPv4Address(last))])
    return DLMAP(config, hoas, PrefixPool(pool) if pool is not None else None)


def dual(seq: int = 1, *, nai: str = "ms1@example.net", prefix=ASK, seed: bool = True):
    return draft_pbu(seq, nai=nai, flags=V0, extra=(prefix,), seed=seed)


def hnp(reply: BindingAck) -> IPv6Network | None:
    option = reply.find(HomeNetworkPrefix)
    return None if option is None else IPv6Network((option.prefix, option.prefix_length))


def receive(dlmap: DLMAP, message: BindingUpdate, src: IPv6Address = DMPA, now: float = NOW):
    return dlmap.receive(message, src, now, WALL + now - NOW)


def test_v0_with_the_ipv4_option_and_an_hnp_makes_one_binding_with_both() -> None:
    dlmap = node()
    actions = receive(dlmap, dual())
    reply = pba(actions)
    assert reply.status == Status.ACCEPTED
    assert not DRAFT.ba_has_v(reply.flags) and reply.flags & 0x20  # V=0 answered without V
    assert reply.find(SeedIPv4HomeAddress).address == IPv4Address("192.0.2.2")
    assert hnp(reply) == FIRST
    bce = dlmap.bindings["ms1@example.net"]
    assert (bce.hoa, bce.prefix) == (IPv4Address("192.0.2.2"), FIRST)
    assert Bind(IPv4Address("192.0.2.2"), DMPA) in actions
    assert BindPrefix(FIRST, DMPA) in actions
    row = next(a.record for a in actions if isinstance(a, Persist) and a.table == "binding")
    assert row is not None and row["prefix"] == "2001:db8:ff00::/64"


def test_v0_with_only_an_hnp_is_plain_rfc5213() -> None:
    dlmap = node()
    actions = receive(dlmap, dual(seed=False))
    reply = pba(actions)
    assert reply.status == Status.ACCEPTED
    assert reply.find(SeedIPv4HomeAddress) is None and hnp(reply) == FIRST
    assert dlmap.bindings["ms1@example.net"].hoa is None
    assert not any(isinstance(a, Bind) for a in actions)
    assert dlmap.by_hoa == {}
    assert dlmap.pool.lease_of("ms1@example.net") is None  # no IPv4 address taken


def test_v1_keeps_its_rule_an_hnp_makes_no_ipv6_binding() -> None:
    dlmap = node()
    actions = receive(dlmap, draft_pbu(extra=(ASK,)))
    reply = pba(actions)
    assert reply.status == Status.ACCEPTED and DRAFT.ba_has_v(reply.flags)
    assert reply.find(HomeNetworkPrefix) is None
    assert dlmap.bindings["ms1@example.net"].prefix is None
    assert not any(isinstance(a, BindPrefix) for a in actions)
    assert dlmap.prefixes is not None and dlmap.prefixes.in_use() == 0


def test_v0_without_an_hnp_answers_158() -> None:
    reply = run(node(), draft_pbu(flags=V0))
    assert reply.status == Status.MISSING_HOME_NETWORK_PREFIX_OPTION


def test_prefix_exhaustion_answers_130_and_takes_no_ipv4_address() -> None:
    dlmap = node(pool=IPv6Network("2001:db8:ff00::/63"))  # two /64s
    assert run(dlmap, dual(1, nai="a@x")).status == Status.ACCEPTED
    assert run(dlmap, dual(2, nai="b@x")).status == Status.ACCEPTED
    reply = run(dlmap, dual(3, nai="c@x"))
    assert reply.status == Status.INSUFFICIENT_RESOURCES
    assert hnp(reply) == IPv6Network("::/0")  # the PBU's option, echoed (RFC 5213 5.3.5)
    assert dlmap.pool.lease_of("c@x") is None
    assert dlmap.counters["prefix.exhausted"] == 1


def test_a_prefix_outside_the_pool_answers_155() -> None:
    foreign = HomeNetworkPrefix(64, IPv6Address("2001:db8:aaaa::"))
    reply = run(node(), dual(prefix=foreign))
    assert reply.status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX


def test_another_nais_prefix_answers_155() -> None:
    dlmap = node()
    assert hnp(run(dlmap, dual(1, nai="a@x"))) == FIRST
    taken = HomeNetworkPrefix(64, FIRST.network_address)
    reply = run(dlmap, dual(2, nai="b@x", prefix=taken))
    assert reply.status == Status.NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX
    assert "b@x" not in dlmap.bindings


def test_a_prefix_other_than_the_bindings_answers_159() -> None:
    dlmap = node()
    run(dlmap, dual(1, nai="a@x"))
    run(dlmap, dual(2, nai="b@x"))
    theirs = HomeNetworkPrefix(64, SECOND.network_address)
    reply = run(dlmap, dual(3, nai="a@x", prefix=theirs))
    assert reply.status == Status.BCE_PBU_PREFIX_SET_DO_NOT_MATCH


def test_a_refresh_with_the_prefix_held_keeps_it() -> None:
    dlmap = node()
    first = run(dlmap, dual(1))
    held = HomeNetworkPrefix(64, FIRST.network_address)
    seed = first.find(SeedIPv4HomeAddress)
    refresh = draft_pbu(2, seed.address, seed.sequence, flags=V0, extra=(held,))
    actions = receive(dlmap, refresh, now=NOW + 10)
    assert pba(actions).status == Status.ACCEPTED and hnp(pba(actions)) == FIRST
    assert not any(isinstance(a, BindPrefix | UnbindPrefix) for a in actions)  # unchanged


def test_handover_moves_both_and_revokes_the_whole_binding() -> None:
    dlmap = node()
    run(dlmap, dual(1))
    actions = receive(dlmap, dual(1), src=OTHER_DMPA, now=NOW + 5)
    reply = pba(actions, OTHER_DMPA)
    assert reply.status == Status.ACCEPTED and hnp(reply) == FIRST
    assert Bind(IPv4Address("192.0.2.2"), OTHER_DMPA) in actions
    assert BindPrefix(FIRST, OTHER_DMPA) in actions
    bri = next(
        a.message
        for a in actions
        if isinstance(a, SendMH) and isinstance(a.message, BindingRevocationIndication)
    )
    assert not bri.flags & BRFlag.V  # RFC 5846: V would revoke the IPv4 binding only


def test_deregistration_removes_both() -> None:
    dlmap = node()
    run(dlmap, dual(1))
    actions = receive(dlmap, dual(2, prefix=HomeNetworkPrefix(64, FIRST.network_address)))
    assert pba(actions).status == 0
    dereg = draft_pbu(3, IPv4Address("192.0.2.2"), flags=V0, lifetime=0, extra=(ASK,))
    actions = receive(dlmap, dereg, now=NOW + 1)
    assert Unbind(IPv4Address("192.0.2.2")) in actions and UnbindPrefix(FIRST) in actions
    assert dlmap.prefixes is not None and dlmap.prefixes.in_use() == 0


def test_restart_keeps_the_prefix() -> None:
    dlmap = node()
    actions: list[Action] = receive(dlmap, dual(1, nai="a@x"))
    actions += receive(dlmap, dual(2, nai="b@x", seed=False))
    tables: dict[str, dict[str, dict[str, object]]] = {}
    for action in actions:
        if isinstance(action, Persist) and action.record is not None:
            tables.setdefault(action.table, {})[action.key] = action.record
    again = node()
    restored = again.restore({t: list(r.values()) for t, r in tables.items()}, NOW + 1, WALL + 1)
    assert BindPrefix(FIRST, DMPA) in restored and BindPrefix(SECOND, DMPA) in restored
    assert again.bindings["b@x"].hoa is None and again.bindings["b@x"].prefix == SECOND
    # The restored prefixes are taken: a new NAI gets the next one, a refresh gets its own.
    assert hnp(run(again, dual(3, nai="c@x"), now=NOW + 2)) == IPv6Network("2001:db8:ff00:2::/64")
    assert hnp(run(again, dual(4, nai="a@x"), now=NOW + 2)) == FIRST


def test_rfc5844_dual_stack_and_ipv6_only() -> None:
    dlmap = node(RFC5844)
    reply = run(dlmap, rfc_pbu(extra=(ASK,)))
    assert reply.status == Status.ACCEPTED and hnp(reply) == FIRST
    assert reply.find(IPv4HomeAddressReply).address == IPv4Address("192.0.2.2")
    other = node(RFC5844)
    reply = run(other, rfc_pbu(drop=(IPv4HomeAddressRequest,), extra=(ASK,)))
    assert reply.status == Status.ACCEPTED and hnp(reply) == FIRST
    assert reply.find(IPv4HomeAddressReply) is None


def test_an_ipv4_refusal_gives_the_new_prefix_back() -> None:
    dlmap = node(last="192.0.2.2")  # one IPv4 address
    assert run(dlmap, dual(1, nai="a@x")).status == 0
    assert run(dlmap, dual(2, nai="b@x")).status == 142
    assert dlmap.prefixes is not None and dlmap.prefixes.in_use() == 1


def test_an_operator_clear_revokes_the_whole_dual_stack_binding() -> None:
    dlmap = node()
    run(dlmap, dual(1))
    actions = dlmap.clear("ms1@example.net", NOW + 1, WALL + 1)
    bri = next(
        a.message
        for a in actions
        if isinstance(a, SendMH) and isinstance(a.message, BindingRevocationIndication)
    )
    assert not bri.flags & BRFlag.V
    assert UnbindPrefix(FIRST) in actions and dlmap.bindings == {}
