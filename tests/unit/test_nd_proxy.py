"""IPv6 Neighbor Discovery for dual-stack MSs (RFC 4861, RFC 5213 6.9): Router Advertisements
(solicited, at the binding, periodic) and Neighbor Solicitation answers, never for DAD probes."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network
from pathlib import Path

import pytest

from router.core.actions import Action, BindPrefix, SendFrame
from router.core.defaults import MAX_INITIAL_RTR_ADVERT_INTERVAL, MIN_DELAY_BETWEEN_RAS
from router.core.dmpa import DMPA, DMPAConfig, Profile
from router.services.access import AccessDispatcher
from router.services.arp_proxy import ArpProxy
from router.services.dhcp_dmpa import DhcpDmpa
from router.services.icmp_responder import IcmpResponder
from router.services.nd_proxy import NdConfig, NdProxy
from router.wire.dialect import DRAFT
from router.wire.ethernet import EthernetFrame, EtherType, MacAddress
from router.wire.mh import BindingAck
from router.wire.mh_options import HomeNetworkPrefix, MobileNodeIdentifier, SeedIPv4HomeAddress
from router.wire.nd import (
    ALL_ROUTERS,
    IPv6Packet,
    NeighborAdvertisement,
    NeighborSolicitation,
    RouterAdvertisement,
    RouterSolicitation,
    decode_nd,
    icmpv6_packet,
)
from tests.netns.access_helpers import DLMAP, GATEWAY, HOA, MS, PSEUDO, SELF

PREFIX = IPv6Network("2001:db8:ff00:17::/64")
ROUTER = IPv6Address("fe80::5eff:fe00:1")
MS_LL = IPv6Address("fe80::ff:fe00:1")
MS_GLOBAL = IPv6Address("2001:db8:ff00:17::1234")
UNSPEC = IPv6Address("::")


def node(*, prefix: bool = True, half: float = 0.5):
    """A DMPA with MS registered dual-stack (PBA with the HNP when ``prefix``), its ND service
    and dispatcher; ``half`` is what the random source returns."""
    core = DMPA(DMPAConfig(SELF, PSEUDO, GATEWAY, {DLMAP: DRAFT}))
    nd = NdProxy(core, NdConfig(mtu=1460), lambda: half)
    dispatch = AccessDispatcher(core, ArpProxy(core), IcmpResponder(), DhcpDmpa(core), nd=nd)
    core.attach(MS, 0, 0.0)
    core.aaa_result(MS, Profile("ms1@example.net", "static", DLMAP, HOA, ipv6=True), 0.0, 1e9)
    visitor = core.visitors[MS]
    options: tuple = (MobileNodeIdentifier.from_nai("ms1@example.net"), SeedIPv4HomeAddress(1, HOA))
    if prefix:
        options += (HomeNetworkPrefix(64, PREFIX.network_address),)
    pba = BindingAck(0, DRAFT.pba_flags(ipv4=False), visitor.pending, 900, options)
    actions = core.receive(pba, DLMAP, 0.1, 1e9)
    first: list[Action] = []
    for action in actions:
        if isinstance(action, BindPrefix):
            first += nd.bound(action.mac, 0.1)
    return core, nd, dispatch, first


def frame_from_ms(
    src: IPv6Address, dst: IPv6Address, message, mac_dst: MacAddress, hops: int = 255
) -> bytes:
    packet = icmpv6_packet(src, dst, message, hop_limit=hops)
    return EthernetFrame(mac_dst, MS, EtherType.IPV6, packet).encode()


def sent(actions) -> list[tuple[EthernetFrame, IPv6Packet, object]]:
    out = []
    for action in actions:
        assert isinstance(action, SendFrame)
        eth = EthernetFrame.decode(action.frame)
        packet = IPv6Packet.decode(eth.payload)
        out.append((eth, packet, decode_nd(packet)))
    return out


def test_the_binding_sends_an_ra_at_once_with_the_ms_prefix() -> None:
    _, _, _, first = node()
    ((eth, packet, ra),) = sent(first)
    assert (eth.dst, eth.src) == (MS, PSEUDO)  # unicast at layer 2: the prefix is this MS's
    assert packet.src == ROUTER and packet.dst == IPv6Address("ff02::1")
    assert packet.hop_limit == 255
    assert isinstance(ra, RouterAdvertisement)
    assert not ra.managed and not ra.other and ra.router_lifetime == 1800
    assert ra.source_lla == PSEUDO and ra.mtu == 1460
    ((pio),) = ra.prefixes
    assert pio.prefix == PREFIX and pio.on_link and pio.autonomous


def test_no_ra_and_no_answer_before_the_prefix_is_bound() -> None:
    _, nd, dispatch, first = node(prefix=False)
    assert first == []
    rs = frame_from_ms(
        MS_LL, ALL_ROUTERS, RouterSolicitation(MS), MacAddress.parse("33:33:00:00:00:02")
    )
    assert dispatch.receive_frame(rs, 0, 1.0, 1e9) == []
    assert nd.get_timer() is None and nd.drops.counters["nd.no_prefix"] == 1


def test_initial_then_periodic_advertisements_follow_rfc4861() -> None:
    _, nd, _, _ = node(half=0.5)
    times = []
    now = 0.1
    for _ in range(4):
        deadline = nd.get_timer()
        assert deadline is not None
        times.append(deadline - now)
        now = deadline
        assert len(sent(nd.handle_timer(now))) == 1
    # The initial ones at most MAX_INITIAL_RTR_ADVERT_INTERVAL apart, then 198..600 s.
    assert all(t <= MAX_INITIAL_RTR_ADVERT_INTERVAL for t in times[:2])
    assert all(198 <= t <= 600 for t in times[2:])
    assert times[2] == pytest.approx(198 + 0.5 * (600 - 198))


def test_a_solicitation_is_answered_after_a_random_delay_not_sooner_than_3s_after_the_last() -> (
    None
):
    _, nd, dispatch, _ = node(half=0.5)
    rs = frame_from_ms(
        MS_LL, ALL_ROUTERS, RouterSolicitation(MS), MacAddress.parse("33:33:00:00:00:02")
    )
    assert dispatch.receive_frame(rs, 0, 0.2, 1e9) == []
    # The RA at the binding went at 0.1: the answer waits for MIN_DELAY_BETWEEN_RAS.
    assert nd.get_timer() == pytest.approx(0.1 + MIN_DELAY_BETWEEN_RAS)
    assert len(sent(nd.handle_timer(0.1 + MIN_DELAY_BETWEEN_RAS))) == 1
    later = 10.0  # before the next initial RA (3.1 + 16 s)
    dispatch.receive_frame(rs, 0, later, 1e9)
    assert nd.get_timer() == pytest.approx(later + 0.25)  # 0.5 x MAX_RA_DELAY_TIME
    ((_, _, ra),) = sent(nd.handle_timer(later + 0.25))
    assert isinstance(ra, RouterAdvertisement)


def test_an_ns_for_the_router_gets_an_na_with_r_s_o() -> None:
    _, _, dispatch, _ = node()
    ns = frame_from_ms(MS_LL, ROUTER, NeighborSolicitation(ROUTER, MS), PSEUDO)
    ((eth, packet, na),) = sent(dispatch.receive_frame(ns, 0, 1.0, 1e9))
    assert (eth.dst, eth.src, packet.src, packet.dst) == (MS, PSEUDO, ROUTER, MS_LL)
    assert isinstance(na, NeighborAdvertisement)
    assert na.router and na.solicited and na.override and na.target_lla == PSEUDO


def test_an_ns_for_another_address_gets_a_proxy_na_without_o() -> None:
    _, _, dispatch, _ = node()
    other = IPv6Address("2001:db8:ff00:17::99")
    solicited_node = MacAddress.parse("33:33:ff:00:00:99")
    ns = frame_from_ms(
        MS_GLOBAL, IPv6Address("ff02::1:ff00:99"), NeighborSolicitation(other, MS), solicited_node
    )
    ((_, _, na),) = sent(dispatch.receive_frame(ns, 0, 1.0, 1e9))
    assert isinstance(na, NeighborAdvertisement) and na.target == other
    assert na.router and na.solicited and not na.override


def test_duplicate_address_probes_are_never_answered() -> None:
    _, nd, dispatch, _ = node()
    for target in (MS_GLOBAL, MS_LL, ROUTER):
        probe = frame_from_ms(
            UNSPEC,
            IPv6Address("ff02::1:ff00:1234"),
            NeighborSolicitation(target),
            MacAddress.parse("33:33:ff:00:12:34"),
        )
        assert dispatch.receive_frame(probe, 0, 1.0, 1e9) == []
    assert nd.drops.counters["nd.ns_dad"] == 3


def test_an_ns_for_the_ms_own_address_is_not_answered() -> None:
    _, nd, dispatch, _ = node()
    # The MS used MS_GLOBAL as a source (its NUD of the router), then something asks for it.
    dispatch.receive_frame(
        frame_from_ms(MS_GLOBAL, ROUTER, NeighborSolicitation(ROUTER, MS), PSEUDO), 0, 1.0, 1e9
    )
    ns = frame_from_ms(MS_LL, ROUTER, NeighborSolicitation(MS_GLOBAL, MS), PSEUDO)
    assert dispatch.receive_frame(ns, 0, 2.0, 1e9) == []
    assert nd.drops.counters["nd.ns_own"] == 1


@pytest.mark.parametrize("hops", [64, 1])
def test_nd_with_a_hop_limit_below_255_is_dropped(hops: int) -> None:
    _, nd, dispatch, _ = node()
    ns = frame_from_ms(MS_LL, ROUTER, NeighborSolicitation(ROUTER, MS), PSEUDO, hops=hops)
    assert dispatch.receive_frame(ns, 0, 1.0, 1e9) == []
    assert nd.drops.counters["nd.malformed"] == 1


def test_a_corrupted_checksum_is_counted_and_dropped() -> None:
    _, nd, dispatch, _ = node()
    frame = bytearray(frame_from_ms(MS_LL, ROUTER, NeighborSolicitation(ROUTER, MS), PSEUDO))
    frame[-1] ^= 0xFF
    assert dispatch.receive_frame(bytes(frame), 0, 1.0, 1e9) == []
    assert nd.drops.counters["nd.malformed"] == 1


def test_truncated_ipv6_never_raises() -> None:
    _, nd, dispatch, _ = node()
    whole = frame_from_ms(MS_LL, ROUTER, NeighborSolicitation(ROUTER, MS), PSEUDO)
    for cut in range(14, len(whole)):
        dispatch.receive_frame(whole[:cut], 0, 1.0, 1e9)
    assert nd.drops.counters["nd.malformed"] == len(whole) - 14


@pytest.mark.tshark
def test_tshark_reads_our_ra_and_na(tshark_path: str, tmp_path: Path) -> None:
    from tests.oracle.tshark import LINKTYPE_ETHERNET, dissect, write_pcap

    _, _, dispatch, first = node()
    ns = frame_from_ms(MS_LL, ROUTER, NeighborSolicitation(ROUTER, MS), PSEUDO)
    frames = [a.frame for a in first + dispatch.receive_frame(ns, 0, 1.0, 1e9)]  # type: ignore[union-attr]
    pcap = tmp_path / "nd.pcap"
    write_pcap(pcap, frames, LINKTYPE_ETHERNET)
    ra, na = (d for d in dissect(tshark_path, pcap, "icmpv6"))
    fields_ra = {f.name: f for f in ra.fields}
    fields_na = {f.name: f for f in na.fields}
    assert not ra.malformed and not na.malformed
    assert (
        fields_ra["icmpv6.type"].show == "134" and fields_ra["icmpv6.checksum.status"].show == "1"
    )
    assert (
        fields_ra["icmpv6.nd.ra.flag.m"].show == "0"
        and fields_ra["icmpv6.nd.ra.flag.o"].show == "0"
    )
    assert fields_ra["icmpv6.opt.prefix"].show == "2001:db8:ff00:17::"
    assert fields_ra["icmpv6.opt.prefix.flag.l"].show == "1"
    assert fields_ra["icmpv6.opt.prefix.flag.a"].show == "1"
    assert fields_ra["icmpv6.opt.mtu"].show == "1460"
    assert fields_ra["icmpv6.opt.linkaddr"].show == "02:00:5e:00:00:01"
    assert (
        fields_na["icmpv6.type"].show == "136" and fields_na["icmpv6.checksum.status"].show == "1"
    )
    assert (
        fields_na["icmpv6.nd.na.flag.r"].show == "1"
        and fields_na["icmpv6.nd.na.flag.s"].show == "1"
    )
    assert fields_na["icmpv6.nd.na.target_address"].show == str(ROUTER)
