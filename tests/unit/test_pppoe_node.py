"""The DMPA node's PPPoE wiring (router/app/pppoe_links.py) in memory: a PPPoE link's frames
reach its server, PAP/CHAP credentials are checked against the local profile's password, the
accepted MS is registered (PBU), the PBA's binding starts IPCP with the HoA and gives the
fastpath its session, session IPv4 is tunnelled, and a PADT de-registers it. The client is
scapy's codec; the DLMAP's PBA is stood in for by the Bind it causes."""

from __future__ import annotations

import asyncio
import hashlib
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.layers.ppp import (
    PPP,
    PPP_CHAP,
    PPP_IPCP,
    PPP_CHAP_ChallengeResponse,
    PPP_IPCP_Option_DNS1,
    PPP_IPCP_Option_IPAddress,
    PPP_LCP_Configure,
    PPP_LCP_Magic_Number_Option,
    PPP_PAP_Request,
    PPP_PAP_Response,
    PPPoE,
    PPPoED,
    PPPoED_Tags,
    PPPoETag,
)

from fastpath import Punt, Reason, Verdict
from router.adapters.aaa import AAA, AAAConfig
from router.adapters.store import Store
from router.app.config import loads
from router.app.dmpa_node import DMPANode, DMPAPorts
from router.app.settings import DMPASettings
from router.core.actions import Bind, SendFrame
from router.core.dmpa import State
from tests.unit.nodes import DLMAP, DMPA_INI, MAC, NAI, FakeClock

SECRET = "alice-ppp-secret"
HOA = IPv4Address("192.0.2.150")
DNS = "198.51.100.53"
PSEUDO = "02:00:5e:00:00:01"


def node(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, ppp_auth: str, profile_dns: str = ""
) -> tuple[DMPANode, list[Any]]:
    extra = f"dns = {profile_dns}\n" if profile_dns else ""
    text = DMPA_INI.replace(f"mac = {MAC}\n", f"mode = dlmap\npassword = {SECRET}\n{extra}")
    text = text.replace("tunnel_mtu = 1500\n", f"tunnel_mtu = 1500\ndns = {DNS}\n")
    text += f"\n[access eth1]\nauth = pppoe\nppp_auth = {ppp_auth}\n"
    settings, _ = loads(text)
    assert isinstance(settings, DMPASettings)
    sent_mh: list[Any] = []
    ports = DMPAPorts(lambda data, dst: sent_mh.append((data, dst)), None, -1, -1)
    aaa = AAA(AAAConfig(profiles=settings.profiles))
    made = DMPANode(
        settings, ports, Store(tmp_path / "m1.sqlite"), aaa, loop, FakeClock(), fastpath="reference"
    )
    frames: list[Any] = []
    made.runner.handlers[SendFrame] = lambda action: frames.append(Ether(action.frame))
    return made, frames


def feed(n: DMPANode, loop: asyncio.AbstractEventLoop, packet: Any) -> None:
    data = bytes(packet)
    out = bytearray(2048)
    verdict, reason, _, _ = n.fastpath.from_access(data, 0, out)
    assert (verdict, reason) == (Verdict.PUNT, Reason.ARP)  # the fastpath punts PPPoE here
    now, wall = n.clock.now(), n.clock.wall()
    punt = Punt(reason, 0, MAC.packed, data)
    n.runner.submit(n.pppoe.punted(punt, now, wall, n.punts.from_access))
    turn(loop)


def turn(loop: asyncio.AbstractEventLoop) -> None:
    for _ in range(5):  # the runner's flushes and the AAA task
        loop.run_until_complete(asyncio.sleep(0))


def ms(session: int = 0, proto: int | None = None) -> Any:
    head = Ether(src=str(MAC), dst=PSEUDO)
    return head / PPPoE(sessionid=session) / PPP(proto=proto) if proto else head


def take(frames: list[Any]) -> list[Any]:
    out = list(frames)
    frames.clear()
    return out


def session_up_to_auth(
    n: DMPANode, loop: asyncio.AbstractEventLoop, frames: list[Any]
) -> tuple[int, Any]:
    padi = (
        Ether(src=str(MAC), dst="ff:ff:ff:ff:ff:ff")
        / PPPoED(code=0x09)
        / PPPoED_Tags(tag_list=[PPPoETag(tag_type=0x0101)])
    )
    feed(n, loop, padi)
    [pado] = take(frames)
    cookie = {t.tag_type: bytes(t.tag_value) for t in pado[PPPoED_Tags].tag_list}[0x0104]
    padr = (
        ms()
        / PPPoED(code=0x19)
        / PPPoED_Tags(
            tag_list=[PPPoETag(tag_type=0x0101), PPPoETag(tag_type=0x0104, tag_value=cookie)]
        )
    )
    feed(n, loop, padr)
    pads, request = take(frames)
    session = pads[PPPoED].sessionid
    ours = ms(session, 0xC021) / PPP_LCP_Configure(
        code=1, id=1, options=[PPP_LCP_Magic_Number_Option(magic_number=7)]
    )
    feed(n, loop, ours)
    conf = request[PPP_LCP_Configure]
    feed(n, loop, ms(session, 0xC021) / PPP_LCP_Configure(code=2, id=conf.id, options=conf.options))
    return session, take(frames)


@pytest.mark.parametrize(
    ("ppp_auth", "profile_dns"), [("pap", ""), ("chap", ""), ("pap", "203.0.113.53")]
)
def test_a_pppoe_ms_is_authenticated_registered_given_its_hoa_and_deregistered(
    tmp_path: Path, loop: asyncio.AbstractEventLoop, ppp_auth: str, profile_dns: str
) -> None:
    """IPCP gives the HoA of the PBA and the DNS server of the MS's profile, else dmpa.dns."""
    n, frames = node(tmp_path, loop, ppp_auth, profile_dns)
    session, after_lcp = session_up_to_auth(n, loop, frames)
    if ppp_auth == "pap":
        feed(
            n,
            loop,
            ms(session, 0xC023)
            / PPP_PAP_Request(id=3, username=NAI.encode(), password=SECRET.encode()),
        )
        [ack] = take(frames)
        assert ack[PPP_PAP_Response].code == 2
    else:
        chap = after_lcp[-1][PPP_CHAP_ChallengeResponse]
        response = hashlib.md5(bytes([chap.id]) + SECRET.encode() + bytes(chap.value)).digest()
        feed(
            n,
            loop,
            ms(session, 0xC223)
            / PPP_CHAP_ChallengeResponse(
                code=2, id=chap.id, value=response, optional_name=NAI.encode()
            ),
        )
        [success] = [f for f in take(frames) if PPP_CHAP in f]
        assert success[PPP_CHAP].code == 3
    visitor = n.core.visitor(MAC)
    assert visitor is not None and visitor.nai == NAI and visitor.state is State.REGISTERING
    # The PBA: the core's Bind for the MS (a PPPoE MS is bound in the user-space tier).
    n.runner.submit([Bind(HOA, DLMAP, MAC, 0)])
    turn(loop)
    [ipcp] = take(frames)
    assert ipcp[PPP_IPCP].code == 1 and ipcp[PPP_IPCP].options[0].data == "192.0.2.1"
    ask = PPP_IPCP(
        code=1,
        id=1,
        options=[PPP_IPCP_Option_IPAddress(data="0.0.0.0"), PPP_IPCP_Option_DNS1(data="0.0.0.0")],
    )
    feed(n, loop, ms(session, 0x8021) / ask)
    [nak] = take(frames)
    assert [o.data for o in nak[PPP_IPCP].options] == [str(HOA), profile_dns or DNS]
    # session IPv4 of the bound MS is tunnelled; downlink gets the session's header back
    ping = ms(session, 0x0021) / IP(src=str(HOA), dst="198.51.100.2") / ICMP()
    out = bytearray(2048)
    verdict, _, length, _ = n.fastpath.from_access(bytes(ping), 0, out)
    assert verdict == Verdict.FORWARD and IP(bytes(out[40:length])).dst == "198.51.100.2"
    reply = bytes(IP(src="198.51.100.2", dst=str(HOA)) / ICMP(type=0))
    verdict, _, length, link = n.fastpath.from_tunnel(DLMAP.packed, reply, out)
    assert verdict == Verdict.FORWARD and link == 0
    down = Ether(bytes(out[:length]))
    assert down[PPPoE].sessionid == session and down[ICMP].type == 0
    # PADT: the session ends and the MS is detached (a PBU went out: de-registering)
    feed(n, loop, ms() / PPPoED(code=0xA7, sessionid=session))
    visitor = n.core.visitor(MAC)
    assert visitor is not None and visitor.state is State.DEREGISTERING
    assert n.pppoe.current == {}
    n.pppoe.close()
    n.store.close()


def test_a_wrong_password_gets_no_registration(
    tmp_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    n, frames = node(tmp_path, loop, "pap")
    session, _ = session_up_to_auth(n, loop, frames)
    feed(
        n,
        loop,
        ms(session, 0xC023) / PPP_PAP_Request(id=3, username=NAI.encode(), password=b"wrong"),
    )
    nak = take(frames)[0]
    assert nak[PPP_PAP_Response].code == 3
    assert n.core.visitor(MAC) is None
    assert n.pppoe.counters["ppp.auth_reject"] == 1
    n.store.close()
