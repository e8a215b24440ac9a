"""Data-path throughput side by side: kernel forwarding, a tayga pair, the appliance.

The topology is ``h1 -- A -- B -- h2`` in network namespaces, IPv4-only hosts at both ends,
documentation prefixes only, MTU 1500 on the host sides and 1600 between A and B. Three
variants of A and B (four: the appliance in each data-path tier), built, measured, torn down:

- ``kernel``: A and B are plain IPv4 routers (kernel forwarding over veth): the limit.
- ``tayga``: one tayga process in A translates h1's IPv4 into IPv6 (static map for h1, a
  network-specific NAT64 prefix for h2), a second one in B translates back; each uses its TUN
  device packet by packet. The C reference.
- ``appliance``: the real appliance from :class:`netlmm_lab.topology.Lab` and
  :class:`netlmm_lab.domain.Domain`: h1 is the MS (address by DHCP, busybox udhcpc), A is
  DMPA 1, B is the DLMAP, h2 is the CN. (The lab also has base-station and transport bridges
  on the way, and a second DMPA standing by.) ``appliance`` runs ``[node] datapath = cython``,
  ``appliance-kernel`` the kernel tier (docs/kernel-tier.md).

Per variant, ``runs`` times each: iperf3 TCP with 1 and 4 streams in both directions (h1 -> h2,
and h2 -> h1 with ``-R``), a search for the highest rate of 64-byte UDP datagrams (iperf3
``-l 64``) delivered with under 1 % loss, and ping RTT. iperf3's server runs in h2 with ``-1``
(one test, then it exits); every command is bounded in time, every process is ended by PID and
every namespace deleted when a variant is done, on error and Ctrl-C too (the ``Lab`` machinery).

``netlmm lab bench`` / ``make bench-lab`` run :func:`main`: one table with medians, ranges and
each appliance variant's ratios over tayga and kernel, and the same as JSON under
``bench/results/``.
``bench/lab/`` runs a subset as pytest-benchmark tests on the same :func:`testbed`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import Any

from netlmm_lab import dualstack
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import parse_ping
from netlmm_lab.topology import (
    ACCESS_MTU,
    CN_ADDRESS,
    TRANSPORT_MTU,
    Lab,
)

VARIANTS = ("kernel", "tayga", "appliance", "appliance-kernel")
#: The appliance variants: their ``[node] datapath`` (the Cython tier alone, the kernel tier).
APPLIANCES = {"appliance": "cython", "appliance-kernel": "kernel"}
NAI = "ms@example.org"

# --- the h1 -- A -- B -- h2 chain (kernel and tayga variants) --------------------------------

H1_ADDRESS = IPv4Address("192.0.2.2")  # h1, IPv4-only (the MS's side)
A_HOST_ADDRESS = IPv4Address("192.0.2.1")  # A towards h1
H2_ADDRESS = CN_ADDRESS  # 198.51.100.2: h2, IPv4-only (the CN's side), as in the lab
B_HOST_ADDRESS = IPv4Address("198.51.100.1")  # B towards h2
A_LINK4 = IPv4Address("203.0.113.1")  # kernel variant: A -- B over IPv4
B_LINK4 = IPv4Address("203.0.113.2")
A_LINK6 = IPv6Address("2001:db8:100::1")  # tayga variant: A -- B over IPv6
B_LINK6 = IPv6Address("2001:db8:100::2")
NAT64_PREFIX = IPv6Network("2001:db8:64::/96")  # IPv4 hosts seen from the IPv6 side
H1_MAPPED = IPv6Address("2001:db8:101::2")  # tayga's static map for h1
TAYGA_IF = "nat64"
TAYGA_ADDRESSES = {"a": IPv4Address("192.0.2.254"), "b": IPv4Address("198.51.100.254")}
HOST_IF = "h0"  # h1 and h2
DOWN_IF = "dn0"  # A towards h1, B towards h2
LINK_IF = "ab0"  # A -- B

IPERF_PORT = 5201
LOSS_LIMIT_PCT = 1.0
UDP_PAYLOAD = 64
#: IPv4 packet sizes of the per-size TCP sweep (MSS = size - 40; Linux's smallest MSS is 88).
SWEEP_SIZES = (128, 256, 512, 1024, 1500)


class Chain(Lab):
    """``h1 -- A -- B -- h2`` with A and B as kernel routers or a tayga pair.

    Built on :class:`Lab` for its naming (``nl<pid>.<n>-h1``: a crashed run's leftovers are
    swept like the lab's), its process tracking and its teardown on close, error and signal.
    """

    def __init__(self, variant: str) -> None:
        if variant not in ("kernel", "tayga"):
            raise ValueError(f"a chain is kernel or tayga, not {variant!r}")
        super().__init__(transport_mtu=TRANSPORT_MTU)
        self.variant = variant
        self.mobiles = []

    def build(self) -> None:
        for short in ("h1", "a", "b", "h2"):
            self.add_namespace(short)
        for short in ("h1", "h2"):
            self.sysctl(
                short, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"
            )
        for short in ("a", "b"):
            self.sysctl(
                short,
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            )
        self.veth("h1", HOST_IF, "a", DOWN_IF, ACCESS_MTU)
        self.veth("h2", HOST_IF, "b", DOWN_IF, ACCESS_MTU)
        self.veth("a", LINK_IF, "b", LINK_IF, self.transport_mtu)
        self.addr("h1", f"{H1_ADDRESS}/24", HOST_IF)
        self.addr("a", f"{A_HOST_ADDRESS}/24", DOWN_IF)
        self.addr("h2", f"{H2_ADDRESS}/24", HOST_IF)
        self.addr("b", f"{B_HOST_ADDRESS}/24", DOWN_IF)
        self.ip("h1", "route", "add", "default", "via", str(A_HOST_ADDRESS))
        self.ip("h2", "route", "add", "default", "via", str(B_HOST_ADDRESS))
        if self.variant == "kernel":
            self.addr("a", f"{A_LINK4}/24", LINK_IF)
            self.addr("b", f"{B_LINK4}/24", LINK_IF)
            self.ip("a", "route", "add", "198.51.100.0/24", "via", str(B_LINK4))
            self.ip("b", "route", "add", "192.0.2.0/24", "via", str(A_LINK4))
        else:
            self.addr("a", f"{A_LINK6}/64", LINK_IF, "nodad")
            self.addr("b", f"{B_LINK6}/64", LINK_IF, "nodad")
            h1_net = f"{H1_MAPPED}/128"
            self.ip("a", "-6", "route", "add", str(NAT64_PREFIX), "via", str(B_LINK6))
            self.ip("b", "-6", "route", "add", h1_net, "via", str(A_LINK6))
            self._tayga("a", routes4=["198.51.100.0/24"], routes6=[h1_net])
            self._tayga("b", routes4=["192.0.2.0/24"], routes6=[str(NAT64_PREFIX)])

    def _tayga(self, short: str, *, routes4: Sequence[str], routes6: Sequence[str]) -> None:
        """A tayga in ``short``: its TUN made persistent first (to set its MTU and routes before
        tayga reads them), then the daemon in the foreground, tracked by PID."""
        conf = self.workdir / f"tayga-{short}.conf"
        conf.write_text(
            f"tun-device {TAYGA_IF}\n"
            f"ipv4-addr {TAYGA_ADDRESSES[short]}\n"
            f"prefix {NAT64_PREFIX}\n"
            f"map {H1_ADDRESS} {H1_MAPPED}\n"
        )
        self.exec(short, ["tayga", "-c", str(conf), "--mktun"])
        # The TUN carries IPv4 (<= 1500) one way and IPv6 (<= 1520) the other.
        self.link(short, "set", TAYGA_IF, "mtu", str(self.transport_mtu), "up")
        for route in routes4:
            self.ip(short, "route", "add", route, "dev", TAYGA_IF)
        for route in routes6:
            self.ip(short, "-6", "route", "add", route, "dev", TAYGA_IF)
        log = self.workdir / f"tayga-{short}.log"
        with log.open("ab") as out:
            proc = self.popen(
                short,
                ["tayga", "-c", str(conf), "--nodetach"],
                stdout=out.fileno(),
                stderr=subprocess.STDOUT,
            )

        def attached() -> bool:
            if proc.poll() is not None:
                raise LabError(f"tayga in {short} exited with {proc.returncode}: {log.read_text()}")
            links = json.loads(self.ip(short, "-j", "link", "show", "dev", TAYGA_IF))
            return bool(links) and "LOWER_UP" in links[0].get("flags", [])

        wait_until(attached, 10.0, f"tayga attached to {TAYGA_IF} in {short}")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for short in ("h1", "a", "b", "h2"):
            self.up(short, max(0.1, deadline - time.monotonic()))
        self.wait_ping("h1", str(H2_ADDRESS), max(0.1, deadline - time.monotonic()))


# --- a testbed: one variant, ready for traffic ------------------------------------------------


@dataclass
class Testbed:
    """Where to run the client (h1's side) and the server (h2's side), and h2's address."""

    __test__ = False  # not a pytest test class, whatever its name

    variant: str
    lab: Lab
    client: str
    server: str
    dst: str
    notes: dict[str, Any] = field(default_factory=dict)
    dst6: str | None = None  # h2's IPv6 address where the variant carries IPv6 (--ipv6)


@contextlib.contextmanager
def testbed(
    variant: str, *, fastpath: str = "auto", offload: bool = True, ipv6: bool = False
) -> Iterator[Testbed]:
    """Build ``variant``, wait until h1 reaches h2, yield it; always tear it all down.
    ``ipv6``: IPv6 too where the variant carries it (kernel forwarding, the appliance's
    dual-stack MS: :mod:`netlmm_lab.dualstack`)."""
    if variant in APPLIANCES:
        with _appliance(fastpath, offload, variant, ipv6) as bed:
            yield bed
        return
    with Chain(variant) as chain:
        v6 = ipv6 and variant == "kernel"
        dst6 = dualstack.chain_ipv6(chain, HOST_IF, DOWN_IF, LINK_IF) if v6 else None
        yield Testbed(variant, chain, "h1", "h2", str(H2_ADDRESS), dst6=dst6)


@contextlib.contextmanager
def _appliance(fastpath: str, offload: bool, variant: str, ipv6: bool) -> Iterator[Testbed]:
    from netlmm_lab.configs import MobileProfile
    from netlmm_lab.domain import Domain

    with Lab() as lab:
        bridge_nf = _no_bridge_netfilter(lab)
        profiles = [MobileProfile(NAI, lab.ms_mac(), "dhcp")]
        datapath = APPLIANCES[variant]
        extra: dict[str, Any] = {}
        if ipv6:
            profiles = dualstack.appliance_ipv6(lab, extra, profiles)
        domain = Domain(
            lab, profiles, fastpath=fastpath, offload=offload, datapath=datapath, **extra
        )
        try:
            try:
                domain.start()
                client = DhcpClient(lab)
                client.start(tries=10)
                lease = client.wait_lease(timeout=30.0)
                wait_until(lambda: domain.binding(NAI) is not None, 10.0, "the DLMAP's binding")
                lab.wait_ping("ms", str(CN_ADDRESS), 10.0)
                if ipv6:
                    dualstack.wait_slaac(lab)
                    lab.wait_ping("ms", str(dualstack.CN6), 10.0)
            except LabError as exc:
                tails = "\n".join(f"--- {r}\n{domain.tail(r, 15)}" for r in domain.processes)
                raise LabError(f"{exc}\n{tails}") from exc
            notes = {
                "ms_address": str(lease.address),
                "fastpath": fastpath,
                "datapath": datapath,
                "offload": offload,
                "bridge_netfilter": bridge_nf,
            }
            dst6 = str(dualstack.CN6) if ipv6 else None
            yield Testbed(variant, lab, "ms", "cn", str(CN_ADDRESS), notes, dst6)
            for role, process in domain.processes.items():
                if process.poll() is not None:
                    raise LabError(f"{role} exited during the runs:\n{domain.tail(role)}")
        finally:
            domain.stop()


#: The lab's namespaces that hold a bridge or send through one.
_LAB_NAMESPACES = ("cn", "lm", "tr", "m1", "m2", "b1", "b2", "ms")


def _no_bridge_netfilter(lab: Lab) -> str:
    """Turn off bridge netfilter (``net.bridge.bridge-nf-call-*``, per namespace) in the lab's
    namespaces. Where the host has ``br_netfilter`` loaded, every frame crossing the lab's
    base-station, DMPA and transport bridges goes through the IPv4/IPv6 netfilter hooks: perf
    put 10-16 % of the appliance's CPU there, a cost of the lab's bridges that the kernel and
    tayga variants (no bridges) do not pay. Returns what was done, for the notes."""
    return "off" if bridge_netfilter(lab, False) else "absent (no br_netfilter)"


def bridge_netfilter(lab: Lab, on: bool) -> bool:
    """Bridge netfilter (``net.bridge.bridge-nf-call-*``, per namespace) on or off in each of
    the lab's namespaces; False where a namespace has no such keys (no ``br_netfilter``)."""
    value = "1" if on else "0"
    keys = ("iptables", "ip6tables", "arptables")
    took = True
    for short in _LAB_NAMESPACES:
        argv = ["sysctl", "-q", "-w", *(f"net.bridge.bridge-nf-call-{k}={value}" for k in keys)]
        if lab.exec(short, argv, check=False).returncode != 0:
            took = False
    return took


def missing_tools(variants: Sequence[str]) -> list[str]:
    """The commands ``variants`` need that are not installed (``make bench-lab`` installs
    them as root)."""
    needed = ["iperf3", "ping", "ss", "ip"]
    if "tayga" in variants:
        needed.append("tayga")
    if any(v in APPLIANCES for v in variants):
        needed.append("udhcpc")
    return [tool for tool in needed if shutil.which(tool) is None]


# --- measurements ------------------------------------------------------------------------------


def _listening(bed: Testbed, port: int) -> bool:
    out = bed.lab.exec(bed.server, ["ss", "-Hltn", f"sport = :{port}"], timeout=5).stdout
    return bool(out.strip())


def iperf3(
    bed: Testbed,
    *,
    seconds: float,
    streams: int = 1,
    reverse: bool = False,
    udp_bps: int | None = None,
    mss: int | None = None,
    length: int | None = None,
    omit: int = 0,
    v6: bool = False,
) -> dict[str, Any]:
    """One iperf3 test from h1's side to h2 (``reverse``: h2 sends); its JSON. ``udp_bps`` 0
    is UDP without a rate limit."""
    dst = bed.dst6 if v6 and bed.dst6 else bed.dst
    server_log = bed.lab.workdir / "iperf3-server.log"
    with server_log.open("ab") as out:
        server = bed.lab.popen(
            bed.server,
            ["iperf3", "-s", "-1", "-B", dst, "-p", str(IPERF_PORT)],
            stdout=out.fileno(),
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: _listening(bed, IPERF_PORT), 10.0, "iperf3 listening", interval=0.02)
        argv = ["iperf3", "-c", dst, "-p", str(IPERF_PORT), "-J", "--connect-timeout", "3000"]
        # iperf3 takes whole seconds (0 would mean forever)
        argv += ["-t", str(max(1, round(seconds))), "-P", str(streams)]
        if omit:
            argv += ["-O", str(omit)]
        if reverse:
            argv.append("-R")
        if udp_bps is not None:
            argv += ["-u", "-b", str(udp_bps)]
        if length is not None:
            argv += ["-l", str(length)]
        if mss is not None:
            argv += ["-M", str(mss)]
        result = bed.lab.exec(bed.client, argv, timeout=seconds + omit + 30, check=False)
        try:
            data: dict[str, Any] = json.loads(result.stdout)
        except ValueError as exc:
            raise LabError(f"iperf3 {' '.join(argv[1:])}: no JSON: {result.stderr[-300:]}") from exc
        if "error" in data:
            raise LabError(f"iperf3 {' '.join(argv[1:])}: {data['error']}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
        return data
    finally:
        bed.lab.stop(server)


def tcp_gbit_s(
    bed: Testbed, *, seconds: float, streams: int, reverse: bool, v6: bool = False
) -> float:
    """Goodput the receiver saw, Gbit/s (the first second, TCP's ramp, is left out)."""
    data = iperf3(bed, seconds=seconds, streams=streams, reverse=reverse, omit=1, v6=v6)
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9


@dataclass(frozen=True, slots=True)
class UdpPoint:
    offered_kpps: float  # what the client sent
    received_kpps: float  # what the server got
    loss_pct: float

    def to_json(self) -> dict[str, float]:
        return {
            "offered_kpps": round(self.offered_kpps, 1),
            "received_kpps": round(self.received_kpps, 1),
            "loss_pct": round(self.loss_pct, 3),
        }


def udp_point(
    bed: Testbed, *, kpps: float | None, seconds: float, length: int = UDP_PAYLOAD
) -> UdpPoint:
    """``length``-byte datagrams h1 -> h2 at ``kpps`` (None: as fast as the client can)."""
    bps = 0 if kpps is None else round(kpps * 1000 * length * 8)
    data = iperf3(bed, seconds=seconds, udp_bps=bps, length=length)
    total = data["end"]["sum"]
    sent = int(total["packets"])
    lost = max(0, int(total["lost_packets"]))
    span = float(total["seconds"]) or seconds
    loss = 100.0 * lost / sent if sent else 100.0
    return UdpPoint(sent / span / 1000, (sent - lost) / span / 1000, loss)


def udp_search(bed: Testbed, *, seconds: float, steps: int) -> dict[str, Any]:
    """The highest rate of 64-byte datagrams delivered with under 1 % loss: one unlimited run
    (the client's own ceiling), then a bisection between 0 and that ceiling, starting at what
    the unlimited run delivered; a step that loses 1 % or more is tried a second time before
    it counts as too fast."""
    ceiling = udp_point(bed, kpps=None, seconds=seconds)
    points = [ceiling]
    if ceiling.loss_pct < LOSS_LIMIT_PCT:
        return {"kpps": ceiling.received_kpps, "bound": "generator", "points": points}
    low, high, best = 0.0, ceiling.offered_kpps, 0.0
    rate = min(ceiling.received_kpps, high * 0.99)
    for _ in range(steps):
        point = udp_point(bed, kpps=rate, seconds=seconds)
        points.append(point)
        if point.loss_pct >= LOSS_LIMIT_PCT:
            # Once more before it counts: other work on a shared machine comes in bursts.
            point = udp_point(bed, kpps=rate, seconds=seconds)
            points.append(point)
        if point.loss_pct < LOSS_LIMIT_PCT:
            low, best = rate, max(best, point.received_kpps)
        else:
            high = rate
        rate = (low + high) / 2
    return {"kpps": best, "bound": "loss", "points": points}


def tcp_sweep(bed: Testbed, *, sizes: Sequence[int], seconds: float) -> list[dict[str, float]]:
    """Per IPv4 packet size, one TCP stream h1 -> h2 with its MSS set so that full segments
    are ``size``-byte IPv4 packets (``iperf3 -M``: MSS = size - 40): the receiver's goodput, and
    the packets per second that makes. TCP paces itself, so the figure is what the path carries
    at that size, not what a generator lost."""
    out = []
    for size in sizes:
        mss = size - 40
        data = iperf3(bed, seconds=seconds, streams=1, reverse=False, omit=1, mss=mss)
        gbit_s = float(data["end"]["sum_received"]["bits_per_second"]) / 1e9
        out.append(
            {
                "packet": size,
                "mss": mss,
                "goodput_gbit_s": round(gbit_s, 3),
                "kpps": round(gbit_s * 1e9 / 8 / mss / 1000, 1),
            }
        )
    return out


def ping_rtt_us(bed: Testbed, *, count: int = 50) -> float:
    """Average ping RTT h1 -> h2 in microseconds (``count`` echoes 10 ms apart)."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", "0.01", "-W", "1", bed.dst]
    result = bed.lab.exec(bed.client, argv, timeout=count * 0.01 + 15, check=False)
    parsed = parse_ping(result.stdout, result.returncode)
    if parsed.rtt_avg_ms is None or parsed.loss_pct > 10:
        raise LabError(f"ping {bed.dst}: {parsed.loss_pct}% loss")
    return parsed.rtt_avg_ms * 1000


# --- the full matrix ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    title: str
    unit: str
    higher_is_better: bool = True


METRICS = (
    Metric("tcp1_up", "TCP 1 stream h1 -> h2", "Gbit/s"),
    Metric("tcp1_down", "TCP 1 stream h2 -> h1", "Gbit/s"),
    Metric("tcp4_up", "TCP 4 streams h1 -> h2", "Gbit/s"),
    Metric("tcp4_down", "TCP 4 streams h2 -> h1", "Gbit/s"),
    Metric("udp64_kpps", "UDP 64 B at <1% loss h1 -> h2", "kpps"),
    Metric("ping_us", "ping RTT h1 -> h2 (avg)", "us", higher_is_better=False),
    Metric("tcp1_up_v6", "TCP over IPv6, 1 stream h1 -> h2 (--ipv6)", "Gbit/s"),
    Metric("tcp1_down_v6", "TCP over IPv6, 1 stream h2 -> h1 (--ipv6)", "Gbit/s"),
    Metric("tcp4_up_v6", "TCP over IPv6, 4 streams h1 -> h2 (--ipv6)", "Gbit/s"),
)


@dataclass
class Settings:
    runs: int = 3
    tcp_seconds: float = 5.0
    udp_seconds: float = 2.0
    udp_steps: int = 5
    ping_count: int = 50
    fastpath: str = "auto"
    offload: bool = True  # the appliance's [node] offload (TAP/TUN IFF_VNET_HDR), its default
    sweep_sizes: tuple[int, ...] = SWEEP_SIZES  # packet sizes of the TCP sweep (once per variant)
    sweep_seconds: float = 2.0
    ipv6: bool = False  # the IPv6 TCP rows (kernel forwarding, the appliance's dual-stack MS)


def measure_variant(
    bed: Testbed, settings: Settings, say: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    """Every metric ``settings.runs`` times on one testbed; per metric its runs (and for UDP
    the points of each search)."""
    tcp = {
        "tcp1_up": (1, False),
        "tcp1_down": (1, True),
        "tcp4_up": (4, False),
        "tcp4_down": (4, True),
    }
    out: dict[str, dict[str, Any]] = {m.key: {"runs": []} for m in METRICS}
    for run in range(settings.runs):
        for key, (streams, reverse) in tcp.items():
            value = tcp_gbit_s(bed, seconds=settings.tcp_seconds, streams=streams, reverse=reverse)
            out[key]["runs"].append(round(value, 3))
            say(f"  {bed.variant} run {run + 1}: {key} {value:.2f} Gbit/s")
        for key, (streams, reverse) in dualstack.IPV6_TCP.items() if bed.dst6 else ():
            seconds = settings.tcp_seconds
            value = tcp_gbit_s(bed, seconds=seconds, streams=streams, reverse=reverse, v6=True)
            out[key]["runs"].append(round(value, 3))
            say(f"  {bed.variant} run {run + 1}: {key} {value:.2f} Gbit/s")
        search = udp_search(bed, seconds=settings.udp_seconds, steps=settings.udp_steps)
        out["udp64_kpps"]["runs"].append(round(search["kpps"], 1))
        out["udp64_kpps"].setdefault("searches", []).append(
            {"bound": search["bound"], "points": [p.to_json() for p in search["points"]]}
        )
        say(f"  {bed.variant} run {run + 1}: udp64 {search['kpps']:.0f} kpps ({search['bound']})")
        rtt = ping_rtt_us(bed, count=settings.ping_count)
        out["ping_us"]["runs"].append(round(rtt, 1))
        say(f"  {bed.variant} run {run + 1}: ping {rtt:.0f} us")
    if settings.sweep_sizes:
        sweep = tcp_sweep(bed, sizes=settings.sweep_sizes, seconds=settings.sweep_seconds)
        say(
            f"  {bed.variant} sweep: "
            + ", ".join(f"{p['packet']} B {p['goodput_gbit_s']:.2f} Gbit/s" for p in sweep)
        )
    out = {key: metric for key, metric in out.items() if metric["runs"]}  # IPv6: --ipv6
    for metric in out.values():
        runs = metric["runs"]
        metric["median"] = round(statistics.median(runs), 3)
        metric["min"], metric["max"] = min(runs), max(runs)
    if settings.sweep_sizes:
        out["tcp_sweep"] = {"points": sweep}
    return out


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Each appliance variant over tayga and over kernel forwarding, of the medians, per
    metric (``appliance/kernel``, ``appliance-kernel/kernel``, ...); the ping added over kernel
    forwarding (``added_us``, ``appliance-kernel.added_us``)."""
    table: dict[str, dict[str, float | None]] = {m.key: {} for m in METRICS}
    for variant in APPLIANCES:
        app = results.get(variant, {})
        for metric in METRICS:
            for ref in ("tayga", "kernel"):
                a = app.get(metric.key, {}).get("median")
                r = results.get(ref, {}).get(metric.key, {}).get("median")
                table[metric.key][f"{variant}/{ref}"] = round(a / r, 3) if a and r else None
        if variant in results and "kernel" in results:
            added = results[variant]["ping_us"]["median"] - results["kernel"]["ping_us"]["median"]
            name = "added_us" if variant == "appliance" else f"{variant}.added_us"
            table["ping_us"][name] = round(added, 1)
    return table


def _cell(metric: dict[str, Any] | None, unit: str) -> str:
    if not metric:
        return "-"
    digits = 0 if unit in ("kpps", "us") else 2
    return f"{metric['median']:.{digits}f} ({metric['min']:.{digits}f}-{metric['max']:.{digits}f})"


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table: per metric, the median and range of each variant, then the ratios."""
    results, ratio = report["results"], report["ratios"]
    keys = [f"{a}/{ref}" for a in APPLIANCES for ref in ("tayga", "kernel")]
    head = "| metric | kernel | tayga pair | appliance (cython) | appliance-kernel | "
    lines = [head + " | ".join(keys) + " |", "|---|" + "---:|" * (len(VARIANTS) + len(keys))]
    for metric in METRICS:
        cells = [_cell(results.get(v, {}).get(metric.key), metric.unit) for v in VARIANTS]
        rs = [ratio.get(metric.key, {}).get(key) for key in keys]
        rtext = [f"{r:.2f}" if r is not None else "-" for r in rs]
        lines.append(
            f"| {metric.title}, {metric.unit} | {' | '.join(cells)} | {' | '.join(rtext)} |"
        )
    for variant in APPLIANCES:
        name = "added_us" if variant == "appliance" else f"{variant}.added_us"
        added = ratio.get("ping_us", {}).get(name)
        if added is not None:
            lines.append(f"\nAdded latency, {variant} vs kernel forwarding: {added:.0f} us")
    return "\n".join(lines)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def default_results_dir() -> Path:
    """``bench/results`` of the source tree this module is in, else of the working directory."""
    tree = Path(__file__).resolve().parents[2] / "bench"
    return (tree if tree.is_dir() else Path.cwd() / "bench") / "results"


def run_all(
    variants: Sequence[str], settings: Settings, say: Callable[[str], None]
) -> dict[str, Any]:
    """Each variant in turn (built, measured, torn down); a variant that fails is reported
    and the others still run."""
    started = datetime.datetime.now(datetime.UTC)
    report: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "host": _host(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "settings": {
            "runs": settings.runs,
            "tcp_seconds": settings.tcp_seconds,
            "tcp_omit_seconds": 1,
            "udp_seconds": settings.udp_seconds,
            "udp_search_steps": settings.udp_steps,
            "udp_payload_bytes": UDP_PAYLOAD,
            "loss_limit_pct": LOSS_LIMIT_PCT,
            "ping_count": settings.ping_count,
            "fastpath": settings.fastpath,
            "offload": settings.offload,
            "sweep_sizes": list(settings.sweep_sizes),
            "sweep_seconds": settings.sweep_seconds,
            "mtu": {"hosts": ACCESS_MTU, "transport": TRANSPORT_MTU},
        },
        "source": _version(
            ["git", "-C", str(Path(__file__).parent), "describe", "--always", "--dirty"]
        ),
        "iperf3": _version(["iperf3", "--version"]),
        "tayga": _version(["dpkg-query", "-W", "-f=${Version}", "tayga"]),
        "results": {},
        "notes": {},
        "errors": {},
        "load": {},  # per variant: the 1-minute load average when it began and ended
    }
    for variant in variants:
        say(f"{variant}: building")
        began = time.monotonic()
        load = os.getloadavg()[0]
        try:
            with testbed(
                variant, fastpath=settings.fastpath, offload=settings.offload, ipv6=settings.ipv6
            ) as bed:
                say(f"{variant}: ready in {time.monotonic() - began:.1f} s")
                report["results"][variant] = measure_variant(bed, settings, say)
                report["notes"][variant] = bed.notes
        except (LabError, OSError, KeyError, ValueError, subprocess.SubprocessError) as exc:
            report["errors"][variant] = str(exc)
            say(f"{variant}: FAILED: {exc}")
        report["load"][variant] = [round(load, 2), round(os.getloadavg()[0], 2)]
        say(
            f"{variant}: done in {time.monotonic() - began:.0f} s, load {load:.1f} -> "
            f"{os.getloadavg()[0]:.1f}"
        )
    report["ratios"] = ratios(report["results"])
    report["seconds"] = round((datetime.datetime.now(datetime.UTC) - started).total_seconds())
    return report


def _version(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        return (out.stdout.splitlines() or [""])[0].strip()
    return ""


def save(report: dict[str, Any], directory: Path, tag: str | None = None) -> Path:
    """``report`` as JSON in ``directory`` (made if missing), named by the local date and time
    and ``tag`` (by default the report's host): ``2026-11-27-0200-vm.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    path = directory / f"{stamp}-{report['host'] if tag is None else tag}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def plot(report: dict[str, Any], path: Path) -> Path | None:
    """A PNG of the TCP sweep: goodput and packets per second per IPv4 packet size, one line
    per variant (one stream h1 -> h2, MSS = size - 40). None if matplotlib is missing (a
    dependency of netlmm-lab) or no variant has a sweep."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    results = report["results"]
    variants = [v for v in VARIANTS if "tcp_sweep" in results.get(v, {})]
    if not variants:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for variant in variants:
        points = results[variant]["tcp_sweep"]["points"]
        sizes = [p["packet"] for p in points]
        left.plot(sizes, [p["goodput_gbit_s"] for p in points], marker="o", label=variant)
        right.plot(sizes, [p["kpps"] for p in points], marker="o", label=variant)
    left.set(xlabel="IPv4 packet size, bytes", ylabel="TCP goodput, Gbit/s", yscale="log")
    right.set(xlabel="IPv4 packet size, bytes", ylabel="full-sized segments, kpps", yscale="log")
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    offload = report["settings"].get("offload")
    fig.suptitle(
        f"one TCP stream h1 -> h2 per packet size (MSS = size - 40), {report['date']}, "
        f"{report['cpus']} CPUs, appliance offload {'on' if offload else 'off'}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="netlmm lab bench", description="kernel vs tayga pair vs appliance, side by side"
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser, *, fastpath: bool = True) -> None:
    """The bench's options (``fastpath=False`` where the parser has ``--fastpath`` already)."""
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="bench: comma-separated subset"
    )
    parser.add_argument("--runs", type=int, default=3, help="bench: runs of each measurement")
    parser.add_argument(
        "--tcp-seconds", type=float, default=5.0, help="bench: each iperf3 TCP test (+1 s omitted)"
    )
    parser.add_argument(
        "--udp-seconds", type=float, default=2.0, help="bench: each step of the UDP rate search"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=None, help="bench: where the JSON goes (bench/results)"
    )
    parser.add_argument("--no-save", action="store_true", help="bench: print only, save no JSON")
    parser.add_argument(
        "--offload",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bench: the appliance with [node] offload = yes (its default) or no",
    )
    parser.add_argument(
        "--sweep-sizes",
        default=",".join(map(str, SWEEP_SIZES)),
        help="bench: IPv4 packet sizes of the TCP sweep, comma-separated, >= 128 ('' for none)",
    )
    parser.add_argument("--ipv6", action="store_true", help="bench: the IPv6 TCP rows too")
    if fastpath:
        parser.add_argument("--fastpath", choices=("auto", "compiled", "reference"), default="auto")


def run(args: argparse.Namespace) -> int:
    """What ``netlmm lab bench`` does with its parsed arguments."""
    variants = [v.strip() for v in str(args.variants).split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        print(f"netlmm lab bench: variants are {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("netlmm lab bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    missing = missing_tools(variants)
    if missing:
        print(f"netlmm lab bench: not installed: {', '.join(missing)}", file=sys.stderr)
        return 2
    settings = Settings(
        runs=max(1, int(args.runs)),
        tcp_seconds=float(args.tcp_seconds),
        udp_seconds=float(args.udp_seconds),
        fastpath=str(getattr(args, "fastpath", "auto")),
        offload=bool(args.offload),
        sweep_sizes=tuple(int(x) for x in str(args.sweep_sizes).split(",") if x.strip()),
        ipv6=bool(getattr(args, "ipv6", False)),
    )

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        report = run_all(variants, settings, say)
    except KeyboardInterrupt:
        print("netlmm lab bench: interrupted; everything it built is torn down", file=sys.stderr)
        return 130
    print()
    print(format_table(report))
    for variant, error in report["errors"].items():
        print(f"{variant}: FAILED: {error}")
    if not args.no_save:
        path = save(report, args.results_dir or default_results_dir())
        print(f"\nsaved {path}")
        image = plot(report, path.with_suffix(".png"))
        if image is not None:
            print(f"saved {image}")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
