"""Field constraints written into the type hints, so one declaration serves three readers.

``sequence: U16`` tells mypy it is an ``int``, lets :func:`validate` refuse an impossible value at
construction (raising :class:`~router.wire.errors.EncodeError`: building it is our bug), and lets
the property tests generate every legal value of every message and option from the registries
alone (``tests/property/strategies.py``), so a new class is covered without new test code.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields
from typing import Annotated, Any

from router.wire.errors import EncodeError


@dataclass(frozen=True, slots=True)
class IntRange:
    """An integer field in ``lo..hi`` inclusive."""

    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class SizeRange:
    """A bytes field of ``lo..hi`` bytes inclusive."""

    lo: int
    hi: int


U6 = Annotated[int, IntRange(0, (1 << 6) - 1)]
U8 = Annotated[int, IntRange(0, (1 << 8) - 1)]
U16 = Annotated[int, IntRange(0, (1 << 16) - 1)]
U32 = Annotated[int, IntRange(0, (1 << 32) - 1)]
U64 = Annotated[int, IntRange(0, (1 << 64) - 1)]


_CACHE: dict[type, dict[str, IntRange | SizeRange]] = {}
_RULES: dict[type, tuple[tuple[str, bool, int, int], ...]] = {}


def constraints(cls: type) -> dict[str, IntRange | SizeRange]:
    """The constrained fields of a dataclass, by name (cached per class)."""
    cached = _CACHE.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls, include_extras=True)
    found: dict[str, IntRange | SizeRange] = {}
    for f in fields(cls):
        for meta in getattr(hints.get(f.name), "__metadata__", ()):
            if isinstance(meta, IntRange | SizeRange):
                found[f.name] = meta
    _CACHE[cls] = found
    return found


def _rules(cls: type) -> tuple[tuple[str, bool, int, int], ...]:
    rules = _RULES.get(cls)
    if rules is None:
        rules = tuple(
            (name, isinstance(rule, IntRange), rule.lo, rule.hi)
            for name, rule in constraints(cls).items()
        )
        _RULES[cls] = rules
    return rules


def validate(obj: Any) -> None:
    """Raise :class:`EncodeError` naming every field of ``obj`` outside its declared range.

    Runs on every construction (decoded messages included), so it is a flat loop over a
    per-class table rather than a walk of the type hints.
    """
    for name, is_int, lo, hi in _rules(type(obj)):
        value = getattr(obj, name)
        if is_int:
            if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
                break
            if not lo <= value <= hi:
                break
        elif type(value) is not bytes or not lo <= len(value) <= hi:
            break
    else:
        return
    _raise(obj)


def _raise(obj: Any) -> None:
    problems = []
    for name, rule in constraints(type(obj)).items():
        value = getattr(obj, name)
        if isinstance(rule, IntRange):
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not (ok and rule.lo <= value <= rule.hi):
                problems.append(f"{name}={value!r} not an integer in {rule.lo}..{rule.hi}")
        elif not isinstance(value, bytes) or not rule.lo <= len(value) <= rule.hi:
            problems.append(f"{name} must be {rule.lo}..{rule.hi} bytes")
    raise EncodeError(f"{type(obj).__name__}: " + "; ".join(problems))
