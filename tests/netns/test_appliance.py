"""The appliance end to end: real ``netlmm run`` processes in a namespace lab.

Never the in-memory cores: every test starts the DLMAP and both DMPAs as processes from ini
files, drives real hosts (busybox udhcpc, ping, TCP) and asks the processes over their control
sockets. Assertions poll until a deadline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from netlmm_lab.configs import STATIC_HOA, MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.faults import configure, restart_run
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import TcpSession, UdpStream, ping, tcp_transfer
from netlmm_lab.topology import CN_ADDRESS, DMPA_ADDRESSES, Lab

pytestmark = pytest.mark.root

GATEWAY = "192.0.2.1"


def nai(ms: str) -> str:
    return f"{ms}@example.org"


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab(mobiles=3) as built:
        yield built


def start(lab: Lab, modes: dict[str, str], **options: object) -> Domain:
    profiles = [
        MobileProfile(nai(ms), lab.ms_mac(ms), mode, str(STATIC_HOA) if mode == "static" else None)
        for ms, mode in modes.items()
    ]
    domain = Domain(lab, profiles, **options)  # type: ignore[arg-type]
    domain.start()
    return domain


def serving(domain: Domain, ms: str, dmpa: int, timeout: float = 15.0) -> dict[str, object]:
    """Wait until the DLMAP's binding for ``ms`` points at DMPA ``dmpa``; return it."""
    found: dict[str, object] = {}

    def check() -> bool:
        binding = domain.binding(nai(ms))
        if binding is not None and binding["dmpa"] == str(DMPA_ADDRESSES[dmpa]):
            found.update(binding)
            return True
        return False

    wait_until(check, timeout, f"{ms} bound at DMPA {dmpa}")
    return found


def ping_ok(lab: Lab, ms: str, dst: str) -> None:
    result = ping(lab, ms, dst, count=3)
    assert result.ok, f"ping {dst} from {ms}: {result}"


def static_host(lab: Lab, ms: str) -> None:
    """An MS configured by hand (seed 4.1: static HoA in the MS and in its AAA profile)."""
    lab.exec(ms, ["ip", "addr", "add", f"{STATIC_HOA}/24", "dev", "ms0"])
    lab.exec(ms, ["ip", "route", "add", "default", "via", GATEWAY])


def forwarded_by(domain: Domain, datapath: str) -> None:
    """The bound MSs' traffic went through ``datapath``'s tier at both ends (``show counters``
    says which tier runs, and that tier counted the forwarding)."""
    for role in ("dlmap", "dmpa1"):
        counters = domain.ask(role, "counters")
        assert counters["datapath"][f"tier.{datapath}"] == 1, counters["datapath"]
        if datapath == "kernel":
            kernel = counters["kernel"]
            assert kernel["uplink.forwarded"] > 0 and kernel["downlink.forwarded"] > 0, kernel
        else:
            assert "kernel" not in counters
            assert counters["fastpath"]["uplink.forwarded"] > 0


# The dialect changes the signaling only: the data-path tiers cross one of them.
@pytest.mark.parametrize(
    ("dialect", "datapath"), [("draft", "kernel"), ("draft", "cython"), ("rfc5844", "kernel")]
)
def test_three_address_modes_at_once(lab: Lab, dialect: str, datapath: str) -> None:
    domain = start(
        lab, {"ms": "dhcp", "ms2": "dlmap", "ms3": "static"}, dialect=dialect, datapath=datapath
    )
    # dhcp: the DLMAP's built-in server answers through the tunnel (seed 5.2), then the PBU.
    dhcp_lease = DhcpClient(lab, "ms").once(tries=10)
    # dlmap: PBU with 0.0.0.0 at attach, the DMPA answers DHCP with the PBA's address (seed 6).
    dlmap_lease = DhcpClient(lab, "ms2").once(tries=10)
    # static: the MS has its address already; its first packets register it.
    static_host(lab, "ms3")
    ping_ok(lab, "ms3", GATEWAY)
    bindings = {ms: serving(domain, ms, 1) for ms in ("ms", "ms2", "ms3")}
    assert bindings["ms"]["hoa"] == str(dhcp_lease.address)
    assert bindings["ms2"]["hoa"] == str(dlmap_lease.address)
    assert bindings["ms3"]["hoa"] == str(STATIC_HOA)
    assert len({b["hoa"] for b in bindings.values()}) == 3
    for ms in ("ms", "ms2", "ms3"):
        ping_ok(lab, ms, GATEWAY)  # answered by the DMPA (seed 5.4)
        ping_ok(lab, ms, str(CN_ADDRESS))
    transfer = tcp_transfer(lab, client_ns="ms2", nbytes=5_000_000, seconds=10.0)
    assert transfer.bytes_acknowledged == 5_000_000
    # The gateway's MAC, as the MS learned it by ARP, is the domain's pseudo-MAC (seed 5.3).
    neighbours = lab.exec("ms", ["ip", "neigh", "show", GATEWAY]).stdout
    assert "02:00:5e:00:00:01" in neighbours
    forwarded_by(domain, datapath)


# TAP/TUN offload changes the Cython tier's I/O only: the kernel tier runs with it on.
@pytest.mark.parametrize(
    ("offload", "datapath"),
    [(False, "cython"), (True, "cython"), (True, "kernel")],
    ids=["plain-cython", "offload-cython", "offload-kernel"],
)
def test_handover_both_ways_keeps_the_address_and_a_tcp_session(
    lab: Lab, offload: bool, datapath: str
) -> None:
    domain = start(lab, {"ms": "dhcp"}, offload=offload, datapath=datapath)
    lease = DhcpClient(lab).once(tries=10)
    serving(domain, "ms", 1)
    session = TcpSession(lab)
    stream = UdpStream(lab, interval=0.005, count=2000)
    session.start()
    stream.start()
    lab.handover(2)
    moved = serving(domain, "ms", 2)
    wait_until(lambda: domain.visitor("dmpa1", nai("ms")) is None, 10.0, "DMPA 1 revoked")
    # Two handovers, each with its own interruption: the stream must flow through DMPA 2
    # before the MS moves back. Without this wait, on a loaded machine the MS could leave DMPA 2
    # before its first echo there, and the longest gap would span both handovers. Each is
    # mostly the MS's own ARP retry: its carrier drop flushes its neighbour cache, the probe it
    # sends while the link is down leaves an INCOMPLETE entry whose request is lost, and Linux
    # asks again after retrans_time (1 s); our attach -> PBA is some 40 ms of that. (No
    # association hook here: with `netlmm attach` from the base station the DMPA's unsolicited
    # ARP reply completes that entry at once; the lab demo hands over that way.)
    lab.wait_ping("ms", str(CN_ADDRESS))
    lab.handover(1)
    back = serving(domain, "ms", 1)
    wait_until(lambda: domain.visitor("dmpa2", nai("ms")) is None, 10.0, "DMPA 2 revoked")
    udp = stream.stop()
    tcp = session.stop()
    assert moved["hoa"] == back["hoa"] == str(lease.address)
    assert tcp.survived, tcp
    assert udp.received > 0 and udp.max_gap_ms < 2000, udp
    transfer = tcp_transfer(lab, nbytes=5_000_000, seconds=10.0)  # TSO super-packets if offload
    assert transfer.bytes_acknowledged == 5_000_000
    counters = domain.ask("dlmap", "counters")
    assert counters["core"]["handover"] == 2
    assert counters["core"]["bra.status.0"] == 2
    forwarded_by(domain, datapath)


def test_the_ms_leaving_deregisters(lab: Lab) -> None:
    domain = start(lab, {"ms": "dhcp"})
    client = DhcpClient(lab, extra_args=("-R",))  # -R: release the lease on exit
    client.start(tries=10)
    client.wait_lease(timeout=30.0)
    serving(domain, "ms", 1)
    # The MS has talked to its gateway (its ARP entry is there): udhcpc's RELEASE on exit must
    # not race its own deconfig script, which removes the address an ARP reply is sent to.
    ping_ok(lab, "ms", GATEWAY)
    client.stop()  # udhcpc sends a DHCP RELEASE as it exits (-R): the MS is leaving
    wait_until(lambda: domain.binding(nai("ms")) is None, 10.0, "the binding removed")
    wait_until(lambda: domain.visitor("dmpa1", nai("ms")) is None, 10.0, "the visitor removed")


@pytest.mark.parametrize("role", ["dlmap", "dmpa1"])
def test_killed_and_restarted_under_traffic_keeps_every_address(
    lab: Lab, role: str, record_property: Any
) -> None:
    """SIGKILL of the DLMAP (or a DMPA) with a UDP stream running, then a restart: every
    binding comes back from the database with the same address, the DMPA sees the restart by
    its heartbeat (RFC 5847) and registers its MSs again, and the stream flows again."""
    modes = {"ms": "dhcp", "ms2": "dlmap", "ms3": "static"}
    profiles = [
        MobileProfile(nai(ms), lab.ms_mac(ms), mode, str(STATIC_HOA) if mode == "static" else None)
        for ms, mode in modes.items()
    ]
    domain = Domain(lab, profiles)
    configure(domain, "dmpa1", "dmpa", heartbeat_interval=1)
    configure(domain, "dlmap", "dlmap", heartbeat_interval=1)
    domain.start()
    DhcpClient(lab, "ms").once(tries=10)
    DhcpClient(lab, "ms2").once(tries=10)
    static_host(lab, "ms3")
    ping_ok(lab, "ms3", GATEWAY)
    before = {ms: serving(domain, ms, 1)["hoa"] for ms in modes}
    wait_until(
        lambda: domain.ask("dmpa1", "counters")["core"].get("heartbeat.response.received", 0) > 0,
        10.0,
        "a heartbeat answered before the kill",
    )
    run = restart_run(lab, domain, role)  # SIGKILL under a UDP stream, restart
    # The peer of the restarted node saw its restart counter change.
    peer = "dmpa1" if role == "dlmap" else "dlmap"
    wait_until(
        lambda: domain.ask(peer, "counters")["core"].get("heartbeat.peer_restarted", 0) >= 1,
        15.0,
        f"{peer} detecting the restart of {role}",
    )
    if role == "dlmap":
        core = domain.ask("dmpa1", "counters")["core"]
        assert core.get("pbu.peer_restarted", 0) == len(modes)  # each MS registered again
    for ms in modes:  # restored from the database, confirmed by the re-registrations
        assert serving(domain, ms, 1)["hoa"] == before[ms]
        wait_until(
            lambda ms=ms: (domain.visitor("dmpa1", nai(ms)) or {}).get("state") == "registered",
            15.0,
            f"{ms} registered again at DMPA 1",
        )
        assert domain.visitor("dmpa1", nai(ms))["hoa"] == before[ms]
    assert run.received > 0 and run.outage_ms > 0, run
    # The figure, not a check (timings are noisy here): restart -> first packet through again.
    record_property("restart_to_first_packet_ms", run.restart_to_first_packet_ms)
    for ms in ("ms", "ms2", "ms3"):
        ping_ok(lab, ms, str(CN_ADDRESS))


def test_tunnel_mtu_rules_where_the_transport_cannot_carry_1500(root: None) -> None:
    """Transport MTU 1500, tunnel MTU 1460 (wire-reference 6.2): a full-size packet with DF
    set is refused with ICMP "fragmentation needed" carrying 1460; without DF it is
    fragmented; TCP adapts (path MTU discovery) and still moves data."""
    with Lab(transport_mtu=1500) as lab:
        domain = start(lab, {"ms": "dhcp"}, tunnel_mtu=1460)
        DhcpClient(lab).once(tries=10)
        serving(domain, "ms", 1)
        # Before the MS knows the path MTU: 1500 bytes without DF, fragmented by the DMPA.
        fragmented = ping(lab, "ms", str(CN_ADDRESS), count=2, size=1472, df=False)
        assert fragmented.ok
        assert domain.ask("dmpa1", "counters")["node"].get("punt.access.fragment", 0) >= 1
        big = ping(lab, "ms", str(CN_ADDRESS), count=2, size=1472, df=True)  # 1500 bytes
        assert not big.ok
        fits = ping(lab, "ms", str(CN_ADDRESS), count=2, size=1432, df=True)  # 1460 bytes
        assert fits.ok
        # The MS learned the tunnel MTU from our ICMP: its route cache says 1460.
        cached = lab.exec("ms", ["ip", "route", "get", str(CN_ADDRESS)]).stdout
        assert "mtu 1460" in cached, cached
        transfer = tcp_transfer(lab, nbytes=2_000_000, seconds=10.0)
        assert transfer.bytes_acknowledged == 2_000_000
        counters = domain.ask("dmpa1", "counters")["node"]
        assert counters.get("punt.access.frag_needed", 0) >= 1


@pytest.mark.parametrize("twin", ["compiled", "reference"])
def test_the_profiles_own_gateway_is_answered_by_the_dmpa(root: None, twin: str) -> None:
    """Issue 15, defect 4: an MS whose profile names a gateway other than the node's (mode
    dlmap: the DMPA's DHCP hands it out as the router) pings it with TTL 1 and TTL 64 and the
    DMPA answers both (no Time Exceeded, nothing tunnelled to a DLMAP that does not own it);
    its ICMP errors come from that gateway too."""
    own = "192.0.2.254"
    with Lab() as lab:
        profile = MobileProfile(nai("ms"), lab.ms_mac("ms"), "dlmap", gateway=own)
        domain = Domain(lab, [profile], fastpath=twin)
        domain.start()
        lease = DhcpClient(lab, "ms").once(tries=10)
        assert str(lease.router) == own
        serving(domain, "ms", 1)
        for ttl in (1, 64):
            result = ping(lab, "ms", own, count=3, ttl=ttl)
            assert result.received == 3, f"ping -t {ttl} {own}: {result}"
        counters = domain.ask("dmpa1", "counters")
        assert counters["node"].get("punt.access.icmp_gateway", 0) >= 6
        assert counters["fastpath"].get("uplink.ttl_expired", 0) == 0
        # A packet that dies at the DMPA is reported by the MS's gateway, the router it knows.
        expired = lab.exec(
            "ms", ["ping", "-n", "-c", "1", "-W", "2", "-t", "1", str(CN_ADDRESS)], check=False
        ).stdout
        assert f"From {own} " in expired and "Time to live exceeded" in expired, expired
        ping_ok(lab, "ms", str(CN_ADDRESS))
