"""The documentation of each key in ``etc/dmpa.ini`` and ``etc/dlmap.ini``, from the schema.

An example file is written by hand (its header, the section introductions, example values,
several peers and profiles), except for one thing: the comment block directly above the first
``key = value`` (or commented-out ``;key = value``) line of each key is rendered from the
schema entry, its help followed by ``Default: ...`` or ``(required)``. :func:`check` lists what
is not current (a key of the role missing, a block that is not the rendered one, a
commented-out example that is not the default, a key the role does not read); :func:`refresh`
rewrites the blocks. After changing a help text or a default in the schema::

    .venv/bin/python -m router.app.config.docs etc/dmpa.ini etc/dlmap.ini

Layout rules the functions rely on: a comment line is ``;`` alone or ``; `` and text; a
section's introduction is separated from its first key's block by a blank line; the role is
the file's ``role = ...`` line.
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from router.app.config.parsers import Invalid
from router.app.config.schema import ROLES, SECTION_KEYS, Key, role_keys
from router.app.settings import Role

WIDTH = 96
_HEADER = re.compile(r"^;?\[(\w+)[ \]]")
_KEY = re.compile(r"^(;?)(\w+) = (.*)$")
_COMMENT = re.compile(r"^;( \S.*)?$")
_ROLE = re.compile(r"^role = (\w+)\s*$", re.M)
_KEEP = "\x00"


def comment(key: Key[Any], role: Role) -> list[str]:
    """The comment lines documenting ``key`` in ``etc/<role>.ini``."""
    default = key.default_text(role)
    help_text = key.help_for(role)
    # "Default: VALUE" stays on one line: the space in it is not one textwrap breaks at.
    tail = default if key.required else f"Default:{_KEEP}{default}"
    lines = textwrap.wrap(
        f"{help_text} {tail}." if key.required else f"{help_text}. {tail}.",
        width=WIDTH,
        initial_indent="; ",
        subsequent_indent="; ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [line.replace(_KEEP, " ") for line in lines]


@dataclass(frozen=True, slots=True)
class _Line:
    """The first ``key = value`` line of a key in a section of one kind."""

    index: int
    kind: str
    name: str
    commented: bool
    value: str


def _key_lines(lines: list[str]) -> list[_Line]:
    found: list[_Line] = []
    seen: set[tuple[str, str]] = set()
    kind = ""
    for index, line in enumerate(lines):
        header = _HEADER.match(line)
        if header:
            kind = header.group(1)
            continue
        match = _KEY.match(line)
        if match and (kind, match.group(2)) not in seen:
            seen.add((kind, match.group(2)))
            found.append(_Line(index, kind, match.group(2), bool(match.group(1)), match.group(3)))
    return found


def _block(lines: list[str], index: int) -> tuple[int, list[str]]:
    """The comment lines right above line ``index``: (first index, lines)."""
    first = index
    while first > 0 and _COMMENT.match(lines[first - 1]):
        first -= 1
    return first, lines[first:index]


def _role(text: str) -> Role | None:
    match = _ROLE.search(text)
    if match is None or match.group(1) not in ROLES:
        return None
    return cast("Role", match.group(1))


def _keys(role: Role) -> dict[tuple[str, str], Key[Any]]:
    return {(key.section, key.name): key for key in role_keys(role)}


def check(text: str) -> list[str]:
    """What is not current in an example file, one line each (empty: current)."""
    role = _role(text)
    if role is None:
        return ["node.role: no 'role = dmpa' or 'role = dlmap' line"]
    lines = text.splitlines()
    keys = _keys(role)
    problems: list[str] = []
    documented: set[tuple[str, str]] = set()
    for line in _key_lines(lines):
        where = f"{line.kind}.{line.name}"
        key = keys.get((line.kind, line.name))
        if key is None:
            if line.name in (k.name for k in SECTION_KEYS.get(line.kind, ())):
                problems.append(f"{where}: a {role} does not read it")
            else:
                problems.append(f"{where}: not a key of the schema")
            continue
        documented.add((line.kind, line.name))
        if _block(lines, line.index)[1] != comment(key, role):
            problems.append(f"{where}: its comment is not the schema's (refresh the file)")
        if line.commented and not _shows_default(key, role, line.value):
            problems.append(
                f"{where}: the commented-out example {line.value!r} is not the default "
                f"({key.default_text(role)})"
            )
    for section, name in keys:
        if (section, name) not in documented:
            problems.append(f"{section}.{name}: not in the file")
    return problems


def _shows_default(key: Key[Any], role: Role, value: str) -> bool:
    """A commented-out example stands for the default, when the default is a value."""
    if key.required or key.shown is not None or key.default_text(role).startswith("none"):
        return True  # derived or absent by default: the example shows a possible value
    try:
        return bool(key.parse(value) == key.default)
    except Invalid:
        return False


def refresh(text: str) -> str:
    """``text`` with the comment block of every documented key rendered from the schema."""
    role = _role(text)
    if role is None:
        return text
    lines = text.splitlines()
    keys = _keys(role)
    for line in reversed(_key_lines(lines)):
        key = keys.get((line.kind, line.name))
        if key is not None:
            first, _ = _block(lines, line.index)
            lines[first : line.index] = comment(key, role)
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Refresh the files named, then list what still needs a hand; 1 if anything does."""
    status = 0
    for name in argv:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        new = refresh(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"{path}: refreshed")
        for problem in check(new):
            print(f"{path}: {problem}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
