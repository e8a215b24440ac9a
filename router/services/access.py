"""The DMPA's access-link slow path: one punted frame in, the actions it causes out.

The fastpath punts ARP, DHCP, ICMP to the gateway and the frames of an MS it has no binding for
(``fastpath.common.Reason``). :class:`AccessDispatcher` decodes such a frame, makes sure the MS
has a visitor entry (the first frame of an unknown MAC is an attach, seed 3.2), and hands it to
the service that owns it:

========================================  ==============================================
frame                                     service
========================================  ==============================================
ARP                                       :class:`~router.services.arp_proxy.ArpProxy`
IPv4/UDP to port 67                       :class:`~router.services.dhcp_dmpa.DhcpDmpa`
IPv4/ICMP to the visitor's gateway        :class:`~router.services.icmp_responder.IcmpResponder`
IPv6 to us or a multicast MAC (RS, NS)    :class:`~router.services.nd_proxy.NdProxy`
any other IPv4 (an MS not yet bound)      address learning, then dropped
========================================  ==============================================

DHCP answers coming back from a DLMAP through the tunnel enter by :meth:`receive_tunnel`.

Peer input never raises: a frame that does not decode, or that a service refuses, is dropped
and counted per reason; the log gets at most one line per reason per interval (BIRD's
``log_rl``), never one per packet.

The services and this dispatcher share :mod:`router.services.common` (the DMPA as an
:class:`~router.services.common.AccessHost`, :class:`~router.services.common.Drops`); the
composition root builds the services and hands them to the dispatcher.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from router.core.actions import SendFrame
from router.core.counters import Declared, Names
from router.core.dmpa import Profile, State, Visitor
from router.services.arp_proxy import ArpProxy
from router.services.common import AccessAction, AccessHost, Drops
from router.services.dhcp_dmpa import DhcpDmpa
from router.services.icmp_responder import IcmpCounter, IcmpResponder
from router.services.nd_proxy import NdProxy
from router.wire.arp import ArpOp, ArpPacket
from router.wire.dhcp import CLIENT_PORT, SERVER_PORT, DhcpMessage, DhcpMessageType
from router.wire.errors import DecodeError
from router.wire.ethernet import ZERO_MAC, EthernetFrame, EtherType, MacAddress, VlanTag
from router.wire.icmp import IcmpMessage
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram

__all__ = ["AccessAction", "AccessDispatcher", "Admission"]


class AccessCounter(Names):
    """What the access dispatcher counts (``access`` group)."""

    AAA_REJECTED_FORGOTTEN = "aaa_rejected_forgotten"
    #: A frame on an 802.1X link from a MAC the authenticator has not authorized there.
    AUTH_UNAUTHORIZED = "auth.unauthorized"
    AUTH_AUTHORIZED = "auth.authorized"
    #: The authenticator reported a failure or a de-authentication: the visitor detached.
    AUTH_DETACHED = "auth.detached"
    ARP_GATEWAY_ANNOUNCED = "arp.gateway_announced"
    ARP_MALFORMED = "arp.malformed"
    DHCP_BAD_PORT = "dhcp.bad_port"
    DHCP_MALFORMED = "dhcp.malformed"
    ETH_BAD_ETHERTYPE = "eth.bad_ethertype"
    ETH_BAD_SOURCE = "eth.bad_source"
    ETH_MALFORMED = "eth.malformed"
    ETH_NOT_FOR_US = "eth.not_for_us"
    ETH_OWN_SOURCE = "eth.own_source"
    ICMP_FRAGMENT = "icmp.fragment"
    IPV4_MALFORMED = "ipv4.malformed"
    IPV4_REGISTERED = "ipv4.registered"  # a registered MS sent from another address
    IPV4_UNREGISTERED = "ipv4.unregistered"
    LIMIT_ARP = "limit.arp"
    LIMIT_DHCP_DISCOVER = "limit.dhcp_discover"
    LIMIT_NEW_MAC = "limit.new_mac"
    LIMIT_REJECTED_FORGOTTEN = "limit.rejected_forgotten"
    MS_REJECTED = "ms.rejected"
    STATION_ASSOCIATED = "station.associated"
    STATION_BAD_MAC = "station.bad_mac"
    TUNNEL_MALFORMED = "tunnel.malformed"
    TUNNEL_NOT_DHCP = "tunnel.not_dhcp"
    UDP_MALFORMED = "udp.malformed"


def _ipv6_to_us(eth: EthernetFrame, pseudo: MacAddress) -> bool:
    """IPv6 for the pseudo-MAC, or to an IPv6 multicast MAC (33:33:..., RFC 2464 7): an RS to
    all-routers, an NS to a solicited-node group."""
    return eth.dst == pseudo or eth.dst.packed[:2] == b"\x33\x33"


def _aaa_rejected(visitor: Visitor) -> bool:
    """AAA said no before any PBU: detach only drops the entry (no PBU, no clock)."""
    return (
        visitor.state is State.REJECTED and not visitor.registered_once and visitor.pending is None
    )


class Admission(Protocol):
    """Per-source rate limits on the access link (``router.core.limits.AccessLimits``): each
    call takes a token from the source's bucket and says whether the frame may go on."""

    def new_mac(self, link: int, now: float) -> bool: ...

    def dhcp_discover(self, mac: MacAddress, now: float) -> bool: ...

    def arp(self, mac: MacAddress, now: float) -> bool: ...


class AccessDispatcher:
    """Route punted access frames (and tunnelled DHCP replies) to the DMPA's services."""

    def __init__(
        self,
        host: AccessHost,
        arp: ArpProxy,
        icmp: IcmpResponder,
        dhcp: DhcpDmpa,
        drops: Drops | None = None,
        admission: Admission | None = None,
        *,
        max_strangers: int = 4096,
        gated: frozenset[int] = frozenset(),
        nd: NdProxy | None = None,
    ) -> None:
        self.host = host
        #: IPv6 Neighbor Discovery for dual-stack MSs (None: IPv6 frames are dropped).
        self.nd = nd
        self.arp = arp
        self.icmp = icmp
        self.dhcp = dhcp
        self.drops = drops if drops is not None else Drops()
        #: Rate limits per source (new MACs per link, ARP and DISCOVERs per MAC); None: none.
        self.admission = admission
        #: MACs attached by their frames, oldest first, at most ``max_strangers``: past that,
        #: the oldest one AAA rejected is forgotten (a rejected visitor entry is kept so its
        #: frames do not ask AAA again; without a cap, a slow flood of invented MACs would
        #: grow the visitor table for ever).
        self.max_strangers = max_strangers
        self._strangers: OrderedDict[MacAddress, None] = OrderedDict()
        #: Access links whose authenticator (802.1X: hostapd) decides who is on them: a frame
        #: attaches nobody there; only :meth:`authorized` does, and only on its own link.
        self.gated = gated

    @property
    def counters(self) -> Counter[str]:
        """Every counter of the dispatcher and its services (names are prefixed by service)."""
        total: Counter[str] = Counter()
        for part in (self.drops, self.arp.drops, self.icmp.drops, self.dhcp.drops):
            total.update(part.counters)
        if self.nd is not None:
            total.update(self.nd.drops.counters)
        return total

    # --- access link ----------------------------------------------------------------------

    def receive_frame(
        self, frame: bytes | bytearray | memoryview, link: int, now: float, wall: float
    ) -> list[AccessAction]:
        """One Ethernet frame from access link ``link``, as the fastpath punted it."""
        try:
            eth = EthernetFrame.decode(frame)
        except DecodeError as exc:
            return self._drop(AccessCounter.ETH_MALFORMED, now, link=link, error=exc)
        if eth.src.is_multicast or eth.src == ZERO_MAC:
            return self._drop(AccessCounter.ETH_BAD_SOURCE, now, link=link, src=eth.src)
        pseudo = self.host.pseudo_mac
        if eth.src == pseudo:
            return self._drop(
                AccessCounter.ETH_OWN_SOURCE, now, link=link
            )  # a loop on the access side
        if eth.ethertype == EtherType.IPV6 and self.nd is not None and _ipv6_to_us(eth, pseudo):
            actions, visitor = self._visitor(eth, link, now)
            return actions if visitor is None else actions + self.nd.receive(visitor, eth, now)
        if eth.dst != pseudo and not eth.dst.is_broadcast:
            return self._drop(AccessCounter.ETH_NOT_FOR_US, now, link=link, dst=eth.dst)
        if eth.ethertype == EtherType.ARP:
            try:
                arp = ArpPacket.decode(eth.payload)
            except DecodeError as exc:
                return self._drop(
                    AccessCounter.ARP_MALFORMED, now, link=link, src=eth.src, error=exc
                )
            known = self.host.visitor(eth.src) is not None
            actions, visitor = self._visitor(eth, link, now)
            if visitor is None:
                return actions
            if self.admission is not None and not self.admission.arp(eth.src, now):
                return actions + self._drop(AccessCounter.LIMIT_ARP, now, link=link, src=eth.src)
            actions += self.arp.receive(visitor, eth, arp, now, wall)
            if not known and arp.is_gratuitous:
                actions.append(self._announce_gateway(visitor, eth.src, eth.vlan))
            return actions
        if eth.ethertype != EtherType.IPV4:
            return self._drop(
                AccessCounter.ETH_BAD_ETHERTYPE, now, link=link, ethertype=eth.ethertype
            )
        return self._ipv4(eth, link, now, wall)

    def _ipv4(self, eth: EthernetFrame, link: int, now: float, wall: float) -> list[AccessAction]:
        try:
            ip = IPv4Packet.decode(eth.payload)  # Ethernet padding after total length ignored
        except DecodeError as exc:
            return self._drop(AccessCounter.IPV4_MALFORMED, now, link=link, src=eth.src, error=exc)
        if ip.protocol == IPProto.UDP and not ip.is_fragment:
            try:
                udp = UdpDatagram.decode(ip.payload)
            except DecodeError as exc:
                return self._drop(
                    AccessCounter.UDP_MALFORMED, now, link=link, src=eth.src, error=exc
                )
            if udp.dst_port == SERVER_PORT:
                return self._dhcp(eth, ip, udp, link, now, wall)
        actions, visitor = self._visitor(eth, link, now)
        if visitor is None:
            return actions
        if ip.protocol == IPProto.ICMP and ip.dst == visitor.gateway:
            if ip.is_fragment:
                return actions + self._drop(
                    AccessCounter.ICMP_FRAGMENT, now, link=link, src=eth.src
                )
            try:
                message = IcmpMessage.decode(ip.payload)
            except DecodeError as exc:
                return actions + self._drop(IcmpCounter.MALFORMED, now, link=link, error=exc)
            actions += self.arp.learn(visitor, ip.src, now, wall)
            return actions + self.icmp.receive(visitor, eth, ip, message, now, wall)
        # An MS not bound yet shows the address it holds (seed 4: it may come from another
        # DMPA of the domain with its address kept): that registers it (router.core.dmpa).
        actions += self.arp.learn(visitor, ip.src, now, wall)
        registered = visitor.state is State.REGISTERED
        if registered:
            reason = AccessCounter.IPV4_REGISTERED
            return actions + self._drop(reason, now, link=link, src=eth.src, dst=ip.dst)
        # normal while the MS authenticates and registers: info, not a warning
        self.drops.expected(
            AccessCounter.IPV4_UNREGISTERED, now, link=link, src=eth.src,
            dst=ip.dst, state=visitor.state,
        )  # fmt: skip
        return actions

    def _dhcp(
        self,
        eth: EthernetFrame,
        ip: IPv4Packet,
        udp: UdpDatagram,
        link: int,
        now: float,
        wall: float,
    ) -> list[AccessAction]:
        if udp.src_port != CLIENT_PORT:
            return self._drop(
                AccessCounter.DHCP_BAD_PORT, now, link=link, src=eth.src, port=udp.src_port
            )
        try:
            UdpDatagram.decode(ip.payload, src=ip.src, dst=ip.dst)  # verify the checksum
            message = DhcpMessage.decode(udp.payload)
        except DecodeError as exc:
            return self._drop(AccessCounter.DHCP_MALFORMED, now, link=link, src=eth.src, error=exc)
        actions, visitor = self._visitor(eth, link, now)
        if visitor is None:
            return actions
        if (
            self.admission is not None
            and message.message_type == DhcpMessageType.DISCOVER
            and not self.admission.dhcp_discover(eth.src, now)
        ):
            return actions + self._drop(
                AccessCounter.LIMIT_DHCP_DISCOVER, now, link=link, src=eth.src
            )
        return actions + self.dhcp.from_access(visitor, eth, ip, message, now, wall)

    def _visitor(
        self, eth: EthernetFrame, link: int, now: float
    ) -> tuple[list[AccessAction], Visitor | None]:
        """The visitor entry of the frame's sender, attaching it on its first frame (or when it
        shows up on another access link); None for an MS that AAA rejected."""
        actions: list[AccessAction] = []
        visitor = self.host.visitor(eth.src)
        if link in self.gated:
            # hostapd's wired driver closes nothing in the kernel: we serve nothing (ARP,
            # DHCP, ICMP, address learning) to a MAC not authorized on this very link.
            if visitor is None or visitor.link != link or visitor.state is State.REJECTED:
                return actions + self._unauthorized(eth.src, link, now), None
            return actions, visitor
        if visitor is None or visitor.link != link:
            # An attach costs a visitor entry and an AAA request: a flood of invented MACs
            # draws from one bucket per link (router.core.limits, Rule 3).
            if self.admission is not None and not self.admission.new_mac(link, now):
                return actions + self._drop(
                    AccessCounter.LIMIT_NEW_MAC, now, link=link, src=eth.src
                ), None
            actions += self._attach(eth.src, link, now)
            visitor = self.host.visitor(eth.src)
        if visitor is None or visitor.state is State.REJECTED:
            return actions + self._drop(
                AccessCounter.MS_REJECTED, now, link=link, src=eth.src
            ), None
        return actions, visitor

    def _attach(self, mac: MacAddress, link: int, now: float) -> list[AccessAction]:
        """A visitor entry for ``mac`` on ``link`` (AAA starts), room made for it first."""
        actions = self._make_room(now)
        actions += self.host.attach(mac, link, now)
        self._strangers[mac] = None
        self._strangers.move_to_end(mac)
        return actions

    def _make_room(self, now: float, look: int = 4) -> list[AccessAction]:
        """Before an attach: past ``max_strangers``, forget the oldest attached MAC that AAA
        rejected (its entry only), looking at no more than ``look`` of them. One still being
        authenticated goes back to the end; any other state is no stranger any more."""
        actions: list[AccessAction] = []
        strangers = self._strangers
        for _ in range(look):
            if len(strangers) < self.max_strangers:
                break
            mac, _ = strangers.popitem(last=False)
            visitor = self.host.visitor(mac)
            if visitor is None:
                continue
            if visitor.state is State.AUTHENTICATING:
                strangers[mac] = None
            elif _aaa_rejected(visitor):
                self.drops.count(AccessCounter.LIMIT_REJECTED_FORGOTTEN)
                actions += self.host.detach(mac, now, now)
        return actions

    def associated(self, mac: MacAddress, link: int, now: float) -> list[AccessAction]:
        """The base station reports that station ``mac`` associated with access link ``link``
        (seed 3.2 step 1, "MS attaches to DMPA", seen by a DMPA on the base station: an access
        point's association hook calls ``netlmm attach``).

        The station gets a visitor entry (AAA starts at once, as for its first frame) and an
        unsolicited ARP reply for its gateway. A host that moved here lost its ARP entries
        with its carrier and its first solicitation for the gateway went out while the link
        was down; Linux retries only after a second (``retrans_time``). Any ARP packet from the
        gateway's address completes that pending entry (RFC 826 merge), so the host's queued
        packets come here now and register it; a host with no pending entry ignores it."""
        if mac.is_multicast or mac == ZERO_MAC or mac == self.host.pseudo_mac:
            return self._drop(AccessCounter.STATION_BAD_MAC, now, link=link, mac=mac)
        self.drops.count(AccessCounter.STATION_ASSOCIATED)
        actions: list[AccessAction] = []
        visitor = self.host.visitor(mac)
        if link in self.gated:  # an association is no authorization (802.1X decides)
            if visitor is None or visitor.link != link or visitor.state is State.REJECTED:
                return self._unauthorized(mac, link, now)
            return [self._announce_gateway(visitor, mac, None)]
        if visitor is None or visitor.link != link:
            actions += self._attach(mac, link, now)
            visitor = self.host.visitor(mac)
        if visitor is None or visitor.state is State.REJECTED:
            return actions + self._drop(AccessCounter.MS_REJECTED, now, link=link, src=mac)
        return [*actions, self._announce_gateway(visitor, mac, None)]

    def authorized(
        self,
        mac: MacAddress,
        link: int,
        profile: Profile,
        now: float,
        wall: float,
        *,
        announce: bool = True,
    ) -> list[AccessAction]:
        """The authenticator of ``link`` authorized ``mac`` as ``profile.nai`` (802.1X EAP
        success, the profile from the RADIUS Access-Accept; PPP's PAP or CHAP): the visitor
        entry is made (or kept, on a re-authentication) and, with ``announce``, the gateway
        announced to the MS, whose ARP for it went unanswered while it was not authorized (a
        PPP MS has no ARP)."""
        if mac.is_multicast or mac == ZERO_MAC or mac == self.host.pseudo_mac:
            return self._drop(AccessCounter.STATION_BAD_MAC, now, link=link, mac=mac)
        self.drops.count(AccessCounter.AUTH_AUTHORIZED)
        actions = self.host.authorized(mac, link, profile, now, wall)
        visitor = self.host.visitor(mac)
        settled = visitor is not None and visitor.state is not State.REJECTED
        if announce and settled and visitor is not None and visitor.link == link:
            actions.append(self._announce_gateway(visitor, mac, None))
        return actions

    def deauthorized(
        self, mac: MacAddress, link: int, now: float, wall: float
    ) -> list[AccessAction]:
        """The authenticator of ``link`` reports an EAP failure or a de-authentication for
        ``mac``: a visitor of that link is detached (de-registered); one on another link (it
        moved) is not touched."""
        visitor = self.host.visitor(mac)
        if visitor is None or visitor.link != link:
            return []
        self.drops.count(AccessCounter.AUTH_DETACHED)
        return self.host.detach(mac, now, wall)

    def _unauthorized(self, mac: MacAddress, link: int, now: float) -> list[AccessAction]:
        # Normal while an MS authenticates (its DHCP and ARP go out before EAP ends): counted,
        # logged at the drops' rate.
        return self._drop(AccessCounter.AUTH_UNAUTHORIZED, now, link=link, src=mac)

    def forget_rejected(self, now: float) -> list[AccessAction]:
        """New AAA profiles (SIGHUP): forget every MAC AAA refused, so that its next frame asks
        AAA again instead of being dropped as refused until a restart."""
        actions: list[AccessAction] = []
        for visitor in list(self.host.visitor_list()):
            if _aaa_rejected(visitor):
                self.drops.count(AccessCounter.AAA_REJECTED_FORGOTTEN)
                actions += self.host.detach(visitor.mac, now, now)
        return actions

    def _announce_gateway(
        self, visitor: Visitor, mac: MacAddress, vlan: VlanTag | None
    ) -> SendFrame:
        """An unsolicited ARP reply from the gateway at the pseudo-MAC, unicast to ``mac``.

        Sent to an arriving MS that announces itself (many phones do on re-association) and
        to a station the base station reports (:meth:`associated`): a host that lost its ARP
        entries with the old link and whose solicitation for the gateway went out during the
        move would wait a whole ARP retransmission (1 s). The reply completes that pending
        resolution at once; a host with no entry ignores it."""
        reply = ArpPacket(
            ArpOp.REPLY,
            visitor.pseudo_mac,
            visitor.gateway,
            mac,
            visitor.address_seen or visitor.hoa or IPv4Address(0),
        )
        frame = EthernetFrame(mac, visitor.pseudo_mac, EtherType.ARP, reply.encode(), vlan)
        self.drops.count(AccessCounter.ARP_GATEWAY_ANNOUNCED)
        return SendFrame(visitor.link, frame.encode())

    # --- tunnel ---------------------------------------------------------------------------

    def receive_tunnel(
        self, packet: bytes | bytearray | memoryview, src: IPv6Address, now: float, wall: float
    ) -> list[AccessAction]:
        """An inner IPv4 packet the fastpath punted from the tunnel (DHCP from DLMAP ``src``)."""
        try:
            ip = IPv4Packet.decode(packet)
        except DecodeError as exc:
            return self._drop(AccessCounter.TUNNEL_MALFORMED, now, peer=src, error=exc)
        if ip.protocol != IPProto.UDP or ip.is_fragment:
            return self._drop(AccessCounter.TUNNEL_NOT_DHCP, now, peer=src, protocol=ip.protocol)
        try:
            udp = UdpDatagram.decode(ip.payload, src=ip.src, dst=ip.dst)
        except DecodeError as exc:
            return self._drop(AccessCounter.TUNNEL_MALFORMED, now, peer=src, error=exc)
        if udp.src_port != SERVER_PORT or udp.dst_port != CLIENT_PORT:
            return self._drop(AccessCounter.TUNNEL_NOT_DHCP, now, peer=src, port=udp.dst_port)
        try:
            message = DhcpMessage.decode(udp.payload)
        except DecodeError as exc:
            return self._drop(AccessCounter.DHCP_MALFORMED, now, peer=src, error=exc)
        return self.dhcp.from_tunnel(src, ip, message, now, wall)

    def _drop(self, reason: Declared, now: float, **context: object) -> list[AccessAction]:
        self.drops.drop(reason, now, **context)
        return []
