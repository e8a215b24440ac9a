"""Operating the appliance on real ``netlmm run`` processes in a namespace lab.

One lab run checks what an operator sees: the Prometheus endpoint scraped from inside each
node's namespace while real traffic moves its values (registration, forwarded packets, drops,
a handover with its revocation), JSON and text log lines, ``show bindings|counters|config``,
SIGHUP (a new profile admitted, the log level changed, a lifetime change reported as needing a
restart) and ``netlmm trace`` on a live capture of the DLMAP's transport link.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import subprocess
import sys
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import ping
from netlmm_lab.topology import (
    CN_ADDRESS,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    TRANSPORT_IF,
    Lab,
)
from router.cli import main
from tests.conftest import require
from tests.netns.children import REPO, child_argv

pytestmark = pytest.mark.root

PORT = 9477
NS = {"dlmap": "lm", "dmpa1": "m1", "dmpa2": "m2"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def nai(ms: str) -> str:
    return f"{ms}@example.org"


def scrape(lab: Lab, role: str) -> Samples:
    text = lab.exec(NS[role], child_argv("scrape", str(PORT)), cwd=REPO).stdout
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def add_to_node(path: Path, **keys: str) -> None:
    text = path.read_text()
    extra = "".join(f"{key} = {val}\n" for key, val in keys.items())
    path.write_text(text.replace("[node]\n", "[node]\n" + extra, 1))


def cli(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.fixture
def lab(root: None) -> Iterator[Lab]:
    with Lab(mobiles=2) as built:
        yield built


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts outside the lab's bookkeeping: killed by PID if still running."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_metrics_logs_show_sighup_and_trace_on_a_running_domain(
    lab: Lab, started: list[subprocess.Popen[bytes]], capsys: pytest.CaptureFixture[str]
) -> None:
    profile = MobileProfile(nai("ms"), lab.ms_mac("ms"), "dhcp")
    domain = Domain(lab, [profile], auth=True)
    for role in ("dlmap", "dmpa1", "dmpa2"):
        add_to_node(domain.config(role), metrics=f"127.0.0.1:{PORT}")
    add_to_node(domain.config("dlmap"), log_format="json")
    capture = lab.workdir / "transport.pcap"
    decoded = lab.workdir / "trace.jsonl"
    errors = lab.workdir / "trace.err"
    with decoded.open("w") as sink, errors.open("w") as err:
        # started in the root namespace: --netns takes it into the DLMAP's
        tracer = subprocess.Popen(
            [sys.executable, "-m", "router", "trace", "-i", TRANSPORT_IF, "--netns",
             lab.ns("lm"), "-w", str(capture), "--duration", "120", "--json"],
            stdout=sink.fileno(), stderr=err.fileno(),
        )  # fmt: skip
    started.append(tracer)
    wait_until(lambda: "capturing on" in errors.read_text(), 10.0, "the capture started")
    domain.start()
    before = scrape(lab, "dlmap")
    assert value(before, "netlmm_info", role="dlmap", name="lm", version=_version()) == 1
    assert value(before, "netlmm_bindings", state="bound") == 0

    # A registration and traffic both ways; then packets for an HoA nobody holds.
    lease = DhcpClient(lab, "ms").once(tries=10)
    wait_until(lambda: domain.binding(nai("ms")) is not None, 15.0, "ms bound")
    assert ping(lab, "ms", str(CN_ADDRESS), count=3).ok
    assert not ping(lab, "cn", "192.0.2.250", count=2).ok  # no binding: dropped at the DLMAP
    dlmap = scrape(lab, "dlmap")
    assert value(dlmap, "netlmm_bindings", state="bound") == 1
    assert value(dlmap, "netlmm_bindings_created_total") == 1
    assert value(dlmap, "netlmm_registrations_total", result="accepted", status="0") >= 1
    # the tier that runs ([node] datapath = auto: the kernel's where the probe passes) forwarded
    tier = "kernel" if value(dlmap, "netlmm_datapath_tier", tier="kernel") == 1 else "fastpath"
    assert value(dlmap, "netlmm_datapath_tier", tier="cython") == int(tier == "fastpath")
    for direction in ("uplink", "downlink"):
        assert value(dlmap, f"netlmm_{tier}_forwarded_packets_total", direction=direction) >= 3
        assert value(dlmap, f"netlmm_{tier}_forwarded_bytes_total", direction=direction) >= 252
    drops = value(
        dlmap, "netlmm_fastpath_dropped_packets_total", direction="downlink", reason="no_binding"
    )
    assert drops >= 2
    assert value(dlmap, "netlmm_dhcp_total", outcome="rx") >= 2  # DISCOVER and REQUEST
    assert value(dlmap, "netlmm_auth_total", outcome="rx.ok") >= 1  # RFC 4285 checks passed
    assert value(dlmap, "netlmm_mh_messages_total", direction="rx") >= 1
    dmpa1 = scrape(lab, "dmpa1")
    assert value(dmpa1, "netlmm_visitors", state="registered") == 1
    assert value(dmpa1, "netlmm_attaches_total") == 1
    assert value(dmpa1, "netlmm_registration_duration_seconds_count") == 1
    assert value(dmpa1, "netlmm_aaa_results_total", result="accept") == 1
    assert value(dmpa1, f"netlmm_{tier}_forwarded_packets_total", direction="uplink") >= 3

    # A handover: counted, timed, and the old DMPA's revocation acknowledged.
    lab.handover(2)
    wait_until(
        lambda: (
            ping(lab, "ms", str(CN_ADDRESS), count=1).ok
            and (domain.binding(nai("ms")) or {}).get("dmpa") == str(DMPA_ADDRESSES[2])
        ),
        20.0,
        "ms bound at DMPA 2",
    )

    def revoked() -> bool:
        now = scrape(lab, "dlmap")
        return value(now, "netlmm_revocations_total", result="acknowledged", status="0") == 1

    wait_until(revoked, 10.0, "the revocation acknowledged")
    dlmap = scrape(lab, "dlmap")
    assert value(dlmap, "netlmm_handovers_total") == 1
    assert value(dlmap, "netlmm_handover_duration_seconds_count") == 1
    assert value(dlmap, "netlmm_revocations_sent_total") == 1
    more = value(
        dlmap, "netlmm_fastpath_dropped_packets_total", direction="downlink", reason="no_binding"
    )
    assert more == drops  # nothing else dropped for lack of a binding

    # show bindings, counters, config through the CLI.
    socket = str(domain.configs.sockets["dlmap"])
    out = cli("show", "bindings", "--socket", socket, capsys=capsys)
    header, row = out.splitlines()
    assert header.split() == ["NAI", "HOA", "PREFIX", "DMPA", "AGE", "LEFT", "LIFETIME", "PACKETS"]
    assert row.split()[:4] == [nai("ms"), str(lease.address), "-", str(DMPA_ADDRESSES[2])]
    out = cli("show", "bindings", "--socket", socket, "--dmpa", str(DMPA_ADDRESSES[1]),
                    capsys=capsys)  # fmt: skip
    assert out.strip() == "(no bindings)"
    out = cli("show", "bindings", "--socket", socket, "--hoa", "192.0.2.0/24", "--json",
                    capsys=capsys)  # fmt: skip
    assert [r["nai"] for r in json.loads(out)] == [nai("ms")]
    out = cli("show", "counters", "--socket", socket, "--json", capsys=capsys)
    nonzero = json.loads(out)
    assert nonzero["core"]["handover"] == 1
    assert all(v for group in nonzero.values() for v in group.values())
    out = cli("show", "counters", "--socket", socket, "--all", "--json", capsys=capsys)
    assert json.loads(out)["fastpath"]["uplink.bad_checksum"] == 0
    out = cli("show", "config", "--socket", socket, capsys=capsys)
    lines = out.splitlines()
    assert "[node]" in lines and f"address = {DLMAP_ADDRESS}" in lines  # ini-shaped
    assert any(line.startswith("key_file = ") for line in lines)
    keys = (domain.configs.dlmap.parent / "dlmap.keys").read_text().split()
    assert keys[1] not in out and keys[3] not in out  # the key bytes never leave

    # Logs: the DLMAP's in JSON, a DMPA's as text, one event a line with its context.
    events = [json.loads(line) for line in domain.logs["dlmap"].read_text().splitlines()
              if line.startswith("{")]  # fmt: skip
    handover = [e for e in events if e["event"] == "handover"]
    assert handover and handover[0]["nai"] == nai("ms")
    assert handover[0]["new"] == str(DMPA_ADDRESSES[2])
    text = domain.logs["dmpa1"].read_text()
    assert f"registered nai={nai('ms')} hoa={lease.address}" in text

    # SIGHUP at DMPA 1: a new profile and log level apply, a lifetime change needs a restart.
    path = domain.config("dmpa1")
    ini = path.read_text().replace("log_level = info", "log_level = debug")
    ini = ini.replace("[dmpa]\n", "[dmpa]\nlifetime = 1200\n")
    ini += f"[profile {nai('ms2')}]\nmac = {lab.ms_mac('ms2')}\nmode = dhcp\n"
    ini += f"dlmap = {DLMAP_ADDRESS}\n"
    path.write_text(ini)
    domain.processes["dmpa1"].send_signal(signal.SIGHUP)
    wait_until(lambda: "reloaded applied=" in domain.tail("dmpa1", 50), 10.0, "reload logged")
    log = domain.tail("dmpa1", 50)
    assert "reload_needs_restart key=dmpa.lifetime" in log
    assert f"profile {nai('ms2')}" in log.split("reloaded applied=")[1]
    assert domain.processes["dmpa1"].poll() is None
    lease2 = DhcpClient(lab, "ms2").once(tries=10)  # admitted by the reloaded profile
    wait_until(lambda: domain.binding(nai("ms2")) is not None, 15.0, "ms2 bound")
    out = cli("show", "config", "--socket", str(domain.configs.sockets["dmpa1"]),
                    "--json", capsys=capsys)  # fmt: skip
    shown = json.loads(out)
    assert shown["sections"]["node"]["log_level"] == "debug"
    assert "lifetime" not in shown["sections"]["dmpa"]  # still the running value (default)
    assert shown["pending_restart"] == {"dmpa.lifetime": "1200"}
    assert f"profile {nai('ms2')}" in shown["sections"]
    assert shown["sections"][f"profile {nai('ms2')}"]["mac"] == lab.ms_mac("ms2")  # not hidden

    # The live capture, then netlmm trace on its file, one MS at a time.
    tracer.terminate()
    assert tracer.wait(15) == 0  # SIGTERM ends a live capture cleanly
    live = [json.loads(line) for line in decoded.read_text().splitlines()]
    assert {"PBU", "PBA", "BRI", "BRA", "DHCP"} <= {r["kind"] for r in live}
    out_ms = _trace(["-r", str(capture), "--nai", nai("ms")])
    kinds = {k for k in ("PBU", "PBA", "BRI", "BRA", "DHCP") if f"  {k} " in out_ms}
    assert kinds == {"PBU", "PBA", "BRI", "BRA", "DHCP"}, out_ms
    assert "type=DISCOVER" in out_ms  # before the PBU that names the MS: learned from the file
    assert nai("ms2") not in out_ms and str(lease2.address) not in out_ms
    out_ms2 = _trace(["-r", str(capture), "--mac", lab.ms_mac("ms2")])
    assert f"nai={nai('ms2')}" in out_ms2 and "  BRI " not in out_ms2
    assert f"nai={nai('ms')} " not in out_ms2
    dissected = _trace(["-r", str(capture), "--hoa", str(lease2.address), "--tshark"])
    assert "Mobile IPv6" in dissected and "Binding Update" in dissected


def _trace(argv: list[str]) -> str:
    from argparse import ArgumentParser

    from router.app.trace import add_trace_parser, trace_main

    parser = ArgumentParser()
    add_trace_parser(parser.add_subparsers(dest="command"))
    args: Namespace = parser.parse_args(["trace", *argv])
    out = io.StringIO()
    assert trace_main(args, out) == 0
    return out.getvalue()


def _version() -> str:
    from router import __version__

    return __version__


CAPS = "-all,+net_admin,+net_raw"


def test_the_service_s_two_capabilities_are_enough(lab: Lab) -> None:
    """What etc/systemd/netlmm@.service leaves a node (CapabilityBoundingSet and
    AmbientCapabilities CAP_NET_ADMIN CAP_NET_RAW, NoNewPrivileges): both roles start with
    nothing else (setpriv, as systemd would), register an MS and forward its traffic."""
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    domain = Domain(lab, [MobileProfile(nai("ms"), lab.ms_mac("ms"), "dhcp")])
    for role in ("dlmap", "dmpa1"):
        log = lab.workdir / f"{role}.log"
        domain.logs[role] = log
        argv = ["setpriv", f"--bounding-set={CAPS}", f"--inh-caps={CAPS}"]
        argv += [f"--ambient-caps={CAPS}", "--no-new-privs", sys.executable, "-m", "router"]
        argv += ["run", "-c", str(domain.config(role))]
        with log.open("ab") as out:
            domain.processes[role] = lab.popen(
                NS[role], argv, stdout=out.fileno(), stderr=subprocess.STDOUT
            )
    for role in ("dlmap", "dmpa1"):
        domain.wait_ready(role)
        status = Path(f"/proc/{domain.processes[role].pid}/status").read_text()
        effective = next(line for line in status.splitlines() if line.startswith("CapEff:"))
        assert int(effective.split()[1], 16) == (1 << 12) | (1 << 13)  # NET_ADMIN, NET_RAW
    DhcpClient(lab, "ms").once(tries=10)
    wait_until(lambda: domain.binding(nai("ms")) is not None, 15.0, "ms bound")
    assert ping(lab, "ms", str(CN_ADDRESS), count=2).ok
