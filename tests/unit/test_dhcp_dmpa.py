"""Seed 5.2: DHCP carried to the DLMAP through the tunnel, and the co-located server."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.core.dmpa import State
from router.services.dhcp_dmpa import DhcpDmpaConfig
from router.wire.dhcp import (
    CLIENT_PORT,
    SERVER_PORT,
    DhcpMessage,
    DhcpMessageType,
    DhcpOption,
    DhcpOptionCode,
    RelayAgentInfo,
)
from router.wire.ethernet import BROADCAST_MAC
from router.wire.ipv4 import IPv4Packet
from router.wire.udp import UdpDatagram
from tests.netns.access_helpers import (
    DLMAP,
    GATEWAY,
    HOA,
    HOA2,
    LIMITED,
    MS,
    MS2,
    NAI,
    OTHER_DLMAP,
    PSEUDO,
    ZERO,
    authenticate,
    dhcp_client,
    dhcp_frame,
    dhcp_of,
    dhcp_server_packet,
    frames,
    grant,
    pbus,
    stack,
    tunnelled,
)

T = DhcpMessageType


def relay_ready():  # type: ignore[no-untyped-def]
    node, dispatch = stack()
    authenticate(node, MS, "dhcp", link=2)
    return node, dispatch


def inner(packet: bytes) -> tuple[IPv4Packet, DhcpMessage]:
    ip = IPv4Packet.decode(packet)
    udp = UdpDatagram.decode(ip.payload, src=ip.src, dst=ip.dst)
    assert (udp.src_port, udp.dst_port) == (CLIENT_PORT, SERVER_PORT)
    return ip, DhcpMessage.decode(udp.payload)


# --- relay mode -------------------------------------------------------------------------------


def test_discover_is_tagged_and_carried_to_the_dlmap_before_registration() -> None:
    node, dispatch = relay_ready()
    assert node.visitors[MS].state is State.WAIT_ADDRESS
    actions = dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.DISCOVER, MS)), 2, 1.0, 1e9)
    (send,) = tunnelled(actions)
    assert send.peer == DLMAP
    ip, message = inner(send.packet)
    assert (ip.src, ip.dst) == (ZERO, LIMITED)
    assert message.message_type == T.DISCOVER and message.giaddr == ZERO
    assert message.relay_agent_info == RelayAgentInfo.of(
        circuit_id=b"2", subscriber_id=NAI.encode()
    )
    assert message.options[-1].code == DhcpOptionCode.RELAY_AGENT_INFO  # RFC 3046 2.1: last
    assert frames(actions) == []


def test_circuit_id_uses_the_configured_link_name() -> None:
    node, dispatch = stack(DhcpDmpaConfig(link_names=("tap0", "tap1")))
    authenticate(node, MS, "dhcp", link=1)
    actions = dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.DISCOVER, MS)), 1, 1.0, 1e9)
    _, message = inner(tunnelled(actions)[0].packet)
    assert message.relay_agent_info is not None
    assert message.relay_agent_info.circuit_id == b"tap1"


def test_before_aaa_answers_nothing_can_be_carried() -> None:
    node, dispatch = stack()
    actions = dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.DISCOVER, MS)), 0, 1.0, 1e9)
    assert tunnelled(actions) == [] and node.visitors[MS].state is State.AUTHENTICATING
    assert dispatch.counters["dhcp.not_authenticated"] == 1


def test_offer_and_ack_come_back_to_the_ms_and_the_ack_triggers_the_pbu() -> None:
    node, dispatch = relay_ready()
    dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.DISCOVER, MS, 7)), 2, 1.0, 1e9)
    offer = dhcp_server_packet(
        T.OFFER,
        MS,
        7,
        yiaddr=HOA,
        extra=(RelayAgentInfo.of(subscriber_id=NAI.encode()).to_option(),),
    )
    actions = dispatch.receive_tunnel(offer, DLMAP, 1.1, 1e9)
    (frame,) = frames(actions)
    assert (frame.src, frame.dst) == (PSEUDO, MS)  # no broadcast flag: unicast to chaddr
    ip, _, message = dhcp_of(frame)
    assert (ip.src, ip.dst) == (GATEWAY, HOA)
    assert message.relay_agent_info is None  # option 82 removed
    assert actions[0].link == 2  # type: ignore[union-attr]
    assert pbus(actions) == []

    request = dhcp_client(T.REQUEST, MS, 8, requested=HOA, server_id=GATEWAY)
    dispatch.receive_frame(dhcp_frame(MS, request), 2, 1.2, 1e9)
    ack = dhcp_server_packet(T.ACK, MS, 8, yiaddr=HOA, flags=0x8000)
    actions = dispatch.receive_tunnel(ack, DLMAP, 1.3, 1e9)
    (frame,) = frames(actions)
    assert frame.dst == BROADCAST_MAC and dhcp_of(frame)[0].dst == LIMITED  # broadcast flag
    (_pbu,) = pbus(actions)
    assert node.visitors[MS].state is State.REGISTERING and node.visitors[MS].hoa == HOA


def test_renewal_unicast_to_the_server_goes_the_same_way() -> None:
    node, dispatch = relay_ready()
    dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.REQUEST, MS, 1, requested=HOA)), 2, 1, 1e9)
    dispatch.receive_tunnel(dhcp_server_packet(T.ACK, MS, 1, yiaddr=HOA), DLMAP, 1.1, 1e9)
    grant(node, MS, HOA, 1.2)
    assert node.visitors[MS].state is State.REGISTERED
    renew = dhcp_client(T.REQUEST, MS, 2, ciaddr=HOA)
    frame = dhcp_frame(MS, renew, src_ip=HOA, dst_ip=GATEWAY, dst=PSEUDO)
    (send,) = tunnelled(dispatch.receive_frame(frame, 2, 100.0, 1e9))
    ip, message = inner(send.packet)
    assert (ip.src, ip.dst, message.ciaddr) == (HOA, GATEWAY, HOA)
    actions = dispatch.receive_tunnel(
        dhcp_server_packet(T.ACK, MS, 2, yiaddr=HOA, ciaddr=HOA, dst_ip=HOA), DLMAP, 100.1, 1e9
    )
    (reply,) = frames(actions)
    assert reply.dst == MS and dhcp_of(reply)[0].dst == HOA  # unicast to ciaddr
    assert pbus(actions) == []  # the same address: the binding refresh covers it


def test_nak_is_delivered_broadcast_and_the_ms_left_waiting() -> None:
    node, dispatch = relay_ready()
    dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.REQUEST, MS, 3, requested=HOA)), 2, 1, 1e9)
    actions = dispatch.receive_tunnel(dhcp_server_packet(T.NAK, MS, 3), DLMAP, 1.1, 1e9)
    (frame,) = frames(actions)
    assert frame.dst == BROADCAST_MAC
    assert pbus(actions) == [] and node.visitors[MS].state is State.WAIT_ADDRESS
    assert dispatch.counters["dhcp.nak"] == 1


def test_release_is_carried_and_de_registers() -> None:
    node, dispatch = relay_ready()
    dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.REQUEST, MS, 1, requested=HOA)), 2, 1, 1e9)
    dispatch.receive_tunnel(dhcp_server_packet(T.ACK, MS, 1, yiaddr=HOA), DLMAP, 1.1, 1e9)
    grant(node, MS, HOA, 1.2)
    release = dhcp_client(T.RELEASE, MS, 9, ciaddr=HOA, server_id=GATEWAY)
    frame = dhcp_frame(MS, release, src_ip=HOA, dst_ip=GATEWAY, dst=PSEUDO)
    actions = dispatch.receive_frame(frame, 2, 50.0, 1e9)
    assert len(tunnelled(actions)) == 1
    (pbu,) = pbus(actions)
    assert pbu.lifetime == 0 and node.visitors[MS].state is State.DEREGISTERING


def test_decline_of_the_registered_address_de_registers() -> None:
    """Our choice: the declined HoA is useless, so its binding goes (the MS attaches anew)."""
    node, dispatch = relay_ready()
    dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.REQUEST, MS, 1, requested=HOA)), 2, 1, 1e9)
    dispatch.receive_tunnel(dhcp_server_packet(T.ACK, MS, 1, yiaddr=HOA), DLMAP, 1.1, 1e9)
    grant(node, MS, HOA, 1.2)
    decline = dhcp_client(T.DECLINE, MS, 4, requested=HOA, server_id=GATEWAY)
    actions = dispatch.receive_frame(dhcp_frame(MS, decline), 2, 2.0, 1e9)
    assert len(tunnelled(actions)) == 1 and pbus(actions)[0].lifetime == 0
    other = dhcp_client(T.DECLINE, MS2, 4, requested=HOA2, server_id=GATEWAY)
    authenticate(node, MS2, "dhcp", nai="ms2@example.net")
    actions = dispatch.receive_frame(dhcp_frame(MS2, other), 0, 2.0, 1e9)
    assert len(tunnelled(actions)) == 1 and pbus(actions) == []  # not its address: carried only


@pytest.mark.parametrize(
    ("packet", "peer", "reason"),
    [
        (dhcp_server_packet(T.ACK, MS, 0x9999, yiaddr=HOA), DLMAP, "dhcp.reply_unsolicited"),
        (dhcp_server_packet(T.ACK, MS, 5, yiaddr=HOA), OTHER_DLMAP, "dhcp.reply_wrong_dlmap"),
        (dhcp_server_packet(T.ACK, MS2, 5, yiaddr=HOA), DLMAP, "dhcp.reply_unknown_client"),
        (dhcp_server_packet(T.DISCOVER, MS, 5), DLMAP, "dhcp.reply_bad_type"),
        (
            dhcp_server_packet(
                T.ACK,
                MS,
                5,
                yiaddr=HOA,
                extra=(RelayAgentInfo.of(subscriber_id=b"someone@else").to_option(),),
            ),
            DLMAP,
            "dhcp.reply_wrong_subscriber",
        ),
    ],
)
def test_replies_that_do_not_belong_to_the_ms_are_dropped(
    packet: bytes, peer: object, reason: str
) -> None:
    node, dispatch = relay_ready()
    dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.DISCOVER, MS, 5)), 2, 1.0, 1e9)
    assert dispatch.receive_tunnel(packet, peer, 1.1, 1e9) == []  # type: ignore[arg-type]
    assert dispatch.counters[reason] == 1
    assert node.visitors[MS].state is State.WAIT_ADDRESS


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (dhcp_client(T.DISCOVER, MS2), "dhcp.chaddr_mismatch"),
        (
            dhcp_client(T.DISCOVER, MS, extra=(RelayAgentInfo.of(circuit_id=b"x").to_option(),)),
            "dhcp.client_option82",
        ),
        (DhcpMessage(op=1, xid=1, chaddr=MS.packed), "dhcp.bad_type"),  # no option 53
        (dhcp_client(T.OFFER, MS), "dhcp.bad_type"),
        (dhcp_client(99, MS), "dhcp.bad_type"),
        (DhcpMessage(op=2, xid=1, chaddr=MS.packed), "dhcp.not_request"),
        (DhcpMessage(op=1, xid=1, chaddr=MS.packed, hlen=200), "dhcp.bad_htype"),
        (DhcpMessage(op=1, xid=1, chaddr=MS.packed, giaddr=GATEWAY), "dhcp.giaddr_set"),
    ],
)
def test_client_messages_an_honest_ms_does_not_send_are_dropped(
    message: DhcpMessage, reason: str
) -> None:
    _, dispatch = relay_ready()
    assert dispatch.receive_frame(dhcp_frame(MS, message), 2, 1.0, 1e9) == []
    assert dispatch.counters[reason] == 1


def test_an_nai_too_long_for_option_82_is_dropped_not_raised() -> None:
    node, dispatch = stack()
    authenticate(node, MS, "dhcp", nai="x" * 250 + "@example.net")
    assert dispatch.receive_frame(dhcp_frame(MS, dhcp_client(T.DISCOVER, MS)), 0, 1, 1e9) == []
    assert dispatch.counters["dhcp.option82_too_long"] == 1


def test_a_message_too_big_for_the_tunnel_is_dropped() -> None:
    _, dispatch = relay_ready()
    huge = tuple(DhcpOption(224, bytes(255)) for _ in range(8))
    frame = dhcp_frame(MS, dhcp_client(T.DISCOVER, MS, extra=huge))
    assert dispatch.receive_frame(frame, 2, 1.0, 1e9) == []
    assert dispatch.counters["dhcp.too_big"] == 1


# --- co-located server (DLMAP allocation) -----------------------------------------------------


def colocated(**config: object):  # type: ignore[no-untyped-def]
    node, dispatch = stack(DhcpDmpaConfig(**config))  # type: ignore[arg-type]
    (_pbu,) = pbus(authenticate(node, MS, "dlmap", link=1))
    return node, dispatch


def answer(dispatch, message, now=2.0, **kw):  # type: ignore[no-untyped-def]
    actions = dispatch.receive_frame(dhcp_frame(MS, message, **kw), 1, now, 1e9)
    assert tunnelled(actions) == []  # never carried in this mode
    return [dhcp_of(f) for f in frames(actions)]


def test_silent_until_the_pba_then_offer_and_ack_with_the_hoa() -> None:
    node, dispatch = colocated(
        prefix_length=26,
        lease_time=7200,
        dns_servers=(IPv4Address("198.51.100.53"),),
        domain_name="example.net",
        interface_mtu=1400,
    )
    assert answer(dispatch, dhcp_client(T.DISCOVER, MS, 1)) == []
    assert dispatch.counters["dhcp.server.waiting_pba"] == 1
    grant(node, MS, HOA, 2.5)
    client_id = DhcpOption(DhcpOptionCode.CLIENT_ID, b"\x01" + MS.packed)
    ((ip, udp, offer),) = answer(dispatch, dhcp_client(T.DISCOVER, MS, 2, extra=(client_id,)))
    assert (ip.src, ip.dst, udp.src_port, udp.dst_port) == (GATEWAY, HOA, 67, 68)
    assert offer.message_type == T.OFFER and offer.yiaddr == HOA and offer.xid == 2
    assert offer.server_id == GATEWAY and offer.routers == (GATEWAY,)
    assert offer.subnet_mask == IPv4Address("255.255.255.192")
    assert offer.lease_time == 3600  # capped by the granted binding lifetime (900 * 4 s)
    assert offer.get_option(DhcpOptionCode.RENEWAL_TIME) == (1800).to_bytes(4, "big")
    assert offer.dns_servers == (IPv4Address("198.51.100.53"),)
    assert offer.get_option(DhcpOptionCode.DOMAIN_NAME) == b"example.net"
    assert offer.interface_mtu == 1400 and offer.client_id == b"\x01" + MS.packed
    request = dhcp_client(T.REQUEST, MS, 3, requested=HOA, server_id=GATEWAY, flags=0x8000)
    ((ip, _, ack),) = answer(dispatch, request)
    assert ack.message_type == T.ACK and ack.yiaddr == HOA and ip.dst == LIMITED


def test_request_for_another_address_is_naked_and_another_server_is_ignored() -> None:
    node, dispatch = colocated()
    grant(node, MS, HOA)
    ((ip, _, nak),) = answer(dispatch, dhcp_client(T.REQUEST, MS, 4, requested=HOA2))
    assert nak.message_type == T.NAK and nak.yiaddr == ZERO and ip.dst == LIMITED
    assert nak.lease_time is None and nak.server_id == GATEWAY
    chose_other = dhcp_client(T.REQUEST, MS, 5, requested=HOA, server_id=IPv4Address("192.0.2.9"))
    assert answer(dispatch, chose_other) == []
    assert dispatch.counters["dhcp.server.other_server"] == 1


def test_renewing_and_inform() -> None:
    node, dispatch = colocated()
    grant(node, MS, HOA)
    renew = dhcp_client(T.REQUEST, MS, 6, ciaddr=HOA)
    ((ip, _, ack),) = answer(dispatch, renew, src_ip=HOA, dst_ip=GATEWAY, dst=PSEUDO)
    assert ack.message_type == T.ACK and ack.ciaddr == HOA and ip.dst == HOA
    inform = dhcp_client(T.INFORM, MS, 7, ciaddr=HOA)
    ((ip, _, info),) = answer(dispatch, inform, src_ip=HOA, dst_ip=GATEWAY, dst=PSEUDO)
    assert info.message_type == T.ACK and info.yiaddr == ZERO and info.lease_time is None
    assert ip.dst == HOA


def test_colocated_release_and_decline_de_register() -> None:
    for message in (
        dhcp_client(T.RELEASE, MS, 8, ciaddr=HOA, server_id=GATEWAY),
        dhcp_client(T.DECLINE, MS, 8, requested=HOA, server_id=GATEWAY),
    ):
        node, dispatch = colocated()
        grant(node, MS, HOA)
        actions = dispatch.receive_frame(dhcp_frame(MS, message), 1, 5.0, 1e9)
        (pbu,) = pbus(actions)
        assert pbu.lifetime == 0 and frames(actions) == []


def test_lease_never_longer_than_the_binding_lifetime() -> None:
    node, dispatch = stack(DhcpDmpaConfig(lease_time=86400), lifetime=600)
    authenticate(node, MS, "dlmap")
    node.visitors[MS].hoa, node.visitors[MS].state = HOA, State.REGISTERED  # as a harness may
    ((_, _, offer),) = answer(dispatch, dhcp_client(T.DISCOVER, MS, 9))
    assert offer.lease_time == 600


def test_static_profiles_are_served_too() -> None:
    node, dispatch = stack()
    authenticate(node, MS, "static", hoa=HOA)
    grant(node, MS, HOA)
    ((_, _, offer),) = answer(dispatch, dhcp_client(T.DISCOVER, MS, 1))
    assert offer.yiaddr == HOA


def test_config_errors_are_all_reported_at_once() -> None:
    with pytest.raises(ValueError, match=r"prefix_length.*lease_time.*interface_mtu"):
        DhcpDmpaConfig(prefix_length=33, lease_time=0, interface_mtu=10)
