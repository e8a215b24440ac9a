"""docs/service.md and docs/operations.md name the counters the code declares, the defaults
docs/operations.md and docs/protocol.md state are the config schema's, and links resolve.

* The counters: every group of ``netlmm show counters`` is a table of declarations
  (:data:`router.app.counters.GROUPS`; each module declares its names once,
  router/core/counters.py). ``docs/service.md``'s "Counters" section lists, per group, the same
  set: every declared name and family (``punt.<reason>``), and nothing else.
* The troubleshooting section of ``docs/operations.md`` names counters as `` `group: name` ``:
  each is declared in that group. ``*.`` in a fastpath name stands for both directions; a
  ``<...>`` or a trailing ``*`` is a family, which must be declared as such.
* A default in the prose of ``docs/operations.md`` and ``docs/protocol.md`` is written
  ``default `section.key = value` `` (or ``key`` alone where every section's key has it); each
  such value is the one the schema gives (the "Default:" of ``etc/<role>.ini``), and "default"
  is never followed by a bare value there.
* Every relative link of the docs resolves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from router.app.config.schema import SCHEMA
from router.app.counters import GROUPS
from router.core.counters import declared_names, is_declared

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MENTION = re.compile(rf"`({'|'.join(GROUPS)}): ([^`]+)`")
PLACEHOLDER = re.compile(r"<[^>]*>|\*$")


def _declared(group: str) -> set[str]:
    """The group's declared names, and its families as ``prefix.{}`` patterns."""
    names, families = declared_names(GROUPS[group])
    return names | {family.pattern for family in families}


def _documented() -> dict[str, set[str]]:
    """Per ``### group`` of the Counters section: the backticked names of its tables' first
    column, a ``<...>`` part written as ``{}``."""
    text = (DOCS / "service.md").read_text()
    section = text.split("\n## Counters\n", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for block in section.split("\n### ")[1:]:
        group, body = block.split("\n", 1)
        names: set[str] = set()
        for line in body.splitlines():
            if line.startswith("| `"):
                first = line.split(" | ", 1)[0]
                names.update(PLACEHOLDER.sub("{}", n) for n in re.findall(r"`([^`]+)`", first))
        out[group.strip()] = names
    return out


def test_service_md_documents_every_group() -> None:
    assert set(_documented()) == set(GROUPS)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_service_md_lists_what_is_declared_and_nothing_else(group: str) -> None:
    documented, declared = _documented()[group], _declared(group)
    assert documented - declared == set(), f"{group}: documented, never declared"
    assert declared - documented == set(), f"{group}: declared, not documented"


def _mentions() -> list[tuple[str, str]]:
    text = (DOCS / "operations.md").read_text()
    return sorted(set(MENTION.findall(text)))


def test_the_troubleshooting_section_names_counters() -> None:
    assert len(_mentions()) > 30


@pytest.mark.parametrize(("group", "name"), _mentions())
def test_a_counter_operations_md_names_is_declared_in_its_group(group: str, name: str) -> None:
    if group == "fastpath" and name.startswith("*."):
        names = [name.replace("*", direction, 1) for direction in ("uplink", "downlink")]
    else:
        names = [name]
    for full in names:
        if PLACEHOLDER.search(full):
            assert PLACEHOLDER.sub("{}", full) in _declared(group), f"{group}: {full}"
        else:
            assert is_declared(full, GROUPS[group]), f"{group}: {full}"


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", ["operations.md", "design.md", "protocol.md", "service.md"])
def test_relative_links_resolve(doc: str) -> None:
    for target in LINK.findall((DOCS / doc).read_text()):
        if "://" in target:
            continue
        assert (DOCS / target).exists(), f"{doc} links to {target}"


DEFAULT = re.compile(r"\bdefault `([a-z_]+(?:\.[a-z_]+)?) = ([^`]+)`")
BARE_DEFAULT = re.compile(r"\bdefault(?:s)?\s+(?!`[a-z_.]+ = )[`\d]")
DEFAULT_DOCS = ("operations.md", "protocol.md")


def _prose(doc: str) -> str:
    """The document with every run of white space one space: a statement may span lines."""
    return " ".join((DOCS / doc).read_text().split())


def _stated_defaults() -> list[tuple[str, str, str]]:
    return [
        (doc, key, value) for doc in DEFAULT_DOCS for key, value in DEFAULT.findall(_prose(doc))
    ]


def test_the_docs_state_defaults_in_the_checked_form() -> None:
    assert len(_stated_defaults()) >= 10
    for doc in DEFAULT_DOCS:
        text = _prose(doc)
        bare = [text[m.start() : m.start() + 40] for m in BARE_DEFAULT.finditer(text)]
        assert not bare, f"{doc}: write a default as default `section.key = value`: {bare}"


@pytest.mark.parametrize(("doc", "key", "value"), _stated_defaults())
def test_a_default_the_docs_state_is_the_schemas(doc: str, key: str, value: str) -> None:
    section, _, name = key.rpartition(".")
    keys = [k for k in SCHEMA if k.name == name and section in ("", k.section)]
    assert keys, f"{doc}: {key} is no key of the config"
    for schema_key in keys:
        for role in schema_key.roles:
            assert schema_key.default_text(role) == value, (
                f"{doc}: {key} defaults to {schema_key.default_text(role)} "
                f"in [{schema_key.section}] of a {role}, not {value}"
            )


def test_the_start_failures_and_log_events_operations_md_shows_are_the_code_s() -> None:
    """Each ``start_failed key=K`` line of docs/operations.md names a key of the schema (or
    ``-``) that the code reports, and each event the operator is told to look for is one the
    code logs."""
    text = (DOCS / "operations.md").read_text()
    keys = set(re.findall(r"^start_failed key=(\S+) ", text, re.MULTILINE))
    assert len(keys) >= 6, keys
    schema = {f"{key.section}.{key.name}" for key in SCHEMA}
    sources = "".join(path.read_text() for path in (ROOT / "router").rglob("*.py"))
    for key in keys - {"-"}:
        assert key in schema, key
        assert f'"{key}"' in sources, f"no start failure in the code names {key}"
    events = ("start_failed", "address_wait", "tunnel_mtu_too_big", "route_mtu_changed",
              "dropped", "heartbeat_unanswered", "pbu_timeout", "detached_by_operator")  # fmt: skip
    for name in events:
        shown = re.search(rf"(`|^){name}[ `]", text, re.MULTILINE)
        assert shown, f"operations.md does not show {name}"
        assert f'"{name} ' in sources or f'"{name}"' in sources, f"the code never logs {name}"
