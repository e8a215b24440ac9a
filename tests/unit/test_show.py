"""What ``netlmm show`` prints: the config without its secrets, the bindings table and its
filters, and the commands through a control socket."""

from __future__ import annotations

import asyncio
import json
from argparse import Namespace
from pathlib import Path

import pytest

from router.app import config
from router.app.run import flatten, redacted
from router.cli import _bindings_table, _duration, _filter_bindings, main
from tests.unit.nodes import DLMAP, DMPA1, DMPA2, DMPA_INI, NAI


def test_show_config_leaves_the_secrets_out() -> None:
    text = DMPA_INI.replace("tunnel_mtu = 1500", "tunnel_mtu = 1500\naaa = radius")
    text += "[radius]\nservers = 192.0.2.5 s3cr3t-shared\n"
    settings, _ = config.loads(text, file_mode=0o100600)
    view = {k: redacted(v) for k, v in flatten(settings).items()}
    dumped = json.dumps(view)
    assert "s3cr3t" not in dumped and "(secret)" in dumped
    assert view["node.address"] == str(DMPA1)
    assert view["dmpa.access"] == ["eth1"]
    assert f"profile {NAI}" in view and f"peer {DLMAP}" in view


ROWS = [
    {"nai": "b@x", "hoa": "192.0.2.101", "dmpa": str(DMPA2), "age": 4000.0,
     "expires_in": 59.9, "lifetime": 3600, "packets": 7},
    {"nai": "a@x", "hoa": "192.0.2.100", "dmpa": str(DMPA1), "age": 12.3,
     "expires_in": 3587.7, "lifetime": 3600, "packets": 0},
]  # fmt: skip


def _filters(**given: str | None) -> Namespace:
    return Namespace(**({"nai": None, "hoa": None, "dmpa": None} | given))


def test_bindings_table_and_filters() -> None:
    table = _bindings_table(ROWS, "dlmap").splitlines()
    assert table[0].split() == ["NAI", "HOA", "DMPA", "AGE", "LEFT", "LIFETIME", "PACKETS"]
    assert table[1].split() == ["a@x", "192.0.2.100", str(DMPA1), "12s", "59m47s", "1h00m", "0"]
    assert table[2].split() == ["b@x", "192.0.2.101", str(DMPA2), "1h06m", "59s", "1h00m", "7"]
    assert _filter_bindings(ROWS, _filters(nai="a@*")) == [ROWS[1]]
    assert _filter_bindings(ROWS, _filters(hoa="192.0.2.101")) == [ROWS[0]]
    assert _filter_bindings(ROWS, _filters(hoa="192.0.2.0/24")) == ROWS
    assert _filter_bindings(ROWS, _filters(dmpa="2001:db8:100:0::11")) == [ROWS[1]]
    assert _filter_bindings(ROWS, _filters(nai="a@*", dmpa=str(DMPA2))) == []
    with pytest.raises(ValueError):
        _filter_bindings(ROWS, _filters(hoa="not-an-address"))
    assert _bindings_table([], "dlmap") == "(no bindings)"
    assert [_duration(v) for v in (0, 59.9, 61, 3600, 90000, -1, None)] == [
        "0s", "59s", "1m01s", "1h00m", "1d01h", "0s", "-",
    ]  # fmt: skip


def test_show_commands_through_a_control_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from router.adapters.control import ControlServer

    counters = {"core": {"handover": 2, "bri.sent": 0}, "fastpath": {"uplink.forwarded": 0}}

    def handle(request: dict[str, object]) -> dict[str, object]:
        what = request["what"]
        result = ROWS if what == "bindings" else counters
        return {"what": what, "role": "dlmap", "result": result}

    socket = tmp_path / "c.sock"

    async def scenario() -> list[tuple[int, str]]:
        outputs = []
        async with ControlServer(socket, handle):
            for argv in (
                ["show", "bindings", "--socket", str(socket), "--nai", "b@x"],
                ["show", "counters", "--socket", str(socket)],
                ["show", "counters", "--socket", str(socket), "--all", "--json"],
                ["show", "bindings", "--socket", str(socket), "--hoa", "x"],
            ):
                code = await asyncio.to_thread(main, argv)
                outputs.append((code, capsys.readouterr().out))
        return outputs

    (c1, table), (c2, nonzero), (c3, everything), (c4, _) = asyncio.run(scenario())
    assert (c1, c2, c3, c4) == (0, 0, 0, 2)
    assert [line.split()[0] for line in table.splitlines()] == ["NAI", "b@x"]
    assert nonzero.split() == ["core:", "handover", "2"]
    assert json.loads(everything) == counters
