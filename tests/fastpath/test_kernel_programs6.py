"""The kernel tier's IPv6-in-IPv6 paths (``bpf/netlmm_tc6.h``), run by the kernel on
test packets (``BPF_PROG_TEST_RUN``) against the Cython twin's verdict and output for the same
packet: the DMPA's decapsulation to the MS byte for byte, the DLMAP's into the stack, every
punt and drop of the three programs; then random and malformed input (Hypothesis): whatever
the kernel forwards the Cython twin forwards as the same bytes, whatever it drops the twin
drops, and what it punts it leaves as it came. A test run's packet comes in on the loopback,
so the access prefix is bound to it here (the anti-spoofing check compares the port).
Encapsulation needs a route to the endpoint, which a test run in the root namespace seldom
has: the netns tests cover it (tests/netns/test_kernel_ipv6.py)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from fastpath.common import Direction, Reason, Verdict
from fastpath.kernel import (
    KERNEL_VERDICT,
    PROG_DLMAP,
    PROG_DMPA_ACCESS,
    PROG_DMPA_TRANSPORT,
    ROLE_DLMAP,
    KernelReason,
)
from tests.fastpath.conftest import (
    ACT_OF,
    TC_ACT_OK,
    TC_ACT_REDIRECT,
    TC_ACT_SHOT,
    TUNNEL_MTU,
    BindPeer,
    Loaded,
    load,
    same_reason,
)
from tests.fastpath.packets import DLMAP, DMPA, GATEWAY, MS_MAC, OTHER6, PSEUDO_MAC, eth, ipv6
from tests.fastpath.test_ipv6 import CN6, LL, MCAST_MAC, MS6, P1, ROUTER_LL, inner6
from tests.fastpath.test_twins import likely, mutated

LOOPBACK = 1  # a test run's input interface
MTU = TUNNEL_MTU
K = KernelReason


@pytest.fixture
def bind_peer() -> BindPeer:
    """The prefix P1, bound to the peer on the loopback (the shared ``dmpa``/``dlmap``)."""
    return lambda loaded, endpoint: loaded.bind_prefix(P1, endpoint, LOOPBACK)


def _cython(mtu: int = MTU) -> tuple[object, object]:
    fp = load("compiled")
    t1 = fp.HoaTable()
    t1.bind_prefix(P1, DLMAP, MS_MAC, link=0)
    dm = fp.Dmpa(t1, DMPA, PSEUDO_MAC, GATEWAY, tunnel_mtu=mtu, peers=[DLMAP])
    t2 = fp.HoaTable()
    t2.bind_prefix(P1, DMPA)
    dl = fp.Dlmap(t2, DLMAP, tunnel_mtu=mtu, peers=[DMPA])
    return dm, dl


NS = bytes([135, 0, 0, 0]) + bytes(4) + CN6  # a neighbour solicitation, unicast (NUD)
FRAGMENT = bytes([17, 0, 0, 1, 0, 0, 0, 7])  # a fragment header: offset 0, more fragments
HOP_BY_HOP = bytes([17, 0, 5, 2, 0, 0, 1, 0])  # hop-by-hop: router alert

UP_CASES: dict[str, tuple[bytes, bytes, KernelReason]] = {
    "nd": (inner6(nh=58, payload=NS), PSEUDO_MAC, K.ICMP_GATEWAY),
    "router_solicitation": (
        inner6(dst=ROUTER_LL, nh=58, payload=bytes([133, 0, 0, 0]) + bytes(4)),
        PSEUDO_MAC,
        K.ICMP_GATEWAY,
    ),
    "multicast_mac": (inner6(dst=bytes.fromhex("ff02" + "00" * 13 + "01")), MCAST_MAC, K.PASSED),
    "link_local_dst": (inner6(dst=LL), PSEUDO_MAC, K.PASSED),
    "multicast_dst": (inner6(dst=bytes.fromhex("ff0e" + "00" * 13 + "01")), PSEUDO_MAC, K.PASSED),
    "link_local_src": (inner6(src=LL), PSEUDO_MAC, K.PASSED),
    "unknown_ms": (inner6(src=OTHER6), PSEUDO_MAC, K.UNKNOWN_MS),
    "hop_limit_1": (inner6(hop=1), PSEUDO_MAC, K.TTL_EXPIRED),
    "oversize": (inner6(payload=bytes(MTU - 40 + 1)), PSEUDO_MAC, K.FRAG_NEEDED),
    "fragment": (inner6(nh=44, payload=FRAGMENT + bytes(16)), PSEUDO_MAC, K.IP_FRAGMENT),
    "hop_by_hop": (inner6(nh=0, payload=HOP_BY_HOP + bytes(16)), PSEUDO_MAC, K.EXT_HEADER),
    "truncated": (inner6()[:-4], PSEUDO_MAC, K.UNPARSED),
}


@pytest.mark.parametrize("case", sorted(UP_CASES))
def test_dmpa_access_leaves_what_cython_answers(dmpa: Loaded, case: str) -> None:
    packet, dst, reason = UP_CASES[case]
    frame = eth(packet, dst=dst, ethertype=0x86DD)
    act, out = dmpa.run(PROG_DMPA_ACCESS, frame)
    assert (act, out) == (TC_ACT_OK, frame)  # a punt leaves the frame as it came
    assert dmpa.counter(Direction.UPLINK, reason) == 1
    engine, _ = _cython()
    verdict, cy_reason, _, _ = engine.from_access(frame, 0, bytearray(2048))  # type: ignore[attr-defined]
    if reason in (K.FRAG_NEEDED, K.TTL_EXPIRED, K.ICMP_GATEWAY, K.UNKNOWN_MS):
        assert verdict == Verdict.PUNT  # the Cython tier answers it
    if reason in (K.IP_FRAGMENT, K.EXT_HEADER):
        assert verdict == Verdict.FORWARD  # the Cython tier carries what the kernel does not parse
    if reason in (K.PASSED, K.UNPARSED):
        assert verdict == Verdict.DROP  # up to the stack here; the Cython tier drops it
    same_reason(reason, verdict, cy_reason)


def test_dmpa_access_drops_a_bound_prefix_from_another_mac(dmpa: Loaded) -> None:
    frame = eth(inner6(), src=bytes.fromhex("02aabbccdd99"), ethertype=0x86DD)
    assert dmpa.run(PROG_DMPA_ACCESS, frame) == (TC_ACT_SHOT, frame)
    assert dmpa.counter(Direction.UPLINK, K.SPOOFED_SRC) == 1
    engine, _ = _cython()
    verdict, reason, _, _ = engine.from_access(frame, 0, bytearray(2048))  # type: ignore[attr-defined]
    assert (verdict, reason) == (Verdict.DROP, Reason.SPOOFED_SRC)


DOWN_CASES: dict[str, tuple[bytes, KernelReason]] = {
    "forwarded": (ipv6(inner6(src=CN6, dst=MS6), nh=41), K.FORWARDED),
    "tcp_tc": (
        ipv6(inner6(src=CN6, dst=MS6, nh=6, payload=bytes(40), tc=0xB8), nh=41),
        K.FORWARDED,
    ),
    "hop_limit_1": (ipv6(inner6(src=CN6, dst=MS6, hop=1), nh=41), K.TTL_EXPIRED),
    "no_binding": (ipv6(inner6(src=CN6, dst=OTHER6), nh=41), K.NO_BINDING),
    "src_not_bound": (ipv6(inner6(src=CN6, dst=MS6), src=OTHER6, nh=41), K.SRC_NOT_BOUND),
    "outer_ce": (ipv6(inner6(src=CN6, dst=MS6, tc=1), nh=41, tc=3), K.ECN_CE),
    "inner_ipv4": (ipv6(bytes([0x45]) + bytes(39), nh=41), K.UNPARSED),
}


@pytest.mark.parametrize("case", sorted(DOWN_CASES))
def test_dmpa_transport_matches_cython(dmpa: Loaded, case: str) -> None:
    packet, reason = DOWN_CASES[case]
    frame = eth(packet, dst=b"\x02" * 6, src=b"\x04" * 6, ethertype=0x86DD)
    act, out = dmpa.run(PROG_DMPA_TRANSPORT, frame)
    assert act == ACT_OF[KERNEL_VERDICT[reason]]
    assert dmpa.counter(Direction.DOWNLINK, reason) == 1
    engine, _ = _cython()
    result = bytearray(2048)
    verdict, cy_reason, length, _ = engine.from_tunnel_ipv6(packet, result)  # type: ignore[attr-defined]
    if reason is K.FORWARDED:
        assert verdict == Verdict.FORWARD
        assert out == bytes(result[:length])  # byte for byte, the hop limit decremented once
        assert out[:14] == MS_MAC + PSEUDO_MAC + b"\x86\xdd"
        assert out[14 + 7] == 63
        assert dmpa.prefix_packets(P1) == 1
    else:
        assert out == frame  # a punt or a drop leaves the packet as it came
        if KERNEL_VERDICT[reason] is Verdict.DROP:
            assert verdict == Verdict.DROP
        same_reason(reason, verdict, cy_reason)


def test_dlmap_uplink_decapsulates_into_the_stack(dlmap: Loaded) -> None:
    inner = inner6(nh=58, payload=bytes([128, 0, 0, 0, 0, 1, 0, 1]))
    frame = eth(ipv6(inner, src=DMPA, dst=DLMAP, nh=41), ethertype=0x86DD)
    act, out = dlmap.run(PROG_DLMAP, frame)
    assert act == TC_ACT_OK  # no TUN in the configuration: into the stack here
    assert out == frame[:14] + inner  # hop limit unchanged: the stack decrements it
    assert dlmap.counter(Direction.UPLINK, K.FORWARDED) == 1
    _, engine = _cython()
    result = bytearray(2048)
    packet = ipv6(inner, src=DMPA, dst=DLMAP, nh=41)
    verdict, _, length, _ = engine.from_tunnel_ipv6(packet, result)  # type: ignore[attr-defined]
    assert verdict == Verdict.FORWARD and bytes(result[:length]) == inner
    assert dlmap.prefix_packets(P1) == 1


def test_dlmap_drops_a_prefix_not_bound_to_its_peer(dlmap: Loaded) -> None:
    for src, inner_src in ((OTHER6, MS6), (DMPA, CN6)):
        frame = eth(ipv6(inner6(src=inner_src), src=src, dst=DLMAP, nh=41), ethertype=0x86DD)
        act, out = dlmap.run(PROG_DLMAP, frame)
        assert (act, out) == (TC_ACT_SHOT, frame)
    assert dlmap.counter(Direction.UPLINK, K.SRC_NOT_BOUND) == 2


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (inner6(src=CN6, dst=MS6, hop=1), K.TTL_EXPIRED),
        (inner6(src=CN6, dst=MS6, payload=bytes(MTU - 40 + 1)), K.FRAG_NEEDED),
        (inner6(src=CN6, dst=MS6, nh=0, payload=HOP_BY_HOP + bytes(16)), K.EXT_HEADER),
        (inner6(src=CN6, dst=OTHER6), K.PASSED),
    ],
)
def test_dlmap_downlink_leaves_what_the_stack_answers(
    dlmap: Loaded, packet: bytes, reason: KernelReason
) -> None:
    """Punted on the uplink interface's ingress: the stack routes it into the TUN (the hop
    limit, Packet Too Big: the kernel's answers) or elsewhere."""
    frame = eth(packet, dst=b"\x02" * 6, ethertype=0x86DD)
    assert dlmap.run(PROG_DLMAP, frame) == (TC_ACT_OK, frame)
    assert dlmap.counter(Direction.DOWNLINK, reason) == 1


# --- random and malformed tunnel input: the kernel never does what the Cython twin would not ---


@st.composite
def tunnel6(draw: st.DrawFn, local: bytes, peer: bytes, uplink: bool) -> bytes:
    """Next header 41 to ``local``, mostly from ``peer``, around IPv6 of any kind (mostly with
    the bound prefix as its source, ``uplink``, or its destination)."""
    others = [CN6, LL, OTHER6]
    ms, cn = likely(draw, MS6, others), draw(st.sampled_from([CN6, MS6, LL, OTHER6]))
    inner = inner6(
        src=ms if uplink else cn,
        dst=cn if uplink else ms,
        nh=draw(st.sampled_from([17, 6, 58, 0, 44, 60])),
        payload=draw(st.binary(max_size=48)),
        hop=likely(draw, 64, [2, 1, 0, 255]),
        tc=draw(st.integers(0, 255)),
    )
    src = likely(draw, peer, [OTHER6, local])
    return ipv6(inner, src=src, dst=likely(draw, local, [OTHER6]), nh=likely(draw, 41, [4, 17]))


def _compare(loaded: Loaded, prog: str, packet: bytes, engine: object, strip: int) -> None:
    assume(len(packet) >= 40)  # a test run of an IPv6 frame needs its header (EINVAL)
    frame = eth(packet, dst=b"\x02" * 6, src=b"\x04" * 6, ethertype=0x86DD)
    act, out = loaded.run(prog, frame)
    event(f"TC action {act}")
    result = bytearray(2048)
    verdict, _, length, _ = engine.from_tunnel_ipv6(packet, result)  # type: ignore[attr-defined]
    if act == TC_ACT_REDIRECT:  # forwarded: the Cython tier forwards the same bytes
        assert verdict == Verdict.FORWARD
        assert out[strip:] == bytes(result[:length])
    elif act == TC_ACT_SHOT:  # dropped: the Cython tier drops it too
        assert verdict == Verdict.DROP
        assert out == frame
    else:  # left as it came for the Cython tier
        assert (act, out) == (TC_ACT_OK, frame)


EXAMPLES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@EXAMPLES
@given(packet=mutated(tunnel6(DMPA, DLMAP, uplink=False)))
def test_dmpa_transport_random_input_agrees_with_cython(dmpa: Loaded, packet: bytes) -> None:
    engine, _ = _cython()
    _compare(dmpa, PROG_DMPA_TRANSPORT, packet, engine, 0)


@pytest.fixture
def dlmap_tun(kernel: ModuleType) -> Iterator[Loaded]:
    """A DLMAP whose TUN is the loopback: what it decapsulates is redirected (not run)."""
    loaded = Loaded(kernel, ROLE_DLMAP, DLMAP, tun=LOOPBACK)
    try:
        loaded.bind_prefix(P1, DMPA, LOOPBACK)
        yield loaded
    finally:
        loaded.close()


@EXAMPLES
@given(packet=mutated(tunnel6(DLMAP, DMPA, uplink=True)))
def test_dlmap_random_tunnel_input_agrees_with_cython(dlmap_tun: Loaded, packet: bytes) -> None:
    _, engine = _cython()
    _compare(dlmap_tun, PROG_DLMAP, packet, engine, 14)


@st.composite
def access6(draw: st.DrawFn) -> bytes:
    """An MS's IPv6 frame, mostly from the bound prefix to the pseudo-MAC."""
    packet = inner6(
        src=likely(draw, MS6, [CN6, LL, OTHER6]),
        dst=likely(draw, CN6, [MS6, LL, ROUTER_LL, bytes.fromhex("ff02" + "00" * 13 + "02")]),
        nh=draw(st.sampled_from([17, 6, 58, 0, 44, 60, 43])),
        payload=draw(st.binary(max_size=48)),
        hop=likely(draw, 64, [2, 1, 0]),
        tc=draw(st.integers(0, 255)),
    )
    dst = likely(draw, PSEUDO_MAC, [MCAST_MAC, b"\x02" * 6])
    src = likely(draw, MS_MAC, [bytes.fromhex("02aabbccdd99")])
    return dst + src + b"\x86\xdd" + packet


@EXAMPLES
@given(frame=mutated(access6()))
def test_dmpa_access_random_input_agrees_with_cython(dmpa: Loaded, frame: bytes) -> None:
    """Encapsulation needs a route (here usually none: a punt); what the kernel forwards or
    drops, the Cython tier forwards (the same IPv6-in-IPv6 packet) or drops."""
    assume(len(frame) >= 54)
    act, out = dmpa.run(PROG_DMPA_ACCESS, frame)
    event(f"TC action {act}")
    engine, _ = _cython()
    result = bytearray(2048)
    verdict, _, length, _ = engine.from_access(frame, 0, result)  # type: ignore[attr-defined]
    if act == TC_ACT_REDIRECT:
        assert verdict == Verdict.FORWARD and out[14:] == bytes(result[:length])
    elif act == TC_ACT_SHOT:
        assert verdict == Verdict.DROP and out == frame
    else:
        assert (act, out) == (TC_ACT_OK, frame)
