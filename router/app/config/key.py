"""The ini file's kinds of sections and the :class:`Key` that declares one key of them.

:mod:`router.app.config.schema` declares the keys themselves (and re-exports these names);
the keys of some sections live in modules of their own (:mod:`router.app.config.schema_aaa`)
that import this one, so the schema stays one table without an import circle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar, get_args

from router.app.settings import Role

T = TypeVar("T")

ROLES: tuple[Role, ...] = get_args(Role)
#: Help or a shown default that differs between the roles: {role: text}.
PerRole = str | Mapping[Role, str]

SINGLE_SECTIONS = ("node", "dmpa", "dlmap", "radius", "limits")
#: ``peer``, ``profile`` and ``access`` sections carry their address, NAI or interface in the
#: section name: ``[peer 2001:db8::1]``, ``[profile alice@example.org]``, ``[access eth1]``.
NAMED_SECTIONS = ("peer", "profile", "access")
#: The roles whose file holds each kind of section.
SECTION_ROLES: dict[str, tuple[Role, ...]] = {
    "node": ROLES,
    "dmpa": ("dmpa",),
    "dlmap": ("dlmap",),
    "peer": ROLES,
    "profile": ROLES,
    "radius": ("dmpa",),
    "limits": ROLES,
    "access": ("dmpa",),
}


@dataclass(frozen=True, slots=True)
class Key(Generic[T]):
    """One key: what it parses to, what it is when absent, and the line of help it carries."""

    section: str
    name: str
    parse: Callable[[str], T]
    #: The value when the key is absent (None: no value, or one the loader derives).
    default: T | None
    #: Help for ``etc/<role>.ini``, without the closing period: "Default: ..." follows it.
    help: PerRole
    required: bool = False
    #: The default as the ini file says it, when ``default`` cannot say it (derived, or None
    #: with a meaning).
    shown: PerRole | None = None
    #: How the default is written (hexadecimal masks); otherwise :func:`show_value`.
    show: Callable[[T], str] | None = None
    #: The roles that read this key; None: every role whose file holds the section.
    only: tuple[Role, ...] | None = None

    @property
    def roles(self) -> tuple[Role, ...]:
        return self.only if self.only is not None else SECTION_ROLES[self.section]

    def help_for(self, role: Role) -> str:
        return per_role(self.help, role)

    def default_text(self, role: Role) -> str:
        """The default as ``etc/<role>.ini`` says it: ``(required)``, or the value."""
        if self.required:
            return "(required)"
        if self.shown is not None:
            return per_role(self.shown, role)
        if self.show is not None and self.default is not None:
            return self.show(self.default)
        return show_value(self.default)


def per_role(text: PerRole, role: Role) -> str:
    return text if isinstance(text, str) else text[role]


def show_value(value: object) -> str:
    if value is None or value == ():
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ", ".join(str(item) for item in value)
    return str(value)
