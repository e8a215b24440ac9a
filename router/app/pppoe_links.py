"""The DMPA's PPPoE access links (``[access IFACE] auth = pppoe``, seed 4.1): the DMPA is the
PPPoE access concentrator and PPP server there.

The fastpath punts a PPPoE link's discovery and PPP control frames (reason ARP); they go to
that link's :class:`~router.services.pppoe.PPPoEServer` (sans-I/O), whose outputs are carried
out here:

* ``Authenticate`` (PAP's password or CHAP-MD5's answer, the user name is the NAI): AAA checks
  it (:meth:`router.adapters.aaa.AAA.authenticate_ppp`: a local profile's ``password``, or
  RADIUS User-Password / CHAP-Password); the server's answer follows, and on success the
  access dispatcher's ``authorized`` makes the visitor entry with that profile, which
  registers the MS (PBU). A profile of mode ``dhcp`` is registered as ``dlmap`` (a PPP MS
  asks IPCP, not DHCP: the DLMAP allocates, one address per NAI, the same one at a handover).
* the PBA's binding (the node's Bind for a MAC of a PPPoE link): the fastpath learns the
  session of the HoA (PPPoE encapsulation downlink, the session checked uplink) and the server
  starts IPCP with the HoA and the node's DNS servers.
* ``SessionDown`` (PADT, LCP Terminate, echoes unanswered, authentication failed): the
  dispatcher's ``deauthorized`` detaches (de-registers) the visitor.

A PPPoE MS is bound in the user-space tier only (the kernel tier does not speak PPPoE: its
frames and its HoA stay with the Cython fastpath).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

from fastpath.common import ETH_P_PPPOE_DISC, ETH_P_PPPOE_SES, Punt
from router.adapters.aaa import AAA
from router.adapters.datapath import DataPath
from router.app.runner import ActionRunner, Clock
from router.app.settings import DMPASettings
from router.core.actions import Bind, Unbind
from router.core.dmpa import Profile, State
from router.services.access import AccessDispatcher
from router.services.pppoe import (
    Authenticate,
    Output,
    PPPoEConfig,
    PPPoEServer,
    SessionDown,
    SessionUp,
)
from router.wire.dialect import Dialect
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, MacAddress
from router.wire.ppp import MAX_MRU

log = logging.getLogger("netlmm")

PPPOE_TYPES = (ETH_P_PPPOE_DISC, ETH_P_PPPOE_SES)
Fire = Callable[[float, float], Sequence[object]]


class PPPoEHost(Protocol):
    """What the links need of the DMPA node (``router.app.dmpa_node.DMPANode``)."""

    loop: asyncio.AbstractEventLoop
    clock: Clock
    aaa: AAA
    access: AccessDispatcher
    runner: ActionRunner
    backends: list[DataPath]
    dialects: dict[IPv6Address, Dialect]
    bound_since: dict[IPv4Address, float]

    def add_timer(self, get_timer: Callable[[], float | None], fire: Fire) -> Any: ...

    def add_action(self, kind: type[Any], handler: Callable[[Any], None]) -> None: ...


class PPPoELinks:
    def __init__(self, settings: DMPASettings, node: PPPoEHost, engine: Any) -> None:
        self.node = node
        self.loop, self.clock, self.aaa, self.access = node.loop, node.clock, node.aaa, node.access
        self.engine = engine
        self.submit = node.runner.submit
        self.dns = settings.dns
        #: A local profile's own DNS servers for IPCP, by NAI (others get ``dmpa.dns``).
        self.profile_dns = {p.nai: p.dns for p in settings.profiles if p.dns}
        self.servers: dict[int, PPPoEServer] = {}
        cookie_key = os.urandom(32)
        for link in settings.links:
            if link.auth != "pppoe":
                continue
            index = settings.access.index(link.interface)
            config = PPPoEConfig(
                settings.pseudo_mac,
                settings.node.name or "netlmm",
                settings.gateway,
                link.ppp_auth,
                cookie_key,
                settings.dns,
                min(MAX_MRU, settings.tunnel_mtu),
            )
            self.servers[index] = PPPoEServer(config, os.urandom)
            engine.pppoe_link(index)
            node.add_timer(self.servers[index].next_deadline, partial(self._fire, index))
        #: (link, MAC) -> the PPPoE session AAA accepted there (the one a Bind goes to).
        self.current: dict[tuple[int, MacAddress], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # The node's Bind and Unbind handlers, wrapped (see _bind)
        self._bind_all = node.runner.handlers[Bind]
        self._unbind_all = node.runner.handlers[Unbind]
        node.add_action(Bind, self._bind)
        node.add_action(Unbind, self._unbind)

    @property
    def counters(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for server in self.servers.values():
            total.update(server.counters)
        return total

    def owns(self, link: int) -> bool:
        return link in self.servers

    # --- frames and timers ----------------------------------------------------------------

    def punted(
        self,
        punt: Punt,
        now: float,
        wall: float,
        otherwise: Callable[[Punt, float, float], Sequence[object]],
    ) -> Sequence[object]:
        """A punted access frame: a PPPoE link's PPPoE frames to its server, the rest as
        before."""
        server = self.servers.get(punt.link)
        data = punt.data
        if server is None or len(data) < 14 or int.from_bytes(data[12:14]) not in PPPOE_TYPES:
            return otherwise(punt, now, wall)
        try:
            eth = EthernetFrame.decode(data)
        except DecodeError:
            return otherwise(punt, now, wall)  # counted there as undecodable
        return self._carry(server.receive(eth, punt.link, now), now, wall)

    def _fire(self, link: int, now: float, wall: float) -> list[object]:
        return self._carry(self.servers[link].handle_timer(now), now, wall)

    def _carry(self, outputs: Sequence[Output], now: float, wall: float) -> list[object]:
        actions: list[object] = []
        for out in outputs:
            if isinstance(out, Authenticate):
                task = self.loop.create_task(self._check(out))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif isinstance(out, SessionUp):
                log.info(
                    "ppp_up mac=%s link=%d session=%d nai=%s hoa=%s",
                    out.mac, out.link, out.session, out.nai, out.address,
                )  # fmt: skip
            elif isinstance(out, SessionDown):
                actions += self._down(out, now, wall)
            else:
                actions.append(out)
        return actions

    # --- AAA, the PBA, the end ------------------------------------------------------------

    async def _check(self, request: Authenticate) -> None:
        try:
            profile = await self.aaa.authenticate_ppp(
                request.mac, request.nai, request.password, request.chap
            )
        except Exception as exc:
            log.warning("ppp_aaa_failed mac=%s nai=%s error=%s", request.mac, request.nai, exc)
            profile = None
        now, wall = self.clock.now(), self.clock.wall()
        link, mac, session = request.link, request.mac, request.session
        answer = self.servers[link].auth_result(link, mac, session, profile is not None)
        actions = self._carry(answer, now, wall)
        if profile is None:
            log.info("ppp_reject mac=%s nai=%s", mac, request.nai)
            self.submit(actions)
            return
        profile = ppp_profile(profile)
        self.current[(link, mac)] = session
        log.info("ppp_authorized mac=%s link=%d session=%d nai=%s", mac, link, session, profile.nai)
        actions += self.access.authorized(mac, link, profile, now, wall, announce=False)
        visitor = self.access.host.visitor(mac)
        if (
            visitor is not None
            and visitor.link == link
            and visitor.state is State.REGISTERED
            and visitor.hoa is not None
        ):
            # A new session of an MS registered here (it restarted PPP): no new PBA comes.
            actions += self._address(link, mac, session, visitor.hoa, now, wall)
        self.submit(actions)

    def _bind(self, action: Bind) -> None:
        """The node's Bind: a PPPoE MS is bound in the user-space tier only (the first backend:
        the kernel tier has no PPPoE), then its session goes to the fastpath and IPCP starts
        with the HoA of the PBA."""
        node, mac = self.node, action.mac
        if not self.owns(action.link) or mac is None or action.endpoint not in node.dialects:
            return self._bind_all(action)
        node.backends[0].bind(action)
        now, wall = self.clock.now(), self.clock.wall()
        node.bound_since[action.hoa] = now
        session = self.current.get((action.link, mac))
        if session is not None:
            self.submit(self._address(action.link, mac, session, action.hoa, now, wall))

    def _address(
        self, link: int, mac: MacAddress, session: int, hoa: IPv4Address, now: float, wall: float
    ) -> list[object]:
        self.engine.pppoe_session(int(hoa), session)
        server = self.servers[link]
        ppp = server.sessions.get((link, mac, session))
        dns = self.profile_dns.get(ppp.nai, self.dns) if ppp is not None and ppp.nai else self.dns
        outputs = server.address(link, mac, session, hoa, dns, now)
        return self._carry(outputs, now, wall)

    def _unbind(self, action: Unbind) -> None:
        self._unbind_all(action)
        self.engine.pppoe_session(int(action.hoa), 0)

    def _down(self, down: SessionDown, now: float, wall: float) -> list[object]:
        log.info(
            "ppp_down mac=%s link=%d session=%d nai=%s why=%s",
            down.mac, down.link, down.session, down.nai, down.why,
        )  # fmt: skip
        if self.current.get((down.link, down.mac)) != down.session:
            return []  # an older session, or one AAA never accepted
        del self.current[(down.link, down.mac)]
        return list(self.access.deauthorized(down.mac, down.link, now, wall))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


def ppp_profile(profile: Profile) -> Profile:
    """A PPP MS asks IPCP, not DHCP: a ``dhcp`` profile is registered as ``dlmap``."""
    return dataclasses.replace(profile, mode="dlmap") if profile.mode == "dhcp" else profile
