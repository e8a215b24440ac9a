"""Slow-path IPv4: fragmentation of DF-clear packets too big for the tunnel, and ICMP errors."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.services.ipv4_slowpath import fragment, icmp_error
from router.wire.icmp import IcmpMessage
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet

MS = IPv4Address("192.0.2.10")
CN = IPv4Address("198.51.100.7")
GATEWAY = IPv4Address("192.0.2.1")


def packet(size: int, *, df: bool = False, options: bytes = b"", proto: int = 17) -> bytes:
    payload = bytes(i % 251 for i in range(size))
    flags = IPv4Flags.DF if df else IPv4Flags(0)
    return IPv4Packet(
        MS, CN, proto, payload, identification=77, flags=flags, options=options
    ).encode()


@settings(max_examples=300)
@given(
    size=st.integers(0, 4000),
    mtu=st.integers(68, 1500),
    opt=st.sampled_from([b"", b"\x94\x04\x00\x00", b"\x07\x07\x04" + bytes(5)]),
)
def test_fragments_fit_and_reassemble(size: int, mtu: int, opt: bytes) -> None:
    original = IPv4Packet.decode(packet(size, options=opt))
    pieces = [IPv4Packet.decode(p) for p in fragment(original.encode(), mtu)]  # checksums verify
    assert all(p.total_length <= mtu for p in pieces)
    assert all(p.identification == 77 and p.src == MS and p.dst == CN for p in pieces)
    assembled = b"".join(p.payload for p in sorted(pieces, key=lambda p: p.fragment_offset))
    assert assembled == original.payload
    offsets = [p.fragment_offset * 8 for p in pieces]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert all(p.flags & IPv4Flags.MF for p in pieces[:-1]) and not pieces[-1].flags & IPv4Flags.MF
    assert pieces[0].options == opt
    if len(pieces) > 1:
        # The security option (0x94, copy flag set) is copied; record route (7) is not.
        assert all(p.options == (opt if opt.startswith(b"\x94") else b"") for p in pieces[1:])


def test_df_set_is_never_fragmented() -> None:
    assert fragment(packet(1400, df=True), 1280) == []
    assert fragment(packet(100, df=True), 1280) == [packet(100, df=True)]


def test_garbage_is_not_fragmented() -> None:
    assert fragment(b"\x45\x00", 1280) == []
    with pytest.raises(ValueError):
        fragment(packet(10), 60)


def test_fragmentation_needed_carries_the_tunnel_mtu() -> None:
    big = packet(1460, df=True)
    reply = IPv4Packet.decode(icmp_error("frag_needed", big, GATEWAY, mtu=1460))
    assert (reply.src, reply.dst, reply.protocol) == (GATEWAY, MS, IPProto.ICMP)
    icmp = IcmpMessage.decode(reply.payload)
    assert (icmp.type, icmp.code, icmp.next_hop_mtu) == (3, 4, 1460)
    assert icmp.payload == big[:28]  # the header plus 8 bytes


def test_time_exceeded() -> None:
    reply = IPv4Packet.decode(icmp_error("ttl", packet(50), GATEWAY))
    icmp = IcmpMessage.decode(reply.payload)
    assert (icmp.type, icmp.code) == (11, 0)


def test_no_icmp_error_about_an_icmp_error_a_fragment_or_a_broadcast() -> None:
    error = icmp_error("ttl", packet(50), GATEWAY)
    assert error is not None
    assert icmp_error("ttl", error, GATEWAY) is None
    later = IPv4Packet(MS, CN, 17, b"x" * 16, fragment_offset=10).encode()
    assert icmp_error("ttl", later, GATEWAY) is None
    broadcast = IPv4Packet(MS, IPv4Address("255.255.255.255"), 17, b"x").encode()
    assert icmp_error("ttl", broadcast, GATEWAY) is None
    assert icmp_error("ttl", b"garbage", GATEWAY) is None
