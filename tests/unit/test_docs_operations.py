"""docs/operations.md and docs/design.md point at things that exist.

* Every counter the troubleshooting section names as `` `section: name` `` is one the code
  counts: a fastpath counter (:func:`fastpath.common.counter_names`), a RADIUS client counter
  (:data:`router.adapters.radius.COUNTERS`), or a key the code writes, found among the strings
  of ``router/``: a literal, or an f-string read as a pattern (``f"pba.status.{status}"``
  matches ``pba.status.129``). ``*`` in a fastpath name stands for both directions; ``<...>``
  or a trailing ``*`` stands for one variable part of a key.
* Every relative link of the docs resolves.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from fastpath.common import counter_names
from router.adapters.radius import COUNTERS as RADIUS_COUNTERS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SECTIONS = ("node", "core", "fastpath", "mh_socket", "dhcp", "access", "aaa")
MENTION = re.compile(rf"`({'|'.join(SECTIONS)}): ([^`]+)`")


@cache
def _keys_in_code() -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    """(string literals, f-strings with 2+ fixed word characters as patterns: each
    formatted part is ``[\\w.]+``) in router/."""
    literals: set[str] = set()
    patterns: set[str] = set()
    for path in (ROOT / "router").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                fixed = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if len(re.sub(r"\W", "", fixed)) < 2:
                    continue  # f"{a}.{b}" would match any name: not evidence of a key
                parts = [
                    re.escape(v.value) if isinstance(v, ast.Constant) else r"[\w.]+"
                    for v in node.values
                ]
                patterns.add("".join(parts))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
    return frozenset(literals), tuple(re.compile(p) for p in sorted(patterns))


def _mentions() -> list[tuple[str, str]]:
    text = (DOCS / "operations.md").read_text()
    return sorted(set(MENTION.findall(text)))


def test_the_troubleshooting_section_names_counters() -> None:
    assert len(_mentions()) > 30


@pytest.mark.parametrize(("section", "name"), _mentions())
def test_named_counter_exists(section: str, name: str) -> None:
    if section == "fastpath":
        names = (
            [name.replace("*", d, 1) for d in ("uplink", "downlink")] if "*." in name else [name]
        )
        for full in names:
            assert full in counter_names(), f"fastpath: {full}"
        return
    if section == "aaa" and name in RADIUS_COUNTERS:
        return
    literals, patterns = _keys_in_code()
    key = re.sub(r"(<[^>]*>|\*)$", "x", name)  # a family: one example of its keys
    assert key in literals or any(p.fullmatch(key) for p in patterns), f"{section}: {name}"


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", ["operations.md", "design.md", "protocol.md", "service.md"])
def test_relative_links_resolve(doc: str) -> None:
    for target in LINK.findall((DOCS / doc).read_text()):
        if "://" in target:
            continue
        assert (DOCS / target).exists(), f"{doc} links to {target}"
