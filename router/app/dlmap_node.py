"""The DLMAP composition root: core, DHCP service, fastpath and store, wired to their fds.

Kernel objects and sockets are made by :mod:`router.app.run` and handed in as :class:`DLMAPPorts`,
so this class can be driven by a test with socketpairs as well as by the real process.

Data paths (architecture.md): tunnel in (raw protocol-4 socket) -> ``pump_tunnel`` -> TUN, and
TUN -> ``pump_tun`` -> raw IPv6 socket; what the fastpath punts comes here: DHCP from a DMPA
goes to the built-in server or the relay, a TTL or MTU problem to the IPv4 slow path.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from fastpath import Punt, Reason, implementation
from router.adapters.devices import VNET_HDR_LEN
from router.adapters.store import Store
from router.app.limits import LimitedDLMAP
from router.app.node import ActionRunner, Clock, CoreTimer, log, receive_mh
from router.app.security import guard_for
from router.app.settings import DLMAPSettings
from router.core.aaa import LocalAAA
from router.core.actions import Bind, SendMH, SendTunnel, Unbind
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.heartbeat import HeartbeatConfig
from router.core.pool import HoAPool
from router.services.dhcp_relay import DhcpRelay, DhcpRelayConfig, SendToServer
from router.services.dhcp_server import DhcpServer, DhcpServerConfig
from router.services.ipv4_slowpath import fragment, icmp_error
from router.wire.dialect import DRAFT

PUMP_BUDGET = 64


@dataclass
class DLMAPPorts:
    """The process's kernel handles: all non-blocking."""

    mh_send: Any  # callable(data: bytes, dst: IPv6Address) -> None
    tunnel_send: Any  # callable(inner_ipv4: bytes, dst: IPv6Address) -> None (slow path)
    tunnel_rx_fd: int  # raw protocol-4 socket: the fastpath's tunnel input
    raw_tx_fd: int  # IPPROTO_RAW IPv6 socket: the fastpath's tunnel output
    tun_fd: int
    dhcp_server_send: Any = None  # callable(payload: bytes, server: IPv4Address, port: int)
    raw_send: Any = None  # callable(ipv6_packet: bytes) -> None: one packet on raw_tx (slow path)


class DLMAPNode:
    def __init__(
        self,
        settings: DLMAPSettings,
        ports: DLMAPPorts,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        clock: Clock | None = None,
        fastpath: str = "auto",
    ) -> None:
        self.settings, self.ports, self.store, self.loop = settings, ports, store, loop
        self.clock = clock or Clock()
        self.counters: Counter[str] = Counter()
        #: Monotonic time each HoA was bound (or moved) here, for ``show bindings``' age.
        self.bound_since: dict[IPv4Address, float] = {}
        self.dialects = {p.address: p.dialect for p in settings.peers}
        self.guard = guard_for(settings.node, settings.peers, self.clock.wall, self.counters)
        static = LocalAAA(settings.profiles).static_addresses()
        self.pool = HoAPool(settings.pool, static, settings.lease_time)
        config = DLMAPConfig(
            settings.node.address,
            settings.gateway,
            self.dialects,
            prefix_length=settings.network.prefixlen,
            max_lifetime=settings.max_lifetime,
            revocation_budget=settings.revocation_budget,
            bri_interval=settings.bri_interval,
            bri_retries=settings.bri_retries,
            heartbeat=HeartbeatConfig(settings.heartbeat_interval, settings.heartbeat_missing),
        )
        self.core = DLMAP(config, self.pool)
        limits = settings.limits
        #: The core behind the per-DMPA limit on PBUs for new NAIs (MH input goes through it).
        self.limited = LimitedDLMAP(
            self.core, limits.pbu_new_nai, limits.table_size, self.counters, self.dialects
        )
        self.dhcp: DhcpServer | DhcpRelay
        if settings.dhcp == "relay":
            self.dhcp = DhcpRelay(
                DhcpRelayConfig(
                    giaddr=settings.gateway,
                    servers=settings.dhcp_servers,
                    max_lifetime=settings.max_lifetime,
                ),
                self.pool,
            )
        else:
            self.dhcp = DhcpServer(
                DhcpServerConfig(
                    server_id=settings.gateway,
                    gateway=settings.gateway,
                    network=settings.network,
                    lease_time=settings.lease_time,
                    max_lifetime=settings.max_lifetime,
                    # the server's one-minute floor cannot exceed the lease the config allows
                    # (dlmap.lease_time = 30 is valid: it must not stop the DLMAP at start)
                    min_lease=min(60, settings.lease_time, settings.max_lifetime),
                    dns=settings.dns,
                    dmpas=frozenset(self.dialects),
                ),
                self.pool,
            )
        fp = implementation(fastpath)
        self.table = fp.HoaTable()
        self.fastpath = fp.Dlmap(
            self.table,
            settings.node.address.packed,
            tunnel_mtu=settings.tunnel_mtu,
            peers=[a.packed for a in self.dialects],
            vnet_hdr=settings.node.offload,
            # merge TCP segments on the TAP/TUN writes (offload only); NETLMM_COALESCE=0
            # turns it off, for A/B measurements
            coalesce=os.environ.get("NETLMM_COALESCE", "1") != "0",
        )
        # what the slow path writes to the TUN: a virtio-net header first under offload
        self._vnet = bytes(VNET_HDR_LEN) if settings.node.offload else b""
        self.runner = ActionRunner(
            loop,
            store,
            {
                SendMH: self._send_mh,
                SendTunnel: self._send_tunnel,
                Bind: self._bind,
                Unbind: self._unbind,
                SendToServer: self._send_to_server,
            },
            self.counters,
        )
        self.timer = CoreTimer(
            loop,
            self.clock,
            self.core.get_timer,
            self.core.handle_timer,
            self.runner.submit,
            self.runner.boundary,
        )
        dhcp = self.dhcp
        self.dhcp_timer = CoreTimer(
            loop,
            self.clock,
            dhcp.get_timer,
            lambda now, wall: dhcp.handle_timer(now),
            self.runner.submit,
            self.runner.boundary,
        )
        self.runner.after_flush(self.timer.rearm)
        self.runner.after_flush(self.dhcp_timer.rearm)

    # --- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        tables = {t: list(rows.values()) for t, rows in self.store.load().items()}
        now, wall = self.clock.now(), self.clock.wall()
        self.runner.submit(self.core.restore(tables, now, wall))
        if isinstance(self.dhcp, DhcpServer):
            self.dhcp.restore(tables, now, wall)
        guard = self.runner.boundary.wrap  # a bug in a handler drops the input, not the process
        self.loop.add_reader(self.ports.tunnel_rx_fd, guard("tunnel", self._tunnel_readable))
        self.loop.add_reader(self.ports.tun_fd, guard("tun", self._tun_readable))
        self.runner.flush()
        if self.store.backlog:  # the Restart Counter was not saved (heartbeat.py, rule 2)
            self.core.heartbeat.unsaved(self.clock.wall())
        log.info("dlmap started bindings=%d", len(self.core.bindings))

    def stop(self) -> None:
        for fd in (self.ports.tunnel_rx_fd, self.ports.tun_fd):
            self.loop.remove_reader(fd)
        self.timer.cancel()
        self.dhcp_timer.cancel()
        self.runner.flush()
        self.runner.close()  # a write backlog: one last try before the store closes

    # --- inputs ---------------------------------------------------------------------------

    def on_mh(self, data: bytes, src: IPv6Address) -> None:
        actions = receive_mh(
            self.limited, data, src, self.dialects, DRAFT, self.clock, self.counters, self.guard
        )
        self.runner.submit(actions)

    def on_dhcp_from_server(self, data: bytes, server: IPv4Address) -> None:
        if isinstance(self.dhcp, DhcpRelay):
            now, wall = self.clock.now(), self.clock.wall()
            self.runner.submit(self.dhcp.receive_from_server(data, server, now, wall))

    def _tunnel_readable(self) -> None:
        _, _, punts = self.fastpath.pump_tunnel(
            self.ports.tunnel_rx_fd, self.ports.tun_fd, PUMP_BUDGET
        )
        for punt in punts:
            self._punt(punt, from_tunnel=True)

    def _tun_readable(self) -> None:
        _, _, punts = self.fastpath.pump_tun(self.ports.tun_fd, self.ports.raw_tx_fd, PUMP_BUDGET)
        for punt in punts:
            self._punt(punt, from_tunnel=False)

    def _punt(self, punt: Punt, *, from_tunnel: bool) -> None:
        reason = Reason(punt.reason)
        self.counters[f"punt.{reason.name.lower()}"] += 1
        now, wall = self.clock.now(), self.clock.wall()
        if reason is Reason.DHCP and from_tunnel:
            dmpa = IPv6Address(punt.source)
            if isinstance(self.dhcp, DhcpRelay):
                self.runner.submit(self.dhcp.receive_from_dmpa(punt.data, dmpa, now))
            else:
                self.runner.submit(self.dhcp.receive(punt.data, dmpa, now, wall))
        elif reason is Reason.FRAGMENT and not from_tunnel:
            for piece in fragment(punt.data, self.fastpath.tunnel_mtu):
                self._forward_to_tunnel(piece)
        elif reason in (Reason.FRAG_NEEDED, Reason.TTL_EXPIRED):
            kind = "ttl" if reason is Reason.TTL_EXPIRED else "frag_needed"
            reply = icmp_error(kind, punt.data, self.settings.gateway, self.fastpath.tunnel_mtu)
            if reply is not None:
                self._write_tun(reply)

    def _forward_to_tunnel(self, packet: bytes) -> None:
        out = bytearray(2048 + 40)
        verdict, _, length, _ = self.fastpath.from_tun(packet, out)
        if verdict == 0:  # forwarded: ``out`` holds the whole IPv6 packet
            self.ports.raw_send(bytes(out[:length]))

    def _write_tun(self, packet: bytes) -> None:
        try:
            os.write(self.ports.tun_fd, self._vnet + packet)
        except OSError:
            self.counters["tun.tx_error"] += 1

    # --- actions --------------------------------------------------------------------------

    def _send_mh(self, action: SendMH) -> None:
        self.counters["mh.tx"] += 1
        self.ports.mh_send(self.guard.seal(action.message, action.peer), action.peer)

    def _send_tunnel(self, action: SendTunnel) -> None:
        self.ports.tunnel_send(action.packet, action.peer)

    def _send_to_server(self, action: SendToServer) -> None:
        if self.ports.dhcp_server_send is not None:
            self.ports.dhcp_server_send(action.payload, action.server, action.port)

    def _bind(self, action: Bind) -> None:
        if action.endpoint not in self.dialects:
            # A binding restored for a DMPA since removed from the config: the fastpath would
            # take tunnel packets from an address that is no known DMPA (issue 8).
            self.counters["bind.unknown_peer"] += 1
            return
        self.table.bind(int(action.hoa), action.endpoint.packed)
        self.bound_since[action.hoa] = self.clock.now()

    def _unbind(self, action: Unbind) -> None:
        self.table.unbind(int(action.hoa))
        self.bound_since.pop(action.hoa, None)

    # --- show -----------------------------------------------------------------------------

    def show(self, what: str) -> Any:
        now = self.clock.now()
        if what == "bindings":
            rows = []
            for b in self.core.bindings.values():
                entry = self.table.lookup(int(b.hoa))
                rows.append(
                    {
                        "nai": b.nai,
                        "hoa": str(b.hoa),
                        "dmpa": str(b.dmpa),
                        "dialect": b.dialect,
                        "sequence": b.sequence,
                        "lifetime": b.lifetime,
                        "expires_in": round(b.expires - now, 1),
                        "age": round(now - self.bound_since.get(b.hoa, now), 1),
                        "packets": entry.packets if entry else 0,
                    }
                )
            return rows
        if what == "counters":
            return {
                "node": dict(self.counters),
                "core": dict(self.core.counters),
                "dhcp": dict(self.dhcp.counters),
                "limits": self.limited.stats(),
                "fastpath": self.fastpath.counters(),
            }
        raise KeyError(what)
