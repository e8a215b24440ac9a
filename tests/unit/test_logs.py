"""Log lines: key=value text that parses back, JSON lines, the journal's priorities, the events
the runner logs (levels, fields, a rate limit) and peer input that cannot break a line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from router.adapters.store import Store
from router.app import config, logs
from router.app.runner import ActionRunner
from router.app.settings import DLMAPSettings
from router.core.actions import event
from router.wire.dialect import DRAFT
from router.wire.mh import BindingUpdate
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from tests.unit.nodes import DLMAP, DLMAP_INI, DMPA1, NAI, dlmap_node, sealed


def test_key_value_lines_quote_what_would_split_and_parse_back() -> None:
    line = "handover " + logs.kv({"nai": NAI, "why": 'superseded by "x"', "empty": ""})
    assert line == f'handover nai={NAI} why="superseded by \\"x\\"" empty=""'
    assert logs.parse(line) == ("handover", {"nai": NAI, "why": 'superseded by "x"', "empty": ""})


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("netlmm", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_event_and_its_fields() -> None:
    formatter = logs.JsonFormatter()
    structured = json.loads(
        formatter.format(_record("registered nai=%s", NAI, fields={"nai": NAI, "hoa": "x"}))
    )
    assert structured["event"] == "registered"
    assert (structured["level"], structured["logger"]) == ("warning", "netlmm")
    assert (structured["nai"], structured["hoa"]) == (NAI, "x")
    assert structured["time"].endswith("Z")
    parsed = json.loads(formatter.format(_record('reload needs a restart key="dmpa.lifetime"')))
    assert parsed["event"] == "reload needs a restart"
    assert parsed["key"] == "dmpa.lifetime"


def test_on_the_journal_lines_start_with_the_syslog_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert not logs.on_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert logs.on_journal(stream)
        handler = logs.setup("info", "text", stream)
        try:
            logging.getLogger("netlmm").warning("reload refused problem=%s", "x")
            logging.getLogger("netlmm").debug("not shown at info")
            logs.set_level("debug")
            logging.getLogger("netlmm").debug("shown at debug")
        finally:
            logging.getLogger().removeHandler(handler)
            logs.set_level("warning")
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert lines == ["<4>netlmm: reload refused problem=x", "<7>netlmm: shown at debug"]


def test_event_lines_have_levels_fields_and_a_rate_limit(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    counters: Counter[str] = Counter()
    store = Store(tmp_path / "s.sqlite")
    runner = ActionRunner(loop, store, {}, counters)
    seen: list[str] = []
    runner.observers.append(lambda action, now: seen.append(type(action).__name__))
    caplog.set_level(logging.INFO, logger="netlmm")
    try:
        runner.submit([event("registered", nai=NAI, hoa="192.0.2.100")])
        runner.submit([event("pbu_rejected", peer=DMPA1, status=135, reason="bad sequence")])
        runner.submit([event("handover", nai=f"ms{n}") for n in range(30)])  # one loop turn
        runner.flush()
    finally:
        store.close()
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines[0] == (logging.INFO, f"registered nai={NAI} hoa=192.0.2.100")
    assert lines[1] == (
        logging.WARNING,
        f'pbu_rejected peer={DMPA1} status=135 reason="bad sequence"',
    )
    assert caplog.records[1].fields == {"peer": DMPA1, "status": 135, "reason": "bad sequence"}
    assert [m for _, m in lines[2:]] == ["handover nai=ms0"]  # the next 29 within 0.1 s: left out
    assert counters["log.suppressed"] == 29 and counters["event.handover"] == 30
    assert seen == ["Event"] * 32


@pytest.mark.parametrize("nai", ["a\rb@x", "\x1b[2Jroot@x", "a\u2028b@x", "a\x0bb@x", "a\xa0b@x"])
def test_an_nai_from_a_peer_cannot_break_a_log_line(
    nai: str, tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """A PBU's NAI is peer input (UTF-8, any character) and goes into the event's log line.
    kv() quoted only space, quote, '=', newline and tab: a carriage return, an escape sequence
    or a Unicode line separator went into the text line raw (a terminal rewrites the line, a
    log reader splits it) and parse(), kv()'s inverse, cut the value short."""
    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    node = dlmap_node(settings, Store(tmp_path / "lm.sqlite"), loop)
    try:
        caplog.set_level(logging.INFO)
        options = (MobileNodeIdentifier.from_nai(nai), SeedIPv4HomeAddress(0, IPv4Address(0)))
        message = BindingUpdate(1, DRAFT.pbu_flags(), 900, options)
        node.on_mh(sealed(message, DMPA1, DLMAP, node.clock.wall()), DMPA1)
        node.runner.flush()
        [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("regis")]
        assert line.isprintable(), repr(line)
        assert logs.parse(line)[1]["nai"] == nai
    finally:
        node.store.close()


def test_a_value_with_spaces_is_quoted_in_text_and_whole_in_json() -> None:
    """``key=%s`` arguments are quoted by the formatter: the JSON line keeps the whole value
    (it lost everything after the first space: ``radius send failed``, ``reload warning``)."""
    error = OSError(101, "Network is unreachable")
    record = _record("radius_send_failed server=%s error=%s", "[2001:db8::5]:1812", error)
    text = logs.TextFormatter().format(record)
    assert text.endswith(
        'radius_send_failed server=[2001:db8::5]:1812 error="[Errno 101] Network is unreachable"'
    )
    parsed = json.loads(logs.JsonFormatter().format(record))
    assert parsed["event"] == "radius_send_failed"
    assert parsed["error"] == "[Errno 101] Network is unreachable"
    # a value quoted by the caller already is not quoted twice
    again = _record("reload_warning warning=%s", logs.quote("a b"))
    assert logs.TextFormatter().format(again).endswith('reload_warning warning="a b"')


def test_json_values_are_typed_and_never_python_reprs() -> None:
    from router.core.dmpa import State

    fields = {"missed": 3, "waited_s": 2.5, "again": True, "state": State.AUTHENTICATING,
              "links": ("eth1", "eth2"), "hoa": IPv4Address("192.0.2.7"), "none": None}  # fmt: skip
    record = _record("x %s", logs.kv(fields), fields=fields)
    parsed = json.loads(logs.JsonFormatter().format(record))
    assert {k: parsed[k] for k in fields} == {
        "missed": 3, "waited_s": 2.5, "again": True, "state": "authenticating",
        "links": "eth1,eth2", "hoa": "192.0.2.7", "none": None,
    }  # fmt: skip
    assert "State." not in parsed["msg"] and "(" not in parsed["msg"]
    assert "again=true" in parsed["msg"]
    # parsed from the message (no fields): numbers are numbers, the rest strings
    plain = json.loads(logs.JsonFormatter().format(_record("state_writes_resumed rows=%d", 12)))
    assert plain["rows"] == 12


def test_text_timestamps_carry_their_zone() -> None:
    import re

    line = logs.TextFormatter().format(_record("stopping"))
    stamp = line.split(" ", 1)[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", stamp), line
    parsed = json.loads(logs.JsonFormatter().format(_record("stopping")))
    assert parsed["time"].endswith("Z")


def test_drops_name_the_access_interface_and_quote_their_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from router.services.access import AccessCounter
    from router.services.common import Drops

    drops = Drops()
    drops.link_names = ("eth1", "wlan0")
    caplog.set_level(logging.INFO)
    drops.expected(AccessCounter.IPV4_UNREGISTERED, 0.0, link=1, src="02:00:00:00:0a:01")
    drops.drop(AccessCounter.IPV4_MALFORMED, 0.0, link=0, error="bad header length")
    first, second = caplog.records
    assert first.levelno == logging.INFO  # an MS that is still authenticating: normal
    line = logs.TextFormatter().format(first)
    assert "link=wlan0 src=02:00:00:00:0a:01" in line
    assert second.levelno == logging.WARNING
    assert 'link=eth1 error="bad header length"' in logs.TextFormatter().format(second)
