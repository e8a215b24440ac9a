"""What ``netlmm show`` prints: the config without its secrets, the bindings table and its
filters, and the commands through a control socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from router.app import config
from router.app.operations import flatten, redacted
from router.cli import main
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


DURATIONS = [(0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (90000, "1d01h"),
             (-1, "0s"), (None, "-")]  # fmt: skip


def _show_bindings(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rows: list[dict[str, object]],
    *queries: list[str],
) -> list[tuple[int, str]]:
    """``netlmm show bindings`` with each query's options against a control socket serving
    ``rows``: the exit code and what it printed."""
    from router.adapters.control import ControlServer

    socket = tmp_path / "c.sock"

    def handle(request: dict[str, object]) -> dict[str, object]:
        return {"what": request["what"], "role": "dlmap", "result": rows}

    async def scenario() -> list[tuple[int, str]]:
        outputs = []
        async with ControlServer(socket, handle):
            for options in queries:
                argv = ["show", "bindings", "--socket", str(socket), *options]
                code = await asyncio.to_thread(main, argv)
                outputs.append((code, capsys.readouterr().out))
        return outputs

    return asyncio.run(scenario())


def test_bindings_table_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (code, table), *filtered, (bad, _) = _show_bindings(
        tmp_path,
        capsys,
        ROWS,
        [],
        ["--json", "--nai", "a@*"],
        ["--json", "--hoa", "192.0.2.101"],
        ["--json", "--hoa", "192.0.2.0/24"],
        ["--json", "--dmpa", "2001:db8:100:0::11"],
        ["--json", "--nai", "a@*", "--dmpa", str(DMPA2)],
        ["--hoa", "not-an-address"],
    )
    lines = table.splitlines()
    assert code == 0
    header = ["NAI", "HOA", "PREFIX", "DMPA", "AGE", "LEFT", "LIFETIME", "PACKETS"]
    assert lines[0].split() == header
    a, b = ["a@x", "192.0.2.100", "-", str(DMPA1)], ["b@x", "192.0.2.101", "-", str(DMPA2)]
    assert lines[1].split() == [*a, "12s", "59m47s", "1h00m", "0"]
    assert lines[2].split() == [*b, "1h06m", "59s", "1h00m", "7"]
    assert [code for code, _ in filtered] == [0] * 5
    assert [json.loads(out) for _, out in filtered] == [[ROWS[1]], [ROWS[0]], ROWS, [ROWS[1]], []]
    assert bad == 2


def test_bindings_table_durations_and_no_bindings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[dict[str, object]] = [
        {"nai": f"d{n}@x", "age": age} for n, (age, _) in enumerate(DURATIONS)
    ]
    [(code, table)] = _show_bindings(tmp_path, capsys, rows, [])
    assert code == 0
    assert [line.split()[4] for line in table.splitlines()[1:]] == [t for _, t in DURATIONS]
    [(code, empty)] = _show_bindings(tmp_path, capsys, [], [])
    assert (code, empty) == (0, "(no bindings)\n")


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


def test_bindings_table_shows_a_dual_stack_prefix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[dict[str, object]] = [
        {"nai": "d@x", "hoa": None, "prefix": "2001:db8:a:1::/64", "dmpa": str(DMPA1)}
    ]
    [(code, table)] = _show_bindings(tmp_path, capsys, rows, [])
    assert code == 0
    assert table.splitlines()[1].split()[:4] == ["d@x", "-", "2001:db8:a:1::/64", str(DMPA1)]
