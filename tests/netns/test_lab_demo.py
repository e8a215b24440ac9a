"""``netlmm lab demo`` end to end, as ``make demo`` runs it: the embedded defaults, and each real
server in its place (``--dhcp dnsmasq``, ``--dhcp kea``, ``--aaa radius``), and the MS
authenticating by 802.1X (``--auth 8021x``).

Each case runs :func:`netlmm_lab.demo.demo` with ``as_json=True`` in this process (its own lab,
torn down on return), parses what it printed and checks a successful run with a handover: the
MS kept its address and the TCP session opened before the move survived it; with a real server
the step list and the summary name it, and a DHCP server's address comes from its own range.
Each run saves the handover plot; the PNG's bins (stored in it) are the probe stream's and agree
with the interruption the stream measured.
"""

from __future__ import annotations

import json
import platform
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from netlmm_lab import dot1x, plots, servers
from netlmm_lab.demo import demo
from tests.conftest import require

pytestmark = pytest.mark.root

CASES = {
    "defaults": {},
    "dnsmasq": {"dhcp": "dnsmasq"},
    "kea": {"dhcp": "kea"},
    "radius": {"aaa": "radius"},
    "8021x": {"auth": "8021x"},
    "dual-stack": {"dual_stack": True},
}


def _run(
    capsys: pytest.CaptureFixture[str], plot: Path, **options: Any
) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = demo(as_json=True, plot=plot, **options)
    captured = capsys.readouterr()
    try:
        return code, json.loads(captured.out), captured.err
    except json.JSONDecodeError as exc:
        raise AssertionError(f"demo printed no JSON ({exc}):\n{captured.out}") from exc


def _linux_at_least(major: int, minor: int) -> bool:
    release = platform.release().split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


@pytest.mark.parametrize("case", list(CASES))
def test_demo(root: None, capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    options = CASES[case]
    dhcp, aaa = options.get("dhcp", "builtin"), options.get("aaa", "local")
    auth = options.get("auth", "mac")
    require(servers.binary("udhcpc") is not None, "udhcpc is not installed (make test)")
    for problem in dot1x.missing() if auth == "8021x" else []:
        require(False, f"{problem} (make test installs it as root)")
    for name in ([dhcp] if dhcp != "builtin" else []) + (["freeradius"] if aaa == "radius" else []):
        require(servers.binary(name) is not None, f"{name} is not installed (make test)")

    require(
        plots.available(), "matplotlib is not installed (a dependency of netlmm-lab: make setup)"
    )

    plot = tmp_path / "handover.png"
    code, result, progress = _run(capsys, plot, **options)
    explain = json.dumps(result, indent=2)
    assert result["ok"] is True and code == 0, explain
    assert all(step["ok"] for step in result["steps"]), explain
    # Progress went to stderr, one line per step with its duration; stdout was the JSON alone.
    for number, step in enumerate(result["steps"], 1):
        assert f"[{number:2}]" in progress and step["step"] in progress, progress
    assert progress.count(" ok (") == len(result["steps"]), progress
    handover = result["handover"]
    assert handover["address_kept"] is True, explain
    assert handover["tcp_survived"] is True, explain
    assert result["exit_codes"] == {"dlmap": 0, "dmpa1": 0, "dmpa2": 0}, explain
    # the default datapath = auto: the kernel tier from Linux 6.3 on, said in the summary
    tier = "kernel" if _linux_at_least(6, 3) else "cython"
    assert result["datapath"] == {"dlmap": tier, "dmpa1": tier, "dmpa2": tier}, explain

    titles = [step["step"] for step in result["steps"]]
    described = result["servers"]
    if dhcp == "builtin":
        assert described["dhcp"].startswith("built-in"), explain
        assert IPv4Address(result["address"]) not in _server_range(), explain
    else:
        assert any(title.startswith(f"start {dhcp} in cn") for title in titles), titles
        assert described["dhcp"].startswith(f"{dhcp} in cn on {servers.DHCP_ADDRESS}"), explain
        assert IPv4Address(result["address"]) in _server_range(), explain
    if auth == "8021x":
        # The MS authenticated by EAP at both DMPAs; its binding carries the inner NAI.
        assert described["aaa"].startswith("802.1X: hostapd"), explain
        assert any(title.startswith("MS re-authenticates at DMPA 2") for title in titles)
        for role in ("dmpa1", "dmpa2"):
            assert result["counters"][role].get("aaa_proxy.accept", 0) >= 1, explain
            assert result["counters"][role].get("authenticator.eap_success", 0) >= 1, explain
        timing = result["dot1x"]
        assert timing["authorization_to_first_packet_ms"] > 0, explain
        assert timing["eap_radius_ms"] is not None and timing["eap_radius_ms"] > 0, explain
    elif aaa == "radius":
        assert any(title.startswith("start FreeRADIUS in lm") for title in titles), titles
        assert described["aaa"].startswith("freeradius in lm on"), explain
        assert result["counters"]["dmpa1"].get("aaa.accept", 0) >= 1, explain
    else:
        assert described["aaa"].startswith("local profiles"), explain
    if options.get("dual_stack"):
        # Issue 18: SLAAC from the DMPA's RA, IPv6 ping and a TCP session over IPv6 kept.
        dual = result["dual_stack"]
        assert dual["tcp6_survived"] is True and dual["address_kept"] is True, explain
        assert dual["router"] == "fe80::5eff:fe00:1" or dual["router"].startswith("fe80::")
        assert any(title.startswith("MS configures IPv6 by SLAAC") for title in titles)
    if dhcp == "builtin" and aaa == "local" and auth == "mac":
        assert not any(title.startswith("start ") and " in cn" in title for title in titles)
        assert "server_exit_codes" not in result, explain
    _check_plot(plot, result)


def _check_plot(plot: Path, result: dict[str, Any]) -> None:
    """The PNG is where the summary says, draws the stream's bins, and those bins agree with
    the interruption the stream measured: ``n`` empty 10 ms bins in a row and the longest gap
    ``g`` between echoes satisfy ``10 n < g < 10 (n + 2)`` (see tests/unit/test_lab_plots.py)."""
    handover = result["handover"]
    assert result["plot"] == str(plot.resolve()) and plot.is_file(), result.get("plot")
    texts = plots.read_png_text(plot)
    bins = json.loads(texts[plots.TEXT_BINS])
    info = json.loads(texts[plots.TEXT_INFO])
    assert bins == handover["histogram_10ms"]
    assert sum(bins) == handover["probes_received"], (sum(bins), handover)
    gap = handover["max_gap_ms"]
    assert handover["interruption_ms"] == pytest.approx(gap - handover["interval_ms"], abs=0.1)
    first, length = plots.longest_silence(bins)
    assert info["silence"] == {"first_bin": first, "bins": length}
    assert gap < (length + 2) * 10.0, (gap, length, bins)
    if length:
        assert length * 10.0 < gap, (gap, length, bins)
    # The moments drawn: the stream ran before the link moved, the binding moved after it.
    marks = handover["marks_s"]
    assert info["marks_s"] == marks and info["origin_s"] == marks["link moves"]
    assert 0.0 < marks["link moves"] < marks["binding at DMPA 2 (polled)"], marks
    assert marks["link moves"] * 100 < len(bins), (marks, len(bins))


def _server_range() -> list[IPv4Address]:
    first, last = (IPv4Address(a) for a in servers.SERVER_RANGE)
    return [IPv4Address(n) for n in range(int(first), int(last) + 1)]
