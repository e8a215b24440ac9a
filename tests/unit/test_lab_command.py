"""``netlmm lab``: the command comes from the netlmm-lab package, imported only when it runs.

Without the package it says in one line how to install it (exit 2) and the other commands do
not notice; with it, ``netlmm lab`` keeps its options, and ``netlmm lab bench`` the shape of its
JSON report (``results.<variant>.<metric>.median``, ``ratios``), checked here on measurements
made up by stand-ins for iperf3 and ping (no namespace, no root).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import netlmm_lab.cli
from netlmm_lab import throughput
from router import cli
from router.cli import LAB_MISSING, build_parser, main


def _without_the_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if netlmm-lab were not installed: importing it fails like a missing package."""
    monkeypatch.setitem(sys.modules, "netlmm_lab", None)
    monkeypatch.setitem(sys.modules, "netlmm_lab.cli", None)


@pytest.mark.parametrize("argv", [["lab", "demo", "--json"], ["lab", "--help"], ["lab"]])
def test_without_the_lab_package_one_line_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    _without_the_lab(monkeypatch)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == LAB_MISSING + "\n" and captured.out == ""
    assert "pip install -e ./lab" in LAB_MISSING


def test_without_the_lab_package_the_other_commands_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without_the_lab(monkeypatch)
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("netlmm ")
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "the network-namespace lab" in capsys.readouterr().out


def test_a_module_missing_inside_the_lab_is_not_taken_for_the_lab(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(name: str) -> Any:
        raise ModuleNotFoundError("No module named 'somethingelse'", name="somethingelse")

    monkeypatch.setattr(cli.importlib, "import_module", broken)
    with pytest.raises(ModuleNotFoundError, match="somethingelse"):
        main(["lab", "demo"])


def test_the_lab_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser(netlmm_lab.cli)
    args = parser.parse_args(
        ["lab", "bench", "--variants", "kernel,tayga", "--runs", "2", "--tcp-seconds", "1",
         "--udp-seconds", "0.5", "--results-dir", "/tmp/x", "--no-save", "--no-offload",
         "--sweep-sizes", "", "--fastpath", "reference"]
    )  # fmt: skip
    assert (args.command, args.action, args.variants, args.runs) == (
        "lab",
        "bench",
        "kernel,tayga",
        2,
    )
    assert (args.tcp_seconds, args.udp_seconds, args.no_save, args.offload) == (1, 0.5, True, False)
    assert (str(args.results_dir), args.sweep_sizes, args.fastpath) == ("/tmp/x", "", "reference")
    demo = parser.parse_args(["lab", "demo", "--json", "--dhcp", "kea", "--aaa", "radius"])
    assert (demo.json, demo.dhcp, demo.aaa, demo.plot) == (
        True,
        "kea",
        "radius",
        "netlmm-demo-handover.png",
    )
    fuzz = parser.parse_args(["lab", "fuzz", "--inputs", "10", "--rate", "5", "--seed", "3"])
    assert (fuzz.inputs, fuzz.rate, fuzz.seed) == (10, 5.0, 3)
    soak = parser.parse_args(["lab", "soak", "--minutes", "1", "--mss", "20", "--real-mss", "2"])
    assert (soak.minutes, soak.mss, soak.real_mss) == (1.0, 20, 2)
    assert parser.parse_args(["lab", "down", "nl42"]).prefix == "nl42"
    with pytest.raises(SystemExit):
        parser.parse_args(["lab", "nonsense"])
    capsys.readouterr()


# --- netlmm lab bench's report -----------------------------------------------------------------

GBIT = {"kernel": 18.0, "tayga": 0.9, "appliance": 1.8, "appliance-kernel": 14.4}
PING_US = {"kernel": 60.0, "tayga": 250.0, "appliance": 290.0, "appliance-kernel": 80.0}


def _fake_iperf3(bed: throughput.Testbed, **options: Any) -> dict[str, Any]:
    """What iperf3 -J says, made up: TCP at the variant's rate, UDP lossless at any rate."""
    if options.get("udp_bps") is not None:
        return {"end": {"sum": {"packets": 100_000, "lost_packets": 0, "seconds": 1.0}}}
    return {"end": {"sum_received": {"bits_per_second": GBIT[bed.variant] * 1e9}}}


@contextlib.contextmanager
def _fake_testbed(variant: str, **_: Any) -> Iterator[throughput.Testbed]:
    yield throughput.Testbed(variant, None, "h1", "h2", "198.51.100.2", {"fake": True})  # type: ignore[arg-type]


def test_the_bench_report_keeps_its_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throughput, "iperf3", _fake_iperf3)
    monkeypatch.setattr(throughput, "ping_rtt_us", lambda bed, count: PING_US[bed.variant])
    monkeypatch.setattr(throughput, "testbed", _fake_testbed)
    settings = throughput.Settings(runs=2, sweep_sizes=(128, 1500))
    report = json.loads(
        json.dumps(throughput.run_all(throughput.VARIANTS, settings, lambda _: None))
    )
    assert report["errors"] == {}
    assert set(report["results"]) == set(throughput.VARIANTS)
    for variant, metrics in report["results"].items():
        for metric in throughput.METRICS:
            if metric.key.endswith("_v6"):  # only with --ipv6, where the bed carries IPv6
                assert metric.key not in metrics
                continue
            entry = metrics[metric.key]
            assert set(entry) >= {"runs", "median", "min", "max"} and len(entry["runs"]) == 2
        assert metrics["tcp1_up"]["median"] == GBIT[variant]
        assert metrics["ping_us"]["median"] == PING_US[variant]
        assert [p["packet"] for p in metrics["tcp_sweep"]["points"]] == [128, 1500]
        assert report["notes"][variant] == {"fake": True}
    ratios = report["ratios"]
    assert ratios["tcp1_up"] == {
        "appliance/tayga": 2.0,
        "appliance/kernel": 0.1,
        "appliance-kernel/tayga": 16.0,
        "appliance-kernel/kernel": 0.8,
    }
    assert ratios["ping_us"]["added_us"] == 230.0
    assert ratios["ping_us"]["appliance-kernel.added_us"] == 20.0
    table = throughput.format_table(report)
    assert table.splitlines()[0].startswith(
        "| metric | kernel | tayga pair | appliance (cython) | appliance-kernel |"
    )
