"""``[node] store``, ``store_dsn``, ``store_password_file`` and ``ha``: every problem reported as
``node.key: message`` before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.app import config
from router.app.config import ConfigErrors
from router.app.settings import DLMAPSettings
from tests.unit.nodes import DLMAP_INI, DMPA_INI

DSN = "postgresql://netlmm@db.example.net/netlmm"


def dlmap(extra: str) -> str:
    return DLMAP_INI.replace("[node]\n", "[node]\n" + extra, 1)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        config.loads(text)
    return caught.value.problems


def test_sqlite_is_the_default() -> None:
    settings, _ = config.loads(DLMAP_INI)
    assert settings.node.store == "sqlite" and settings.node.ha == "off"


def test_postgresql_with_a_password_file_of_mode_600(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    text = dlmap(
        f"store = postgresql\nstore_dsn = {DSN}\nstore_password_file = {secret}\nha = pair\n"
    )
    settings, _ = config.loads(text)
    assert isinstance(settings, DLMAPSettings)
    node = settings.node
    assert (node.store, node.store_dsn, node.store_password_file, node.ha) == (
        "postgresql", DSN, secret, "pair"
    )  # fmt: skip


def test_every_store_problem_at_once(tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    found = problems(dlmap(f"store = postgresql\nstore_password_file = {secret}\n"))
    assert "node.store_dsn: required with store = postgresql" in found
    [mode] = [p for p in found if p.startswith("node.store_password_file:")]
    assert "chmod 600" in mode and "s3cret" not in mode


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("store = mysql\n", "node.store: 'mysql' is not one of sqlite, postgresql"),
        (
            "store = postgresql\nstore_dsn = db.example.net\n",
            "node.store_dsn: not a postgresql:// URI",
        ),
        (
            "store = postgresql\nstore_dsn = postgresql://u:pw@db/x\n",
            "node.store_dsn: holds a password: put it in store_password_file (mode 600)",
        ),
        ("ha = pair\n", "node.ha: pair needs the state both processes share: store = postgresql"),
    ],
)
def test_bad_store_settings(extra: str, message: str) -> None:
    assert message in problems(dlmap(extra))


def test_a_dmpa_has_no_shared_database() -> None:
    text = DMPA_INI.replace("[node]\n", f"[node]\nstore = postgresql\nstore_dsn = {DSN}\n", 1)
    found = problems(text)
    assert any(p.startswith("node.store:") and "only a DLMAP" in p for p in found)
