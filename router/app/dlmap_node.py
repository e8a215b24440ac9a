"""The DLMAP's wiring: its core behind the PBU rate limit, its DHCP service (built-in server or
relay), the fastpath's ``Dlmap`` engine and its slow path, on the node runtime
(:mod:`router.app.runtime`).

Kernel objects and sockets are made by :mod:`router.app.run` and handed in as :class:`DLMAPPorts`,
so a test can drive this node with socketpairs as well as the real process does.

Data paths (architecture.md): tunnel in (raw protocol-4 socket) -> ``pump_tunnel`` -> TUN, and
TUN -> ``pump_tun`` -> raw IPv6 socket; what the fastpath punts goes to
:class:`~router.services.dlmap_punts.DLMAPPunts` (DHCP from a DMPA to the DHCP service, TTL and
MTU problems to the IPv4 slow path).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address
from typing import Any

from router.adapters.store_pg import PgStore
from router.app.runner import RunnerCounter
from router.app.runtime import PUMP_BUDGET, NodeRuntime, Ports, Tables
from router.app.settings import DLMAPSettings
from router.core.aaa import LocalAAA
from router.core.dlmap import DLMAP, DLMAPConfig
from router.core.heartbeat import HeartbeatConfig
from router.core.limits import LimitedDLMAP
from router.core.pool import HoAPool
from router.core.prefix_pool import PrefixPool
from router.services.dhcp_relay import DhcpRelay, DhcpRelayConfig, SendToServer
from router.services.dhcp_server import DhcpServer, DhcpServerConfig
from router.services.dlmap_punts import DLMAPPunts


@dataclass
class DLMAPPorts(Ports):
    """The DLMAP's kernel handles: the runtime's and the TUN (its IPv4 side)."""

    tun_fd: int
    dhcp_server_send: Any = None  # callable(payload: bytes, server: IPv4Address, port: int)


class DLMAPNode(NodeRuntime[DLMAPSettings, DLMAPPorts]):
    """``DLMAPNode(settings, ports, store, loop, clock=None, fastpath="auto")``."""

    core: DLMAP
    _ha: Any = None

    @property
    def ha(self) -> Any:
        """The store's role in an active/standby pair (router.app.ha.HA), for ``show ha``."""
        return self._ha

    @ha.setter
    def ha(self, value: Any) -> None:
        self._ha = value
        store = getattr(value, "store", None)
        self.counters[RunnerCounter.STORE_EPOCH] = 0 if store is None else store.epoch
        if store is not None:
            value.attach(self.runner.submit, lambda: self.runner.fenced)

    def stop(self) -> None:
        if self._ha is not None:
            self._ha.stop()  # no ha_alive row after the last commit
        super().stop()

    def wire(self, fastpath: str) -> None:
        settings, ports = self.settings, self.ports
        self.tun = ports.tun_fd
        static = LocalAAA(settings.profiles).static_addresses()
        self.pool = HoAPool(settings.pool, static, settings.lease_time)
        prefixes = PrefixPool(settings.ipv6_pool) if settings.ipv6_pool is not None else None
        self.core = DLMAP(self._core_config(settings), self.pool, prefixes)
        limits = settings.limits
        #: The core behind the per-DMPA limit on PBUs for new NAIs (MH input goes through it).
        self.limited = LimitedDLMAP(
            self.core, limits.pbu_new_nai, limits.table_size, self.counters, self.dialects
        )
        self.mh_core = self.limited
        self.dhcp = self._dhcp(settings)
        engine = self.open_fastpath(fastpath, "Dlmap")
        self.punts = DLMAPPunts(
            self.dhcp, settings.gateway, settings.tunnel_mtu, settings.node.address
        )
        self.node_registries.append(self.punts.counters)
        self.add_action(SendToServer, self._send_to_server)
        self.timer = self.add_timer(self.core.get_timer, self.core.handle_timer)
        dhcp = self.dhcp
        self.dhcp_timer = self.add_timer(dhcp.get_timer, lambda now, wall: dhcp.handle_timer(now))
        rx, tun = ports.tunnel_rx_fd, ports.tun_fd
        tunnel = partial(engine.pump_tunnel, rx, tun, PUMP_BUDGET)
        self.add_pump(rx, "tunnel", tunnel, self.punts.from_tunnel)
        if ports.tunnel6_rx_fd >= 0:  # dual-stack MSs' IPv6 (next header 41), the same way
            rx6 = ports.tunnel6_rx_fd
            tunnel6 = partial(engine.pump_tunnel, rx6, tun, PUMP_BUDGET)
            self.add_pump(rx6, "tunnel6", tunnel6, self.punts.from_tunnel)
        to_tunnel = partial(engine.pump_tun, tun, ports.raw_tx_fd, PUMP_BUDGET)
        self.add_pump(tun, "tun", to_tunnel, self.punts.from_tun)

    def _core_config(self, settings: DLMAPSettings) -> DLMAPConfig:
        return DLMAPConfig(
            settings.node.address,
            settings.gateway,
            self.dialects,
            prefix_length=settings.network.prefixlen,
            max_lifetime=settings.max_lifetime,
            revocation_budget=settings.revocation_budget,
            bri_interval=settings.bri_interval,
            bri_retries=settings.bri_retries,
            heartbeat=HeartbeatConfig(settings.heartbeat_interval, settings.heartbeat_missing),
            # a shared database: a start or a takeover loses no state, the counter stays
            keep_restart_counter=isinstance(self.store, PgStore),
        )

    def _dhcp(self, settings: DLMAPSettings) -> DhcpServer | DhcpRelay:
        if settings.dhcp == "relay":
            return DhcpRelay(
                DhcpRelayConfig(
                    giaddr=settings.gateway,
                    servers=settings.dhcp_servers,
                    max_lifetime=settings.max_lifetime,
                ),
                self.pool,
            )
        return DhcpServer(
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

    # --- start ----------------------------------------------------------------------------

    def restore(self, tables: Tables, now: float, wall: float) -> list[object]:
        actions: list[object] = list(self.core.restore(tables, now, wall))
        if isinstance(self.dhcp, DhcpServer):
            self.dhcp.restore(tables, now, wall)
        return actions

    def summary(self) -> dict[str, object]:
        return {"bindings": len(self.core.bindings)}

    # --- inputs and outputs of the relay --------------------------------------------------

    def on_dhcp_from_server(self, data: bytes, server: IPv4Address) -> None:
        if isinstance(self.dhcp, DhcpRelay):
            now, wall = self.clock.now(), self.clock.wall()
            self.runner.submit(self.dhcp.receive_from_server(data, server, now, wall))

    def _send_to_server(self, action: SendToServer) -> None:
        if self.ports.dhcp_server_send is not None:
            self.ports.dhcp_server_send(action.payload, action.server, action.port)

    # --- show -----------------------------------------------------------------------------

    def rows(self) -> list[dict[str, object]]:
        now = self.clock.now()
        return [
            {
                "nai": b.nai,
                "hoa": str(b.hoa) if b.hoa is not None else None,
                "prefix": str(b.prefix) if b.prefix is not None else None,
                "dmpa": str(b.dmpa),
                "dialect": b.dialect,
                "sequence": b.sequence,
                "lifetime": b.lifetime,
                "expires_in": round(b.expires - now, 1),
                "age": self.age(b.hoa, now) or 0.0,
                "packets": self.packets(b.hoa),
            }
            for b in self.core.bindings.values()
        ]

    def show(self, what: str) -> Any:
        if what == "ha":
            return {"role": "single", "store": "sqlite"} if self.ha is None else self.ha.status()
        return super().show(what)

    def counter_groups(self) -> dict[str, object]:
        return {"dhcp": dict(self.dhcp.counters), "limits": self.limited.stats()}
