"""The lab data path as pytest-benchmark tests: h1 -> h2 through kernel forwarding, a tayga
pair and the appliance (DMPA and DLMAP), one round each, the figures in ``extra_info``.

A short subset of ``make bench-lab`` (which runs the full matrix, 3 runs each, and the ratios):
one TCP stream for 3 s, and 64-byte UDP datagrams offered at the goal rate for 2 s.
"""

from __future__ import annotations

from typing import Any

from netlmm_lab.throughput import Testbed, tcp_gbit_s, udp_point

TCP_SECONDS = 3.0
UDP_SECONDS = 2.0
UDP_KPPS = 150.0  # the goal: at least 150 kpps of 64-byte datagrams at < 1 % loss


def test_tcp_1_stream(benchmark: Any, bed: Testbed) -> None:
    gbit_s = benchmark.pedantic(
        tcp_gbit_s,
        args=(bed,),
        kwargs={"seconds": TCP_SECONDS, "streams": 1, "reverse": False},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(variant=bed.variant, gbit_s=round(gbit_s, 3))
    assert gbit_s > 0


def test_udp_64_bytes(benchmark: Any, bed: Testbed) -> None:
    point = benchmark.pedantic(
        udp_point,
        args=(bed,),
        kwargs={"kpps": UDP_KPPS, "seconds": UDP_SECONDS},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        variant=bed.variant,
        udp_offered_kpps=round(point.offered_kpps, 1),
        udp_received_kpps=round(point.received_kpps, 1),
        udp_loss_pct=round(point.loss_pct, 3),
    )
    assert point.received_kpps > 0
