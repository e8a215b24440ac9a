"""IPv6-in-IPv6 (next header 41) for dual-stack MSs in both twins: one named path per test
(classify, prefix lookup, encapsulation, decapsulation, hop limit, anti-spoofing of the inner
source prefix), then Hypothesis comparing the twins on random and malformed IPv6."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fastpath.common import Reason, Verdict
from tests.fastpath.conftest import load
from tests.fastpath.packets import DLMAP, DMPA, GATEWAY, MS_MAC, OTHER6, PSEUDO_MAC, eth, ipv6
from tests.fastpath.test_twins import MTUS, likely, mutated

R = Reason
P1 = 0x20010DB8FF000017  # 2001:db8:ff00:17::/64, the MS's prefix
P2 = 0x20010DB8FF000018  # another MS's, served through OTHER6
MS6 = P1.to_bytes(8, "big") + bytes.fromhex("00000000000012ff")
MS6B = P2.to_bytes(8, "big") + bytes(7) + b"\x01"
CN6 = bytes.fromhex("20010db8007100000000000000000002")  # 2001:db8:71::2
LL = bytes.fromhex("fe80000000000000000000fffe000001")
ROUTER_LL = bytes.fromhex("fe800000000000000000000000000001")  # fe80::1
ALL_ROUTERS = bytes.fromhex("ff020000000000000000000000000002")
ADDRS = [MS6, MS6B, CN6, LL, ALL_ROUTERS, bytes(16)]
MCAST_MAC = bytes.fromhex("333300000002")


def inner6(
    src: bytes = MS6,
    dst: bytes = CN6,
    nh: int = 17,
    payload: bytes = b"x" * 16,
    *,
    hop: int = 64,
    tc: int = 0,
) -> bytes:
    return ipv6(payload, src=src, dst=dst, nh=nh, tc=tc, hop=hop)


def engines(fp: ModuleType, mtu: int = 1460) -> tuple[Any, Any]:
    t1 = fp.HoaTable()
    t1.bind_prefix(P1, DLMAP, MS_MAC, link=1)
    t1.bind_prefix(P2, OTHER6, MS_MAC, link=0)
    dm = fp.Dmpa(t1, DMPA, PSEUDO_MAC, GATEWAY, tunnel_mtu=mtu, peers=[DLMAP])
    t2 = fp.HoaTable()
    t2.bind_prefix(P1, DMPA)
    t2.bind_prefix(P2, OTHER6)
    dl = fp.Dlmap(t2, DLMAP, tunnel_mtu=mtu, peers=[DMPA])
    return dm, dl


def verdict_of(reason: Reason) -> Verdict:
    if reason == R.FORWARDED:
        return Verdict.FORWARD
    return Verdict.PUNT if reason <= R.FRAGMENT else Verdict.DROP


# --- the paths, one by one ----------------------------------------------------------------


def test_uplink_is_encapsulated_with_next_header_41_and_the_hop_limit_decremented(
    fp: ModuleType,
) -> None:
    dm, dl = engines(fp)
    packet = inner6(tc=0xB9, hop=64)
    out = bytearray(2048)
    v, reason, n, link = dm.from_access(eth(packet, ethertype=0x86DD), 1, out)
    assert (v, reason, n, link) == (Verdict.FORWARD, R.FORWARDED, 40 + len(packet), -1)
    outer = bytes(out[:n])
    assert outer[6] == 41 and outer[7] == 64  # next header, the configured hop limit
    assert outer[8:24] == DMPA and outer[24:40] == DLMAP
    assert ((outer[0] & 0x0F) << 4) | (outer[1] >> 4) == 0xB9  # traffic class copied
    assert outer[40 + 7] == 63 and outer[40:47] == packet[:7] and outer[48:] == packet[8:]
    assert dm.table.lookup_prefix(P1).packets == 1
    # the DLMAP takes it whole (its inner source prefix is that DMPA's MS's) into the TUN
    back = bytearray(2048)
    v, reason, m, _ = dl.from_tunnel_ipv6(outer, back)
    assert (v, reason) == (Verdict.FORWARD, R.FORWARDED)
    assert bytes(back[:m]) == outer[40:]
    assert dl.table.lookup_prefix(P1).octets == len(packet)


def test_downlink_goes_to_the_dmpa_serving_the_prefix_and_down_its_link(fp: ModuleType) -> None:
    dm, dl = engines(fp)
    packet = inner6(CN6, MS6, hop=30)
    out = bytearray(2048)
    v, reason, n, _ = dl.from_tun(packet, out)
    assert (v, reason) == (Verdict.FORWARD, R.FORWARDED)
    assert out[6] == 41 and bytes(out[24:40]) == DMPA and bytes(out[40:n]) == packet
    frame = bytearray(2048)
    v, reason, m, link = dm.from_tunnel(DLMAP, bytes(out[40:n]), frame)
    assert (v, reason, link) == (Verdict.FORWARD, R.FORWARDED, 1)
    assert bytes(frame[:14]) == MS_MAC + PSEUDO_MAC + b"\x86\xdd"
    assert frame[14 + 7] == 29 and bytes(frame[14:m]) == packet[:7] + b"\x1d" + packet[8:]


@pytest.mark.parametrize(
    ("frame", "link", "reason"),
    [
        # Neighbor Discovery for the router: punted (as ICMP to the gateway) to the ND service
        (
            eth(
                inner6(LL, ALL_ROUTERS, 58, b"\x85\x00" + bytes(6), hop=255),
                MCAST_MAC,
                ethertype=0x86DD,
            ),
            1,
            R.ICMP_GATEWAY,
        ),
        (
            eth(
                inner6(
                    bytes(16),
                    bytes.fromhex("ff0200000000000000000001ff0012ff"),
                    58,
                    b"\x87\x00" + bytes(22),
                    hop=255,
                ),
                bytes.fromhex("3333ff0012ff"),
                ethertype=0x86DD,
            ),
            1,
            R.ICMP_GATEWAY,
        ),
        (
            eth(inner6(MS6, ROUTER_LL, 58, b"\x87\x00" + bytes(22), hop=255), ethertype=0x86DD),
            1,
            R.ICMP_GATEWAY,
        ),
        # other multicast and link-local traffic stays on the link
        (
            eth(
                inner6(LL, bytes.fromhex("ff020000000000000000000000000016"), 0),
                bytes.fromhex("333300000016"),
                ethertype=0x86DD,
            ),
            1,
            R.NOT_FOR_US,
        ),
        (eth(inner6(LL, CN6), ethertype=0x86DD), 1, R.NOT_FOR_US),
        (eth(inner6(MS6, ROUTER_LL, 17), ethertype=0x86DD), 1, R.NOT_FOR_US),
        (eth(inner6(), bytes.fromhex("02aabbccdd09"), ethertype=0x86DD), 1, R.NOT_FOR_US),
        # the source prefix: unknown (maybe a new MS), another MS's, the right one on the
        # wrong link or from the wrong MAC (anti-spoofing)
        (eth(inner6(CN6, MS6), ethertype=0x86DD), 1, R.UNKNOWN_MS),
        (eth(inner6(MS6), ethertype=0x86DD), 0, R.SPOOFED_SRC),
        (eth(inner6(MS6), src=bytes.fromhex("02aabbccdd02"), ethertype=0x86DD), 1, R.SPOOFED_SRC),
        (eth(inner6(MS6B), ethertype=0x86DD), 1, R.SPOOFED_SRC),
        (eth(inner6(hop=1), ethertype=0x86DD), 1, R.TTL_EXPIRED),
        (eth(inner6(hop=0), ethertype=0x86DD), 1, R.TTL_EXPIRED),
        (eth(inner6(payload=bytes(1500)), ethertype=0x86DD), 1, R.FRAG_NEEDED),
        (eth(inner6()[:39], ethertype=0x86DD), 1, R.TRUNCATED),
        (eth(inner6()[:-1], ethertype=0x86DD), 1, R.TRUNCATED),
        (eth(b"\x40" + inner6()[1:], ethertype=0x86DD), 1, R.BAD_VERSION),
    ],
)
def test_access_classification(fp: ModuleType, frame: bytes, link: int, reason: Reason) -> None:
    dm, _ = engines(fp)
    out = bytearray(2048)
    assert dm.from_access(frame, link, out) == (verdict_of(reason), reason, 0, -1)
    assert dm.counters()[f"uplink.{reason.name.lower()}"] == 1
    assert dm.table.lookup_prefix(P1).packets == 0


def test_ethernet_padding_after_the_payload_length_is_ignored(fp: ModuleType) -> None:
    dm, _ = engines(fp)
    out = bytearray(2048)
    assert dm.from_access(eth(inner6(), ethertype=0x86DD) + bytes(6), 1, out)[1] == R.FORWARDED


@pytest.mark.parametrize(
    ("src", "packet", "reason"),
    [
        (DMPA, inner6(MS6, CN6), R.FORWARDED),
        (OTHER6, inner6(MS6, CN6), R.SRC_NOT_BOUND),  # the prefix is DMPA's MS's
        (DMPA, inner6(MS6B, CN6), R.SRC_NOT_BOUND),
        (DMPA, inner6(CN6, CN6), R.SRC_NOT_BOUND),
        (DMPA, inner6(MS6, CN6) + b"x", R.BAD_LENGTH),
        (DMPA, inner6(MS6, CN6)[:-1], R.TRUNCATED),
    ],
)
def test_dlmap_tunnel_input_checks_the_inner_source_prefix(
    fp: ModuleType, src: bytes, packet: bytes, reason: Reason
) -> None:
    _, dl = engines(fp)
    out = bytearray(2048)
    assert dl.from_tunnel(src, packet, out)[1] == reason


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (ipv6(inner6(MS6, CN6), src=DMPA, dst=DLMAP, nh=41), R.FORWARDED),
        (ipv6(inner6(MS6, CN6), src=DMPA, dst=DLMAP, nh=4), R.BAD_VERSION),
        (ipv6(b"\x45" + bytes(27), src=DMPA, dst=DLMAP, nh=41), R.BAD_NEXT_HEADER),
        (ipv6(inner6(MS6, CN6), src=DMPA, dst=DLMAP, nh=41, tc=3), R.FORWARDED),  # CE on not-ECT
    ],
)
def test_whole_packets_carry_the_version_their_next_header_says(
    fp: ModuleType, packet: bytes, reason: Reason
) -> None:
    _, dl = engines(fp)
    out = bytearray(2048)
    got = dl.from_tunnel_ipv6(packet, out)[1]
    if packet[1] >> 4 & 3 == 3:
        reason = R.ECN_NOT_ECT  # RFC 6040: outer CE over a not-ECT inner packet is dropped
    assert got == reason


def test_outer_ce_marks_an_ect_inner_packet(fp: ModuleType) -> None:
    _, dl = engines(fp)
    out = bytearray(2048)
    inner = inner6(MS6, CN6, tc=0x02)  # ECT(0)
    res = dl.from_tunnel_ipv6(ipv6(inner, src=DMPA, dst=DLMAP, nh=41, tc=0x03), out)
    assert res[1] == R.FORWARDED and (out[1] >> 4) & 3 == 3


def test_downlink_for_an_unbound_prefix_and_too_big(fp: ModuleType) -> None:
    _, dl = engines(fp, mtu=1280)
    out = bytearray(2048)
    assert dl.from_tun(inner6(CN6, CN6), out)[1] == R.NO_BINDING
    assert dl.from_tun(inner6(CN6, MS6, payload=bytes(1300)), out)[1] == R.FRAG_NEEDED


def test_prefix_entries_bind_replace_and_unbind(fp: ModuleType) -> None:
    table = fp.HoaTable()
    table.bind_prefix(P1, DMPA, MS_MAC, 3)
    table.bind_prefix(P1, OTHER6, MS_MAC, 4)  # a handover keeps the counters
    entry = table.lookup_prefix(P1)
    assert (entry.hoa, entry.endpoint, entry.link) == (P1, OTHER6, 4)
    assert table.prefixes == 1 and len(table) == 0  # not in the IPv4 table
    assert table.unbind_prefix(P1) and not table.unbind_prefix(P1)
    assert table.lookup_prefix(P1) is None
    with pytest.raises(ValueError):
        table.bind_prefix(1 << 64, DMPA)


# --- Hypothesis: the twins agree ----------------------------------------------------------


@st.composite
def packets6(draw: st.DrawFn, src: bytes, dst: bytes) -> bytes:
    nh = draw(st.sampled_from([58, 17, 6, 0, 59]))
    payload = b""
    if nh == 58:
        payload = bytes([draw(st.sampled_from([128, 129, 133, 134, 135, 136, 137, 143])), 0])
    payload += draw(st.binary(max_size=40))
    if draw(st.booleans()):
        payload += bytes(draw(st.integers(0, 1500)))
    return inner6(
        likely(draw, src, ADDRS),
        likely(draw, dst, ADDRS),
        nh,
        payload,
        hop=draw(st.sampled_from([0, 1, 2, 64, 255])),
        tc=draw(st.integers(0, 255)),
    )


@st.composite
def frames6(draw: st.DrawFn) -> bytes:
    dst = likely(draw, PSEUDO_MAC, [MCAST_MAC, bytes.fromhex("3333ff0012ff"), MS_MAC])
    src = likely(draw, MS_MAC, [PSEUDO_MAC, bytes.fromhex("02aabbccdd02")])
    return eth(draw(packets6(MS6, CN6)), dst=dst, src=src, ethertype=0x86DD)


@st.composite
def whole6(draw: st.DrawFn, src: bytes, dst: bytes, inner_src: bytes, inner_dst: bytes) -> bytes:
    inner = draw(packets6(inner_src, inner_dst))
    nh = likely(draw, 41, [4, 60, 17])
    return ipv6(
        inner,
        src=likely(draw, src, [DMPA, DLMAP, OTHER6]),
        dst=dst,
        nh=nh,
        tc=draw(st.integers(0, 255)),
    )


def compare(method: str, args: tuple[Any, ...], role: int, mtu: int) -> None:
    results = []
    for fp in (load("reference"), load("compiled")):
        engine = engines(fp, mtu)[role]
        out = bytearray(b"\xa5" * 2048)
        res = getattr(engine, method)(*args, out)
        prefixes = [engine.table.lookup_prefix(p) for p in (P1, P2)]
        results.append((res, bytes(out), engine.counters(), prefixes))
        v, reason, n, _ = res
        event(Reason(reason).name)
        if v != Verdict.FORWARD:
            assert n == 0 and out == bytearray(b"\xa5" * 2048)
    assert results[0] == results[1]


@settings(max_examples=200, deadline=None)
@given(mutated(frames6()), st.sampled_from([1, 1, 1, 0]), MTUS)
def test_twins_from_access_ipv6(frame: bytes, link: int, mtu: int) -> None:
    compare("from_access", (frame, link), 0, mtu)


@settings(max_examples=200, deadline=None)
@given(mutated(packets6(CN6, MS6)), st.sampled_from([DLMAP, DLMAP, OTHER6, DMPA]), MTUS)
def test_twins_dmpa_from_tunnel_ipv6_inner(packet: bytes, src: bytes, mtu: int) -> None:
    compare("from_tunnel", (src, packet), 0, mtu)


@settings(max_examples=200, deadline=None)
@given(mutated(whole6(DMPA, DLMAP, MS6, CN6)), MTUS)
def test_twins_dlmap_from_tunnel_whole_ipv6(packet: bytes, mtu: int) -> None:
    compare("from_tunnel_ipv6", (packet,), 1, mtu)


@settings(max_examples=200, deadline=None)
@given(mutated(packets6(CN6, MS6)), MTUS)
def test_twins_dlmap_from_tun_ipv6(packet: bytes, mtu: int) -> None:
    compare("from_tun", (packet,), 1, mtu)


@settings(max_examples=100, deadline=None)
@given(packets6(MS6, CN6))
def test_encapsulation_then_decapsulation_is_the_identity_but_the_hop(packet: bytes) -> None:
    for fp in (load("reference"), load("compiled")):
        dm, dl = engines(fp)
        out, back = bytearray(2048), bytearray(2048)
        v, _, n, _ = dm.from_access(eth(packet, ethertype=0x86DD), 1, out)
        if v != Verdict.FORWARD:
            continue
        v, _, m, _ = dl.from_tunnel_ipv6(bytes(out[:n]), back)
        if (out[1] >> 4) & 3 == 3 and (packet[1] >> 4) & 3 == 0:
            continue
        assert v == Verdict.FORWARD
        assert bytes(back[:m]) == packet[:7] + bytes([packet[7] - 1]) + packet[8:]
