"""Seed 5.4: ICMP queries to the default gateway are answered by the DMPA itself: echo, and
timestamp (RFC 792) and address mask (RFC 950) requests."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.core.dmpa import State
from router.wire.icmp import IcmpAddressMask, IcmpEcho, IcmpMessage, IcmpTimestamp, IcmpType
from router.wire.ipv4 import IPProto, IPv4Packet
from tests.netns.access_helpers import (
    GATEWAY,
    HOA,
    MS,
    PSEUDO,
    authenticate,
    frames,
    grant,
    ipv4_frame,
    ping_frame,
    stack,
)

#: 2001-09-09 01:46:40.250 UT.
WALL = 1_000_000_000.25


def ready():  # type: ignore[no-untyped-def]
    node, dispatch = stack()
    authenticate(node, MS, "static", hoa=HOA)
    grant(node, MS, HOA)
    return node, dispatch


@pytest.mark.parametrize("ttl", [1, 64])
def test_echo_to_the_gateway_is_answered_from_the_pseudo_mac(ttl: int) -> None:
    _, dispatch = ready()
    data = bytes(range(256)) * 4
    actions = dispatch.receive_frame(ping_frame(MS, HOA, ttl=ttl, data=data), 0, 1.0, 1e9)
    (frame,) = frames(actions)
    assert (frame.dst, frame.src) == (MS, PSEUDO)
    ip = IPv4Packet.decode(frame.payload)  # header checksum verified
    assert (ip.src, ip.dst, ip.protocol, ip.ttl) == (GATEWAY, HOA, IPProto.ICMP, 64)
    echo = IcmpEcho.decode(ip.payload)  # ICMP checksum verified
    assert echo == IcmpEcho(0x4242, 7, data, reply=True)


def test_echo_before_registration_is_answered_and_reveals_the_address() -> None:
    node, dispatch = stack()
    actions = dispatch.receive_frame(ping_frame(MS, HOA), 0, 1.0, 1e9)
    assert len(frames(actions)) == 1
    assert node.visitors[MS].state is State.AUTHENTICATING
    assert node.visitors[MS].address_seen == HOA


def test_a_request_from_an_address_the_ms_does_not_hold_is_dropped() -> None:
    _, dispatch = ready()
    assert dispatch.receive_frame(ping_frame(MS, IPv4Address("192.0.2.99")), 0, 1, 1e9) == []
    assert dispatch.counters["icmp.wrong_source"] == 1


def answer(dispatch, payload: bytes, wall: float = WALL):  # type: ignore[no-untyped-def]
    """The IPv4 packet the DMPA sends back to the MS for an ICMP ``payload`` to the gateway."""
    frame = ipv4_frame(MS, IPv4Packet(HOA, GATEWAY, IPProto.ICMP, payload, ttl=1))
    (reply,) = frames(dispatch.receive_frame(frame, 0, 1.0, wall))
    assert (reply.dst, reply.src) == (MS, PSEUDO)
    ip = IPv4Packet.decode(reply.payload)  # header checksum verified
    assert (ip.src, ip.dst, ip.protocol, ip.ttl) == (GATEWAY, HOA, IPProto.ICMP, 64)
    return ip


def test_a_timestamp_request_to_the_gateway_is_answered() -> None:
    """Seed 5.4 ("ICMP query" to the gateway); RFC 792 Timestamp: identifier, sequence and
    originate come back, receive and transmit are our time in ms since midnight UT."""
    _, dispatch = ready()
    request = IcmpTimestamp(0x1234, 9, originate=43_200_000)
    ip = answer(dispatch, request.encode())
    reply = IcmpTimestamp.from_message(IcmpMessage.decode(ip.payload))  # checksum verified
    ms = ((1 * 60 + 46) * 60 + 40) * 1000 + 250  # 01:46:40.250 UT
    assert reply == IcmpTimestamp(0x1234, 9, 43_200_000, ms, ms, reply=True)
    assert dispatch.counters["icmp.timestamp_reply"] == 1


def test_an_address_mask_request_to_the_gateway_is_answered() -> None:
    """RFC 950 Appendix I: the reply carries the subnet mask of the MS's network (the HoA
    network, dmpa.prefix_length)."""
    _, dispatch = ready()
    ip = answer(dispatch, IcmpAddressMask(77, 3).encode())
    reply = IcmpAddressMask.from_message(IcmpMessage.decode(ip.payload))
    assert reply == IcmpAddressMask(77, 3, IPv4Address("255.255.255.0"), reply=True)
    assert dispatch.counters["icmp.mask_reply"] == 1


def test_replies_and_other_icmp_to_the_gateway_are_not_answered() -> None:
    _, dispatch = ready()
    payloads = (
        IcmpEcho(1, 1, b"x", reply=True).encode(),
        IcmpTimestamp(1, 1, 5, 6, 7, reply=True).encode(),
        IcmpAddressMask(1, 1, IPv4Address("255.0.0.0"), reply=True).encode(),
        IcmpMessage(IcmpType.TIME_EXCEEDED, 0, bytes(4), bytes(28)).encode(),
    )
    for payload in payloads:
        frame = ipv4_frame(MS, IPv4Packet(HOA, GATEWAY, IPProto.ICMP, payload))
        assert dispatch.receive_frame(frame, 0, 1.0, WALL) == []
    assert dispatch.counters["icmp.not_query"] == 4


@pytest.mark.parametrize(
    "payload",
    [
        IcmpMessage(IcmpType.TIMESTAMP, 0, bytes(4), bytes(8)).encode(),  # 12 bytes expected
        IcmpMessage(IcmpType.ADDRESS_MASK_REQUEST, 1, bytes(4), bytes(4)).encode(),  # code 1
    ],
    ids=["short-timestamp", "mask-code-1"],
)
def test_a_malformed_query_is_dropped(payload: bytes) -> None:
    _, dispatch = ready()
    frame = ipv4_frame(MS, IPv4Packet(HOA, GATEWAY, IPProto.ICMP, payload))
    assert dispatch.receive_frame(frame, 0, 1.0, WALL) == []
    assert dispatch.counters["icmp.malformed"] == 1


def test_echo_with_a_nonzero_code_is_malformed() -> None:
    _, dispatch = ready()
    odd = IcmpMessage(IcmpType.ECHO_REQUEST, 3, bytes(4), b"abc").encode()
    frame = ipv4_frame(MS, IPv4Packet(HOA, GATEWAY, IPProto.ICMP, odd))
    assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == []
    assert dispatch.counters["icmp.malformed"] == 1


def test_bad_icmp_checksum_truncated_header_and_fragments_are_dropped_and_counted() -> None:
    _, dispatch = ready()
    good = IcmpEcho(1, 2, b"data").encode()
    bad = good[:2] + bytes((good[2] ^ 0xFF,)) + good[3:]
    cases = [
        IPv4Packet(HOA, GATEWAY, IPProto.ICMP, bad),
        IPv4Packet(HOA, GATEWAY, IPProto.ICMP, good[:5]),
        IPv4Packet(HOA, GATEWAY, IPProto.ICMP, good, fragment_offset=10),
    ]
    for packet in cases:
        assert dispatch.receive_frame(ipv4_frame(MS, packet), 0, 1.0, 1e9) == []
    assert dispatch.counters["icmp.malformed"] == 2
    assert dispatch.counters["icmp.fragment"] == 1


def test_echo_to_another_address_is_not_ours() -> None:
    _, dispatch = ready()
    frame = ping_frame(MS, HOA, IPv4Address("203.0.113.9"))
    assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == []
    assert dispatch.counters["ipv4.registered"] == 1
