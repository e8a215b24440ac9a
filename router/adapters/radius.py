"""RADIUS client for the DMPA's AAA step (seed 3.2; RFC 2865, RFC 2869 5.14, RFC 3162, RFC 6572).

An attaching MS is authenticated with one Access-Request:

- ``User-Name`` = its NAI when known, else its MAC identity (``AA-BB-CC-DD-EE-FF``, with
  ``@<mac_realm>`` appended when a realm is configured, so a proxy can route it by realm);
- ``Calling-Station-Id`` = the MAC in the RFC 3580 3.21 form (upper-case hex, ``-`` between
  octets), ``NAS-Identifier`` and, if configured, ``NAS-IPv6-Address`` of the DMPA;
- ``Message-Authenticator`` (RFC 2869 5.14) as the first attribute;
- with :class:`Credentials` (a PPP MS's, seed 4.1): ``User-Password`` (PAP, hidden with the
  secret and the Request Authenticator, RFC 2865 5.2) or ``CHAP-Password`` (its Identifier and
  MD5 response) and ``CHAP-Challenge`` (RFC 2865 5.3, 5.40).

Each try waits ``timeout`` seconds; a server gets ``1 + retries`` tries (retransmissions are the
same bytes: same Identifier, same Request Authenticator, RFC 5080 2.2.1), then the next server is
asked with a fresh request (failover). So an answer takes at most
``len(servers) * (1 + retries) * timeout`` seconds.

A reply is trusted only once it passes, in this order (each failure is a counter, ``drop_*``; the
datagram is dropped and the request keeps waiting): a RADIUS header whose Length fits the
datagram; an Identifier we are waiting for on that server's socket; the Response Authenticator
``MD5(Code|ID|Length|RequestAuth|Attributes|Secret)``; a code of Access-Accept, -Reject or
-Challenge; attributes that decode; a Message-Authenticator that verifies (and, with
``require_message_authenticator``, the default, is present: the BlastRADIUS countermeasure of
CVE-2024-3596); no Proxy-State, since we send none.

Mapping an Access-Accept to a :class:`~router.core.dmpa.Profile` (:func:`map_accept`):

- NAI: Mobile-Node-Identifier (145), else a User-Name in the Accept, else the User-Name sent.
- DLMAP: PMIP6-Home-LMA-IPv6-Address (147), else the configured ``default_dlmap``; with neither
  the Accept is *unusable* (the MS cannot be anchored) and the answer is ``None``.
- Home address: PMIP6-Home-IPv4-HoA (155), else Framed-IP-Address (8) unless it is
  255.255.255.255 or 255.255.255.254 (RFC 2865 5.8: the user or the NAS picks, i.e. dynamic).
  If both are given and differ, 155 wins (counted as ``hoa_conflict``).
- Mode: ``static`` when there is a home address, else the configured ``dynamic_mode``
  (``dhcp``: seed 5.2, DHCP through the tunnel; ``dlmap``: seed 6, the DLMAP allocates).
- Gateway: PMIP6-Home-IPv4-Gateway (161); PMIP6-Home-DHCP4-Server-Address (157) is returned in
  :class:`AccessOutcome` (the core's Profile has no field for it).
- Dual-stack: PMIP6-Home-HN-Prefix (151, RFC 6572) present makes ``ipv6`` yes (the DMPA asks the
  DLMAP for a prefix; its value is not used: the DLMAP's pool assigns the /64).
- A mapped attribute that appears twice or has the wrong length makes the Accept *unusable*.

Access-Reject, Access-Challenge (we cannot answer one), an unusable Accept and a timeout all
mean ``None`` (keep the MS out); the counters say which.

I/O: one connected UDP socket per server (asyncio datagram endpoint), so the kernel drops
datagrams from any other source; pyrad encodes the request and decodes the reply with the
dictionary shipped next to this module. pyrad's own ``ClientAsync`` is not used: it has no
failover, polls its timeouts with a sleeping task, and reports bad replies only as log lines,
where we need each drop reason counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import struct
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any, Literal, cast

from pyrad.dictionary import Dictionary
from pyrad.packet import (
    AccessAccept,
    AccessChallenge,
    AccessReject,
    AccessRequest,
    AuthPacket,
    Packet,
    PacketError,
)

from router.core.counters import Counters, Names
from router.core.dmpa import AddressMode, Profile
from router.wire.ethernet import MacAddress

log = logging.getLogger(__name__)

DICTIONARY_PATH = Path(__file__).with_name("radius_dictionary")

# Attribute codes (RFC 2865 5, RFC 2869 5.14, RFC 3162 2.1, RFC 6572 4).
USER_NAME = 1
FRAMED_IP_ADDRESS = 8
PROXY_STATE = 33
MESSAGE_AUTHENTICATOR = 80
MOBILE_NODE_IDENTIFIER = 145
PMIP6_HOME_LMA_IPV6_ADDRESS = 147
PMIP6_HOME_HN_PREFIX = 151
PMIP6_HOME_IPV4_HOA = 155
PMIP6_HOME_DHCP4_SERVER_ADDRESS = 157
PMIP6_HOME_IPV4_GATEWAY = 161

HEADER = struct.Struct("!BBH16s")
MAX_PACKET = 4096  # RFC 2865 3: "The maximum length is 4096."
#: Seconds to wait for each try, and retransmissions to one server before the next is asked.
DEFAULT_TIMEOUT = 2.0
DEFAULT_RETRIES = 2
# RFC 2865 5.8: 0xFFFFFFFF lets the user choose, 0xFFFFFFFE lets the NAS choose: not a static HoA.
FRAMED_DYNAMIC = frozenset({IPv4Address("255.255.255.255"), IPv4Address("255.255.255.254")})

Result = Literal["accept", "reject", "challenge", "timeout", "unusable"]


class RadiusCounter(Names):
    """What the RADIUS client counts (``aaa`` group; the local backend counts three of them)."""

    REQUESTS = "requests"  # Access-Requests started (one per authenticate call)
    SENT = "sent"  # datagrams sent, retransmissions and failovers included
    RETRANSMISSIONS = "retransmissions"
    FAILOVERS = "failovers"
    #: sendto failed or the kernel reported an ICMP error for the socket
    SEND_ERRORS = "send_errors"
    ACCEPT = "accept"
    REJECT = "reject"
    CHALLENGE = "challenge"  # treated as a reject: we have nothing to answer a challenge with
    TIMEOUT = "timeout"
    UNUSABLE = "unusable"  # an authentic Accept we cannot turn into a profile
    #: 155 and Framed-IP-Address both present and different (155 used)
    HOA_CONFLICT = "hoa_conflict"
    #: 256 requests already outstanding on a server: that server is skipped
    NO_IDENTIFIER = "no_identifier"
    DROP_MALFORMED = "drop_malformed"
    DROP_UNKNOWN_ID = "drop_unknown_id"
    DROP_DUPLICATE = "drop_duplicate"
    DROP_BAD_AUTHENTICATOR = "drop_bad_authenticator"
    DROP_BAD_CODE = "drop_bad_code"
    DROP_BAD_MESSAGE_AUTHENTICATOR = "drop_bad_message_authenticator"
    DROP_MISSING_MESSAGE_AUTHENTICATOR = "drop_missing_message_authenticator"
    DROP_PROXY_STATE = "drop_proxy_state"


#: Every counter, in the order ``show counters`` lists them.
COUNTERS = tuple(RadiusCounter)


class MappingError(ValueError):
    """An authentic Access-Accept whose attributes cannot make a profile (which, and why)."""


@dataclass(frozen=True, slots=True)
class RadiusServer:
    address: IPv4Address | IPv6Address
    secret: bytes
    port: int = 1812


@dataclass(frozen=True, slots=True)
class RadiusConfig:
    """The RADIUS side of the DMPA's AAA; every problem is reported at once by :meth:`errors`."""

    #: Asked in order: the second (if any) only when the first does not answer.
    servers: tuple[RadiusServer, ...]
    nas_identifier: str
    nas_ipv6_address: IPv6Address | None = None
    #: The mode of an MS whose Accept carries no home address.
    dynamic_mode: Literal["dhcp", "dlmap"] = "dhcp"
    #: The DLMAP of an MS whose Accept carries no PMIP6-Home-LMA-IPv6-Address.
    default_dlmap: IPv6Address | None = None
    #: Realm appended to the MAC identity when the NAI is not known (``None``: bare MAC).
    mac_realm: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    require_message_authenticator: bool = True

    def errors(self) -> list[str]:
        problems: list[str] = []
        if not 1 <= len(self.servers) <= 2:
            problems.append(f"radius.servers: one or two servers, not {len(self.servers)}")
        for i, server in enumerate(self.servers):
            if not server.secret:
                problems.append(f"radius.servers[{i}].secret: must not be empty")
            if not 1 <= server.port <= 65535:
                problems.append(f"radius.servers[{i}].port: {server.port} is not a UDP port")
        if not self.nas_identifier or len(self.nas_identifier.encode()) > 253:
            problems.append("radius.nas_identifier: 1 to 253 octets")
        if self.dynamic_mode not in ("dhcp", "dlmap"):
            problems.append(f"radius.dynamic_mode: dhcp or dlmap, not {self.dynamic_mode!r}")
        if self.mac_realm is not None and (not self.mac_realm or "@" in self.mac_realm):
            problems.append(f"radius.mac_realm: not a realm: {self.mac_realm!r}")
        if not 0 < self.timeout <= 60:
            problems.append(f"radius.timeout: between 0 and 60 seconds, not {self.timeout}")
        if not 0 <= self.retries <= 10:
            problems.append(f"radius.retries: between 0 and 10, not {self.retries}")
        return problems

    def __post_init__(self) -> None:
        problems = self.errors()
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def max_wait(self) -> float:
        """The longest an :meth:`RadiusClient.access` call can take, in seconds."""
        return len(self.servers) * (1 + self.retries) * self.timeout


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a PPP MS proved itself with: a PAP password, or a CHAP-MD5 answer
    (identifier, challenge, response). Nothing: the MS is asked for by its MAC or NAI alone."""

    password: bytes | None = None
    chap: tuple[int, bytes, bytes] | None = None


@dataclass(frozen=True, slots=True)
class AccessOutcome:
    """What one authentication ended with; ``profile`` is set only for a usable Accept."""

    result: Result
    profile: Profile | None = None
    dhcp4_server: IPv4Address | None = None
    #: The server that answered (``None`` on timeout).
    server: RadiusServer | None = None
    reason: str = ""


def _expected_skip(record: logging.LogRecord) -> bool:
    # pyrad warns that it skipped PMIP6-Home-IPv4-HoA (ipv4prefix): we know, and decode it here.
    return "ipv4prefix" not in record.getMessage()


@cache
def dictionary() -> Dictionary:
    """The shipped dictionary, parsed once."""
    pyrad_log = logging.getLogger("pyrad")
    pyrad_log.addFilter(_expected_skip)
    try:
        return Dictionary(str(DICTIONARY_PATH))
    finally:
        pyrad_log.removeFilter(_expected_skip)


def calling_station_id(mac: MacAddress) -> str:
    """RFC 3580 3.21: ``00-10-A4-23-19-C0`` (upper case, ``-`` between octets)."""
    return mac.packed.hex("-").upper()


def user_name(mac: MacAddress, nai: str | None, mac_realm: str | None) -> str:
    """The NAI if known, else the MAC identity (with ``@mac_realm`` when configured)."""
    if nai:
        return nai
    identity = calling_station_id(mac)
    return f"{identity}@{mac_realm}" if mac_realm else identity


def build_request(
    config: RadiusConfig,
    server: RadiusServer,
    identifier: int,
    mac: MacAddress,
    nai: str | None,
    authenticator: bytes | None = None,
    credentials: Credentials | None = None,
) -> AuthPacket:
    """The Access-Request for one MS to one server (the caller encodes it with RequestPacket)."""
    request = AuthPacket(
        code=AccessRequest,
        id=identifier,
        secret=server.secret,
        # RFC 2865 3: the Request Authenticator "SHOULD exhibit global and temporal uniqueness"
        # and be unpredictable: from the OS's CSPRNG.
        authenticator=authenticator if authenticator is not None else os.urandom(16),
        dict=dictionary(),
    )
    request.add_message_authenticator()
    request["User-Name"] = user_name(mac, nai, config.mac_realm)
    request["Calling-Station-Id"] = calling_station_id(mac)
    request["NAS-Identifier"] = config.nas_identifier
    if config.nas_ipv6_address is not None:
        request["NAS-IPv6-Address"] = str(config.nas_ipv6_address)
    if credentials is not None and credentials.password is not None:
        request["User-Password"] = request.PwCrypt(credentials.password)
    if credentials is not None and credentials.chap is not None:
        identifier, challenge, response = credentials.chap
        request["CHAP-Password"] = bytes((identifier,)) + response
        request["CHAP-Challenge"] = challenge
    return request


def reply_identifier(data: bytes) -> int | None:
    """The Identifier of a datagram that has a plausible RADIUS header, else ``None``."""
    if len(data) < HEADER.size:
        return None
    length = struct.unpack_from("!H", data, 2)[0]
    if length < HEADER.size or length > len(data) or length > MAX_PACKET:
        return None
    return data[1]


@dataclass(frozen=True, slots=True)
class CheckedReply:
    """A reply that passed every check: its code and raw attributes by code."""

    code: int
    attributes: dict[int, list[bytes]] = field(default_factory=dict)


def check_reply(
    data: bytes,
    request_authenticator: bytes,
    secret: bytes,
    *,
    require_message_authenticator: bool = True,
) -> CheckedReply | RadiusCounter:
    """Check a reply whose Identifier matched a request: the reply, or the drop counter's name.

    Octets past the Length field are padding (RFC 2865 3) and ignored.
    """
    if reply_identifier(data) is None:
        return RadiusCounter.DROP_MALFORMED
    data = data[: struct.unpack_from("!H", data, 2)[0]]
    code = data[0]
    # RFC 2865 3: ResponseAuth = MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
    expected = hashlib.md5(data[:4] + request_authenticator + data[20:] + secret).digest()
    if not hmac.compare_digest(expected, data[4:20]):
        return RadiusCounter.DROP_BAD_AUTHENTICATOR
    if code not in (AccessAccept, AccessReject, AccessChallenge):
        return RadiusCounter.DROP_BAD_CODE
    if not _framed(data):
        return RadiusCounter.DROP_MALFORMED
    try:
        reply = Packet(secret=secret, dict=dictionary(), packet=data)
    except PacketError:
        return RadiusCounter.DROP_MALFORMED
    raw = _raw_attributes(reply)
    authenticators = raw.get(MESSAGE_AUTHENTICATOR, [])
    if authenticators:
        if len(authenticators) != 1 or len(authenticators[0]) != 16:
            return RadiusCounter.DROP_BAD_MESSAGE_AUTHENTICATOR
        verified = reply.verify_message_authenticator(
            secret=secret, original_authenticator=request_authenticator, original_code=AccessRequest
        )
        if not verified:
            return RadiusCounter.DROP_BAD_MESSAGE_AUTHENTICATOR
    elif require_message_authenticator:
        return RadiusCounter.DROP_MISSING_MESSAGE_AUTHENTICATOR
    if PROXY_STATE in raw:
        # We send no Proxy-State, so one in the reply was not put there for us (CVE-2024-3596).
        return RadiusCounter.DROP_PROXY_STATE
    return CheckedReply(code, {k: v for k, v in raw.items() if isinstance(k, int)})


def _framed(data: bytes) -> bool:
    # RFC 2865 5: an attribute with an invalid Length discards the packet. pyrad accepts a last
    # attribute that runs past the end (it slices), so the walk is ours.
    offset = HEADER.size
    while offset < len(data):
        if offset + 2 > len(data) or data[offset + 1] < 2 or offset + data[offset + 1] > len(data):
            return False
        offset += data[offset + 1]
    return True


def _raw_attributes(reply: Packet) -> dict[Any, list[bytes]]:
    # pyrad keeps attributes as an OrderedDict of code -> raw values; read it without decoding
    # (its __getitem__ decodes by name, and cannot decode ipv4prefix).
    return {key: list(values) for key, values in OrderedDict.items(reply)}


def _single(attributes: Mapping[int, Sequence[bytes]], code: int, size: int | None) -> bytes | None:
    values = attributes.get(code)
    if not values:
        return None
    if len(values) != 1:
        raise MappingError(f"attribute {code} appears {len(values)} times")
    value = values[0]
    if size is not None and len(value) != size:
        raise MappingError(f"attribute {code} has {len(value)} octets, not {size}")
    return value


def _ipv4(attributes: Mapping[int, Sequence[bytes]], code: int) -> IPv4Address | None:
    value = _single(attributes, code, 4)
    return None if value is None else IPv4Address(value)


def _ipv4_prefix_address(value: bytes) -> IPv4Address:
    # RFC 6572 4.11 / RFC 8044 3.11: Reserved, Prefix-Length, IPv4 Home Address.
    if len(value) != 6:
        raise MappingError(f"attribute {PMIP6_HOME_IPV4_HOA} has {len(value)} octets, not 6")
    if value[1] > 32:
        raise MappingError(f"attribute {PMIP6_HOME_IPV4_HOA} has prefix length {value[1]}")
    return IPv4Address(value[2:])


def _home_address(address: IPv4Address, code: int) -> IPv4Address:
    if address.is_unspecified or address.is_multicast or address == IPv4Address("255.255.255.255"):
        raise MappingError(f"attribute {code}: {address} cannot be a home address")
    return address


def map_accept(
    attributes: Mapping[int, Sequence[bytes]],
    sent_user_name: str,
    config: RadiusConfig,
) -> tuple[Profile, IPv4Address | None, bool]:
    """Profile, DHCPv4 server and "HoA conflict" from an authentic Accept's raw attributes.

    Raises :class:`MappingError` when the Accept cannot make a profile (see the module text).
    """
    nai_value = _single(attributes, MOBILE_NODE_IDENTIFIER, None)
    if nai_value is None:
        nai_value = _single(attributes, USER_NAME, None)
    try:
        nai = nai_value.decode("utf-8") if nai_value is not None else sent_user_name
    except UnicodeDecodeError:
        raise MappingError("the NAI is not UTF-8") from None
    if not nai:
        raise MappingError("the NAI is empty")

    lma = _single(attributes, PMIP6_HOME_LMA_IPV6_ADDRESS, 16)
    dlmap = IPv6Address(lma) if lma is not None else config.default_dlmap
    if dlmap is None:
        raise MappingError(
            f"no attribute {PMIP6_HOME_LMA_IPV6_ADDRESS} and no default DLMAP configured"
        )
    if dlmap.is_unspecified or dlmap.is_multicast or dlmap.is_loopback:
        raise MappingError(f"attribute {PMIP6_HOME_LMA_IPV6_ADDRESS}: {dlmap} is no DLMAP")

    hoa_value = _single(attributes, PMIP6_HOME_IPV4_HOA, None)
    hoa = None
    if hoa_value is not None:
        hoa = _home_address(_ipv4_prefix_address(hoa_value), PMIP6_HOME_IPV4_HOA)
    framed = _ipv4(attributes, FRAMED_IP_ADDRESS)
    if framed is not None and framed in FRAMED_DYNAMIC:
        framed = None
    conflict = hoa is not None and framed is not None and framed != hoa
    if hoa is None and framed is not None:
        hoa = _home_address(framed, FRAMED_IP_ADDRESS)

    mode: AddressMode = "static" if hoa is not None else config.dynamic_mode
    gateway = _ipv4(attributes, PMIP6_HOME_IPV4_GATEWAY)
    dhcp4_server = _ipv4(attributes, PMIP6_HOME_DHCP4_SERVER_ADDRESS)
    ipv6 = _single(attributes, PMIP6_HOME_HN_PREFIX, None) is not None
    return Profile(nai, mode, dlmap, hoa, gateway, ipv6), dhcp4_server, conflict


class _RateLimitedLog:
    """At most one line per reason per ``interval`` seconds (peer input must not flood logs)."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def warning(self, now: float, reason: str, msg: str, *args: object) -> None:
        last = self._last.get(reason)
        if last is None or now - last >= self.interval:
            self._last[reason] = now
            log.warning(msg, *args)


@dataclass(slots=True)
class _Pending:
    authenticator: bytes
    future: asyncio.Future[CheckedReply]


class _Endpoint(asyncio.DatagramProtocol):
    """One connected UDP socket to one server, with its outstanding requests by Identifier."""

    def __init__(self, client: RadiusClient, server: RadiusServer, first_id: int) -> None:
        self.client = client
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Pending] = {}
        self._next_id = first_id

    def allocate_id(self) -> int | None:
        # Round robin from a random start: an Identifier comes back only after 255 others, so a
        # late reply to a timed-out request rarely meets a new request with its Identifier (and
        # when it does, the Response Authenticator check drops it).
        for _ in range(256):
            ident = self._next_id
            self._next_id = (self._next_id + 1) % 256
            if ident not in self.pending:
                return ident
        return None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.client._received(self, data)

    def error_received(self, exc: Exception) -> None:
        self.client._count(RadiusCounter.SEND_ERRORS)
        self.client._limited.warning(
            self.client._now(), "socket", "radius socket error server=%s error=%s", self.server, exc
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class RadiusClient:
    """Access-Requests over asyncio UDP; one instance per process, shared by all access links."""

    def __init__(self, config: RadiusConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.counters = Counters(dict.fromkeys(RadiusCounter, 0))
        self._rng = rng or random.SystemRandom()
        self._endpoints: dict[RadiusServer, _Endpoint] = {}
        self._opening: dict[RadiusServer, asyncio.Lock] = {}
        self._limited = _RateLimitedLog()
        dictionary()  # parse it now: a broken install fails at start, not at the first MS

    async def __aenter__(self) -> RadiusClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for endpoint in self._endpoints.values():
            for pending in endpoint.pending.values():
                if not pending.future.done():
                    pending.future.cancel()
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()

    async def authenticate(
        self, mac: MacAddress, nai: str | None = None, credentials: Credentials | None = None
    ) -> Profile | None:
        """The MS's profile, or ``None`` (reject, challenge, unusable Accept or no answer)."""
        return (await self.access(mac, nai, credentials)).profile

    async def access(
        self, mac: MacAddress, nai: str | None = None, credentials: Credentials | None = None
    ) -> AccessOutcome:
        """One authentication, with retries and failover; never raises on what the peer sends."""
        self._count(RadiusCounter.REQUESTS)
        for index, server in enumerate(self.config.servers):
            if index:
                self._count(RadiusCounter.FAILOVERS)
                log.info("radius_failover server=%s mac=%s", server.address, mac)
            outcome = await self._ask(server, mac, nai, credentials)
            if outcome is not None:
                return outcome
        self._count(RadiusCounter.TIMEOUT)
        log.info("radius_timeout mac=%s nai=%s", mac, nai)
        return AccessOutcome("timeout", reason="no server answered")

    async def _ask(
        self,
        server: RadiusServer,
        mac: MacAddress,
        nai: str | None,
        credentials: Credentials | None = None,
    ) -> AccessOutcome | None:
        endpoint = await self._endpoint(server)
        if endpoint is None:
            return None
        ident = endpoint.allocate_id()
        if ident is None:
            self._count(RadiusCounter.NO_IDENTIFIER)
            return None
        request = build_request(self.config, server, ident, mac, nai, credentials=credentials)
        raw = request.RequestPacket()
        future: asyncio.Future[CheckedReply] = asyncio.get_running_loop().create_future()
        endpoint.pending[ident] = _Pending(request.authenticator, future)
        try:
            for attempt in range(1 + self.config.retries):
                if attempt:
                    self._count(RadiusCounter.RETRANSMISSIONS)
                if endpoint.transport is None:
                    return None
                try:
                    endpoint.transport.sendto(raw)
                    self._count(RadiusCounter.SENT)
                except OSError as exc:
                    self._count(RadiusCounter.SEND_ERRORS)
                    log.warning("radius_send_failed server=%s error=%s", server.address, exc)
                done, _ = await asyncio.wait({future}, timeout=self.config.timeout)
                if done:
                    return self._outcome(future.result(), server, request["User-Name"][0])
            return None
        finally:
            endpoint.pending.pop(ident, None)

    def _outcome(self, reply: CheckedReply, server: RadiusServer, sent_name: str) -> AccessOutcome:
        if reply.code == AccessReject:
            self._count(RadiusCounter.REJECT)
            return AccessOutcome("reject", server=server, reason="Access-Reject")
        if reply.code == AccessChallenge:
            self._count(RadiusCounter.CHALLENGE)
            return AccessOutcome("challenge", server=server, reason="Access-Challenge")
        try:
            profile, dhcp4_server, conflict = map_accept(reply.attributes, sent_name, self.config)
        except MappingError as exc:
            self._count(RadiusCounter.UNUSABLE)
            log.warning("radius_accept_unusable server=%s reason=%s", server.address, exc)
            return AccessOutcome("unusable", server=server, reason=str(exc))
        if conflict:
            self._count(RadiusCounter.HOA_CONFLICT)
        self._count(RadiusCounter.ACCEPT)
        return AccessOutcome("accept", profile, dhcp4_server, server)

    async def _endpoint(self, server: RadiusServer) -> _Endpoint | None:
        endpoint = self._endpoints.get(server)
        if endpoint is not None and endpoint.transport is not None:
            return endpoint
        lock = self._opening.setdefault(server, asyncio.Lock())
        async with lock:
            endpoint = self._endpoints.get(server)
            if endpoint is not None and endpoint.transport is not None:
                return endpoint
            loop = asyncio.get_running_loop()
            try:
                _, endpoint = await loop.create_datagram_endpoint(
                    lambda: _Endpoint(self, server, self._rng.randrange(256)),
                    remote_addr=(str(server.address), server.port),
                )
            except OSError as exc:
                self._count(RadiusCounter.SEND_ERRORS)
                log.warning("radius_socket_failed server=%s error=%s", server.address, exc)
                return None
            self._endpoints[server] = endpoint
            return endpoint

    def _received(self, endpoint: _Endpoint, data: bytes) -> None:
        ident = reply_identifier(data)
        if ident is None:
            return self._drop(endpoint, RadiusCounter.DROP_MALFORMED, data)
        pending = endpoint.pending.get(ident)
        if pending is None:
            return self._drop(endpoint, RadiusCounter.DROP_UNKNOWN_ID, data)
        if pending.future.done():
            return self._drop(endpoint, RadiusCounter.DROP_DUPLICATE, data)
        checked = check_reply(
            data,
            pending.authenticator,
            endpoint.server.secret,
            require_message_authenticator=self.config.require_message_authenticator,
        )
        if isinstance(checked, str):
            return self._drop(endpoint, checked, data)
        pending.future.set_result(checked)
        return None

    def _drop(self, endpoint: _Endpoint, reason: RadiusCounter, data: bytes) -> None:
        self._count(reason)
        self._limited.warning(
            self._now(),
            reason,
            "radius reply dropped reason=%s server=%s length=%d",
            reason,
            endpoint.server.address,
            len(data),
        )

    def _count(self, name: RadiusCounter) -> None:
        self.counters[name] += 1

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def parse_server(text: str, secret: bytes) -> RadiusServer:
    """``192.0.2.1``, ``192.0.2.1:1812``, ``2001:db8::1`` or ``[2001:db8::1]:1812``."""
    host, port = text, 1812
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":"))
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    return RadiusServer(ip_address(host), secret, port)
