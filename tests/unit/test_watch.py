"""The route-MTU check (start and change) and the drop log of router.app.watch, with the route
MTU lookup given (the netns test tests/netns/test_operator_view.py reads the kernel's)."""

from __future__ import annotations

import logging
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from router.app import config
from router.app.settings import DMPASettings
from router.app.watch import DropLog, MtuWatch, clamp_tunnel_mtu, route_mtus
from tests.unit.nodes import DMPA_INI

DLMAP = IPv6Address("2001:db8:100::1")


def _settings(tmp_path: Path, tunnel_mtu: int) -> DMPASettings:
    path = tmp_path / "m1.ini"
    text = "\n".join(ln for ln in DMPA_INI.splitlines() if not ln.startswith("tunnel_mtu"))
    path.write_text(text.replace("[dmpa]\n", f"[dmpa]\ntunnel_mtu = {tunnel_mtu}\n") + "\n")
    settings, _ = config.load(path)
    assert isinstance(settings, DMPASettings)
    return settings


def test_a_route_too_small_is_warned_and_the_tunnel_mtu_cut(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, 1500)
    peer = settings.peers[0].address
    mtus = route_mtus(settings, lambda dst, src: 1500)
    assert mtus == {peer: 1500}
    with caplog.at_level(logging.WARNING):
        cut = clamp_tunnel_mtu(settings, mtus)
    assert cut.tunnel_mtu == 1460
    (record,) = caplog.records
    assert record.getMessage().startswith(f"tunnel_mtu_too_big peer={peer} route_mtu=1500")
    assert 'fix="set dmpa.tunnel_mtu = 1460, or give the transport an MTU of 1540"' in (
        record.getMessage()
    )
    caplog.clear()
    assert clamp_tunnel_mtu(settings, {peer: 1540}) is settings
    assert clamp_tunnel_mtu(settings, {}) is settings  # no route yet: nothing to say
    assert caplog.records == []


def test_a_changed_route_mtu_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, 1460)
    peer = settings.peers[0].address
    mtu = {"now": 1500}
    watch = MtuWatch(settings, {peer: 1500}, lambda dst, src: mtu["now"])
    assert watch.check() == []
    mtu["now"] = 1400
    with caplog.at_level(logging.INFO):
        (change,) = watch.check()
        assert watch.check() == []  # said once
    assert change == {
        "peer": peer,
        "route_mtu": 1400,
        "was": 1500,
        "tunnel_mtu": 1460,
        "fits": False,
    }
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    mtu["now"] = 1500
    (back,) = watch.check()
    assert back["fits"] is True


def test_drops_are_one_line_per_reason_that_moved(caplog: pytest.LogCaptureFixture) -> None:
    counters = {"uplink.forwarded": 5, "uplink.tx_errors": 0, "downlink.no_binding": 1}
    drops = DropLog(lambda: counters)
    counters.update({"uplink.forwarded": 90, "uplink.tx_errors": 3, "downlink.no_binding": 4})
    with caplog.at_level(logging.INFO):
        lines = drops.check(10.0)
        assert drops.check(10.0) == []  # nothing moved since
    assert lines == [
        {"direction": "downlink", "reason": "no_binding", "packets": 3, "interval_s": 10.0},
        {"direction": "uplink", "reason": "tx_errors", "packets": 3, "interval_s": 10.0},
    ]
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "dropped direction=downlink reason=no_binding packets=3 interval_s=10.0"),
        (logging.WARNING, "dropped direction=uplink reason=tx_errors packets=3 interval_s=10.0"),
    ]
