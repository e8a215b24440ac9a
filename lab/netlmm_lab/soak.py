"""``netlmm lab soak``: thousands of MSs attach, refresh, hand over and leave for minutes.

The lab domain runs (``netlmm run`` per role) with a few real MS namespaces attached through
DMPA 1 by DHCP, each pinging the CN throughout. A :class:`~netlmm_lab.loadgen.LoadGenerator`
in the transport namespace plays two more DMPAs (addresses ``2001:db8:100::21`` and ``::22`` on
the transport bridge, listed as peers in the DLMAP's config) and runs ``mss`` simulated MSs
through the DLMAP at a steady rate over ``minutes``. Halfway, the first real MS is handed over
to DMPA 2.

The lab's home network is one documentation /24, so the simulated MSs cannot all hold an address
at once: the DLMAP's pool is ``192.0.2.60-250`` with a 1-second lease time, and each simulated
MS lives a few seconds (computed from the rate so that about 150 hold an address at any time).
The real MSs get theirs from dnsmasq (in the CN's namespace) through the DLMAP's relay, with
dnsmasq's own ten-minute leases: the built-in server would hand them 1-second leases too.

While it runs, the RSS and open fds of each appliance process are sampled from ``/proc/<pid>``.
At the end, the DLMAP's binding cache (``show bindings`` on the control socket) must hold
exactly the generator's view of the simulated MSs, plus the real MSs. Rates, the PBA latency,
the memory and fd series (start/end/max) and the real MSs' ping loss are printed; ``make soak``
also saves them as JSON under ``bench/results/soak-<time>.json``.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from ipaddress import IPv6Address
from pathlib import Path
from typing import Any

from netlmm_lab import servers
from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import ROLES, Domain
from netlmm_lab.errors import LabError
from netlmm_lab.loadgen import LoadGenerator
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import BackgroundPing
from netlmm_lab.topology import (
    BRIDGE,
    CN_ADDRESS,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    Lab,
)
from router.adapters.sockets import open_mh_socket

GENERATOR_ADDRESSES = (IPv6Address("2001:db8:100::21"), IPv6Address("2001:db8:100::22"))
POOL = "192.0.2.60-192.0.2.250"  # outside the relayed DHCP server's range (.50-.59)
#: Simulated MSs holding an address (or a lease after leaving) at once, at most about this many.
CONCURRENCY = 150
SIM_SUFFIX = "@soak.example"
RESULTS = Path("bench/results")


def real_nai(ms: str) -> str:
    return f"{ms}@example.org"


@dataclass
class Plan:
    mss: int
    seconds: float
    rate: float  # simulated MSs started a second
    life: float  # seconds each lives
    lease_time: int  # the DLMAP's lease time (an address is free again this long after)
    keep: int  # the last ones stay registered

    @classmethod
    def make(cls, mss: int, minutes: float) -> Plan:
        seconds = minutes * 60.0
        if mss < 10 or seconds < 10:
            raise ValueError("at least 10 MSs and 10 seconds")
        lease = 1
        life = min(7.5, CONCURRENCY * seconds / mss - lease)
        if life < 1.5:
            raise ValueError(
                f"{mss} MSs in {seconds:.0f} s need more than the pool's {CONCURRENCY} "
                "addresses at once: give more minutes"
            )
        rate = mss / max(1.0, seconds - life)
        return cls(mss, seconds, rate, life, lease, keep=min(50, mss // 10))


@dataclass
class Series:
    """Samples of one process: (seconds since the start, RSS kB, open fds)."""

    pid: int
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    def sample(self, t: float) -> None:
        rss = 0
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        self.samples.append((round(t, 1), rss, fds))

    def summary(self) -> dict[str, Any]:
        rss = [s[1] for s in self.samples]
        fds = [s[2] for s in self.samples]
        return {
            "samples": len(self.samples),
            "rss_kb": {"start": rss[0], "end": rss[-1], "max": max(rss)} if rss else {},
            "fds": {"start": fds[0], "end": fds[-1], "max": max(fds)} if fds else {},
        }


@dataclass
class SoakResult:
    ok: bool
    plan: dict[str, Any]
    seconds: float
    generator: dict[str, Any]
    rates: dict[str, float]
    processes: dict[str, dict[str, Any]]
    series: dict[str, list[tuple[float, int, int]]]
    bindings: dict[str, Any]
    real_ping: dict[str, dict[str, Any]]
    problems: list[str]

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def soak(
    *,
    mss: int = 10_000,
    minutes: float = 10.0,
    real_mss: int = 3,
    sample_every: float | None = None,
    fastpath: str = "auto",
    quiet: bool = False,
) -> SoakResult:
    """Build the lab, run the soak, check, tear down (on error too)."""
    plan = Plan.make(mss, minutes)
    if not 1 <= real_mss <= 9:
        raise ValueError("real_mss must be 1..9")
    every = sample_every or max(1.0, min(10.0, plan.seconds / 60))

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    with Lab(mobiles=real_mss) as lab:
        profiles = [MobileProfile(real_nai(ms), lab.ms_mac(ms), "dhcp") for ms in lab.mobiles]
        domain = Domain(
            lab,
            profiles,
            fastpath=fastpath,
            extra_peers=tuple(str(a) for a in GENERATOR_ADDRESSES),
            pool=POOL,
            lease_time=plan.lease_time,
            dhcp="relay",
            dhcp_servers=(str(servers.DHCP_ADDRESS),),
        )
        server = servers.start_dhcp_server(lab, "dnsmasq")
        try:
            return _soak_in(lab, domain, plan, every, say)
        finally:
            domain.stop()
            servers.stop(lab, server)


def _generator_addresses(lab: Lab) -> None:
    """The simulated DMPAs' addresses on the transport bridge (in the lab's ``tr`` namespace,
    which goes away with the lab)."""
    lab.exec("tr", ["sysctl", "-q", "-w", f"net.ipv6.conf.{BRIDGE}.disable_ipv6=0"])
    for address in GENERATOR_ADDRESSES:
        lab.exec("tr", ["ip", "addr", "add", f"{address}/64", "dev", BRIDGE, "nodad"])


def _open_sockets(lab: Lab) -> list[socket.socket]:
    sockets = []
    with lab.enter("tr"):
        for address in GENERATOR_ADDRESSES:
            sock = open_mh_socket(address, rcvbuf=4 << 20)
            sock.setblocking(False)
            sockets.append(sock)
    return sockets


def _soak_in(lab: Lab, domain: Domain, plan: Plan, every: float, say: Any) -> SoakResult:
    say(
        f"lab {lab.prefix}: {plan.mss} simulated MSs over {plan.seconds:.0f} s "
        f"({plan.rate:.1f}/s, each living {plan.life:.1f} s) plus {len(lab.mobiles)} real MSs"
    )
    _generator_addresses(lab)
    domain.start()
    clients = [DhcpClient(lab, ms) for ms in lab.mobiles]
    for client in clients:
        client.start(tries=10)
    for client in clients:
        client.wait_lease(timeout=30.0)
    for ms in lab.mobiles:
        nai = real_nai(ms)
        wait_until(lambda: domain.binding(nai) is not None, 15.0, f"{ms} bound")  # noqa: B023
    say("real MSs attached; starting the generator and the ping streams")
    pids = {role: domain.processes[role].pid for role in ROLES}
    for role, pid in pids.items():
        if "router" not in Path(f"/proc/{pid}/cmdline").read_text():
            raise LabError(f"pid {pid} of {role} is not the appliance")
    series = {role: Series(pid) for role, pid in pids.items()}
    pingers = {
        ms: BackgroundPing(lab, ms, str(CN_ADDRESS), interval=0.2, seconds=plan.seconds + 60)
        for ms in lab.mobiles
    }
    sockets = _open_sockets(lab)
    gen = LoadGenerator(
        DLMAP_ADDRESS,
        list(GENERATOR_ADDRESSES),
        mss=plan.mss,
        rate=plan.rate,
        life=plan.life,
        lifetime=8,
        keep=plan.keep,
    )
    began = time.monotonic()
    next_sample = began
    next_say = began + 60.0
    problems: list[str] = []
    # Halfway, the first real MS moves to DMPA 2's cell (in a thread: the move takes a moment
    # and the generator must not stall meanwhile).
    mover = threading.Thread(target=_move, args=(lab, lab.mobiles[0], problems), daemon=True)

    def tick(now: float) -> None:
        nonlocal next_sample, next_say
        if now >= began + plan.seconds / 2 and mover.ident is None:
            mover.start()
        if now >= next_sample:
            next_sample += every
            for role, s in series.items():
                if domain.processes[role].poll() is None:
                    s.sample(now - began)
        if now >= next_say:
            next_say += 60.0
            say(f"  {now - began:.0f} s: {dict(gen.progress())}")

    try:
        gen.run(sockets, began + plan.seconds, on_tick=tick)
    finally:
        for sock in sockets:
            sock.close()
        if mover.ident is not None:
            mover.join(30.0)
    elapsed = time.monotonic() - began
    for role, s in series.items():  # the last sample, before the control socket is asked
        if domain.processes[role].poll() is None:
            s.sample(elapsed)
        else:
            problems.append(f"{role} died: {domain.tail(role)}")
    real_ping: dict[str, dict[str, Any]] = {}
    for ms, pinger in pingers.items():
        p = pinger.stop()
        real_ping[ms] = {
            "transmitted": p.transmitted,
            "received": p.received,
            "loss_pct": p.loss_pct,
        }
        if p.received == 0:
            problems.append(f"{ms}: no ping answered")
    bindings = _compare(domain, gen, lab, problems)
    gstats = gen.stats.to_json()
    sent = sum(v for k, v in gen.stats.sent.items() if k.startswith("pbu."))
    answered = sum(v for k, v in gen.stats.received.items() if k.startswith("pba."))
    progress = dict(gen.progress())
    if gen.stats.sent.get("failed") or any(
        k.startswith("pba.rejected") for k in gen.stats.received
    ):
        problems.append(f"simulated MSs failed: {gstats}")
    for role, s in series.items():
        fds = [x[2] for x in s.samples]
        if fds and fds[-1] != fds[0]:
            problems.append(f"{role}: open fds went from {fds[0]} to {fds[-1]}")
    return SoakResult(
        ok=not problems,
        plan=plan.__dict__.copy(),
        seconds=round(elapsed, 1),
        generator={**gstats, "progress": progress},
        rates={
            "ms_started_per_s": round(plan.mss / elapsed, 2),
            "pbu_per_s": round(sent / elapsed, 1),
            "pba_per_s": round(answered / elapsed, 1),
        },
        processes={role: s.summary() for role, s in series.items()},
        series={role: s.samples for role, s in series.items()},
        bindings=bindings,
        real_ping=real_ping,
        problems=problems,
    )


def _move(lab: Lab, ms: str, problems: list[str]) -> None:
    try:
        lab.handover(2, ms)
    except LabError as exc:
        problems.append(f"{ms}: handover failed: {exc}")


def _compare(domain: Domain, gen: LoadGenerator, lab: Lab, problems: list[str]) -> dict[str, Any]:
    """The DLMAP's cache against the generator's view (simulated MSs) and the real MSs."""
    rows = domain.ask("dlmap", "bindings")
    cache = {r["nai"]: (r["hoa"], r["dmpa"]) for r in rows if r["nai"].endswith(SIM_SUFFIX)}
    view = gen.view()
    missing = sorted(set(view) - set(cache))
    extra = sorted(set(cache) - set(view))
    differ = sorted(n for n in set(view) & set(cache) if view[n] != cache[n])
    if missing or extra or differ:
        problems.append(
            f"binding cache != generator: {len(missing)} missing {missing[:5]}, {len(extra)} "
            f"extra {extra[:5]}, {len(differ)} differ {differ[:5]}"
        )
    real = {r["nai"]: r["dmpa"] for r in rows if not r["nai"].endswith(SIM_SUFFIX)}
    for ms in lab.mobiles:
        expected = DMPA_ADDRESSES[lab.attached(ms)]  # the first one moved to DMPA 2 halfway
        if real.get(real_nai(ms)) != str(expected):
            problems.append(f"{ms}: binding {real.get(real_nai(ms))}")
    return {
        "cache_simulated": len(cache),
        "generator_view": len(view),
        "real": len(real),
        "match": not (missing or extra or differ),
    }


def print_result(result: SoakResult) -> None:
    print()
    print("soak: " + ("ok" if result.ok else "FAILED"))
    plan = result.plan
    print(
        f"  plan               {plan['mss']} simulated MSs, {plan['rate']:.1f}/s, "
        f"life {plan['life']:.1f} s, lease {plan['lease_time']} s, {plan['keep']} kept"
    )
    print(f"  ran                {result.seconds} s; rates {result.rates}")
    g = result.generator
    print(f"  generator sent     {g['sent']}")
    print(f"  generator received {g['received']}")
    print(f"  PBA latency ms     {g['pba_latency_ms']}")
    print(f"  MS steps           {g['progress']}")
    b = result.bindings
    print(
        f"  binding cache      {b['cache_simulated']} simulated (generator: "
        f"{b['generator_view']}), {b['real']} real; match={b['match']}"
    )
    for role, summary in result.processes.items():
        print(f"  {role:6} RSS kB {summary['rss_kb']}  fds {summary['fds']}")
    for ms, p in result.real_ping.items():
        print(f"  {ms:6} ping       {p['received']}/{p['transmitted']}, {p['loss_pct']}% loss")
    for problem in result.problems:
        print(f"  problem: {problem}")
    sys.stdout.flush()


def main(args: Any) -> int:
    try:
        result = soak(
            mss=args.mss, minutes=args.minutes, real_mss=args.real_mss, fastpath=args.fastpath
        )
    except (LabError, OSError, ValueError) as exc:
        print(f"netlmm lab soak: {exc}", file=sys.stderr)
        return 1
    print_result(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    print(f"  saved {path}")
    return 0 if result.ok else 1
