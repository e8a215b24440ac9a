"""Fault injection in the lab: signaling loss and many mobile stations.

* :class:`MHLoss`: nftables rules in the transport bridge's namespace (``tr``) that drop a given
  percentage of Mobility Header packets (IPv6 next header 135) in each direction between the
  DLMAP and the DMPAs, chosen by ``numgen random``; per-direction counters show what was dropped.
* :class:`Fleet`: ``count`` mobile stations as macvlan interfaces (one MAC each) on the lab MS's
  ``ms0``, each running busybox ``udhcpc`` like a real host. They share one radio link, so a
  :meth:`Lab.handover` of ``ms`` moves them all at once (a bus full of terminals).
* :func:`loss_run`: the fleet registers and is handed over under loss; returns the times, and
  how long the old DMPA took to forget every MS (the revocations it missed are sent again at a
  slower pace until it does): none may be left behind there.

Everything lives in the lab's namespaces and goes with them.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from netlmm_lab.configs import GATEWAY, STATIC_HOA, MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.errors import LabError
from netlmm_lab.poll import TimedOut, wait_until
from netlmm_lab.tools import UdpStream, capture_open, ping
from netlmm_lab.topology import (
    CN_ADDRESS,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    MS_IF,
    Lab,
)

NFT_TABLE = "netlmm_loss"

FLEET_SCRIPT = r"""#!/bin/sh
# udhcpc script of one fleet MS: its own address on its own interface, no routes (they share
# a namespace); the lease is written to $NETLMM_FLEET_DIR/<interface>.
case "$1" in
  deconfig) ip -4 addr flush dev "$interface"; ip link set dev "$interface" up ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-32}" dev "$interface" noprefixroute
    echo "$ip" > "$NETLMM_FLEET_DIR/$interface.tmp"
    mv "$NETLMM_FLEET_DIR/$interface.tmp" "$NETLMM_FLEET_DIR/$interface"
    ;;
esac
exit 0
"""


class MHLoss:
    """Drop ``percent`` % of MH packets each way between the DLMAP and the DMPAs (in ``tr``)."""

    def __init__(self, lab: Lab, percent: int) -> None:
        if not 0 <= percent <= 100:
            raise ValueError("percent is 0..100")
        self.lab, self.percent = lab, percent

    def __enter__(self) -> MHLoss:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def install(self) -> None:
        # numgen's range is 0..99: 100 % needs no random draw, 0 % no drop rule at all.
        draw = "" if self.percent == 100 else f"numgen random mod 100 < {self.percent} "
        lines = []
        for way, field in (("to_dlmap", "daddr"), ("from_dlmap", "saddr")):
            match = f"ip6 nexthdr 135 ip6 {field} {DLMAP_ADDRESS}"
            if self.percent:
                lines.append(f'{match} {draw}counter drop comment "{way}_dropped"')
            lines.append(f'{match} counter comment "{way}_passed"')
        rules = (
            f"table bridge {NFT_TABLE} {{\n  chain forward {{\n"
            "    type filter hook forward priority 0; policy accept;\n"
            + "".join(f"    {line}\n" for line in lines)
            + "  }\n}\n"
        )
        self.lab.exec("tr", ["nft", "-f", "-"], input=rules)

    def counters(self) -> dict[str, int]:
        """Packets per rule: ``to_dlmap_dropped``, ``to_dlmap_passed``, ``from_dlmap_...``."""
        out = self.lab.exec("tr", ["nft", "-j", "list", "table", "bridge", NFT_TABLE]).stdout
        found: dict[str, int] = {}
        for item in json.loads(out)["nftables"]:
            rule = item.get("rule")
            if not rule or "comment" not in rule:
                continue
            for expr in rule["expr"]:
                if "counter" in expr:
                    found[rule["comment"]] = int(expr["counter"]["packets"])
        return found

    def remove(self) -> None:
        self.lab.exec("tr", ["nft", "delete", "table", "bridge", NFT_TABLE], check=False)


class Fleet:
    """``count`` MSs on ``ms``'s link: macvlan ``f<i>`` with MAC 02:4e:46:00:<i>, udhcpc each."""

    def __init__(self, lab: Lab, count: int, *, ms: str = "ms") -> None:
        if not 1 <= count <= 1000:
            raise ValueError("count is 1..1000")
        self.lab, self.count, self.ms = lab, count, ms
        self.dir = lab.workdir / f"fleet-{ms}"
        self.script = self.dir / "udhcpc.sh"
        self._clients: list[subprocess.Popen[Any]] = []

    @staticmethod
    def ifname(i: int) -> str:
        return f"f{i}"

    @staticmethod
    def mac(i: int) -> str:
        return f"02:4e:46:00:{i >> 8:02x}:{i & 0xFF:02x}"

    @staticmethod
    def nai(i: int) -> str:
        return f"fleet{i}@example.org"

    def profiles(self, mode: str = "dlmap") -> list[MobileProfile]:
        return [MobileProfile(self.nai(i), self.mac(i), mode) for i in range(self.count)]

    def create(self) -> None:
        """Make the interfaces (one ``ip -batch``) and bring them up."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.script.write_text(FLEET_SCRIPT)
        self.script.chmod(0o755)
        lines = []
        for i in range(self.count):
            name = self.ifname(i)
            lines.append(f"link add {name} link {MS_IF} address {self.mac(i)} type macvlan")
            lines.append(f"link set {name} up")
        self.lab.exec(self.ms, ["ip", "-batch", "-"], input="\n".join(lines) + "\n")
        # One host per interface: answer ARP only for the interface's own address.
        self.lab.exec(self.ms, ["sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1"])

    def start_dhcp(self, *, requested: dict[int, IPv4Address] | None = None) -> None:
        """Start udhcpc on every interface: it retries until it has a lease, then exits.

        ``requested``: the address each MS asks for again (``-r``), as after a move."""
        env = {"NETLMM_FLEET_DIR": str(self.dir)}
        for i in range(self.count):
            argv = ["udhcpc", "-i", self.ifname(i), "-s", str(self.script), "-f", "-q"]
            argv += ["-t", "3", "-T", "2", "-A", "1"]  # 3 discovers 2 s apart, then again
            if requested and i in requested:
                argv += ["-r", str(requested[i])]
            self._clients.append(
                self.lab.popen(
                    self.ms, argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )

    def stop_dhcp(self) -> None:
        for proc in self._clients:
            self.lab.stop(proc, timeout=2.0)
        self._clients.clear()

    def leases(self) -> dict[int, IPv4Address]:
        found = {}
        for i in range(self.count):
            path = self.dir / self.ifname(i)
            try:
                found[i] = IPv4Address(path.read_text().strip())
            except (FileNotFoundError, ValueError):
                continue
        return found

    def clear_leases(self) -> None:
        for i in range(self.count):
            (self.dir / self.ifname(i)).unlink(missing_ok=True)

    def announce(self) -> None:
        """Each MS sends one gratuitous ARP for its address (what a host does on link change
        with ``arp_notify``): the new DMPA learns it and registers it at once."""
        script = "".join(
            f"arping -q -U -c 1 -w 1 -I {self.ifname(i)} {address} &\n"
            for i, address in self.leases().items()
        )
        self.lab.exec(self.ms, ["sh", "-c", script + "wait\n"], timeout=30)


def configure(domain: Domain, role: str, section: str, **keys: object) -> None:
    """Add ``keys`` to ``[section]`` of ``role``'s generated ini file (before it starts)."""
    path = domain.config(role)
    text = path.read_text()
    header = f"[{section}]\n"
    if header not in text:
        raise LabError(f"no [{section}] in {path}")
    lines = "".join(f"{key} = {value}\n" for key, value in keys.items())
    path.write_text(text.replace(header, header + lines, 1))


def bindings_at(domain: Domain, dmpa: int) -> dict[str, str]:
    """NAI -> HoA of the DLMAP's bindings that point at DMPA ``dmpa``."""
    where = str(DMPA_ADDRESSES[dmpa])
    rows = domain.ask("dlmap", "bindings")
    return {row["nai"]: row["hoa"] for row in rows if row["dmpa"] == where}


def registered_at(domain: Domain, dmpa: int) -> dict[str, str]:
    """NAI -> HoA of DMPA ``dmpa``'s visitors in state registered."""
    rows = domain.ask(f"dmpa{dmpa}", "visitors")
    return {row["nai"]: row["hoa"] for row in rows if row["state"] == "registered"}


def visitors_at(domain: Domain, dmpa: int) -> set[str]:
    """The NAIs in DMPA ``dmpa``'s visitor list, whatever their state."""
    return {row["nai"] for row in domain.ask(f"dmpa{dmpa}", "visitors") if row["nai"]}


@dataclass(frozen=True, slots=True)
class LossRun:
    count: int
    loss_percent: int
    register_s: float  # first udhcpc started -> every MS bound at DMPA 1, both sides agreeing
    leases_s: float  # first udhcpc started -> every MS holds its DHCP lease
    handover_s: float  # the link moved -> every binding at DMPA 2, same address, both agreeing
    addresses_kept: bool
    pbu_sent: dict[str, int]  # per DMPA
    pbu_retransmit: dict[str, int]
    left_at_old_dmpa: int  # DMPA 1 visitors still there at the deadline (must be 0)
    old_dmpa_cleared_s: float  # every MS at DMPA 2 -> none left in DMPA 1's visitor list
    revocations: dict[str, int]  # the DLMAP's bri.* counters (backoff: fast retries all lost)
    mh: dict[str, int]  # nftables counters

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def loss_run(
    lab: Lab, domain: Domain, fleet: Fleet, loss: MHLoss, *, timeout: float = 300.0
) -> LossRun:
    """Register the whole fleet at DMPA 1, then hand it over to DMPA 2, under ``loss``."""
    names = {fleet.nai(i) for i in range(fleet.count)}
    began = time.monotonic()
    fleet.start_dhcp()

    def all_registered(dmpa: int) -> bool:
        bound, seen = bindings_at(domain, dmpa), registered_at(domain, dmpa)
        return names <= bound.keys() and all(seen.get(n) == bound[n] for n in names)

    wait_until(
        lambda: all_registered(1), timeout, "every fleet MS registered at DMPA 1", interval=0.2
    )
    register_s = time.monotonic() - began
    wait_until(
        lambda: len(fleet.leases()) == fleet.count, timeout, "every fleet lease", interval=0.2
    )
    leases_s = time.monotonic() - began
    fleet.stop_dhcp()
    before = bindings_at(domain, 1)
    lab.handover(2, fleet.ms)
    moved = time.monotonic()
    fleet.announce()
    wait_until(
        lambda: all_registered(2), timeout, "every fleet MS registered at DMPA 2", interval=0.2
    )
    handover_s = time.monotonic() - moved
    after = bindings_at(domain, 2)
    # The old DMPA must forget every MS: the revocations lost under loss go on at a slower
    # pace (doubling to 32 s) until one gets through. Bounded: the run's timeout.
    settled = time.monotonic()
    with contextlib.suppress(TimedOut):  # what is left is reported: left_at_old_dmpa
        wait_until(
            lambda: not (visitors_at(domain, 1) & names),
            timeout,
            "DMPA 1 forgot every fleet MS",
            interval=0.5,
        )
    cleared_s = time.monotonic() - settled
    old = visitors_at(domain, 1) & names
    counters = {role: domain.ask(role, "counters")["core"] for role in ("dmpa1", "dmpa2")}
    dlmap_core = domain.ask("dlmap", "counters")["core"]
    return LossRun(
        count=fleet.count,
        loss_percent=loss.percent,
        register_s=round(register_s, 2),
        leases_s=round(leases_s, 2),
        handover_s=round(handover_s, 2),
        addresses_kept=all(after[n] == before[n] for n in names),
        pbu_sent={r: int(c.get("pbu.sent", 0)) for r, c in counters.items()},
        pbu_retransmit={r: int(c.get("pbu.retransmit", 0)) for r, c in counters.items()},
        left_at_old_dmpa=len(old),
        old_dmpa_cleared_s=round(cleared_s, 2),
        revocations={k: int(v) for k, v in dlmap_core.items() if k.startswith("bri.")},
        mh=loss.counters(),
    )


@dataclass(frozen=True, slots=True)
class RestartRun:
    role: str
    outage_ms: float  # longest gap between two echoes of the stream (the kill is inside it)
    restart_to_first_packet_ms: float  # process started again -> first echo through again
    ready_s: float  # process started again -> answering on its control socket
    received: int
    lost: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def restart_run(lab: Lab, domain: Domain, role: str, *, ms: str = "ms") -> RestartRun:
    """SIGKILL ``role`` under a UDP stream ``ms`` -> CN (one probe every 5 ms), start it again
    at once; the stream's longest gap minus the time the process was dead is the time from the
    restart to the first packet delivered again (within one probe interval)."""
    stream = UdpStream(lab, client_ns=ms, interval=0.005, count=4000)
    stream.start()
    time.sleep(0.5)  # the stream flows before the kill
    killed = time.monotonic()
    domain.stop_one(role, signal.SIGKILL)
    restarted = time.monotonic()
    domain.start_one(role)
    domain.wait_ready(role)
    ready = time.monotonic()
    wait_until(lambda: ping(lab, ms, str(CN_ADDRESS), count=1).ok, 30.0, "traffic resumed")
    udp = stream.stop()
    dead_ms = (restarted - killed) * 1000
    return RestartRun(
        role=role,
        outage_ms=round(udp.max_gap_ms, 1),
        restart_to_first_packet_ms=round(udp.max_gap_ms - dead_ms, 1),
        ready_s=round(ready - restarted, 3),
        received=udp.received,
        lost=udp.lost,
    )


def _restart_domain(lab: Lab) -> Domain:
    """Three MSs at DMPA 1 (modes dhcp, dlmap, static), heartbeats every second both ways."""
    modes = {"ms": "dhcp", "ms2": "dlmap", "ms3": "static"}
    profiles = [
        MobileProfile(
            f"{ms}@example.org", lab.ms_mac(ms), mode, str(STATIC_HOA) if mode == "static" else None
        )
        for ms, mode in modes.items()
    ]
    domain = Domain(lab, profiles)
    configure(domain, "dmpa1", "dmpa", heartbeat_interval=1)
    configure(domain, "dlmap", "dlmap", heartbeat_interval=1)
    domain.start()
    DhcpClient(lab, "ms").once(tries=10)
    DhcpClient(lab, "ms2").once(tries=10)
    lab.exec("ms3", ["ip", "addr", "add", f"{STATIC_HOA}/24", "dev", MS_IF])
    lab.exec("ms3", ["ip", "route", "add", "default", "via", str(GATEWAY)])
    lab.wait_ping("ms3", str(CN_ADDRESS), 15.0)
    return domain


def pbu_schedule(lab: Lab, seconds: float) -> list[float]:
    """One MS attaches while every MH packet to the DLMAP is dropped: the departure times of
    the DMPA's PBUs (tshark on the transport bridge), relative to the first one."""
    fleet = Fleet(lab, 1)
    fleet.create()
    domain = Domain(lab, fleet.profiles())
    domain.start()
    errors = lab.workdir / "schedule.err"
    with errors.open("w") as err:
        capture = lab.popen(
            "tr",
            ["tshark", "-l", "-n", "-i", "br0", "-f", f"ip6 proto 135 and ip6 dst {DLMAP_ADDRESS}",
             "-a", f"duration:{seconds:g}", "-T", "fields",
             "-e", "frame.time_epoch", "-e", "mip6.mhtype"],
            stderr=err.fileno(),
        )  # fmt: skip
    wait_until(lambda: capture_open(errors), 15.0, "the PBU capture open")
    with MHLoss(lab, 100):
        fleet.start_dhcp()
        out, _ = capture.communicate(timeout=seconds + 30)
    times = [float(line.split()[0]) for line in out.splitlines() if line.split()[1:] == ["5"]]
    return [round(t - times[0], 2) for t in times] if times else []


def main(argv: list[str] | None = None) -> int:
    """``python -m netlmm_lab.faults loss|restart``: the fault figures (loss, restart), as JSON."""
    parser = argparse.ArgumentParser(prog="python -m netlmm_lab.faults")
    sub = parser.add_subparsers(dest="what", required=True)
    loss_p = sub.add_parser("loss", help="a fleet registers and hands over under MH loss")
    loss_p.add_argument("--count", type=int, default=100)
    loss_p.add_argument("--percent", type=int, default=20)
    loss_p.add_argument("--timeout", type=float, default=600.0)
    restart_p = sub.add_parser("restart", help="SIGKILL + restart under a UDP stream")
    restart_p.add_argument("--role", choices=("dlmap", "dmpa1"), default="dlmap")
    restart_p.add_argument("--rounds", type=int, default=3)
    schedule_p = sub.add_parser("schedule", help="PBU departure times when no PBA comes back")
    schedule_p.add_argument("--seconds", type=float, default=100.0)
    for p in (loss_p, restart_p, schedule_p):
        p.add_argument("--save", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    result: dict[str, Any]
    failed = False
    with Lab(mobiles=1 if args.what == "loss" else 3) as lab:
        if args.what == "loss":
            fleet = Fleet(lab, args.count)
            fleet.create()
            domain = Domain(lab, fleet.profiles())
            domain.start()
            with MHLoss(lab, args.percent) as loss:
                result = loss_run(lab, domain, fleet, loss, timeout=args.timeout).to_json()
            failed = result["left_at_old_dmpa"] != 0 or not result["addresses_kept"]
        elif args.what == "schedule":
            times = pbu_schedule(lab, args.seconds)
            gaps = [round(b - a, 2) for a, b in itertools.pairwise(times)]
            result = {"pbu_times_s": times, "intervals_s": gaps}
        else:
            domain = _restart_domain(lab)
            runs = []
            for _ in range(max(1, min(args.rounds, 20))):
                runs.append(restart_run(lab, domain, args.role).to_json())
            figures = sorted(r["restart_to_first_packet_ms"] for r in runs)
            result = {"role": args.role, "runs": runs, "median_ms": figures[len(figures) // 2]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(text + "\n")
    if failed:
        print("FAILED: an MS left behind at the old DMPA, or an address changed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "Fleet",
    "LabError",
    "LossRun",
    "MHLoss",
    "RestartRun",
    "configure",
    "loss_run",
    "restart_run",
]
