"""The DMPA's wiring: its core, the access services and their rate limits, AAA, the fastpath's
``Dmpa`` engine and its slow path, on the node runtime (:mod:`router.app.runtime`).

Data paths (architecture.md): each access link's TAP -> ``pump_access`` -> raw IPv6 socket, and
tunnel in (raw protocol-4 socket) -> ``pump_tunnel`` -> the MS's TAP. What the fastpath punts
goes to :class:`~router.services.dmpa_punts.DMPAPunts`: ARP, DHCP, ICMP to the gateway and
frames of an MS not yet registered to the access services (and through them to the core), DHCP
from the DLMAP back to the DHCP service, TTL and MTU problems to the IPv4 slow path; a PPPoE
link's PPPoE frames to its server (:mod:`router.app.pppoe_links`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from router.adapters.aaa import AAA
from router.adapters.store import Store
from router.app.authenticators import Authenticators
from router.app.pppoe_links import PPPoELinks
from router.app.runner import Clock
from router.app.runtime import PUMP_BUDGET, NodeRuntime, Ports
from router.app.settings import DMPASettings
from router.core.actions import AAARequest, BindPrefix, UnbindPrefix
from router.core.common import RateLimiter
from router.core.counters import Names
from router.core.dmpa import DMPA, DMPAConfig, Profile
from router.core.heartbeat import HeartbeatConfig
from router.core.limits import AccessLimits
from router.services.access import AccessDispatcher
from router.services.arp_proxy import ArpProxy
from router.services.dhcp_dmpa import DhcpDmpa, DhcpDmpaConfig
from router.services.dmpa_punts import DMPAPunts
from router.services.icmp_responder import IcmpResponder
from router.services.nd_proxy import NdConfig, NdProxy
from router.wire.ethernet import MacAddress

log = logging.getLogger("netlmm")


class AAACounter(Names):
    AAA_ERROR = "aaa.error"  # the AAA backend raised (the node's registry: ``node`` group)


@dataclass
class DMPAPorts(Ports):
    """The DMPA's kernel handles: the runtime's and a TAP per access link (index = position)."""

    tap_fds: list[int] = field(default_factory=list)


class DMPANode(NodeRuntime[DMPASettings, DMPAPorts]):
    core: DMPA
    tables = ("visitors", "bindings")

    def __init__(
        self,
        settings: DMPASettings,
        ports: DMPAPorts,
        store: Store,
        aaa: AAA,
        loop: asyncio.AbstractEventLoop,
        clock: Clock | None = None,
        fastpath: str = "auto",
    ) -> None:
        self.aaa = aaa
        self._aaa_tasks: set[asyncio.Task[None]] = set()
        self._log_limit = RateLimiter(10.0, capacity=64)
        super().__init__(settings, ports, store, loop, clock, fastpath)
        #: 802.1X (links with auth = 8021x): the RADIUS proxy and a hostapd monitor per link.
        self.authenticators = Authenticators(
            settings, loop, self.runner.boundary.wrap, self._authorized, self._deauthorized
        )
        self.node_registries.append(self.authenticators.node_counters)

    def wire(self, fastpath: str) -> None:
        settings, ports = self.settings, self.ports
        self.taps = ports.tap_fds
        heartbeat = HeartbeatConfig(settings.heartbeat_interval, settings.heartbeat_missing)
        self.core = self.mh_core = DMPA(
            DMPAConfig(
                settings.node.address,
                settings.pseudo_mac,
                settings.gateway,
                self.dialects,
                lifetime=settings.lifetime,
                heartbeat=heartbeat,
            )
        )
        self.limits = AccessLimits(settings.limits)
        #: RAs and NS answers for dual-stack MSs (profile ipv6 = yes).
        self.nd = NdProxy(self.core, NdConfig(settings.tunnel_mtu), random.random)
        self.access = AccessDispatcher(
            self.core,
            ArpProxy(self.core),
            IcmpResponder(prefix_length=settings.prefix_length),
            self._dhcp(settings),
            admission=self.limits,
            max_strangers=settings.limits.table_size,
            # An access link whose MSs authenticate at an authenticator (802.1X) is closed
            # until it says who is on it, even if the authenticator never comes up.
            gated=frozenset(i for i in range(len(settings.access)) if settings.auth(i) != "mac"),
            nd=self.nd,
        )
        engine = self.open_fastpath(
            fastpath, "Dmpa", settings.pseudo_mac.packed, int(settings.gateway)
        )
        self.punts = DMPAPunts(self.access, self.core, settings.gateway, settings.tunnel_mtu)
        self.node_registries.append(self.punts.counters)
        self.add_action(AAARequest, self._aaa_request)
        self.timer = self.add_timer(self.core.get_timer, self.core.handle_timer)
        self.nd_timer = self.add_timer(self.nd.get_timer, self.nd.handle_timer)
        #: PPPoE (auth = pppoe links): a server per link, AAA, IPCP after the PBA's Bind.
        self.pppoe = PPPoELinks(settings, self, engine)
        punted = partial(self.pppoe.punted, otherwise=self.punts.from_access)
        for link, tap in enumerate(ports.tap_fds):
            access = partial(engine.pump_access, tap, link, ports.raw_tx_fd, PUMP_BUDGET)
            self.add_pump(tap, "access", access, punted)
        tunnel = partial(engine.pump_tunnel, ports.tunnel_rx_fd, ports.tap_fds, PUMP_BUDGET)
        self.add_pump(ports.tunnel_rx_fd, "tunnel", tunnel, self.punts.from_tunnel)
        if ports.tunnel6_rx_fd >= 0:  # dual-stack MSs' IPv6 (next header 41)
            rx6 = ports.tunnel6_rx_fd
            tunnel6 = partial(engine.pump_tunnel, rx6, ports.tap_fds, PUMP_BUDGET)
            self.add_pump(rx6, "tunnel6", tunnel6, self.punts.from_tunnel)

    def _bind_prefix(self, action: BindPrefix) -> None:
        super()._bind_prefix(action)
        if action.mac is not None:  # the MS's prefix is bound: its first RA goes now
            self.runner.submit(self.nd.bound(action.mac, self.clock.now()))

    def _unbind_prefix(self, action: UnbindPrefix) -> None:
        super()._unbind_prefix(action)
        for visitor in self.core.visitors.values():
            if visitor.bound_prefix is None and visitor.prefix == action.prefix:
                self.nd.unbound(visitor.mac)

    def _dhcp(self, settings: DMPASettings) -> DhcpDmpa:
        config = DhcpDmpaConfig(
            prefix_length=settings.prefix_length,
            lease_time=min(settings.lease_time, settings.lifetime),
            dns_servers=settings.dns,
            link_names=settings.access,
            max_packet=settings.tunnel_mtu,
        )
        return DhcpDmpa(self.core, config)

    def summary(self) -> dict[str, object]:
        return {"visitors": len(self.core.visitors), "links": len(self.ports.tap_fds)}

    def stop(self) -> None:
        for task in self._aaa_tasks:
            task.cancel()
        self.authenticators.close()
        self.pppoe.close()
        super().stop()

    # --- AAA ------------------------------------------------------------------------------

    def _aaa_request(self, action: AAARequest) -> None:
        task = self.loop.create_task(self._authenticate(action.mac, action.nai))
        self._aaa_tasks.add(task)
        task.add_done_callback(self._aaa_tasks.discard)

    async def _authenticate(self, mac: MacAddress, nai: str | None) -> None:
        try:
            profile = await self.aaa.authenticate(mac, nai)
        except Exception as exc:
            self.counters[AAACounter.AAA_ERROR] += 1
            if self._log_limit.allow(type(exc).__name__, self.clock.now()):  # MSs trigger it
                log.warning("aaa_failed mac=%s error=%s", mac, exc)
            profile = None
        why = self.aaa.why_rejected(mac, nai) if profile is None else None
        try:
            now, wall = self.clock.now(), self.clock.wall()
            actions = self.core.aaa_result(mac, profile, now, wall, why)
        except Exception:
            self.runner.boundary.caught("aaa_result")
            return
        self.runner.submit(actions)

    # --- 802.1X: hostapd's events, with the profile from the RADIUS proxy -----------------

    def _authorized(self, mac: MacAddress, link: int, profile: Profile) -> None:
        now, wall = self.clock.now(), self.clock.wall()
        self.runner.submit(self.access.authorized(mac, link, profile, now, wall))

    def _deauthorized(self, mac: MacAddress, link: int) -> None:
        now, wall = self.clock.now(), self.clock.wall()
        self.runner.submit(self.access.deauthorized(mac, link, now, wall))

    # --- the base station's reports -------------------------------------------------------

    def associated(self, mac: str, link: str | None = None) -> dict[str, Any]:
        """Station ``mac`` associated with access link ``link`` (a name of ``[dmpa] access``;
        may be left out when there is one): see :meth:`AccessDispatcher.associated`. Raises
        ValueError for a MAC or link that does not parse or is not ours."""
        station = MacAddress.parse(mac)
        links = list(self.settings.access)
        if link is None:
            if len(links) != 1:
                raise ValueError(f"which access link? one of {', '.join(links)}")
            link = links[0]
        if link not in links:
            raise ValueError(f"{link!r} is not an access link (one of {', '.join(links)})")
        index = links.index(link)
        self.runner.submit(self.access.associated(station, index, self.clock.now()))
        visitor = self.core.visitor(station)
        return {
            "mac": str(station),
            "link": link,
            "state": visitor.state.value if visitor else None,
        }

    # --- show -----------------------------------------------------------------------------

    def rows(self) -> list[dict[str, object]]:
        now, links = self.clock.now(), self.settings.access
        return [
            {
                "mac": str(v.mac),
                "link": links[v.link] if v.link < len(links) else v.link,
                "nai": v.nai,
                "hoa": str(v.hoa) if v.hoa else None,
                "prefix": str(v.bound_prefix) if v.bound_prefix else None,
                "dlmap": str(v.tunnel_dst) if v.tunnel_dst else None,
                "state": v.state.value,
                "sequence": v.sequence,
                "gateway": str(v.gateway),
                "pseudo_mac": str(v.pseudo_mac),
                "lifetime": v.lifetime,
                "age": self.age(v.hoa, now),
                "packets": self.packets(v.hoa),
            }
            for v in self.core.visitors.values()
        ]

    def counter_groups(self) -> dict[str, object]:
        return {
            "access": dict(self.access.counters),
            "limits": self.limits.stats(),
            "aaa": dict(self.aaa.counters),
            **({"pppoe": dict(self.pppoe.counters)} if self.pppoe.servers else {}),
            **self.authenticators.counter_groups(),
        }
