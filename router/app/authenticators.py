"""The DMPA's 802.1X side (access links with ``auth = 8021x``): the RADIUS proxy hostapd talks
to, and a monitor attached to each link's hostapd control socket.

hostapd's ``CTRL-EVENT-EAP-SUCCESS2 <mac>`` on link ``i`` (with the user name hostapd took
from the Access-Accept) + the profile the proxy read from that Accept = "this MAC on this port
is authorized as this NAI": the node's ``authorized(mac, link, profile)``. An EAP failure or
a disconnection: ``deauthorized(mac, link)``. A success with no profile (hostapd's RADIUS went
elsewhere, or the profile waited past :data:`router.adapters.radius_proxy.ACCEPT_TTL`) is
counted and serves the MS nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from router.adapters.hostapd import AuthEvent, HostapdMonitor
from router.adapters.radius import RadiusConfig
from router.adapters.radius_proxy import ProxyConfig, RadiusProxy
from router.app.settings import DMPASettings
from router.core.counters import Counters, Names
from router.core.dmpa import Profile
from router.wire.ethernet import MacAddress

log = logging.getLogger("netlmm")


class AuthCounter(Names):
    """The node's count of successes it could not use (``node`` group)."""

    AUTH_NO_PROFILE = "auth.no_profile"


class Authenticators:
    def __init__(
        self,
        settings: DMPASettings,
        loop: asyncio.AbstractEventLoop,
        wrap: Callable[[str, Callable[..., object]], Callable[..., None]],
        authorized: Callable[[MacAddress, int, Profile], None],
        deauthorized: Callable[[MacAddress, int], None],
    ) -> None:
        self.settings = settings
        self.loop = loop
        self._wrap = wrap
        self._authorized = authorized
        self._deauthorized = deauthorized
        self.proxy: RadiusProxy | None = None
        self.monitors: list[HostapdMonitor] = []
        self.counters = Counters()
        self.node_counters = Counters(dict.fromkeys(AuthCounter, 0))

    async def start(self, radius: RadiusConfig | None) -> None:
        """The proxy (OSError when it cannot listen) and the monitors; nothing without an
        auth = 8021x link."""
        settings = self.settings
        links = [(i, a) for i, a in enumerate(settings.access) if settings.auth(i) == "8021x"]
        if not links:
            return
        proxy = settings.radius
        if radius is None or proxy is None or proxy.proxy is None:
            raise ValueError("auth = 8021x needs [radius] servers and a proxy")
        self.proxy = RadiusProxy(ProxyConfig(proxy.proxy, proxy.proxy_secret or b"", radius))
        await self.proxy.start()
        for link, name in links:
            path = next(a.hostapd for a in settings.links if a.interface == name)
            assert path is not None
            on_event = self._wrap("hostapd", partial(self._event, link))
            monitor = HostapdMonitor(path, on_event, self.counters, self.loop)
            monitor.start()
            self.monitors.append(monitor)

    def close(self) -> None:
        for monitor in self.monitors:
            monitor.close()
        if self.proxy is not None:
            self.proxy.close()

    def counter_groups(self) -> dict[str, Any]:
        if self.proxy is None:
            return {}
        return {"aaa_proxy": dict(self.proxy.counters), "authenticator": dict(self.counters)}

    def _event(self, link: int, event: AuthEvent, mac: MacAddress, user: str | None) -> None:
        name = self.settings.access[link]
        if event is not AuthEvent.SUCCESS:
            log.info("deauthorized mac=%s link=%s event=%s", mac, name, event.value)
            self._deauthorized(mac, link)
            return
        profile = self.proxy.take(mac, user) if self.proxy is not None else None
        if profile is None:
            self.node_counters[AuthCounter.AUTH_NO_PROFILE] += 1
            log.warning("authorized_without_profile mac=%s link=%s served=false", mac, name)
            return
        eap = self.proxy.durations.pop(mac, None) if self.proxy is not None else None
        log.info(
            "authorized mac=%s link=%s nai=%s eap_ms=%s",
            mac,
            name,
            profile.nai,
            f"{eap * 1000:.1f}" if eap is not None else "none",
        )
        self._authorized(mac, link, profile)
