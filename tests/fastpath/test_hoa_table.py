"""HoA table: bind / unbind / lookup / len / iterate / growth, in both twins."""

from __future__ import annotations

import random
import tracemalloc
from types import ModuleType

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
    assert len(t) == 1
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
        st.sampled_from(["bind", "unbind"]),
        st.integers(0, 40),  # few keys: many collisions of bind/unbind on the same key
        st.sampled_from([DMPA, DLMAP, OTHER6]),
        st.integers(0, 3),
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_twins_agree_on_any_sequence(ops: list[tuple[str, int, bytes, int]]) -> None:
    from tests.fastpath.conftest import load

    ref, comp = load("reference").HoaTable(capacity=1), load("compiled").HoaTable(capacity=1)
    for op, key, ep, link in ops:
        hoa = key * 0x01000193  # spread over the key space, with hash collisions too
        hoa &= 0xFFFFFFFF
        if op == "bind":
            ref.bind(hoa, ep, link=link)
            comp.bind(hoa, ep, link=link)
        else:
            assert ref.unbind(hoa) == comp.unbind(hoa)
        assert len(ref) == len(comp)
    assert list(ref) == list(comp)
    for key in range(41):
        hoa = (key * 0x01000193) & 0xFFFFFFFF
        assert ref.lookup(hoa) == comp.lookup(hoa)


def test_million_entries_fit_in_64_mib(twins: tuple[ModuleType, ModuleType]) -> None:
    """Issue 3: 1,000,000 entries in at most 64 MiB, measured by tracemalloc (the compiled
    table allocates with PyMem_RawMalloc, which tracemalloc sees) and by its own count."""
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
    assert peak - base <= 64 * MiB  # even while the slots are rehashed
    assert t.lookup(0x0A000000 + 999_999) is not None
