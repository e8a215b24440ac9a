"""The keys of the DMPA's AAA sections: ``[radius]`` (the RADIUS client, and the proxy for the
802.1X authenticators) and ``[access IFACE]`` (how an access link's MSs identify themselves,
issue 17). Listed in :data:`router.app.config.schema.SCHEMA` like every other key.
"""

from __future__ import annotations

from router.adapters.radius import DEFAULT_RETRIES, DEFAULT_TIMEOUT
from router.app.config import parsers as p
from router.app.config.key import Key
from router.core import defaults

# [radius]

RADIUS_SERVERS = Key(
    "radius",
    "servers",
    p.radius_servers,
    None,
    "One server a line, HOST[:PORT] SECRET ([IPv6]:PORT with a port); the second is the "
    f"failover (one or two; port default {p.RADIUS_PORT})",
    True,
)
RADIUS_NAS_IDENTIFIER = Key(
    "radius",
    "nas_identifier",
    p.nas_identifier,
    None,
    f"NAS-Identifier sent in every request, at most {p.MAX_NAS_IDENTIFIER} octets",
    shown="node.name",
)
RADIUS_TIMEOUT = Key(
    "radius",
    "timeout",
    p.number(0, 60, low_open=True),
    DEFAULT_TIMEOUT,
    "Seconds to wait for each try, (0, 60]",
)
RADIUS_RETRIES = Key(
    "radius",
    "retries",
    p.integer(0, 10),
    DEFAULT_RETRIES,
    "Retransmissions to one server before the next is asked, 0..10",
)

RADIUS_PROXY = Key(
    "radius",
    "proxy",
    p.listen_address,
    defaults.RADIUS_PROXY,
    "Where the access links' 802.1X authenticators (hostapd, auth = 8021x) send their RADIUS: "
    "the DMPA forwards to the servers above and reads each Access-Accept's NAI and RFC 6572 "
    "profile on the way back; ADDRESS:PORT or [IPv6]:PORT",
    shown=f"{defaults.RADIUS_PROXY[0]}:{defaults.RADIUS_PROXY[1]}",
)
RADIUS_PROXY_SECRET = Key(
    "radius",
    "proxy_secret",
    p.secret,
    None,
    "The secret the authenticators share with the DMPA's proxy (hostapd's "
    "auth_server_shared_secret); required with an auth = 8021x access link",
    shown="none",
)

# [access IFACE]: how the MSs of one access link identify themselves (issue 17).

ACCESS_AUTH = Key(
    "access",
    "auth",
    p.choice(*defaults.ACCESS_AUTH_MODES),
    "mac",
    "mac (a local or RADIUS profile keyed by the MS's MAC: anyone on the link can copy it), "
    "8021x (hostapd authenticates the MS by EAP; the DMPA serves a MAC nothing until hostapd "
    "reports its success on this link, and the NAI is the one the home AAA returns) or pppoe "
    "(the DMPA is the PPPoE access concentrator: the MS's PPP user name is its NAI, its PAP "
    "or CHAP credentials are checked by AAA, and IPCP gives it the home address of the PBA)",
)
ACCESS_HOSTAPD = Key(
    "access",
    "hostapd",
    p.socket_path,
    None,
    "auth = 8021x: hostapd's control socket for this interface (its ctrl_interface directory "
    "and the interface name); the DMPA attaches to it and reads its events",
    shown="/run/hostapd/<interface>",
)
ACCESS_PPP_AUTH = Key(
    "access",
    "ppp_auth",
    p.choice("chap", "pap"),
    "chap",
    "auth = pppoe: the PPP authentication protocol the DMPA asks for in LCP, chap (CHAP-MD5, "
    "RFC 1994) or pap (RFC 1334: the password crosses the access link in clear)",
)
