"""The DMPA as PPPoE access concentrator and PPP server (seed 4.1), sans-I/O: frames and ``now``
in, frames and requests out. The DMPA runs one per ``auth = pppoe`` access link
(:mod:`router.app.pppoe_links` carries its outputs out).

One :class:`PPPoEServer` per access link; a session per (access link, MS MAC, session id):

    PADI -> PADO (AC-Cookie = HMAC of the MAC) ; PADR (cookie checked) -> PADS (session id)
    LCP: our Configure-Request (MRU 1492, Authentication-Protocol PAP or CHAP-MD5, Magic-Number)
         and the peer's, each acked (RFC 1661 option negotiation, server side)
    authentication: PAP Authenticate-Request, or our CHAP Challenge and its Response ->
         :class:`Authenticate` out (the NAI is the PAP peer ID or the CHAP name); the caller
         answers :meth:`PPPoEServer.auth_result` (profile or None) -> Ack/Success or
         Nak/Failure + LCP Terminate-Request + PADT
    the caller registers the MS (PBU); with the PBA's home address :meth:`address` ->
    IPCP: the peer's IP-Address 0.0.0.0 (and DNS 0.0.0.0) is Nak'd with the HoA (and the
    profile's DNS), then Ack'd; ours (the gateway) is sent -> :class:`SessionUp`
    liveness: LCP Echo-Request every ``echo_interval``; ``echo_failures`` unanswered, a PADT, an
    LCP Terminate-Request or an authentication failure -> :class:`SessionDown` (de-register)

Outputs are ``SendFrame(link, ethernet frame)`` (router.core.actions) and this module's
:class:`Authenticate`, :class:`SessionUp`, :class:`SessionDown`. Bad frames are counted and
dropped, never raised.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from router.core.actions import Action, SendFrame
from router.core.counters import Counters, Names
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, MacAddress
from router.wire.ppp import (
    CHAP_MD5,
    ETHERTYPE_DISCOVERY,
    ETHERTYPE_SESSION,
    MAX_MRU,
    ChapPacket,
    Code,
    ControlPacket,
    IpcpOption,
    LcpOption,
    Message,
    Option,
    PapRequest,
    PPPoECode,
    PPPoEFrame,
    Protocol,
    Tag,
    TagType,
)

#: RFC 1661 4.6: Restart timer 3 s, Max-Configure 10, Max-Terminate 2.
RESTART = 3.0
MAX_CONFIGURE = 10
ECHO_INTERVAL = 10.0
ECHO_FAILURES = 3
MAX_SESSIONS = 4096


class PPPoECounter(Names):
    """What the PPPoE server counts (``pppoe`` group)."""

    PADI = "pppoe.padi"
    PADR = "pppoe.padr"
    PADT = "pppoe.padt"
    BAD_COOKIE = "pppoe.bad_cookie"
    NO_SERVICE_NAME = "pppoe.no_service_name"
    MALFORMED = "pppoe.malformed"
    UNKNOWN_SESSION = "pppoe.unknown_session"
    FULL = "pppoe.full"
    LCP_OPENED = "ppp.lcp_opened"
    AUTH_ACCEPT = "ppp.auth_accept"
    AUTH_REJECT = "ppp.auth_reject"
    IPCP_OPENED = "ppp.ipcp_opened"
    ECHO_TIMEOUT = "ppp.echo_timeout"
    TERMINATED = "ppp.terminated"
    PROTOCOL_REJECTED = "ppp.protocol_rejected"


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check these credentials with AAA (the NAI's password, or its CHAP-MD5 response)."""

    link: int
    mac: MacAddress
    session: int
    nai: str
    password: bytes | None = None  # PAP
    chap: tuple[int, bytes, bytes] | None = None  # CHAP: (identifier, challenge, response)


@dataclass(frozen=True, slots=True)
class SessionUp:
    """IPCP opened: the MS holds ``address`` over session ``session`` on ``link``."""

    link: int
    mac: MacAddress
    session: int
    nai: str
    address: IPv4Address


@dataclass(frozen=True, slots=True)
class SessionDown:
    """The session ended (why): an authorized MS is to be de-registered."""

    link: int
    mac: MacAddress
    session: int
    nai: str | None
    why: str


Output = Action | Authenticate | SessionUp | SessionDown


@dataclass(frozen=True, slots=True)
class PPPoEConfig:
    ac_mac: MacAddress  # the pseudo-MAC: what the MS talks to
    ac_name: str
    gateway: IPv4Address  # our end of the link in IPCP
    auth: str = "chap"  # "pap" or "chap"
    cookie_key: bytes = b""
    dns: tuple[IPv4Address, ...] = ()
    #: Our MRU in LCP: what the MS may send us (the tunnel MTU, when smaller than 1492).
    mru: int = MAX_MRU


@dataclass(slots=True)
class Session:
    link: int
    mac: MacAddress
    id: int
    magic: int
    state: str = "lcp"  # lcp, auth, wait_aaa, wait_address, ipcp, open, closed
    ours_acked: bool = False
    peers_acked: bool = False
    identifier: int = 0
    retries: int = 0
    deadline: float = 0.0
    nai: str | None = None
    challenge: bytes = b""
    address: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    ipcp_ours_acked: bool = False
    ipcp_peers_acked: bool = False
    echo_missed: int = 0
    counters: dict[str, int] = field(default_factory=dict)


def chap_md5(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 2: MD5 over the Identifier, the secret and the challenge value."""
    return hashlib.md5(bytes((identifier,)) + secret + challenge).digest()


class PPPoEServer:
    def __init__(self, config: PPPoEConfig, random_bytes: Callable[[int], bytes]) -> None:
        self.config = config
        self.random = random_bytes
        self.counters = Counters()
        self.sessions: dict[tuple[int, MacAddress, int], Session] = {}
        self._next_id = 1

    # --- frames in ---------------------------------------------------------------------------

    def receive(self, eth: EthernetFrame, link: int, now: float) -> list[Output]:
        try:
            frame = PPPoEFrame.decode(eth.payload)
            if eth.ethertype == ETHERTYPE_DISCOVERY:
                return self._discovery(eth.src, frame, link, now)
            if eth.ethertype == ETHERTYPE_SESSION and frame.code == PPPoECode.SESSION:
                session = self.sessions.get((link, eth.src, frame.session))
                if session is None:
                    self.counters[PPPoECounter.UNKNOWN_SESSION] += 1
                    return []
                protocol, info = frame.ppp()
                return self._ppp(session, protocol, info, now)
        except DecodeError:
            pass
        self.counters[PPPoECounter.MALFORMED] += 1
        return []

    def _cookie(self, mac: MacAddress) -> bytes:
        return hmac.new(self.config.cookie_key, mac.packed, hashlib.sha256).digest()[:16]

    def _discovery(self, src: MacAddress, frame: PPPoEFrame, link: int, now: float) -> list[Output]:
        tags = frame.tags()
        echoed = tuple(t for t in tags if t.type in (TagType.HOST_UNIQ, TagType.RELAY_SESSION_ID))
        service = next((t for t in tags if t.type == TagType.SERVICE_NAME), None)
        if frame.code == PPPoECode.PADI:
            self.counters[PPPoECounter.PADI] += 1
            if service is None:  # RFC 2516 5.1: exactly one Service-Name
                self.counters[PPPoECounter.NO_SERVICE_NAME] += 1
                return []
            ac = Tag(TagType.AC_NAME, self.config.ac_name.encode())
            cookie = Tag(TagType.AC_COOKIE, self._cookie(src))
            tags_out = (ac, Tag(TagType.SERVICE_NAME, service.value), cookie, *echoed)
            return [self._discovery_frame(link, src, PPPoECode.PADO, 0, tags_out)]
        if frame.code == PPPoECode.PADR:
            self.counters[PPPoECounter.PADR] += 1
            offered = next((t for t in tags if t.type == TagType.AC_COOKIE), None)
            if offered is None or not hmac.compare_digest(offered.value, self._cookie(src)):
                self.counters[PPPoECounter.BAD_COOKIE] += 1
                return []
            if len(self.sessions) >= MAX_SESSIONS:
                self.counters[PPPoECounter.FULL] += 1
                return []
            session = self._new_session(link, src, now)
            name = service.value if service is not None else b""
            tags_out = (Tag(TagType.SERVICE_NAME, name), *echoed)
            return [
                self._discovery_frame(link, src, PPPoECode.PADS, session.id, tags_out),
                *self._lcp_request(session, now),
            ]
        if frame.code == PPPoECode.PADT:
            self.counters[PPPoECounter.PADT] += 1
            ending = self.sessions.get((link, src, frame.session))
            if ending is None:
                return []
            return self._close(ending, "padt", send_padt=False)
        return []

    def _new_session(self, link: int, mac: MacAddress, now: float) -> Session:
        while True:
            ident = self._next_id
            self._next_id = self._next_id % 0xFFFE + 1  # 1..0xFFFE (RFC 2516 4: not 0, 0xFFFF)
            if not any(key[2] == ident for key in self.sessions):
                break
        magic = int.from_bytes(self.random(4), "big") or 1
        session = Session(link, mac, ident, magic, deadline=now + RESTART)
        self.sessions[(link, mac, ident)] = session
        return session

    # --- PPP ---------------------------------------------------------------------------------

    def _ppp(self, s: Session, protocol: int, info: bytes, now: float) -> list[Output]:
        if protocol == Protocol.LCP:
            return self._lcp(s, ControlPacket.decode(info), now)
        if s.state == "closed":
            return []
        if protocol == Protocol.PAP and s.state == "auth" and self.config.auth == "pap":
            packet = ControlPacket.decode(info)
            if packet.code != 1:
                return []
            request = PapRequest.decode(packet)
            s.identifier = request.identifier
            return self._authenticate(s, request.peer_id, password=request.password)
        if protocol == Protocol.CHAP and s.state == "auth" and self.config.auth == "chap":
            packet = ControlPacket.decode(info)
            response = ChapPacket.decode(packet) if packet.code == 2 else None
            if response is None or response.identifier != s.identifier:
                return []
            chap = (response.identifier, s.challenge, response.value)
            return self._authenticate(s, response.name, chap=chap)
        if protocol == Protocol.IPCP and s.state in ("ipcp", "open"):
            return self._ipcp(s, ControlPacket.decode(info), now)
        if protocol in (Protocol.PAP, Protocol.CHAP, Protocol.IPCP, Protocol.IPV4):
            return []  # not now (before its phase): silently discarded (RFC 1661 3.4)
        # RFC 1661 5.7: an unknown protocol is Protocol-Rejected.
        self.counters[PPPoECounter.PROTOCOL_REJECTED] += 1
        s.identifier = (s.identifier + 1) % 256
        reject = ControlPacket(
            Code.PROTOCOL_REJECT, s.identifier, struct.pack("!H", protocol) + info
        )
        return [self._send(s, Protocol.LCP, reject.encode())]

    def _lcp_request(self, s: Session, now: float) -> list[Output]:
        auth = (
            struct.pack("!HB", Protocol.CHAP, CHAP_MD5)
            if self.config.auth == "chap"
            else struct.pack("!H", Protocol.PAP)
        )
        options = (
            Option(LcpOption.MRU, struct.pack("!H", min(MAX_MRU, self.config.mru))),
            Option(LcpOption.AUTH_PROTOCOL, auth),
            Option(LcpOption.MAGIC_NUMBER, struct.pack("!I", s.magic)),
        )
        s.identifier = (s.identifier + 1) % 256
        s.deadline = now + RESTART
        packet = ControlPacket.configure(Code.CONFIGURE_REQUEST, s.identifier, options)
        return [self._send(s, Protocol.LCP, packet.encode())]

    def _lcp(self, s: Session, packet: ControlPacket, now: float) -> list[Output]:
        code = packet.code
        if code == Code.CONFIGURE_REQUEST and s.state in ("lcp", "auth"):
            reply = self._judge_lcp(packet)
            s.peers_acked = reply.code == Code.CONFIGURE_ACK
            return [self._send(s, Protocol.LCP, reply.encode()), *self._lcp_opened(s, now)]
        if code == Code.CONFIGURE_ACK and packet.identifier == s.identifier and s.state == "lcp":
            s.ours_acked = True
            return self._lcp_opened(s, now)
        if code in (Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT) and s.state == "lcp":
            rejected = {option.type for option in packet.options()}
            if LcpOption.AUTH_PROTOCOL in rejected:
                return self._close(s, "the MS refuses to authenticate")
            return self._lcp_request(s, now)  # MRU or magic: ask again (we keep ours)
        if code == Code.ECHO_REQUEST and s.state != "closed":
            reply = ControlPacket(Code.ECHO_REPLY, packet.identifier, struct.pack("!I", s.magic))
            return [self._send(s, Protocol.LCP, reply.encode())]
        if code == Code.ECHO_REPLY:
            s.echo_missed = 0
            return []
        if code == Code.TERMINATE_REQUEST:
            ack = ControlPacket(Code.TERMINATE_ACK, packet.identifier)
            return [self._send(s, Protocol.LCP, ack.encode()), *self._close(s, "terminated")]
        if code == Code.TERMINATE_ACK:
            return []
        return []

    def _judge_lcp(self, packet: ControlPacket) -> ControlPacket:
        """Ack what we accept; Nak an MRU over 1492 with 1492; Reject anything else (the
        peer asking to authenticate us, compression, ...)."""
        options = packet.options()
        unknown = [o for o in options if o.type not in (LcpOption.MRU, LcpOption.MAGIC_NUMBER)]
        if unknown:
            return ControlPacket.configure(Code.CONFIGURE_REJECT, packet.identifier, tuple(unknown))
        naks = tuple(
            Option(LcpOption.MRU, struct.pack("!H", MAX_MRU))
            for o in options
            if o.type == LcpOption.MRU
            and (len(o.value) != 2 or struct.unpack("!H", o.value)[0] > MAX_MRU)
        )
        if naks:
            return ControlPacket.configure(Code.CONFIGURE_NAK, packet.identifier, naks)
        return ControlPacket(Code.CONFIGURE_ACK, packet.identifier, packet.data)

    def _lcp_opened(self, s: Session, now: float) -> list[Output]:
        if s.state != "lcp" or not (s.ours_acked and s.peers_acked):
            return []
        self.counters[PPPoECounter.LCP_OPENED] += 1
        s.state = "auth"
        s.deadline = now + ECHO_INTERVAL
        if self.config.auth != "chap":
            return []
        s.identifier = (s.identifier + 1) % 256
        s.challenge = self.random(16)
        challenge = ChapPacket(1, s.identifier, s.challenge, self.config.ac_name.encode())
        return [self._send(s, Protocol.CHAP, challenge.encode())]

    def _authenticate(
        self,
        s: Session,
        name: bytes,
        *,
        password: bytes | None = None,
        chap: tuple[int, bytes, bytes] | None = None,
    ) -> list[Output]:
        try:
            nai = name.decode("utf-8")
        except UnicodeDecodeError:
            nai = ""
        if not nai:
            return self.auth_result(s.link, s.mac, s.id, False)
        s.nai, s.state = nai, "wait_aaa"
        return [Authenticate(s.link, s.mac, s.id, nai, password, chap)]

    # --- the caller's answers ------------------------------------------------------------------

    def auth_result(self, link: int, mac: MacAddress, session: int, ok: bool) -> list[Output]:
        """AAA's answer for an :class:`Authenticate`: Ack/Success, or Nak/Failure and the end."""
        s = self.sessions.get((link, mac, session))
        if s is None or s.state not in ("wait_aaa", "auth"):
            return []
        pap = self.config.auth == "pap"
        protocol = Protocol.PAP if pap else Protocol.CHAP
        if ok:
            self.counters[PPPoECounter.AUTH_ACCEPT] += 1
            s.state = "wait_address"
            reply = Message(2 if pap else 3, s.identifier, b"welcome", pap=pap)
            return [self._send(s, protocol, reply.encode())]
        self.counters[PPPoECounter.AUTH_REJECT] += 1
        reply = Message(3 if pap else 4, s.identifier, b"refused", pap=pap)
        return [self._send(s, protocol, reply.encode()), *self._close(s, "authentication failed")]

    def address(
        self,
        link: int,
        mac: MacAddress,
        session: int,
        hoa: IPv4Address,
        dns: tuple[IPv4Address, ...] = (),
        now: float = 0.0,
    ) -> list[Output]:
        """The PBA granted ``hoa``: IPCP starts (our request; the peer's gets the HoA)."""
        s = self.sessions.get((link, mac, session))
        if s is None or s.state != "wait_address":
            return []
        s.address, s.dns, s.state = hoa, dns or self.config.dns, "ipcp"
        return self._ipcp_request(s, now)

    def _ipcp_request(self, s: Session, now: float) -> list[Output]:
        s.identifier = (s.identifier + 1) % 256
        s.deadline = now + RESTART
        option = Option(IpcpOption.IP_ADDRESS, self.config.gateway.packed)
        packet = ControlPacket.configure(Code.CONFIGURE_REQUEST, s.identifier, (option,))
        return [self._send(s, Protocol.IPCP, packet.encode())]

    def _ipcp(self, s: Session, packet: ControlPacket, now: float) -> list[Output]:
        assert s.address is not None
        if packet.code == Code.CONFIGURE_REQUEST:
            reply = self._judge_ipcp(s, packet)
            s.ipcp_peers_acked = reply.code == Code.CONFIGURE_ACK
            return [self._send(s, Protocol.IPCP, reply.encode()), *self._ipcp_opened(s, now)]
        if packet.code == Code.CONFIGURE_ACK and packet.identifier == s.identifier:
            s.ipcp_ours_acked = True
            return self._ipcp_opened(s, now)
        if packet.code in (Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT):
            return self._ipcp_request(s, now)
        if packet.code == Code.TERMINATE_REQUEST:
            ack = ControlPacket(Code.TERMINATE_ACK, packet.identifier)
            return [self._send(s, Protocol.IPCP, ack.encode()), *self._close(s, "ipcp ended")]
        return []

    def _judge_ipcp(self, s: Session, packet: ControlPacket) -> ControlPacket:
        assert s.address is not None
        options = packet.options()
        wanted = {IpcpOption.IP_ADDRESS: s.address}
        for index, kind in enumerate((IpcpOption.PRIMARY_DNS, IpcpOption.SECONDARY_DNS)):
            if index < len(s.dns):
                wanted[kind] = s.dns[index]
        unknown = tuple(o for o in options if o.type not in wanted)
        if unknown:
            return ControlPacket.configure(Code.CONFIGURE_REJECT, packet.identifier, unknown)
        naks = tuple(
            Option(o.type, wanted[IpcpOption(o.type)].packed)
            for o in options
            if o.value != wanted[IpcpOption(o.type)].packed
        )
        if not any(o.type == IpcpOption.IP_ADDRESS for o in options):
            naks += (Option(IpcpOption.IP_ADDRESS, s.address.packed),)
        if naks:
            return ControlPacket.configure(Code.CONFIGURE_NAK, packet.identifier, naks)
        return ControlPacket(Code.CONFIGURE_ACK, packet.identifier, packet.data)

    def _ipcp_opened(self, s: Session, now: float) -> list[Output]:
        if s.state != "ipcp" or not (s.ipcp_ours_acked and s.ipcp_peers_acked):
            return []
        assert s.address is not None and s.nai is not None
        self.counters[PPPoECounter.IPCP_OPENED] += 1
        s.state = "open"
        s.deadline = now + ECHO_INTERVAL
        return [SessionUp(s.link, s.mac, s.id, s.nai, s.address)]

    # --- timers --------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return min((s.deadline for s in self.sessions.values()), default=None)

    def handle_timer(self, now: float) -> list[Output]:
        out: list[Output] = []
        for s in list(self.sessions.values()):
            if s.deadline > now:
                continue
            if s.state in ("lcp", "ipcp"):
                s.retries += 1
                if s.retries >= MAX_CONFIGURE:
                    out += self._close(s, "configure unanswered")
                else:
                    out += (
                        self._lcp_request(s, now)
                        if s.state == "lcp"
                        else self._ipcp_request(s, now)
                    )
            elif s.state in ("auth", "wait_aaa", "wait_address", "open"):
                if s.echo_missed >= ECHO_FAILURES:
                    self.counters[PPPoECounter.ECHO_TIMEOUT] += 1
                    out += self._close(s, "echo unanswered")
                    continue
                s.echo_missed += 1
                s.deadline = now + ECHO_INTERVAL
                s.identifier = (s.identifier + 1) % 256
                echo = ControlPacket(Code.ECHO_REQUEST, s.identifier, struct.pack("!I", s.magic))
                out.append(self._send(s, Protocol.LCP, echo.encode()))
        return out

    # --- helpers --------------------------------------------------------------------------------

    def _close(self, s: Session, why: str, *, send_padt: bool = True) -> list[Output]:
        self.counters[PPPoECounter.TERMINATED] += 1
        self.sessions.pop((s.link, s.mac, s.id), None)
        s.state = "closed"
        out: list[Output] = []
        if send_padt:
            terminate = ControlPacket(Code.TERMINATE_REQUEST, (s.identifier + 1) % 256)
            out.append(self._send(s, Protocol.LCP, terminate.encode()))
            out.append(self._discovery_frame(s.link, s.mac, PPPoECode.PADT, s.id, ()))
        out.append(SessionDown(s.link, s.mac, s.id, s.nai, why))
        return out

    def _send(self, s: Session, protocol: int, information: bytes) -> SendFrame:
        payload = PPPoEFrame.session_ppp(s.id, protocol, information).encode()
        frame = EthernetFrame(s.mac, self.config.ac_mac, ETHERTYPE_SESSION, payload)
        return SendFrame(s.link, frame.encode())

    def _discovery_frame(
        self, link: int, dst: MacAddress, code: int, session: int, tags: tuple[Tag, ...]
    ) -> SendFrame:
        payload = PPPoEFrame.discovery(code, session, tags).encode()
        frame = EthernetFrame(dst, self.config.ac_mac, ETHERTYPE_DISCOVERY, payload)
        return SendFrame(link, frame.encode())
