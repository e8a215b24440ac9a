"""The DMPA composition root: core, access services, AAA, fastpath and store, wired to fds.

Data paths (architecture.md): each access link's TAP -> ``pump_access`` -> raw IPv6 socket, and
tunnel in (raw protocol-4 socket) -> ``pump_tunnel`` -> the MS's TAP. What the fastpath punts
comes here: ARP, DHCP, ICMP to the gateway and frames of an MS not yet registered go to the
access services (and through them to the core), DHCP from the DLMAP back to the DHCP service,
TTL and MTU problems to the IPv4 slow path.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from fastpath import Punt, Reason, implementation
from router.adapters.aaa import AAA
from router.adapters.devices import VNET_HDR_LEN
from router.adapters.store import Store
from router.app.limits import AccessLimits
from router.app.node import ActionRunner, Clock, CoreTimer, log, receive_mh
from router.app.security import guard_for
from router.app.settings import DMPASettings
from router.core.actions import AAARequest, Bind, SendFrame, SendMH, SendTunnel, Unbind
from router.core.common import RateLimiter
from router.core.dmpa import DMPA, DMPAConfig, State
from router.core.heartbeat import HeartbeatConfig
from router.services.access import AccessDispatcher
from router.services.arp_proxy import ArpProxy
from router.services.dhcp_dmpa import DhcpDmpa, DhcpDmpaConfig
from router.services.icmp_responder import IcmpResponder
from router.services.ipv4_slowpath import fragment, icmp_error
from router.wire.dialect import DRAFT
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, EtherType, MacAddress

PUMP_BUDGET = 64


@dataclass
class DMPAPorts:
    """The process's kernel handles: all non-blocking. Link index = position in ``tap_fds``."""

    mh_send: Any  # callable(data: bytes, dst: IPv6Address) -> None
    tunnel_send: Any  # callable(inner_ipv4: bytes, dst: IPv6Address) -> None (slow path)
    tunnel_rx_fd: int  # raw protocol-4 socket: the fastpath's tunnel input
    raw_tx_fd: int  # IPPROTO_RAW IPv6 socket: the fastpath's tunnel output
    tap_fds: list[int] = field(default_factory=list)
    raw_send: Any = None  # callable(ipv6_packet: bytes) -> None: one packet on raw_tx (slow path)


class DMPANode:
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
        self.settings, self.ports, self.store, self.aaa, self.loop = (
            settings,
            ports,
            store,
            aaa,
            loop,
        )
        self.clock = clock or Clock()
        self.counters: Counter[str] = Counter()
        #: Monotonic time each HoA was bound here, for ``show bindings``' age.
        self.bound_since: dict[IPv4Address, float] = {}
        self.dialects = {p.address: p.dialect for p in settings.peers}
        self.guard = guard_for(settings.node, settings.peers, self.clock.wall, self.counters)
        self.core = DMPA(
            DMPAConfig(
                settings.node.address,
                settings.pseudo_mac,
                settings.gateway,
                self.dialects,
                lifetime=settings.lifetime,
                heartbeat=HeartbeatConfig(settings.heartbeat_interval, settings.heartbeat_missing),
            )
        )
        dhcp = DhcpDmpa(
            self.core,
            DhcpDmpaConfig(
                prefix_length=settings.prefix_length,
                lease_time=min(settings.lease_time, settings.lifetime),
                dns_servers=settings.dns,
                link_names=settings.access,
                max_packet=settings.tunnel_mtu,
            ),
        )
        self.limits = AccessLimits(settings.limits)
        self.access = AccessDispatcher(
            self.core,
            ArpProxy(self.core),
            IcmpResponder(),
            dhcp,
            admission=self.limits,
            max_strangers=settings.limits.table_size,
        )
        fp = implementation(fastpath)
        self.table = fp.HoaTable()
        self.fastpath = fp.Dmpa(
            self.table,
            settings.node.address.packed,
            settings.pseudo_mac.packed,
            int(settings.gateway),
            tunnel_mtu=settings.tunnel_mtu,
            peers=[a.packed for a in self.dialects],
            vnet_hdr=settings.node.offload,
            # merge TCP segments on the TAP/TUN writes (offload only); NETLMM_COALESCE=0
            # turns it off, for A/B measurements
            coalesce=os.environ.get("NETLMM_COALESCE", "1") != "0",
        )
        # what the slow path writes to a TAP: a virtio-net header first under offload
        self._vnet = bytes(VNET_HDR_LEN) if settings.node.offload else b""
        self.runner = ActionRunner(
            loop,
            store,
            {
                SendMH: self._send_mh,
                SendTunnel: self._send_tunnel,
                SendFrame: self._send_frame,
                Bind: self._bind,
                Unbind: self._unbind,
                AAARequest: self._aaa_request,
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
        self.runner.after_flush(self.timer.rearm)
        self._aaa_tasks: set[asyncio.Task[None]] = set()
        self._log_limit = RateLimiter(10.0, capacity=64)

    # --- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        tables = {t: list(rows.values()) for t, rows in self.store.load().items()}
        self.runner.submit(self.core.restore(tables, self.clock.now(), self.clock.wall()))
        guard = self.runner.boundary.wrap  # a bug in a handler drops the input, not the process
        for link, fd in enumerate(self.ports.tap_fds):
            self.loop.add_reader(fd, guard("access", self._access_readable), link)
        self.loop.add_reader(self.ports.tunnel_rx_fd, guard("tunnel", self._tunnel_readable))
        self.runner.flush()
        if self.store.backlog:  # the Restart Counter was not saved (heartbeat.py, rule 2)
            self.core.heartbeat.unsaved(self.clock.wall())
        log.info(
            "dmpa started visitors=%d links=%d", len(self.core.visitors), len(self.ports.tap_fds)
        )

    def stop(self) -> None:
        for fd in (*self.ports.tap_fds, self.ports.tunnel_rx_fd):
            self.loop.remove_reader(fd)
        self.timer.cancel()
        for task in self._aaa_tasks:
            task.cancel()
        self.runner.flush()
        self.runner.close()  # a write backlog: one last try before the store closes

    # --- inputs ---------------------------------------------------------------------------

    def on_mh(self, data: bytes, src: IPv6Address) -> None:
        actions = receive_mh(
            self.core, data, src, self.dialects, DRAFT, self.clock, self.counters, self.guard
        )
        self.runner.submit(actions)

    def _access_readable(self, link: int) -> None:
        _, _, punts = self.fastpath.pump_access(
            self.ports.tap_fds[link], link, self.ports.raw_tx_fd, PUMP_BUDGET
        )
        for punt in punts:
            self._punt_access(punt)

    def _tunnel_readable(self) -> None:
        _, _, punts = self.fastpath.pump_tunnel(
            self.ports.tunnel_rx_fd, self.ports.tap_fds, PUMP_BUDGET
        )
        now, wall = self.clock.now(), self.clock.wall()
        for punt in punts:
            reason = Reason(punt.reason)
            self.counters[f"punt.tunnel.{reason.name.lower()}"] += 1
            if reason is Reason.DHCP:
                src = IPv6Address(punt.source)
                self.runner.submit(self.access.receive_tunnel(punt.data, src, now, wall))

    def _punt_access(self, punt: Punt) -> None:
        reason = Reason(punt.reason)
        self.counters[f"punt.access.{reason.name.lower()}"] += 1
        now, wall = self.clock.now(), self.clock.wall()
        if reason in (Reason.ARP, Reason.DHCP, Reason.ICMP_GATEWAY, Reason.UNKNOWN_MS):
            self.runner.submit(self.access.receive_frame(punt.data, punt.link, now, wall))
            return
        # The rest concern the IPv4 packet inside the frame: TTL and tunnel MTU.
        try:
            frame = EthernetFrame.decode(punt.data)
        except DecodeError:  # the fastpath only punts frames it parsed; counted if not
            self.counters["punt.access.undecodable"] += 1
            return
        if frame.ethertype != EtherType.IPV4:
            return
        if reason is Reason.FRAGMENT:
            visitor = self.core.visitors.get(frame.src)
            if (
                visitor is None
                or visitor.tunnel_dst is None
                or visitor.state is not State.REGISTERED
            ):
                return
            for piece in fragment(frame.payload, self.fastpath.tunnel_mtu):
                self._forward_from_access(frame, piece, punt.link)
        elif reason in (Reason.FRAG_NEEDED, Reason.TTL_EXPIRED):
            kind = "ttl" if reason is Reason.TTL_EXPIRED else "frag_needed"
            mtu = self.fastpath.tunnel_mtu
            reply = icmp_error(kind, frame.payload, self.settings.gateway, mtu)
            if reply is not None:
                out = EthernetFrame(frame.src, self.settings.pseudo_mac, EtherType.IPV4, reply)
                self._write_tap(punt.link, out.encode())

    def _forward_from_access(self, frame: EthernetFrame, packet: bytes, link: int) -> None:
        rebuilt = EthernetFrame(frame.dst, frame.src, EtherType.IPV4, packet).encode()
        out = bytearray(2048 + 40)
        verdict, _, length, _ = self.fastpath.from_access(rebuilt, link, out)
        if verdict == 0:
            self.ports.raw_send(bytes(out[:length]))

    def _write_tap(self, link: int, frame: bytes) -> None:
        try:
            os.write(self.ports.tap_fds[link], self._vnet + frame)
        except (OSError, IndexError):
            self.counters["tap.tx_error"] += 1

    # --- actions --------------------------------------------------------------------------

    def _send_mh(self, action: SendMH) -> None:
        self.counters["mh.tx"] += 1
        self.ports.mh_send(self.guard.seal(action.message, action.peer), action.peer)

    def _send_tunnel(self, action: SendTunnel) -> None:
        self.ports.tunnel_send(action.packet, action.peer)

    def _send_frame(self, action: SendFrame) -> None:
        self._write_tap(action.link, action.frame)

    def _bind(self, action: Bind) -> None:
        if action.endpoint not in self.dialects:
            # A visitor restored for a DLMAP since removed from the config: the fastpath would
            # take tunnel packets for it from an address that is no known DLMAP (issue 8).
            self.counters["bind.unknown_peer"] += 1
            return
        mac = action.mac.packed if action.mac is not None else bytes(6)
        self.table.bind(int(action.hoa), action.endpoint.packed, mac, action.link)
        self.bound_since[action.hoa] = self.clock.now()

    def _unbind(self, action: Unbind) -> None:
        self.table.unbind(int(action.hoa))
        self.bound_since.pop(action.hoa, None)

    def _aaa_request(self, action: AAARequest) -> None:
        task = self.loop.create_task(self._authenticate(action.mac, action.nai))
        self._aaa_tasks.add(task)
        task.add_done_callback(self._aaa_tasks.discard)

    async def _authenticate(self, mac: MacAddress, nai: str | None) -> None:
        try:
            profile = await self.aaa.authenticate(mac, nai)
        except Exception as exc:
            self.counters["aaa.error"] += 1
            if self._log_limit.allow(type(exc).__name__, self.clock.now()):  # MSs trigger it
                log.warning("aaa failed mac=%s error=%s", mac, exc)
            profile = None
        try:
            actions = self.core.aaa_result(mac, profile, self.clock.now(), self.clock.wall())
        except Exception:
            self.runner.boundary.caught("aaa_result")
            return
        self.runner.submit(actions)

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
        visitor = self.core.visitors.get(station)
        return {
            "mac": str(station),
            "link": link,
            "state": visitor.state.value if visitor else None,
        }

    # --- show -----------------------------------------------------------------------------

    def show(self, what: str) -> Any:
        now = self.clock.now()
        if what in ("visitors", "bindings"):
            rows = []
            for v in self.core.visitors.values():
                entry = self.table.lookup(int(v.hoa)) if v.hoa is not None else None
                rows.append(
                    {
                        "mac": str(v.mac),
                        "link": self.settings.access[v.link]
                        if v.link < len(self.settings.access)
                        else v.link,
                        "nai": v.nai,
                        "hoa": str(v.hoa) if v.hoa else None,
                        "dlmap": str(v.tunnel_dst) if v.tunnel_dst else None,
                        "state": v.state.value,
                        "sequence": v.sequence,
                        "gateway": str(v.gateway),
                        "pseudo_mac": str(v.pseudo_mac),
                        "lifetime": v.lifetime,
                        "age": round(now - self.bound_since[v.hoa], 1)
                        if v.hoa in self.bound_since
                        else None,
                        "packets": entry.packets if entry else 0,
                    }
                )
            return rows
        if what == "counters":
            return {
                "node": dict(self.counters),
                "core": dict(self.core.counters),
                "access": dict(self.access.counters),
                "limits": self.limits.stats(),
                "aaa": dict(self.aaa.counters),
                "fastpath": self.fastpath.counters(),
            }
        raise KeyError(what)
