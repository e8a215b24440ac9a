"""Per-function unit tests of the data paths, run against both twins."""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import pytest

from fastpath.common import Reason, Verdict
from tests.fastpath.packets import (
    BROADCAST,
    CN,
    DLMAP,
    DMPA,
    ENCAP_LIMIT,
    GATEWAY,
    HOA,
    HOA2,
    MS_MAC,
    OTHER6,
    PSEUDO_MAC,
    dstopts,
    eth,
    header_checksum_ok,
    icmp_echo,
    ipv4,
    ipv6,
    udp,
)

R = Reason


def dmpa(fp: ModuleType, **kw: Any) -> Any:
    t = fp.HoaTable()
    t.bind(HOA, DLMAP, MS_MAC, link=2)
    return fp.Dmpa(t, DMPA, PSEUDO_MAC, GATEWAY, peers=[DLMAP], **kw)


def dlmap(fp: ModuleType, **kw: Any) -> Any:
    t = fp.HoaTable()
    t.bind(HOA, DMPA)
    return fp.Dlmap(t, DLMAP, peers=[DMPA], **kw)


def with_ttl(ip: bytes, ttl: int) -> bytes:
    """``ip`` with another TTL and a fully recomputed checksum."""
    from tests.fastpath.packets import checksum

    ihl = (ip[0] & 0x0F) * 4
    hdr = bytearray(ip[:ihl])
    hdr[8] = ttl
    hdr[10:12] = b"\x00\x00"
    hdr[10:12] = struct.pack("!H", checksum(bytes(hdr)))
    return bytes(hdr) + ip[ihl:]


def icmp_query(kind: int, body: int) -> bytes:
    """An ICMP query of type ``kind`` (identifier 1, sequence 1) with ``body`` zero bytes."""
    return struct.pack("!BBHHH", kind, 0, 0, 1, 1) + bytes(body)


def outer(inner: bytes, src: bytes, dst: bytes, hop: int = 64) -> bytes:
    return ipv6(inner, src=src, dst=dst, tc=inner[1], hop=hop)


# ---- DMPA: access link -> tunnel ----


def test_access_forward_encapsulates(fp: ModuleType) -> None:
    d = dmpa(fp)
    inner = ipv4(payload=udp(1000, 2000, b"hello"), tos=0xB9, ttl=9)
    out = bytearray(2048)
    assert d.from_access(eth(inner), 2, out) == (Verdict.FORWARD, R.FORWARDED, 40 + len(inner), -1)
    got = bytes(out[: 40 + len(inner)])
    assert got == outer(with_ttl(inner, 8), DMPA, DLMAP)  # TC = inner TOS (RFC 2473 / 6040)
    assert header_checksum_ok(got[40:])
    b = d.table.lookup(HOA)
    assert (b.packets, b.octets) == (1, len(inner))
    c = d.counters()
    assert c["uplink.forwarded"] == 1 and c["uplink.bytes"] == len(inner)


def test_access_ethernet_padding_is_not_tunnelled(fp: ModuleType) -> None:
    d = dmpa(fp)
    inner = ipv4(payload=b"")
    out = bytearray(2048)
    v, r, n, _ = d.from_access(eth(inner) + bytes(60 - 14 - len(inner)), 2, out)
    assert (v, r, n) == (Verdict.FORWARD, R.FORWARDED, 40 + len(inner))


def test_hop_limit_and_mtu_boundary(fp: ModuleType) -> None:
    d = dmpa(fp, hop_limit=7, tunnel_mtu=100)
    out = bytearray(2048)
    fits = ipv4(payload=bytes(80), df=True)
    assert len(fits) == 100
    assert d.from_access(eth(fits), 2, out)[1] == R.FORWARDED
    assert out[7] == 7
    assert d.from_access(eth(ipv4(payload=bytes(81), df=True)), 2, out)[:3] == (
        Verdict.PUNT,
        R.FRAG_NEEDED,
        0,
    )
    assert d.from_access(eth(ipv4(payload=bytes(81))), 2, out)[1] == R.FRAGMENT


@pytest.mark.parametrize(
    ("frame", "link", "reason"),
    [
        (eth(b"\x00" * 28, dst=BROADCAST, ethertype=0x0806), 2, R.ARP),
        (eth(ipv4(0, 0xFFFFFFFF, payload=udp(68, 67, b"x" * 10)), dst=BROADCAST), 2, R.DHCP),
        (eth(ipv4(0, 0xFFFFFFFF, payload=udp(68, 67)), dst=BROADCAST), 9, R.DHCP),
        (eth(ipv4(HOA, GATEWAY, proto=1, payload=icmp_echo())), 2, R.ICMP_GATEWAY),
        # The other queries to the gateway (RFC 792 timestamp, RFC 950 address mask) are
        # punted too, whatever their TTL, never tunnelled: the DMPA answers them.
        (eth(ipv4(HOA, GATEWAY, proto=1, payload=icmp_query(13, 12))), 2, R.ICMP_GATEWAY),
        (eth(ipv4(HOA, GATEWAY, proto=1, payload=icmp_query(17, 4))), 2, R.ICMP_GATEWAY),
        (eth(ipv4(HOA, GATEWAY, proto=1, ttl=1, payload=icmp_query(13, 12))), 2, R.ICMP_GATEWAY),
        (eth(ipv4(HOA2, CN)), 2, R.UNKNOWN_MS),
        (eth(ipv4(HOA, CN), src=bytes.fromhex("02aabbccdd02")), 2, R.SPOOFED_SRC),
        (eth(ipv4(HOA, CN)), 1, R.SPOOFED_SRC),
        (eth(ipv4(HOA, CN, ttl=1)), 2, R.TTL_EXPIRED),
        (eth(ipv4(HOA, CN, ttl=0)), 2, R.TTL_EXPIRED),
        (eth(ipv4(HOA, CN), dst=bytes.fromhex("02aabbccdd09")), 2, R.NOT_FOR_US),
        (eth(ipv4(HOA, 0xFFFFFFFF), dst=BROADCAST), 2, R.NOT_FOR_US),
        (eth(ipv4(HOA, CN), ethertype=0x88CC), 2, R.BAD_ETHERTYPE),
        # 0x86DD is a dual-stack MS's IPv6 (tests/fastpath/test_ipv6.py): 28 bytes are no
        # IPv6 header
        (eth(ipv4(HOA, CN), ethertype=0x86DD), 2, R.TRUNCATED),
        (eth(b"")[:13], 2, R.TRUNCATED),
        (eth(ipv4(HOA, CN)[:19]), 2, R.TRUNCATED),
        (eth(ipv4(HOA, CN)[:-1]), 2, R.TRUNCATED),
        (eth(b"\x60" + ipv4(HOA, CN)[1:]), 2, R.BAD_VERSION),
        (eth(b"\x44" + ipv4(HOA, CN)[1:]), 2, R.BAD_IHL),
        (eth(ipv4(HOA, CN)[:2] + b"\x00\x13" + ipv4(HOA, CN)[4:]), 2, R.BAD_LENGTH),
        (eth(ipv4(HOA, CN)[:11] + b"\x00" + ipv4(HOA, CN)[12:]), 2, R.BAD_CHECKSUM),
    ],
)
def test_access_classification(fp: ModuleType, frame: bytes, link: int, reason: Reason) -> None:
    d = dmpa(fp)
    out = bytearray(2048)
    verdict = Verdict.PUNT if reason <= R.FRAGMENT else Verdict.DROP
    assert d.from_access(frame, link, out) == (verdict, reason, 0, -1)
    assert d.counters()[f"uplink.{reason.name.lower()}"] == 1
    assert d.table.lookup(HOA).packets == 0


OWN_GATEWAY = 0xC000023E  # 192.0.2.62: an MS's gateway from its profile, not the node's


@pytest.mark.parametrize("ttl", [1, 64])
def test_an_ms_own_gateway_is_punted_not_tunnelled(fp: ModuleType, ttl: int) -> None:
    """Issue 15, defect 4: a gateway from the MS's profile (RADIUS 161, a PBA's default
    router) is answered by the DMPA like the node's: an echo to it is punted whatever its TTL
    (not Time Exceeded, not tunnelled to a DLMAP that does not own the address)."""
    d = dmpa(fp)
    d.table.bind(HOA, DLMAP, MS_MAC, link=2, gateway=OWN_GATEWAY)
    out = bytearray(2048)
    echo = eth(ipv4(HOA, OWN_GATEWAY, proto=1, ttl=ttl, payload=icmp_echo()))
    assert d.from_access(echo, 2, out) == (Verdict.PUNT, R.ICMP_GATEWAY, 0, -1)
    # the node's gateway stays answered too, and is no one else's to forward to
    echo = eth(ipv4(HOA, GATEWAY, proto=1, ttl=ttl, payload=icmp_echo()))
    assert d.from_access(echo, 2, out)[1] == R.ICMP_GATEWAY
    assert d.counters()["uplink.icmp_gateway"] == 2 and d.table.lookup(HOA).packets == 0


def test_another_ms_gateway_is_not_punted(fp: ModuleType) -> None:
    """The gateway is the MS's own: for an MS with none of its own (0, the node's), an echo to
    another MS's gateway is an ordinary packet; UDP to its own gateway is not a query."""
    d = dmpa(fp)
    d.table.bind(HOA2, DLMAP, bytes.fromhex("02aabbccdd02"), link=2, gateway=OWN_GATEWAY)
    out = bytearray(2048)
    echo = ipv4(HOA, OWN_GATEWAY, proto=1, payload=icmp_echo())
    assert d.from_access(eth(echo), 2, out)[1] == R.FORWARDED
    d.table.bind(HOA, DLMAP, MS_MAC, link=2, gateway=OWN_GATEWAY)
    assert d.from_access(eth(ipv4(HOA, OWN_GATEWAY)), 2, out)[1] == R.FORWARDED
    # a spoofed source does not get the gateway answered for it
    spoof = eth(echo, src=bytes.fromhex("02aabbccdd09"))
    assert d.from_access(spoof, 2, out)[1] == R.SPOOFED_SRC


def test_dhcp_in_a_later_fragment_is_not_dhcp(fp: ModuleType) -> None:
    d = dmpa(fp)
    frame = eth(ipv4(0, 0xFFFFFFFF, payload=udp(68, 67), frag=1), dst=BROADCAST)
    assert d.from_access(frame, 2, bytearray(2048))[1] == R.NOT_FOR_US


def test_options_are_carried(fp: ModuleType) -> None:
    d = dmpa(fp)
    inner = ipv4(HOA, CN, options=b"\x01\x01\x01\x00")  # NOP NOP NOP EOL
    out = bytearray(2048)
    assert d.from_access(eth(inner), 2, out)[1] == R.FORWARDED
    assert bytes(out[40 : 40 + len(inner)]) == with_ttl(inner, 63)


def test_no_room_never_truncates(fp: ModuleType) -> None:
    d = dmpa(fp)
    out = bytearray(40 + 27)
    assert d.from_access(eth(ipv4(payload=bytes(8))), 2, out)[1] == R.NO_ROOM
    assert out == bytearray(67)
    assert d.from_access(eth(ipv4(payload=bytes(8))), 2, bytearray())[1] == R.NO_ROOM


# ---- DMPA: tunnel -> access link ----


def test_tunnel_to_access(fp: ModuleType) -> None:
    d = dmpa(fp)
    inner = ipv4(CN, HOA, payload=udp(53, 4000, b"answer"), ttl=30)
    out = bytearray(2048)
    n = 14 + len(inner)
    assert d.from_tunnel(DLMAP, inner, out) == (Verdict.FORWARD, R.FORWARDED, n, 2)
    assert bytes(out[:n]) == MS_MAC + PSEUDO_MAC + b"\x08\x00" + with_ttl(inner, 29)
    assert d.counters()["downlink.forwarded"] == 1


@pytest.mark.parametrize(
    ("src", "packet", "reason"),
    [
        (OTHER6, ipv4(CN, HOA), R.SRC_NOT_BOUND),
        (DLMAP, ipv4(CN, HOA2), R.NO_BINDING),
        (DLMAP, ipv4(CN, HOA, ttl=1), R.TTL_EXPIRED),
        (DLMAP, ipv4(GATEWAY, 0xFFFFFFFF, payload=udp(67, 68)), R.DHCP),
        (OTHER6, ipv4(GATEWAY, 0xFFFFFFFF, payload=udp(67, 68)), R.NO_BINDING),
        (DLMAP, ipv4(CN, HOA) + b"\x00", R.BAD_LENGTH),
        (DLMAP, ipv4(CN, HOA)[:-1], R.TRUNCATED),
        (DLMAP[:4], ipv4(CN, HOA), R.BAD_LENGTH),
    ],
)
def test_tunnel_to_access_checks(fp: ModuleType, src: bytes, packet: bytes, reason: Reason) -> None:
    d = dmpa(fp)
    assert d.from_tunnel(src, packet, bytearray(2048))[1] == reason
    assert d.counters()[f"downlink.{reason.name.lower()}"] == 1


@pytest.mark.parametrize(
    "opts",
    [
        ENCAP_LIMIT,
        bytes([1, 4, 0, 0, 0, 0]),  # PadN only
        bytes([0x3E, 2, 0, 0]),  # unknown, top bits 00: skip it (RFC 8200 4.2)
        b"",
    ],
)
def test_whole_ipv6_with_destination_options(fp: ModuleType, opts: bytes) -> None:
    d = dmpa(fp)
    inner = ipv4(CN, HOA, payload=udp(1, 2, b"z"))
    out = bytearray(2048)
    pkt = ipv6(dstopts(4, opts) + inner, nh=60)
    assert d.from_tunnel_ipv6(pkt, out)[:3] == (Verdict.FORWARD, R.FORWARDED, 14 + len(inner))
    assert bytes(out[14 : 14 + len(inner)]) == with_ttl(inner, 63)


@pytest.mark.parametrize(
    ("pkt", "reason"),
    [
        (ipv6(ipv4(CN, HOA))[:39], R.TRUNCATED),
        (b"\x40" + ipv6(ipv4(CN, HOA))[1:], R.BAD_VERSION),
        (ipv6(ipv4(CN, HOA))[:-1], R.TRUNCATED),
        (ipv6(ipv4(CN, HOA)) + b"\x00", R.BAD_LENGTH),
        (ipv6(ipv4(CN, HOA), dst=OTHER6), R.NOT_FOR_US),
        (ipv6(ipv4(CN, HOA), nh=41), R.BAD_NEXT_HEADER),
        (ipv6(dstopts(41, ENCAP_LIMIT) + ipv4(CN, HOA), nh=60), R.BAD_NEXT_HEADER),
        (ipv6(dstopts(4, bytes([0x80, 2, 0, 0])) + ipv4(CN, HOA), nh=60), R.BAD_OPTION),
        (ipv6(dstopts(4, bytes([4, 2, 4, 0])) + ipv4(CN, HOA), nh=60), R.BAD_OPTION),
        (ipv6(dstopts(4, bytes([1, 9])) + ipv4(CN, HOA), nh=60), R.BAD_OPTION),
        (ipv6(bytes([4, 0]), nh=60), R.TRUNCATED),
        (ipv6(bytes([4]), nh=60), R.TRUNCATED),
        (ipv6(ipv4(CN, HOA), src=OTHER6), R.SRC_NOT_BOUND),
        (ipv6(ipv4(CN, HOA), tc=3), R.ECN_NOT_ECT),
    ],
)
def test_whole_ipv6_checks(fp: ModuleType, pkt: bytes, reason: Reason) -> None:
    d = dmpa(fp)
    assert d.from_tunnel_ipv6(pkt, bytearray(2048))[1] == reason
    assert d.counters()[f"downlink.{reason.name.lower()}"] == 1


@pytest.mark.parametrize(
    ("outer_ecn", "inner_ecn", "want"),
    [(3, 1, 3), (3, 2, 3), (3, 3, 3), (1, 2, 2), (2, 0, 0), (0, 1, 1)],
)
def test_ecn_decapsulation(fp: ModuleType, outer_ecn: int, inner_ecn: int, want: int) -> None:
    """RFC 6040 normal mode: outer CE marks an ECN-capable inner packet CE; nothing else."""
    d = dmpa(fp)
    inner = ipv4(CN, HOA, tos=0xB8 | inner_ecn)
    out = bytearray(2048)
    assert d.from_tunnel_ipv6(ipv6(inner, tc=0xB8 | outer_ecn), out)[1] == R.FORWARDED
    ip = bytes(out[14 : 14 + len(inner)])
    assert ip[1] == 0xB8 | want
    assert header_checksum_ok(ip)


# ---- DLMAP ----


def test_dlmap_tunnel_to_tun_keeps_the_packet(fp: ModuleType) -> None:
    d = dlmap(fp)
    inner = ipv4(HOA, CN, payload=udp(5, 6, b"up"))
    out = bytearray(2048)
    assert d.from_tunnel(DMPA, inner, out) == (Verdict.FORWARD, R.FORWARDED, len(inner), -1)
    assert bytes(out[: len(inner)]) == inner  # the kernel decrements the TTL after the TUN
    assert d.from_tunnel_ipv6(ipv6(inner, src=DMPA, dst=DLMAP), out)[1] == R.FORWARDED
    assert bytes(out[: len(inner)]) == inner


@pytest.mark.parametrize(
    ("src", "packet", "reason"),
    [
        (DMPA, ipv4(0, 0xFFFFFFFF, payload=udp(68, 67)), R.DHCP),
        (DMPA, ipv4(HOA2, 0xFFFFFFFF, payload=udp(68, 67)), R.DHCP),  # before the binding check
        (OTHER6, ipv4(0, 0xFFFFFFFF, payload=udp(68, 67)), R.UNKNOWN_PEER),
        (OTHER6, ipv4(HOA, CN), R.SRC_NOT_BOUND),
        (DMPA, ipv4(HOA2, CN), R.SRC_NOT_BOUND),
        (DMPA, ipv4(HOA, CN, ttl=1), R.FORWARDED),
    ],
)
def test_dlmap_tunnel_checks(fp: ModuleType, src: bytes, packet: bytes, reason: Reason) -> None:
    d = dlmap(fp)
    assert d.from_tunnel(src, packet, bytearray(2048))[1] == reason
    assert d.counters()[f"uplink.{reason.name.lower()}"] == 1


def test_dlmap_punts_dhcp_to_port_67_of_an_unbound_address_only(fp: ModuleType) -> None:
    """A DHCP server's answer to another relay's giaddr in the HoA network (RFC 2131 4.1: to
    its port 67) reaches the DLMAP's TUN: with no binding for that address it is punted for the
    relay to learn the lease from (issue 15, relay rules); to a bound HoA, or to another port,
    nothing changes."""
    d = dlmap(fp)
    out = bytearray(2048)
    to_relay = ipv4(CN, HOA2, payload=udp(67, 67, b"bootreply"))
    assert d.from_tun(to_relay, out) == (Verdict.PUNT, R.DHCP, 0, -1)
    assert d.from_tun(ipv4(CN, HOA2, payload=udp(67, 68)), out)[1] == R.NO_BINDING
    assert d.from_tun(ipv4(CN, HOA, payload=udp(67, 67)), out)[1] == R.FORWARDED
    assert d.from_tun(ipv4(CN, HOA2, payload=udp(67, 67), frag=1), out)[1] == R.NO_BINDING
    assert d.counters()["downlink.dhcp"] == 1


def test_dlmap_tun_to_tunnel(fp: ModuleType) -> None:
    d = dlmap(fp, hop_limit=200)
    inner = ipv4(CN, HOA, tos=0x2A, payload=udp(80, 5000, b"down"))
    out = bytearray(2048)
    assert d.from_tun(inner, out) == (Verdict.FORWARD, R.FORWARDED, 40 + len(inner), -1)
    assert bytes(out[: 40 + len(inner)]) == outer(inner, DLMAP, DMPA, hop=200)
    assert d.from_tun(ipv4(CN, HOA2), out)[1] == R.NO_BINDING
    big = ipv4(CN, HOA, payload=bytes(1441), df=True)
    assert d.from_tun(big, out)[1] == R.FRAG_NEEDED
    assert d.from_tun(ipv4(CN, HOA, payload=bytes(1441)), out)[1] == R.FRAGMENT
    assert d.from_tun(ipv4(CN, HOA, payload=bytes(1440)), out)[1] == R.FORWARDED
    c = d.counters()
    assert (c["downlink.forwarded"], c["downlink.frag_needed"], c["downlink.no_binding"]) == (
        2,
        1,
        1,
    )


def test_encapsulate_then_decapsulate_is_the_identity(fp: ModuleType) -> None:
    a = dlmap(fp)  # encapsulates towards DMPA
    t = fp.HoaTable()
    t.bind(CN, DLMAP)  # the far end checks the inner source against the outer source
    b = fp.Dlmap(t, DMPA)
    for size in (0, 100, 1400):
        inner = ipv4(CN, HOA, payload=bytes(range(256)) * 6)[: 20 + size]
        inner = ipv4(CN, HOA, payload=inner[20:], tos=0x11)
        mid, out = bytearray(2048), bytearray(2048)
        n = a.from_tun(inner, mid)[2]
        assert b.from_tunnel_ipv6(bytes(mid[:n]), out)[1:3] == (R.FORWARDED, len(inner))
        assert bytes(out[: len(inner)]) == inner


# ---- batches in memory ----


def test_batches_match_single_calls(fp: ModuleType) -> None:
    frames = [
        eth(ipv4(HOA, CN, payload=bytes(i))) if i % 3 else eth(ipv4(HOA2, CN)) for i in range(64)
    ]
    d1, d2 = dmpa(fp), dmpa(fp)
    inp, out = fp.Batch(64, 2048), fp.Batch(64, 2048 + 40)
    for f in frames:
        inp.append(f, link=2)
    assert len(inp) == 64 and inp.data(5) == frames[5] and inp.link(5) == 2
    fwd = d1.access_batch(inp, out)
    scratch = bytearray(2048 + 40)
    expected_fwd = 0
    for i, f in enumerate(frames):
        v, r, n, link = d2.from_access(f, 2, scratch)
        assert (out.reason(i), out.link(i)) == (r, link)
        assert out.data(i) == (bytes(scratch[:n]) if v == Verdict.FORWARD else b"")
        expected_fwd += v == Verdict.FORWARD
    assert fwd == expected_fwd == 42
    assert d1.counters() == d2.counters()
    with pytest.raises(ValueError):
        d1.access_batch(inp, fp.Batch(64, 2048))  # output slots must be 40 bytes longer
    with pytest.raises(IndexError):
        out.data(64)
    inp.clear()
    assert len(inp) == 0


def test_dlmap_batches(fp: ModuleType) -> None:
    d = dlmap(fp)
    inp, out = fp.Batch(8), fp.Batch(8, 2048 + 40)
    inp.append(ipv4(CN, HOA))
    inp.append(ipv4(CN, HOA2))
    assert d.tun_batch(inp, out) == 1
    assert [out.reason(i) for i in range(2)] == [R.FORWARDED, R.NO_BINDING]
    inp.clear()
    inp.append(ipv4(HOA, CN), addr=DMPA)
    inp.append(ipv4(HOA, CN), addr=OTHER6)
    assert d.tunnel_batch(inp, out) == 1
    assert out.data(0) == ipv4(HOA, CN)
    assert out.reason(1) == R.SRC_NOT_BOUND
