"""The appliance's wheel (``pip wheel .`` at the root) holds the appliance only.

The lab (test bed, demo, campaigns, with their iperf3, tayga and tshark drivers and RADIUS
templates) is the netlmm-lab distribution under ``lab/``. Checked on what setuptools packs, with
the root pyproject's own rules and without a build (a wheel build compiles the fastpath): the
packages its discovery finds, the package data they carry and the modules in them.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

import setuptools

ROOT = Path(__file__).resolve().parents[2]
LAB_PACKAGES = ("netlmm_lab", "router.lab", "lab", "tests", "bench")


def _setuptools_config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"])


def _packages() -> list[str]:
    find = _setuptools_config()["packages"]["find"]
    return sorted(
        setuptools.find_packages(
            where=str(ROOT), include=find.get("include", ("*",)), exclude=find.get("exclude", ())
        )
    )


def _modules() -> list[Path]:
    return sorted(
        path for package in _packages() for path in (ROOT / package.replace(".", "/")).glob("*.py")
    )


def test_the_wheel_packs_router_and_fastpath_and_no_lab() -> None:
    packages = _packages()
    assert {"router", "router.wire", "router.core", "router.app", "fastpath"} <= set(packages)
    assert {p.split(".")[0] for p in packages} == {"router", "fastpath"}, packages
    lab = [p for p in packages if p == "lab" or p.startswith(LAB_PACKAGES)]
    assert not lab, lab
    assert not (ROOT / "router" / "lab").exists()
    assert (ROOT / "lab" / "netlmm_lab" / "topology.py").is_file()  # it moved, not vanished


def test_no_lab_file_is_package_data() -> None:
    data = _setuptools_config().get("package-data", {})
    assert set(data) <= {"router", "fastpath"}, data
    patterns = [pattern for patterns in data.values() for pattern in patterns]
    assert patterns and not [p for p in patterns if "lab" in p or "radius/" in p], patterns


def test_no_packed_module_drives_lab_tools_or_imports_the_lab() -> None:
    """No iperf3 or tayga driver, and no import of the lab (``netlmm lab`` imports it by name,
    lazily, only when the command runs)."""
    modules = _modules()
    assert len(modules) > 30
    for path in modules:
        text = path.read_text()
        name = path.relative_to(ROOT)
        assert "iperf3" not in text and "tayga" not in text, name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported = [node.module or ""]
            else:
                continue
            assert not [m for m in imported if m.split(".")[0] == "netlmm_lab"], name
            assert not [m for m in imported if m.startswith("router.lab")], name
