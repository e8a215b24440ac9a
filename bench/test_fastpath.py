"""Per-packet and per-batch (64) encapsulate, decapsulate, classify+lookup(+encapsulate) at 64,
576 and 1400 bytes; HoA lookup hit/miss at 1k, 64k and 1M entries, warm and cold; the IPv6
prefix lookup hit/miss at 1k and 64k; a 64 KiB TCP/IPv4 and TCP/IPv6 super-packet segmented
and coalesced back; the 1M-entry table's memory and its worst single bind. Reference and
compiled twins in one run; every benchmark asserts its result."""

from __future__ import annotations

import itertools
import random
import struct
import time
from array import array
from functools import cache
from types import ModuleType
from typing import Any

import pytest

from bench.conftest import GOAL_MEMORY, measure
from tests.fastpath.packets import (
    CN,
    DLMAP,
    DMPA,
    GATEWAY,
    HOA,
    MS_MAC,
    PSEUDO_MAC,
    eth,
    ipv4,
    ipv6,
    udp,
)

SIZES = [64, 576, 1400]
FORWARD = (0, 0)


def packet(size: int, src: int, dst: int) -> bytes:
    return ipv4(src, dst, 17, udp(4000, 5000, bytes(size - 28)), tos=0x28)


def roles(fp: ModuleType) -> tuple[Any, Any]:
    dm_table = fp.HoaTable()
    dm_table.bind(HOA, DLMAP, MS_MAC, link=0)
    dl_table = fp.HoaTable()
    dl_table.bind(HOA, DMPA)
    return (
        fp.Dmpa(dm_table, DMPA, PSEUDO_MAC, GATEWAY, peers=[DLMAP]),
        fp.Dlmap(dl_table, DLMAP, peers=[DMPA]),
    )


@cache
def expected(kind: str, size: int) -> bytes:
    """What the reference produces: every benchmark compares its twin's output with this."""
    from fastpath import reference as ref

    dm, dl = roles(ref)
    out = bytearray(2048)
    if kind == "encap":
        n = dl.from_tun(packet(size, CN, HOA), out)[2]
    elif kind == "access":
        n = dm.from_access(eth(packet(size, HOA, CN)), 0, out)[2]
    else:
        n = dm.from_tunnel(DLMAP, packet(size, CN, HOA), out)[2]
    return bytes(out[:n])


# ---- one packet per call ----


@pytest.mark.parametrize("size", SIZES)
def test_encapsulate(benchmark: Any, fp: ModuleType, size: int) -> None:
    _, dl = roles(fp)
    pkt, out = packet(size, CN, HOA), bytearray(2048)
    r = measure(benchmark, fp, dl.from_tun, pkt, out)
    assert r == (0, 0, 40 + size, -1) and bytes(out[: 40 + size]) == expected("encap", size)


@pytest.mark.parametrize("size", SIZES)
def test_decapsulate(benchmark: Any, fp: ModuleType, size: int) -> None:
    """Raw protocol-4 socket form: (outer source, inner packet) -> Ethernet frame."""
    dm, _ = roles(fp)
    pkt, out = packet(size, CN, HOA), bytearray(2048)
    r = measure(benchmark, fp, dm.from_tunnel, DLMAP, pkt, out)
    assert r == (0, 0, 14 + size, 0) and bytes(out[: 14 + size]) == expected("decap", size)


@pytest.mark.parametrize("size", SIZES)
def test_decapsulate_ipv6(benchmark: Any, fp: ModuleType, size: int) -> None:
    """Whole IPv6 packet form: the outer header parsed and checked here."""
    dm, _ = roles(fp)
    pkt, out = ipv6(packet(size, CN, HOA), src=DLMAP, dst=DMPA), bytearray(2048)
    r = measure(benchmark, fp, dm.from_tunnel_ipv6, pkt, out)
    assert r == (0, 0, 14 + size, 0) and bytes(out[: 14 + size]) == expected("decap", size)


@pytest.mark.parametrize("size", SIZES)
def test_classify_lookup_encap(benchmark: Any, fp: ModuleType, size: int) -> None:
    dm, _ = roles(fp)
    frame, out = eth(packet(size, HOA, CN)), bytearray(2048)
    r = measure(benchmark, fp, dm.from_access, frame, 0, out)
    assert r == (0, 0, 40 + size, -1) and bytes(out[: 40 + size]) == expected("access", size)


# ---- batches of 64: one Python -> C call per batch ----


def batches(fp: ModuleType, packets: list[bytes], addr: bytes = bytes(16)) -> tuple[Any, Any]:
    inp, out = fp.Batch(64, 2048), fp.Batch(64, 2048 + 40)
    for p in packets:
        inp.append(p, addr=addr)
    return inp, out


@pytest.mark.parametrize("size", SIZES)
def test_batch_classify_lookup_encap(benchmark: Any, fp: ModuleType, size: int) -> None:
    dm, _ = roles(fp)
    inp, out = batches(fp, [eth(packet(size, HOA, CN))] * 64)
    assert measure(benchmark, fp, dm.access_batch, inp, out, per=64) == 64
    assert out.data(63) == expected("access", size)


@pytest.mark.parametrize("size", SIZES)
def test_batch_encapsulate(benchmark: Any, fp: ModuleType, size: int) -> None:
    _, dl = roles(fp)
    inp, out = batches(fp, [packet(size, CN, HOA)] * 64)
    assert measure(benchmark, fp, dl.tun_batch, inp, out, per=64) == 64
    assert out.data(63) == expected("encap", size)


@pytest.mark.parametrize("size", SIZES)
def test_batch_decapsulate(benchmark: Any, fp: ModuleType, size: int) -> None:
    dm, _ = roles(fp)
    inp, out = batches(fp, [packet(size, CN, HOA)] * 64, addr=DLMAP)
    assert measure(benchmark, fp, dm.tunnel_batch, inp, out, per=64) == 64
    assert out.data(63) == expected("decap", size)


# ---- the HoA table ----

ENDPOINTS = [bytes(15) + bytes([i]) for i in range(1, 201)]  # 200 DMPAs


@cache
def table_keys(n: int) -> list[int]:
    return random.Random(n).sample(range(1 << 32), n)


@cache
def table(impl: str, n: int) -> tuple[Any, list[int]]:
    fp = __import__(f"fastpath.{impl}", fromlist=["HoaTable"])
    keys = table_keys(n)
    t = fp.HoaTable()
    for i, k in enumerate(keys):
        t.bind(k, ENDPOINTS[i % 200])
    return t, keys


@pytest.mark.parametrize("entries", [1_000, 65_536, 1_000_000])
@pytest.mark.parametrize("hit", [True, False], ids=["hit", "miss"])
def test_table_lookup(benchmark: Any, fp: ModuleType, entries: int, hit: bool) -> None:
    """64 packets to random HoAs through the DLMAP's TUN path: lookup + (hit) encapsulate.
    Warm: the same 64 HoAs every round, so their slots and entries stay in cache."""
    t, keys = table(fp.__name__.rsplit(".", 1)[1], entries)
    dl = fp.Dlmap(t, DLMAP)
    rng = random.Random(7)
    dsts = rng.sample(keys, 64) if hit else [k ^ 0x5A5A5A5A for k in rng.sample(keys, 64)]
    dsts = [d for d in dsts if (d in t) == hit][:64]
    inp, out = batches(fp, [packet(64, CN, d) for d in dsts])
    fwd = measure(benchmark, fp, dl.tun_batch, inp, out, per=len(dsts))
    assert fwd == (len(dsts) if hit else 0)
    assert all(out.reason(i) == (0 if hit else 17) for i in range(len(dsts)))


# ---- the IPv6 home network prefix table (a dual-stack MS's /64), beside the HoA table ----


@cache
def prefix_table(impl: str, n: int) -> tuple[Any, list[int]]:
    """``n`` random /64s of 2001:db8::/32 (the top 64 bits), bound to 200 DMPAs."""
    fp = __import__(f"fastpath.{impl}", fromlist=["HoaTable"])
    rng = random.Random(n + 6)
    keys = [0x20010DB8_00000000 | rng.getrandbits(32) for _ in range(n)]
    keys = list(dict.fromkeys(keys))
    t = fp.HoaTable()
    for i, k in enumerate(keys):
        t.bind_prefix(k, ENDPOINTS[i % 200])
    return t, keys


def packet6(size: int, dst_prefix: int) -> bytes:
    """An IPv6 UDP packet of ``size`` bytes from a CN to host ::1 of the /64 ``dst_prefix``."""
    dst = dst_prefix.to_bytes(8, "big") + (1).to_bytes(8, "big")
    src = bytes.fromhex("20010db8ffff00000000000000000001")
    return ipv6(udp(4000, 5000, bytes(size - 48)), src=src, dst=dst, nh=17)


@pytest.mark.parametrize("entries", [1_000, 65_536])
@pytest.mark.parametrize("hit", [True, False], ids=["hit", "miss"])
def test_prefix_lookup(benchmark: Any, fp: ModuleType, entries: int, hit: bool) -> None:
    """As ``test_table_lookup`` for IPv6: 64 packets to random /64s through the DLMAP's TUN
    path, lookup + (hit) IPv6-in-IPv6 encapsulation."""
    t, keys = prefix_table(fp.__name__.rsplit(".", 1)[1], entries)
    dl = fp.Dlmap(t, DLMAP)
    rng = random.Random(7)
    bound = set(keys)
    dsts = rng.sample(keys, 64) if hit else [k ^ 0x5A5A5A5A00 for k in rng.sample(keys, 64)]
    dsts = [d for d in dsts if (d in bound) == hit][:64]
    inp, out = batches(fp, [packet6(64, d) for d in dsts])
    fwd = measure(benchmark, fp, dl.tun_batch, inp, out, per=len(dsts))
    assert fwd == (len(dsts) if hit else 0)
    assert all(out.reason(i) == (0 if hit else 17) for i in range(len(dsts)))


# ---- TAP/TUN offload: one 64 KiB TCP super-packet cut into segments, and merged back ----


def super_packet(v6: bool) -> tuple[bytes, list[bytes]]:
    """(virtio-net header + a TCP/IPv4 or TCP/IPv6 super-packet on a TUN, its segments)."""
    mss = 1428 if v6 else 1448
    payload = bytes(range(256)) * 250  # 64,000 bytes
    th = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 7, 5 << 4, 0x18, 65535, 0, 0) + payload
    if v6:
        packet_ = ipv6(th, src=DMPA, dst=DLMAP, nh=6)
        gso = 4
    else:
        packet_ = ipv4(HOA, CN, 6, th, df=True)
        gso = 1
    buf = struct.pack("=BBHHHH", 1, gso, 0, mss, 0, 0) + packet_
    from fastpath import reference as ref

    reason, segs = ref.segment(buf, 0)
    assert reason == 0 and len(segs) > 40
    return buf, segs


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_gso_segment(benchmark: Any, fp: ModuleType, v6: bool) -> None:
    buf, segs = super_packet(v6)
    r = measure(benchmark, fp, fp.segment, buf, 0, per=len(segs))
    assert r == (0, segs)


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_coalesce(benchmark: Any, fp: ModuleType, v6: bool) -> None:
    _, segs = super_packet(v6)
    writes = measure(benchmark, fp, fp.coalesce, segs, 0, per=len(segs))
    assert len(writes) == 1 and fp.segment(writes[0], 0) == (0, segs)


COLD_BATCHES = 512  # more than the calls of one measurement (8 rounds x 62): none is seen twice


@cache
def cold_packets(entries: int, hit: bool, draw: str) -> list[list[bytes]]:
    """``COLD_BATCHES`` batches of 64 packets: "fresh" draws 64 new HoAs for each from the whole
    key set (hit) or from outside it (miss); "same" repeats one draw (the control)."""
    keys, rng = table_keys(entries), random.Random(11)
    present = set(keys) if not hit else set()

    def one() -> list[bytes]:
        if hit:
            dsts = rng.sample(keys, 64)
        else:
            dsts = []
            while len(dsts) < 64:
                d = rng.getrandbits(32)
                if d not in present:
                    dsts.append(d)
        return [packet(64, CN, d) for d in dsts]

    if draw == "same":
        return [one()] * COLD_BATCHES
    return [one() for _ in range(COLD_BATCHES)]


COLD_CASES = [(e, h, "fresh") for e in (1_000, 65_536, 1_000_000) for h in (True, False)]
COLD_CASES.append((1_000_000, True, "same"))


@pytest.mark.parametrize(
    ("entries", "hit", "draw"),
    [pytest.param(*c, id=f"{'hit' if c[1] else 'miss'}-{c[0]}-{c[2]}") for c in COLD_CASES],
)
def test_table_lookup_cold(
    benchmark: Any, fp: ModuleType, entries: int, hit: bool, draw: str
) -> None:
    """As ``test_table_lookup``, but every call gets another batch ("fresh": 64 other HoAs, so
    at 1M entries their slots and entries are not in cache; the 48 MiB table is larger than
    the 32 MiB L3). "same" is the control: other batch buffers, the same 64 HoAs."""
    t, _ = table(fp.__name__.rsplit(".", 1)[1], entries)
    dl = fp.Dlmap(t, DLMAP)
    inputs = []
    for pkts in cold_packets(entries, hit, draw):
        inp = fp.Batch(64, 128)
        for p in pkts:
            inp.append(p)
        inputs.append(inp)
    out = fp.Batch(64, 128 + 40)
    batches = itertools.cycle(inputs)

    def call() -> int:
        return int(dl.tun_batch(next(batches), out))

    assert measure(benchmark, fp, call, per=64) == (64 if hit else 0)
    assert all(out.reason(i) == (0 if hit else 17) for i in range(64))


def test_table_million(benchmark: Any, fp: ModuleType) -> None:
    """Bind 1,000,000 HoAs (time per bind) and report the table's memory (compiled: its own
    allocations, also checked by tracemalloc in tests/fastpath)."""
    keys = list(range(0x0A000000, 0x0A000000 + 1_000_000))

    def build() -> Any:
        t = fp.HoaTable()
        for i, k in enumerate(keys):
            t.bind(k, ENDPOINTS[i % 200])
        return t

    benchmark.extra_info["per"] = len(keys)
    t = benchmark.pedantic(build, rounds=1, iterations=1)
    assert len(t) == 1_000_000 and t.lookup(keys[-1]) is not None
    if fp.__name__.endswith("_fastpath"):
        benchmark.extra_info["MiB"] = t.memory_bytes() / (1 << 20)
        assert t.memory_bytes() <= GOAL_MEMORY


@pytest.mark.parametrize("fp", ["compiled"], indirect=True)
def test_bind_latency_million(benchmark: Any, fp: ModuleType) -> None:
    """The worst single bind while filling 1,000,000 entries (time.perf_counter_ns around each
    bind; the benchmark's own time includes that). Growth is incremental, so the binds that
    change the allocation (start a growth, end a migration, grow the entry array) should be no
    slower than the machine's noise: the control rebinds the same 1M HoAs (no allocation at
    all) and gives that noise. Compiled only: the reference is a dict."""
    keys = range(0x0A000000, 0x0A000000 + 1_000_000)
    lat, control = array("q", bytes(8 * len(keys))), array("q", bytes(8 * len(keys)))
    events: list[int] = []  # binds after which the allocation changed
    peak = [0]

    def fill() -> Any:
        t = fp.HoaTable()
        clock, bind = time.perf_counter_ns, t.bind
        mem = t.memory_bytes()
        for i, k in enumerate(keys):
            a = clock()
            bind(k, ENDPOINTS[i % 200])
            lat[i] = clock() - a
            if t.memory_bytes() != mem:
                mem = t.memory_bytes()
                events.append(i)
                peak[0] = max(peak[0], mem)
        return t

    benchmark.extra_info["per"] = len(keys)
    t = benchmark.pedantic(fill, rounds=1, iterations=1)
    clock, bind = time.perf_counter_ns, t.bind
    for i, k in enumerate(keys):
        a = clock()
        bind(k, ENDPOINTS[i % 200])
        control[i] = clock() - a
    assert len(t) == 1_000_000 and t.rehash_pending == 0
    assert t.memory_bytes() <= GOAL_MEMORY and peak[0] <= GOAL_MEMORY
    ranked, ranked_control = sorted(lat), sorted(control)
    worst = max(range(len(lat)), key=lat.__getitem__)
    benchmark.extra_info.update(
        bind_worst_us=lat[worst] / 1e3,
        bind_worst_at=worst,
        bind_p9999_us=ranked[-100] / 1e3,
        bind_median_ns=ranked[len(ranked) // 2],
        growth_worst_us=max(lat[i] for i in events) / 1e3,
        growth_binds=len(events),
        control_worst_us=ranked_control[-1] / 1e3,
        control_p9999_us=ranked_control[-100] / 1e3,
        peak_MiB=peak[0] / (1 << 20),
    )
