"""Field constraints written into the type hints, so one declaration serves three readers.

``sequence: U16`` tells mypy it is an ``int``, lets :func:`validate` refuse an impossible value at
construction (raising :class:`~router.wire.errors.EncodeError`: building it is our bug), and lets
the property tests generate every legal value of every message and option from the registries
alone (``tests/property/strategies.py``), so a new class is covered without new test code.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

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
_CHECKS: dict[type, Callable[[Any], bool]] = {}


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


def _compile(cls: type) -> Callable[[Any], bool]:
    """A predicate for ``cls``'s constraints, generated once as one boolean expression.

    Validation runs on every construction (decoded messages included); a flat generated
    expression costs a fraction of a loop over the rules. Names come from ``dataclasses.fields``.
    """
    terms = []
    for name, rule in constraints(cls).items():
        v = f"o.{name}"
        if isinstance(rule, IntRange):
            is_int = f"(type({v}) is int or (isinstance({v}, int) and not isinstance({v}, bool)))"
            terms.append(f"{is_int} and {rule.lo} <= {v} <= {rule.hi}")
        else:
            terms.append(f"type({v}) is bytes and {rule.lo} <= len({v}) <= {rule.hi}")
    namespace: dict[str, Any] = {}
    exec(f"def check(o):\n    return {' and '.join(terms) or 'True'}\n", namespace)
    check: Callable[[Any], bool] = namespace["check"]
    return check


def validate(obj: Any) -> None:
    """Raise :class:`EncodeError` naming every field of ``obj`` outside its declared range."""
    cls = type(obj)
    check = _CHECKS.get(cls)
    if check is None:
        check = _CHECKS[cls] = _compile(cls)
    if not check(obj):
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


T = TypeVar("T")
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def trusted(cls: type[T], *values: Any) -> T:
    """Build ``cls`` from every field's value, skipping validation.

    Only for decoders, with values unpacked from fixed-width wire fields: they are in range by
    construction, and validating them again is a measurable share of decoding a PBU. The
    property tests re-encode everything a decoder accepts, which keeps this honest.
    """
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    obj = object.__new__(cls)
    for name, value in zip(names, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj
