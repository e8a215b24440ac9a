"""DHCPv4 messages (RFC 2131/2132) and the Relay Agent Information option (RFC 3046)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from router.wire.dhcp import (
    BOOTP_MIN_SIZE,
    BROADCAST_FLAG,
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
    RelayAgentInfo,
    RelayAgentSubOption,
)
from router.wire.errors import EncodeError, FieldValueError, LengthError, TruncatedError
from router.wire.ethernet import BROADCAST_MAC, EthernetFrame, EtherType, MacAddress
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram
from tests.unit._checksum_reference import ipv4_pseudo_header, reference_checksum

CLIENT_MAC = MacAddress.parse("00:0b:82:01:fc:42")
ZERO = IPv4Address(0)

# A DHCPDISCOVER written out field by field (RFC 2131 figure 1, RFC 2132 options).
DISCOVER = bytes.fromhex(
    "01" "01" "06" "00"  # op BOOTREQUEST, htype Ethernet, hlen 6, hops 0
    "00003d1d"  # xid
    "0000" "8000"  # secs, flags: broadcast
    "00000000" "00000000" "00000000" "00000000"  # ciaddr yiaddr siaddr giaddr
    "000b8201fc42" + "00" * 10  # chaddr
    + "00" * 64 + "00" * 128  # sname, file
    + "63825363"  # magic cookie
    "350101"  # 53 message type: DISCOVER
    "3d0701000b8201fc42"  # 61 client id: type 1 + MAC
    "3204c000020a"  # 50 requested IP 192.0.2.10
    "37040103062a"  # 55 parameter request list
    "ff"  # End
) + bytes(35)  # fmt: skip
assert len(DISCOVER) == 300

# The same message in UDP 68 -> 67 in IPv4 0.0.0.0 -> 255.255.255.255 in a broadcast frame.
# IPv4 header checksum by hand: 4500+0148+8011+ffff+ffff = 0x2c657, folded 0xc659, inverted 0x39a6.
_UDP_HEADER = bytes.fromhex("0044" "0043" "0134")  # fmt: skip
_UDP_CHECKSUM = reference_checksum(
    ipv4_pseudo_header(bytes(4), b"\xff" * 4, 17, 308), _UDP_HEADER, b"\x00\x00", DISCOVER
)
FRAME = (
    bytes.fromhex("ffffffffffff" "000b8201fc42" "0800")
    + bytes.fromhex("45000148" "00000000" "801139a6" "00000000" "ffffffff")
    + _UDP_HEADER
    + _UDP_CHECKSUM.to_bytes(2, "big")
    + DISCOVER
)  # fmt: skip


def _discover() -> DhcpMessage:
    return DhcpMessage(
        op=BootpOp.BOOTREQUEST,
        xid=0x3D1D,
        chaddr=CLIENT_MAC.packed,
        flags=BROADCAST_FLAG,
        options=(
            DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, DhcpMessageType.DISCOVER, 1),
            DhcpOption(DhcpOptionCode.CLIENT_ID, b"\x01" + CLIENT_MAC.packed),
            DhcpOption.from_addresses(DhcpOptionCode.REQUESTED_IP, IPv4Address("192.0.2.10")),
            DhcpOption(DhcpOptionCode.PARAMETER_REQUEST_LIST, bytes((1, 3, 6, 42))),
        ),
    )


class TestKnownBytes:
    def test_decode(self) -> None:
        message = DhcpMessage.decode(DISCOVER)
        assert message == _discover()
        assert message.op is BootpOp.BOOTREQUEST
        assert message.message_type is DhcpMessageType.DISCOVER
        assert message.client_mac == CLIENT_MAC
        assert message.broadcast
        assert message.requested_ip == IPv4Address("192.0.2.10")
        assert message.client_id == b"\x01" + CLIENT_MAC.packed
        assert message.get_option(DhcpOptionCode.PARAMETER_REQUEST_LIST) == bytes((1, 3, 6, 42))
        assert message.server_id is None and message.lease_time is None
        assert message.routers == () and message.relay_agent_info is None
        assert message.chaddr == CLIENT_MAC.packed + bytes(10)

    def test_encode(self) -> None:
        assert _discover().encode() == DISCOVER

    def test_whole_stack(self) -> None:
        assert reference_checksum(FRAME[14:34]) == 0
        frame = EthernetFrame.decode(FRAME)
        assert (frame.dst, frame.src, frame.ethertype) == (
            BROADCAST_MAC,
            CLIENT_MAC,
            EtherType.IPV4,
        )
        packet = IPv4Packet.decode(FRAME, 14)
        assert packet.protocol is IPProto.UDP
        udp = UdpDatagram.decode(packet.payload, src=packet.src, dst=packet.dst)
        assert (udp.src_port, udp.dst_port) == (68, 67)
        assert DhcpMessage.decode(udp.payload) == _discover()
        rebuilt = EthernetFrame(
            BROADCAST_MAC,
            CLIENT_MAC,
            EtherType.IPV4,
            IPv4Packet(
                packet.src,
                packet.dst,
                IPProto.UDP,
                UdpDatagram(68, 67, _discover().encode()).encode(packet.src, packet.dst),
                ttl=128,
            ).encode(),
        )
        assert rebuilt.encode() == FRAME


class TestDecodeRules:
    def test_short_message_is_accepted(self) -> None:
        short = DISCOVER[:265]  # options end with End, no padding to 300
        assert DhcpMessage.decode(short) == _discover()

    def test_missing_end_is_tolerated(self) -> None:
        assert DhcpMessage.decode(DISCOVER[:264]) == _discover()

    def test_pad_skipped_and_bytes_after_end_ignored(self) -> None:
        data = DISCOVER[:240] + b"\x00\x00\x35\x01\x01\x00\xff\x35\x01\x02"
        message = DhcpMessage.decode(data)
        assert message.options == (DhcpOption(53, b"\x01"),)

    def test_unknown_values_stay_int(self) -> None:
        data = DISCOVER[:240] + b"\x35\x01\x63" + b"\xfe\x02ab" + b"\xff"
        message = DhcpMessage.decode(data)
        assert message.message_type == 99 and type(message.message_type) is int
        assert message.options[1] == DhcpOption(254, b"ab")
        assert type(message.options[1].code) is int
        assert message.options[0].code is DhcpOptionCode.MESSAGE_TYPE

    def test_truncated_fixed_part(self) -> None:
        with pytest.raises(TruncatedError) as info:
            DhcpMessage.decode(DISCOVER[:239])
        assert (info.value.field, info.value.offset) == ("dhcp.header", 0)

    def test_bad_cookie(self) -> None:
        data = bytes(8) + DISCOVER[:236] + b"\x63\x82\x53\x64" + DISCOVER[240:]
        with pytest.raises(FieldValueError) as info:
            DhcpMessage.decode(data, 8)
        assert (info.value.field, info.value.offset) == ("dhcp.cookie", 244)

    def test_option_length_past_the_end(self) -> None:
        data = DISCOVER[:240] + b"\x35\x01\x01" + b"\x0c\x05abc"
        with pytest.raises(LengthError) as info:
            DhcpMessage.decode(data)
        assert (info.value.field, info.value.offset) == ("dhcp.option.length", 244)

    def test_option_length_byte_missing(self) -> None:
        with pytest.raises(TruncatedError) as info:
            DhcpMessage.decode(DISCOVER[:240] + b"\x35\x01\x01\x0c")
        assert (info.value.field, info.value.offset) == ("dhcp.option.length", 243)

    @pytest.mark.parametrize(
        "option",
        [
            b"\x35\x02\x01\x01",
            b"\x32\x03\xc0\x00\x02",
            b"\x03\x06" + bytes(6),
            b"\x06\x00",
            b"\x1a\x01\x05",
        ],
    )
    def test_option_with_wrong_length(self, option: bytes) -> None:
        with pytest.raises(LengthError) as info:
            DhcpMessage.decode(DISCOVER[:240] + option + b"\xff")
        assert (info.value.field, info.value.offset) == ("dhcp.option.length", 241)

    def test_malformed_relay_agent_info(self) -> None:
        # Sub-option 1 claims 9 bytes inside an option 82 of 6 bytes.
        data = DISCOVER[:240] + b"\x35\x01\x01" + b"\x52\x06\x01\x09eth0" + b"\xff"
        with pytest.raises(LengthError) as info:
            DhcpMessage.decode(data)
        assert (info.value.field, info.value.offset) == ("dhcp.option82.length", 246)


class TestAccessors:
    def test_offer(self) -> None:
        offer = DhcpMessage(
            op=BootpOp.BOOTREPLY,
            xid=0x3D1D,
            chaddr=CLIENT_MAC.packed,
            yiaddr=IPv4Address("192.0.2.10"),
            options=(
                DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, DhcpMessageType.OFFER, 1),
                DhcpOption.from_addresses(DhcpOptionCode.SERVER_ID, IPv4Address("192.0.2.1")),
                DhcpOption.from_uint(DhcpOptionCode.LEASE_TIME, 3600, 4),
                DhcpOption.from_addresses(DhcpOptionCode.SUBNET_MASK, IPv4Address("255.255.255.0")),
                DhcpOption.from_addresses(DhcpOptionCode.ROUTER, IPv4Address("192.0.2.1")),
                DhcpOption.from_addresses(
                    DhcpOptionCode.DNS_SERVERS,
                    IPv4Address("198.51.100.53"),
                    IPv4Address("198.51.100.54"),
                ),
                DhcpOption.from_uint(DhcpOptionCode.INTERFACE_MTU, 1240, 2),
            ),
        )
        decoded = DhcpMessage.decode(offer.encode())
        assert decoded == offer
        assert decoded.message_type is DhcpMessageType.OFFER
        assert decoded.server_id == IPv4Address("192.0.2.1")
        assert decoded.lease_time == 3600
        assert decoded.subnet_mask == IPv4Address("255.255.255.0")
        assert decoded.routers == (IPv4Address("192.0.2.1"),)
        assert decoded.dns_servers == (IPv4Address("198.51.100.53"), IPv4Address("198.51.100.54"))
        assert decoded.interface_mtu == 1240
        assert not decoded.broadcast

    def test_split_option_is_concatenated(self) -> None:
        message = DhcpMessage(1, 1, options=(DhcpOption(12, b"host"), DhcpOption(12, b"name")))
        assert message.options == (DhcpOption(12, b"host"), DhcpOption(12, b"name"))
        assert message.get_option(12) == b"hostname"  # RFC 3396
        assert message.get_option(15) is None

    def test_client_mac_needs_ethernet(self) -> None:
        assert DhcpMessage(1, 1, chaddr=b"\x01" * 16, htype=6, hlen=6).client_mac is None
        assert DhcpMessage(1, 1, chaddr=b"\x01" * 16, hlen=16).client_mac is None

    def test_encode_pads_to_300_only_when_shorter(self) -> None:
        small = DhcpMessage(1, 1)
        assert len(small.encode()) == BOOTP_MIN_SIZE
        assert small.encode()[240:] == b"\xff" + bytes(59)
        big = DhcpMessage(1, 1, options=(DhcpOption(43, bytes(255)),))
        assert len(big.encode()) == 240 + 257 + 1


class TestOptionEditing:
    def test_with_option_replaces_in_place_or_appends(self) -> None:
        message = _discover()
        ack_type = DhcpOption.from_uint(53, DhcpMessageType.REQUEST, 1)
        edited = message.with_option(ack_type)
        assert edited.options[0] == ack_type and edited.options[1:] == message.options[1:]
        appended = message.with_option(DhcpOption(12, b"ms1"))
        assert appended.options[-1] == DhcpOption(12, b"ms1")
        assert message.without_option(61).client_id is None
        assert message.with_options([]).options == ()

    def test_reply_copies_what_identifies_the_request(self) -> None:
        request = replace(_discover(), giaddr=IPv4Address("192.0.2.1"), hops=1, secs=9)
        offer = [DhcpOption.from_uint(53, DhcpMessageType.OFFER, 1)]
        reply = request.reply(offer, flags=0x8000, yiaddr=IPv4Address("192.0.2.100"))
        assert reply.op == BootpOp.BOOTREPLY and reply.options == tuple(offer)
        assert (reply.xid, reply.chaddr, reply.htype, reply.hlen, reply.giaddr) == (
            request.xid,
            request.chaddr,
            request.htype,
            request.hlen,
            request.giaddr,
        )
        assert (reply.flags, reply.yiaddr, reply.ciaddr) == (
            0x8000,
            IPv4Address("192.0.2.100"),
            ZERO,
        )
        assert (reply.hops, reply.secs, reply.siaddr) == (0, 0, ZERO)  # the server's own

    def test_add_replace_strip_option_82(self) -> None:
        info = RelayAgentInfo.of(circuit_id=b"tap0", remote_id=b"dmpa-1")
        relayed = _discover().with_relay_agent_info(info)
        assert relayed.options[-1].code == DhcpOptionCode.RELAY_AGENT_INFO
        assert relayed.relay_agent_info == info
        wire = relayed.encode()
        assert wire[264 : 264 + 16] == b"\x52\x0e\x01\x04tap0\x02\x06dmpa-1"  # fmt: skip
        assert wire[264 + 16] == 0xFF
        other = RelayAgentInfo.of(subscriber_id=b"ms@example.net")
        replaced = DhcpMessage.decode(wire).with_relay_agent_info(other)
        assert [o.code for o in replaced.options].count(82) == 1
        assert replaced.relay_agent_info is not None
        assert replaced.relay_agent_info.subscriber_id == b"ms@example.net"
        assert replaced.relay_agent_info.circuit_id is None
        assert replaced.without_relay_agent_info() == _discover()

    def test_relay_agent_info_codec(self) -> None:
        data = b"\x01\x04tap0\x02\x00\x06\x02ab\x09\x01z"
        info = RelayAgentInfo.decode(data)
        assert info.suboptions == ((1, b"tap0"), (2, b""), (6, b"ab"), (9, b"z"))
        assert (info.circuit_id, info.remote_id, info.subscriber_id) == (b"tap0", b"", b"ab")
        assert info.get(RelayAgentSubOption.SUBSCRIBER_ID) == b"ab"
        assert info.encode() == data
        assert RelayAgentInfo([(1, b"x")]).suboptions == ((1, b"x"),)  # type: ignore[arg-type]

    def test_relay_agent_info_truncated(self) -> None:
        with pytest.raises(TruncatedError) as info:
            RelayAgentInfo.decode(b"\x01\x01x\x02")
        assert (info.value.field, info.value.offset) == ("dhcp.option82.length", 3)


@pytest.mark.parametrize(
    "build",
    [
        lambda: DhcpOption(0),
        lambda: DhcpOption(255),
        lambda: DhcpOption(12, bytes(256)),
        lambda: DhcpOption(53, b"\x01\x01"),
        lambda: DhcpOption(3, bytes(5)),
        lambda: DhcpOption(82, b"\x01\x05ab"),
        lambda: DhcpOption.from_uint(51, 1 << 32, 4),
        lambda: RelayAgentInfo(((1, bytes(200)), (2, bytes(60)))),
        lambda: RelayAgentInfo(((256, b""),)),
        lambda: DhcpMessage(1, 1, chaddr=bytes(17)),
        lambda: DhcpMessage(1, 1, sname=bytes(65)),
        lambda: DhcpMessage(1, 1, file=bytes(129)),
        lambda: DhcpMessage(1, 1 << 32),
        lambda: DhcpMessage(256, 1),
        lambda: DhcpMessage(1, 1, flags=0x10000),
        lambda: DhcpMessage(1, 1, options=(b"\x35\x01\x01",)),  # type: ignore[arg-type]
    ],
)
def test_encode_errors(build: object) -> None:
    with pytest.raises(EncodeError):
        build()  # type: ignore[operator]
