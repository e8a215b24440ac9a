"""The node runtime both roles run on: a role's file (:mod:`router.app.dlmap_node`,
:mod:`router.app.dmpa_node`) is wiring on top of it.

What the runtime owns:

* the data path: a list of backends (:class:`router.adapters.datapath.DataPath`), the
  user-space fastpath first, programmed from the cores' Bind and Unbind actions (a Bind for a
  peer that is not configured is refused, ``bind.unknown_peer``: a binding restored for a peer
  since removed from the config must not open the tunnel to it);
* the action runner (one loop turn's actions at a time, :mod:`router.app.runner`), the timers
  that wake the core and the services, the store's restore at start, the readers (each wrapped
  at the dispatch :class:`~router.app.runner.Boundary`) and the pumps that feed the fastpath's
  punts to the role's slow path;
* the MH input (decode in the peer's dialect, the RFC 4285 guard, the core) and the actions
  both roles carry out: :class:`SendMH` (sealed by the guard), :class:`SendTunnel`,
  :class:`Bind`, :class:`Unbind`, :class:`SendFrame` (a TAP), :class:`SendTun` (the TUN) and
  :class:`Reinject` (a slow-path packet back into the fastpath, out by the raw socket).

A role supplies its core (``core``, and ``mh_core``: what MH input goes to), its fastpath engine
(:meth:`NodeRuntime.open_fastpath`), its pumps with the punt service that turns each punt into
actions (:meth:`NodeRuntime.add_pump`), its timers, and what ``show`` says of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from fastpath import Punt
from router.adapters.datapath import DataPath, UserSpacePath
from router.adapters.devices import VNET_HDR_LEN
from router.adapters.keyfile import KeyFileError, read_key_file
from router.adapters.store import Store
from router.adapters.store_pg import PgStore
from router.app.logs import kv, quote
from router.app.runner import ActionRunner, Clock, CoreTimer
from router.app.settings import NodeSettings, PeerSettings
from router.core.actions import (
    Action,
    Bind,
    BindPrefix,
    Reinject,
    SendFrame,
    SendMH,
    SendTun,
    SendTunnel,
    Unbind,
    UnbindPrefix,
)
from router.core.common import Core
from router.core.counters import Counters, Family, Names
from router.core.heartbeat import HeartbeatMonitor
from router.core.security import SignalingGuard
from router.wire.dialect import DRAFT
from router.wire.errors import DecodeError, UnknownTypeError
from router.wire.mh import decode_message

log = logging.getLogger("netlmm")

T = TypeVar("T")
S = TypeVar("S", bound="RoleSettings")
P = TypeVar("P", bound="Ports")

#: Packets a pump moves per call (one batch of the fastpath's I/O).
PUMP_BUDGET = 64
#: The tiers ``show counters`` says which of runs (``datapath`` group: 1 for the one running).
TIERS = ("kernel", "cython")


@runtime_checkable
class Batched(Protocol):
    """A tier that writes the start's restore in one call (the kernel tier)."""

    def hold(self) -> None: ...

    def release(self) -> int: ...


class NodeCounter(Names):
    """What the runtime counts in the node's registry (``node`` group)."""

    MH_RX = "mh.rx"
    MH_TX = "mh.tx"
    BIND_UNKNOWN_PEER = "bind.unknown_peer"  # a Bind for a peer not configured, refused
    TAP_TX_ERROR = "tap.tx_error"
    TUN_TX_ERROR = "tun.tx_error"
    AUTH_RELOAD_OK = "auth.reload.ok"
    AUTH_RELOAD_ERROR = "auth.reload.error"


#: MH dropped as malformed, by decode error (``TruncatedError``, ...).
MH_MALFORMED = Family("mh.malformed.{}", "MH that did not decode, by error")


@dataclass
class Ports:
    """The process's kernel handles a node writes to: all non-blocking (:mod:`router.app.run`
    opens them; a test may hand in socketpairs or recorders)."""

    mh_send: Any  # callable(data: bytes, dst: IPv6Address) -> None
    tunnel_send: Any  # callable(inner_ipv4: bytes, dst: IPv6Address) -> None (slow path)
    tunnel_rx_fd: int  # raw protocol-4 socket: the fastpath's tunnel input
    raw_tx_fd: int  # IPPROTO_RAW IPv6 socket: the fastpath's tunnel output
    #: callable(ipv6_packet: bytes) -> None: one packet on raw_tx (slow path)
    raw_send: Any = field(default=None, kw_only=True)
    #: raw protocol-41 socket: the tunnel input of dual-stack MSs' IPv6 (-1: none)
    tunnel6_rx_fd: int = field(default=-1, kw_only=True)


class RoleSettings(Protocol):
    """What the runtime reads of a role's settings (DMPASettings and DLMAPSettings both fit)."""

    @property
    def node(self) -> NodeSettings: ...

    @property
    def peers(self) -> tuple[PeerSettings, ...]: ...

    @property
    def tunnel_mtu(self) -> int: ...


Tables = Mapping[str, Iterable[Mapping[str, Any]]]


class RoleCore(Core, Protocol):
    """A role's core as the runtime restores and reports it."""

    @property
    def counters(self) -> Counters: ...

    @property
    def heartbeat(self) -> HeartbeatMonitor: ...

    def restore(self, tables: Tables, now: float, wall: float) -> list[Action]: ...


def guard_for(
    node: NodeSettings, peers: Iterable[PeerSettings], counters: Counters
) -> SignalingGuard:
    """The RFC 4285 guard a node's settings describe (no protected peer: it passes all)."""
    return SignalingGuard(
        node.address,
        node.role == "dmpa",
        {p.address: p.spi for p in peers if p.spi is not None},
        node.keys,
        replay_window=node.replay_window,
        counters=counters,
    )


class NodeRuntime(Generic[S, P]):
    """One node: the data path, the runner, the timers, the readers and the shared actions.

    A role subclasses it and wires itself in :meth:`wire`, which the constructor calls last.
    """

    core: RoleCore
    #: What MH input goes to: the core, or what guards it (the DLMAP's PBU rate limit).
    mh_core: Core
    #: The user-space fastpath's engine and HoA table (:meth:`open_fastpath`).
    fastpath: Any
    table: Any
    #: What ``show`` lists one row per binding (or visitor) under.
    tables: ClassVar[tuple[str, ...]] = ("bindings",)

    def __init__(
        self,
        settings: S,
        ports: P,
        store: Store | PgStore,
        loop: asyncio.AbstractEventLoop,
        clock: Clock | None = None,
        fastpath: str = "auto",
    ) -> None:
        self.settings, self.ports, self.store, self.loop = settings, ports, store, loop
        self.clock = clock or Clock()
        self.counters = Counters()
        #: Monotonic time each HoA was bound here (or moved here), for ``show``'s age.
        self.bound_since: dict[IPv4Address, float] = {}
        self.dialects = {p.address: p.dialect for p in settings.peers}
        self.guard = guard_for(settings.node, settings.peers, self.counters)
        #: What an MH's source needs, in one lookup: the configured address object (the cores'
        #: later lookups by identity), its dialect, and whether its signaling is protected.
        self._peers = {
            address: (address, dialect, self.guard.protects(address))
            for address, dialect in self.dialects.items()
        }
        #: The data-path tiers, programmed in this order (the user-space one first).
        self.backends: list[DataPath] = []
        self._userspace: UserSpacePath | None = None
        #: Where SendFrame and SendTun write: the TAPs by access link (DMPA), the TUN (DLMAP).
        self.taps: Sequence[int] = ()
        self.tun = -1
        # what the slow path writes to a TAP or the TUN: a virtio-net header first under offload
        self._vnet = bytes(VNET_HDR_LEN) if settings.node.offload else b""
        self.runner = ActionRunner(
            loop,
            store,
            {
                SendMH: self._send_mh,
                SendTunnel: self._send_tunnel,
                Bind: self._bind,
                Unbind: self._unbind,
                BindPrefix: self._bind_prefix,
                UnbindPrefix: self._unbind_prefix,
                SendFrame: self._send_frame,
                SendTun: self._send_tun,
                Reinject: self._reinject,
            },
            self.counters,
        )
        self._timers: list[CoreTimer] = []
        self._readers: list[tuple[int, str, Callable[[], None]]] = []
        #: Registries shown in the ``node`` group with the runtime's own (the punt services').
        self.node_registries: list[Mapping[str, int]] = []
        self.wire(fastpath)

    # --- what a role wires ----------------------------------------------------------------

    def wire(self, fastpath: str) -> None:
        """The role's part: its core (``core``, ``mh_core``), its services, its fastpath engine
        (:meth:`open_fastpath`, twin ``fastpath``), its pumps, timers and action types."""
        raise NotImplementedError

    def open_fastpath(self, which: str, engine: str, *args: object) -> Any:
        """The user-space data path: the fastpath's ``engine`` (``Dlmap`` or ``Dmpa``, taking
        ``args`` after our address) of twin ``which``; returns the engine."""
        settings = self.settings
        path = UserSpacePath(
            which,
            engine,
            settings.node.address,
            *args,
            tunnel_mtu=settings.tunnel_mtu,
            peers=self.dialects,
            offload=settings.node.offload,
        )
        self._userspace = path
        self.backends.insert(0, path)
        self.fastpath, self.table = path.engine, path.table
        return path.engine

    def add_backend(self, backend: DataPath) -> None:
        """A tier beside the user-space one (the kernel tier), programmed after it."""
        self.backends.append(backend)

    @property
    def datapath(self) -> str:
        """The tier that forwards bound MSs: ``kernel`` or ``cython`` (``[node] datapath``)."""
        return "kernel" if any(b.name == "kernel" for b in self.backends) else "cython"

    def add_action(self, kind: type[T], handler: Callable[[T], None]) -> None:
        """Carry out the role's own action type ``kind`` (a service's) with ``handler``."""
        self.runner.handlers[kind] = handler

    def add_timer(
        self,
        get_timer: Callable[[], float | None],
        fire: Callable[[float, float], Sequence[object]],
    ) -> CoreTimer:
        """A timer for a core or a service, re-armed after every flush, cancelled at stop."""
        timer = CoreTimer(
            self.loop, self.clock, get_timer, fire, self.runner.submit, self.runner.boundary
        )
        self.runner.after_flush(timer.rearm)
        self._timers.append(timer)
        return timer

    def add_pump(
        self,
        fd: int,
        where: str,
        pump: Callable[[], tuple[int, int, Sequence[Punt]]],
        punted: Callable[[Punt, float, float], Sequence[object]],
    ) -> None:
        """From start on, when ``fd`` is readable: ``pump`` moves one batch through the fastpath
        (its result: received, sent, punted); ``punted`` (the role's slow path) turns each punt
        into actions. An exception is caught at the boundary and counted as ``where``."""

        def readable() -> None:
            punts = pump()[2]
            if punts:
                now, wall = self.clock.now(), self.clock.wall()
                for punt in punts:
                    self.runner.submit(punted(punt, now, wall))

        self._readers.append((fd, where, readable))

    # --- start and stop -------------------------------------------------------------------

    def restore(self, tables: Tables, now: float, wall: float) -> Sequence[object]:
        """The actions that bring the state saved in the store back (the core's, by default)."""
        return self.core.restore(tables, now, wall)

    def summary(self) -> dict[str, object]:
        """What the start line says of the node."""
        return {}

    def start(self) -> None:
        tables = {t: list(rows.values()) for t, rows in self.store.load().items()}
        batched = [b for b in self.backends if isinstance(b, Batched)]
        for backend in batched:  # the restore's binds: one batch call per such tier
            backend.hold()
        self.runner.submit(self.restore(tables, self.clock.now(), self.clock.wall()))
        guard = self.runner.boundary.wrap  # a bug in a handler drops the input, not the process
        for fd, where, readable in self._readers:
            self.loop.add_reader(fd, guard(where, readable))
        self.runner.flush()
        for backend in batched:
            backend.release()
        # the Restart Counter was not saved (heartbeat.py, rule 2); PostgreSQL: in flight
        if isinstance(self.store, Store) and self.store.backlog:
            self.core.heartbeat.unsaved(self.clock.wall())
        summary = {"datapath": self.datapath, **self.summary()}
        log.info("started role=%s %s", self.settings.node.role, kv(summary))

    def stop(self) -> None:
        for fd, _, _ in self._readers:
            self.loop.remove_reader(fd)
        for timer in self._timers:
            timer.cancel()
        self.runner.flush()
        self.runner.close()  # a write backlog: one last try before the store closes

    # --- inputs ---------------------------------------------------------------------------

    def on_mh(self, data: bytes, src: IPv6Address) -> None:
        """One received MH, decoded in the sender's dialect, checked, handed to the core.

        The kernel has verified the checksum already (wire-reference 3.2). A malformed message
        is counted and dropped; an unknown MH type is answered with a Binding Error by the core.
        A message from a protected peer (an SPI in its ``[peer]`` section) must pass the RFC 4285
        checks first (docs/protocol-auth.md): if not, it is counted (``auth.rx.<reason>``) and
        dropped, or, for a PBU at the DLMAP, answered with a PBA 146, 145 or 144.
        """
        self.counters[NodeCounter.MH_RX] += 1
        peer = self._peers.get(src)
        if peer is None:  # not a configured peer: the core refuses it (unprotected here)
            dialect, protected = DRAFT, False
        else:
            src, dialect, protected = peer
        wall = self.clock.wall()
        try:
            message = decode_message(data, dialect)
        except UnknownTypeError as exc:
            if not self.guard.reject_unknown_type(src, wall):
                self.runner.submit(
                    self.mh_core.receive_unknown_type(exc.type_value, src, self.clock.now())
                )
            return
        except DecodeError as exc:
            self.counters[MH_MALFORMED(type(exc).__name__)] += 1
            return
        if protected:
            reason = self.guard.check(data, message, src, wall)
            if reason is not None:
                reply = self.guard.failure_reply(message, reason, src, dialect, wall)
                if reply is not None:
                    self.runner.submit([SendMH(src, reply)])
                return
        self.runner.submit(self.mh_core.receive(message, src, self.clock.now(), wall))

    def reload_keys(self) -> bool:
        """Re-read the RFC 4285 key file (SIGHUP). On any problem the old keys stay (logged)."""
        path = self.settings.node.key_file
        if path is None:
            log.info("key_reload result=skipped reason=no_key_file")
            return False
        try:
            keys = read_key_file(path, self.guard.spis.values())
        except KeyFileError as exc:
            self.counters[NodeCounter.AUTH_RELOAD_ERROR] += 1
            for problem in exc.problems:
                log.error("key_reload result=refused old_keys=kept problem=%s", quote(problem))
            return False
        self.guard.keys = keys
        self.counters[NodeCounter.AUTH_RELOAD_OK] += 1
        spis = ",".join(str(spi) for spi in keys.spis)
        log.info("key_reload result=ok file=%s spis=%s", quote(path), spis)
        return True

    # --- the actions both roles carry out -------------------------------------------------

    def _send_mh(self, action: SendMH) -> None:
        self.counters[NodeCounter.MH_TX] += 1
        sealed = self.guard.seal(action.message, action.peer, self.clock.wall())
        self.ports.mh_send(sealed, action.peer)

    def _send_tunnel(self, action: SendTunnel) -> None:
        self.ports.tunnel_send(action.packet, action.peer)

    def _bind(self, action: Bind) -> None:
        if action.endpoint not in self.dialects:
            self.counters[NodeCounter.BIND_UNKNOWN_PEER] += 1
            return
        for backend in self.backends:
            backend.bind(action)
        self.bound_since[action.hoa] = self.clock.now()

    def _unbind(self, action: Unbind) -> None:
        for backend in self.backends:
            backend.unbind(action.hoa)
        self.bound_since.pop(action.hoa, None)

    def _bind_prefix(self, action: BindPrefix) -> None:
        """An IPv6 home network prefix, to the tiers that carry IPv6 (``bind_prefix``); the
        others leave IPv6 to the user-space tier."""
        if action.endpoint not in self.dialects:
            self.counters[NodeCounter.BIND_UNKNOWN_PEER] += 1
            return
        for backend in self.backends:
            bind_prefix = getattr(backend, "bind_prefix", None)
            if bind_prefix is not None:
                bind_prefix(action)

    def _unbind_prefix(self, action: UnbindPrefix) -> None:
        for backend in self.backends:
            unbind_prefix = getattr(backend, "unbind_prefix", None)
            if unbind_prefix is not None:
                unbind_prefix(action.prefix)

    def _send_frame(self, action: SendFrame) -> None:
        try:
            os.write(self.taps[action.link], self._vnet + action.frame)
        except (OSError, IndexError):
            self.counters[NodeCounter.TAP_TX_ERROR] += 1

    def _send_tun(self, action: SendTun) -> None:
        try:
            os.write(self.tun, self._vnet + action.packet)
        except OSError:
            self.counters[NodeCounter.TUN_TX_ERROR] += 1

    def _reinject(self, action: Reinject) -> None:
        if self._userspace is None:
            return
        packet = self._userspace.encapsulate(action.data, action.link)
        if packet is not None:
            self.ports.raw_send(packet)

    # --- show -----------------------------------------------------------------------------

    def packets(self, hoa: IPv4Address | None) -> int:
        """What the data path forwarded through ``hoa``'s binding, every tier together."""
        if hoa is None:
            return 0
        total = 0
        for backend in self.backends:
            entry = backend.lookup(hoa)
            if entry is not None:
                total += entry.packets
        return total

    def age(self, hoa: IPv4Address | None, now: float) -> float | None:
        """Seconds since ``hoa`` was bound here (None: it is not)."""
        since = self.bound_since.get(hoa) if hoa is not None else None
        return None if since is None else round(now - since, 1)

    def show(self, what: str) -> Any:
        """``netlmm show``: the counters, or the role's rows (:meth:`rows`)."""
        if what == "counters":
            return self.show_counters()
        if what in self.tables:
            return self.rows()
        raise KeyError(what)

    def rows(self) -> list[dict[str, object]]:
        """One row per binding (DLMAP) or visitor (DMPA)."""
        raise NotImplementedError

    def counter_groups(self) -> dict[str, object]:
        """The role's registries between ``core`` and the data path's in ``show counters``."""
        return {}

    def show_counters(self) -> dict[str, object]:
        node = Counter(self.counters)
        for registry in self.node_registries:
            node.update(registry)
        groups: dict[str, object] = {"node": dict(node), "core": dict(self.core.counters)}
        groups.update(self.counter_groups())
        for backend in self.backends:
            groups[backend.name] = backend.counters()
        groups["datapath"] = {f"tier.{tier}": int(tier == self.datapath) for tier in TIERS}
        return groups
