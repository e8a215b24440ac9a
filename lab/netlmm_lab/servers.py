"""Real third-party servers in the lab: dnsmasq or Kea as the DLMAP's DHCP server, FreeRADIUS as
the DMPAs' AAA.

The embedded defaults (the DLMAP's built-in DHCP server, the DMPAs' local profiles) need none of
this; ``netlmm lab demo|up --dhcp kea|dnsmasq --aaa radius`` and the integration tests start
these instead. Every server runs in a lab namespace, is started with :meth:`Lab.popen` (so the
lab ends it by PID on close, or ``lab down`` with the namespace), writes its config, state and
log under ``lab.workdir``, and is polled until ready or a deadline.

- DHCP (``dnsmasq`` or ``kea``): in ``cn`` on 198.51.100.2 (the CN's address), port 67; it
  answers requests relayed by the DLMAP (``dhcp = relay``, giaddr 192.0.2.1: the CN routes
  192.0.2.0/24 via the DLMAP's uplink) from :data:`SERVER_RANGE`, which the DLMAP's own pool
  does not hold, so the MS's address proves where it came from; the router option is the
  DLMAP's gateway.
- RADIUS (``freeradius``): ``freeradius -X`` in ``lm`` on the DLMAP's transport address, port
  1812, both DMPAs as clients with :data:`RADIUS_SECRET`; the DMPAs ask for an MS by its MAC
  identity (``02-4E-4C-00-00-01``: no NAI is known at attach), the users file (see
  :func:`radius_users`) decides: a static home address, a dynamic one, or a reject.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from netlmm_lab import netns
from netlmm_lab.configs import GATEWAY, STATIC_HOA
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.topology import (
    CN_ADDRESS,
    CN_IF,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    HOA_NETWORK,
    Lab,
)

DHCP_SERVERS = ("dnsmasq", "kea")
BINARIES = {
    "dnsmasq": "/usr/sbin/dnsmasq",
    "kea": "/usr/sbin/kea-dhcp4",
    "freeradius": "/usr/sbin/freeradius",
}
DHCP_NAMESPACE = "cn"
DHCP_ADDRESS = CN_ADDRESS
SERVER_RANGE = (
    str(HOA_NETWORK.network_address + 50),
    str(HOA_NETWORK.network_address + 59),
)  # outside the DLMAP's pool (.100-.199)
LEASE_SECONDS = 600
RADIUS_NAMESPACE = "lm"
RADIUS_PORT = 1812
RADIUS_SECRET = "netlmm-lab-radius-secret"  # 16+ octets: no config warning
RADIUS_TEMPLATES = Path(__file__).parent / "radius"  # radiusd.conf.in, proxy.conf.in, users
READY_TIMEOUT = 20.0


@dataclass
class Server:
    """One running server: what it is, where, and its log."""

    name: str  # dnsmasq | kea | freeradius
    namespace: str  # the lab's short name: cn | lm
    endpoint: str  # where the appliance reaches it
    process: subprocess.Popen[Any]
    folder: Path
    log: Path

    def tail(self, lines: int = 40) -> str:
        return tail(self.log, lines)

    def describe(self) -> str:
        return f"{self.name} in {self.namespace} on {self.endpoint}"

    def to_json(self) -> dict[str, Any]:
        return {
            "server": self.name,
            "namespace": self.namespace,
            "endpoint": self.endpoint,
            "pid": self.process.pid,
        }


def binary(name: str) -> str | None:
    """The path of a server's binary (``dnsmasq``, ``kea``, ``freeradius``), or None."""
    known = BINARIES.get(name)
    if known is not None and Path(known).exists():
        return known
    return shutil.which(Path(known).name if known else name)


def missing(*names: str) -> list[str]:
    """Which of these servers are not installed (a message each)."""
    return [
        f"{name} is not installed ({BINARIES.get(name, name)})"
        for name in names
        if binary(name) is None
    ]


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def udp_listening(namespace: str, port: int) -> bool:
    """Whether something in namespace ``namespace`` (a full name: ``lab.ns("cn")``) listens
    on UDP ``port``."""
    out = netns.run(namespace, ["ss", "-Hlun"], timeout=10, check=False).stdout
    return any(
        len(fields) >= 4 and fields[3].endswith(f":{port}")
        for fields in (line.split() for line in out.splitlines())
    )


def start_server(
    lab: Lab,
    name: str,
    ns: str,
    argv: Sequence[str],
    folder: Path,
    endpoint: str,
    ready: Callable[[Path], bool],
    *,
    env: dict[str, str] | None = None,
    timeout: float = READY_TIMEOUT,
) -> Server:
    """Start ``argv`` (server ``name``) in the lab's namespace ``ns``, its output in
    ``folder/<name>.log``, and poll ``ready(log)`` until it holds; a :class:`LabError` with the
    log's tail if the server exits first, :class:`~netlmm_lab.poll.TimedOut` at ``timeout``
    (the server is stopped either way)."""
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = lab.popen(ns, argv, env=env, stdout=out.fileno(), stderr=subprocess.STDOUT)
    server = Server(name, ns, endpoint, proc, folder, log)

    def up() -> bool:
        if proc.poll() is not None:
            raise LabError(f"{name} exited with {proc.returncode}:\n{server.tail()}")
        return ready(log)

    try:
        wait_until(up, timeout, f"{name} to be ready", interval=0.1)
    except BaseException:
        lab.stop(proc)
        raise
    return server


def _need(name: str) -> str:
    path = binary(name)
    if path is None:
        raise LabError(missing(name)[0])
    return path


# --- DHCP --------------------------------------------------------------------------------------


def kea_config(folder: Path) -> dict[str, Any]:
    first, last = SERVER_RANGE
    return {
        "Dhcp4": {
            "interfaces-config": {"interfaces": [CN_IF], "dhcp-socket-type": "udp"},
            "lease-database": {
                "type": "memfile",
                "persist": True,
                "name": str(folder / "kea-leases4.csv"),
                "lfc-interval": 0,
            },
            "valid-lifetime": LEASE_SECONDS,
            "subnet4": [
                {
                    "id": 1,
                    "subnet": str(HOA_NETWORK),
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


def dnsmasq_argv(path: str, folder: Path) -> list[str]:
    first, last = SERVER_RANGE
    return [
        path,
        "--no-daemon",
        "--conf-file=/dev/null",
        f"--dhcp-leasefile={folder / 'dnsmasq.leases'}",
        f"--pid-file={folder / 'dnsmasq.pid'}",
        "--port=0",  # no DNS
        f"--interface={CN_IF}",
        "--bind-interfaces",
        f"--dhcp-range={first},{last},{HOA_NETWORK.netmask},{LEASE_SECONDS}",
        f"--dhcp-option=option:router,{GATEWAY}",
        "--dhcp-authoritative",
        "--no-ping",
        "--user=root",
        "--group=root",
        "--log-dhcp",
    ]


def start_dhcp_server(
    lab: Lab, kind: str, folder: Path | None = None, timeout: float = READY_TIMEOUT
) -> Server:
    """dnsmasq or kea-dhcp4 in ``cn`` on 198.51.100.2, serving requests relayed from giaddr
    192.0.2.1 out of :data:`SERVER_RANGE` with the DLMAP's gateway as router; ready when it
    listens on UDP 67."""
    if kind not in DHCP_SERVERS:
        raise ValueError(f"unknown DHCP server {kind!r} (one of {', '.join(DHCP_SERVERS)})")
    path = _need(kind)
    folder = folder or lab.workdir / "servers" / kind
    folder.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] | None = None
    if kind == "kea":
        config = folder / "kea-dhcp4.json"
        config.write_text(json.dumps(kea_config(folder), indent=2))
        argv = [path, "-c", str(config)]
        env = {"KEA_PIDFILE_DIR": str(folder), "KEA_LOCKFILE_DIR": str(folder)}
    else:
        argv = dnsmasq_argv(path, folder)
    return start_server(
        lab,
        kind,
        DHCP_NAMESPACE,
        argv,
        folder,
        str(DHCP_ADDRESS),
        lambda _log: udp_listening(lab.ns(DHCP_NAMESPACE), 67),
        env=env,
        timeout=timeout,
    )


# --- RADIUS ------------------------------------------------------------------------------------


def mac_identity(mac: str) -> str:
    """The User-Name a DMPA sends for an MS known only by its MAC: ``02-4E-4C-00-00-01``."""
    return mac.upper().replace(":", "-")


def radius_users(case: str, *, nai: str, mac: str) -> str:
    """A users file for one MS keyed on its MAC identity: ``static`` (RFC 6572 home address,
    DLMAP and gateway), ``dynamic`` (Framed-IP-Address 255.255.255.254, "the NAS chooses": the
    MS asks DHCP through the tunnel) or ``reject``."""
    who = f'"{mac_identity(mac)}"'
    if case == "static":
        return (
            f"{who}\tAuth-Type := Accept\n"
            f'\tMobile-Node-Identifier = "{nai}",\n'
            f"\tPMIP6-Home-LMA-IPv6-Address = {DLMAP_ADDRESS},\n"
            f"\tPMIP6-Home-IPv4-HoA = {STATIC_HOA}/32,\n"
            f"\tPMIP6-Home-IPv4-Gateway = {GATEWAY}\n"
        )
    if case == "dynamic":
        return (
            f"{who}\tAuth-Type := Accept\n"
            f'\tMobile-Node-Identifier = "{nai}",\n'
            f"\tPMIP6-Home-LMA-IPv6-Address = {DLMAP_ADDRESS},\n"
            f"\tFramed-IP-Address = 255.255.255.254\n"
        )
    if case == "reject":
        return f'{who}\tAuth-Type := Reject\n\tReply-Message = "subscription suspended"\n'
    raise ValueError(f"unknown RADIUS users case {case!r}")


def render_radiusd(
    folder: Path,
    *,
    name: str,
    listen: tuple[str, int],
    clients: Sequence[tuple[str, str, str]],
    authorize: str,
    proxy: str = "",
) -> Path:
    """Write a self-contained ``radiusd.conf`` (and its ``log``/``run`` dirs) into ``folder``
    from :data:`RADIUS_TEMPLATES`; ``clients`` are (name, address, secret)."""
    for sub in ("log", "run"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    entries = "\n".join(
        f"client {client} {{\n\tipaddr = {address}\n\tsecret = {secret}\n}}"
        for client, address, secret in clients
    )
    text = Template((RADIUS_TEMPLATES / "radiusd.conf.in").read_text()).substitute(
        raddbdir=folder,
        name=name,
        listen_address=listen[0],
        listen_port=listen[1],
        clients=entries,
        proxy=proxy,
        proxy_requests="yes" if proxy else "no",
        authorize=authorize,
    )
    path = folder / "radiusd.conf"
    path.write_text(text)
    return path


def radius_endpoint() -> str:
    """How the DMPAs' ini names the lab's RADIUS server: ``[2001:db8:100::1]:1812``."""
    return f"[{DLMAP_ADDRESS}]:{RADIUS_PORT}"


def start_freeradius(
    lab: Lab, users: str, folder: Path | None = None, timeout: float = READY_TIMEOUT
) -> Server:
    """``freeradius -X`` in ``lm`` on [2001:db8:100::1]:1812 (the DLMAP's transport address),
    both DMPAs as clients with :data:`RADIUS_SECRET`, ``users`` as its users file; ready when
    it says so in its log."""
    path = _need("freeradius")
    folder = folder or lab.workdir / "servers" / "freeradius"
    folder.mkdir(parents=True, exist_ok=True)
    render_radiusd(
        folder,
        name="radiusd",
        listen=(str(DLMAP_ADDRESS), RADIUS_PORT),
        clients=[
            (f"dmpa{index}", str(address), RADIUS_SECRET)
            for index, address in DMPA_ADDRESSES.items()
        ],
        authorize="\t\tfiles",
    )
    (folder / "users").write_text(users)
    argv = [path, "-X", "-d", str(folder), "-n", "radiusd"]
    return start_server(
        lab,
        "freeradius",
        RADIUS_NAMESPACE,
        argv,
        folder,
        radius_endpoint(),
        lambda log: "Ready to process requests" in tail(log, 5),
        timeout=timeout,
    )


def stop(lab: Lab, server: Server, timeout: float = 5.0) -> int | None:
    """End the server by its PID (SIGTERM, then SIGKILL); its exit code."""
    return lab.stop(server.process, timeout)
