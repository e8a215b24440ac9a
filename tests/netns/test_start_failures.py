"""Start failures as an operator meets them, on real ``netlmm run`` processes in namespaces.

* A second ``netlmm run`` of a running node (either role) refuses with one line naming the
  first's pid and exit 2, before its start-up sweep: the running node keeps its devices and
  keeps forwarding.
* Every start failure the node can know about is one ``start_failed key=... problem=...
  fix=...`` line, exit 2, no traceback (docs/operations.md lists them).
* ``netlmm check-config`` refuses an access interface that is the transport interface or
  carries an IPv4 address.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlmm_lab import netns
from netlmm_lab.configs import MobileProfile
from netlmm_lab.dhcp_client import DhcpClient
from netlmm_lab.domain import Domain
from netlmm_lab.poll import wait_until
from netlmm_lab.tools import ping
from netlmm_lab.topology import CN_ADDRESS, Lab
from tests.conftest import require
from tests.netns.children import REPO

pytestmark = pytest.mark.root

ADDRESS = "2001:db8:5f::1"


def run_node(ns: str, ini: Path, *extra: str, timeout: float = 30.0) -> tuple[int, str]:
    """``netlmm run -c ini`` in ``ns`` until it exits: (status, stderr)."""
    argv = [*extra, sys.executable, "-m", "router", "run", "-c", str(ini)]
    done = netns.run(ns, argv, timeout=timeout, check=False, cwd=REPO)
    return done.returncode, done.stderr


def failures(stderr: str) -> list[dict[str, str]]:
    """The JSON log lines of event ``start_failed``."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["event"] == "start_failed":
                out.append(record)
    return out


def test_a_second_run_of_a_running_node_refuses_and_the_first_keeps_working(
    root: None,
) -> None:
    with Lab(mobiles=1) as lab:
        domain = Domain(lab, [MobileProfile("ms@example.org", lab.ms_mac("ms"), "dhcp")])
        domain.start(("dlmap", "dmpa1"))
        DhcpClient(lab, "ms").once(tries=10)
        wait_until(lambda: domain.binding("ms@example.org") is not None, 15.0, "ms bound")
        assert ping(lab, "ms", str(CN_ADDRESS), count=2).ok
        links_before = {ns: _owned_links(lab, ns) for ns in ("lm", "m1")}
        assert all(links_before.values()), links_before
        for role, ns, name in (("dmpa1", "m1", "m1"), ("dlmap", "lm", "lm")):
            pid = domain.processes[role].pid
            argv = [sys.executable, "-m", "router", "run", "-c", str(domain.config(role))]
            second = lab.exec(ns, argv, check=False, timeout=30.0)
            assert second.returncode == 2, second.stderr
            lines = [ln for ln in second.stderr.splitlines() if "start_failed" in ln]
            assert len(lines) == 1, second.stderr
            assert f'problem="{name} already running (pid {pid})"' in lines[0]
            assert "key=node.name" in lines[0] and "fix=" in lines[0]
            assert "Traceback" not in second.stderr
        # the first nodes kept every device and still forward
        assert {ns: _owned_links(lab, ns) for ns in ("lm", "m1")} == links_before
        assert ping(lab, "ms", str(CN_ADDRESS), count=3).ok
        assert domain.binding("ms@example.org") is not None
        assert domain.stop() == {"dlmap": 0, "dmpa1": 0}


def _owned_links(lab: Lab, ns: str) -> list[str]:
    return sorted(link["ifname"] for link in lab.links(ns) if str(link["ifname"]).startswith("nl"))


@pytest.fixture(scope="module")
def host() -> Iterator[str]:
    """A namespace with node.address on ``tr0`` (the transport), ``acc0`` (a free access
    interface) and ``v4acc`` (an interface with an IPv4 address)."""
    require(os.geteuid() == 0, "needs root for network namespaces")
    with netns.namespace("sf") as ns:
        for name in ("tr0", "acc0", "v4acc"):
            netns.ip("-n", ns, "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            for end in (name, f"{name}p"):
                netns.ip("-n", ns, "link", "set", end, "up")
        netns.ip("-n", ns, "-6", "addr", "add", f"{ADDRESS}/64", "dev", "tr0", "nodad")
        netns.ip("-n", ns, "-4", "addr", "add", "192.0.2.7/24", "dev", "v4acc")
        yield ns


def dmpa_ini(folder: Path, **node: str) -> Path:
    """A DMPA ini in ``folder`` (its state and socket there too); ``node`` and ``access``
    override keys."""
    access = node.pop("access", "acc0")
    keys = {
        "role": "dmpa",
        "name": "sf",
        "address": ADDRESS,
        "state_dir": str(folder / "state"),
        "control_socket": str(folder / "sf.sock"),
        "log_format": "json",
        **node,
    }
    text = "[node]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    text += f"[dmpa]\naccess = {access}\ngateway = 192.0.2.1\n"
    text += "[peer 2001:db8:5f::2]\ninsecure = yes\n"
    path = folder / "dmpa.ini"
    path.write_text(text)
    return path


def _expect(stderr: str, status: int, key: str, problem: str) -> dict[str, str]:
    assert "Traceback" not in stderr, stderr
    found = failures(stderr)
    assert len(found) == 1, stderr
    record = found[0]
    assert record["key"] == key, record
    assert problem in record["problem"], record
    assert record["fix"], record
    assert record["level"] == "error"
    return record


def test_start_failures_are_one_line_with_the_key_and_exit_2(host: str, tmp_path: Path) -> None:
    regular = tmp_path / "a-file"
    regular.write_text("not a directory\n")
    not_dir = "it exists and is not a directory"
    cases = [
        ({"access": "nosuch0"}, "dmpa.access", "no interface nosuch0 in this network namespace"),
        ({"access": "tr0"}, "dmpa.access", "tr0 is the transport interface"),
        ({"access": "v4acc"}, "dmpa.access", "v4acc carries the IPv4 address 192.0.2.7"),
        ({"state_dir": str(regular)}, "node.state_dir", f"{regular} exists and is not a dir"),
        ({"state_dir": str(regular / "sub")}, "node.state_dir", "sub: Not a directory"),
        ({"control_socket": str(regular / "x.sock")}, "node.control_socket", not_dir),
    ]
    for number, (keys, key, problem) in enumerate(cases):
        folder = tmp_path / f"case{number}"
        folder.mkdir()
        status, stderr = run_node(host, dmpa_ini(folder, **keys))
        assert status == 2, (keys, stderr)
        _expect(stderr, status, key, problem)
        assert netns.ip("-n", host, "-o", "link").count("nlsf") == 0  # nothing was created


def test_without_cap_net_raw_it_says_so(host: str, tmp_path: Path) -> None:
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) is not installed")
    setpriv = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw"]
    status, stderr = run_node(host, dmpa_ini(tmp_path), *setpriv)
    assert status == 2, stderr
    record = _expect(stderr, status, "-", "no CAP_NET_RAW")
    assert "root" in record["fix"]


def test_an_address_that_never_comes_is_one_line_after_the_wait(host: str, tmp_path: Path) -> None:
    status, stderr = run_node(host, dmpa_ini(tmp_path, address="2001:db8:5f::99"))
    assert status == 2, stderr
    waiting = [json.loads(ln) for ln in stderr.splitlines() if '"address_wait"' in ln]
    assert len(waiting) == 1 and waiting[0]["key"] == "node.address", stderr
    _expect(stderr, status, "node.address", "2001:db8:5f::99 not configured on any interface")


def test_check_config_refuses_the_transport_or_an_addressed_access_interface(
    host: str, tmp_path: Path
) -> None:
    def check(access: str) -> subprocess.CompletedProcess[str]:
        folder = tmp_path / access
        folder.mkdir()
        ini = dmpa_ini(folder, access=access)
        argv = [sys.executable, "-m", "router", "check-config", str(ini)]
        return netns.run(host, argv, check=False, cwd=REPO)

    assert check("acc0").returncode == 0
    transport = check("tr0")
    assert transport.returncode == 2
    assert "error: dmpa.access: tr0 is the transport interface" in transport.stderr
    addressed = check("v4acc")
    assert addressed.returncode == 2
    assert "error: dmpa.access: v4acc carries the IPv4 address 192.0.2.7" in addressed.stderr
    missing = check("nosuch0")
    assert missing.returncode == 0  # checked on another machine, maybe: a warning here
    assert "warning: dmpa.access: no interface nosuch0" in missing.stderr


def test_readiness_watchdog_reload_and_stop_reach_notify_socket(host: str, tmp_path: Path) -> None:
    """State files 0600 in a 0700 directory with the umask of a shell (022).
    ``Type=notify``: READY=1 once the node serves, WATCHDOG=1 every half of
    ``$WATCHDOG_USEC`` from its loop, RELOADING=1 then READY=1 around a reload, STOPPING=1 at
    SIGTERM; the socket is the test's own (CI has no systemd as PID 1)."""
    import socket as sockets
    import time

    from router.cli import main

    listener = sockets.socket(sockets.AF_UNIX, sockets.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.settimeout(10.0)
    ini = dmpa_ini(tmp_path)
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    argv = [sys.executable, "-m", "router", "run", "-c", str(ini)]
    old_umask = os.umask(0o022)  # a shell's, not systemd's UMask=0077
    try:
        process = netns.popen(host, argv, env=env, cwd=REPO)
    finally:
        os.umask(old_umask)
    try:
        ready = listener.recv(4096).decode().splitlines()
        assert ready[0] == "READY=1" and f"MAINPID={process.pid}" in ready, ready
        # state private without systemd's UMask=: the directory 0700, its files 0600
        state = tmp_path / "state"
        assert state.stat().st_mode & 0o777 == 0o700
        files = [p for p in state.iterdir() if p.is_file()]
        assert {p.name for p in files} >= {"lock", "state.sqlite"}
        assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o600 for p in files}
        began = time.monotonic()
        pings = [listener.recv(4096).decode() for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        assert time.monotonic() - began >= 0.3  # every 0.2 s, not in a burst
        assert main(["reload", "--socket", str(tmp_path / "sf.sock")]) == 0
        seen = [listener.recv(4096).decode() for _ in range(6)]
        reloading = next(i for i, m in enumerate(seen) if m.startswith("RELOADING=1\n"))
        assert "MONOTONIC_USEC=" in seen[reloading]
        assert any(m.startswith("READY=1\nSTATUS=reloaded") for m in seen[reloading:]), seen
        process.send_signal(15)
        messages = []
        for _ in range(50):  # the pings due meanwhile, then STOPPING=1
            messages.append(listener.recv(4096).decode())
            if messages[-1] == "STOPPING=1":
                break
        assert messages[-1] == "STOPPING=1", messages
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
        listener.close()
