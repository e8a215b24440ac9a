"""Write-side coalescing (``coalesce``, what the tunnel pumps write to a TAP/TUN with
``IFF_VNET_HDR``): consecutive in-order TCP segments of one flow become one super-packet. The
twins give the same bytes; ``segment`` (what the kernel does with a super-packet) gives the
input back byte for byte and in order, so every checksum stays valid; each super-packet is what
the kernel accepts: a valid IPv4 header checksum over the whole, the TCP checksum field holding
the pseudo-header sum over the whole TCP length, ``NEEDS_CSUM`` + ``GSO_TCPV4``; TCP/IPv6 the
same with the payload length for the whole and ``GSO_TCPV6``."""

from __future__ import annotations

import struct
from types import ModuleType

from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.fastpath.conftest import load
from tests.fastpath.packets import CN, DLMAP, DMPA, HOA, checksum, eth, header_checksum_ok

VNET = struct.Struct("=BBHHHH")
NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6 = 1, 1, 4
FIN, SYN, PSH, ACK, URG, CWR = 0x01, 0x02, 0x08, 0x10, 0x20, 0x80


def segment_packet(
    seq: int,
    ident: int,
    payload: bytes,
    *,
    flags: int = ACK,
    sport: int = 40000,
    tos: int = 0,
    options: bytes = b"",
    proto: int = 6,
    bad_tcp: bool = False,
    frag: int = 0,
    v6: bool = False,
) -> bytes:
    """An IPv4 TCP segment with both checksums right (unless ``bad_tcp``); ``v6``: TCP/IPv6
    (``ident`` unused, ``frag`` a Fragment header's next-header number instead of TCP)."""
    doff = (20 + len(options)) // 4
    th = bytearray(
        struct.pack("!HHIIBBHHH", sport, 5201, seq & 0xFFFFFFFF, 7, doff << 4, flags, 501, 0, 0)
        + options
        + payload
    )
    if v6:
        pseudo = DMPA + DLMAP + struct.pack("!IxxxB", len(th), 6)
        struct.pack_into("!H", th, 16, checksum(pseudo + bytes(th)) ^ (0x5A5A if bad_tcp else 0))
        nh = 44 if frag else (proto if proto != 6 else 6)
        return struct.pack("!IHBB", 0x60000000 | (tos << 20), len(th), nh, 64) + DMPA + DLMAP + th
    pseudo = struct.pack("!IIBBH", HOA, CN, 0, 6, len(th))
    struct.pack_into("!H", th, 16, checksum(pseudo + bytes(th)) ^ (0x5A5A if bad_tcp else 0))
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBHII",
            0x45,
            tos,
            20 + len(th),
            ident & 0xFFFF,
            0x4000 | frag,
            64,
            proto,
            0,
            HOA,
            CN,
        )
    )
    struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    return bytes(hdr + th)


STEPS = [
    "next",
    "next",
    "next",
    "next",
    "short",
    "psh",
    "fin",
    "gap",
    "id_skip",
    "other_flow",
    "udp",
    "bad_tcp",
    "bad_ip",
    "pure_ack",
    "cwr",
    "syn",
    "ce",
    "window",
    "fragment",
    "big",
]


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], int]:
    l2 = draw(st.sampled_from([0, 14]))
    v6 = draw(st.booleans())
    mss = draw(st.sampled_from([1, 7, 536, 1428, 1448, 1460]))
    options = draw(st.sampled_from([b"", bytes([1, 1, 8, 10]) + bytes(8)]))
    seq = draw(st.integers(0, 0xFFFFFFFF))
    ident = draw(st.integers(0, 0xFFFF))
    packets = []
    for step in draw(st.lists(st.sampled_from(STEPS), max_size=80)):
        size = mss
        kw: dict[str, object] = {"options": options, "v6": v6}
        if step == "short":
            size = draw(st.integers(1, mss))
        elif step == "psh":
            kw["flags"] = ACK | PSH
        elif step == "fin":
            kw["flags"] = ACK | FIN
        elif step == "gap":
            seq += 1
        elif step == "id_skip":
            ident += 2
        elif step == "other_flow":
            kw["sport"] = 40001
        elif step == "bad_tcp":
            kw["bad_tcp"] = True
        elif step == "pure_ack":
            size = 0
        elif step == "cwr":
            kw["flags"] = ACK | CWR
        elif step == "syn":
            kw["flags"] = ACK | SYN
        elif step == "ce":
            kw["tos"] = 3
        elif step == "window":
            kw["options"] = options + bytes(4) if len(options) < 40 else options
        elif step == "fragment":
            kw["frag"] = 0x2000
        elif step == "big":
            size = 9000
        payload = bytes((seq + i) & 0xFF for i in range(size))
        if step == "udp":
            p = segment_packet(seq, ident, payload, proto=17, v6=v6)
        else:
            p = segment_packet(seq, ident, payload, **kw)  # type: ignore[arg-type]
        if step == "bad_ip":  # IPv4: the header checksum; IPv6: the payload length
            p = p[:10] + bytes(2) + p[12:] if not v6 else p[:4] + bytes(2) + p[6:]
        packets.append(eth(p, ethertype=0x86DD if v6 else 0x0800) if l2 else p)
        seq += size
        ident += 1
    return packets, l2


def both(packets: list[bytes], l2: int) -> list[bytes]:
    results = [fp.coalesce(packets, l2) for fp in (load("reference"), load("compiled"))]
    assert results[0] == results[1]
    return results[0]


@settings(max_examples=300, deadline=None)
@given(streams())
def test_coalesce_is_undone_by_segment(case: tuple[list[bytes], int]) -> None:
    packets, l2 = case
    writes = both(packets, l2)
    again: list[bytes] = []
    for fp in (load("reference"), load("compiled")):
        again = []
        for w in writes:
            reason, segs = fp.segment(w, l2)
            assert reason == 0
            again += segs
        assert again == packets  # the same bytes, in the same order
    merged = 0
    for w in writes:
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET.unpack_from(w)
        if gso_type == 0:
            assert w[:10] == bytes(10)
            continue
        merged += 1
        ip = w[10 + l2 :]
        if ip[0] >> 4 == 6:
            t, gso = 40, GSO_TCPV6
            assert struct.unpack_from("!H", ip, 4)[0] == len(ip) - 40 and len(ip) <= 65535
            pseudo = ip[8:40] + struct.pack("!IxxxB", len(ip) - t, 6)
        else:
            t, gso = (ip[0] & 0x0F) * 4, GSO_TCPV4
            assert struct.unpack_from("!H", ip, 2)[0] == len(ip) <= 65535
            assert header_checksum_ok(ip)
            pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(ip) - t)
        assert (flags, gso_type, csum_start, csum_offset) == (NEEDS_CSUM, gso, l2 + t, 16)
        assert hdr_len == l2 + t + (ip[t + 12] >> 4) * 4 and gso_size > 0
        assert struct.unpack_from("!H", ip, t + 16)[0] == ~checksum(pseudo) & 0xFFFF
        assert len(ip) - hdr_len + l2 > gso_size  # more than one segment in it
    event(f"writes={'fewer' if len(writes) < len(packets) else 'as many'} merged={merged > 0}")


def test_a_flow_merges_into_one_write(twins: tuple[ModuleType, ModuleType]) -> None:
    packets = [segment_packet(1000 + i * 1448, 7 + i, bytes([i]) * 1448) for i in range(40)]
    packets.append(segment_packet(1000 + 40 * 1448, 47, b"end", flags=ACK | PSH))
    for fp in twins:
        writes = fp.coalesce(packets, 0)
        assert len(writes) == 1
        assert VNET.unpack_from(writes[0])[3] == 1448
        assert fp.segment(writes[0], 0)[1] == packets


def test_a_tcp_ipv6_flow_merges_into_one_gso_tcpv6_write(
    twins: tuple[ModuleType, ModuleType],
) -> None:
    packets = [
        eth(segment_packet(1000 + i * 1428, 0, bytes([i]) * 1428, v6=True), ethertype=0x86DD)
        for i in range(40)
    ]
    for fp in twins:
        writes = fp.coalesce(packets, 14)
        assert len(writes) == 1
        assert VNET.unpack_from(writes[0])[1:4] == (GSO_TCPV6, 14 + 40 + 20, 1428)
        assert fp.segment(writes[0], 14)[1] == packets
    # IPv4 and IPv6 segments of the same ports never merge with each other
    mixed = [segment_packet(0, 0, bytes(100)), segment_packet(100, 1, bytes(100), v6=True)]
    for fp in twins:
        assert len(fp.coalesce(mixed, 0)) == 2


def test_at_most_64k_per_write(twins: tuple[ModuleType, ModuleType]) -> None:
    packets = [segment_packet(i * 1448, i, bytes(1448)) for i in range(100)]
    for fp in twins:
        writes = fp.coalesce([eth(p) for p in packets], 14)
        assert [len(w) - 10 - 14 <= 65535 for w in writes] == [True] * len(writes)
        assert len(writes) == 3  # 45 segments of 1448 bytes fit one IPv4 packet


def test_engines_coalesce_only_with_vnet_header(twins: tuple[ModuleType, ModuleType]) -> None:
    for fp in twins:
        local = bytes(16)
        assert fp.Dlmap(fp.HoaTable(), local, vnet_hdr=True).coalesce
        assert not fp.Dlmap(fp.HoaTable(), local, vnet_hdr=True, coalesce=False).coalesce
        assert not fp.Dlmap(fp.HoaTable(), local).coalesce
