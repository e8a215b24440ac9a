"""Data-plane anti-spoofing in the lab: forged packets against real ``netlmm run``.

One domain for the module: MS ``ms`` (the victim) and ``ms2`` (the attacker) registered at
DMPA 1 by DHCP, ``ms3`` with the static HoA at DMPA 2, and a profile ``mallory`` whose MAC no
host has (the attacker borrows it to play an MS that is not registered yet). Each test sends
one family of forged packets (built with scapy) from the attacker's namespace or from the IPv6
transport bridge, then checks that the right counter of the right process moved, that no marked
packet came out at the CN or at another MS (packet-socket sniffers there), and that every
binding is still what it was.

The module runs once per data-path tier (``[node] datapath`` kernel and cython): what the
kernel tier drops itself (a bound HoA from another MAC, tunnel input not from the bound peer)
it counts in its own ``kernel`` group; everything it leaves to the Cython tier is counted
there as before.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from netlmm_lab.configs import STATIC_HOA, MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.servers import binary, start_dhcp_server
from netlmm_lab.tools import ping
from netlmm_lab.topology import (
    BRIDGE,
    CN_ADDRESS,
    CN_IF,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    MS_IF,
    TRANSPORT_IF,
    Lab,
)
from tests.conftest import require
from tests.netns.children import REPO, child_argv
from tests.netns.forge import Injector, Sniffer, flat, marker

pytestmark = pytest.mark.root

GATEWAY = "192.0.2.1"
PSEUDO = "02:00:5e:00:00:01"
BROADCAST = "ff:ff:ff:ff:ff:ff"
MALLORY = "02:4e:4c:00:00:66"
UNKNOWN_DMPA = "2001:db8:100::99"
UNBOUND = "192.0.2.150"
COPIES = 3


def nai(ms: str) -> str:
    return f"{ms}@example.org"


@dataclass
class World:
    lab: Lab
    domain: Domain
    hoa: dict[str, str]  # ms -> its HoA
    mac: dict[str, str]
    attacker: Injector  # on ms2's ms0
    transport: Injector  # on the transport bridge (tr br0)
    lm_mac: str  # the DLMAP's MAC on the transport
    m1_mac: str  # DMPA 1's
    datapath: str  # kernel | cython

    def tier(self, name: str) -> str:
        """The counter ``name`` of the tier that forwards or drops on its own."""
        return f"{'kernel' if self.datapath == 'kernel' else 'fastpath'}/{name}"

    def bindings(self) -> dict[str, tuple[str, str]]:
        return {b["nai"]: (b["hoa"], b["dmpa"]) for b in self.domain.ask("dlmap", "bindings")}


def _mac_of(lab: Lab, ns: str, ifname: str) -> str:
    return str(next(link["address"] for link in lab.links(ns) if link["ifname"] == ifname))


@pytest.fixture(scope="module", params=["kernel", "cython"])
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    require(os.geteuid() == 0, "needs root for network namespaces and raw sockets")
    with Lab(mobiles=3) as lab:
        profiles = [
            MobileProfile(nai("ms"), lab.ms_mac("ms"), "dhcp"),
            MobileProfile(nai("ms2"), lab.ms_mac("ms2"), "dhcp"),
            MobileProfile(nai("ms3"), lab.ms_mac("ms3"), "static", str(STATIC_HOA)),
            MobileProfile(nai("mallory"), MALLORY, "dhcp"),
        ]
        domain = Domain(lab, profiles, datapath=request.param)
        domain.start()
        try:
            hoa = {ms: str(DhcpClient(lab, ms).once(tries=10).address) for ms in ("ms", "ms2")}
            lab.handover(2, ms="ms3")
            lab.exec("ms3", ["ip", "addr", "add", f"{STATIC_HOA}/24", "dev", MS_IF])
            lab.exec("ms3", ["ip", "route", "add", "default", "via", GATEWAY])
            hoa["ms3"] = str(STATIC_HOA)
            wait_until(lambda: ping(lab, "ms3", GATEWAY, count=1).ok, 20.0, "ms3 registered")
            for ms in ("ms", "ms2", "ms3"):
                assert ping(lab, ms, str(CN_ADDRESS), count=1).ok, ms
            world = World(
                lab,
                domain,
                hoa,
                {ms: lab.ms_mac(ms) for ms in ("ms", "ms2", "ms3")},
                Injector(lab, "ms2", MS_IF),
                Injector(lab, "tr", BRIDGE),
                _mac_of(lab, "lm", TRANSPORT_IF),
                _mac_of(lab, "m1", TRANSPORT_IF),
                request.param,
            )
            before = world.bindings()
            assert before[nai("ms3")] == (str(STATIC_HOA), str(DMPA_ADDRESSES[2]))
            yield world
            # Whatever was forged, every binding is still what it was, and nobody else got one.
            assert world.bindings() == before
        finally:
            domain.stop()


def counters(world: World) -> dict[str, Counter[str]]:
    return {role: flat(world.domain.ask(role, "counters")) for role in ("dlmap", "dmpa1")}


def forge(
    world: World,
    frames: list[bytes],
    expect: dict[str, dict[str, int]],
    *,
    via: str = "attacker",
    watch: tuple[tuple[str, str], ...] = (("cn", CN_IF), ("ms", MS_IF), ("ms3", MS_IF)),
) -> dict[str, Counter[str]]:
    """Send ``frames`` (each ``COPIES`` times) and wait until every counter in ``expect``
    (role -> name -> how many) grew by at least that much; no marked frame may show up in
    ``watch``. Returns the counter deltas."""
    sniffers = [Sniffer(world.lab, ns, ifname) for ns, ifname in watch]
    start = counters(world)
    injector = world.attacker if via == "attacker" else world.transport
    sent = injector.send([frame for frame in frames for _ in range(COPIES)])
    assert sent == COPIES * len(frames)
    grown: dict[str, Counter[str]] = {}

    def moved() -> bool:
        now = counters(world)
        for role in now:
            grown[role] = now[role] - start[role]
        return all(
            grown[role][name] >= least
            for role, names in expect.items()
            for name, least in names.items()
        )

    try:
        wait_until(moved, 10.0, f"counters {expect} after {sent} forged packets")
    finally:
        seen = {where: sniffer.stop() for where, sniffer in zip(watch, sniffers, strict=True)}
    leaked = {
        where: {kind: n for kind, n in kinds.items() if kind != "legit"}
        for where, kinds in seen.items()
    }
    leaked = {where: kinds for where, kinds in leaked.items() if kinds}
    assert not leaked, f"forged packets came out: {leaked}"
    return grown


def to_cn(world: World, kind: str, src: str, mac: str | None = None) -> bytes:
    mac = mac or world.mac["ms2"]
    packet = Ether(src=mac, dst=PSEUDO) / IP(src=src, dst=str(CN_ADDRESS), ttl=64)
    return bytes(packet / UDP(sport=40000, dport=9) / Raw(marker(kind)))


# --- DMPA access side ----------------------------------------------------------------------


def test_control_an_honest_marked_packet_does_come_out(world: World) -> None:
    """The other tests see nothing at the CN: this one shows the injector, the path and the
    sniffer would have seen it (the attacker's own address, from its own MAC)."""
    sniffer = Sniffer(world.lab, "cn", CN_IF)
    start = counters(world)
    world.attacker.send([to_cn(world, "honest", world.hoa["ms2"])] * COPIES)

    def forwarded() -> bool:
        now = counters(world)
        name = world.tier("uplink.forwarded")
        return all(now[role][name] >= start[role][name] + COPIES for role in ("dmpa1", "dlmap"))

    wait_until(forwarded, 10.0, "the honest packets forwarded by DMPA 1 and the DLMAP")
    seen = sniffer.stop()
    assert seen["honest"] == COPIES, seen


def test_a_bound_hoa_from_another_mac_is_dropped_by_the_fastpath(world: World) -> None:
    frame = to_cn(world, "victim_hoa", world.hoa["ms"])
    forge(world, [frame], {"dmpa1": {world.tier("uplink.spoofed_src"): COPIES}})


def test_an_address_not_bound_here_is_dropped_by_the_slow_path(world: World) -> None:
    frames = [
        to_cn(world, "other_dmpa_hoa", world.hoa["ms3"]),  # bound at DMPA 2
        to_cn(world, "unbound", UNBOUND),  # nobody's
    ]
    twice = 2 * COPIES
    forge(
        world,
        frames,
        {"dmpa1": {"fastpath/uplink.unknown_ms": twice, "access/ipv4.registered": twice}},
    )


def test_an_unregistered_ms_cannot_register_another_ms_address(world: World) -> None:
    """An MS not registered yet shows an address (seed 4): the DMPA asks the DLMAP for it, and
    the DLMAP refuses an address that belongs to another NAI."""
    frame = to_cn(world, "claim_static", world.hoa["ms3"], MALLORY)

    def rejections() -> int:
        core = flat(world.domain.ask("dlmap", "counters"))
        return sum(v for k, v in core.items() if k.startswith("core/pba.status.1"))

    before = rejections()

    def refused() -> bool:
        world.attacker.send([frame])  # the first frames attach mallory (AAA), later ones claim
        return rejections() > before

    sniffer = Sniffer(world.lab, "cn", CN_IF)
    wait_until(refused, 15.0, "the DLMAP refusing mallory's PBU", interval=0.3)
    assert not sniffer.stop(), "a packet from mallory reached the CN"
    assert nai("mallory") not in world.bindings()


def test_icmp_to_the_gateway_in_another_ms_name_is_not_answered(world: World) -> None:
    packet = Ether(src=world.mac["ms2"], dst=PSEUDO) / IP(src=world.hoa["ms"], dst=GATEWAY)
    frame = bytes(packet / ICMP(type=8, id=77, seq=1) / Raw(marker("icmp_echo")))
    forge(world, [frame], {"dmpa1": {"access/icmp.wrong_source": COPIES}})


def test_arp_cannot_take_another_ms_address(world: World) -> None:
    b, victim = world.mac["ms2"], world.hoa["ms"]
    announce = Ether(src=b, dst=BROADCAST) / ARP(op=1, hwsrc=b, psrc=victim, pdst=victim)
    gratuitous_reply = Ether(src=b, dst=BROADCAST) / ARP(
        op=2, hwsrc=b, psrc=victim, hwdst=BROADCAST, pdst=victim
    )
    reply = Ether(src=b, dst=PSEUDO) / ARP(op=2, hwsrc=b, psrc=victim, hwdst=PSEUDO, pdst=GATEWAY)
    probe = Ether(src=b, dst=BROADCAST) / ARP(op=1, hwsrc=b, psrc="0.0.0.0", pdst=victim)
    grown = forge(
        world,
        [bytes(announce), bytes(gratuitous_reply), bytes(reply), bytes(probe)],
        {"dmpa1": {"access/arp.conflict": 4 * COPIES}},
    )
    assert grown["dmpa1"]["access/arp.reply"] == 0  # nothing said on the victim's behalf
    speaking_for = Ether(src=b, dst=BROADCAST) / ARP(
        op=1, hwsrc=world.mac["ms"], psrc=victim, pdst=GATEWAY
    )
    forge(world, [bytes(speaking_for)], {"dmpa1": {"access/arp.sender_mismatch": COPIES}})
    # The victim's traffic still goes to the victim: a marked packet from the CN arrives at
    # ms and at nobody else (ms2 shares the base station's bridge).
    watch = [Sniffer(world.lab, "ms", MS_IF), Sniffer(world.lab, "ms2", MS_IF)]
    text = marker("legit").decode()

    def delivered() -> bool:
        world.lab.exec("cn", child_argv("udp_send", victim, "9", text), cwd=REPO)
        return ping(world.lab, "cn", victim, count=1).ok

    wait_until(delivered, 10.0, "the CN reaching the victim")
    at_victim, at_attacker = (s.stop() for s in watch)
    assert at_victim["legit"] >= 1 and not at_attacker


def dhcp(
    world: World,
    kind: str,
    *,
    chaddr: str | None = None,
    src: str = "0.0.0.0",
    ciaddr: str = "0.0.0.0",
    giaddr: str = "0.0.0.0",
    options: tuple[tuple[str, object], ...] = (),
) -> bytes:
    b = world.mac["ms2"]
    chaddr = chaddr or b
    packet = (
        Ether(src=b, dst=BROADCAST)
        / IP(src=src, dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(
            chaddr=bytes.fromhex(chaddr.replace(":", "")),
            xid=0x5A5A0000 + len(kind),
            ciaddr=ciaddr,
            giaddr=giaddr,
        )
        / DHCP(options=[("message-type", kind), *options, "end"])
    )
    return bytes(packet)


def test_dhcp_cannot_take_or_release_another_ms_address(world: World) -> None:
    victim, victim_mac = world.hoa["ms"], world.mac["ms"]
    client_id = b"\x01" + bytes.fromhex(victim_mac.replace(":", ""))
    # spoofed chaddr: REQUEST and RELEASE in the victim's name
    forge(
        world,
        [
            dhcp(world, "request", chaddr=victim_mac, options=(("requested_addr", victim),)),
            dhcp(world, "release", chaddr=victim_mac, src=victim, ciaddr=victim),
        ],
        {"dmpa1": {"access/dhcp.chaddr_mismatch": 2 * COPIES}},
    )
    # relay agent fields an honest client never sets
    forge(
        world,
        [
            dhcp(world, "discover", giaddr=GATEWAY),
            dhcp(world, "discover", options=(("relay_agent_information", b"\x01\x01x"),)),
        ],
        {"dmpa1": {"access/dhcp.giaddr_set": COPIES, "access/dhcp.client_option82": COPIES}},
    )
    # its own chaddr, the victim's address and client-id (option 61): the lease is keyed by
    # the NAI the DMPA puts in option 82, so the DLMAP's server says NAK
    request = dhcp(
        world,
        "request",
        options=(
            ("requested_addr", victim),
            ("client_id", client_id),
            ("server_id", GATEWAY),
        ),
    )
    forge(world, [request], {"dlmap": {"dhcp/tx.nak": COPIES}})
    # RELEASE and DECLINE of the victim's address in its own name: no de-registration, and
    # the DLMAP's server keeps the victim's lease
    release = dhcp(world, "release", src=world.hoa["ms2"], ciaddr=victim)
    decline = dhcp(world, "decline", options=(("requested_addr", victim),))
    grown = forge(
        world,
        [release, decline],
        {
            "dmpa1": {"access/dhcp.release_other_address": COPIES},
            "dlmap": {"dhcp/release.unknown": COPIES, "dhcp/decline.not_ours": COPIES},
        },
    )
    assert grown["dmpa1"]["access/dhcp.release"] == 0
    assert ping(world.lab, "ms", str(CN_ADDRESS), count=1).ok


# --- tunnel side (from the IPv6 transport) -------------------------------------------------


def tunnelled(world: World, kind: str, src6: str, dst6: str, inner: IP) -> bytes:
    dst_mac = world.lm_mac if dst6 == str(DLMAP_ADDRESS) else world.m1_mac
    outer = Ether(src="02:4e:4c:00:00:99", dst=dst_mac) / IPv6(src=src6, dst=dst6, nh=4)
    return bytes(outer / inner / UDP(sport=40000, dport=9) / Raw(marker(kind)))


def test_the_dlmap_drops_tunnel_packets_not_from_the_bound_dmpa(world: World) -> None:
    dlmap, dmpa2 = str(DLMAP_ADDRESS), str(DMPA_ADDRESSES[2])
    victim = world.hoa["ms"]  # bound at DMPA 1

    def up(src: str) -> IP:
        return IP(src=src, dst=str(CN_ADDRESS))

    frames = [
        tunnelled(world, "unknown_dmpa", UNKNOWN_DMPA, dlmap, up(victim)),
        tunnelled(world, "wrong_dmpa", dmpa2, dlmap, up(victim)),
        tunnelled(world, "unbound_inner", dmpa2, dlmap, up(UNBOUND)),
    ]
    expect = {"dlmap": {world.tier("uplink.src_not_bound"): 3 * COPIES}}
    forge(world, frames, expect, via="transport")
    dhcp_from_stranger = bytes(
        Ether(src="02:4e:4c:00:00:99", dst=world.lm_mac)
        / IPv6(src=UNKNOWN_DMPA, dst=dlmap, nh=4)
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=b"\x02\x4e\x4c\x00\x00\x99", xid=1)
        / DHCP(options=[("message-type", "discover"), "end"])
    )
    forge(
        world,
        [dhcp_from_stranger],
        {"dlmap": {"fastpath/uplink.unknown_peer": COPIES}},
        via="transport",
    )


def test_a_dmpa_drops_tunnel_packets_not_from_the_victim_s_dlmap(world: World) -> None:
    dmpa1 = str(DMPA_ADDRESSES[1])
    down = IP(src=str(CN_ADDRESS), dst=world.hoa["ms"])
    frames = [
        tunnelled(world, "from_dmpa2", str(DMPA_ADDRESSES[2]), dmpa1, down),
        tunnelled(world, "from_stranger", UNKNOWN_DMPA, dmpa1, down),
    ]
    forge(
        world,
        frames,
        {"dmpa1": {world.tier("downlink.src_not_bound"): 2 * COPIES}},
        via="transport",
    )
    # a packet for an address nobody holds, from the real DLMAP's address: no binding
    stray = tunnelled(
        world, "no_binding", str(DLMAP_ADDRESS), dmpa1, IP(src=str(CN_ADDRESS), dst=UNBOUND)
    )
    forge(world, [stray], {"dmpa1": {"fastpath/downlink.no_binding": COPIES}}, via="transport")


def test_the_victim_still_has_service(world: World) -> None:
    for ms in ("ms", "ms2", "ms3"):
        result = ping(world.lab, ms, str(CN_ADDRESS), count=3, interval=0.05)
        assert result.received == 3, (ms, result)
    assert IPv4Address(world.hoa["ms"]) != IPv4Address(world.hoa["ms2"])


# --- DHCP relay to a real server -----------------------------------------------------------


def test_a_relayed_server_keying_by_client_id_cannot_hand_out_another_ms_address(
    root: None, tmp_path: Path
) -> None:
    """dnsmasq knows a client by its client-id (option 61), which an MS can copy: the DLMAP's
    relay refuses an ACK that names another NAI's address, so the copier never gets it."""
    require(binary("dnsmasq") is not None, "dnsmasq is not installed (make test installs it)")
    with Lab(mobiles=2) as lab:
        dhcpd = start_dhcp_server(lab, "dnsmasq", tmp_path / "dnsmasq")
        profiles = [MobileProfile(nai(ms), lab.ms_mac(ms), "dhcp") for ms in ("ms", "ms2")]
        domain = Domain(lab, profiles, dhcp="relay", dhcp_servers=(str(CN_ADDRESS),))
        domain.start()
        try:
            victim = str(DhcpClient(lab, "ms").once(tries=10).address)
            wait_until(lambda: domain.binding(nai("ms")) is not None, 10.0, "ms bound")
            attacker = Injector(lab, "ms2", MS_IF)
            b = lab.ms_mac("ms2")
            client_id = b"\x01" + bytes.fromhex(lab.ms_mac("ms").replace(":", ""))
            request = (
                Ether(src=b, dst=BROADCAST)
                / IP(src="0.0.0.0", dst="255.255.255.255")
                / UDP(sport=68, dport=67)
                / BOOTP(chaddr=bytes.fromhex(b.replace(":", "")), xid=0x0BAD)
                / DHCP(
                    options=[
                        ("message-type", "request"),
                        ("requested_addr", victim),
                        ("client_id", client_id),
                        "end",
                    ]
                )
            )
            start = {role: flat(domain.ask(role, "counters")) for role in ("dlmap", "dmpa1")}
            names = ("dhcp/rx.reply", "dhcp/reply.conflicting_ack", "dhcp/tx.nak")
            answered: dict[str, int] = {}

            def server_answered() -> bool:
                attacker.send([bytes(request)])
                now = flat(domain.ask("dlmap", "counters"))
                answered.update({k: now[k] - start["dlmap"][k] for k in names})
                return answered["dhcp/rx.reply"] >= 1

            wait_until(
                server_answered, 15.0, "dnsmasq answering the copied client-id", interval=0.5
            )
            print(f"\nRELAY client-id copy: {answered}")
            # dnsmasq ACKs the victim's address to the copier; the relay drops that ACK
            assert answered["dhcp/reply.conflicting_ack"] >= 1, answered
            end = flat(domain.ask("dmpa1", "counters"))
            assert end["access/dhcp.ack"] == start["dmpa1"]["access/dhcp.ack"]
            assert domain.binding(nai("ms")) is not None
            assert domain.binding(nai("ms"))["hoa"] == victim  # type: ignore[index]
            assert (domain.binding(nai("ms2")) or {}).get("hoa") != victim
            attacker.close()
        finally:
            domain.stop()
            lab.stop(dhcpd.process)
