"""Fixtures of the unit tests that run nodes in memory."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop the test owns (never run in the background: the test turns it)."""
    made = asyncio.new_event_loop()
    yield made
    made.close()
