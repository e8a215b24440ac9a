"""What each group of ``netlmm show counters`` holds: the declarations (router.core.counters) of
the modules that count into it. The metrics (:mod:`router.app.metrics`) and the documentation
test (``docs/service.md`` lists the same names) are built from this table.

A group is one registry a node shows: ``node`` is the runtime's, shared by the runner, the
RFC 4285 guard, the DLMAP's PBU limit, the slow path and the MH and tunnel sends; ``core`` the
role's core and its heartbeats; ``dhcp`` (DLMAP) the built-in server or the relay; ``access``
(DMPA) the access services; ``limits`` the rate limits' tables; ``aaa`` (DMPA) the AAA backend;
``aaa_proxy`` and ``authenticator`` (DMPA with an 802.1X link) the RADIUS proxy, hostapd's events;
``fastpath`` the data path's per-direction, per-reason table; ``kernel`` the kernel tier's
(when it runs); ``datapath`` which tier runs; ``mh_socket`` the MH socket.
"""

from __future__ import annotations

from fastpath.common import EXTRA_COUNTERS, Direction, Reason
from fastpath.kernel import KernelReason
from router.adapters import sockets
from router.adapters.hostapd import HostapdCounter
from router.adapters.radius import RadiusCounter
from router.adapters.radius_proxy import ProxyCounter
from router.app import runner, runtime
from router.app.authenticators import AuthCounter
from router.app.dmpa_node import AAACounter
from router.core import limits, security
from router.core.common import BRA_STATUS, PBA_STATUS, SignalingCounter
from router.core.counters import Declaration, Family
from router.core.dlmap import DLMAPCounter
from router.core.dmpa import DMPACounter
from router.core.heartbeat import HeartbeatCounter
from router.core.prefix_pool import PrefixCounter
from router.core.revocation import RevocationCounter
from router.services import dhcp_dmpa, dhcp_relay, dhcp_server, dlmap_punts, dmpa_punts
from router.services.access import AccessCounter
from router.services.arp_proxy import ArpCounter
from router.services.icmp_responder import IcmpCounter
from router.services.nd_proxy import NdCounter
from router.services.pppoe import PPPoECounter

#: The fastpath's table (fastpath/common.py, ``counter_names``): per direction, a counter per
#: reason and the two extras.
FASTPATH = tuple(
    Family(
        f"{direction.name.lower()}.{{}}",
        "packets by reason (forwarded, punted, dropped), bytes forwarded, failed writes",
        [*(reason.name.lower() for reason in Reason), *EXTRA_COUNTERS],
    )
    for direction in Direction
)

#: The kernel tier's table (fastpath/kernel.py, ``counter_names``): per direction, packets and
#: bytes per reason.
KERNEL = tuple(
    Family(
        f"{direction.name.lower()}.{{}}",
        "packets by reason (forwarded, punted to the Cython tier, dropped) and their bytes",
        [
            *(reason.name.lower() for reason in KernelReason),
            *(f"{reason.name.lower()}.bytes" for reason in KernelReason),
        ],
    )
    for direction in Direction
)
#: Which tier runs: ``tier.kernel`` or ``tier.cython`` is 1 (router.app.runtime.TIERS).
DATAPATH = (Family("tier.{}", "1 for the tier that forwards bound MSs", runtime.TIERS),)

GROUPS: dict[str, tuple[Declaration, ...]] = {
    "node": (
        runner.RunnerCounter,
        runner.INTERNAL_ERROR_AT,
        runner.EVENT,
        runner.ACTION_ERROR,
        runtime.NodeCounter,
        runtime.MH_MALFORMED,
        security.AuthCounter,
        security.AUTH_RX,
        security.AUTH_REPLY,
        limits.LimitCounter,
        sockets.SLOW_TX_ERROR,
        dlmap_punts.PUNT,
        dlmap_punts.PuntCounter,
        dmpa_punts.PUNT_ACCESS,
        dmpa_punts.PUNT_TUNNEL,
        dmpa_punts.PuntCounter,
        AAACounter,
        AuthCounter,
    ),
    "core": (
        SignalingCounter,
        PBA_STATUS,
        BRA_STATUS,
        DLMAPCounter,
        PrefixCounter,
        RevocationCounter,
        DMPACounter,
        HeartbeatCounter,
    ),
    "dhcp": (
        dhcp_server.RequestDrop,
        dhcp_server.DhcpServerCounter,
        dhcp_server.RX,
        dhcp_server.REQUEST,
        dhcp_server.EXPIRED,
        dhcp_relay.DhcpRelayCounter,
        dhcp_relay.TX_REPLY,
    ),
    "access": (
        AccessCounter,
        ArpCounter,
        IcmpCounter,
        NdCounter,
        dhcp_dmpa.DhcpDmpaCounter,
        dhcp_dmpa.RELAYED,
        dhcp_dmpa.DELIVERED,
    ),
    "limits": (limits.LIMITED, limits.ALLOWED, limits.EVICTED, limits.TABLE),
    "aaa": (RadiusCounter,),
    "aaa_proxy": (ProxyCounter,),
    "authenticator": (HostapdCounter,),
    "pppoe": (PPPoECounter,),
    "fastpath": FASTPATH,
    "kernel": KERNEL,
    "datapath": DATAPATH,
    "mh_socket": (sockets.SocketCounter, sockets.TX_ERRNO, sockets.RX_ERRNO),
}

#: Entries of the registries that are sizes, not counts (they go down again): exported as
#: gauges, never as counters (a decrease would read as a counter reset).
LEVELS: tuple[Declaration, ...] = (
    runner.RunnerCounter.STORE_BACKLOG,
    runner.RunnerCounter.STORE_EPOCH,
    limits.TABLE,
)
