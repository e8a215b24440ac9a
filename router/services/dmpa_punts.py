"""The DMPA's slow path: what it does with each packet its fastpath punts (sans-I/O).

The fastpath punts (``fastpath.common.Reason``) frames from the access links and inner packets
from the tunnel; each punt is counted (``punt.access.<reason>``, ``punt.tunnel.<reason>``) and
becomes the actions below, which the node carries out:

==============================================  ============================================
punt                                            actions
==============================================  ============================================
access: ``arp``, ``dhcp``, ``icmp_gateway``,    the access services'
``unknown_ms``                                  (:class:`~router.services.access.AccessDispatcher`)
access: ``fragment`` from a registered MS       a :class:`Reinject` of the frame of each
                                                fragment (cut to the tunnel MTU)
access: ``frag_needed``, ``ttl_expired``        a :class:`SendFrame` of the ICMP error from the
                                                MS's gateway (its visitor entry's, else the
                                                configured one), from the pseudo-MAC, to the MS
access: the same for an MS's IPv6               the ICMPv6 error (Packet Too Big, Time
                                                Exceeded) from the router's link-local address
                                                (the pseudo-MAC's), rate-limited
                                                (``punt.access.icmpv6_limited``)
tunnel: ``dhcp``                                the DHCP service's (a reply from the DLMAP)
anything else                                   none: counted only
==============================================  ============================================

A frame that is neither IPv4 nor IPv6 or does not decode (the fastpath punts only frames it
parsed) is counted (``punt.access.undecodable``) and gets nothing.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from fastpath.common import Punt, Reason
from router.core.actions import Action, Reinject, SendFrame
from router.core.counters import Counters, Family, Names
from router.core.dmpa import State
from router.services.access import AccessDispatcher
from router.services.common import AccessHost
from router.services.ipv4_slowpath import fragment, icmp_error
from router.services.ipv6_slowpath import Icmpv6Errors
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, EtherType
from router.wire.nd import link_local_from_mac

#: Packets punted, by where and reason (the node's registry: ``node`` group).
PUNT_ACCESS = Family(
    "punt.access.{}", "frames punted from the access links", (r.name.lower() for r in Reason)
)
PUNT_TUNNEL = Family(
    "punt.tunnel.{}", "packets punted from the tunnel", (r.name.lower() for r in Reason)
)


class PuntCounter(Names):
    UNDECODABLE = "punt.access.undecodable"  # a punted frame that does not decode
    ICMPV6_LIMITED = "punt.access.icmpv6_limited"  # an ICMPv6 error owed, not sent (rate)


#: Punts the access services take whole.
FOR_SERVICES = frozenset((Reason.ARP, Reason.DHCP, Reason.ICMP_GATEWAY, Reason.UNKNOWN_MS))
#: The ICMP error each reason is answered with (``ipv4_slowpath.icmp_error``'s kinds).
ICMP_ERRORS = {Reason.TTL_EXPIRED: "ttl", Reason.FRAG_NEEDED: "frag_needed"}


class DMPAPunts:
    """Punts in, actions out (see the module docstring). ``gateway`` is the source of the ICMP
    errors to an MS without a visitor entry (the configured gateway; a visitor's own gateway,
    from its profile or the PBA, comes first), ``tunnel_mtu`` the largest inner packet (IPv4
    or IPv6) the tunnel takes."""

    def __init__(
        self, access: AccessDispatcher, host: AccessHost, gateway: IPv4Address, tunnel_mtu: int
    ) -> None:
        self.access = access
        self.host = host
        self.gateway = gateway
        self.tunnel_mtu = tunnel_mtu
        self.counters = Counters()
        #: the source of the ICMPv6 errors: the router address every DMPA shares (nd_proxy)
        self.router6 = link_local_from_mac(host.pseudo_mac)
        self.icmpv6 = Icmpv6Errors(self.counters, PuntCounter.ICMPV6_LIMITED)

    def from_access(self, punt: Punt, now: float, wall: float) -> list[Action]:
        """A frame punted from access link ``punt.link``."""
        reason = Reason(punt.reason)
        self.counters[PUNT_ACCESS(reason.name.lower())] += 1
        if reason in FOR_SERVICES:
            return self.access.receive_frame(punt.data, punt.link, now, wall)
        # The rest concern the IP packet inside the frame: TTL or hop limit, and tunnel MTU.
        try:
            frame = EthernetFrame.decode(punt.data)
        except DecodeError:  # the fastpath only punts frames it parsed; counted if not
            self.counters[PuntCounter.UNDECODABLE] += 1
            return []
        if frame.ethertype == EtherType.IPV6:
            return self._icmpv6_error(reason, frame, punt.link, now)
        if frame.ethertype != EtherType.IPV4:
            return []
        if reason is Reason.FRAGMENT:
            return self._fragments(frame, punt.link)
        kind = ICMP_ERRORS.get(reason)
        if kind is None:
            return []
        visitor = self.host.visitor(frame.src)
        gateway = visitor.gateway if visitor is not None else self.gateway
        reply = icmp_error(kind, frame.payload, gateway, self.tunnel_mtu)
        if reply is None:
            return []
        out = EthernetFrame(frame.src, self.host.pseudo_mac, EtherType.IPV4, reply)
        return [SendFrame(punt.link, out.encode())]

    def _icmpv6_error(
        self, reason: Reason, frame: EthernetFrame, link: int, now: float
    ) -> list[Action]:
        """An MS's IPv6 packet too big for the tunnel or out of hops: the ICMPv6 error back
        to it, on its link (RFC 4443; ``ipv6_slowpath``)."""
        kind = ICMP_ERRORS.get(reason)
        if kind is None:
            return []
        reply = self.icmpv6.answer(kind, frame.payload, self.router6, self.tunnel_mtu, now)
        if reply is None:
            return []
        out = EthernetFrame(frame.src, self.host.pseudo_mac, EtherType.IPV6, reply)
        return [SendFrame(link, out.encode())]

    def from_tunnel(self, punt: Punt, now: float, wall: float) -> list[Action]:
        """An inner packet punted from the tunnel: ``punt.source`` is the DLMAP that sent it."""
        reason = Reason(punt.reason)
        self.counters[PUNT_TUNNEL(reason.name.lower())] += 1
        if reason is not Reason.DHCP:
            return []
        return self.access.receive_tunnel(punt.data, IPv6Address(punt.source), now, wall)

    def _fragments(self, frame: EthernetFrame, link: int) -> list[Action]:
        """Only a registered MS's packets go through the tunnel: its fragments, each in a frame
        like the one it came in, go back to the data path."""
        visitor = self.host.visitor(frame.src)
        if visitor is None or visitor.tunnel_dst is None or visitor.state is not State.REGISTERED:
            return []
        return [
            Reinject(EthernetFrame(frame.dst, frame.src, EtherType.IPV4, piece).encode(), link)
            for piece in fragment(frame.payload, self.tunnel_mtu)
        ]
