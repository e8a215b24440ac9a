"""Ethernet II frames, 802.1Q tags and MAC addresses."""

from __future__ import annotations

import pytest

from router.wire.errors import EncodeError, TruncatedError
from router.wire.ethernet import (
    BROADCAST_MAC,
    ZERO_MAC,
    EthernetFrame,
    EtherType,
    MacAddress,
    VlanTag,
)

# A broadcast ARP frame as a host puts it on the wire: header, 28 ARP bytes, 18 bytes of padding.
ARP_FRAME = bytes.fromhex(
    "ffffffffffff" "000b8201fc42" "0806"
    "0001080006040001000b8201fc42c000020a000000000000c0000201"
    + "00" * 18
)  # fmt: skip


class TestMacAddress:
    def test_parse_and_format(self) -> None:
        mac = MacAddress.parse("00:0B:82:01:fc:42")
        assert mac.packed == bytes.fromhex("000b8201fc42")
        assert str(mac) == "00:0b:82:01:fc:42"
        assert repr(mac) == "MacAddress('00:0b:82:01:fc:42')"

    def test_parse_dash_separator(self) -> None:
        assert MacAddress.parse("02-00-5e-00-53-01") == MacAddress(bytes.fromhex("02005e005301"))

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "00:0b:82:01:fc",
            "00:0b:82:01:fc:42:00",
            "00:0b:82:01:fc:4g",
            "000b8201fc42",
            "0:b:82:1:fc:42",
        ],
    )
    def test_parse_rejects(self, text: str) -> None:
        with pytest.raises(ValueError, match="not a MAC address"):
            MacAddress.parse(text)

    def test_wrong_size_is_an_encode_error(self) -> None:
        with pytest.raises(EncodeError):
            MacAddress(b"\x00" * 5)

    def test_properties(self) -> None:
        assert BROADCAST_MAC.is_broadcast and BROADCAST_MAC.is_multicast
        assert MacAddress.parse("01:00:5e:00:00:01").is_multicast
        assert not MacAddress.parse("01:00:5e:00:00:01").is_broadcast
        unicast = MacAddress.parse("02:00:00:00:00:01")
        assert not unicast.is_multicast and unicast.is_locally_administered
        assert not MacAddress.parse("00:0b:82:01:fc:42").is_locally_administered
        assert str(ZERO_MAC) == "00:00:00:00:00:00"


class TestEthernetFrame:
    def test_decode_known_frame(self) -> None:
        frame = EthernetFrame.decode(ARP_FRAME)
        assert frame.dst == BROADCAST_MAC
        assert frame.src == MacAddress.parse("00:0b:82:01:fc:42")
        assert frame.ethertype is EtherType.ARP
        assert frame.vlan is None
        assert len(frame.payload) == 46  # ARP plus the padding: the ARP codec drops it
        assert frame.encode() == ARP_FRAME

    def test_build(self) -> None:
        frame = EthernetFrame(
            dst=BROADCAST_MAC,
            src=MacAddress.parse("00:0b:82:01:fc:42"),
            ethertype=EtherType.IPV4,
            payload=b"x",
        )
        assert frame.encode() == bytes.fromhex("ffffffffffff000b8201fc420800") + b"x"
        assert frame.header_size == 14

    def test_unknown_ethertype_stays_int(self) -> None:
        frame = EthernetFrame.decode(bytes(12) + b"\x88\xcc")  # LLDP
        assert frame.ethertype == 0x88CC
        assert type(frame.ethertype) is int
        assert frame.payload == b""

    def test_vlan_tagged(self) -> None:
        tag = "8100b064"  # TPID, TCI: PCP 5, DEI 1, VID 100
        wire = bytes.fromhex("ffffffffffff000b8201fc42" + tag + "0800") + b"payload"
        frame = EthernetFrame.decode(wire)
        assert frame.vlan == VlanTag(vid=100, pcp=5, dei=True)
        assert frame.vlan.tci == 0xB064
        assert frame.ethertype is EtherType.IPV4
        assert frame.payload == b"payload"
        assert frame.header_size == 18
        assert frame.encode() == wire

    def test_double_tag_keeps_inner_tag_in_payload(self) -> None:
        wire = bytes(12) + bytes.fromhex("8100000a" "8100000b" "0800")  # fmt: skip
        frame = EthernetFrame.decode(wire)
        assert frame.vlan == VlanTag(vid=10)
        assert frame.ethertype is EtherType.VLAN
        assert frame.payload == bytes.fromhex("000b0800")
        assert frame.encode() == wire

    def test_decode_at_offset(self) -> None:
        frame = EthernetFrame.decode(b"\xaa\xbb" + ARP_FRAME, offset=2)
        assert frame == EthernetFrame.decode(ARP_FRAME)

    def test_truncated_header(self) -> None:
        with pytest.raises(TruncatedError) as info:
            EthernetFrame.decode(ARP_FRAME[:13])
        assert (info.value.field, info.value.offset) == ("ethernet.header", 0)

    def test_truncated_tag(self) -> None:
        with pytest.raises(TruncatedError) as info:
            EthernetFrame.decode(b"\x00" * 5 + bytes(12) + b"\x81\x00\x00", offset=5)
        assert (info.value.field, info.value.offset) == ("ethernet.vlan", 19)

    def test_encode_errors(self) -> None:
        with pytest.raises(EncodeError):
            EthernetFrame(BROADCAST_MAC, ZERO_MAC, 0x10000)
        with pytest.raises(EncodeError):
            EthernetFrame(BROADCAST_MAC, ZERO_MAC, EtherType.VLAN)
        with pytest.raises(EncodeError):
            VlanTag(vid=4096)
        with pytest.raises(EncodeError):
            VlanTag(vid=1, pcp=8)
