"""Carrying out the cores' actions, one loop turn at a time, the timer that wakes a core, and
the dispatch boundary: the machinery of the node runtime (:mod:`router.app.runtime`).

Actions are queued as events produce them and carried out once per loop turn
(``loop.call_soon``): first every :class:`Persist` of the turn in one SQLite transaction, then
everything else in order. So writes are grouped per loop turn and a binding is on disk before
the PBA that announces it leaves (the Persist-before-SendMH contract).

When the state directory cannot take a write (disk full, read-only), the node keeps working
from memory: the error is logged (rate-limited) and counted (``store.write_error``), the rows
wait in the store's backlog, and the write is retried after 0.5 s, doubling up to 30 s
(``store.retry``); until it succeeds new rows only join the backlog. ``store.recovered`` counts
the returns to normal; a stop tries the backlog once more (``store.lost``: rows it could not
write). Replies are not held back meanwhile: service goes on with the state the
node has, and what is on disk stays a consistent older state (each write is one transaction).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from router.adapters.store import Store, StoreRecordError, StoreWriteError
from router.adapters.store_pg import PgStore, StoreFenced
from router.app.logs import kv
from router.core.actions import Bind, BindPrefix, Event, Persist, Unbind, UnbindPrefix
from router.core.common import RateLimiter
from router.core.counters import Counters, Family, Names

log = logging.getLogger("netlmm")

#: Events an operator should look at (a refusal, a conflict, a peer that does not answer) are
#: logged as warnings; the others (registrations, handovers, leases) as info.
WARNING_EVENTS = dict.fromkeys(
    (
        "aaa_reject",
        "arp_conflict",
        "binding_error_sent",
        "dhcp_no_address",
        "dhcp_relay_conflict",
        "heartbeat_unanswered",
        "invalid_pba",
        "lease_conflict",
        "mismatched_bra",
        "pba_without_address",
        "pbu_rejected",
        "pbu_timeout",
        "peer_restarted",
        "peer_unreachable",
        "registration_refused",
        "restore_conflict",
        "revocation_unanswered",
        "unexpected_message",
        "unmatched_bra",
        "unmatched_pba",
    ),
    logging.WARNING,
)

#: Retry delays after a failed state write: the first, and the cap it doubles up to.
STORE_RETRY_FIRST = 0.5
STORE_RETRY_MAX = 30.0
#: A store on the loop: failed commits retried this many times (30 s apart at most) before the
#: held actions are given up; and at most this many actions held while writes fail.
STORE_RETRY_ROUNDS = 10_000
#: A database over the network comes back on its own: retried at least every 2 s.
STORE_RETRY_MAX_NETWORK = 2.0
HELD_MAX = 100_000


class RunnerCounter(Names):
    """What the runner and the boundary count (the node's registry: ``node`` group)."""

    #: Exceptions caught at the dispatch boundary (a bug of ours, never the peer's).
    INTERNAL_ERROR = "internal_error"
    LOG_SUPPRESSED = "log.suppressed"  # event log lines left out (rate limit)
    ACTION_UNHANDLED = "action.unhandled"
    STORE_ROWS = "store.rows"
    STORE_COMMITS = "store.commits"
    STORE_WRITE_ERROR = "store.write_error"
    STORE_RETRY = "store.retry"
    STORE_RECOVERED = "store.recovered"
    STORE_LOST = "store.lost"
    STORE_BACKLOG = "store.backlog"  # a size: rows waiting for a retry (a gauge)
    STORE_FENCED = "store.fenced"  # another process took the DLMAP identity (PostgreSQL)
    STORE_EPOCH = "store.epoch"  # a value: the DLMAP identity's epoch this process holds
    STORE_HELD_DROPPED = "store.held_dropped"  # actions dropped while PostgreSQL writes failed


INTERNAL_ERROR = RunnerCounter.INTERNAL_ERROR
#: Exceptions caught at the boundary, by where (``tunnel``, ``timer``, ``action.SendMH``, ...).
INTERNAL_ERROR_AT = Family("internal_error.{}", "exceptions caught at the boundary, by where")
#: Events carried out, by kind (the ones that are also log lines).
EVENT = Family("event.{}", "events, by kind")
#: Actions whose handler failed with an OSError, by action type.
ACTION_ERROR = Family("action.{}.error", "actions whose write failed, by type")


class Boundary:
    """The dispatch boundary: an exception escaping a packet, message, timer or action handler
    is caught here, counted (``internal_error`` and ``internal_error.<where>``) and logged with
    its traceback at most once a second per place; the input is dropped and the process goes on.

    Peer input must never raise (it is counted and dropped where it is parsed): anything caught
    here is a bug to fix, which is why the fuzz campaign asserts the counter stays 0.
    """

    def __init__(self, counters: Counters, clock: Callable[[], float] = time.monotonic):
        self.counters = counters
        self.clock = clock
        self._log_limit = RateLimiter(1.0)

    def caught(self, where: str) -> None:
        """Count and (rate-limited) log the exception being handled."""
        self.counters[INTERNAL_ERROR] += 1
        self.counters[INTERNAL_ERROR_AT(where)] += 1
        if self._log_limit.allow(where, self.clock()):
            log.exception("internal_error where=%s input=dropped process=running", where)

    def wrap(self, where: str, handler: Callable[..., object]) -> Callable[..., None]:
        """``handler`` with its exceptions caught at this boundary (for ``loop.add_reader``)."""

        def guarded(*args: Any) -> None:
            try:
                handler(*args)
            except Exception:
                self.caught(where)

        return guarded


class Clock:
    """Monotonic time for timers and wall time for timestamps and the database.

    The two readings are the ``time`` functions themselves (read per message: no Python frame
    around them); a test's clock overrides them with methods."""

    now: Callable[[], float] = staticmethod(time.monotonic)
    wall: Callable[[], float] = staticmethod(time.time)


class ActionRunner:
    """Queues actions and carries them out once per loop turn (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        store: Store | PgStore,
        handlers: dict[type, Callable[[Any], None]],
        counters: Counters,
    ) -> None:
        self.loop = loop
        self.store = store
        self.handlers = handlers
        self.counters = counters
        self._queue: list[object] = []
        self._scheduled = False
        self._after: list[Callable[[], None]] = []
        self._log_limit = RateLimiter(0.1)
        #: Called with each Event, Bind and Unbind carried out (the metrics' latency
        #: histograms): per signaling event, never per packet.
        self.observers: list[Callable[[object, float], None]] = []
        self._store_retry: asyncio.TimerHandle | None = None
        self._store_delay = STORE_RETRY_FIRST
        self.boundary = Boundary(counters)
        #: Access link interface names by index (a DMPA's), for the log lines.
        self.link_names: tuple[str, ...] = ()
        #: A store on the loop (PostgreSQL): the commit in flight, and what to call if fenced.
        self._commit: asyncio.Task[None] | None = None
        self.fenced = False
        self._stopped = False
        self.on_fenced: Callable[[], None] | None = None

    def submit(self, actions: Sequence[object]) -> None:
        """Queue actions: the cores' :data:`Action` types and any a service adds (dispatched
        by type to ``handlers``)."""
        if not actions or self.fenced or self._stopped:
            return
        self._queue.extend(actions)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    def after_flush(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after each flush (the owner re-arms its core's timer there)."""
        self._after.append(callback)

    def flush(self) -> None:
        self._scheduled = False
        if self._commit is not None:  # the commit's end flushes what came meanwhile
            return
        queue, self._queue = self._queue, []
        # One pass: the turn's rows, and the rest in order (no class derives from Persist).
        persists: list[Persist] = []
        rest: list[object] = []
        keep, carry = persists.append, rest.append
        for action in queue:
            if type(action) is Persist:
                keep(action)
            else:
                carry(action)
        if persists and isinstance(self.store, PgStore):
            self._commit = self.loop.create_task(self._commit_then(persists, rest))
            return
        if persists:
            self._write(persists)
        self._carry_out(rest)

    def _carry_out(self, queue: list[object]) -> None:
        """Carry out a turn's actions, its Persists taken out (:meth:`flush`), in order."""
        now = self.loop.time()
        observers, handlers = self.observers, self.handlers
        for action in queue:
            if observers and isinstance(action, Event | Bind | Unbind):
                for observe in observers:
                    observe(action, now)
            handler = handlers.get(type(action))
            if handler is not None:  # the common case first: a handler by exact type
                try:
                    handler(action)
                except OSError as exc:
                    self.counters[ACTION_ERROR(type(action).__name__)] += 1
                    log.warning("action_failed action=%s error=%s", type(action).__name__, exc)
                except Exception:
                    self.boundary.caught(f"action.{type(action).__name__}")
                continue
            if isinstance(action, Event):
                self.counters[EVENT(action.kind)] += 1
                # Peers can trigger events: at most ten lines a second of each kind.
                if self._log_limit.allow(action.kind, now):
                    fields = dict(action.fields)
                    link = fields.get("link")
                    if isinstance(link, int) and 0 <= link < len(self.link_names):
                        fields["link"] = self.link_names[link]  # the interface, not the index
                    log.log(
                        WARNING_EVENTS.get(action.kind, logging.INFO),
                        "%s %s",
                        action.kind,
                        kv(fields),
                        extra={"fields": fields},
                    )
                else:
                    self.counters[RunnerCounter.LOG_SUPPRESSED] += 1
                continue
            self.counters[RunnerCounter.ACTION_UNHANDLED] += 1
            log.warning("action_unhandled action=%s", type(action).__name__)
        for callback in self._after:
            try:
                callback()
            except Exception:
                self.boundary.caught("after_flush")

    # --- a store on the loop (PostgreSQL): the turn's actions wait for its commit -----------

    async def _commit_then(self, persists: list[Persist], queue: list[object]) -> None:
        """Write the turn's rows, then carry out its other actions (its PBAs) in order.

        While a commit is in flight, new actions queue up and go in the next one (a commit per
        round trip, however many turns it spans). A failed write is retried (0.5 s doubling
        to 30 s) with the actions held: with a shared database no PBA leaves before its
        binding is written. Fenced (another process holds the identity): the held actions
        are dropped, ``store.fenced`` counted and ``on_fenced`` called (the node stops).
        """
        self.counters[RunnerCounter.STORE_ROWS] += len(persists)
        try:
            try:
                self.store.defer(persists)
            except StoreRecordError:
                self.boundary.caught("store")
            if not await self._commit_until_done():
                return
            self._carry_out(queue)
        finally:
            self._commit = None
            if self._queue and not self.fenced and not self._stopped:
                self._scheduled = True
                self.loop.call_soon(self.flush)

    async def _commit_until_done(self) -> bool:
        delay = STORE_RETRY_FIRST
        store = self.store
        assert isinstance(store, PgStore)
        for _ in range(STORE_RETRY_ROUNDS):
            try:
                await store.commit()
            except StoreFenced as exc:
                self.fenced = True
                self.counters[RunnerCounter.STORE_FENCED] += 1
                log.error("store_fenced held_actions=dropped stopping=true error=%s", exc)
                self._queue.clear()
                if self.on_fenced is not None:
                    self.on_fenced()
                return False
            except StoreWriteError as exc:
                self.counters[RunnerCounter.STORE_WRITE_ERROR] += 1
                self.counters[RunnerCounter.STORE_BACKLOG] = self.store.backlog
                if self._log_limit.allow("store.write_error", self.loop.time()):
                    log.error("state_write_failed retry_in_s=%g error=%s", delay, exc)
                self._drop_held_replies()
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_NETWORK)
                self.counters[RunnerCounter.STORE_RETRY] += 1
                continue
            self.counters[RunnerCounter.STORE_COMMITS] += 1
            if delay != STORE_RETRY_FIRST:
                self.counters[RunnerCounter.STORE_RECOVERED] += 1
                self.counters[RunnerCounter.STORE_BACKLOG] = 0
                log.warning("state_writes_resumed")
            return True
        return False  # pragma: no cover - about STORE_RETRY_ROUNDS * 30 s of failures

    def _drop_held_replies(self) -> None:
        """While writes fail, bound what waits. Past :data:`HELD_MAX` queued actions: the rows
        join the store's backlog (the last of each key: bounded by the live state), written by
        the commit being retried; the datapath changes stay queued, the last of each address or
        prefix (that one is the state to reach: bounded by the pools), carried out after that
        commit; the rest is dropped and counted (``store.held_dropped``): PBAs and other
        messages (the peers retransmit, and a DMPA's repeated PBU is answered again from its
        binding), packets, event lines. Dropping a Bind instead would leave a committed binding
        without its route: the repeated PBU's answer does not bind again."""
        if len(self._queue) <= HELD_MAX:
            return
        persists: list[Persist] = []
        datapath: dict[tuple[str, object], object] = {}
        for action in self._queue:
            if isinstance(action, Persist):
                persists.append(action)
                continue
            if isinstance(action, Bind | Unbind):
                key: tuple[str, object] = ("hoa", action.hoa)
            elif isinstance(action, BindPrefix | UnbindPrefix):
                key = ("prefix", action.prefix)
            else:
                continue
            datapath.pop(key, None)  # the last one counts, in its place in the order
            datapath[key] = action
        self.counters[RunnerCounter.STORE_HELD_DROPPED] += (
            len(self._queue) - len(persists) - len(datapath)
        )
        self._queue = list(datapath.values())
        self.counters[RunnerCounter.STORE_ROWS] += len(persists)
        try:
            self.store.defer(persists)
        except StoreRecordError:  # a record of ours JSON cannot hold: that batch is dropped
            self.boundary.caught("store")

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` in all) for the commit in flight and those queued behind
        it. A database still unwritable then: the commit is given up, its rows and the actions
        held for it are lost with the process (``store.lost``, logged)."""
        deadline = self.loop.time() + timeout
        for _ in range(100):
            if self._commit is None and not self._queue:
                return
            if self._commit is None:
                self.flush()
            task = self._commit
            left = deadline - self.loop.time()
            if task is None:
                continue
            if left <= 0:
                self._queue.clear()
                self._stopped = True  # nothing more is queued or carried out: the node stops
                task.cancel()
                lost = self.store.backlog
                self.counters[RunnerCounter.STORE_LOST] += lost
                log.error("state rows lost at stop rows=%d (database unwritable)", lost)
                return
            await asyncio.wait({task}, timeout=left)

    @property
    def _sqlite(self) -> Store:
        """The store written in the loop turn itself (SQLite): the paths below are its."""
        if not isinstance(self.store, Store):  # pragma: no cover - our bug
            raise TypeError("a synchronous write on a store on the loop")
        return self.store

    def _write(self, persists: list[Persist]) -> None:
        self.counters[RunnerCounter.STORE_ROWS] += len(persists)
        try:
            self.store.defer(persists)
        except StoreRecordError:  # a record of ours JSON cannot hold: that batch is dropped
            self.boundary.caught("store")
        if self._store_retry is not None:  # failing: wait for the retry, do not hammer the disk
            self.counters[RunnerCounter.STORE_BACKLOG] = self.store.backlog
            return
        if not self.store.backlog:
            return
        try:
            self._sqlite.retry()
        except StoreWriteError as exc:
            self._write_failed(exc)
            return
        self.counters[RunnerCounter.STORE_COMMITS] += 1

    def _write_failed(self, exc: StoreWriteError) -> None:
        self.counters[RunnerCounter.STORE_WRITE_ERROR] += 1
        self.counters[RunnerCounter.STORE_BACKLOG] = self.store.backlog
        if self._log_limit.allow("store.write_error", self.loop.time()):
            log.error("state_write_failed retry_in_s=%g error=%s", self._store_delay, exc)
        self._store_retry = self.loop.call_later(self._store_delay, self._retry_store)
        self._store_delay = min(self._store_delay * 2, STORE_RETRY_MAX)

    def _retry_store(self) -> None:
        self._store_retry = None
        self.counters[RunnerCounter.STORE_RETRY] += 1
        try:
            rows = self._sqlite.retry()
        except StoreWriteError as exc:
            self._write_failed(exc)
            return
        self.counters[RunnerCounter.STORE_COMMITS] += 1
        self.counters[RunnerCounter.STORE_RECOVERED] += 1
        self.counters[RunnerCounter.STORE_BACKLOG] = 0
        self._store_delay = STORE_RETRY_FIRST
        log.warning("state_writes_resumed rows=%d", rows)

    def close(self) -> None:
        """At stop, after the last flush: stop retrying and try the backlog once more now (the
        disk may be back before the retry was due); what still cannot be written is lost with
        the store, counted (``store.lost``) and logged."""
        if self._store_retry is None:
            return
        self._store_retry.cancel()
        self._store_retry = None
        self.counters[RunnerCounter.STORE_RETRY] += 1
        try:
            rows = self._sqlite.retry()
        except StoreWriteError as exc:
            self.counters[RunnerCounter.STORE_LOST] += self.store.backlog
            log.error("state_rows_lost rows=%d error=%s", self.store.backlog, exc)
            return
        self.counters[RunnerCounter.STORE_COMMITS] += 1
        self.counters[RunnerCounter.STORE_RECOVERED] += 1
        self.counters[RunnerCounter.STORE_BACKLOG] = 0
        log.warning("state_writes_resumed rows=%d", rows)


class CoreTimer:
    """One ``loop.call_later`` for a core's next deadline, re-armed after every change.

    ``get_timer`` says when, ``fire(now, wall)`` returns the actions due (a core's
    ``handle_timer``, or a service's wrapped to that shape).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        get_timer: Callable[[], float | None],
        fire: Callable[[float, float], Sequence[object]],
        submit: Callable[[Sequence[object]], None],
        boundary: Boundary | None = None,
    ) -> None:
        self.loop, self.clock, self.submit = loop, clock, submit
        self.get_timer, self.fire = get_timer, fire
        self.boundary = boundary
        self._handle: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def rearm(self) -> None:
        deadline = self.get_timer()
        if deadline == self._at and self._handle is not None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = deadline
        if deadline is None:
            return
        delay = max(0.0, deadline - self.clock.now())
        self._handle = self.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._at = None
        try:
            self.submit(self.fire(self.clock.now(), self.clock.wall()))
        except Exception:
            if self.boundary is None:
                raise
            self.boundary.caught("timer")
        self.rearm()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
