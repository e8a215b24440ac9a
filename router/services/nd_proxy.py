"""IPv6 Neighbor Discovery for dual-stack MSs on the DMPA's access links (RFC 4861, RFC 5213).

Sans-I/O: ND frames and ``now`` in, frames out; its timers through :meth:`NdProxy.get_timer`
and :meth:`NdProxy.handle_timer`. The router address is the link-local address derived from the
domain's shared pseudo-MAC (:func:`router.wire.nd.link_local_from_mac`): the same on every DMPA,
so an MS's default router does not change at a handover (RFC 5213 6.8).

* **Router Advertisements** (RFC 5213 6.9.1.2, 6.9.2; RFC 4861 6.2): only for an MS whose home
  network prefix is bound (never before the PBA). One at once when the prefix is bound, then
  the first ``MAX_INITIAL_RTR_ADVERTISEMENTS`` at most ``MAX_INITIAL_RTR_ADVERT_INTERVAL``
  apart, then every MinRtrAdvInterval..MaxRtrAdvInterval (random); an RS is answered after a
  random 0..MAX_RA_DELAY_TIME, never sooner than MIN_DELAY_BETWEEN_RAS after the last RA. Flags
  M=0, O=0 (addresses by SLAAC); one Prefix Information option, the MS's /64 with L=1, A=1;
  Source Link-layer Address (the pseudo-MAC) and MTU (the tunnel's). Each RA is unicast at
  layer 2 to the MS (the access link may be shared; the prefix is that MS's alone), to ff02::1.
* **Neighbor Solicitations**, as the ARP proxy does for IPv4: for the router address an NA with
  R, S and O; for any other unicast target (another address of the MS's /64, an off-link one)
  a proxy NA with R and S, O clear (RFC 4861 7.2.8), so everything goes through the DMPA. Never
  for a duplicate-address probe (source ``::``, RFC 4862 5.4: answering one would make SLAAC
  fail) nor for an address the MS was seen using as a source (its own).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address

from router.core.actions import SendFrame
from router.core.counters import Names
from router.core.defaults import (
    ADV_DEFAULT_LIFETIME,
    ADV_PREFERRED_LIFETIME,
    ADV_VALID_LIFETIME,
    MAX_INITIAL_RTR_ADVERT_INTERVAL,
    MAX_INITIAL_RTR_ADVERTISEMENTS,
    MAX_RA_DELAY_TIME,
    MAX_RTR_ADV_INTERVAL,
    MIN_DELAY_BETWEEN_RAS,
    MIN_RTR_ADV_INTERVAL,
)
from router.core.dmpa import Visitor
from router.core.timers import TimerHeap
from router.services.common import AccessAction, AccessHost, Drops
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, EtherType, MacAddress, VlanTag
from router.wire.nd import (
    ALL_NODES,
    UNSPECIFIED6,
    IPv6Packet,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInformation,
    RouterAdvertisement,
    RouterSolicitation,
    decode_nd,
    icmpv6_packet,
    link_local_from_mac,
)

#: Addresses remembered per MS as its own (sources seen), at most.
OWN_ADDRESSES = 8


class NdCounter(Names):
    """What the ND service counts (``access`` group)."""

    MALFORMED = "nd.malformed"
    NOT_ND = "nd.not_nd"  # IPv6 that is not RS/NS (data before the binding, MLD, an RA, ...)
    NO_PREFIX = "nd.no_prefix"  # from an MS without a bound home network prefix
    RS = "nd.rs"
    RA_SENT = "nd.ra_sent"
    NS_ROUTER = "nd.ns_router"
    NS_PROXY = "nd.ns_proxy"
    NS_DAD = "nd.ns_dad"  # a duplicate-address probe: never answered
    NS_OWN = "nd.ns_own"  # for an address the MS uses itself: not answered


@dataclass(frozen=True, slots=True)
class NdConfig:
    #: The MTU option: the largest inner packet the tunnel carries.
    mtu: int
    max_interval: float = MAX_RTR_ADV_INTERVAL
    min_interval: float = MIN_RTR_ADV_INTERVAL
    router_lifetime: int = ADV_DEFAULT_LIFETIME
    valid_lifetime: int = ADV_VALID_LIFETIME
    preferred_lifetime: int = ADV_PREFERRED_LIFETIME


@dataclass(slots=True)
class _Announcing:
    initial_left: int
    last: float | None = None
    vlan: VlanTag | None = None


class NdProxy:
    """RAs and NS answers for the dual-stack visitors of one DMPA."""

    def __init__(
        self,
        host: AccessHost,
        config: NdConfig,
        random: Callable[[], float],
        drops: Drops | None = None,
    ) -> None:
        self.host = host
        self.config = config
        #: A uniform [0, 1) source (the node passes ``random.random``; tests a fixed one).
        self.random = random
        self.drops = drops if drops is not None else Drops()
        self.router = link_local_from_mac(host.pseudo_mac)
        self._timers: TimerHeap[MacAddress] = TimerHeap()
        self._announcing: dict[MacAddress, _Announcing] = {}
        self._own: dict[MacAddress, OrderedDict[IPv6Address, None]] = {}

    # --- the prefix comes and goes (the DMPA's BindPrefix / UnbindPrefix) -----------------

    def bound(self, mac: MacAddress, now: float) -> list[AccessAction]:
        """The MS's prefix is bound (a PBA): an RA at once, then the initial ones."""
        state = _Announcing(MAX_INITIAL_RTR_ADVERTISEMENTS)
        self._announcing[mac] = state
        return self._advertise(mac, state, now)

    def unbound(self, mac: MacAddress) -> None:
        self._announcing.pop(mac, None)
        self._own.pop(mac, None)
        self._timers.cancel(mac)

    # --- timers ---------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self._timers.next_deadline()

    def handle_timer(self, now: float, wall: float = 0.0) -> list[AccessAction]:
        actions: list[AccessAction] = []
        for mac in self._timers.pop_due(now):
            state = self._announcing.get(mac)
            if state is not None:
                actions += self._advertise(mac, state, now)
        return actions

    # --- frames ---------------------------------------------------------------------------

    def receive(self, visitor: Visitor, eth: EthernetFrame, now: float) -> list[AccessAction]:
        """An IPv6 frame the MS sent to the pseudo-MAC or a multicast MAC."""
        try:
            packet = IPv6Packet.decode(eth.payload)
            message = decode_nd(packet)
        except DecodeError as exc:
            self.drops.drop(NdCounter.MALFORMED, now, mac=eth.src, error=exc)
            return []
        if not isinstance(message, RouterSolicitation | NeighborSolicitation):
            self.drops.drop(NdCounter.NOT_ND, now, mac=eth.src, next_header=packet.next_header)
            return []
        if visitor.bound_prefix is None:
            self.drops.drop(NdCounter.NO_PREFIX, now, mac=eth.src)
            return []
        if packet.src != UNSPECIFIED6:
            self._remember(visitor.mac, packet.src)
        if isinstance(message, RouterSolicitation):
            return self._solicited(visitor, eth, now)
        return self._neighbor(visitor, eth, packet, message, now)

    def _solicited(self, visitor: Visitor, eth: EthernetFrame, now: float) -> list[AccessAction]:
        self.drops.count(NdCounter.RS)
        state = self._announcing.setdefault(visitor.mac, _Announcing(0))
        state.vlan = eth.vlan
        when = now + self.random() * MAX_RA_DELAY_TIME
        if state.last is not None:
            when = max(when, state.last + MIN_DELAY_BETWEEN_RAS)
        scheduled = self._timers.deadline(visitor.mac)
        if scheduled is None or when < scheduled:
            self._timers.schedule(visitor.mac, when)
        return []

    def _neighbor(
        self,
        visitor: Visitor,
        eth: EthernetFrame,
        packet: IPv6Packet,
        ns: NeighborSolicitation,
        now: float,
    ) -> list[AccessAction]:
        if packet.src == UNSPECIFIED6:
            self.drops.count(NdCounter.NS_DAD)
            return []
        target = ns.target
        own = self._own.get(visitor.mac)
        if target != self.router and ((own is not None and target in own) or target.is_multicast):
            self.drops.count(NdCounter.NS_OWN)
            return []
        ours = target == self.router
        self.drops.count(NdCounter.NS_ROUTER if ours else NdCounter.NS_PROXY)
        na = NeighborAdvertisement(
            target, router=True, solicited=True, override=ours, target_lla=visitor.pseudo_mac
        )
        reply = icmpv6_packet(self.router, packet.src, na)
        frame = EthernetFrame(eth.src, visitor.pseudo_mac, EtherType.IPV6, reply, eth.vlan)
        return [SendFrame(visitor.link, frame.encode())]

    # --- helpers --------------------------------------------------------------------------

    def _advertise(self, mac: MacAddress, state: _Announcing, now: float) -> list[AccessAction]:
        visitor = self.host.visitor(mac)
        if visitor is None or visitor.bound_prefix is None:
            self.unbound(mac)
            return []
        config = self.config
        pio = PrefixInformation(
            visitor.bound_prefix, True, True, config.valid_lifetime, config.preferred_lifetime
        )
        ra = RouterAdvertisement(
            config.router_lifetime, (pio,), visitor.pseudo_mac, config.mtu, cur_hop_limit=64
        )
        packet = icmpv6_packet(self.router, ALL_NODES, ra)
        frame = EthernetFrame(mac, visitor.pseudo_mac, EtherType.IPV6, packet, state.vlan)
        state.last = now
        # RFC 4861 6.2.4: the next unsolicited one, sooner while the initial ones last.
        interval = config.min_interval + self.random() * (config.max_interval - config.min_interval)
        if state.initial_left > 1:
            state.initial_left -= 1
            interval = min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL)
        else:
            state.initial_left = 0
        self._timers.schedule(mac, now + interval)
        self.drops.count(NdCounter.RA_SENT)
        return [SendFrame(visitor.link, frame.encode())]

    def _remember(self, mac: MacAddress, address: IPv6Address) -> None:
        own: OrderedDict[IPv6Address, None] = self._own.setdefault(mac, OrderedDict())
        own[address] = None
        own.move_to_end(address)
        while len(own) > OWN_ADDRESSES:
            own.popitem(last=False)
