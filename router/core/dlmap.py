"""The DLMAP (LMA role): binding cache, home-address checks, sequence rules, revocation.

Sans-I/O: :meth:`DLMAP.receive` takes a decoded message, its source, the monotonic ``now`` and the
wall-clock ``wall``; :meth:`DLMAP.handle_timer` takes the times; both return actions. Nothing here
touches a socket or reads a clock.

Rules, in the order a PBU meets them (each rejection is a PBA with the status named):

1. The source must be a configured DMPA (else 154), the P flag set (else 152), an NAI present
   (else 160).
2. A retransmission (same DMPA, same BU sequence number as the last PBU accepted for that NAI)
   gets the same PBA again.
3. ``draft`` dialect (seed section 6): the BU sequence number must be after the DMPA's last
   accepted one, modulo 2^16 (else 135); V must be set and the seed's IPv4 HoA option present
   (else 129); V=0 needs a prefix pool (else 129) and an HNP option (else 158). ``rfc5844``
   dialect (RFC 5213/5844): Handoff Indicator (161), Access Technology Type (162), an IPv4 HoA
   Request or an HNP option (158; an HNP without a prefix pool: 172), Timestamp within the
   validity window for a new binding (156) and not below the last accepted one (157).
4. Lifetime 0 is a de-registration. From a DMPA that no longer serves the NAI it is answered but
   leaves the binding alone: the old DMPA's detach must not undo a handover.
5. ``draft``: the option's per-MS sequence number is accepted if 0 or at least the binding's
   (else 129); the PBA carries max(binding, PBU) + 1 and the binding keeps that value, so a
   stale refresh from the old DMPA after a handover is refused.
6. Home address: 0.0.0.0 allocates (else 142, or 130 + reply 132); a unicast address must be
   the one allocated to that NAI (else 143, or 171 + reply 130/131).
7. A PBU from another DMPA than the binding's is a handover: the binding moves, the old DMPA gets
   a Binding Revocation Indication (retransmitted until acknowledged, bounded), and the new DMPA's
   PBA waits for the acknowledgement at most ``revocation_budget`` seconds (seed figure 7).

8. IPv6 home network prefix: :func:`router.core.prefix_pool.home_prefix` (RFC 5213 5.3.1).

V=1 never creates an IPv6 binding (seed 3.1.1; an HNP option is ignored). V=0 ("could register
the dual-stack MS") with the seed option and an HNP makes one binding with both; with only an
HNP it is plain RFC 5213 (``rfc5844``: the same with options 36 and 22). A handover, a
revocation, a de-registration and an expiry move or remove both. Not followed from
the seed: the type 2 routing header in the PBA (seed section 6); standard PMIPv6 replies carry
none and a Linux kernel without Mobile IPv6 drops it (wire-reference 3.2).

Heartbeats (RFC 5847, :mod:`router.core.heartbeat`) are answered with our Restart Counter, so a
DMPA sees that we restarted and registers its MSs again; with ``heartbeat.interval`` set we also
probe the DMPAs. A DMPA's restart only needs reporting here: it re-registers its visitors from
its own database, and those PBUs refresh or move the bindings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

from router.core.actions import (
    Action,
    Bind,
    BindPrefix,
    Persist,
    SendMH,
    Unbind,
    UnbindPrefix,
    event,
)
from router.core.binding_cache import (
    BindingCacheEntry,
    DLMAPConfig,
    DLMAPCounter,
    PendingReply,
)
from router.core.common import (
    BRA_STATUS,
    PBA_STATUS,
    SignalingCounter,
    Unhandled,
    earliest,
    from_wall,
    to_wall,
)
from router.core.counters import Counters
from router.core.heartbeat import HeartbeatMonitor
from router.core.pbu import (
    Fingerprint,
    PBURequest,
    Reject,
    as_fingerprint,
    fingerprint_of,
    parse,
)
from router.core.pool import HoAPool, usable_unicast
from router.core.prefix_pool import PrefixPool, home_prefix, prefix_options
from router.core.records import text
from router.core.revocation import Key, Revocation, Revoker, trigger
from router.core.sequence import seq_after, seq_at_least, seq_max, seq_next
from router.core.timers import TimerHeap
from router.wire.constants import (
    LIFETIME_UNIT_SECONDS,
    BUFlag,
    HandoffIndicator,
    HoAReplyStatus,
    RevocationTrigger,
    Status,
)
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingUpdate,
    Heartbeat,
    MobilityMessage,
)
from router.wire.mh_options import (
    IPv4DefaultRouterAddress,
    IPv4HomeAddressReply,
    MobilityOption,
    SeedIPv4HomeAddress,
    Timestamp,
)

__all__ = ["DLMAP", "BindingCacheEntry", "DLMAPConfig", "DLMAPCounter", "PendingReply"]

UNSPECIFIED = IPv4Address("0.0.0.0")
_P_FLAG = int(BUFlag.P)
_NOT_CHANGED = int(HandoffIndicator.HANDOFF_STATE_NOT_CHANGED)


class DLMAP:
    def __init__(
        self, config: DLMAPConfig, pool: HoAPool, prefixes: PrefixPool | None = None
    ) -> None:
        self.config = config
        self.pool = pool
        #: The IPv6 home network prefixes; None: no IPv6 service (an HNP option gets 172).
        self.prefixes = prefixes
        self.bindings: dict[str, BindingCacheEntry] = {}
        self.by_hoa: dict[IPv4Address, str] = {}
        #: Last accepted BU sequence number per DMPA (seed 3.1.3: the BU header's is per DMPA).
        self.peer_sequence: dict[IPv6Address, int] = {}
        #: The last PBU accepted from each DMPA (fingerprint, NAI): a duplicated
        #: de-registration is answered the same way although its binding is gone.
        self.peer_last: dict[IPv6Address, tuple[Fingerprint, str]] = {}
        self.pending: dict[str, PendingReply] = {}
        self.counters = Counters()
        self.revoker = Revoker(
            self.counters,
            interval=config.bri_interval,
            retries=config.bri_retries,
            max_interval=config.bri_max_interval,
        )
        self._timers: TimerHeap[tuple[Any, ...]] = TimerHeap()
        self._unhandled = Unhandled(self.counters)
        self._default_router = IPv4DefaultRouterAddress(config.gateway)
        self.heartbeat = HeartbeatMonitor(config.heartbeat, config.peers, self.counters)

    @property
    def revocations(self) -> dict[Key, Revocation]:
        """The revocations in flight, by (old DMPA, BRI sequence number)."""
        return self.revoker.pending

    # --- entry points ---------------------------------------------------------------------

    def receive(
        self, message: MobilityMessage, src: IPv6Address, now: float, wall: float
    ) -> list[Action]:
        if isinstance(message, BindingUpdate):
            return self._on_pbu(message, src, now, wall)
        if isinstance(message, BindingRevocationAck):
            return self._on_bra(message, src, now)
        if isinstance(message, Heartbeat):
            actions, _ = self.heartbeat.receive(message, src, now)  # changes: reported only
            return actions
        return self._unhandled.unexpected(message, src)

    def receive_unknown_type(self, mh_type: int, src: IPv6Address, now: float) -> list[Action]:
        return self._unhandled.unknown_type(mh_type, src, now)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` is next due: at or before the earliest deadline (a binding
        refreshed since its expiry was set wakes at that earlier time once, and finds nothing
        due)."""
        return earliest(
            self._timers.next_deadline(),
            self.revoker.next_deadline(),
            self.pool.next_expiry(),
            self.heartbeat.get_timer(),
        )

    def handle_timer(self, now: float, wall: float) -> list[Action]:
        actions, _ = self.heartbeat.handle_timer(now)
        for key in self._timers.pop_due(now):
            kind, *rest = key
            if kind == "expire":
                actions += self._expire(rest[0], now, wall)
            elif kind == "pba":
                actions += self._release_pending(rest[0], "revocation budget spent")
        actions += self.revoker.handle_timer(now)
        for lease in self.pool.expire(now):
            self.counters[DLMAPCounter.LEASE_EXPIRED] += 1
            actions.append(Persist("lease", lease.nai, None))
            actions.append(event("lease_expired", nai=lease.nai, hoa=lease.address))
        return actions

    # --- PBU ------------------------------------------------------------------------------

    def _on_pbu(
        self, message: BindingUpdate, src: IPv6Address, now: float, wall: float
    ) -> list[Action]:
        dialect = self.config.peers.get(src)
        request = PBURequest(message, src, dialect or self.config.default_dialect)
        try:
            if dialect is None:
                raise Reject(Status.MAG_NOT_AUTHORIZED_FOR_PROXY_REG, "unknown DMPA")
            return self._process(request, now, wall)
        except Reject as reject:
            return self._reject(request, reject, wall)

    def _process(self, req: PBURequest, now: float, wall: float) -> list[Action]:
        message, src = req.message, req.src
        if not message.flags & _P_FLAG:
            raise Reject(Status.PROXY_REG_NOT_ENABLED, "P flag not set")
        parse(req)
        if not req.nai:
            raise Reject(Status.MISSING_MN_IDENTIFIER_OPTION, "no NAI")
        bce = self.bindings.get(req.nai)
        fingerprint = fingerprint_of(req)
        if bce is not None and bce.last_bu == (src, fingerprint):
            # The same PBU again: the binding has not changed since, so neither has the answer.
            self.counters[DLMAPCounter.PBU_RETRANSMISSION] += 1
            return [SendMH(src, self._pba(req, Status.ACCEPTED, bce=bce))]
        if message.lifetime == 0 and self.peer_last.get(src) == (fingerprint, req.nai):
            self.counters[DLMAPCounter.PBU_RETRANSMISSION] += 1
            return [SendMH(src, self._pba(req, Status.ACCEPTED, lifetime=0))]
        if req.coa is not None and req.coa not in self.config.peers:
            raise Reject(Status.INVALID_CARE_OF_ADDRESS, "alternate CoA is not a configured DMPA")
        if req.dialect.name == "draft":
            self._check_draft(req)
        else:
            self._check_rfc5844(req, bce, wall)
        if message.lifetime == 0:
            return self._deregister(req, bce, fingerprint, now, wall)
        foreign = bce is not None and bce.dmpa != req.serving
        # Seed 6: the per-MS sequence number is accepted if 0 or >= the binding's, else 129. It
        # guards against the *old* DMPA: the serving DMPA may lag one PBA behind (a lost PBA).
        seed = req.seed
        if (
            foreign
            and bce is not None
            and seed is not None
            and seed.sequence
            and not seq_at_least(seed.sequence, bce.sequence)
        ):
            raise Reject(Status.ADMINISTRATIVELY_PROHIBITED, "stale per-MS sequence number")
        if foreign and req.handoff is not None and req.handoff.value == _NOT_CHANGED:
            # RFC 5213: HI=5 is a re-registration; from a DMPA that no longer serves the MS it is
            # a stale refresh, not a handover (the MS is elsewhere).
            raise Reject(Status.ADMINISTRATIVELY_PROHIBITED, "re-registration from a former DMPA")
        prefix = None
        if req.prefix is not None and self.prefixes is not None:
            prefix = home_prefix(self.prefixes, req, bce.prefix if bce else None, self.counters)
        try:
            hoa = self._home_address(req) if (req.seed or req.request) is not None else None
        except Reject:
            if prefix is not None and self.prefixes is not None and (bce is None or not bce.prefix):
                self.prefixes.release(req.nai)  # allocated for this PBU alone: given back
            raise
        return self._accept(req, bce, hoa, prefix, fingerprint, now, wall)

    def _check_draft(self, req: PBURequest) -> None:
        message, src = req.message, req.src
        last = self.peer_sequence.get(src)
        if last is not None and not seq_after(message.sequence, last):
            raise Reject(
                Status.SEQUENCE_NUMBER_OUT_OF_WINDOW,
                "BU sequence not after the last",
                sequence=last,
            )
        if req.dialect.bu_has_v(message.flags):
            req.prefix = None  # seed 3.1.1: V=1 never creates an IPv6 binding
            if req.seed is None:
                raise Reject(Status.ADMINISTRATIVELY_PROHIBITED, "no IPv4 home address option")
            return
        # V=0: a dual-stack MS (seed option and HNP) or plain RFC 5213 (HNP only) [Soliman].
        if self.prefixes is None:
            raise Reject(Status.ADMINISTRATIVELY_PROHIBITED, "V=0 without an IPv6 prefix pool")
        if req.prefix is None:
            raise Reject(Status.MISSING_HOME_NETWORK_PREFIX_OPTION, "V=0 without an HNP option")

    def _check_rfc5844(self, req: PBURequest, bce: BindingCacheEntry | None, wall: float) -> None:
        if req.handoff is None:
            raise Reject(Status.MISSING_HANDOFF_INDICATOR_OPTION, "no handoff indicator")
        if req.access is None:
            raise Reject(Status.MISSING_ACCESS_TECH_TYPE_OPTION, "no access technology type")
        if req.request is None and req.prefix is None:
            raise Reject(Status.MISSING_HOME_NETWORK_PREFIX_OPTION, "no IPv4 HoA request")
        if req.prefix is not None and self.prefixes is None:
            raise Reject(Status.NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE, "no IPv6 prefix pool")
        if req.timestamp is None:
            raise Reject(Status.TIMESTAMP_MISMATCH, "no timestamp", our_time=True)
        if bce is None or bce.timestamp is None:
            # RFC 5213 5.5: a new binding's timestamp must be close to our clock.
            if abs(req.timestamp.to_unix() - wall) > self.config.timestamp_window:
                raise Reject(Status.TIMESTAMP_MISMATCH, "timestamp outside window", our_time=True)
        elif req.timestamp.value < bce.timestamp:
            # RFC 5213 5.5: "lower than" the last accepted one. An equal one is not: two DMPAs'
            # clocks can give the same value at a handover (a DMPA's own stamps only rise).
            raise Reject(Status.TIMESTAMP_LOWER_THAN_PREV_ACCEPTED, "timestamp older")

    def _home_address(self, req: PBURequest) -> IPv4Address:
        assert req.nai is not None
        carrier = req.seed or req.request
        assert carrier is not None  # the dialect checks made sure one is there
        wanted = carrier.address
        if wanted == UNSPECIFIED:
            hoa = self.pool.allocate(req.nai)
            if hoa is None:
                self.counters[DLMAPCounter.POOL_EXHAUSTED] += 1
                raise Reject(
                    req.dialect.status_hoa_unavailable,
                    "IPv4 home address unavailable",
                    reply_status=HoAReplyStatus.DYNAMIC_IPV4_HOA_ASSIGNMENT_NOT_AVAILABLE,
                )
            return hoa
        if not usable_unicast(wanted):
            raise Reject(
                req.dialect.status_invalid_hoa,
                "not a unicast address",
                reply_status=HoAReplyStatus.INVALID_IPV4_ADDRESS,
            )
        if not self.pool.hold(req.nai, wanted):
            raise Reject(
                req.dialect.status_invalid_hoa,
                "not the address allocated to this NAI",
                reply_status=HoAReplyStatus.INCORRECT_IPV4_HOME_ADDRESS,
            )
        return wanted

    def _accept(
        self,
        req: PBURequest,
        bce: BindingCacheEntry | None,
        hoa: IPv4Address | None,
        prefix: IPv6Network | None,
        fingerprint: Fingerprint,
        now: float,
        wall: float,
    ) -> list[Action]:
        assert req.nai is not None
        message, src, nai = req.message, req.src, req.nai
        serving = req.serving
        actions: list[Action] = []
        granted = min(message.lifetime_seconds, self.config.max_lifetime)
        granted -= granted % LIFETIME_UNIT_SECONDS
        granted = max(granted, LIFETIME_UNIT_SECONDS)
        previous_dmpa = bce.dmpa if bce is not None else None
        previous_hoa = bce.hoa if bce is not None else None
        previous_prefix = bce.prefix if bce is not None else None
        # The old registration's Access Technology Type, before this PBU's replaces it.
        previous_access = bce.access_type if bce is not None else None
        previous_end = bce.expires if bce is not None else now
        offered = req.seed.sequence if req.seed is not None else 0
        # Seed 6: the PBA carries max(BCE, PBU) + 1 (serial order); a new binding has no BCE value.
        # 0 means "accept always", so the DLMAP never assigns it: after 65535 comes 1.
        assigned = seq_next(offered if bce is None else seq_max(bce.sequence, offered)) or 1
        if bce is None:
            bce = BindingCacheEntry(nai, hoa, serving, req.dialect.name, assigned, granted, 0.0)
            self.bindings[nai] = bce
            self.counters[DLMAPCounter.BINDING_CREATED] += 1
        bce.hoa, bce.dmpa, bce.dialect, bce.sequence = hoa, serving, req.dialect.name, assigned
        bce.prefix = prefix
        bce.lifetime, bce.expires = granted, now + granted
        bce.last_bu = (src, fingerprint)
        self.peer_last[src] = (fingerprint, nai)
        if req.timestamp is not None:
            bce.timestamp = req.timestamp.value
        if req.access is not None:
            bce.access_type = req.access.value
        if previous_hoa is not None and previous_hoa != hoa:
            self.by_hoa.pop(previous_hoa, None)
            actions.append(Unbind(previous_hoa))
            if hoa is None:
                self.pool.release(nai, now)  # the MS gave up IPv4: its lease runs out
        if previous_prefix is not None and previous_prefix != prefix:
            actions.append(UnbindPrefix(previous_prefix))
            if prefix is None and self.prefixes is not None:
                self.prefixes.release(nai)
        if hoa is not None:
            self.by_hoa[hoa] = nai
        self.peer_sequence[src] = message.sequence
        # A refresh moves the expiry later: the heap keeps the earlier deadline, and the wake at
        # it (_expire) sets the real one. A refresh costs no heap entry (and no stale entry to
        # pop later): the heap holds one entry a binding, not one a refresh.
        expiry = ("expire", nai)
        due = self._timers.deadline(expiry)
        if due is None or due > bce.expires:
            self._timers.schedule(expiry, bce.expires)
        reply = self._pba(req, Status.ACCEPTED, bce=bce)
        actions += self._persist_binding(bce, now, wall)
        actions.append(self._persist_peer(src))
        moved = previous_dmpa is not None and previous_dmpa != serving
        if hoa is not None and (previous_dmpa is None or moved or previous_hoa != hoa):
            actions.append(Bind(hoa, serving))
        if prefix is not None and (previous_dmpa is None or moved or previous_prefix != prefix):
            actions.append(BindPrefix(prefix, serving))
        # A revocation still going to the DMPA that serves the MS now would remove it there.
        actions += self.revoker.cancel(serving, nai)
        if moved:
            assert previous_dmpa is not None
            self.counters[DLMAPCounter.HANDOVER] += 1
            # A PBA still held for an earlier handover goes out now: its DMPA is owed an answer
            # (the revocation that follows tells it the MS has moved on again).
            actions += self._release_pending(nai, "superseded by another handover")
            old_dialect = self.config.peers.get(previous_dmpa, req.dialect)
            revocation, more = self.revoker.revoke(
                previous_dmpa,
                old_dialect,
                nai,
                hoa,
                bce.sequence,
                reason=trigger(previous_access, req.access.value if req.access else None),
                whole=prefix is not None,
                prefix_length=self.config.prefix_length,
                until=max(previous_end, now),
                now=now,
                wall=wall,
            )
            actions += more
            actions.append(event("handover", nai=nai, hoa=hoa, old=previous_dmpa, new=serving))
            if self.config.revocation_budget > 0:
                self.pending[nai] = PendingReply(src, reply, revocation)
                self._timers.schedule(("pba", nai), now + self.config.revocation_budget)
                return actions
        self.counters[SignalingCounter.PBA_ACCEPTED] += 1
        actions.append(SendMH(src, reply))
        if previous_dmpa is None:
            actions.append(event("registered", nai=nai, hoa=hoa, prefix=prefix, dmpa=serving))
        return actions

    def _deregister(
        self,
        req: PBURequest,
        bce: BindingCacheEntry | None,
        fingerprint: Fingerprint,
        now: float,
        wall: float,
    ) -> list[Action]:
        assert req.nai is not None
        src = req.src
        if bce is None or bce.dmpa != req.serving:
            # Answered, but a DMPA that no longer serves the NAI cannot undo a handover.
            self.counters[DLMAPCounter.DEREGISTRATION_IGNORED] += 1
            return [
                SendMH(src, self._pba(req, Status.ACCEPTED, lifetime=0)),
                event("stale_deregistration", nai=req.nai, dmpa=src),
            ]
        self.peer_sequence[src] = req.message.sequence
        self.peer_last[src] = (fingerprint, req.nai)
        reply = self._pba(req, Status.ACCEPTED, lifetime=0)  # echoes the PBU, like a repeat's
        # A PBA still held for this DMPA's handover goes first: its answers leave in order.
        actions = self._release_pending(req.nai, "deregistered")
        actions += self._remove(bce, now, wall, "deregistered")
        actions.append(self._persist_peer(src))
        actions.append(SendMH(src, reply))
        return actions

    def _reject(self, req: PBURequest, reject: Reject, wall: float) -> list[Action]:
        self.counters[PBA_STATUS(reject.status)] += 1
        reply = self._pba(
            req,
            reject.status,
            sequence=reject.sequence,
            reply_status=reject.reply_status,
            timestamp=Timestamp.from_unix(wall) if reject.our_time else None,
        )
        return [
            SendMH(req.src, reply),
            event(
                "pbu_rejected",
                peer=req.src,
                nai=req.nai,
                status=reject.status,
                reason=reject.reason,
            ),
        ]

    def _pba(
        self,
        req: PBURequest,
        status: int,
        *,
        bce: BindingCacheEntry | None = None,
        lifetime: int | None = None,
        sequence: int | None = None,
        reply_status: int | None = None,
        timestamp: Timestamp | None = None,
    ) -> BindingAck:
        message, dialect = req.message, req.dialect
        options: list[MobilityOption] = []
        if req.mn_id is not None:
            options.append(req.mn_id)
        accepted = status < 128
        if dialect.name == "draft":
            if bce is not None and accepted and bce.hoa is not None:
                options.append(
                    SeedIPv4HomeAddress(bce.sequence, bce.hoa, dialect.seed_option_type or 18)
                )
            elif req.seed is not None:
                options.append(req.seed)
            options += prefix_options(req.prefix, bce.prefix if bce and accepted else None)
            flags = dialect.pba_flags(ipv4=dialect.bu_has_v(message.flags))
        else:
            options += [o for o in (req.handoff, req.access) if o is not None]
            stamp = timestamp or req.timestamp
            if stamp is not None:
                options.append(stamp)
            if req.request is not None:
                if accepted and bce is not None and bce.hoa is not None:
                    options.append(
                        IPv4HomeAddressReply(
                            HoAReplyStatus.SUCCESS, bce.hoa, self.config.prefix_length
                        )
                    )
                    options.append(self._default_router)
                elif accepted:  # a de-registration: nothing is assigned, nothing failed
                    options.append(
                        IPv4HomeAddressReply(
                            HoAReplyStatus.SUCCESS, req.request.address, req.request.prefix_length
                        )
                    )
                else:
                    options.append(
                        IPv4HomeAddressReply(
                            reply_status or HoAReplyStatus.FAILURE_REASON_UNSPECIFIED,
                            req.request.address,
                            req.request.prefix_length,
                        )
                    )
            options += prefix_options(req.prefix, bce.prefix if bce and accepted else None)
            flags = dialect.pba_flags(ipv4=False)
        if lifetime is None:
            lifetime = bce.lifetime // LIFETIME_UNIT_SECONDS if bce is not None and accepted else 0
        return BindingAck(
            status=status,
            flags=flags,
            sequence=message.sequence if sequence is None else sequence,
            lifetime=lifetime,
            options=tuple(options),
        )

    # --- revocation -----------------------------------------------------------------------

    def _on_bra(self, message: BindingRevocationAck, src: IPv6Address, now: float) -> list[Action]:
        dialect = self.config.peers.get(src, self.config.default_dialect)
        revocation, actions = self.revoker.acknowledge(message, src, dialect)
        if revocation is None:
            return actions
        self.counters[BRA_STATUS(message.status)] += 1
        actions.append(event("revoked", nai=revocation.nai, peer=src, status=message.status))
        pending = self.pending.get(revocation.nai)
        if pending is not None and pending.revocation == (src, message.sequence):
            actions += self._release_pending(revocation.nai, "revocation acknowledged")
        return actions

    def _release_pending(self, nai: str, why: str) -> list[Action]:
        pending = self.pending.pop(nai, None)
        self._timers.cancel(("pba", nai))
        if pending is None:
            return []
        self.counters[SignalingCounter.PBA_ACCEPTED] += 1
        return [SendMH(pending.dmpa, pending.message), event("pba_released", nai=nai, why=why)]

    # --- expiry and removal ---------------------------------------------------------------

    def clear(self, nai: str, now: float, wall: float) -> list[Action]:
        """The operator's ``netlmm clear binding``: the binding goes at once (route, lease,
        database) and its DMPA is told with a BRI (RFC 5846, trigger "administrative
        reason"), retried like a handover's, so the MS is de-registered there too."""
        bce = self.bindings.get(nai)
        if bce is None:
            return []
        self.counters[DLMAPCounter.BINDING_CLEARED] += 1
        # A PBA held for a handover never leaves (_remove drops it): the BRI tells that DMPA.
        actions: list[Action] = []
        dialect = self.config.peers.get(bce.dmpa)
        if dialect is not None:
            _, more = self.revoker.revoke(
                bce.dmpa,
                dialect,
                nai,
                bce.hoa,
                bce.sequence,
                reason=RevocationTrigger.ADMINISTRATIVE_REASON,
                prefix_length=self.config.prefix_length,
                whole=bce.prefix is not None,
                until=max(bce.expires, now),
                now=now,
                wall=wall,
            )
            actions += more
        return actions + self._remove(bce, now, wall, "cleared")

    def _expire(self, nai: str, now: float, wall: float) -> list[Action]:
        bce = self.bindings.get(nai)
        if bce is None:
            return []
        if bce.expires > now:  # refreshed since that deadline was set: wake at the real one
            self._timers.schedule(("expire", nai), bce.expires)
            return []
        self.counters[DLMAPCounter.BINDING_EXPIRED] += 1
        return self._remove(bce, now, wall, "expired")

    def _remove(self, bce: BindingCacheEntry, now: float, wall: float, why: str) -> list[Action]:
        del self.bindings[bce.nai]
        self._timers.cancel(("expire", bce.nai))
        # A PBA still held for a handover would announce a binding that is gone: dropped (its
        # DMPA retransmits the PBU and gets a fresh answer).
        self.pending.pop(bce.nai, None)
        self._timers.cancel(("pba", bce.nai))
        actions: list[Action] = [Persist("binding", bce.nai, None)]
        if bce.hoa is not None:
            self.by_hoa.pop(bce.hoa, None)
            self.pool.release(bce.nai, now)
            actions += self._persist_lease(bce.nai, now, wall)
            actions.append(Unbind(bce.hoa))
        if bce.prefix is not None:
            if self.prefixes is not None:
                self.prefixes.release(bce.nai)
            actions.append(UnbindPrefix(bce.prefix))
        actions.append(event(why, nai=bce.nai, hoa=bce.hoa, prefix=bce.prefix, dmpa=bce.dmpa))
        return actions

    # --- persistence ----------------------------------------------------------------------

    def _persist_binding(self, bce: BindingCacheEntry, now: float, wall: float) -> list[Action]:
        record: dict[str, object] = {
            "nai": bce.nai,
            "hoa": text(bce.hoa) if bce.hoa is not None else None,
            "dmpa": text(bce.dmpa),
            "dialect": bce.dialect,
            "sequence": bce.sequence,
            "lifetime": bce.lifetime,
            "expires_wall": to_wall(bce.expires, now, wall),
            "timestamp": bce.timestamp,
            "access_type": bce.access_type,
            "last_bu": [text(bce.last_bu[0]), list(bce.last_bu[1])] if bce.last_bu else None,
        }
        if bce.prefix is not None:  # additive: rows of IPv4-only bindings are unchanged
            record["prefix"] = str(bce.prefix)
        # No lease row: a binding holds its address, and restore() re-creates the held lease
        # from the binding row. Lease rows record only leases that run on without a binding.
        return [Persist("binding", bce.nai, record)]

    def _persist_lease(self, nai: str, now: float, wall: float) -> list[Action]:
        lease = self.pool.lease_of(nai)
        if lease is None:
            return [Persist("lease", nai, None)]
        expires = None if lease.expires is None else to_wall(lease.expires, now, wall)
        record: dict[str, object] = {
            "nai": nai,
            "hoa": text(lease.address),
            "expires_wall": expires,
        }
        return [Persist("lease", nai, record)]

    def _persist_peer(self, peer: IPv6Address) -> Persist:
        name = text(peer)
        last = self.peer_last.get(peer)
        record: dict[str, object] = {
            "peer": name,
            "sequence": self.peer_sequence[peer],
            "last": [list(last[0]), last[1]] if last else None,
        }
        return Persist("peer", name, record)

    def record_lease(
        self, nai: str, address: IPv4Address, expires: float, now: float, wall: float
    ) -> list[Action]:
        """A DHCP server (built-in or relayed to) gave ``nai`` this address until ``expires``:
        the seed 6 PBU check must then see it as the NAI's. Refused (event, counter) when
        another NAI holds the address."""
        if not self.pool.record(nai, address, expires):
            self.counters[DLMAPCounter.LEASE_CONFLICT] += 1
            return [event("lease_conflict", nai=nai, hoa=address, owner=self.pool.owner(address))]
        if nai in self.bindings:
            return []  # held by the binding; its row is the record
        return self._persist_lease(nai, now, wall)

    def restore(
        self, tables: Mapping[str, Iterable[Mapping[str, Any]]], now: float, wall: float
    ) -> list[Action]:
        """Reload the state written through :class:`Persist` actions; returns the fastpath
        binds, the restart counter to store and, for an identity that goes on, the heartbeat
        requests that say so to every DMPA.

        Leases come first (the pool must know who holds what), then bindings; a binding whose
        lifetime ended while we were down is removed (and its lease starts running).
        """
        actions: list[Action] = []
        for row in tables.get("lease", ()):
            expires = row["expires_wall"]
            self.pool.restore(
                str(row["nai"]),
                IPv4Address(str(row["hoa"])),
                None if expires is None else from_wall(float(expires), now, wall),
            )
        stored_counter: int | None = None
        for row in tables.get("meta", ()):
            if row["key"] == "bri_sequence":
                self.revoker.sequence = int(row["value"])
            elif row["key"] == "restart_counter":
                stored_counter = int(row["value"])
        if self.config.keep_restart_counter and stored_counter is not None:
            counter, kept = self.heartbeat.keep_restart_counter(stored_counter), True
        else:
            counter, kept = self.heartbeat.next_restart_counter(stored_counter, wall), False
        actions.append(
            Persist("meta", "restart_counter", {"key": "restart_counter", "value": counter})
        )
        if kept:
            # The identity goes on (a pair's new active, or a restart on the shared database):
            # said to every DMPA now, so the PBUs that waited for it are sent again at once
            # (heartbeat rule 6). The requests leave after the restart counter is stored.
            actions += self.heartbeat.announce(now)
        else:
            self.heartbeat.start(now)
        for row in tables.get("peer", ()):
            peer = IPv6Address(str(row["peer"]))
            self.peer_sequence[peer] = int(row["sequence"])
            if row.get("last"):
                fingerprint, nai = row["last"]
                self.peer_last[peer] = (as_fingerprint(fingerprint), str(nai))
        for row in tables.get("binding", ()):
            bce = BindingCacheEntry(
                nai=str(row["nai"]),
                hoa=IPv4Address(str(row["hoa"])) if row.get("hoa") else None,
                dmpa=IPv6Address(str(row["dmpa"])),
                dialect=str(row["dialect"]),
                sequence=int(row["sequence"]),
                lifetime=int(row["lifetime"]),
                expires=from_wall(float(row["expires_wall"]), now, wall),
                timestamp=row.get("timestamp"),
                access_type=row.get("access_type"),
            )
            if row.get("last_bu"):
                source, fingerprint = row["last_bu"]
                bce.last_bu = (IPv6Address(source), as_fingerprint(fingerprint))
            if row.get("prefix"):
                bce.prefix = IPv6Network(str(row["prefix"]))
                if self.prefixes is None or not self.prefixes.restore(bce.nai, bce.prefix):
                    # Pool gone or changed, or two rows claim one prefix: IPv4 stays, IPv6 goes.
                    self.counters[DLMAPCounter.RESTORE_CONFLICT] += 1
                    actions.append(event("restore_conflict", nai=bce.nai, prefix=bce.prefix))
                    bce.prefix = None
            if bce.hoa is None:  # IPv6 only: kept when its prefix is
                if bce.prefix is not None:
                    self._restore_binding(bce, actions, now, wall)
                else:
                    actions.append(Persist("binding", bce.nai, None))
                continue
            owner = self.pool.owner(bce.hoa)
            if owner is not None and owner != bce.nai:
                # Two rows claim one address: the binding wins (it is what the fastpath uses).
                self.counters[DLMAPCounter.RESTORE_CONFLICT] += 1
                actions.append(event("restore_conflict", nai=bce.nai, hoa=bce.hoa, other=owner))
                self.pool.forget(owner)
                actions.append(Persist("lease", owner, None))
            self.by_hoa[bce.hoa] = bce.nai
            self.pool.restore(bce.nai, bce.hoa, None)  # held while the binding lives
            self._restore_binding(bce, actions, now, wall)
        # Still unacknowledged when we stopped: tell the old DMPAs again, with fresh retries.
        until = now + self.config.max_lifetime
        rows = tables.get("revocation", ())
        actions += self.revoker.restore(rows, self.config.peers, until, now, wall)
        return actions

    def _restore_binding(
        self, bce: BindingCacheEntry, actions: list[Action], now: float, wall: float
    ) -> None:
        self.bindings[bce.nai] = bce
        if bce.expires <= now:
            actions += self._remove(bce, now, wall, "expired")
            return
        self._timers.schedule(("expire", bce.nai), bce.expires)
        if bce.hoa is not None:
            actions.append(Bind(bce.hoa, bce.dmpa))
        if bce.prefix is not None:
            actions.append(BindPrefix(bce.prefix, bce.dmpa))
