"""A DLMAP and DMPAs wired together in memory, with a fake clock and no sockets.

Every message goes through the wire codec (encoded in the sender's dialect for that peer, with
its checksum, then decoded and checksum-verified by the receiver), so the pair tests exercise
the bytes as well as the state machines. Fastpath tables and databases are plain dicts that
apply the cores' actions, or a real :class:`router.adapters.store.Store` when given a folder.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from router.adapters.store import Store
from router.core.actions import (
    AAARequest,
    Action,
    Bind,
    BindPrefix,
    Event,
    Persist,
    SendMH,
    Unbind,
    UnbindPrefix,
)
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.dmpa import DMPA, DMPAConfig, Profile
from router.core.pool import HoAPool
from router.core.prefix_pool import PrefixPool
from router.wire.dialect import DRAFT, Dialect
from router.wire.errors import UnknownTypeError
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingAck, MobilityMessage, decode_message
from router.wire.mh_options import MobileNodeIdentifier

DLMAP_ADDRESS = IPv6Address("2001:db8:2::1")
DMPA1 = IPv6Address("2001:db8:1::1")
DMPA2 = IPv6Address("2001:db8:3::1")
GATEWAY = IPv4Address("192.0.2.1")
PSEUDO_MAC = MacAddress.parse("02:00:5e:00:00:01")
POOL = IPv4Network("192.0.2.0/28")  # 192.0.2.1 .. .14; .1 is the gateway, kept out below
WALL_OFFSET = 1_700_000_000.0

Node = DLMAP | DMPA


@dataclass
class Wire:
    src: IPv6Address
    dst: IPv6Address
    data: bytes
    message: MobilityMessage


@dataclass
class Pair:
    dialect: Dialect = DRAFT
    store_dir: Path | None = None
    static: dict[str, IPv4Address] = field(default_factory=dict)
    pool_ranges: list[tuple[IPv4Address, IPv4Address]] = field(
        default_factory=lambda: [(IPv4Address("192.0.2.2"), IPv4Address("192.0.2.14"))]
    )
    lease_time: float = 600.0
    #: The DLMAP's IPv6 home network prefixes (None: IPv4 only, V=0 refused).
    ipv6_pool: IPv6Network | None = None
    revocation_budget: float = 0.5
    now: float = 1000.0
    #: The DLMAP's IPv4 address, the default router its rfc5844 PBAs name (seed 3.4).
    dlmap_gateway: IPv4Address = GATEWAY
    #: Seconds each node's wall clock is ahead of the others (by node name; RFC 5213 5.5
    #: timestamps come from it): "dmpa2": -0.2 is a DMPA whose clock is 200 ms behind.
    skew: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.queue: deque[Wire] = deque()
        self.sent: list[Wire] = []
        self.events: list[tuple[str, Event]] = []
        self.fastpath: dict[str, dict[IPv4Address, tuple[IPv6Address, MacAddress | None]]] = {}
        #: The gateway each node's last Bind of a HoA named (None: the node's own).
        self.gateways: dict[str, dict[IPv4Address, IPv4Address | None]] = {}
        #: The IPv6 home network prefixes each node's data path forwards (BindPrefix).
        self.prefixes: dict[str, dict[IPv6Network, tuple[IPv6Address, MacAddress | None]]] = {}
        self.memory_db: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        self.stores: dict[str, Store] = {}
        self.profiles: dict[MacAddress, Profile] = {}
        self.lose: Callable[[Wire], bool] = lambda wire: False
        self.dlmap = self._new_dlmap()
        self.dmpas = {DMPA1: self._new_dmpa(DMPA1), DMPA2: self._new_dmpa(DMPA2)}

    # --- nodes ----------------------------------------------------------------------------

    @property
    def wall(self) -> float:
        return self.now + WALL_OFFSET

    def wall_of(self, node: Node) -> float:
        """``node``'s wall clock: the common one plus its skew."""
        return self.wall + self.skew.get(self.name(node), 0.0)

    def _new_dlmap(self) -> DLMAP:
        config = DLMAPConfig(
            DLMAP_ADDRESS,
            self.dlmap_gateway,
            {DMPA1: self.dialect, DMPA2: self.dialect},
            prefix_length=28,
            revocation_budget=self.revocation_budget,
        )
        prefixes = PrefixPool(self.ipv6_pool) if self.ipv6_pool is not None else None
        return DLMAP(config, HoAPool(self.pool_ranges, self.static, self.lease_time), prefixes)

    def _new_dmpa(self, address: IPv6Address) -> DMPA:
        return DMPA(DMPAConfig(address, PSEUDO_MAC, GATEWAY, {DLMAP_ADDRESS: self.dialect}))

    def name(self, node: Node) -> str:
        if node is self.dlmap:
            return "dlmap"
        return next(f"dmpa{i}" for i, d in enumerate(self.dmpas.values(), 1) if d is node)

    def address(self, node: Node) -> IPv6Address:
        return node.config.address

    def node_at(self, address: IPv6Address) -> Node:
        return self.dlmap if address == DLMAP_ADDRESS else self.dmpas[address]

    def db(self, name: str) -> dict[str, dict[str, dict[str, Any]]]:
        if self.store_dir is not None:
            return self._store(name).load()
        return self.memory_db.setdefault(name, {})

    def _store(self, name: str) -> Store:
        assert self.store_dir is not None
        if name not in self.stores:
            self.stores[name] = Store(self.store_dir / f"{name}.sqlite")
        return self.stores[name]

    def restart_dlmap(self) -> None:
        """A new DLMAP process: only what the database holds survives."""
        self.fastpath["dlmap"] = {}
        self.prefixes["dlmap"] = {}
        if "dlmap" in self.stores:
            self.stores.pop("dlmap").close()
        tables = {t: list(rows.values()) for t, rows in self.db("dlmap").items()}
        self.dlmap = self._new_dlmap()
        self.apply(self.dlmap, self.dlmap.restore(tables, self.now, self.wall_of(self.dlmap)))

    def restart_dmpa(self, address: IPv6Address) -> None:
        name = self.name(self.dmpas[address])
        self.fastpath[name] = {}
        self.prefixes[name] = {}
        if name in self.stores:
            self.stores.pop(name).close()
        tables = {t: list(rows.values()) for t, rows in self.db(name).items()}
        self.dmpas[address] = self._new_dmpa(address)
        dmpa = self.dmpas[address]
        self.apply(dmpa, dmpa.restore(tables, self.now, self.wall_of(dmpa)))

    # --- actions --------------------------------------------------------------------------

    def apply(self, node: Node, actions: Iterable[Action]) -> None:
        name = self.name(node)
        table = self.fastpath.setdefault(name, {})
        persists: list[Persist] = []
        for action in actions:
            if isinstance(action, Persist):
                persists.append(action)
                continue
            self._flush(name, persists)
            if isinstance(action, SendMH):
                self._check_durable(name, action)
                self._send(node, action)
            elif isinstance(action, Bind):
                table[action.hoa] = (action.endpoint, action.mac)
                self.gateways.setdefault(name, {})[action.hoa] = action.gateway
            elif isinstance(action, Unbind):
                table.pop(action.hoa, None)
            elif isinstance(action, BindPrefix):
                self.prefixes.setdefault(name, {})[action.prefix] = (action.endpoint, action.mac)
            elif isinstance(action, UnbindPrefix):
                self.prefixes.setdefault(name, {}).pop(action.prefix, None)
            elif isinstance(action, AAARequest):
                assert isinstance(node, DMPA)
                profile = self.profiles.get(action.mac)
                self.apply(node, node.aaa_result(action.mac, profile, self.now, self.wall_of(node)))
            elif isinstance(action, Event):
                self.events.append((name, action))
        self._flush(name, persists)

    def _flush(self, name: str, persists: list[Persist]) -> None:
        if not persists:
            return
        if self.store_dir is not None:
            self._store(name).apply(persists)
        else:
            db = self.memory_db.setdefault(name, {})
            for p in persists:
                rows = db.setdefault(p.table, {})
                if p.record is None:
                    rows.pop(p.key, None)
                else:
                    rows[p.key] = dict(p.record)
        persists.clear()

    def _check_durable(self, name: str, action: SendMH) -> None:
        """A binding is on disk before its PBA leaves (the Persist-before-SendMH contract)."""
        message = action.message
        if not (name == "dlmap" and isinstance(message, BindingAck)):
            return
        if message.accepted and message.lifetime > 0:
            mn_id = message.find(MobileNodeIdentifier)
            assert mn_id is not None and mn_id.nai is not None
            row = self.db("dlmap").get("binding", {}).get(mn_id.nai)
            assert row is not None, f"PBA for {mn_id.nai} sent before its binding was persisted"
            assert row["sequence"] == self.dlmap.bindings[mn_id.nai].sequence

    def _send(self, node: Node, action: SendMH) -> None:
        src = self.address(node)
        data = action.message.encode(src, action.peer)
        wire = Wire(src, action.peer, data, action.message)
        self.sent.append(wire)
        self.queue.append(wire)

    # --- the network and the clock --------------------------------------------------------

    def deliver(self, limit: int = 1000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            wire = self.queue.popleft()
            if self.lose(wire):
                continue
            node = self.node_at(wire.dst)
            dialect = node.config.peers.get(wire.src, self.dialect)
            try:
                message = decode_message(wire.data, dialect, src=wire.src, dst=wire.dst)
            except UnknownTypeError as exc:
                self.apply(node, node.receive_unknown_type(exc.type_value, wire.src, self.now))
                continue
            self.apply(node, node.receive(message, wire.src, self.now, self.wall_of(node)))
        raise AssertionError("message storm: more than the delivery limit")

    def nodes(self) -> list[Node]:
        return [self.dlmap, *self.dmpas.values()]

    def advance(self, seconds: float, limit: int = 10_000) -> None:
        """Run the clock forward, firing every timer on the way, delivering as messages go."""
        end = self.now + seconds
        self.deliver()
        for _ in range(limit):
            deadlines = [d for d in (n.get_timer() for n in self.nodes()) if d is not None]
            soonest = min(deadlines, default=None)
            if soonest is None or soonest > end:
                self.now = end
                return
            self.now = max(self.now, soonest)
            for node in self.nodes():
                self.apply(node, node.handle_timer(self.now, self.wall_of(node)))
            self.deliver()
        raise AssertionError("timer storm: more than the timer limit")

    # --- conveniences ---------------------------------------------------------------------

    def attach(
        self, mac: MacAddress, at: IPv6Address, link: int = 1, address: IPv4Address | None = None
    ) -> None:
        dmpa = self.dmpas[at]
        self.apply(dmpa, dmpa.attach(mac, link, self.now, address))
        self.deliver()

    def detach(self, mac: MacAddress, at: IPv6Address) -> None:
        dmpa = self.dmpas[at]
        self.apply(dmpa, dmpa.detach(mac, self.now, self.wall_of(dmpa)))
        self.deliver()

    def messages(self, kind: type[MobilityMessage], dst: IPv6Address | None = None) -> list[Any]:
        return [
            w.message
            for w in self.sent
            if isinstance(w.message, kind) and (dst is None or w.dst == dst)
        ]

    def event_kinds(self, node: str) -> list[str]:
        return [e.kind for n, e in self.events if n == node]
