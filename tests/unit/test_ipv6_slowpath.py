"""The ICMPv6 errors the tunnel entry owes a dual-stack MS's IPv6 (router/services/
ipv6_slowpath.py, RFC 4443): Packet Too Big with the tunnel MTU (at least 1280) and Time
Exceeded, from the DMPA's router link-local address toward the MS and from the DLMAP's address
toward the CN, never about an ICMPv6 error or to a multicast source, rate-limited."""

from __future__ import annotations

import struct
from ipaddress import IPv6Address

import pytest

from fastpath import Punt, Reason
from router.core.actions import SendFrame, SendTun
from router.core.counters import Counters
from router.core.limits import Rate
from router.services.dlmap_punts import PuntCounter
from router.services.ipv6_slowpath import Icmpv6Errors, icmpv6_error
from router.wire.checksum import internet_checksum, ones_complement_sum, pseudo_header_v6
from router.wire.ethernet import EthernetFrame, EtherType
from router.wire.nd import IPv6Packet, link_local_from_mac
from tests.netns.access_helpers import MS, PSEUDO
from tests.unit.test_punt_services import dlmap_punts, dmpa_punts

MS6 = IPv6Address("2001:db8:ff00:17::5")
CN6 = IPv6Address("2001:db8:cafe::1")
DLMAP6 = IPv6Address("2001:db8::2")


def packet6(
    size: int,
    *,
    src: IPv6Address = MS6,
    dst: IPv6Address = CN6,
    nh: int = 17,
    hop: int = 64,
    payload: bytes | None = None,
) -> bytes:
    body = payload if payload is not None else bytes(i % 251 for i in range(size - 40))
    return IPv6Packet(src, dst, nh, hop, body).encode()


def checked(reply: bytes) -> tuple[IPv6Packet, int, int, int, bytes]:
    """(the error's IPv6 header, type, code, MTU/unused, quoted) with its checksum verified."""
    outer = IPv6Packet.decode(reply)
    assert outer.next_header == 58 and outer.hop_limit == 64 and len(reply) <= 1280
    pseudo = pseudo_header_v6(outer.src, outer.dst, 58, len(outer.payload))
    assert internet_checksum(outer.payload, ones_complement_sum(pseudo)) == 0
    kind, code, _, rest = struct.unpack_from("!BBHI", outer.payload)
    return outer, kind, code, rest, outer.payload[8:]


@pytest.mark.parametrize(("mtu", "expected"), [(1460, 1460), (1300, 1300), (1000, 1280)])
def test_packet_too_big_carries_the_tunnel_mtu_at_least_1280(mtu: int, expected: int) -> None:
    big = packet6(1500)
    reply = icmpv6_error("frag_needed", big, DLMAP6, mtu)
    assert reply is not None
    outer, kind, code, rest, quoted = checked(reply)
    assert (outer.src, outer.dst, kind, code, rest) == (DLMAP6, MS6, 2, 0, expected)
    assert quoted == big[: 1280 - 48]  # as much as fits in the minimum MTU


def test_time_exceeded_quotes_the_whole_small_packet() -> None:
    small = packet6(100, hop=1)
    reply = icmpv6_error("ttl", small, DLMAP6)
    assert reply is not None
    _, kind, code, rest, quoted = checked(reply)
    assert (kind, code, rest, quoted) == (3, 0, 0, small)


@pytest.mark.parametrize(
    ("kind", "packet"),
    [
        ("ttl", packet6(80, nh=58, payload=bytes([1, 4]) + bytes(38))),  # about an error
        ("frag_needed", packet6(80, nh=58, payload=bytes([2, 0]) + bytes(38))),
        ("ttl", packet6(80, nh=58, payload=bytes([137, 0]) + bytes(38))),  # a Redirect
        ("ttl", packet6(80, src=IPv6Address("::"))),
        ("ttl", packet6(80, src=IPv6Address("ff02::1"))),
        ("ttl", packet6(80, dst=IPv6Address("ff0e::1"))),  # to multicast: PTB only
        ("ttl", b"\x60" + bytes(10)),  # does not decode
        ("ttl", packet6(80, src=IPv6Address("::1"))),  # loopback
        # an error behind a Hop-by-Hop header, behind Destination Options and a first fragment
        ("ttl", packet6(80, nh=0, payload=bytes([58, 0]) + bytes(6) + bytes([1, 4]) + bytes(30))),
        (
            "ttl",
            packet6(
                80,
                nh=60,
                payload=bytes([44, 0])
                + bytes(6)
                + bytes([58])
                + bytes(7)
                + bytes([3, 0])
                + bytes(22),
            ),
        ),
        ("ttl", packet6(80, nh=0, payload=bytes([0, 9]) + bytes(38))),  # the chain runs past
    ],
)
def test_no_error_is_owed(kind: str, packet: bytes) -> None:
    assert icmpv6_error(kind, packet, DLMAP6, 1460) is None


def test_packet_too_big_is_owed_for_a_multicast_destination_and_echo_requests() -> None:
    assert (
        icmpv6_error("frag_needed", packet6(1500, dst=IPv6Address("ff0e::1")), DLMAP6) is not None
    )
    echo = packet6(1500, nh=58, payload=bytes([128, 0]) + bytes(1458))
    assert icmpv6_error("ttl", echo, DLMAP6) is not None
    with pytest.raises(ValueError):
        icmpv6_error("redirect", echo, DLMAP6)


def test_an_upper_layer_behind_extension_headers_is_answered() -> None:
    behind_dest_opts = packet6(80, nh=60, payload=bytes([17, 0]) + bytes(38))  # UDP
    assert icmpv6_error("ttl", behind_dest_opts, DLMAP6) is not None
    echo_behind_hbh = packet6(
        80, nh=0, payload=bytes([58, 0]) + bytes(6) + bytes([128]) + bytes(31)
    )
    assert icmpv6_error("ttl", echo_behind_hbh, DLMAP6) is not None
    later_fragment = packet6(80, nh=44, payload=bytes([58, 0, 0, 8 << 3]) + bytes(36))
    assert icmpv6_error("ttl", later_fragment, DLMAP6) is not None  # its type is not in it


def test_the_rate_limit_is_a_token_bucket_per_source() -> None:
    counters = Counters()
    errors = Icmpv6Errors(counters, PuntCounter.ICMPV6_LIMITED, Rate(10.0, 3))
    one, other = packet6(100, hop=1), packet6(100, hop=1, src=IPv6Address("2001:db8:ff00:17::6"))

    def sent(packet: bytes, now: float) -> bool:
        return errors.answer("ttl", packet, DLMAP6, 1460, now) is not None

    assert [sent(one, 5.0) for _ in range(5)] == [True, True, True, False, False]
    assert sent(other, 5.0)  # another source has its own bucket
    assert sent(one, 5.05) is False and sent(one, 5.2) is True  # one token per 100 ms
    assert counters["punt.icmpv6_limited"] == 3
    assert [sent(one, 1000.0) for _ in range(3)] == [True] * 3  # full again, not more
    assert sent(one, 999.0) is False  # time going back adds nothing
    assert errors.answer("ttl", packet6(80, src=IPv6Address("::")), DLMAP6, 1460, 1000.0) is None
    assert counters["punt.icmpv6_limited"] == 4  # an error not owed is not counted as limited


@pytest.mark.parametrize(("reason", "kind"), [(Reason.TTL_EXPIRED, 3), (Reason.FRAG_NEEDED, 2)])
def test_the_dmpa_answers_an_ms_ipv6_from_its_router_link_local_address(
    reason: Reason, kind: int
) -> None:
    punts = dmpa_punts()
    frame = EthernetFrame(PSEUDO, MS, EtherType.IPV6, packet6(1400, hop=1)).encode()
    [action] = punts.from_access(Punt(reason, 2, MS.packed, frame), 1.0, 1e9)
    assert isinstance(action, SendFrame) and action.link == 2
    out = EthernetFrame.decode(action.frame)
    assert (out.src, out.dst, out.ethertype) == (PSEUDO, MS, EtherType.IPV6)
    outer, got, _, rest, _ = checked(out.payload)
    assert (outer.src, outer.dst, got) == (link_local_from_mac(PSEUDO), MS6, kind)
    assert rest == (1280 if kind == 2 else 0)  # the test's tunnel MTU is 1280


def test_the_dmpa_rate_limits_its_icmpv6_errors() -> None:
    punts = dmpa_punts()
    frame = EthernetFrame(PSEUDO, MS, EtherType.IPV6, packet6(200, hop=1)).encode()
    sent = [
        punts.from_access(Punt(Reason.TTL_EXPIRED, 0, MS.packed, frame), 1.0, 1e9)
        for _ in range(30)
    ]
    assert sum(1 for s in sent if s) == 10  # the burst, then nothing within the same instant
    assert punts.counters["punt.access.icmpv6_limited"] == 20


def test_the_dlmap_sends_packet_too_big_toward_the_cn_from_its_address() -> None:
    punts = dlmap_punts()
    big = packet6(1500, src=CN6, dst=MS6)
    assert punts.from_tun(Punt(Reason.FRAG_NEEDED, -1, b"", big), 1.0, 1e9) == []  # no address
    punts.address = DLMAP6
    [action] = punts.from_tun(Punt(Reason.FRAG_NEEDED, -1, b"", big), 1.0, 1e9)
    assert isinstance(action, SendTun)
    outer, kind, _, rest, _ = checked(action.packet)
    assert (outer.src, outer.dst, kind, rest) == (DLMAP6, CN6, 2, 1280)
    assert punts.from_tun(Punt(Reason.TTL_EXPIRED, -1, b"", big), 1.0, 1e9) == []
