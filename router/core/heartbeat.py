"""Peer liveness and restart detection by Heartbeat messages (RFC 5847), for either role.

Sans-I/O and role-blind, like :class:`~router.core.timers.TimerHeap`: the DMPA and the DLMAP
each own one monitor for their configured peers and decide what a :class:`PeerChange` means.

Rules (RFC 5847 section 3):

1. A Heartbeat Request (R=0) with the next 32-bit sequence number goes to each peer at start
   (so a peer that is down is known within one interval, not ``missing_allowed`` of them),
   then every ``interval`` seconds; ``interval`` 0 turns the requests off (responses are
   always sent).
2. A request is answered at once with a Response (R=1) of the same sequence number carrying our
   Restart Counter option (section 5.2); the counter grows by one at every start of the node
   (kept in its database; without one it starts from the wall clock's seconds). A counter that
   could not be saved at start would be sent again by the next start (one more than the same
   stored one), hiding that restart: the wall clock's seconds are used instead.
3. A request still unanswered when the next one is due is a missed heartbeat; ``missing_allowed``
   missed in a row make the peer UNREACHABLE (RFC 5847 MISSING_HEARTBEATS_ALLOWED, default 3);
   the next matching response makes it REACHABLE again. A response whose sequence number is not
   the one outstanding is counted and ignored (a late or forged one).
4. The first Restart Counter seen from a peer is remembered; a different value later (in a
   matching or an unsolicited, U=1, response) means the peer restarted: RESTARTED.
5. The first request of a run of misses is an event (``heartbeat_unanswered``), so a peer that
   is down is in the log one interval after start, long before it is UNREACHABLE.
   ``last_heard`` is when a peer last sent us a request or an accepted response
   (``netlmm show peers``).
6. :meth:`HeartbeatMonitor.announce` sends a request to every peer at once, whatever the
   interval: a DLMAP that takes over an identity kept in a shared database (the new active of
   a pair) says so. A DMPA hearing a request from its DLMAP knows it is there and sends the
   PBUs that wait for its PBA again at once (:meth:`router.core.dmpa.DMPA.receive`), instead
   of at their backed-off retransmission time, which could fall up to one backoff step after
   the takeover.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv6Address

from router.core.actions import Action, SendMH, event
from router.core.counters import Counters, Names
from router.core.defaults import HEARTBEAT_OFF, MISSING_HEARTBEATS_ALLOWED
from router.core.timers import TimerHeap
from router.wire.constants import HeartbeatFlag
from router.wire.mh import Heartbeat
from router.wire.mh_options import RestartCounter

SEQUENCE_MODULO = 1 << 32
COUNTER_MODULO = 1 << 32


class HeartbeatCounter(Names):
    """RFC 5847 heartbeats, counted in the core's registry (``core`` group)."""

    MISSED = "heartbeat.missed"
    PEER_REACHABLE = "heartbeat.peer_reachable"
    PEER_RESTARTED = "heartbeat.peer_restarted"
    PEER_UNREACHABLE = "heartbeat.peer_unreachable"
    REQUEST_RECEIVED = "heartbeat.request.received"
    REQUEST_SENT = "heartbeat.request.sent"
    RESPONSE_RECEIVED = "heartbeat.response.received"
    RESPONSE_UNKNOWN_PEER = "heartbeat.response.unknown_peer"
    RESPONSE_UNMATCHED = "heartbeat.response.unmatched"
    RESTART_COUNTER_UNSAVED = "heartbeat.restart_counter_unsaved"


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    #: Seconds between requests to each peer (RFC 5847 HEARTBEAT_INTERVAL, 60 s); 0 = off.
    interval: float = HEARTBEAT_OFF
    #: Missed heartbeats in a row before a peer is unreachable (MISSING_HEARTBEATS_ALLOWED).
    missing_allowed: int = MISSING_HEARTBEATS_ALLOWED


class PeerChange(enum.Enum):
    RESTARTED = "peer_restarted"
    UNREACHABLE = "peer_unreachable"
    REACHABLE = "peer_reachable"


@dataclass(slots=True)
class PeerLiveness:
    sequence: int = 0
    outstanding: int | None = None
    missed: int = 0
    reachable: bool = True
    restart_counter: int | None = None
    #: When the peer last sent a request or an accepted response (the owner's clock).
    last_heard: float | None = None


class HeartbeatMonitor:
    def __init__(
        self, config: HeartbeatConfig, peers: Iterable[IPv6Address], counters: Counters
    ) -> None:
        self.config = config
        self.peers = {peer: PeerLiveness() for peer in peers}
        self.counters = counters
        #: Ours, sent in every response; the owner sets it from its store at start.
        self.restart_counter = 0
        self._timers: TimerHeap[IPv6Address] = TimerHeap()

    def start(self, now: float) -> None:
        """Schedule the first request to every peer, now (nothing when the interval is 0)."""
        if self.config.interval <= 0:
            return
        for peer in self.peers:
            self._timers.schedule(peer, now)

    def announce(self, now: float) -> list[Action]:
        """Rule 6: a request to every peer now, the interval's schedule going on from now.
        With interval 0 it is a one-off: its response is matched, and never counted missed."""
        actions: list[Action] = []
        for peer, state in self.peers.items():
            actions.append(self._request(peer, state))
            if self.config.interval > 0:
                self._timers.schedule(peer, now + self.config.interval)
        return actions

    def next_restart_counter(self, stored: int | None, wall: float) -> int:
        """Our counter for this run: one more than the stored one. With none stored (a first
        start, or a database lost), the wall clock's seconds: a peer that knew us before sees
        a different value, so even a restart that lost everything is detected."""
        if stored is None:
            self.restart_counter = int(wall) % COUNTER_MODULO
        else:
            self.restart_counter = (stored + 1) % COUNTER_MODULO
        return self.restart_counter

    def keep_restart_counter(self, stored: int) -> int:
        """Our counter for this run is the stored one: the state was not lost (a database
        shared by an active/standby pair), so no peer must see us as restarted."""
        self.restart_counter = stored % COUNTER_MODULO
        return self.restart_counter

    def unsaved(self, wall: float) -> int:
        """Our counter did not reach the database at start (state writes failing, rule 2):
        switch to the wall clock's seconds, a value the next start does not pick again."""
        self.counters[HeartbeatCounter.RESTART_COUNTER_UNSAVED] += 1
        self.restart_counter = int(wall) % COUNTER_MODULO
        return self.restart_counter

    def get_timer(self) -> float | None:
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> tuple[list[Action], list[tuple[IPv6Address, PeerChange]]]:
        actions: list[Action] = []
        changes: list[tuple[IPv6Address, PeerChange]] = []
        for peer in self._timers.pop_due(now):
            state = self.peers[peer]
            if state.outstanding is not None:
                state.missed += 1
                self.counters[HeartbeatCounter.MISSED] += 1
                if state.missed == 1 and state.reachable:
                    actions.append(
                        event("heartbeat_unanswered", peer=peer, waited_s=self.config.interval)
                    )
                if state.reachable and state.missed >= self.config.missing_allowed:
                    state.reachable = False
                    self.counters[HeartbeatCounter.PEER_UNREACHABLE] += 1
                    changes.append((peer, PeerChange.UNREACHABLE))
                    actions.append(event("peer_unreachable", peer=peer, missed=state.missed))
            actions.append(self._request(peer, state))
            self._timers.schedule(peer, now + self.config.interval)
        return actions, changes

    def _request(self, peer: IPv6Address, state: PeerLiveness) -> SendMH:
        """The next request to ``peer``, outstanding from now."""
        state.sequence = (state.sequence + 1) % SEQUENCE_MODULO
        state.outstanding = state.sequence
        self.counters[HeartbeatCounter.REQUEST_SENT] += 1
        return SendMH(peer, Heartbeat(state.sequence))

    def receive(
        self, message: Heartbeat, src: IPv6Address, now: float | None = None
    ) -> tuple[list[Action], list[tuple[IPv6Address, PeerChange]]]:
        if not message.flags & HeartbeatFlag.R:
            self.counters[HeartbeatCounter.REQUEST_RECEIVED] += 1
            asking = self.peers.get(src)
            if asking is not None and now is not None:
                asking.last_heard = now
            reply = Heartbeat(
                message.sequence, HeartbeatFlag.R, (RestartCounter(self.restart_counter),)
            )
            return [SendMH(src, reply)], []
        state = self.peers.get(src)
        if state is None:
            self.counters[HeartbeatCounter.RESPONSE_UNKNOWN_PEER] += 1
            return [], []
        unsolicited = bool(message.flags & HeartbeatFlag.U)
        if not unsolicited:
            if state.outstanding is None or message.sequence != state.outstanding:
                self.counters[HeartbeatCounter.RESPONSE_UNMATCHED] += 1
                return [], []
            state.outstanding = None
            state.missed = 0
        self.counters[HeartbeatCounter.RESPONSE_RECEIVED] += 1
        if now is not None:
            state.last_heard = now
        actions: list[Action] = []
        changes: list[tuple[IPv6Address, PeerChange]] = []
        if not unsolicited and not state.reachable:
            state.reachable = True
            self.counters[HeartbeatCounter.PEER_REACHABLE] += 1
            changes.append((src, PeerChange.REACHABLE))
            actions.append(event("peer_reachable", peer=src))
        option = message.find(RestartCounter)
        if option is not None:
            known, state.restart_counter = state.restart_counter, option.counter
            if known is not None and known != option.counter:
                self.counters[HeartbeatCounter.PEER_RESTARTED] += 1
                changes.append((src, PeerChange.RESTARTED))
                actions.append(event("peer_restarted", peer=src, restart_counter=option.counter))
        return actions, changes
