"""``netlmm lab demo``: a whole domain on one machine, step by step, with a handover.

CN on the IPv4 side, a DLMAP, two DMPAs on an IPv6 transport, one IPv4-only MS with busybox
udhcpc, all in network namespaces; the appliance runs in each role from generated ini files
(embedded defaults: built-in DHCP server, local AAA profiles). The steps, each timed:

1. start the DLMAP and both DMPAs;
2. the MS attaches to DMPA 1 and asks DHCP: AAA, DHCP through the tunnel to the DLMAP, PBU/PBA;
3. the MS pings its gateway (answered by the DMPA) and the CN; a TCP transfer MS -> CN;
4. a handover: a UDP probe stream and a TCP session run while the MS's link moves to DMPA 2's
   cell; the MS keeps its address, DMPA 1 is revoked, the TCP session survives;
5. a summary (and ``--json``); everything is torn down, on error and Ctrl-C too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from router.lab.configs import MobileProfile
from router.lab.domain import Domain
from router.lab.tools import TcpSession, UdpStream, ping, tcp_transfer
from router.lab.topology import (
    CN_ADDRESS,
    DMPA_ADDRESSES,
    DhcpClient,
    Lab,
    LabError,
    wait_until,
)

T = TypeVar("T")
NAI = "ms@example.org"


@dataclass
class Report:
    steps: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    ok: bool = False


class Steps:
    def __init__(self, report: Report, quiet: bool) -> None:
        self.report, self.quiet = report, quiet

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def run(self, title: str, body: Callable[[], T]) -> T:
        number = len(self.report.steps) + 1
        if not self.quiet:
            print(f"[{number}] {title} ...", end="", flush=True)
        began = time.monotonic()
        try:
            result = body()
        except Exception as exc:
            self.report.steps.append({"step": title, "ok": False, "error": str(exc)})
            if not self.quiet:
                print(f" FAILED after {time.monotonic() - began:.2f} s: {exc}", flush=True)
            raise
        seconds = time.monotonic() - began
        self.report.steps.append({"step": title, "ok": True, "seconds": round(seconds, 3)})
        if not self.quiet:
            print(f" ok ({seconds * 1000:.0f} ms)", flush=True)
        return result


def demo(*, as_json: bool = False, dialect: str = "draft", fastpath: str = "auto") -> int:
    report = Report()
    steps = Steps(report, quiet=as_json)
    try:
        with Lab() as lab:
            run_demo(lab, steps, report, dialect=dialect, fastpath=fastpath)
        report.ok = True
    except (LabError, AssertionError, OSError) as exc:
        report.summary.setdefault("error", str(exc))
    except KeyboardInterrupt:
        report.summary["error"] = "interrupted"
    if as_json:
        print(json.dumps({"ok": report.ok, "steps": report.steps, **report.summary}, indent=2))
    else:
        _print_summary(report)
    return 0 if report.ok else 1


def run_demo(lab: Lab, steps: Steps, report: Report, *, dialect: str, fastpath: str) -> None:
    profile = MobileProfile(NAI, lab.ms_mac(), "dhcp")
    domain = Domain(lab, [profile], dialect=dialect, fastpath=fastpath)
    s = report.summary
    s["dialect"] = dialect
    steps.say(f"lab {lab.prefix}: CN, DLMAP, two DMPAs and an MS in network namespaces")
    try:
        steps.run("start the DLMAP and both DMPAs (netlmm run)", domain.start)
        client = DhcpClient(lab)
        lease = steps.run(
            "MS attaches to DMPA 1: AAA, DHCP through the tunnel, PBU/PBA",
            lambda: _attach(client, domain),
        )
        s["address"] = str(lease.address)
        s["router"] = str(lease.router)
        binding = domain.binding(NAI)
        assert binding is not None and binding["dmpa"] == str(DMPA_ADDRESSES[1]), binding
        steps.say(
            f"    MS {lab.ms_mac()} has {lease.address}/{lease.prefix_len}, gateway "
            f"{lease.router}; DLMAP binding {NAI} -> {binding['dmpa']}"
        )
        gw = steps.run(
            "MS pings its gateway (answered by DMPA 1)", lambda: _ping_ok(lab, str(lease.router))
        )
        cn = steps.run("MS pings the CN through the tunnel", lambda: _ping_ok(lab, str(CN_ADDRESS)))
        s["ping_gateway_ms"] = gw.rtt_avg_ms
        s["ping_cn_ms"] = cn.rtt_avg_ms
        transfer = steps.run(
            "TCP transfer MS -> CN (20 MB)",
            lambda: tcp_transfer(lab, nbytes=20_000_000, seconds=15.0),
        )
        s["tcp_mbit_s"] = round(transfer.mbit_s, 1)
        steps.say(f"    {transfer.mbit_s:.0f} Mbit/s")
        stream = UdpStream(lab, interval=0.005, count=2400)
        session = TcpSession(lab)
        steps.run(
            "start a UDP probe stream and a TCP session MS <-> CN",
            lambda: _start_both(stream, session),
        )
        time.sleep(0.5)  # traffic before the move, for the comparison
        moved = steps.run("handover: the MS's link moves to DMPA 2's cell", lambda: lab.handover(2))
        steps.run(
            "DLMAP moves the binding to DMPA 2; DMPA 1 is revoked", lambda: _handed_over(domain)
        )
        time.sleep(1.0)  # traffic after the move
        udp = steps.run("stop the stream", stream.stop)
        tcp = steps.run("stop the TCP session", session.stop)
        after = domain.binding(NAI)
        assert after is not None and after["hoa"] == s["address"], after
        s["handover"] = {
            "link_move_ms": round(moved.move_ms, 1),
            "interruption_ms": round(udp.interruption_ms, 1),
            "probes_sent": udp.sent,
            "probes_lost": udp.lost,
            "reordered": udp.reordered,
            "tcp_survived": tcp.survived,
            "address_kept": after["hoa"] == s["address"],
            "histogram_10ms": udp.histogram_10ms,
        }
        if not tcp.survived:
            raise AssertionError(f"the TCP session did not survive the handover: {tcp.error}")
        s["counters"] = {
            role: _short_counters(domain.ask(role, "counters")) for role in domain.processes
        }
    finally:
        codes = domain.stop()
        s["exit_codes"] = codes


def _start_both(stream: UdpStream, session: TcpSession) -> None:
    stream.start()
    session.start()


def _attach(client: DhcpClient, domain: Domain) -> Any:
    client.start(tries=10)
    lease = client.wait_lease(timeout=30.0)
    wait_until(lambda: domain.binding(NAI) is not None, 10.0, "the DLMAP's binding")
    return lease


def _ping_ok(lab: Lab, dst: str) -> Any:
    result = ping(lab, "ms", dst, count=3)
    if not result.ok:
        raise AssertionError(f"ping {dst}: {result.loss_pct}% loss")
    return result


def _handed_over(domain: Domain) -> None:
    wait_until(
        lambda: (domain.binding(NAI) or {}).get("dmpa") == str(DMPA_ADDRESSES[2]),
        10.0,
        "the binding to move to DMPA 2",
    )
    wait_until(lambda: domain.visitor("dmpa1", NAI) is None, 10.0, "DMPA 1 to drop the visitor")


def _short_counters(counters: dict[str, Any]) -> dict[str, int]:
    flat: dict[str, int] = {}
    for part, values in counters.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, int) and value and not key.endswith(".bytes"):
                    flat[f"{part}.{key}"] = value
    return flat


def _print_summary(report: Report) -> None:
    s = report.summary
    print()
    print("summary" if report.ok else "FAILED")
    if "address" in s:
        print(f"  MS address            {s['address']} (gateway {s.get('router')})")
    if "tcp_mbit_s" in s:
        print(f"  TCP MS -> CN          {s['tcp_mbit_s']} Mbit/s")
    if "ping_cn_ms" in s:
        print(f"  ping gateway / CN     {s['ping_gateway_ms']} / {s['ping_cn_ms']} ms")
    handover = s.get("handover")
    if handover:
        print(
            f"  handover              {handover['interruption_ms']} ms without traffic "
            f"(link move {handover['link_move_ms']} ms), {handover['probes_lost']} of "
            f"{handover['probes_sent']} probes lost"
        )
        print(f"  address kept          {handover['address_kept']}")
        print(f"  TCP session survived  {handover['tcp_survived']}")
    if "error" in s:
        print(f"  error                 {s['error']}")
    sys.stdout.flush()
