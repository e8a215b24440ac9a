"""802.1X in the lab: hostapd on each DMPA's access port, wpa_supplicant on the MS, FreeRADIUS
as the home AAA doing EAP behind a visited FreeRADIUS that proxies by realm (seed figure 6).

::

    ms: wpa_supplicant -D wired (EAP-TTLS/PAP, PEAP/MSCHAPv2 or EAP-MD5)
      | EAPOL (01:80:c2:00:00:03; the base station's bridge passes it: group_fwd_mask 8)
    m1/m2: hostapd driver=wired on acc0 (a port of the DMPA's bridge, whose group_fwd_mask
      stays 0: EAPOL reaches hostapd and goes no further); its RADIUS client -> the DMPA's
      proxy (127.0.0.1:18121, [radius] proxy) -> the visited AAA; its control socket
      <- the DMPA (attached, reading its events)
    lm: VAAA freeradius [2001:db8:100::1]:1812 (realm home.example -> HAAA, nostrip),
        HAAA freeradius [2001:db8:100::1]:11812 (EAP; inner tunnel on 127.0.0.1:18122)

Certificates (a CA and the HAAA's server certificate) are made with ``openssl`` at set-up in
the run's directory; the MS checks the server against that CA. Everything is written under
``lab.workdir`` and every process is started by the lab (ended by PID with it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

from netlmm_lab.configs import GATEWAY, Dot1xConfig
from netlmm_lab.errors import LabError
from netlmm_lab.poll import wait_until
from netlmm_lab.servers import (
    RADIUS_PORT,
    RADIUS_SECRET,
    RADIUS_TEMPLATES,
    Server,
    render_radiusd,
    start_server,
    tail,
)
from netlmm_lab.topology import (
    ACCESS_IF,
    ACCESS_MTU,
    BRIDGE,
    BS_DMPA_PORT,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    MS_IF,
    NO_IPV6,
    Lab,
)

REALM = "home.example"
HAAA_PORT = 11812
INNER_PORT = 18122  # the HAAA's inner tunnel: off 127.0.0.1:18120
HOME_SECRET = "netlmm-lab-home-secret"  # VAAA <-> HAAA
#: hostapd's RADIUS client -> the DMPA's proxy, inside each DMPA's namespace.
PROXY_ADDRESS = "127.0.0.1"
PROXY_PORT = 18121
PROXY_SECRET = "netlmm-lab-hostapd-secret"
METHODS = ("ttls", "peap", "md5")
BINARIES = {
    "hostapd": "/usr/sbin/hostapd",
    "wpa_supplicant": "/usr/sbin/wpa_supplicant",
    "freeradius": "/usr/sbin/freeradius",
    "openssl": "/usr/bin/openssl",
    "wpa_cli": "/usr/sbin/wpa_cli",
}
#: The 802.1X group address's bit in a bridge's group_fwd_mask (01:80:c2:00:00:03).
EAPOL_FWD_MASK = 1 << 3


@dataclass(frozen=True)
class Subscriber:
    """One MS's credentials at the HAAA and what the HAAA answers for it."""

    nai: str
    password: str
    #: None: dynamic (Framed-IP-Address 255.255.255.254, the MS asks DHCP); else a static HoA.
    hoa: str | None = None


def missing() -> list[str]:
    """What the 802.1X lab needs and this host lacks (a message each)."""
    return [
        f"{name} is not installed ({path})"
        for name, path in BINARIES.items()
        if not Path(path).exists() and shutil.which(name) is None
    ]


def _binary(name: str) -> str:
    path = BINARIES[name]
    if Path(path).exists():
        return path
    found = shutil.which(name)
    if found is None:
        raise LabError(f"{name} is not installed ({path})")
    return found


def pass_eapol(lab: Lab) -> None:
    """Let the base stations' bridges (b1, b2: the "radio cells") pass EAPOL between the MS and
    the DMPA's access port, as a wireless cell or a hub does (a bridge keeps it by default)."""
    for bs in ("b1", "b2"):
        lab.link(bs, "set", BRIDGE, "type", "bridge", "group_fwd_mask", str(EAPOL_FWD_MASK))


# --- certificates ------------------------------------------------------------------------------


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate signed by it (EC P-256), in ``folder``: ca.pem,
    server.pem, server.key."""
    openssl = _binary("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )

    def run(*argv: str) -> None:
        done = subprocess.run(
            [openssl, *argv], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode:
            raise LabError(f"openssl {argv[0]} failed: {done.stderr.strip()}")

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=netlmm lab CA")  # fmt: skip
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=haaa.home.example")
    ext = folder / "server.ext"
    ext.write_text("extendedKeyUsage = serverAuth\nsubjectAltName = DNS:haaa.home.example\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    for path in (ca_key, key):
        path.chmod(0o600)
    return {"ca": ca, "cert": cert, "key": key}


# --- FreeRADIUS: the home AAA (EAP) and the visited one (proxy by realm) -------------------------


def haaa_users(subscribers: list[Subscriber]) -> str:
    """The HAAA's users file: each NAI's password and its profile (RFC 6572 attributes)."""
    out = []
    for sub in subscribers:
        address = (
            f"Framed-IP-Address = {sub.hoa}" if sub.hoa else ("Framed-IP-Address = 255.255.255.254")
        )
        out.append(
            f'"{sub.nai}"\tCleartext-Password := "{sub.password}"\n'
            f'\tMobile-Node-Identifier = "{sub.nai}",\n'
            f"\tPMIP6-Home-LMA-IPv6-Address = {DLMAP_ADDRESS},\n"
            f"\tPMIP6-Home-IPv4-Gateway = {GATEWAY},\n"
            f"\t{address}\n\n"
        )
    return "".join(out)


def start_aaa(
    lab: Lab, subscribers: list[Subscriber], folder: Path | None = None
) -> tuple[Server, Server, Path]:
    """The HAAA (EAP) and the VAAA (proxy for realm home.example) in ``lm``; returns both and
    the CA certificate the MSs check the server with."""
    radiusd = _binary("freeradius")
    folder = folder or lab.workdir / "servers" / "dot1x"
    haaa_dir, vaaa_dir = folder / "haaa", folder / "vaaa"
    for sub in (haaa_dir / "log", haaa_dir / "run"):
        sub.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(haaa_dir)
    address = str(DLMAP_ADDRESS)
    text = Template((RADIUS_TEMPLATES / "haaa-eap.conf.in").read_text()).substitute(
        raddbdir=haaa_dir,
        name="radiusd",
        listen_address=address,
        listen_port=HAAA_PORT,
        inner_port=INNER_PORT,
        clients=f"client vaaa {{\n\tipaddr = {address}\n\tsecret = {HOME_SECRET}\n}}",
    )
    (haaa_dir / "radiusd.conf").write_text(text)
    (haaa_dir / "users").write_text(haaa_users(subscribers))
    ready = "Ready to process requests"
    haaa = start_server(
        lab, "haaa", "lm", [radiusd, "-X", "-d", str(haaa_dir), "-n", "radiusd"], haaa_dir,
        f"[{address}]:{HAAA_PORT}", lambda log: ready in tail(log, 5),
    )  # fmt: skip
    proxy = Template((RADIUS_TEMPLATES / "proxy.conf.in").read_text()).substitute(
        realm=REALM,
        home_address=address,
        home_port=HAAA_PORT,
        source_address=address,
        home_secret=HOME_SECRET,
    )
    render_radiusd(
        vaaa_dir,
        name="radiusd",
        listen=(address, RADIUS_PORT),
        clients=[(f"dmpa{i}", str(a), RADIUS_SECRET) for i, a in DMPA_ADDRESSES.items()],
        authorize="\t\tsuffix",
        proxy=proxy,
    )
    (vaaa_dir / "users").write_text("")
    vaaa = start_server(
        lab, "vaaa", "lm", [radiusd, "-X", "-d", str(vaaa_dir), "-n", "radiusd"], vaaa_dir,
        f"[{address}]:{RADIUS_PORT}", lambda log: ready in tail(log, 5),
    )  # fmt: skip
    return haaa, vaaa, certs["ca"]


def dmpa_config(lab: Lab, extra: dict[int, str] | None = None) -> Dot1xConfig:
    """What the DMPAs' ini files say for 802.1X in this lab (``Domain(..., dot1x=...)``);
    ``extra``: DMPA index -> a second access interface it has (with its own hostapd)."""
    links = {index: {ACCESS_IF: hostapd_socket(lab, index)} for index in DMPA_ADDRESSES}
    for index, ifname in (extra or {}).items():
        links[index][ifname] = hostapd_socket(lab, index, ifname)
    return Dot1xConfig(
        f"[{DLMAP_ADDRESS}]:{RADIUS_PORT}",
        RADIUS_SECRET,
        f"{PROXY_ADDRESS}:{PROXY_PORT}",
        PROXY_SECRET,
        links,
    )


# --- hostapd on the DMPA's access port ----------------------------------------------------------


def hostapd_conf(index: int, ctrl_dir: Path, ifname: str = ACCESS_IF) -> str:
    """hostapd on DMPA ``index``'s access port ``ifname``: wired driver, 802.1X, its RADIUS
    client pointed at the DMPA's proxy, its control socket in ``ctrl_dir``."""
    return (
        f"interface={ifname}\n"
        "driver=wired\n"
        f"ctrl_interface={ctrl_dir}\n"
        "logger_stdout=-1\n"
        "logger_stdout_level=1\n"
        "ieee8021x=1\n"
        "eapol_version=2\n"
        "eap_reauth_period=0\n"
        "use_pae_group_addr=1\n"
        f"nas_identifier=dmpa{index}-{ifname}\n"
        f"own_ip_addr={PROXY_ADDRESS}\n"
        f"auth_server_addr={PROXY_ADDRESS}\n"
        f"auth_server_port={PROXY_PORT}\n"
        f"auth_server_shared_secret={PROXY_SECRET}\n"
    )


def _hostapd_dir(lab: Lab, index: int, ifname: str) -> Path:
    return lab.workdir / (f"hostapd{index}" if ifname == ACCESS_IF else f"hostapd{index}-{ifname}")


def hostapd_socket(lab: Lab, index: int, ifname: str = ACCESS_IF) -> Path:
    """Where DMPA ``index``'s hostapd on ``ifname`` puts its control socket."""
    return _hostapd_dir(lab, index, ifname) / ifname


def start_hostapd(lab: Lab, index: int, ifname: str = ACCESS_IF) -> Server:
    """hostapd in ``m<index>`` on ``ifname``; ready when its control socket exists."""
    folder = _hostapd_dir(lab, index, ifname)
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "hostapd.conf"
    conf.write_text(hostapd_conf(index, folder, ifname))
    socket = hostapd_socket(lab, index, ifname)
    return start_server(
        lab, folder.name, f"m{index}", [_binary("hostapd"), "-d", str(conf)], folder,
        str(socket), lambda _log: socket.exists(),
    )  # fmt: skip


def add_access_port(lab: Lab, index: int, ifname: str, bs: str) -> None:
    """A second access port on DMPA ``index``: ``ifname`` in ``m<index>``, its peer in a new
    base station ``bs`` (a bridge passing EAPOL), layer 2 only. Before the DMPA starts."""
    lab.add_namespace(bs)
    lab.sysctl(bs, *NO_IPV6)
    lab.bridge(bs, ACCESS_MTU)
    lab.link(bs, "set", BRIDGE, "type", "bridge", "group_fwd_mask", str(EAPOL_FWD_MASK))
    lab.veth(f"m{index}", ifname, bs, BS_DMPA_PORT, ACCESS_MTU)
    lab.link(bs, "set", BS_DMPA_PORT, "master", BRIDGE, "up")
    lab.sysctl(f"m{index}", f"net.ipv6.conf.{ifname}.disable_ipv6=1")


def move_to(lab: Lab, ms: str, here: str, bs: str) -> None:
    """Move mobile ``ms``'s peer end from base station ``here`` into ``bs``'s bridge (one
    :func:`add_access_port` made: :meth:`Lab.handover` knows b1 and b2 only)."""
    port = lab.bs_port(ms)
    lab.link(here, "set", port, "netns", lab.ns(bs))
    lab.link(bs, "set", port, "master", BRIDGE, "up")
    wait_until(lambda: lab.carrier(ms, MS_IF), 10, f"carrier on {ms} in {bs}")


# --- wpa_supplicant on the MS ----------------------------------------------------------------


def supplicant_conf(
    ctrl_dir: Path, method: str, identity: str, password: str, ca: Path, anonymous: bool = True
) -> str:
    """A wired 802.1X network: EAP-TTLS/PAP (``ttls``), PEAP/MSCHAPv2 (``peap``) or EAP-MD5
    (``md5``, no tunnel: the identity is in the clear). The tunnelled methods show an anonymous
    outer identity (``anonymous@realm``) unless ``anonymous`` is False."""
    if method not in METHODS:
        raise ValueError(f"unknown EAP method {method!r} (one of {', '.join(METHODS)})")
    realm = identity.partition("@")[2]
    lines = [
        "key_mgmt=IEEE8021X",
        "eapol_flags=0",
        f'identity="{identity}"',
        f'password="{password}"',
    ]
    if method == "md5":
        lines.append("eap=MD5")
    else:
        lines += [
            "eap=TTLS" if method == "ttls" else "eap=PEAP",
            f'ca_cert="{ca}"',
            'phase1="tls_disable_tlsv1_3=1"',
            'phase2="auth=PAP"' if method == "ttls" else 'phase2="auth=MSCHAPV2"',
        ]
        if anonymous:
            lines.append(f'anonymous_identity="anonymous@{realm}"')
    body = "".join(f"\t{line}\n" for line in lines)
    return f"ctrl_interface={ctrl_dir}\nap_scan=0\neapol_version=2\nnetwork={{\n{body}}}\n"


def start_supplicant(
    lab: Lab,
    ms: str,
    method: str,
    identity: str,
    password: str,
    ca: Path,
    *,
    anonymous: bool = True,
    name: str | None = None,
) -> Server:
    """wpa_supplicant -D wired on the MS's ms0; ready when its control socket exists."""
    folder = lab.workdir / (name or f"supplicant-{ms}")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "wpa_supplicant.conf"
    conf.write_text(supplicant_conf(folder, method, identity, password, ca, anonymous))
    socket = folder / MS_IF
    return start_server(
        lab, name or f"supplicant-{ms}", ms,
        [_binary("wpa_supplicant"), "-D", "wired", "-i", MS_IF, "-c", str(conf), "-d"], folder,
        str(socket), lambda _log: socket.exists(),
    )  # fmt: skip


def reauthenticate(lab: Lab, ms: str, supplicant: Server) -> float:
    """Make the MS's wpa_supplicant start EAP again (an EAPOL-Start), as an MS's link manager
    does when its carrier comes back on another port: wpa_supplicant's wired driver does not
    watch the carrier itself. Returns the seconds ``wpa_cli`` took."""
    began = time.monotonic()
    out = lab.exec(
        ms, [_binary("wpa_cli"), "-p", str(supplicant.folder), "-i", MS_IF, "reauthenticate"],
        timeout=10,
    ).stdout  # fmt: skip
    if "OK" not in out:
        raise LabError(f"wpa_cli reauthenticate in {ms}: {out.strip()}")
    return time.monotonic() - began


# --- handover timing: hostapd's authorization event, the first packet the MS gets after it ---


class EventWatch:
    """The lab's own monitor on DMPA ``index``'s hostapd control socket (hostapd takes
    several): the ``time.monotonic()`` of each ``CTRL-EVENT-EAP-SUCCESS2 <mac>``, read in a
    thread. The socket is made in hostapd's namespace: its autobound (abstract) address is
    what hostapd answers to, and abstract addresses belong to a network namespace."""

    def __init__(self, lab: Lab, index: int, mac: str) -> None:
        socket_path = hostapd_socket(lab, index)
        self.path, self.mac = socket_path, mac.lower()
        self.successes: list[float] = []
        self._stop = threading.Event()
        with lab.enter(f"m{index}"):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind("")
        self._sock.connect(str(socket_path))
        self._sock.settimeout(2.0)
        self._sock.send(b"ATTACH")
        if self._sock.recv(64).strip() != b"OK":
            raise LabError(f"hostapd at {socket_path} refused ATTACH")
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name="hostapd-watch", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.monotonic()
            words = data.decode(errors="replace").partition(">")[2].split()
            if words[:2] == ["CTRL-EVENT-EAP-SUCCESS2", self.mac]:
                self.successes.append(now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()


class Arrivals:
    """``time.monotonic()`` of each IPv4 frame from ``src_mac`` (the DMPAs' pseudo-MAC) on the
    MS's interface, read by a packet socket made in the MS's namespace (at most ``limit``)."""

    def __init__(self, lab: Lab, ms: str, src_mac: str, limit: int = 100_000) -> None:
        self.times: list[float] = []
        self._src = bytes.fromhex(src_mac.replace(":", ""))
        self._limit = limit
        self._stop = threading.Event()
        with lab.enter(ms):
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            self._sock.bind((MS_IF, 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._read, name="ms-arrivals", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set() and len(self.times) < self._limit:
            try:
                frame, info = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            # Incoming only (not PACKET_OUTGOING), from the pseudo-MAC.
            if info[2] != socket.PACKET_OUTGOING and frame[6:12] == self._src:
                self.times.append(time.monotonic())

    def first_after(self, moment: float) -> float | None:
        return next((t for t in self.times if t > moment), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()
