"""HoA table: bind / unbind / lookup / len / iterate / growth, in both twins."""

from __future__ import annotations

import random
import socket
import tracemalloc
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fastpath.packets import DLMAP, DMPA, MS_MAC, OTHER6

MiB = 1 << 20


def test_bind_lookup_unbind(fp: ModuleType) -> None:
    t = fp.HoaTable()
    assert len(t) == 0 and t.lookup(1) is None and 1 not in t
    t.bind(0xC0000202, DMPA, MS_MAC, link=3, flags=0x81)
    b = t.lookup(0xC0000202)
    assert b is not None
    assert (b.hoa, b.endpoint, b.mac, b.link, b.flags, b.packets, b.octets) == (
        0xC0000202,
        DMPA,
        MS_MAC,
        3,
        0x81,
        0,
        0,
    )
    assert 0xC0000202 in t and len(t) == 1
    t.bind(0xC0000202, DLMAP, MS_MAC, link=4)  # handover: replaced in place
    b = t.lookup(0xC0000202)
    assert b is not None and b.endpoint == DLMAP and b.link == 4 and b.flags == 0
    assert len(t) == 1 and b.gateway == 0  # none given: the engine's own
    t.bind(0xC0000202, DLMAP, MS_MAC, link=4, gateway=0xC000023E)  # the MS's own (issue 15)
    b = t.lookup(0xC0000202)
    assert b is not None and (b.endpoint, b.gateway) == (DLMAP, 0xC000023E)
    assert t.unbind(0xC0000202) is True
    assert t.unbind(0xC0000202) is False
    assert t.lookup(0xC0000202) is None and len(t) == 0


def test_extreme_keys(fp: ModuleType) -> None:
    t = fp.HoaTable()
    for k in (0, 1, 0xFFFFFFFF, 0x80000000):
        t.bind(k, DMPA)
    assert sorted(b.hoa for b in t) == [0, 1, 0x80000000, 0xFFFFFFFF]
    assert t.lookup(-1) is None and t.lookup(1 << 32) is None
    assert t.unbind(1 << 32) is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hoa": -1, "endpoint": DMPA},
        {"hoa": 1 << 32, "endpoint": DMPA},
        {"hoa": 1, "endpoint": DMPA[:15]},
        {"hoa": 1, "endpoint": DMPA, "mac": b"12345"},
        {"hoa": 1, "endpoint": DMPA, "link": 70000},
        {"hoa": 1, "endpoint": DMPA, "flags": 256},
        {"hoa": 1, "endpoint": DMPA, "gateway": 1 << 32},
        {"hoa": 1, "endpoint": DMPA, "gateway": -1},
    ],
)
def test_bind_rejects_impossible_values(fp: ModuleType, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        fp.HoaTable().bind(**kwargs)


def test_growth_and_iteration(fp: ModuleType) -> None:
    t = fp.HoaTable(capacity=4)
    keys = random.Random(1).sample(range(1 << 32), 5000)
    for i, k in enumerate(keys):
        t.bind(k, DMPA if i % 2 else DLMAP, link=i % 7)
    assert len(t) == 5000
    assert all(t.lookup(k) is not None for k in keys)
    assert [b.hoa for b in t] == keys  # insertion order while nothing was unbound
    for k in keys[::2]:
        assert t.unbind(k)
    assert len(t) == 2500
    assert sorted(b.hoa for b in t) == sorted(keys[1::2])
    assert all((t.lookup(k) is None) == (i % 2 == 0) for i, k in enumerate(keys))
    t.clear()
    assert len(t) == 0 and list(t) == []
    t.bind(keys[0], OTHER6)
    assert t.lookup(keys[0]) is not None


ops = st.lists(
    st.tuples(
        # bind and unbind most often; batch: an engine's batch call (it moves old slots too)
        st.sampled_from(["bind", "bind", "unbind", "unbind", "lookup", "batch", "clear"]),
        st.integers(0, 80),  # few keys: many collisions of bind/unbind on the same key
        st.sampled_from([DMPA, DLMAP, OTHER6]),
        st.integers(0, 3),
        st.sampled_from([0, 0, 0xC0000201, 0xC000023E]),  # the MS's gateway (0: the engine's)
    ),
    max_size=200,
)


def hoa_of(key: int) -> int:
    return (key * 0x01000193) & 0xFFFFFFFF  # spread over the key space, with collisions too


@settings(max_examples=150, deadline=None)
@given(ops)
def test_twins_agree_on_any_sequence(ops: list[tuple[str, int, bytes, int, int]]) -> None:
    """Same results, same iteration order and the same allocation and growth state (the
    compiled table starts at 16 slots: these sequences go through several growth steps)."""
    from tests.fastpath.conftest import load

    twins = load("reference"), load("compiled")
    tables = [fp.HoaTable(capacity=1) for fp in twins]
    batch = [
        (fp.Dlmap(t, DLMAP), fp.Batch(1), fp.Batch(1, 2088))
        for fp, t in zip(twins, tables, strict=True)
    ]
    ref, comp = tables
    for op, key, ep, link, gateway in ops:
        hoa = hoa_of(key)
        if op == "bind":
            ref.bind(hoa, ep, link=link, gateway=gateway)
            comp.bind(hoa, ep, link=link, gateway=gateway)
        elif op == "unbind":
            assert ref.unbind(hoa) == comp.unbind(hoa)
        elif op == "lookup":
            assert ref.lookup(hoa) == comp.lookup(hoa)
        elif op == "batch":
            assert [dl.tun_batch(i, o) for dl, i, o in batch] == [0, 0]
        elif key % 8 == 0:  # clear now and then
            ref.clear()
            comp.clear()
        assert len(ref) == len(comp)
        assert (ref.rehash_pending, ref.memory_bytes()) == (
            comp.rehash_pending,
            comp.memory_bytes(),
        )
    assert list(ref) == list(comp)
    for key in range(81):
        assert ref.lookup(hoa_of(key)) == comp.lookup(hoa_of(key))


def test_growth_is_incremental(fp: ModuleType) -> None:
    """The bind that crosses the load factor only allocates the doubled slot array; the old
    one moves over REHASH_PER_UPDATE slots per bind/unbind and REHASH_PER_BATCH per batch
    call, so no single call rehashes the table."""
    per_update, per_batch = fp.REHASH_STEPS
    t = fp.HoaTable(capacity=1)  # 16 slots: 12 entries before the first growth
    for k in range(12):
        t.bind(k, DMPA)
    assert t.rehash_pending == 0
    t.bind(12, DMPA)
    assert t.rehash_pending == 16  # nothing moved yet: the old array is kept as it was
    t.lookup(12)
    assert t.rehash_pending == 16  # lookups never move anything
    t.bind(13, DMPA)
    assert t.rehash_pending == 16 - per_update
    t.unbind(999)  # an unbind moves slots even when it finds nothing
    assert t.rehash_pending == 0 and len(t) == 14
    for k in range(14, 24):  # 24 entries in 32 slots: the next new key grows them to 64
        t.bind(k, DMPA)
    assert t.rehash_pending == 0
    t.bind(24, DMPA)
    assert t.rehash_pending == 32
    dl = fp.Dlmap(t, DLMAP)
    assert dl.tun_batch(fp.Batch(1), fp.Batch(1, 2088)) == 0
    assert t.rehash_pending == max(0, 32 - per_batch)
    assert sorted(b.hoa for b in t) == list(range(25))
    # reserve() and clear() finish or abandon a growth at once
    t.reserve(1 << 12)
    assert t.rehash_pending == 0 and all(k in t for k in range(25))
    for k in range(25, 6145):  # 8192 slots after reserve(4096): 6145 entries grow them
        t.bind(k, DMPA)
    assert t.rehash_pending > 0
    t.clear()
    assert t.rehash_pending == 0 and len(t) == 0 and 5 not in t
    t.reserve(-1)  # nothing to do (it used to loop forever)
    t.reserve(0)


def test_pumps_move_old_slots(fp: ModuleType) -> None:
    """A pump call moves REHASH_PER_BATCH old slots too, even when nothing arrives."""
    per_batch = fp.REHASH_STEPS[1]
    t = fp.HoaTable(capacity=1 << 10)  # 2048 slots
    for k in range(1537):  # 1536 = 3/4 of 2048: one growth to 4096 slots
        t.bind(k, DMPA)
    pending = t.rehash_pending
    assert pending == 2048  # the growing bind moved nothing
    dm, dl = fp.Dmpa(t, DMPA, bytes(6), 0), fp.Dlmap(t, DLMAP)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    try:
        calls: list[Any] = [
            lambda: dm.pump_access(a.fileno(), 0, b.fileno()),
            lambda: dm.pump_tunnel(a.fileno(), [b.fileno()]),
            lambda: dl.pump_tunnel(a.fileno(), b.fileno()),
            lambda: dl.pump_tun(a.fileno(), b.fileno()),
        ]
        for call in calls:
            assert call() == (0, 0, [])
            pending -= per_batch
            assert t.rehash_pending == pending
    finally:
        a.close()
        b.close()


ENDPOINTS = [DMPA, DLMAP, OTHER6]


def test_every_binding_stays_findable_while_growing(
    twins: tuple[ModuleType, ModuleType],
) -> None:
    """Binds, lookups and unbinds interleaved across ten growth steps, in both twins at once:
    at the start, middle and end of every migration each live binding is found with its
    values, each unbound one is not, and the twins agree on the growth state throughout."""
    tables = [fp.HoaTable(capacity=1) for fp in twins]
    rng = random.Random(3)
    keys = rng.sample(range(1 << 32), 16_000)
    live: dict[int, int] = {}  # hoa -> link
    order: list[int] = []  # the live keys, for picking one at random
    gone: list[int] = []
    growths = checks = old_size = last_pending = 0

    def check_all() -> None:
        for t in tables:
            assert len(t) == len(live)
            for k, link in live.items():
                b = t.lookup(k)
                assert b is not None and b.hoa == k and b.link == link and k in t
            assert all(t.lookup(k) is None and k not in t for k in gone[-200:])

    for i, k in enumerate(keys):
        for t in tables:
            t.bind(k, ENDPOINTS[i % 3], link=i % 5)
        live[k] = i % 5
        order.append(k)
        if i % 3 == 2:  # unbind a random live key
            j = rng.randrange(len(order))
            order[j], order[-1] = order[-1], order[j]
            victim = order.pop()
            del live[victim]
            gone.append(victim)
            assert [t.unbind(victim) for t in tables] == [True, True]
        if i % 5 == 0:  # lookups of a live and of an unbound key
            probe = order[rng.randrange(len(order))]
            assert [t.lookup(probe).link for t in tables] == [live[probe]] * 2
            if gone:
                assert [t.lookup(gone[-1]) for t in tables] == [None, None]
        pending = tables[1].rehash_pending
        assert [t.rehash_pending for t in tables] == [pending] * 2
        assert tables[0].memory_bytes() == tables[1].memory_bytes()
        if pending > last_pending:  # this bind started a growth: the old array as it was
            growths += 1
            old_size = pending
        halfway = last_pending > old_size // 2 >= pending > 0
        if old_size >= 64 and (pending > last_pending or halfway or last_pending > pending == 0):
            check_all()
            checks += 1
        last_pending = pending
    assert growths == 10 and checks == 21  # 16 -> 16,384 slots; 7 migrations checked 3 times
    check_all()
    assert list(tables[0]) == list(tables[1])


def test_million_entries_fit_in_64_mib(twins: tuple[ModuleType, ModuleType]) -> None:
    """1,000,000 entries in at most 64 MiB, measured by tracemalloc (the compiled
    table's slot and entry arrays are mappings it registers with PyTraceMalloc_Track, the rest
    is PyMem_RawMalloc) and by its own count. The peak is while the old slot array (8 MiB)
    still exists next to the new one (16 MiB): 56 MiB."""
    _, comp = twins
    endpoints = [bytes(15) + bytes([i]) for i in range(200)]  # 200 DMPAs
    tracemalloc.start()
    try:
        t = comp.HoaTable()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(1_000_000):
            t.bind(0x0A000000 + i, endpoints[i % 200], MS_MAC, i & 0xFF)
        used, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(t) == 1_000_000
    assert t.memory_bytes() <= 64 * MiB
    assert used - base <= 64 * MiB
    assert peak - base <= 64 * MiB  # even while the old slots are migrated
    assert t.lookup(0x0A000000 + 999_999) is not None
