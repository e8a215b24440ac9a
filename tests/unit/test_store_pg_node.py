"""A DLMAP node on the PostgreSQL store (a real server, tests/pg.py): a PBA leaves only once its
binding is committed (another client sees the row when the PBA is sent), a fenced node sends no
PBA and stops, and a takeover keeps the RFC 5847 restart counter."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from netlmm_lab.postgres import PostgresServer
from router.adapters.store_pg import PgStore
from router.app import config
from router.app.dlmap_node import DLMAPNode
from router.app.runner import RunnerCounter
from router.app.settings import DLMAPSettings
from router.wire.dialect import DRAFT
from router.wire.mh import (
    BindingAck,
    BindingRevocationIndication,
    BindingUpdate,
    decode_message,
)
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from tests.unit.nodes import DLMAP, DLMAP_INI, DMPA1, DMPA2, dlmap_node, sealed


class Started:
    def __init__(self, dsn: str, loop: asyncio.AbstractEventLoop, holder: str) -> None:
        settings, _ = config.loads(DLMAP_INI)
        assert isinstance(settings, DLMAPSettings)
        self.loop = loop
        self.store = PgStore(dsn, str(DLMAP), holder=holder)
        loop.run_until_complete(self.store.open())
        loop.run_until_complete(self.store.claim())
        loop.run_until_complete(self.store.fetch())
        self.sent: list[tuple[bytes, Any]] = []
        self.on_send: list[Any] = []
        self.fds = [*os.pipe(), *os.pipe()]
        self.node: DLMAPNode = dlmap_node(
            settings, self.store, loop, send=self._send, fds=(self.fds[0], self.fds[2])
        )
        self.fenced = 0
        self.node.runner.on_fenced = self._fenced
        self.node.start()
        self.settle()

    def _fenced(self) -> None:
        self.fenced += 1

    def _send(self, data: bytes, dst: Any) -> None:
        for check in self.on_send:
            check(data)
        self.sent.append((data, dst))

    def settle(self) -> None:
        self.loop.run_until_complete(self.node.runner.drain())

    def register(self, nai: str, seq: int = 1, dmpa: IPv6Address = DMPA1) -> None:
        options = (MobileNodeIdentifier.from_nai(nai), SeedIPv4HomeAddress(0, IPv4Address(0)))
        message = BindingUpdate(seq, DRAFT.pbu_flags(), 900, options)
        self.node.on_mh(sealed(message, dmpa, DLMAP, self.node.clock.wall()), dmpa)
        self.settle()

    def close(self) -> None:
        self.node.stop()
        self.settle()
        self.store.close()
        for fd in self.fds:
            os.close(fd)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = asyncio.new_event_loop()
    yield made
    made.close()


def test_a_pba_leaves_only_once_its_binding_is_committed(
    pg_dsn: str, postgres: PostgresServer, loop: asyncio.AbstractEventLoop
) -> None:
    node = Started(pg_dsn, loop, "a")
    database = pg_dsn.split("?")[0].rsplit("/", 1)[-1]
    seen: list[str] = []
    sql = "SELECT nai || ' ' || host(hoa) FROM netlmm_address"
    node.on_send.append(lambda data: seen.append(postgres.psql(sql, database).strip()))
    try:
        node.register("alice@example.org")
        [(data, _dst)] = node.sent
        ack = decode_message(data, DRAFT)
        assert isinstance(ack, BindingAck) and ack.status == 0
        hoa = node.node.core.bindings["alice@example.org"].hoa
        assert seen == [f"alice@example.org {hoa}"]  # another client saw it as the PBA left
        assert node.node.counters[RunnerCounter.STORE_COMMITS] >= 2  # restore, then the PBU
    finally:
        node.close()


def test_a_fenced_node_sends_no_pba_and_stops(pg_dsn: str, loop: asyncio.AbstractEventLoop) -> None:
    old = Started(pg_dsn, loop, "old")
    try:
        old.register("alice@example.org")
        assert len(old.sent) == 1
        new = PgStore(pg_dsn, str(DLMAP), holder="new")
        loop.run_until_complete(new.open())
        loop.run_until_complete(new.claim())
        old.register("bob@example.org", 2)
        assert len(old.sent) == 1  # no PBA for bob: his binding could not be written
        assert old.fenced == 1
        assert old.node.counters[RunnerCounter.STORE_FENCED] == 1
        loop.run_until_complete(new.fetch())
        assert set(new.load()["binding"]) == {"alice@example.org"}
        old.register("carol@example.org", 3)  # after the fence nothing more is even queued
        assert len(old.sent) == 1
        new.close()
    finally:
        old.close()


def test_a_takeover_keeps_the_restart_counter_and_the_bindings(
    pg_dsn: str, loop: asyncio.AbstractEventLoop
) -> None:
    first = Started(pg_dsn, loop, "a")
    first.register("alice@example.org")
    counter = first.node.core.heartbeat.restart_counter
    hoa = first.node.core.bindings["alice@example.org"].hoa
    # the active dies without a stop: its connection is simply gone
    first.store.close()
    for fd in first.fds:
        os.close(fd)
    second = Started(pg_dsn, loop, "b")
    try:
        assert second.node.core.heartbeat.restart_counter == counter
        row = loop.run_until_complete(
            second.store._db.fetchval("SELECT restart_counter FROM netlmm_identity")
        )
        assert row == counter  # kept with the identity as well
        assert second.node.core.bindings["alice@example.org"].hoa == hoa
        assert second.store.epoch == first.store.epoch + 1
    finally:
        second.close()


def test_a_revocation_pending_at_the_takeover_is_sent_again_by_the_new_active(
    pg_dsn: str, loop: asyncio.AbstractEventLoop
) -> None:
    """alice moves from DMPA 1 to DMPA 2 at the first active, which sends DMPA 1 a BRI that is
    never answered; the active dies. The new active reads the revocation's row and sends the
    BRI to DMPA 1 again, for alice."""
    first = Started(pg_dsn, loop, "a")
    first.register("alice@example.org", 1, DMPA1)
    first.register("alice@example.org", 1, DMPA2)
    bris = [
        (m, dst)
        for data, dst in first.sent
        if isinstance(m := decode_message(data, DRAFT), BindingRevocationIndication)
    ]
    assert [dst for _, dst in bris] == [DMPA1]
    first.store.close()  # dies: no BRA will reach it
    for fd in first.fds:
        os.close(fd)
    second = Started(pg_dsn, loop, "b")
    try:
        resent = [
            (m, dst)
            for data, dst in second.sent
            if isinstance(m := decode_message(data, DRAFT), BindingRevocationIndication)
        ]
        assert [dst for _, dst in resent] == [DMPA1]
        identifiers = [o for o in resent[0][0].options if isinstance(o, MobileNodeIdentifier)]
        assert [o.identifier for o in identifiers] == [b"alice@example.org"]
        assert second.node.core.bindings["alice@example.org"].dmpa == DMPA2
    finally:
        second.close()


def test_a_stop_with_the_database_gone_is_bounded_and_counts_what_is_lost(
    pg_dsn: str, postgres: PostgresServer, loop: asyncio.AbstractEventLoop
) -> None:
    """The database is gone at stop (its connections cut, its address wrong): the drain gives
    the commit up at its deadline instead of retrying for minutes, and says what was lost."""
    node = Started(pg_dsn, loop, "a")
    try:
        node.store.dsn = pg_dsn.replace(str(postgres.sockets), "/nonexistent")
        node.store.close()  # the connection is gone; reconnecting fails
        options = (MobileNodeIdentifier.from_nai("x@y"), SeedIPv4HomeAddress(0, IPv4Address(0)))
        message = BindingUpdate(1, DRAFT.pbu_flags(), 900, options)
        node.node.on_mh(sealed(message, DMPA1, DLMAP, node.node.clock.wall()), DMPA1)
        began = loop.time()
        loop.run_until_complete(node.node.runner.drain(timeout=1.5))
        assert loop.time() - began < 3.0
        assert node.sent == []  # the PBA waited for a write that never came
        counters = node.node.counters
        assert counters[RunnerCounter.STORE_LOST] >= 1
        assert counters[RunnerCounter.STORE_WRITE_ERROR] >= 1
    finally:
        for fd in node.fds:
            os.close(fd)


def test_show_ha_of_a_dlmap_on_sqlite_says_single(tmp_path: Any, loop: Any) -> None:
    from router.adapters.store import Store

    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    store = Store(tmp_path / "lm.sqlite")
    try:
        node = dlmap_node(settings, store, loop)
        assert node.show("ha") == {"role": "single", "store": "sqlite"}
    finally:
        store.close()
