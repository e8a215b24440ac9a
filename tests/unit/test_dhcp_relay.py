"""The DHCP relay: forwarding rules, reply matching, NAI <-> HoA learning, every drop."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv6Address

import pytest

from router.core.actions import Persist, SendTunnel
from router.core.pool import HoAPool
from router.services.dhcp_relay import DhcpRelay, DhcpRelayConfig, RelayAction, SendToServer
from router.services.dhcp_server import BROADCAST, POOL_TABLE, ConfigError
from router.wire.dhcp import (
    BROADCAST_FLAG,
    BootpOp,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
    RelayAgentInfo,
)
from router.wire.ipv4 import IPProto, IPv4Packet
from router.wire.udp import UdpDatagram

GIADDR = IPv4Address("192.0.2.1")
SERVER = IPv4Address("198.51.100.2")
SERVER2 = IPv4Address("198.51.100.3")
DMPA = IPv6Address("2001:db8:1::1")
DMPA2 = IPv6Address("2001:db8:1::2")
MAC = bytes.fromhex("020000000001")
ZERO = IPv4Address(0)
NAI = "ms1@example.net"
HOA = IPv4Address("192.0.2.50")


def make(**kw: object) -> DhcpRelay:
    cfg = DhcpRelayConfig(giaddr=GIADDR, servers=(SERVER,), **kw)  # type: ignore[arg-type]
    return DhcpRelay(cfg, HoAPool([(IPv4Address("192.0.2.10"), IPv4Address("192.0.2.20"))]))


def request(
    kind: DhcpMessageType = DhcpMessageType.DISCOVER,
    *,
    nai: str | None = NAI,
    xid: int = 7,
    hops: int = 0,
    giaddr: IPv4Address = ZERO,
    ciaddr: IPv4Address = ZERO,
) -> DhcpMessage:
    m = DhcpMessage(
        BootpOp.BOOTREQUEST,
        xid,
        MAC,
        (DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, kind, 1),),
        hops=hops,
        giaddr=giaddr,
        ciaddr=ciaddr,
    )
    if nai is not None:
        m = m.with_relay_agent_info(RelayAgentInfo.of(subscriber_id=nai.encode()))
    return m


def in_tunnel(m: DhcpMessage) -> bytes:
    s, d = IPv4Address(0), BROADCAST
    return IPv4Packet(s, d, IPProto.UDP, UdpDatagram(68, 67, m.encode()).encode(s, d)).encode()


def reply(
    kind: DhcpMessageType,
    *,
    xid: int = 7,
    yiaddr: IPv4Address = HOA,
    giaddr: IPv4Address = GIADDR,
    lease: int | None = 600,
    echo: str | None = NAI,
    flags: int = 0,
    ciaddr: IPv4Address = ZERO,
) -> DhcpMessage:
    options = [DhcpOption.from_uint(DhcpOptionCode.MESSAGE_TYPE, kind, 1)]
    if lease is not None:
        options.append(DhcpOption.from_uint(DhcpOptionCode.LEASE_TIME, lease, 4))
    m = DhcpMessage(
        BootpOp.BOOTREPLY,
        xid,
        MAC,
        tuple(options),
        yiaddr=yiaddr,
        giaddr=giaddr,
        flags=flags,
        ciaddr=ciaddr,
        hops=1,
    )
    if echo is not None:
        m = m.with_relay_agent_info(RelayAgentInfo.of(subscriber_id=echo.encode()))
    return m


def forwarded(actions: list[RelayAction]) -> DhcpMessage:
    sends = [a for a in actions if isinstance(a, SendToServer)]
    assert len(sends) == 1 and sends[0].server == SERVER and sends[0].port == 67
    return DhcpMessage.decode(sends[0].payload)


def tunnelled(actions: list[RelayAction]) -> tuple[IPv6Address, IPv4Packet, DhcpMessage]:
    sends = [a for a in actions if isinstance(a, SendTunnel)]
    assert len(sends) == 1, actions
    p = IPv4Packet.decode(sends[0].packet)
    udp = UdpDatagram.decode(p.payload, src=p.src, dst=p.dst)
    return sends[0].peer, p, DhcpMessage.decode(udp.payload)


# --- towards the server -----------------------------------------------------------------------


def test_request_forwarded_with_giaddr_hops_and_option82() -> None:
    relay = make()
    out = forwarded(relay.receive_from_dmpa(in_tunnel(request(hops=2)), DMPA, 0.0))
    assert out.giaddr == GIADDR and out.hops == 3 and out.xid == 7
    info = out.relay_agent_info
    assert info is not None and info.subscriber_id == NAI.encode() and info.remote_id is None
    assert relay.pending[(7, out.chaddr)].dmpa == DMPA


def test_remote_id_is_the_dmpa_when_configured() -> None:
    relay = make(remote_id=True)
    out = forwarded(relay.receive_from_dmpa(request(), DMPA, 0.0))
    info = out.relay_agent_info
    assert info is not None and info.remote_id == DMPA.packed
    assert info.subscriber_id == NAI.encode()
    # Without option 82 from the DMPA, the relay creates one.
    out = forwarded(relay.receive_from_dmpa(request(nai=None, xid=8), DMPA, 0.0))
    assert out.relay_agent_info == RelayAgentInfo.of(remote_id=DMPA.packed)


def test_every_configured_server_gets_it() -> None:
    relay = DhcpRelay(
        DhcpRelayConfig(giaddr=GIADDR, servers=(SERVER, SERVER2), server_port=6767),
        HoAPool([]),
    )
    sends = relay.receive_from_dmpa(request(), DMPA, 0.0)
    assert [(s.server, s.port) for s in sends if isinstance(s, SendToServer)] == [
        (SERVER, 6767),
        (SERVER2, 6767),
    ]


@pytest.mark.parametrize(("hops", "relayed"), [(15, True), (16, True), (17, False), (255, False)])
def test_hop_limit(hops: int, relayed: bool) -> None:
    relay = make()
    actions = relay.receive_from_dmpa(request(hops=hops), DMPA, 0.0)
    assert bool(actions) == relayed
    if not relayed:
        assert relay.counters["drop.hops"] == 1


def test_option82_without_room_for_remote_id_dropped() -> None:
    relay = make(remote_id=True)
    full = request().with_relay_agent_info(RelayAgentInfo(((6, b"x" * 250),)))
    assert relay.receive_from_dmpa(full, DMPA, 0.0) == []
    assert relay.counters["drop.option82_full"] == 1


# --- back to the DMPA -------------------------------------------------------------------------


def test_offer_then_ack_go_back_and_ack_is_learned() -> None:
    relay = make()
    relay.receive_from_dmpa(request(), DMPA, 0.0)
    relay.receive_from_dmpa(request(xid=99), DMPA2, 0.0)  # another exchange, elsewhere
    dmpa, ip, offer = tunnelled(relay.receive_from_server(reply(DhcpMessageType.OFFER), SERVER, 1))
    assert dmpa == DMPA and offer.relay_agent_info is None  # stripped
    assert (ip.src, ip.dst) == (GIADDR, HOA)
    assert UdpDatagram.decode(ip.payload).dst_port == 68
    assert relay.pool.allocated_to(NAI) is None  # an OFFER teaches nothing
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST), DMPA, 2.0)
    actions = relay.receive_from_server(reply(DhcpMessageType.ACK), SERVER, 3.0, wall=100.0)
    dmpa, _, ack = tunnelled(actions)
    assert dmpa == DMPA and ack.message_type == DhcpMessageType.ACK
    assert relay.pool.allocated_to(NAI) == HOA  # the seed 6 PBU check now passes
    lease = relay.pool.lease_of(NAI)
    assert lease is not None and lease.expires == 3.0 + 600
    assert Persist(POOL_TABLE, NAI, {"nai": NAI, "hoa": str(HOA), "expires_wall": 700.0}) in (
        actions
    )
    assert (7, ack.chaddr) not in relay.pending  # the exchange is over


def test_nai_remembered_when_server_does_not_echo() -> None:
    relay = make()
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST), DMPA, 0.0)
    relay.receive_from_server(reply(DhcpMessageType.ACK, echo=None), SERVER, 1.0)
    assert relay.pool.allocated_to(NAI) == HOA


def test_lease_capped_by_binding_lifetime_and_infinite() -> None:
    relay = make(max_lifetime=100)
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST), DMPA, 0.0)
    relay.receive_from_server(reply(DhcpMessageType.ACK, lease=0xFFFFFFFF), SERVER, 1.0)
    lease = relay.pool.lease_of(NAI)
    assert lease is not None and lease.expires == 101.0


def test_ack_for_address_of_another_nai_is_a_conflict() -> None:
    relay = make()
    relay.pool.record("other@example.net", HOA, 1000.0)
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST), DMPA, 0.0)
    actions = relay.receive_from_server(reply(DhcpMessageType.ACK), SERVER, 1.0)
    assert not [a for a in actions if isinstance(a, SendTunnel)]  # the MS never gets it
    assert relay.counters["learn.conflict"] == 1
    assert relay.counters["reply.conflicting_ack"] == 1
    assert relay.pool.owner(HOA) == "other@example.net"


def test_ack_without_any_nai_is_not_learned() -> None:
    relay = make()
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST, nai=None), DMPA, 0.0)
    relay.receive_from_server(reply(DhcpMessageType.ACK, echo=None), SERVER, 1.0)
    assert relay.counters["learn.no_nai"] == 1 and relay.counters["request.no_nai"] == 1


def test_renewal_ack_extends_and_goes_to_ciaddr() -> None:
    relay = make()
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST), DMPA, 0.0)
    relay.receive_from_server(reply(DhcpMessageType.ACK), SERVER, 1.0)
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST, ciaddr=HOA, xid=8), DMPA, 300.0)
    _, ip, _ = tunnelled(
        relay.receive_from_server(reply(DhcpMessageType.ACK, xid=8, ciaddr=HOA), SERVER, 301.0)
    )
    assert ip.dst == HOA
    lease = relay.pool.lease_of(NAI)
    assert lease is not None and lease.expires == 901.0


def test_nak_and_broadcast_replies_are_broadcast() -> None:
    relay = make()
    relay.receive_from_dmpa(request(DhcpMessageType.REQUEST), DMPA, 0.0)
    _, ip, nak = tunnelled(
        relay.receive_from_server(
            reply(DhcpMessageType.NAK, yiaddr=IPv4Address(0), lease=None), SERVER, 1.0
        )
    )
    assert ip.dst == BROADCAST and nak.message_type == DhcpMessageType.NAK
    assert relay.pool.allocated_to(NAI) is None
    relay.receive_from_dmpa(request(xid=9), DMPA, 2.0)
    _, ip, _ = tunnelled(
        relay.receive_from_server(
            reply(DhcpMessageType.OFFER, xid=9, flags=BROADCAST_FLAG), SERVER, 3.0
        )
    )
    assert ip.dst == BROADCAST


@pytest.mark.parametrize("remote_id", [False, True])
def test_a_nonzero_giaddr_is_forwarded_unchanged_without_adding_option_82(
    remote_id: bool,
) -> None:
    """RFC 1542 4.1.1: a relay MUST NOT modify a non-zero giaddr; RFC 3046 2.1.1: such a
    message is forwarded without a relay agent option of ours added."""
    relay = make(remote_id=remote_id)
    theirs = IPv4Address("203.0.113.9")
    sent = request(giaddr=theirs, hops=1)
    out = forwarded(relay.receive_from_dmpa(in_tunnel(sent), DMPA, 0.0))
    assert out.giaddr == theirs and out.hops == 2
    assert out.relay_agent_info == sent.relay_agent_info  # as the DMPA wrote it, nothing added
    assert relay.counters["request.giaddr_kept"] == 1
    bare = forwarded(relay.receive_from_dmpa(request(giaddr=theirs, nai=None, xid=9), DMPA, 0.0))
    assert bare.relay_agent_info is None and bare.giaddr == theirs


THEIRS = IPv4Address("192.0.2.254")  # another relay's giaddr, in the HoA network


def to_their_relay(m: DhcpMessage, src: IPv4Address = SERVER, dst: IPv4Address = THEIRS) -> bytes:
    """The server's reply on its way to the relay at ``giaddr`` (RFC 2131 4.1: to its port 67),
    as the DLMAP's TUN gives it: the HoA network is routed through the DLMAP."""
    return IPv4Packet(
        src, dst, IPProto.UDP, UdpDatagram(67, 67, m.encode()).encode(src, dst)
    ).encode()


def test_the_lease_of_a_request_another_relay_sent_is_learned_from_the_reply_in_transit() -> None:
    """Issue 15 (relay rules): giaddr stays the other relay's (RFC 1542 4.1.1), so the server
    answers that relay, not us; its reply, routed through the DLMAP to the HoA network, is
    learned from in passing (NAI <-> HoA, as for our own requests) and goes on unchanged to
    the DMPA whose tunnel carried the request, the way to the relay at giaddr."""
    relay = make()
    forwarded(relay.receive_from_dmpa(in_tunnel(request(giaddr=THEIRS, hops=1)), DMPA, 0.0))
    offer = to_their_relay(reply(DhcpMessageType.OFFER, giaddr=THEIRS))
    [(peer, packet)] = [
        (a.peer, a.packet)
        for a in relay.receive_in_transit(offer, 0.1, 1e9)
        if isinstance(a, SendTunnel)
    ]
    assert (peer, packet) == (DMPA, offer)  # unchanged: giaddr, option 82, everything
    forwarded(
        relay.receive_from_dmpa(
            in_tunnel(request(DhcpMessageType.REQUEST, giaddr=THEIRS, hops=1)), DMPA, 0.2
        )
    )
    ack = to_their_relay(reply(DhcpMessageType.ACK, giaddr=THEIRS))
    actions = relay.receive_in_transit(ack, 0.3, 1e9)
    assert [(a.peer, a.packet) for a in actions if isinstance(a, SendTunnel)] == [(DMPA, ack)]
    assert relay.pool.allocated_to(NAI) == HOA  # the PBU with this HoA will be accepted
    assert [a.table for a in actions if isinstance(a, Persist)] == [POOL_TABLE]
    assert relay.counters["transit.learned"] == 1 and relay.counters["transit.relayed"] == 2


@pytest.mark.parametrize(
    ("packet", "counter"),
    [
        (
            to_their_relay(reply(DhcpMessageType.ACK, giaddr=THEIRS), src=SERVER2),
            "transit.unknown_server",
        ),
        (to_their_relay(reply(DhcpMessageType.ACK, giaddr=THEIRS, xid=8)), "transit.unmatched"),
        (
            to_their_relay(reply(DhcpMessageType.ACK, giaddr=IPv4Address("192.0.2.253"))),
            "transit.unmatched",
        ),
        (
            to_their_relay(
                reply(DhcpMessageType.ACK, giaddr=THEIRS), dst=IPv4Address("192.0.2.253")
            ),
            "transit.unmatched",
        ),
        (to_their_relay(request(giaddr=THEIRS)), "transit.not_reply"),
        (to_their_relay(reply(DhcpMessageType.ACK, giaddr=THEIRS))[:-3], "transit.malformed"),
        (b"\x45", "transit.malformed"),
    ],
)
def test_a_packet_in_transit_that_answers_no_request_of_ours_is_dropped(
    packet: bytes, counter: str
) -> None:
    """Only a configured server's reply to the giaddr of a request we passed on, for that
    request, is learned from: anything else to port 67 of an unbound address is dropped, as
    the data path would have (no binding)."""
    relay = make()
    forwarded(relay.receive_from_dmpa(in_tunnel(request(giaddr=THEIRS, hops=1)), DMPA, 0.0))
    assert relay.receive_in_transit(packet, 0.1, 1e9) == []
    assert relay.counters[counter] == 1 and relay.pool.allocated_to(NAI) is None


def test_handover_mid_exchange_follows_the_latest_dmpa() -> None:
    relay = make()
    relay.receive_from_dmpa(request(), DMPA, 0.0)
    relay.receive_from_dmpa(request(), DMPA2, 0.5)
    dmpa, _, _ = tunnelled(relay.receive_from_server(reply(DhcpMessageType.OFFER), SERVER, 1.0))
    assert dmpa == DMPA2


# --- the table --------------------------------------------------------------------------------


def test_table_entries_expire() -> None:
    relay = make(entry_ttl=5.0)
    relay.receive_from_dmpa(request(), DMPA, 0.0)
    assert relay.get_timer() == 5.0
    assert relay.receive_from_server(reply(DhcpMessageType.OFFER), SERVER, 5.0) == []
    assert relay.counters["reply.unmatched"] == 1
    relay.handle_timer(5.0)
    assert not relay.pending and relay.get_timer() is None
    assert relay.counters["pending.expired"] == 1


def test_table_is_bounded() -> None:
    relay = make(table_size=3)
    for xid in range(10):
        relay.receive_from_dmpa(request(xid=xid), DMPA, float(xid))
    assert [k[0] for k in relay.pending] == [7, 8, 9]
    assert relay.counters["pending.evicted"] == 7
    assert relay.get_timer() == 7.0 + 60.0


# --- bad input --------------------------------------------------------------------------------


def test_config_errors_all_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        DhcpRelayConfig(
            giaddr=IPv4Address(0), servers=(), table_size=0, server_port=0, entry_ttl=0
        ).check()
    keys = {p.split(":")[0] for p in err.value.problems}
    assert keys == {
        "dhcp_relay.giaddr",
        "dhcp_relay.servers",
        "dhcp_relay.table_size",
        "dhcp_relay.server_port",
        "dhcp_relay.entry_ttl",
    }


def test_bad_replies_dropped_and_counted() -> None:
    relay = make()
    relay.receive_from_dmpa(request(), DMPA, 0.0)
    good = reply(DhcpMessageType.OFFER)
    cases = {
        "reply.unknown_server": (good.encode(), IPv4Address("198.51.100.66")),
        "reply.malformed": (good.encode()[:100], SERVER),
        "reply.not_reply": (request().encode(), SERVER),
        "reply.bad_message_type": (reply(DhcpMessageType.INFORM).encode(), SERVER),
        "reply.wrong_giaddr": (reply(DhcpMessageType.OFFER, giaddr=SERVER).encode(), SERVER),
        "reply.unmatched": (reply(DhcpMessageType.OFFER, xid=1234).encode(), SERVER),
    }
    for counter, (data, src) in cases.items():
        assert relay.receive_from_server(data, src, 1.0) == [], counter
        assert relay.counters[counter] == 1, counter
    no_type = DhcpMessage(BootpOp.BOOTREPLY, 7, MAC, giaddr=GIADDR)
    assert relay.receive_from_server(no_type, SERVER, 1.0) == []
    assert relay.counters["reply.bad_message_type"] == 2


def test_bad_requests_dropped_and_counted() -> None:
    relay = make()
    good = in_tunnel(request())
    cases = {
        "drop.malformed": good[:-300],
        "drop.not_udp": IPv4Packet(GIADDR, GIADDR, IPProto.ICMP, b"\0" * 8).encode(),
        "drop.not_request": in_tunnel(reply(DhcpMessageType.OFFER)),
        "drop.bad_hlen": in_tunnel(
            DhcpMessage(BootpOp.BOOTREQUEST, 1, MAC, request().options, hlen=17)
        ),
        "drop.bad_message_type": in_tunnel(DhcpMessage(BootpOp.BOOTREQUEST, 1, MAC)),
    }
    for counter, data in cases.items():
        assert relay.receive_from_dmpa(data, DMPA, 0.0) == [], counter
        assert relay.counters[counter] == 1, counter
    assert not relay.pending


def test_random_garbage_never_raises() -> None:
    relay = make(remote_id=True)
    rng = random.Random(7)
    requests = bytearray(in_tunnel(request()))
    replies = bytearray(reply(DhcpMessageType.ACK).encode())
    for _ in range(3000):
        for base, send in ((requests, True), (replies, False)):
            data = bytearray(base)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            if send:
                relay.receive_from_dmpa(bytes(data), DMPA, 0.0)
            else:
                relay.receive_from_server(bytes(data), SERVER, 0.0)
    assert len(relay.pending) <= relay.config.table_size
