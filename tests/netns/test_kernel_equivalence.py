"""The twins idea one tier up: the same packet sequences through a domain whose nodes run the
kernel tier and through one whose nodes run the Cython tier alone give the same packets at the
far side, byte for byte (the TTL decremented once per node), and the same verdict per case:
forwarded, answered with the same ICMP error, fragmented alike, or not delivered.

Non-GSO packets, forged with scapy at the MS (uplink) and at the CN (downlink), each carrying a
marker; a capture on the far side and one on the near side (the ICMP errors) record every
marked frame. Packets the test sent are compared whole (from the IPv4 header on: MACs differ
between two labs); packets a node or host made (ICMP errors, echo replies, port unreachables)
with their IP ID and header checksum masked, which the kernel picks at random.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPOption
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.topology import CN_ADDRESS, CN_IF, MS_IF, UPLINK_IF, Lab
from tests.netns.forge import PSEUDO, Leg, exchange_both_ways, marker

pytestmark = pytest.mark.root

TUNNEL_MTU = 1400
CN = str(CN_ADDRESS)


#: The cases of one direction, in the order sent; a case's UDP source port is 40000 + index
#: (an ICMP error quotes the header and 8 bytes: the port names the case, not the marker).
CASES = ("small", "tos", "mtu", "icmp", "ttl2", "ttl1", "big_df", "big", "options", "fragment")


def _udp(kind: str, size: int = 0) -> Packet:
    payload = marker(kind)
    port = 40000 + CASES.index(kind.split("_", 1)[1])
    return UDP(sport=port, dport=9) / Raw(payload + b"." * max(0, size - 28 - len(payload)))


def _cases(src: str, dst: str, prefix: str) -> list[Packet]:
    """One direction's sequence: each case names itself in its marker."""

    def ip(**fields: Any) -> IP:  # an IP ID of its own per case: no two share a reassembly
        return IP(src=src, dst=dst, **fields)

    def udp(kind: str, size: int = 0) -> Packet:
        return _udp(f"{prefix}_{kind}", size)

    cases = [
        ip() / udp("small"),
        ip(tos=0xB9) / udp("tos"),  # DSCP EF, ECT(1)
        ip(flags="DF") / udp("mtu", TUNNEL_MTU),
        ip() / ICMP(type=8, id=7, seq=1) / Raw(marker(f"{prefix}_icmp")),
        ip(ttl=2) / udp("ttl2"),
        ip(ttl=1) / udp("ttl1"),
        ip(flags="DF") / udp("big_df", TUNNEL_MTU + 50),
        ip() / udp("big", TUNNEL_MTU + 50),
        ip(options=[IPOption(b"\x01\x01\x01\x00")]) / udp("options"),
        ip(flags="MF") / udp("fragment", 200),
        ip() / UDP(sport=39999, dport=9) / Raw(marker(f"{prefix}_end")),  # sent last
    ]
    for index, packet in enumerate(cases):
        packet[IP].id = 0x4E00 + index
    return cases


def _normal(frame: bytes, sender: str) -> bytes:
    """The IPv4 packet of ``frame``; ID and header checksum masked unless ``sender`` sent it."""
    packet = frame[14:]
    if packet[:1] and packet[0] >> 4 == 4 and IP(packet).src != sender:
        packet = packet[:4] + b"\x00\x00" + packet[6:10] + b"\x00\x00" + packet[12:]
    return packet


def _run(datapath: str) -> tuple[str, dict[str, list[bytes]], Counter[str]]:
    """One domain of ``datapath``: its HoA, the normalised frames by case, counter deltas."""
    with Lab(mobiles=1) as lab:
        for ns in ("cn", "lm", "m1", "ms"):  # every ICMP error sent, none left to a rate limit
            lab.sysctl(ns, "net.ipv4.icmp_ratelimit=0")
        profile = MobileProfile("ms@example.org", lab.ms_mac("ms"), "dhcp", None)
        domain = Domain(lab, [profile], datapath=datapath, tunnel_mtu=TUNNEL_MTU)
        domain.start(("dlmap", "dmpa1"))
        hoa = str(DhcpClient(lab).once(tries=10).address)
        lm_mac = next(x["address"] for x in lab.links("lm") if x["ifname"] == UPLINK_IF)
        cn_mac = next(x["address"] for x in lab.links("cn") if x["ifname"] == CN_IF)
        legs = {
            direction: Leg(
                (ns, ifname),
                far,
                [bytes(Ether(src=macs[0], dst=macs[1]) / p) for p in _cases(src, dst, direction)],
                src,
            )
            for direction, (ns, ifname, far, macs, src, dst) in {
                "up": ("ms", MS_IF, ("cn", CN_IF), (lab.ms_mac("ms"), PSEUDO), hoa, CN),
                "down": ("cn", CN_IF, ("ms", MS_IF), (cn_mac, lm_mac), CN, hoa),
            }.items()
        }
        frames, delta = exchange_both_ways(lab, domain, legs, _normal)
        domain.stop()
    return hoa, frames, delta


def test_kernel_and_cython_tiers_deliver_the_same_packets(root: None) -> None:
    hoa_c, cython, _ = _run("cython")
    hoa_k, kernel, counted = _run("kernel")
    assert hoa_c == hoa_k  # the same pool, the same first address: the packets can be equal
    # not vacuous: what both tiers forward arrived, in both directions, and the punts answered
    ttl2 = 40000 + CASES.index("ttl2")
    assert cython.get(f"ms:icmp11.0:{ttl2}"), sorted(cython)  # expired at the DLMAP
    for case in ("cn:up_small", "cn:up_tos", "cn:up_mtu", "cn:up_end"):
        assert cython.get(case), (case, sorted(cython))
    for case in ("ms:down_small", "ms:down_tos", "ms:down_mtu", "ms:down_end"):
        assert cython.get(case), (case, sorted(cython))
    ttl1, big_df = 40000 + CASES.index("ttl1"), 40000 + CASES.index("big_df")
    assert cython.get(f"ms:icmp11.0:{ttl1}") and cython.get(f"ms:icmp3.4:{big_df}"), sorted(cython)
    assert cython.get(f"cn:icmp11.0:{ttl1}") and cython.get(f"cn:icmp3.4:{big_df}"), sorted(cython)
    assert set(kernel) == set(cython), (set(kernel) - set(cython), set(cython) - set(kernel))
    for case in sorted(cython):
        assert kernel[case] == cython[case], case
    # each case took the tier's way: forwarded in the kernel, or left to the Cython tier
    expected = {
        "dmpa1/kernel/uplink.forwarded": 1,
        "dmpa1/kernel/uplink.ttl_expired": 1,
        "dmpa1/kernel/uplink.frag_needed": 1,
        "dmpa1/kernel/uplink.fragment": 1,
        "dmpa1/kernel/uplink.ip_options": 1,
        "dmpa1/kernel/uplink.ip_fragment": 1,
        "dlmap/kernel/uplink.forwarded": 1,
        "dlmap/kernel/downlink.forwarded": 1,
        "dlmap/kernel/downlink.ttl_expired": 1,
        "dlmap/kernel/downlink.frag_needed": 1,
        "dlmap/kernel/downlink.fragment": 1,
        "dlmap/kernel/downlink.ip_options": 1,
        "dlmap/kernel/downlink.ip_fragment": 1,
        "dmpa1/kernel/downlink.forwarded": 1,
        "dmpa1/kernel/downlink.ttl_expired": 1,
    }
    for name, least in expected.items():
        assert counted[name] >= least, (name, {k: v for k, v in counted.items() if "kernel" in k})
