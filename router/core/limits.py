"""Per-source rate limits with bounded memory.

A flood must cost the appliance a bounded amount of work and memory, and the MSs already served
must not notice it. Each limit is a token bucket per source, kept in a table of at most
``table_size`` sources (least recently seen evicted first):

========================  =====================  ===========================================
limit                     source (bucket key)    what it protects
========================  =====================  ===========================================
DLMAP ``pbu_new_nai``     the DMPA (IPv6 src)    binding cache, pool, store: PBUs for NAIs
                                                 with no binding yet (refreshes, handovers
                                                 and de-registrations of bound NAIs pass)
DMPA ``new_mac``          the access link        visitor table and AAA (RADIUS): frames of a
                                                 MAC with no visitor entry on that link
DMPA ``dhcp_discover``    the MS MAC             the DLMAP's DHCP server and its offers
DMPA ``arp``              the MS MAC             ARP answers and address learning
========================  =====================  ===========================================

Rule 1. A bucket holds at most ``burst`` tokens and gains ``rate`` a second; a packet that finds
        a token takes it and passes, one that finds none is dropped and counted
        (``limit.<name>``): no answer, no log line per packet.
Rule 2. ``rate = 0`` turns a limit off (everything passes, nothing is remembered).
Rule 3. An evicted source comes back with a full bucket. That is why ``new_mac`` is keyed by the
        link, not by the MAC: a flood of invented MACs all draws from the one bucket of its
        link; the per-MAC limits only ever see MACs that passed it.
Rule 4. The DMPA keeps the visitor entry of a MAC that AAA refused (its frames must not ask AAA
        again); past ``table_size`` such strangers the oldest is forgotten, so the visitor table
        stays bounded however long a rate-limited flood of invented MACs lasts.

The DLMAP's limit sits in front of its core (:class:`LimitedDLMAP`, which the node drives like
the core itself), after the RFC 4285 check, so a forged source address cannot spend the
budget of a real DMPA. The DMPA's limits are the ``admission`` of the access dispatcher
(:class:`AccessLimits`, :class:`router.services.access.Admission`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from typing import Protocol

from router.core.actions import Action
from router.core.common import Core
from router.core.counters import Counters, Family, Names
from router.wire.ethernet import MacAddress
from router.wire.mh import BindingUpdate, MobilityMessage
from router.wire.mh_options import MobileNodeIdentifier

DEFAULT_TABLE_SIZE = 4096
#: The limits, as ``[limits]`` and the counters name them.
LIMITS = ("pbu_new_nai", "new_mac", "dhcp_discover", "arp")

#: The ``limits`` group of ``show counters``, per limit: what it dropped (Rule 1), passed and
#: evicted, and how many sources its table holds now (a size, exported as a gauge).
LIMITED = Family("limit.{}", "dropped by the limit (Rule 1)", LIMITS)
ALLOWED = Family("limit.{}.allowed", "passed the limit", LIMITS)
EVICTED = Family("limit.{}.evicted", "sources evicted from the limit's table (Rule 3)", LIMITS)
TABLE = Family("limit.{}.table", "sources the limit's table holds", LIMITS)


class LimitCounter(Names):
    """What :class:`LimitedDLMAP` counts in the node's registry (``node`` group)."""

    PBU_NEW_NAI = "limit.pbu_new_nai"


@dataclass(frozen=True, slots=True)
class Rate:
    """A token bucket's shape: ``rate`` tokens a second (0: no limit), at most ``burst``."""

    rate: float
    burst: int

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 1:
            raise ValueError(f"rate {self.rate} must be >= 0 and burst {self.burst} >= 1")

    @property
    def enabled(self) -> bool:
        return self.rate > 0


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """The ``[limits]`` section (``etc/dmpa.ini``, ``etc/dlmap.ini``); each role reads its own."""

    #: DLMAP, per DMPA: PBUs for an NAI with no binding yet.
    pbu_new_nai: Rate = field(default_factory=lambda: Rate(200.0, 1000))
    #: DMPA, per access link: frames from a MAC with no visitor entry on that link.
    new_mac: Rate = field(default_factory=lambda: Rate(20.0, 100))
    #: DMPA, per MS MAC: DHCP DISCOVERs.
    dhcp_discover: Rate = field(default_factory=lambda: Rate(2.0, 10))
    #: DMPA, per MS MAC: ARP packets.
    arp: Rate = field(default_factory=lambda: Rate(20.0, 50))
    #: Sources each limit remembers at most (least recently seen evicted first); on the DMPA
    #: also the AAA-rejected MACs whose visitor entries are kept (``AccessDispatcher``).
    table_size: int = DEFAULT_TABLE_SIZE


class TokenBuckets:
    """Token buckets per key in an LRU table of at most ``capacity`` keys (Rule 1 to 3)."""

    def __init__(self, rate: Rate, capacity: int = DEFAULT_TABLE_SIZE) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.rate = rate
        self.capacity = capacity
        #: key -> (tokens, time of the last refill); the most recently seen last.
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()
        self.allowed = 0
        self.limited = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: Hashable, now: float) -> bool:
        """Take a token from ``key``'s bucket: True if there was one."""
        rate = self.rate
        if not rate.enabled:  # Rule 2
            self.allowed += 1
            return True
        buckets = self._buckets
        entry = buckets.get(key)
        if entry is None:
            tokens = float(rate.burst)  # Rule 3: a new or evicted source starts full
        else:
            tokens, last = entry
            tokens = min(float(rate.burst), tokens + max(0.0, now - last) * rate.rate)
            buckets.move_to_end(key)
        passed = tokens >= 1.0
        if passed:
            tokens -= 1.0
            self.allowed += 1
        else:
            self.limited += 1
        buckets[key] = (tokens, now)
        if len(buckets) > self.capacity:
            buckets.popitem(last=False)
            self.evicted += 1
        return passed

    def stats(self, name: str) -> dict[str, int]:
        """Counters for ``show counters``: what passed, what was dropped, the table's size."""
        return {
            ALLOWED(name): self.allowed,
            LIMITED(name): self.limited,
            EVICTED(name): self.evicted,
            TABLE(name): len(self),
        }


class AccessLimits:
    """The DMPA's access-link limits: implements :class:`router.services.access.Admission`."""

    def __init__(self, settings: LimitSettings) -> None:
        size = settings.table_size
        self.new_macs = TokenBuckets(settings.new_mac, size)
        self.discovers = TokenBuckets(settings.dhcp_discover, size)
        self.arps = TokenBuckets(settings.arp, size)

    def new_mac(self, link: int, now: float) -> bool:
        return self.new_macs.allow(link, now)

    def dhcp_discover(self, mac: MacAddress, now: float) -> bool:
        return self.discovers.allow(mac, now)

    def arp(self, mac: MacAddress, now: float) -> bool:
        return self.arps.allow(mac, now)

    def stats(self) -> dict[str, int]:
        out = self.new_macs.stats("new_mac")
        out.update(self.discovers.stats("dhcp_discover"))
        out.update(self.arps.stats("arp"))
        return out


class _DLMAPCore(Core, Protocol):
    """What :class:`LimitedDLMAP` needs of :class:`router.core.dlmap.DLMAP`: a node's core
    (:class:`router.core.common.Core`) that keeps bindings by NAI."""

    @property
    def bindings(self) -> Mapping[str, object]: ...


def pbu_nai(message: MobilityMessage) -> str | None:
    """The NAI of a PBU as the DLMAP core reads it (the first MN-ID option), else None."""
    if not isinstance(message, BindingUpdate):
        return None
    for option in message.options:
        if isinstance(option, MobileNodeIdentifier):
            return option.nai
    return None


class LimitedDLMAP:
    """The DLMAP core behind the ``pbu_new_nai`` limit: a PBU naming an NAI with no binding
    takes a token of its source DMPA's bucket, or is dropped unanswered (the DMPA retransmits at
    its backed-off interval, RFC 5213 6.9.4). Everything else goes straight to the core.

    The configured DMPAs (``peers``) have a table of their own: sources that are no DMPA (any
    address will do, and the core refuses them without state) fill the other one, so they
    cannot evict a DMPA's spent bucket (Rule 3)."""

    def __init__(
        self,
        core: _DLMAPCore,
        rate: Rate,
        capacity: int,
        counters: Counters,
        peers: Collection[IPv6Address] = (),
    ):
        self.core = core
        self.peers = frozenset(peers)
        #: Sources that are no configured DMPA, at most ``capacity`` of them.
        self.buckets = TokenBuckets(rate, capacity)
        self.peer_buckets = TokenBuckets(rate, max(1, len(self.peers)))
        self.counters = counters

    def receive(
        self, message: MobilityMessage, src: IPv6Address, now: float, wall: float
    ) -> list[Action]:
        if self.buckets.rate.enabled:  # the limit off: not even the NAI is looked for
            nai = pbu_nai(message)
            if (
                nai is not None
                and nai not in self.core.bindings
                and not (self.peer_buckets if src in self.peers else self.buckets).allow(src, now)
            ):
                self.counters[LimitCounter.PBU_NEW_NAI] += 1
                return []
        return self.core.receive(message, src, now, wall)

    def stats(self) -> dict[str, int]:
        """Both tables' counters, as one limit (``show counters``)."""
        out = self.buckets.stats("pbu_new_nai")
        for key, value in self.peer_buckets.stats("pbu_new_nai").items():
            out[key] += value
        return out

    def receive_unknown_type(self, mh_type: int, src: IPv6Address, now: float) -> list[Action]:
        return self.core.receive_unknown_type(mh_type, src, now)

    def get_timer(self) -> float | None:
        return self.core.get_timer()

    def handle_timer(self, now: float, wall: float) -> list[Action]:
        return self.core.handle_timer(now, wall)
