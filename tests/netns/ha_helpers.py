"""The active/standby DLMAP pair under real traffic, for the failover tests (CI's and
``make ha``'s): ten real MSs (each its own namespace: its DHCP lease, a ping every 10 ms, a TCP
session and a numbered UDP flow to the CN); a generator of simulated MSs registering and
handing over between two simulated DMPAs; a capture of every PBA on the transport bridge; the
checks every failover must pass and the figures it reports."""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient, Lease
from netlmm_lab.faults import configure
from netlmm_lab.ha import DB_NAME, HADomain, HALab
from netlmm_lab.msflow import MSFlowResult, MSFlows
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import BackgroundPing, PingResult, capture_open
from netlmm_lab.topology import BRIDGE, CN_ADDRESS, DLMAP_ADDRESS, DMPA_ADDRESSES
from router.wire.dialect import DRAFT
from router.wire.errors import DecodeError
from router.wire.mh import BindingAck, BindingUpdate, decode_message
from router.wire.mh_options import MobileNodeIdentifier, SeedIPv4HomeAddress

#: The real MSs: ms, ms2 ... ms10, each a namespace of its own on base station 1 (DMPA 1).
REAL_MSS = 10
#: The generator's two simulated DMPAs (its MSs hand over between them), and its MSs by
#: default (the lab's pool has 100 addresses: the 10 real MSs and each variant's simulated
#: ones, 20 by default, 40 in the namespace cut).
GENERATOR = IPv6Address("2001:db8:100::21")
GENERATOR2 = IPv6Address("2001:db8:100::22")
LOAD_NAIS = 20
#: A failover that did not happen shows as a gap of the whole stream; the goal is under 2 s.
GENEROUS_GAP_MS = 15_000
#: A UDP gap this long (ten probes) is an interruption, not scheduling noise.
INTERRUPTED_MS = 100.0


@dataclass
class Traffic:
    flows: MSFlows
    pings: dict[str, BackgroundPing]


@dataclass
class TrafficResult:
    flows: list[MSFlowResult]
    pings: dict[str, PingResult]
    server: dict[str, Any]  # the CN's msflow server: UDP echoed, TCP sessions accepted, closed


@dataclass
class Pair:
    lab: HALab
    domain: HADomain
    leases: dict[str, IPv4Address] = field(default_factory=dict)  # NAI -> address at start
    capture: subprocess.Popen[Any] | None = None
    pcap: Path | None = None

    @staticmethod
    def nai(ms: str) -> str:
        return f"{ms}@example.org"

    @property
    def mss(self) -> list[str]:
        return list(self.lab.mobiles)

    def all_leases(self) -> dict[str, IPv4Address]:
        """The lease each MS's DHCP client last reported (NAI -> address)."""
        return {
            self.nai(ms): lease.address
            for ms in self.mss
            if (lease := DhcpClient(self.lab, ms).lease()) is not None
        }

    def dhcp_all(self) -> dict[str, Lease]:
        """A DHCP exchange (discover to ack) of every MS at once; NAI -> the lease."""
        with ThreadPoolExecutor(max_workers=len(self.mss)) as pool:
            leases = pool.map(lambda ms: DhcpClient(self.lab, ms).once(tries=10), self.mss)
            return {self.nai(ms): lease for ms, lease in zip(self.mss, leases, strict=True)}


def ha_lab() -> HALab:
    return HALab(mobiles=REAL_MSS)


@contextlib.contextmanager
def pair(lab: HALab) -> Iterator[Pair]:
    """The pair started (lm active), the ten real MSs with leases, the PBA capture running."""
    profiles = [MobileProfile(f"{ms}@example.org", lab.ms_mac(ms), "dhcp") for ms in lab.mobiles]
    domain = HADomain(lab, profiles, extra_peers=(str(GENERATOR), str(GENERATOR2)))
    for role in ("dmpa1", "dmpa2"):
        configure(domain, role, "dmpa", heartbeat_interval=1)
    for role in ("dlmap", "dlmap_b"):
        configure(domain, role, "dlmap", heartbeat_interval=1)
    made = Pair(lab, domain)
    try:
        made.pcap, errors = lab.workdir / "mh.pcap", lab.workdir / "mh.err"
        with errors.open("w") as err:
            made.capture = lab.popen(
                "tr",
                ["tshark", "-q", "-n", "-i", "br0", "-f", "ip6 proto 135", "-w", str(made.pcap)],
                stderr=err.fileno(),
            )
        wait_until(lambda: capture_open(errors), 15.0, "the PBA capture open")  # before any PBA
        lab.exec("tr", ["sysctl", "-q", "-w", f"net.ipv6.conf.{BRIDGE}.disable_ipv6=0"])
        for address in (GENERATOR, GENERATOR2):
            lab.exec("tr", ["ip", "addr", "add", f"{address}/64", "dev", BRIDGE, "nodad"])
        domain.start()
        watch_claims(made)
        made.leases = {nai: lease.address for nai, lease in made.dhcp_all().items()}
        for ms in made.mss:
            lab.wait_ping(ms, str(CN_ADDRESS), 15.0)
        yield made
    finally:
        if made.capture is not None:
            lab.stop(made.capture)
        domain.close()


def start_traffic(p: Pair, seconds: float = 90.0) -> Traffic:
    """Every real MS: its TCP session and numbered UDP flow (one process each, one server in
    the CN), and a ping every 10 ms."""
    flows = MSFlows(p.lab, p.mss, seconds=seconds, interval=0.01)
    try:
        flows.start()
    except BaseException:
        flows.close()
        raise
    pings = {
        ms: BackgroundPing(p.lab, ms, str(CN_ADDRESS), interval=0.01, seconds=seconds)
        for ms in p.mss
    }
    return Traffic(flows, pings)


def stop_traffic(traffic: Traffic) -> TrafficResult:
    try:
        flows = traffic.flows.stop()
    finally:
        traffic.flows.close()  # what a failed stop left running, by PID (nothing otherwise)
        pings = {ms: ping.stop() for ms, ping in traffic.pings.items()}
    return TrafficResult(flows, pings, traffic.flows.server)


def start_load(
    p: Pair, seconds: float, *, window: int = 2, nais: int = LOAD_NAIS
) -> subprocess.Popen[Any]:
    """Simulated MSs registering, refreshing and handing over (between ``GENERATOR`` and
    ``GENERATOR2``) through the failover: netlmm_lab.regload, a few PBUs in flight, every
    accepted pair recorded, a heartbeat every 0.5 s from each of its DMPAs."""
    argv = [sys.executable, "-m", "netlmm_lab.regload", "--src", str(GENERATOR)]
    argv += ["--src2", str(GENERATOR2), "--dst", str(DLMAP_ADDRESS)]
    argv += ["--nais", str(nais), "--window", str(window), "--seconds", str(seconds)]
    argv += ["--timeout", "0.3", "--record", "--heartbeat", "0.5"]
    return p.lab.popen("tr", argv)


def load_result(p: Pair, proc: subprocess.Popen[Any], timeout: float) -> dict[str, Any]:
    out, err = proc.communicate(timeout=timeout)
    p.lab.forget(proc)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def wait_active(p: Pair, role: str, timeout: float = 30.0, since: float | None = None) -> float:
    """Seconds until ``role`` says it is the active one, from ``since`` (``time.monotonic()``:
    the fault) or from now."""
    began = time.monotonic() if since is None else since

    def is_active() -> bool:
        try:
            return bool(p.domain.ha(role).get("role") == "active")
        except Exception:
            return False

    wait_until(is_active, timeout, f"{role} active", interval=0.01)
    return time.monotonic() - began


@dataclass(frozen=True, slots=True)
class Captured:
    """One PBU or PBA on the transport bridge."""

    kind: str  # "pbu" or "pba"
    status: int  # a PBA's (0 for a PBU)
    nai: str | None
    hoa: str | None
    src_mac: str
    dst_mac: str
    time: float
    lifetime: int
    src: str  # IPv6
    dst: str
    sequence: int


def captured(pcap: Path) -> list[Captured]:
    """Every PBU and PBA in the capture (decoded with our codec: tshark does not know the
    seed's options). Both DLMAPs send from the one DLMAP address: the Ethernet addresses tell
    lm from lb."""
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapReader

    found: list[Captured] = []
    with PcapReader(str(pcap)) as reader:
        for packet in reader:
            if IPv6 not in packet or Ether not in packet:
                continue
            ip6 = packet[IPv6]
            if ip6.nh != 135:
                continue
            try:
                message = decode_message(bytes(ip6.payload), DRAFT)
            except DecodeError:
                continue
            if isinstance(message, BindingAck):
                kind, status = "pba", int(message.status)
            elif isinstance(message, BindingUpdate):
                kind, status = "pbu", 0
            else:
                continue
            nai_option = message.find(MobileNodeIdentifier)
            seed = message.find(SeedIPv4HomeAddress)
            found.append(
                Captured(
                    kind,
                    status,
                    None
                    if nai_option is None
                    else nai_option.identifier.decode("utf-8", "replace"),
                    None if seed is None else str(seed.address),
                    str(packet[Ether].src),
                    str(packet[Ether].dst),
                    float(packet.time),
                    int(message.lifetime),
                    str(ip6.src),
                    str(ip6.dst),
                    int(message.sequence),
                )
            )
    return found


def accepted_pbas(records: list[Captured]) -> list[tuple[str, str, str, float]]:
    """(NAI, HoA, sender's MAC, time) of every PBA with status 0 that gave an address."""
    return [
        (r.nai, r.hoa, r.src_mac, r.time)
        for r in records
        if r.kind == "pba" and r.status == 0 and r.nai and r.hoa and r.lifetime > 0
    ]


def handover_timeline(
    records: list[Captured], began: float, nai: str = "ms@example.org"
) -> dict[str, list[Any]]:
    """The PBUs and PBAs of ``nai`` (the real MS that hands over during the fault) from the
    fault on, in seconds after it: where its gap goes (PBU retransmissions, the PBA)."""
    mine = [r for r in records if r.nai == nai and r.time >= began]
    return {
        "pbus_s": [[round(r.time - began, 3), r.src, r.sequence] for r in mine if r.kind == "pbu"],
        "pbas_s": [[round(r.time - began, 3), r.status] for r in mine if r.kind == "pba"],
    }


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
    """When the identity's last claim began (``now()``: its transaction's start; the database's
    clock is this host's)."""
    return float(p.domain.sql("SELECT extract(epoch FROM claimed_at) FROM netlmm_identity"))


def open_writes(p: Pair, client: IPv6Address) -> tuple[int, int]:
    """Sessions from ``client`` on the database now, and how many have a transaction open."""
    rows = p.domain.sql(
        "SELECT count(*) || ' ' || count(xact_start) FROM pg_stat_activity "
        f"WHERE client_addr = '{client}' AND pid <> pg_backend_pid()"
    )
    sessions, open_ = rows.split()
    return int(sessions), int(open_)


#: A trigger of the lab's (not of netlmm's schema) that notes when each claim's update of the
#: identity row ran: just after the claim got the row's lock, so every write of the old holder
#: that starts from then on waits for the claim and fails.
WATCH_CLAIMS = """
CREATE TABLE lab_claims (epoch bigint, holder text, at timestamptz);
CREATE FUNCTION lab_claim_seen() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  IF NEW.epoch <> OLD.epoch THEN
    INSERT INTO lab_claims VALUES (NEW.epoch, NEW.holder, clock_timestamp());
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER lab_claim_seen BEFORE UPDATE ON netlmm_identity
  FOR EACH ROW EXECUTE FUNCTION lab_claim_seen();
"""


def watch_claims(p: Pair) -> None:
    assert p.domain.db is not None
    p.domain.db.psql(WATCH_CLAIMS, DB_NAME)


def claim_locked_at(p: Pair) -> float:
    """When the last claim's update of the identity row ran (wall clock, this host's)."""
    rows = p.domain.sql("SELECT extract(epoch FROM at) FROM lab_claims ORDER BY epoch DESC LIMIT 1")
    return float(rows)


def stop_capture(p: Pair) -> list[Captured]:
    """End the capture cleanly (SIGINT: tshark writes what it still holds, after a moment for
    the last packets to reach it) and decode its PBUs and PBAs."""
    if p.capture is not None:
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            p.capture.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.capture.wait(timeout=10)
        p.lab.stop(p.capture)
        p.capture = None
    assert p.pcap is not None
    return captured(p.pcap)


# --- the proof every variant gives -----------------------------------------------------------


def first_after(times: list[float], began: float) -> float | None:
    later = [t for t in times if t >= began]
    return round(min(later) - began, 3) if later else None


def figures(
    p: Pair,
    traffic: TrafficResult,
    pbas: list[tuple[str, str, str, float]],
    began: float,
    generated: dict[str, Any] | None,
    answering: str,
) -> dict[str, Any]:
    """What a variant reports: the UDP gap per MS (max, median and each), the time from the
    fault (``began``, wall clock) to the first accepted PBA from ``answering`` (the DLMAP host
    that answers after it) and to the first MS packet delivered (the end of the MSs' longest
    UDP gaps), the pings, the TCP sessions and the generator's figures."""
    gaps = {r.ms: r.max_gap_ms for r in traffic.flows}
    # The MSs whose flow the fault interrupted (a longest gap of 100 ms or more, ending after
    # the fault): when the gap began (traffic can go on for a while after a fault: the kernel
    # path, the old VIP holder) and when each got its first packet back.
    cut = [
        r
        for r in traffic.flows
        if r.gap_from is not None
        and r.gap_to is not None
        and r.gap_to >= began
        and r.max_gap_ms >= INTERRUPTED_MS
    ]
    ends = [r.gap_to for r in cut if r.gap_to is not None]
    starts = [round(r.gap_from - began, 3) for r in cut if r.gap_from is not None]
    mac = mac_of(p, answering)
    result: dict[str, Any] = {
        "udp_gap_ms_max": max(gaps.values()),
        "udp_gap_ms_median": round(statistics.median(gaps.values()), 1),
        "udp_gap_ms": gaps,
        "udp_lost": {r.ms: r.udp["lost"] for r in traffic.flows},
        "fault_to_first_pba_s": first_after([t for _, _, m, t in pbas if m == mac], began),
        "mss_interrupted": len(cut),
        "fault_to_gap_start_s": {"min": min(starts), "max": max(starts)} if starts else None,
        "fault_to_first_ms_packet_s": first_after(ends, began),
        "fault_to_last_ms_packet_s": round(max(ends) - began, 3) if ends else None,
        "tcp_survived": sum(r.tcp_survived for r in traffic.flows),
        "tcp_max_rtt_ms": max(float(r.tcp["max_rtt_ms"]) for r in traffic.flows),
        "ping_loss_pct": {ms: r.loss_pct for ms, r in traffic.pings.items()},
        "ping_sent": {ms: r.transmitted for ms, r in traffic.pings.items()},
        "pbas_accepted_in_capture": len(pbas),
        "cn_server": traffic.server,
    }
    if generated is not None:
        keep = ("sent", "answered", "accepted", "refused", "timeouts", "late", "handovers",
                "handovers_sent", "bris", "bras_sent", "pbas_per_s", "p50_us", "p99_us", "max_us",
                "longest_silence_s", "heartbeats_answered", "heartbeat_requests_answered",
                "restart_counters")  # fmt: skip
        result["generator"] = {k: generated.get(k) for k in keep}
        # the generator's longest silence is the fault's if a PBA ended it (not the run's end)
        # after the fault (it can begin a little after it: PBAs in flight, the old active still
        # answering); one that ended before the fault gives no figure (not a negative one)
        to_pba = round(generated["silence_to"] - began, 3)
        ended = generated.get("silence_ended_by_pba", True)
        result["generator"]["fault_to_first_pba_s"] = to_pba if ended and to_pba >= 0 else None
    return result


def check_traffic(p: Pair, traffic: TrafficResult, shown: dict[str, Any]) -> None:
    """Every real MS: its TCP session survived, its UDP flow came back (its longest gap between
    echoes and its longest run of lost probes below the generous bound), and it kept its
    address (a fresh DHCP exchange through whichever DLMAP is active now gives each the address
    it had)."""
    assert len(traffic.flows) == REAL_MSS, shown
    for flow in traffic.flows:
        assert flow.tcp_survived, (flow.ms, flow.tcp, shown)
        assert flow.max_gap_ms < GENEROUS_GAP_MS, (flow.ms, flow.udp, shown)
        # the gap between echoes that came back misses a flow that never came back after the
        # fault: the longest run of probes lost, in time, catches it
        lost_ms = flow.udp["longest_loss_run"] * flow.udp["interval_ms"]
        assert lost_ms < GENEROUS_GAP_MS, (flow.ms, flow.udp, shown)
        assert flow.udp["received"] > 0, (flow.ms, flow.udp)
    # the CN's side: one TCP session per MS, each closed cleanly by its MS, none in error
    server = traffic.server
    assert server["tcp_accepted"] == server["tcp_closed"] == REAL_MSS, (server, shown)
    assert server["tcp_errors"] == 0, (server, shown)
    assert p.all_leases() == p.leases
    again = {nai: lease.address for nai, lease in p.dhcp_all().items()}
    assert again == p.leases, "an MS was given another address after the failover"


def check_generator(p: Pair, generated: dict[str, Any]) -> None:
    """The simulated MSs: some accepted (also after the fault: the generator's longest silence
    is bounded), no NAI given two addresses nor an address two NAIs, every accepted pair in
    the database, handovers accepted (an MS's PBA from the other DMPA than its last one),
    one Restart Counter in every heartbeat answer, and the DLMAP's heartbeat requests answered."""
    assert generated["accepted"] > 0 and generated["handovers"] > 0, generated
    assert generated["longest_silence_s"] < GENEROUS_GAP_MS / 1000, generated
    assert generated["nais_with_two_addresses"] == [], generated
    assert generated["addresses_with_two_nais"] == [], generated
    stored = database_addresses(p)
    missing = [(n, a) for n, a in generated["accepted_pairs"] if stored.get(n) != a]
    assert missing == [], f"accepted but not in the database: {missing[:10]}"
    assert len(generated["restart_counters"]) == 1, generated  # the DLMAP never looked restarted
    assert generated["heartbeat_requests_answered"] > 0, generated  # the DLMAP's, answered


def check_all(
    p: Pair,
    traffic: TrafficResult,
    pbas: list[tuple[str, str, str, float]],
    generated: dict[str, Any] | None,
    shown: dict[str, Any],
) -> None:
    check_traffic(p, traffic, shown)
    check_one_address_per_ms(p, pbas)
    assert {nai: str(a) for nai, a in p.leases.items()}.items() <= database_addresses(p).items()
    check_no_restart_seen(p)
    if generated is not None:
        check_generator(p, generated)
