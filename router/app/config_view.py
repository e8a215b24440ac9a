"""``netlmm show config``: the settings a node runs with, shaped like its ini file.

Each section of the file in its order, each key by its ini name (``v_ba``, ``tunnel_mtu``) in
the file's order, its value as the file wrote it; then the keys the file leaves out, commented
out with their default as ``etc/<role>.ini`` does (``;log_format = text``), so the output diffs
against the file. Only secrets are hidden: the RADIUS shared secrets (``servers``,
``proxy_secret``); MAC addresses, paths and SPIs are shown (the RFC 4285 keys live in
``node.key_file``, never in the ini).

The view is the file read at start; a reload replaces the keys it applied (log level and
format, DMPA profiles) and lists the ones that wait for a restart (``pending_restart``) with the
file's new value; a running value that differs from the file by design (the tunnel MTU cut to
the route MTU at start) carries a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from router.app.config.loader import raw_sections
from router.app.config.schema import SECTION_KEYS, Key
from router.app.settings import Role

SECRET = "(secret)"


def _kind(section: str) -> str:
    return section.partition(" ")[0]


def _hide(section: str, key: str, value: str) -> str:
    if _kind(section) == "radius" and key == "proxy_secret":  # hostapd's, for the 802.1X proxy
        return SECRET
    if _kind(section) == "profile" and key == "password":  # a PPP MS's secret
        return SECRET
    if _kind(section) == "radius" and key == "servers":
        lines = []
        for line in value.splitlines():
            parts = line.split()
            lines.append(" ".join([*parts[:1], SECRET] if len(parts) > 1 else parts))
        return "\n".join(lines)
    return value


class ConfigView:
    def __init__(self, text: str, role: Role) -> None:
        self.role = role
        self.sections = raw_sections(text)
        self.pending: dict[str, str] = {}
        self.notes: dict[str, str] = {}

    def reloaded(self, text: str, applied: Iterable[str], restart: Iterable[str]) -> None:
        """After an accepted reload of ``text``: the applied keys take the file's values, the
        others that changed wait for a restart."""
        new = raw_sections(text)
        for name in applied:
            if name.startswith("profile "):  # a whole section, added, changed or removed
                if name in new:
                    self.sections[name] = dict(new[name])
                else:
                    self.sections.pop(name, None)
                continue
            section, _, key = name.rpartition(".")
            value = new.get(section, {}).get(key)
            target = self.sections.setdefault(section, {})
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        self.pending = {}
        for name in restart:
            section, _, key = name.rpartition(".")
            if name in new:
                self.pending[name] = "(section changed)"
            elif section:
                self.pending[name] = new.get(section, {}).get(key, "(removed)")
            else:
                self.pending[name] = "(changed)"

    def keys(self, section: str) -> tuple[Key[object], ...]:
        return tuple(k for k in SECTION_KEYS.get(_kind(section), ()) if self.role in k.roles)

    def as_dict(self) -> dict[str, object]:
        sections: dict[str, dict[str, str]] = {}
        for name, values in self.sections.items():
            sections[name] = {k: _hide(name, k, v) for k, v in values.items()}
        return {"sections": sections, "pending_restart": self.pending, "notes": self.notes}


def render(view: Mapping[str, object], role: Role) -> str:
    """The ini text of :meth:`ConfigView.as_dict` (``netlmm show config`` without ``--json``)."""
    sections = view.get("sections")
    assert isinstance(sections, dict)
    notes = view.get("notes") or {}
    pending = view.get("pending_restart") or {}
    assert isinstance(notes, dict) and isinstance(pending, dict)
    out: list[str] = []
    if pending:
        out.append("; changed in the file, waiting for a restart (running value below):")
        for name, value in pending.items():
            out.append(f";   {name} = {value}")
    for name, values in sections.items():
        if out:
            out.append("")
        out.append(f"[{name}]")
        known = [k for k in SECTION_KEYS.get(_kind(name), ()) if role in k.roles]
        for key_name, raw in values.items():  # the file's keys in its order
            out.append(f"{key_name} = {raw.replace(chr(10), chr(10) + '    ')}")
            if f"{name}.{key_name}" in notes:
                out.append(f"; {notes[f'{name}.{key_name}']}")
        for key in known:  # then the defaults it leaves out, commented as the examples do
            if key.name not in values and not key.required:
                out.append(f";{key.name} = {key.default_text(role)}")
    return "\n".join(out)
