"""One section of the ini file read through the schema; problems and warnings collected.

A :class:`Section` never raises on the operator's input: a key that is not in the schema, a
value its parser refuses or a required key that is missing becomes one ``section.key: message``
problem in the :class:`Report`, and the value reads as None, so one run reports everything.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from router.app.config.parsers import Invalid
from router.app.config.schema import KEYS, SECTION_KEYS, Key

T = TypeVar("T")


class ConfigErrors(ValueError):
    """The file cannot be used: ``problems`` lists every error as ``section.key: message``.

    ``warnings`` holds what was found besides, so a report can show both.
    """

    def __init__(self, problems: list[str], warnings: Iterable[str] = ()) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.warnings = list(warnings)


@dataclass(slots=True)
class Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Section:
    """One section being read: each key parsed once, by its schema entry, on first use."""

    def __init__(
        self, report: Report, name: str, kind: str, values: Mapping[str, str] | None
    ) -> None:
        self.name = name
        self.kind = kind
        self.values = dict(values or {})
        self.report = report
        self.failed = False
        self._read: dict[str, Any] = {}
        for key in self.values:
            if key not in KEYS[kind]:
                close = difflib.get_close_matches(key, KEYS[kind], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.error(key, f"unknown key{hint}")

    def error(self, key: str | None, message: str) -> None:
        self.failed = True
        self.report.problems.append(f"{self._where(key)}: {message}")

    def warn(self, key: str | None, message: str) -> None:
        self.report.warnings.append(f"{self._where(key)}: {message}")

    def _where(self, key: str | None) -> str:
        return self.name if key is None else f"{self.name}.{key}"

    def has(self, key: Key[Any]) -> bool:
        """The key is given, with a value (``key =`` alone counts as absent)."""
        return self.raw(key) is not None

    def raw(self, key: Key[Any]) -> str | None:
        if key.section != self.kind:  # our bug: a [dmpa] key read from another section
            raise KeyError(f"{key.section}.{key.name} read from a [{self.kind}] section")
        value = self.values.get(key.name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def refuse(self, key: Key[Any], message: str) -> None:
        """A key that must not be given here (another role's, another dialect's): if it is,
        ``message`` is its problem and it is not parsed."""
        if key.name not in self._read:
            self._read[key.name] = None
            if self.has(key):
                self.error(key.name, message)

    def read_all(self) -> None:
        """Parse every key of the section not read yet, in schema order."""
        for key in SECTION_KEYS[self.kind]:
            self.value(key)

    def value(self, key: Key[T]) -> T | None:
        """The parsed value, the default when absent, or None (and a problem) when bad."""
        if key.name not in self._read:
            self._read[key.name] = self._parse(key)
        return cast("T | None", self._read[key.name])

    def _parse(self, key: Key[T]) -> T | None:
        text = self.raw(key)
        if text is None:
            if key.required:
                self.error(key.name, "required")
            return key.default
        try:
            return key.parse(text)
        except Invalid as exc:
            for message in exc.messages:
                self.error(key.name, message)
            return None


def some(value: T | None) -> T:
    """A value known to have parsed (only called when no problem was recorded)."""
    if value is None:  # pragma: no cover - our bug, not the operator's
        raise AssertionError("a value that failed to parse reached the settings")
    return value
