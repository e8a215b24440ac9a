"""Bugs found reviewing 19a3f6a..0bbd2fc, where features built separately meet: the store
retry and the node's stop, SIGHUP's reload and the [limits] section, ... One test per bug,
written before its fix."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from router.adapters.store import Store, StoreWriteError
from router.app.runner import ActionRunner
from router.core.actions import Persist


class FlakyStore(Store):
    """A real store whose writes fail while ``failing`` is set (a full or read-only disk)."""

    failing = False

    def retry(self) -> int:
        if self.failing and self.backlog:
            raise StoreWriteError(f"{self.path}: write failed (SQLITE_FULL: test)")
        return super().retry()


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = asyncio.new_event_loop()
    yield made
    made.close()


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


def _dmpa_node(settings: Any, store: Store, loop: asyncio.AbstractEventLoop) -> Any:
    """A DMPA node in memory (no devices, no sockets), on the fake clock of test_operations."""
    from router.adapters.aaa import AAA, AAAConfig
    from router.app.dmpa_node import DMPANode, DMPAPorts
    from tests.unit.test_operations import FakeClock

    ports = DMPAPorts(lambda data, dst: None, None, -1, -1)
    aaa = AAA(AAAConfig(profiles=settings.profiles))
    return DMPANode(settings, ports, store, aaa, loop, FakeClock(), fastpath="reference")


def _dlmap_node(
    settings: Any,
    store: Store,
    loop: asyncio.AbstractEventLoop,
    send: Callable[[bytes, Any], None] = lambda data, dst: None,
    fds: tuple[int, int] = (-1, -1),
) -> Any:
    """A DLMAP node in memory: MH sent to ``send``, ``fds`` its tunnel and TUN readers."""
    from router.app.dlmap_node import DLMAPNode, DLMAPPorts
    from tests.unit.test_operations import FakeClock

    ports = DLMAPPorts(send, None, fds[0], -1, fds[1])
    return DLMAPNode(settings, ports, store, loop, FakeClock(), fastpath="reference")


# --- store retry vs stop ----------------------------------------------------------------------


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
    assert "state rows lost at stop rows=3" in caplog.text


# --- SIGHUP reload vs [limits] ----------------------------------------------------------------


def test_reload_names_a_changed_limit_by_its_ini_key(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """A changed [limits] key needs a restart: the log line must name it as the ini file does
    (limits.arp_rate), not as a settings field (dmpa.limits) no operator can find."""
    from router.app import config
    from router.app.run import flatten, reload
    from router.app.settings import DMPASettings
    from tests.unit.test_operations import DMPA_INI

    path = tmp_path / "m1.ini"
    path.write_text(DMPA_INI + "[limits]\narp_rate = 20\n")
    settings, _ = config.load(path)
    assert isinstance(settings, DMPASettings)
    node = _dmpa_node(settings, Store(tmp_path / "m1.sqlite"), loop)
    try:
        caplog.set_level(logging.INFO)
        path.write_text(DMPA_INI + "[limits]\narp_rate = 5\ntable_size = 100\n")
        assert reload(node, path) == []
        restart = [r.getMessage() for r in caplog.records if "needs a restart" in r.getMessage()]
        assert restart == [
            "reload needs a restart key=limits.arp_rate",
            "reload needs a restart key=limits.table_size",
        ]
        view = flatten(settings)
        assert view["limits.arp_burst"] == 50 and view["limits.new_mac_rate"] == 20.0
        assert "limits.pbu_new_nai_rate" not in view  # a DLMAP's limit: no key of a DMPA
        assert "dmpa.limits" not in view
    finally:
        node.store.close()


# --- metrics of the new counters --------------------------------------------------------------


def test_levels_that_go_down_are_gauges_not_counters(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """store.backlog and limit.<name>.table are sizes that shrink again: exported in the
    counter family netlmm_internal_events_total, every drop reads as a counter reset to
    Prometheus (rate() and increase() go wrong). They are gauges of their own."""
    from ipaddress import IPv4Address

    from router.app import config
    from router.app.metrics import registry_for
    from router.app.settings import DLMAPSettings
    from router.wire.dialect import DRAFT
    from router.wire.mh import BindingUpdate
    from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
    from tests.unit.test_operations import DLMAP_INI, DMPA1, scrape, value

    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    store = FlakyStore(tmp_path / "lm.sqlite")
    node = _dlmap_node(settings, store, loop)
    try:
        registry, _ = registry_for(node, process=False)
        store.failing = True  # the binding's rows wait in the backlog
        options = (
            MobileNodeIdentifier.from_nai("alice@example.org"),
            SeedIPv4HomeAddress(0, IPv4Address("0.0.0.0")),
        )
        node.on_mh(BindingUpdate(1, DRAFT.pbu_flags(), 900, options).encode(), DMPA1)
        node.runner.flush()
        assert node.counters["store.backlog"] > 0
        samples = scrape(registry)
        internal = {
            dict(labels)["name"]
            for name, labels in samples
            if name == "netlmm_internal_events_total"
        }
        assert "store.backlog" not in internal
        assert "limit.pbu_new_nai.table" not in internal
        assert "limit.pbu_new_nai.allowed" in internal  # the real counters stay
        assert value(samples, "netlmm_store_backlog_rows") == node.counters["store.backlog"]
        assert value(samples, "netlmm_limit_table_sources", limit="pbu_new_nai") == 1
    finally:
        store.close()


# --- store retry vs the dispatch boundary -----------------------------------------------------


def test_a_record_json_cannot_hold_drops_its_batch_and_the_node_goes_on(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """A Persist whose record is not JSON (a bug of ours) raised out of flush, and stayed in
    the write backlog: every later flush raised again before carrying out any action, so the
    node never sent another message. Its batch is dropped at the boundary, the rest goes on."""
    from ipaddress import IPv4Address, IPv6Address

    from router.core.actions import SendMH

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


# --- log lines vs peer input ------------------------------------------------------------------


@pytest.mark.parametrize("nai", ["a\rb@x", "\x1b[2Jroot@x", "a\u2028b@x", "a\x0bb@x", "a\xa0b@x"])
def test_an_nai_from_a_peer_cannot_break_a_log_line(
    nai: str, tmp_path: Path, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    """A PBU's NAI is peer input (UTF-8, any character) and goes into the event's log line.
    kv() quoted only space, quote, '=', newline and tab: a carriage return, an escape sequence
    or a Unicode line separator went into the text line raw (a terminal rewrites the line, a
    log reader splits it) and parse(), kv()'s inverse, cut the value short."""
    from ipaddress import IPv4Address

    from router.app import config, logs
    from router.app.settings import DLMAPSettings
    from router.wire.dialect import DRAFT
    from router.wire.mh import BindingUpdate
    from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
    from tests.unit.test_operations import DLMAP_INI, DMPA1

    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    node = _dlmap_node(settings, Store(tmp_path / "lm.sqlite"), loop)
    try:
        caplog.set_level(logging.INFO)
        options = (MobileNodeIdentifier.from_nai(nai), SeedIPv4HomeAddress(0, IPv4Address(0)))
        node.on_mh(BindingUpdate(1, DRAFT.pbu_flags(), 900, options).encode(), DMPA1)
        node.runner.flush()
        [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("regis")]
        assert line.isprintable(), repr(line)
        assert logs.parse(line)[1]["nai"] == nai
    finally:
        node.store.close()


# --- store retry vs the RFC 5847 restart counter ----------------------------------------------


def _dlmap_start_and_stop(path: Path, loop: asyncio.AbstractEventLoop, failing: bool) -> int:
    """Start a DLMAP on the database at ``path`` (its writes failing or not), stop it, and
    return the Restart Counter it answered heartbeats with."""
    import os

    from router.app import config
    from router.app.settings import DLMAPSettings
    from tests.unit.test_operations import DLMAP_INI

    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    store = FlakyStore(path)
    store.failing = failing
    fds = [*os.pipe(), *os.pipe()]
    node = _dlmap_node(settings, store, loop, fds=(fds[0], fds[2]))
    try:
        node.start()
        counter = node.core.heartbeat.restart_counter
        node.stop()
    finally:
        store.close()
        for fd in fds:
            os.close(fd)
    return counter


def test_a_restart_counter_that_could_not_be_saved_is_not_used_again(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """The counter is one more than the stored one, and saved at start. With the state writes
    failing (the node runs on from memory), the next start read the same stored value and
    answered with the same counter: the DMPAs saw no restart and did not register their MSs
    again, though this DLMAP had lost every binding made since the disk filled."""
    path = tmp_path / "lm.sqlite"
    seed = Store(path)
    seed.apply([Persist("meta", "restart_counter", {"key": "restart_counter", "value": 41})])
    seed.close()
    first = _dlmap_start_and_stop(path, loop, failing=True)  # counter never reaches the disk
    second = _dlmap_start_and_stop(path, loop, failing=False)
    assert second == 42  # one more than the stored one, as long as it can be saved
    assert first != second


# --- the metrics endpoint vs idle connections -------------------------------------------------


def test_idle_metrics_connections_are_capped(loop: asyncio.AbstractEventLoop) -> None:
    """Each connection to node.metrics was kept (an fd and a task) until its 5 s timeout, with
    no limit: anyone reaching the port could take every fd of the node (then its RADIUS
    requests, control socket and restarts of devices fail). Past the cap a connection is closed
    at once; the ones held still time out as before."""
    from prometheus_client import CollectorRegistry

    from router.adapters import metrics_http as metrics

    server = metrics.MetricsServer(CollectorRegistry(), "127.0.0.1", 0)

    async def scenario() -> tuple[int, bytes]:
        await server.start()
        assert server._server is not None
        port = server._server.sockets[0].getsockname()[1]
        idle = [
            await asyncio.open_connection("127.0.0.1", port)
            for _ in range(metrics.MAX_CONNECTIONS + 20)
        ]
        for _ in range(100):  # until the server has taken them all in (bounded)
            if server.connections + server.refused >= len(idle):
                break
            await asyncio.sleep(0.01)
        held = server.connections
        reader, _ = idle[-1]
        closed = await asyncio.wait_for(reader.read(), 2.0)  # refused: EOF at once
        for _, writer in idle:
            writer.close()
        for _ in range(200):  # the held ones end on EOF (bounded)
            if server.connections == 0:
                break
            await asyncio.sleep(0.01)
        await server.close()
        return held, closed

    held, closed = loop.run_until_complete(scenario())
    assert held == metrics.MAX_CONNECTIONS
    assert server.refused == 20
    assert closed == b""
    assert server.connections == 0


# --- the pbu_new_nai limit vs PBUs from strangers ---------------------------------------------


def test_strangers_cannot_evict_a_dmpa_from_the_pbu_new_nai_limit(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """PBUs from addresses that are no DMPA are refused by the core without any state, yet each
    took a slot of the limit's table: a few of them (any IPv6 source will do) evicted a DMPA
    that had spent its burst, which came back with a full bucket (limits.py, Rule 3)."""
    from ipaddress import IPv4Address, IPv6Address

    from router.app import config
    from router.app.settings import DLMAPSettings
    from router.wire.dialect import DRAFT
    from router.wire.mh import BindingAck, BindingUpdate, decode_message
    from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
    from tests.unit.test_operations import DLMAP_INI, DMPA1

    ini = DLMAP_INI + "[limits]\npbu_new_nai_rate = 0.001\npbu_new_nai_burst = 2\ntable_size = 4\n"
    settings, _ = config.loads(ini)
    assert isinstance(settings, DLMAPSettings)
    sent: list[tuple[bytes, IPv6Address]] = []
    node = _dlmap_node(
        settings, Store(tmp_path / "lm.sqlite"), loop, lambda d, a: sent.append((d, a))
    )

    def pbu(sequence: int, nai: str, src: IPv6Address) -> list[BindingAck]:
        options = (MobileNodeIdentifier.from_nai(nai), SeedIPv4HomeAddress(0, IPv4Address(0)))
        node.on_mh(BindingUpdate(sequence, DRAFT.pbu_flags(), 900, options).encode(), src)
        node.runner.flush()
        replies = [decode_message(data, DRAFT) for data, dst in sent if dst == src]
        sent.clear()
        return [r for r in replies if isinstance(r, BindingAck)]

    try:
        assert [a.status for a in pbu(1, "ms1@x", DMPA1) + pbu(2, "ms2@x", DMPA1)] == [0, 0]
        assert pbu(3, "ms3@x", DMPA1) == []  # burst spent: dropped unanswered
        for n in range(8):  # strangers: refused (154), whatever the limit says
            stranger = IPv6Address(f"2001:db8:666::{n + 1:x}")
            assert [a.status for a in pbu(1, f"x{n}@x", stranger)] == [154]
        assert pbu(4, "ms4@x", DMPA1) == []  # still no token for the DMPA
        assert node.counters["limit.pbu_new_nai"] == 2
    finally:
        node.store.close()


# --- SIGHUP's new profiles vs the AAA-rejected visitor entries --------------------------------


def test_a_profile_added_by_reload_admits_an_ms_refused_before(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """The DMPA keeps the entry of a MAC that AAA refused, so its frames do not ask AAA again
    (limits.py Rule 4); nothing removed it but table_size other strangers. A reload that adds
    the MS's profile therefore changed nothing for it until a restart, though the profiles are
    'applied at once'. The refused entries are forgotten when the profiles change: the next
    frame asks AAA again."""
    from router.app import config
    from router.app.run import reload
    from router.app.settings import DMPASettings
    from router.core.dmpa import State
    from router.wire.ethernet import MacAddress
    from tests.unit.test_operations import DMPA_INI

    path = tmp_path / "m1.ini"
    path.write_text(DMPA_INI)
    settings, _ = config.load(path)
    assert isinstance(settings, DMPASettings)
    node = _dmpa_node(settings, Store(tmp_path / "m1.sqlite"), loop)
    bob = MacAddress.parse("02:00:00:00:0b:01")
    try:
        node.core.attach(bob, 0, 100.0)
        node.core.aaa_result(bob, None, 100.0, 1e9)  # AAA: no profile for bob
        assert node.core.visitors[bob].state is State.REJECTED
        path.write_text(DMPA_INI + f"[profile bob@example.org]\nmac = {bob}\n")
        assert reload(node, path) == ["profile bob@example.org"]
        node.runner.flush()
        assert bob not in node.core.visitors  # its next frame attaches and asks AAA again
        assert node.access.counters["aaa_rejected_forgotten"] == 1
    finally:
        node.store.close()
