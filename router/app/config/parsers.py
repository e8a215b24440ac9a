"""Parsers of ini values: text -> value, or :class:`Invalid` with the message of each problem.

A parser checks one value on its own (syntax, range, length); what relates several values is
a check (:mod:`router.app.config.checks`). The schema (:mod:`router.app.config.schema`) names the
parser of every key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import TypeVar

from router.core.defaults import HOME_PREFIX_LENGTH
from router.wire.dialect import Dialect
from router.wire.errors import EncodeError
from router.wire.ethernet import MacAddress

T = TypeVar("T")

IFNAMSIZ = 15  # Linux interface names: 15 characters and the NUL
SUN_PATH = 107  # sockaddr_un.sun_path: 108 bytes with the NUL
NAME_RE = re.compile(r"[a-z0-9-]{1,8}")
#: DHCP option 6 holds at most 63 IPv4 addresses (255 octets).
MAX_DNS = 63
#: RFC 2865 5.32: a NAS-Identifier is at most 253 octets.
MAX_NAS_IDENTIFIER = 253
RADIUS_PORT = "1812"


class Invalid(ValueError):
    """A value that does not parse: each message becomes one ``section.key: message`` line."""

    def __init__(self, *messages: str) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise Invalid(f"{text} is not an IPv4 address") from None


def ipv4_unicast(text: str) -> IPv4Address:
    address = ipv4(text)
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_loopback
        or address == IPv4Address("255.255.255.255")
    ):
        raise Invalid(f"{address} is not a unicast address")
    return address


def ipv6(text: str) -> IPv6Address:
    try:
        address = IPv6Address(text)
    except ValueError:
        raise Invalid(f"{text} is not an IPv6 address") from None
    if address.is_multicast or address.is_unspecified or address.is_loopback:
        raise Invalid(f"{address} is not a unicast address")
    return address


def ipv6_prefix_pool(text: str) -> IPv6Network:
    """A pool of IPv6 home network prefixes: a unicast network of at least one /64."""
    try:
        network = IPv6Network(text, strict=False)
    except ValueError:
        raise Invalid(f"{text} is not an IPv6 network (like 2001:db8:ff00::/48)") from None
    if "/" not in text:
        raise Invalid(f"{text}: give the prefix length (like {network.network_address}/48)")
    if network.network_address != IPv6Network(text.split("/")[0]).network_address:
        raise Invalid(f"{text} has host bits set (the network is {network})")
    if network.prefixlen > HOME_PREFIX_LENGTH:
        raise Invalid(f"{network}: a /{HOME_PREFIX_LENGTH} or larger is needed (one per MS)")
    if network.is_multicast or network.is_link_local or network.is_loopback:
        raise Invalid(f"{network} is not a unicast prefix")
    return network


def ipv4_network(text: str) -> IPv4Network:
    try:
        network = IPv4Network(text, strict=False)
    except ValueError:
        raise Invalid(f"{text} is not an IPv4 network (like 192.0.2.0/24)") from None
    if "/" not in text:
        raise Invalid(f"{text}: give the prefix length (like {network.network_address}/24)")
    if network.with_prefixlen != text:
        raise Invalid(f"{text} has host bits set (the network is {network})")
    if network.prefixlen > 30:
        raise Invalid(f"{network}: a /30 or larger is needed (MS, gateway and more)")
    return network


def integer(low: int, high: int, *, base: int = 10) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text, base)
        except ValueError:
            raise Invalid(f"{text} is not a whole number") from None
        if not low <= value <= high:
            raise Invalid(f"{value} is not in {low}..{high}")
        return value

    return convert


def number(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise Invalid(f"{text} is not a number") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            bracket = "(" if low_open else "["
            raise Invalid(f"{value:g} is not in {bracket}{low:g}, {high:g}] seconds")
        return value

    return convert


def choice(*options: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in options:
            raise Invalid(f"{text!r} is not one of {', '.join(options)}")
        return text

    return convert


def boolean(text: str) -> bool:
    value = text.lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0"):
        return False
    raise Invalid(f"{text!r} is not yes or no")


def text(value: str) -> str:
    return value


def items(text: str) -> list[str]:
    found = [item.strip() for item in text.replace("\n", ",").split(",")]
    if any(not item for item in found):
        raise Invalid(f"an empty item in {text!r}")
    return found


def listed(convert: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """A comma-separated list; every bad item is one problem."""

    def convert_all(text: str) -> tuple[T, ...]:
        values: list[T] = []
        bad: list[str] = []
        for item in items(text):
            try:
                values.append(convert(item))
            except Invalid as exc:
                bad.extend(exc.messages)
        if bad:
            raise Invalid(*bad)
        if len(set(values)) != len(values):
            raise Invalid("an item is given twice")
        return tuple(values)

    return convert_all


def mac(text: str) -> MacAddress:
    try:
        return MacAddress.parse(text)
    except ValueError:
        raise Invalid(f"{text} is not a MAC address (like 02:00:5e:00:00:01)") from None


def unicast_mac(text: str) -> MacAddress:
    address = mac(text)
    if address.is_multicast:
        raise Invalid(f"{address} is a group (multicast) address")
    if address.packed == bytes(6):
        raise Invalid(f"{address} is the zero address")
    return address


def path(text: str) -> Path:
    found = Path(text)
    if not found.is_absolute():
        raise Invalid(f"{text} is not an absolute path")
    return found


def socket_path(text: str) -> Path:
    found = path(text)
    if len(bytes(found)) > SUN_PATH:
        raise Invalid(f"longer than the {SUN_PATH} bytes a unix socket path holds")
    return found


def ifname(text: str) -> str:
    # Linux dev_valid_name(): at most 15 bytes, not "." or "..", no '/', ':' or whitespace.
    if len(text.encode()) > IFNAMSIZ:
        raise Invalid(f"{text} is longer than {IFNAMSIZ} characters")
    if text in (".", "..") or any(c in "/:" or c.isspace() for c in text):
        raise Invalid(f"{text!r} is not an interface name")
    return text


def node_name(text: str) -> str:
    if not NAME_RE.fullmatch(text):
        raise Invalid(
            f"{text!r}: 1 to 8 characters a-z, 0-9 or '-' (it prefixes kernel object names)"
        )
    return text


def dns_servers(text: str) -> tuple[IPv4Address, ...]:
    servers = listed(ipv4_unicast)(text)
    if len(servers) > MAX_DNS:
        raise Invalid(f"{len(servers)} servers do not fit in one DHCP option ({MAX_DNS} at most)")
    return servers


def heartbeat_interval(text: str) -> float:
    """RFC 5847: seconds between Heartbeat requests, 0 (off) or 1..3600."""
    value = number(0, 3600)(text)
    if 0 < value < 1:
        raise Invalid(f"{value:g} s: 0 (off) or at least 1 s")
    return value


def nas_identifier(text: str) -> str:
    if len(text.encode()) > MAX_NAS_IDENTIFIER:
        raise Invalid(f"at most {MAX_NAS_IDENTIFIER} octets (RFC 2865 5.32)")
    return text


def draft_codepoint(keyword: str) -> Callable[[str], int]:
    """A draft-dialect codepoint, checked alone against the codec (``Dialect.draft(v_bu=...)``)."""
    read = integer(0, 0xFFFF, base=0)

    def convert(text: str) -> int:
        value = read(text)
        try:
            Dialect.draft(**{keyword: value})
        except EncodeError as exc:
            raise Invalid(str(exc)) from None
        return value

    return convert


def host_port(text: str, default_port: str | None) -> tuple[IPv4Address | IPv6Address, int]:
    """``ADDRESS:PORT`` or ``[IPv6]:PORT``; without ``:PORT`` only when there is a default."""
    host, port_text = text, default_port or ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest or default_port is None:
            if not rest.startswith(":"):
                raise Invalid(f"{text} is not [IPv6]:PORT")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    elif default_port is None:
        raise Invalid(f"{text} is not ADDRESS:PORT or [IPv6]:PORT")
    try:
        address = ip_address(host)
    except ValueError:
        raise Invalid(f"{host} is not an IP address (host names are not resolved)") from None
    return address, integer(1, 0xFFFF)(port_text)


def server_address(text: str) -> str:
    """``HOST[:PORT]`` -> the ``address:port`` form of ``RadiusSettings`` (port 1812)."""
    address, port = host_port(text, RADIUS_PORT)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def listen_address(text: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` or ``[IPv6]:PORT`` (a port is required: no default port to guess)."""
    address, port = host_port(text, None)
    return str(address), port


def secret(text: str) -> bytes:
    """A shared secret: printable, no spaces (it travels in configs like hostapd's)."""
    if any(not c.isprintable() or c.isspace() for c in text):
        raise Invalid("a secret is printable characters without spaces")
    return text.encode()


def radius_servers(text: str) -> tuple[tuple[str, bytes], ...]:
    """One server a line: ``HOST[:PORT] SECRET`` (``[v6]:port`` when a port is given)."""
    servers: list[tuple[str, bytes]] = []
    for line in text.splitlines():
        host, _, secret = line.strip().partition(" ")
        secret = secret.strip()
        if not secret:
            raise Invalid(f"{host}: a server line is 'HOST[:PORT] SECRET'")
        servers.append((server_address(host), secret.encode()))
    if len(servers) > 2:
        raise Invalid(f"one or two servers (the second is the failover), not {len(servers)}")
    if len({address for address, _ in servers}) != len(servers):
        raise Invalid("a server is given twice")
    return tuple(servers)


def pool_range(text: str) -> tuple[IPv4Address, IPv4Address]:
    """``first-last``, ``a.b.c.d/n`` (all its addresses) or one address."""
    if "-" in text:
        first_text, _, last_text = text.partition("-")
        first, last = ipv4(first_text.strip()), ipv4(last_text.strip())
        if first > last:
            raise Invalid(f"{text}: the range runs backwards")
        return first, last
    if "/" in text:
        try:
            network = IPv4Network(text, strict=False)
        except ValueError:
            raise Invalid(f"{text} is not an IPv4 range (a-b) or network (a/n)") from None
        if network.with_prefixlen != text:
            raise Invalid(f"{text} has host bits set (the network is {network})")
        return network.network_address, network.broadcast_address
    address = ipv4(text)
    return address, address


def show_range(first: IPv4Address, last: IPv4Address) -> str:
    return str(first) if first == last else f"{first}-{last}"
