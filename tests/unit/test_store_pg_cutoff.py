"""An active DLMAP cut off in the middle of a write must not hold the standby's claim.

The cut-off active's transaction stays open on the server with the share lock on the identity
row that every write takes; the claim's update of that row waits for it. Before the server
ended such sessions (``idle_in_transaction_session_timeout``, set by :class:`PgStore` on its
connections), the claim waited until its own statement timeout and the standby stopped: seen in
the lab when lm's links went down mid-write (``make ha``'s namespace-cut variant under load).
Here the cut is a transaction opened on the old holder's own connection and then left alone, as
a vanished host leaves it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from router.adapters.store import StoreWriteError
from router.adapters.store_pg import (
    _FENCE,
    COMMAND_TIMEOUT,
    IDLE_IN_TRANSACTION_MS,
    PgStore,
    StoreFenced,
)
from router.core.actions import Persist
from tests.unit.nodes import DLMAP


def test_a_claim_is_not_held_by_a_cut_off_holders_open_write(
    pg_dsn: str, loop: asyncio.AbstractEventLoop
) -> None:
    old = PgStore(pg_dsn, str(DLMAP), holder="old")
    new = PgStore(pg_dsn, str(DLMAP), holder="new")
    loop.run_until_complete(old.open())
    loop.run_until_complete(old.claim())

    async def cut_mid_write() -> Any:
        db = await old._connect()
        transaction = db.transaction()
        await transaction.start()
        await db.fetchval(_FENCE, old.identity)  # the share lock of a write, then silence
        return transaction

    loop.run_until_complete(cut_mid_write())
    try:
        loop.run_until_complete(new.open())
        began = time.monotonic()
        epoch = loop.run_until_complete(new.claim())  # before the fix: StoreError after 5 s
        waited = time.monotonic() - began
        assert epoch == 2
        assert waited < COMMAND_TIMEOUT, waited
        assert waited >= IDLE_IN_TRANSACTION_MS / 1000 * 0.5, waited  # it did wait for the lock
        # the old holder's next write: its session was ended (a failed write), then fenced
        old.defer([Persist("meta", "x", {"key": "x", "value": 1})])
        with pytest.raises(StoreWriteError):
            loop.run_until_complete(old.commit())
        with pytest.raises(StoreFenced):
            loop.run_until_complete(old.commit())
    finally:
        old.close()
        new.close()
