"""The appliance end to end: real ``netlmm run`` processes in a namespace lab (issue 6).

Never the in-memory cores: every test starts the DLMAP and both DMPAs as processes from ini
files, drives real hosts (busybox udhcpc, ping, TCP) and asks the processes over their control
sockets. Assertions poll until a deadline.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from router.lab.configs import STATIC_HOA, MobileProfile
from router.lab.domain import Domain
from router.lab.tools import TcpSession, UdpStream, ping, tcp_transfer
from router.lab.topology import CN_ADDRESS, DMPA_ADDRESSES, DhcpClient, Lab, wait_until

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


@pytest.mark.parametrize("dialect", ["draft", "rfc5844"])
def test_three_address_modes_at_once(lab: Lab, dialect: str) -> None:
    domain = start(lab, {"ms": "dhcp", "ms2": "dlmap", "ms3": "static"}, dialect=dialect)
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


@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_handover_both_ways_keeps_the_address_and_a_tcp_session(lab: Lab, offload: bool) -> None:
    domain = start(lab, {"ms": "dhcp"}, offload=offload)
    lease = DhcpClient(lab).once(tries=10)
    serving(domain, "ms", 1)
    session = TcpSession(lab)
    stream = UdpStream(lab, interval=0.005, count=2000)
    session.start()
    stream.start()
    lab.handover(2)
    moved = serving(domain, "ms", 2)
    wait_until(lambda: domain.visitor("dmpa1", nai("ms")) is None, 10.0, "DMPA 1 revoked")
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


def test_the_ms_leaving_deregisters(lab: Lab) -> None:
    domain = start(lab, {"ms": "dhcp"})
    client = DhcpClient(lab, extra_args=("-R",))  # -R: release the lease on exit
    client.start(tries=10)
    client.wait_lease(timeout=30.0)
    serving(domain, "ms", 1)
    client.stop()  # udhcpc sends a DHCP RELEASE as it exits (-R): the MS is leaving
    wait_until(lambda: domain.binding(nai("ms")) is None, 10.0, "the binding removed")
    wait_until(lambda: domain.visitor("dmpa1", nai("ms")) is None, 10.0, "the visitor removed")


def test_dlmap_killed_and_restarted_keeps_the_address(lab: Lab) -> None:
    domain = start(lab, {"ms": "dhcp"})
    lease = DhcpClient(lab).once(tries=10)
    serving(domain, "ms", 1)
    ping_ok(lab, "ms", str(CN_ADDRESS))
    domain.stop_one("dlmap", signal.SIGKILL)
    result = ping(lab, "ms", str(CN_ADDRESS), count=1)
    assert not result.ok  # the anchor is down: no traffic
    domain.start_one("dlmap")
    domain.wait_ready("dlmap")
    binding = serving(domain, "ms", 1)  # restored from its database
    assert binding["hoa"] == str(lease.address)
    wait_until(lambda: ping(lab, "ms", str(CN_ADDRESS), count=1).ok, 15.0, "traffic resumed")


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
