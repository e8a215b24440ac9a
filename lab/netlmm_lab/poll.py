"""Waiting for something in the lab: poll until a deadline, never a fixed sleep.

:func:`wait_until` is the one polling loop of the lab, its campaigns and the tests: it calls a
probe until its value is ready (truthy, or as a ``ready`` predicate judges it), bounded both in
time (``timeout``) and in count (at most ``timeout / interval + 1`` calls, ``tries`` if given),
and on failure raises :class:`TimedOut` saying what was awaited and the last value seen.
:func:`read_line` waits, the same way, for one line from a child process (a tool's ``ready``).
"""

from __future__ import annotations

import math
import select
import subprocess
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar, overload

from netlmm_lab.errors import LabError

T = TypeVar("T")

#: How much of the last value a timeout message shows.
SHOWN = 300


class TimedOut(LabError):
    """A :func:`wait_until` deadline passed: ``what`` was awaited, ``last`` was seen last."""

    def __init__(self, what: str, last: object, seconds: float, tries: int) -> None:
        shown = repr(last)
        if len(shown) > SHOWN:
            shown = shown[:SHOWN] + "..."
        super().__init__(
            f"timed out after {seconds:.1f}s ({tries} tries) waiting for {what}; last seen: {shown}"
        )
        self.what, self.last, self.seconds, self.tries = what, last, seconds, tries


@overload
def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = ...,
    tries: int | None = ...,
) -> T: ...


@overload
def wait_until(
    probe: Callable[[], T],
    timeout: float,
    what: str,
    *,
    ready: Callable[[T], object],
    interval: float = ...,
    tries: int | None = ...,
) -> T: ...


def wait_until(
    probe: Callable[[], Any],
    timeout: float,
    what: str,
    *,
    ready: Callable[[Any], object] = bool,
    interval: float = 0.05,
    tries: int | None = None,
) -> Any:
    """Call ``probe`` until its value is ready (truthy, or ``ready(value)`` holds) and return
    that value.

    At most ``tries`` calls (default: one every ``interval`` seconds for ``timeout`` seconds,
    plus one) and at most ``timeout`` seconds; then :class:`TimedOut`, with the last value
    (so a probe that returns what it saw, with ``ready`` judging it, explains a failure). The
    probe may raise to give up early (a process it watches has died, say): that exception goes
    to the caller.
    """
    if timeout < 0 or interval <= 0:
        raise ValueError("timeout must be >= 0 and interval > 0")
    bound = max(1, tries if tries is not None else math.ceil(timeout / interval) + 1)
    start = time.monotonic()
    deadline = start + timeout
    for attempt in range(1, bound + 1):
        value = probe()
        if ready(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0 or attempt >= bound:
            raise TimedOut(what, value, time.monotonic() - start, attempt)
        time.sleep(min(interval, left))
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def read_line(proc: subprocess.Popen[Any], timeout: float, what: str) -> str:
    """The next stdout line of ``proc`` (text mode), stripped, within ``timeout`` seconds; a
    :class:`LabError` with the tail of its stderr if it exits or says nothing in time."""
    stream: IO[str] | None = proc.stdout
    if stream is None:
        raise LabError(f"{what}: started without a stdout pipe")
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            line = stream.readline()
            if line:
                return line.strip()
            break  # end of file: the process closed its stdout (it has exited)
    err = ""
    if proc.poll() is not None and proc.stderr is not None:
        err = proc.stderr.read()[-500:]
    raise LabError(f"{what}: no line within {timeout}s (exit {proc.poll()}) {err}".strip())
