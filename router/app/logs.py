"""Log lines on stderr: one line per event, ``event key=value ...``, text or JSON.

Rules:

1. A message is a short stable event name in snake_case followed by ``key=value`` context
   (:func:`kv` quotes a value with a space, a quote, a character that is not printable or
   nothing in it, JSON style, so a line splits unambiguously). A ``%s`` argument right after
   ``key=`` is quoted the same way when the line is formatted, so no call can lose the rest of
   a value; enums print their value and tuples their items comma-separated, never a Python
   repr.
2. Text format: ``TIME LEVEL LOGGER: message``, TIME in ISO 8601 with the zone offset
   (``2026-12-06T23:44:23.653+00:00``); under systemd (stderr is the journal, which
   ``JOURNAL_STREAM`` names) the time is left to journald and the line starts with the syslog
   priority (``<3>`` error ... ``<7>`` debug), which journald turns into the entry's priority.
3. JSON format: one object a line: ``time`` (RFC 3339, UTC), ``level``, ``logger``, ``event``
   (the message up to its first ``key=value``), ``msg`` (the whole message) and the context,
   from the record's ``fields`` (``extra={"fields": {...}}``) or else parsed from the message;
   numbers and booleans are JSON numbers and booleans (parsed values: a whole or decimal number
   is a number).
4. Anything a peer can trigger is rate-limited where it is logged (the node logs each event kind
   at most ten times a second and counts what it leaves out as ``log.suppressed``).

The level is set at start and again on SIGHUP (:func:`set_level`).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

FORMATS = ("text", "json")

#: syslog priorities (RFC 5424) of the logging levels, for journald's ``<N>`` prefix.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
_PAIR = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_NOISY = ("pyroute2", "asyncio")  # their debug output is per netlink message
_HANDLER_NAME = "netlmm-stderr"


def plain(value: object) -> object:
    """A value as a log line shows it: an enum's value, a tuple's or list's items joined with
    commas, None/bool/int/float as they are, anything else its ``str``."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, tuple | list | set | frozenset):
        return ",".join(str(plain(item)) for item in value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def typed(value: object) -> Any:
    """A value for a JSON line: JSON's own types kept (booleans, numbers, null)."""
    shown = plain(value)
    return shown


def kv(fields: Mapping[str, object]) -> str:
    """``key=value`` pairs, a value quoted (JSON string syntax) if it has a space or quote."""
    return " ".join(f"{key}={quote(value)}" for key, value in fields.items())


def quote(value: object) -> str:
    """One value for a ``key=value`` pair: JSON-quoted if it has a space, quote or ``=``, or
    any character that is not printable (control characters, line and other separators: peer
    input such as an NAI must not break or rewrite a line)."""
    shown = plain(value)
    text = str(shown).lower() if isinstance(shown, bool) else str(shown)
    if not text or not text.isprintable() or any(c in text for c in ' "='):
        return json.dumps(text)
    return text


def parse(message: str) -> tuple[str, dict[str, str]]:
    """``event k=v k="v w"`` -> (``event``, ``{k: v}``): the inverse of :func:`kv`."""
    first = _PAIR.search(message)
    head = message if first is None else message[: first.start()]
    fields: dict[str, str] = {}
    for match in _PAIR.finditer(message):
        raw = match.group(2)
        if raw.startswith('"'):
            with contextlib.suppress(json.JSONDecodeError):
                raw = str(json.loads(raw))
        fields[match.group(1)] = raw
    return head.strip().rstrip(":"), fields


_DIRECTIVE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[a-zA-Z%]")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d{0,17})(?:\.\d+)?")


def _already_quoted(text: str) -> bool:
    if len(text) < 2 or not text.startswith('"') or not text.endswith('"'):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def message(record: logging.LogRecord) -> str:
    """The record's message with every ``key=%s`` argument quoted (rule 1)."""
    args = record.args
    if not args or not isinstance(args, tuple) or not isinstance(record.msg, str):
        return record.getMessage()
    fmt, values, index = record.msg, list(args), 0
    for match in _DIRECTIVE.finditer(fmt):
        if match.group(0) == "%%":
            continue
        if index < len(values):
            value = values[index]
            if match.group(0) == "%s" and fmt[: match.start()].endswith("="):
                text = str(value)
                values[index] = text if _already_quoted(text) else quote(value)
            elif match.group(0) == "%s":
                shown = plain(value)
                values[index] = str(shown).lower() if isinstance(shown, bool) else shown
        index += 1
    try:
        return fmt % tuple(values)
    except (TypeError, ValueError):
        return record.getMessage()


def _json_value(text: str) -> Any:
    if _NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def on_journal(stream: IO[str]) -> bool:
    """True when ``stream`` is the journal's stream (systemd sets ``JOURNAL_STREAM=dev:ino``)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


class TextFormatter(logging.Formatter):
    def __init__(self, journal: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.journal = journal

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        local = time.localtime(record.created)
        offset = time.strftime("%z", local)
        zone = f"{offset[:3]}:{offset[3:]}" if len(offset) == 5 else "+00:00"
        return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{int(record.msecs):03d}{zone}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = message(record)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        if not self.journal:
            return super().format(record)
        line = f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {message(record)}"
        if record.exc_info:
            # one journal entry per line: the traceback's lines joined, not lost
            line += " exception=" + json.dumps(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = message(record)
        event, parsed = parse(text)
        fields: Mapping[str, Any] | None = getattr(record, "fields", None)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
            "msg": text,
        }
        if fields is not None:
            context = {k: typed(v) for k, v in fields.items()}
        else:
            context = {k: _json_value(v) for k, v in parsed.items()}
        for key, value in context.items():
            out.setdefault(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup(level: str, fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Send the root logger to ``stream`` (stderr) in ``fmt``, at ``level``; idempotent."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: one of {', '.join(FORMATS)}")
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(on_journal(out)))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    """The root logger's level (``debug`` ... ``error``); the chatty libraries stay at info+."""
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"log level {level!r}")
    logging.getLogger().setLevel(value)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(logging.INFO, value))
