"""Every key of the ini file, declared once: section, name, parser, default, help, roles.

(:class:`Key` and the kinds of sections are in :mod:`router.app.config.key`; the ``[radius]``
and ``[access IFACE]`` keys in :mod:`router.app.config.schema_aaa`; all are listed in
:data:`SCHEMA` here and importable from this module.)

The loader (:mod:`router.app.config.loader`) reads each section through this table: a key that
is not in it is an error, a key that is in it is parsed by its parser or takes its default. The
documentation of each key in ``etc/dmpa.ini`` and ``etc/dlmap.ini`` is rendered from the same
entries (:mod:`router.app.config.docs`), and a test checks that the committed files are current.

A default is written once: here when it is the configuration's own (log level, pseudo-MAC,
...), in :mod:`router.core.defaults` (or the module owning it: limits, RFC 4285, the dialects)
when the core uses it too; the entry then names that constant. A default that depends on other
values (``state_dir`` from the name, a profile's DLMAP from the peers) is ``None`` here, with
``shown`` saying what the loader derives.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any, TypeVar, get_args

from fastpath.common import ETH_LEN, IO_BUF, IP6_LEN
from router.app.config import parsers as p
from router.app.config.key import NAMED_SECTIONS as NAMED_SECTIONS
from router.app.config.key import ROLES as ROLES
from router.app.config.key import SECTION_ROLES as SECTION_ROLES
from router.app.config.key import SINGLE_SECTIONS as SINGLE_SECTIONS
from router.app.config.key import Key as Key
from router.app.config.key import PerRole as PerRole
from router.app.config.key import per_role as per_role
from router.app.config.key import show_value as show_value
from router.app.config.schema_aaa import ACCESS_AUTH as ACCESS_AUTH
from router.app.config.schema_aaa import ACCESS_HOSTAPD as ACCESS_HOSTAPD
from router.app.config.schema_aaa import ACCESS_PPP_AUTH as ACCESS_PPP_AUTH
from router.app.config.schema_aaa import RADIUS_NAS_IDENTIFIER as RADIUS_NAS_IDENTIFIER
from router.app.config.schema_aaa import RADIUS_PROXY as RADIUS_PROXY
from router.app.config.schema_aaa import RADIUS_PROXY_SECRET as RADIUS_PROXY_SECRET
from router.app.config.schema_aaa import RADIUS_RETRIES as RADIUS_RETRIES
from router.app.config.schema_aaa import RADIUS_SERVERS as RADIUS_SERVERS
from router.app.config.schema_aaa import RADIUS_TIMEOUT as RADIUS_TIMEOUT
from router.app.settings import Role
from router.core import defaults
from router.core.dmpa import AddressMode
from router.core.limits import DEFAULT_TABLE_SIZE, LimitSettings
from router.core.security import DEFAULT_REPLAY_WINDOW, MAX_SPI, MIN_SPI
from router.wire.constants import LIFETIME_UNIT_SECONDS
from router.wire.dialect import Dialect
from router.wire.ethernet import MacAddress

T = TypeVar("T")

DEFAULT_PSEUDO_MAC = "02:00:5e:00:00:01"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
DATAPATHS = ("auto", "kernel", "cython")
STATE_ROOT = Path("/var/lib/netlmm")
RUN_ROOT = Path("/run/netlmm")
MAX_REPLAY_WINDOW = 300
#: Binding lifetimes travel in units of 4 seconds in a 16-bit field (RFC 6275 6.1.7).
MAX_LIFETIME = 0xFFFF * LIFETIME_UNIT_SECONDS
#: Inner IPv4 packet size the tunnel carries: at least the IPv6 minimum MTU, and at most what
#: the fastpath's per-packet buffer holds (outer IPv6 header and Ethernet header included).
MIN_TUNNEL_MTU = 1280
MAX_TUNNEL_MTU = IO_BUF - IP6_LEN - ETH_LEN
#: What the tunnel adds to each packet: the outer IPv6 header.
TUNNEL_OVERHEAD = IP6_LEN
#: An Ethernet MS sends IPv4 packets of up to 1500 bytes.
FULL_SIZE = 1500
MAX_LEASE_TIME = 0xFFFFFFFE
#: The rate limits of each role ([limits] NAME_rate, NAME_burst; router.core.limits).
LIMITS_DMPA = ("new_mac", "dhcp_discover", "arp")
LIMITS_DLMAP = ("pbu_new_nai",)
MAX_LIMIT_RATE = 1e6
MAX_LIMIT_BURST = 1_000_000
MAX_TABLE_SIZE = 1 << 20
#: A DMPA's first PBU retransmission timeout (RFC 5213 InitialBindackTimeoutFirstReg): a
#: revocation budget past it makes the DMPA resend its PBU.
FIRST_PBU_TIMEOUT = defaults.FIRST_BINDACK_TIMEOUT
DRAFT = Dialect.draft()
NO_ADDRESSES: tuple[IPv4Address, ...] = ()
_LIMIT_DEFAULTS = LimitSettings()


def _or(options: tuple[str, ...]) -> str:
    return f"{', '.join(options[:-1])} or {options[-1]}"


def _hex(digits: int) -> Callable[[int], str]:
    return lambda value: f"{value:#0{digits + 2}x}"


# [node]

NODE_ROLE = Key(
    "node", "role", p.choice(*ROLES), None, "dmpa or dlmap: which role this process plays", True
)
NODE_NAME = Key(
    "node",
    "name",
    p.node_name,
    None,
    "1-8 characters a-z, 0-9, '-': prefixes the kernel objects this node makes",
    True,
)
NODE_ADDRESS = Key(
    "node",
    "address",
    p.ipv6,
    None,
    {
        "dmpa": "Our IPv6 address: signaling source (Proxy-CoA) and tunnel endpoint",
        "dlmap": "Our IPv6 address: signaling source and tunnel endpoint",
    },
    True,
)
NODE_STATE_DIR = Key(
    "node",
    "state_dir",
    p.path,
    None,
    {
        "dmpa": "Where the visitor list lives (SQLite)",
        "dlmap": "Where the binding cache and leases live (SQLite)",
    },
    shown=f"{STATE_ROOT}/<name>",
)
NODE_CONTROL_SOCKET = Key(
    "node",
    "control_socket",
    p.socket_path,
    None,
    "Control socket of `netlmm show`",
    shown=f"{RUN_ROOT}/<name>.sock",
)
NODE_LOG_LEVEL = Key(
    "node",
    "log_level",
    p.choice(*LOG_LEVELS),
    "info",
    f"{_or(LOG_LEVELS)}; re-read on SIGHUP",
)
_OFFLOAD = (
    "TAP/TUN offload: the {device} carries a virtio-net header (IFF_VNET_HDR) with checksum and "
    "TCP segmentation offload (TSO4, TSO6), so TCP super-packets cross the kernel whole and the "
    "fastpath splits them into MTU-sized segments for the tunnel. yes or no (no: one packet per "
    "TAP/TUN read and write, about 35 % less TCP throughput in the lab bench)"
)
NODE_OFFLOAD = Key(
    "node",
    "offload",
    p.boolean,
    True,
    {"dmpa": _OFFLOAD.format(device="TAP"), "dlmap": _OFFLOAD.format(device="TUN")},
)
NODE_KEY_FILE = Key(
    "node",
    "key_file",
    p.path,
    None,
    "RFC 4285 signaling authentication (docs/protocol-auth.md): the key file, one line per SPI, "
    "\"SPI HEX-KEY\" (at least 16 bytes of key, '#' comments), mode 600 (the node refuses to "
    "start if group or others may read it), read at start and again on SIGHUP. "
    "`netlmm keygen FILE` makes one (a fresh SPI and key) to copy to every node of the domain. "
    "Required when a [peer] has an spi",
    shown="none (no [peer] can have an spi)",
)
NODE_REPLAY_WINDOW = Key(
    "node",
    "replay_window",
    p.number(0, MAX_REPLAY_WINDOW, low_open=True),
    float(DEFAULT_REPLAY_WINDOW),
    "Replay protection (MESG-ID): how far, in seconds, a peer's timestamp may be from our "
    f"clock, (0, {MAX_REPLAY_WINDOW}]. Keep the clocks in sync (NTP)",
)
NODE_LOG_FORMAT = Key(
    "node",
    "log_format",
    p.choice(*LOG_FORMATS),
    "text",
    'Log lines on stderr: text (one "event key=value ..." line each; with a syslog priority '
    "prefix and no timestamp under systemd) or json (one object a line). "
    "`netlmm run --log-format` overrides it",
)
NODE_METRICS = Key(
    "node",
    "metrics",
    p.listen_address,
    None,
    "Prometheus endpoint (GET /metrics), ADDRESS:PORT or [IPv6]:PORT; docs/service.md lists "
    "what it exports",
    shown="none (off)",
)
NODE_DATAPATH = Key(
    "node",
    "datapath",
    p.choice(*DATAPATHS),
    "auto",
    "Which tier forwards bound MSs' traffic (docs/kernel-tier.md): kernel (TC programs, GSO "
    "kept; the node refuses to start when the kernel cannot run them), cython (the user-space "
    "fastpath only) or auto (kernel when the start-up probe passes, else cython, with one log "
    "line saying why). The Cython fastpath carries everything the kernel tier leaves to it "
    "either way",
)

STORES = ("sqlite", "postgresql")
HA_MODES = ("off", "pair")
NODE_STORE = Key(
    "node",
    "store",
    p.choice(*STORES),
    "sqlite",
    "Where the state lives: sqlite (embedded, one box: state_dir/state.sqlite) or postgresql "
    "(a database that outlives the box and that an active/standby pair shares: store_dsn; "
    "docs/operations.md sets it up; needs pip install 'netlmm[postgresql]')",
    only=("dlmap",),
)
NODE_STORE_DSN = Key(
    "node",
    "store_dsn",
    p.text,
    None,
    "With store = postgresql: the database, as a libpq URI "
    "(postgresql://netlmm@db.example.net/netlmm, or ?host=/run/postgresql for a unix socket); "
    "no password in it: store_password_file",
    shown="none (required with store = postgresql)",
    only=("dlmap",),
)
NODE_STORE_PASSWORD_FILE = Key(
    "node",
    "store_password_file",
    p.path,
    None,
    "The database password, the file's first line, mode 600 (the node refuses to start if "
    "group or others may read it)",
    shown="none (no password: trust, peer or a client certificate)",
    only=("dlmap",),
)
NODE_HA = Key(
    "node",
    "ha",
    p.choice(*HA_MODES),
    "off",
    "off, or pair: one of an active/standby pair sharing store = postgresql. keepalived moves "
    "node.address between them; this process waits, warm from the database, until the address "
    "is here, then claims the DLMAP identity (a higher epoch: the other's writes fail) and "
    "answers, with the same RFC 5847 restart counter",
    only=("dlmap",),
)

# Keys both role sections have.


def _lifetime(section: str, name: str, what: str) -> Key[int]:
    return Key(
        section,
        name,
        p.integer(LIFETIME_UNIT_SECONDS, MAX_LIFETIME),
        defaults.LIFETIME,
        f"{what}, {LIFETIME_UNIT_SECONDS}..{MAX_LIFETIME} s, a multiple of {LIFETIME_UNIT_SECONDS}",
    )


def _lease_time(section: str, what: str) -> Key[int]:
    return Key(section, "lease_time", p.integer(1, MAX_LEASE_TIME), defaults.LEASE_TIME, what)


def _tunnel_mtu(section: str) -> Key[int]:
    return Key(
        section,
        "tunnel_mtu",
        p.integer(MIN_TUNNEL_MTU, MAX_TUNNEL_MTU),
        defaults.TUNNEL_MTU,
        f"Largest IPv4 packet the tunnel carries: {MIN_TUNNEL_MTU}..{MAX_TUNNEL_MTU}; the IPv6 "
        f"transport MTU must be {TUNNEL_OVERHEAD} more. Below {FULL_SIZE}, full-size packets are "
        "fragmented or refused (warning)",
    )


def _heartbeat(section: str, interval: float, what: str) -> tuple[Key[float], Key[int]]:
    peer = "DLMAP" if section == "dmpa" else "DMPA"
    return (
        Key(
            section,
            "heartbeat_interval",
            p.heartbeat_interval,
            interval,
            f"RFC 5847 Heartbeat requests to each {peer} every this many seconds (0: off, else "
            f"at least 1){what}",
        ),
        Key(
            section,
            "heartbeat_missing",
            p.integer(1, 100),
            defaults.MISSING_HEARTBEATS_ALLOWED,
            f"Heartbeats missed in a row before a {peer} is reported unreachable, 1..100",
        ),
    )


# [dmpa]

DMPA_ACCESS = Key(
    "dmpa",
    "access",
    p.listed(p.ifname),
    None,
    "Existing interfaces that are access links, comma separated, each at most "
    f"{p.IFNAMSIZ} characters; the DMPA bridges a TAP of its own with each",
    True,
)
DMPA_PSEUDO_MAC = Key(
    "dmpa",
    "pseudo_mac",
    p.unicast_mac,
    MacAddress.parse(DEFAULT_PSEUDO_MAC),
    "The pseudo-MAC every DMPA of the domain answers ARP with: unicast, locally administered",
)
DMPA_GATEWAY = Key(
    "dmpa",
    "gateway",
    p.ipv4_unicast,
    None,
    "The MSs' default gateway: the DLMAP's IPv4 address (dlmap.gateway)",
    True,
)
DMPA_PREFIX_LENGTH = Key(
    "dmpa",
    "prefix_length",
    p.integer(1, 30),
    defaults.PREFIX_LENGTH,
    "Prefix length of the HoA network, 1..30 (dlmap.network)",
)
DMPA_LIFETIME = _lifetime("dmpa", "lifetime", "Binding lifetime asked of the DLMAP")
DMPA_TUNNEL_MTU = _tunnel_mtu("dmpa")
DMPA_AAA = Key(
    "dmpa",
    "aaa",
    p.choice("local", "radius"),
    "local",
    "How an MS is authenticated: local ([profile] sections) or radius ([radius])",
)
DMPA_DNS = Key(
    "dmpa",
    "dns",
    p.dns_servers,
    NO_ADDRESSES,
    "DNS servers the co-located DHCP server (mode dlmap) hands out, comma separated",
)
DMPA_LEASE_TIME = _lease_time(
    "dmpa", "Lease time the co-located DHCP server hands out, seconds (cut to lifetime)"
)
DMPA_HEARTBEAT_INTERVAL, DMPA_HEARTBEAT_MISSING = _heartbeat(
    "dmpa",
    defaults.HEARTBEAT_INTERVAL,
    ". A changed restart counter in the answer means the DLMAP restarted: every MS registered "
    "there is registered again at once, with its address",
)

# [dlmap]

DLMAP_NETWORK = Key(
    "dlmap",
    "network",
    p.ipv4_network,
    None,
    "The HoA network the MSs live on, with its prefix length",
    True,
)
DLMAP_GATEWAY = Key(
    "dlmap",
    "gateway",
    p.ipv4_unicast,
    None,
    "The MSs' default gateway: this DLMAP's address on the HoA network, inside `network`",
    True,
)
DLMAP_POOL = Key(
    "dlmap",
    "pool",
    p.listed(p.pool_range),
    None,
    "Dynamic home addresses: ranges a-b or networks a/n, comma separated, inside `network`, "
    "without the gateway, not overlapping",
    True,
)
DLMAP_IPV6_POOL = Key(
    "dlmap",
    "ipv6_pool",
    p.ipv6_prefix_pool,
    None,
    "IPv6 home network prefixes (RFC 5213): one /64 per MS from this network, for V=0 "
    "(dual-stack) and plain RFC 5213 registrations; without it those are refused (129, 172)",
    shown="none (IPv4 only)",
)
DLMAP_MAX_LIFETIME = _lifetime("dlmap", "max_lifetime", "Longest binding lifetime granted")
DLMAP_LEASE_TIME = _lease_time(
    "dlmap", "DHCP lease time of the built-in server, seconds (cut to max_lifetime)"
)
DLMAP_TUNNEL_MTU = _tunnel_mtu("dlmap")
DLMAP_DHCP = Key(
    "dlmap",
    "dhcp",
    p.choice("builtin", "relay"),
    "builtin",
    "builtin (answer DHCP from `pool`) or relay (to dhcp_servers, giaddr = gateway)",
)
DLMAP_DHCP_SERVERS = Key(
    "dlmap",
    "dhcp_servers",
    p.listed(p.ipv4_unicast),
    NO_ADDRESSES,
    "DHCP servers to relay to, comma separated (required with dhcp = relay)",
)
DLMAP_DNS = Key(
    "dlmap", "dns", p.dns_servers, NO_ADDRESSES, "DNS servers handed to the MSs, comma separated"
)
DLMAP_REVOCATION_BUDGET = Key(
    "dlmap",
    "revocation_budget",
    p.number(0, 10),
    defaults.REVOCATION_BUDGET,
    "Longest wait, seconds in [0, 10], for the old DMPA's revocation acknowledgement before "
    "the new DMPA's PBA leaves (0: do not wait)",
)
DLMAP_BRI_INTERVAL = Key(
    "dlmap",
    "bri_interval",
    p.number(0, 60, low_open=True),
    defaults.BRI_INTERVAL,
    "Seconds between the fast revocation (BRI) retransmissions, (0, 60] (RFC 5846 MINDelayBRIs)",
)
DLMAP_BRI_RETRIES = Key(
    "dlmap",
    "bri_retries",
    p.integer(0, 10),
    defaults.BRI_RETRIES,
    "Fast revocation retransmissions, 0..10 (RFC 5846 BRIMaxRetriesNumber); then the BRI goes "
    f"on at a slower pace, the interval doubling up to {defaults.BRI_MAX_INTERVAL:g} s, until the "
    "old DMPA's registration would have ended",
)
DLMAP_HEARTBEAT_INTERVAL, DLMAP_HEARTBEAT_MISSING = _heartbeat(
    "dlmap",
    defaults.HEARTBEAT_OFF,
    "; the DLMAP always answers a DMPA's requests with its restart counter",
)

# [peer <ipv6>]

PEER_DIALECT = Key(
    "peer",
    "dialect",
    p.choice("draft", "rfc5844"),
    "draft",
    "draft (the seed's V flags and IPv4 HoA option) or rfc5844 (standard PMIPv6)",
)
#: Draft-dialect keys -> Dialect.draft() keyword; their defaults are the draft dialect's.
DRAFT_KEYS = {
    "v_bu": "v_bu",
    "v_ba": "v_ba",
    "seed_option_type": "seed_option_type",
    "status_hoa_unavailable": "status_hoa_unavailable",
    "status_invalid_hoa": "status_invalid_hoa",
}
PEER_V_BU = Key(
    "peer",
    "v_bu",
    p.draft_codepoint("v_bu"),
    DRAFT.bu_v_flag,
    "draft only: the PBU V flag mask",
    show=_hex(4),
)
PEER_V_BA = Key(
    "peer",
    "v_ba",
    p.draft_codepoint("v_ba"),
    DRAFT.ba_v_flag,
    "draft only: the PBA V flag mask",
    show=_hex(2),
)
PEER_SEED_OPTION_TYPE = Key(
    "peer",
    "seed_option_type",
    p.draft_codepoint("seed_option_type"),
    DRAFT.seed_option_type,
    "draft only: option type of the seed's IPv4 HoA option",
)
PEER_STATUS_HOA_UNAVAILABLE = Key(
    "peer",
    "status_hoa_unavailable",
    p.draft_codepoint("status_hoa_unavailable"),
    DRAFT.status_hoa_unavailable,
    'draft only: PBA status "IPv4 home address unavailable"',
)
PEER_STATUS_INVALID_HOA = Key(
    "peer",
    "status_invalid_hoa",
    p.draft_codepoint("status_invalid_hoa"),
    DRAFT.status_invalid_hoa,
    'draft only: PBA status "invalid IPv4 address"',
)
PEER_DRAFT_KEYS = (
    PEER_V_BU,
    PEER_V_BA,
    PEER_SEED_OPTION_TYPE,
    PEER_STATUS_HOA_UNAVAILABLE,
    PEER_STATUS_INVALID_HOA,
)
PEER_SPI = Key(
    "peer",
    "spi",
    p.integer(MIN_SPI, MAX_SPI, base=0),
    None,
    f"RFC 4285 MN-HA SPI of this peer's key in node.key_file, {MIN_SPI}..{MAX_SPI}: every PBU, "
    "PBA, BRI and BRA with this peer is signed and checked (keep the same SPI and key on both "
    "sides; `netlmm keygen` says which). The seed (section 7) says the signaling MUST be "
    "protected: required, unless insecure = yes",
    shown="none (refused unless insecure = yes)",
)
PEER_INSECURE = Key(
    "peer",
    "insecure",
    p.boolean,
    False,
    "yes: signaling with this peer is not protected (no spi), against the seed's section 7; for "
    "a lab or a migration only, and every start warns about it",
)

# [profile <nai>]

PROFILE_MAC = Key(
    "profile",
    "mac",
    p.unicast_mac,
    None,
    "The MS's MAC address (matched first)",
    shown="none (matched by NAI only)",
)
PROFILE_MODE = Key(
    "profile",
    "mode",
    p.choice(*get_args(AddressMode)),
    "dhcp",
    "dhcp (DHCP through the tunnel), dlmap (the DLMAP allocates) or static",
)
PROFILE_HOA = Key(
    "profile",
    "hoa",
    p.ipv4_unicast,
    None,
    "Home address, required with (and only for) mode = static",
)
PROFILE_DLMAP: Key[IPv6Address] = Key(
    "profile",
    "dlmap",
    p.ipv6,
    None,
    {"dmpa": "Anchoring DLMAP, one of the [peer] sections", "dlmap": "Anchoring DLMAP"},
    shown={"dmpa": "the peer, when there is only one", "dlmap": "this node's address"},
)
PROFILE_GATEWAY: Key[IPv4Address] = Key(
    "profile",
    "gateway",
    p.ipv4_unicast,
    None,
    "Default gateway handed to this MS",
    shown={"dmpa": "dmpa.gateway", "dlmap": "the node's gateway"},
)
PROFILE_ALLOWED = Key("profile", "allowed", p.boolean, True, "no: a known MS that is refused")
PROFILE_IPV6 = Key(
    "profile",
    "ipv6",
    p.boolean,
    False,
    "yes: a dual-stack MS; the DMPA asks its DLMAP for an IPv6 home network prefix (V=0) and "
    "sends it Router Advertisements for SLAAC (IPv4 only if the DLMAP refuses); the DLMAP "
    "ignores it",
)
PROFILE_PASSWORD = Key(
    "profile",
    "password",
    p.secret,
    None,
    "The MS's PPP secret (auth = pppoe links: its PAP password or CHAP-MD5 secret, checked "
    "against this profile's NAI); without it the profile never passes PPP authentication",
    shown="none",
    only=("dmpa",),
)
PROFILE_DNS = Key(
    "profile",
    "dns",
    p.dns_servers,
    None,
    "DNS servers handed to this MS by PPP's IPCP (auth = pppoe links), comma separated",
    shown="dmpa.dns",
    only=("dmpa",),
)

# [limits]: NAME_rate and NAME_burst of each limit, and table_size (router.core.limits).

_LIMITS: dict[str, tuple[Role, str]] = {
    "new_mac": (
        "dmpa",
        "Frames from a MAC with no visitor entry on the link (an attach: visitor entry and AAA "
        "request), per access link",
    ),
    "dhcp_discover": ("dmpa", "DHCP DISCOVERs, per MS MAC"),
    "arp": ("dmpa", "ARP packets, per MS MAC"),
    "pbu_new_nai": (
        "dlmap",
        "PBUs for an NAI with no binding yet, per DMPA, after the RFC 4285 check (refreshes, "
        "handovers and de-registrations are not limited; the DMPA retransmits a dropped PBU, "
        "and a load generator registering thousands of MSs from one address may need more)",
    ),
}
LIMIT_RATE: dict[str, Key[float]] = {
    name: Key(
        "limits",
        f"{name}_rate",
        p.number(0, MAX_LIMIT_RATE),
        getattr(_LIMIT_DEFAULTS, name).rate,
        f"{what}: tokens a second, 0 (no limit)..{MAX_LIMIT_RATE:.0f}",
        only=(role,),
    )
    for name, (role, what) in _LIMITS.items()
}
LIMIT_BURST: dict[str, Key[int]] = {
    name: Key(
        "limits",
        f"{name}_burst",
        p.integer(1, MAX_LIMIT_BURST),
        getattr(_LIMIT_DEFAULTS, name).burst,
        f"The bucket of {name}_rate: at most this many at once, 1..{MAX_LIMIT_BURST}",
        only=(role,),
    )
    for name, (role, _) in _LIMITS.items()
}
LIMITS_TABLE_SIZE = Key(
    "limits",
    "table_size",
    p.integer(1, MAX_TABLE_SIZE),
    DEFAULT_TABLE_SIZE,
    {
        "dmpa": "Sources each limit remembers (least recently seen evicted; a source comes back "
        "with a full bucket), and MACs refused by AAA whose visitor entries are kept (past it "
        f"the oldest is forgotten), 1..{MAX_TABLE_SIZE}: bounds the memory a flood can take",
        "dlmap": f"Sources the limit remembers (least recently seen evicted), 1..{MAX_TABLE_SIZE}",
    },
)

#: The table, section by section, in the order a section's keys are read and documented.
SCHEMA: tuple[Key[Any], ...] = (
    NODE_ROLE,
    NODE_NAME,
    NODE_ADDRESS,
    NODE_STATE_DIR,
    NODE_CONTROL_SOCKET,
    NODE_LOG_LEVEL,
    NODE_OFFLOAD,
    NODE_KEY_FILE,
    NODE_REPLAY_WINDOW,
    NODE_LOG_FORMAT,
    NODE_METRICS,
    NODE_STORE,
    NODE_STORE_DSN,
    NODE_STORE_PASSWORD_FILE,
    NODE_HA,
    NODE_DATAPATH,
    DMPA_ACCESS,
    DMPA_PSEUDO_MAC,
    DMPA_GATEWAY,
    DMPA_PREFIX_LENGTH,
    DMPA_LIFETIME,
    DMPA_TUNNEL_MTU,
    DMPA_AAA,
    DMPA_DNS,
    DMPA_LEASE_TIME,
    DMPA_HEARTBEAT_INTERVAL,
    DMPA_HEARTBEAT_MISSING,
    DLMAP_NETWORK,
    DLMAP_GATEWAY,
    DLMAP_POOL,
    DLMAP_IPV6_POOL,
    DLMAP_MAX_LIFETIME,
    DLMAP_LEASE_TIME,
    DLMAP_TUNNEL_MTU,
    DLMAP_DHCP,
    DLMAP_DHCP_SERVERS,
    DLMAP_DNS,
    DLMAP_REVOCATION_BUDGET,
    DLMAP_BRI_INTERVAL,
    DLMAP_BRI_RETRIES,
    DLMAP_HEARTBEAT_INTERVAL,
    DLMAP_HEARTBEAT_MISSING,
    PEER_DIALECT,
    *PEER_DRAFT_KEYS,
    PEER_SPI,
    PEER_INSECURE,
    PROFILE_MAC,
    PROFILE_MODE,
    PROFILE_HOA,
    PROFILE_DLMAP,
    PROFILE_GATEWAY,
    PROFILE_ALLOWED,
    PROFILE_IPV6,
    PROFILE_PASSWORD,
    PROFILE_DNS,
    RADIUS_SERVERS,
    RADIUS_NAS_IDENTIFIER,
    RADIUS_TIMEOUT,
    RADIUS_RETRIES,
    RADIUS_PROXY,
    RADIUS_PROXY_SECRET,
    ACCESS_AUTH,
    ACCESS_HOSTAPD,
    ACCESS_PPP_AUTH,
    *(key for name in _LIMITS for key in (LIMIT_RATE[name], LIMIT_BURST[name])),
    LIMITS_TABLE_SIZE,
)
#: Section kind -> its keys, in table order.
SECTION_KEYS: dict[str, tuple[Key[Any], ...]] = {
    kind: tuple(key for key in SCHEMA if key.section == kind) for kind in SECTION_ROLES
}
#: Keys each kind of section may hold.
KEYS: dict[str, tuple[str, ...]] = {
    kind: tuple(key.name for key in keys) for kind, keys in SECTION_KEYS.items()
}


def role_keys(role: Role) -> tuple[Key[Any], ...]:
    """The keys a ``role`` reads, in table order (what ``etc/<role>.ini`` documents)."""
    return tuple(key for key in SCHEMA if role in key.roles)


def _check_table() -> None:
    """The table's own consistency, at import: a slip here is our bug, found by any test."""
    names = [(key.section, key.name) for key in SCHEMA]
    if len(set(names)) != len(names):
        raise AssertionError("a key is declared twice")
    for key in SCHEMA:
        if key.section not in SECTION_ROLES or not set(key.roles) <= set(
            SECTION_ROLES[key.section]
        ):
            raise AssertionError(f"{key.section}.{key.name}: section or roles unknown")
        if key.required and key.default is not None:
            raise AssertionError(f"{key.section}.{key.name}: required with a default")


_check_table()
