"""The access dispatcher: which service gets a punted frame, and garbage never raises."""

from __future__ import annotations

import logging
import random
import struct

import pytest

from router.core.actions import AAARequest
from router.core.dmpa import State
from router.services.common import Drops
from router.wire.arp import ArpOp, ArpPacket
from router.wire.dhcp import DhcpMessageType
from router.wire.ethernet import BROADCAST_MAC, EthernetFrame, EtherType, MacAddress
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram
from tests.netns.access_helpers import (
    DLMAP,
    GATEWAY,
    HOA,
    MS,
    PSEUDO,
    ZERO,
    arp_frame,
    authenticate,
    dhcp_client,
    dhcp_frame,
    dhcp_server_packet,
    frames,
    ipv4_frame,
    pbus,
    ping_frame,
    stack,
)

T = DhcpMessageType


def test_the_first_frame_of_an_unknown_mac_attaches_it() -> None:
    node, dispatch = stack()
    actions = dispatch.receive_frame(arp_frame(MS, HOA, GATEWAY), 4, 1.0, 1e9)
    assert AAARequest(MS, 4) in actions
    assert node.visitors[MS].link == 4 and len(frames(actions)) == 1


def test_a_move_to_another_access_link_updates_the_visitor() -> None:
    node, dispatch = stack()
    dispatch.receive_frame(arp_frame(MS, HOA, GATEWAY), 1, 1.0, 1e9)
    actions = dispatch.receive_frame(arp_frame(MS, HOA, GATEWAY), 2, 2.0, 1e9)
    assert node.visitors[MS].link == 2
    assert actions[-1].link == 2  # type: ignore[union-attr]


def test_a_rejected_ms_is_kept_out_and_counted() -> None:
    node, dispatch = stack()
    node.attach(MS, 0, 0.0)
    node.aaa_result(MS, None, 0.0, 1e9)
    assert node.visitors[MS].state is State.REJECTED
    for frame in (arp_frame(MS, HOA, GATEWAY), ping_frame(MS, HOA)):
        assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == []
    frame = dhcp_frame(MS, dhcp_client(T.DISCOVER, MS))
    assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == []
    assert dispatch.counters["ms.rejected"] == 3


def test_traffic_of_an_unbound_ms_teaches_its_address_and_is_dropped() -> None:
    node, dispatch = stack()
    authenticate(node, MS, "dhcp")
    udp = UdpDatagram(5000, 53, b"q").encode(HOA, GATEWAY)
    actions = dispatch.receive_frame(
        ipv4_frame(MS, IPv4Packet(HOA, GATEWAY, IPProto.UDP, udp)), 0, 1.0, 1e9
    )
    assert len(pbus(actions)) == 1 and node.visitors[MS].hoa == HOA
    assert dispatch.counters["ipv4.unregistered"] == 1


def test_frames_not_for_the_pseudo_mac_and_bad_sources_are_dropped() -> None:
    _, dispatch = stack()
    other = MacAddress.parse("02:00:00:00:00:99")
    arp = arp_frame(MS, HOA, GATEWAY)
    cases = {
        "eth.not_for_us": arp_frame(MS, HOA, GATEWAY, dst=other),
        "eth.bad_source": arp_frame(BROADCAST_MAC, HOA, GATEWAY),
        "eth.own_source": EthernetFrame(BROADCAST_MAC, PSEUDO, EtherType.ARP, arp[14:]).encode(),
        "eth.bad_ethertype": EthernetFrame(PSEUDO, MS, EtherType.IPV6, bytes(40)).encode(),
        "eth.malformed": arp[:9],
    }
    for reason, frame in cases.items():
        assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == [], reason
        assert dispatch.counters[reason] == 1, reason


def corrupt(frame: bytes, at: int, value: int) -> bytes:
    return frame[:at] + bytes((value,)) + frame[at + 1 :]


def malformed_frames() -> dict[str, tuple[str, bytes]]:
    arp = arp_frame(MS, HOA, GATEWAY)
    dhcp = dhcp_frame(MS, dhcp_client(T.DISCOVER, MS))
    ping = ping_frame(MS, HOA)
    dhcp_ip = 14
    dhcp_udp = dhcp_ip + 20
    dhcp_msg = dhcp_udp + 8
    options = dhcp_msg + 240
    return {
        "arp truncated": ("arp.malformed", arp[:30]),
        "arp htype 6": ("arp.malformed", corrupt(arp, 15, 6)),
        "arp hlen 8": ("arp.malformed", corrupt(arp, 18, 8)),
        "ipv4 version 6": ("ipv4.malformed", corrupt(ping, 14, 0x65)),
        "ipv4 ihl 3": ("ipv4.malformed", corrupt(ping, 14, 0x43)),
        "ipv4 bad checksum": ("ipv4.malformed", corrupt(ping, 24, ping[24] ^ 0xFF)),
        "ipv4 total length past end": ("ipv4.malformed", ping[:30]),
        "icmp bad checksum": ("icmp.malformed", corrupt(ping, 36, ping[36] ^ 0xFF)),
        "udp length 3": (
            "udp.malformed",
            _fix_ip(dhcp[:dhcp_udp] + struct.pack("!HHHH", 68, 67, 3, 0) + dhcp[dhcp_msg:]),
        ),
        "udp bad checksum": ("dhcp.malformed", corrupt(dhcp, dhcp_udp + 6, dhcp[40] ^ 0xFF)),
        "dhcp short": ("dhcp.malformed", dhcp_frame(MS, bytes(100))),
        "dhcp bad cookie": ("dhcp.malformed", _redo_udp(corrupt(dhcp, dhcp_msg + 236, 0))),
        "dhcp option past end": (
            "dhcp.malformed",
            _redo_udp(dhcp[:options] + bytes((53, 1, 1, 12, 250)) + b"host"),
        ),
        "dhcp message type of 3 bytes": (
            "dhcp.malformed",
            _redo_udp(dhcp[:options] + bytes((53, 3, 1, 1, 1, 255))),
        ),
        "dhcp option 82 sub-option past end": (
            "dhcp.malformed",
            _redo_udp(dhcp[:options] + bytes((53, 1, 1, 82, 4, 1, 9, 0, 0, 255))),
        ),
        "dhcp router option of 5 bytes": (
            "dhcp.malformed",
            _redo_udp(dhcp[:options] + bytes((53, 1, 1, 3, 5, 1, 2, 3, 4, 5, 255))),
        ),
        "dhcp from port 67": ("dhcp.bad_port", dhcp_frame(MS, dhcp_client(1, MS), src_port=67)),
    }


def _fix_ip(frame: bytes) -> bytes:
    """Re-encode the IPv4 header (length, checksum) around whatever follows it."""
    ip = IPv4Packet.decode(frame[14:34] + frame[34:], verify_checksum=False)
    body = frame[34:]
    fixed = IPv4Packet(ip.src, ip.dst, ip.protocol, body, ttl=ip.ttl)
    return frame[:14] + fixed.encode()


def _redo_udp(frame: bytes) -> bytes:
    """Rebuild UDP and IPv4 around a (broken) DHCP payload, so only the DHCP part is wrong."""
    payload = frame[42:]
    udp = UdpDatagram(68, 67, payload).encode(ZERO, GATEWAY)
    return frame[:14] + IPv4Packet(ZERO, GATEWAY, IPProto.UDP, udp).encode()


@pytest.mark.parametrize(("reason", "frame"), malformed_frames().values(), ids=malformed_frames())
def test_malformed_frames_are_dropped_and_counted(reason: str, frame: bytes) -> None:
    node, dispatch = stack()
    authenticate(node, MS, "dhcp")
    assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == []
    assert dispatch.counters[reason] == 1
    assert node.visitors[MS].state is State.WAIT_ADDRESS


def test_a_malformed_frame_does_not_attach_an_unknown_mac() -> None:
    node, dispatch = stack()
    dispatch.receive_frame(arp_frame(MS, HOA, GATEWAY)[:20], 0, 1.0, 1e9)
    assert MS not in node.visitors


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (b"\x45" + bytes(10), "tunnel.malformed"),
        (IPv4Packet(GATEWAY, HOA, IPProto.ICMP, bytes(8)).encode(), "tunnel.not_dhcp"),
        (
            IPv4Packet(
                GATEWAY, HOA, IPProto.UDP, UdpDatagram(67, 99, b"x").encode(GATEWAY, HOA)
            ).encode(),
            "tunnel.not_dhcp",
        ),
        (
            IPv4Packet(
                GATEWAY, HOA, IPProto.UDP, UdpDatagram(67, 68, bytes(50)).encode(GATEWAY, HOA)
            ).encode(),
            "dhcp.malformed",
        ),
        (dhcp_server_packet(T.ACK, MS)[:-1] + b"\xff", "tunnel.malformed"),  # UDP checksum
    ],
)
def test_malformed_tunnel_packets_are_dropped_and_counted(packet: bytes, reason: str) -> None:
    _, dispatch = stack()
    assert dispatch.receive_tunnel(packet, DLMAP, 1.0, 1e9) == []
    assert dispatch.counters[reason] == 1


def test_random_garbage_never_raises() -> None:
    """h11's invariant: garbage either parses or is dropped, never an exception."""
    node, dispatch = stack()
    authenticate(node, MS, "dhcp")
    rng = random.Random(5)
    seeds = [
        arp_frame(MS, HOA, GATEWAY),
        ping_frame(MS, HOA),
        dhcp_frame(MS, dhcp_client(T.REQUEST, MS, requested=HOA)),
    ]
    for i in range(3000):
        frame = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            frame[rng.randrange(6, len(frame))] = rng.randrange(256)
        if rng.random() < 0.3:
            frame = frame[: rng.randrange(len(frame))]
        dispatch.receive_frame(bytes(frame), 0, float(i), 1e9)
        dispatch.receive_tunnel(bytes(frame[14:]), DLMAP, float(i), 1e9)


def test_drop_logging_is_rate_limited_per_reason(caplog: pytest.LogCaptureFixture) -> None:
    drops = Drops(logging.getLogger("test.access"), interval=10.0)
    with caplog.at_level(logging.WARNING, logger="test.access"):
        for i in range(1000):
            drops.drop("arp.malformed", i * 0.01)  # 1000 drops over 10 s
        drops.drop("arp.malformed", 10.5)
        drops.drop("dhcp.malformed", 10.5)
    assert drops.counters["arp.malformed"] == 1001
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "reason=arp.malformed count=1 " in lines[0] + " "
    assert "reason=arp.malformed count=1000" in lines[1]


def test_the_dispatcher_reports_the_services_counters() -> None:
    node, dispatch = stack()
    authenticate(node, MS, "dhcp")
    dispatch.receive_frame(arp_frame(MS, ZERO, HOA), 0, 1.0, 1e9)
    dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.DISCOVER, MS)), 0, 1.0, 1e9)
    counters = dispatch.counters
    assert counters["arp.probe_silent"] == 1 and counters["dhcp.relayed.discover"] == 1


def test_an_arriving_ms_announcing_itself_is_told_the_gateway_at_once() -> None:
    # After a handover a Linux MS (arp_notify) announces itself when its carrier returns; it
    # lost its ARP entries with the carrier, so the gateway's MAC comes back unasked.
    node, dispatch = stack()
    actions = dispatch.receive_frame(arp_frame(MS, HOA, HOA), 0, 1.0, 1e9)
    (frame,) = frames(actions)
    reply = ArpPacket.decode(frame.payload)
    assert frame.dst == MS and frame.src == node.config.pseudo_mac
    assert reply.op == ArpOp.REPLY and reply.sender_ip == node.config.gateway
    assert reply.sender_mac == node.config.pseudo_mac and reply.target_ip == HOA
    # Only on arrival: the same announcement again gets no answer (RFC 5227: none is due).
    assert frames(dispatch.receive_frame(arp_frame(MS, HOA, HOA), 0, 2.0, 1e9)) == []


def test_a_station_the_base_station_reports_is_attached_and_told_the_gateway() -> None:
    # The access point's association hook (netlmm attach): the host sent nothing we could see
    # (its solicitation for the gateway went out while its link was down), so AAA starts now
    # and an unsolicited ARP reply completes the host's pending entry for the gateway.
    node, dispatch = stack()
    actions = dispatch.associated(MS, 3, 1.0)
    assert AAARequest(MS, 3) in actions and node.visitors[MS].link == 3
    (frame,) = frames(actions)
    reply = ArpPacket.decode(frame.payload)
    assert frame.dst == MS and frame.src == node.config.pseudo_mac
    assert reply.op == ArpOp.REPLY and reply.sender_ip == node.config.gateway
    assert reply.sender_mac == node.config.pseudo_mac and reply.target_mac == MS
    assert reply.target_ip == ZERO  # its address is not known yet
    assert dispatch.counters["station.associated"] == 1
    assert dispatch.counters["arp.gateway_announced"] == 1
    # Reported again (the same link): no second AAA request, the gateway told again.
    again = dispatch.associated(MS, 3, 2.0)
    assert not any(isinstance(a, AAARequest) for a in again) and len(frames(again)) == 1


def test_a_reported_station_that_aaa_rejected_is_told_nothing() -> None:
    node, dispatch = stack()
    node.attach(MS, 0, 0.0)
    node.aaa_result(MS, None, 0.0, 1e9)
    assert dispatch.associated(MS, 0, 1.0) == []
    assert dispatch.counters["ms.rejected"] == 1


@pytest.mark.parametrize("mac", [BROADCAST_MAC, MacAddress.parse("00:00:00:00:00:00")])
def test_a_reported_station_with_an_impossible_mac_is_refused(mac: MacAddress) -> None:
    node, dispatch = stack()
    assert dispatch.associated(mac, 0, 1.0) == []
    assert node.visitors == {} and dispatch.counters["station.bad_mac"] == 1
