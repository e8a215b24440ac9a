"""A real Linux host stack on the access side: arping, ping and udhcpc against our services.

Two namespaces: the MS (``msv0``) and the DMPA side, where ``dmv0`` (the veth peer) is bridged
with a TAP that a harness process reads and answers with the access services (seed 5.2-5.4).
The harness plays AAA and the DLMAP (every PBU accepted with the HoA), so the MS's kernel,
iputils and busybox udhcpc are the only real peers. Nothing in the root namespace changes;
the namespaces, the harness process (by PID) and ``/etc/netns/<ns>`` are removed even on failure.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from netlmm_lab import netns
from netlmm_lab.netns import namespace
from netlmm_lab.poll import read_line, wait_until
from tests.conftest import require
from tests.netns.access_helpers import (
    DNS,
    DOMAIN,
    GATEWAY,
    HOA,
    PSEUDO_TEXT,
    UDHCPC_SCRIPT,
    access_link,
    bridge_ports,
    forwarding,
    stop,
)
from tests.netns.children import REPO, child_argv

pytestmark = pytest.mark.root


def tools() -> None:
    for tool in ("arping", "ping", "udhcpc", "bridge"):
        require(shutil.which(tool) is not None, f"{tool} is not installed (make setup installs it)")


@contextmanager
def access(mode: str, seconds: float = 40.0) -> Iterator[tuple[str, dict[str, object]]]:
    """The MS namespace, with the harness answering its link; yields (ms_ns, report), the
    report being filled with the harness's counters once it has stopped."""
    report: dict[str, object] = {}
    with namespace("ms") as ms_ns, namespace("dm") as dm_ns:
        access_link(ms_ns, dm_ns)
        harness = netns.popen(
            dm_ns, child_argv("access_harness", "tap0", mode, str(seconds)), cwd=REPO,
            stdin=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            assert read_line(harness, 20, "the access harness") == "ready"
            wait_until(
                lambda: bridge_ports(dm_ns),
                max(0.1, deadline - time.monotonic()),
                "the bridge ports dmv0 and tap0 forwarding",
                ready=lambda state: forwarding(state, ("dmv0", "tap0")),
            )
            yield ms_ns, report
        finally:
            out, err = stop(harness)
        assert harness.returncode == 0, err
        report.update(json.loads(out.strip().splitlines()[-1]))


def in_ns(
    ns: str, *command: str, timeout: float = 30, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in namespace ``ns``; bounded by ``timeout``."""
    return netns.run(ns, command, timeout=timeout, env=env, check=False)


def test_arping_and_ping_the_gateway(root: None) -> None:
    tools()
    with access("static") as (ms, report):
        netns.ip("-n", ms, "addr", "add", f"{HOA}/24", "dev", "msv0")
        arping = in_ns(ms, "arping", "-c", "2", "-w", "5", "-I", "msv0", str(GATEWAY))
        assert arping.returncode == 0, arping.stdout + arping.stderr
        assert PSEUDO_TEXT.upper() in arping.stdout.upper(), arping.stdout
        ping = in_ns(ms, "ping", "-c", "2", "-W", "2", str(GATEWAY))
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert " 0% packet loss" in ping.stdout
        neigh = netns.ip("-n", ms, "neigh", "show", str(GATEWAY))
        assert PSEUDO_TEXT in neigh.lower()
    counters = report["counters"]
    assert isinstance(counters, dict)
    assert counters["arp.reply"] >= 2 and counters["icmp.echo_reply"] >= 2


def test_udhcpc_gets_the_hoa_from_the_colocated_server(root: None) -> None:
    tools()
    with tempfile.TemporaryDirectory() as tmp, access("dlmap") as (ms, report):
        script = Path(tmp, "udhcpc.script")
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        lease_file = Path(tmp, "lease")
        netns_etc = netns.etc(ms)  # the namespace's own, deleted with it; the host's is untouched
        env = {
            "NETLMM_NETNS_ETC": str(netns_etc),
            "NETLMM_LEASE_FILE": str(lease_file),
        }
        udhcpc = in_ns(
            ms,
            "udhcpc", "-i", "msv0", "-q", "-n", "-t", "4", "-T", "1", "-f", "-s", str(script),
            timeout=30,
            env=env,
        )  # fmt: skip
        assert udhcpc.returncode == 0, udhcpc.stdout + udhcpc.stderr
        lease = dict(
            line.split("=", 1) for line in lease_file.read_text().splitlines() if "=" in line
        )
        assert lease["ip"] == str(HOA)
        assert lease["router"].split()[0] == str(GATEWAY)
        assert lease["serverid"] == str(GATEWAY)
        assert lease["subnet"] == "255.255.255.0"
        assert 0 < int(lease["lease"]) <= 3600
        assert f"{HOA}/24" in netns.ip("-n", ms, "-4", "addr", "show", "dev", "msv0")
        assert f"default via {GATEWAY}" in netns.ip("-n", ms, "-4", "route", "show")
        resolv = (netns_etc / "resolv.conf").read_text()
        assert f"nameserver {DNS}" in resolv and f"search {DOMAIN}" in resolv
        ping = in_ns(ms, "ping", "-c", "2", "-W", "2", str(GATEWAY))
        assert ping.returncode == 0, ping.stdout + ping.stderr
    counters = report["counters"]
    assert isinstance(counters, dict)
    assert counters["dhcp.server.offer"] >= 1 and counters["dhcp.server.ack"] >= 1
    visitors = report["visitors"]
    assert isinstance(visitors, dict) and len(visitors) == 1  # the MS's veth, nothing else
    assert list(visitors.values()) == [["registered", str(HOA)]]
