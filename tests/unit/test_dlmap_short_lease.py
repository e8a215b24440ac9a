"""Regression (found by the soak): ``[dlmap] lease_time`` under a minute passed the config
checks, but the DLMAP then died at start with a traceback, because the built-in DHCP server's
one-minute floor (``min_lease``) was above the lease cap. The floor now follows the config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from netlmm_lab.configs import write_configs
from router.adapters.store import Store
from router.app import config
from router.app.dlmap_node import DLMAPNode, DLMAPPorts
from router.app.settings import DLMAPSettings
from router.services.dhcp_server import DhcpServer


@pytest.mark.parametrize("lease_time", [1, 30, 60, 600])
def test_dlmap_starts_with_a_short_lease_time(tmp_path: Path, lease_time: int) -> None:
    paths = write_configs(tmp_path, [], lease_time=lease_time)
    settings, _ = config.load(paths.dlmap)
    assert isinstance(settings, DLMAPSettings) and settings.lease_time == lease_time
    loop = asyncio.new_event_loop()
    store = Store(tmp_path / "lm.sqlite")
    try:
        node = DLMAPNode(
            settings, DLMAPPorts(None, None, -1, -1, -1), store, loop, fastpath="reference"
        )
        assert isinstance(node.dhcp, DhcpServer)
        assert node.dhcp.config.min_lease == min(60, lease_time)
        assert node.dhcp.config.lease_cap == lease_time
    finally:
        store.close()
        loop.close()
