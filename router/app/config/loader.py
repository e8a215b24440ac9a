"""The ini file -> :mod:`router.app.settings`, through the schema, or every error at once.

Each section is read by its schema entries (:mod:`router.app.config.schema`): unknown keys and
bad values are problems, absent keys take their defaults. The checks that relate several values
(:mod:`router.app.config.checks`) run next, on the values that parsed; then the settings are
built. Sections are read in this order: [node], the [peer] sections (and the RFC 4285 key
file), the role's section, [limits], the [profile] sections, [radius].
"""

from __future__ import annotations

import configparser
import dataclasses
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path
from typing import Any, Literal, cast

from router.adapters.keyfile import KeyFileError, read_key_file
from router.app.config import checks
from router.app.config import schema as k
from router.app.config.parsers import Invalid, ipv6
from router.app.config.sections import ConfigErrors, Report, Section, some
from router.app.settings import (
    AccessSettings,
    DLMAPSettings,
    DMPASettings,
    NodeSettings,
    PeerSettings,
    RadiusSettings,
    Role,
    Settings,
)
from router.core.aaa import LocalProfile
from router.core.dmpa import AddressMode
from router.core.limits import LimitSettings, Rate
from router.wire.dialect import Dialect
from router.wire.errors import EncodeError
from router.wire.ethernet import MacAddress

_NO_DEFAULT_SECTION = "\x00"  # configparser's [DEFAULT] would leak keys into every section


def load(path: Path) -> tuple[Settings, list[str]]:
    """Read and check one ini file: (settings, warnings), or :class:`ConfigErrors`."""
    try:
        text = path.read_text(encoding="utf-8")
        mode: int | None = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([f"{path}: cannot read: {exc}"]) from None
    return loads(text, file_mode=mode)


def _parser() -> configparser.ConfigParser:
    return configparser.ConfigParser(
        interpolation=None,
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";", "#"),
        default_section=_NO_DEFAULT_SECTION,
        empty_lines_in_values=False,
        strict=True,
    )


def raw_sections(text: str) -> dict[str, dict[str, str]]:
    """The sections and key = value pairs of an ini text as written (comments out), for
    ``netlmm show config``; call it on a text :func:`loads` accepted."""
    parser = _parser()
    parser.read_string(text)
    return {name: dict(parser.items(name)) for name in parser.sections()}


def loads(text: str, *, file_mode: int | None = None) -> tuple[Settings, list[str]]:
    """Like :func:`load`, from the text of a file (``file_mode``: its ``st_mode``, if any)."""
    report = Report()
    parser = _parser()
    try:
        parser.read_string(text)
    except configparser.DuplicateSectionError as exc:
        raise ConfigErrors([f"{exc.section}: section given twice (line {exc.lineno})"]) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigErrors(
            [f"{exc.section}.{exc.option}: key given twice (line {exc.lineno})"]
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigErrors([f"line {exc.lineno}: a key before any [section]"]) from None
    except configparser.ParsingError as exc:
        lines = text.splitlines()
        raise ConfigErrors(
            [f"line {n}: not 'key = value': {lines[n - 1].strip()}" for n, _ in exc.errors]
        ) from None
    settings = Loader(parser, report, file_mode).settings()
    if report.problems or settings is None:
        raise ConfigErrors(report.problems or ["node: no settings"], report.warnings)
    return settings, report.warnings


def summary(settings: Settings) -> str:
    """One line for ``check-config``: role, name, address, peers and profiles."""
    node = settings.node
    peers = ", ".join(f"{p.address} ({p.dialect.name})" for p in settings.peers) or "none"
    count = len(settings.profiles)
    plural = "" if count == 1 else "s"
    return f"{node.role} {node.name} at {node.address}; peers: {peers}; {count} profile{plural}"


class Loader:
    def __init__(
        self, parser: configparser.ConfigParser, report: Report, file_mode: int | None
    ) -> None:
        self.report = report
        self.file_mode = file_mode
        self.single: dict[str, Section] = {}
        self.peers: list[tuple[Section, str]] = []
        self.profiles: list[tuple[Section, str]] = []
        self.accesses: list[tuple[Section, str]] = []
        self.peer_sections = 0  # named or not: one is enough to not ask for one
        for name in parser.sections():
            kind, _, argument = name.partition(" ")
            argument = argument.strip()
            values = dict(parser.items(name))
            if kind in k.SINGLE_SECTIONS and not argument:
                self.single[kind] = Section(report, name, kind, values)
            elif kind in k.NAMED_SECTIONS and argument:
                section = Section(report, name, kind, values)
                named = {"peer": self.peers, "profile": self.profiles, "access": self.accesses}
                named[kind].append((section, argument))
                self.peer_sections += kind == "peer"
            elif kind in k.NAMED_SECTIONS:
                self.peer_sections += kind == "peer"
                what = {"peer": "<ipv6>", "profile": "<nai>", "access": "<interface>"}[kind]
                report.problems.append(f"{name}: name it, as [{kind} {what}]")
            else:
                report.problems.append(
                    f"{name}: unknown section (known: [node], [dmpa], [dlmap], "
                    "[peer <ipv6>], [profile <nai>], [radius], [limits], [access <interface>])"
                )

    def settings(self) -> Settings | None:
        node_section = self.single.get("node")
        if node_section is None:
            self.report.problems.append("node: section missing (role, name, address)")
            node_section = Section(self.report, "node", "node", {})
        node, role = self._node(node_section)
        if role is None:  # still check what can be checked
            present = [kind for kind in ("dmpa", "dlmap") if kind in self.single]
            role = present[0] if len(present) == 1 else None
        address = node.address if node is not None else None
        peers = self._peers(address)
        node = self._keys(node_section, node, peers)
        other = "dlmap" if role == "dmpa" else "dmpa"
        if role is not None and other in self.single:
            self.single[other].error(
                None, f"this node is a {role} (node.role): the section does not apply"
            )
        if role == "dlmap" and "radius" in self.single:
            self.single["radius"].error(None, "only a DMPA asks RADIUS (node.role = dlmap)")
        if role == "dlmap":
            for section, _ in self.accesses:
                section.error(None, "only a DMPA has access links (node.role = dlmap)")
        if role is None:
            return None
        # A missing [dmpa] or [dlmap] shows as its required keys missing.
        section = self.single.get(role) or Section(self.report, role, role, {})
        if role == "dmpa":
            return self._dmpa(section, node, peers)
        return self._dlmap(section, node, peers)

    # [node]

    def _node(self, s: Section) -> tuple[NodeSettings | None, Role | None]:
        role = cast("Role | None", s.value(k.NODE_ROLE))
        if role == "dmpa":
            for key in (k.NODE_STORE, k.NODE_STORE_DSN, k.NODE_STORE_PASSWORD_FILE, k.NODE_HA):
                s.refuse(key, "only a DLMAP has a shared database or a standby (node.role)")
        s.read_all()
        checks.store(s)
        name = s.value(k.NODE_NAME)
        state_dir = s.value(k.NODE_STATE_DIR)
        if state_dir is None and name is not None and not s.has(k.NODE_STATE_DIR):
            state_dir = k.STATE_ROOT / name
        socket = s.value(k.NODE_CONTROL_SOCKET)
        if socket is None and name is not None and not s.has(k.NODE_CONTROL_SOCKET):
            socket = k.RUN_ROOT / f"{name}.sock"
        if s.failed:
            return None, role
        return (
            NodeSettings(
                some(role),
                some(name),
                some(s.value(k.NODE_ADDRESS)),
                some(state_dir),
                some(socket),
                some(s.value(k.NODE_LOG_LEVEL)),
                some(s.value(k.NODE_OFFLOAD)),
                s.value(k.NODE_KEY_FILE),
                some(s.value(k.NODE_REPLAY_WINDOW)),
                log_format=some(s.value(k.NODE_LOG_FORMAT)),
                metrics=s.value(k.NODE_METRICS),
                store=s.value(k.NODE_STORE) or "sqlite",
                store_dsn=s.value(k.NODE_STORE_DSN),
                store_password_file=s.value(k.NODE_STORE_PASSWORD_FILE),
                ha=s.value(k.NODE_HA) or "off",
                datapath=some(s.value(k.NODE_DATAPATH)),
            ),
            role,
        )

    # [peer <ipv6>]

    def _peers(self, own: IPv6Address | None) -> dict[IPv6Address, PeerSettings]:
        peers: dict[IPv6Address, PeerSettings] = {}
        for s, argument in self.peers:
            try:
                address: IPv6Address | None = ipv6(argument)
            except Invalid as exc:
                s.error(None, str(exc))
                address = None
            if address is not None and address == own:
                s.error(None, "this is our own address (node.address)")
            elif address is not None and address in peers:
                s.error(None, f"{address} has two [peer] sections")
            dialect = self._dialect(s)
            spi = s.value(k.PEER_SPI)
            if address is not None and dialect is not None and not s.failed:
                peers[address] = PeerSettings(address, dialect, spi)
        return peers

    @staticmethod
    def _dialect(s: Section) -> Dialect | None:
        name = s.value(k.PEER_DIALECT)
        if name == "rfc5844":
            for key in k.PEER_DRAFT_KEYS:
                s.refuse(key, "a draft-dialect codepoint: only with dialect = draft")
        s.read_all()
        codepoints: dict[str, int] = {}
        for key in k.PEER_DRAFT_KEYS:
            value = s.value(key)
            if s.has(key) and value is not None:
                codepoints[k.DRAFT_KEYS[key.name]] = value
        if s.failed or name is None:
            return None
        if name == "rfc5844":
            return Dialect.rfc5844()
        try:  # each codepoint passed alone (its parser): together they may still collide
            return Dialect.draft(**codepoints)
        except EncodeError as exc:
            s.error("dialect", str(exc))
            return None

    def _keys(
        self,
        s: Section,
        node: NodeSettings | None,
        peers: Mapping[IPv6Address, PeerSettings],
    ) -> NodeSettings | None:
        """RFC 4285 keys: read ``node.key_file`` for the peers' SPIs (never shown anywhere).

        Seed section 7: the signaling "MUST be protected". A [peer] without an spi is refused
        unless it says ``insecure = yes``, which is warned about at every load (so every start).
        """
        for ps, _ in self.peers:
            insecure = ps.value(k.PEER_INSECURE)
            if insecure and ps.has(k.PEER_SPI):
                ps.error("insecure", "yes, with an spi: the peer is either protected or not")
            elif insecure:
                ps.warn(
                    "insecure",
                    "signaling with this peer is not protected (seed section 7 says it MUST be)",
                )
            elif not ps.has(k.PEER_SPI):
                ps.error(
                    "spi",
                    "required: signaling must be protected (seed section 7); make a key file "
                    "with `netlmm keygen FILE` (node.key_file) and put its SPI here, or say "
                    "insecure = yes",
                )
        spis = {p.address: p.spi for p in peers.values() if p.spi is not None}
        if spis and not s.has(k.NODE_KEY_FILE):
            for ps, _ in self.peers:
                if ps.has(k.PEER_SPI):
                    ps.error("spi", "needs the keys: node.key_file")
            return node
        if node is None or node.key_file is None:
            return node
        if not spis:
            s.warn("key_file", "not used: no [peer] section has an spi")
            return node
        try:
            keys = read_key_file(node.key_file, spis.values())
        except KeyFileError as exc:
            for problem in exc.problems:
                s.error("key_file", problem)
            return None
        return dataclasses.replace(node, keys=keys)

    # [dmpa]

    def _dmpa(
        self, s: Section, node: NodeSettings | None, peers: dict[IPv6Address, PeerSettings]
    ) -> DMPASettings | None:
        s.read_all()
        access = s.value(k.DMPA_ACCESS)
        checks.access_prefix(s, access, node.name if node is not None else None)
        pseudo_mac = s.value(k.DMPA_PSEUDO_MAC)
        checks.pseudo_mac(s, pseudo_mac)
        gateway = s.value(k.DMPA_GATEWAY)
        prefix_length = s.value(k.DMPA_PREFIX_LENGTH)
        subnet = checks.dmpa_subnet(s, gateway, prefix_length)
        lifetime = checks.lifetime(s, k.DMPA_LIFETIME)
        tunnel_mtu = s.value(k.DMPA_TUNNEL_MTU)
        checks.tunnel_mtu(s, tunnel_mtu)
        aaa = cast("Literal['local', 'radius'] | None", s.value(k.DMPA_AAA))
        lease_time = s.value(k.DMPA_LEASE_TIME)
        checks.lease(s, lease_time, "lifetime", lifetime)
        limits = self._limits("dmpa")

        if not self.peer_sections:
            self.report.problems.append("peer: a DMPA needs a [peer <ipv6>] for its DLMAP")
        reserved = {gateway: "the gateway (dmpa.gateway)"} if gateway is not None else {}
        profiles = self._profiles("dmpa", node, peers, subnet, reserved)
        checks.pseudo_mac_in_profiles(
            s, pseudo_mac, {p.mac: p.nai for p in profiles if p.mac is not None}
        )
        radius = self._radius(node)
        links = self._accesses(access or ())
        dot1x = any(link.auth == "8021x" for link in links)
        checks.aaa(s, aaa, self.single, len(self.profiles), dot1x)
        checks.dot1x_proxy(s, self.single.get("radius"), dot1x)
        if aaa == "local" and not dot1x:
            radius = None
        if self.report.problems or node is None:
            return None
        return DMPASettings(
            node,
            some(access),
            some(pseudo_mac),
            some(gateway),
            some(prefix_length),
            tuple(peers.values()),
            tuple(profiles),
            lifetime=some(lifetime),
            tunnel_mtu=some(tunnel_mtu),
            aaa=some(aaa),
            radius=radius,
            dns=some(s.value(k.DMPA_DNS)),
            lease_time=some(lease_time),
            heartbeat_interval=some(s.value(k.DMPA_HEARTBEAT_INTERVAL)),
            heartbeat_missing=some(s.value(k.DMPA_HEARTBEAT_MISSING)),
            limits=some(limits),
            links=tuple(links),
        )

    # [access <interface>]

    def _accesses(self, access: tuple[str, ...]) -> list[AccessSettings]:
        links: list[AccessSettings] = []
        seen: set[str] = set()
        for s, name in self.accesses:
            s.read_all()
            if name not in access:
                s.error(None, f"{name!r} is not an access link (dmpa.access)")
            if name in seen:
                s.error(None, "given twice")
            seen.add(name)
            auth = s.value(k.ACCESS_AUTH)
            hostapd = s.value(k.ACCESS_HOSTAPD)
            if auth != "pppoe" and s.has(k.ACCESS_PPP_AUTH):
                s.error("ppp_auth", f"only with auth = pppoe (auth is {auth})")
            if auth != "8021x" and s.has(k.ACCESS_HOSTAPD):
                s.error("hostapd", f"only with auth = 8021x (auth is {auth})")
            if auth == "8021x" and hostapd is None:
                hostapd = Path("/run/hostapd") / name
            if not s.failed and auth is not None:
                ppp_auth = cast("Any", s.value(k.ACCESS_PPP_AUTH))
                links.append(AccessSettings(name, cast("Any", auth), hostapd, ppp_auth))
        return links

    # [limits]

    def _limits(self, role: Role) -> LimitSettings | None:
        """The [limits] of ``role``: a key of the other role's limits is an error."""
        s = self.single.get("limits")
        if s is None:
            return LimitSettings()
        checks.other_limits(s, role)
        s.read_all()
        rates: dict[str, Rate] = {}
        for name in k.LIMITS_DMPA if role == "dmpa" else k.LIMITS_DLMAP:
            rate = s.value(k.LIMIT_RATE[name])
            burst = s.value(k.LIMIT_BURST[name])
            if rate is not None and burst is not None:
                rates[name] = Rate(rate, burst)
        size = s.value(k.LIMITS_TABLE_SIZE)
        if s.failed or size is None:
            return None
        return dataclasses.replace(LimitSettings(), table_size=size, **rates)

    # [radius]

    def _radius(self, node: NodeSettings | None) -> RadiusSettings | None:
        s = self.single.get("radius")
        if s is None:
            return None
        s.read_all()
        servers = s.value(k.RADIUS_SERVERS)
        nas_identifier = s.value(k.RADIUS_NAS_IDENTIFIER)
        if nas_identifier is None and not s.has(k.RADIUS_NAS_IDENTIFIER) and node is not None:
            nas_identifier = node.name
        checks.radius_servers(s, servers, self.file_mode)
        if s.failed:
            return None
        return RadiusSettings(
            some(servers),
            some(nas_identifier),
            some(s.value(k.RADIUS_TIMEOUT)),
            some(s.value(k.RADIUS_RETRIES)),
            s.value(k.RADIUS_PROXY),
            s.value(k.RADIUS_PROXY_SECRET),
        )

    # [dlmap]

    def _dlmap(
        self, s: Section, node: NodeSettings | None, peers: dict[IPv6Address, PeerSettings]
    ) -> DLMAPSettings | None:
        s.read_all()
        network = s.value(k.DLMAP_NETWORK)
        gateway = s.value(k.DLMAP_GATEWAY)
        reserved = checks.dlmap_gateway(s, network, gateway)
        pool = s.value(k.DLMAP_POOL)
        checks.pool(s, pool, network, reserved)
        max_lifetime = checks.lifetime(s, k.DLMAP_MAX_LIFETIME)
        lease_time = s.value(k.DLMAP_LEASE_TIME)
        checks.lease(s, lease_time, "max_lifetime", max_lifetime)
        tunnel_mtu = s.value(k.DLMAP_TUNNEL_MTU)
        checks.tunnel_mtu(s, tunnel_mtu)
        dhcp = cast("Literal['builtin', 'relay'] | None", s.value(k.DLMAP_DHCP))
        checks.dhcp_servers(s, dhcp)
        revocation_budget = s.value(k.DLMAP_REVOCATION_BUDGET)
        checks.revocation_budget(s, revocation_budget)
        limits = self._limits("dlmap")
        if not self.peer_sections:
            self.report.problems.append("peer: a DLMAP needs a [peer <ipv6>] for each DMPA")
        profiles = self._profiles("dlmap", node, peers, network, reserved)
        if self.report.problems or node is None:
            return None
        return DLMAPSettings(
            node,
            some(gateway),
            some(network),
            some(pool),
            tuple(peers.values()),
            tuple(profiles),
            ipv6_pool=s.value(k.DLMAP_IPV6_POOL),
            max_lifetime=some(max_lifetime),
            lease_time=some(lease_time),
            tunnel_mtu=some(tunnel_mtu),
            dhcp=some(dhcp),
            dhcp_servers=some(s.value(k.DLMAP_DHCP_SERVERS)),
            dns=some(s.value(k.DLMAP_DNS)),
            revocation_budget=some(revocation_budget),
            bri_interval=some(s.value(k.DLMAP_BRI_INTERVAL)),
            bri_retries=some(s.value(k.DLMAP_BRI_RETRIES)),
            heartbeat_interval=some(s.value(k.DLMAP_HEARTBEAT_INTERVAL)),
            heartbeat_missing=some(s.value(k.DLMAP_HEARTBEAT_MISSING)),
            limits=some(limits),
        )

    # [profile <nai>]

    def _profiles(
        self,
        role: Role,
        node: NodeSettings | None,
        peers: Mapping[IPv6Address, PeerSettings],
        home: IPv4Network | None,
        reserved: Mapping[IPv4Address, str],
    ) -> list[LocalProfile]:
        profiles: list[LocalProfile] = []
        macs: dict[object, str] = {}
        hoas: dict[object, str] = {}
        own = node.address if node is not None else None
        for s, nai in self.profiles:
            checks.nai(s, nai)
            s.read_all()
            mac: MacAddress | None = s.value(k.PROFILE_MAC)
            checks.unique(s, "mac", mac, macs, nai)
            mode = cast("AddressMode | None", s.value(k.PROFILE_MODE))
            hoa = s.value(k.PROFILE_HOA)
            checks.hoa_mode(s, mode)
            checks.unique(s, "hoa", hoa, hoas, nai)
            checks.hoa_place(s, role, hoa, home, reserved)
            dlmap = checks.anchor(s, role, s.value(k.PROFILE_DLMAP), own, peers)
            allowed = s.value(k.PROFILE_ALLOWED)
            # dlmap stays None without an error of its own when the peers did not parse.
            if not s.failed and mode is not None and dlmap is not None and allowed is not None:
                gateway = s.value(k.PROFILE_GATEWAY)
                password = s.value(k.PROFILE_PASSWORD)
                ipv6 = s.value(k.PROFILE_IPV6)
                dns = s.value(k.PROFILE_DNS) or ()
                profiles.append(
                    LocalProfile(
                        nai, mode, dlmap, mac, hoa, gateway, allowed, ipv6 is True, password, dns
                    )
                )
        return profiles
