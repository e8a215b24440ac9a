"""Signaling benchmarks: registrations per second and memory per binding, against their goals."""

from __future__ import annotations

from typing import Any

import pytest

GOAL_RATE = 20_000  # registrations/s, PBU decode -> DLMAP -> durable store -> PBA encode
GOAL_MEMORY = 1 << 30  # 1,000,000 bindings


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return
    rows = [b for b in session.benchmarks if "registrations" in b.extra_info]
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", "signaling: registrations (goals)")
    for b in rows:
        info = b.extra_info
        stats = getattr(b.stats, "stats", b.stats)
        if "rss_bytes" in info:
            mib = info["rss_bytes"] / 2**20
            line = f"{b.name:45} {mib:8.0f} MiB resident for {info['registrations']:,} bindings"
        else:
            rate = info["registrations"] / float(stats.median)
            line = f"{b.name:45} {rate:10,.0f} registrations/s (decode, DLMAP, FULL sync, encode)"
        tr.write_line(line)
    tr.write_line(f"goals: >= {GOAL_RATE:,} registrations/s durable; 1M bindings <= 1 GiB")
