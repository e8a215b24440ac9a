"""The node runtime's data path: every backend in its list is programmed from the cores' Bind
and Unbind actions (a Bind for a peer that is not configured reaches none of them), and
``show`` reads them all."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from fastpath import Binding, Reason, Verdict
from router.adapters.aaa import AAA, AAAConfig
from router.adapters.store import Store
from router.app import config
from router.app.dlmap_node import DLMAPNode
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.settings import DLMAPSettings, DMPASettings
from router.core.actions import Bind, Persist, Unbind
from router.wire.ethernet import EthernetFrame, EtherType
from router.wire.icmp import IcmpMessage, IcmpType
from router.wire.ipv4 import IPProto, IPv4Packet
from tests.unit.nodes import DLMAP, DLMAP_INI, DMPA_INI, MAC, FakeClock, FlakyStore, dlmap_node

HOA = IPv4Address("192.0.2.100")
DMPA = IPv6Address("2001:db8:100::11")
STRANGER = IPv6Address("2001:db8:100::99")


class Tier:
    """A second data-path tier that records what it is told (a kernel tier, say)."""

    name = "second"

    def __init__(self) -> None:
        self.table: dict[IPv4Address, Bind] = {}
        self.calls: list[str] = []

    def bind(self, action: Bind) -> None:
        self.calls.append(f"bind {action.hoa}")
        self.table[action.hoa] = action

    def unbind(self, hoa: IPv4Address) -> None:
        self.calls.append(f"unbind {hoa}")
        self.table.pop(hoa, None)

    def lookup(self, hoa: IPv4Address) -> Binding | None:
        if hoa not in self.table:
            return None
        return Binding(int(hoa), self.table[hoa].endpoint.packed, bytes(6), 0, 0, 5, 500)

    def counters(self) -> dict[str, int]:
        return {"entries": len(self.table)}


@pytest.fixture
def node(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[DLMAPNode]:
    settings, _ = config.loads(DLMAP_INI)
    store = Store(tmp_path / "lm.sqlite")
    try:
        yield dlmap_node(settings, store, loop)
    finally:
        store.close()


def test_bind_and_unbind_reach_every_backend_in_order(node: DLMAPNode) -> None:
    tier = Tier()
    node.backends.append(tier)
    assert [b.name for b in node.backends] == ["fastpath", "second"]
    node.runner.submit([Bind(HOA, DMPA), Bind(IPv4Address("192.0.2.101"), STRANGER)])
    node.runner.flush()
    assert tier.calls == [f"bind {HOA}"]  # the stranger's bind reached no tier
    assert node.table.lookup(int(HOA)) is not None
    assert node.counters["bind.unknown_peer"] == 1
    assert node.packets(HOA) == 5  # the fastpath forwarded nothing yet, the second tier 5
    assert node.show("counters")["second"] == {"entries": 1}
    node.runner.submit([Unbind(HOA)])
    node.runner.flush()
    assert tier.calls == [f"bind {HOA}", f"unbind {HOA}"]
    assert node.table.lookup(int(HOA)) is None and node.packets(HOA) == 0
    assert node.age(HOA, FakeClock().now()) is None


def _dlmap_start_and_stop(path: Path, loop: asyncio.AbstractEventLoop, failing: bool) -> int:
    """Start a DLMAP on the database at ``path`` (its writes failing or not), stop it, and
    return the Restart Counter it answered heartbeats with."""
    settings, _ = config.loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    store = FlakyStore(path)
    store.failing = failing
    fds = [*os.pipe(), *os.pipe()]
    node = dlmap_node(settings, store, loop, fds=(fds[0], fds[2]))
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


@pytest.mark.parametrize("twin", ["reference", "compiled"])
def test_the_dmpa_programs_the_ms_own_gateway_into_its_fastpath(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, twin: str
) -> None:
    """Issue 15, defect 4: the Bind's gateway reaches the user-space tier (either twin), whose
    engine then punts an echo to it for the ICMP responder instead of tunnelling it."""
    settings, _ = config.loads(DMPA_INI)
    assert isinstance(settings, DMPASettings)
    store = Store(tmp_path / "m1.sqlite")
    node = DMPANode(
        settings,
        DMPAPorts(lambda data, dst: None, None, -1, -1),
        store,
        AAA(AAAConfig(profiles=settings.profiles)),
        loop,
        FakeClock(),
        fastpath=twin,
    )
    try:
        own = IPv4Address("192.0.2.62")
        node.runner.submit([Bind(HOA, DLMAP, MAC, 0, own)])
        node.runner.flush()
        entry = node.table.lookup(int(HOA))
        assert entry is not None and entry.gateway == int(own)
        icmp = IcmpMessage(IcmpType.ECHO_REQUEST, 0, b"\x00\x01\x00\x01", b"ping").encode()
        echo = IPv4Packet(HOA, own, IPProto.ICMP, icmp, ttl=1).encode()
        frame = EthernetFrame(settings.pseudo_mac, MAC, EtherType.IPV4, echo).encode()
        verdict, reason, _, _ = node.fastpath.from_access(frame, 0, bytearray(2048))
        assert (verdict, reason) == (Verdict.PUNT, Reason.ICMP_GATEWAY)
        node.runner.submit([Bind(HOA, DLMAP, MAC, 0)])  # None: the node's gateway only
        node.runner.flush()
        entry = node.table.lookup(int(HOA))
        assert entry is not None and entry.gateway == 0
        assert node.fastpath.from_access(frame, 0, bytearray(2048))[1] == Reason.TTL_EXPIRED
    finally:
        store.close()
