"""Registrations per second through the whole signaling path, in process, with durable state.

One round: a fresh DLMAP and SQLite store, then N distinct PBUs (as wire bytes) processed in
batches of 256, the way a loop turn drains its socket: decode, DLMAP rules, one committed
transaction for the batch (``synchronous=FULL``: survives a power cut), then the PBAs encoded.
Every round asserts that every PBA accepted and every binding is on disk. The process runs
with the garbage-collector settings the appliance applies at start-up (``tune_gc``).
"""

from __future__ import annotations

import gc
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from router.adapters.store import Store
from router.app.tuning import tune_gc
from router.core.actions import Persist, SendMH
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.pool import HoAPool
from router.wire.dialect import DRAFT, RFC5844, Dialect
from router.wire.mh import BindingAck, BindingUpdate, decode_message
from router.wire.mh_options import (
    AccessTechnologyTypeOption,
    HandoffIndicatorOption,
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    SeedIPv4HomeAddress,
    Timestamp,
)

DMPA = IPv6Address("2001:db8:1::1")
DLMAP_ADDRESS = IPv6Address("2001:db8:2::1")
GATEWAY = IPv4Address("198.51.100.1")
POOL = IPv4Network("10.0.0.0/8")  # a large pool; the lab uses documentation prefixes
N = 8192
BATCH = 256
WALL = 1_700_000_000.0


def pbu(i: int, dialect: Dialect) -> BindingUpdate:
    nai = MobileNodeIdentifier.from_nai(f"ms{i}@example.net")
    if dialect is DRAFT:
        return BindingUpdate(
            i % 65536, DRAFT.pbu_flags(), 900, (nai, SeedIPv4HomeAddress(0, IPv4Address(0)))
        )
    return BindingUpdate(
        i % 65536,
        RFC5844.pbu_flags(),
        900,
        (
            nai,
            HandoffIndicatorOption(1),
            AccessTechnologyTypeOption(3),
            Timestamp.from_unix(WALL),
            IPv4HomeAddressRequest(IPv4Address(0)),
        ),
    )


def new_dlmap(dialect: Dialect) -> DLMAP:
    config = DLMAPConfig(DLMAP_ADDRESS, GATEWAY, {DMPA: dialect}, timestamp_window=1e9)
    return DLMAP(config, HoAPool([POOL]))


def register(
    dlmap: DLMAP, store: Store, wires: list[bytes], dialect: Dialect, batch: int = BATCH
) -> int:
    accepted = 0
    for start in range(0, len(wires), batch):
        persists: list[Persist] = []
        replies: list[SendMH] = []
        for wire in wires[start : start + batch]:
            for action in dlmap.receive(decode_message(wire, dialect), DMPA, 1.0, WALL):
                if isinstance(action, Persist):
                    persists.append(action)
                elif isinstance(action, SendMH):
                    replies.append(action)
        store.apply(persists)  # committed before any PBA of the batch leaves
        for reply in replies:
            data = reply.message.encode()
            accepted += isinstance(reply.message, BindingAck) and data[6] == 0
    return accepted


@pytest.fixture(autouse=True, scope="module")
def appliance_gc() -> Any:
    saved = gc.get_threshold()
    tune_gc()
    yield
    gc.unfreeze()
    gc.set_threshold(*saved)


@pytest.mark.parametrize("dialect", [DRAFT, RFC5844], ids=["draft", "rfc5844"])
def test_registrations_per_second(benchmark: Any, dialect: Dialect, tmp_path: Path) -> None:
    wires = [pbu(i, dialect).encode() for i in range(1, N + 1)]
    folder = tmp_path
    rounds = iter(range(100))

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        store = Store(folder / f"round{next(rounds)}.sqlite")
        return (new_dlmap(dialect), store, wires, dialect), {}

    accepted = benchmark.pedantic(register, setup=setup, rounds=5, iterations=1)
    assert accepted == N
    last = Store(folder / "round4.sqlite")
    assert len(last.load()["binding"]) == N
    benchmark.extra_info["registrations"] = N


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_million_bindings_memory(benchmark: Any) -> None:
    """1,000,000 bindings held by one DLMAP: the process's resident memory growth."""
    count = 1_000_000

    def fill() -> DLMAP:
        gc.collect()
        before = _rss()
        dlmap = new_dlmap(DRAFT)
        seed = SeedIPv4HomeAddress(0, IPv4Address(0))
        for i in range(1, count + 1):
            message = BindingUpdate(
                i % 65536,
                DRAFT.pbu_flags(),
                900,
                (MobileNodeIdentifier.from_nai(f"ms{i}@example.net"), seed),
            )
            dlmap.receive(message, DMPA, 1.0, WALL)
        gc.collect()
        benchmark.extra_info["rss_bytes"] = _rss() - before
        return dlmap

    dlmap = benchmark.pedantic(fill, rounds=1, iterations=1)
    assert len(dlmap.bindings) == count and len(dlmap.by_hoa) == count
    benchmark.extra_info["registrations"] = count
    assert benchmark.extra_info["rss_bytes"] <= 1 << 30
