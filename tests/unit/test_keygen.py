"""``netlmm keygen FILE``: an RFC 4285 key file for a domain, made so it is never readable by
others, with a fresh SPI and key; and the rule that a [peer] is protected unless it says
``insecure = yes`` (seed section 7: the signaling "MUST be protected")."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from router.adapters.keyfile import read_key_file
from router.app.config import ConfigErrors, loads
from router.cli import main
from router.core.security import MAX_SPI, MIN_SPI

DLMAP_ADDRESS = "2001:db8:100::1"
DMPA_ADDRESS = "2001:db8:100::11"


def keygen(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["keygen", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def spi_said(out: str) -> int:
    found = re.search(r"^\s*spi = (\d+)$", out, re.M)
    assert found, out
    return int(found.group(1))


def test_keygen_writes_a_private_file_with_a_fresh_spi_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "netlmm.keys"
    code, out = keygen(path, capsys)
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    spi = spi_said(out)  # what to put in every [peer] section
    assert MIN_SPI <= spi <= MAX_SPI
    assert f"key_file = {path}" in out
    keys = read_key_file(path, [spi])  # what the node reads: the same checks as at start
    assert keys.spis == (spi,)
    key = keys.get(spi)
    assert key is not None and len(key) >= 32 and key.hex() not in out  # never printed
    other = tmp_path / "other.keys"
    assert keygen(other, capsys)[0] == 0
    assert read_key_file(other).get(read_key_file(other).spis[0]) != key  # fresh each time


def test_keygen_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "netlmm.keys"
    assert keygen(path, capsys)[0] == 0
    before = path.read_bytes()
    code, out = keygen(path, capsys)
    assert code == 1 and "exists" in out and "--force" in out
    assert path.read_bytes() == before
    path.chmod(0o644)  # a replaced file is private again, whatever it was
    code, out = keygen(path, capsys, "--force")
    assert code == 0 and path.read_bytes() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path, [spi_said(out)])


def test_keygen_into_a_missing_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = keygen(tmp_path / "absent" / "netlmm.keys", capsys)
    assert code == 1 and len(out.strip().splitlines()) == 1 and "Traceback" not in out


def dmpa_ini(peer_lines: str, node_lines: str = "") -> str:
    return f"""
[node]
role = dmpa
name = m1
address = {DMPA_ADDRESS}
{node_lines}
[dmpa]
access = eth1
gateway = 192.0.2.1
tunnel_mtu = 1500

[peer {DLMAP_ADDRESS}]
{peer_lines}
[profile alice@example.org]
mac = 02:00:00:00:0a:01
"""


def test_a_peer_without_an_spi_is_refused() -> None:
    with pytest.raises(ConfigErrors) as caught:
        loads(dmpa_ini(""))
    assert caught.value.problems == [
        f"peer {DLMAP_ADDRESS}.spi: required: signaling must be protected (seed section 7); "
        "make a key file with `netlmm keygen FILE` (node.key_file) and put its SPI here, or "
        "say insecure = yes"
    ]


def test_an_insecure_peer_is_taken_with_a_warning() -> None:
    settings, warned = loads(dmpa_ini("insecure = yes\n"))
    assert [p.spi for p in settings.peers] == [None]
    assert warned == [
        f"peer {DLMAP_ADDRESS}.insecure: signaling with this peer is not protected "
        "(seed section 7 says it MUST be)"
    ]


def test_insecure_and_an_spi_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "netlmm.keys"
    _, out = keygen(keys, capsys)
    spi = spi_said(out)
    text = dmpa_ini(f"spi = {spi}\ninsecure = yes\n", f"key_file = {keys}\n")
    with pytest.raises(ConfigErrors) as caught:
        loads(text)
    assert caught.value.problems == [
        f"peer {DLMAP_ADDRESS}.insecure: yes, with an spi: the peer is either protected or not"
    ]
    settings, warned = loads(text.replace("insecure = yes\n", ""))
    assert [p.spi for p in settings.peers] == [spi] and warned == []


def test_every_start_warns_about_an_insecure_peer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import router.app.run

    started: list[object] = []
    monkeypatch.setattr(router.app.run, "run", lambda settings, **kw: started.append(settings) or 0)
    ini = tmp_path / "dmpa.ini"
    ini.write_text(dmpa_ini("insecure = yes\n"))
    for _ in range(2):
        assert main(["run", "-c", str(ini)]) == 0
        err = capsys.readouterr().err
        warning = f'config_warning warning="peer {DLMAP_ADDRESS}.insecure: signaling with this'
        assert warning in err
    assert len(started) == 2
    ini.write_text(dmpa_ini(""))  # without it: refused before anything starts
    assert main(["run", "-c", str(ini)]) == 2 and len(started) == 2
