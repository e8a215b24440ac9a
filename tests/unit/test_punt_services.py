"""Each role's slow path: what the fastpath punts becomes actions (router/services/*_punts.py),
and the node runtime carries out the actions the slow path adds (Reinject, SendTun)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

import pytest

from fastpath import Punt, Reason
from router.adapters.store import Store
from router.app.config import loads
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.settings import DLMAPSettings
from router.core.actions import AAARequest, Bind, Reinject, SendFrame, SendTun, SendTunnel
from router.core.pool import HoAPool
from router.services.dhcp_server import DhcpServer, DhcpServerConfig
from router.services.dlmap_punts import DLMAPPunts
from router.services.dmpa_punts import DMPAPunts
from router.wire.dhcp import BootpOp, DhcpMessage, DhcpMessageType, DhcpOption, DhcpOptionCode
from router.wire.ethernet import EthernetFrame, EtherType
from router.wire.icmp import IcmpMessage, IcmpType
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet
from router.wire.udp import UdpDatagram
from tests.netns.access_helpers import (
    DLMAP,
    GATEWAY,
    HOA,
    MS,
    PSEUDO,
    arp_frame,
    authenticate,
    dhcp_server_packet,
    grant,
    ipv4_frame,
    stack,
)
from tests.unit.test_config import DLMAP as DLMAP_INI

DMPA_ADDRESS = IPv6Address("2001:db8:100::11")
CN = IPv4Address("198.51.100.7")
MTU = 1280


def ip(size: int, *, src: IPv4Address = HOA, dst: IPv4Address = CN, df: bool = False) -> bytes:
    flags = IPv4Flags.DF if df else IPv4Flags(0)
    payload = bytes(i % 251 for i in range(size))
    return IPv4Packet(src, dst, IPProto.UDP, payload, identification=9, flags=flags).encode()


def payload_of(pieces: list[bytes]) -> bytes:
    decoded = sorted((IPv4Packet.decode(p) for p in pieces), key=lambda p: p.fragment_offset)
    return b"".join(p.payload for p in decoded)


def icmp_of(packet: bytes) -> tuple[IPv4Packet, IcmpMessage]:
    outer = IPv4Packet.decode(packet)
    return outer, IcmpMessage.decode(outer.payload)


# --- the DLMAP ------------------------------------------------------------------------------


def dlmap_punts() -> DLMAPPunts:
    pool = HoAPool([(IPv4Address("192.0.2.100"), IPv4Address("192.0.2.109"))])
    config = DhcpServerConfig(
        server_id=GATEWAY,
        gateway=GATEWAY,
        network=IPv4Network("192.0.2.0/24"),
        lease_time=3600,
        max_lifetime=3600,
    )
    return DLMAPPunts(DhcpServer(config, pool), GATEWAY, MTU)


def discover() -> bytes:
    """A DISCOVER as a DMPA carries it through the tunnel (UDP 68 -> 67)."""
    message = DhcpMessage(
        BootpOp.BOOTREQUEST,
        0x77,
        MS.packed,
        (DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, DhcpMessageType.DISCOVER, 1),),
    )
    src, dst = IPv4Address(0), IPv4Address("255.255.255.255")
    udp = UdpDatagram(68, 67, message.encode()).encode(src, dst)
    return IPv4Packet(src, dst, IPProto.UDP, udp).encode()


def test_the_dlmap_gives_dhcp_from_the_tunnel_to_its_dhcp_service() -> None:
    punts = dlmap_punts()
    actions = punts.from_tunnel(Punt(Reason.DHCP, -1, DMPA_ADDRESS.packed, discover()), 1.0, 1e9)
    [offer] = [a for a in actions if isinstance(a, SendTunnel)]
    assert offer.peer == DMPA_ADDRESS
    reply = IPv4Packet.decode(offer.packet)
    assert DhcpMessage.decode(UdpDatagram.decode(reply.payload).payload).xid == 0x77
    assert punts.dhcp.counters["rx"] == 1 and punts.counters["punt.dhcp"] == 1


def test_the_dlmap_fragments_what_is_too_big_for_the_tunnel_back_into_the_data_path() -> None:
    punts = dlmap_punts()
    packet = ip(3000, src=CN, dst=HOA)
    actions = punts.from_tun(Punt(Reason.FRAGMENT, -1, b"", packet), 1.0, 1e9)
    assert all(isinstance(a, Reinject) and a.link == -1 for a in actions) and len(actions) == 3
    pieces = [a.data for a in actions if isinstance(a, Reinject)]
    assert all(len(p) <= MTU for p in pieces)
    assert payload_of(pieces) == IPv4Packet.decode(packet).payload
    assert punts.counters["punt.fragment"] == 1


@pytest.mark.parametrize(
    ("reason", "kind", "code"),
    [(Reason.TTL_EXPIRED, IcmpType.TIME_EXCEEDED, 0), (Reason.FRAG_NEEDED, 3, 4)],
)
def test_the_dlmap_answers_ttl_and_mtu_problems_with_an_icmp_error_to_the_tun(
    reason: Reason, kind: int, code: int
) -> None:
    punts = dlmap_punts()
    packet = ip(1400, src=CN, dst=HOA, df=True)
    for punted in (punts.from_tun, punts.from_tunnel):
        [action] = punted(Punt(reason, -1, DMPA_ADDRESS.packed, packet), 1.0, 1e9)
        assert isinstance(action, SendTun)
        outer, icmp = icmp_of(action.packet)
        assert (outer.src, outer.dst) == (GATEWAY, CN)
        assert (icmp.type, icmp.code) == (kind, code)
    assert punts.counters[f"punt.{reason.name.lower()}"] == 2


def test_the_dlmap_owes_no_icmp_error_about_a_broadcast_and_ignores_the_rest() -> None:
    punts = dlmap_punts()
    broadcast = ip(100, src=CN, dst=IPv4Address("255.255.255.255"))
    assert punts.from_tun(Punt(Reason.TTL_EXPIRED, -1, b"", broadcast), 1.0, 1e9) == []
    assert punts.from_tun(Punt(Reason.DHCP, -1, b"", discover()), 1.0, 1e9) == []
    assert punts.from_tunnel(Punt(Reason.FRAGMENT, -1, bytes(16), ip(3000)), 1.0, 1e9) == []
    assert punts.dhcp.counters["rx"] == 0
    assert punts.counters == {"punt.ttl_expired": 1, "punt.dhcp": 1, "punt.fragment": 1}


def test_the_dlmap_relay_learns_a_lease_from_an_answer_to_another_relay_in_transit() -> None:
    """Issue 15, relay rules: the request keeps the other relay's giaddr (RFC 1542 4.1.1), the
    server's answer to it crosses the DLMAP's TUN (no binding there: punted), the relay learns
    the NAI's address from it and sends it on unchanged to the DMPA the request came from."""
    from tests.unit import test_dhcp_relay as relay_tests

    relay = relay_tests.make()
    punts = DLMAPPunts(relay, GATEWAY, MTU)
    theirs = relay_tests.THEIRS
    request = relay_tests.in_tunnel(
        relay_tests.request(DhcpMessageType.REQUEST, giaddr=theirs, hops=1)
    )
    sent = punts.from_tunnel(Punt(Reason.DHCP, -1, DMPA_ADDRESS.packed, request), 1.0, 1e9)
    assert relay_tests.forwarded(sent).giaddr == theirs  # not modified
    ack = relay_tests.to_their_relay(relay_tests.reply(DhcpMessageType.ACK, giaddr=theirs))
    actions = punts.from_tun(Punt(Reason.DHCP, -1, b"", ack), 1.1, 1e9)
    assert [(a.peer, a.packet) for a in actions if isinstance(a, SendTunnel)] == [
        (DMPA_ADDRESS, ack)
    ]
    assert relay.pool.allocated_to(relay_tests.NAI) == relay_tests.HOA
    assert punts.counters["punt.dhcp"] == 2


# --- the DMPA -------------------------------------------------------------------------------


def dmpa_punts() -> DMPAPunts:
    node, access = stack()
    return DMPAPunts(access, node, GATEWAY, MTU)


def registered(punts: DMPAPunts) -> None:
    node = punts.host
    authenticate(node, MS, "dhcp")  # type: ignore[arg-type]
    node.dhcp_ack(MS, HOA, 0.0, 1e9)
    grant(node, MS, HOA)  # type: ignore[arg-type]


def test_the_dmpa_gives_arp_dhcp_pings_and_unknown_mss_to_the_access_services() -> None:
    punts = dmpa_punts()
    frame = arp_frame(MS, HOA, GATEWAY)
    actions = punts.from_access(Punt(Reason.ARP, 2, MS.packed, frame), 1.0, 1e9)
    assert AAARequest(MS, 2) in actions  # the dispatcher attached the MS
    assert punts.counters["punt.access.arp"] == 1
    packet = dhcp_server_packet(DhcpMessageType.OFFER, MS)
    assert punts.from_tunnel(Punt(Reason.DHCP, -1, DLMAP.packed, packet), 1.0, 1e9) == []
    assert punts.access.counters["dhcp.reply_wrong_dlmap"] == 1  # it reached the DHCP service
    assert punts.counters["punt.tunnel.dhcp"] == 1


def test_the_dmpa_fragments_a_registered_mss_packet_back_into_the_data_path() -> None:
    punts = dmpa_punts()
    registered(punts)
    packet = ip(3000)
    frame = ipv4_frame(MS, IPv4Packet.decode(packet))
    actions = punts.from_access(Punt(Reason.FRAGMENT, 1, MS.packed, frame), 1.0, 1e9)
    assert len(actions) == 3 and all(isinstance(a, Reinject) and a.link == 1 for a in actions)
    frames = [EthernetFrame.decode(a.data) for a in actions if isinstance(a, Reinject)]
    assert all((f.src, f.dst, f.ethertype) == (MS, PSEUDO, EtherType.IPV4) for f in frames)
    assert payload_of([f.payload for f in frames]) == IPv4Packet.decode(packet).payload


def test_the_dmpa_fragments_nothing_of_an_ms_not_registered() -> None:
    punts = dmpa_punts()
    authenticate(punts.host, MS, "dhcp")  # type: ignore[arg-type]
    frame = ipv4_frame(MS, IPv4Packet.decode(ip(3000)))
    assert punts.from_access(Punt(Reason.FRAGMENT, 0, MS.packed, frame), 1.0, 1e9) == []
    assert punts.counters["punt.access.fragment"] == 1


def test_the_dmpa_answers_a_ttl_problem_with_an_icmp_error_from_the_pseudo_mac() -> None:
    punts = dmpa_punts()
    frame = ipv4_frame(MS, IPv4Packet.decode(ip(200)))
    [action] = punts.from_access(Punt(Reason.TTL_EXPIRED, 3, MS.packed, frame), 1.0, 1e9)
    assert isinstance(action, SendFrame) and action.link == 3
    out = EthernetFrame.decode(action.frame)
    assert (out.src, out.dst, out.ethertype) == (PSEUDO, MS, EtherType.IPV4)
    outer, icmp = icmp_of(out.payload)
    assert (outer.src, outer.dst, icmp.type) == (GATEWAY, HOA, IcmpType.TIME_EXCEEDED)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [(Reason.TTL_EXPIRED, IcmpType.TIME_EXCEEDED), (Reason.FRAG_NEEDED, IcmpType.DEST_UNREACHABLE)],
)
def test_the_dmpa_sources_icmp_errors_from_the_ms_own_gateway(
    reason: Reason, kind: IcmpType
) -> None:
    """Issue 15, defect 4: an MS whose profile names its gateway hears its ICMP errors from
    that gateway, the only router it knows, not from the node's."""
    punts = dmpa_punts()
    registered(punts)
    own = IPv4Address("192.0.2.62")
    punts.host.visitors[MS].gateway = own  # type: ignore[attr-defined]
    frame = ipv4_frame(MS, IPv4Packet.decode(ip(1400, df=True)))
    [action] = punts.from_access(Punt(reason, 1, MS.packed, frame), 1.0, 1e9)
    assert isinstance(action, SendFrame)
    outer, icmp = icmp_of(EthernetFrame.decode(action.frame).payload)
    assert (outer.src, outer.dst, icmp.type) == (own, HOA, kind)


def test_the_dmpa_counts_what_it_cannot_read_and_answers_nothing() -> None:
    punts = dmpa_punts()
    assert punts.from_access(Punt(Reason.FRAG_NEEDED, 0, MS.packed, b"\x02"), 1.0, 1e9) == []
    arp = arp_frame(MS, HOA, GATEWAY)
    assert punts.from_access(Punt(Reason.TTL_EXPIRED, 0, MS.packed, arp), 1.0, 1e9) == []
    tunnelled = Punt(Reason.NO_BINDING, -1, DLMAP.packed, ip(100))
    assert punts.from_tunnel(tunnelled, 1.0, 1e9) == []
    assert punts.counters["punt.access.undecodable"] == 1
    assert punts.counters["punt.access.ttl_expired"] == 1
    assert punts.counters["punt.tunnel.no_binding"] == 1


# --- the runtime carries the slow path's actions out ----------------------------------------


@pytest.fixture
def dlmap(tmp_path: Path) -> Iterator[tuple[DLMAPNode, list[bytes], int]]:
    """A DLMAP node in memory: what it sends on the raw socket, and the TUN's far end."""
    settings, _ = loads(DLMAP_INI)
    assert isinstance(settings, DLMAPSettings)
    loop = asyncio.new_event_loop()
    tun_read, tun_write = os.pipe()
    sent: list[bytes] = []
    ports = DLMAPPorts(None, None, -1, -1, tun_write, raw_send=sent.append)
    store = Store(tmp_path / "lm.sqlite")
    node = DLMAPNode(settings, ports, store, loop, fastpath="reference")
    try:
        yield node, sent, tun_read
    finally:
        store.close()
        loop.close()
        os.close(tun_read)
        os.close(tun_write)


def test_the_node_writes_sendtun_to_the_tun_and_encapsulates_what_is_reinjected(
    dlmap: tuple[DLMAPNode, list[bytes], int],
) -> None:
    node, sent, tun = dlmap
    dmpa = next(iter(node.dialects))
    hoa = IPv4Address("192.0.2.100")
    packet = ip(500, src=CN, dst=hoa)
    node.runner.submit([Bind(hoa, dmpa), Reinject(packet), SendTun(b"to the kernel")])
    node.runner.flush()
    [outer] = sent
    assert outer[6] == 4 and IPv6Address(outer[24:40]) == dmpa  # next header 4, to the DMPA
    assert IPv4Packet.decode(outer[40:]).payload == IPv4Packet.decode(packet).payload
    vnet = b"" if not node.settings.node.offload else bytes(10)
    assert os.read(tun, 4096) == vnet + b"to the kernel"
    node.runner.submit([Reinject(ip(500, src=CN, dst=IPv4Address("192.0.2.101")))])
    node.runner.flush()
    assert len(sent) == 1  # no binding: the fastpath drops it (and counts it)
    assert node.fastpath.counters()["downlink.no_binding"] == 1
