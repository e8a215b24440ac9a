"""What the DMPA's access services share: the DMPA as they see it (:class:`AccessHost`), the
actions they return, their drop counters with rate-limited log lines (:class:`Drops`), and what
an address an MS may hold is (:func:`is_host_address`).

The services and their dispatcher (:mod:`router.services.access`) import this module; it imports
none of them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from ipaddress import IPv4Address
from typing import Protocol

from router.core.actions import Action
from router.core.common import RateLimiter
from router.core.counters import Counters, Declared
from router.core.dmpa import Profile, Visitor
from router.wire.ethernet import MacAddress

log = logging.getLogger("router.services.access")

#: What the access services return (the core's action types, frames and tunnel sends included).
AccessAction = Action


class AccessHost(Protocol):
    """The DMPA as the access services see it (:class:`router.core.dmpa.DMPA` is one): its
    visitors, the values they are answered with, and the events the services report to it."""

    @property
    def pseudo_mac(self) -> MacAddress:
        """The MAC every DMPA of the domain answers with (seed 5.3)."""
        ...

    @property
    def binding_lifetime(self) -> int:
        """The binding lifetime the DMPA asks for, seconds."""
        ...

    def visitor(self, mac: MacAddress) -> Visitor | None: ...

    def visitor_list(self) -> Collection[Visitor]: ...

    def attach(self, mac: MacAddress, link: int, now: float) -> list[Action]: ...

    def detach(self, mac: MacAddress, now: float, wall: float) -> list[Action]: ...

    def authorized(
        self, mac: MacAddress, link: int, profile: Profile, now: float, wall: float
    ) -> list[Action]: ...

    def address_seen(
        self, mac: MacAddress, address: IPv4Address, now: float, wall: float
    ) -> list[Action]: ...

    def dhcp_ack(
        self, mac: MacAddress, address: IPv4Address, now: float, wall: float
    ) -> list[Action]: ...


def is_host_address(address: IPv4Address) -> bool:
    """An address an MS may hold as its own: unicast, not 0/8-unspecified, loopback,
    link-local (RFC 3927 autoconfiguration is not a HoA), multicast, class E or broadcast."""
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved  # 240/4, 255.255.255.255 included
    )


class Drops:
    """Counters by name, and for drops a log line per reason at most once per ``interval``.

    The line says how many packets that reason dropped since the previous line, so nothing is
    hidden and a flood costs one line per interval.
    """

    #: The access links' interface names by index (the DMPA sets them at start).
    link_names: tuple[str, ...] = ()

    def __init__(self, logger: logging.Logger = log, interval: float = 10.0) -> None:
        self.counters = Counters()
        self._logger = logger
        self._limit = RateLimiter(interval, capacity=1024)
        self._unlogged: Counter[str] = Counter()

    def count(self, name: Declared) -> None:
        self.counters[name] += 1

    def drop(self, reason: Declared, now: float, **context: object) -> bool:
        """Count a drop; log it as a warning if this reason has not been logged for
        ``interval`` seconds (:meth:`_log`). Returns True when it logged (callers rate-limit
        their own events with it)."""
        return self._log(reason, now, logging.WARNING, context)

    def expected(self, reason: Declared, now: float, **context: object) -> bool:
        """:meth:`drop` for what is normal (an MS's packets while it authenticates): info."""
        return self._log(reason, now, logging.INFO, context)

    def _log(self, reason: Declared, now: float, level: int, context: dict[str, object]) -> bool:
        """A ``link`` index is logged as its interface name (:attr:`link_names`)."""
        self.counters[reason] += 1
        self._unlogged[reason] += 1
        if not self._limit.allow(reason, now):
            return False
        n = self._unlogged.pop(reason)
        link = context.get("link")
        if isinstance(link, int) and 0 <= link < len(self.link_names):
            context["link"] = self.link_names[link]
        # each value after "key=" is quoted by the log formatter (router.app.logs)
        keys = "".join(f" {key}=%s" for key in context)
        self._logger.log(level, "dropped reason=%s count=%d" + keys, reason, n, *context.values())
        return True
