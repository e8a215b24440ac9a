"""PPPoE session frames in the reference twin (the compiled twin's ``pppoe.pxi``): what the
DMPA's data path does on an access link whose MSs use PPPoE (RFC 2516, ``[access IFACE] auth =
pppoe``). Uplink, a bound MS's IPv4 in its session loses the Ethernet, PPPoE and PPP headers
before the tunnel; downlink, an IPv4 packet for it gets them back (the session's id, the MS's
MAC). Everything else on such a link (discovery, LCP, PAP, CHAP, IPCP) is the slow path's
(``router/services/pppoe.py``), punted with the reason ARP (link-layer control)."""

from __future__ import annotations

from fastpath.common import (
    ETH_LEN,
    ETH_P_PPPOE_SES,
    PPP_IPV4,
    PPPOE_LEN,
    PPPOE_MTU,
    PPPOE_VER_TYPE,
    Reason,
)
from fastpath.reference_packet import Buf, be16, ipv4_check

#: Where the IPv4 packet starts in a PPPoE session frame.
IP_AT = ETH_LEN + PPPOE_LEN


def too_big(b: Buf, off: int, tot: int) -> int:
    """FORWARDED, or why a downlink packet does not fit a session (FRAG_NEEDED with DF set,
    else FRAGMENT: the slow path has no PPPoE answer for either, they are counted)."""
    if tot <= PPPOE_MTU:
        return Reason.FORWARDED
    return Reason.FRAG_NEEDED if b[off + 6] & 0x40 else Reason.FRAGMENT


def session_ipv4(frame: Buf, n: int) -> tuple[int, int, int]:
    """(reason, session id, IPv4 total length) of a PPPoE session frame. FORWARDED: it carries
    one whole IPv4 packet (PPP protocol 0x0021); ARP: anything else the server must see
    (control protocols, a version or code it rejects); else why it is dropped."""
    if n < IP_AT:
        return Reason.TRUNCATED, 0, 0
    if frame[ETH_LEN] != PPPOE_VER_TYPE or frame[ETH_LEN + 1] or be16(frame, 20) != PPP_IPV4:
        return Reason.ARP, 0, 0
    length = be16(frame, ETH_LEN + 4)  # the PPP protocol field and the packet
    if length < 2:
        return Reason.BAD_LENGTH, 0, 0
    if ETH_LEN + 6 + length > n:  # Ethernet may pad: more is fine
        return Reason.TRUNCATED, 0, 0
    reason, tot = ipv4_check(frame, IP_AT, length - 2, True)
    return reason, be16(frame, ETH_LEN + 2), tot


def put_header(out: bytearray, dst: bytes, src: bytes, session: int, tot: int) -> None:
    """The Ethernet, PPPoE session and PPP headers before ``tot`` bytes of IPv4 at ``IP_AT``."""
    out[0:6] = dst
    out[6:12] = src
    out[12:14] = ETH_P_PPPOE_SES.to_bytes(2, "big")
    out[14:16] = bytes((PPPOE_VER_TYPE, 0))
    out[16:18] = session.to_bytes(2, "big")
    out[18:20] = (tot + 2).to_bytes(2, "big")
    out[20:22] = PPP_IPV4.to_bytes(2, "big")
