"""Wireshark's ICMPv6 dissector reads the errors the tunnel entry sends about a dual-stack MS's
IPv6 (router/services/ipv6_slowpath.py, RFC 4443): Packet Too Big with its MTU and Time
Exceeded, checksums good, the invoking packet quoted."""

from __future__ import annotations

from ipaddress import IPv6Address
from pathlib import Path

import pytest

from router.services.ipv6_slowpath import icmpv6_error
from router.wire.ethernet import EthernetFrame, EtherType, MacAddress
from router.wire.nd import IPv6Packet, link_local_from_mac
from tests.oracle.tshark import LINKTYPE_ETHERNET, fields, write_pcap

pytestmark = pytest.mark.tshark

MS_MAC = MacAddress.parse("02:aa:bb:cc:dd:01")
PSEUDO = MacAddress.parse("02:00:00:00:00:01")
MS6 = IPv6Address("2001:db8:ff00:17::5")
CN6 = IPv6Address("2001:db8:cafe::1")


def test_packet_too_big_and_time_exceeded_as_tshark_reads_them(
    tshark_path: str, tmp_path: Path
) -> None:
    router = link_local_from_mac(PSEUDO)
    big = IPv6Packet(MS6, CN6, 17, 64, bytes(8) + bytes(1452)).encode()
    late = IPv6Packet(MS6, CN6, 17, 1, bytes(8) + bytes(92)).encode()
    too_big = icmpv6_error("frag_needed", big, router, 1460)
    exceeded = icmpv6_error("ttl", late, router)
    assert too_big is not None and exceeded is not None
    frames = [
        EthernetFrame(MS_MAC, PSEUDO, EtherType.IPV6, p).encode() for p in (too_big, exceeded)
    ]
    pcap = tmp_path / "icmpv6.pcap"
    write_pcap(pcap, frames, LINKTYPE_ETHERNET)
    names = [
        "ipv6.src",
        "ipv6.dst",
        "icmpv6.type",
        "icmpv6.code",
        "icmpv6.checksum.status",
        "icmpv6.mtu",
        "ipv6.hlim",
    ]
    rows = fields(tshark_path, pcap, names)
    assert len(rows) == 2, rows
    for row, kind in zip(rows, ("2", "3"), strict=True):
        # the outer header first, then the quoted one (occurrence=a)
        assert row["ipv6.src"].split(",")[:2] == [str(router), str(MS6)]
        assert row["ipv6.dst"].split(",")[:2] == [str(MS6), str(CN6)]
        assert (row["icmpv6.type"], row["icmpv6.code"]) == (kind, "0")
        assert row["icmpv6.checksum.status"] == "1"  # Good
    assert rows[0]["icmpv6.mtu"] == "1460" and rows[1]["icmpv6.mtu"] == ""
    assert rows[1]["ipv6.hlim"].split(",") == ["64", "1"]
