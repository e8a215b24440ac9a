"""The ini loader and ``netlmm check-config``: every example valid, every error at once."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from pathlib import Path

import pytest

from router.adapters.radius import RadiusConfig
from router.app.config import (
    FIRST_PBU_TIMEOUT,
    KEYS,
    LIMITS_DLMAP,
    LIMITS_DMPA,
    MAX_TUNNEL_MTU,
    ConfigErrors,
    load,
    loads,
    schema,
)
from router.app.settings import (
    AccessSettings,
    DLMAPSettings,
    DMPASettings,
    NodeSettings,
    PeerSettings,
    RadiusSettings,
)
from router.cli import main
from router.core.dlmap import DLMAPConfig
from router.core.dmpa import DMPAConfig
from router.core.heartbeat import HeartbeatConfig
from router.core.limits import LimitSettings
from router.services.dhcp_dmpa import DhcpDmpaConfig
from router.services.dhcp_relay import DhcpRelayConfig
from router.services.dhcp_server import DhcpServerConfig
from router.wire.dialect import Dialect
from tests.keys import KEY_FILE_LINE, SPI, SPI_LINE, example, example_file
from tests.unit.nodes import DLMAP as NODE_DLMAP
from tests.unit.nodes import DLMAP_INI as NODE_DLMAP_INI
from tests.unit.nodes import DMPA_INI as NODE_DMPA_INI

ETC = Path(__file__).resolve().parents[2] / "etc"
EXAMPLES = sorted(ETC.glob("*.ini"))

# Protected signaling, as every configuration must have unless a peer says insecure = yes.
DMPA = f"""
[node]
role = dmpa
name = dmpa1
address = 2001:db8:100::11
{KEY_FILE_LINE}

[dmpa]
access = eth1
gateway = 192.0.2.1
tunnel_mtu = 1500

[peer 2001:db8:100::1]
{SPI_LINE}

[profile alice@example.org]
mac = 02:00:00:00:0a:01
"""

DLMAP = f"""
[node]
role = dlmap
name = dlmap
address = 2001:db8:100::1
{KEY_FILE_LINE}

[dlmap]
gateway = 192.0.2.1
network = 192.0.2.0/24
pool = 192.0.2.100-192.0.2.199
tunnel_mtu = 1500

[peer 2001:db8:100::11]
{SPI_LINE}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        loads(text)
    return caught.value.problems


def one_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def warnings(text: str) -> list[str]:
    return loads(text)[1]


# The examples


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid_and_quiet(path: Path) -> None:
    settings, warned = loads(example(path.name))  # with the tests' key file, same SPI
    assert warned == []
    assert settings.node.name in path.stem or settings.node.role in path.stem
    assert settings.node.key_file is not None and all(p.spi == SPI for p in settings.peers)


def test_the_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"dmpa.ini", "dlmap.ini"}


def test_the_examples_describe_one_domain() -> None:
    dmpa, _ = loads(example("dmpa.ini"))
    dlmap, _ = loads(example("dlmap.ini"))
    assert isinstance(dmpa, DMPASettings) and isinstance(dlmap, DLMAPSettings)
    assert [p.address for p in dmpa.peers] == [dlmap.node.address]
    assert dmpa.node.address in {p.address for p in dlmap.peers}
    assert {p.address for p in dlmap.peers} == {
        IPv6Address("2001:db8:100::11"),
        IPv6Address("2001:db8:100::12"),
    }
    assert dmpa.gateway == dlmap.gateway == IPv4Address("192.0.2.1")
    assert IPv4Network(f"{dmpa.gateway}/{dmpa.prefix_length}", strict=False) == dlmap.network
    assert dlmap.pool == ((IPv4Address("192.0.2.100"), IPv4Address("192.0.2.199")),)
    assert dmpa.profiles == dlmap.profiles
    assert dmpa.tunnel_mtu == dlmap.tunnel_mtu


def test_the_commented_radius_section_of_the_example_is_valid() -> None:
    text = example("dmpa.ini").replace("aaa = local", "aaa = radius")
    text = re.sub(r"^;(\[radius\]|servers|nas_identifier|timeout|retries)", r"\1", text, flags=re.M)
    text = text.replace(";          [2001", "          [2001")
    settings, warned = loads(text)
    assert isinstance(settings, DMPASettings) and settings.radius is not None
    assert settings.radius.servers == (
        ("203.0.113.5:1812", b"a-secret-of-16-or-more"),
        ("[2001:db8:100::5]:1812", b"another-long-secret"),
    )
    assert warned == ["dmpa.aaa: radius: the [profile] sections are not used by this DMPA"]


# What a good file gives


def test_dmpa_defaults() -> None:
    settings, warned = loads(DMPA)
    assert warned == []
    assert isinstance(settings, DMPASettings)
    node = settings.node
    assert (node.role, node.name, node.log_level) == ("dmpa", "dmpa1", "info")
    assert node.state_dir == Path("/var/lib/netlmm/dmpa1")
    assert node.control_socket == Path("/run/netlmm/dmpa1.sock")
    assert settings.access == ("eth1",)
    assert str(settings.pseudo_mac) == "02:00:5e:00:00:01"
    assert (settings.prefix_length, settings.lifetime, settings.lease_time) == (24, 3600, 3600)
    assert settings.aaa == "local" and settings.radius is None
    assert settings.peers[0].dialect == Dialect.draft()
    (alice,) = settings.profiles
    assert alice.nai == "alice@example.org" and alice.mode == "dhcp" and alice.allowed
    assert alice.dlmap == IPv6Address("2001:db8:100::1")  # the only peer


def test_dlmap_defaults_and_pool_forms() -> None:
    text = DLMAP.replace(
        "pool = 192.0.2.100-192.0.2.199",
        "pool = 192.0.2.100-192.0.2.149, 192.0.2.160/28,  192.0.2.200",
    )
    settings, _ = loads(text)
    assert isinstance(settings, DLMAPSettings)
    assert settings.pool == (
        (IPv4Address("192.0.2.100"), IPv4Address("192.0.2.149")),
        (IPv4Address("192.0.2.160"), IPv4Address("192.0.2.175")),
        (IPv4Address("192.0.2.200"), IPv4Address("192.0.2.200")),
    )
    assert settings.dhcp == "builtin" and settings.dhcp_servers == ()
    assert (settings.revocation_budget, settings.bri_interval, settings.bri_retries) == (
        0.5,
        1.0,
        3,
    )


def test_draft_codepoints_and_rfc5844() -> None:
    text = DLMAP + (
        "v_bu = 0x0008\nseed_option_type = 50\n\n[peer 2001:db8:100::12]\ndialect = rfc5844\n"
        f"{SPI_LINE}\n"
    )
    settings, _ = loads(text)
    by_address = {p.address: p.dialect for p in settings.peers}
    assert by_address[IPv6Address("2001:db8:100::11")] == Dialect.draft(
        v_bu=0x0008, seed_option_type=50
    )
    assert by_address[IPv6Address("2001:db8:100::12")] == Dialect.rfc5844()


def test_profiles_on_a_dlmap_are_anchored_here() -> None:
    text = DLMAP + "[profile carol@example.org]\nmode = static\nhoa = 192.0.2.10\n"
    settings, _ = loads(text)
    (carol,) = settings.profiles
    assert (carol.mode, carol.hoa) == ("static", IPv4Address("192.0.2.10"))
    assert carol.dlmap == settings.node.address


def test_radius_servers_and_defaults() -> None:
    text = DMPA.replace("[dmpa]", "[dmpa]\naaa = radius").replace(
        "[profile alice@example.org]\nmac = 02:00:00:00:0a:01\n", ""
    )
    text += "[radius]\nservers = 192.0.2.5 0123456789abcdef\n  2001:db8::5 0123456789abcdefg\n"
    settings, warned = loads(text)
    assert warned == []
    assert isinstance(settings, DMPASettings) and settings.radius is not None
    assert settings.radius.servers == (
        ("192.0.2.5:1812", b"0123456789abcdef"),
        ("[2001:db8::5]:1812", b"0123456789abcdefg"),
    )
    assert settings.radius.nas_identifier == "dmpa1"
    assert (settings.radius.timeout, settings.radius.retries) == (2.0, 2)


@pytest.mark.parametrize("value", ["auto", "kernel", "cython"])
def test_the_datapath_tier_is_read(value: str) -> None:
    settings, _ = loads(DMPA.replace("[node]", f"[node]\ndatapath = {value}"))
    assert settings.node.datapath == value
    assert loads(DMPA)[0].node.datapath == "auto"  # the default


def test_comments_after_values() -> None:
    settings, _ = loads(DMPA.replace("access = eth1", "access = eth1, eth2 ; two links # yes"))
    assert isinstance(settings, DMPASettings) and settings.access == ("eth1", "eth2")


# Every kind of error


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("role = dmpa", "role = mag", "node.role: 'mag' is not one of dmpa, dlmap"),
        ("name = dmpa1", "name = dmpa-one-x", "node.name: 'dmpa-one-x': 1 to 8 characters"),
        ("name = dmpa1", "name = DMPA1", "node.name: 'DMPA1': 1 to 8"),
        ("address = 2001:db8:100::11", "address = 192.0.2.9", "node.address: 192.0.2.9 is not"),
        ("address = 2001:db8:100::11", "address = ff02::1", "node.address: ff02::1 is not a uni"),
        ("[node]", "[node]\nstate_dir = var/x", "node.state_dir: var/x is not an absolute path"),
        ("[node]", "[node]\ncontrol_socket = /" + "x" * 107, "node.control_socket: longer"),
        ("[node]", "[node]\nlog_level = loud", "node.log_level: 'loud' is not one of"),
        ("[node]", "[node]\ndatapath = ebpf", "node.datapath: 'ebpf' is not one of auto, ker"),
        ("access = eth1", "access = a-very-long-ifname0", "dmpa.access: a-very-long-ifname0 is"),
        ("access = eth1", "access = eth1,,eth2", "dmpa.access: an empty item"),
        ("access = eth1", "access = eth1, eth1", "dmpa.access: an item is given twice"),
        ("access = eth1", "access = nldmpa1-a0", "dmpa.access: nldmpa1-a0 starts with nldmpa1"),
        ("access = eth1", "access = eth1\npseudo_mac = 01:00:5e:00:00:01", "dmpa.pseudo_mac: 01"),
        ("access = eth1", "access = eth1\npseudo_mac = 02:00:5e", "dmpa.pseudo_mac: 02:00:5e is"),
        ("gateway = 192.0.2.1", "gateway = 192.0.2.0", "dmpa.gateway: 192.0.2.0 is the network"),
        ("gateway = 192.0.2.1", "gateway = 224.0.0.1", "dmpa.gateway: 224.0.0.1 is not a uni"),
        ("access = eth1", "access = eth1\nprefix_length = 31", "dmpa.prefix_length: 31 is not in"),
        ("access = eth1", "access = eth1\nlifetime = 0", "dmpa.lifetime: 0 is not in 4..262140"),
        ("access = eth1", "access = eth1\nlifetime = 1h", "dmpa.lifetime: 1h is not a whole"),
        ("tunnel_mtu = 1500", "tunnel_mtu = 1200", "dmpa.tunnel_mtu: 1200 is not in 1280.."),
        (
            "tunnel_mtu = 1500",
            "tunnel_mtu = 9000",
            f"dmpa.tunnel_mtu: 9000 is not in 1280..{MAX_TUNNEL_MTU}",
        ),
        ("access = eth1", "access = eth1\naaa = ldap", "dmpa.aaa: 'ldap' is not one of"),
        ("access = eth1", "access = eth1\naaa = radius", "dmpa.aaa: radius needs a [radius]"),
        ("access = eth1", "access = eth1\ndns = 192.0.2.300", "dmpa.dns: 192.0.2.300 is not an"),
        ("access = eth1", "access = eth1\nlifetme = 5", "dmpa.lifetme: unknown key (did you mean"),
        ("[peer 2001:db8:100::1]", "[peer 2001:db8::x]", "peer 2001:db8::x: 2001:db8::x is not"),
        ("[peer 2001:db8:100::1]", "[peer 2001:db8:100::11]", "peer 2001:db8:100::11: this is"),
        ("[peer 2001:db8:100::1]", "[peer]", "peer: name it, as [peer <ipv6>]"),
        (
            "[peer 2001:db8:100::1]",
            "[peer 2001:db8:100::1]\ndialect = v6",
            "peer 2001:db8:100::1.dia",
        ),
        (
            "[peer 2001:db8:100::1]",
            "[peer 2001:db8:100::1]\nv_bu = 0x8000",
            "peer 2001:db8:100::1.v_bu: bu_v",
        ),
        (
            "[peer 2001:db8:100::1]",
            "[peer 2001:db8:100::1]\nstatus_invalid_hoa = 5",
            ".status_invalid_hoa: status_inva",
        ),
        (
            "[peer 2001:db8:100::1]",
            "[peer 2001:db8:100::1]\nseed_option_type = 8",
            ".seed_option_type: seed_option_type 8",
        ),
        (
            "[peer 2001:db8:100::1]",
            "[peer 2001:db8:100::1]\ndialect = rfc5844\nv_ba = 0x20",
            ".v_ba: a draft-dialect codepoint",
        ),
        (
            "mac = 02:00:00:00:0a:01",
            "mac = 00:00:00:00:00:00",
            "profile alice@example.org.mac: 00:00",
        ),
        ("mac = 02:00:00:00:0a:01", "mode = static", "profile alice@example.org.hoa: required"),
        (
            "mac = 02:00:00:00:0a:01",
            "hoa = 192.0.2.9",
            "profile alice@example.org.hoa: only for mode",
        ),
        ("mac = 02:00:00:00:0a:01", "mode = roam", "profile alice@example.org.mode: 'roam' is not"),
        (
            "mac = 02:00:00:00:0a:01",
            "dlmap = 2001:db8::9",
            "profile alice@example.org.dlmap: 2001:db8::9 is not one",
        ),
        (
            "mac = 02:00:00:00:0a:01",
            "allowed = maybe",
            "profile alice@example.org.allowed: 'maybe' is not",
        ),
        (
            "mac = 02:00:00:00:0a:01",
            "mode = static\nhoa = 192.0.2.1",
            "profile alice@example.org.hoa: 192.0.2.1 is the gateway",
        ),
        ("[profile alice@example.org]", "[profile alice smith]", "profile alice smith: an NAI is"),
        (
            "mac = 02:00:00:00:0a:01",
            "mac = 02:00:5e:00:00:01",
            "dmpa.pseudo_mac: 02:00:5e:00:00:01 is also the MAC",
        ),
        ("[node]", "[nodes]\n[node]", "nodes: unknown section"),
        ("[node]", "[DEFAULT]\nlog_level = debug\n[node]", "DEFAULT: unknown section"),
        ("[node]", "[dlmap]\n[node]", "dlmap: this node is a dmpa (node.role)"),
    ],
)
def test_dmpa_errors(old: str, new: str, expected: str) -> None:
    assert old in DMPA
    assert expected in one_problem(DMPA.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "network = 192.0.2.0/24",
            "network = 192.0.2.1/24",
            "dlmap.network: 192.0.2.1/24 has host bits",
        ),
        (
            "network = 192.0.2.0/24",
            "network = 192.0.2.0",
            "dlmap.network: 192.0.2.0: give the prefix",
        ),
        ("network = 192.0.2.0/24", "network = 192.0.2.0/31", "dlmap.network: 192.0.2.0/31: a /30"),
        (
            "gateway = 192.0.2.1",
            "gateway = 203.0.113.1",
            "dlmap.gateway: 203.0.113.1 is not in 192.0.2.0/24",
        ),
        (
            "gateway = 192.0.2.1",
            "gateway = 192.0.2.255",
            "dlmap.gateway: 192.0.2.255 is the broadcast",
        ),
        (
            "pool = 192.0.2.100-192.0.2.199",
            "pool = 192.0.2.300-192.0.2.199",
            "dlmap.pool: 192.0.2.300 is not an IPv4 address",
        ),
        (
            "pool = 192.0.2.100-192.0.2.199",
            "pool = 192.0.2.199-192.0.2.100",
            "dlmap.pool: 192.0.2.199-192.0.2.100: the range runs",
        ),
        (
            "pool = 192.0.2.100-192.0.2.199",
            "pool = 192.0.2.129/25",
            "dlmap.pool: 192.0.2.129/25 has host bits",
        ),
        (
            "pool = 192.0.2.100-192.0.2.199",
            "pool = 192.0.2.200-192.0.3.10",
            "dlmap.pool: 192.0.2.200-192.0.3.10 is not inside",
        ),
        (
            "pool = 192.0.2.100-192.0.2.199",
            "pool = 192.0.2.128/25",
            "dlmap.pool: 192.0.2.128-192.0.2.255 contains 192.0.2.255, the broadcast",
        ),
        (
            "pool = 192.0.2.100-192.0.2.199",
            "pool = 192.0.2.1-192.0.2.20",
            "dlmap.pool: 192.0.2.1-192.0.2.20 contains 192.0.2.1, the gateway",
        ),
        (
            "pool = 192.0.2.100-192.0.2.199",
            "pool = 192.0.2.100-192.0.2.150, 192.0.2.128/28",
            "dlmap.pool: 192.0.2.100-192.0.2.150 and 192.0.2.128-192.0.2.143 overlap",
        ),
        ("pool = 192.0.2.100-192.0.2.199", "pool =", "dlmap.pool: required"),
        (
            "[dlmap]",
            "[dlmap]\nmax_lifetime = 262141",
            "dlmap.max_lifetime: 262141 is not in 4..262140",
        ),
        ("[dlmap]", "[dlmap]\ndhcp = relay", "dlmap.dhcp_servers: required with dhcp = relay"),
        ("[dlmap]", "[dlmap]\ndhcp = kea", "dlmap.dhcp: 'kea' is not one of builtin, relay"),
        (
            "[dlmap]",
            "[dlmap]\nrevocation_budget = -1",
            "dlmap.revocation_budget: -1 is not in [0, 10] seconds",
        ),
        ("[dlmap]", "[dlmap]\nbri_interval = 0", "dlmap.bri_interval: 0 is not in (0, 60] seconds"),
        ("[dlmap]", "[dlmap]\nbri_retries = 11", "dlmap.bri_retries: 11 is not in 0..10"),
        ("[dlmap]", "[dlmap]\nlease_time = 0", "dlmap.lease_time: 0 is not in 1.."),
        (
            "[node]",
            "[radius]\nservers = 192.0.2.5 0123456789abcdef\n[node]",
            "radius: only a DMPA asks RADIUS",
        ),
        (
            "[peer 2001:db8:100::11]",
            f"[peer 2001:db8:100::11]\n{SPI_LINE}\n[peer 2001:db8:100:0::11]",
            "peer 2001:db8:100:0::11: 2001:db8:100::11 has two",
        ),
        (f"[peer 2001:db8:100::11]\n{SPI_LINE}", "", "peer: a DLMAP needs a [peer <ipv6>]"),
    ],
)
def test_dlmap_errors(old: str, new: str, expected: str) -> None:
    assert old in DLMAP
    assert expected in one_problem(DLMAP.replace(old, new, 1))


def test_profile_errors_on_a_dlmap() -> None:
    text = DLMAP + (
        "[profile a@x]\nmode = static\nhoa = 203.0.113.7\n"
        "[profile b@x]\nmode = static\nhoa = 192.0.2.10\nmac = 02:00:00:00:00:01\n"
        "[profile c@x]\nmode = static\nhoa = 192.0.2.10\nmac = 02:00:00:00:00:01\n"
    )
    assert problems(text) == [
        "profile a@x.hoa: 203.0.113.7 is not in the home network 192.0.2.0/24 (dlmap.network)",
        "profile c@x.mac: 02:00:00:00:00:01 is also in [profile b@x]",
        "profile c@x.hoa: 192.0.2.10 is also in [profile b@x]",
    ]


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("radius.example.org 0123456789abcdef", "radius.servers: radius.example.org is not an IP"),
        ("192.0.2.5", "radius.servers: 192.0.2.5: a server line is 'HOST[:PORT] SECRET'"),
        ("192.0.2.5:0 0123456789abcdef", "radius.servers: 0 is not in 1..65535"),
        ("[2001:db8::5]x 0123456789abcdef", "radius.servers: [2001:db8::5]x is not [IPv6]:PORT"),
        (
            "192.0.2.5 0123456789abcdef\n 192.0.2.5:1812 0123456789abcdef",
            "radius.servers: a server is given twice",
        ),
        (
            "192.0.2.5 0123456789abcdef\n 192.0.2.6 0123456789abcdef\n 192.0.2.7 0123456789abcdef",
            "radius.servers: one or two servers",
        ),
        ("", "radius.servers: required"),
    ],
)
def test_radius_errors(servers: str, expected: str) -> None:
    text = DMPA.replace("[dmpa]", "[dmpa]\naaa = radius") + f"[radius]\nservers = {servers}\n"
    assert one_problem(text).startswith(expected)


def test_radius_timeouts_and_identifier() -> None:
    text = DMPA.replace("[dmpa]", "[dmpa]\naaa = radius") + (
        "[radius]\nservers = 192.0.2.5 0123456789abcdef\n"
        f"nas_identifier = {'n' * 254}\ntimeout = 0\nretries = -1\n"
    )
    assert [p.split(":")[0] for p in problems(text)] == [
        "radius.nas_identifier",
        "radius.timeout",
        "radius.retries",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DMPA.replace("[dmpa]", "[dmpa]\naccess = eth2"), "dmpa.access: key given twice (line 10)"),
        (DMPA + "[node]\n", "node: section given twice"),
        ("role = dmpa\n" + DMPA, "line 1: a key before any [section]"),
        (DMPA.replace("[dmpa]", "[dmpa]\njust words"), "line 9: not 'key = value': just words"),
        ("", "node: section missing"),
        (DMPA.replace("role = dmpa\n", ""), "node.role: required"),
        (DMPA.replace("[dmpa]", "[dlmap]"), "dlmap: this node is a dmpa (node.role)"),
    ],
)
def test_structure_errors(text: str, expected: str) -> None:
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_every_error_at_once() -> None:
    text = (
        DMPA.replace("name = dmpa1", "name = dmpa_1")
        .replace("gateway = 192.0.2.1", "gateway = 192.0.2.300")
        .replace("[dmpa]", "[dmpa]\nlifetime = 0\nlease = 5")
        .replace("[peer 2001:db8:100::1]", "[peer 2001:db8:100::1]\ndialect = rfc")
    )
    found = problems(text)
    assert len(found) == 5, found
    assert sorted(p.split(":")[0] for p in found) == [
        "dmpa.gateway",
        "dmpa.lease",
        "dmpa.lifetime",
        "node.name",
        "peer 2001",
    ]


def test_a_missing_file() -> None:
    with pytest.raises(ConfigErrors) as caught:
        load(Path("/nonexistent/netlmm.ini"))
    assert caught.value.problems[0].startswith("/nonexistent/netlmm.ini: cannot read")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            DMPA.replace("[dmpa]", "[dmpa]\nlifetime = 3602\nlease_time = 600"),
            "dmpa.lifetime: 3602 is not a multiple of 4 seconds (the unit a lifetime travels in, "
            "RFC 6275 6.1.7): 3600 or 3604?",
        ),
        (
            DLMAP.replace("[dlmap]", "[dlmap]\nmax_lifetime = 3601"),
            "dlmap.max_lifetime: 3601 is not a multiple of 4 seconds (the unit a lifetime "
            "travels in, RFC 6275 6.1.7): 3600 or 3604?",
        ),
    ],
    ids=["dmpa.lifetime", "dlmap.max_lifetime"],
)
def test_a_lifetime_not_a_multiple_of_four_is_refused(text: str, expected: str) -> None:
    """The ini says "a multiple of 4": a value that is not is an error, not a rounding."""
    assert one_problem(text) == expected


# Warnings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DMPA.replace("tunnel_mtu = 1500", ""), "dmpa.tunnel_mtu: 1460 is below 1500"),
        (DMPA.replace("[dmpa]", "[dmpa]\nlease_time = 7200"), "dmpa.lease_time: 7200 s outlasts"),
        (
            DMPA.replace("[dmpa]", "[dmpa]\npseudo_mac = 00:00:5e:00:00:01"),
            "dmpa.pseudo_mac: 00:00:5e:00:00:01 is not locally administered",
        ),
        (DMPA.split("[profile")[0], "dmpa.aaa: local, with no [profile] sections"),
        (
            DMPA + "[radius]\nservers = 192.0.2.5 0123456789abcdef\n",
            "radius: not used: dmpa.aaa = local",
        ),
        (DLMAP.replace("[dlmap]", "[dlmap]\nmax_lifetime = 600"), "dlmap.lease_time: 3600 s"),
        (DLMAP.replace("[dlmap]", "[dlmap]\ndhcp_servers = 192.0.2.53"), "dlmap.dhcp_servers: not"),
        (
            DLMAP.replace("[dlmap]", "[dlmap]\nrevocation_budget = 2"),
            "dlmap.revocation_budget: 2 s",
        ),
        (
            DLMAP + "[profile a@x]\ndlmap = 2001:db8:100::2\n",
            "profile a@x.dlmap: 2001:db8:100::2 is not this DLMAP",
        ),
        (
            DMPA + "[profile a@x]\nmode = static\nhoa = 203.0.113.9\n",
            "profile a@x.hoa: 203.0.113.9 is not in 192.0.2.0/24",
        ),
    ],
)
def test_warnings(text: str, expected: str) -> None:
    warned = warnings(text)
    assert len(warned) == 1 and warned[0].startswith(expected), warned


def test_short_secret_and_open_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "dmpa.ini"
    path.write_text(
        DMPA.replace("[dmpa]", "[dmpa]\naaa = radius").split("[profile")[0]
        + "[radius]\nservers = 192.0.2.5 short\n"
    )
    path.chmod(0o644)
    assert load(path)[1] == [
        "radius.servers: a secret shorter than 16 octets (RFC 2865 3 prefers 16+)",
        "radius.servers: the file holds RADIUS secrets and others may read it (mode 0644): "
        "chmod 600",
    ]
    path.chmod(0o600)
    assert len(load(path)[1]) == 1


def test_the_revocation_warning_knows_the_dmpa_timeout() -> None:
    (first,) = [f.default for f in fields(DMPAConfig) if f.name == "first_timeout"]
    assert first == FIRST_PBU_TIMEOUT


# The schema


def _default(cls: type, name: str) -> object:
    (found,) = [f.default for f in fields(cls) if f.name == name]
    return found


@pytest.mark.parametrize(
    ("key", "cls", "name"),
    [
        (schema.DMPA_LIFETIME, DMPAConfig, "lifetime"),
        (schema.DLMAP_MAX_LIFETIME, DLMAPConfig, "max_lifetime"),
        (schema.DLMAP_MAX_LIFETIME, DhcpServerConfig, "max_lifetime"),
        (schema.DLMAP_MAX_LIFETIME, DhcpRelayConfig, "max_lifetime"),
        (schema.DLMAP_REVOCATION_BUDGET, DLMAPConfig, "revocation_budget"),
        (schema.DLMAP_BRI_INTERVAL, DLMAPConfig, "bri_interval"),
        (schema.DLMAP_BRI_RETRIES, DLMAPConfig, "bri_retries"),
        (schema.DMPA_PREFIX_LENGTH, DhcpDmpaConfig, "prefix_length"),
        (schema.DMPA_LEASE_TIME, DhcpDmpaConfig, "lease_time"),
        (schema.DMPA_TUNNEL_MTU, DhcpDmpaConfig, "max_packet"),
        (schema.DLMAP_LEASE_TIME, DhcpServerConfig, "lease_time"),
        (schema.DLMAP_HEARTBEAT_INTERVAL, HeartbeatConfig, "interval"),
        (schema.DMPA_HEARTBEAT_MISSING, HeartbeatConfig, "missing_allowed"),
        (schema.RADIUS_TIMEOUT, RadiusConfig, "timeout"),
        (schema.RADIUS_RETRIES, RadiusConfig, "retries"),
    ],
    ids=lambda v: v.name if isinstance(v, schema.Key) else None,
)
def test_a_default_the_core_uses_is_the_cores(
    key: schema.Key[object], cls: type, name: str
) -> None:
    assert key.default == _default(cls, name)


@pytest.mark.parametrize(
    ("kind", "cls", "not_keys"),
    [
        ("node", NodeSettings, {"keys"}),
        ("dmpa", DMPASettings, {"node", "peers", "profiles", "radius", "limits", "links"}),
        ("dlmap", DLMAPSettings, {"node", "peers", "profiles", "limits", "extra"}),
        ("radius", RadiusSettings, set()),
        ("access", AccessSettings, {"interface"}),
    ],
)
def test_each_key_of_a_section_is_a_settings_field(
    kind: str, cls: type, not_keys: set[str]
) -> None:
    assert set(KEYS[kind]) == {f.name for f in fields(cls)} - not_keys


def test_the_settings_have_no_defaults_of_their_own() -> None:
    for cls in (
        NodeSettings,
        DMPASettings,
        DLMAPSettings,
        RadiusSettings,
        PeerSettings,
        AccessSettings,
    ):
        defaulted = {f.name for f in fields(cls) if f.default is not MISSING}
        defaulted |= {f.name for f in fields(cls) if f.default_factory is not MISSING}
        assert defaulted <= {"keys", "extra"}, cls


def test_the_limits_defaults_are_the_limits_modules() -> None:
    settings, _ = loads(DMPA)
    assert settings.limits == LimitSettings()
    for name in (*LIMITS_DMPA, *LIMITS_DLMAP):
        assert schema.LIMIT_RATE[name].default == getattr(LimitSettings(), name).rate
        assert schema.LIMIT_BURST[name].default == getattr(LimitSettings(), name).burst


# The command


def test_check_config_accepts_the_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (p.name for p in EXAMPLES):
        path = example_file(name, tmp_path)  # its key file: the tests' (same SPI)
        assert main(["check-config", str(path)]) == 0
        out, err = capsys.readouterr()
        # the examples' access interface (eth1) is this machine's only if it has one
        absent = "warning: dmpa.access: no interface eth1 in this network namespace"
        assert [line for line in err.splitlines() if not line.startswith(absent)] == []
        assert out.count("\n") == 1 and ": ok: " in out and "peers: 2001:db8:100::" in out


def test_check_config_prints_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.ini"
    path.write_text(
        DMPA.replace("name = dmpa1", "name = dmpa_1")
        .replace("gateway = 192.0.2.1", "gateway = 192.0.2.300")
        .replace("[dmpa]", "[dmpa]\nlifetime = 0\nlease = 5")
        .replace("[peer 2001:db8:100::1]", "[peer 2001:db8:100::1]\ndialect = rfc")
        .replace("tunnel_mtu = 1500", "tunnel_mtu = 1400")
    )
    assert main(["check-config", str(path)]) == 2
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert [line for line in lines if line.startswith("error: ")] == lines[:5]
    assert lines[5:] == [line for line in lines if line.startswith("warning: dmpa.tunnel_mtu")]
    assert len(lines) == 6


def test_check_config_warnings_exit_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "warn.ini"
    path.write_text(DMPA.replace("tunnel_mtu = 1500", "tunnel_mtu = 1400"))
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("warning: dmpa.tunnel_mtu: 1400 is below 1500")
    assert "ok: dmpa dmpa1 at 2001:db8:100::11; peers: 2001:db8:100::1 (draft); 1 profile" in out


def test_check_config_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "/nonexistent/x.ini"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_metrics_and_log_format_keys() -> None:
    settings, _ = loads(NODE_DLMAP_INI)
    assert settings.node.metrics == (str(NODE_DLMAP), 9477)
    assert settings.node.log_format == "text"
    settings, _ = loads(NODE_DMPA_INI)
    assert settings.node.metrics is None  # off by default
    assert settings.node.log_format == "json"
    v4, _ = loads(NODE_DMPA_INI.replace("log_format = json", "metrics = 127.0.0.1:9100"))
    assert v4.node.metrics == ("127.0.0.1", 9100)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9477", "node.metrics: 9477 is not ADDRESS:PORT or [IPv6]:PORT"),
        ("localhost:9477", "node.metrics: localhost is not an IP address"),
        ("127.0.0.1:0", "node.metrics: "),
        ("[2001:db8::1]", "node.metrics: [2001:db8::1] is not [IPv6]:PORT"),
    ],
)
def test_bad_metrics_addresses_are_reported_with_the_others(value: str, message: str) -> None:
    text = NODE_DMPA_INI.replace("log_format = json", f"metrics = {value}\nlog_format = yaml")
    with pytest.raises(ConfigErrors) as caught:
        loads(text)
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems
    assert any(p.startswith("node.log_format: ") for p in caught.value.problems)


# --- [access IFACE] (802.1X) ---------------------------------------------------------------

DOT1X_RADIUS = (
    "[radius]\nservers = 192.0.2.5 0123456789abcdef\nproxy_secret = hostapd-secret-0123\n"
)


def test_an_8021x_access_link_with_its_proxy() -> None:
    text = DMPA.replace("access = eth1", "access = eth1, eth2") + DOT1X_RADIUS
    text += "[access eth2]\nauth = 8021x\n\n[access eth1]\nauth = mac\n"
    settings, warned = loads(text)
    assert warned == []
    assert isinstance(settings, DMPASettings) and settings.radius is not None
    assert [settings.auth(0), settings.auth(1)] == ["mac", "8021x"]
    eth2 = next(link for link in settings.links if link.interface == "eth2")
    assert eth2.hostapd == Path("/run/hostapd/eth2")
    assert settings.radius.proxy == ("127.0.0.1", 18121)
    assert settings.radius.proxy_secret == b"hostapd-secret-0123"
    assert settings.aaa == "local"  # the MAC link keeps its local profiles


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[access eth1]\nppp_auth = pap\n", "access eth1.ppp_auth: only with auth = pppoe"),
        ("[access eth1]\nauth = pppoe\nppp_auth = mschap\n", "access eth1.ppp_auth: "),
        ("[access eth9]\nauth = 8021x\n", "access eth9: 'eth9' is not an access link"),
        ("[access eth1]\nhostapd = /run/h/eth1\n", "access eth1.hostapd: only with auth = 8021x"),
        ("[access eth1]\nauth = wpa\n", "access eth1.auth: "),
        ("[access eth1]\nauth = 8021x\n", "radius: section missing (an auth = 8021x"),
        (
            "[access eth1]\nauth = 8021x\n[radius]\nservers = 192.0.2.5 0123456789abcdef\n",
            "radius.proxy_secret: required with an auth = 8021x access link",
        ),
        ("[access]\nauth = mac\n", "access: name it, as [access <interface>]"),
    ],
)
def test_access_sections_are_checked(extra: str, expected: str) -> None:
    found = problems(DMPA + extra)
    assert any(p.startswith(expected) for p in found), found


def test_a_pppoe_access_link() -> None:
    text = DMPA.replace("access = eth1", "access = eth1, eth2")
    text += "[access eth2]\nauth = pppoe\nppp_auth = pap\n\n[access eth1]\nauth = pppoe\n"
    settings, warned = loads(text)
    assert warned == [] and isinstance(settings, DMPASettings)
    assert [settings.auth(0), settings.auth(1)] == ["pppoe", "pppoe"]
    assert {link.interface: link.ppp_auth for link in settings.links} == {
        "eth1": "chap",
        "eth2": "pap",
    }


def test_a_dlmap_has_no_access_links() -> None:
    found = problems(DLMAP + "[access eth1]\nauth = mac\n")
    assert "access eth1: only a DMPA has access links (node.role = dlmap)" in found
