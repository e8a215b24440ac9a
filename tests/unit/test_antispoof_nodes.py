"""Anti-spoofing in the nodes: the fastpath only ever binds a HoA to a
configured peer, so a tunnel packet from an address that is no known peer is never forwarded,
even for a binding restored from the database after the peer left the config."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from fastpath import Reason, Verdict
from router.adapters.aaa import AAA, AAAConfig
from router.adapters.store import Store
from router.app.config import loads
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.settings import DLMAPSettings, DMPASettings
from router.core.actions import Bind
from router.wire.ethernet import MacAddress
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram
from tests.unit.test_config import DLMAP, DMPA

KNOWN_DMPA = IPv6Address("2001:db8:100::11")
GONE_DMPA = IPv6Address("2001:db8:100::12")
KNOWN_DLMAP = IPv6Address("2001:db8:100::1")
GONE_DLMAP = IPv6Address("2001:db8:100::2")
CN = IPv4Address("198.51.100.2")


def dlmap_node(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> DLMAPNode:
    settings, _ = loads(DLMAP)
    assert isinstance(settings, DLMAPSettings)
    ports = DLMAPPorts(None, None, -1, -1, -1)
    return DLMAPNode(settings, ports, Store(tmp_path / "lm.sqlite"), loop, fastpath="reference")


def uplink(src: IPv4Address) -> bytes:
    udp = UdpDatagram(4000, 9, b"x").encode(src, CN)
    return IPv4Packet(src, CN, IPProto.UDP, udp).encode()


def test_the_dlmap_binds_only_configured_dmpas(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    node = dlmap_node(tmp_path, loop)
    kept, stale = IPv4Address("192.0.2.100"), IPv4Address("192.0.2.101")
    node.runner.submit([Bind(kept, KNOWN_DMPA), Bind(stale, GONE_DMPA)])
    node.runner.flush()
    assert node.table.lookup(int(kept)) is not None
    assert node.table.lookup(int(stale)) is None
    assert node.counters["bind.unknown_peer"] == 1
    out = bytearray(4096)
    verdict, reason, _, _ = node.fastpath.from_tunnel(GONE_DMPA.packed, uplink(stale), out)
    assert (verdict, reason) == (Verdict.DROP, Reason.SRC_NOT_BOUND)
    verdict, reason, _, _ = node.fastpath.from_tunnel(KNOWN_DMPA.packed, uplink(kept), out)
    assert (verdict, reason) == (Verdict.FORWARD, Reason.FORWARDED)
    node.store.close()


def test_a_binding_restored_for_a_dmpa_no_longer_configured_forwards_nothing(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    node = dlmap_node(tmp_path, loop)
    stale = IPv4Address("192.0.2.101")
    row = {
        "nai": "gone@example.org",
        "hoa": str(stale),
        "dmpa": str(GONE_DMPA),
        "dialect": "draft",
        "sequence": 3,
        "lifetime": 3600,
        "expires_wall": 2e9,
    }
    node.runner.submit(node.core.restore({"binding": [row]}, 10.0, 1.9e9))
    node.runner.flush()
    assert "gone@example.org" in node.core.bindings  # the core keeps it until it expires
    assert node.table.lookup(int(stale)) is None
    assert node.counters["bind.unknown_peer"] == 1
    node.store.close()


def test_the_dmpa_binds_only_configured_dlmaps(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    settings, _ = loads(DMPA)
    assert isinstance(settings, DMPASettings)
    node = DMPANode(
        settings,
        DMPAPorts(None, None, -1, -1),
        Store(tmp_path / "m1.sqlite"),
        AAA(AAAConfig(profiles=settings.profiles)),
        loop,
        fastpath="reference",
    )
    mac = MacAddress.parse("02:00:00:00:0a:01")
    kept, stale = IPv4Address("192.0.2.100"), IPv4Address("192.0.2.101")
    node.runner.submit([Bind(kept, KNOWN_DLMAP, mac, 0), Bind(stale, GONE_DLMAP, mac, 0)])
    node.runner.flush()
    assert node.table.lookup(int(kept)) is not None
    assert node.table.lookup(int(stale)) is None
    assert node.counters["bind.unknown_peer"] == 1
    node.store.close()
