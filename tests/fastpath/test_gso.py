"""TAP/TUN offload: ``segment`` turns what a TAP/TUN with ``IFF_VNET_HDR`` and TSO4/TSO6 gives
into the packets the kernel would have given without offloads. The twins agree on random and
malformed input; the segments carry valid IPv4 and TCP checksums (IPv6: the payload length and
the TCP checksum over the IPv6 pseudo-header), the payload in order and without gaps,
consecutive sequence numbers and IPv4 IDs, FIN/PSH on the last only, CWR on the first only, and
each fits ``gso_size``."""

from __future__ import annotations

import struct
from types import ModuleType

from hypothesis import event, given, settings
from hypothesis import strategies as st

from fastpath.common import Reason
from tests.fastpath.conftest import load
from tests.fastpath.packets import (
    CN,
    DLMAP,
    DMPA,
    HOA,
    checksum,
    eth,
    header_checksum_ok,
    ipv4,
    ipv6,
    udp,
)

VNET = struct.Struct("=BBHHHH")
NEEDS_CSUM, GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_ECN = 1, 0, 1, 3, 4, 0x80
FIN, SYN, PSH, ACK, CWR = 0x01, 0x02, 0x08, 0x10, 0x80


def tcp(seq: int, flags: int, payload: bytes, options: bytes = b"") -> bytes:
    doff = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", 40000, 5201, seq, 7, doff << 4, flags, 65535, 0, 0)
        + options
        + payload
    )


def tcp_checksum_ok(ip: bytes) -> bool:
    if ip[0] >> 4 == 6:
        seg = ip[40:]
        return checksum(ip[8:40] + struct.pack("!IxxxB", len(seg), 6) + seg) == 0
    ihl = (ip[0] & 0x0F) * 4
    seg = ip[ihl:]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(seg))
    return checksum(pseudo + seg) == 0


def vnet(flags: int, gso_type: int, gso_size: int, csum_start: int, csum_offset: int) -> bytes:
    return VNET.pack(flags, gso_type, 0, gso_size, csum_start, csum_offset)


@st.composite
def super_packets(draw: st.DrawFn) -> tuple[bytes, int, int, int, bytes]:
    """(virtio-net header + frame, l2len, gso_size, flags, payload) as a TAP/TUN gives it."""
    l2 = draw(st.sampled_from([0, 14]))
    payload = draw(st.binary(max_size=3000)) + bytes(draw(st.integers(0, 20000)))
    flags = ACK | draw(st.sampled_from([0, FIN, PSH, PSH | FIN, CWR, CWR | PSH]))
    options = draw(st.sampled_from([b"", bytes([1, 1, 8, 10]) + bytes(8)]))
    seq = draw(st.integers(0, 0xFFFFFFFF))
    gso_size = draw(st.sampled_from([1, 536, 1428, 1448, 1460, 9000]))
    if draw(st.booleans()):  # TCP/IPv6 (TSO6)
        packet = ipv6(
            tcp(seq, flags, payload, options), DMPA, DLMAP, nh=6, tc=draw(st.integers(0, 255))
        )
        gso_type = draw(st.sampled_from([GSO_TCPV6, GSO_TCPV6 | GSO_ECN]))
        frame = eth(packet, ethertype=0x86DD) if l2 else packet
        return vnet(NEEDS_CSUM, gso_type, gso_size, 0, 0) + frame, l2, gso_size, flags, payload
    ip_opts = draw(st.sampled_from([b"", bytes([1, 1, 1, 0])]))
    packet = ipv4(HOA, CN, 6, tcp(seq, flags, payload, options), df=True, options=ip_opts)
    gso_type = draw(st.sampled_from([GSO_TCPV4, GSO_TCPV4 | GSO_ECN]))
    frame = eth(packet) if l2 else packet
    return vnet(NEEDS_CSUM, gso_type, gso_size, 0, 0) + frame, l2, gso_size, flags, payload


def both(buf: bytes, l2: int) -> tuple[int, list[bytes]]:
    results = [fp.segment(buf, l2) for fp in (load("reference"), load("compiled"))]
    assert results[0] == results[1]
    return results[0]


@settings(max_examples=200, deadline=None)
@given(super_packets())
def test_tcp_segmentation(case: tuple[bytes, int, int, int, bytes]) -> None:
    buf, l2, gso_size, flags, payload = case
    reason, segs = both(buf, l2)
    assert reason == Reason.FORWARDED
    event(f"segments={'1' if len(segs) == 1 else 'many'}")
    assert len(segs) == max(1, -(-len(payload) // gso_size))
    original = buf[10 + l2 :]
    v6 = original[0] >> 4 == 6
    event(f"IPv{6 if v6 else 4}")
    ihl = 40 if v6 else (original[0] & 0x0F) * 4
    seq0 = struct.unpack_from("!I", original, ihl + 4)[0]
    id0 = struct.unpack_from("!H", original, 4)[0]
    data = b""
    for i, seg in enumerate(segs):
        assert seg[:l2] == buf[10 : 10 + l2]
        ip = seg[l2:]
        assert tcp_checksum_ok(ip)
        if v6:  # everything but the payload length as it was
            assert struct.unpack_from("!H", ip, 4)[0] == len(ip) - 40
            assert ip[:4] + ip[6:44] == original[:4] + original[6:44]
        else:
            assert header_checksum_ok(ip)
            assert struct.unpack_from("!H", ip, 2)[0] == len(ip)
            assert struct.unpack_from("!H", ip, 4)[0] == (id0 + i) & 0xFFFF
            assert ip[6] & 0x40  # DF kept
            assert (
                ip[: ihl + 4]
                == original[:2] + ip[2:6] + original[6:10] + ip[10:12] + (original[12 : ihl + 4])
            )
        doff = (ip[ihl + 12] >> 4) * 4
        body = ip[ihl + doff :]
        assert len(body) <= gso_size
        assert struct.unpack_from("!I", ip, ihl + 4)[0] == (seq0 + len(data)) & 0xFFFFFFFF
        data += body
        f = ip[ihl + 13]
        last, first = i == len(segs) - 1, i == 0
        assert f & (FIN | PSH) == (flags & (FIN | PSH) if last else 0)
        assert f & CWR == (flags & CWR if first else 0)
    assert data == payload


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([0, 14]), st.booleans())
def test_partial_checksum_completed(payload: bytes, l2: int, is_udp: bool) -> None:
    """NEEDS_CSUM without GSO: the field holds the pseudo-header sum; the result is the full
    checksum (UDP: a computed 0 is sent as 0xFFFF)."""
    l4 = udp(40000, 5201, payload) if is_udp else tcp(1, ACK | PSH, payload)
    proto = 17 if is_udp else 6
    packet = bytearray(ipv4(HOA, CN, proto, l4))
    offset = 6 if is_udp else 16
    pseudo = packet[12:20] + struct.pack("!BBH", 0, proto, len(l4))
    partial_sum = ~checksum(pseudo) & 0xFFFF
    struct.pack_into("!H", packet, 20 + offset, partial_sum)
    frame = eth(bytes(packet)) if l2 else bytes(packet)
    reason, out = both(vnet(NEEDS_CSUM, GSO_NONE, 0, l2 + 20, offset) + frame, l2)
    assert reason == Reason.FORWARDED and len(out) == 1
    ip = out[0][l2:]
    assert ip[:20] == packet[:20] and ip[20 + offset + 2 :] == packet[20 + offset + 2 :]
    assert checksum(pseudo + ip[20:]) == 0  # 0xFFFF for a computed 0 checks as well


def test_plain_packet_passes_unchanged(twins: tuple[ModuleType, ModuleType]) -> None:
    frame = eth(ipv4(HOA, CN, 17, udp(1, 2, b"abc")))
    for fp in twins:
        assert fp.segment(vnet(0, GSO_NONE, 0, 0, 0) + frame, 14) == (Reason.FORWARDED, [frame])


def test_bad_headers_are_bad_gso(twins: tuple[ModuleType, ModuleType]) -> None:
    good = ipv4(HOA, CN, 6, tcp(1, ACK, bytes(3000)))
    good6 = ipv6(tcp(1, ACK, bytes(3000)), nh=6)
    cases = [
        (b"", 0),
        (bytes(9), 0),
        (vnet(NEEDS_CSUM, GSO_UDP, 1400, 0, 0) + good, 0),  # not offered
        (vnet(NEEDS_CSUM, GSO_TCPV4, 0, 0, 0) + good, 0),  # gso_size 0
        (vnet(NEEDS_CSUM, GSO_TCPV4, 1400, 0, 0) + ipv4(HOA, CN, 17, bytes(3000)), 0),  # UDP
        (vnet(NEEDS_CSUM, GSO_TCPV4, 1400, 0, 0) + eth(good, ethertype=0x86DD), 14),
        (vnet(NEEDS_CSUM, GSO_TCPV4, 1400, 0, 0) + good[:30], 0),  # TCP header cut
        (vnet(NEEDS_CSUM, GSO_NONE, 0, 20, 4000) + good, 0),  # field outside the packet
        # TSO6: the type must be the packet's, TCP right after the fixed header
        (vnet(NEEDS_CSUM, GSO_TCPV6, 1400, 0, 0) + good, 0),  # IPv4 under TCPV6
        (vnet(NEEDS_CSUM, GSO_TCPV4, 1400, 0, 0) + good6, 0),  # IPv6 under TCPV4
        (vnet(NEEDS_CSUM, GSO_TCPV6, 1400, 0, 0) + eth(good6), 14),  # ethertype IPv4
        (vnet(NEEDS_CSUM, GSO_TCPV6, 1400, 0, 0) + ipv6(bytes(3000), nh=17), 0),  # UDP
        (vnet(NEEDS_CSUM, GSO_TCPV6, 1400, 0, 0) + ipv6(bytes(3000), nh=60), 0),  # options
        (vnet(NEEDS_CSUM, GSO_TCPV6, 1400, 0, 0) + good6[:50], 0),  # TCP header cut
        (vnet(NEEDS_CSUM, GSO_TCPV6, 0, 0, 0) + good6, 0),  # gso_size 0
    ]
    for buf, l2 in cases:
        for fp in twins:
            assert fp.segment(buf, l2) == (Reason.BAD_GSO, []), buf[:12].hex()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([0, 14]))
def test_garbage_agrees(buf: bytes, l2: int) -> None:
    reason, _ = both(buf, l2)
    event(Reason(reason).name)
