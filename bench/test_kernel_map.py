"""The kernel tier's map calls through its backend (router/adapters/kernelpath.py): a single
bind and unbind (one ``bpf()`` call each) and the restore's batch (one call for 1,000,000
bindings, packed in C by ``fastpath._kernel.pack_bindings``, and that packing alone). Goals
(issue 14): at least 200,000 single calls a second, 1M bindings in at most 2 s. Needs root (the
maps are created in the kernel; the packing alone does not); nothing is attached to any
interface."""

from __future__ import annotations

import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from fastpath.kernel import MAP_BINDINGS, OBJECT
from router.adapters.kernelpath import MAX_BINDINGS, KernelPath, Plan
from router.core.actions import Bind
from router.wire.ethernet import MacAddress
from tests.conftest import require

GOAL_SINGLE_PER_S = 200_000
GOAL_BATCH_1M_S = 2.0
MILLION = 1_000_000
DMPA = IPv6Address("2001:db8:100::11")
MAC = MacAddress.parse("02:4e:4c:00:00:01")
BASE = int(IPv4Address("10.0.0.0"))  # keys only: no packet ever carries them


@pytest.fixture
def path(tmp_path: Path) -> Iterator[KernelPath]:
    require(os.geteuid() == 0, "needs root to create BPF maps")
    require(OBJECT.exists(), f"{OBJECT} not built (make setup needs clang)")
    from fastpath import _kernel

    obj = _kernel.BpfObject(str(OBJECT))
    obj.set_max_entries(MAP_BINDINGS, MAX_BINDINGS)
    obj.load()
    plan = Plan("dlmap", "bench", IPv6Address("2001:db8:100::1"), tmp_path, 1500)
    backend = KernelPath(_kernel, obj, plan, [], [])
    yield backend
    backend.close()


def _bind(n: int) -> Bind:
    return Bind(IPv4Address(BASE + n), DMPA, MAC, 0)


def test_single_bind_unbind(benchmark: Any, path: KernelPath) -> None:
    action = _bind(1)

    def one() -> None:
        path.bind(action)
        path.unbind(action.hoa)

    benchmark.pedantic(one, rounds=7, iterations=5000, warmup_rounds=1)
    per_s = 2 / benchmark.stats.stats.median  # two calls a round
    benchmark.extra_info.update(calls_per_s=round(per_s), goal=GOAL_SINGLE_PER_S)
    assert path.lookup(action.hoa) is None


def test_batch_1m_bindings(benchmark: Any, path: KernelPath) -> None:
    actions = [_bind(n) for n in range(MILLION)]
    written = benchmark.pedantic(path.bind_many, (actions,), rounds=3, iterations=1)
    benchmark.extra_info.update(
        seconds=round(benchmark.stats.stats.median, 3), goal=GOAL_BATCH_1M_S
    )
    assert written == MILLION
    entry = path.lookup(actions[-1].hoa)
    assert entry is not None and entry.endpoint == DMPA.packed


def test_pack_1m_bindings(benchmark: Any) -> None:
    """The part of the batch that is not the ``bpf()`` call: 1M Bind actions to keys and values."""
    kernel = pytest.importorskip("fastpath._kernel", reason="the libbpf binding is not built")
    actions = [_bind(n) for n in range(MILLION)]
    gateway = IPv4Address("192.0.2.1").packed
    keys, values, count = benchmark.pedantic(
        kernel.pack_bindings, (actions, (7,), gateway), rounds=3, iterations=1
    )
    benchmark.extra_info.update(seconds=round(benchmark.stats.stats.median, 3))
    assert count == MILLION and len(keys) == 4 * MILLION
    assert keys[-4:] == actions[-1].hoa.packed
    assert values[:16] == DMPA.packed
