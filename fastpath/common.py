"""What both fastpath twins share: the verdict and drop-reason table, the constants, and the
records they return.

The table below is *the* list, and the integer constants at the end are *the* values. The
compiled twin does not restate them: ``python -m fastpath.gen_pxd`` writes them into
``_fastpath.pxd`` (C enums) and ``_fastpath.pyx`` (``REASON_TABLE``), and
``tests/fastpath/test_table.py`` fails while those generated blocks are stale or the built
module's ``REASON_TABLE`` differs from this one row by row, so a reason or a constant cannot
change in one twin only.

Rule 1: every packet ends with exactly one reason, and the reason decides the verdict.
Rule 2: FORWARD only for ``FORWARDED``; a PUNT goes to the slow path with its context (it may
answer with ARP, DHCP, ICMP); a DROP is counted and forgotten (VPP's ``foreach_ipip_error``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class Verdict(IntEnum):
    FORWARD = 0
    PUNT = 1
    DROP = 2


class Direction(IntEnum):
    """Counters are kept per direction: uplink is MS -> Internet, downlink is Internet -> MS."""

    UPLINK = 0
    DOWNLINK = 1


class Reason(IntEnum):
    FORWARDED = 0
    # punted to the slow path
    # DMPA access, link-layer control the DMPA answers: ARP for the pseudo-MAC gateway; on a
    # PPPoE link, discovery and session frames that are not a bound MS's IPv4 (LCP, PAP, CHAP,
    # IPCP). (No reason of its own: 24.. are the kernel tier's, fastpath/kernel.py.)
    ARP = 1
    # DHCP client->server on the access link / through the tunnel from a known peer; DLMAP TUN:
    # to port 67 of an unbound address (a server's answer to another relay's giaddr)
    DHCP = 2
    ICMP_GATEWAY = 3  # ICMP to the MS's default gateway (echo); IPv6 ND (RS, NS) for the router
    UNKNOWN_MS = 4  # DMPA access: IPv4 source not bound yet (may trigger registration)
    TTL_EXPIRED = 5  # RFC 2473 3.1(b): the slow path sends ICMP time exceeded
    FRAG_NEEDED = 6  # larger than the tunnel MTU with DF set (RFC 2473 7.2: ICMP 3/4)
    FRAGMENT = 7  # larger than the tunnel MTU, DF clear: the slow path fragments
    # dropped
    TRUNCATED = 8  # shorter than its headers say
    BAD_ETHERTYPE = 9  # neither ARP nor IPv4 on the access link
    NOT_FOR_US = 10  # destination MAC / outer destination is not ours
    BAD_VERSION = 11
    BAD_IHL = 12
    BAD_LENGTH = 13  # total/payload length inconsistent with the buffer
    BAD_CHECKSUM = 14  # IPv4 header checksum (RFC 1812 5.2.2)
    SPOOFED_SRC = 15  # bound HoA from the wrong MAC, access link or PPPoE session
    SRC_NOT_BOUND = 16  # tunnel input whose outer source is not the endpoint bound to that HoA
    NO_BINDING = 17  # destination HoA not bound
    UNKNOWN_PEER = 18  # DHCP through the tunnel from an address that is not a known peer
    BAD_NEXT_HEADER = 19  # outer IPv6 carries neither IPv4 (4) nor IPv6 (41), after options
    BAD_OPTION = 20  # malformed Destination Options header or an option we must not skip
    ECN_NOT_ECT = 21  # RFC 6040: outer CE over a not-ECT inner packet
    NO_ROOM = 22  # output buffer too small for the result
    BAD_GSO = 23  # TAP/TUN offload: a virtio-net header we cannot act on (see ``segment``)


VERDICT_OF: tuple[Verdict, ...] = tuple(
    Verdict.FORWARD
    if r is Reason.FORWARDED
    else (Verdict.PUNT if r <= Reason.FRAGMENT else Verdict.DROP)
    for r in Reason
)

# counters() keys are f"{direction}.{reason}" in lower case, plus these per-direction extras:
# bytes = IPv4 octets forwarded, tx_errors = forwarded but the write/send failed (batched I/O)
EXTRA_COUNTERS = ("bytes", "tx_errors")


def counter_names() -> list[str]:
    names = []
    for d in Direction:
        names += [f"{d.name.lower()}.{r.name.lower()}" for r in Reason]
        names += [f"{d.name.lower()}.{x}" for x in EXTRA_COUNTERS]
    return names


class Binding(NamedTuple):
    """One HoA table entry as Python sees it (the compiled table keeps a C struct)."""

    hoa: int  # IPv4 home address as an unsigned 32-bit integer (a prefix entry: its top 64 bits)
    endpoint: bytes  # 16 bytes: the tunnel endpoint serving it (DMPA: the DLMAP; DLMAP: the DMPA)
    mac: bytes  # 6 bytes: the MS MAC (DMPA side; zeros on the DLMAP)
    link: int  # access link index (DMPA side: the TAP it leaves by)
    flags: int  # 8 bits, owned by the caller
    packets: int  # forwarded through this binding, both directions
    octets: int  # IPv4 bytes forwarded through this binding
    #: The MS's own default gateway (DMPA side: ICMP to it is punted, the DMPA answers it);
    #: 0: the engine's gateway only.
    gateway: int = 0


class Punt(NamedTuple):
    """A packet for the slow path, with the context it cannot be understood without."""

    reason: int
    link: int  # access link it came in on (DMPA access), else -1
    source: bytes  # source MAC (DMPA access), outer IPv6 source (tunnel input), b"" (TUN)
    data: bytes  # the frame / inner IPv4 packet as received


# One result per packet from the single-packet calls: (verdict, reason, output length, link).
# link is the access link the output leaves by (DMPA downlink), else -1.
Result = tuple[int, int, int, int]

ETH_BROADCAST = b"\xff" * 6

# ---- constants of both twins (and of the configuration's limits); every int here is also a
# C enum constant of the compiled twin (generated, see above) ----

ETH_LEN = 14  # Ethernet header on the access links
IP6_LEN = 40  # the outer IPv6 header
IO_BUF = 2048  # per-packet buffer of the batched I/O: tunnel MTU <= IO_BUF - IP6_LEN - ETH_LEN
IO_BATCH = 64  # recvmmsg / sendmmsg slots (the read() scratch is IO_BATCH * IO_BUF)
READ_MAX = 65536  # one read() from a TAP/TUN
MAX_STRIDE = 65535  # the largest Batch stride
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
NH_IPV4 = 4
NH_IPV6 = 41  # IPv6-in-IPv6 (RFC 2473): a dual-stack MS's IPv6 (RFC 5213 home network prefix)
PROTO_ICMPV6 = 58
ND_FIRST = 133  # ICMPv6 types of Neighbor Discovery, RS .. Redirect (RFC 4861 4)
ND_LAST = 137
NH_DSTOPTS = 60
OPT_PAD1 = 0
OPT_PADN = 1
OPT_TUNNEL_ENCAP_LIMIT = 4  # RFC 2473 4.1.1: ignored at the exit point
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
ECN_CE = 3
# TAP/TUN offload (IFF_VNET_HDR): every read and write starts with a struct virtio_net_hdr, in
# host byte order (linux/virtio_net.h; legacy, no TUNSETVNETLE)
VNET_HDR_LEN = 10
VNET_READ_MAX = 65536 + 64  # a TCP super-packet: 64 KiB of IPv4/IPv6 + Ethernet + the header
VNET_F_NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_TCPV6 = 4
GSO_ECN = 0x80
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_URG = 0x20
TCP_CWR = 0x80
COALESCE_MAX = 65535  # the IP packet length of a coalesced super-packet (IPv4 or IPv6), at most
# the HoA table
MAX_ENTRIES = 0x40000000
MAX_ENDPOINTS = 0xFFFF  # distinct (tunnel endpoint, gateway) pairs (an entry holds a 16-bit index)
# growth: old slots moved to the doubled array per bind/unbind and per batch call
REHASH_PER_UPDATE = 8
REHASH_PER_BATCH = 64
# PPPoE access links (RFC 2516; the DMPA's PPPoE server is router/services/pppoe.py)
ETH_P_PPPOE_DISC = 0x8863
ETH_P_PPPOE_SES = 0x8864
PPPOE_VER_TYPE = 0x11
PPP_IPV4 = 0x0021
PPPOE_LEN = 8  # the PPPoE session header (6) and the PPP protocol field (2)
PPPOE_MTU = 1492  # RFC 2516 7: the largest IPv4 packet in a session on a 1500-byte Ethernet
MAX_LINKS = 0x10000  # access link indices are 16 bits (the PPPoE link bitmap covers them)
