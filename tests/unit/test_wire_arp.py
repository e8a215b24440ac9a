"""ARP for Ethernet/IPv4 (RFC 826, RFC 5227)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.wire.arp import ArpOp, ArpPacket, reply_to
from router.wire.errors import EncodeError, FieldValueError, TruncatedError
from router.wire.ethernet import ZERO_MAC, EthernetFrame, MacAddress

MS_MAC = MacAddress.parse("00:0b:82:01:fc:42")
GW_MAC = MacAddress.parse("02:00:5e:00:53:01")

# "Who has 192.0.2.1? Tell 192.0.2.10", byte by byte (RFC 826 packet format).
REQUEST = bytes.fromhex(
    "0001"  # hardware type: Ethernet
    "0800"  # protocol type: IPv4
    "06" "04"  # address lengths
    "0001"  # op: request
    "000b8201fc42" "c000020a"  # sender MAC, 192.0.2.10
    "000000000000" "c0000201"  # target MAC (unknown), 192.0.2.1
)  # fmt: skip


def test_decode_request() -> None:
    arp = ArpPacket.decode(REQUEST)
    assert arp == ArpPacket(
        op=ArpOp.REQUEST,
        sender_mac=MS_MAC,
        sender_ip=IPv4Address("192.0.2.10"),
        target_mac=ZERO_MAC,
        target_ip=IPv4Address("192.0.2.1"),
    )
    assert arp.op is ArpOp.REQUEST
    assert arp.encode() == REQUEST
    assert ArpPacket.request(MS_MAC, IPv4Address("192.0.2.10"), IPv4Address("192.0.2.1")) == arp


def test_decode_from_padded_frame() -> None:
    frame = bytes.fromhex("ffffffffffff000b8201fc420806") + REQUEST + bytes(18)
    eth = EthernetFrame.decode(frame)
    assert ArpPacket.decode(eth.payload).sender_mac == MS_MAC
    assert ArpPacket.decode(frame, 14) == ArpPacket.decode(REQUEST)


def test_reply_to() -> None:
    reply = reply_to(ArpPacket.decode(REQUEST), GW_MAC)
    assert reply.encode() == bytes.fromhex(
        "0001080006040002"  # Ethernet/IPv4, op: reply
        "02005e005301" "c0000201"  # sender: the gateway's MAC, 192.0.2.1
        "000b8201fc42" "c000020a"  # target: the requester
    )  # fmt: skip
    assert reply.op is ArpOp.REPLY
    assert (reply.sender_mac, reply.sender_ip) == (GW_MAC, IPv4Address("192.0.2.1"))
    assert (reply.target_mac, reply.target_ip) == (MS_MAC, IPv4Address("192.0.2.10"))


def test_reply_to_a_reply_is_our_bug() -> None:
    reply = reply_to(ArpPacket.decode(REQUEST), GW_MAC)
    with pytest.raises(EncodeError):
        reply_to(reply, GW_MAC)


def test_probe_and_gratuitous() -> None:
    probe = ArpPacket.request(MS_MAC, IPv4Address(0), IPv4Address("192.0.2.10"))
    assert probe.is_probe and not probe.is_gratuitous
    announcement = ArpPacket.announcement(MS_MAC, IPv4Address("192.0.2.10"))
    assert announcement.is_gratuitous and not announcement.is_probe
    assert announcement.target_mac == ZERO_MAC
    garp_reply = ArpPacket(
        ArpOp.REPLY, MS_MAC, IPv4Address("192.0.2.10"), MS_MAC, IPv4Address("192.0.2.10")
    )
    assert garp_reply.is_gratuitous and not garp_reply.is_probe
    plain = ArpPacket.decode(REQUEST)
    assert not plain.is_probe and not plain.is_gratuitous


def test_unknown_op_is_kept() -> None:
    arp = ArpPacket.decode(REQUEST[:6] + b"\x00\x09" + REQUEST[8:])  # InARP request
    assert arp.op == 9 and type(arp.op) is int
    assert arp.encode()[6:8] == b"\x00\x09"


@pytest.mark.parametrize(
    ("index", "value", "field"),
    [
        (0, b"\x00\x06", "arp.htype"),  # IEEE 802 networks
        (2, b"\x86\xdd", "arp.ptype"),
        (4, b"\x08", "arp.hlen"),
        (5, b"\x10", "arp.plen"),
    ],
)
def test_rejects_other_flavours(index: int, value: bytes, field: str) -> None:
    data = b"\xee" * 3 + REQUEST[:index] + value + REQUEST[index + len(value) :]
    with pytest.raises(FieldValueError) as info:
        ArpPacket.decode(data, offset=3)
    assert (info.value.field, info.value.offset) == (field, 3 + index)


def test_truncated() -> None:
    with pytest.raises(TruncatedError) as info:
        ArpPacket.decode(REQUEST[:27])
    assert (info.value.field, info.value.offset) == ("arp", 0)


def test_op_width() -> None:
    with pytest.raises(EncodeError):
        ArpPacket(0x10000, MS_MAC, IPv4Address(0), ZERO_MAC, IPv4Address(0))
