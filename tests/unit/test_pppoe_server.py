"""The PPPoE server's protocol machine (router/services/pppoe.py) against a client written with
scapy's codec (not ours): discovery, LCP, CHAP-MD5 and PAP, IPCP with the home address and
DNS, echoes, and every way a session ends."""

from __future__ import annotations

import hashlib
import os
from ipaddress import IPv4Address
from typing import Any

from scapy.layers.l2 import Ether
from scapy.layers.ppp import (
    PPP,
    PPP_CHAP,
    PPP_IPCP,
    PPP_LCP,
    PPP_CHAP_ChallengeResponse,
    PPP_IPCP_Option_DNS1,
    PPP_IPCP_Option_IPAddress,
    PPP_LCP_Configure,
    PPP_LCP_Echo,
    PPP_LCP_Magic_Number_Option,
    PPP_LCP_MRU_Option,
    PPP_PAP_Request,
    PPPoE,
    PPPoED,
    PPPoED_Tags,
    PPPoETag,
)

from router.core.actions import SendFrame
from router.services.pppoe import (
    ECHO_FAILURES,
    ECHO_INTERVAL,
    Authenticate,
    PPPoEConfig,
    PPPoEServer,
    SessionDown,
    SessionUp,
    chap_md5,
)
from router.wire.ethernet import EthernetFrame, MacAddress

AC = MacAddress.parse("02:00:5e:00:00:01")
MS = MacAddress.parse("02:4e:4c:00:00:01")
NAI = "alice@home.example"
SECRET = b"alice-secret"
HOA = IPv4Address("192.0.2.100")
DNS = IPv4Address("198.51.100.53")


def server(auth: str = "chap") -> PPPoEServer:
    config = PPPoEConfig(AC, "dmpa1", IPv4Address("192.0.2.1"), auth, b"k" * 16, (DNS,))
    return PPPoEServer(config, os.urandom)


def feed(srv: PPPoEServer, packet: Any, now: float = 0.0) -> list[Any]:
    return srv.receive(EthernetFrame.decode(bytes(packet)), 0, now)


def sent(outputs: list[Any]) -> list[Any]:
    """What went out on the wire, decoded by scapy."""
    return [Ether(o.frame) for o in outputs if isinstance(o, SendFrame)]


def code(frame: Any) -> int:
    """The code of the PPP packet in a session frame (whatever scapy class decoded it)."""
    return int(frame[PPP].payload.code)


def ms(session: int = 0, proto: int | None = None) -> Any:
    head = Ether(src=str(MS), dst=str(AC))
    return head / PPPoE(sessionid=session) / PPP(proto=proto) if proto else head


def discover(srv: PPPoEServer) -> tuple[int, Any]:
    """PADI -> PADO -> PADR -> PADS (+ the server's LCP Configure-Request)."""
    padi = (
        Ether(src=str(MS), dst="ff:ff:ff:ff:ff:ff")
        / PPPoED(code=0x09)
        / PPPoED_Tags(
            tag_list=[PPPoETag(tag_type=0x0101), PPPoETag(tag_type=0x0103, tag_value=b"hu")]
        )
    )
    [pado] = sent(feed(srv, padi))
    assert pado.dst == str(MS) and pado.src == str(AC) and pado[PPPoED].code == 0x07
    tags = {t.tag_type: bytes(t.tag_value) for t in pado[PPPoED_Tags].tag_list}
    assert tags[0x0102] == b"dmpa1" and tags[0x0103] == b"hu" and len(tags[0x0104]) == 16
    padr = (
        ms()
        / PPPoED(code=0x19)
        / PPPoED_Tags(
            tag_list=[PPPoETag(tag_type=0x0101), PPPoETag(tag_type=0x0104, tag_value=tags[0x0104])]
        )
    )
    pads, request = sent(feed(srv, padr))
    assert pads[PPPoED].code == 0x65 and pads[PPPoED].sessionid != 0
    return pads[PPPoED].sessionid, request


def open_lcp(srv: PPPoEServer, session: int, request: Any) -> list[Any]:
    conf = request[PPP_LCP_Configure]
    by_type = {o.type: o for o in conf.options}
    assert by_type[1].max_recv_unit == 1492 and 5 in by_type
    ours = ms(session, 0xC021) / PPP_LCP_Configure(
        code=1,
        id=1,
        options=[
            PPP_LCP_MRU_Option(max_recv_unit=1492),
            PPP_LCP_Magic_Number_Option(magic_number=9),
        ],
    )
    [ack] = sent(feed(srv, ours))
    assert ack[PPP_LCP_Configure].code == 2
    reply = ms(session, 0xC021) / PPP_LCP_Configure(code=2, id=conf.id, options=conf.options)
    return feed(srv, reply)


def open_ipcp(srv: PPPoEServer, session: int) -> list[Any]:
    [request] = sent(srv.address(0, MS, session, HOA))
    assert request[PPP_IPCP].options[0].data == "192.0.2.1"
    ask = ms(session, 0x8021) / PPP_IPCP(
        code=1,
        id=1,
        options=[PPP_IPCP_Option_IPAddress(data="0.0.0.0"), PPP_IPCP_Option_DNS1(data="0.0.0.0")],
    )
    [nak] = sent(feed(srv, ask))
    assert nak[PPP_IPCP].code == 3
    assert [o.data for o in nak[PPP_IPCP].options] == [str(HOA), str(DNS)]
    again = ms(session, 0x8021) / PPP_IPCP(
        code=1,
        id=2,
        options=[PPP_IPCP_Option_IPAddress(data=str(HOA)), PPP_IPCP_Option_DNS1(data=str(DNS))],
    )
    [ack] = sent(feed(srv, again))
    assert ack[PPP_IPCP].code == 2
    reply = ms(session, 0x8021) / PPP_IPCP(
        code=2, id=request[PPP_IPCP].id, options=request[PPP_IPCP].options
    )
    return feed(srv, reply)


def test_chap_session_from_discovery_to_ipcp_and_echo_liveness() -> None:
    srv = server("chap")
    session, request = discover(srv)
    out = open_lcp(srv, session, request)
    [challenge] = sent(out)
    chap = challenge[PPP_CHAP_ChallengeResponse]
    assert chap.code == 1 and len(chap.value) == 16 and chap.optional_name == b"dmpa1"
    response = chap_md5(chap.id, SECRET, bytes(chap.value))
    assert response == hashlib.md5(bytes([chap.id]) + SECRET + bytes(chap.value)).digest()
    answer = ms(session, 0xC223) / PPP_CHAP_ChallengeResponse(
        code=2, id=chap.id, value=response, optional_name=NAI.encode()
    )
    [asked] = feed(srv, answer)
    assert isinstance(asked, Authenticate) and asked.nai == NAI
    assert asked.chap == (chap.id, bytes(chap.value), response) and asked.password is None
    [success] = sent(srv.auth_result(0, MS, session, True))
    assert success[PPP_CHAP].code == 3
    up = open_ipcp(srv, session)
    assert up == [SessionUp(0, MS, session, NAI, HOA)]
    # The MS's echoes are answered; ours go unanswered until the session ends.
    [reply] = sent(feed(srv, ms(session, 0xC021) / PPP_LCP_Echo(code=9, id=5, magic_number=9)))
    assert reply[PPP_LCP_Echo].code == 10 and reply[PPP_LCP_Echo].id == 5
    now, downs = 0.0, []
    for _ in range(ECHO_FAILURES + 2):
        now += ECHO_INTERVAL + 0.1
        outputs = srv.handle_timer(now)
        downs += [o for o in outputs if isinstance(o, SessionDown)]
    assert downs == [SessionDown(0, MS, session, NAI, "echo unanswered")]
    assert srv.sessions == {}


def test_pap_with_a_wrong_password_is_refused_and_the_session_ends() -> None:
    srv = server("pap")
    session, request = discover(srv)
    assert open_lcp(srv, session, request) == []  # PAP: the MS speaks first
    pap = ms(session, 0xC023) / PPP_PAP_Request(id=7, username=NAI.encode(), password=b"wrong")
    [asked] = feed(srv, pap)
    assert isinstance(asked, Authenticate) and asked.password == b"wrong" and asked.nai == NAI
    outputs = srv.auth_result(0, MS, session, False)
    nak, terminate, padt = sent(outputs)
    assert (nak[PPP].proto, code(nak), nak[PPP].payload.id) == (0xC023, 3, 7)
    assert (terminate[PPP].proto, code(terminate)) == (0xC021, 5)
    assert padt[PPPoED].code == 0xA7 and padt[PPPoED].sessionid == session
    assert outputs[-1] == SessionDown(0, MS, session, NAI, "authentication failed")


def test_the_ms_ends_the_session_by_padt_or_terminate_request() -> None:
    for how in ("padt", "terminate"):
        srv = server("pap")
        session, request = discover(srv)
        open_lcp(srv, session, request)
        if how == "padt":
            out = feed(srv, ms() / PPPoED(code=0xA7, sessionid=session))
            assert out == [SessionDown(0, MS, session, None, "padt")]
        else:
            out = feed(srv, ms(session, 0xC021) / PPP_LCP(code=5, id=3))
            assert code(sent(out)[0]) == 6  # Terminate-Ack
            assert isinstance(out[-1], SessionDown)
        assert srv.sessions == {}


def test_discovery_refusals_and_garbage() -> None:
    srv = server()
    no_service = Ether(src=str(MS), dst="ff:ff:ff:ff:ff:ff") / PPPoED(code=0x09)
    assert feed(srv, no_service) == []
    forged = (
        ms()
        / PPPoED(code=0x19)
        / PPPoED_Tags(
            tag_list=[PPPoETag(tag_type=0x0101), PPPoETag(tag_type=0x0104, tag_value=b"x" * 16)]
        )
    )
    assert feed(srv, forged) == []
    stranger = ms(77, 0xC021) / PPP_LCP(code=9, id=1)
    assert feed(srv, stranger) == []
    garbage = EthernetFrame(AC, MS, 0x8864, b"\x11\x00\x00\x01\x00\xff")
    assert srv.receive(garbage, 0, 0.0) == []
    counters = dict(srv.counters)
    assert counters["pppoe.no_service_name"] == 1 and counters["pppoe.bad_cookie"] == 1
    assert counters["pppoe.unknown_session"] == 1 and counters["pppoe.malformed"] == 1


def test_an_unknown_protocol_is_protocol_rejected() -> None:
    srv = server()
    session, _ = discover(srv)
    [reject] = sent(feed(srv, ms(session, 0x80FD) / b"\x01\x01\x00\x04"))  # CCP
    assert (reject[PPP].proto, code(reject)) == (0xC021, 8)
