"""Nodes in memory for the unit tests: the ini files of one DLMAP and one DMPA, a fake clock, a
store whose writes can be made to fail, and the two nodes built without devices or sockets.

Their signaling is protected (RFC 4285, the tests' key file: :mod:`tests.keys`), as every
configuration's must be: :func:`sealed` signs what a test sends a node as one of its peers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

from router.adapters.aaa import AAA, AAAConfig
from router.adapters.keyfile import read_key_file
from router.adapters.store import Store, StoreWriteError
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.runner import Clock
from router.core.security import SignalingGuard
from router.wire.ethernet import MacAddress
from router.wire.mh import MobilityMessage
from tests.keys import KEY_FILE, KEY_FILE_LINE, SPI, SPI_LINE

DLMAP = IPv6Address("2001:db8:100::1")
DMPA1 = IPv6Address("2001:db8:100::11")
DMPA2 = IPv6Address("2001:db8:100::12")
NAI = "alice@example.org"
MAC = MacAddress.parse("02:00:00:00:0a:01")

DLMAP_INI = f"""
[node]
role = dlmap
name = lm
address = {DLMAP}
metrics = [{DLMAP}]:9477
{KEY_FILE_LINE}

[dlmap]
gateway = 192.0.2.1
network = 192.0.2.0/24
pool = 192.0.2.100-192.0.2.199
tunnel_mtu = 1500
revocation_budget = 0.5

[peer {DMPA1}]
{SPI_LINE}
[peer {DMPA2}]
{SPI_LINE}
"""

DMPA_INI = f"""
[node]
role = dmpa
name = m1
address = {DMPA1}
log_format = json
{KEY_FILE_LINE}

[dmpa]
access = eth1
gateway = 192.0.2.1
tunnel_mtu = 1500

[peer {DLMAP}]
{SPI_LINE}

[profile {NAI}]
mac = {MAC}
"""


class FakeClock(Clock):
    """Monotonic time starts at 100 s and moves only when a test sets ``t``."""

    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return 1_700_000_000.0 + self.t


class FlakyStore(Store):
    """A real store whose writes fail while ``failing`` is set (a full or read-only disk)."""

    failing = False

    def retry(self) -> int:
        if self.failing and self.backlog:
            raise StoreWriteError(f"{self.path}: write failed (SQLITE_FULL: test)")
        return super().retry()


def dmpa_node(settings: Any, store: Store, loop: asyncio.AbstractEventLoop) -> DMPANode:
    """A DMPA node in memory (no devices, no sockets), AAA from the ini's profiles."""
    ports = DMPAPorts(lambda data, dst: None, None, -1, -1)
    aaa = AAA(AAAConfig(profiles=settings.profiles))
    return DMPANode(settings, ports, store, aaa, loop, FakeClock(), fastpath="reference")


def dlmap_node(
    settings: Any,
    store: Store,
    loop: asyncio.AbstractEventLoop,
    send: Callable[[bytes, Any], None] = lambda data, dst: None,
    fds: tuple[int, int] = (-1, -1),
) -> DLMAPNode:
    """A DLMAP node in memory: MH sent to ``send``, ``fds`` its tunnel and TUN readers."""
    ports = DLMAPPorts(send, None, fds[0], -1, fds[1])
    return DLMAPNode(settings, ports, store, loop, FakeClock(), fastpath="reference")


_GUARDS: dict[tuple[IPv6Address, IPv6Address], SignalingGuard] = {}


def sealed(message: MobilityMessage, src: IPv6Address, dst: IPv6Address, wall: float) -> bytes:
    """``message`` as peer ``src`` sends it to the node at ``dst`` at ``wall``: MESG-ID and
    AUTH with the tests' key (one guard per pair, so its timestamps keep increasing)."""
    guard = _GUARDS.get((src, dst))
    if guard is None:
        keys = read_key_file(KEY_FILE, [SPI])
        guard = SignalingGuard(src, src != DLMAP, {dst: SPI}, keys)
        _GUARDS[(src, dst)] = guard
    return guard.seal(message, dst, wall)
