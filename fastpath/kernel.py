"""The kernel tier's layout as Python sees it: the reasons its programs count, the map values
and the node configuration (``bpf/netlmm_tc.h`` is the C side; a test compares them).

The programs (``bpf/netlmm_tc.bpf.c``) are compiled by ``setup.py`` into
:data:`OBJECT`; ``fastpath._kernel`` loads them. Reasons 0..23 are :class:`fastpath.common.Reason`
values with the same meaning (so the same counter names); 24.. are the kernel tier's own. Each
reason's :class:`~fastpath.common.Verdict` is what the kernel does with the packet: FORWARD
(redirected or, on the DLMAP's uplink, decapsulated into the kernel stack), DROP, or PUNT (left
unchanged for the user-space tier, which classifies it again).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from importlib import resources
from pathlib import Path

from fastpath.common import Direction, Reason, Verdict

#: The compiled TC programs, shipped in the package (absent when clang was not there at build).
OBJECT = Path(str(resources.files("fastpath").joinpath("netlmm_tc.bpf.o")))
#: The programs by hook.
PROG_DMPA_ACCESS = "dmpa_access"
PROG_DMPA_TRANSPORT = "dmpa_transport"
PROG_DLMAP = "dlmap_ingress"
PROG_PROBE = "probe_decap"
#: The maps.
MAP_BINDINGS = "bindings"
MAP_PREFIXES = "prefixes"
MAP_CONFIG = "config"
MAP_COUNTERS = "counters"
ROLE_DMPA = 1
ROLE_DLMAP = 2


class KernelReason(IntEnum):
    """Every reason a program ends a packet with (netlmm_tc.h ``enum netlmm_reason``)."""

    FORWARDED = Reason.FORWARDED
    ARP = Reason.ARP
    DHCP = Reason.DHCP
    ICMP_GATEWAY = Reason.ICMP_GATEWAY
    UNKNOWN_MS = Reason.UNKNOWN_MS
    TTL_EXPIRED = Reason.TTL_EXPIRED
    FRAG_NEEDED = Reason.FRAG_NEEDED
    FRAGMENT = Reason.FRAGMENT
    SPOOFED_SRC = Reason.SPOOFED_SRC
    SRC_NOT_BOUND = Reason.SRC_NOT_BOUND
    NO_BINDING = Reason.NO_BINDING
    # the kernel tier's own
    PASSED = 24  # not a tunnel packet of ours nor a bound MS's: not looked at
    IP_OPTIONS = 25  # IHL > 5
    IP_FRAGMENT = 26  # MF or a fragment offset
    GSO_OVER_MTU = 27  # a super-packet whose segments would not fit the tunnel MTU
    NO_ROUTE = 28  # no usable route to the tunnel endpoint
    ECN_CE = 29  # outer CE: the user-space tier applies RFC 6040
    UNPARSED = 30  # lengths, checksum or headers the program does not take as they are
    EXT_HEADER = 31  # an IPv6 extension header (hop-by-hop, routing, ...): not parsed


#: Counter slots per direction (``N_REASONS``).
N_REASONS = 32
#: What the kernel does with a packet of each reason.
KERNEL_VERDICT: dict[KernelReason, Verdict] = {
    r: Verdict.FORWARD
    if r is KernelReason.FORWARDED
    else (
        Verdict.DROP
        if r in (KernelReason.SPOOFED_SRC, KernelReason.SRC_NOT_BOUND)
        else Verdict.PUNT
    )
    for r in KernelReason
}

#: ``struct netlmm_binding``: endpoint, mac, pad, ifindex, gateway (network order), link,
#: flags, packets, octets. The value of a HoA (``bindings``) and of a /64 (``prefixes``, gateway 0).
BINDING = struct.Struct("=16s6s2xI4sIIQQ")
#: ``struct netlmm_config``: local, pseudo_mac, hop_limit, role, tunnel_mtu, transport ifindex,
#: TUN ifindex (DLMAP: where decapsulated packets enter the stack; 0: where they arrived).
CONFIG = struct.Struct("=16s6sBBIII")
#: ``struct netlmm_counter``: packets, bytes (one per CPU in the per-CPU array).
COUNTER = struct.Struct("=QQ")
#: The HoA key: network order.
KEY = struct.Struct("!I")
#: The prefix key: a /64's first 8 octets, network order.
PREFIX_KEY = struct.Struct("!Q")


def counter_key(direction: Direction, reason: KernelReason) -> int:
    return int(direction) * N_REASONS + int(reason)


def counter_names() -> list[str]:
    """``show counters`` keys of the kernel tier: ``<direction>.<reason>`` (packets) and
    ``<direction>.<reason>.bytes`` (inner octets when forwarded, the frame's octets else)."""
    names = []
    for d in Direction:
        for r in KernelReason:
            base = f"{d.name.lower()}.{r.name.lower()}"
            names += [base, f"{base}.bytes"]
    return names
