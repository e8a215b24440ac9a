"""The DLMAP's records: its configuration, its binding cache entries, the PBAs it holds back
during a handover, and what it counts. The rules that fill them are :mod:`router.core.dlmap`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from router.core.counters import Names
from router.core.defaults import (
    BRI_INTERVAL,
    BRI_MAX_INTERVAL,
    BRI_RETRIES,
    LIFETIME,
    PREFIX_LENGTH,
    REVOCATION_BUDGET,
)
from router.core.heartbeat import HeartbeatConfig
from router.core.pbu import Fingerprint
from router.core.revocation import Key
from router.wire.dialect import DRAFT, Dialect
from router.wire.mh import BindingAck


class DLMAPCounter(Names):
    """What the DLMAP core counts (``core`` group, with :class:`SignalingCounter`,
    :data:`PBA_STATUS`, :data:`BRA_STATUS` and the heartbeat's)."""

    BINDING_CLEARED = "binding.cleared"
    BINDING_CREATED = "binding.created"
    BINDING_EXPIRED = "binding.expired"
    DEREGISTRATION_IGNORED = "deregistration.ignored"
    HANDOVER = "handover"
    LEASE_CONFLICT = "lease.conflict"
    LEASE_EXPIRED = "lease.expired"
    PBU_RETRANSMISSION = "pbu.retransmission"
    POOL_EXHAUSTED = "pool.exhausted"
    RESTORE_CONFLICT = "restore.conflict"


@dataclass(frozen=True, slots=True)
class DLMAPConfig:
    address: IPv6Address
    #: The MS's default gateway (seed 3.4: the DLMAP's IPv4 address).
    gateway: IPv4Address
    #: The DMPAs allowed to register, and the dialect each speaks.
    peers: Mapping[IPv6Address, Dialect]
    #: Prefix length of the home network, reported in RFC 5844 replies.
    prefix_length: int = PREFIX_LENGTH
    #: Longest binding lifetime granted, in seconds.
    max_lifetime: int = LIFETIME
    #: Longest time the new DMPA's PBA waits for the old DMPA's revocation acknowledgement.
    revocation_budget: float = REVOCATION_BUDGET
    #: BRI retransmission interval and count (RFC 5846 MINDelayBRIs, BRIMaxRetriesNumber).
    bri_interval: float = BRI_INTERVAL
    bri_retries: int = BRI_RETRIES
    #: After the retries, the slower pace's longest interval (the BRI goes on until the old
    #: registration's lifetime is over: router.core.revocation, rule 2).
    bri_max_interval: float = BRI_MAX_INTERVAL
    #: RFC 5213 TimestampValidityWindow, seconds.
    timestamp_window: float = 0.3
    #: Dialect used to answer a PBU from an address that is not a configured DMPA.
    default_dialect: Dialect = DRAFT
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    #: The state lives outside this process (a shared database, an active/standby pair): a
    #: start, or a takeover by the standby, loses nothing, so the RFC 5847 restart counter
    #: stays the stored one and the DMPAs do not re-register every MS.
    keep_restart_counter: bool = False


@dataclass(slots=True)
class BindingCacheEntry:
    nai: str
    #: The IPv4 home address; None for a plain RFC 5213 (IPv6-only) binding.
    hoa: IPv4Address | None
    dmpa: IPv6Address
    dialect: str
    #: The per-MS sequence number the DLMAP assigned last (seed 3.1.3).
    sequence: int
    #: Granted lifetime in seconds, and the monotonic time it ends.
    lifetime: int
    expires: float
    #: The last accepted PBU: its source and fingerprint, to recognise its retransmissions.
    last_bu: tuple[IPv6Address, Fingerprint] | None = None
    #: RFC 5213 ordering: the last accepted Timestamp option value.
    timestamp: int | None = None
    access_type: int | None = None
    #: The IPv6 home network prefix (RFC 5213), for a V=0 (dual-stack or IPv6-only) binding.
    prefix: IPv6Network | None = None


@dataclass(slots=True)
class PendingReply:
    dmpa: IPv6Address
    message: BindingAck
    revocation: Key
