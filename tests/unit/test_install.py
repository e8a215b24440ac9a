"""``make install`` on a real build: the wheel (no generated C, the license, the examples, the
version from router/__init__.py), the entry point, the unit with its paths rewritten and its
``Documentation=`` pointing at installed files, the examples and docs. Installed under a
temporary PREFIX with ``--no-deps`` (no network); about 1.5 minutes (the wheel compiles the
fastpath). The sdist, built with setup.py into a temporary directory, ships the kernel
tier's BPF C from the top-level bpf/ (MANIFEST.in), which is no package file."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from router import __version__
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def test_make_install_puts_entry_point_unit_examples_and_docs_in_place(tmp_path: Path) -> None:
    require(shutil.which("make") is not None and shutil.which("gcc") is not None, "make, gcc")
    prefix, venv, units, conf = (tmp_path / n for n in ("usr", "venv", "units", "etc-netlmm"))
    done = subprocess.run(
        ["make", "-C", str(ROOT), "install", f"PREFIX={prefix}", f"INSTALL_VENV={venv}",
         f"SYSTEMD_DIR={units}", f"CONF_DIR={conf}", "INSTALL_PIP_OPTS=--no-deps"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = (ROOT / "dist").glob("netlmm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    # the .pyx sources ship, not the C Cython generates from them; the kernel tier ships its
    # object, built from bpf/ (the hand-written BPF C stays in the source tree and the sdist)
    generated = [n for n in names if n.endswith(".c")]
    assert not generated, "generated C in the wheel"
    if shutil.which("clang") or shutil.which("clang-14"):  # setup.py builds the object with it
        assert "fastpath/netlmm_tc.bpf.o" in names
    assert f"netlmm-{__version__}.dist-info/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"netlmm-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in metadata and f"Version: {__version__}" in metadata
    netlmm = prefix / "bin" / "netlmm"
    version = subprocess.run([netlmm, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"netlmm {__version__}"
    example = subprocess.run([netlmm, "example", "dmpa"], capture_output=True, text=True)
    assert example.stdout == (ROOT / "etc/dmpa.ini").read_text()
    unit = (units / "netlmm@.service").read_text()
    assert f"ExecStart={netlmm} run -c {conf}/%i.ini" in unit
    assert f"ExecReload={netlmm} reload -c {conf}/%i.ini" in unit
    documentation = next(ln for ln in unit.splitlines() if ln.startswith("Documentation="))
    for url in documentation.removeprefix("Documentation=").split():
        assert url.startswith("file:") and Path(url.removeprefix("file:")).is_file(), url
    docs = prefix / "share/doc/netlmm"
    assert (docs / "examples/dlmap.ini").read_text() == (ROOT / "etc/dlmap.ini").read_text()
    assert (docs / "LICENSE").is_file() and (docs / "operations.md").is_file()
    assert conf.is_dir() and conf.stat().st_mode & 0o777 == 0o750


def test_sdist_ships_the_bpf_sources(tmp_path: Path) -> None:
    """bpf/ (netlmm_tc.bpf.c and its headers) is outside every package: only MANIFEST.in puts
    it in the sdist, without which a build from the sdist has no kernel tier."""
    dist, egg = tmp_path / "dist", tmp_path / "egg"
    egg.mkdir()
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg),
         "sdist", "-d", str(dist)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (sdist,) = dist.glob(f"netlmm-{__version__}.tar.gz")
    top = f"netlmm-{__version__}/"
    with tarfile.open(sdist) as tar:
        names = [n.removeprefix(top) for n in tar.getnames()]
    shipped = {n for n in names if n.startswith("bpf/")}
    expected = {"bpf/netlmm_tc.bpf.c", "bpf/netlmm_tc.h", "bpf/netlmm_tc6.h"}
    assert expected <= shipped, sorted(shipped)
    in_tree = {f"bpf/{p.name}" for p in (ROOT / "bpf").glob("*.[ch]")}
    assert in_tree <= shipped, sorted(in_tree - shipped)  # a new header ships too
