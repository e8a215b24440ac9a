"""Machinery both roles share and that knows nothing about either: what a node's core offers
(:class:`Core`), wall-time conversion for persisted deadlines, a per-source rate limit, what
becomes of an MH a core does not handle (:class:`Unhandled`), and the earliest of deadlines.
"""

from __future__ import annotations

from collections import OrderedDict
from ipaddress import IPv6Address
from typing import Protocol

from router.core.actions import Action, SendMH, event
from router.core.counters import Counters, Family, Names
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


class Unhandled:
    """What both cores do with a Mobility Header they do not handle.

    An unrecognized MH type is answered by a Binding Error, status 2 (RFC 6275 section 9.2),
    rate-limited per source (a peer's garbage must not turn us into a reflector); a known type
    the role does not take (a PBA at a DLMAP, say) is counted and reported, never answered.
    """

    def __init__(self, counters: Counters, interval: float = 1.0) -> None:
        self.counters = counters
        self._limit = RateLimiter(interval)

    def unknown_type(self, mh_type: int, src: IPv6Address, now: float) -> list[Action]:
        self.counters[SignalingCounter.MH_UNKNOWN_TYPE] += 1
        if not self._limit.allow(src, now):
            return [event("binding_error_suppressed", peer=src, mh_type=mh_type)]
        return [
            SendMH(src, BindingError(BindingErrorStatus.UNRECOGNIZED_MH_TYPE)),
            event("binding_error_sent", peer=src, mh_type=mh_type),
        ]

    def unexpected(self, message: object, src: IPv6Address) -> list[Action]:
        self.counters[SignalingCounter.MH_UNEXPECTED] += 1
        return [event("unexpected_message", peer=src, message=type(message).__name__)]


def earliest(*deadlines: float | None) -> float | None:
    """The first of the deadlines that are set (None: none is)."""
    present = [d for d in deadlines if d is not None]
    return min(present) if present else None
