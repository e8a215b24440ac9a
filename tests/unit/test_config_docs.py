"""etc/dmpa.ini and etc/dlmap.ini document every key of their role as the schema says.

The comment above each key is rendered from its schema entry (help, then the default or
"(required)"); :func:`router.app.config.docs.check` lists what is not current and
:func:`~router.app.config.docs.refresh` rewrites it. These tests hold the committed files to it,
and show that the check catches each kind of drift.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest

from router.app.config import SCHEMA, docs, loads
from router.app.config.schema import DMPA_LIFETIME, Key, role_keys
from router.app.settings import Role
from tests.keys import EXAMPLE_KEY_FILE, KEY_FILE_LINE

ETC = Path(__file__).resolve().parents[2] / "etc"
ROLES: tuple[Role, ...] = ("dmpa", "dlmap")
REFRESH = ".venv/bin/python -m router.app.config.docs etc/dmpa.ini etc/dlmap.ini"


def example(role: Role) -> str:
    return (ETC / f"{role}.ini").read_text()


@pytest.mark.parametrize("role", ROLES)
def test_the_example_is_current(role: Role) -> None:
    text = example(role)
    assert docs.check(text) == [], f"run {REFRESH}"
    refreshed = docs.refresh(text)
    diff = "".join(difflib.unified_diff(text.splitlines(True), refreshed.splitlines(True)))
    assert refreshed == text, f"run {REFRESH}:\n{diff}"


@pytest.mark.parametrize("role", ROLES)
def test_every_key_of_the_role_is_documented(role: Role) -> None:
    text = example(role)
    for key in role_keys(role):
        block = "\n".join(docs.comment(key, role))
        assert f"{block}\n{key.name} = " in text or f"{block}\n;{key.name} = " in text, key.name


def test_the_rendered_comment_says_the_default_or_required() -> None:
    assert docs.comment(DMPA_LIFETIME, "dmpa") == [
        "; Binding lifetime asked of the DLMAP, 4..262140 s, a multiple of 4. Default: 3600."
    ]
    required = [key for key in SCHEMA if key.required]
    assert required and all(docs.comment(k, "dmpa")[-1].endswith("(required).") for k in required)


def test_a_missing_key_is_found() -> None:
    text = example("dmpa")
    block = "\n".join(docs.comment(DMPA_LIFETIME, "dmpa"))
    without = text.replace(f"{block}\n;lifetime = 3600\n", "")
    assert without != text
    assert docs.check(without) == ["dmpa.lifetime: not in the file"]


def test_a_stale_comment_is_found_and_refreshed() -> None:
    text = example("dmpa")
    stale = text.replace("a multiple of 4. Default: 3600.", "a multiple of 4. Default: 7200.")
    assert stale != text
    assert docs.check(stale) == [
        "dmpa.lifetime: its comment is not the schema's (refresh the file)"
    ]
    assert docs.refresh(stale) == text


def test_a_commented_example_must_be_the_default() -> None:
    text = example("dmpa")
    assert ";retries = 2\n" in text and ";lifetime = 3600\n" in text
    wrong = text.replace(";retries = 2\n", ";retries = 3\n")
    assert docs.check(wrong) == [
        "radius.retries: the commented-out example '3' is not the default (2)"
    ]
    wrong = text.replace(";lifetime = 3600\n", ";lifetime = 7200\n")
    assert docs.check(wrong) == [
        "dmpa.lifetime: the commented-out example '7200' is not the default (3600)"
    ]
    set_explicitly = text.replace(";lifetime = 3600\n", "lifetime = 7200\n")
    assert docs.check(set_explicitly) == []  # a value set is an example, not the default


def test_a_key_of_the_other_role_or_of_no_one_is_found() -> None:
    text = example("dmpa").replace(
        "table_size = 4096\n", "table_size = 4096\npbu_new_nai_rate = 5\n"
    )
    assert docs.check(text) == ["limits.pbu_new_nai_rate: a dmpa does not read it"]
    text = example("dlmap").replace("bri_retries = 3\n", "bri_retries = 3\nbri_retrys = 3\n")
    assert docs.check(text) == ["dlmap.bri_retrys: not a key of the schema"]


def test_the_examples_still_load_after_a_refresh() -> None:
    for role in ROLES:
        text = docs.refresh(example(role)).replace(f"key_file = {EXAMPLE_KEY_FILE}", KEY_FILE_LINE)
        settings, warned = loads(text)  # with the tests' key file (same SPI)
        assert settings.node.role == role and warned == []


def _valued(role: Role) -> list[Key[Any]]:
    """Keys whose default is a value the ini file can say (not derived, not absent)."""
    return [
        key
        for key in role_keys(role)
        if not key.required and key.shown is None and not key.default_text(role).startswith("none")
    ]


@pytest.mark.parametrize("role", ROLES)
def test_every_default_reads_back_from_its_documented_text(role: Role) -> None:
    keys = _valued(role)
    assert len(keys) > 20
    for key in keys:
        assert key.parse(key.default_text(role)) == key.default, key.name


def test_main_refreshes_a_file_and_reports_what_needs_a_hand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = example("dlmap")
    path = tmp_path / "dlmap.ini"
    path.write_text(text.replace("Default: 0.5.", "Default: 0.25."))
    assert docs.main([str(path)]) == 0
    assert path.read_text() == text
    assert capsys.readouterr().out == f"{path}: refreshed\n"
    path.write_text(text.replace("bri_retries = 3\n", ""))
    assert docs.main([str(path)]) == 1
    assert "dlmap.bri_retries: not in the file" in capsys.readouterr().err
