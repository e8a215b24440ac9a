"""DHCP on the DMPA (seed 5.2): carried to the DLMAP through the tunnel, or answered here.

Relay mode (profile mode ``dhcp``, seed 5.2 and architecture "address modes" 1):

Rule 1. A client message from the MS (UDP 68 -> 67, broadcast or unicast: renewals go the same
        way) is tagged with Relay Agent Information (option 82, RFC 3046): circuit-id = the
        access link, subscriber-id (RFC 3993) = the MS's NAI from its visitor entry. It then
        goes to the visitor's DLMAP as an IPv4 packet in the tunnel (:class:`SendTunnel`), even
        before the MS is registered; the DLMAP relays it (it sets giaddr: the DMPA, like an
        RFC 6221 lightweight relay, leaves giaddr zero). Until AAA has named the DLMAP and the
        NAI, nothing can be sent: the message is dropped and the client retries.
Rule 2. Client messages that carry option 82 already, or a giaddr, come from no honest client on
        an untrusted access link: dropped and counted (RFC 3046 2.1). So are messages whose
        chaddr is not the Ethernet source: one MS may not ask for another's lease.
Rule 3. A reply from the DLMAP (OFFER, ACK, NAK) is delivered only to the MS whose chaddr it
        names, when that MS's DLMAP sent it and it answers a transaction the MS started here;
        option 82 is removed, and the frame leaves from the pseudo-MAC, broadcast or unicast as
        RFC 2131 4.1 says (NAK and broadcast-flag replies broadcast; else unicast to ciaddr, or
        to yiaddr at chaddr).
Rule 4. An ACK with an address is the core event ``DMPA.dhcp_ack``: the PBU carries that
        address (seed 5.2: "Upon receiving the DHCP ack ... DMPA will send the proxy BU"). A NAK
        is delivered and counted; the MS is left waiting (it restarts with DISCOVER).
Rule 5. RELEASE is carried to the DLMAP (the server frees the lease) and is a de-registration
        (``DMPA.detach``). DECLINE is carried too; when it declines the address the visitor is
        registered with, that binding is useless, so it is a de-registration as well; the MS
        attaches anew with its next DISCOVER (RFC 2131 3.1: after at least 10 s).

Co-located server mode (profile modes ``dlmap`` and ``static``: the address comes from the PBA or
the profile, not from a DHCP server; architecture "address modes" 2 and 3):

Rule 6. The DMPA answers as a DHCP server on the link would (RFC 2131 4.3): OFFER/ACK with the
        HoA of the visitor entry, server-id and router = the gateway, the subnet mask of the
        configured prefix length, the lease time (never longer than the binding lifetime,
        wire-reference 7.6), T1/T2 and the configured DNS, domain and MTU; NAK for a REQUEST
        for another address; INFORM gets its ACK without lease; RELEASE and DECLINE of the HoA
        are de-registrations as in Rule 5. Before the PBA has granted the HoA, the DMPA stays
        silent: the client retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address

from router.core.actions import SendFrame, SendTunnel
from router.core.counters import Declared, Family, Names
from router.core.defaults import LEASE_TIME, PREFIX_LENGTH, TUNNEL_MTU
from router.core.dmpa import State, Visitor
from router.services.common import AccessAction, AccessHost, Drops
from router.wire.dhcp import (
    CLIENT_PORT,
    SERVER_PORT,
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
    RelayAgentInfo,
)
from router.wire.errors import EncodeError
from router.wire.ethernet import BROADCAST_MAC, EthernetFrame, EtherType, MacAddress, VlanTag
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram

log = logging.getLogger(__name__)

_ZERO = IPv4Address(0)
_BROADCAST = IPv4Address("255.255.255.255")
_CLIENT_TYPES = frozenset(
    (
        DhcpMessageType.DISCOVER,
        DhcpMessageType.REQUEST,
        DhcpMessageType.DECLINE,
        DhcpMessageType.RELEASE,
        DhcpMessageType.INFORM,
    )
)
_SERVER_TYPES = frozenset((DhcpMessageType.OFFER, DhcpMessageType.ACK, DhcpMessageType.NAK))
_INFINITE = 0xFFFFFFFF


class DhcpDmpaCounter(Names):
    """What the DMPA's DHCP counts (``access`` group; also :data:`RELAYED`, :data:`DELIVERED`)."""

    ACK = "dhcp.ack"
    BAD_HTYPE = "dhcp.bad_htype"
    BAD_TYPE = "dhcp.bad_type"
    CHADDR_MISMATCH = "dhcp.chaddr_mismatch"
    CLIENT_OPTION82 = "dhcp.client_option82"
    DECLINE = "dhcp.decline"
    GIADDR_SET = "dhcp.giaddr_set"
    NAK = "dhcp.nak"
    NOT_AUTHENTICATED = "dhcp.not_authenticated"
    NOT_REQUEST = "dhcp.not_request"
    OPTION82_TOO_LONG = "dhcp.option82_too_long"
    RELEASE = "dhcp.release"
    RELEASE_OTHER_ADDRESS = "dhcp.release_other_address"
    REPLY_BAD_TYPE = "dhcp.reply_bad_type"
    REPLY_NOT_REPLY = "dhcp.reply_not_reply"
    REPLY_UNKNOWN_CLIENT = "dhcp.reply_unknown_client"
    REPLY_UNSOLICITED = "dhcp.reply_unsolicited"
    REPLY_WRONG_DLMAP = "dhcp.reply_wrong_dlmap"
    REPLY_WRONG_SUBSCRIBER = "dhcp.reply_wrong_subscriber"
    SERVER_ACK = "dhcp.server.ack"
    SERVER_BAD_REQUEST = "dhcp.server.bad_request"
    SERVER_INFORM = "dhcp.server.inform"
    SERVER_NAK = "dhcp.server.nak"
    SERVER_OFFER = "dhcp.server.offer"
    SERVER_OTHER_SERVER = "dhcp.server.other_server"
    SERVER_WAITING_PBA = "dhcp.server.waiting_pba"
    TOO_BIG = "dhcp.too_big"


#: Client messages carried to the DLMAP, by type (Rule 1).
RELAYED = Family("dhcp.relayed.{}", "carried to the DLMAP", (t.name.lower() for t in _CLIENT_TYPES))
#: Server messages delivered to the MS other than ACK and NAK (Rule 3).
DELIVERED = Family(
    "dhcp.delivered.{}", "delivered to the MS", (t.name.lower() for t in _SERVER_TYPES)
)


@dataclass(frozen=True, slots=True)
class DhcpDmpaConfig:
    #: Prefix length of the subnet mask given to the MS (co-located server).
    prefix_length: int = PREFIX_LENGTH
    #: Lease time offered by the co-located server, seconds; capped by the binding lifetime.
    lease_time: int = LEASE_TIME
    dns_servers: tuple[IPv4Address, ...] = ()
    domain_name: str | None = None
    #: Option 26 for the MS (a value <= the tunnel MTU avoids PMTU black holes; wire-ref 6.x).
    interface_mtu: int | None = None
    #: Circuit-id of access link ``n``: ``link_names[n]`` when given, else ``str(n)``.
    link_names: tuple[str, ...] = ()
    #: The largest IPv4 packet carried to the DLMAP (the tunnel MTU for the inner packet).
    max_packet: int = TUNNEL_MTU
    #: Transactions remembered per MS, and MSs remembered, to match replies from the DLMAP.
    xids_per_client: int = 4
    max_clients: int = 65536

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.prefix_length <= 32:
            problems.append(f"prefix_length={self.prefix_length} is not 0..32")
        if not 1 <= self.lease_time <= _INFINITE:
            problems.append(f"lease_time={self.lease_time} is not 1..2^32-1")
        if self.interface_mtu is not None and not 68 <= self.interface_mtu <= 0xFFFF:
            problems.append(f"interface_mtu={self.interface_mtu} is not 68..65535")
        if self.domain_name is not None and not 0 < len(self.domain_name.encode()) <= 255:
            problems.append("domain_name must be 1..255 bytes")
        if len(self.dns_servers) > 63:
            problems.append("at most 63 dns_servers fit in option 6")
        if self.max_packet < 576 or self.xids_per_client < 1 or self.max_clients < 1:
            problems.append("max_packet >= 576, xids_per_client >= 1 and max_clients >= 1")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def subnet_mask(self) -> IPv4Address:
        return IPv4Network(f"0.0.0.0/{self.prefix_length}").netmask

    def circuit_id(self, link: int) -> bytes:
        if 0 <= link < len(self.link_names):
            return self.link_names[link].encode()
        return str(link).encode()


class DhcpDmpa:
    """The DMPA's DHCP: relay to the DLMAP through the tunnel, or co-located server."""

    def __init__(
        self,
        host: AccessHost,
        config: DhcpDmpaConfig | None = None,
        drops: Drops | None = None,
        *,
        colocated_modes: frozenset[str] = frozenset(("dlmap", "static")),
    ) -> None:
        self.host = host
        self.config = config if config is not None else DhcpDmpaConfig()
        self.drops = drops if drops is not None else Drops(log)
        self.colocated_modes = colocated_modes
        #: MS MAC -> xids of its last messages carried to the DLMAP (oldest MS first).
        self._xids: dict[MacAddress, tuple[int, ...]] = {}

    def forget(self, mac: MacAddress) -> None:
        """The MS is gone: forget its transactions."""
        self._xids.pop(mac, None)

    # --- from the MS ----------------------------------------------------------------------

    def from_access(
        self,
        visitor: Visitor,
        eth: EthernetFrame,
        ip: IPv4Packet,
        message: DhcpMessage,
        now: float,
        wall: float,
    ) -> list[AccessAction]:
        """A client message from ``visitor`` (UDP 68 -> 67, checksum verified)."""
        if message.op != BootpOp.BOOTREQUEST:
            return self._drop(DhcpDmpaCounter.NOT_REQUEST, now, mac=eth.src, op=message.op)
        mac = message.client_mac
        if mac is None:
            return self._drop(DhcpDmpaCounter.BAD_HTYPE, now, mac=eth.src, htype=message.htype)
        if mac != visitor.mac:  # Rule 2
            return self._drop(DhcpDmpaCounter.CHADDR_MISMATCH, now, mac=eth.src, chaddr=mac)
        if message.giaddr != _ZERO:
            return self._drop(DhcpDmpaCounter.GIADDR_SET, now, mac=eth.src, giaddr=message.giaddr)
        if any(o.code == DhcpOptionCode.RELAY_AGENT_INFO for o in message.options):
            return self._drop(DhcpDmpaCounter.CLIENT_OPTION82, now, mac=eth.src)
        kind = message.message_type
        if kind not in _CLIENT_TYPES:
            return self._drop(DhcpDmpaCounter.BAD_TYPE, now, mac=eth.src, type=kind)
        assert isinstance(kind, DhcpMessageType)
        if visitor.mode is None or visitor.nai is None or visitor.tunnel_dst is None:
            return self._drop(
                DhcpDmpaCounter.NOT_AUTHENTICATED, now, mac=eth.src, state=visitor.state
            )
        if visitor.mode in self.colocated_modes:
            return self._serve(visitor, eth, message, kind, now, wall)
        return self._relay(visitor, visitor.tunnel_dst, visitor.nai, ip, message, kind, now, wall)

    def _relay(
        self,
        visitor: Visitor,
        dlmap: IPv6Address,
        nai: str,
        ip: IPv4Packet,
        message: DhcpMessage,
        kind: DhcpMessageType,
        now: float,
        wall: float,
    ) -> list[AccessAction]:
        """Rule 1 and Rule 5."""
        try:
            info = RelayAgentInfo.of(
                circuit_id=self.config.circuit_id(visitor.link), subscriber_id=nai.encode()
            )
            tagged = message.with_relay_agent_info(info)
        except EncodeError:  # an NAI too long for option 82's 255 bytes
            return self._drop(DhcpDmpaCounter.OPTION82_TOO_LONG, now, mac=visitor.mac, nai=nai)
        udp = UdpDatagram(CLIENT_PORT, SERVER_PORT, tagged.encode())
        try:
            packet = IPv4Packet(
                src=ip.src,
                dst=ip.dst,
                protocol=IPProto.UDP,
                payload=udp.encode(ip.src, ip.dst),
                ttl=ip.ttl,
                tos=ip.tos,
                identification=ip.identification,
            ).encode()
        except EncodeError:
            packet = b""  # longer than an IPv4 packet can be: dropped just below
        if not packet or len(packet) > self.config.max_packet:
            return self._drop(DhcpDmpaCounter.TOO_BIG, now, mac=visitor.mac, size=len(packet))
        self._remember(visitor.mac, message.xid)
        self.drops.count(RELAYED(kind.name.lower()))
        actions: list[AccessAction] = [SendTunnel(dlmap, packet)]
        if kind == DhcpMessageType.RELEASE:
            actions += self._release(visitor, message.ciaddr, now, wall)
        elif kind == DhcpMessageType.DECLINE:
            actions += self._decline(visitor, message.requested_ip, now, wall)
        return actions

    def _release(
        self, visitor: Visitor, address: IPv4Address, now: float, wall: float
    ) -> list[AccessAction]:
        """Rule 5: releasing the address we registered (or any, before one is) de-registers."""
        if visitor.hoa is not None and address != visitor.hoa:
            self.drops.count(DhcpDmpaCounter.RELEASE_OTHER_ADDRESS)
            return []
        self.drops.count(DhcpDmpaCounter.RELEASE)
        self.forget(visitor.mac)
        return list(self.host.detach(visitor.mac, now, wall))

    def _decline(
        self, visitor: Visitor, address: IPv4Address | None, now: float, wall: float
    ) -> list[AccessAction]:
        """Rule 5: declining the registered HoA makes its binding useless: de-register."""
        self.drops.count(DhcpDmpaCounter.DECLINE)
        if address is None or address != visitor.hoa:
            return []
        self.forget(visitor.mac)
        return list(self.host.detach(visitor.mac, now, wall))

    def _remember(self, mac: MacAddress, xid: int) -> None:
        xids = self._xids.pop(mac, ())
        if xid not in xids:
            xids = (*xids, xid)[-self.config.xids_per_client :]
        self._xids[mac] = xids  # now the most recent
        while len(self._xids) > self.config.max_clients:
            del self._xids[next(iter(self._xids))]

    # --- from the DLMAP -------------------------------------------------------------------

    def from_tunnel(
        self, src: IPv6Address, ip: IPv4Packet, message: DhcpMessage, now: float, wall: float
    ) -> list[AccessAction]:
        """A server message (UDP 67 -> 68, checksum verified) from DLMAP ``src`` (Rule 3, 4)."""
        if message.op != BootpOp.BOOTREPLY:
            return self._drop(DhcpDmpaCounter.REPLY_NOT_REPLY, now, peer=src, op=message.op)
        kind = message.message_type
        if kind not in _SERVER_TYPES:
            return self._drop(DhcpDmpaCounter.REPLY_BAD_TYPE, now, peer=src, type=kind)
        mac = message.client_mac
        if mac is None:
            return self._drop(DhcpDmpaCounter.BAD_HTYPE, now, peer=src, htype=message.htype)
        visitor = self.host.visitor(mac)
        if visitor is None:
            self.forget(mac)
            return self._drop(DhcpDmpaCounter.REPLY_UNKNOWN_CLIENT, now, peer=src, chaddr=mac)
        if visitor.tunnel_dst != src:
            return self._drop(DhcpDmpaCounter.REPLY_WRONG_DLMAP, now, peer=src, chaddr=mac)
        if message.xid not in self._xids.get(mac, ()):
            return self._drop(DhcpDmpaCounter.REPLY_UNSOLICITED, now, peer=src, chaddr=mac)
        info = message.relay_agent_info
        nai = (visitor.nai or "").encode()
        if info is not None and info.subscriber_id not in (None, nai):
            return self._drop(DhcpDmpaCounter.REPLY_WRONG_SUBSCRIBER, now, peer=src, chaddr=mac)
        reply = message.without_relay_agent_info()
        source = ip.src if ip.src != _ZERO else visitor.gateway
        actions: list[AccessAction] = [self._frame(visitor, reply, source, None)]
        if kind == DhcpMessageType.ACK and reply.yiaddr != _ZERO:
            self.drops.count(DhcpDmpaCounter.ACK)
            actions += self.host.dhcp_ack(mac, reply.yiaddr, now, wall)
        elif kind == DhcpMessageType.NAK:
            self.drops.count(DhcpDmpaCounter.NAK)  # the MS starts over; we leave it waiting
        else:
            self.drops.count(DELIVERED(DhcpMessageType(kind).name.lower()))
        return actions

    # --- co-located server ----------------------------------------------------------------

    def _granted(self, visitor: Visitor) -> IPv4Address | None:
        """The HoA a PBA granted (or the static profile's once accepted), else None."""
        if visitor.hoa is None:
            return None
        if visitor.state is State.REGISTERED or visitor.registered_once:
            return visitor.hoa
        return None

    def _serve(
        self,
        visitor: Visitor,
        eth: EthernetFrame,
        message: DhcpMessage,
        kind: DhcpMessageType,
        now: float,
        wall: float,
    ) -> list[AccessAction]:
        """Rule 6 (RFC 2131 4.3)."""
        hoa = self._granted(visitor)
        gateway = visitor.gateway
        server_id = message.server_id
        if kind == DhcpMessageType.RELEASE:
            if server_id not in (None, gateway):
                return self._drop(DhcpDmpaCounter.SERVER_OTHER_SERVER, now, mac=visitor.mac)
            return list(self._release(visitor, message.ciaddr, now, wall))
        if kind == DhcpMessageType.DECLINE:
            if server_id not in (None, gateway):
                return self._drop(DhcpDmpaCounter.SERVER_OTHER_SERVER, now, mac=visitor.mac)
            return list(self._decline(visitor, message.requested_ip, now, wall))
        if kind == DhcpMessageType.INFORM:  # 4.3.5: configuration only, no lease, no yiaddr
            self.drops.count(DhcpDmpaCounter.SERVER_INFORM)
            return [self._answer(visitor, eth, message, DhcpMessageType.ACK, _ZERO, lease=False)]
        if kind == DhcpMessageType.REQUEST and server_id not in (None, gateway):
            self.drops.count(DhcpDmpaCounter.SERVER_OTHER_SERVER)  # 4.3.2: the client chose another
            return []
        if hoa is None:
            self.drops.count(DhcpDmpaCounter.SERVER_WAITING_PBA)  # silent: the client retries
            return []
        if kind == DhcpMessageType.DISCOVER:
            self.drops.count(DhcpDmpaCounter.SERVER_OFFER)
            return [self._answer(visitor, eth, message, DhcpMessageType.OFFER, hoa, lease=True)]
        # REQUEST: SELECTING / INIT-REBOOT name the address in option 50, RENEWING /
        # REBINDING in ciaddr (RFC 2131 4.3.2).
        asked = message.requested_ip
        if asked is None and message.ciaddr != _ZERO:
            asked = message.ciaddr
        if asked is None:
            return self._drop(DhcpDmpaCounter.SERVER_BAD_REQUEST, now, mac=visitor.mac)
        if asked != hoa:
            self.drops.count(DhcpDmpaCounter.SERVER_NAK)
            return [self._answer(visitor, eth, message, DhcpMessageType.NAK, _ZERO, lease=False)]
        self.drops.count(DhcpDmpaCounter.SERVER_ACK)
        return [self._answer(visitor, eth, message, DhcpMessageType.ACK, hoa, lease=True)]

    def _lease_time(self, visitor: Visitor) -> int:
        """The configured lease, never longer than the binding lifetime (wire-reference 7.6)."""
        lifetime = visitor.lifetime or self.host.binding_lifetime
        return max(1, min(self.config.lease_time, lifetime))

    def _answer(
        self,
        visitor: Visitor,
        eth: EthernetFrame,
        request: DhcpMessage,
        kind: DhcpMessageType,
        yiaddr: IPv4Address,
        *,
        lease: bool,
    ) -> SendFrame:
        """The server's message to ``request`` (fields and options per RFC 2131 table 3)."""
        gateway = visitor.gateway
        options = [
            DhcpOption(DhcpOptionCode.MESSAGE_TYPE, bytes((kind,))),
            DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, gateway),
        ]
        if kind != DhcpMessageType.NAK:
            if lease:
                seconds = self._lease_time(visitor)
                options += [
                    DhcpOption.from_uint(DhcpOptionCode.LEASE_TIME, seconds, 4),
                    DhcpOption.from_uint(DhcpOptionCode.RENEWAL_TIME, seconds // 2, 4),
                    DhcpOption.from_uint(DhcpOptionCode.REBINDING_TIME, seconds * 7 // 8, 4),
                ]
            config = self.config
            options += [
                DhcpOption.from_addresses(DhcpOptionCode.SUBNET_MASK, config.subnet_mask),
                DhcpOption.from_addresses(DhcpOptionCode.ROUTER, gateway),
            ]
            if config.dns_servers:
                options.append(
                    DhcpOption.from_addresses(DhcpOptionCode.DNS_SERVERS, *config.dns_servers)
                )
            if config.domain_name is not None:
                options.append(DhcpOption(DhcpOptionCode.DOMAIN_NAME, config.domain_name.encode()))
            if config.interface_mtu is not None:
                options.append(
                    DhcpOption.from_uint(DhcpOptionCode.INTERFACE_MTU, config.interface_mtu, 2)
                )
        client_id = request.client_id
        if client_id is not None and len(client_id) <= 255:  # RFC 6842: echo it back
            options.append(DhcpOption(DhcpOptionCode.CLIENT_ID, client_id))
        reply = request.reply(
            options,
            flags=request.flags,
            ciaddr=request.ciaddr if kind == DhcpMessageType.ACK else _ZERO,
            yiaddr=yiaddr,
        )
        return self._frame(visitor, reply, gateway, eth.vlan)

    # --- delivery -------------------------------------------------------------------------

    def _frame(
        self,
        visitor: Visitor,
        reply: DhcpMessage,
        source: IPv4Address,
        vlan: VlanTag | None,
    ) -> SendFrame:
        """``reply`` to the MS from the pseudo-MAC, addressed as RFC 2131 4.1 says."""
        if reply.message_type == DhcpMessageType.NAK or (
            reply.ciaddr == _ZERO and (reply.broadcast or reply.yiaddr == _ZERO)
        ):
            dst_ip, dst_mac = _BROADCAST, BROADCAST_MAC
        elif reply.ciaddr != _ZERO:
            dst_ip, dst_mac = reply.ciaddr, visitor.mac
        else:
            dst_ip, dst_mac = reply.yiaddr, visitor.mac
        udp = UdpDatagram(SERVER_PORT, CLIENT_PORT, reply.encode())
        packet = IPv4Packet(
            src=source, dst=dst_ip, protocol=IPProto.UDP, payload=udp.encode(source, dst_ip)
        )
        frame = EthernetFrame(dst_mac, visitor.pseudo_mac, EtherType.IPV4, packet.encode(), vlan)
        return SendFrame(visitor.link, frame.encode())

    def _drop(self, reason: Declared, now: float, **context: object) -> list[AccessAction]:
        self.drops.drop(reason, now, **context)
        return []
