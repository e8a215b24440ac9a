"""docs/service.md and docs/operations.md name the counters the code declares; links resolve.

* The counters: every group of ``netlmm show counters`` is a table of declarations
  (:data:`router.app.counters.GROUPS`; each module declares its names once,
  router/core/counters.py). ``docs/service.md``'s "Counters" section lists, per group, the same
  set: every declared name and family (``punt.<reason>``), and nothing else.
* The troubleshooting section of ``docs/operations.md`` names counters as `` `group: name` ``:
  each is declared in that group. ``*.`` in a fastpath name stands for both directions; a
  ``<...>`` or a trailing ``*`` is a family, which must be declared as such.
* Every relative link of the docs resolves.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
