"""What a running node watches for the operator: the route MTU to its peers, and its drops.

**MTU.** A tunnelled packet is the IPv4 packet plus a 40-byte IPv6 header, so the route to each
peer must carry ``tunnel_mtu + 40``. At start (:func:`clamp_tunnel_mtu`) the route MTU towards
each peer is read; where it is too small the node warns (``tunnel_mtu_too_big``, with the
value that fits) and runs with that smaller tunnel MTU, so a full-size packet with DF set gets
the ICMP "fragmentation needed" the MS needs (and one without DF is fragmented) instead of
being lost on the transport. When a link or an IPv6 route changes (netlink, :class:`RouteEvents`)
and every :data:`MTU_CHECK_INTERVAL` seconds (path-MTU cache entries are not announced) the
route MTUs are read again and a change is logged (``route_mtu_changed``; the tunnel MTU in use
changes at the next start).

**Drops.** Every :data:`DROP_LOG_INTERVAL` seconds, each fastpath drop reason that moved is one
line ``dropped direction=... reason=... packets=N interval_s=...``: a warning for the node's own
failures (``tx_errors``: a send or write the kernel refused, e.g. a packet larger than the
transport MTU; ``no_room``; ``bad_gso``), info for the rest (traffic the rules drop). The
counters (``netlmm show counters``) keep the exact numbers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from ipaddress import IPv6Address

from router.adapters import host
from router.app.logs import kv
from router.app.settings import Settings

log = logging.getLogger("netlmm")

#: The outer IPv6 header of a tunnelled packet.
TUNNEL_OVERHEAD = 40
#: The smallest tunnel MTU the node will run with (the IPv4 minimum a host must take).
MIN_TUNNEL_MTU = 576
MTU_CHECK_INTERVAL = 30.0
DROP_LOG_INTERVAL = 10.0
#: Drop reasons that are the node's own failure (a warning), not traffic the rules drop.
OWN_FAILURES = frozenset({"tx_errors", "no_room", "bad_gso"})
#: Fastpath counters that are not drops.
NOT_DROPS = frozenset(
    {"forwarded", "bytes", "arp", "dhcp", "icmp_gateway", "unknown_ms", "ttl_expired"}
    | {"frag_needed", "fragment"}
)

RouteMtu = Callable[[IPv6Address, IPv6Address], int | None]


def route_mtus(settings: Settings, lookup: RouteMtu = host.route_mtu) -> dict[IPv6Address, int]:
    """The route MTU towards each peer (the peers with no route are left out)."""
    out = {}
    for peer in settings.peers:
        mtu = lookup(peer.address, settings.node.address)
        if mtu is not None:
            out[peer.address] = mtu
    return out


def clamp_tunnel_mtu(settings: Settings, mtus: Mapping[IPv6Address, int]) -> Settings:
    """``settings`` with the tunnel MTU every peer's route carries (a warning per peer whose
    route is too small); the same object when the configured one fits."""
    fits = settings.tunnel_mtu
    for peer, mtu in sorted(mtus.items()):
        if settings.tunnel_mtu + TUNNEL_OVERHEAD > mtu:
            usable = max(MIN_TUNNEL_MTU, mtu - TUNNEL_OVERHEAD)
            fits = min(fits, usable)
            fields = {
                "peer": peer,
                "route_mtu": mtu,
                "tunnel_mtu": settings.tunnel_mtu,
                "using": usable,
                "fix": f"set {settings.node.role}.tunnel_mtu = {usable}, or give the "
                f"transport an MTU of {settings.tunnel_mtu + TUNNEL_OVERHEAD}",
            }
            log.warning("tunnel_mtu_too_big %s", kv(fields), extra={"fields": fields})
    if fits == settings.tunnel_mtu:
        return settings
    return dataclasses.replace(settings, tunnel_mtu=fits)


class MtuWatch:
    """Re-reads the route MTUs every :data:`MTU_CHECK_INTERVAL` s and logs each change."""

    def __init__(
        self, settings: Settings, seen: Mapping[IPv6Address, int], lookup: RouteMtu = host.route_mtu
    ) -> None:
        self.settings = settings
        self.seen = dict(seen)
        self.lookup = lookup
        self._lock = threading.Lock()  # the poll and a netlink wake-up may overlap

    def check(self) -> list[dict[str, object]]:
        """One pass: the changes, each logged."""
        with self._lock:
            return self._check()

    def _check(self) -> list[dict[str, object]]:
        changes = []
        for peer, mtu in route_mtus(self.settings, self.lookup).items():
            before = self.seen.get(peer)
            if before == mtu:
                continue
            self.seen[peer] = mtu
            if before is None:
                continue  # a route that appeared: its MTU was not known at start
            enough = self.settings.tunnel_mtu + TUNNEL_OVERHEAD <= mtu
            fields: dict[str, object] = {
                "peer": peer,
                "route_mtu": mtu,
                "was": before,
                "tunnel_mtu": self.settings.tunnel_mtu,
                "fits": enough,
            }
            level = logging.INFO if enough else logging.WARNING
            log.log(level, "route_mtu_changed %s", kv(fields), extra={"fields": fields})
            changes.append(fields)
        return changes

    async def run(self, interval: float = MTU_CHECK_INTERVAL) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            await loop.run_in_executor(None, self.check)


class DropLog:
    """One line per fastpath drop reason that moved since the last pass (module docstring)."""

    def __init__(self, counters: Callable[[], Mapping[str, int]]) -> None:
        self.counters = counters
        self.last: dict[str, int] = dict(counters())

    def check(self, interval: float) -> list[dict[str, object]]:
        now = dict(self.counters())
        lines = []
        for name in sorted(now):
            moved = now[name] - self.last.get(name, 0)
            direction, _, reason = name.partition(".")
            if moved <= 0 or reason in NOT_DROPS or not reason:
                continue
            fields: dict[str, object] = {
                "direction": direction,
                "reason": reason,
                "packets": moved,
                "interval_s": interval,
            }
            level = logging.WARNING if reason in OWN_FAILURES else logging.INFO
            log.log(level, "dropped %s", kv(fields), extra={"fields": fields})
            lines.append(fields)
        self.last = now
        return lines

    async def run(self, interval: float = DROP_LOG_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check(interval)


class RouteEvents:
    """Runs ``check`` (in the executor) a moment after a link or IPv6 route change: netlink's
    multicast on the loop (:func:`router.adapters.host.open_route_changes`), coalesced."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, check: Callable[[], object], delay: float = 0.5
    ) -> None:
        self.loop, self.check, self.delay = loop, check, delay
        self._pending: asyncio.TimerHandle | None = None
        self._sock = host.open_route_changes()
        loop.add_reader(self._sock.fileno(), self._readable)

    def _readable(self) -> None:
        if host.drain(self._sock) and self._pending is None:
            self._pending = self.loop.call_later(self.delay, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self.loop.run_in_executor(None, self.check)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self.loop.remove_reader(self._sock.fileno())
        self._sock.close()
