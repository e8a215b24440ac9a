"""The kernel tier's programs, run by the kernel on test packets (``BPF_PROG_TEST_RUN``): the
layout both sides share, and the verdict and output of the paths that need no route (the
DMPA's decapsulation to the MS, the DLMAP's into the stack, every punt and drop) against the
Cython twin's for the same packet. Encapsulation needs a route to the endpoint: the netns
tests cover it (tests/netns/test_kernel_tier.py)."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest

from fastpath.common import Direction, Reason, Verdict
from fastpath.kernel import (
    BINDING,
    CONFIG,
    COUNTER,
    KERNEL_VERDICT,
    KEY,
    MAP_BINDINGS,
    MAP_CONFIG,
    MAP_COUNTERS,
    N_REASONS,
    OBJECT,
    PROG_DLMAP,
    PROG_DMPA_TRANSPORT,
    PROG_PROBE,
    KernelReason,
)
from tests.conftest import require
from tests.fastpath.conftest import (
    ACT_OF,
    TC_ACT_OK,
    TC_ACT_SHOT,
    BindPeer,
    Loaded,
    load,
    load_kernel,
    same_reason,
)
from tests.fastpath.packets import (
    DLMAP,
    DMPA,
    GATEWAY,
    HOA,
    MS_MAC,
    OTHER6,
    PSEUDO_MAC,
    eth,
    icmp_echo,
    ipv4,
    ipv6,
    udp,
)

HEADER = Path(__file__).parents[2] / "bpf" / "netlmm_tc.h"


def test_header_reasons_are_the_python_ones() -> None:
    text = HEADER.read_text()
    found = {m[1]: int(m[2]) for m in re.finditer(r"\bR_([A-Z_]+) = (\d+),", text)}
    assert found == {r.name: int(r) for r in KernelReason}
    assert int(re.search(r"\bN_REASONS = (\d+),", text)[1]) == N_REASONS  # type: ignore[index]
    for r in KernelReason:  # a shared reason means what the user-space one means
        if r < len(Reason):
            assert Reason(int(r)).name == r.name


def test_map_layout_matches_the_object() -> None:
    require(OBJECT.exists(), f"{OBJECT} not built (make setup needs clang)")
    kernel = load_kernel()
    obj = kernel.BpfObject(str(OBJECT))
    try:
        assert obj.map_sizes(MAP_BINDINGS) == (KEY.size, BINDING.size)
        assert obj.map_sizes(MAP_CONFIG) == (4, CONFIG.size)
        assert obj.map_sizes(MAP_COUNTERS) == (4, COUNTER.size)
    finally:
        obj.close()


def test_pack_bindings_lays_out_what_struct_packs() -> None:
    """The restore's packer in C writes what ``BINDING``/``KEY`` pack in Python, field by
    field: the node's gateway for a Bind without one, ifindex 0 for a link not there, no MAC,
    endpoints alternating (its one-entry cache), and an empty batch."""
    from ipaddress import IPv4Address, IPv6Address

    from router.core.actions import Bind
    from router.wire.ethernet import MacAddress

    kernel = load_kernel()
    ends = [IPv6Address("2001:db8:100::11"), IPv6Address("2001:db8:100::12")]
    mac = MacAddress.parse("02:4e:4c:00:00:09")
    node_gw, own_gw = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.254")
    access = (7, 9)
    actions = [
        Bind(IPv4Address("192.0.2.10"), ends[0], mac, 1),
        Bind(IPv4Address("192.0.2.11"), ends[1], None, 5, own_gw),
        Bind(IPv4Address("192.0.2.12"), ends[0], mac, 0),
        Bind(IPv4Address("192.0.2.13"), ends[0], None, -1),
    ]
    keys, values, count = kernel.pack_bindings(iter(actions), access, node_gw.packed)
    assert count == len(actions)
    expected_keys, expected_values = b"", b""
    for a in actions:
        ifindex = access[a.link] if 0 <= a.link < len(access) else 0
        gateway = (a.gateway or node_gw).packed
        packed_mac = a.mac.packed if a.mac else bytes(6)
        expected_keys += KEY.pack(int(a.hoa))
        expected_values += BINDING.pack(
            a.endpoint.packed, packed_mac, ifindex, gateway, a.link & 0xFFFFFFFF, 0, 0, 0
        )
    assert bytes(keys) == expected_keys
    assert bytes(values) == expected_values
    assert kernel.pack_bindings([], access, node_gw.packed)[2] == 0
    with pytest.raises(ValueError):
        kernel.pack_bindings(actions, access, b"\x01")


@pytest.fixture
def bind_peer() -> BindPeer:
    """The MS's HoA, bound to the peer on the access link (the shared ``dmpa``/``dlmap``)."""
    return lambda loaded, endpoint: loaded.bind(HOA, endpoint)


def test_probe_says_the_kernel_decapsulates(kernel: ModuleType) -> None:
    obj = kernel.BpfObject(str(OBJECT))
    obj.load()
    frame = eth(ipv6(ipv4()), ethertype=0x86DD)
    assert kernel.test_run(obj.prog_fd(PROG_PROBE), frame)[0] == 0
    obj.close()


def _cython_dmpa() -> tuple[object, object]:
    fp = load("compiled")
    table = fp.HoaTable()
    table.bind(HOA, DLMAP, MS_MAC, 0)
    engine = fp.Dmpa(table, DMPA, PSEUDO_MAC, GATEWAY, tunnel_mtu=1460, peers=[DLMAP])
    return engine, fp


DOWN_CASES = {
    "forwarded": (ipv6(ipv4(dst=HOA, payload=udp(5000, 6000, b"hello"))), KernelReason.FORWARDED),
    "tcp": (ipv6(ipv4(dst=HOA, proto=6, payload=bytes(40), tos=0x10)), KernelReason.FORWARDED),
    "ttl_expired": (ipv6(ipv4(dst=HOA, ttl=1)), KernelReason.TTL_EXPIRED),
    "dhcp": (ipv6(ipv4(dst=HOA, payload=udp(67, 68))), KernelReason.DHCP),
    "no_binding": (ipv6(ipv4(dst=HOA + 9)), KernelReason.NO_BINDING),
    "src_not_bound": (ipv6(ipv4(dst=HOA), src=OTHER6), KernelReason.SRC_NOT_BOUND),
    "not_for_us": (ipv6(ipv4(dst=HOA), dst=OTHER6), KernelReason.PASSED),
    "not_ipv4": (ipv6(ipv4(dst=HOA), nh=17), KernelReason.PASSED),
    "options": (ipv6(ipv4(dst=HOA, options=b"\x01\x01\x01\x00")), KernelReason.IP_OPTIONS),
    "fragment": (ipv6(ipv4(dst=HOA, frag=0x2000)), KernelReason.IP_FRAGMENT),
    "outer_ce": (ipv6(ipv4(dst=HOA, tos=1), tc=3), KernelReason.ECN_CE),
}


@pytest.mark.parametrize("case", sorted(DOWN_CASES))
def test_dmpa_downlink_matches_cython(dmpa: Loaded, case: str) -> None:
    packet, reason = DOWN_CASES[case]
    frame = eth(packet, dst=b"\x02" * 6, src=b"\x04" * 6, ethertype=0x86DD)
    act, out = dmpa.run(PROG_DMPA_TRANSPORT, frame)
    assert act == ACT_OF[KERNEL_VERDICT[reason]]
    assert dmpa.counter(Direction.DOWNLINK, reason) == 1
    engine, _ = _cython_dmpa()
    result = bytearray(2048)
    verdict, cy_reason, length, _ = engine.from_tunnel_ipv6(packet, result)  # type: ignore[attr-defined]
    if reason is KernelReason.FORWARDED:
        assert verdict == Verdict.FORWARD
        assert out == bytes(result[:length])  # byte for byte, TTL decremented once
        assert out[:12] == MS_MAC + PSEUDO_MAC
    else:
        assert out == frame  # a punt or a drop leaves the packet as it came
        if KERNEL_VERDICT[reason] is Verdict.DROP:
            assert verdict == Verdict.DROP
        same_reason(reason, verdict, cy_reason)


def test_dlmap_uplink_decapsulates_into_the_stack(dlmap: Loaded) -> None:
    inner = ipv4(src=HOA, payload=icmp_echo())
    frame = eth(ipv6(inner, src=DMPA, dst=DLMAP), ethertype=0x86DD)
    act, out = dlmap.run(PROG_DLMAP, frame)
    assert act == TC_ACT_OK
    assert out == frame[:12] + b"\x08\x00" + inner  # TTL unchanged: the stack decrements it
    assert dlmap.counter(Direction.UPLINK, KernelReason.FORWARDED) == 1


def test_dlmap_drops_a_source_not_bound_to_its_peer(dlmap: Loaded) -> None:
    for src, hoa in ((OTHER6, HOA), (DMPA, HOA + 1)):
        frame = eth(ipv6(ipv4(src=hoa), src=src, dst=DLMAP), ethertype=0x86DD)
        act, out = dlmap.run(PROG_DLMAP, frame)
        assert (act, out) == (TC_ACT_SHOT, frame)
    assert dlmap.counter(Direction.UPLINK, KernelReason.SRC_NOT_BOUND) == 2
    dhcp = eth(
        ipv6(ipv4(src=0, dst=0xFFFFFFFF, payload=udp(68, 67)), src=DMPA, dst=DLMAP),
        ethertype=0x86DD,
    )
    assert dlmap.run(PROG_DLMAP, dhcp) == (TC_ACT_OK, dhcp)
    assert dlmap.counter(Direction.UPLINK, KernelReason.DHCP) == 1


def test_dlmap_passes_what_is_not_bound(dlmap: Loaded) -> None:
    frame = eth(ipv4(src=0xC6336402, dst=0xC6336401), dst=b"\x02" * 6)
    assert dlmap.run(PROG_DLMAP, frame) == (TC_ACT_OK, frame)
    assert dlmap.counter(Direction.DOWNLINK, KernelReason.PASSED) == 1
