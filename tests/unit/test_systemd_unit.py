"""The systemd unit file verifies (systemd-analyze) and keeps its capabilities and restart."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze is not installed")
    assert analyze is not None
    unit = (ROOT / "etc/systemd/netlmm@.service").read_text()
    assert "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW" in unit
    assert "Restart=on-failure" in unit
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    assert "ExecReload=/usr/local/bin/netlmm reload -c /etc/netlmm/%i.ini" in unit
    # verify checks that ExecStart exists: point it at the netlmm entry point of the
    # interpreter running the tests (wherever its environment is), not at a ./.venv
    netlmm = Path(sysconfig.get_path("scripts")) / "netlmm"
    require(netlmm.is_file(), f"no netlmm entry point beside {sys.executable} (pip install -e .)")
    (tmp_path / "netlmm@lab.service").write_text(unit.replace("/usr/local/bin/netlmm", str(netlmm)))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "netlmm@lab.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    problems = [line for line in result.stderr.splitlines() if "netlmm@lab" in line]
    assert result.returncode == 0 and not problems, result.stderr
