"""Seed 5.3: the ARP proxy answers with the domain's pseudo-MAC and behaves like a router."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from router.core.actions import Event
from router.core.dmpa import State
from router.wire.arp import ArpOp, ArpPacket
from router.wire.ethernet import BROADCAST_MAC, EthernetFrame, EtherType, VlanTag
from tests.netns.access_helpers import (
    GATEWAY,
    HOA,
    HOA2,
    MS,
    MS2,
    NAI2,
    PSEUDO,
    ZERO,
    arp_frame,
    authenticate,
    frames,
    grant,
    pbus,
    stack,
)

INTERNET_HOST = IPv4Address("203.0.113.5")


def replies(actions: list[object]) -> list[tuple[EthernetFrame, ArpPacket]]:
    out = []
    for frame in frames(actions):  # type: ignore[arg-type]
        assert frame.ethertype == EtherType.ARP
        out.append((frame, ArpPacket.decode(frame.payload)))
    return out


def registered(mac=MS, hoa=HOA, nai="ms1@example.net"):  # type: ignore[no-untyped-def]
    node, dispatch = stack()
    authenticate(node, mac, "static", hoa=hoa, nai=nai)
    grant(node, mac, hoa)
    assert node.visitors[mac].state is State.REGISTERED
    return node, dispatch


@pytest.mark.parametrize("target", [GATEWAY, HOA2, INTERNET_HOST])
def test_every_request_is_answered_with_the_pseudo_mac(target: IPv4Address) -> None:
    _node, dispatch = registered()
    actions = dispatch.receive_frame(arp_frame(MS, HOA, target), 0, 1.0, 1e9)
    ((frame, reply),) = replies(actions)
    assert (frame.dst, frame.src) == (MS, PSEUDO)
    assert reply.op == ArpOp.REPLY
    assert (reply.sender_mac, reply.sender_ip) == (PSEUDO, target)
    assert (reply.target_mac, reply.target_ip) == (MS, HOA)


def test_unicast_refresh_to_the_pseudo_mac_is_answered_too() -> None:
    """Linux's NUD probes are unicast to the cached MAC: they must be answered as well."""
    _, dispatch = registered()
    frame = arp_frame(MS, HOA, GATEWAY, dst=PSEUDO, target_mac=PSEUDO)
    ((_, reply),) = replies(dispatch.receive_frame(frame, 0, 1.0, 1e9))
    assert reply.sender_mac == PSEUDO


def test_the_reply_keeps_the_vlan_tag_and_leaves_by_the_visitors_link() -> None:
    node, dispatch = registered()
    arp = ArpPacket.request(MS, HOA, GATEWAY)
    tagged = EthernetFrame(BROADCAST_MAC, MS, EtherType.ARP, arp.encode(), VlanTag(42)).encode()
    actions = dispatch.receive_frame(tagged, 0, 1.0, 1e9)
    (frame,) = frames(actions)
    assert frame.vlan == VlanTag(42)
    assert actions[0].link == node.visitors[MS].link  # type: ignore[union-attr]


def test_same_pseudo_mac_before_and_after_a_handover() -> None:
    """Two DMPAs of the domain: the MS re-learns the very same MAC for its gateway."""
    _old_node, old = registered()
    ((_, before),) = replies(old.receive_frame(arp_frame(MS, HOA, GATEWAY), 0, 1.0, 1e9))
    new_node, new = stack()
    # at the new DMPA the MS is not even authenticated yet: its ARP is answered all the same
    ((_, after),) = replies(new.receive_frame(arp_frame(MS, HOA, GATEWAY), 3, 5.0, 1e9))
    assert before.sender_mac == after.sender_mac == PSEUDO
    # and the ARP told the new DMPA which address the MS holds
    assert new_node.visitors[MS].address_seen == HOA


def test_an_arp_reveals_the_address_and_registers_a_waiting_ms() -> None:
    node, dispatch = stack()
    authenticate(node, MS, "dhcp")
    assert node.visitors[MS].state is State.WAIT_ADDRESS
    actions = dispatch.receive_frame(arp_frame(MS, HOA, GATEWAY), 0, 1.0, 1e9)
    (_pbu,) = pbus(actions)
    assert node.visitors[MS].state is State.REGISTERING and node.visitors[MS].hoa == HOA
    assert len(replies(actions)) == 1


def test_a_link_local_sender_is_not_learned() -> None:
    node, dispatch = stack()
    authenticate(node, MS, "dhcp")
    dispatch.receive_frame(arp_frame(MS, IPv4Address("169.254.3.4"), GATEWAY), 0, 1.0, 1e9)
    assert node.visitors[MS].state is State.WAIT_ADDRESS


def test_no_answer_to_a_probe_for_the_ms_own_or_a_free_address() -> None:
    _node, dispatch = registered()
    for target in (HOA, HOA2):
        assert replies(dispatch.receive_frame(arp_frame(MS, ZERO, target), 0, 1.0, 1e9)) == []
    assert dispatch.counters["arp.probe_silent"] == 2


def test_no_answer_to_an_announcement_nor_to_a_request_for_the_own_address() -> None:
    _node, dispatch = registered()
    assert dispatch.receive_frame(arp_frame(MS, HOA, HOA), 0, 1.0, 1e9) == []
    reply_form = arp_frame(MS, HOA, HOA, op=ArpOp.REPLY, target_mac=BROADCAST_MAC)
    assert dispatch.receive_frame(reply_form, 0, 1.0, 1e9) == []
    assert dispatch.receive_frame(arp_frame(MS, HOA2, HOA), 0, 1.0, 1e9) == []
    assert dispatch.counters["arp.announcement"] == 1
    assert dispatch.counters["arp.own_address"] == 1


def test_a_probe_for_the_gateway_is_defended() -> None:
    _, dispatch = registered()
    ((frame, reply),) = replies(dispatch.receive_frame(arp_frame(MS, ZERO, GATEWAY), 0, 1, 1e9))
    assert (reply.sender_ip, reply.sender_mac, frame.dst) == (GATEWAY, PSEUDO, MS)


def test_a_claim_on_the_gateway_gets_one_broadcast_announcement_per_defend_interval() -> None:
    node, dispatch = registered()
    claim = arp_frame(MS, GATEWAY, GATEWAY)
    ((frame, announcement),) = replies(dispatch.receive_frame(claim, 0, 1.0, 1e9))
    assert frame.dst == BROADCAST_MAC
    assert announcement == ArpPacket.announcement(PSEUDO, GATEWAY)
    assert dispatch.receive_frame(claim, 0, 5.0, 1e9) == []  # within 10 s
    assert len(replies(dispatch.receive_frame(claim, 0, 11.5, 1e9))) == 1
    assert dispatch.counters["arp.gateway_claimed"] == 3
    assert node.visitors[MS].hoa == HOA  # the gateway was never learned as its address


def conflict_events(actions: list[object]) -> list[Event]:
    return [a for a in actions if isinstance(a, Event) and a.kind == "arp_conflict"]


@pytest.mark.parametrize(
    "claim",
    [
        arp_frame(MS2, HOA, HOA),  # gratuitous request
        arp_frame(MS2, HOA, HOA, op=ArpOp.REPLY),  # gratuitous reply
        arp_frame(MS2, HOA, GATEWAY),  # ordinary request with the victim's address as sender
        arp_frame(MS2, ZERO, HOA),  # probe for the victim's address
    ],
    ids=["announcement", "gratuitous-reply", "request", "probe"],
)
def test_another_ms_claiming_a_bound_address_is_a_conflict(claim: bytes) -> None:
    node, dispatch = registered()
    authenticate(node, MS2, "dhcp", nai=NAI2)
    actions = dispatch.receive_frame(claim, 0, 2.0, 1e9)
    assert frames(actions) == [], "never answered on the victim's behalf"
    (conflict,) = conflict_events(actions)
    assert conflict.fields == {"mac": MS2, "address": HOA, "owner": MS}
    assert dispatch.counters["arp.conflict"] == 1
    v2 = node.visitors[MS2]
    assert v2.state is State.WAIT_ADDRESS and v2.address_seen is None  # nothing learned
    # the event is rate-limited with the log line; the counter is not
    assert conflict_events(dispatch.receive_frame(claim, 0, 3.0, 1e9)) == []
    assert dispatch.counters["arp.conflict"] == 2


def test_asking_for_another_ms_address_is_normal_proxying() -> None:
    node, dispatch = registered()
    authenticate(node, MS2, "static", hoa=HOA2, nai=NAI2)
    grant(node, MS2, HOA2)
    ((_, reply),) = replies(dispatch.receive_frame(arp_frame(MS2, HOA2, HOA), 0, 2.0, 1e9))
    assert (reply.sender_ip, reply.sender_mac) == (HOA, PSEUDO)


def test_a_sender_mac_other_than_the_ethernet_source_is_dropped() -> None:
    _, dispatch = registered()
    frame = arp_frame(MS, HOA, GATEWAY, sender_mac=MS2)
    assert dispatch.receive_frame(frame, 0, 1.0, 1e9) == []
    assert dispatch.counters["arp.sender_mismatch"] == 1


@pytest.mark.parametrize("target", [ZERO, IPv4Address("224.0.0.1"), IPv4Address("255.255.255.255")])
def test_no_answer_for_addresses_no_host_holds(target: IPv4Address) -> None:
    _, dispatch = registered()
    assert dispatch.receive_frame(arp_frame(MS, HOA, target), 0, 1.0, 1e9) == []
    assert dispatch.counters["arp.bogus_target"] == 1


def test_unknown_op_and_plain_replies_are_not_answered() -> None:
    _, dispatch = registered()
    assert dispatch.receive_frame(arp_frame(MS, HOA, GATEWAY, op=9), 0, 1.0, 1e9) == []
    plain_reply = arp_frame(MS, HOA, GATEWAY, op=ArpOp.REPLY, target_mac=PSEUDO)
    assert dispatch.receive_frame(plain_reply, 0, 1.0, 1e9) == []
    assert dispatch.counters["arp.bad_op"] == 1
    assert dispatch.counters["arp.reply_received"] == 1


def test_owner_index_follows_the_visitor_list() -> None:
    node, dispatch = registered()
    arp = dispatch.arp
    assert arp.owner_of(HOA, 1.0) == MS
    node.visitors[MS].hoa = HOA2  # the core changed it: a stale index never names MS for HOA
    assert arp.owner_of(HOA, 1.2) is None
    assert arp.owner_of(HOA2, 2.5) == MS  # rebuilt once older than index_age
