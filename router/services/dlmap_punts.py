"""The DLMAP's slow path: what it does with each packet its fastpath punts (sans-I/O).

The fastpath punts (``fastpath.common.Reason``) from the tunnel (IPv4 from a DMPA) and from the
TUN (IPv4 the kernel routes to an MS); each punt is counted (``punt.<reason>``) and becomes the
actions below, which the node carries out:

=============================  ==============  =============================================
reason                         from            actions
=============================  ==============  =============================================
``dhcp``                       the tunnel      the DHCP service's (built-in server or relay)
``dhcp`` (to port 67 of an     the TUN         the relay's: a server's answer to another
unbound address)                               relay's giaddr, learned from and sent on
                                               unchanged (none with the built-in server)
``fragment``                   the TUN         a :class:`Reinject` of each fragment (cut to
                                               the tunnel MTU) into the data path
``frag_needed``, ``ttl_expired``  either       a :class:`SendTun` of the ICMP error from the
                                               gateway (RFC 1812 4.3.2.7 decides if one is
                                               owed), which the kernel routes back
``frag_needed`` (IPv6)         the TUN         the ICMPv6 Packet Too Big from the DLMAP's
                                               address toward the CN (RFC 4443), rate-limited
                                               (``punt.icmpv6_limited``); the kernel answers
                                               the rest itself (the TUN has the tunnel MTU)
anything else                  either          none: counted only
=============================  ==============  =============================================
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from fastpath.common import Punt, Reason
from router.core.actions import Action, Reinject, SendTun
from router.core.counters import Counters, Family, Names
from router.services.dhcp_relay import DhcpRelay, RelayAction
from router.services.dhcp_server import DhcpServer
from router.services.ipv4_slowpath import fragment, icmp_error
from router.services.ipv6_slowpath import Icmpv6Errors

#: What the DLMAP's slow path returns: the core's action types and the relay's.
PuntAction = Action | RelayAction

#: Packets punted, by reason (the node's registry: ``node`` group).
PUNT = Family("punt.{}", "packets the fastpath punted", (r.name.lower() for r in Reason))
#: The ICMP error each reason is answered with (``ipv4_slowpath.icmp_error``'s kinds).
ICMP_ERRORS = {Reason.TTL_EXPIRED: "ttl", Reason.FRAG_NEEDED: "frag_needed"}


class PuntCounter(Names):
    ICMPV6_LIMITED = "punt.icmpv6_limited"  # an ICMPv6 error owed, not sent (rate)


class DLMAPPunts:
    """Punts in, actions out (see the module docstring)."""

    def __init__(
        self,
        dhcp: DhcpServer | DhcpRelay,
        gateway: IPv4Address,
        tunnel_mtu: int,
        address: IPv6Address | None = None,
    ) -> None:
        self.dhcp = dhcp
        self.gateway = gateway
        self.tunnel_mtu = tunnel_mtu
        #: the source of the ICMPv6 errors (the node's address); None: none are sent
        self.address = address
        self.counters = Counters()
        self.icmpv6 = Icmpv6Errors(self.counters, PuntCounter.ICMPV6_LIMITED)

    def from_tunnel(self, punt: Punt, now: float, wall: float) -> list[PuntAction]:
        """A packet punted from the tunnel: ``punt.source`` is the DMPA that sent it."""
        reason = self._count(punt)
        if reason is not Reason.DHCP:
            return self._icmp_error(reason, punt.data)
        dmpa = IPv6Address(punt.source)
        if isinstance(self.dhcp, DhcpRelay):
            return list(self.dhcp.receive_from_dmpa(punt.data, dmpa, now))
        return list(self.dhcp.receive(punt.data, dmpa, now, wall))

    def from_tun(self, punt: Punt, now: float, wall: float) -> list[PuntAction]:
        """A packet punted from the TUN (on its way to an MS)."""
        reason = self._count(punt)
        if reason is Reason.FRAGMENT:
            return [Reinject(piece) for piece in fragment(punt.data, self.tunnel_mtu)]
        if reason is Reason.DHCP:
            if isinstance(self.dhcp, DhcpRelay):
                return list(self.dhcp.receive_in_transit(punt.data, now, wall))
            return []
        if punt.data[:1] and punt.data[0] >> 4 == 6:
            return self._icmpv6_error(reason, punt.data, now)
        return self._icmp_error(reason, punt.data)

    def _icmpv6_error(self, reason: Reason, packet: bytes, now: float) -> list[PuntAction]:
        if reason is not Reason.FRAG_NEEDED or self.address is None:
            return []
        reply = self.icmpv6.answer("frag_needed", packet, self.address, self.tunnel_mtu, now)
        return [SendTun(reply)] if reply is not None else []

    def _count(self, punt: Punt) -> Reason:
        reason = Reason(punt.reason)
        self.counters[PUNT(reason.name.lower())] += 1
        return reason

    def _icmp_error(self, reason: Reason, packet: bytes) -> list[PuntAction]:
        kind = ICMP_ERRORS.get(reason)
        if kind is None:
            return []
        reply = icmp_error(kind, packet, self.gateway, self.tunnel_mtu)
        return [SendTun(reply)] if reply is not None else []
