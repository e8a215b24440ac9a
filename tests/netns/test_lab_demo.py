"""``netlmm lab demo`` end to end, as ``make demo`` runs it: the embedded defaults, and each real
server in its place (``--dhcp dnsmasq``, ``--dhcp kea``, ``--aaa radius``).

Each case runs :func:`router.lab.demo.demo` with ``as_json=True`` in this process (its own lab,
torn down on return), parses what it printed and checks a successful run with a handover: the
MS kept its address and the TCP session opened before the move survived it; with a real server
the step list and the summary name it, and a DHCP server's address comes from its own range.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address
from typing import Any

import pytest

from router.lab import servers
from router.lab.demo import demo
from tests.conftest import require

pytestmark = pytest.mark.root

CASES = {
    "defaults": {},
    "dnsmasq": {"dhcp": "dnsmasq"},
    "kea": {"dhcp": "kea"},
    "radius": {"aaa": "radius"},
}


def _run(capsys: pytest.CaptureFixture[str], **options: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = demo(as_json=True, **options)
    out = capsys.readouterr().out
    try:
        return code, json.loads(out)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"demo printed no JSON ({exc}):\n{out}") from exc


@pytest.mark.parametrize("case", list(CASES))
def test_demo(root: None, capsys: pytest.CaptureFixture[str], case: str) -> None:
    options = CASES[case]
    dhcp, aaa = options.get("dhcp", "builtin"), options.get("aaa", "local")
    require(servers.binary("udhcpc") is not None, "udhcpc is not installed (make test)")
    for name in ([dhcp] if dhcp != "builtin" else []) + (["freeradius"] if aaa == "radius" else []):
        require(servers.binary(name) is not None, f"{name} is not installed (make test)")

    code, result = _run(capsys, **options)
    explain = json.dumps(result, indent=2)
    assert result["ok"] is True and code == 0, explain
    assert all(step["ok"] for step in result["steps"]), explain
    handover = result["handover"]
    assert handover["address_kept"] is True, explain
    assert handover["tcp_survived"] is True, explain
    assert result["exit_codes"] == {"dlmap": 0, "dmpa1": 0, "dmpa2": 0}, explain

    titles = [step["step"] for step in result["steps"]]
    described = result["servers"]
    if dhcp == "builtin":
        assert described["dhcp"].startswith("built-in"), explain
        assert IPv4Address(result["address"]) not in _server_range(), explain
    else:
        assert any(title.startswith(f"start {dhcp} in cn") for title in titles), titles
        assert described["dhcp"].startswith(f"{dhcp} in cn on {servers.DHCP_ADDRESS}"), explain
        assert IPv4Address(result["address"]) in _server_range(), explain
    if aaa == "radius":
        assert any(title.startswith("start FreeRADIUS in lm") for title in titles), titles
        assert described["aaa"].startswith("freeradius in lm on"), explain
        assert result["counters"]["dmpa1"].get("aaa.accept", 0) >= 1, explain
    else:
        assert described["aaa"].startswith("local profiles"), explain
    if dhcp == "builtin" and aaa == "local":
        assert not any(title.startswith("start ") and " in cn" in title for title in titles)
        assert "server_exit_codes" not in result, explain


def _server_range() -> list[IPv4Address]:
    first, last = (IPv4Address(a) for a in servers.SERVER_RANGE)
    return [IPv4Address(n) for n in range(int(first), int(last) + 1)]
