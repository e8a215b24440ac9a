"""A real PostgreSQL 15 for the tests (``store = postgresql``): one server per test session,
started by the fixture itself in a fresh data directory (as the postgres user when run as root),
listening on a unix socket in its own directory only (no TCP: nothing reaches the host's
network), stopped and removed at the end of the session; a fresh database per test."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import require

if TYPE_CHECKING:
    from netlmm_lab.postgres import PostgresServer

_NUMBERS = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    from netlmm_lab.postgres import PostgresServer, available  # the lab package: only here

    why = available()
    require(why is None, f"PostgreSQL: {why}")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """A URI of a fresh, empty database on the session's server."""
    name = f"t{next(_NUMBERS)}"
    postgres.create_database(name)
    return postgres.socket_dsn(name)


@pytest.fixture(scope="session")
def postgres_binaries() -> None:
    """The lab starts its own PostgreSQL (and keepalived): both must be installed."""
    from netlmm_lab.postgres import available

    why = available()
    require(why is None, f"PostgreSQL: {why}")
    require(shutil.which("keepalived") is not None, "keepalived is not installed (make setup)")
