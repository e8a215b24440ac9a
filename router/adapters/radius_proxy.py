"""The DMPA's RADIUS proxy for its 802.1X authenticators (hostapd): the profile from the Accept.

hostapd relays EAP to a RADIUS server and keeps the Access-Accept to itself (its control
interface reports the success, not the attributes). So its RADIUS client points here: each
Access-Request is forwarded to the visited AAA (``[radius] servers``), and each answer goes
back to hostapd; on the way back an Access-Accept is read like the RADIUS client reads one
(:func:`router.adapters.radius.map_accept`: RFC 6572 home address, DLMAP, gateway) and kept as
"MAC -> profile" until hostapd's ``CTRL-EVENT-EAP-SUCCESS2 <mac>`` takes it (:meth:`take`). One
authentication, no second exchange.

The NAI (seed 4, 5.1: the identity the MS presented at network access authentication) is the
Accept's Mobile-Node-Identifier (145), else its User-Name: what the home AAA says the inner,
authenticated identity is. The outer identity of the request is never used (with EAP-TTLS or
PEAP it is often ``anonymous@realm`` and never authenticated): an Accept without either
attribute, or naming an anonymous identity, is *unusable*, and hostapd gets an Access-Reject
instead (so the port stays closed and the MS learns it failed).

As a proxy (RFC 2865 2.3, RFC 3579 3.2, RFC 5080 2.2):

- a request from hostapd must carry a Message-Authenticator that verifies with ``secret``
  (EAP needs one, RFC 3579 3.2); the forwarded request gets a new Identifier and Request
  Authenticator, a Message-Authenticator under the upstream server's secret, and the other
  attributes as they came (a User-Password, which EAP never sends, is dropped and counted);
- a retransmission (same source, Identifier and Request Authenticator) is sent upstream again
  as the same bytes; after ``1 + retries`` copies the next server gets a fresh request;
- a reply must pass :func:`router.adapters.radius.check_reply` (Response Authenticator,
  Message-Authenticator, no Proxy-State); it goes back with hostapd's Identifier and a new
  Response Authenticator and Message-Authenticator under ``secret``; MS-MPPE-Send/Recv-Key
  (RFC 2548 2.4.2, salt-encrypted with the secret and the Request Authenticator) are decrypted
  and encrypted again for hostapd.

Malformed or unauthentic datagrams are counted and dropped, never raised.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, cast

from router.adapters.radius import (
    HEADER,
    MAX_PACKET,
    MESSAGE_AUTHENTICATOR,
    PROXY_STATE,
    USER_NAME,
    CheckedReply,
    MappingError,
    RadiusConfig,
    RadiusServer,
    check_reply,
    map_accept,
)
from router.core.counters import Counters, Names
from router.core.dmpa import Profile
from router.wire.ethernet import MacAddress

log = logging.getLogger(__name__)

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE = 1, 2, 3, 11
USER_PASSWORD = 2
CALLING_STATION_ID = 31
NAS_IDENTIFIER = 32
VENDOR_SPECIFIC = 26
REPLY_MESSAGE = 18
STATE = 24
EAP_MESSAGE = 79
MICROSOFT = 311
MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY = 16, 17
#: How long an accepted profile waits for hostapd's success event, seconds.
ACCEPT_TTL = 30.0
#: How long a forwarded request is remembered (hostapd's retransmissions, a late reply).
PENDING_TTL = 30.0
MAX_ACCEPTED = 4096
ANONYMOUS = frozenset({"", "anonymous"})

Attribute = tuple[int, bytes]


class ProxyCounter(Names):
    """What the 802.1X RADIUS proxy counts (``aaa_proxy`` group)."""

    REQUESTS = "requests"  # Access-Requests from an authenticator, first copies
    RETRANSMISSIONS = "retransmissions"  # an authenticator's copies, sent upstream again
    FAILOVERS = "failovers"
    FORWARDED = "forwarded"  # datagrams sent upstream
    ACCEPT = "accept"
    REJECT = "reject"
    CHALLENGE = "challenge"
    #: An authentic Accept that makes no profile (no NAI, an anonymous one, no DLMAP):
    #: answered with an Access-Reject.
    UNUSABLE = "unusable"
    TAKEN = "taken"  # a profile handed to a success event
    EXPIRED = "expired"  # a profile no success event took in time
    NO_IDENTIFIER = "no_identifier"
    SEND_ERRORS = "send_errors"
    USER_PASSWORD_DROPPED = "user_password_dropped"
    DROP_MALFORMED = "drop_malformed"
    DROP_NOT_REQUEST = "drop_not_request"
    DROP_BAD_MESSAGE_AUTHENTICATOR = "drop_bad_message_authenticator"
    DROP_NO_CALLING_STATION = "drop_no_calling_station"
    DROP_UNKNOWN_REPLY = "drop_unknown_reply"
    DROP_REPLY = "drop_reply"  # a reply that failed check_reply (see the RADIUS client)


COUNTERS = tuple(ProxyCounter)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Where hostapd reaches us, the secret it shares with us, and the visited AAA."""

    listen: tuple[str, int]
    secret: bytes
    upstream: RadiusConfig


def attributes(data: bytes) -> list[Attribute] | None:
    """The attributes of a RADIUS packet in order, or None if their framing is broken."""
    out: list[Attribute] = []
    length = struct.unpack_from("!H", data, 2)[0]
    offset = HEADER.size
    while offset < length:
        if offset + 2 > length or data[offset + 1] < 2 or offset + data[offset + 1] > length:
            return None
        out.append((data[offset], bytes(data[offset + 2 : offset + data[offset + 1]])))
        offset += data[offset + 1]
    return out


def _frame(data: bytes) -> bytes | None:
    """The datagram cut to its Length, if its header is plausible."""
    if len(data) < HEADER.size:
        return None
    length = struct.unpack_from("!H", data, 2)[0]
    if length < HEADER.size or length > len(data) or length > MAX_PACKET:
        return None
    return data[:length]


def encode(code: int, ident: int, authenticator: bytes, attrs: list[Attribute]) -> bytes:
    body = b"".join(struct.pack("!BB", t, len(v) + 2) + v for t, v in attrs)
    return HEADER.pack(code, ident, HEADER.size + len(body), authenticator) + body


def sign_request(ident: int, attrs: list[Attribute], secret: bytes) -> bytes:
    """An Access-Request: random Request Authenticator, Message-Authenticator first."""
    authenticator = os.urandom(16)
    packet = encode(
        ACCESS_REQUEST, ident, authenticator, [(MESSAGE_AUTHENTICATOR, bytes(16)), *attrs]
    )
    mac = hmac.new(secret, packet, hashlib.md5).digest()
    return packet[:22] + mac + packet[38:]


def sign_reply(
    code: int, ident: int, request_authenticator: bytes, attrs: list[Attribute], secret: bytes
) -> bytes:
    """A reply to a request with ``request_authenticator``: Message-Authenticator (RFC 3579
    3.2, computed over the request's authenticator) then the Response Authenticator."""
    packet = encode(
        code, ident, request_authenticator, [(MESSAGE_AUTHENTICATOR, bytes(16)), *attrs]
    )
    mac = hmac.new(secret, packet, hashlib.md5).digest()
    packet = packet[:22] + mac + packet[38:]
    response = hashlib.md5(packet[:4] + request_authenticator + packet[20:] + secret).digest()
    return packet[:4] + response + packet[20:]


def request_verifies(packet: bytes, secret: bytes) -> bool:
    """The request's single Message-Authenticator is HMAC-MD5 of it with that field zeroed."""
    attrs = attributes(packet)
    if attrs is None:
        return False
    found = [i for i, (t, _) in enumerate(attrs) if t == MESSAGE_AUTHENTICATOR]
    if len(found) != 1 or len(attrs[found[0]][1]) != 16:
        return False
    offset = HEADER.size + sum(len(v) + 2 for _, v in attrs[: found[0]])
    zeroed = packet[: offset + 2] + bytes(16) + packet[offset + 18 :]
    expected = hmac.new(secret, zeroed, hashlib.md5).digest()
    return hmac.compare_digest(expected, attrs[found[0]][1])


def salt_decrypt(value: bytes, secret: bytes, authenticator: bytes) -> bytes | None:
    """RFC 2548 2.4.2: salt (2 octets) + 16-octet blocks -> the key (length octet removed)."""
    salt, cipher = value[:2], value[2:]
    if len(value) < 18 or len(cipher) % 16:
        return None
    blocks = [cipher[i : i + 16] for i in range(0, len(cipher), 16)]
    # Decryption chains on the cipher blocks: b(i) = MD5(S + c(i-1)).
    plain, previous = b"", authenticator + salt
    for block in blocks:
        key = hashlib.md5(secret + previous).digest()
        plain += bytes(a ^ b for a, b in zip(block, key, strict=True))
        previous = block
    if plain[0] > len(plain) - 1:
        return None
    return plain[1 : 1 + plain[0]]


def salt_encrypt(key: bytes, secret: bytes, authenticator: bytes) -> bytes:
    """RFC 2548 2.4.2: a fresh salt (high bit set) and the key, padded, encrypted."""
    salt = bytes([0x80 | os.urandom(1)[0], os.urandom(1)[0]])
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, previous = b"", authenticator + salt
    for i in range(0, len(plain), 16):
        keystream = hashlib.md5(secret + previous).digest()
        block = bytes(a ^ b for a, b in zip(plain[i : i + 16], keystream, strict=True))
        out += block
        previous = block
    return salt + out


def _recrypt(
    attrs: list[Attribute], old: tuple[bytes, bytes], new: tuple[bytes, bytes]
) -> list[Attribute] | None:
    """The MS-MPPE keys decrypted with ``old`` (secret, request authenticator) and encrypted
    with ``new``; other attributes unchanged. None if a key does not decrypt."""
    out: list[Attribute] = []
    for code, value in attrs:
        if code == VENDOR_SPECIFIC and len(value) >= 6:
            vendor, vtype, vlen = struct.unpack_from("!IBB", value)
            if vendor == MICROSOFT and vtype in (MS_MPPE_SEND_KEY, MS_MPPE_RECV_KEY):
                if vlen != len(value) - 4:
                    return None
                key = salt_decrypt(value[6:], *old)
                if key is None:
                    return None
                sealed = salt_encrypt(key, *new)
                value = struct.pack("!IBB", vendor, vtype, len(sealed) + 2) + sealed
        out.append((code, value))
    return out


def anonymous(nai: str) -> bool:
    """``anonymous@realm``, ``@realm`` (RFC 7542 2.4) or ``anonymous``: no one's identity."""
    return nai.partition("@")[0].lower() in ANONYMOUS


@dataclass(slots=True)
class _Forwarded:
    client: tuple[Any, ...]
    client_id: int
    client_authenticator: bytes
    mac: MacAddress
    attrs: list[Attribute]
    server_index: int
    ident: int
    packet: bytes
    copies: int
    upstream_authenticator: bytes
    started: float


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, proxy: RadiusProxy, server: RadiusServer) -> None:
        self.proxy, self.server = proxy, server
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Forwarded] = {}
        self.next_id = int.from_bytes(os.urandom(1), "big")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.proxy._reply(self, data)

    def error_received(self, exc: Exception) -> None:
        self.proxy.counters[ProxyCounter.SEND_ERRORS] += 1

    def allocate(self) -> int | None:
        for _ in range(256):
            ident, self.next_id = self.next_id, (self.next_id + 1) % 256
            if ident not in self.pending:
                return ident
        return None


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: RadiusProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.proxy._request(data, addr)


class RadiusProxy:
    """``await start()``; hostapd's requests forwarded; :meth:`take` the profile of an MS."""

    def __init__(self, config: ProxyConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.counters = Counters(dict.fromkeys(ProxyCounter, 0))
        self._clock = clock
        self._listener: _Listener | None = None
        self._upstreams: list[_Upstream] = []
        #: (client address, Identifier, Request Authenticator) -> the forwarded request.
        self._by_client: OrderedDict[tuple[Any, ...], _Forwarded] = OrderedDict()
        #: (MAC, the Accept's User-Name or None) -> (when, profile) of an authentic, usable
        #: Accept: one MAC may be accepted by two authenticators at once.
        self._accepted: OrderedDict[tuple[MacAddress, str | None], tuple[float, Profile]] = (
            OrderedDict()
        )
        #: Seconds from the first request of an MS to its Accept (the EAP exchange), by MAC.
        self.durations: dict[MacAddress, float] = {}
        self._first_request: OrderedDict[MacAddress, float] = OrderedDict()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.config.listen
        _, listener = await loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=(host, port)
        )
        self._listener = listener
        for server in self.config.upstream.servers:
            _, upstream = await loop.create_datagram_endpoint(
                lambda s=server: _Upstream(self, s),  # type: ignore[misc]
                remote_addr=(str(server.address), server.port),
            )
            self._upstreams.append(upstream)

    def close(self) -> None:
        for endpoint in (self._listener, *self._upstreams):
            if endpoint is not None and endpoint.transport is not None:
                endpoint.transport.close()
        self._upstreams.clear()
        self._listener = None

    def take(self, mac: MacAddress, user: str | None = None) -> Profile | None:
        """The profile of ``mac``'s usable Accept whose User-Name is ``user`` (what hostapd
        reports for the station), once; with no such Accept, that of an Accept of ``mac``
        without a User-Name (None: none, or too old)."""
        self._expire()
        entry = self._accepted.pop((mac, user), None) if user is not None else None
        if entry is None:
            entry = self._accepted.pop((mac, None), None)
        if entry is None:
            return None
        self.counters[ProxyCounter.TAKEN] += 1
        return entry[1]

    def _expire(self) -> None:
        now = self._clock()
        while self._accepted:
            _, (when, _) = next(iter(self._accepted.items()))
            if now - when < ACCEPT_TTL and len(self._accepted) <= MAX_ACCEPTED:
                break
            self._accepted.popitem(last=False)
            self.counters[ProxyCounter.EXPIRED] += 1
        while self._by_client:
            _key, forwarded = next(iter(self._by_client.items()))
            if now - forwarded.started < PENDING_TTL:
                break
            self._by_client.popitem(last=False)
            upstream = self._upstreams[forwarded.server_index]
            if upstream.pending.get(forwarded.ident) is forwarded:
                del upstream.pending[forwarded.ident]
        while len(self._first_request) > MAX_ACCEPTED:
            self._first_request.popitem(last=False)

    # --- hostapd -> upstream ------------------------------------------------------------------

    def _request(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._expire()
        packet = _frame(data)
        if packet is None:
            self.counters[ProxyCounter.DROP_MALFORMED] += 1
            return
        if packet[0] != ACCESS_REQUEST:
            self.counters[ProxyCounter.DROP_NOT_REQUEST] += 1
            return
        if not request_verifies(packet, self.config.secret):
            self.counters[ProxyCounter.DROP_BAD_MESSAGE_AUTHENTICATOR] += 1
            return
        key = (addr[:2], packet[1], packet[4:20])
        forwarded = self._by_client.get(key)
        if forwarded is not None:
            self._retransmit(forwarded)
            return
        attrs = attributes(packet) or []
        station = [v for t, v in attrs if t == CALLING_STATION_ID]
        try:
            mac = MacAddress.parse(station[0].decode("ascii")) if len(station) == 1 else None
        except (UnicodeDecodeError, ValueError):
            mac = None
        if mac is None:
            self.counters[ProxyCounter.DROP_NO_CALLING_STATION] += 1
            return
        if any(t == USER_PASSWORD for t, _ in attrs):
            self.counters[ProxyCounter.USER_PASSWORD_DROPPED] += 1
        kept = [(t, v) for t, v in attrs if t not in (MESSAGE_AUTHENTICATOR, USER_PASSWORD)]
        self.counters[ProxyCounter.REQUESTS] += 1
        now = self._clock()
        if not any(t == STATE for t, _ in kept):  # no State: the first request of an exchange
            self._first_request[mac] = now
            self._first_request.move_to_end(mac)
        forwarded = _Forwarded(
            addr[:2], packet[1], packet[4:20], mac, kept, 0, -1, b"", 0, b"", now
        )
        self._by_client[key] = forwarded
        self._send_fresh(forwarded, 0)

    def _send_fresh(self, forwarded: _Forwarded, server_index: int) -> None:
        if not self._upstreams:
            return
        old = self._upstreams[forwarded.server_index]
        if old.pending.get(forwarded.ident) is forwarded:
            del old.pending[forwarded.ident]
        upstream = self._upstreams[server_index]
        ident = upstream.allocate()
        if ident is None:
            self.counters[ProxyCounter.NO_IDENTIFIER] += 1
            return
        packet = sign_request(ident, forwarded.attrs, upstream.server.secret)
        forwarded.server_index, forwarded.ident, forwarded.packet = server_index, ident, packet
        forwarded.upstream_authenticator, forwarded.copies = packet[4:20], 0
        upstream.pending[ident] = forwarded
        self._send(forwarded)

    def _retransmit(self, forwarded: _Forwarded) -> None:
        self.counters[ProxyCounter.RETRANSMISSIONS] += 1
        if forwarded.copies > self.config.upstream.retries and len(self._upstreams) > 1:
            self.counters[ProxyCounter.FAILOVERS] += 1
            self._send_fresh(forwarded, (forwarded.server_index + 1) % len(self._upstreams))
            return
        if forwarded.ident >= 0:
            self._send(forwarded)

    def _send(self, forwarded: _Forwarded) -> None:
        upstream = self._upstreams[forwarded.server_index]
        if upstream.transport is None:
            return
        try:
            upstream.transport.sendto(forwarded.packet)
        except OSError:
            self.counters[ProxyCounter.SEND_ERRORS] += 1
            return
        forwarded.copies += 1
        self.counters[ProxyCounter.FORWARDED] += 1

    # --- upstream -> hostapd ------------------------------------------------------------------

    def _reply(self, upstream: _Upstream, data: bytes) -> None:
        packet = _frame(data)
        forwarded = upstream.pending.get(packet[1]) if packet is not None else None
        if packet is None or forwarded is None:
            self.counters[ProxyCounter.DROP_UNKNOWN_REPLY] += 1
            return
        checked = check_reply(
            packet,
            forwarded.upstream_authenticator,
            upstream.server.secret,
            require_message_authenticator=self.config.upstream.require_message_authenticator,
        )
        if isinstance(checked, str):
            self.counters[ProxyCounter.DROP_REPLY] += 1
            log.debug("aaa_proxy_reply_dropped reason=%s", checked)
            return
        attrs = attributes(packet) or []
        attrs = [(t, v) for t, v in attrs if t not in (MESSAGE_AUTHENTICATOR, PROXY_STATE)]
        code = checked.code
        if code == ACCESS_ACCEPT:
            code = self._accepted_profile(forwarded, checked)
        elif code == ACCESS_REJECT:
            self.counters[ProxyCounter.REJECT] += 1
        else:
            self.counters[ProxyCounter.CHALLENGE] += 1
        old = (upstream.server.secret, forwarded.upstream_authenticator)
        new = (self.config.secret, forwarded.client_authenticator)
        recrypted = _recrypt(attrs, old, new)
        if code == ACCESS_ACCEPT and recrypted is None:
            self.counters[ProxyCounter.UNUSABLE] += 1
            code = ACCESS_REJECT
        if code == ACCESS_REJECT and checked.code == ACCESS_ACCEPT:
            # An Accept we refuse: hostapd gets a reject whose EAP packet is a Failure
            # (RFC 3748 4.2) with the identifier of the Success it replaces.
            eap = checked.attributes.get(EAP_MESSAGE, [b""])[0]
            ident = eap[1:2] if len(eap) >= 4 else b"\x00"
            recrypted = [(EAP_MESSAGE, b"\x04" + ident + b"\x00\x04")]
        elif code == ACCESS_REJECT:
            recrypted = [(t, v) for t, v in attrs if t in (EAP_MESSAGE, REPLY_MESSAGE)]
        reply = sign_reply(
            code,
            forwarded.client_id,
            forwarded.client_authenticator,
            recrypted or [],
            self.config.secret,
        )
        del upstream.pending[forwarded.ident]
        self._by_client.pop(
            (forwarded.client, forwarded.client_id, forwarded.client_authenticator), None
        )
        if self._listener is not None and self._listener.transport is not None:
            self._listener.transport.sendto(reply, forwarded.client)

    def _accepted_profile(self, forwarded: _Forwarded, checked: CheckedReply) -> int:
        """Map the Accept to a profile and keep it for the success event; the code hostapd
        gets: Accept, or Reject when the Accept is unusable."""
        try:
            # No fallback to the request's (outer, unauthenticated) User-Name: "" is refused.
            profile, _, _ = map_accept(checked.attributes, "", self.config.upstream)
            if anonymous(profile.nai):
                raise MappingError(f"the NAI {profile.nai!r} is anonymous")
        except MappingError as exc:
            self.counters[ProxyCounter.UNUSABLE] += 1
            log.warning("aaa_proxy_accept_unusable mac=%s reason=%s", forwarded.mac, exc)
            return ACCESS_REJECT
        self.counters[ProxyCounter.ACCEPT] += 1
        now = self._clock()
        names = checked.attributes.get(USER_NAME, [])
        try:
            user = names[0].decode("utf-8") if len(names) == 1 else None
        except UnicodeDecodeError:
            user = None
        key = (forwarded.mac, user)
        self._accepted[key] = (now, profile)
        self._accepted.move_to_end(key)
        began = self._first_request.pop(forwarded.mac, None)
        if began is not None:
            self.durations[forwarded.mac] = now - began
            if len(self.durations) > MAX_ACCEPTED:
                self.durations.pop(next(iter(self.durations)))
        return ACCESS_ACCEPT


def listen_address(text: str) -> tuple[str, int]:
    """``127.0.0.1:18121`` or ``[::1]:18121``."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    (IPv6Address if ":" in host else IPv4Address)(host)
    return host, int(port)
