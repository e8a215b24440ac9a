"""RADIUS without a server: the Access-Request we build, the reply checks, Accept -> Profile.

Replies are made the way a server makes them, with pyrad's server side (``CreateReply`` and
``ReplyPacket``), then bent one field at a time to show each check drops what it should.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import struct
from collections import OrderedDict
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from pyrad.packet import AccessAccept, AccessChallenge, AccessReject, AuthPacket

from router.adapters.aaa import AAA, AAAConfig
from router.adapters.radius import (
    DICTIONARY_PATH,
    FRAMED_IP_ADDRESS,
    MOBILE_NODE_IDENTIFIER,
    PMIP6_HOME_DHCP4_SERVER_ADDRESS,
    PMIP6_HOME_IPV4_GATEWAY,
    PMIP6_HOME_IPV4_HOA,
    PMIP6_HOME_LMA_IPV6_ADDRESS,
    USER_NAME,
    CheckedReply,
    Credentials,
    MappingError,
    RadiusConfig,
    RadiusServer,
    build_request,
    calling_station_id,
    check_reply,
    dictionary,
    map_accept,
    parse_server,
    reply_identifier,
    user_name,
)
from router.core.aaa import LocalProfile
from router.core.dmpa import Profile
from router.wire.ethernet import MacAddress
from tests.conftest import require

SECRET = b"testing123"
SERVER = RadiusServer(IPv4Address("192.0.2.2"), SECRET)
MAC = MacAddress.parse("02:00:5e:10:0a:ff")
DLMAP = IPv6Address("2001:db8:5::10")
HOA = IPv4Address("192.0.2.77")
CONFIG = RadiusConfig((SERVER,), "dmpa-1", IPv6Address("2001:db8:5::1"))


def hoa_prefix(address: IPv4Address, length: int = 32) -> bytes:
    """RFC 8044 3.11 ipv4prefix, as FreeRADIUS encodes ``192.0.2.77/32``."""
    return bytes((0, length)) + address.packed


# --- the request ------------------------------------------------------------------------------


def decoded_request(nai: str | None = None, config: RadiusConfig = CONFIG) -> AuthPacket:
    raw = build_request(config, SERVER, 42, MAC, nai).RequestPacket()
    return AuthPacket(packet=raw, secret=SECRET, dict=dictionary())


def test_request_carries_mac_identity_when_nai_unknown() -> None:
    request = decoded_request()
    assert request.code == 1 and request.id == 42
    assert request["User-Name"] == ["02-00-5E-10-0A-FF"]
    assert request["Calling-Station-Id"] == ["02-00-5E-10-0A-FF"]
    assert request["NAS-Identifier"] == ["dmpa-1"]
    assert request["NAS-IPv6-Address"] == ["2001:db8:5::1"]


def test_request_uses_nai_when_known_and_mac_realm_otherwise() -> None:
    assert decoded_request("ms1@home.example")["User-Name"] == ["ms1@home.example"]
    realm = RadiusConfig((SERVER,), "dmpa-1", mac_realm="home.example")
    request = decoded_request(None, realm)
    assert request["User-Name"] == ["02-00-5E-10-0A-FF@home.example"]
    assert "NAS-IPv6-Address" not in request
    assert user_name(MAC, "", None) == calling_station_id(MAC)


def test_request_message_authenticator_is_first_and_verifies() -> None:
    raw = build_request(CONFIG, SERVER, 9, MAC, None).RequestPacket()
    assert raw[20] == 80 and raw[21] == 18  # RFC 3579 3.2 recommends it first
    server_side = AuthPacket(packet=raw, secret=SECRET, dict=dictionary())
    assert server_side.verify_message_authenticator()
    wrong = AuthPacket(packet=raw, secret=b"other", dict=dictionary())
    assert not wrong.verify_message_authenticator()


def test_a_ppp_ms_credentials_travel_as_rfc_2865_says() -> None:
    pap = build_request(CONFIG, SERVER, 3, MAC, "ppp@x", credentials=Credentials(b"pw-1"))
    server_side = AuthPacket(packet=pap.RequestPacket(), secret=SECRET, dict=dictionary())
    [hidden] = server_side["User-Password"]
    assert hidden != b"pw-1" and len(hidden) == 16  # RFC 2865 5.2: padded to 16, hidden
    assert server_side.PwDecrypt(hidden) == "pw-1"
    assert server_side.verify_message_authenticator()
    chap = Credentials(chap=(7, b"c" * 16, b"r" * 16))
    request = build_request(CONFIG, SERVER, 4, MAC, "ppp@x", credentials=chap)
    server_side = AuthPacket(packet=request.RequestPacket(), secret=SECRET, dict=dictionary())
    assert server_side["CHAP-Password"] == [b"\x07" + b"r" * 16]  # RFC 2865 5.3
    assert server_side["CHAP-Challenge"] == [b"c" * 16]
    assert "User-Password" not in server_side


def test_request_authenticators_differ() -> None:
    a = build_request(CONFIG, SERVER, 1, MAC, None).authenticator
    b = build_request(CONFIG, SERVER, 1, MAC, None).authenticator
    assert len(a) == 16 and a != b


# --- the reply checks -------------------------------------------------------------------------


def server_reply(
    code: int = AccessAccept,
    *,
    attributes: dict[int, list[bytes]] | None = None,
    secret: bytes = SECRET,
    sign: bool = True,
) -> tuple[bytes, bytes]:
    """(request authenticator, reply bytes) as a server with ``secret`` would answer."""
    request_raw = build_request(CONFIG, SERVER, 7, MAC, None).RequestPacket()
    request = AuthPacket(packet=request_raw, secret=secret, dict=dictionary())
    reply = request.CreateReply(message_authenticator=sign)
    reply.code = code
    for code, values in (attributes or {}).items():
        reply[code] = list(values)
    return request.authenticator, reply.ReplyPacket()


def resign(data: bytes, request_authenticator: bytes, secret: bytes = SECRET) -> bytes:
    """Recompute the Response Authenticator over modified bytes (a server that means it)."""
    digest = hashlib.md5(data[:4] + request_authenticator + data[20:] + secret).digest()
    return data[:4] + digest + data[20:]


def test_good_accept_passes_with_raw_attributes() -> None:
    auth, data = server_reply(attributes={PMIP6_HOME_IPV4_HOA: [hoa_prefix(HOA)]})
    checked = check_reply(data, auth, SECRET)
    assert isinstance(checked, CheckedReply)
    assert checked.code == AccessAccept
    assert checked.attributes[PMIP6_HOME_IPV4_HOA] == [hoa_prefix(HOA)]


@pytest.mark.parametrize("code", [AccessReject, AccessChallenge])
def test_reject_and_challenge_pass_the_checks(code: int) -> None:
    auth, data = server_reply(code)
    checked = check_reply(data, auth, SECRET)
    assert isinstance(checked, CheckedReply) and checked.code == code


def test_padding_after_length_is_ignored() -> None:
    auth, data = server_reply()
    assert isinstance(check_reply(data + b"\0" * 7, auth, SECRET), CheckedReply)


def test_wrong_secret_is_bad_authenticator() -> None:
    auth, data = server_reply(secret=b"not the secret")
    assert check_reply(data, auth, SECRET) == "drop_bad_authenticator"


def test_wrong_request_authenticator_is_bad_authenticator() -> None:
    _, data = server_reply()
    assert check_reply(data, b"\x01" * 16, SECRET) == "drop_bad_authenticator"


def test_any_flipped_octet_is_bad_authenticator() -> None:
    auth, data = server_reply(attributes={PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed]})
    for offset in (0, 1, 4, 19, 20, len(data) - 1):
        bent = bytearray(data)
        bent[offset] ^= 0x01
        assert check_reply(bytes(bent), auth, SECRET) in (
            "drop_bad_authenticator",
            "drop_malformed",
        ), offset


def test_missing_message_authenticator_is_dropped_unless_allowed() -> None:
    auth, data = server_reply(sign=False)
    assert check_reply(data, auth, SECRET) == "drop_missing_message_authenticator"
    allowed = check_reply(data, auth, SECRET, require_message_authenticator=False)
    assert isinstance(allowed, CheckedReply)


def test_bad_message_authenticator_is_dropped_even_with_good_response_authenticator() -> None:
    auth, data = server_reply()
    at = data.index(bytes((80, 18)), 20) + 2
    bent = data[:at] + bytes(16) + data[at + 16 :]
    assert check_reply(resign(bent, auth), auth, SECRET) == "drop_bad_message_authenticator"


def test_proxy_state_we_never_sent_is_dropped() -> None:
    auth, data = server_reply(attributes={33: [b"\x01\x02"]})
    assert check_reply(data, auth, SECRET) == "drop_proxy_state"


def test_authentic_but_wrong_code_is_dropped() -> None:
    auth, data = server_reply(5)  # Accounting-Response
    assert check_reply(data, auth, SECRET) == "drop_bad_code"


def test_truncated_and_garbled_replies_are_malformed() -> None:
    auth, data = server_reply()
    assert check_reply(data[:19], auth, SECRET) == "drop_malformed"
    assert check_reply(data[:-1], auth, SECRET) == "drop_malformed"  # Length > datagram
    # Attributes whose Length runs past the end or is below 2, authentic all the same.
    auth, data = server_reply(sign=False)
    for tail in (bytes((26, 9)), bytes((1, 0)), bytes((1,))):
        bent = data[:2] + struct.pack("!H", len(data) + len(tail)) + data[4:] + tail
        verdict = check_reply(resign(bent, auth), auth, SECRET, require_message_authenticator=False)
        assert verdict == "drop_malformed", tail


def test_reply_identifier() -> None:
    _, data = server_reply()
    assert reply_identifier(data) == 7
    assert reply_identifier(data[:19]) is None
    assert reply_identifier(b"\x02\x07\x00\x13" + bytes(16)) is None  # Length 19 < 20
    assert reply_identifier(b"\x02\x07\x10\x01" + bytes(4093)) is None  # Length 4097 > 4096


# --- Accept -> Profile ------------------------------------------------------------------------


def mapped(
    attributes: dict[int, list[bytes]], config: RadiusConfig = CONFIG, sent: str = "sent@realm"
) -> Profile:
    return map_accept(attributes, sent, config)[0]


def test_static_hoa_from_rfc6572() -> None:
    profile, dhcp4, conflict = map_accept(
        {
            MOBILE_NODE_IDENTIFIER: [b"ms1@home.example"],
            PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed],
            PMIP6_HOME_IPV4_HOA: [hoa_prefix(HOA, 24)],
            PMIP6_HOME_IPV4_GATEWAY: [IPv4Address("192.0.2.1").packed],
            PMIP6_HOME_DHCP4_SERVER_ADDRESS: [IPv4Address("192.0.2.3").packed],
        },
        "02-00-5E-10-0A-FF",
        CONFIG,
    )
    assert profile == Profile("ms1@home.example", "static", DLMAP, HOA, IPv4Address("192.0.2.1"))
    assert dhcp4 == IPv4Address("192.0.2.3") and not conflict


def test_static_hoa_from_framed_ip_address() -> None:
    profile = mapped({PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed], FRAMED_IP_ADDRESS: [HOA.packed]})
    assert profile.mode == "static" and profile.hoa == HOA


@pytest.mark.parametrize("framed", [None, "255.255.255.254", "255.255.255.255"])
@pytest.mark.parametrize("dynamic_mode", ["dhcp", "dlmap"])
def test_no_home_address_means_the_configured_dynamic_mode(
    framed: str | None, dynamic_mode: str
) -> None:
    config = RadiusConfig((SERVER,), "dmpa-1", dynamic_mode=dynamic_mode)  # type: ignore[arg-type]
    attributes = {PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed]}
    if framed is not None:
        attributes[FRAMED_IP_ADDRESS] = [IPv4Address(framed).packed]
    profile = mapped(attributes, config)
    assert profile.mode == dynamic_mode and profile.hoa is None and profile.gateway is None


def test_rfc6572_hoa_wins_over_a_different_framed_ip_address() -> None:
    other = IPv4Address("192.0.2.99")
    profile, _, conflict = map_accept(
        {
            PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed],
            PMIP6_HOME_IPV4_HOA: [hoa_prefix(HOA)],
            FRAMED_IP_ADDRESS: [other.packed],
        },
        "x",
        CONFIG,
    )
    assert profile.hoa == HOA and conflict
    same = {
        PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed],
        PMIP6_HOME_IPV4_HOA: [hoa_prefix(HOA)],
        FRAMED_IP_ADDRESS: [HOA.packed],
    }
    assert not map_accept(same, "x", CONFIG)[2]


def test_nai_order_mn_identifier_then_user_name_then_what_was_sent() -> None:
    lma = {PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed]}
    assert mapped({**lma, USER_NAME: [b"u@r"], MOBILE_NODE_IDENTIFIER: [b"m@r"]}).nai == "m@r"
    assert mapped({**lma, USER_NAME: [b"u@r"]}).nai == "u@r"
    assert mapped(lma).nai == "sent@realm"


def test_dlmap_falls_back_to_the_configured_default() -> None:
    config = RadiusConfig((SERVER,), "dmpa-1", default_dlmap=IPv6Address("2001:db8:5::20"))
    assert mapped({}, config).dlmap == IPv6Address("2001:db8:5::20")
    assert mapped({PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed]}, config).dlmap == DLMAP
    with pytest.raises(MappingError, match="no default DLMAP"):
        mapped({})


@pytest.mark.parametrize(
    ("attributes", "why"),
    [
        ({PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed[:8]]}, "8 octets, not 16"),
        ({PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed, DLMAP.packed]}, "appears 2 times"),
        ({PMIP6_HOME_LMA_IPV6_ADDRESS: [bytes(16)]}, "is no DLMAP"),
        ({PMIP6_HOME_LMA_IPV6_ADDRESS: [IPv6Address("ff02::1").packed]}, "is no DLMAP"),
        ({PMIP6_HOME_IPV4_HOA: [HOA.packed]}, "4 octets, not 6"),
        ({PMIP6_HOME_IPV4_HOA: [hoa_prefix(HOA, 33)]}, "prefix length 33"),
        ({PMIP6_HOME_IPV4_HOA: [hoa_prefix(IPv4Address("0.0.0.0"))]}, "cannot be a home"),
        ({PMIP6_HOME_IPV4_HOA: [hoa_prefix(IPv4Address("224.0.0.1"))]}, "cannot be a home"),
        ({FRAMED_IP_ADDRESS: [b"\xc0\x00\x02"]}, "3 octets, not 4"),
        ({FRAMED_IP_ADDRESS: [bytes(4)]}, "cannot be a home"),
        ({PMIP6_HOME_IPV4_GATEWAY: [bytes(5)]}, "5 octets, not 4"),
        ({PMIP6_HOME_DHCP4_SERVER_ADDRESS: [bytes(3)]}, "3 octets, not 4"),
        ({MOBILE_NODE_IDENTIFIER: [b"\xff\xfe"]}, "not UTF-8"),
        ({MOBILE_NODE_IDENTIFIER: [b""]}, "empty"),
    ],
)
def test_unusable_accepts(attributes: dict[int, list[bytes]], why: str) -> None:
    with pytest.raises(MappingError, match=why):
        mapped({PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed], **attributes})


def test_end_to_end_reply_to_profile() -> None:
    auth, data = server_reply(
        attributes={
            MOBILE_NODE_IDENTIFIER: [b"ms1@home.example"],
            PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed],
            PMIP6_HOME_IPV4_HOA: [hoa_prefix(HOA)],
        }
    )
    checked = check_reply(data, auth, SECRET)
    assert isinstance(checked, CheckedReply)
    profile = mapped(checked.attributes)
    assert profile == Profile("ms1@home.example", "static", DLMAP, HOA, None)


# --- configuration and dictionary -------------------------------------------------------------


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        RadiusConfig(
            (RadiusServer(HOA, b""), SERVER, SERVER),
            "",
            timeout=0,
            retries=11,
            mac_realm="a@b",
        )
    message = str(caught.value)
    for key in ("servers:", "secret:", "nas_identifier:", "timeout:", "retries:", "mac_realm:"):
        assert key in message
    assert CONFIG.max_wait == 1 * 3 * 2.0


def test_parse_server() -> None:
    assert parse_server("192.0.2.2", SECRET) == SERVER
    assert parse_server("192.0.2.2:1912", SECRET).port == 1912
    v6 = parse_server("[2001:db8:5::2]:1913", SECRET)
    assert v6.address == IPv6Address("2001:db8:5::2") and v6.port == 1913
    assert parse_server("2001:db8:5::2", SECRET).port == 1812


def _attributes(text: str) -> dict[str, tuple[str, str]]:
    found = {}
    for line in text.splitlines():
        match = re.match(r"ATTRIBUTE\s+(\S+)\s+(\d+)\s+(\S+)", line)
        if match:
            found[match[1]] = (match[2], match[3])
    return found


def test_shipped_dictionary_matches_freeradius() -> None:
    debian = Path("/usr/share/freeradius")
    require(debian.is_dir(), "the FreeRADIUS dictionaries are not installed (make test does it)")
    theirs: dict[str, tuple[str, str]] = {}
    for name in ("rfc2865", "rfc2869", "rfc3162", "rfc6572"):
        theirs.update(_attributes((debian / f"dictionary.{name}").read_text()))
    ours = _attributes(DICTIONARY_PATH.read_text())
    assert len(ours) == 17
    for name, (code, kind) in ours.items():
        if name == "User-Password":  # "string encrypt=1" there: the client hides it itself
            assert (theirs[name][0], kind) == (code, "octets")
            continue
        assert theirs[name] == (code, kind), name


def test_pyrad_keeps_raw_values_by_code() -> None:
    # What _raw_attributes relies on: pyrad stores undecoded values under the attribute code.
    _, data = server_reply(attributes={PMIP6_HOME_IPV4_HOA: [hoa_prefix(HOA)]})
    packet = AuthPacket(packet=data, secret=SECRET, dict=dictionary())
    assert OrderedDict.__getitem__(packet, PMIP6_HOME_IPV4_HOA) == [hoa_prefix(HOA)]


# --- the AAA front ----------------------------------------------------------------------------


def test_front_defaults_to_local_profiles() -> None:
    front = AAA(AAAConfig(profiles=(LocalProfile("ms1@home.example", "dhcp", DLMAP, mac=MAC),)))
    assert asyncio.run(front.authenticate(MAC)) == Profile("ms1@home.example", "dhcp", DLMAP)
    assert asyncio.run(front.authenticate(MacAddress.parse("02:00:00:00:00:09"))) is None
    assert front.counters == {"requests": 2, "accept": 1, "reject": 1}
    front.close()


def test_front_radius_needs_its_section() -> None:
    with pytest.raises(ValueError, match=r"aaa\.backend"):
        AAA(AAAConfig(backend="radius"))


def test_a_home_hn_prefix_attribute_makes_the_ms_dual_stack() -> None:
    from router.adapters.radius import PMIP6_HOME_HN_PREFIX

    base = {
        MOBILE_NODE_IDENTIFIER: [b"ms1@home.example"],
        PMIP6_HOME_LMA_IPV6_ADDRESS: [DLMAP.packed],
    }
    plain, _, _ = map_accept(base, "x", CONFIG)
    assert plain.ipv6 is False
    # RFC 6572 PMIP6-Home-HN-Prefix: reserved, prefix length, prefix (the DLMAP assigns its own).
    hnp = bytes((0, 64)) + IPv6Address("2001:db8:ff00::").packed[:8]
    dual, _, _ = map_accept({**base, PMIP6_HOME_HN_PREFIX: [hnp]}, "x", CONFIG)
    assert dual.ipv6 is True and dual.nai == "ms1@home.example"
