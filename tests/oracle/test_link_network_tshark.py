"""Wireshark's dissectors as an oracle for the link/network codecs: tshark reads what we encode.

The frames go into a classic pcap file written with the stdlib; tshark prints the fields we ask
for, with the IPv4 and UDP checksum checks switched on (status 1 means "Good").
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from router.wire.arp import ArpPacket
from router.wire.dhcp import (
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
    RelayAgentInfo,
)
from router.wire.ethernet import BROADCAST_MAC, EthernetFrame, EtherType, MacAddress
from router.wire.icmp import (
    IcmpAddressMask,
    IcmpTimestamp,
    fragmentation_needed,
    ut_milliseconds,
)
from router.wire.ipv4 import IPProto, IPv4Flags, IPv4Packet
from router.wire.udp import UdpDatagram
from tests.oracle.tshark import LINKTYPE_ETHERNET, fields, write_pcap

pytestmark = pytest.mark.tshark

CLIENT_MAC = MacAddress.parse("00:0b:82:01:fc:42")
DMPA_MAC = MacAddress.parse("02:00:5e:00:53:01")
DLMAP = IPv4Address("192.0.2.1")
SERVER = IPv4Address("198.51.100.67")


CHECKSUMS = {"ip.check_checksum": "TRUE", "udp.check_checksum": "TRUE"}


def _tshark_fields(tshark: str, pcap: Path, names: list[str]) -> list[dict[str, str]]:
    """One dict per frame: field name -> value, with the IPv4 and UDP checksum checks on."""
    return fields(tshark, pcap, names, prefs=CHECKSUMS, timeout=60)


def _udp_frame(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, payload: bytes) -> bytes:
    udp = UdpDatagram(sport, dport, payload).encode(src, dst)
    packet = IPv4Packet(src, dst, IPProto.UDP, udp, identification=0x1234).encode()
    return EthernetFrame(DMPA_MAC, CLIENT_MAC, EtherType.IPV4, packet).encode()


def test_relayed_discover_with_option_82(tshark_path: str, tmp_path: Path) -> None:
    discover = DhcpMessage(
        op=BootpOp.BOOTREQUEST,
        xid=0xCAFE0001,
        chaddr=CLIENT_MAC.packed,
        hops=1,
        giaddr=DLMAP,
        options=(
            DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, DhcpMessageType.DISCOVER, 1),
            DhcpOption.from_addresses(DhcpOptionCode.REQUESTED_IP, IPv4Address("192.0.2.10")),
        ),
    ).with_relay_agent_info(
        RelayAgentInfo.of(circuit_id=b"tap0", remote_id=b"dmpa-1", subscriber_id=b"ms@example.net")
    )
    pcap = tmp_path / "dhcp.pcap"
    write_pcap(pcap, [_udp_frame(DLMAP, SERVER, 67, 67, discover.encode())], LINKTYPE_ETHERNET)
    opt82 = "dhcp.option.agent_information_option"
    fields = [
        "ip.checksum.status",
        "udp.checksum.status",
        "dhcp.id",
        "dhcp.hw.mac_addr",
        "dhcp.ip.relay",
        "dhcp.option.dhcp",
        "dhcp.option.requested_ip_address",
        f"{opt82}.suboption",
        f"{opt82}.agent_circuit_id",
        f"{opt82}.agent_remote_id",
        f"{opt82}.subscriber_id",
    ]
    (row,) = _tshark_fields(tshark_path, pcap, fields)
    assert row == {
        "ip.checksum.status": "1",
        "udp.checksum.status": "1",
        "dhcp.id": "0xcafe0001",
        "dhcp.hw.mac_addr": "00:0b:82:01:fc:42",
        "dhcp.ip.relay": "192.0.2.1",
        "dhcp.option.dhcp": "1",
        "dhcp.option.requested_ip_address": "192.0.2.10",
        f"{opt82}.suboption": "1,2,6",
        f"{opt82}.agent_circuit_id": b"tap0".hex(),
        f"{opt82}.agent_remote_id": b"dmpa-1".hex(),
        f"{opt82}.subscriber_id": "ms@example.net",
    }


def test_fragmentation_needed_and_arp(tshark_path: str, tmp_path: Path) -> None:
    big = IPv4Packet(
        IPv4Address("192.0.2.10"), SERVER, IPProto.UDP, bytes(1400), flags=IPv4Flags.DF
    ).encode()
    error = IPv4Packet(
        DLMAP, IPv4Address("192.0.2.10"), IPProto.ICMP, fragmentation_needed(big, 1240).encode()
    )
    icmp_frame = EthernetFrame(CLIENT_MAC, DMPA_MAC, EtherType.IPV4, error.encode()).encode()
    arp = ArpPacket.request(CLIENT_MAC, IPv4Address("192.0.2.10"), DLMAP)
    arp_frame = EthernetFrame(BROADCAST_MAC, CLIENT_MAC, EtherType.ARP, arp.encode()).encode()
    pcap = tmp_path / "icmp_arp.pcap"
    write_pcap(pcap, [icmp_frame, arp_frame], LINKTYPE_ETHERNET)
    fields = [
        "icmp.type",
        "icmp.code",
        "icmp.checksum.status",
        "icmp.mtu",
        "arp.opcode",
        "arp.src.hw_mac",
        "arp.src.proto_ipv4",
        "arp.dst.proto_ipv4",
    ]
    icmp_row, arp_row = _tshark_fields(tshark_path, pcap, fields)
    assert (icmp_row["icmp.type"], icmp_row["icmp.code"]) == ("3", "4")
    assert (icmp_row["icmp.checksum.status"], icmp_row["icmp.mtu"]) == ("1", "1240")
    assert arp_row["arp.opcode"] == "1"
    assert arp_row["arp.src.hw_mac"] == "00:0b:82:01:fc:42"
    assert (arp_row["arp.src.proto_ipv4"], arp_row["arp.dst.proto_ipv4"]) == (
        "192.0.2.10",
        "192.0.2.1",
    )


def test_the_gateway_query_replies(tshark_path: str, tmp_path: Path) -> None:
    """What the DMPA answers for the gateway besides echo: RFC 792 Timestamp and RFC 950
    Address Mask replies, as tshark reads them."""
    ms = IPv4Address("192.0.2.10")
    stamp = IcmpTimestamp(0x1234, 9, 43_200_000).make_reply(ut_milliseconds(1_000_000_000.25))
    mask = IcmpAddressMask(77, 3).make_reply(IPv4Address("255.255.255.0"))
    frames = [
        EthernetFrame(CLIENT_MAC, DMPA_MAC, EtherType.IPV4, packet.encode()).encode()
        for packet in (
            IPv4Packet(DLMAP, ms, IPProto.ICMP, stamp.encode()),
            IPv4Packet(DLMAP, ms, IPProto.ICMP, mask.encode()),
        )
    ]
    pcap = tmp_path / "queries.pcap"
    write_pcap(pcap, frames, LINKTYPE_ETHERNET)
    fields = [
        "icmp.type",
        "icmp.code",
        "icmp.checksum.status",
        "icmp.ident",
        "icmp.seq",
        "icmp.originate_timestamp",
        "icmp.receive_timestamp",
        "icmp.transmit_timestamp",
        "icmp.address_mask",
    ]
    stamp_row, mask_row = _tshark_fields(tshark_path, pcap, fields)
    assert [stamp_row[f] for f in fields[:8]] == [
        "14",
        "0",
        "1",
        str(0x1234),
        "9",
        "43200000",
        "6400250",
        "6400250",
    ]
    assert [mask_row[f] for f in (*fields[:5], fields[8])] == [
        "18",
        "0",
        "1",
        "77",
        "3",
        "255.255.255.0",
    ]
