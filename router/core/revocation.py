"""The DLMAP's revocations of an old DMPA (seed 3.2 figure 7; RFC 5846): the BRIs in flight.

Sans-I/O, owned by :class:`router.core.dlmap.DLMAP`. The rules:

1. A handover sends the old DMPA a Binding Revocation Indication in that DMPA's dialect:
   ``draft``: flags P|V, the MN-ID and the seed's IPv4 HoA option with the binding's per-MS
   sequence number and HoA (seed figure 7, step 3); ``rfc5844``: flag P, the MN-ID and an IPv4
   Home Address Request option naming the HoA. The trigger says what RFC 5846 6.1.1 knows of the
   handover: 2 when both registrations gave the same Access Technology Type, 3 when they gave
   different ones, 4 when either gave none (every ``draft`` PBU).
2. The BRI is sent again with its sequence number, every ``interval`` seconds ``retries`` times
   (RFC 5846 MINDelayBRIs, BRIMaxRetriesNumber), then at a slower pace, the interval doubling
   up to ``max_interval``, until its BRA comes or ``until``: the end of the lifetime the old DMPA
   was granted. By then the old DMPA has sent its refresh, which is refused (it no longer serves
   the MS) and makes it forget the visitor; a revocation lost under loss is thus learnt in
   bounded time, never left for good.
3. A BRA is taken for the revocation of its sequence number only if it names the binding the BRI
   revoked: the same MN-ID and the same IPv4 HoA option (``draft``: both required, per-MS
   sequence number included; ``rfc5844``: compared when present, a standard MAG need not echo
   them). Anything else is counted (``bra.mismatched``) and the BRI goes on.
4. One revocation per (old DMPA, NAI): a newer one replaces it, and an accepted registration
   from a DMPA cancels the revocation toward it for that NAI (A -> B -> A: the BRI still going
   to A would remove the MS A serves again).
5. Each revocation is persisted until it ends; a restarted DLMAP sends the BRI again with fresh
   retries (:meth:`Revoker.restore`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from router.core.actions import Action, Persist, SendMH, event
from router.core.common import from_wall, to_wall
from router.core.counters import Counters, Names
from router.core.defaults import BRI_INTERVAL, BRI_MAX_INTERVAL, BRI_RETRIES
from router.core.records import text
from router.core.sequence import seq_next
from router.core.timers import TimerHeap
from router.wire.constants import BRFlag, OptionType, RevocationTrigger
from router.wire.dialect import Dialect
from router.wire.mh import BindingRevocationAck, BindingRevocationIndication
from router.wire.mh_options import (
    IPv4HomeAddressRequest,
    MobileNodeIdentifier,
    MobilityOption,
    SeedIPv4HomeAddress,
)

Key = tuple[IPv6Address, int]  # (old DMPA, BRI sequence number)


class RevocationCounter(Names):
    """What the revocations count (``core`` group, DLMAP)."""

    BRA_MISMATCHED = "bra.mismatched"
    BRA_UNMATCHED = "bra.unmatched"
    BRI_BACKOFF = "bri.backoff"
    BRI_CANCELLED = "bri.cancelled"
    BRI_RETRANSMITTED = "bri.retransmitted"
    BRI_SENT = "bri.sent"
    BRI_UNANSWERED = "bri.unanswered"


@dataclass(slots=True)
class Revocation:
    """A BRI in flight: fast retries left, the next interval, and when it is given up."""

    nai: str
    peer: IPv6Address
    message: BindingRevocationIndication
    retries_left: int
    #: Monotonic time after which it is given up (the old registration's lifetime is over).
    until: float
    #: The wait before the next retransmission once the fast retries ran out.
    interval: float = 0.0


def trigger(old_access: int | None, new_access: int | None) -> RevocationTrigger:
    """RFC 5846 6.1.1: the kind of inter-MAG handover the two Access Technology Types say."""
    if old_access is None or new_access is None:
        return RevocationTrigger.INTER_MAG_HANDOVER_UNKNOWN
    if old_access == new_access:
        return RevocationTrigger.INTER_MAG_HANDOVER_SAME_ACCESS_TYPE
    return RevocationTrigger.INTER_MAG_HANDOVER_DIFFERENT_ACCESS_TYPE


def bri_message(
    dialect: Dialect,
    sequence: int,
    reason: int,
    nai: str,
    hoa: IPv4Address | None,
    ms_sequence: int,
    prefix_length: int,
    whole: bool = False,
) -> BindingRevocationIndication:
    """The BRI of rule 1, in ``dialect``. ``whole``: the binding has an IPv6 home network
    prefix too (or only), so V ("IPv4 HoA binding only", RFC 5846 6.1) stays clear."""
    options: list[MobilityOption] = [MobileNodeIdentifier.from_nai(nai)]
    if dialect.name == "draft":
        # Seed figure 7: "The IPv4 HoA option should be included in this revocation message".
        flags = BRFlag.P if whole or hoa is None else BRFlag.P | BRFlag.V
        if hoa is not None:
            carrier = dialect.seed_option_type or OptionType.EXPERIMENTAL
            options.append(SeedIPv4HomeAddress(ms_sequence, hoa, carrier))
    else:
        flags = BRFlag.P  # V clear: the whole (IPv4-only) mobility session goes
        if hoa is not None:
            options.append(IPv4HomeAddressRequest(hoa, prefix_length))
    return BindingRevocationIndication(reason, sequence, int(flags), tuple(options))


def mismatch(bri: BindingRevocationIndication, bra: BindingRevocationAck, dialect: Dialect) -> str:
    """Why ``bra`` does not acknowledge ``bri`` (rule 3); empty when it does."""
    strict = dialect.name == "draft"
    sent_id, got_id = bri.find(MobileNodeIdentifier), bra.find(MobileNodeIdentifier)
    if got_id is None:
        if strict:
            return "no MN-ID"
    elif sent_id is None or got_id.identifier != sent_id.identifier:
        return "another MN-ID"
    if strict:
        sent_seed, got_seed = bri.find(SeedIPv4HomeAddress), bra.find(SeedIPv4HomeAddress)
        if sent_seed is None:
            return ""
        if got_seed is None:
            return "no IPv4 HoA option"
        if (got_seed.sequence, got_seed.address) != (sent_seed.sequence, sent_seed.address):
            return "another IPv4 HoA option"
        return ""
    sent_hoa, got_hoa = bri.find(IPv4HomeAddressRequest), bra.find(IPv4HomeAddressRequest)
    if got_hoa is not None and (sent_hoa is None or got_hoa.address != sent_hoa.address):
        return "another IPv4 home address"
    return ""


class Revoker:
    """The revocations in flight (see the module docstring); ``pending`` by (peer, sequence)."""

    def __init__(
        self,
        counters: Counters,
        *,
        interval: float = BRI_INTERVAL,
        retries: int = BRI_RETRIES,
        max_interval: float = BRI_MAX_INTERVAL,
    ) -> None:
        self.counters = counters
        self.interval, self.retries = interval, retries
        self.max_interval = max(max_interval, interval)
        self.pending: dict[Key, Revocation] = {}
        self.sequence = 0  # the last BRI sequence number used, persisted
        self._by_target: dict[tuple[IPv6Address, str], Key] = {}
        self._timers: TimerHeap[Key] = TimerHeap()

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def revoke(
        self,
        peer: IPv6Address,
        dialect: Dialect,
        nai: str,
        hoa: IPv4Address | None,
        ms_sequence: int,
        *,
        reason: int,
        prefix_length: int,
        whole: bool = False,
        until: float,
        now: float,
        wall: float,
    ) -> tuple[Key, list[Action]]:
        """Revoke ``nai``'s registration at ``peer`` (rules 1, 2, 4); its key and the actions."""
        actions = self.cancel(peer, nai)
        self.sequence = seq_next(self.sequence)
        bri = bri_message(
            dialect, self.sequence, reason, nai, hoa, ms_sequence, prefix_length, whole
        )
        self.counters[RevocationCounter.BRI_SENT] += 1
        actions.append(
            Persist("meta", "bri_sequence", {"key": "bri_sequence", "value": self.sequence})
        )
        revocation = Revocation(nai, peer, bri, self.retries, until)
        return (peer, self.sequence), actions + self._start(revocation, now, wall)

    def _start(self, revocation: Revocation, now: float, wall: float) -> list[Action]:
        key = (revocation.peer, revocation.message.sequence)
        self.pending[key] = revocation
        self._by_target[(revocation.peer, revocation.nai)] = key
        self._timers.schedule(key, now + self.interval)
        return [
            Persist("revocation", revocation_key(key), self._record(revocation, now, wall)),
            SendMH(revocation.peer, revocation.message),
        ]

    def cancel(self, peer: IPv6Address, nai: str) -> list[Action]:
        """Rule 4: forget the revocation of ``nai`` toward ``peer``, if one is in flight."""
        key = self._by_target.get((peer, nai))
        if key is None:
            return []
        self.counters[RevocationCounter.BRI_CANCELLED] += 1
        self._end(key)
        return [Persist("revocation", revocation_key(key), None)]

    def _end(self, key: Key) -> Revocation | None:
        revocation = self.pending.pop(key, None)
        self._timers.cancel(key)
        if revocation is not None and self._by_target.get((revocation.peer, revocation.nai)) == key:
            del self._by_target[(revocation.peer, revocation.nai)]
        return revocation

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for key in self._timers.pop_due(now):
            revocation = self.pending.get(key)
            if revocation is not None:
                actions += self._retransmit(key, revocation, now)
        return actions

    def _retransmit(self, key: Key, revocation: Revocation, now: float) -> list[Action]:
        if revocation.retries_left <= 0 and now >= revocation.until:
            self._end(key)
            self.counters[RevocationCounter.BRI_UNANSWERED] += 1
            return [
                Persist("revocation", revocation_key(key), None),
                event("revocation_unanswered", nai=revocation.nai, peer=revocation.peer),
            ]
        revocation.retries_left = max(revocation.retries_left - 1, 0)
        if revocation.retries_left > 0:
            wait = self.interval
        else:
            if revocation.interval == 0.0:  # the fast retries ran out: the slower pace begins
                self.counters[RevocationCounter.BRI_BACKOFF] += 1
                revocation.interval = self.interval
            revocation.interval = min(revocation.interval * 2, self.max_interval)
            wait = min(revocation.interval, max(revocation.until - now, 0.0))
        self._timers.schedule(key, now + wait)
        self.counters[RevocationCounter.BRI_RETRANSMITTED] += 1
        return [SendMH(revocation.peer, revocation.message)]

    def acknowledge(
        self, bra: BindingRevocationAck, src: IPv6Address, dialect: Dialect
    ) -> tuple[Revocation | None, list[Action]]:
        """Rule 3: the revocation ``bra`` ends, or None (and why, as an event)."""
        key = (src, bra.sequence)
        revocation = self.pending.get(key)
        if revocation is None:
            self.counters[RevocationCounter.BRA_UNMATCHED] += 1
            return None, [event("unmatched_bra", peer=src, sequence=bra.sequence)]
        why = mismatch(revocation.message, bra, dialect)
        if why:
            self.counters[RevocationCounter.BRA_MISMATCHED] += 1
            return None, [event("mismatched_bra", peer=src, nai=revocation.nai, why=why)]
        self._end(key)
        return revocation, [Persist("revocation", revocation_key(key), None)]

    # --- persistence ----------------------------------------------------------------------

    def _record(self, revocation: Revocation, now: float, wall: float) -> dict[str, object]:
        """The row that sends the BRI again after a restart (rule 5)."""
        bri = revocation.message
        seed = bri.find(SeedIPv4HomeAddress)
        request = bri.find(IPv4HomeAddressRequest)
        hoa = seed.address if seed is not None else request.address if request else None
        return {
            "nai": revocation.nai,
            "peer": text(revocation.peer),
            "sequence": bri.sequence,
            "trigger": bri.trigger,
            "flags": bri.flags,
            "hoa": text(hoa) if hoa is not None else None,
            "option_sequence": seed.sequence if seed is not None else None,
            "prefix_length": request.prefix_length if request is not None else 0,
            "until_wall": to_wall(revocation.until, now, wall),
        }

    def restore(
        self,
        rows: Iterable[Mapping[str, Any]],
        dialects: Mapping[IPv6Address, Dialect],
        default_until: float,
        now: float,
        wall: float,
    ) -> list[Action]:
        """Send every saved BRI again, with fresh retries; a row from no configured peer goes."""
        actions: list[Action] = []
        for row in rows:
            peer = IPv6Address(str(row["peer"]))
            dialect = dialects.get(peer)
            key = (peer, int(row["sequence"]))
            if dialect is None:
                actions.append(Persist("revocation", revocation_key(key), None))
                continue
            hoa = IPv4Address(str(row["hoa"])) if row.get("hoa") else None
            bri = bri_message(
                dialect,
                key[1],
                int(row["trigger"]),
                str(row["nai"]),
                hoa,
                int(row.get("option_sequence") or 0),
                int(row.get("prefix_length") or 0),
                whole=not int(row.get("flags") or BRFlag.V) & BRFlag.V,
            )
            saved = row.get("until_wall")
            until = default_until if saved is None else from_wall(float(saved), now, wall)
            revocation = Revocation(str(row["nai"]), peer, bri, self.retries, until)
            actions += self._start(revocation, now, wall)
        return actions


def revocation_key(key: Key) -> str:
    """The row key of the revocation of (peer, BRI sequence number)."""
    return f"{text(key[0])}/{key[1]}"
