"""The action runner and the store: rows written before the replies leave, a failed write kept
in the backlog and retried, written or counted as lost at stop, and a batch the store cannot
hold dropped at the boundary while the node goes on."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from router.adapters.store import Store
from router.app import runner as runner_module
from router.app.runner import ActionRunner
from router.core.actions import (
    Bind,
    BindPrefix,
    Persist,
    SendMH,
    SendTunnel,
    Unbind,
    event,
)
from router.wire.mh import BindingAck
from tests.unit.nodes import FlakyStore


def _turn(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def _rows(path: Path) -> dict[str, dict[str, object]]:
    store = Store(path)
    try:
        return store.load().get("binding", {})
    finally:
        store.close()


def _persists(keys: Iterable[str]) -> list[Persist]:
    return [Persist("binding", key, {"key": key}) for key in keys]


def test_stop_writes_the_backlog_when_the_disk_is_back_before_the_retry(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """A write fails, the disk recovers, the node is stopped before the retry timer fires: the
    rows must reach the disk at stop, not be lost with the store."""
    path = tmp_path / "state.sqlite"
    store = FlakyStore(path)
    counters: Counter[str] = Counter()
    runner = ActionRunner(loop, store, {}, counters)
    store.failing = True
    runner.submit(_persists(["a", "b"]))
    _turn(loop)
    assert counters["store.write_error"] == 1 and store.backlog == 2
    store.failing = False  # an operator freed space; the retry is still 0.5 s away
    runner.submit(_persists(["c"]))
    runner.flush()  # what DMPANode.stop / DLMAPNode.stop do
    runner.close()
    store.close()
    assert sorted(_rows(path)) == ["a", "b", "c"]
    assert counters["store.recovered"] == 1 and counters["store.backlog"] == 0


def test_stop_with_the_disk_still_failing_says_how_many_rows_are_lost(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(tmp_path / "state.sqlite")
    counters: Counter[str] = Counter()
    runner = ActionRunner(loop, store, {}, counters)
    store.failing = True
    runner.submit(_persists(["a", "b", "c"]))
    _turn(loop)
    caplog.set_level(logging.ERROR)
    runner.close()
    store.close()
    assert counters["store.lost"] == 3
    assert "state_rows_lost rows=3" in caplog.text


def test_a_record_json_cannot_hold_drops_its_batch_and_the_node_goes_on(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """A Persist whose record is not JSON (a bug of ours) raised out of flush, and stayed in
    the write backlog: every later flush raised again before carrying out any action, so the
    node never sent another message. Its batch is dropped at the boundary, the rest goes on."""
    path = tmp_path / "state.sqlite"
    store = Store(path)
    sent: list[object] = []
    counters: Counter[str] = Counter()
    runner = ActionRunner(loop, store, {SendMH: sent.append}, counters)
    peer = IPv6Address("2001:db8::1")
    runner.submit(
        [
            Persist("binding", "bad", {"hoa": IPv4Address("192.0.2.1")}),
            *_persists(["a"]),
            SendMH(peer, "first"),  # type: ignore[arg-type]
        ]
    )
    runner.flush()
    runner.submit([*_persists(["b"]), SendMH(peer, "second")])  # type: ignore[arg-type]
    runner.flush()
    assert [action.message for action in sent] == ["first", "second"]  # type: ignore[attr-defined]
    assert counters["internal_error.store"] == 1 and counters["store.write_error"] == 0
    assert store.backlog == 0
    store.close()
    assert sorted(_rows(path)) == ["b"]  # a batch is written whole or not at all


HOA1, HOA2 = IPv4Address("192.0.2.10"), IPv4Address("192.0.2.11")
DMPA1, DMPA2 = IPv6Address("2001:db8:1::1"), IPv6Address("2001:db8:3::1")


def test_trimming_held_actions_keeps_the_rows_and_the_last_datapath_change_of_each_address(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database down, too many actions held behind the commit being retried: the rows go
    to the backlog, the last Bind/Unbind of each address (and of each prefix) stays queued in
    order, PBAs, packets and events are dropped and counted. A dropped Bind would leave a
    committed binding without its route (the repeated PBU's answer does not bind again)."""
    monkeypatch.setattr(runner_module, "HELD_MAX", 4)
    store = Store(tmp_path / "state.sqlite")
    counters: Counter[str] = Counter()
    runner = ActionRunner(loop, store, {}, counters)
    prefix = IPv6Network("2001:db8:ab::/64")
    reply = SendMH(DMPA1, BindingAck(0, 0, 1, 225))
    held = [
        Persist("binding", "a", {"key": "a"}),
        Bind(HOA1, DMPA1),
        reply,
        event("registered", nai="a"),
        Unbind(HOA2),
        Bind(HOA1, DMPA2),  # a handover: this one is the state to reach
        Persist("binding", "b", {"key": "b"}),
        BindPrefix(prefix, DMPA1),
        SendTunnel(DMPA1, b"\x45"),
    ]
    runner._queue = list(held)
    runner._drop_held_replies()
    assert runner._queue == [Unbind(HOA2), Bind(HOA1, DMPA2), BindPrefix(prefix, DMPA1)]
    assert store.backlog == 2 and counters["store.rows"] == 2
    assert counters["store.held_dropped"] == 4  # the PBA, the event, the packet, the old Bind
    store.retry()
    store.close()
    assert sorted(_rows(tmp_path / "state.sqlite")) == ["a", "b"]


def test_trimming_held_actions_with_a_record_json_cannot_hold_is_caught(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "HELD_MAX", 1)
    store = Store(tmp_path / "state.sqlite")
    counters: Counter[str] = Counter()
    runner = ActionRunner(loop, store, {}, counters)
    runner._queue = [Persist("binding", "a", {"bad": object()}), Bind(HOA1, DMPA1)]
    runner._drop_held_replies()  # does not raise: the batch is refused at the boundary
    assert counters["internal_error.store"] == 1 and store.backlog == 0
    assert runner._queue == [Bind(HOA1, DMPA1)]
    store.close()
