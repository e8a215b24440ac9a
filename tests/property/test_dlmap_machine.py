"""A hypothesis state machine on the DLMAP: random PBUs from random DMPAs, time, revocations.

Invariants after every step:
* a home address belongs to at most one binding;
* free + allocated = pool size, counting address by address;
* no binding outlives its lifetime;
* the fastpath bind/unbind actions, replayed, equal the binding cache;
* the persisted rows, replayed, equal the binding cache (and a restart from them rebuilds it).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from router.core.actions import Action, Bind, Persist, SendMH, Unbind
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.pool import HoAPool
from router.wire.constants import BUFlag
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.mh import BindingRevocationAck, BindingRevocationIndication, BindingUpdate
from router.wire.mh_options import (
    AccessTechnologyTypeOption,
    HandoffIndicatorOption,
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    SeedIPv4HomeAddress,
    Timestamp,
)

DMPAS = [IPv6Address("2001:db8:1::1"), IPv6Address("2001:db8:3::1")]
STRANGER = IPv6Address("2001:db8:99::1")
NAIS = [f"ms{i}@example.net" for i in range(8)]
FIRST, LAST = IPv4Address("192.0.2.2"), IPv4Address("192.0.2.6")  # 5 addresses, 7 dynamic NAIs
STATIC = {"ms7@example.net": IPv4Address("192.0.2.50")}
CANDIDATES = [IPv4Address("0.0.0.0"), *[IPv4Address(int(FIRST) + i) for i in range(6)]]
MAX_LIFETIME = 120


def new_dlmap(dialect: Dialect = DRAFT) -> DLMAP:
    config = DLMAPConfig(
        IPv6Address("2001:db8:2::1"),
        IPv4Address("192.0.2.1"),
        {d: dialect for d in DMPAS},
        max_lifetime=MAX_LIFETIME,
        revocation_budget=0.3,
    )
    return DLMAP(config, HoAPool([(FIRST, LAST)], STATIC, lease_time=30))


class DLMAPMachine(RuleBasedStateMachine):
    DIALECT = DRAFT

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.dlmap = new_dlmap(self.DIALECT)
        self.fastpath: dict[IPv4Address, IPv6Address] = {}
        self.db: dict[str, dict[str, dict[str, Any]]] = {}
        self.bu_seq = {d: 0 for d in (*DMPAS, STRANGER)}
        self.bris: list[tuple[IPv6Address, BindingRevocationIndication]] = []

    @property
    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Bind):
                self.fastpath[action.hoa] = action.endpoint
            elif isinstance(action, Unbind):
                self.fastpath.pop(action.hoa, None)
            elif isinstance(action, Persist):
                rows = self.db.setdefault(action.table, {})
                if action.record is None:
                    rows.pop(action.key, None)
                else:
                    rows[action.key] = dict(action.record)
            elif isinstance(action, SendMH) and isinstance(
                action.message, BindingRevocationIndication
            ):
                self.bris.append((action.peer, action.message))

    @rule(
        dmpa=st.sampled_from([*DMPAS, STRANGER]),
        nai=st.sampled_from(NAIS),
        hoa=st.one_of(st.just(CANDIDATES[0]), st.sampled_from(CANDIDATES)),
        option_seq=st.sampled_from([0, 0, 1, 2, 3, 5]),
        lifetime=st.sampled_from([0, 4, 15, 30, 0xFFFF]),
        seq_step=st.sampled_from([1, 1, 1, 2, 0, -1]),
        handoff=st.sampled_from([1, 4, 5]),
        skew=st.sampled_from([0.0, 0.0, 0.1, -0.1, -1.0]),
    )
    def pbu(
        self,
        dmpa: IPv6Address,
        nai: str,
        hoa: IPv4Address,
        option_seq: int,
        lifetime: int,
        seq_step: int,
        handoff: int,
        skew: float,
    ) -> None:
        self.bu_seq[dmpa] = (self.bu_seq[dmpa] + seq_step) % 65536
        nai_option = MobileNodeIdentifier.from_nai(nai)
        if self.DIALECT is DRAFT:
            options: tuple[Any, ...] = (nai_option, SeedIPv4HomeAddress(option_seq, hoa))
        else:
            options = (
                nai_option,
                HandoffIndicatorOption(handoff),
                AccessTechnologyTypeOption(3),
                Timestamp.from_unix(self.wall + skew),
                IPv4HomeAddressRequest(hoa),
            )
        message = BindingUpdate(self.bu_seq[dmpa], self.DIALECT.pbu_flags(), lifetime, options)
        actions = self.dlmap.receive(message, dmpa, self.now, self.wall)
        for action in actions:
            if isinstance(action, SendMH) and action.peer == dmpa:
                event(f"PBA status {getattr(action.message, 'status', '?')}")
            elif isinstance(action, SendMH):
                event("handover: BRI to the old DMPA")
        self.apply(actions)

    @rule(seconds=st.floats(0.01, 60))
    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        for _ in range(1000):
            deadline = self.dlmap.get_timer()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.apply(self.dlmap.handle_timer(self.now, self.wall))
        self.now = end

    @precondition(lambda self: bool(self.bris))
    @rule(data=st.data())
    def acknowledge_a_revocation(self, data: st.DataObject) -> None:
        peer, bri = self.bris.pop(data.draw(st.integers(0, len(self.bris) - 1)))
        bra = BindingRevocationAck(0, bri.sequence, bri.flags, bri.options)  # names it back
        self.apply(self.dlmap.receive(bra, peer, self.now, self.wall))

    @rule()
    def restart(self) -> None:
        """Restart from the persisted rows only: the rebuilt state must be the same."""
        before = {n: (b.hoa, b.dmpa, b.sequence) for n, b in self.dlmap.bindings.items()}
        tables = {t: list(rows.values()) for t, rows in self.db.items()}
        self.dlmap = new_dlmap(self.DIALECT)
        self.fastpath = {}
        self.bris = []
        self.apply(self.dlmap.restore(tables, self.now, self.wall))
        after = {n: (b.hoa, b.dmpa, b.sequence) for n, b in self.dlmap.bindings.items()}
        # Bindings whose lifetime ended exactly now may go; nothing else may change.
        assert set(after) <= set(before)
        assert all(after[n] == before[n] for n in after)

    @invariant()
    def a_hoa_belongs_to_at_most_one_binding(self) -> None:
        hoas = [b.hoa for b in self.dlmap.bindings.values()]
        assert len(hoas) == len(set(hoas))
        assert self.dlmap.by_hoa == {b.hoa: n for n, b in self.dlmap.bindings.items()}

    @invariant()
    def free_plus_allocated_is_the_pool_size(self) -> None:
        pool = self.dlmap.pool
        addresses = {IPv4Address(v) for v in range(int(FIRST), int(LAST) + 1)}
        allocated = {a for a in addresses if pool.owner(a) is not None}
        # "Free" as the allocator sees it (its free list and untouched range), not as the
        # complement of "allocated": an address released but never reusable shows up here.
        free = pool.free_addresses()
        assert free | allocated == addresses and not free & allocated
        assert len(free) + len(allocated) == pool.size == 5
        assert len(allocated) == pool.dynamic_in_use()
        # Each lease's address is owned by exactly its NAI.
        for lease in pool.leases():
            assert pool.owner(lease.address) == lease.nai

    @invariant()
    def no_binding_outlives_its_lifetime(self) -> None:
        for binding in self.dlmap.bindings.values():
            assert binding.expires > self.now  # every deadline up to now has been handled
            assert binding.expires - self.now <= MAX_LIFETIME + 1e-6
            assert binding.lifetime <= MAX_LIFETIME

    @invariant()
    def fastpath_replay_equals_the_cache(self) -> None:
        assert self.fastpath == {b.hoa: b.dmpa for b in self.dlmap.bindings.values()}

    @invariant()
    def persisted_rows_equal_the_cache(self) -> None:
        rows = self.db.get("binding", {})
        assert set(rows) == set(self.dlmap.bindings)
        for nai, binding in self.dlmap.bindings.items():
            assert rows[nai]["hoa"] == str(binding.hoa)
            assert rows[nai]["dmpa"] == str(binding.dmpa)
            assert rows[nai]["sequence"] == binding.sequence


DLMAPMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestDLMAPMachine = DLMAPMachine.TestCase


class RFC5844Machine(DLMAPMachine):
    """The same invariants with RFC 5213/5844 peers: timestamps, handoff indicators."""

    DIALECT = RFC5844


RFC5844Machine.TestCase.settings = DLMAPMachine.TestCase.settings
TestRFC5844Machine = RFC5844Machine.TestCase


def test_unknown_dmpa_never_gets_a_binding() -> None:
    node = new_dlmap()
    message = BindingUpdate(
        1,
        DRAFT.pbu_flags() | BUFlag.A,
        10,
        (MobileNodeIdentifier.from_nai(NAIS[0]), SeedIPv4HomeAddress(0, CANDIDATES[0])),
    )
    node.receive(message, STRANGER, 0.0, 0.0)
    assert node.bindings == {}
