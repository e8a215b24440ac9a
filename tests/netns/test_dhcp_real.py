"""The DLMAP's DHCP against real peers, each in namespaces the test makes.

(a) The relay adapter (:mod:`router.adapters.dhcp_socket`) in one namespace relays a tunnelled
    DISCOVER/REQUEST to a real Kea and a real dnsmasq in another, over a veth; the ACK must come
    back to the DMPA's tunnel and teach the pool NAI <-> HoA.
(b) The built-in server answers a real busybox udhcpc over a veth: a small harness in the peer
    namespace reads frames with an AF_PACKET socket, plays the DMPA (adds option 82 with the NAI),
    calls :meth:`DhcpServer.receive` and writes the replies to ``chaddr``. udhcpc must accept the
    OFFER/ACK and configure the address, gateway, MTU and its own resolv.conf.

Addresses: 192.0.2.0/24 between the namespaces, 198.51.100.0/24 for the MSs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from netlmm_lab import netns
from netlmm_lab.errors import LabError
from netlmm_lab.netns import namespace
from netlmm_lab.poll import wait_until
from netlmm_lab.servers import udp_listening
from tests.conftest import require
from tests.netns.children import child_argv, run_child
from tests.netns.dhcp_helpers import process, veth

NAI = "ms1@example.net"
GIADDR = "198.51.100.1"
SERVER = "192.0.2.2"


def kea_config(tmp: Path, interface: str) -> Path:
    config = {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [interface], "dhcp-socket-type": "udp"},
            "lease-database": {
                "type": "memfile",
                "persist": True,
                "name": str(tmp / "kea-leases4.csv"),
                "lfc-interval": 0,
            },
            "valid-lifetime": 600,
            "subnet4": [
                {
                    "id": 1,
                    "subnet": "198.51.100.0/24",
                    "pools": [{"pool": "198.51.100.100 - 198.51.100.150"}],
                    "option-data": [{"name": "routers", "data": GIADDR}],
                }
            ],
            "loggers": [
                {
                    "name": "kea-dhcp4",
                    "output_options": [{"output": "stdout"}],
                    "severity": "INFO",
                }
            ],
        }
    }
    path = tmp / "kea-dhcp4.json"
    path.write_text(json.dumps(config))
    return path


def _relay_against(tmp: Path, start_server: str) -> dict[str, object]:
    with namespace("srv") as srv, namespace("rly") as rly:
        veth(rly, "r0", "192.0.2.1/24", srv, "s0", f"{SERVER}/24")
        netns.ip(
            "-n", rly, "addr", "add", f"{GIADDR}/32", "dev", "lo"
        )  # the DLMAP's MS-subnet address
        netns.ip("-n", srv, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
        if start_server == "kea":
            argv = ["/usr/sbin/kea-dhcp4", "-c", str(kea_config(tmp, "s0"))]
            env = {"KEA_PIDFILE_DIR": str(tmp), "KEA_LOCKFILE_DIR": str(tmp)}
        else:
            argv = [
                "/usr/sbin/dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                f"--dhcp-leasefile={tmp / 'dnsmasq.leases'}",
                f"--pid-file={tmp / 'dnsmasq.pid'}",
                "--port=0",
                "--interface=s0",
                "--bind-interfaces",
                "--dhcp-range=198.51.100.100,198.51.100.150,255.255.255.0,600",
                f"--dhcp-option=option:router,{GIADDR}",
                "--dhcp-authoritative",
                "--no-ping",
                "--user=root",
                "--group=root",
                "--log-dhcp",
            ]
            env = {}
        log = tmp / f"{start_server}.log"
        with process(srv, argv, log, env) as daemon:

            def up() -> bool:
                if daemon.poll() is not None:
                    raise AssertionError(f"{start_server} exited:\n{log.read_text()}")
                return udp_listening(srv, 67)

            try:
                wait_until(up, 20, f"{start_server} listening on port 67")
            except LabError as exc:
                raise AssertionError(f"{exc}\n{log.read_text()}") from exc
            try:
                out = run_child(rly, "dhcp_relay", GIADDR, SERVER, NAI)
            except AssertionError as exc:
                raise AssertionError(f"relay driver: {exc}\n{log.read_text()}") from exc
            return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.root
@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_relay_against_real_server(root: None, server: str, tmp_path: Path) -> None:
    binary = {"kea": "/usr/sbin/kea-dhcp4", "dnsmasq": "/usr/sbin/dnsmasq"}[server]
    require(os.access(binary, os.X_OK), f"{binary} is not installed (make test installs it)")
    out = _relay_against(tmp_path, server)
    dmpa, dst, kind, yiaddr, has82 = out["offer"]  # type: ignore[misc]
    assert dmpa == "2001:db8:1::1" and kind == 2 and not has82
    assert yiaddr.startswith("198.51.100.") and dst in (yiaddr, "255.255.255.255")
    dmpa, dst, kind, ack_addr, has82, lease = out["ack"]  # type: ignore[misc]
    assert (dmpa, kind, ack_addr, has82) == ("2001:db8:1::1", 5, yiaddr, False)
    assert lease == 600
    # The DLMAP learned NAI <-> HoA from the ACK: the seed 6 PBU check will pass.
    assert out["pool"] == yiaddr
    counters = out["counters"]
    assert isinstance(counters, dict) and counters["learn.recorded"] == 1


# --- (b) udhcpc against the built-in server ---------------------------------------------------


SCRIPT = """#!/bin/sh
# udhcpc event script for the test: configure the namespace's link, log what udhcpc saw.
echo "$1 ip=$ip mask=$mask router=$router dns=$dns lease=$lease mtu=$mtu serverid=$serverid" \\
    >> "$DHCP_LOG"
case "$1" in
    deconfig)
        ip -4 addr flush dev "$interface"
        ;;
    bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
        for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
        : > "$RESOLV_CONF"
        for d in $dns; do echo "nameserver $d" >> "$RESOLV_CONF"; done
        ;;
esac
exit 0
"""


def _udhcpc(ns: str, tmp: Path, resolv: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    script = tmp / "udhcpc.sh"
    bounded = ["-q", "-n", "-f", "-t", "5", "-T", "1", "-A", "1"]
    return netns.run(
        ns,
        ["udhcpc", "-i", "c0", "-s", str(script), *bounded, *extra],
        timeout=60,
        env={"DHCP_LOG": str(tmp / "udhcpc.events"), "RESOLV_CONF": str(resolv)},
        check=False,
    )


@pytest.mark.root
def test_builtin_server_configures_real_udhcpc(root: None, tmp_path: Path) -> None:
    udhcpc = shutil.which("udhcpc")
    require(udhcpc is not None, "udhcpc is not installed (make test installs busybox-udhcpc)")
    script = tmp_path / "udhcpc.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    state = tmp_path / "server.json"
    with namespace("cli") as cli, namespace("dlm") as dlm:
        etc = netns.etc(cli)  # deleted with the namespace
        veth(dlm, "h0", "198.51.100.1/24", cli, "c0", "")
        resolv = etc / "resolv.conf"
        argv = child_argv("dhcp_server", "h0", NAI, str(state), "90")
        with process(dlm, argv, tmp_path / "harness.log"):
            first = _udhcpc(cli, tmp_path, resolv)
            events = (tmp_path / "udhcpc.events").read_text()
            assert first.returncode == 0, first.stderr + events
            assert "bound ip=198.51.100.65 mask=24 router=198.51.100.1" in events, events
            assert "dns=203.0.113.53 lease=600 mtu=1400 serverid=198.51.100.1" in events
            addr = netns.ip("-n", cli, "-4", "addr", "show", "dev", "c0")
            assert "inet 198.51.100.65/24" in addr and "mtu 1400" in addr
            assert "default via 198.51.100.1" in netns.ip("-n", cli, "route", "show")
            assert resolv.read_text() == "nameserver 203.0.113.53\n"

            def server_state() -> dict[str, object] | None:
                try:
                    return dict(json.loads(state.read_text()))
                except (OSError, ValueError):
                    return None

            seen = wait_until(server_state, 10, "the harness state")
            assert seen["seen"][:2] == [1, 3]  # type: ignore[index]
            assert seen["pool"] == "198.51.100.65"

            # Again, as a daemon this time: the same NAI gets the same address (INIT again,
            # a new xid); SIGUSR1 makes it renew (unicast REQUEST with ciaddr), SIGUSR2 release.
            netns.ip("-n", cli, "-4", "addr", "flush", "dev", "c0")
            events_file = tmp_path / "udhcpc.events"
            events_file.write_text("")
            argv = ["udhcpc", "-i", "c0", "-s", str(script), "-f", "-t", "5", "-T", "1"]
            env = {"DHCP_LOG": str(events_file), "RESOLV_CONF": str(resolv)}
            with process(cli, argv, tmp_path / "udhcpc2.log", env) as client:

                def client_event(word: str) -> bool:
                    if client.poll() is not None:
                        raise AssertionError((tmp_path / "udhcpc2.log").read_text())
                    return f"{word} ip=198.51.100.65 " in events_file.read_text()

                def counted(name: str) -> dict[str, object] | None:
                    current = server_state()
                    counters = current["counters"] if current else {}
                    assert isinstance(counters, dict)
                    return current if counters.get(name) else None

                wait_until(lambda: client_event("bound"), 20, "udhcpc bound again")
                os.kill(client.pid, signal.SIGUSR1)
                wait_until(lambda: client_event("renew"), 20, "udhcpc renewed")
                wait_until(lambda: counted("request.renewing"), 10, "a RENEWING request")
                os.kill(client.pid, signal.SIGUSR2)
                try:
                    after = wait_until(lambda: counted("release.done"), 10, "the RELEASE")
                except LabError as exc:
                    log2 = (tmp_path / "udhcpc2.log").read_text()
                    raise AssertionError(f"{exc}: {server_state()}\n{log2}") from exc
            assert after["owner"] == {NAI: "198.51.100.65"}
            assert after["pool"] == "198.51.100.65"  # kept for this NAI after the release
