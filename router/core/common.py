"""Machinery both roles share and that knows nothing about either: what a node's core offers
(:class:`Core`), wall-time conversion for persisted deadlines, a per-source rate limit, and the
Binding Error answer to unknown MH types.
"""

from __future__ import annotations

from collections import OrderedDict
from ipaddress import IPv6Address
from typing import Protocol

from router.core.actions import Action, SendMH, event
from router.core.counters import Family, Names
from router.wire.constants import BindingErrorStatus
from router.wire.mh import BindingError, MobilityMessage


class SignalingCounter(Names):
    """What both roles' cores count of the signaling (their ``core`` group)."""

    MH_UNEXPECTED = "mh.unexpected"  # a known message this role does not take
    MH_UNKNOWN_TYPE = "mh.unknown_type"  # answered with Binding Error 2
    PBA_ACCEPTED = "pba.accepted"  # DLMAP: sent; DMPA: received for our PBU


#: PBAs with a refusing status (DLMAP: sent; DMPA: received), by status code.
PBA_STATUS = Family("pba.status.{}", "PBAs refusing a registration, by status code")
#: BRAs by status code (DLMAP: received for our BRI; DMPA: sent).
BRA_STATUS = Family("bra.status.{}", "BRAs, by status code")


class Core(Protocol):
    """A role's signaling core as the node drives it: decoded MH in, timers, actions out
    (:class:`router.core.dlmap.DLMAP`, :class:`router.core.dmpa.DMPA`, and what wraps one, such
    as :class:`router.core.limits.LimitedDLMAP`)."""

    def receive(
        self, message: MobilityMessage, src: IPv6Address, now: float, wall: float
    ) -> list[Action]: ...

    def receive_unknown_type(self, mh_type: int, src: IPv6Address, now: float) -> list[Action]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float, wall: float) -> list[Action]: ...


def to_wall(deadline: float, now: float, wall: float) -> float:
    """A monotonic deadline as wall-clock time, for the database."""
    return wall + (deadline - now)


def from_wall(wall_deadline: float, now: float, wall: float) -> float:
    """A wall-clock deadline read back from the database, as monotonic time."""
    return now + (wall_deadline - wall)


class RateLimiter:
    """At most one event per ``interval`` seconds per key, remembering at most ``capacity`` keys."""

    def __init__(self, interval: float, capacity: int = 4096) -> None:
        self.interval = interval
        self.capacity = capacity
        self._last: OrderedDict[object, float] = OrderedDict()

    def allow(self, key: object, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.capacity:
            self._last.popitem(last=False)
        return True


class UnknownTypeResponder:
    """RFC 6275 section 9.2: an unrecognized MH type is answered by a Binding Error, status 2.

    Rate-limited per source (a peer's garbage must not turn us into a reflector).
    """

    def __init__(self, interval: float = 1.0) -> None:
        self._limit = RateLimiter(interval)

    def respond(self, mh_type: int, src: IPv6Address, now: float) -> list[Action]:
        if not self._limit.allow(src, now):
            return [event("binding_error_suppressed", peer=src, mh_type=mh_type)]
        return [
            SendMH(src, BindingError(BindingErrorStatus.UNRECOGNIZED_MH_TYPE)),
            event("binding_error_sent", peer=src, mh_type=mh_type),
        ]
