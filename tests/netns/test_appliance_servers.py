"""The real appliance (``netlmm run`` in each role, :class:`router.lab.domain.Domain`) against
real third-party servers: a DHCP relay to dnsmasq and to Kea, and FreeRADIUS as the DMPAs' AAA.

Every test builds its own :class:`router.lab.topology.Lab` (torn down even on failure), starts
the servers it needs with :meth:`Lab.popen` (ended by PID, here and again by the lab's close),
and polls until deadlines. On failure the message carries the tail of each appliance log and
of the server's log (the lab's work directory is deleted on close, so they are read before).

- Relay: the DLMAP has ``dhcp = relay``, ``dhcp_servers = 198.51.100.2``; the server runs in
  ``cn`` on 198.51.100.2 and answers the relay's giaddr 192.0.2.1 (the CN routes 192.0.2.0/24
  via the DLMAP's uplink) from a range the DLMAP's own pool does not hold, so the MS's address
  proves where it came from.
- RADIUS: ``freeradius -X`` in ``lm`` on the DLMAP's transport address, port 1812; the DMPAs
  (``aaa = radius``) reach it over the IPv6 transport and ask for the MS by its MAC identity
  (``02-4E-4C-00-00-01``: no NAI is known at attach). The users file decides the case: a static
  home address (RFC 6572 PMIP6-Home-IPv4-HoA), a dynamic one (Framed-IP-Address 255.255.255.254,
  the MS asks DHCP through the tunnel) or a reject.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from string import Template
from typing import Any

import pytest

from router.lab.configs import GATEWAY, STATIC_HOA, MobileProfile
from router.lab.domain import ROLES, Domain
from router.lab.tools import ping
from router.lab.topology import (
    CN_ADDRESS,
    CN_IF,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    DhcpClient,
    Lab,
    LabError,
    wait_until,
)
from tests.conftest import require

pytestmark = pytest.mark.root

RADIUS_TEMPLATE = Path(__file__).parent / "radius" / "radiusd.conf.in"
SECRET = "netlmm-lab-radius-secret"  # 16+ octets: no config warning
NAI = "ms@example.org"
SERVER_RANGE = ("192.0.2.50", "192.0.2.59")  # outside the DLMAP's pool (.100-.199)
MAC_IDENTITY = Lab.ms_mac().upper().replace(":", "-")
BINARIES = {
    "dnsmasq": "/usr/sbin/dnsmasq",
    "kea": "/usr/sbin/kea-dhcp4",
    "freeradius": "/usr/sbin/freeradius",
}


def _require(*names: str) -> None:
    for name in names:
        path = BINARIES.get(name) or shutil.which(name)
        require(
            path is not None and Path(path).exists(),
            f"{name} is not installed (make test installs it)",
        )


# --- failure reports ---------------------------------------------------------------------------


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@contextmanager
def explained(domain: Domain, **logs: Path) -> Iterator[None]:
    """Re-raise any failure with the appliance's and the servers' log tails attached."""
    try:
        yield
    except Exception as exc:
        parts = [f"{type(exc).__name__}: {exc}"]
        for role in ROLES:
            parts.append(f"--- {role} log ---\n{domain.tail(role, 40)}")
        for name, path in logs.items():
            parts.append(f"--- {name} log ---\n{_tail(path)}")
        raise AssertionError("\n".join(parts)) from exc


# --- servers -----------------------------------------------------------------------------------


def _udp_listening(lab: Lab, ns: str, port: int) -> bool:
    out = lab.exec(ns, ["ss", "-Hlun"], timeout=10, check=False).stdout
    return any(
        len(fields) >= 4 and fields[3].endswith(f":{port}")
        for fields in (line.split() for line in out.splitlines())
    )


def _wait_server(
    proc: subprocess.Popen[Any], name: str, log: Path, ready: Callable[[], bool]
) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise LabError(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
        return bool(ready())

    wait_until(up, 20.0, f"{name} to be ready", interval=0.1)


def start_dhcp_server(lab: Lab, kind: str, folder: Path) -> tuple[subprocess.Popen[Any], Path]:
    """dnsmasq or kea-dhcp4 in ``cn`` on 198.51.100.2, serving relayed requests from giaddr
    192.0.2.1 out of :data:`SERVER_RANGE` with the DLMAP's gateway as router."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{kind}.log"
    first, last = SERVER_RANGE
    env: dict[str, str] = {}
    if kind == "kea":
        config = {
            "Dhcp4": {
                "interfaces-config": {"interfaces": [CN_IF], "dhcp-socket-type": "udp"},
                "lease-database": {
                    "type": "memfile",
                    "persist": True,
                    "name": str(folder / "kea-leases4.csv"),
                    "lfc-interval": 0,
                },
                "valid-lifetime": 600,
                "subnet4": [
                    {
                        "id": 1,
                        "subnet": "192.0.2.0/24",
                        "pools": [{"pool": f"{first} - {last}"}],
                        "option-data": [{"name": "routers", "data": str(GATEWAY)}],
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
        path = folder / "kea-dhcp4.json"
        path.write_text(json.dumps(config))
        argv = [BINARIES["kea"], "-c", str(path)]
        env = {"KEA_PIDFILE_DIR": str(folder), "KEA_LOCKFILE_DIR": str(folder)}
    else:
        argv = [
            BINARIES["dnsmasq"],
            "--no-daemon",
            "--conf-file=/dev/null",
            f"--dhcp-leasefile={folder / 'dnsmasq.leases'}",
            f"--pid-file={folder / 'dnsmasq.pid'}",
            "--port=0",
            f"--interface={CN_IF}",
            "--bind-interfaces",
            f"--dhcp-range={first},{last},255.255.255.0,600",
            f"--dhcp-option=option:router,{GATEWAY}",
            "--dhcp-authoritative",
            "--no-ping",
            "--user=root",
            "--group=root",
            "--log-dhcp",
        ]
    with log.open("wb") as out:
        proc = lab.popen("cn", argv, env=env, stdout=out.fileno(), stderr=subprocess.STDOUT)
    _wait_server(proc, kind, log, lambda: _udp_listening(lab, "cn", 67))
    return proc, log


USERS = {
    # RFC 6572: the static home address, the DLMAP and the gateway.
    "static": (
        f'"{MAC_IDENTITY}"\tAuth-Type := Accept\n'
        f'\tMobile-Node-Identifier = "{NAI}",\n'
        f"\tPMIP6-Home-LMA-IPv6-Address = {DLMAP_ADDRESS},\n"
        f"\tPMIP6-Home-IPv4-HoA = {STATIC_HOA}/32,\n"
        f"\tPMIP6-Home-IPv4-Gateway = {GATEWAY}\n"
    ),
    # "The NAS chooses" (RFC 2865 5.8): dynamic, the DMPA's dynamic_mode (dhcp).
    "dynamic": (
        f'"{MAC_IDENTITY}"\tAuth-Type := Accept\n'
        f'\tMobile-Node-Identifier = "{NAI}",\n'
        f"\tPMIP6-Home-LMA-IPv6-Address = {DLMAP_ADDRESS},\n"
        f"\tFramed-IP-Address = 255.255.255.254\n"
    ),
    "reject": (
        f'"{MAC_IDENTITY}"\tAuth-Type := Reject\n\tReply-Message = "subscription suspended"\n'
    ),
}


def start_freeradius(lab: Lab, users: str, folder: Path) -> tuple[subprocess.Popen[Any], Path]:
    """``freeradius -X`` in ``lm`` on [2001:db8:100::1]:1812 (the DLMAP's transport address),
    both DMPAs as clients; config from the RADIUS tests' template, our own users file."""
    for sub in ("log", "run"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    clients = "\n".join(
        f"client dmpa{index} {{\n\tipaddr = {address}\n\tsecret = {SECRET}\n}}"
        for index, address in DMPA_ADDRESSES.items()
    )
    config = Template(RADIUS_TEMPLATE.read_text()).substitute(
        raddbdir=folder,
        name="radiusd",
        listen_address=DLMAP_ADDRESS,
        listen_port=1812,
        clients=clients,
        proxy="",
        proxy_requests="no",
        authorize="\t\tfiles",
    )
    (folder / "radiusd.conf").write_text(config)
    (folder / "users").write_text(users)
    log = folder / "radiusd.log"
    argv = ["freeradius", "-X", "-d", str(folder), "-n", "radiusd"]
    with log.open("wb") as out:
        proc = lab.popen("lm", argv, stdout=out.fileno(), stderr=subprocess.STDOUT)
    _wait_server(proc, "freeradius", log, lambda: "Ready to process requests" in _tail(log, 5))
    return proc, log


# --- assertions --------------------------------------------------------------------------------


def _attach_by_dhcp(lab: Lab, domain: Domain, nai: str) -> IPv4Address:
    """The MS's udhcpc gets a lease; the DLMAP then binds ``nai`` to that address at DMPA 1."""
    client = DhcpClient(lab)
    client.start(tries=10)
    try:
        lease = client.wait_lease(timeout=20.0)
        wait_until(
            lambda: (domain.binding(nai) or {}).get("hoa") == str(lease.address),
            10.0,
            f"the DLMAP's binding {nai} -> {lease.address}",
        )
        binding = domain.binding(nai)
        assert binding is not None and binding["dmpa"] == str(DMPA_ADDRESSES[1]), binding
        assert lease.router == GATEWAY, lease
        _ping_cn(lab)
        return lease.address
    finally:
        client.stop()


def _ping_cn(lab: Lab) -> None:
    # The first echo may race the DMPA's ARP answer: poll, then one clean measured run.
    lab.wait_ping("ms", str(CN_ADDRESS), timeout=10.0)
    result = ping(lab, "ms", str(CN_ADDRESS), count=3)
    assert result.ok and result.loss_pct == 0, result


def _stop_all(lab: Lab, domain: Domain, *procs: subprocess.Popen[Any]) -> dict[str, int | None]:
    codes = domain.stop()
    for proc in procs:
        lab.stop(proc)
    return codes


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["dnsmasq", "kea"])
def test_dhcp_relay_to_a_real_server(root: None, server: str, tmp_path: Path) -> None:
    _require(server, "udhcpc")
    with Lab() as lab:
        dhcpd, dhcpd_log = start_dhcp_server(lab, server, tmp_path / server)
        domain = Domain(
            lab,
            [MobileProfile(NAI, lab.ms_mac(), "dhcp")],
            dhcp="relay",
            dhcp_servers=(str(CN_ADDRESS),),
        )
        with explained(domain, **{server: dhcpd_log}):
            domain.start()
            address = _attach_by_dhcp(lab, domain, NAI)
            first, last = (IPv4Address(a) for a in SERVER_RANGE)
            assert first <= address <= last, f"{address} is not from {server}'s range"
            counters = domain.ask("dlmap", "counters")["dhcp"]
            assert counters.get("learn.recorded", 0) >= 1, counters
            codes = _stop_all(lab, domain, dhcpd)
            assert codes == dict.fromkeys(ROLES, 0), codes


def test_radius_accept_with_static_hoa(root: None, tmp_path: Path) -> None:
    _require("freeradius")
    with Lab() as lab:
        radiusd, radius_log = start_freeradius(lab, USERS["static"], tmp_path / "radius")
        # The DLMAP knows the static address too (its local profiles); the DMPAs ask RADIUS.
        profile = MobileProfile(NAI, lab.ms_mac(), "static", str(STATIC_HOA))
        domain = Domain(lab, [profile], radius=(f"[{DLMAP_ADDRESS}]:1812", SECRET))
        with explained(domain, freeradius=radius_log):
            domain.start()
            lab.exec("ms", ["ip", "addr", "add", f"{STATIC_HOA}/24", "dev", "ms0"])
            lab.exec("ms", ["ip", "route", "add", "default", "via", str(GATEWAY)])
            _ping_cn(lab)
            binding = domain.binding(NAI)
            assert binding is not None, domain.ask("dlmap", "bindings")
            assert binding["hoa"] == str(STATIC_HOA), binding
            assert binding["dmpa"] == str(DMPA_ADDRESSES[1]), binding
            visitor = domain.visitor("dmpa1", NAI)
            assert visitor is not None and visitor["state"] == "registered", visitor
            aaa = domain.ask("dmpa1", "counters")["aaa"]
            assert aaa.get("accept", 0) >= 1 and not aaa.get("reject"), aaa
            assert f'User-Name = "{MAC_IDENTITY}"' in radius_log.read_text()
            codes = _stop_all(lab, domain, radiusd)
            assert codes == dict.fromkeys(ROLES, 0), codes


def test_radius_accept_with_dynamic_assignment(root: None, tmp_path: Path) -> None:
    _require("freeradius", "udhcpc")
    with Lab() as lab:
        radiusd, radius_log = start_freeradius(lab, USERS["dynamic"], tmp_path / "radius")
        domain = Domain(lab, [], radius=(f"[{DLMAP_ADDRESS}]:1812", SECRET))
        with explained(domain, freeradius=radius_log):
            domain.start()
            address = _attach_by_dhcp(lab, domain, NAI)
            assert address != STATIC_HOA
            aaa = domain.ask("dmpa1", "counters")["aaa"]
            assert aaa.get("accept", 0) >= 1 and not aaa.get("reject"), aaa
            codes = _stop_all(lab, domain, radiusd)
            assert codes == dict.fromkeys(ROLES, 0), codes


def test_radius_reject_keeps_the_ms_out(root: None, tmp_path: Path) -> None:
    _require("freeradius", "udhcpc")
    with Lab() as lab:
        radiusd, radius_log = start_freeradius(lab, USERS["reject"], tmp_path / "radius")
        domain = Domain(lab, [], radius=(f"[{DLMAP_ADDRESS}]:1812", SECRET))
        with explained(domain, freeradius=radius_log):
            domain.start()
            mac = lab.ms_mac()

            def visitor() -> dict[str, Any] | None:
                rows = domain.ask("dmpa1", "visitors")
                return next((row for row in rows if row["mac"] == mac), None)

            client = DhcpClient(lab)
            began = time.monotonic()
            # udhcpc -n: three discovers a second apart, then it gives up (bounded, ~3 s).
            with pytest.raises(LabError, match="got no lease"):
                client.once(tries=3, timeout=15.0)
            assert time.monotonic() - began < 15.0
            assert client.lease() is None
            wait_until(
                lambda: (visitor() or {}).get("state") == "rejected",
                5.0,
                "DMPA 1's visitor to be rejected",
            )
            assert domain.ask("dlmap", "bindings") == []
            aaa = domain.ask("dmpa1", "counters")["aaa"]
            assert aaa.get("reject", 0) >= 1 and not aaa.get("accept"), aaa
            assert "Sent Access-Reject" in radius_log.read_text()
            codes = _stop_all(lab, domain, radiusd)
            assert codes == dict.fromkeys(ROLES, 0), codes
