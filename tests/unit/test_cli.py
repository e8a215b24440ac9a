"""The command line: the console script and ``python -m router`` both work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.cli import build_parser, main
from tests.conftest import require
from tests.unit.nodes import DMPA_INI
from tests.vectors import load_hex

VENV_BIN = Path(sys.executable).parent


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("netlmm 0.")


def test_decode_a_vector_with_checksum(capsys: pytest.CaptureFixture[str]) -> None:
    hex_text = load_hex("mh/pba_draft").hex()
    args = ["decode", hex_text, "--src", "2001:db8:2::1", "--dst", "2001:db8:1::1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "BindingAck (draft dialect)" in out
    assert "SeedIPv4HomeAddress sequence=1 address=10.1.0.23" in out
    assert "FIXED" not in out and "NAME" not in out and "MH_TYPE" not in out
    assert "IPv4Address(" not in out  # no Python reprs
    lines = out.splitlines()
    assert any(line.startswith("  lifetime_s: ") for line in lines), out


def test_decode_reports_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "3b0105"]) == 1
    assert "TruncatedError" in capsys.readouterr().err
    assert main(["decode", "zz"]) == 2


def test_run_needs_a_config_and_refuses_a_bad_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    bad = tmp_path / "bad.ini"
    bad.write_text("[node]\nrole = router\n")
    assert main(["run", "-c", str(bad)]) == 2
    assert "node.role" in capsys.readouterr().err


def test_show_without_a_running_appliance_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["show", "bindings", "--socket", str(tmp_path / "absent.sock")]) == 1
    assert "running" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [[str(VENV_BIN / "netlmm")], [sys.executable, "-m", "router"]], ids=["script", "-m"]
)
def test_entry_points(command: list[str]) -> None:
    require(Path(command[0]).exists(), f"{command[0]} is not installed (run make setup)")
    result = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("netlmm ")


def test_run_takes_a_log_format_and_still_refuses_a_bad_file_first(tmp_path: Path) -> None:
    args = build_parser().parse_args(["run", "-c", "x.ini", "--log-format", "json"])
    assert args.log_format == "json"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "-c", "x.ini", "--log-format", "yaml"])
    bad = tmp_path / "bad.ini"
    bad.write_text(DMPA_INI.replace("log_format = json", "log_format = yaml"))
    assert main(["run", "-c", str(bad), "--log-format", "json"]) == 2


def test_attach_loads_neither_the_app_layer_nor_asyncio(tmp_path: Path) -> None:
    """``netlmm attach`` runs at every association (an access point's hook): it reads only the
    socket path from the ini file (the default from the node's name) and talks to the socket
    with the standard library; the start-up of the app layer was most of its 300-500 ms."""
    import subprocess
    import sys

    from router.app.config.schema import RUN_ROOT
    from router.cli import RUN_ROOT as CLI_RUN_ROOT

    assert CLI_RUN_ROOT == RUN_ROOT
    ini = tmp_path / "m1.ini"
    ini.write_text("[node]\nrole = dmpa\nname = m1 ; a comment\n[dmpa]\naccess = eth1\n")
    probe = (
        "import sys\nfrom router.cli import main\n"
        f"code = main(['attach', '02:00:00:00:0a:01', '-c', {str(ini)!r}])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('router.app', 'asyncio')))\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "1 []", done.stderr
    assert "no control socket at /run/netlmm/m1.sock" in done.stderr
