"""``store = postgresql`` at start, and the active/standby DLMAP pair (``ha = pair``).

:func:`prepare` is called by ``netlmm run`` before anything else of the node is made:

- ``store = postgresql``, ``ha = off``: connect, claim the DLMAP identity (a higher epoch:
  any other holder's writes fail from now on), read the state; the node then starts as usual.
- ``ha = pair``: the same database for both processes, and keepalived (VRRPv3) moves
  ``node.address`` between the two hosts. Until the address is on a link here this process is
  the **standby**: it keeps its connection and re-reads the state every second (warm: its lag
  is the age of that copy), and answers ``netlmm show ha`` on its control socket. When
  keepalived gives it the address, it claims the identity (so the old active, if it still
  runs and still reaches the database, can no longer write: it is fenced and stops), reads the
  final state and only then goes on to answer. The RFC 5847 restart counter is the stored one
  (:class:`router.core.dlmap.DLMAPConfig.keep_restart_counter`), so the DMPAs do not register
  every MS again, and the revocations still pending are resent from their stored rows (the
  core's restore).

The standby waits as long as it takes (a standby may wait for months); SIGTERM ends it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from ipaddress import IPv6Address
from typing import Any

from router.adapters import devices
from router.adapters.control import ControlError, ControlServer
from router.adapters.store_pg import PgStore
from router.app.settings import NodeSettings
from router.core.actions import Persist

log = logging.getLogger("netlmm")

#: How often the standby re-reads the whole state (at least: a read that takes longer than a
#: tenth of it stretches it; its lag is about this much) and how long
#: each look for the address lasts (polled every 50 ms within it).
REFRESH = 1.0
ADDRESS_POLL = 0.25
#: How often the active writes its ``meta/ha_alive`` row (and so checks it is not fenced).
BEAT = 1.0


class HA:
    """What ``netlmm show ha`` reports: role, epoch, lag."""

    def __init__(self, settings: NodeSettings, store: PgStore | None) -> None:
        self.settings = settings
        self.store = store
        self.role = "single" if store is None else "standby"
        self.promoted_at: float | None = None
        self.waited = 0.0
        self._beat: asyncio.TimerHandle | None = None

    def attach(self, submit: Callable[[list[Persist]], None], fenced: Callable[[], bool]) -> None:
        """The active writes a row every :data:`BEAT` seconds (``meta/ha_alive``): the standby
        reads how recent the active's last write is, and a process that another one has
        claimed over learns it from the write's fence check within that time even when no
        MS registers (it then stops: :class:`router.adapters.store_pg.StoreFenced`)."""
        store = self.store
        if store is None:
            return
        loop = asyncio.get_event_loop()

        def beat() -> None:
            self._beat = None
            if fenced():
                return
            record = {"key": "ha_alive", "value": time.time(), "holder": store.holder}
            submit([Persist("meta", "ha_alive", record)])
            self._beat = loop.call_later(BEAT, beat)

        self._beat = loop.call_later(BEAT, beat)

    def stop(self) -> None:
        """No more beats: at stop, before the last commit, none must be written after it (nor
        reopen the closed store's connection)."""
        if self._beat is not None:
            self._beat.cancel()
            self._beat = None

    def status(self) -> dict[str, Any]:
        store = self.store
        if store is None:
            return {"role": "single", "store": self.settings.store}
        now = time.time()
        alive = store.load().get("meta", {}).get("ha_alive", {}).get("value")
        if self.role != "standby":
            alive = store.committed_at  # our own last commit
        if self.role == "standby":
            lag = None if store.fetched_at is None else round(now - store.fetched_at, 3)
        else:  # the active: how far the database is behind memory
            lag = 0.0 if not store.backlog else None
        return {
            "active_write_age_s": None if alive is None else round(now - float(alive), 3),
            "role": self.role,
            "store": "postgresql",
            "identity": store.identity,
            "holder": store.holder,
            "epoch": store.epoch,
            "lag_seconds": lag,
            "backlog_rows": store.backlog,
            "rows": sum(len(rows) for rows in store.load().values()),
            "promoted_at": self.promoted_at,
        }


async def prepare(settings: NodeSettings, network: str | None = None) -> HA:
    """Open the PostgreSQL store (nothing for SQLite), waiting as the standby first with
    ``ha = pair``; then claim the identity (serving HoA ``network``) and read the state.
    :class:`StoreError` (one line) if the database cannot be used."""
    if settings.store != "postgresql":
        return HA(settings, None)
    assert settings.store_dsn is not None  # the loader requires it
    holder = f"{socket.gethostname()}:{os.getpid()}"
    store = PgStore(
        settings.store_dsn,
        str(settings.address),
        password_file=settings.store_password_file,
        holder=holder,
        network=network,
    )
    await store.open()
    ha = HA(settings, store)
    try:
        if settings.ha == "pair":
            await _standby(ha, settings.address)
        epoch = await store.claim()
        rows = await store.fetch()
    except BaseException:
        store.close()
        raise
    ha.role = "active"
    ha.promoted_at = time.time()
    log.info(
        "claimed the DLMAP identity identity=%s epoch=%d rows=%d waited=%.3f",
        store.identity,
        epoch,
        rows,
        ha.waited,
    )
    return ha


async def _standby(ha: HA, address: IPv6Address) -> None:
    """Until ``address`` is here: keep the state warm, answer ``show ha``."""
    store = ha.store
    assert store is not None
    loop = asyncio.get_running_loop()
    control = ControlServer(ha.settings.control_socket, _standby_handler(ha))
    await control.start()
    log.info("standby identity=%s waiting for address=%s", store.identity, address)
    try:
        started = time.monotonic()
        refreshed, every = 0.0, REFRESH
        while True:
            if time.monotonic() - refreshed >= every:
                began = time.monotonic()
                try:
                    await store.fetch()
                    current = await store.current_epoch()
                    store.epoch = 0 if current is None else current[0]
                except Exception as exc:  # the database away: keep waiting, say so
                    log.warning("standby cannot read the state: %s", exc)
                refreshed = time.monotonic()
                # a big state is re-read less often: at most a tenth of the time reading
                every = max(REFRESH, 10 * (refreshed - began))
            try:
                await loop.run_in_executor(None, devices.wait_address, address, ADDRESS_POLL)
            except TimeoutError:
                continue
            ha.waited = time.monotonic() - started
            return
    finally:
        await control.close()


def _standby_handler(ha: HA) -> Any:
    def handle(request: dict[str, Any]) -> dict[str, Any]:
        if request.get("command") == "show" and request.get("what") == "ha":
            return {"what": "ha", "role": "dlmap", "result": ha.status()}
        raise ControlError("standby: only `show ha` until this DLMAP is the active one")

    return handle
