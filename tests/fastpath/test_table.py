"""The verdict/drop-reason table and the constants are declared once, in fastpath/common.py:
the compiled twin's copies are generated from it (``python -m fastpath.gen_pxd``) and must be
current in the sources and agree row by row in the built module."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fastpath import common, gen_pxd, implementation
from fastpath.common import VERDICT_OF, Reason, Verdict, counter_names
from tests.fastpath.conftest import load


def test_compiled_table_mirrors_common(twins: tuple[ModuleType, ModuleType]) -> None:
    _, compiled = twins
    expected = tuple((int(r), r.name, int(VERDICT_OF[r])) for r in Reason)
    assert expected == compiled.REASON_TABLE


def test_generated_declarations_are_current() -> None:
    """A change to common.py without ``python -m fastpath.gen_pxd`` fails here."""
    assert gen_pxd.stale() == []
    pxd = gen_pxd.PXD.read_text()
    for r in Reason:
        assert f"    R_{r.name} = {int(r)}\n" in pxd
    for name in ("ETH_LEN", "IP6_LEN", "IO_BUF", "VNET_HDR_LEN", "REHASH_PER_BATCH"):
        assert f"    {name} = {getattr(common, name)}\n" in pxd


def test_generator_rewrites_only_its_block() -> None:
    text = gen_pxd.PXD.read_text()
    old = text.replace("    R_BAD_GSO = 23\n", "")
    assert old != text and gen_pxd.splice(old, gen_pxd.pxd_block(), gen_pxd.PXD) == text


def test_verdict_classes() -> None:
    assert VERDICT_OF[Reason.FORWARDED] is Verdict.FORWARD
    assert {VERDICT_OF[r] for r in Reason if r != Reason.FORWARDED} == {Verdict.PUNT, Verdict.DROP}
    assert VERDICT_OF[Reason.TTL_EXPIRED] is Verdict.PUNT
    assert VERDICT_OF[Reason.SRC_NOT_BOUND] is Verdict.DROP
    assert list(Reason) == sorted(Reason)  # dense codes: the C arrays are indexed by them


def test_counter_names_are_the_same_in_both(fp: ModuleType) -> None:
    engine = fp.Dlmap(fp.HoaTable(), bytes(16))
    assert list(engine.counters()) == counter_names()
    assert set(engine.counters().values()) == {0}


def test_implementation_prefers_compiled(twins: tuple[ModuleType, ModuleType]) -> None:
    assert implementation() is twins[1]
    assert implementation("reference") is twins[0]


def test_growth_schedule_is_the_same_in_both(twins: tuple[ModuleType, ModuleType]) -> None:
    """Old slots moved per bind/unbind and per batch call: memory_bytes() and rehash_pending
    of the two twins depend on them."""
    ref, compiled = twins
    assert ref.REHASH_STEPS == compiled.REHASH_STEPS


# ---- the IPv6 home network prefix table (prefix.pxi; reference_table's dict) ----

EP_A, EP_B = bytes(15) + b"\x01", bytes(15) + b"\x02"
MAC = bytes.fromhex("02aabbccdd01")


def _state(t: Any, keys: list[int]) -> tuple[Any, ...]:
    return (t.prefixes, t.memory_bytes(), [t.lookup_prefix(k) for k in keys])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["bind", "unbind", "lookup"]),
            # few distinct high halves (one operator's /48s), keys that differ in one bit
            st.sampled_from([0x20010DB8_00000000, 0x20010DB8_FFFF0000, 0, (1 << 64) - 1 << 8])
            | st.integers(0, (1 << 64) - 1),
            st.integers(0, 63),
            st.booleans(),
        ),
        max_size=120,
    )
)
def test_prefix_bind_unbind_lookup_agree(ops: list[tuple[str, int, int, bool]]) -> None:
    """Every bind, unbind and lookup gives the same in both twins and a dict model, through
    growth (rehash at once) and backward-shift deletion; so does ``memory_bytes()``."""
    ref, comp = load("reference").HoaTable(), load("compiled").HoaTable()
    model: dict[int, tuple[bytes, int]] = {}
    keys: list[int] = []
    for op, base, bit, other in ops:
        key = (base ^ (1 << bit)) & ((1 << 64) - 1)
        keys.append(key)
        if op == "bind":
            ep, link = (EP_B, 7) if other else (EP_A, 1)
            for t in (ref, comp):
                t.bind_prefix(key, ep, MAC, link)
            model[key] = (ep, link)
        elif op == "unbind":
            gone = model.pop(key, None) is not None
            assert ref.unbind_prefix(key) == comp.unbind_prefix(key) == gone
        found = comp.lookup_prefix(key)
        assert found == ref.lookup_prefix(key)
        assert (found is None) == (key not in model)
        if found is not None:
            ep, link = model[key]
            assert (found.hoa, found.endpoint, found.mac, found.link) == (key, ep, MAC, link)
    assert _state(ref, keys) == _state(comp, keys)
    assert ref.prefixes == len(model)


def test_prefix_table_grows_and_shrinks(twins: tuple[ModuleType, ModuleType]) -> None:
    """5,000 prefixes of one /48 (the low bits differ: what a pool hands out), then every other
    one unbound: each lookup right, the memory the same in both twins, and clear() keeps it."""
    keys = [0x20010DB8_00FF_0000 + i for i in range(5000)]
    tables = [fp.HoaTable() for fp in twins]
    for t in tables:
        empty = t.memory_bytes()
        for i, k in enumerate(keys):
            t.bind_prefix(k, EP_A, MAC, i & 0xFFFF)
        assert t.prefixes == 5000 and t.memory_bytes() > empty
        assert all(t.lookup_prefix(k).link == i for i, k in enumerate(keys))
        assert all(t.unbind_prefix(k) for k in keys[::2])
        assert t.lookup_prefix(keys[0]) is None and t.lookup_prefix(keys[1]).link == 1
        assert all(t.lookup_prefix(k).link == 2 * i + 1 for i, k in enumerate(keys[1::2]))
        assert [t.lookup_prefix(k) is None for k in keys[:6]] == [True, False] * 3
        assert t.prefixes == 2500 and not t.unbind_prefix(1 << 70)
        grown = t.memory_bytes()
        t.clear()
        assert t.prefixes == 0 and t.lookup_prefix(keys[1]) is None and t.memory_bytes() == grown
    assert tables[0].memory_bytes() == tables[1].memory_bytes()
