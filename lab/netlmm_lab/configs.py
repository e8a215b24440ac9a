"""The ini files the lab starts the appliance with: one DLMAP, two DMPAs, profiles for the MSs.

The same files an operator would write (see ``etc/``), generated for the lab's addresses and a
per-run directory (state, control sockets, RFC 4285 keys), then checked with the real loader
before anything starts. Signaling is protected, as the appliance requires by default: fresh keys
in mode-600 files of the run's directory, never anywhere else.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from netlmm_lab.topology import (
    ACCESS_IF,
    DLMAP_ADDRESS,
    DMPA_ADDRESSES,
    HOA_NETWORK,
)
from router.app import config

GATEWAY = HOA_NETWORK.network_address + 1
POOL = f"{HOA_NETWORK.network_address + 100}-{HOA_NETWORK.network_address + 199}"
STATIC_HOA = HOA_NETWORK.network_address + 10
#: RFC 4285 SPI of DMPA ``i``'s key (each DMPA has its own with the DLMAP).
AUTH_SPI_BASE = 256
#: A peer without keys says so: the appliance refuses it otherwise (seed section 7).
INSECURE = "insecure = yes\n"


@dataclass(frozen=True)
class MobileProfile:
    nai: str
    mac: str
    mode: str  # dhcp | dlmap | static
    hoa: str | None = None
    #: The MS's own default gateway (``[profile] gateway``, the DMPAs' files only).
    gateway: str | None = None
    ipv6: bool = False  # dual-stack: an IPv6 home network prefix too (needs ipv6_pool)


@dataclass(frozen=True)
class Dot1xConfig:
    """The DMPAs' 802.1X settings: the visited AAA, hostapd's side of the proxy, and each
    DMPA's hostapd control socket."""

    server: str
    secret: str
    proxy: str
    proxy_secret: str
    #: DMPA index -> {access interface: its hostapd's control socket}; acc0 always first.
    hostapd: dict[int, dict[str, Path]]


@dataclass(frozen=True)
class LabConfigs:
    dlmap: Path
    dmpas: dict[int, Path]
    sockets: dict[str, Path]


def _profiles(profiles: list[MobileProfile], dlmap_line: bool) -> str:
    out = []
    for p in profiles:
        out.append(f"[profile {p.nai}]\nmac = {p.mac}\nmode = {p.mode}\n")
        if p.hoa:
            out.append(f"hoa = {p.hoa}\n")
        if p.ipv6:
            out.append("ipv6 = yes\n")
        if dlmap_line:
            out.append(f"dlmap = {DLMAP_ADDRESS}\n")
            if p.gateway:
                out.append(f"gateway = {p.gateway}\n")
        out.append("\n")
    return "".join(out)


def write_configs(
    folder: Path,
    profiles: list[MobileProfile],
    *,
    dialect: str = "draft",
    dhcp: str = "builtin",
    dhcp_servers: tuple[str, ...] = (),
    tunnel_mtu: int = 1500,
    log_level: str = "info",
    radius: tuple[str, str] | None = None,
    offload: bool = True,
    auth: bool = True,
    wrong_key: tuple[int, ...] = (),
    extra_peers: tuple[str, ...] = (),
    pool: str = POOL,
    lease_time: int | None = None,
    datapath: str | None = None,
    dot1x: Dot1xConfig | None = None,
    ipv6_pool: str | None = None,
) -> LabConfigs:
    """Write ``dlmap.ini``, ``dmpa1.ini`` and ``dmpa2.ini`` into ``folder`` and check them.

    ``radius`` = (server, secret) makes the DMPAs authenticate with RADIUS (``aaa = radius``)
    instead of their local profiles. ``auth`` (the default) protects the signaling with RFC 4285:
    a random key per DMPA (SPI 256 + index) in mode-600 key files of ``folder``; the DMPAs
    listed in ``wrong_key`` get a key the DLMAP does not have. ``auth=False`` writes peers that
    say ``insecure = yes`` (the appliance's explicit opt-out: the fuzz campaign, whose forged
    messages must reach the cores). ``extra_peers`` are more DMPA addresses the DLMAP accepts,
    ``insecure = yes`` as well (the soak's load generator plays them and does not sign);
    ``pool`` and ``lease_time`` replace the DLMAP's address range and lease time;
    ``datapath`` (auto, kernel, cython) is every node's ``[node] datapath`` (None: the default).
    ``dot1x`` makes the access links ``auth = 8021x``: hostapd's RADIUS comes to the DMPA's
    proxy, which forwards it to the visited AAA (:mod:`netlmm_lab.dot1x` makes one).
    ``ipv6_pool`` gives the DLMAP IPv6 home network prefixes for dual-stack profiles
    (:mod:`netlmm_lab.dualstack`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    sockets = {"dlmap": folder / "dlmap.sock"} | {
        f"dmpa{i}": folder / f"dmpa{i}.sock" for i in (1, 2)
    }
    keys = {index: secrets.token_bytes(20) for index in DMPA_ADDRESSES} if auth else {}
    spi_line = {
        index: f"spi = {AUTH_SPI_BASE + index}\n" if auth else INSECURE for index in DMPA_ADDRESSES
    }
    peers = "".join(
        f"[peer {address}]\ndialect = {dialect}\n{spi_line[index]}\n"
        for index, address in DMPA_ADDRESSES.items()
    ) + "".join(f"[peer {address}]\ndialect = {dialect}\n{INSECURE}\n" for address in extra_peers)
    lease = f"lease_time = {lease_time}\n" if lease_time is not None else ""
    tier = f"datapath = {datapath}\n" if datapath is not None else ""
    key_line = {}
    if auth:
        key_line["dlmap"] = _key_file(
            folder / "dlmap.keys", {AUTH_SPI_BASE + i: k for i, k in keys.items()}
        )
        for index, key in keys.items():
            own = secrets.token_bytes(20) if index in wrong_key else key
            key_line[f"dmpa{index}"] = _key_file(
                folder / f"dmpa{index}.keys", {AUTH_SPI_BASE + index: own}
            )
    relay = f"dhcp_servers = {', '.join(dhcp_servers)}\n" if dhcp == "relay" else ""
    dlmap = (
        f"[node]\nrole = dlmap\nname = lm\naddress = {DLMAP_ADDRESS}\n"
        f"state_dir = {folder / 'dlmap-state'}\ncontrol_socket = {sockets['dlmap']}\n"
        f"log_level = {log_level}\noffload = {'yes' if offload else 'no'}\n{tier}"
        f"{key_line.get('dlmap', '')}\n"
        f"[dlmap]\ngateway = {GATEWAY}\nnetwork = {HOA_NETWORK}\npool = {pool}\n{lease}"
        f"{f'ipv6_pool = {ipv6_pool}' + chr(10) if ipv6_pool else ''}"
        f"tunnel_mtu = {tunnel_mtu}\ndhcp = {dhcp}\n{relay}revocation_budget = 0.5\n\n"
        f"{peers}{_profiles(profiles, dlmap_line=False)}"
    )
    paths = {"dlmap": folder / "dlmap.ini"}
    paths["dlmap"].write_text(dlmap)
    for index, address in DMPA_ADDRESSES.items():
        links = dot1x.hostapd[index] if dot1x is not None else {ACCESS_IF: None}
        access_line = ", ".join(links)
        text = (
            f"[node]\nrole = dmpa\nname = m{index}\naddress = {address}\n"
            f"state_dir = {folder / f'dmpa{index}-state'}\n"
            f"control_socket = {sockets[f'dmpa{index}']}\nlog_level = {log_level}\n"
            f"offload = {'yes' if offload else 'no'}\n{tier}{key_line.get(f'dmpa{index}', '')}\n"
            f"[dmpa]\naccess = {access_line}\ngateway = {GATEWAY}\n"
            f"prefix_length = {HOA_NETWORK.prefixlen}\ntunnel_mtu = {tunnel_mtu}\n"
            f"aaa = {'radius' if radius else 'local'}\n\n"
            f"[peer {DLMAP_ADDRESS}]\ndialect = {dialect}\n{spi_line[index]}\n"
        )
        if radius is None and dot1x is None:  # with RADIUS the profiles come from the server
            text += _profiles(profiles, dlmap_line=True)
        if radius is not None:
            text += f"[radius]\nservers = {radius[0]} {radius[1]}\n"
        if dot1x is not None:
            text += (
                f"[radius]\nservers = {dot1x.server} {dot1x.secret}\n"
                f"proxy = {dot1x.proxy}\nproxy_secret = {dot1x.proxy_secret}\n"
            )
            for name, path in dot1x.hostapd[index].items():
                text += f"\n[access {name}]\nauth = 8021x\nhostapd = {path}\n"
        paths[f"dmpa{index}"] = folder / f"dmpa{index}.ini"
        paths[f"dmpa{index}"].write_text(text)
        paths[f"dmpa{index}"].chmod(0o600)  # it may hold a RADIUS secret
    for path in paths.values():
        config.load(path)  # raises ConfigErrors with every problem: a lab bug, said at once
    return LabConfigs(paths["dlmap"], {1: paths["dmpa1"], 2: paths["dmpa2"]}, sockets)


def _key_file(path: Path, keys: dict[int, bytes]) -> str:
    """Write an RFC 4285 key file (mode 600 before any key is in it); its ``key_file`` line."""
    path.unlink(missing_ok=True)
    path.touch(mode=0o600)
    path.write_text("".join(f"{spi} {key.hex()}\n" for spi, key in keys.items()))
    return f"key_file = {path}\n"
