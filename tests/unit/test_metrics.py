"""The metrics a node in memory exports (the Prometheus families, histograms and gauges) and
the HTTP server that serves them. The same on real processes: tests/netns/test_operations.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from router.adapters import metrics_http
from router.adapters.metrics_http import MetricsServer
from router.adapters.store import Store
from router.app import config
from router.app.dlmap_node import DLMAPNode
from router.app.metrics import LatencyObserver, registry_for
from router.app.settings import DLMAPSettings, DMPASettings
from router.core.actions import Bind, event
from router.wire.dialect import DRAFT
from router.wire.ethernet import MacAddress
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    decode_message,
)
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress
from tests.unit.nodes import (
    DLMAP,
    DLMAP_INI,
    DMPA1,
    DMPA2,
    DMPA_INI,
    MAC,
    NAI,
    FlakyStore,
    dlmap_node,
    dmpa_node,
    sealed,
)


@dataclass
class Dlmap:
    node: DLMAPNode
    sent: list[tuple[bytes, IPv6Address]]

    def receive(self, message: object, src: IPv6Address) -> list[object]:
        data = sealed(message, src, DLMAP, self.node.clock.wall())  # type: ignore[arg-type]
        self.node.on_mh(data, src)
        self.node.runner.flush()
        out = [decode_message(data, DRAFT) for data, _ in self.sent]
        self.sent.clear()
        return out


@pytest.fixture
def dlmap(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Dlmap]:
    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    sent: list[tuple[bytes, IPv6Address]] = []
    store = Store(tmp_path / "lm.sqlite")
    node = dlmap_node(settings, store, loop, lambda data, dst: sent.append((data, dst)))
    yield Dlmap(node, sent)
    store.close()


def pbu(sequence: int, hoa: str = "0.0.0.0") -> BindingUpdate:
    options = (MobileNodeIdentifier.from_nai(NAI), SeedIPv4HomeAddress(0, IPv4Address(hoa)))
    return BindingUpdate(sequence, DRAFT.pbu_flags(), 900, options)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: object) -> Samples:
    samples: Samples = {}
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[(metric, frozenset(labels.items()))]


def test_dlmap_metrics_follow_a_registration_a_handover_and_garbage(dlmap: Dlmap) -> None:
    registry, observer = registry_for(dlmap.node, lambda: {"mh_socket": {"rx": 3}})
    dlmap.node.runner.observers.append(observer)
    first = scrape(registry)
    assert value(first, "netlmm_bindings", state="bound") == 0
    assert value(first, "netlmm_handover_duration_seconds_count") == 0
    [ack] = dlmap.receive(pbu(1), DMPA1)
    assert isinstance(ack, BindingAck) and ack.status == 0
    hoa = ack.find(SeedIPv4HomeAddress)
    assert hoa is not None
    # the new DMPA's PBU: the DLMAP revokes the old one and holds the PBA until its BRA
    [bri] = dlmap.receive(pbu(1, str(hoa.address)), DMPA2)
    assert isinstance(bri, BindingRevocationIndication)
    held = scrape(registry)
    assert value(held, "netlmm_bindings", state="handover_pending") == 1
    assert value(held, "netlmm_revocations_in_flight") == 1
    dlmap.node.loop.time = lambda: 1e6  # type: ignore[method-assign]  # the BRA, "later"
    bra = BindingRevocationAck(0, bri.sequence, bri.flags, bri.options)  # names the binding
    [released] = dlmap.receive(bra, DMPA1)
    assert isinstance(released, BindingAck) and released.status == 0
    dlmap.node.on_mh(b"\x00\x01garbage", DMPA1)
    after = scrape(registry)
    assert value(after, "netlmm_bindings", state="bound") == 1
    assert value(after, "netlmm_bindings", state="handover_pending") == 0
    assert value(after, "netlmm_bindings_created_total") == 1
    assert value(after, "netlmm_handovers_total") == 1
    assert value(after, "netlmm_registrations_total", result="accepted", status="0") == 2
    assert value(after, "netlmm_revocations_total", result="acknowledged", status="0") == 1
    assert value(after, "netlmm_revocations_sent_total") == 1
    assert value(after, "netlmm_handover_duration_seconds_count") == 1
    assert value(after, "netlmm_handover_duration_seconds_bucket", le="1.0") == 0  # ~1e6 s
    assert value(after, "netlmm_mh_messages_total", direction="rx") == 4
    assert sum(v for (name, _), v in after.items() if name == "netlmm_mh_malformed_total") == 1
    assert value(after, "netlmm_internal_events_total", group="mh_socket", name="rx") == 3
    assert value(after, "netlmm_info", role="dlmap", name="lm", version=_version()) == 1
    for direction in ("uplink", "downlink"):
        assert value(after, "netlmm_fastpath_forwarded_packets_total", direction=direction) == 0
        drops = {"direction": direction, "reason": "no_binding"}
        assert ("netlmm_fastpath_dropped_packets_total", frozenset(drops.items())) in after
    names = {name for name, _ in after}
    assert all(n.startswith(("netlmm_", "process_", "python_")) for n in names), names


def test_the_dmpa_registration_histogram_times_attach_to_bind(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    settings, _ = config.loads(DMPA_INI)
    assert isinstance(settings, DMPASettings)
    node = dmpa_node(settings, Store(tmp_path / "m1.sqlite"), loop)
    try:
        registry, observer = registry_for(node, process=False)
        observer(event("attach", mac=MAC, link=0), 10.0)
        observer(event("attach", mac=MacAddress.parse("02:00:00:00:0a:02"), link=0), 10.0)
        observer(Bind(IPv4Address("192.0.2.100"), DLMAP, MAC, 0), 10.04)
        observer(Bind(IPv4Address("192.0.2.100"), DLMAP, MAC, 0), 99.0)  # a rebind: not timed
        samples = scrape(registry)
        assert value(samples, "netlmm_registration_duration_seconds_count") == 1
        assert value(samples, "netlmm_registration_duration_seconds_bucket", le="0.025") == 0
        assert value(samples, "netlmm_registration_duration_seconds_bucket", le="0.05") == 1
        assert value(samples, "netlmm_visitors", state="registered") == 0
        assert value(samples, "netlmm_aaa_backend_total", outcome="requests") == 0
    finally:
        node.store.close()


def test_the_latency_observer_forgets_beyond_its_capacity() -> None:
    from prometheus_client import CollectorRegistry

    from router.app import metrics

    registry = CollectorRegistry()
    observer = LatencyObserver("dlmap", registry, revocation_budget=0.5)
    for n in range(metrics.PENDING_CAPACITY + 10):
        observer(event("handover", nai=f"ms{n}"), float(n))
    observer(event("pba_released", nai="ms0"), 1e4)  # forgotten: not observed
    observer(event("pba_released", nai="ms20"), 1e4)
    samples = scrape(registry)
    assert value(samples, "netlmm_handover_duration_seconds_count") == 1
    assert value(samples, "netlmm_handover_duration_seconds_sum") == pytest.approx(1e4 - 20)


def test_the_metrics_server_answers_get_metrics_only() -> None:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    Counter("netlmm_test", "a test counter", registry=registry).inc(3)
    server = MetricsServer(registry, "127.0.0.1", 0)

    async def ask(request: bytes) -> tuple[str, bytes, str]:
        """One connection: ``request`` sent, the status line, body and content type read."""
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        status, *headers = head.decode("latin-1").split("\r\n")
        fields = dict(h.split(": ", 1) for h in headers)
        return status.split(" ", 1)[1], body, fields["Content-Type"]

    async def scenario() -> list[tuple[str, bytes, str]]:
        await server.start()
        try:
            return [
                await ask(request)
                for request in (
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /other HTTP/1.1\r\n\r\n",
                    b"POST /metrics HTTP/1.1\r\n\r\n",
                    b"\xff\xfe garbage\r\n\r\n",
                )
            ]
        finally:
            await server.close()

    (status, body, ctype), *others = asyncio.run(scenario())
    assert status == "200 OK" and b"netlmm_test_total 3.0" in body
    assert ctype.startswith("text/plain; version=0.0.4")
    assert [answer[0] for answer in others] == [
        "404 Not Found",
        "405 Method Not Allowed",
        "405 Method Not Allowed",
    ]
    assert server.scrapes == 1


def test_levels_that_go_down_are_gauges_not_counters(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    """store.backlog and limit.<name>.table are sizes that shrink again: exported in the
    counter family netlmm_internal_events_total, every drop reads as a counter reset to
    Prometheus (rate() and increase() go wrong). They are gauges of their own."""
    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    store = FlakyStore(tmp_path / "lm.sqlite")
    node = dlmap_node(settings, store, loop)
    try:
        registry, _ = registry_for(node, process=False)
        store.failing = True  # the binding's rows wait in the backlog
        options = (
            MobileNodeIdentifier.from_nai("alice@example.org"),
            SeedIPv4HomeAddress(0, IPv4Address("0.0.0.0")),
        )
        message = BindingUpdate(1, DRAFT.pbu_flags(), 900, options)
        node.on_mh(sealed(message, DMPA1, DLMAP, node.clock.wall()), DMPA1)
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


def test_idle_metrics_connections_are_capped(loop: asyncio.AbstractEventLoop) -> None:
    """Each connection to node.metrics was kept (an fd and a task) until its 5 s timeout, with
    no limit: anyone reaching the port could take every fd of the node (then its RADIUS
    requests, control socket and restarts of devices fail). Past the cap a connection is closed
    at once; the ones held still time out as before."""
    from prometheus_client import CollectorRegistry

    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0)

    async def scenario() -> tuple[int, bytes]:
        await server.start()
        port = server.port
        idle = [
            await asyncio.open_connection("127.0.0.1", port)
            for _ in range(metrics_http.MAX_CONNECTIONS + 20)
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
    assert held == metrics_http.MAX_CONNECTIONS
    assert server.refused == 20
    assert closed == b""
    assert server.connections == 0


def _version() -> str:
    from router import __version__

    return __version__


def test_peer_up_and_show_peers_follow_the_heartbeats(dlmap: Dlmap) -> None:
    from router.app.peers import peer_rows
    from router.wire.mh import Heartbeat

    registry, _ = registry_for(dlmap.node)
    before = scrape(registry)
    assert value(before, "netlmm_peer_up", peer=str(DMPA1)) == 0  # nothing heard yet
    [ack] = dlmap.receive(pbu(1), DMPA1)
    assert isinstance(ack, BindingAck) and ack.status == 0
    [answer] = dlmap.receive(Heartbeat(7), DMPA1)  # the DMPA's request: a sign of life
    assert isinstance(answer, Heartbeat) and answer.sequence == 7
    after = scrape(registry)
    assert value(after, "netlmm_peer_up", peer=str(DMPA1)) == 1
    assert value(after, "netlmm_peer_up", peer=str(DMPA2)) == 0
    rows = {row["peer"]: row for row in peer_rows(dlmap.node)}
    assert rows[str(DMPA1)]["state"] == "up" and rows[str(DMPA1)]["bindings"] == 1
    assert rows[str(DMPA2)] | {"last_heard": None} == {
        "peer": str(DMPA2),
        "state": "unknown",
        "last_heard": None,
        "missed": 0,
        "restart_counter": None,
        "spi": rows[str(DMPA2)]["spi"],
        "dialect": "draft",
        "bindings": 0,
    }


def test_build_info_no_series_twice_no_other_role_histogram_no_empty_label(dlmap: Dlmap) -> None:
    import platform

    registry, _ = registry_for(dlmap.node, lambda: {"mh_socket": {"rx": 3}})
    [ack] = dlmap.receive(pbu(1), DMPA1)
    assert isinstance(ack, BindingAck)
    samples = scrape(registry)
    build = {k: v for k, v in samples.items() if k[0] == "netlmm_build_info"}
    ((_, labels),) = build
    assert dict(labels)["version"] == _version()
    assert dict(labels)["python"] == platform.python_version()
    assert dict(labels)["fastpath"] in ("compiled", "reference")
    names = {name for name, _ in samples}
    assert not any(n.startswith("netlmm_registration_duration") for n in names)  # the DMPA's
    assert "netlmm_handover_duration_seconds_count" in names
    empty = [key for key in samples if any(value == "" for _, value in key[1])]
    assert empty == []  # no status="" (unanswered revocations have their own counter)
    assert "netlmm_revocations_unanswered_total" in names
    internal = {dict(labels)["group"] + "/" + dict(labels)["name"]
                for name, labels in samples if name == "netlmm_internal_events_total"}  # fmt: skip
    assert "core/binding.created" not in internal  # netlmm_bindings_created_total has it
    assert "node/mh.rx" not in internal  # netlmm_mh_messages_total has it
    assert not any(item.startswith("fastpath/") for item in internal)
    assert "mh_socket/rx" in internal  # no metric of its own: still reachable
