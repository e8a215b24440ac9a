"""Every fastpath test runs against both twins; the compiled one is never skipped in CI.

The kernel tier's tests (test_kernel_programs*.py) share :class:`Loaded`, the TC actions and
the ``kernel``/``dmpa``/``dlmap`` fixtures from here; each module says how the peer is bound
(a HoA or a /64) with its own ``bind_peer`` fixture."""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from fastpath.common import Direction, Reason, Verdict
from fastpath.kernel import (
    BINDING,
    CONFIG,
    COUNTER,
    KEY,
    MAP_BINDINGS,
    MAP_CONFIG,
    MAP_COUNTERS,
    MAP_PREFIXES,
    OBJECT,
    PREFIX_KEY,
    ROLE_DLMAP,
    ROLE_DMPA,
    KernelReason,
    counter_key,
)
from tests.conftest import require
from tests.fastpath.packets import DLMAP, DMPA, GATEWAY, MS_MAC, PSEUDO_MAC


def load(name: str) -> ModuleType:
    if name == "reference":
        return importlib.import_module("fastpath.reference")
    try:
        return importlib.import_module("fastpath._fastpath")
    except ImportError as e:
        require(False, f"compiled fastpath not built ({e}); run make setup")
        raise


def load_kernel() -> ModuleType:
    """The loader extension (``fastpath._kernel``): skips on a developer's machine without it,
    fails in CI (:func:`tests.conftest.require`)."""
    try:
        return importlib.import_module("fastpath._kernel")
    except ImportError as e:
        require(False, f"fastpath._kernel not built ({e}); run make setup")
        raise


@pytest.fixture(params=["reference", "compiled"])
def fp(request: pytest.FixtureRequest) -> ModuleType:
    """The twin under test."""
    return load(request.param)


@pytest.fixture
def twins() -> tuple[ModuleType, ModuleType]:
    """Both twins, for tests that compare them."""
    return load("reference"), load("compiled")


# --- the kernel tier's programs (BPF_PROG_TEST_RUN) ---

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
ACT_OF = {Verdict.FORWARD: TC_ACT_REDIRECT, Verdict.PUNT: TC_ACT_OK, Verdict.DROP: TC_ACT_SHOT}
ACCESS_IFINDEX = 7
TRANSPORT_IFINDEX = 3
TUNNEL_MTU = 1460


class Loaded:
    """The object loaded for one role (no binding yet: :meth:`bind`, :meth:`bind_prefix`)."""

    def __init__(self, kernel: ModuleType, role: int, local: bytes, tun: int = 0) -> None:
        self.k = kernel
        self.obj = kernel.BpfObject(str(OBJECT))
        self.obj.set_max_entries(MAP_BINDINGS, 1024)
        self.obj.set_max_entries(MAP_PREFIXES, 1024)
        self.obj.load()
        config = CONFIG.pack(local, PSEUDO_MAC, 64, role, TUNNEL_MTU, TRANSPORT_IFINDEX, tun)
        kernel.map_update(self.obj.map_fd(MAP_CONFIG), bytes(4), config)

    def bind(self, hoa: int, endpoint: bytes, ifindex: int = ACCESS_IFINDEX) -> None:
        """Bind IPv4 HoA ``hoa`` (to the MS's MAC on ``ifindex``, via GATEWAY)."""
        value = BINDING.pack(endpoint, MS_MAC, ifindex, GATEWAY.to_bytes(4, "big"), 0, 0, 0, 0)
        self.k.map_update(self.obj.map_fd(MAP_BINDINGS), KEY.pack(hoa), value)

    def bind_prefix(self, prefix: int, endpoint: bytes, ifindex: int = ACCESS_IFINDEX) -> None:
        """Bind the IPv6 /64 ``prefix`` (its upper 64 bits; no gateway)."""
        value = BINDING.pack(endpoint, MS_MAC, ifindex, bytes(4), 0, 0, 0, 0)
        self.k.map_update(self.obj.map_fd(MAP_PREFIXES), PREFIX_KEY.pack(prefix), value)

    def prefix_packets(self, prefix: int) -> int:
        """The packets counted on the binding of ``prefix``."""
        raw = self.k.map_lookup(
            self.obj.map_fd(MAP_PREFIXES), PREFIX_KEY.pack(prefix), BINDING.size
        )
        packets: int = BINDING.unpack(raw)[6]
        return packets

    def run(self, prog: str, frame: bytes) -> tuple[int, bytes]:
        result: tuple[int, bytes] = self.k.test_run(self.obj.prog_fd(prog), frame)
        return result

    def counter(self, d: Direction, r: KernelReason) -> int:
        cpus = self.k.possible_cpus()
        raw = self.k.map_lookup(
            self.obj.map_fd(MAP_COUNTERS), struct.pack("=I", counter_key(d, r)), 16 * cpus
        )
        return sum(COUNTER.unpack_from(raw, 16 * i)[0] for i in range(cpus))

    def close(self) -> None:
        self.obj.close()


#: What the Cython twin answers (verdict, reason) for a reason of the kernel tier's own, one
#: without a :class:`Reason` of the same name: the listed exceptions :func:`same_reason` allows.
CYTHON_INSTEAD: dict[KernelReason, set[tuple[Verdict, Reason]]] = {
    # left to the stack by the kernel; the Cython tier drops what is not addressed to it
    KernelReason.PASSED: {
        (Verdict.DROP, Reason.NOT_FOR_US),
        (Verdict.DROP, Reason.BAD_NEXT_HEADER),
    },
    # the Cython tier carries what the kernel does not parse (RFC 6040 applied for CE)
    KernelReason.IP_OPTIONS: {(Verdict.FORWARD, Reason.FORWARDED)},
    KernelReason.IP_FRAGMENT: {(Verdict.FORWARD, Reason.FORWARDED)},
    KernelReason.EXT_HEADER: {(Verdict.FORWARD, Reason.FORWARDED)},
    KernelReason.ECN_CE: {(Verdict.FORWARD, Reason.FORWARDED)},
    # lengths or headers the kernel does not take: the Cython tier finds them malformed
    KernelReason.UNPARSED: {
        (Verdict.DROP, Reason.TRUNCATED),
        (Verdict.DROP, Reason.BAD_NEXT_HEADER),
    },
}


def same_reason(kernel_reason: KernelReason, verdict: int, cython_reason: int) -> None:
    """The Cython twin ends the packet with the kernel's reason, or, for one of the kernel
    tier's own reasons, with an answer listed in :data:`CYTHON_INSTEAD`: never unchecked."""
    if kernel_reason.name in Reason.__members__:
        assert Reason(cython_reason).name == kernel_reason.name
        return
    assert kernel_reason in CYTHON_INSTEAD, (
        f"kernel reason {kernel_reason.name} has no Cython counterpart and no listed exception"
    )
    assert (Verdict(verdict), Reason(cython_reason)) in CYTHON_INSTEAD[kernel_reason]


#: How a module binds the peer's endpoint on a loaded object (its ``bind_peer`` fixture).
BindPeer = Callable[[Loaded, bytes], None]


@pytest.fixture
def kernel(root: None) -> ModuleType:
    require(OBJECT.exists(), f"{OBJECT} not built (make setup needs clang)")
    return load_kernel()


@pytest.fixture
def dmpa(kernel: ModuleType, bind_peer: BindPeer) -> Iterator[Loaded]:
    """The DMPA (2001:db8::1), its MS bound to the DLMAP as ``bind_peer`` does."""
    loaded = Loaded(kernel, ROLE_DMPA, DMPA)
    try:
        bind_peer(loaded, DLMAP)
        yield loaded
    finally:
        loaded.close()


@pytest.fixture
def dlmap(kernel: ModuleType, bind_peer: BindPeer) -> Iterator[Loaded]:
    """The DLMAP (2001:db8::2), its MS bound to the DMPA as ``bind_peer`` does."""
    loaded = Loaded(kernel, ROLE_DLMAP, DLMAP)
    try:
        bind_peer(loaded, DMPA)
        yield loaded
    finally:
        loaded.close()
