"""What one appliance process is told to be: the validated form of its ini file.

:mod:`router.app.config` turns an ini file into these (or into every error at once, as
``section.key: message``); the composition roots in :mod:`router.app` read nothing else.

The fields carry no defaults: the loader fills every one, and each key's default is declared
once, in the schema (:mod:`router.app.config.schema`).

The ini file, section by section (``etc/dmpa.ini`` and ``etc/dlmap.ini`` document every key)::

    [node]        role, name, address (our IPv6 tunnel endpoint and MH address), state_dir,
                  control_socket, log_level, log_format, metrics, offload, key_file and
                  replay_window (RFC 4285), datapath (kernel tier or Cython only)
    [dmpa]        access interfaces, pseudo_mac, gateway, prefix_length, lifetime, tunnel_mtu,
                  aaa backend, default address mode
    [dlmap]       gateway, network (the HoA network), pool ranges, lifetime, lease_time,
                  tunnel_mtu, dhcp (builtin | relay) and relay servers, revocation timers
    [peer <ipv6>] one per peer: the DLMAPs a DMPA registers at, the DMPAs a DLMAP accepts;
                  dialect (draft | rfc5844) and its draft-dialect codepoints; spi (RFC 4285)
    [profile <nai>] local AAA profiles (both roles: the DLMAP reads static addresses from them)
    [radius]      RADIUS servers and secrets (DMPA, when aaa = radius), the 802.1X proxy
    [access <if>] how an access link's MSs identify themselves: auth = mac | 8021x | pppoe
    [limits]      per-source rate limits (router.core.limits): the DMPA's new_mac, arp and
                  dhcp_discover, the DLMAP's pbu_new_nai, and table_size
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from typing import Literal

from router.core.aaa import LocalProfile
from router.core.limits import LimitSettings
from router.core.security import KeyRing
from router.wire.dialect import Dialect
from router.wire.ethernet import MacAddress

Role = Literal["dmpa", "dlmap"]


@dataclass(frozen=True, slots=True)
class NodeSettings:
    role: Role
    #: Short name (letters, digits, '-'), at most 8 characters: it prefixes the kernel objects
    #: this process creates ("nl" + name + suffix fits the 15-character interface limit), which
    #: is how they are recognised and swept at start-up.
    name: str
    #: Our IPv6 address: source of the MH signaling and the tunnel endpoint.
    address: IPv6Address
    state_dir: Path
    control_socket: Path
    log_level: str
    #: TAP/TUN offload (``IFF_VNET_HDR`` + ``TUNSETOFFLOAD`` CSUM|TSO4|TSO6): TCP super-packets
    #: arrive whole and the fastpath splits them for the tunnel (``fastpath.segment``).
    offload: bool
    #: The RFC 4285 key file (``SPI HEX-KEY`` a line, mode 600), read at start and on SIGHUP.
    key_file: Path | None
    #: MESG-ID "close enough" window, seconds (RFC 4285 section 6).
    replay_window: float
    #: ``text`` (key=value lines) or ``json`` (one object a line), on stderr.
    log_format: str
    #: The Prometheus endpoint, ``(address, port)``; None: off.
    metrics: tuple[str, int] | None
    #: ``sqlite`` or ``postgresql`` (DLMAP): where the state lives, and the database's URI
    #: and password file (mode 600) for the latter.
    store: str
    store_dsn: str | None
    store_password_file: Path | None
    #: ``off`` or ``pair``: one of an active/standby DLMAP pair (router.app.ha).
    ha: str
    #: ``auto``, ``kernel`` or ``cython``: the tier that forwards bound MSs (docs/kernel-tier.md).
    datapath: str
    #: The keys read from ``key_file`` (their repr shows the SPIs only): set after loading.
    keys: KeyRing | None = None


@dataclass(frozen=True, slots=True)
class PeerSettings:
    address: IPv6Address
    dialect: Dialect
    #: RFC 4285 MN-HA SPI (>= 256): signaling with this peer is signed and checked. None: not.
    spi: int | None


@dataclass(frozen=True, slots=True)
class RadiusSettings:
    servers: tuple[tuple[str, bytes], ...]  # ("[2001:db8::5]:1812" or "192.0.2.5:1812", secret)
    nas_identifier: str
    timeout: float
    retries: int
    #: Where the 802.1X authenticators' RADIUS comes in, and their secret (None: no proxy).
    proxy: tuple[str, int] | None
    proxy_secret: bytes | None


@dataclass(frozen=True, slots=True)
class AccessSettings:
    """One ``[access IFACE]`` section: how the MSs of that access link identify themselves."""

    interface: str
    auth: Literal["mac", "8021x", "pppoe"]
    #: hostapd's control socket (auth = 8021x).
    hostapd: Path | None
    #: auth = pppoe: what LCP asks the MS to authenticate with.
    ppp_auth: Literal["chap", "pap"]


@dataclass(frozen=True, slots=True)
class DMPASettings:
    node: NodeSettings
    #: Existing interfaces that are access links; link index = position in this tuple.
    access: tuple[str, ...]
    pseudo_mac: MacAddress
    gateway: IPv4Address
    prefix_length: int
    peers: tuple[PeerSettings, ...]
    profiles: tuple[LocalProfile, ...]
    lifetime: int
    tunnel_mtu: int
    aaa: Literal["local", "radius"]
    radius: RadiusSettings | None
    #: DHCP options the co-located server (DLMAP-allocation mode) hands out.
    dns: tuple[IPv4Address, ...]
    lease_time: int
    #: RFC 5847 heartbeats to the DLMAPs: seconds between requests (0 = off), misses allowed.
    heartbeat_interval: float
    heartbeat_missing: int
    limits: LimitSettings
    #: The [access IFACE] sections, one per access link that has one (the others: auth mac).
    links: tuple[AccessSettings, ...]

    def auth(self, link: int) -> str:
        """``mac``, ``8021x`` or ``pppoe``: how access link ``link`` (an index) authenticates."""
        name = self.access[link]
        return next((a.auth for a in self.links if a.interface == name), "mac")


@dataclass(frozen=True, slots=True)
class DLMAPSettings:
    node: NodeSettings
    #: The MS's default gateway, the DLMAP's own address on the HoA network (seed 3.4).
    gateway: IPv4Address
    network: IPv4Network
    pool: tuple[tuple[IPv4Address, IPv4Address], ...]
    peers: tuple[PeerSettings, ...]
    profiles: tuple[LocalProfile, ...]
    #: The IPv6 home network prefixes, one /64 per MS (None: IPv4 only).
    ipv6_pool: IPv6Network | None
    max_lifetime: int
    lease_time: int
    tunnel_mtu: int
    dhcp: Literal["builtin", "relay"]
    dhcp_servers: tuple[IPv4Address, ...]
    dns: tuple[IPv4Address, ...]
    revocation_budget: float
    bri_interval: float
    bri_retries: int
    #: RFC 5847 heartbeats to the DMPAs (0 = off: the DLMAP only answers the DMPAs' requests).
    heartbeat_interval: float
    heartbeat_missing: int
    limits: LimitSettings
    #: Extra settings a test or an operator may pass through (reserved; empty by default).
    extra: dict[str, str] = field(default_factory=dict)


Settings = DMPASettings | DLMAPSettings
