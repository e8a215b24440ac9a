"""The kernel tier's IPv6-in-IPv6 (docs/kernel-tier.md, issue 18): a dual-stack MS's IPv6
through real ``netlmm run`` nodes with ``[node] datapath`` set, in a lab with IPv6 on.

* The equivalence of tests/netns/test_kernel_equivalence.py for IPv6: the same forged packet
  sequences (each carrying a marker) through a domain running the kernel tier and one running
  the Cython tier alone give the same packets at the far side, byte for byte (the hop limit
  decremented once per node), and the same answers at the near side (Time Exceeded, Packet
  Too Big, port unreachable, which quote the marker), or nothing for both (a spoofed
  source). The kernel
  counters say each case took the kernel tier's way: forwarded, or left to the Cython tier by
  its reason.
* A TCP bulk transfer over IPv6 both ways arrives whole through the kernel tier, and with the
  transport's offloads off every IPv6-in-IPv6 packet on the wire fits the tunnel MTU with a
  valid TCP checksum (tshark).
"""

from __future__ import annotations

import json
from collections import Counter
from ipaddress import IPv6Address
from typing import Any

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    RouterAlert,
)
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from netlmm_lab import dualstack, servers
from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import capture_open, tcp_transfer
from netlmm_lab.topology import CN_IF, MS_IF, TRANSPORT_IF, UPLINK_IF, Lab
from tests.conftest import require
from tests.netns.children import run_child
from tests.netns.forge import PSEUDO, Leg, exchange_both_ways, marker
from tests.oracle.tshark import TCP_CHECKSUM_FIELDS, fields, tcp_checksum_valid

pytestmark = pytest.mark.root

NAI = "dual@example.org"
TUNNEL_MTU = 1400
CN6 = str(dualstack.CN6)
SPOOF_MAC = "02:aa:bb:cc:dd:99"
CASES = ("small", "tclass", "mtu", "echo", "hop2", "hop1", "big", "hbh", "fragment", "spoofed")


def _cases(src: str, dst: str, prefix: str) -> list[tuple[str | None, Packet]]:
    """One direction's sequence: (an Ethernet source other than the sender's, packet)."""

    def ip(**fields: Any) -> IPv6:
        return IPv6(src=src, dst=dst, **fields)

    def udp(kind: str, size: int = 0) -> Packet:
        payload = marker(f"{prefix}_{kind}")
        port = 40000 + CASES.index(kind)
        return UDP(sport=port, dport=9) / Raw(payload + b"." * max(0, size - 48 - len(payload)))

    sequence: list[tuple[str | None, Packet]] = [
        (None, ip() / udp("small")),
        (None, ip(tc=0xB9) / udp("tclass")),  # DSCP EF, ECT(1)
        (None, ip() / udp("mtu", TUNNEL_MTU)),
        (None, ip() / ICMPv6EchoRequest(id=7, seq=1, data=marker(f"{prefix}_echo"))),
        (None, ip(hlim=2) / udp("hop2")),
        (None, ip(hlim=1) / udp("hop1")),
        (None, ip() / udp("big", TUNNEL_MTU + 50)),
        (None, ip() / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / udp("hbh")),
        (None, ip() / IPv6ExtHdrFragment(id=0x4E01, m=1) / udp("fragment", 200)),
    ]
    if prefix == "up":  # the MS's prefix from another MAC: dropped by both tiers
        sequence.append((SPOOF_MAC, ip() / udp("spoofed")))
    end = UDP(sport=39999, dport=9) / Raw(marker(f"{prefix}_end"))
    return [*sequence, (None, ip() / end)]  # sent last


def _dual_stack(lab: Lab, datapath: str, **options: Any) -> tuple[Domain, IPv6Address]:
    """A dual-stack MS bound (DHCP, SLAAC) through DLMAP and DMPA 1 running ``datapath``."""
    require(servers.binary("udhcpc") is not None, "udhcpc is not installed (make test)")
    dualstack.enable(lab)
    profile = MobileProfile(NAI, lab.ms_mac("ms"), "dhcp", None, ipv6=True)
    domain = Domain(
        lab, [profile], datapath=datapath, ipv6_pool=str(dualstack.IPV6_POOL), **options
    )
    domain.start(("dlmap", "dmpa1"))
    DhcpClient(lab).once(tries=10)
    wait_until(lambda: domain.binding(NAI) is not None, 10.0, "the DLMAP's binding")
    return domain, dualstack.wait_slaac(lab, timeout=20.0).address


def _run(datapath: str) -> tuple[str, dict[str, list[bytes]], Counter[str]]:
    """One domain of ``datapath``: the MS's address, the frames by case, counter deltas."""
    with Lab(mobiles=1) as lab:
        for ns in ("cn", "lm", "m1", "ms"):  # every ICMPv6 error sent, none left to a limit
            lab.sysctl(ns, "net.ipv6.icmp.ratelimit=0")
        domain, address = _dual_stack(lab, datapath, tunnel_mtu=TUNNEL_MTU)
        ms6 = str(address)
        lm_mac = next(x["address"] for x in lab.links("lm") if x["ifname"] == UPLINK_IF)
        cn_mac = next(x["address"] for x in lab.links("cn") if x["ifname"] == CN_IF)
        legs = {
            direction: Leg(
                (ns, ifname),
                far,
                [
                    bytes(Ether(src=mac or macs[0], dst=macs[1]) / p)
                    for mac, p in _cases(src, dst, direction)
                ],
                src,
            )
            for direction, (ns, ifname, far, macs, src, dst) in {
                "up": ("ms", MS_IF, ("cn", CN_IF), (lab.ms_mac("ms"), PSEUDO), ms6, CN6),
                "down": ("cn", CN_IF, ("ms", MS_IF), (cn_mac, lm_mac), CN6, ms6),
            }.items()
        }
        frames, delta = exchange_both_ways(lab, domain, legs, lambda frame, _: frame[14:])
        domain.stop()
    return ms6, frames, delta


def test_kernel_and_cython_tiers_deliver_the_same_ipv6_packets(root: None) -> None:
    ms_c, cython, _ = _run("cython")
    ms_k, kernel, counted = _run("kernel")
    assert ms_c == ms_k  # the same prefix and interface identifier: the packets can be equal
    # not vacuous: what both tiers forward arrived both ways, and the punts were answered
    for case in ("small", "tclass", "mtu", "echo", "hbh", "fragment", "end"):
        assert cython.get(f"cn:up_{case}"), (case, sorted(cython))
        assert cython.get(f"ms:down_{case}"), (case, sorted(cython))
    # answered to the sender, quoting the packet: by the DMPA's slow path to the MS (hop1 and
    # big up: router/services/ipv6_slowpath.py), by the DLMAP's stack (hop2 up, hop1 and big
    # down: routed into its TUN). Hop2 down expires at the DMPA, which answers only its MSs.
    answered = ("ms:up_hop1", "ms:up_big", "ms:up_hop2", "cn:down_hop1", "cn:down_big")
    for case in answered:
        assert cython.get(case), (case, sorted(cython))
    assert not any("spoofed" in case for case in cython), sorted(cython)
    assert set(kernel) == set(cython), (set(kernel) - set(cython), set(cython) - set(kernel))
    for case in sorted(cython):
        assert kernel[case] == cython[case], case
    expected = {
        "dmpa1/kernel/uplink.forwarded": 1,
        "dmpa1/kernel/uplink.ttl_expired": 1,
        "dmpa1/kernel/uplink.frag_needed": 1,
        "dmpa1/kernel/uplink.ext_header": 1,
        "dmpa1/kernel/uplink.ip_fragment": 1,
        "dmpa1/kernel/uplink.spoofed_src": 1,
        "dlmap/kernel/uplink.forwarded": 1,
        "dlmap/kernel/downlink.forwarded": 1,
        "dlmap/kernel/downlink.ttl_expired": 1,
        "dlmap/kernel/downlink.frag_needed": 1,
        "dlmap/kernel/downlink.ext_header": 1,
        "dlmap/kernel/downlink.ip_fragment": 1,
        "dmpa1/kernel/downlink.forwarded": 1,
        "dmpa1/kernel/downlink.ttl_expired": 1,
    }
    for name, least in expected.items():
        assert counted[name] >= least, (name, {k: v for k, v in counted.items() if "kernel" in k})


def test_ipv6_tcp_through_the_kernel_arrives_whole_and_fits_the_tunnel(
    root: None, tshark_path: str
) -> None:
    """TCP super-packets over IPv6 kept whole by the kernel tier (SKB_GSO_IPXIP6 around an
    IPv6 inner); with the transport's transmit offloads off the kernel cuts them: every
    IPv6-in-IPv6 packet on the wire within the tunnel MTU, every inner TCP checksum valid."""
    with Lab(mobiles=1) as lab:
        domain, address = _dual_stack(lab, "kernel")
        mtu = 1500  # the Domain's default tunnel MTU: the largest inner packet
        for ns in ("lm", "m1"):
            on = json.loads(run_child(lab.ns(ns), "offloads", TRANSPORT_IF))
            assert not [f for f in on if "segmentation" in f or f.startswith("tx-checksum")], on
        before = domain.ask("dmpa1", "counters")
        pcap, errors = lab.workdir / "tunnel6.pcap", lab.workdir / "dumpcap.err"
        with errors.open("w") as err:
            dumpcap = lab.popen(
                "lm", ["dumpcap", "-q", "-i", TRANSPORT_IF, "-w", str(pcap)], stderr=err.fileno()
            )
        wait_until(lambda: capture_open(errors), 10.0, "the capture open")
        up = tcp_transfer(lab, server=CN6, nbytes=5_000_000, seconds=10.0)
        down = tcp_transfer(
            lab, client_ns="cn", server_ns="ms", server=str(address), nbytes=5_000_000
        )
        lab.stop(dumpcap)
        assert up.bytes_acknowledged == down.bytes_acknowledged == 5_000_000
        after = domain.ask("dmpa1", "counters")
        domain.stop()
        names = ["ipv6.plen", *TCP_CHECKSUM_FIELDS, "tcp.len"]
        checks = {"tcp.check_checksum": "TRUE"}
        rows = fields(tshark_path, pcap, names, "ipv6.nxt == 41 && tcp", checks)
    carried = sum(int(row["tcp.len"]) for row in rows)
    assert carried >= 8_000_000, carried  # both transfers crossed in the tunnel
    lengths = [[int(n) for n in row["ipv6.plen"].split(",")] for row in rows]
    assert all(len(pair) == 2 and pair[0] == pair[1] + 40 for pair in lengths), lengths[:3]
    too_big = [pair for pair in lengths if pair[0] > mtu]  # outer payload: the inner packet
    assert not too_big, too_big[:3]
    bad = [row for row in rows if not tcp_checksum_valid(row)]  # 0xffff for 0: valid
    assert not bad, (len(bad), bad[:3])
    kernel = {k: after["kernel"][k] - before["kernel"][k] for k in after["kernel"]}
    assert kernel["uplink.forwarded.bytes"] > 5_000_000, kernel
    assert kernel["downlink.forwarded.bytes"] > 5_000_000, kernel
    fastpath = after["fastpath"]["uplink.bytes"] - before["fastpath"]["uplink.bytes"]
    assert fastpath < 1_000_000, fastpath  # not through the Cython tier
