"""``netlmm show config``'s ini-shaped view (router.app.config_view): the file's own sections
and key names, defaults commented as etc/<role>.ini has them, MACs shown, RADIUS secrets
hidden, reloads reflected and the keys waiting for a restart listed."""

from __future__ import annotations

import json
from pathlib import Path

from router.app.config_view import ConfigView, render

ROOT = Path(__file__).resolve().parents[2]


def _active(text: str) -> list[str]:
    """The ``key = value`` and ``[section]`` lines of an ini text, comments out."""
    out = []
    for line in text.splitlines():
        line = line.split(";")[0].split("#")[0].strip() if not line.startswith("[") else line
        if line and not line.startswith((";", "#")):
            out.append(line)
    return out


def test_the_view_of_an_example_diffs_clean_against_the_file() -> None:
    for role in ("dmpa", "dlmap"):
        text = (ROOT / f"etc/{role}.ini").read_text()
        shown = render(ConfigView(text, role).as_dict(), role)  # type: ignore[arg-type]
        assert _active(shown) == _active(text), role  # same sections, keys and values, in order
        assert ";log_format = text" in shown.splitlines()  # a default, as the example says it
    dmpa = render(ConfigView((ROOT / "etc/dmpa.ini").read_text(), "dmpa").as_dict(), "dmpa")
    assert "mac = 02:00:00:00:0a:01" in dmpa.splitlines()  # a MAC is not a secret
    assert "[peer 2001:db8:100::1]" in dmpa and "v_ba" in dmpa and "ba_v_flag" not in dmpa


def test_radius_secrets_are_hidden_and_reloads_are_shown() -> None:
    text = (ROOT / "etc/dmpa.ini").read_text()
    text += "[radius]\nservers = 203.0.113.5:1812 s3cr3t-shared-16chars\n"
    text += "    [2001:db8::5]:1812 other-s3cr3t\nproxy_secret = hostapd-s3cr3t-16chars\n"
    view = ConfigView(text, "dmpa")
    dumped = json.dumps(view.as_dict())
    assert "s3cr3t" not in dumped and "203.0.113.5:1812 (secret)" in dumped
    assert view.as_dict()["sections"]["radius"]["proxy_secret"] == "(secret)"  # type: ignore[index]
    changed = text.replace("log_level = info", "log_level = debug")
    changed = changed.replace("[dmpa]\n", "[dmpa]\nlifetime = 1200\n", 1)
    changed = changed.replace("[profile carol@example.org]", "[profile dave@example.org]")
    applied = ["node.log_level", "profile carol@example.org", "profile dave@example.org"]
    view.reloaded(changed, applied, ["dmpa.lifetime"])
    shown = view.as_dict()
    sections = shown["sections"]
    assert isinstance(sections, dict)
    assert sections["node"]["log_level"] == "debug"
    assert "lifetime" not in sections["dmpa"]
    assert "profile dave@example.org" in sections and "profile carol@example.org" not in sections
    assert shown["pending_restart"] == {"dmpa.lifetime": "1200"}
    rendered = render(shown, "dmpa").splitlines()
    assert rendered[:2] == [
        "; changed in the file, waiting for a restart (running value below):",
        ";   dmpa.lifetime = 1200",
    ]
    assert ";lifetime = 3600" in rendered
