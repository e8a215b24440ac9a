"""Hypothesis: the two twins agree on random and malformed packets (verdict, reason, output
bytes, counters, binding counters); checksums stay equal to a full recomputation; encapsulation
then decapsulation is the identity."""

from __future__ import annotations

import socket
import struct
from types import ModuleType
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from fastpath.common import Reason, Verdict
from tests.fastpath.conftest import load
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
    checksum,
    dstopts,
    eth,
    ipv4,
    ipv6,
    udp,
)

EXAMPLES = 300
OWN_GATEWAY = 0xC000023E  # HOA's gateway from its profile (issue 15), not the node's
ADDRS4 = [HOA, HOA2, CN, GATEWAY, OWN_GATEWAY, 0, 0xFFFFFFFF]
ADDRS6 = [DMPA, DLMAP, OTHER6]


def likely(draw: st.DrawFn, value: Any, others: list[Any]) -> Any:
    """``value`` about four times in five, else one of ``others``: enough packets pass the
    checks for the forwarding path to be compared too."""
    return value if draw(st.integers(0, 4)) else draw(st.sampled_from(others))


def engines(fp: ModuleType, mtu: int, capacity: int = 1024) -> tuple[Any, Any]:
    t1 = fp.HoaTable(capacity)
    t1.bind(HOA, DLMAP, MS_MAC, link=1, gateway=OWN_GATEWAY)
    t1.bind(HOA2, OTHER6, MS_MAC, link=0)
    dm = fp.Dmpa(t1, DMPA, PSEUDO_MAC, GATEWAY, tunnel_mtu=mtu, peers=[DLMAP])
    t2 = fp.HoaTable(capacity)
    t2.bind(HOA, DMPA)
    t2.bind(HOA2, OTHER6)
    dl = fp.Dlmap(t2, DLMAP, tunnel_mtu=mtu, peers=[DMPA])
    return dm, dl


garbage = st.binary(max_size=120)


@st.composite
def inner_packets(draw: st.DrawFn, src: int = HOA, dst: int = CN) -> bytes:
    proto = draw(st.sampled_from([1, 6, 17, 50]))
    if proto == 17:
        payload = udp(draw(st.sampled_from([67, 68, 53])), draw(st.sampled_from([67, 68, 80])))
        payload += draw(st.binary(max_size=40))
    else:
        payload = draw(st.binary(max_size=60))
    if draw(st.booleans()):
        payload += bytes(draw(st.integers(0, 1500)))
    return ipv4(
        likely(draw, src, ADDRS4),
        likely(draw, dst, ADDRS4),
        proto,
        payload,
        ttl=draw(st.sampled_from([0, 1, 2, 64, 255])),
        tos=draw(st.integers(0, 255)),
        df=draw(st.booleans()),
        options=draw(st.sampled_from([b"", b"", b"\x01\x01\x01\x00", bytes(8)])),
        frag=draw(st.sampled_from([0, 0, 0, 1, 0x2000])),
    )


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A well-formed packet, then maybe a few byte changes, a truncation or trailing bytes; or
    plain garbage."""
    if draw(st.integers(0, 9)) == 0:
        return draw(garbage)
    b = bytearray(draw(base))
    for _ in range(0 if draw(st.booleans()) else draw(st.integers(1, 3))):
        if b:
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
    if draw(st.integers(0, 7)) == 0:
        del b[draw(st.integers(0, len(b))) :]
    if draw(st.integers(0, 15)) == 0:
        b += draw(st.binary(min_size=1, max_size=8))
    return bytes(b)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    dst = likely(draw, PSEUDO_MAC, [BROADCAST, MS_MAC])
    src = likely(draw, MS_MAC, [PSEUDO_MAC])
    kind = likely(draw, 0x0800, [0x0806, 0x86DD])
    # to the node's and to the MS's own gateway often enough for their punts to be compared
    to = draw(st.sampled_from([CN, CN, GATEWAY, OWN_GATEWAY]))
    return eth(draw(inner_packets(dst=to)), dst=dst, src=src, ethertype=kind)


@st.composite
def whole_ipv6(draw: st.DrawFn, src: bytes, dst: bytes, inner_src: int, inner_dst: int) -> bytes:
    inner = draw(inner_packets(inner_src, inner_dst))
    src, dst = likely(draw, src, ADDRS6), likely(draw, dst, ADDRS6)
    tc = draw(st.integers(0, 255))
    opts = draw(st.sampled_from([None, ENCAP_LIMIT, b"", bytes([0x3E, 1, 0]), bytes([0xC2, 0])]))
    if opts is None:
        return ipv6(inner, src=src, dst=dst, tc=tc)
    return ipv6(dstopts(4, opts) + inner, src=src, dst=dst, nh=60, tc=tc)


def run(method: str, args: tuple[Any, ...], role: int, mtu: int) -> None:
    """Call ``method`` on the same engine of both twins; everything observable must match."""
    results = []
    for fp in (load("reference"), load("compiled")):
        engine = engines(fp, mtu)[role]
        out = bytearray(b"\xa5" * 2048)
        res = getattr(engine, method)(*args, out)
        results.append((res, bytes(out), engine.counters(), list(engine.table)))
        v, reason, n, _ = res
        event(Reason(reason).name)
        assert 0 <= reason < len(Reason) and v == (Verdict.FORWARD if reason == 0 else v)
        if v != Verdict.FORWARD:
            assert n == 0 and out == bytearray(b"\xa5" * 2048)  # nothing written on punt/drop
        else:
            check_checksum(method, bytes(out[:n]))
    assert results[0] == results[1]


def check_checksum(method: str, out: bytes) -> None:
    """The incrementally updated checksum equals a full recomputation."""
    ip = out[40:] if method in ("from_access", "from_tun") else out[14:]
    ihl = (ip[0] & 0x0F) * 4
    hdr = ip[:10] + b"\x00\x00" + ip[12:ihl]
    assert struct.unpack("!H", ip[10:12])[0] == checksum(hdr)


MTUS = st.sampled_from([1460, 576, 68])


@settings(max_examples=EXAMPLES, deadline=None)
@given(mutated(frames()), st.sampled_from([1, 1, 1, 0, 2]), MTUS)
def test_from_access(frame: bytes, link: int, mtu: int) -> None:
    run("from_access", (frame, link), 0, mtu)


@st.composite
def to_gateways(draw: st.DrawFn) -> bytes:
    """ICMP from a bound MS to the node's gateway or its own, with any TTL (issue 15)."""
    b = bytearray(draw(inner_packets(dst=draw(st.sampled_from([GATEWAY, OWN_GATEWAY])))))
    if len(b) > 9 and draw(st.integers(0, 3)):
        b[9] = 1  # mostly ICMP
        b[10:12] = checksum(bytes(b[:10]) + bytes(2) + bytes(b[12 : (b[0] & 0xF) * 4])).to_bytes(
            2, "big"
        )
    return eth(bytes(b))


@settings(max_examples=EXAMPLES, deadline=None)
@given(to_gateways(), st.sampled_from([1, 1, 1, 0]), MTUS)
def test_from_access_to_the_gateways(frame: bytes, link: int, mtu: int) -> None:
    run("from_access", (frame, link), 0, mtu)


@settings(max_examples=EXAMPLES, deadline=None)
@given(mutated(inner_packets(src=CN, dst=HOA)), st.sampled_from([DLMAP, DLMAP, *ADDRS6]), MTUS)
def test_dmpa_from_tunnel(packet: bytes, src: bytes, mtu: int) -> None:
    run("from_tunnel", (src, packet), 0, mtu)


@settings(max_examples=EXAMPLES, deadline=None)
@given(mutated(whole_ipv6(DLMAP, DMPA, CN, HOA)), MTUS)
def test_dmpa_from_tunnel_ipv6(packet: bytes, mtu: int) -> None:
    run("from_tunnel_ipv6", (packet,), 0, mtu)


@settings(max_examples=EXAMPLES, deadline=None)
@given(mutated(inner_packets(src=HOA, dst=CN)), st.sampled_from([DMPA, DMPA, *ADDRS6]), MTUS)
def test_dlmap_from_tunnel(packet: bytes, src: bytes, mtu: int) -> None:
    results = []
    for fp in (load("reference"), load("compiled")):
        dl = engines(fp, mtu)[1]
        out = bytearray(2048)
        res = dl.from_tunnel(src, packet, out)
        results.append((res, bytes(out), dl.counters()))
        event(Reason(res[1]).name)
        if res[1] == Reason.FORWARDED:
            ip = bytes(out[: res[2]])
            assert ip == packet  # no rewrite on the DLMAP uplink
    assert results[0] == results[1]


@settings(max_examples=EXAMPLES, deadline=None)
@given(mutated(whole_ipv6(DMPA, DLMAP, HOA, CN)), MTUS)
def test_dlmap_from_tunnel_ipv6(packet: bytes, mtu: int) -> None:
    results = []
    for fp in (load("reference"), load("compiled")):
        dl = engines(fp, mtu)[1]
        out = bytearray(2048)
        res = dl.from_tunnel_ipv6(packet, out)
        results.append((res, bytes(out), dl.counters()))
        event(Reason(res[1]).name)
    assert results[0] == results[1]


@settings(max_examples=EXAMPLES, deadline=None)
@given(mutated(inner_packets(src=CN, dst=HOA)), MTUS)
def test_dlmap_from_tun(packet: bytes, mtu: int) -> None:
    run("from_tun", (packet,), 1, mtu)


# ---- batches: the twins' batch calls, and each batch call against its single-packet calls ----

Slot = tuple[bytes, bytes, int]  # data, address, link: what Batch.append takes


@st.composite
def slots(draw: st.DrawFn, packets: st.SearchStrategy[bytes], addrs: list[bytes]) -> Slot:
    return draw(packets), draw(st.sampled_from(addrs)), draw(st.sampled_from([1, 1, 0, 2, -1]))


# what each batch call is tested with: the engine (0 DMPA, 1 DLMAP) and its slots
BATCHES = {
    "access_batch": (0, slots(mutated(frames()), [bytes(16)])),
    "dmpa_tunnel_batch": (
        0,
        slots(mutated(inner_packets(src=CN, dst=HOA)), [DLMAP, DLMAP, DLMAP, *ADDRS6]),
    ),
    "dlmap_tunnel_batch": (
        1,
        slots(mutated(inner_packets(src=HOA, dst=CN)), [DMPA, DMPA, DMPA, *ADDRS6]),
    ),
    "tun_batch": (1, slots(mutated(inner_packets(src=CN, dst=HOA)), ADDRS6)),
}


def single(engine: Any, kind: str, slot: Slot, out: bytearray) -> Any:
    data, addr, link = slot
    if kind == "access_batch":
        return engine.from_access(data, link, out)
    if kind == "tun_batch":
        return engine.from_tun(data, out)
    return engine.from_tunnel(addr, data, out)


def grown(fp: ModuleType, mtu: int, extra: int) -> tuple[Any, Any]:
    """:func:`engines` whose tables hold ``extra`` more bindings (198.51.100.0/24), added
    from a capacity of one: the batch calls often find a growth under way and move it on."""
    dm, dl = engines(fp, mtu, capacity=1)
    for k in range(extra):
        gateway = (0, GATEWAY, OWN_GATEWAY)[k % 3]
        dm.table.bind(0xC6336400 + k, DLMAP, MS_MAC, link=k % 3, gateway=gateway)
        dl.table.bind(0xC6336400 + k, DMPA if k % 2 else OTHER6)
    return dm, dl


@st.composite
def batch_runs(draw: st.DrawFn, kind: str) -> tuple[list[list[Slot]], int, int, int, int]:
    """Up to three batches for one engine, the input stride, the output stride beyond it (a
    few runs get an output batch the calls must refuse), the tunnel MTU, extra bindings."""
    batches = draw(st.lists(st.lists(BATCHES[kind][1], max_size=64), min_size=1, max_size=3))
    longest = max((len(d) for b in batches for d, _, _ in b), default=0)
    stride = max(64, longest, draw(st.sampled_from([64, 1500, 2048, 2048])))
    spare = draw(st.sampled_from([40, 40, 40, 100, 39]))
    return batches, stride, spare, draw(MTUS), draw(st.integers(0, 60))


def run_batches(
    fp: ModuleType, kind: str, case: tuple[list[list[Slot]], int, int, int, int]
) -> list[Any]:
    """Every observable of the batch calls on one twin: per batch its result (or the error),
    every output slot, the counters, the bindings and the growth state. Also checks, on this
    twin, that each batch call did what its single-packet calls do on a second engine."""
    batches, stride, spare, mtu, extra = case
    engine = grown(fp, mtu, extra)[BATCHES[kind][0]]
    twin = grown(fp, mtu, extra)[BATCHES[kind][0]]  # gets the single-packet calls
    method = "tunnel_batch" if kind.endswith("tunnel_batch") else kind
    seen: list[Any] = []
    for slots_ in batches:
        inp, out = fp.Batch(64, stride), fp.Batch(64, stride + spare)
        for data, addr, link in slots_:
            inp.append(data, addr, link)
        event("growth under way" if engine.table.rehash_pending else "no growth under way")
        try:
            fwd = getattr(engine, method)(inp, out)
        except ValueError as e:
            assert spare < 40
            event("output batch refused")
            seen.append(("refused", str(e), engine.counters(), engine.table.rehash_pending))
            continue
        got = [(out.data(i), out.reason(i), out.link(i)) for i in range(len(out))]
        assert len(out) == len(slots_) and fwd == sum(r == Reason.FORWARDED for _, r, _ in got)
        assert [(inp.data(i), inp.addr(i), inp.link(i)) for i in range(len(inp))] == slots_
        scratch = bytearray(stride + spare)
        for (data, reason, link), slot in zip(got, slots_, strict=True):
            v, r, n, lk = single(twin, kind, slot, scratch)
            expected = bytes(scratch[:n]) if v == Verdict.FORWARD else b""
            assert (data, reason, link) == (expected, r, lk)
            event(Reason(r).name)
        assert engine.counters() == twin.counters() and list(engine.table) == list(twin.table)
        seen.append((fwd, got, engine.counters(), list(engine.table), engine.table.rehash_pending))
    return seen


def compare_batches(kind: str, case: tuple[list[list[Slot]], int, int, int, int]) -> None:
    assert run_batches(load("reference"), kind, case) == run_batches(load("compiled"), kind, case)


@settings(max_examples=100, deadline=None)
@given(batch_runs("access_batch"))
def test_access_batch(case: tuple[list[list[Slot]], int, int, int, int]) -> None:
    compare_batches("access_batch", case)


@settings(max_examples=100, deadline=None)
@given(batch_runs("dmpa_tunnel_batch"))
def test_dmpa_tunnel_batch(case: tuple[list[list[Slot]], int, int, int, int]) -> None:
    compare_batches("dmpa_tunnel_batch", case)


@settings(max_examples=100, deadline=None)
@given(batch_runs("dlmap_tunnel_batch"))
def test_dlmap_tunnel_batch(case: tuple[list[list[Slot]], int, int, int, int]) -> None:
    compare_batches("dlmap_tunnel_batch", case)


@settings(max_examples=100, deadline=None)
@given(batch_runs("tun_batch"))
def test_tun_batch(case: tuple[list[list[Slot]], int, int, int, int]) -> None:
    compare_batches("tun_batch", case)


@st.composite
def forwardable(draw: st.DrawFn, src: int, dst: int) -> bytes:
    payload = draw(st.binary(max_size=64)) + bytes(draw(st.integers(0, 1300)))
    return ipv4(
        src,
        dst,
        draw(st.sampled_from([6, 50, 132])),
        payload,
        ttl=draw(st.integers(2, 255)),
        tos=draw(st.integers(0, 255)),
        df=draw(st.booleans()),
        options=draw(st.sampled_from([b"", bytes(4), b"\x01\x01\x01\x00"])),
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(forwardable(CN, HOA), forwardable(HOA, CN))
def test_encapsulate_then_decapsulate(down: bytes, up: bytes) -> None:
    """Through the tunnel and out again, a packet is unchanged but for the one TTL decrement of
    the DMPA (checked against a full checksum recomputation), in both directions and twins."""
    for fp in (load("reference"), load("compiled")):
        dm, dl = engines(fp, 1460)
        mid, out = bytearray(2048), bytearray(2048)
        v, _, n, _ = dl.from_tun(down, mid)
        assert v == Verdict.FORWARD
        assert dm.from_tunnel_ipv6(bytes(mid[:n]), out)[1:] == (Reason.FORWARDED, 14 + len(down), 1)
        assert bytes(out[: 14 + len(down)]) == MS_MAC + PSEUDO_MAC + b"\x08\x00" + with_ttl(down)
        v, _, n, _ = dm.from_access(eth(up), 1, mid)
        assert v == Verdict.FORWARD
        assert dl.from_tunnel_ipv6(bytes(mid[:n]), out)[1:] == (Reason.FORWARDED, len(up), -1)
        assert bytes(out[: len(up)]) == with_ttl(up)


def with_ttl(ip: bytes) -> bytes:
    ihl = (ip[0] & 0x0F) * 4
    hdr = ip[:8] + bytes([ip[8] - 1]) + ip[9:10] + b"\x00\x00" + ip[12:ihl]
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + ip[ihl:]


def test_message_io_refuses_what_it_cannot_send(fp: ModuleType) -> None:
    """Both twins: a negative fd, and a destination that is not 16 bytes, are refused before
    any system call (the MH endpoint's sends; the round trip is tests/netns/test_devices.py)."""
    with pytest.raises(ValueError):
        fp.MessageIO(-1)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        io = fp.MessageIO(sock.fileno())
        try:
            with pytest.raises(ValueError):
                io.send([(b"\x3b\x00\x07\x00", b"\x20\x01")])
            assert io.recv(0) == ([], 0, 0)
            assert io.recv(8) == ([], 0, 0)  # nothing queued: drained, no error
        finally:
            io.close()
