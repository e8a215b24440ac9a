"""The DLMAP's DHCP relay agent (seed 5.2; RFC 2131 section 4.1, RFC 1542, RFC 3046).

Sans-I/O. :meth:`DhcpRelay.receive_from_dmpa` takes a request a DMPA's tunnel carried (IPv4
packet bytes, decoded, or a bare message) and returns :class:`SendToServer` actions;
:meth:`DhcpRelay.receive_from_server` takes a server's UDP payload and returns the
:class:`~router.core.actions.SendTunnel` carrying the reply back to the DMPA that sent the
request, plus :class:`~router.core.actions.Persist` and events. The UDP socket is
:mod:`router.adapters.dhcp_socket`.

Rules:

1. A request with ``hops`` above ``max_hops`` (16, RFC 1542 section 4.1.1) is dropped; otherwise
   ``hops`` goes up by one, ``giaddr`` becomes the DLMAP's address on the MS subnet, option 82 is
   kept as the DMPA wrote it, and the DMPA's IPv6 address is added as remote-id (sub-option 2)
   when configured. A request whose ``giaddr`` is already set (another relay's) goes to the
   servers with that ``giaddr`` unchanged (RFC 1542 4.1.1: "MUST NOT" be modified) and nothing
   added to its option 82 (RFC 3046 2.1.1) (``request.giaddr_kept``). The server answers that
   relay, not us (RFC 2131 4.1: to ``giaddr``, port 67). When that address is in the HoA network
   the answer is routed through the DLMAP, whose data path has no binding for it and punts it
   (DHCP to port 67 from the TUN): :meth:`DhcpRelay.receive_in_transit` learns from it (rule 3)
   and sends it on unchanged through the tunnel of the DMPA that carried the request, the way
   to the relay at ``giaddr`` (``transit.*``). An answer to a ``giaddr`` outside the HoA network
   never passes the DLMAP: nothing can learn it, and that MS's PBU is refused (143).
2. Each request is remembered by (xid, chaddr) -> DMPA, NAI (and the other relay's giaddr),
   for ``entry_ttl`` seconds, in a table of at most ``table_size`` entries (the oldest goes
   first). A reply that matches nothing, comes from a server not configured, or carries another
   ``giaddr`` is dropped and counted.
3. On an ACK with a ``yiaddr``, the NAI (the subscriber-id of the option 82 the server echoed,
   else the one remembered) gets ``pool.record(nai, yiaddr, now + lease)``, so the seed section 6
   check "a unicast HoA must be the address allocated to that NAI" holds for it; an address
   another NAI holds is refused by the pool and counted (``learn.conflict``), and that ACK is
   not delivered (``reply.conflicting_ack``): no MS is handed another MS's address.
4. Option 82 is stripped from the reply (RFC 3046 section 2.1), which goes to the client as
   RFC 2131 section 4.1 says for a relay: NAK or broadcast bit -> broadcast, ciaddr -> ciaddr,
   else yiaddr (the DMPA delivers to ``chaddr``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

from router.core.actions import Event, Persist, SendTunnel, event
from router.core.common import to_wall
from router.core.counters import Counters, Declared, Family, Names
from router.core.defaults import LIFETIME
from router.core.pool import HoAPool
from router.services.dhcp_server import (
    BROADCAST,
    INFINITE_LEASE,
    POOL_TABLE,
    ZERO,
    ConfigError,
    RequestDrop,
    build_packet,
    nai_of,
    parse_request,
)
from router.wire.dhcp import (
    CLIENT_PORT,
    SERVER_PORT,
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    RelayAgentInfo,
    RelayAgentSubOption,
)
from router.wire.errors import DecodeError, EncodeError
from router.wire.ipv4 import IPv4Packet
from router.wire.udp import UdpDatagram

#: RFC 1542 section 4.1.1: "MUST silently discard BOOTREQUEST messages whose 'hops' field
#: exceeds the value 16".
MAX_HOPS = 16


_REPLY_NAMES = {
    DhcpMessageType.OFFER: "offer",
    DhcpMessageType.ACK: "ack",
    DhcpMessageType.NAK: "nak",
}


class DhcpRelayCounter(Names):
    """What the DHCP relay counts (``dhcp`` group, with
    :class:`~router.services.dhcp_server.RequestDrop` and :data:`TX_REPLY`)."""

    DROP_HOPS = "drop.hops"
    DROP_OPTION82_FULL = "drop.option82_full"
    LEARN_CONFLICT = "learn.conflict"
    LEARN_NO_NAI = "learn.no_nai"
    LEARN_RECORDED = "learn.recorded"
    PENDING_EVICTED = "pending.evicted"
    PENDING_EXPIRED = "pending.expired"
    REPLY_BAD_MESSAGE_TYPE = "reply.bad_message_type"
    REPLY_CONFLICTING_ACK = "reply.conflicting_ack"
    REPLY_MALFORMED = "reply.malformed"
    REPLY_NOT_REPLY = "reply.not_reply"
    REPLY_UNKNOWN_SERVER = "reply.unknown_server"
    REPLY_UNMATCHED = "reply.unmatched"
    REPLY_WRONG_GIADDR = "reply.wrong_giaddr"
    REQUEST_GIADDR_KEPT = "request.giaddr_kept"
    TRANSIT_LEARNED = "transit.learned"
    TRANSIT_MALFORMED = "transit.malformed"
    TRANSIT_NOT_REPLY = "transit.not_reply"
    TRANSIT_RELAYED = "transit.relayed"
    TRANSIT_UNKNOWN_SERVER = "transit.unknown_server"
    TRANSIT_UNMATCHED = "transit.unmatched"
    REQUEST_NO_NAI = "request.no_nai"
    RX_REPLY = "rx.reply"
    RX_REQUEST = "rx.request"
    REPLY_BAD_SOURCE = "reply.bad_source"  # router.adapters.dhcp_socket: not from a server
    SOCKET_ERROR = "socket.error"  # router.adapters.dhcp_socket: the relay socket failed
    TX_SERVER = "tx.server"


#: Server replies carried back to the DMPA, by type.
TX_REPLY = Family("tx.{}", "replies carried back to the DMPA", _REPLY_NAMES.values())


@dataclass(frozen=True, slots=True)
class SendToServer:
    """Send ``payload`` (a DHCP message) by UDP to ``server``:``port``, from the relay socket."""

    server: IPv4Address
    port: int
    payload: bytes


RelayAction = SendToServer | SendTunnel | Persist | Event


@dataclass(frozen=True, slots=True)
class DhcpRelayConfig:
    #: The DLMAP's address on the MS subnet: giaddr, and the relay socket's address.
    giaddr: IPv4Address
    #: The DHCP servers every request goes to.
    servers: tuple[IPv4Address, ...]
    server_port: int = SERVER_PORT
    #: Add the DMPA's IPv6 address as remote-id (RFC 3046 sub-option 2).
    remote_id: bool = False
    max_hops: int = MAX_HOPS
    table_size: int = 4096
    entry_ttl: float = 60.0
    #: The NAI <-> HoA lease recorded in the pool never outlasts this (the binding lifetime).
    max_lifetime: int = LIFETIME

    def problems(self, section: str = "dhcp_relay") -> list[str]:
        out: list[str] = []
        if not self.servers:
            out.append(f"{section}.servers: at least one server is needed")
        for server in self.servers:
            if server.is_multicast or server.is_unspecified or server == BROADCAST:
                out.append(f"{section}.servers: {server} is not a unicast address")
        if self.giaddr.is_unspecified or self.giaddr.is_multicast:
            out.append(f"{section}.giaddr: {self.giaddr} is not a unicast address")
        if not 1 <= self.server_port <= 0xFFFF:
            out.append(f"{section}.server_port: {self.server_port} not in 1..65535")
        if not 0 <= self.max_hops <= 255:
            out.append(f"{section}.max_hops: {self.max_hops} not in 0..255")
        if self.table_size < 1:
            out.append(f"{section}.table_size: must be positive")
        if self.entry_ttl <= 0:
            out.append(f"{section}.entry_ttl: must be positive")
        if self.max_lifetime < 1:
            out.append(f"{section}.max_lifetime: must be positive")
        return out

    def check(self, section: str = "dhcp_relay") -> None:
        ConfigError.check(self.problems(section))


@dataclass(slots=True)
class Pending:
    """A relayed request waiting for its reply."""

    dmpa: IPv6Address
    nai: str | None
    expires: float
    #: The other relay's giaddr the request kept (rule 1), None when we set ours.
    giaddr: IPv4Address | None = None


class DhcpRelay:
    """Relay between the DMPAs' tunnels and the configured DHCP servers (see the module)."""

    def __init__(self, config: DhcpRelayConfig, pool: HoAPool) -> None:
        config.check()
        self.config = config
        self.pool = pool
        self.counters = Counters()
        self.pending: OrderedDict[tuple[int, bytes], Pending] = OrderedDict()

    # --- timers ---------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        # Entries are refreshed by moving them to the end, so the first one ends first.
        for entry in self.pending.values():
            return entry.expires
        return None

    def handle_timer(self, now: float) -> list[RelayAction]:
        while self.pending:
            key, entry = next(iter(self.pending.items()))
            if entry.expires > now:
                break
            del self.pending[key]
            self.counters[DhcpRelayCounter.PENDING_EXPIRED] += 1
        return []

    # --- client side ----------------------------------------------------------------------

    def receive_from_dmpa(
        self,
        data: bytes | bytearray | memoryview | DhcpMessage,
        dmpa: IPv6Address,
        now: float,
    ) -> list[RelayAction]:
        """A request from an MS, as the tunnel of ``dmpa`` carried it: relay it to the servers."""
        self.counters[DhcpRelayCounter.RX_REQUEST] += 1
        message, why = parse_request(data)
        if message is None:
            return self._drop(why or RequestDrop.MALFORMED)
        if message.hops > self.config.max_hops:
            return self._drop(DhcpRelayCounter.DROP_HOPS)
        if not isinstance(message.message_type, DhcpMessageType):
            return self._drop(RequestDrop.BAD_MESSAGE_TYPE)
        if message.giaddr not in (ZERO, self.config.giaddr):
            return self._relay_onward(message, dmpa, now)
        forwarded = self._forwarded(message, dmpa)
        if forwarded is None:
            return self._drop(DhcpRelayCounter.DROP_OPTION82_FULL)
        nai = nai_of(message)
        if nai is None:
            self.counters[DhcpRelayCounter.REQUEST_NO_NAI] += 1
        self._remember(message, Pending(dmpa, nai, now + self.config.entry_ttl))
        payload = forwarded.encode()
        self.counters[DhcpRelayCounter.TX_SERVER] += len(self.config.servers)
        return [SendToServer(s, self.config.server_port, payload) for s in self.config.servers]

    def _remember(self, message: DhcpMessage, entry: Pending) -> None:
        key = (message.xid, message.chaddr)
        self.pending.pop(key, None)
        self.pending[key] = entry
        while len(self.pending) > self.config.table_size:
            self.pending.popitem(last=False)
            self.counters[DhcpRelayCounter.PENDING_EVICTED] += 1

    def _relay_onward(
        self, message: DhcpMessage, dmpa: IPv6Address, now: float
    ) -> list[RelayAction]:
        """Rule 1, another relay's request: only ``hops`` changes (RFC 1542 4.1.1). Remembered
        with that giaddr, for its reply in transit."""
        self.counters[DhcpRelayCounter.REQUEST_GIADDR_KEPT] += 1
        try:
            payload = replace(message, hops=message.hops + 1).encode()
        except EncodeError:
            return self._drop(DhcpRelayCounter.DROP_HOPS)  # hops at 255
        expires = now + self.config.entry_ttl
        self._remember(message, Pending(dmpa, nai_of(message), expires, message.giaddr))
        self.counters[DhcpRelayCounter.TX_SERVER] += len(self.config.servers)
        return [SendToServer(s, self.config.server_port, payload) for s in self.config.servers]

    def _forwarded(self, message: DhcpMessage, dmpa: IPv6Address) -> DhcpMessage | None:
        try:
            out = DhcpMessage(
                op=message.op,
                xid=message.xid,
                chaddr=message.chaddr,
                options=message.options,
                htype=message.htype,
                hlen=message.hlen,
                hops=message.hops + 1,
                secs=message.secs,
                flags=message.flags,
                ciaddr=message.ciaddr,
                yiaddr=message.yiaddr,
                siaddr=message.siaddr,
                giaddr=self.config.giaddr,
                sname=message.sname,
                file=message.file,
            )
            if self.config.remote_id:
                info = message.relay_agent_info or RelayAgentInfo()
                kept = tuple(
                    (c, d) for c, d in info.suboptions if c != RelayAgentSubOption.REMOTE_ID
                )
                remote = (int(RelayAgentSubOption.REMOTE_ID), dmpa.packed)
                out = out.with_relay_agent_info(RelayAgentInfo(_in_code_order(kept, remote)))
        except EncodeError:
            return None  # hops at 255, or option 82 with no room left for the remote-id
        return out

    # --- server side ----------------------------------------------------------------------

    def receive_from_server(
        self,
        data: bytes | bytearray | memoryview | DhcpMessage,
        server: IPv4Address,
        now: float,
        wall: float | None = None,
    ) -> list[RelayAction]:
        """A UDP payload from ``server`` to the relay socket: carry it back to its DMPA."""
        wall = now if wall is None else wall
        self.counters[DhcpRelayCounter.RX_REPLY] += 1
        if server not in self.config.servers:
            return self._drop(DhcpRelayCounter.REPLY_UNKNOWN_SERVER)
        try:
            message = data if isinstance(data, DhcpMessage) else DhcpMessage.decode(data)
        except DecodeError:
            return self._drop(DhcpRelayCounter.REPLY_MALFORMED)
        if message.op != BootpOp.BOOTREPLY:
            return self._drop(DhcpRelayCounter.REPLY_NOT_REPLY)
        kind = message.message_type
        name = _REPLY_NAMES.get(kind) if isinstance(kind, DhcpMessageType) else None
        if name is None:
            return self._drop(DhcpRelayCounter.REPLY_BAD_MESSAGE_TYPE)
        if message.giaddr != self.config.giaddr:
            return self._drop(DhcpRelayCounter.REPLY_WRONG_GIADDR)
        key = (message.xid, message.chaddr)
        entry = self.pending.get(key)
        if entry is None or entry.expires <= now or entry.giaddr is not None:
            return self._drop(DhcpRelayCounter.REPLY_UNMATCHED)
        actions: list[RelayAction] = []
        if kind != DhcpMessageType.OFFER:
            del self.pending[key]  # the exchange is over
        nai = nai_of(message) or entry.nai
        if kind == DhcpMessageType.ACK and message.yiaddr != ZERO:
            learned, more = self._learn(nai, message, entry.dmpa, now, wall)
            actions += more
            if not learned:
                # Rule 3: the address is another NAI's (a server keying leases by client-id or
                # chaddr, which an MS can forge): the MS would announce it and its PBU would be
                # refused anyway, so it never gets it.
                return [*actions, *self._drop(DhcpRelayCounter.REPLY_CONFLICTING_ACK)]
        reply = message.without_relay_agent_info()
        dst, port = _client_destination(reply)
        self.counters[TX_REPLY(name)] += 1
        packet = build_packet(reply, self.config.giaddr, dst, port)
        actions.insert(0, SendTunnel(entry.dmpa, packet.encode()))
        return actions

    def receive_in_transit(
        self, data: bytes | bytearray | memoryview, now: float, wall: float
    ) -> list[RelayAction]:
        """Rule 1: an IPv4 packet to port 67 of an address the data path has no binding for,
        from the TUN; the answer to a request another relay's giaddr was in: learned from
        (rule 3) and sent on, unchanged, to the DMPA that carried the request."""
        try:
            ip = IPv4Packet.decode(data)
            udp = UdpDatagram.decode(ip.payload, src=ip.src, dst=ip.dst)
            message = DhcpMessage.decode(udp.payload)
        except DecodeError:
            return self._drop(DhcpRelayCounter.TRANSIT_MALFORMED)
        if ip.src not in self.config.servers:
            return self._drop(DhcpRelayCounter.TRANSIT_UNKNOWN_SERVER)
        kind = message.message_type
        if message.op != BootpOp.BOOTREPLY or kind not in _REPLY_NAMES:
            return self._drop(DhcpRelayCounter.TRANSIT_NOT_REPLY)
        key = (message.xid, message.chaddr)
        entry = self.pending.get(key)
        if (
            entry is None
            or entry.expires <= now
            or entry.giaddr != message.giaddr
            or ip.dst != message.giaddr
        ):
            return self._drop(DhcpRelayCounter.TRANSIT_UNMATCHED)
        if kind != DhcpMessageType.OFFER:
            del self.pending[key]
        actions: list[RelayAction] = []
        if kind == DhcpMessageType.ACK and message.yiaddr != ZERO:
            learned, actions = self._learn(
                nai_of(message) or entry.nai, message, entry.dmpa, now, wall
            )
            if not learned:
                return [*actions, *self._drop(DhcpRelayCounter.REPLY_CONFLICTING_ACK)]
            if actions:
                self.counters[DhcpRelayCounter.TRANSIT_LEARNED] += 1
        self.counters[DhcpRelayCounter.TRANSIT_RELAYED] += 1
        return [SendTunnel(entry.dmpa, bytes(data)), *actions]

    def _learn(
        self, nai: str | None, ack: DhcpMessage, dmpa: IPv6Address, now: float, wall: float
    ) -> tuple[bool, list[RelayAction]]:
        """Rule 3; False when the pool refused the address (another NAI holds it)."""
        if nai is None:
            self.counters[DhcpRelayCounter.LEARN_NO_NAI] += 1
            return True, []
        lease = ack.lease_time
        if lease is None or lease == INFINITE_LEASE:
            lease = self.config.max_lifetime
        expires = now + min(lease, self.config.max_lifetime)
        fresh = self.pool.lease_of(nai) is None and self.pool.allocated_to(nai) is None
        if not self.pool.record(nai, ack.yiaddr, expires):
            self.counters[DhcpRelayCounter.LEARN_CONFLICT] += 1
            owner = self.pool.owner(ack.yiaddr)
            return False, [
                event("dhcp_relay_conflict", nai=nai, hoa=ack.yiaddr, owner=owner, dmpa=dmpa)
            ]
        if fresh:
            # record() holds a new lease with no end; no binding holds it yet, so it runs
            # until the DHCP lease ends (a PBU will hold it).
            self.pool.restore(nai, ack.yiaddr, expires)
        self.counters[DhcpRelayCounter.LEARN_RECORDED] += 1
        held = self.pool.lease_of(nai)
        row: dict[str, object] | None = None
        if held is not None:
            end = None if held.expires is None else to_wall(held.expires, now, wall)
            row = {"nai": nai, "hoa": str(held.address), "expires_wall": end}
        return True, [
            Persist(POOL_TABLE, nai, row),
            event("dhcp_relay_ack", nai=nai, hoa=ack.yiaddr, dmpa=dmpa, lease=lease),
        ]

    def _drop(self, reason: Declared) -> list[RelayAction]:
        self.counters[reason] += 1
        return []


def _in_code_order(
    kept: Sequence[tuple[int, bytes]], added: tuple[int, bytes]
) -> tuple[tuple[int, bytes], ...]:
    return tuple(sorted((*kept, added), key=lambda pair: pair[0]))


def _client_destination(reply: DhcpMessage) -> tuple[IPv4Address, int]:
    """RFC 2131 section 4.1, relay side: where the reply goes on the MS's link."""
    if reply.message_type == DhcpMessageType.NAK or reply.broadcast:
        return BROADCAST, CLIENT_PORT
    if reply.ciaddr != ZERO:
        return reply.ciaddr, CLIENT_PORT
    if reply.yiaddr == ZERO:
        return BROADCAST, CLIENT_PORT
    return reply.yiaddr, CLIENT_PORT
