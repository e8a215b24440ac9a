"""Checks that relate several values, run after the section's keys have been parsed.

Each check is given the values that parsed (None for those that did not: a check then stays
silent, the parser has already said what is wrong) and records its problems and warnings on the
section they concern. The loader (:mod:`router.app.config.loader`) calls them in order.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from itertools import pairwise

from router.adapters.store import StoreError
from router.adapters.store_pg import read_password_file
from router.app.config import schema as k
from router.app.config.parsers import show_range
from router.app.config.sections import Section
from router.app.settings import Role
from router.wire.constants import LIFETIME_UNIT_SECONDS
from router.wire.ethernet import MacAddress

#: RFC 2865 3: a shared secret should be at least 16 octets.
MIN_SECRET = 16


def lifetime(s: Section, key: k.Key[int]) -> int | None:
    """A binding lifetime travels in units of 4 seconds (RFC 6275 6.1.7): another value is
    refused, never rounded behind the operator's back."""
    value = s.value(key)
    if value is None:
        return None
    unit = LIFETIME_UNIT_SECONDS
    if value % unit:
        below = value - value % unit
        s.error(
            key.name,
            f"{value} is not a multiple of {unit} seconds (the unit a lifetime travels in, "
            f"RFC 6275 6.1.7): {below} or {below + unit}?",
        )
        return None
    return value


def tunnel_mtu(s: Section, mtu: int | None) -> None:
    if mtu is not None and mtu < k.FULL_SIZE:
        s.warn(
            "tunnel_mtu",
            f"{mtu} is below {k.FULL_SIZE}: full-size IPv4 packets from an Ethernet MS will be "
            "fragmented (DF clear) or refused with ICMP 'fragmentation needed' (DF set); "
            f"an IPv6 transport MTU of {k.FULL_SIZE + k.TUNNEL_OVERHEAD} allows tunnel_mtu = "
            f"{k.FULL_SIZE}",
        )


def lease(s: Section, lease_time: int | None, lifetime_key: str, lifetime: int | None) -> None:
    if lease_time is not None and lifetime is not None and lease_time > lifetime:
        s.warn(
            "lease_time",
            f"{lease_time} s outlasts the binding ({s.name}.{lifetime_key} = {lifetime}): "
            f"leases are cut to {lifetime} s",
        )


# [dmpa]


def access_prefix(s: Section, access: tuple[str, ...] | None, name: str | None) -> None:
    """An access link must not look like a device this node makes (and sweeps)."""
    if access is None or name is None:
        return
    prefix = f"nl{name}"
    for ifname in access:
        if ifname.startswith(prefix):
            s.error(
                "access",
                f"{ifname} starts with {prefix}, the prefix of the devices this node "
                "makes and sweeps at start-up",
            )


def pseudo_mac(s: Section, mac: MacAddress | None) -> None:
    if mac is not None and not mac.is_locally_administered:
        s.warn("pseudo_mac", f"{mac} is not locally administered: it may be a real card's address")


def dmpa_subnet(
    s: Section, gateway: IPv4Address | None, prefix_length: int | None
) -> IPv4Network | None:
    """The MSs' subnet (dmpa.gateway/prefix_length); the gateway is neither of its edges."""
    if gateway is None or prefix_length is None:
        return None
    subnet = IPv4Network(f"{gateway}/{prefix_length}", strict=False)
    if gateway in (subnet.network_address, subnet.broadcast_address):
        s.error("gateway", f"{gateway} is the network or broadcast address of {subnet}")
    return subnet


def pseudo_mac_in_profiles(
    s: Section, mac: MacAddress | None, profiles: Mapping[MacAddress, str]
) -> None:
    if mac is not None and mac in profiles:
        s.error("pseudo_mac", f"{mac} is also the MAC of [profile {profiles[mac]}]")


def aaa(
    s: Section,
    backend: str | None,
    single: Mapping[str, Section],
    profiles: int,
    dot1x: bool = False,
) -> bool:
    """dmpa.aaa against [radius] and the profiles; False: the [radius] section is not used.
    ``dot1x``: an access link authenticates by 802.1X (its RADIUS goes through [radius])."""
    if backend == "radius" and "radius" not in single:
        s.error("aaa", "radius needs a [radius] section")
    if backend == "local" and "radius" in single and not dot1x:
        single["radius"].warn(None, "not used: dmpa.aaa = local")
    if backend == "local" and not profiles and not dot1x:
        s.warn("aaa", "local, with no [profile] sections: every MS will be refused")
    if backend == "radius" and profiles:
        s.warn("aaa", "radius: the [profile] sections are not used by this DMPA")
    return backend != "local"


def dot1x_proxy(s: Section, radius: Section | None, dot1x: bool) -> None:
    """An auth = 8021x link needs the [radius] servers to forward to and the proxy's secret."""
    if not dot1x:
        return
    if radius is None:
        s.report.problems.append(
            "radius: section missing (an auth = 8021x access link needs servers and proxy_secret)"
        )
        return
    if not radius.has(k.RADIUS_PROXY_SECRET):
        radius.error("proxy_secret", "required with an auth = 8021x access link")
    secret = radius.value(k.RADIUS_PROXY_SECRET)
    if secret is not None and len(secret) < MIN_SECRET:
        radius.warn("proxy_secret", "shorter than 16 octets (RFC 2865 3 prefers 16+)")


# [dlmap]


def dlmap_gateway(
    s: Section, network: IPv4Network | None, gateway: IPv4Address | None
) -> dict[IPv4Address, str]:
    """The gateway inside the HoA network and not one of its edges; returns the addresses no
    MS may have (edges, gateway), each with the reason."""
    reserved: dict[IPv4Address, str] = {}
    if network is not None:
        reserved[network.network_address] = f"the network address of {network}"
        reserved[network.broadcast_address] = f"the broadcast address of {network}"
    if gateway is not None and network is not None:
        if gateway not in network:
            s.error("gateway", f"{gateway} is not in {network} (dlmap.network)")
        elif gateway in reserved:
            s.error("gateway", f"{gateway} is {reserved[gateway]}")
    if gateway is not None:
        reserved[gateway] = "the gateway (dlmap.gateway)"
    return reserved


def pool(
    s: Section,
    ranges: tuple[tuple[IPv4Address, IPv4Address], ...] | None,
    network: IPv4Network | None,
    reserved: Mapping[IPv4Address, str],
) -> None:
    """Every range inside the network, clear of the reserved addresses, none overlapping."""
    if ranges is None:
        return
    for first, last in ranges:
        shown = show_range(first, last)
        if network is not None and (first not in network or last not in network):
            s.error("pool", f"{shown} is not inside {network} (dlmap.network)")
            continue
        for address, what in reserved.items():
            if first <= address <= last:
                s.error("pool", f"{shown} contains {address}, {what}")
    for (a_first, a_last), (b_first, b_last) in pairwise(sorted(ranges)):
        if b_first <= a_last:
            s.error(
                "pool", f"{show_range(a_first, a_last)} and {show_range(b_first, b_last)} overlap"
            )


def dhcp_servers(s: Section, dhcp: str | None) -> None:
    if dhcp == "relay" and not s.has(k.DLMAP_DHCP_SERVERS):
        s.error("dhcp_servers", "required with dhcp = relay")
    if dhcp == "builtin" and s.has(k.DLMAP_DHCP_SERVERS):
        s.warn("dhcp_servers", "not used: dhcp = builtin")


def revocation_budget(s: Section, budget: float | None) -> None:
    first = k.FIRST_PBU_TIMEOUT
    if budget is not None and budget >= first:
        s.warn(
            "revocation_budget",
            f"{budget:g} s: a DMPA resends its PBU after {first:g} s, before this PBA leaves",
        )


# [limits]


def other_limits(s: Section, role: Role) -> None:
    """The other role's limits are refused, each with the same message."""
    for key in k.SECTION_KEYS["limits"]:
        if role not in key.roles:
            s.refuse(key, f"a {role} has no such limit (node.role = {role})")


# [radius]


def radius_servers(
    s: Section, servers: tuple[tuple[str, bytes], ...] | None, file_mode: int | None
) -> None:
    if servers is None:
        return
    if any(len(secret) < MIN_SECRET for _, secret in servers):
        s.warn("servers", "a secret shorter than 16 octets (RFC 2865 3 prefers 16+)")
    if file_mode is not None and file_mode & (stat.S_IRWXG | stat.S_IRWXO):
        s.warn(
            "servers",
            f"the file holds RADIUS secrets and others may read it "
            f"(mode {stat.S_IMODE(file_mode):04o}): chmod 600",
        )


# [profile <nai>]


def nai(s: Section, nai: str) -> None:
    if len(nai.encode()) > 253 or any(not c.isprintable() or c.isspace() for c in nai):
        s.error(None, "an NAI is 1 to 253 printable octets without spaces (RFC 7542)")


def unique(s: Section, key: str, value: object, seen: dict[object, str], nai: str) -> None:
    """A MAC or a home address belongs to one profile."""
    if value is None:
        return
    if value in seen:
        s.error(key, f"{value} is also in [profile {seen[value]}]")
    else:
        seen[value] = nai


def hoa_mode(s: Section, mode: str | None) -> None:
    """A home address is given with mode = static, and only then."""
    if mode == "static" and not s.has(k.PROFILE_HOA):
        s.error("hoa", "required with mode = static")
    if mode in ("dhcp", "dlmap") and s.has(k.PROFILE_HOA):
        s.error("hoa", f"only for mode = static (mode is {mode})")


def hoa_place(
    s: Section,
    role: Role,
    address: IPv4Address | None,
    home: IPv4Network | None,
    reserved: Mapping[IPv4Address, str],
) -> None:
    """A static address is no reserved one, and lies in the home network."""
    if address is None:
        return
    if address in reserved:
        s.error("hoa", f"{address} is {reserved[address]}")
    if home is not None and address not in home:
        if role == "dlmap":
            s.error("hoa", f"{address} is not in the home network {home} (dlmap.network)")
        elif not s.has(k.PROFILE_GATEWAY):
            s.warn("hoa", f"{address} is not in {home} (dmpa.gateway/prefix_length)")


def anchor(
    s: Section,
    role: Role,
    dlmap: IPv6Address | None,
    own: IPv6Address | None,
    peers: Mapping[IPv6Address, object],
) -> IPv6Address | None:
    """The profile's DLMAP: given, or this DLMAP, or the DMPA's only peer."""
    if role == "dlmap":
        if dlmap is not None and own is not None and dlmap != own:
            s.warn("dlmap", f"{dlmap} is not this DLMAP ({own}): it anchors elsewhere")
        return dlmap or own
    if dlmap is not None:
        if peers and dlmap not in peers:
            s.error("dlmap", f"{dlmap} is not one of the [peer] sections")
        return dlmap
    if len(peers) == 1:
        return next(iter(peers))
    if len(peers) > 1:
        s.error("dlmap", f"required: which of the {len(peers)} peers anchors this MS")
    return None


# [node] store


def store(s: Section) -> None:
    """PostgreSQL needs its URI (and a password file only its owner reads); a pair needs it."""
    engine = s.value(k.NODE_STORE)
    if engine == "postgresql":
        dsn = s.value(k.NODE_STORE_DSN)
        if dsn is None and not s.has(k.NODE_STORE_DSN):
            s.error("store_dsn", "required with store = postgresql")
        elif dsn is not None and not dsn.startswith(("postgresql://", "postgres://")):
            s.error("store_dsn", "not a postgresql:// URI")
        elif dsn is not None and "@" in dsn.split("?", 1)[0] and ":" in _userinfo(dsn):
            s.error("store_dsn", "holds a password: put it in store_password_file (mode 600)")
        secret = s.value(k.NODE_STORE_PASSWORD_FILE)
        if secret is not None:
            try:
                read_password_file(secret)
            except StoreError as exc:
                s.error("store_password_file", str(exc))
    else:
        for key in (k.NODE_STORE_DSN, k.NODE_STORE_PASSWORD_FILE):
            if s.has(key):
                s.warn(key.name, "not used: store = sqlite")
    if s.value(k.NODE_HA) == "pair" and engine != "postgresql":
        s.error("ha", "pair needs the state both processes share: store = postgresql")


def _userinfo(dsn: str) -> str:
    return dsn.split("://", 1)[-1].split("@", 1)[0]
