"""The DMPA's records: its configuration, what AAA says about an MS (:class:`Profile`), the
visitor list's entries and their states, and what it counts. The rules that move them are
:mod:`router.core.dmpa`'s.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Literal

from router.core.counters import Names
from router.core.defaults import FIRST_BINDACK_TIMEOUT, LIFETIME
from router.core.heartbeat import HeartbeatConfig
from router.wire.constants import AccessTechnologyType
from router.wire.dialect import Dialect
from router.wire.ethernet import MacAddress

AddressMode = Literal["dhcp", "dlmap", "static"]


class DMPACounter(Names):
    """What the DMPA core counts (``core`` group, with :class:`SignalingCounter`,
    :data:`PBA_STATUS`, :data:`BRA_STATUS` and the heartbeat's)."""

    AAA_ACCEPT = "aaa.accept"
    AAA_REJECT = "aaa.reject"
    ATTACH = "attach"
    BRI_STALE = "bri.stale"
    DEREGISTERED = "deregistered"
    DEREGISTRATION_UNANSWERED = "deregistration.unanswered"
    PBA_NO_ADDRESS = "pba.no_address"
    PBA_NOT_PROXY = "pba.not_proxy"
    PBA_OTHER_ADDRESS = "pba.other_address"
    PBA_UNMATCHED = "pba.unmatched"
    PBU_PEER_RESTARTED = "pbu.peer_restarted"
    PBU_REFRESH = "pbu.refresh"
    PBU_RESENT = "pbu.resent"
    PBU_RETRANSMIT = "pbu.retransmit"
    PBU_SENT = "pbu.sent"
    REFRESH_REFUSED = "refresh.refused"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class Profile:
    """What AAA says about an MS (local profiles or RADIUS): who it is and where it is anchored."""

    nai: str
    mode: AddressMode
    dlmap: IPv6Address
    hoa: IPv4Address | None = None
    gateway: IPv4Address | None = None
    #: Dual-stack: ask the DLMAP for an IPv6 home network prefix too (V=0, seed 3.1.1).
    ipv6: bool = False


@dataclass(frozen=True, slots=True)
class DMPAConfig:
    #: Our IPv6 address: the tunnel source and Proxy-CoA.
    address: IPv6Address
    #: The pseudo-MAC every DMPA of the domain answers ARP with (seed 5.3).
    pseudo_mac: MacAddress
    #: The MS's default gateway unless its profile or the PBA says otherwise (seed 3.4).
    gateway: IPv4Address
    #: The DLMAPs we may register at, and the dialect each speaks.
    peers: Mapping[IPv6Address, Dialect]
    #: Binding lifetime asked for, seconds; refreshed at ``refresh_at`` of the granted lifetime.
    lifetime: int = LIFETIME
    refresh_at: float = 0.8
    first_timeout: float = FIRST_BINDACK_TIMEOUT
    timeout: float = 1.0  # INITIAL_BINDACK_TIMEOUT
    max_timeout: float = 32.0  # MAX_BINDACK_TIMEOUT
    #: How many times a de-registration is sent before the visitor is dropped anyway.
    deregistration_attempts: int = 3
    access_type: int = AccessTechnologyType.IEEE_802_3
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)


class State(enum.Enum):
    AUTHENTICATING = "authenticating"
    REJECTED = "rejected"
    WAIT_ADDRESS = "wait_address"
    REGISTERING = "registering"
    REGISTERED = "registered"
    DEREGISTERING = "deregistering"


@dataclass(slots=True)
class Visitor:
    """One entry of the seed's visitor list (section 5.1), plus the registration state."""

    mac: MacAddress
    link: int
    pseudo_mac: MacAddress
    tunnel_src: IPv6Address
    gateway: IPv4Address
    state: State = State.AUTHENTICATING
    nai: str | None = None
    hoa: IPv4Address | None = None
    tunnel_dst: IPv6Address | None = None
    #: The per-MS sequence number the DLMAP assigned (seed 3.1.3).
    sequence: int = 0
    mode: AddressMode | None = None
    #: An address the MS was seen using before it registered (it may have come from elsewhere).
    address_seen: IPv4Address | None = None
    #: The BU sequence number of the PBU in flight, and its retransmission timeout.
    pending: int | None = None
    timeout: float = 0.0
    registered_once: bool = False
    bound: IPv4Address | None = None
    lifetime: int = 0
    deregistrations_left: int = 0
    #: Registered again after its DLMAP restarted: the accepted PBA is a ``registered`` line.
    reregistering: bool = False
    #: Dual-stack (the profile's ``ipv6``): the PBU is V=0 with an HNP option.
    ipv6: bool = False
    #: The IPv6 home network prefix the DLMAP granted, and the one the data path has.
    prefix: IPv6Network | None = None
    bound_prefix: IPv6Network | None = None
    #: An authentication that came while this entry was de-registering (a PPP client dialling
    #: again at once, a new EAP login): its link and profile, taken up when the entry goes.
    next_authorization: tuple[int, Profile] | None = None

    def row(self) -> dict[str, object]:
        """The stored row of this entry (``visitor`` table; what a restart restores)."""
        record: dict[str, object] = {
            "mac": str(self.mac),
            "link": self.link,
            "nai": self.nai,
            "hoa": str(self.hoa) if self.hoa else None,
            "tunnel_src": str(self.tunnel_src),
            "tunnel_dst": str(self.tunnel_dst) if self.tunnel_dst else None,
            "pseudo_mac": str(self.pseudo_mac),
            "gateway": str(self.gateway),
            "sequence": self.sequence,
            "mode": self.mode,
        }
        if self.ipv6:  # additive: rows of IPv4-only visitors are unchanged
            record["ipv6"] = True
            record["prefix"] = str(self.prefix) if self.prefix else None
        return record
