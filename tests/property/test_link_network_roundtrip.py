"""Property tests of the link/network codecs.

* Round trip: every message built from valid fields decodes back equal to itself.
* Garbage: any bytes (random, or a valid message damaged) either decode or raise a
  :class:`DecodeError` subclass carrying a field and an offset; never anything else.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.wire.arp import ArpPacket
from router.wire.dhcp import DhcpMessage, DhcpOption, RelayAgentInfo
from router.wire.errors import DecodeError
from router.wire.ethernet import EthernetFrame, EtherType, MacAddress, VlanTag
from router.wire.icmp import IcmpEcho, IcmpMessage
from router.wire.ipv4 import IPv4Flags, IPv4Packet
from router.wire.udp import UdpDatagram

EXAMPLES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(0, (1 << bits) - 1)


macs = st.binary(min_size=6, max_size=6).map(MacAddress)
addresses = uint(32).map(IPv4Address)
payloads = st.binary(max_size=200)

vlan_tags = st.builds(VlanTag, vid=uint(12), pcp=uint(3), dei=st.booleans())
frames = st.one_of(
    st.builds(
        EthernetFrame,
        dst=macs,
        src=macs,
        ethertype=uint(16).filter(lambda t: t != EtherType.VLAN),
        payload=payloads,
    ),
    st.builds(
        EthernetFrame, dst=macs, src=macs, ethertype=uint(16), payload=payloads, vlan=vlan_tags
    ),
)
arps = st.builds(
    ArpPacket,
    op=uint(16),
    sender_mac=macs,
    sender_ip=addresses,
    target_mac=macs,
    target_ip=addresses,
)
ipv4_packets = st.builds(
    IPv4Packet,
    src=addresses,
    dst=addresses,
    protocol=uint(8),
    payload=payloads,
    ttl=uint(8),
    tos=uint(8),
    identification=uint(16),
    flags=uint(3).map(IPv4Flags),
    fragment_offset=uint(13),
    options=st.integers(0, 10).flatmap(lambda k: st.binary(min_size=4 * k, max_size=4 * k)),
)
icmp_messages = st.builds(
    IcmpMessage,
    type=uint(8),
    code=uint(8),
    rest=st.binary(min_size=4, max_size=4),
    payload=payloads,
)
icmp_echoes = st.builds(
    IcmpEcho, identifier=uint(16), sequence=uint(16), data=payloads, reply=st.booleans()
)
udp_datagrams = st.builds(UdpDatagram, src_port=uint(16), dst_port=uint(16), payload=payloads)

relay_infos = st.lists(st.tuples(uint(8), st.binary(max_size=40)), max_size=5).map(
    lambda pairs: RelayAgentInfo(tuple(pairs))
)

# Codes whose data the codec checks, with a strategy for valid data; others take any bytes.
_CHECKED: dict[int, st.SearchStrategy[bytes]] = {
    1: st.binary(min_size=4, max_size=4),
    3: st.integers(1, 8).flatmap(lambda k: st.binary(min_size=4 * k, max_size=4 * k)),
    6: st.integers(1, 8).flatmap(lambda k: st.binary(min_size=4 * k, max_size=4 * k)),
    26: st.binary(min_size=2, max_size=2),
    28: st.binary(min_size=4, max_size=4),
    50: st.binary(min_size=4, max_size=4),
    51: st.binary(min_size=4, max_size=4),
    52: st.binary(min_size=1, max_size=1),
    53: st.binary(min_size=1, max_size=1),
    54: st.binary(min_size=4, max_size=4),
    57: st.binary(min_size=2, max_size=2),
    58: st.binary(min_size=4, max_size=4),
    59: st.binary(min_size=4, max_size=4),
    82: relay_infos.map(lambda info: info.encode()),
}


@st.composite
def dhcp_options(draw: st.DrawFn) -> DhcpOption:
    code = draw(st.one_of(st.sampled_from(sorted(_CHECKED)), st.integers(1, 254)))
    if code in _CHECKED:
        return DhcpOption(code, draw(_CHECKED[code]))
    return DhcpOption(code, draw(st.binary(max_size=255 if code % 16 == 0 else 30)))


dhcp_messages = st.builds(
    DhcpMessage,
    op=uint(8),
    xid=uint(32),
    chaddr=st.binary(max_size=16),
    options=st.lists(dhcp_options(), max_size=8).map(tuple),
    htype=uint(8),
    hlen=uint(8),
    hops=uint(8),
    secs=uint(16),
    flags=uint(16),
    ciaddr=addresses,
    yiaddr=addresses,
    siaddr=addresses,
    giaddr=addresses,
    sname=st.binary(max_size=64),
    file=st.binary(max_size=128),
)


# -- round trips ---------------------------------------------------------------------------


@EXAMPLES
@given(frames)
def test_ethernet_round_trip(frame: EthernetFrame) -> None:
    assert EthernetFrame.decode(frame.encode()) == frame


@EXAMPLES
@given(arps)
def test_arp_round_trip(arp: ArpPacket) -> None:
    assert ArpPacket.decode(arp.encode()) == arp


@EXAMPLES
@given(ipv4_packets, st.binary(max_size=20))
def test_ipv4_round_trip(packet: IPv4Packet, trailer: bytes) -> None:
    wire = packet.encode()
    assert IPv4Packet.decode(wire + trailer) == packet
    assert IPv4Packet.decode(b"\x00" + wire, 1) == packet


@EXAMPLES
@given(icmp_messages)
def test_icmp_round_trip(message: IcmpMessage) -> None:
    assert IcmpMessage.decode(message.encode()) == message


@EXAMPLES
@given(icmp_echoes)
def test_icmp_echo_round_trip(echo: IcmpEcho) -> None:
    assert IcmpEcho.decode(echo.encode()) == echo


@EXAMPLES
@given(udp_datagrams, addresses, addresses)
def test_udp_round_trip(datagram: UdpDatagram, src: IPv4Address, dst: IPv4Address) -> None:
    wire = datagram.encode(src, dst)
    assert wire[6:8] != b"\x00\x00"
    assert UdpDatagram.decode(wire, src=src, dst=dst) == datagram


@EXAMPLES
@given(relay_infos)
def test_relay_agent_info_round_trip(info: RelayAgentInfo) -> None:
    assert RelayAgentInfo.decode(info.encode()) == info


@EXAMPLES
@given(dhcp_messages)
def test_dhcp_round_trip(message: DhcpMessage) -> None:
    wire = message.encode()
    assert len(wire) >= 300
    assert DhcpMessage.decode(wire) == message


@EXAMPLES
@given(dhcp_messages, relay_infos)
def test_dhcp_relay_agent_info_edits(message: DhcpMessage, info: RelayAgentInfo) -> None:
    relayed = DhcpMessage.decode(message.with_relay_agent_info(info).encode())
    assert relayed.relay_agent_info == info
    assert relayed.options[-1].code == 82
    stripped = relayed.without_relay_agent_info()
    assert stripped.options == tuple(o for o in message.options if o.code != 82)


# -- garbage -------------------------------------------------------------------------------

Decoder = Callable[[bytes, int], Any]

DECODERS: dict[str, Decoder] = {
    "ethernet": EthernetFrame.decode,
    "arp": ArpPacket.decode,
    "ipv4": IPv4Packet.decode,
    "ipv4-unverified": lambda b, o: IPv4Packet.decode(b, o, verify_checksum=False),
    "icmp": IcmpMessage.decode,
    "icmp-unverified": lambda b, o: IcmpMessage.decode(b, o, verify_checksum=False),
    "icmp-echo-unverified": lambda b, o: IcmpEcho.decode(b, o, verify_checksum=False),
    "udp": UdpDatagram.decode,
    "udp-verified": lambda b, o: UdpDatagram.decode(
        b, o, src=IPv4Address("192.0.2.1"), dst=IPv4Address("192.0.2.2")
    ),
    "dhcp": DhcpMessage.decode,
    "relay-agent-info": RelayAgentInfo.decode,
}


def _decode_or_decode_error(decoder: Decoder, data: bytes, offset: int) -> None:
    try:
        decoder(data, offset)
    except DecodeError as exc:
        assert isinstance(exc.field, str) and exc.field
        assert isinstance(exc.offset, int)


@EXAMPLES
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=400), st.integers(-2, 40))
def test_garbage_raises_only_decode_errors(name: str, data: bytes, offset: int) -> None:
    _decode_or_decode_error(DECODERS[name], data, offset)


@EXAMPLES
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=400))
def test_garbage_in_a_memoryview(name: str, data: bytes) -> None:
    _decode_or_decode_error(DECODERS[name], memoryview(bytearray(data)), 0)  # type: ignore[arg-type]


# Valid messages, then damaged: reaches the checks deep inside (options, sub-options, lengths).
VALID: dict[str, tuple[st.SearchStrategy[bytes], Decoder]] = {
    "ethernet": (frames.map(lambda f: f.encode()), EthernetFrame.decode),
    "arp": (arps.map(lambda a: a.encode()), ArpPacket.decode),
    "ipv4": (
        ipv4_packets.map(lambda p: p.encode()),
        lambda b, o: IPv4Packet.decode(b, o, verify_checksum=False),
    ),
    "icmp-echo": (
        icmp_echoes.map(lambda e: e.encode()),
        lambda b, o: IcmpEcho.decode(b, o, verify_checksum=False),
    ),
    "udp": (
        udp_datagrams.map(lambda u: u.encode(IPv4Address(0), IPv4Address(0))),
        UdpDatagram.decode,
    ),
    "dhcp": (dhcp_messages.map(lambda m: m.encode()), DhcpMessage.decode),
    "relay-agent-info": (relay_infos.map(lambda i: i.encode()), RelayAgentInfo.decode),
}


@EXAMPLES
@given(st.sampled_from(sorted(VALID)), st.data())
def test_damaged_messages_raise_only_decode_errors(name: str, data: st.DataObject) -> None:
    strategy, decoder = VALID[name]
    wire = bytearray(data.draw(strategy))
    for _ in range(data.draw(st.integers(1, 4))):
        if wire:
            wire[data.draw(st.integers(0, len(wire) - 1))] = data.draw(uint(8))
    cut = data.draw(st.integers(0, len(wire)))
    _decode_or_decode_error(decoder, bytes(wire[:cut]), 0)
