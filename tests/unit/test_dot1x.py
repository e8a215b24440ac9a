"""802.1X without sockets: the gated access links, the core's authorization, hostapd's event
texts, and the RADIUS proxy's packet work (requests verified and re-signed, replies re-signed,
MS-MPPE keys re-encrypted, an Accept without a real NAI refused).

The RADIUS proxy is driven through its datagram handlers with recording transports: no socket
is opened. Replies are made with pyrad's server side, as a real server makes them, and the
proxy's own output is checked with the RADIUS client's reply check (tests/unit and the
netns tests run it against hostapd and FreeRADIUS)."""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from pyrad.packet import AccessAccept, AccessReject, AuthPacket

from router.adapters.hostapd import AuthEvent, parse_event, sta_user_name
from router.adapters.radius import (
    MESSAGE_AUTHENTICATOR,
    USER_NAME,
    RadiusConfig,
    RadiusServer,
    check_reply,
    dictionary,
)
from router.adapters.radius_proxy import (
    ACCESS_REQUEST,
    CALLING_STATION_ID,
    EAP_MESSAGE,
    MICROSOFT,
    MS_MPPE_RECV_KEY,
    VENDOR_SPECIFIC,
    ProxyConfig,
    RadiusProxy,
    anonymous,
    attributes,
    request_verifies,
    salt_decrypt,
    salt_encrypt,
    sign_request,
)
from router.core.actions import AAARequest, Bind, SendMH, Unbind
from router.core.dmpa import Profile, State
from router.wire.dhcp import DhcpMessageType
from router.wire.ethernet import EthernetFrame, MacAddress
from tests.netns.access_helpers import (
    DLMAP,
    GATEWAY,
    HOA,
    MS,
    PSEUDO,
    arp_frame,
    dhcp_client,
    dhcp_frame,
    grant,
    ping_frame,
    stack,
)

HOSTAPD_SECRET = b"hostapd-secret-0123456789"
UPSTREAM_SECRET = b"upstream-secret-0123456789"
UPSTREAM = RadiusServer(IPv6Address("2001:db8:100::1"), UPSTREAM_SECRET)
NAI = "alice@home.example"
PROFILE = Profile(NAI, "dhcp", DLMAP)


# --- the gated access link (services) and the core's authorization --------------------------


def gated_stack() -> tuple[Any, Any]:
    node, dispatch = stack()
    dispatch.gated = frozenset({0})
    return node, dispatch


def test_a_gated_link_serves_nothing_to_a_mac_not_authorized_there() -> None:
    node, dispatch = gated_stack()
    for frame in (
        arp_frame(MS, HOA, GATEWAY),
        dhcp_frame(MS, dhcp_client(DhcpMessageType.DISCOVER, MS)),
        ping_frame(MS, HOA, GATEWAY),
    ):
        assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == []
    assert MS not in node.visitors  # no attach, no AAA request
    assert dispatch.counters["auth.unauthorized"] == 3
    assert dispatch.associated(MS, 0, 1.0) == []  # an association is no authorization


def test_authorization_makes_the_visitor_with_the_profile_and_announces_the_gateway() -> None:
    node, dispatch = gated_stack()
    actions = dispatch.authorized(MS, 0, PROFILE, 1.0, 1e9)
    visitor = node.visitors[MS]
    assert visitor.nai == NAI and visitor.state is State.WAIT_ADDRESS and visitor.link == 0
    assert not any(isinstance(a, AAARequest) for a in actions)  # EAP was the authentication
    announced = [EthernetFrame.decode(a.frame) for a in actions if hasattr(a, "frame")]
    assert [f.dst for f in announced] == [MS] and announced[0].src == PSEUDO
    # Now it is served: its DISCOVER goes to the DHCP service (relayed to the DLMAP).
    served = dispatch.receive_frame(
        dhcp_frame(MS, dhcp_client(DhcpMessageType.DISCOVER, MS)), 0, 2.0, 1e9
    )
    assert served and dispatch.counters["auth.unauthorized"] == 0


def test_the_same_mac_on_another_gated_link_is_not_served() -> None:
    node, dispatch = gated_stack()
    dispatch.gated = frozenset({0, 1})
    dispatch.authorized(MS, 0, PROFILE, 1.0, 1e9)
    assert dispatch.receive_frame(arp_frame(MS, HOA, GATEWAY), 1, 2.0, 1e9) == []
    assert node.visitors[MS].link == 0  # the copy did not move the visitor
    assert dispatch.counters["auth.unauthorized"] == 1


def test_failure_or_deauthentication_detaches_and_deregisters() -> None:
    node, dispatch = gated_stack()
    dispatch.authorized(MS, 0, Profile(NAI, "static", DLMAP, HOA), 1.0, 1e9)
    grant(node, MS, HOA, 1.1)
    assert node.visitors[MS].state is State.REGISTERED
    assert dispatch.deauthorized(MS, 1, 2.0, 1e9) == []  # another link's report: not this one
    actions = dispatch.deauthorized(MS, 0, 2.0, 1e9)
    assert Unbind(HOA) in actions
    pbu = next(a.message for a in actions if isinstance(a, SendMH))
    assert pbu.lifetime == 0  # type: ignore[attr-defined]
    assert node.visitors[MS].state is State.DEREGISTERING


def test_reauthentication_keeps_the_registration_and_a_port_move_rebinds() -> None:
    node, dispatch = gated_stack()
    dispatch.gated = frozenset({0, 1})
    dispatch.authorized(MS, 0, Profile(NAI, "static", DLMAP, HOA), 1.0, 1e9)
    grant(node, MS, HOA, 1.1)
    again = node.authorized(MS, 0, Profile(NAI, "static", DLMAP, HOA), 2.0, 1e9)
    assert [a.kind for a in again] == ["reauthorized"]  # type: ignore[attr-defined]
    gateway = node.visitors[MS].gateway  # what the PBA's Bind carried: the move keeps it
    moved = node.authorized(MS, 1, Profile(NAI, "static", DLMAP, HOA), 3.0, 1e9)
    assert Unbind(HOA) in moved and Bind(HOA, DLMAP, MS, 1, gateway) in moved
    assert node.visitors[MS].link == 1
    assert node.visitors[MS].state is State.REGISTERED


def test_another_nai_on_the_same_mac_deregisters_the_first() -> None:
    node, _ = gated_stack()
    node.authorized(MS, 0, Profile(NAI, "static", DLMAP, HOA), 1.0, 1e9)
    grant(node, MS, HOA, 1.1)
    actions = node.authorized(MS, 0, Profile("bob@home.example", "dhcp", DLMAP), 2.0, 1e9)
    assert Unbind(HOA) in actions
    assert node.visitors[MS].state is State.DEREGISTERING  # bob waits for its next success


# --- hostapd's events ----------------------------------------------------------------------


def test_hostapd_event_texts() -> None:
    mac = MacAddress.parse("02:4e:4c:00:00:01")
    assert parse_event(b"<3>CTRL-EVENT-EAP-SUCCESS2 02:4e:4c:00:00:01") == (AuthEvent.SUCCESS, mac)
    assert parse_event(b"<3>CTRL-EVENT-EAP-FAILURE2 02:4e:4c:00:00:01") == (AuthEvent.FAILURE, mac)
    assert parse_event(b"<3>AP-STA-DISCONNECTED 02:4e:4c:00:00:01\n") == (
        AuthEvent.DISCONNECTED,
        mac,
    )
    assert parse_event(b"<3>AP-STA-CONNECTED 02:4e:4c:00:00:01") is None
    assert parse_event(b"<3>CTRL-EVENT-EAP-SUCCESS2") == "malformed"
    assert parse_event(b"<3>CTRL-EVENT-EAP-SUCCESS2 not-a-mac") == "malformed"
    assert parse_event(b"\xff\xfe<3") is None
    assert parse_event(b"PONG") is None


# --- the RADIUS proxy ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


def proxy(dlmap: IPv6Address | None = None) -> tuple[RadiusProxy, Recorder, Recorder]:
    from router.adapters import radius_proxy as rp

    upstream = RadiusConfig((UPSTREAM,), "dmpa1", default_dlmap=dlmap)
    made = RadiusProxy(ProxyConfig(("127.0.0.1", 18121), HOSTAPD_SECRET, upstream), lambda: 5.0)
    to_hostapd, to_server = Recorder(), Recorder()
    listener = rp._Listener(made)
    listener.transport = to_hostapd  # type: ignore[assignment]
    made._listener = listener
    up = rp._Upstream(made, UPSTREAM)
    up.transport = to_server  # type: ignore[assignment]
    made._upstreams.append(up)
    return made, to_hostapd, to_server


HOSTAPD = ("127.0.0.1", 40000)
STATION = b"02-4E-4C-00-00-01"


def hostapd_request(ident: int = 7, *, secret: bytes = HOSTAPD_SECRET) -> bytes:
    """An Access-Request as hostapd sends one: outer identity, Calling-Station-Id, EAP."""
    return sign_request(
        ident,
        [
            (USER_NAME, b"anonymous@home.example"),
            (CALLING_STATION_ID, STATION),
            (EAP_MESSAGE, b"\x02\x01\x00\x1b\x01anonymous@home.example"),
        ],
        secret,
    )


def server_reply(request: bytes, code: int, eap: bytes | None = None, **attrs: Any) -> bytes:
    """The upstream server's reply to the request the proxy forwarded (pyrad's server side;
    its dictionary has no EAP-Message: that one is added and the reply signed again)."""
    packet = AuthPacket(secret=UPSTREAM_SECRET, dict=dictionary(), packet=request)
    reply = packet.CreateReply()
    reply.code = code
    reply.add_message_authenticator()
    for name, value in attrs.items():
        reply[name.replace("_", "-")] = value
    raw: bytes = reply.ReplyPacket()
    if eap is not None:
        raw = _append(raw, EAP_MESSAGE, eap, request[4:20], UPSTREAM_SECRET)
    return raw


def test_a_request_is_verified_and_forwarded_with_a_new_identity_and_signature() -> None:
    made, _, to_server = proxy()
    request = hostapd_request()
    made._request(request, HOSTAPD)
    made._request(request, HOSTAPD)  # hostapd's retransmission: the same bytes upstream
    assert len(to_server.sent) == 2 and to_server.sent[0][0] == to_server.sent[1][0]
    forwarded = to_server.sent[0][0]
    assert forwarded[4:20] != request[4:20]  # a fresh Request Authenticator
    assert request_verifies(forwarded, UPSTREAM_SECRET)
    assert not request_verifies(forwarded, HOSTAPD_SECRET)
    kept = [a for a in attributes(forwarded) or [] if a[0] != MESSAGE_AUTHENTICATOR]
    assert kept == [a for a in attributes(request) or [] if a[0] != MESSAGE_AUTHENTICATOR]
    assert made.counters["requests"] == 1 and made.counters["retransmissions"] == 1


def test_unauthentic_or_malformed_requests_are_dropped_and_counted() -> None:
    made, _, to_server = proxy()
    made._request(hostapd_request(secret=b"another-secret-0123456"), HOSTAPD)
    made._request(b"\x01\x02\x00\x05", HOSTAPD)
    unsigned = bytearray(hostapd_request())
    unsigned[0] = 4  # an Accounting-Request
    made._request(bytes(unsigned), HOSTAPD)
    no_station = sign_request(3, [(USER_NAME, b"x@y")], HOSTAPD_SECRET)
    made._request(no_station, HOSTAPD)
    assert to_server.sent == []
    assert made.counters["drop_bad_message_authenticator"] == 1
    assert made.counters["drop_malformed"] == 1
    assert made.counters["drop_not_request"] == 1
    assert made.counters["drop_no_calling_station"] == 1


def _accept(made: RadiusProxy, to_server: Recorder, **attrs: Any) -> bytes:
    forwarded = to_server.sent[-1][0]
    reply = server_reply(forwarded, AccessAccept, b"\x03\x01\x00\x04", **attrs)
    made._reply(made._upstreams[0], reply)
    return reply


def test_an_accept_gives_the_inner_nai_and_profile_and_goes_back_signed_for_hostapd() -> None:
    made, to_hostapd, to_server = proxy()
    request = hostapd_request()
    made._request(request, HOSTAPD)
    _accept(
        made,
        to_server,
        User_Name=NAI,
        PMIP6_Home_LMA_IPv6_Address="2001:db8:100::1",
        Framed_IP_Address="255.255.255.254",
    )
    [(answer, addr)] = to_hostapd.sent
    assert addr == HOSTAPD and answer[0] == AccessAccept and answer[1] == request[1]
    checked = check_reply(answer, request[4:20], HOSTAPD_SECRET)
    assert not isinstance(checked, str), checked
    assert checked.attributes[USER_NAME] == [NAI.encode()]
    mac = MacAddress.parse(STATION.decode())
    assert made.take(mac, "bob@home.example") is None  # hostapd names another user
    assert made.take(mac, NAI) == Profile(NAI, "dhcp", IPv6Address("2001:db8:100::1"))
    assert made.take(mac, NAI) is None  # once
    assert made.durations[mac] == 0.0  # first request to Accept, on the proxy's clock


@pytest.mark.parametrize(
    ("attrs", "why"),
    [
        ({}, "no NAI in the Accept: the outer identity is never used"),
        ({"User_Name": "anonymous@home.example"}, "an anonymous NAI"),
        ({"User_Name": "@home.example"}, "an anonymous NAI (RFC 7542 2.4)"),
    ],
)
def test_an_accept_without_a_real_nai_becomes_a_reject_with_an_eap_failure(
    attrs: dict[str, str], why: str
) -> None:
    made, to_hostapd, to_server = proxy(dlmap=IPv6Address("2001:db8:100::1"))
    request = hostapd_request()
    made._request(request, HOSTAPD)
    _accept(made, to_server, **attrs)
    [(answer, _)] = to_hostapd.sent
    checked = check_reply(answer, request[4:20], HOSTAPD_SECRET)
    assert not isinstance(checked, str) and checked.code == AccessReject, why
    assert checked.attributes[EAP_MESSAGE] == [b"\x04\x01\x00\x04"]  # EAP-Failure
    assert made.take(MacAddress.parse(STATION.decode())) is None
    assert made.counters["unusable"] == 1


def test_a_reject_and_a_forged_reply_are_handled() -> None:
    made, to_hostapd, to_server = proxy()
    request = hostapd_request()
    made._request(request, HOSTAPD)
    forged = bytearray(server_reply(to_server.sent[-1][0], AccessAccept, User_Name=NAI))
    forged[-1] ^= 1
    made._reply(made._upstreams[0], bytes(forged))
    assert to_hostapd.sent == [] and made.counters["drop_reply"] == 1
    reject = server_reply(to_server.sent[-1][0], AccessReject, b"\x04\x01\x00\x04")
    made._reply(made._upstreams[0], reject)
    [(answer, _)] = to_hostapd.sent
    assert not isinstance(check_reply(answer, request[4:20], HOSTAPD_SECRET), str)
    assert answer[0] == AccessReject and made.counters["reject"] == 1
    made._reply(made._upstreams[0], reject)  # nothing waits for it any more
    assert made.counters["drop_unknown_reply"] == 1


def test_mppe_keys_are_decrypted_and_encrypted_again_for_hostapd() -> None:
    key = os.urandom(32)
    authenticator = os.urandom(16)
    sealed = salt_encrypt(key, UPSTREAM_SECRET, authenticator)
    assert sealed[0] & 0x80 and len(sealed) == 2 + 48
    assert salt_decrypt(sealed, UPSTREAM_SECRET, authenticator) == key
    assert salt_decrypt(sealed, HOSTAPD_SECRET, authenticator) != key

    made, to_hostapd, to_server = proxy(dlmap=IPv6Address("2001:db8:100::1"))
    request = hostapd_request()
    made._request(request, HOSTAPD)
    forwarded = to_server.sent[-1][0]
    value = struct.pack("!IBB", MICROSOFT, MS_MPPE_RECV_KEY, 2 + 50)
    value += salt_encrypt(key, UPSTREAM_SECRET, forwarded[4:20])
    reply = server_reply(forwarded, AccessAccept, User_Name=NAI)
    reply = _append(reply, VENDOR_SPECIFIC, value, forwarded[4:20], UPSTREAM_SECRET)
    made._reply(made._upstreams[0], reply)
    [(answer, _)] = to_hostapd.sent
    assert answer[0] == AccessAccept
    vsa = next(v for t, v in attributes(answer) or [] if t == VENDOR_SPECIFIC)
    assert salt_decrypt(vsa[6:], HOSTAPD_SECRET, request[4:20]) == key


def _append(packet: bytes, code: int, value: bytes, request_auth: bytes, secret: bytes) -> bytes:
    """Add an attribute to a signed reply and sign it again (Message-Authenticator first)."""
    body = packet[20:] + struct.pack("!BB", code, len(value) + 2) + value
    head = struct.pack("!BBH", packet[0], packet[1], 20 + len(body))
    offset = next(
        20 + sum(len(v) + 2 for _, v in (attributes(packet) or [])[:i])
        for i, (t, _) in enumerate(attributes(packet) or [])
        if t == MESSAGE_AUTHENTICATOR
    )
    unsigned = head + request_auth + body
    unsigned = unsigned[: offset + 2] + bytes(16) + unsigned[offset + 18 :]
    mac = hmac.new(secret, unsigned, hashlib.md5).digest()
    signed = unsigned[: offset + 2] + mac + unsigned[offset + 18 :]
    response = hashlib.md5(signed[:4] + request_auth + signed[20:] + secret).digest()
    return signed[:4] + response + signed[20:]


def test_one_mac_accepted_twice_at_once_each_success_takes_its_own_profile() -> None:
    made, _, to_server = proxy(dlmap=IPv6Address("2001:db8:100::1"))
    for ident, user in ((7, NAI), (8, "mallory@home.example")):
        made._request(hostapd_request(ident), HOSTAPD)
        _accept(made, to_server, User_Name=user)
    mac = MacAddress.parse(STATION.decode())
    taken = made.take(mac, NAI)
    assert taken is not None and taken.nai == NAI
    other = made.take(mac, "mallory@home.example")
    assert other is not None and other.nai == "mallory@home.example"
    # An Accept naming the user by Mobile-Node-Identifier only is found by its MAC.
    made._request(hostapd_request(9), HOSTAPD)
    _accept(made, to_server, Mobile_Node_Identifier=NAI.encode())
    only = made.take(mac, "anonymous@home.example")
    assert only is not None and only.nai == NAI


def test_hostapd_sta_answers() -> None:
    reply = b"02:4e:4c:00:00:01\nflags=[AUTH]\ndot1xAuthSessionUserName=alice@home.example\n"
    assert sta_user_name(reply) == (MacAddress.parse("02:4e:4c:00:00:01"), NAI)
    assert sta_user_name(b"02:4e:4c:00:00:01\nflags=[AUTH]\n") == (
        MacAddress.parse("02:4e:4c:00:00:01"),
        None,
    )
    assert sta_user_name(b"FAIL\n") is None and sta_user_name(b"") is None


def test_anonymous_identities() -> None:
    assert anonymous("anonymous@home.example") and anonymous("@home.example")
    assert anonymous("Anonymous@x") and anonymous("anonymous")
    assert not anonymous("alice@home.example") and not anonymous("anonymousalice@x")
    assert ACCESS_REQUEST == 1 and IPv4Address("0.0.0.0")  # the module's codes are RFC 2865's
