"""The active's ``meta/ha_alive`` beat (router/app/ha.py): written every BEAT seconds while the
node runs, and never after its stop (the last commit is the stop's; a later beat would reopen
the closed store's connection)."""

from __future__ import annotations

import asyncio

import pytest

from router.adapters.store_pg import PgStore
from router.app import config
from router.app import ha as ha_module
from router.core.actions import Persist
from tests.unit.nodes import DLMAP_INI


def test_the_beat_stops_with_the_node(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ha_module, "BEAT", 0.01)
    settings, _ = config.loads(DLMAP_INI)
    store = PgStore("postgresql://netlmm@db.example.net/netlmm", "2001:db8:2::1", holder="h:1")
    ha = ha_module.HA(settings.node, store)
    written: list[Persist] = []

    async def run() -> None:  # attach takes the running loop
        ha.attach(written.extend, lambda: False)
        await asyncio.sleep(0.1)
        beats = len(written)
        assert beats >= 2 and all(p.key == "ha_alive" for p in written)
        ha.stop()
        await asyncio.sleep(0.1)
        assert len(written) == beats

    loop.run_until_complete(run())
