"""IPv6 Neighbor Discovery for the DMPA's access links (RFC 4861) and the addresses it uses.

The DMPA's router address on every access link is the link-local address derived from the
domain's shared pseudo-MAC (modified EUI-64, RFC 4291 appendix A), so it is the same on every
DMPA: an MS's default router does not change at a handover (RFC 5213 section 6.8).
"""

from __future__ import annotations

from ipaddress import IPv6Address

from router.wire.ethernet import MacAddress

_LINK_LOCAL_PREFIX = 0xFE80 << 112


def interface_id_from_mac(mac: MacAddress) -> int:
    """The 64-bit modified EUI-64 interface identifier of ``mac`` (RFC 4291 appendix A)."""
    raw = mac.packed
    eui = bytes((raw[0] ^ 0x02,)) + raw[1:3] + b"\xff\xfe" + raw[3:6]
    return int.from_bytes(eui, "big")


def link_local_from_mac(mac: MacAddress) -> IPv6Address:
    """fe80::/64 plus the modified EUI-64 of ``mac``."""
    return IPv6Address(_LINK_LOCAL_PREFIX | interface_id_from_mac(mac))
