"""The active/standby DLMAP pair under real traffic, for the failover tests (CI's and
``make ha``'s): real MSs with DHCP, pings, a TCP session and a numbered UDP flow; a capture of
every PBA on the transport bridge; the checks every failover must pass."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.faults import Fleet, configure
from netlmm_lab.ha import HADomain, HALab
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import BackgroundPing, TcpSession, UdpStream
from netlmm_lab.topology import BRIDGE, CN_ADDRESS, DLMAP_ADDRESS, DMPA_ADDRESSES
from router.wire.dialect import DRAFT
from router.wire.errors import DecodeError
from router.wire.mh import BindingAck, decode_message
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress

#: The real MSs with a namespace of their own (ping, TCP, UDP), and the DHCP-only ones
#: (macvlan interfaces on ms2's link, each with its own MAC and udhcpc).
NAMESPACE_MSS = ("ms", "ms2")
FLEET = 8
#: The simulated DMPA of the load generator, and its MSs (the lab's pool has 100 addresses).
GENERATOR = IPv6Address("2001:db8:100::21")
LOAD_NAIS = 20


@dataclass
class Traffic:
    udp: UdpStream
    tcp: TcpSession
    pings: list[BackgroundPing]


@dataclass
class Pair:
    lab: HALab
    domain: HADomain
    fleet: Fleet
    leases: dict[str, IPv4Address] = field(default_factory=dict)  # NAI -> address at start
    capture: subprocess.Popen[Any] | None = None
    pcap: Path | None = None

    def nai(self, ms: str) -> str:
        return f"{ms}@example.org"

    def all_leases(self) -> dict[str, IPv4Address]:
        found = {
            self.nai(ms): lease.address
            for ms in NAMESPACE_MSS
            if (lease := DhcpClient(self.lab, ms).lease()) is not None
        }
        for index, address in self.fleet.leases().items():
            found[Fleet.nai(index)] = address
        return found


@contextlib.contextmanager
def pair(lab: HALab) -> Iterator[Pair]:
    """The pair started (lm active), ten real MSs with leases, the PBA capture running."""
    fleet = Fleet(lab, FLEET, ms="ms2")
    profiles = [MobileProfile(f"{ms}@example.org", lab.ms_mac(ms), "dhcp") for ms in NAMESPACE_MSS]
    profiles += fleet.profiles("dhcp")
    domain = HADomain(lab, profiles, extra_peers=(str(GENERATOR),))
    for role in ("dmpa1", "dmpa2"):
        configure(domain, role, "dmpa", heartbeat_interval=1)
    for role in ("dlmap", "dlmap_b"):
        configure(domain, role, "dlmap", heartbeat_interval=1)
    made = Pair(lab, domain, fleet)
    try:
        made.pcap = lab.workdir / "mh.pcap"
        made.capture = lab.popen(
            "tr", ["tshark", "-q", "-n", "-i", "br0", "-f", "ip6 proto 135", "-w", str(made.pcap)]
        )
        lab.exec("tr", ["sysctl", "-q", "-w", f"net.ipv6.conf.{BRIDGE}.disable_ipv6=0"])
        lab.exec("tr", ["ip", "addr", "add", f"{GENERATOR}/64", "dev", BRIDGE, "nodad"])
        domain.start()
        for ms in NAMESPACE_MSS:
            DhcpClient(lab, ms).once(tries=10)
        fleet.create()
        fleet.start_dhcp()
        wait_until(lambda: len(fleet.leases()) == FLEET, 60.0, "the fleet's leases")
        made.leases = made.all_leases()
        for ms in NAMESPACE_MSS:
            lab.wait_ping(ms, str(CN_ADDRESS), 15.0)
        yield made
    finally:
        with contextlib.suppress(Exception):
            fleet.stop_dhcp()
        if made.capture is not None:
            lab.stop(made.capture)
        domain.close()


def start_traffic(p: Pair) -> Traffic:
    udp = UdpStream(p.lab, client_ns="ms", interval=0.01, count=6000)
    udp.start()
    tcp = TcpSession(p.lab, client_ns="ms", interval=0.05, max_seconds=60)
    tcp.start()
    pings = [
        BackgroundPing(p.lab, ms, str(CN_ADDRESS), interval=0.01, seconds=60)
        for ms in NAMESPACE_MSS
    ]
    return Traffic(udp, tcp, pings)


def start_load(p: Pair, seconds: float) -> subprocess.Popen[Any]:
    """Simulated MSs registering and refreshing through the failover: netlmm_lab.regload as an
    unsigned DMPA (``GENERATOR``), a few PBUs in flight, for ``seconds``."""
    argv = [sys.executable, "-m", "netlmm_lab.regload", "--src", str(GENERATOR)]
    argv += ["--dst", str(DLMAP_ADDRESS), "--nais", str(LOAD_NAIS), "--window", "2"]
    argv += ["--seconds", str(seconds), "--timeout", "0.3"]
    return p.lab.popen("tr", argv)


def load_result(p: Pair, proc: subprocess.Popen[Any], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    p.lab.forget(proc)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def wait_active(p: Pair, role: str, timeout: float = 30.0) -> float:
    """Seconds until ``role`` says it is the active one."""
    began = time.monotonic()

    def is_active() -> bool:
        try:
            return bool(p.domain.ha(role).get("role") == "active")
        except Exception:
            return False

    wait_until(is_active, timeout, f"{role} active", interval=0.01)
    return time.monotonic() - began


def accepted_pbas(pcap: Path) -> list[tuple[str, str, str, float]]:
    """(NAI, HoA, sender's MAC, time) of every PBA with status 0 in the capture (decoded with
    our codec: tshark does not know the seed's options). Both DLMAPs send from the one
    DLMAP address: the Ethernet source tells lm from lb."""
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapReader

    found: list[tuple[str, str, str, float]] = []
    with PcapReader(str(pcap)) as reader:
        for packet in reader:
            if IPv6 not in packet:
                continue
            ip6 = packet[IPv6]
            if ip6.nh != 135:
                continue
            try:
                message = decode_message(bytes(ip6.payload), DRAFT)
            except DecodeError:
                continue
            if not isinstance(message, BindingAck) or message.status != 0:
                continue
            nai = hoa = None
            for option in message.options:
                if isinstance(option, MobileNodeIdentifier):
                    nai = option.identifier.decode("utf-8", "replace")
                elif isinstance(option, SeedIPv4HomeAddress):
                    hoa = str(option.address)
            if nai is not None and hoa is not None and message.lifetime > 0:
                src = str(packet[Ether].src) if Ether in packet else ""
                found.append((nai, hoa, src, float(packet.time)))
    return found


def database_addresses(p: Pair) -> dict[str, str]:
    rows = p.domain.sql("SELECT nai || ' ' || host(hoa) FROM netlmm_address")
    return dict(line.split(" ", 1) for line in rows.splitlines() if line.strip())


def check_one_address_per_ms(p: Pair, pbas: list[tuple[str, str, str, float]]) -> None:
    """No address held by two NAIs, no NAI by two addresses: in the database (SQL) and in
    what the DLMAPs accepted (the capture); every accepted (NAI, HoA) is in the database."""
    two_nais = p.domain.sql(
        "SELECT host(hoa) FROM netlmm_address GROUP BY hoa HAVING count(DISTINCT nai) > 1"
    )
    two_addresses = p.domain.sql(
        "SELECT nai FROM netlmm_address GROUP BY nai HAVING count(DISTINCT hoa) > 1"
    )
    assert two_nais.strip() == "" and two_addresses.strip() == ""
    by_hoa: dict[str, set[str]] = defaultdict(set)
    by_nai: dict[str, set[str]] = defaultdict(set)
    for nai, hoa, _, _ in pbas:
        by_hoa[hoa].add(nai)
        by_nai[nai].add(hoa)
    assert {h: n for h, n in by_hoa.items() if len(n) > 1} == {}
    assert {n: h for n, h in by_nai.items() if len(h) > 1} == {}
    stored = database_addresses(p)
    missing = {(nai, hoa) for nai, hoa, _, _ in pbas if stored.get(nai) != hoa}
    assert missing == set(), f"accepted but not in the database: {sorted(missing)[:10]}"


def check_no_restart_seen(p: Pair) -> None:
    """The DMPAs kept heartbeating the DLMAP's address across the failover and never saw its
    restart counter change."""
    for role in ("dmpa1", "dmpa2"):
        core = p.domain.ask(role, "counters")["core"]
        assert core.get("heartbeat.peer_restarted", 0) == 0, core
        assert core.get("pbu.peer_restarted", 0) == 0, core


def heartbeats_answered(p: Pair, role: str) -> int:
    return int(p.domain.ask(role, "counters")["core"].get("heartbeat.response.received", 0))


def binding_dmpa(p: Pair, role: str, nai: str) -> str | None:
    """The DMPA a DLMAP (``role``) has ``nai`` bound at, if any."""
    try:
        rows = p.domain.ask(role, "bindings")
    except Exception:
        return None
    return next((str(r["dmpa"]) for r in rows if r["nai"] == nai), None)


DMPAS = tuple(str(a) for a in DMPA_ADDRESSES.values())


def mac_of(p: Pair, short: str) -> str:
    """The Ethernet address of DLMAP host ``short``'s transport link."""
    links = json.loads(p.lab.ip(short, "-j", "link", "show", "dev", "tr0"))
    return str(links[0]["address"])


def claimed_at(p: Pair) -> float:
    """When the identity was last claimed (the database's clock: this host's)."""
    return float(p.domain.sql("SELECT extract(epoch FROM claimed_at) FROM netlmm_identity"))


def stop_capture(p: Pair) -> list[tuple[str, str, str, float]]:
    """End the capture cleanly (SIGINT: tshark writes what it still holds, after a moment for
    the last packets to reach it) and decode its accepted PBAs."""
    if p.capture is not None:
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            p.capture.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.capture.wait(timeout=10)
        p.lab.stop(p.capture)
        p.capture = None
    assert p.pcap is not None
    return accepted_pbas(p.pcap)
