"""``netlmm lab demo``: a whole domain on one machine, step by step, with a handover.

CN on the IPv4 side, a DLMAP, two DMPAs on an IPv6 transport, one IPv4-only MS with busybox
udhcpc, all in network namespaces; the appliance runs in each role from generated ini files
(embedded defaults: built-in DHCP server, local AAA profiles; ``dhcp="kea"|"dnsmasq"`` makes the
DLMAP relay DHCP to that server in the CN's namespace, ``aaa="radius"`` makes the DMPAs ask
FreeRADIUS in the DLMAP's namespace, see :mod:`netlmm_lab.servers`). The steps, each timed:

0. with real servers: start each of them (the step says which, where);
1. start the DLMAP and both DMPAs;
2. the MS attaches to DMPA 1 and asks DHCP: AAA, DHCP through the tunnel to the DLMAP, PBU/PBA;
3. the MS pings its gateway (answered by the DMPA) and the CN; a TCP transfer MS -> CN;
4. a handover: a UDP probe stream and a TCP session run while the MS's link moves to DMPA 2's
   cell; the MS keeps its address, DMPA 1 is revoked, the TCP session survives;
5. a plot of the handover: UDP echoes per 10 ms before, during and after the move, saved as a
   PNG at the path printed (:func:`netlmm_lab.plots.save_handover_plot`);
6. a summary (and ``--json``); everything is torn down, on error and Ctrl-C too.

Progress: each step is printed when it starts (its number, the time since the demo began) and
when it ends (how long it took); on a terminal a counter ticks while a step runs. With
``--json`` the progress goes to stderr and stdout carries only the JSON document.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TextIO, TypeVar

from netlmm_lab import dot1x, dualstack, plots, servers
from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import ROLES, Domain
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.servers import Server
from netlmm_lab.tools import TcpSession, UdpStream, ping, tcp_transfer
from netlmm_lab.topology import (
    CN_ADDRESS,
    DMPA_ADDRESSES,
    Lab,
)

T = TypeVar("T")
NAI = "ms@example.org"
#: The MS's NAI with 802.1X: its home AAA's realm (the visited AAA proxies by it).
DOT1X_NAI = f"ms@{dot1x.REALM}"
DOT1X_PASSWORD = "ms-lab-password"
AUTH_CHOICES = ("mac", "8021x")
#: Where the handover plot goes unless ``--plot`` says otherwise (the current directory).
DEFAULT_PLOT = Path("netlmm-demo-handover.png")
DHCP_CHOICES = ("builtin", *servers.DHCP_SERVERS)
PSEUDO_MAC = "02:00:5e:00:00:01"  # the lab's DMPAs answer with the appliance's default
AAA_CHOICES = ("local", "radius")


def check_backends(dhcp: str, aaa: str, auth: str = "mac") -> None:
    """Raise :class:`LabError` for an unknown choice or a server that is not installed."""
    if auth not in AUTH_CHOICES:
        raise LabError(f"unknown access authentication {auth!r} (one of {', '.join(AUTH_CHOICES)})")
    if auth == "8021x" and aaa != "local":
        raise LabError("--auth 8021x brings its own AAA (home and visited FreeRADIUS): no --aaa")
    if auth == "8021x" and dot1x.missing():
        raise LabError("; ".join(dot1x.missing()))
    if dhcp not in DHCP_CHOICES:
        raise LabError(f"unknown DHCP server {dhcp!r} (one of {', '.join(DHCP_CHOICES)})")
    if aaa not in AAA_CHOICES:
        raise LabError(f"unknown AAA {aaa!r} (one of {', '.join(AAA_CHOICES)})")
    needed = ([dhcp] if dhcp != "builtin" else []) + (["freeradius"] if aaa == "radius" else [])
    problems = servers.missing(*needed)
    if problems:
        raise LabError("; ".join(problems))


def domain_options(dhcp: str, aaa: str) -> dict[str, Any]:
    """The :class:`Domain` keywords for these back ends: a relay to the lab's DHCP server,
    RADIUS at the lab's FreeRADIUS."""
    options: dict[str, Any] = {}
    if dhcp != "builtin":
        options["dhcp"] = "relay"
        options["dhcp_servers"] = (str(servers.DHCP_ADDRESS),)
    if aaa == "radius":
        options["radius"] = (servers.radius_endpoint(), servers.RADIUS_SECRET)
    return options


def lab_profiles(lab: Lab, aaa: str) -> list[MobileProfile]:
    """The MS's local profile; none with RADIUS (the server knows the MS by its MAC and
    assigns dynamically: the MS asks DHCP through the tunnel)."""
    return [] if aaa == "radius" else [MobileProfile(NAI, lab.ms_mac(), "dhcp")]


def start_dhcp_title(dhcp: str) -> str:
    return f"start {dhcp} in cn on {servers.DHCP_ADDRESS} (the DLMAP relays DHCP to it)"


def start_aaa_title() -> str:
    return f"start FreeRADIUS in lm on {servers.radius_endpoint()} (the DMPAs' AAA)"


def start_backends(lab: Lab, dhcp: str, aaa: str, steps: Steps | None = None) -> dict[str, Server]:
    """Start the real servers these choices need (none for the embedded defaults); keyed
    ``dhcp`` and ``aaa``. Each is a step of ``steps`` when given."""

    def run(title: str, body: Callable[[], Server]) -> Server:
        return steps.run(title, body) if steps is not None else body()

    started: dict[str, Server] = {}
    if dhcp != "builtin":
        started["dhcp"] = run(start_dhcp_title(dhcp), lambda: servers.start_dhcp_server(lab, dhcp))
    if aaa == "radius":
        users = servers.radius_users("dynamic", nai=NAI, mac=lab.ms_mac())
        started["aaa"] = run(start_aaa_title(), lambda: servers.start_freeradius(lab, users))
    return started


def describe_backends(started: dict[str, Server]) -> dict[str, str]:
    dhcp = started.get("dhcp")
    aaa = started.get("aaa")
    haaa, vaaa = started.get("haaa"), started.get("vaaa")
    said = f"{aaa.describe()}, asked by the DMPAs" if aaa else "local profiles (the DMPAs)"
    if haaa is not None and vaaa is not None:
        said = (
            f"802.1X: hostapd on each access port -> the DMPA's RADIUS proxy -> visited "
            f"{vaaa.describe()} -> home {haaa.describe()}"
        )
    return {
        "dhcp": f"{dhcp.describe()}, relayed by the DLMAP" if dhcp else "built-in (the DLMAP)",
        "aaa": said,
    }


@dataclass
class Report:
    steps: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    ok: bool = False


class Steps:
    """Runs the demo's steps, timing each and printing progress to ``out`` (nothing when
    ``out`` is None). ``live``: rewrite the current line with the running time while a step
    runs (for a terminal)."""

    def __init__(self, report: Report, out: TextIO | None, *, live: bool = False) -> None:
        self.report, self.out, self.live = report, out, live
        self.began = time.monotonic()

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def run(self, title: str, body: Callable[[], T]) -> T:
        number = len(self.report.steps) + 1
        head = f"[{number:2}] {time.monotonic() - self.began:6.1f} s  {title} ..."
        ticker = _Ticker(self.out, head) if self.out is not None and self.live else None
        if self.out is not None and ticker is None:
            print(head, end="", file=self.out, flush=True)
        began = time.monotonic()
        try:
            result = body()
        except BaseException as exc:
            seconds = time.monotonic() - began
            if ticker is not None:
                ticker.stop()
            self.report.steps.append(
                {"step": title, "ok": False, "seconds": round(seconds, 3), "error": str(exc)}
            )
            if self.out is not None:
                print(f" FAILED after {seconds:.2f} s: {exc}", file=self.out, flush=True)
            raise
        seconds = time.monotonic() - began
        if ticker is not None:
            ticker.stop()
        self.report.steps.append({"step": title, "ok": True, "seconds": round(seconds, 3)})
        if self.out is not None:
            print(f" ok ({seconds * 1000:.0f} ms)", file=self.out, flush=True)
        return result


class _Ticker:
    """Rewrites ``head`` plus the running seconds every 0.2 s on a terminal, until stopped;
    leaves ``head`` on the line for the result."""

    PERIOD = 0.2

    def __init__(self, out: TextIO, head: str) -> None:
        self.out, self.head = out, head
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="demo-ticker", daemon=True)
        out.write(head)
        out.flush()
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.PERIOD):
            self.out.write(f"\r\x1b[K{self.head} {time.monotonic() - self.began:.1f} s")
            self.out.flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.out.write(f"\r\x1b[K{self.head}")
        self.out.flush()


def demo(
    *,
    as_json: bool = False,
    dialect: str = "draft",
    fastpath: str = "auto",
    dhcp: str = "builtin",
    aaa: str = "local",
    plot: Path | None = DEFAULT_PLOT,
    report_association: bool = True,
    auth: str = "mac",
    dual_stack: bool = False,
) -> int:
    """Run the demo; 0 when every step passed. ``plot``: where to save the handover plot
    (None: no plot). Progress goes to stdout, or to stderr with ``as_json`` (stdout is then
    the JSON document alone)."""
    report = Report()
    out = sys.stderr if as_json else sys.stdout
    steps = Steps(report, out, live=out.isatty())
    try:
        check_backends(dhcp, aaa, auth)
        if dual_stack and (aaa != "local" or auth != "mac"):
            raise LabError("--dual-stack uses the local profile (ipv6 = yes): no --aaa or --auth")
        plot = check_plot(plot, steps)
        with Lab() as lab:
            run_demo(
                lab,
                steps,
                report,
                dialect=dialect,
                fastpath=fastpath,
                dhcp=dhcp,
                aaa=aaa,
                plot=plot,
                report_association=report_association,
                auth=auth,
                dual_stack=dual_stack,
            )
        report.ok = True
    except (LabError, AssertionError, OSError) as exc:
        report.summary.setdefault("error", str(exc))
    except KeyboardInterrupt:
        report.summary["error"] = "interrupted"
    report.summary["seconds"] = round(time.monotonic() - steps.began, 1)
    if as_json:
        print(json.dumps({"ok": report.ok, "steps": report.steps, **report.summary}, indent=2))
    else:
        _print_summary(report)
    return 0 if report.ok else 1


def check_plot(plot: Path | None, steps: Steps) -> Path | None:
    """The plot's absolute path, or None (with a note) without matplotlib; :class:`LabError`
    before anything is built if the directory cannot be written."""
    if plot is None:
        return None
    if not plots.available():
        steps.say("no handover plot: matplotlib is not installed (pip install -e ./lab brings it)")
        return None
    plot = plot.resolve()
    if not plot.parent.is_dir() or not os.access(plot.parent, os.W_OK):
        raise LabError(
            f"cannot write the plot to {plot}: {plot.parent} is not a writable directory"
        )
    return plot


def run_demo(
    lab: Lab,
    steps: Steps,
    report: Report,
    *,
    dialect: str,
    fastpath: str,
    dhcp: str = "builtin",
    aaa: str = "local",
    plot: Path | None = None,
    report_association: bool = True,
    auth: str = "mac",
    dual_stack: bool = False,
) -> None:
    """``dual_stack``: the MS runs IPv6 too (SLAAC, a TCP session over IPv6 across the move:
    :class:`netlmm_lab.dualstack.DemoPart`). ``report_association``: DMPA 2's cell reports the
    MS's association (``netlmm attach``, what an access point's hook does) right after the
    move; without it DMPA 2 learns of the MS from its first frame, which a Linux MS sends only
    when it retries the ARP for its gateway (1 s later: its first try went out while its link
    was down)."""
    options = domain_options(dhcp, aaa)
    secure = auth == "8021x"
    nai = DOT1X_NAI if secure else NAI
    if secure:
        dot1x.pass_eapol(lab)
        options["dot1x"] = dot1x.dmpa_config(lab)
    profiles = [] if secure else lab_profiles(lab, aaa)
    dual = dualstack.DemoPart(lab) if dual_stack else None
    if dual is not None:
        profiles = dual.prepare(options, profiles)
    domain = Domain(lab, profiles, dialect=dialect, fastpath=fastpath, **options)
    s = report.summary
    s["dialect"] = dialect
    s["auth"] = auth
    started: dict[str, Server] = {}
    supplicant: Server | None = None
    steps.say(
        f"lab {lab.prefix}: CN, DLMAP, two DMPAs and an MS in network namespaces "
        f"(DHCP: {dhcp}, AAA: {aaa}, access: {auth})"
    )
    try:
        started.update(start_backends(lab, dhcp, aaa, steps))
        if secure:
            started.update(_start_dot1x(lab, steps))
        s["servers"] = describe_backends(started)
        steps.run("start the DLMAP and both DMPAs (netlmm run)", domain.start)
        s["datapath"] = {  # which data-path tier each node runs ([node] datapath = auto)
            role: next(t[5:] for t, on in domain.ask(role, "counters")["datapath"].items() if on)
            for role in domain.processes
        }
        client = DhcpClient(lab)
        aaa_by = "FreeRADIUS" if aaa == "radius" else "local profile"
        dhcp_by = f"relayed to {dhcp}" if dhcp != "builtin" else "the DLMAP's server"
        if secure:
            ca = lab.workdir / "servers" / "dot1x" / "haaa" / "ca.pem"
            supplicant = steps.run(
                f"MS starts 802.1X (wpa_supplicant, EAP-TTLS/PAP as anonymous@{dot1x.REALM}, "
                f"inner identity {nai})",
                lambda: dot1x.start_supplicant(lab, "ms", "ttls", nai, DOT1X_PASSWORD, ca),
            )
            aaa_by = "802.1X: hostapd, the DMPA's RADIUS proxy, visited -> home FreeRADIUS"
        lease = steps.run(
            f"MS attaches to DMPA 1: AAA ({aaa_by}), DHCP through the tunnel ({dhcp_by}), PBU/PBA",
            lambda: _attach(client, domain, nai),
        )
        s["address"] = str(lease.address)
        s["router"] = str(lease.router)
        binding = domain.binding(nai)
        assert binding is not None and binding["dmpa"] == str(DMPA_ADDRESSES[1]), binding
        _check_backends_served(domain, lease.address, dhcp, aaa)
        steps.say(
            f"    MS {lab.ms_mac()} has {lease.address}/{lease.prefix_len}, gateway "
            f"{lease.router}; DLMAP binding {nai} -> {binding['dmpa']}"
        )
        gw = steps.run(
            "MS pings its gateway (answered by DMPA 1)", lambda: _ping_ok(lab, str(lease.router))
        )
        cn = steps.run("MS pings the CN through the tunnel", lambda: _ping_ok(lab, str(CN_ADDRESS)))
        if dual is not None:
            slaac = steps.run(
                "MS configures IPv6 by SLAAC from the DMPA's RA (router fe80:: of the pseudo-MAC)",
                dual.attach,
            )
            steps.say(f"    MS has {slaac.address}, default router {slaac.router}")
            steps.run("MS pings the CN over IPv6 through the tunnel", dual.ping)
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
        # Moments of the handover, time.monotonic() in this process; the probe stream's clock
        # starts when it says "started" (the same CLOCK_MONOTONIC, a few ms of pipe latency).
        clock: dict[str, float] = {}
        steps.run(
            "start a UDP probe stream (every 5 ms) and a TCP session MS <-> CN",
            lambda: _start_both(stream, session, clock),
        )
        if dual is not None:
            steps.run(
                "start a TCP session MS <-> CN over IPv6",
                lambda: dual.start_session(session.port + 1),
            )
        watch = _Dot1xWatch(lab) if secure else None
        steps.run("traffic before the move (0.5 s)", lambda: time.sleep(0.5))
        clock["move"] = time.monotonic()
        moved = steps.run("handover: the MS's link moves to DMPA 2's cell", lambda: lab.handover(2))
        if dual is not None:
            dual.moved()
        if supplicant is not None:
            clock["reauth"] = time.monotonic()
            steps.run(
                "MS re-authenticates at DMPA 2 (EAPOL-Start: wpa_cli reauthenticate)",
                lambda: dot1x.reauthenticate(lab, "ms", supplicant),
            )
        elif report_association:
            steps.run(
                "DMPA 2's cell reports the association (netlmm attach)",
                lambda: domain.associated("dmpa2", lab.ms_mac()),
            )
        steps.run(
            "DLMAP moves the binding to DMPA 2; DMPA 1 is revoked",
            lambda: _handed_over(domain, clock, nai),
        )
        steps.run("traffic after the move (1 s)", lambda: time.sleep(1.0))
        if watch is not None:
            s["dot1x"] = watch.report(domain, clock)
        udp = steps.run("stop the stream", stream.stop)
        tcp = steps.run("stop the TCP session", session.stop)
        if dual is not None:
            s["dual_stack"] = steps.run("stop the IPv6 TCP session", dual.stop)
            if not s["dual_stack"]["tcp6_survived"] or not s["dual_stack"]["address_kept"]:
                raise AssertionError(f"IPv6 across the handover: {s['dual_stack']}")
        after = domain.binding(nai)
        assert after is not None and after["hoa"] == s["address"], after
        marks = _handover_marks(clock, moved.carrier_ms)
        s["handover"] = {
            "association_reported": report_association and not secure,
            "link_move_ms": round(moved.move_ms, 1),
            "carrier_ms": round(moved.carrier_ms, 1),
            "interruption_ms": round(udp.interruption_ms, 1),
            "max_gap_ms": udp.max_gap_ms,
            "interval_ms": udp.interval_ms,
            "probes_sent": udp.sent,
            "probes_received": udp.received,
            "probes_lost": udp.lost,
            "reordered": udp.reordered,
            "tcp_survived": tcp.survived,
            "address_kept": after["hoa"] == s["address"],
            "histogram_10ms": udp.histogram_10ms,
            "marks_s": marks,
        }
        if not tcp.survived:
            raise AssertionError(f"the TCP session did not survive the handover: {tcp.error}")
        if plot is not None:
            title = (
                f"netlmm lab demo ({dialect}): MS {s['address']} moves from DMPA 1 to DMPA 2, "
                f"{udp.lost} of {udp.sent} probes lost"
            )
            s["plot"] = str(
                steps.run(
                    f"plot the handover (UDP echoes per 10 ms) to {plot}",
                    lambda: plots.save_handover_plot(
                        plot,
                        udp.histogram_10ms,
                        interval_ms=udp.interval_ms,
                        interruption_ms=udp.interruption_ms,
                        origin_s=marks["link moves"],
                        marks=marks,
                        title=title,
                    ),
                )
            )
        s["counters"] = {
            role: _short_counters(domain.ask(role, "counters")) for role in domain.processes
        }
    except BaseException:
        s["logs"] = {role: domain.tail(role, 20) for role in ROLES if role in domain.logs}
        s["logs"].update({server.name: server.tail(20) for server in started.values()})
        raise
    finally:
        codes = domain.stop()
        s["exit_codes"] = codes
        if started:
            s["server_exit_codes"] = {
                server.name: servers.stop(lab, server) for server in started.values()
            }


def _check_backends_served(domain: Domain, address: Any, dhcp: str, aaa: str) -> None:
    """The real servers did the work: the address is from the DHCP server's range, not the
    DLMAP's pool; DMPA 1 got an Access-Accept."""
    if dhcp != "builtin":
        first, last = (IPv4Address(a) for a in servers.SERVER_RANGE)
        if not first <= IPv4Address(str(address)) <= last:
            raise AssertionError(f"{address} is not from {dhcp}'s range {first}-{last}")
    if aaa == "radius":
        counters = domain.ask("dmpa1", "counters").get("aaa", {})
        if not counters.get("accept"):
            raise AssertionError(f"DMPA 1 has no RADIUS Access-Accept: {counters}")


def _start_both(stream: UdpStream, session: TcpSession, clock: dict[str, float]) -> None:
    stream.start()
    clock["stream"] = time.monotonic()
    session.start()


def _handover_marks(clock: dict[str, float], carrier_ms: float) -> dict[str, float]:
    """The handover's moments in seconds since the probe stream started (the plot's clock)."""
    start = clock["stream"]
    marks = {
        "link moves": clock["move"] - start,
        "carrier back on the MS": clock["move"] - start + carrier_ms / 1000.0,
        "binding at DMPA 2 (polled)": clock["bound"] - start,
        "DMPA 1 revoked (polled)": clock["revoked"] - start,
    }
    return {label: round(seconds, 4) for label, seconds in marks.items()}


def _attach(client: DhcpClient, domain: Domain, nai: str) -> Any:
    client.start(tries=10)
    lease = client.wait_lease(timeout=30.0)
    wait_until(lambda: domain.binding(nai) is not None, 10.0, "the DLMAP's binding")
    return lease


def _start_dot1x(lab: Lab, steps: Steps) -> dict[str, Server]:
    """The home and visited FreeRADIUS (EAP, proxy by realm) and hostapd on both access ports."""
    subscriber = dot1x.Subscriber(DOT1X_NAI, DOT1X_PASSWORD)
    haaa, vaaa, _ = steps.run(
        f"start the home AAA (FreeRADIUS, EAP-TTLS/PEAP, certificates made now) and the "
        f"visited AAA proxying realm {dot1x.REALM} to it, in lm",
        lambda: dot1x.start_aaa(lab, [subscriber]),
    )
    started = {"haaa": haaa, "vaaa": vaaa}
    for index in (1, 2):
        started[f"hostapd{index}"] = steps.run(
            f"start hostapd (driver=wired, 802.1X) on DMPA {index}'s access port, its RADIUS "
            "client at the DMPA's proxy",
            lambda index=index: dot1x.start_hostapd(lab, index),  # type: ignore[misc]
        )
    return started


class _Dot1xWatch:
    """The handover's 802.1X moments: hostapd's success at DMPA 2 (the lab's own monitor on its
    control socket) and the first IPv4 frame the MS gets from the DMPAs after it."""

    def __init__(self, lab: Lab) -> None:
        self.events = dot1x.EventWatch(lab, 2, lab.ms_mac())
        self.arrivals = dot1x.Arrivals(lab, "ms", PSEUDO_MAC)

    def report(self, domain: Domain, clock: dict[str, float]) -> dict[str, Any]:
        self.events.close()
        self.arrivals.close()
        if not self.events.successes:
            raise AssertionError("hostapd at DMPA 2 reported no EAP success")
        authorized = self.events.successes[0]
        first = self.arrivals.first_after(authorized)
        if first is None:
            raise AssertionError("no packet reached the MS after its authorization at DMPA 2")
        eap = re.findall(r"authorized mac=\S+ link=\S+ nai=\S+ eap_ms=([\d.]+)", domain.tail(
            "dmpa2", 400))  # fmt: skip
        return {
            "authorization_to_first_packet_ms": round((first - authorized) * 1000, 1),
            "eap_radius_ms": float(eap[-1]) if eap else None,
            "reauth_to_authorization_ms": round((authorized - clock["reauth"]) * 1000, 1),
            "move_to_first_packet_ms": round((first - clock["move"]) * 1000, 1),
        }


def _ping_ok(lab: Lab, dst: str) -> Any:
    result = ping(lab, "ms", dst, count=3)
    if not result.ok:
        raise AssertionError(f"ping {dst}: {result.loss_pct}% loss")
    return result


def _handed_over(domain: Domain, clock: dict[str, float], nai: str) -> None:
    wait_until(
        lambda: (domain.binding(nai) or {}).get("dmpa") == str(DMPA_ADDRESSES[2]),
        10.0,
        "the binding to move to DMPA 2",
        interval=0.02,
    )
    clock["bound"] = time.monotonic()
    wait_until(
        lambda: domain.visitor("dmpa1", nai) is None,
        10.0,
        "DMPA 1 to drop the visitor",
        interval=0.02,
    )
    clock["revoked"] = time.monotonic()


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
    for kind, text in s.get("servers", {}).items():
        print(f"  {'DHCP' if kind == 'dhcp' else 'AAA':22}{text}")
    if "datapath" in s:
        tiers = ", ".join(f"{role} {tier}" for role, tier in s["datapath"].items())
        print(f"  data-path tier        {tiers}")
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
    dual = s.get("dual_stack")
    if dual:
        print(f"  IPv6 (SLAAC)          {dual['address']} (router {dual['router']})")
        print(
            f"  IPv6 across the move  address kept {dual['address_kept']}, TCP session survived "
            f"{dual['tcp6_survived']} (max RTT {dual['tcp6_max_rtt_ms']} ms), MS's DAD after "
            f"the move {dual['dad_after_move_s']} s"
        )
    if "dot1x" in s:
        d = s["dot1x"]
        print(
            f"  802.1X at DMPA 2      {d['authorization_to_first_packet_ms']} ms from hostapd's "
            f"success to the first packet at the MS; EAP over RADIUS {d['eap_radius_ms']} ms; "
            f"EAPOL-Start to success {d['reauth_to_authorization_ms']} ms"
        )
    if "plot" in s:
        print(f"  handover plot         {s['plot']}")
    if "seconds" in s:
        print(f"  demo took             {s['seconds']} s")
    if "error" in s:
        print(f"  error                 {s['error']}")
    for name, text in s.get("logs", {}).items() if not report.ok else ():
        print(f"  --- {name} log (tail) ---")
        for line in text.splitlines()[-10:]:
            print(f"    {line}")
    sys.stdout.flush()
