"""Declared counters: every module names its counters once, and a registry takes no other name.

Rules:

1. A module declares its counter names in a :class:`Names` enum (a ``StrEnum``: a member *is*
   its name, as ``show counters`` and the metrics print it) and the names it builds from a
   variable part (a reason, a status code, an error's class) as :class:`Family` objects.
2. A :class:`Counters` registry reads like a ``dict[str, int]`` (0 for a name never counted, as
   ``collections.Counter``), but is written only with a declared name: a member of a
   :class:`Names` enum or a key a :class:`Family` made. mypy rejects any other string, so a
   misspelt counter is an error in ``make lint``, not a counter that silently stays at 0.
3. What is declared is what is documented and exported: the metrics are built from the
   declarations (:mod:`router.app.metrics`), and a test compares the declared set with the
   counters ``docs/service.md`` lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import TYPE_CHECKING, NewType

#: A counter name made by a :class:`Family` (the only other way to make a name than a member).
Key = NewType("Key", str)


class Names(StrEnum):
    """The base of each module's enum of counter names."""


Declared = Names | Key


class Family:
    """Counter names with a variable part: ``Family("punt.{}")`` makes ``punt.arp``,
    ``punt.dhcp``, ... ``parts``, when given, are all the parts there are (an enum's names,
    say); a part outside them is our bug and raises ``KeyError``."""

    __slots__ = ("_parts", "doc", "pattern", "regex")

    def __init__(self, pattern: str, doc: str = "", parts: Iterable[object] | None = None) -> None:
        if pattern.count("{}") != 1:
            raise ValueError(f"a family pattern has one {{}}: {pattern!r}")
        self.pattern = pattern
        self.doc = doc
        self._parts = None if parts is None else frozenset(str(p) for p in parts)
        head, tail = pattern.split("{}")
        self.regex = re.compile(re.escape(head) + r"([\w.]+)" + re.escape(tail))

    def __call__(self, part: object) -> Key:
        text = str(part)
        if self._parts is not None and text not in self._parts:
            raise KeyError(f"{self.pattern}: no part {text!r}")
        return Key(self.pattern.replace("{}", text))

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is one of this family's names."""
        if not isinstance(name, str):
            return False
        match = self.regex.fullmatch(name)
        return match is not None and (self._parts is None or match.group(1) in self._parts)

    def part(self, name: str) -> str | None:
        """The variable part of ``name``, or None when it is not one of this family's."""
        match = self.regex.fullmatch(name)
        return match.group(1) if match is not None and name in self else None

    @property
    def names(self) -> tuple[str, ...] | None:
        """Every name of the family, when its parts are known."""
        if self._parts is None:
            return None
        return tuple(sorted(self.pattern.replace("{}", p) for p in self._parts))

    def __repr__(self) -> str:
        return f"Family({self.pattern!r})"


#: What a module declares (its enum of names, or one member of it, or a family).
Declaration = type[Names] | Names | Family


def declared_names(declarations: Iterable[Declaration]) -> tuple[set[str], list[Family]]:
    """The fixed names and the families of ``declarations``."""
    names: set[str] = set()
    families: list[Family] = []
    for item in declarations:
        if isinstance(item, Family):
            families.append(item)
        elif isinstance(item, Names):
            names.add(item.value)
        else:
            names.update(member.value for member in item)
    return names, families


def is_declared(name: str, declarations: Iterable[Declaration]) -> bool:
    """Whether ``name`` is one of ``declarations``' names."""
    names, families = declared_names(declarations)
    return name in names or any(name in family for family in families)


class Counters(dict[str, int]):
    """A registry of counters by declared name (see the module docstring, rule 2)."""

    __slots__ = ()

    def __missing__(self, key: str) -> int:
        return 0

    if TYPE_CHECKING:
        # Narrower than dict's on purpose: only declared names are written (rule 2). At run
        # time dict's own __setitem__ does the work.
        def __setitem__(self, key: Declared, value: int) -> None: ...  # type: ignore[override]
