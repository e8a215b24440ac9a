"""PPPoE access links in both twins: discovery and PPP control are punted (reason ARP), a
bound MS's IPv4 in its session is decapsulated and tunnelled, downlink IPv4 for it is
encapsulated in its session (checked by scapy's codec); the twins agree on random and
malformed frames (hypothesis)."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.l2 import Ether
from scapy.layers.ppp import PPP, PPPoE

from fastpath.common import Reason, Verdict
from tests.fastpath.conftest import load
from tests.fastpath.packets import (
    BROADCAST,
    CN,
    DLMAP,
    DMPA,
    GATEWAY,
    HOA,
    HOA2,
    MS_MAC,
    PSEUDO_MAC,
    eth,
    ipv4,
)
from tests.fastpath.test_twins import inner_packets, likely, mutated

SESSION = 0x1234
PPPOE_LINK = 1
ETH_LEN = 14
IP_AT = 22


def engine(fp: ModuleType, mtu: int = 1460) -> Any:
    table = fp.HoaTable(64)
    table.bind(HOA, DLMAP, MS_MAC, link=PPPOE_LINK)
    table.bind(HOA2, DLMAP, MS_MAC, link=0)  # a plain link: Ethernet as before
    dm = fp.Dmpa(table, DMPA, PSEUDO_MAC, GATEWAY, tunnel_mtu=mtu, peers=[DLMAP])
    dm.pppoe_link(PPPOE_LINK)
    dm.pppoe_session(HOA, SESSION)
    return dm


def session_frame(
    ip: bytes, session: int = SESSION, protocol: int = 0x0021, dst: bytes = PSEUDO_MAC
) -> bytes:
    ppp = struct.pack("!BBHHH", 0x11, 0, session, len(ip) + 2, protocol) + ip
    return eth(ppp, dst=dst, src=MS_MAC, ethertype=0x8864)


def test_discovery_and_control_are_punted(fp: ModuleType) -> None:
    dm = engine(fp)
    out = bytearray(2048)
    padi = eth(bytes.fromhex("1109000000040101000000"), dst=BROADCAST, ethertype=0x8863)
    assert dm.from_access(padi, PPPOE_LINK, out)[:2] == (Verdict.PUNT, Reason.ARP)
    lcp = session_frame(bytes.fromhex("0101000a0506deadbeef"), protocol=0xC021)
    assert dm.from_access(lcp, PPPOE_LINK, out)[:2] == (Verdict.PUNT, Reason.ARP)
    # on a plain link the PPPoE EtherTypes stay unknown
    assert dm.from_access(padi, 0, out)[:2] == (Verdict.DROP, Reason.BAD_ETHERTYPE)
    dm.pppoe_link(PPPOE_LINK, False)
    assert dm.from_access(lcp, PPPOE_LINK, out)[:2] == (Verdict.DROP, Reason.BAD_ETHERTYPE)


def test_uplink_session_ipv4_is_decapsulated_and_tunnelled(fp: ModuleType) -> None:
    dm = engine(fp)
    ip = ipv4(HOA, CN, 1, b"\x08\x00\xf7\xff\x00\x00\x00\x00", ttl=64)
    out = bytearray(2048)
    v, reason, n, _ = dm.from_access(session_frame(ip), PPPOE_LINK, out)
    assert (v, reason, n) == (Verdict.FORWARD, Reason.FORWARDED, 40 + len(ip))
    assert out[6] == 4 and bytes(out[24:40]) == DLMAP
    inner = IP(bytes(out[40:n]))
    assert (inner.src, inner.dst, inner.ttl) == ("192.0.2.2", "203.0.113.1", 63)
    assert dm.table.lookup(HOA).packets == 1


def test_uplink_from_the_wrong_session_or_a_plain_frame_is_refused(fp: ModuleType) -> None:
    dm = engine(fp)
    ip = ipv4(HOA, CN, 17, bytes(12))
    out = bytearray(2048)
    for frame in (
        session_frame(ip, session=SESSION + 1),  # another session
        session_frame(ipv4(HOA2, CN, 17, bytes(12))),  # HOA2 is bound on the plain link
        session_frame(ipv4(CN, CN, 17, bytes(12))),  # not bound at all
    ):
        assert dm.from_access(frame, PPPOE_LINK, out)[:2] == (Verdict.DROP, Reason.SPOOFED_SRC)
    broadcast = session_frame(ip, dst=BROADCAST)
    assert dm.from_access(broadcast, PPPOE_LINK, out)[:2] == (Verdict.DROP, Reason.NOT_FOR_US)
    short = session_frame(ip)[:30]
    assert dm.from_access(short, PPPOE_LINK, out)[:2] == (Verdict.DROP, Reason.TRUNCATED)
    assert dm.counters()["uplink.spoofed_src"] == 3


def test_downlink_is_encapsulated_in_the_session(fp: ModuleType) -> None:
    dm = engine(fp)
    ip = ipv4(CN, HOA, 6, bytes(40), ttl=9, tos=0x02)
    out = bytearray(2048)
    v, reason, n, link = dm.from_tunnel(DLMAP, ip, out)
    assert (v, reason, n, link) == (Verdict.FORWARD, Reason.FORWARDED, IP_AT + len(ip), 1)
    frame = Ether(bytes(out[:n]))
    assert (frame.dst, frame.src, frame.type) == ("02:aa:bb:cc:dd:01", "02:00:00:00:00:01", 0x8864)
    assert frame[PPPoE].sessionid == SESSION and frame[PPPoE].len == len(ip) + 2
    assert frame[PPP].proto == 0x0021
    assert (frame[IP].src, frame[IP].dst, frame[IP].ttl) == ("203.0.113.1", "192.0.2.2", 8)
    # the IPv4 checksum after the TTL change, recomputed by scapy
    rebuilt = IP(bytes(frame[IP]))
    del rebuilt.chksum
    assert IP(bytes(rebuilt)).chksum == frame[IP].chksum
    # no session: nothing goes out on the PPPoE link
    dm.pppoe_session(HOA, 0)
    assert dm.from_tunnel(DLMAP, ip, out)[:2] == (Verdict.DROP, Reason.NO_BINDING)
    # the plain link's MS still gets Ethernet
    v, _, n, link = dm.from_tunnel(DLMAP, ipv4(CN, HOA2, 6, bytes(20)), out)
    assert v == Verdict.FORWARD and link == 0 and bytes(out[12:14]) == b"\x08\x00"


@st.composite
def pppoe_frames(draw: st.DrawFn) -> bytes:
    dst = likely(draw, PSEUDO_MAC, [BROADCAST, MS_MAC])
    src = likely(draw, MS_MAC, [PSEUDO_MAC])
    kind = likely(draw, 0x8864, [0x8863, 0x0800, 0x0806])
    ip = draw(inner_packets(src=draw(st.sampled_from([HOA, HOA, HOA2, CN]))))
    session = likely(draw, SESSION, [0, 1, 0xFFFF])
    protocol = likely(draw, 0x0021, [0xC021, 0xC023, 0xC223, 0x8021, 0x0057])
    payload = struct.pack("!BBHHH", 0x11, 0, session, len(ip) + 2, protocol) + ip
    return eth(payload, dst=dst, src=src, ethertype=kind)


def run(method: str, args: tuple[Any, ...], mtu: int) -> None:
    results = []
    for fp in (load("reference"), load("compiled")):
        dm = engine(fp, mtu)
        out = bytearray(b"\xa5" * 2048)
        res = getattr(dm, method)(*args, out)
        results.append((res, bytes(out), dm.counters(), list(dm.table)))
        event(Reason(res[1]).name)
        if res[0] != Verdict.FORWARD:
            assert res[2] == 0 and out == bytearray(b"\xa5" * 2048)
    assert results[0] == results[1]


MTUS = st.sampled_from([1460, 576, 68])


@settings(max_examples=300, deadline=None)
@given(mutated(pppoe_frames()), st.sampled_from([PPPOE_LINK, PPPOE_LINK, 0]), MTUS)
def test_twins_agree_on_pppoe_frames(frame: bytes, link: int, mtu: int) -> None:
    run("from_access", (frame, link), mtu)


@settings(max_examples=200, deadline=None)
@given(mutated(inner_packets(src=CN, dst=HOA)), MTUS)
def test_twins_agree_downlink_to_a_pppoe_ms(packet: bytes, mtu: int) -> None:
    run("from_tunnel", (DLMAP, packet), mtu)


def test_downlink_over_the_session_mtu_is_not_sent(fp: ModuleType) -> None:
    dm = engine(fp, mtu=1500)
    out = bytearray(2048)
    df = ipv4(CN, HOA, 17, bytes(1500 - 20), df=True)
    assert dm.from_tunnel(DLMAP, df, out)[:2] == (Verdict.PUNT, Reason.FRAG_NEEDED)
    plain = ipv4(CN, HOA, 17, bytes(1500 - 20))
    assert dm.from_tunnel(DLMAP, plain, out)[:2] == (Verdict.PUNT, Reason.FRAGMENT)
    fits = ipv4(CN, HOA, 17, bytes(1492 - 20), df=True)
    assert dm.from_tunnel(DLMAP, fits, out)[:3] == (Verdict.FORWARD, Reason.FORWARDED, 22 + 1492)
