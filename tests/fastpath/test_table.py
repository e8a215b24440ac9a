"""The verdict/drop-reason table and the constants are declared once, in fastpath/common.py:
the compiled twin's copies are generated from it (``python -m fastpath.gen_pxd``) and must be
current in the sources and agree row by row in the built module."""

from __future__ import annotations

from types import ModuleType

from fastpath import common, gen_pxd, implementation
from fastpath.common import VERDICT_OF, Reason, Verdict, counter_names


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
