"""The node runtime's data path: every backend in its list is programmed from the cores' Bind
and Unbind actions (a Bind for a peer that is not configured reaches none of them), and
``show`` reads them all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from fastpath import Binding
from router.adapters.store import Store
from router.app import config
from router.app.dlmap_node import DLMAPNode
from router.core.actions import Bind, Unbind
from tests.unit.test_operations import DLMAP_INI, FakeClock
from tests.unit.test_review_interactions import _dlmap_node

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
def node(tmp_path: Path) -> Iterator[DLMAPNode]:
    loop = asyncio.new_event_loop()
    settings, _ = config.loads(DLMAP_INI)
    store = Store(tmp_path / "lm.sqlite")
    try:
        yield _dlmap_node(settings, store, loop)
    finally:
        store.close()
        loop.close()


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
