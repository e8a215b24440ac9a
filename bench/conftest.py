"""Benchmarks of the fastpath: both twins side by side, then a table of ratios.

``make bench`` runs ``pytest bench``. Every benchmark asserts its result (so it also proves the
twins agree); the summary below the pytest-benchmark table prints, per benchmark and parameter,
the compiled twin's time per packet, the reference's, their ratio, and the goals.
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from types import ModuleType
from typing import Any

import pytest

IMPLS = ("reference", "compiled")
GOAL_RATIO = 20.0  # compiled at least 20x faster than the reference per packet
GOAL_BATCH_NS = 150.0  # classify + lookup + encapsulate, per packet in batches of 64
GOAL_MEMORY = 64 << 20  # 1M-entry table


@pytest.fixture(params=IMPLS)
def fp(request: pytest.FixtureRequest) -> ModuleType:
    try:
        return importlib.import_module(
            "fastpath._fastpath" if request.param == "compiled" else "fastpath.reference"
        )
    except ImportError:
        pytest.fail("compiled fastpath not built: run make setup", pytrace=False)


def measure(benchmark: Any, fp: ModuleType, fn: Any, *args: Any, per: int = 1) -> Any:
    """Short runs (2 shared cores): a few rounds, enough iterations for ~1-10 ms per round."""
    compiled = fp.__name__.endswith("_fastpath")
    iterations = max(1, (4000 if compiled else 40) // per)
    benchmark.extra_info["per"] = per
    return benchmark.pedantic(fn, args, rounds=7, iterations=iterations, warmup_rounds=1)


def _median(bench: Any) -> float:
    stats = getattr(bench.stats, "stats", bench.stats)
    return float(stats.median)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None or not session.benchmarks:
        return
    rows: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    extra: dict[tuple[str, str], dict[str, Any]] = {}
    floor: dict[str, float] = {}  # the pumps' syscalls from Python, ns per packet
    for b in session.benchmarks:
        params = dict(b.params or {})
        impl = params.pop("fp", None)
        if b.name.startswith("test_pump_floor"):
            floor[params["syscall"]] = _median(b) / b.extra_info["per"] * 1e9
        if impl is None:
            continue
        key = (b.name.split("[")[0], ",".join(f"{k}={v}" for k, v in sorted(params.items())))
        per = b.extra_info.get("per", 1)
        rows[key][impl] = _median(b) / per * 1e9
        extra[key] = b.extra_info
    if not rows:
        return  # only the signaling or lab benchmarks ran: their own conftests report
    tr = terminalreporter
    tr.write_sep("=", "fastpath: ns per packet (median), reference / compiled")
    tr.write_line(f"{'benchmark':40} {'params':36} {'reference':>11} {'compiled':>10} {'ratio':>7}")
    for (name, params), t in sorted(rows.items()):
        ref, comp = t.get("reference"), t.get("compiled")
        ratio = f"{ref / comp:7.1f}" if ref and comp else "      -"
        tr.write_line(
            f"{name:40} {params:36} {ref or 0:11.0f} {comp or 0:10.1f} {ratio}"
            + (
                f"   table {extra[(name, params)]['MiB']:.1f} MiB"
                if "MiB" in extra[(name, params)]
                else ""
            )
        )
    per_packet = [
        t["reference"] / t["compiled"]
        for (n, _), t in rows.items()
        if len(t) == 2 and not any(w in n for w in ("batch", "table", "pump", "bind"))
    ]
    batch = [
        t["compiled"]
        for (n, _), t in rows.items()
        if n == "test_batch_classify_lookup_encap" and "compiled" in t
    ]
    mem = [e["MiB"] for e in extra.values() if "MiB" in e]
    tr.write_sep("-", "goals")
    if per_packet:
        tr.write_line(
            f"per-packet ratio, worst: {min(per_packet):.1f}x (goal >= {GOAL_RATIO:.0f}x)"
        )
    if batch:
        tr.write_line(
            f"classify+lookup+encap in batches of 64, worst: {max(batch):.0f} ns/packet "
            f"(goal <= {GOAL_BATCH_NS:.0f})"
        )
    if mem:
        tr.write_line(f"1M-entry table: {max(mem):.1f} MiB (goal <= {GOAL_MEMORY >> 20})")
    if floor:
        tr.write_line(
            "pumps, the kernel's share (the same syscalls from Python), ns per packet: "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(floor.items()))
        )
    for e in extra.values():
        if "bind_worst_us" in e:
            tr.write_line(
                f"filling 1M entries: peak {e['peak_MiB']:.1f} MiB; worst single bind "
                f"{e['bind_worst_us']:.0f} us (bind #{e['bind_worst_at']}), p99.99 "
                f"{e['bind_p9999_us']:.1f} us, median {e['bind_median_ns']} ns; worst of the "
                f"{e['growth_binds']} binds that changed the allocation "
                f"{e['growth_worst_us']:.0f} us; control (rebinding, no allocation): worst "
                f"{e['control_worst_us']:.0f} us, p99.99 {e['control_p9999_us']:.1f} us"
            )
