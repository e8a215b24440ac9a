"""The ini file -> :mod:`router.app.settings`, or every error at once.

:func:`load` reads one file and returns its settings and warnings, or raises
:class:`ConfigErrors` listing every problem as ``section.key: message`` (``peer 2001:db8::1.v_bu:
...``, ``profile alice@example.org.hoa: ...``). It only reads the file: nothing is opened, bound
or created, so ``netlmm check-config`` and ``netlmm run`` fail the same way before any fd exists.

Rules:

1. Every section and every key has to be known (:data:`KEYS`): a typo is an error, never a key
   silently ignored. There is no ``[DEFAULT]`` section and no interpolation; ``;`` and ``#``
   start a comment, also after a value (after whitespace).
2. A bad value is reported and reading goes on, so one run lists every problem; checks that
   relate several values run only on the values that parsed.
3. A warning is a value that is legal but risky (a lifetime rounded to 4-second units, a tunnel
   MTU that refuses full-size packets, a lease that outlasts the binding, ...): the settings are
   still returned, with the warnings beside them, as ``section.key: message``.

``etc/dmpa.ini`` and ``etc/dlmap.ini`` document every key with its default.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address
from itertools import pairwise
from pathlib import Path
from typing import Literal, TypeVar, cast, get_args

from fastpath.reference import ETH_LEN, IO_BUF, IP6_LEN
from router.adapters.keyfile import KeyFileError, read_key_file
from router.app.settings import (
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
from router.core.security import DEFAULT_REPLAY_WINDOW, MAX_SPI, MIN_SPI
from router.wire.constants import LIFETIME_UNIT_SECONDS
from router.wire.dialect import Dialect
from router.wire.errors import EncodeError
from router.wire.ethernet import MacAddress

T = TypeVar("T")

#: The rate limits of each role ([limits] NAME_rate, NAME_burst; router.app.limits).
LIMITS_DMPA = ("new_mac", "dhcp_discover", "arp")
LIMITS_DLMAP = ("pbu_new_nai",)
MAX_LIMIT_RATE = 1e6
MAX_LIMIT_BURST = 1_000_000
MAX_TABLE_SIZE = 1 << 20

#: Keys each kind of section may hold. ``peer`` and ``profile`` sections carry their address
#: or NAI in the section name: ``[peer 2001:db8::1]``, ``[profile alice@example.org]``.
KEYS: dict[str, tuple[str, ...]] = {
    "node": (
        "role",
        "name",
        "address",
        "state_dir",
        "control_socket",
        "log_level",
        "offload",
        "key_file",
        "replay_window",
        "log_format",
        "metrics",
    ),
    "dmpa": (
        "access",
        "pseudo_mac",
        "gateway",
        "prefix_length",
        "lifetime",
        "tunnel_mtu",
        "aaa",
        "dns",
        "lease_time",
        "heartbeat_interval",
        "heartbeat_missing",
    ),
    "dlmap": (
        "gateway",
        "network",
        "pool",
        "max_lifetime",
        "lease_time",
        "tunnel_mtu",
        "dhcp",
        "dhcp_servers",
        "dns",
        "revocation_budget",
        "bri_interval",
        "bri_retries",
        "heartbeat_interval",
        "heartbeat_missing",
    ),
    "peer": (
        "dialect",
        "v_bu",
        "v_ba",
        "seed_option_type",
        "status_hoa_unavailable",
        "status_invalid_hoa",
        "spi",
    ),
    "profile": ("mac", "mode", "hoa", "dlmap", "gateway", "allowed"),
    "radius": ("servers", "nas_identifier", "timeout", "retries"),
    "limits": (
        *(f"{name}_{part}" for name in LIMITS_DMPA + LIMITS_DLMAP for part in ("rate", "burst")),
        "table_size",
    ),
}
SINGLE_SECTIONS = ("node", "dmpa", "dlmap", "radius", "limits")
NAMED_SECTIONS = ("peer", "profile")

DEFAULT_PSEUDO_MAC = "02:00:5e:00:00:01"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
#: Binding lifetimes travel in units of 4 seconds in a 16-bit field (RFC 6275 6.1.7).
MAX_LIFETIME = 0xFFFF * LIFETIME_UNIT_SECONDS
#: Inner IPv4 packet size the tunnel carries: at least the IPv6 minimum MTU, and at most what
#: the fastpath's per-packet buffer holds (outer IPv6 header and Ethernet header included).
MIN_TUNNEL_MTU = 1280
MAX_TUNNEL_MTU = IO_BUF - IP6_LEN - ETH_LEN
#: An Ethernet MS sends IPv4 packets of up to 1500 bytes.
FULL_SIZE = 1500
IFNAMSIZ = 15  # Linux interface names: 15 characters and the NUL
SUN_PATH = 107  # sockaddr_un.sun_path: 108 bytes with the NUL
NAME_RE = re.compile(r"[a-z0-9-]{1,8}")
#: Draft-dialect keys -> Dialect.draft() keyword.
DRAFT_KEYS = {
    "v_bu": "v_bu",
    "v_ba": "v_ba",
    "seed_option_type": "seed_option_type",
    "status_hoa_unavailable": "status_hoa_unavailable",
    "status_invalid_hoa": "status_invalid_hoa",
}
#: A DMPA's first PBU retransmission timeout (DMPAConfig.first_timeout, RFC 5213
#: InitialBindackTimeoutFirstReg): a revocation budget past it makes the DMPA resend its PBU.
FIRST_PBU_TIMEOUT = 1.5
NO_ADDRESSES: tuple[IPv4Address, ...] = ()
_NO_DEFAULT_SECTION = "\x00"  # configparser's [DEFAULT] would leak keys into every section


class ConfigErrors(ValueError):
    """The file cannot be used: ``problems`` lists every error as ``section.key: message``.

    ``warnings`` holds what was found besides, so a report can show both.
    """

    def __init__(self, problems: list[str], warnings: Iterable[str] = ()) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.warnings = list(warnings)


def load(path: Path) -> tuple[Settings, list[str]]:
    """Read and check one ini file: (settings, warnings), or :class:`ConfigErrors`."""
    try:
        text = path.read_text(encoding="utf-8")
        mode: int | None = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigErrors([f"{path}: cannot read: {exc}"]) from None
    return loads(text, file_mode=mode)


def loads(text: str, *, file_mode: int | None = None) -> tuple[Settings, list[str]]:
    """Like :func:`load`, from the text of a file (``file_mode``: its ``st_mode``, if any)."""
    report = _Report()
    parser = configparser.ConfigParser(
        interpolation=None,
        comment_prefixes=(";", "#"),
        inline_comment_prefixes=(";", "#"),
        default_section=_NO_DEFAULT_SECTION,
        empty_lines_in_values=False,
        strict=True,
    )
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
    settings = _Loader(parser, report, file_mode).settings()
    if report.problems or settings is None:
        raise ConfigErrors(report.problems or ["node: no settings"], report.warnings)
    return settings, report.warnings


@dataclass(slots=True)
class _Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class _Invalid(ValueError):
    """A value that does not parse: each message becomes one ``section.key: message`` line."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class _Section:
    """One section being read: getters record a problem and return None instead of raising."""

    def __init__(
        self, report: _Report, name: str, kind: str, values: Mapping[str, str] | None
    ) -> None:
        self.name = name
        self.kind = kind
        self.values = dict(values or {})
        self.report = report
        self.failed = False
        for key in self.values:
            if key not in KEYS[kind]:
                close = difflib.get_close_matches(key, KEYS[kind], n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                self.error(key, f"unknown key{hint}")

    def error(self, key: str | None, message: str) -> None:
        self.failed = True
        self.report.problems.append(f"{self._where(key)}: {message}")

    def warn(self, key: str | None, message: str) -> None:
        self.report.warnings.append(f"{self._where(key)}: {message}")

    def _where(self, key: str | None) -> str:
        return self.name if key is None else f"{self.name}.{key}"

    def has(self, key: str) -> bool:
        return self.raw(key) is not None

    def raw(self, key: str) -> str | None:
        if key not in KEYS[self.kind]:  # our bug: every key read is a documented one
            raise KeyError(f"{self.kind}.{key} is not in KEYS")
        value = self.values.get(key)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def get(self, key: str, convert: Callable[[str], T], default: T | None = None) -> T | None:
        text = self.raw(key)
        if text is None:
            return default
        try:
            return convert(text)
        except _Invalid as exc:
            for message in exc.messages:
                self.error(key, message)
            return None

    def need(self, key: str, convert: Callable[[str], T], why: str = "") -> T | None:
        if self.raw(key) is None:
            self.error(key, f"required{why}")
            return None
        return self.get(key, convert)


# Converters: text -> value, or _Invalid with the message of the problem.


def _ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise _Invalid(f"{text} is not an IPv4 address") from None


def _ipv4_unicast(text: str) -> IPv4Address:
    address = _ipv4(text)
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_loopback
        or address == IPv4Address("255.255.255.255")
    ):
        raise _Invalid(f"{address} is not a unicast address")
    return address


def _ipv6(text: str) -> IPv6Address:
    try:
        address = IPv6Address(text)
    except ValueError:
        raise _Invalid(f"{text} is not an IPv6 address") from None
    if address.is_multicast or address.is_unspecified or address.is_loopback:
        raise _Invalid(f"{address} is not a unicast address")
    return address


def _ipv4_network(text: str) -> IPv4Network:
    try:
        network = IPv4Network(text, strict=False)
    except ValueError:
        raise _Invalid(f"{text} is not an IPv4 network (like 192.0.2.0/24)") from None
    if "/" not in text:
        raise _Invalid(f"{text}: give the prefix length (like {network.network_address}/24)")
    if network.with_prefixlen != text:
        raise _Invalid(f"{text} has host bits set (the network is {network})")
    if network.prefixlen > 30:
        raise _Invalid(f"{network}: a /30 or larger is needed (MS, gateway and more)")
    return network


def _integer(low: int, high: int, *, base: int = 10) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text, base)
        except ValueError:
            raise _Invalid(f"{text} is not a whole number") from None
        if not low <= value <= high:
            raise _Invalid(f"{value} is not in {low}..{high}")
        return value

    return convert


def _number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise _Invalid(f"{text} is not a number") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            bracket = "(" if low_open else "["
            raise _Invalid(f"{value:g} is not in {bracket}{low:g}, {high:g}] seconds")
        return value

    return convert


def _choice(*options: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in options:
            raise _Invalid(f"{text!r} is not one of {', '.join(options)}")
        return text

    return convert


def _boolean(text: str) -> bool:
    value = text.lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0"):
        return False
    raise _Invalid(f"{text!r} is not yes or no")


def _items(text: str) -> list[str]:
    items = [item.strip() for item in text.replace("\n", ",").split(",")]
    if any(not item for item in items):
        raise _Invalid(f"an empty item in {text!r}")
    return items


def _list(convert: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """A comma-separated list; every bad item is one problem."""

    def convert_all(text: str) -> tuple[T, ...]:
        values: list[T] = []
        bad: list[str] = []
        for item in _items(text):
            try:
                values.append(convert(item))
            except _Invalid as exc:
                bad.extend(exc.messages)
        if bad:
            raise _Invalid(*bad)
        if len(set(values)) != len(values):
            raise _Invalid("an item is given twice")
        return tuple(values)

    return convert_all


def _mac(text: str) -> MacAddress:
    try:
        return MacAddress.parse(text)
    except ValueError:
        raise _Invalid(f"{text} is not a MAC address (like 02:00:5e:00:00:01)") from None


def _unicast_mac(text: str) -> MacAddress:
    mac = _mac(text)
    if mac.is_multicast:
        raise _Invalid(f"{mac} is a group (multicast) address")
    if mac.packed == bytes(6):
        raise _Invalid(f"{mac} is the zero address")
    return mac


def _path(text: str) -> Path:
    path = Path(text)
    if not path.is_absolute():
        raise _Invalid(f"{text} is not an absolute path")
    return path


def _ifname(text: str) -> str:
    # Linux dev_valid_name(): at most 15 bytes, not "." or "..", no '/', ':' or whitespace.
    if len(text.encode()) > IFNAMSIZ:
        raise _Invalid(f"{text} is longer than {IFNAMSIZ} characters")
    if text in (".", "..") or any(c in "/:" or c.isspace() for c in text):
        raise _Invalid(f"{text!r} is not an interface name")
    return text


def _lifetime(section: _Section, key: str, default: int) -> int | None:
    """A binding lifetime: 4..262140 s, rounded to the 4-second units it travels in."""
    value = section.get(key, _integer(LIFETIME_UNIT_SECONDS, MAX_LIFETIME), default)
    if value is None:
        return None
    rounded = (value + LIFETIME_UNIT_SECONDS // 2) // LIFETIME_UNIT_SECONDS * LIFETIME_UNIT_SECONDS
    if rounded != value:
        section.warn(key, f"{value} is not a multiple of 4 seconds: {rounded} is used")
    return min(rounded, MAX_LIFETIME)


def _tunnel_mtu(section: _Section) -> int | None:
    mtu = section.get("tunnel_mtu", _integer(MIN_TUNNEL_MTU, MAX_TUNNEL_MTU), 1460)
    if mtu is not None and mtu < FULL_SIZE:
        section.warn(
            "tunnel_mtu",
            f"{mtu} is below {FULL_SIZE}: full-size IPv4 packets from an Ethernet MS will be "
            "fragmented (DF clear) or refused with ICMP 'fragmentation needed' (DF set); "
            f"an IPv6 transport MTU of {FULL_SIZE + IP6_LEN} allows tunnel_mtu = {FULL_SIZE}",
        )
    return mtu


def _lease(section: _Section, lifetime_key: str, lifetime: int | None) -> int | None:
    lease = section.get("lease_time", _integer(1, 0xFFFFFFFE), 3600)
    if lease is not None and lifetime is not None and lease > lifetime:
        section.warn(
            "lease_time",
            f"{lease} s outlasts the binding ({section.name}.{lifetime_key} = {lifetime}): "
            f"leases are cut to {lifetime} s",
        )
    return lease


def _heartbeat(s: _Section, interval: float) -> tuple[float | None, int | None]:
    """RFC 5847: seconds between Heartbeat requests (0 = off; else 1..3600), misses allowed."""
    value = s.get("heartbeat_interval", _number(0, 3600), interval)
    if value is not None and 0 < value < 1:
        s.error("heartbeat_interval", f"{value:g} s: 0 (off) or at least 1 s")
        value = None
    return value, s.get("heartbeat_missing", _integer(1, 100), 3)


def _some(value: T | None) -> T:
    """A value known to have parsed (only called when no problem was recorded)."""
    if value is None:  # pragma: no cover - our bug, not the operator's
        raise AssertionError("a value that failed to parse reached the settings")
    return value


def _subnet_edges(network: IPv4Network) -> tuple[IPv4Address, IPv4Address]:
    return network.network_address, network.broadcast_address


class _Loader:
    def __init__(
        self, parser: configparser.ConfigParser, report: _Report, file_mode: int | None
    ) -> None:
        self.parser = parser
        self.report = report
        self.file_mode = file_mode
        self.single: dict[str, _Section] = {}
        self.peers: list[tuple[_Section, str]] = []
        self.profiles: list[tuple[_Section, str]] = []
        self.peer_sections = 0  # named or not: one is enough to not ask for one
        for name in parser.sections():
            kind, _, argument = name.partition(" ")
            argument = argument.strip()
            values = dict(parser.items(name))
            if kind in SINGLE_SECTIONS and not argument:
                self.single[kind] = _Section(report, name, kind, values)
            elif kind in NAMED_SECTIONS and argument:
                section = _Section(report, name, kind, values)
                (self.peers if kind == "peer" else self.profiles).append((section, argument))
                self.peer_sections += kind == "peer"
            elif kind in NAMED_SECTIONS:
                self.peer_sections += kind == "peer"
                what = "<ipv6>" if kind == "peer" else "<nai>"
                report.problems.append(f"{name}: name it, as [{kind} {what}]")
            else:
                report.problems.append(
                    f"{name}: unknown section (known: [node], [dmpa], [dlmap], "
                    "[peer <ipv6>], [profile <nai>], [radius], [limits])"
                )

    def settings(self) -> Settings | None:
        node_section = self.single.get("node")
        if node_section is None:
            self.report.problems.append("node: section missing (role, name, address)")
            node_section = _Section(self.report, "node", "node", {})
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
        if role is None:
            return None
        # A missing [dmpa] or [dlmap] shows as its required keys missing.
        section = self.single.get(role) or _Section(self.report, role, role, {})
        if role == "dmpa":
            return self._dmpa(section, node, peers)
        return self._dlmap(section, node, peers)

    # [node]

    def _node(self, s: _Section) -> tuple[NodeSettings | None, Role | None]:
        role = cast("Role | None", s.need("role", _choice(*get_args(Role))))
        name = s.need("name", self._name)
        address = s.need("address", _ipv6)
        state_dir = s.get("state_dir", _path)
        if state_dir is None and name is not None and not s.has("state_dir"):
            state_dir = Path("/var/lib/netlmm") / name
        socket = s.get("control_socket", _path)
        if socket is None and name is not None and not s.has("control_socket"):
            socket = Path("/run/netlmm") / f"{name}.sock"
        if socket is not None and len(bytes(socket)) > SUN_PATH:
            s.error("control_socket", f"longer than the {SUN_PATH} bytes a unix socket path holds")
        log_level = s.get("log_level", _choice(*LOG_LEVELS), "info")
        offload = s.get("offload", _boolean, True)
        key_file = s.get("key_file", _path)
        window = s.get(
            "replay_window", _number(0, 300, low_open=True), float(DEFAULT_REPLAY_WINDOW)
        )
        log_format = s.get("log_format", _choice(*LOG_FORMATS), "text")
        metrics = s.get("metrics", _listen_address)
        if s.failed:
            return None, role
        return (
            NodeSettings(
                _some(role),
                _some(name),
                _some(address),
                _some(state_dir),
                _some(socket),
                _some(log_level),
                bool(offload),
                key_file,
                _some(window),
                log_format=_some(log_format),
                metrics=metrics,
            ),
            role,
        )

    @staticmethod
    def _name(text: str) -> str:
        if not NAME_RE.fullmatch(text):
            raise _Invalid(
                f"{text!r}: 1 to 8 characters a-z, 0-9 or '-' (it prefixes kernel object names)"
            )
        return text

    # [peer <ipv6>]

    def _peers(self, own: IPv6Address | None) -> dict[IPv6Address, PeerSettings]:
        peers: dict[IPv6Address, PeerSettings] = {}
        for s, argument in self.peers:
            try:
                address = _ipv6(argument)
            except _Invalid as exc:
                s.error(None, str(exc))
                address = None
            if address is not None and address == own:
                s.error(None, "this is our own address (node.address)")
            elif address is not None and address in peers:
                s.error(None, f"{address} has two [peer] sections")
            dialect = self._dialect(s)
            spi = s.get("spi", _integer(MIN_SPI, MAX_SPI, base=0))
            if address is not None and dialect is not None and not s.failed:
                peers[address] = PeerSettings(address, dialect, spi)
        return peers

    def _keys(
        self,
        s: _Section,
        node: NodeSettings | None,
        peers: Mapping[IPv6Address, PeerSettings],
    ) -> NodeSettings | None:
        """RFC 4285 keys: read ``node.key_file`` for the peers' SPIs (never shown anywhere)."""
        spis = {p.address: p.spi for p in peers.values() if p.spi is not None}
        if spis and not s.has("key_file"):
            for ps, _ in self.peers:
                if ps.has("spi"):
                    ps.error("spi", "needs the keys: node.key_file")
            return node
        if node is None or node.key_file is None:
            return node
        if not spis:
            s.warn("key_file", "not used: no [peer] section has an spi")
            return node
        for ps, _ in self.peers:
            if not ps.has("spi"):
                ps.warn(None, "no spi: signaling with this peer is not authenticated")
        try:
            keys = read_key_file(node.key_file, spis.values())
        except KeyFileError as exc:
            for problem in exc.problems:
                s.error("key_file", problem)
            return None
        return dataclasses.replace(node, keys=keys)

    @staticmethod
    def _dialect(s: _Section) -> Dialect | None:
        name = s.get("dialect", _choice("draft", "rfc5844"), "draft")
        codepoints: dict[str, int] = {}
        for key, keyword in DRAFT_KEYS.items():
            if not s.has(key):
                continue
            if name == "rfc5844":
                s.error(key, "a draft-dialect codepoint: only with dialect = draft")
                continue
            value = s.get(key, _integer(0, 0xFFFF, base=0))
            if value is None:
                continue
            try:  # one at a time, so each problem lands on its own key
                Dialect.draft(**{keyword: value})
            except EncodeError as exc:
                s.error(key, str(exc))
                continue
            codepoints[keyword] = value
        if s.failed or name is None:
            return None
        if name == "rfc5844":
            return Dialect.rfc5844()
        try:
            return Dialect.draft(**codepoints)
        except EncodeError as exc:
            s.error("dialect", str(exc))
            return None

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
        macs: dict[MacAddress, str] = {}
        hoas: dict[IPv4Address, str] = {}
        for s, nai in self.profiles:
            if len(nai.encode()) > 253 or any(not c.isprintable() or c.isspace() for c in nai):
                s.error(None, "an NAI is 1 to 253 printable octets without spaces (RFC 7542)")
            mac = s.get("mac", _unicast_mac)
            if mac is not None and mac in macs:
                s.error("mac", f"{mac} is also in [profile {macs[mac]}]")
            elif mac is not None:
                macs[mac] = nai
            mode = cast(
                "AddressMode | None", s.get("mode", _choice(*get_args(AddressMode)), "dhcp")
            )
            hoa = s.get("hoa", _ipv4_unicast)
            if mode == "static" and not s.has("hoa"):
                s.error("hoa", "required with mode = static")
            if mode in ("dhcp", "dlmap") and s.has("hoa"):
                s.error("hoa", f"only for mode = static (mode is {mode})")
            if hoa is not None and hoa in hoas:
                s.error("hoa", f"{hoa} is also in [profile {hoas[hoa]}]")
            elif hoa is not None:
                hoas[hoa] = nai
            if hoa is not None and hoa in reserved:
                s.error("hoa", f"{hoa} is {reserved[hoa]}")
            if hoa is not None and home is not None and hoa not in home:
                if role == "dlmap":
                    s.error("hoa", f"{hoa} is not in the home network {home} (dlmap.network)")
                elif not s.has("gateway"):
                    s.warn("hoa", f"{hoa} is not in {home} (dmpa.gateway/prefix_length)")
            dlmap = self._anchor(s, role, node, peers)
            gateway = s.get("gateway", _ipv4_unicast)
            allowed = s.get("allowed", _boolean, True)
            # dlmap stays None without an error of its own when the peers did not parse.
            if not s.failed and mode is not None and dlmap is not None and allowed is not None:
                profiles.append(LocalProfile(nai, mode, dlmap, mac, hoa, gateway, allowed))
        return profiles

    @staticmethod
    def _anchor(
        s: _Section,
        role: Role,
        node: NodeSettings | None,
        peers: Mapping[IPv6Address, PeerSettings],
    ) -> IPv6Address | None:
        dlmap = s.get("dlmap", _ipv6)
        if role == "dlmap":
            own = node.address if node is not None else None
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

    # [dmpa]

    def _dmpa(
        self, s: _Section, node: NodeSettings | None, peers: dict[IPv6Address, PeerSettings]
    ) -> DMPASettings | None:
        access = s.need("access", _list(_ifname))
        if access is not None and node is not None:
            prefix = f"nl{node.name}"
            for ifname in access:
                if ifname.startswith(prefix):
                    s.error(
                        "access",
                        f"{ifname} starts with {prefix}, the prefix of the devices this node "
                        "makes and sweeps at start-up",
                    )
        pseudo_mac = s.get("pseudo_mac", _unicast_mac, _mac(DEFAULT_PSEUDO_MAC))
        if pseudo_mac is not None and not pseudo_mac.is_locally_administered:
            s.warn(
                "pseudo_mac",
                f"{pseudo_mac} is not locally administered: it may be a real card's address",
            )
        gateway = s.need("gateway", _ipv4_unicast)
        prefix_length = s.get("prefix_length", _integer(1, 30), 24)
        subnet = None
        if gateway is not None and prefix_length is not None:
            subnet = IPv4Network(f"{gateway}/{prefix_length}", strict=False)
            if gateway in _subnet_edges(subnet):
                s.error("gateway", f"{gateway} is the network or broadcast address of {subnet}")
        lifetime = _lifetime(s, "lifetime", 3600)
        tunnel_mtu = _tunnel_mtu(s)
        aaa = cast(
            "Literal['local', 'radius'] | None", s.get("aaa", _choice("local", "radius"), "local")
        )
        dns = s.get("dns", _list(_ipv4_unicast), NO_ADDRESSES)
        if dns is not None and len(dns) > 63:
            s.error("dns", f"{len(dns)} servers do not fit in one DHCP option (63 at most)")
        lease_time = _lease(s, "lifetime", lifetime)
        heartbeat_interval, heartbeat_missing = _heartbeat(s, 60.0)
        limits = self._limits("dmpa")

        if not self.peer_sections:
            self.report.problems.append("peer: a DMPA needs a [peer <ipv6>] for its DLMAP")
        reserved = {gateway: "the gateway (dmpa.gateway)"} if gateway is not None else {}
        profiles = self._profiles("dmpa", node, peers, subnet, reserved)
        if pseudo_mac is not None:
            for p in profiles:
                if p.mac == pseudo_mac:
                    s.error("pseudo_mac", f"{pseudo_mac} is also the MAC of [profile {p.nai}]")
        radius = self._radius(node)
        if aaa == "radius" and "radius" not in self.single:
            s.error("aaa", "radius needs a [radius] section")
        if aaa == "local" and "radius" in self.single:
            self.single["radius"].warn(None, "not used: dmpa.aaa = local")
            radius = None
        if aaa == "local" and not self.profiles:
            s.warn("aaa", "local, with no [profile] sections: every MS will be refused")
        if aaa == "radius" and self.profiles:
            s.warn("aaa", "radius: the [profile] sections are not used by this DMPA")
        if self.report.problems or node is None:
            return None
        return DMPASettings(
            node,
            _some(access),
            _some(pseudo_mac),
            _some(gateway),
            _some(prefix_length),
            tuple(peers.values()),
            tuple(profiles),
            lifetime=_some(lifetime),
            tunnel_mtu=_some(tunnel_mtu),
            aaa=_some(aaa),
            radius=radius,
            dns=_some(dns),
            lease_time=_some(lease_time),
            heartbeat_interval=_some(heartbeat_interval),
            heartbeat_missing=_some(heartbeat_missing),
            limits=_some(limits),
        )

    # [limits]

    def _limits(self, role: Role) -> LimitSettings | None:
        """The [limits] of ``role``: a key of the other role's limits is an error."""
        s = self.single.get("limits")
        if s is None:
            return LimitSettings()
        own, other = (LIMITS_DMPA, LIMITS_DLMAP) if role == "dmpa" else (LIMITS_DLMAP, LIMITS_DMPA)
        for name in other:
            for part in ("rate", "burst"):
                if s.has(f"{name}_{part}"):
                    s.error(f"{name}_{part}", f"a {role} has no such limit (node.role = {role})")
        defaults = LimitSettings()
        rates: dict[str, Rate] = {}
        for name in own:
            default = getattr(defaults, name)
            rate = s.get(f"{name}_rate", _number(0, MAX_LIMIT_RATE), default.rate)
            burst = s.get(f"{name}_burst", _integer(1, MAX_LIMIT_BURST), default.burst)
            if rate is not None and burst is not None:
                rates[name] = Rate(rate, burst)
        size = s.get("table_size", _integer(1, MAX_TABLE_SIZE), defaults.table_size)
        if s.failed or size is None:
            return None
        return dataclasses.replace(defaults, table_size=size, **rates)

    # [radius]

    def _radius(self, node: NodeSettings | None) -> RadiusSettings | None:
        s = self.single.get("radius")
        if s is None:
            return None
        servers = s.need("servers", self._servers)
        default_id = node.name if node is not None else None
        nas_identifier = s.get("nas_identifier", str, default_id)
        if nas_identifier is not None and len(nas_identifier.encode()) > 253:
            s.error("nas_identifier", "at most 253 octets (RFC 2865 5.32)")
        timeout = s.get("timeout", _number(0, 60, low_open=True), 2.0)
        retries = s.get("retries", _integer(0, 10), 2)
        if servers is not None:
            for _, secret in servers:
                if len(secret) < 16:
                    s.warn("servers", "a secret shorter than 16 octets (RFC 2865 3 prefers 16+)")
                    break
        mode = self.file_mode
        if servers is not None and mode is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
            s.warn(
                "servers",
                f"the file holds RADIUS secrets and others may read it "
                f"(mode {stat.S_IMODE(mode):04o}): chmod 600",
            )
        if s.failed:
            return None
        return RadiusSettings(_some(servers), _some(nas_identifier), _some(timeout), _some(retries))

    @staticmethod
    def _servers(text: str) -> tuple[tuple[str, bytes], ...]:
        """One server a line: ``HOST[:PORT] SECRET`` (``[v6]:port`` when a port is given)."""
        servers: list[tuple[str, bytes]] = []
        for line in text.splitlines():
            host, _, secret = line.strip().partition(" ")
            secret = secret.strip()
            if not secret:
                raise _Invalid(f"{host}: a server line is 'HOST[:PORT] SECRET'")
            servers.append((_server_address(host), secret.encode()))
        if len(servers) > 2:
            raise _Invalid(f"one or two servers (the second is the failover), not {len(servers)}")
        if len({address for address, _ in servers}) != len(servers):
            raise _Invalid("a server is given twice")
        return tuple(servers)

    # [dlmap]

    def _dlmap(
        self, s: _Section, node: NodeSettings | None, peers: dict[IPv6Address, PeerSettings]
    ) -> DLMAPSettings | None:
        network = s.need("network", _ipv4_network)
        gateway = s.need("gateway", _ipv4_unicast)
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
        pool = s.need("pool", _list(_pool_range))
        if pool is not None:
            self._check_pool(s, pool, network, reserved)
        max_lifetime = _lifetime(s, "max_lifetime", 3600)
        lease_time = _lease(s, "max_lifetime", max_lifetime)
        tunnel_mtu = _tunnel_mtu(s)
        dhcp = cast(
            Literal["builtin", "relay"] | None,
            s.get("dhcp", _choice("builtin", "relay"), "builtin"),
        )
        dhcp_servers = s.get("dhcp_servers", _list(_ipv4_unicast), NO_ADDRESSES)
        if dhcp == "relay" and not s.has("dhcp_servers"):
            s.error("dhcp_servers", "required with dhcp = relay")
        if dhcp == "builtin" and s.has("dhcp_servers"):
            s.warn("dhcp_servers", "not used: dhcp = builtin")
        dns = s.get("dns", _list(_ipv4_unicast), NO_ADDRESSES)
        if dns is not None and len(dns) > 63:
            s.error("dns", f"{len(dns)} servers do not fit in one DHCP option (63 at most)")
        revocation_budget = s.get("revocation_budget", _number(0, 10), 0.5)
        first_timeout = FIRST_PBU_TIMEOUT
        if revocation_budget is not None and revocation_budget >= first_timeout:
            s.warn(
                "revocation_budget",
                f"{revocation_budget:g} s: a DMPA resends its PBU after {first_timeout:g} s, "
                "before this PBA leaves",
            )
        bri_interval = s.get("bri_interval", _number(0, 60, low_open=True), 1.0)
        bri_retries = s.get("bri_retries", _integer(0, 10), 3)
        heartbeat_interval, heartbeat_missing = _heartbeat(s, 0.0)
        limits = self._limits("dlmap")
        if not self.peer_sections:
            self.report.problems.append("peer: a DLMAP needs a [peer <ipv6>] for each DMPA")
        profiles = self._profiles("dlmap", node, peers, network, reserved)
        if self.report.problems or node is None:
            return None
        return DLMAPSettings(
            node,
            _some(gateway),
            _some(network),
            _some(pool),
            tuple(peers.values()),
            tuple(profiles),
            max_lifetime=_some(max_lifetime),
            lease_time=_some(lease_time),
            tunnel_mtu=_some(tunnel_mtu),
            dhcp=_some(dhcp),
            dhcp_servers=_some(dhcp_servers),
            dns=_some(dns),
            revocation_budget=_some(revocation_budget),
            bri_interval=_some(bri_interval),
            bri_retries=_some(bri_retries),
            heartbeat_interval=_some(heartbeat_interval),
            heartbeat_missing=_some(heartbeat_missing),
            limits=_some(limits),
        )

    @staticmethod
    def _check_pool(
        s: _Section,
        pool: tuple[tuple[IPv4Address, IPv4Address], ...],
        network: IPv4Network | None,
        reserved: Mapping[IPv4Address, str],
    ) -> None:
        for first, last in pool:
            shown = _show_range(first, last)
            if network is not None and (first not in network or last not in network):
                s.error("pool", f"{shown} is not inside {network} (dlmap.network)")
                continue
            for address, what in reserved.items():
                if first <= address <= last:
                    s.error("pool", f"{shown} contains {address}, {what}")
        ordered = sorted(pool)
        for (a_first, a_last), (b_first, b_last) in pairwise(ordered):
            if b_first <= a_last:
                s.error(
                    "pool",
                    f"{_show_range(a_first, a_last)} and {_show_range(b_first, b_last)} overlap",
                )


def _host_port(text: str, default_port: str | None) -> tuple[IPv4Address | IPv6Address, int]:
    """``ADDRESS:PORT`` or ``[IPv6]:PORT``; without ``:PORT`` only when there is a default."""
    host, port_text = text, default_port or ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest or default_port is None:
            if not rest.startswith(":"):
                raise _Invalid(f"{text} is not [IPv6]:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif default_port is None:
        raise _Invalid(f"{text} is not ADDRESS:PORT or [IPv6]:PORT")
    try:
        address = ip_address(host)
    except ValueError:
        raise _Invalid(f"{host} is not an IP address (host names are not resolved)") from None
    return address, _integer(1, 0xFFFF)(port_text)


def _server_address(text: str) -> str:
    """``HOST[:PORT]`` -> the ``address:port`` form of :class:`RadiusSettings` (port 1812)."""
    address, port = _host_port(text, "1812")
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _listen_address(text: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` or ``[IPv6]:PORT`` (a port is required: no default port to guess)."""
    address, port = _host_port(text, None)
    return str(address), port


def _pool_range(text: str) -> tuple[IPv4Address, IPv4Address]:
    """``first-last``, ``a.b.c.d/n`` (all its addresses) or one address."""
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        first, last = _ipv4(first_text.strip()), _ipv4(last_text.strip())
        if first > last:
            raise _Invalid(f"{text}: the range runs backwards")
        return first, last
    if "/" in text:
        try:
            network = IPv4Network(text, strict=False)
        except ValueError:
            raise _Invalid(f"{text} is not an IPv4 range (a-b) or network (a/n)") from None
        if network.with_prefixlen != text:
            raise _Invalid(f"{text} has host bits set (the network is {network})")
        return network.network_address, network.broadcast_address
    address = _ipv4(text)
    return address, address


def _show_range(first: IPv4Address, last: IPv4Address) -> str:
    return str(first) if first == last else f"{first}-{last}"


def summary(settings: Settings) -> str:
    """One line for ``check-config``: role, name, address, peers and profiles."""
    node = settings.node
    peers = ", ".join(f"{p.address} ({p.dialect.name})" for p in settings.peers) or "none"
    count = len(settings.profiles)
    plural = "" if count == 1 else "s"
    return f"{node.role} {node.name} at {node.address}; peers: {peers}; {count} profile{plural}"
