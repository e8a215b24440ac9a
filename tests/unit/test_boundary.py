"""The dispatch boundary (router.app.runner.Boundary): a handler's exception is counted as
``internal_error``, logged, and the process goes on with the next input."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from router.app.runner import INTERNAL_ERROR, ActionRunner, Boundary, Clock, CoreTimer


class Boom:
    pass


class Fine:
    pass


def test_wrap_counts_and_swallows(caplog: pytest.LogCaptureFixture) -> None:
    counters: Counter[str] = Counter()
    boundary = Boundary(counters, clock=lambda: 0.0)
    seen: list[int] = []

    def handler(x: int) -> None:
        seen.append(x)
        if x % 2:
            raise KeyError(x)

    guarded = boundary.wrap("access", handler)
    for x in range(5):
        guarded(x)
    assert seen == [0, 1, 2, 3, 4]
    assert counters[INTERNAL_ERROR] == 2
    assert counters[f"{INTERNAL_ERROR}.access"] == 2
    # rate-limited: one line a second per place (the clock does not move here)
    assert sum("internal_error where=access" in r.getMessage() for r in caplog.records) == 1


def test_action_runner_keeps_going_after_a_failing_handler() -> None:
    loop = asyncio.new_event_loop()
    try:
        counters: Counter[str] = Counter()
        done: list[str] = []

        def boom(action: Any) -> None:
            raise ValueError("a bug")

        runner = ActionRunner(
            loop,
            None,
            {Boom: boom, Fine: lambda a: done.append("fine")},
            counters,  # type: ignore[arg-type]
        )
        runner.submit([Boom(), Fine(), Boom(), Fine()])
        runner.flush()
        assert done == ["fine", "fine"]
        assert counters[INTERNAL_ERROR] == 2
        assert counters[f"{INTERNAL_ERROR}.action.Boom"] == 2
    finally:
        loop.close()


def test_core_timer_failure_is_counted_and_the_timer_rearms() -> None:
    loop = asyncio.new_event_loop()
    try:
        counters: Counter[str] = Counter()
        boundary = Boundary(counters)
        deadlines = [0.0]

        def fire(now: float, wall: float) -> list[object]:
            deadlines.clear()
            raise RuntimeError("a bug")

        timer = CoreTimer(
            loop,
            Clock(),
            lambda: deadlines[0] if deadlines else None,
            fire,
            lambda actions: None,
            boundary,
        )
        timer.rearm()  # due at once: fires on the loop's next turns
        for _ in range(100):  # bounded: until it has fired
            loop.run_until_complete(asyncio.sleep(0))
            if not deadlines:
                break
        assert counters[INTERNAL_ERROR] == 1
        assert counters[f"{INTERNAL_ERROR}.timer"] == 1
        timer.cancel()
    finally:
        loop.close()
