"""A signaling load generator: many simulated MSs behind simulated DMPAs, from raw PBUs.

:class:`LoadGenerator` plays two or more DMPAs, each with its own address in the lab's transport
network (listed as a peer in the DLMAP's config) and its own raw MH socket. Simulated MS ``i``
(NAI ``sim<i>@soak.example``) starts at ``i / rate`` seconds and lives ``life`` seconds:

* attach: a PBU from DMPA ``i mod k`` asking for an address (lifetime ``lifetime``);
* refresh: at 35% of its life, the same DMPA re-registers the address (before the lifetime
  runs out: ``life`` is at most the lifetime);
* handover: at 60%, the next DMPA registers it; the DLMAP revokes the old one with a BRI, which
  the old DMPA answers with a BRA;
* leave: at 100%, the new DMPA de-registers (lifetime 0) - except the last ``keep`` MSs, which
  stay registered, so the end state is not trivially empty.

A PBU without its PBA is sent again after ``retry`` seconds, at most ``retries`` times (then
the MS counts as failed and is forgotten). The generator's view - which NAI is bound to which
address at which DMPA - is what the DLMAP's binding cache must show at the end.

Sans-I/O inside (``due``/``fire``/``receive``), with :meth:`run` as the driver: a loop bounded
in time over ``select`` on the sockets. The draft dialect only (the lab's default).
"""

from __future__ import annotations

import heapq
import select
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from router.wire.constants import HeartbeatFlag
from router.wire.dialect import DRAFT
from router.wire.errors import DecodeError
from router.wire.mh import (
    BindingAck,
    BindingRevocationAck,
    BindingRevocationIndication,
    BindingUpdate,
    Heartbeat,
    MobilityMessage,
    decode_message,
)
from router.wire.mh_options import MobileNodeIdentifier, RestartCounter, SeedIPv4HomeAddress

ZERO = IPv4Address("0.0.0.0")
#: Phases of a simulated MS, as fractions of its life.
REFRESH_AT, HANDOVER_AT = 0.35, 0.6


def restart_counter(wall: float) -> int:
    """A simulated DMPA's RFC 5847 Restart Counter: from the wall clock at its start (as a node
    without a database does), the same for all of a run's answers."""
    return int(wall) % (1 << 32)


def answer(message: MobilityMessage, counter: int) -> bytes | None:
    """What a simulated DMPA sends back to its DLMAP's ``message``, if anything: a BRA for a
    Binding Revocation Indication, naming back its MN-ID and IPv4 HoA options (seed figure 7,
    step 4), and a Heartbeat Response (R=1, same sequence) carrying our Restart Counter
    ``counter`` for a Heartbeat Request (RFC 5847 sections 3 and 5.2). Shared by
    :class:`LoadGenerator` and :mod:`netlmm_lab.regload`."""
    if isinstance(message, BindingRevocationIndication):
        kinds = MobileNodeIdentifier | SeedIPv4HomeAddress
        named = tuple(o for o in message.options if isinstance(o, kinds))
        return BindingRevocationAck(0, message.sequence, message.flags, named).encode()
    if isinstance(message, Heartbeat) and not message.flags & HeartbeatFlag.R:
        reply = Heartbeat(message.sequence, HeartbeatFlag.R, (RestartCounter(counter),))
        return reply.encode()
    return None


@dataclass(slots=True)
class SimMS:
    index: int
    nai: str
    dmpa: int  # index of the DMPA it is (to be) registered at
    hoa: IPv4Address | None = None
    bound: bool = False  # a PBA accepted a registration and no de-registration since
    step: str = "wait"  # wait, attach, refresh, handover, leave, done, failed
    pending: BindingUpdate | None = None  # the PBU awaiting its PBA
    pending_from: int = 0
    sent_at: float = 0.0
    tries: int = 0


@dataclass
class Stats:
    sent: Counter[str] = field(default_factory=Counter)
    received: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2) if lat else None

        return {
            "sent": dict(self.sent),
            "received": dict(self.received),
            "pba_latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
        }


class LoadGenerator:
    def __init__(
        self,
        dlmap: IPv6Address,
        dmpas: list[IPv6Address],
        *,
        mss: int,
        rate: float,
        life: float,
        lifetime: int = 8,
        keep: int = 50,
        retry: float = 1.0,
        retries: int = 5,
    ) -> None:
        if len(dmpas) < 2:
            raise ValueError("a handover needs two simulated DMPAs")
        if not 4 <= lifetime <= 262140 or lifetime % 4 or life > lifetime:
            raise ValueError("lifetime: a multiple of 4 s, at least the MS's life")
        self.dlmap, self.dmpas = dlmap, dmpas
        self.mss, self.rate, self.life, self.lifetime = mss, rate, life, lifetime
        self.keep, self.retry, self.retries = keep, retry, retries
        self.ms = [SimMS(i, f"sim{i}@soak.example", i % len(dmpas)) for i in range(mss)]
        self.by_nai = {m.nai: m for m in self.ms}
        self.seq = [0] * len(dmpas)
        self.stats = Stats()
        self.start = 0.0
        self._timers: list[tuple[float, int, str]] = []  # (when, ms index, step)
        self._pending: set[int] = set()  # MSs with a PBU out
        self._stopping = False
        self.restart_counter = restart_counter(time.time())

    # --- the view ---------------------------------------------------------------------------

    def view(self) -> dict[str, tuple[str, str]]:
        """NAI -> (HoA, DMPA address) of every MS the generator holds registered."""
        return {
            m.nai: (str(m.hoa), str(self.dmpas[m.dmpa]))
            for m in self.ms
            if m.bound and m.hoa is not None
        }

    def outstanding(self) -> int:
        return len(self._pending)

    def progress(self) -> Counter[str]:
        return Counter(m.step for m in self.ms)

    # --- sans-I/O ---------------------------------------------------------------------------

    def begin(self, now: float) -> None:
        self.start = now
        for m in self.ms:
            heapq.heappush(self._timers, (now + m.index / self.rate, m.index, "attach"))

    def stop_new(self) -> None:
        """No new steps from now on: only retransmissions of PBUs already out."""
        self._stopping = True

    def due(self) -> float | None:
        times = [t[0] for t in self._timers[:1]]
        pend = [self.ms[i].sent_at + self.retry for i in self._pending]
        return min(times + pend) if times or pend else None

    def fire(self, now: float) -> list[tuple[int, BindingUpdate]]:
        """The PBUs due at ``now``: new steps, then retransmissions. (DMPA index, PBU)."""
        out: list[tuple[int, BindingUpdate]] = []
        while self._timers and self._timers[0][0] <= now and not self._stopping:
            _, index, step = heapq.heappop(self._timers)
            m = self.ms[index]
            if m.step in ("failed", "done") or m.pending is not None:
                if m.pending is not None:  # still waiting: try the step a bit later
                    heapq.heappush(self._timers, (now + 0.2, index, step))
                continue
            if step == "handover":
                m.dmpa = (m.dmpa + 1) % len(self.dmpas)
            lifetime = 0 if step == "leave" else self.lifetime
            out.append((m.dmpa, self._pbu(m, step, lifetime, now)))
        for index in sorted(self._pending):
            m = self.ms[index]
            if m.pending is not None and now - m.sent_at >= self.retry:
                if m.tries >= self.retries:
                    self.stats.sent["failed"] += 1
                    m.pending, m.step, m.bound = None, "failed", False
                    self._pending.discard(index)
                    continue
                m.tries += 1
                m.sent_at = now
                self.stats.sent["pbu.retransmit"] += 1
                out.append((m.pending_from, m.pending))
        return out

    def _pbu(self, m: SimMS, step: str, lifetime: int, now: float) -> BindingUpdate:
        self.seq[m.dmpa] = (self.seq[m.dmpa] + 1) % 65536
        options = (
            MobileNodeIdentifier.from_nai(m.nai),
            SeedIPv4HomeAddress(0, m.hoa if m.hoa is not None else ZERO),
        )
        pbu = BindingUpdate(self.seq[m.dmpa], DRAFT.pbu_flags(), lifetime // 4, options)
        m.step, m.pending, m.pending_from, m.sent_at, m.tries = step, pbu, m.dmpa, now, 0
        self._pending.add(m.index)
        self.stats.sent[f"pbu.{step}"] += 1
        return pbu

    def receive(self, data: bytes, at: int, src: IPv6Address, now: float) -> bytes | None:
        """One MH received by simulated DMPA ``at``; the reply to send back, if any."""
        try:
            message = decode_message(data, DRAFT)
        except DecodeError:
            self.stats.received["malformed"] += 1
            return None
        if isinstance(message, BindingAck):
            self._on_pba(message, at, now)
            return None
        if isinstance(message, BindingRevocationIndication):
            self.stats.received["bri"] += 1
            self.stats.sent["bra"] += 1
            return answer(message, self.restart_counter)
        if isinstance(message, Heartbeat):
            self.stats.received["heartbeat"] += 1
            return answer(message, self.restart_counter)  # a request's response, else None
        self.stats.received[type(message).__name__] += 1
        return None

    def _on_pba(self, pba: BindingAck, at: int, now: float) -> None:
        mnid = pba.find(MobileNodeIdentifier)
        m = self.by_nai.get(mnid.nai or "") if mnid is not None else None
        if m is None or m.pending is None or m.pending_from != at:
            self.stats.received["pba.unexpected"] += 1
            return
        if pba.sequence != m.pending.sequence:
            self.stats.received["pba.stale"] += 1
            return
        self.stats.latencies.append(now - m.sent_at)
        step = m.step
        m.pending = None
        self._pending.discard(m.index)
        if pba.status >= 128:
            self.stats.received[f"pba.rejected.{pba.status}"] += 1
            m.step, m.bound = "failed", False
            return
        self.stats.received[f"pba.{step}"] += 1
        if step == "leave":
            m.bound, m.step = False, "done"
            return
        seed = pba.find(SeedIPv4HomeAddress)
        if seed is not None and seed.address != ZERO:
            m.hoa = seed.address
        m.bound = True
        born = self.start + m.index / self.rate
        following = {"attach": "refresh", "refresh": "handover", "handover": "leave"}[step]
        if following == "leave" and m.index >= self.mss - self.keep:
            m.step = "kept"
            return
        at_fraction = {"refresh": REFRESH_AT, "handover": HANDOVER_AT, "leave": 1.0}[following]
        heapq.heappush(self._timers, (born + at_fraction * self.life, m.index, following))

    # --- the driver ---------------------------------------------------------------------------

    def run(
        self,
        sockets: list[socket.socket],
        until: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        """Drive the MSs over ``sockets`` (one per simulated DMPA, bound to its address) until
        every MS has been started and settled or ``until`` (monotonic) comes; then stop new
        steps and settle the PBUs still out (at most ``retry * (retries + 1)`` more)."""
        self.begin(clock())
        fds = {s.fileno(): i for i, s in enumerate(sockets)}
        settle_until: float | None = None
        while True:
            now = clock()
            if now >= until and not self._stopping:
                self.stop_new()
                settle_until = now + self.retry * (self.retries + 1) + 1.0
            if self._stopping and (
                self.outstanding() == 0 or (settle_until and now > settle_until)
            ):
                return
            if not self._timers and self.outstanding() == 0:
                return
            for index, pbu in self.fire(now):
                self._send(sockets[index], pbu.encode())
            due = self.due()
            wait = 0.2 if due is None else min(0.2, max(0.0, due - clock()))
            readable, _, _ = select.select(sockets, [], [], wait)
            for sock in readable:
                for _ in range(256):
                    try:
                        data, addr = sock.recvfrom(4096)
                    except BlockingIOError:
                        break
                    reply = self.receive(data, fds[sock.fileno()], IPv6Address(addr[0]), clock())
                    if reply is not None:
                        self._send(sock, reply)
            if on_tick is not None:
                on_tick(now)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendto(data, (str(self.dlmap), 0))
        except OSError as exc:
            self.stats.sent[f"error.{type(exc).__name__}"] += 1
