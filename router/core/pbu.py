"""A PBU as the DLMAP's rules read it (:mod:`router.core.dlmap`): its options in one pass, what
identifies it among its retransmissions, and the refusal that is its reply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any

from router.wire.dialect import Dialect
from router.wire.mh import BindingUpdate
from router.wire.mh_options import (
    AccessTechnologyTypeOption,
    AlternateCareOfAddress,
    HandoffIndicatorOption,
    HomeNetworkPrefix,
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    SeedIPv4HomeAddress,
    Timestamp,
)

#: What identifies one PBU: BU sequence, lifetime, and the ordering/address fields of its options.
#: BU sequence numbers wrap within a refresh period on a busy DMPA, so the number alone is not
#: enough to say "the same PBU again".
Fingerprint = tuple[int, int, int, int, int, int]


@dataclass(slots=True)
class PBURequest:
    """What the checks learned about one PBU."""

    message: BindingUpdate
    src: IPv6Address
    dialect: Dialect
    #: The Alternate Care-of Address option, when the tunnel endpoint is not the source (seed 6).
    coa: IPv6Address | None = None
    nai: str | None = None
    seed: SeedIPv4HomeAddress | None = None
    request: IPv4HomeAddressRequest | None = None
    handoff: HandoffIndicatorOption | None = None
    access: AccessTechnologyTypeOption | None = None
    timestamp: Timestamp | None = None
    mn_id: MobileNodeIdentifier | None = None
    prefix: HomeNetworkPrefix | None = None

    @property
    def serving(self) -> IPv6Address:
        """The DMPA that serves the MS: the Alternate CoA if given, else the source (seed 6)."""
        return self.coa if self.coa is not None else self.src


def parse(req: PBURequest) -> None:
    """One pass over the PBU's options (the first of each kind counts)."""
    for option in reversed(req.message.options):
        if isinstance(option, MobileNodeIdentifier):
            req.mn_id = option
        elif isinstance(option, SeedIPv4HomeAddress):
            req.seed = option
        elif isinstance(option, HandoffIndicatorOption):
            req.handoff = option
        elif isinstance(option, AccessTechnologyTypeOption):
            req.access = option
        elif isinstance(option, Timestamp):
            req.timestamp = option
        elif isinstance(option, IPv4HomeAddressRequest):
            req.request = option
        elif isinstance(option, HomeNetworkPrefix):
            req.prefix = option
        elif isinstance(option, AlternateCareOfAddress):
            req.coa = option.address
    req.nai = req.mn_id.nai if req.mn_id is not None else None


def fingerprint_of(req: PBURequest) -> Fingerprint:
    m, seed, request, ts = req.message, req.seed, req.request, req.timestamp
    carrier = seed or request
    return (
        m.sequence,
        m.lifetime,
        seed.sequence if seed is not None else -1,
        int(carrier.address) if carrier is not None else -1,
        ts.value if ts is not None else -1,
        int(req.coa) & 0xFFFFFFFF if req.coa is not None else -1,
    )


class Reject(Exception):
    """A PBU refused: the exception carries what the PBA says (the exception *is* the reply)."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        reply_status: int | None = None,
        sequence: int | None = None,
        our_time: bool = False,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.reply_status = reply_status
        self.sequence = sequence
        self.our_time = our_time


def as_fingerprint(values: Iterable[Any]) -> Fingerprint:
    a, b, c, d, e, f = (int(v) for v in values)
    return (a, b, c, d, e, f)
