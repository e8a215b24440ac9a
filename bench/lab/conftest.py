"""The lab data-path benchmarks: one testbed per variant (kernel, tayga pair, appliance),
built once for the tests of that variant and torn down after them (see
:mod:`netlmm_lab.throughput`). They need root, iperf3 and tayga (``make bench-lab`` installs
them); without, they skip with the reason (or fail in CI, like the tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from netlmm_lab.throughput import VARIANTS, Testbed, missing_tools, testbed
from tests.conftest import require


@pytest.fixture(scope="module", params=VARIANTS)
def bed(request: pytest.FixtureRequest) -> Iterator[Testbed]:
    variant: str = request.param
    require(os.geteuid() == 0, "needs root for network namespaces")
    missing = missing_tools([variant])
    require(not missing, f"not installed: {', '.join(missing)} (make bench-lab installs them)")
    with testbed(variant) as built:
        yield built


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return
    rows: dict[str, dict[str, Any]] = {}
    for b in session.benchmarks:
        info = b.extra_info or {}
        if "variant" in info:
            rows.setdefault(info["variant"], {}).update(info)
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", "lab data path, one run each (make bench-lab: the full matrix)")
    tr.write_line(
        f"{'variant':10} {'TCP 1 stream Gbit/s':>20} {'UDP 64 B kpps (offered/got/loss)':>36}"
    )
    for variant in VARIANTS:
        r = rows.get(variant)
        if r is None:
            continue
        udp = (
            f"{r['udp_offered_kpps']:.0f}/{r['udp_received_kpps']:.0f}/{r['udp_loss_pct']:.1f}%"
            if "udp_received_kpps" in r
            else "-"
        )
        tcp = f"{r['gbit_s']:.2f}" if "gbit_s" in r else "-"
        tr.write_line(f"{variant:10} {tcp:>20} {udp:>36}")
