"""The DLMAP's built-in DHCP server over the HoA pool (the embedded default, seed 5.2 and 6).

Sans-I/O: :meth:`DhcpServer.receive` takes what the slow path got from a DMPA's tunnel (an IPv4
packet as bytes or decoded, or a bare :class:`~router.wire.dhcp.DhcpMessage`), the DMPA's IPv6
address and the monotonic ``now``; it returns :class:`SendTunnel` (IPv4/UDP replies to carry back
to that DMPA), :class:`~router.core.actions.Persist` and events. Nothing here opens a socket.

Rules:

1. The lease key is the MS's NAI, read from the subscriber-id sub-option (RFC 3993) of the
   option 82 the DMPA adds. Without one the key falls back to the client identifier (option 61),
   then to the Ethernet ``chaddr``, as ``dhcp:cid:<hex>`` / ``dhcp:mac:<mac>``; such leases are
   counted (``key.fallback``) and cannot pass the seed 6 PBU check, which is by NAI.
2. Addresses come from the :class:`~router.core.pool.HoAPool`, keyed like the leases: the same
   NAI gets the same address back, a static-profile NAI its static one. A lease made here runs in
   the pool until the DHCP lease ends (an OFFER reserves for ``offer_hold``); a lease the pool
   holds for a binding is never shortened here. The pool row is persisted in the DLMAP's own
   ``lease`` table format, so :meth:`DLMAP.restore` reloads it; the DHCP details go to
   ``dhcp_lease`` and are reloaded by :meth:`DhcpServer.restore`.
3. A REQUEST is ACKed when its address (requested-ip, else ciaddr) is the key's address in the
   pool, and NAKed otherwise (RFC 2131 section 4.3.2). We are authoritative for the HoA network:
   a REQUEST for a free address of the pool from a client we have no record of is granted.
4. DECLINE (RFC 2131 section 4.3.3): the address is parked in the pool under
   ``dhcp:declined:<address>`` for ``decline_hold`` seconds so nobody gets it, and the key is
   moved to another free address. A static address cannot move: that is counted and reported.
5. Replies are addressed as RFC 2131 section 4.1 says for a server whose client is on-link:
   giaddr set -> giaddr:67; NAK -> broadcast; ciaddr set -> ciaddr; broadcast bit -> broadcast;
   else yiaddr (the DMPA delivers to ``chaddr`` on its access link). Option 82 is not echoed
   (``echo_relay_info`` turns the RFC 3046 section 2.2 echo on): the DMPA delivers the reply.

Bad input (undecodable, not a BOOTREQUEST, no message type, no key) is dropped and counted in
:attr:`DhcpServer.counters`, never raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any

from router.core.actions import Event, Persist, SendTunnel, event
from router.core.common import from_wall, to_wall
from router.core.counters import Counters, Declared, Family, Names
from router.core.defaults import LEASE_TIME, LIFETIME
from router.core.pool import HoAPool
from router.wire.dhcp import (
    BROADCAST_FLAG,
    CLIENT_PORT,
    SERVER_PORT,
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
)
from router.wire.errors import DecodeError
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram

BROADCAST = IPv4Address("255.255.255.255")
ZERO = IPv4Address(0)
INFINITE_LEASE = 0xFFFFFFFF  # RFC 2131 section 3.3
LEASE_TABLE = "dhcp_lease"
POOL_TABLE = "lease"  # the DLMAP's table of pool leases (router.core.dlmap._persist_lease)
DECLINED_PREFIX = "dhcp:declined:"
_MAX_SCAN = 1 << 16  # free-address search after a DECLINE: bounded


class RequestDrop(Names):
    """Client messages dropped before a server or relay looks at them (``dhcp`` group)."""

    NOT_UDP = "drop.not_udp"
    FRAGMENT = "drop.fragment"
    NOT_PORT_67 = "drop.not_port_67"
    MALFORMED = "drop.malformed"
    NOT_REQUEST = "drop.not_request"
    BAD_HLEN = "drop.bad_hlen"
    BAD_MESSAGE_TYPE = "drop.bad_message_type"


class DhcpServerCounter(Names):
    """What the built-in DHCP server counts (``dhcp`` group, with :class:`RequestDrop` and
    the families :data:`RX`, :data:`REQUEST`, :data:`EXPIRED`)."""

    DECLINE_IGNORED = "decline.ignored"
    DECLINE_NO_REPLACEMENT = "decline.no_replacement"
    DECLINE_NOT_OURS = "decline.not_ours"
    DECLINE_QUARANTINED = "decline.quarantined"
    DECLINE_STATIC = "decline.static"
    DROP_NO_CLIENT_KEY = "drop.no_client_key"
    DROP_UNKNOWN_DMPA = "drop.unknown_dmpa"
    INFORM_NO_CIADDR = "inform.no_ciaddr"
    KEY_FALLBACK = "key.fallback"
    POOL_EXHAUSTED = "pool.exhausted"
    RELEASE_DONE = "release.done"
    RELEASE_OTHER_SERVER = "release.other_server"
    RELEASE_UNKNOWN = "release.unknown"
    REQUEST_OTHER_SERVER = "request.other_server"
    RESTORE_BAD_ROW = "restore.bad_row"
    RESTORE_CONFLICT = "restore.conflict"
    RESTORE_EXPIRED = "restore.expired"
    RESTORE_LEASE = "restore.lease"
    RX = "rx"
    TX_ACK = "tx.ack"
    TX_INFORM_ACK = "tx.inform_ack"
    TX_NAK = "tx.nak"
    TX_OFFER = "tx.offer"


#: Client messages received, by type.
RX = Family("rx.{}", "client messages, by type", (t.name.lower() for t in DhcpMessageType))
#: REQUESTs by the client state RFC 2131 4.3.2 tells from their fields.
REQUEST = Family(
    "request.{}",
    "REQUESTs, by client state",
    ("selecting", "init_reboot", "renewing", "no_address"),
)
#: Offers and leases that ended, by the state they were in (offered, bound, released).
EXPIRED = Family("{}.expired", "offers and leases that ended, by state")


class ConfigError(ValueError):
    """Bad configuration; ``problems`` lists every one as ``section.key: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    @classmethod
    def check(cls, problems: list[str]) -> None:
        """Raise one for ``problems``, if there are any."""
        if problems:
            raise cls(problems)


DhcpAction = SendTunnel | Persist | Event


@dataclass(frozen=True, slots=True)
class DhcpServerConfig:
    #: The DLMAP's IPv4 address on the HoA network: server identifier and reply source.
    server_id: IPv4Address
    #: The MS's default gateway (seed 3.4: the DLMAP's IPv4 address), option 3.
    gateway: IPv4Address
    #: The HoA network, for option 1 and for the free-address search after a DECLINE.
    network: IPv4Network
    lease_time: int = LEASE_TIME
    #: Longest binding lifetime the DLMAP grants: the lease never outlasts it.
    max_lifetime: int = LIFETIME
    dns: tuple[IPv4Address, ...] = ()
    mtu: int | None = None
    offer_hold: float = 60.0
    decline_hold: float = 3600.0
    #: Shortest lease granted when a client asks for less (option 51 in its request).
    min_lease: int = 60
    echo_relay_info: bool = False
    #: When set, DHCP from any other tunnel endpoint is dropped.
    dmpas: frozenset[IPv6Address] | None = None

    @property
    def lease_cap(self) -> int:
        return min(self.lease_time, self.max_lifetime)

    def problems(self, section: str = "dhcp_server") -> list[str]:
        """Every configuration error, as ``section.key: message``."""
        out: list[str] = []
        if self.server_id not in self.network:
            out.append(f"{section}.server_id: {self.server_id} is not in {self.network}")
        if self.gateway not in self.network:
            out.append(f"{section}.gateway: {self.gateway} is not in {self.network}")
        if not 1 <= self.lease_time < INFINITE_LEASE:
            out.append(f"{section}.lease_time: {self.lease_time} not in 1..2^32-2 seconds")
        if self.max_lifetime < 1:
            out.append(f"{section}.max_lifetime: {self.max_lifetime} is not positive")
        if not 1 <= self.min_lease <= self.lease_cap:
            out.append(f"{section}.min_lease: {self.min_lease} not in 1..{self.lease_cap}")
        if self.mtu is not None and not 68 <= self.mtu <= 0xFFFF:
            out.append(f"{section}.mtu: {self.mtu} not in 68..65535 (RFC 2132 section 5.1)")
        if len(self.dns) > 63:
            out.append(f"{section}.dns: {len(self.dns)} servers do not fit in one option")
        if self.offer_hold <= 0:
            out.append(f"{section}.offer_hold: must be positive")
        if self.decline_hold <= 0:
            out.append(f"{section}.decline_hold: must be positive")
        return out

    def check(self, section: str = "dhcp_server") -> None:
        ConfigError.check(self.problems(section))


@dataclass(slots=True)
class DhcpLease:
    """What the server remembers of a client, beside the pool's key -> address."""

    key: str
    address: IPv4Address
    chaddr: bytes
    client_id: bytes | None
    #: Monotonic end of the offer (state "offered") or of the lease ("bound", "released").
    expires: float
    state: str = "offered"
    nai: str | None = None
    dmpa: IPv6Address | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Exchange:
    """Who a request is answered for and when: the lease key, the NAI when the key is one, the
    DMPA whose tunnel carried it, the monotonic and wall-clock times."""

    key: str
    nai: str | None
    dmpa: IPv6Address
    now: float
    wall: float


def parse_request(
    data: bytes | bytearray | memoryview | IPv4Packet | DhcpMessage,
) -> tuple[DhcpMessage | None, RequestDrop | None]:
    """The client's request in what the tunnel carried (a BOOTREQUEST with a hardware address
    that fits ``chaddr``), or (None, drop reason)."""
    if isinstance(data, DhcpMessage):
        message = data
    else:
        try:
            packet = data if isinstance(data, IPv4Packet) else IPv4Packet.decode(data)
            if packet.protocol != IPProto.UDP:
                return None, RequestDrop.NOT_UDP
            if packet.is_fragment:
                return None, RequestDrop.FRAGMENT
            udp = UdpDatagram.decode(packet.payload, src=packet.src, dst=packet.dst)
            if udp.dst_port != SERVER_PORT:
                return None, RequestDrop.NOT_PORT_67
            message = DhcpMessage.decode(udp.payload)
        except DecodeError:
            return None, RequestDrop.MALFORMED
    if message.op != BootpOp.BOOTREQUEST:
        return None, RequestDrop.NOT_REQUEST
    if message.hlen > 16:
        return None, RequestDrop.BAD_HLEN
    return message, None


def nai_of(message: DhcpMessage) -> str | None:
    """The subscriber-id the DMPA put in option 82 (RFC 3993), or None if absent or not UTF-8."""
    info = message.relay_agent_info
    raw = info.subscriber_id if info is not None else None
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def client_key(message: DhcpMessage) -> tuple[str | None, bool]:
    """(lease key, True when it is an NAI); (None, False) when the message names no client."""
    nai = nai_of(message)
    if nai is not None:
        return nai, True
    cid = message.client_id
    if cid:
        return "dhcp:cid:" + cid.hex(), False
    mac = message.client_mac
    if mac is not None and any(message.chaddr[:6]):
        return f"dhcp:mac:{mac}", False
    return None, False


def reply_destination(reply: DhcpMessage, request: DhcpMessage) -> tuple[IPv4Address, int]:
    """RFC 2131 section 4.1: where the server sends ``reply`` (address, UDP port)."""
    if request.giaddr != ZERO:
        return request.giaddr, SERVER_PORT
    if reply.message_type == DhcpMessageType.NAK:
        return BROADCAST, CLIENT_PORT  # "the server broadcasts any DHCPNAK"
    if request.ciaddr != ZERO:
        return request.ciaddr, CLIENT_PORT
    if request.broadcast or reply.yiaddr == ZERO:
        return BROADCAST, CLIENT_PORT
    return reply.yiaddr, CLIENT_PORT


def build_packet(
    payload: DhcpMessage, src: IPv4Address, dst: IPv4Address, dst_port: int
) -> IPv4Packet:
    udp = UdpDatagram(SERVER_PORT, dst_port, payload.encode())
    return IPv4Packet(src, dst, IPProto.UDP, udp.encode(src, dst), ttl=64)


class DhcpServer:
    """DISCOVER/OFFER/REQUEST/ACK/NAK, DECLINE, RELEASE, INFORM over ``pool`` (see the module)."""

    def __init__(self, config: DhcpServerConfig, pool: HoAPool) -> None:
        config.check()
        self.config = config
        self.pool = pool
        self.counters = Counters()
        self.leases: dict[str, DhcpLease] = {}

    # --- timers ---------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Earliest time :meth:`handle_timer` has something to do (offers and leases ending)."""
        return min((lease.expires for lease in self.leases.values()), default=None)

    def handle_timer(self, now: float) -> list[DhcpAction]:
        """Forget offers and leases that ended. The pool frees its own leases (DLMAP timer)."""
        actions: list[DhcpAction] = []
        for key in [k for k, lease in self.leases.items() if lease.expires <= now]:
            lease = self.leases.pop(key)
            self.counters[EXPIRED(lease.state)] += 1
            actions.append(Persist(LEASE_TABLE, key, None))
        return actions

    # --- input ----------------------------------------------------------------------------

    def receive(
        self,
        data: bytes | bytearray | memoryview | IPv4Packet | DhcpMessage,
        dmpa: IPv6Address,
        now: float,
        wall: float | None = None,
    ) -> list[DhcpAction]:
        """One DHCP message the tunnel of ``dmpa`` carried; ``wall`` (default ``now``) is the
        wall-clock time, for persisted deadlines."""
        wall = now if wall is None else wall
        self.counters[DhcpServerCounter.RX] += 1
        if self.config.dmpas is not None and dmpa not in self.config.dmpas:
            return self._drop(DhcpServerCounter.DROP_UNKNOWN_DMPA)
        message, why = parse_request(data)
        if message is None:
            return self._drop(why or RequestDrop.MALFORMED)
        key, is_nai = client_key(message)
        if key is None:
            return self._drop(DhcpServerCounter.DROP_NO_CLIENT_KEY)
        if not is_nai:
            self.counters[DhcpServerCounter.KEY_FALLBACK] += 1
        kind = message.message_type
        if not isinstance(kind, DhcpMessageType) or kind not in _HANDLERS:
            return self._drop(RequestDrop.BAD_MESSAGE_TYPE)
        self.counters[RX(kind.name.lower())] += 1
        return _HANDLERS[kind](
            self, message, Exchange(key, key if is_nai else None, dmpa, now, wall)
        )

    def _drop(self, reason: Declared) -> list[DhcpAction]:
        self.counters[reason] += 1
        return []

    # --- handlers -------------------------------------------------------------------------

    def _discover(self, msg: DhcpMessage, ex: Exchange) -> list[DhcpAction]:
        address = self._address_for(ex.key, msg.requested_ip, ex.now + self.config.offer_hold)
        if address is None:
            self.counters[DhcpServerCounter.POOL_EXHAUSTED] += 1
            return [event("dhcp_no_address", key=ex.key, dmpa=ex.dmpa)]
        lease = self.leases.get(ex.key)
        if lease is None or lease.address != address or lease.state != "bound":
            lease = DhcpLease(
                ex.key, address, msg.chaddr, msg.client_id, 0.0, "offered", ex.nai, ex.dmpa
            )
            lease.expires = ex.now + self.config.offer_hold
            self.leases[ex.key] = lease
        actions: list[DhcpAction] = self._persist(lease, ex.now, ex.wall)
        reply = self._reply(msg, DhcpMessageType.OFFER, yiaddr=address, lease=self._lease(msg))
        actions.append(self._send(reply, msg, ex.dmpa, DhcpServerCounter.TX_OFFER))
        return actions

    def _request(self, msg: DhcpMessage, ex: Exchange) -> list[DhcpAction]:
        server_id = msg.server_id
        requested = msg.requested_ip
        if server_id is not None:
            # SELECTING (RFC 2131 section 4.3.2): a server id that is not ours means the
            # client took another server's offer; stay silent.
            if server_id != self.config.server_id:
                self.counters[DhcpServerCounter.REQUEST_OTHER_SERVER] += 1
                return []
            state = "selecting"
            wanted = requested
        elif requested is not None:
            state = "init_reboot"
            wanted = requested
        else:
            state = "renewing" if msg.ciaddr != ZERO else "no_address"
            wanted = msg.ciaddr if msg.ciaddr != ZERO else None
        self.counters[REQUEST(state)] += 1
        if wanted is None:
            return self._nak(msg, ex.dmpa, "request names no address")
        lease_seconds = self._lease(msg)
        current = self.pool.allocated_to(ex.key)
        if current is None and self._grantable(wanted):
            # Authoritative for the HoA network: a free pool address asked for is granted.
            current = self._address_for(ex.key, wanted, ex.now + lease_seconds)
        if current != wanted:
            return self._nak(msg, ex.dmpa, "address not allocated to this client")
        if self._declined(wanted):
            return self._nak(msg, ex.dmpa, "address declined")
        self._extend_pool(ex.key, wanted, ex.now + lease_seconds)
        lease = DhcpLease(
            ex.key,
            wanted,
            msg.chaddr,
            msg.client_id,
            ex.now + lease_seconds,
            "bound",
            ex.nai,
            ex.dmpa,
        )
        self.leases[ex.key] = lease
        actions: list[DhcpAction] = self._persist(lease, ex.now, ex.wall)
        reply = self._reply(
            msg, DhcpMessageType.ACK, yiaddr=wanted, ciaddr=msg.ciaddr, lease=lease_seconds
        )
        actions.append(self._send(reply, msg, ex.dmpa, DhcpServerCounter.TX_ACK))
        actions.append(event("dhcp_ack", key=ex.key, hoa=wanted, dmpa=ex.dmpa, lease=lease_seconds))
        return actions

    def _decline(self, msg: DhcpMessage, ex: Exchange) -> list[DhcpAction]:
        address = msg.requested_ip
        sid = msg.server_id
        if address is None or (sid is not None and sid != self.config.server_id):
            return self._drop(DhcpServerCounter.DECLINE_IGNORED)
        if self.pool.allocated_to(ex.key) != address:
            return self._drop(DhcpServerCounter.DECLINE_NOT_OURS)
        actions: list[DhcpAction] = [event("dhcp_decline", key=ex.key, hoa=address, dmpa=ex.dmpa)]
        lease = self.pool.lease_of(ex.key)
        if (lease is not None and lease.static) or (lease is None and self._is_static(ex.key)):
            # A static address belongs to this NAI alone: nothing to move it to.
            self.counters[DhcpServerCounter.DECLINE_STATIC] += 1
            return actions
        replacement = self._free_address(ex.now)
        if replacement is None:
            self.counters[DhcpServerCounter.DECLINE_NO_REPLACEMENT] += 1
            return actions
        # The key moves to the replacement (record drops its old lease), then the declined
        # address is parked under a key of its own until decline_hold ends.
        expires = ex.now + self.config.offer_hold
        self.pool.record(ex.key, replacement, expires)
        self.pool.restore(ex.key, replacement, expires)
        parked = DECLINED_PREFIX + str(address)
        self.pool.record(parked, address, ex.now + self.config.decline_hold)
        self.pool.restore(parked, address, ex.now + self.config.decline_hold)
        self.counters[DhcpServerCounter.DECLINE_QUARANTINED] += 1
        old = self.leases.pop(ex.key, None)
        if old is not None:
            actions.append(Persist(LEASE_TABLE, ex.key, None))
        actions += [
            self._persist_pool(ex.key, ex.now, ex.wall),
            self._persist_pool(parked, ex.now, ex.wall),
        ]
        return actions

    def _release(self, msg: DhcpMessage, ex: Exchange) -> list[DhcpAction]:
        sid = msg.server_id
        if sid is not None and sid != self.config.server_id:
            return self._drop(DhcpServerCounter.RELEASE_OTHER_SERVER)
        lease = self.leases.get(ex.key)
        if lease is None or lease.address != msg.ciaddr:
            return self._drop(DhcpServerCounter.RELEASE_UNKNOWN)
        # RFC 2131 section 4.3.4: the address is no longer in use, but the pool keeps it for
        # this key until its lease runs out, so the same client gets it back.
        lease.state = "released"
        self.counters[DhcpServerCounter.RELEASE_DONE] += 1
        actions: list[DhcpAction] = self._persist(lease, ex.now, ex.wall)
        actions.append(event("dhcp_release", key=ex.key, hoa=lease.address, dmpa=ex.dmpa))
        return actions

    def _inform(self, msg: DhcpMessage, ex: Exchange) -> list[DhcpAction]:
        if msg.ciaddr == ZERO:
            return self._drop(DhcpServerCounter.INFORM_NO_CIADDR)
        # RFC 2131 section 4.3.5: no lease time, no yiaddr; unicast to ciaddr.
        reply = self._reply(msg, DhcpMessageType.ACK, ciaddr=msg.ciaddr, lease=None)
        return [self._send(reply, msg, ex.dmpa, DhcpServerCounter.TX_INFORM_ACK)]

    # --- addresses ------------------------------------------------------------------------

    def _is_static(self, key: str) -> bool:
        address = self.pool.allocated_to(key)
        return address is not None and self.pool.lease_of(key) is None

    def _declined(self, address: IPv4Address) -> bool:
        owner = self.pool.owner(address)
        return owner is not None and owner.startswith(DECLINED_PREFIX)

    def _grantable(self, address: IPv4Address) -> bool:
        return (
            address in self.config.network
            and self.pool.in_ranges(address)
            and self.pool.owner(address) is None
        )

    def _address_for(
        self, key: str, requested: IPv4Address | None, expires: float
    ) -> IPv4Address | None:
        """The key's address, taking a new one (the requested one if free) when it has none."""
        current = self.pool.allocated_to(key)
        if current is not None:
            return None if self._declined(current) else current
        if requested is not None and self._grantable(requested):
            self.pool.record(key, requested, expires)
            address: IPv4Address | None = requested
        else:
            address = self.pool.allocate(key)
        if address is not None:
            # A fresh lease (no binding holds it): it runs until the offer or lease ends.
            self.pool.restore(key, address, expires)
        return address

    def _extend_pool(self, key: str, address: IPv4Address, expires: float) -> None:
        lease = self.pool.lease_of(key)
        if lease is not None and lease.expires is not None and not lease.static:
            self.pool.record(key, address, expires)  # keeps the later of the two ends

    def _free_address(self, now: float) -> IPv4Address | None:
        """A pool address nobody owns, searched in the HoA network (bounded)."""
        network = self.config.network
        for count, address in enumerate(network.hosts()):
            if count >= _MAX_SCAN:
                break
            if address in (self.config.server_id, self.config.gateway):
                continue
            if self.pool.in_ranges(address) and self.pool.owner(address) is None:
                return address
        return None

    def _lease(self, msg: DhcpMessage) -> int:
        cap = self.config.lease_cap
        asked = msg.lease_time
        if asked is None:
            return cap
        return max(self.config.min_lease, min(asked, cap))

    # --- replies --------------------------------------------------------------------------

    def _reply(
        self,
        request: DhcpMessage,
        kind: DhcpMessageType,
        *,
        yiaddr: IPv4Address = ZERO,
        ciaddr: IPv4Address = ZERO,
        lease: int | None,
    ) -> DhcpMessage:
        cfg = self.config
        options = [
            DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, kind, 1),
            DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, cfg.server_id),
        ]
        if lease is not None:
            options += [
                DhcpOption.from_uint(DhcpOptionCode.LEASE_TIME, lease, 4),
                DhcpOption.from_uint(DhcpOptionCode.RENEWAL_TIME, lease // 2, 4),
                DhcpOption.from_uint(DhcpOptionCode.REBINDING_TIME, lease * 7 // 8, 4),
            ]
        options += [
            DhcpOption.from_addresses(DhcpOptionCode.SUBNET_MASK, cfg.network.netmask),
            DhcpOption.from_addresses(DhcpOptionCode.ROUTER, cfg.gateway),
        ]
        if cfg.dns:
            options.append(DhcpOption.from_addresses(DhcpOptionCode.DNS_SERVERS, *cfg.dns))
        if cfg.mtu is not None:
            options.append(DhcpOption.from_uint(DhcpOptionCode.INTERFACE_MTU, cfg.mtu, 2))
        return self._finish(request, kind, options, yiaddr, ciaddr)

    def _finish(
        self,
        request: DhcpMessage,
        kind: DhcpMessageType,
        options: list[DhcpOption],
        yiaddr: IPv4Address,
        ciaddr: IPv4Address,
    ) -> DhcpMessage:
        cid = request.client_id
        if cid:
            options.append(DhcpOption(DhcpOptionCode.CLIENT_ID, cid[:255]))
        info = request.relay_agent_info
        if self.config.echo_relay_info and info is not None:
            options.append(info.to_option())  # RFC 3046 section 2.2: last option
        flags = request.flags & BROADCAST_FLAG
        if kind == DhcpMessageType.NAK and request.giaddr != ZERO:
            flags = BROADCAST_FLAG  # RFC 2131 section 4.3.2: the relay must broadcast a NAK
        return request.reply(options, flags=flags, ciaddr=ciaddr, yiaddr=yiaddr)

    def _nak(self, request: DhcpMessage, dmpa: IPv6Address, why: str) -> list[DhcpAction]:
        options = [
            DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, DhcpMessageType.NAK, 1),
            DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, self.config.server_id),
            DhcpOption(DhcpOptionCode.MESSAGE, why.encode()),
        ]
        reply = self._finish(request, DhcpMessageType.NAK, options, ZERO, ZERO)
        return [self._send(reply, request, dmpa, DhcpServerCounter.TX_NAK)]

    def _send(
        self, reply: DhcpMessage, request: DhcpMessage, dmpa: IPv6Address, counter: Declared
    ) -> SendTunnel:
        self.counters[counter] += 1
        dst, port = reply_destination(reply, request)
        return SendTunnel(dmpa, build_packet(reply, self.config.server_id, dst, port).encode())

    # --- persistence ----------------------------------------------------------------------

    def _persist(self, lease: DhcpLease, now: float, wall: float) -> list[DhcpAction]:
        record: dict[str, object] = {
            "key": lease.key,
            "nai": lease.nai,
            "hoa": str(lease.address),
            "chaddr": lease.chaddr.hex(),
            "client_id": None if lease.client_id is None else lease.client_id.hex(),
            "state": lease.state,
            "expires_wall": to_wall(lease.expires, now, wall),
            "dmpa": None if lease.dmpa is None else str(lease.dmpa),
        }
        return [self._persist_pool(lease.key, now, wall), Persist(LEASE_TABLE, lease.key, record)]

    def _persist_pool(self, key: str, now: float, wall: float) -> Persist:
        """The pool's lease for ``key`` in the DLMAP's ``lease`` row format."""
        lease = self.pool.lease_of(key)
        if lease is None:
            return Persist(POOL_TABLE, key, None)
        expires = None if lease.expires is None else to_wall(lease.expires, now, wall)
        record: dict[str, object] = {"nai": key, "hoa": str(lease.address), "expires_wall": expires}
        return Persist(POOL_TABLE, key, record)

    def restore(
        self, tables: Mapping[str, Iterable[Mapping[str, Any]]], now: float, wall: float
    ) -> None:
        """Reload ``dhcp_lease`` rows. Call after :meth:`DLMAP.restore` (which reloads the pool
        from ``lease`` rows); a lease the pool lost is put back, one that ended is skipped.
        A row that does not parse is counted (``restore.bad_row``) and skipped."""
        for row in tables.get(LEASE_TABLE, ()):
            try:
                key = str(row["key"])
                address = IPv4Address(str(row["hoa"]))
                expires = from_wall(float(row["expires_wall"]), now, wall)
                cid = row.get("client_id")
                dmpa = row.get("dmpa")
                lease = DhcpLease(
                    key=key,
                    address=address,
                    chaddr=bytes.fromhex(str(row["chaddr"])),
                    client_id=None if cid is None else bytes.fromhex(str(cid)),
                    expires=expires,
                    state=str(row["state"]),
                    nai=None if row.get("nai") is None else str(row["nai"]),
                    dmpa=None if dmpa is None else IPv6Address(str(dmpa)),
                )
            except (KeyError, TypeError, ValueError):
                self.counters[DhcpServerCounter.RESTORE_BAD_ROW] += 1
                continue
            if expires <= now:
                self.counters[DhcpServerCounter.RESTORE_EXPIRED] += 1
                continue
            if self.pool.allocated_to(key) is None and self._grantable(address):
                self.pool.record(key, address, expires)
                self.pool.restore(key, address, expires)
            if self.pool.allocated_to(key) != address:
                self.counters[DhcpServerCounter.RESTORE_CONFLICT] += 1
                continue
            self.leases[key] = lease
            self.counters[DhcpServerCounter.RESTORE_LEASE] += 1


_Handler = Callable[[DhcpServer, DhcpMessage, Exchange], list[DhcpAction]]
_HANDLERS: dict[DhcpMessageType, _Handler] = {
    DhcpMessageType.DISCOVER: DhcpServer._discover,
    DhcpMessageType.REQUEST: DhcpServer._request,
    DhcpMessageType.DECLINE: DhcpServer._decline,
    DhcpMessageType.RELEASE: DhcpServer._release,
    DhcpMessageType.INFORM: DhcpServer._inform,
}
